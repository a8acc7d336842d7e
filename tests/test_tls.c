/*
 * The TLS write path (src/tls.c) against a fake OpenSSL that keeps
 * OpenSSL's rules: records of a set size, SSL_ERROR_WANT_WRITE at any
 * record (again on the retry if asked), a retry that must come with the same
 * buffer and at least the same length (unless ACCEPT_MOVING_WRITE_BUFFER),
 * counts below the length only with ENABLE_PARTIAL_WRITE. Every split point
 * of every case: the bytes on the wire are exact, none lost or doubled, and
 * the host sees only what OpenSSL may return.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "conn.h"
#include "ctx.h"
#include "fakessl.h"
#include "fdtab.h"
#include "tls.h"
#include "reqctx.h"

static struct fk_ssl fs;

enum { FD = 300 };

static void setup(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
	rq_fd_init();
	fake_install();
	rq_ssl = fk_fns();
	rq_ctx_clear();
}

TestSuite(tls, .init = setup);

/* A fresh fake and connection: the requests of `reqs` read through it. */
static struct rq_conn *open_conn(struct fk_ssl *s, int fd, const char *reqs)
{
	struct rq_tlsw *t;
	struct rq_conn *c;

	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->server = 1;
	s->rec = 1 << 20;
	if (fd >= 0)
		cr_assert_eq(rq_fd_set_conn(fd), 0);
	c = rq_tls_conn(s, &t);
	cr_assert_not_null(c);
	cr_assert_not_null(t);
	rq_tls_read(c, reqs, (ssize_t)strlen(reqs));
	return c;
}

/*
 * Writes n bytes as a careful host does: again after SSL_ERROR_WANT_WRITE
 * with the same arguments (a copy of them at another address when the
 * buffer may move), on from what a partial write took. Returns the number
 * of calls that failed.
 */
static int host_write(struct fk_ssl *s, int ex, const char *buf, size_t n)
{
	static char moved[2][1 << 16];
	size_t off = 0;
	int failed = 0, k = 0;

	while (off < n) {
		const char *b = buf + off;
		struct rq_tlsw *t;
		struct rq_conn *c = rq_tls_conn(s, &t);
		size_t w = 0;
		int r;

		cr_assert_leq(n - off, sizeof(moved[0]));
		if ((s->mode & MOVING) && failed) { /* the same bytes, elsewhere */
			memcpy(moved[k ^= 1], b, n - off);
			b = moved[k];
		}
		r = rq_tls_write(c, t, s, ex, b, n - off, &w);
		if (r > 0) {
			cr_assert(w > 0 && w <= n - off, "count %zu of %zu", w, n - off);
			if (!(s->mode & RQ_SSL_MODE_PARTIAL_WRITE))
				cr_assert_eq(w, n - off, "a short count without partial writes");
			off += w;
			continue;
		}
		cr_assert_eq(fk_get_error(s, r), RQ_SSL_ERROR_WANT_WRITE, "error %d after %zu of %zu",
			     fk_get_error(s, r), off, n);
		cr_assert(ex ? r == 0 : r == -1, "the real call's own return value: %d", r);
		cr_assert_lt(++failed, 100);
	}
	return failed;
}

struct wcase {
	const char *name;
	const char *reqs;
	const char *writes[8]; /* the host's writes, in order */
	const char *want;      /* the wire */
};

