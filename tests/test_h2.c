/*
 * The HTTP/2 frame scanner (both directions) and the echo planner: request
 * IDs per stream at every split of the client's bytes; the exact bytes the
 * planner puts on the wire for each kind of block, for every split of the
 * server's bytes into writes and every partial-write cut point; the same
 * checked against an independent decoder (python3-h2/hpack, tests/h2ref.py)
 * on a scenario python3-h2's own server produced; hostile input.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H2_BUF_CAP (1 << 19)

#include "common.h"
#include "h2.h"
#include "h2frames.h"
#include "id.h"
#include "internal.h"

#define PY "/usr/bin/python3"

static void setup(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
}

TestSuite(h2, .init = setup, .timeout = 300);

/* ---- building frames ---- */

/* The same with incremental indexing. */
static void lit_idx(struct buf *b, const char *name, const char *value)
{
	put8(b, 0x40);
	hint(b, 0, 7, strlen(name));
	put(b, name, strlen(name));
	hint(b, 0, 7, strlen(value));
	put(b, value, strlen(value));
}

static const uint8_t preface_settings[] = {
	'P', 'R', 'I', ' ', '*', ' ', 'H', 'T', 'T', 'P', '/', '2', '.', '0', '\r', '\n', '\r', '\n',
	'S', 'M', '\r', '\n', '\r', '\n', 0, 0, 0, 4, 0, 0, 0, 0, 0,
};

/* A request block: GET / with, if id, the ID header. */
static void req_block(struct buf *b, const char *id)
{
	put8(b, 0x82);
	put8(b, 0x86);
	put8(b, 0x84);
	if (id)
		lit(b, "x-request-id", id);
}

/* ---- the client's side ---- */

/* Feeds the client's bytes in reads of `chunk`; returns "R<sid>@<slot>:<id or ->;" and "D;". */
static const char *reads(struct rq_h2 *h, const uint8_t *s, size_t n, size_t chunk)
{
	static char out[8192];
	size_t len = 0;

	out[0] = '\0';
	for (size_t at = 0; at < n; at += chunk) {
		size_t m = n - at < chunk ? n - at : chunk, off = 0;

		while (off < m) {
			struct rq_h2_ev ev;
			size_t used = rq_h2_read(h, (const char *)s + at + off, m - off, &ev);

			cr_assert_leq(used, m - off);
			cr_assert(used > 0 || ev.type != RQ_H2_EV_NONE);
			off += used;
			if (ev.type == RQ_H2_EV_REQ) {
				cr_assert(!ev.id_len || rq_id_valid(ev.id, ev.id_len));
				len += (size_t)snprintf(out + len, sizeof(out) - len, "R%u@%u:%.*s;",
							ev.sid, ev.slot, ev.id_len ? (int)ev.id_len : 1,
							ev.id_len ? ev.id : "-");
			} else if (ev.type == RQ_H2_EV_DEAD) {
				len += (size_t)snprintf(out + len, sizeof(out) - len, "D;");
			}
		}
	}
	return out;
}

/* The same events for every read size, and for every split in two. */
static void expect_reads(const uint8_t *s, size_t n, const char *want, unsigned last)
{
	static struct rq_h2 h;

	for (size_t chunk = 1; chunk <= n; chunk++) {
		rq_h2_init(&h, 0);
		cr_assert_str_eq(reads(&h, s, n, chunk), want, "reads of %zu: %s", chunk,
				 reads(&h, s, 0, 1));
		cr_assert_eq(h.in.last, last, "reads of %zu: last %u", chunk, h.in.last);
	}
	for (size_t cut = 0; cut <= n; cut++) {
		char got[8192];

		rq_h2_init(&h, 0);
		snprintf(got, sizeof(got), "%s", reads(&h, s, cut, cut ? cut : 1));
		strncat(got, reads(&h, s + cut, n - cut, n - cut ? n - cut : 1),
			sizeof(got) - strlen(got) - 1);
		cr_assert_str_eq(got, want, "split at %zu", cut);
		cr_assert_eq(h.in.last, last, "split at %zu: last %u", cut, h.in.last);
	}
}

Test(h2, requests_get_their_ids_at_every_split)
{
	static struct buf b, blk;

	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	req_block(&blk, "abc-1");
	frame(&b, 1, 0x5, 1, blk.b, blk.n); /* END_STREAM | END_HEADERS */
	blk.n = 0;
	req_block(&blk, NULL);
	frame(&b, 1, 0x5, 3, blk.b, blk.n);
	blk.n = 0;
	req_block(&blk, "bad id");
	frame(&b, 1, 0x5, 5, blk.b, blk.n);
	expect_reads(b.b, b.n, "R1@0:abc-1;R3@1:-;R5@2:-;", 2);
}

Test(h2, padding_priority_and_continuation_are_read_through)
{
	static struct buf b, blk, p;

	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	/* HEADERS, PADDED | PRIORITY, without END_HEADERS; the ID in the CONTINUATION */
	blk.n = 0;
	req_block(&blk, NULL);
	p.n = 0;
	put8(&p, 3);                                /* pad length */
	put(&p, "\x80\x00\x00\x00\x10", 5);         /* exclusive dependency on 0, weight 16 */
	put(&p, blk.b, blk.n);
	put(&p, "\0\0\0", 3);
	frame(&b, 1, 0x8 | 0x20 | 0x1, 1, p.b, p.n);
	blk.n = 0;
	lit(&blk, "x-request-id", "in-the-continuation");
	frame(&b, 9, 0, 1, blk.b, 4);               /* cut in the middle of the field */
	frame(&b, 9, 0x4, 1, blk.b + 4, blk.n - 4);
	/* DATA and WINDOW_UPDATE on stream 1 and on stream 0 */
	frame(&b, 0, 0x1, 1, "body", 4);
	frame(&b, 8, 0, 0, "\0\0\1\0", 4);
	expect_reads(b.b, b.n, "R1@0:in-the-continuation;", 0);
}

Test(h2, trailers_and_priority_frames_open_no_request)
{
	static struct buf b, blk;

	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	req_block(&blk, "one");
	frame(&b, 1, 0x4, 1, blk.b, blk.n);
	blk.n = 0;
	req_block(&blk, "three");
	frame(&b, 1, 0x4, 3, blk.b, blk.n);
	frame(&b, 0, 0, 1, "data", 4);
	blk.n = 0;
	lit(&blk, "x-request-id", "trailer-id");
	frame(&b, 1, 0x5, 1, blk.b, blk.n);          /* trailers on stream 1 */
	frame(&b, 2, 0, 9, "\0\0\0\0\x10", 5);       /* PRIORITY of an idle stream */
	/* last frame read: the trailers of stream 1 (slot 0), not the PRIORITY frame */
	expect_reads(b.b, b.n, "R1@0:one;R3@1:three;", 0);
}

Test(h2, an_indexed_id_comes_from_the_dynamic_table)
{
	static struct buf b, blk;

	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	req_block(&blk, NULL);
	lit_idx(&blk, "x-request-id", "kept-1"); /* becomes index 62 */
	frame(&b, 1, 0x5, 1, blk.b, blk.n);
	blk.n = 0;
	req_block(&blk, NULL);
	put8(&blk, 0x80 | 62);
	frame(&b, 1, 0x5, 3, blk.b, blk.n);
	expect_reads(b.b, b.n, "R1@0:kept-1;R3@1:kept-1;", 1);
}

