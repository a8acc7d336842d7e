/*
 * Internal conventions shared by src/ and preload/.
 *
 * Names: public API is reqctx_*, internal non-static names are rq_* (hidden
 * by -fvisibility=hidden), static helpers have short names.
 * Errors: internal functions return 0 or a negative errno; only the outermost
 * libc-shaped wrapper turns that into -1 plus errno.
 */
#ifndef RQ_INTERNAL_H
#define RQ_INTERNAL_H

#include <errno.h>
#include <stddef.h>

#define RQ_EXPORT   __attribute__((visibility("default")))
#define RQ_TLS      __thread __attribute__((tls_model("initial-exec")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define RQ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Runs a statement with errno saved before and restored after it. */
#define RQ_SAVE_ERRNO(stmt)          \
	do {                         \
		int rq_e_ = errno;   \
		stmt;                \
		errno = rq_e_;       \
	} while (0)

#endif
