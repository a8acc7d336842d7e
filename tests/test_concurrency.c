/*
 * The demo server under the library, in every mode: the seed's sanity check,
 * then 3000 requests over 32 keep-alive connections with every log line
 * checked against its request's ID by loadcheck.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <sys/socket.h>

#include "proc.h"

static const char *dir;
static pid_t demo = -1;
static char errlog[160];

static void setup(void)
{
	dir = tmpdir_new();
	snprintf(errlog, sizeof(errlog), "%s/demo.err", dir);
}

static void teardown(void)
{
	if (demo > 0) {
		kill(demo, SIGKILL);
		waitpid(demo, NULL, 0);
	}
	tmpdir_remove(dir);
}

TestSuite(concurrency, .init = setup, .fini = teardown, .timeout = 240);

/* Starts the demo under the library; returns its port. */
static int demo_start(const char *mode)
{
	char prog[256], out[160];
	char *argv[] = { prog, "--port", "0", "--mode", (char *)mode, NULL };
	long end = proc_now_ms() + 10000;

	snprintf(prog, sizeof(prog), "%s/reqctx-demo", bdir());
	snprintf(out, sizeof(out), "%s/demo.out", dir);
	demo = proc_start(argv, NULL, 1, out, errlog);
	for (;;) {
		char *s, *p;
		int port;

		if (access(out, R_OK) != 0) {
			cr_assert_lt(proc_now_ms(), end, "demo did not start");
			usleep(10000);
			continue;
		}
		s = slurp(out, NULL);
		p = strstr(s, "127.0.0.1:");
		if (p && strchr(p, '\n') && sscanf(p, "127.0.0.1:%d", &port) == 1) {
			cr_assert_eq(strncmp(s, "[req:unknown] listening on http://", 34), 0,
				     "start-up line: %s", s);
			free(s);
			return port;
		}
		free(s);
		cr_assert_lt(proc_now_ms(), end, "demo did not start");
		usleep(10000);
	}
}

static void demo_stop(void)
{
	kill(demo, SIGTERM);
	cr_assert_eq(proc_wait(demo, 10000), 0);
	demo = -1;
}

static void loadcheck(const char *mode)
{
	char prog[256], port[16], out[160];
	char *argv[] = { prog, "--port", port, "--requests", "3000", "--conns", "32",
			 "--log", errlog, "--lines-per-request", "4", "--timeout-ms", "150000",
			 NULL };
	char *summary;

	snprintf(port, sizeof(port), "%d", demo_start(mode));
	snprintf(prog, sizeof(prog), "%s/progs/O2/loadcheck", bdir());
	snprintf(out, sizeof(out), "%s/loadcheck.out", dir);
	cr_assert_eq(proc_wait(proc_start(argv, NULL, 0, out, NULL), 200000), 0);
	demo_stop();
	summary = slurp(out, NULL);
	cr_assert_str_eq(summary,
			 "requests=3000 lines=12000 ok=12000 wrong=0 unknown=0 unprefixed=0 "
			 "unlogged=0 miscounted=0 no_echo=0 echo_mismatch=0 failed=0\n");
}

Test(concurrency, epoll_mode_every_line_right)
{
	loadcheck("epoll");
}

Test(concurrency, threads_mode_every_line_right)
{
	loadcheck("threads");
}

Test(concurrency, pool_mode_every_line_right)
{
	loadcheck("pool");
}

Test(concurrency, timer_mode_every_line_right)
{
	loadcheck("timer");
}

/* The seed's sanity test, as the README's quick start runs it. */
static void get(int port, const char *extra, char *resp, size_t cap)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM, 0);
	char req[256];
	size_t have = 0;

	cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n",
		 extra);
	cr_assert_eq(send(s, req, strlen(req), 0), (ssize_t)strlen(req));
	for (;;) {
		ssize_t r = recv(s, resp + have, cap - have - 1, 0);

		cr_assert_geq(r, 0);
		if (r == 0)
			break;
		have += (size_t)r;
	}
	resp[have] = '\0';
	close(s);
}

static void match(const char *text, const char *pattern)
{
	regex_t re;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE), 0);
	cr_assert_eq(regexec(&re, text, 0, NULL, 0), 0, "%s\ndoes not match\n%s", text, pattern);
	regfree(&re);
}

Test(concurrency, seed_sanity_check)
{
	char resp[4096], *log;
	int port = demo_start("epoll");

	get(port, "", resp, sizeof(resp));
	match(resp, "^HTTP/1.1 200 OK\r\nX-Request-Id: "
		    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\r\n");
	cr_assert(strstr(resp, "\r\n\r\nok") != NULL);
	get(port, "x-request-id: abc123\r\n", resp, sizeof(resp));
	cr_assert_eq(strncmp(resp, "HTTP/1.1 200 OK\r\nX-Request-Id: abc123\r\n", 39), 0, "%s", resp);
	usleep(100000);
	demo_stop();
	log = slurp(errlog, NULL);
	match(log, "^\\[req:([0-9a-f-]{36})\\] incoming GET /\n"
		   "\\[req:\\1\\] nested start GET /\n"
		   "\\[req:\\1\\] nested end GET /\n"
		   "\\[req:\\1\\] completed GET / in [0-9]+ ms\n"
		   "\\[req:abc123\\] incoming GET /\n"
		   "\\[req:abc123\\] nested start GET /\n"
		   "\\[req:abc123\\] nested end GET /\n"
		   "\\[req:abc123\\] completed GET / in [0-9]+ ms\n$");
}
