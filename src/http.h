/*
 * HTTP/1.x message boundaries, found by streaming scanners that never buffer
 * more than the request ID itself.
 *
 * The request scanner (rq_req_feed) sees the bytes a server reads from a
 * connection and reports each complete request head with its X-Request-Id.
 * The response scanner (rq_resp_feed) sees the bytes a server writes and
 * reports where a response's status line and head end, so that the ID can be
 * inserted there and nowhere else. Both skip bodies by Content-Length or by
 * chunked framing. Anything that is not well-formed HTTP/1.x stops the scanner
 * for the rest of the connection ("dead"): the bytes pass through untouched.
 */
#ifndef RQ_HTTP_H
#define RQ_HTTP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/*
 * Requests a connection remembers for their responses: RQ_PIPE unanswered at
 * once, of which the first RQ_INLINE live in struct rq_conn itself and the
 * rest in an overflow area of RQ_DEEP_BYTES kept for the connection's fd
 * number (fdtab.h), whose pages are touched only as deep as a client goes.
 */
#define RQ_PIPE       64
#define RQ_INLINE     4
#define RQ_DEEP_BYTES 12288 /* 3 pages: RQ_PIPE - RQ_INLINE request slots */
#define RQ_SKIP_MAX   127   /* lost requests counted between two queued ones */
#define RQ_SKIP_LOST  0x80  /* in a ring entry's skip: the framing before it is unknown */
#define RQ_NO_CUR     0xffffffffu /* struct rq_conn.cur: no request yet */

/* Body framing, shared by both scanners. */
struct rq_body {
	uint8_t st;
	uint8_t digits;
	uint64_t left;
};

struct rq_hdrs {
	uint8_t st;
	uint8_t idx;     /* bytes matched so far of a literal or header name */
	uint8_t match;   /* header names still matching (bit per RQ_H_*) */
	uint8_t cur;     /* header whose value is being read */
	uint8_t xr_st;   /* request-ID value: 0 before, 1 inside, 2 after the text */
	uint8_t xr_bad;  /* the value being read is invalid */
	uint8_t xr_have; /* a valid ID has been kept for this message */
	uint8_t xr_seen; /* the header was present at all */
	uint8_t xr_mine; /* the kept ID came from the header being read */
	uint8_t te_seen, te_chunked, te_idx, te_ok, te_end;
	uint8_t cl_seen, cl_digits, cl_bad;
	uint8_t method;  /* request: RQ_M_*; response: unused */
	uint8_t lines;   /* header lines begun in this message (saturates) */
	uint8_t xr_len;  /* bytes of the ID kept (request scanner) */
	uint16_t status;
	uint64_t cl, cl_cur;
	struct rq_body body;
};

_Static_assert(REQCTX_ID_MAX <= UINT8_MAX, "xr_len holds an ID's length");

/* The request scanner keeps the ID text too (the response scanner only sees whether there is one). */
struct rq_req {
	struct rq_hdrs h;
	char xr[REQCTX_ID_MAX];
};

/* What a scanner stopped for. */
enum rq_ev {
	RQ_EV_NONE,   /* consumed everything it was given */
	RQ_EV_HEAD,   /* a request head ended (request scanner) */
	RQ_EV_STATUS, /* a response status line ended (response scanner) */
	RQ_EV_BLANK,  /* the blank line ending a response head starts here */
	RQ_EV_END,    /* a response head ended (response scanner) */
	RQ_EV_DEAD,   /* not HTTP/1.x: the scanner stopped for good */
};

#define RQ_M_HEAD    1
#define RQ_M_CONNECT 2

/*
 * One accepted connection. The reader (whoever reads the connection) queues
 * each request it completes: a slot for its ID, and a ring entry naming the
 * slot; the writer answers ring entries in order and frees their slots. The
 * two may be different threads: head is the writer's, tail and lost the
 * reader's, and a slot is refilled only once it is free. Requests that find
 * the ring full are counted as lost, in the next entry's skip, so that their
 * responses go out without a header and the rest stay in step.
 */
