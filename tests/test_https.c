/*
 * HTTPS servers under plain LD_PRELOAD: nginx with `listen ... ssl` (Debian's
 * nginx-light, libssl linked dynamically) and Python's http.server with its
 * socket wrapped by the ssl module (libssl loaded with _ssl at import). The
 * certificate is self-signed, made by the test with openssl.
 *
 * loadcheck --tls drives each with thousands of requests over keep-alive TLS
 * connections, half with their own ID: every log line naming a request
 * carries its ID and every response echoes it, so every request on a TLS
 * connection has its own ID (the ClientHello does not end the scanning).
 * Bodies fetched over TLS are compared byte for byte with a run without the
 * library.
 */
#include "servers.h"

#define NGINX "/usr/sbin/nginx"
#define PYTHON "/usr/bin/python3"
#define CURL "/usr/bin/curl"

/* Requests per loadcheck run, and the keep-alive TLS connections they use. */
#define REQUESTS 2400
#define CONNS 16
/* Requests to the asyncio server, over one keep-alive TLS connection. */
#define AIO_REQUESTS 600
/* The static file of random bytes, and the one of text that looks like response heads. */
#define BIG_SIZE (1 << 20)
#define HEADS 400
#define PORT_TRIES 5

static const char *dir;
static char html[128], logs[128];

static const char fake_head[] = "HTTP/1.1 200 OK\r\nX-Request-Id: forged\r\nContent-Length: 0\r\n\r\n";

/* ---- the fixture ---------------------------------------------------------- */

static void setup(void)
{
	srv_setup();
	dir = srv_dir;
	srv_tls_site(html, logs, sizeof(html), BIG_SIZE, fake_head, HEADS);
}

static void teardown(void)
{
	srv_teardown();
}

TestSuite(https, .init = setup, .fini = teardown, .timeout = 180);

/* ---- the servers ---------------------------------------------------------- */

static pid_t nginx_pid;

/* nginx: two workers; /t/... are missing files (an error-log line naming the request, then ok.txt). */
static int nginx_start(int preload)
{
	require(NGINX, "nginx-light");
	for (int t = 0; t < PORT_TRIES; t++) {
		int port = free_port();
		char conf[4096];
		int n = snprintf(conf, sizeof(conf),
				 SRV_NGINX_MAIN
				 "  access_log %2$s/access.log combined;\n"
				 SRV_NGINX_TEMPS
				 "  keepalive_timeout 60s;\n"
				 "  keepalive_requests 100000;\n"
				 "  server {\n"
				 "    listen 127.0.0.1:%3$d ssl reuseport;\n"
				 "    ssl_certificate %1$s/cert.pem;\n"
				 "    ssl_certificate_key %1$s/key.pem;\n"
				 "    root %4$s;\n"
				 "    location /t/ { error_page 404 =200 /ok.txt; }\n"
				 "    location = /ok.txt { }\n"
				 "  }\n"
				 "}\n",
				 dir, logs, port, html);
		pid_t pid;

		cr_assert_lt(n, (int)sizeof(conf));
		write_file(path_in(dir, "nginx.conf"), conf, (size_t)n);
		if ((pid = srv_nginx(dir, logs, NULL, preload, &port, 1)) > 0) {
			nginx_pid = pid;
			return port;
		}
	}
	cr_assert_fail("nginx found no free port in %d tries", PORT_TRIES);
	return -1;
}

/*
 * Python's http.server, a thread per connection, its socket wrapped by the
 * ssl module (the handshake in the connection's thread); one stderr line per
 * request. Prints its port first.
 */
static const char py_server[] =
	"import http.server, ssl, sys\n"
	"d, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]\n"
	"class H(http.server.SimpleHTTPRequestHandler):\n"
	"    protocol_version = 'HTTP/1.1'\n"
	"    def __init__(self, *a, **k):\n"
	"        super().__init__(*a, directory=d, **k)\n"
	"srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
	"ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
	"ctx.load_cert_chain(cert, key)\n"
	"srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)\n"
	"print('Serving HTTPS on 127.0.0.1 port %d' % srv.server_address[1], flush=True)\n"
	"srv.serve_forever()\n";

