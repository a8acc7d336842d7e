/*
 * Internal conventions shared by src/ and preload/.
 *
 * Names: public API is reqctx_*, internal non-static names are rq_* (hidden
 * by -fvisibility=hidden), static helpers have short names.
 *
 * Errors, one convention everywhere:
 *   - A function that can fail returns 0 (or a count, a length) on success
 *     and a negative errno on failure: -ENOMEM, -EAGAIN, -EINVAL for input it
 *     refuses, -ENOSYS for a libc that lacks a function. Never a bare -1, a
 *     private code, or errno as the answer. One that returns a pointer
 *     returns NULL on failure, and its contract says why it may.
 *   - A function that answers with an index or an fd uses -1 for "none", as
 *     libc does; that is an answer, not an error.
 *   - Nobody ignores a failure silently: the caller passes it on, or falls
 *     back (the fd, the connection or the whole library passes through) and
 *     says so where its contract does.
 *   - errno is the host's: internal code preserves it (RQ_SAVE_ERRNO), and
 *     only the outermost libc-shaped wrapper sets it, turning -e into -1 with
 *     errno = e, or returning exactly what the real function returned.
 */
#ifndef RQ_INTERNAL_H
#define RQ_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define RQ_EXPORT   __attribute__((visibility("default")))
#define RQ_TLS      __thread __attribute__((tls_model("initial-exec")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define RQ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define RQ_FD_MAX (1u << 20) /* fds tracked at most (and the largest in REQCTX_LOG_FDS) */

/*
 * Addresses reqctx leaves to the kernel to judge: a pointer below
 * RQ_FIRST_PAGE (the page mapped at 0 is never valid) or a range reaching
 * past RQ_USER_TOP (the user half of a 48-bit address space) is passed on
 * untouched, so that the call fails with EFAULT as without reqctx.
 */
#define RQ_FIRST_PAGE 4096u
#define RQ_USER_TOP   ((uintptr_t)1 << 47)

/* Runs a statement with errno saved before and restored after it. */
#define RQ_SAVE_ERRNO(stmt)          \
	do {                         \
		int rq_e_ = errno;   \
		stmt;                \
		errno = rq_e_;       \
	} while (0)

#endif
