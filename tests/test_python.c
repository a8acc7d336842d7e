/*
 * The Python asyncio adapter (preload/python/) and its bootstrap: real
 * asyncio servers started under plain LD_PRELOAD (no PYTHONPATH of the
 * test's own: the library's constructor adds the adapter), driven by
 * loadcheck with 2000 requests over 16 keep-alive connections, half of them
 * with their own ID. Each request logs with `logging` before and after every
 * kind of hop (tests/python/hops.py): call_soon, call_later and call_at
 * callbacks, asyncio.sleep, a task step, gather, a task of its own,
 * run_in_executor and to_thread (the worker thread logs), a lock another
 * request releases, a pooled keep-alive upstream connection that requests
 * queue for, and a background task that logs after the response.
 *
 * Servers: aiohttp and uvicorn (asyncio's loop, and uvloop) on Debian's
 * /usr/bin/python3, and a standard-library server on the python3 that PATH
 * names (pyenv's, with a shared libpython, on the development machines).
 * The upstream (tests/python/upstream.py) runs without the library.
 */
#include <limits.h>

#include "servers.h"

#define PYTHON "/usr/bin/python3"
/* Requests per loadcheck run. */
#define REQUESTS 2000
/* Concurrent keep-alive connections per loadcheck run. */
#define CONNS 16
/* The upstream connections the servers' pools keep at most (tests/python). */
#define POOL 4
/* How long a server may take to stop after SIGTERM, in ms. */
#define STOP_MS 15000

static char adapter[160]; /* the adapter directory, as the library names it */

static void setup(void)
{
	char *r;

	srv_setup();
	/* The servers' environment is the test's: no PYTHONPATH of its own. */
	unsetenv("PYTHONPATH");
	r = realpath(bpath("reqctx-adapters/python"), NULL);
	cr_assert_not_null(r, "%s is not built: as root, run:\n  apt-get install -y python3-dev",
			   bpath("reqctx-adapters/python"));
	cr_assert_lt(strlen(r), sizeof(adapter), "%s: too long a path for this test", r);
	snprintf(adapter, sizeof(adapter), "%s", r);
	free(r);
	cr_assert_eq(access(path_in(adapter, "_reqctx.abi3.so"), R_OK), 0,
		     "%s/_reqctx.abi3.so is not built: as root, run:\n  apt-get install -y python3-dev", adapter);
}

TestSuite(python, .init = setup, .fini = srv_teardown, .timeout = 300);

static const char *script(const char *name)
{
	static char bufs[4][512];
	static int k;
	char *b = bufs[k++ & 3];

	snprintf(b, 512, "%s/../tests/python/%s", bdir(), name);
	return b;
}

/* Fails, naming the Debian package, unless `python` can import `module`. */
static void require_module(const char *python, const char *module, const char *pkg)
{
	char code[128];
	char *argv[] = { (char *)python, "-c", code, NULL };

	require(python, "python3");
	snprintf(code, sizeof(code), "import %s", module);
	if (proc_run(argv, NULL, 0, NULL, NULL) != 0)
		cr_assert_fail("%s cannot import %s; as root, run:\n  apt-get install -y %s", python, module, pkg);
}

/*
 * The interpreter `python3` on PATH stands for: its sys.executable, asked
 * without the library.
 */
static const char *path_python(void)
{
	static char exe[PATH_MAX];
	char *argv[] = { "/usr/bin/env", "python3", "-c", "import sys; print(sys.executable)", NULL };
	const char *out = path_in(srv_dir, "which.out");
	char *text;

	cr_assert_eq(proc_run(argv, NULL, 0, out, NULL), 0, "no python3 on PATH");
	text = slurp(out, NULL);
	text[strcspn(text, "\n")] = '\0';
	snprintf(exe, sizeof(exe), "%s", text);
	free(text);
	cr_assert(exe[0] == '/', "python3 on PATH says sys.executable is '%s'", exe);
	return exe;
}

/* ---- the servers ---------------------------------------------------------- */

struct py {
	pid_t pid;
	int port;
	int lines; /* lines it logs per request */
	char err[256];
};

/* The upstream, without the library; returns its port. */
static int upstream_start(void)
{
	char *argv[] = { PYTHON, (char *)script("upstream.py"), NULL };
	static const char *const env[] = { "PYTHONDONTWRITEBYTECODE=1", NULL };

	require(PYTHON, "python3");
	return spawn_and_read_port(argv, env, 0, path_in(srv_dir, "upstream.err"));
}

