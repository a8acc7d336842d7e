#include "prefix.h"

#include <string.h>


RQ_TLS struct rq_pfx_cache rq_pfx_cache;

/* ---- rendering ---- */

static size_t put(char *d, const char *s, size_t n)
{
	memcpy(d, s, n);
	return n;
}

/* "[req:<id>] " */
static size_t render_prefix(char *buf, const struct rq_ctx *c)
{
	size_t n = put(buf, rq_cfg.pfx_head, rq_cfg.pfx_head_len);

	n += put(buf + n, c->id, c->len);
	return n + put(buf + n, rq_cfg.pfx_tail, rq_cfg.pfx_tail_len);
}

/* "<field>=<id> ", the ID quoted when it has a '=' (IDs have no space, quote or backslash). */
static size_t render_logfmt(char *buf, const struct rq_ctx *c)
{
	int quote = memchr(c->id, '=', c->len) != NULL;
	size_t n = put(buf, rq_cfg.field, rq_cfg.field_len);

	buf[n++] = '=';
	if (quote)
		buf[n++] = '"';
	n += put(buf + n, c->id, c->len);
	if (quote)
		buf[n++] = '"';
	buf[n++] = ' ';
	return n;
}

/* "\"<field>\":\"<id>\"," (IDs need no escaping in a JSON string). */
static size_t render_member(char *buf, const struct rq_ctx *c)
{
	size_t n = 0;

	buf[n++] = '"';
	n += put(buf + n, rq_cfg.field, rq_cfg.field_len);
	n += put(buf + n, "\":\"", 3);
	n += put(buf + n, c->id, c->len);
	n += put(buf + n, "\",", 2);
	return n;
}

static size_t render_start(char *buf, const struct rq_ctx *c)
{
	return rq_cfg.format == RQ_FMT_LOGFMT ? render_logfmt(buf, c) : render_prefix(buf, c);
}

size_t rq_prefix_render(char buf[RQ_INS_MAX])
{
	return render_start(buf, rq_ctx_cur());
}

/* Renders every text of context c into buf (RQ_TEXTS_MAX bytes). */
static void render_of(const struct rq_ctx *c, char *buf, size_t *plen, size_t *olen)
{
	*plen = render_start(buf, c);
	*olen = rq_cfg.format >= RQ_FMT_JSON ? render_member(buf + *plen, c) : 0;
}

static void render(char *buf, size_t *plen, size_t *olen)
{
	render_of(rq_ctx_cur(), buf, plen, olen);
}

size_t rq_prefix_render_ctx(const struct rq_ctx *c, char buf[RQ_TEXTS_MAX], struct rq_texts *t)
{
	size_t plen, olen;

	render_of(c, buf, &plen, &olen);
	t->pfx = buf;
	t->plen = plen;
	t->obj = buf + plen;
	t->olen = olen;
	return plen + olen;
}

void rq_prefix_fill(struct rq_pfx_cache *p, uint64_t serial)
{
	size_t plen, olen;

	p->plen = 0; /* (a handler that interrupts this finds the cache busy) */
	p->serial = serial;
	p->cfg_gen = rq_cfg.gen;
	render(p->text, &plen, &olen);
	p->olen = olen;
	p->plen = plen;
}

const char *rq_prefix_acquire(char buf[RQ_TEXTS_MAX], struct rq_texts *t)
{
	size_t plen, olen;

	if (rq_prefix_take(&plen)) {
		rq_prefix_texts(t);
		return rq_pfx_cache.text;
	}
	render(buf, &plen, &olen);
	t->pfx = buf;
	t->plen = plen;
	t->obj = buf + plen;
	t->olen = olen;
	return buf;
}

/* ---- where a line gets its text ---- */

/* A reader of a line's bytes in this call, across iovecs. */
struct rd {
	const struct iovec *iov;
	int iovcnt, i;
	const unsigned char *p; /* the current iovec's bytes from the next one on */
	size_t avail;           /* of them, in this call */
	size_t left;            /* in this call after those */
};

static void rd_init(struct rd *r, const struct rq_line *ln)
{
	size_t n = ln->i < ln->iovcnt ? ln->iov[ln->i].iov_len - ln->off : 0;

	r->iov = ln->iov;
	r->iovcnt = ln->iovcnt;
	r->i = ln->i;
	r->p = n ? (const unsigned char *)ln->iov[ln->i].iov_base + ln->off : NULL;
	r->avail = n < ln->left ? n : ln->left;
	r->left = ln->left - r->avail;
}

