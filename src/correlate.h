/*
 * Batched log correlation: a bounded, process-wide ring of recently
 * completed requests, and a matcher that finds the request a log line names.
 *
 * Servers that buffer their access log (nginx `access_log ... buffer=`,
 * Apache `BufferedLogs On`) write many requests' lines in one call, in the
 * context of whichever request or timer flushes the buffer. Each such line
 * names its request by its request line, "METHOD target HTTP/x.y", usually
 * with the status right after it. When a request completes, the connection
 * code records it here; when a log line starts, the write path asks the
 * matcher which completed request the line names and, if one does, prefixes
 * the line with that request's ID instead of the current one.
 *
 * What is stored: for each completed request, a 64-bit keyed hash (SipHash-1-3
 * with a per-process random key) and the length of its request line, the
 * status its response carried (0: unknown), its completion order, its ID and
 * serial, and whether a line has been matched to it. Not the line itself: two
 * request lines are taken as equal when length and hash agree, and the key
 * keeps anyone from crafting a line that collides with another; a chance
 * collision needs 2^64 / 4096 tries.
 *
 * Matching a line: the matcher looks for "P/" (of "HTTP/") with SSE2 (eight
 * bytes at a time without it), and only there checks for a request line
 * backwards (a space, a target without spaces, a space, 1-32 of A-Z, '-' and
 * '_' starting with a letter, after the line start or a byte that is not a
 * letter, digit, '-' or '_') and forwards (HTTP/ then a digit, optionally '.'
 * and a digit, then the end or a byte that is not a letter, digit, '.' or
 * '/'). It takes the first such request line in the line's first
 * RQ_CORR_SCAN bytes, quoted (combined log format, nginx's `request: "..."`)
 * or not ($request in the middle of a custom format). A status shows when the
 * request line is followed by an optional '"', one space, and three digits
 * 100-599 not followed by a digit. The line's request line is then matched
 * against the ring: among the completed requests with the same request line
 * (and the same status, when both are known) that no line has been matched
 * to yet, the oldest completed one wins, unless `prefer` names one of them
 * (see rq_corr_take). It is marked matched, so the next line naming the same
 * request line gets the next one: access logs are written in completion
 * order. A line that names no request line, or none in the ring, is left to
 * the caller (today's rule: the ID current at the write).
 *
 * When it is wrong:
 * - Two requests with identical request lines (and statuses) whose lines are
 *   written in another order than they completed, e.g. two in one batch that
 *   completed in one order and were logged in the other (a server that logs
 *   before the response is out, or on another thread). They swap IDs.
 * - A completed request whose line never reaches a log with its request line
 *   (a location with `access_log off`, a line written to syslog or another
 *   process) stays unmatched, and the next line naming the same request line
 *   and status takes its ID; the lines after that then shift by one until the
 *   ring wraps or a line matches its own request through `prefer`. The same
 *   holds for a request logged twice (two access logs, or an error-log line
 *   naming it after it completed): the second line takes a later request's
 *   ID.
 * - A log that rewrites the request line (nginx escapes '"', '\' and
 *   non-printable bytes as \xHH) does not match, and keeps today's rule.
 * - A line whose request line is cut by the end of the write at the line's
 *   start: the decision is made when the line starts, with the bytes of it in
 *   that write, because the prefix goes out with them.
 * - More than RQ_CORR_WALK completed requests in one index bucket newer than
 *   the oldest unmatched one, when the quick way (below) is not available (in
 *   practice: more than 1024 identical request lines completed and not yet
 *   logged): the oldest are not found.
 *
 * Memory: a static ring of RQ_CORR_RING entries of 176 bytes,
 * RQ_CORR_BUCKETS index buckets of 16 bytes and RQ_CORR_LIVE entries of 24
 * bytes for the requests being served, 864 KiB in all, in zero pages that
 * the kernel maps only as requests come (a process that serves no requests
 * pays nothing). Nothing grows with traffic.
 *
 * Concurrency: any number of threads may record and match at once, with no
 * lock and no allocation; everything here is async-signal-safe. Each entry is
 * guarded by a seqlock whose sequence is its tag (order and matched bit), and
 * a match is a compare-and-swap of the tag. Each index bucket is a chain of
 * entries linked newest to oldest, with a "floor": an entry from which on
 * (older) every entry is known to be matched. Each writer also leaves a
 * forward link in the entry before its own; a line with no `prefer` follows
 * those from the floor, so that taking the oldest unmatched entry costs one
 * step when lines are written in completion order, however many identical
 * request lines wait. A missing link (no floor yet, or a writer between
 * publishing and linking) falls back to the walk from the newest entry.
 *
 * Requests still being served: a second table, indexed by serial, holds
 * the request-line key of each request read (rq_corr_begin), and whether it
 * completed or a line was given its ID before it did. rq_corr_line, the
 * write path's one call, uses it for the rules about the current request:
 * - a line written while the current request is in progress and naming
 *   that request's own request line is about it: a line alone in its write
 *   without a status (an error-log line) keeps the current ID and takes
 *   nothing; one showing a status (an access line) first takes the oldest
 *   unmatched completed request with that line and status, if any (the
 *   previous request's line, written after the next one was read), and
 *   otherwise keeps the current ID and marks the request logged, so that
 *   its completion is recorded matched (a server that logs before its
 *   response goes out, as Python's http.server does, leaves nothing behind);
 * - any other line takes the matching completed request, preferring the
 *   current one when the line is alone in its write.
 * A request whose entry was overwritten (RQ_CORR_LIVE requests read after
 * it while it was still in progress) is taken for one that is not current.
 *
 * Integration (connection and write paths, not here):
 * - At start-up, rq_corr_init() once (before any hash), if REQCTX_CORRELATE
 *   (rq_cfg.correlate) is on.
 * - While the request scanner reads a request line, hash it with
 *   rq_corr_hash_* (streaming: a request line split across reads hashes the
 *   same), exactly "METHOD SP target SP HTTP/x.y" without CRLF, and, when
 *   its head is complete, rq_corr_begin(&rq_corr_ring, serial, key).
 * - When a response has gone out whole, its last body byte included (that is
 *   the order servers log in; the status comes from the response scanner),
 *   rq_corr_done(&rq_corr_ring, key, status, serial, id, len).
 * - At each line start on a log stream, before choosing the prefix,
 *   rq_corr_line(&rq_corr_ring, line, bytes of it in this write, current
 *   context, whether the write holds this line only, &ctx); on 1, ctx's ID
 *   goes where the format puts it in this line. rq_corr_on() tells whether
 *   to ask at all.
 */