/* ---- the server's side ---- */

/* The ID of each slot, as the connection layer would keep it. */
struct ids {
	char id[RQ_H2_STREAMS + 1][REQCTX_ID_MAX + 1];
};

static size_t id_of(void *arg, unsigned slot, uint32_t sid, char out[REQCTX_ID_MAX])
{
	struct ids *t = arg;
	size_t n;

	if (slot > RQ_H2_CONN)
		return 0;
	if (!t->id[slot][0])
		snprintf(t->id[slot], sizeof(t->id[slot]), "id-%u", sid);
	n = strlen(t->id[slot]);
	memcpy(out, t->id[slot], n);
	return n;
}

/* The fake kernel and the server's writes. */
struct drv {
	struct rq_h2 h;
	struct ids ids;
	size_t cap;       /* bytes the kernel takes per call; 0: all */
	int eagain;       /* every eagain-th call fails with EAGAIN */
	int hold;         /* the caller is non-blocking */
	int calls;
	struct buf wire;
};

static ssize_t kernel(struct drv *d, const struct iovec *v, int n)
{
	size_t room = d->cap ? d->cap : (size_t)-1, took = 0;

	d->calls++;
	if (d->eagain && d->calls % d->eagain == 0)
		return -1;
	for (int i = 0; i < n && room; i++) {
		size_t t = v[i].iov_len < room ? v[i].iov_len : room;

		put(&d->wire, v[i].iov_base, t);
		took += t;
		room -= t;
	}
	return (ssize_t)took;
}

/* One write call of the connection layer: what the caller is told, or -1. */
static ssize_t write_once(struct drv *d, const uint8_t *b, size_t n)
{
	static struct rq_h2_plan p;
	struct iovec v = { (void *)b, n }, w[64];
	size_t c, x;
	ssize_t r;

	rq_h2_plan(&d->h, &v, 1, id_of, &d->ids, &p);
	cr_assert_leq(p.covered, n);
	if (!p.n) {
		struct iovec all = { (void *)b, p.covered };

		r = kernel(d, &all, 1);
		c = r > 0 ? (size_t)r : 0;
		x = 0;
	} else {
		int k = rq_h2_wire(&p, &v, 1, w, 64);

		cr_assert_gt(k, 0);
		r = kernel(d, w, k);
		if (r >= 0)
			rq_h2_map(&p, (size_t)r, &c, &x);
	}
	if (r < 0)
		return -1;
	return (ssize_t)rq_h2_commit(&d->h, &p, &v, 1, c, x, d->hold);
}

/* A blocking caller gets a trailing insertion out before its write returns. */
static void flush(struct drv *d)
{
	static struct rq_h2_plan p;

	for (int guard = 0; guard < 10000; guard++) {
		rq_h2_plan(&d->h, NULL, 0, id_of, &d->ids, &p);
		if (!p.n)
			return;
		write_once(d, NULL, 0);
	}
	cr_assert_fail("a trailing insertion never went out");
}

/* The server writes all of b, as a loop around write(2) would. */
static void server_write(struct drv *d, const uint8_t *b, size_t n)
{
	size_t done = 0;

	for (int guard = 0; done < n || guard == 0; guard++) {
		ssize_t r;

		cr_assert_lt(guard, 1000000, "no progress");
		r = write_once(d, b + done, n - done);
		if (r > 0)
			done += (size_t)r;
		if (n == 0)
			break;
	}
	if (!d->hold)
		flush(d);
}

static void drv_init(struct drv *d)
{
	memset(d, 0, offsetof(struct drv, wire));
	d->wire.n = 0;
	rq_h2_init(&d->h, 0);
}

/* Feeds the client's side to d (preface, then `b`). */
static void client(struct drv *d, const uint8_t *b, size_t n)
{
	size_t off = 0;

	while (off < n) {
		struct rq_h2_ev ev;

		off += rq_h2_read(&d->h, (const char *)b + off, n - off, &ev);
		cr_assert_neq(ev.type, RQ_H2_EV_DEAD);
		if (ev.type == RQ_H2_EV_REQ && ev.id_len)
			snprintf(d->ids.id[ev.slot], sizeof(d->ids.id[0]), "%.*s", (int)ev.id_len,
				 ev.id);
	}
}

/* A client with requests on streams 1, 3, ... (n of them), none with an ID. */
static void clients(struct drv *d, int n)
{
	static struct buf b, blk;

	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	for (int i = 0; i < n; i++) {
		blk.n = 0;
		req_block(&blk, NULL);
		frame(&b, 1, 0x5, (uint32_t)(2 * i + 1), blk.b, blk.n);
	}
	client(d, b.b, b.n);
}

/* The field reqctx adds for `id`. */
static void field(struct buf *b, const char *id)
{
	lit(b, "x-request-id", id);
}

/* A response head: :status 200 (static index 8) and one header. */
static void resp_block(struct buf *b)
{
	put8(b, 0x88);
	lit(b, "server", "test");
}

static void expect_bytes(const struct buf *got, const struct buf *want, const char *what)
{
	expect_mem(got->b, got->n, want, what);
}

Test(h2, a_response_head_gets_the_field_at_the_end_of_its_frame)
{
	static struct drv d;
	static struct buf in, want, blk;

	drv_init(&d);
	clients(&d, 1);
	blk.n = 0;
	resp_block(&blk);
	in.n = 0;
	frame(&in, 1, 0x4, 1, blk.b, blk.n);
	frame(&in, 0, 0x1, 1, "hello", 5);
	field(&blk, "id-1");
	want.n = 0;
	frame(&want, 1, 0x4, 1, blk.b, blk.n);
	frame(&want, 0, 0x1, 1, "hello", 5);
	server_write(&d, in.b, in.n);
	expect_bytes(&d.wire, &want, "one write");
	cr_assert_eq(d.h.out.last, 0);
}

/*
 * The server's bytes `in`, written in two writes cut at `cut`, through a
 * kernel taking `cap` bytes a call (EAGAIN every `eagain`-th call), by a
 * blocking or non-blocking (`hold`) caller, after n client requests.
 */
static const struct buf *scen_client; /* when set, the client's bytes instead of clients() */

static const struct buf *written_at(const struct buf *in, const size_t *cuts, int ncuts,
				    size_t cap, int eagain, int hold, int nreq)
{
	static struct drv d;
	size_t at = 0;

	drv_init(&d);
	if (scen_client)
		client(&d, scen_client->b, scen_client->n);
	else
		clients(&d, nreq);
	d.cap = cap;
	d.eagain = eagain;
	d.hold = hold;
	for (int i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : in->n;

		server_write(&d, in->b + at, to - at);
		at = to;
	}
	cr_assert_eq(d.h.out.skip, 0);
	cr_assert_eq(d.h.out.ins_st, 0, "an insertion left in force");
	return &d.wire;
}

static const struct buf *written(const struct buf *in, size_t cut, size_t cap, int eagain,
				 int hold, int nreq)
{
	return written_at(in, &cut, 1, cap, eagain, hold, nreq);
}

static struct buf sv_in, sv_a, sv_b;
static size_t sv_hdr, sv_len;

