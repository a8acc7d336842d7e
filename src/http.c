#include "http.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "config.h"
#include "id.h"

enum {
	S_START, /* between messages */
	S_METHOD,
	S_TARGET,
	S_VERSION,  /* request line: "HTTP/1.x" */
	S_RL_LF,    /* request line: CR seen */
	S_RVERSION, /* status line: "HTTP/1.x " */
	S_RSTATUS,
	S_RREASON,
	S_LINE,     /* start of a header line */
	S_NAME,
	S_VALUE,
	S_VALUE_LF,
	S_END_LF,   /* CR of the blank line seen */
	S_BODY,
	S_DEAD,
};

enum { B_LEN = 1, B_CSIZE, B_CEXT, B_CSIZE_LF, B_CDATA, B_CDATA_CR, B_CDATA_LF,
       B_TRAILER, B_TLINE, B_TEND_LF };

#define H_XR 1u
#define H_CL 2u
#define H_TE 4u
#define H_TP 8u   /* traceparent (REQCTX_TRACEPARENT=1) */
#define H_UP 16u  /* Upgrade (requests) */
#define H_SET 32u /* HTTP2-Settings (requests) */
_Static_assert((H_XR | H_CL | H_TE | H_TP | H_UP | H_SET) <= UINT8_MAX,
	       "rq_hdrs.match and .cur hold the H_* bits");

/* Padded to 32 bytes: same_name reads 16 at a time. */
static const char cl_name[32] = "content-length";
static const char te_name[32] = "transfer-encoding";
static const char tp_name[32] = "traceparent";
static const char up_name[32] = "upgrade";
static const char set_name[32] = "http2-settings";
#define CL_LEN 14
#define TE_LEN 17
#define TP_LEN 11
#define UP_LEN 7
#define SET_LEN 14

