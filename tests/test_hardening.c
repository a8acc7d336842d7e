/*
 * Hardening: children, signals, hostile descriptor handling, hostile clients,
 * churn and the documented limits. Every case runs helper programs from
 * tests/progs/hard_*.c with LD_PRELOAD in their own environment only, and
 * checks exact bytes, counts and statuses, usually beside a run without the
 * library.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "fdtab.h"
#include "proc.h"

static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(hardening, .init = setup, .fini = teardown, .timeout = 120);

/* Paths, on the heap: each test is its own process, so they are never freed. */
static const char *tpath(const char *name)
{
	char *b;

	cr_assert_gt(asprintf(&b, "%s/%s", dir, name), 0);
	return b;
}

static const char *prog(const char *variant, const char *name)
{
	char *b;

	cr_assert_gt(asprintf(&b, "%s/progs/%s/%s", bdir(), variant, name), 0);
	return b;
}

static const char *repo(const char *rel)
{
	char *b;

	cr_assert_gt(asprintf(&b, "%s/../%s", bdir(), rel), 0);
	return b;
}

static void sh(const char *cmd)
{
	cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
}

/* Asserts the file holds exactly the n bytes of want. */
static void file_eq(const char *path, const char *want, size_t n)
{
	size_t got_n;
	char *got = slurp(path, &got_n);

	cr_assert_eq(got_n, n, "%s: %zu bytes, want %zu\n--- got ---\n%.2000s", path, got_n, n,
		     got);
	cr_assert_eq(memcmp(got, want, n), 0, "%s differs\n--- got ---\n%.2000s\n--- want ---\n%.2000s",
		     path, got, want);
	free(got);
}

static void file_is(const char *path, const char *want)
{
	file_eq(path, want, strlen(want));
}

/* ---- 1. children ---- */

/*
 * A CGI-style child (`hard_child emit`) writes binary bytes and lines to its
 * stdout, a pipe back to its preloaded parent, which copies them to a file.
 * They must arrive exactly as the child wrote them: in a child only stderr
 * is a log (README, "Which streams are logs"). The child was started in its
 * parent's request, so its stderr line carries that request's ID (the ID
 * travels through exec as REQCTX_PARENT_ID).
 */
static void cgi_case(const char *how)
{
	char *emit[] = { (char *)prog("O0", "hard_child"), "emit", NULL };
	char *argv[] = { (char *)prog("O2", "hard_child"), "cgi", (char *)how,
			 (char *)tpath("copy"), NULL };
	char want_err[256], *ref;
	size_t ref_n;

	cr_assert_eq(proc_run(emit, NULL, 0, tpath("ref"), NULL), 0);
	ref = slurp(tpath("ref"), &ref_n);
	cr_assert_gt(ref_n, 2000);
	cr_assert_eq(ref[0], '\0'); /* binary bytes first */

	cr_assert_eq(proc_run(argv, NULL, 1, tpath("out"), tpath("err")), 0);
	file_eq(tpath("copy"), ref, ref_n);
	snprintf(want_err, sizeof(want_err),
		 "[req:parent-req] child err id=parent-req\n"
		 "[req:parent-req] parent %s status=0 id=parent-req\n", how);
	file_is(tpath("err"), want_err);
	/* What the child did to its fds before exec did not touch the parent's logs. */
	file_is(tpath("out"), "[req:parent-req] parent out\n");
	file_is(tpath("copy.log"), "[req:parent-req] before child\n[req:parent-req] after child\n");
	unlink(tpath("copy.log"));

	cr_assert_eq(proc_run(argv, NULL, 0, tpath("out"), tpath("err")), 0);
	file_eq(tpath("copy"), ref, ref_n);
	snprintf(want_err, sizeof(want_err), "child err id=none\nparent %s status=0 id=none\n", how);
	file_is(tpath("err"), want_err);
	file_is(tpath("out"), "parent out\n");
	file_is(tpath("copy.log"), "before child\nafter child\n");
	free(ref);
}

Test(hardening, cgi_child_of_fork_exec_passes_its_stdout_through_unchanged)
{
	cgi_case("fork");
}

Test(hardening, cgi_child_of_vfork_exec_passes_its_stdout_through_unchanged)
{
	cgi_case("vfork");
}

Test(hardening, cgi_child_of_posix_spawn_passes_its_stdout_through_unchanged)
{
	cgi_case("spawn");
}

Test(hardening, cgi_child_of_system_passes_its_stdout_through_unchanged)
{
	cgi_case("system");
}

Test(hardening, cgi_child_of_popen_passes_its_stdout_through_unchanged)
{
	cgi_case("popen");
}

