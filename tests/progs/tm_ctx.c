/*
 * Timers and signal handlers under the library: each case arms timers inside
 * reqctx_run contexts and logs from the expiry, the callback or the handler,
 * so the test can check the prefix of every stderr line. Usage: tm_ctx CASE
 * with CASE one of timerfd, timerfd-epoll, thread, signal, itimer, nodefer, reset.
 */
#include <dlfcn.h>
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef int (*run_fn)(const char *, void (*)(void *), void *);
static run_fn run;

/* Runs fn inside request `id` when the library is there. */
static void in(const char *id, void (*fn)(void *), void *arg)
{
	if (run)
		run(id, fn, arg);
	else
		fn(arg);
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static const struct itimerspec ms20 = { .it_value = { 0, 20 * 1000000L } };

/* ---- timerfd ---- */

static int tfd;

static void tfd_make(void *arg)
{
	(void)arg;
	if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC)) < 0)
		die("timerfd_create");
}

static void tfd_arm(void *arg)
{
	(void)arg;
	if (timerfd_settime(tfd, 0, &ms20, NULL) < 0)
		die("timerfd_settime");
}

static void tfd_read(void *what)
{
	uint64_t n = 0;

	if (read(tfd, &n, sizeof(n)) != sizeof(n))
		die("read");
	fprintf(stderr, "%s expired n=%llu\n", (char *)what, (unsigned long long)n);
}

static void case_timerfd(void)
{
	int r;

	in("made", tfd_make, NULL);
	in("armA", tfd_arm, NULL);
	tfd_read("outside");
	in("armB", tfd_arm, NULL);
	in("other", tfd_read, "in-other");
	errno = 0;
	r = timerfd_settime(-1, 0, &ms20, NULL);
	fprintf(stderr, "bad fd r=%d errno=%d\n", r, errno);
}

/* An expiry reported by epoll: the callback logs before it reads the timerfd. */
static void tfd_poll(void *what)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0)
		die("epoll");
	if (epoll_wait(ep, &ev, 1, 5000) != 1)
		die("epoll_wait");
	fprintf(stderr, "%s epoll reported the expiry\n", (char *)what);
	close(ep);
}

static void case_timerfd_epoll(void)
{
	in("made", tfd_make, NULL);
	in("armE", tfd_arm, NULL);
	in("loop", tfd_poll, "in-loop");
}

/* ---- SIGEV_THREAD ---- */

static sem_t done;
static timer_t tt;

static void callback(union sigval v)
{
	fprintf(stderr, "callback val=%d\n", v.sival_int);
	sem_post(&done);
}

static void tt_make(void *val)
{
	struct sigevent ev = { .sigev_notify = SIGEV_THREAD, .sigev_notify_function = callback };

	ev.sigev_value.sival_int = (int)(intptr_t)val;
	if (timer_create(CLOCK_MONOTONIC, &ev, &tt) < 0)
		die("timer_create");
}

static void tt_arm(void *ms)
{
	struct itimerspec its = { .it_value = { 0, (long)(intptr_t)ms * 1000000L } };

	if (timer_settime(tt, 0, &its, NULL) < 0)
		die("timer_settime");
}

static void tt_wait_delete(void)
{
	while (sem_wait(&done) < 0)
		;
	if (timer_delete(tt) < 0)
		die("timer_delete");
}

static void case_thread(void)
{
	char id[16];

	sem_init(&done, 0, 0);
	in("made", tt_make, (void *)41);
	in("armed", tt_arm, (void *)20);
	tt_wait_delete();
	in("made2", tt_make, (void *)42);
	tt_arm((void *)20);
	tt_wait_delete();
	/* More timers than the quarantine holds: records are reused. */
	for (int i = 0; i < 150; i++) {
		snprintf(id, sizeof(id), "L%d", i);
		in(id, tt_make, (void *)(intptr_t)(1000 + i));
		in(id, tt_arm, (void *)1);
		tt_wait_delete();
	}
	fprintf(stderr, "main\n");
}

/* ---- SIGEV_SIGNAL ---- */

static volatile sig_atomic_t hits;
static sigset_t waitmask;

static const char *code_name(int code)
{
	switch (code) {
	case SI_TIMER: return "SI_TIMER";
	case SI_TKILL: return "SI_TKILL";
	case SI_USER: return "SI_USER";
	case SI_KERNEL: return "SI_KERNEL";
	}
	return "other";
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (si->si_code == SI_TIMER)
		fprintf(stderr, "handler sig=%d code=%s val=%d\n", sig, code_name(si->si_code),
			si->si_value.sival_int);
	else
		fprintf(stderr, "handler sig=%d code=%s\n", sig, code_name(si->si_code));
	hits++;
}

static void wait_hit(void *what)
{
	while (!hits)
		sigsuspend(&waitmask);
	hits = 0;
	fprintf(stderr, "after %s\n", (char *)what);
}

