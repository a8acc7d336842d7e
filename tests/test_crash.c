/*
 * Crash reports (src/crash.h). The unit tests format lines and write a whole
 * report through a capturing write function, without any crash. The
 * interposition tests run tests/progs/crash.c (built at -O0) under the
 * library, let it crash, and check stderr and how it died.
 */
#include <gnu/libc-version.h>

#include "proc.h"

#include "config.h"
#include "crash.h"
#include "ctx.h"
#include "sigctx.h"

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* the kernel's; glibc sets it and reports it back */
#endif

/* ---- unit tests ---- */

static const char *cfg_prefix;

static const char *cfg_env(const char *name)
{
	if (cfg_prefix && !strcmp(name, "REQCTX_PREFIX"))
		return cfg_prefix;
	return NULL;
}

static void cfg_report(const char *line)
{
	cr_log_error("%s", line);
}

static void load(const char *prefix)
{
	cfg_prefix = prefix;
	rq_config_load(cfg_env, cfg_report);
}

static void set_ctx(const char *id)
{
	struct rq_ctx c = { .serial = rq_serial_next(), .len = (uint32_t)strlen(id) };

	strcpy(c.id, id);
	rq_ctx_set(&c);
}

TestSuite(crash_fmt, .init = NULL, .timeout = 10);

Test(crash_fmt, numbers_are_formatted_without_libc)
{
	char b[32];

	cr_assert_eq(rq_crash_fmt_dec(b, 0), 1);
	cr_assert_eq(memcmp(b, "0", 1), 0);
	cr_assert_eq(rq_crash_fmt_dec(b, 1234567), 7);
	cr_assert_eq(memcmp(b, "1234567", 7), 0);
	cr_assert_eq(rq_crash_fmt_dec(b, 18446744073709551615ull), 20);
	cr_assert_eq(memcmp(b, "18446744073709551615", 20), 0);
	cr_assert_eq(rq_crash_fmt_hex(b, 0), 1);
	cr_assert_eq(memcmp(b, "0", 1), 0);
	cr_assert_eq(rq_crash_fmt_hex(b, 0xdeadbeef), 8);
	cr_assert_eq(memcmp(b, "deadbeef", 8), 0);
	cr_assert_eq(rq_crash_fmt_hex(b, 0xffffffffffffffffull), 16);
	cr_assert_eq(memcmp(b, "ffffffffffffffff", 16), 0);
}

Test(crash_fmt, the_five_fatal_signals_have_names_and_no_other)
{
	cr_assert_str_eq(rq_crash_signame(SIGSEGV), "SIGSEGV");
	cr_assert_str_eq(rq_crash_signame(SIGBUS), "SIGBUS");
	cr_assert_str_eq(rq_crash_signame(SIGILL), "SIGILL");
	cr_assert_str_eq(rq_crash_signame(SIGFPE), "SIGFPE");
	cr_assert_str_eq(rq_crash_signame(SIGABRT), "SIGABRT");
	cr_assert_null(rq_crash_signame(SIGTERM));
	cr_assert_eq(rq_sig_fatal(SIGSEGV), 1);
	cr_assert_eq(rq_sig_fatal(SIGABRT), 1);
	cr_assert_eq(rq_sig_fatal(SIGUSR1), 0);
}

Test(crash_fmt, head_line_uses_the_configured_prefix)
{
	char b[RQ_CRASH_LINE];
	size_t n;

	load(NULL);
	n = rq_crash_head(b, sizeof(b), "abc123", SIGSEGV, 0, 4242);
	cr_assert_eq(n, strlen("[req:abc123] fatal signal 11 (SIGSEGV) at 0x0 in thread 4242\n"));
	b[n] = '\0';
	cr_assert_str_eq(b, "[req:abc123] fatal signal 11 (SIGSEGV) at 0x0 in thread 4242\n");
	load("<%s>: ");
	n = rq_crash_head(b, sizeof(b), "unknown", SIGABRT, 0x7f00dead10, 7);
	b[n] = '\0';
	cr_assert_str_eq(b, "<unknown>: fatal signal 6 (SIGABRT) at 0x7f00dead10 in thread 7\n");
	load(NULL);
}

Test(crash_fmt, frame_lines_name_function_offset_and_module)
{
	char b[RQ_CRASH_LINE];
	size_t n;

	load(NULL);
	n = rq_crash_frame(b, sizeof(b), "r1", 0, "handle_request_crash", 0x14, "crash");
	b[n] = '\0';
	cr_assert_str_eq(b, "[req:r1]   #0 handle_request_crash+0x14 (crash)\n");
	n = rq_crash_frame(b, sizeof(b), "r1", 12, NULL, 0x7f0e3c2a1d90, "?");
	b[n] = '\0';
	cr_assert_str_eq(b, "[req:r1]   #12 0x7f0e3c2a1d90 (?)\n");
}