/*
 * REQCTX_CHILD_LOG_FDS is what decides: naming fd 1 makes the child's stdout a
 * log, whose lines carry the request the child was started in.
 */
Test(hardening, child_log_fds_setting_makes_a_child_stdout_a_log)
{
	static const char *const env[] = { "REQCTX_CHILD_LOG_FDS=1,2", NULL };
	char *emit[] = { (char *)prog("O0", "hard_child"), "emit", NULL };
	char *argv[] = { (char *)prog("O0", "hard_child"), "cgi", "fork", (char *)tpath("copy"),
			 NULL };
	char *ref, *want;
	size_t ref_n, n = 0;

	cr_assert_eq(proc_run(emit, NULL, 0, tpath("ref"), NULL), 0);
	ref = slurp(tpath("ref"), &ref_n);
	want = malloc(ref_n * 16 + 64);
	for (size_t i = 0; i < ref_n; i++) {
		if (i == 0 || ref[i - 1] == '\n')
			n += (size_t)sprintf(want + n, "[req:parent-req] ");
		want[n++] = ref[i];
	}
	cr_assert_eq(proc_run(argv, env, 1, NULL, tpath("err")), 0);
	file_eq(tpath("copy"), want, n);
	free(want);
	free(ref);
}

/* fork without exec: the child is the same program, with the parent's context and logs. */
Test(hardening, forked_child_keeps_the_parent_context_and_log_streams)
{
	char *argv[] = { (char *)prog("O0", "hard_child"), "forked", NULL };

	cr_assert_eq(proc_run(argv, NULL, 1, tpath("out"), tpath("err")), 0);
	file_is(tpath("out"), "[req:fk1] forked child out id=fk1\n");
	file_is(tpath("err"), "[req:fk1] forked child err id=fk1\n[req:fk1] parent status=0 id=fk1\n");
	cr_assert_eq(proc_run(argv, NULL, 0, tpath("out"), tpath("err")), 0);
	file_is(tpath("out"), "forked child out id=none\n");
	file_is(tpath("err"), "forked child err id=none\nparent status=0 id=none\n");
}

/* ---- 2. signals ---- */

/*
 * SIGALRM every 100 us; its handler write()s "sig\n" to stderr while the main
 * thread writes whole lines there (with write, or fprintf), so handlers land
 * inside the wrapped calls. Afterwards every line is whole and carries its
 * prefix, the main lines are all there in order, and there is one handler
 * line per handler run the program counted.
 */
static void flood_case(const char *variant, const char *how, int preload)
{
	const int n = 30000;
	char *argv[] = { (char *)prog(variant, "hard_sig"), "flood", (char *)how, "30000",
			 (char *)tpath("rep"), NULL };
	const char *pfx = preload ? "[req:unknown] " : "";
	size_t plen = strlen(pfx), len;
	int handled = -1, mains = 0, sigs = 0;
	char *err, *p, *rep;

	cr_assert_eq(proc_run(argv, NULL, preload, NULL, tpath("err")), 0);
	rep = slurp(tpath("rep"), NULL);
	cr_assert_eq(sscanf(rep, "handled=%d", &handled), 1);
	cr_assert_gt(handled, 100, "only %d signals arrived", handled);
	err = slurp(tpath("err"), &len);
	for (p = err; p < err + len;) {
		char want[128];

		cr_assert_eq(strncmp(p, pfx, plen), 0, "line without its prefix at byte %zu: %.80s",
			     (size_t)(p - err), p);
		p += plen;
		if (!strncmp(p, "sig\n", 4)) {
			sigs++;
			p += 4;
			continue;
		}
		snprintf(want, sizeof(want),
			 "main line %06d ........................................\n", mains);
		cr_assert_eq(strncmp(p, want, strlen(want)), 0, "byte %zu: want %s got %.80s",
			     (size_t)(p - err), want, p);
		p += strlen(want);
		mains++;
	}
	cr_assert_eq(mains, n);
	cr_assert_eq(sigs, handled);
	cr_assert_eq(len, (size_t)n * (plen + 58) + (size_t)sigs * (plen + 4));
	free(err);
	free(rep);
}

Test(hardening, signal_handler_writing_during_write_loses_no_byte)
{
	flood_case("O2", "write", 1);
	flood_case("O2", "write", 0);
}

Test(hardening, signal_handler_writing_during_fprintf_loses_no_byte)
{
	flood_case("O0", "printf", 1);
	flood_case("O2", "printf", 1);
	flood_case("O2", "printf", 0);
}

/*
 * A blocking read (pipe) and recv (socketpair) interrupted by a handler: -1
 * with EINTR when it was installed without SA_RESTART, restarted (and the
 * byte read later) with it; the same with and without the library.
 */
