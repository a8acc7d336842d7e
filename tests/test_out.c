/*
 * Outbound connections against a fake kernel (src/out.h): which sockets
 * (REQCTX_PROPAGATE, REQCTX_PROPAGATE_TO), the ID and traceparent in HTTP/1
 * request heads, every split of a head into writes with every short write,
 * bodies untouched, the FastCGI PARAMS record; FastCGI read by a server;
 * traceparent read in; the relay of a worker's log lines through a pipe.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common.h"
#include "carry.h"
#include "conn.h"
#include "ctx.h"
#include "fcgi.h"
#include "fdtab.h"
#include "io.h"
#include "iowrite.h"
#include "out.h"
#include "reqctx.h"
#include "trace.h"

static const char *bdir_or_build(void)
{
	const char *b = getenv("REQCTX_BUILD");

	return b && *b ? b : "build";
}

/* A lowercase UUIDv4. */
static int is_uuid(const char *s)
{
	if (strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
			return 0;
	return s[14] == '4' && strchr("89ab", s[19]);
}

static int up = -1; /* a real TCP socket, never connected: the fake kernel takes its bytes */

static void setup_env(const char *const *env)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(8080) };

	test_config(env);
	rq_fd_init();
	fake_install();
	fake_reset(0);
	rq_ctx_clear();
	if (up < 0)
		up = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(up, 0);
	rq_fd_forget(up);
	rq_carry_new(up, -1);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(rq_out_connect(up, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void setup(void)
{
	static const char *const env[] = { NULL };

	setup_env(env);
}

TestSuite(dest);
TestSuite(out, .init = setup);
TestSuite(fcgi_out, .init = setup);
TestSuite(inbound, .init = setup);
TestSuite(relay, .init = setup);

static void in_request(const char *id)
{
	struct rq_ctx c = { .serial = rq_serial_next(), .len = (uint32_t)strlen(id) };

	memcpy(c.id, id, c.len + 1);
	rq_ctx_set(&c);
}

static void out_is(const char *want)
{
	cr_assert_eq(fk.len, strlen(want), "wire (%zu bytes):\n%.*s\nwanted (%zu):\n%s", fk.len, (int)fk.len,
		     fk.out, strlen(want), want);
	cr_assert_eq(memcmp(fk.out, want, fk.len), 0, "wire:\n%.*s\nwanted:\n%s", (int)fk.len, fk.out, want);
}

/* ---- destinations ------------------------------------------------------------ */

static int match(const char *pats, const char *addr, int port)
{
	char buf[RQ_DEST_BYTES];
	struct rq_dest d[RQ_DEST_MAX];
	int n;
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
	struct sockaddr_un un = { .sun_family = AF_UNIX };

	cr_assert_eq(rq_config_dests_parse(pats, buf, d, &n), 0, "%s", pats);
	if (!strncmp(addr, "unix:", 5)) {
		snprintf(un.sun_path, sizeof(un.sun_path), "%s", addr + 5);
		return rq_config_dest_match(d, n, &un, sizeof(un));
	}
	if (inet_pton(AF_INET, addr, &in.sin_addr) == 1)
		return rq_config_dest_match(d, n, &in, sizeof(in));
	cr_assert_eq(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1, "%s", addr);
	return rq_config_dest_match(d, n, &in6, sizeof(in6));
}

Test(dest, patterns_match_addresses_ports_and_socket_paths)
{
	static const struct {
		const char *pats, *addr;
		int port, want;
	} t[] = {
		{ "", "203.0.113.9", 443, 1 },
		{ "*", "2001:db8::1", 443, 1 },
		{ "*", "unix:/run/php/fpm.sock", 0, 0 },
		{ "127.0.0.1", "127.0.0.1", 9000, 1 },
		{ "127.0.0.1", "127.0.0.2", 9000, 0 },
		{ "127.0.0.1:9000", "127.0.0.1", 9000, 1 },
		{ "127.0.0.1:9000", "127.0.0.1", 9001, 0 },
		{ "127.0.0.1:*", "127.0.0.1", 1, 1 },
		{ "10.*", "10.200.3.4", 80, 1 },
		{ "10.*", "11.0.0.1", 80, 0 },
		{ "192.168.*:8080", "192.168.7.1", 8080, 1 },
		{ "192.168.*:8080", "192.169.7.1", 8080, 0 },
		{ "172.16.0.0/12", "172.31.255.255", 80, 1 },
		{ "172.16.0.0/12", "172.32.0.0", 80, 0 },
		{ "*:8080", "198.51.100.1", 8080, 1 },
		{ "*:8080", "::1", 8080, 1 },
		{ "*:8080", "::1", 80, 0 },
		{ "[::1]", "::1", 80, 1 },
		{ "[::1]:8080", "::1", 80, 0 },
		{ "[fd00::/8]", "fd12:3456::1", 80, 1 },
		{ "[fd00::/8]", "fe80::1", 80, 0 },
		{ "[*]:443", "2001:db8::2", 443, 1 },
		{ "[*]:443", "192.0.2.1", 443, 0 },
		{ "127.0.0.1", "::ffff:127.0.0.1", 80, 1 },
		{ "10.*, 127.0.0.1:9000 ,[::1]", "::1", 5, 1 },
		{ "unix:/run/php/*.sock", "unix:/run/php/fpm.sock", 0, 1 },
		{ "unix:/run/php/*.sock", "unix:/tmp/x.sock", 0, 0 },
		{ "unix:@abstract*", "unix:", 0, 0 },
		{ "10.*", "unix:/run/a.sock", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(match(t[i].pats, t[i].addr, t[i].port), t[i].want, "%s vs %s port %d", t[i].pats,
			     t[i].addr, t[i].port);
}

Test(dest, bad_patterns_are_refused)
{
	static const char *const bad[] = {
		"*.internal:8080", "example.com", "10.*.1.2", "1.2.3.4.*", "10.0.0.0/33", "[::1", "[::1]x",
		"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", "[fe80::/129]", "unix:", ":80", "300.1.1.1",
		"10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*,10.*",
	};
	char buf[RQ_DEST_BYTES];
	struct rq_dest d[RQ_DEST_MAX];
	int n;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(rq_config_dests_parse(bad[i], buf, d, &n), -EINVAL, "%s was taken", bad[i]);
}

Test(dest, a_bad_list_is_reported_and_fails_closed)
{
	static const char *const env[] = { "REQCTX_PROPAGATE_TO=10.*,app.internal", NULL };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80) };

	test_config(env);
	cr_assert_str_eq(test_report_buf,
			 "reqctx: REQCTX_PROPAGATE_TO=\"10.*,app.internal\" is not a comma-separated list of at most "
			 "16 address patterns (ADDR[:PORT], [ADDR6][:PORT], unix:GLOB); using \"no destination\"\n");
	cr_assert_eq(rq_cfg.dest_none, 1);
	sa.sin_addr.s_addr = htonl(0x0a000001);
	rq_fd_init();
	rq_fd_forget(77);
	rq_carry_new(77, -1);
	cr_assert_eq(rq_out_connect(77, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(rq_fd_flags(rq_fd_peek(77)), RQ_FD_CARRY, "the socket stays a plain carrier");
}

/* ---- HTTP/1 --------------------------------------------------------------- */

Test(out, a_connected_stream_socket_becomes_an_outbound_connection)
{
	struct rq_conn *c = rq_conn_of(up);

	cr_assert_eq(rq_fd_flags(rq_fd_peek(up)), RQ_FD_CONN);
	cr_assert_not_null(c);
	cr_assert_eq(c->proto, RQ_PR_HTTP1_OUT);
	cr_assert(rq_conn_outbound(c));
}

Test(out, a_request_head_gets_the_id_after_its_request_line)
{
	in_request("front-1");
	cr_assert_eq(wr(up, "GET /x HTTP/1.1\r\nHost: b\r\n\r\n", 28), 28);
	out_is("GET /x HTTP/1.1\r\nX-Request-Id: front-1\r\nHost: b\r\n\r\n");
}

Test(out, outside_any_request_nothing_is_inserted)
{
	cr_assert_eq(wr(up, "GET /x HTTP/1.1\r\nHost: b\r\n\r\n", 28), 28);
	out_is("GET /x HTTP/1.1\r\nHost: b\r\n\r\n");
}

Test(out, a_valid_id_of_its_own_is_kept_an_invalid_one_gets_ours_before_it)
{
	in_request("mine");
	write_all(up, "GET /a HTTP/1.1\r\nx-request-id: theirs\r\n\r\n", 41);
	write_all(up, "GET /b HTTP/1.1\r\nX-Request-Id: bad id\r\n\r\n", 41);
	out_is("GET /a HTTP/1.1\r\nx-request-id: theirs\r\n\r\n"
	       "GET /b HTTP/1.1\r\nX-Request-Id: mine\r\nX-Request-Id: bad id\r\n\r\n");
}

Test(out, each_request_on_a_reused_connection_gets_its_writer_s_id)
{
	in_request("first");
	write_all(up, "GET /1 HTTP/1.1\r\n\r\n", 19);
	in_request("second");
	write_all(up, "POST /2 HTTP/1.1\r\nContent-Length: 19\r\n\r\nGET /x HTTP/1.1\r\n\r\n", 59);
	in_request("third");
	write_all(up, "GET /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n13\r\nGET /y HTTP/1.1\r\n\r\n\r\n0\r\n\r\n",
		  77);
	out_is("GET /1 HTTP/1.1\r\nX-Request-Id: first\r\n\r\n"
	       "POST /2 HTTP/1.1\r\nX-Request-Id: second\r\nContent-Length: 19\r\n\r\nGET /x HTTP/1.1\r\n\r\n"
	       "GET /3 HTTP/1.1\r\nX-Request-Id: third\r\nTransfer-Encoding: chunked\r\n\r\n"
	       "13\r\nGET /y HTTP/1.1\r\n\r\n\r\n0\r\n\r\n");
}

/*
 * A connection opened in one request whose first write comes from another
 * context (a loop's write-ready callback in batch mode) speaks for the
 * opener, which becomes current; later writes carry their writer's ID.
 */
Test(out, the_first_request_on_a_fresh_connection_is_its_opener_s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(8080) };

	rq_fd_forget(up);
	in_request("opener");
	rq_carry_new(up, -1);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(rq_out_connect(up, (struct sockaddr *)&sa, sizeof(sa)), 0);
	in_request("callback");
	write_all(up, "GET /1 HTTP/1.1\r\n\r\n", 19);
	cr_assert_str_eq(rq_ctx_cur()->id, "opener");
	in_request("later");
	write_all(up, "GET /2 HTTP/1.1\r\n\r\n", 19);
	out_is("GET /1 HTTP/1.1\r\nX-Request-Id: opener\r\n\r\nGET /2 HTTP/1.1\r\nX-Request-Id: later\r\n\r\n");
}

Test(out, a_reply_is_read_in_the_context_that_wrote_the_request)
{
	struct iovec v = { "HTTP/1.1 200 OK\r\n\r\n", 19 };

	in_request("writer");
	write_all(up, "GET / HTTP/1.1\r\n\r\n", 18);
	rq_ctx_clear();
	rq_io_read(up, &v, 1, 19);
	cr_assert_str_eq(rq_ctx_cur()->id, "writer");
	in_request("other");
	rq_fd_enter(up); /* an epoll event for it */
	cr_assert_str_eq(rq_ctx_cur()->id, "writer");
}

Test(out, a_stream_that_is_not_http_passes_untouched)
{
	static const char hello[] = "\x16\x03\x01\x00\x05hello GET / HTTP/1.1\r\n\r\n";

	in_request("t");
	write_all(up, hello, sizeof(hello) - 1);
	cr_assert_eq(fk.len, sizeof(hello) - 1);
	cr_assert_eq(memcmp(fk.out, hello, fk.len), 0);
}

/*
 * Strips our header line once from the wire and checks it sat right after
 * the request line or right before the blank line.
 */
static void strip_one(const char *line, const char *in, size_t n)
{
	char *at = memmem(fk.out, fk.len, line, strlen(line));
	size_t off, l = strlen(line);

	cr_assert_not_null(at, "no %s in:\n%.*s", line, (int)fk.len, fk.out);
	off = (size_t)(at - fk.out);
	cr_assert_null(memmem(at + 1, fk.len - off - 1, line, l), "two of them:\n%.*s", (int)fk.len, fk.out);
	cr_assert(!strncmp(at - 2, "\r\n", 2) && (off == strlen("GET /x HTTP/1.1\r\n") ||
						   !strncmp(at + l, "\r\n", 2)),
		  "misplaced:\n%.*s", (int)fk.len, fk.out);
	memmove(at, at + l, fk.len - off - l);
	fk.len -= l;
	cr_assert_eq(fk.len, n);
	cr_assert_eq(memcmp(fk.out, in, n), 0, "caller bytes changed:\n%.*s", (int)fk.len, fk.out);
}

/* Every split of a head (and its body) into two writes, with every short write. */
Test(out, every_split_and_every_short_write_keeps_the_bytes_exact)
{
	static const char in[] = "GET /x HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello";
	size_t n = sizeof(in) - 1;

	for (size_t split = 0; split <= n; split++) {
		for (size_t cap = 1; cap <= 64; cap += cap < 8 ? 1 : 7) {
			setup();
			fk.cap = cap;
			in_request("split-id");
			write_all(up, in, split);
			write_all(up, in + split, n - split);
			strip_one("X-Request-Id: split-id\r\n", in, n);
		}
	}
}

Test(out, a_cut_insertion_is_finished_before_bytes_that_go_by_another_way)
{
	in_request("cut");
	fk.cap = 20; /* the request line and 3 bytes of the header */
	cr_assert_eq(wr(up, "GET /x HTTP/1.1\r\n\r\n", 19), 17);
	fk.cap = (size_t)-1;
	cr_assert_eq(rq_io_unseen_pre(up), 0);
	out_is("GET /x HTTP/1.1\r\nX-Request-Id: cut\r\n");
	cr_assert_eq(wr(up, "\r\n", 2), 2);
	out_is("GET /x HTTP/1.1\r\nX-Request-Id: cut\r\n\r\n");
}

Test(out, propagate_0_makes_no_outbound_connection)
{
	static const char *const env[] = { "REQCTX_PROPAGATE=0", NULL };

	setup_env(env);
	cr_assert_eq(rq_fd_flags(rq_fd_peek(up)), RQ_FD_CARRY);
	in_request("p0");
	cr_assert_eq(wr(up, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	cr_assert_eq(fk.calls, 1, "a carrier's write is the caller's own call");
	out_is("GET / HTTP/1.1\r\n\r\n");
}

Test(out, traceparent_goes_with_the_id_unless_the_request_has_one)
{
	static const char *const env[] = { "REQCTX_TRACEPARENT=1", NULL };
	static const char id[] = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
	char want[512];

	setup_env(env);
	in_request(id);
	write_all(up, "GET /1 HTTP/1.1\r\n\r\n", 19);
	snprintf(want, sizeof(want), "GET /1 HTTP/1.1\r\nX-Request-Id: %s\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-", id);
	cr_assert_eq(memcmp(fk.out, want, strlen(want)), 0, "%.*s", (int)fk.len, fk.out);
	cr_assert_eq(strspn(fk.out + strlen(want), "0123456789abcdef"), 16);
	cr_assert_eq(memcmp(fk.out + strlen(want) + 16, "-01\r\n\r\n", 7), 0);
	cr_assert_eq(fk.len, strlen(want) + 16 + 7);
	fake_reset(0);
	write_all(up, "GET /2 HTTP/1.1\r\nTraceParent: 00-x\r\nX-Request-Id: own\r\n\r\n", 57);
	out_is("GET /2 HTTP/1.1\r\nTraceParent: 00-x\r\nX-Request-Id: own\r\n\r\n");
}

Test(out, the_trace_id_of_an_id_that_is_no_uuid_is_a_stable_hash)
{
	uint8_t a[16], b[16], c[16], zero[16] = { 0 };

	rq_trace_of("abc123", 6, a);
	rq_trace_of("abc123", 6, b);
	rq_trace_of("abc124", 6, c);
	cr_assert_eq(memcmp(a, b, 16), 0);
	cr_assert_neq(memcmp(a, c, 16), 0);
	cr_assert_neq(memcmp(a, zero, 16), 0);
	rq_trace_of("4BF92F3577B34DA6A3CE929D0E0E4736", 32, a);
	cr_assert_eq(a[0], 0x4b);
	cr_assert_eq(a[15], 0x36);
}

/* ---- FastCGI out ------------------------------------------------------------ */

static char *fixture(size_t *n)
{
	char path[600];
	FILE *f;
	char *b = malloc(8192);

	snprintf(path, sizeof(path), "%s/../tests/fixtures/fcgi_nginx.bin", bdir_or_build());
	f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	*n = fread(b, 1, 8192, f);
	fclose(f);
	return b;
}

/* The IDs a FastCGI server reads from bytes, one per request ("" for none), joined by commas. */
static void server_reads(const char *b, size_t n, char *ids)
{
	struct rq_fcgi_in s;
	size_t off = 0;

	rq_fcgi_in_init(&s);
	*ids = '\0';
	while (off < n) {
		enum rq_fcgi_ev ev;

		off += rq_fcgi_in_feed(&s, b + off, n - off, &ev);
		cr_assert_neq(ev, RQ_FCGI_EV_DEAD, "the record stream broke at %zu", off);
		if (ev == RQ_FCGI_EV_PARAMS) {
			int k = rq_fcgi_in_cur(&s);

			sprintf(ids + strlen(ids), "%s%.*s", *ids ? "," : "", (int)rq_fcgi_in_id(&s, k), s.xr[k]);
		}
	}
}

/*
 * nginx's two requests on one connection (the first with the client's ID
 * param, the second without): the second gets ours, whatever the kernel
 * takes per call, and the record stream stays valid.
 */
Test(fcgi_out, nginx_s_params_get_the_id_param_with_every_short_write)
{
	size_t n;
	char *in = fixture(&n), ids[600];

	for (size_t cap = 1; cap <= 200; cap += cap < 16 ? 1 : 23) {
		setup();
		fk.cap = cap;
		in_request("fcgi-front-7");
		write_all(up, in, n);
		cr_assert_eq(rq_conn_of(up)->proto, RQ_PR_FCGI_OUT);
		cr_assert_eq(fk.len, n + 40, "cap %zu: %zu bytes", cap, fk.len); /* 8 + 2 + 17 + 12 + 1 pad */
		server_reads(fk.out, fk.len, ids);
		cr_assert_str_eq(ids, "client-abc-1,fcgi-front-7", "cap %zu", cap);
	}
	free(in);
}

/* ---- inbound -------------------------------------------------------------- */

enum { ACC = 230 };

static void accepted(void)
{
	cr_assert_eq(rq_fd_set_conn(ACC), 0);
}

static void rd(const char *b, size_t n)
{
	struct iovec v = { (void *)b, n };

	rq_io_read(ACC, &v, 1, (ssize_t)n);
}

Test(inbound, a_fastcgi_server_reads_each_request_s_id_from_its_params)
{
	size_t n;
	char *in = fixture(&n);

	setup();
	in_request("nginx-id");
	write_all(up, in, n); /* the fixture with our param added */
	accepted();
	rq_ctx_clear();
	for (size_t off = 0; off < fk.len; off += 8) /* read the way php-fpm does: in pieces */
		rd(fk.out + off, fk.len - off < 8 ? fk.len - off : 8);
	cr_assert_str_eq(rq_ctx_cur()->id, "nginx-id", "the second request's ID is the one added");
	cr_assert_eq(rq_conn_of(ACC)->proto, RQ_PR_FCGI_IN);
	free(in);
}

/* A FastCGI record. */
static size_t rec(char *o, int type, int rid, const char *c, size_t n)
{
	o[0] = 1;
	o[1] = (char)type;
	o[2] = (char)(rid >> 8);
	o[3] = (char)rid;
	o[4] = (char)(n >> 8);
	o[5] = (char)n;
	o[6] = o[7] = 0;
	memcpy(o + 8, c, n);
	return 8 + n;
}

Test(inbound, multiplexed_fastcgi_requests_are_kept_apart)
{
	char b[512], p1[64], p2[64];
	size_t n = 0, l1, l2;
	const char begin[8] = { 0, 1, 1, 0, 0, 0, 0, 0 };
	char first[40];

	accepted();
	l1 = (size_t)sprintf(p1, "%c%cHTTP_X_REQUEST_IDone-a", 17, 5);
	l2 = (size_t)sprintf(p2, "%c%cQUERY_STRINGx", 12, 1);
	n += rec(b + n, 1, 1, begin, 8);
	n += rec(b + n, 1, 2, begin, 8);
	n += rec(b + n, 4, 1, p1, l1);
	n += rec(b + n, 4, 1, "", 0);
	rd(b, n);
	cr_assert_str_eq(rq_ctx_cur()->id, "one-a");
	n = rec(b, 4, 2, p2, l2);
	n += rec(b + n, 4, 2, "", 0);
	rd(b, n);
	cr_assert(is_uuid(rq_ctx_cur()->id), "request 2 has no ID param: %s", rq_ctx_cur()->id);
	snprintf(first, sizeof(first), "%s", rq_ctx_cur()->id);
	n = rec(b, 5, 1, "", 0); /* request 1's STDIN */
	rd(b, n);
	cr_assert_str_eq(rq_ctx_cur()->id, "one-a");
	n = rec(b, 5, 2, "", 0);
	rd(b, n);
	cr_assert_str_eq(rq_ctx_cur()->id, first);
}

static void head_id(const char *req, char *out)
{
	accepted();
	rd(req, strlen(req));
	strcpy(out, rq_ctx_cur()->id);
}

Test(inbound, a_valid_traceparent_gives_its_trace_id_when_no_id_was_sent)
{
	static const char *const env[] = { "REQCTX_TRACEPARENT=1", NULL };
	char id[160];

	setup_env(env);
	head_id("GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n", id);
	cr_assert_str_eq(id, "4bf92f3577b34da6a3ce929d0e0e4736");
	head_id("GET / HTTP/1.1\r\ntraceparent:  01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x \r\n\r\n", id);
	cr_assert_str_eq(id, "4bf92f3577b34da6a3ce929d0e0e4736", "a higher version with more fields");
	head_id("GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		"X-Request-Id: wins\r\n\r\n", id);
	cr_assert_str_eq(id, "wins");
	head_id("GET / HTTP/1.1\r\nX-Request-Id: wins2\r\n"
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n", id);
	cr_assert_str_eq(id, "wins2");
}

Test(inbound, an_invalid_traceparent_is_ignored_whole)
{
	static const char *const env[] = { "REQCTX_TRACEPARENT=1", NULL };
	static const char *const bad[] = {
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 x",
	};
	char id[160], req[512];

	setup_env(env);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\ntraceparent: %s\r\n\r\n", bad[i]);
		head_id(req, id);
		cr_expect(is_uuid(id), "%s gave %s", bad[i], id);
	}
	head_id("GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n", id);
	cr_assert(is_uuid(id), "two traceparents make none: %s", id);
}

Test(inbound, traceparent_is_not_read_by_default)
{
	char id[160];

	head_id("GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n", id);
	cr_assert(is_uuid(id), "%s", id);
}

/* ---- relay ---------------------------------------------------------------- */

enum { PR = 240, LOGFD = 2 };

static void pipe_read_n(const char *b, size_t n)
{
	struct iovec v = { (void *)b, n };

	rq_io_read(PR, &v, 1, (ssize_t)n);
}

static void pipe_read(const char *b)
{
	pipe_read_n(b, strlen(b));
}

static void relay_setup(void)
{
	rq_fd_forget(PR);
	rq_carry_new(PR, -1);
	cr_assert_eq(rq_fd_set_relay(PR), 0);
}

Test(relay, a_relaying_thread_takes_the_id_of_the_line_it_reads)
{
	relay_setup();
	pipe_read("[req:worker-a] stderr line\n");
	cr_assert_str_eq(rq_ctx_cur()->id, "worker-a");
	pipe_read("[req:worker-b] part");
	cr_assert_str_eq(rq_ctx_cur()->id, "worker-b");
	pipe_read("[req:not-a-start] rest\n"); /* inside a line: the pipe's context stays */
	cr_assert_str_eq(rq_ctx_cur()->id, "worker-b");
	pipe_read("a bare line\n");
	cr_assert_eq(rq_ctx_cur()->serial, 0);
	pipe_read("[req:bad id] x\n");
	cr_assert_eq(rq_ctx_cur()->serial, 0, "an invalid ID is no ID");
	pipe_read_n("[req:c] x" RQ_FPM_FLUSH, 9 + RQ_FPM_FLUSH_LEN);
	cr_assert_str_eq(rq_ctx_cur()->id, "c");
	pipe_read_n(RQ_FPM_FLUSH "[req:d] after a flush command\n", RQ_FPM_FLUSH_LEN + 30);
	cr_assert_str_eq(rq_ctx_cur()->id, "d");
}

Test(relay, a_thread_in_a_request_of_its_own_is_not_moved_by_the_bytes)
{
	relay_setup();
	in_request("mine");
	rq_carry_put(PR, rq_fd_peek(PR));
	pipe_read("[req:theirs] x\n");
	cr_assert_str_eq(rq_ctx_cur()->id, "mine");
}

Test(relay, relayed_lines_keep_their_writer_s_prefix)
{
	static const char two[] = "[req:w1] first\n[req:w2] second\nown line\n";

	cr_assert_eq(rq_fd_set_log(LOGFD), 0);
	relay_setup();
	pipe_read(two);
	cr_assert_str_eq(rq_ctx_cur()->id, "w1");
	write_all(LOGFD, two, sizeof(two) - 1);
	out_is("[req:w1] first\n[req:w2] second\n[req:w1] own line\n");
	in_request("w9"); /* no longer relaying: its own prefix only */
	fake_reset(0);
	write_all(LOGFD, "[req:w2] second\n", 16);
	out_is("[req:w9] [req:w2] second\n");
}

Test(relay, php_fpm_s_flush_command_is_no_log_line)
{
	cr_assert_eq(rq_fd_set_log(LOGFD), 0);
	in_request("fl");
	write_all(LOGFD, "partial", 7);
	write_all(LOGFD, RQ_FPM_FLUSH, RQ_FPM_FLUSH_LEN);
	write_all(LOGFD, "next\n", 5);
	cr_assert_eq(fk.len, 16 + 6 + 14);
	cr_assert_eq(memcmp(fk.out, "[req:fl] partial" RQ_FPM_FLUSH "[req:fl] next\n", fk.len), 0);
}

Test(relay, a_listening_process_s_stderr_stays_a_log_when_a_pipe_is_put_on_it)
{
	rq_fd_forget(PR + 1);
	rq_carry_new(PR + 1, PR);
	cr_assert_eq(rq_fd_set_log(LOGFD), 0);
	cr_assert_eq(rq_fd_stays_log(PR + 1, LOGFD, 1), 1);
	cr_assert_eq(rq_fd_stays_log(PR + 1, LOGFD, 0), 0, "a process that never listened");
	cr_assert_eq(rq_fd_set_log(1), 0);
	cr_assert_eq(rq_fd_stays_log(PR + 1, 1, 1), 0, "stdout is data in a pipe");
	cr_assert_eq(rq_fd_stays_log(PR + 1, 7, 1), 0, "fd 7 is no standard log fd");
	cr_assert_eq(rq_fd_set_conn(ACC), 0);
	cr_assert_eq(rq_fd_stays_log(ACC, LOGFD, 1), 0, "a connection put on stderr is a connection");
}