Test(crash_fmt, a_line_too_long_is_cut_and_still_ends_with_a_newline)
{
	char b[24];
	size_t n;

	load(NULL);
	n = rq_crash_frame(b, sizeof(b), "r1", 3, "a_very_long_function_name", 1, "m");
	cr_assert_eq(n, sizeof(b));
	cr_assert_eq(memcmp(b, "[req:r1]   #3 a_very_lo\n", 24), 0);
	cr_assert_eq(rq_crash_head(b, 2, "x", SIGSEGV, 0, 1), 2);
	cr_assert_eq(b[1], '\n');
}

static char cap[65536];
static size_t ncap;
static int cap_short; /* hand out at most this many bytes per call (0: all) */

static ssize_t capture(int fd, const void *buf, size_t n)
{
	cr_assert_eq(fd, 9);
	if (cap_short && n > (size_t)cap_short)
		n = (size_t)cap_short;
	cr_assert_lt(ncap + n, sizeof(cap));
	memcpy(cap + ncap, buf, n);
	ncap += n;
	cap[ncap] = '\0';
	return (ssize_t)n;
}

void report_from_here(void);

__attribute__((noinline)) void report_from_here(void)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = SIGSEGV;
	si.si_code = SEGV_MAPERR;
	si.si_addr = (void *)0x10;
	rq_crash_report(capture, 9, SIGSEGV, &si, NULL);
	__asm__ volatile("" ::: "memory"); /* not a tail call */
}

static void check_report(const char *id)
{
	char head[128], frame0[128];

	snprintf(head, sizeof(head), "[req:%s] fatal signal 11 (SIGSEGV) at 0x10 in thread %ld\n",
		 id, (long)gettid());
	snprintf(frame0, sizeof(frame0), "\n[req:%s]   #0 report_from_here+0x", id);
	cr_assert_eq(strncmp(cap, head, strlen(head)), 0, "%s", cap);
	cr_assert_not_null(strstr(cap, frame0), "%s", cap);
	cr_assert_not_null(strstr(cap, " (test_crash)\n"), "%s", cap);
	cr_assert_eq(cap[ncap - 1], '\n');
}

Test(crash_report, a_report_names_the_request_and_the_calling_function)
{
	load(NULL);
	ncap = 0;
	rq_crash_init();
	set_ctx("unit-1");
	report_from_here();
	check_report("unit-1");
	cr_assert_not_null(strstr(cap, "[req:unit-1]   #1 "), "%s", cap);
}

Test(crash_report, outside_a_request_the_id_is_unknown_and_short_writes_lose_nothing)
{
	load(NULL);
	ncap = 0;
	cap_short = 3;
	rq_crash_init();
	rq_ctx_clear();
	report_from_here();
	cap_short = 0;
	check_report("unknown");
}

Test(crash_report, modules_known_at_start_up_are_named_and_others_are_not)
{
	rq_crash_init();
	cr_assert_str_eq(rq_crash_module((uintptr_t)report_from_here), "test_crash");
	/* a libc function no sanitizer runtime intercepts */
	cr_assert_str_eq(rq_crash_module((uintptr_t)gnu_get_libc_version), "libc.so.6");
	cr_assert_str_eq(rq_crash_module(16), "?");
}

Test(crash_report, an_alternate_stack_is_installed_once_and_freed)
{
	stack_t ss, none = { .ss_flags = SS_DISABLE };
	void *mem;

	/* Start from a thread without one (sanitizer runtimes install their own). */
	cr_assert_eq(sigaltstack(&none, NULL), 0);
	mem = rq_crash_altstack();

	cr_assert_not_null(mem);
	cr_assert_eq(sigaltstack(NULL, &ss), 0);
	cr_assert_eq(ss.ss_flags & SS_DISABLE, 0);
	cr_assert_geq(ss.ss_size, (size_t)RQ_CRASH_ALTSTACK);
	cr_assert_null(rq_crash_altstack(), "the thread's own stack is never replaced");
	rq_crash_altstack_free(mem);
	cr_assert_eq(sigaltstack(NULL, &ss), 0);
	cr_assert_neq(ss.ss_flags & SS_DISABLE, 0);
}

