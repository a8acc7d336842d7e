/*
 * Connections: the pool, the request ring and its slots, the scanners fed,
 * and the planning of response-header insertions. See conn.h for the
 * contract; what crosses threads is noted where it happens.
 */
#include "conn.h"

#include <string.h>
#include <sys/mman.h>

#include "config.h"
#include "correlate.h"
#include "ctx.h"
#include "h2.h"
#include "id.h"
#include "out.h"
#include "pool.h"
#include "tls.h"

#define CONN_SHIFT 6 /* 64 connections (64 KiB) per chunk */
#define EXT_SHIFT  8 /* 256 extension records (4 KiB) per chunk */
#define CORR_SHIFT 6 /* 64 correlation records (15 KiB) per chunk */

RQ_POOL_DEFINE(conns, struct rq_conn, CONN_SHIFT, RQ_CONN_MAX);
char *_Atomic rq_deep_chunks[RQ_CONN_MAX >> 6];
static struct rq_conn_ext *_Atomic ext_chunks[RQ_CONN_MAX >> EXT_SHIFT];

/*
 * What batched log correlation (src/correlate.h) keeps for a connection,
 * beside it (struct rq_conn has no room), mapped for the first connections
 * of each chunk that read a request while REQCTX_CORRELATE is on. The reader
 * owns the request line being hashed; the writer owns the response that is
 * going out, recorded as completed at its last byte.
 */
struct corr {
	struct rq_corr_hasher h; /* reader: the request line being read */
	uint8_t on;              /* reader: inside a request line */
	uint8_t have;            /* reader: key holds the line of the request being read */
	uint8_t pend;            /* writer: `out` answered a request, its last byte still to go */
	uint16_t status;         /* writer: the status of that response */
	struct rq_corr_key key;  /* reader */
	struct rq_corr_key okey; /* writer: the request line of `out` */
	struct rq_ctx out;       /* writer: the request the response answers (ID, serial) */
};

static struct corr *_Atomic corr_chunks[RQ_CONN_MAX >> CORR_SHIFT];

/* c's correlation record, mapped if `make`; NULL if absent or if it cannot be. */
static struct corr *corr_of(struct rq_conn *c, int make)
{
	struct corr *x = rq_chunk((void *_Atomic *)&corr_chunks[c->idx >> CORR_SHIFT],
				  sizeof(*x) << CORR_SHIFT, make);

	return x ? &x[c->idx & ((1u << CORR_SHIFT) - 1)] : NULL;
}

_Static_assert(CONN_SHIFT == 6, "rq_conn_slot finds the overflow area 64 connections a chunk");

/*
 * A connection's HTTP/2 state (src/h2.h), from a pool of its own, named by
 * its extension record while c->proto is RQ_PR_H2. The streams' IDs live in
 * the connection's request slots: tracked stream slot k (the h2 stream map)
 * in request slot k, the connection's own ID in slot RQ_H2_CONN. The ring is
 * not used: responses go out in any order, and the stream map says which
 * request each answers.
 */
struct h2_st {
	uint32_t idx;
	uint8_t pre;             /* client preface bytes matched while it may still be HTTP/1
				    (held back, not scanned); RQ_H2_PREFACE_LEN: it is HTTP/2 */
	_Atomic uint8_t conn_id; /* slot RQ_H2_CONN: 0 empty, 1 being filled, 2 holds the ID */
	struct rq_h2 h;
	struct rq_h2_plan plan;  /* the writer's (one write at a time, as the host's own) */
};

RQ_POOL_DEFINE(h2s, struct h2_st, 2, RQ_H2_CONNS);

_Static_assert(RQ_H2_CONN < RQ_PIPE, "every stream slot is a request slot");

static void h2_release(struct rq_conn *c, struct rq_conn_ext *x);
static void h2_give(struct rq_conn *c, void *st);

/* ---- batched log correlation ---- */

/* The response to x->out went out whole: the request is recorded as completed. */
static void corr_record(struct corr *x)
{
	x->pend = 0;
	rq_corr_done(&rq_corr_ring, x->okey, x->status, x->out.serial, x->out.id, x->out.len);
}

/*
 * Reader: the k bytes at s were scanned, from a message's start (`fresh`:
 * its request line starts at the first byte that is not CR or LF) or from
 * inside its request line; the line ends at the next CR or LF (the scanner
 * read it, so it is a valid one). Hashes the line's bytes among them.
 */
static void corr_read(struct corr *x, const char *s, size_t k, int fresh)
{
	size_t i = 0, e;

	if (fresh) {
		while (i < k && (s[i] == '\r' || s[i] == '\n'))
			i++;
		if (i == k)
			return;
		rq_corr_hash_init(&x->h);
		x->on = 1;
		x->have = 0;
	}
	for (e = i; e < k && s[e] != '\r' && s[e] != '\n'; e++)
		;
	rq_corr_hash_add(&x->h, s + i, e - i);
	if (e < k) {
		x->on = 0;
		x->key = rq_corr_hash_end(&x->h);
		x->have = x->key.len <= RQ_CORR_SCAN; /* a longer one is never found in a log line */
	}
}

/*
 * Writer: the head of a final response to the request in slot p went out,
 * with `status`. The response before it is complete (this one starts after
 * its last byte); this one is recorded at its own (corr_settle), so that
 * requests are recorded in the order their responses end.
 */
static void corr_answered(struct rq_conn *c, uint32_t p, unsigned status)
{
	struct corr *x = corr_of(c, 0);
	unsigned flags;

	if (!x)
		return;
	if (x->pend)
		corr_record(x);
	if (rq_slot_read(rq_conn_slot(c, p), &x->out, NULL) < 0 ||
	    !rq_corr_live_get(&rq_corr_ring, x->out.serial, &x->okey, &flags))
		return;
	x->status = (uint16_t)status;
	x->pend = 1;
}

/* Writer, after the scanner moved: a response whose last byte went out is complete. */
static void corr_settle(struct rq_conn *c)
{
	struct corr *x = rq_cfg.correlate ? corr_of(c, 0) : NULL;

	if (x && x->pend && (rq_resp_at_start(&c->ws) || rq_hdrs_dead(&c->ws)))
		corr_record(x);
}

/* The connection is given back: a response still going out ended with it. */
static void corr_close(struct rq_conn *c)
{
	struct corr *x = rq_cfg.correlate ? corr_of(c, 0) : NULL;

	if (x && x->pend)
		corr_record(x);
}

/* ---- life ---- */

/* The overflow slots of c (RQ_DEEP_BYTES, page-aligned), mapped if missing, or NULL. */
static struct rq_slot *deep_get(struct rq_conn *c)
{
	char *d = rq_chunk((void *_Atomic *)&rq_deep_chunks[c->idx >> 6], (size_t)RQ_DEEP_BYTES << 6,
			   1);

	return d ? (struct rq_slot *)(d + (size_t)(c->idx & 63) * RQ_DEEP_BYTES) : NULL;
}

/* A fresh connection's state (the overflow area was given back with the last one). */
static void init(struct rq_conn *c)
{
	struct corr *x;

	rq_hdrs_reset(&c->rp.h);
	rq_hdrs_reset(&c->ws);
	atomic_store_explicit(&c->seen, 0, memory_order_relaxed);
	atomic_store_explicit(&c->fed, 0, memory_order_relaxed);
	c->deep_used = 0;
	__atomic_store_n(&c->proto, RQ_PR_HTTP1, __ATOMIC_RELEASE);
	atomic_store_explicit(&c->xport, RQ_XP_PLAIN, memory_order_relaxed);
	atomic_store_explicit(&c->head, 0, memory_order_relaxed);
	atomic_store_explicit(&c->tail, 0, memory_order_relaxed);
	atomic_store_explicit(&c->cur, RQ_NO_CUR, memory_order_relaxed);
	atomic_store_explicit(&c->used, 0, memory_order_relaxed);
	atomic_store_explicit(&c->echo, rq_cfg.echo ? 1 : 0, memory_order_relaxed);
	c->ins_state = 0;
	c->ins_sent = 0;
	c->lost = c->hs = 0;
	c->done = 0;
	if (!rq_cfg.echo)
		rq_hdrs_kill(&c->ws);
	if ((x = corr_of(c, 0)))
		x->on = x->have = x->pend = 0;
}

