/*
 * Responses on the wire: the ID header goes into response heads and nowhere
 * else, whatever call a body goes out through, however deep a client
 * pipelines, and however a head is cut into writes.
 *
 * tests/progs/wire_srv answers "GET /N" with a body of fake response heads
 * ("HTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n", 40 bytes each, as long as
 * the real head), so a response scanner that loses count of body bytes lands
 * on one and would put the header there. The client here parses every
 * response with strict Content-Length framing and compares every head and
 * body byte for byte, with and without the library. nginx and Python's
 * http.server answer 64 pipelined requests the same way.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "proc.h"

#define UNIT "HTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n"
#define UNIT_LEN (sizeof(UNIT) - 1)
#define MAX_RESP 65536
/* Requests per keep-alive run of the body modes. */
#define SEQ 20

static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(wire, .init = setup, .fini = teardown, .timeout = 120);

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

/* ---- the client ---- */

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { 20, 0 };
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	cr_assert_geq(s, 0);
	cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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

/* A buffered reader over a socket. */
struct rd {
	int s;
	size_t have, pos;
	char buf[1 << 16];
};

static int rd_byte(struct rd *r)
{
	if (r->pos == r->have) {
		ssize_t n = recv(r->s, r->buf, sizeof(r->buf), 0);

		cr_assert_geq(n, 0, "recv: %s", strerror(errno));
		if (n == 0)
			return -1;
		r->have = (size_t)n;
		r->pos = 0;
	}
	return (unsigned char)r->buf[r->pos++];
}

/* One parsed response. */
struct resp {
	char head[4096];
	size_t hlen;
	char body[MAX_RESP];
	size_t blen;
	char id[256]; /* X-Request-Id, "" if none */
	int ids;      /* X-Request-Id headers seen */
	int status;
};

/*
 * Reads one response: a head ending in an empty line, exactly one valid
 * Content-Length, and that many body bytes. Anything else fails the test.
 */
static void read_resp(struct rd *r, struct resp *p)
{
	long cl = -1;
	char *line;

	p->hlen = 0;
	while (p->hlen < 4 || memcmp(p->head + p->hlen - 4, "\r\n\r\n", 4)) {
		int c = rd_byte(r);

		cr_assert_geq(c, 0, "EOF inside a head after %zu bytes: %.*s", p->hlen, (int)p->hlen,
			      p->head);
		cr_assert_lt(p->hlen, sizeof(p->head) - 1, "head too long: %.200s", p->head);
		p->head[p->hlen++] = (char)c;
	}
	p->head[p->hlen] = '\0';
	cr_assert_eq(sscanf(p->head, "HTTP/1.1 %d ", &p->status), 1, "status line: %.100s", p->head);
	p->id[0] = '\0';
	p->ids = 0;
	for (line = strstr(p->head, "\r\n") + 2; *line != '\r'; line = strstr(line, "\r\n") + 2) {
		size_t n = strcspn(line, "\r");

		if (!strncasecmp(line, "Content-Length:", 15)) {
			char *end;

			cr_assert_eq(cl, -1, "two Content-Length headers:\n%s", p->head);
			cl = strtol(line + 15, &end, 10);
			cr_assert_eq(end, line + n, "bad Content-Length:\n%s", p->head);
		} else if (!strncasecmp(line, "X-Request-Id: ", 14)) {
			p->ids++;
			snprintf(p->id, sizeof(p->id), "%.*s", (int)(n - 14), line + 14);
		}
	}
	cr_assert(cl >= 0 && cl <= MAX_RESP, "no usable Content-Length:\n%s", p->head);
	p->blen = (size_t)cl;
	for (size_t i = 0; i < p->blen; i++) {
		int c = rd_byte(r);

		cr_assert_geq(c, 0, "EOF inside a body at %zu of %zu", i, p->blen);
		p->body[i] = (char)c;
	}
}

/* After the client's half-close, the server sends nothing more and closes. */
static void expect_eof(struct rd *r)
{
	shutdown(r->s, SHUT_WR);
	cr_assert_eq(rd_byte(r), -1, "bytes after the last response");
	close(r->s);
}

static size_t body_of(long n, char *b)
{
	size_t k = 3 + (size_t)(n % 5);

	for (size_t i = 0; i < k; i++)
		memcpy(b + i * UNIT_LEN, UNIT, UNIT_LEN);
	return k * UNIT_LEN;
}

