#include "runtime.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *base(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

enum rq_rt rq_rt_kind(const char *name)
{
	const char *b = base(name);

	if (!strcmp(b, "node") || !strcmp(b, "nodejs"))
		return RQ_RT_NODE;
	if (strncmp(b, "python", 6))
		return RQ_RT_NONE;
	for (b += 6; *b; b++)
		if (!((*b >= '0' && *b <= '9') || *b == '.'))
			return RQ_RT_NONE;
	return RQ_RT_PYTHON;
}

const char *rq_rt_name(enum rq_rt rt)
{
	return rt == RQ_RT_NODE ? "node" : rt == RQ_RT_PYTHON ? "python" : "none";
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Returns 1 if the white-space-separated list `opts` has the token `tok` (or --require=tok). */
static int has_token(const char *opts, const char *tok)
{
	size_t n = strlen(tok);

	for (const char *p = opts; *p;) {
		size_t k;

		while (is_space(*p))
			p++;
		for (k = 0; p[k] && !is_space(p[k]); k++)
			;
		if ((k == n && !memcmp(p, tok, n)) ||
		    (k == n + 10 && !memcmp(p, "--require=", 10) && !memcmp(p + 10, tok, n)))
			return 1;
		p += k;
	}
	return 0;
}

int rq_rt_node_options(const char *old, const char *js, char *out, size_t size)
{
	int n;

	if (js[0] != '/' || strpbrk(js, " \t\n\r\v\f\"'\\"))
		return -EINVAL;
	if (old && has_token(old, js))
		return 0;
	n = snprintf(out, size, "--require %s%s%s", js, old && *old ? " " : "", old ? old : "");
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 1;
}

int rq_rt_pythonpath(const char *old, const char *dir, char *out, size_t size)
{
	size_t n = strlen(dir);
	int w;

	if (dir[0] != '/' || strchr(dir, ':'))
		return -EINVAL;
	for (const char *p = old; p && *p;) {
		size_t k = strcspn(p, ":");

		if (k == n && !memcmp(p, dir, n))
			return 0;
		p += k + (p[k] == ':');
	}
	w = snprintf(out, size, "%s%s%s", dir, old && *old ? ":" : "", old ? old : "");
	return w < 0 || (size_t)w >= size ? -ENAMETOOLONG : 1;
}
