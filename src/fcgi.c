#include "fcgi.h"

#include <string.h>

#include "config.h"
#include "id.h"

enum { R_HDR, R_BODY, R_PAD, R_DEAD = 0xff };

enum { P_NLEN, P_NLEN4, P_VLEN, P_VLEN4, P_NAME, P_VALUE };

/* The shared scanner's events: the public ones, and a record boundary (outbound). */
#define E_BOUNDARY 16

/* Byte i of the ID param's name: "HTTP_", then the header the CGI way. */
static unsigned char name_at(unsigned i)
{
	unsigned char c;

	if (i < 5)
		return (unsigned char)"HTTP_"[i];
	c = (unsigned char)rq_cfg.hdr[i - 5];
	if (c == '-')
		return '_';
	return (c >= 'a' && c <= 'z') ? c - 32 : c;
}

static size_t name_len(void)
{
	return 5 + rq_cfg.hdr_len;
}

static void pairs_reset(struct rq_fcgi_pairs *p)
{
	memset(p, 0, sizeof(*p));
	p->st = P_NLEN;
}

/* The value of one pair ended. */
static void value_done(struct rq_fcgi_req *r)
{
	struct rq_fcgi_pairs *p = &r->pp;

	if (p->is_id && !p->xr_bad && p->xr_len > 0) {
		r->xr_have = 1;
		r->id_len = p->xr_len;
	}
	p->is_id = 0;
	p->st = P_NLEN;
}

/* The name of one pair ended: the value follows. */
static void name_done(struct rq_fcgi_req *r)
{
	struct rq_fcgi_pairs *p = &r->pp;

	p->is_id = p->match && !r->xr_have;
	p->xr_st = p->xr_bad = p->xr_len = 0;
	p->left = p->vlen;
	p->st = P_VALUE;
	if (!p->left)
		value_done(r);
}

/* Both lengths are known: the name follows. */
static void lengths_done(struct rq_fcgi_req *r)
{
	struct rq_fcgi_pairs *p = &r->pp;

	p->match = p->nlen == name_len();
	p->left = p->nlen;
	p->st = P_NAME;
	if (!p->left)
		name_done(r);
}

/* One byte of the ID param's value: trimmed like an HTTP header value, kept if valid. */
static void id_byte(struct rq_fcgi_pairs *p, char *xr, unsigned char c)
{
	if (c == ' ' || c == '\t') {
		if (p->xr_st == 1)
			p->xr_st = 2;
	} else if (p->xr_st == 2 || !rq_id_char(c) || p->xr_len == REQCTX_ID_MAX) {
		p->xr_bad = 1;
	} else {
		p->xr_st = 1;
		if (xr)
			xr[p->xr_len] = (char)c;
		p->xr_len++;
	}
}

/*
 * Feeds n bytes of request r's PARAMS stream. xr, if not NULL, receives the
 * ID param's value (inbound); outbound only its validity is kept.
 */
static void pairs_feed(struct rq_fcgi_req *r, char *xr, const unsigned char *b, size_t n)
{
	struct rq_fcgi_pairs *p = &r->pp;
	size_t i = 0;

	while (i < n) {
		unsigned char c = b[i];
		size_t take;

		switch (p->st) {
		case P_NLEN:
		case P_VLEN: {
			uint32_t *len = p->st == P_NLEN ? &p->nlen : &p->vlen;

			i++;
			if (c < 128) {
				*len = c;
				if (p->st == P_NLEN)
					p->st = P_VLEN;
				else
					lengths_done(r);
			} else {
				*len = c & 0x7f;
				p->nb = 1;
				p->st++; /* P_NLEN4 or P_VLEN4 */
			}
			break;
		}
		case P_NLEN4:
		case P_VLEN4: {
			uint32_t *len = p->st == P_NLEN4 ? &p->nlen : &p->vlen;

			i++;
			*len = *len << 8 | c;
			if (++p->nb < 4)
				break;
			p->nb = 0;
			if (p->st == P_NLEN4)
				p->st = P_VLEN;
			else
				lengths_done(r);
			break;
		}
		case P_NAME:
			take = n - i < p->left ? n - i : p->left;
			for (size_t k = 0; p->match && k < take; k++)
				if (b[i + k] != name_at(p->nlen - p->left + (uint32_t)k))
					p->match = 0;
			i += take;
			p->left -= (uint32_t)take;
			if (!p->left)
				name_done(r);
			break;
		case P_VALUE:
			take = n - i < p->left ? n - i : p->left;
			if (p->is_id)
				for (size_t k = 0; k < take && !p->xr_bad; k++)
					id_byte(p, xr, b[i + k]);
			i += take;
			p->left -= (uint32_t)take;
			if (!p->left)
				value_done(r);
			break;
		}
	}
}

