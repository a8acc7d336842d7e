/*
 * The fd lifecycle: accepted connections, closes and duplicates keep the fd
 * table true to the kernel's.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <pthread.h>

#include "carry.h"
#include "config.h"
#include "evq.h"
#include "fdtab.h"
#include "out.h"
#include "preload.h"

/*
 * vfork: the child runs in the parent's memory until it execs or exits, so
 * its dup2, close or close_range (Python's subprocess makes all three) must
 * not rewrite the parent's fd table. The vfork wrapper marks the calling
 * thread with its pid and jumps to glibc's vfork, leaving no frame of its own
 * on the stack the child shares. While the mark is set, a call from another
 * pid (the child) leaves the table alone; the first call from the parent
 * itself, which runs again only once the child has gone, clears it.
 */
static RQ_TLS pid_t vfork_pid;
static void *_Atomic real_vfork;

void *rq_vfork_prepare(void);

static void vfork_unmark(void)
{
	vfork_pid = 0;
}

__attribute__((used)) void *rq_vfork_prepare(void)
{
	void *f = atomic_load_explicit(&real_vfork, memory_order_relaxed);

	if (!f) {
		f = dlsym(RTLD_NEXT, "vfork");
		if (!f)
			f = (void *)fork; /* vfork may always behave as fork */
		if (!atomic_exchange(&real_vfork, f))
			pthread_atfork(NULL, NULL, vfork_unmark); /* a forked child is no vfork child */
	}
	vfork_pid = (pid_t)syscall(SYS_getpid);
	return f;
}

#if defined(__x86_64__)
__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	"vfork:\n"
	"	sub $8, %rsp\n"
	"	call rq_vfork_prepare\n"
	"	add $8, %rsp\n"
	"	jmp *%rax\n"
	".size vfork, .-vfork\n");
#elif defined(__aarch64__)
__asm__(".text\n"
	".globl vfork\n"
	".type vfork, %function\n"
	"vfork:\n"
	"	stp x29, x30, [sp, #-16]!\n"
	"	bl rq_vfork_prepare\n"
	"	ldp x29, x30, [sp], #16\n"
	"	br x0\n"
	".size vfork, .-vfork\n");
#endif

int rq_vfork_child(void)
{
	if (likely(!vfork_pid))
		return 0;
	if ((pid_t)syscall(SYS_getpid) != vfork_pid)
		return 1;
	vfork_pid = 0;
	return 0;
}

/* The process listens: it called listen() or accepted (or was forked from one that did). */
static _Atomic int listened;

/* An accept succeeds only on a listening socket: the process serves, if it did not yet. */
static int accepted(int fd)
{
	if (fd >= 0) {
		atomic_store_explicit(&listened, 1, memory_order_relaxed);
		RQ_SAVE_ERRNO(rq_fd_set_conn(fd));
		if (unlikely(!rq_serving()))
			rq_serving_start();
	}
	return fd;
}

RQ_EXPORT int listen(int s, int backlog)
{
	int r;

	if (unlikely(!rq_ready()))
		return RQ_FALL(listen, (s, backlog), (int)RQ_RAW(listen, s, backlog));
	r = rq_real.listen(s, backlog);
	if (r == 0)
		atomic_store_explicit(&listened, 1, memory_order_relaxed);
	if (r == 0 && !rq_serving())
		rq_serving_start();
	return r;
}

RQ_EXPORT int accept(int s, struct sockaddr *addr, socklen_t *len)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(accept, (s, addr, len), (int)RQ_RAW(accept, s, addr, len));
	return accepted(rq_real.accept(s, addr, len));
}

RQ_EXPORT int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(accept4, (s, addr, len, flags),
			       (int)RQ_RAW(accept4, s, addr, len, flags));
	return accepted(rq_real.accept4(s, addr, len, flags));
}

/* Sockets a process makes itself (upstreams, listeners) carry contexts. */
RQ_EXPORT int socket(int domain, int type, int proto)
{
	int fd;

	if (unlikely(!rq_ready()))
		return RQ_FALL(socket, (domain, type, proto),
			       (int)RQ_RAW(socket, domain, type, proto));
	fd = rq_real.socket(domain, type, proto);
	rq_carry_new(fd, -1);
	return fd;
}

/*
 * A stream socket the process made and connects is an upstream: the requests
 * it writes carry the ID (src/out.h). A connect in progress counts; any
 * other failure leaves the socket as it was.
 */
