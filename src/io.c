#include "io.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "carry.h"
#include "config.h"
#include "ctx.h"
#include "id.h"
#include "lines.h"
#include "prefix.h"
#include "sys.h"

#define PLAN_MAX 64 /* iovecs in one planned syscall: 1 KiB of stack */

/* One planned syscall: the caller's bytes with insertions between them. */
struct plan {
	int n;
	size_t bytes, caller; /* all bytes planned, and the caller's among them */
	struct iovec iov[PLAN_MAX];
	int8_t ins[PLAN_MAX];      /* -1: caller bytes; else index of the insertion */
	uint16_t before[PLAN_MAX]; /* bytes of that insertion already out before */
};

/* Where a short write stopped. */
struct cut {
	size_t caller; /* caller bytes written */
	int full;      /* insertions written whole (they are in order) */
	int ins;       /* insertion the write stopped inside or right after, or -1 */
	size_t sent;   /* bytes of that insertion out in all */
};

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

static ssize_t emit(int fd, const struct plan *pl, const struct rq_call *k)
{
	struct msghdr m;

	if (k->how == RQ_WRITE || k->how == RQ_WRITEV)
		return rq_sys.writev(fd, pl->iov, pl->n);
	memset(&m, 0, sizeof(m));
	if (k->how == RQ_SENDMSG) {
		m = *k->msg;
	} else if (k->how == RQ_SENDTO) {
		m.msg_name = (void *)k->to;
		m.msg_namelen = k->tolen;
	}
	m.msg_iov = (struct iovec *)pl->iov;
	m.msg_iovlen = (size_t)pl->n;
	return rq_sys.sendmsg(fd, &m, k->flags);
}

static void add(struct plan *pl, const void *p, size_t len, int ins, size_t before)
{
	pl->bytes += len;
	if (ins < 0)
		pl->caller += len;
	pl->iov[pl->n].iov_base = (void *)p;
	pl->iov[pl->n].iov_len = len;
	pl->ins[pl->n] = (int8_t)ins;
	pl->before[pl->n] = (uint16_t)before;
	pl->n++;
}

/*
 * Maps the r bytes the kernel took back to the caller's bytes. If r ends
 * inside an insertion, or right after one with nothing of the caller's after
 * it, that insertion is reported so the next call does not repeat it.
 */
static struct cut map(const struct plan *pl, size_t r)
{
	struct cut c = { 0, 0, -1, 0 };

	if (r == pl->bytes) { /* the common case: all of it went out */
		c.caller = pl->caller;
		for (int i = pl->n - 1; i >= 0; i--) {
			if (pl->ins[i] >= 0) {
				c.full = pl->ins[i] + 1;
				break;
			}
		}
		if (pl->n && pl->ins[pl->n - 1] >= 0) {
			c.ins = pl->ins[pl->n - 1];
			c.sent = pl->before[pl->n - 1] + pl->iov[pl->n - 1].iov_len;
		}
		return c;
	}

	for (int i = 0; i < pl->n && r; i++) {
		size_t len = pl->iov[i].iov_len, take = r < len ? r : len;

		r -= take;
		if (pl->ins[i] < 0) {
			c.caller += take;
			c.ins = -1;
		} else {
			c.ins = pl->ins[i];
			c.sent = pl->before[i] + take;
			if (take == len)
				c.full = c.ins + 1;
		}
	}
	return c;
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

