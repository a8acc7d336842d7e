/*
 * The reqctx command: run (environment handed to the command, exit codes,
 * refusals, a real server under the library), logs (--id, --group, --stats,
 * --json, --follow on fixtures with malformed and >64 KiB lines), doctor
 * (static, dynamic, setuid, script, foreign, Go, missing) and make install.
 *
 * Every tool runs as a child process; LD_PRELOAD only ever appears in a
 * child's environment.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reqctx.h"

#if defined(__x86_64__)
#define ARCH "64-bit x86-64"
#define LOADER "/lib64/ld-linux-x86-64.so.2"
#elif defined(__aarch64__)
#define ARCH "64-bit AArch64"
#define LOADER "/lib/ld-linux-aarch64.so.1"
#endif

#define WAIT_MS 10000          /* longest wait for a child or a server */
#define LONG_LINE 70000        /* the 'L's of the long fixture line */
#define ENV_MAX 16             /* variables a test sets in a child */

struct proc {
	int status;            /* exit code, or 128 + signal */
	char *out, *err;       /* NUL-terminated captures */
	size_t out_len, err_len;
};

/* What a child gets: "NAME=value" to set, "NAME" to unset; stdin file; cwd. */
struct spawn {
	const char *env[ENV_MAX];
	const char *in;
	const char *cwd;
};

static char tmp[PATH_MAX];

static const char *build_dir(void)
{
	const char *b = getenv("REQCTX_BUILD");

	return b && *b ? b : "build";
}

/* The build directory, absolute, as the tools report paths. */
static const char *build_real(void)
{
	static char real[PATH_MAX];

	cr_assert_not_null(realpath(build_dir(), real), "no build dir %s", build_dir());
	return real;
}

static const char *repo_dir(void)
{
	static char dir[PATH_MAX];
	const char *src = getenv("REQCTX_SRC");

	if (src && *src)
		return src;
	snprintf(dir, sizeof(dir), "%s/..", build_real());
	return dir;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* A formatted string, freed at exit of the test process. */
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	cr_assert_geq(vasprintf(&s, f, ap), 0);
	va_end(ap);
	return s;
}

static const char *tool(void)
{
	return fmt("%s/reqctx", build_dir());
}

static const char *lib_path(void)
{
	return fmt("%s/libreqctx.so", build_real());
}

static const char *cli_env(void)
{
	return fmt("%s/progs/O0/cli_env", build_real());
}

static const char *fixture(const char *name)
{
	char real[PATH_MAX];

	cr_assert_not_null(realpath(fmt("%s/tests/fixtures/%s", repo_dir(), name), real),
			   "missing fixture %s", name);
	return fmt("%s", real);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	cr_assert_not_null(f, "cannot open %s", path);
	for (;;) {
		if (cap - n < 65536) {
			cap = cap ? cap * 2 : 131072;
			buf = realloc(buf, cap + 1);
			cr_assert_not_null(buf);
		}
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static void spit(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	cr_assert_geq(fd, 0, "cannot create %s", path);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void append(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

/* Child side of spawning: environment, stdio, cwd, exec. Never returns. */
static void child(char *const argv[], const struct spawn *sp, int o, int e)
{
	static const char *const scrub[] = {
		"LD_PRELOAD", "REQCTX_LIBRARY", "REQCTX_HEADER", "REQCTX_PREFIX",
		"REQCTX_LOG_FILES", "REQCTX_LOG_FDS", "REQCTX_ECHO", "REQCTX_UNKNOWN",
		"REQCTX_DISABLE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
	};
	int in = open(sp && sp->in ? sp->in : "/dev/null", O_RDONLY);

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (size_t i = 0; i < sizeof(scrub) / sizeof(scrub[0]); i++)
		unsetenv(scrub[i]);
	for (int i = 0; sp && i < ENV_MAX && sp->env[i]; i++) {
		const char *eq = strchr(sp->env[i], '=');

		if (eq)
			putenv((char *)sp->env[i]);
		else
			unsetenv(sp->env[i]);
	}
	if (in < 0 || o < 0 || e < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
		_exit(125);
	if (sp && sp->cwd && chdir(sp->cwd) < 0)
		_exit(125);
	execv(argv[0], argv);
	_exit(124);
}

/* Starts argv[0] (a path) in the background; stdout/stderr go to files. */
static pid_t start(char *const argv[], const struct spawn *sp, const char *out,
		   const char *err)
{
	int o = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int e = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	pid_t pid;

	cr_assert(o >= 0 && e >= 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		child(argv, sp, o, e);
	close(o);
	close(e);
	return pid;
}

static int wait_status(pid_t pid, long ms)
{
	long deadline = now_ms() + ms;
	int st;

	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("child %d did not finish in %ld ms", (int)pid, ms);
		}
		sleep_ms(5);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs argv to completion and captures its output. */
static struct proc run_argv(char *const argv[], const struct spawn *sp)
{
	struct proc p;
	char *out = fmt("%s/.stdout", tmp), *err = fmt("%s/.stderr", tmp);

	p.status = wait_status(start(argv, sp, out, err), 60000);
	p.out = slurp(out, &p.out_len);
	p.err = slurp(err, &p.err_len);
	return p;
}

#define ARGV(...) ((char *const[]){ __VA_ARGS__, NULL })

static void setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/reqctx-test-cli-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void teardown(void)
{
	if (tmp[0])
		nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(run, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(doctor, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(logs, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(install, .init = setup, .fini = teardown, .timeout = 300);

/* The lines cli_env prints for these variable values (NULL: unset). */
static char *env_report(const char *preload, const char *header, const char *prefix,
			const char *files, const char *fds, const char *echo,
			const char *unknown, const char *args)
{
	const char *names[] = { "LD_PRELOAD", "REQCTX_HEADER", "REQCTX_PREFIX",
				"REQCTX_LOG_FILES", "REQCTX_LOG_FDS", "REQCTX_ECHO",
				"REQCTX_UNKNOWN" };
	const char *vals[] = { preload, header, prefix, files, fds, echo, unknown };
	char *s = fmt("%s", "");

	for (int i = 0; i < 7; i++)
		s = vals[i] ? fmt("%s%s=%s\n", s, names[i], vals[i])
			    : fmt("%s%s unset\n", s, names[i]);
	return fmt("%s%s", s, args);
}

/* Builds a static program that exits with 3, with cc -static. */
static const char *build_static(void)
{
	const char *src = fmt("%s/st.c", tmp), *bin = fmt("%s/static-prog", tmp);
	struct proc p;

	spit(src, "int main(void) { return 3; }\n", 29, 0644);
	p = run_argv(ARGV("/bin/sh", "-c", fmt("cc -static -o %s %s", bin, src)), NULL);
	cr_assert_eq(p.status, 0, "cc -static failed: %s", p.err);
	return bin;
}

/* ---- run ---- */

Test(run, hands_the_command_only_LD_PRELOAD_by_default)
{
	const char *out = fmt("%s/env.out", tmp);
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s", out) } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", (char *)cli_env(), "a",
				      "b c"), &sp);

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_str_eq(p.err, "");
	cr_assert_str_eq(p.out, "");
	cr_assert_str_eq(slurp(out, NULL),
			 env_report(lib_path(), NULL, NULL, NULL, NULL, NULL, NULL,
				    "arg: a\narg: b c\n"));
}

Test(run, maps_each_option_to_its_variable)
{
	const char *out = fmt("%s/env.out", tmp);
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s", out) } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--header", "X-Trace",
				      "--prefix", "<%s> ", "--log-file", "a*",
				      "--log-file", "/srv/*.txt", "--log-fds", "1,2,5",
				      "--no-echo", "--bare", "--", (char *)cli_env()), &sp);

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_str_eq(slurp(out, NULL),
			 env_report(lib_path(), "X-Trace", "<%s> ",
				    REQCTX_DEFAULT_LOG_FILES ":a*:/srv/*.txt", "1,2,5", "0",
				    "bare", ""));
}

Test(run, maps_the_thread_and_crash_options_too)
{
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--child-log-fds", "2,7",
				      "--no-handoff", "--no-crash", "--", "/usr/bin/env"), NULL);

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	/* env is the first preloaded process: its stdout is a log stream */
	cr_assert_not_null(strstr(p.out, "[req:unknown] REQCTX_CHILD_LOG_FDS=2,7\n"), "%s", p.out);
	cr_assert_not_null(strstr(p.out, "[req:unknown] REQCTX_HANDOFF=0\n"), "%s", p.out);
	cr_assert_not_null(strstr(p.out, "[req:unknown] REQCTX_CRASH=0\n"), "%s", p.out);
}

/* --format and --field reach the library: env's own stdout lines get the logfmt pair. */
Test(run, maps_the_format_options_and_the_library_applies_them)
{
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--format", "logfmt", "--field",
				      "trace.id", "--", "/usr/bin/env"), NULL);

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_not_null(strstr(p.out, "\ntrace.id=unknown REQCTX_FORMAT=logfmt\n"), "%s", p.out);
	cr_assert_not_null(strstr(p.out, "\ntrace.id=unknown REQCTX_FIELD=trace.id\n"), "%s", p.out);
	p = run_argv(ARGV((char *)tool(), "run", "--format", "json", "--", "/usr/bin/env"), NULL);
	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_not_null(strstr(p.out, "\n[req:unknown] REQCTX_FORMAT=json\n"), "%s", p.out);
}

/*
 * Started from inside another preloaded tree (its REQCTX_TOP_PID inherited,
 * naming a server), the command would take itself for that server's child
 * and keep its stdout as data. reqctx run makes it the top of its own tree,
 * a server from the start: its stdout is a log.
 */
Test(run, makes_its_command_the_top_even_under_an_inherited_top_pid)
{
	struct spawn sp = { .env = { "REQCTX_TOP_PID=1:1" } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", "/usr/bin/env"), &sp);
	char want[64];

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_not_null(strstr(p.out, "[req:unknown] PATH="), "%s", p.out);
	snprintf(want, sizeof(want), "[req:unknown] REQCTX_TOP_PID=");
	cr_assert_not_null(strstr(p.out, want), "%s", p.out);
	cr_assert_null(strstr(p.out, "REQCTX_TOP_PID=1:1"), "%s", p.out);
	cr_assert_not_null(strstr(strstr(p.out, want), ":1\n"), "%s", p.out);
}

Test(run, refuses_a_bad_child_log_fds_list)
{
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--child-log-fds", "x", "--",
				      "/bin/true"), NULL);

	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx run: --child-log-fds 'x' is not a comma-separated list "
				"of at most 16 fds\nTry 'reqctx run --help'.\n");
}

