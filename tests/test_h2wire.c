/*
 * HTTP/2 on a connection (src/conn.c's dispatch to src/h2.c), through the
 * socket transport (src/io.c, the fake kernel of common.h) and the TLS one
 * (src/tls.c, a fake OpenSSL that keeps its retry rules): how a connection
 * turns out to be HTTP/2 (the client preface at every split across reads,
 * a server that writes its SETTINGS first, ALPN h2, an Upgrade answered by
 * 101), each stream's ID in its slot and as the context, and the exact bytes
 * on the wire for every split of the server's writes, every short write and
 * every EAGAIN; what is not HTTP/2 is left to HTTP/1, byte for byte.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define H2_BUF_CAP (1 << 15)
#define H2_REF_TMP "/tmp/rq_h2wire.XXXXXX"
#define FK_OUT_CAP (1 << 15)

#include "common.h"
#include "conn.h"
#include "correlate.h"
#include "ctx.h"
#include "fakessl.h"
#include "fdtab.h"
#include "h2.h"
#include "h2frames.h"
#include "io.h"
#include "tls.h"
#include "reqctx.h"

enum { FD = 400, TFD = 401 };

static void setup(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
	rq_fd_init();
	fake_install();
	fake_reset(0);
	rq_ctx_clear();
}

TestSuite(h2wire, .init = setup, .timeout = 240);

/* ---- frames ---- */

/* The client preface and an empty SETTINGS frame. */
static void preface(struct buf *b)
{
	put(b, RQ_H2_PREFACE, RQ_H2_PREFACE_LEN);
	frame(b, 4, 0, 0, "", 0);
}

/* HEADERS (END_STREAM | END_HEADERS) of GET / on stream sid, with the ID header if id. */
static void request(struct buf *b, uint32_t sid, const char *id)
{
	struct buf blk = { 0 };

	put8(&blk, 0x82);
	put8(&blk, 0x86);
	put8(&blk, 0x84);
	if (id)
		lit(&blk, "x-request-id", id);
	frame(b, 1, 0x5, sid, blk.b, blk.n);
}

/* A response: HEADERS (:status 200, server: t; with the ID field if id), then DATA `body`. */
static void response(struct buf *b, uint32_t sid, const char *id, const char *body)
{
	struct buf blk = { 0 };

	put8(&blk, 0x88);
	lit(&blk, "server", "t");
	if (id)
		lit(&blk, "x-request-id", id);
	frame(b, 1, 0x4, sid, blk.b, blk.n);
	frame(b, 0, 0x1, sid, body, strlen(body));
}

/* The server's SETTINGS (one setting) and its ACK of the client's. */
static void server_settings(struct buf *b)
{
	frame(b, 4, 0, 0, "\0\x03\0\0\0\x80", 6);
	frame(b, 4, 1, 0, "", 0);
}

/*
 * The independent reference (tests/h2ref.py): each wire must decode to ORIG
 * with the ID field added to each final response head, and nothing else
 * changed; `cut` is where ORIG was split into two writes (a head whose last
 * frame's flags byte went out before the rest of its header cannot get the
 * field).
 */
static void ref_start(struct ref *r, const void *orig, size_t n, const char *ids)
{
	ref_open(r, orig, n, ids, 16384);
}

static void ref_wire(struct ref *r, const void *wire, size_t n, size_t cut)
{
	ref_wire_at(r, wire, n, &cut, 1);
}

/* Replaces the n bytes `from` wherever they are in b (a generated ID) with `to`. */
static void replace(void *b, size_t len, const char *from, const char *to)
{
	size_t n = strlen(from);
	char *p = b, *end = p + len;

	cr_assert_eq(strlen(to), n);
	while ((p = memmem(p, (size_t)(end - p), from, n))) {
		memcpy(p, to, n);
		p += n;
	}
}

#define ID3 "00000000-0000-4000-8000-000000000003"

/* ---- the socket transport ---- */

static struct rq_conn *open_fd(int fd)
{
	rq_fd_forget(fd);
	cr_assert_eq(rq_fd_set_conn(fd), 0);
	return rq_conn_of(fd);
}

