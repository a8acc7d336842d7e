#include "h2.h"

#include <errno.h>
#include <string.h>

#include "config.h"
#include "id.h"

enum { F_PRE, F_HDR, F_PADLEN, F_PREFIX, F_FRAG, F_PAD, F_SET, F_SKIP, F_DEAD };
enum { B_HDR = 1, B_PUSH };
enum { G_NEW = 1, G_DECIDE };

/* Frame types (RFC 9113 6). */
enum { T_DATA, T_HEADERS, T_PRIORITY, T_RST, T_SETTINGS, T_PUSH, T_PING, T_GOAWAY,
       T_WINDOW, T_CONT };

#define FL_END_STREAM  0x01u
#define FL_ACK         0x01u
#define FL_END_HEADERS 0x04u
#define FL_PADDED      0x08u
#define FL_PRIORITY    0x20u

#define SET_HEADER_TABLE_SIZE 1
#define SET_MAX_FRAME_SIZE    5
#define MFS_MIN               16384u
#define MFS_MAX               16777215u

/* Stream map entries: stream ID in the high half, S_* in the low half. */
#define S_USED      1u
#define S_REQ_END   2u /* the client ended the stream */
#define S_RESP_END  4u /* the server ended the stream */
#define S_RESP_HEAD 8u /* the server sent the final response head */

/* One call's view of one direction. */
struct scan {
	struct rq_h2 *h;
	struct rq_h2_fr *fr;
	struct rq_hpack *hp;
	struct rq_hp_vals *vals;
	int out;               /* the outbound direction */
	struct rq_h2_out *o;   /* outbound: the state being advanced */
	struct rq_h2_plan *p;  /* outbound: planning on p->scratch; NULL: committing */
	uint64_t first, end;   /* planning: stream positions of the write's first unsent
				  byte and of its end */
	rq_h2_id_fn idf;
	void *arg;
	struct rq_h2_ev *ev;   /* inbound */
	int stop;
};

/* ---- the stream map, shared by the reader and the writer ---- */

static uint64_t mk(uint32_t sid, uint32_t fl)
{
	return (uint64_t)sid << 32 | fl;
}

static _Atomic uint64_t *slotw(struct rq_h2 *h, int i)
{
	return &h->st[i].w;
}

/*
 * Stream sid's preferred slot: a client opens streams 1, 3, 5 ... in order,
 * so up to RQ_H2_STREAMS streams opened one after another at once never
 * collide, and a lookup usually costs one load.
 */
static int pref(uint32_t sid)
{
	return (int)((sid >> 1) % RQ_H2_STREAMS);
}

static int map_at(struct rq_h2 *h, int i, uint32_t sid, uint32_t *fl)
{
	uint64_t w = atomic_load_explicit(slotw(h, i), memory_order_acquire);

	if ((uint32_t)(w >> 32) != sid || !(uint32_t)w)
		return 0;
	if (fl)
		*fl = (uint32_t)w;
	return 1;
}

/* The slot tracking stream sid, or -1. */
static int map_find(struct rq_h2 *h, uint32_t sid, uint32_t *fl)
{
	int p = pref(sid);

	if (!sid)
		return -1;
	if (map_at(h, p, sid, fl))
		return p;
	for (int i = 0; i < RQ_H2_STREAMS; i++)
		if (i != p && map_at(h, i, sid, fl))
			return i;
	return -1;
}

static int map_take(struct rq_h2 *h, int i, uint32_t sid)
{
	uint64_t w = atomic_load_explicit(slotw(h, i), memory_order_acquire);

	return !(uint32_t)w &&
	       atomic_compare_exchange_strong(slotw(h, i), &w, mk(sid, S_USED));
}

/* A slot for a new stream, or RQ_H2_CONN when all are taken. Reader only. */
static unsigned map_new(struct rq_h2 *h, uint32_t sid)
{
	int p = pref(sid);

	if (map_take(h, p, sid))
		return (unsigned)p;
	for (int i = 0; i < RQ_H2_STREAMS; i++)
		if (i != p && map_take(h, i, sid))
			return (unsigned)i;
	return RQ_H2_CONN;
}

/* Sets `bit` on stream sid's entry; frees it once both sides ended it, or on `reset`. */
static void map_mark(struct rq_h2 *h, uint32_t sid, uint32_t bit, int reset)
{
	int i = map_find(h, sid, NULL);
	uint64_t w, nw;

	if (i < 0)
		return;
	w = atomic_load_explicit(slotw(h, i), memory_order_acquire);
	do {
		uint32_t fl = (uint32_t)w | bit;

		if ((uint32_t)(w >> 32) != sid || !(uint32_t)w)
			return;
		nw = reset || (fl & (S_REQ_END | S_RESP_END)) == (S_REQ_END | S_RESP_END)
			? 0 : mk(sid, fl);
	} while (!atomic_compare_exchange_weak(slotw(h, i), &w, nw));
}

