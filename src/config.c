#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "reqctx.h"

struct rq_config rq_cfg;

static const char *(*env)(const char *);
static void (*complain)(const char *);

static void bad(const char *var, const char *val, const char *why, const char *dflt)
{
	char line[512];

	snprintf(line, sizeof(line), "reqctx: %s=\"%.64s%s\" %s; using \"%s\"",
		 var, val, strlen(val) > 64 ? "..." : "", why, dflt);
	complain(line);
}

static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int rq_config_header_ok(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > RQ_HDR_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)v[i]))
			return -EINVAL;
	return 0;
}

static int set_header(const char *v)
{
	size_t n = strlen(v);

	if (rq_config_header_ok(v) < 0)
		return -EINVAL;
	memcpy(rq_cfg.hdr, v, n + 1);
	for (size_t i = 0; i <= n; i++)
		rq_cfg.hdr_lc[i] = (v[i] >= 'A' && v[i] <= 'Z') ? v[i] + 32 : v[i];
	rq_cfg.hdr_len = n;
	return 0;
}

int rq_config_prefix_split(const char *v, struct rq_prefix_parts *out)
{
	size_t len[2] = { 0, 0 };
	char *part[2] = { out->head, out->tail };
	int side = 0;

	for (const char *p = v; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f)
			return -EINVAL;
		if (c == '%') {
			p++;
			if (*p == 's' && side == 0) {
				side = 1;
				continue;
			}
			if (*p != '%')
				return -EINVAL;
		}
		if (len[side] == RQ_PFX_PART)
			return -EINVAL;
		part[side][len[side]++] = *p;
	}
	if (side != 1)
		return -EINVAL;
	out->head[len[0]] = out->tail[len[1]] = '\0';
	out->head_len = len[0];
	out->tail_len = len[1];
	return 0;
}

int rq_config_format_parse(const char *v)
{
	static const char *const names[] = { "prefix", "logfmt", "json", "auto" };

	for (int i = 0; i < 4; i++)
		if (!strcmp(v, names[i]))
			return i;
	return -EINVAL;
}