/* The cut points worth trying: all of them, or for a long input those near sv's frame. */
static int worth(size_t cut, size_t n)
{
	if (n < 2000)
		return 1;
	return cut < 40 || cut % 997 == 0 || cut + 40 > n ||
	       (cut + 12 > sv_hdr && cut < sv_hdr + 24) ||
	       (cut + 12 > sv_hdr + sv_len && cut < sv_hdr + sv_len + 12);
}

/* Every split, every kernel: the bytes expected for each split by `want(cut)`. */
static void every_way(const struct buf *in, const struct buf *(*want)(size_t cut), int nreq)
{
	static const size_t caps[] = { 0, 1, 2, 3, 5, 8, 13, 64 }, big_caps[] = { 0, 7, 4097 };
	const size_t *cp = in->n < 2000 ? caps : big_caps;
	size_t ncaps = in->n < 2000 ? RQ_ARRAY_LEN(caps) : RQ_ARRAY_LEN(big_caps);

	for (size_t cut = 0; cut <= in->n; cut++) {
		const struct buf *w;

		if (!worth(cut, in->n))
			continue;
		w = want(cut);
		for (size_t c = 0; c < ncaps; c++)
			for (int hold = 0; hold < 2; hold++)
				for (int ea = 0; ea < 2; ea++) {
					char what[96];

					snprintf(what, sizeof(what), "cut %zu cap %zu hold %d eagain %d",
						 cut, cp[c], hold, ea);
					expect_bytes(written(in, cut, cp[c], ea ? 3 : 0, hold, nreq),
						     w, what);
				}
	}
}

/*
 * SETTINGS, then a response head on stream 1 (`pad` bytes of padding; its
 * block cut into a HEADERS and a CONTINUATION frame after `first` bytes if
 * first > 0; `big` bytes of an extra header), then DATA. sv_a: the bytes
 * expected when the head's last frame is in one write; sv_b: with END_HEADERS
 * cleared and a CONTINUATION; sv_hdr, sv_len: where that last frame is.
 */
static void head_frames(struct buf *b, const struct buf *blk, size_t first, unsigned last_flags,
			int pad, const struct buf *f, int at_end)
{
	static struct buf p;
	size_t from = 0;

	if (first) {
		frame(b, 1, 0, 1, blk->b, first);
		from = first;
		sv_hdr = b->n;
		p.n = 0;
		put(&p, blk->b + from, blk->n - from);
		if (f && !at_end)
			put(&p, f->b, f->n);
		frame(b, 9, last_flags, 1, p.b, p.n);
	} else {
		p.n = 0;
		if (pad)
			put8(&p, (unsigned)pad);
		put(&p, blk->b, blk->n);
		if (f && !at_end)
			put(&p, f->b, f->n);
		for (int i = 0; i < pad; i++)
			put8(&p, 0);
		sv_hdr = b->n;
		frame(b, 1, last_flags | (pad ? 0x8 : 0), 1, p.b, p.n);
	}
	if (f && at_end)
		frame(b, 9, 0x4, 1, f->b, f->n);
}

static void server_case2(int pad, size_t first, size_t big)
{
	static struct buf blk, f;
	static char v[20000];
	static const char settings[] = "\0\3\0\0\0\x64";

	blk.n = 0;
	resp_block(&blk);
	if (big) {
		memset(v, 'v', big);
		v[big] = '\0';
		lit(&blk, "x-big", v);
	}
	f.n = 0;
	field(&f, "id-1");
	sv_in.n = sv_a.n = sv_b.n = 0;
	frame(&sv_in, 4, 0, 0, settings, 6);
	head_frames(&sv_in, &blk, first, 0x4, pad, NULL, 0);
	sv_len = sv_in.n - sv_hdr;
	frame(&sv_in, 0, 0x1, 1, "hello", 5);
	frame(&sv_a, 4, 0, 0, settings, 6);
	if (sv_len - 9 + f.n <= 16384)
		head_frames(&sv_a, &blk, first, 0x4, pad, &f, 0);
	else
		head_frames(&sv_a, &blk, first, 0, pad, &f, 1);
	frame(&sv_a, 0, 0x1, 1, "hello", 5);
	frame(&sv_b, 4, 0, 0, settings, 6);
	head_frames(&sv_b, &blk, first, 0, pad, &f, 1);
	frame(&sv_b, 0, 0x1, 1, "hello", 5);
}

static void server_case(int pad)
{
	server_case2(pad, 0, 0);
}

static const struct buf *want_split(size_t cut)
{
	if (cut <= sv_hdr || cut >= sv_hdr + sv_len)
		return &sv_a; /* the frame wholly in one write */
	if (cut <= sv_hdr + 4)
		return &sv_b; /* its length already out unchanged, its flags byte not */
	if (cut < sv_hdr + 9)
		return &sv_in; /* its flags byte out too: left alone */
	return &sv_b;          /* cut after its header: END_HEADERS cleared, a CONTINUATION */
}

Test(h2, every_split_and_every_partial_write_of_a_response_head)
{
	server_case(0);
	every_way(&sv_in, want_split, 1);
}

Test(h2, a_padded_head_gets_the_field_before_its_padding)
{
	server_case(5);
	every_way(&sv_in, want_split, 1);
}

Test(h2, a_block_continued_gets_the_field_in_its_last_frame)
{
	server_case2(0, 3, 0);
	every_way(&sv_in, want_split, 1);
}

Test(h2, a_head_too_big_for_the_frame_size_gets_a_continuation)
{
	/* 16384 bytes of payload with the field: one byte too many */
	server_case2(0, 0, 16384 - 19 - 24 + 1); /* 19: the field; 24: the rest of the block */
	cr_assert_eq(sv_len - 9 + 19, 16385);
	every_way(&sv_in, want_split, 1);
}

Test(h2, a_head_that_fits_exactly_gets_the_field_in_its_frame)
{
	server_case2(0, 0, 16384 - 19 - 24);
	cr_assert_eq(sv_len - 9 + 19, 16384);
	every_way(&sv_in, want_split, 1);
}

/* ---- the independent reference (tests/h2ref.py) ---- */

static void ref_start(struct ref *r, const struct buf *orig, const char *ids, unsigned mfs)
{
	ref_open(r, orig->b, orig->n, ids, mfs);
}

/* A wire made from ORIG written in writes that ended at the `n` offsets `cuts`. */
static void ref_wire(struct ref *r, const struct buf *w, const size_t *cuts, int n)
{
	ref_wire_at(r, w->b, w->n, cuts, n);
}

/* The reference's verdict on every split and kernel of every_way. */
static void ref_every_way(const struct buf *in, const char *ids, int nreq)
{
	static const size_t caps[] = { 0, 1, 3, 7 };
	struct ref r;

	ref_start(&r, in, ids, 16384);
	for (size_t cut = 0; cut <= in->n; cut++)
		for (size_t c = 0; c < RQ_ARRAY_LEN(caps); c++)
			for (int hold = 0; hold < 2; hold++)
				ref_wire(&r, written(in, cut, caps[c], hold ? 4 : 0, hold, nreq),
					 &cut, 1);
	ref_finish(&r);
}

/* Writes `in` after n requests, in one write, and returns the wire. */
static const struct buf *one_write(const struct buf *in, int nreq)
{
	return written(in, in->n, 0, 0, 0, nreq);
}