/*
 * Starts `python script --upstream PORT args...` under the library with env
 * added, and reads "port N lines K" from its stdout.
 */
static struct py py_start(const char *python, const char *name, int up_port, const char *const *args,
			  const char *const *env)
{
	const char *envp[16] = { "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1" };
	char *argv[16] = { (char *)python, (char *)script(name), "--upstream" }, up[16], buf[512];
	long end = proc_now_ms() + SRV_START_MS;
	struct py s;
	size_t len = 0;
	int a = 3, e = 2, p[2];
	const char *at;

	snprintf(up, sizeof(up), "%d", up_port);
	argv[a++] = up;
	for (; args && *args && a < 15; args++)
		argv[a++] = (char *)*args;
	argv[a] = NULL;
	for (; env && *env && e < 15; env++)
		envp[e++] = *env;
	envp[e] = NULL;
	snprintf(s.err, sizeof(s.err), "%s", path_in(srv_dir, "server.err"));
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	s.pid = spawn(argv, envp, 1, p[1], s.err);
	close(p[1]);
	out_fds[nout_fds++] = p[0];
	while (!memchr(buf, '\n', len)) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		long left = end - proc_now_ms();
		ssize_t n;

		cr_assert(left > 0 && poll(&pf, 1, (int)left) > 0, "%s printed no port; stderr:\n%s", name,
			  tail_of(s.err));
		n = read(p[0], buf + len, sizeof(buf) - 1 - len);
		cr_assert_gt(n, 0, "%s exited before listening; stderr:\n%s", name, tail_of(s.err));
		len += (size_t)n;
		buf[len] = '\0';
	}
	at = strstr(buf, "port ");
	cr_assert(at && sscanf(at, "port %d lines %d", &s.port, &s.lines) == 2, "%s said: %s", name, buf);
	cr_assert_eq(wait_listening(s.port, s.pid), 0, "%s exited; stderr:\n%s", name, tail_of(s.err));
	return s;
}

/* SIGTERM, and the server's clean exit. */
static void py_stop(struct py *s)
{
	int st;

	kill(s->pid, SIGTERM);
	st = proc_wait(s->pid, STOP_MS);
	group_forget(s->pid);
	guard_tell(-s->pid);
	cr_assert_eq(st, 0, "the server exited with %d; stderr:\n%s", st, tail_of(s->err));
}

/* The load, with every line and every response checked. */
static void py_load(struct py *s, const char *what)
{
	const char *const logv[] = { s->err, NULL };
	struct run r = loadcheck(s->port, REQUESTS, CONNS, "0.5", "/t/", s->lines, path_in(srv_dir, "ids"), logv);

	expect_clean(&r, REQUESTS, what, s->lines);
	free(r.out);
	free(r.err);
}

/* Whether line names one of loadcheck's requests ("tk<8 hex>n<8 digits>z"). */
static int names_request(const char *line)
{
	for (const char *t = line; (t = strstr(t, "tk")); t++) {
		size_t i = 2;

		while (i < 10 && isxdigit((unsigned char)t[i]))
			i++;
		if (i < 10 || t[i++] != 'n')
			continue;
		while (i < 19 && isdigit((unsigned char)t[i]))
			i++;
		if (i == 19 && t[i] == 'z')
			return 1;
	}
	return 0;
}

/* The value of "name=N" in the line, or -1. */
static long field(const char *line, const char *name)
{
	const char *at = strstr(line, name);

	return at ? strtol(at + strlen(name), NULL, 10) : -1;
}

/*
 * After the server stopped: no line outside a request carries a request's
 * ID. Lines logged before the server listened have no prefix at all (a
 * process is no server until then); every later one, the timer armed at
 * start-up ("tick") and the shutdown ("server stats"), says unknown. The
 * stats show that requests waited for a lock and for a pooled connection
 * another request released, and the upstream saw no more connections than
 * the pool keeps.
 */