static void eintr_case(const char *flags, const char *want)
{
	char *argv[] = { (char *)prog("O0", "hard_sig"), "eintr", (char *)flags,
			 (char *)tpath("rep"), NULL };

	cr_assert_eq(proc_run(argv, NULL, 0, NULL, NULL), 0);
	file_is(tpath("rep"), want);
	cr_assert_eq(proc_run(argv, NULL, 1, NULL, NULL), 0);
	file_is(tpath("rep"), want);
}

Test(hardening, eintr_without_sa_restart_is_libc_s)
{
	eintr_case("norestart",
		   "read: r=-1 errno=Interrupted system call byte=- handled=1\n"
		   "recv: r=-1 errno=Interrupted system call byte=- handled=1\n");
}

Test(hardening, sa_restart_restarts_as_in_libc)
{
	eintr_case("restart", "read: r=1 errno=- byte=x handled=1\n"
			      "recv: r=1 errno=- byte=x handled=1\n");
}

/* ---- 3. hostile descriptor handling ---- */

static int wait_port(const char *portfile, pid_t pid)
{
	long end = proc_now_ms() + 10000;
	int port = 0;

	while (proc_now_ms() < end) {
		FILE *f = fopen(portfile, "r");
		int st;

		if (f && fscanf(f, "%d", &port) == 1) {
			fclose(f);
			return port;
		}
		if (f)
			fclose(f);
		cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "server exited early (status %d)", st);
		usleep(2000);
	}
	cr_assert_fail("no port in %s", portfile);
	return 0;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(s, 0);
	cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	return s;
}

static void send_all(int s, const char *p, size_t n)
{
	while (n) {
		ssize_t r = send(s, p, n, MSG_NOSIGNAL);

		cr_assert_gt(r, 0, "send: %s", strerror(errno));
		p += r;
		n -= (size_t)r;
	}
}

/* Reads until EOF; returns a heap buffer (NUL-terminated) and its length. */
static char *recv_all(int s, size_t *len)
{
	size_t n = 0, cap = 4096;
	char *b = malloc(cap);
	ssize_t r;

	while ((r = recv(s, b + n, cap - n - 1, 0)) > 0) {
		n += (size_t)r;
		if (cap - n < 2048)
			b = realloc(b, cap *= 2);
	}
	cr_assert_eq(r, 0, "recv: %s", strerror(errno));
	b[n] = '\0';
	*len = n;
	return b;
}

/* One request to hard_fds: "GET /p" with X-Request-Id cl1; the exact response. */
static void one_request(int port)
{
	static const char req[] = "GET /p HTTP/1.1\r\nHost: x\r\nX-Request-Id: cl1\r\n\r\n";
	int s = dial(port);
	size_t n;
	char *resp;

	send_all(s, req, sizeof(req) - 1);
	resp = recv_all(s, &n);
	close(s);
	cr_assert_str_eq(resp, "HTTP/1.1 200 OK\r\nX-Request-Id: cl1\r\nContent-Length: 2\r\n"
			       "Connection: close\r\n\r\nok");
	free(resp);
}

/*
 * The host closes every fd from 3 up behind reqctx's back (a log, a pipe and
 * a socketpair it was tracking), then goes on: a plain file that takes the
 * old log's number is not a log, a new log is one, and a connection is served
 * with its header and its ID in the logs.
 */
static void closeall_case(const char *how)
{
	char *argv[] = { (char *)prog("O2", "hard_fds"), "closeall", (char *)how, (char *)dir,
			 (char *)tpath("port"), NULL };
	pid_t pid = proc_start(argv, NULL, 1, tpath("out"), tpath("err"));

	one_request(wait_port(tpath("port"), pid));
	cr_assert_eq(proc_wait(pid, 10000), 0);
	file_is(tpath("before.log"), "[req:unknown] before\n");
	file_is(tpath("plain.txt"), "plain line\n");
	file_is(tpath("app.log"), "[req:unknown] serving\n[req:cl1] handled /p\n"
				  "[req:cl1] stdio after /p\n");
	file_is(tpath("err"), "[req:cl1] handling /p\n");
}

Test(hardening, host_that_close_ranges_every_fd_keeps_working)
{
	closeall_case("range");
}

Test(hardening, host_that_closes_every_fd_in_a_loop_keeps_working)
{
	closeall_case("loop");
}

/* The raw system call: reqctx never sees the close, the fds' next owners reset their entries. */
Test(hardening, host_that_close_ranges_with_a_raw_syscall_keeps_working)
{
	closeall_case("raw");
}

