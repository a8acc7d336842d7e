/*
 * Outbound propagation and FastCGI on real servers (src/out.h, README "How
 * context travels"): every server runs under plain LD_PRELOAD, loadcheck
 * drives it with concurrent keep-alive load, and every log line of every
 * hop that names a request must carry the ID the client got back.
 *   - a Python front (ThreadingHTTPServer, http.client per request, or one
 *     upstream connection per thread reused) -> a Python backend;
 *   - nginx proxy_pass -> the backend, over a keep-alive upstream pool;
 *   - REQCTX_PROPAGATE=0, REQCTX_PROPAGATE_TO, REQCTX_TRACEPARENT;
 *   - nginx -> php-fpm (FastCGI, fastcgi_keep_conn): php-fpm's access log,
 *     the script's error_log() lines and the stderr lines its master relays.
 * Bodies (request and response) are compared byte for byte.
 */
#include "servers.h"

#define NGINX "/usr/sbin/nginx"
#define PYTHON "/usr/bin/python3"
#define FPM "/usr/sbin/php-fpm8.2"

/* Requests per loadcheck run, and connections. */
#define REQUESTS 2000
#define CONNS 16
/* Requests of the direct checks (bodies, settings). */
#define GETS 6
/* Attempts at starting a server on a free port. */
#define PORT_TRIES 5

static const char *dir;
static char logs[192], www[192];

static const char *fixture(const char *name)
{
	static char b[4][600];
	static int k;
	char *p = b[k++ & 3];

	snprintf(p, 600, "%s/../tests/fixtures/prop/%s", bdir(), name);
	return p;
}

/* ---- the Python servers --------------------------------------------------- */

static int tls; /* the backend serves HTTPS, and the front calls it so */

/* Starts back.py (under the library); its stderr is logs/back.err. Returns its port. */
static int back_start(const char *const *env)
{
	char *argv[] = { PYTHON, (char *)fixture("back.py"), tls ? "--tls" : NULL,
			 (char *)path_in(dir, "cert.pem"), (char *)path_in(dir, "key.pem"), NULL };

	require(PYTHON, "python3");
	return spawn_and_read_port(argv, env, 1, path_in(logs, "back.err"));
}

/* Starts front.py calling the backend at bport, with --reuse if reuse. */
static int front_start(int bport, int reuse, const char *const *env)
{
	char p[16];
	char *argv[8] = { PYTHON, (char *)fixture("front.py"), p };
	int a = 3;

	if (reuse)
		argv[a++] = "--reuse";
	if (tls) {
		argv[a++] = "--tls";
		argv[a++] = (char *)path_in(dir, "cert.pem");
	}
	snprintf(p, sizeof(p), "%d", bport);
	return spawn_and_read_port(argv, env, 1, path_in(logs, "front.err"));
}

/* ---- a raw client ----------------------------------------------------------- */

/*
 * Sends req (n bytes) on a new connection to port and reads until the server
 * closes it (the request says Connection: close). Returns the bytes with a
 * NUL after them (bodies are compared as strings), *len their count.
 */
static char *exchange(int port, const char *req, size_t n, size_t *len)
{
	int fd = http_open(port);
	size_t cap = 1 << 16, have = 0, sent = 0;
	char *out = malloc(cap);

	while (sent < n) {
		ssize_t w = send(fd, req + sent, n - sent, MSG_NOSIGNAL);

		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		sent += (size_t)w;
	}
	for (;;) {
		ssize_t r;

		if (have + 1 >= cap)
			out = realloc(out, cap *= 2);
		r = read(fd, out + have, cap - have - 1);
		if (r < 0)
			cr_log_error("back.err:\n%s", tail_of(path_in(logs, "back.err")));
		cr_assert_geq(r, 0, "read: %s; front.err:\n%s", strerror(errno), tail_of(path_in(logs, "front.err")));
		if (r == 0)
			break;
		have += (size_t)r;
	}
	close(fd);
	out[have] = '\0';
	*len = have;
	return out;
}

/* The response's body (after the head), *blen its length. */
static char *body_of(char *resp, size_t len, size_t *blen)
{
	char *end = memmem(resp, len, "\r\n\r\n", 4);

	cr_assert_not_null(end, "no response head in:\n%.*s", (int)len, resp);
	*blen = len - (size_t)(end + 4 - resp);
	return end + 4;
}