struct rq_conn *rq_conn_new(void)
{
	uint32_t idx;
	struct rq_conn *c = rq_pool_take(&conns, &idx);

	if (!c)
		return NULL;
	c->idx = idx;
	init(c);
	atomic_store_explicit(&c->refs, 1, memory_order_release);
	return c;
}

int rq_conn_ref(struct rq_conn *c)
{
	uint32_t n = atomic_load_explicit(&c->refs, memory_order_relaxed);

	do {
		if (n == 0 || n == UINT32_MAX)
			return -ENOENT;
	} while (!atomic_compare_exchange_weak_explicit(&c->refs, &n, n + 1, memory_order_acquire,
							memory_order_relaxed));
	return 0;
}

struct rq_conn_ext *rq_conn_ext(struct rq_conn *c, int make)
{
	struct rq_conn_ext *x = atomic_load_explicit(&ext_chunks[c->idx >> EXT_SHIFT],
						     memory_order_acquire);

	if (unlikely(!x))
		x = rq_chunk((void *_Atomic *)&ext_chunks[c->idx >> EXT_SHIFT],
			     sizeof(*x) << EXT_SHIFT, make);

	return x ? &x[c->idx & ((1u << EXT_SHIFT) - 1)] : NULL;
}

/* An inbound FastCGI connection's scanner, from a pool of its own. */
struct fcgi_st {
	uint32_t idx;
	struct rq_fcgi_in in;
};

RQ_POOL_DEFINE(fcgis, struct fcgi_st, 6, RQ_CONN_MAX);

/* Gives back what the extension record names. */
static void ext_release(struct rq_conn *c)
{
	struct rq_conn_ext *x = rq_conn_ext(c, 0);
	struct rq_tlsw *t;
	void *st;

	if (!x)
		return;
	if ((t = atomic_exchange_explicit(&x->tls, NULL, memory_order_acq_rel)))
		rq_tls_put(t);
	st = atomic_exchange_explicit(&x->proto, NULL, memory_order_acq_rel);
	if (rq_conn_proto(c) == RQ_PR_H2)
		h2_give(c, st); /* (c is HTTP/1 again, with or without a state) */
	else if (st && rq_conn_proto(c) == RQ_PR_FCGI_IN)
		rq_pool_give(&fcgis, ((struct fcgi_st *)st)->idx);
	else if (st && rq_conn_outbound(c))
		rq_out_release(st);
}

void rq_conn_unref(struct rq_conn *c)
{
	struct rq_slot *d;

	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	corr_close(c);
	ext_release(c);
	if (c->deep_used && (d = deep_get(c)))
		madvise(d, RQ_DEEP_BYTES, MADV_DONTNEED); /* it reads back as zeros: empty slots */
	c->deep_used = 0;
	rq_pool_give(&conns, c->idx);
}

uint32_t rq_conn_live(void)
{
	return rq_pool_live(&conns);
}

/* ---- the ring ---- */

void rq_conn_enter(struct rq_conn *c)
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

/*
 * Makes (h, hs) the writer's position, freeing the slots of the entries
 * answered; st[entry % RQ_PIPE] is the status each response carried (NULL:
 * one entry, answered by the response the scanner just ended).
 */