/*
 * A change to the map from the server's bytes: made now when committing,
 * kept in the plan when planning (the commit makes it if the plan is adopted).
 */
static void out_mark(struct scan *s, uint32_t sid, uint32_t bit, int reset)
{
	struct rq_h2_plan *p = s->p;

	if (!p) {
		map_mark(s->h, sid, bit, reset);
	} else if (p->nlog == RQ_H2_LOG) {
		p->adopt = 0; /* too many: the commit will scan the bytes again */
	} else {
		p->log[p->nlog].sid = sid;
		p->log[p->nlog].bit = (uint8_t)bit;
		p->log[p->nlog++].reset = (uint8_t)reset;
	}
}

/*
 * map_find for the outbound side: when planning, as the map will be once the
 * changes the plan found so far are made.
 */
static int out_find(struct scan *s, uint32_t sid, uint32_t *fl)
{
	uint32_t f = 0;
	int k = map_find(s->h, sid, &f);

	for (int i = 0; s->p && k >= 0 && i < s->p->nlog; i++) {
		const struct rq_h2_mark *m = &s->p->log[i];

		if (m->sid != sid)
			continue;
		f |= m->bit;
		if (m->reset || (f & (S_REQ_END | S_RESP_END)) == (S_REQ_END | S_RESP_END))
			k = -1;
	}
	if (fl)
		*fl = f;
	return k;
}

/* ---- giving up ---- */

static void die(struct scan *s)
{
	s->fr->st = F_DEAD;
	s->h->in.dead = 1;
	atomic_store_explicit(&s->h->in_dead, 1, memory_order_release);
	s->ev->type = RQ_H2_EV_DEAD;
	s->stop = 1;
}

/*
 * Not valid HTTP/2, or more than is tracked. Inbound: the scanner stops.
 * Outbound: no more edits, but frames are still followed (an edit in force
 * must be finished, and writes still name their stream).
 */
static void bad(struct scan *s)
{
	if (!s->out) {
		die(s);
		return;
	}
	s->o->nomore = 1;
	s->fr->blk = 0;
	s->fr->watch = 0;
	s->fr->st = F_SKIP;
}

/* ---- frames ---- */

static void track_last(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;
	int k;

	if (!fr->sid || fr->type == T_PRIORITY)
		return;
	k = s->out ? out_find(s, fr->sid, NULL) : map_find(s->h, fr->sid, NULL);
	if (s->out)
		s->o->last = (uint8_t)(k >= 0 ? k : RQ_H2_CONN);
	else
		s->h->in.last = (uint8_t)(k >= 0 ? k : RQ_H2_CONN);
}

/* The ID the planner would add for the current block, validated; its length or 0. */
static size_t block_id(struct scan *s, uint32_t sid, unsigned slot, char id[REQCTX_ID_MAX])
{
	size_t n = s->idf ? s->idf(s->arg, slot, sid, id) : 0;

	return n && n <= REQCTX_ID_MAX && rq_id_valid(id, n) ? n : 0;
}

/* No new edit may start: the planner gave up, or the connection has one ID. */
static int no_edits_in(struct rq_h2 *h, const struct rq_h2_out *o)
{
	return o->nomore || atomic_load_explicit(&h->in_dead, memory_order_acquire);
}

static int no_edits(struct scan *s)
{
	return no_edits_in(s->h, s->o);
}

/* The field reqctx adds (RFC 7541 6.2.2, new name, no Huffman); returns its length. */
static size_t field_text(char *out, const char *id, size_t len)
{
	size_t n = 0;

	out[n++] = 0x00;
	out[n++] = (char)rq_cfg.hdr_len; /* at most 64: one byte */
	memcpy(out + n, rq_cfg.hdr_lc, rq_cfg.hdr_len);
	n += rq_cfg.hdr_len;
	if (len < 127) {
		out[n++] = (char)len;
	} else { /* 127 or 128: 0x7f and the rest (RFC 7541 5.1) */
		out[n++] = 0x7f;
		out[n++] = (char)(len - 127);
	}
	memcpy(out + n, id, len);
	return n + len;
}

/* A CONTINUATION frame header with END_HEADERS for `len` bytes on stream sid. */
static void cont_header(char *out, size_t len, uint32_t sid)
{
	out[0] = (char)(len >> 16);
	out[1] = (char)(len >> 8);
	out[2] = (char)len;
	out[3] = T_CONT;
	out[4] = FL_END_HEADERS;
	out[5] = (char)(sid >> 24);
	out[6] = (char)(sid >> 16);
	out[7] = (char)(sid >> 8);
	out[8] = (char)sid;
}

static void edit(struct rq_h2_plan *p, uint64_t pos, uint32_t del, uint32_t len, const char *t)
{
	struct rq_h2_edit *e = &p->e[p->n++];

	e->at = (size_t)(pos - p->base);
	e->del = del;
	e->len = len;
	e->text = t;
}

