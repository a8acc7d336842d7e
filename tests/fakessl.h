/*
 * A fake OpenSSL for the TLS write path (test_tls.c, test_h2wire.c) that
 * keeps OpenSSL's rules: records of a set size, SSL_ERROR_WANT_WRITE at any
 * record (again on the retry if asked), a retry that must come with the same
 * buffer and at least the same length (unless ACCEPT_MOVING_WRITE_BUFFER),
 * counts below the length only with ENABLE_PARTIAL_WRITE. The plaintext of
 * every record goes to out, in order.
 *
 * A suite may define FK_OUT_CAP, the bytes out holds (a write past it fails
 * the test), before it includes this. fk_fns() gives the functions for
 * rq_ssl, without ALPN (fk_alpn answers fk_ssl.alpn, for a suite that wants it).
 */
#ifndef RQ_TEST_FAKESSL_H
#define RQ_TEST_FAKESSL_H

#include <criterion/criterion.h>
#include <string.h>

#include "tls.h"

#ifndef FK_OUT_CAP
#define FK_OUT_CAP (1 << 16)
#endif

#define MOVING 0x2L /* SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER */

struct fk_ssl {
	int fd;
	int server;          /* SSL_is_server() */
	long mode;
	size_t rec;          /* record size */
	char out[FK_OUT_CAP]; /* the plaintext of every record written, in order */
	size_t len;
	int pending;         /* a record waits: the next call must be the retry */
	const char *pbuf;
	size_t plen, wnum;   /* the pending call's length and the bytes of it taken */
	long records;        /* records written */
	long want_at;        /* the record (1-based) whose write fails with WANT_WRITE */
	int again;           /* failures on the retry of that record before it goes */
	int fails;
	int err;
	int violations;
	int calls;
	const char *alpn;    /* the protocol ALPN chose, or NULL */
};

static inline int fk_write_ex(void *ssl, const void *buf, size_t n, size_t *w)
{
	struct fk_ssl *s = ssl;
	const char *b = buf;
	size_t off = 0;

	s->calls++;
	*w = 0;
	if (s->pending) {
		if ((!(s->mode & MOVING) && b != s->pbuf) || n < s->plen) {
			s->violations++;
			s->err = 1; /* SSL_ERROR_SSL: "bad write retry" */
			return 0;
		}
		if (s->fails > 0) {
			s->fails--;
			s->err = RQ_SSL_ERROR_WANT_WRITE;
			return 0;
		}
		s->pending = 0;
		off = s->wnum;
		if ((s->mode & RQ_SSL_MODE_PARTIAL_WRITE) || off == n) {
			*w = off;
			return 1;
		}
	}
	while (off < n) {
		size_t take = n - off < s->rec ? n - off : s->rec;

		cr_assert_leq(s->len + take, sizeof(s->out));
		memcpy(s->out + s->len, b + off, take); /* encrypted now, sent now or on the retry */
		s->len += take;
		off += take;
		if (++s->records == s->want_at) {
			s->pending = 1;
			s->pbuf = b;
			s->plen = n;
			s->wnum = off;
			s->fails = s->again;
			s->err = RQ_SSL_ERROR_WANT_WRITE;
			return 0;
		}
		if (s->mode & RQ_SSL_MODE_PARTIAL_WRITE)
			break;
	}
	*w = off;
	return 1;
}

static inline int fk_write(void *ssl, const void *buf, int n)
{
	size_t w;

	return fk_write_ex(ssl, buf, (size_t)n, &w) > 0 ? (int)w : -1;
}

static inline int fk_get_error(const void *ssl, int ret)
{
	return ret > 0 ? 0 : ((const struct fk_ssl *)ssl)->err;
}

static inline long fk_ctrl(void *ssl, int cmd, long larg, void *parg)
{
	(void)larg;
	(void)parg;
	return cmd == RQ_SSL_CTRL_MODE ? ((struct fk_ssl *)ssl)->mode : 0;
}

static inline int fk_get_fd(const void *ssl)
{
	return ((const struct fk_ssl *)ssl)->fd;
}

static inline int fk_is_server(const void *ssl)
{
	return ((const struct fk_ssl *)ssl)->server;
}

static inline void fk_alpn(const void *ssl, const unsigned char **d, unsigned *len)
{
	const char *a = ((const struct fk_ssl *)ssl)->alpn;

	*d = (const unsigned char *)a;
	*len = a ? (unsigned)strlen(a) : 0;
}

/* The fake's functions for rq_ssl (no .alpn). */
static inline struct rq_ssl_fns fk_fns(void)
{
	return (struct rq_ssl_fns){ .write = fk_write, .write_ex = fk_write_ex,
				    .get_error = fk_get_error, .ctrl = fk_ctrl, .get_fd = fk_get_fd,
				    .is_server = fk_is_server };
}

#endif