static void pop_to(struct rq_conn *c, uint32_t h, uint32_t hs, const uint16_t *st)
{
	for (uint32_t i = atomic_load_explicit(&c->head, memory_order_relaxed); i != h; i++) {
		uint32_t p = q_slot(c, i);

		c->done = atomic_load_explicit(&rq_conn_slot(c, p)->serial, memory_order_relaxed);
		if (rq_cfg.correlate)
			corr_answered(c, p, st ? st[i % RQ_PIPE] : c->ws.status);
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
static int free_slot(struct rq_conn *c)
{
	uint64_t used = atomic_load_explicit(&c->used, memory_order_acquire);
	int p;

	if (used == ~(uint64_t)0)
		return -1;
	p = __builtin_ctzll(~used);
	if (p >= RQ_INLINE && !deep_get(c))
		return -1;
	return p;
}

/*
 * The reader completed a request head: it is queued for its response and
 * becomes the connection's current request. With RQ_PIPE unanswered already
 * it is counted as lost instead: its response gets no header, and the lines
 * it logs carry the newest queued request's ID (see struct rq_conn). Once
 * nobody answers the ring, each request simply replaces the current one.
 * Returns the slot of a request queued, or -1.
 */
static int push(struct rq_conn *c, const char *id, uint32_t len, uint32_t flags)
{
	uint32_t h, t;
	int p;

	atomic_store_explicit(&c->seen, 1, memory_order_relaxed);
	if (atomic_load_explicit(&c->echo, memory_order_relaxed)) {
		h = atomic_load_explicit(&c->head, memory_order_acquire);
		t = atomic_load_explicit(&c->tail, memory_order_relaxed);
		if (t - h < RQ_PIPE && (p = free_slot(c)) >= 0) {
			fill(c, (uint32_t)p, id, len, flags);
			atomic_fetch_or_explicit(&c->used, (uint64_t)1 << p, memory_order_relaxed);
			c->qslot[t % RQ_PIPE] = (uint8_t)p;
			c->qskip[t % RQ_PIPE] = c->lost;
			c->lost = 0;
			atomic_store_explicit(&c->tail, t + 1, memory_order_release);
			set_cur(c, (uint32_t)p);
			return p;
		}
		if (!(flags & RQ_SLOT_HEAD) && (c->lost & ~RQ_SKIP_LOST) < RQ_SKIP_MAX)
			c->lost++;
		else
			c->lost |= RQ_SKIP_LOST;
		return -1;
	}
	p = (int)atomic_load_explicit(&c->cur, memory_order_relaxed);
	if (p == (int)RQ_NO_CUR)
		p = 0;
	fill(c, (uint32_t)p, id, len, flags);
	set_cur(c, (uint32_t)p);
	return -1;
}

/* The request stream turned out not to be HTTP: one ID for the connection's whole life. */
static void req_dead(struct rq_conn *c)
{
	if (rq_conn_seen(c))
		return;
	atomic_store_explicit(&c->echo, 0, memory_order_relaxed); /* no response heads to look for */
	push(c, NULL, 0, 0);
}

/* A request head was read into slot p (-1: not queued): its request line is kept by serial. */
static void corr_begin(struct rq_conn *c, struct corr *x, int p)
{
	if (x->have && p >= 0)
		rq_corr_begin(&rq_corr_ring,
			      atomic_load_explicit(&rq_conn_slot(c, (uint32_t)p)->serial,
						   memory_order_relaxed),
			      x->key);
	x->have = 0;
}

/*
 * A request head was read: its ID is the client's header when valid; else,
 * with REQCTX_TRACEPARENT=1, the trace-id of a valid traceparent (32 hex
 * digits, which map back to that trace-id); else a fresh UUIDv4. Its slot's
 * flags are RQ_SLOT_HEAD and `flags`. Returns the slot it was queued in, or
 * -1.
 */
static int head(struct rq_conn *c, uint32_t flags)
{
	const char *id = c->rp.xr;
	uint32_t len = c->rp.h.xr_have ? c->rp.h.xr_len : 0;

	if (!len && rq_cfg.traceparent && rq_req_tp(&c->rp)) {
		id = c->rp.xr + RQ_TP_AT;
		len = RQ_TP_DIGITS;
	}
	return push(c, id, len, (c->rp.h.method == RQ_M_HEAD ? RQ_SLOT_HEAD : 0) | flags);
}

/* ---- FastCGI, inbound ---- */

static struct fcgi_st *fcgi_of(struct rq_conn *c)
{
	struct rq_conn_ext *x = rq_conn_ext(c, 0);

	return x ? atomic_load_explicit(&x->proto, memory_order_acquire) : NULL;
}

/*
 * The connection's first byte read is FastCGI's version: its reads are
 * FastCGI records from now on, and its writes carry no response head to
 * echo into. Without a scanner state it stays HTTP/1, whose scanner stops at
 * that byte (one ID for the connection).
 */
static void fcgi_start(struct rq_conn *c)
{
	struct rq_conn_ext *x = rq_conn_ext(c, 1);
	struct fcgi_st *st;
	uint32_t idx;

	if (!x || !(st = rq_pool_take(&fcgis, &idx)))
		return;
	st->idx = idx;
	rq_fcgi_in_init(&st->in);
	atomic_store_explicit(&c->used, 0, memory_order_relaxed);
	atomic_store_explicit(&x->proto, st, memory_order_release);
	__atomic_store_n(&c->proto, RQ_PR_FCGI_IN, __ATOMIC_RELEASE);
	atomic_store_explicit(&c->echo, 0, memory_order_relaxed);
	rq_hdrs_kill(&c->ws);
}

/* Entry k's slot holds its current request (its PARAMS were read). */
static int fcgi_ready(struct rq_conn *c, int k)
{
	return k >= 0 && (atomic_load_explicit(&c->used, memory_order_relaxed) >> k & 1);
}

/*
 * Feeds FastCGI records: each request (entry k of the scanner) lives in
 * slot k, filled when its PARAMS end (their ID param, else a UUIDv4); the
 * current request is that of the record read last, once it has its ID.
 */
static void fcgi_feed(struct rq_conn *c, struct fcgi_st *st, const struct iovec *iov,
		      int iovcnt, size_t n)
{
	struct rq_fcgi_in *in = &st->in;
	int k;

	for (int i = 0; i < iovcnt && n && !rq_fcgi_dead(&in->s); i++) {
		const char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len < n ? iov[i].iov_len : n, off = 0;

		n -= len;
		while (off < len) {
			enum rq_fcgi_ev ev;

			off += rq_fcgi_in_feed(in, b + off, len - off, &ev);
			k = rq_fcgi_in_cur(in);
			if (ev == RQ_FCGI_EV_BEGIN && k >= 0) {
				atomic_fetch_and_explicit(&c->used, ~((uint64_t)1 << k),
							  memory_order_relaxed);
			} else if (ev == RQ_FCGI_EV_PARAMS && k >= 0) {
				atomic_store_explicit(&c->seen, 1, memory_order_relaxed);
				fill(c, (uint32_t)k, in->xr[k], (uint32_t)rq_fcgi_in_id(in, k), 0);
				atomic_fetch_or_explicit(&c->used, (uint64_t)1 << k, memory_order_relaxed);
				set_cur(c, (uint32_t)k);
			} else if (ev == RQ_FCGI_EV_DEAD && !rq_conn_seen(c)) {
				/* not FastCGI after all: one ID for the connection */
				atomic_store_explicit(&c->seen, 1, memory_order_relaxed);
				fill(c, 0, NULL, 0, 0);
				set_cur(c, 0);
			}
		}
	}
	k = rq_fcgi_in_cur(in);
	if (!rq_fcgi_dead(&in->s) && fcgi_ready(c, k))
		set_cur(c, (uint32_t)k);
}

/* The HTTP/1 request scanner over n bytes of iov, with log correlation's request lines. */
static void h1_feed(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n)
{
	struct corr *x = NULL;

	if (n && rq_cfg.correlate && atomic_load_explicit(&c->echo, memory_order_relaxed))
		x = corr_of(c, 1); /* (responses not followed are never recorded) */
	for (int i = 0; i < iovcnt && n && !rq_hdrs_dead(&c->rp.h); i++) {
		const char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len < n ? iov[i].iov_len : n, off = 0;

		n -= len;
		while (off < len) {
			int fresh = x && !x->on && rq_req_at_start(&c->rp);
			enum rq_ev ev;
			size_t k = rq_req_feed(&c->rp, b + off, len - off, &ev);

			if (x && (fresh || x->on))
				corr_read(x, b + off, k, fresh);
			off += k;
			if (ev == RQ_EV_HEAD) {
				int p = head(c, (c->rp.h.up & RQ_UP_ALL) == RQ_UP_ALL ? RQ_SLOT_H2C : 0);

				if (x)
					corr_begin(c, x, p);
			} else if (ev == RQ_EV_DEAD) {
				if (x)
					x->on = x->have = 0;
				req_dead(c);
			}
		}
	}
}

static int h2_feed(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n);

/* The first of the n bytes in iov (0 if none). */
static unsigned char first_of(const struct iovec *iov, int iovcnt, size_t n)
{
	for (int i = 0; i < iovcnt && n; i++)
		if (iov[i].iov_len)
			return *(const unsigned char *)iov[i].iov_base;
	return 0;
}

/*
 * A read that is not HTTP/1's to scan, or may not be: on a connection of
 * another protocol, or a first read whose first byte may start HTTP/2's
 * client preface ('P') or a FastCGI record. Returns 1 if the bytes were
 * taken; 0 if they are HTTP/1's after all (what HTTP/2 held back has then
 * been scanned), to be fed to its scanner.
 */
static int feed_other(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n)
{
	int pr = rq_conn_proto(c);
	struct fcgi_st *st;

	if (pr == RQ_PR_H2 || (pr == RQ_PR_HTTP1 && first_of(iov, iovcnt, n) == 'P'))
		return h2_feed(c, iov, iovcnt, n);
	if (pr == RQ_PR_HTTP1) /* (a first read: FastCGI's version byte) */
		fcgi_start(c);
	if (n)
		atomic_store_explicit(&c->fed, 1, memory_order_relaxed);
	if (rq_conn_proto(c) == RQ_PR_FCGI_IN && (st = fcgi_of(c)))
		fcgi_feed(c, st, iov, iovcnt, n);
	return rq_conn_proto(c) != RQ_PR_HTTP1; /* (outbound: a reply, read in what was written) */
}

void rq_conn_feed(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n)
{
	int saved = errno;
	unsigned char b0;

	if (unlikely(rq_conn_proto(c) != RQ_PR_HTTP1 ||
		     (!rq_conn_fed(c) && n &&
		      ((b0 = first_of(iov, iovcnt, n)) == 'P' || rq_fcgi_first(b0)))) &&
	    feed_other(c, iov, iovcnt, n)) {
		rq_conn_enter(c);
		errno = saved;
		return;
	}
	if (n)
		atomic_store_explicit(&c->fed, 1, memory_order_relaxed);
	h1_feed(c, iov, iovcnt, n);
	rq_conn_enter(c);
	errno = saved;
}

static void h2_feed_opaque(struct rq_conn *c, size_t n);

void rq_conn_feed_opaque(struct rq_conn *c, size_t n)
{
	int saved = errno;
	struct fcgi_st *st;

	if (unlikely(rq_conn_proto(c) == RQ_PR_H2) && n)
		h2_feed_opaque(c, n);
	if (rq_conn_proto(c) == RQ_PR_FCGI_IN && n && (st = fcgi_of(c)))
		st->in.s.st = 0xff; /* records it cannot see: the current request stays */
	if (n && rq_conn_proto(c) == RQ_PR_HTTP1 && !rq_hdrs_dead(&c->rp.h)) {
		atomic_store_explicit(&c->fed, 1, memory_order_relaxed);
		rq_hdrs_opaque(&c->rp.h, n);
		if (rq_hdrs_dead(&c->rp.h))
			req_dead(c);
	}
	rq_conn_enter(c);
	errno = saved;
}

void rq_conn_tls_wait(struct rq_conn *c)
{
	atomic_store_explicit(&c->fed, 1, memory_order_relaxed);
	rq_hdrs_kill(&c->rp.h);
	req_dead(c);
	atomic_store_explicit(&c->xport, RQ_XP_TLS_WAIT, memory_order_release);
	rq_conn_enter(c);
}

void rq_conn_tls_claim(struct rq_conn *c)
{
	uint32_t cur = atomic_load_explicit(&c->cur, memory_order_relaxed);
	struct rq_ctx now;

	if (rq_conn_proto(c) == RQ_PR_H2) /* (none can be before: nothing was read or written) */
		h2_release(c, rq_conn_ext(c, 0));
	if (cur != RQ_NO_CUR && cur != 0) { /* the current request moves to slot 0, which is free */
		if (rq_slot_read(rq_conn_slot(c, cur), &now, NULL) == 0)
			rq_slot_store(&c->slots[0], &now);
		cur = 0;
	}
	init(c);
	atomic_store_explicit(&c->cur, cur, memory_order_release);
	atomic_store_explicit(&c->xport, RQ_XP_TLS, memory_order_release);
}

/* ---- writes ---- */

static int upgrades(struct rq_conn *c, uint32_t h, uint32_t hs, uint32_t t);
static void h2_upgrade(struct rq_conn *c, uint32_t h);
static struct h2_st *h2_out(struct rq_conn *c, const struct iovec *iov, int iovcnt,
			    const struct rq_wpos *at);
static int h2_plan(struct rq_conn *c, struct h2_st *st, const struct iovec *iov, int iovcnt,
		   size_t total, struct rq_wplan *p);
static size_t h2_commit(struct rq_conn *c, struct h2_st *st, struct rq_wplan *p,
			const struct iovec *iov, int iovcnt, size_t wire);
static struct h2_st *h2_of(struct rq_conn *c);
static struct h2_st *h2_writing(struct rq_conn *c);
static void h2_write_ctx(struct rq_conn *c, struct h2_st *st);
static size_t h2_id(void *arg, unsigned slot, uint32_t sid, char out[REQCTX_ID_MAX]);

/*
 * Renders "Name: id\r\n" for slot p into text. Returns its length, or
 * -EAGAIN if the slot could not be read (it kept changing, or holds none).
 */
static int render_header(struct rq_conn *c, uint32_t p, char text[RQ_HDR_LINE])
{
	struct rq_ctx id;
	size_t n = rq_cfg.hdr_len;

	if (rq_slot_read(rq_conn_slot(c, p), &id, NULL) < 0 || !id.len)
		return -EAGAIN;
	memcpy(text, rq_cfg.hdr, n);
	text[n++] = ':';
	text[n++] = ' ';
	memcpy(text + n, id.id, id.len);
	n += id.len;
	text[n++] = '\r';
	text[n++] = '\n';
	return (int)n;
}

/*
 * Makes edit k of p the ID header of slot `slot` at caller offset `at`, with
 * `sent` bytes of it already out. Returns 0, or -EAGAIN (see render_header).
 */
static int set_ins(struct rq_conn *c, struct rq_wplan *p, int k, uint32_t slot, size_t at,
		   size_t sent)
{
	struct rq_edit *e = &p->ed[k];
	int len = render_header(c, slot, p->u.h1.text[k]);

	if (len < 0)
		return len;
	e->at = at;
	e->del = 0;
	e->len = (uint16_t)len;
	e->sent = (uint16_t)sent;
	e->text = p->u.h1.text[k];
	p->u.h1.slot[k] = slot;
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

/*
 * Adds an insertion for the head of the request at ring entry h, at caller
 * offset at. Returns 0, or -EAGAIN if its slot could not be read (none added).
 */
static int add_ins(struct rq_conn *c, struct rq_wplan *p, uint32_t h, size_t at)
{
	int r = set_ins(c, p, p->n, q_slot(c, h), at, 0);

	if (r == 0)
		p->n++;
	return r;
}

/*
 * Scans the caller's bytes from p->at on a copy of the response scanner and
 * plans where the ID header goes in each response head that answers a
 * queued request and has none of its own:
 *   - right after the status line, when the status line ends in this write
 *     or the write starts right after it;
 *   - else before the blank line ending the head, the first point where it is
 *     known that the server did not send one itself.
 * The decision is taken when the head ends, or, when this write ends between
 * the CR and the LF of that blank line, at the CR. Fills p->ed and p->n; if
 * there were more than RQ_EDITS, the plan stops at the first one left out
 * (p->stop) and the rest is for the next system call.
 */
static void h1_prescan(struct rq_conn *c, const struct iovec *iov, int iovcnt,
		       struct rq_wplan *p)
{
	struct rq_h1_plan *pre = &p->u.h1;
	struct rq_hdrs *s = &pre->s;
	uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed), hs = c->hs;
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
	int state = c->ins_state, have_status, cand = 0;
	size_t pos = p->at.done, status_at = pos, cand_at = 0;

	*s = c->ws;
	have_status = rq_resp_after_status(s);
	pre->whole = 0;
	pre->up = 0;
	p->stop = p->total;
	p->n = 0;
	if (state == 1) { /* finish the header a short write cut */
		if (set_ins(c, p, 0, c->ins_slot, pos, c->ins_sent) < 0 ||
		    c->ins_sent > p->ed[0].len)
			return;
		p->n = 1;
		state = 2;
	}
	for (int i = p->at.i; i < iovcnt; i++) {
		size_t skip = i == p->at.i ? p->at.off : 0, len = iov[i].iov_len - skip, off = 0;
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
					if (p->n == RQ_EDITS) {
						p->stop = cand_at;
						return;
					}
					add_ins(c, p, h, cand_at);
					cand = 0;
				}
				if (s->status == 101 && upgrades(c, h, hs, t)) {
					p->stop = pos + off; /* HTTP/2 from the next byte on */
					pre->up = 1;
					state = 0;
					goto out;
				}
				if (s->status >= 200) {
					if (answers(c, h, hs, t))
						pre->st[h % RQ_PIPE] = s->status;
					step(c, &h, &hs, t);
				}
				state = 0;
				have_status = 0;
			}
		}
		pos += len;
	}
	if (cand) { /* the write ends between the blank line's CR and LF */
		if (p->n == RQ_EDITS) {
			p->stop = cand_at;
			return;
		}
		if (add_ins(c, p, h, cand_at) == 0)
			state = 2;
	}