Test(crash_report, oldact_shows_what_the_host_set_not_our_handler)
{
	struct rq_sigrec init = { (void *)SIG_DFL, 0, RQ_SIG_CRASH_INIT },
			 host = { (void *)cfg_report, SA_RESTART, RQ_SIG_CRASH };
	struct sigaction k = { .sa_sigaction = rq_crash_handler,
			       .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTORER,
			       .sa_restorer = (void (*)(void))abort }, o;

	rq_sig_report(&k, &init, &o);
	cr_assert_eq(o.sa_handler, SIG_DFL);
	cr_assert_eq(o.sa_flags, 0, "as the kernel had it before reqctx started");
	cr_assert_null((void *)o.sa_restorer);
	k.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_RESTORER;
	rq_sig_report(&k, &host, &o);
	cr_assert_eq((void *)o.sa_handler, (void *)cfg_report);
	cr_assert_eq(o.sa_flags, SA_RESTART | SA_RESTORER);
}

/* ---- interposition: tests/progs/crash.c under the library ---- */

static char dir_err[200];
static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
	snprintf(dir_err, sizeof(dir_err), "%s/err", dir);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(crash_preload, .init = setup, .fini = teardown, .timeout = 60);

struct died {
	pid_t pid;
	int exited, code, sig;
	char *err;
};

/* How a process started with proc_start ended, with its stderr. */
static struct died wait_died(pid_t pid, const char *what)
{
	struct died d;
	long end = proc_now_ms() + 30000;
	int st;

	d.pid = pid;
	for (;;) {
		pid_t r = waitpid(d.pid, &st, WNOHANG);

		if (r == d.pid)
			break;
		if (proc_now_ms() > end) {
			kill(d.pid, SIGKILL);
			waitpid(d.pid, &st, 0);
			cr_assert_fail("%s did not finish", what);
		}
		usleep(2000);
	}
	d.exited = WIFEXITED(st);
	d.code = d.exited ? WEXITSTATUS(st) : -1;
	d.sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	d.err = slurp(dir_err, NULL);
	return d;
}

/*
 * Runs build/progs/O0/crash with args (NULL-terminated, after the program)
 * under the library (or not), stdout to out (NULL: /dev/null), and says how
 * it ended. fds 1 and 2 are logs, whatever the default for a non-server.
 */
static struct died crash_args(const char *const *args, const char *const *env, int preload,
			      const char *out)
{
	char path[256];
	char *argv[8] = { path };
	const char *envp[16];
	int n = 0;

	snprintf(path, sizeof(path), "%s/progs/O0/crash", bdir());
	for (int i = 0; args[i] && i < 6; i++)
		argv[i + 1] = (char *)args[i];
	for (const char *const *e = env; e && *e && n < 14; e++)
		envp[n++] = *e;
	envp[n++] = "REQCTX_LOG_FDS=1,2"; /* unless env says otherwise: getenv takes the first */
	envp[n] = NULL;
	return wait_died(proc_start(argv, envp, preload, out, dir_err), args[0]);
}

/* Runs build/progs/O0/crash MODE under the library (or not) and says how it ended. */
static struct died crash(const char *mode, const char *const *env, int preload)
{
	const char *args[] = { mode, NULL };

	return crash_args(args, env, preload, NULL);
}

static void want_line(const char *err, const char *line)
{
	cr_assert_not_null(strstr(err, line), "want %s\n--- stderr ---\n%s", line, err);
}

/* The first line, exactly, with the crashing thread's id. */
static void want_head(const struct died *d, const char *id, int sig, const char *name,
		      const char *addr, long tid)
{
	char line[256];

	snprintf(line, sizeof(line), "[req:%s] fatal signal %d (%s) at %s in thread %ld\n", id,
		 sig, name, addr, tid);
	cr_assert_eq(strncmp(d->err, line, strlen(line)), 0, "want %s--- stderr ---\n%s", line,
		     d->err);
}

/* A frame line naming fn in the program itself. */
static void want_frame(const char *err, const char *id, unsigned n, const char *fn)
{
	char line[256];
	const char *p;

	snprintf(line, sizeof(line), "\n[req:%s]   #%u %s+0x", id, n, fn);
	p = strstr(err, line);
	cr_assert_not_null(p, "want %s\n--- stderr ---\n%s", line + 1, err);
	p = strchr(p + 1, '\n');
	cr_assert_not_null(p);
	cr_assert_eq(strncmp(p - 8, " (crash)", 8), 0, "%.*s", (int)(p - err), err);
}

