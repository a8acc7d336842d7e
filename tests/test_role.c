/*
 * Which standard streams are logs (src/role.h): the decision itself, then
 * programs under the library. A program that is not a server comes out byte
 * for byte as without the library; a server's fd 1 and 2 are logs from the
 * moment it listens or accepts; the programs a server starts keep their
 * stdout as data and log on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "proc.h"
#include "role.h"

/* ---- the decision ----------------------------------------------------------- */

Test(role, top_pid_values_parse_with_and_without_the_server_flag)
{
	long pid = -1;
	int server = -1;

	cr_assert_eq(rq_top_parse("4242", &pid, &server), 0);
	cr_assert_eq(pid, 4242);
	cr_assert_eq(server, 0);
	cr_assert_eq(rq_top_parse("17:1", &pid, &server), 0);
	cr_assert_eq(pid, 17);
	cr_assert_eq(server, 1);
	cr_assert_eq(rq_top_parse("17:0", &pid, &server), 0);
	cr_assert_eq(server, 0);
}

Test(role, malformed_top_pid_values_are_refused)
{
	static const char *const bad[] = { "", ":1", "0", "0:1", "12:", "12:2", "12:10", "12x",
					   "-5", " 12", "12345678901", "12:1 " };
	long pid = 99;
	int server = 7;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(rq_top_parse(bad[i], &pid, &server), -EINVAL, "\"%s\"", bad[i]);
	cr_assert_eq(rq_top_parse(NULL, &pid, &server), -EINVAL);
	cr_assert_eq(pid, 99, "a refused value leaves the outputs alone");
	cr_assert_eq(server, 7);
}

static struct rq_role decide(const char *top, long pid, int cgi, int logfds)
{
	struct rq_role r;

	rq_role_decide(top, pid, cgi, logfds, &r);
	return r;
}

Test(role, a_first_process_heads_its_tree_and_serves_only_when_told)
{
	struct rq_role r = decide(NULL, 100, 0, 0);

	cr_assert(r.top && !r.child && !r.server);
	r = decide(NULL, 100, 0, 1);
	cr_assert(r.top && !r.child && r.server, "an explicit REQCTX_LOG_FDS serves from the start");
	r = decide("100:1", 100, 0, 0);
	cr_assert(r.top && !r.child && r.server, "reqctx run names the pid it execs, as a server");
	r = decide("100:0", 100, 0, 0);
	cr_assert(r.top && !r.child && !r.server, "exec without fork keeps the top's state");
}

Test(role, a_child_of_a_server_logs_on_its_child_fds)
{
	struct rq_role r = decide("100:1", 200, 0, 0);

	cr_assert(!r.top && r.child && !r.server);
	r = decide("100:1", 200, 0, 1);
	cr_assert(!r.top && r.child && !r.server, "REQCTX_LOG_FDS is the top's, not a child's");
}

Test(role, a_child_of_a_program_that_is_no_server_heads_its_own_tree)
{
	struct rq_role r = decide("100:0", 200, 0, 0);

	cr_assert(r.top && !r.child && !r.server);
	r = decide("100", 200, 0, 0);
	cr_assert(r.top && !r.child && !r.server, "an older library's value says nothing of serving");
	r = decide("junk", 200, 0, 0);
	cr_assert(r.top && !r.child && !r.server);
}

Test(role, a_cgi_child_is_a_child_whatever_its_environment_says)
{
	cr_assert(decide(NULL, 200, 1, 0).child);
	cr_assert(decide("200:1", 200, 1, 1).child);
	cr_assert(decide("100:0", 200, 1, 0).child);
	cr_assert(!decide(NULL, 200, 1, 0).top);
}

/* ---- under the library ------------------------------------------------------- */

static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(roles, .init = setup, .fini = teardown, .timeout = 60);

struct outs {
	int status;
	char *out, *err;
};

static struct outs run_in(char *const argv[], const char *const *env, int preload, int extra_fd)
{
	char out[256], err[256];
	struct outs o;

	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	o.status = proc_wait(proc_start_fd(argv, env, preload, out, err, -1, extra_fd), 30000);
	o.out = slurp(out, NULL);
	o.err = slurp(err, NULL);
	return o;
}

/* Runs argv as the plain program it is (no REQCTX_LOG_FDS), with and without the library. */
static void same_as_plain(char *const argv[])
{
	static const char *const env[] = { "REQCTX_LOG_FDS", NULL };
	struct outs plain = run_in(argv, env, 0, -1), pre = run_in(argv, env, 1, -1);

	cr_assert_eq(pre.status, plain.status, "%s: status %d, plain %d", argv[2], pre.status,
		     plain.status);
	cr_assert_str_eq(pre.out, plain.out, "%s: stdout changed", argv[2]);
	cr_assert_str_eq(pre.err, plain.err, "%s: stderr changed", argv[2]);
	cr_assert_gt(strlen(plain.out), 0, "%s printed nothing to compare", argv[2]);
}

/*
 * Container images set LD_PRELOAD for every process. Tools that are not
 * servers must come out byte for byte unchanged, on stdout (a backup, a pipe
 * into jq) and on stderr, through a shell and its children.
 */
