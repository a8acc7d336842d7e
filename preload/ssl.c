/*
 * OpenSSL's plaintext entry points, as the host calls them from its dynamic
 * libssl: the plaintext of a TLS connection is scanned and woven into by
 * src/tls.c, and the ciphertext under it passes through untouched.
 *
 * The host may not link libssl at all, or may load it later (Python's _ssl
 * is dlopen'ed at import, with its libssl in a local scope, out of reach of
 * RTLD_NEXT): the real functions are resolved the first time a wrapper runs,
 * from RTLD_NEXT or else from the loaded object whose name says libssl.
 * A host with OpenSSL linked statically never calls these wrappers
 * (reqctx doctor says so).
 */
#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <sys/types.h>

#include "preload.h"
#include "tls.h"

/* OpenSSL's SSL is opaque here, and its prototypes are its ABI (tls.h). */
typedef struct ssl_st SSL;

int SSL_read(SSL *s, void *buf, int num);
int SSL_read_ex(SSL *s, void *buf, size_t num, size_t *got);
int SSL_peek(SSL *s, void *buf, int num);
int SSL_peek_ex(SSL *s, void *buf, size_t num, size_t *got);
int SSL_write(SSL *s, const void *buf, int num);
int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written);
ssize_t SSL_sendfile(SSL *s, int fd, off_t offset, size_t size, int flags);
int SSL_shutdown(SSL *s);
void SSL_free(SSL *s);

static struct {
	int (*read)(SSL *, void *, int);
	int (*read_ex)(SSL *, void *, size_t, size_t *);
	int (*peek)(SSL *, void *, int);
	int (*peek_ex)(SSL *, void *, size_t, size_t *);
	int (*write)(SSL *, const void *, int);
	int (*write_ex)(SSL *, const void *, size_t, size_t *);
	ssize_t (*sendfile)(SSL *, int, off_t, size_t, int);
	void (*free)(SSL *);
	int (*shutdown)(SSL *);
} real;

static _Atomic int resolved; /* 1 once the real functions are known */
static RQ_TLS int inside;    /* a wrapper is running on this thread: nested calls pass */

/* Where to find libssl when RTLD_NEXT does not: the first loaded object named like it. */
static int find_libssl(struct dl_phdr_info *info, size_t size, void *out)
{
	const char *name = info->dlpi_name, *base;

	(void)size;
	if (!name || !*name)
		return 0;
	base = strrchr(name, '/');
	base = base ? base + 1 : name;
	if (strncmp(base, "libssl.so", 9) != 0)
		return 0;
	*(void **)out = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
	return *(void **)out != NULL;
}

/* The real `name`: the next definition after ours, else libssl's own. NULL if none. */
static void *sym(void *lib, const char *name, void *ours)
{
	void *p = dlsym(RTLD_NEXT, name);

	if ((!p || p == ours) && lib)
		p = dlsym(lib, name);
	return p == ours ? NULL : p;
}

/*
 * Resolves the real functions, once they can be (libssl is loaded by then:
 * the caller holds an SSL object). Returns 1 if they are known.
 */
