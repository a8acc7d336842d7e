#include "sigctx.h"

#include <stdint.h>
#include <string.h>
#include <sys/time.h>

#include "crash.h"
#include "timers.h"

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* the kernel's; glibc sets it with its own restorer */
#endif

#ifndef NSIG
#define NSIG 65
#endif

struct rec {
	_Atomic uintptr_t fn;
	_Atomic int flags;
	_Atomic int wrapped;
};

struct ent {
	_Atomic unsigned active;
	struct rec r[2];
};

static struct ent table[NSIG];
static struct rq_slot itimers[RQ_ITIMERS];

int rq_sig_wrappable(int sig)
{
	switch (sig) {
	case SIGSEGV: case SIGBUS: case SIGILL: case SIGFPE: case SIGABRT:
		return 0; /* left to the crash handler (src/crash.h) */
	}
	return sig > 0 && sig < NSIG;
}

int rq_sig_fatal(int sig)
{
	switch (sig) {
	case SIGSEGV: case SIGBUS: case SIGILL: case SIGFPE: case SIGABRT:
		return 1;
	}
	return 0;
}

void rq_sig_get(int sig, struct rq_sigrec *out)
{
	const struct rec *r;

	memset(out, 0, sizeof(*out));
	if (sig <= 0 || sig >= NSIG)
		return;
	r = &table[sig].r[atomic_load_explicit(&table[sig].active, memory_order_acquire) & 1];
	out->fn = (void *)atomic_load_explicit(&r->fn, memory_order_relaxed);
	out->flags = atomic_load_explicit(&r->flags, memory_order_relaxed);
	out->wrapped = atomic_load_explicit(&r->wrapped, memory_order_relaxed);
}

void rq_sig_put(int sig, const struct rq_sigrec *in)
{
	unsigned next;
	struct rec *r;

	if (sig <= 0 || sig >= NSIG)
		return;
	next = (atomic_load_explicit(&table[sig].active, memory_order_relaxed) + 1) & 1;
	r = &table[sig].r[next];
	atomic_store_explicit(&r->fn, (uintptr_t)in->fn, memory_order_relaxed);
	atomic_store_explicit(&r->flags, in->flags, memory_order_relaxed);
	atomic_store_explicit(&r->wrapped, in->wrapped, memory_order_relaxed);
	atomic_store_explicit(&table[sig].active, next, memory_order_release);
}

void rq_itimer_arm(int which)
{
	if (which >= 0 && which < RQ_ITIMERS)
		RQ_SAVE_ERRNO(rq_slot_store(&itimers[which], rq_ctx_cur()));
}

int rq_itimer_of(int sig)
{
	switch (sig) {
	case SIGALRM: return ITIMER_REAL;
	case SIGVTALRM: return ITIMER_VIRTUAL;
	case SIGPROF: return ITIMER_PROF;
	}
	return -1;
}

/* Switches to the context of the timer that sent si, if any. */
static void enter(int sig, const siginfo_t *si)
{
	int which;

	if (!si)
		return;
	if (si->si_code == SI_TIMER)
		rq_timer_enter_signal(si->si_timerid);
	else if (si->si_code == SI_KERNEL && (which = rq_itimer_of(sig)) >= 0)
		rq_ctx_set_slot(&itimers[which]);
}

/*
 * Puts the thread's context back exactly as it was at entry: both buffers and
 * the index, so that an rq_ctx_set the signal interrupted resumes on the very
 * bytes it left. Each step changes only the inactive buffer before flipping,
 * so a nested handler that logs always reads a whole context.
 */
static void restore(const struct rq_tls *s)
{
	unsigned a = s->active;

	if (rq_tls.active == a) {
		rq_tls.buf[a ^ 1] = s->buf[a];
		atomic_signal_fence(memory_order_release);
		rq_tls.active = a ^ 1;
		atomic_signal_fence(memory_order_release);
	}
	rq_tls.buf[a] = s->buf[a];
	atomic_signal_fence(memory_order_release);
	rq_tls.active = a;
	atomic_signal_fence(memory_order_release);
	rq_tls.buf[a ^ 1] = s->buf[a ^ 1];
	rq_tls.handle[0] = s->handle[0];
	rq_tls.handle[1] = s->handle[1];
}

int rq_sig_call_host(const struct rq_sigrec *h, int sig, siginfo_t *si, void *uc)
{
	if (h->fn == (void *)SIG_DFL || h->fn == (void *)SIG_IGN)
		return 0;
	if (h->flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))h->fn)(sig, si, uc);
	else
		((void (*)(int))h->fn)(sig);
	return 1;
}

void rq_sig_handler(int sig, siginfo_t *si, void *uc)
{
	struct rq_tls saved;
	struct rq_sigrec h;
	int e = errno;

	saved = rq_tls;
	atomic_signal_fence(memory_order_acquire);
	enter(sig, si);
	rq_sig_get(sig, &h);
	errno = e;
	/* SIG_DFL or SIG_IGN here only if another thread changed the action just now. */
	rq_sig_call_host(&h, sig, si, uc);
	e = errno;
	restore(&saved);
	errno = e;
}

static int is_handler(void *fn)
{
	return fn != (void *)SIG_DFL && fn != (void *)SIG_IGN && fn != (void *)SIG_ERR;
}

/* The handler the kernel gets in place of fn for sig, or NULL if fn goes as it is. */
static void *ours(int sig, void *fn)
{
	if (rq_sig_fatal(sig))
		return fn == (void *)SIG_IGN ? NULL : (void *)rq_crash_handler;
	return is_handler(fn) ? (void *)rq_sig_handler : NULL;
}

