#include "io.h"

#include <limits.h>
#include <string.h>

#include "carry.h"
#include "config.h"
#include "ctx.h"
#include "handle.h"
#include "id.h"
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

int rq_prefix_wanted(void)
{
	return rq_ctx_cur()->serial != 0 || !rq_cfg.bare_unknown;
}

size_t rq_prefix_render(char buf[RQ_INS_MAX])
{
	const struct rq_ctx *c = rq_ctx_cur();
	size_t n = rq_cfg.pfx_head_len;

	memcpy(buf, rq_cfg.pfx_head, n);
	memcpy(buf + n, c->id, c->len);
	n += c->len;
	memcpy(buf + n, rq_cfg.pfx_tail, rq_cfg.pfx_tail_len);
	return n + rq_cfg.pfx_tail_len;
}

/*
 * The thread's prefix, rendered once per context rather than once per line.
 * `busy` keeps a signal handler that logs while the cache is in use from
 * rewriting it under its owner: the handler renders into its own buffer.
 */
struct pfx_cache {
	uint64_t serial;   /* context it was rendered for */
	unsigned cfg_gen;  /* configuration it was rendered with */
	unsigned busy;
	size_t len;        /* 0: nothing cached */
	char text[RQ_INS_MAX];
};

static RQ_TLS struct pfx_cache pfx_cache;

const char *rq_prefix_acquire(char buf[RQ_INS_MAX], size_t *len)
{
	struct pfx_cache *p = &pfx_cache;
	uint64_t serial = rq_ctx_cur()->serial;

	if (p->busy) {
		*len = rq_prefix_render(buf);
		return buf;
	}
	p->busy = 1;
	atomic_signal_fence(memory_order_seq_cst);
	if (unlikely(p->serial != serial || p->cfg_gen != rq_cfg.gen || !p->len)) {
		p->len = 0;
		p->serial = serial;
		p->cfg_gen = rq_cfg.gen;
		p->len = rq_prefix_render(p->text);
	}
	*len = p->len;
	return p->text;
}

void rq_prefix_release(const char *pfx)
{
	if (pfx == pfx_cache.text) {
		atomic_signal_fence(memory_order_seq_cst);
		pfx_cache.busy = 0;
	}
}

/*
 * Plans the caller's bytes from `cur` on, with the prefix before each line
 * start, until the data or the plan runs out. `mid` and `pend` are the
 * stream's line state (inside a line; prefix bytes already out).
 */
static void log_plan(struct plan *pl, const struct iovec *iov, int iovcnt, struct cursor cur,
		     int mid, size_t pend, const char *pfx, size_t plen)
{
	pl->n = 0;
	pl->bytes = pl->caller = 0;
	while (cur.i < iovcnt && pl->n <= PLAN_MAX - 2) {
		const char *s = (const char *)iov[cur.i].iov_base + cur.off;
		size_t avail = iov[cur.i].iov_len - cur.off;
		const char *nl;
		size_t take;

		if (!avail) {
			cur.i++;
			cur.off = 0;
			continue;
		}
		if (!mid) {
			if (pend < plen)
				add(pl, pfx + pend, plen - pend, 0, pend);
			pend = 0;
			mid = 1;
		}
		nl = memchr(s, '\n', avail);
		take = nl ? (size_t)(nl - s) + 1 : avail;
		add(pl, s, take, -1, 0);
		cur.off += take;
		if (nl)
			mid = 0;
	}
}

static ssize_t log_lines(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k, size_t total, const char *pfx, size_t plen);

static ssize_t log_write(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k, size_t total)
{
	char buf[RQ_INS_MAX];
	const char *pfx;
	size_t plen;
	ssize_t r;

	if (!rq_prefix_wanted()) {
		r = rq_io_plain(fd, iov, iovcnt, k);
		if (r > 0) {
			atomic_store_explicit(&e->wmid, byte_before(iov, iovcnt, (size_t)r) != '\n',
					      memory_order_relaxed);
			atomic_store_explicit(&e->wpend, 0, memory_order_relaxed);
		}
		return r;
	}
	pfx = rq_prefix_acquire(buf, &plen);
	r = log_lines(fd, e, iov, iovcnt, k, total, pfx, plen);
	rq_prefix_release(pfx);
	return r;
}