/* wire_srv's answer to /N, exactly, with the header `id` after the status line (NULL: none). */
static void expect_wire_resp(const struct resp *p, long n, const char *id)
{
	char want[1024], body[1024];
	size_t blen = body_of(n, body);
	int wl = snprintf(want, sizeof(want), "HTTP/1.1 200 OK\r\n%s%s%sContent-Length: %03zu\r\n\r\n",
			  id ? "X-Request-Id: " : "", id ? id : "", id ? "\r\n" : "", blen);

	cr_assert_eq(p->hlen, (size_t)wl, "response %ld: head\n%s\nwant\n%s", n, p->head, want);
	cr_assert_eq(memcmp(p->head, want, p->hlen), 0, "response %ld: head\n%s\nwant\n%s", n,
		     p->head, want);
	cr_assert_eq(p->blen, blen, "response %ld: body of %zu bytes, want %zu", n, p->blen, blen);
	cr_assert_eq(memcmp(p->body, body, blen), 0, "response %ld: body changed:\n%.*s", n,
		     (int)p->blen, p->body);
}

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

/* Starts `wire_srv mode` (hold: see the program); returns its pid and its port in *port. */
static pid_t wire_start(const char *variant, const char *mode, long hold, int preload, int *port)
{
	char holds[24];
	char *argv[] = { (char *)prog(variant, "wire_srv"), (char *)mode, (char *)tpath("port"),
			 holds, NULL };
	pid_t pid;

	snprintf(holds, sizeof(holds), "%ld", hold);
	unlink(tpath("port"));
	pid = proc_start(argv, NULL, preload, tpath("out"), tpath("err"));
	*port = wait_port(tpath("port"), pid);
	return pid;
}

static char *request(long n, int with_id, size_t *len)
{
	char *b;
	int l = with_id ? asprintf(&b, "GET /%ld HTTP/1.1\r\nHost: x\r\nX-Request-Id: w%ld\r\n\r\n", n, n)
			: asprintf(&b, "GET /%ld HTTP/1.1\r\nHost: x\r\n\r\n", n);

	cr_assert_gt(l, 0);
	*len = (size_t)l;
	return b;
}

/* Sends requests first..first+count-1 in one send (pipelined). */
static void send_requests(int s, long first, long count, int with_id)
{
	size_t cap = (size_t)count * 80 + 1, len = 0;
	char *all = malloc(cap);

	for (long n = first; n < first + count; n++) {
		size_t l;
		char *q = request(n, with_id, &l);

		memcpy(all + len, q, l);
		len += l;
		free(q);
	}
	send_all(s, all, len);
	free(all);
}

static int wait_server(pid_t pid)
{
	int st = proc_wait(pid, 20000);

	cr_assert_eq(st, 0, "wire_srv exited with %d:\n%s", st, slurp(tpath("err"), NULL));
	return st;
}

/* ---- bodies through every call ---- */

/* Whether response n of `mode` carries the header under the library (README, "Response header"). */
static int gets_header(const char *mode, long n)
{
	if (!strcmp(mode, "stdio"))
		return n <= 1; /* the head of /1 went out before its body took the unseen path */
	if (!strcmp(mode, "sendmmsg"))
		return n % 2 == 0; /* seen, not woven into: odd responses go out as they are */
	return 1;
}

/*
 * SEQ keep-alive requests one after another, then SEQ pipelined at once (all
 * unanswered together): every response exactly as the server sent it, plus
 * the header where the rule says, and nothing after the last one.
 */
static void body_run(const char *variant, const char *mode, int preload, int pipelined)
{
	struct rd *r = calloc(1, sizeof(*r));
	struct resp *p = malloc(sizeof(*p));
	int port;
	pid_t pid = wire_start(variant, mode, pipelined ? SEQ : 0, preload, &port);

	r->s = dial(port);
	if (pipelined)
		send_requests(r->s, 0, SEQ, 1);
	for (long n = 0; n < SEQ; n++) {
		char id[32];

		if (!pipelined)
			send_requests(r->s, n, 1, 1);
		read_resp(r, p);
		snprintf(id, sizeof(id), "w%ld", n);
		expect_wire_resp(p, n, preload && gets_header(mode, n) ? id : NULL);
	}
	expect_eof(r);
	wait_server(pid);
	free(r);
	free(p);
}

static void body_case(const char *mode)
{
	for (int o2 = 0; o2 < 2; o2++) {
		const char *variant = o2 ? "O2" : "O0";

		body_run(variant, mode, 0, 0);
		body_run(variant, mode, 1, 0);
		body_run(variant, mode, 0, 1);
		body_run(variant, mode, 1, 1);
	}
}

Test(wire, bodies_through_write_are_untouched)
{
	body_case("write");
}