	return n == 0 || (a >= 4096 && a + n >= a && a + n <= ((uintptr_t)1 << 47));
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

struct pool {
	struct iovec iov[IOV_MAX];
	char buf[POOL_BUF];
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
	while (rq_walk_next(w, &s)) {
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
static ssize_t log_write(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k, size_t total)
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

		if (!held && !rlen && !done) {
			if (log_bare(fd, e, epoch, st, iov, iovcnt, k, total, tries++ < 4, &r) < 0)
				continue;
			return r;
		}
		rq_walk_init(&w, iov, iovcnt, total - done, st & RQ_LN_MID, rest, rlen, skip,
			     held ? &tx : NULL);
		w.i = cur.i;
		w.off = cur.off;
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
			ret = done ? (ssize_t)done : r;
			break;
		}
		c = map_log(fd, &start, (size_t)r, st, &now);
		rq_ln_fix(e, epoch, post, now);
		done += c;
		advance(&cur, iov, iovcnt, c);
		if (c) {
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

/* ---- connections ---- */

#define HDR_MAX (RQ_HDR_MAX + REQCTX_ID_MAX + 5)
#define INS_CALL 4 /* header insertions woven into one syscall (struct ins is on the stack) */

/* A header insertion planned for one response head. */
struct ins {
	size_t at;      /* caller offset */
	size_t sent;    /* bytes already out */
	uint32_t slot;  /* request whose ID it carries */
	size_t len;
	char text[HDR_MAX];
};

/* The connection's current request becomes the thread's context. */
static void enter(struct rq_conn *c)
{
	uint32_t cur = atomic_load_explicit(&c->cur, memory_order_acquire);

	if (cur != RQ_NO_CUR)
		rq_ctx_set_slot(rq_conn_slot(c, cur));
	else
		rq_ctx_clear();
}

static uint32_t q_slot(const struct rq_conn *c, uint32_t i)
{
	return c->qslot[i % RQ_PIPE];
}

/*
 * Whether the response written next, with the writer at ring entry h after hs
 * responses to lost requests, answers entry h (t: the reader's tail).
 */
static inline int answers(const struct rq_conn *c, uint32_t h, uint32_t hs, uint32_t t)
{
	uint8_t skip;

	if (h == t)
		return 0; /* and entry h is the reader's, not to be read */
	skip = c->qskip[h % RQ_PIPE];
	return !(skip & RQ_SKIP_LOST) && hs >= skip;
}

/* A final response went out: the writer moves past entry h, or past one lost request. */
static void step(const struct rq_conn *c, uint32_t *h, uint32_t *hs, uint32_t t)
{
	if (answers(c, *h, *hs, t)) {
		(*h)++;
		*hs = 0;
	} else if (*hs < RQ_SKIP_MAX) {
		(*hs)++; /* a lost request's, or one answering nothing */
	}
}

/* Makes (h, hs) the writer's position, freeing the slots of the entries answered. */
static void pop_to(struct rq_conn *c, uint32_t h, uint32_t hs)
{
	for (uint32_t i = atomic_load_explicit(&c->head, memory_order_relaxed); i != h; i++) {
		uint32_t p = q_slot(c, i);

		c->done = atomic_load_explicit(&rq_conn_slot(c, p)->serial, memory_order_relaxed);
		atomic_fetch_and_explicit(&c->used, ~((uint64_t)1 << p), memory_order_release);
	}
	atomic_store_explicit(&c->head, h, memory_order_release);
	c->hs = (uint8_t)hs;
}

/* The method of the request the next response answers (0 when it is not known to be HEAD). */
static inline int method_of(struct rq_conn *c, uint32_t h, uint32_t hs, uint32_t t)
{
	if (!answers(c, h, hs, t))
		return 0;
	return atomic_load_explicit(&rq_conn_slot(c, q_slot(c, h))->flags, memory_order_relaxed) &
		RQ_SLOT_HEAD ? RQ_M_HEAD : 0;
}

/* Renders "Name: id\r\n" for slot p. Returns 0, or -1 if the slot could not be read. */
static int render_header(struct rq_conn *c, uint32_t p, struct ins *in)
{
	struct rq_ctx id;

	if (rq_slot_read(rq_conn_slot(c, p), &id, NULL) < 0 || !id.len)
		return -1;
	memcpy(in->text, rq_cfg.hdr, rq_cfg.hdr_len);
	in->len = rq_cfg.hdr_len;
	in->text[in->len++] = ':';
	in->text[in->len++] = ' ';
	memcpy(in->text + in->len, id.id, id.len);
	in->len += id.len;
	in->text[in->len++] = '\r';
	in->text[in->len++] = '\n';
	in->slot = p;
	return 0;
}

/*
 * Whether c's responses still get the header; if not, its response scanner
 * stops. They do not once it died, or the writer reached requests whose
 * framing is unknown (RQ_SKIP_LOST).
 */
static int echo_on(struct rq_conn *c)
{
	uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);

	if (atomic_load_explicit(&c->echo, memory_order_relaxed) && !rq_hdrs_dead(&c->ws) &&
	    !(h != t && (c->qskip[h % RQ_PIPE] & RQ_SKIP_LOST)))
		return 1;
	rq_hdrs_kill(&c->ws);
	atomic_store_explicit(&c->echo, 0, memory_order_relaxed); /* the reader stops queueing */
	return 0;
}

/* Where prescan's scanner ended, to commit it as is when the plan goes out whole. */
struct pre {
	struct rq_hdrs s;
	uint32_t h, hs; /* the writer's ring position */
	int state;      /* ins_state */
	size_t stop;    /* caller offset the plan goes up to */
	int whole;      /* s, h, hs and state are those at `stop` */
};

/*
 * Scans the caller's bytes from `from` (caller offset `base`) on a copy of the
 * response scanner and plans where the ID header goes in each response head
 * that answers a queued request and has none of its own:
 *   - right after the status line, when the status line ends in this write
 *     or the write starts right after it;
 *   - else before the blank line ending the head, the first point where it is
 *     known that the server did not send one itself.
 * The decision is taken when the head ends, or, when this write ends between
 * the CR and the LF of that blank line, at the CR. Returns the number of
 * insertions; if there were more than INS_CALL, the plan stops at the first
 * one left out (pre->stop) and the rest is for the next syscall.
 */
static int prescan(struct rq_conn *c, const struct iovec *iov, int iovcnt, struct cursor from,
		   size_t base, size_t total, struct ins *ins, struct pre *pre)
{
	struct rq_hdrs *s = &pre->s;
	uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed), hs = c->hs;
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
	int n = 0, state = c->ins_state, have_status, cand = 0;
	size_t pos = base, status_at = base, cand_at = 0;

