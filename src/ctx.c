#include "ctx.h"

#include <stddef.h>
#include <string.h>

#include "evq.h"
#include "id.h"

RQ_TLS struct rq_tls rq_tls = {
	.buf = { RQ_CTX_UNKNOWN, RQ_CTX_UNKNOWN },
};

const struct rq_ctx rq_ctx_unknown = RQ_CTX_UNKNOWN;

static _Atomic uint64_t serials = 1;

uint64_t rq_serial_next(void)
{
	return atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed);
}

void rq_ctx_set(const struct rq_ctx *c)
{
	unsigned next = rq_tls.active ^ 1;
	struct rq_ctx *d = &rq_tls.buf[next];

	d->serial = c->serial;
	d->len = c->len;
	memcpy(d->id, c->id, c->len + 1);
	atomic_signal_fence(memory_order_release);
	rq_tls.active = next;
	rq_tls.finished = 0;
	rq_tls.handle[0] = (double)c->serial;
	rq_tls.handle[1] = 0;
}

void rq_ctx_finish(uint64_t serial)
{
	if (serial && rq_ctx_cur()->serial == serial)
		rq_tls.finished = 1;
}

void rq_ctx_clear(void)
{
	if (rq_ctx_cur()->serial != 0)
		rq_ctx_set(&rq_ctx_unknown);
	else
		rq_ctx_reaffirm();
}

static void store(struct rq_slot *s, uint64_t serial, const char *id, uint32_t len,
		  uint32_t flags)
{
	uint64_t w[RQ_SLOT_WORDS] = { 0 };
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);

	memcpy(w, id, len);
	atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->serial, serial, memory_order_relaxed);
	atomic_store_explicit(&s->len, len, memory_order_relaxed);
	atomic_store_explicit(&s->flags, flags, memory_order_relaxed);
	for (unsigned i = 0; i < (len + 7) / 8; i++)
		atomic_store_explicit(&s->w[i], w[i], memory_order_relaxed);
	atomic_store_explicit(&s->seq, q + 2, memory_order_release);
}

void rq_slot_fill(struct rq_slot *s, const char *id, uint32_t len, uint32_t flags)
{
	store(s, rq_serial_next(), id, len, flags);
}

void rq_slot_store(struct rq_slot *s, const struct rq_ctx *c)
{
	rq_evq_use();
	if (atomic_load_explicit(&s->serial, memory_order_relaxed) != c->serial)
		store(s, c->serial, c->id, c->len, 0);
}

int rq_slot_read(struct rq_slot *s, struct rq_ctx *out, uint32_t *flags)
{
	for (int tries = 0; tries < 16; tries++) {
		uint32_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
		uint64_t w[RQ_SLOT_WORDS];
		uint32_t len;

		if (q & 1)
			continue;
		out->serial = atomic_load_explicit(&s->serial, memory_order_relaxed);
		len = atomic_load_explicit(&s->len, memory_order_relaxed);
		if (len > REQCTX_ID_MAX)
			len = REQCTX_ID_MAX;
		if (flags)
			*flags = atomic_load_explicit(&s->flags, memory_order_relaxed);
		for (unsigned i = 0; i < (len + 7) / 8; i++)
			w[i] = atomic_load_explicit(&s->w[i], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->seq, memory_order_relaxed) != q)
			continue;
		memcpy(out->id, w, len);
		out->id[len] = '\0';
		out->len = len;
		return 0;
	}
	return -EAGAIN;
}

void rq_ctx_set_slot(struct rq_slot *s)
{
	struct rq_ctx c;

	if (atomic_load_explicit(&s->serial, memory_order_relaxed) == rq_ctx_cur()->serial) {
		rq_ctx_reaffirm();
		return;
	}
	if (rq_slot_read(s, &c, NULL) < 0 || c.serial == 0)
		rq_ctx_clear(); /* a slot that holds no request means "unknown" */
	else
		rq_ctx_set(&c);
}

/* Public API. */

RQ_EXPORT const char *reqctx_id(void)
{
	return rq_ctx_cur()->id;
}

RQ_EXPORT int reqctx_id_valid(const char *id)
{
	return id && rq_id_valid(id, strnlen(id, REQCTX_ID_MAX + 1));
}

_Static_assert(sizeof(reqctx_snapshot) == sizeof(struct rq_ctx) &&
	       offsetof(reqctx_snapshot, len) == offsetof(struct rq_ctx, len) &&
	       offsetof(reqctx_snapshot, id) == offsetof(struct rq_ctx, id),
	       "reqctx_snapshot must mirror struct rq_ctx");

static int snapshot_ok(const reqctx_snapshot *s)
{
	if (!s || s->len > REQCTX_ID_MAX || s->id[s->len] != '\0')
		return 0;
	if (s->serial == 0)
		return !strcmp(s->id, REQCTX_UNKNOWN);
	return rq_id_valid(s->id, s->len);
}

RQ_EXPORT void reqctx_snapshot_take(reqctx_snapshot *s)
{
	if (s)
		memcpy(s, rq_ctx_cur(), sizeof(*s));
}

RQ_EXPORT int reqctx_snapshot_enter(const reqctx_snapshot *s)
{
	if (!snapshot_ok(s))
		return -EINVAL;
	rq_evq_api();
	rq_ctx_set((const struct rq_ctx *)s);
	return 0;
}

RQ_EXPORT int reqctx_snapshot_run(const reqctx_snapshot *s, void (*fn)(void *), void *arg)
{
	struct rq_ctx saved;

	if (!snapshot_ok(s) || !fn)
		return -EINVAL;
	rq_evq_api();
	saved = *rq_ctx_cur();
	rq_ctx_set((const struct rq_ctx *)s);
	fn(arg);
	rq_ctx_set(&saved);
	return 0;
}

RQ_EXPORT int reqctx_run(const char *id, void (*fn)(void *), void *arg)
{
	struct rq_ctx saved, c;

	if (!reqctx_id_valid(id) || !fn)
		return -EINVAL;
	rq_evq_api();
	saved = *rq_ctx_cur();
	c.serial = rq_serial_next();
	c.len = (uint32_t)strlen(id);
	memcpy(c.id, id, c.len + 1);
	rq_ctx_set(&c);
	fn(arg);
	rq_ctx_set(&saved);
	return 0;
}