/*
 * dlsym bootstrap under an allocator that re-enters hooked functions on
 * every call (a zero-length write to stderr, a pthread mutex) and writes a
 * whole line to stderr on its first call, preloaded before or after
 * libreqctx.so: the helper logs and serves a request exactly as usual.
 */
static void talloc_case(int talloc_first)
{
	static const char *const env[] = { "TALLOC_FD=2", NULL };
	char *argv[] = { (char *)prog("O2", "hard_fds"), "serve", (char *)dir,
			 (char *)tpath("port"), NULL };
	char so[300], lp[700], cmd[1200], *env2[3], *err, *at;
	pid_t pid;

	snprintf(so, sizeof(so), "%s", tpath("talloc.so"));
	snprintf(cmd, sizeof(cmd), "cc -shared -fPIC -O1 -o %s %s", so, repo("tests/fixtures/talloc.c"));
	sh(cmd);
	if (talloc_first && getenv("REQCTX_TEST_PRELOAD_FIRST") && *getenv("REQCTX_TEST_PRELOAD_FIRST"))
		snprintf(lp, sizeof(lp), "LD_PRELOAD=%s:%s:%s/libreqctx.so",
			 getenv("REQCTX_TEST_PRELOAD_FIRST"), so, bdir());
	else if (talloc_first)
		snprintf(lp, sizeof(lp), "LD_PRELOAD=%s:%s/libreqctx.so", so, bdir());
	else
		proc_preload(lp, sizeof(lp), so);
	env2[0] = (char *)env[0];
	env2[1] = lp;
	env2[2] = NULL;
	pid = proc_start(argv, (const char *const *)env2, 0, tpath("out"), tpath("err"));
	one_request(wait_port(tpath("port"), pid));
	cr_assert_eq(proc_wait(pid, 10000), 0);
	file_is(tpath("app.log"), "[req:unknown] serving\n[req:cl1] handled /p\n"
				  "[req:cl1] stdio after /p\n");
	/*
	 * The allocator's first line comes from inside reqctx's own start-up
	 * (unprefixed, as everything written before reqctx is ready) or later,
	 * prefixed: it is there once; the rest is exact.
	 */
	err = slurp(tpath("err"), NULL);
	at = strstr(err, "talloc first call\n");
	cr_assert_not_null(at, "%s", err);
	cr_assert_null(strstr(at + 1, "talloc first call\n"), "%s", err);
	if (at - err >= 14 && !strncmp(at - 14, "[req:", 5))
		at -= 14;
	memmove(at, strchr(at, '\n') + 1, strlen(strchr(at, '\n') + 1) + 1);
	cr_assert_str_eq(err, "[req:cl1] handling /p\n[req:cl1] test allocator used\n");
	free(err);
}

Test(hardening, allocator_preloaded_before_reqctx_that_reenters_hooks)
{
	talloc_case(1);
}

Test(hardening, allocator_preloaded_after_reqctx_that_reenters_hooks)
{
	talloc_case(0);
}

/*
 * I/O from constructors: a library the host links (its constructor runs
 * before libreqctx.so's, so reqctx starts from inside it) and the host's own
 * constructor(101) write to stderr, stdout and a log file. Every line is there
 * once, prefixed as the rules say (all start outside requests: unknown).
 */
Test(hardening, host_constructors_doing_io_before_ours)
{
	char cmd[1500], denv[300], exe[300];
	const char *env[] = { denv, NULL };
	char *argv[] = { exe, (char *)dir, NULL };
	int st;

	snprintf(exe, sizeof(exe), "%s", tpath("ctor"));
	snprintf(denv, sizeof(denv), "HARD_DIR=%s", dir);
	snprintf(cmd, sizeof(cmd),
		 "cc -shared -fPIC -o %s/libhardctor.so %s && "
		 "cc -std=gnu11 -DHARD_CTOR_LIB -o %s/ctor %s -Wl,--no-as-needed -L%s -lhardctor "
		 "-Wl,-rpath,%s",
		 dir, repo("tests/fixtures/ctorlib.c"), dir, repo("tests/progs/hard_ctor.c"), dir, dir);
	sh(cmd);

	cr_assert_eq(proc_run(argv, env, 1, tpath("out"), tpath("err")), 0);
	file_is(tpath("out"), "[req:unknown] main ctor out\n[req:unknown] lib: lib ctor ran\n"
			      "[req:unknown] main out\n");
	file_is(tpath("err"), "[req:unknown] lib ctor err\n[req:unknown] lib ctor stdio 42\n"
			      "[req:unknown] main ctor err\n[req:unknown] main err\n");
	file_is(tpath("ctor.log"), "[req:unknown] lib ctor log\n[req:unknown] main ctor log\n"
				   "[req:unknown] main log\n");
	unlink(tpath("ctor.log"));
	st = proc_run(argv, env, 0, tpath("out"), tpath("err"));
	cr_assert_eq(st, 0, "status %d: %s", st, slurp(tpath("err"), NULL));
	file_is(tpath("out"), "main ctor out\nlib: lib ctor ran\nmain out\n");
	file_is(tpath("err"), "lib ctor err\nlib ctor stdio 42\nmain ctor err\nmain err\n");
	file_is(tpath("ctor.log"), "lib ctor log\nmain ctor log\nmain log\n");
}

