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

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

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
	uint8_t xr_mine : 1; /* the kept ID came from the header being read */
	uint8_t up : 2;      /* request: RQ_UP_* seen in this message (bit-fields: struct
				rq_conn, which holds two of these, fits 1 KiB) */
	uint8_t te_seen, te_chunked, te_idx, te_ok, te_end;
	uint8_t cl_seen, cl_digits, cl_bad;
	uint8_t method;  /* request: RQ_M_*; response: unused */
	uint8_t lines;   /* header lines begun in this message (saturates) */
	uint8_t xr_len;  /* bytes of the ID kept (request scanner) */
	uint8_t tp_st;   /* traceparent (REQCTX_TRACEPARENT=1): RQ_TP_* bits */
	uint8_t tp_pos;  /* characters read of its value (255: a second header, invalid) */
	uint16_t status;
	uint64_t cl, cl_cur;
	struct rq_body body;
};

_Static_assert(REQCTX_ID_MAX <= UINT8_MAX, "xr_len holds an ID's length");
_Static_assert(sizeof(struct rq_hdrs) <= 56, "struct rq_conn holds two in its 1 KiB");

/*
 * traceparent, read when REQCTX_TRACEPARENT=1 (src/trace.h has the rules):
 * the request scanner keeps the trace-id's 32 hex digits of a valid one in
 * the last RQ_TP_DIGITS bytes of its xr buffer (RQ_TP_AT), unless a valid ID
 * header was kept first; an ID value longer than RQ_TP_AT characters, being
 * read into the same buffer, loses them (RQ_TP_LOST).
 */
#define RQ_TP_SEEN 0x01 /* the header is present */
#define RQ_TP_BAD  0x02 /* the value being read is invalid */
#define RQ_TP_OK   0x04 /* the message has one valid traceparent */
#define RQ_TP_NZT  0x08 /* its trace-id is not all zero (so far) */
#define RQ_TP_NZS  0x10 /* its parent-id is not all zero (so far) */
#define RQ_TP_VER  0x20 /* its version is not 00 */
#define RQ_TP_LOST 0x40 /* the kept digits were overwritten */
#define RQ_TP_F    0x80 /* its version starts with f */
#define RQ_TP_DIGITS 32
#define RQ_TP_AT (REQCTX_ID_MAX - RQ_TP_DIGITS)

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
	RQ_EV_BODY,   /* a request body ended (request scanner): a message may start next */
	RQ_EV_DEAD,   /* not HTTP/1.x: the scanner stopped for good */
};

#define RQ_M_HEAD    1
#define RQ_M_CONNECT 2

/* A request asking for h2c (RFC 7540 3.2; RFC 9113 dropped it): both, in struct rq_hdrs.up. */
#define RQ_UP_H2C  1u /* an Upgrade header lists the token h2c */
#define RQ_UP_SETS 2u /* an HTTP2-Settings header is present */
#define RQ_UP_ALL  (RQ_UP_H2C | RQ_UP_SETS)

/*
 * Scans n bytes a server read. Stops after a request head (RQ_EV_HEAD: the ID
 * is in p->xr, p->h.xr_len, valid if p->h.xr_have), after a request body
 * (RQ_EV_BODY), or when the stream turns out not to be HTTP (RQ_EV_DEAD,
 * once). Returns the bytes consumed. A caller that knows where each message
 * starts (rq_req_at_start before a call) finds its request line: the bytes
 * from the first that is not CR or LF up to the next CR or LF.
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
 * Scans n bytes of requests a client writes (a connection the process
 * opened). Stops after a request line (RQ_EV_STATUS), at the start of the
 * blank line ending a head (RQ_EV_BLANK, nothing consumed), after that head
 * (RQ_EV_END: p->xr_have says whether it holds a valid ID header, p->tp_st
 * RQ_TP_SEEN a traceparent), or on a stream that is not HTTP (RQ_EV_DEAD,
 * once). Bodies are skipped by Content-Length or chunked framing; CONNECT
 * ends the scan. Returns the bytes consumed.
 */
size_t rq_oreq_feed(struct rq_hdrs *p, const char *buf, size_t n, enum rq_ev *ev);

/* 1 if the outbound request scanner is right after a request line, before any header. */
int rq_oreq_after_line(const struct rq_hdrs *p);

/* 1 if the request scanner read a valid traceparent whose trace-id digits are at xr + RQ_TP_AT. */
static inline int rq_req_tp(const struct rq_req *r)
{
	return (r->h.tp_st & (RQ_TP_OK | RQ_TP_LOST)) == RQ_TP_OK;
}

/*
 * Accounts for n bytes that passed without being shown (sendfile, splice).
 * They can only be body bytes of a Content-Length or chunk; anywhere else the
 * scanner stops for good.
 */
void rq_hdrs_opaque(struct rq_hdrs *p, uint64_t n);

/* Resets a scanner to the start of a message (a new connection). */
void rq_hdrs_reset(struct rq_hdrs *p);

/* Stops a scanner for good. */
void rq_hdrs_kill(struct rq_hdrs *p);

/* 1 once the scanner has stopped for good. */
int rq_hdrs_dead(const struct rq_hdrs *p);

/* 1 if the response scanner is right after a status line, before any header. */
int rq_resp_after_status(const struct rq_hdrs *p);

/* 1 if the request scanner is between messages (the next byte that is not CR or LF starts one). */
int rq_req_at_start(const struct rq_req *r);

/* 1 if the response scanner is between messages (the next byte starts a head). */
int rq_resp_at_start(const struct rq_hdrs *p);

#endif
