#include "tls.h"

#include "out.h"

#include <string.h>

#include "conn.h"
#include "evq.h"
#include "fdtab.h"
#include "out.h"
#include "pool.h"

enum { OWE_NONE, OWE_CALLER, OWE_TEXT, OWE_BOUNCE };

struct rq_bounce {
	uint32_t idx;
	char buf[RQ_TLS_BOUNCE];
};

RQ_POOL_DEFINE(bounces, struct rq_bounce, 4, RQ_TLS_BOUNCE_MAX);

#define MEM_PROBES 64              /* slots a memory-BIO lookup tries */
#define MEM_TOMB   ((void *)1)     /* a slot whose SSL object was freed */

struct rq_ssl_fns rq_ssl;

RQ_POOL_DEFINE(states, struct rq_tlsw, 6, RQ_CONN_MAX);

/* Server-side SSL objects without an fd, and their connections (one reference each). */
struct ment {
	void *_Atomic key;
	struct rq_conn *_Atomic conn;
};

static struct ment *_Atomic mem;
static _Atomic uint32_t mem_live;

_Static_assert((RQ_TLS_MEM_MAX & (RQ_TLS_MEM_MAX - 1)) == 0, "a power of two");

/* ---- which connection ---- */

static uint32_t hash(const void *p)
{
	uint64_t x = (uintptr_t)p;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (uint32_t)x;
}

static struct ment *mem_slot(uint32_t i, int make)
{
	struct ment *m = rq_chunk((void *_Atomic *)&mem, sizeof(struct ment) * RQ_TLS_MEM_MAX, make);

	return m ? &m[i & (RQ_TLS_MEM_MAX - 1)] : NULL;
}

/* The entry of ssl, or NULL. */
static struct ment *mem_find(const void *ssl)
{
	uint32_t h = hash(ssl);

	for (uint32_t i = 0; i < MEM_PROBES; i++) {
		struct ment *m = mem_slot(h + i, 0);
		void *k;

		if (!m)
			return NULL;
		k = atomic_load_explicit(&m->key, memory_order_acquire);
		if (k == ssl)
			return m;
		if (!k)
			return NULL;
	}
	return NULL;
}

/*
 * ClientHellos read on connections waiting for their SSL object, by their
 * random: a direct-mapped table of RQ_TLS_MEM_MAX entries (a collision only
 * loses the pairing). An entry is a hint: the connection it names is taken
 * only if it is alive, still waiting, and its own record holds that random.
 */
struct hent {
	_Atomic uint64_t key;
	struct rq_conn *_Atomic conn;
};

static struct hent *_Atomic hellos;

static uint64_t hello_key(const unsigned char r[32])
{
	uint64_t k;

	memcpy(&k, r, sizeof(k));
	return k ? k : 1;
}

static struct hent *hello_slot(uint64_t k, int make)
{
	struct hent *h = rq_chunk((void *_Atomic *)&hellos, sizeof(struct hent) * RQ_TLS_MEM_MAX,
				  make);

	return h ? &h[hash((void *)(uintptr_t)k) & (RQ_TLS_MEM_MAX - 1)] : NULL;
}

void rq_conn_tls_hello(struct rq_conn *c, const unsigned char *b, size_t n)
{
	struct rq_conn_ext *x;
	struct hent *h;
	uint64_t k;

	/* record header (5), handshake type 1 and length (4), version (2), then the random */
	if (n < 43 || b[0] != 0x16 || b[5] != 1 || !(x = rq_conn_ext(c, 1)))
		return;
	memcpy(x->hello, b + 11, 32);
	k = hello_key(x->hello);
	if (!(h = hello_slot(k, 1)))
		return;
	atomic_store_explicit(&h->conn, c, memory_order_relaxed);
	atomic_store_explicit(&h->key, k, memory_order_release);
}