Test(run, adds_log_file_globs_to_an_existing_REQCTX_LOG_FILES)
{
	const char *out = fmt("%s/env.out", tmp);
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s", out),
				     "REQCTX_LOG_FILES=/data/*.out" } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--log-file", "*.trace", "--",
				      (char *)cli_env()), &sp);

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_str_eq(slurp(out, NULL),
			 env_report(lib_path(), NULL, NULL, "/data/*.out:*.trace", NULL, NULL,
				    NULL, ""));
}

Test(run, appends_the_library_to_an_existing_LD_PRELOAD)
{
	const char *out = fmt("%s/env.out", tmp);
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s", out), "LD_PRELOAD=libm.so.6 " } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", (char *)cli_env()), &sp);

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_str_eq(slurp(out, NULL),
			 env_report(fmt("libm.so.6:%s", lib_path()), NULL, NULL, NULL, NULL,
				    NULL, NULL, ""));
}

Test(run, does_not_add_the_library_twice)
{
	const char *out = fmt("%s/env.out", tmp);
	const char *other = fmt("libm.so.6 %s/../%s/libreqctx.so", build_real(),
				strrchr(build_real(), '/') + 1);
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s", out), fmt("LD_PRELOAD=%s", other) } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", (char *)cli_env()), &sp);

	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_str_eq(slurp(out, NULL),
			 env_report(other, NULL, NULL, NULL, NULL, NULL, NULL, ""));
}

Test(run, uses_REQCTX_LIBRARY_when_set)
{
	const char *out = fmt("%s/env.out", tmp), *copy = fmt("%s/libcopy.so", tmp);
	size_t len;
	char *lib = slurp(lib_path(), &len);
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s", out),
				     fmt("REQCTX_LIBRARY=%s", copy) } };
	struct proc p;

	spit(copy, lib, len, 0755);
	p = run_argv(ARGV((char *)tool(), "run", "--", (char *)cli_env()), &sp);
	cr_assert_eq(p.status, 0, "stderr: %s", p.err);
	cr_assert_str_eq(slurp(out, NULL),
			 env_report(copy, NULL, NULL, NULL, NULL, NULL, NULL, ""));
}

Test(run, fails_with_1_when_the_library_is_missing)
{
	struct spawn sp = { .env = { "REQCTX_LIBRARY=/nonexistent/libreqctx.so" } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", (char *)cli_env()), &sp);

	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, "");
	cr_assert_str_eq(p.err, "reqctx: cannot find libreqctx.so (tried "
			 "/nonexistent/libreqctx.so); set REQCTX_LIBRARY\n");
}

Test(run, passes_on_the_exit_status_of_the_command)
{
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s/env.out", tmp) } };
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", (char *)cli_env(), "--exit",
				      "7"), &sp);

	cr_assert_eq(p.status, 7, "stderr: %s", p.err);
}

Test(run, exits_127_for_a_command_that_does_not_exist)
{
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", "reqctx-no-such-command"),
				 NULL);

	cr_assert_eq(p.status, 127);
	cr_assert_str_eq(p.out, "");
	cr_assert_str_eq(p.err, "reqctx: reqctx-no-such-command: command not found\n");
}