/* The value of header name in the response head (a static buffer), or NULL. */
static const char *header_of(const char *resp, size_t len, const char *name)
{
	static char v[256];
	const char *end = memmem(resp, len, "\r\n\r\n", 4);

	for (const char *l = memmem(resp, len, "\r\n", 2); l && l < end; l = strstr(l + 2, "\r\n")) {
		if (!hdr_is(l + 2, name))
			continue;
		l += 2 + strlen(name) + 1;
		while (*l == ' ')
			l++;
		snprintf(v, sizeof(v), "%.*s", (int)strcspn(l, "\r"), l);
		return v;
	}
	return NULL;
}

/* GETs path from port (a connection of its own), with X-Request-Id cid and extra headers. */
static char *get(int port, const char *path, const char *cid, const char *extra, size_t *len)
{
	char req[1024];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s%sConnection: close\r\n\r\n",
			 path, cid ? "X-Request-Id: " : "", cid ? cid : "", cid ? "\r\n" : "", extra ? extra : "");

	return exchange(port, req, (size_t)n, len);
}

/* ---- the front and the backend -------------------------------------------- */

/*
 * Client-sent and generated IDs alike reach the backend: the backend's
 * access line for each request carries the ID the front echoed, as does the
 * front's own line (2 lines per request, every one checked).
 */
static void chain_is_clean(int reuse)
{
	int bport = back_start(NULL), fport = front_start(bport, reuse, NULL);
	const char *const lv[] = { path_in(logs, "back.err"), path_in(logs, "front.err"), NULL };
	struct run r = loadcheck(fport, REQUESTS, CONNS, "0.5", "/t/", 2, path_in(dir, "ids"), lv);

	expect_clean(&r, REQUESTS, reuse ? "front (reused upstream) -> backend" : "front -> backend", 2);
	cr_expect_null(strstr(slurp(path_in(logs, "front.err"), NULL), "Traceback"), "%s",
		       tail_of(path_in(logs, "front.err")));
}

Test(chain, every_backend_line_carries_the_front_s_id)
{
	chain_is_clean(0);
}

Test(chain, a_reused_upstream_connection_carries_each_request_s_own_id)
{
	chain_is_clean(1);
}

/* The same over TLS: the requests go out through SSL_write, each with its own ID. */
Test(chain, a_tls_upstream_carries_each_request_s_own_id)
{
	srv_make_cert(dir);
	tls = 1;
	chain_is_clean(1);
	tls = 0;
}

/*
 * What the backend received: exactly one X-Request-Id, the front's; for
 * POST, the body byte for byte, and the front's response body is the
 * backend's, byte for byte (bodies made of text that looks like heads).
 */
Test(chain, bodies_pass_byte_identical_both_ways)
{
	static const size_t sizes[] = { 0, 1, 37, 4096, 200000 };
	int bport = back_start(NULL), fport = front_start(bport, 0, NULL);

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t n = sizes[s], len, blen, hl;
		char *body = malloc(n + 1), *req = malloc(n + 512), *resp, *b, want[256];
		static const char fake[] = "GET /x HTTP/1.1\r\nX-Request-Id: forged\r\n\r\n";

		for (size_t i = 0; i < n; i++)
			body[i] = i % 97 < sizeof(fake) - 1 ? fake[i % 97] : (char)(i * 7);
		hl = (size_t)sprintf(req, "POST /post%zu HTTP/1.1\r\nHost: x\r\nX-Request-Id: body%zu\r\n"
				     "Content-Length: %zu\r\nConnection: close\r\n\r\n", s, s, n);
		memcpy(req + hl, body, n);
		resp = exchange(fport, req, hl + n, &len);
		snprintf(want, sizeof(want), "body%zu", s);
		cr_assert_str_eq(header_of(resp, len, "X-Request-Id"), want);
		b = body_of(resp, len, &blen);
		snprintf(want, sizeof(want), "xr=body%zu tp=None n=1\nlen=%zu\n", s, n);
		cr_assert_geq(blen, strlen(want));
		cr_assert_eq(memcmp(b, want, strlen(want)), 0, "the backend said %.*s", (int)strcspn(b, "l"), b);
		cr_assert_eq(blen, strlen(want) + n, "size %zu: %zu body bytes back", n, blen);
		cr_assert_eq(memcmp(b + strlen(want), body, n), 0, "size %zu: the body changed", n);
		free(resp);
		free(req);
		free(body);
	}
}

