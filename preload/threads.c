/*
 * Threads: a new thread starts in its creator's context (and, with crash
 * reports on, with an alternate signal stack), and work handed
 * through a mutex+condvar queue carries the producer's context to the
 * consumer (src/handoff.h). The pthread functions have several symbol
 * versions; the current ones are resolved with dlvsym. Binaries built
 * against the pre-2003 condvar ABI (GLIBC_2.2.5 pthread_cond_*) are not
 * supported under the library.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "config.h"
#include "crash.h"
#include "ctx.h"
#include "handoff.h"
#include "preload.h"

static struct {
	int (*create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
	int (*lock)(pthread_mutex_t *);
	int (*trylock)(pthread_mutex_t *);
	int (*timedlock)(pthread_mutex_t *, const struct timespec *);
	int (*unlock)(pthread_mutex_t *);
	int (*signal)(pthread_cond_t *);
	int (*broadcast)(pthread_cond_t *);
	int (*wait)(pthread_cond_t *, pthread_mutex_t *);
} real;

static void *sym(const char *name, const char *version)
{
	void *p = version ? dlvsym(RTLD_NEXT, name, version) : NULL;

	return p ? p : dlsym(RTLD_NEXT, name);
}

/*
 * The mutex functions first, and on their own: they are what a caller needs
 * while the rest of reqctx is still being resolved (see mutex()).
 */
static void resolve_mutex(void)
{
	void *p;

	if (!__atomic_load_n(&real.lock, __ATOMIC_ACQUIRE) && (p = sym("pthread_mutex_lock", NULL)))
		__atomic_store_n(&real.lock, (int (*)(pthread_mutex_t *))p, __ATOMIC_RELEASE);
	if (!__atomic_load_n(&real.trylock, __ATOMIC_ACQUIRE) &&
	    (p = sym("pthread_mutex_trylock", NULL)))
		__atomic_store_n(&real.trylock, (int (*)(pthread_mutex_t *))p, __ATOMIC_RELEASE);
	if (!__atomic_load_n(&real.unlock, __ATOMIC_ACQUIRE) &&
	    (p = sym("pthread_mutex_unlock", NULL)))
		__atomic_store_n(&real.unlock, (int (*)(pthread_mutex_t *))p, __ATOMIC_RELEASE);
}

int rq_resolve_threads(void)
{
	resolve_mutex();
	real.create = sym("pthread_create", "GLIBC_2.34");
	if (!real.create)
		real.create = sym("pthread_create", "GLIBC_2.2.5");
	real.timedlock = sym("pthread_mutex_timedlock", NULL);
	real.signal = sym("pthread_cond_signal", "GLIBC_2.3.2");
	real.broadcast = sym("pthread_cond_broadcast", "GLIBC_2.3.2");
	real.wait = sym("pthread_cond_wait", "GLIBC_2.3.2");
	return real.create && real.lock && real.trylock && real.timedlock && real.unlock &&
	       real.signal && real.broadcast && real.wait ? 0 : -ENOSYS;
}

/*
 * For a call made before reqctx is ready: whether the real function *fn is
 * known, resolving them all first if need be.
 */
static int early(void *const *fn)
{
	return __atomic_load_n(fn, __ATOMIC_ACQUIRE) || rq_resolve_threads() == 0 ||
	       __atomic_load_n(fn, __ATOMIC_ACQUIRE);
}

/*
 * The real fn (one of real.lock, real.trylock, real.unlock) for a call made
 * before reqctx is ready: while it initialises (on this thread, from a
 * library that intercepts the mutex calls and forwards them to us, such as a
 * sanitizer runtime; or on another thread), or when it gave up. dlsym takes
 * no interposable lock and allocates nothing when it succeeds, so resolving
 * here cannot come back into this wrapper. NULL only in a libc without the
 * function.
 */
static int (*mutex(int (*const *fn)(pthread_mutex_t *)))(pthread_mutex_t *)
{
	int (*f)(pthread_mutex_t *) = __atomic_load_n(fn, __ATOMIC_ACQUIRE);

	if (unlikely(!f)) {
		resolve_mutex();
		f = __atomic_load_n(fn, __ATOMIC_ACQUIRE);
	}
	return f;
}