Test(run, exits_126_for_a_file_that_cannot_be_executed)
{
	const char *f = fmt("%s/not-exec", tmp);
	struct proc p;

	spit(f, "#!/bin/sh\n", 10, 0644);
	p = run_argv(ARGV((char *)tool(), "run", "--", (char *)f), NULL);
	cr_assert_eq(p.status, 126);
	cr_assert_str_eq(p.err, fmt("reqctx: %s: cannot execute: Permission denied\n", f));
}

Test(run, refuses_a_static_binary_unless_forced)
{
	const char *bin = build_static();
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--", (char *)bin), NULL);

	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, "");
	cr_assert_str_eq(p.err, fmt("reqctx: %s is statically linked; LD_PRELOAD cannot reach "
				    "it\nreqctx: not running it without the library; --force "
				    "runs it anyway\n", bin));
	p = run_argv(ARGV((char *)tool(), "run", "--force", "--", (char *)bin), NULL);
	cr_assert_eq(p.status, 3, "stderr: %s", p.err);
}

Test(run, refuses_a_script_whose_interpreter_is_static)
{
	const char *bin = build_static(), *script = fmt("%s/script", tmp);
	const char *text = fmt("#!%s\n", bin);
	struct proc p;

	spit(script, text, strlen(text), 0755);
	p = run_argv(ARGV((char *)tool(), "run", "--", (char *)script), NULL);
	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.err, fmt("reqctx: %s (interpreter of %s) is statically linked; "
				    "LD_PRELOAD cannot reach it\nreqctx: not running it without "
				    "the library; --force runs it anyway\n", bin, script));
}

Test(run, rejects_bad_options_with_2)
{
	struct proc p = run_argv(ARGV((char *)tool(), "run"), NULL);

	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx run: no command given\nTry 'reqctx run --help'.\n");
	p = run_argv(ARGV((char *)tool(), "run", "--prefix", "no-placeholder", "--", "true"),
		     NULL);
	cr_assert_eq(p.status, 2);
	p = run_argv(ARGV((char *)tool(), "run", "--header", "Bad Header", "--", "true"), NULL);
	cr_assert_eq(p.status, 2);
	p = run_argv(ARGV((char *)tool(), "run", "--log-fds", "1,x", "--", "true"), NULL);
	cr_assert_eq(p.status, 2);
	p = run_argv(ARGV((char *)tool(), "run", "--log-file", "a:b", "--", "true"), NULL);
	cr_assert_eq(p.status, 2);
	p = run_argv(ARGV((char *)tool(), "run", "--format", "yaml", "--", "true"), NULL);
	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx run: --format 'yaml' is not prefix, logfmt, json or auto\n"
			 "Try 'reqctx run --help'.\n");
	p = run_argv(ARGV((char *)tool(), "run", "--field", "a\"b", "--", "true"), NULL);
	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx run: --field 'a\"b' is not a field name (1-64 characters "
			 "from A-Z a-z 0-9 _ . -)\nTry 'reqctx run --help'.\n");
	p = run_argv(ARGV((char *)tool(), "run", "--bogus", "--", "true"), NULL);
	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx run: unknown or incomplete option '--bogus'\n"
			 "Try 'reqctx run --help'.\n");
}

Test(run, prints_help_with_0)
{
	struct proc p = run_argv(ARGV((char *)tool(), "run", "--help"), NULL);

	cr_assert_eq(p.status, 0);
	cr_assert_eq(strncmp(p.out, "Usage: reqctx run [OPTIONS] [--] CMD [ARGS...]\n", 47), 0);
	cr_assert_str_eq(p.err, "");
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Sends one request to 127.0.0.1:port and returns the whole response. */
static char *http_get(int port, const char *extra_headers)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char *req = fmt("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n",
			extra_headers);
	char *resp = calloc(1, 1 << 20);
	size_t n = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_not_null(resp);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t got;

		cr_assert_gt(poll(&pfd, 1, WAIT_MS), 0, "no response from http.server");
		got = read(fd, resp + n, (1 << 20) - 1 - n);
		cr_assert_geq(got, 0);
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	return resp;
}

/* Waits until something accepts connections on 127.0.0.1:port. */
static void wait_listening(int port, pid_t pid)
{
	long deadline = now_ms() + WAIT_MS;

	for (;;) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int st;

		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(fd);
			return;
		}
		close(fd);
		cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "the server exited early");
		cr_assert_lt(now_ms(), deadline, "the server did not listen on %d", port);
		sleep_ms(50);
	}
}

Test(run, gives_python_http_server_request_ids_in_responses_and_logs, .timeout = 90)
{
	int port = free_port();
	const char *out = fmt("%s/server.out", tmp), *err = fmt("%s/server.err", tmp);
	struct spawn sp = { .env = { "PYTHONUNBUFFERED=1" }, .cwd = tmp };
	pid_t pid = start(ARGV((char *)tool(), "run", "--", "python3", "-m", "http.server",
			       fmt("%d", port), "--bind", "127.0.0.1"), &sp, out, err);
	char *given, *fresh, *log, *line, *save = NULL;
	int lines = 0, tagged = 0;

	wait_listening(port, pid);
	given = http_get(port, "X-Request-Id: cli-test-42\r\n");
	fresh = http_get(port, "");
	sleep_ms(300);
	kill(pid, SIGTERM);
	wait_status(pid, WAIT_MS);

	cr_assert_eq(strncmp(given, "HTTP/1.0 200 OK\r\n", 17), 0, "response: %.300s", given);
	cr_assert_not_null(strcasestr(given, "\r\nX-Request-Id: cli-test-42\r\n"),
			   "no echoed X-Request-Id in: %.600s", given);
	cr_assert_not_null(strcasestr(fresh, "\r\nX-Request-Id: "),
			   "no generated X-Request-Id in: %.600s", fresh);
	log = slurp(err, NULL);
	for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		cr_expect_eq(strncmp(line, "[req:", 5), 0, "unprefixed stderr line: %s", line);
		tagged += !strncmp(line, "[req:cli-test-42] 127.0.0.1 - - [", 33) &&
			  strstr(line, "\"GET / HTTP/1.1\" 200") != NULL;
	}
	cr_assert_geq(lines, 2, "stderr: %s", slurp(err, NULL));
	cr_assert_eq(tagged, 1, "stderr: %s", slurp(err, NULL));
}

/* ---- doctor ---- */

#define TLS_NONE "  --    tls         no libssl linked: one loaded later (Python's ssl module) is " \
		 "reached, OpenSSL built into a module it loads is not\n"

static char *doctor_report_tls(const char *path, const char *checks, int ok, const char *tls)
{
	return fmt("reqctx doctor: %s\n  ok    library     %s\n%s"
		   "  --    adapter     none: not a Node or Python program\n"
		   "%s%sverdict: %s %s\n", path, lib_path(), checks, tls,
		   ok ? "  note  logs        fd 1 and 2 become logs once it listens or accepts "
			"(under 'reqctx run', from the start)\n" : "",
		   path, ok ? "can be preloaded" : "cannot be preloaded");
}

