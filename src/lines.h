/*
 * Log lines: the one line state each log stream keeps, shared by write(2)
 * and stdio, and the walk that lays the prefix before each line start.
 *
 * The state is one 32-bit word in the fd's entry (rq_fd.line), so that it
 * changes with one store, like the thread context (src/ctx.h): a writer
 * publishes the state its write will leave *before* the system call, and a
 * signal handler that writes to the same stream when that call returns
 * (where the kernel delivers a signal that arrived during it) sees the line
 * as the kernel has it. Only a short write corrects the word afterwards, and
 * only if no other write changed it meanwhile.
 *
 * The word says whether the stream is inside a line, or holds the first
 * `pend` bytes of a prefix a short write cut: the prefix text is then in the
 * fd's log record (struct rq_log), in the copy the word names, so that the
 * next write finishes that prefix as it started, whatever ID is current by
 * then. A cut fills the copy the word does not name, then publishes.
 *
 * A line that already starts with exactly the prefix reqctx would insert
 * (same format, same ID) gets no second one. The check looks at the bytes of
 * the call that starts the line: they must hold the whole prefix.
 */
#ifndef RQ_LINES_H
#define RQ_LINES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "carry.h"
#include "fdtab.h"

#define RQ_LN_MID   1u         /* inside a line: its prefix, if it has one, is out */
#define RQ_LN_WHICH (1u << 19) /* the cut prefix is rq_log.pfx[1] (else [0]) */

_Static_assert(RQ_PFX_MAX < 512, "pend and plen have 9 bits each");

/* Bytes of the cut prefix already out (0: no prefix was cut). */
static inline size_t rq_ln_pend(uint32_t st)
{
	return (st >> 1) & 0x1ff;
}

/* Length of the cut prefix. */
static inline size_t rq_ln_plen(uint32_t st)
{
	return (st >> 10) & 0x1ff;
}

static inline int rq_ln_which(uint32_t st)
{
	return (st & RQ_LN_WHICH) != 0;
}

/* The state of a stream holding the first `pend` of `plen` bytes of a prefix. */
static inline uint32_t rq_ln_cut(int which, size_t pend, size_t plen)
{
	return (which ? RQ_LN_WHICH : 0) | (uint32_t)pend << 1 | (uint32_t)plen << 10;
}

/*
 * Loads fd's line state into *st and, if a prefix was cut, copies its
 * remaining bytes into rest. Returns how many (0: none due).
 */
size_t rq_ln_load(int fd, struct rq_fd *e, uint32_t *st, char rest[RQ_PFX_MAX]);

/*
 * A write that started in state st0 stopped after `pend` bytes of the prefix
 * `text` (plen bytes): stores the text where the next write will find it and
 * returns the state that says so.
 */
uint32_t rq_ln_cut_text(int fd, uint32_t st0, const char *text, size_t plen, size_t pend);

/*
 * Counts the log writes this thread has begun: one that sees the count move
 * during its system call knows a signal handler wrote meanwhile.
 */
extern RQ_TLS unsigned rq_ln_epoch;

/* A log write begins; returns its number. */
static inline unsigned rq_ln_begin(void)
{
	return ++rq_ln_epoch;
}

/*
 * After a short system call: replaces the state `from` (published by the
 * write numbered `epoch`) with `to`, unless another write changed it since:
 * a handler on this thread (the epoch moved) or another thread (the word did).
 */
static inline void rq_ln_fix(struct rq_fd *e, unsigned epoch, uint32_t from, uint32_t to)
{
	if (from != to && rq_ln_epoch == epoch)
		atomic_compare_exchange_strong_explicit(&e->line, &from, to, memory_order_release,
							memory_order_relaxed);
}

/* One piece of what goes out: caller bytes, or inserted prefix bytes. */
enum { RQ_SEG_CALLER, RQ_SEG_PFX, RQ_SEG_REST };

struct rq_seg {
	const char *p;
	size_t len;
	int kind; /* RQ_SEG_*: REST is the remainder of a cut prefix */
};

/* A walk over the caller's bytes of one call, from some point on. */
struct rq_walk {
	const struct iovec *iov;
	int iovcnt;
	int i;             /* the next caller byte: iov[i], at off */
	size_t off;
	size_t left;       /* caller bytes from there to the end of the call */
	int mid;           /* inside a line */
	const char *rest;  /* due before the next caller byte: the rest of a cut prefix */
	size_t rest_len;
	const char *pfx;   /* the prefix for lines that start (plen 0: none) */
	size_t plen;
};

/*
 * Starts a walk over the `left` caller bytes of (iov, iovcnt) from iov[0] on
 * (set i and off to start further on), in line state `mid`, with `rest` due
 * first (rlen 0: none) and pfx before each line that starts.
 */
void rq_walk_init(struct rq_walk *w, const struct iovec *iov, int iovcnt, size_t left, int mid,
		  const char *rest, size_t rlen, const char *pfx, size_t plen);

/* 1 if the caller's bytes from the walk's position on begin with the prefix itself. */
int rq_walk_own(const struct rq_walk *w);

/*
 * The next piece of output: the rest of a cut prefix, the prefix before a
 * line that starts, or caller bytes up to and including the next newline or
 * the end of their iovec. Returns 0 when the caller's bytes are all walked.
 */
static inline int rq_walk_next(struct rq_walk *w, struct rq_seg *s)
{
	const char *p, *nl;
	size_t n;

	if (unlikely(w->rest_len)) {
		s->p = w->rest;
		s->len = w->rest_len;
		s->kind = RQ_SEG_REST;
		w->rest_len = 0;
		return 1;
	}
	if (!w->left)
		return 0;
	while (w->off == w->iov[w->i].iov_len) { /* empty iovecs */
		w->i++;
		w->off = 0;
	}
	p = (const char *)w->iov[w->i].iov_base + w->off;
	if (!w->mid) {
		w->mid = 1;
		if (w->plen && !((*p == *w->pfx || unlikely(rq_relay_on)) && rq_walk_own(w))) {
			s->p = w->pfx;
			s->len = w->plen;
			s->kind = RQ_SEG_PFX;
			return 1;
		}
	}
	n = w->iov[w->i].iov_len - w->off;
	nl = memchr(p, '\n', n);
	if (nl) {
		n = (size_t)(nl - p) + 1;
		w->mid = 0;
	}
	w->off += n;
	w->left -= n;
	s->p = p;
	s->len = n;
	s->kind = RQ_SEG_CALLER;
	return 1;
}

#endif
