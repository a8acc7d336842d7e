/*
 * Interposition: a one-thread event loop (tests/progs/evloop.c) serves
 * several keep-alive connections at once under the library, with epoll, poll
 * or select, and a hop through an eventfd, a pipe or a timerfd per request.
 * Its handlers log before any system call on their fd; every line must carry
 * exactly the ID of the request it names.
 *
 * Then host safety (tests/progs/evsafe.c), and how many events each wait
 * returns next to what the kernel reported (tests/progs/evbatch.c).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "evq.h"
#include "proc.h"

#define CONNS  6
#define ROUNDS 8

static char err_path[128], port_path[128];
static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
	snprintf(err_path, sizeof(err_path), "%s/err", dir);
	snprintf(port_path, sizeof(port_path), "%s/port", dir);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(epoll, .init = setup, .fini = teardown, .timeout = 60);

static int read_port(void)
{
	long end = proc_now_ms() + 10000;

	while (proc_now_ms() < end) {
		FILE *f = fopen(port_path, "r");
		int port = 0;

		if (f) {
			int ok = fscanf(f, "%d", &port) == 1;

			fclose(f);
			if (ok && port > 0)
				return port;
		}
		usleep(5000);
	}
	cr_assert_fail("the server wrote no port");
	return 0;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Reads one response; checks its body is `path` and, if `echo`, its echoed ID is `id`. */
static void expect_response(int fd, const char *path, const char *id, int echo)
{
	char buf[2048], want[256];
	size_t have = 0;
	char *end = NULL;
	long len = -1;

	while (!end || have < (size_t)(end + 4 - buf) + (size_t)len) {
		ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);

		cr_assert_gt(r, 0, "response for %s cut short", path);
		have += (size_t)r;
		buf[have] = '\0';
		if (!end && (end = strstr(buf, "\r\n\r\n"))) {
			char *cl = strstr(buf, "Content-Length: ");

			cr_assert_not_null(cl);
			len = strtol(cl + 16, NULL, 10);
		}
	}
	cr_assert_eq(have, (size_t)(end + 4 - buf) + (size_t)len, "extra bytes after %s", path);
	cr_assert_str_eq(end + 4, path);
	snprintf(want, sizeof(want), "\r\nX-Request-Id: %s\r\n", id);
	if (echo)
		cr_assert(strstr(buf, want), "no echoed ID in: %s", buf);
	else
		cr_assert_null(strstr(buf, "X-Request-Id"));
}

/* Each round sends one request on every connection, in a different order, then reads them. */
static void drive(int port, int echo)
{
	int fds[CONNS];

	for (int c = 0; c < CONNS; c++)
		fds[c] = dial(port);
	for (int r = 0; r < ROUNDS; r++) {
		for (int k = 0; k < CONNS; k++) {
			int c = r % 2 ? (k + r) % CONNS : CONNS - 1 - (k + r) % CONNS;
			char req[256];
			int n = snprintf(req, sizeof(req),
					 "GET /c%d-r%d HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-c%d-r%d\r\n\r\n",
					 c, r, c, r);

			cr_assert_eq(write(fds[c], req, (size_t)n), n);
		}
		for (int c = 0; c < CONNS; c++) {
			char path[64], id[64];

			snprintf(path, sizeof(path), "/c%d-r%d", c, r);
			snprintf(id, sizeof(id), "rid-c%d-r%d", c, r);
			expect_response(fds[c], path, id, echo);
		}
	}
	for (int c = 0; c < CONNS; c++)
		close(fds[c]);
}

/*
 * Every stderr line is "[req:ID] WHAT", and ID is the one of the request
 * WHAT names ("unknown" for a connection with no request yet). Counts each
 * kind of line: each request is got, hopped and responded exactly once.
 */