	*s = c->ws;
	have_status = rq_resp_after_status(s);
	pre->whole = 0;
	pre->stop = total;
	if (state == 1) { /* finish the header a short write cut */
		if (render_header(c, c->ins_slot, &ins[0]) < 0 || c->ins_sent > ins[0].len)
			return 0;
		ins[0].at = base;
		ins[0].sent = c->ins_sent;
		n = 1;
		state = 2;
	}
	for (int i = from.i; i < iovcnt; i++) {
		size_t skip = i == from.i ? from.off : 0, len = iov[i].iov_len - skip, off = 0;
		const char *b = (const char *)iov[i].iov_base + skip;

		while (off < len) {
			enum rq_ev ev;

			off += rq_resp_feed(s, b + off, len - off, method_of(c, h, hs, t), &ev);
			if (ev == RQ_EV_DEAD)
				goto out;
			if (ev == RQ_EV_STATUS) {
				status_at = pos + off;
				have_status = 1;
			} else if (ev == RQ_EV_BLANK) {
				cand = state == 0 && s->status >= 200 && !s->xr_seen && answers(c, h, hs, t);
				cand_at = have_status ? status_at : pos + off;
			} else if (ev == RQ_EV_END) {
				if (cand) {
					if (n == INS_CALL) {
						pre->stop = cand_at;
						return n;
					}
					if (render_header(c, q_slot(c, h), &ins[n]) == 0) {
						ins[n].at = cand_at;
						ins[n++].sent = 0;
					}
					cand = 0;
				}
				if (s->status >= 200)
					step(c, &h, &hs, t);
				state = 0;
				have_status = 0;
			}
		}
		pos += len;
	}
	if (cand) { /* the write ends between the blank line's CR and LF */
		if (n == INS_CALL) {
			pre->stop = cand_at;
			return n;
		}
		if (render_header(c, q_slot(c, h), &ins[n]) == 0) {
			ins[n].at = cand_at;
			ins[n++].sent = 0;
			state = 2;
		}
	}
out:
	pre->h = h;
	pre->hs = hs;
	pre->state = state;
	pre->whole = 1;
	return n;
}

/* A plan that went out whole leaves the scanner where prescan left it. */
static void commit(struct rq_conn *c, const struct pre *pre)
{
	c->ws = pre->s;
	pop_to(c, pre->h, pre->hs);
	c->ins_state = (uint8_t)pre->state;
}

static const struct cut no_cut = { 0, 0, -1, 0 };

/*
 * Commits the response scanner over the `len` caller bytes from `from`
 * (caller offset `base`) that were written: pops answered requests and keeps
 * the insertion state right.
 */
static void postscan(struct rq_conn *c, const struct iovec *iov, int iovcnt, struct cursor from,
		     size_t base, size_t len, const struct ins *ins, int nins, const struct cut *cut)
{
	size_t pos = base;

	if (nins && ins[0].at == base && cut->full > 0)
		c->ins_state = 2; /* one at the very start (a remainder, or after a status line) is out */
	for (int i = from.i; i < iovcnt && len; i++) {
		size_t skip = i == from.i ? from.off : 0, avail = iov[i].iov_len - skip;
		size_t seg = avail < len ? avail : len, off = 0;
		const char *b = (const char *)iov[i].iov_base + skip;

		while (off < seg) {
			uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed), hs = c->hs;
			uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
			enum rq_ev ev;

			off += rq_resp_feed(&c->ws, b + off, seg - off, method_of(c, h, hs, t), &ev);
			if (ev == RQ_EV_STATUS || ev == RQ_EV_BLANK) {
				for (int k = 0; k < nins && k < cut->full; k++)
					if (ins[k].at == pos + off)
						c->ins_state = 2;
			} else if (ev == RQ_EV_END) {
				if (c->ws.status >= 200) {
					step(c, &h, &hs, t);
					pop_to(c, h, hs);
				}
				c->ins_state = 0;
			}
		}
		pos += seg;
		len -= seg;
	}
	if (cut->ins >= 0) {
		c->ins_state = cut->sent < ins[cut->ins].len ? 1 : 2;
		c->ins_sent = (uint16_t)cut->sent;
		c->ins_slot = (uint8_t)ins[cut->ins].slot;
	}
}