static char *doctor_report(const char *path, const char *checks, int ok)
{
	return doctor_report_tls(path, checks, ok, TLS_NONE);
}

/* A program built here with `flags`: it calls SSL_write from libssl, or defines one of its own. */
static const char *build_tls_prog(const char *name, const char *src_text, const char *flags)
{
	const char *src = fmt("%s/%s.c", tmp, name), *bin = fmt("%s/%s", tmp, name);
	struct proc p;

	spit(src, src_text, strlen(src_text), 0644);
	p = run_argv(ARGV("/bin/sh", "-c", fmt("cc -o %s %s %s", bin, src, flags)), NULL);
	cr_assert_eq(p.status, 0, "cc failed: %s", p.err);
	return bin;
}

static char *elf_checks(const char *label, const char *linking, const char *runtime,
			const char *privileges)
{
	return fmt("  ok    format      %s is a " ARCH " ELF executable\n%s%s%s", label,
		   linking ? linking : fmt("  ok    linking     %s is dynamically linked (loader "
					   LOADER ")\n", label),
		   runtime ? runtime : fmt("  ok    runtime     %s is not a Go program\n", label),
		   privileges ? privileges
			      : fmt("  ok    privileges  %s is not setuid, setgid or setcap\n",
				    label));
}

Test(doctor, passes_a_dynamic_binary)
{
	const char *bin = cli_env();
	struct proc p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);

	cr_assert_eq(p.status, 0, "stdout: %s", p.out);
	cr_assert_str_eq(p.out, doctor_report(bin, elf_checks(bin, NULL, NULL, NULL), 1));
	cr_assert_str_eq(p.err, "");
}

Test(doctor, says_when_libssl_is_a_shared_library)
{
	const char *bin = build_tls_prog("dynssl", "#include <openssl/ssl.h>\n"
					 "int main(int c, char **v) { return c > 5 ? "
					 "SSL_write((SSL *)v, v, 1) : 0; }\n", "-lssl -lcrypto");
	struct proc p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);

	cr_assert_eq(p.status, 0, "stdout: %s", p.out);
	cr_assert_str_eq(p.out, doctor_report_tls(bin, elf_checks(bin, NULL, NULL, NULL), 1,
						  fmt("  ok    tls         libssl is a shared library "
						      "of %s: HTTPS requests get their IDs\n", bin)));
}

/* As the official Node builds: OpenSSL inside the executable, its SSL_write exported. */
Test(doctor, warns_when_openssl_is_linked_into_the_program)
{
	const char *bin = build_tls_prog("statssl", "int SSL_write(void *s, const void *b, int n)\n"
					 "{ return s && b ? n : -1; }\n"
					 "int main(void) { return 0; }\n", "-rdynamic");
	struct proc p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);

	cr_assert_eq(p.status, 0, "a warning, not a failure: %s", p.out);
	cr_assert_str_eq(p.out, doctor_report_tls(bin, elf_checks(bin, NULL, NULL, NULL), 1,
						  fmt("  WARN  tls         OpenSSL is linked into %s "
						      "itself, out of LD_PRELOAD's reach: its HTTPS "
						      "connections get one ID each and no "
						      "X-Request-Id (plain HTTP is unaffected)\n",
						      bin)));
}

Test(doctor, fails_a_static_binary_built_here)
{
	const char *bin = build_static();
	struct proc p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);
	const char *linking = fmt("  FAIL  linking     %s is statically linked; LD_PRELOAD "
				  "cannot reach it\n", bin);

	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, doctor_report(bin, elf_checks(bin, linking, NULL, NULL), 0));
}

Test(doctor, fails_a_setuid_binary)
{
	const char *bin = fmt("%s/suid", tmp);
	size_t len;
	char *data = slurp(cli_env(), &len);
	const char *priv = fmt("  FAIL  privileges  %s is setuid; the dynamic loader ignores "
			       "LD_PRELOAD for it (secure-execution mode)\n", bin);
	struct proc p;

	spit(bin, data, len, 04755);
	p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);
	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, doctor_report(bin, elf_checks(bin, NULL, NULL, priv), 0));
}

Test(doctor, fails_a_go_binary)
{
	const char *bin = fmt("%s/goprog", tmp);
	size_t len;
	char *data = slurp(cli_env(), &len);
	const char *rt = fmt("  FAIL  runtime     %s is a Go program; Go makes raw system calls "
			     "that LD_PRELOAD cannot see\n", bin);
	struct proc p;

	/* Go's build-information magic, as .go.buildinfo starts with it. */
	data = realloc(data, len + 32);
	memcpy(data + len, "\xff Go buildinf:\x08\x02", 16);
	spit(bin, data, len + 16, 0755);
	p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);
	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, doctor_report(bin, elf_checks(bin, NULL, rt, NULL), 0));
}

Test(doctor, fails_a_32_bit_executable)
{
	const char *bin = fmt("%s/elf32", tmp);
	Elf32_Ehdr h = { .e_type = ET_EXEC, .e_machine = EM_386, .e_version = EV_CURRENT,
			 .e_ehsize = sizeof(Elf32_Ehdr) };
	struct proc p;

	memcpy(h.e_ident, ELFMAG, SELFMAG);
	h.e_ident[EI_CLASS] = ELFCLASS32;
	h.e_ident[EI_DATA] = ELFDATA2LSB;
	h.e_ident[EI_VERSION] = EV_CURRENT;
	spit(bin, (const char *)&h, sizeof(h), 0755);
	p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);
	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, doctor_report(bin, fmt("  FAIL  format      %s is a 32-bit i386 "
						       "ELF file; libreqctx.so is " ARCH "\n"
						       "  ok    privileges  %s is not setuid, "
						       "setgid or setcap\n", bin, bin), 0));
}

Test(doctor, fails_a_file_that_is_neither_elf_nor_script)
{
	const char *bin = fmt("%s/text", tmp);
	struct proc p;

	spit(bin, "hello\n", 6, 0755);
	p = run_argv(ARGV((char *)tool(), "doctor", (char *)bin), NULL);
	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, doctor_report(bin, fmt("  FAIL  format      %s is neither an "
						       "ELF executable nor a #! script\n", bin),
					      0));
}

Test(doctor, judges_an_env_script_by_its_interpreter_and_program)
{
	const char *script = fmt("%s/tool.sh", tmp), *sh = fmt("%s/sh", tmp);
	const char *bin = cli_env();
	const char *text = "#!/usr/bin/env sh\necho hi\n";
	char *env_label = fmt("/usr/bin/env (interpreter of %s)", script);
	char *sh_label = fmt("%s (run by env for %s)", sh, script);
	struct spawn sp = { .env = { fmt("PATH=%s:/usr/bin:/bin", tmp) } };
	size_t len;
	char *data = slurp(bin, &len);
	struct proc p;

	/* "sh" in PATH is a copy of a known dynamic binary, so the lines are exact. */
	spit(sh, data, len, 0755);
	spit(script, text, strlen(text), 0755);
	p = run_argv(ARGV((char *)tool(), "doctor", (char *)script), &sp);
	cr_assert_eq(p.status, 0, "stdout: %s", p.out);
	cr_assert_str_eq(p.out, doctor_report(script,
					      fmt("  ok    format      %s is a script for "
						  "/usr/bin/env sh\n%s%s", script,
						  elf_checks(env_label, NULL, NULL, NULL),
						  elf_checks(sh_label, NULL, NULL, NULL)), 1));
}