out:
	pre->h = h;
	pre->hs = hs;
	pre->state = state;
	pre->whole = 1;
}

/* Adds a piece to the layout. */
static void lay(struct rq_wire *w, const void *b, size_t len, int ed)
{
	w->bytes += len;
	if (ed < 0)
		w->caller += len;
	w->iov[w->n].iov_base = (void *)b;
	w->iov[w->n].iov_len = len;
	w->ed[w->n] = (int8_t)ed;
	w->n++;
}

/*
 * Lays out the caller's bytes from p->at up to p->stop with the edits. If
 * the iovecs run out, the layout stops early and the rest is for the next
 * system call; the edits not laid out are dropped from the plan.
 */
void rq_conn_layout(struct rq_wplan *p, const struct iovec *iov, int iovcnt)
{
	struct rq_wire *w = &p->w;
	size_t pos = p->at.done, drop = 0;
	int k = 0;

	w->n = 0;
	w->bytes = w->caller = 0;
	for (int i = p->at.i; i < iovcnt && pos < p->stop; i++) {
		size_t skip = i == p->at.i ? p->at.off : 0, len = iov[i].iov_len - skip, off = 0;
		const char *b = (const char *)iov[i].iov_base + skip;

		if (len > p->stop - pos)
			len = p->stop - pos;
		if (drop) { /* caller bytes an edit stands for */
			size_t d = drop < len ? drop : len;

			off = d;
			drop -= d;
		}
		for (; k < p->n && p->ed[k].at <= pos + len && p->ed[k].at >= pos + off; k++) {
			struct rq_edit *e = &p->ed[k];
			size_t cut = e->at - pos;

			if (w->n > RQ_WIRE_IOV - 3)
				goto full;
			if (cut > off)
				lay(w, b + off, cut - off, -1);
			lay(w, e->text + e->sent, (size_t)(e->len - e->sent), k);
			off = cut;
			if (e->del) {
				size_t d = e->del < len - off ? e->del : len - off;

				off += d;
				drop = e->del - d;
			}
		}
		if (off < len) {
			if (w->n == RQ_WIRE_IOV)
				goto full;
			lay(w, b + off, len - off, -1);
		}
		pos += len;
	}
	return;
full:
	p->n = k;
}