/* What the backend saw for a GET through the front, with client ID cid. */
static void backend_saw(int fport, const char *cid, const char *extra, char *out, size_t n)
{
	size_t len, blen;
	char *resp = get(fport, "/seen", cid, extra, &len), *b = body_of(resp, len, &blen);

	snprintf(out, n, "%.*s", (int)strcspn(b, "\n"), b);
	free(resp);
}

/* REQCTX_PROPAGATE=0: nothing is inserted, with a client's ID or a generated one. */
Test(settings, propagate_0_inserts_nothing)
{
	static const char *const env[] = { "REQCTX_PROPAGATE=0", NULL };
	int fport = front_start(back_start(NULL), 0, env);
	char saw[256];

	for (int i = 0; i < GETS; i++) {
		backend_saw(fport, i % 2 ? "given1" : NULL, NULL, saw, sizeof(saw));
		cr_assert_str_eq(saw, "xr=None tp=None n=0");
	}
}

/* REQCTX_PROPAGATE_TO: the backend's address and port get the ID; anything else does not. */
Test(settings, propagate_to_limits_destinations)
{
	int bport = back_start(NULL);
	char saw[256], v[4][96];
	const char *const want[] = { "xr=to1 tp=None n=1", "xr=None tp=None n=0" };

	snprintf(v[0], sizeof(v[0]), "REQCTX_PROPAGATE_TO=10.0.0.0/8, 127.0.0.1:%d", bport);
	snprintf(v[1], sizeof(v[1]), "REQCTX_PROPAGATE_TO=127.*");
	snprintf(v[2], sizeof(v[2]), "REQCTX_PROPAGATE_TO=10.*,[::1],127.0.0.1:%d", bport == 1 ? 2 : 1);
	snprintf(v[3], sizeof(v[3]), "REQCTX_PROPAGATE_TO=*.internal:8080");
	for (int i = 0; i < 4; i++) {
		const char *const env[] = { v[i], NULL };
		int fport = front_start(bport, 0, env);

		backend_saw(fport, "to1", NULL, saw, sizeof(saw));
		cr_assert_str_eq(saw, want[i >= 2], "%s: the backend saw %s", v[i], saw);
		group_stop(groups[--ngroups]);
	}
	/* A list with a host name is refused whole, with one line, and nothing gets the ID. */
	cr_assert_not_null(strstr(slurp(path_in(logs, "front.err"), NULL),
				  "reqctx: REQCTX_PROPAGATE_TO=\"*.internal:8080\" is not a comma-separated list"),
			   "%s", tail_of(path_in(logs, "front.err")));
}

/* The 32 hex digits of a UUID (dashes out). */
static void hex32(const char *uuid, char out[33])
{
	int k = 0;

	for (const char *p = uuid; *p && k < 32; p++)
		if (*p != '-')
			out[k++] = *p;
	out[k] = '\0';
}

/*
 * REQCTX_TRACEPARENT=1: a generated ID's digits are the trace-id, each call
 * a new span; an incoming traceparent without an X-Request-Id gives the
 * request its trace-id as ID; an invalid one is ignored; a client's
 * X-Request-Id gives a trace-id of its own, the same on every call.
 */