static int rd_next_iov(struct rd *r)
{
	while (r->left && ++r->i < r->iovcnt) {
		size_t n = r->iov[r->i].iov_len;

		if (!n)
			continue;
		r->p = r->iov[r->i].iov_base;
		r->avail = n < r->left ? n : r->left;
		r->left -= r->avail;
		return 1;
	}
	return 0;
}

/* The next byte of the call, or -1 at its end. */
static inline int rd_get(struct rd *r)
{
	if (unlikely(!r->avail) && !rd_next_iov(r))
		return -1;
	r->avail--;
	return *r->p++;
}

/*
 * The line's bytes in this call when they are in one piece (the line ends,
 * or the call does, in the iovec it starts in): sets *s and returns their
 * length; -1 if they are not.
 */
static long flat(const struct rd *r, const unsigned char **s)
{
	const unsigned char *nl = r->avail ? memchr(r->p, '\n', r->avail) : NULL;

	if (!nl && r->left)
		return -1;
	*s = r->p;
	return nl ? nl - r->p : (long)r->avail;
}

/* 1 if the line read by r begins with text[0..n). */
static int starts_with(struct rd *r, const char *text, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (rd_get(r) != (unsigned char)text[k])
			return 0;
	return 1;
}

static int blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* 1 if s[0..n) ends with the field. */
static int ends_with_field(const unsigned char *s, size_t n)
{
	size_t f = rq_cfg.field_len;

	return n >= f && s[n - 1] == (unsigned char)rq_cfg.field[f - 1] &&
	       !memcmp(s + n - f, rq_cfg.field, f);
}

/*
 * Quick looks that rule a key out in the line's bytes s[0..n) of this call
 * (in one piece): in logfmt, no '=' right after the field at a word start;
 * in JSON, no ':' right after "<field>" and blanks. They look at every '='
 * or ':' with memchr.
 */
static int logfmt_maybe(const unsigned char *s, size_t n)
{
	const unsigned char *p;

	for (p = s; (p = memchr(p, '=', (size_t)(s + n - p))); p++) {
		size_t k = (size_t)(p - s);

		if (ends_with_field(s, k) && (k == rq_cfg.field_len || p[-rq_cfg.field_len - 1] <= ' '))
			return 1;
	}
	return 0;
}

static int json_maybe(const unsigned char *s, size_t n)
{
	const unsigned char *p;

	for (p = s; (p = memchr(p, ':', (size_t)(s + n - p))); p++) {
		const unsigned char *q = p;

		while (q > s && blank(q[-1]))
			q--;
		if (q - s >= (long)rq_cfg.field_len + 2 && q[-1] == '"' &&
		    q[-(long)rq_cfg.field_len - 2] == '"' &&
		    ends_with_field(s, (size_t)(q - 1 - s)))
			return 1;
	}
	return 0;
}

/*
 * 1 if the line, from r on, has the field as a logfmt key: a run of bytes
 * above the space other than '=' and '"' that starts a word and is followed
 * by '='. Values are skipped as logfmt parsers read them: a quoted one to
 * its closing quote (backslash escapes), another to the next space.
 */
static int logfmt_has(struct rd *r)
{
	int c = rd_get(r);

	for (;;) {
		size_t k = 0;
		int match = 1;

		while (c >= 0 && c != '\n' && c <= ' ')
			c = rd_get(r);
		if (c < 0 || c == '\n')
			return 0;
		for (; c > ' ' && c != '=' && c != '"'; c = rd_get(r), k++)
			match = match && k < rq_cfg.field_len && c == (unsigned char)rq_cfg.field[k];
		if (c == '=') {
			if (match && k == rq_cfg.field_len)
				return 1;
			c = rd_get(r);
		}
		if (c == '"') { /* a quoted value (or a stray quoted word) */
			while ((c = rd_get(r)) >= 0 && c != '\n' && c != '"')
				if (c == '\\' && ((c = rd_get(r)) < 0 || c == '\n'))
					return 0;
			if (c != '"')
				return 0;
			c = rd_get(r);
		}
		while (c > ' ') /* the rest of the word */
			c = rd_get(r);
	}
}

