/*
 * Signal handlers: the host's handlers are wrapped so that they run in the
 * context of the timer behind the signal (src/sigctx.h), the fatal signals
 * get the crash report first (src/crash.h), and everything the host reads
 * back is what it installed.
 *
 * Before reqctx is ready these pass straight through to glibc's own entry
 * points that we do not interpose: __sigaction, and ssignal (glibc's signal
 * under its SVID name). sysv_signal's one-shot semantics are rebuilt on
 * __sigaction, as glibc does. Unlike the other wrappers, these never start
 * reqctx themselves: a sanitizer runtime installs its handlers through them
 * from inside its own initialisation, where reqctx's start-up (which calls
 * functions the sanitizer intercepts) must not run. A handler installed
 * before reqctx started is the kernel's as it is (see rq_crash_start).
 */
#include <dlfcn.h>
#include <signal.h>
#include <string.h>

#include "config.h"
#include "crash.h"
#include "preload.h"
#include "sigctx.h"

extern int __sigaction(int, const struct sigaction *, struct sigaction *);
extern __sighandler_t __sysv_signal(int, __sighandler_t);
extern __sighandler_t bsd_signal(int, __sighandler_t);

int rq_resolve_signals(void);
void rq_crash_start(void);

static struct {
	rq_sigaction_fn sigaction;
	__sighandler_t (*signal)(int, __sighandler_t);
	__sighandler_t (*bsd_signal)(int, __sighandler_t);
	__sighandler_t (*sysv_signal)(int, __sighandler_t);
	__sighandler_t (*__sysv_signal)(int, __sighandler_t);
} real;

int rq_resolve_signals(void)
{
	real.sigaction = (rq_sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
	real.signal = (__sighandler_t(*)(int, __sighandler_t))dlsym(RTLD_NEXT, "signal");
	real.bsd_signal = (__sighandler_t(*)(int, __sighandler_t))dlsym(RTLD_NEXT, "bsd_signal");
	real.sysv_signal = (__sighandler_t(*)(int, __sighandler_t))dlsym(RTLD_NEXT, "sysv_signal");
	real.__sysv_signal =
		(__sighandler_t(*)(int, __sighandler_t))dlsym(RTLD_NEXT, "__sysv_signal");
	/* The signal() variants are optional: missing ones fall back to signal. */
	if (!real.bsd_signal)
		real.bsd_signal = real.signal;
	if (!real.sysv_signal)
		real.sysv_signal = real.__sysv_signal ? real.__sysv_signal : real.signal;
	if (!real.__sysv_signal)
		real.__sysv_signal = real.sysv_signal;
	return real.sigaction && real.signal ? 0 : -ENOSYS;
}

/* glibc's sysv_signal: one-shot, not blocked while it runs, interrupts system calls. */
static __sighandler_t sysv_raw(int sig, __sighandler_t h)
{
	struct sigaction act, old;

	if (h == SIG_ERR || sig <= 0 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	memset(&act, 0, sizeof(act));
	act.sa_handler = h;
	act.sa_flags = SA_RESETHAND | SA_NODEFER;
	if (__sigaction(sig, &act, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

/* 1 once reqctx is ready; unlike rq_ready(), never starts it. */
static int started(void)
{
	return atomic_load_explicit(&rq_state, memory_order_acquire) == RQ_ST_READY;
}

static int passes(int sig)
{
	return !rq_sig_wrappable(sig) && !(rq_cfg.crash && rq_sig_fatal(sig));
}

/*
 * Crash reports (src/crash.h): the module table, an alternate stack for the
 * thread that starts reqctx (usually the main thread), and our handler for
 * each fatal signal the host has not taken yet.
 */
void rq_crash_start(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

	if (!rq_cfg.crash)
		return;
	rq_crash_init();
	rq_crash_altstack();
	for (size_t i = 0; i < RQ_ARRAY_LEN(sigs); i++)
		rq_sig_crash_install(real.sigaction, sigs[i]);
}

RQ_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	int r;

	if (unlikely(!started()))
		return __sigaction(sig, act, old);
	if (passes(sig))
		return real.sigaction(sig, act, old);
	if ((r = rq_sig_action(real.sigaction, sig, act, old)) < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

static __sighandler_t via(__sighandler_t (*install)(int, __sighandler_t), int sig,
			  __sighandler_t h)
{
	if (passes(sig))
		return install(sig, h);
	return rq_sig_signal(real.sigaction, install, sig, h);
}

RQ_EXPORT __sighandler_t signal(int sig, __sighandler_t h)
{
	if (unlikely(!started()))
		return ssignal(sig, h);
	return via(real.signal, sig, h);
}

RQ_EXPORT __sighandler_t bsd_signal(int sig, __sighandler_t h)
{
	if (unlikely(!started()))
		return ssignal(sig, h);
	return via(real.bsd_signal, sig, h);
}

RQ_EXPORT __sighandler_t sysv_signal(int sig, __sighandler_t h)
{
	if (unlikely(!started()))
		return sysv_raw(sig, h);
	return via(real.sysv_signal, sig, h);
}

RQ_EXPORT __sighandler_t __sysv_signal(int sig, __sighandler_t h)
{
	if (unlikely(!started()))
		return sysv_raw(sig, h);
	return via(real.__sysv_signal, sig, h);
}
