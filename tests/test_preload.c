/*
 * Interposition: small helper programs run with LD_PRELOAD in their own
 * environment, and their output is checked byte for byte.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "proc.h"

static char *out_path, *err_path;
static const char *dir;

static void setup(void)
{
	static char o[128], e[128];

	dir = tmpdir_new();
	snprintf(o, sizeof(o), "%s/out", dir);
	snprintf(e, sizeof(e), "%s/err", dir);
	out_path = o;
	err_path = e;
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(preload, .init = setup, .fini = teardown, .timeout = 60);

/* ---- exports ---- */

/*
 * The exported names are exactly those listed in the files of tests/exports, one
 * file per family of wrappers: nothing internal leaks into the host.
 */
Test(preload, exports_only_libc_names_and_the_api)
{
	char cmd[1200];
	char *got, *want;

	snprintf(cmd, sizeof(cmd),
		 "nm -D --defined-only %s/libreqctx.so | awk '{print $3}' | sed 's/@.*//' "
		 "| sort -u > %s/got && cat %s/../tests/exports/*.txt | sort -u > %s/want",
		 bdir(), dir, bdir(), dir);
	cr_assert_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/got", dir);
	got = slurp(cmd, NULL);
	snprintf(cmd, sizeof(cmd), "%s/want", dir);
	want = slurp(cmd, NULL);
	cr_assert_gt(strlen(want), 100);
	cr_assert_str_eq(got, want);
}

/* ---- stdio ---- */

/*
 * Runs a helper with and without the library. Without it, the output is the
 * program's own bytes; with it, each line must be those bytes behind the
 * prefix `want_prefix(line)` returns.
 */
static void expect_prefixed(const char *plain, const char *got,
			    const char *(*want_prefix)(const char *line, void *), void *arg)
{
	char *expect = malloc(strlen(plain) * 4 + 64);
	size_t n = 0;

	for (const char *l = plain; *l;) {
		const char *nl = strchr(l, '\n');
		size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
		char line[4096];
		const char *pfx;

		snprintf(line, sizeof(line), "%.*s", (int)len, l);
		pfx = want_prefix(line, arg);
		n += (size_t)sprintf(expect + n, "%s%s", pfx, line);
		l += len;
	}
	cr_assert_str_eq(got, expect, "\n--- got ---\n%s--- want ---\n%s", got, expect);
	free(expect);
}

static const char *stdio_prefix(const char *line, void *opt)
{
	static const char *const inlined[] = { "u\n", "q\n", "s\n" };

	if (!strcmp(line, "outside\n"))
		return "[req:unknown] ";
	/* glibc's headers inline the _unlocked character functions at -O2. */
	for (int i = 0; i < 3 && *(int *)opt; i++)
		if (!strcmp(line, inlined[i]))
			return "";
	return "[req:abc] ";
}

static void stdio_case(const char *variant, int o2)
{
	char prog[256], o0[160], e0[160];
	char *argv[] = { prog, NULL };
	char *plain_out, *plain_err, *out, *err;

	snprintf(prog, sizeof(prog), "%s/progs/%s/stdio_all", bdir(), variant);
	snprintf(o0, sizeof(o0), "%s/plain.out", dir);
	snprintf(e0, sizeof(e0), "%s/plain.err", dir);
	cr_assert_eq(proc_run(argv, NULL, 0, o0, e0), 0);
	cr_assert_eq(proc_run(argv, NULL, 1, out_path, err_path), 0);
	plain_out = slurp(o0, NULL);
	plain_err = slurp(e0, NULL);
	out = slurp(out_path, NULL);
	err = slurp(err_path, NULL);
	cr_assert(strstr(plain_out, "printf-literal\n") && strstr(plain_err, "psignal: Terminated\n"));
	expect_prefixed(plain_out, out, stdio_prefix, &o2);
	expect_prefixed(plain_err, err, stdio_prefix, &o2);
}

Test(preload, every_stdio_entry_point_at_O0)
{
	stdio_case("O0", 0);
}

Test(preload, every_stdio_entry_point_at_O2_fortified)
{
	stdio_case("O2", 1);
}

/* ---- write(2) ---- */

static const char *unknown_prefix(const char *line, void *arg)
{
	(void)line;
	(void)arg;
	return "[req:unknown] ";
}