static int find(const struct rq_fcgi *s, unsigned rid)
{
	for (int k = 0; k < RQ_FCGI_REQS; k++)
		if (s->req[k].rid == rid)
			return k;
	return -1;
}

/* The entry for a request beginning: its requestId's, a free one, else the oldest. */
static int take_entry(struct rq_fcgi *s, unsigned rid)
{
	int k = find(s, rid), old = 0;

	if (k >= 0)
		return k;
	for (k = 0; k < RQ_FCGI_REQS; k++) {
		if (!s->req[k].rid)
			return k;
		if (s->req[k].age < s->req[old].age)
			old = k;
	}
	return old;
}

/* Handles a record header that was just read. Returns an event or 0. */
static int header(struct rq_fcgi *s)
{
	const uint8_t *h = s->hdr;
	unsigned type = h[1], rid = (unsigned)h[2] << 8 | h[3];
	unsigned clen = (unsigned)h[4] << 8 | h[5];
	struct rq_fcgi_req *r;
	int k;

	if (h[0] != RQ_FCGI_VERSION || (!s->begins && type != RQ_FCGI_BEGIN_REQUEST))
		return RQ_FCGI_EV_DEAD;
	s->type = (uint8_t)type;
	s->left = (uint16_t)clen;
	s->pad = h[6];
	s->rec = -1;
	s->st = clen ? R_BODY : h[6] ? R_PAD : R_HDR;
	switch (type) {
	case RQ_FCGI_BEGIN_REQUEST:
		if (clen != 8 || !rid)
			return RQ_FCGI_EV_DEAD;
		k = take_entry(s, rid);
		r = &s->req[k];
		memset(r, 0, sizeof(*r));
		r->rid = (uint16_t)rid;
		r->open = 1;
		r->age = ++s->begins;
		pairs_reset(&r->pp);
		s->cur = (int8_t)k;
		return RQ_FCGI_EV_BEGIN;
	case RQ_FCGI_PARAMS:
	case RQ_FCGI_STDIN:
	case RQ_FCGI_DATA:
	case RQ_FCGI_ABORT_REQUEST:
		if (!rid)
			return RQ_FCGI_EV_DEAD;
		if ((k = find(s, rid)) < 0)
			return 0; /* not a request we track: skipped */
		r = &s->req[k];
		if (type == RQ_FCGI_PARAMS && r->open) {
			if (!clen) { /* the stream ends: it must end between pairs */
				if (r->pp.st != P_NLEN)
					return RQ_FCGI_EV_DEAD;
				r->open = 0;
				s->cur = (int8_t)k;
				return RQ_FCGI_EV_PARAMS;
			}
			s->rec = (int8_t)k;
		}
		if (k != s->cur) {
			s->cur = (int8_t)k;
			return RQ_FCGI_EV_RECORD;
		}
		return 0;
	default:
		return 0; /* management records, server-side types, unknown types: skipped */
	}
}

/*
 * The record scanner both directions share. Stops after each event; with
 * `bounds`, also at every record boundary (E_BOUNDARY). Returns the bytes
 * consumed.
 */
