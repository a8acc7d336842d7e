/*
 * Real servers under plain LD_PRELOAD, from Debian's packages and with their
 * stock logging: nginx (a master and two forked workers, access and error
 * logs, keep-alive, sendfile on and off, a slow proxied upstream, buffered
 * access logs), python3 -m http.server (a thread per connection, logging on
 * stderr), Apache's event MPM with BufferedLogs On and lighttpd's buffered
 * mod_accesslog. loadcheck drives each with thousands of requests over
 * dozens of keep-alive connections and checks every log line that names a
 * request.
 *
 * The servers run under tests/servers.h's guard: nothing outlives the test.
 */
#include "servers.h"

#define NGINX "/usr/sbin/nginx"
#define PYTHON "/usr/bin/python3"
#define LIGHTTPD "/usr/sbin/lighttpd"
#define APACHE "/usr/sbin/apache2"
#define APACHE_MODS "/usr/lib/apache2/modules"

/* Requests per loadcheck run. */
#define REQUESTS 5000
/* Concurrent keep-alive connections per loadcheck run. */
#define CONNS 32
/* Connections for the proxied run, so that more requests wait on the upstream at once. */
#define PROXY_CONNS 64
/* Requests that must have been waiting on the upstream at once, at some point of the proxied run. */
#define MIN_INFLIGHT 8
/* The slow upstream's delay per request, in ms. */
#define UP_MIN_MS 20
#define UP_MAX_MS 50
/* Size of the static file of random bytes. */
#define BIG_SIZE (1 << 20)
/* Requests for the static file per check. */
#define BIG_GETS 4
/* Attempts at starting nginx on a free port. */
#define PORT_TRIES 5
/* Requests to the CGI script per lighttpd run. */
#define CGI_GETS 20
/* Requests and keep-alive connections per run against a buffered access log. */
#define BUF_REQUESTS 4000
#define BUF_CONNS 16
/* The same for the run with REQCTX_CORRELATE=0 that shows the log is written in batches. */
#define CONTROL_REQUESTS 1000

static const char *dir;
static char html[128], logs[128];
static unsigned char *big;

