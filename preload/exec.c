/*
 * Starting programs: a child started while the calling thread is in a request
 * starts in that request (src/child.h). The exec family, posix_spawn and
 * posix_spawnp get an environment with REQCTX_PARENT_ID added; system() and
 * popen(), whose spawn inside glibc cannot be reached, get a command that
 * exports it first. Outside a request every call goes through unchanged.
 *
 * The new environment is built on the stack, never with malloc: a vfork
 * child (Python's subprocess) runs the exec wrappers on its parent's memory.
 * An environment of more than RQ_CHILD_ENV_MAX entries is passed on as it is.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "ctx.h"
#include "preload.h"

extern char **environ;

static struct {
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*execv)(const char *, char *const[]);
	int (*execvp)(const char *, char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
		     const posix_spawnattr_t *, char *const[], char *const[]);
	int (*spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
		      const posix_spawnattr_t *, char *const[], char *const[]);
	int (*system)(const char *);
	FILE *(*popen)(const char *, const char *);
} real;

/* posix_spawn has two versions in glibc; the current one is resolved. */
int rq_resolve_exec(void)
{
	real.execve = dlsym(RTLD_NEXT, "execve");
	real.execvpe = dlsym(RTLD_NEXT, "execvpe");
	real.execv = dlsym(RTLD_NEXT, "execv");
	real.execvp = dlsym(RTLD_NEXT, "execvp");
	real.fexecve = dlsym(RTLD_NEXT, "fexecve");
	real.spawn = dlvsym(RTLD_NEXT, "posix_spawn", "GLIBC_2.15");
	if (!real.spawn)
		real.spawn = dlsym(RTLD_NEXT, "posix_spawn");
	real.spawnp = dlvsym(RTLD_NEXT, "posix_spawnp", "GLIBC_2.15");
	if (!real.spawnp)
		real.spawnp = dlsym(RTLD_NEXT, "posix_spawnp");
	real.system = dlsym(RTLD_NEXT, "system");
	real.popen = dlsym(RTLD_NEXT, "popen");
	return real.execve && real.execvpe && real.execv && real.execvp && real.fexecve &&
	       real.spawn && real.spawnp && real.system && real.popen ? 0 : -ENOSYS;
}

/* The request the calling thread is in, or NULL outside any (and before start-up). */
static const struct rq_ctx *in_request(void)
{
	const struct rq_ctx *c;

	if (!rq_ready())
		return NULL;
	c = rq_ctx_cur();
	return c->serial ? c : NULL;
}

/*
 * Declares the child's environment `ENV`, on the stack: envp with the
 * request's ID added when the thread is in one, else envp itself.
 */
#define CHILD_ENV(ENV, envp)                                                            \
	const struct rq_ctx *rq_c_ = in_request();                                      \
	long rq_n_ = rq_c_ && (envp) ? rq_child_env_count(envp) : -1;                   \
	char *rq_vec_[rq_n_ >= 0 ? rq_n_ + 3 : 1];                                      \
	char rq_text_[rq_n_ >= 0 ? RQ_CHILD_TEXT : 1];                                  \
	char *const *ENV = rq_n_ >= 0 ? rq_child_env(envp, rq_n_, rq_c_->id, rq_c_->len,  \
						     rq_vec_, rq_text_)                 \
				      : (envp)

RQ_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	CHILD_ENV(env, envp);

	if (unlikely(!real.execve) && rq_resolve_exec() < 0)
		return (int)RQ_RAW(execve, path, argv, envp);
	return real.execve(path, argv, env);
}

RQ_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	CHILD_ENV(env, envp);

	if (unlikely(!real.execvpe) && rq_resolve_exec() < 0)
		return (int)RQ_RAW(execve, file, argv, envp);
	return real.execvpe(file, argv, env);
}

RQ_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	CHILD_ENV(env, envp);

	if (unlikely(!real.fexecve) && rq_resolve_exec() < 0)
		return (int)RQ_RAW(execveat, fd, "", argv, envp, AT_EMPTY_PATH);
	return real.fexecve(fd, argv, env);
}