static __attribute__((noinline)) int resolve(void)
{
	void *lib = NULL;

	if (!dlsym(RTLD_NEXT, "SSL_write"))
		dl_iterate_phdr(find_libssl, &lib);
#define R(field, name) \
	__atomic_store_n(&real.field, sym(lib, #name, (void *)name), __ATOMIC_RELAXED)
	R(read, SSL_read);
	R(read_ex, SSL_read_ex);
	R(peek, SSL_peek);
	R(peek_ex, SSL_peek_ex);
	R(write, SSL_write);
	R(write_ex, SSL_write_ex);
	R(sendfile, SSL_sendfile);
	R(free, SSL_free);
	R(shutdown, SSL_shutdown);
#undef R
	rq_ssl.write = (int (*)(void *, const void *, int))real.write;
	rq_ssl.write_ex = (int (*)(void *, const void *, size_t, size_t *))real.write_ex;
	rq_ssl.get_error = (int (*)(const void *, int))sym(lib, "SSL_get_error", NULL);
	rq_ssl.ctrl = (long (*)(void *, int, long, void *))sym(lib, "SSL_ctrl", NULL);
	rq_ssl.get_fd = (int (*)(const void *))sym(lib, "SSL_get_fd", NULL);
	rq_ssl.is_server = (int (*)(const void *))sym(lib, "SSL_is_server", NULL);
	rq_ssl.client_random = (size_t (*)(const void *, unsigned char *, size_t))sym(
		lib, "SSL_get_client_random", NULL);
	rq_ssl.alpn = (void (*)(const void *, const unsigned char **, unsigned *))sym(
		lib, "SSL_get0_alpn_selected", NULL);
	if (lib)
		dlclose(lib); /* (NOLOAD took a reference: libssl stays loaded for its user) */
	if (!real.read || !real.write || !real.free)
		return 0;
	atomic_store_explicit(&resolved, 1, memory_order_release);
	return 1;
}

static inline int known(void)
{
	return likely(atomic_load_explicit(&resolved, memory_order_acquire)) || resolve();
}

/*
 * Whether reqctx takes part in this call: it is ready, not inside one of its
 * own SSL calls, and the SSL object has a connection it tracks (*c, and its
 * write state *t, are then set).
 */
static int tracked(SSL *s, struct rq_conn **c, struct rq_tlsw **t)
{
	if (!rq_ready() || inside || !rq_ssl.get_fd || !rq_ssl.is_server || !rq_ssl.get_error ||
	    !rq_ssl.ctrl)
		return 0;
	RQ_SAVE_ERRNO(*c = rq_tls_conn(s, t));
	return *c != NULL;
}

/* For a wrapper called with no libssl to be found: what OpenSSL returns for a failed call. */
#define NO_LIBSSL (-1)

/* ---- reads ---- */

RQ_EXPORT int SSL_read(SSL *s, void *buf, int num)
{
	struct rq_conn *c;
	struct rq_tlsw *t;
	int r;

	if (unlikely(!known()))
		return NO_LIBSSL;
	if (!tracked(s, &c, &t))
		return real.read(s, buf, num);
	inside = 1;
	r = real.read(s, buf, num);
	inside = 0;
	rq_tls_read(c, buf, r);
	return r;
}

RQ_EXPORT int SSL_read_ex(SSL *s, void *buf, size_t num, size_t *got)
{
	struct rq_conn *c;
	struct rq_tlsw *t;
	int r;

	if (unlikely(!known() || !real.read_ex))
		return 0;
	if (!tracked(s, &c, &t))
		return real.read_ex(s, buf, num, got);
	inside = 1;
	r = real.read_ex(s, buf, num, got);
	inside = 0;
	rq_tls_read(c, buf, r > 0 && got ? (ssize_t)*got : 0);
	return r;
}

/* A peek leaves the bytes to be read again: only the context moves. */
RQ_EXPORT int SSL_peek(SSL *s, void *buf, int num)
{
	struct rq_conn *c;
	struct rq_tlsw *t;
	int r;

	if (unlikely(!known() || !real.peek))
		return NO_LIBSSL;
	if (!tracked(s, &c, &t))
		return real.peek(s, buf, num);
	inside = 1;
	r = real.peek(s, buf, num);
	inside = 0;
	rq_tls_read(c, buf, 0);
	return r;
}

RQ_EXPORT int SSL_peek_ex(SSL *s, void *buf, size_t num, size_t *got)
{
	struct rq_conn *c;
	struct rq_tlsw *t;
	int r;

	if (unlikely(!known() || !real.peek_ex))
		return 0;
	if (!tracked(s, &c, &t))
		return real.peek_ex(s, buf, num, got);
	inside = 1;
	r = real.peek_ex(s, buf, num, got);
	inside = 0;
	rq_tls_read(c, buf, 0);
	return r;
}

/* ---- writes ---- */

RQ_EXPORT int SSL_write(SSL *s, const void *buf, int num)
{
	struct rq_conn *c;
	struct rq_tlsw *t;
	size_t w = 0;
	int r;

	if (unlikely(!known()))
		return NO_LIBSSL;
	if (num <= 0 || !tracked(s, &c, &t))
		return real.write(s, buf, num);
	inside = 1;
	RQ_SAVE_ERRNO(r = rq_tls_write(c, t, s, 0, buf, (size_t)num, &w));
	inside = 0;
	return r > 0 ? (int)w : r;
}

RQ_EXPORT int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written)
{
	struct rq_conn *c;
	struct rq_tlsw *t;
	size_t w = 0;
	int r;

	if (unlikely(!known() || !real.write_ex))
		return 0;
	if (num == 0 || !tracked(s, &c, &t))
		return real.write_ex(s, buf, num, written);
	inside = 1;
	RQ_SAVE_ERRNO(r = rq_tls_write(c, t, s, 1, buf, num, &w));
	inside = 0;
	if (r > 0 && written)
		*written = w;
	return r;
}

/* kTLS: file bytes the scanner cannot see, body bytes of the response being written. */
RQ_EXPORT ssize_t SSL_sendfile(SSL *s, int fd, off_t offset, size_t size, int flags)
{
	struct rq_conn *c;
	struct rq_tlsw *t;
	ssize_t r;

	if (unlikely(!known() || !real.sendfile))
		return NO_LIBSSL;
	if (!tracked(s, &c, &t))
		return real.sendfile(s, fd, offset, size, flags);
	inside = 1;
	r = real.sendfile(s, fd, offset, size, flags);
	inside = 0;
	RQ_SAVE_ERRNO(rq_tls_sent_file(c, t, r));
	return r;
}

/* ---- the connection's end ---- */

RQ_EXPORT int SSL_shutdown(SSL *s)
{
	if (unlikely(!known() || !real.shutdown))
		return NO_LIBSSL;
	if (rq_ready() && !inside && s && rq_ssl.get_fd)
		RQ_SAVE_ERRNO(rq_tls_shutdown(s));
	return real.shutdown(s);
}

RQ_EXPORT void SSL_free(SSL *s)
{
	if (unlikely(!known()))
		return;
	if (rq_ready() && !inside && s && rq_ssl.get_fd)
		RQ_SAVE_ERRNO(rq_tls_free(s));
	real.free(s);
}
