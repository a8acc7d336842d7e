#include "targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ctx.h"
#include "fcgi.h"
#include "fdtab.h"
#include "http.h"
#include "id.h"
#include "io.h"

#define CHECK(c)                                                                  \
	do {                                                                      \
		if (!(c)) {                                                       \
			fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #c, \
				__FILE__, __LINE__);                              \
			abort();                                                  \
		}                                                                 \
	} while (0)

static void init_once(void)
{
	static int done;
	static const char *const env[] = { NULL };

	if (done)
		return;
	done = 1;
	test_config(env);
	rq_fd_init();
}

/*
 * Request events as text: "H<id or ->|<traceparent's digits, or ->;" per
 * head, "B;" per body end, "D;" when the scanner stops.
 */
static size_t req_events(const uint8_t *s, size_t n, size_t chunk, char *out, size_t cap)
{
	struct rq_req p;
	size_t len = 0;

	memset(&p, 0, sizeof(p));
	for (size_t at = 0; at < n; at += chunk) {
		size_t m = n - at < chunk ? n - at : chunk, off = 0;

		while (off < m) {
			enum rq_ev ev;
			size_t used = rq_req_feed(&p, (const char *)s + at + off, m - off, &ev);

			CHECK(used <= m - off);
			CHECK(used > 0 || ev != RQ_EV_NONE);
			off += used;
			if (ev == RQ_EV_HEAD) {
				CHECK(!p.h.xr_have || rq_id_valid(p.xr, p.h.xr_len));
				int tp = rq_req_tp(&p) && !p.h.xr_have;

				len += (size_t)snprintf(out + len, cap - len, "H%.*s|%.*s;",
							p.h.xr_have ? (int)p.h.xr_len : 1,
							p.h.xr_have ? p.xr : "-", tp ? RQ_TP_DIGITS : 1,
							tp ? p.xr + RQ_TP_AT : "-");
			} else if (ev == RQ_EV_BODY) {
				len += (size_t)snprintf(out + len, cap - len, "B;");
			} else if (ev == RQ_EV_DEAD) {
				len += (size_t)snprintf(out + len, cap - len, "D;");
			}
			if (len >= cap - 200)
				return len;
		}
	}
	return len;
}

/* Response events with their offsets. */
static size_t resp_events(const uint8_t *s, size_t n, size_t chunk, char *out, size_t cap)
{
	struct rq_hdrs p;
	size_t len = 0;

	memset(&p, 0, sizeof(p));
	for (size_t at = 0; at < n; at += chunk) {
		size_t m = n - at < chunk ? n - at : chunk, off = 0;

		while (off < m) {
			enum rq_ev ev;
			size_t used = rq_resp_feed(&p, (const char *)s + at + off, m - off, 0, &ev);

			CHECK(used <= m - off);
			off += used;
			if (ev == RQ_EV_DEAD) /* it swallows the rest of the read: no offset */
				len += (size_t)snprintf(out + len, cap - len, "D;");
			else if (ev != RQ_EV_NONE)
				len += (size_t)snprintf(out + len, cap - len, "%d@%zu;", ev, at + off);
			if (len >= cap - 200)
				return len;
		}
	}
	return len;
}

int rq_fuzz_http(const uint8_t *data, size_t size)
{
	static char whole[1 << 16], split[1 << 16];
	size_t chunk, a, b;

	if (size < 1)
		return 0;
	init_once();
	chunk = data[0] % 17 + 1;
	rq_cfg.traceparent = data[0] >> 7; /* REQCTX_TRACEPARENT=1 for half the inputs */
	data++;
	size--;
	a = req_events(data, size, size ? size : 1, whole, sizeof(whole));
	b = req_events(data, size, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);
	a = resp_events(data, size, size ? size : 1, whole, sizeof(whole));
	b = resp_events(data, size, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);
	rq_cfg.traceparent = 0;
	return 0;
}

/*
 * The log formats' rules on one whole line b[0..n) (without its newline),
 * written again here from README's "Log formats", index by index, as a
 * second implementation to hold the library's against.
 */
