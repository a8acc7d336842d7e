/*
 * Outbound connections: which sockets, and the planning of the ID (and
 * traceparent) in the HTTP/1.x requests and FastCGI PARAMS they carry.
 * See out.h.
 */
#include "out.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "carry.h"
#include "config.h"
#include "ctx.h"
#include "fdtab.h"
#include "id.h"
#include "pool.h"
#include "trace.h"

RQ_POOL_DEFINE(outs, struct rq_out, 6, RQ_CONN_MAX);

static struct rq_out *state(struct rq_conn *c)
{
	struct rq_conn_ext *x = rq_conn_ext(c, 0);

	return x ? atomic_load_explicit(&x->proto, memory_order_acquire) : NULL;
}

uint32_t rq_out_live(void)
{
	return rq_pool_live(&outs);
}

void rq_out_release(void *st)
{
	rq_pool_give(&outs, ((struct rq_out *)st)->idx);
}

/* ---- which sockets ---- */

/* Whether propagation applies to a stream socket connected to sa. */
static int applies(int fd, const struct sockaddr *sa, socklen_t len)
{
	int type = 0;
	socklen_t tl = sizeof(type);
	uintptr_t a = (uintptr_t)sa;

	if (!rq_cfg.propagate || rq_cfg.dest_none || !sa || len < sizeof(sa_family_t) ||
	    a < RQ_FIRST_PAGE || a + len > RQ_USER_TOP)
		return 0;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6 && sa->sa_family != AF_UNIX)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM)
		return 0;
	return rq_config_dest_match(rq_cfg.dest, rq_cfg.ndest, sa, len);
}

int rq_out_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	uint32_t fl = rq_fd_flags(rq_fd_peek(fd)), idx;
	int saved = errno, r = 0;
	struct rq_conn *c = NULL;
	struct rq_conn_ext *x;
	struct rq_out *o;
	struct rq_ctx now;

	if (fl != RQ_FD_CARRY || !applies(fd, sa, len))
		goto out;
	if (rq_slot_read(rq_carry_slot(fd), &now, NULL) < 0)
		now = *rq_ctx_cur();
	r = -ENOMEM;
	if (!(c = rq_conn_new()) || !(x = rq_conn_ext(c, 1)) || !(o = rq_pool_take(&outs, &idx)))
		goto fail;
	o->idx = idx;
	o->started = 0;
	o->pend_len = 0;
	rq_fcgi_out_init(&o->fc);
	rq_hdrs_reset(&c->ws);
	__atomic_store_n(&c->proto, RQ_PR_HTTP1_OUT, __ATOMIC_RELEASE);
	c->ins_state = 0;
	c->ins_sent = 0;
	atomic_store_explicit(&c->echo, 0, memory_order_relaxed);
	rq_slot_store(&c->slots[0], &now);
	atomic_store_explicit(&c->cur, 0, memory_order_release);
	atomic_store_explicit(&x->proto, o, memory_order_release);
	r = rq_fd_set_conn_to(fd, c);
	goto out;
fail:
	if (c)
		rq_conn_unref(c);
out:
	errno = saved;
	return r;
}

void rq_out_tls_claim(struct rq_conn *c)
{
	struct rq_out *o = state(c);

	rq_hdrs_reset(&c->ws); /* the handshake stopped it */
	c->ins_state = 0;
	c->ins_sent = 0;
	__atomic_store_n(&c->proto, RQ_PR_HTTP1_OUT, __ATOMIC_RELEASE);
	if (o) {
		o->started = 0;
		o->pend_len = 0;
		rq_fcgi_out_init(&o->fc);
	}
	atomic_store_explicit(&c->xport, RQ_XP_TLS, memory_order_release);
}

/* ---- the context ---- */

/*
 * Before a write: the writer's context is what the reply will be read in.
 * The first write on a fresh connection speaks for the request that opened
 * it, when one did: an event loop writes a new upstream's request from its
 * write-ready callback, which may run in another request's context (a loop
 * in batch mode, evq.h), so that request becomes the thread's context, as a
 * response head's request does on an accepted connection.
 */
int rq_out_begin(struct rq_conn *c)
{
	struct rq_out *o = state(c);
	struct rq_slot *s = &c->slots[0];
	uint64_t opener = atomic_load_explicit(&s->serial, memory_order_relaxed);

	if (o && !o->started && opener && opener != rq_ctx_cur()->serial)
		rq_ctx_set_slot(s);
	else
		rq_slot_store(s, rq_ctx_cur());
	if (!o)
		return 0;
	if (rq_conn_proto(c) == RQ_PR_FCGI_OUT)
		return !rq_fcgi_dead(&o->fc.s);
	return !rq_hdrs_dead(&c->ws);
}

