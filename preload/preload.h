/*
 * Private to preload/: the real functions behind each wrapper, and the
 * bootstrap that resolves them.
 *
 * Every wrapper has the same shape: if reqctx is not ready, fall back to what
 * the call does without it (RQ_FALL); else call the real function and hand
 * the outcome to src/.
 */
#ifndef RQ_PRELOAD_H
#define RQ_PRELOAD_H

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define RQ_REAL_FUNCS(X)                                                                   \
	X(ssize_t, read, (int, void *, size_t))                                            \
	X(ssize_t, readv, (int, const struct iovec *, int))                                \
	X(ssize_t, recv, (int, void *, size_t, int))                                       \
	X(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *))   \
	X(ssize_t, recvmsg, (int, struct msghdr *, int))                                   \
	X(int, recvmmsg, (int, struct mmsghdr *, unsigned int, int, struct timespec *))    \
	X(ssize_t, __read_chk, (int, void *, size_t, size_t))                              \
	X(ssize_t, __recv_chk, (int, void *, size_t, size_t, int))                         \
	X(ssize_t, __recvfrom_chk, (int, void *, size_t, size_t, int, struct sockaddr *,   \
				    socklen_t *))                                          \
	X(ssize_t, write, (int, const void *, size_t))                                     \
	X(ssize_t, writev, (int, const struct iovec *, int))                               \
	X(ssize_t, send, (int, const void *, size_t, int))                                 \
	X(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *,       \
			    socklen_t))                                                    \
	X(ssize_t, sendmsg, (int, const struct msghdr *, int))                             \
	X(ssize_t, sendfile, (int, int, off_t *, size_t))                                  \
	X(ssize_t, sendfile64, (int, int, off64_t *, size_t))                              \
	X(ssize_t, splice, (int, loff_t *, int, loff_t *, size_t, unsigned int))           \
	X(ssize_t, tee, (int, int, size_t, unsigned int))                                  \
	X(ssize_t, vmsplice, (int, const struct iovec *, size_t, unsigned int))            \
	X(ssize_t, copy_file_range, (int, loff_t *, int, loff_t *, size_t, unsigned int))  \
	X(int, sendmmsg, (int, struct mmsghdr *, unsigned int, int))                       \
	X(ssize_t, pwritev64v2, (int, const struct iovec *, int, off64_t, int))            \
	X(ssize_t, preadv64v2, (int, const struct iovec *, int, off64_t, int))             \
	X(int, accept, (int, struct sockaddr *, socklen_t *))                              \
	X(int, socket, (int, int, int))                                                    \
	X(int, socketpair, (int, int, int, int *))                                         \
	X(int, pipe, (int *))                                                              \
	X(int, pipe2, (int *, int))                                                        \
	X(int, eventfd, (unsigned int, int))                                               \
	X(int, accept4, (int, struct sockaddr *, socklen_t *, int))                        \
	X(int, listen, (int, int))                                                         \
	X(int, connect, (int, const struct sockaddr *, socklen_t))                         \
	X(int, close, (int))                                                               \
	X(int, close_range, (unsigned int, unsigned int, int))                             \
	X(void, closefrom, (int))                                                          \
	X(int, dup, (int))                                                                 \
	X(int, dup2, (int, int))                                                           \
	X(int, dup3, (int, int, int))                                                      \
	X(int, fcntl, (int, int, ...))                                                     \
	X(int, fcntl64, (int, int, ...))                                                   \
	X(int, open, (const char *, int, ...))                                             \
	X(int, open64, (const char *, int, ...))                                           \
	X(int, openat, (int, const char *, int, ...))                                      \
	X(int, openat64, (int, const char *, int, ...))                                    \
	X(int, __open_2, (const char *, int))                                              \
	X(int, __open64_2, (const char *, int))                                            \
	X(int, __openat_2, (int, const char *, int))                                       \
	X(int, __openat64_2, (int, const char *, int))                                     \
	X(int, creat, (const char *, mode_t))                                              \
	X(int, creat64, (const char *, mode_t))                                            \
	X(FILE *, fopen, (const char *, const char *))                                     \
	X(FILE *, fopen64, (const char *, const char *))                                   \
	X(FILE *, freopen, (const char *, const char *, FILE *))                           \
	X(FILE *, freopen64, (const char *, const char *, FILE *))                         \
	X(int, fclose, (FILE *))                                                           \
	X(int, vfprintf, (FILE *, const char *, va_list))                                  \
	X(int, __vfprintf_chk, (FILE *, int, const char *, va_list))                       \
	X(int, vdprintf, (int, const char *, va_list))                                     \
	X(int, __vdprintf_chk, (int, int, const char *, va_list))                          \
	X(size_t, fwrite, (const void *, size_t, size_t, FILE *))                          \
	X(size_t, fwrite_unlocked, (const void *, size_t, size_t, FILE *))                 \
	X(int, fputs, (const char *, FILE *))                                              \
	X(int, fputs_unlocked, (const char *, FILE *))                                     \
	X(int, puts, (const char *))                                                       \
	X(int, fputc, (int, FILE *))                                                       \
	X(int, fputc_unlocked, (int, FILE *))                                              \
	X(int, putc, (int, FILE *))                                                        \
	X(int, putc_unlocked, (int, FILE *))                                               \
	X(int, _IO_putc, (int, FILE *))                                                    \
	X(int, putchar, (int))                                                             \
	X(int, putchar_unlocked, (int))                                                    \
	X(int, __overflow, (FILE *, int))                                                  \
	X(void, perror, (const char *))                                                    \
	X(void, psignal, (int, const char *))                                              \
	X(void, psiginfo, (const siginfo_t *, const char *))                               \
	X(void, verr, (int, const char *, va_list))                                        \
	X(void, verrx, (int, const char *, va_list))                                       \
	X(void, vwarn, (const char *, va_list))                                            \
	X(void, vwarnx, (const char *, va_list))                                           \
	X(void, error, (int, int, const char *, ...))                                      \
	X(void, error_at_line, (int, int, const char *, unsigned int, const char *, ...))  \
	X(void, __assert_fail, (const char *, const char *, unsigned int, const char *))