Test(h2, informational_heads_trailers_and_own_ids_are_left_alone)
{
	static struct buf in, want, blk;

	in.n = want.n = 0;
	/* stream 1: 103, then 200 */
	blk.n = 0;
	put8(&blk, 0x48); /* :status (index 8 name), literal with indexing */
	put8(&blk, 3);
	put(&blk, "103", 3);
	lit(&blk, "link", "</a.css>");
	frame(&in, 1, 0x4, 1, blk.b, blk.n);
	frame(&want, 1, 0x4, 1, blk.b, blk.n);
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&in, 1, 0x4, 1, blk.b, blk.n);
	field(&blk, "id-1");
	frame(&want, 1, 0x4, 1, blk.b, blk.n);
	/* stream 3: the server's own ID header */
	blk.n = 0;
	put8(&blk, 0x88);
	lit(&blk, "x-request-id", "server-3");
	frame(&in, 1, 0x4, 3, blk.b, blk.n);
	frame(&want, 1, 0x4, 3, blk.b, blk.n);
	/* stream 5: 200, DATA, trailers */
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&in, 1, 0x4, 5, blk.b, blk.n);
	field(&blk, "id-5");
	frame(&want, 1, 0x4, 5, blk.b, blk.n);
	frame(&in, 0, 0, 5, "d", 1);
	frame(&want, 0, 0, 5, "d", 1);
	blk.n = 0;
	lit(&blk, "grpc-status", "0");
	frame(&in, 1, 0x5, 5, blk.b, blk.n);
	frame(&want, 1, 0x5, 5, blk.b, blk.n);
	/* stream 7: a block with no :status at all (not a response head) */
	blk.n = 0;
	lit(&blk, "x-other", "1");
	frame(&in, 1, 0x5, 7, blk.b, blk.n);
	frame(&want, 1, 0x5, 7, blk.b, blk.n);
	/* a push promise on stream 9 and the pushed response on stream 2 */
	blk.n = 0;
	put(&blk, "\0\0\0\2", 4);
	req_block(&blk, NULL);
	frame(&in, 5, 0x4, 9, blk.b, blk.n);
	frame(&want, 5, 0x4, 9, blk.b, blk.n);
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&in, 1, 0x5, 2, blk.b, blk.n);
	frame(&want, 1, 0x5, 2, blk.b, blk.n);
	/* stream 9 itself */
	blk.n = 0;
	put8(&blk, 0x8d); /* :status 500 */
	frame(&in, 1, 0x5, 9, blk.b, blk.n);
	field(&blk, "id-9");
	frame(&want, 1, 0x5, 9, blk.b, blk.n);
	expect_bytes(one_write(&in, 5), &want, "one write");
	ref_every_way(&in, "1=id-1 3=id-3 5=id-5 7=id-7 9=id-9", 5);
}

Test(h2, the_status_from_the_dynamic_table_decides)
{
	static struct buf in, want, blk;

	in.n = want.n = 0;
	/* :status 103 and :status 200 inserted into the table, then used by index */
	blk.n = 0;
	put8(&blk, 0x48);
	put8(&blk, 3);
	put(&blk, "103", 3);
	frame(&in, 1, 0x4, 1, blk.b, blk.n);
	frame(&want, 1, 0x4, 1, blk.b, blk.n);
	blk.n = 0;
	put8(&blk, 0x48);
	put8(&blk, 3);
	put(&blk, "200", 3);
	frame(&in, 1, 0x4, 1, blk.b, blk.n);
	field(&blk, "id-1");
	frame(&want, 1, 0x4, 1, blk.b, blk.n);
	blk.n = 0;
	put8(&blk, 0x80 | 63); /* :status 103 */
	frame(&in, 1, 0x4, 3, blk.b, blk.n);
	frame(&want, 1, 0x4, 3, blk.b, blk.n);
	blk.n = 0;
	put8(&blk, 0x80 | 62); /* :status 200 */
	frame(&in, 1, 0x4, 3, blk.b, blk.n);
	field(&blk, "id-3");
	frame(&want, 1, 0x4, 3, blk.b, blk.n);
	expect_bytes(one_write(&in, 2), &want, "one write");
}

Test(h2, a_larger_client_frame_size_keeps_big_heads_in_one_frame)
{
	static struct drv d;
	static struct buf c;

	server_case2(0, 0, 16384 - 19 - 24 + 1);
	drv_init(&d);
	clients(&d, 1);
	c.n = 0;
	frame(&c, 4, 0, 0, "\0\5\0\0\x80\0", 6); /* SETTINGS_MAX_FRAME_SIZE 32768 */
	client(&d, c.b, c.n);
	server_write(&d, sv_in.b, sv_in.n);
	/* the field in the HEADERS frame itself: sv_a built for 16384 would have split it */
	cr_assert_eq(d.wire.n, sv_in.n + 19);
	cr_assert_eq(d.wire.b[sv_hdr + 2], (uint8_t)(sv_len - 9 + 19));
	cr_assert_eq(d.wire.b[sv_hdr + 4], 0x4);
}

Test(h2, many_heads_in_one_write_each_get_their_field)
{
	static struct buf in, want, blk;
	int n = 30; /* more than one plan holds */

	in.n = want.n = 0;
	for (int i = 0; i < n; i++) {
		char id[16];

		blk.n = 0;
		put8(&blk, 0x88);
		frame(&in, 1, 0x4, (uint32_t)(2 * i + 1), blk.b, blk.n);
		frame(&in, 0, 0x1, (uint32_t)(2 * i + 1), "x", 1);
		snprintf(id, sizeof(id), "id-%d", 2 * i + 1);
		field(&blk, id);
		frame(&want, 1, 0x4, (uint32_t)(2 * i + 1), blk.b, blk.n);
		frame(&want, 0, 0x1, (uint32_t)(2 * i + 1), "x", 1);
	}
	expect_bytes(one_write(&in, n), &want, "one write");
	expect_bytes(written(&in, in.n, 7, 0, 1, n), &want, "7 bytes a call, non-blocking");
}

Test(h2, a_non_blocking_write_cut_in_a_trailing_insertion_is_reported_short)
{
	static struct drv d;
	static struct buf in, blk, want;
	ssize_t r;

	drv_init(&d);
	clients(&d, 1);
	d.hold = 1;
	blk.n = 0;
	put8(&blk, 0x88);
	in.n = 0;
	frame(&in, 1, 0x5, 1, blk.b, blk.n); /* ends the write: the field trails */
	field(&blk, "id-1");
	want.n = 0;
	frame(&want, 1, 0x5, 1, blk.b, blk.n);
	d.cap = in.n + 5; /* the caller's bytes and 5 of the field's 19 */
	r = write_once(&d, in.b, in.n);
	cr_assert_eq(r, (ssize_t)in.n - 1, "told %zd", r);
	cr_assert_eq(d.wire.n, in.n + 5);
	/* the caller sends its last byte again: it is dropped, the field finished */
	d.cap = 0;
	r = write_once(&d, in.b + in.n - 1, 1);
	cr_assert_eq(r, 1);
	expect_bytes(&d.wire, &want, "after the retry");
	/* a blocking caller gets the field out before its write returns */
	drv_init(&d);
	clients(&d, 1);
	d.cap = in.n + 5;
	r = write_once(&d, in.b, in.n);
	cr_assert_eq(r, (ssize_t)in.n);
	cr_assert_eq(d.h.out.ins_st, 1);
	d.cap = 3;
	flush(&d);
	expect_bytes(&d.wire, &want, "after the flush");
}

