#include "carry.h"

#include "config.h"
#include "handle.h"
#include "ctx.h"
#include "http.h"

static struct rq_slot *carried(int fd)
{
	struct rq_conn *c = rq_conn_peek(fd);

	return c ? &c->slots[0] : NULL;
}

void rq_carry_new(int fd, int peer)
{
	int e = errno;

	if (fd >= 0 && !rq_cfg.disabled && rq_fd_set_carry(fd, peer) == 0)
		rq_slot_store(carried(fd), rq_ctx_cur());
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
	if ((s = carried(fd)))
		rq_slot_store(s, rq_ctx_cur()); /* a no-op when it already holds that context */
}

void rq_fd_enter(int fd)
{
	uint32_t fl = rq_fd_flags(rq_fd_peek(fd));
	struct rq_conn *c;

	if (fl & RQ_FD_CONN) {
		c = rq_conn_peek(fd);
		if (atomic_load_explicit(&c->has_cur, memory_order_acquire)) {
			rq_ctx_set_slot(&c->slots[atomic_load_explicit(&c->cur, memory_order_relaxed) %
						  RQ_PIPE]);
			return;
		}
	} else if (fl & RQ_FD_CARRY) {
		rq_ctx_set_slot(carried(fd));
		return;
	} else if (fl & RQ_FD_LOG) {
		uint64_t h = atomic_load_explicit(&rq_fd_peek(fd)->stall, memory_order_relaxed);

		if (h) { /* writable again: what is still pending is its stalled writer's */
			rq_handle_resume(h);
			return;
		}
	}
	rq_ctx_clear();
}