static void py_expect_outside(struct py *s)
{
	char *text = slurp(s->err, NULL), *stats = NULL, *up;
	long ticks = 0, conns = 0;

	cr_assert_null(strstr(text, "Traceback"), "%s", tail_of(s->err));
	cr_assert_null(strstr(text, "reqctx: "), "%s", tail_of(s->err));
	for (char *l = text, *nl; *l; l = nl + 1) {
		nl = strchr(l, '\n');
		cr_assert_not_null(nl, "an unfinished line: %s", l);
		*nl = '\0';
		if (names_request(l))
			continue;
		if (!strncmp(l, "[req:", 5))
			cr_assert(!strncmp(l, "[req:unknown] ", 14), "outside any request: %s", l);
		if (!strncmp(l, "[req:unknown] app tick ", 23))
			ticks++;
		if (!strncmp(l, "[req:unknown] app server stats ", 31))
			stats = l;
	}
	cr_assert_gt(ticks, 0, "no tick of the start-up timer says unknown:\n%s", tail_of(s->err));
	cr_assert_not_null(stats, "no stats line says unknown:\n%s", tail_of(s->err));
	cr_assert_gt(field(stats, "lock_waits="), 0, "%s", stats);
	cr_assert_gt(field(stats, "pool_waits="), 0, "%s", stats);
	cr_log_info("%s (%ld ticks)", stats, ticks);
	free(text);
	up = slurp(path_in(srv_dir, "upstream.err"), NULL);
	for (char *l = up; (l = strstr(l, "conn ")); l++)
		conns++;
	cr_assert(conns >= 1 && conns <= POOL, "%ld upstream connections for %d requests", conns, REQUESTS);
	free(up);
}

/* A full run: start, load, stop, the lines outside requests. */
static void py_serve(const char *python, const char *name, const char *const *args, const char *const *env,
		     const char *what)
{
	int up = upstream_start();
	struct py s = py_start(python, name, up, args, env);

	py_load(&s, what);
	py_stop(&s);
	py_expect_outside(&s);
}

/* ---- servers -------------------------------------------------------------- */

/* aiohttp's server and client (ClientSession, TCPConnector(limit=4)) on the selector loop. */
Test(python, aiohttp_server_follows_every_hop)
{
	require_module(PYTHON, "aiohttp", "python3-aiohttp");
	py_serve(PYTHON, "aiohttp_server.py", NULL, NULL, "aiohttp");
}

/* uvicorn (h11) with --loop asyncio; the app calls the upstream with aiohttp. */
Test(python, uvicorn_on_the_asyncio_loop_follows_every_hop)
{
	static const char *const args[] = { "--loop", "asyncio", NULL };

	require_module(PYTHON, "uvicorn", "python3-uvicorn");
	require_module(PYTHON, "aiohttp", "python3-aiohttp");
	py_serve(PYTHON, "uvicorn_server.py", args, NULL, "uvicorn, asyncio loop");
}

/* uvicorn with --loop uvloop: uvloop.Loop's scheduling methods are the adapter's. */
Test(python, uvicorn_on_uvloop_follows_every_hop)
{
	static const char *const args[] = { "--loop", "uvloop", NULL };
	char *text;

	require_module(PYTHON, "uvloop", "python3-uvloop");
	require_module(PYTHON, "uvicorn", "python3-uvicorn");
	require_module(PYTHON, "aiohttp", "python3-aiohttp");
	py_serve(PYTHON, "uvicorn_server.py", args, NULL, "uvicorn, uvloop");
	text = slurp(path_in(srv_dir, "server.err"), NULL);
	cr_assert_not_null(strstr(text, "app server loop uvloop.Loop\n"), "the server did not run on uvloop");
	free(text);
}

/*
 * The standard-library server on the python3 PATH names (pyenv's 3.11.7,
 * with a shared libpython, on the development machines; Debian's where it
 * is the only one).
 */
Test(python, stdlib_server_on_the_python3_on_path_follows_every_hop)
{
	const char *py = path_python();

	cr_log_info("python3 on PATH: %s", py);
	py_serve(py, "asyncio_server.py", NULL, NULL, "stdlib asyncio, python3 on PATH");
}