static void check_log(const char *log)
{
	static const char *const kinds[] = { "got ", "hop ", "respond ", "event for " };
	int counts[4] = { 0 }, fresh = 0, lines = 0;
	char seen[4][CONNS][ROUNDS] = { { { 0 } } };

	for (const char *l = log; *l; lines++) {
		const char *nl = strchr(l, '\n'), *close_br, *what;
		char id[160], want[160];
		int k, c, r;

		cr_assert_not_null(nl, "unterminated line: %s", l);
		cr_assert_eq(strncmp(l, "[req:", 5), 0, "unprefixed: %.*s", (int)(nl - l), l);
		close_br = strstr(l, "] ");
		cr_assert(close_br && close_br < nl, "bad prefix: %.*s", (int)(nl - l), l);
		snprintf(id, sizeof(id), "%.*s", (int)(close_br - l - 5), l + 5);
		what = close_br + 2;
		if (!strncmp(what, "event on a new connection\n", 26)) {
			cr_assert_str_eq(id, "unknown");
			fresh++;
			l = nl + 1;
			continue;
		}
		for (k = 0; k < 4 && strncmp(what, kinds[k], strlen(kinds[k])); k++)
			;
		cr_assert_lt(k, 4, "unexpected line: %.*s", (int)(nl - l), l);
		cr_assert_eq(sscanf(what + strlen(kinds[k]), "/c%d-r%d", &c, &r), 2);
		cr_assert(c >= 0 && c < CONNS && r >= 0 && r < ROUNDS);
		snprintf(want, sizeof(want), "rid-c%d-r%d", c, r);
		cr_assert_str_eq(id, want, "line %d: %.*s", lines, (int)(nl - l), l);
		counts[k]++;
		seen[k][c][r]++;
		l = nl + 1;
	}
	cr_assert_eq(fresh, CONNS);
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(counts[k], CONNS * ROUNDS, "%s lines: %d", kinds[k], counts[k]);
		for (int c = 0; c < CONNS; c++)
			for (int r = 0; r < ROUNDS; r++)
				cr_assert_eq(seen[k][c][r], 1, "%s/c%d-r%d", kinds[k], c, r);
	}
	/* Requests 2..ROUNDS of each connection, and its end of stream, follow a request. */
	cr_assert_eq(counts[3], CONNS * ROUNDS);
}

static void run_case(const char *variant, const char *mode, const char *hop)
{
	char prog[256], nreq[16];
	char *argv[] = { prog, (char *)mode, (char *)hop, port_path, nreq, NULL };
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/progs/%s/evloop", bdir(), variant);
	snprintf(nreq, sizeof(nreq), "%d", CONNS * ROUNDS);
	pid = proc_start(argv, NULL, 1, NULL, err_path);
	drive(read_port(), 1);
	cr_assert_eq(proc_wait(pid, 20000), 0, "stderr:\n%s", slurp(err_path, NULL));
	check_log(slurp(err_path, NULL));
}

Test(epoll, epoll_loop_with_eventfd_hops_logs_every_line_in_its_request)
{
	run_case("O0", "epoll", "eventfd");
}

Test(epoll, epoll_loop_with_pipe_hops_logs_every_line_in_its_request)
{
	run_case("O0", "epoll", "pipe");
}

Test(epoll, epoll_loop_with_timerfd_hops_logs_every_line_in_its_request)
{
	run_case("O0", "epoll", "timerfd");
}

Test(epoll, epoll_loop_built_at_O2_fortified)
{
	run_case("O2", "epoll", "eventfd");
}

Test(epoll, poll_loop_with_eventfd_hops_logs_every_line_in_its_request)
{
	run_case("O0", "poll", "eventfd");
}

Test(epoll, poll_loop_built_at_O2_fortified_uses_poll_chk)
{
	run_case("O2", "poll", "pipe");
}

Test(epoll, select_loop_with_pipe_hops_logs_every_line_in_its_request)
{
	run_case("O0", "select", "pipe");
}

Test(epoll, select_loop_with_timerfd_hops_logs_every_line_in_its_request)
{
	run_case("O0", "select", "timerfd");
}