/* Whether ssl has read a ClientHello (its client random is set), as far as can be told. */
static int hello_seen(void *ssl)
{
	static const unsigned char zero[32];
	unsigned char r[32];

	return !rq_ssl.client_random || rq_ssl.client_random(ssl, r, sizeof(r)) != sizeof(r) ||
	       memcmp(r, zero, sizeof(r)) != 0;
}

/* The waiting connection whose ClientHello ssl answered, with a reference taken; or NULL. */
static struct rq_conn *hello_conn(void *ssl)
{
	unsigned char r[32];
	struct rq_conn_ext *x;
	struct rq_conn *c;
	struct hent *h;
	uint64_t k;

	if (!rq_ssl.client_random || rq_ssl.client_random(ssl, r, sizeof(r)) != sizeof(r))
		return NULL;
	k = hello_key(r);
	if (!(h = hello_slot(k, 0)) || atomic_load_explicit(&h->key, memory_order_acquire) != k ||
	    !(c = atomic_load_explicit(&h->conn, memory_order_relaxed)) || rq_conn_ref(c) < 0)
		return NULL;
	if (atomic_load_explicit(&c->xport, memory_order_acquire) != RQ_XP_TLS_WAIT ||
	    !(x = rq_conn_ext(c, 0)) || memcmp(x->hello, r, sizeof(r)) != 0) {
		rq_conn_unref(c); /* given back and reused since, or another's */
		return NULL;
	}
	atomic_store_explicit(&h->key, 0, memory_order_relaxed);
	return c;
}

/* The connection of memory-BIO object ssl, made if it has none. NULL when the table is full. */
static struct rq_conn *mem_conn(void *ssl)
{
	struct ment *m = mem_find(ssl);
	uint32_t h = hash(ssl);
	struct rq_conn *c;

	if (m)
		return atomic_load_explicit(&m->conn, memory_order_acquire);
	if (!hello_seen(ssl))
		return NULL; /* before the handshake read a ClientHello: not yet */
	if (!(c = hello_conn(ssl))) /* the socket its ciphertext comes from, or a new one */
		c = rq_conn_new();
	if (!c)
		return NULL;
	rq_conn_tls_claim(c);
	for (uint32_t i = 0; i < MEM_PROBES; i++) {
		void *k;

		if (!(m = mem_slot(h + i, 1)))
			break;
		k = atomic_load_explicit(&m->key, memory_order_relaxed);
		if ((k == NULL || k == MEM_TOMB) &&
		    atomic_compare_exchange_strong_explicit(&m->key, &k, ssl, memory_order_acq_rel,
							    memory_order_relaxed)) {
			atomic_store_explicit(&m->conn, c, memory_order_release);
			atomic_fetch_add_explicit(&mem_live, 1, memory_order_relaxed);
			return c;
		}
	}
	rq_conn_unref(c);
	return NULL;
}

uint32_t rq_tls_mem_live(void)
{
	return atomic_load_explicit(&mem_live, memory_order_relaxed);
}

static void bounce_put(struct rq_tlsw *t)
{
	if (t->bounce) {
		rq_pool_give(&bounces, t->bounce->idx);
		t->bounce = NULL;
	}
}

/* Forgets a write in progress (the host will not retry it). */
static void reset(struct rq_tlsw *t, void *ssl)
{
	bounce_put(t);
	t->ssl = ssl;
	t->held = 0;
	t->owe = OWE_NONE;
	t->owe_off = t->owe_len = 0;
}

/* c's write state for ssl, taken when first needed; NULL if none can be had. */
static struct rq_tlsw *state_of(struct rq_conn *c, void *ssl)
{
	struct rq_conn_ext *x = rq_conn_ext(c, 1);
	struct rq_tlsw *t, *none = NULL;
	uint32_t idx;