int rq_config_field_ok(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > RQ_FIELD_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

static int set_format(const char *v)
{
	int f = rq_config_format_parse(v);

	if (f < 0)
		return f;
	rq_cfg.format = f;
	return 0;
}

static int set_field(const char *v)
{
	if (rq_config_field_ok(v) < 0)
		return -EINVAL;
	rq_cfg.field_len = strlen(v);
	memcpy(rq_cfg.field, v, rq_cfg.field_len + 1);
	return 0;
}

static int set_prefix(const char *v)
{
	struct rq_prefix_parts pp;

	if (rq_config_prefix_split(v, &pp) < 0)
		return -EINVAL;
	memcpy(rq_cfg.pfx_head, pp.head, pp.head_len + 1);
	memcpy(rq_cfg.pfx_tail, pp.tail, pp.tail_len + 1);
	rq_cfg.pfx_head_len = pp.head_len;
	rq_cfg.pfx_tail_len = pp.tail_len;
	return 0;
}

int rq_config_globs_split(const char *v, char buf[RQ_GLOBS_BYTES],
			  const char *globs[RQ_GLOBS_MAX], int *nglobs)
{
	size_t n = strlen(v);
	int count = 0;

	if (n >= RQ_GLOBS_BYTES)
		return -EINVAL;
	memcpy(buf, v, n + 1);
	for (char *p = buf, *next; p && *p; p = next) {
		next = strchr(p, ':');
		if (next)
			*next++ = '\0';
		if (!*p)
			continue;
		if (count == RQ_GLOBS_MAX)
			return -EINVAL;
		globs[count++] = p;
	}
	*nglobs = count;
	return 0;
}

static int set_globs(const char *v)
{
	return rq_config_globs_split(v, rq_cfg.glob_buf, rq_cfg.globs, &rq_cfg.nglobs);
}

int rq_config_fds_parse(const char *v, int fds[RQ_LOGFDS_MAX], int *nfds)
{
	int count = 0;

	for (const char *p = v; *p;) {
		char *end;
		long fd = strtol(p, &end, 10);

		if (end == p || fd < 0 || fd > (long)RQ_FD_MAX || count == RQ_LOGFDS_MAX)
			return -EINVAL;
		fds[count++] = (int)fd;
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			return -EINVAL;
		p = end;
	}
	*nfds = count;
	return 0;
}

static int set_logfds(const char *v)
{
	return rq_config_fds_parse(v, rq_cfg.logfds, &rq_cfg.nlogfds);
}

static int set_childfds(const char *v)
{
	return rq_config_fds_parse(v, rq_cfg.childfds, &rq_cfg.nchildfds);
}

/* A port: a number 1-65535, or * (0: any). Returns 0 or -EINVAL. */
static int dest_port(const char *p, unsigned *port)
{
	char *end;
	long v;

	if (!strcmp(p, "*")) {
		*port = 0;
		return 0;
	}
	if (*p < '0' || *p > '9')
		return -EINVAL;
	v = strtol(p, &end, 10);
	if (*end || v < 1 || v > 65535)
		return -EINVAL;
	*port = (unsigned)v;
	return 0;
}

/* An address, a range "a/bits", or a prefix ending in ".*" (IPv4). Returns 0 or -EINVAL. */
static int dest_host(char *h, int family, struct rq_dest *d)
{
	char *slash = strchr(h, '/'), *end;
	unsigned max = family == AF_INET6 ? 128 : 32;
	size_t n = strlen(h);

	if (!strcmp(h, "*")) { /* [*]: any IPv6 address; *: any address */
		d->family = family == AF_INET6 ? AF_INET6 : AF_UNSPEC;
		d->bits = 0;
		return 0;
	}
	d->family = family;
	if (family == AF_INET && !slash && n >= 2 && !strcmp(h + n - 2, ".*")) {
		char full[INET_ADDRSTRLEN + 8];
		unsigned parts = 1;

		h[n - 2] = '\0';
		for (char *q = h; *q; q++)
			parts += *q == '.';
		if (parts > 3 || !*h)
			return -EINVAL;
		snprintf(full, sizeof(full), "%s%s", h, parts == 1 ? ".0.0.0" : parts == 2 ? ".0.0" : ".0");
		d->bits = 8 * parts;
		return inet_pton(AF_INET, full, d->addr) == 1 ? 0 : -EINVAL;
	}
	d->bits = max;
	if (slash) {
		long b;

		*slash = '\0';
		if (slash[1] < '0' || slash[1] > '9')
			return -EINVAL;
		b = strtol(slash + 1, &end, 10);
		if (*end || b < 0 || b > (long)max)
			return -EINVAL;
		d->bits = (unsigned)b;
	}
	return inet_pton(family, h, d->addr) == 1 ? 0 : -EINVAL;
}

/* One pattern (see config.h), NUL-terminated in place. Returns 0 or -EINVAL. */
static int dest_one(char *p, struct rq_dest *d)
{
	char *colon;

	memset(d, 0, sizeof(*d));
	d->family = AF_UNSPEC;
	if (!strncmp(p, "unix:", 5)) {
		d->family = AF_UNIX;
		d->glob = p + 5;
		return *d->glob ? 0 : -EINVAL;
	}
	if (*p == '[') {
		char *close = strchr(p, ']');

		if (!close)
			return -EINVAL;
		*close = '\0';
		if (close[1] && (close[1] != ':' || dest_port(close + 2, &d->port) < 0))
			return -EINVAL;
		return dest_host(p + 1, AF_INET6, d);
	}
	if ((colon = strchr(p, ':'))) {
		*colon = '\0';
		if (dest_port(colon + 1, &d->port) < 0)
			return -EINVAL;
	}
	return *p ? dest_host(p, AF_INET, d) : -EINVAL;
}

int rq_config_dests_parse(const char *v, char buf[RQ_DEST_BYTES], struct rq_dest dest[RQ_DEST_MAX],
			  int *ndest)
{
	size_t n = strlen(v);
	int count = 0;

	if (n >= RQ_DEST_BYTES)
		return -EINVAL;
	memcpy(buf, v, n + 1);
	for (char *p = buf, *next; p && *p; p = next) {
		next = strchr(p, ',');
		if (next)
			*next++ = '\0';
		while (*p == ' ')
			p++;
		for (char *e = p + strlen(p); e > p && e[-1] == ' ';)
			*--e = '\0';
		if (!*p)
			continue;
		if (count == RQ_DEST_MAX || dest_one(p, &dest[count]) < 0)
			return -EINVAL;
		count++;
	}
	*ndest = count;
	return 0;
}

/* Whether the first `bits` bits of a and b agree. */
static int prefix_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole))
		return 0;
	return !rest || !((a[whole] ^ b[whole]) & (0xff00u >> rest));
}