Test(roles, ordinary_tools_under_a_global_preload_are_byte_identical)
{
	static const char *const cmds[] = {
		"printf 'a\\nb\\n'; seq 1 2000; echo to-stderr >&2",
		"ls -l /usr/bin | head -50; ls /nonexistent-reqctx-dir",
		("python3 -c 'import sys, json; print(json.dumps({\"a\": 1})); "
		 "sys.stderr.write(\"py err\\n\")' | jq -c ."),
		"out=$(printf 'captured\\n'); echo \"$out\"; cat /etc/os-release",
		"pg_dump --help | head -5; psql --version",
		"head -c 4096 /usr/bin/sh | od -An -tx1 | head -20",
	};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *argv[] = { "/bin/sh", "-c", (char *)cmds[i], NULL };

		same_as_plain(argv);
	}
}

static const char *role_prog(void)
{
	return bpath("progs/O2/role");
}

/*
 * A server's lines before it listens pass through bare; from listen() on,
 * fd 1 and 2 are logs. Its children started before it served are plain
 * programs; those started after keep stdout as data and log on stderr.
 */
Test(roles, a_server_logs_from_the_moment_it_listens)
{
	static const char *const env[] = { "REQCTX_LOG_FDS", NULL };
	char *argv[] = { (char *)role_prog(), "listen", NULL };
	struct outs o = run_in(argv, env, 1, -1);

	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert_str_eq(o.out, "before out printf\n"
				"before out write\n"
				"before child out\n"
				"[req:unknown] after out printf\n"
				"[req:unknown] after out write\n"
				"after child out\n");
	cr_assert_str_eq(o.err, "before err fprintf\n"
				"before err write\n"
				"before child err\n"
				"[req:unknown] after err fprintf\n"
				"[req:unknown] after err write\n"
				"[req:unknown] after child err\n");
}

/*
 * A pre-fork worker or a socket-activated server never calls listen: its
 * first accept on the listening socket it inherited makes it a server.
 */
Test(roles, a_worker_that_inherits_its_listening_socket_logs_from_its_first_accept)
{
	static const char *const env[] = { "REQCTX_LOG_FDS", NULL };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), c;
	char fdarg[16];
	char *argv[] = { (char *)role_prog(), "accept", fdarg, NULL };
	char out[256], err[256];
	pid_t pid;
	char *o, *e;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(l, 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(l, 4), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	snprintf(fdarg, sizeof(fdarg), "%d", l);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	pid = proc_start_fd(argv, env, 1, out, err, -1, l);
	close(l);
	c = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(proc_wait(pid, 30000), 0);
	close(c);
	o = slurp(out, NULL);
	e = slurp(err, NULL);
	cr_assert_str_eq(o, "before out printf\nbefore out write\nbefore child out\n"
			    "[req:unknown] after out printf\n[req:unknown] after out write\n"
			    "after child out\n");
	cr_assert_str_eq(e, "before err fprintf\nbefore err write\nbefore child err\n"
			    "[req:unknown] after err fprintf\n[req:unknown] after err write\n"
			    "[req:unknown] after child err\n");
}

/* An explicit REQCTX_LOG_FDS makes those fds logs from the start, as `reqctx run` does. */
Test(roles, an_explicit_log_fds_list_makes_logs_from_the_start)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=2", NULL };
	char *argv[] = { (char *)role_prog(), "plain", NULL };
	struct outs o = run_in(argv, env, 1, -1);

	cr_assert_eq(o.status, 0);
	cr_assert_str_eq(o.out, "out printf\nout write\n");
	cr_assert_str_eq(o.err, "[req:unknown] err fprintf\n[req:unknown] err write\n");
}

/*
 * A server that cleans its children's environment (lighttpd's mod_cgi keeps
 * LD_PRELOAD and drops REQCTX_*) still starts CGI children: GATEWAY_INTERFACE
 * says what they are. Their stdout is the response, their stderr a log.
 */
Test(roles, a_cgi_child_keeps_stdout_as_data_without_reqctx_variables)
{
	static const char *const env[] = { "REQCTX_LOG_FDS", "GATEWAY_INTERFACE=CGI/1.1", NULL };
	char *argv[] = { (char *)role_prog(), "plain", NULL };
	struct outs o = run_in(argv, env, 1, -1);

	cr_assert_eq(o.status, 0);
	cr_assert_str_eq(o.out, "out printf\nout write\n");
	cr_assert_str_eq(o.err, "[req:unknown] err fprintf\n[req:unknown] err write\n");
}

/* Under a top that is a server, a child's stdout is data even with REQCTX_LOG_FDS inherited. */
Test(roles, a_child_of_a_server_keeps_stdout_as_data)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=1,2", "REQCTX_TOP_PID=1:1", NULL };
	char *argv[] = { (char *)role_prog(), "plain", NULL };
	struct outs o = run_in(argv, env, 1, -1);

	cr_assert_eq(o.status, 0);
	cr_assert_str_eq(o.out, "out printf\nout write\n");
	cr_assert_str_eq(o.err, "[req:unknown] err fprintf\n[req:unknown] err write\n");
}