static int ref_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* A logfmt key equal to f anywhere in the line. */
static int ref_logfmt_has(const uint8_t *b, size_t n, const char *f)
{
	size_t i = 0, fl = strlen(f);

	for (;;) {
		size_t start;

		while (i < n && b[i] <= ' ')
			i++;
		if (i == n)
			return 0;
		for (start = i; i < n && b[i] > ' ' && b[i] != '=' && b[i] != '"'; i++)
			;
		if (i < n && b[i] == '=') {
			if (i - start == fl && !memcmp(b + start, f, fl))
				return 1;
			i++;
		}
		if (i < n && b[i] == '"') {
			for (i++; i < n && b[i] != '"'; i++)
				if (b[i] == '\\' && ++i == n)
					return 0;
			if (i == n)
				return 0;
			i++;
		}
		while (i < n && b[i] > ' ')
			i++;
	}
}

/* A top-level key equal to f in the object whose members are b[0..n) on. */
static int ref_json_has(const uint8_t *b, size_t n, const char *f)
{
	size_t i = 0, fl = strlen(f);
	int depth = 1, key = 1;

	while (i < n) {
		unsigned char c = b[i];

		if (c == '"') {
			int is_key = depth == 1 && key, bs = 0;
			size_t start = ++i;

			for (; i < n && b[i] != '"'; i++)
				if (b[i] == '\\') {
					bs = 1;
					if (++i == n)
						return 0;
				}
			if (i == n)
				return 0;
			if (is_key)
				key = 0;
			if (is_key && !bs && i - start == fl && !memcmp(b + start, f, fl)) {
				for (i++; i < n && ref_blank(b[i]); i++)
					;
				if (i < n && b[i] == ':')
					return 1;
				continue;
			}
			i++;
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return 0;
		else if (c == ',' && depth == 1)
			key = 1;
		else if (c == ':' && depth == 1)
			key = 0;
		i++;
	}
	return 0;
}

/* A JSON line: returns the bytes up to and with its brace (0: not one). */
static size_t ref_json_open(const uint8_t *b, size_t n, int *empty)
{
	size_t i = 0, j;

	while (i < n && ref_blank(b[i]))
		if (++i > 255)
			return 0;
	if (i == n || b[i] != '{')
		return 0;
	for (j = i + 1; j < n && ref_blank(b[j]); j++)
		;
	*empty = j < n && b[j] == '}';
	return j == n || b[j] == '"' || b[j] == '}' ? i + 1 : 0;
}

/* Appends line b[0..n) (and its newline, if nl) as the format puts it out. */
static size_t ref_put(char *out, int format, const char *id, const uint8_t *b, size_t n, int nl)
{
	char pfx[200], pair[200], member[200];
	size_t w = 0, open, pl, ml;
	int empty = 0;

	pl = (size_t)snprintf(pfx, sizeof(pfx), "[req:%s] ", id);
	ml = (size_t)snprintf(member, sizeof(member), "\"request_id\":\"%s\",", id);
	snprintf(pair, sizeof(pair), strchr(id, '=') ? "request_id=\"%s\" " : "request_id=%s ", id);
	if (format == RQ_FMT_LOGFMT) {
		if (!ref_logfmt_has(b, n, "request_id"))
			w += (size_t)sprintf(out, "%s", pair);
	} else if (format >= RQ_FMT_JSON && (open = ref_json_open(b, n, &empty))) {
		memcpy(out, b, open);
		w = open;
		if (!ref_json_has(b + open, n - open, "request_id")) {
			memcpy(out + w, member, ml - (size_t)empty);
			w += ml - (size_t)empty;
		}
		b += open;
		n -= open;
	} else if (!(n >= pl && !memcmp(b, pfx, pl))) {
		memcpy(out, pfx, pl);
		w = pl;
	}
	memcpy(out + w, b, n);
	w += n;
	if (nl)
		out[w++] = '\n';
	return w;
}

int rq_fuzz_prefix(const uint8_t *data, size_t size)
{
	static const char *const ids[] = { "a", "req-1", "0123456789abcdef0123456789abcdef",
					   "YWJj==" };
	static const char *const formats[] = { "REQCTX_FORMAT=prefix", "REQCTX_FORMAT=logfmt",
					       "REQCTX_FORMAT=json", "REQCTX_FORMAT=auto" };
	static char want[1 << 21];
	const char *env[] = { NULL, NULL };
	struct rq_ctx c = { .serial = 0 };
	size_t done = 0, w = 0;
	int pieces, format;

	if (size < 2 || size > 30000)
		return 0;
	format = data[1] >> 4 & 3;
	env[0] = formats[format];
	init_once();
	test_config(env);
	fake_install();
	fake_reset(data[0] & 0x80 ? 0 : data[0] % 64 + 1);
	CHECK(rq_fd_set_log(300) == 0);
	c.serial = rq_serial_next();
	strcpy(c.id, ids[data[1] & 3]);
	c.len = (uint32_t)strlen(c.id);
	rq_ctx_set(&c);
	pieces = (data[1] >> 2 & 3) + 1;
	data += 2;
	size -= 2;
	while (done < size) {
		struct iovec v[4];
		size_t left = size - done;
		struct rq_call k = { .how = pieces > 1 ? RQ_WRITEV : RQ_WRITE };
		ssize_t r;

		for (int i = 0; i < pieces; i++) {
			size_t from = left * (size_t)i / (size_t)pieces, to = left * (size_t)(i + 1) / (size_t)pieces;

			v[i].iov_base = (void *)(data + done + from);
			v[i].iov_len = to - from;
		}
		r = rq_io_write(300, v, pieces, &k);
		CHECK(r > 0 && (size_t)r <= left);
		done += (size_t)r;
	}
	/*
	 * A text owed after the last caller byte (a JSON line's member after a
	 * brace that ends the input, cut by the kernel) goes out with the next
	 * write: the program ends its last line.
	 */
	if (size && data[size - 1] != '\n') {
		struct iovec v = { "\n", 1 };
		struct rq_call k = { .how = RQ_WRITE };

		CHECK(rq_io_write(300, &v, 1, &k) == 1);
	}
	/*
	 * Every line gets what the format's rules give for its bytes (the call
	 * that starts each line holds the rest of the input: here, the whole
	 * line), whatever the kernel took per call and however the call was
	 * split into iovecs: stripping what was inserted gives back the input.
	 */
	for (size_t i = 0; i < size;) {
		const uint8_t *nl = memchr(data + i, '\n', size - i);
		size_t len = nl ? (size_t)(nl - (data + i)) : size - i;

		w += ref_put(want + w, format, c.id, data + i, len, 1);
		i += len + (nl != NULL);
	}
	CHECK(fk.len == w && memcmp(fk.out, want, w) == 0);
	rq_fd_forget(300);
	return 0;
}

/* ---- FastCGI ---- */

/* Inbound events as text: "B<rid>;", "P<rid>=<id or ->;", "D;" (R events left out). */
static size_t fcgi_events(const uint8_t *s, size_t n, size_t chunk, char *out, size_t cap)
{
	static struct rq_fcgi_in in;
	size_t len = 0;

	rq_fcgi_in_init(&in);
	for (size_t at = 0; at < n; at += chunk) {
		size_t m = n - at < chunk ? n - at : chunk, off = 0;

		while (off < m) {
			enum rq_fcgi_ev ev;
			size_t used = rq_fcgi_in_feed(&in, (const char *)s + at + off, m - off, &ev);
			int k = rq_fcgi_in_cur(&in);

			CHECK(used <= m - off);
			CHECK(used > 0 || ev != RQ_FCGI_EV_NONE);
			off += used;
			if (ev == RQ_FCGI_EV_BEGIN) {
				len += (size_t)snprintf(out + len, cap - len, "B%u;", rq_fcgi_in_rid(&in, k));
			} else if (ev == RQ_FCGI_EV_PARAMS) {
				size_t idl = rq_fcgi_in_id(&in, k);

				CHECK(!idl || rq_id_valid(in.xr[k], idl));
				len += (size_t)snprintf(out + len, cap - len, "P%u=%.*s;",
							rq_fcgi_in_rid(&in, k), idl ? (int)idl : 1,
							idl ? in.xr[k] : "-");
			} else if (ev == RQ_FCGI_EV_DEAD) {
				len += (size_t)snprintf(out + len, cap - len, "D;");
			}
			CHECK(ev != RQ_FCGI_EV_RECORD || k >= 0);
			if (len >= cap - 300)
				return len;
		}
	}
	return len;
}

static int fz_id(void *arg, unsigned rid, char *id, size_t *len)
{
	(void)arg;
	*len = (size_t)snprintf(id, REQCTX_ID_MAX, "fz-%u", rid);
	return 0;
}

/* A FastCGI client writing through the planner and a fake kernel. */
struct fz_client {
	struct rq_fcgi_out o;
	size_t kcap;   /* bytes the kernel takes per call */
	size_t done;   /* caller bytes out */
	size_t len;    /* bytes out in all */
	uint8_t out[1 << 20];
	int nins;
	struct {
		size_t pos; /* caller offset in the stream */
		size_t len;
		char text[RQ_FCGI_INS_MAX];
	} ins[4096];
};

/* One writev of n caller bytes; returns what it returns (always > 0 here). */
static size_t fz_write(struct fz_client *w, const uint8_t *p, size_t n)
{
	struct iovec v = { (void *)p, n };

	for (;;) {
		struct rq_fcgi_plan pl;
		struct iovec lay[16];
		size_t bytes, room, take = 0, rem, pos = 0, got;
		int m;

		CHECK(rq_fcgi_out_plan(&w->o, &v, 1, fz_id, NULL, &pl) == pl.n);
		CHECK(pl.upto <= n && pl.n <= RQ_FCGI_PLAN_MAX);
		m = rq_fcgi_out_iov(&pl, &v, 1, lay, 16, &bytes);
		room = w->kcap;
		for (int i = 0; i < m && room; i++) {
			size_t t = lay[i].iov_len < room ? lay[i].iov_len : room;

			CHECK(w->len + t <= sizeof(w->out));
			memcpy(w->out + w->len, lay[i].iov_base, t);
			w->len += t;
			take += t;
			room -= t;
		}
		CHECK(take > 0);
		/* Which insertions started going out: the layout, worked out here again. */
		rem = take;
		for (int k = 0; k < pl.n; k++) {
			size_t seg = pl.ins[k].at - pos, t = seg < rem ? seg : rem, il, ti;

			rem -= t;
			pos += t;
			if (t < seg)
				break;
			il = (size_t)(pl.ins[k].len - pl.ins[k].off);
			ti = il < rem ? il : rem;
			if (!pl.ins[k].off && ti && w->nins < 4096) {
				w->ins[w->nins].pos = w->done + pl.ins[k].at;
				w->ins[w->nins].len = pl.ins[k].len;
				memcpy(w->ins[w->nins++].text, pl.ins[k].text, pl.ins[k].len);
			}
			rem -= ti;
			if (ti < il)
				break;
		}
		got = rq_fcgi_out_commit(&w->o, &v, 1, &pl, take);
		CHECK(got <= n);
		if (got) {
			w->done += got;
			return got;
		}
		CHECK(take < bytes);
	}
}

static void fz_run(struct fz_client *w, const uint8_t *s, size_t n, size_t kcap, size_t chunk)
{
	memset(&w->o, 0, sizeof(w->o));
	rq_fcgi_out_init(&w->o);
	w->kcap = kcap;
	w->done = w->len = 0;
	w->nins = 0;
	while (w->done < n) {
		size_t want = n - w->done < chunk ? n - w->done : chunk;

		fz_write(w, s + w->done, want);
	}
}

/*
 * The output is the input with the recorded insertions, each a well-formed
 * PARAMS record for the requestId of the empty PARAMS record it precedes.
 */
static void fz_check_layout(const struct fz_client *w, const uint8_t *s, size_t n)
{
	size_t o = 0, pos = 0;

	for (int k = 0; k < w->nins; k++) {
		const uint8_t *t = (const uint8_t *)w->ins[k].text, *h = s + w->ins[k].pos;
		size_t clen = (size_t)t[4] << 8 | t[5], vlen;
		char want[32];
		int wl;

		CHECK(w->ins[k].pos >= pos && w->ins[k].pos + 8 <= n);
		CHECK(memcmp(w->out + o, s + pos, w->ins[k].pos - pos) == 0);
		o += w->ins[k].pos - pos;
		pos = w->ins[k].pos;
		CHECK(h[0] == 1 && h[1] == RQ_FCGI_PARAMS && h[4] == 0 && h[5] == 0);
		CHECK(t[0] == 1 && t[1] == RQ_FCGI_PARAMS && t[2] == h[2] && t[3] == h[3] && t[7] == 0);
		CHECK(8 + clen + t[6] == w->ins[k].len && (clen + t[6]) % 8 == 0);
		wl = snprintf(want, sizeof(want), "fz-%u", (unsigned)h[2] << 8 | h[3]);
		vlen = (size_t)wl;
		CHECK(t[8] == 17 && t[9] == vlen && clen == 2 + 17 + vlen);
		CHECK(memcmp(t + 10, "HTTP_X_REQUEST_ID", 17) == 0 && memcmp(t + 27, want, vlen) == 0);
		for (size_t i = 8 + clen; i < w->ins[k].len; i++)
			CHECK(t[i] == 0);
		CHECK(memcmp(w->out + o, t, w->ins[k].len) == 0);
		o += w->ins[k].len;
	}
	CHECK(w->len - o == n - pos && memcmp(w->out + o, s + pos, n - pos) == 0);
}

/* Events of the output = the input's, with some "P<rid>=-" become "P<rid>=fz-<rid>". */
static void fz_check_events(const char *in, size_t a, const char *out, size_t b, int all)
{
	size_t i = 0, j = 0;

	while (i < a && j < b) {
		if (in[i] == out[j]) {
			i++;
			j++;
			continue;
		}
		/* in: "-;" where out: "fz-<rid>;" */
		CHECK(in[i] == '-' && out[j] == 'f');
		while (j < b && out[j] != ';')
			j++;
		i++;
	}
	CHECK(i == a && j == b);
	if (all) /* every request without an ID got one */
		CHECK(!memmem(out, b, "=-;", 3));
}

int rq_fuzz_fcgi(const uint8_t *data, size_t size)
{
	static char whole[1 << 16], split[1 << 16], ev1[1 << 16], ev2[1 << 16];
	static struct fz_client w1, w2;
	size_t chunk, kcap, wchunk, a, b, c;
	const uint8_t *s;
	size_t n;

	if (size < 3 || size > 16384)
		return 0;
	init_once();
	chunk = data[0] % 17 + 1;
	kcap = data[1] % 64 + 1;
	wchunk = data[2] < 128 ? size : (size_t)data[2] - 127;
	s = data + 3;
	n = size - 3;
	/* inbound: split reads change nothing */
	a = fcgi_events(s, n, n ? n : 1, whole, sizeof(whole));
	b = fcgi_events(s, n, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);
	/* outbound, whole writes: every request without an ID gets one */
	fz_run(&w1, s, n, SIZE_MAX, n ? n : 1);
	fz_check_layout(&w1, s, n);
	c = fcgi_events(w1.out, w1.len, w1.len ? w1.len : 1, ev1, sizeof(ev1));
	if (a < sizeof(whole) - 300 && c < sizeof(ev1) - 300)
		fz_check_events(whole, a, ev1, c, !memmem(whole, a, "D;", 2));
	/* whatever the kernel takes, the same bytes */
	fz_run(&w2, s, n, kcap, n ? n : 1);
	CHECK(w2.len == w1.len && memcmp(w2.out, w1.out, w1.len) == 0);
	/* caller writes of any size: the input with fewer or the same insertions */
	fz_run(&w2, s, n, kcap, wchunk);
	fz_check_layout(&w2, s, n);
	c = fcgi_events(w2.out, w2.len, w2.len ? w2.len : 1, ev2, sizeof(ev2));
	if (a < sizeof(whole) - 300 && c < sizeof(ev2) - 300)
		fz_check_events(whole, a, ev2, c, 0);
	return 0;
}

/* ---- HTTP/2 ---- */

#include "h2.h"

#define H2_MAX  (64u << 10)     /* input taken */
#define H2_WIRE (4 * H2_MAX + (64u << 10))

/* Client events as text, for reads of `chunk`. */
static size_t h2_events(struct rq_h2 *h, const uint8_t *s, size_t n, size_t chunk, char *out,
			size_t cap)
{
	size_t len = 0;

	for (size_t at = 0; at < n; at += chunk) {
		size_t m = n - at < chunk ? n - at : chunk, off = 0;

		while (off < m) {
			struct rq_h2_ev ev;
			size_t used = rq_h2_read(h, (const char *)s + at + off, m - off, &ev);

			CHECK(used <= m - off);
			CHECK(used > 0 || ev.type != RQ_H2_EV_NONE);
			off += used;
			if (ev.type == RQ_H2_EV_REQ) {
				CHECK(ev.slot <= RQ_H2_CONN);
				CHECK(!ev.id_len || rq_id_valid(ev.id, ev.id_len));
				if (len < cap - 200)
					len += (size_t)snprintf(out + len, cap - len, "R%u@%u:%.*s;",
								ev.sid, ev.slot, (int)ev.id_len, ev.id);
			} else if (ev.type == RQ_H2_EV_DEAD && len < cap - 200) {
				len += (size_t)snprintf(out + len, cap - len, "D;");
			}
		}
	}
	CHECK(h->in.last == RQ_H2_NONE || h->in.last <= RQ_H2_CONN);
	return len;
}

static size_t h2_id(void *arg, unsigned slot, uint32_t sid, char out[REQCTX_ID_MAX])
{
	(void)arg;
	return (size_t)snprintf(out, REQCTX_ID_MAX, "id-%u-%u", slot, sid);
}

/* The wire, each byte labelled: the caller byte it carries (-1: inserted), replaced or not. */
struct h2_wire {
	size_t n;
	uint8_t b[H2_WIRE];
	int32_t lab[H2_WIRE];
	uint8_t rep[H2_WIRE];
};

static void h2_emit(struct h2_wire *w, const uint8_t *p, size_t n, int32_t lab, int rep)
{
	CHECK(w->n + n <= H2_WIRE);
	for (size_t i = 0; i < n; i++) {
		w->b[w->n] = p[i];
		w->lab[w->n] = lab < 0 ? -1 : lab + (int32_t)i;
		w->rep[w->n++] = (uint8_t)rep;
	}
}

/* Two outbound states that must behave the same from now on. */
static void h2_same(const struct rq_h2 *a, const struct rq_h2 *b)
{
	const struct rq_h2_fr *x = &a->out.fr, *y = &b->out.fr;
	const struct rq_hpack *p = &a->out.hp, *q = &b->out.hp;

	CHECK(x->st == y->st && x->n == y->n && x->type == y->type && x->flags == y->flags);
	CHECK(x->pre == y->pre && x->pad == y->pad && x->blk == y->blk && x->blk_es == y->blk_es);
	CHECK(x->blk_cand == y->blk_cand && x->blk_slot == y->blk_slot);
	CHECK(x->blk_frames == y->blk_frames && x->len == y->len && x->sid == y->sid);
	CHECK(x->left == y->left && x->frag == y->frag && x->blk_sid == y->blk_sid);
	CHECK(x->blk_bytes == y->blk_bytes && x->pos == y->pos && x->hdr_pos == y->hdr_pos);
	CHECK(memcmp(x->b, y->b, x->n) == 0);
	CHECK(p->st == q->st && p->rep == q->rep && p->what == q->what && p->err == q->err);
	CHECK(p->max == q->max && p->size == q->size && p->n == q->n && p->ins == q->ins);
	CHECK(p->left == q->left && p->ival == q->ival && p->nlen == q->nlen && p->vlen == q->vlen);
	CHECK(p->id_seen == q->id_seen && p->status == q->status && p->list == q->list);
	for (uint32_t i = 1; i <= p->n; i++) {
		uint32_t s1, s2, n1, n2;
		int k1, k2;

		CHECK(rq_hp_entry(p, i, &s1, &n1, &k1) == 0 && rq_hp_entry(q, i, &s2, &n2, &k2) == 0);
		CHECK(s1 == s2 && n1 == n2 && k1 == k2);
	}
	CHECK(a->out.last == b->out.last && a->out.nomore == b->out.nomore);
	CHECK(a->out.skip == b->out.skip && a->out.ins_st == b->out.ins_st);
	CHECK(a->out.rep_n == b->out.rep_n && a->out.ins_len == b->out.ins_len);
	CHECK(a->out.ins_sent == b->out.ins_sent && a->out.ins_pos == b->out.ins_pos);
	CHECK(atomic_load(&a->own_hts) == atomic_load(&b->own_hts));
	for (int i = 0; i < RQ_H2_STREAMS; i++)
		CHECK(atomic_load(&a->st[i].w) == atomic_load(&b->st[i].w));
}

/*
 * Writes s[0..n) in caller writes of `wsize` through a kernel taking `cap`
 * bytes a call, labelling what goes out from the plan's edits.
 */
static void h2_write(struct rq_h2 *h, const uint8_t *s, size_t n, size_t wsize, size_t cap,
		     int hold, struct h2_wire *w)
{
	static struct rq_h2_plan p;
	size_t done = 0, end = 0;
	int guard = 0;

	while (done < n || !guard) {
		struct iovec v;
		size_t room, c, x, pos = 0, r = 0;

		CHECK(++guard < 4 * (int)H2_MAX + 1000);
		if (done >= end)
			end = done + wsize < n ? done + wsize : n;
		/* a caller retries what it was not told went out, up to its write's end */
		v.iov_base = (void *)(s + done);
		v.iov_len = end - done;
		rq_h2_plan(h, &v, 1, h2_id, NULL, &p);
		CHECK(p.covered <= v.iov_len);
		room = cap ? cap : (size_t)-1;
		/* walk the plan as the kernel takes it */
		for (int k = 0; k <= p.n && room; k++) {
			size_t stop = k < p.n ? p.e[k].at : p.covered, take = stop - pos;
			const struct rq_h2_edit *e = &p.e[k];

			if (take > room)
				take = room;
			h2_emit(w, s + done + pos, take, (int32_t)(done + pos), 0);
			room -= take;
			r += take;
			pos += take;
			if (pos < stop || k == p.n)
				break;
			if (e->del && !e->len) { /* bytes already out */
				pos += e->del;
				continue;
			}
			take = e->len < room ? e->len : room;
			h2_emit(w, (const uint8_t *)e->text, take, e->del ? (int32_t)(done + pos) : -1,
				e->del != 0);
			room -= take;
			r += take;
			if (e->del)
				pos += take;
			if (take < e->len)
				break;
		}
		rq_h2_map(&p, r, &c, &x);
		if (p.adopt && c == p.covered) { /* adopting the plan = scanning the bytes again */
			static struct rq_h2 copy;

			copy = *h;
			p.adopt = 0;
			rq_h2_commit(&copy, &p, &v, 1, c, x, hold);
			p.adopt = 1;
			done += rq_h2_commit(h, &p, &v, 1, c, x, hold);
			h2_same(h, &copy);
		} else {
			done += rq_h2_commit(h, &p, &v, 1, c, x, hold);
		}
		if (n == 0)
			break;
	}
	/* a blocking caller finishes a trailing insertion */
	for (int i = 0; !hold && i < 1000; i++) {
		size_t c, x;

		rq_h2_plan(h, NULL, 0, h2_id, NULL, &p);
		if (!p.n)
			break;
		CHECK(p.n == 1 && !p.e[0].del && p.e[0].at == 0);
		h2_emit(w, (const uint8_t *)p.e[0].text, p.e[0].len, -1, 0);
		rq_h2_map(&p, p.e[0].len, &c, &x);
		rq_h2_commit(h, &p, NULL, 0, c, x, 0);
	}
}

/* An inserted run: fields and CONTINUATION frames carrying one or none. */
static void h2_check_ins(const uint8_t *b, size_t n)
{
	while (n) {
		size_t len;

		if (n >= 9 && b[3] == 9) { /* a CONTINUATION frame, END_HEADERS */
			CHECK(b[4] == 0x4);
			len = (size_t)b[0] << 16 | (size_t)b[1] << 8 | b[2];
			CHECK(n >= 9 + len);
			h2_check_ins(b + 9, len);
			b += 9 + len;
			n -= 9 + len;
			continue;
		}
		{ /* 00 <name length> <name> <value length> <value> */
			size_t nl, vl, vo;

			CHECK(n >= 2);
			nl = b[1];
			CHECK(nl == rq_cfg.hdr_len && n >= 2 + nl + 1);
			CHECK(memcmp(b + 2, rq_cfg.hdr_lc, nl) == 0);
			vl = b[2 + nl];
			vo = 3 + nl;
			if (vl == 0x7f) {
				CHECK(n > vo);
				vl = 127 + b[vo++];
			}
			CHECK(vl < 0x7f || vl <= REQCTX_ID_MAX);
			CHECK(n >= vo + vl && rq_id_valid((const char *)b + vo, vl));
			CHECK(b[0] == 0x00);
			b += vo + vl;
			n -= vo + vl;
		}
	}
}

/* Where the frame headers of s are: 1 at each frame's first byte. */
static void h2_frames(const uint8_t *s, size_t n, uint8_t *start, size_t *whole)
{
	size_t at = 0;

	memset(start, 0, n);
	while (at + 9 <= n) {
		size_t len = (size_t)s[at] << 16 | (size_t)s[at + 1] << 8 | s[at + 2];

		start[at] = 1;
		at += 9 + len;
	}
	*whole = at == n ? n : (at < n ? at : 0);
}

static void h2_check(const uint8_t *s, size_t n, const struct h2_wire *w, const uint8_t *start)
{
	size_t next = 0, i = 0, hdr = 0;

	while (i < w->n) {
		if (w->lab[i] < 0) {
			size_t j = i;

			while (j < w->n && w->lab[j] < 0)
				j++;
			h2_check_ins(w->b + i, j - i);
			i = j;
			continue;
		}
		CHECK((size_t)w->lab[i] == next); /* each caller byte once, in order */
		if (start[next])
			hdr = next;
		if (w->rep[i]) {
			size_t off = next - hdr;

			CHECK(start[hdr] && (off < 3 || off == 4));
			if (off == 4)
				CHECK((s[next] & 0x4) && w->b[i] == (s[next] & ~0x4u));
		} else {
			CHECK(w->b[i] == s[next]);
		}
		next++;
		i++;
	}
	CHECK(next == n);
}

/* The wire parses as frames as far as s does. */
static void h2_check_frames(const struct h2_wire *w, size_t whole_s, size_t n_s)
{
	size_t at = 0;

	if (whole_s != n_s)
		return; /* s itself is cut inside a frame */
	while (at + 9 <= w->n)
		at += 9 + ((size_t)w->b[at] << 16 | (size_t)w->b[at + 1] << 8 | w->b[at + 2]);
	CHECK(at == w->n);
}

int rq_fuzz_h2(const uint8_t *data, size_t size)
{
	static struct rq_h2 h;
	static struct h2_wire w;
	static uint8_t client[H2_MAX + RQ_H2_PREFACE_LEN], start[H2_MAX];
	static char whole[1 << 14], split[1 << 14];
	size_t chunk, cap, wsize, clen, slen, a, b, fr_whole;
	const uint8_t *srv;
	int hold;

	if (size < 5 || size > H2_MAX)
		return 0;
	init_once();
	chunk = data[0] % 17 + 1;
	cap = data[1] % 23;
	if (cap)
		cap = 1 + (cap - 1) * (cap - 1); /* 1, 2, 5, 10 ... 442 bytes a call */
	hold = data[2] & 1;
	wsize = (size_t)(data[2] >> 1) * 7 + 1;
	clen = (size_t)data[3] << 8 | data[4];
	data += 5;
	size -= 5;
	if (clen > size)
		clen = size;
	memcpy(client, RQ_H2_PREFACE, RQ_H2_PREFACE_LEN);
	memcpy(client + RQ_H2_PREFACE_LEN, data, clen);
	srv = data + clen;
	slen = size - clen;

	/* the client's side: the same events for any read size */
	rq_h2_init(&h, 0);
	a = h2_events(&h, client, clen + RQ_H2_PREFACE_LEN, clen + RQ_H2_PREFACE_LEN, whole,
		      sizeof(whole));
	rq_h2_init(&h, 0);
	b = h2_events(&h, client, clen + RQ_H2_PREFACE_LEN, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);

	/* the server's side, whole and in pieces, after that client */
	h2_frames(srv, slen, start, &fr_whole);
	for (int run = 0; run < 2; run++) {
		rq_h2_init(&h, 0);
		h2_events(&h, client, clen + RQ_H2_PREFACE_LEN, clen + RQ_H2_PREFACE_LEN, whole,
			  sizeof(whole));
		w.n = 0;
		if (run == 0)
			h2_write(&h, srv, slen, slen ? slen : 1, 0, 0, &w);
		else
			h2_write(&h, srv, slen, wsize, cap, hold, &w);
		CHECK(h.out.last == RQ_H2_NONE || h.out.last <= RQ_H2_CONN);
		h2_check(srv, slen, &w, start);
		h2_check_frames(&w, fr_whole, slen);
	}
	return 0;
}