int rq_config_dest_match(const struct rq_dest *dest, int ndest, const void *sa, size_t len)
{
	const struct sockaddr *s = sa;
	unsigned char a[16];
	unsigned port = 0;
	int family;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];

	if (ndest == 0)
		return 1;
	if (len < sizeof(sa_family_t))
		return 0;
	family = s->sa_family;
	if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = sa;

		memcpy(a, &in->sin_addr, 4);
		port = ntohs(in->sin_port);
	} else if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = sa;
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

		port = ntohs(in6->sin6_port);
		if (!memcmp(&in6->sin6_addr, mapped, 12)) { /* ::ffff:a.b.c.d is IPv4 */
			family = AF_INET;
			memcpy(a, (const unsigned char *)&in6->sin6_addr + 12, 4);
		} else {
			memcpy(a, &in6->sin6_addr, 16);
		}
	} else if (family == AF_UNIX) {
		size_t n = len - offsetof(struct sockaddr_un, sun_path);

		if (len <= offsetof(struct sockaddr_un, sun_path))
			return 0;
		if (n >= sizeof(path))
			n = sizeof(path) - 1;
		memcpy(path, ((const struct sockaddr_un *)sa)->sun_path, n);
		path[n] = '\0';
		if (!path[0])
			path[0] = '@'; /* an abstract socket: @name */
	} else {
		return 0;
	}
	for (int i = 0; i < ndest; i++) {
		const struct rq_dest *d = &dest[i];

		if (family == AF_UNIX) {
			if (d->family == AF_UNIX && fnmatch(d->glob, path, 0) == 0)
				return 1;
			continue;
		}
		if (d->family == AF_UNIX || (d->family != AF_UNSPEC && d->family != family))
			continue;
		if (d->port && d->port != port)
			continue;
		if (d->family == AF_UNSPEC || prefix_eq(a, d->addr, d->bits))
			return 1;
	}
	return 0;
}

/* 1 for `on`, 0 for `off`, else -EINVAL. */
static int set_flag(const char *v, const char *off, const char *on)
{
	if (!strcmp(v, on))
		return 1;
	if (!strcmp(v, off))
		return 0;
	return -EINVAL;
}

/* Applies one variable: the environment's value, or the default if unset or bad. */
static void apply(const char *var, const char *dflt, int (*set)(const char *),
		  const char *why)
{
	const char *v = env(var);

	if (v && set(v) == 0)
		return;
	if (v)
		bad(var, v, why, dflt);
	set(dflt);
}

