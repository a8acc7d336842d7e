/*
 * Start-up configuration, read once from the environment.
 *
 *   REQCTX_DISABLE    1: pass everything through untouched (default 0)
 *   REQCTX_HEADER     request/response header carrying the ID (X-Request-Id)
 *   REQCTX_PREFIX     log prefix format, exactly one %s ("[req:%s] ")
 *   REQCTX_FORMAT     what log lines get (src/prefix.h): "prefix" (default),
 *                     "logfmt", "json" or "auto"
 *   REQCTX_FIELD      the ID's key in logfmt and JSON lines ("request_id"):
 *                     1-64 characters from A-Z a-z 0-9 _ . -
 *   REQCTX_LOG_FDS    comma-separated fds that are log streams in a server,
 *                     once it listens or accepts ("1,2"); set explicitly,
 *                     from the start (src/role.h)
 *   REQCTX_CHILD_LOG_FDS  the same, from the start, for programs a server
 *                     starts ("2"): their stdout is usually data that the
 *                     server reads (CGI, $(...)), not a log
 *   REQCTX_LOG_FILES  colon-separated globs: files opened for append whose
 *                     name matches are log streams
 *   REQCTX_ECHO       1: add the header to responses (default), 0: don't
 *   REQCTX_HANDOFF    1: mutex+condvar queues carry the producer's context to
 *                     the consumer (default); 0: they don't
 *   REQCTX_UNKNOWN    "prefix": lines outside requests get [req:unknown]
 *                     (default); "bare": they are left as they are
 *   REQCTX_CRASH      1: report fatal signals with the request ID and a
 *                     backtrace (default); 0: leave them alone
 *   REQCTX_RUNTIMES   1: Node and Python hosts load their runtime adapter
 *                     (default); 0: they don't
 *   REQCTX_CORRELATE  1: a log line written outside its request's context
 *                     that names a recently completed request's request line
 *                     gets that request's ID (default); 0: it doesn't
 *   REQCTX_LOOP       how ready events reach an event loop (evq.h): "auto"
 *                     (default) learns it per epoll instance and per thread,
 *                     "split" hands them out one per call, "batch" all at once
 *   REQCTX_PROPAGATE  1: requests the process sends on connections it opened
 *                     get the ID (default); 0: they don't (src/out.h)
 *   REQCTX_PROPAGATE_TO  comma-separated destination patterns that limit
 *                     propagation (unset or empty: every destination)
 *   REQCTX_TRACEPARENT  1: W3C traceparent in and out (src/trace.h); 0: not
 *                     (default)
 *
 * A bad value is reported in one line on stderr and its default is used.
 */
#ifndef RQ_CONFIG_H
#define RQ_CONFIG_H

#include <stddef.h>

#include "internal.h"

#define RQ_HDR_MAX     64   /* longest header name */
#define RQ_PFX_PART    64   /* longest text before or after %s in the prefix */
#define RQ_GLOBS_MAX   16   /* log-file patterns */
#define RQ_GLOBS_BYTES 1024 /* their total length */
#define RQ_LOGFDS_MAX  16   /* fds named in REQCTX_LOG_FDS */
#define RQ_DEST_MAX    16   /* patterns in REQCTX_PROPAGATE_TO */
#define RQ_DEST_BYTES  1024 /* their total length */
#define RQ_FIELD_MAX   64   /* longest REQCTX_FIELD */

enum rq_loop { RQ_LOOP_AUTO, RQ_LOOP_SPLIT, RQ_LOOP_BATCH }; /* REQCTX_LOOP */
enum rq_fmt { RQ_FMT_PREFIX, RQ_FMT_LOGFMT, RQ_FMT_JSON, RQ_FMT_AUTO }; /* REQCTX_FORMAT */

/*
 * One REQCTX_PROPAGATE_TO pattern: an address range and a port, or a glob
 * of Unix socket paths.
 */
struct rq_dest {
	int family;        /* AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC: any IP address */
	unsigned bits;     /* prefix length of addr that must match */
	unsigned port;     /* 0: any */
	unsigned char addr[16];
	const char *glob;  /* AF_UNIX: fnmatch pattern of the path (in dest_buf) */
};