static int python_start(int preload)
{
	char *argv[] = { PYTHON, (char *)path_in(dir, "srv.py"), html, (char *)path_in(dir, "cert.pem"),
			 (char *)path_in(dir, "key.pem"), NULL };
	static const char *const env[] = { "PYTHONUNBUFFERED=1", NULL };

	require(PYTHON, "python3");
	write_file(path_in(dir, "srv.py"), py_server, sizeof(py_server) - 1);
	unlink(path_in(logs, "python.err"));
	return spawn_and_read_port(argv, env, preload, path_in(logs, "python.err"));
}

/*
 * An asyncio server over TLS: asyncio's ssl transport runs OpenSSL on memory
 * BIOs (ssl.SSLObject), moving the ciphertext between the socket and OpenSSL
 * itself. One stderr line per request, written by the request's coroutine.
 */
static const char aio_server[] =
	"import asyncio, ssl, sys\n"
	"async def handle(r, w):\n"
	"    try:\n"
	"        while True:\n"
	"            line = await r.readline()\n"
	"            if not line:\n"
	"                break\n"
	"            while (await r.readline()) not in (b'\\r\\n', b'\\n', b''):\n"
	"                pass\n"
	"            path = line.split()[1].decode()\n"
	"            print('served', path, file=sys.stderr, flush=True)\n"
	"            body = b'aio ' + path.encode() + b'\\n'\n"
	"            w.write(b'HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(body) + body)\n"
	"            await w.drain()\n"
	"    except ConnectionError:\n"
	"        pass\n"
	"    finally:\n"
	"        w.close()\n"
	"async def main():\n"
	"    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
	"    ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
	"    srv = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=ctx)\n"
	"    print('asyncio on 127.0.0.1 port %d' % srv.sockets[0].getsockname()[1], flush=True)\n"
	"    async with srv:\n"
	"        await srv.serve_forever()\n"
	"asyncio.run(main())\n";

/*
 * Without the Python adapter (REQCTX_RUNTIMES=0): these checks are about
 * which connection an SSL object with memory BIOs takes over, so the
 * coroutines log in the context the library's own I/O left (one connection
 * at a time). See README, Limits, for the adapter and a task started during
 * a handshake.
 */
static int aio_start(void)
{
	char *argv[] = { PYTHON, (char *)path_in(dir, "aio.py"), (char *)path_in(dir, "cert.pem"),
			 (char *)path_in(dir, "key.pem"), NULL };
	static const char *const env[] = { "PYTHONUNBUFFERED=1", "REQCTX_RUNTIMES=0", NULL };

	require(PYTHON, "python3");
	write_file(path_in(dir, "aio.py"), aio_server, sizeof(aio_server) - 1);
	return spawn_and_read_port(argv, env, 1, path_in(logs, "aio.err"));
}

/* ---- checks --------------------------------------------------------------- */

/* loadcheck over HTTPS (--tls). */
static struct run tls_loadcheck(int port, long requests, int conns, const char *path_prefix,
				int lines, const char *const *logv)
{
	static const char *const tls[] = { "--tls", NULL };

	return loadcheck_ext(port, requests, conns, "0.5", path_prefix, lines, path_in(dir, "ids"),
			     logv, tls);
}

/* No worker crashed and nothing went critically wrong. */
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

/* The distinct connections named by nginx's error-level lines ("[error] PID#TID: *CONN ..."). */
static int nginx_error_conns(void)
{
	char *text = slurp(path_in(logs, "error.log"), NULL);
	long cs[1024];
	int n = 0;

	for (char *l = text; (l = strstr(l, " [error] ")); l++) {
		char *star = strstr(l, ": *");
		long c;
		int j;

		cr_assert_not_null(star);
		c = strtol(star + 3, NULL, 10);
		for (j = 0; j < n && cs[j] != c; j++)
			;
		if (j == n && n < 1024)
			cs[n++] = c;
	}
	free(text);
	return n;
}

/*
 * Fetches ok.txt, heads.txt and big.bin twice each over one keep-alive TLS
 * connection with curl (the second big.bin with a client ID), into files
 * named after `tag`; returns the response heads curl saw.
 */