/* Writes the caller's bytes with prefix pfx at each line start; what write(2) returns. */
static ssize_t log_lines(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k, size_t total, const char *pfx, size_t plen)
{
	size_t done = 0;
	struct cursor cur = { 0, 0 };
	int saved = errno;

	for (;;) {
		int mid = (int)atomic_load_explicit(&e->wmid, memory_order_relaxed);
		size_t pend = atomic_load_explicit(&e->wpend, memory_order_relaxed);
		struct plan pl;
		struct cut c;
		ssize_t r;

		if (pend > plen)
			pend = plen; /* the ID changed since the prefix was cut */
		log_plan(&pl, iov, iovcnt, cur, mid, pend, pfx, plen);
		r = emit(fd, &pl, k);
		if (r == 0)
			return (ssize_t)done;
		if (r < 0) {
			if (!done)
				return -1;
			errno = saved;
			return (ssize_t)done;
		}
		c = map(&pl, (size_t)r);
		if (c.ins >= 0) {
			atomic_store_explicit(&e->wmid, 0, memory_order_relaxed);
			atomic_store_explicit(&e->wpend, (uint32_t)c.sent, memory_order_relaxed);
		} else if (c.caller) {
			atomic_store_explicit(&e->wmid,
					      byte_before(iov, iovcnt, done + c.caller) != '\n',
					      memory_order_relaxed);
			atomic_store_explicit(&e->wpend, 0, memory_order_relaxed);
		}
		done += c.caller;
		advance(&cur, iov, iovcnt, c.caller);
		if (done == total) {
			errno = saved;
			return (ssize_t)done;
		}
		/* A short write returns what the caller got out, unless that is nothing. */
		if ((size_t)r < pl.bytes && done)
			return errno = saved, (ssize_t)done;
	}
}

/* ---- connections ---- */

#define HDR_MAX (RQ_HDR_MAX + REQCTX_ID_MAX + 5)

/* A header insertion planned for one response head. */
struct ins {
	size_t at;      /* caller offset */
	size_t sent;    /* bytes already out */
	uint32_t slot;  /* request whose ID it carries */
	size_t len;
	char text[HDR_MAX];
};

static struct rq_slot *slot_at(struct rq_conn *c, uint32_t i)
{
	return &c->slots[i % RQ_PIPE];
}

/* The method of the request answered by the response at ring index h. */
static int method_of(struct rq_conn *c, uint32_t h)
{
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);

	if (h >= t)
		return 0;
	return atomic_load_explicit(&slot_at(c, h)->flags, memory_order_relaxed) & RQ_SLOT_HEAD
		? RQ_M_HEAD : 0;
}

/* Renders "Name: id\r\n" for slot i. Returns 0, or -1 if the slot could not be read. */
static int render_header(struct rq_conn *c, uint32_t i, struct ins *in)
{
	struct rq_ctx id;

	if (rq_slot_read(slot_at(c, i), &id, NULL) < 0 || !id.len)
		return -1;
	memcpy(in->text, rq_cfg.hdr, rq_cfg.hdr_len);
	in->len = rq_cfg.hdr_len;
	in->text[in->len++] = ':';
	in->text[in->len++] = ' ';
	memcpy(in->text + in->len, id.id, id.len);
	in->len += id.len;
	in->text[in->len++] = '\r';
	in->text[in->len++] = '\n';
	in->slot = i;
	return 0;
}

/*
 * Which request a response ending now answers: the oldest unanswered one.
 * With none (the server answers before a head is complete, or the bytes only
 * look like a response) nothing is inserted.
 */
static int answered(struct rq_conn *c, uint32_t h, uint32_t *slot)
{
	*slot = h;
	return h < atomic_load_explicit(&c->tail, memory_order_acquire);
}

/*
 * Scans the bytes about to be written, on a copy of the response scanner, and
 * plans where the ID header goes: right after the status line when the rest
 * of the head is in this write, else before the blank line ending the head
 * (only there is it known that the head has no such header already). A head
 * that already has the header gets none. Returns the number of insertions.
 */
/* Where prescan's scanner ended, to commit it as is when the whole write goes out. */
struct pre {
	struct rq_hdrs s;
	uint32_t h;  /* next request to answer */
	int state;   /* ins_state */
	int whole;   /* it saw every byte of the write */
};

static int prescan(struct rq_conn *c, const struct iovec *iov, int iovcnt, struct ins *ins,
		   struct pre *pre)
{
	struct rq_hdrs *s = &pre->s;
	uint32_t h = atomic_load_explicit(&c->head, memory_order_acquire);
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
	int n = 0, state = c->ins_state;
	size_t pos = 0, status_at = 0, blank_at = 0;
	int have_status, have_blank = 0;

