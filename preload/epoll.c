/*
 * Readiness: epoll, poll and select. The callback that handles an event runs
 * in the context of the event's fd (src/evq.h): in split mode epoll events
 * are handed out one per call and poll and select report one ready fd per
 * call; in batch mode every call returns what the kernel returned.
 */
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "evq.h"
#include "preload.h"

int __poll_chk(struct pollfd *, nfds_t, int, size_t);
int __ppoll_chk(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t);

static struct {
	int (*create)(int);
	int (*create1)(int);
	int (*ctl)(int, int, int, struct epoll_event *);
	int (*wait)(int, struct epoll_event *, int, int);
	int (*pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	int (*pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*poll_chk)(struct pollfd *, nfds_t, int, size_t);
	int (*ppoll_chk)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *,
			 size_t);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		       const sigset_t *);
} real;

/* epoll_pwait2 (glibc 2.35), __poll_chk and __ppoll_chk (2.16) may be missing. */
int rq_resolve_epoll(void)
{
	real.create = dlsym(RTLD_NEXT, "epoll_create");
	real.create1 = dlsym(RTLD_NEXT, "epoll_create1");
	real.ctl = dlsym(RTLD_NEXT, "epoll_ctl");
	real.wait = dlsym(RTLD_NEXT, "epoll_wait");
	real.pwait = dlsym(RTLD_NEXT, "epoll_pwait");
	real.pwait2 = dlsym(RTLD_NEXT, "epoll_pwait2");
	real.poll = dlsym(RTLD_NEXT, "poll");
	real.ppoll = dlsym(RTLD_NEXT, "ppoll");
	real.poll_chk = dlsym(RTLD_NEXT, "__poll_chk");
	real.ppoll_chk = dlsym(RTLD_NEXT, "__ppoll_chk");
	real.select = dlsym(RTLD_NEXT, "select");
	real.pselect = dlsym(RTLD_NEXT, "pselect");
	if (!real.create || !real.create1 || !real.ctl || !real.wait || !real.pwait ||
	    !real.poll || !real.ppoll || !real.select || !real.pselect)
		return -ENOSYS;
	pthread_atfork(rq_evq_before_fork, NULL, rq_evq_after_fork);
	return 0;
}

/* ---- epoll ---- */

static int created(int epfd)
{
	if (epfd >= 0)
		rq_evq_created(epfd);
	return epfd;
}

RQ_EXPORT int epoll_create(int size)
{
	if (unlikely(!rq_ready())) {
		if (rq_passing() && real.create)
			return real.create(size);
		if (size <= 0) {
			errno = EINVAL;
			return -1;
		}
		return (int)RQ_RAW(epoll_create1, 0);
	}
	return created(real.create(size));
}

RQ_EXPORT int epoll_create1(int flags)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, create1, (flags), (int)RQ_RAW(epoll_create1, flags));
	return created(real.create1(flags));
}

RQ_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, ctl, (epfd, op, fd, ev),
				  (int)RQ_RAW(epoll_ctl, epfd, op, fd, ev));
	return rq_evq_ctl(real.ctl, epfd, op, fd, ev);
}

static int do_wait(const struct rq_evq_call *k, int epfd, struct epoll_event *ev, int max)
{
	return real.wait(epfd, ev, max, k->timeout);
}

static int do_pwait(const struct rq_evq_call *k, int epfd, struct epoll_event *ev, int max)
{
	return real.pwait(epfd, ev, max, k->timeout, k->mask);
}

static int do_pwait2(const struct rq_evq_call *k, int epfd, struct epoll_event *ev, int max)
{
	return real.pwait2(epfd, ev, max, k->ts, k->mask);
}

RQ_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	struct rq_evq_call k = { .wait = do_wait, .timeout = timeout };

	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, wait, (epfd, ev, max, timeout),
				  (int)RQ_RAW(epoll_pwait, epfd, ev, max, timeout, NULL, _NSIG / 8));
	return rq_evq_wait(epfd, ev, max, &k);
}

