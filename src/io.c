#include "io.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "carry.h"
#include "config.h"
#include "conn.h"
#include "correlate.h"
#include "ctx.h"
#include "handle.h"
#include "id.h"
#include "lines.h"
#include "prefix.h"
#include "sys.h"

ssize_t rq_io_plain(int fd, const struct iovec *iov, int iovcnt, const struct rq_call *k)
{
	switch (k->how) {
	case RQ_WRITE:
		return rq_sys.write(fd, iov[0].iov_base, iov[0].iov_len);
	case RQ_WRITEV:
		return rq_sys.writev(fd, iov, iovcnt);
	case RQ_SEND:
		return rq_sys.send(fd, iov[0].iov_base, iov[0].iov_len, k->flags);
	case RQ_SENDTO:
		return rq_sys.sendto(fd, iov[0].iov_base, iov[0].iov_len, k->flags, k->to, k->tolen);
	case RQ_SENDMSG:
		break;
	}
	return rq_sys.sendmsg(fd, k->msg, k->flags);
}

/* The one system call for n iovecs, the way the caller's call would make it. */
static ssize_t send_iov(int fd, const struct iovec *iov, int n, const struct rq_call *k)
{
	struct msghdr m;

	if (k->how == RQ_WRITE || k->how == RQ_WRITEV)
		return rq_sys.writev(fd, iov, n);
	memset(&m, 0, sizeof(m));
	if (k->how == RQ_SENDMSG) {
		m = *k->msg;
	} else if (k->how == RQ_SENDTO) {
		m.msg_name = (void *)k->to;
		m.msg_namelen = k->tolen;
	}
	m.msg_iov = (struct iovec *)iov;
	m.msg_iovlen = (size_t)n;
	return rq_sys.sendmsg(fd, &m, k->flags);
}

/*
 * reqctx reads the caller's bytes before the kernel has checked them. A
 * pointer into the first page or outside the user half of the address space
 * would crash us where libc returns EFAULT: such calls go to the kernel as
 * they are. (A pointer to other unmapped memory is not caught; see README.)
 */
static int plausible(const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;

	return n == 0 || (a >= RQ_FIRST_PAGE && a + n >= a && a + n <= RQ_USER_TOP);
}

/* The caller's byte count; *bad is set if the call is one to leave to the kernel. */
static size_t iov_total(const struct iovec *iov, int iovcnt, int *bad)
{
	size_t t = 0;

	*bad = iovcnt < 0 || iovcnt > 1024 ||
	       !plausible(iov, (size_t)(iovcnt > 0 ? iovcnt : 0) * sizeof(*iov));
	for (int i = 0; i < iovcnt && !*bad; i++) {
		if (iov[i].iov_len > SSIZE_MAX - t || !plausible(iov[i].iov_base, iov[i].iov_len))
			*bad = 1;
		t += iov[i].iov_len;
	}
	return t;
}

/* Returns the byte at caller offset `at` - 1 (the last one written before it). */
static unsigned char byte_before(const struct iovec *iov, int iovcnt, size_t at)
{
	for (int i = 0; i < iovcnt; i++) {
		if (at <= iov[i].iov_len)
			return ((const unsigned char *)iov[i].iov_base)[at - 1];
		at -= iov[i].iov_len;
	}
	return 0;
}

/* A position in the caller's iovecs. */
struct cursor {
	int i;
	size_t off;
};

static void advance(struct cursor *c, const struct iovec *iov, int iovcnt, size_t n)
{
	while (c->i < iovcnt && n) {
		size_t left = iov[c->i].iov_len - c->off;

		if (n < left) {
			c->off += n;
			return;
		}
		n -= left;
		c->i++;
		c->off = 0;
	}
}

/* ---- log streams ---- */

/*
 * A log write is planned into iovecs: the caller's bytes, the prefix before
 * each line that starts. Up to STACK_IOV iovecs (31 lines) the plan is on
 * the stack; a write with more lines takes a pooled plan: IOV_MAX iovecs and
 * a buffer into which pieces up to COPY_MAX bytes are copied, so that a run
 * of short lines and their prefixes costs one iovec. A write that does not
 * fit one plan goes out in as many system calls as it takes, each ending
 * after a line end (see README, "Log prefixes"). Plans are taken from the
 * pool without waiting; when all are busy (or the pool could not be set up)
 * the stack plan is used, several times over.
 */
#define STACK_IOV 64           /* iovecs of a plan on the stack: 1 KiB */
#define POOL_N    4            /* pooled plans */
#define POOL_BUF  (512u << 10) /* copy buffer of a pooled plan */
#define COPY_MAX  512          /* pieces up to this long are copied in a pooled plan */
#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/*
 * Batched log correlation's decisions for one write (src/lines.h): on the
 * stack for the first MEMO_N lines that get another request's ID, then in
 * the pooled plan, which has room for POOL_MEMO_N of them. A plan whose
 * memo is full ends before the next line to decide.
 */
#define MEMO_N        40
#define MEMO_BUF      2048
#define POOL_MEMO_N   2048
#define POOL_MEMO_BUF (128u << 10)

struct pool {
	struct iovec iov[IOV_MAX];
	char buf[POOL_BUF];
	struct rq_cment ment[POOL_MEMO_N];
	char mbuf[POOL_MEMO_BUF];
};