/* ---- 4. hostile clients ---- */

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
	return h;
}

static int is_uuid4(const char *s, size_t n)
{
	if (n != 36 || s[14] != '4' || !strchr("89ab", s[19]))
		return 0;
	for (size_t i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-'
							       : !strchr("0123456789abcdef", s[i]))
			return 0;
	return 1;
}

/* Sends payload (trickled one byte per ms if asked), half-closes, returns the whole answer. */
static char *exchange(int port, const char *payload, size_t n, int trickle, size_t *len)
{
	int s = dial(port), one = 1;
	char *resp;

	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (trickle) {
		for (size_t i = 0; i < n; i++) {
			send_all(s, payload + i, 1);
			usleep(1000);
		}
	} else {
		send_all(s, payload, n);
	}
	shutdown(s, SHUT_WR);
	resp = recv_all(s, len);
	close(s);
	return resp;
}

enum want { NONE, UUID, GIVEN, UNKNOWN };

/*
 * The same hostile bytes to `hard_srv sum` with and without the library. The
 * server's checksum of what it read must be the test's own, the answer the
 * same bytes but for one inserted "X-Request-Id: <id>\r\n" after the status
 * line (`hdr`: NONE, a generated UUID, or `given`), and the server's one log
 * line carries the ID `log` says; nothing of the hostile bytes reaches either.
 */
static void hostile_case(const char *payload, size_t n, int trickle, enum want hdr,
			 enum want log, const char *given)
{
	char *srv[] = { (char *)prog("O2", "hard_srv"), "sum", (char *)tpath("port0"), NULL };
	char *srv1[] = { (char *)prog("O2", "hard_srv"), "sum", (char *)tpath("port1"), NULL };
	pid_t p0 = proc_start(srv, NULL, 0, NULL, tpath("err0"));
	pid_t p1 = proc_start(srv1, NULL, 1, NULL, tpath("err1"));
	int port0 = wait_port(tpath("port0"), p0), port1 = wait_port(tpath("port1"), p1);
	size_t n0, n1, eol, idlen = 0;
	char *r0, *r1, want_log[128], id[200] = "", *err1, *lb;
	const char *idp = NULL;

	r0 = exchange(port0, payload, n, trickle, &n0);
	r1 = exchange(port1, payload, n, trickle, &n1);
	kill(p0, SIGTERM);
	kill(p1, SIGTERM);
	cr_assert_eq(proc_wait(p0, 5000), 128 + SIGTERM);
	cr_assert_eq(proc_wait(p1, 5000), 128 + SIGTERM);

	snprintf(want_log, sizeof(want_log), "conn read=%zu fnv=%016llx\n", n,
		 (unsigned long long)fnv1a(payload, n));
	file_is(tpath("err0"), want_log);
	cr_assert(strstr(r0, strchr(want_log, ' ') + 1), "%s", r0);

	eol = (size_t)(strstr(r1, "\r\n") - r1) + 2;
	if (hdr == NONE) {
		cr_assert_eq(n1, n0, "%s", r1);
		cr_assert_eq(memcmp(r1, r0, n0), 0, "%s", r1);
	} else {
		static const char name[] = "X-Request-Id: ";
		char *end = strstr(r1 + eol, "\r\n");

		cr_assert_eq(memcmp(r0, r1, eol), 0);
		cr_assert_eq(strncmp(r1 + eol, name, strlen(name)), 0, "%s", r1);
		idp = r1 + eol + strlen(name);
		idlen = (size_t)(end - idp);
		cr_assert(hdr == UUID ? is_uuid4(idp, idlen)
				      : idlen == strlen(given) && !memcmp(idp, given, idlen),
			  "header ID %.*s", (int)idlen, idp);
		cr_assert_eq(n1, n0 + strlen(name) + idlen + 2);
		cr_assert_eq(memcmp(end + 2, r0 + eol, n0 - eol), 0, "%s", r1);
	}

