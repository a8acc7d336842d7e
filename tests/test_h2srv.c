/*
 * HTTP/2 servers under plain LD_PRELOAD: Debian's nginx with `listen ...
 * ssl http2` (h2 over TLS, ALPN h2) and `listen ... http2` without ssl (h2c
 * by prior knowledge), driven by tests/h2client.py (python3-h2): several
 * connections at once, each with bursts of 8 concurrent streams, half of the
 * requests with their own ID, a quarter of them for missing files.
 *
 * Every response carries exactly one x-request-id: the client's, or a fresh
 * UUIDv4 never seen on another stream. Every access-log line carries its
 * request's ID. Every error-log line naming a request carries the ID the
 * README gives it: its own when its stream was the first the read opened (the
 * first request of each burst, always), else the ID of the response nginx
 * wrote just before (the stream of the frame the client received right
 * before that request's response). Response bodies are byte for byte those
 * of a run without the library.
 */
#include "reqctx.h"
#include "servers.h"

#define NGINX "/usr/sbin/nginx"
#define PYTHON "/usr/bin/python3"

/* Per run: connections at once, bursts on each, streams per burst. */
#define CONNS "8"
#define BURSTS "32"
#define STREAMS "8"
#define REQUESTS (8 * 32 * 8)
#define BIG_SIZE (96 << 10)
#define PORT_TRIES 5

static const char *dir;
static char html[128], logs[128];

static const char fake_head[] = "HTTP/1.1 200 OK\r\nX-Request-Id: forged\r\n\r\n";

static void setup(void)
{
	srv_setup();
	dir = srv_dir;
	srv_tls_site(html, logs, sizeof(html), BIG_SIZE, fake_head, 64);
}

static void teardown(void)
{
	srv_teardown();
}

TestSuite(h2srv, .init = setup, .fini = teardown, .timeout = 300);

/* ---- nginx ---------------------------------------------------------------- */

static pid_t nginx_pid;

/* nginx, two workers, one port with `ssl http2`, one with `http2` (h2c); *tls gets the first. */
static int nginx_start(int preload, int *tls)
{
	require(NGINX, "nginx-light");
	for (int t = 0; t < PORT_TRIES; t++) {
		int ports[2] = { free_port(), free_port() };
		char conf[4096];
		int n = snprintf(conf, sizeof(conf),
				 SRV_NGINX_MAIN
				 "  access_log %2$s/access.log combined;\n"
				 SRV_NGINX_TEMPS
				 "  server {\n"
				 "    listen 127.0.0.1:%3$d http2 reuseport;\n"
				 "    listen 127.0.0.1:%5$d ssl http2 reuseport;\n"
				 "    ssl_certificate %1$s/cert.pem;\n"
				 "    ssl_certificate_key %1$s/key.pem;\n"
				 "    root %4$s;\n"
				 "  }\n"
				 "}\n",
				 dir, logs, ports[0], html, ports[1]);
		pid_t pid;

		cr_assert_lt(n, (int)sizeof(conf));
		write_file(path_in(dir, "nginx.conf"), conf, (size_t)n);
		if ((pid = srv_nginx(dir, logs, NULL, preload, ports, 2)) > 0) {
			nginx_pid = pid;
			*tls = ports[1];
			return ports[0];
		}
	}
	cr_assert_fail("nginx found no free ports in %d tries", PORT_TRIES);
	return -1;
}

static void nginx_stop(void)
{
	group_stop(nginx_pid);
	group_forget(nginx_pid);
}

/* ---- what the client saw --------------------------------------------------- */

struct req {
	int conn, burst, pos, sid, order, prev, status;
	char path[64], sent[64], echoed[256], sha[65];
	long len;
	int logged, errlogged, own_err;
};

static struct req reqs[REQUESTS];
static int nreqs;

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct req *)a)->path, ((const struct req *)b)->path);
}