static struct pool pools[POOL_N];

/* One flag per pool entry, in a page that a forked child sees zeroed (held by threads it lacks). */
static _Atomic uint32_t *_Atomic pool_busy;

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18 /* Linux 4.14 */
#endif

/*
 * At load time, not on the write path: the page of busy flags. Without
 * MADV_WIPEONFORK a child could inherit entries held for good, so there is
 * no pool then.
 */
__attribute__((constructor)) static void pool_init(void)
{
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return;
	if (madvise(m, 4096, MADV_WIPEONFORK) != 0) {
		munmap(m, 4096);
		return;
	}
	atomic_store_explicit(&pool_busy, m, memory_order_release);
}

static struct pool *pool_get(void)
{
	_Atomic uint32_t *busy = atomic_load_explicit(&pool_busy, memory_order_acquire);

	for (int i = 0; busy && i < POOL_N; i++) {
		uint32_t free_ = 0;

		if (!atomic_load_explicit(&busy[i], memory_order_relaxed) &&
		    atomic_compare_exchange_strong_explicit(&busy[i], &free_, 1, memory_order_acquire,
							    memory_order_relaxed))
			return &pools[i];
	}
	return NULL;
}

static void pool_put(void *p)
{
	_Atomic uint32_t *busy = atomic_load_explicit(&pool_busy, memory_order_relaxed);

	atomic_store_explicit(&busy[(struct pool *)p - pools], 0, memory_order_release);
}

/* One planned system call of a log write. */
struct lplan {
	struct iovec *iov;
	int n, cap;
	char *buf;            /* pooled: the copy buffer */
	size_t used;          /* bytes of it in use */
	size_t bytes, caller; /* all bytes planned, and the caller's among them */
	int mid;              /* inside a line after the last caller byte planned */
	const char *due;      /* then, inserted bytes owed to that line (due_len 0: none) */
	size_t due_len, due_at;
	int due_kind;
	struct pool *pool;
};

/* A point of a plan to go back to. */
struct mark {
	int n;
	size_t last, used, bytes, caller;
};

static void mark(struct mark *m, const struct lplan *pl)
{
	m->n = pl->n;
	m->last = pl->n ? pl->iov[pl->n - 1].iov_len : 0;
	m->used = pl->used;
	m->bytes = pl->bytes;
	m->caller = pl->caller;
}

static void back(struct lplan *pl, const struct mark *m)
{
	pl->n = m->n;
	if (m->n)
		pl->iov[m->n - 1].iov_len = m->last;
	pl->used = m->used;
	pl->bytes = m->bytes;
	pl->caller = m->caller;
}

/* Adds a piece to the plan. Returns 0, or -1 if there is no room for it. */
static inline __attribute__((always_inline)) int lay(struct lplan *pl, const struct rq_seg *s)
{
	struct iovec *last = pl->n ? &pl->iov[pl->n - 1] : NULL;

	if (pl->buf && s->len <= COPY_MAX && s->len <= POOL_BUF - pl->used) {
		char *d = pl->buf + pl->used;

		if (!last || (char *)last->iov_base + last->iov_len != d) {
			if (pl->n == pl->cap)
				return -1;
			last = &pl->iov[pl->n++];
			last->iov_base = d;
			last->iov_len = 0;
		}
		memcpy(d, s->p, s->len);
		pl->used += s->len;
		last->iov_len += s->len;
	} else if (last && (const char *)last->iov_base + last->iov_len == s->p) {
		last->iov_len += s->len; /* right after the previous piece */
	} else {
		if (pl->n == pl->cap)
			return -1;
		pl->iov[pl->n].iov_base = (void *)s->p;
		pl->iov[pl->n].iov_len = s->len;
		pl->n++;
	}
	pl->bytes += s->len;
	if (s->kind == RQ_SEG_CALLER)
		pl->caller += s->len;
	return 0;
}

/* Moves a full stack plan into a pooled one. Returns 0, or -1 if none is free. */
static int upgrade(struct lplan *pl)
{
	struct pool *p = pool_get();

	if (!p)
		return -1;
	memcpy(p->iov, pl->iov, (size_t)pl->n * sizeof(*pl->iov));
	pl->iov = p->iov;
	pl->cap = IOV_MAX;
	pl->buf = p->buf;
	pl->used = 0;
	pl->pool = p;
	return 0;
}

/*
 * What a plan may hold after a short write on this thread: twice what the
 * kernel took then (a non-blocking pipe or socket taking what it has room
 * for), so that each retry does not lay out and copy a whole pooled plan to
 * have a few KB of it taken. It doubles with every plan that goes out whole;
 * 0: no limit.
 */
static RQ_TLS size_t plan_room;

#define ROOM_MIN 64

static void room_after(size_t r, size_t planned)
{
	if (r < planned)
		plan_room = r < ROOM_MIN / 2 ? ROOM_MIN : 2 * r;
	else if (plan_room)
		plan_room = plan_room >= POOL_BUF ? 0 : 2 * plan_room;
}

/*
 * The stack memo of correlation's decisions is full: moves it into the
 * pooled plan, taking one if the plan has none yet. Returns 1, or 0 if it
 * cannot grow (the plan then ends before the line to decide).
 */