static size_t feed(struct rq_fcgi *s, char (*xr)[REQCTX_ID_MAX], const char *buf, size_t n,
		   int *ev, int bounds)
{
	const unsigned char *b = (const unsigned char *)buf;
	size_t i = 0;

	*ev = RQ_FCGI_EV_NONE;
	while (i < n) {
		size_t take;
		int e;

		switch (s->st) {
		case R_DEAD:
			return n;
		case R_HDR:
			take = (size_t)(8 - s->hlen) < n - i ? (size_t)(8 - s->hlen) : n - i;
			memcpy(s->hdr + s->hlen, b + i, take);
			s->hlen = (uint8_t)(s->hlen + take);
			i += take;
			if (s->hlen < 8)
				return i;
			s->hlen = 0;
			e = header(s);
			if (e == RQ_FCGI_EV_DEAD) {
				s->st = R_DEAD;
				*ev = RQ_FCGI_EV_DEAD;
				return n;
			}
			if (!e && bounds && s->st == R_HDR)
				e = E_BOUNDARY;
			if (e) {
				*ev = e;
				return i;
			}
			break;
		case R_BODY:
			take = s->left < n - i ? s->left : n - i;
			if (s->rec >= 0)
				pairs_feed(&s->req[s->rec], xr ? xr[s->rec] : NULL, b + i, take);
			s->left = (uint16_t)(s->left - take);
			i += take;
			if (s->left)
				return i;
			s->st = s->pad ? R_PAD : R_HDR;
			if (bounds && s->st == R_HDR) {
				*ev = E_BOUNDARY;
				return i;
			}
			break;
		case R_PAD:
			take = s->pad < n - i ? s->pad : n - i;
			s->pad = (uint8_t)(s->pad - take);
			i += take;
			if (s->pad)
				return i;
			s->st = R_HDR;
			if (bounds) {
				*ev = E_BOUNDARY;
				return i;
			}
			break;
		}
	}
	return n;
}

static void scan_init(struct rq_fcgi *s)
{
	memset(s, 0, sizeof(*s));
	s->st = R_HDR;
	s->rec = s->cur = -1;
}

void rq_fcgi_in_init(struct rq_fcgi_in *s)
{
	scan_init(&s->s);
}

size_t rq_fcgi_in_feed(struct rq_fcgi_in *s, const char *buf, size_t n, enum rq_fcgi_ev *ev)
{
	int e;
	size_t used = feed(&s->s, s->xr, buf, n, &e, 0);

	*ev = (enum rq_fcgi_ev)e;
	return used;
}

/* ---- outbound ---- */

void rq_fcgi_out_init(struct rq_fcgi_out *o)
{
	scan_init(&o->s);
	o->pend_len = o->pend_sent = 0;
}

/* A position in the caller's iovecs. */
struct cur {
	int i;
	size_t off;
};

/* Copies up to 8 bytes from c into h without moving c; returns how many. */
static size_t peek8(const struct iovec *iov, int iovcnt, struct cur c, uint8_t h[8])
{
	size_t got = 0;

	for (int i = c.i; i < iovcnt && got < 8; i++) {
		size_t off = i == c.i ? c.off : 0, len = iov[i].iov_len - off;
		size_t take = len < 8 - got ? len : 8 - got;

		if (take) /* an empty iovec may have a NULL base */
			memcpy(h + got, (const char *)iov[i].iov_base + off, take);
		got += take;
	}
	return got;
}

/*
 * The entry that wants our param before the record whose header is h: the
 * empty PARAMS record of a tracked request whose stream is between pairs and
 * holds no valid ID, not yet given one. Returns the entry or -1.
 */