/* The slow upstream: srv_slow, without the library. */
static int upstream_start(void)
{
	char prog[512], lo[16], hi[16];
	char *argv[] = { prog, "--overrun", "--min-ms", lo, "--max-ms", hi, "--stats",
			 (char *)path_in(dir, "upstream.stats"), NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O0/srv_slow", bdir());
	snprintf(lo, sizeof(lo), "%d", UP_MIN_MS);
	snprintf(hi, sizeof(hi), "%d", UP_MAX_MS);
	return spawn_and_read_port(argv, NULL, 0, path_in(dir, "upstream.err"));
}

/* ---- nginx ---------------------------------------------------------------- */

static pid_t nginx_pid;
/* The access_log directive after its path, and http-level directives before it. */
static const char *ngx_access = "combined";
static const char *ngx_http = "";
/* More environment for nginx (NULL-terminated, or NULL). */
static const char *const *ngx_env;

/*
 * The config: two workers under a master in the foreground, every path under
 * the test's directory, the error log at info, the stock combined access log
 * (or ngx_access, after ngx_http's directives).
 *   /t/...          missing files: nginx logs "open() ... failed" with the
 *                   request line at error level, then serves ok.txt (200);
 *   /p/...          proxied to the slow upstream, which sends more than its
 *                   Content-Length: nginx warns about it with the request line;
 *   /sendfile-on/, /sendfile-off/   the static root, with sendfile on and off.
 */
static void nginx_write_conf(int port, int up_port)
{
	char conf[4096];
	int n;

	n = snprintf(conf, sizeof(conf),
		     SRV_NGINX_MAIN
		     "%6$s"
		     "  access_log %2$s/access.log %7$s;\n"
		     SRV_NGINX_TEMPS
		     "  keepalive_timeout 60s;\n"
		     "  keepalive_requests 100000;\n"
		     "  server {\n"
		     "    listen 127.0.0.1:%3$d reuseport;\n"
		     "    root %4$s;\n"
		     "    location /t/ { error_page 404 =200 /ok.txt; }\n"
		     "    location = /ok.txt { }\n"
		     "    location /p/ { proxy_pass http://127.0.0.1:%5$d; }\n"
		     "    location /sendfile-on/ { sendfile on; alias %4$s/; }\n"
		     "    location /sendfile-off/ { sendfile off; alias %4$s/; }\n"
		     "  }\n"
		     "}\n",
		     dir, logs, port, html, up_port, ngx_http, ngx_access);
	cr_assert_lt(n, (int)sizeof(conf));
	write_file(path_in(dir, "nginx.conf"), conf, (size_t)n);
}

/*
 * Starts nginx under the library; returns its port. Picks a free port and
 * tries again with another when something takes it first.
 */
static int nginx_start(int up_port)
{
	require(NGINX, "nginx-light");
	for (int t = 0; t < PORT_TRIES; t++) {
		int port = free_port();
		pid_t pid;

		nginx_write_conf(port, up_port);
		if ((pid = srv_nginx(dir, logs, ngx_env, 1, &port, 1)) > 0) {
			nginx_pid = pid;
			return port;
		}
	}
	cr_assert_fail("nginx found no free port in %d tries", PORT_TRIES);
	return -1;
}

/* No worker crashed ("worker process N exited on signal") and nothing went critically wrong. */
static void nginx_expect_no_alerts(void)
{
	static const char *const levels[] = { " [alert] ", " [crit] ", " [emerg] " };
	char *text = slurp(path_in(logs, "error.log"), NULL);

	for (int i = 0; i < 3; i++) {
		const char *at = strstr(text, levels[i]);

		cr_expect_null(at, "error.log:%.*s", at ? (int)strcspn(at, "\n") : 0, at);
	}
	free(text);
}

/* Adds v to the set s of *n values (at most max); returns *n. */
static int set_add(long *s, int *n, int max, long v)
{
	int j;

	for (j = 0; j < *n && s[j] != v; j++)
		;
	if (j == *n && *n < max)
		s[(*n)++] = v;
	return *n;
}

/*
 * Reads the error-level lines ("[error] PID#TID: *CONN open() ... failed"):
 * sets *workers to the distinct processes that logged them, none of which
 * may be the master, and *conns to the distinct connections they name.
 */
static void nginx_error_lines(int *workers, int *conns)
{
	char *text = slurp(path_in(logs, "error.log"), NULL);
	long pids[16], cs[1024];

	*workers = *conns = 0;
	for (char *l = text; (l = strstr(l, " [error] ")); l++) {
		char *e;
		long pid = strtol(l + 9, &e, 10);
		char *star = strstr(e, ": *");

		cr_assert_neq(pid, (long)nginx_pid, "the master served a request");
		set_add(pids, workers, 16, pid);
		cr_assert_not_null(star);
		set_add(cs, conns, 1024, strtol(star + 3, NULL, 10));
	}
	free(text);
}

/* ---- lighttpd with mod_cgi ----------------------------------------------- */

/*
 * A CGI script whose stdout is the response: a head with its own
 * Content-Length and a body that looks like another response head, so that
 * any byte the library put into it would show. Its stderr line names the
 * request's query string.
 */
static const char cgi_script[] =
	"#!/bin/sh\n"
	"echo \"cgi stderr line for $QUERY_STRING id=$HTTP_X_REQUEST_ID\" >&2\n"
	"body=\"body $QUERY_STRING\nHTTP/1.1 200 OK\r\nX-Request-Id: forged\r\n\r\n\"\n"
	"printf 'Content-Type: text/plain\\r\\nContent-Length: %d\\r\\n\\r\\n%s' \"${#body}\" \"$body\"\n";

/*
 * Starts lighttpd (under the library or not) with mod_cgi serving the .cgi files;
 * returns its port. Its stderr, where the CGI scripts' stderr goes, is
 * logs/lighttpd.err.
 */
static pid_t lighttpd_pid;

/*
 * lighttpd_start with mod_accesslog writing logs/access.log in its default
 * format (which buffers: lines go out many at a time), and env added.
 */
static int lighttpd_start_with(int preload, int accesslog, const char *const *env)
{
	require(LIGHTTPD, "lighttpd");
	for (int t = 0; t < PORT_TRIES; t++) {
		int port = free_port();
		char conf[1024];
		char *argv[] = { LIGHTTPD, "-D", "-f", (char *)path_in(dir, "lighttpd.conf"), NULL };
		int n = snprintf(conf, sizeof(conf),
				 "server.document-root = \"%s\"\n"
				 "server.bind = \"127.0.0.1\"\n"
				 "server.port = %d\n"
				 "server.modules = (\"mod_cgi\"%s)\n"
				 "server.errorlog = \"%s/lighttpd-error.log\"\n"
				 "cgi.assign = (\".cgi\" => \"\")\n"
				 "%s%s%s",
				 html, port, accesslog ? ", \"mod_accesslog\"" : "", logs,
				 accesslog ? "accesslog.filename = \"" : "", accesslog ? logs : "",
				 accesslog ? "/access.log\"\n" : "");
		pid_t pid;

		cr_assert_lt(n, (int)sizeof(conf));
		write_file(path_in(dir, "lighttpd.conf"), conf, (size_t)n);
		pid = spawn(argv, env, preload, -1, path_in(logs, "lighttpd.err"));
		if (wait_listening(port, pid) == 0) {
			lighttpd_pid = pid;
			return port;
		}
	}
	cr_assert_fail("lighttpd found no free port in %d tries", PORT_TRIES);
	return -1;
}

static int lighttpd_start(int preload)
{
	return lighttpd_start_with(preload, 0, NULL);
}

/* ---- Apache's event MPM ----------------------------------------------------- */

static pid_t apache_pid;

/*
 * Starts Apache in the foreground under the library (env added): the event
 * MPM, one child of 16 threads, keep-alive without a limit, the common log
 * format with BufferedLogs On (lines go out when the buffer is full, or when
 * the child exits). Returns its port.
 */
static int apache_start(const char *const *env)
{
	require(APACHE, "apache2-bin");
	for (int t = 0; t < PORT_TRIES; t++) {
		int port = free_port();
		char conf[2048];
		char *argv[] = { APACHE, "-f", (char *)path_in(dir, "httpd.conf"), "-DFOREGROUND", NULL };
		int n = snprintf(conf, sizeof(conf),
				 "ServerRoot %1$s\n"
				 "Listen 127.0.0.1:%2$d\n"
				 "PidFile %1$s/httpd.pid\n"
				 "LoadModule mpm_event_module " APACHE_MODS "/mod_mpm_event.so\n"
				 "LoadModule authz_core_module " APACHE_MODS "/mod_authz_core.so\n"
				 "LoadModule mime_module " APACHE_MODS "/mod_mime.so\n"
				 "TypesConfig /etc/mime.types\n"
				 "User nobody\n"
				 "Group nogroup\n"
				 "ServerName localhost\n"
				 "DocumentRoot %3$s\n"
				 "<Directory %3$s>\n  Require all granted\n</Directory>\n"
				 "ErrorLog %4$s/apache-error.log\n"
				 "LogFormat \"%%h %%l %%u %%t \\\"%%r\\\" %%>s %%b\" common\n"
				 "CustomLog %4$s/access.log common\n"
				 "BufferedLogs On\n"
				 "KeepAlive On\n"
				 "MaxKeepAliveRequests 0\n"
				 "StartServers 1\n"
				 "ServerLimit 1\n"
				 "ThreadsPerChild 16\n"
				 "MaxRequestWorkers 16\n",
				 dir, port, html, logs);
		pid_t pid;

		cr_assert_lt(n, (int)sizeof(conf));
		write_file(path_in(dir, "httpd.conf"), conf, (size_t)n);
		unlink(path_in(logs, "access.log"));
		pid = spawn(argv, env, 1, -1, path_in(dir, "apache.out"));
		if (wait_listening(port, pid) == 0) {
			apache_pid = pid;
			return port;
		}
	}
	cr_assert_fail("apache found no free port in %d tries", PORT_TRIES);
	return -1;
}

/* CGI_GETS requests to the script over one keep-alive connection; the responses in r. */
static void cgi_gets(int port, struct resp *r)
{
	int fd = http_open(port);

	for (int i = 0; i < CGI_GETS; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/t.cgi?cgitk%d", i);
		http_get(fd, path, NULL, &r[i]);
	}
	close(fd);
}

/*
 * lighttpd keeps LD_PRELOAD in a CGI child's environment but drops REQCTX_*:
 * the child must still know its stdout is the response (GATEWAY_INTERFACE
 * tells it). Every response is the plain run's, byte for byte, plus the one
 * echoed header. The script starts in its request: its stderr line carries
 * the ID the response echoed, and it reads that ID the CGI way, in
 * HTTP_X_REQUEST_ID, although the client sent none.
 */
Test(lighttpd, cgi_responses_are_byte_identical_and_the_script_logs_in_its_request)
{
	struct resp plain[CGI_GETS], pre[CGI_GETS];
	char ids[CGI_GETS][160];
	char *err;

	write_file(path_in(html, "t.cgi"), cgi_script, sizeof(cgi_script) - 1);
	cr_assert_eq(chmod(path_in(html, "t.cgi"), 0755), 0);
	cgi_gets(lighttpd_start(0), plain);
	group_stop(groups[--ngroups]);
	cgi_gets(lighttpd_start(1), pre);
	for (int i = 0; i < CGI_GETS; i++) {
		cr_assert_eq(plain[i].status, 200, "plain run, request %d: status %d", i, plain[i].status);
		cr_assert_eq(plain[i].nids, 0);
		cr_assert_eq(pre[i].status, 200, "request %d: status %d", i, pre[i].status);
		cr_assert_eq(pre[i].nids, 1, "request %d: %d X-Request-Id headers", i, pre[i].nids);
		cr_assert(is_uuid4(pre[i].id, strlen(pre[i].id)), "request %d: echoed %s", i, pre[i].id);
		snprintf(ids[i], sizeof(ids[i]), "%s", pre[i].id);
		cr_assert_eq(pre[i].clen, plain[i].clen, "request %d: Content-Length", i);
		cr_assert_eq(memcmp(pre[i].body, plain[i].body, (size_t)plain[i].clen), 0,
			     "request %d: body differs:\n%.*s", i, (int)pre[i].clen, pre[i].body);
		free(plain[i].body);
		free(pre[i].body);
	}
	err = slurp(path_in(logs, "lighttpd.err"), NULL);
	for (int i = 0; i < CGI_GETS; i++) {
		char line[512];

		snprintf(line, sizeof(line), "[req:%s] cgi stderr line for cgitk%d id=%s\n", ids[i], i,
			 ids[i]);
		cr_assert_not_null(strstr(err, line), "no %s in lighttpd's stderr:\n%s", line, err);
	}
	free(err);
}

/* ---- python3 -m http.server ----------------------------------------------- */

static int python_start(void)
{
	char *argv[] = { PYTHON, "-m", "http.server", "--bind", "127.0.0.1", "--directory", html,
			 "--protocol", "HTTP/1.1", "0", NULL };
	static const char *const env[] = { "PYTHONUNBUFFERED=1", NULL };

	require(PYTHON, "python3");
	return spawn_and_read_port(argv, env, 1, path_in(logs, "python.err"));
}

/*
 * GETs the 1 MiB file BIG_GETS times over one keep-alive connection, half the
 * times with a client ID: every body is the file's bytes, every response
 * carries exactly one X-Request-Id (the client's, or a fresh UUIDv4), and the
 * log line naming each request carries that ID.
 */
static void big_file_arrives_intact(int port, const char *url, const char *log)
{
	int fd = http_open(port);

	for (int i = 0; i < BIG_GETS; i++) {
		char path[256], tk[64], cid[64], prefix[200], *line;
		struct resp r;

		snprintf(tk, sizeof(tk), "bigtk%dp%d", i, (int)getpid());
		snprintf(cid, sizeof(cid), "big-client-%d-%d", i, (int)getpid());
		snprintf(path, sizeof(path), "%s?%s", url, tk);
		http_get(fd, path, i % 2 ? cid : NULL, &r);
		cr_assert_eq(r.status, 200, "GET %s: status %d", path, r.status);
		cr_assert_eq(r.nids, 1, "GET %s: %d X-Request-Id headers", path, r.nids);
		if (i % 2)
			cr_assert_str_eq(r.id, cid, "GET %s: the client's ID was not kept", path);
		else
			cr_assert(is_uuid4(r.id, strlen(r.id)), "GET %s: echoed ID %s", path, r.id);
		cr_assert_eq(r.clen, BIG_SIZE, "GET %s: Content-Length %ld", path, r.clen);
		for (long b = 0; b < BIG_SIZE; b++)
			cr_assert_eq(r.body[b], big[b], "GET %s: body differs from the file at byte %ld", path, b);
		snprintf(prefix, sizeof(prefix), "[req:%s] ", r.id);
		line = line_naming(log, tk);
		cr_assert_eq(strncmp(line, prefix, strlen(prefix)), 0, "expected %s: %s", prefix, line);
		free(line);
		free(r.body);
	}
	close(fd);
}

/* ---- the fixture ---------------------------------------------------------- */

static void setup(void)
{
	/* nginx's workers drop root for nobody, who must reach the static root (0755). */
	srv_setup();
	dir = srv_dir;
	srv_site(html, logs, sizeof(html));
	big = malloc(BIG_SIZE);
	srv_random(big, BIG_SIZE);
	write_file(path_in(html, "big.bin"), big, BIG_SIZE);
}

static void teardown(void)
{
	srv_teardown();
	free(big);
	big = NULL;
}

TestSuite(nginx, .init = setup, .fini = teardown, .timeout = 150);
TestSuite(lighttpd, .init = setup, .fini = teardown, .timeout = 150);
TestSuite(python, .init = setup, .fini = teardown, .timeout = 150);
TestSuite(apache, .init = setup, .fini = teardown, .timeout = 150);

/* ---- buffered access logs ------------------------------------------------- */

static const char *const no_correlation[] = { "REQCTX_CORRELATE=0", NULL };

/* The count loadcheck's summary gives for key ("wrong", ...). */
static long count_of(const char *out, const char *key)
{
	char k[32];
	const char *at;

	snprintf(k, sizeof(k), " %s=", key);
	at = strstr(out, k);
	cr_assert_not_null(at, "no %s in: %s", key, out);
	return strtol(at + strlen(k), NULL, 10);
}

/*
 * loadcheck against a server whose access log is buffered: requests over
 * BUF_CONNS keep-alive connections, half with the client's own ID; then the
 * server is stopped with `sig` (it writes what its buffer holds) and every
 * line is checked. tkhdr: the tokens go in that header (one request line for
 * all). Returns loadcheck's run.
 */
static struct run buffered_run(int port, pid_t pid, int sig, long requests, const char *path,
			       const char *tkhdr, int lines, const char *const *logv)
{
	char stop[32];
	const char *extra[] = { "--settle-ms", "1500", "--stop", stop, tkhdr ? "--token-header" : NULL, tkhdr,
				NULL };

	snprintf(stop, sizeof(stop), "%d:%d", (int)pid, sig);
	return loadcheck_ext(port, requests, BUF_CONNS, "0.5", path, lines, path_in(dir, "ids"), logv, extra);
}

/*
 * The same run without correlation (REQCTX_CORRELATE=0) gets lines wrong:
 * the log really is written in batches, in other requests' turns.
 */
static void control_is_wrong(struct run *r, const char *what)
{
	long bad = count_of(r->out, "wrong") + count_of(r->out, "unknown");

	cr_assert_gt(bad, 0, "%s with REQCTX_CORRELATE=0: no line was wrong, so none was batched: %s", what,
		     r->out);
	cr_assert_eq(count_of(r->out, "failed"), 0, "%s: %s%s", what, r->out, r->err);
	cr_log_info("%s, REQCTX_CORRELATE=0: %.*s", what, (int)strcspn(r->out, "\n"), r->out);
}

/*
 * nginx with a buffered access log: lines are written 16 KiB at a time, in
 * the turn of the request that fills the buffer, by the one-second flush
 * timer, or when the worker exits (SIGQUIT). Every access line carries the
 * ID of the request it records, and so does every error-log line; every
 * response echoes it. Without correlation, batched lines are wrong.
 */
static void nginx_buffered(const char *access, const char *http, const char *path, const char *tkhdr,
			   int lines, const char *what)
{
	char al[256], el[256];
	const char *const both[] = { al, el, NULL };
	const char *const acc[] = { al, NULL };
	struct run r;
	int port;

	snprintf(al, sizeof(al), "%s/access.log", logs); /* (path_in's buffers are reused) */
	snprintf(el, sizeof(el), "%s/error.log", logs);
	ngx_access = access;
	ngx_http = http;
	ngx_env = no_correlation;
	port = nginx_start(free_port());
	r = buffered_run(port, nginx_pid, SIGQUIT, CONTROL_REQUESTS, path, tkhdr, lines,
			 lines == 2 ? both : acc);
	control_is_wrong(&r, what);
	ngx_env = NULL;
	port = nginx_start(free_port());
	r = buffered_run(port, nginx_pid, SIGQUIT, BUF_REQUESTS, path, tkhdr, lines, lines == 2 ? both : acc);
	expect_clean(&r, BUF_REQUESTS, what, lines);
	nginx_expect_no_alerts();
}

Test(nginx, buffered_access_log_lines_carry_the_ids_of_their_requests)
{
	nginx_buffered("combined buffer=16k flush=1s", "", "/t/", NULL, 2, "nginx, buffer=16k flush=1s");
}

/*
 * An access log written gzip-compressed (`gzip flush=1s`): nginx writes
 * gzip members, which reqctx leaves exactly as they are (a prefix would
 * break the stream). The log decompresses whole, one line per request and
 * none prefixed; the error log still carries every request's ID.
 */
Test(nginx, a_gzip_access_log_is_left_a_valid_gzip_stream)
{
	char al[256], el[256], cmd[600], line[1024];
	const char *const elv[] = { el, NULL };
	struct run r;
	long lines = 0, named = 0;
	FILE *p;
	int port;

	snprintf(al, sizeof(al), "%s/access.log", logs);
	snprintf(el, sizeof(el), "%s/error.log", logs);
	ngx_access = "combined gzip flush=1s";
	port = nginx_start(free_port());
	r = buffered_run(port, nginx_pid, SIGQUIT, BUF_REQUESTS, "/t/", NULL, 1, elv);
	expect_clean(&r, BUF_REQUESTS, "nginx, gzip access log: the error log", 1);
	snprintf(cmd, sizeof(cmd), "gzip -dc '%s' 2>&1", al);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p)) {
		lines++;
		cr_assert_neq(strncmp(line, "[req:", 5), 0, "a prefixed line in the gzip log: %s", line);
		if (strstr(line, "\"GET /t/") && strstr(line, " HTTP/1.1\" 200 "))
			named++;
	}
	cr_assert_eq(pclose(p), 0, "gzip -dc failed: the stream is not valid (%ld lines read)", lines);
	cr_assert_eq(lines, BUF_REQUESTS);
	cr_assert_eq(named, BUF_REQUESTS);
	nginx_expect_no_alerts();
}