#ifndef RQ_CORRELATE_H
#define RQ_CORRELATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "config.h"
#include "ctx.h"

#define RQ_CORR_RING    4096  /* completed requests remembered (a power of two) */
#define RQ_CORR_BUCKETS 4096  /* index buckets (a power of two) */
#define RQ_CORR_WALK    1024  /* entries looked at per match, at most */
#define RQ_CORR_SCAN    16384 /* bytes of a log line searched for a request line */
#define RQ_CORR_LIVE    4096  /* requests read whose key is kept, by serial (a power of two) */

/* A request line, as the ring knows it. */
struct rq_corr_key {
	uint64_t hash;
	uint32_t len;
};

/* A request-line hash being computed over pieces. */
struct rq_corr_hasher {
	uint64_t v[4];
	uint64_t tail; /* the last len % 8 bytes */
	uint32_t len;
};

struct rq_corr_ent {
	_Atomic uint64_t tag;    /* 2 * order, +1 once matched; 1 while written; 0 never */
	_Atomic uint64_t hash;
	_Atomic uint64_t meta;   /* request-line length << 32 | status << 16 | ID length */
	_Atomic uint64_t prev;   /* order of the bucket's entry before this one, 0: none */
	_Atomic uint64_t next;   /* order of the one after it, 0: none yet (a hint, see fwd) */
	_Atomic uint64_t serial;
	_Atomic uint64_t w[RQ_SLOT_WORDS];
};