int rq_conn_plan(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t total,
		 struct rq_wplan *p)
{
	struct h2_st *st;

	p->held = 0;
	p->h2 = 0;
	if (unlikely(rq_conn_outbound(c)))
		return rq_out_plan(c, iov, iovcnt, total, p);
	if (unlikely(!rq_conn_fed(c) || rq_conn_proto(c) == RQ_PR_H2) &&
	    (st = h2_out(c, iov, iovcnt, &p->at))) {
		p->h2 = 1;
		return h2_plan(c, st, iov, iovcnt, total, p);
	}
	p->total = total;
	h1_prescan(c, iov, iovcnt, p);
	if (!p->n && !p->at.done && p->stop == p->total) {
		p->w.n = 0; /* nothing to weave in: the caller's own call */
		return 0;
	}
	rq_conn_layout(p, iov, iovcnt);
	return p->n;
}

/* A plan that went out whole leaves the scanner where the prescan left it. */
static void h1_commit_whole(struct rq_conn *c, const struct rq_h1_plan *pre)
{
	c->ws = pre->s;
	pop_to(c, pre->h, pre->hs, pre->st);
	c->ins_state = (uint8_t)pre->state;
	if (pre->up)
		h2_upgrade(c, pre->h);
}


/*
 * Maps the r bytes the transport took back to the caller's bytes. If r ends
 * inside an edit's text, or right after it with nothing of the caller's
 * after it, that edit is reported so that the next call does not repeat it.
 * The caller bytes an edit stands for count once its text is out whole.
 */
struct rq_wcut rq_conn_map(const struct rq_wplan *p, size_t r)
{
	const struct rq_wire *w = &p->w;
	struct rq_wcut c = { 0, 0, -1, 0 };

	for (int i = 0; i < w->n && r; i++) {
		size_t len = w->iov[i].iov_len, take = r < len ? r : len;
		int k = w->ed[i];

		r -= take;
		if (k < 0) {
			c.caller += take;
			c.ed = -1;
		} else {
			c.ed = k;
			c.sent = p->ed[k].sent + take;
			if (take == len) {
				c.full = k + 1;
				c.caller += p->ed[k].del;
			}
		}
	}
	return c;
}

/*
 * Commits the response scanner over the `len` caller bytes from `from` that
 * were written: pops answered requests and keeps the insertion state right.
 */
static void h1_postscan(struct rq_conn *c, const struct iovec *iov, int iovcnt,
			const struct rq_wpos *from, size_t len, const struct rq_wplan *p,
			const struct rq_wcut *cut)
{
	size_t pos = from->done;
	int nins = p ? p->n : 0;
	struct h2_st *st;

	if (nins && p->ed[0].at == pos && cut->full > 0)
		c->ins_state = 2; /* one at the very start (a remainder, or after a status line) is out */
	for (int i = from->i; i < iovcnt && len; i++) {
		size_t skip = i == from->i ? from->off : 0, avail = iov[i].iov_len - skip;
		size_t seg = avail < len ? avail : len, off = 0;
		const char *b = (const char *)iov[i].iov_base + skip;

		while (off < seg) {
			uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed), hs = c->hs;
			uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
			enum rq_ev ev;

			off += rq_resp_feed(&c->ws, b + off, seg - off, method_of(c, h, hs, t), &ev);
			if (ev == RQ_EV_STATUS || ev == RQ_EV_BLANK) {
				for (int k = 0; k < nins && k < cut->full; k++)
					if (p->ed[k].at == pos + off)
						c->ins_state = 2;
			} else if (ev == RQ_EV_END) {
				if (c->ws.status == 101 && upgrades(c, h, hs, t)) {
					c->ins_state = 0;
					h2_upgrade(c, h);
					if ((off < seg || len > seg) && (st = h2_of(c)))
						rq_h2_out_kill(&st->h); /* frames it was not shown */
					return;
				}
				if (c->ws.status >= 200) {
					step(c, &h, &hs, t);
					pop_to(c, h, hs, NULL);
				}
				c->ins_state = 0;
			}
		}
		pos += seg;
		len -= seg;
	}
	if (cut->ed >= 0) {
		c->ins_state = cut->sent < p->ed[cut->ed].len ? 1 : 2;
		c->ins_sent = (uint16_t)cut->sent;
		c->ins_slot = (uint8_t)p->u.h1.slot[cut->ed];
	}
}

/*
 * After the scanner moved: a dead one means no more headers on this
 * connection; once a response is out whole, the thread that wrote it is done
 * with that request (its context is marked finished: a hand-off may replace
 * it), and the request is recorded as completed for log correlation.
 */
static void settle(struct rq_conn *c)
{
	echo_on(c);
	corr_settle(c);
	if (c->done && rq_resp_at_start(&c->ws))
		rq_ctx_finish(c->done);
}

void rq_wpos_advance(struct rq_wpos *pos, const struct iovec *iov, int iovcnt, size_t n)
{
	pos->done += n;
	while (pos->i < iovcnt && n) {
		size_t left = iov[pos->i].iov_len - pos->off;

		if (n < left) {
			pos->off += n;
			return;
		}
		n -= left;
		pos->i++;
		pos->off = 0;
	}
}

static const struct rq_wcut no_cut = { 0, 0, -1, 0 };

size_t rq_conn_commit(struct rq_conn *c, struct rq_wplan *p, const struct iovec *iov,
		      int iovcnt, size_t wire)
{
	struct h2_st *st;
	size_t caller;

	if (unlikely(rq_conn_outbound(c)))
		return rq_out_commit(c, p, iov, iovcnt, wire);
	if (unlikely(p->h2) && (st = h2_of(c)))
		return h2_commit(c, st, p, iov, iovcnt, wire);
	if (!p->w.n) { /* the caller's bytes went out as they were */
		if (wire == p->stop - p->at.done && p->u.h1.whole)
			h1_commit_whole(c, &p->u.h1);
		else
			h1_postscan(c, iov, iovcnt, &p->at, wire, NULL, &no_cut);
		caller = wire;
	} else if (wire == p->w.bytes && p->w.caller == p->stop - p->at.done && p->u.h1.whole) {
		h1_commit_whole(c, &p->u.h1);
		caller = p->w.caller;
	} else {
		struct rq_wcut cut = rq_conn_map(p, wire);

		h1_postscan(c, iov, iovcnt, &p->at, cut.caller, p, &cut);
		caller = cut.caller;
	}
	settle(c);
	rq_wpos_advance(&p->at, iov, iovcnt, caller);
	return caller;
}

