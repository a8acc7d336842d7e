/*
 * The Node adapter and the runtime bootstrap: real Node servers started under
 * plain LD_PRELOAD (no NODE_OPTIONS of the test's own), driven by loadcheck
 * with keep-alive connections, half the requests with their own ID. Also the
 * pure functions behind the bootstrap (src/runtime.c), and the hand-off fix
 * for lines logged after res.end().
 *
 * Each server is started with PR_SET_PDEATHSIG and stopped by the fixture.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "proc.h"
#include "runtime.h"

#define NODE "/usr/bin/node"
/* How long a server may take to write its port file, in ms. */
#define START_MS 15000
/* How long loadcheck may take, in ms. */
#define RUN_MS 120000
/* Lines tests/node/hops.js logs per request. */
#define HOP_LINES 18
#define MAX_PIDS 8

static const char *dir;
static pid_t pids[MAX_PIDS];
static int npids;

static void setup(void)
{
	dir = tmpdir_new();
}

static void teardown(void)
{
	while (npids > 0) {
		pid_t p = pids[--npids];

		kill(p, SIGTERM);
		proc_wait(p, 10000);
	}
	tmpdir_remove(dir);
}

TestSuite(node, .init = setup, .fini = teardown, .timeout = 240);
TestSuite(runtime);

static const char *in_dir(const char *name)
{
	static char bufs[8][256];
	static int k;
	char *b = bufs[k++ & 7];

	snprintf(b, 256, "%s/%s", dir, name);
	return b;
}

static const char *script(const char *name)
{
	static char bufs[4][512];
	static int k;
	char *b = bufs[k++ & 3];

	snprintf(b, 512, "%s/../tests/node/%s", bdir(), name);
	return b;
}

static void require_node(void)
{
	if (access(NODE, X_OK) != 0)
		cr_assert_fail(NODE " is not installed; as root, run:\n  apt-get install -y nodejs");
	if (access(bpath("reqctx-adapters/node/reqctx.node"), R_OK) != 0)
		cr_assert_fail("%s is not built: the Node-API headers are missing; as root, run:\n"
			       "  apt-get install -y libnode-dev", bpath("reqctx-adapters/node/reqctx.node"));
}

/*
 * Starts argv with the test's environment minus LD_PRELOAD, REQCTX_*,
 * NODE_OPTIONS and PYTHONPATH, plus env, plus LD_PRELOAD=lib if lib. stdout
 * goes to out_fd if it is not -1, else to the file out; stderr to the file
 * err.
 */
static pid_t start_io(char *const argv[], const char *const *env, const char *lib, int out_fd,
		      const char *out, const char *err)
{
	char *envp[512], lp[600];
	int n = 0;
	pid_t pid;

	for (char **e = environ; *e && n < 500; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "REQCTX_", 7) &&
		    strncmp(*e, "NODE_OPTIONS=", 13) && strncmp(*e, "PYTHONPATH=", 11))
			envp[n++] = *e;
	for (const char *const *e = env; e && *e && n < 508; e++)
		envp[n++] = (char *)*e;
	if (lib) {
		snprintf(lp, sizeof(lp), "LD_PRELOAD=%s", lib);
		envp[n++] = lp;
	}
	envp[n] = NULL;
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int i = open("/dev/null", O_RDONLY);
		int o = out_fd >= 0 ? out_fd : open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(125);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	return pid;
}

/* start_io() with stdout to the file out. */
static pid_t start(char *const argv[], const char *const *env, const char *lib, const char *out,
		   const char *err)
{
	return start_io(argv, env, lib, -1, out, err);
}

/*
 * As start(), but the program's stdout is a pipe, which /bin/cat (without
 * the library, its environment empty) copies into the file out, starting
 * only after a second: by then the pipe is full and the program's writes
 * wait in Node's buffers and go out later, from the event loop. Returns the
 * program's pid; the fixture stops both (cat ends at the pipe's EOF).
 */
static pid_t start_piped(char *const argv[], const char *const *env, const char *lib, const char *out,
			 const char *err)
{
	char *cat_argv[] = { "/bin/sh", "-c", "/bin/sleep 1; exec /bin/cat", NULL }, *no_env[] = { NULL };
	int p[2];
	pid_t cat, pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_lt(npids, MAX_PIDS);
	cat = fork();
	cr_assert_neq(cat, -1);
	if (cat == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (o < 0 || dup2(p[0], 0) < 0 || dup2(o, 1) < 0)
			_exit(125);
		execve(cat_argv[0], cat_argv, no_env);
		_exit(127);
	}
	pids[npids++] = cat;
	close(p[0]);
	pid = start_io(argv, env, lib, p[1], out, err);
	close(p[1]);
	return pid;
}