	*s = c->ws;
	have_status = rq_resp_after_status(s);
	pre->whole = 0;
	if (state == 1) {
		if (render_header(c, c->ins_slot, &ins[0]) < 0 || c->ins_sent > ins[0].len)
			return 0;
		ins[0].at = 0;
		ins[0].sent = c->ins_sent;
		n = 1;
		state = 2;
	}
	for (int i = 0; i < iovcnt; i++) {
		const char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len, off = 0;

		while (off < len) {
			enum rq_ev ev;
			uint32_t slot;

			if (n == RQ_PIPE)
				return n; /* no room for more: the rest is scanned after the write */
			off += rq_resp_feed(s, b + off, len - off, method_of(c, h), &ev);
			if (ev == RQ_EV_DEAD || ev == RQ_EV_NONE) {
				if (ev == RQ_EV_DEAD)
					goto out;
				continue;
			}
			if (ev == RQ_EV_STATUS) {
				status_at = pos + off;
				have_status = 1;
				have_blank = 0;
			} else if (ev == RQ_EV_BLANK) {
				blank_at = pos + off;
				have_blank = 1;
			} else if (ev == RQ_EV_END) {
				if (s->status >= 200) {
					if (state == 0 && !s->xr_seen && (have_status || have_blank) &&
					    answered(c, h, &slot) && render_header(c, slot, &ins[n]) == 0) {
						ins[n].at = have_status ? status_at : blank_at;
						ins[n].sent = 0;
						n++;
					}
					if (h < t)
						h++;
				}
				state = 0;
				have_status = have_blank = 0;
			}
		}
		pos += len;
	}
out:
	pre->h = h;
	pre->state = state;
	pre->whole = 1;
	return n;
}

/* A write that went out whole leaves the scanner where prescan left it. */
static void commit(struct rq_conn *c, const struct pre *pre)
{
	c->ws = pre->s;
	atomic_store_explicit(&c->head, pre->h, memory_order_release);
	c->ins_state = (uint32_t)pre->state;
}

/*
 * Commits the response scanner over the `len` caller bytes that were written:
 * pops answered requests and keeps the insertion state right.
 */
static void postscan(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t len,
		     const struct ins *ins, int nins, const struct cut *cut)
{
	size_t pos = 0;

	if (nins && ins[0].at == 0 && ins[0].sent && cut->full > 0)
		c->ins_state = 2; /* a pending remainder went out whole */
	for (int i = 0; i < iovcnt && len; i++) {
		const char *b = iov[i].iov_base;
		size_t seg = iov[i].iov_len < len ? iov[i].iov_len : len, off = 0;

		while (off < seg) {
			uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
			enum rq_ev ev;

			off += rq_resp_feed(&c->ws, b + off, seg - off, method_of(c, h), &ev);
			if (ev == RQ_EV_STATUS || ev == RQ_EV_BLANK) {
				for (int k = 0; k < nins && k < cut->full; k++)
					if (ins[k].at == pos + off)
						c->ins_state = 2;
			} else if (ev == RQ_EV_END) {
				if (c->ws.status >= 200 &&
				    h < atomic_load_explicit(&c->tail, memory_order_acquire))
					atomic_store_explicit(&c->head, h + 1, memory_order_release);
				c->ins_state = 0;
			}
		}
		pos += seg;
		len -= seg;
	}
	if (cut->ins >= 0) {
		c->ins_state = cut->sent < ins[cut->ins].len ? 1 : 2;
		c->ins_sent = (uint32_t)cut->sent;
		c->ins_slot = ins[cut->ins].slot;
	}
}

/*
 * Once a response is out whole, the thread that wrote it is done with that
 * request: its context is marked finished (a hand-off may replace it).
 */
static void answered_all(struct rq_conn *c)
{
	uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed);

	if (h && rq_resp_at_start(&c->ws))
		rq_ctx_finish(atomic_load_explicit(&slot_at(c, h - 1)->serial, memory_order_relaxed));
}

/* The context for a write on c: a response starting now speaks for the oldest open request. */
static void conn_ctx(struct rq_conn *c)
{
	uint32_t h = atomic_load_explicit(&c->head, memory_order_acquire);

	if (rq_resp_at_start(&c->ws) && h < atomic_load_explicit(&c->tail, memory_order_acquire)) {
		atomic_store_explicit(&c->cur, h, memory_order_relaxed);
		atomic_store_explicit(&c->has_cur, 1, memory_order_release);
	}
	if (atomic_load_explicit(&c->has_cur, memory_order_acquire))
		rq_ctx_set_slot(slot_at(c, atomic_load_explicit(&c->cur, memory_order_relaxed)));
	else
		rq_ctx_clear();
}