static int memo_grow(struct lplan *pl, struct rq_cmemo *m)
{
	if ((pl->pool && m->e == pl->pool->ment) || (!pl->pool && upgrade(pl) < 0))
		return 0;
	rq_cmemo_move(m, pl->pool->ment, POOL_MEMO_N, pl->pool->mbuf, POOL_MEMO_BUF);
	return 1;
}

/*
 * Plans one system call from the walk w: every piece that fits (in the plan,
 * and in plan_room). When the plan fills up it ends after the last line end
 * in it (with none, where it filled).
 */
static void plan_log(struct lplan *pl, struct rq_walk *w)
{
	size_t room = plan_room;
	struct mark line = { 0 };
	int have_line = 0;
	struct rq_seg s;

	pl->n = 0;
	pl->used = pl->bytes = pl->caller = 0;
	pl->mid = w->mid;
	pl->due_len = 0;
	for (;;) {
		if (!rq_walk_next(w, &s)) {
			if (unlikely(w->cm && w->cm->full) && memo_grow(pl, w->cm))
				continue;
			return;
		}
		if ((room && pl->caller && s.len > room - (room < pl->bytes ? room : pl->bytes)) ||
		    (lay(pl, &s) < 0 && (pl->buf || upgrade(pl) < 0 || lay(pl, &s) < 0))) {
			if (have_line) {
				back(pl, &line);
				pl->mid = 0;
				pl->due_len = 0;
			}
			return;
		}
		pl->due_len = w->due_len; /* what the line owes after what is laid */
		if (unlikely(w->due_len)) {
			pl->due = w->due;
			pl->due_at = w->due_at;
			pl->due_kind = w->due_kind;
		}
		if (s.kind != RQ_SEG_CALLER) {
			pl->mid = 1; /* (a plan never fills before its first line's bytes) */
		} else {
			pl->mid = w->mid;
			if (!w->mid) {
				mark(&line, pl);
				have_line = 1;
			}
		}
	}
}

/*
 * The line state a plan made from state st leaves: inside a line or at a
 * line start, or owing the text its line has not got yet (stored in the
 * fd's record first, unless it is the rest of the one the state owes).
 */
static uint32_t plan_post(int fd, uint32_t st, const struct lplan *pl)
{
	if (likely(!pl->due_len))
		return pl->mid ? RQ_LN_MID : 0;
	if (pl->due_kind == RQ_SEG_REST)
		return rq_ln_cut(rq_ln_which(st), rq_ln_plen(st) - pl->due_len, rq_ln_plen(st),
				 pl->due_at);
	return rq_ln_cut_text(fd, st, pl->due, pl->due_len, 0, pl->due_at);
}

/*
 * Publishes the line state `post` a write will leave, in place of the state
 * st it was planned from (src/lines.h). With `check`, only if no other write
 * came in between: none by a signal handler on this thread since the write
 * began (its epoch), and, when the state changes, none by another thread
 * (the compare-and-swap). Returns 0 if one did: the write is planned again.
 */
static inline int publish(struct rq_fd *e, unsigned epoch, uint32_t st, uint32_t post, int check)
{
	if (check && rq_ln_epoch != epoch)
		return 0;
	if (post == st)
		return 1;
	if (!check) {
		atomic_store_explicit(&e->line, post, memory_order_release);
		return 1;
	}
	return atomic_compare_exchange_strong_explicit(&e->line, &st, post, memory_order_release,
						       memory_order_relaxed);
}

/*
 * The system call of a planned log write, with its line state published
 * right before it: everything the call needs is ready first, so that only a
 * handful of instructions separate the store from the system call (a signal
 * handler that runs there is the one that sees the state too early).
 * Returns 0 with what the call returned in *ret, or -EAGAIN if the state
 * moved under the plan (no call was made: plan again). A pooled plan's entry
 * is released if the thread is cancelled in the call.
 */
static int emit_log(int fd, struct rq_fd *e, unsigned epoch, uint32_t st, uint32_t post,
		    const struct lplan *pl, const struct rq_call *k, int check, ssize_t *ret)
{
	ssize_t (*wv)(int, const struct iovec *, int) = rq_sys.writev;
	ssize_t (*sm)(int, const struct msghdr *, int) = rq_sys.sendmsg;
	int vec = k->how == RQ_WRITE || k->how == RQ_WRITEV;
	struct msghdr m;
	ssize_t r;

	memset(&m, 0, sizeof(m));
	if (k->how == RQ_SENDMSG) {
		m = *k->msg;
	} else if (k->how == RQ_SENDTO) {
		m.msg_name = (void *)k->to;
		m.msg_namelen = k->tolen;
	}
	m.msg_iov = pl->iov;
	m.msg_iovlen = (size_t)pl->n;
	if (!pl->pool) {
		if (!publish(e, epoch, st, post, check))
			return -EAGAIN;
		*ret = vec ? wv(fd, pl->iov, pl->n) : sm(fd, &m, k->flags);
		return 0;
	}
	r = 0;
	pthread_cleanup_push(pool_put, pl->pool);
	if (publish(e, epoch, st, post, check))
		*ret = vec ? wv(fd, pl->iov, pl->n) : sm(fd, &m, k->flags);
	else
		r = -EAGAIN;
	pthread_cleanup_pop(0);
	return (int)r;
}

