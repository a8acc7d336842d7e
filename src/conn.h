/*
 * A connection and its requests: the one place that knows what a
 * connection is.
 *
 * A connection is an object of its own, taken from a pool (never malloc)
 * when a server accepts a socket. Fds name it (fdtab.h): a dup of the fd
 * names the same connection, so the two fds read and write one stream; the
 * last fd to close gives it back. The module owns its state (struct rq_conn),
 * its initialisation, feeding the request and response scanners (http.h),
 * the request slots and the ring of unanswered requests, the planning of
 * response-header insertions, and rq_conn_enter.
 *
 * What the connection carries is described by two fields:
 *   - the transport (rq_xport): a plain socket; a socket whose first bytes
 *     were a TLS ClientHello, still waiting for its SSL object; or TLS, where
 *     the plaintext comes through the SSL_* wrappers (src/tls.h) and the fd
 *     itself carries ciphertext, which passes through untouched;
 *   - the protocol of the bytes the scanners see (rq_proto): HTTP/1.x today,
 *     with room for HTTP/2 (src/h2.h), FastCGI (src/fcgi.h) and outbound
 *     HTTP/1 (a connection the process opened). The HTTP/1 state is inline:
 *     an idle connection costs sizeof(struct rq_conn) = 1 KiB. Any other
 *     protocol's state, and a TLS connection's write state, is taken lazily
 *     from a bounded pool of its own and named by the connection's extension
 *     record (rq_conn_ext), a table beside the pool touched only by such
 *     connections; past a pool's cap the connection keeps one ID, as for a
 *     stream that is not HTTP.
 *
 * Writes are planned independently of the transport:
 *     rq_conn_write_begin(c)       context, and whether to plan at all
 *     rq_conn_plan(c, iov, .., p)  the caller's bytes with their edits, as a
 *                                  layout of iovecs (p->w)
 *     the transport emits p->w     writev/sendmsg (src/io.c), SSL_write
 *                                  (src/tls.c), ...
 *     rq_conn_commit(c, p, .., r)  r wire bytes went out: the scanner moves
 *                                  on, a cut insertion is remembered; returns
 *                                  the caller's bytes among the r
 * An edit stands `len` bytes of text in for `del` caller bytes at a caller
 * offset (del 0: an insertion). HTTP/1 only inserts; HTTP/2 also replaces a
 * frame's length or flags bytes, FastCGI inserts whole records
 * (rq_fcgi_out_plan): each protocol's planner fills the same edit list, and
 * its commit keeps its own state.
 *
 * Concurrency contract:
 *   - The reader (the thread that reads the connection) owns the request
 *     scanner (rp), `seen` and `fed` (which the writer reads: relaxed atomics),
 *     `lost`, the ring's tail, and fills request slots;
 *     it publishes a queued request by storing `tail` (release) after the
 *     slot and the ring entry are written, and `cur` (release) after that.
 *   - The writer (the thread that writes it) owns the response scanner (ws),
 *     the insertion state (ins_*), `hs`, `done`, and the ring's head; it
 *     frees a slot (clearing its bit in `used`, release) only after it read
 *     it, and moves `head` (release) after that.
 *   - Reader and writer may be two threads at once (one producer, one
 *     consumer). Two threads reading at once, or two writing at once, are a
 *     race in the host too (their bytes interleave); reqctx then never
 *     faults, but a header may be misplaced or left out.
 *   - Slots are seqlocked (ctx.h): any thread may read one at any time and
 *     gets a consistent ID or a retry, never a torn one.
 *   - `echo` and `xport` are read by both sides; each only ever moves one way
 *     for the life of a connection (echo 1 -> 0; plain -> TLS-wait -> TLS)
 *     except when the SSL layer takes the connection over, which it does
 *     from the thread about to read its first plaintext.
 *   - `refs` changes only with atomic read-modify-writes; the object goes
 *     back to the pool when it reaches 0, and a dup only takes a reference
 *     while it is not 0. A thread still using a connection whose last fd
 *     another thread closed (a host race: I/O on a closed fd) may touch the
 *     object after its reuse: memory stays valid (pools are never unmapped),
 *     only that connection's header may suffer.
 *   - Nothing here takes a lock or allocates on the heap; everything is
 *     async-signal-safe except mapping a new chunk (an mmap).
 */
