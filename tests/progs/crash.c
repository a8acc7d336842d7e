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
 *   nullcall     a call through a NULL function pointer in call_null, request
 *                "null1"
 *   daemon DIR [noreadv]
 *                closes every fd from 3 up, opens DIR/a.dat and DIR/b.dat
 *                read-write (they get fds 3 and 4), then crashes as segv in
 *                request "dmn1"; with noreadv, a seccomp filter first makes
 *                process_vm_readv fail with ENOSYS
 *   fds          prints its open fds (number and target), starts and joins a
 *                thread, prints them again, exits 0
 *   longjmp      a SIGSEGV handler that recovers with siglongjmp, three times
 *                in request "jmp1"; prints "recovered 3" and exits 0
 *   reraise      a SIGSEGV handler that prints a line, sets SIG_DFL with
 *                signal() and returns, so that the fault happens again
 *   oneshot      the same with an SA_RESETHAND handler that only prints
 *   raise        a SIGSEGV handler that prints, sets SIG_DFL and raise()s
 *
 * reqctx_run is looked up at run time, so the program also runs without the
 * library (the request then simply runs without a context).
 */
#include <dirent.h>
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

typedef void (*callback)(void *);

static volatile callback null_fn;

/* Calls through a NULL pointer: the crash leaves no frame of its own. */
__attribute__((noinline)) void call_null(void *arg);
__attribute__((noinline)) void call_null(void *arg)
{
	null_fn(arg);
	__asm__ volatile("" ::: "memory"); /* not a tail call */
}

/* process_vm_readv fails with ENOSYS from now on (a restrictive container). */
static void no_readv(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		_exit(7);
}

static int open_data(const char *dir, const char *name)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return open(p, O_RDWR);
}

static int daemon_crash(const char *dir, const char *opt)
{
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	if (open_data(dir, "a.dat") != 3 || open_data(dir, "b.dat") != 4)
		return 8;
	if (opt && !strcmp(opt, "noreadv"))
		no_readv();
	run("dmn1", handle_request_crash, NULL);
	return 1;
}

static void list_fds(const char *when)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char p[300], t[256];

	if (!d)
		_exit(9);
	while ((e = readdir(d))) {
		ssize_t n;

		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
		n = readlink(p, t, sizeof(t) - 1);
		t[n > 0 ? n : 0] = '\0';
		printf("%s fd %s -> %s\n", when, e->d_name, t);
	}
	closedir(d);
}

static void *idle(void *arg)
{
	return arg;
}

static int fds(void)
{
	pthread_t t;

	list_fds("start");
	if (pthread_create(&t, NULL, idle, NULL) || pthread_join(t, NULL))
		return 10;
	list_fds("thread");
	return 0;
}

static sigjmp_buf back;
static volatile int recovered;

static void jump_back(int sig)
{
	(void)sig;
	siglongjmp(back, 1);
}

static void recover(void *arg)
{
	struct sigaction a;

	(void)arg;
	memset(&a, 0, sizeof(a));
	a.sa_handler = jump_back;
	if (sigaction(SIGSEGV, &a, NULL) < 0)
		_exit(5);
	for (int i = 0; i < 3; i++)
		if (sigsetjmp(back, 1) == 0)
			handle_request_crash(NULL);
		else
			recovered++;
}

static void to_default(int sig)
{
	put(sig == SIGSEGV ? "host saw SIGSEGV\n" : "host saw other\n");
	signal(sig, SIG_DFL);
}

static void only_print(int sig)
{
	put(sig == SIGSEGV ? "one-shot host saw SIGSEGV\n" : "one-shot host saw other\n");
}

static void and_raise(int sig)
{
	put(sig == SIGSEGV ? "host raises SIGSEGV\n" : "host raises other\n");
	signal(sig, SIG_DFL);
	raise(sig);
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
	else if (!strcmp(mode, "nullcall"))
		run("null1", call_null, NULL);
	else if (!strcmp(mode, "daemon") && argc >= 3)
		return daemon_crash(argv[2], argc > 3 ? argv[3] : NULL);
	else if (!strcmp(mode, "fds"))
		return fds();
	else if (!strcmp(mode, "longjmp")) {
		run("jmp1", recover, NULL);
		printf("recovered %d\n", recovered);
		return recovered == 3 ? 0 : 11;
	} else if (!strcmp(mode, "reraise")) {
		signal(SIGSEGV, to_default);
		run("again1", handle_request_crash, NULL);
	} else if (!strcmp(mode, "oneshot")) {
		struct sigaction a;

		memset(&a, 0, sizeof(a));
		a.sa_handler = only_print;
		a.sa_flags = SA_RESETHAND;
		if (sigaction(SIGSEGV, &a, NULL) < 0)
			return 5;
		run("once1", handle_request_crash, NULL);
	} else if (!strcmp(mode, "raise")) {
		signal(SIGSEGV, and_raise);
		run("raise1", handle_request_crash, NULL);
	} else
		return 2;
	return 1; /* not reached: each mode crashes */
}
