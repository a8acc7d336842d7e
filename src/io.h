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

#include "carry.h"
#include "config.h"
#include "conn.h"
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

/* The write path for fds that are logs or connections (e: fd's entry, fl: its flags). */
ssize_t rq_io_write_slow(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k, uint32_t fl);

/* Repeats the caller's call unchanged. */
ssize_t rq_io_plain(int fd, const struct iovec *iov, int iovcnt, const struct rq_call *k);

/*
 * Stands in for write/writev/send/sendto/sendmsg on fd, whose entry is e
 * (looked up once, by the caller). iov holds the caller's bytes (for write
 * and send, one entry). A carrier never looks at the bytes: it takes the
 * writer's context, and the call goes out as it is.
 */
static inline ssize_t rq_io_write_e(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
				    const struct rq_call *k)
{
	uint32_t fl = rq_fd_flags(e);

	if (likely(!(fl & ~RQ_FD_CIPHER)))
		return rq_io_plain(fd, iov, iovcnt, k);
	if (fl & RQ_FD_CARRY) {
		rq_carry_put(fd, e);
		return rq_io_plain(fd, iov, iovcnt, k);
	}
	return rq_io_write_slow(fd, e, iov, iovcnt, k, fl);
}

/* The same, looking fd up. */
static inline ssize_t rq_io_write(int fd, const struct iovec *iov, int iovcnt,
				  const struct rq_call *k)
{
	return rq_io_write_e(fd, rq_fd_peek(fd), iov, iovcnt, k);
}

/*
 * After a read on connection c: scans the r bytes in iov, sets the context.
 * A plain connection whose first bytes are a TLS ClientHello waits for its
 * SSL object; a TLS one's bytes are ciphertext, left alone.
 */
void rq_io_conn_read(struct rq_conn *c, const struct iovec *iov, int iovcnt, ssize_t r);

/* The same for connection fd. */
void rq_conn_read(int fd, const struct iovec *iov, int iovcnt, ssize_t r);

/*
 * Bytes that reach or leave a connection through a call reqctx cannot weave
 * into or cannot read (README, "Response header"):
 *   rq_conn_opaque   r bytes written unseen (sendfile, splice, copy_file_range);
 *                    also a carrier write. They can only be body bytes;
 *                    anywhere else no header goes out on the connection again;
 *   rq_conn_wrote    r bytes written from iov, seen but not woven into
 *                    (sendmmsg, pwritev2): the scanner follows them;
 *   rq_conn_skipped  r request bytes read unseen (splice from the socket);
 *   rq_conn_unseen   bytes will go out by a way reqctx cannot follow at all
 *                    (stdio on the connection): no header on it again.
 * rq_conn_unseen_pre, before such a call, finishes a header a short write
 * cut, so that no byte lands inside it: 0, or -errno (then the call must not
 * be made: the caller gets that error, EAGAIN on a non-blocking socket).
 */
void rq_conn_opaque(int fd, ssize_t r);
void rq_conn_wrote(int fd, const struct iovec *iov, int iovcnt, ssize_t r);
void rq_conn_skipped(int fd, ssize_t r);
void rq_conn_unseen(int fd);
int rq_conn_unseen_pre(int fd);

/* Called after any read-family call: cheap unless fd is a connection or carrier. */
static inline void rq_io_read(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	struct rq_fd *e = rq_fd_peek(fd);
	uint32_t fl = rq_fd_flags(e);
	struct rq_conn *c;

	if (likely(!(fl & ~RQ_FD_CIPHER)))
		return; /* (a TLS fd's ciphertext: the SSL layer reads the plaintext) */
	rq_evq_touch(fd);
	if ((fl & RQ_FD_CONN) && (c = rq_fd_conn(e)))
		rq_io_conn_read(c, iov, iovcnt, r);
	else if (unlikely(fl & RQ_FD_RELAY))
		rq_carry_relay(fd, e, iov, iovcnt, r);
	else if (fl & RQ_FD_CARRY)
		rq_carry_read(fd);
}

/* Before a call that writes fd without reqctx weaving into it: see rq_conn_unseen_pre. */
static inline int rq_io_unseen_pre(int fd)
{
	if (likely(!(rq_fd_flags(rq_fd_peek(fd)) & RQ_FD_CONN)))
		return 0;
	return rq_conn_unseen_pre(fd);
}

/* After r bytes moved from fd `in` to fd `out` by splice, tee, sendfile or copy_file_range (-1: none). */
static inline void rq_io_moved(int in, int out, ssize_t r)
{
	uint32_t fi = in >= 0 ? rq_fd_flags(rq_fd_peek(in)) : 0;

	if (unlikely(fi & RQ_FD_CONN))
		rq_conn_skipped(in, r);
	else if (unlikely(fi & RQ_FD_CARRY))
		rq_carry_read(in);
	if (unlikely(rq_fd_flags(rq_fd_peek(out)) & (RQ_FD_CONN | RQ_FD_CARRY)))
		rq_conn_opaque(out, r);
}

/* After r bytes of iov were written to fd by a call reqctx saw but did not weave into. */
static inline void rq_io_wrote(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	uint32_t fl = rq_fd_flags(rq_fd_peek(fd));

	if (unlikely(fl & RQ_FD_CONN))
		rq_conn_wrote(fd, iov, iovcnt, r);
	else if (unlikely(fl & RQ_FD_CARRY))
		rq_conn_opaque(fd, r); /* a carrier: takes the writer's context */
}

#endif