/*
 * A custom log_format with $request in the middle of the line, unquoted,
 * and the status elsewhere; gzip off.
 */
Test(nginx, a_custom_format_with_the_request_line_in_the_middle)
{
	nginx_buffered("mid buffer=16k flush=1s",
		       "  gzip off;\n"
		       "  log_format mid 'ip=$remote_addr t=$msec $request s=$status b=$body_bytes_sent "
		       "ua=\"$http_user_agent\"';\n",
		       "/t/", NULL, 2, "nginx, $request in the middle");
}

/*
 * Every request has the same request line ("GET /ok.txt HTTP/1.1"; the
 * token is in a header the format logs): the lines go to their requests in
 * the order their responses completed, which is the order nginx logs them.
 */
Test(nginx, identical_request_lines_each_get_their_own_request)
{
	nginx_buffered("tk buffer=16k flush=1s",
		       "  log_format tk '$remote_addr \"$request\" $status $body_bytes_sent tk=$http_x_tk';\n",
		       "/ok.txt", "X-Tk", 1, "nginx, identical request lines");
}

/*
 * Apache's event MPM with BufferedLogs On: 16 threads append to the child's
 * buffer, which goes out when full, in whichever thread fills it, and when
 * the child exits (a graceful stop, SIGWINCH). Without correlation, every
 * line the buffer held at the stop says "unknown".
 */
