#include "io.h"

#include <limits.h>
#include <string.h>

#include "carry.h"
#include "config.h"
#include "conn.h"
#include "ctx.h"
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

static ssize_t emit(int fd, const struct plan *pl, const struct rq_call *k)
{
	return send_iov(fd, pl->iov, pl->n, k);
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
	int saved = errno;

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
		if (p.at.done == total || ((size_t)r < p.w.bytes && p.at.done)) {
			errno = saved;
			return (ssize_t)p.at.done; /* all of it, or a short write */
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
	struct rq_conn *c;

	if (k->how == RQ_SENDMSG && !plausible(k->msg, sizeof(*k->msg)))
		bad = 1;
	if ((fl & RQ_FD_CONN) && (c = rq_fd_conn(e))) {
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
	if (fl == RQ_FD_LOG && k->how == RQ_WRITE) {
		ssize_t r = log_line(fd, e, iov[0].iov_base, iov[0].iov_len);

		if (r != NOT_LINE)
			return r;
	}
	return write_general(fd, e, iov, iovcnt, k, fl);
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
		if (n && rq_conn_fresh(c) && first_byte(iov, iovcnt) == TLS_HANDSHAKE)
			RQ_SAVE_ERRNO(rq_conn_tls_wait(c));
		else
			rq_conn_feed(c, iov, iovcnt, n);
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