static char *curl_fetch(int port, const char *tag)
{
	static const char *const names[] = { "ok.txt", "heads.txt", "big.bin" };
	char url[6][128], out[6][160], hdr[160];
	char *argv[40] = { CURL, "-sS", "-k", "--http1.1", "-D", hdr };
	int a = 6;

	require(CURL, "curl");
	snprintf(hdr, sizeof(hdr), "%s", path_in(dir, tag));
	strcat(hdr, ".heads");
	for (int i = 0; i < 6; i++) {
		snprintf(url[i], sizeof(url[i]), "https://127.0.0.1:%d/%s?%s%d", port, names[i % 3], tag, i);
		snprintf(out[i], sizeof(out[i]), "%s.%d", path_in(dir, tag), i);
		if (i == 5) {
			argv[a++] = "-H";
			argv[a++] = "X-Request-Id: curl-own-id";
		}
		argv[a++] = "-o";
		argv[a++] = out[i];
		argv[a++] = url[i];
	}
	argv[a] = NULL;
	cr_assert_eq(proc_run(argv, NULL, 0, NULL, path_in(dir, "curl.err")), 0, "curl: %s",
		     tail_of(path_in(dir, "curl.err")));
	return slurp(hdr, NULL);
}

/* The bodies of a run under the library are those of the run without it, byte for byte. */
static void expect_same_bodies(const char *plain, const char *with)
{
	for (int i = 0; i < 6; i++) {
		char a[200], b[200];
		size_t la, lb;
		char *x, *y;

		snprintf(a, sizeof(a), "%s.%d", path_in(dir, plain), i);
		snprintf(b, sizeof(b), "%s.%d", path_in(dir, with), i);
		x = slurp(a, &la);
		y = slurp(b, &lb);
		cr_assert_gt(la, 0, "%s is empty", a);
		cr_assert_eq(la, lb, "body %d: %zu bytes without the library, %zu with", i, la, lb);
		cr_assert_eq(memcmp(x, y, la), 0, "body %d differs", i);
		free(x);
		free(y);
	}
}

/* Each of the 6 responses under the library carries one X-Request-Id; the last the client's. */
static void expect_echoed(const char *heads)
{
	int n = 0;
	const char *last = NULL;

	for (const char *h = heads; (h = strstr(h, "\r\nX-Request-Id: ")); h++) {
		n++;
		last = h + 16;
	}
	cr_assert_eq(n, 6, "%d X-Request-Id headers in:\n%s", n, heads);
	cr_assert_eq(strncmp(last, "curl-own-id\r\n", 13), 0, "%s", heads);
	cr_assert_null(strstr(heads, "forged"));
}

/* ---- nginx ---------------------------------------------------------------- */

/*
 * 2400 requests over 16 keep-alive TLS connections, half with the client's
 * own ID: each is named by one access-log line and one error-log line, both
 * carrying its ID, and every response echoes it.
 */
Test(https, nginx_requests_over_tls_are_logged_with_their_ids_in_both_logs)
{
	int port = nginx_start(1);
	const char *const lv[] = { path_in(logs, "access.log"), path_in(logs, "error.log"), NULL };
	struct run r = tls_loadcheck(port, REQUESTS, CONNS, "/t/", 2, lv);

	expect_clean(&r, REQUESTS, "nginx over TLS", 2);
	cr_assert_eq(nginx_error_conns(), CONNS, "the requests came over %d kept-alive connections",
		     CONNS);
	expect_unique_uuids(path_in(dir, "ids"), REQUESTS / 2);
	nginx_expect_no_alerts();
}

Test(https, nginx_bodies_over_tls_are_those_without_the_library)
{
	char *plain, *with;
	int port = nginx_start(0);

	plain = curl_fetch(port, "plain");
	group_stop(nginx_pid);
	group_forget(nginx_pid);
	port = nginx_start(1);
	with = curl_fetch(port, "with");
	cr_assert_null(strstr(plain, "X-Request-Id"), "without the library: %s", plain);
	expect_echoed(with);
	expect_same_bodies("plain", "with");
	nginx_expect_no_alerts();
	free(plain);
	free(with);
}

/* ---- python --------------------------------------------------------------- */

Test(https, python_requests_over_tls_are_logged_with_their_ids)
{
	int port = python_start(1);
	const char *const lv[] = { path_in(logs, "python.err"), NULL };
	struct run r = tls_loadcheck(port, REQUESTS, CONNS, "/ok.txt?", 1, lv);
	char *err;

	expect_clean(&r, REQUESTS, "python over TLS", 1);
	expect_unique_uuids(path_in(dir, "ids"), REQUESTS / 2);
	err = slurp(path_in(logs, "python.err"), NULL);
	cr_expect_null(strstr(err, "Traceback"), "python.err:\n%s", tail_of(path_in(logs, "python.err")));
	free(err);
}