/* Runs the client against port (tls: h2 over TLS) and reads what it saw, sorted by path. */
static void client(int port, int tls, const char *out)
{
	char p[16];
	char *argv[] = { PYTHON, (char *)path_in(dir, "../h2client.py"), "127.0.0.1", p,
			 tls ? "1" : "0", CONNS, BURSTS, STREAMS, (char *)out, NULL };
	char script[512];
	const char *b = getenv("REQCTX_BUILD");
	char *text, *line, *save;

	snprintf(script, sizeof(script), "%s/../tests/h2client.py", b && *b ? b : "build");
	argv[1] = script;
	snprintf(p, sizeof(p), "%d", port);
	cr_assert_eq(proc_run(argv, NULL, 0, NULL, path_in(dir, "client.err")), 0, "h2client: %s",
		     tail_of(path_in(dir, "client.err")));
	text = slurp(out, NULL);
	nreqs = 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct req *r = &reqs[nreqs];

		cr_assert_lt(nreqs, REQUESTS);
		memset(r, 0, sizeof(*r));
		cr_assert_eq(sscanf(line, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%63s\t%63s\t%255s\t%64s\t%ld",
				    &r->conn, &r->burst, &r->pos, &r->sid, &r->order, &r->prev,
				    &r->status, r->path, r->sent, r->echoed, r->sha, &r->len),
			     12, "client line: %s", line);
		nreqs++;
	}
	free(text);
	cr_assert_eq(nreqs, REQUESTS, "the client got %d responses", nreqs);
	qsort(reqs, (size_t)nreqs, sizeof(reqs[0]), by_path);
}

static struct req *find(const char *path)
{
	struct req key;

	snprintf(key.path, sizeof(key.path), "%s", path);
	return bsearch(&key, reqs, (size_t)nreqs, sizeof(reqs[0]), by_path);
}

/* The request on the same connection as r whose stream is sid. */
static struct req *on_stream(const struct req *r, int sid)
{
	for (int i = 0; i < nreqs; i++)
		if (reqs[i].conn == r->conn && reqs[i].sid == sid)
			return &reqs[i];
	return NULL;
}

/* The kind of a path: 0 ok.txt, 1 big.bin, 2 missing, 3 heads.txt. */
static int kind(const char *path)
{
	return !strncmp(path, "/ok.txt", 7) ? 0 : !strncmp(path, "/big.bin", 8) ? 1
	       : !strncmp(path, "/missing", 8) ? 2 : 3;
}

/* ---- the runs -------------------------------------------------------------- */

/* Bodies of each kind, from a run without the library. */
static char plain_sha[4][65];

static void plain_run(int tls)
{
	int sport, port = nginx_start(0, &sport);
	char *acc;

	client(tls ? sport : port, tls, path_in(dir, "plain.txt"));
	nginx_stop();
	for (int i = 0; i < nreqs; i++) {
		int k = kind(reqs[i].path);

		cr_assert_str_eq(reqs[i].echoed, "-", "no header without the library");
		if (!plain_sha[k][0])
			snprintf(plain_sha[k], sizeof(plain_sha[k]), "%s", reqs[i].sha);
		cr_assert_str_eq(reqs[i].sha, plain_sha[k], "%s: the same body each time",
				 reqs[i].path);
	}
	acc = slurp(path_in(logs, "access.log"), NULL);
	cr_assert_null(strstr(acc, "[req:"), "no prefix without the library");
	free(acc);
}

static int valid_uuid(const char *s)
{
	return is_uuid4(s, strlen(s));
}

