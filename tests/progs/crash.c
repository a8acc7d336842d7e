/*
 * Crashes inside a request, for the crash-report tests. argv[1] picks how:
 *
 *   segv         NULL dereference in handle_request_crash, request "crash1"
 *   unknown      the same outside any request
 *   abort        abort() in request "abrt1"
 *   fpe          integer division by zero in request "fpe1"
 *   overflow     unbounded recursion in request "deep1"
 *   thread       a thread started in request "main1" crashes in its own "child1"
 *   host-preinit a SIGSEGV handler installed from .preinit_array, before reqctx
 *                starts: it prints a line and exits 42
 *   host-main    the same handler installed from main
 *   host-signal  the same, one-argument form, installed with signal()
 *   flags        prints what sigaction and signal report for the fatal signals
 *                (compared with and without the library), then exits 0
 *
 * reqctx_run is looked up at run time, so the program also runs without the
 * library (the request then simply runs without a context).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*run_fn)(const char *, void (*)(void *), void *);

static const char *mode;

void handle_request_crash(void *arg);
int recurse_forever(int n);

static void run(const char *id, void (*fn)(void *), void *arg)
{
	run_fn r = (run_fn)dlsym(RTLD_DEFAULT, "reqctx_run");

	if (r)
		r(id, fn, arg);
	else
		fn(arg);
}

__attribute__((noinline)) void handle_request_crash(void *arg)
{
	volatile int *p = arg;

	*p = 1;
}

__attribute__((noinline)) static void do_abort(void *arg)
{
	(void)arg;
	abort();
}

static volatile int zero;

__attribute__((noinline)) static void do_fpe(void *arg)
{
	volatile int x = 100 / zero;

	(void)arg;
	(void)x;
}

__attribute__((noinline)) int recurse_forever(int n)
{
	volatile char pad[512];

	pad[0] = (char)n;
	if (zero == 0) /* always: the compiler cannot prove the recursion endless */
		return recurse_forever(n + 1) + pad[0];
	return pad[0];
}

static void do_overflow(void *arg)
{
	(void)arg;
	recurse_forever(0);
}

static void *thread_main(void *arg)
{
	(void)arg;
	run("child1", handle_request_crash, NULL);
	return NULL;
}

static void start_thread(void *arg)
{
	pthread_t t;

	(void)arg;
	if (pthread_create(&t, NULL, thread_main, NULL) != 0)
		_exit(3);
	pthread_join(t, NULL);
}

static void put(const char *s)
{
	if (write(2, s, strlen(s)) < 0)
		_exit(4);
}

static void host_info(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	put(sig == SIGSEGV ? "host handler: SIGSEGV\n" : "host handler: other\n");
	_exit(42);
}

static void host_plain(int sig)
{
	put(sig == SIGSEGV ? "host plain handler: SIGSEGV\n" : "host plain handler: other\n");
	_exit(42);
}

static void install_host(void)
{
	struct sigaction a;

	memset(&a, 0, sizeof(a));
	a.sa_sigaction = host_info;
	a.sa_flags = SA_SIGINFO;
	if (sigaction(SIGSEGV, &a, NULL) < 0)
		_exit(5);
}

/* Runs before any library's constructor; environ may not be set yet, envp is. */
static void preinit(int argc, char **argv, char **envp)
{
	(void)argc;
	(void)argv;
	for (char **e = envp; e && *e; e++)
		if (!strcmp(*e, "CRASH_PREINIT=1"))
			install_host();
}

__attribute__((section(".preinit_array"), used)) static void (*preinit_p)(int, char **,
									  char **) = preinit;

static const char *hname(void *h)
{
	if (h == (void *)SIG_DFL)
		return "SIG_DFL";
	if (h == (void *)SIG_IGN)
		return "SIG_IGN";
	if (h == (void *)host_info)
		return "host_info";
	if (h == (void *)host_plain)
		return "host_plain";
	return "other";
}

static void show(const char *what, int sig)
{
	struct sigaction o;

	if (sigaction(sig, NULL, &o) < 0)
		_exit(6);
	printf("%s sig=%d handler=%s flags=%#x\n", what, sig, hname((void *)o.sa_handler),
	       (unsigned)o.sa_flags);
}

static int flags(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	struct sigaction a, o;

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		show("start", sigs[i]);
	memset(&a, 0, sizeof(a));
	a.sa_sigaction = host_info;
	a.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaddset(&a.sa_mask, SIGUSR1);
	sigaction(SIGSEGV, &a, &o);
	printf("old sig=11 handler=%s flags=%#x\n", hname((void *)o.sa_handler), (unsigned)o.sa_flags);
	show("set", SIGSEGV);
	sigaction(SIGSEGV, NULL, &o);
	printf("mask has SIGUSR1=%d\n", sigismember(&o.sa_mask, SIGUSR1));
	printf("signal returned %s\n", hname((void *)signal(SIGSEGV, host_plain)));
	show("signal", SIGSEGV);
	printf("signal returned %s\n", hname((void *)signal(SIGSEGV, SIG_DFL)));
	show("dfl", SIGSEGV);
	printf("signal returned %s\n", hname((void *)signal(SIGBUS, SIG_IGN)));
	show("ign", SIGBUS);
	a.sa_flags = SA_ONSTACK | SA_NODEFER;
	a.sa_handler = host_plain;
	sigaction(SIGFPE, &a, NULL);
	show("onstack", SIGFPE);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	mode = argv[1];
	if (!strcmp(mode, "segv"))
		run("crash1", handle_request_crash, NULL);
	else if (!strcmp(mode, "unknown"))
		handle_request_crash(NULL);
	else if (!strcmp(mode, "abort"))
		run("abrt1", do_abort, NULL);
	else if (!strcmp(mode, "fpe"))
		run("fpe1", do_fpe, NULL);
	else if (!strcmp(mode, "overflow"))
		run("deep1", do_overflow, NULL);
	else if (!strcmp(mode, "thread"))
		run("main1", start_thread, NULL);
	else if (!strcmp(mode, "host-preinit"))
		run("pre1", handle_request_crash, NULL);
	else if (!strcmp(mode, "host-main")) {
		install_host();
		run("main2", handle_request_crash, NULL);
	} else if (!strcmp(mode, "host-signal")) {
		if (signal(SIGSEGV, host_plain) == SIG_ERR)
			return 5;
		run("sig1", handle_request_crash, NULL);
	} else if (!strcmp(mode, "flags"))
		return flags();
	else
		return 2;
	return 1; /* not reached: each mode crashes */
}