#ifndef RQ_CONN_H
#define RQ_CONN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "ctx.h"
#include "fcgi.h"
#include "http.h"
#include "trace.h"

/*
 * Requests a connection remembers for their responses: RQ_PIPE unanswered at
 * once, of which the first RQ_INLINE live in struct rq_conn itself and the
 * rest in an overflow area of RQ_DEEP_BYTES kept for the connection's pool
 * index, whose pages are touched only as deep as a client goes.
 */
#define RQ_PIPE       64
#define RQ_INLINE     4
#define RQ_DEEP_BYTES 12288 /* 3 pages: RQ_PIPE - RQ_INLINE request slots */
#define RQ_SKIP_MAX   127   /* lost requests counted between two queued ones */
#define RQ_SKIP_LOST  0x80  /* in a ring entry's skip: the framing before it is unknown */
#define RQ_NO_CUR     0xffffffffu /* struct rq_conn.cur: no request yet */
#define RQ_CONN_MAX   RQ_FD_MAX   /* connections at most: each has an fd, or an SSL object */
#define RQ_H2_CONNS   4096        /* HTTP/2 connections tracked at once (README, Limits) */
#define RQ_H2_WIN     64          /* caller iovecs one HTTP/2 plan looks at */

/* How the connection's bytes travel. */
enum rq_xport {
	RQ_XP_PLAIN,    /* the fd carries the protocol's bytes */
	RQ_XP_TLS_WAIT, /* a TLS ClientHello was read on the fd; no SSL object claimed it yet */
	RQ_XP_TLS,      /* plaintext through SSL_* (src/tls.h); the fd carries ciphertext */
};

/* What the scanners see. */
enum rq_proto {
	RQ_PR_HTTP1,     /* HTTP/1.x server side (the inline state) */
	RQ_PR_H2,        /* HTTP/2 server side: state in rq_conn_ext()->proto (src/h2.h) */
	RQ_PR_FCGI_IN,   /* FastCGI server side (src/fcgi.h) */
	RQ_PR_HTTP1_OUT, /* HTTP/1.x client side, a connection the process opened (src/out.h) */
	RQ_PR_FCGI_OUT,  /* FastCGI client side, a connection the process opened (src/out.h) */
};

/* Whether c is a connection the process opened (its writes are requests, its reads replies). */
#define rq_conn_outbound(c) (__atomic_load_n(&(c)->proto, __ATOMIC_RELAXED) >= RQ_PR_HTTP1_OUT)

/*
 * One accepted connection. See the concurrency contract above for who owns
 * which field.
 */
struct rq_conn {
	struct rq_req rp;         /* request scanner */
	struct rq_hdrs ws;        /* response scanner */
	_Atomic uint32_t head;    /* next ring entry to answer */
	_Atomic uint32_t tail;    /* next free ring entry */
	_Atomic uint32_t cur;     /* slot of the connection's current request, or RQ_NO_CUR */
	_Atomic uint8_t seen;     /* a request head was completed (the writer reads it too) */
	_Atomic uint8_t echo;     /* 1 while responses are scanned and the ring answered */
	uint16_t ins_sent;        /* bytes already written of a cut header insertion */
	uint8_t ins_state;        /* 0: no ID header out for the open response head,
				     1: one cut short (ins_sent bytes out), 2: one out */
	uint8_t ins_slot;         /* slot whose ID that insertion carries */
	uint8_t lost;             /* reader: requests not queued since the last one that was */
	uint8_t hs;               /* writer: responses to lost requests since entry head came up */
	uint8_t deep_used;        /* the overflow area has been written */
	_Atomic uint8_t xport;    /* enum rq_xport */
	uint8_t proto;            /* enum rq_proto */
	_Atomic uint8_t fed;      /* the reader has fed the scanner a byte (the writer reads it too) */
	_Atomic uint64_t used;    /* slots holding queued requests, a bit each */
	uint64_t done;            /* writer: serial of the last request answered */
	uint32_t idx;             /* index in the pool (the overflow area and extension) */
	_Atomic uint32_t refs;    /* fds naming the connection, and other holders */
	uint8_t qslot[RQ_PIPE];   /* ring entry -> slot */
	uint8_t qskip[RQ_PIPE];   /* ring entry -> lost requests read just before it (or RQ_SKIP_LOST) */
	struct rq_slot slots[RQ_INLINE];
};