static const struct wcase cases[] = {
	{ "one response in one write", "GET / HTTP/1.1\r\nX-Request-Id: r1\r\n\r\n",
	  { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" },
	  "HTTP/1.1 200 OK\r\nX-Request-Id: r1\r\nContent-Length: 5\r\n\r\nhello" },
	{ "head and body in two writes", "GET / HTTP/1.1\r\nX-Request-Id: r2\r\n\r\n",
	  { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "hello" },
	  "HTTP/1.1 200 OK\r\nX-Request-Id: r2\r\nContent-Length: 5\r\n\r\nhello" },
	{ "a head cut after its status line", "GET / HTTP/1.1\r\nX-Request-Id: r3\r\n\r\n",
	  { "HTTP/1.1 404 Not Found\r\n", "Content-Length: 2\r\n\r\nno" },
	  "HTTP/1.1 404 Not Found\r\nX-Request-Id: r3\r\nContent-Length: 2\r\n\r\nno" },
	{ "a head cut inside a header line", "GET / HTTP/1.1\r\nX-Request-Id: r4\r\n\r\n",
	  { "HTTP/1.1 200 OK\r\nContent-Le", "ngth: 1\r\n\r\nx" },
	  "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Request-Id: r4\r\n\r\nx" },
	{ "five pipelined responses in one write",
	  "GET /1 HTTP/1.1\r\nX-Request-Id: p1\r\n\r\nGET /2 HTTP/1.1\r\nX-Request-Id: p2\r\n\r\n"
	  "GET /3 HTTP/1.1\r\nX-Request-Id: p3\r\n\r\nGET /4 HTTP/1.1\r\nX-Request-Id: p4\r\n\r\n"
	  "GET /5 HTTP/1.1\r\nX-Request-Id: p5\r\n\r\n",
	  { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"
	    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ncHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd"
	    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ne" },
	  "HTTP/1.1 200 OK\r\nX-Request-Id: p1\r\nContent-Length: 1\r\n\r\na"
	  "HTTP/1.1 200 OK\r\nX-Request-Id: p2\r\nContent-Length: 1\r\n\r\nb"
	  "HTTP/1.1 200 OK\r\nX-Request-Id: p3\r\nContent-Length: 1\r\n\r\nc"
	  "HTTP/1.1 200 OK\r\nX-Request-Id: p4\r\nContent-Length: 1\r\n\r\nd"
	  "HTTP/1.1 200 OK\r\nX-Request-Id: p5\r\nContent-Length: 1\r\n\r\ne" },
	{ "a body that looks like a head", "GET / HTTP/1.1\r\nX-Request-Id: r6\r\n\r\n",
	  { "HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" },
	  "HTTP/1.1 200 OK\r\nX-Request-Id: r6\r\nContent-Length: 38\r\n\r\n"
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" },
};

/* One run: the case's writes with WANT_WRITE at record want_at (0: never). */
static void run(const struct wcase *w, size_t rec, long mode, int ex, long want_at, int again,
		int fd)
{
	struct fk_ssl *s = &fs;
	char what[160];

	open_conn(s, fd, w->reqs);
	s->rec = rec;
	s->mode = mode;
	s->want_at = want_at;
	s->again = again;
	for (int i = 0; i < 8 && w->writes[i]; i++)
		host_write(s, ex, w->writes[i], strlen(w->writes[i]));
	snprintf(what, sizeof(what), "%s: record %zu, mode %ld, ex %d, want at %ld, again %d",
		 w->name, rec, mode, ex, want_at, again);
	cr_assert_eq(s->violations, 0, "%s: a retry OpenSSL would refuse", what);
	cr_assert_eq(s->pending, 0, "%s: a record left pending", what);
	s->out[s->len] = '\0';
	cr_assert_str_eq(s->out, w->want, "%s", what);
	if (fd >= 0)
		rq_fd_forget(fd);
	else
		rq_tls_free(s);
}

/* Every case, every record size, mode and flavour, WANT_WRITE at every record. */
static void every_split(int fd)
{
	static const size_t recs[] = { 1, 2, 3, 7, 16, 1 << 20 };
	static const long modes[] = { 0, RQ_SSL_MODE_PARTIAL_WRITE, MOVING,
				      RQ_SSL_MODE_PARTIAL_WRITE | MOVING };
	long runs = 0;

	for (size_t ci = 0; ci < RQ_ARRAY_LEN(cases); ci++)
		for (size_t ri = 0; ri < RQ_ARRAY_LEN(recs); ri++)
			for (size_t mi = 0; mi < RQ_ARRAY_LEN(modes); mi++)
				for (int ex = 0; ex < 2; ex++) {
					long total;

					run(&cases[ci], recs[ri], modes[mi], ex, 0, 0, fd);
					total = fs.records;
					for (long at = 1; at <= total; at++)
						for (int again = 0; again < 3; again++, runs++)
							run(&cases[ci], recs[ri], modes[mi], ex, at,
							    again, fd);
				}
	cr_log_info("%ld runs", runs);
	cr_assert_gt(runs, 20000, "every split was tried");
}

Test(tls, every_want_write_at_every_record_keeps_the_wire_exact, .timeout = 120)
{
	every_split(FD);
}

/*
 * Writes whose header insertion OpenSSL holds (WANT_WRITE on it), each
 * keeping its bounce buffer until it is retried: RQ_TLS_BOUNCE_MAX of them
 * leave none for others.
 */
static struct fk_ssl stuck[RQ_TLS_BOUNCE_MAX];

static void hold_every_bounce(void)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

	for (int i = 0; i < RQ_TLS_BOUNCE_MAX; i++) {
		struct rq_tlsw *t;
		struct rq_conn *c = open_conn(&stuck[i], -1, "GET / HTTP/1.1\r\n\r\n");
		size_t w;

		stuck[i].want_at = 1;
		c = rq_tls_conn(&stuck[i], &t);
		cr_assert_eq(rq_tls_write(c, t, &stuck[i], 1, resp, sizeof(resp) - 1, &w), 0);
		cr_assert_eq(t->owe, 3);
	}
}

Test(tls, with_no_bounce_buffer_free_each_piece_goes_on_its_own_and_the_wire_stays_exact,
     .timeout = 120)
{
	hold_every_bounce();
	every_split(FD);
	for (int i = 0; i < RQ_TLS_BOUNCE_MAX; i++)
		rq_tls_free(&stuck[i]);
}

/* A response head and its header go out in one real write, as the head alone would. */
Test(tls, a_header_costs_no_extra_record)
{
	struct fk_ssl *s = &fs;
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

	open_conn(s, FD, "GET / HTTP/1.1\r\nX-Request-Id: one\r\n\r\n");
	s->rec = 16384;
	cr_assert_eq(host_write(s, 0, resp, sizeof(resp) - 1), 0);
	cr_assert_eq(s->calls, 1, "%d real writes", s->calls);
	cr_assert_eq(s->records, 1);
	s->out[s->len] = '\0';
	cr_assert_str_eq(s->out, "HTTP/1.1 200 OK\r\nX-Request-Id: one\r\nContent-Length: 5\r\n\r\nhello");
	rq_fd_forget(FD);
}

Test(tls, a_memory_bio_connection_keeps_the_wire_exact_too, .timeout = 120)
{
	every_split(-1);
	cr_assert_eq(rq_tls_mem_live(), 0, "every SSL_free gave its connection back");
}

Test(tls, a_retry_with_other_bytes_is_not_taken_for_one)
{
	struct fk_ssl *s = &fs;
	struct rq_tlsw *t;
	struct rq_conn *c = open_conn(s, FD, "GET / HTTP/1.1\r\nX-Request-Id: z\r\n\r\n");
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	size_t w;

	s->rec = 4;
	s->want_at = 2; /* the second record: inside the status line */
	c = rq_tls_conn(s, &t);
	cr_assert_eq(rq_tls_write(c, t, s, 1, resp, sizeof(resp) - 1, &w), 0);
	cr_assert_eq(t->owe, 3, "the gathered piece that failed is owed");
	cr_assert_eq(t->owe_off, 0);
	cr_assert_eq(t->owe_len, sizeof(resp) - 1 + 17, "the response and its header, gathered");
	cr_assert_eq(t->held, sizeof(resp) - 1, "the owed piece counts as out");
	/* The host breaks the rule: a shorter buffer. reqctx starts over, OpenSSL refuses. */
	cr_assert_eq(rq_tls_write(c, t, s, 1, resp, 3, &w), 0);
	cr_assert_eq(s->violations, 1);
	cr_assert_eq(t->owe, 0);
	rq_fd_forget(FD);
}

Test(tls, the_plaintext_sets_the_context_and_a_peek_only_moves_it)
{
	struct fk_ssl *s = &fs;
	struct rq_conn *c = open_conn(s, FD, "GET / HTTP/1.1\r\nX-Request-Id: first\r\n\r\n");

	cr_assert_str_eq(reqctx_id(), "first");
	rq_tls_read(c, "GET / HTTP/1.1\r\nX-Request-Id: second\r\n\r\n", 0); /* a peek */
	cr_assert_str_eq(reqctx_id(), "first");
	rq_ctx_clear();
	rq_tls_read(c, "GET / HTTP/1.1\r\nX-Request-Id: second\r\n\r\n", 40);
	cr_assert_str_eq(reqctx_id(), "second");
	rq_fd_forget(FD);
}

Test(tls, a_client_side_ssl_object_is_left_alone)
{
	struct fk_ssl *s = &fs;
	struct rq_tlsw *t;

	memset(s, 0, sizeof(*s));
	s->fd = FD;
	cr_assert_eq(rq_fd_set_conn(FD), 0);
	cr_assert_null(rq_tls_conn(s, &t), "an accepted fd whose SSL object is a client");
	cr_assert_eq(atomic_load(&rq_conn_of(FD)->xport), RQ_XP_PLAIN);
	s->fd = -1;
	cr_assert_null(rq_tls_conn(s, &t), "a memory-BIO client");
	cr_assert_eq(rq_tls_mem_live(), 0);
	rq_fd_forget(FD);
	s->server = 1;
	s->fd = FD;
	cr_assert_null(rq_tls_conn(s, &t), "an fd that is no accepted connection");
}

Test(tls, memory_bio_connections_are_bounded)
{
	static struct fk_ssl many[RQ_TLS_MEM_MAX + 64];
	struct rq_tlsw *t;
	int got = 0;

	for (size_t i = 0; i < RQ_ARRAY_LEN(many); i++) {
		many[i].fd = -1;
		many[i].server = 1;
		got += rq_tls_conn(&many[i], &t) != NULL;
	}
	cr_assert_leq(got, RQ_TLS_MEM_MAX);
	cr_assert_eq(rq_tls_mem_live(), (uint32_t)got);
	cr_assert_gt(got, RQ_TLS_MEM_MAX / 2, "the table takes most of its size (%d)", got);
	for (size_t i = 0; i < RQ_ARRAY_LEN(many); i++)
		rq_tls_free(&many[i]);
	cr_assert_eq(rq_tls_mem_live(), 0);
	cr_assert_not_null(rq_tls_conn(&many[0], &t), "room again once freed");
	rq_tls_free(&many[0]);
}

/*
 * A write longer than a bounce buffer: its first RQ_TLS_BOUNCE bytes go
 * gathered with the header, the rest in place; WANT_WRITE at each record,
 * in every mode, keeps the wire exact.
 */
Test(tls, a_write_longer_than_a_bounce_buffer_keeps_the_wire_exact)
{
	static char resp[40100], want[40200];
	static const long modes[] = { 0, RQ_SSL_MODE_PARTIAL_WRITE, MOVING };
	int hl = sprintf(resp, "HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n");

	for (int i = 0; i < 40000; i++)
		resp[hl + i] = (char)('a' + i % 26);
	sprintf(want, "HTTP/1.1 200 OK\r\nX-Request-Id: big\r\nContent-Length: 40000\r\n\r\n");
	memcpy(want + strlen(want), resp + hl, 40000);
	for (size_t m = 0; m < RQ_ARRAY_LEN(modes); m++)
		for (long at = 0; at <= 12; at++) {
			struct fk_ssl *s = &fs;

			open_conn(s, FD, "GET / HTTP/1.1\r\nX-Request-Id: big\r\n\r\n");
			s->rec = 4096;
			s->mode = modes[m];
			s->want_at = at;
			s->again = (int)(at % 2);
			host_write(s, 1, resp, (size_t)hl + 40000);
			cr_assert_eq(s->violations, 0, "mode %ld, want at %ld", modes[m], at);
			cr_assert_eq(s->len, (size_t)hl + 19 + 40000, "mode %ld, want at %ld: %zu bytes",
				     modes[m], at, s->len);
			cr_assert_eq(memcmp(s->out, want, s->len), 0, "mode %ld, want at %ld", modes[m], at);
			rq_fd_forget(FD);
		}
}