Test(preload, write_returns_and_errno_are_libc_s)
{
	char rep0[160], rep1[160], o0[160];
	char prog[256];
	char *argv0[] = { prog, rep0, NULL }, *argv1[] = { prog, rep1, NULL };
	char *a, *b;

	snprintf(prog, sizeof(prog), "%s/progs/O0/wr", bdir());
	snprintf(rep0, sizeof(rep0), "%s/rep0", dir);
	snprintf(rep1, sizeof(rep1), "%s/rep1", dir);
	snprintf(o0, sizeof(o0), "%s/o0", dir);
	cr_assert_eq(proc_run(argv0, NULL, 0, o0, NULL), 0);
	cr_assert_eq(proc_run(argv1, NULL, 1, out_path, err_path), 0);
	a = slurp(rep0, NULL);
	b = slurp(rep1, NULL);
	cr_assert_str_eq(b, a);
	cr_assert(strstr(a, "efault: r=-1 errno=Bad address\n"));
	cr_assert(strstr(a, "zero: r=0 errno=untouched\n"));
	cr_assert_str_eq(slurp(out_path, NULL),
			 "[req:unknown] hello\n[req:unknown] no newline yet\n[req:unknown] ab\n");
	cr_assert_str_eq(slurp(err_path, NULL), "[req:unknown] err line\n");
}

Test(preload, seq_200000_strips_back_to_the_same_bytes)
{
	char *argv[] = { "/usr/bin/seq", "1", "200000", NULL };
	char o0[160];
	size_t n0, n1;
	char *plain, *got;

	snprintf(o0, sizeof(o0), "%s/plain", dir);
	cr_assert_eq(proc_run(argv, NULL, 0, o0, NULL), 0);
	cr_assert_eq(proc_run(argv, NULL, 1, out_path, NULL), 0);
	plain = slurp(o0, &n0);
	got = slurp(out_path, &n1);
	cr_assert_eq(n1, n0 + 200000 * strlen("[req:unknown] "));
	expect_prefixed(plain, got, unknown_prefix, NULL);
}

Test(preload, nonblocking_log_writes_through_eagain_lose_nothing)
{
	char prog[256], fifo[160], copy[160];
	char *argv[] = { prog, fifo, copy, "3000", NULL };
	char *got, *p;
	int lines = 0;

	snprintf(prog, sizeof(prog), "%s/progs/O0/nbfifo", bdir());
	snprintf(fifo, sizeof(fifo), "%s/pipe.log", dir);
	snprintf(copy, sizeof(copy), "%s/copy", dir);
	cr_assert_eq(proc_run(argv, NULL, 1, NULL, err_path), 0);
	cr_assert_str_eq(slurp(err_path, NULL), "[req:unknown] eagain=1 short=1\n");
	got = slurp(copy, NULL);
	for (p = got; *p; lines++) {
		char want[128];

		snprintf(want, sizeof(want), "[req:unknown] line %06d", lines);
		cr_assert_eq(strncmp(p, want, strlen(want)), 0, "line %d: %.40s", lines, p);
		p += strlen(want);
		for (int i = 0; i < 88; i++, p++)
			cr_assert_eq(*p, '.', "line %d byte %d", lines, i);
		cr_assert_eq(*p++, '\n');
	}
	cr_assert_eq(lines, 3000);
}

/* ---- files ---- */

static void file_is(const char *name, const char *want)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	cr_assert_str_eq(slurp(p, NULL), want, "%s", name);
}