_Static_assert(RQ_PIPE == 64, "the used bitmap is 64 bits");
_Static_assert(sizeof(struct rq_conn) <= 1024, "an idle connection costs 1 KiB (README, Hardening)");
_Static_assert((RQ_PIPE - RQ_INLINE) * sizeof(struct rq_slot) <= RQ_DEEP_BYTES,
	       "the overflow area holds the slots beyond RQ_INLINE");

/*
 * What a connection has beyond HTTP/1, each taken from its own bounded pool
 * when first needed and given back with the connection. NULL: none.
 */
struct rq_conn_ext {
	void *_Atomic proto;       /* the protocol's state (rq_proto other than HTTP/1) */
	struct rq_tlsw *_Atomic tls; /* RQ_XP_TLS: the SSL write state (src/tls.h) */
	unsigned char hello[32];   /* RQ_XP_TLS_WAIT: the ClientHello's random (src/tls.h) */
};

extern char *_Atomic rq_deep_chunks[RQ_CONN_MAX >> 6];

/* Slot p of c (p < RQ_PIPE; anything else, or an overflow area never mapped, is an empty slot). */
static inline struct rq_slot *rq_conn_slot(struct rq_conn *c, uint32_t p)
{
	static struct rq_slot none; /* an overflow area that could not be had: "unknown" */
	char *d;

	if (likely(p < RQ_INLINE))
		return &c->slots[p];
	d = atomic_load_explicit(&rq_deep_chunks[c->idx >> 6], memory_order_acquire);
	return d && p < RQ_PIPE
		? (struct rq_slot *)(d + (size_t)(c->idx & 63) * RQ_DEEP_BYTES) + (p - RQ_INLINE)
		: &none;
}

/* ---- life ---- */

/* A fresh connection with one reference, or NULL (pool at its cap, or no memory). */
struct rq_conn *rq_conn_new(void);

/*
 * Takes another reference, unless the connection has none left (it is being
 * given back): returns 0, or -ENOENT.
 */
int rq_conn_ref(struct rq_conn *c);

/* Drops a reference; the last one gives the connection (and its extensions) back. */
void rq_conn_unref(struct rq_conn *c);

/* c's extension record, mapped if `make` (NULL if absent, or if it cannot be). */
struct rq_conn_ext *rq_conn_ext(struct rq_conn *c, int make);

/* Connections taken and not given back (tests, and the memory bound). */
uint32_t rq_conn_live(void);

/* ---- the thread's context ---- */

/* The connection's current request becomes the thread's context ("unknown" before any). */
void rq_conn_enter(struct rq_conn *c);

/* ---- reads ---- */

/*
 * Feeds the n bytes a server read (from iov) to the request scanner, queues
 * each request it completes, and makes the current request the thread's
 * context. errno is preserved.
 */
void rq_conn_feed(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n);

/* n request bytes went by unseen (splice out of the socket); errno is preserved. */
void rq_conn_feed_opaque(struct rq_conn *c, size_t n);

/*
 * Whether the next bytes read are the connection's first, so that a
 * transport can tell what they are (a TLS ClientHello) before the scanner
 * sees them.
 */
static inline int rq_conn_fresh(const struct rq_conn *c)
{
	return !atomic_load_explicit(&c->fed, memory_order_relaxed);
}

/* The reader has fed c's scanner a byte; a request head was completed (either side may ask). */
static inline int rq_conn_fed(const struct rq_conn *c)
{
	return atomic_load_explicit(&c->fed, memory_order_relaxed);
}

static inline int rq_conn_seen(const struct rq_conn *c)
{
	return atomic_load_explicit(&c->seen, memory_order_relaxed);
}

/*
 * An SSL object of c negotiated ALPN "h2" before any plaintext was read:
 * HTTP/2 from its first byte (src/h2.h). Past the cap of HTTP/2 connections
 * it stays HTTP/1, whose scanner stops at the client preface (one ID).
 */