struct rq_corr_bucket {
	_Atomic uint64_t head;  /* order of the bucket's newest entry, 0: none */
	_Atomic uint64_t floor; /* an entry from which on (older) all are matched, 0: none known */
};

/* A request read: its serial and request-line key, and what became of it. */
struct rq_corr_live {
	_Atomic uint64_t state; /* serial << 2 | RQ_CORR_DONE | RQ_CORR_LOGGED; 0 while written */
	_Atomic uint64_t hash;
	_Atomic uint64_t len;
};

#define RQ_CORR_DONE   1u /* its response went out whole */
#define RQ_CORR_LOGGED 2u /* a line got its ID before that: record it matched */

struct rq_corr {
	_Atomic uint64_t next;  /* orders handed out; the first is 1 */
	_Atomic uint64_t begun; /* requests recorded with rq_corr_begin */
	struct rq_corr_bucket b[RQ_CORR_BUCKETS];
	struct rq_corr_ent e[RQ_CORR_RING];
	struct rq_corr_live l[RQ_CORR_LIVE];
};

/* The process's ring (zeroed: empty). */
extern struct rq_corr rq_corr_ring;

/* Draws the process's hash key. Once, before any hash; without it the key is 0. */
void rq_corr_init(void);

/*
 * A request line's key over any number of pieces: init, add each piece as it
 * is read, end (h is left as it was: more may be added). Any split of the
 * same bytes gives the same key.
 */
void rq_corr_hash_init(struct rq_corr_hasher *h);
void rq_corr_hash_add(struct rq_corr_hasher *h, const char *s, size_t n);
struct rq_corr_key rq_corr_hash_end(const struct rq_corr_hasher *h);

/* The key of the n bytes at s, as the three calls above would give it. */
struct rq_corr_key rq_corr_key_of(const char *s, size_t n);

/*
 * A request was read (its head is complete): its serial and request line's
 * key. A key of length 0 records nothing.
 */
void rq_corr_begin(struct rq_corr *r, uint64_t serial, struct rq_corr_key k);

/*
 * The key of request `serial` and its RQ_CORR_* flags, if the table still
 * holds it: returns 1, or 0.
 */
int rq_corr_live_get(struct rq_corr *r, uint64_t serial, struct rq_corr_key *k, unsigned *flags);

/*
 * Records a completed request: its request line's key, the status its
 * response carried (0 if unknown), its serial and ID. An invalid ID (id.h)
 * is not recorded. Overwrites the oldest entry once the ring is full. A
 * request marked logged (above) is recorded as matched already.
 */
void rq_corr_done(struct rq_corr *r, struct rq_corr_key k, unsigned status, uint64_t serial,
		  const char *id, uint32_t len);

/* A request line found in a log line. */
struct rq_corr_found {
	struct rq_corr_key key;
	unsigned status; /* shown right after it, or 0 */
	size_t at, len;  /* where it is in the line */
};

/*
 * Finds the first request line in the n bytes at s (a log line, or as much
 * of it as there is; at most RQ_CORR_SCAN are searched). Returns 1 and fills
 * f, or 0.
 */
int rq_corr_find(const char *s, size_t n, struct rq_corr_found *f);

/*
 * Takes the completed request with key k (and status, unless 0) that no line
 * was matched to: the one whose serial is `prefer` if it is among them, else
 * the oldest. Marks it matched and copies its serial and ID into out.
 * Returns 1, or 0 if there is none.
 */
int rq_corr_take(struct rq_corr *r, struct rq_corr_key k, unsigned status, uint64_t prefer,
		 struct rq_ctx *out);

/*
 * rq_corr_find, then rq_corr_take: the request the log line at s (n bytes of
 * it) names. Returns 1 with out filled, or 0. A line naming no request line
 * costs a search for "P/" and nothing else.
 */