/*
 * The caller's bytes among the first r bytes of a system call planned from
 * walk w, which started in line state st0, and (in *now) the line state they
 * leave. A cut inside an inserted text, or in front of one, records the
 * text (rq_ln_cut_text).
 */
static size_t map_log(int fd, struct rq_walk *w, size_t r, uint32_t st0, uint32_t *now)
{
	size_t got = 0, caller = 0;
	uint32_t after = st0;
	struct rq_seg s;

	while (got < r && rq_walk_next(w, &s)) {
		size_t take = r - got < s.len ? r - got : s.len;

		got += take;
		if (s.kind == RQ_SEG_CALLER) {
			caller += take;
			if (take == s.len && s.p[take - 1] == '\n')
				after = 0;
			else if (likely(!w->due_len))
				after = RQ_LN_MID;
			else if (w->due_kind == RQ_SEG_REST) /* still owed, after what was not taken */
				after = rq_ln_cut(rq_ln_which(st0), rq_ln_plen(st0) - w->due_len,
						  rq_ln_plen(st0), w->due_at + s.len - take);
			else
				after = rq_ln_cut_text(fd, st0, w->due, w->due_len, 0,
						       w->due_at + s.len - take);
		} else if (take == s.len) {
			after = RQ_LN_MID; /* the text is out whole: its line has begun */
		} else if (s.kind == RQ_SEG_REST) {
			after = rq_ln_cut(rq_ln_which(st0), rq_ln_plen(st0) - s.len + take,
					  rq_ln_plen(st0), 0);
		} else {
			after = rq_ln_cut_text(fd, st0, s.p, s.len, take, 0);
		}
	}
	*now = after;
	return caller;
}

/*
 * A log write outside requests with REQCTX_UNKNOWN=bare, with no cut text
 * to finish: the caller's own call, with the line state it leaves published
 * before it. Returns 0 with the call's result in *ret, or -EAGAIN as
 * emit_log.
 */
static int log_bare(int fd, struct rq_fd *e, unsigned epoch, uint32_t st,
		    const struct iovec *iov, int iovcnt, const struct rq_call *k, size_t total,
		    int check, ssize_t *ret)
{
	uint32_t post = byte_before(iov, iovcnt, total) != '\n' ? RQ_LN_MID : 0;
	ssize_t r;
	int saved;

	if (!publish(e, epoch, st, post, check))
		return -EAGAIN;
	r = *ret = rq_io_plain(fd, iov, iovcnt, k);
	saved = errno;
	if (r <= 0)
		rq_ln_fix(e, epoch, post, st);
	else if ((size_t)r < total)
		rq_ln_fix(e, epoch, post, byte_before(iov, iovcnt, (size_t)r) != '\n' ? RQ_LN_MID : 0);
	errno = saved;
	return 0;
}

/*
 * Writes the caller's bytes with what each line that starts gets (the
 * prefix, or a field: src/prefix.h); returns what the caller's call returns.
 * Each system call publishes the line state it will leave before it is made
 * (src/lines.h), unless a signal handler (or another thread) wrote
 * meanwhile: then the plan is made again, from the state that write left, up
 * to 4 times. A short call corrects it. A call that got some of the caller's
 * bytes out returns their count; one that got only inserted bytes out is
 * followed by another.
 */
static __attribute__((noinline)) ssize_t
log_write_with(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
	       const struct rq_call *k, size_t total, struct rq_cmemo *cm)
{
	struct iovec stack[STACK_IOV];
	char buf[RQ_TEXTS_MAX], rest[RQ_PFX_MAX];
	struct lplan pl = { .iov = stack, .cap = STACK_IOV };
	struct cursor cur = { 0, 0 };
	struct rq_texts tx;
	const char *held = NULL;
	size_t done = 0;
	int saved = errno;
	ssize_t ret;

	if (rq_prefix_wanted())
		held = rq_prefix_acquire(buf, &tx);
	for (int tries = 0;;) {
		struct rq_walk w, start;
		uint32_t st, post, now;
		unsigned epoch = rq_ln_begin();
		size_t skip, rlen = rq_ln_load(fd, e, &st, rest, &skip), c;
		ssize_t r;

		if (!held && !rlen && !done && !cm) {
			if (log_bare(fd, e, epoch, st, iov, iovcnt, k, total, tries++ < 4, &r) < 0)
				continue;
			return r;
		}
		rq_walk_init(&w, iov, iovcnt, total - done, st & RQ_LN_MID, rest, rlen, skip,
			     held ? &tx : NULL);
		w.i = cur.i;
		w.off = cur.off;
		if (cm) {
			rq_cmemo_drop(cm, done);
			w.cm = cm;
		}
		start = w;
		plan_log(&pl, &w);
		post = plan_post(fd, st, &pl);
		if (emit_log(fd, e, epoch, st, post, &pl, k, tries++ < 4, &r) < 0)
			continue;
		if (r > 0)
			room_after((size_t)r, pl.bytes);
		if (r > 0 && (size_t)r == pl.bytes) {
			done += pl.caller;
			advance(&cur, iov, iovcnt, pl.caller);
			if (done < total)
				continue;
			ret = (ssize_t)done;
			break;
		}
		if (r <= 0) {
			rq_ln_fix(e, epoch, post, st); /* nothing went out */
			if (cm) /* the lines from here on are decided again by the next write */
				rq_cmemo_release(cm, done, st != 0);
			ret = done ? (ssize_t)done : r;
			break;
		}
		c = map_log(fd, &start, (size_t)r, st, &now);
		rq_ln_fix(e, epoch, post, now);
		done += c;
		advance(&cur, iov, iovcnt, c);
		if (c) {
			if (cm)
				rq_cmemo_release(cm, done, now != 0);
			ret = (ssize_t)done;
			break;
		}
		/* Only inserted bytes went out: go on rather than return 0. */
	}
	if (ret >= 0 || done)
		errno = saved;
	if (pl.pool)
		pool_put(pl.pool);
	if (held)
		rq_prefix_release(held);
	return ret;
}