/* Room for one more frame's edits in the plan. */
static int room(const struct rq_h2_plan *p)
{
	return p->n <= RQ_H2_EDITS - 3 && p->ng <= RQ_H2_EDITS - 2 &&
	       p->tlen + RQ_H2_INS_MAX <= RQ_H2_TEXT;
}

/*
 * Planning, at the header of a response block's last frame: if the frame
 * ends in this write, decide at its fragment's end (watch); if not, clear
 * END_HEADERS now and decide the CONTINUATION at the frame's end.
 */
static void last_frame(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;
	struct rq_h2_out *o = s->o;
	struct rq_h2_plan *p = s->p;
	uint64_t fend = fr->hdr_pos + 9 + fr->len;
	struct rq_h2_grp *g;
	char id[REQCTX_ID_MAX];

	if (o->ins_st && o->ins_pos > fr->hdr_pos)
		return; /* this frame already has its edit */
	o->ins_st = 0;
	o->rep_n = 0;
	if (!fr->blk_cand || no_edits(s))
		return;
	if (fend <= s->end) {
		fr->watch = 1;
		return;
	}
	if (fr->hdr_pos + 4 < s->first || s->hp->id_seen ||
	    (s->hp->status && s->hp->status < 200) || !block_id(s, fr->blk_sid, fr->blk_slot, id))
		return;
	g = &p->g[p->ng++];
	memset(g, 0, sizeof(*g));
	g->kind = G_NEW;
	g->rep_pos = fr->hdr_pos + 4;
	g->rep_n = 1;
	g->rep[0] = (uint8_t)(fr->flags & ~FL_END_HEADERS);
	g->ins_st = 2;
	g->ins_pos = fend;
	g->sid = fr->blk_sid;
	g->slot = fr->blk_slot;
	edit(p, g->rep_pos, 1, 1, (const char *)g->rep);
	o->ins_st = 2;
	o->ins_pos = fend;
	o->ins_sid = g->sid;
	o->ins_slot = g->slot;
}

/*
 * Planning, at the end of a watched block (its last frame is wholly in this
 * write): the field goes at the end of the fragment with the frame's length
 * fixed, or, if that frame would outgrow the client's SETTINGS_MAX_FRAME_SIZE
 * (or its length already went out), in a CONTINUATION after the frame.
 */
static void decide(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;
	struct rq_h2_plan *p = s->p;
	uint64_t fend = fr->hdr_pos + 9 + fr->len, fragend = fend - fr->pad;
	uint32_t mfs = atomic_load_explicit(&s->h->peer_mfs, memory_order_relaxed);
	struct rq_h2_grp *g;
	char id[REQCTX_ID_MAX], *t = p->text + p->tlen;
	size_t idlen, flen;

	if (s->hp->err || s->hp->status < 200 || s->hp->id_seen || no_edits(s))
		return;
	idlen = block_id(s, fr->blk_sid, fr->blk_slot, id);
	if (!idlen)
		return;
	flen = 2 + rq_cfg.hdr_len + (idlen < 127 ? 1 : 2) + idlen;
	g = &p->g[p->ng];
	memset(g, 0, sizeof(*g));
	g->kind = G_NEW;
	g->ins_st = 1;
	g->sid = fr->blk_sid;
	g->slot = fr->blk_slot;
	if (fr->hdr_pos >= s->first && fr->len + flen <= mfs) {
		uint32_t len = fr->len + (uint32_t)flen;

		field_text(t, id, idlen);
		g->rep_pos = fr->hdr_pos;
		g->rep_n = 3;
		g->rep[0] = (uint8_t)(len >> 16);
		g->rep[1] = (uint8_t)(len >> 8);
		g->rep[2] = (uint8_t)len;
		g->ins_pos = fragend;
	} else if (fr->hdr_pos + 4 >= s->first) {
		field_text(t + 9, id, idlen);
		cont_header(t, flen, fr->blk_sid);
		flen += 9;
		g->rep_pos = fr->hdr_pos + 4;
		g->rep_n = 1;
		g->rep[0] = (uint8_t)(fr->flags & ~FL_END_HEADERS);
		g->ins_pos = fend;
	} else {
		return; /* the frame's header is already out */
	}
	g->ins = t;
	g->ins_len = (uint16_t)flen;
	p->tlen += flen;
	p->ng++;
	edit(p, g->rep_pos, g->rep_n, g->rep_n, (const char *)g->rep);
	edit(p, g->ins_pos, 0, (uint32_t)flen, t);
	s->o->ins_st = 1; /* in the scratch state: no other edit until the frame is behind */
	s->o->ins_pos = g->ins_pos;
}

