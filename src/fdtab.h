/*
 * The fd table: what reqctx knows about each descriptor.
 *
 * Two lazily mapped tables indexed by fd: a small entry for every fd (is it a
 * log stream, a connection; the line state of a log stream), and the larger
 * connection state for accepted sockets. Chunks are mmap'ed on first use and
 * published with a compare-and-swap, so lookups take no lock and never
 * allocate. Descriptors at or above RQ_FD_MAX (or the RLIMIT_NOFILE hard
 * limit, if lower) are not tracked: their I/O passes through untouched.
 */
#ifndef RQ_FDTAB_H
#define RQ_FDTAB_H

#include <stdatomic.h>
#include <stdint.h>

#include "http.h"
#include "internal.h"

#define RQ_FD_MAX   (1u << 20) /* fds tracked at most */
#define RQ_FD_SHIFT 8          /* 256 small entries per chunk */
#define RQ_CN_SHIFT 6          /* 64 connections per chunk */

#define RQ_FD_LOG   1u /* a log stream: lines get the prefix */
#define RQ_FD_CONN  2u /* an accepted connection: has a struct rq_conn */
#define RQ_FD_CARRY 4u /* carries a context from writers to readers (struct rq_conn slot 0) */

struct rq_fd {
	_Atomic uint32_t flags;
	_Atomic uint32_t wmid;  /* write(): 1 inside a line, 0 at a line start */
	_Atomic uint32_t wpend; /* write(): bytes of this line's prefix already out */
	_Atomic uint32_t smid;  /* stdio: 1 inside a line, 0 at a line start */
	_Atomic uint32_t gen;   /* bumped whenever the fd's entry is reset */
	_Atomic int32_t peer;   /* RQ_FD_CARRY: fd whose reads see this fd's writes, or -1 */
	_Atomic uint64_t stall; /* RQ_FD_LOG: handle of the writer whose write did not all go out */
};

extern struct rq_fd *_Atomic rq_fd_chunks[RQ_FD_MAX >> RQ_FD_SHIFT];
extern struct rq_conn *_Atomic rq_conn_chunks[RQ_FD_MAX >> RQ_CN_SHIFT];

/* The entry of fd, or NULL if it was never given one. Never allocates. */
static inline struct rq_fd *rq_fd_peek(int fd)
{
	struct rq_fd *c;

	if (unlikely((unsigned)fd >= RQ_FD_MAX))
		return NULL;
	c = atomic_load_explicit(&rq_fd_chunks[(unsigned)fd >> RQ_FD_SHIFT],
				 memory_order_acquire);
	return c ? &c[fd & ((1u << RQ_FD_SHIFT) - 1)] : NULL;
}

static inline uint32_t rq_fd_flags(const struct rq_fd *e)
{
	return e ? atomic_load_explicit(&e->flags, memory_order_relaxed) : 0;
}

/* The connection state of fd; only meaningful while fd has RQ_FD_CONN. */
static inline struct rq_conn *rq_conn_peek(int fd)
{
	struct rq_conn *c = atomic_load_explicit(
		&rq_conn_chunks[(unsigned)fd >> RQ_CN_SHIFT], memory_order_acquire);

	return c ? &c[fd & ((1u << RQ_CN_SHIFT) - 1)] : NULL;
}

/* Sets the fd limit from RLIMIT_NOFILE (hard limit, capped at RQ_FD_MAX). */
void rq_fd_init(void);

/* Marks fd as a log stream at a line start. Returns 0 or -errno. */
int rq_fd_set_log(int fd);

/* Makes fd a fresh connection. Returns 0 or -errno (then fd stays untracked). */
int rq_fd_set_conn(int fd);

/* Gives fd an entry with no flags, so that rq_fd_gen sees its close. Returns 0 or -errno. */
int rq_fd_track(int fd);

/* Forgets fd (it was closed or replaced). */
void rq_fd_forget(int fd);

/* Forgets every fd in [lo, hi]. */
void rq_fd_forget_range(unsigned lo, unsigned hi);

/* Makes `to` what `from` is (dup, dup2, dup3, F_DUPFD). */
void rq_fd_copy(int from, int to);

/* The entry's generation: it changes whenever the fd is closed, reused or copied onto. */
static inline uint32_t rq_fd_gen(int fd)
{
	struct rq_fd *e = rq_fd_peek(fd);

	return e ? atomic_load_explicit(&e->gen, memory_order_acquire) : 0;
}

/* Makes fd a context carrier (see carry.h). Returns 0 or -errno. */
int rq_fd_set_carry(int fd, int peer);

/* The connection state of fd, mapped if missing (NULL if it cannot be). */
struct rq_conn *rq_conn_get(int fd);

#endif