void rq_conn_alpn_h2(struct rq_conn *c);

/* The protocol of c's bytes (enum rq_proto). */
static inline int rq_conn_proto(const struct rq_conn *c)
{
	return __atomic_load_n(&c->proto, __ATOMIC_ACQUIRE);
}

/*
 * The connection's first bytes were a TLS ClientHello: it waits for an SSL
 * object (src/tls.h). Until one claims it, it has one generated ID, as a
 * stream that is not HTTP, and its bytes pass through.
 */
void rq_conn_tls_wait(struct rq_conn *c);

/*
 * The first n bytes read on c, which waits for its SSL object: the
 * ClientHello's random is kept, so that an SSL object with memory BIOs
 * (src/tls.h) finds the socket its ciphertext comes from.
 */
void rq_conn_tls_hello(struct rq_conn *c, const unsigned char *b, size_t n);

/*
 * An SSL object took the connection over: from now on its scanners see the
 * plaintext, fresh, and the fd's own bytes pass through. The request that was
 * current stays so until the first plaintext request.
 */
void rq_conn_tls_claim(struct rq_conn *c);



/* ---- writes ---- */

#define RQ_EDITS   4  /* edits in one plan: header insertions woven into one system call */
#define RQ_WIRE_IOV 64 /* iovecs in one planned system call (1 KiB of stack) */
#define RQ_HDR_LINE (RQ_HDR_MAX + REQCTX_ID_MAX + 5) /* "Name: id\r\n" at most */

/*
 * An edit of the caller's bytes: `len` bytes of text in place of `del` caller
 * bytes at caller offset `at` (the shape of rq_h2_edit and rq_fcgi_ins). The
 * text lives in the protocol's part of the plan.
 */
struct rq_edit {
	size_t at;        /* caller offset */
	uint32_t del;     /* caller bytes it stands for (0: an insertion) */
	uint16_t len;     /* bytes of text */
	uint16_t sent;    /* of those, already out before this write (a cut one, resumed) */
	const char *text;
};

/* A plan laid out as iovecs: the caller's bytes and the edits' text, in wire order. */
struct rq_wire {
	int n;
	size_t bytes, caller;          /* all bytes, and the caller's among them */
	struct iovec iov[RQ_WIRE_IOV];
	int8_t ed[RQ_WIRE_IOV];        /* -1: caller bytes; else the edit whose text it is */
};

/* HTTP/1's part of a plan: the headers' text, and where the scanner is at the plan's end. */
struct rq_h1_plan {
	struct rq_hdrs s;
	uint32_t h, hs;  /* the writer's ring position */
	int state;       /* ins_state */
	int whole;       /* s, h, hs and state are those at `stop` */
	int up;          /* the plan stops after a 101 that starts h2c */
	uint32_t slot[RQ_EDITS]; /* request whose ID each insertion carries */
	uint16_t st[RQ_PIPE];    /* status of the response answering each ring entry (correlation) */
	char text[RQ_EDITS][RQ_HDR_LINE];
};

/* "Name: id\r\n" and "traceparent: <55>\r\n": what an outbound request head gets at most. */
#define RQ_OUT_LINE (RQ_HDR_LINE + 13 + RQ_TRACEPARENT_LEN + 2)
/* Caller iovecs one outbound FastCGI plan covers: with its insertions, they fit RQ_WIRE_IOV. */
#define RQ_OUT_SUB (RQ_WIRE_IOV - 3 * RQ_FCGI_PLAN_MAX - 2)

/* An outbound connection's part of a plan (src/out.c). */
struct rq_out_plan {
	union {
		struct {
			struct rq_hdrs s; /* HTTP/1: the request scanner at the plan's end */
			int state;        /* ins_state there */
			int whole;        /* s and state are those at `stop` */
			char text[RQ_EDITS][RQ_OUT_LINE];
		};
		struct {
			int m;            /* FastCGI: the caller's iovecs from `at`, */
			struct iovec sub[RQ_OUT_SUB];
			struct rq_fcgi_plan fp; /* and the FastCGI planner's plan of them */
		};
	};
};

/* A position in the caller's iovecs: iov[i] at off, `done` caller bytes from the start. */
struct rq_wpos {
	size_t done;
	int i;
	size_t off;
};

