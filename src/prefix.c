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

size_t rq_prefix_render(char buf[RQ_INS_MAX])
{
	const struct rq_ctx *c = rq_ctx_cur();

	return rq_cfg.format == RQ_FMT_LOGFMT ? render_logfmt(buf, c) : render_prefix(buf, c);
}

/* Renders every text of the current context into buf (RQ_TEXTS_MAX bytes). */
static void render(char *buf, size_t *plen, size_t *olen)
{
	const struct rq_ctx *c = rq_ctx_cur();

	*plen = rq_prefix_render(buf);
	*olen = rq_cfg.format >= RQ_FMT_JSON ? render_member(buf + *plen, c) : 0;
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
	const unsigned char *nl = memchr(r->p, '\n', r->avail);

	if (!nl && r->left)
		return -1;
	*s = r->p;
	return nl ? nl - r->p : (long)r->avail;
}

/* 1 if the line begins with text[0..n). */
static int starts_with(const struct rq_line *ln, const char *text, size_t n)
{
	struct rd r;

	rd_init(&r, ln);
	for (size_t k = 0; k < n; k++)
		if (rd_get(&r) != (unsigned char)text[k])
			return 0;
	return 1;
}

/* 1 if needle[0..n) occurs in the line's bytes of this call, or if they are not in one piece. */
static int maybe_in(const struct rd *r, const char *needle, size_t n)
{
	const unsigned char *s;
	long len = flat(r, &s);

	return len < 0 || memmem(s, (size_t)len, needle, n) != NULL;
}

static int blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r';
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
 * top-level key, within the line's bytes of this call. Keys are compared as
 * written (an escaped spelling of the field is another key).
 */
static int json_has(struct rd *r)
{
	int depth = 1, key = 1, c;

	while ((c = rd_get(r)) >= 0 && c != '\n') {
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
			if (is_key && match && k == rq_cfg.field_len)
				return 1;
			if (is_key)
				key = 0;
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

size_t rq_prefix_place(const struct rq_texts *t, const struct rq_line *ln, const char **text,
		       size_t *at)
{
	char key[RQ_FIELD_MAX + 2];
	struct rd r;
	size_t open;
	int empty;

	*at = 0;
	*text = t->pfx;
	rd_init(&r, ln);
	switch (rq_cfg.format) {
	case RQ_FMT_LOGFMT:
		memcpy(key, rq_cfg.field, rq_cfg.field_len);
		key[rq_cfg.field_len] = '=';
		if (!t->plen || (maybe_in(&r, key, rq_cfg.field_len + 1) && logfmt_has(&r)))
			return 0;
		return t->plen;
	case RQ_FMT_JSON:
	case RQ_FMT_AUTO:
		if (t->olen && (open = json_open(&r, &empty))) {
			key[0] = '"';
			memcpy(key + 1, rq_cfg.field, rq_cfg.field_len);
			key[rq_cfg.field_len + 1] = '"';
			if (maybe_in(&r, key, rq_cfg.field_len + 2) && json_has(&r))
				return 0;
			*text = t->obj;
			*at = open;
			return empty ? t->olen - 1 : t->olen;
		}
		break;
	default:
		break;
	}
	return t->plen && !starts_with(ln, t->pfx, t->plen) ? t->plen : 0;
}
