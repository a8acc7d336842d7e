#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
}

int rq_config_is_log_path(const char *path)
{
	for (int i = 0; i < rq_cfg.nglobs; i++)
		if (fnmatch(rq_cfg.globs[i], path, 0) == 0)
			return 1;
	return 0;
}
