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
		return RQ_FALL(read, (fd, buf, n), RQ_RAW(read, fd, buf, n));
	r = rq_real.read(fd, buf, n);
	rq_io_read(fd, &v, 1, r);
	return r;
}

RQ_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_FALL(__read_chk, (fd, buf, n, buflen), RQ_RAW(read, fd, buf, n));
	r = rq_real.__read_chk(fd, buf, n, buflen);
	rq_io_read(fd, &v, 1, r);
	return r;
}

RQ_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t r;

	if (unlikely(!rq_ready()))
		return RQ_FALL(readv, (fd, iov, iovcnt), RQ_RAW(readv, fd, iov, iovcnt));
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
		return RQ_FALL(recv, (fd, buf, n, flags),
			       RQ_RAW(recvfrom, fd, buf, n, flags, NULL, NULL));
	r = rq_real.recv(fd, buf, n, flags);
	after_recv(fd, &v, 1, r, flags);
	return r;
}

RQ_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	ssize_t r;
	struct iovec v = ONE(buf, n);

	if (unlikely(!rq_ready()))
		return RQ_FALL(__recv_chk, (fd, buf, n, buflen, flags),
			       RQ_RAW(recvfrom, fd, buf, n, flags, NULL, NULL));
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
		return RQ_FALL(recvfrom, (fd, buf, n, flags, from, fromlen),
			       RQ_RAW(recvfrom, fd, buf, n, flags, from, fromlen));
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
		return RQ_FALL(__recvfrom_chk, (fd, buf, n, buflen, flags, from, fromlen),
			       RQ_RAW(recvfrom, fd, buf, n, flags, from, fromlen));
	r = rq_real.__recvfrom_chk(fd, buf, n, buflen, flags, from, fromlen);
	after_recv(fd, &v, 1, r, flags);
	return r;
}

RQ_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready()))
		return RQ_FALL(recvmsg, (fd, msg, flags), RQ_RAW(recvmsg, fd, msg, flags));
	r = rq_real.recvmsg(fd, msg, flags);
	if (unlikely(r < 0 || (uintptr_t)msg < RQ_FIRST_PAGE))
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
		return RQ_FALL(recvmmsg, (fd, v, n, flags, timeout),
			       (int)RQ_RAW(recvmmsg, fd, v, n, flags, timeout));
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
 * carriers) goes out of line, where the call is described for src/. The fd is
 * looked up once: the slow path gets its entry (NULL if reqctx was not ready).
 */
static inline __attribute__((always_inline)) int fast(int fd, struct rq_fd **e)
{
	if (unlikely(atomic_load_explicit(&rq_state, memory_order_acquire) != RQ_ST_READY))
		return 0;
	*e = rq_fd_peek(fd);
	return likely(!(rq_fd_flags(*e) & ~RQ_FD_CIPHER)); /* (a TLS fd's ciphertext: untouched) */
}

/* The entry of fd once reqctx is ready, or NULL to pass the call straight through. */
static struct rq_fd *slow_entry(int fd, struct rq_fd *e)
{
	if (likely(e))
		return e;
	if (!rq_ready())
		return NULL;
	e = rq_fd_peek(fd);
	return rq_fd_flags(e) ? e : NULL;
}

static __attribute__((noinline)) ssize_t write_slow(int fd, const void *buf, size_t n,
						    const struct rq_call *k, struct rq_fd *e)
{
	struct iovec v = ONE(buf, n);

	if (!(e = slow_entry(fd, e))) {
		if (rq_ready() || rq_passing())
			return rq_io_plain(fd, &v, 1, k);
		return k->how == RQ_WRITE ? RQ_RAW(write, fd, buf, n)
					  : RQ_RAW(sendto, fd, buf, n, k->flags, k->to, k->tolen);
	}
	return rq_io_write_e(fd, e, &v, 1, k);
}

