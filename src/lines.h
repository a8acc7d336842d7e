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
#include "correlate.h"
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

/*
 * Batched log correlation (src/correlate.h): the decisions of one call about
 * the lines that start in it, so that a walk made again over the same bytes
 * (a plan made again, or the mapping of a short write) lays exactly what the
 * first one did, and no request is taken twice. Only lines that took a
 * completed request have an entry: with its ID's texts, or none when it was
 * the current request's own; every other line start below `high` was
 * decided to keep the current ID without taking anything.
 */
struct rq_cment {
	size_t at;      /* caller offset of the line start, from the call's start */
	uint64_t taken; /* the ring entry it took (0: none), given back if the line does not go out */
	uint32_t off;   /* its texts at buf + off: the line-start text, then the JSON member */
	uint16_t plen, olen; /* both 0: the line keeps the current ID (its own request's entry) */
};

struct rq_cmemo {
	size_t total;      /* caller bytes of the whole call */
	size_t high;       /* line starts below this caller offset are decided */
	struct rq_cment *e;
	int n, cap;
	char *buf;
	size_t used, size;
	int replay;        /* the caller may walk these bytes again: decisions are kept */
	int full;          /* the walk stopped at a line start with no room left to decide it */
};

/* A memo over the given room, for a call of `total` caller bytes. */
static inline void rq_cmemo_init(struct rq_cmemo *m, size_t total, struct rq_cment *e, int cap,
				 char *buf, size_t size, int replay)
{
	m->total = total;
	m->high = 0;
	m->e = e;
	m->n = 0;
	m->cap = cap;
	m->buf = buf;
	m->used = 0;
	m->size = size;
	m->replay = replay;
	m->full = 0;
}

/* Forgets the decisions about line starts below caller offset `done` (their bytes are out). */
void rq_cmemo_drop(struct rq_cmemo *m, size_t done);

/*
 * Gives back the requests taken for lines starting at caller offset `from`
 * or later (with `after`, later only: the line at `from` has begun), which
 * did not go out.
 */
void rq_cmemo_release(struct rq_cmemo *m, size_t from, int after);

/* Moves the decisions into a bigger room (the texts laid out already stay where they are). */
void rq_cmemo_move(struct rq_cmemo *m, struct rq_cment *e, int cap, char *buf, size_t size);

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
	struct rq_cmemo *cm; /* correlation's decisions (NULL: lines are not matched) */
};

#define RQ_WALK_KEEP (-1) /* rq_walk_corr: the line keeps the current ID */
#define RQ_WALK_STOP (-2) /* rq_walk_corr: no room to decide the line; stop before it */

/*
 * At a line start with correlation on: decides (or recalls) whether the line
 * gets another request's ID and, if it does, what and where. Returns 1 with
 * s set (the text goes first), 0 (the line gets nothing now: it has it
 * already, or its text is due later), RQ_WALK_KEEP or RQ_WALK_STOP.
 */
int rq_walk_corr(struct rq_walk *w, struct rq_seg *s);

/*
 * rq_walk_corr's quick answers, inline: a line whose bytes are all here and
 * name no request line, or one decided before without taking anything,
 * keeps the current ID.
 */
static inline int rq_walk_corr_quick(struct rq_walk *w, const char *p, struct rq_seg *s)
{
	struct rq_cmemo *m = w->cm;
	size_t at = m->total - w->left, avail;
	int maybe;

	if (at < m->high) {
		if (!m->n || at > m->e[m->n - 1].at)
			return RQ_WALK_KEEP;
	} else {
		avail = w->iov[w->i].iov_len - w->off;
		if (avail > w->left)
			avail = w->left;
		if ((rq_corr_line_end(p, avail, &maybe) < avail || avail == w->left) && !maybe) {
			m->high = at + 1;
			return RQ_WALK_KEEP;
		}
	}
	return rq_walk_corr(w, s);
}

/*
 * Starts a walk over the `left` caller bytes of (iov, iovcnt) from iov[0] on
 * (set i and off to start further on), in line state `mid`, with `rest` owed
 * after `skip` caller bytes (rlen 0: none), and tx's texts placed in each
 * line that starts. Set cm to match lines to the requests they name.
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
		if (unlikely(w->cm != NULL)) {
			int r = rq_walk_corr_quick(w, p, s);

			if (r > 0)
				return 1;
			if (r == RQ_WALK_STOP) {
				w->mid = 0;
				return 0;
			}
			if (r == 0)
				goto bytes;
		}
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
bytes:
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