int rq_corr_match(struct rq_corr *r, const char *s, size_t n, uint64_t prefer,
		  struct rq_ctx *out);

/*
 * The write path's decision for a log line starting at s (n bytes of it in
 * this write, its newline excluded), written in context `cur`; `single`: the
 * write holds this line and nothing else. Returns 1 with out filled when the
 * line is to carry out's ID (which may be cur's own), 0 when it keeps
 * today's rule (cur's ID). The rules are at the top of this file. *taken is
 * the order of the ring entry it marked matched (0: none).
 */
int rq_corr_line(struct rq_corr *r, const char *s, size_t n, const struct rq_ctx *cur, int single,
		 struct rq_ctx *out, uint64_t *taken);

/*
 * Gives back the entry of order o, taken (rq_corr_line's *taken) for a line
 * that did not go out after all (a write that failed or was cut before it):
 * the next line naming it can take it again.
 */
void rq_corr_untake(struct rq_corr *r, uint64_t o);

/*
 * The write path's first look at a line, in one pass: the offset of the
 * first newline in s[0..n) (n if none), and in *maybe whether "P/" (of
 * "HTTP/") occurs before it. A line without it names no request line, and
 * costs no more than the search for its end.
 */
#ifdef __SSE2__
/* Newlines (*e) and "P/" starts (returned) among the 16 bytes at s (17 are read). */
static inline unsigned rq_corr_block(const char *s, unsigned *e)
{
	__m128i a = _mm_loadu_si128((const __m128i *)s);
	__m128i b = _mm_loadu_si128((const __m128i *)(s + 1));

	*e = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(a, _mm_set1_epi8('\n')));
	return (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(a, _mm_set1_epi8('P')),
							 _mm_cmpeq_epi8(b, _mm_set1_epi8('/'))));
}
#endif

/*
 * The write path's first look at a line, in one pass: the offset of the
 * first newline in s[0..n) (n if none), and in *maybe whether "P/" (of
 * "HTTP/") occurs before it. A line without it names no request line, and
 * costs no more than the search for its end.
 */
static inline size_t rq_corr_line_end(const char *s, size_t n, int *maybe)
{
	size_t i = 0;
	unsigned e, p, e2, p2;

	*maybe = 0;
#ifdef __SSE2__
	if (n >= 17) {
		size_t last = n - 17; /* the last block whose "P/" test fits */

		for (; i + 16 <= last; i += 32) { /* two blocks a test */
			p = rq_corr_block(s + i, &e);
			p2 = rq_corr_block(s + i + 16, &e2);
			if (e | p | e2 | p2) {
				e |= e2 << 16;
				p |= p2 << 16;
				goto found;
			}
		}
		for (; i <= last; i += 16)
			if (((p = rq_corr_block(s + i, &e)) | e))
				goto found;
		/* the last block, less the bytes seen; the last byte on its own */
		p = rq_corr_block(s + last, &e) >> (i - last);
		e >>= i - last;
		if (!(p | e))
			return s[n - 1] == '\n' ? n - 1 : n;
	found:
		if (e) {
			unsigned k = (unsigned)__builtin_ctz(e);

			*maybe = (p & ((1u << k) - 1)) != 0;
			return i + k;
		}
		{
			const char *q = memchr(s + i, '\n', n - i);

			*maybe = 1;
			return q ? (size_t)(q - s) : n;
		}
	}
#endif
	(void)e;
	(void)p;
	(void)e2;
	(void)p2;
	for (; i < n; i++) {
		if (s[i] == '\n')
			return i;
		if (s[i] == 'P' && i + 1 < n && s[i + 1] == '/')
			*maybe = 1;
	}
	return n;
}

/* Whether log lines are to be matched at all: a request was read with REQCTX_CORRELATE on. */
static inline int rq_corr_on(void)
{
	/* (requests are recorded only with REQCTX_CORRELATE on) */
	return atomic_load_explicit(&rq_corr_ring.begun, memory_order_relaxed) != 0;
}

#endif