/*
 * Lays out the caller's bytes with the insertions. If the iovecs run out, the
 * plan stops early (the caller sees a short write, which writev allows) and
 * insertions beyond that point are dropped. Returns the insertions planned.
 */
static int plan_conn(struct plan *pl, const struct iovec *iov, int iovcnt, struct ins *ins, int nins)
{
	size_t pos = 0;
	int k = 0;

	pl->n = 0;
	pl->bytes = pl->caller = 0;
	for (int i = 0; i < iovcnt; i++) {
		const char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len, off = 0;

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

static ssize_t conn_write(int fd, const struct iovec *iov, int iovcnt, const struct rq_call *k,
			  size_t total)
{
	struct rq_conn *c = rq_conn_peek(fd);
	struct ins ins[RQ_PIPE];
	int saved = errno;
	struct plan pl;
	struct pre pre;

	conn_ctx(c);
	if (rq_hdrs_dead(&c->ws) || !total)
		return rq_io_plain(fd, iov, iovcnt, k);
	for (;;) {
		int nins = prescan(c, iov, iovcnt, ins, &pre);
		struct cut cut;
		ssize_t r;

		if (nins)
			nins = plan_conn(&pl, iov, iovcnt, ins, nins);
		if (!nins) {
			r = rq_io_plain(fd, iov, iovcnt, k);
			if (r > 0) {
				int e = errno;

				if ((size_t)r == total && pre.whole) {
					commit(c, &pre);
				} else {
					cut = (struct cut){ (size_t)r, 0, -1, 0 };
					postscan(c, iov, iovcnt, cut.caller, ins, 0, &cut);
				}
				answered_all(c);
				errno = e;
			}
			return r;
		}
		r = emit(fd, &pl, k);
		if (r <= 0)
			return r;
		if ((size_t)r == pl.bytes && pl.caller == total && pre.whole) {
			commit(c, &pre);
			answered_all(c);
			errno = saved;
			return (ssize_t)total;
		}
		cut = map(&pl, (size_t)r);
		postscan(c, iov, iovcnt, cut.caller, ins, nins, &cut);
		answered_all(c);
		if (cut.caller || (size_t)r == pl.bytes) {
			errno = saved;
			return (ssize_t)cut.caller;
		}
		/* Only inserted bytes went out: send on rather than return 0. */
	}
}

/* log_line's answer when the write is not its case. */
#define NOT_LINE (-2)

/*
 * write(2) of one whole line at a line start, the common case of a log write:
 * the cached prefix and the line in one writev, with no planning. Returns what
 * write returns, or NOT_LINE for any other case (then nothing was written, or
 * only part of the prefix, which the general path resumes from wpend).
 */
static ssize_t log_line(int fd, struct rq_fd *e, const char *s, size_t n)
{
	char buf[RQ_INS_MAX];
	struct iovec v[2];
	int saved = errno;
	ssize_t r;

	if (!n || n > SSIZE_MAX || !plausible(s, n) || s[n - 1] != '\n' ||
	    atomic_load_explicit(&e->wmid, memory_order_relaxed) ||
	    atomic_load_explicit(&e->wpend, memory_order_relaxed) || !rq_prefix_wanted() ||
	    memchr(s, '\n', n - 1))
		return NOT_LINE;
	v[0].iov_base = (void *)rq_prefix_acquire(buf, &v[0].iov_len);
	v[1].iov_base = (void *)s;
	v[1].iov_len = n;
	r = rq_sys.writev(fd, v, 2);
	rq_prefix_release(v[0].iov_base);
	if (likely(r == (ssize_t)(v[0].iov_len + n))) {
		errno = saved;
		return (ssize_t)n;
	}
	if (r <= 0)
		return r;
	if ((size_t)r <= v[0].iov_len) { /* none of the line yet: the general path goes on */
		atomic_store_explicit(&e->wpend, (uint32_t)r, memory_order_relaxed);
		return NOT_LINE;
	}
	atomic_store_explicit(&e->wmid, 1, memory_order_relaxed);
	errno = saved;
	return r - (ssize_t)v[0].iov_len;
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
		if (bad) { /* let the kernel judge it; still set the context */
			conn_ctx(rq_conn_peek(fd));
			return rq_io_plain(fd, iov, iovcnt, k);
		}
		return conn_write(fd, iov, iovcnt, k, total);
	}
	if (bad || (k->how == RQ_SENDMSG && k->msg->msg_controllen))
		return rq_io_plain(fd, iov, iovcnt, k);
	if ((fl & RQ_FD_LOG) && total)
		return log_write(fd, e, iov, iovcnt, k, total);
	return rq_io_plain(fd, iov, iovcnt, k);
}

/*
 * After a write of `want` bytes to a log stream returned r: if not all of it
 * went out (EAGAIN, or short), the rest is the writer's, which an event loop
 * writes later from an epoll callback for the fd (libuv, with Node's stdout
 * on a pipe); the fd keeps the writer's handle until a write goes out whole,
 * and an event for it resumes that context (rq_fd_enter).
 */
static ssize_t stalled(struct rq_fd *e, ssize_t r, size_t want)
{
	int saved = errno;

	if (likely(r >= 0 && (size_t)r == want)) {
		if (unlikely(atomic_load_explicit(&e->stall, memory_order_relaxed)))
			atomic_store_explicit(&e->stall, 0, memory_order_relaxed);
	} else if (r > 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
		atomic_store_explicit(&e->stall, rq_handle_take(), memory_order_relaxed);
		errno = saved;
	}
	return r;
}

ssize_t rq_io_write_slow(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt,
			 const struct rq_call *k)
{
	uint32_t fl = rq_fd_flags(e);
	int bad;

	if (fl & RQ_FD_CARRY) { /* carriers never look at the bytes */
		rq_carry_put(fd, e);
		return rq_io_plain(fd, iov, iovcnt, k);
	}
	if (fl == RQ_FD_LOG && k->how == RQ_WRITE) {
		ssize_t r = log_line(fd, e, iov[0].iov_base, iov[0].iov_len);

		if (r != NOT_LINE)
			return stalled(e, r, iov[0].iov_len);
	}
	if (fl == RQ_FD_LOG) {
		size_t want = iov_total(iov, iovcnt, &bad);

		return stalled(e, write_general(fd, e, iov, iovcnt, k, fl), want);
	}
	return write_general(fd, e, iov, iovcnt, k, fl);
}

/* ---- reads ---- */

static void push(struct rq_conn *c, const char *id, uint32_t len, uint32_t flags)
{
	uint32_t h = atomic_load_explicit(&c->head, memory_order_acquire);
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_relaxed);
	char uuid[RQ_UUID_LEN];

	if (!len) {
		rq_uuid4(uuid);
		id = uuid;
		len = RQ_UUID_LEN;
	}
	if (t - h >= RQ_PIPE)
		t--; /* too deep a pipeline: the newest request replaces the last queued */
	rq_slot_fill(slot_at(c, t), id, len, flags);
	atomic_store_explicit(&c->tail, t + 1, memory_order_release);
	atomic_store_explicit(&c->cur, t, memory_order_relaxed);
	atomic_store_explicit(&c->has_cur, 1, memory_order_release);
	c->seen++;
}