/*
 * log_write with batched log correlation (src/correlate.h): each line that
 * starts gets the ID of the completed request it names, if any. `first`,
 * if not NULL, is the request the line at the call's start was already
 * matched to (ring entry `taken`); with `decided` and no `first`, that line
 * keeps the current ID.
 */
static __attribute__((noinline)) ssize_t log_write_corr(int fd, struct rq_fd *e,
							const struct iovec *iov, int iovcnt,
							const struct rq_call *k, size_t total,
							const struct rq_ctx *first, uint64_t taken,
							int decided)
{
	struct rq_cment ents[MEMO_N];
	char txt[MEMO_BUF];
	struct rq_cmemo cm;

	rq_cmemo_init(&cm, total, ents, MEMO_N, txt, sizeof(txt), 1);
	if (first) {
		struct rq_texts t;

		ents[0].at = 0;
		ents[0].taken = taken;
		ents[0].off = 0;
		cm.used = rq_prefix_render_ctx(first, txt, &t);
		ents[0].plen = (uint16_t)t.plen;
		ents[0].olen = (uint16_t)t.olen;
		cm.n = 1;
	}
	if (first || decided)
		cm.high = 1;
	return log_write_with(fd, e, iov, iovcnt, k, total, &cm);
}

/* A log write; `decided`: the one-line path matched its line already (it keeps the current ID). */
static ssize_t log_write(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k, size_t total, int decided)
{
	if (unlikely(rq_corr_on()))
		return log_write_corr(fd, e, iov, iovcnt, k, total, NULL, 0, decided);
	return log_write_with(fd, e, iov, iovcnt, k, total, NULL);
}

/* ---- connections ---- */

/*
 * The socket transport of a connection's writes (conn.h): each planned
 * system call carries up to RQ_EDITS header insertions; a write with more
 * response heads than that (a pipelined batch) goes out in as many system
 * calls, and returns what it got out if one of them comes up short, as a
 * short write does.
 */
static ssize_t conn_write(int fd, struct rq_conn *c, const struct iovec *iov, int iovcnt,
			  const struct rq_call *k, size_t total)
{
	struct rq_wplan p;
	struct rq_call again;
	struct msghdr bare;
	int saved = errno, retried = 0;

	if (atomic_load_explicit(&c->xport, memory_order_acquire) != RQ_XP_PLAIN) {
		if (atomic_load_explicit(&c->xport, memory_order_relaxed) == RQ_XP_TLS_WAIT)
			rq_conn_enter(c); /* a handshake: the connection's one ID */
		return rq_io_plain(fd, iov, iovcnt, k); /* ciphertext */
	}
	if (!rq_conn_write_begin(c) || !total)
		return rq_io_plain(fd, iov, iovcnt, k);
	p.at = (struct rq_wpos){ 0, 0, 0 };
	for (;;) {
		ssize_t r;

		rq_conn_plan(c, iov, iovcnt, total, &p);
		if (!p.w.n) { /* nothing to weave in: the caller's own call */
			r = rq_io_plain(fd, iov, iovcnt, k);
			if (r > 0) {
				int e = errno;

				rq_conn_commit(c, &p, iov, iovcnt, (size_t)r);
				errno = e;
			}
			return r;
		}
		r = send_iov(fd, p.w.iov, p.w.n, k);
		if (r <= 0) {
			if (!p.at.done)
				return r;
			errno = saved;
			return (ssize_t)p.at.done;
		}
		rq_conn_commit(c, &p, iov, iovcnt, (size_t)r);
		if (p.at.done == total || ((size_t)r < p.w.bytes && p.at.done &&
					   !(p.held && !retried++))) {
			errno = saved;
			return (ssize_t)p.at.done; /* all of it, or a short write */
		}
		/* (a held byte: once more at once, which a blocking socket waits for) */
		if (k->how == RQ_SENDMSG && k->msg->msg_controllen) {
			/* the ancillary data went with the first bytes; not again */
			bare = *k->msg;
			bare.msg_control = NULL;
			bare.msg_controllen = 0;
			again = *k;
			again.msg = &bare;
			k = &again;
		}
		/* Only inserted bytes went out, or the plan did and more follows: on. */
	}
}

static __attribute__((noinline)) ssize_t write_general(int fd, struct rq_fd *e,
						       const struct iovec *iov, int iovcnt,
						       const struct rq_call *k, uint32_t fl);

/* In write_general's flags: the one-line path matched the line, which keeps the current ID. */
#define WG_DECIDED (1u << 31)
_Static_assert(!(WG_DECIDED & (RQ_FD_LOG | RQ_FD_CONN | RQ_FD_CARRY)), "not an fd flag");

