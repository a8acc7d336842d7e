/*
 * Start-up: resolve the real functions once, read the configuration, mark the
 * log fds. Runs from our constructor, or earlier from the first wrapper that a
 * host calls before our constructor has run (another library's constructor).
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "child.h"
#include "config.h"
#include "correlate.h"
#include "ctx.h"
#include "fdtab.h"
#include "id.h"
#include "preload.h"
#include "role.h"
#include "sys.h"

struct rq_real rq_real;
_Atomic int rq_state; /* enum rq_state */

static RQ_TLS int resolving;
static int env_read; /* the environment was there when the configuration was read */

extern char **environ;

/* Crash reports: the handlers (preload/signals.c) and the threads' alternate stacks (preload/threads.c). */
void rq_crash_start(void);
void rq_threads_init(void);

static const char *env(const char *name)
{
	return getenv(name);
}

static void report(const char *line)
{
	char buf[600];
	size_t n = strlen(line);

	if (n > sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	memcpy(buf, line, n);
	buf[n++] = '\n';
	RQ_RAW(write, 2, buf, n);
}

/* Symbols a glibc may lack; their wrappers cope with NULL. */
static int optional(const char *name)
{
	static const char *const names[] = { "close_range", "closefrom", "fcntl64", "psiginfo",
					     "__open_2", "__open64_2", "__openat_2",
					     "__openat64_2", "recvmmsg", "sendfile64", "splice", "tee",
					     "vmsplice", "copy_file_range", "sendmmsg", "pwritev64v2",
					     "preadv64v2" };

	for (size_t i = 0; i < RQ_ARRAY_LEN(names); i++)
		if (!strcmp(name, names[i]))
			return 1;
	return 0;
}

/* Resolves the real functions. Returns 0, or -ENOSYS if one reqctx needs is missing. */
static int resolve(void)
{
	int missing = 0;

#define RQ_RESOLVE(ret, name, args)                                           \
	rq_real.name = (ret(*) args)dlsym(RTLD_NEXT, #name);                  \
	if (!rq_real.name && !optional(#name))                                \
		missing = 1;
	RQ_REAL_FUNCS(RQ_RESOLVE)
#undef RQ_RESOLVE
	if (rq_resolve_epoll() < 0 || rq_resolve_timers() < 0 || rq_resolve_threads() < 0 ||
	    rq_resolve_exec() < 0)
		missing = 1;
	rq_sys.write = rq_real.write;
	rq_sys.writev = rq_real.writev;
	rq_sys.send = rq_real.send;
	rq_sys.sendto = rq_real.sendto;
	rq_sys.sendmsg = rq_real.sendmsg;
	rq_sys.fwrite_unlocked = rq_real.fwrite_unlocked;
	return missing ? -ENOSYS : 0;
}

static void after_fork_child(void)
{
	rq_id_after_fork();
}

/*
 * Which standard streams are logs (src/role.h). A process heading its tree
 * records itself in REQCTX_TOP_PID as "<pid>:<0|1>"; `serving_flag` points at
 * that last digit inside the environment string setenv made, so that
 * becoming a server later flips it in place: a one-byte store, safe while
 * other threads read the environment, and inherited by every child started
 * from then on, whatever the path (fork+exec, posix_spawn, system, popen).
 */
static char *serving_flag;
_Atomic int rq_serving_now;

/*
 * Marks the open ones of fds as log streams. One that cannot be tracked (no
 * memory for its entry, or beyond the fd limit) passes through unprefixed,
 * and says so once.
 */
static void mark_fds(const int *fds, int n)
{
	char line[96];

	for (int i = 0; i < n; i++) {
		int r;

		if (rq_real.fcntl(fds[i], F_GETFD) < 0 || (r = rq_fd_set_log(fds[i])) == 0)
			continue;
		snprintf(line, sizeof(line),
			 "reqctx: fd %d cannot be tracked (%s); its lines get no prefix", fds[i],
			 strerror(-r));
		report(line);
	}
}

static void record_top(int server)
{
	char buf[32];
	char *v;

	snprintf(buf, sizeof(buf), "%ld:%d", (long)getpid(), server);
	if (setenv("REQCTX_TOP_PID", buf, 1) == 0 && (v = getenv("REQCTX_TOP_PID")) &&
	    !strcmp(v, buf))
		serving_flag = v + strlen(v) - 1;
}

void rq_serving_start(void)
{
	int e = errno;

	if (atomic_exchange(&rq_serving_now, 1))
		return;
	mark_fds(rq_cfg.logfds, rq_cfg.nlogfds);
	if (serving_flag)
		*(volatile char *)serving_flag = '1'; /* one byte: readers see '0' or '1' */
	errno = e;
}

/* A child started in its parent's request starts in it (src/child.h). */
static void adopt_parent(void)
{
	struct rq_ctx c;

	c.len = (uint32_t)rq_child_parent_id(getenv(RQ_PARENT_VAR), c.id);
	if (!c.len)
		return;
	c.serial = rq_serial_next();
	rq_ctx_set(&c);
}

static void start_role(void)
{
	struct rq_role r;

	rq_role_decide(getenv("REQCTX_TOP_PID"), (long)getpid(),
		       getenv("GATEWAY_INTERFACE") != NULL, getenv("REQCTX_LOG_FDS") != NULL, &r);
	if (r.top)
		record_top(r.server);
	if (r.child)
		mark_fds(rq_cfg.childfds, rq_cfg.nchildfds);
	if (r.server)
		rq_serving_start();
	adopt_parent();
}

/*
 * Resolves everything once. Returns 1 if reqctx is ready, 0 if the caller
 * must fall back by itself: the first call is still running (on this thread,
 * re-entered through dlsym's malloc, or on another thread), or reqctx is in
 * pass-through for good (REQCTX_DISABLE=1, or resolution failed).
 */
int rq_init_slow(void)
{
	int expected = RQ_ST_INIT;
	int e = errno;

	if (resolving)
		return 0;
	if (!atomic_compare_exchange_strong(&rq_state, &expected, RQ_ST_RESOLVING))
		return expected == RQ_ST_READY;
	resolving = 1;
	if (resolve() < 0) {
		report("reqctx: libc lacks functions reqctx needs; passing everything through");
		goto pass;
	}
	rq_config_load(env, report);
	if (rq_cfg.disabled)
		goto pass;
	rq_fd_init();
	rq_corr_init(); /* the request-line hash key, before any request is read */
	env_read = environ != NULL;
	if (env_read)
		start_role();
	pthread_atfork(NULL, NULL, after_fork_child);
	rq_threads_init();
	rq_crash_start();
	resolving = 0;
	atomic_store_explicit(&rq_state, RQ_ST_READY, memory_order_release);
	errno = e;
	return 1;
pass:
	resolving = 0;
	atomic_store_explicit(&rq_state, RQ_ST_PASS, memory_order_release);
	errno = e;
	return 0;
}

/*
 * A host's .preinit_array runs before glibc sets environ: a wrapper called
 * from there starts reqctx with no environment to read. The configuration and
 * the roles of the standard streams are then decided again here, once the
 * environment is there; the runtime adapters are bootstrapped after that.
 */
void rq_runtime_start(void); /* preload/runtime.c */

__attribute__((constructor)) static void rq_ctor(void)
{
	if (rq_ready() && !env_read && environ) {
		env_read = 1;
		rq_config_load(env, report);
		if (rq_cfg.disabled) {
			atomic_store_explicit(&rq_state, RQ_ST_PASS, memory_order_release);
			return;
		}
		start_role();
	}
	rq_runtime_start();
}
