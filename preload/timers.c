/*
 * Timers: a timer carries the context of the code that armed it.
 *
 * timerfds are carriers (src/carry.h): created in the current context,
 * re-armed by timerfd_settime; a read or an epoll event restores it. POSIX
 * timers get a record (src/timers.h): SIGEV_THREAD callbacks go through a
 * trampoline, SIGEV_SIGNAL handlers find it through the signal wrapper
 * (src/sigctx.h), as do the itimers that setitimer, alarm and ualarm arm.
 *
 * timer_create, timer_settime and timer_delete have three symbol versions:
 * GLIBC_2.34 (libc), GLIBC_2.3.3 (librt before 2.34, same ABI) and
 * GLIBC_2.2.5 (the pre-2003 ABI with an int timer_t). Our unversioned
 * wrappers catch calls to every version and call the GLIBC_2.34 function, or
 * GLIBC_2.3.3 on an older glibc; binaries built against the GLIBC_2.2.5 ABI
 * are not supported under the library.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>

#include "carry.h"
#include "config.h"
#include "preload.h"
#include "sigctx.h"
#include "timers.h"

int rq_resolve_signals(void);

static struct {
	int (*timerfd_create)(int, int);
	int (*timerfd_settime)(int, int, const struct itimerspec *, struct itimerspec *);
	int (*timer_create)(clockid_t, struct sigevent *, timer_t *);
	int (*timer_settime)(timer_t, int, const struct itimerspec *, struct itimerspec *);
	int (*timer_delete)(timer_t);
	int (*setitimer)(__itimer_which_t, const struct itimerval *, struct itimerval *);
	unsigned (*alarm)(unsigned);
	useconds_t (*ualarm)(useconds_t, useconds_t);
} real;

/* The current version of a POSIX timer function, or the librt one of an older glibc. */
static void *posix_timer_sym(const char *name)
{
	void *p = dlvsym(RTLD_NEXT, name, "GLIBC_2.34");

	if (!p)
		p = dlvsym(RTLD_NEXT, name, "GLIBC_2.3.3");
	return p ? p : dlsym(RTLD_NEXT, name);
}

/*
 * Before glibc 2.34 the POSIX timers live in librt, which may be loaded
 * after us (dlopen): look again on first use if they were missing.
 */
static int posix_timers(void)
{
	if (unlikely(!real.timer_delete)) {
		real.timer_create = posix_timer_sym("timer_create");
		real.timer_settime = posix_timer_sym("timer_settime");
		real.timer_delete = posix_timer_sym("timer_delete");
	}
	return real.timer_create && real.timer_settime && real.timer_delete ? 0 : -ENOSYS;
}

int rq_resolve_timers(void)
{
	real.timerfd_create = dlsym(RTLD_NEXT, "timerfd_create");
	real.timerfd_settime = dlsym(RTLD_NEXT, "timerfd_settime");
	real.setitimer = dlsym(RTLD_NEXT, "setitimer");
	real.alarm = dlsym(RTLD_NEXT, "alarm");
	real.ualarm = dlsym(RTLD_NEXT, "ualarm");
	posix_timers();
	pthread_atfork(rq_timers_lock, rq_timers_unlock, rq_timers_unlock);
	if (rq_resolve_signals() < 0 || !real.timerfd_create || !real.timerfd_settime ||
	    !real.setitimer || !real.alarm)
		return -ENOSYS;
	return 0;
}

RQ_EXPORT int timerfd_create(int clockid, int flags)
{
	int fd;

	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, timerfd_create, (clockid, flags),
				  (int)RQ_RAW(timerfd_create, clockid, flags));
	fd = real.timerfd_create(clockid, flags);
	rq_carry_new(fd, -1);
	return fd;
}

RQ_EXPORT int timerfd_settime(int fd, int flags, const struct itimerspec *nv,
			      struct itimerspec *ov)
{
	struct rq_fd *e;

	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, timerfd_settime, (fd, flags, nv, ov),
				  (int)RQ_RAW(timerfd_settime, fd, flags, nv, ov));
	e = rq_fd_peek(fd);
	/* Before arming: an expiry read the moment after must find the new context. */
	if (rq_fd_flags(e) & RQ_FD_CARRY)
		RQ_SAVE_ERRNO(rq_carry_put(fd, e));
	return real.timerfd_settime(fd, flags, nv, ov);
}

