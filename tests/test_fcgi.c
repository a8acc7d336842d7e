/*
 * FastCGI: the inbound record scanner fed every split of real and hand-built
 * streams, and the outbound PARAMS insertion cut at every byte by the kernel.
 * tests/fixtures/fcgi_nginx.bin is what nginx 1.22 (Debian 12) sent on one
 * keep-alive upstream connection (fastcgi_keep_conn on) for two requests:
 * GET /index.php?q=1 with X-Request-Id: client-abc-1, then POST /post.php
 * with a 7-byte body and no ID.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fcgi.h"

static void setup(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
}

TestSuite(fcgi, .init = setup);

/* ---- building streams ---- */

struct buf {
	unsigned char b[1 << 17];
	size_t n;
};

static void put(struct buf *o, const void *p, size_t n)
{
	cr_assert_leq(o->n + n, sizeof(o->b));
	if (n)
		memcpy(o->b + o->n, p, n);
	o->n += n;
}

static void rec(struct buf *o, unsigned version, unsigned type, unsigned rid, const void *c,
		size_t clen, unsigned pad)
{
	unsigned char h[8] = { (unsigned char)version, (unsigned char)type, (unsigned char)(rid >> 8),
			       (unsigned char)rid, (unsigned char)(clen >> 8), (unsigned char)clen,
			       (unsigned char)pad, 0 };
	static const unsigned char zeros[256];

	put(o, h, 8);
	put(o, c, clen);
	put(o, zeros, pad);
}

static void begin(struct buf *o, unsigned rid)
{
	static const unsigned char body[8] = { 0, 1, 1, 0, 0, 0, 0, 0 }; /* RESPONDER, KEEP_CONN */

	rec(o, 1, RQ_FCGI_BEGIN_REQUEST, rid, body, 8, 0);
}

static void len(struct buf *o, size_t n, int wide)
{
	if (n < 128 && !wide) {
		unsigned char c = (unsigned char)n;

		put(o, &c, 1);
	} else {
		unsigned char c[4] = { (unsigned char)(0x80 | n >> 24), (unsigned char)(n >> 16),
				       (unsigned char)(n >> 8), (unsigned char)n };

		put(o, c, 4);
	}
}

/* Appends one name-value pair to a PARAMS stream being built. */
static void pair(struct buf *o, const char *name, const char *value)
{
	len(o, strlen(name), 0);
	len(o, strlen(value), 0);
	put(o, name, strlen(name));
	put(o, value, strlen(value));
}

/* Cuts a PARAMS stream into records of at most `each` bytes for rid, then the empty one. */
static void params(struct buf *o, unsigned rid, const struct buf *p, size_t each)
{
	for (size_t at = 0; at < p->n; at += each) {
		size_t n = p->n - at < each ? p->n - at : each;

		rec(o, 1, RQ_FCGI_PARAMS, rid, p->b + at, n, (unsigned)((8 - n % 8) % 8));
	}
	rec(o, 1, RQ_FCGI_PARAMS, rid, NULL, 0, 0);
}

static void stdin_(struct buf *o, unsigned rid, const char *body)
{
	if (*body)
		rec(o, 1, RQ_FCGI_STDIN, rid, body, strlen(body), 0);
	rec(o, 1, RQ_FCGI_STDIN, rid, NULL, 0, 0);
}

/* What nginx's fastcgi_params send, with extra params and HTTP_* headers. */
static void nginx_params(struct buf *p, const char *uri, const char *id)
{
	pair(p, "QUERY_STRING", "");
	pair(p, "REQUEST_METHOD", "GET");
	pair(p, "SCRIPT_NAME", uri);
	pair(p, "REQUEST_URI", uri);
	pair(p, "SERVER_PROTOCOL", "HTTP/1.1");
	pair(p, "GATEWAY_INTERFACE", "CGI/1.1");
	pair(p, "REMOTE_ADDR", "127.0.0.1");
	pair(p, "HTTP_HOST", "localhost");
	pair(p, "HTTP_X_REQUEST_IDS", "not-this-one");
	pair(p, "HTTP_X_REQUEST_I", "nor-this");
	if (id)
		pair(p, "HTTP_X_REQUEST_ID", id);
	pair(p, "HTTP_USER_AGENT", "curl/7.88.1");
}