Test(crash_preload, a_null_dereference_in_a_request_names_the_request_and_the_function)
{
	struct died d = crash("segv", NULL, 1);

	cr_assert_eq(d.sig, SIGSEGV, "exited=%d code=%d", d.exited, d.code);
	want_head(&d, "crash1", 11, "SIGSEGV", "0x0", d.pid);
	want_frame(d.err, "crash1", 0, "handle_request_crash");
	want_line(d.err, "\n[req:crash1]   #1 reqctx_run+0x");
	want_frame(d.err, "crash1", 2, "run");
	want_frame(d.err, "crash1", 3, "main");
}

Test(crash_preload, without_the_library_the_same_program_dies_the_same_way)
{
	struct died d = crash("segv", NULL, 0);

	cr_assert_eq(d.sig, SIGSEGV);
	cr_assert_str_eq(d.err, "");
}

Test(crash_preload, outside_a_request_the_report_says_unknown)
{
	struct died d = crash("unknown", NULL, 1);

	cr_assert_eq(d.sig, SIGSEGV);
	want_head(&d, "unknown", 11, "SIGSEGV", "0x0", d.pid);
	want_frame(d.err, "unknown", 0, "handle_request_crash");
	want_frame(d.err, "unknown", 1, "main");
}

Test(crash_preload, abort_is_reported_and_still_dies_by_sigabrt)
{
	struct died d = crash("abort", NULL, 1);
	char line[64];

	cr_assert_eq(d.sig, SIGABRT);
	snprintf(line, sizeof(line), "[req:abrt1] fatal signal 6 (SIGABRT) at 0x");
	cr_assert_eq(strncmp(d.err, line, strlen(line)), 0, "%s", d.err);
	want_line(d.err, "\n[req:abrt1]   #2 abort+0x");
	want_frame(d.err, "abrt1", 3, "do_abort");
}

Test(crash_preload, a_division_by_zero_is_reported_as_sigfpe)
{
	struct died d = crash("fpe", NULL, 1);

	cr_assert_eq(d.sig, SIGFPE);
	cr_assert_eq(strncmp(d.err, "[req:fpe1] fatal signal 8 (SIGFPE) at 0x", 40), 0, "%s", d.err);
	want_frame(d.err, "fpe1", 0, "do_fpe");
}

Test(crash_preload, a_host_handler_installed_in_main_runs_instead_of_a_report)
{
	struct died d = crash("host-main", NULL, 1);

	cr_assert_eq(d.exited, 1, "sig=%d", d.sig);
	cr_assert_eq(d.code, 42);
	cr_assert_str_eq(d.err, "[req:main2] host handler: SIGSEGV\n");
}

Test(crash_preload, a_host_handler_installed_before_reqctx_started_runs_instead_of_a_report)
{
	static const char *const env[] = { "CRASH_PREINIT=1", NULL };
	struct died d = crash("host-preinit", env, 1);

	cr_assert_eq(d.code, 42, "sig=%d\n%s", d.sig, d.err);
	cr_assert_str_eq(d.err, "[req:pre1] host handler: SIGSEGV\n");
}

Test(crash_preload, a_one_argument_handler_set_with_signal_runs_instead_of_a_report)
{
	struct died d = crash("host-signal", NULL, 1);

	cr_assert_eq(d.code, 42, "sig=%d\n%s", d.sig, d.err);
	cr_assert_str_eq(d.err, "[req:sig1] host plain handler: SIGSEGV\n");
}

Test(crash_preload, a_handler_that_recovers_with_siglongjmp_prints_nothing_and_carries_on)
{
	const char *args[] = { "longjmp", NULL };
	char out[240];
	struct died d;

	snprintf(out, sizeof(out), "%s/out", dir);
	d = crash_args(args, NULL, 1, out);
	cr_assert_eq(d.code, 0, "sig=%d code=%d\n%s", d.sig, d.code, d.err);
	cr_assert_str_eq(slurp(out, NULL), "[req:unknown] recovered 3\n");
	cr_assert_str_eq(d.err, "");
}

/* The host's line, then the whole report of the fault, then death by SIGSEGV. */
static void want_host_then_report(const char *mode, const char *host, const char *id,
				  const char *addr)
{
	struct died d = crash(mode, NULL, 1);
	char line[256];

	cr_assert_eq(d.sig, SIGSEGV, "exited=%d code=%d\n%s", d.exited, d.code, d.err);
	snprintf(line, sizeof(line), "[req:%s] %s\n[req:%s] fatal signal 11 (SIGSEGV) at %s in thread %ld\n",
		 id, host, id, addr, (long)d.pid);
	cr_assert_eq(strncmp(d.err, line, strlen(line)), 0, "want %s--- stderr ---\n%s", line, d.err);
	want_frame(d.err, id, 0, "handle_request_crash");
	want_frame(d.err, id, 2, "run");
	want_frame(d.err, id, 3, "main");
}