Test(wire, bodies_spliced_from_a_pipe_are_untouched)
{
	body_case("splice");
}

Test(wire, bodies_spliced_from_a_file_are_untouched)
{
	body_case("splicefile");
}

Test(wire, bodies_vmspliced_into_a_pipe_are_untouched)
{
	body_case("vmsplice");
}

Test(wire, bodies_teed_between_pipes_are_untouched)
{
	body_case("tee");
}

Test(wire, bodies_through_copy_file_range_or_its_fallback_are_untouched)
{
	char *err, *at;

	body_case("cfr");
	err = slurp(tpath("err"), NULL);
	at = strstr(err, "cfr: ");
	cr_assert_not_null(at, "which path did the server take? %s", err);
	cr_log_info("on this kernel, %.*s", (int)strcspn(at, "\n"), at);
	cr_assert(!strncmp(at, "cfr: copy_file_range\n", 21) || !strncmp(at, "cfr: fallback E", 15),
		  "%s", err);
	free(err);
}

Test(wire, bodies_through_sendfile_are_untouched)
{
	body_case("sendfile");
}

Test(wire, responses_through_sendmmsg_are_untouched)
{
	body_case("sendmmsg");
}

Test(wire, bodies_through_pwritev2_are_untouched)
{
	body_case("pwritev2");
}

Test(wire, stdio_on_the_connection_stops_the_header_for_good)
{
	body_case("stdio");
}

Test(wire, bodies_written_on_a_dup_of_the_connection_keep_every_header)
{
	body_case("dup");
}

Test(wire, responses_written_on_a_dup_after_the_original_closed_get_the_header)
{
	body_case("duphead");
}

Test(wire, responses_through_dprintf_get_the_header)
{
	body_case("dprintf");
}

/* ---- pipelining ---- */

/*
 * `count` requests pipelined in one send, which the server holds until it
 * has read them all, then answers in order; then `after` more one at a
 * time. Response n must carry w<n> if n < tracked, else no header; the
 * later ones get theirs again if `recover`.
 */
static void pipeline_run(const char *variant, const char *mode, long count, long tracked, long after,
			 int recover)
{
	struct rd *r = calloc(1, sizeof(*r));
	struct resp *p = malloc(sizeof(*p));
	int port;
	pid_t pid = wire_start(variant, mode, count, 1, &port);
	char *err, want[64];

	r->s = dial(port);
	send_requests(r->s, 0, count, 1);
	for (long n = 0; n < count + after; n++) {
		char id[32];

		if (n >= count)
			send_requests(r->s, n, 1, 1);
		read_resp(r, p);
		snprintf(id, sizeof(id), "w%ld", n);
		expect_wire_resp(p, n, n < tracked || (n >= count && recover) ? id : NULL);
	}
	expect_eof(r);
	wait_server(pid);
	err = slurp(tpath("err"), NULL);
	for (long n = 0; strcmp(mode, "batch") && n < count + after; n++) {
		if (n >= tracked && n < count)
			continue; /* their lines carry another request's ID (README) */
		snprintf(want, sizeof(want), "[req:w%ld] done /%ld\n", n, n);
		cr_assert_not_null(strstr(err, want), "no \"%s\" in:\n%.3000s", want, err);
	}
	free(err);
	free(r);
	free(p);
}

Test(wire, sixty_four_pipelined_requests_each_echo_their_own_id)
{
	pipeline_run("O0", "each", 64, 64, 3, 1);
	pipeline_run("O2", "each", 64, 64, 3, 1);
}

Test(wire, sixty_four_pipelined_responses_in_one_writev_each_carry_their_own_id)
{
	pipeline_run("O0", "batch", 64, 64, 3, 1);
	pipeline_run("O2", "batch", 64, 64, 3, 1);
}

Test(wire, pipelined_heads_cut_between_the_final_cr_and_lf_get_the_header)
{
	pipeline_run("O0", "crlf", 64, 64, 3, 1);
	pipeline_run("O2", "crlf", 64, 64, 3, 1);
}

Test(wire, beyond_64_unanswered_requests_the_rest_get_none_then_all_get_theirs_again)
{
	pipeline_run("O2", "each", 100, 64, 5, 1);
	pipeline_run("O2", "batch", 64 + 127, 64, 5, 1);
}

/* More than 127 lost at once, and the server's framing is no longer followed: no header again. */
Test(wire, beyond_64_plus_127_unanswered_requests_the_header_stops_for_good)
{
	pipeline_run("O2", "each", 64 + 128, 64, 5, 0);
	pipeline_run("O2", "batch", 300, 64, 5, 0);
}