struct rq_conn {
	struct rq_req rp;         /* request scanner */
	struct rq_hdrs ws;        /* response scanner */
	_Atomic uint32_t head;    /* next ring entry to answer */
	_Atomic uint32_t tail;    /* next free ring entry */
	_Atomic uint32_t cur;     /* slot of the connection's current request, or RQ_NO_CUR */
	uint8_t seen;             /* a request head was completed */
	_Atomic uint8_t echo;     /* 1 while responses are scanned and the ring answered */
	uint16_t ins_sent;        /* bytes already written of a cut header insertion */
	uint8_t ins_state;        /* 0: no ID header out for the open response head,
				     1: one cut short (ins_sent bytes out), 2: one out */
	uint8_t ins_slot;         /* slot whose ID that insertion carries */
	uint8_t lost;             /* reader: requests not queued since the last one that was */
	uint8_t hs;               /* writer: responses to lost requests since entry head came up */
	uint8_t deep_used;        /* the overflow area has been written */
	_Atomic uint64_t used;    /* slots holding queued requests, a bit each */
	uint64_t done;            /* writer: serial of the last request answered */
	struct rq_slot *_Atomic deep; /* overflow slots RQ_INLINE.., once needed */
	uint8_t qslot[RQ_PIPE];   /* ring entry -> slot */
	uint8_t qskip[RQ_PIPE];   /* ring entry -> lost requests read just before it (or RQ_SKIP_LOST) */
	struct rq_slot slots[RQ_INLINE];
};

_Static_assert(RQ_PIPE == 64, "the used bitmap is 64 bits");
_Static_assert(sizeof(struct rq_conn) <= 1024, "an idle connection costs 1 KiB (README, Hardening)");
_Static_assert((RQ_PIPE - RQ_INLINE) * sizeof(struct rq_slot) <= RQ_DEEP_BYTES,
	       "the overflow area holds the slots beyond RQ_INLINE");

/* Slot p of c (p < RQ_PIPE; anything else is an empty slot). */
static inline struct rq_slot *rq_conn_slot(struct rq_conn *c, uint32_t p)
{
	static struct rq_slot none; /* an overflow area that could not be had: "unknown" */
	struct rq_slot *d;

	if (likely(p < RQ_INLINE))
		return &c->slots[p];
	d = atomic_load_explicit(&c->deep, memory_order_acquire);
	return d && p < RQ_PIPE ? &d[p - RQ_INLINE] : &none;
}

/* Resets c for a newly accepted connection (giving back the pages of a previous one's overflow). */
void rq_conn_init(struct rq_conn *c);

/*
 * Makes dst a copy of connection src (dup). Two fds now write one stream that
 * reqctx sees in two parts: neither gets the header any more.
 */
void rq_conn_copy(struct rq_conn *dst, struct rq_conn *src);

/*
 * Scans n bytes a server read. Stops after a request head (RQ_EV_HEAD: the ID
 * is in p->xr, p->h.xr_len, valid if p->h.xr_have) or when the stream turns out
 * not to be HTTP (RQ_EV_DEAD, once). Returns the bytes consumed.
 */
size_t rq_req_feed(struct rq_req *p, const char *buf, size_t n, enum rq_ev *ev);

/*
 * Scans n bytes a server wrote. `method` is the RQ_M_* of the request being
 * answered. Stops after a status line (RQ_EV_STATUS), at the start of the blank
 * line ending a head (RQ_EV_BLANK, nothing consumed), after that head
 * (RQ_EV_END: p->status, p->xr_seen), or on a stream that is not HTTP
 * (RQ_EV_DEAD, once). Returns the bytes consumed.
 */
size_t rq_resp_feed(struct rq_hdrs *p, const char *buf, size_t n, int method,
		    enum rq_ev *ev);

/*
 * Accounts for n bytes that passed without being shown (sendfile, splice).
 * They can only be body bytes of a Content-Length or chunk; anywhere else the
 * scanner stops for good.
 */
void rq_hdrs_opaque(struct rq_hdrs *p, uint64_t n);

/* Stops a scanner for good. */
void rq_hdrs_kill(struct rq_hdrs *p);

/* 1 once the scanner has stopped for good. */
int rq_hdrs_dead(const struct rq_hdrs *p);

/* 1 if the response scanner is right after a status line, before any header. */
int rq_resp_after_status(const struct rq_hdrs *p);

/* 1 if the response scanner is between messages (the next byte starts a head). */
int rq_resp_at_start(const struct rq_hdrs *p);

#endif
