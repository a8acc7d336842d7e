/*
 * Line prefixes for glibc stdio. stdio flushes through glibc's internal
 * write, which no preload can see, so the prefix goes into the FILE's buffer
 * when a line starts being produced: a line printed inside a request carries
 * that request's ID even if stdio flushes it at exit.
 *
 * Callers hold the FILE's lock (flockfile) around these, as glibc does.
 */
#ifndef RQ_STDLOG_H
#define RQ_STDLOG_H

#include <stdarg.h>
#include <stdio.h>
#include <sys/uio.h>

#include "fdtab.h"

/* The log entry behind f, or NULL if f is not a log stream. */
static inline struct rq_fd *rq_stdio_log(FILE *f)
{
	struct rq_fd *e;

	if (unlikely(!f))
		return NULL;
	e = rq_fd_peek(f->_fileno);
	return (rq_fd_flags(e) & RQ_FD_LOG) ? e : NULL;
}

/* Most pieces rq_stdio_put takes in one call. */
#define RQ_STDIO_NV 2

/*
 * Writes the nv (at most RQ_STDIO_NV) pieces to the log stream f with each
 * line start prefixed, in one write(2) on an unbuffered stream. Returns the
 * caller bytes that reached the FILE (all of them on success).
 */
size_t rq_stdio_put(FILE *f, struct rq_fd *e, const struct iovec *v, int nv);

/*
 * vfprintf onto the log stream f. flag >= 0 selects the fortified checks of
 * __vfprintf_chk. Returns what vfprintf would: the characters printed, or -1.
 */
int rq_stdio_vprintf(FILE *f, struct rq_fd *e, int flag, const char *fmt, va_list ap);

/*
 * Formats into buf (or a heap buffer if it does not fit, returned in *heap for
 * the caller to free). Returns the length, or -1 with errno set.
 */
int rq_format(char *buf, size_t size, char **heap, int flag, const char *fmt, va_list ap);

/*
 * For the err/warn/error/perror family, which write one line through stdio's
 * internals: puts the prefix on f if a line starts there (or the rest of a
 * cut prefix). Call rq_stdio_line_done after the real function, or before it
 * for one that exits: the line it prints ends with a newline.
 */
void rq_stdio_line_start(FILE *f);
void rq_stdio_line_done(FILE *f);

#endif