/* Runs argv to its end; returns its exit status. */
static int run(char *const argv[], const char *const *env, const char *lib, const char *out,
	       const char *err)
{
	return proc_wait(start(argv, env, lib, out, err), 60000);
}

/*
 * Starts a Node server script that writes its port to a file, with its
 * stdout in <name>.out (through a pipe if piped) and up to two more
 * arguments; returns the port.
 */
static int server_with(const char *name, const char *arg, const char *arg2, const char *const *env,
		       int preload, int piped)
{
	char pf[256], *argv[] = { NODE, (char *)script(name), pf, (char *)arg, (char *)arg2, NULL };
	char out[256], err[256];
	const char *lib = preload ? bpath("libreqctx.so") : NULL;
	long end = proc_now_ms() + START_MS;
	pid_t pid;

	snprintf(pf, sizeof(pf), "%s/%s.port", dir, name);
	snprintf(out, sizeof(out), "%s/%s.out", dir, name);
	snprintf(err, sizeof(err), "%s/%s.err", dir, name);
	pid = piped ? start_piped(argv, env, lib, out, err) : start(argv, env, lib, out, err);
	cr_assert_lt(npids, MAX_PIDS);
	pids[npids++] = pid;
	while (access(pf, R_OK) != 0) {
		int st;

		cr_assert_neq(waitpid(pid, &st, WNOHANG), pid, "%s exited; stderr:\n%s", name,
			      slurp(err, NULL));
		cr_assert_lt(proc_now_ms(), end, "%s wrote no port in %d ms", name, START_MS);
		usleep(20000);
	}
	return atoi(slurp(pf, NULL));
}

/* Starts a Node server script that writes its port to a file; returns the port. */
static int server(const char *name, const char *arg, const char *const *env, int preload)
{
	return server_with(name, arg, NULL, env, preload, 0);
}

/*
 * Runs loadcheck on port and asserts its exact summary: every line right,
 * every response echoed. The lines are in log, and in log2 too if not NULL.
 */
static void load_is_clean2(int port, int requests, int conns, int lines, const char *log,
			   const char *log2)
{
	char prog[512], p[16], n[16], c[16], k[16], t[16];
	char *argv[] = { prog, "--port", p, "--requests", n, "--conns", c, "--client-id-share", "0.5",
			 "--lines-per-request", k, "--timeout-ms", t, "--log", (char *)log,
			 log2 ? "--log" : NULL, (char *)log2, NULL };
	char want[256], *out;
	int st;

	snprintf(prog, sizeof(prog), "%s/progs/O0/loadcheck", bdir());
	snprintf(p, sizeof(p), "%d", port);
	snprintf(n, sizeof(n), "%d", requests);
	snprintf(c, sizeof(c), "%d", conns);
	snprintf(k, sizeof(k), "%d", lines);
	snprintf(t, sizeof(t), "%d", RUN_MS);
	st = proc_wait(proc_start(argv, NULL, 0, in_dir("lc.out"), in_dir("lc.err")), RUN_MS + 20000);
	out = slurp(in_dir("lc.out"), NULL);
	snprintf(want, sizeof(want),
		 "requests=%d lines=%ld ok=%ld wrong=0 unknown=0 unprefixed=0 unlogged=0 miscounted=0 "
		 "no_echo=0 echo_mismatch=0 failed=0\n",
		 requests, (long)requests * lines, (long)requests * lines);
	cr_assert_str_eq(out, want, "loadcheck said\n%s%s", out, slurp(in_dir("lc.err"), NULL));
	cr_assert_eq(st, 0);
}

static void load_is_clean(int port, int requests, int conns, int lines, const char *log)
{
	load_is_clean2(port, requests, conns, lines, log, NULL);
}

/* ---- src/runtime.c ------------------------------------------------------------ */