/*
 * Without the library the same loop serves the same requests: the helper
 * itself is correct, and the checks above are about the library.
 */
Test(epoll, the_loop_serves_the_same_requests_without_the_library)
{
	char prog[256], nreq[16];
	char *argv[] = { prog, "epoll", "eventfd", port_path, nreq, NULL };
	char *log;
	int got = 0;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/progs/O0/evloop", bdir());
	snprintf(nreq, sizeof(nreq), "%d", CONNS * ROUNDS);
	pid = proc_start(argv, NULL, 0, NULL, err_path);
	drive(read_port(), 0);
	cr_assert_eq(proc_wait(pid, 20000), 0);
	log = slurp(err_path, NULL);
	cr_assert_null(strstr(log, "[req:"));
	for (char *p = log; (p = strstr(p, "\ngot /")); p++)
		got++;
	cr_assert_eq(got + !strncmp(log, "got /", 5), CONNS * ROUNDS);
}

/* Every return value and errno of the family is the kernel's, under the library or not. */
Test(epoll, returns_and_errno_are_libc_s_and_no_event_is_lost_or_repeated)
{
	char prog[256], rep0[160], rep1[160];
	char *argv0[] = { prog, rep0, NULL }, *argv1[] = { prog, rep1, NULL };
	char *plain;

	snprintf(prog, sizeof(prog), "%s/progs/O0/evcalls", bdir());
	snprintf(rep0, sizeof(rep0), "%s/rep0", dir);
	snprintf(rep1, sizeof(rep1), "%s/rep1", dir);
	cr_assert_eq(proc_run(argv0, NULL, 0, NULL, NULL), 0);
	cr_assert_eq(proc_run(argv1, NULL, 1, NULL, NULL), 0);
	plain = slurp(rep0, NULL);
	cr_assert_str_eq(slurp(rep1, NULL), plain);
	cr_assert(strstr(plain, "epoll_wait: events=3 sum=303 last=0\n"));
	cr_assert(strstr(plain, "epoll_pwait: events=3 sum=603 last=0\n"));
	cr_assert(strstr(plain, "epoll_pwait2: events=3 sum=903 last=0\n"));
	cr_assert(strstr(plain, "ctl NULL event: r=-1 errno=Bad address\n"));
	cr_assert(strstr(plain, "errno kept: r=0 errno=-\n"));
}

/* ---- host safety: epoll fds and registrations reqctx cannot fully see ---- */

/*
 * Runs `evsafe CASE` (tests/progs/evsafe.c) without and with the library:
 * both exit 0 (not killed by the helper's alarm() watchdog, which a wait
 * that never returns would set off) and write the same report, every event
 * with the host's own data. Returns the plain report.
 */
