/*
 * The read and write families. Reads are handed to src/ after the real call
 * (the bytes are the request stream); writes are handed to src/, which makes
 * the one real call itself, with the prefix or header woven in.
 */
#include <sys/sendfile.h>

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

RQ_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	struct iovec v = ONE(buf, n);
	struct rq_call k = { .how = RQ_WRITE };

	if (unlikely(!rq_ready()))
		return RQ_RAW(write, fd, buf, n);
	return rq_io_write(fd, &v, 1, &k);
}

RQ_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct rq_call k = { .how = RQ_WRITEV };

	if (unlikely(!rq_ready()))
		return RQ_RAW(writev, fd, iov, iovcnt);
	return rq_io_write(fd, iov, iovcnt, &k);
}

RQ_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct iovec v = ONE(buf, n);
	struct rq_call k = { .how = RQ_SEND, .flags = flags };

	if (unlikely(!rq_ready()))
		return RQ_RAW(sendto, fd, buf, n, flags, NULL, 0);
	return rq_io_write(fd, &v, 1, &k);
}

RQ_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
			 const struct sockaddr *to, socklen_t tolen)
{
	struct iovec v = ONE(buf, n);
	struct rq_call k = { .how = RQ_SENDTO, .flags = flags, .to = to, .tolen = tolen };

	if (unlikely(!rq_ready()))
		return RQ_RAW(sendto, fd, buf, n, flags, to, tolen);
	return rq_io_write(fd, &v, 1, &k);
}

RQ_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct rq_call k = { .how = RQ_SENDMSG, .flags = flags, .msg = msg };

	if (unlikely(!rq_ready()))
		return RQ_RAW(sendmsg, fd, msg, flags);
	if (unlikely((uintptr_t)msg < 4096))
		return rq_real.sendmsg(fd, msg, flags);
	return rq_io_write(fd, msg->msg_iov, (int)msg->msg_iovlen, &k);
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