/* One planned system call of a write. */
struct rq_wplan {
	struct rq_wpos at; /* where it starts */
	size_t total;      /* caller bytes of the whole write */
	size_t stop;       /* it covers caller bytes [at.done, stop) */
	int n;             /* edits */
	struct rq_edit ed[RQ_EDITS];
	struct rq_wire w;  /* the layout (w.n == 0 with n == 0: the caller's iovecs as they are) */
	uint8_t h2;        /* planned as HTTP/2 */
	uint8_t held;      /* after a commit: the last caller byte was held back (src/h2.h,
			      `hold`); a write at once may finish what it owes */
	union {
		struct rq_h1_plan h1;
		struct {
			int win; /* caller iovecs the HTTP/2 plan (in the connection) looked at */
		} h2;
		struct rq_out_plan out;
	} u;
};

/* Where a transport's r bytes of a layout end (rq_conn_map). */
struct rq_wcut {
	size_t caller; /* caller bytes written */
	int full;      /* edits written whole (they are in order) */
	int ed;        /* edit the write stopped inside or right after, or -1 */
	size_t sent;   /* bytes of that edit out in all */
};

/*
 * For protocol planners: lays out caller bytes [p->at, p->stop) with p's
 * edits into p->w (edits that do not fit RQ_WIRE_IOV are dropped: p->n
 * shrinks); maps r wire bytes of that layout back to the caller's; moves a
 * position n caller bytes on.
 */
void rq_conn_layout(struct rq_wplan *p, const struct iovec *iov, int iovcnt);
struct rq_wcut rq_conn_map(const struct rq_wplan *p, size_t r);
void rq_wpos_advance(struct rq_wpos *pos, const struct iovec *iov, int iovcnt, size_t n);

/*
 * Before a write on c: the request its next response answers becomes the
 * thread's context. Returns 1 if the write is to be planned, 0 if it goes
 * out as it is (nothing more to call then, not even rq_conn_commit).
 */
int rq_conn_write_begin(struct rq_conn *c);

/*
 * Plans caller bytes from p->at (set by the caller: {0, 0, 0} for a new
 * write, then rq_conn_next) of the `total` in iov: the edits and their
 * layout. Returns the number of edits; with none at the start of a write,
 * nothing is laid out (p->w.n == 0): the caller's own call goes out as it is.
 */
int rq_conn_plan(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t total,
		 struct rq_wplan *p);

/*
 * The transport took `wire` bytes (0 < wire <= what was planned: p->w.bytes,
 * or the caller's bytes from p->at when nothing was laid out). Commits them:
 * returns the caller bytes among them, and moves p->at past those.
 */
size_t rq_conn_commit(struct rq_conn *c, struct rq_wplan *p, const struct iovec *iov,
		      int iovcnt, size_t wire);

/* Whether the plan's bytes are all of what remains of the write (so that a full take ends it). */
static inline int rq_conn_plan_last(const struct rq_wplan *p)
{
	return p->stop == p->total;
}

/*
 * Bytes that reach the wire without being planned (README, "Response
 * header"); errno is preserved by each:
 *   rq_conn_out_opaque  n bytes reqctx cannot see (sendfile, splice): body
 *                       bytes, else no header on the connection again;
 *   rq_conn_out_seen    n bytes of iov that went out as they were (sendmmsg,
 *                       pwritev2): the scanner follows them;
 *   rq_conn_out_unseen  bytes will go out by a way reqctx cannot follow at
 *                       all (stdio on the connection): no header again.
 */
void rq_conn_out_opaque(struct rq_conn *c, size_t n);
void rq_conn_out_seen(struct rq_conn *c, const struct iovec *iov, int iovcnt, size_t n);
void rq_conn_out_unseen(struct rq_conn *c);

/*
 * The rest of a header insertion that a short write cut, which must go out
 * before any byte that is not planned: *text and the return value (its
 * length; 0 if none). rq_conn_cut_sent(c, n) records n more bytes of it out.
 */
size_t rq_conn_cut(struct rq_conn *c, char text[RQ_HDR_LINE], const char **rest);
void rq_conn_cut_sent(struct rq_conn *c, size_t n);

#endif