	err1 = slurp(tpath("err1"), NULL);
	cr_assert_eq(strncmp(err1, "[req:", 5), 0, "%s", err1);
	lb = strstr(err1, "] ");
	cr_assert_not_null(lb);
	snprintf(id, sizeof(id), "%.*s", (int)(lb - err1 - 5), err1 + 5);
	cr_assert_str_eq(lb + 2, want_log);
	if (log == UNKNOWN)
		cr_assert_str_eq(id, "unknown");
	else if (log == GIVEN)
		cr_assert_str_eq(id, given);
	else
		cr_assert(is_uuid4(id, strlen(id)), "log ID %s", id);
	if (idp)
		cr_assert(strlen(id) == idlen && !memcmp(id, idp, idlen), "log %s, header %.*s", id,
			  (int)idlen, idp);
	free(r0);
	free(r1);
	free(err1);
}

/* A buffer the hostile payloads are built in. */
struct buf {
	char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

Test(hardening, ten_megabytes_of_headers)
{
	struct buf b = { 0 };
	char *big = malloc(10 << 20);

	memset(big, 'a', 10 << 20);
	puts_(&b, "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ");
	put(&b, big, 10 << 20);
	puts_(&b, "\r\nX-Request-Id: after-big\r\n\r\n");
	hostile_case(b.p, b.n, 0, GIVEN, GIVEN, "after-big");
	free(big);
	free(b.p);
}

Test(hardening, hundred_thousand_headers)
{
	struct buf b = { 0 };
	char h[64];

	puts_(&b, "GET /many HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < 100000; i++) {
		snprintf(h, sizeof(h), "X-H-%d: v%d\r\n", i, i);
		puts_(&b, h);
	}
	puts_(&b, "X-Request-Id: after-many\r\n\r\n");
	hostile_case(b.p, b.n, 0, GIVEN, GIVEN, "after-many");
	free(b.p);
}

/* 300 bytes at one byte per millisecond: every split of the head is a read boundary. */
Test(hardening, slowloris_head_one_byte_per_millisecond)
{
	struct buf b = { 0 };

	puts_(&b, "GET /slow HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-1\r\n");
	while (b.n < 296)
		puts_(&b, "X-Pad: ..........\r\n");
	puts_(&b, "\r\n");
	hostile_case(b.p, b.n, 1, GIVEN, GIVEN, "slow-1");
	free(b.p);
}

Test(hardening, binary_garbage)
{
	char *g = malloc(65536);
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < 65536; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		g[i] = (char)x;
	}
	hostile_case(g, 65536, 0, NONE, UUID, NULL);
	free(g);
}

Test(hardening, tls_client_hello_on_a_plain_port)
{
	struct buf b = { 0 };
	static const unsigned char head[] = {
		0x16, 0x03, 0x01, 0x00, 0xc8,             /* record: handshake, 200 bytes */
		0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,       /* ClientHello, TLS 1.2 */
	};
	unsigned char rest[196];

	for (size_t i = 0; i < sizeof(rest); i++)
		rest[i] = (unsigned char)(i * 37 + 11);
	rest[32] = 0x00; /* empty session id */
	put(&b, head, sizeof(head));
	put(&b, rest, sizeof(rest));
	hostile_case(b.p, b.n, 0, NONE, UUID, NULL);
	free(b.p);
}

/*
 * A request whose X-Request-Id is hostile. `hdr` NONE: the bytes are not
 * HTTP/1.x at all (a bare CR, LF, NUL or other control byte in a header
 * value), so the connection gets
 * one generated ID and its responses are left alone.
 */
static void hostile_id(const char *value, size_t n, enum want hdr)
{
	struct buf b = { 0 };

	puts_(&b, "GET /id HTTP/1.1\r\nHost: x\r\nX-Request-Id: ");
	put(&b, value, n);
	puts_(&b, "\r\nUser-Agent: t\r\n\r\n");
	hostile_case(b.p, b.n, 0, hdr, UUID, NULL);
	free(b.p);
}

Test(hardening, request_id_with_cr_makes_the_connection_opaque)
{
	hostile_id("abc\rdef", 7, NONE);
}

Test(hardening, request_id_with_lf_makes_the_connection_opaque)
{
	hostile_id("abc\n[req:forged] evil", 21, NONE);
}

Test(hardening, request_id_with_nul_makes_the_connection_opaque)
{
	hostile_id("abc\0def", 7, NONE);
}

Test(hardening, request_id_with_closing_bracket_is_replaced)
{
	hostile_id("abc] [req:forged", 16, UUID);
}

Test(hardening, request_id_with_control_byte_makes_the_connection_opaque)
{
	hostile_id("abc\x1b[31mred", 12, NONE);
}

Test(hardening, request_id_with_spaces_is_replaced)
{
	hostile_id("abc [req:forged] x", 18, UUID);
}