Test(crash_preload, a_handler_that_sets_the_default_and_returns_gets_the_report_of_the_fault_again)
{
	want_host_then_report("reraise", "host saw SIGSEGV", "again1", "0x0");
}

Test(crash_preload, a_one_shot_handler_that_returns_gets_the_report_of_the_fault_again)
{
	want_host_then_report("oneshot", "one-shot host saw SIGSEGV", "once1", "0x0");
}

Test(crash_preload, a_handler_that_sets_the_default_and_raises_gets_the_report)
{
	struct died d = crash("raise", NULL, 1);
	const char *line = "[req:raise1] host raises SIGSEGV\n[req:raise1] fatal signal 11 (SIGSEGV) at 0x";

	cr_assert_eq(d.sig, SIGSEGV, "exited=%d code=%d\n%s", d.exited, d.code, d.err);
	cr_assert_eq(strncmp(d.err, line, strlen(line)), 0, "%s", d.err);
	want_frame(d.err, "raise1", 0, "handle_request_crash");
}

Test(crash_preload, a_call_through_a_null_function_pointer_names_the_callers_frames)
{
	struct died d = crash("nullcall", NULL, 1);

	cr_assert_eq(d.sig, SIGSEGV, "exited=%d code=%d", d.exited, d.code);
	want_head(&d, "null1", 11, "SIGSEGV", "0x0", d.pid);
	want_line(d.err, "\n[req:null1]   #0 0x0 (?)\n[req:null1]   #1 call_null+0x");
	want_frame(d.err, "null1", 1, "call_null");
	want_line(d.err, "\n[req:null1]   #2 reqctx_run+0x");
	want_frame(d.err, "null1", 3, "run");
	want_frame(d.err, "null1", 4, "main");
}

static int write_file(const char *path, const char *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int ok = fd >= 0 && write(fd, data, n) == (ssize_t)n;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* Two data files with 4096 known bytes each. */
static void make_data(char *a, char *b)
{
	char path[256];

	for (int i = 0; i < 4096; i++) {
		a[i] = (char)('A' + i % 26);
		b[i] = (char)('a' + i % 26);
	}
	snprintf(path, sizeof(path), "%s/a.dat", dir);
	cr_assert_eq(write_file(path, a, 4096), 0);
	snprintf(path, sizeof(path), "%s/b.dat", dir);
	cr_assert_eq(write_file(path, b, 4096), 0);
}

static void want_same_data(const char *a, const char *b)
{
	char path[256];
	size_t n;
	char *got;

	snprintf(path, sizeof(path), "%s/a.dat", dir);
	got = slurp(path, &n);
	cr_assert_eq(n, 4096);
	cr_assert_eq(memcmp(got, a, 4096), 0, "a.dat (fd 3) changed: starts %.16s", got);
	snprintf(path, sizeof(path), "%s/b.dat", dir);
	got = slurp(path, &n);
	cr_assert_eq(n, 4096);
	cr_assert_eq(memcmp(got, b, 4096), 0, "b.dat (fd 4) changed: starts %.16s", got);
}

static void daemon_run(const char *opt)
{
	static char a[4096], b[4096];
	const char *args[] = { "daemon", dir, opt, NULL };
	struct died d;

	make_data(a, b);
	d = crash_args(args, NULL, 1, NULL);
	cr_assert_eq(d.sig, SIGSEGV, "exited=%d code=%d\n%s", d.exited, d.code, d.err);
	want_head(&d, "dmn1", 11, "SIGSEGV", "0x0", d.pid);
	want_frame(d.err, "dmn1", 0, "handle_request_crash");
	want_frame(d.err, "dmn1", 2, "run");
	want_frame(d.err, "dmn1", 3, "daemon_crash");
	want_frame(d.err, "dmn1", 4, "main");
	want_same_data(a, b);
}

Test(crash_preload, a_daemon_that_closed_every_fd_keeps_its_files_byte_for_byte_through_a_report)
{
	daemon_run(NULL);
}

Test(crash_preload, where_process_vm_readv_is_refused_the_report_is_the_same_and_the_files_too)
{
	daemon_run("noreadv");
}

Test(crash_preload, a_preloaded_process_has_exactly_the_fds_of_a_plain_one)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=2", NULL };
	const char *args[] = { "fds", NULL };
	char out[240];
	char *plain, *got;
	struct died d;

	snprintf(out, sizeof(out), "%s/out", dir);
	d = crash_args(args, NULL, 0, out);
	cr_assert_eq(d.code, 0);
	plain = slurp(out, NULL);
	d = crash_args(args, env, 1, out);
	cr_assert_eq(d.code, 0, "%s", d.err);
	got = slurp(out, NULL);
	cr_assert(strstr(plain, "start fd 0 -> /dev/null\n"), "%s", plain);
	cr_assert_str_eq(got, plain, "\n--- preload ---\n%s--- plain ---\n%s", got, plain);
}