RQ_EXPORT int timer_create(clockid_t clk, struct sigevent *evp, timer_t *id)
{
	struct sigevent ev;
	const struct sigevent *use;
	struct rq_timer *t;
	int r;

	int ready = rq_ready();

	if (unlikely(posix_timers() < 0)) {
		errno = ENOSYS;
		return -1;
	}
	if (unlikely(!ready))
		return real.timer_create(clk, evp, id);
	t = rq_timer_new(evp, &ev, &use);
	r = real.timer_create(clk, (struct sigevent *)use, id);
	if (t)
		RQ_SAVE_ERRNO(r == 0 ? rq_timer_publish(t, *id) : rq_timer_free(t));
	return r;
}

RQ_EXPORT int timer_settime(timer_t id, int flags, const struct itimerspec *nv,
			    struct itimerspec *ov)
{
	struct rq_timer *t;
	struct rq_ctx prev;
	int r;

	int ready = rq_ready();

	if (unlikely(posix_timers() < 0)) {
		errno = ENOSYS;
		return -1;
	}
	if (unlikely(!ready) || !(t = rq_timer_find(id)))
		return real.timer_settime(id, flags, nv, ov);
	rq_timer_arm(t, &prev);
	r = real.timer_settime(id, flags, nv, ov);
	if (r < 0)
		RQ_SAVE_ERRNO(rq_timer_unarm(t, &prev));
	return r;
}

RQ_EXPORT int timer_delete(timer_t id)
{
	struct rq_timer *t;
	int r;

	int ready = rq_ready();

	if (unlikely(posix_timers() < 0)) {
		errno = ENOSYS;
		return -1;
	}
	if (unlikely(!ready) || !(t = rq_timer_lookup(id)))
		return real.timer_delete(id);
	r = real.timer_delete(id);
	if (r == 0)
		RQ_SAVE_ERRNO(rq_timer_delete(id, t));
	return r;
}

RQ_EXPORT int setitimer(__itimer_which_t which, const struct itimerval *nv,
			struct itimerval *ov)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL_IN(real, setitimer, (which, nv, ov),
				  (int)RQ_RAW(setitimer, which, nv, ov));
	if (nv)
		rq_itimer_arm((int)which);
	return real.setitimer(which, nv, ov);
}

RQ_EXPORT unsigned alarm(unsigned seconds)
{
	struct itimerval nv = { .it_value = { .tv_sec = seconds } }, ov;
	unsigned r;

	if (likely(rq_ready())) {
		rq_itimer_arm(ITIMER_REAL);
		return real.alarm(seconds);
	}
	if (rq_passing() && real.alarm)
		return real.alarm(seconds);
	/* glibc's rounding: to the nearest second, never 0 while still set. */
	if (RQ_RAW(setitimer, ITIMER_REAL, &nv, &ov) < 0)
		return 0;
	r = (unsigned)ov.it_value.tv_sec;
	if (ov.it_value.tv_usec >= 500000 || (r == 0 && ov.it_value.tv_usec > 0))
		r++;
	return r;
}

RQ_EXPORT useconds_t ualarm(useconds_t value, useconds_t interval)
{
	struct itimerval nv = { { 0, interval }, { 0, value } }, ov;

	if (unlikely(!rq_ready() || !real.ualarm)) {
		if (rq_passing() && real.ualarm)
			return real.ualarm(value, interval);
		nv.it_interval.tv_sec = interval / 1000000;
		nv.it_interval.tv_usec = interval % 1000000;
		nv.it_value.tv_sec = value / 1000000;
		nv.it_value.tv_usec = value % 1000000;
		if (RQ_RAW(setitimer, ITIMER_REAL, &nv, &ov) < 0)
			return (useconds_t)-1;
		return (useconds_t)(ov.it_value.tv_sec * 1000000 + ov.it_value.tv_usec);
	}
	rq_itimer_arm(ITIMER_REAL);
	return real.ualarm(value, interval);
}
