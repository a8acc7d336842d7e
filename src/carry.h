/*
 * Context carriers: descriptors that move a request context from the thread
 * that writes to them to the thread that reads from them.
 *
 * Sockets, socketpairs, pipes, eventfds and timerfds a process creates are
 * carriers. They start with the context current when they were created (an
 * upstream connection opened for a request belongs to it), and every write
 * (or timerfd_settime) replaces what they carry with the writer's context,
 * so that a read, or an epoll event, on the other side resumes it:
 *
 *   write(eventfd) in request A  ->  read(eventfd) in a worker runs as A
 *   timerfd armed in request A   ->  its expiry, read or polled, runs as A
 *   request sent upstream for A  ->  the upstream's response is read as A
 *
 * A carrier holds one context: the last writer's. Two requests writing to
 * the same carrier before its reader runs (a shared wakeup eventfd, say)
 * leave the reader with the second. README "How context travels" lists this
 * and the other cases a syscall-level view cannot get right.
 */
#ifndef RQ_CARRY_H
#define RQ_CARRY_H

#include <string.h>
#include <sys/uio.h>

#include "ctx.h"
#include "fdtab.h"

/*
 * fd was just created and carries the current context. For a pipe, call it
 * for the read end with peer -1 and for the write end with peer = read end.
 */
void rq_carry_new(int fd, int peer);

/* fd was written to or armed: it (or its peer) now carries the current context. */
void rq_carry_put(int fd, struct rq_fd *e);

/* After a read on carrier fd: the carried context becomes the thread's. */
void rq_carry_read(int fd);

/*
 * After a read of r bytes (in iov) on relay fd (a pipe's read end, e its
 * entry): a process that relays its workers' output reads their log lines,
 * each starting with the worker's prefix. On a thread outside any request
 * of its own (its context is unknown, or one a relay read made current), a
 * read that starts a line takes that line's ID as the pipe's context (an
 * invalid ID, "unknown", or no prefix: unknown) and makes it current; a
 * read inside a line keeps the pipe's context. On a thread in a request of
 * its own (a server reading a child's output) the pipe is a carrier as any,
 * whatever its bytes say. One read has one context: that of the line it
 * starts with.
 */
void rq_carry_relay(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt, ssize_t r);

/*
 * A thread whose context a relay read set writes what it relays: a line
 * that starts with a valid prefix (not "unknown") is a relayed line and
 * keeps that prefix alone (src/lines.h), so that the lines of several
 * requests read at once each keep their own.
 */
extern RQ_TLS uint64_t rq_relay_serial;
extern RQ_TLS int rq_relay_on;

static inline int rq_relaying(void)
{
	return unlikely(rq_relay_on) && rq_ctx_cur()->serial == rq_relay_serial;
}

/* Whether the `left` bytes from iov[i] at off start with a valid prefix. */
int rq_relay_prefixed(const struct iovec *iov, int iovcnt, int i, size_t off, size_t left);

/*
 * php-fpm's flush command: a worker writes these 6 bytes to its stderr pipe
 * at the end of each request, and the master ends the line it holds there.
 * It is no log text: it gets no prefix, and after it a line starts.
 */
#define RQ_FPM_FLUSH "\0fscf\0"
#define RQ_FPM_FLUSH_LEN 6

/* Whether the n bytes at p are exactly RQ_FPM_FLUSH. */
static inline int rq_fpm_flush(const void *p, size_t n)
{
	return n == RQ_FPM_FLUSH_LEN && !memcmp(p, RQ_FPM_FLUSH, RQ_FPM_FLUSH_LEN);
}

/*
 * Makes fd's context the calling thread's: a connection's current request,
 * what a carrier carries, the writer whose log write the kernel left pending
 * (src/io.c), or "unknown" for any other fd.
 */
void rq_fd_enter(int fd);

#endif