static int is_uuid4(const char *s)
{
	if (strlen(s) != 36 || s[14] != '4' || !strchr("89ab", s[19]))
		return 0;
	for (size_t i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-'
							       : !strchr("0123456789abcdef", s[i]))
			return 0;
	return 1;
}

/* Generated IDs: 64 distinct UUIDs, each in its response and in the line logged after it. */
Test(wire, sixty_four_pipelined_requests_without_ids_get_64_distinct_generated_ones)
{
	struct rd *r = calloc(1, sizeof(*r));
	struct resp *p = malloc(sizeof(*p));
	static char ids[64][40];
	int port;
	pid_t pid = wire_start("O2", "each", 64, 1, &port);
	char *err, want[128];

	r->s = dial(port);
	send_requests(r->s, 0, 64, 0);
	for (long n = 0; n < 64; n++) {
		read_resp(r, p);
		cr_assert(is_uuid4(p->id), "response %ld: X-Request-Id \"%s\"", n, p->id);
		expect_wire_resp(p, n, p->id);
		strcpy(ids[n], p->id);
		for (long m = 0; m < n; m++)
			cr_assert_str_neq(ids[m], ids[n], "responses %ld and %ld", m, n);
	}
	expect_eof(r);
	wait_server(pid);
	err = slurp(tpath("err"), NULL);
	for (long n = 0; n < 64; n++) {
		snprintf(want, sizeof(want), "[req:%s] done /%ld\n", ids[n], n);
		cr_assert_not_null(strstr(err, want), "no \"%s\" in:\n%.3000s", want, err);
	}
	free(err);
	free(r);
	free(p);
}

/* ---- real servers ---- */

#define NGINX "/usr/sbin/nginx"
#define PYTHON "/usr/bin/python3"

static void write_file(const char *path, const char *data, size_t n)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(data, 1, n, f), n);
	cr_assert_eq(fclose(f), 0);
}

/* The files /0 .. /63 under dir/html, each holding body_of(N). */
static void make_files(void)
{
	char path[256], body[1024];

	snprintf(path, sizeof(path), "%s/html", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	for (long n = 0; n < 64; n++) {
		snprintf(path, sizeof(path), "%s/html/%ld", dir, n);
		write_file(path, body, body_of(n, body));
	}
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Waits until port accepts; 0, or -1 if the server exited first. */
static int wait_listening(int port, pid_t pid)
{
	long end = proc_now_ms() + 10000;

	while (proc_now_ms() < end) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int st, s = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(s);
			return 0;
		}
		close(s);
		if (waitpid(pid, &st, WNOHANG) == pid)
			return -1;
		usleep(10000);
	}
	cr_assert_fail("nothing listens on %d", port);
	return -1;
}

/*
 * 64 requests for /0 .. /63 pipelined in one send to a real server; every
 * response is framed right, its body is the file's, and it echoes its own
 * request's ID. Requests go to `prefix`N.
 */
static void real_pipeline(int port, const char *prefix)
{
	struct rd *r = calloc(1, sizeof(*r));
	struct resp *p = malloc(sizeof(*p));
	size_t cap = 64 * 120, len = 0;
	char *all = malloc(cap);

	for (long n = 0; n < 64; n++)
		len += (size_t)snprintf(all + len, cap - len,
					"GET %s%ld HTTP/1.1\r\nHost: x\r\nX-Request-Id: real%ld\r\n\r\n",
					prefix, n, n);
	r->s = dial(port);
	send_all(r->s, all, len);
	for (long n = 0; n < 64; n++) {
		char body[1024], id[32];
		size_t blen = body_of(n, body);

		read_resp(r, p);
		snprintf(id, sizeof(id), "real%ld", n);
		cr_assert_eq(p->status, 200, "response %ld:\n%s", n, p->head);
		cr_assert_eq(p->ids, 1, "response %ld has %d X-Request-Id headers:\n%s", n, p->ids, p->head);
		cr_assert_str_eq(p->id, id, "response %ld:\n%s", n, p->head);
		cr_assert_eq(p->blen, blen, "response %ld: %zu bytes", n, p->blen);
		cr_assert_eq(memcmp(p->body, body, blen), 0, "response %ld: body changed", n);
	}
	shutdown(r->s, SHUT_WR);
	close(r->s);
	free(all);
	free(r);
	free(p);
}

