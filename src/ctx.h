/*
 * The calling thread's current request context.
 *
 * Each thread holds two context buffers in initial-exec TLS and an index to
 * the active one. A switch fills the inactive buffer and then flips the index
 * with one store, so a signal handler that logs in the middle of a switch sees
 * either the old or the new ID, never a mix.
 *
 * A request record (struct rq_slot) lives in a connection and may be read by
 * one thread while the connection's reader fills it for the next request: it
 * is guarded by a seqlock, and every byte ever stored in it is a valid ID
 * character, so even a torn copy can only name a wrong request, not forge text.
 */
#ifndef RQ_CTX_H
#define RQ_CTX_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"
#include "reqctx.h"

struct rq_ctx {
	uint64_t serial; /* unique per request in this process; 0: unknown */
	uint32_t len;
	char id[REQCTX_ID_MAX + 1]; /* NUL-terminated */
};

/* The context outside any request, as an initializer, and as an object. */
#define RQ_CTX_UNKNOWN { 0, sizeof(REQCTX_UNKNOWN) - 1, REQCTX_UNKNOWN }
extern const struct rq_ctx rq_ctx_unknown;

struct rq_tls {
	struct rq_ctx buf[2];
	unsigned active;
	unsigned finished; /* the current request's response has been written */
	/*
	 * For reqctx_handle_current(): [0] is buf[active].serial; [1] is 1 from
	 * an rq_handle_enter that switched the context until the library next
	 * sets one itself (a read, an event, a hand-off), else 0.
	 */
	double handle[2];
};

extern RQ_TLS struct rq_tls rq_tls;

#define RQ_SLOT_WORDS (REQCTX_ID_MAX / 8)

/* One request as seen on a connection. */
struct rq_slot {
	_Atomic uint32_t seq;   /* seqlock: odd while being written */
	_Atomic uint32_t len;
	_Atomic uint64_t serial;
	_Atomic uint32_t flags; /* RQ_SLOT_* */
	_Atomic uint64_t w[RQ_SLOT_WORDS];
};

#define RQ_SLOT_HEAD 1u  /* the request's method was HEAD: its response has no body */
#define RQ_SLOT_RELAY 2u /* a carrier's context read from a relayed line (carry.h) */
#define RQ_SLOT_H2C  4u  /* it asked to upgrade to h2c: a 101 answering it starts HTTP/2 */

static inline const struct rq_ctx *rq_ctx_cur(void)
{
	return &rq_tls.buf[rq_tls.active];
}

/*
 * Says that the library itself has just set the current context again (it
 * was already current): clears the mark of an rq_handle_enter (handle[1]).
 */
static inline void rq_ctx_reaffirm(void)
{
	rq_tls.handle[1] = 0;
}

/* Makes `c` the current context. */
void rq_ctx_set(const struct rq_ctx *c);

/* Makes the request in `s` the current context (no copy if already current). */
void rq_ctx_set_slot(struct rq_slot *s);

/* Marks the current context finished if it is request `serial` (its response is out). */
void rq_ctx_finish(uint64_t serial);

/* Back to "unknown". */
void rq_ctx_clear(void);

/* Fills `s` with a new request: a fresh serial, the id and the flags. */
void rq_slot_fill(struct rq_slot *s, const char *id, uint32_t len, uint32_t flags);

/* Stores context c in s, keeping its serial (serial 0: "unknown"). */
void rq_slot_store(struct rq_slot *s, const struct rq_ctx *c);

/* Copies `s` into `out` consistently. Returns 0, or -EAGAIN if it kept changing. */
int rq_slot_read(struct rq_slot *s, struct rq_ctx *out, uint32_t *flags);

/* A new process-unique serial. */
uint64_t rq_serial_next(void);

#endif