static __attribute__((noinline)) ssize_t writev_slow(int fd, const struct iovec *iov,
						     int iovcnt, const struct rq_call *k,
						     struct rq_fd *e)
{
	if (!(e = slow_entry(fd, e))) {
		if (rq_ready() || rq_passing())
			return rq_io_plain(fd, iov, iovcnt, k);
		return k->how == RQ_WRITEV ? RQ_RAW(writev, fd, iov, iovcnt)
					   : RQ_RAW(sendmsg, fd, k->msg, k->flags);
	}
	if (k->how == RQ_SENDMSG && unlikely((uintptr_t)k->msg < RQ_FIRST_PAGE))
		return rq_real.sendmsg(fd, k->msg, k->flags);
	return rq_io_write_e(fd, e, iov, iovcnt, k);
}

RQ_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	struct rq_fd *e = NULL;

	if (fast(fd, &e))
		return rq_real.write(fd, buf, n);
	return write_slow(fd, buf, n, &(const struct rq_call){ .how = RQ_WRITE }, e);
}

RQ_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct rq_fd *e = NULL;

	if (fast(fd, &e))
		return rq_real.writev(fd, iov, iovcnt);
	return writev_slow(fd, iov, iovcnt, &(const struct rq_call){ .how = RQ_WRITEV }, e);
}

RQ_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct rq_fd *e = NULL;

	if (fast(fd, &e))
		return rq_real.send(fd, buf, n, flags);
	return write_slow(fd, buf, n, &(const struct rq_call){ .how = RQ_SEND, .flags = flags },
			  e);
}

RQ_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
			 const struct sockaddr *to, socklen_t tolen)
{
	struct rq_fd *e = NULL;

	if (fast(fd, &e))
		return rq_real.sendto(fd, buf, n, flags, to, tolen);
	return write_slow(fd, buf, n, &(const struct rq_call){ .how = RQ_SENDTO, .flags = flags,
							     .to = to, .tolen = tolen }, e);
}

RQ_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct rq_fd *e = NULL;
	int bad = (uintptr_t)msg < RQ_FIRST_PAGE;

	if (fast(fd, &e))
		return rq_real.sendmsg(fd, msg, flags);
	return writev_slow(fd, bad ? NULL : msg->msg_iov, bad ? 0 : (int)msg->msg_iovlen,
			   &(const struct rq_call){ .how = RQ_SENDMSG, .flags = flags, .msg = msg }, e);
}

/*
 * Calls that move bytes the library cannot weave into. Before one writes to
 * a connection, a header a short write cut is finished (or the call fails
 * with that write's error, EAGAIN on a non-blocking socket); after it, src/
 * accounts for the bytes: body bytes keep the response scanner in step, any
 * other stops the header on that connection for good.
 */
#define UNSEEN_PRE(fd)                                   \
	do {                                             \
		int rq_e_ = rq_io_unseen_pre(fd);        \
		if (unlikely(rq_e_ < 0)) {               \
			errno = -rq_e_;                  \
			return -1;                       \
		}                                        \
	} while (0)

RQ_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	ssize_t r;

	if (unlikely(!rq_ready()))
		return RQ_FALL(sendfile, (out, in, off, n),
			       RQ_RAW(sendfile, out, in, off, n));
	UNSEEN_PRE(out);
	r = rq_real.sendfile(out, in, off, n);
	rq_io_moved(-1, out, r);
	return r;
}

RQ_EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t n)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !rq_real.sendfile64))
		return RQ_FALL(sendfile64, (out, in, off, n),
			       RQ_RAW(sendfile, out, in, off, n));
	UNSEEN_PRE(out);
	r = rq_real.sendfile64(out, in, off, n);
	rq_io_moved(-1, out, r);
	return r;
}

RQ_EXPORT ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t n,
			 unsigned int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !rq_real.splice))
		return RQ_FALL(splice, (in, off_in, out, off_out, n, flags),
			       RQ_RAW(splice, in, off_in, out, off_out, n, flags));
	UNSEEN_PRE(out);
	r = rq_real.splice(in, off_in, out, off_out, n, flags);
	rq_io_moved(in, out, r);
	return r;
}

/* tee duplicates a pipe's bytes into another pipe: the first is read, the second written. */
RQ_EXPORT ssize_t tee(int in, int out, size_t n, unsigned int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !rq_real.tee))
		return RQ_FALL(tee, (in, out, n, flags),
			       RQ_RAW(tee, in, out, n, flags));
	UNSEEN_PRE(out);
	r = rq_real.tee(in, out, n, flags);
	rq_io_moved(in, out, r);
	return r;
}

