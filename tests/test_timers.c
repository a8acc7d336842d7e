/*
 * Unit tests for the timer records (src/timers.c) and the signal wrapper
 * (src/sigctx.c), linked directly: no preload, signals raised for real or
 * the wrapper called with a made-up siginfo.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>

#include "ctx.h"
#include "sigctx.h"

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* the kernel's; glibc sets it and reports it back */
#endif
#include "timers.h"

static void set_ctx(const char *id)
{
	struct rq_ctx c;

	c.serial = rq_serial_next();
	c.len = (uint32_t)strlen(id);
	memcpy(c.id, id, c.len + 1);
	rq_ctx_set(&c);
}

/* ---- timer records ---- */

static int calls;
static int got_val;
static char got_id[REQCTX_ID_MAX + 1];

static void host_cb(union sigval v)
{
	calls++;
	got_val = v.sival_int;
	strcpy(got_id, rq_ctx_cur()->id);
}

static struct sigevent thread_ev(int val)
{
	struct sigevent ev = { .sigev_notify = SIGEV_THREAD, .sigev_notify_function = host_cb };

	ev.sigev_value.sival_int = val;
	return ev;
}

Test(timers, sigev_none_needs_no_record)
{
	struct sigevent ev = { .sigev_notify = SIGEV_NONE }, out;
	const struct sigevent *use = NULL;

	cr_assert_null(rq_timer_new(&ev, &out, &use));
	cr_assert_eq(use, &ev);
	cr_assert_eq(rq_timer_count(), 0);
}

Test(timers, sigev_signal_keeps_the_hosts_sigevent_and_is_found_by_id)
{
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 }, out;
	const struct sigevent *use = NULL;
	struct rq_timer *t;

	set_ctx("made");
	t = rq_timer_new(&ev, &out, &use);
	cr_assert_not_null(t);
	cr_assert_eq(use, &ev);
	rq_timer_publish(t, (timer_t)(intptr_t)3);
	cr_assert_eq(rq_timer_find((timer_t)(intptr_t)3), t);
	cr_assert_null(rq_timer_find((timer_t)(intptr_t)4));
	cr_assert_eq(rq_timer_count(), 1);
	rq_timer_delete((timer_t)(intptr_t)3, t);
	cr_assert_null(rq_timer_find((timer_t)(intptr_t)3));
	cr_assert_eq(rq_timer_count(), 0);
}

Test(timers, a_null_sigevent_is_the_default_signal_timer)
{
	struct sigevent out;
	const struct sigevent *use = &out;

	cr_assert_not_null(rq_timer_new(NULL, &out, &use));
	cr_assert_null(use);
}

Test(timers, sigev_thread_goes_through_the_trampoline_in_the_armed_context)
{
	struct sigevent ev = thread_ev(41), out;
	const struct sigevent *use = NULL;
	struct rq_timer *t;
	struct rq_ctx prev;

	set_ctx("made");
	t = rq_timer_new(&ev, &out, &use);
	cr_assert_eq(use, &out);
	cr_assert_neq(out.sigev_notify_function, host_cb);
	cr_assert_eq(ev.sigev_notify_function, host_cb, "the host's sigevent is untouched");
	cr_assert_eq(ev.sigev_value.sival_int, 41);
	rq_timer_publish(t, (timer_t)0x1234);

	/* Never re-armed: the creation context. */
	set_ctx("elsewhere");
	out.sigev_notify_function(out.sigev_value);
	cr_assert_eq(calls, 1);
	cr_assert_eq(got_val, 41);
	cr_assert_str_eq(got_id, "made");
	cr_assert_str_eq(rq_ctx_cur()->id, "elsewhere", "the caller's context comes back");

	set_ctx("armed");
	rq_timer_arm(t, &prev);
	cr_assert_str_eq(prev.id, "made");
	set_ctx("elsewhere");
	out.sigev_notify_function(out.sigev_value);
	cr_assert_eq(calls, 2);
	cr_assert_str_eq(got_id, "armed");

	/* A failed timer_settime puts the old context back. */
	set_ctx("failed");
	rq_timer_arm(t, &prev);
	rq_timer_unarm(t, &prev);
	out.sigev_notify_function(out.sigev_value);
	cr_assert_eq(calls, 3);
	cr_assert_str_eq(got_id, "armed");
}

