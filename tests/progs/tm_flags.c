/*
 * What sigaction and the signal() family report back, written to the file
 * named by argv[1] (not a log): the report must be the same with and without
 * the library, which installs its own handler in the kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern __sighandler_t sysv_signal(int, __sighandler_t);
extern __sighandler_t __sysv_signal(int, __sighandler_t);
extern __sighandler_t bsd_signal(int, __sighandler_t);

static int rep;
static volatile sig_atomic_t calls;
static char trace[256];

static void put(const char *s)
{
	size_t n = strlen(s);

	if (write(rep, s, n) != (ssize_t)n)
		_exit(3);
}

static void h1(int sig)
{
	(void)sig;
	calls++;
}

static void h2(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	calls++;
}

static void h3(int sig)
{
	(void)sig;
	calls++;
}

static volatile sig_atomic_t depth, raised;

static void nest(int sig)
{
	int d = ++depth;
	size_t n = strlen(trace);

	snprintf(trace + n, sizeof(trace) - n, " enter%d", d);
	if (!raised++)
		raise(sig);
	n = strlen(trace);
	snprintf(trace + n, sizeof(trace) - n, " leave%d", d);
	depth--;
}

static const char *name(void *p)
{
	if (p == (void *)SIG_DFL)
		return "SIG_DFL";
	if (p == (void *)SIG_IGN)
		return "SIG_IGN";
	if (p == (void *)SIG_ERR)
		return "SIG_ERR";
	if (p == (void *)h1)
		return "h1";
	if (p == (void *)h2)
		return "h2";
	if (p == (void *)h3)
		return "h3";
	if (p == (void *)nest)
		return "nest";
	return "foreign";
}

static const char *err(int r)
{
	static char b[32];

	if (r == 0 && errno == 99)
		return "untouched";
	snprintf(b, sizeof(b), "%d", errno);
	return b;
}

static void show(const char *what, int r, const struct sigaction *o)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s: r=%d errno=%s", what, r, err(r));

	if (r == 0 && o) {
		n += snprintf(line + n, sizeof(line) - (size_t)n,
			      " handler=%s flags=%#x restorer=%s mask=", name((void *)o->sa_handler),
			      (unsigned)o->sa_flags, o->sa_restorer ? "set" : "null");
		for (int s = 1; s < 65; s++)
			if (sigismember(&o->sa_mask, s) == 1)
				n += snprintf(line + n, sizeof(line) - (size_t)n, "%d,", s);
	}
	snprintf(line + n, sizeof(line) - (size_t)n, "\n");
	put(line);
	errno = 99;
}

static void query(const char *what, int sig)
{
	struct sigaction o;

	memset(&o, 0x5a, sizeof(o));
	show(what, sigaction(sig, NULL, &o), &o);
}

static void ret(const char *what, __sighandler_t r)
{
	char line[128];

	snprintf(line, sizeof(line), "%s: returned %s errno=%s\n", what, name((void *)r),
		 err(r == SIG_ERR ? -1 : 0));
	put(line);
	errno = 99;
}

static void act(const char *what, int sig, void *fn, int flags, int masked)
{
	struct sigaction a, o;
	int r;

	memset(&a, 0, sizeof(a));
	memset(&o, 0x5a, sizeof(o));
	a.sa_handler = (__sighandler_t)fn;
	a.sa_flags = flags;
	sigemptyset(&a.sa_mask);
	if (masked)
		sigaddset(&a.sa_mask, masked);
	r = sigaction(sig, &a, &o);
	show(what, r, &o);
}

int main(int argc, char **argv)
{
	struct sigaction same;
	int r;

	if (argc < 2 || (rep = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
		return 2;
	errno = 99;
	query("initial", SIGUSR1);
	act("h1 restart", SIGUSR1, (void *)h1, SA_RESTART, SIGTERM);
	act("h2 siginfo onstack", SIGUSR1, (void *)h2, SA_SIGINFO | SA_ONSTACK, 0);
	query("now h2", SIGUSR1);
	ret("signal h3", signal(SIGUSR1, h3));
	query("after signal", SIGUSR1);
	ret("sysv_signal h1", sysv_signal(SIGUSR1, h1));
	query("after sysv_signal", SIGUSR1);
	ret("__sysv_signal h3", __sysv_signal(SIGUSR1, h3));
	ret("bsd_signal h2", bsd_signal(SIGUSR1, (__sighandler_t)h1));
	query("after bsd_signal", SIGUSR1);
	ret("signal ign", signal(SIGUSR1, SIG_IGN));
	query("after ign", SIGUSR1);
	ret("signal dfl", signal(SIGUSR1, SIG_DFL));
	query("after dfl", SIGUSR1);
	ret("signal 0", signal(0, h1));
	ret("signal 65", signal(65, h1));
	ret("signal kill", signal(SIGKILL, h1));
	act("sigaction kill", SIGKILL, (void *)h1, 0, 0);
	act("sigaction 65", 65, (void *)h1, 0, 0);
	act("sigaction segv", SIGSEGV, (void *)h1, SA_NODEFER, 0);
	query("segv", SIGSEGV);

	/* act and oldact the same struct */
	memset(&same, 0, sizeof(same));
	same.sa_handler = h3;
	same.sa_flags = SA_RESTART;
#ifndef __clang__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
	r = sigaction(SIGUSR1, &same, &same); /* deliberate: glibc allows it */
#ifndef __clang__
#pragma GCC diagnostic pop
#endif
	show("same struct", r, &same);
	query("after same", SIGUSR1);

	/* SA_RESETHAND: one delivery, then the kernel's SIG_DFL */
	act("resethand", SIGUSR2, (void *)h1, SA_RESETHAND | SA_SIGINFO, 0);
	calls = 0;
	raise(SIGUSR2);
	dprintf(rep, "resethand calls=%d\n", calls);
	query("after reset", SIGUSR2);
	ret("signal after reset", signal(SIGUSR2, SIG_IGN));
	ret("sysv one-shot", sysv_signal(SIGUSR2, h1));
	calls = 0;
	raise(SIGUSR2);
	dprintf(rep, "sysv calls=%d\n", calls);
	query("after sysv one-shot", SIGUSR2);

	/* SA_NODEFER: the nested signal runs inside; without it, after */
	act("nodefer", SIGUSR2, (void *)nest, SA_NODEFER, 0);
	trace[0] = '\0';
	raised = 0;
	raise(SIGUSR2);
	dprintf(rep, "nodefer:%s\n", trace);
	act("defer", SIGUSR2, (void *)nest, 0, 0);
	trace[0] = '\0';
	raised = 0;
	raise(SIGUSR2);
	dprintf(rep, "defer:%s\n", trace);
	return 0;
}