static int set_disable(const char *v)
{
	return (rq_cfg.disabled = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

static int set_echo(const char *v)
{
	return (rq_cfg.echo = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

static int set_handoff(const char *v)
{
	return (rq_cfg.handoff = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

static int set_unknown(const char *v)
{
	return (rq_cfg.bare_unknown = set_flag(v, "prefix", "bare")) < 0 ? -EINVAL : 0;
}

static int set_crash(const char *v)
{
	return (rq_cfg.crash = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

static int set_runtimes(const char *v)
{
	return (rq_cfg.runtimes = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

static int set_correlate(const char *v)
{
	return (rq_cfg.correlate = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

static int set_loop(const char *v)
{
	static const char *const names[] = { "auto", "split", "batch" };

	for (int i = 0; i < 3; i++)
		if (!strcmp(v, names[i]))
			return rq_cfg.loop = i, 0;
	return -1;
}

static int set_propagate(const char *v)
{
	return (rq_cfg.propagate = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

static int set_traceparent(const char *v)
{
	return (rq_cfg.traceparent = set_flag(v, "0", "1")) < 0 ? -EINVAL : 0;
}

/*
 * REQCTX_PROPAGATE_TO limits where IDs go, so a bad list fails closed: it
 * is reported, and no destination gets the ID.
 */
static void load_dests(void)
{
	const char *v = env("REQCTX_PROPAGATE_TO");

	rq_cfg.ndest = 0;
	rq_cfg.dest_none = 0;
	if (!v || rq_config_dests_parse(v, rq_cfg.dest_buf, rq_cfg.dest, &rq_cfg.ndest) == 0)
		return;
	rq_cfg.ndest = 0;
	rq_cfg.dest_none = 1;
	bad("REQCTX_PROPAGATE_TO", v,
	    "is not a comma-separated list of at most 16 address patterns (ADDR[:PORT], "
	    "[ADDR6][:PORT], unix:GLOB)",
	    "no destination");
}

void rq_config_load(const char *(*getenv_fn)(const char *),
		    void (*report)(const char *line))
{
	env = getenv_fn;
	complain = report;
	rq_cfg.gen++;
	apply("REQCTX_DISABLE", "0", set_disable, "is not 0 or 1");
	apply("REQCTX_HEADER", REQCTX_DEFAULT_HEADER, set_header,
	      "is not a header name of 1-64 token characters");
	apply("REQCTX_PREFIX", REQCTX_DEFAULT_PREFIX, set_prefix,
	      "needs exactly one %s, printable characters, %% for a literal %, "
	      "and at most 64 characters on each side");
	apply("REQCTX_FORMAT", "prefix", set_format,
	      "is not \"prefix\", \"logfmt\", \"json\" or \"auto\"");
	apply("REQCTX_FIELD", "request_id", set_field,
	      "is not a field name of 1-64 characters from A-Z a-z 0-9 _ . -");
	apply("REQCTX_LOG_FDS", REQCTX_DEFAULT_LOG_FDS, set_logfds,
	      "is not a comma-separated list of at most 16 fds");
	apply("REQCTX_CHILD_LOG_FDS", "2", set_childfds,
	      "is not a comma-separated list of at most 16 fds");
	apply("REQCTX_LOG_FILES", REQCTX_DEFAULT_LOG_FILES, set_globs,
	      "is not a colon-separated list of at most 16 globs");
	apply("REQCTX_ECHO", "1", set_echo, "is not 0 or 1");
	apply("REQCTX_HANDOFF", "1", set_handoff, "is not 0 or 1");
	apply("REQCTX_UNKNOWN", "prefix", set_unknown, "is not \"prefix\" or \"bare\"");
	apply("REQCTX_CRASH", "1", set_crash, "is not 0 or 1");
	apply("REQCTX_RUNTIMES", "1", set_runtimes, "is not 0 or 1");
	apply("REQCTX_CORRELATE", "1", set_correlate, "is not 0 or 1");
	apply("REQCTX_LOOP", "auto", set_loop, "is not \"auto\", \"split\" or \"batch\"");
	apply("REQCTX_PROPAGATE", "1", set_propagate, "is not 0 or 1");
	apply("REQCTX_TRACEPARENT", "0", set_traceparent, "is not 0 or 1");
	load_dests();
}

int rq_config_is_log_path(const char *path)
{
	for (int i = 0; i < rq_cfg.nglobs; i++)
		if (fnmatch(rq_cfg.globs[i], path, 0) == 0)
			return 1;
	return 0;
}
