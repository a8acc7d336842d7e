/*
 * TLS connections: the plaintext a server reads and writes through OpenSSL
 * (SSL_read, SSL_write and their _ex twins), scanned and woven into as the
 * bytes of a plain socket are (conn.h), while the ciphertext on the fd passes
 * through untouched.
 *
 * Which connection. An SSL object names its connection by its fd (SSL_get_fd,
 * which finds a socket or fd BIO under any filter BIOs): the fd of a
 * connection the server accepted is claimed for TLS (rq_conn_tls_claim) the
 * first time the SSL layer reads or writes it, and from then on its fd-level
 * I/O is ciphertext, left alone. A server-side SSL object with no fd (memory
 * BIOs, as asyncio's SSLObject uses) is keyed by the SSL pointer in a bounded
 * table (RQ_TLS_MEM_MAX), given back at SSL_free, and takes over the
 * connection of the socket its ciphertext comes from: the one whose
 * ClientHello carried the random it answered (SSL_get_client_random), else
 * it gets a connection of its own. A client-side SSL object (SSL_is_server() == 0: an upstream the
 * server talks to) is left alone: its fd is a context carrier as before.
 *
 * Writes. OpenSSL requires that a write which failed with SSL_ERROR_WANT_READ
 * or _WANT_WRITE be retried with the same buffer and length (unless
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), and it returns a count below the
 * length only with SSL_MODE_ENABLE_PARTIAL_WRITE. A planned write (conn.h)
 * goes out as one real write per piece of its layout, in order, each with a
 * pointer that stays the same on a retry: the first RQ_TLS_BOUNCE bytes of
 * the layout (caller bytes and the inserted header) gathered into a bounce
 * buffer the connection keeps until that piece is out, so that a response
 * head and its header go out in one record as without reqctx; then the
 * caller's bytes beyond it, in place. (When no bounce buffer is free, each
 * piece goes on its own, the header from this state's copy.) When a piece's write fails with a retryable error, that piece is
 * owed: everything up to its end is committed as out (OpenSSL has it), the
 * caller's bytes already out are held, and the host's call fails with that
 * error. The host's retry (the same buffer, the same length) writes the owed
 * piece again with the same pointer and length, then the rest of the plan.
 * The host is told a count only when the last real write succeeded: its
 * whole length, or, with partial writes on, the caller bytes out so far. So
 * no byte is lost or doubled, and the host never sees a retry contract of
 * OpenSSL's broken.
 *
 * Concurrency: an SSL object is used by one thread at a time (OpenSSL's
 * rule), and so is its write state. The memory-BIO table is lock-free.
 */
#ifndef RQ_TLS_H
#define RQ_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conn.h"
#include "h2.h"

/* OpenSSL's ABI, stable since 1.1.1 (reqctx does not need its headers). */
#define RQ_SSL_ERROR_WANT_READ       2
#define RQ_SSL_ERROR_WANT_WRITE      3
#define RQ_SSL_ERROR_WANT_X509       4
#define RQ_SSL_ERROR_WANT_ASYNC      9
#define RQ_SSL_ERROR_WANT_ASYNC_JOB  10
#define RQ_SSL_MODE_PARTIAL_WRITE    0x1L /* SSL_MODE_ENABLE_PARTIAL_WRITE */
#define RQ_SSL_CTRL_MODE             33   /* SSL_get_mode() is SSL_ctrl(s, 33, 0, NULL) */

#define RQ_TLS_MEM_MAX    4096  /* server-side SSL objects without an fd tracked at once */
#define RQ_TLS_BOUNCE     16384 /* bytes gathered into one write: one TLS record */
#define RQ_TLS_BOUNCE_MAX 1024  /* bounce buffers at once (writes in progress with a header) */
/* An edit's text written on its own: an HTTP/1 header line, or an HTTP/2 insertion. */
#define RQ_TLS_TEXT (RQ_HDR_LINE > RQ_H2_INS_MAX ? RQ_HDR_LINE : RQ_H2_INS_MAX)

/*
 * The OpenSSL functions reqctx calls itself: the real ones (preload/ssl.c
 * fills the table when libssl is first seen), or fakes in the unit tests.
 */
struct rq_ssl_fns {
	int (*write)(void *ssl, const void *buf, int n);
	int (*write_ex)(void *ssl, const void *buf, size_t n, size_t *written);
	int (*get_error)(const void *ssl, int ret);
	long (*ctrl)(void *ssl, int cmd, long larg, void *parg);
	int (*get_fd)(const void *ssl);
	int (*is_server)(const void *ssl);
	size_t (*client_random)(const void *ssl, unsigned char *out, size_t n);
	void (*alpn)(const void *ssl, const unsigned char **data, unsigned *len);
};

extern struct rq_ssl_fns rq_ssl;

/* A TLS connection's write state (see above). */
struct rq_bounce;

struct rq_tlsw {
	void *ssl;        /* the SSL object whose writes these are */
	uint32_t idx;     /* in the pool */
	struct rq_bounce *bounce; /* the gathered piece being written, or NULL */
	size_t held;      /* caller bytes of the write being retried already out */
	size_t owe_off;   /* the owed piece: caller offset (OWE_CALLER), */
	size_t owe_len;   /* and its length */
	uint8_t owe;      /* 0: none; 1: caller bytes; 2: this state's text; 3: the bounce */
	char text[RQ_TLS_TEXT];
};

/*
 * The connection of SSL object ssl, claimed for TLS if it was not yet, or
 * NULL if reqctx leaves it alone (a client, an fd that is no accepted
 * connection, a memory-BIO table that is full). Its write state is in
 * *tls (NULL if none could be had: then writes pass through unplanned).
 */
struct rq_conn *rq_tls_conn(void *ssl, struct rq_tlsw **tls);

/*
 * After SSL_read/SSL_read_ex on connection c: the r plaintext bytes at buf
 * (r <= 0: none) are scanned, and the connection's current request becomes
 * the thread's context. errno is preserved. A peek passes r = 0.
 */
void rq_tls_read(struct rq_conn *c, const void *buf, ssize_t r);

/*
 * The host's SSL_write_ex (ex = 1) or SSL_write (ex = 0, n <= INT_MAX) of n
 * caller bytes (n > 0) on connection c with write state t (NULL: the call
 * goes out as it is, and the scanner follows it): returns 1 with *written
 * set, or what the last real call of that flavour returned (0 or less;
 * SSL_get_error then says why, as for the host's own call).
 */
int rq_tls_write(struct rq_conn *c, struct rq_tlsw *t, void *ssl, int ex, const void *buf,
		 size_t n, size_t *written);

/*
 * After SSL_sendfile took r plaintext bytes from a file (kTLS): body bytes
 * the scanner cannot see (rq_conn_out_opaque). A write being retried is
 * abandoned (the host broke OpenSSL's rule).
 */
void rq_tls_sent_file(struct rq_conn *c, struct rq_tlsw *t, ssize_t r);

/* SSL_shutdown: the plaintext stream ends; a write being retried is abandoned. */
void rq_tls_shutdown(void *ssl);

/* SSL_free: forgets ssl (a memory-BIO connection is given back). */
void rq_tls_free(void *ssl);

/* Gives a write state back (its connection ended). */
void rq_tls_put(struct rq_tlsw *t);

/* Memory-BIO connections tracked now (tests). */
uint32_t rq_tls_mem_live(void);

#endif
