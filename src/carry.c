#include "carry.h"

#include "config.h"
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
		uint32_t cur;

		c = rq_conn_peek(fd);
		cur = atomic_load_explicit(&c->cur, memory_order_acquire);
		if (cur != RQ_NO_CUR) {
			rq_ctx_set_slot(rq_conn_slot(c, cur));
			return;
		}
	} else if (fl & RQ_FD_CARRY) {
		rq_ctx_set_slot(carried(fd));
		return;
	}
	rq_ctx_clear();
}