RQ_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			  const sigset_t *mask)
{
	struct rq_evq_call k = { .wait = do_pwait, .timeout = timeout, .mask = mask };

	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, pwait, (epfd, ev, max, timeout, mask),
				  (int)RQ_RAW(epoll_pwait, epfd, ev, max, timeout, mask, _NSIG / 8));
	return rq_evq_wait(epfd, ev, max, &k);
}

RQ_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max,
			   const struct timespec *ts, const sigset_t *mask)
{
	struct rq_evq_call k = { .wait = do_pwait2, .by_ts = 1, .ts = ts, .mask = mask };

	if (unlikely(!rq_ready() || !real.pwait2))
		return RQ_FALL_IN(real, pwait2, (epfd, ev, max, ts, mask),
				  (int)RQ_RAW(epoll_pwait2, epfd, ev, max, ts, mask, _NSIG / 8));
	return rq_evq_wait(epfd, ev, max, &k);
}

/* ---- poll ---- */

static int raw_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	struct timespec ts = { timeout / 1000, (timeout % 1000) * 1000000L };

	return (int)RQ_RAW(ppoll, fds, n, timeout < 0 ? NULL : &ts, NULL, _NSIG / 8);
}

RQ_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, poll, (fds, n, timeout), raw_poll(fds, n, timeout));
	rq_evq_idle();
	return rq_poll_after(fds, n, real.poll(fds, n, timeout));
}

RQ_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (unlikely(!rq_ready() || !real.poll_chk))
		return RQ_FALL_IN(real, poll_chk, (fds, n, timeout, fdslen), raw_poll(fds, n, timeout));
	rq_evq_idle();
	return rq_poll_after(fds, n, real.poll_chk(fds, n, timeout, fdslen));
}

/* The kernel updates ppoll's timespec; glibc hands it a copy, and so does this. */
static int raw_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		     const sigset_t *mask)
{
	struct timespec t = ts ? *ts : (struct timespec){ 0, 0 };

	return (int)RQ_RAW(ppoll, fds, n, ts ? &t : NULL, mask, _NSIG / 8);
}

RQ_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		    const sigset_t *mask)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, ppoll, (fds, n, ts, mask), raw_ppoll(fds, n, ts, mask));
	rq_evq_idle();
	return rq_poll_after(fds, n, real.ppoll(fds, n, ts, mask));
}

RQ_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
			  const sigset_t *mask, size_t fdslen)
{
	if (unlikely(!rq_ready() || !real.ppoll_chk))
		return RQ_FALL_IN(real, ppoll_chk, (fds, n, ts, mask, fdslen),
				  raw_ppoll(fds, n, ts, mask));
	rq_evq_idle();
	return rq_poll_after(fds, n, real.ppoll_chk(fds, n, ts, mask, fdslen));
}

/* ---- select ---- */

/* Before start-up only. Where there is no select system call, tv is not updated. */
static int raw_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
#ifdef SYS_select
	return (int)RQ_RAW(select, nfds, rd, wr, ex, tv);
#else
	struct timespec t = { tv ? tv->tv_sec : 0, tv ? tv->tv_usec * 1000L : 0 };

	return (int)RQ_RAW(pselect6, nfds, rd, wr, ex, tv ? &t : NULL, NULL);
#endif
}

RQ_EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, select, (nfds, rd, wr, ex, tv),
				  raw_select(nfds, rd, wr, ex, tv));
	rq_evq_idle();
	return rq_select_after(nfds, rd, wr, ex, real.select(nfds, rd, wr, ex, tv));
}

RQ_EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		      const sigset_t *mask)
{
	if (unlikely(!rq_ready())) {
		struct timespec t = ts ? *ts : (struct timespec){ 0, 0 };
		struct { const sigset_t *ss; size_t len; } m = { mask, _NSIG / 8 };

		if (rq_passing() && real.pselect)
			return real.pselect(nfds, rd, wr, ex, ts, mask);
		return (int)RQ_RAW(pselect6, nfds, rd, wr, ex, ts ? &t : NULL, &m);
	}
	rq_evq_idle();
	return rq_select_after(nfds, rd, wr, ex, real.pselect(nfds, rd, wr, ex, ts, mask));
}