Test(timers, armed_outside_a_request_the_callback_runs_as_unknown)
{
	struct sigevent ev = thread_ev(1), out;
	const struct sigevent *use;
	struct rq_timer *t;
	struct rq_ctx prev;

	set_ctx("made");
	t = rq_timer_new(&ev, &out, &use);
	rq_ctx_clear();
	rq_timer_arm(t, &prev);
	set_ctx("elsewhere");
	out.sigev_notify_function(out.sigev_value);
	cr_assert_eq(calls, 1);
	cr_assert_str_eq(got_id, "unknown");
}

Test(timers, a_callback_of_a_deleted_timer_runs_until_its_record_is_reused)
{
	struct sigevent ev = thread_ev(7), out, first, other = { 0 };
	const struct sigevent *use;
	struct rq_timer *t, *u = NULL;

	set_ctx("first");
	t = rq_timer_new(&ev, &first, &use);
	rq_timer_publish(t, (timer_t)(intptr_t)100);
	rq_timer_delete((timer_t)(intptr_t)100, t);
	/* Late expiry, record still in quarantine: the host still gets its call. */
	first.sigev_notify_function(first.sigev_value);
	cr_assert_eq(calls, 1);
	cr_assert_str_eq(got_id, "first");

	/* Churn until the record comes back for another timer. */
	set_ctx("second");
	for (unsigned i = 0; i <= RQ_TIMER_QUARANTINE + 1; i++) {
		ev.sigev_value.sival_int = 1000 + (int)i;
		u = rq_timer_new(&ev, &out, &use);
		rq_timer_publish(u, (timer_t)(intptr_t)(200 + i));
		if (u == t) {
			other = out;
			break;
		}
		rq_timer_delete((timer_t)(intptr_t)(200 + i), u);
	}
	cr_assert_eq(u, t, "the oldest freed record is reused first");
	cr_assert_eq(rq_timer_count(), 1);
	first.sigev_notify_function(first.sigev_value);
	cr_assert_eq(calls, 1, "a stale expiry never calls the new timer's function");
	other.sigev_notify_function(other.sigev_value);
	cr_assert_eq(calls, 2);
	cr_assert_str_eq(got_id, "second");
	cr_assert_eq(got_val, ev.sigev_value.sival_int);
}

Test(timers, lookups_survive_deleting_from_the_middle_of_clusters)
{
	enum { N = 3000 };
	static struct rq_timer *ts[N];
	const struct sigevent *use;
	struct sigevent out;

	for (int i = 0; i < N; i++) {
		ts[i] = rq_timer_new(NULL, &out, &use);
		cr_assert_not_null(ts[i]);
		/* Kernel-style small ids and pointer-like ids, to make clusters. */
		rq_timer_publish(ts[i], (timer_t)(intptr_t)(i % 2 ? i : 0x7f0000001000 + 16 * i));
	}
	for (int i = 0; i < N; i += 3)
		rq_timer_delete((timer_t)(intptr_t)(i % 2 ? i : 0x7f0000001000 + 16 * i), ts[i]);
	for (int i = 0; i < N; i++) {
		struct rq_timer *f = rq_timer_find((timer_t)(intptr_t)(i % 2 ? i : 0x7f0000001000 + 16 * i));

		if (i % 3 == 0)
			cr_assert_null(f, "deleted %d", i);
		else
			cr_assert_eq(f, ts[i], "kept %d", i);
	}
	cr_assert_eq(rq_timer_count(), N - (N + 2) / 3);
}

Test(timers, a_stale_record_under_a_reused_id_is_replaced, .description = "timer gone unseen")
{
	const struct sigevent *use;
	struct sigevent out;
	struct rq_timer *a = rq_timer_new(NULL, &out, &use), *b = rq_timer_new(NULL, &out, &use);

	rq_timer_publish(a, (timer_t)(intptr_t)9);
	rq_timer_publish(b, (timer_t)(intptr_t)9);
	cr_assert_eq(rq_timer_find((timer_t)(intptr_t)9), b);
	/* Deleting the stale one must not unpublish the live one. */
	rq_timer_delete((timer_t)(intptr_t)9, a);
	cr_assert_eq(rq_timer_find((timer_t)(intptr_t)9), b);
}