Test(preload, only_append_mode_log_names_are_logs)
{
	char prog[256];
	char *argv[] = { prog, (char *)dir, NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O0/files", bdir());
	cr_assert_eq(proc_run(argv, NULL, 1, NULL, NULL), 0);
	file_is("appendonly.aof", "SET k v\n*3\r\n$3\r\nSET\r\n");
	file_is("data.txt", "data line\n");
	file_is("trunc.log", "not appended\n");
	file_is("w.log", "w mode\n");
	file_is("reused.bin", "binary\n");
	file_is("app.log", "[req:f1] log line\n[req:f1] via dup\n");
	file_is("app.log.1", "[req:f1] rotated\n");
	file_is("svc_log", "[req:f1] stdio log 1\n");
}

Test(preload, log_patterns_come_from_the_environment)
{
	static const char *const env[] = { "REQCTX_LOG_FILES=*.aof", NULL };
	char prog[256];
	char *argv[] = { prog, (char *)dir, NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O0/files", bdir());
	cr_assert_eq(proc_run(argv, env, 1, NULL, NULL), 0);
	file_is("appendonly.aof", "[req:f1] SET k v\n[req:f1] *3\r\n[req:f1] $3\r\n[req:f1] SET\r\n");
	file_is("app.log", "log line\nvia dup\n");
}

Test(preload, bad_configuration_is_reported_once_and_defaults_apply)
{
	static const char *const env[] = { "REQCTX_PREFIX=no-placeholder", "REQCTX_ECHO=yes", NULL };
	char *argv[] = { "/bin/echo", "hi", NULL };

	cr_assert_eq(proc_run(argv, env, 1, out_path, err_path), 0);
	cr_assert_str_eq(slurp(out_path, NULL), "[req:unknown] hi\n");
	cr_assert_str_eq(slurp(err_path, NULL),
			 "reqctx: REQCTX_PREFIX=\"no-placeholder\" needs exactly one %s, printable "
			 "characters, %% for a literal %, and at most 64 characters on each side; "
			 "using \"[req:%s] \"\n"
			 "reqctx: REQCTX_ECHO=\"yes\" is not 0 or 1; using \"1\"\n");
}

Test(preload, disabled_passes_everything_through)
{
	static const char *const env[] = { "REQCTX_DISABLE=1", NULL };
	char *argv[] = { "/bin/echo", "hi", NULL };

	cr_assert_eq(proc_run(argv, env, 1, out_path, err_path), 0);
	cr_assert_str_eq(slurp(out_path, NULL), "hi\n");
	cr_assert_str_eq(slurp(err_path, NULL), "");
}

/*
 * Pass-through is the real functions, not raw system calls: blocking calls
 * stay cancellation points (a raw syscall() is not one, and a thread blocked
 * in it could never be cancelled), disabled or not.
 */
Test(preload, blocking_calls_stay_cancellation_points_disabled_or_not)
{
	static const char *const off[] = { "REQCTX_DISABLE=1", NULL };
	static const char *const on[] = { "REQCTX_LOG_FDS=", NULL }; /* stdout: no prefixes */
	static const char want[] = "read cancelled\nrecv cancelled\nreadv cancelled\n"
				   "recvmsg cancelled\naccept cancelled\npoll cancelled\n"
				   "select cancelled\nepoll_wait cancelled\n";

	for (int o2 = 0; o2 < 2; o2++) {
		char *argv[] = { (char *)bpath(o2 ? "progs/O2/cancel" : "progs/O0/cancel"), NULL };

		cr_assert_eq(proc_run(argv, NULL, 0, out_path, err_path), 0);
		cr_assert_str_eq(slurp(out_path, NULL), want);
		cr_assert_eq(proc_run(argv, off, 1, out_path, err_path), 0, "disabled: %s",
			     slurp(out_path, NULL));
		cr_assert_str_eq(slurp(out_path, NULL), want);
		cr_assert_str_eq(slurp(err_path, NULL), "");
		cr_assert_eq(proc_run(argv, on, 1, out_path, err_path), 0, "ready: %s",
			     slurp(out_path, NULL));
		cr_assert_str_eq(slurp(out_path, NULL), want);
	}
}

Test(preload, children_of_a_preloaded_process_log_only_on_stderr)
{
	char *argv[] = { "/bin/sh", "-c", "x=$(echo captured); echo \"$x\"; echo e >&2; "
			 "sh -c 'echo child-out; echo child-err >&2'", NULL };

	cr_assert_eq(proc_run(argv, NULL, 1, out_path, err_path), 0);
	cr_assert_str_eq(slurp(out_path, NULL), "[req:unknown] captured\nchild-out\n");
	cr_assert_str_eq(slurp(err_path, NULL), "[req:unknown] e\n[req:unknown] child-err\n");
}

/* ---- line state (issue 16) ---- */

/* Runs progs/VARIANT/lines with args, with or without the library; returns its status. */
static int lines_run(const char *variant, const char *const *args, int preload)
{
	char prog[256];
	char *argv[8] = { prog };
	int n = 1;

	snprintf(prog, sizeof(prog), "%s/progs/%s/lines", bdir(), variant);
	for (; args[n - 1] && n < 7; n++)
		argv[n] = (char *)args[n - 1];
	argv[n] = NULL;
	return proc_run(argv, NULL, preload, out_path, err_path);
}

/* Each line of `plain` behind "[req:unknown] ", except those listed bare. */
static const char *bare_lines(const char *line, void *arg)
{
	for (const char *const *b = arg; b && *b; b++)
		if (!strcmp(line, *b))
			return "";
	return "[req:unknown] ";
}

Test(preload, stdio_and_write_share_one_line_state_on_stderr)
{
	static const char plain[] = "mixed stdio and raw\nraw then stdio\na\nb\nc\npart x\n";
	static const char *const args[] = { "mixed", NULL };

	for (int v = 0; v < 2; v++) {
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 0), 0);
		cr_assert_str_eq(slurp(err_path, NULL), plain);
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 1), 0);
		expect_prefixed(plain, slurp(err_path, NULL), bare_lines, NULL);
	}
}