/*
 * 1 if the JSON object whose brace r has just passed has the field as a
 * top-level key (a string in key position followed by blanks and ':'),
 * within the line's bytes of this call. Keys are compared as written (an
 * escaped spelling of the field is another key).
 */
static int json_has(struct rd *r)
{
	int depth = 1, key = 1, c = rd_get(r);

	while (c >= 0 && c != '\n') {
		if (c == '"') {
			int is_key = depth == 1 && key, match = is_key;
			size_t k = 0;

			while ((c = rd_get(r)) >= 0 && c != '\n' && c != '"') {
				if (c == '\\') {
					match = 0;
					if ((c = rd_get(r)) < 0 || c == '\n')
						return 0;
					continue;
				}
				match = match && k < rq_cfg.field_len &&
					c == (unsigned char)rq_cfg.field[k];
				k++;
			}
			if (c != '"')
				return 0;
			if (is_key)
				key = 0;
			if (is_key && match && k == rq_cfg.field_len) {
				while (blank(c = rd_get(r)))
					;
				if (c == ':')
					return 1;
				continue; /* c is the next byte to look at */
			}
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (--depth == 0)
				return 0;
		} else if (c == ',' && depth == 1) {
			key = 1;
		} else if (c == ':' && depth == 1) {
			key = 0;
		}
		c = rd_get(r);
	}
	return 0;
}

/*
 * A JSON line: up to RQ_JSON_LEAD blanks, '{', blanks, then '"' (a member),
 * '}' (an empty object: *empty is set) or the end of the line's bytes in
 * this call (taken for members to come). Returns the caller bytes up to and
 * including the brace, or 0 if the line is not one; r is left after the brace.
 */
static size_t json_open(struct rd *r, int *empty)
{
	struct rd after;
	size_t lead = 0;
	int c;

	while (blank(c = rd_get(r)))
		if (++lead > RQ_JSON_LEAD)
			return 0;
	if (c != '{')
		return 0;
	after = *r;
	while (blank(c = rd_get(r)))
		;
	*r = after;
	*empty = c == '}';
	return c == '"' || c == '}' || c == '\n' || c < 0 ? lead + 1 : 0;
}

/*
 * rq_prefix_place for the line read by r, whose bytes in this call are
 * s[0..n) when they are in one piece (n -1 when they are not).
 */
static size_t place(const struct rq_texts *t, struct rd *r, const unsigned char *s, long n,
		    const char **text, size_t *at)
{
	struct rd start = *r;
	size_t open;
	int empty;

	*at = 0;
	*text = t->pfx;
	switch (rq_cfg.format) {
	case RQ_FMT_LOGFMT:
		if (!t->plen || ((n < 0 || logfmt_maybe(s, (size_t)n)) && logfmt_has(r)))
			return 0;
		return t->plen;
	case RQ_FMT_JSON:
	case RQ_FMT_AUTO:
		if (t->olen && (open = json_open(r, &empty))) {
			if ((n < 0 || json_maybe(s + open, (size_t)n - open)) && json_has(r))
				return 0;
			*text = t->obj;
			*at = open;
			return empty ? t->olen - 1 : t->olen;
		}
		*r = start;
		break;
	default:
		break;
	}
	if (!t->plen)
		return 0;
	if (n >= 0)
		return (size_t)n >= t->plen && *s == (unsigned char)*t->pfx &&
		       !memcmp(s, t->pfx, t->plen) ? 0 : t->plen;
	return starts_with(r, t->pfx, t->plen) ? 0 : t->plen;
}

size_t rq_prefix_place(const struct rq_texts *t, const struct rq_line *ln, const char **text,
		       size_t *at)
{
	const unsigned char *s = NULL;
	struct rd r;
	long n;

	rd_init(&r, ln);
	n = flat(&r, &s);
	return place(t, &r, s, n, text, at);
}

size_t rq_prefix_place_line(const struct rq_texts *t, const char *line, size_t n,
			    const char **text, size_t *at)
{
	struct rd r = { NULL, 0, 0, (const unsigned char *)line, n, 0 };

	return place(t, &r, r.p, (long)n - 1, text, at);
}
