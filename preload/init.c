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

#include "config.h"
#include "fdtab.h"
#include "id.h"
#include "preload.h"
#include "sys.h"

struct rq_real rq_real;
_Atomic int rq_state; /* 0: not started, 1: resolving, 2: ready, 3: pass-through */

static RQ_TLS int resolving;

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

static int resolve(void)
{
	int missing = 0;

#define RQ_RESOLVE(ret, name, args)                                           \
	rq_real.name = (ret(*) args)dlsym(RTLD_NEXT, #name);                  \
	if (!rq_real.name && !optional(#name))                                \
		missing = 1;
	RQ_REAL_FUNCS(RQ_RESOLVE)
#undef RQ_RESOLVE
	if (rq_resolve_epoll() < 0 || rq_resolve_timers() < 0 || rq_resolve_threads() < 0)
		missing = 1;
	rq_sys.write = rq_real.write;
	rq_sys.writev = rq_real.writev;
	rq_sys.send = rq_real.send;
	rq_sys.sendto = rq_real.sendto;
	rq_sys.sendmsg = rq_real.sendmsg;
	rq_sys.fwrite_unlocked = rq_real.fwrite_unlocked;
	return missing ? -1 : 0;
}

static void after_fork_child(void)
{
	rq_id_after_fork();
}

/*
 * The first preloaded process of a tree records its pid in REQCTX_TOP_PID, so
 * that the programs it starts know they are children: their stdout is often
 * a pipe their parent reads (CGI, a shell's $(...)), so only the fds of
 * REQCTX_CHILD_LOG_FDS (stderr) are logs there. exec without fork keeps the
 * pid, and with it the top's log fds.
 */
static int is_top(void)
{
	const char *top = getenv("REQCTX_TOP_PID");
	char buf[24];

	if (top)
		return strtol(top, NULL, 10) == (long)getpid();
	snprintf(buf, sizeof(buf), "%ld", (long)getpid());
	setenv("REQCTX_TOP_PID", buf, 1);
	return 1;
}

static void mark_log_fds(void)
{
	int top = is_top();
	const int *fds = top ? rq_cfg.logfds : rq_cfg.childfds;
	int n = top ? rq_cfg.nlogfds : rq_cfg.nchildfds;

	for (int i = 0; i < n; i++)
		if (rq_real.fcntl(fds[i], F_GETFD) >= 0)
			rq_fd_set_log(fds[i]);
}

/*
 * Resolves everything once. Returns 1 if reqctx is ready, 0 if the caller
 * must pass through by itself: the first call is still running (on this
 * thread, re-entered through dlsym's malloc, or on another thread), or
 * resolution failed and reqctx stays out of the way for good.
 */
int rq_init_slow(void)
{
	int expected = 0;
	int e = errno;

	if (resolving)
		return 0;
	if (!atomic_compare_exchange_strong(&rq_state, &expected, 1))
		return atomic_load(&rq_state) == RQ_READY;
	resolving = 1;
	if (resolve() < 0) {
		report("reqctx: libc lacks functions reqctx needs; passing everything through");
		atomic_store(&rq_state, 3);
		resolving = 0;
		errno = e;
		return 0;
	}
	rq_config_load(env, report);
	rq_fd_init();
	if (!rq_cfg.disabled)
		mark_log_fds();
	pthread_atfork(NULL, NULL, after_fork_child);
	rq_threads_init();
	rq_crash_start();
	resolving = 0;
	atomic_store_explicit(&rq_state, RQ_READY, memory_order_release);
	errno = e;
	return 1;
}

__attribute__((constructor)) static void rq_ctor(void)
{
	rq_ready();
}