struct start {
	void *(*fn)(void *);
	void *arg;
	struct rq_ctx ctx;
};

/* Holds each thread's alternate signal stack; its destructor frees it at thread exit. */
static pthread_key_t altkey;
static int have_altkey;

void rq_threads_init(void);

void rq_threads_init(void)
{
	if (rq_cfg.crash && !have_altkey)
		have_altkey = pthread_key_create(&altkey, rq_crash_altstack_free) == 0;
}

/*
 * The new thread gets an alternate signal stack for crash reports (unless it
 * has one), released by the key's destructor however the thread ends
 * (return, pthread_exit, cancellation).
 */
static void *started(void *p)
{
	struct start s = *(struct start *)p;
	void *alt;

	free(p);
	if (have_altkey && (alt = rq_crash_altstack()) && pthread_setspecific(altkey, alt) != 0)
		rq_crash_altstack_free(alt);
	if (s.ctx.serial) {
		rq_ctx_set(&s.ctx);
		rq_handoff_inherited();
	}
	return s.fn(s.arg);
}

RQ_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			     void *arg)
{
	struct start *s;
	int r;

	if (unlikely(!rq_ready()))
		return early((void *const *)&real.create) ? real.create(t, attr, fn, arg) : EAGAIN;
	if ((rq_ctx_cur()->serial == 0 && !have_altkey) || !(s = malloc(sizeof(*s))))
		return real.create(t, attr, fn, arg);
	s->fn = fn;
	s->arg = arg;
	s->ctx = *rq_ctx_cur();
	r = real.create(t, attr, started, s);
	if (r)
		free(s);
	return r;
}

/*
 * Until resolution is done the mutex calls go straight to libc's (mutex()),
 * so a lock taken while reqctx initialises never waits on reqctx. The library
 * refers to no GLIBC_PRIVATE symbol, so that it also links with -lreqctx.
 */
static int passthrough(int (*const *fn)(pthread_mutex_t *), pthread_mutex_t *m)
{
	int (*f)(pthread_mutex_t *) = mutex(fn);

	return f ? f(m) : EINVAL;
}

RQ_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
	int r;

	if (unlikely(!rq_ready()))
		return passthrough(&real.lock, m);
	r = real.lock(m);
	if (r == 0)
		rq_handoff_locked(m);
	return r;
}

RQ_EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
	int r;

	if (unlikely(!rq_ready()))
		return passthrough(&real.trylock, m);
	r = real.trylock(m);
	if (r == 0)
		rq_handoff_locked(m);
	return r;
}

RQ_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *t)
{
	int r;

	if (unlikely(!rq_ready()))
		return early((void *const *)&real.timedlock) ? real.timedlock(m, t) : EAGAIN;
	r = real.timedlock(m, t);
	if (r == 0)
		rq_handoff_locked(m);
	return r;
}

RQ_EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
	if (unlikely(!rq_ready()))
		return passthrough(&real.unlock, m);
	rq_handoff_unlock(m);
	return real.unlock(m);
}

RQ_EXPORT int pthread_cond_signal(pthread_cond_t *cv)
{
	if (unlikely(!rq_ready()))
		return early((void *const *)&real.signal) ? real.signal(cv) : EINVAL;
	rq_handoff_signal(cv);
	return real.signal(cv);
}

RQ_EXPORT int pthread_cond_broadcast(pthread_cond_t *cv)
{
	if (unlikely(!rq_ready()))
		return early((void *const *)&real.broadcast) ? real.broadcast(cv) : EINVAL;
	rq_handoff_signal(cv);
	return real.broadcast(cv);
}

RQ_EXPORT int pthread_cond_wait(pthread_cond_t *cv, pthread_mutex_t *m)
{
	void *q;
	int r;

	if (unlikely(!rq_ready()))
		return early((void *const *)&real.wait) ? real.wait(cv, m) : EINVAL;
	q = rq_handoff_waited(cv, m); /* ties m to cv before any producer signals */
	r = real.wait(cv, m);
	rq_handoff_woke(q);
	rq_handoff_locked(m);
	return r;
}
