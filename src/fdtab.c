#include "fdtab.h"

#include <string.h>
#include <sys/resource.h>

#include "conn.h"
#include "pool.h"

struct rq_fd *_Atomic rq_fd_chunks[RQ_FD_MAX >> RQ_FD_SHIFT];
struct rq_slot *_Atomic rq_carry_chunks[RQ_FD_MAX >> RQ_CY_SHIFT];
struct rq_log *_Atomic rq_log_chunks[RQ_FD_MAX >> RQ_LG_SHIFT];

static unsigned fd_limit = RQ_FD_MAX;

void rq_fd_init(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
	    rl.rlim_max < RQ_FD_MAX)
		fd_limit = (unsigned)rl.rlim_max;
}

static struct rq_fd *fd_get(int fd)
{
	struct rq_fd *c;

	if ((unsigned)fd >= fd_limit)
		return NULL;
	c = rq_chunk((void *_Atomic *)&rq_fd_chunks[(unsigned)fd >> RQ_FD_SHIFT],
		     sizeof(struct rq_fd) << RQ_FD_SHIFT, 1);
	return c ? &c[fd & ((1u << RQ_FD_SHIFT) - 1)] : NULL;
}

/* The carrier slot of fd, mapped if missing (NULL if it cannot be). */
static struct rq_slot *carry_get(int fd)
{
	struct rq_slot *c;

	c = rq_chunk((void *_Atomic *)&rq_carry_chunks[(unsigned)fd >> RQ_CY_SHIFT],
		     sizeof(struct rq_slot) << RQ_CY_SHIFT, 1);
	return c ? &c[fd & ((1u << RQ_CY_SHIFT) - 1)] : NULL;
}

/* The log record of fd, mapped if missing (NULL if it cannot be). */
static struct rq_log *log_get(int fd)
{
	struct rq_log *c;

	c = rq_chunk((void *_Atomic *)&rq_log_chunks[(unsigned)fd >> RQ_LG_SHIFT],
		     sizeof(struct rq_log) << RQ_LG_SHIFT, 1);
	return c ? &c[fd & ((1u << RQ_LG_SHIFT) - 1)] : NULL;
}

/* Makes e name connection c (or none), dropping the reference to the one it named. */
static void name_conn(struct rq_fd *e, struct rq_conn *c)
{
	struct rq_conn *old = atomic_exchange_explicit(&e->conn, c, memory_order_acq_rel);

	if (old)
		rq_conn_unref(old);
}

static void reset_lines(struct rq_fd *e)
{
	atomic_fetch_add_explicit(&e->gen, 1, memory_order_release);
	atomic_store_explicit(&e->line, 0, memory_order_relaxed);
	atomic_store_explicit(&e->stall, 0, memory_order_relaxed);
}

int rq_fd_set_log(int fd)
{
	struct rq_fd *e = fd_get(fd);

	if (!e || !log_get(fd))
		return -ENOMEM;
	atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
	name_conn(e, NULL);
	reset_lines(e);
	atomic_store_explicit(&e->flags, RQ_FD_LOG, memory_order_release);
	return 0;
}

int rq_fd_set_conn_to(int fd, struct rq_conn *c)
{
	struct rq_fd *e = fd_get(fd);

	if (!e) {
		if (c)
			rq_conn_unref(c);
		return -ENOMEM;
	}
	atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
	name_conn(e, c);
	if (!c)
		return -ENOMEM;
	reset_lines(e);
	atomic_store_explicit(&e->flags, RQ_FD_CONN, memory_order_release);
	return 0;
}

int rq_fd_set_conn(int fd)
{
	return rq_fd_set_conn_to(fd, rq_conn_new());
}

int rq_fd_set_carry(int fd, int peer)
{
	struct rq_fd *e = fd_get(fd);

	if (!e)
		return -ENOMEM;
	atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
	name_conn(e, NULL);
	if (!carry_get(fd))
		return -ENOMEM;
	reset_lines(e);
	atomic_store_explicit(&e->peer, peer, memory_order_relaxed);
	atomic_store_explicit(&e->flags, RQ_FD_CARRY, memory_order_release);
	return 0;
}

