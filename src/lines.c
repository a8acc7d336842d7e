#include "lines.h"

#include "carry.h"

#include <string.h>

#include "config.h"
#include "correlate.h"

RQ_TLS unsigned rq_ln_epoch;

size_t rq_ln_load(int fd, struct rq_fd *e, uint32_t *st, char rest[RQ_PFX_MAX], size_t *skip)
{
	for (int tries = 0;; tries++) {
		uint32_t s = atomic_load_explicit(&e->line, memory_order_acquire);
		size_t pend = rq_ln_pend(s), plen = rq_ln_plen(s);
		const struct rq_log *lg;

		*st = s;
		*skip = 0;
		if (!plen)
			return 0;
		lg = rq_log_peek(fd);
		if (!lg || pend >= plen || plen > RQ_PFX_MAX) { /* no text to finish: the line goes on */
			*st = RQ_LN_MID;
			return 0;
		}
		memcpy(rest, lg->pfx[rq_ln_which(s)] + pend, plen - pend);
		*skip = rq_ln_skip(s);
		/* Another cut published meanwhile: its text may be what was copied. */
		if (atomic_load_explicit(&e->line, memory_order_acquire) == s || tries == 3)
			return plen - pend;
	}
}

uint32_t rq_ln_cut_text(int fd, uint32_t st0, const char *text, size_t plen, size_t pend,
			size_t skip)
{
	struct rq_log *lg = rq_log_peek(fd);
	int which = !rq_ln_which(st0);

	if (!lg || pend >= plen || plen > RQ_PFX_MAX || skip > 0x1ff)
		return RQ_LN_MID; /* (never for a log stream: it has its record) */
	memcpy(lg->pfx[which], text, plen);
	return rq_ln_cut(which, pend, plen, skip);
}

void rq_walk_init(struct rq_walk *w, const struct iovec *iov, int iovcnt, size_t left, int mid,
		  const char *rest, size_t rlen, size_t skip, const struct rq_texts *tx)
{
	w->iov = iov;
	w->iovcnt = iovcnt;
	w->i = 0;
	w->off = 0;
	w->left = left;
	w->mid = mid || rlen;
	w->due = rest;
	w->due_len = rlen;
	w->due_at = skip;
	w->due_kind = RQ_SEG_REST;
	w->fmt = rq_cfg.format;
	w->tx = tx;
	w->pfx = tx ? tx->pfx : NULL;
	w->plen = tx ? tx->plen : 0;
	w->cm = NULL;
}

/* 1 if the caller's bytes from the walk's position on begin with text[0..len). */
static int begins_with(const struct rq_walk *w, const char *text, size_t len)
{
	int i = w->i;
	size_t off = w->off, k = 0;

	if (unlikely(rq_relaying()) && rq_relay_prefixed(w->iov, w->iovcnt, i, off, w->left))
		return 1; /* a relayed line: its writer's prefix stands */
	if (w->left < len)
		return 0;
	while (k < len) {
		size_t n = w->iov[i].iov_len - off;

		if (n > len - k)
			n = len - k;
		if (memcmp((const char *)w->iov[i].iov_base + off, text + k, n))
			return 0;
		k += n;
		i++;
		off = 0;
	}
	return 1;
}

int rq_walk_own(const struct rq_walk *w)
{
	return begins_with(w, w->pfx, w->plen);
}

int rq_walk_place(struct rq_walk *w)
{
	struct rq_line ln = { w->iov, w->iovcnt, w->i, w->off, w->left };
	size_t at, n = rq_prefix_place(w->tx, &ln, &w->due, &at);

	if (!n)
		return 0;
	w->due_len = n;
	w->due_at = at;
	w->due_kind = RQ_SEG_PFX;
	return 1;
}

/* ---- batched log correlation ---- */

#define GATHER 2048 /* bytes of a line spread over iovecs that are searched for a request line */

void rq_cmemo_drop(struct rq_cmemo *m, size_t done)
{
	int k = 0;

	while (k < m->n && m->e[k].at < done)
		k++;
	if (k == m->n) {
		m->n = 0;
		m->used = 0; /* no text is needed any more */
		return;
	}
	memmove(m->e, m->e + k, (size_t)(m->n - k) * sizeof(*m->e));
	m->n -= k;
}

void rq_cmemo_release(struct rq_cmemo *m, size_t from, int after)
{
	for (int k = m->n - 1; k >= 0 && m->e[k].at >= from; k--)
		if (!after || m->e[k].at > from)
			rq_corr_untake(&rq_corr_ring, m->e[k].taken);
	m->n = 0;
}

void rq_cmemo_move(struct rq_cmemo *m, struct rq_cment *e, int cap, char *buf, size_t size)
{
	memcpy(e, m->e, (size_t)m->n * sizeof(*e));
	memcpy(buf, m->buf, m->used);
	m->e = e;
	m->cap = cap;
	m->buf = buf;
	m->size = size;
	m->full = 0;
}