Test(doctor, exits_127_for_a_missing_file)
{
	struct proc p = run_argv(ARGV((char *)tool(), "doctor", "/nonexistent/prog"), NULL);

	cr_assert_eq(p.status, 127);
	cr_assert_str_eq(p.out, "");
	cr_assert_str_eq(p.err, "reqctx: /nonexistent/prog: command not found\n");
}

Test(doctor, rejects_a_missing_argument_with_2)
{
	struct proc p = run_argv(ARGV((char *)tool(), "doctor"), NULL);

	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx doctor: expects exactly one command\n"
			 "Try 'reqctx doctor --help'.\n");
}

/* ---- logs ---- */

static const char *app_lines[] = {
	"[req:unknown] server starting",
	"[req:a1] GET /",
	"[req:b2] GET /img",
	"plain line without prefix",
	"[req:a1] handler ran",
	"[req:] empty id is malformed",
	NULL, /* 7: an ID of 129 characters, too long */
	"[req:b2] done \"quoted\" \\ tab\there",
	"[req:c3/x~y] odd but valid id chars",
	"[req:a1] done",
	"[req:unknown] idle",
	"[req:a1 missing bracket",
	NULL, /* 13: an ID of 128 characters, the longest valid */
};

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	cr_assert_not_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* Line n (1-based) of tests/fixtures/app.log. */
static const char *app(int n)
{
	if (n == 7)
		return fmt("[req:%s] id too long", repeat('x', 129));
	if (n == 13)
		return fmt("[req:%s] longest id", repeat('y', 128));
	return app_lines[n - 1];
}

static const char *long_line(void)
{
	return fmt("[req:b2] %sEND", repeat('L', LONG_LINE));
}

Test(logs, id_prints_the_lines_of_one_request)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", "a1",
				      (char *)fixture("app.log")), NULL);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, fmt("%s\n%s\n%s\n", app(2), app(5), app(10)));
	cr_assert_str_eq(p.err, "");
}

Test(logs, id_reads_every_file_in_order_and_names_them)
{
	const char *a = fixture("app.log"), *b = fixture("second.log");
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", "b2", (char *)a, (char *)b),
				 NULL);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, fmt("%s:%s\n%s:%s\n%s:%s\n", a, app(3), a, app(8), b,
				    long_line()));
	p = run_argv(ARGV((char *)tool(), "logs", "--no-filename", "--id", "b2", (char *)a,
			  (char *)b), NULL);
	cr_assert_str_eq(p.out, fmt("%s\n%s\n%s\n", app(3), app(8), long_line()));
}

Test(logs, id_matches_the_longest_valid_id_and_odd_characters)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", repeat('y', 128),
				      (char *)fixture("app.log")), NULL);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, fmt("%s\n", app(13)));
	p = run_argv(ARGV((char *)tool(), "logs", "--id", "c3/x~y", (char *)fixture("app.log")),
		     NULL);
	cr_assert_str_eq(p.out, fmt("%s\n", app(9)));
}

Test(logs, id_reads_stdin_without_file_names)
{
	struct spawn sp = { .in = fixture("app.log") };
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", "unknown"), &sp);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, fmt("%s\n%s\n", app(1), app(11)));
}

Test(logs, id_exits_1_when_nothing_matches)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", "a",
				      (char *)fixture("app.log")), NULL);

	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, "");
	cr_assert_str_eq(p.err, "");
}

Test(logs, id_rejects_an_invalid_id_with_2)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", "a b",
				      (char *)fixture("app.log")), NULL);

	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.out, "");
	p = run_argv(ARGV((char *)tool(), "logs", "--id", repeat('z', 129)), NULL);
	cr_assert_eq(p.status, 2);
}

Test(logs, id_finds_a_last_line_without_newline_and_lines_across_reads)
{
	const char *f = fmt("%s/big.log", tmp);
	const char *filler = "[req:other] some filler text that is not the one we look for\n";
	size_t fl = strlen(filler), n = 0, count = 40000;
	char *data = malloc(count * fl + 4096);
	char *expect = fmt("%s", "");
	struct proc p;

	/* 2.4 MB: matches land on both sides of the 1 MiB read boundaries. */
	for (size_t i = 0; i < count; i++) {
		if (i % 4000 == 1234) {
			n += (size_t)sprintf(data + n, "[req:want] line %zu\n", i);
			expect = fmt("%s[req:want] line %zu\n", expect, i);
		}
		memcpy(data + n, filler, fl);
		n += fl;
	}
	n += (size_t)sprintf(data + n, "[req:want] last");
	expect = fmt("%s[req:want] last\n", expect);
	spit(f, data, n, 0644);
	p = run_argv(ARGV((char *)tool(), "logs", "--id", "want", (char *)f), NULL);
	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, expect);
}

Test(logs, group_orders_requests_by_first_sight_then_unprefixed)
{
	const char *a = fixture("app.log");
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--group", (char *)a), NULL);
	static const int order[] = { 1, 11, 2, 5, 10, 3, 8, 9, 13, 4, 6, 7, 12 };
	char *expect = fmt("%s", "");

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		expect = fmt("%s%s\n", expect, app(order[i]));
	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, expect);
}

Test(logs, group_across_files_names_each_line)
{
	const char *a = fixture("app.log"), *b = fixture("second.log");
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--group", (char *)a, (char *)b),
				 NULL);
	char *expect = fmt("%s:%s\n%s:%s\n" "%s:%s\n%s:%s\n%s:%s\n%s:%s\n"
			   "%s:%s\n%s:%s\n%s:%s\n" "%s:%s\n%s:%s\n"
			   "%s:[req:d4] utf8 caf\xc3\xa9 bad\xff\x01\n"
			   "%s:%s\n%s:%s\n%s:%s\n%s:%s\n",
			   a, app(1), a, app(11), a, app(2), a, app(5), a, app(10),
			   b, "[req:a1] from second", a, app(3), a, app(8), b, long_line(),
			   a, app(9), a, app(13), b, a, app(4), a, app(6), a, app(7), a, app(12));

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, expect);
}

Test(logs, stats_reports_counts_shares_and_top_requests)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--stats",
				      (char *)fixture("app.log"), (char *)fixture("second.log")),
				 NULL);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, fmt("requests: 5\n"
				    "lines: 16\n"
				    "lines per request: min 1, median 1, max 4\n"
				    "unknown lines: 2 (12.5%%)\n"
				    "unprefixed lines: 4 (25.0%%)\n"
				    "top requests:\n"
				    "  4  a1\n"
				    "  3  b2\n"
				    "  1  c3/x~y\n"
				    "  1  %s\n"
				    "  1  d4\n", repeat('y', 128)));
}