#define RQ_REAL_FIELD(ret, name, args) ret(*name) args;
struct rq_real {
	RQ_REAL_FUNCS(RQ_REAL_FIELD)
};
#undef RQ_REAL_FIELD

extern struct rq_real rq_real;

/* glibc's internal entry points that compilers emit calls to; no header declares them all. */
int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);
ssize_t __read_chk(int, void *, size_t, size_t);
ssize_t __recv_chk(int, void *, size_t, size_t, int);
ssize_t __recvfrom_chk(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
int __printf_chk(int, const char *, ...);
int __fprintf_chk(FILE *, int, const char *, ...);
int __vprintf_chk(int, const char *, va_list);
int __vfprintf_chk(FILE *, int, const char *, va_list);
int __dprintf_chk(int, int, const char *, ...);
int __vdprintf_chk(int, int, const char *, va_list);
int _IO_putc(int, FILE *);
int fcntl64(int, int, ...);
/*
 * Where reqctx is in its life. Wrappers do their work only when ready, and in
 * every other state fall back (RQ_FALL): to the real function once it is
 * known (pass-through: REQCTX_DISABLE=1, or a libc that lacks a function
 * reqctx needs), else to a raw system call or glibc's own alias (before and
 * while the real functions are resolved).
 */
enum rq_state {
	RQ_ST_INIT,      /* nothing done yet: the first wrapper called starts it */
	RQ_ST_RESOLVING, /* the real functions are being resolved (by this thread or another) */
	RQ_ST_READY,     /* active */
	RQ_ST_PASS,      /* pass-through for good */
};

extern _Atomic int rq_state;

int rq_init_slow(void);

/*
 * The process became a server (listen, or an accept): REQCTX_LOG_FDS become
 * log streams, once, and children started from now on know their parent is
 * a server (src/role.h). errno is preserved.
 */
void rq_serving_start(void);
extern _Atomic int rq_serving_now;

static inline int rq_serving(void)
{
	return atomic_load_explicit(&rq_serving_now, memory_order_relaxed);
}

/* 1 in a vfork child before its exec: the fd table is the parent's; leave it alone. */
int rq_vfork_child(void);

/*
 * Each family with functions of its own resolves them here, once, from
 * rq_init_slow (each in its file). Returns 0, or -ENOSYS if one it needs is
 * missing.
 */
int rq_resolve_epoll(void);
int rq_resolve_timers(void);
int rq_resolve_threads(void);
int rq_resolve_exec(void);

/* 1 once the real functions are resolved and reqctx is active (starts it if need be). */
static inline int rq_ready(void)
{
	if (likely(atomic_load_explicit(&rq_state, memory_order_acquire) == RQ_ST_READY))
		return 1;
	return rq_init_slow();
}

/* 1 in pass-through: the real functions are known (those libc has), reqctx does nothing. */
static inline int rq_passing(void)
{
	return atomic_load_explicit(&rq_state, memory_order_acquire) == RQ_ST_PASS;
}

/*
 * A wrapper's fallback when reqctx is not ready: the real function `name`
 * with `args` in pass-through (when libc has it), else `raw`.
 */
#define RQ_FALL(name, args, raw) RQ_FALL_IN(rq_real, name, args, raw)
#define RQ_FALL_IN(table, name, args, raw) \
	(rq_passing() && (table).name ? (table).name args : (raw))

/* The real function `name` once resolved (ready or pass-through; NULL if libc lacks it), else NULL. */
#define RQ_REAL(name) (rq_ready() || rq_passing() ? rq_real.name : NULL)

/* Raw system calls for the few moments before the real functions are known. */
#define RQ_RAW(name, ...) ((long)syscall(SYS_##name, __VA_ARGS__))

#endif