Test(settings, traceparent_out_and_in)
{
	static const char *const env[] = { "REQCTX_TRACEPARENT=1", NULL };
	static const char in_tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	int fport = front_start(back_start(env), 0, env);
	char saw[256], want[256], hex[33], span[2][17];
	size_t len;

	for (int i = 0; i < 2; i++) {
		char *resp = get(fport, "/tp", NULL, NULL, &len), *b;
		size_t blen;
		const char *id = header_of(resp, len, "X-Request-Id");

		cr_assert(id && is_uuid4(id, strlen(id)), "echoed %s", id ? id : "(none)");
		hex32(id, hex);
		b = body_of(resp, len, &blen);
		snprintf(want, sizeof(want), "xr=%s tp=00-%s-", id, hex);
		cr_assert_eq(strncmp(b, want, strlen(want)), 0, "the backend saw %.*s, not %s...", (int)strcspn(b, "\n"), b, want);
		snprintf(span[i], sizeof(span[i]), "%.16s", b + strlen(want));
		cr_assert_eq(strspn(span[i], "0123456789abcdef"), 16, "span %s", span[i]);
		cr_assert_str_eq(b + strlen(want) + 16, "-01 n=1\n");
		free(resp);
	}
	cr_assert_str_neq(span[0], span[1], "two calls, one span id");
	{
		char *resp, *b;
		size_t blen;

		snprintf(want, sizeof(want), "traceparent: %s\r\n", in_tp);
		resp = get(fport, "/tp", NULL, want, &len);
		cr_assert_str_eq(header_of(resp, len, "X-Request-Id"), "4bf92f3577b34da6a3ce929d0e0e4736");
		b = body_of(resp, len, &blen);
		cr_assert_eq(strncmp(b, "xr=4bf92f3577b34da6a3ce929d0e0e4736 tp=00-4bf92f3577b34da6a3ce929d0e0e4736-", 75), 0,
			     "the backend saw %.*s", (int)strcspn(b, "\n"), b);
		cr_assert_eq(strncmp(b + 75, in_tp + 36, 16) != 0, 1, "the incoming span id went on");
		free(resp);
	}
	backend_saw(fport, NULL, "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n", saw,
		    sizeof(saw));
	cr_assert_eq(strncmp(saw, "xr=", 3), 0);
	cr_assert(is_uuid4(saw + 3, 36), "an all-zero trace-id was taken: %s", saw);
	snprintf(want, sizeof(want), "traceparent: %s\r\n", in_tp);
	backend_saw(fport, "given-tp", want, saw, sizeof(saw));
	{
		char again[256];

		backend_saw(fport, "given-tp", NULL, again, sizeof(again));
		cr_assert_eq(strncmp(saw, "xr=given-tp tp=00-", 18), 0, "%s", saw);
		cr_assert_eq(strncmp(saw, again, 18 + 32), 0, "one ID, two trace-ids: %s / %s", saw, again);
		cr_assert_eq(strncmp(saw + 18, "4bf92f35", 8) != 0, 1, "%s", saw);
	}
}

/* REQCTX_TRACEPARENT=0 (the default): no traceparent goes out, an incoming one is not read. */
Test(settings, traceparent_off_by_default)
{
	int fport = front_start(back_start(NULL), 0, NULL);
	size_t len;
	char *resp = get(fport, "/tp", NULL, "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n", &len);
	const char *id = header_of(resp, len, "X-Request-Id");
	char saw[256];

	cr_assert(id && is_uuid4(id, strlen(id)), "echoed %s", id ? id : "(none)");
	backend_saw(fport, NULL, NULL, saw, sizeof(saw));
	cr_assert(strstr(saw, " tp=None n=1"), "%s", saw);
	free(resp);
}

/* ---- nginx ------------------------------------------------------------------ */

/*
 * nginx (two workers) with a keep-alive upstream pool: /t/ is proxied to the
 * backend at up_port over HTTP/1.1, .php goes to php-fpm at fpm_port. Each
 * worker keeps up to CONNS idle upstream connections, as many as the load's
 * client connections (one worker may get them all): with fewer, a burst
 * closes the surplus and the next opens new ones, and the pool's connection
 * count depends on the machine's load.
 */
static void nginx_conf(int port, int up_port, int fpm_port)
{
	char conf[4096];
	int n = snprintf(conf, sizeof(conf),
			 "worker_processes 2;\n"
			 "daemon off;\n"
			 "master_process on;\n"
			 "pid %1$s/nginx.pid;\n"
			 "error_log %2$s/error.log info;\n"
			 "events { worker_connections 1024; }\n"
			 "http {\n"
			 "  access_log %2$s/access.log combined;\n"
			 SRV_NGINX_TEMPS
			 "  keepalive_requests 100000;\n"
			 "  upstream back { server 127.0.0.1:%4$d; keepalive %7$d; }\n"

			 "  server {\n"
			 "    listen 127.0.0.1:%3$d;\n"
			 "    root %6$s;\n"
			 "    location /t/ { proxy_pass http://back; proxy_http_version 1.1;\n"
			 "                   proxy_set_header Connection \"\"; }\n"
			 "    location ~ \\.php$ { include /etc/nginx/fastcgi_params;\n"
			 "      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
			 "      fastcgi_pass 127.0.0.1:%5$d; fastcgi_keep_conn on; }\n"
			 "  }\n"
			 "}\n",
			 dir, logs, port, up_port, fpm_port, www, CONNS);

	cr_assert_lt(n, (int)sizeof(conf));
	write_file(path_in(dir, "nginx.conf"), conf, (size_t)n);
}

