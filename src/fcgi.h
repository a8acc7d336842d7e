/*
 * FastCGI (nginx -> php-fpm and the like): request boundaries in the records
 * a FastCGI server reads, and the request-ID param added to the PARAMS a
 * FastCGI client writes. Streaming, allocation-free, any byte split.
 *
 * Records: an 8-byte header {version 1, type, requestId (BE16), contentLength
 * (BE16), paddingLength, reserved}, the content, the padding. A request's
 * PARAMS stream is the concatenation of its PARAMS records' contents, ended by
 * an empty PARAMS record; it holds name-value pairs whose lengths are one byte
 * below 128, else four bytes (big-endian, top bit set). Pairs, and the bytes
 * of one length, may be split across records and reads.
 *
 * The ID param is the configured header mapped the CGI way: "HTTP_", then the
 * header name in upper case with '-' as '_' (X-Request-Id: HTTP_X_REQUEST_ID).
 * Its value is taken like the HTTP header's: spaces and tabs around it are
 * trimmed, the rest must be a valid ID (id.h), the first valid one wins.
 *
 * Inbound (rq_fcgi_in_*): the bytes a server reads from a connection it
 * accepted. Each requestId is a request; up to RQ_FCGI_REQS of them are
 * tracked per connection, each in an entry 0..RQ_FCGI_REQS-1. A
 * BEGIN_REQUEST for a requestId already tracked starts a new request in the
 * same entry (keep-conn reuses requestId 1); for a new requestId it takes a
 * free entry, else the entry whose request began longest ago (beyond the cap,
 * requests share entries: the older request's later records are no longer
 * told apart and leave the current entry as it is). ABORT_REQUEST, STDIN,
 * DATA, GET_VALUES and unknown types are skipped. Anything malformed (a
 * version other than 1, a first record other than an 8-byte BEGIN_REQUEST,
 * BEGIN_REQUEST of another size, an application record with requestId 0, a
 * PARAMS stream ending inside a pair) stops the scanner for the connection
 * for good: RQ_FCGI_EV_DEAD, once.
 *
 * Outbound (rq_fcgi_out_*): the bytes a client writes on a connection it
 * opened. For each request whose PARAMS hold no valid ID param, a whole new
 * PARAMS record carrying "HTTP_X_REQUEST_ID=<id>" is inserted right before
 * the empty PARAMS record that ends the stream: only there is it known that
 * the param is absent, and no record the client wrote changes length. The
 * record is padded to a multiple of 8 bytes, as nginx pads its own. The
 * insertion is made only when that record's 8-byte header is whole within
 * one write and the stream is between pairs; a client that splits that header
 * across its own writes gets nothing added for that request. A request whose
 * PARAMS already carry a valid ID param gets nothing either; one carrying an
 * invalid value gets ours after it (receivers that keep the last value, as
 * php-fpm does, and reqctx, which keeps the first valid one, then agree).
 *
 * Memory: struct rq_fcgi_in is 660 bytes (four 128-byte IDs being read),
 * struct rq_fcgi_out 372 (a cut-short insertion is kept whole); a write's
 * struct rq_fcgi_plan (1.1 KiB) lives on the writer's stack. Nothing grows
 * with traffic: a length of 2^31 costs nothing but counting.
 *
 * Integration (connection code, not here):
 * - Accepted connection whose first byte read is 1 (FCGI_VERSION_1, which no
 *   HTTP/1.x request starts with): feed its reads to rq_fcgi_in_feed instead
 *   of rq_req_feed (the scanner checks the rest of the first record itself).
 *   Keep one struct rq_slot per entry. On RQ_FCGI_EV_BEGIN, the entry's request
 *   has no ID yet; on RQ_FCGI_EV_PARAMS fill the entry's slot with
 *   in->xr[cur] (xr_len bytes) when rq_fcgi_in_id() says there is one, else
 *   with a fresh UUIDv4; after each read (and on RQ_FCGI_EV_RECORD) make the
 *   slot of rq_fcgi_in_cur() current. On RQ_FCGI_EV_DEAD before any request,
 *   fall back to one ID for the connection. The server's writes carry no
 *   response head to insert into: echo nothing on such a connection.
 * - Connection the process connect()ed whose first byte written is 1: keep a
 *   struct rq_fcgi_out; for each write, rq_fcgi_out_plan, lay the bytes out
 *   with rq_fcgi_out_iov (or the io.c planner: the insertions are caller
 *   offsets plus bytes), write, then rq_fcgi_out_commit with what the kernel
 *   took; return the caller bytes it reports (0 only if the write returned
 *   0). If only inserted bytes went out, call again (as io.c does). The ID
 *   callback should give the thread's current request ID, or refuse outside
 *   any request.
 */
