/*
 * The demo server and the loadcheck checker, without the library: the demo
 * speaks HTTP/1.1 correctly and logs four exact lines per request in every
 * mode, and loadcheck counts all of those lines as unprefixed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RESP "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
#define RESP_LEN (sizeof(RESP) - 1)
#define CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* How long the helpers wait for the demo before failing, in ms. */
#define WAIT_MS 5000

static pid_t demo_pid;
static int demo_out = -1;	/* read end of the demo's stdout */
static int demo_port;
static char tmpdir[64];
static char errpath[128];

static const char *build_dir(void)
{
	const char *b = getenv("REQCTX_BUILD");

	return b && *b ? b : "build";
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

/* Starts build/reqctx-demo --port 0 --mode mode, stderr to a temp file. */
static void demo_start(const char *mode)
{
	char path[512], buf[512];
	size_t len = 0;
	long deadline = now_ms() + WAIT_MS;
	int p[2];
	const char *at;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/reqctx-test-demo-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(errpath, sizeof(errpath), "%s/stderr.log", tmpdir);
	snprintf(path, sizeof(path), "%s/reqctx-demo", build_dir());
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	demo_pid = fork();
	cr_assert_neq(demo_pid, -1);
	if (demo_pid == 0) {
		int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || dup2(p[1], 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execl(path, path, "--port", "0", "--mode", mode, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	demo_out = p[0];
	while (!memchr(buf, '\n', len)) {
		struct pollfd pfd = { .fd = demo_out, .events = POLLIN };
		ssize_t n;

		cr_assert_gt(poll(&pfd, 1, (int)(deadline - now_ms())), 0, "demo did not say it listens");
		n = read(demo_out, buf + len, sizeof(buf) - 1 - len);
		cr_assert_gt(n, 0, "demo exited before listening");
		len += (size_t)n;
	}
	buf[len] = '\0';
	at = strstr(buf, "listening on http://127.0.0.1:");
	cr_assert_not_null(at, "unexpected first line: %s", buf);
	demo_port = atoi(at + strlen("listening on http://127.0.0.1:"));
	cr_assert_gt(demo_port, 0);
}

/* Stops the demo with SIGTERM (SIGKILL after WAIT_MS); returns its wait status. */
static int demo_stop_status(void)
{
	int st = -1;
	long deadline = now_ms() + WAIT_MS;

	if (demo_pid > 0) {
		kill(demo_pid, SIGTERM);
		while (waitpid(demo_pid, &st, WNOHANG) == 0) {
			if (now_ms() > deadline) {
				kill(demo_pid, SIGKILL);
				waitpid(demo_pid, &st, 0);
				break;
			}
			sleep_ms(10);
		}
		demo_pid = 0;
	}
	if (demo_out >= 0)
		close(demo_out);
	demo_out = -1;
	if (tmpdir[0]) {
		unlink(errpath);
		rmdir(tmpdir);
		tmpdir[0] = '\0';
	}
	return st;
}

static void demo_stop(void)
{
	demo_stop_status();
}

static int connect_demo(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)demo_port) };
	struct timeval tv = { WAIT_MS / 1000, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_str(int fd, const char *s)
{
	size_t len = strlen(s);

	cr_assert_eq(write(fd, s, len), (ssize_t)len);
}

/* Reads exactly n bytes (fails the test on EOF or timeout) into a static buffer. */
static const char *read_n(int fd, size_t n)
{
	static char buf[4096];
	size_t got = 0;

	cr_assert_lt(n, sizeof(buf));
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		cr_assert_gt(r, 0, "read after %zu of %zu bytes: %s", got, n, r ? strerror(errno) : "EOF");
		got += (size_t)r;
	}
	buf[n] = '\0';
	return buf;
}

static void expect_response(int fd)
{
	cr_assert_str_eq(read_n(fd, RESP_LEN), RESP);
}

static void expect_eof(int fd)
{
	char c;

	cr_assert_eq(read(fd, &c, 1), 0, "connection still open");
}

/* Waits until the demo's stderr holds at least n lines; returns them (malloc'd). */
static char *wait_lines(int n)
{
	long deadline = now_ms() + WAIT_MS;

	for (;;) {
		FILE *f = fopen(errpath, "r");
		char *text = NULL;
		size_t cap = 0;
		ssize_t len;
		int lines = 0;

		cr_assert_not_null(f);
		len = getdelim(&text, &cap, '\0', f);
		fclose(f);
		for (ssize_t i = 0; i < len; i++)
			lines += text[i] == '\n';
		if (lines >= n || now_ms() > deadline) {
			cr_assert_eq(lines, n, "stderr has %d lines, expected %d:\n%s", lines, n, len > 0 ? text : "");
			if (len > 0)
				return text;
			free(text);
			return strdup("");
		}
		free(text);
		sleep_ms(10);
	}
}

/* Returns the demo's stderr once it has exactly n lines and nothing follows. */
static char *settled_lines(int n)
{
	free(wait_lines(n));
	sleep_ms(150);
	return wait_lines(n);
}

/* Asserts that `line` is "completed <what> in N ms" with N in [lo, hi]. */
static void assert_completed(const char *line, const char *what, long lo, long hi)
{
	regex_t re;
	regmatch_t m[2];
	long ms;

	cr_assert_eq(regcomp(&re, "^completed (.*) in ([0-9]+) ms$", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, line, 2, m, 0), 0, "not a completed line: '%s'", line);
	regfree(&re);
	cr_assert_eq((size_t)(m[1].rm_eo - m[1].rm_so), strlen(what), "'%s'", line);
	cr_assert_eq(strncmp(line + m[1].rm_so, what, strlen(what)), 0, "'%s'", line);
	ms = atol(line + m[1].rm_eo + 4);
	cr_assert(ms >= lo && ms <= hi, "completed in %ld ms, expected %ld..%ld", ms, lo, hi);
}

/* Asserts that text's lines from `first` are the four lines of request `what`. */
static void assert_request_lines(char *text, int first, const char *what)
{
	char *lines[64], *save = NULL, want[256];
	int n = 0;

	for (char *l = strtok_r(text, "\n", &save); l && n < 64; l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	cr_assert_geq(n, first + 4);
	snprintf(want, sizeof(want), "incoming %s", what);
	cr_assert_str_eq(lines[first], want);
	snprintf(want, sizeof(want), "nested start %s", what);
	cr_assert_str_eq(lines[first + 1], want);
	snprintf(want, sizeof(want), "nested end %s", what);
	cr_assert_str_eq(lines[first + 2], want);
	assert_completed(lines[first + 3], what, 58, 3000);
}

/* Like assert_request_lines, for a fresh copy of text (strtok_r writes into it). */
static void assert_request_at(const char *text, int first, const char *what)
{
	char *copy = strdup(text);

	assert_request_lines(copy, first, what);
	free(copy);
}

/* Counts the lines of text that start with `start`. */
static int count_lines(const char *text, const char *start)
{
	int n = 0;

	for (const char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
		n += strncmp(l, start, strlen(start)) == 0;
	return n;
}

/* ---- the checks, run once per mode -------------------------------------- */

static void one_request_logs_four_exact_lines(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	send_str(fd, "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: t\r\n\r\n");
	expect_response(fd);
	text = settled_lines(4);
	assert_request_at(text, 0, "GET /a/b?x=1&y=%20z");
	free(text);
	close(fd);
}

static void keep_alive_serves_three_requests_on_one_connection(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	for (int i = 1; i <= 3; i++) {
		char req[128];

		snprintf(req, sizeof(req), "GET /k%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
		send_str(fd, req);
		expect_response(fd);
	}
	text = settled_lines(12);
	assert_request_at(text, 0, "GET /k1");
	assert_request_at(text, 4, "GET /k2");
	assert_request_at(text, 8, "GET /k3");
	free(text);
	close(fd);
}

static void header_split_across_two_writes_is_reassembled(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	send_str(fd, "GET /split HTTP/1.1\r\nHo");
	sleep_ms(50);
	send_str(fd, "st: t\r\nAccept: */*\r\n\r\n");
	expect_response(fd);
	text = settled_lines(4);
	assert_request_at(text, 0, "GET /split");
	free(text);
	close(fd);
}

static void two_pipelined_requests_are_answered_in_order(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	send_str(fd, "GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\nHost: t\r\n\r\n");
	cr_assert_str_eq(read_n(fd, 2 * RESP_LEN), RESP RESP);
	text = settled_lines(8);
	assert_request_at(text, 0, "GET /p1");
	assert_request_at(text, 4, "GET /p2");
	free(text);
	close(fd);
}

static void post_body_is_consumed_and_ignored(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	send_str(fd, "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 24\r\n\r\nGET /not-a-request");
	sleep_ms(30);
	send_str(fd, " HTTP\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n");
	cr_assert_str_eq(read_n(fd, 2 * RESP_LEN), RESP RESP);
	text = settled_lines(8);
	assert_request_at(text, 0, "POST /form");
	assert_request_at(text, 4, "GET /after");
	free(text);
	close(fd);
}

static void expect_100_continue_is_answered_before_the_body(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	send_str(fd, "PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
	cr_assert_str_eq(read_n(fd, strlen(CONTINUE)), CONTINUE);
	send_str(fd, "hello");
	expect_response(fd);
	text = settled_lines(4);
	assert_request_at(text, 0, "PUT /upload");
	free(text);
	close(fd);
}

static void connection_close_and_http10_close_after_the_response(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	send_str(fd, "GET /c1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	expect_response(fd);
	expect_eof(fd);
	close(fd);
	fd = connect_demo();
	send_str(fd, "GET /c2 HTTP/1.0\r\n\r\n");
	expect_response(fd);
	expect_eof(fd);
	close(fd);
	text = settled_lines(8);
	assert_request_at(text, 0, "GET /c1");
	assert_request_at(text, 4, "GET /c2");
	free(text);
}

static void bad_requests_get_an_error_and_are_not_logged(const char *mode)
{
	static char big[16384 + 1];
	const char *st;
	int fd;
	char *text;

	demo_start(mode);
	fd = connect_demo();
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "GET /big HTTP/1.1\r\nX-Big: ", 26);
	send_str(fd, big);
	st = read_n(fd, 12);
	cr_assert_str_eq(st, "HTTP/1.1 431");
	close(fd);
	fd = connect_demo();
	send_str(fd, "POST /ch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
	cr_assert_str_eq(read_n(fd, 12), "HTTP/1.1 411");
	close(fd);
	fd = connect_demo();
	send_str(fd, "NOT A REQUEST\r\n\r\n");
	cr_assert_str_eq(read_n(fd, 12), "HTTP/1.1 400");
	close(fd);
	text = settled_lines(0);
	free(text);
}

static void client_gone_mid_request_leaves_the_server_serving(const char *mode)
{
	int fd;
	char *text;

	demo_start(mode);
	for (int i = 0; i < 5; i++) {
		fd = connect_demo();
		send_str(fd, "GET /gone HTTP/1.1\r\nHost: t\r\n\r\n");
		close(fd);
	}
	fd = connect_demo();
	send_str(fd, "GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET /half HTTP/1.1\r\nHo");
	expect_response(fd);
	close(fd);
	/* The 6 requests served so far have logged their 4 lines each before /last starts. */
	free(wait_lines(24));
	fd = connect_demo();
	send_str(fd, "GET /last HTTP/1.1\r\nHost: t\r\n\r\n");
	expect_response(fd);
	close(fd);
	/* Each gone request is still served (its response just finds no reader). */
	text = settled_lines(28);
	cr_assert_eq(count_lines(text, "incoming GET /gone"), 5);
	cr_assert_eq(count_lines(text, "nested start GET /gone"), 5);
	cr_assert_eq(count_lines(text, "nested end GET /gone"), 5);
	cr_assert_eq(count_lines(text, "completed GET /gone in "), 5);
	cr_assert_eq(count_lines(text, "incoming GET /later"), 1);
	cr_assert_eq(count_lines(text, "completed GET /later in "), 1);
	cr_assert_eq(count_lines(text, "incoming GET /half"), 0);
	assert_request_at(text, 24, "GET /last");
	free(text);
}

/*
 * Runs argv (stderr to /dev/null), collects its stdout into out (NUL
 * terminated) and returns its wait status. Kills it after timeout_ms.
 */
static int run_capture(const char *const argv[], char *out, size_t cap, long timeout_ms)
{
	long deadline = now_ms() + timeout_ms;
	size_t len = 0;
	int p[2], st;
	pid_t pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		dup2(null, 2);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		n = read(p[0], out + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	close(p[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static const char *loadcheck_path(void)
{
	static char lc[512];

	snprintf(lc, sizeof(lc), "%s/progs/O0/loadcheck", build_dir());
	return lc;
}

/* Runs loadcheck against the demo and checks its exact summary and status. */
static void loadcheck_sees_every_line_unprefixed(const char *mode)
{
	char port[16], out[1024];
	int st;

	demo_start(mode);
	snprintf(port, sizeof(port), "%d", demo_port);
	const char *const argv[] = {
		loadcheck_path(), "--port", port, "--requests", "400", "--conns", "16", "--log", errpath,
		"--lines-per-request", "4", "--timeout-ms", "40000", NULL,
	};
	st = run_capture(argv, out, sizeof(out), 50000);
	cr_assert_str_eq(out, "requests=400 lines=1600 ok=0 wrong=0 unknown=0 unprefixed=1600 unlogged=0 "
			      "miscounted=0 no_echo=200 echo_mismatch=0 failed=0\n");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "loadcheck status %#x", st);
	st = demo_stop_status();
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "demo status %#x", st);
}

Test(cli, demo_help_names_every_mode_and_the_chunked_policy)
{
	char path[512], out[4096];
	int st;

	snprintf(path, sizeof(path), "%s/reqctx-demo", build_dir());
	st = run_capture((const char *const[]){ path, "--help", NULL }, out, sizeof(out), WAIT_MS);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	cr_assert_not_null(strstr(out, "usage: reqctx-demo [--port N] [--mode epoll|threads|pool|timer]"));
	cr_assert_not_null(strstr(out, "get 411"), "%s", out);
	st = run_capture((const char *const[]){ path, "--mode", "fibers", NULL }, out, sizeof(out), WAIT_MS);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %#x", st);
	st = run_capture((const char *const[]){ path, "--port", "70000", NULL }, out, sizeof(out), WAIT_MS);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %#x", st);
}

Test(cli, loadcheck_rejects_bad_usage_with_status_2)
{
	char out[1024];
	int st;

	st = run_capture((const char *const[]){ loadcheck_path(), NULL }, out, sizeof(out), WAIT_MS);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %#x", st);
	st = run_capture((const char *const[]){ loadcheck_path(), "--port", "1", "--requests", "1", "--conns", "1",
						"--log", "/dev/null", "--prefix", "[req] ", NULL },
			 out, sizeof(out), WAIT_MS);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %#x", st);
	cr_assert_str_eq(out, "");
}

Test(cli, loadcheck_counts_refused_connections_as_failed)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char port[16], out[1024];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), st;

	/* Bound but not listening: every connect is refused. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(port, sizeof(port), "%d", ntohs(sa.sin_port));
	st = run_capture((const char *const[]){ loadcheck_path(), "--port", port, "--requests", "5", "--conns", "2",
						"--log", "/dev/null", "--settle-ms", "0", NULL },
			 out, sizeof(out), WAIT_MS);
	close(fd);
	cr_assert_str_eq(out, "requests=5 lines=0 ok=0 wrong=0 unknown=0 unprefixed=0 unlogged=0 miscounted=0 "
			      "no_echo=0 echo_mismatch=0 failed=5\n");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
}

#define MODE_TESTS(m, tmo)                                                                           \
	Test(m, one_request_logs_four_exact_lines, .fini = demo_stop, .timeout = 20)                  \
	{                                                                                            \
		one_request_logs_four_exact_lines(#m);                                               \
	}                                                                                            \
	Test(m, keep_alive_serves_three_requests_on_one_connection, .fini = demo_stop, .timeout = 20) \
	{                                                                                            \
		keep_alive_serves_three_requests_on_one_connection(#m);                              \
	}                                                                                            \
	Test(m, header_split_across_two_writes_is_reassembled, .fini = demo_stop, .timeout = 20)      \
	{                                                                                            \
		header_split_across_two_writes_is_reassembled(#m);                                   \
	}                                                                                            \
	Test(m, two_pipelined_requests_are_answered_in_order, .fini = demo_stop, .timeout = 20)       \
	{                                                                                            \
		two_pipelined_requests_are_answered_in_order(#m);                                    \
	}                                                                                            \
	Test(m, post_body_is_consumed_and_ignored, .fini = demo_stop, .timeout = 20)                  \
	{                                                                                            \
		post_body_is_consumed_and_ignored(#m);                                               \
	}                                                                                            \
	Test(m, expect_100_continue_is_answered_before_the_body, .fini = demo_stop, .timeout = 20)    \
	{                                                                                            \
		expect_100_continue_is_answered_before_the_body(#m);                                 \
	}                                                                                            \
	Test(m, connection_close_and_http10_close_after_the_response, .fini = demo_stop,              \
	     .timeout = 20)                                                                          \
	{                                                                                            \
		connection_close_and_http10_close_after_the_response(#m);                            \
	}                                                                                            \
	Test(m, bad_requests_get_an_error_and_are_not_logged, .fini = demo_stop, .timeout = 20)       \
	{                                                                                            \
		bad_requests_get_an_error_and_are_not_logged(#m);                                    \
	}                                                                                            \
	Test(m, client_gone_mid_request_leaves_the_server_serving, .fini = demo_stop, .timeout = 20)  \
	{                                                                                            \
		client_gone_mid_request_leaves_the_server_serving(#m);                               \
	}                                                                                            \
	Test(m, loadcheck_sees_every_line_unprefixed, .fini = demo_stop, .timeout = tmo)              \
	{                                                                                            \
		loadcheck_sees_every_line_unprefixed(#m);                                            \
	}

MODE_TESTS(epoll, 60)
MODE_TESTS(threads, 60)
MODE_TESTS(pool, 90)
MODE_TESTS(timer, 60)