static int nginx_start(int up_port, int fpm_port, int preload)
{
	require(NGINX, "nginx-light");
	for (int t = 0; t < PORT_TRIES; t++) {
		int port = free_port();
		char *argv[] = { NGINX, "-p", (char *)dir, "-c", (char *)path_in(dir, "nginx.conf"), "-e",
				 (char *)path_in(logs, "error.log"), NULL };
		pid_t pid;

		nginx_conf(port, up_port, fpm_port);
		pid = spawn(argv, NULL, preload, -1, path_in(dir, "nginx.out"));
		if (wait_listening(port, pid) == 0)
			return port;
	}
	cr_assert_fail("nginx found no free port in %d tries", PORT_TRIES);
	return -1;
}

/* Distinct client ports in the backend's access lines ("127.0.0.1:PORT - - ..."). */
static int backend_connections(void)
{
	char *text = slurp(path_in(logs, "back.err"), NULL);
	static long ports[4096];
	int n = 0;

	for (char *l = strstr(text, "127.0.0.1:"); l; l = strstr(l + 1, "127.0.0.1:")) {
		long p = strtol(l + 10, NULL, 10);
		int j;

		for (j = 0; j < n && ports[j] != p; j++)
			;
		if (j == n && n < 4096)
			ports[n++] = p;
	}
	free(text);
	return n;
}

/*
 * nginx proxy_pass over a keep-alive pool shared by concurrent requests:
 * generated and client IDs reach the backend, every backend line carries
 * the ID nginx echoed, and the pool was reused (far fewer upstream
 * connections than requests).
 */
Test(nginx, proxied_requests_reach_the_backend_with_nginx_s_id)
{
	int bport = back_start(NULL), port = nginx_start(bport, 1, 1), conns;
	const char *const lv[] = { path_in(logs, "back.err"), path_in(logs, "access.log"), NULL };
	struct run r = loadcheck(port, REQUESTS, CONNS, "0.5", "/t/", 2, path_in(dir, "ids"), lv);

	expect_clean(&r, REQUESTS, "nginx -> backend", 2);
	conns = backend_connections();
	cr_assert(conns > 0 && conns <= 64, "the upstream pool made %d connections for %d requests", conns,
		  REQUESTS);
}

/* ---- php-fpm ------------------------------------------------------------------ */

/* php-fpm (as root, 2 static workers, catch_workers_output) on a free port; returns it. */
static int fpm_start(int preload)
{
	require(FPM, "php-fpm");
	for (int t = 0; t < PORT_TRIES; t++) {
		int port = free_port();
		char conf[2048];
		char *argv[] = { FPM, "-F", "-y", (char *)path_in(dir, "fpm.conf"), "-R", NULL };
		int n = snprintf(conf, sizeof(conf),
				 "[global]\n"
				 "daemonize = no\n"
				 "error_log = %1$s/fpm-error.log\n"
				 "[www]\n"
				 "listen = 127.0.0.1:%2$d\n"
				 "pm = static\n"
				 "pm.max_children = 2\n"
				 "catch_workers_output = yes\n"
				 "decorate_workers_output = no\n"
				 "access.log = %1$s/fpm-access.log\n"
				 "access.format = \"%%R - %%u %%t \\\"%%m %%r%%Q%%q\\\" %%s %%{HTTP_X_REQUEST_ID}e\"\n"
				 "php_admin_value[error_log] = %1$s/php-error.log\n"
				 "php_admin_flag[log_errors] = on\n",
				 logs, port);
		pid_t pid;

		cr_assert_lt(n, (int)sizeof(conf));
		write_file(path_in(dir, "fpm.conf"), conf, (size_t)n);
		pid = spawn(argv, NULL, preload, -1, path_in(dir, "fpm.out"));
		if (wait_listening(port, pid) == 0)
			return port;
	}
	cr_assert_fail("php-fpm found no free port in %d tries", PORT_TRIES);
	return -1;
}

/*
 * Every request's lines in nginx's access log, php-fpm's access log, the
 * script's error_log() and the stderr line the master relays carry the ID
 * nginx echoed (4 lines per request), for client-sent and generated IDs;
 * php-fpm's access line also names that ID as HTTP_X_REQUEST_ID, the param
 * reqctx added for generated IDs.
 */