static void load_fixture(struct buf *o)
{
	char path[512];
	const char *b = getenv("REQCTX_BUILD");
	FILE *f;

	snprintf(path, sizeof(path), "%s/../tests/fixtures/fcgi_nginx.bin", b && *b ? b : "build");
	f = fopen(path, "rb");
	cr_assert_not_null(f, "no fixture at %s", path);
	o->n = fread(o->b, 1, sizeof(o->b), f);
	fclose(f);
	cr_assert_eq(o->n, 1200);
}

/* ---- inbound ---- */

/*
 * Feeds s to a fresh scanner in pieces: cut at `cut` first (0: none), then
 * every `chunk` bytes. Returns the events: "B<rid>;" a request began, "P<rid>=<id
 * or ->;" its params ended, "R<rid>;" the record read belongs to another
 * request, "D;" dead.
 */
static const char *scan(const unsigned char *s, size_t n, size_t cut, size_t chunk)
{
	static char out[8192];
	struct rq_fcgi_in in;
	size_t at = 0;

	rq_fcgi_in_init(&in);
	out[0] = '\0';
	while (at < n) {
		size_t end = cut > at ? cut : at + chunk, off = 0;

		if (end > n)
			end = n;
		while (off < end - at) {
			enum rq_fcgi_ev ev;
			size_t used = rq_fcgi_in_feed(&in, (const char *)s + at + off, end - at - off, &ev);
			int k = rq_fcgi_in_cur(&in);
			char e[256] = "";

			cr_assert_leq(used, end - at - off);
			cr_assert(used > 0 || ev != RQ_FCGI_EV_NONE);
			off += used;
			if (ev == RQ_FCGI_EV_BEGIN)
				snprintf(e, sizeof(e), "B%u;", rq_fcgi_in_rid(&in, k));
			else if (ev == RQ_FCGI_EV_PARAMS && rq_fcgi_in_id(&in, k))
				snprintf(e, sizeof(e), "P%u=%.*s;", rq_fcgi_in_rid(&in, k),
					 (int)rq_fcgi_in_id(&in, k), in.xr[k]);
			else if (ev == RQ_FCGI_EV_PARAMS)
				snprintf(e, sizeof(e), "P%u=-;", rq_fcgi_in_rid(&in, k));
			else if (ev == RQ_FCGI_EV_RECORD)
				snprintf(e, sizeof(e), "R%u;", rq_fcgi_in_rid(&in, k));
			else if (ev == RQ_FCGI_EV_DEAD)
				snprintf(e, sizeof(e), "D;");
			strcat(out, e);
		}
		at = end;
	}
	return out;
}

/* The same events for one read, every chunk size, and every cut into two reads. */
static void expect_all_splits(const struct buf *s, const char *want)
{
	const char *got = scan(s->b, s->n, 0, s->n);

	cr_assert_str_eq(got, want, "one read: got %s want %s", got, want);
	for (size_t chunk = 1; chunk < s->n; chunk++) {
		got = scan(s->b, s->n, 0, chunk);
		cr_assert_str_eq(got, want, "reads of %zu: got %s want %s", chunk, got, want);
	}
	for (size_t cut = 1; cut < s->n; cut++) {
		got = scan(s->b, s->n, cut, s->n);
		cr_assert_str_eq(got, want, "cut at %zu: got %s want %s", cut, got, want);
	}
}

Test(fcgi, nginx_keep_alive_capture_at_every_split)
{
	static struct buf s;

	load_fixture(&s);
	expect_all_splits(&s, "B1;P1=client-abc-1;B1;P1=-;");
}

Test(fcgi, params_in_several_records_with_pairs_split_across_them)
{
	static struct buf s, p;

	begin(&s, 1);
	nginx_params(&p, "/a.php", "id-in-pieces");
	params(&s, 1, &p, 7); /* 7-byte records: every pair and the ID cut somewhere */
	stdin_(&s, 1, "body=1");
	expect_all_splits(&s, "B1;P1=id-in-pieces;");
	s.n = p.n = 0;
	begin(&s, 1);
	nginx_params(&p, "/a.php", "x");
	params(&s, 1, &p, 1); /* one byte per record */
	stdin_(&s, 1, "");
	expect_all_splits(&s, "B1;P1=x;");
}