Test(timers, the_table_is_bounded_and_full_means_pass_through, .timeout = 30)
{
	struct sigevent ev = thread_ev(0), out;
	const struct sigevent *use;
	struct rq_timer *t = NULL;

	for (unsigned i = 0; i < RQ_TIMER_MAX; i++)
		cr_assert_not_null(t = rq_timer_new(NULL, &out, &use));
	cr_assert_null(rq_timer_new(&ev, &out, &use));
	cr_assert_eq(use, &ev, "no record: the host's own sigevent");
	rq_timer_free(t);
	cr_assert_eq(rq_timer_new(NULL, &out, &use), t, "full: a freed record comes straight back");
}

static _Atomic int churning;

static void *churn(void *arg)
{
	const struct sigevent *use;
	struct sigevent out;

	(void)arg;
	for (int i = 0; atomic_load(&churning); i++) {
		struct rq_timer *t = rq_timer_new(NULL, &out, &use);
		timer_t id = (timer_t)(intptr_t)(5000 + i % 500);

		rq_timer_publish(t, id);
		cr_assert_eq(rq_timer_lookup(id), t);
		rq_timer_delete(id, t);
	}
	return NULL;
}

Test(timers, lock_free_lookups_never_miss_while_other_timers_come_and_go, .timeout = 60)
{
	const struct sigevent *use;
	struct sigevent out;
	struct rq_timer *keep[8];
	pthread_t th;

	/* Ids interleaved with the churning ones (5000..5499) in the hash. */
	for (int i = 0; i < 8; i++) {
		keep[i] = rq_timer_new(NULL, &out, &use);
		rq_timer_publish(keep[i], (timer_t)(intptr_t)(1000 + 61 * i));
	}
	atomic_store(&churning, 1);
	cr_assert_eq(pthread_create(&th, NULL, churn, NULL), 0);
	for (int n = 0; n < 200000; n++)
		cr_assert_eq(rq_timer_find((timer_t)(intptr_t)(1000 + 61 * (n % 8))), keep[n % 8],
			     "lookup %d", n);
	atomic_store(&churning, 0);
	pthread_join(th, NULL);
	cr_assert_eq(rq_timer_count(), 8);
}

/* ---- the signal wrapper ---- */

static int hcalls, herrno_in;
static char hid[REQCTX_ID_MAX + 1];
static siginfo_t *hsi;
static void *huc;

static void plain_handler(int sig)
{
	hcalls++;
	herrno_in = errno;
	strcpy(hid, rq_ctx_cur()->id);
	cr_assert_eq(sig, SIGUSR1);
	errno = 5; /* what a careless handler does */
}

static void info_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	hcalls++;
	hsi = si;
	huc = uc;
	strcpy(hid, rq_ctx_cur()->id);
}

Test(sigctx, only_valid_signals_outside_the_crash_set_are_wrapped)
{
	cr_assert_eq(rq_sig_wrappable(SIGUSR1), 1);
	cr_assert_eq(rq_sig_wrappable(SIGALRM), 1);
	cr_assert_eq(rq_sig_wrappable(64), 1);
	cr_assert_eq(rq_sig_wrappable(0), 0);
	cr_assert_eq(rq_sig_wrappable(65), 0);
	cr_assert_eq(rq_sig_wrappable(-1), 0);
	cr_assert_eq(rq_sig_wrappable(SIGSEGV), 0);
	cr_assert_eq(rq_sig_wrappable(SIGBUS), 0);
	cr_assert_eq(rq_sig_wrappable(SIGILL), 0);
	cr_assert_eq(rq_sig_wrappable(SIGFPE), 0);
	cr_assert_eq(rq_sig_wrappable(SIGABRT), 0);
}

Test(sigctx, a_real_signal_runs_the_host_handler_in_the_interrupted_context)
{
	struct sigaction a = { .sa_handler = plain_handler }, k, o;

	cr_assert_eq(rq_sig_action(sigaction, SIGUSR1, &a, &o), 0);
	cr_assert_eq(o.sa_handler, SIG_DFL);
	cr_assert_eq(sigaction(SIGUSR1, NULL, &k), 0);
	cr_assert_eq(k.sa_sigaction, rq_sig_handler, "the kernel has the wrapper");
	cr_assert(k.sa_flags & SA_SIGINFO);
	set_ctx("busy");
	errno = 7;
	raise(SIGUSR1);
	cr_assert_eq(hcalls, 1);
	cr_assert_eq(herrno_in, 7, "the handler sees the interrupted errno");
	cr_assert_eq(errno, 5, "what the handler left in errno stays");
	cr_assert_str_eq(hid, "busy");
	cr_assert_str_eq(rq_ctx_cur()->id, "busy");
}