/* java's output with and without the library: the JVM's own SIGSEGVs are its business. */
Test(crash_preload, a_jvm_starts_without_a_report_and_prints_what_it_prints_alone)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=1", NULL };
	char *argv[] = { "/usr/bin/java", "-Xshare:auto", "-version", NULL };
	char *plain, *got;

	if (access(argv[0], X_OK) != 0)
		cr_assert_fail("java is not installed; as root, run:\n  apt-get install -y openjdk-17-jre-headless");
	cr_assert_eq(proc_run(argv, NULL, 0, NULL, dir_err), 0);
	plain = slurp(dir_err, NULL);
	cr_assert_eq(proc_run(argv, env, 1, NULL, dir_err), 0);
	got = slurp(dir_err, NULL);
	cr_assert(strstr(plain, "openjdk version"), "%s", plain);
	cr_assert_null(strstr(got, "fatal signal"), "%s", got);
	cr_assert_str_eq(got, plain);
}

Test(crash_preload, reqctx_crash_0_prints_nothing_and_dies_the_same_way)
{
	static const char *const env[] = { "REQCTX_CRASH=0", NULL };
	struct died d = crash("segv", env, 1);

	cr_assert_eq(d.sig, SIGSEGV);
	cr_assert_str_eq(d.err, "");
	d = crash("abort", env, 1);
	cr_assert_eq(d.sig, SIGABRT);
	cr_assert_str_eq(d.err, "");
}

Test(crash_preload, a_bad_reqctx_crash_value_is_reported_and_the_default_used)
{
	static const char *const env[] = { "REQCTX_CRASH=yes", NULL };
	struct died d = crash("segv", env, 1);
	const char *bad = "reqctx: REQCTX_CRASH=\"yes\" is not 0 or 1; using \"1\"\n";

	cr_assert_eq(d.sig, SIGSEGV);
	cr_assert_eq(strncmp(d.err, bad, strlen(bad)), 0, "%s", d.err);
	cr_assert_not_null(strstr(d.err, "\n[req:crash1] fatal signal 11 (SIGSEGV) at 0x0 in thread "));
}

Test(crash_preload, a_stack_overflow_is_reported_on_the_alternate_stack)
{
	struct died d = crash("overflow", NULL, 1);

	cr_assert_eq(d.sig, SIGSEGV);
	cr_assert_eq(strncmp(d.err, "[req:deep1] fatal signal 11 (SIGSEGV) at 0x", 43), 0, "%s",
		     d.err);
	want_frame(d.err, "deep1", 0, "recurse_forever");
	want_frame(d.err, "deep1", 63, "recurse_forever");
	cr_assert_null(strstr(d.err, "#64 "), "at most 64 frames");
}

Test(crash_preload, a_crash_in_a_thread_names_that_threads_request_and_id)
{
	struct died d = crash("thread", NULL, 1);
	char head[96];
	long tid;

	cr_assert_eq(d.sig, SIGSEGV);
	snprintf(head, sizeof(head), "[req:child1] fatal signal 11 (SIGSEGV) at 0x0 in thread ");
	cr_assert_eq(strncmp(d.err, head, strlen(head)), 0, "%s", d.err);
	tid = strtol(d.err + strlen(head), NULL, 10);
	cr_assert_gt(tid, d.pid, "not the main thread");
	want_frame(d.err, "child1", 0, "handle_request_crash");
	want_frame(d.err, "child1", 3, "thread_main");
	cr_assert_null(strstr(d.err, "main1"), "%s", d.err);
}

Test(crash_preload, a_closed_stderr_pipe_does_not_turn_the_crash_into_sigpipe)
{
	char path[256], lp[300];
	char *argv[] = { path, "segv", NULL };
	char *envp[] = { lp, NULL };
	int p[2], st;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/progs/O0/crash", bdir());
	proc_preload(lp, sizeof(lp), NULL);
	cr_assert_eq(pipe(p), 0);
	close(p[0]); /* nobody will ever read the report */
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		if (dup2(p[1], 2) < 0)
			_exit(125);
		execve(path, argv, envp);
		_exit(127);
	}
	close(p[1]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st), "status %#x", st);
	cr_assert_eq(WTERMSIG(st), SIGSEGV);
}