/*
 * After a one-line write that the kernel cut short after r of its bytes: the
 * line [0, at) `text` (tl bytes) [at, n) stopped inside the text, or in
 * front of it. Corrects the line state (if no other write changed it) and
 * returns the caller bytes that went out.
 */
static __attribute__((noinline)) size_t line_cut(int fd, struct rq_fd *e, unsigned epoch,
						  const char *text, size_t tl, size_t at, size_t r)
{
	uint32_t now = RQ_LN_MID;

	if (r < at)
		now = rq_ln_cut_text(fd, 0, text, tl, 0, at - r);
	else if (r < at + tl)
		now = rq_ln_cut_text(fd, 0, text, tl, r - at, 0);
	rq_ln_fix(e, epoch, 0, now);
	return r < at ? r : r < at + tl ? at : r - tl;
}

/*
 * The system call of a one-line write: v holds the line iov[0] with `text`
 * (tl bytes, at caller bytes into it), from the cache taken as h. Returns
 * what write returns; a write a signal handler's came before, or one that
 * got only inserted bytes out, is left to the general path.
 */
static inline __attribute__((always_inline)) ssize_t
line_out(int fd, struct rq_fd *e, const struct iovec *iov, const struct rq_call *k, unsigned epoch,
	 const char *h, const struct iovec *v, int cnt, const char *text, size_t tl, size_t at,
	 uint32_t gen, uint64_t taken)
{
	size_t n = iov[0].iov_len, c;
	ssize_t r;

	if (unlikely(rq_ln_epoch != epoch)) { /* a handler wrote meanwhile: plan from what it left */
		rq_prefix_release(h);
		return write_general(fd, e, iov, 1, k, gen);
	}
	/* writev leaves errno alone when it succeeds, and so does everything here */
	r = rq_sys.writev(fd, v, cnt);
	if (likely(r == (ssize_t)(tl + n))) {
		rq_prefix_release(h);
		return (ssize_t)n;
	}
	c = r > 0 ? line_cut(fd, e, epoch, text, tl, at, (size_t)r) : 0;
	rq_prefix_release(h);
	if (r <= 0) {
		if (unlikely(taken)) /* the line's request is for the write that tries again */
			RQ_SAVE_ERRNO(rq_corr_untake(&rq_corr_ring, taken));
		return r;
	}
	if (!c) /* none of the line yet: the general path goes on */
		return write_general(fd, e, iov, 1, k, gen);
	return (ssize_t)c;
}

/* log_line in the formats other than prefix: the line gets its text where it goes. */
static __attribute__((noinline)) ssize_t log_fields(int fd, struct rq_fd *e,
						    const struct iovec *iov,
						    const struct rq_call *k, unsigned epoch,
						    const char *h, uint32_t gen, uint64_t taken)
{
	const char *s = iov[0].iov_base, *text;
	size_t n = iov[0].iov_len, tl, at;
	struct rq_texts t;
	struct iovec v[3];

	rq_prefix_texts(&t);
	if (!(tl = rq_prefix_place_line(&t, s, n, &text, &at))) {
		rq_prefix_release(h); /* it has its field (or prefix) already */
		return write_general(fd, e, iov, 1, k, gen);
	}
	if (!at) {
		v[0].iov_base = (void *)text;
		v[0].iov_len = tl;
		v[1] = iov[0];
		return line_out(fd, e, iov, k, epoch, h, v, 2, text, tl, 0, gen, taken);
	}
	v[0].iov_base = (void *)s; /* a JSON line: after its brace */
	v[0].iov_len = at;
	v[1].iov_base = (void *)text;
	v[1].iov_len = tl;
	v[2].iov_base = (void *)(s + at);
	v[2].iov_len = n - at;
	return line_out(fd, e, iov, k, epoch, h, v, 3, text, tl, at, gen, taken);
}

#define NOT_MATCHED (-2) /* line_corr: the line keeps the current ID */

/*
 * The one-line path with batched log correlation: a line that names a
 * completed request other than the current one (an access line written
 * after the next request was read, or flushed alone by a buffered log) is
 * written by the general path with that request's ID; any other goes on
 * the one-line path, marked as decided (*gen) so that a fallback to the
 * general path does not match it again.
 */
static __attribute__((noinline)) ssize_t line_corr(int fd, struct rq_fd *e,
						   const struct iovec *iov,
						   const struct rq_call *k, uint32_t *gen,
						   uint64_t *taken)
{
	const struct rq_ctx *cur = rq_ctx_cur();
	struct rq_ctx c;

	if (!rq_corr_line(&rq_corr_ring, iov[0].iov_base, iov[0].iov_len - 1, cur, 1, &c, taken) ||
	    c.serial == cur->serial) {
		*gen |= WG_DECIDED;
		return NOT_MATCHED;
	}
	return log_write_corr(fd, e, iov, 1, k, iov[0].iov_len, &c, *taken, 1);
}

/*
 * write(2) of one whole line at a line start, the common case of a log write:
 * the cached text and the line in one writev, with no planning. The line
 * state is a line start before and after, so nothing is published. Returns
 * what write returns. Any other case (or one where only inserted bytes got
 * out, which it goes on from) is the general path's.
 */
