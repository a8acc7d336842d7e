/*
 * Runtime adapters, bootstrapped from the constructor. A Node host gets
 * "--require <dir>/reqctx-adapters/node/reqctx.js" first in NODE_OPTIONS and a Python
 * host gets <dir>/reqctx-adapters/python first in PYTHONPATH, where <dir> is the
 * directory libreqctx.so was loaded from (src/runtime.h). Both runtimes read
 * those variables from __environ after the constructors have run. Nothing
 * happens for other hosts, with REQCTX_RUNTIMES=0 or REQCTX_DISABLE=1, when
 * the adapter is not installed next to the library, or when the variable
 * already names it (a child of a bootstrapped host).
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "preload.h"
#include "runtime.h"

void rq_runtime_start(void);

static void say(const char *fmt, ...)
{
	char buf[PATH_MAX + 256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	RQ_RAW(write, 2, buf, (size_t)n);
}

/* The runtime this process is, by its executable or else its name. */
static enum rq_rt host(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	enum rq_rt rt = RQ_RT_NONE;

	if (n > 0) {
		exe[n] = '\0';
		rt = rq_rt_kind(exe);
	}
	return rt ? rt : rq_rt_kind(program_invocation_short_name);
}

/* The directory libreqctx.so was loaded from, absolute. Returns 0 or -1. */
static int lib_dir(char *dir)
{
	Dl_info di;
	char *slash;

	if (!dladdr((void *)rq_runtime_start, &di) || !di.dli_fname || !realpath(di.dli_fname, dir))
		return -1;
	slash = strrchr(dir, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	return 0;
}

/* Puts the value `make` built into `var`, or says why not. */
static void apply(const char *var, const char *what, int r, const char *val)
{
	if (r == 1 && setenv(var, val, 1) == 0)
		return;
	if (r < 0)
		say("reqctx: the %s adapter %s cannot go into %s (%s); %s runs without it", what,
		    val, var, r == -EINVAL ? "its path has a space, quote or ':'" : "too long", what);
}

void rq_runtime_start(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 64], val[RQ_RT_ENV_MAX];
	enum rq_rt rt;
	struct stat st;
	int r;

	if (!rq_ready() || !rq_cfg.runtimes || !(rt = host()) || lib_dir(dir) < 0)
		return;
	if (rt == RQ_RT_NODE) {
		snprintf(path, sizeof(path), "%s/%s", dir, RQ_RT_NODE_JS);
		if (access(path, R_OK) != 0)
			return;
		r = rq_rt_node_options(getenv("NODE_OPTIONS"), path, val, sizeof(val));
		apply("NODE_OPTIONS", "Node", r, r == 1 ? val : path);
	} else {
		snprintf(path, sizeof(path), "%s/%s", dir, RQ_RT_PY_DIR);
		if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
			return;
		r = rq_rt_pythonpath(getenv("PYTHONPATH"), path, val, sizeof(val));
		apply("PYTHONPATH", "Python", r, r == 1 ? val : path);
	}
}
