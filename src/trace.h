/*
 * W3C Trace Context: the traceparent header, and trace and span IDs for a
 * request.
 *
 * traceparent, version 00, is exactly 55 characters:
 *   00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>
 * in lowercase hex. An all-zero trace-id or parent-id is invalid, and so is
 * version ff. A higher version (01..fe) is read the way the specification
 * says: at least 55 characters whose first 55 have the version 00 layout,
 * followed by the end or by a '-' (whatever comes after it is ignored). An
 * invalid header is ignored whole: rq_trace_parse gives nothing back.
 *
 * Mapping: a request ID that is a UUID (8-4-4-4-12 hex, as reqctx generates)
 * or 32 hex digits (nginx's $request_id) gives the trace-id of those 32
 * digits, lowercased, unless they are all zero; a generated UUIDv4 always
 * qualifies. Any other ID gives no trace-id: take the incoming traceparent's,
 * or a random one (rq_trace_new_id). A span (parent) id is 64 random bits,
 * never zero, from the per-thread generator of id.c: no syscall per span.
 *
 * Integration (outbound HTTP, not here): keep a valid incoming traceparent's
 * trace-id with the request; when writing one outbound, use that trace-id,
 * else the request ID's (rq_trace_from_id), else a random one, with a new
 * span id (rq_trace_new_span) and the incoming flags (or 01).
 */
#ifndef RQ_TRACE_H
#define RQ_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define RQ_TRACEPARENT_LEN 55 /* version 00, as written */

struct rq_trace {
	uint8_t version; /* as read; rq_trace_format always writes 00 */
	uint8_t flags;   /* bit 0: sampled */
	uint8_t trace[16];
	uint8_t span[8]; /* the parent-id */
};

/* Parses n bytes of a traceparent value (no spaces around it). Returns 0, or -EINVAL. */
int rq_trace_parse(const char *s, size_t n, struct rq_trace *t);

/* Writes t as version 00 (55 bytes, no NUL). */
void rq_trace_format(const struct rq_trace *t, char out[RQ_TRACEPARENT_LEN]);

/* The trace-id a request ID maps to (see above). Returns 0, or -EINVAL if it maps to none. */
int rq_trace_from_id(const char *id, size_t n, uint8_t trace[16]);

/*
 * The trace-id of a request whose ID is id (n bytes), for what reqctx writes
 * outbound: rq_trace_from_id's when the ID maps to one, else a 128-bit hash
 * of the ID (FNV-1a in two lanes, finalised), never all zero, so that every
 * call a request makes, and every hop that keeps the ID, names one trace.
 * Async-signal-safe.
 */
void rq_trace_of(const char *id, size_t n, uint8_t trace[16]);

/* A new random span id, never all zero. Async-signal-safe. */
void rq_trace_new_span(uint8_t span[8]);

/* A new random trace-id, never all zero. Async-signal-safe. */
void rq_trace_new_id(uint8_t trace[16]);

/* Writes n bytes as 2n lowercase hex digits (no NUL). */
void rq_trace_hex(const uint8_t *b, size_t n, char *out);

#endif
