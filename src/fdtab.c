#include "fdtab.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

struct rq_fd *_Atomic rq_fd_chunks[RQ_FD_MAX >> RQ_FD_SHIFT];
struct rq_conn *_Atomic rq_conn_chunks[RQ_FD_MAX >> RQ_CN_SHIFT];

static unsigned fd_limit = RQ_FD_MAX;

void rq_fd_init(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
	    rl.rlim_max < RQ_FD_MAX)
		fd_limit = (unsigned)rl.rlim_max;
}

/* Returns the chunk at *slot, mapping and publishing it if missing. */
static void *chunk(void *_Atomic *slot, size_t bytes)
{
	void *c = atomic_load_explicit(slot, memory_order_acquire);
	void *expected = NULL;

	if (c)
		return c;
	c = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED)
		return NULL;
	if (!atomic_compare_exchange_strong_explicit(slot, &expected, c,
						     memory_order_acq_rel,
						     memory_order_acquire)) {
		munmap(c, bytes);
		c = expected;
	}
	return c;
}

static struct rq_fd *fd_get(int fd)
{
	struct rq_fd *c;

	if ((unsigned)fd >= fd_limit)
		return NULL;
	c = chunk((void *_Atomic *)&rq_fd_chunks[(unsigned)fd >> RQ_FD_SHIFT],
		  sizeof(struct rq_fd) << RQ_FD_SHIFT);
	return c ? &c[fd & ((1u << RQ_FD_SHIFT) - 1)] : NULL;
}

struct rq_conn *rq_conn_get(int fd)
{
	struct rq_conn *c;

	c = chunk((void *_Atomic *)&rq_conn_chunks[(unsigned)fd >> RQ_CN_SHIFT],
		  sizeof(struct rq_conn) << RQ_CN_SHIFT);
	return c ? &c[fd & ((1u << RQ_CN_SHIFT) - 1)] : NULL;
}

static void reset_lines(struct rq_fd *e)
{
	atomic_fetch_add_explicit(&e->gen, 1, memory_order_release);
	atomic_store_explicit(&e->wmid, 0, memory_order_relaxed);
	atomic_store_explicit(&e->wpend, 0, memory_order_relaxed);
	atomic_store_explicit(&e->smid, 0, memory_order_relaxed);
	atomic_store_explicit(&e->stall, 0, memory_order_relaxed);
}

int rq_fd_set_log(int fd)
{
	struct rq_fd *e = fd_get(fd);

	if (!e)
		return -ENOMEM;
	reset_lines(e);
	atomic_store_explicit(&e->flags, RQ_FD_LOG, memory_order_release);
	return 0;
}

int rq_fd_set_conn(int fd)
{
	struct rq_fd *e = fd_get(fd);
	struct rq_conn *c;

	if (!e)
		return -ENOMEM;
	atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
	c = rq_conn_get(fd);
	if (!c)
		return -ENOMEM;
	rq_conn_init(c);
	reset_lines(e);
	atomic_store_explicit(&e->flags, RQ_FD_CONN, memory_order_release);
	return 0;
}

int rq_fd_set_carry(int fd, int peer)
{
	struct rq_fd *e = fd_get(fd);

	if (!e)
		return -ENOMEM;
	atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
	if (!rq_conn_get(fd))
		return -ENOMEM;
	reset_lines(e);
	atomic_store_explicit(&e->peer, peer, memory_order_relaxed);
	atomic_store_explicit(&e->flags, RQ_FD_CARRY, memory_order_release);
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

void rq_fd_copy(int from, int to)
{
	struct rq_fd *src = rq_fd_peek(from), *dst;
	uint32_t fl = rq_fd_flags(src);
	struct rq_conn *c;

	if (from == to)
		return;
	rq_fd_forget(to);
	if (!fl || !(dst = fd_get(to)))
		return;
	atomic_store_explicit(&dst->wmid, atomic_load(&src->wmid), memory_order_relaxed);
	atomic_store_explicit(&dst->wpend, atomic_load(&src->wpend), memory_order_relaxed);
	atomic_store_explicit(&dst->smid, atomic_load(&src->smid), memory_order_relaxed);
	atomic_store_explicit(&dst->peer, atomic_load(&src->peer), memory_order_relaxed);
	atomic_store_explicit(&dst->stall, atomic_load(&src->stall), memory_order_relaxed);
	atomic_fetch_add_explicit(&dst->gen, 1, memory_order_release);
	if (fl & (RQ_FD_CONN | RQ_FD_CARRY)) {
		if (!(c = rq_conn_get(to)))
			return;
		memcpy(c, rq_conn_peek(from), sizeof(*c));
	}
	atomic_store_explicit(&dst->flags, fl, memory_order_release);
}