/* ---- HTTP/1.x ---- */

/* Whether the head the scanner is at the blank line of gets an insertion. */
static int h1_wants(const struct rq_hdrs *s)
{
	if (!rq_ctx_cur()->serial)
		return 0;
	return !s->xr_have || (rq_cfg.traceparent && !(s->tp_st & RQ_TP_SEEN));
}

/* Renders what the head s lacks for the current request into text; returns its length. */
static size_t h1_render(const struct rq_hdrs *s, char text[RQ_OUT_LINE])
{
	const struct rq_ctx *x = rq_ctx_cur();
	size_t n = 0;

	if (!s->xr_have) {
		memcpy(text, rq_cfg.hdr, rq_cfg.hdr_len);
		n = rq_cfg.hdr_len;
		text[n++] = ':';
		text[n++] = ' ';
		memcpy(text + n, x->id, x->len);
		n += x->len;
		text[n++] = '\r';
		text[n++] = '\n';
	}
	if (rq_cfg.traceparent && !(s->tp_st & RQ_TP_SEEN)) {
		struct rq_trace t = { 0, 1, { 0 }, { 0 } };

		rq_trace_of(x->id, x->len, t.trace);
		rq_trace_new_span(t.span);
		memcpy(text + n, "traceparent: ", 13);
		n += 13;
		rq_trace_format(&t, text + n);
		n += RQ_TRACEPARENT_LEN;
		text[n++] = '\r';
		text[n++] = '\n';
	}
	return n;
}

static void h1_edit(struct rq_wplan *p, size_t at, const char *text, size_t len, size_t sent)
{
	struct rq_edit *e = &p->ed[p->n++];

	e->at = at;
	e->del = 0;
	e->len = (uint16_t)len;
	e->sent = (uint16_t)sent;
	e->text = text;
}

/*
 * Scans the caller's bytes from p->at on a copy of the request scanner and
 * plans the insertion of each head that wants one (h1_wants), where out.h
 * says. Past RQ_EDITS the plan stops before the first left out (p->stop).
 */
static void h1_prescan(struct rq_conn *c, struct rq_out *o, const struct iovec *iov, int iovcnt,
		       struct rq_wplan *p)
{
	struct rq_out_plan *pre = &p->u.out;
	struct rq_hdrs *s = &pre->s;
	int state = c->ins_state, have_line, cand = 0;
	size_t pos = p->at.done, line_at = pos, cand_at = 0;

	*s = c->ws;
	have_line = rq_oreq_after_line(s);
	pre->whole = 0;
	p->stop = p->total;
	p->n = 0;
	if (state == 1) { /* finish the insertion a short write cut */
		if (c->ins_sent > o->pend_len)
			return;
		h1_edit(p, pos, o->pend, o->pend_len, c->ins_sent);
		state = 2;
	}
	for (int i = p->at.i; i < iovcnt; i++) {
		size_t skip = i == p->at.i ? p->at.off : 0, len = iov[i].iov_len - skip, off = 0;
		const char *b = (const char *)iov[i].iov_base + skip;

		while (off < len) {
			enum rq_ev ev;

			off += rq_oreq_feed(s, b + off, len - off, &ev);
			if (ev == RQ_EV_DEAD)
				goto out;
			if (ev == RQ_EV_STATUS) {
				line_at = pos + off;
				have_line = 1;
			} else if (ev == RQ_EV_BLANK) {
				cand = state == 0 && h1_wants(s);
				cand_at = have_line ? line_at : pos + off;
			} else if (ev == RQ_EV_END) {
				if (cand) {
					if (p->n == RQ_EDITS) {
						p->stop = cand_at;
						return;
					}
					h1_edit(p, cand_at, pre->text[p->n],
						h1_render(s, pre->text[p->n]), 0);
					cand = 0;
				}
				state = 0;
				have_line = 0;
			}
		}
		pos += len;
	}
	if (cand) { /* the write ends between the blank line's CR and LF */
		if (p->n == RQ_EDITS) {
			p->stop = cand_at;
			return;
		}
		h1_edit(p, cand_at, pre->text[p->n], h1_render(s, pre->text[p->n]), 0);
		state = 2;
	}
out:
	pre->state = state;
	pre->whole = 1;
}