static int wants(const struct rq_fcgi *s, const uint8_t h[8])
{
	int k;

	if (h[0] != RQ_FCGI_VERSION || h[1] != RQ_FCGI_PARAMS || h[4] || h[5])
		return -1;
	k = find(s, (unsigned)h[2] << 8 | h[3]);
	if (k < 0 || !s->req[k].rid)
		return -1;
	if (!s->req[k].open || s->req[k].xr_have || s->req[k].ins || s->req[k].pp.st != P_NLEN)
		return -1;
	return k;
}

/* Renders the PARAMS record carrying the ID for requestId rid. Returns 0 or -1. */
static int render(unsigned rid, rq_fcgi_id_fn id, void *arg, struct rq_fcgi_ins *in)
{
	char v[REQCTX_ID_MAX];
	size_t vl = 0, nl = name_len(), clen, pad, o = 0;
	uint8_t *t = (uint8_t *)in->text;

	if (!id || id(arg, rid, v, &vl) < 0 || !rq_id_valid(v, vl))
		return -1;
	clen = 1 + (vl < 128 ? 1 : 4) + nl + vl;
	pad = (8 - clen % 8) % 8;
	t[o++] = RQ_FCGI_VERSION;
	t[o++] = RQ_FCGI_PARAMS;
	t[o++] = (uint8_t)(rid >> 8);
	t[o++] = (uint8_t)rid;
	t[o++] = (uint8_t)(clen >> 8);
	t[o++] = (uint8_t)clen;
	t[o++] = (uint8_t)pad;
	t[o++] = 0;
	t[o++] = (uint8_t)nl;
	if (vl < 128) {
		t[o++] = (uint8_t)vl;
	} else {
		t[o++] = 0x80;
		t[o++] = 0;
		t[o++] = 0;
		t[o++] = (uint8_t)vl;
	}
	for (size_t i = 0; i < nl; i++)
		t[o++] = name_at((unsigned)i);
	memcpy(t + o, v, vl);
	o += vl;
	memset(t + o, 0, pad);
	o += pad;
	in->len = (uint16_t)o;
	in->off = 0;
	in->rid = (uint16_t)rid;
	return 0;
}

int rq_fcgi_out_plan(const struct rq_fcgi_out *o, const struct iovec *iov, int iovcnt,
		     rq_fcgi_id_fn id, void *arg, struct rq_fcgi_plan *pl)
{
	struct rq_fcgi *s = &pl->after;
	struct cur c = { 0, 0 };
	size_t pos = 0, total = 0;
	int n = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	pl->total = pl->upto = total;
	*s = o->s;
	if (o->pend_len) { /* the rest of a record cut short goes out first */
		struct rq_fcgi_ins *in = &pl->ins[n++];

		in->at = 0;
		in->off = o->pend_sent;
		in->len = o->pend_len;
		in->rid = 0;
		memcpy(in->text, o->pend, o->pend_len);
	}
	for (;;) {
		int ev, k;
		uint8_t h[8];
		size_t used;

		if (rq_fcgi_dead(s))
			break;
		if (s->st == R_HDR && s->hlen == 0 && peek8(iov, iovcnt, c, h) == 8 &&
		    (k = wants(s, h)) >= 0) {
			if (n == RQ_FCGI_PLAN_MAX) {
				pl->upto = pos; /* no room: the next write plans it */
				break;
			}
			if (render(s->req[k].rid, id, arg, &pl->ins[n]) == 0)
				pl->ins[n++].at = pos;
			s->req[k].ins = 1; /* decided for this write, either way */
		}
		while (c.i < iovcnt && c.off == iov[c.i].iov_len) {
			c.i++;
			c.off = 0;
		}
		if (c.i == iovcnt)
			break;
		used = feed(s, NULL, (const char *)iov[c.i].iov_base + c.off,
			    iov[c.i].iov_len - c.off, &ev, 1);
		c.off += used;
		pos += used;
	}
	pl->n = n;
	return n;
}

int rq_fcgi_out_iov(const struct rq_fcgi_plan *pl, const struct iovec *iov, int iovcnt,
		    struct iovec *out, int max, size_t *bytes)
{
	size_t pos = 0, sum = 0;
	int m = 0, k = 0;