/*
 * Once a response is out whole, the thread that wrote it is done with that
 * request: its context is marked finished (a hand-off may replace it).
 */
static void answered_all(struct rq_conn *c)
{
	if (c->done && rq_resp_at_start(&c->ws))
		rq_ctx_finish(c->done);
}

/* The context for I/O on c: a response starting now speaks for the request it answers. */
static void conn_ctx(struct rq_conn *c)
{
	uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);

	if (rq_resp_at_start(&c->ws) && answers(c, h, c->hs, t))
		atomic_store_explicit(&c->cur, q_slot(c, h), memory_order_release);
	enter(c);
}

/*
 * Lays out the caller's bytes from `from` (caller offset `base`) up to offset
 * `stop`, with the insertions. If the iovecs run out, the plan stops early
 * and the rest is for the next syscall. Returns the insertions planned.
 */
static int plan_conn(struct plan *pl, const struct iovec *iov, int iovcnt, struct cursor from,
		     size_t base, size_t stop, struct ins *ins, int nins)
{
	size_t pos = base;
	int k = 0;

	pl->n = 0;
	pl->bytes = pl->caller = 0;
	for (int i = from.i; i < iovcnt && pos < stop; i++) {
		size_t skip = i == from.i ? from.off : 0, len = iov[i].iov_len - skip, off = 0;
		const char *b = (const char *)iov[i].iov_base + skip;

		if (len > stop - pos)
			len = stop - pos;
		for (; k < nins && ins[k].at <= pos + len; k++) {
			size_t cut = ins[k].at - pos;

			if (pl->n > PLAN_MAX - 3)
				return k;
			if (cut > off)
				add(pl, b + off, cut - off, -1, 0);
			add(pl, ins[k].text + ins[k].sent, ins[k].len - ins[k].sent, k, ins[k].sent);
			off = cut;
		}
		if (off < len) {
			if (pl->n == PLAN_MAX)
				return k;
			add(pl, b + off, len - off, -1, 0);
		}
		pos += len;
	}
	return k;
}