/* ---- scenarios made by python3-h2's own client and server ---- */

struct scen {
	struct buf c, s;
	int nchunks;
	size_t chunk[32];   /* where each of the server's writes ended */
	char ids[1024];     /* IDS line for the reference */
	char events[1024];  /* the inbound events expected */
	unsigned last;
};

static int unhex(const char *h, struct buf *b)
{
	unsigned v;

	while (h[0] && h[0] != '\n' && sscanf(h, "%2x", &v) == 1) {
		put8(b, v);
		h += 2;
	}
	return 0;
}

static void scen_load(const char *name, struct scen *sc)
{
	char cmd[1024];
	static char line[1 << 17];
	unsigned slot = 0;
	size_t il = 0, el = 0;
	FILE *p;

	memset(sc, 0, sizeof(*sc));
	snprintf(cmd, sizeof(cmd), PY " %s gen %s", ref_script(), name);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p)) {
		if (line[0] == 'C') {
			unhex(line + 2, &sc->c);
		} else if (line[0] == 'S') {
			unhex(line + 2, &sc->s);
			sc->chunk[sc->nchunks++] = sc->s.n;
		} else if (line[0] == 'I') {
			unsigned sid;
			char id[300];

			cr_assert_eq(sscanf(line, "I %u %299[^\n]", &sid, id), 2);
			if (strcmp(id, "-") && rq_id_valid(id, strlen(id))) {
				il += (size_t)snprintf(sc->ids + il, sizeof(sc->ids) - il, "%u=%s ", sid, id);
				el += (size_t)snprintf(sc->events + el, sizeof(sc->events) - el,
						       "R%u@%u:%s;", sid, slot, id);
			} else {
				il += (size_t)snprintf(sc->ids + il, sizeof(sc->ids) - il, "%u=id-%u ", sid,
						       sid);
				el += (size_t)snprintf(sc->events + el, sizeof(sc->events) - el,
						       "R%u@%u:-;", sid, slot);
			}
			sc->last = slot++;
		}
	}
	cr_assert_eq(pclose(p), 0, "%s", cmd);
	cr_assert_gt(sc->c.n, 0);
	cr_assert_gt(sc->s.n, 0);
	sc->nchunks--; /* the last chunk ends at the end */
}

/* Cut points near the starts and ends of the frames of b, and every `stride`-th. */
static int near_frames(const struct buf *b, size_t cut, size_t stride)
{
	for (size_t at = 0; at + 9 <= b->n;) {
		size_t len = (size_t)b->b[at] << 16 | (size_t)b->b[at + 1] << 8 | b->b[at + 2];

		if (cut + 12 > at && cut < at + 24)
			return 1;
		at += 9 + len;
	}
	return cut % stride == 0 || cut + 12 > b->n;
}

static void scenario(const char *name, size_t stride, const size_t *caps, int ncaps)
{
	static struct scen sc;
	struct ref r;

	scen_load(name, &sc);
	/* the client's side at every split */
	expect_reads(sc.c.b, sc.c.n, sc.events, sc.last);
	scen_client = &sc.c;
	ref_start(&r, &sc.s, sc.ids, 16384);
	/* the server's own writes */
	for (int c = 0; c < ncaps; c++)
		for (int hold = 0; hold < 2; hold++)
			ref_wire(&r, written_at(&sc.s, sc.chunk, sc.nchunks, caps[c], hold ? 3 : 0, hold, 0),
				 sc.chunk, sc.nchunks);
	/* every split in two */
	for (size_t cut = 0; cut <= sc.s.n; cut++) {
		if (!near_frames(&sc.s, cut, stride))
			continue;
		for (int c = 0; c < ncaps; c++)
			for (int hold = 0; hold < 2; hold++)
				ref_wire(&r, written(&sc.s, cut, caps[c], hold ? 3 : 0, hold, 0), &cut, 1);
	}
	/* writes of k bytes */
	for (size_t k = 1; k <= 40; k++) {
		static size_t cuts[1 << 15];
		int n = 0;

		if (sc.s.n / k >= RQ_ARRAY_LEN(cuts))
			continue;
		for (size_t at = k; at < sc.s.n; at += k)
			cuts[n++] = at;
		ref_wire(&r, written_at(&sc.s, cuts, n, caps[k % (size_t)ncaps], 0, (int)(k & 1), 0),
			 cuts, n);
	}
	ref_finish(&r);
	scen_client = NULL;
}

Test(h2, python_h2_server_responses_decode_with_every_id_at_every_split)
{
	static const size_t caps[] = { 0, 1, 3 };

	scenario("mix", 1, caps, 3);
}

Test(h2, python_h2_server_continued_head_decodes_with_its_id)
{
	/* (a kernel taking a few bytes a call makes each write plan the whole rest again:
	   quadratic in the block's size, so not with 32 KB blocks here) */
	static const size_t caps[] = { 0, 4097 };

	scenario("big", 1000, caps, 2);
}

/* ---- hostile input ---- */

/* The client's bytes b after the preface: the events must end with the scanner stopping. */
static void expect_dead(const struct buf *b, const char *before, const char *why)
{
	static struct buf all;
	char want[1024];

	all.n = 0;
	put(&all, preface_settings, sizeof(preface_settings));
	put(&all, b->b, b->n);
	snprintf(want, sizeof(want), "%sD;", before);
	for (size_t chunk = 1; chunk <= all.n; chunk += chunk < 64 ? 1 : 509) {
		static struct rq_h2 h;
		struct rq_h2_ev ev;

		rq_h2_init(&h, 0);
		cr_assert_str_eq(reads(&h, all.b, all.n, chunk), want, "%s, reads of %zu", why, chunk);
		cr_assert_eq(atomic_load(&h.in_dead), 1, "%s", why);
		/* and nothing more from it */
		cr_assert_eq(rq_h2_read(&h, (const char *)all.b, all.n, &ev), all.n);
		cr_assert_eq(ev.type, RQ_H2_EV_NONE);
	}
}

static void headers(struct buf *b, uint32_t sid, const struct buf *blk)
{
	frame(b, 1, 0x5, sid, blk->b, blk->n);
}

Test(h2, a_wrong_preface_stops_the_scanner)
{
	static struct rq_h2 h;
	static const char h1[] = "PRI * HTTP/1.1\r\n\r\n";
	uint8_t m = 0;

	rq_h2_init(&h, 0);
	cr_assert_str_eq(reads(&h, (const uint8_t *)h1, sizeof(h1) - 1, 1), "D;");
	cr_assert_eq(rq_h2_preface(&m, "PRI * HTTP/2.0\r\n", 16), 0);
	cr_assert_eq(rq_h2_preface(&m, "\r\nSM\r\n\r\nxyz", 11), 1);
	cr_assert_eq(m, 24);
	m = 0;
	cr_assert_eq(rq_h2_preface(&m, "PRI * HTTP/1.1", 14), -1);
	m = 0;
	cr_assert_eq(rq_h2_preface(&m, "GET / HTTP/1.1\r\n", 16), -1);
}