	if (!x)
		return NULL;
	t = atomic_load_explicit(&x->tls, memory_order_acquire);
	if (!t) {
		if (!(t = rq_pool_take(&states, &idx)))
			return NULL;
		t->idx = idx;
		t->bounce = NULL;
		reset(t, ssl);
		if (!atomic_compare_exchange_strong_explicit(&x->tls, &none, t, memory_order_acq_rel,
							     memory_order_acquire)) {
			rq_tls_put(t);
			t = none;
		}
	}
	if (t->ssl != ssl)
		reset(t, ssl); /* another SSL object on the same connection */
	return t;
}

void rq_tls_put(struct rq_tlsw *t)
{
	bounce_put(t);
	rq_pool_give(&states, t->idx);
}

/*
 * Before any plaintext is read: a handshake that selected ALPN "h2" makes
 * the connection HTTP/2 from its first byte (its server may write its
 * SETTINGS before it reads the client's preface).
 */
static __attribute__((noinline)) void alpn_check(struct rq_conn *c, void *ssl)
{
	const unsigned char *d = NULL;
	unsigned len = 0;

	rq_ssl.alpn(ssl, &d, &len);
	if (len == 2 && d && d[0] == 'h' && d[1] == '2')
		rq_conn_alpn_h2(c);
}

struct rq_conn *rq_tls_conn(void *ssl, struct rq_tlsw **tls)
{
	int fd = rq_ssl.get_fd(ssl);
	struct rq_conn *c;

	*tls = NULL;
	if (fd >= 0) {
		struct rq_fd *e = rq_fd_peek(fd);
		uint32_t fl = rq_fd_flags(e);

		if (!(fl & RQ_FD_CONNS) || !(c = rq_fd_conn(e)))
			return NULL; /* a client's (a carrier), or untracked */
		if (fl == RQ_FD_CONN) { /* not yet this fd's ciphertext */
			if (atomic_load_explicit(&c->xport, memory_order_acquire) != RQ_XP_TLS) {
				if (rq_conn_outbound(c) ? rq_ssl.is_server(ssl) : !rq_ssl.is_server(ssl))
					return NULL;
				if (rq_conn_outbound(c))
					rq_out_tls_claim(c); /* an upstream: its requests are the plaintext */
				else
					rq_conn_tls_claim(c);
			}
			atomic_store_explicit(&e->flags, RQ_FD_CIPHER, memory_order_release);
		}
		rq_evq_touch(fd); /* I/O that sets the fd's context, as the read under it would */
	} else if (!rq_ssl.is_server(ssl) || !(c = mem_conn(ssl))) {
		return NULL;
	}
	if (unlikely(!rq_conn_fed(c)) && rq_ssl.alpn && rq_conn_proto(c) == RQ_PR_HTTP1)
		alpn_check(c, ssl);
	*tls = state_of(c, ssl);
	return c;
}

/* ---- reads ---- */

void rq_tls_read(struct rq_conn *c, const void *buf, ssize_t r)
{
	struct iovec v = { (void *)buf, r > 0 ? (size_t)r : 0 };

	rq_conn_feed(c, &v, 1, v.iov_len);
}

/* ---- writes ---- */

static int retryable(int err)
{
	return err == RQ_SSL_ERROR_WANT_READ || err == RQ_SSL_ERROR_WANT_WRITE ||
	       err == RQ_SSL_ERROR_WANT_X509 || err == RQ_SSL_ERROR_WANT_ASYNC ||
	       err == RQ_SSL_ERROR_WANT_ASYNC_JOB;
}

/*
 * One real write of len bytes at p, of the host's flavour: 1 with *w the
 * bytes taken, or the real call's own return value (0 or less).
 */
static int put(void *ssl, int ex, const void *p, size_t len, size_t *w)
{
	int r;

	*w = 0;
	if (ex)
		return rq_ssl.write_ex(ssl, p, len, w);
	if ((r = rq_ssl.write(ssl, p, (int)len)) <= 0)
		return r;
	*w = (size_t)r;
	return 1;
}

/*
 * Writes the owed piece, at the pointer its first write used. Returns 1 once
 * it is all out, or the failing write's return value (it is still owed, from
 * where the last write that succeeded left it).
 */