	for (int i = 0; i < iovcnt && pos < pl->upto; i++) {
		const char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len, off = 0;

		if (len > pl->upto - pos)
			len = pl->upto - pos;
		for (;;) {
			size_t next = k < pl->n && pl->ins[k].at <= pos + len ? pl->ins[k].at - pos : len;

			if (next > off) {
				if (m == max)
					goto out;
				out[m].iov_base = (void *)(b + off);
				out[m++].iov_len = next - off;
				sum += next - off;
				off = next;
			}
			if (!(k < pl->n && pl->ins[k].at == pos + off))
				break;
			if (m == max)
				goto out;
			out[m].iov_base = (void *)(pl->ins[k].text + pl->ins[k].off);
			out[m++].iov_len = (size_t)(pl->ins[k].len - pl->ins[k].off);
			sum += (size_t)(pl->ins[k].len - pl->ins[k].off);
			k++;
		}
		pos += len;
	}
out:
	*bytes = sum;
	return m;
}

/* Feeds caller bytes [from, to) of the write to the scanner. */
static void advance(struct rq_fcgi *s, const struct iovec *iov, int iovcnt, size_t from,
		    size_t to)
{
	size_t pos = 0;

	for (int i = 0; i < iovcnt && pos < to; i++) {
		size_t len = iov[i].iov_len, a = from > pos ? from - pos : 0;
		size_t z = to - pos < len ? to - pos : len;

		while (a < z) {
			int ev;

			a += feed(s, NULL, (const char *)iov[i].iov_base + a, z - a, &ev, 0);
		}
		pos += len;
	}
}

size_t rq_fcgi_out_commit(struct rq_fcgi_out *o, const struct iovec *iov, int iovcnt,
			  const struct rq_fcgi_plan *pl, size_t r)
{
	size_t caller = 0, pos = 0, rem = r, sent[RQ_FCGI_PLAN_MAX] = { 0 };
	int whole = 1, cut = -1;

	/* Where r ends in the layout: caller bytes and insertions in order. */
	for (int k = 0; k < pl->n; k++) {
		size_t seg = pl->ins[k].at - pos, t = seg < rem ? seg : rem;
		size_t il = (size_t)(pl->ins[k].len - pl->ins[k].off);

		caller += t;
		rem -= t;
		pos += t;
		if (t < seg) {
			whole = 0;
			break;
		}
		sent[k] = il < rem ? il : rem;
		rem -= sent[k];
		if (sent[k] < il) {
			whole = 0;
			if (sent[k])
				cut = k;
			break;
		}
	}
	if (whole) {
		size_t t = pl->upto - pos < rem ? pl->upto - pos : rem;

		caller += t;
		whole = caller == pl->upto;
	}
	if (whole) {
		o->s = pl->after;
		o->pend_len = o->pend_sent = 0;
		return caller;
	}
	/* Cut short: scan what went out, marking each request given (part of) its param. */
	pos = 0;
	for (int k = 0; k < pl->n && pl->ins[k].at <= caller; k++) {
		int e;

		advance(&o->s, iov, iovcnt, pos, pl->ins[k].at);
		pos = pl->ins[k].at;
		if (!sent[k])
			break;
		if (pl->ins[k].off == 0 && (e = find(&o->s, pl->ins[k].rid)) >= 0 && o->s.req[e].open)
			o->s.req[e].ins = 1;
		if (k == 0 && pl->ins[k].off)
			o->pend_len = o->pend_sent = 0; /* a resumed one: finished unless cut again */
	}
	advance(&o->s, iov, iovcnt, pos, caller);
	if (cut >= 0) {
		const struct rq_fcgi_ins *in = &pl->ins[cut];

		memcpy(o->pend, in->text, in->len);
		o->pend_len = in->len;
		o->pend_sent = (uint16_t)(in->off + sent[cut]);
	}
	return caller;
}