Test(hardening, request_id_of_10_kb_is_replaced)
{
	char *v = malloc(10240);

	memset(v, 'A', 10240);
	hostile_id(v, 10240, UUID);
	free(v);
}

/* ---- 4b, 5. memory per connection, churn ---- */

/* The number of memory mappings of pid: what the library maps for its tables shows here. */
static long maps_count(pid_t pid)
{
	char path[64], line[1024];
	long n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		n += strchr(line, '\n') != NULL;
	fclose(f);
	cr_assert_gt(n, 0);
	return n;
}

static const char http_req[] = "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
static const char http_head[] = "HTTP/1.1 200 OK\r\n";
static const char http_tail[] = "Content-Length: 2\r\n\r\nok";
#define XRID_LINE (sizeof("X-Request-Id: \r\n") - 1 + 36)

/* Length of one answer of `hard_srv http`; preloaded, it carries a generated ID. */
static size_t answer_len(int preload)
{
	return sizeof(http_head) - 1 + sizeof(http_tail) - 1 + (preload ? XRID_LINE : 0);
}

static void check_answer(const char *a, int preload)
{
	size_t h = sizeof(http_head) - 1;

	cr_assert_eq(memcmp(a, http_head, h), 0, "%.100s", a);
	if (preload) {
		cr_assert_eq(memcmp(a + h, "X-Request-Id: ", 14), 0, "%.100s", a);
		cr_assert(is_uuid4(a + h + 14, 36), "%.100s", a);
		h += XRID_LINE;
	}
	cr_assert_eq(memcmp(a + h, http_tail, sizeof(http_tail) - 1), 0, "%.100s", a);
}

static void read_exact(int s, char *b, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = recv(s, b + got, n - got, 0);

		cr_assert_gt(r, 0, "recv: %s after %zu bytes", r ? strerror(errno) : "EOF", got);
		got += (size_t)r;
	}
}

static pid_t http_server(int preload, int *port)
{
	char *argv[] = { (char *)prog("O2", "hard_srv"), "http", (char *)tpath("port"), NULL };
	pid_t pid;

	unlink(tpath("port"));
	pid = proc_start(argv, NULL, preload, NULL, NULL);
	*port = wait_port(tpath("port"), pid);
	return pid;
}

/* Opens n connections and has one request answered on each; returns them. */
static int *open_served(int port, int n, int preload)
{
	int *s = malloc(sizeof(int) * (size_t)n);
	char a[256];

	for (int i = 0; i < n; i++) {
		s[i] = dial(port);
		send_all(s[i], http_req, sizeof(http_req) - 1);
	}
	for (int i = 0; i < n; i++) {
		read_exact(s[i], a, answer_len(preload));
		check_answer(a, preload);
	}
	return s;
}

/*
 * What reqctx keeps per connection: a fixed struct rq_conn (scanners and 4
 * ID slots) and an fd entry, nothing allocated per request or per byte. What
 * that costs a real server in RSS is measured by make bench (per idle
 * keep-alive connection), not here.
 */
Test(hardening, memory_per_connection_is_bounded)
{
	size_t fixed = sizeof(struct rq_conn) + sizeof(struct rq_fd);

	cr_log_info("per connection: sizeof(struct rq_conn) %zu + sizeof(struct rq_fd) %zu = %zu bytes",
		    sizeof(struct rq_conn), sizeof(struct rq_fd), fixed);
	cr_assert_leq(fixed, 1280);
}

/*
 * Nothing grows with traffic: the server's memory mappings (the library's
 * tables are mmap'ed chunks; it never calls malloc per request) are the same
 * at 10%, 50% and 100% of a run.
 */
static void expect_flat(const char *what, const long maps[3])
{
	cr_log_info("%s: server mappings %ld at 10%%, %ld at 50%%, %ld at 100%%", what, maps[0],
		    maps[1], maps[2]);
	cr_assert_eq(maps[1], maps[0], "%s: mappings grew", what);
	cr_assert_eq(maps[2], maps[0], "%s: mappings grew", what);
}

/*
 * 100,000 connections, each opened, asked one request, answered and closed
 * (reset by the client, so no TIME_WAIT piles up), 8 at a time. Every answer
 * carries its own generated ID; nothing the server maps grows.
 */