Test(sigctx, oldact_reports_the_hosts_handler_and_flags)
{
	struct sigaction a = { .sa_sigaction = info_handler, .sa_flags = SA_SIGINFO | SA_RESTART },
			 b = { .sa_handler = plain_handler, .sa_flags = SA_NODEFER }, o;

	sigaddset(&a.sa_mask, SIGTERM);
	cr_assert_eq(rq_sig_action(sigaction, SIGUSR1, &a, NULL), 0);
	cr_assert_eq(rq_sig_action(sigaction, SIGUSR1, &b, &o), 0);
	cr_assert_eq(o.sa_sigaction, info_handler);
	cr_assert_eq(o.sa_flags & ~SA_RESTORER, SA_SIGINFO | SA_RESTART);
	cr_assert_eq(sigismember(&o.sa_mask, SIGTERM), 1);
	cr_assert_eq(rq_sig_action(sigaction, SIGUSR1, NULL, &o), 0);
	cr_assert_eq(o.sa_handler, plain_handler);
	cr_assert_eq(o.sa_flags & ~SA_RESTORER, SA_NODEFER, "SA_SIGINFO is ours, not reported");
	cr_assert_eq(sigismember(&o.sa_mask, SIGTERM), 0);
}

static int fake_sa_calls;
static struct sigaction fake_sa_got;

static int failing_sa(int sig, const struct sigaction *act, struct sigaction *old)
{
	(void)sig;
	(void)old;
	fake_sa_calls++;
	if (act)
		fake_sa_got = *act;
	errno = EINVAL;
	return -1;
}

Test(sigctx, a_failed_install_returns_minus_errno_and_keeps_the_table)
{
	struct sigaction a = { .sa_handler = plain_handler, .sa_flags = SA_RESTART };
	struct rq_sigrec r;

	rq_sig_put(SIGUSR2, &(struct rq_sigrec){ (void *)info_handler, SA_SIGINFO, 1 });
	errno = 0;
	cr_assert_eq(rq_sig_action(failing_sa, SIGUSR2, &a, NULL), -EINVAL);
	cr_assert_eq(fake_sa_calls, 1);
	cr_assert_eq(fake_sa_got.sa_sigaction, rq_sig_handler);
	cr_assert_eq(fake_sa_got.sa_flags, SA_RESTART | SA_SIGINFO);
	rq_sig_get(SIGUSR2, &r);
	cr_assert_eq(r.fn, (void *)info_handler);
	cr_assert_eq(r.flags, SA_SIGINFO);
	cr_assert_eq(r.wrapped, 1);
}

Test(sigctx, report_translates_what_the_kernel_says)
{
	struct rq_sigrec prev = { (void *)plain_handler, SA_RESETHAND, 1 };
	struct sigaction k = { .sa_sigaction = rq_sig_handler,
			       .sa_flags = SA_SIGINFO | SA_RESETHAND | SA_RESTORER }, o;

	rq_sig_report(&k, &prev, &o);
	cr_assert_eq(o.sa_handler, plain_handler);
	cr_assert_eq(o.sa_flags, (int)(SA_RESETHAND | SA_RESTORER));
	/* The kernel reset the one-shot wrapper on delivery. */
	k.sa_handler = SIG_DFL;
	rq_sig_report(&k, &prev, &o);
	cr_assert_eq(o.sa_handler, SIG_DFL);
	cr_assert_eq(o.sa_flags, (int)(SA_RESETHAND | SA_RESTORER));
	/* Something we did not install (sigset, a raw syscall): as the kernel says. */
	k.sa_handler = plain_handler;
	k.sa_flags = SA_SIGINFO;
	rq_sig_report(&k, &prev, &o);
	cr_assert_eq(o.sa_handler, plain_handler);
	cr_assert_eq(o.sa_flags, SA_SIGINFO);
}

static __sighandler_t fake_installed;

static __sighandler_t fake_install(int sig, __sighandler_t h)
{
	struct sigaction a = { .sa_handler = h, .sa_flags = SA_RESTART }, o;

	sigaddset(&a.sa_mask, sig);
	if (sigaction(sig, &a, &o) < 0)
		return SIG_ERR;
	fake_installed = h;
	return o.sa_handler;
}

