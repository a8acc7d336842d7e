/*
 * What happens when a server reads or writes: the connection's request
 * becomes the thread's context, reads are scanned for request heads, lines
 * on log streams get their prefix, and response heads get the ID header.
 *
 * The write functions return exactly what the libc call they stand for would
 * return for the caller's own bytes (-1 with errno on failure); inserted bytes
 * are never counted.
 */
#ifndef RQ_IO_H
#define RQ_IO_H

#include <sys/socket.h>
#include <sys/uio.h>

#include "config.h"
#include "evq.h"
#include "fdtab.h"

/* The libc call being stood in for, so that pass-through repeats it exactly. */
enum rq_how { RQ_WRITE, RQ_WRITEV, RQ_SEND, RQ_SENDTO, RQ_SENDMSG };

struct rq_call {
	enum rq_how how;
	int flags;                  /* send*, sendmsg */
	const struct sockaddr *to;  /* sendto */
	socklen_t tolen;
	const struct msghdr *msg;   /* sendmsg */
};

/* Largest prefix or header line reqctx inserts. */
#define RQ_INS_MAX (2 * RQ_PFX_PART + REQCTX_ID_MAX + 8)

/* The write path for fds that are logs or connections. */
ssize_t rq_io_write_slow(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k);

/* Repeats the caller's call unchanged. */
ssize_t rq_io_plain(int fd, const struct iovec *iov, int iovcnt, const struct rq_call *k);

/*
 * Stands in for write/writev/send/sendto/sendmsg. iov holds the caller's
 * bytes (for write and send, one entry).
 */
static inline ssize_t rq_io_write(int fd, const struct iovec *iov, int iovcnt,
				  const struct rq_call *k)
{
	struct rq_fd *e = rq_fd_peek(fd);

	if (likely(!rq_fd_flags(e)))
		return rq_io_plain(fd, iov, iovcnt, k);
	return rq_io_write_slow(fd, e, iov, iovcnt, k);
}

/* After a read on a connection: scans the r bytes in iov, sets the context. */
void rq_conn_read(int fd, const struct iovec *iov, int iovcnt, ssize_t r);

/* After sendfile on a connection: r opaque bytes were written. */
void rq_conn_opaque(int fd, ssize_t r);

/* After a read on a carrier: the carried context becomes the thread's. */
void rq_carry_read(int fd);

/* Called after any read-family call: cheap unless fd is a connection or carrier. */
static inline void rq_io_read(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	uint32_t fl = rq_fd_flags(rq_fd_peek(fd));

	if (likely(!fl))
		return;
	rq_evq_touch(fd);
	if (fl & RQ_FD_CONN)
		rq_conn_read(fd, iov, iovcnt, r);
	else if (fl & RQ_FD_CARRY)
		rq_carry_read(fd);
}

/* Renders the current context's prefix into buf; returns its length. */
size_t rq_prefix_render(char buf[RQ_INS_MAX]);

/*
 * The current context's prefix, from the thread's cache (or rendered into buf
 * when the cache is in use by the code a signal interrupted). Pass the result
 * to rq_prefix_release when done with it.
 */
const char *rq_prefix_acquire(char buf[RQ_INS_MAX], size_t *len);
void rq_prefix_release(const char *pfx);

/* 1 if lines written now get a prefix (0 outside requests with REQCTX_UNKNOWN=bare). */
int rq_prefix_wanted(void);

#endif