Test(fpm, php_fpm_logs_carry_nginx_s_id)
{
	int fport = fpm_start(1), port = nginx_start(1, fport, 1);
	const char *const lv[] = { path_in(logs, "access.log"), path_in(logs, "fpm-access.log"),
				   path_in(logs, "php-error.log"), path_in(logs, "fpm-error.log"), NULL };
	struct run r;
	char *text;
	long lines = 0;

	write_file(path_in(www, "t.php"), slurp(fixture("t.php"), NULL), strlen(slurp(fixture("t.php"), NULL)));
	r = loadcheck(port, REQUESTS, CONNS, "0.5", "/t.php?", 4, path_in(dir, "ids"), lv);
	expect_clean(&r, REQUESTS, "nginx -> php-fpm", 4);
	text = slurp(path_in(logs, "fpm-access.log"), NULL);
	for (char *l = text, *nl; *l; l = nl + 1) {
		size_t idl;

		nl = strchr(l, '\n');
		cr_assert_not_null(nl);
		*nl = '\0';
		cr_assert_eq(strncmp(l, "[req:", 5), 0, "%s", l);
		idl = strcspn(l + 5, "]");
		cr_assert(nl - l > (long)idl && !strncmp(nl - idl, l + 5, idl) && nl[-(long)idl - 1] == ' ',
			  "HTTP_X_REQUEST_ID is not the line's ID: %s", l);
		lines++;
	}
	cr_assert_eq(lines, REQUESTS);
	free(text);
}

/* A response without its Date and X-Request-Id lines (head only), for comparison. */
static char *without_volatile(const char *resp, size_t len)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	const char *end = memmem(resp, len, "\r\n\r\n", 4);

	cr_assert_not_null(end);
	for (const char *l = resp; l < end + 2;) {
		size_t k = 0;

		while (l[k] != '\r' || l[k + 1] != '\n')	/* ends by end's CRLF */
			k++;
		k += 2;

		if (!hdr_is(l, "Date") && !hdr_is(l, "X-Request-Id")) {
			memcpy(out + n, l, k);
			n += k;
		}
		l += k;
	}
	memcpy(out + n, end + 2, len - (size_t)(end + 2 - resp));
	n += len - (size_t)(end + 2 - resp);
	out[n] = '\0';
	return out;
}

/*
 * PHP's responses through nginx, under the library, are the plain run's byte
 * for byte but for the one echoed header (and the Date).
 */
Test(fpm, php_responses_are_byte_identical_apart_from_the_echo)
{
	char *plain[GETS];
	int fport, port;

	write_file(path_in(www, "t.php"), slurp(fixture("t.php"), NULL), strlen(slurp(fixture("t.php"), NULL)));
	for (int run = 0; run < 2; run++) {
		fport = fpm_start(run);
		port = nginx_start(1, fport, run);
		for (int i = 0; i < GETS; i++) {
			char path[64];
			size_t len;
			char *resp, *cut;

			snprintf(path, sizeof(path), "/t.php?same%d", i);
			resp = get(port, path, i % 2 ? "php-client" : NULL, NULL, &len);
			cut = without_volatile(resp, len);
			if (run == 0) {
				cr_assert_null(header_of(resp, len, "X-Request-Id"));
				plain[i] = cut;
			} else {
				const char *id = header_of(resp, len, "X-Request-Id");

				cr_assert(id && (i % 2 ? !strcmp(id, "php-client") : is_uuid4(id, strlen(id))),
					  "echoed %s", id ? id : "(none)");
				cr_assert_str_eq(cut, plain[i], "request %d differs from the plain run", i);
				free(cut);
				free(plain[i]);
			}
			free(resp);
		}
		group_stop(groups[--ngroups]);
		group_stop(groups[--ngroups]);
	}
}

/* ---- the fixture ---------------------------------------------------------- */

static void setup(void)
{
	srv_setup();
	dir = srv_dir;
	snprintf(logs, sizeof(logs), "%s/logs", dir);
	snprintf(www, sizeof(www), "%s/www", dir);
	cr_assert_eq(mkdir(logs, 0777), 0);
	cr_assert_eq(chmod(logs, 0777), 0); /* php-fpm's workers and nginx's write here */
	cr_assert_eq(mkdir(www, 0755), 0);
	cr_assert_eq(mkdir(path_in(dir, "tmp"), 0755), 0);
}

static void teardown(void)
{
	srv_teardown();
}

TestSuite(chain, .init = setup, .fini = teardown, .timeout = 150);
TestSuite(settings, .init = setup, .fini = teardown, .timeout = 150);
TestSuite(nginx, .init = setup, .fini = teardown, .timeout = 150);
TestSuite(fpm, .init = setup, .fini = teardown, .timeout = 150);