RQ_EXPORT int execv(const char *path, char *const argv[])
{
	if (!in_request())
		return (real.execv || rq_resolve_exec() == 0) ? real.execv(path, argv)
							      : (int)RQ_RAW(execve, path, argv, environ);
	return execve(path, argv, environ);
}

RQ_EXPORT int execvp(const char *file, char *const argv[])
{
	if (!in_request())
		return (real.execvp || rq_resolve_exec() == 0) ? real.execvp(file, argv)
							       : (int)RQ_RAW(execve, file, argv, environ);
	return execvpe(file, argv, environ);
}

enum { L_PATH, L_SEARCH, L_ENV }; /* execl, execlp, execle */

/*
 * execl, execlp and execle: the arguments after arg0 up to their NULL (and,
 * for execle, the environment after it) become an argv on the stack, which
 * goes to the wrapper of execv, execvp or execve.
 */
static int exec_list(int how, const char *file, const char *arg0, va_list ap)
{
	va_list count;
	long n = 1;

	va_copy(count, ap);
	while (va_arg(count, const char *)) {
		if (++n == INT_MAX) {
			va_end(count);
			errno = E2BIG;
			return -1;
		}
	}
	va_end(count);
	{
		char *argv[n + 1];

		argv[0] = (char *)arg0;
		for (long i = 1; i <= n; i++)
			argv[i] = va_arg(ap, char *);
		if (how == L_ENV)
			return execve(file, argv, va_arg(ap, char *const *));
		return how == L_SEARCH ? execvp(file, argv) : execv(file, argv);
	}
}

#define EXEC_LIST(how, file, arg0)                         \
	va_list ap;                                        \
	int r;                                             \
	va_start(ap, arg0);                                \
	r = exec_list(how, file, arg0, ap);                \
	va_end(ap);                                        \
	return r

RQ_EXPORT int execl(const char *path, const char *arg0, ...)
{
	EXEC_LIST(L_PATH, path, arg0);
}

RQ_EXPORT int execlp(const char *file, const char *arg0, ...)
{
	EXEC_LIST(L_SEARCH, file, arg0);
}

RQ_EXPORT int execle(const char *path, const char *arg0, ...)
{
	EXEC_LIST(L_ENV, path, arg0);
}

RQ_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	CHILD_ENV(env, envp);

	if (unlikely(!real.spawn) && rq_resolve_exec() < 0)
		return ENOSYS;
	return real.spawn(pid, path, fa, attr, argv, env);
}

RQ_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	CHILD_ENV(env, envp);

	if (unlikely(!real.spawnp) && rq_resolve_exec() < 0)
		return ENOSYS;
	return real.spawnp(pid, file, fa, attr, argv, env);
}

/* The command with the export in front, on the heap (NULL: run cmd as it is). */
static char *child_cmd(const char *cmd)
{
	const struct rq_ctx *c = cmd ? in_request() : NULL;
	char *out;
	int e = errno;

	if (!c || !(out = malloc(rq_child_cmd_size(cmd, c->len)))) {
		errno = e;
		return NULL;
	}
	return rq_child_cmd(cmd, c->id, c->len, out);
}

RQ_EXPORT int system(const char *cmd)
{
	char *with = child_cmd(cmd);
	int r, e;

	if (unlikely(!real.system) && rq_resolve_exec() < 0)
		return -1;
	r = real.system(with ? with : cmd);
	e = errno;
	free(with);
	errno = e;
	return r;
}

RQ_EXPORT FILE *popen(const char *cmd, const char *mode)
{
	char *with = child_cmd(cmd);
	FILE *f;
	int e;

	if (unlikely(!real.popen) && rq_resolve_exec() < 0)
		return NULL;
	f = real.popen(with ? with : cmd, mode);
	e = errno;
	free(with);
	errno = e;
	return f;
}