struct rq_config {
	unsigned gen; /* bumped by every rq_config_load */
	int disabled;
	int echo;
	int handoff;
	int bare_unknown;
	int crash;
	int runtimes;
	int correlate;
	int loop; /* enum rq_loop */
	int propagate;   /* REQCTX_PROPAGATE */
	int traceparent; /* REQCTX_TRACEPARENT */
	int ndest;       /* REQCTX_PROPAGATE_TO patterns; 0: every destination, */
	int dest_none;   /* unless the list was bad: then none */
	struct rq_dest dest[RQ_DEST_MAX];
	char dest_buf[RQ_DEST_BYTES];
	int format; /* enum rq_fmt */
	size_t hdr_len;
	char hdr[RQ_HDR_MAX + 1];    /* as configured, for the response */
	char hdr_lc[RQ_HDR_MAX + 1]; /* lower case, for matching */
	size_t pfx_head_len, pfx_tail_len;
	char pfx_head[RQ_PFX_PART + 1];
	char pfx_tail[RQ_PFX_PART + 1];
	size_t field_len;
	char field[RQ_FIELD_MAX + 1];
	int nglobs;
	const char *globs[RQ_GLOBS_MAX];
	char glob_buf[RQ_GLOBS_BYTES];
	int nlogfds, nchildfds;
	int logfds[RQ_LOGFDS_MAX];
	int childfds[RQ_LOGFDS_MAX];
};

extern struct rq_config rq_cfg;

/*
 * Sets rq_cfg from `getenv_fn` (getenv in production, a table in tests).
 * Each bad value is reported through `report` as one line (without the
 * newline) and replaced by its default. Never fails.
 */
void rq_config_load(const char *(*getenv_fn)(const char *),
		    void (*report)(const char *line));

/* Returns 1 if `path` names a log file by the configured globs, 0 if not. */
int rq_config_is_log_path(const char *path);

/*
 * The rules of the values, shared with the reqctx command (tools/cli), so
 * that it refuses exactly what the library would. Each returns 0, or -EINVAL
 * for a value the library replaces by its default.
 */

/* REQCTX_HEADER: 1 to RQ_HDR_MAX token characters. */
int rq_config_header_ok(const char *v);

/* A prefix format split at its one %s (%% for a literal %). */
struct rq_prefix_parts {
	char head[RQ_PFX_PART + 1];
	char tail[RQ_PFX_PART + 1];
	size_t head_len, tail_len;
};

/* REQCTX_PREFIX: exactly one %s, printable, at most RQ_PFX_PART characters on each side. */
int rq_config_prefix_split(const char *v, struct rq_prefix_parts *out);

/* REQCTX_LOG_FDS, REQCTX_CHILD_LOG_FDS: comma-separated fds, at most RQ_LOGFDS_MAX. */
int rq_config_fds_parse(const char *v, int fds[RQ_LOGFDS_MAX], int *nfds);

/*
 * REQCTX_LOG_FILES: colon-separated globs (empty ones skipped), at most
 * RQ_GLOBS_MAX in fewer than RQ_GLOBS_BYTES bytes; split into buf.
 */
int rq_config_globs_split(const char *v, char buf[RQ_GLOBS_BYTES],
			  const char *globs[RQ_GLOBS_MAX], int *nglobs);

/*
 * REQCTX_PROPAGATE_TO: comma-separated patterns, at most RQ_DEST_MAX in
 * fewer than RQ_DEST_BYTES bytes (globs kept in buf). Each is one of
 *   *                    any IPv4 or IPv6 address, any port
 *   HOST[:PORT]          HOST an IPv4 address, a CIDR range (10.0.0.0/8), an
 *                        address ending in .* (10.*, 192.168.*) or *
 *   [HOST6][:PORT]       HOST6 an IPv6 address or range ([::1], [fd00::/8], [*])
 *   unix:GLOB            a Unix socket path, as fnmatch(3) matches it
 * with PORT a number (1-65535) or *; no PORT: any. Host names cannot be
 * matched (connect() sees an address). Returns 0, or -EINVAL.
 */
int rq_config_dests_parse(const char *v, char buf[RQ_DEST_BYTES], struct rq_dest dest[RQ_DEST_MAX],
			  int *ndest);

/*
 * 1 if the address a socket is connected to (sa, len bytes) matches one of
 * the patterns (every address when there are none), 0 if not.
 */
int rq_config_dest_match(const struct rq_dest *dest, int ndest, const void *sa, size_t len);
/* REQCTX_FORMAT: returns the enum rq_fmt of "prefix", "logfmt", "json" or "auto". */
int rq_config_format_parse(const char *v);

/* REQCTX_FIELD: 1 to RQ_FIELD_MAX characters from A-Z a-z 0-9 _ . - (safe in JSON and logfmt). */
int rq_config_field_ok(const char *v);

#endif