Test(h2, frames_out_of_place_stop_the_scanner)
{
	static struct buf b, blk;

	blk.n = 0;
	req_block(&blk, "x");
	b.n = 0;
	headers(&b, 0, &blk);
	expect_dead(&b, "", "HEADERS on stream 0");
	b.n = 0;
	headers(&b, 2, &blk);
	expect_dead(&b, "", "HEADERS on an even stream");
	b.n = 0;
	frame(&b, 9, 0x4, 1, blk.b, blk.n);
	expect_dead(&b, "", "CONTINUATION with no block");
	b.n = 0;
	frame(&b, 1, 0x1, 1, blk.b, blk.n);
	frame(&b, 0, 0x1, 1, "x", 1);
	expect_dead(&b, "", "DATA inside a block");
	b.n = 0;
	frame(&b, 1, 0x1, 1, blk.b, 2);
	frame(&b, 9, 0x4, 3, blk.b + 2, blk.n - 2);
	expect_dead(&b, "", "CONTINUATION of another stream");
	b.n = 0;
	frame(&b, 5, 0x4, 1, "\0\0\0\2\x82", 5);
	expect_dead(&b, "", "PUSH_PROMISE from a client");
	b.n = 0;
	frame(&b, 0, 0, 0, "x", 1);
	expect_dead(&b, "", "DATA on stream 0");
	b.n = 0;
	frame(&b, 1, 0x4 | 0x8, 1, "\x09\x82\x86\x84", 4);
	expect_dead(&b, "", "padding longer than the frame");
	b.n = 0;
	frame(&b, 1, 0x4 | 0x20, 1, "\0\0\0", 3);
	expect_dead(&b, "", "a priority field cut short");
}

Test(h2, bad_settings_stop_the_scanner)
{
	static struct buf b;

	b.n = 0;
	frame(&b, 4, 0, 0, "\0\5\0\0\x3f\xff", 6);
	expect_dead(&b, "", "MAX_FRAME_SIZE below 16384");
	b.n = 0;
	frame(&b, 4, 0, 0, "\0\5\1\0\0\0", 6);
	expect_dead(&b, "", "MAX_FRAME_SIZE above 2^24-1");
	b.n = 0;
	frame(&b, 4, 0, 0, "\0\1\0\0\0", 5);
	expect_dead(&b, "", "a setting cut short");
	b.n = 0;
	frame(&b, 4, 0x1, 0, "\0\1\0\0\0\0", 6);
	expect_dead(&b, "", "an ACK with a payload");
	b.n = 0;
	frame(&b, 4, 0, 1, "\0\1\0\0\0\0", 6);
	expect_dead(&b, "", "SETTINGS on a stream");
}

Test(h2, a_settings_flood_stops_the_scanner_and_a_steady_trickle_does_not)
{
	static struct buf b, blk;
	static struct rq_h2 h;

	b.n = 0;
	for (int i = 0; i < RQ_H2_SETTINGS_RUN; i++) /* with the preface's, one too many */
		frame(&b, 4, 0, 0, "\0\4\0\0\xff\xff", 6);
	expect_dead(&b, "", "SETTINGS flood");
	/* the same count spread between requests is fine; ACKs do not count */
	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	req_block(&blk, "a");
	for (int i = 0; i < 3 * RQ_H2_SETTINGS_RUN; i++) {
		frame(&b, 4, 0x1, 0, "", 0);
		if (i % 20 == 0)
			headers(&b, (uint32_t)(2 * i + 1), &blk);
		else
			frame(&b, 4, 0, 0, "\0\4\0\0\xff\xff", 6);
	}
	rq_h2_init(&h, 0);
	cr_assert_str_eq(reads(&h, b.b, b.n, b.n), "R1@0:a;R41@20:a;R81@8:a;R121@28:a;R161@16:a;");
}

Test(h2, a_continuation_flood_stops_the_scanner)
{
	static struct buf b, blk;
	static struct rq_h2 h;

	blk.n = 0;
	req_block(&blk, "a");
	b.n = 0;
	frame(&b, 1, 0x1, 1, blk.b, blk.n);
	for (int i = 1; i < RQ_H2_BLOCK_FRAMES; i++)
		frame(&b, 9, 0, 1, "", 0);
	frame(&b, 9, 0x4, 1, "", 0);
	expect_dead(&b, "", "one CONTINUATION too many");
	/* RQ_H2_BLOCK_FRAMES frames in all is still a request */
	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	frame(&b, 1, 0x1, 1, blk.b, blk.n);
	for (int i = 2; i < RQ_H2_BLOCK_FRAMES; i++)
		frame(&b, 9, 0, 1, "", 0);
	frame(&b, 9, 0x4, 1, "", 0);
	rq_h2_init(&h, 0);
	cr_assert_str_eq(reads(&h, b.b, b.n, 7), "R1@0:a;");
}

Test(h2, a_block_of_more_than_256_KiB_stops_the_scanner)
{
	static struct buf b, blk;
	static char v[16384];
	size_t total = 0;

	memset(v, 'v', sizeof(v));
	blk.n = 0;
	put8(&blk, 0x82);
	put8(&blk, 0);
	hint(&blk, 0, 7, 3);
	put(&blk, "big", 3);
	hint(&blk, 0, 7, RQ_H2_BLOCK_MAX); /* a value longer than the cap */
	b.n = 0;
	frame(&b, 1, 0x1, 1, blk.b, blk.n);
	total = blk.n;
	while (total <= RQ_H2_BLOCK_MAX) {
		frame(&b, 9, 0, 1, v, sizeof(v));
		total += sizeof(v);
	}
	expect_dead(&b, "", "a 256 KiB block");
}

Test(h2, invalid_hpack_stops_the_scanner)
{
	static const struct {
		const char *why;
		const char *block;
		size_t n;
	} bad[] = {
		{ "index 0", "\x80", 1 },
		{ "an index past the table", "\xbe", 1 },
		{ "a name index past the table", "\x7e\x01x", 3 },
		{ "an integer of five continuation bytes", "\xff\x80\x80\x80\x80\x01", 6 },
		{ "an overlong integer", "\xff\x80\x00", 3 },
		{ "a size update after a field", "\x82\x20", 2 },
		{ "a size update beyond the table size", "\x3f\xe2\x1f", 3 }, /* 4097 */
		{ "EOS in a Huffman string", "\x00\x8c" "x-request-id" "\x84\xff\xff\xff\xfc", 19 },
		{ "Huffman padding of 11 bits", "\x00\x8c" "x-request-id" "\x82\x1f\xff", 17 },
		{ "Huffman padding not all ones", "\x00\x8c" "x-request-id" "\x81\x18", 16 },
		{ "a Huffman name ending in EOS", "\x00\x84\xff\xff\xff\xfc\x01x", 8 },
		{ "a block ending inside a literal", "\x00\x03" "ab", 4 },
		{ "a block ending inside an integer", "\xff", 1 },
	};

	for (size_t i = 0; i < RQ_ARRAY_LEN(bad); i++) {
		static struct buf b;

		b.n = 0;
		frame(&b, 1, 0x5, 1, bad[i].block, bad[i].n);
		expect_dead(&b, "", bad[i].why);
	}
}