/* Commits the request scanner over `len` caller bytes from `from` that went out. */
static void h1_postscan(struct rq_conn *c, struct rq_out *o, const struct iovec *iov, int iovcnt,
			const struct rq_wpos *from, size_t len, const struct rq_wplan *p,
			const struct rq_wcut *cut)
{
	size_t pos = from->done;
	int nins = p ? p->n : 0;

	if (nins && p->ed[0].at == pos && cut->full > 0)
		c->ins_state = 2;
	for (int i = from->i; i < iovcnt && len; i++) {
		size_t skip = i == from->i ? from->off : 0, avail = iov[i].iov_len - skip;
		size_t seg = avail < len ? avail : len, off = 0;
		const char *b = (const char *)iov[i].iov_base + skip;

		while (off < seg) {
			enum rq_ev ev;

			off += rq_oreq_feed(&c->ws, b + off, seg - off, &ev);
			if (ev == RQ_EV_STATUS || ev == RQ_EV_BLANK) {
				for (int k = 0; k < nins && k < cut->full; k++)
					if (p->ed[k].at == pos + off)
						c->ins_state = 2;
			} else if (ev == RQ_EV_END) {
				c->ins_state = 0;
			}
		}
		pos += seg;
		len -= seg;
	}
	if (cut && cut->ed >= 0) {
		const struct rq_edit *e = &p->ed[cut->ed];

		if (e->text != o->pend)
			memcpy(o->pend, e->text, e->len);
		o->pend_len = e->len;
		c->ins_state = cut->sent < e->len ? 1 : 2;
		c->ins_sent = (uint16_t)cut->sent;
	}
}

static const struct rq_wcut no_cut = { 0, 0, -1, 0 };

static size_t h1_commit(struct rq_conn *c, struct rq_out *o, struct rq_wplan *p,
			const struct iovec *iov, int iovcnt, size_t wire)
{
	const struct rq_out_plan *pre = &p->u.out;
	struct rq_wcut cut;

	if (!p->w.n) {
		if (wire == p->stop - p->at.done && pre->whole) {
			c->ws = pre->s;
			c->ins_state = (uint8_t)pre->state;
		} else {
			h1_postscan(c, o, iov, iovcnt, &p->at, wire, NULL, &no_cut);
		}
		return wire;
	}
	if (wire == p->w.bytes && p->w.caller == p->stop - p->at.done && pre->whole) {
		c->ws = pre->s;
		c->ins_state = (uint8_t)pre->state;
		return p->w.caller;
	}
	cut = rq_conn_map(p, wire);
	h1_postscan(c, o, iov, iovcnt, &p->at, cut.caller, p, &cut);
	return cut.caller;
}

/* ---- FastCGI ---- */

/* The ID of requestId rid: the writing thread's request, or none outside one. */
static int fcgi_id(void *arg, unsigned rid, char *id, size_t *len)
{
	const struct rq_ctx *x = rq_ctx_cur();

	(void)arg;
	(void)rid;
	if (!x->serial || !x->len)
		return -1;
	memcpy(id, x->id, x->len);
	*len = x->len;
	return 0;
}

/* The caller's iovecs from pos, at most RQ_OUT_SUB of them, into sub. Returns their count. */
static int shift(const struct iovec *iov, int iovcnt, const struct rq_wpos *pos,
		 struct iovec sub[RQ_OUT_SUB])
{
	int m = 0;

	for (int i = pos->i; i < iovcnt && m < RQ_OUT_SUB; i++) {
		size_t skip = i == pos->i ? pos->off : 0;

		sub[m].iov_base = (char *)iov[i].iov_base + skip;
		sub[m++].iov_len = iov[i].iov_len - skip;
	}
	return m;
}

static void fcgi_prescan(struct rq_out *o, const struct iovec *iov, int iovcnt,
			 struct rq_wplan *p)
{
	struct rq_out_plan *pre = &p->u.out;

	pre->m = shift(iov, iovcnt, &p->at, pre->sub);
	rq_fcgi_out_plan(&o->fc, pre->sub, pre->m, fcgi_id, NULL, &pre->fp);
	p->stop = p->at.done + pre->fp.upto;
	p->n = 0;
	for (int k = 0; k < pre->fp.n; k++) {
		const struct rq_fcgi_ins *in = &pre->fp.ins[k];

		h1_edit(p, p->at.done + in->at, in->text, in->len, in->off);
	}
}

/* ---- the plan/commit calls ---- */

int rq_out_plan(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t total,
		struct rq_wplan *p)
{
	struct rq_out *o = state(c);

	p->total = total;
	p->n = 0;
	p->stop = total;
	p->w.n = 0;
	if (!o)
		return 0;
	if (!o->started) {
		for (int i = p->at.i; i < iovcnt; i++) {
			size_t skip = i == p->at.i ? p->at.off : 0;

			if (iov[i].iov_len > skip) {
				if (rq_fcgi_first(((const unsigned char *)iov[i].iov_base)[skip]))
					__atomic_store_n(&c->proto, RQ_PR_FCGI_OUT, __ATOMIC_RELEASE);
				o->started = 1;
				break;
			}
		}
	}
	if (rq_conn_proto(c) == RQ_PR_FCGI_OUT)
		fcgi_prescan(o, iov, iovcnt, p);
	else
		h1_prescan(c, o, iov, iovcnt, p);
	if (!p->n && !p->at.done && p->stop == total)
		return 0; /* nothing to weave in: the caller's own call */
	rq_conn_layout(p, iov, iovcnt);
	return p->n;
}