Test(apache, buffered_logs_lines_carry_the_ids_of_their_requests)
{
	char al[256];
	const char *const lv[] = { al, NULL };
	struct run r;
	int port;

	snprintf(al, sizeof(al), "%s/access.log", logs);
	port = apache_start(no_correlation);
	r = buffered_run(port, apache_pid, SIGWINCH, CONTROL_REQUESTS, "/ok.txt?", NULL, 1, lv);
	control_is_wrong(&r, "apache, BufferedLogs On");
	port = apache_start(NULL);
	r = buffered_run(port, apache_pid, SIGWINCH, BUF_REQUESTS, "/ok.txt?", NULL, 1, lv);
	expect_clean(&r, BUF_REQUESTS, "apache, BufferedLogs On", 1);
}

/*
 * lighttpd's mod_accesslog buffers by default (lines go out about once a
 * second, many at a time, and at exit): every line carries its request's ID.
 */
Test(lighttpd, accesslog_lines_carry_the_ids_of_their_requests)
{
	char al[256];
	const char *const lv[] = { al, NULL };
	struct run r;
	int port;

	snprintf(al, sizeof(al), "%s/access.log", logs);
	port = lighttpd_start_with(1, 1, no_correlation);
	r = buffered_run(port, lighttpd_pid, SIGTERM, CONTROL_REQUESTS, "/ok.txt?", NULL, 1, lv);
	control_is_wrong(&r, "lighttpd, mod_accesslog");
	unlink(al);
	port = lighttpd_start_with(1, 1, NULL);
	r = buffered_run(port, lighttpd_pid, SIGTERM, BUF_REQUESTS, "/ok.txt?", NULL, 1, lv);
	expect_clean(&r, BUF_REQUESTS, "lighttpd, mod_accesslog", 1);
}