void rq_conn_read(int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	struct rq_conn *c = rq_conn_peek(fd);
	size_t left = r > 0 ? (size_t)r : 0;
	int saved = errno;

	for (int i = 0; i < iovcnt && left && !rq_hdrs_dead(&c->rp); i++) {
		const char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len < left ? iov[i].iov_len : left, off = 0;

		left -= len;
		while (off < len) {
			enum rq_ev ev;

			off += rq_req_feed(&c->rp, b + off, len - off, &ev);
			if (ev == RQ_EV_HEAD)
				push(c, c->rp.xr, c->rp.xr_have ? c->rp.xr_len : 0,
				     c->rp.method == RQ_M_HEAD ? RQ_SLOT_HEAD : 0);
			else if (ev == RQ_EV_DEAD && !c->seen) {
				push(c, NULL, 0, 0); /* not HTTP: one ID for the connection */
				atomic_store_explicit(&c->head, atomic_load(&c->tail),
						      memory_order_release);
				rq_hdrs_kill(&c->ws); /* and no response heads to look for */
			}
		}
	}
	if (atomic_load_explicit(&c->has_cur, memory_order_acquire))
		rq_ctx_set_slot(slot_at(c, atomic_load_explicit(&c->cur, memory_order_relaxed)));
	else
		rq_ctx_clear();
	errno = saved;
}

void rq_carry_read(int fd)
{
	struct rq_conn *c = rq_conn_peek(fd);

	/* rq_fd_enter for a carrier, without looking the fd up again; errno is not touched */
	if (!c)
		return;
	if (atomic_load_explicit(&c->slots[0].serial, memory_order_relaxed) != rq_ctx_cur()->serial)
		rq_ctx_set_slot(&c->slots[0]);
	else
		rq_ctx_reaffirm();
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
	if (r > 0)
		rq_resp_opaque(&c->ws, (uint64_t)r);
	errno = saved;
}
struct rq_sys rq_sys;