static pid_t nginx_start(int *port)
{
	cr_assert_eq(access(NGINX, X_OK), 0, "%s is not installed; as root: apt-get install -y nginx-light",
		     NGINX);
	for (int t = 0; t < 5; t++) {
		char conf[2048], *argv[] = { NGINX, "-p", (char *)dir, "-c", (char *)tpath("nginx.conf"),
					     "-e", (char *)tpath("error.log"), NULL };
		int n;
		pid_t pid;

		*port = free_port();
		n = snprintf(conf, sizeof(conf),
			     "daemon off;\n"
			     "master_process off;\n"
			     "pid %1$s/nginx.pid;\n"
			     "error_log %1$s/error.log info;\n"
			     "events { worker_connections 64; }\n"
			     "http {\n"
			     "  log_format req '$request_uri';\n"
			     "  access_log %1$s/access.log req;\n"
			     "  client_body_temp_path %1$s/body;\n"
			     "  proxy_temp_path %1$s/proxy;\n"
			     "  fastcgi_temp_path %1$s/fastcgi;\n"
			     "  uwsgi_temp_path %1$s/uwsgi;\n"
			     "  scgi_temp_path %1$s/scgi;\n"
			     "  client_header_buffer_size 16k;\n"
			     "  server {\n"
			     "    listen 127.0.0.1:%2$d;\n"
			     "    location /on/ { sendfile on; alias %1$s/html/; }\n"
			     "    location /off/ { sendfile off; alias %1$s/html/; }\n"
			     "  }\n"
			     "}\n",
			     dir, *port);
		cr_assert_lt(n, (int)sizeof(conf));
		write_file(tpath("nginx.conf"), conf, (size_t)n);
		pid = proc_start(argv, NULL, 1, tpath("nginx.out"), tpath("nginx.err"));
		if (wait_listening(*port, pid) == 0)
			return pid;
		proc_wait(pid, 5000);
	}
	cr_assert_fail("nginx did not start:\n%s", slurp(tpath("error.log"), NULL));
	return -1;
}

/* Each access-log line "[req:realN] /xN" names its own request. */
static void nginx_access_lines(const char *prefix)
{
	char *log = slurp(tpath("access.log"), NULL);
	long lines = 0;

	for (char *l = log; *l; l = strchr(l, '\n') + 1) {
		long a, b;
		char pre[16];

		cr_assert_eq(sscanf(l, "[req:real%ld] %15[^0-9]%ld", &a, pre, &b), 3, "line: %.80s", l);
		cr_assert_str_eq(pre, prefix, "line: %.80s", l);
		cr_assert_eq(a, b, "line names /%ld with the ID of %ld", b, a);
		lines++;
	}
	cr_assert_eq(lines, 64, "%ld access lines:\n%s", lines, log);
	free(log);
}

Test(wire, nginx_answers_64_pipelined_requests_each_with_its_own_id)
{
	int port;
	pid_t pid;

	make_files();
	for (int on = 0; on < 2; on++) {
		pid = nginx_start(&port);
		real_pipeline(port, on ? "/on/" : "/off/");
		kill(pid, SIGQUIT); /* graceful: the access log is complete */
		proc_wait(pid, 10000);
		nginx_access_lines(on ? "/on/" : "/off/");
		unlink(tpath("access.log"));
	}
}

Test(wire, python_http_server_answers_64_pipelined_requests_each_with_its_own_id)
{
	static const char *const env[] = { "PYTHONUNBUFFERED=1", NULL };
	char html[256], *out = NULL, *at;
	char *argv[] = { PYTHON, "-m", "http.server", "--bind", "127.0.0.1", "--directory", html,
			 "--protocol", "HTTP/1.1", "0", NULL };
	long end = proc_now_ms() + 10000;
	int port = 0;
	pid_t pid;

	cr_assert_eq(access(PYTHON, X_OK), 0, "%s is not installed; as root: apt-get install -y python3",
		     PYTHON);
	make_files();
	snprintf(html, sizeof(html), "%s/html", dir);
	pid = proc_start(argv, env, 1, tpath("py.out"), tpath("py.err"));
	while (!port) {
		int st;

		cr_assert_lt(proc_now_ms(), end, "python printed no port: %s", out ? out : "");
		cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "python exited: %s",
			     slurp(tpath("py.err"), NULL));
		free(out);
		out = access(tpath("py.out"), R_OK) == 0 ? slurp(tpath("py.out"), NULL) : strdup("");
		if ((at = strstr(out, " port ")) && strchr(at, '\n'))
			port = atoi(at + 6);
		else
			usleep(10000);
	}
	free(out);
	cr_assert_eq(wait_listening(port, pid), 0);
	real_pipeline(port, "/");
	kill(pid, SIGKILL);
	proc_wait(pid, 5000);
}