/* vmsplice fills a pipe with the caller's pages: a write to that pipe. */
RQ_EXPORT ssize_t vmsplice(int fd, const struct iovec *iov, size_t n, unsigned int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !rq_real.vmsplice))
		return RQ_FALL(vmsplice, (fd, iov, n, flags),
			       RQ_RAW(vmsplice, fd, iov, n, flags));
	UNSEEN_PRE(fd);
	r = rq_real.vmsplice(fd, iov, n, flags);
	rq_io_moved(-1, fd, r);
	return r;
}

RQ_EXPORT ssize_t copy_file_range(int in, loff_t *off_in, int out, loff_t *off_out, size_t n,
				  unsigned int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !rq_real.copy_file_range))
		return RQ_FALL(copy_file_range, (in, off_in, out, off_out, n, flags),
			       RQ_RAW(copy_file_range, in, off_in, out, off_out, n, flags));
	UNSEEN_PRE(out);
	r = rq_real.copy_file_range(in, off_in, out, off_out, n, flags);
	rq_io_moved(in, out, r);
	return r;
}

/* Each message of a sendmmsg goes out as given; on a connection the scanner follows its bytes. */
RQ_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	int r;

	if (unlikely(!rq_ready() || !rq_real.sendmmsg))
		return RQ_FALL(sendmmsg, (fd, v, n, flags),
			       (int)RQ_RAW(sendmmsg, fd, v, n, flags));
	if (fast(fd, &(struct rq_fd *){ NULL }))
		return rq_real.sendmmsg(fd, v, n, flags);
	UNSEEN_PRE(fd);
	r = rq_real.sendmmsg(fd, v, n, flags);
	if (r <= 0)
		rq_io_wrote(fd, NULL, 0, 0);
	for (int i = 0; i < r; i++)
		rq_io_wrote(fd, v[i].msg_hdr.msg_iov, (int)v[i].msg_hdr.msg_iovlen,
			    (ssize_t)v[i].msg_len);
	return r;
}

/*
 * pwritev2 and preadv2 at offset -1 read and write a socket as writev and
 * readv do (the flags have no send/recv equivalent): they are followed, not
 * woven into. The raw fallback passes the offset as the kernel's lo/hi pair.
 */
#define RAW_V2(name, fd, iov, cnt, off, flags)                                            \
	RQ_RAW(name, fd, iov, cnt, (unsigned long)(off),                                   \
	       (unsigned long)((unsigned long long)(off) >> 32), flags)

static ssize_t pwv2(ssize_t (*real)(int, const struct iovec *, int, off64_t, int), int fd,
		    const struct iovec *iov, int cnt, off64_t off, int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !real))
		return real && rq_passing() ? real(fd, iov, cnt, off, flags)
					    : RAW_V2(pwritev2, fd, iov, cnt, off, flags);
	if (fast(fd, &(struct rq_fd *){ NULL }))
		return real(fd, iov, cnt, off, flags);
	UNSEEN_PRE(fd);
	r = real(fd, iov, cnt, off, flags);
	rq_io_wrote(fd, iov, cnt, r);
	return r;
}

RQ_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return pwv2(RQ_REAL(pwritev64v2), fd, iov, cnt, off, flags);
}

RQ_EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
	return pwv2(RQ_REAL(pwritev64v2), fd, iov, cnt, off, flags);
}

static ssize_t prv2(ssize_t (*real)(int, const struct iovec *, int, off64_t, int), int fd,
		    const struct iovec *iov, int cnt, off64_t off, int flags)
{
	ssize_t r;

	if (unlikely(!rq_ready() || !real))
		return real && rq_passing() ? real(fd, iov, cnt, off, flags)
					    : RAW_V2(preadv2, fd, iov, cnt, off, flags);
	r = real(fd, iov, cnt, off, flags);
	rq_io_read(fd, iov, cnt, r);
	return r;
}

RQ_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return prv2(RQ_REAL(preadv64v2), fd, iov, cnt, off, flags);
}

RQ_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
	return prv2(RQ_REAL(preadv64v2), fd, iov, cnt, off, flags);
}
