#include "handle.h"

#include "evq.h"

#include <stdatomic.h>
#include <string.h>

#include "ctx.h"
#include "handoff.h"
#include "pool.h"

/* A main record: one cache line. len > RQ_HD_INLINE: the ID is in the long table. */
struct rec {
	_Atomic uint32_t seq; /* seqlock: odd while being written */
	_Atomic uint32_t len;
	_Atomic uint64_t serial;
	_Atomic uint64_t w[RQ_HD_INLINE / 8];
};

/* A record for an ID longer than RQ_HD_INLINE. */
struct lrec {
	_Atomic uint32_t seq;
	_Atomic uint32_t len;
	_Atomic uint64_t serial;
	_Atomic uint64_t w[REQCTX_ID_MAX / 8];
};

_Static_assert(sizeof(struct rec) == 64, "a main record is one cache line");
_Static_assert(RQ_HD_RECS % RQ_HD_CHUNK == 0 && RQ_HD_LONG % RQ_HD_CHUNK == 0,
	       "tables are whole chunks");

static struct rec *_Atomic chunks[RQ_HD_RECS / RQ_HD_CHUNK];
static struct lrec *_Atomic lchunks[RQ_HD_LONG / RQ_HD_CHUNK];

static struct rec *rec_of(uint64_t serial, int make)
{
	unsigned i = (unsigned)(serial % RQ_HD_RECS);
	struct rec *c = rq_chunk((void *_Atomic *)&chunks[i / RQ_HD_CHUNK],
			      RQ_HD_CHUNK * sizeof(struct rec), make);

	return c ? &c[i % RQ_HD_CHUNK] : NULL;
}

static struct lrec *lrec_of(uint64_t serial, int make)
{
	unsigned i = (unsigned)(serial % RQ_HD_LONG);
	struct lrec *c = rq_chunk((void *_Atomic *)&lchunks[i / RQ_HD_CHUNK],
			       RQ_HD_CHUNK * sizeof(struct lrec), make);

	return c ? &c[i % RQ_HD_CHUNK] : NULL;
}

/*
 * Writes serial, len and (if id) the ID's words under the seqlock at seq.
 * A record another writer holds at this instant is left alone: -EBUSY.
 */
static int put(_Atomic uint32_t *seq, _Atomic uint32_t *lenp, _Atomic uint64_t *serp,
	       _Atomic uint64_t *w, uint64_t serial, uint32_t len, const char *id)
{
	uint64_t buf[REQCTX_ID_MAX / 8] = { 0 };
	uint32_t q = atomic_load_explicit(seq, memory_order_relaxed);

	if (id)
		memcpy(buf, id, len);
	if ((q & 1) || !atomic_compare_exchange_strong_explicit(seq, &q, q + 1, memory_order_relaxed,
								memory_order_relaxed))
		return -EBUSY;
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(serp, serial, memory_order_relaxed);
	atomic_store_explicit(lenp, len, memory_order_relaxed);
	for (unsigned i = 0; id && i < (len + 7) / 8; i++)
		atomic_store_explicit(&w[i], buf[i], memory_order_relaxed);
	atomic_store_explicit(seq, q + 2, memory_order_release);
	return 0;
}

/*
 * Reads the record at seq if it holds `serial`: its length into *len and,
 * if the length is at most max, its ID into out. Returns 0, -ENOENT if it
 * holds another serial (or nothing), or -EAGAIN if it kept changing.
 */
static int get(_Atomic uint32_t *seq, _Atomic uint32_t *lenp, _Atomic uint64_t *serp,
	       _Atomic uint64_t *w, uint64_t serial, uint32_t max, uint32_t *len, char *out)
{
	for (int tries = 0; tries < 16; tries++) {
		uint32_t q = atomic_load_explicit(seq, memory_order_acquire);
		uint64_t buf[REQCTX_ID_MAX / 8];
		uint64_t s;
		uint32_t n;

		if (q & 1)
			continue;
		s = atomic_load_explicit(serp, memory_order_relaxed);
		n = atomic_load_explicit(lenp, memory_order_relaxed);
		for (unsigned i = 0; n <= max && i < (n + 7) / 8; i++)
			buf[i] = atomic_load_explicit(&w[i], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(seq, memory_order_relaxed) != q)
			continue;
		if (s != serial || n == 0 || n > REQCTX_ID_MAX)
			return -ENOENT;
		if (n <= max) {
			memcpy(out, buf, n);
			out[n] = '\0';
		}
		*len = n;
		return 0;
	}
	return -EAGAIN;
}

/* Makes sure the table holds context c (serial != 0). */
static void intern(const struct rq_ctx *c)
{
	struct rec *r = rec_of(c->serial, 1);
	struct lrec *l;

	if (!r)
		return;
	if (c->len <= RQ_HD_INLINE) {
		if (atomic_load_explicit(&r->serial, memory_order_relaxed) != c->serial)
			put(&r->seq, &r->len, &r->serial, r->w, c->serial, c->len, c->id);
		return;
	}
	if (!(l = lrec_of(c->serial, 1)))
		return;
	if (atomic_load_explicit(&l->serial, memory_order_relaxed) != c->serial &&
	    put(&l->seq, &l->len, &l->serial, l->w, c->serial, c->len, c->id) < 0)
		return;
	if (atomic_load_explicit(&r->serial, memory_order_relaxed) != c->serial)
		put(&r->seq, &r->len, &r->serial, r->w, c->serial, c->len, NULL);
}

/* Reads handle h back into *out. Returns 0, or -ENOENT if its record was reused or never made. */
static int lookup(uint64_t h, struct rq_ctx *out)
{
	struct rec *r = rec_of(h, 0);
	struct lrec *l;
	uint32_t len, llen;

	if (!r || get(&r->seq, &r->len, &r->serial, r->w, h, RQ_HD_INLINE, &len, out->id) < 0)
		return -ENOENT;
	if (len > RQ_HD_INLINE &&
	    (!(l = lrec_of(h, 0)) ||
	     get(&l->seq, &l->len, &l->serial, l->w, h, REQCTX_ID_MAX, &llen, out->id) < 0 ||
	     llen != len))
		return -ENOENT;
	out->serial = h;
	out->len = len;
	return 0;
}

uint64_t rq_handle_take(void)
{
	const struct rq_ctx *c = rq_ctx_cur();

	if (c->serial)
		intern(c);
	return c->serial;
}

uint64_t rq_handle_enter(uint64_t h)
{
	const struct rq_ctx *cur = rq_ctx_cur();
	uint64_t prev = cur->serial;
	struct rq_ctx c;

	rq_evq_api();
	rq_handoff_managed();
	if (h == prev)
		return prev;
	if (prev)
		intern(cur);
	if (h && lookup(h, &c) == 0)
		rq_ctx_set(&c);
	else
		rq_ctx_clear();
	rq_tls.handle[1] = 1;
	return prev;
}

void rq_handle_resume(uint64_t h)
{
	struct rq_ctx c;

	if (h == rq_ctx_cur()->serial)
		rq_ctx_reaffirm();
	else if (h && lookup(h, &c) == 0)
		rq_ctx_set(&c);
	else
		rq_ctx_clear();
}

/* Public API. */

RQ_EXPORT reqctx_handle reqctx_handle_take(void)
{
	return rq_handle_take();
}

RQ_EXPORT reqctx_handle reqctx_handle_enter(reqctx_handle h)
{
	return rq_handle_enter(h);
}

RQ_EXPORT const volatile double *reqctx_handle_current(void)
{
	return rq_tls.handle;
}