/* ---- nginx ---------------------------------------------------------------- */

/*
 * Static requests, half with the client's own ID: each is named by exactly
 * one access-log line and one error-log line ("open() ... failed"), and both
 * carry its ID; every response echoes it.
 */
Test(nginx, every_static_request_is_logged_with_its_id_in_both_logs)
{
	int port = nginx_start(free_port());
	const char *const lv[] = { path_in(logs, "access.log"), path_in(logs, "error.log"), NULL };
	struct run r = loadcheck(port, REQUESTS, CONNS, "0.5", "/t/", 2, path_in(dir, "ids"), lv);

	int workers, conns;

	expect_clean(&r, REQUESTS, "nginx, static", 2);
	nginx_error_lines(&workers, &conns);
	cr_assert_eq(conns, CONNS, "%d connections served the requests, not %d kept alive", conns, CONNS);
	nginx_expect_no_alerts();
}

/*
 * Every request gets a generated ID, served by both forked workers: 5000
 * distinct UUIDv4s, so no worker repeats the master's random state or the
 * other worker's.
 */
Test(nginx, generated_ids_never_repeat_across_the_two_workers)
{
	int port = nginx_start(free_port());
	const char *const lv[] = { path_in(logs, "access.log"), path_in(logs, "error.log"), NULL };
	struct run r = loadcheck(port, REQUESTS, CONNS, "0", "/t/", 2, path_in(dir, "ids"), lv);

	int workers, conns;

	expect_clean(&r, REQUESTS, "nginx, generated IDs", 2);
	nginx_error_lines(&workers, &conns);
	cr_assert_eq(workers, 2, "%d workers served requests", workers);
	expect_unique_uuids(path_in(dir, "ids"), REQUESTS);
	nginx_expect_no_alerts();
}