/*
 * stdout to a file is fully buffered: write(2) reaches the kernel before
 * the lines stdio holds, as without the library. A whole line held in the
 * buffer, or one flushed, is exact; a line stdio holds unfinished while a
 * write(2) goes out is the documented case: the write continues it, so the
 * line the write makes in the file has no prefix.
 */
Test(preload, a_buffered_stdout_and_a_log_file_next_to_write_keep_every_prefix_exact)
{
	static const char plain[] = "raw line\nbuffered line\npart raw\nraw whole\nheld end\n";
	static const char *const held[] = { "raw whole\n", NULL };
	const char *args[] = { "buffered", dir, NULL };
	char log[256];

	snprintf(log, sizeof(log), "%s/app.log", dir);
	for (int v = 0; v < 2; v++) {
		unlink(log);
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 0), 0);
		cr_assert_str_eq(slurp(out_path, NULL), plain);
		cr_assert_str_eq(slurp(log, NULL), "raw\nbuffered\npart raw\n");
		unlink(log);
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 1), 0);
		expect_prefixed(plain, slurp(out_path, NULL), bare_lines, (void *)held);
		cr_assert_str_eq(slurp(log, NULL),
				 "[req:unknown] raw\n[req:unknown] buffered\n[req:unknown] part raw\n");
	}
}

/*
 * putc_unlocked, putchar_unlocked and fwrite_unlocked of up to 8 bytes are
 * inlined at -O2. Their line ends are seen on every stream: in the buffer,
 * or through __overflow. A line they start is prefixed on stderr
 * (unbuffered: through __overflow) and not on a fully buffered stdout, where
 * the byte goes straight into the buffer.
 */
Test(preload, line_ends_written_by_inlined_putc_unlocked_are_seen)
{
	static const char out[] = "abc\nnext\ns\nafter\n", err[] = "abc\nnext\nq\nab\nafter\n";
	static const char *const inlined[] = { "s\n", NULL };
	static const char *const args[] = { "unlocked", NULL };

	for (int v = 0; v < 2; v++) {
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 0), 0);
		cr_assert_str_eq(slurp(out_path, NULL), out);
		cr_assert_str_eq(slurp(err_path, NULL), err);
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 1), 0);
		expect_prefixed(out, slurp(out_path, NULL), bare_lines, v ? (void *)inlined : NULL);
		expect_prefixed(err, slurp(err_path, NULL), bare_lines, NULL);
	}
}

/* fprintf, fwrite, fputs, fputc, putc, puts return what glibc documents, buffered or not. */
Test(preload, stdio_calls_on_log_streams_return_what_glibc_returns)
{
	static const char *const args[] = { "returns", NULL };
	size_t n0, n1;
	char *plain, *got;

	for (int v = 0; v < 2; v++) {
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 0), 0);
		plain = slurp(out_path, &n0);
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 1), 0);
		got = slurp(out_path, &n1);
		expect_prefixed(plain, got, bare_lines, NULL);
		free(plain);
		free(got);
	}
}

/* A line-buffered stream: partial lines, lines longer than its buffer, inlined putchar_unlocked. */
Test(preload, a_line_buffered_stream_keeps_its_lines_and_prefixes)
{
	static const char *const args[] = { "linebuf", NULL };
	char *plain, *got;

	for (int v = 0; v < 2; v++) {
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 0), 0);
		plain = slurp(out_path, NULL);
		cr_assert_eq(strlen(plain), 50 * (strlen("part 0 more ") + 300 + 5 + 2) + 40);
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 1), 0);
		got = slurp(out_path, NULL);
		expect_prefixed(plain, got, bare_lines, NULL);
		free(plain);
		free(got);
	}
}

static const char *strace_bin(void)
{
	static const char path[] = "/usr/bin/strace";

	cr_assert_eq(access(path, X_OK), 0, "strace is needed (apt-get install -y strace)");
	return path;
}

