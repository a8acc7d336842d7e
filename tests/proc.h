/*
 * Running helper programs for the interposition suites. The preload goes into
 * the child's environment only; the test binary itself never runs under it.
 */
#ifndef RQ_TEST_PROC_H
#define RQ_TEST_PROC_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static inline const char *bdir(void)
{
	const char *b = getenv("REQCTX_BUILD");

	return b && *b ? b : "build";
}

/* A path under the build dir; each call returns a new static buffer (8 in rotation). */
static inline const char *bpath(const char *rel)
{
	static char bufs[8][512];
	static int k;
	char *b = bufs[k++ & 7];

	snprintf(b, 512, "%s/%s", bdir(), rel);
	return b;
}

/*
 * "LD_PRELOAD=..." for a child, in buf. When the library itself is built with
 * a sanitizer (make test SANITIZE=...), the sanitizer's runtime must come
 * first in the list: the Makefile names it in REQCTX_TEST_PRELOAD_FIRST.
 * `extra` (may be NULL) goes after the library.
 */
static inline const char *proc_preload(char *buf, size_t n, const char *extra)
{
	const char *first = getenv("REQCTX_TEST_PRELOAD_FIRST");
	int have = first && *first;

	snprintf(buf, n, "LD_PRELOAD=%s%s%s/libreqctx.so%s%s", have ? first : "", have ? ":" : "",
		 bdir(), extra ? ":" : "", extra ? extra : "");
	return buf;
}

static inline long proc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * Starts argv with the environment cleaned of LD_PRELOAD and REQCTX_*, plus
 * `env` (NAME=VALUE, NULL-terminated), plus LD_PRELOAD=libreqctx.so if
 * `preload` (after $REQCTX_TEST_PRELOAD_FIRST, if set: see proc_preload).
 *
 * The helper programs are mostly not servers, and a process that is not a
 * server has its fd 1 and 2 passed through bare (src/role.h). Preloaded, they
 * are started as servers from the start, with REQCTX_LOG_FDS=1,2 (as `reqctx
 * run` does), unless `env` names REQCTX_LOG_FDS itself: "REQCTX_LOG_FDS=..."
 * sets it, and the bare name "REQCTX_LOG_FDS" leaves it unset, to run a helper
 * as the plain program it is. stdin from /dev/null unless in_fd >= 0; stdout and stderr go to
 * the files given (NULL: /dev/null). extra_fd >= 0 is passed on as that same
 * fd number.
 */
static inline pid_t proc_start_fd(char *const argv[], const char *const *env, int preload,
				  const char *out, const char *err, int in_fd, int extra_fd)
{
	char *envp[512], lp[600];
	int n = 0, logfds_named = 0;
	pid_t pid;

	for (char **e = environ; *e && n < 500; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "REQCTX_", 7))
			envp[n++] = *e;
	for (const char *const *e = env; e && *e && n < 508; e++) {
		if (!strncmp(*e, "REQCTX_LOG_FDS", 14) && ((*e)[14] == '=' || !(*e)[14]))
			logfds_named = 1;
		if (strcmp(*e, "REQCTX_LOG_FDS")) /* the bare name only says: leave it unset */
			envp[n++] = (char *)*e;
	}
	if (preload) {
		envp[n++] = (char *)proc_preload(lp, sizeof(lp), NULL);
		if (!logfds_named)
			envp[n++] = "REQCTX_LOG_FDS=1,2";
	}
	envp[n] = NULL;
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int o = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int i = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (o < 0 || e < 0 || i < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(125);
		if (extra_fd >= 0)
			fcntl(extra_fd, F_SETFD, 0);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	return pid;
}

static inline pid_t proc_start(char *const argv[], const char *const *env, int preload,
			       const char *out, const char *err)
{
	return proc_start_fd(argv, env, preload, out, err, -1, -1);
}

/* Waits up to timeout_ms (then kills). Returns the exit status, or 128+signal. */
static inline int proc_wait(pid_t pid, long timeout_ms)
{
	long end = proc_now_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (proc_now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("pid %d did not finish in %ld ms", pid, timeout_ms);
		}
		usleep(2000);
	}
}

static inline int proc_run(char *const argv[], const char *const *env, int preload,
			   const char *out, const char *err)
{
	return proc_wait(proc_start(argv, env, preload, out, err), 60000);
}

/* Reads a whole file into a NUL-terminated heap buffer. */
static inline char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	cr_assert_not_null(f, "cannot open %s", path);
	for (;;) {
		if (n + 65536 + 1 > cap) {
			cap = (n + 65536 + 1) * 2;
			buf = realloc(buf, cap);
		}
		size_t r = fread(buf + n, 1, 65536, f);

		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* A fresh temporary directory; path returned in a static buffer. */
static inline const char *tmpdir_new(void)
{
	static char dir[64];

	strcpy(dir, "/tmp/reqctx-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	return dir;
}

/* Removes a directory made by tmpdir_new, with everything in it. */
static inline void tmpdir_remove(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

#endif
