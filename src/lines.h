/*
 * Log lines: the one line state each log stream keeps, shared by write(2)
 * and stdio, and the walk that lays what a line gets (src/prefix.h) at its
 * place: before the line, or after its first bytes (a JSON line's brace).
 *
 * The state is one 32-bit word in the fd's entry (rq_fd.line), so that it
 * changes with one store, like the thread context (src/ctx.h): a writer
 * publishes the state its write will leave *before* the system call, and a
 * signal handler that writes to the same stream when that call returns
 * (where the kernel delivers a signal that arrived during it) sees the line
 * as the kernel has it. Only a short write corrects the word afterwards, and
 * only if no other write changed it meanwhile.
 *
 * The word says whether the stream is inside a line, or owes an inserted
 * text a short write cut or stopped in front of: `plen` bytes long, `pend`
 * of them out already, due after `skip` more caller bytes (the rest of a
 * JSON line's opening, when the write stopped before its brace). The text is
 * in the fd's log record (struct rq_log), in the copy the word names, so that
 * the next write finishes it as it started, whatever ID is current by then.
 * A cut fills the copy the word does not name, then publishes.
 *
 * The decision about a line (what it gets and where) is taken when it
 * starts, from the bytes of the call that starts it (src/prefix.h).
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
#include "prefix.h"

#define RQ_LN_MID   1u         /* inside a line: its prefix, if it has one, is out */
#define RQ_LN_WHICH (1u << 19) /* the owed text is rq_log.pfx[1] (else [0]) */

_Static_assert(RQ_PFX_MAX < 512, "pend, plen and skip have 9 bits each");

/* Bytes of the owed text already out. */
static inline size_t rq_ln_pend(uint32_t st)
{
	return (st >> 1) & 0x1ff;
}

/* Length of the owed text (0: none is owed). */
static inline size_t rq_ln_plen(uint32_t st)
{
	return (st >> 10) & 0x1ff;
}

/* Caller bytes still to go before the owed text. */
static inline size_t rq_ln_skip(uint32_t st)
{
	return (st >> 20) & 0x1ff;
}

static inline int rq_ln_which(uint32_t st)
{
	return (st & RQ_LN_WHICH) != 0;
}

/*
 * The state of a stream that owes the last plen - pend bytes of a text of
 * plen bytes, after skip more caller bytes.
 */
static inline uint32_t rq_ln_cut(int which, size_t pend, size_t plen, size_t skip)
{
	return (which ? RQ_LN_WHICH : 0) | (uint32_t)pend << 1 | (uint32_t)plen << 10 |
	       (uint32_t)skip << 20;
}

/*
 * Loads fd's line state into *st and, if a text is owed, copies its
 * remaining bytes into rest and the caller bytes due before them into
 * *skip. Returns how many bytes are owed (0: none).
 */
size_t rq_ln_load(int fd, struct rq_fd *e, uint32_t *st, char rest[RQ_PFX_MAX], size_t *skip);

/*
 * A write that started in state st0 stopped after `pend` bytes of the
 * inserted `text` (plen bytes), or `skip` caller bytes before it (pend 0):
 * stores the text where the next write will find it and returns the state
 * that says so.
 */
uint32_t rq_ln_cut_text(int fd, uint32_t st0, const char *text, size_t plen, size_t pend,
			size_t skip);

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

/* One piece of what goes out: caller bytes, or inserted bytes. */
enum { RQ_SEG_CALLER, RQ_SEG_PFX, RQ_SEG_REST };

struct rq_seg {
	const char *p;
	size_t len;
	int kind; /* RQ_SEG_*: PFX is a text placed now, REST the remainder of an owed one */
};

/* A walk over the caller's bytes of one call, from some point on. */
struct rq_walk {
	const struct iovec *iov;
	int iovcnt;
	int i;             /* the next caller byte: iov[i], at off */
	size_t off;
	size_t left;       /* caller bytes from there to the end of the call */
	int mid;           /* inside a line */
	const char *due;   /* inserted bytes owed to the current line (due_len 0: none) */
	size_t due_len;
	size_t due_at;     /* caller bytes before them */
	int due_kind;      /* RQ_SEG_PFX or RQ_SEG_REST */
	int fmt;           /* enum rq_fmt */
	const struct rq_texts *tx; /* what lines that start get (NULL: nothing) */
	const char *pfx;   /* tx's line-start text, for the prefix format's inline path */
	size_t plen;
};

/*
 * Starts a walk over the `left` caller bytes of (iov, iovcnt) from iov[0] on
 * (set i and off to start further on), in line state `mid`, with `rest` owed
 * after `skip` caller bytes (rlen 0: none), and tx's texts placed in each
 * line that starts.
 */
void rq_walk_init(struct rq_walk *w, const struct iovec *iov, int iovcnt, size_t left, int mid,
		  const char *rest, size_t rlen, size_t skip, const struct rq_texts *tx);

/* 1 if the caller's bytes from the walk's position on begin with the prefix itself. */
int rq_walk_own(const struct rq_walk *w);

/*
 * At a line start in the formats other than prefix: what the line gets and
 * where (rq_prefix_place). Returns 1 and sets the walk's due text if it gets
 * something.
 */
int rq_walk_place(struct rq_walk *w);

/*
 * The next piece of output: an owed text once its caller bytes are out, the
 * text placed in a line that starts, or caller bytes up to and including the
 * next newline, the end of their iovec, or the point where an owed text
 * goes. Returns 0 when the caller's bytes are all walked. A line that ends
 * before its owed text's place drops the text.
 */
static inline int rq_walk_next(struct rq_walk *w, struct rq_seg *s)
{
	const char *p, *nl;
	size_t n;

	if (unlikely(w->due_len) && !w->due_at) {
		s->p = w->due;
		s->len = w->due_len;
		s->kind = w->due_kind;
		w->due_len = 0;
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
		if (likely(w->fmt == RQ_FMT_PREFIX)) {
			if (w->plen && !((*p == *w->pfx || unlikely(rq_relay_on)) && rq_walk_own(w))) {
				s->p = w->pfx;
				s->len = w->plen;
				s->kind = RQ_SEG_PFX;
				return 1;
			}
		} else if (w->tx && rq_walk_place(w) && !w->due_at) {
			s->p = w->due;
			s->len = w->due_len;
			s->kind = RQ_SEG_PFX;
			w->due_len = 0;
			return 1;
		}
	}
	n = w->iov[w->i].iov_len - w->off;
	if (unlikely(w->due_len) && n > w->due_at)
		n = w->due_at;
	nl = memchr(p, '\n', n);
	if (nl) {
		n = (size_t)(nl - p) + 1;
		w->mid = 0;
		w->due_len = 0;
	} else if (unlikely(w->due_len)) {
		w->due_at -= n;
	}
	w->off += n;
	w->left -= n;
	s->p = p;
	s->len = n;
	s->kind = RQ_SEG_CALLER;
	return 1;
}

#endif
