/*
 * Outbound connections: the requests a process sends on sockets it
 * connect()ed carry the ID of the request it is serving.
 *
 * Which sockets. A stream socket the process made (a context carrier,
 * carry.h) and connect()ed, with REQCTX_PROPAGATE=1 and an address that
 * REQCTX_PROPAGATE_TO lets through, becomes a connection of its own
 * (conn.h) whose protocol is decided by its first byte written:
 *   - 1 (FCGI_VERSION_1): FastCGI (RQ_PR_FCGI_OUT). Each request whose
 *     PARAMS hold no valid ID param gets HTTP_X_REQUEST_ID=<id> (the
 *     configured header, the CGI way) in a PARAMS record of its own
 *     (fcgi.h has the rules);
 *   - anything else: HTTP/1.x requests (RQ_PR_HTTP1_OUT). Each request
 *     head without a valid ID header gets "<Header>: <id>\r\n", and, with
 *     REQCTX_TRACEPARENT=1, one without any traceparent header gets
 *     "traceparent: 00-<trace-id>-<span-id>-01\r\n" (trace.h: the trace-id
 *     of the ID, a new span id each time). They go right after the request
 *     line when the head's blank line starts in the write where the request
 *     line ends (or the write starts right after it), else right before that
 *     blank line: the rule of the response echo (README "Response header").
 *     Bodies are skipped by their framing and never touched. A stream that
 *     is not HTTP/1.x (a database protocol) stops the scanner for good and
 *     passes through; a client SSL object on the connection (src/tls.h)
 *     takes it over, and its SSL_write plaintext is planned the same way
 *     (rq_out_tls_claim).
 * The ID is the writing thread's context at the write that takes the
 * insertion, so a reused (keep-alive, pooled) or pipelined connection gives
 * each request its own; outside any request nothing is inserted.
 *
 * Carrier behaviour is kept: every write stores the writer's context in the
 * connection (its slot 0, shared by dups) and every read, or an epoll event
 * for it, restores it, so the reply is read in the context that wrote the
 * request. Writes never make the connection's context the thread's.
 *
 * Writes go through the connection's plan/commit API (conn.h), so short
 * writes, EAGAIN and every transport keep the response echo's guarantees:
 * an insertion cut short is finished, exactly as it started, before any
 * other byte. The state beyond struct rq_conn (a cut insertion's text, the
 * FastCGI scanner) is a struct rq_out of about 700 bytes from a pool of
 * RQ_CONN_MAX, taken at connect(); without one the socket stays a plain
 * carrier.
 */
#ifndef RQ_OUT_H
#define RQ_OUT_H

#include <sys/socket.h>

#include "conn.h"
#include "fcgi.h"

struct rq_out {
	uint32_t idx;       /* in the pool */
	uint8_t started;    /* a byte was written: the protocol is decided */
	uint16_t pend_len;  /* HTTP/1: the text of an insertion cut short */
	char pend[RQ_OUT_LINE];
	struct rq_fcgi_out fc; /* FastCGI */
};

/*
 * After connect() on fd succeeded or went in progress: makes a carrier
 * stream socket an outbound connection if propagation applies to sa (len
 * bytes). Returns 0 (also when it does not apply), or -ENOMEM (fd stays a
 * carrier). errno is preserved.
 */
int rq_out_connect(int fd, const struct sockaddr *sa, socklen_t len);

/* conn.h's calls, for an outbound connection (rq_conn_outbound). */
int rq_out_begin(struct rq_conn *c);
int rq_out_plan(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t total,
		struct rq_wplan *p);
size_t rq_out_commit(struct rq_conn *c, struct rq_wplan *p, const struct iovec *iov, int iovcnt,
		     size_t wire);
void rq_out_opaque(struct rq_conn *c, size_t n);
void rq_out_seen(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n);
void rq_out_unseen(struct rq_conn *c);
size_t rq_out_cut(struct rq_conn *c, char text[RQ_OUT_LINE], const char **rest);
void rq_out_cut_sent(struct rq_conn *c, size_t n);

/*
 * A client SSL object took the connection over (src/tls.h): from now on the
 * scanner sees the plaintext requests of SSL_write, fresh, and the fd's own
 * bytes (ciphertext) pass through.
 */
void rq_out_tls_claim(struct rq_conn *c);

/* Gives back the state of an outbound connection (its last reference went). */
void rq_out_release(void *state);

/* Outbound states taken and not given back (tests). */
uint32_t rq_out_live(void);

#endif