static void st_make(void *arg)
{
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };

	(void)arg;
	ev.sigev_value.sival_int = 77;
	if (timer_create(CLOCK_MONOTONIC, &ev, &tt) < 0)
		die("timer_create");
}

static void raise_usr1(void *arg)
{
	(void)arg;
	raise(SIGUSR1);
}

static void block(int sig)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, sig);
	sigprocmask(SIG_BLOCK, &s, &waitmask);
	sigdelset(&waitmask, sig);
}

static void case_signal(void)
{
	struct sigaction sa = { .sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO };

	block(SIGUSR1);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		die("sigaction");
	in("sigmade", st_make, NULL);
	in("sigarm", tt_arm, (void *)20);
	in("waiting", wait_hit, "timer");
	in("raiser", raise_usr1, NULL);
	in("waiting2", wait_hit, "raise");
	tt_arm((void *)20);
	in("waiting3", wait_hit, "unknown-armed");
	fprintf(stderr, "main\n");
}

/* ---- itimers, alarm, ualarm ---- */

static void on_alarm(int sig)
{
	fprintf(stderr, "alarm handler sig=%d\n", sig);
	hits++;
}

static void set_real(void *ms)
{
	struct itimerval v = { .it_value = { 0, (long)(intptr_t)ms * 1000 } };

	if (setitimer(ITIMER_REAL, &v, NULL) < 0)
		die("setitimer");
}

static void do_alarm(void *arg)
{
	(void)arg;
	alarm(1);
}

static void do_ualarm(void *arg)
{
	(void)arg;
	ualarm(20000, 0);
}

static void set_virtual(void *arg)
{
	struct itimerval v = { .it_value = { 0, 20000 } };

	(void)arg;
	if (setitimer(ITIMER_VIRTUAL, &v, NULL) < 0)
		die("setitimer");
}

/* Burns CPU until the SIGVTALRM handler has run, with no stdio of its own meanwhile. */
static void busy(void *arg)
{
	(void)arg;
	while (!hits)
		;
	hits = 0;
	fprintf(stderr, "busy loop done\n");
}

static void case_itimer(void)
{
	/* Installed before any request, as servers do at start-up. */
	if (signal(SIGALRM, on_alarm) == SIG_ERR || signal(SIGVTALRM, on_alarm) == SIG_ERR)
		die("signal");
	block(SIGALRM);
	in("it", set_real, (void *)20);
	in("w1", wait_hit, "setitimer");
	in("al", do_alarm, NULL);
	in("w2", wait_hit, "alarm");
	in("ua", do_ualarm, NULL);
	in("w3", wait_hit, "ualarm");
	set_real((void *)20);
	in("w4", wait_hit, "unknown-armed");
	in("vt", set_virtual, NULL);
	in("busy", busy, NULL);
	fprintf(stderr, "main\n");
}

/* ---- SA_NODEFER: a nested delivery inside the handler ---- */

static int depth;

static void on_nested(int sig)
{
	int d = ++depth;

	fprintf(stderr, "enter depth=%d\n", d);
	if (d == 1)
		raise(sig);
	fprintf(stderr, "leave depth=%d\n", d);
	depth--;
}

static void nested(void *arg)
{
	(void)arg;
	raise(SIGUSR2);
	fprintf(stderr, "after nested\n");
}

static void case_nodefer(void)
{
	struct sigaction sa = { .sa_handler = on_nested, .sa_flags = SA_NODEFER };

	if (sigaction(SIGUSR2, &sa, NULL) < 0)
		die("sigaction");
	in("nd", nested, NULL);
	fprintf(stderr, "main\n");
}

/* ---- SA_RESETHAND: the handler runs once, in context; then the default ---- */

static void on_once(int sig)
{
	fprintf(stderr, "once sig=%d\n", sig);
}

static void case_reset(void)
{
	struct sigaction sa = { .sa_handler = on_once, .sa_flags = SA_RESETHAND }, old;

	if (sigaction(SIGUSR2, &sa, NULL) < 0)
		die("sigaction");
	in("r1", nested, NULL);
	sigaction(SIGUSR2, NULL, &old);
	fprintf(stderr, "now %s\n", old.sa_handler == SIG_DFL ? "SIG_DFL" : "other");
	raise(SIGUSR2); /* the default action: terminated by SIGUSR2 */
	fprintf(stderr, "not reached\n");
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";

	run = (run_fn)dlsym(RTLD_DEFAULT, "reqctx_run");
	if (!strcmp(c, "timerfd"))
		case_timerfd();
	else if (!strcmp(c, "timerfd-epoll"))
		case_timerfd_epoll();
	else if (!strcmp(c, "thread"))
		case_thread();
	else if (!strcmp(c, "signal"))
		case_signal();
	else if (!strcmp(c, "itimer"))
		case_itimer();
	else if (!strcmp(c, "nodefer"))
		case_nodefer();
	else if (!strcmp(c, "reset"))
		case_reset();
	else
		return 2;
	return 0;
}
