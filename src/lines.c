#include "lines.h"

#include "carry.h"

#include <string.h>

RQ_TLS unsigned rq_ln_epoch;

size_t rq_ln_load(int fd, struct rq_fd *e, uint32_t *st, char rest[RQ_PFX_MAX])
{
	for (int tries = 0;; tries++) {
		uint32_t s = atomic_load_explicit(&e->line, memory_order_acquire);
		size_t pend = rq_ln_pend(s), plen = rq_ln_plen(s);
		const struct rq_log *lg;

		*st = s;
		if (!pend)
			return 0;
		lg = rq_log_peek(fd);
		if (!lg || pend >= plen || plen > RQ_PFX_MAX) { /* no text to finish: the line goes on */
			*st = RQ_LN_MID;
			return 0;
		}
		memcpy(rest, lg->pfx[rq_ln_which(s)] + pend, plen - pend);
		/* Another cut published meanwhile: its text may be what was copied. */
		if (atomic_load_explicit(&e->line, memory_order_acquire) == s || tries == 3)
			return plen - pend;
	}
}

uint32_t rq_ln_cut_text(int fd, uint32_t st0, const char *text, size_t plen, size_t pend)
{
	struct rq_log *lg = rq_log_peek(fd);
	int which = !rq_ln_which(st0);

	if (!lg || !pend || pend >= plen || plen > RQ_PFX_MAX)
		return RQ_LN_MID; /* (never for a log stream: it has its record) */
	memcpy(lg->pfx[which], text, plen);
	return rq_ln_cut(which, pend, plen);
}

void rq_walk_init(struct rq_walk *w, const struct iovec *iov, int iovcnt, size_t left, int mid,
		  const char *rest, size_t rlen, const char *pfx, size_t plen)
{
	w->iov = iov;
	w->iovcnt = iovcnt;
	w->i = 0;
	w->off = 0;
	w->left = left;
	w->mid = mid || rlen;
	w->rest = rest;
	w->rest_len = rlen;
	w->pfx = pfx;
	w->plen = plen;
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