Test(h2, bad_ids_are_dropped_whole)
{
	static struct buf b, blk;
	static char longid[REQCTX_ID_MAX + 2];

	memset(longid, 'a', sizeof(longid) - 1);
	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	req_block(&blk, longid); /* 129 bytes */
	headers(&b, 1, &blk);
	blk.n = 0;
	req_block(&blk, "a]b");
	headers(&b, 3, &blk);
	blk.n = 0;
	req_block(&blk, "");
	headers(&b, 5, &blk);
	blk.n = 0;
	req_block(&blk, "bad\x01");
	lit(&blk, "x-request-id", "second-wins");
	headers(&b, 7, &blk);
	longid[REQCTX_ID_MAX] = '\0'; /* 128 bytes: valid */
	blk.n = 0;
	req_block(&blk, longid);
	headers(&b, 9, &blk);
	{
		char want[512];

		snprintf(want, sizeof(want), "R1@0:-;R3@1:-;R5@2:-;R7@3:second-wins;R9@4:%s;", longid);
		expect_reads(b.b, b.n, want, 4);
	}
}

Test(h2, an_hpack_bomb_stops_the_scanner)
{
	static struct buf b, blk;
	static char v[4000];

	memset(v, 'v', sizeof(v) - 1);
	blk.n = 0;
	req_block(&blk, NULL);
	lit_idx(&blk, "bomb", v); /* 4036 bytes in the table */
	b.n = 0;
	headers(&b, 1, &blk);
	blk.n = 0;
	req_block(&blk, NULL);
	for (int i = 0; i < 70; i++) /* 70 references: 282 KB once decoded */
		put8(&blk, 0x80 | 62);
	headers(&b, 3, &blk);
	expect_dead(&b, "R1@0:-;", "70 references to a 4 KB entry");
}

Test(h2, a_table_of_more_entries_than_tracked_stops_the_scanner)
{
	static struct drv d;
	static struct buf s, b, blk;

	/* the server allows a 64 KiB table: room for more than RQ_HP_ENTS small entries */
	drv_init(&d);
	s.n = 0;
	frame(&s, 4, 0, 0, "\0\1\0\1\0\0", 6);
	server_write(&d, s.b, s.n);
	cr_assert_eq(atomic_load(&d.h.own_hts), 65536);
	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	hint(&blk, 0x20, 5, 65536); /* size update: allowed now */
	req_block(&blk, NULL);
	for (int i = 0; i < RQ_HP_ENTS; i++) {
		char name[8];

		snprintf(name, sizeof(name), "n%d", i);
		lit_idx(&blk, name, "v");
	}
	headers(&b, 1, &blk);
	client(&d, b.b, b.n); /* RQ_HP_ENTS entries: fine */
	cr_assert_eq(d.h.in.hp.n, RQ_HP_ENTS);
	b.n = 0;
	blk.n = 0;
	req_block(&blk, NULL);
	lit_idx(&blk, "one", "more");
	headers(&b, 3, &blk);
	cr_assert_str_eq(reads(&d.h, b.b, b.n, 1), "D;");
}

/* ---- streams, contexts and giving up ---- */

Test(h2, streams_beyond_the_cap_share_the_connection_and_slots_come_back)
{
	static struct drv d;
	static struct buf b, blk, s;
	char want[4096];
	size_t len = 0;
	int n = RQ_H2_STREAMS + 2;

	drv_init(&d);
	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	for (int i = 0; i < n; i++) {
		blk.n = 0;
		req_block(&blk, NULL);
		headers(&b, (uint32_t)(2 * i + 1), &blk);
		len += (size_t)snprintf(want + len, sizeof(want) - len, "R%d@%d:-;", 2 * i + 1,
					i < RQ_H2_STREAMS ? i : RQ_H2_CONN);
	}
	cr_assert_str_eq(reads(&d.h, b.b, b.n, b.n), want);
	cr_assert_eq(d.h.in.last, RQ_H2_CONN);
	/* the server answers streams 1 and 3 (END_STREAM): their slots are free again */
	s.n = 0;
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&s, 1, 0x5, 1, blk.b, blk.n);
	frame(&s, 1, 0x4, 3, blk.b, blk.n);
	frame(&s, 0, 0x1, 3, "x", 1);
	server_write(&d, s.b, s.n);
	cr_assert_eq(d.h.out.last, 1);
	b.n = 0;
	blk.n = 0;
	req_block(&blk, "new-one");
	headers(&b, 1001, &blk);
	headers(&b, 1003, &blk);
	headers(&b, 1005, &blk);
	cr_assert_str_eq(reads(&d.h, b.b, b.n, 5), "R1001@0:new-one;R1003@1:new-one;R1005@32:new-one;");
	/* a reset frees a slot too */
	b.n = 0;
	frame(&b, 3, 0, 7, "\0\0\0\x08", 4);
	headers(&b, 1007, &blk);
	cr_assert_str_eq(reads(&d.h, b.b, b.n, 3), "R1007@3:new-one;");
}

Test(h2, the_context_follows_the_last_frame_read_and_written)
{
	static struct drv d;
	static struct buf b, blk, s;

	drv_init(&d);
	clients(&d, 3);
	cr_assert_eq(d.h.in.last, 2);
	b.n = 0;
	frame(&b, 8, 0, 1, "\0\0\1\0", 4); /* WINDOW_UPDATE for stream 1 */
	frame(&b, 6, 0, 0, "12345678", 8); /* PING: no stream */
	reads(&d.h, b.b, b.n, b.n);
	cr_assert_eq(d.h.in.last, 0);
	b.n = 0;
	frame(&b, 0, 0, 3, "ab", 2);       /* DATA for stream 3 */
	frame(&b, 2, 0, 5, "\0\0\0\1\x10", 5); /* PRIORITY: does not count */
	frame(&b, 4, 0x1, 0, "", 0);
	reads(&d.h, b.b, b.n, 3);
	cr_assert_eq(d.h.in.last, 1);
	b.n = 0;
	frame(&b, 0, 0, 99, "ab", 2); /* a stream not tracked: the connection's */
	reads(&d.h, b.b, b.n, 3);
	cr_assert_eq(d.h.in.last, RQ_H2_CONN);
	cr_assert_eq(d.h.out.last, RQ_H2_NONE);
	s.n = 0;
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&s, 1, 0x4, 5, blk.b, blk.n);
	frame(&s, 0, 0, 3, "x", 1);
	frame(&s, 4, 0x1, 0, "", 0);
	server_write(&d, s.b, s.n);
	cr_assert_eq(d.h.out.last, 1); /* DATA of stream 3 was the last with a stream */
}

Test(h2, after_the_client_side_gives_up_no_response_is_changed)
{
	static struct drv d;
	static struct buf b, s, blk;

	drv_init(&d);
	clients(&d, 1);
	b.n = 0;
	frame(&b, 9, 0x4, 1, "", 0); /* CONTINUATION out of place */
	cr_assert_str_eq(reads(&d.h, b.b, b.n, 1), "D;");
	s.n = 0;
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&s, 1, 0x5, 1, blk.b, blk.n);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &s, "unchanged");
}