Test(fcgi, four_byte_lengths_split_across_records)
{
	static struct buf s, p;
	char big[300];

	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	begin(&s, 3);
	pair(&p, "HTTP_COOKIE", big); /* a 4-byte value length */
	len(&p, 17, 1);               /* the ID param's name length in the 4-byte form */
	len(&p, 5, 1);
	put(&p, "HTTP_X_REQUEST_ID", 17);
	put(&p, "wide1", 5);
	params(&s, 3, &p, 2);
	stdin_(&s, 3, "");
	expect_all_splits(&s, "B3;P3=wide1;");
}

Test(fcgi, keep_conn_requests_do_not_inherit_ids)
{
	static struct buf s, p;

	for (int i = 0; i < 3; i++) {
		char id[16];

		p.n = 0;
		snprintf(id, sizeof(id), "req-%d", i);
		begin(&s, 1);
		nginx_params(&p, "/k.php", i == 1 ? NULL : id);
		params(&s, 1, &p, 4096);
		stdin_(&s, 1, i ? "" : "x=1");
	}
	expect_all_splits(&s, "B1;P1=req-0;B1;P1=-;B1;P1=req-2;");
}

Test(fcgi, multiplexed_requests_are_kept_apart)
{
	static struct buf s, p1, p2;

	nginx_params(&p1, "/one.php", "one");
	nginx_params(&p2, "/two.php", "two");
	begin(&s, 1);
	begin(&s, 2);
	/* interleave the two PARAMS streams, 5 bytes at a time */
	for (size_t at = 0; at < p1.n || at < p2.n; at += 5) {
		if (at < p2.n)
			rec(&s, 1, RQ_FCGI_PARAMS, 2, p2.b + at, p2.n - at < 5 ? p2.n - at : 5, 0);
		if (at < p1.n)
			rec(&s, 1, RQ_FCGI_PARAMS, 1, p1.b + at, p1.n - at < 5 ? p1.n - at : 5, 0);
	}
	rec(&s, 1, RQ_FCGI_PARAMS, 2, NULL, 0, 0);
	rec(&s, 1, RQ_FCGI_PARAMS, 1, NULL, 0, 0);
	rec(&s, 1, RQ_FCGI_STDIN, 2, "b", 1, 7);
	rec(&s, 1, RQ_FCGI_STDIN, 1, "a", 1, 0);
	rec(&s, 1, RQ_FCGI_ABORT_REQUEST, 2, NULL, 0, 0);
	{
		/* R events alternate with each record; build the expected string */
		char want[8192] = "B1;B2;";
		int last = 2;

		for (size_t at = 0; at < p1.n || at < p2.n; at += 5) {
			if (at < p2.n && last != 2) {
				strcat(want, "R2;");
				last = 2;
			}
			if (at < p1.n && last != 1) {
				strcat(want, "R1;");
				last = 1;
			}
		}
		strcat(want, "P2=two;P1=one;R2;R1;R2;");
		expect_all_splits(&s, want);
	}
}

Test(fcgi, beyond_the_cap_the_oldest_entry_is_reused)
{
	static struct buf s, p;

	for (unsigned rid = 1; rid <= RQ_FCGI_REQS + 1; rid++)
		begin(&s, rid);
	pair(&p, "HTTP_X_REQUEST_ID", "fifth");
	params(&s, RQ_FCGI_REQS + 1, &p, 100);
	/* rid 1 lost its entry to rid 5: its records no longer move the context */
	rec(&s, 1, RQ_FCGI_STDIN, 1, "x", 1, 0);
	p.n = 0;
	pair(&p, "HTTP_X_REQUEST_ID", "second");
	params(&s, 2, &p, 100);
	expect_all_splits(&s, "B1;B2;B3;B4;B5;P5=fifth;R2;P2=second;");
}

