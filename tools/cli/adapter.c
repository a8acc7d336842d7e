#include "adapter.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The runtime named by `name`, or by what it resolves to. */
static enum rq_rt kind(const char *name)
{
	char real[PATH_MAX];
	enum rq_rt rt = rq_rt_kind(name);

	if (!rt && realpath(name, real))
		rt = rq_rt_kind(real);
	return rt;
}

enum rq_rt rc_runtime(const char *path)
{
	char line[256], *p, *tok, *save = NULL;
	enum rq_rt rt = kind(path);
	FILE *f;
	size_t n;

	if (rt || !(f = fopen(path, "r")))
		return rt;
	n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';
	if (n < 2 || line[0] != '#' || line[1] != '!')
		return RQ_RT_NONE;
	line[strcspn(line, "\n")] = '\0';
	p = line + 2;
	if (!(tok = strtok_r(p, " \t", &save)))
		return RQ_RT_NONE;
	if (strcmp(strrchr(tok, '/') ? strrchr(tok, '/') + 1 : tok, "env"))
		return kind(tok);
	while ((tok = strtok_r(NULL, " \t", &save)) && tok[0] == '-')
		;
	return tok ? kind(tok) : RQ_RT_NONE;
}

int rc_adapter(enum rq_rt rt, const char *lib, char *out, size_t size)
{
	char real[PATH_MAX], *slash;
	struct stat st;

	if (!realpath(lib, real) || !(slash = strrchr(real, '/'))) {
		snprintf(out, size, "(next to %s)", lib);
		return -ENOENT;
	}
	*slash = '\0';
	snprintf(out, size, "%s/%s", real, rt == RQ_RT_NODE ? RQ_RT_NODE_JS : RQ_RT_PY_DIR);
	if (stat(out, &st) != 0 || (rt == RQ_RT_NODE ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode)))
		return -ENOENT;
	return 0;
}

int rc_adapters_off(void)
{
	const char *r = getenv("REQCTX_RUNTIMES"), *d = getenv("REQCTX_DISABLE");

	return (r && !strcmp(r, "0")) || (d && !strcmp(d, "1"));
}