/* Planning, at the end of a frame whose END_HEADERS was cleared: the CONTINUATION. */
static void decide_cut(struct scan *s)
{
	struct rq_h2_out *o = s->o;
	struct rq_h2_plan *p = s->p;
	struct rq_h2_grp *g = &p->g[p->ng++];
	char id[REQCTX_ID_MAX], *t = p->text + p->tlen;
	size_t flen = 0, idlen = 0;

	if (!s->hp->err && s->hp->status >= 200 && !s->hp->id_seen && !no_edits(s))
		idlen = block_id(s, o->ins_sid, o->ins_slot, id);
	if (idlen)
		flen = field_text(t + 9, id, idlen);
	cont_header(t, flen, o->ins_sid);
	flen += 9;
	memset(g, 0, sizeof(*g));
	g->kind = G_DECIDE;
	g->ins_st = 1;
	g->ins_pos = o->ins_pos;
	g->ins = t;
	g->ins_len = (uint16_t)flen;
	p->tlen += flen;
	edit(p, g->ins_pos, 0, (uint32_t)flen, t);
	o->ins_st = 0;
}

/* Inbound HEADERS: a new stream (odd, above all before it) gets a slot; others are trailers. */
static void in_block(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;
	struct rq_h2_in *in = &s->h->in;
	int k;

	if (!(fr->sid & 1)) { /* streams a client opens are odd */
		die(s);
		return;
	}
	fr->blk_new = fr->sid > in->max_sid;
	if (fr->blk_new) {
		in->max_sid = fr->sid;
		fr->blk_slot = (uint8_t)map_new(s->h, fr->sid);
		return;
	}
	k = map_find(s->h, fr->sid, NULL); /* trailers */
	fr->blk_slot = (uint8_t)(k >= 0 ? k : RQ_H2_CONN);
}

/* Outbound HEADERS: a candidate for the ID unless pushed, or after the final head (trailers). */
static void out_block(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;
	uint32_t fl = 0;
	int k;

	fr->blk_new = 0;
	fr->blk_cand = 0;
	fr->blk_slot = RQ_H2_CONN;
	if (fr->blk != B_HDR || !(fr->sid & 1))
		return; /* a push promise, or a pushed response: no request of the client's */
	k = out_find(s, fr->sid, &fl);
	if (k >= 0) {
		if (fl & S_RESP_HEAD)
			return; /* trailers */
		fr->blk_slot = (uint8_t)k;
	}
	fr->blk_cand = 1;
}

/*
 * A frame header is complete: checks where the frame may be (RFC 9113 4.3,
 * 6), sets up reading its payload, and opens a header block.
 */
static void hdr_done(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;
	const uint8_t *b = fr->b;
	unsigned padded, pre;

	fr->len = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
	fr->type = b[3];
	fr->flags = b[4];
	fr->sid = ((uint32_t)b[5] << 24 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 8 | b[8]) &
		  0x7fffffffu;
	fr->left = fr->len;
	fr->frag = fr->pad = fr->pre = 0;
	fr->watch = 0;
	fr->n = 0;
	fr->st = F_SKIP;
	if (fr->blk) { /* only the block's CONTINUATION frames may follow */
		if (fr->type != T_CONT || fr->sid != fr->blk_sid ||
		    ++fr->blk_frames > RQ_H2_BLOCK_FRAMES) {
			bad(s);
			return;
		}
		fr->frag = fr->len;
		fr->st = F_FRAG;
		goto block;
	}
	switch (fr->type) {
	case T_HEADERS:
	case T_PUSH:
		if (!fr->sid || (fr->type == T_PUSH && !s->out)) { /* clients never push */
			bad(s);
			return;
		}
		padded = fr->flags & FL_PADDED ? 1 : 0;
		pre = fr->type == T_PUSH ? 4 : fr->flags & FL_PRIORITY ? 5 : 0;
		if (fr->len < padded + pre) {
			bad(s);
			return;
		}
		fr->pre = (uint8_t)pre;
		fr->frag = fr->len - padded - pre;
		fr->st = padded ? F_PADLEN : F_PREFIX;
		fr->blk = fr->type == T_HEADERS ? B_HDR : B_PUSH;
		fr->blk_sid = fr->sid;
		fr->blk_frames = 1;
		fr->blk_bytes = 0;
		fr->blk_es = fr->type == T_HEADERS && (fr->flags & FL_END_STREAM);
		rq_hp_begin(s->hp);
		if (s->out)
			out_block(s);
		else
			in_block(s);
		if (fr->st == F_DEAD)
			return;
		goto block;
	case T_SETTINGS:
		if (fr->sid || ((fr->flags & FL_ACK) ? fr->len != 0 : fr->len % 6 != 0) ||
		    (!s->out && !(fr->flags & FL_ACK) && ++fr->setrun > RQ_H2_SETTINGS_RUN)) {
			bad(s);
			return;
		}
		if (!(fr->flags & FL_ACK))
			fr->st = F_SET;
		break;
	case T_CONT: /* with no block open */
		bad(s);
		return;
	case T_DATA:
	case T_RST:
		if (!fr->sid) {
			bad(s);
			return;
		}
		if (fr->type == T_RST) {
			track_last(s); /* the reset stream, whose slot keeps its ID until reused */
			if (s->out)
				out_mark(s, fr->sid, 0, 1);
			else
				map_mark(s->h, fr->sid, 0, 1);
			return;
		}
		break;
	}
	track_last(s);
	return;
block:
	track_last(s);
	if (s->p && (fr->flags & FL_END_HEADERS) && fr->blk == B_HDR)
		last_frame(s);
}