/*
 * Requests proxied to an upstream that takes 20-50 ms, many in flight at once,
 * with loadcheck checking one of nginx's logs.
 */
static void proxied_requests_check(const char *log, const char *what)
{
	int port = nginx_start(upstream_start());
	const char *const lv[] = { path_in(logs, log), NULL };
	struct run r = loadcheck(port, REQUESTS, PROXY_CONNS, "0.5", "/p/", 1, path_in(dir, "ids"), lv);
	char *stats;
	long most = 0;

	expect_clean(&r, REQUESTS, what, 1);
	/* Many requests were waiting on the upstream at once, each with its own context. */
	stats = slurp(path_in(dir, "upstream.stats"), NULL);
	cr_assert_eq(sscanf(stats, "max_inflight %ld", &most), 1, "upstream stats: %s", stats);
	cr_expect_geq(most, MIN_INFLIGHT, "at most %ld requests were in flight at once", most);
	free(stats);
	nginx_expect_no_alerts();
}

/* The access-log line, written once the response is sent, carries the client request's ID. */
Test(nginx, proxied_requests_access_log_lines_carry_the_client_request_ids)
{
	proxied_requests_check("access.log", "nginx, proxied, access.log");
}

/*
 * nginx's warning about the upstream's answer ("upstream sent more data than
 * specified in Content-Length"), logged while it reads the upstream
 * connection, carries the client request's ID: the upstream connection
 * inherits the context of the request that opened and wrote it.
 */