/* The host's own sitecustomize (on its PYTHONPATH) still runs, and the adapter with it. */
Test(python, the_hosts_own_sitecustomize_still_runs)
{
	char pp[600], want[700], *text, *site = realpath(script("site"), NULL);
	const char *env[] = { pp, NULL };

	cr_assert_not_null(site);
	snprintf(pp, sizeof(pp), "PYTHONPATH=%s", script("site"));
	/* Python makes the entries of PYTHONPATH absolute. */
	snprintf(want, sizeof(want), "sitecustomize %s/sitecustomize.py\n", site);
	free(site);
	py_serve(PYTHON, "asyncio_server.py", NULL, env, "stdlib asyncio, the host's sitecustomize");
	text = slurp(path_in(srv_dir, "server.err"), NULL);
	cr_assert_not_null(strstr(text, "user sitecustomize ran\n"), "%s", tail_of(path_in(srv_dir, "server.err")));
	cr_assert_not_null(strstr(text, want), "expected '%s' in:\n%s", want, tail_of(path_in(srv_dir, "server.err")));
	free(text);
}

/*
 * Without the adapter (REQCTX_RUNTIMES=0), lines after a hop carry another
 * request's ID: what the adapter is for, and proof that the checks above
 * would see it missing.
 */
Test(python, without_the_adapter_lines_after_hops_carry_other_requests)
{
	static const char *const env[] = { "REQCTX_RUNTIMES=0", NULL };
	const char *logv[2];
	struct py s;
	struct run r;

	require_module(PYTHON, "aiohttp", "python3-aiohttp");
	s = py_start(PYTHON, "aiohttp_server.py", upstream_start(), NULL, env);
	logv[0] = s.err;
	logv[1] = NULL;
	r = loadcheck(s.port, REQUESTS, CONNS, "0.5", "/t/", s.lines, path_in(srv_dir, "ids"), logv);
	cr_assert_eq(r.status, 1, "loadcheck: %s%s", r.out, r.err);
	cr_assert_gt(field(r.out, " wrong="), 0, "%s", r.out);
	cr_assert_eq(field(r.out, " failed="), 0, "%s", r.out);
	cr_log_info("without the adapter: %s", r.out);
	py_stop(&s);
}

/* ---- the bootstrap -------------------------------------------------------- */

/*
 * Runs probe.py (--spawn if spawn_child) with env, preloading lib (NULL: the
 * build's library; "": none). Returns its stdout, and its stderr in *err.
 */
static char *probe(const char *python, const char *const *env, const char *lib, int spawn_child, char **err)
{
	char lp[PATH_MAX + 16], *envp[16], *text;
	char *argv[] = { (char *)python, (char *)script("probe.py"), spawn_child ? "--spawn" : NULL, NULL };
	int n = 0, st;

	envp[n++] = "PYTHONDONTWRITEBYTECODE=1";
	envp[n++] = "REQCTX_LOG_FDS"; /* not a server: its fd 1 and 2 stay bare */
	if (lib) {
		snprintf(lp, sizeof(lp), "LD_PRELOAD=%s", lib);
		envp[n++] = lp;
	}
	for (; env && *env && n < 15; env++)
		envp[n++] = (char *)*env;
	envp[n] = NULL;
	st = proc_run(argv, (const char *const *)envp, !lib, path_in(srv_dir, "probe.out"),
		      path_in(srv_dir, "probe.err"));
	text = slurp(path_in(srv_dir, "probe.err"), NULL);
	cr_assert_eq(st, 0, "probe.py exited with %d:\n%s", st, text);
	if (err)
		*err = text;
	else
		free(text);
	return slurp(path_in(srv_dir, "probe.out"), NULL);
}

/*
 * The library puts the adapter first on PYTHONPATH for Python, once; the
 * host sees its own PYTHONPATH in os.environ, and a child it starts, which
 * inherits the library, gets the adapter again, once.
 */
Test(python, a_host_and_its_children_get_the_adapter_once)
{
	static const char *const env[] = { "PYTHONPATH=/nonexistent/host-path", NULL };
	/* Debian's own sitecustomize, if there is one, is the one Python keeps; else ours. */
	const char *debian = "/usr/lib/python3.11/sitecustomize.py";
	const char *site = access(debian, R_OK) == 0 ? debian : path_in(adapter, "sitecustomize.py");
	char one[1024], want[2 * sizeof(one) + 32], *out, *err;

	snprintf(one, sizeof(one),
		 "{\"adapter\": true, \"dirs\": [\"%s\"], \"pythonpath\": \"/nonexistent/host-path\", "
		 "\"run\": \"ran\", \"sitecustomize\": \"%s\"}", adapter, site);
	snprintf(want, sizeof(want), "{\"child\": %s, \"self\": %s}\n", one, one);
	out = probe(PYTHON, env, NULL, 1, &err);
	cr_assert_str_eq(out, want);
	cr_assert_str_eq(err, "");
	free(out);
	free(err);
}