static ssize_t log_line(int fd, struct rq_fd *e, const struct iovec *iov, const struct rq_call *k)
{
	const char *s = iov[0].iov_base, *h;
	size_t n = iov[0].iov_len, tl;
	unsigned epoch = rq_ln_begin();
	uint32_t gen = RQ_FD_LOG;
	uint64_t taken = 0;
	struct iovec v[2];

	if (!n || n > SSIZE_MAX || !plausible(s, n) || s[n - 1] != '\n' ||
	    atomic_load_explicit(&e->line, memory_order_relaxed))
		return write_general(fd, e, iov, 1, k, RQ_FD_LOG);
	if (unlikely(rq_corr_on())) {
		int maybe;
		ssize_t r;

		if (rq_corr_line_end(s, n - 1, &maybe) != n - 1) /* more than one line */
			return write_general(fd, e, iov, 1, k, RQ_FD_LOG);
		gen |= WG_DECIDED; /* (a line that names no request line keeps the current ID) */
		if (maybe && (r = line_corr(fd, e, iov, k, &gen, &taken)) != NOT_MATCHED)
			return r;
	} else if (memchr(s, '\n', n - 1)) {
		return write_general(fd, e, iov, 1, k, RQ_FD_LOG);
	}
	if (!rq_prefix_wanted() || !(h = rq_prefix_take(&tl)))
		return write_general(fd, e, iov, 1, k, gen); /* (or a handler's, cache busy) */
	if (unlikely(rq_cfg.format != RQ_FMT_PREFIX))
		return log_fields(fd, e, iov, k, epoch, h, gen, taken);
	if (unlikely((*s == *h && n >= tl && !memcmp(s, h, tl)) || rq_relaying())) {
		rq_prefix_release(h); /* the line has its prefix already */
		return write_general(fd, e, iov, 1, k, gen);
	}
	v[0].iov_base = (void *)h;
	v[0].iov_len = tl;
	v[1] = iov[0];
	return line_out(fd, e, iov, k, epoch, h, v, 2, h, tl, 0, gen, taken);
}

/* Everything but a carrier or a one-line log write: checks the call, then plans it. */
static __attribute__((noinline)) ssize_t write_general(int fd, struct rq_fd *e,
						       const struct iovec *iov, int iovcnt,
						       const struct rq_call *k, uint32_t fl)
{
	int bad;
	size_t total = iov_total(iov, iovcnt, &bad);
	struct rq_conn *c;

	if (k->how == RQ_SENDMSG && !plausible(k->msg, sizeof(*k->msg)))
		bad = 1;
	if ((fl & RQ_FD_CONN) && (c = rq_fd_conn(e))) {
		if (likely(!rq_conn_outbound(c)))
			rq_evq_touch(fd); /* (an outbound write stores the context: no touch) */
		if (bad) { /* let the kernel judge it; still set the context */
			ssize_t r;

			rq_conn_write_begin(c);
			r = rq_io_plain(fd, iov, iovcnt, k);
			if (r > 0) /* bytes reqctx did not read went out */
				rq_conn_out_unseen(c);
			return r;
		}
		return conn_write(fd, c, iov, iovcnt, k, total);
	}
	if (bad || (k->how == RQ_SENDMSG && k->msg->msg_controllen))
		return rq_io_plain(fd, iov, iovcnt, k);
	if ((fl & RQ_FD_LOG) && iovcnt == 1 && rq_fpm_flush(iov[0].iov_base, total)) {
		ssize_t r = rq_io_plain(fd, iov, iovcnt, k); /* a command to the master, not a line */

		if (r == (ssize_t)total)
			atomic_store_explicit(&e->line, 0, memory_order_release);
		return r;
	}
	if ((fl & RQ_FD_LOG) && total)
		return log_write(fd, e, iov, iovcnt, k, total, (fl & WG_DECIDED) != 0);
	return rq_io_plain(fd, iov, iovcnt, k);
}

/*
 * A write to a log stream returned r, not all of its bytes (EAGAIN, or
 * short): the rest is the writer's, which an event loop writes later from an
 * epoll callback for the fd (libuv, with Node's stdout on a pipe). The fd
 * keeps the writer's handle until a write goes out whole, and an event for
 * it resumes that context (rq_fd_enter). Returns r, errno as it was.
 */
static __attribute__((noinline)) ssize_t stall(struct rq_fd *e, ssize_t r)
{
	int saved = errno;

	if (r > 0 || (r < 0 && (saved == EAGAIN || saved == EWOULDBLOCK))) {
		atomic_store_explicit(&e->stall, rq_handle_take(), memory_order_relaxed);
		errno = saved;
	}
	return r;
}

/* What a log write of `want` bytes that returned r leaves: see stall(). Returns r. */
static inline __attribute__((always_inline)) ssize_t stalled(struct rq_fd *e, ssize_t r,
							     size_t want)
{
	if (unlikely(r < 0 || (size_t)r != want))
		return stall(e, r);
	if (unlikely(atomic_load_explicit(&e->stall, memory_order_relaxed)))
		atomic_store_explicit(&e->stall, 0, memory_order_relaxed);
	return r;
}

/*
 * Log streams (their one-line write(2) and everything else, stdio's direct
 * writes among them) return through stalled(); connections and the rest go
 * to the general path.
 */
/*
 * A gzip member (1f 8b, deflate) starting a write at a line start: the
 * stream is compressed (nginx's `access_log ... gzip`), not lines, and a
 * prefix would break it. The fd stops being a log stream, and this write
 * and every later one go out as they are.
 */