/* The context for I/O on c: a response starting now speaks for the request it answers. */
static void conn_ctx(struct rq_conn *c)
{
	uint32_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&c->tail, memory_order_acquire);

	if (rq_resp_at_start(&c->ws) && answers(c, h, c->hs, t))
		atomic_store_explicit(&c->cur, q_slot(c, h), memory_order_release);
	rq_conn_enter(c);
}

int rq_conn_write_begin(struct rq_conn *c)
{
	if (unlikely(rq_conn_outbound(c)))
		return rq_out_begin(c);
	if (unlikely(rq_conn_proto(c) == RQ_PR_H2)) {
		rq_conn_enter(c); /* the write's own stream is current once it is out */
		return 1;
	}
	conn_ctx(c);
	/* (before any read: a server that speaks HTTP/2 first; see h2_out) */
	return echo_on(c) || unlikely(!rq_conn_fed(c) && !rq_conn_seen(c));
}

void rq_conn_out_opaque(struct rq_conn *c, size_t n)
{
	int saved = errno;
	struct h2_st *st;

	if (unlikely(rq_conn_outbound(c))) {
		rq_out_opaque(c, n);
		return;
	}
	if (unlikely(rq_conn_proto(c) == RQ_PR_H2) && (st = h2_writing(c))) {
		if (n && rq_h2_opaque(&st->h, n) < 0)
			rq_h2_out_kill(&st->h); /* (-EAGAIN: the host sent it before what it owes) */
		h2_write_ctx(c, st);
		errno = saved;
		return;
	}
	conn_ctx(c);
	if (n && echo_on(c)) {
		rq_hdrs_opaque(&c->ws, n);
		settle(c);
	}
	errno = saved;
}

void rq_conn_out_seen(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n)
{
	struct rq_wpos from = { 0, 0, 0 };
	int saved = errno;
	struct h2_st *st;

	if (unlikely(rq_conn_outbound(c))) {
		rq_out_seen(c, iov, iovcnt, n);
		return;
	}
	if (unlikely(rq_conn_proto(c) == RQ_PR_H2) && (st = h2_writing(c))) {
		if (n) { /* followed if nothing was due in them, else no more edits */
			rq_h2_plan(&st->h, iov, iovcnt, h2_id, c, &st->plan);
			if (st->plan.n || st->plan.covered < n)
				rq_h2_out_kill(&st->h);
			else
				rq_h2_commit(&st->h, &st->plan, iov, iovcnt, n, 0, 0);
		}
		h2_write_ctx(c, st);
		errno = saved;
		return;
	}
	conn_ctx(c);
	if (n && echo_on(c)) {
		h1_postscan(c, iov, iovcnt, &from, n, NULL, &no_cut);
		settle(c);
	}
	errno = saved;
}

void rq_conn_out_unseen(struct rq_conn *c)
{
	struct h2_st *st;

	if (unlikely(rq_conn_outbound(c)))
		rq_out_unseen(c);
	else if (unlikely(rq_conn_proto(c) == RQ_PR_H2) && (st = h2_of(c)))
		rq_h2_out_kill(&st->h);
	atomic_store_explicit(&c->echo, 0, memory_order_relaxed);
}

/* HTTP/2: what is owed before any other byte, planned as an empty write. */
static size_t h2_cut(struct rq_conn *c, struct h2_st *st, const char **rest)
{
	const struct rq_h2_edit *e = &st->plan.e[0];

	if (rq_h2_plan(&st->h, NULL, 0, h2_id, c, &st->plan) != 1 || e->del || !e->len)
		return 0;
	*rest = e->text; /* (in the connection's state, where it stays) */
	return e->len;
}

size_t rq_conn_cut(struct rq_conn *c, char text[RQ_HDR_LINE], const char **rest)
{
	struct h2_st *st;
	int len;

	if (unlikely(rq_conn_outbound(c)))
		return rq_out_cut(c, NULL, rest);
	if (unlikely(rq_conn_proto(c) == RQ_PR_H2))
		return (st = h2_writing(c)) ? h2_cut(c, st, rest) : 0;
	if (c->ins_state != 1 || (len = render_header(c, c->ins_slot, text)) < 0 ||
	    c->ins_sent > len)
		return 0;
	*rest = text + c->ins_sent;
	return (size_t)len - c->ins_sent;
}

void rq_conn_cut_sent(struct rq_conn *c, size_t n)
{
	char text[RQ_HDR_LINE];
	const char *rest;
	struct h2_st *st;
	size_t left;

	if (unlikely(rq_conn_outbound(c))) {
		rq_out_cut_sent(c, n);
		return;
	}
	if (unlikely(rq_conn_proto(c) == RQ_PR_H2)) {
		if ((st = h2_writing(c)) && h2_cut(c, st, &rest))
			rq_h2_commit(&st->h, &st->plan, NULL, 0, 0, n, 0);
		return;
	}
	left = rq_conn_cut(c, text, &rest);
	if (n >= left) {
		c->ins_sent = (uint16_t)(c->ins_sent + left);
		c->ins_state = 2;
	} else {
		c->ins_sent = (uint16_t)(c->ins_sent + n);
	}
}

/* ---- HTTP/2 ---- */

/* c's HTTP/2 state, or NULL (the extension record's `proto` holds another protocol's state). */
static struct h2_st *h2_of(struct rq_conn *c)
{
	struct rq_conn_ext *x = rq_conn_proto(c) == RQ_PR_H2 ? rq_conn_ext(c, 0) : NULL;

	return x ? atomic_load_explicit(&x->proto, memory_order_acquire) : NULL;
}

/*
 * c speaks HTTP/2 from now on (mode: 0, or RQ_H2_UPGRADED), sure of it or
 * still matching the client preface (`probe`). NULL, with nothing changed,
 * when no state can be had (RQ_H2_CONNS at once, or no memory).
 */
static struct h2_st *h2_start(struct rq_conn *c, int mode, int probe)
{
	struct rq_conn_ext *x = rq_conn_ext(c, 1);
	struct h2_st *st;
	uint32_t idx;

	if (!x || atomic_load_explicit(&x->proto, memory_order_relaxed) || !deep_get(c) ||
	    !(st = rq_pool_take(&h2s, &idx)))
		return NULL;
	st->idx = idx;
	st->pre = probe ? 0 : RQ_H2_PREFACE_LEN;
	atomic_store_explicit(&st->conn_id, 0, memory_order_relaxed);
	rq_h2_init(&st->h, mode);
	c->deep_used = 1; /* (stream slots beyond RQ_INLINE) */
	atomic_store_explicit(&x->proto, st, memory_order_release);
	__atomic_store_n(&c->proto, RQ_PR_H2, __ATOMIC_RELEASE);
	return st;
}

/* Gives back HTTP/2 state st, taken out of c's extension record: c is HTTP/1 again (or ends). */
static void h2_give(struct rq_conn *c, void *st)
{
	__atomic_store_n(&c->proto, RQ_PR_HTTP1, __ATOMIC_RELEASE);
	if (st)
		rq_pool_give(&h2s, ((struct h2_st *)st)->idx);
}