Test(runtime, node_and_python_executables_are_recognised_by_name)
{
	cr_assert_eq(rq_rt_kind("/usr/bin/node"), RQ_RT_NODE);
	cr_assert_eq(rq_rt_kind("nodejs"), RQ_RT_NODE);
	cr_assert_eq(rq_rt_kind("/usr/bin/python3.11"), RQ_RT_PYTHON);
	cr_assert_eq(rq_rt_kind("python3"), RQ_RT_PYTHON);
	cr_assert_eq(rq_rt_kind("/opt/py/bin/python"), RQ_RT_PYTHON);
	cr_assert_eq(rq_rt_kind("python3-config"), RQ_RT_NONE);
	cr_assert_eq(rq_rt_kind("/usr/sbin/nginx"), RQ_RT_NONE);
	cr_assert_eq(rq_rt_kind("node-gyp"), RQ_RT_NONE);
	cr_assert_eq(rq_rt_kind("/usr/bin/node/x"), RQ_RT_NONE);
}

Test(runtime, node_options_get_the_require_first_and_once)
{
	char out[256];

	cr_assert_eq(rq_rt_node_options(NULL, "/l/a.js", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "--require /l/a.js");
	cr_assert_eq(rq_rt_node_options("", "/l/a.js", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "--require /l/a.js");
	cr_assert_eq(rq_rt_node_options("--max-old-space-size=256 -r ./u.js", "/l/a.js", out,
					 sizeof(out)), 1);
	cr_assert_str_eq(out, "--require /l/a.js --max-old-space-size=256 -r ./u.js");
	cr_assert_eq(rq_rt_node_options("--require /l/a.js --x", "/l/a.js", out, sizeof(out)), 0);
	cr_assert_eq(rq_rt_node_options("--x  --require=/l/a.js", "/l/a.js", out, sizeof(out)), 0);
	cr_assert_eq(rq_rt_node_options("--require /l/a.jsx", "/l/a.js", out, sizeof(out)), 1);
}

Test(runtime, node_options_refuse_paths_they_would_split_and_values_too_long)
{
	char out[32];

	cr_assert_eq(rq_rt_node_options(NULL, "/a b/a.js", out, sizeof(out)), -EINVAL);
	cr_assert_eq(rq_rt_node_options(NULL, "/a\"b/a.js", out, sizeof(out)), -EINVAL);
	cr_assert_eq(rq_rt_node_options(NULL, "rel/a.js", out, sizeof(out)), -EINVAL);
	cr_assert_eq(rq_rt_node_options("--max-old-space-size=256", "/l/a.js", out, sizeof(out)),
		     -ENAMETOOLONG);
}

Test(runtime, pythonpath_gets_the_directory_first_and_once)
{
	char out[64];

	cr_assert_eq(rq_rt_pythonpath(NULL, "/l/py", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "/l/py");
	cr_assert_eq(rq_rt_pythonpath("/app:/lib", "/l/py", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "/l/py:/app:/lib");
	cr_assert_eq(rq_rt_pythonpath("/app:/l/py", "/l/py", out, sizeof(out)), 0);
	cr_assert_eq(rq_rt_pythonpath("/l/py/x", "/l/py", out, sizeof(out)), 1);
	cr_assert_eq(rq_rt_pythonpath(NULL, "/a:b", out, sizeof(out)), -EINVAL);
	cr_assert_eq(rq_rt_pythonpath(NULL, "/x/0123456789012345678901234567890123456789012345678901234567890123456789",
				      out, sizeof(out)), -ENAMETOOLONG);
}

/* ---- real Node servers ---------------------------------------------------------- */

/*
 * hops.js behind its upstream, stdout on a file or (piped) on a pipe, under
 * 2000 requests over 16 connections: every line checked, and the start-up
 * lines as they must be.
 */
static void hops_run(int piped)
{
	char upa[16];
	int up, port;
	char *text;

	require_node();
	up = server("upstream.js", NULL, NULL, 0);
	snprintf(upa, sizeof(upa), "%d", up);
	port = piped ? server_with("hops.js", upa, NULL, NULL, 1, 1) : server("hops.js", upa, NULL, 1);
	load_is_clean(port, 2000, 16, HOP_LINES, in_dir("hops.js.out"));
	text = slurp(in_dir("hops.js.out"), NULL);
	cr_assert_eq(strncmp(text, "startup: hops server starting\n", 30), 0, "%.200s", text);
	cr_assert_not_null(strstr(text, "\n[req:unknown] startup: listening\n"), "%.300s", text);
	cr_assert_not_null(strstr(text, "\n[req:unknown] startup: timer armed at start-up\n"));
	cr_assert_str_eq(slurp(in_dir("hops.js.err"), NULL), "");
}

/*
 * Every kind of hop, 2000 requests over 16 keep-alive connections: each of
 * the 18 lines of every request carries that request's ID, every response
 * echoes it. Outside any request: the line written before the server listens
 * passes through bare (it is no server yet), the one written once it listens
 * and the start-up timer's line say unknown.
 */
Test(node, every_line_after_every_kind_of_hop_carries_its_request_id)
{
	hops_run(0);
}

/*
 * The same server with stdout on a pipe, where process.stdout is a
 * net.Socket, and a reader that starts a second late: lines written while
 * the pipe is full wait in Node and reach write(2) later from the event
 * loop, each still in its request's context.
 */
Test(node, lines_written_to_a_pipe_stdout_carry_their_request_ids)
{
	hops_run(1);
}

/*
 * Writes a request makes reach the library in its context from any hop
 * (tests/node/writes.js): fs.writeSync on fd 1 and on a log file,
 * fs.appendFile and one-line fs.write calls (threadpool writes) in a timer
 * callback, a GET through an http.Agent from a promise continuation, and a
 * line logged in the request handler after an AsyncResource of an earlier
 * request ran and wrote inside it. 2000 requests over 16 connections, 7
 * lines each on stdout and 2 in the log file.
 */
Test(node, every_write_a_request_makes_carries_its_id_from_any_hop)
{
	char upa[16];
	const char *log = in_dir("app.log");
	int up, port;

	require_node();
	up = server("upstream.js", NULL, NULL, 0);
	snprintf(upa, sizeof(upa), "%d", up);
	port = server_with("writes.js", upa, log, NULL, 1, 0);
	load_is_clean2(port, 2000, 16, 9, in_dir("writes.js.out"), log);
	cr_assert_not_null(strstr(slurp(in_dir("writes.js.out"), NULL), "[req:unknown] startup: listening\n"));
	cr_assert_str_eq(slurp(in_dir("writes.js.err"), NULL), "");
}

/*
 * The hand-off (issue 15 item 10): lines logged right after res.end() carry
 * the request's ID, never one that a garbage-collection join queued from
 * another thread; 20,000 requests over 32 connections.
 */
Test(node, no_line_after_res_end_names_an_earlier_request)
{
	require_node();
	load_is_clean(server("after_end.js", NULL, NULL, 1), 20000, 32, 2, in_dir("after_end.js.out"));
}

/* Runs tests/node/env.js; returns its stdout. */
static char *env_js(const char *const *env, const char *lib, const char *extra)
{
	char *argv[] = { NODE, (char *)script("env.js"), (char *)extra, NULL };

	cr_assert_eq(run(argv, env, lib, in_dir("env.out"), in_dir("env.err")), 0, "%s",
		     slurp(in_dir("env.err"), NULL));
	return slurp(in_dir("env.out"), NULL);
}

/*
 * A user's NODE_OPTIONS keeps working under the preload: the heap limit it
 * sets and its --require'd file take effect as without the library, and the
 * adapter comes first and follows a timer in a request.
 */
Test(node, existing_node_options_keep_working)
{
	char opts[600], want[1200];
	const char *env[] = { opts, "REQCTX_LOG_FDS=1,2", NULL };
	char *plain, *with;

	require_node();
	snprintf(opts, sizeof(opts), "NODE_OPTIONS=--max-old-space-size=256 --require %s",
		 script("user_require.js"));
	plain = env_js(env, NULL, NULL);
	with = env_js(env, bpath("libreqctx.so"), "request");
	snprintf(want, sizeof(want),
		 "[req:unknown] user require ran\n"
		 "[req:unknown] NODE_OPTIONS=--require %s --max-old-space-size=256 --require %s\n"
		 "[req:unknown] adapter=1\n"
		 "[req:unknown] %s"
		 "[req:env-js-1] in a timer of the request\n",
		 bpath("reqctx-adapters/node/reqctx.js"), script("user_require.js"),
		 strstr(plain, "heap_limit_mb="));
	cr_assert_str_eq(with, want, "plain run:\n%s", plain);
	cr_assert_not_null(strstr(plain, "user require ran\n"));
	cr_assert_not_null(strstr(plain, "adapter=0\n"));
}

Test(node, runtimes_0_leaves_node_options_alone_and_loads_no_adapter)
{
	const char *env[] = { "REQCTX_RUNTIMES=0", "REQCTX_LOG_FDS=1,2", NULL };
	const char *want = "[req:unknown] NODE_OPTIONS unset\n[req:unknown] adapter=0\n";
	char *out;

	require_node();
	out = env_js(env, bpath("libreqctx.so"), NULL);
	cr_assert_eq(strncmp(out, want, strlen(want)), 0, "%s", out);
}

/* A child node started by a bootstrapped one inherits the --require once, and loads the adapter once. */
Test(node, children_are_not_bootstrapped_twice)
{
	const char *env[] = { "REQCTX_LOG_FDS=1,2", NULL };
	char want[1024];

	require_node();
	snprintf(want, sizeof(want), "child NODE_OPTIONS=--require %s adapter=1\n",
		 bpath("reqctx-adapters/node/reqctx.js"));
	cr_assert_not_null(strstr(env_js(env, bpath("libreqctx.so"), "child"), want), "%s",
			   slurp(in_dir("env.out"), NULL));
}

/* The adapter without the library: one line on stderr, and the program runs as it would. */
Test(node, an_adapter_that_cannot_load_says_so_in_one_line_and_node_runs_on)
{
	char opts[600];
	const char *env[] = { opts, NULL };
	char *argv[] = { NODE, "-e", "console.log('still running')", NULL };

	require_node();
	snprintf(opts, sizeof(opts), "NODE_OPTIONS=--require %s", bpath("reqctx-adapters/node/reqctx.js"));
	cr_assert_eq(run(argv, env, NULL, in_dir("out"), in_dir("err")), 0);
	cr_assert_str_eq(slurp(in_dir("out"), NULL), "still running\n");
	cr_assert_str_eq(slurp(in_dir("err"), NULL),
			 "reqctx: the Node adapter did not load (libreqctx.so is not loaded in this "
			 "process (LD_PRELOAD)); request IDs do not follow timers and promises\n");
}

/* A library installed without its adapters leaves NODE_OPTIONS alone and says nothing. */
Test(node, a_library_without_adapters_leaves_node_untouched)
{
	char cp[1024], lib[300];
	char *argv[] = { NODE, "-p", "process.env.NODE_OPTIONS", NULL };
	const char *env[] = { "REQCTX_LOG_FDS=9", NULL };

	require_node();
	snprintf(lib, sizeof(lib), "%s/libreqctx.so", dir);
	snprintf(cp, sizeof(cp), "cp %s %s", bpath("libreqctx.so"), lib);
	cr_assert_eq(system(cp), 0);
	cr_assert_eq(run(argv, env, lib, in_dir("out"), in_dir("err")), 0);
	cr_assert_str_eq(slurp(in_dir("out"), NULL), "undefined\n");
	cr_assert_str_eq(slurp(in_dir("err"), NULL), "");
}

/* A host that is neither Node nor Python gets neither variable. */
Test(node, other_hosts_are_untouched)
{
	char *argv[] = { "/usr/bin/env", NULL };
	const char *env[] = { "REQCTX_LOG_FDS=9", NULL };
	char *out;

	cr_assert_eq(run(argv, env, bpath("libreqctx.so"), in_dir("out"), in_dir("err")), 0);
	out = slurp(in_dir("out"), NULL);
	cr_assert_null(strstr(out, "NODE_OPTIONS="), "%s", out);
	cr_assert_null(strstr(out, "PYTHONPATH="), "%s", out);
}

/* reqctx doctor names the adapter a program gets; reqctx run sets it up. */
Test(node, doctor_and_run_name_the_node_adapter)
{
	char *argv[] = { (char *)bpath("reqctx"), "doctor", NODE, NULL };
	char *run_argv[] = { (char *)bpath("reqctx"), "run", "--", NODE, "-p", "process.env.NODE_OPTIONS", NULL };
	const char *env[] = { "REQCTX_LOG_FDS=9", NULL };
	char want[1024];

	require_node();
	cr_assert_eq(run(argv, NULL, NULL, in_dir("out"), in_dir("err")), 0);
	snprintf(want, sizeof(want), "  ok    adapter     node: %s, through NODE_OPTIONS=--require\n",
		 bpath("reqctx-adapters/node/reqctx.js"));
	cr_assert_not_null(strstr(slurp(in_dir("out"), NULL), want), "%s", slurp(in_dir("out"), NULL));
	cr_assert_eq(run(run_argv, env, NULL, in_dir("out"), in_dir("err")), 0);
	snprintf(want, sizeof(want), "--require %s\n", bpath("reqctx-adapters/node/reqctx.js"));
	cr_assert_str_eq(slurp(in_dir("out"), NULL), want);
}