Test(nginx, proxied_requests_upstream_warnings_carry_the_client_request_ids)
{
	proxied_requests_check("error.log", "nginx, proxied, error.log");
}

Test(nginx, large_file_arrives_byte_identical_with_sendfile_on)
{
	int port = nginx_start(free_port());

	big_file_arrives_intact(port, "/sendfile-on/big.bin", path_in(logs, "access.log"));
	nginx_expect_no_alerts();
}

Test(nginx, large_file_arrives_byte_identical_with_sendfile_off)
{
	int port = nginx_start(free_port());

	big_file_arrives_intact(port, "/sendfile-off/big.bin", path_in(logs, "access.log"));
	nginx_expect_no_alerts();
}

/* ---- python3 -m http.server ----------------------------------------------- */

/*
 * A thread per connection, one stderr line per request: each line carries
 * its request's ID, every response echoes it, and the generated ones are
 * distinct UUIDv4s.
 */
Test(python, every_request_is_logged_on_stderr_with_its_id)
{
	int port = python_start();
	const char *const lv[] = { path_in(logs, "python.err"), NULL };
	struct run r = loadcheck(port, REQUESTS, CONNS, "0.5", "/ok.txt?", 1, path_in(dir, "ids"), lv);

	char *err;

	expect_clean(&r, REQUESTS, "python", 1);
	expect_unique_uuids(path_in(dir, "ids"), REQUESTS / 2);
	err = slurp(path_in(logs, "python.err"), NULL);
	cr_expect_null(strstr(err, "Traceback"), "python.err:\n%s", tail_of(path_in(logs, "python.err")));
	free(err);
}

Test(python, large_file_arrives_byte_identical)
{
	int port = python_start();

	big_file_arrives_intact(port, "/big.bin", path_in(logs, "python.err"));
}