size_t rq_out_commit(struct rq_conn *c, struct rq_wplan *p, const struct iovec *iov, int iovcnt,
		     size_t wire)
{
	struct rq_out *o = state(c);
	size_t caller;

	if (!o)
		caller = wire;
	else if (rq_conn_proto(c) == RQ_PR_FCGI_OUT)
		caller = rq_fcgi_out_commit(&o->fc, p->u.out.sub, p->u.out.m, &p->u.out.fp, wire);
	else
		caller = h1_commit(c, o, p, iov, iovcnt, wire);
	rq_wpos_advance(&p->at, iov, iovcnt, caller);
	return caller;
}

/* ---- bytes that go out by other calls ---- */

void rq_out_opaque(struct rq_conn *c, size_t n)
{
	struct rq_out *o = state(c);
	int saved = errno;

	rq_slot_store(&c->slots[0], rq_ctx_cur());
	if (n && o) {
		o->started = 1;
		if (rq_conn_proto(c) == RQ_PR_FCGI_OUT)
			o->fc.s.st = 0xff; /* records it cannot see: it stops */
		else
			rq_hdrs_opaque(&c->ws, n);
	}
	errno = saved;
}

void rq_out_seen(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n)
{
	struct rq_wplan p;
	int saved = errno;

	if (!rq_out_begin(c) || !n) {
		errno = saved;
		return;
	}
	/* Plan what went out as if it were to go, with nothing to insert, and commit it. */
	p.at = (struct rq_wpos){ 0, 0, 0 };
	while (p.at.done < n) {
		struct rq_out *o = state(c);
		size_t before = p.at.done;

		if (rq_conn_proto(c) == RQ_PR_FCGI_OUT) {
			struct rq_out_plan *pre = &p.u.out;
			size_t take;

			o->fc.pend_len = o->fc.pend_sent = 0; /* (finished before such calls) */
			pre->m = shift(iov, iovcnt, &p.at, pre->sub);
			rq_fcgi_out_plan(&o->fc, pre->sub, pre->m, NULL, NULL, &pre->fp);
			take = n - p.at.done < pre->fp.upto ? n - p.at.done : pre->fp.upto;
			rq_fcgi_out_commit(&o->fc, pre->sub, pre->m, &pre->fp, take);
			rq_wpos_advance(&p.at, iov, iovcnt, take);
		} else {
			h1_postscan(c, o, iov, iovcnt, &p.at, n, NULL, &no_cut);
			rq_wpos_advance(&p.at, iov, iovcnt, n);
		}
		if (p.at.done == before)
			break;
	}
	errno = saved;
}

void rq_out_unseen(struct rq_conn *c)
{
	struct rq_out *o = state(c);

	if (o) {
		o->started = 1;
		o->fc.s.st = 0xff;
	}
	rq_hdrs_kill(&c->ws);
}

size_t rq_out_cut(struct rq_conn *c, char text[RQ_OUT_LINE], const char **rest)
{
	struct rq_out *o = state(c);

	(void)text;
	if (!o)
		return 0;
	if (rq_conn_proto(c) == RQ_PR_FCGI_OUT) {
		if (!o->fc.pend_len || o->fc.pend_sent >= o->fc.pend_len)
			return 0;
		*rest = o->fc.pend + o->fc.pend_sent;
		return (size_t)(o->fc.pend_len - o->fc.pend_sent);
	}
	if (c->ins_state != 1 || c->ins_sent > o->pend_len)
		return 0;
	*rest = o->pend + c->ins_sent;
	return (size_t)(o->pend_len - c->ins_sent);
}

void rq_out_cut_sent(struct rq_conn *c, size_t n)
{
	struct rq_out *o = state(c);
	const char *rest;
	size_t left = rq_out_cut(c, NULL, &rest);

	if (!o || !left)
		return;
	if (n > left)
		n = left;
	if (rq_conn_proto(c) == RQ_PR_FCGI_OUT) {
		o->fc.pend_sent = (uint16_t)(o->fc.pend_sent + n);
		if (o->fc.pend_sent == o->fc.pend_len)
			o->fc.pend_len = o->fc.pend_sent = 0;
		return;
	}
	c->ins_sent = (uint16_t)(c->ins_sent + n);
	if (c->ins_sent == o->pend_len)
		c->ins_state = 2;
}