/* What sigaction and signal() report for the fatal signals is what glibc alone reports. */
Test(crash_preload, sigaction_and_signal_report_exactly_what_glibc_reports)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=2", NULL };
	char path[256], out0[240], out1[240];
	char *argv[] = { path, "flags", NULL };
	char *plain, *got;

	snprintf(path, sizeof(path), "%s/progs/O0/crash", bdir());
	snprintf(out0, sizeof(out0), "%s/plain", dir);
	snprintf(out1, sizeof(out1), "%s/preload", dir);
	cr_assert_eq(proc_run(argv, NULL, 0, out0, NULL), 0);
	cr_assert_eq(proc_run(argv, env, 1, out1, dir_err), 0);
	plain = slurp(out0, NULL);
	got = slurp(out1, NULL);
	cr_assert(strstr(plain, "start sig=11 handler=SIG_DFL flags=0\n"));
	cr_assert(strstr(plain, "set sig=11 handler=host_info flags=0x14000004\n"));
	cr_assert(strstr(plain, "onstack sig=8 handler=host_plain flags=0x4c000000\n"));
	cr_assert_str_eq(got, plain, "\n--- preload ---\n%s--- plain ---\n%s", got, plain);
	cr_assert_str_eq(slurp(dir_err, NULL), "");
}

/* ---- linked with -lreqctx after make install, no LD_PRELOAD ---- */

TestSuite(linked, .init = setup, .fini = teardown, .timeout = 120);

static const char *src_dir(void)
{
	static char d[300];
	const char *s = getenv("REQCTX_SRC");

	if (s && *s)
		return s;
	snprintf(d, sizeof(d), "%s/..", bdir());
	return d;
}

/* Runs a shell command line, stdout to dir/out and stderr to dir/err; returns its status. */
static int sh(const char *const *env, const char *cmd)
{
	char out[240];
	char *argv[] = { "/bin/sh", "-c", (char *)cmd, NULL };

	snprintf(out, sizeof(out), "%s/out", dir);
	return proc_run(argv, env, 0, out, dir_err);
}

/* make install PREFIX=dir/prefix, then cc -o dir/NAME SRC $(pkg-config --cflags --libs reqctx). */
static void install_and_build(const char *name, const char *src)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "make -s -C '%s' B='%s' install PREFIX='%s/prefix' >/dev/null",
		 src_dir(), bdir(), dir);
	cr_assert_eq(sh(NULL, cmd), 0, "make install: %s", slurp(dir_err, NULL));
	snprintf(cmd, sizeof(cmd),
		 "PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig' && export PKG_CONFIG_PATH && "
		 "cc -std=gnu11 -D_GNU_SOURCE -o '%s/%s' '%s/%s' -Wl,--no-as-needed "
		 "$(pkg-config --cflags --libs reqctx) -lpthread",
		 dir, dir, name, src_dir(), src);
	cr_assert_eq(sh(NULL, cmd), 0, "%s\n%s", cmd, slurp(dir_err, NULL));
}