Test(logs, stats_lists_at_most_ten_requests_and_takes_the_lower_median)
{
	const char *f = fmt("%s/many.log", tmp);
	char *data = fmt("%s", "");
	struct proc p;

	/* Request rK has K lines, for K = 1..12: 78 lines; then one unknown line. */
	for (int k = 1; k <= 12; k++)
		for (int i = 0; i < k; i++)
			data = fmt("%s[req:r%d] x\n", data, k);
	data = fmt("%s[req:unknown] y\n", data);
	spit(f, data, strlen(data), 0644);
	p = run_argv(ARGV((char *)tool(), "logs", "--stats", (char *)f), NULL);
	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, "requests: 12\n"
			 "lines: 79\n"
			 "lines per request: min 1, median 6, max 12\n"
			 "unknown lines: 1 (1.3%)\n"
			 "unprefixed lines: 0 (0.0%)\n"
			 "top requests:\n"
			 "  12  r12\n  11  r11\n  10  r10\n   9  r9\n   8  r8\n"
			 "   7  r7\n   6  r6\n   5  r5\n   4  r4\n   3  r3\n");
}

Test(logs, stats_of_empty_input)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--stats"), NULL);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, "requests: 0\nlines: 0\n"
			 "lines per request: min 0, median 0, max 0\n"
			 "unknown lines: 0 (0.0%)\nunprefixed lines: 0 (0.0%)\n"
			 "top requests: none\n");
}

Test(logs, json_writes_one_escaped_object_per_line)
{
	const char *a = fixture("app.log");
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--json", (char *)a), NULL);
	const char *j = fmt("\"file\":\"%s\"", a);
	char *expect = fmt(
		"{\"id\":\"unknown\",%s,\"line\":1,\"text\":\"server starting\"}\n"
		"{\"id\":\"a1\",%s,\"line\":2,\"text\":\"GET /\"}\n"
		"{\"id\":\"b2\",%s,\"line\":3,\"text\":\"GET /img\"}\n"
		"{\"id\":null,%s,\"line\":4,\"text\":\"plain line without prefix\"}\n"
		"{\"id\":\"a1\",%s,\"line\":5,\"text\":\"handler ran\"}\n"
		"{\"id\":null,%s,\"line\":6,\"text\":\"[req:] empty id is malformed\"}\n"
		"{\"id\":null,%s,\"line\":7,\"text\":\"%s\"}\n"
		"{\"id\":\"b2\",%s,\"line\":8,\"text\":\"done \\\"quoted\\\" \\\\ tab\\u0009here\"}\n"
		"{\"id\":\"c3/x~y\",%s,\"line\":9,\"text\":\"odd but valid id chars\"}\n"
		"{\"id\":\"a1\",%s,\"line\":10,\"text\":\"done\"}\n"
		"{\"id\":\"unknown\",%s,\"line\":11,\"text\":\"idle\"}\n"
		"{\"id\":null,%s,\"line\":12,\"text\":\"[req:a1 missing bracket\"}\n"
		"{\"id\":\"%s\",%s,\"line\":13,\"text\":\"longest id\"}\n",
		j, j, j, j, j, j, j, app(7), j, j, j, j, j, repeat('y', 128), j);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, expect);
}

Test(logs, json_replaces_invalid_utf8_and_keeps_long_lines)
{
	struct spawn sp = { .in = fixture("second.log") };
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--json"), &sp);

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, fmt("{\"id\":\"a1\",\"file\":\"-\",\"line\":1,\"text\":\"from second\"}\n"
				    "{\"id\":\"b2\",\"file\":\"-\",\"line\":2,\"text\":\"%sEND\"}\n"
				    "{\"id\":\"d4\",\"file\":\"-\",\"line\":3,\"text\":"
				    "\"utf8 caf\xc3\xa9 bad\\ufffd\\u0001\"}\n",
				    repeat('L', LONG_LINE)));
}

Test(logs, json_with_id_keeps_line_numbers)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--json", "--id", "unknown",
				      (char *)fixture("app.log")), NULL);
	const char *j = fmt("\"file\":\"%s\"", fixture("app.log"));

	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, fmt("{\"id\":\"unknown\",%s,\"line\":1,\"text\":\"server starting\"}\n"
				    "{\"id\":\"unknown\",%s,\"line\":11,\"text\":\"idle\"}\n", j, j));
}

Test(logs, custom_prefix_is_parsed_like_the_default)
{
	const char *f = fmt("%s/custom.log", tmp);
	const char *data = "<id=r-1|> one\n[req:r-1] not this format\n<id=r-1|> two\n";
	struct proc p;

	spit(f, data, strlen(data), 0644);
	p = run_argv(ARGV((char *)tool(), "logs", "--prefix", "<id=%s|> ", "--id", "r-1",
			  (char *)f), NULL);
	cr_assert_eq(p.status, 0);
	cr_assert_str_eq(p.out, "<id=r-1|> one\n<id=r-1|> two\n");
	p = run_argv(ARGV((char *)tool(), "logs", "--prefix", "<id=%s|> ", "--stats", (char *)f),
		     NULL);
	cr_assert_str_eq(p.out, "requests: 1\nlines: 3\nlines per request: min 2, median 2, "
			 "max 2\nunknown lines: 0 (0.0%)\nunprefixed lines: 1 (33.3%)\n"
			 "top requests:\n  2  r-1\n");
}

Test(logs, reports_an_unreadable_file_and_goes_on)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", "a1", "/nonexistent.log",
				      (char *)fixture("second.log")), NULL);

	cr_assert_eq(p.status, 1);
	cr_assert_str_eq(p.out, fmt("%s:[req:a1] from second\n", fixture("second.log")));
	cr_assert_str_eq(p.err, "reqctx: /nonexistent.log: No such file or directory\n");
}

Test(logs, rejects_conflicting_modes_with_2)
{
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--group", "--stats"), NULL);

	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx logs: --id, --group and --stats exclude each other\n"
			 "Try 'reqctx logs --help'.\n");
	p = run_argv(ARGV((char *)tool(), "logs", "--follow", "--stats"), NULL);
	cr_assert_eq(p.status, 2);
}

/* Waits until the file at path holds exactly `want`. */
static void wait_content(const char *path, const char *want)
{
	long deadline = now_ms() + WAIT_MS;
	char *got;

	for (;;) {
		got = slurp(path, NULL);
		if (!strcmp(got, want))
			return;
		cr_assert_lt(now_ms(), deadline, "have \"%s\", want \"%s\"", got, want);
		free(got);
		sleep_ms(50);
	}
}