/*
 * The flags the kernel gets with our handler h in place of the host's fn and
 * flags. Our report (fn is SIG_DFL) runs on the alternate stack, so that a
 * stack overflow is reported; a host's handler runs where the host asked.
 * SA_RESETHAND is ours to carry out (rq_crash_handler), so that a host's
 * one-shot handler that re-raises still gets the report.
 */
static int kflags(void *h, void *fn, int flags)
{
	if (h != (void *)rq_crash_handler)
		return flags | SA_SIGINFO;
	if (!is_handler(fn))
		return (flags & ~SA_RESETHAND) | SA_SIGINFO | SA_ONSTACK;
	return (flags & ~SA_RESETHAND) | SA_SIGINFO;
}

void rq_sig_report(const struct sigaction *k, const struct rq_sigrec *prev, struct sigaction *out)
{
	int fix = 0, mask = prev->wrapped >= RQ_SIG_CRASH ? SA_SIGINFO | SA_ONSTACK | SA_RESETHAND
							  : SA_SIGINFO;

	*out = *k;
	if (k->sa_sigaction == rq_sig_handler || k->sa_sigaction == rq_crash_handler) {
		out->sa_sigaction = (void (*)(int, siginfo_t *, void *))prev->fn;
		fix = 1;
	} else if (prev->wrapped && k->sa_handler == SIG_DFL && (k->sa_flags & SA_RESETHAND)) {
		fix = 1; /* the kernel reset our handler on delivery */
	}
	if (fix && prev->wrapped == RQ_SIG_CRASH_INIT) {
		/* Never set by the host: a restorer only if glibc had installed one. */
		out->sa_flags = prev->flags;
		if (!(prev->flags & SA_RESTORER))
			out->sa_restorer = NULL;
	} else if (fix)
		out->sa_flags = (k->sa_flags & ~mask) | (prev->flags & mask);
}

int rq_sig_crash_install(rq_sigaction_fn sa, int sig)
{
	struct sigaction k;
	struct rq_sigrec rec;

	if (!rq_sig_fatal(sig))
		return -EINVAL;
	if (sa(sig, NULL, &k) < 0)
		return -errno;
	if (k.sa_handler != SIG_DFL)
		return -EBUSY; /* the host's, or SIG_IGN */
	rec = (struct rq_sigrec){ (void *)SIG_DFL, k.sa_flags, RQ_SIG_CRASH_INIT };
	rq_sig_put(sig, &rec);
	k.sa_sigaction = rq_crash_handler;
	k.sa_flags = (k.sa_flags & ~SA_RESETHAND) | SA_SIGINFO | SA_ONSTACK;
	if (sa(sig, &k, NULL) < 0) {
		int e = errno;

		rq_sig_put(sig, &(struct rq_sigrec){ NULL, 0, 0 });
		return -e;
	}
	return 0;
}

int rq_sig_action(rq_sigaction_fn sa, int sig, const struct sigaction *act,
		  struct sigaction *old)
{
	struct rq_sigrec prev, rec;
	struct sigaction k, kold;
	int e = errno;
	void *h;

	rq_sig_get(sig, &prev);
	if (act && (h = ours(sig, (void *)act->sa_handler))) {
		k = *act;
		rec = (struct rq_sigrec){ (void *)act->sa_handler, act->sa_flags,
					  h == (void *)rq_sig_handler ? RQ_SIG_TIMER : RQ_SIG_CRASH };
		k.sa_sigaction = (void (*)(int, siginfo_t *, void *))h;
		k.sa_flags = kflags(h, (void *)act->sa_handler, act->sa_flags);
		/* The table first: a signal that arrives right after the switch finds it. */
		rq_sig_put(sig, &rec);
		if (sa(sig, &k, &kold) < 0) {
			e = errno;
			rq_sig_put(sig, &prev);
			return -e;
		}
	} else if (act) {
		rec = (struct rq_sigrec){ (void *)act->sa_handler, act->sa_flags, 0 };
		if (sa(sig, act, &kold) < 0)
			return -errno;
		rq_sig_put(sig, &rec);
	} else if (sa(sig, NULL, &kold) < 0) {
		return -errno;
	}
	if (old)
		rq_sig_report(&kold, &prev, old);
	errno = e;
	return 0;
}

__sighandler_t rq_sig_signal(rq_sigaction_fn sa, __sighandler_t (*install)(int, __sighandler_t),
			     int sig, __sighandler_t h)
{
	struct rq_sigrec prev, rec = { (void *)h, 0, 0 };
	struct sigaction k;
	__sighandler_t r;
	void *mine;
	int e;

	rq_sig_get(sig, &prev);
	if ((r = install(sig, h)) == SIG_ERR)
		return r;
	e = errno;
	if ((void *)r == (void *)rq_sig_handler || (void *)r == (void *)rq_crash_handler)
		r = (__sighandler_t)prev.fn;
	/*
	 * h is now installed with glibc's flags and mask; put ours in its place
	 * with the same. If the kernel shows something else by now (a one-shot
	 * handler that already fired), leave it.
	 */
	if ((mine = ours(sig, (void *)h)) && sa(sig, NULL, &k) == 0 && k.sa_handler == h) {
		rec.flags = k.sa_flags;
		rec.wrapped = mine == (void *)rq_sig_handler ? RQ_SIG_TIMER : RQ_SIG_CRASH;
		rq_sig_put(sig, &rec);
		k.sa_sigaction = (void (*)(int, siginfo_t *, void *))mine;
		k.sa_flags = kflags(mine, (void *)h, k.sa_flags);
		if (sa(sig, &k, NULL) < 0)
			rq_sig_put(sig, &(struct rq_sigrec){ (void *)h, 0, 0 });
	} else {
		rq_sig_put(sig, &rec);
	}
	errno = e;
	return r;
}
