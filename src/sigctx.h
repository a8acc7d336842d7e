/*
 * Signal handlers run in the context of what raised the signal.
 *
 * Every handler a host installs (sigaction, signal and its variants) is
 * recorded in a table indexed by signal, and the kernel gets rq_sig_handler
 * instead, with the host's flags plus SA_SIGINFO and the host's mask. On
 * delivery, rq_sig_handler saves the interrupted thread's context, switches
 * to the context of the timer behind the signal (a POSIX timer: SI_TIMER; an
 * itimer or alarm: SIGALRM, SIGVTALRM, SIGPROF with SI_KERNEL), calls the
 * host's handler with the arguments the kernel gave, then restores the
 * interrupted context and errno. Other signals run in the interrupted
 * context, as before.
 *
 * What the host reads back (sigaction's oldact, signal's return) is what it
 * would read without reqctx: the kernel's answer, with our handler replaced
 * by the host's and SA_SIGINFO as the host set it. SA_RESETHAND works
 * unchanged: the kernel resets the action to SIG_DFL and the report says so.
 *
 * SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (the fatal signals) are not
 * wrapped for timers: when crash reports are on (REQCTX_CRASH, src/crash.h)
 * the kernel gets rq_crash_handler for them instead, for the host's handlers
 * and for SIG_DFL alike (SIG_IGN goes to the kernel as it is). For SIG_DFL it
 * runs on the alternate stack (SA_ONSTACK added) and reports; for a host's
 * handler it runs with the host's flags and only calls that handler, with
 * SA_RESETHAND carried out by rq_crash_handler rather than the kernel, so that
 * a one-shot handler's re-raise is reported. What the host reads back is again
 * exactly what it set.
 *
 * Each table entry is double-buffered (like the thread context): a writer
 * fills the inactive copy and flips an index, so a handler always reads a
 * consistent handler+flags pair. Two threads changing the same signal's
 * action at the same moment may leave the table with one's handler and the
 * kernel with the other's flags.
 */
#ifndef RQ_SIGCTX_H
#define RQ_SIGCTX_H

#include <signal.h>

#include "ctx.h"

struct rq_sigrec {
	void *fn;    /* the host's handler (sa_handler or sa_sigaction), SIG_DFL or SIG_IGN */
	int flags;   /* the host's sa_flags */
	int wrapped; /* RQ_SIG_*: what the kernel was given in its place */
};

#define RQ_SIG_TIMER      1 /* rq_sig_handler */
#define RQ_SIG_CRASH      2 /* rq_crash_handler, for what the host set */
#define RQ_SIG_CRASH_INIT 3 /* rq_crash_handler, installed at start-up over SIG_DFL; flags
			       are the kernel's original ones */

typedef int (*rq_sigaction_fn)(int, const struct sigaction *, struct sigaction *);

/* 1 if sig's handlers are wrapped (a valid signal number not in the left-alone set). */
int rq_sig_wrappable(int sig);

/* 1 if sig is one of the five fatal signals that crash reports cover. */
int rq_sig_fatal(int sig);

/*
 * Installs rq_crash_handler for the fatal signal sig through the real
 * sigaction `sa` if the kernel has SIG_DFL for it (a handler or SIG_IGN set
 * before reqctx started is left alone). Returns 0, -EINVAL for a signal that
 * is not fatal, -EBUSY if one is set, or sigaction's -errno.
 */
int rq_sig_crash_install(rq_sigaction_fn sa, int sig);

/* The table's record for sig (zeroes: never set). Async-signal-safe. */
void rq_sig_get(int sig, struct rq_sigrec *out);

/* Replaces the table's record for sig. */
void rq_sig_put(int sig, const struct rq_sigrec *r);

/* The handler the kernel gets for every wrapped host handler. */
void rq_sig_handler(int sig, siginfo_t *si, void *uc);

/*
 * sigaction(sig, act, old) for a wrappable or (crash reports on) fatal sig, through the real sigaction
 * `sa`. Returns 0, or -errno from the real call (the table is then as it
 * was). errno is preserved on success.
 */
int rq_sig_action(rq_sigaction_fn sa, int sig, const struct sigaction *act,
		  struct sigaction *old);

/*
 * The signal() family: `install` is the real signal/sysv_signal/bsd_signal,
 * which installs h with glibc's own flags; the result is read back and
 * re-installed with rq_sig_handler. Returns what `install` returned, with
 * rq_sig_handler replaced by the host's previous handler.
 */
__sighandler_t rq_sig_signal(rq_sigaction_fn sa, __sighandler_t (*install)(int, __sighandler_t),
			     int sig, __sighandler_t h);

/* What the host would have read as old action: `k` as the kernel reported it, prev the table's. */
void rq_sig_report(const struct sigaction *k, const struct rq_sigrec *prev, struct sigaction *out);

/* itimers (setitimer's ITIMER_REAL/VIRTUAL/PROF; alarm and ualarm arm ITIMER_REAL). */
#define RQ_ITIMERS 3

/* The itimer `which` is being armed: it carries the current context. */
void rq_itimer_arm(int which);

/* The itimer slot behind sig (SIGALRM, SIGVTALRM, SIGPROF), or -1. */
int rq_itimer_of(int sig);

/*
 * Calls the host's handler h for sig the way the kernel would have: with one
 * argument, or three for SA_SIGINFO. Returns 0 (calling nothing) for SIG_DFL
 * and SIG_IGN, 1 otherwise.
 */
int rq_sig_call_host(const struct rq_sigrec *h, int sig, siginfo_t *si, void *uc);

#endif