/* Runs progs/O2/lines under strace (extra: its options), the library in the tracee only. */
static int traced(const char *const *opts, const char *const *args, int preload)
{
	char lp[600], prog[256], trace[200];
	char *argv[32];
	int n = 0;

	proc_preload(lp, sizeof(lp), NULL);
	snprintf(prog, sizeof(prog), "%s/progs/O2/lines", bdir());
	snprintf(trace, sizeof(trace), "%s/trace", dir);
	argv[n++] = (char *)strace_bin();
	argv[n++] = "-f";
	argv[n++] = "-qq";
	argv[n++] = "-o";
	argv[n++] = trace;
	for (; *opts; opts++)
		argv[n++] = (char *)*opts;
	if (preload) {
		argv[n++] = "-E";
		argv[n++] = lp;
		argv[n++] = "-E";
		argv[n++] = "REQCTX_LOG_FDS=1,2";
	}
	argv[n++] = prog;
	for (; *args; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	return proc_run(argv, NULL, 0, out_path, err_path);
}

/* System calls in the trace that wrote to fd. */
static int writes_to(int fd)
{
	char path[200], pat[2][32];
	char *t, *p;
	int n = 0;

	snprintf(path, sizeof(path), "%s/trace", dir);
	snprintf(pat[0], sizeof(pat[0]), " write(%d, ", fd);
	snprintf(pat[1], sizeof(pat[1]), " writev(%d, ", fd);
	t = slurp(path, NULL);
	for (p = t; (p = strchr(p, ' ')); p++)
		n += !strncmp(p, pat[0], strlen(pat[0])) || !strncmp(p, pat[1], strlen(pat[1]));
	free(t);
	return n;
}

/*
 * One fprintf, fputs or puts is one write(2) on an unbuffered stream,
 * prefix included, whatever the length: a 1.5 KB, a 20 KB and a 100 KB line
 * take three system calls (glibc itself needs 1 + 1 + 13: its fprintf
 * buffer is 8 KB).
 */
Test(preload, one_fprintf_is_one_write_whatever_the_line_length)
{
	static const char *const opts[] = { "-e", "trace=write,writev", NULL };
	static const char *const args[] = { "long", NULL };
	size_t len;
	char *err;

	cr_assert_eq(traced(opts, args, 1), 0);
	cr_assert_eq(writes_to(2), 3);
	err = slurp(err_path, &len);
	cr_assert_eq(len, 3 * 14 + 1501 + 20000 + 100001);
	cr_assert_eq(strncmp(err, "[req:unknown] aaa", 17), 0);
	cr_assert_eq(strncmp(err + 14 + 1501, "[req:unknown] bbb", 17), 0);
	cr_assert_eq(strncmp(err + 28 + 21501, "[req:unknown] ccc", 17), 0);
	free(err);
}

/* The case: forked workers writing long lines to one stderr never tear a prefix off. */
Test(preload, forked_workers_writing_long_lines_never_tear_a_prefix_off)
{
	static const char *const args[] = { "workers", "4", NULL };
	int count[4] = { 0 }, lines = 0;
	size_t len;
	char *err, *p, *x = malloc(1481);

	memset(x, 'x', 1480);
	x[1480] = '\0';
	cr_assert_eq(lines_run("O2", args, 1), 0);
	err = slurp(err_path, &len);
	for (p = err; p < err + len; lines++) {
		char *nl = strchr(p, '\n');
		int w, i, n = 0;

		cr_assert_not_null(nl);
		*nl = '\0';
		cr_assert_eq(sscanf(p, "[req:unknown] w%d %d %n", &w, &i, &n), 2, "line %d: %.60s", lines, p);
		cr_assert(w >= 0 && w < 4 && n == 22 && !strcmp(p + n, x), "line %d: %.60s", lines, p);
		cr_assert_eq(i, count[w]++, "worker %d lost a line", w);
		p = nl + 1;
	}
	cr_assert_eq(lines, 8000);
	free(err);
	free(x);
}

Test(preload, a_line_that_carries_its_own_prefix_gets_no_second_one)
{
	static const char *const args[] = { "own", NULL };

	for (int v = 0; v < 2; v++) {
		cr_assert_eq(lines_run(v ? "O2" : "O0", args, 1), 0);
		cr_assert_str_eq(slurp(out_path, NULL),
				 "[req:abc123] incoming\n[req:abc123] split by the program\n"
				 "[req:abc123] [req:other] not ours\n");
		cr_assert_str_eq(slurp(err_path, NULL),
				 "[req:abc123] incoming\n[req:abc123] raw\n"
				 "[req:abc123] [req:abc123] cut\n[req:abc123] plain\n");
	}
}

/*
 * The case: a signal handler writes "sig\n" while the program writes
 * each line in three write(2)s. strace makes the kernel deliver SIGUSR1 at
 * the end of every 7th write: the handler sees the line state that write
 * left, so its line joins a partial line or starts its own, and nothing is
 * lost, doubled or prefixed in the middle of a line.
 */
Test(preload, a_signal_handler_at_the_end_of_a_write_sees_the_state_that_write_left)
{
	static const char *const opts[] = { "-e", "trace=write,writev", "-e",
					     "inject=write,writev:signal=SIGUSR1:when=2+7", NULL };
	static const char *const args[] = { "partial", "3000", NULL };
	const char *pfx = "[req:unknown] ";
	size_t plen = strlen(pfx), len, o = 0;
	char *err, *p, *main_text = malloc(3000 * 24 + 1), *stripped;
	int handled = -1, sigs = 0;

	cr_assert_eq(traced(opts, args, 1), 0);
	cr_assert_eq(sscanf(slurp(out_path, NULL), "[req:unknown] handled=%d", &handled), 1);
	cr_assert_gt(handled, 1000);
	err = slurp(err_path, &len);
	stripped = malloc(len + 1);
	for (p = err; p < err + len;) {
		char *nl = memchr(p, '\n', (size_t)(err + len - p));

		cr_assert_not_null(nl, "the output ends inside a line");
		cr_assert_eq(strncmp(p, pfx, plen), 0, "a line without its prefix at byte %zu: %.40s",
			     (size_t)(p - err), p);
		p += plen;
		cr_assert_null(memmem(p, (size_t)(nl - p), "[req:", 5), "a prefix inside a line: %.60s", p);
		memcpy(stripped + o, p, (size_t)(nl + 1 - p));
		o += (size_t)(nl + 1 - p);
		p = nl + 1;
	}
	stripped[o] = '\0';
	/* "sig\n" anywhere (a line of its own, or the end of a line it joined), then the program's bytes */
	for (char *q; (q = strstr(stripped, "sig\n")); sigs++)
		memmove(q, q + 4, strlen(q + 4) + 1);
	cr_assert_eq(sigs, handled);
	for (int i = 0, k = 0; i < 3000; i++)
		k += sprintf(main_text + k, "main %05d middle end\n", i);
	cr_assert_str_eq(stripped, main_text);
	free(err);
	free(stripped);
	free(main_text);
}

/* ---- message functions before reqctx is ready (issue 15.9) ---- */

struct early_run {
	int status;
	char *out, *err, *where;
};

static void early_run(const char *exe, const char *action, const char *when, int preload,
		      const char *extra, struct early_run *r)
{
	char w[64], a[64], rep[200], repenv[220];
	const char *env[] = { w, a, repenv, "REQCTX_LOG_FDS=2", extra, NULL };
	char *argv[] = { (char *)exe, (char *)action, NULL };

	snprintf(w, sizeof(w), "EARLY_WHEN=%s", when);
	snprintf(a, sizeof(a), "EARLY_ACTION=%s", action);
	snprintf(rep, sizeof(rep), "%s/where", dir);
	snprintf(repenv, sizeof(repenv), "EARLY_REPORT=%s", rep);
	unlink(rep);
	r->status = proc_run(argv, env, preload, out_path, err_path);
	r->out = slurp(out_path, NULL);
	r->err = slurp(err_path, NULL);
	r->where = slurp(rep, NULL);
}

/*
 * Each message function, called with reqctx not ready (inside its first
 * dlsym, before anything is resolved; inside its reading of the
 * configuration, resolved but not ready), ready, and disabled: the output,
 * the exit status and what atexit and stdio's flush at exit leave are those
 * of a run without the library; ready, each stderr line also has its prefix.
 */
Test(preload, message_functions_do_what_libc_does_before_reqctx_is_ready, .timeout = 120)
{
	static const char *const actions[] = {
		"psignal", "psiginfo", "perror", "warn",   "warnx",  "vwarn",  "vwarnx",
		"error0",  "error1",   "at_line0", "at_line1", "repeat", "err", "errx",
		"verr",    "verrx",    "assert", NULL
	};
	static const char *const whens[] = { "dlsym", "getenv", NULL };
	char exe[256], cmd[800];

	snprintf(exe, sizeof(exe), "%s/early", dir);
	snprintf(cmd, sizeof(cmd), "cc -std=gnu11 -O2 -rdynamic -o %s %s/../tests/fixtures/early.c -ldl",
		 exe, bdir());
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	for (const char *const *a = actions; *a; a++) {
		struct early_run plain, r;

		early_run(exe, *a, "main", 0, NULL, &plain);
		cr_assert_str_eq(plain.where, "main");
		cr_assert_gt(strlen(plain.err), 5, "%s printed nothing", *a);
		for (const char *const *w = whens; *w; w++) {
			if (!strcmp(*a, "psiginfo") && !strcmp(*w, "dlsym"))
				continue; /* documented: psignal's line, checked below */
			early_run(exe, *a, *w, 1, NULL, &r);
			cr_assert_str_eq(r.where, *w, "%s: the action did not run inside start-up", *a);
			cr_assert_eq(r.status, plain.status, "%s (%s)", *a, *w);
			cr_assert_str_eq(r.out, plain.out, "%s (%s)", *a, *w);
			cr_assert_str_eq(r.err, plain.err, "%s (%s)", *a, *w);
		}
		early_run(exe, *a, "main", 1, "REQCTX_DISABLE=1", &r);
		cr_assert_eq(r.status, plain.status, "%s (disabled)", *a);
		cr_assert_str_eq(r.out, plain.out, "%s (disabled)", *a);
		cr_assert_str_eq(r.err, plain.err, "%s (disabled)", *a);
		early_run(exe, *a, "main", 1, "REQCTX_CRASH=0", &r);
		cr_assert_eq(r.status, plain.status, "%s (ready)", *a);
		cr_assert_str_eq(r.out, plain.out, "%s (ready)", *a);
		expect_prefixed(plain.err, r.err, bare_lines, NULL);
	}
	{
		struct early_run r;

		early_run(exe, "psiginfo", "dlsym", 1, NULL, &r);
		cr_assert_eq(r.status, 0);
		cr_assert_str_eq(r.err, "psiginfo: Terminated\n");
	}
}

/* ---- sockets ---- */

static pid_t srv_start(const char *mode, int *port)
{
	char prog[256], pf[160];
	char *argv[] = { prog, (char *)mode, pf, NULL };
	long end = proc_now_ms() + 10000;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/progs/O0/srv", bdir());
	snprintf(pf, sizeof(pf), "%s/port", dir);
	unlink(pf);
	pid = proc_start(argv, NULL, 1, out_path, err_path);
	for (;;) {
		FILE *f = fopen(pf, "r");

		if (f && fscanf(f, "%d", port) == 1) {
			fclose(f);
			return pid;
		}
		if (f)
			fclose(f);
		cr_assert_lt(proc_now_ms(), end, "server did not start");
		usleep(5000);
	}
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	return s;
}

static void send_str(int s, const char *p)
{
	cr_assert_eq(send(s, p, strlen(p), MSG_NOSIGNAL), (ssize_t)strlen(p));
}

/* Reads one response (head + Content-Length body) into buf; returns its length. */
static size_t recv_response(int s, char *buf, size_t cap, int slow)
{
	size_t have = 0, need = (size_t)-1;

	while (have < need) {
		struct pollfd p = { s, POLLIN, 0 };
		ssize_t r;
		char *end;

		cr_assert_gt(poll(&p, 1, 10000), 0, "no response");
		r = recv(s, buf + have, slow ? 1000 : cap - have - 1, 0);
		cr_assert_gt(r, 0, "connection closed after %zu bytes", have);
		have += (size_t)r;
		buf[have] = '\0';
		if (need == (size_t)-1 && (end = strstr(buf, "\r\n\r\n"))) {
			char *cl = strcasestr(buf, "\r\nContent-Length: ");

			cr_assert_not_null(cl);
			need = (size_t)(end + 4 - buf) + strtoul(cl + 18, NULL, 10);
		}
		if (slow)
			usleep(200);
	}
	cr_assert_eq(have, need);
	return have;
}

static void header_value(const char *resp, char *out)
{
	const char *h = strcasestr(resp, "\r\nX-Request-Id: ");

	cr_assert_not_null(h, "no X-Request-Id in %s", resp);
	sscanf(h + 16, "%128[^\r]", out);
}

Test(preload, keep_alive_requests_each_get_an_id)
{
	char buf[4096], uuid[130], want[1024];
	int port, s;
	pid_t pid = srv_start("http", &port);

	s = dial(port);
	send_str(s, "GET /1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: a1\r\n\r\n");
	recv_response(s, buf, sizeof(buf), 0);
	cr_assert_str_eq(buf, "HTTP/1.1 200 OK\r\nX-Request-Id: a1\r\nContent-Length: 2\r\n\r\n/1");
	send_str(s, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
	recv_response(s, buf, sizeof(buf), 0);
	header_value(buf, uuid);
	cr_assert_eq(strlen(uuid), 36);
	send_str(s, "GET /3 HTTP/1.1\r\nx-request-id: a3\r\n\r\n");
	recv_response(s, buf, sizeof(buf), 0);
	cr_assert_str_eq(buf, "HTTP/1.1 200 OK\r\nX-Request-Id: a3\r\nContent-Length: 2\r\n\r\n/3");
	close(s);
	cr_assert_eq(proc_wait(pid, 10000), 0);
	snprintf(want, sizeof(want),
		 "[req:a1] handling /1\n[req:a1] done /1\n[req:%s] handling /2\n"
		 "[req:%s] done /2\n[req:a3] handling /3\n[req:a3] done /3\n", uuid, uuid);
	cr_assert_str_eq(slurp(err_path, NULL), want);
}

Test(preload, header_split_across_reads)
{
	char buf[4096];
	int port, s;
	pid_t pid = srv_start("http", &port);

	s = dial(port);
	send_str(s, "GET /split HTTP/1.1\r\nHost: x\r\nX-Req");
	usleep(100000);
	send_str(s, "uest-Id: sp");
	usleep(100000);
	send_str(s, "lit1\r\n\r\n");
	recv_response(s, buf, sizeof(buf), 0);
	cr_assert_str_eq(buf, "HTTP/1.1 200 OK\r\nX-Request-Id: split1\r\nContent-Length: 6\r\n\r\n/split");
	close(s);
	cr_assert_eq(proc_wait(pid, 10000), 0);
	cr_assert_str_eq(slurp(err_path, NULL), "[req:split1] handling /split\n[req:split1] done /split\n");
}

Test(preload, hostile_ids_never_reach_logs_or_headers)
{
	char buf[4096], id[130], *req = malloc(20000);
	int port, s;
	pid_t pid = srv_start("http", &port);

	s = dial(port);
	strcpy(req, "GET /h HTTP/1.1\r\nX-Request-Id: ");
	memset(req + strlen(req), 'A', 10240);
	strcpy(req + 31 + 10240, "\r\n\r\n");
	send_str(s, req);
	recv_response(s, buf, sizeof(buf), 0);
	header_value(buf, id);
	cr_assert_eq(strlen(id), 36, "a 10 KB ID was not replaced: %s", id);
	send_str(s, "GET /j HTTP/1.1\r\nX-Request-Id: x]\x01 [req:forged]\r\n\r\n");
	recv_response(s, buf, sizeof(buf), 0);
	cr_assert_null(strstr(buf, "forged"));
	close(s);
	cr_assert_eq(proc_wait(pid, 10000), 0);
	cr_assert_null(strstr(slurp(err_path, NULL), "forged"));
	cr_assert_null(strstr(slurp(err_path, NULL), "AAAA"));
	free(req);
}

Test(preload, nonblocking_partial_writes_of_a_response_head)
{
	static char buf[400000], want[400000];
	int port, s;
	size_t n, w;
	pid_t pid = srv_start("big", &port);

	s = dial(port);
	send_str(s, "GET /big HTTP/1.1\r\nX-Request-Id: big1\r\n\r\n");
	n = recv_response(s, buf, sizeof(buf), 1);
	w = (size_t)sprintf(want, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nX-Pad: ");
	memset(want + w, 'p', 200000);
	w += 200000;
	w += (size_t)sprintf(want + w, "\r\nX-Request-Id: big1\r\n\r\n");
	for (size_t i = 0; i < 100000; i++)
		want[w++] = (char)('a' + i % 26);
	cr_assert_eq(n, w);
	cr_assert_eq(memcmp(buf, want, w), 0);
	close(s);
	cr_assert_eq(proc_wait(pid, 10000), 0);
}

Test(preload, binary_data_through_a_socket_is_unchanged)
{
	static unsigned char sent[1 << 20], got[1 << 20];
	int port, s;
	size_t back = 0;
	pid_t pid = srv_start("echo", &port);

	for (size_t i = 0; i < sizeof(sent); i++)
		sent[i] = (unsigned char)((i * 2654435761u) >> 13);
	memcpy(sent, "HTTP/1.1 200 OK\r\n\r\n", 19); /* looks like a head: still untouched */
	s = dial(port);
	for (size_t off = 0; off < sizeof(sent); off += 65536) {
		size_t want = off + 65536;

		cr_assert_eq(send(s, sent + off, 65536, MSG_NOSIGNAL), 65536);
		while (back < want) {
			ssize_t r = recv(s, got + back, want - back, 0);

			cr_assert_gt(r, 0);
			back += (size_t)r;
		}
	}
	cr_assert_eq(memcmp(sent, got, sizeof(sent)), 0);
	close(s);
	cr_assert_eq(proc_wait(pid, 10000), 0);
}