/* The client's bytes read by the server: [0, cut) then [cut, n) (a read of 0 bytes is skipped). */
static void reads(int fd, const uint8_t *b, size_t n, size_t cut)
{
	struct iovec v[2] = { { (void *)b, cut }, { (void *)(b + cut), n - cut } };

	for (int i = 0; i < 2; i++)
		if (v[i].iov_len)
			rq_conn_read(fd, &v[i], 1, (ssize_t)v[i].iov_len);
}

/* The ID in request slot p of c. */
static const char *slot_id(struct rq_conn *c, uint32_t p)
{
	static char out[4][REQCTX_ID_MAX + 1];
	static int k;
	struct rq_ctx x;

	cr_assert_eq(rq_slot_read(rq_conn_slot(c, p), &x, NULL), 0);
	k = (k + 1) % 4;
	memcpy(out[k], x.id, x.len);
	out[k][x.len] = '\0';
	return out[k];
}

static int uuid_like(const char *s)
{
	if (strlen(s) != 36 || s[14] != '4')
		return 0;
	for (int i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
			return 0;
	return 1;
}

/*
 * The server writes b in writes of the lengths in `parts` (the rest in the
 * last), each as a loop around write(2) does: on after a short count, again
 * after EAGAIN. Returns the kernel calls made.
 */
static int writes(int fd, const uint8_t *b, size_t n, const size_t *parts, int nparts)
{
	struct rq_call k = { .how = RQ_WRITEV };
	size_t at = 0;

	for (int w = 0; w < nparts && at < n; w++) {
		size_t end = w == nparts - 1 ? n : at + parts[w] < n ? at + parts[w] : n;

		for (int guard = 0; at < end; guard++) {
			/* the write in two iovecs, cut in its middle */
			size_t len = end - at, h = len / 2;
			struct iovec v[2] = { { (void *)(b + at), h }, { (void *)(b + at + h), len - h } };
			ssize_t r = rq_io_write(fd, v, 2, &k);

			cr_assert_lt(guard, 100000, "no progress");
			if (r < 0) {
				cr_assert_eq(errno, EAGAIN, "errno %d", errno);
				continue;
			}
			cr_assert(r > 0 && (size_t)r <= len, "count %zd of %zu", r, len);
			at += (size_t)r;
		}
	}
	return fk.calls;
}

/* ---- detection, reads and the context ---- */

/* The client's three requests, and DATA on stream 3 last. */
static void three_requests(struct buf *b)
{
	b->n = 0;
	preface(b);
	request(b, 1, "c-1");
	request(b, 3, NULL);
	request(b, 5, "c-5");
	frame(b, 8, 0, 0, "\0\0\1\0", 4); /* a connection-level WINDOW_UPDATE */
	frame(b, 0, 0x1, 3, "x", 1);       /* (stream 3 already ended: still its frame) */
}

/*
 * The context rule, written again: after a read, the first stream whose
 * request HEADERS end in it; else the stream of the last frame header that
 * ends in it, if not on stream 0 (or PRIORITY); else as before. Returns the
 * stream after reads [0, cut) and [cut, n) of b (0: none), the bytes of
 * three_requests or any frames after the client preface.
 */
static uint32_t model(const struct buf *b, const size_t *cuts, int ncuts)
{
	uint32_t cur = 0;
	size_t from = 0;

	for (int r = 0; r <= ncuts; r++) {
		size_t to = r < ncuts ? cuts[r] : b->n, pos = RQ_H2_PREFACE_LEN;
		uint32_t first = 0, last = 0;

		if (to <= from && r < ncuts)
			continue; /* (an empty read is not made) */
		while (pos + 9 <= b->n) {
			size_t len = (size_t)(b->b[pos] << 16 | b->b[pos + 1] << 8 | b->b[pos + 2]);
			uint32_t sid = (uint32_t)b->b[pos + 5] << 24 | (uint32_t)b->b[pos + 6] << 16 |
				       (uint32_t)b->b[pos + 7] << 8 | b->b[pos + 8];
			unsigned type = b->b[pos + 3];

			if (type == 1 && !first && pos + 9 + len > from && pos + 9 + len <= to)
				first = sid;
			if (sid && type != 2 && pos + 9 > from && pos + 9 <= to)
				last = sid;
			pos += 9 + len;
		}
		cur = first ? first : last ? last : cur;
		from = to;
	}
	return cur;
}

/* The ID stream sid of three_requests has on c. */
static const char *id_of_stream(struct rq_conn *c, uint32_t sid)
{
	return sid == 1 ? "c-1" : sid == 3 ? slot_id(c, 1) : sid == 5 ? "c-5" : "unknown";
}

Test(h2wire, every_split_of_the_preface_and_frames_across_reads_gives_each_stream_its_id)
{
	static struct buf b;

	three_requests(&b);
	for (size_t cut = 0; cut <= b.n; cut++) {
		struct rq_conn *c = open_fd(FD);
		const char *want;

		rq_ctx_clear();
		reads(FD, b.b, b.n, cut);
		cr_assert_eq(rq_conn_proto(c), RQ_PR_H2, "split at %zu", cut);
		cr_assert_str_eq(slot_id(c, 0), "c-1", "split at %zu", cut);
		cr_assert(uuid_like(slot_id(c, 1)), "split at %zu: stream 3 has %s", cut, slot_id(c, 1));
		cr_assert_str_eq(slot_id(c, 2), "c-5", "split at %zu", cut);
		/* the context: the first stream the last read opened, else its last frame's */
		want = id_of_stream(c, model(&b, &cut, 1));
		cr_assert_str_eq(reqctx_id(), want, "split at %zu", cut);
		rq_fd_forget(FD);
	}
}

Test(h2wire, reads_of_every_size_find_the_same_ids)
{
	static struct buf b;

	three_requests(&b);
	for (size_t chunk = 1; chunk <= b.n; chunk++) {
		struct rq_conn *c = open_fd(FD);
		const char *want;

		for (size_t at = 0; at < b.n; at += chunk) {
			struct iovec v = { b.b + at, b.n - at < chunk ? b.n - at : chunk };

			rq_conn_read(FD, &v, 1, (ssize_t)v.iov_len);
		}
		cr_assert_eq(rq_conn_proto(c), RQ_PR_H2, "reads of %zu", chunk);
		cr_assert_str_eq(slot_id(c, 0), "c-1", "reads of %zu", chunk);
		cr_assert_str_eq(slot_id(c, 2), "c-5", "reads of %zu", chunk);
		{
			size_t cuts[1024];
			int nc = 0;

			for (size_t at = chunk; at < b.n; at += chunk)
				cuts[nc++] = at;
			want = id_of_stream(c, model(&b, cuts, nc));
		}
		cr_assert_str_eq(reqctx_id(), want, "reads of %zu", chunk);
		rq_fd_forget(FD);
	}
}

/* HTTP/1 requests starting with P, and a preface gone wrong, at every split: HTTP/1's. */
Test(h2wire, what_is_not_the_preface_is_http1s_at_every_split)
{
	static const char put_req[] = "PUT /x HTTP/1.1\r\nX-Request-Id: put-1\r\nContent-Length: 0\r\n\r\n";
	static const char pri_req[] = "PRI /x HTTP/1.1\r\nX-Request-Id: pri-1\r\n\r\n";
	static const char bad[] = "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n";
	static const char resp[] = "HTTP/1.1 204 No Content\r\n\r\n";
	static const char want[] = "HTTP/1.1 204 No Content\r\nX-Request-Id: put-1\r\n\r\n";
	const char *reqs[] = { put_req, pri_req };
	const char *ids[] = { "put-1", "pri-1" };

	for (int q = 0; q < 2; q++)
		for (size_t cut = 0; cut <= strlen(reqs[q]); cut++) {
			struct rq_conn *c = open_fd(FD);
			size_t parts[1] = { 0 };
			struct buf w = { 0 };

			rq_ctx_clear();
			reads(FD, (const uint8_t *)reqs[q], strlen(reqs[q]), cut);
			cr_assert_eq(rq_conn_proto(c), RQ_PR_HTTP1, "%s split at %zu", ids[q], cut);
			cr_assert_str_eq(reqctx_id(), ids[q], "split at %zu", cut);
			if (q == 0) {
				fake_reset(0);
				writes(FD, (const uint8_t *)resp, strlen(resp), parts, 1);
				put(&w, want, strlen(want));
				expect_mem(fk.out, fk.len, &w, "the PUT's response");
			}
			rq_fd_forget(FD);
		}
	for (size_t cut = 0; cut <= strlen(bad); cut++) {
		struct rq_conn *c = open_fd(FD);
		char first[REQCTX_ID_MAX + 1];

		rq_ctx_clear();
		reads(FD, (const uint8_t *)bad, strlen(bad), cut);
		cr_assert_eq(rq_conn_proto(c), RQ_PR_HTTP1, "split at %zu", cut);
		cr_assert(uuid_like(reqctx_id()), "one ID for a stream that is not HTTP: %s", reqctx_id());
		snprintf(first, sizeof(first), "%s", reqctx_id());
		reads(FD, (const uint8_t *)"more", 4, 0);
		cr_assert_str_eq(reqctx_id(), first, "the same ID for the connection's life");
		rq_fd_forget(FD);
	}
}

Test(h2wire, after_garbage_the_connection_keeps_one_id_and_responses_are_untouched)
{
	static struct buf b, s;
	struct rq_conn *c = open_fd(FD);
	size_t parts[1] = { 0 };
	char conn[REQCTX_ID_MAX + 1];

	b.n = 0;
	preface(&b);
	request(&b, 1, "g-1");
	frame(&b, 9, 0x4, 7, "\x82", 1); /* a CONTINUATION with no block open */
	request(&b, 3, "g-3");
	reads(FD, b.b, b.n, 0);
	cr_assert_eq(rq_conn_proto(c), RQ_PR_H2);
	cr_assert(uuid_like(reqctx_id()), "the connection's ID: %s", reqctx_id());
	snprintf(conn, sizeof(conn), "%s", reqctx_id());
	s.n = 0;
	server_settings(&s);
	response(&s, 1, NULL, "one");
	response(&s, 3, NULL, "three");
	fake_reset(0);
	writes(FD, s.b, s.n, parts, 1);
	expect_mem(fk.out, fk.len, &s, "untouched");
	cr_assert_str_eq(reqctx_id(), conn);
	rq_fd_forget(FD);
}

/* ---- writes ---- */

/*
 * The server's answer to three_requests: its SETTINGS, stream 5's response,
 * then 1's, then 3's (not in request order), each with the field added.
 */
static void answers(struct rq_conn *c, struct buf *s, struct buf *want)
{
	const char *id3 = slot_id(c, 1);

	s->n = want->n = 0;
	server_settings(s);
	server_settings(want);
	response(s, 5, NULL, "five");
	response(want, 5, "c-5", "five");
	response(s, 1, NULL, "one");
	response(want, 1, "c-1", "one");
	response(s, 3, NULL, "three");
	response(want, 3, id3, "three");
}

Test(h2wire, every_split_and_short_write_and_eagain_of_the_responses_is_exact, .timeout = 600)
{
	static struct buf b, s, want;
	static const size_t caps[] = { 0, 1, 5, 17, 40 };
	struct ref r;
	long runs = 0;

	three_requests(&b);
	{ /* ORIG */
		struct rq_conn *c = open_fd(FD);

		reads(FD, b.b, b.n, 0);
		answers(c, &s, &want);
		replace(want.b, want.n, slot_id(c, 1), ID3);
		rq_fd_forget(FD);
	}
	ref_start(&r, s.b, s.n, "1=c-1 3=" ID3 " 5=c-5");
	for (size_t ci = 0; ci < RQ_ARRAY_LEN(caps); ci++) {
		for (size_t cut = 0; cut <= s.n; cut++) {
			int calls = 0;

			for (int fail = 0; fail <= calls + 1 && fail < 40; fail++, runs++) {
				struct rq_conn *c = open_fd(FD);
				size_t parts[2] = { cut, 0 };
				char what[96];

				reads(FD, b.b, b.n, 0);
				fake_reset(caps[ci]);
				fk.fail_at = fail;
				fk.fail_errno = EAGAIN;
				snprintf(what, sizeof(what), "cap %zu, cut %zu, EAGAIN at call %d", caps[ci],
					 cut, fail);
				if (!fail)
					calls = writes(FD, s.b, s.n, parts, 2);
				else
					writes(FD, s.b, s.n, parts, 2);
				if (cut == 0 || cut == s.n) { /* one write: the fields in their frames */
					replace(fk.out, fk.len, slot_id(c, 1), ID3);
					expect_mem(fk.out, fk.len, &want, what);
				}
				replace(fk.out, fk.len, slot_id(c, 1), ID3);
				ref_wire(&r, fk.out, fk.len, cut);
				cr_assert_str_eq(reqctx_id(), slot_id(c, 1), "%s: the last frame's stream",
						 what);
				rq_fd_forget(FD);
			}
		}
	}
	ref_finish(&r);
	cr_log_info("%ld runs", runs);
}

Test(h2wire, each_write_makes_its_last_frame_s_stream_current)
{
	static struct buf b, s;
	struct rq_conn *c = open_fd(FD);
	size_t parts[1] = { 0 };

	three_requests(&b);
	reads(FD, b.b, b.n, 0);
	s.n = 0;
	response(&s, 5, NULL, "five");
	writes(FD, s.b, s.n, parts, 1);
	cr_assert_str_eq(reqctx_id(), "c-5");
	s.n = 0;
	response(&s, 1, NULL, "one");
	writes(FD, s.b, s.n, parts, 1);
	cr_assert_str_eq(reqctx_id(), "c-1");
	s.n = 0;
	frame(&s, 4, 1, 0, "", 0); /* a SETTINGS ACK leaves it */
	writes(FD, s.b, s.n, parts, 1);
	cr_assert_str_eq(reqctx_id(), "c-1");
	rq_fd_forget(FD);
	(void)c;
}

Test(h2wire, a_server_that_writes_its_settings_first_speaks_http2)
{
	static struct buf b, s, want;
	struct rq_conn *c = open_fd(FD);
	size_t parts[1] = { 0 };

	s.n = 0;
	frame(&s, 4, 0, 0, "\0\x03\0\0\0\x80\0\x04\0\0\xff\xff", 12);
	writes(FD, s.b, s.n, parts, 1);
	cr_assert_eq(rq_conn_proto(c), RQ_PR_H2, "before anything was read");
	expect_mem(fk.out, fk.len, &s, "its SETTINGS");
	three_requests(&b);
	reads(FD, b.b, b.n, 7);
	cr_assert_str_eq(slot_id(c, 0), "c-1");
	s.n = want.n = 0;
	response(&s, 1, NULL, "one");
	response(&want, 1, "c-1", "one");
	fake_reset(0);
	writes(FD, s.b, s.n, parts, 1);
	expect_mem(fk.out, fk.len, &want, "stream 1");
	rq_fd_forget(FD);
}

/* ---- h2c by Upgrade ---- */

static const char up_req[] = "GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
			     "Upgrade: websocket, H2C\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
			     "X-Request-Id: up-1\r\n\r\n";
static const char up_101[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
			     "Upgrade: h2c\r\n\r\n";

Test(h2wire, an_upgrade_answered_by_101_then_frames_at_every_split)
{
	static struct buf s, want, b, s2, want2;
	struct ref r;

	s.n = want.n = 0;
	put(&s, up_101, strlen(up_101));
	put(&want, up_101, strlen(up_101)); /* a 1xx gets no header */
	server_settings(&s);
	server_settings(&want);
	response(&s, 1, NULL, "upgraded");
	response(&want, 1, "up-1", "upgraded");
	b.n = 0;
	preface(&b);
	request(&b, 3, "up-3");
	s2.n = want2.n = 0;
	response(&s2, 3, NULL, "three");
	response(&want2, 3, "up-3", "three");
	ref_start(&r, s.b + strlen(up_101), s.n - strlen(up_101), "1=up-1");
	for (size_t rc = 0; rc <= strlen(up_req); rc += 7)
		for (size_t cut = 0; cut <= s.n; cut++) {
			struct rq_conn *c = open_fd(FD);
			size_t parts[2] = { cut, 0 }, h = strlen(up_101);
			char what[64];

			snprintf(what, sizeof(what), "request cut %zu, write cut %zu", rc, cut);
			reads(FD, (const uint8_t *)up_req, strlen(up_req), rc);
			cr_assert_str_eq(reqctx_id(), "up-1");
			fake_reset(cut % 3 ? 0 : 11);
			writes(FD, s.b, s.n, parts, 2);
			cr_assert(fk.len > h && !memcmp(fk.out, up_101, h), "%s: the 101 as it was", what);
			if (cut <= h || cut == s.n)
				expect_mem(fk.out, fk.len, &want, what);
			ref_wire(&r, fk.out + h, fk.len - h, cut > h ? cut - h : 0);
			cr_assert_eq(rq_conn_proto(c), RQ_PR_H2, "%s", what);
			cr_assert_str_eq(reqctx_id(), "up-1", "%s", what);
			reads(FD, b.b, b.n, cut % b.n);
			cr_assert_str_eq(reqctx_id(), "up-3", "%s", what);
			fake_reset(0);
			writes(FD, s2.b, s2.n, parts + 1, 1);
			expect_mem(fk.out, fk.len, &want2, what);
			rq_fd_forget(FD);
		}
	ref_finish(&r);
}

Test(h2wire, a_101_to_a_request_that_did_not_ask_for_h2c_ends_http_there)
{
	static const char ws_req[] = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
				     "X-Request-Id: ws-1\r\n\r\n"; /* no HTTP2-Settings */
	static struct buf s;
	struct rq_conn *c = open_fd(FD);
	size_t parts[1] = { 0 };

	reads(FD, (const uint8_t *)ws_req, strlen(ws_req), 0);
	s.n = 0;
	put(&s, up_101, strlen(up_101));
	response(&s, 1, NULL, "not h2");
	writes(FD, s.b, s.n, parts, 1);
	expect_mem(fk.out, fk.len, &s, "untouched");
	cr_assert_eq(rq_conn_proto(c), RQ_PR_HTTP1);
	cr_assert_str_eq(reqctx_id(), "ws-1");
	rq_fd_forget(FD);
}

/*
 * The Upgrade, HTTP2-Settings and traceparent headers are all followed in
 * one request head (their name matchers share rq_hdrs.match): with
 * REQCTX_TRACEPARENT=1 a request without an ID header takes the trace-id,
 * its slot still says it asked for h2c, correlation keeps its request line
 * under that slot's serial, and the 101 makes it stream 1 with that ID.
 */
Test(h2wire, an_upgrade_with_a_traceparent_gives_stream_1_the_trace_id)
{
	static const char *const env[] = { "REQCTX_TRACEPARENT=1", "REQCTX_CORRELATE=1", NULL };
	static const char tp_req[] =
		"GET /up HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n";
	static const char trace[] = "4bf92f3577b34da6a3ce929d0e0e4736";
	static struct buf s, want;
	size_t parts[1] = { 0 };
	struct rq_corr_key k, line;
	struct rq_conn *c;
	struct rq_ctx x;
	uint32_t flags = 0, p;
	unsigned cf;

	test_config(env);
	cr_assert_str_empty(test_report_buf, "%s", test_report_buf);
	rq_corr_init();
	line = rq_corr_key_of("GET /up HTTP/1.1", 16); /* (with the key just drawn) */
	for (size_t rc = 0; rc <= strlen(tp_req); rc += 5) {
		c = open_fd(FD);
		reads(FD, (const uint8_t *)tp_req, strlen(tp_req), rc);
		cr_assert_str_eq(reqctx_id(), trace, "read cut %zu", rc);
		p = atomic_load_explicit(&c->cur, memory_order_relaxed);
		cr_assert_eq(rq_slot_read(rq_conn_slot(c, p), &x, &flags), 0);
		cr_assert_eq(flags, RQ_SLOT_H2C, "read cut %zu: slot flags %#x", rc, flags);
		cr_assert_eq(rq_corr_live_get(&rq_corr_ring, x.serial, &k, &cf), 1, "read cut %zu", rc);
		cr_assert(k.hash == line.hash && k.len == line.len, "read cut %zu: its request line", rc);
		s.n = want.n = 0;
		put(&s, up_101, strlen(up_101));
		put(&want, up_101, strlen(up_101));
		server_settings(&s);
		server_settings(&want);
		response(&s, 1, NULL, "upgraded");
		response(&want, 1, trace, "upgraded");
		fake_reset(0);
		writes(FD, s.b, s.n, parts, 1);
		expect_mem(fk.out, fk.len, &want, "stream 1 with the trace-id");
		cr_assert_eq(rq_conn_proto(c), RQ_PR_H2, "read cut %zu", rc);
		cr_assert_str_eq(slot_id(c, 0), trace, "read cut %zu", rc);
		rq_fd_forget(FD);
	}
}

/* ---- bounds ---- */

Test(h2wire, beyond_the_cap_of_http2_connections_each_keeps_one_id, .timeout = 300)
{
	static struct rq_conn *cs[RQ_H2_CONNS + 1];
	static struct buf b;
	struct rq_conn *extra;

	three_requests(&b);
	for (int i = 0; i < RQ_H2_CONNS; i++) {
		struct iovec v = { b.b, b.n };

		cr_assert_not_null(cs[i] = rq_conn_new());
		rq_io_conn_read(cs[i], &v, 1, (ssize_t)b.n);
		cr_assert_eq(rq_conn_proto(cs[i]), RQ_PR_H2, "connection %d", i);
	}
	{
		struct iovec v = { b.b, b.n };
		char first[REQCTX_ID_MAX + 1];

		extra = rq_conn_new();
		rq_ctx_clear();
		rq_io_conn_read(extra, &v, 1, (ssize_t)b.n);
		cr_assert_eq(rq_conn_proto(extra), RQ_PR_HTTP1, "past the cap");
		cr_assert(uuid_like(reqctx_id()), "one ID: %s", reqctx_id());
		snprintf(first, sizeof(first), "%s", reqctx_id());
		rq_io_conn_read(extra, &v, 1, (ssize_t)b.n);
		cr_assert_str_eq(reqctx_id(), first);
		rq_conn_unref(extra);
	}
	rq_conn_unref(cs[0]); /* a state given back is taken again */
	cs[0] = rq_conn_new();
	{
		struct iovec v = { b.b, b.n };

		rq_io_conn_read(cs[0], &v, 1, (ssize_t)b.n);
		cr_assert_eq(rq_conn_proto(cs[0]), RQ_PR_H2);
		cr_assert_str_eq(slot_id(cs[0], 2), "c-5");
	}
	for (int i = 0; i < RQ_H2_CONNS; i++)
		rq_conn_unref(cs[i]);
}

/* ---- the TLS transport ---- */

/* tests/fakessl.h's OpenSSL: each test makes fs a server's SSL object (fs.server), with ALPN. */
static struct fk_ssl fs;

static void tls_setup(void)
{
	rq_ssl = fk_fns();
	rq_ssl.alpn = fk_alpn;
}

/* Writes n bytes as a careful host: the same call after WANT_WRITE, on after a partial count. */
static void host_write(struct fk_ssl *s, int ex, const uint8_t *buf, size_t n)
{
	size_t off = 0;
	int failed = 0;

	while (off < n) {
		struct rq_tlsw *t;
		struct rq_conn *c = rq_tls_conn(s, &t);
		size_t w = 0;
		int r;

		cr_assert_not_null(c);
		r = rq_tls_write(c, t, s, ex, buf + off, n - off, &w);
		if (r > 0) {
			cr_assert(w > 0 && w <= n - off);
			if (!(s->mode & RQ_SSL_MODE_PARTIAL_WRITE))
				cr_assert_eq(w, n - off, "a short count without partial writes");
			off += w;
			continue;
		}
		cr_assert_eq(fk_get_error(s, r), RQ_SSL_ERROR_WANT_WRITE);
		cr_assert_lt(++failed, 1000);
	}
}

/*
 * h2 over TLS (ALPN h2): the server writes its SETTINGS before it has read
 * anything, then the client's preface and requests are read, then the
 * responses go out through SSL_write with WANT_WRITE at every record, in
 * every mode: the plaintext is exact.
 */
Test(h2wire, h2_over_tls_is_exact_with_want_write_at_every_record, .timeout = 600)
{
	static struct buf b, s, want, first;
	static const size_t recs[] = { 1, 7, 64, 1 << 14 };
	static const long modes[] = { 0, RQ_SSL_MODE_PARTIAL_WRITE, MOVING };
	long runs = 0;

	tls_setup();
	three_requests(&b);
	first.n = 0;
	server_settings(&first);
	for (size_t ri = 0; ri < RQ_ARRAY_LEN(recs); ri++)
		for (size_t mi = 0; mi < RQ_ARRAY_LEN(modes); mi++)
			for (int ex = 0; ex < 2; ex++)
				for (long at = 0; at < 200; at++, runs++) {
					struct rq_tlsw *t;
					struct rq_conn *c;
					char what[96];

					memset(&fs, 0, sizeof(fs));
					fs.server = 1;
					fs.fd = TFD;
					fs.rec = 1 << 20;
					fs.alpn = "h2";
					open_fd(TFD);
					c = rq_tls_conn(&fs, &t);
					cr_assert_not_null(t);
					host_write(&fs, ex, first.b, first.n); /* before any read */
					cr_assert_eq(rq_conn_proto(c), RQ_PR_H2);
					rq_tls_read(c, b.b, 30);
					rq_tls_read(c, b.b + 30, (ssize_t)(b.n - 30));
					answers(c, &s, &want);
					fs.rec = recs[ri];
					fs.mode = modes[mi];
					fs.want_at = at ? fs.records + at : 0;
					host_write(&fs, ex, s.b + first.n, s.n - first.n);
					snprintf(what, sizeof(what), "record %zu mode %ld ex %d want at %ld",
						 recs[ri], modes[mi], ex, at);
					cr_assert_eq(fs.violations, 0, "%s: a retry OpenSSL refuses", what);
					cr_assert_eq(fs.pending, 0, "%s", what);
					expect_mem(fs.out, fs.len, &want, what);
					cr_assert_str_eq(reqctx_id(), slot_id(c, 1), "%s", what);
					rq_fd_forget(TFD);
					if (at && at > fs.records)
						break;
				}
	cr_log_info("%ld runs", runs);
}

Test(h2wire, without_alpn_h2_a_tls_connection_is_http1_until_its_preface)
{
	static struct buf b;
	struct rq_tlsw *t;
	struct rq_conn *c;

	tls_setup();
	memset(&fs, 0, sizeof(fs));
	fs.server = 1;
	fs.fd = TFD;
	fs.rec = 1 << 20;
	fs.alpn = "http/1.1";
	open_fd(TFD);
	c = rq_tls_conn(&fs, &t);
	cr_assert_eq(rq_conn_proto(c), RQ_PR_HTTP1);
	three_requests(&b);
	rq_tls_read(c, b.b, (ssize_t)b.n); /* prior knowledge over TLS: the preface tells */
	cr_assert_eq(rq_conn_proto(c), RQ_PR_H2);
	cr_assert_str_eq(slot_id(c, 2), "c-5");
	rq_fd_forget(TFD);
}