Test(hardening, churn_of_100k_connections_keeps_memory_flat, .timeout = 120)
{
	const int total = 100000, par = 8;
	struct linger lg = { 1, 0 };
	char a[256];
	long maps[3] = { 0 };
	size_t alen = answer_len(1);
	int port, done = 0;
	pid_t pid = http_server(1, &port);
	long t0 = proc_now_ms();

	while (done < total) {
		int s[8];

		for (int i = 0; i < par; i++) {
			s[i] = dial(port);
			setsockopt(s[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			send_all(s[i], http_req, sizeof(http_req) - 1);
		}
		for (int i = 0; i < par; i++) {
			read_exact(s[i], a, alen);
			check_answer(a, 1);
			close(s[i]);
		}
		done += par;
		if (done == total / 10 || done == total / 2 || done == total)
			maps[done == total / 10 ? 0 : done == total / 2 ? 1 : 2] = maps_count(pid);
	}
	cr_log_info("100k connections in %ld ms", proc_now_ms() - t0);
	kill(pid, SIGKILL);
	proc_wait(pid, 5000);
	expect_flat("100k connections", maps);
}

/*
 * 1,000,000 requests over 64 keep-alive connections driven with epoll, one
 * request in flight on each: every answer is whole and carries a generated
 * ID, and nothing the server maps grows.
 */
Test(hardening, million_keepalive_requests_keep_memory_flat, .timeout = 120)
{
	enum { CONNS = 64 };
	const long total = 1000000;
	size_t alen = answer_len(1);
	long sent = 0, done = 0, maps[3] = { 0 }, t0 = proc_now_ms();
	int port, ep = epoll_create1(0), *s;
	size_t have[CONNS] = { 0 };
	char a[CONNS][256];
	pid_t pid = http_server(1, &port);

	s = open_served(port, CONNS, 1);
	for (int i = 0; i < CONNS; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

		cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s[i], &ev), 0);
		send_all(s[i], http_req, sizeof(http_req) - 1);
		sent++;
	}
	while (done < total) {
		struct epoll_event evs[CONNS];
		int n = epoll_wait(ep, evs, CONNS, 10000);

		cr_assert_gt(n, 0, "no answer for 10 s after %ld", done);
		for (int k = 0; k < n; k++) {
			int i = (int)evs[k].data.u32;
			ssize_t r = recv(s[i], a[i] + have[i], alen - have[i], 0);

			cr_assert_gt(r, 0, "recv: %s", r ? strerror(errno) : "EOF");
			have[i] += (size_t)r;
			if (have[i] < alen)
				continue;
			check_answer(a[i], 1);
			have[i] = 0;
			done++;
			if (done == total / 10 || done == total / 2 || done == total)
				maps[done == total / 10 ? 0 : done == total / 2 ? 1 : 2] = maps_count(pid);
			if (sent < total) {
				send_all(s[i], http_req, sizeof(http_req) - 1);
				sent++;
			}
		}
	}
	cr_log_info("1M keep-alive requests in %ld ms", proc_now_ms() - t0);
	kill(pid, SIGKILL);
	proc_wait(pid, 5000);
	expect_flat("1M keep-alive requests", maps);
}

/* ---- 6. limits ---- */

/* syscall(SYS_write) bypasses libc: that line has no prefix; write() and printf lines do. */
Test(hardening, direct_syscall_write_is_not_prefixed)
{
	for (int o2 = 0; o2 < 2; o2++) {
		char *argv[] = { (char *)prog(o2 ? "O2" : "O0", "hard_sys"), NULL };

		cr_assert_eq(proc_run(argv, NULL, 1, tpath("out"), tpath("err")), 0);
		file_is(tpath("err"), "raw syscall line\n[req:unknown] write line\n");
		file_is(tpath("out"), "[req:unknown] stdout line 1\n");
	}
}

/* A static binary has no dynamic loader: LD_PRELOAD does nothing, the output is its own. */
Test(hardening, static_binary_runs_unchanged_under_ld_preload)
{
	char cmd[1200], exe[300];
	char *argv[] = { exe, NULL };
	char *hdr;

	snprintf(exe, sizeof(exe), "%s", tpath("hard_sys_static"));
	snprintf(cmd, sizeof(cmd), "cc -static -O0 -o %s %s", exe, repo("tests/progs/hard_sys.c"));
	cr_assert_eq(system(cmd), 0, "cc -static failed (libc6-dev provides libc.a): %s", cmd);
	hdr = slurp(exe, NULL);
	cr_assert_eq(memcmp(hdr, "\177ELF", 4), 0);
	free(hdr);
	cr_assert_eq(system("readelf --version >/dev/null"), 0, "readelf (binutils) is needed");
	snprintf(cmd, sizeof(cmd), "readelf -l %s | grep -q INTERP", exe);
	cr_assert_neq(system(cmd), 0, "%s has a dynamic loader", exe);
	cr_assert_eq(proc_run(argv, NULL, 1, tpath("out"), tpath("err")), 0);
	file_is(tpath("err"), "raw syscall line\nwrite line\n");
	file_is(tpath("out"), "stdout line 1\n");
}
