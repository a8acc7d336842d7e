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

/* Request events as text: "H<id or ->;" per head, "D;" when the scanner stops. */
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
				len += (size_t)snprintf(out + len, cap - len, "H%.*s;",
							p.h.xr_have ? (int)p.h.xr_len : 1,
							p.h.xr_have ? p.xr : "-");
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
	data++;
	size--;
	a = req_events(data, size, size ? size : 1, whole, sizeof(whole));
	b = req_events(data, size, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);
	a = resp_events(data, size, size ? size : 1, whole, sizeof(whole));
	b = resp_events(data, size, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);
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