/* Gives c's HTTP/2 state back: c is HTTP/1 again (or ends). */
static void h2_release(struct rq_conn *c, struct rq_conn_ext *x)
{
	h2_give(c, x ? atomic_exchange_explicit(&x->proto, NULL, memory_order_acq_rel) : NULL);
}

/* Slot RQ_H2_CONN gets the connection's own ID, a UUIDv4, unless it has one. */
static void h2_conn_id(struct rq_conn *c, struct h2_st *st)
{
	uint8_t none = 0;

	if (atomic_load_explicit(&st->conn_id, memory_order_acquire) == 2 ||
	    !atomic_compare_exchange_strong_explicit(&st->conn_id, &none, 1, memory_order_acquire,
						     memory_order_relaxed))
		return;
	fill(c, RQ_H2_CONN, NULL, 0, 0);
	atomic_store_explicit(&st->conn_id, 2, memory_order_release);
}

/*
 * The request slot that a stream-map slot k (in.last, out.last, an event's)
 * names for the context: its own, the connection's ID for a stream not
 * tracked, RQ_NO_CUR before any stream.
 */
static uint32_t h2_slot(struct rq_conn *c, struct h2_st *st, unsigned k)
{
	if (k == RQ_H2_NONE)
		return RQ_NO_CUR;
	if (k >= RQ_H2_STREAMS || atomic_load_explicit(&st->h.in_dead, memory_order_acquire)) {
		h2_conn_id(c, st);
		return RQ_H2_CONN;
	}
	return k;
}

static void h2_set_cur(struct rq_conn *c, struct h2_st *st, unsigned k)
{
	uint32_t p = h2_slot(c, st, k);

	if (p != RQ_NO_CUR)
		set_cur(c, p);
}

/* ---- HTTP/2: reads ---- */

/* Scans n bytes of HTTP/2 the server read; *first: the slot of the first stream they opened. */
static void h2_scan(struct rq_conn *c, struct h2_st *st, const char *b, size_t n, int *first)
{
	size_t off = 0;

	while (off < n) {
		struct rq_h2_ev ev;

		off += rq_h2_read(&st->h, b + off, n - off, &ev);
		if (ev.type == RQ_H2_EV_REQ) {
			atomic_store_explicit(&c->seen, 1, memory_order_relaxed);
			if (ev.slot < RQ_H2_STREAMS)
				fill(c, ev.slot, ev.id, ev.id_len, 0);
			else
				h2_conn_id(c, st); /* more streams than tracked: the connection's */
			if (*first < 0)
				*first = (int)ev.slot;
		} else if (ev.type == RQ_H2_EV_DEAD) {
			h2_conn_id(c, st); /* one ID for the connection from now on */
		}
	}
}

/*
 * Feeds HTTP/2 bytes, or bytes that may be the client preface. Returns 1 if
 * they were taken (or held back as a preface so far); 0 if the connection is
 * HTTP/1 after all: what was held back has then been fed to the HTTP/1
 * scanner, and this read's bytes are the caller's to feed.
 *
 * The context after a read is the first stream whose request headers the
 * read completed; with none, the stream named by the last frame header in
 * the read (src/h2.h's in.last: not PRIORITY, not stream 0); with none
 * either (SETTINGS, PING, a connection WINDOW_UPDATE, the middle of a long
 * frame, EAGAIN, the end of the stream) it stays. RQ_H2_CONN once the
 * scanner gave up. See README, "How context travels".
 */
static int h2_feed(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n)
{
	struct h2_st *st = rq_conn_proto(c) == RQ_PR_H2 ? h2_of(c) : NULL;
	size_t skip = 0; /* bytes of this read that ended a preface being matched */
	int first = -1;
	uint8_t last;

	if (!st && (rq_conn_proto(c) != RQ_PR_HTTP1 || !(st = h2_start(c, 0, 1))))
		return 0;
	if (!n)
		return 1; /* (EAGAIN, a peek, EOF: the context stays) */
	atomic_store_explicit(&c->fed, 1, memory_order_relaxed);
	last = st->h.in.last;
	st->h.in.last = RQ_H2_NONE; /* (only an output of the scanner: did this read name a stream?) */
	if (st->pre < RQ_H2_PREFACE_LEN) {
		uint8_t m = st->pre, held = st->pre;
		int r = 0;

		for (int i = 0; i < iovcnt && r == 0 && skip < n; i++) {
			size_t len = iov[i].iov_len < n - skip ? iov[i].iov_len : n - skip;
			uint8_t before = m;

			r = rq_h2_preface(&m, iov[i].iov_base, len);
			skip += (size_t)(m - before);
		}
		if (r < 0) { /* not the preface: HTTP/1 (or anything else) */
			struct iovec v = { (void *)RQ_H2_PREFACE, held };

			h2_release(c, rq_conn_ext(c, 0));
			h1_feed(c, &v, 1, held);
			return 0;
		}
		st->pre = m;
		if (r == 0)
			return 1;
		h2_scan(c, st, RQ_H2_PREFACE, RQ_H2_PREFACE_LEN, &first);
	}
	for (int i = 0; i < iovcnt && n; i++) {
		size_t len = iov[i].iov_len < n ? iov[i].iov_len : n, at = skip < len ? skip : len;

		n -= len;
		skip -= at;
		h2_scan(c, st, (const char *)iov[i].iov_base + at, len - at, &first);
	}
	if (atomic_load_explicit(&st->h.in_dead, memory_order_acquire))
		h2_set_cur(c, st, RQ_H2_CONN);
	else
		h2_set_cur(c, st, first >= 0 ? (unsigned)first : st->h.in.last);
	if (st->h.in.last == RQ_H2_NONE)
		st->h.in.last = last;
	return 1;
}

/* Request bytes the server read unseen (splice out of the socket). */
static void h2_feed_opaque(struct rq_conn *c, size_t n)
{
	struct h2_st *st = h2_of(c);

	atomic_store_explicit(&c->fed, 1, memory_order_relaxed);
	if (!st)
		return;
	if (st->pre < RQ_H2_PREFACE_LEN) { /* no preface can be told: HTTP/1's scanner judges */
		struct iovec v = { (void *)RQ_H2_PREFACE, st->pre };

		h2_release(c, rq_conn_ext(c, 0));
		h1_feed(c, &v, 1, v.iov_len);
		(void)n;
		return;
	}
	rq_h2_in_kill(&st->h);
	h2_set_cur(c, st, RQ_H2_CONN);
}

void rq_conn_alpn_h2(struct rq_conn *c)
{
	if (rq_conn_proto(c) == RQ_PR_HTTP1 && !rq_conn_fed(c) && !rq_conn_seen(c))
		h2_start(c, 0, 0);
}

/* ---- HTTP/2: h2c by Upgrade ---- */

/* Whether a 101 written with the writer at ring entry h asks to switch to h2c. */
static int upgrades(struct rq_conn *c, uint32_t h, uint32_t hs, uint32_t t)
{
	return answers(c, h, hs, t) &&
	       (atomic_load_explicit(&rq_conn_slot(c, q_slot(c, h))->flags, memory_order_relaxed) &
		RQ_SLOT_H2C);
}

/*
 * A 101 answering the request at ring entry h, which asked for h2c, went
 * out: the server's next byte is HTTP/2, the client's next bytes its
 * preface, and stream 1 is that request (its ID moves to slot 0, stream 1's).
 * Without an HTTP/2 state the connection stays as it is: no more response
 * heads on it, and the preface stops the request scanner.
 */