/* The entry of the line starting at caller offset `at`, or NULL (entries are in order). */
static struct rq_cment *recall(const struct rq_cmemo *m, size_t at)
{
	int lo = 0, hi = m->n;

	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (m->e[mid].at < at)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->n && m->e[lo].at == at ? &m->e[lo] : NULL;
}

/*
 * The line at the walk's position: its bytes in this call (newline
 * excluded) in one piece, gathered into g when they span iovecs (the first
 * GATHER of them); sets *single if the call holds this line and nothing
 * else. Returns their length and sets *s.
 */
static size_t line_bytes(const struct rq_walk *w, size_t at, char g[GATHER], const char **s,
			 int *single)
{
	const char *p = (const char *)w->iov[w->i].iov_base + w->off;
	size_t avail = w->iov[w->i].iov_len - w->off, n = 0;
	const char *nl;
	int i;

	if (avail > w->left)
		avail = w->left;
	nl = memchr(p, '\n', avail);
	*single = at == 0 && (nl ? (size_t)(nl - p) + 1 == w->left : avail == w->left);
	if (nl || avail == w->left) {
		*s = p;
		return nl ? (size_t)(nl - p) : avail;
	}
	/* spread over iovecs: gather what fits, and look for its end in the rest */
	*single = at == 0; /* unless a newline comes before the call's last byte */
	memcpy(g, p, avail < GATHER ? avail : GATHER);
	n = avail < GATHER ? avail : GATHER;
	for (i = w->i + 1, avail = w->left - avail; i < w->iovcnt && avail; i++) {
		const char *q = w->iov[i].iov_base;
		size_t len = w->iov[i].iov_len < avail ? w->iov[i].iov_len : avail, take;

		nl = memchr(q, '\n', len);
		take = nl ? (size_t)(nl - q) : len;
		if (n < GATHER) {
			size_t c = take < GATHER - n ? take : GATHER - n;

			memcpy(g + n, q, c);
			n += c;
		}
		avail -= len;
		if (nl) {
			if (at == 0)
				*single = avail == 0 && (size_t)(nl - q) + 1 == len;
			break;
		}
	}
	*s = g;
	return n;
}

int rq_walk_corr(struct rq_walk *w, struct rq_seg *s)
{
	struct rq_cmemo *m = w->cm;
	size_t at = m->total - w->left, ln, pos;
	struct rq_cment *e;
	struct rq_texts t;

	if (at < m->high) {
		if (!(e = recall(m, at)) || (!e->plen && !e->olen))
			return RQ_WALK_KEEP;
	} else {
		const char *p = (const char *)w->iov[w->i].iov_base + w->off;
		size_t avail = w->iov[w->i].iov_len - w->off;
		const struct rq_ctx *cur;
		char g[GATHER];
		const char *line;
		struct rq_ctx c;
		uint64_t taken;
		int single, maybe;

		if (avail > w->left)
			avail = w->left;
		if ((rq_corr_line_end(p, avail, &maybe) < avail || avail == w->left) && !maybe) {
			m->high = at + 1; /* the whole line is here, and names no request line */
			return RQ_WALK_KEEP;
		}
		if (m->n == m->cap || m->size - m->used < RQ_TEXTS_MAX) {
			if (m->replay) { /* deciding would take a request that could not be recalled */
				m->full = 1;
				return RQ_WALK_STOP;
			}
			m->n = 0; /* nothing walks these bytes again: every text so far was taken */
			m->used = 0;
		}
		m->high = at + 1;
		ln = line_bytes(w, at, g, &line, &single);
		cur = rq_ctx_cur();
		if (!rq_corr_line(&rq_corr_ring, line, ln, cur, single, &c, &taken))
			return RQ_WALK_KEEP;
		e = &m->e[m->n++];
		e->at = at;
		e->taken = taken;
		e->off = (uint32_t)m->used;
		if (c.serial == cur->serial) { /* its own request: the current texts */
			e->plen = e->olen = 0;
			return RQ_WALK_KEEP;
		}
		m->used += rq_prefix_render_ctx(&c, m->buf + m->used, &t);
		e->plen = (uint16_t)t.plen;
		e->olen = (uint16_t)t.olen;
	}
	t.pfx = m->buf + e->off;
	t.plen = e->plen;
	t.obj = t.pfx + e->plen;
	t.olen = e->olen;
	if (w->fmt == RQ_FMT_PREFIX) {
		if (begins_with(w, t.pfx, t.plen))
			return 0; /* the line has this very prefix already */
		s->p = t.pfx;
		s->len = t.plen;
		s->kind = RQ_SEG_PFX;
		return 1;
	}
	{
		struct rq_line l = { w->iov, w->iovcnt, w->i, w->off, w->left };
		size_t n = rq_prefix_place(&t, &l, &w->due, &pos);

		if (!n)
			return 0;
		w->due_len = n;
		w->due_at = pos;
		w->due_kind = RQ_SEG_PFX;
		if (pos)
			return 0; /* after a JSON line's brace */
		s->p = w->due;
		s->len = n;
		s->kind = RQ_SEG_PFX;
		w->due_len = 0;
		return 1;
	}
}