static char *safe_case(const char *c)
{
	char prog[256], rep0[160], rep1[160], *plain;
	char *argv0[] = { prog, (char *)c, rep0, NULL }, *argv1[] = { prog, (char *)c, rep1, NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O0/evsafe", bdir());
	snprintf(rep0, sizeof(rep0), "%s/safe0", dir);
	snprintf(rep1, sizeof(rep1), "%s/safe1", dir);
	cr_assert_eq(proc_run(argv0, NULL, 0, NULL, NULL), 0, "plain run of %s", c);
	cr_assert_eq(proc_run(argv1, NULL, 1, NULL, NULL), 0, "%s under the library (142: hung)", c);
	plain = slurp(rep0, NULL);
	cr_assert_str_eq(slurp(rep1, NULL), plain, "%s", c);
	return plain;
}

Test(epoll, a_registration_made_through_a_dup_of_the_epoll_fd_comes_back_with_the_host_s_data)
{
	char *p = safe_case("dup-add");

	cr_assert(strstr(p, "wait on epfd: n=1 0x7f3a12345678\n"));
	cr_assert(strstr(p, "both one-shot, through the alias: 2 events 0x7f3a12345678 0x7f3a87654320\n"));
}

Test(epoll, dup2_dup3_and_F_DUPFD_CLOEXEC_of_an_epoll_fd_share_its_registrations)
{
	const char *hows[] = { "dup2", "dup3", "fdupfd" };

	for (int i = 0; i < 3; i++)
		cr_assert(strstr(safe_case(hows[i]), "wait on the alias: n=1 0x7f3a12345678\n"));
}

Test(epoll, waiting_on_a_dup_gives_the_host_s_data_not_reqctx_s_value)
{
	cr_assert(strstr(safe_case("dup-wait"), "wait on the dup: n=1 0x7f3a12345678\n"));
}

Test(epoll, closing_one_alias_of_an_epoll_fd_leaves_the_others_working)
{
	char *p = safe_case("dup-close");

	cr_assert(strstr(p, "after closing epfd, on its dup: 2 events 0x7f3a12345678 0x7f3a87654320\n"));
	cr_assert(strstr(p, "after closing that too, on the next dup: 1 events 0x6\n"));
}

Test(epoll, an_event_registered_by_a_raw_syscall_comes_back_exactly_as_the_kernel_gave_it)
{
	char *p = safe_case("raw-ctl");

	cr_assert(strstr(p, "raw ADD: n=1 0x7f3a12345678\n"));
	cr_assert(strstr(p, "raw level-triggered again: n=1 0x7f3a12345678\n"));
}

Test(epoll, an_epoll_fd_made_outside_the_library_is_left_alone)
{
	cr_assert(strstr(safe_case("early"), "its dup: n=1 0x7f3a87654320\n"));
}

Test(epoll, host_values_shaped_like_reqctx_s_own_come_back_unchanged)
{
	char *p = safe_case("lookalike");

	cr_assert(strstr(p, "old-style value: unchanged\nanother number: unchanged\n"));
}

Test(epoll, a_dup_made_by_a_raw_syscall_still_gets_the_host_s_data)
{
	char *p = safe_case("raw-dup");

	cr_assert(strstr(p, "wait on the raw dup: n=1 0x7f3a12345678\n"));
	cr_assert(strstr(p, "wait on epfd: n=1 0x7f3a87654320\n"));
}

Test(epoll, an_epoll_fd_received_over_a_socket_gets_the_host_s_data)
{
	char *p = safe_case("scm");

	cr_assert(strstr(p, "wait on the received epoll fd: n=1 0x7f3a12345678\n"));
	cr_assert(strstr(p, "the original closed: n=1 0x6\n"));
}

Test(epoll, a_forked_child_registers_on_the_inherited_epoll_fd_and_both_see_its_data)
{
	char *p = safe_case("fork");

	cr_assert(strstr(p, "parent: the child's registration: n=1 0x7f3a87654320\n"));
	cr_assert(strstr(p, "child status 0\n"));
}

Test(epoll, pre_fork_workers_wait_and_re_arm_on_the_parent_s_epoll_fd)
{
	char *p = safe_case("prefork");

	cr_assert(strstr(p, "worker 1: n=1 0x7f3a87654320\n"));
	cr_assert(strstr(p, "parent: n=1 0x6\n"));
}

Test(epoll, a_registration_modified_during_every_wait_never_loses_or_forges_an_event)
{
	cr_assert(strstr(safe_case("mod-race"), "2000 waits: each one event or none, host data\n"));
}

/* ---- one wait, one loop iteration: what each wait returns (tests/progs/evbatch.c) ---- */

#define BCONN   8 /* evbatch's NCONN */
#define BROUNDS 7
#define WARMUP  ((RQ_EVQ_LEARN + 2 * BCONN - 1) / (2 * BCONN)) /* rounds in split mode */

struct bwait {
	int round, kernel, got;
};

static struct bwait bwaits[4096];
static int nbwaits;

/* Runs evbatch; parses its report into bwaits. Returns its stderr. */
static char *run_batch(const char *mode, const char *order, const char *loop, int preload)
{
	char prog[256], rounds[8], rep[160], envloop[64], *r, *line;
	char *argv[] = { prog, (char *)mode, (char *)order, rounds, rep, NULL };
	const char *env[] = { "REQCTX_LOG_FDS=1,2", envloop, NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O2/evbatch", bdir());
	snprintf(rounds, sizeof(rounds), "%d", BROUNDS);
	snprintf(rep, sizeof(rep), "%s/batch", dir);
	snprintf(envloop, sizeof(envloop), "REQCTX_LOOP=%s", loop);
	cr_assert_eq(proc_run(argv, env, preload, NULL, err_path), 0, "stderr:\n%s", slurp(err_path, NULL));
	r = slurp(rep, NULL);
	nbwaits = 0;
	for (line = strtok(r, "\n"); line && nbwaits < 4096; line = strtok(NULL, "\n")) {
		struct bwait *w = &bwaits[nbwaits++];

		cr_assert_eq(sscanf(line, "%d %d %d", &w->round, &w->kernel, &w->got), 3);
	}
	return slurp(err_path, NULL);
}

/* Every wait of rounds [from, to) returned exactly what the kernel reported, in 2 waits a round. */
static void expect_batched(int from, int to)
{
	int per[BROUNDS] = { 0 };

	for (int i = 0; i < nbwaits; i++) {
		const struct bwait *w = &bwaits[i];

		if (w->round < from || w->round >= to)
			continue;
		per[w->round]++;
		cr_assert_eq(w->got, w->kernel, "round %d: the kernel had %d, the wait returned %d",
			     w->round, w->kernel, w->got);
		cr_assert_eq(w->got, BCONN);
	}
	for (int r = from; r < to; r++)
		cr_assert_eq(per[r], 2, "round %d took %d waits", r, per[r]);
}

/* Every wait of rounds [from, to) returned one event, in 2 * BCONN waits a round. */
static void expect_split(int from, int to)
{
	int per[BROUNDS] = { 0 };

	for (int i = 0; i < nbwaits; i++) {
		const struct bwait *w = &bwaits[i];

		if (w->round < from || w->round >= to)
			continue;
		per[w->round]++;
		cr_assert_eq(w->got, 1, "round %d: a wait returned %d", w->round, w->got);
	}
	for (int r = from; r < to; r++)
		cr_assert_eq(per[r], 2 * BCONN, "round %d took %d waits", r, per[r]);
}

/*
 * evbatch's log: every line is "[req:ID] WHAT /cC-rR" with ID rid-cC-rR, or
 * "[req:unknown] event on a new connection"; each request is got, hopped and
 * responded once. A line that breaks the rule counts as lost if it carries
 * exactly the ID of the line before it; returns how many did (any other
 * wrong line fails).
 */
static int check_batch_log(const char *log, int log_first)
{
	static const char *const kinds[] = { "got ", "hop ", "respond ", "event for " };
	int counts[4] = { 0 }, fresh = 0, lost = 0;
	char prev[160] = "";

	for (const char *l = log; *l;) {
		const char *nl = strchr(l, '\n'), *br, *what;
		char id[160], want[160];
		int k, c, r;

		cr_assert_not_null(nl);
		cr_assert_eq(strncmp(l, "[req:", 5), 0, "unprefixed: %.*s", (int)(nl - l), l);
		br = strstr(l, "] ");
		cr_assert(br && br < nl);
		snprintf(id, sizeof(id), "%.*s", (int)(br - l - 5), l + 5);
		what = br + 2;
		if (!strncmp(what, "event on a new connection\n", 26)) {
			snprintf(want, sizeof(want), "unknown");
			fresh++;
		} else {
			for (k = 0; k < 4 && strncmp(what, kinds[k], strlen(kinds[k])); k++)
				;
			cr_assert_lt(k, 4, "unexpected line: %.*s", (int)(nl - l), l);
			cr_assert_eq(sscanf(what + strlen(kinds[k]), "/c%d-r%d", &c, &r), 2);
			snprintf(want, sizeof(want), "rid-c%d-r%d", c, r);
			counts[k]++;
		}
		if (strcmp(id, want)) {
			cr_assert_str_eq(id, prev, "neither its own nor the previous line's ID: %.*s",
					 (int)(nl - l), l);
			lost++;
		}
		snprintf(prev, sizeof(prev), "%s", id);
		l = nl + 1;
	}
	for (int k = 0; k < 3; k++)
		cr_assert_eq(counts[k], BCONN * BROUNDS, "%s lines: %d", kinds[k], counts[k]);
	cr_assert_eq(counts[3], log_first ? BCONN * (BROUNDS - 1) : 0);
	cr_assert_eq(fresh, log_first ? BCONN : 0);
	return lost;
}

static void touch_first_turns_to_batch(const char *mode)
{
	char *log = run_batch(mode, "touch", "auto", 1);

	expect_split(0, WARMUP);
	expect_batched(WARMUP, BROUNDS);
	cr_assert_eq(check_batch_log(log, 0), 0);
}

/*
 * A loop whose handlers read their fd before logging: after its warm-up
 * (RQ_EVQ_LEARN callbacks, WARMUP rounds here) each epoll_wait returns
 * exactly as many events as the kernel reported, each round takes the two
 * waits it takes without the library, and every line keeps its ID.
 */
Test(epoll, after_the_warm_up_each_epoll_wait_returns_as_many_events_as_the_kernel_reported)
{
	touch_first_turns_to_batch("epoll");
}

Test(epoll, after_the_warm_up_each_poll_returns_as_many_ready_fds_as_the_kernel_reported)
{
	touch_first_turns_to_batch("poll");
}

Test(epoll, after_the_warm_up_each_select_returns_as_many_ready_fds_as_the_kernel_reported)
{
	touch_first_turns_to_batch("select");
}

Test(epoll, a_touch_first_loop_s_lines_are_all_right_in_batch_mode_from_the_start)
{
	const char *modes[] = { "epoll", "poll", "select" };

	for (int i = 0; i < 3; i++) {
		char *log = run_batch(modes[i], "touch", "batch", 1);

		expect_batched(0, BROUNDS);
		cr_assert_eq(check_batch_log(log, 0), 0, "%s", modes[i]);
	}
}

Test(epoll, a_log_first_loop_stays_split_and_every_line_is_right)
{
	const char *modes[] = { "epoll", "poll", "select" };

	for (int i = 0; i < 3; i++) {
		char *log = run_batch(modes[i], "log", "auto", 1);

		expect_split(0, BROUNDS);
		cr_assert_eq(check_batch_log(log, 1), 0, "%s", modes[i]);
	}
}

Test(epoll, REQCTX_LOOP_split_keeps_a_touch_first_loop_at_one_event_per_call)
{
	char *log = run_batch("epoll", "touch", "split", 1);

	expect_split(0, BROUNDS);
	cr_assert_eq(check_batch_log(log, 0), 0);
}

/*
 * What batch mode costs a loop that logs before touching its fd (README):
 * in each batch, every callback after the first logs its first line in the
 * previous callback's context, 2 * (BCONN - 1) lines a round.
 */
Test(epoll, forced_batch_mode_gives_a_log_first_callback_the_previous_callback_s_id)
{
	char *log = run_batch("epoll", "log", "batch", 1);

	expect_batched(0, BROUNDS);
	cr_assert_eq(check_batch_log(log, 1), 2 * (BCONN - 1) * BROUNDS);
}

Test(epoll, without_the_library_each_wait_returns_what_the_kernel_reported)
{
	char *log = run_batch("epoll", "touch", "auto", 0);

	expect_batched(0, BROUNDS);
	cr_assert_null(strstr(log, "[req:"));
}