/* The end of a fragment; of the block if the frame has END_HEADERS. */
static void frag_end(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;
	struct rq_hpack *hp = s->hp;

	if (!(fr->flags & FL_END_HEADERS))
		return;
	fr->blk = 0;
	fr->setrun = 0;
	if (rq_hp_end(hp) < 0) {
		if (!s->out) {
			die(s);
			return;
		}
		s->o->nomore = 1;
	}
	if (!s->out) {
		if (fr->blk_es)
			map_mark(s->h, fr->blk_sid, S_REQ_END, 0);
		if (fr->blk_new) {
			s->ev->type = RQ_H2_EV_REQ;
			s->ev->sid = fr->blk_sid;
			s->ev->slot = fr->blk_slot;
			s->ev->id_len = hp->id_have ? hp->id_len : 0;
			s->ev->id = hp->id;
			s->stop = 1;
		}
		return;
	}
	if (fr->watch) {
		fr->watch = 0;
		decide(s);
	}
	if (fr->blk_cand && !hp->err && hp->status >= 200)
		out_mark(s, fr->blk_sid, S_RESP_HEAD, 0);
	if (fr->blk_es)
		out_mark(s, fr->blk_sid, S_RESP_END, 0);
}

static void frame_end(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;

	if (s->p && s->o->ins_st == 2 && s->o->ins_pos == fr->pos)
		decide_cut(s);
	if (fr->type == T_DATA && (fr->flags & FL_END_STREAM)) {
		if (s->out)
			out_mark(s, fr->sid, S_RESP_END, 0);
		else
			map_mark(s->h, fr->sid, S_REQ_END, 0);
	}
	fr->st = F_HDR;
	fr->n = 0;
}

static void setting(struct scan *s, unsigned id, uint32_t v)
{
	struct rq_h2 *h = s->h;

	if (s->out) {
		if (id != SET_HEADER_TABLE_SIZE)
			return;
		if (s->p) {
			if (v > s->p->hts)
				s->p->hts = v;
		} else if (v > atomic_load_explicit(&h->own_hts, memory_order_relaxed)) {
			atomic_store_explicit(&h->own_hts, v, memory_order_release);
		}
		return;
	}
	if (id == SET_HEADER_TABLE_SIZE &&
	    v > atomic_load_explicit(&h->peer_hts, memory_order_relaxed))
		atomic_store_explicit(&h->peer_hts, v, memory_order_release);
	else if (id == SET_MAX_FRAME_SIZE) {
		if (v < MFS_MIN || v > MFS_MAX)
			bad(s);
		else
			atomic_store_explicit(&h->peer_mfs, v, memory_order_release);
	}
}

/* Takes the zero-length steps that follow a state's last byte. */
static void settle(struct scan *s)
{
	struct rq_h2_fr *fr = s->fr;

	for (;;) {
		switch (fr->st) {
		case F_PREFIX:
			if (fr->pre)
				return;
			fr->st = F_FRAG;
			continue;
		case F_FRAG:
			if (fr->frag)
				return;
			fr->st = F_PAD;
			frag_end(s);
			if (fr->st == F_DEAD)
				return;
			continue;
		case F_PAD:
		case F_SKIP:
		case F_SET:
			if (fr->left)
				return;
			frame_end(s);
			return;
		default:
			return;
		}
	}
}

static void frag_bytes(struct scan *s, const uint8_t *b, size_t n)
{
	struct rq_h2_fr *fr = s->fr;

	if ((uint64_t)fr->blk_bytes + n > RQ_H2_BLOCK_MAX) {
		bad(s);
		return;
	}
	fr->blk_bytes += (uint32_t)n;
	if (rq_hp_feed(s->hp, s->vals, b, n) < 0) {
		if (!s->out)
			die(s);
		else
			s->o->nomore = 1;
	}
}