/* REQCTX_RUNTIMES=0 (and REQCTX_DISABLE=1): Python runs exactly as without the library's adapter. */
Test(python, reqctx_runtimes_0_leaves_python_alone)
{
	static const char *const off[][2] = { { "REQCTX_RUNTIMES=0", NULL }, { "REQCTX_DISABLE=1", NULL } };
	char *plain = probe(PYTHON, NULL, "", 0, NULL);

	cr_assert_not_null(strstr(plain, "\"adapter\": false, \"dirs\": [], \"pythonpath\": null"), "%s", plain);
	for (int i = 0; i < 2; i++) {
		char *err, *out = probe(PYTHON, off[i], NULL, 0, &err);

		cr_assert_str_eq(out, plain, "%s:\n%s%s", off[i][0], out, plain);
		cr_assert_str_eq(err, "", "%s: %s", off[i][0], err);
		free(out);
		free(err);
	}
	free(plain);
}

/*
 * A host sitecustomize that raises is reported by Python exactly as without
 * reqctx ("Error in sitecustomize ..."), and the adapter is in all the same.
 */
Test(python, a_failing_host_sitecustomize_is_reported_as_without_reqctx)
{
	char pp[600], *env[] = { pp, NULL }, *with_err, *without_err, *with, *without;

	snprintf(pp, sizeof(pp), "PYTHONPATH=%s", script("raising"));
	without = probe(PYTHON, (const char *const *)env, "", 0, &without_err);
	with = probe(PYTHON, (const char *const *)env, NULL, 0, &with_err);
	cr_assert_str_eq(without_err, "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
				      "RuntimeError: the host sitecustomize failed\n");
	cr_assert_str_eq(with_err, without_err);
	cr_assert_not_null(strstr(with, "\"adapter\": true"), "%s", with);
	cr_assert_not_null(strstr(without, "\"adapter\": false"), "%s", without);
	free(with);
	free(without);
	free(with_err);
	free(without_err);
}

/* Copies file from to to, with mode. */
static void copy_file(const char *from, const char *to, mode_t mode)
{
	size_t n;
	char *data = slurp(from, &n);

	write_file(to, data, n);
	cr_assert_eq(chmod(to, mode), 0);
	free(data);
}

/*
 * An adapter that cannot load (here an extension that is no ELF file, next
 * to a copy of the library) says so in one line on stderr, and Python runs
 * as it would without it.
 */
Test(python, an_adapter_that_cannot_load_says_so_once_and_python_runs_on)
{
	static const char *const names[] = { "sitecustomize.py", "_reqctx_asyncio.py" };
	char lib[128], dir[128], *err, *out;

	snprintf(lib, sizeof(lib), "%s", path_in(srv_dir, "lib"));
	snprintf(dir, sizeof(dir), "%s", path_in(srv_dir, "lib/reqctx-adapters/python"));
	cr_assert_eq(mkdir(lib, 0755), 0);
	cr_assert_eq(mkdir(path_in(lib, "reqctx-adapters"), 0755), 0);
	cr_assert_eq(mkdir(dir, 0755), 0);
	for (int i = 0; i < 2; i++)
		copy_file(path_in(adapter, names[i]), path_in(dir, names[i]), 0644);
	write_file(path_in(dir, "_reqctx.abi3.so"), "not an ELF file\n", 16);
	copy_file(bpath("libreqctx.so"), path_in(lib, "libreqctx.so"), 0755);
	out = probe(PYTHON, NULL, path_in(lib, "libreqctx.so"), 0, &err);
	cr_assert_not_null(strstr(out, "\"adapter\": false"), "%s", out);
	cr_assert_not_null(strstr(out, "\"run\": \"ran\""), "%s", out);
	cr_assert(!strncmp(err, "reqctx: the Python adapter cannot load (ImportError: ", 52), "%s", err);
	cr_assert_not_null(strstr(err, "); asyncio callbacks are not followed\n"), "%s", err);
	cr_assert_eq(strchr(err, '\n') + 1, err + strlen(err), "more than one line:\n%s", err);
	free(out);
	free(err);
}
