/*
 * The read and write families. Reads are handed to src/ after the real call
 * (the bytes are the request stream); writes are handed to src/, which makes
 * the one real call itself, with the prefix or header woven in.
 */
#include <sys/sendfile.h>

#include "carry.h"
#include "io.h"
#include "preload.h"

#define ONE(p, n) (struct iovec){ .iov_base = (void *)(p), .iov_len = (n) }

RQ_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_RAW(read, fd, buf, n);
	r = rq_real.read(fd, buf, n);
	rq_io_read(fd, &v, 1, r);
	return r;
}

RQ_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_RAW(read, fd, buf, n);
	r = rq_real.__read_chk(fd, buf, n, buflen);
	rq_io_read(fd, &v, 1, r);
	return r;
}

RQ_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t r;

	if (unlikely(!rq_ready()))
		return RQ_RAW(readv, fd, iov, iovcnt);
	r = rq_real.readv(fd, iov, iovcnt);
	rq_io_read(fd, iov, iovcnt, r);
	return r;
}

/* MSG_PEEK leaves the bytes to be read again: only the context moves. */
static void after_recv(int fd, const struct iovec *iov, int iovcnt, ssize_t r, int flags)
{
	rq_io_read(fd, iov, iovcnt, (flags & (MSG_PEEK | MSG_TRUNC)) ? 0 : r);
}

RQ_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_RAW(recvfrom, fd, buf, n, flags, NULL, NULL);
	r = rq_real.recv(fd, buf, n, flags);
	after_recv(fd, &v, 1, r, flags);
	return r;
}

RQ_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_RAW(recvfrom, fd, buf, n, flags, NULL, NULL);
	r = rq_real.__recv_chk(fd, buf, n, buflen, flags);
	after_recv(fd, &v, 1, r, flags);
	return r;
}

RQ_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from,
			   socklen_t *fromlen)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_RAW(recvfrom, fd, buf, n, flags, from, fromlen);
	r = rq_real.recvfrom(fd, buf, n, flags, from, fromlen);
	after_recv(fd, &v, 1, r, flags);
	return r;
}

RQ_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				 struct sockaddr *from, socklen_t *fromlen)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_RAW(recvfrom, fd, buf, n, flags, from, fromlen);
	r = rq_real.__recvfrom_chk(fd, buf, n, buflen, flags, from, fromlen);
	after_recv(fd, &v, 1, r, flags);
	return r;
}

RQ_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready()))
		return RQ_RAW(recvmsg, fd, msg, flags);
	r = rq_real.recvmsg(fd, msg, flags);
	if (unlikely(r < 0 || (uintptr_t)msg < 4096))
		after_recv(fd, NULL, 0, 0, 0);
	else
		after_recv(fd, msg->msg_iov, (int)msg->msg_iovlen, r, flags);
	return r;
}

RQ_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags,
		       struct timespec *timeout)
{
	int r;

	if (unlikely(!rq_ready() || !rq_real.recvmmsg))
		return (int)RQ_RAW(recvmmsg, fd, v, n, flags, timeout);
	r = rq_real.recvmmsg(fd, v, n, flags, timeout);
	if (r <= 0)
		after_recv(fd, NULL, 0, 0, 0);
	for (int i = 0; i < r; i++)
		after_recv(fd, v[i].msg_hdr.msg_iov, (int)v[i].msg_hdr.msg_iovlen,
			   (ssize_t)v[i].msg_len, flags);
	return r;
}

/*
 * The write family. An fd reqctx knows nothing about costs a flag test and a
 * tail call to libc; everything else (not initialised yet, logs, connections,
 * carriers) goes out of line, where the call is described for src/.
 */
static inline __attribute__((always_inline)) int fast(int fd)
{
	return likely(atomic_load_explicit(&rq_state, memory_order_acquire) == RQ_READY) &&
	       likely(!rq_fd_flags(rq_fd_peek(fd)));
}

static __attribute__((noinline)) ssize_t write_slow(int fd, const void *buf, size_t n,
						    const struct rq_call *k)
{
	struct iovec v = ONE(buf, n);
	struct rq_fd *e;

	if (unlikely(!rq_ready()))
		return k->how == RQ_WRITE ? RQ_RAW(write, fd, buf, n)
					  : RQ_RAW(sendto, fd, buf, n, k->flags, k->to, k->tolen);
	e = rq_fd_peek(fd);
	if (rq_fd_flags(e) == RQ_FD_CARRY)
		rq_carry_put(fd, e); /* and the call goes out as it is */
	else if (rq_fd_flags(e))
		return rq_io_write_slow(fd, e, &v, 1, k);
	return rq_io_plain(fd, &v, 1, k);
}

static __attribute__((noinline)) ssize_t writev_slow(int fd, const struct iovec *iov,
						     int iovcnt, const struct rq_call *k)
{
	if (unlikely(!rq_ready()))
		return k->how == RQ_WRITEV ? RQ_RAW(writev, fd, iov, iovcnt)
					   : RQ_RAW(sendmsg, fd, k->msg, k->flags);
	if (k->how == RQ_SENDMSG && unlikely((uintptr_t)k->msg < 4096))
		return rq_real.sendmsg(fd, k->msg, k->flags);
	return rq_io_write(fd, iov, iovcnt, k);
}

RQ_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	if (fast(fd))
		return rq_real.write(fd, buf, n);
	return write_slow(fd, buf, n, &(const struct rq_call){ .how = RQ_WRITE });
}

RQ_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	if (fast(fd))
		return rq_real.writev(fd, iov, iovcnt);
	return writev_slow(fd, iov, iovcnt, &(const struct rq_call){ .how = RQ_WRITEV });
}

RQ_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	if (fast(fd))
		return rq_real.send(fd, buf, n, flags);
	return write_slow(fd, buf, n, &(const struct rq_call){ .how = RQ_SEND, .flags = flags });
}

RQ_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
			 const struct sockaddr *to, socklen_t tolen)
{
	if (fast(fd))
		return rq_real.sendto(fd, buf, n, flags, to, tolen);
	return write_slow(fd, buf, n, &(const struct rq_call){ .how = RQ_SENDTO, .flags = flags,
							     .to = to, .tolen = tolen });
}

RQ_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (fast(fd))
		return rq_real.sendmsg(fd, msg, flags);
	return writev_slow(fd, (uintptr_t)msg < 4096 ? NULL : msg->msg_iov,
			   (uintptr_t)msg < 4096 ? 0 : (int)msg->msg_iovlen,
			   &(const struct rq_call){ .how = RQ_SENDMSG, .flags = flags, .msg = msg });
}

RQ_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	ssize_t r;

	if (unlikely(!rq_ready()))
		return RQ_RAW(sendfile, out, in, off, n);
	r = rq_real.sendfile(out, in, off, n);
	rq_conn_opaque(out, r);
	return r;
}

RQ_EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t n)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !rq_real.sendfile64))
		return RQ_RAW(sendfile, out, in, off, n);
	r = rq_real.sendfile64(out, in, off, n);
	rq_conn_opaque(out, r);
	return r;
}