Test(logs, follow_reads_growth_and_truncation)
{
	const char *f = fmt("%s/live.log", tmp), *out = fmt("%s/follow.out", tmp);
	const char *err = fmt("%s/follow.err", tmp);
	pid_t pid;

	spit(f, "[req:a1] one\n[req:b2] other\n", 28, 0644);
	pid = start(ARGV((char *)tool(), "logs", "--follow", "--id", "a1", (char *)f), NULL,
		    out, err);
	wait_content(out, "[req:a1] one\n");
	append(f, "[req:a1] two\n[req:b2] x\n[req:a1] thr");
	wait_content(out, "[req:a1] one\n[req:a1] two\n");
	append(f, "ee\n");
	wait_content(out, "[req:a1] one\n[req:a1] two\n[req:a1] three\n");
	spit(f, "[req:a1] new\n", 13, 0644);
	wait_content(out, "[req:a1] one\n[req:a1] two\n[req:a1] three\n[req:a1] new\n");
	kill(pid, SIGTERM);
	cr_assert_eq(wait_status(pid, WAIT_MS), 128 + SIGTERM);
	cr_assert_str_eq(slurp(err, NULL), fmt("reqctx: %s: file truncated\n", f));
}

/* ---- logs in every format ---- */

/* What the library writes in each format, and lines that name no request. */
static const char formats_log[] =
	"[req:a1] prefix line\n"
	"{\"request_id\":\"a1\",\"msg\":\"json line\"}\n"
	"request_id=a1 logfmt line\n"
	"request_id=\"b=2\" quoted because of the equals sign\n"
	"  {\"request_id\":\"b=2\"}\n"
	"level=info msg=\"its own key\" request_id=a1\n"
	"{\"a\":{\"request_id\":\"nested\"},\"request_id\":\"b=2\"}\n"
	"{\"a\":{\"request_id\":\"nested\"}}\n"
	"{\"request_id\":7}\n"
	"msg=\"request_id=inside\" x=1\n"
	"plain a1 text\n"
	"{\"request_id\":\"unknown\",\"boot\":1}\n"
	"request_id=unknown boot\n";

static const char *formats_file(void)
{
	const char *f = fmt("%s/formats.log", tmp);

	spit(f, formats_log, strlen(formats_log), 0644);
	return f;
}

Test(logs, id_finds_a_request_in_every_format)
{
	const char *f = formats_file();
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--id", "a1", (char *)f), NULL);

	cr_assert_eq(p.status, 0, "%s", p.err);
	cr_assert_str_eq(p.out, "[req:a1] prefix line\n"
			 "{\"request_id\":\"a1\",\"msg\":\"json line\"}\n"
			 "request_id=a1 logfmt line\n"
			 "level=info msg=\"its own key\" request_id=a1\n");
	p = run_argv(ARGV((char *)tool(), "logs", "--id", "b=2", (char *)f), NULL);
	cr_assert_eq(p.status, 0, "%s", p.err);
	cr_assert_str_eq(p.out, "request_id=\"b=2\" quoted because of the equals sign\n"
			 "  {\"request_id\":\"b=2\"}\n"
			 "{\"a\":{\"request_id\":\"nested\"},\"request_id\":\"b=2\"}\n");
	p = run_argv(ARGV((char *)tool(), "logs", "--id", "nested", (char *)f), NULL);
	cr_assert_eq(p.status, 1, "a nested key is not the line's ID");
	cr_assert_str_eq(p.out, "");
}

Test(logs, json_and_stats_read_every_format)
{
	const char *f = formats_file();
	const char *j = fmt("\"file\":\"%s\"", f);
	struct proc p = run_argv(ARGV((char *)tool(), "logs", "--json", (char *)f), NULL);

	cr_assert_eq(p.status, 0, "%s", p.err);
	cr_assert_str_eq(p.out, fmt(
		"{\"id\":\"a1\",%s,\"line\":1,\"text\":\"prefix line\"}\n"
		"{\"id\":\"a1\",%s,\"line\":2,\"text\":\"{\\\"request_id\\\":\\\"a1\\\",\\\"msg\\\":\\\"json line\\\"}\"}\n"
		"{\"id\":\"a1\",%s,\"line\":3,\"text\":\"logfmt line\"}\n"
		"{\"id\":\"b=2\",%s,\"line\":4,\"text\":\"quoted because of the equals sign\"}\n"
		"{\"id\":\"b=2\",%s,\"line\":5,\"text\":\"  {\\\"request_id\\\":\\\"b=2\\\"}\"}\n"
		"{\"id\":\"a1\",%s,\"line\":6,\"text\":\"level=info msg=\\\"its own key\\\" request_id=a1\"}\n"
		"{\"id\":\"b=2\",%s,\"line\":7,\"text\":\"{\\\"a\\\":{\\\"request_id\\\":\\\"nested\\\"},\\\"request_id\\\":\\\"b=2\\\"}\"}\n"
		"{\"id\":null,%s,\"line\":8,\"text\":\"{\\\"a\\\":{\\\"request_id\\\":\\\"nested\\\"}}\"}\n"
		"{\"id\":null,%s,\"line\":9,\"text\":\"{\\\"request_id\\\":7}\"}\n"
		"{\"id\":null,%s,\"line\":10,\"text\":\"msg=\\\"request_id=inside\\\" x=1\"}\n"
		"{\"id\":null,%s,\"line\":11,\"text\":\"plain a1 text\"}\n"
		"{\"id\":\"unknown\",%s,\"line\":12,\"text\":\"{\\\"request_id\\\":\\\"unknown\\\",\\\"boot\\\":1}\"}\n"
		"{\"id\":\"unknown\",%s,\"line\":13,\"text\":\"boot\"}\n",
		j, j, j, j, j, j, j, j, j, j, j, j, j));
	p = run_argv(ARGV((char *)tool(), "logs", "--stats", (char *)f), NULL);
	cr_assert_eq(p.status, 0, "%s", p.err);
	cr_assert_str_eq(p.out, "requests: 2\n"
			 "lines: 13\n"
			 "lines per request: min 3, median 3, max 4\n"
			 "unknown lines: 2 (15.4%)\n"
			 "unprefixed lines: 4 (30.8%)\n"
			 "top requests:\n"
			 "  4  a1\n"
			 "  3  b=2\n");
	p = run_argv(ARGV((char *)tool(), "logs", "--group", "--no-filename", (char *)f), NULL);
	cr_assert_eq(p.status, 0, "%s", p.err);
	cr_assert_str_eq(p.out, "[req:a1] prefix line\n"
			 "{\"request_id\":\"a1\",\"msg\":\"json line\"}\n"
			 "request_id=a1 logfmt line\n"
			 "level=info msg=\"its own key\" request_id=a1\n"
			 "request_id=\"b=2\" quoted because of the equals sign\n"
			 "  {\"request_id\":\"b=2\"}\n"
			 "{\"a\":{\"request_id\":\"nested\"},\"request_id\":\"b=2\"}\n"
			 "{\"request_id\":\"unknown\",\"boot\":1}\n"
			 "request_id=unknown boot\n"
			 "{\"a\":{\"request_id\":\"nested\"}}\n"
			 "{\"request_id\":7}\n"
			 "msg=\"request_id=inside\" x=1\n"
			 "plain a1 text\n");
}