static int cmp_ids(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ID of a "[req:ID] ..." line in *id; 0 if it has none. */
static int line_id(const char *line, char id[REQCTX_ID_MAX + 1])
{
	const char *e;

	if (strncmp(line, "[req:", 5) || !(e = strchr(line + 5, ']')) || e - line - 5 > REQCTX_ID_MAX)
		return 0;
	memcpy(id, line + 5, (size_t)(e - line - 5));
	id[e - line - 5] = '\0';
	return 1;
}

static void library_run(int tls)
{
	int sport, port, own_errs = 0, prev_errs = 0, errs = 0, firsts = 0;
	char *acc, *err, *line, *save, *ids[REQUESTS];

	plain_run(tls);
	port = nginx_start(1, &sport);
	client(tls ? sport : port, tls, path_in(dir, "run.txt"));
	nginx_stop();
	/* the responses */
	for (int i = 0; i < nreqs; i++) {
		struct req *r = &reqs[i];

		cr_assert_eq(r->status, kind(r->path) == 2 ? 404 : 200, "%s: %d", r->path, r->status);
		cr_assert_null(strchr(r->echoed, ','), "%s: one x-request-id, not %s", r->path,
			       r->echoed);
		if (strcmp(r->sent, "-"))
			cr_assert_str_eq(r->echoed, r->sent, "%s echoes the client's ID", r->path);
		else
			cr_assert(valid_uuid(r->echoed), "%s: a UUIDv4, not %s", r->path, r->echoed);
		cr_assert_str_eq(r->sha, plain_sha[kind(r->path)], "%s: the body of a run without the "
				 "library", r->path);
		ids[i] = r->echoed;
	}
	qsort(ids, (size_t)nreqs, sizeof(ids[0]), cmp_ids);
	for (int i = 1; i < nreqs; i++)
		cr_assert_str_neq(ids[i - 1], ids[i], "an ID shared by two streams: %s", ids[i]);
	/* the access log: one line per request, with its ID */
	acc = slurp(path_in(logs, "access.log"), NULL);
	for (line = strtok_r(acc, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char id[REQCTX_ID_MAX + 1], path[64];
		const char *q = strstr(line, "\"GET ");
		struct req *r;

		cr_assert(line_id(line, id), "an access line without its ID: %s", line);
		cr_assert_not_null(q, "%s", line);
		cr_assert_eq(sscanf(q + 5, "%63s", path), 1);
		cr_assert_not_null(r = find(path), "a line for no request: %s", line);
		cr_assert_str_eq(id, r->echoed, "the access line of %s", path);
		cr_assert(strstr(q, " HTTP/2.0\" "), "%s", line);
		r->logged++;
	}
	free(acc);
	for (int i = 0; i < nreqs; i++)
		cr_assert_eq(reqs[i].logged, 1, "%s logged %d times", reqs[i].path, reqs[i].logged);
	/* the error log: each line naming a request */
	err = slurp(path_in(logs, "error.log"), NULL);
	for (line = strtok_r(err, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char id[REQCTX_ID_MAX + 1], path[64];
		const char *q = strstr(line, "request: \"GET ");
		struct req *r, *before;

		cr_assert(line_id(line, id), "an error-log line without a prefix: %s", line);
		if (!q)
			continue;
		cr_assert_eq(sscanf(q + 14, "%63s", path), 1);
		cr_assert_not_null(r = find(path), "%s", line);
		cr_assert_eq(kind(path), 2, "an error about %s: %s", path, line);
		r->errlogged++;
		errs++;
		before = r->prev ? on_stream(r, r->prev) : NULL;
		if (!strcmp(id, r->echoed)) {
			own_errs++;
		} else {
			cr_assert(r->pos != 0, "the first request of a burst logs under its own ID: "
				  "%s has %s, not %s", path, id, r->echoed);
			cr_assert(before && !strcmp(id, before->echoed),
				  "%s logs under %s: neither its own ID (%s) nor that of the response "
				  "written before it (%s)", path, id, r->echoed,
				  before ? before->echoed : "none");
			prev_errs++;
		}
		if (r->pos == 0)
			firsts++;
	}
	free(err);
	for (int i = 0; i < nreqs; i++)
		if (kind(reqs[i].path) == 2)
			cr_assert_eq(reqs[i].errlogged, 1, "%s: %d error lines", reqs[i].path,
				     reqs[i].errlogged);
	cr_assert_eq(firsts, REQUESTS / 8, "each burst's first request is missing");
	cr_assert_geq(own_errs, firsts);
	cr_log_info("%s: %d error lines, %d under their own ID, %d under the previous response's",
		    tls ? "h2" : "h2c", errs, own_errs, prev_errs);
}

Test(h2srv, nginx_h2_over_tls_gives_each_stream_its_own_id)
{
	library_run(1);
}

Test(h2srv, nginx_h2c_gives_each_stream_its_own_id)
{
	library_run(0);
}