Test(https, python_bodies_over_tls_are_those_without_the_library)
{
	char *plain, *with;
	int port = python_start(0);

	plain = curl_fetch(port, "plain");
	group_stop(groups[ngroups - 1]);
	group_forget(groups[ngroups - 1]);
	port = python_start(1);
	with = curl_fetch(port, "with");
	cr_assert_null(strstr(plain, "X-Request-Id"), "without the library: %s", plain);
	expect_echoed(with);
	expect_same_bodies("plain", "with");
	free(plain);
	free(with);
}

/* ---- asyncio: OpenSSL on memory BIOs --------------------------------------- */

/*
 * The SSL objects have no fd: each takes over the connection of the socket
 * its ciphertext came from (the one whose ClientHello random it answered),
 * so that every request on a keep-alive TLS connection has its own ID in its
 * response and in the line its coroutine logs.
 */
Test(https, asyncio_requests_over_tls_with_memory_bios_are_logged_with_their_ids)
{
	int port = aio_start();
	const char *const lv[] = { path_in(logs, "aio.err"), NULL };
	struct run r = tls_loadcheck(port, AIO_REQUESTS, 1, "/t/", 1, lv);
	char *err;

	expect_clean(&r, AIO_REQUESTS, "asyncio over TLS", 1);
	expect_unique_uuids(path_in(dir, "ids"), AIO_REQUESTS / 2);
	err = slurp(path_in(logs, "aio.err"), NULL);
	cr_expect_null(strstr(err, "Traceback"), "aio.err:\n%s", tail_of(path_in(logs, "aio.err")));
	free(err);
}

/*
 * A new TLS connection for every two requests: the first request of each
 * arrives right after its handshake, when only the socket's own reads and
 * events have set the thread's context. Its line carries its own ID, because
 * the memory-BIO SSL object took over the socket's connection (without that,
 * the socket's events would name the handshake's connection ID).
 */
Test(https, asyncio_first_requests_on_new_tls_connections_are_logged_with_their_ids)
{
	int port = aio_start();

	for (int i = 0; i < 24; i++) {
		char url[2][128], hdr[160], cid[64], *heads, *at;
		char *argv[] = { CURL, "-sS", "-k", "--http1.1", "-D", hdr, "-o", "/dev/null", "-H", cid,
				 url[0], "-o", "/dev/null", url[1], NULL };

		snprintf(hdr, sizeof(hdr), "%s", path_in(dir, "aio.heads"));
		snprintf(cid, sizeof(cid), "X-Request-Id: %s%d", i % 2 ? "aio-own-" : "", i);
		if (i % 2 == 0)
			snprintf(cid, sizeof(cid), "X-No-Id: %d", i); /* half send none of their own */
		for (int k = 0; k < 2; k++)
			snprintf(url[k], sizeof(url[k]), "https://127.0.0.1:%d/first/tkaio%dq%dz", port, i, k);
		cr_assert_eq(proc_run(argv, NULL, 0, NULL, path_in(dir, "curl.err")), 0, "curl: %s",
			     tail_of(path_in(dir, "curl.err")));
		heads = slurp(hdr, NULL);
		at = heads;
		for (int k = 0; k < 2; k++) {
			char tk[32], id[160], prefix[200], *line;

			at = strstr(at, "\r\nX-Request-Id: ");
			cr_assert_not_null(at, "response %d of connection %d: no header:\n%s", k, i, heads);
			at += 16;
			snprintf(id, sizeof(id), "%.*s", (int)strcspn(at, "\r"), at);
			if (i % 2)
				cr_assert_eq(strncmp(id, "aio-own-", 8), 0, "%s", id);
			else
				cr_assert(is_uuid4(id, strlen(id)), "%s", id);
			snprintf(tk, sizeof(tk), "tkaio%dq%dz", i, k);
			snprintf(prefix, sizeof(prefix), "[req:%s] served", id);
			line = line_naming(path_in(logs, "aio.err"), tk);
			cr_assert_eq(strncmp(line, prefix, strlen(prefix)), 0, "want %s: %s", prefix, line);
			free(line);
		}
		free(heads);
	}
}