int rq_fd_set_relay(int fd)
{
	struct rq_fd *e = rq_fd_peek(fd);

	if (!e || rq_fd_flags(e) != RQ_FD_CARRY)
		return -EINVAL;
	atomic_store_explicit(&e->line, 0, memory_order_relaxed); /* at a line start */
	atomic_store_explicit(&e->flags, RQ_FD_CARRY | RQ_FD_RELAY, memory_order_release);
	return 0;
}

int rq_fd_stays_log(int from, int to, int listened)
{
	if (!listened || from == to || rq_fd_flags(rq_fd_peek(to)) != RQ_FD_LOG ||
	    !(rq_fd_flags(rq_fd_peek(from)) & RQ_FD_CARRY))
		return 0;
	for (int i = 0; i < rq_cfg.nchildfds; i++)
		if (rq_cfg.childfds[i] == to)
			return 1;
	return 0;
}

int rq_fd_track(int fd)
{
	return fd_get(fd) ? 0 : -ENOMEM;
}

void rq_fd_forget(int fd)
{
	struct rq_fd *e = rq_fd_peek(fd);

	if (!e)
		return;
	if (atomic_load_explicit(&e->flags, memory_order_relaxed))
		atomic_store_explicit(&e->flags, 0, memory_order_release);
	if (atomic_load_explicit(&e->conn, memory_order_relaxed))
		name_conn(e, NULL);
	/* Also for untracked fds: queued epoll events are checked against it (evq.c). */
	atomic_fetch_add_explicit(&e->gen, 1, memory_order_release);
}

void rq_fd_forget_range(unsigned lo, unsigned hi)
{
	if (hi >= RQ_FD_MAX)
		hi = RQ_FD_MAX - 1;
	for (unsigned fd = lo; fd <= hi && fd >= lo; fd++) {
		if (!atomic_load_explicit(&rq_fd_chunks[fd >> RQ_FD_SHIFT],
					  memory_order_acquire)) {
			fd |= (1u << RQ_FD_SHIFT) - 1; /* skip the missing chunk */
			continue;
		}
		rq_fd_forget((int)fd);
	}
}

/*
 * A reference to the connection src names, taken while src still names it
 * (a close of `from` racing with its dup leaves `to` untracked). NULL if none.
 */
static struct rq_conn *share(struct rq_fd *src)
{
	struct rq_conn *c = rq_fd_conn(src);

	if (!c || rq_conn_ref(c) < 0)
		return NULL;
	if (rq_fd_conn(src) != c) {
		rq_conn_unref(c);
		return NULL;
	}
	return c;
}

void rq_fd_copy(int from, int to)
{
	struct rq_fd *src = rq_fd_peek(from), *dst;
	uint32_t fl = rq_fd_flags(src);
	struct rq_slot *s;
	struct rq_ctx now;

	if (from == to)
		return;
	rq_fd_forget(to);
	if (!fl || !(dst = fd_get(to)))
		return;
	if (fl & RQ_FD_LOG) {
		struct rq_log *lg = log_get(to), *from_lg = rq_log_peek(from);

		if (!lg)
			return;
		if (from_lg)
			memcpy(lg, from_lg, sizeof(*lg));
	}
	atomic_store_explicit(&dst->line, atomic_load(&src->line), memory_order_relaxed);
	atomic_store_explicit(&dst->peer, atomic_load(&src->peer), memory_order_relaxed);
	atomic_store_explicit(&dst->stall, atomic_load(&src->stall), memory_order_relaxed);
	atomic_fetch_add_explicit(&dst->gen, 1, memory_order_release);
	if (fl & RQ_FD_CONNS) {
		struct rq_conn *c = share(src);

		if (!c)
			return;
		name_conn(dst, c);
	} else if (fl & RQ_FD_CARRY) {
		if (!(s = carry_get(to)))
			return;
		if (rq_slot_read(rq_carry_slot(from), &now, NULL) < 0)
			now = rq_ctx_unknown;
		rq_slot_store(s, &now);
	}
	atomic_store_explicit(&dst->flags, fl, memory_order_release);
}