Test(h2, a_server_block_reqctx_cannot_read_ends_its_edits)
{
	static struct drv d;
	static struct buf s, blk, want;

	drv_init(&d);
	clients(&d, 3);
	s.n = want.n = 0;
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&s, 1, 0x4, 1, blk.b, blk.n);
	field(&blk, "id-1");
	frame(&want, 1, 0x4, 1, blk.b, blk.n);
	frame(&s, 1, 0x4, 3, "\x80", 1); /* index 0: not HPACK */
	frame(&want, 1, 0x4, 3, "\x80", 1);
	frame(&s, 1, 0x4, 5, "\x88", 1);
	frame(&want, 1, 0x4, 5, "\x88", 1);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &want, "edits stop at the bad block");
	cr_assert_eq(d.h.out.nomore, 1);
}

Test(h2, a_cut_head_whose_block_turns_bad_still_gets_its_continuation)
{
	static struct drv d;
	static struct buf s, want;

	drv_init(&d);
	clients(&d, 1);
	s.n = want.n = 0;
	frame(&s, 1, 0x4, 1, "\x88\x80", 2); /* the index 0 comes in the second write */
	frame(&want, 1, 0, 1, "\x88\x80", 2);
	frame(&want, 9, 0x4, 1, "", 0); /* an empty CONTINUATION ends the block */
	server_write(&d, s.b, 10);
	server_write(&d, s.b + 10, s.n - 10);
	expect_bytes(&d.wire, &want, "the END_HEADERS cleared is made good");
}

Test(h2, the_server_encoder_must_keep_to_the_client_table_size)
{
	static struct drv d;
	static struct buf s, blk, want, c;

	/* a size update to 8192 without the client allowing it: the planner stops */
	drv_init(&d);
	clients(&d, 2);
	s.n = 0;
	frame(&s, 1, 0x5, 1, "\x3f\xe1\x3f\x88", 4);
	frame(&s, 1, 0x5, 3, "\x88", 1);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &s, "unchanged");
	/* the same once the client announced 8192 */
	drv_init(&d);
	clients(&d, 2);
	c.n = 0;
	frame(&c, 4, 0, 0, "\0\1\0\0\x20\0", 6);
	client(&d, c.b, c.n);
	want.n = 0;
	blk.n = 0;
	put(&blk, "\x3f\xe1\x3f\x88", 4);
	field(&blk, "id-1");
	frame(&want, 1, 0x5, 1, blk.b, blk.n);
	blk.n = 0;
	put8(&blk, 0x88);
	field(&blk, "id-3");
	frame(&want, 1, 0x5, 3, blk.b, blk.n);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &want, "both heads");
}

Test(h2, an_upgraded_connection_answers_stream_1_with_the_http1_id)
{
	static struct drv d;
	static struct buf s, blk, want, b;

	memset(&d, 0, offsetof(struct drv, wire));
	rq_h2_init(&d.h, RQ_H2_UPGRADED);
	strcpy(d.ids.id[0], "from-http1");
	s.n = want.n = 0;
	frame(&s, 4, 0, 0, "", 0);
	frame(&want, 4, 0, 0, "", 0);
	blk.n = 0;
	put8(&blk, 0x88);
	frame(&s, 1, 0x5, 1, blk.b, blk.n);
	field(&blk, "from-http1");
	frame(&want, 1, 0x5, 1, blk.b, blk.n);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &want, "stream 1");
	/* then the client's preface, and stream 3 is a new request */
	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	req_block(&blk, "three");
	headers(&b, 3, &blk);
	cr_assert_str_eq(reads(&d.h, b.b, b.n, 4), "R3@1:three;");
}

Test(h2, echo_off_changes_nothing)
{
	static const char *const env[] = { "REQCTX_ECHO=0", NULL };
	static struct drv d;
	static struct buf s;

	test_config(env);
	drv_init(&d);
	clients(&d, 1);
	s.n = 0;
	frame(&s, 1, 0x5, 1, "\x88", 1);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &s, "unchanged");
	cr_assert_eq(d.h.out.last, 0);
}

Test(h2, a_configured_header_name_is_read_and_written_in_lower_case)
{
	static const char *const env[] = { "REQCTX_HEADER=X-Correlation-Id", NULL };
	static struct drv d;
	static struct buf b, blk, s, want;

	test_config(env);
	drv_init(&d);
	b.n = 0;
	put(&b, preface_settings, sizeof(preface_settings));
	blk.n = 0;
	req_block(&blk, NULL);
	lit(&blk, "x-correlation-id", "corr-1");
	headers(&b, 1, &blk);
	client(&d, b.b, b.n);
	s.n = want.n = 0;
	frame(&s, 1, 0x5, 1, "\x88", 1);
	blk.n = 0;
	put8(&blk, 0x88);
	lit(&blk, "x-correlation-id", "corr-1");
	frame(&want, 1, 0x5, 1, blk.b, blk.n);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &want, "x-correlation-id");
}

Test(h2, data_sent_with_sendfile_is_followed_and_anything_else_stops_the_planner)
{
	static struct drv d;
	static struct buf s, want, blk;

	drv_init(&d);
	clients(&d, 2);
	/* stream 1: HEADERS and a DATA header written, its 1000 payload bytes by sendfile */
	s.n = want.n = 0;
	frame(&s, 1, 0x4, 1, "\x88", 1);
	blk.n = 0;
	put8(&blk, 0x88);
	field(&blk, "id-1");
	frame(&want, 1, 0x4, 1, blk.b, blk.n);
	put(&s, "\0\x03\xe8\0\x01\0\0\0\1", 9); /* DATA, 1000 bytes, END_STREAM */
	put(&want, "\0\x03\xe8\0\x01\0\0\0\1", 9);
	server_write(&d, s.b, s.n);
	expect_bytes(&d.wire, &want, "before sendfile");
	cr_assert_eq(rq_h2_opaque(&d.h, 600), 0);
	cr_assert_eq(rq_h2_opaque(&d.h, 400), 0);
	cr_assert_eq(d.h.out.fr.pos, s.n + 1000);
	/* stream 1 is closed on both sides now; stream 3 still gets its field */
	cr_assert_eq(atomic_load(&d.h.st[0].w), 0);
	d.wire.n = 0;
	s.n = want.n = 0;
	frame(&s, 1, 0x5, 3, "\x88", 1);
	blk.n = 0;
	put8(&blk, 0x88);
	field(&blk, "id-3");
	frame(&want, 1, 0x5, 3, blk.b, blk.n);
	/* a trailing insertion pending: sendfile must wait for it */
	d.cap = s.n + 3;
	cr_assert_eq(write_once(&d, s.b, s.n), (ssize_t)s.n);
	cr_assert_eq(rq_h2_opaque(&d.h, 10), -EAGAIN);
	d.cap = 0;
	flush(&d);
	expect_bytes(&d.wire, &want, "stream 3");
	/* bytes that are not DATA payload: no more edits */
	cr_assert_eq(rq_h2_opaque(&d.h, 10), -EINVAL);
	cr_assert_eq(d.h.out.nomore, 1);
}

Test(h2, a_reset_stream_is_current_after_the_read_that_resets_it)
{
	static struct drv d;
	static struct buf b;

	drv_init(&d);
	clients(&d, 3);
	b.n = 0;
	frame(&b, 3, 0, 3, "\0\0\0\x08", 4); /* RST_STREAM CANCEL for stream 3 */
	reads(&d.h, b.b, b.n, b.n);
	cr_assert_eq(d.h.in.last, 1);
	cr_assert_eq(atomic_load(&d.h.st[1].w), 0, "the slot is free for the next stream");
}