static int compressed(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt)
{
	const unsigned char *b;

	if (iovcnt < 1 || !plausible(iov, sizeof(*iov)) || iov[0].iov_len < 3 ||
	    !plausible(iov[0].iov_base, 3))
		return 0;
	b = iov[0].iov_base;
	if (likely(b[0] != 0x1f) || b[1] != 0x8b || b[2] != 8 ||
	    atomic_load_explicit(&e->line, memory_order_relaxed))
		return 0;
	rq_fd_forget(fd);
	return 1;
}

ssize_t rq_io_write_slow(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k, uint32_t fl)
{
	size_t want;
	int bad;

	if (fl != RQ_FD_LOG)
		return write_general(fd, e, iov, iovcnt, k, fl);
	if (unlikely(compressed(fd, e, iov, iovcnt)))
		return rq_io_plain(fd, iov, iovcnt, k);
	if (k->how == RQ_WRITE)
		return stalled(e, log_line(fd, e, iov, k), iov[0].iov_len);
	want = iov_total(iov, iovcnt, &bad);
	return stalled(e, write_general(fd, e, iov, iovcnt, k, fl), want);
}

/* ---- reads, and bytes that go by other calls ---- */

/* The first byte of a TLS handshake record: a ClientHello, which no HTTP/1.x request starts with. */
#define TLS_HANDSHAKE 0x16

static unsigned char first_byte(const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			return *(const unsigned char *)iov[i].iov_base;
	return 0;
}

void rq_io_conn_read(struct rq_conn *c, const struct iovec *iov, int iovcnt, ssize_t r)
{
	size_t n = r > 0 ? (size_t)r : 0;

	switch (atomic_load_explicit(&c->xport, memory_order_acquire)) {
	case RQ_XP_PLAIN:
		if (unlikely(rq_conn_outbound(c))) { /* a reply: read in the context that wrote */
			RQ_SAVE_ERRNO(rq_conn_enter(c));
			return;
		}
		if (!(n && rq_conn_fresh(c) && first_byte(iov, iovcnt) == TLS_HANDSHAKE)) {
			rq_conn_feed(c, iov, iovcnt, n);
			return;
		}
		RQ_SAVE_ERRNO(rq_conn_tls_wait(c));
		for (int i = 0; i < iovcnt; i++)
			if (iov[i].iov_len) { /* (a ClientHello's start is in one piece) */
				RQ_SAVE_ERRNO(rq_conn_tls_hello(c, iov[i].iov_base,
								 iov[i].iov_len < n ? iov[i].iov_len : n));
				break;
			}
		return;
	case RQ_XP_TLS_WAIT:
		RQ_SAVE_ERRNO(rq_conn_enter(c));
		return;
	default:
		return; /* ciphertext: the SSL layer reads the plaintext */
	}
}

void rq_conn_read(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	struct rq_conn *c = rq_conn_of(fd);

	if (c)
		rq_io_conn_read(c, iov, iovcnt, r);
}

/* The connection of fd whose bytes are the protocol's (not ciphertext), or NULL. */
static struct rq_conn *plain_conn(int fd)
{
	struct rq_conn *c = rq_conn_of(fd);

	return c && atomic_load_explicit(&c->xport, memory_order_acquire) == RQ_XP_PLAIN ? c
											: NULL;
}

void rq_conn_skipped(int fd, ssize_t r)
{
	struct rq_conn *c = plain_conn(fd);

	if (c)
		rq_conn_feed_opaque(c, r > 0 ? (size_t)r : 0);
}

void rq_conn_opaque(int fd, ssize_t r)
{
	struct rq_fd *e = rq_fd_peek(fd);
	uint32_t fl = rq_fd_flags(e);
	struct rq_conn *c;

	if (fl & RQ_FD_CARRY)
		RQ_SAVE_ERRNO(rq_carry_put(fd, e));
	if ((fl & RQ_FD_CONN) && (c = plain_conn(fd)))
		rq_conn_out_opaque(c, r > 0 ? (size_t)r : 0);
}

void rq_conn_wrote(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	struct rq_conn *c = plain_conn(fd);

	if (c)
		rq_conn_out_seen(c, iov, iovcnt, r > 0 ? (size_t)r : 0);
}

/*
 * Writes the rest of a header insertion a short write cut, so that bytes
 * going out by another way do not land inside it. Returns 0 or -errno.
 */
static int flush_cut(struct rq_conn *c, int fd)
{
	char text[RQ_HDR_LINE];
	const char *rest;
	size_t left;

	while ((left = rq_conn_cut(c, text, &rest))) {
		ssize_t r = rq_sys.write(fd, rest, left);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EAGAIN;
		rq_conn_cut_sent(c, (size_t)r);
	}
	return 0;
}

int rq_conn_unseen_pre(int fd)
{
	struct rq_conn *c = plain_conn(fd);
	int saved = errno, r = c ? flush_cut(c, fd) : 0;

	errno = saved;
	return r;
}

void rq_conn_unseen(int fd)
{
	struct rq_conn *c = plain_conn(fd);
	int saved = errno;

	if (c) {
		flush_cut(c, fd);
		rq_conn_out_unseen(c);
	}
	errno = saved;
}
struct rq_sys rq_sys;
