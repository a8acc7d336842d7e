/*
 * What a log line gets for the current context, and where (REQCTX_FORMAT;
 * README, "Log formats"):
 *
 *   prefix  REQCTX_PREFIX's text before the line: "[req:<id>] ";
 *   logfmt  "<field>=<id> " before the line ("<field>=\"<id>\" " when the ID
 *           has a '=', as logfmt encoders quote it);
 *   json    in a line that is a JSON object, "\"<field>\":\"<id>\"," right
 *           after its opening brace (without the comma when the object is
 *           empty); any other line gets the prefix;
 *   auto    the same as json: JSON lines get the field, the others the prefix.
 *
 * <field> is REQCTX_FIELD (request_id). Lines that already carry what reqctx
 * would put there are left alone: in the prefix format (and the prefix lines
 * of json and auto) a line that starts with exactly the prefix, same ID; in
 * logfmt a line that has the field as a key anywhere; in a JSON line an
 * object that has the field as a top-level key. Outside any request with
 * REQCTX_UNKNOWN=bare, nothing.
 *
 * The decision is taken when the line starts, from the bytes of the call
 * that starts it (rq_prefix_place): a line whose opening (blanks, brace,
 * blanks) or whose key lies beyond those bytes is judged on what they hold.
 *
 * The texts are rendered once per context and configuration into a
 * per-thread cache. Everything here is async-signal-safe: no lock, no
 * allocation; a signal handler that logs while the code it interrupted holds
 * the cache renders into its own buffer.
 */
#ifndef RQ_PREFIX_H
#define RQ_PREFIX_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "ctx.h"
#include "evq.h"
#include "internal.h"

/* Longest text reqctx inserts in a log line (the prefix; a field is shorter). */
#define RQ_INS_MAX (2 * RQ_PFX_PART + REQCTX_ID_MAX + 8)
/* Room for all the texts of one context. */
#define RQ_TEXTS_MAX (2 * RQ_INS_MAX)
/* Most blanks before the brace of a line taken for a JSON object. */
#define RQ_JSON_LEAD 255

_Static_assert(RQ_FIELD_MAX + REQCTX_ID_MAX + 6 <= RQ_INS_MAX, "a field fits where a prefix does");

/* What lines get in the current context. */
struct rq_texts {
	const char *pfx; /* before a line: the prefix, or logfmt's pair */
	size_t plen;     /* 0: nothing (REQCTX_UNKNOWN=bare outside requests) */
	const char *obj; /* json and auto: the member for JSON lines, comma included */
	size_t olen;     /* 0 in the other formats */
};

/* The caller's bytes of one call, from a line start on. */
struct rq_line {
	const struct iovec *iov;
	int iovcnt;
	int i;       /* the line starts at iov[i], at off */
	size_t off;
	size_t left; /* caller bytes from there to the end of the call */
};


/*
 * Renders the current context's line-start text into buf: the prefix, or in
 * logfmt the pair. Returns its length.
 */
size_t rq_prefix_render(char buf[RQ_INS_MAX]);

/*
 * Renders every text of context c (not the current one: a batched log line
 * matched to its request, src/correlate.h) into buf and describes them in t.
 * Returns the bytes of buf used.
 */
size_t rq_prefix_render_ctx(const struct rq_ctx *c, char buf[RQ_TEXTS_MAX], struct rq_texts *t);

/*
 * The current context's texts, from the thread's cache (or rendered into buf
 * when the cache is in use by the code a signal interrupted). Returns a
 * handle to pass to rq_prefix_release (below) when done with them.
 */
const char *rq_prefix_acquire(char buf[RQ_TEXTS_MAX], struct rq_texts *t);

/*
 * What the line starting at ln gets from t, by the configured format:
 * returns the text's length (0: nothing) and sets *text and *at, the caller
 * bytes of the line that go before it (0 but in a JSON line).
 */
size_t rq_prefix_place(const struct rq_texts *t, const struct rq_line *ln, const char **text,
		       size_t *at);

/* The same for a call that holds one whole line, line[0..n), newline included. */
size_t rq_prefix_place_line(const struct rq_texts *t, const char *line, size_t n,
			    const char **text, size_t *at);

/* ---- the thread's cache, inline for the one-line write ---- */

/*
 * The thread's texts, rendered once per context rather than once per line.
 * `busy` keeps a signal handler that logs while the cache is in use from
 * rewriting it under its owner: the handler renders into its own buffer.
 */
struct rq_pfx_cache {
	uint64_t serial;   /* context it was rendered for */
	unsigned cfg_gen;  /* configuration it was rendered with */
	unsigned busy;
	size_t plen, olen; /* plen 0: nothing cached */
	char text[RQ_TEXTS_MAX]; /* the line-start text, then the JSON member */
};

extern RQ_TLS struct rq_pfx_cache rq_pfx_cache;

/* Renders the texts of the context `serial` into the cache. */
void rq_prefix_fill(struct rq_pfx_cache *p, uint64_t serial);

/*
 * Takes the thread's cache (busy until rq_prefix_release), rendering it if
 * the context or the configuration changed: returns the line-start text and
 * its length in *len. NULL if code that the current signal handler
 * interrupted holds it.
 */
/*
 * The thread's cache is named directly, not through a pointer to it: GCC 12's
 * UBSan took such a pointer to initial-exec TLS, inlined, for a null one.
 */
static inline const char *rq_prefix_take(size_t *len)
{
	uint64_t serial = rq_ctx_cur()->serial;

	if (rq_pfx_cache.busy)
		return NULL;
	rq_pfx_cache.busy = 1;
	atomic_signal_fence(memory_order_seq_cst);
	if (unlikely(rq_pfx_cache.serial != serial || rq_pfx_cache.cfg_gen != rq_cfg.gen ||
		     !rq_pfx_cache.plen))
		rq_prefix_fill(&rq_pfx_cache, serial);
	*len = rq_pfx_cache.plen;
	return rq_pfx_cache.text;
}

/* Gives back what rq_prefix_take or rq_prefix_acquire took. */
static inline void rq_prefix_release(const char *handle)
{
	if (handle == rq_pfx_cache.text) {
		atomic_signal_fence(memory_order_seq_cst);
		rq_pfx_cache.busy = 0;
	}
}

/* 1 if lines written now get something (0 outside requests with REQCTX_UNKNOWN=bare). */
static inline int rq_prefix_wanted(void)
{
	rq_evq_use();
	return rq_ctx_cur()->serial != 0 || !rq_cfg.bare_unknown;
}

/* The texts of a cache taken with rq_prefix_take. */
static inline void rq_prefix_texts(struct rq_texts *t)
{
	t->pfx = rq_pfx_cache.text;
	t->plen = rq_pfx_cache.plen;
	t->obj = rq_pfx_cache.text + rq_pfx_cache.plen;
	t->olen = rq_pfx_cache.olen;
}

#endif