Test(fcgi, id_values_are_validated_and_trimmed)
{
	static const struct {
		const char *value, *want;
	} cases[] = {
		{ "abc", "abc" },         { " \tabc \t", "abc" }, { "a b", "-" },
		{ "a]b", "-" },           { "", "-" },            { "x\r\n[req:evil]", "-" },
		{ "[req:x]", "-" },       { "a\tb", "-" },        { "caf\xc3\xa9", "-" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct buf s, p;

		s.n = p.n = 0;
		begin(&s, 1);
		pair(&p, "HTTP_X_REQUEST_ID", cases[i].value);
		params(&s, 1, &p, 3);
		char want[200];

		snprintf(want, sizeof(want), "B1;P1=%s;", cases[i].want);
		expect_all_splits(&s, want);
	}
}

Test(fcgi, id_of_128_bytes_is_kept_and_129_is_dropped)
{
	static struct buf s, p;
	char id[130], want[200];

	memset(id, 'q', 129);
	id[128] = '\0';
	begin(&s, 1);
	pair(&p, "HTTP_X_REQUEST_ID", id);
	params(&s, 1, &p, 50);
	snprintf(want, sizeof(want), "B1;P1=%s;", id);
	expect_all_splits(&s, want);
	s.n = p.n = 0;
	id[128] = 'q';
	id[129] = '\0';
	begin(&s, 1);
	pair(&p, "HTTP_X_REQUEST_ID", id);
	params(&s, 1, &p, 50);
	expect_all_splits(&s, "B1;P1=-;");
}

Test(fcgi, first_valid_id_wins)
{
	static struct buf s, p;

	begin(&s, 1);
	pair(&p, "HTTP_X_REQUEST_ID", "bad value");
	pair(&p, "HTTP_X_REQUEST_ID", "good");
	pair(&p, "HTTP_X_REQUEST_ID", "later");
	params(&s, 1, &p, 9);
	expect_all_splits(&s, "B1;P1=good;");
}

Test(fcgi, configured_header_maps_to_its_cgi_name)
{
	static const char *const env[] = { "REQCTX_HEADER=X-Correlation-ID", NULL };
	static struct buf s, p;

	test_config(env);
	begin(&s, 1);
	pair(&p, "HTTP_X_REQUEST_ID", "no");
	pair(&p, "HTTP_X_CORRELATION_ID", "yes");
	params(&s, 1, &p, 6);
	expect_all_splits(&s, "B1;P1=yes;");
}

Test(fcgi, skipped_record_types_keep_the_framing)
{
	static struct buf s, p;
	char junk[1000];

	memset(junk, 1, sizeof(junk)); /* bytes that look like record headers */
	rec(&s, 1, RQ_FCGI_BEGIN_REQUEST, 1, "\0\1\0\0\0\0\0\0", 8, 0);
	rec(&s, 1, RQ_FCGI_GET_VALUES, 0, junk, 20, 4);
	rec(&s, 1, 42, 1, junk, sizeof(junk), 255); /* unknown type, most padding */
	rec(&s, 1, RQ_FCGI_DATA, 1, junk, 300, 0);
	rec(&s, 1, RQ_FCGI_STDOUT, 1, junk, 8, 0);
	rec(&s, 1, RQ_FCGI_END_REQUEST, 1, junk, 8, 0);
	pair(&p, "HTTP_X_REQUEST_ID", "kept");
	params(&s, 1, &p, 100);
	rec(&s, 1, RQ_FCGI_PARAMS, 1, junk, 10, 0); /* after the end: ignored */
	rec(&s, 1, RQ_FCGI_PARAMS, 9, junk, 10, 0); /* a request never begun: ignored */
	stdin_(&s, 1, "");
	expect_all_splits(&s, "B1;P1=kept;");
}

Test(fcgi, malformed_streams_stop_the_scanner_once)
{
	static struct buf s;

	rec(&s, 2, RQ_FCGI_BEGIN_REQUEST, 1, "\0\1\0\0\0\0\0\0", 8, 0); /* version 2 */
	expect_all_splits(&s, "D;");
	s.n = 0;
	rec(&s, 1, RQ_FCGI_PARAMS, 1, NULL, 0, 0); /* not a BEGIN_REQUEST first */
	expect_all_splits(&s, "D;");
	s.n = 0;
	rec(&s, 1, RQ_FCGI_BEGIN_REQUEST, 1, "\0\1\0\0\0\0\0", 7, 0); /* 7-byte body */
	expect_all_splits(&s, "D;");
	s.n = 0;
	rec(&s, 1, RQ_FCGI_BEGIN_REQUEST, 0, "\0\1\0\0\0\0\0\0", 8, 0); /* requestId 0 */
	expect_all_splits(&s, "D;");
	s.n = 0;
	begin(&s, 1);
	rec(&s, 1, RQ_FCGI_STDIN, 0, "x", 1, 0); /* application record, requestId 0 */
	begin(&s, 2);
	expect_all_splits(&s, "B1;D;");
	s.n = 0;
	begin(&s, 1);
	begin(&s, 2);
	rec(&s, 3, RQ_FCGI_STDIN, 1, "x", 1, 0); /* version 3 in the middle */
	expect_all_splits(&s, "B1;B2;D;");
	s.n = 0;
	put(&s, "GET / HTTP/1.1\r\n\r\n", 18);
	expect_all_splits(&s, "D;");
}

Test(fcgi, params_ending_inside_a_pair_are_malformed)
{
	static struct buf s, p;

	/* a name of 2^31 - 1 bytes announced across records, then the stream ends */
	begin(&s, 1);
	put(&p, "\xff\xff", 2);
	rec(&s, 1, RQ_FCGI_PARAMS, 1, p.b, 2, 0);
	rec(&s, 1, RQ_FCGI_PARAMS, 1, "\xff\xff\x01", 3, 5);
	for (int i = 0; i < 3; i++) {
		static char blob[65535];

		rec(&s, 1, RQ_FCGI_PARAMS, 1, blob, i == 0 ? sizeof(blob) : 1000, 0);
	}
	rec(&s, 1, RQ_FCGI_PARAMS, 1, NULL, 0, 0);
	cr_assert_str_eq(scan(s.b, s.n, 0, s.n), "B1;D;");
	cr_assert_str_eq(scan(s.b, s.n, 0, 4093), "B1;D;");
	s.n = 0;
	begin(&s, 1);
	rec(&s, 1, RQ_FCGI_PARAMS, 1, "\x80", 1, 0); /* one byte of a 4-byte length */
	rec(&s, 1, RQ_FCGI_PARAMS, 1, NULL, 0, 0);
	expect_all_splits(&s, "B1;D;");
}

Test(fcgi, first_byte_tells_fastcgi_from_http)
{
	cr_assert_eq(rq_fcgi_first(1), 1);
	cr_assert_eq(rq_fcgi_first('G'), 0);
	cr_assert_eq(rq_fcgi_first(0x16), 0); /* TLS */
	cr_assert_eq(rq_fcgi_first(0), 0);
}

/* ---- outbound ---- */

/* The ID callback: "fixed" for every request, or "id-<rid>"; NULL refuses. */
struct ids {
	const char *fixed;
	int calls;
};

static int give_id(void *arg, unsigned rid, char *id, size_t *n)
{
	struct ids *s = arg;

	s->calls++;
	if (!s->fixed)
		return -1;
	if (!strcmp(s->fixed, "per-rid"))
		*n = (size_t)snprintf(id, REQCTX_ID_MAX, "id-%u", rid);
	else
		memcpy(id, s->fixed, *n = strlen(s->fixed));
	return 0;
}

/* A client writing on a FastCGI connection, through a fake kernel. */
struct client {
	struct rq_fcgi_out o;
	struct ids ids;
	unsigned char out[1 << 17];
	size_t len;
	size_t first; /* the kernel takes at most this much on its first call... */
	size_t cap;   /* ...and this much on each later one */
	int calls, eagain_at; /* call that fails with EAGAIN (0: none) */
};

static void client_init(struct client *c, const char *id, size_t first, size_t cap)
{
	memset(c, 0, sizeof(*c));
	rq_fcgi_out_init(&c->o);
	c->ids.fixed = id;
	c->first = first;
	c->cap = cap;
}

/* writev through the planner, as the write path would do it; returns what writev returns. */
static ssize_t cwritev(struct client *c, const struct iovec *v, int vn)
{
	for (;;) {
		struct rq_fcgi_plan pl;
		struct iovec lay[32];
		size_t bytes, room, took = 0, got;
		int m;

		rq_fcgi_out_plan(&c->o, v, vn, give_id, &c->ids, &pl);
		cr_assert_leq(pl.upto, pl.total);
		m = rq_fcgi_out_iov(&pl, v, vn, lay, 32, &bytes);
		if (++c->calls == c->eagain_at)
			return -1;
		room = c->calls == 1 ? c->first : c->cap;
		for (int i = 0; i < m && room; i++) {
			size_t t = lay[i].iov_len < room ? lay[i].iov_len : room;

			cr_assert_leq(c->len + t, sizeof(c->out), "more bytes out than any plan makes");
			memcpy(c->out + c->len, lay[i].iov_base, t);
			c->len += t;
			took += t;
			room -= t;
		}
		if (!took)
			return 0;
		got = rq_fcgi_out_commit(&c->o, v, vn, &pl, took);
		if (got)
			return (ssize_t)got;
		cr_assert_lt(took, bytes, "a write that went out whole must have taken caller bytes");
	}
}

/* The whole stream, written `chunk` caller bytes at a time, retried after short writes. */
static void cwrite_all(struct client *c, const unsigned char *s, size_t n, size_t chunk)
{
	size_t done = 0;

	while (done < n) {
		size_t want = n - done < chunk ? n - done : chunk;
		struct iovec v = { (void *)(s + done), want };
		ssize_t r = cwritev(c, &v, 1);

		if (r < 0)
			continue; /* EAGAIN: the caller tries again with the same bytes */
		cr_assert_gt(r, 0);
		cr_assert_leq((size_t)r, want);
		done += (size_t)r;
	}
}

/* The record the planner should insert for rid and id, built by hand. */
static void expected_record(struct buf *o, unsigned rid, const char *name, const char *id)
{
	static struct buf p;

	p.n = 0;
	len(&p, strlen(name), 0);
	len(&p, strlen(id), 0);
	put(&p, name, strlen(name));
	put(&p, id, strlen(id));
	rec(o, 1, RQ_FCGI_PARAMS, rid, p.b, p.n, (unsigned)((8 - p.n % 8) % 8));
}

/* The capture with our record before the second request's empty PARAMS (offset 1168). */
static void capture_with_insertion(struct buf *cap, struct buf *want, const char *id)
{
	load_fixture(cap);
	want->n = 0;
	put(want, cap->b, 1168);
	expected_record(want, 1, "HTTP_X_REQUEST_ID", id);
	put(want, cap->b + 1168, cap->n - 1168);
}

Test(fcgi, nginx_capture_gets_the_id_where_it_had_none)
{
	static struct buf cap, want;
	static struct client c;

	capture_with_insertion(&cap, &want, "front-id-2");
	cr_assert_eq(want.n, cap.n + 40); /* 8 + 1 + 1 + 17 + 10, padded to 40 */
	client_init(&c, "front-id-2", SIZE_MAX, SIZE_MAX);
	cwrite_all(&c, cap.b, cap.n, cap.n);
	cr_assert_eq(c.len, want.n);
	cr_assert_arr_eq(c.out, want.b, want.n);
	cr_assert_eq(c.ids.calls, 1, "the first request had an ID: only the second asks");
	/* and the receiving side reads the front's ID for the second request */
	cr_assert_str_eq(scan(c.out, c.len, 0, 11), "B1;P1=client-abc-1;B1;P1=front-id-2;");
}

Test(fcgi, every_kernel_cut_of_the_insertion_gives_exact_bytes)
{
	static struct buf cap, want;

	capture_with_insertion(&cap, &want, "front-id-2");
	for (size_t first = 1; first < want.n; first++) {
		static struct client c;

		client_init(&c, "front-id-2", first, SIZE_MAX);
		cwrite_all(&c, cap.b, cap.n, cap.n);
		cr_assert_eq(c.len, want.n, "first write cut at %zu", first);
		cr_assert_arr_eq(c.out, want.b, want.n, "first write cut at %zu", first);
	}
	for (size_t cap_ = 1; cap_ <= 64; cap_++) {
		static struct client c;

		client_init(&c, "front-id-2", cap_, cap_);
		cwrite_all(&c, cap.b, cap.n, cap.n);
		cr_assert_arr_eq(c.out, want.b, want.n, "kernel takes %zu per call", cap_);
		cr_assert_eq(c.len, want.n);
	}
}

Test(fcgi, eagain_after_a_cut_insertion_loses_and_doubles_nothing)
{
	static struct buf cap, want;

	capture_with_insertion(&cap, &want, "front-id-2");
	for (size_t first = 1168; first <= 1168 + 40; first++) {
		static struct client c;

		client_init(&c, "front-id-2", first, SIZE_MAX);
		c.eagain_at = 2;
		cwrite_all(&c, cap.b, cap.n, cap.n);
		cr_assert_eq(c.len, want.n, "cut at %zu, then EAGAIN", first);
		cr_assert_arr_eq(c.out, want.b, want.n, "cut at %zu, then EAGAIN", first);
	}
}

Test(fcgi, caller_writes_of_any_size_keep_the_bytes)
{
	static struct buf cap, want;

	capture_with_insertion(&cap, &want, "front-id-2");
	for (size_t chunk = 1; chunk <= cap.n; chunk++) {
		static struct client c;
		size_t hdr_at = 1168;
		/* the empty PARAMS header whole within one caller write: inserted; else not */
		int whole = hdr_at / chunk == (hdr_at + 7) / chunk;

		client_init(&c, "front-id-2", SIZE_MAX, SIZE_MAX);
		cwrite_all(&c, cap.b, cap.n, chunk);
		if (whole) {
			cr_assert_eq(c.len, want.n, "writes of %zu", chunk);
			cr_assert_arr_eq(c.out, want.b, want.n, "writes of %zu", chunk);
		} else {
			cr_assert_eq(c.len, cap.n, "writes of %zu", chunk);
			cr_assert_arr_eq(c.out, cap.b, cap.n, "writes of %zu", chunk);
		}
	}
}

Test(fcgi, writev_sees_a_header_split_across_iovecs)
{
	static struct buf cap, want;
	static struct client c;
	struct iovec v[5];

	capture_with_insertion(&cap, &want, "front-id-2");
	client_init(&c, "front-id-2", SIZE_MAX, SIZE_MAX);
	v[0] = (struct iovec){ cap.b, 1170 }; /* two bytes into the empty PARAMS header */
	v[1] = (struct iovec){ NULL, 0 };
	v[2] = (struct iovec){ cap.b + 1170, 3 };
	v[3] = (struct iovec){ cap.b + 1173, cap.n - 1173 };
	v[4] = (struct iovec){ NULL, 0 };
	cr_assert_eq(cwritev(&c, v, 5), (ssize_t)cap.n);
	cr_assert_eq(c.len, want.n);
	cr_assert_arr_eq(c.out, want.b, want.n);
}

/* Where the planner should insert, for building the expected stream. */
struct mark {
	size_t at;
	unsigned rid;
	const char *id;
};

/* want = s with the expected record for each mark inserted at its offset. */
static void merge(struct buf *want, const struct buf *s, const struct mark *m, int n)
{
	size_t pos = 0;

	want->n = 0;
	for (int i = 0; i < n; i++) {
		put(want, s->b + pos, m[i].at - pos);
		expected_record(want, m[i].rid, "HTTP_X_REQUEST_ID", m[i].id);
		pos = m[i].at;
	}
	put(want, s->b + pos, s->n - pos);
}

Test(fcgi, present_ids_are_left_and_invalid_ones_get_ours_after)
{
	static struct buf s, p, want;
	static struct client c;
	struct mark m;

	/* request 1 carries a valid ID: untouched; request 2 an invalid one: ours follows it */
	begin(&s, 1);
	nginx_params(&p, "/a", "theirs");
	params(&s, 1, &p, 64);
	stdin_(&s, 1, "");
	begin(&s, 1);
	p.n = 0;
	nginx_params(&p, "/b", "bad value");
	params(&s, 1, &p, 64);
	m = (struct mark){ s.n - 8, 1, "mine" };
	stdin_(&s, 1, "");
	merge(&want, &s, &m, 1);
	client_init(&c, "mine", SIZE_MAX, SIZE_MAX);
	cwrite_all(&c, s.b, s.n, s.n);
	cr_assert_eq(c.len, want.n);
	cr_assert_arr_eq(c.out, want.b, want.n);
	cr_assert_str_eq(scan(c.out, c.len, 0, c.len), "B1;P1=theirs;B1;P1=mine;");
}

Test(fcgi, several_requests_in_one_write_each_get_their_own)
{
	static struct buf s, p, want;
	struct mark m[8];
	int nm = 0;

	/* 6 keep-conn requests, then 2 multiplexed ones, in one write: more than a plan holds */
	nginx_params(&p, "/m", NULL);
	for (int i = 0; i < 6; i++) {
		begin(&s, 1);
		params(&s, 1, &p, 300);
		m[nm++] = (struct mark){ s.n - 8, 1, "id-1" };
		stdin_(&s, 1, "");
	}
	begin(&s, 2);
	begin(&s, 3);
	rec(&s, 1, RQ_FCGI_PARAMS, 2, p.b, p.n, 0);
	rec(&s, 1, RQ_FCGI_PARAMS, 3, p.b, p.n, 0);
	m[nm++] = (struct mark){ s.n, 3, "id-3" };
	rec(&s, 1, RQ_FCGI_PARAMS, 3, NULL, 0, 0);
	m[nm++] = (struct mark){ s.n, 2, "id-2" };
	rec(&s, 1, RQ_FCGI_PARAMS, 2, NULL, 0, 0);
	stdin_(&s, 2, "");
	stdin_(&s, 3, "x");
	merge(&want, &s, m, nm);
	for (size_t cap_ = 0; cap_ <= 50; cap_ += 7) {
		static struct client c;

		client_init(&c, "per-rid", cap_ ? cap_ : SIZE_MAX, cap_ ? cap_ : SIZE_MAX);
		cwrite_all(&c, s.b, s.n, s.n);
		cr_assert_eq(c.len, want.n, "kernel takes %zu", cap_);
		cr_assert_arr_eq(c.out, want.b, want.n, "kernel takes %zu", cap_);
		cr_assert_str_eq(scan(c.out, c.len, 0, 13),
				 "B1;P1=id-1;B1;P1=id-1;B1;P1=id-1;B1;P1=id-1;B1;P1=id-1;B1;P1=id-1;"
				 "B2;B3;R2;R3;P3=id-3;R2;P2=id-2;R3;");
	}
}

Test(fcgi, refused_or_invalid_ids_insert_nothing)
{
	static const char *const ids[] = { NULL, "bad id", "x]" };
	static struct buf cap;

	load_fixture(&cap);
	for (size_t i = 0; i < 3; i++) {
		static struct client c;

		client_init(&c, ids[i], SIZE_MAX, SIZE_MAX);
		cwrite_all(&c, cap.b, cap.n, cap.n);
		cr_assert_eq(c.len, cap.n);
		cr_assert_arr_eq(c.out, cap.b, cap.n);
		cr_assert_eq(c.ids.calls, 1);
	}
}

Test(fcgi, id_of_128_bytes_goes_out_with_a_four_byte_length)
{
	static struct buf cap, want;
	static struct client c;
	char id[129], events[300];

	memset(id, 'L', 128);
	id[128] = '\0';
	capture_with_insertion(&cap, &want, id); /* expected_record writes the 4-byte length */
	client_init(&c, id, 1200, 3);
	cwrite_all(&c, cap.b, cap.n, cap.n);
	cr_assert_eq(c.len, want.n);
	cr_assert_arr_eq(c.out, want.b, want.n);
	snprintf(events, sizeof(events), "B1;P1=client-abc-1;B1;P1=%s;", id);
	cr_assert_str_eq(scan(c.out, c.len, 0, 5), events);
}

Test(fcgi, configured_header_is_inserted_under_its_cgi_name)
{
	static const char *const env[] = { "REQCTX_HEADER=x-trace-id", NULL };
	static struct buf cap, want;
	static struct client c;

	test_config(env);
	load_fixture(&cap);
	put(&want, cap.b, 544);
	expected_record(&want, 1, "HTTP_X_TRACE_ID", "tr1");
	put(&want, cap.b + 544, 1168 - 544);
	expected_record(&want, 1, "HTTP_X_TRACE_ID", "tr1");
	put(&want, cap.b + 1168, cap.n - 1168);
	client_init(&c, "tr1", SIZE_MAX, SIZE_MAX);
	cwrite_all(&c, cap.b, cap.n, cap.n);
	cr_assert_arr_eq(c.out, want.b, want.n);
	cr_assert_eq(c.len, want.n);
}

Test(fcgi, outbound_scanner_stops_on_malformed_streams)
{
	static struct buf s;
	static struct client c;

	put(&s, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27);
	client_init(&c, "zz", SIZE_MAX, SIZE_MAX);
	cwrite_all(&c, s.b, s.n, 5);
	cr_assert_eq(c.len, s.n);
	cr_assert_arr_eq(c.out, s.b, s.n);
	cr_assert(rq_fcgi_dead(&c.o.s));
	cr_assert_eq(c.ids.calls, 0);
}