#ifndef RQ_FCGI_H
#define RQ_FCGI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "reqctx.h"

#define RQ_FCGI_VERSION 1
#define RQ_FCGI_BEGIN_REQUEST 1
#define RQ_FCGI_ABORT_REQUEST 2
#define RQ_FCGI_END_REQUEST 3
#define RQ_FCGI_PARAMS 4
#define RQ_FCGI_STDIN 5
#define RQ_FCGI_STDOUT 6
#define RQ_FCGI_STDERR 7
#define RQ_FCGI_DATA 8
#define RQ_FCGI_GET_VALUES 9

#define RQ_FCGI_REQS 4 /* requests tracked per connection (multiplexed requestIds) */
#define RQ_FCGI_NAME_MAX (5 + RQ_HDR_MAX) /* "HTTP_" and the header name */
/* Largest inserted record: header, two lengths (the value's may take 4), name, ID, padding. */
#define RQ_FCGI_INS_MAX (8 + 1 + 4 + RQ_FCGI_NAME_MAX + REQCTX_ID_MAX + 7)
#define RQ_FCGI_PLAN_MAX 4 /* insertions planned per write */

/* The name-value reader of one request's PARAMS stream. */
struct rq_fcgi_pairs {
	uint8_t st;     /* P_* in fcgi.c */
	uint8_t nb;     /* bytes read of a four-byte length */
	uint8_t match;  /* the name read so far is the ID param's */
	uint8_t is_id;  /* the value being read is the ID param's */
	uint8_t xr_st;  /* value: 0 before the text, 1 inside, 2 after */
	uint8_t xr_bad; /* the value being read is invalid */
	uint8_t xr_len; /* ID bytes kept (or counted) of the value being read */
	uint32_t nlen, vlen;
	uint32_t left;  /* bytes left of the name or value being read */
};

/* One tracked request. */
struct rq_fcgi_req {
	uint16_t rid;    /* FastCGI requestId; 0: the entry is free */
	uint8_t open;    /* its PARAMS stream has not ended */
	uint8_t xr_have; /* a valid ID param was read */
	uint8_t ins;     /* outbound: our param went out (whole or in part) */
	uint8_t id_len;  /* inbound: length of the kept ID */
	uint32_t age;    /* BEGIN_REQUEST count when it began */
	struct rq_fcgi_pairs pp;
};

/* Record framing and the tracked requests: the part both directions share. */
struct rq_fcgi {
	uint8_t st;      /* R_* in fcgi.c */
	uint8_t hlen;    /* header bytes read */
	uint8_t hdr[8];
	uint8_t type;    /* of the record being read */
	int8_t rec;      /* entry whose PARAMS the record feeds, or -1 */
	int8_t cur;      /* entry of the connection's current request, or -1 */
	uint8_t pad;     /* padding bytes left */
	uint16_t left;   /* content bytes left */
	uint32_t begins; /* BEGIN_REQUEST records seen */
	struct rq_fcgi_req req[RQ_FCGI_REQS];
};

/* What rq_fcgi_in_feed stopped for. */
enum rq_fcgi_ev {
	RQ_FCGI_EV_NONE,   /* consumed everything it was given */
	RQ_FCGI_EV_BEGIN,  /* a request began in entry rq_fcgi_in_cur(); it has no ID yet */
	RQ_FCGI_EV_PARAMS, /* that entry's PARAMS ended: rq_fcgi_in_id() is its ID, or none */
	RQ_FCGI_EV_RECORD, /* the record being read belongs to another entry: rq_fcgi_in_cur() */
	RQ_FCGI_EV_DEAD,   /* malformed: the scanner stopped for good */
};

struct rq_fcgi_in {
	struct rq_fcgi s;
	char xr[RQ_FCGI_REQS][REQCTX_ID_MAX]; /* each entry's ID, while and after it is read */
};

/* 1 if a connection whose first byte is c may be FastCGI (and not HTTP/1.x). */
static inline int rq_fcgi_first(unsigned char c)
{
	return c == RQ_FCGI_VERSION;
}