static void h2_upgrade(struct rq_conn *c, uint32_t h)
{
	uint32_t p = q_slot(c, h);
	struct rq_ctx now;
	int got = rq_slot_read(rq_conn_slot(c, p), &now, NULL) == 0;

	if (!h2_start(c, RQ_H2_UPGRADED, 0))
		return;
	if (got && p != 0)
		rq_slot_store(&c->slots[0], &now);
	set_cur(c, 0);
}

/* ---- HTTP/2: writes ---- */

/* Writes are HTTP/2's once it is sure, or once the server began with HTTP/2 frames. */
static struct h2_st *h2_writing(struct rq_conn *c)
{
	struct h2_st *st = h2_of(c);

	return st && (st->pre == RQ_H2_PREFACE_LEN || st->h.out.fr.pos) ? st : NULL;
}

/* Whether a write's first bytes are a server preface: a SETTINGS frame (not an ACK) on stream 0. */
static int server_preface(const struct iovec *iov, int iovcnt)
{
	unsigned char b[9];
	size_t n = 0;

	for (int i = 0; i < iovcnt && n < 9; i++) {
		size_t take = iov[i].iov_len < 9 - n ? iov[i].iov_len : 9 - n;

		memcpy(b + n, iov[i].iov_base, take);
		n += take;
	}
	return n == 9 && b[3] == 0x04 && !(b[4] & 0x01) && !(b[5] & 0x7f) && !b[6] && !b[7] &&
	       !b[8] && ((uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2]) % 6 == 0;
}

/*
 * The HTTP/2 state a write is planned with, or NULL (HTTP/1). A server that
 * writes a SETTINGS frame before reading anything speaks HTTP/2 (an
 * HTTP/2-only port): the client's first bytes must then be its preface.
 */
static struct h2_st *h2_out(struct rq_conn *c, const struct iovec *iov, int iovcnt,
			    const struct rq_wpos *at)
{
	struct h2_st *st = rq_conn_proto(c) == RQ_PR_H2 ? h2_of(c) : NULL;
	int first = -1;

	if (st && (st->pre == RQ_H2_PREFACE_LEN || st->h.out.fr.pos))
		return st;
	if (at->done || rq_conn_seen(c) || (rq_conn_fed(c) && !st) || !server_preface(iov, iovcnt))
		return NULL;
	if (!st)
		return rq_conn_proto(c) == RQ_PR_HTTP1 ? h2_start(c, 0, 0) : NULL;
	/* the client's preface half read: it is HTTP/2, and the scanner takes what was held */
	h2_scan(c, st, RQ_H2_PREFACE, st->pre, &first);
	st->pre = RQ_H2_PREFACE_LEN;
	return st;
}

static size_t h2_id(void *arg, unsigned slot, uint32_t sid, char out[REQCTX_ID_MAX])
{
	struct rq_conn *c = arg;
	struct h2_st *st = h2_of(c);
	struct rq_ctx id;

	(void)sid;
	if (!st || slot > RQ_H2_CONN ||
	    (slot == RQ_H2_CONN && atomic_load_explicit(&st->conn_id, memory_order_acquire) != 2) ||
	    rq_slot_read(rq_conn_slot(c, slot), &id, NULL) < 0 || !id.len)
		return 0;
	memcpy(out, id.id, id.len);
	return id.len;
}

/*
 * The caller's iovecs from `at` on, at most max of them: the caller's own
 * array when the write starts there, else a copy in `buf` whose first entry
 * starts at the offset. *n: how many.
 */
static const struct iovec *h2_window(const struct iovec *iov, int iovcnt, const struct rq_wpos *at,
				     struct iovec *buf, int max, int *n)
{
	int k = 0;

	if (!at->done && at->i == 0 && iovcnt <= max) {
		*n = iovcnt;
		return iov;
	}
	for (int i = at->i; i < iovcnt && k < max; i++, k++) {
		size_t off = i == at->i ? at->off : 0;

		buf[k].iov_base = (char *)iov[i].iov_base + off;
		buf[k].iov_len = iov[i].iov_len - off;
	}
	*n = k;
	return buf;
}

/*
 * Plans caller bytes from p->at with the HTTP/2 planner (src/h2.h): its
 * edits, laid out as p->w. A window of RQ_H2_WIN iovecs is planned; if its
 * layout needs more than RQ_WIRE_IOV, a window of a quarter of that, whose
 * layout always fits (each edit adds two pieces at most).
 */
static int h2_plan(struct rq_conn *c, struct h2_st *st, const struct iovec *iov, int iovcnt,
		   size_t total, struct rq_wplan *p)
{
	struct iovec buf[RQ_H2_WIN];
	struct rq_h2_plan *hp = &st->plan;
	const struct iovec *w;
	int wn, max = RQ_H2_WIN, k;

	_Static_assert(RQ_H2_WIN / 4 + 2 * RQ_H2_EDITS <= RQ_WIRE_IOV, "a small window's layout fits");
	p->total = total;
	for (;;) {
		w = h2_window(iov, iovcnt, &p->at, buf, max, &wn);
		rq_h2_plan(&st->h, w, wn, h2_id, c, hp);
		p->u.h2.win = wn;
		p->stop = p->at.done + hp->covered;
		if (!hp->n && !p->at.done && p->stop == total && w == iov) {
			p->n = 0;
			p->w.n = 0; /* nothing to weave in: the caller's own call */
			return 0;
		}
		if ((k = rq_h2_wire(hp, w, wn, p->w.iov, RQ_WIRE_IOV)) >= 0)
			break;
		max = RQ_H2_WIN / 4;
	}
	p->w.n = k;
	p->w.bytes = hp->wire;
	p->w.caller = hp->covered;
	for (int i = 0, e = 0; i < k; i++) { /* which pieces are the edits' text, in order */
		while (e < hp->n && !hp->e[e].len)
			e++;
		p->w.ed[i] = -1;
		if (e < hp->n && p->w.iov[i].iov_base == hp->e[e].text &&
		    p->w.iov[i].iov_len == hp->e[e].len)
			p->w.ed[i] = (int8_t)e++;
	}
	p->n = hp->n;
	return p->n;
}

/* After a write: its last frame's stream is current (src/h2.h, out.last). */
static void h2_write_ctx(struct rq_conn *c, struct h2_st *st)
{
	h2_set_cur(c, st, st->h.out.last);
	rq_conn_enter(c);
}

/*
 * Commits `wire` bytes of an HTTP/2 plan. A write whose caller bytes all
 * went out but not the insertion after them is reported one byte short
 * (`hold`, src/h2.h: p->held), so that the peer never waits on a half
 * frame while the caller thinks it is done; the transport may write again
 * at once to finish it.
 */
static size_t h2_commit(struct rq_conn *c, struct h2_st *st, struct rq_wplan *p,
			const struct iovec *iov, int iovcnt, size_t wire)
{
	struct iovec buf[RQ_H2_WIN];
	struct rq_h2_plan *hp = &st->plan;
	int wn;
	const struct iovec *w = h2_window(iov, iovcnt, &p->at, buf, p->u.h2.win, &wn);
	size_t cc = wire, x = 0, ret;

	if (p->w.n)
		rq_h2_map(hp, wire, &cc, &x);
	if (!hp->covered && !hp->n) { /* (a caller that did not resend what it was told) */
		rq_h2_out_kill(&st->h);
		ret = wire < p->total - p->at.done ? wire : p->total - p->at.done;
	} else {
		ret = rq_h2_commit(&st->h, hp, w, wn, cc, x, 1);
	}
	p->held = st->h.out.skip != 0;
	h2_write_ctx(c, st);
	rq_wpos_advance(&p->at, iov, iovcnt, ret);
	return ret;
}