/* After the scanner moved: a dead one means no more headers on this connection. */
static void settle(struct rq_conn *c)
{
	echo_on(c);
	answered_all(c);
}

/*
 * The write path of a connection. Each syscall carries up to INS_CALL header
 * insertions; a write with more response heads than that (a pipelined batch)
 * goes out in as many syscalls, and returns what it got out if one of them
 * comes up short, as a short write does.
 */
static ssize_t conn_write(int fd, const struct iovec *iov, int iovcnt, const struct rq_call *k,
			  size_t total)
{
	struct rq_conn *c = rq_conn_peek(fd);
	struct ins ins[INS_CALL];
	struct cursor at = { 0, 0 };
	struct rq_call again;
	struct msghdr bare;
	size_t done = 0;
	int saved = errno;

	conn_ctx(c);
	if (!echo_on(c) || !total)
		return rq_io_plain(fd, iov, iovcnt, k);
	for (;;) {
		struct plan pl;
		struct pre pre;
		struct cut cut;
		int nins = prescan(c, iov, iovcnt, at, done, total, ins, &pre);
		ssize_t r;

		if (!nins && !done) { /* nothing to weave in: the caller's own call */
			r = rq_io_plain(fd, iov, iovcnt, k);
			if (r > 0) {
				int e = errno;

				if ((size_t)r == total && pre.whole)
					commit(c, &pre);
				else
					postscan(c, iov, iovcnt, at, 0, (size_t)r, ins, 0, &no_cut);
				settle(c);
				errno = e;
			}
			return r;
		}
		nins = plan_conn(&pl, iov, iovcnt, at, done, pre.stop, ins, nins);
		r = emit(fd, &pl, k);
		if (r <= 0) {
			if (!done)
				return r;
			errno = saved;
			return (ssize_t)done;
		}
		if ((size_t)r == pl.bytes && pl.caller == pre.stop - done && pre.whole) {
			commit(c, &pre);
			cut.caller = pl.caller;
		} else {
			cut = map(&pl, (size_t)r);
			postscan(c, iov, iovcnt, at, done, cut.caller, ins, nins, &cut);
		}
		settle(c);
		done += cut.caller;
		advance(&at, iov, iovcnt, cut.caller);
		if (done == total || ((size_t)r < pl.bytes && done)) {
			errno = saved;
			return (ssize_t)done; /* all of it, or a short write */
		}
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
	 const char *h, const struct iovec *v, int cnt, const char *text, size_t tl, size_t at)
{
	size_t n = iov[0].iov_len, c;
	ssize_t r;

	if (unlikely(rq_ln_epoch != epoch)) { /* a handler wrote meanwhile: plan from what it left */
		rq_prefix_release(h);
		return write_general(fd, e, iov, 1, k, RQ_FD_LOG);
	}
	/* writev leaves errno alone when it succeeds, and so does everything here */
	r = rq_sys.writev(fd, v, cnt);
	if (likely(r == (ssize_t)(tl + n))) {
		rq_prefix_release(h);
		return (ssize_t)n;
	}
	c = r > 0 ? line_cut(fd, e, epoch, text, tl, at, (size_t)r) : 0;
	rq_prefix_release(h);
	if (r <= 0)
		return r;
	if (!c) /* none of the line yet: the general path goes on */
		return write_general(fd, e, iov, 1, k, RQ_FD_LOG);
	return (ssize_t)c;
}

/* log_line in the formats other than prefix: the line gets its text where it goes. */
static __attribute__((noinline)) ssize_t log_fields(int fd, struct rq_fd *e,
						    const struct iovec *iov,
						    const struct rq_call *k, unsigned epoch,
						    const char *h)
{
	const char *s = iov[0].iov_base, *text;
	size_t n = iov[0].iov_len, tl, at;
	struct rq_texts t;
	struct iovec v[3];

	rq_prefix_texts(&t);
	if (!(tl = rq_prefix_place_line(&t, s, n, &text, &at))) {
		rq_prefix_release(h); /* it has its field (or prefix) already */
		return write_general(fd, e, iov, 1, k, RQ_FD_LOG);
	}
	if (!at) {
		v[0].iov_base = (void *)text;
		v[0].iov_len = tl;
		v[1] = iov[0];
		return line_out(fd, e, iov, k, epoch, h, v, 2, text, tl, 0);
	}
	v[0].iov_base = (void *)s; /* a JSON line: after its brace */
	v[0].iov_len = at;
	v[1].iov_base = (void *)text;
	v[1].iov_len = tl;
	v[2].iov_base = (void *)(s + at);
	v[2].iov_len = n - at;
	return line_out(fd, e, iov, k, epoch, h, v, 3, text, tl, at);
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
	struct iovec v[2];

	if (!n || n > SSIZE_MAX || !plausible(s, n) || s[n - 1] != '\n' ||
	    atomic_load_explicit(&e->line, memory_order_relaxed) || !rq_prefix_wanted() ||
	    memchr(s, '\n', n - 1) || !(h = rq_prefix_take(&tl)))
		return write_general(fd, e, iov, 1, k, RQ_FD_LOG); /* (or a handler's, cache busy) */
	if (unlikely(rq_cfg.format != RQ_FMT_PREFIX))
		return log_fields(fd, e, iov, k, epoch, h);
	if (unlikely(*s == *h && n >= tl && !memcmp(s, h, tl))) {
		rq_prefix_release(h); /* the line has its prefix already */
		return write_general(fd, e, iov, 1, k, RQ_FD_LOG);
	}
	v[0].iov_base = (void *)h;
	v[0].iov_len = tl;
	v[1] = iov[0];
	return line_out(fd, e, iov, k, epoch, h, v, 2, h, tl, 0);
}

/* Everything but a carrier or a one-line log write: checks the call, then plans it. */
static __attribute__((noinline)) ssize_t write_general(int fd, struct rq_fd *e,
						       const struct iovec *iov, int iovcnt,
						       const struct rq_call *k, uint32_t fl)
{
	int bad;
	size_t total = iov_total(iov, iovcnt, &bad);

	if (k->how == RQ_SENDMSG && !plausible(k->msg, sizeof(*k->msg)))
		bad = 1;
	if (fl & RQ_FD_CONN) {
		rq_evq_touch(fd);
		if (bad) { /* let the kernel judge it; still set the context */
			struct rq_conn *c = rq_conn_peek(fd);
			ssize_t r;

			conn_ctx(c);
			r = rq_io_plain(fd, iov, iovcnt, k);
			if (r > 0) /* bytes reqctx did not read went out */
				atomic_store_explicit(&c->echo, 0, memory_order_relaxed);
			return r;
		}
		return conn_write(fd, iov, iovcnt, k, total);
	}
	if (bad || (k->how == RQ_SENDMSG && k->msg->msg_controllen))
		return rq_io_plain(fd, iov, iovcnt, k);
	if ((fl & RQ_FD_LOG) && total)
		return log_write(fd, e, iov, iovcnt, k, total);
	return rq_io_plain(fd, iov, iovcnt, k);
}

ssize_t rq_io_write_slow(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k)
{
	uint32_t fl = rq_fd_flags(e);

	if (fl & RQ_FD_CARRY) { /* carriers never look at the bytes */
		rq_carry_put(fd, e);
		return rq_io_plain(fd, iov, iovcnt, k);
	}
	if (fl == RQ_FD_LOG && k->how == RQ_WRITE)
		return log_line(fd, e, iov, k);
	return write_general(fd, e, iov, iovcnt, k, fl);
}

/* ---- reads ---- */

static void set_cur(struct rq_conn *c, uint32_t p)
{
	atomic_store_explicit(&c->cur, p, memory_order_release);
}

/* Fills slot p with a new request (a generated ID if len is 0). */
static void fill(struct rq_conn *c, uint32_t p, const char *id, uint32_t len, uint32_t flags)
{
	char uuid[RQ_UUID_LEN];

	if (!len) {
		rq_uuid4(uuid);
		id = uuid;
		len = RQ_UUID_LEN;
	}
	if (p >= RQ_INLINE)
		c->deep_used = 1;
	rq_slot_fill(rq_conn_slot(c, p), id, len, flags);
}

/*
 * A free slot for a new request, the lowest, so that shallow pipelines stay
 * inside struct rq_conn; the overflow area is mapped on first use. -1 if none.
 */
static int free_slot(struct rq_conn *c, int fd)
{
	uint64_t used = atomic_load_explicit(&c->used, memory_order_acquire);
	struct rq_slot *d;
	int p;

	if (used == ~(uint64_t)0)
		return -1;
	p = __builtin_ctzll(~used);
	if (p >= RQ_INLINE && !atomic_load_explicit(&c->deep, memory_order_relaxed)) {
		if (!(d = rq_deep_get(fd)))
			return -1;
		atomic_store_explicit(&c->deep, d, memory_order_release);
	}
	return p;
}

/*
 * The reader completed a request head: it is queued for its response and
 * becomes the connection's current request. With RQ_PIPE unanswered already
 * it is counted as lost instead: its response gets no header, and the lines
 * it logs carry the newest queued request's ID (see struct rq_conn). Once
 * nobody answers the ring, each request simply replaces the current one.
 */
static void push(struct rq_conn *c, int fd, const char *id, uint32_t len, uint32_t flags)
{
	uint32_t h, t;
	int p;

	c->seen = 1;
	if (atomic_load_explicit(&c->echo, memory_order_relaxed)) {
		h = atomic_load_explicit(&c->head, memory_order_acquire);
		t = atomic_load_explicit(&c->tail, memory_order_relaxed);
		if (t - h < RQ_PIPE && (p = free_slot(c, fd)) >= 0) {
			fill(c, (uint32_t)p, id, len, flags);
			atomic_fetch_or_explicit(&c->used, (uint64_t)1 << p, memory_order_relaxed);
			c->qslot[t % RQ_PIPE] = (uint8_t)p;
			c->qskip[t % RQ_PIPE] = c->lost;
			c->lost = 0;
			atomic_store_explicit(&c->tail, t + 1, memory_order_release);
			set_cur(c, (uint32_t)p);
			return;
		}
		if (!(flags & RQ_SLOT_HEAD) && (c->lost & ~RQ_SKIP_LOST) < RQ_SKIP_MAX)
			c->lost++;
		else
			c->lost |= RQ_SKIP_LOST;
		return;
	}
	p = (int)atomic_load_explicit(&c->cur, memory_order_relaxed);
	if (p == (int)RQ_NO_CUR)
		p = 0;
	fill(c, (uint32_t)p, id, len, flags);
	set_cur(c, (uint32_t)p);
}

/* The request stream turned out not to be HTTP: one ID for the connection's whole life. */
static void req_dead(struct rq_conn *c, int fd)
{
	if (c->seen)
		return;
	atomic_store_explicit(&c->echo, 0, memory_order_relaxed); /* no response heads to look for */
	push(c, fd, NULL, 0, 0);
}

void rq_conn_read(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	struct rq_conn *c = rq_conn_peek(fd);
	size_t left = r > 0 ? (size_t)r : 0;
	int saved = errno;

	for (int i = 0; i < iovcnt && left && !rq_hdrs_dead(&c->rp.h); i++) {
		const char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len < left ? iov[i].iov_len : left, off = 0;

		left -= len;
		while (off < len) {
			enum rq_ev ev;

			off += rq_req_feed(&c->rp, b + off, len - off, &ev);
			if (ev == RQ_EV_HEAD)
				push(c, fd, c->rp.xr, c->rp.h.xr_have ? c->rp.h.xr_len : 0,
				     c->rp.h.method == RQ_M_HEAD ? RQ_SLOT_HEAD : 0);
			else if (ev == RQ_EV_DEAD)
				req_dead(c, fd);
		}
	}
	enter(c);
	errno = saved;
}

void rq_carry_read(int fd)
{
	struct rq_conn *c = rq_conn_peek(fd);

	/* rq_fd_enter for a carrier, without looking the fd up again; errno is not touched */
	if (c && atomic_load_explicit(&c->slots[0].serial, memory_order_relaxed) !=
		     rq_ctx_cur()->serial)
		rq_ctx_set_slot(&c->slots[0]);
}

void rq_conn_skipped(int fd, ssize_t r)
{
	struct rq_conn *c = rq_conn_peek(fd);
	int saved = errno;

	if (r > 0 && !rq_hdrs_dead(&c->rp.h)) {
		rq_hdrs_opaque(&c->rp.h, (uint64_t)r);
		if (rq_hdrs_dead(&c->rp.h))
			req_dead(c, fd);
	}
	enter(c);
	errno = saved;
}

void rq_conn_opaque(int fd, ssize_t r)
{
	struct rq_fd *e = rq_fd_peek(fd);
	struct rq_conn *c;
	int saved = errno;

	if (rq_fd_flags(e) & RQ_FD_CARRY)
		rq_carry_put(fd, e);
	if (!(rq_fd_flags(e) & RQ_FD_CONN))
		return;
	c = rq_conn_peek(fd);
	conn_ctx(c);
	if (r > 0 && echo_on(c)) {
		rq_hdrs_opaque(&c->ws, (uint64_t)r);
		settle(c);
	}
	errno = saved;
}

void rq_conn_wrote(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	struct rq_conn *c = rq_conn_peek(fd);
	int saved = errno;

	conn_ctx(c);
	if (r > 0 && echo_on(c)) {
		postscan(c, iov, iovcnt, (struct cursor){ 0, 0 }, 0, (size_t)r, NULL, 0, &no_cut);
		settle(c);
	}
	errno = saved;
}

/*
 * Writes the rest of a header insertion a short write cut, so that bytes
 * going out by another way do not land inside it. Returns 0 or -errno.
 */
static int flush_cut(struct rq_conn *c, int fd)
{
	struct ins in;

	if (c->ins_state != 1)
		return 0;
	if (render_header(c, c->ins_slot, &in) < 0 || c->ins_sent > in.len)
		return -EIO;
	while (c->ins_sent < in.len) {
		ssize_t r = rq_sys.write(fd, in.text + c->ins_sent, in.len - c->ins_sent);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EAGAIN;
		c->ins_sent = (uint16_t)(c->ins_sent + (size_t)r);
	}
	c->ins_state = 2;
	return 0;
}

int rq_conn_unseen_pre(int fd)
{
	struct rq_conn *c = rq_conn_peek(fd);
	int saved = errno, r = flush_cut(c, fd);

	errno = saved;
	return r == -EIO ? 0 : r;
}

void rq_conn_unseen(int fd)
{
	struct rq_conn *c = rq_conn_peek(fd);
	int saved = errno;

	flush_cut(c, fd);
	atomic_store_explicit(&c->echo, 0, memory_order_relaxed);
	errno = saved;
}
struct rq_sys rq_sys;
