#include "lines.h"

#include "carry.h"

#include <string.h>

#include "config.h"

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
}

/* 1 if the caller's bytes from the walk's position on begin with the prefix itself. */
int rq_walk_own(const struct rq_walk *w)
{
	int i = w->i;
	size_t off = w->off, k = 0;

	if (unlikely(rq_relaying()) && rq_relay_prefixed(w->iov, w->iovcnt, i, off, w->left))
		return 1; /* a relayed line: its writer's prefix stands */
	if (w->left < w->plen)
		return 0;
	while (k < w->plen) {
		size_t n = w->iov[i].iov_len - off;

		if (n > w->plen - k)
			n = w->plen - k;
		if (memcmp((const char *)w->iov[i].iov_base + off, w->pfx + k, n))
			return 0;
		k += n;
		i++;
		off = 0;
	}
	return 1;
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