Test(logs, field_names_the_key_and_is_checked)
{
	const char *f = fmt("%s/field.log", tmp);
	static const char text[] = "{\"trace.id\":\"t1\",\"request_id\":\"r1\"}\n"
				   "trace.id=t1 a=1\nrequest_id=r1 b=2\n";
	struct proc p;

	spit(f, text, strlen(text), 0644);
	p = run_argv(ARGV((char *)tool(), "logs", "--field", "trace.id", "--id", "t1", (char *)f),
		     NULL);
	cr_assert_eq(p.status, 0, "%s", p.err);
	cr_assert_str_eq(p.out, "{\"trace.id\":\"t1\",\"request_id\":\"r1\"}\ntrace.id=t1 a=1\n");
	p = run_argv(ARGV((char *)tool(), "logs", "--id", "r1", (char *)f), NULL);
	cr_assert_str_eq(p.out, "{\"trace.id\":\"t1\",\"request_id\":\"r1\"}\nrequest_id=r1 b=2\n");
	p = run_argv(ARGV((char *)tool(), "logs", "--field", "a b", (char *)f), NULL);
	cr_assert_eq(p.status, 2);
	cr_assert_str_eq(p.err, "reqctx logs: --field 'a b' is not a field name (1-64 characters "
			 "from A-Z a-z 0-9 _ . -)\nTry 'reqctx logs --help'.\n");
}

Test(logs, follow_reads_json_and_logfmt_lines_as_they_come)
{
	const char *f = fmt("%s/live.json", tmp), *out = fmt("%s/follow.out", tmp);
	const char *err = fmt("%s/follow.err", tmp);
	static const char first[] = "{\"request_id\":\"a1\",\"n\":1}\n{\"request_id\":\"b2\"}\n";
	pid_t pid;

	spit(f, first, strlen(first), 0644);
	pid = start(ARGV((char *)tool(), "logs", "--follow", "--json", "--id", "a1", (char *)f), NULL,
		    out, err);
	wait_content(out, fmt("{\"id\":\"a1\",\"file\":\"%s\",\"line\":1,\"text\":"
			      "\"{\\\"request_id\\\":\\\"a1\\\",\\\"n\\\":1}\"}\n", f));
	append(f, "request_id=a1 two\nrequest_id=b2 x\n{\"request_id\":\"a1\",");
	wait_content(out, fmt("{\"id\":\"a1\",\"file\":\"%s\",\"line\":1,\"text\":"
			      "\"{\\\"request_id\\\":\\\"a1\\\",\\\"n\\\":1}\"}\n"
			      "{\"id\":\"a1\",\"file\":\"%s\",\"line\":3,\"text\":\"two\"}\n", f, f));
	append(f, "\"n\":3}\n");
	wait_content(out, fmt("{\"id\":\"a1\",\"file\":\"%s\",\"line\":1,\"text\":"
			      "\"{\\\"request_id\\\":\\\"a1\\\",\\\"n\\\":1}\"}\n"
			      "{\"id\":\"a1\",\"file\":\"%s\",\"line\":3,\"text\":\"two\"}\n"
			      "{\"id\":\"a1\",\"file\":\"%s\",\"line\":5,\"text\":"
			      "\"{\\\"request_id\\\":\\\"a1\\\",\\\"n\\\":3}\"}\n", f, f, f));
	kill(pid, SIGTERM);
	cr_assert_eq(wait_status(pid, WAIT_MS), 128 + SIGTERM);
	cr_assert_str_eq(slurp(err, NULL), "");
}

/* ---- install ---- */

static int leftover;

static int count_files(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path; (void)st; (void)ftw;
	if (flag != FTW_D && flag != FTW_DP && flag != FTW_DNR)
		leftover++;
	return 0;
}

Test(install, installs_a_launcher_that_finds_the_installed_library)
{
	const char *dest = fmt("%s/dest", tmp), *out = fmt("%s/env.out", tmp);
	static const char *const files[] = {
		"bin/reqctx", "lib/libreqctx.so.0.1.0", "include/reqctx.h",
		"lib/pkgconfig/reqctx.pc", "share/man/man1/reqctx.1",
		"share/man/man7/libreqctx.7",
	};
	struct spawn sp = { .env = { fmt("CLI_ENV_OUT=%s", out) } };
	char link[PATH_MAX];
	struct stat st;
	struct proc p;
	ssize_t n;

	p = run_argv(ARGV("/bin/sh", "-c", fmt("make -s -C %s B=%s install DESTDIR=%s "
					       "PREFIX=/usr >/dev/null", repo_dir(),
					       build_real(), dest)), NULL);
	cr_assert_eq(p.status, 0, "make install: %s", p.err);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		cr_expect_eq(lstat(fmt("%s/usr/%s", dest, files[i]), &st) == 0 &&
			     S_ISREG(st.st_mode), 1, "missing %s", files[i]);
	n = readlink(fmt("%s/usr/lib/libreqctx.so.0", dest), link, sizeof(link) - 1);
	cr_assert_gt(n, 0);
	link[n] = '\0';
	cr_assert_str_eq(link, "libreqctx.so.0.1.0");
	n = readlink(fmt("%s/usr/lib/libreqctx.so", dest), link, sizeof(link) - 1);
	cr_assert_gt(n, 0);
	link[n] = '\0';
	cr_assert_str_eq(link, "libreqctx.so.0");
	cr_assert_str_eq(slurp(fmt("%s/usr/lib/pkgconfig/reqctx.pc", dest), NULL),
			 "prefix=/usr\nexec_prefix=${prefix}\nlibdir=/usr/lib\n"
			 "includedir=/usr/include\n\nName: reqctx\n"
			 "Description: Request correlation for unmodified servers "
			 "(LD_PRELOAD library)\nURL: https://github.com/reqctx/reqctx\n"
			 "Version: 0.1.0\nLibs: -L${libdir} -lreqctx\nCflags: -I${includedir}\n");

	p = run_argv(ARGV(fmt("%s/usr/bin/reqctx", dest), "run", "--", (char *)cli_env()), &sp);
	cr_assert_eq(p.status, 0, "installed reqctx run: %s", p.err);
	cr_assert_str_eq(slurp(out, NULL),
			 env_report(fmt("%s/usr/lib/libreqctx.so.0", dest), NULL, NULL, NULL,
				    NULL, NULL, NULL, ""));

	p = run_argv(ARGV("/bin/sh", "-c", fmt("make -s -C %s B=%s uninstall DESTDIR=%s "
					       "PREFIX=/usr >/dev/null", repo_dir(),
					       build_real(), dest)), NULL);
	cr_assert_eq(p.status, 0, "make uninstall: %s", p.err);
	cr_assert_eq(nftw(dest, count_files, 16, FTW_PHYS), 0);
	cr_assert_eq(leftover, 0, "make uninstall left %d files", leftover);
}