/* Resets s for a new connection. */
void rq_fcgi_in_init(struct rq_fcgi_in *s);

/*
 * Scans n bytes a FastCGI server read. Stops after each event (see enum
 * rq_fcgi_ev; RQ_FCGI_EV_DEAD once); returns the bytes consumed.
 */
size_t rq_fcgi_in_feed(struct rq_fcgi_in *s, const char *buf, size_t n, enum rq_fcgi_ev *ev);

/* The entry of the connection's current request (that of the last record read), or -1. */
static inline int rq_fcgi_in_cur(const struct rq_fcgi_in *s)
{
	return s->s.cur;
}

/* Entry k's FastCGI requestId. */
static inline unsigned rq_fcgi_in_rid(const struct rq_fcgi_in *s, int k)
{
	return s->s.req[k].rid;
}

/*
 * Entry k's ID from its params: returns its length (1..REQCTX_ID_MAX; the
 * bytes are s->xr[k], not NUL-terminated) or 0 if its PARAMS carried no valid
 * one (or have not ended).
 */
static inline size_t rq_fcgi_in_id(const struct rq_fcgi_in *s, int k)
{
	return s->s.req[k].open ? 0 : s->s.req[k].id_len;
}

/* 1 once the scanner has stopped for good (either direction). */
static inline int rq_fcgi_dead(const struct rq_fcgi *s)
{
	return s->st == 0xff;
}

/* ---- outbound ---- */

/*
 * Gives the ID for requestId rid: writes 1..REQCTX_ID_MAX bytes to id, sets
 * *len and returns 0; or returns -1 for no insertion. A value that is not a
 * valid ID is not inserted.
 */
typedef int (*rq_fcgi_id_fn)(void *arg, unsigned rid, char *id, size_t *len);

struct rq_fcgi_out {
	struct rq_fcgi s;
	uint16_t pend_len;  /* an insertion cut short by the kernel: its length, */
	uint16_t pend_sent; /* the bytes of it already out */
	char pend[RQ_FCGI_INS_MAX];
};

/* One insertion: len - off bytes of text go right before caller byte `at`. */
struct rq_fcgi_ins {
	size_t at;
	uint16_t off; /* bytes of text already out before this write (a cut-short one resumed) */
	uint16_t len;
	uint16_t rid;
	char text[RQ_FCGI_INS_MAX];
};

/* The plan of one write: insertions, and the caller bytes it covers. */
struct rq_fcgi_plan {
	int n;
	size_t upto;  /* caller bytes this plan covers: write no more of them */
	size_t total; /* caller bytes offered */
	struct rq_fcgi_ins ins[RQ_FCGI_PLAN_MAX];
	struct rq_fcgi after; /* the scanner after `upto` bytes, every insertion out */
};

/* Resets o for a new connection. */
void rq_fcgi_out_init(struct rq_fcgi_out *o);

/*
 * Plans one write of the caller's bytes: fills pl (insertions in caller-offset
 * order, a resumed cut-short one first at offset 0) without changing o.
 * Calls id at most once per insertion. If more than RQ_FCGI_PLAN_MAX would be
 * needed, pl->upto stops before the first that does not fit (a short write:
 * the next write plans the rest). Returns pl->n.
 */
int rq_fcgi_out_plan(const struct rq_fcgi_out *o, const struct iovec *iov, int iovcnt,
		     rq_fcgi_id_fn id, void *arg, struct rq_fcgi_plan *pl);

/*
 * Lays out the caller's bytes [0, pl->upto) with pl's insertions into out
 * (at most max entries; if they run out, the layout stops early, which is
 * only a shorter write). Returns the entries used; *bytes gets their total.
 */
int rq_fcgi_out_iov(const struct rq_fcgi_plan *pl, const struct iovec *iov, int iovcnt,
		    struct iovec *out, int max, size_t *bytes);

/*
 * After the write: r is what the kernel took of the laid-out bytes (0 or
 * more; call it for r > 0). Advances o over the caller bytes that went out,
 * remembers an insertion cut short so that the next plan finishes it first,
 * and returns the caller bytes among the r (what the write returns).
 */
size_t rq_fcgi_out_commit(struct rq_fcgi_out *o, const struct iovec *iov, int iovcnt,
			  const struct rq_fcgi_plan *pl, size_t r);

#endif
