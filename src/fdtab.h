/*
 * The fd table: what reqctx knows about each descriptor.
 *
 * Lazily mapped tables indexed by fd: a small entry for every fd (is it a
 * log stream, a connection, a carrier; the line state of a log stream and
 * the writer of a write it left pending; the connection it names), and the
 * request slot of each context carrier.
 * Connections themselves are objects of their own (conn.h): an accepted
 * socket's entry names one, a dup's entry names the same one, and each entry
 * holds a reference to it. Chunks are mmap'ed on first use and published
 * with a compare-and-swap (pool.h), so lookups take no lock and never
 * allocate. Descriptors at or above RQ_FD_MAX (or the RLIMIT_NOFILE hard
 * limit, if lower) are not tracked: their I/O passes through untouched.
 */
#ifndef RQ_FDTAB_H
#define RQ_FDTAB_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "ctx.h"
#include "internal.h"

#define RQ_FD_SHIFT 8          /* 256 small entries per chunk */
#define RQ_CY_SHIFT 6          /* 64 carrier slots per chunk */
#define RQ_LG_SHIFT 6          /* 64 log records per chunk */

#define RQ_FD_LOG   1u /* a log stream: lines get the prefix */
#define RQ_FD_CONN  2u /* an accepted connection: names a struct rq_conn */
#define RQ_FD_CARRY 4u /* carries a context from writers to readers (its carrier slot) */
#define RQ_FD_CIPHER 8u /* a TLS connection's fd: names a struct rq_conn, and its own bytes
			   are ciphertext, which every call passes straight through */
#define RQ_FD_CONNS (RQ_FD_CONN | RQ_FD_CIPHER) /* fds that name a connection */
#define RQ_FD_RELAY 16u /* with RQ_FD_CARRY: a pipe's read end, whose lines may name their writer's request */

struct rq_fd {
	_Atomic uint32_t flags;
	_Atomic uint32_t line;  /* RQ_FD_LOG: the stream's line state, one word (src/lines.h) */
	_Atomic uint32_t gen;   /* bumped whenever the fd's entry is reset */
	_Atomic int32_t peer;   /* RQ_FD_CARRY: fd whose reads see this fd's writes, or -1 */
	struct rq_conn *_Atomic conn; /* RQ_FD_CONNS: the connection, one reference held */
	_Atomic uint64_t stall; /* RQ_FD_LOG: handle of the writer whose write did not all go out */
};

/* Longest prefix reqctx puts before a line. */
#define RQ_PFX_MAX (2 * RQ_PFX_PART + REQCTX_ID_MAX)

/*
 * What a log stream keeps besides its line state: the text of a prefix that
 * a short write cut, so that the next write finishes it as it started, under
 * whatever ID is current by then. Two copies: a cut fills the one the line
 * state does not name, then names it (src/io.c).
 */
struct rq_log {
	char pfx[2][RQ_PFX_MAX];
};

extern struct rq_fd *_Atomic rq_fd_chunks[RQ_FD_MAX >> RQ_FD_SHIFT];
extern struct rq_slot *_Atomic rq_carry_chunks[RQ_FD_MAX >> RQ_CY_SHIFT];
extern struct rq_log *_Atomic rq_log_chunks[RQ_FD_MAX >> RQ_LG_SHIFT];

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

/*
 * The connection entry e names (NULL if none: the fd is no connection, or a
 * close is racing). Valid while the caller's fd is open; see conn.h for a
 * thread that races with the close.
 */
static inline struct rq_conn *rq_fd_conn(const struct rq_fd *e)
{
	return e ? atomic_load_explicit(&e->conn, memory_order_acquire) : NULL;
}

/* The connection fd names, or NULL. */
static inline struct rq_conn *rq_conn_of(int fd)
{
	return rq_fd_conn(rq_fd_peek(fd));
}

/* The carrier slot of fd (the context it carries); only meaningful while fd has RQ_FD_CARRY. */
static inline struct rq_slot *rq_carry_slot(int fd)
{
	struct rq_slot *c;

	if (unlikely((unsigned)fd >= RQ_FD_MAX))
		return NULL;
	c = atomic_load_explicit(&rq_carry_chunks[(unsigned)fd >> RQ_CY_SHIFT],
				 memory_order_acquire);
	return c ? &c[fd & ((1u << RQ_CY_SHIFT) - 1)] : NULL;
}

/* The log record of fd; only meaningful while fd has RQ_FD_LOG. Never allocates. */
static inline struct rq_log *rq_log_peek(int fd)
{
	struct rq_log *c;

	if (unlikely((unsigned)fd >= RQ_FD_MAX))
		return NULL;
	c = atomic_load_explicit(&rq_log_chunks[(unsigned)fd >> RQ_LG_SHIFT], memory_order_acquire);
	return c ? &c[fd & ((1u << RQ_LG_SHIFT) - 1)] : NULL;
}

/* Sets the fd limit from RLIMIT_NOFILE (hard limit, capped at RQ_FD_MAX). */
void rq_fd_init(void);

/* Marks fd as a log stream at a line start (with its log record). Returns 0 or -errno. */
int rq_fd_set_log(int fd);

/*
 * Makes fd a fresh connection (a new struct rq_conn). Returns 0 or -errno
 * (then fd stays untracked).
 */
int rq_fd_set_conn(int fd);

/*
 * Makes fd name connection c (taking over its reference; NULL: none, and
 * -ENOMEM). Returns 0 or -errno (then c was given back and fd stays untracked).
 */
int rq_fd_set_conn_to(int fd, struct rq_conn *c);

/* Gives fd an entry with no flags, so that rq_fd_gen sees its close. Returns 0 or -errno. */
int rq_fd_track(int fd);

/* Forgets fd (it was closed or replaced), dropping its reference to a connection. */
void rq_fd_forget(int fd);

/* Forgets every fd in [lo, hi]. */
void rq_fd_forget_range(unsigned lo, unsigned hi);

/*
 * Makes `to` what `from` is (dup, dup2, dup3, F_DUPFD): the same connection
 * (one more reference), a copy of a carrier's slot, a copy of a log's line
 * state.
 */
void rq_fd_copy(int from, int to);

/* The entry's generation: it changes whenever the fd is closed, reused or copied onto. */
static inline uint32_t rq_fd_gen(int fd)
{
	struct rq_fd *e = rq_fd_peek(fd);

	return e ? atomic_load_explicit(&e->gen, memory_order_acquire) : 0;
}

/* Makes fd a context carrier (see carry.h); relay: RQ_FD_RELAY too. Returns 0 or -errno. */
int rq_fd_set_carry(int fd, int peer);
int rq_fd_set_relay(int fd);

/*
 * Before dup2/dup3(from, to): whether `to` stays what it is, a log stream,
 * rather than becoming a copy of `from`. It does in a process that listens
 * (`listened`: it, or the process it was forked from, called listen() or
 * accepted) when `to` is a stderr-like fd (REQCTX_CHILD_LOG_FDS, 2) and a log
 * now, and `from` a carrier (a pipe or socket the process made): a worker
 * whose stderr its master redirects into a pipe (php-fpm's
 * catch_workers_output) still writes log lines, prefix included, which the
 * master's read of that pipe takes the ID from (carry.h). Stdout never
 * does (a shell's $(...) is data), nor does anything in a process that never
 * listened (a script under `reqctx run`).
 */
int rq_fd_stays_log(int from, int to, int listened);

#endif