RQ_EXPORT int connect(int s, const struct sockaddr *addr, socklen_t len)
{
	int r;

	if (unlikely(!rq_ready()))
		return RQ_FALL(connect, (s, addr, len), (int)RQ_RAW(connect, s, addr, len));
	r = rq_real.connect(s, addr, len);
	if (r == 0 || errno == EINPROGRESS)
		rq_out_connect(s, addr, len);
	return r;
}

RQ_EXPORT int socketpair(int domain, int type, int proto, int sv[2])
{
	int r;

	if (unlikely(!rq_ready()))
		return RQ_FALL(socketpair, (domain, type, proto, sv),
			       (int)RQ_RAW(socketpair, domain, type, proto, sv));
	r = rq_real.socketpair(domain, type, proto, sv);
	if (r == 0) {
		rq_carry_new(sv[0], -1);
		rq_carry_new(sv[1], -1);
	}
	return r;
}

/* The entry is dropped before the fd is: once closed, its number may be reused at once. */
RQ_EXPORT int close(int fd)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(close, (fd), (int)RQ_RAW(close, fd));
	if (unlikely(rq_vfork_child()))
		return rq_real.close(fd);
	rq_fd_forget(fd);
	return rq_real.close(fd);
}

RQ_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	int r;

	if (unlikely(!rq_ready() || !rq_real.close_range))
		return RQ_FALL(close_range, (first, last, flags),
			       (int)RQ_RAW(close_range, first, last, flags));
	r = rq_real.close_range(first, last, flags);
	if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC) && !rq_vfork_child())
		RQ_SAVE_ERRNO(rq_fd_forget_range(first, last));
	return r;
}

RQ_EXPORT void closefrom(int lowfd)
{
	if (unlikely(!rq_ready() || !rq_real.closefrom)) {
		if (rq_passing() && rq_real.closefrom)
			rq_real.closefrom(lowfd);
		else
			RQ_RAW(close_range, lowfd, ~0u, 0);
		return;
	}
	rq_real.closefrom(lowfd);
	if (lowfd >= 0 && !rq_vfork_child())
		RQ_SAVE_ERRNO(rq_fd_forget_range((unsigned)lowfd, ~0u));
}

static int duplicated(int from, int to, int keep)
{
	if (to >= 0 && !rq_vfork_child()) {
		RQ_SAVE_ERRNO(keep ? rq_fd_set_log(to) : rq_fd_copy(from, to));
		rq_evq_dup(from, to);
	}
	return to;
}

RQ_EXPORT int dup(int fd)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(dup, (fd), (int)RQ_RAW(dup, fd));
	return duplicated(fd, rq_real.dup(fd), 0);
}

RQ_EXPORT int dup2(int fd, int to)
{
	int keep;

	if (unlikely(!rq_ready()))
		return RQ_FALL(dup2, (fd, to), (int)RQ_RAW(dup2, fd, to));
	keep = !rq_vfork_child() && rq_fd_stays_log(fd, to, atomic_load_explicit(&listened, memory_order_relaxed));
	return duplicated(fd, rq_real.dup2(fd, to), keep);
}

RQ_EXPORT int dup3(int fd, int to, int flags)
{
	int keep;

	if (unlikely(!rq_ready()))
		return RQ_FALL(dup3, (fd, to, flags), (int)RQ_RAW(dup3, fd, to, flags));
	keep = !rq_vfork_child() && rq_fd_stays_log(fd, to, atomic_load_explicit(&listened, memory_order_relaxed));
	return duplicated(fd, rq_real.dup3(fd, to, flags), keep);
}

/*
 * fcntl's third argument is an int or a pointer depending on cmd; on the
 * x86-64 and aarch64 ABIs either travels in the same register, so it is
 * passed on as a pointer-sized value, as other preload libraries do.
 */
static int do_fcntl(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
	int r;

	if (unlikely(!rq_ready() || !real))
		return real && rq_passing() ? real(fd, cmd, arg) : (int)RQ_RAW(fcntl, fd, cmd, arg);
	r = real(fd, cmd, arg);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		duplicated(fd, r, 0);
	return r;
}

RQ_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return do_fcntl(RQ_REAL(fcntl), fd, cmd, arg);
}

RQ_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return do_fcntl(RQ_REAL(fcntl64), fd, cmd, arg);
}