static int pay(struct rq_tlsw *t, void *ssl, int ex, const char *buf)
{
	while (t->owe_len) {
		const char *p = (t->owe == OWE_TEXT ? t->text
				 : t->owe == OWE_BOUNCE ? t->bounce->buf : buf) + t->owe_off;
		size_t w = 0;
		int r = put(ssl, ex, p, t->owe_len, &w);

		if (r <= 0)
			return r;
		if (w > t->owe_len)
			w = t->owe_len;
		t->owe_off += w;
		t->owe_len -= w;
	}
	if (t->owe == OWE_BOUNCE)
		bounce_put(t);
	t->owe = OWE_NONE;
	return 1;
}

enum { P_CALLER, P_TEXT, P_BOUNCE };

struct piece {
	const char *at;
	size_t len;
	int kind;
};

/*
 * The pieces of a write of layout w, in wire order: its first RQ_TLS_BOUNCE
 * bytes gathered into a bounce buffer (t->bounce) when it holds an inserted
 * header and a buffer is free (a header goes into it whole or not at all),
 * then the rest as it is. Returns how many.
 */
static int gather(struct rq_tlsw *t, const struct rq_wire *w, struct piece *out)
{
	uint32_t idx;
	size_t used = 0;
	int n = 0, i = 0, text = 0;

	for (int k = 0; k < w->n; k++)
		text |= w->ed[k] >= 0;
	if (text && (t->bounce = rq_pool_take(&bounces, &idx))) {
		t->bounce->idx = idx;
		for (; i < w->n; i++) {
			const char *at = w->iov[i].iov_base;
			size_t len = w->iov[i].iov_len, room = RQ_TLS_BOUNCE - used;

			if (len > room && w->ed[i] >= 0)
				break;
			memcpy(t->bounce->buf + used, at, len < room ? len : room);
			used += len < room ? len : room;
			if (len > room) { /* the rest of these caller bytes go in place */
				out[1] = (struct piece){ at + room, len - room, P_CALLER };
				n = 1;
				i++;
				break;
			}
		}
		out[0] = (struct piece){ t->bounce->buf, used, P_BOUNCE };
		n++;
	}
	for (; i < w->n; i++)
		out[n++] = (struct piece){ w->iov[i].iov_base, w->iov[i].iov_len,
					   w->ed[i] >= 0 ? P_TEXT : P_CALLER };
	return n;
}

/* A plan's caller position at caller offset `done` of one buffer. */
static void place(struct rq_wplan *p, size_t done)
{
	p->at = (struct rq_wpos){ done, 0, done };
}