static size_t feed(struct scan *s, const uint8_t *b, size_t n)
{
	struct rq_h2_fr *fr = s->fr;
	size_t i = 0;

	while (i < n && !s->stop) {
		size_t avail = n - i, take;

		switch (fr->st) {
		case F_DEAD:
			return n;
		case F_PRE:
			if ((unsigned char)RQ_H2_PREFACE[fr->n] != b[i]) {
				die(s);
				return n;
			}
			i++;
			fr->pos++;
			if (++fr->n == RQ_H2_PREFACE_LEN) {
				fr->st = F_HDR;
				fr->n = 0;
			}
			continue;
		case F_HDR:
			if (fr->n == 0) {
				if (s->p && !room(s->p)) {
					s->stop = 1; /* the plan is full: the rest in the next one */
					continue;
				}
				fr->hdr_pos = fr->pos;
			}
			take = avail < 9u - fr->n ? avail : 9u - fr->n;
			memcpy(fr->b + fr->n, b + i, take);
			fr->n = (uint8_t)(fr->n + take);
			i += take;
			fr->pos += take;
			if (fr->n == 9)
				hdr_done(s);
			break;
		case F_PADLEN:
			fr->pad = b[i++];
			fr->pos++;
			fr->left--;
			if (fr->pad > fr->frag) {
				bad(s);
				break;
			}
			fr->frag -= fr->pad;
			fr->st = F_PREFIX;
			break;
		case F_PREFIX:
			take = avail < fr->pre ? avail : fr->pre;
			fr->pre -= (uint8_t)take;
			goto skip;
		case F_FRAG:
			take = avail < fr->frag ? avail : fr->frag;
			fr->frag -= (uint32_t)take;
			frag_bytes(s, b + i, take);
			if (fr->st == F_DEAD)
				return n;
			goto skip;
		case F_SET:
			fr->b[fr->n++] = b[i++];
			fr->pos++;
			fr->left--;
			if (fr->n == 6) {
				fr->n = 0;
				setting(s, (unsigned)fr->b[0] << 8 | fr->b[1],
					(uint32_t)fr->b[2] << 24 | (uint32_t)fr->b[3] << 16 |
					(uint32_t)fr->b[4] << 8 | fr->b[5]);
				if (fr->st == F_DEAD)
					return n;
			}
			break;
		default: /* F_PAD, F_SKIP */
			take = avail < fr->left ? avail : fr->left;
		skip:
			i += take;
			fr->pos += take;
			fr->left -= (uint32_t)take;
			break;
		}
		if (fr->st == F_DEAD)
			return n;
		settle(s);
	}
	return i;
}

/* ---- the connection ---- */

void rq_h2_init(struct rq_h2 *h, int mode)
{
	memset(h, 0, offsetof(struct rq_h2, st));
	for (int i = 0; i < RQ_H2_STREAMS; i++)
		atomic_store_explicit(slotw(h, i), 0, memory_order_relaxed);
	h->in.fr.st = F_PRE;
	h->out.fr.st = F_HDR;
	rq_hp_init(&h->in.hp, RQ_HP_DEFAULT, RQ_HP_DEFAULT);
	rq_hp_init(&h->out.hp, RQ_HP_DEFAULT, RQ_HP_DEFAULT);
	rq_hp_vals_init(&h->in.vals);
	h->in.last = h->out.last = RQ_H2_NONE;
	atomic_store_explicit(&h->peer_hts, RQ_HP_DEFAULT, memory_order_relaxed);
	atomic_store_explicit(&h->own_hts, RQ_HP_DEFAULT, memory_order_relaxed);
	atomic_store_explicit(&h->peer_mfs, MFS_MIN, memory_order_relaxed);
	atomic_store_explicit(&h->in_dead, 0, memory_order_relaxed);
	if (!rq_cfg.echo)
		h->out.nomore = 1;
	if (mode == RQ_H2_UPGRADED) {
		h->upgraded = 1;
		h->in.max_sid = 1;
		atomic_store_explicit(slotw(h, 0), mk(1, S_USED | S_REQ_END), memory_order_release);
	}
}

int rq_h2_preface(uint8_t *matched, const char *buf, size_t n)
{
	for (size_t i = 0; i < n && *matched < RQ_H2_PREFACE_LEN; i++) {
		if (buf[i] != RQ_H2_PREFACE[*matched])
			return -1;
		(*matched)++;
	}
	return *matched == RQ_H2_PREFACE_LEN;
}

size_t rq_h2_read(struct rq_h2 *h, const char *buf, size_t n, struct rq_h2_ev *ev)
{
	struct scan s = { .h = h, .fr = &h->in.fr, .hp = &h->in.hp, .vals = &h->in.vals, .ev = ev };
	size_t used;

	ev->type = RQ_H2_EV_NONE;
	if (h->in.fr.st == F_DEAD)
		return n;
	h->in.hp.limit = atomic_load_explicit(&h->own_hts, memory_order_acquire);
	used = feed(&s, (const uint8_t *)buf, n);
	return ev->type == RQ_H2_EV_DEAD ? n : used;
}