Test(linked, a_program_built_with_pkg_config_links_and_runs_nested_requests)
{
	char lp[300], path[256];
	const char *env[] = { lp, "REQCTX_LOG_FDS=2", NULL };
	char *argv[] = { path, NULL };
	char out[240];

	install_and_build("nested", "tests/link/nested.c");
	snprintf(lp, sizeof(lp), "LD_LIBRARY_PATH=%s/prefix/lib", dir);
	snprintf(path, sizeof(path), "%s/nested", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	cr_assert_eq(proc_run(argv, env, 0, out, dir_err), 0, "%s", slurp(dir_err, NULL));
	cr_assert_str_eq(slurp(out, NULL), "start unknown\nouter out-1\ninner in-1\nback out-1\n"
					   "bad id refused\nend unknown\n");
	cr_assert_str_eq(slurp(dir_err, NULL), "");
}

Test(linked, a_crash_in_a_program_linked_with_the_library_is_reported)
{
	char lp[300], path[256];
	const char *env[] = { lp, "REQCTX_LOG_FDS=1,2", NULL };
	char *argv[] = { path, "segv", NULL };
	struct died d;

	install_and_build("crash", "tests/progs/crash.c");
	snprintf(lp, sizeof(lp), "LD_LIBRARY_PATH=%s/prefix/lib", dir);
	snprintf(path, sizeof(path), "%s/crash", dir);
	d = wait_died(proc_start(argv, env, 0, NULL, dir_err), "linked crash");
	cr_assert_eq(d.sig, SIGSEGV, "exited=%d code=%d\n%s", d.exited, d.code, d.err);
	want_head(&d, "crash1", 11, "SIGSEGV", "0x0", d.pid);
	want_frame(d.err, "crash1", 0, "handle_request_crash");
	want_line(d.err, "\n[req:crash1]   #1 reqctx_run+0x");
	want_line(d.err, " (libreqctx.so.0)\n");
	want_frame(d.err, "crash1", 2, "run");
	want_frame(d.err, "crash1", 3, "main");
}

/* ---- beside AddressSanitizer: its runtime preloaded first, as for a sanitized server ---- */

static const char *asan_runtime(void)
{
	static char path[512];
	FILE *p = popen("gcc -print-file-name=libasan.so", "r");
	size_t n;

	cr_assert_not_null(p);
	n = fread(path, 1, sizeof(path) - 1, p);
	pclose(p);
	while (n > 0 && (path[n - 1] == '\n' || path[n - 1] == ' '))
		n--;
	path[n] = '\0';
	cr_assert(n > 0 && path[0] == '/' && access(path, R_OK) == 0,
		  "no libasan.so (gcc says '%s'); as root, run:\n  apt-get install -y gcc", path);
	return path;
}

static struct died under_asan(const char *mode, const char *out)
{
	char lp[1200], path[256];
	const char *env[] = { lp, "ASAN_OPTIONS=detect_leaks=0", "REQCTX_LOG_FDS=1,2", NULL };
	char *argv[] = { path, (char *)mode, NULL };

	snprintf(lp, sizeof(lp), "LD_PRELOAD=%s %s/libreqctx.so", asan_runtime(), bdir());
	snprintf(path, sizeof(path), "%s/progs/O0/crash", bdir());
	return wait_died(proc_start(argv, env, 0, out, dir_err), mode);
}

Test(crash_preload, beside_asan_the_library_starts_and_prefixes)
{
	char out[240];
	struct died d;

	snprintf(out, sizeof(out), "%s/out", dir);
	d = under_asan("longjmp", out);
	cr_assert_eq(d.code, 0, "sig=%d code=%d\n%s", d.sig, d.code, d.err);
	cr_assert_str_eq(slurp(out, NULL), "[req:unknown] recovered 3\n");
	cr_assert_str_eq(d.err, "");
}

/* ASan took SIGSEGV before reqctx started (not through sigaction): its report, not ours. */
Test(crash_preload, beside_asan_a_crash_gets_asans_report_and_not_ours)
{
	struct died d = under_asan("segv", NULL);

	cr_assert(d.sig == SIGSEGV || (d.exited && d.code != 0), "exited=%d code=%d", d.exited,
		  d.code);
	want_line(d.err, "ERROR: AddressSanitizer: SEGV on unknown address");
	cr_assert_null(strstr(d.err, "fatal signal"), "%s", d.err);
}

/* A server built with -fsanitize=address: doctor names the order, and in that order it runs. */
Test(crash_preload, a_sanitized_program_runs_with_asans_runtime_first_as_doctor_says)
{
	char cmd[1024], lp[1200], path[256], out[240];
	const char *env[] = { lp, "ASAN_OPTIONS=detect_leaks=0", "REQCTX_LOG_FDS=1,2", NULL };
	char *argv[] = { path, "longjmp", NULL };
	char *doc[] = { (char *)bpath("reqctx"), "doctor", path, NULL };
	char note[512];

	snprintf(path, sizeof(path), "%s/crash_asan", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(cmd, sizeof(cmd), "cc -std=gnu11 -D_GNU_SOURCE -fsanitize=address -g -o '%s' '%s/tests/progs/crash.c' -ldl -lpthread",
		 path, src_dir());
	cr_assert_eq(sh(NULL, cmd), 0, "%s", slurp(dir_err, NULL));
	cr_assert_eq(proc_run(doc, NULL, 0, out, NULL), 0);
	snprintf(note, sizeof(note),
		 "\n  note  sanitizer   built with AddressSanitizer, whose runtime must load first: "
		 "LD_PRELOAD=\"$(gcc -print-file-name=libasan.so)\" reqctx run -- %s\n", path);
	want_line(slurp(out, NULL), note);
	snprintf(lp, sizeof(lp), "LD_PRELOAD=%s %s/libreqctx.so", asan_runtime(), bdir());
	cr_assert_eq(proc_run(argv, env, 0, out, dir_err), 0, "%s", slurp(dir_err, NULL));
	cr_assert_str_eq(slurp(out, NULL), "[req:unknown] recovered 3\n");
	cr_assert_str_eq(slurp(dir_err, NULL), "");
}
