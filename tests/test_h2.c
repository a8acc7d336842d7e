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

#include "common.h"
#include "h2.h"
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

struct buf {
	size_t n;
	uint8_t b[1 << 17];
};

static void put(struct buf *b, const void *p, size_t n)
{
	cr_assert_leq(b->n + n, sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void put8(struct buf *b, unsigned v)
{
	uint8_t c = (uint8_t)v;

	put(b, &c, 1);
}

static void frame(struct buf *b, unsigned type, unsigned flags, uint32_t sid, const void *p,
		  size_t n)
{
	uint8_t h[9] = { (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, (uint8_t)type,
			 (uint8_t)flags, (uint8_t)(sid >> 24), (uint8_t)(sid >> 16),
			 (uint8_t)(sid >> 8), (uint8_t)sid };

	put(b, h, 9);
	put(b, p, n);
}

/* An HPACK integer with an N-bit prefix after the bits `hi`. */
static void hint(struct buf *b, unsigned hi, int bits, uint64_t v)
{
	uint64_t max = (1u << bits) - 1;

	if (v < max) {
		put8(b, hi | (unsigned)v);
		return;
	}
	put8(b, hi | (unsigned)max);
	v -= max;
	while (v >= 128) {
		put8(b, (unsigned)(v % 128) | 0x80);
		v /= 128;
	}
	put8(b, (unsigned)v);
}

/* A literal without indexing, new name, raw strings. */
static void lit(struct buf *b, const char *name, const char *value)
{
	put8(b, 0);
	hint(b, 0, 7, strlen(name));
	put(b, name, strlen(name));
	hint(b, 0, 7, strlen(value));
	put(b, value, strlen(value));
}

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
	memset(d, 0, sizeof(*d));
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
	size_t i = 0;

	while (i < got->n && i < want->n && got->b[i] == want->b[i])
		i++;
	cr_assert(got->n == want->n && i == got->n,
		  "%s: %zu bytes, want %zu; first difference at %zu", what, got->n, want->n, i);
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
static const struct buf *written(const struct buf *in, size_t cut, size_t cap, int eagain,
				 int hold, int nreq)
{
	static struct drv d;

	drv_init(&d);
	clients(&d, nreq);
	d.cap = cap;
	d.eagain = eagain;
	d.hold = hold;
	server_write(&d, in->b, cut);
	server_write(&d, in->b + cut, in->n - cut);
	cr_assert_eq(d.h.out.skip, 0);
	cr_assert_eq(d.h.out.ins_st, 0, "an insertion left in force");
	return &d.wire;
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
