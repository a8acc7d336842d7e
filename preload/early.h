/*
 * What glibc's message functions do, for the moment before reqctx knows the
 * real ones (preload/early.c). The stdio wrappers call the real function
 * whenever it is resolved, ready or not; these are for a call made while the
 * resolution is still under way: re-entered from inside it (an allocator that
 * dlsym calls), or from a thread racing it.
 */
#ifndef RQ_EARLY_H
#define RQ_EARLY_H

#include <signal.h>
#include <stdarg.h>

void rq_early_perror(const char *s);
void rq_early_psignal(int sig, const char *s);
void rq_early_psiginfo(const siginfo_t *si, const char *s);
void rq_early_vwarn(const char *fmt, va_list ap);
void rq_early_vwarnx(const char *fmt, va_list ap);

/* error() and error_at_line() (file set, or at_line 0); exits if status is not 0. */
void rq_early_error(int status, int errnum, int at_line, const char *file, unsigned int line,
		    const char *fmt, va_list ap);

__attribute__((noreturn)) void rq_early_assert(const char *expr, const char *file,
					       unsigned int line, const char *func);

#endif