static size_t iov_sum(const struct iovec *iov, int iovcnt)
{
	size_t t = 0;

	for (int i = 0; i < iovcnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* Feeds caller bytes [from, to) of the iovecs to s. Returns how far it got. */
static size_t feed_iov(struct scan *s, const struct iovec *iov, int iovcnt, size_t from, size_t to)
{
	size_t pos = 0;

	for (int i = 0; i < iovcnt && pos < to; i++) {
		size_t len = iov[i].iov_len, a = from > pos ? from - pos : 0;
		size_t z = to - pos < len ? to - pos : len;

		if (a < z) {
			size_t used = feed(s, (const uint8_t *)iov[i].iov_base + a, z - a);

			if (s->stop)
				return pos + a + used;
		}
		pos += len;
	}
	return to;
}

static void out_limits(struct rq_h2 *h, struct rq_hpack *hp)
{
	hp->limit = h->upgraded ? UINT32_MAX
		: atomic_load_explicit(&h->peer_hts, memory_order_acquire);
}

int rq_h2_plan(struct rq_h2 *h, const struct iovec *iov, int iovcnt, rq_h2_id_fn id,
	       void *arg, struct rq_h2_plan *p)
{
	struct rq_h2_out *o = &h->out;
	struct scan s = { .h = h, .out = 1, .p = p, .idf = id, .arg = arg };
	size_t skip = o->skip;

	p->total = iov_sum(iov, iovcnt);
	p->covered = p->total;
	p->wire = p->total;
	p->base = o->fr.pos - skip;
	p->n = p->ng = 0;
	p->tlen = 0;
	p->adopt = 0;
	p->nlog = 0;
	p->hts = 0;
	if (o->fr.st == F_DEAD || (!o->ins_st && !o->rep_n && !skip && no_edits_in(h, o)))
		return 0; /* nothing to add: the commit only follows the frames */
	if (skip > p->total) {
		p->covered = 0; /* cannot happen for a caller that resends what it was told */
		p->wire = 0;
		return 0;
	}
	p->scratch = *o;
	p->adopt = 1;
	o = &p->scratch;
	s.fr = &o->fr;
	s.hp = &o->hp;
	s.o = o;
	s.first = o->fr.pos;
	s.end = p->base + p->total;
	out_limits(h, s.hp);
	/* what is already decided: the dropped bytes, the rest of a replacement, an insertion */
	if (skip)
		edit(p, p->base, (uint32_t)skip, 0, NULL);
	if (o->rep_n && o->rep_pos + o->rep_n > o->fr.pos) {
		uint64_t a = o->fr.pos, z = o->rep_pos + o->rep_n;

		if (z > s.end)
			z = s.end;
		if (z > a)
			edit(p, a, (uint32_t)(z - a), (uint32_t)(z - a),
			     (const char *)h->out.rep + (a - o->rep_pos));
	}
	if (o->ins_st == 1 && o->ins_pos <= s.end)
		edit(p, o->ins_pos, 0, o->ins_len - o->ins_sent, h->out.ins + o->ins_sent);
	p->covered = feed_iov(&s, iov, iovcnt, skip, p->total);
	p->wire = p->covered;
	for (int i = 0; i < p->n; i++)
		p->wire = p->wire + p->e[i].len - p->e[i].del;
	return p->n;
}

int rq_h2_wire(const struct rq_h2_plan *p, const struct iovec *iov, int iovcnt,
	       struct iovec *out, int max)
{
	int n = 0, k = 0, i = 0;
	size_t pos = 0, vpos = 0; /* caller offset; start of iov[i] */

	while (pos < p->covered || k < p->n) {
		size_t stop = k < p->n ? p->e[k].at : p->covered;

		while (pos < stop) { /* caller bytes up to the next edit */
			size_t in = pos - vpos, take;

			if (in >= iov[i].iov_len) {
				vpos += iov[i].iov_len;
				i++;
				continue;
			}
			take = iov[i].iov_len - in;
			if (take > stop - pos)
				take = stop - pos;
			if (n == max)
				return -1;
			out[n].iov_base = (char *)iov[i].iov_base + in;
			out[n++].iov_len = take;
			pos += take;
		}
		if (k == p->n)
			break;
		if (p->e[k].len) {
			if (n == max)
				return -1;
			out[n].iov_base = (void *)p->e[k].text;
			out[n++].iov_len = p->e[k].len;
		}
		pos += p->e[k].del;
		k++;
	}
	(void)iovcnt;
	return n;
}

void rq_h2_map(const struct rq_h2_plan *p, size_t wire, size_t *caller, size_t *ins)
{
	size_t pos = 0;

	*ins = 0;
	for (int k = 0; k <= p->n; k++) {
		size_t stop = k < p->n ? p->e[k].at : p->covered, take = stop - pos;
		const struct rq_h2_edit *e = &p->e[k];

		if (take) {
			if (!wire)
				break;
			if (take > wire)
				take = wire;
			wire -= take;
			pos += take;
			*ins = 0;
			if (pos < stop)
				break;
		}
		if (k == p->n)
			break;
		if (e->del && !e->len) { /* dropped bytes: already out */
			pos += e->del;
			continue;
		}
		if (!wire)
			break;
		take = e->len < wire ? e->len : wire;
		wire -= take;
		if (e->del) { /* a replacement: byte for byte */
			pos += take;
			*ins = 0;
		} else {
			*ins = take;
		}
		if (take < e->len)
			break;
	}
	*caller = pos;
}

/* The insertion the plan puts at caller offset c, or NULL. */
static const struct rq_h2_edit *ins_at(const struct rq_h2_plan *p, size_t c)
{
	for (int k = 0; k < p->n; k++)
		if (!p->e[k].del && p->e[k].at == c)
			return &p->e[k];
	return NULL;
}

/*
 * Keeps insertion g in force or not, the write having reached stream
 * position E with x bytes of an insertion there. An undecided one that the
 * write did not reach stays undecided.
 */
static void keep_ins(struct rq_h2_out *o, const struct rq_h2_grp *g, uint64_t E, size_t x)
{
	if (g->ins_pos > E && g->kind == G_DECIDE)
		return;
	if (g->ins_pos < E || (g->ins_pos == E && x >= g->ins_len)) {
		o->ins_st = 0;
		return;
	}
	memcpy(o->ins, g->ins, g->ins_len);
	o->ins_len = g->ins_len;
	o->ins_sent = (uint16_t)(g->ins_pos == E ? x : 0);
	o->ins_pos = g->ins_pos;
	o->ins_st = 1;
}

size_t rq_h2_commit(struct rq_h2 *h, const struct rq_h2_plan *p, const struct iovec *iov,
		    int iovcnt, size_t c, size_t x, int hold)
{
	struct rq_h2_out *o = &h->out;
	struct scan s = { .h = h, .fr = &o->fr, .hp = &o->hp, .out = 1, .o = o };
	size_t skip = o->skip, reported = c;
	const struct rq_h2_edit *last;
	uint64_t E;

	if (c > p->covered)
		c = p->covered;
	if (c < skip || o->fr.st == F_DEAD)
		return c < skip ? 0 : c;
	if (c == p->covered && p->adopt) {
		/* all the plan scanned went out: its state is the state */
		for (int k = 0; k < p->nlog; k++)
			map_mark(h, p->log[k].sid, p->log[k].bit, p->log[k].reset);
		if (p->hts > atomic_load_explicit(&h->own_hts, memory_order_relaxed))
			atomic_store_explicit(&h->own_hts, p->hts, memory_order_release);
		o->fr = p->scratch.fr;
		o->fr.watch = 0;
		o->hp = p->scratch.hp;
		o->last = p->scratch.last;
		o->nomore = p->scratch.nomore;
	} else {
		out_limits(h, &o->hp);
		feed_iov(&s, iov, iovcnt, skip, c);
	}
	o->skip = 0;
	E = p->base + c;
	if (o->rep_n && o->rep_pos + o->rep_n <= E)
		o->rep_n = 0;
	if (o->ins_st == 1) {
		if (o->ins_pos < E)
			o->ins_st = 0;
		else if (o->ins_pos == E && (o->ins_sent += (uint16_t)x) >= o->ins_len)
			o->ins_st = 0;
	}
	for (int k = 0; k < p->ng; k++) {
		const struct rq_h2_grp *g = &p->g[k];

		if (g->kind == G_DECIDE) {
			if (o->ins_st == 2 && o->ins_pos == g->ins_pos)
				keep_ins(o, g, E, x);
			continue;
		}
		if (E <= g->rep_pos)
			break; /* this one and the later ones never went out */
		o->rep_pos = g->rep_pos;
		o->rep_n = g->rep_pos + g->rep_n > E ? g->rep_n : 0;
		memcpy(o->rep, g->rep, sizeof(o->rep));
		o->ins_sid = g->sid;
		o->ins_slot = g->slot;
		if (g->ins_st == 2) {
			o->ins_st = 2;
			o->ins_pos = g->ins_pos;
		} else {
			keep_ins(o, g, E, x);
		}
	}
	last = ins_at(p, c);
	if (hold && c && c == p->total && c == p->covered && last && x < last->len) {
		o->skip = 1; /* its last byte is out: the caller sends it again, we drop it */
		reported = c - 1;
	}
	return reported;
}

int rq_h2_opaque(struct rq_h2 *h, uint64_t n)
{
	struct rq_h2_out *o = &h->out;
	struct rq_h2_fr *fr = &o->fr;
	struct scan s = { .h = h, .fr = fr, .hp = &o->hp, .out = 1, .o = o };

	if (!n || fr->st == F_DEAD)
		return 0;
	if (o->skip || (o->ins_st && o->ins_pos == fr->pos))
		return -EAGAIN; /* an insertion must go out first */
	if (fr->st == F_SKIP && fr->type == T_DATA && fr->left >= n) {
		fr->left -= (uint32_t)n;
		fr->pos += n;
		settle(&s);
		return 0;
	}
	rq_h2_out_kill(h);
	return -EINVAL;
}

void rq_h2_in_kill(struct rq_h2 *h)
{
	h->in.fr.st = F_DEAD;
	h->in.dead = 1;
	atomic_store_explicit(&h->in_dead, 1, memory_order_release);
}

void rq_h2_out_kill(struct rq_h2 *h)
{
	h->out.nomore = 1;
	if (!h->out.ins_st && !h->out.rep_n && !h->out.skip)
		h->out.fr.st = F_DEAD;
}
