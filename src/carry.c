#include "carry.h"

#include "config.h"
#include "conn.h"
#include "ctx.h"
#include "handle.h"

void rq_carry_new(int fd, int peer)
{
	int e = errno;

	if (fd >= 0 && rq_fd_set_carry(fd, peer) == 0)
		rq_slot_store(rq_carry_slot(fd), rq_ctx_cur());
	errno = e;
}

void rq_carry_put(int fd, struct rq_fd *e)
{
	int peer = atomic_load_explicit(&e->peer, memory_order_relaxed);
	struct rq_slot *s;

	if (peer >= 0) {
		if (!(rq_fd_flags(rq_fd_peek(peer)) & RQ_FD_CARRY))
			return;
		fd = peer;
	}
	if ((s = rq_carry_slot(fd)))
		rq_slot_store(s, rq_ctx_cur()); /* a no-op when it already holds that context */
}

void rq_carry_read(int fd)
{
	struct rq_slot *s = rq_carry_slot(fd);

	/* rq_fd_enter for a carrier, without looking the fd up again; errno is not touched */
	if (!s)
		return;
	if (atomic_load_explicit(&s->serial, memory_order_relaxed) != rq_ctx_cur()->serial)
		rq_ctx_set_slot(s);
	else
		rq_ctx_reaffirm();
}

void rq_fd_enter(int fd)
{
	struct rq_fd *e = rq_fd_peek(fd);
	uint32_t fl = rq_fd_flags(e);
	struct rq_conn *c;
	uint64_t h;

	if ((fl & RQ_FD_CONNS) && (c = rq_fd_conn(e)))
		rq_conn_enter(c);
	else if (fl & RQ_FD_CARRY)
		rq_ctx_set_slot(rq_carry_slot(fd));
	else if ((fl & RQ_FD_LOG) &&
		 (h = atomic_load_explicit(&e->stall, memory_order_relaxed)))
		rq_handle_resume(h); /* writable again: what is still pending is its stalled writer's */
	else
		rq_ctx_clear();
}