static int is_tchar(unsigned char c)
{
	static const uint8_t t[256] = {
		['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
		['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
		['`'] = 1, ['|'] = 1, ['~'] = 1,
		['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
		['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
		['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
		['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
		['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
		['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
		['y'] = 1, ['z'] = 1,
		['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
		['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
		['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
		['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
		['Y'] = 1, ['Z'] = 1,
	};
	return t[c];
}

static unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lower(c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/*
 * Offset of the first byte from i on that is below `lim` (0x20: a control
 * byte; 0x21: a space too) or 0x7f, or n if there is none: 16 bytes at a
 * time with SSE2, else 8 (for each word, the lowest byte the test flags is
 * always a true one: a borrow only runs towards higher bytes).
 */
static inline size_t to_ctl(const unsigned char *b, size_t i, size_t n, unsigned lim)
{
#ifdef __SSE2__
	const __m128i below = _mm_set1_epi8((char)(lim - 1)), del = _mm_set1_epi8(0x7f);

	for (; n - i >= 16; i += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(b + i));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			_mm_cmpeq_epi8(_mm_min_epu8(x, below), x), _mm_cmpeq_epi8(x, del)));

		if (m)
			return i + (unsigned)__builtin_ctz(m);
	}
	if (n >= 16 && i < n) { /* the last 16 bytes, less those already seen */
		__m128i x = _mm_loadu_si128((const __m128i *)(b + n - 16));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			_mm_cmpeq_epi8(_mm_min_epu8(x, below), x), _mm_cmpeq_epi8(x, del)));

		m >>= i - (n - 16);
		return m ? i + (unsigned)__builtin_ctz(m) : n;
	}
#elif __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;

	for (; n - i >= 8; i += 8) {
		uint64_t x, d, m;

		memcpy(&x, b + i, 8);
		d = x ^ (0x7f * ones);
		m = (((x - lim * ones) & ~x) | ((d - ones) & ~d)) & highs;
		if (m)
			return i + ((unsigned)__builtin_ctzll(m) >> 3);
	}
#endif
	while (i < n && b[i] >= lim && b[i] != 0x7f)
		i++;
	return i;
}

/*
 * Where the header name that starts at b[i] ends: the offset of its ':', or
 * 0 if the name is not all token bytes followed by ':' in these n bytes.
 * Names of letters, digits and '-' up to 15 bytes are checked 16 bytes at
 * a time; others byte by byte.
 */
static inline size_t name_end(const unsigned char *b, size_t i, size_t n)
{
	size_t j = i;

#ifdef __SSE2__
	if (n >= 16) { /* the 16 bytes from i, or the last 16 with those before i shifted out */
		size_t at = n - i >= 16 ? i : n - 16;
		__m128i x = _mm_loadu_si128((const __m128i *)(b + at));
		__m128i l = _mm_sub_epi8(_mm_or_si128(x, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
		__m128i d = _mm_sub_epi8(x, _mm_set1_epi8('0'));
		__m128i ok = _mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(l, _mm_set1_epi8(25)), l),
				     _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d)),
			_mm_cmpeq_epi8(x, _mm_set1_epi8('-')));
		unsigned colon = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(':'))) >> (i - at);
		unsigned before = colon ? (colon & -colon) - 1 : 0;

		if (before && (~((unsigned)_mm_movemask_epi8(ok) >> (i - at)) & before) == 0)
			return i + (unsigned)__builtin_ctz(colon);
	}
#endif
	while (j < n && is_tchar(b[j]))
		j++;
	return j > i && j < n && b[j] == ':' ? j : 0;
}

/*
 * 1 if the n name bytes at b are, ignoring case, those of lc (lower case,
 * readable for n rounded up to 16 bytes); b has `room` bytes.
 */
static int same_name(const unsigned char *b, const char *lc, size_t n, size_t room)
{
	size_t i = 0;

#ifdef __SSE2__
	for (; room - i >= 16 && i < n; i += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(b + i));
		__m128i u = _mm_sub_epi8(x, _mm_set1_epi8('A'));
		__m128i up = _mm_cmpeq_epi8(_mm_min_epu8(u, _mm_set1_epi8(25)), u);
		__m128i y = _mm_or_si128(x, _mm_and_si128(up, _mm_set1_epi8(0x20)));
		unsigned eq = (unsigned)_mm_movemask_epi8(
			_mm_cmpeq_epi8(y, _mm_loadu_si128((const __m128i *)(lc + i))));
		unsigned want = n - i >= 16 ? 0xffff : (1u << (n - i)) - 1;

		if ((eq & want) != want)
			return 0;
	}
#else
	(void)room;
#endif
	for (; i < n; i++)
		if (lower(b[i]) != (unsigned char)lc[i])
			return 0;
	return 1;
}

/*
 * Skips body bytes. Returns the bytes consumed; *res is 1 when the body
 * ended, -1 on a framing error, 0 when it needs more.
 */
static size_t body_feed(struct rq_body *b, const char *buf, size_t n, int *res)
{
	size_t i = 0;

	*res = 0;
	while (i < n) {
		unsigned char c = (unsigned char)buf[i];
		int v;

		switch (b->st) {
		case B_LEN:
		case B_CDATA: {
			size_t take = n - i < b->left ? n - i : (size_t)b->left;

			b->left -= take;
			i += take;
			if (b->left)
				return i;
			if (b->st == B_LEN) {
				*res = 1;
				return i;
			}
			b->st = B_CDATA_CR;
			continue;
		}
		case B_CSIZE:
			if ((v = hexval(c)) >= 0) {
				if (++b->digits > 15)
					goto bad;
				b->left = b->left * 16 + (unsigned)v;
			} else if (c == ';' || c == ' ' || c == '\t') {
				b->st = B_CEXT;
			} else if (c == '\r') {
				b->st = B_CSIZE_LF;
			} else if (c == '\n') {
				goto size_done;
			} else {
				goto bad;
			}
			break;
		case B_CEXT:
			if (c == '\r')
				b->st = B_CSIZE_LF;
			else if (c == '\n')
				goto size_done;
			break;
		case B_CSIZE_LF:
			if (c != '\n')
				goto bad;
		size_done:
			if (!b->digits)
				goto bad;
			b->st = b->left ? B_CDATA : B_TRAILER;
			break;
		case B_CDATA_CR:
			if (c == '\r') {
				b->st = B_CDATA_LF;
				break;
			}
			/* a bare LF ends the chunk too */
			__attribute__((fallthrough));
		case B_CDATA_LF:
			if (c != '\n')
				goto bad;
			b->st = B_CSIZE;
			b->digits = 0;
			b->left = 0;
			break;
		case B_TRAILER:
			if (c == '\r')
				b->st = B_TEND_LF;
			else if (c == '\n')
				goto done;
			else
				b->st = B_TLINE;
			break;
		case B_TLINE:
			if (c == '\n')
				b->st = B_TRAILER;
			break;
		case B_TEND_LF:
			if (c != '\n')
				goto bad;
		done:
			*res = 1;
			return i + 1;
		}
		i++;
	}
	return i;
bad:
	*res = -1;
	return i;
}

/* Clears the per-message fields. */
static void msg_reset(struct rq_hdrs *p)
{
	p->st = S_START;
	p->idx = 0;
	p->xr_have = p->xr_seen = 0;
	p->te_seen = p->te_chunked = 0;
	p->cl_seen = 0;
	p->cl = 0;
	p->up = 0;
	p->method = 0;
	p->status = 0;
	p->xr_len = 0;
	p->cur = 0;
	p->lines = 0;
	p->tp_st = 0;
	p->tp_pos = 0;
}

int rq_resp_after_status(const struct rq_hdrs *p)
{
	return p->st == S_LINE && p->lines == 0 && p->idx == 0;
}

void rq_hdrs_kill(struct rq_hdrs *p)
{
	p->st = S_DEAD;
}

int rq_hdrs_dead(const struct rq_hdrs *p)
{
	return p->st == S_DEAD;
}

int rq_req_at_start(const struct rq_req *r)
{
	return r->h.st == S_START;
}

int rq_resp_at_start(const struct rq_hdrs *p)
{
	return p->st == S_START && p->idx == 0;
}

void rq_hdrs_reset(struct rq_hdrs *p)
{
	msg_reset(p);
}

static void name_start(struct rq_hdrs *p)
{
	p->st = S_NAME;
	p->idx = 0;
	if (p->lines < 255)
		p->lines++;
	p->match = H_XR | H_CL | H_TE | H_UP | H_SET | (rq_cfg.traceparent ? H_TP : 0);
	p->cur = 0;
}

/* The name of header p->cur (0: one reqctx does not read) has ended: its value starts. */
static void value_start(struct rq_hdrs *p)
{
	p->st = S_VALUE;
	if (p->cur == H_XR) {
		p->xr_st = 0;
		p->xr_bad = 0;
		p->xr_seen = 1;
		p->xr_mine = 0;
		if (!p->xr_have)
			p->xr_len = 0;
	} else if (p->cur == H_CL) {
		p->cl_cur = 0;
		p->cl_digits = 0;
		p->cl_bad = 0;
	} else if (p->cur == H_TE) {
		p->te_seen = 1;
		p->te_idx = 0;
		p->te_ok = 1;
		p->te_end = 0;
	} else if (p->cur == H_UP) {
		p->te_idx = 0; /* (a token being matched, as for Transfer-Encoding) */
		p->te_ok = 1;
		p->te_end = 0;
	} else if (p->cur == H_TP) {
		if (p->tp_st & RQ_TP_SEEN) { /* two traceparents make none (W3C) */
			p->tp_st = (uint8_t)((p->tp_st & RQ_TP_LOST) | RQ_TP_SEEN | RQ_TP_BAD);
			p->tp_pos = 255;
		} else {
			p->tp_st = (uint8_t)((p->tp_st & RQ_TP_LOST) | RQ_TP_SEEN);
			p->tp_pos = 0;
		}
	}
}

/* Feeds one header-name byte; returns -1 if it cannot be part of a name. */
static int name_byte(struct rq_hdrs *p, unsigned char c)
{
	unsigned i = p->idx;

	if (c == ':') {
		if (i == 0)
			return -1;
		if ((p->match & H_XR) && i == rq_cfg.hdr_len)
			p->cur = H_XR;
		else if ((p->match & H_CL) && i == CL_LEN)
			p->cur = H_CL;
		else if ((p->match & H_TE) && i == TE_LEN)
			p->cur = H_TE;
		else if ((p->match & H_TP) && i == TP_LEN)
			p->cur = H_TP;
		else if ((p->match & H_UP) && i == UP_LEN)
			p->cur = H_UP;
		else if ((p->match & H_SET) && i == SET_LEN)
			p->up |= RQ_UP_SETS;
		value_start(p);
		return 0;
	}
	if (!is_tchar(c))
		return -1;
	c = lower(c);
	if (p->match) {
		if ((p->match & H_XR) && (i >= rq_cfg.hdr_len || rq_cfg.hdr_lc[i] != c))
			p->match &= ~H_XR;
		if ((p->match & H_CL) && (i >= CL_LEN || cl_name[i] != c))
			p->match &= ~H_CL;
		if ((p->match & H_TE) && (i >= TE_LEN || te_name[i] != c))
			p->match &= ~H_TE;
		if ((p->match & H_TP) && (i >= TP_LEN || tp_name[i] != c))
			p->match &= ~H_TP;
		if ((p->match & H_UP) && (i >= UP_LEN || up_name[i] != c))
			p->match &= ~H_UP;
		if ((p->match & H_SET) && (i >= SET_LEN || set_name[i] != c))
			p->match &= ~H_SET;
	}
	if (p->idx < 255)
		p->idx++;
	else
		p->match = 0;
	return 0;
}

/* The end of a token of an Upgrade value: h2c is noted. */
static void up_token(struct rq_hdrs *p)
{
	if (p->te_ok && p->te_idx == 3)
		p->up |= RQ_UP_H2C;
	p->te_idx = 0;
	p->te_ok = 1;
	p->te_end = 0;
}

static int lhex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * One byte of a traceparent value: "vv-<32 hex>-<16 hex>-ff", lowercase,
 * version ff invalid, 00 exactly 55 characters, a higher version 55 then
 * the end or '-' and anything. The trace-id digits go to xr + RQ_TP_AT
 * while xr may be written (keep).
 */
static void tp_byte(struct rq_hdrs *p, char *xr, int keep, unsigned char c)
{
	unsigned i = p->tp_pos;

	if (i == 255 || (p->tp_st & RQ_TP_BAD))
		return;
	if (c == ' ' || c == '\t') {
		if (i && i < 55)
			p->tp_st |= RQ_TP_BAD;
		else if (i)
			p->tp_pos = 254; /* ended: only spaces may follow */
		return;
	}
	if (i == 254 || (i >= 55 && !(p->tp_st & RQ_TP_VER))) {
		p->tp_st |= RQ_TP_BAD;
		return;
	}
	if (i >= 55) { /* a higher version's extra fields: '-' first, then anything */
		if (i == 55 && c != '-')
			p->tp_st |= RQ_TP_BAD;
		p->tp_pos = 56;
		return;
	}
	if (i == 2 || i == 35 || i == 52) {
		if (c != '-')
			p->tp_st |= RQ_TP_BAD;
	} else if (!lhex(c)) {
		p->tp_st |= RQ_TP_BAD;
	} else if (i < 2) {
		if (c != '0')
			p->tp_st |= RQ_TP_VER;
		if (i == 0 && c == 'f')
			p->tp_st |= RQ_TP_F;
		else if (i == 1 && c == 'f' && (p->tp_st & RQ_TP_F))
			p->tp_st |= RQ_TP_BAD; /* version ff */
	} else if (i < 35) {
		if (c != '0')
			p->tp_st |= RQ_TP_NZT;
		if (keep && xr)
			xr[RQ_TP_AT + i - 3] = (char)c;
	} else if (i < 52) {
		if (c != '0')
			p->tp_st |= RQ_TP_NZS;
	}
	p->tp_pos = (uint8_t)(i + 1);
}

/* Feeds one header-value byte (not CR or LF); xr is where a request ID goes (NULL: nowhere). */
static void value_byte(struct rq_hdrs *p, char *xr, unsigned char c)
{
	int ows = c == ' ' || c == '\t';

	switch (p->cur) {
	case H_XR:
		if (p->xr_have || !xr)
			break; /* the first valid value wins; a response's is not read */
		if (ows) {
			if (p->xr_st == 1)
				p->xr_st = 2;
		} else if (p->xr_st == 2 || !rq_id_char(c) || p->xr_len == REQCTX_ID_MAX) {
			p->xr_bad = 1;
		} else {
			p->xr_st = 1;
			if (p->xr_len >= RQ_TP_AT)
				p->tp_st |= RQ_TP_LOST;
			xr[p->xr_len++] = (char)c;
		}
		break;
	case H_TP:
		tp_byte(p, xr, !p->xr_have, c);
		break;
	case H_CL:
		if (ows) {
			if (p->cl_digits)
				p->cl_digits = 0xff; /* digits ended */
		} else if (c >= '0' && c <= '9' && p->cl_digits != 0xff && p->cl_digits < 18) {
			p->cl_cur = p->cl_cur * 10 + (c - '0');
			p->cl_digits++;
		} else {
			p->cl_bad = 1;
		}
		break;
	case H_TE:
		if (c == ',') {
			p->te_idx = 0;
			p->te_ok = 1;
			p->te_end = 0;
		} else if (ows) {
			if (p->te_idx)
				p->te_end = 1;
		} else if (p->te_end || p->te_idx >= 7 || "chunked"[p->te_idx] != lower(c)) {
			p->te_ok = 0;
			p->te_idx = 7;
		} else {
			p->te_idx++;
		}
		break;
	case H_UP:
		if (c == ',') {
			up_token(p);
		} else if (ows) {
			if (p->te_idx)
				p->te_end = 1;
		} else if (p->te_end || p->te_idx >= 3 || "h2c"[p->te_idx] != lower(c)) {
			p->te_ok = 0;
			p->te_idx = 4;
		} else {
			p->te_idx++;
		}
		break;
	}
}

/* Ends a header value. Returns -1 if the value makes the message invalid. */
static int value_end(struct rq_hdrs *p)
{
	switch (p->cur) {
	case H_XR:
		if (!p->xr_have) {
			if (!p->xr_bad && p->xr_len > 0)
				p->xr_have = p->xr_mine = 1;
			else
				p->xr_len = 0;
		}
		break;
	case H_CL:
		if (p->cl_bad || !p->cl_digits || (p->cl_seen && p->cl != p->cl_cur))
			return -1;
		p->cl = p->cl_cur;
		p->cl_seen = 1;
		break;
	case H_TE:
		p->te_chunked = p->te_ok && p->te_idx == 7;
		break;
	case H_UP:
		up_token(p);
		break;
	case H_TP:
		if (p->tp_pos != 255 && p->tp_pos >= 55 && !(p->tp_st & RQ_TP_BAD) &&
		    (p->tp_st & (RQ_TP_NZT | RQ_TP_NZS)) == (RQ_TP_NZT | RQ_TP_NZS))
			p->tp_st |= RQ_TP_OK;
		break;
	}
	p->st = S_LINE;
	p->idx = 0;
	return 0;
}

/*
 * Where the header line whose value starts at b[k] ends: the offset past its
 * LF, or 0 if it does not end in these n bytes or holds a byte the
 * byte-wise path must judge (a bare CR, a control byte). *v is where its
 * value's last byte ends (its CR or LF).
 */
static size_t line_end(const unsigned char *b, size_t k, size_t n, size_t *v)
{
	for (;;) {
		k = to_ctl(b, k, n, 0x20);
		if (k == n)
			return 0;
		if (b[k] != '\t')
			break;
		k++;
	}
	*v = k;
	if (b[k] == '\n')
		return k + 1;
	if (b[k] == '\r' && k + 1 < n && b[k + 1] == '\n')
		return k + 2;
	return 0;
}

/*
 * A whole request-ID value (no CR or LF, no control byte but tabs), read at
 * once: what value_byte does for each of its bytes, when no ID is kept yet.
 * Valid is OWS, 1 to REQCTX_ID_MAX ID characters, OWS; any other value goes
 * through value_byte, byte by byte (rare, and it decides what an invalid
 * value leaves in xr over a traceparent's digits, RQ_TP_LOST).
 */
static void id_value(struct rq_hdrs *p, char *xr, const unsigned char *b, size_t n)
{
	size_t s = 0, e = n, k;

	while (s < e && (b[s] == ' ' || b[s] == '\t'))
		s++;
	while (e > s && (b[e - 1] == ' ' || b[e - 1] == '\t'))
		e--;
	if (s == e)
		return; /* nothing but OWS: xr_st stays 0, and value_end finds no ID */
	for (k = s; k < e && rq_id_char(b[k]); k++)
		;
	if (k < e || e - s > REQCTX_ID_MAX) {
		for (k = 0; k < n; k++)
			value_byte(p, xr, b[k]);
		return;
	}
	p->xr_st = e < n ? 2 : 1; /* trailing OWS, or not (a fold may follow) */
	if (e - s > RQ_TP_AT)
		p->tp_st |= RQ_TP_LOST; /* as value_byte: the ID reaches the traceparent's digits */
	memcpy(xr, b + s, e - s);
	p->xr_len = (uint8_t)(e - s);
}

/*
 * Whole header lines from b[*pi], a name byte at the start of a line: those
 * whose name, value and line end are all in these n bytes are read at once.
 * Stops before the first line that is not whole here or not plain (the
 * byte-wise path reads that one, and judges it). Returns 1 if it read any
 * (*pi past them), 0 if none, -1 if a value makes the message invalid.
 */
static int whole_lines(struct rq_hdrs *p, char *xr, const unsigned char *b, size_t n, size_t *pi)
{
	size_t i = *pi;
	int any = 0;

	while (i < n && is_tchar(b[i])) {
		size_t j = name_end(b, i, n), v, end, len;
		unsigned char c0;

		if (!j || !(end = line_end(b, j + 1, n, &v)))
			break;
		len = j - i;
		c0 = lower(b[i]);
		p->cur = 0;
		if (len == rq_cfg.hdr_len && c0 == (unsigned char)rq_cfg.hdr_lc[0] &&
		    same_name(b + i, rq_cfg.hdr_lc, len, n - i))
			p->cur = H_XR;
		else if (len == CL_LEN && c0 == 'c' && same_name(b + i, cl_name, len, n - i))
			p->cur = H_CL;
		else if (len == TE_LEN && c0 == 't' && same_name(b + i, te_name, len, n - i))
			p->cur = H_TE;
		else if (len == TP_LEN && c0 == 't' && rq_cfg.traceparent &&
			 same_name(b + i, tp_name, len, n - i))
			p->cur = H_TP;
		else if (len == UP_LEN && c0 == 'u' && same_name(b + i, up_name, len, n - i))
			p->cur = H_UP;
		else if (len == SET_LEN && c0 == 'h' && same_name(b + i, set_name, len, n - i))
			p->up |= RQ_UP_SETS;
		if (p->lines < 255)
			p->lines++;
		i = end;
		any = 1;
		if (!p->cur)
			continue;
		value_start(p);
		if (p->cur == H_XR && xr && !p->xr_have)
			id_value(p, xr, b + j + 1, v - j - 1);
		else
			for (j++; j < v; j++)
				value_byte(p, xr, b[j]);
		if (value_end(p) < 0) {
			*pi = i;
			return -1;
		}
	}
	if (any) {
		p->st = S_LINE;
		p->idx = 0;
	}
	*pi = i;
	return any;
}

/*
 * Header name and value bytes, read the same way in requests and responses.
 * A value reqctx does not read is skipped in a tight loop. Advances *pi past
 * what it skipped; returns -1 if the message is malformed.
 */
static int header_byte(struct rq_hdrs *p, char *xr, const char *buf, size_t n, size_t *pi)
{
	size_t i = *pi;
	unsigned char c = (unsigned char)buf[i];

	switch (p->st) {
	case S_NAME:
		return name_byte(p, c);
	case S_VALUE:
		if (!p->cur) {
			while (c >= 0x20 && c != 0x7f && i + 1 < n)
				c = (unsigned char)buf[++i];
			*pi = i;
		}
		if (c == '\r') {
			p->st = S_VALUE_LF;
			return 0;
		}
		if (c == '\n')
			return value_end(p);
		if (c == 0 || (c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
		value_byte(p, xr, c);
		return 0;
	default: /* S_VALUE_LF */
		return c == '\n' ? value_end(p) : -1;
	}
}

/* Handles a byte at the start of a header line other than CR/LF. */
static int line_byte(struct rq_hdrs *p, unsigned char c)
{
	if (c == ' ' || c == '\t') { /* obsolete line folding */
		if (p->cur == H_CL || p->cur == H_TE)
			return -1;
		if (p->cur == H_XR && p->xr_mine) { /* the kept value was folded: drop it */
			p->xr_have = 0;
			p->xr_len = 0;
			p->xr_mine = 0;
		}
		if (p->cur == H_XR)
			p->xr_bad = 1;
		if (p->cur == H_TP)
			p->tp_st = (uint8_t)((p->tp_st & ~RQ_TP_OK) | RQ_TP_BAD);
		p->st = S_VALUE;
		return 0;
	}
	name_start(p);
	return name_byte(p, c);
}

static size_t dead(struct rq_hdrs *p, size_t n, enum rq_ev *ev)
{
	p->st = S_DEAD;
	*ev = RQ_EV_DEAD;
	return n;
}

/* Body bytes from buf[*i] on, in either direction; back between messages at its end. */
static int in_body(struct rq_hdrs *p, const char *buf, size_t n, size_t *i)
{
	int res;

	*i += body_feed(&p->body, buf + *i, n - *i, &res);
	if (res > 0)
		msg_reset(p);
	return res < 0 ? -1 : 0;
}

/*
 * A whole request line from b[*pi] (its first byte, A-Z), read at once:
 * method, target and version are all in these n bytes and plain. Returns 1
 * with the scanner at the first header line (*pi past the line), or 0, with
 * nothing changed, for the byte-wise path to read the line and judge it.
 */
static int request_line(struct rq_hdrs *p, const unsigned char *b, size_t n, size_t *pi)
{
	size_t i = *pi, j = i + 1, t, e;
	int method;

	while (j < n && j - i <= 32 && ((b[j] >= 'A' && b[j] <= 'Z') || b[j] == '-' || b[j] == '_'))
		j++;
	if (j - i > 32 || j == n || b[j] != ' ')
		return 0;
	t = to_ctl(b, j + 1, n, 0x21);
	if (t == j + 1 || n - t < 10 || b[t] != ' ' || memcmp(b + t + 1, "HTTP/1.", 7) ||
	    b[t + 8] < '0' || b[t + 8] > '9')
		return 0;
	e = t + 9;
	if (b[e] == '\r' && e + 1 < n && b[e + 1] == '\n')
		e += 2;
	else if (b[e] == '\n')
		e++;
	else
		return 0;
	method = j - i == 4 && !memcmp(b + i, "HEAD", 4) ? RQ_M_HEAD
		 : j - i == 7 && !memcmp(b + i, "CONNECT", 7) ? RQ_M_CONNECT : 0;
	msg_reset(p);
	p->method = (uint8_t)method;
	p->st = S_LINE;
	*pi = e;
	return 1;
}

/*
 * A whole status line from b[*pi], read at once (see request_line). Returns
 * 1 with the scanner after it (*pi past its LF), or 0 with nothing changed.
 */
static int status_line(struct rq_hdrs *p, const unsigned char *b, size_t n, size_t *pi)
{
	size_t i = *pi, k = i + 12;

	if (n - i < 13 || memcmp(b + i, "HTTP/1.", 7) || b[i + 7] < '0' || b[i + 7] > '9' ||
	    b[i + 8] != ' ' || b[i + 9] < '0' || b[i + 9] > '9' || b[i + 10] < '0' ||
	    b[i + 10] > '9' || b[i + 11] < '0' || b[i + 11] > '9' ||
	    (b[k] != ' ' && b[k] != '\r' && b[k] != '\n'))
		return 0;
	for (;;) { /* the reason phrase: tabs and CRs may be in it, its LF ends it */
		k = to_ctl(b, k, n, 0x20);
		if (k == n || (b[k] != '\t' && b[k] != '\r' && b[k] != '\n'))
			return 0;
		if (b[k] == '\n')
			break;
		k++;
	}
	msg_reset(p);
	p->status = (uint16_t)((b[i + 9] - '0') * 100 + (b[i + 10] - '0') * 10 + (b[i + 11] - '0'));
	p->st = S_LINE;
	*pi = k + 1;
	return 1;
}

static int req_line(struct rq_hdrs *p, const char *buf, size_t n, size_t *pi);

/*
 * A request head ended (read or written): what follows it. CONNECT: a
 * tunnel; Transfer-Encoding: a chunked body, or none that can be delimited
 * if chunked is not last (the scanner stops); Content-Length: that many
 * bytes; else the next request.
 */
static void req_framed(struct rq_hdrs *p)
{
	if (p->method == RQ_M_CONNECT) {
		p->st = S_DEAD;
	} else if (p->te_seen) {
		p->st = p->te_chunked ? S_BODY : S_DEAD;
		p->body = (struct rq_body){ .st = B_CSIZE };
	} else if (p->cl) {
		p->st = S_BODY;
		p->body = (struct rq_body){ .st = B_LEN, .left = p->cl };
	} else {
		p->st = S_START;
		p->idx = 0;
	}
}

size_t rq_req_feed(struct rq_req *r, const char *buf, size_t n, enum rq_ev *ev)
{
	const unsigned char *b = (const unsigned char *)buf;
	struct rq_hdrs *p = &r->h;
	size_t i = 0;
	int w;

	*ev = RQ_EV_NONE;
	while (i < n) {
		unsigned char c = (unsigned char)buf[i];

		switch (p->st) {
		case S_DEAD:
			return n;
		case S_BODY:
			if (in_body(p, buf, n, &i) < 0)
				return dead(p, n, ev);
			if (p->st == S_START) {
				*ev = RQ_EV_BODY;
				return i;
			}
			continue;
		case S_START:
			if (c == '\r' || c == '\n')
				break; /* empty lines before a request are allowed */
			if (c < 'A' || c > 'Z')
				return dead(p, n, ev);
			if (request_line(p, b, n, &i))
				continue;
			/* the byte-wise path from this byte */
			/* fall through */
		case S_METHOD:
		case S_TARGET:
		case S_VERSION:
		case S_RL_LF:
			if (req_line(p, buf, n, &i) < 0)
				return dead(p, n, ev);
			break;
		case S_LINE:
			if (c == '\r') {
				p->st = S_END_LF;
				break;
			}
			if (c == '\n')
				goto head_end;
			if (is_tchar(c) && (w = whole_lines(p, r->xr, b, n, &i)) != 0) {
				if (w < 0)
					return dead(p, n, ev);
				continue;
			}
			if (line_byte(p, c) < 0)
				return dead(p, n, ev);
			break;
		case S_NAME:
		case S_VALUE:
		case S_VALUE_LF:
			if (header_byte(p, r->xr, buf, n, &i) < 0)
				return dead(p, n, ev);
			break;
		case S_END_LF:
			if (c != '\n')
				return dead(p, n, ev);
		head_end:
			*ev = RQ_EV_HEAD;
			req_framed(p);
			return i + 1;
		}
		i++;
	}
	return n;
}

size_t rq_resp_feed(struct rq_hdrs *p, const char *buf, size_t n, int method,
		    enum rq_ev *ev)
{
	static const char version[] = "HTTP/1.";
	const unsigned char *b = (const unsigned char *)buf;
	size_t i = 0;
	int w;

	*ev = RQ_EV_NONE;
	while (i < n) {
		unsigned char c = (unsigned char)buf[i];

		switch (p->st) {
		case S_DEAD:
			return n;
		case S_BODY:
			if (in_body(p, buf, n, &i) < 0)
				return dead(p, n, ev);
			continue;
		case S_START:
			if (status_line(p, b, n, &i)) {
				*ev = RQ_EV_STATUS;
				return i;
			}
			msg_reset(p);
			p->st = S_RVERSION;
			/* fall through */
		case S_RVERSION:
			if (p->idx < 7 ? c != (unsigned char)version[p->idx]
			    : p->idx == 7 ? (c < '0' || c > '9') : c != ' ')
				return dead(p, n, ev);
			if (++p->idx == 9) {
				p->st = S_RSTATUS;
				p->idx = 0;
			}
			break;
		case S_RSTATUS:
			if (p->idx < 3) {
				if (c < '0' || c > '9')
					return dead(p, n, ev);
				p->status = (uint16_t)(p->status * 10 + (c - '0'));
				p->idx++;
				break;
			}
			if (c == ' ') {
				p->st = S_RREASON;
				break;
			}
			if (c != '\r' && c != '\n')
				return dead(p, n, ev);
			p->st = S_RREASON;
			continue; /* the line ends here: let S_RREASON see it */
		case S_RREASON:
			if (c == '\n') {
				p->st = S_LINE;
				p->cur = 0;
				p->idx = 0;
				*ev = RQ_EV_STATUS;
				return i + 1;
			}
			if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
				return dead(p, n, ev);
			break;
		case S_LINE:
			if (c == '\r' || c == '\n') {
				if (!p->idx) { /* report the blank line once, before it */
					p->idx = 1;
					*ev = RQ_EV_BLANK;
					return i;
				}
				if (c == '\r') {
					p->st = S_END_LF;
					break;
				}
				goto head_end;
			}
			if (is_tchar(c) && (w = whole_lines(p, NULL, b, n, &i)) != 0) {
				if (w < 0)
					return dead(p, n, ev);
				continue;
			}
			if (line_byte(p, c) < 0)
				return dead(p, n, ev);
			break;
		case S_NAME:
		case S_VALUE:
		case S_VALUE_LF:
			if (header_byte(p, NULL, buf, n, &i) < 0)
				return dead(p, n, ev);
			break;
		case S_END_LF:
			if (c != '\n')
				return dead(p, n, ev);
		head_end:
			*ev = RQ_EV_END;
			if (p->status < 200) {
				p->st = p->status == 101 ? S_DEAD : S_START;
				p->idx = 0;
			} else if (method == RQ_M_HEAD || p->status == 204 || p->status == 304) {
				p->st = S_START;
				p->idx = 0;
			} else if (method == RQ_M_CONNECT && p->status < 300) {
				p->st = S_DEAD;
			} else if (p->te_seen) {
				p->st = p->te_chunked ? S_BODY : S_DEAD;
				p->body = (struct rq_body){ .st = B_CSIZE };
			} else if (p->cl_seen) {
				p->st = p->cl ? S_BODY : S_START;
				p->idx = 0;
				p->body = (struct rq_body){ .st = B_LEN, .left = p->cl };
			} else {
				p->st = S_DEAD; /* delimited by close */
			}
			return i + 1;
		}
		i++;
	}
	return n;
}

/* The request line, in either direction: its byte c at *i. Returns 1 at its end, -1 if invalid. */
static int req_line(struct rq_hdrs *p, const char *buf, size_t n, size_t *pi)
{
	static const char version[] = "HTTP/1.";
	size_t i = *pi;
	unsigned char c = (unsigned char)buf[i];

	switch (p->st) {
	case S_START:
		if (c == '\r' || c == '\n')
			return 0;
		if (c < 'A' || c > 'Z')
			return -1;
		msg_reset(p);
		p->st = S_METHOD;
		p->idx = 1;
		p->method = c == 'H' ? RQ_M_HEAD : c == 'C' ? RQ_M_CONNECT : 0;
		return 0;
	case S_METHOD:
		if (c == ' ') {
			if ((p->method == RQ_M_HEAD && p->idx != 4) ||
			    (p->method == RQ_M_CONNECT && p->idx != 7))
				p->method = 0;
			p->st = S_TARGET;
			p->idx = 0;
			return 0;
		}
		if (!((c >= 'A' && c <= 'Z') || c == '-' || c == '_') || p->idx >= 32)
			return -1;
		if ((p->method == RQ_M_HEAD && (p->idx >= 4 || "HEAD"[p->idx] != c)) ||
		    (p->method == RQ_M_CONNECT && (p->idx >= 7 || "CONNECT"[p->idx] != c)))
			p->method = 0;
		p->idx++;
		return 0;
	case S_TARGET:
		while (c > 0x20 && c != 0x7f && i + 1 < n) {
			p->idx = 1;
			c = (unsigned char)buf[++i];
		}
		*pi = i;
		if (c == ' ') {
			if (!p->idx)
				return -1;
			p->st = S_VERSION;
			p->idx = 0;
		} else if (c <= 0x20 || c == 0x7f) {
			return -1;
		} else {
			p->idx = 1;
		}
		return 0;
	case S_VERSION:
		if (p->idx < 7) {
			if (c != (unsigned char)version[p->idx])
				return -1;
		} else if (p->idx == 7) {
			if (c < '0' || c > '9')
				return -1;
		} else if (c == '\r') {
			p->st = S_RL_LF;
			return 0;
		} else if (c == '\n') {
			goto end;
		} else {
			return -1;
		}
		p->idx++;
		return 0;
	default: /* S_RL_LF */
		if (c != '\n')
			return -1;
	end:
		p->st = S_LINE;
		p->cur = 0;
		p->idx = 0;
		return 1;
	}
}

size_t rq_oreq_feed(struct rq_hdrs *p, const char *buf, size_t n, enum rq_ev *ev)
{
	char scratch[REQCTX_ID_MAX]; /* the ID's validity is all that counts */
	size_t i = 0;
	int r;

	*ev = RQ_EV_NONE;
	while (i < n) {
		unsigned char c = (unsigned char)buf[i];

		switch (p->st) {
		case S_DEAD:
			return n;
		case S_BODY:
			if (in_body(p, buf, n, &i) < 0)
				return dead(p, n, ev);
			continue;
		case S_START:
		case S_METHOD:
		case S_TARGET:
		case S_VERSION:
		case S_RL_LF:
			if ((r = req_line(p, buf, n, &i)) < 0)
				return dead(p, n, ev);
			if (r) {
				*ev = RQ_EV_STATUS;
				return i + 1;
			}
			break;
		case S_LINE:
			if (c == '\r' || c == '\n') {
				if (!p->idx) { /* report the blank line once, before it */
					p->idx = 1;
					*ev = RQ_EV_BLANK;
					return i;
				}
				if (c == '\r') {
					p->st = S_END_LF;
					break;
				}
				goto head_end;
			}
			if (line_byte(p, c) < 0)
				return dead(p, n, ev);
			break;
		case S_NAME:
		case S_VALUE:
		case S_VALUE_LF:
			if (header_byte(p, scratch, buf, n, &i) < 0)
				return dead(p, n, ev);
			break;
		case S_END_LF:
			if (c != '\n')
				return dead(p, n, ev);
		head_end:
			*ev = RQ_EV_END;
			req_framed(p);
			return i + 1;
		}
		i++;
	}
	return n;
}

int rq_oreq_after_line(const struct rq_hdrs *p)
{
	return p->st == S_LINE && p->lines == 0 && p->idx == 0;
}

void rq_hdrs_opaque(struct rq_hdrs *p, uint64_t n)
{
	struct rq_body *b = &p->body;

	if (n == 0 || p->st == S_DEAD)
		return;
	if (p->st != S_BODY || (b->st != B_LEN && b->st != B_CDATA) || b->left < n) {
		p->st = S_DEAD;
		return;
	}
	b->left -= n;
	if (b->left == 0) {
		if (b->st == B_LEN)
			msg_reset(p);
		else
			b->st = B_CDATA_CR;
	}
}