Test(sigctx, signal_family_reinstalls_with_glibcs_flags_and_returns_the_hosts_handler)
{
	struct sigaction k;

	cr_assert_eq(rq_sig_signal(sigaction, fake_install, SIGUSR1, plain_handler), SIG_DFL);
	cr_assert_eq(fake_installed, plain_handler);
	cr_assert_eq(sigaction(SIGUSR1, NULL, &k), 0);
	cr_assert_eq(k.sa_sigaction, rq_sig_handler);
	cr_assert_eq(k.sa_flags & ~SA_RESTORER, SA_RESTART | SA_SIGINFO);
	cr_assert_eq(sigismember(&k.sa_mask, SIGUSR1), 1);
	cr_assert_eq(rq_sig_signal(sigaction, fake_install, SIGUSR1, SIG_IGN), plain_handler);
	cr_assert_eq(sigaction(SIGUSR1, NULL, &k), 0);
	cr_assert_eq(k.sa_handler, SIG_IGN, "SIG_IGN goes to the kernel as it is");
	cr_assert_eq(rq_sig_signal(sigaction, fake_install, SIGUSR1, SIG_DFL), SIG_IGN);
}

/* Calls the wrapper as the kernel would, with a made-up siginfo. */
static void deliver(int sig, int code, int timerid)
{
	siginfo_t si;
	ucontext_t uc;

	memset(&si, 0, sizeof(si));
	si.si_signo = sig;
	si.si_code = code;
	si.si_timerid = timerid;
	rq_sig_handler(sig, &si, &uc);
	cr_assert_eq(hsi, &si, "the host gets the kernel's siginfo");
	cr_assert_eq(huc, &uc);
}

static void install_info(int sig)
{
	rq_sig_put(sig, &(struct rq_sigrec){ (void *)info_handler, SA_SIGINFO, 1 });
}

Test(sigctx, itimer_signals_from_the_kernel_run_in_the_arming_context)
{
	install_info(SIGALRM);
	install_info(SIGVTALRM);
	install_info(SIGPROF);
	set_ctx("real");
	rq_itimer_arm(ITIMER_REAL);
	set_ctx("virtual");
	rq_itimer_arm(ITIMER_VIRTUAL);
	rq_ctx_clear();
	rq_itimer_arm(ITIMER_PROF);
	set_ctx("busy");
	deliver(SIGALRM, SI_KERNEL, 0);
	cr_assert_str_eq(hid, "real");
	cr_assert_str_eq(rq_ctx_cur()->id, "busy");
	deliver(SIGVTALRM, SI_KERNEL, 0);
	cr_assert_str_eq(hid, "virtual");
	deliver(SIGPROF, SI_KERNEL, 0);
	cr_assert_str_eq(hid, "unknown");
	/* Sent by a process, not the itimer: the interrupted context. */
	deliver(SIGALRM, SI_USER, 0);
	cr_assert_str_eq(hid, "busy");
	cr_assert_eq(hcalls, 4);
	cr_assert_str_eq(rq_ctx_cur()->id, "busy");
}

Test(sigctx, posix_timer_signals_run_in_the_timers_arming_context)
{
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 }, out;
	const struct sigevent *use;
	struct rq_timer *t;
	struct rq_ctx prev;

	install_info(SIGUSR2);
	set_ctx("made");
	t = rq_timer_new(&ev, &out, &use);
	rq_timer_publish(t, (timer_t)(intptr_t)6);
	set_ctx("armed");
	rq_timer_arm(t, &prev);
	set_ctx("busy");
	deliver(SIGUSR2, SI_TIMER, 6);
	cr_assert_str_eq(hid, "armed");
	cr_assert_str_eq(rq_ctx_cur()->id, "busy");
	/* A timer we know nothing of: the interrupted context. */
	deliver(SIGUSR2, SI_TIMER, 8);
	cr_assert_str_eq(hid, "busy");
}

Test(sigctx, a_signal_in_the_middle_of_a_context_switch_leaves_it_byte_for_byte)
{
	struct rq_tls before;
	unsigned next;

	install_info(SIGALRM);
	set_ctx("old");
	rq_itimer_arm(ITIMER_REAL);
	set_ctx("current");
	/* An rq_ctx_set half done: the inactive buffer partly written. */
	next = rq_tls.active ^ 1;
	memset(&rq_tls.buf[next], 0x41, sizeof(rq_tls.buf[next]));
	rq_tls.buf[next].serial = 99;
	before = rq_tls;
	deliver(SIGALRM, SI_KERNEL, 0);
	cr_assert_str_eq(hid, "old");
	cr_assert_eq(memcmp(&rq_tls, &before, sizeof(before)), 0);
}