int rq_tls_write(struct rq_conn *c, struct rq_tlsw *t, void *ssl, int ex, const void *buf,
		 size_t n, size_t *written)
{
	struct iovec v = { (void *)buf, n };
	struct rq_wplan p;
	size_t done = 0;
	int partial, echo, r;

	if (!t) { /* no write state: the call as it is, followed */
		rq_conn_write_begin(c);
		r = put(ssl, ex, buf, n, written);
		if (r > 0)
			rq_conn_out_seen(c, &v, 1, *written);
		return r;
	}
	if (t->owe) {
		if (t->held > n || (t->owe == OWE_CALLER && t->owe_off + t->owe_len > n)) {
			reset(t, ssl); /* not the retry OpenSSL asks for: start over */
		} else {
			if ((r = pay(t, ssl, ex, buf)) <= 0)
				return r;
			done = t->held;
			t->held = 0;
		}
	}
	partial = (rq_ssl.ctrl(ssl, RQ_SSL_CTRL_MODE, 0, NULL) & RQ_SSL_MODE_PARTIAL_WRITE) != 0;
	echo = rq_conn_write_begin(c);
	place(&p, done);
	while (done < n) {
		struct piece piece[RQ_WIRE_IOV + 1];
		size_t got = 0, took;
		int np = 1, k;

		piece[0] = (struct piece){ (const char *)buf + done, n - done, P_CALLER };
		if (echo)
			rq_conn_plan(c, &v, 1, n, &p);
		if (echo && p.w.n)
			np = gather(t, &p.w, piece);
		for (k = 0; k < np; k++) {
			const char *at = piece[k].at;
			size_t len = piece[k].len, w = 0;
			int kind = piece[k].kind;

			if (kind == P_TEXT) { /* from the state, so that a retry finds it where it was */
				memcpy(t->text, at, len);
				at = t->text;
			}
			r = put(ssl, ex, at, len, &w);
			if (r > 0) {
				got += w < len ? w : len;
				if (kind == P_BOUNCE)
					bounce_put(t);
				if (w < len)
					break; /* a partial write */
				continue;
			}
			if (retryable(rq_ssl.get_error(ssl, r))) {
				/* OpenSSL holds the piece now: it is owed, and counts as out */
				t->owe = kind == P_TEXT ? OWE_TEXT
					 : kind == P_BOUNCE ? OWE_BOUNCE : OWE_CALLER;
				t->owe_off = kind == P_CALLER ? (size_t)(at - (const char *)buf) : 0;
				t->owe_len = len;
				got += len;
				if (kind != P_BOUNCE)
					bounce_put(t);
			} else {
				reset(t, ssl);
			}
			took = echo && got ? rq_conn_commit(c, &p, &v, 1, got) : got;
			if (t->owe)
				t->held = done + took;
			return r;
		}
		bounce_put(t);
		took = echo && got ? rq_conn_commit(c, &p, &v, 1, got) : got;
		if (!echo)
			place(&p, done + took);
		done += took;
		if (k < np && partial && done) {
			*written = done; /* a partial write, as the host asked for */
			return 1;
		}
	}
	*written = n;
	return 1;
}

void rq_tls_sent_file(struct rq_conn *c, struct rq_tlsw *t, ssize_t r)
{
	if (t && t->owe)
		reset(t, t->ssl);
	rq_conn_out_opaque(c, r > 0 ? (size_t)r : 0);
}

/* The write state of ssl's connection, without claiming anything, or NULL. */
static struct rq_tlsw *state_if_any(void *ssl, struct ment **mp)
{
	int fd = rq_ssl.get_fd(ssl);
	struct rq_conn *c = NULL;
	struct rq_conn_ext *x;
	struct rq_tlsw *t;

	*mp = NULL;
	if (fd >= 0) {
		struct rq_fd *e = rq_fd_peek(fd);

		if (rq_fd_flags(e) & RQ_FD_CONNS)
			c = rq_fd_conn(e);
	} else if ((*mp = mem_find(ssl))) {
		c = atomic_load_explicit(&(*mp)->conn, memory_order_acquire);
	}
	if (!c || atomic_load_explicit(&c->xport, memory_order_acquire) != RQ_XP_TLS ||
	    !(x = rq_conn_ext(c, 0)) || !(t = atomic_load_explicit(&x->tls, memory_order_acquire)))
		return NULL;
	return t->ssl == ssl ? t : NULL;
}

void rq_tls_shutdown(void *ssl)
{
	struct ment *m;
	struct rq_tlsw *t = state_if_any(ssl, &m);

	if (t)
		reset(t, ssl);
}

void rq_tls_free(void *ssl)
{
	struct ment *m;
	struct rq_tlsw *t = state_if_any(ssl, &m);
	struct rq_conn *c;

	if (t)
		reset(t, NULL);
	if (!m && !(m = mem_find(ssl)))
		return;
	c = atomic_exchange_explicit(&m->conn, NULL, memory_order_acq_rel);
	atomic_store_explicit(&m->key, MEM_TOMB, memory_order_release);
	if (c) {
		atomic_fetch_sub_explicit(&mem_live, 1, memory_order_relaxed);
		rq_conn_unref(c);
	}
}
