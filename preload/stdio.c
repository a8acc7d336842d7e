/*
 * glibc stdio. Every entry point that can start a line on a FILE is wrapped,
 * including the fortified _chk variants and the calls the compiler rewrites
 * printf into (puts, putchar, fwrite, fputs). putchar_unlocked and
 * putc_unlocked, inlined by glibc's headers, write straight into the FILE's
 * buffer while it has room, and call __overflow (wrapped) when it has none,
 * which on an unbuffered or line-buffered stream is every time.
 *
 * A FILE that is not a log stream costs one table lookup, then the real call.
 * Before resolution is done, the calls go to glibc's exported _IO_ aliases,
 * and the message functions to the real ones as soon as they are resolved
 * (preload/early.c before that).
 */
#include <features.h>
/* At -O2 glibc's headers define vprintf, putchar and friends as extern inlines; these are the real ones. */
#undef __USE_EXTERN_INLINES
#include <assert.h>
#include <err.h>
#include <error.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "early.h"
#include "io.h"
#include "preload.h"
#include "stdlog.h"

extern int _IO_vfprintf(FILE *, const char *, va_list);
extern size_t _IO_fwrite(const void *, size_t, size_t, FILE *);
extern int _IO_fputs(const char *, FILE *);
extern int _IO_puts(const char *);
extern int _IO_fflush(FILE *);

/*
 * The real `name` for a wrapper called before reqctx is ready: set once the
 * resolution got that far (a call from inside start-up, a failed
 * resolution), else NULL.
 */
#define EARLY(name) __atomic_load_n(&rq_real.name, __ATOMIC_ACQUIRE)

/*
 * A FILE on a connection: glibc flushes it through its internal write, which
 * reqctx cannot see, so from the first stdio call on it that connection's
 * responses get no header (a missed header, never a changed body).
 */
static inline void conn_file(FILE *f)
{
	if (unlikely(f && (rq_fd_flags(rq_fd_peek(f->_fileno)) & RQ_FD_CONN)))
		rq_conn_unseen(f->_fileno);
}

/* The log entry of f when f takes prefixes now; NULL for a plain pass-through. */
static struct rq_fd *log_of(FILE *f)
{
	struct rq_fd *e = rq_stdio_log(f);

	if (likely(!e)) {
		conn_file(f);
		return NULL;
	}
	return fwide(f, 0) > 0 ? NULL : e; /* wide streams: left to libc */
}

static int vfp(FILE *f, int flag, const char *fmt, va_list ap)
{
	struct rq_fd *e;
	int r;

	if (unlikely(!rq_ready()))
		return _IO_vfprintf(f, fmt, ap);
	if (likely(!(e = log_of(f))))
		return flag < 0 ? rq_real.vfprintf(f, fmt, ap)
				: rq_real.__vfprintf_chk(f, flag, fmt, ap);
	flockfile(f);
	r = rq_stdio_vprintf(f, e, flag, fmt, ap);
	funlockfile(f);
	return r;
}

RQ_EXPORT int vfprintf(FILE *f, const char *fmt, va_list ap)
{
	return vfp(f, -1, fmt, ap);
}

RQ_EXPORT int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
	return vfp(f, flag, fmt, ap);
}

RQ_EXPORT int vprintf(const char *fmt, va_list ap)
{
	return vfp(stdout, -1, fmt, ap);
}

RQ_EXPORT int __vprintf_chk(int flag, const char *fmt, va_list ap)
{
	return vfp(stdout, flag, fmt, ap);
}

#define VA_CALL(last, call)            \
	va_list ap;                    \
	int r;                         \
	va_start(ap, last);            \
	r = call;                      \
	va_end(ap);                    \
	return r

RQ_EXPORT int fprintf(FILE *f, const char *fmt, ...)
{
	VA_CALL(fmt, vfp(f, -1, fmt, ap));
}

RQ_EXPORT int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	VA_CALL(fmt, vfp(f, flag, fmt, ap));
}

RQ_EXPORT int printf(const char *fmt, ...)
{
	VA_CALL(fmt, vfp(stdout, -1, fmt, ap));
}

RQ_EXPORT int __printf_chk(int flag, const char *fmt, ...)
{
	VA_CALL(fmt, vfp(stdout, flag, fmt, ap));
}

/* dprintf writes to an fd through a private FILE: format, then take the write path. */
static int vdp(int fd, int flag, const char *fmt, va_list ap)
{
	char buf[512], *heap;
	struct rq_call k = { .how = RQ_WRITE };
	struct iovec v;
	ssize_t w;
	int n;

	if ((likely(rq_ready()) && !(rq_fd_flags(rq_fd_peek(fd)) & (RQ_FD_LOG | RQ_FD_CONN))) ||
	    (rq_passing() && rq_real.vdprintf && rq_real.__vdprintf_chk))
		return flag < 0 ? rq_real.vdprintf(fd, fmt, ap)
				: rq_real.__vdprintf_chk(fd, flag, fmt, ap);
	n = rq_format(buf, sizeof(buf), &heap, flag, fmt, ap);
	if (n <= 0)
		return n;
	v.iov_base = heap ? heap : buf;
	v.iov_len = (size_t)n;
	for (size_t done = 0; done < (size_t)n; done += (size_t)w) {
		struct iovec rest = { (char *)v.iov_base + done, (size_t)n - done };

		w = rq_ready() ? rq_io_write(fd, &rest, 1, &k)
			       : RQ_RAW(write, fd, rest.iov_base, rest.iov_len);
		if (w <= 0) {
			n = -1;
			break;
		}
	}
	free(heap);
	return n;
}

RQ_EXPORT int vdprintf(int fd, const char *fmt, va_list ap)
{
	return vdp(fd, -1, fmt, ap);
}

RQ_EXPORT int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap)
{
	return vdp(fd, flag, fmt, ap);
}

RQ_EXPORT int dprintf(int fd, const char *fmt, ...)
{
	VA_CALL(fmt, vdp(fd, -1, fmt, ap));
}

RQ_EXPORT int __dprintf_chk(int fd, int flag, const char *fmt, ...)
{
	VA_CALL(fmt, vdp(fd, flag, fmt, ap));
}

/* Puts the pieces on f; returns 1 if all of them got there. */
static int put(FILE *f, struct rq_fd *e, const struct iovec *v, int nv, int lock, size_t total)
{
	size_t w;

	if (lock)
		flockfile(f);
	w = rq_stdio_put(f, e, v, nv);
	if (lock)
		funlockfile(f);
	return w == total;
}

static size_t fw(const void *p, size_t size, size_t n, FILE *f, int lock)
{
	struct iovec v = { (void *)p, size * n };
	struct rq_fd *e;

	if (unlikely(!rq_ready()))
		return _IO_fwrite(p, size, n, f);
	if (likely(!(e = log_of(f))) || !size || !n || n > SIZE_MAX / size)
		return (lock ? rq_real.fwrite : rq_real.fwrite_unlocked)(p, size, n, f);
	if (lock)
		flockfile(f);
	v.iov_len = rq_stdio_put(f, e, &v, 1);
	if (lock)
		funlockfile(f);
	return v.iov_len / size;
}

RQ_EXPORT size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
	return fw(p, size, n, f, 1);
}

RQ_EXPORT size_t (fwrite_unlocked)(const void *p, size_t size, size_t n, FILE *f)
{
	return fw(p, size, n, f, 0);
}

static int fps(const char *s, FILE *f, int lock)
{
	struct iovec v = { (void *)s, 0 };
	struct rq_fd *e;

	if (unlikely(!rq_ready()))
		return _IO_fputs(s, f);
	if (likely(!(e = log_of(f))) || !*s)
		return (lock ? rq_real.fputs : rq_real.fputs_unlocked)(s, f);
	v.iov_len = strlen(s);
	return put(f, e, &v, 1, lock, v.iov_len) ? 1 : EOF;
}

RQ_EXPORT int fputs(const char *s, FILE *f)
{
	return fps(s, f, 1);
}

RQ_EXPORT int fputs_unlocked(const char *s, FILE *f)
{
	return fps(s, f, 0);
}

RQ_EXPORT int puts(const char *s)
{
	struct iovec v[2] = { { (void *)s, 0 }, { "\n", 1 } };
	struct rq_fd *e;

	if (unlikely(!rq_ready()))
		return _IO_puts(s);
	if (likely(!(e = log_of(stdout))))
		return rq_real.puts(s);
	v[0].iov_len = strlen(s);
	if (!put(stdout, e, v, 2, 1, v[0].iov_len + 1))
		return EOF;
	return v[0].iov_len >= INT_MAX ? INT_MAX : (int)v[0].iov_len + 1;
}

static int fpc(int c, FILE *f, int lock, int (*real)(int, FILE *))
{
	unsigned char b = (unsigned char)c;
	struct iovec v = { &b, 1 };
	struct rq_fd *e;

	if (unlikely(!rq_ready()))
		return _IO_fwrite(&b, 1, 1, f) == 1 ? b : EOF;
	if (likely(!(e = log_of(f))))
		return real(c, f);
	return put(f, e, &v, 1, lock, 1) ? b : EOF;
}

RQ_EXPORT int fputc(int c, FILE *f)
{
	return fpc(c, f, 1, rq_real.fputc);
}

RQ_EXPORT int putc(int c, FILE *f)
{
	return fpc(c, f, 1, rq_real.putc);
}

RQ_EXPORT int _IO_putc(int c, FILE *f)
{
	return fpc(c, f, 1, rq_real._IO_putc);
}

RQ_EXPORT int fputc_unlocked(int c, FILE *f)
{
	return fpc(c, f, 0, rq_real.fputc_unlocked);
}

RQ_EXPORT int putc_unlocked(int c, FILE *f)
{
	return fpc(c, f, 0, rq_real.putc_unlocked);
}

static int putc_stdout(int c, FILE *f)
{
	(void)f;
	return rq_real.putchar(c);
}

static int putc_stdout_unlocked(int c, FILE *f)
{
	(void)f;
	return rq_real.putchar_unlocked(c);
}

RQ_EXPORT int putchar(int c)
{
	return fpc(c, stdout, 1, putc_stdout);
}

RQ_EXPORT int putchar_unlocked(int c)
{
	return fpc(c, stdout, 0, putc_stdout_unlocked);
}

/*
 * What the inlined putc_unlocked calls when the buffer has no room: on an
 * unbuffered or line-buffered stream, for every character. ch EOF (a flush)
 * is glibc's alone.
 */
RQ_EXPORT int __overflow(FILE *f, int ch)
{
	int (*real)(FILE *, int);
	unsigned char b = (unsigned char)ch;
	struct iovec v = { &b, 1 };
	struct rq_fd *e;

	if (unlikely(!rq_ready())) {
		if ((real = EARLY(__overflow)))
			return real(f, ch);
		if (ch == EOF)
			return _IO_fflush(f);
		return _IO_fwrite(&b, 1, 1, f) == 1 ? b : EOF;
	}
	if (likely(ch == EOF || !(e = log_of(f))))
		return rq_real.__overflow(f, ch);
	return put(f, e, &v, 1, 0, 1) ? b : EOF;
}

/*
 * The err/warn/error/perror family prints one line on stderr through stdio's
 * internals: the prefix goes first, under the stderr lock, then libc prints
 * exactly what it always does. A message with a newline inside it gets the
 * prefix on its first line only. For the functions that exit, the line
 * counts as ended before the real call (it ends with a newline) and the lock
 * is released.
 */
static void line_begin(int exits)
{
	conn_file(stderr);
	flockfile(stderr);
	rq_stdio_line_start(stderr);
	if (exits) {
		rq_stdio_line_done(stderr);
		funlockfile(stderr);
	}
}

static void line_end(void)
{
	rq_stdio_line_done(stderr);
	funlockfile(stderr);
}

RQ_EXPORT void perror(const char *s)
{
	void (*real)(const char *);
	int e = errno;

	if (unlikely(!rq_ready())) {
		errno = e;
		if ((real = EARLY(perror)))
			real(s);
		else
			rq_early_perror(s);
		return;
	}
	line_begin(0);
	errno = e;
	rq_real.perror(s);
	line_end();
}

RQ_EXPORT void psignal(int sig, const char *s)
{
	void (*real)(int, const char *);

	if (unlikely(!rq_ready())) {
		if ((real = EARLY(psignal)))
			real(sig, s);
		else
			rq_early_psignal(sig, s);
		return;
	}
	line_begin(0);
	rq_real.psignal(sig, s);
	line_end();
}

RQ_EXPORT void psiginfo(const siginfo_t *si, const char *s)
{
	void (*real)(const siginfo_t *, const char *);

	if (unlikely(!rq_ready())) {
		if ((real = EARLY(psiginfo)))
			real(si, s);
		else
			rq_early_psiginfo(si, s);
		return;
	}
	line_begin(0);
	rq_real.psiginfo(si, s);
	line_end();
}

RQ_EXPORT void vwarn(const char *fmt, va_list ap)
{
	void (*real)(const char *, va_list);
	int e = errno;

	if (unlikely(!rq_ready())) {
		errno = e;
		if ((real = EARLY(vwarn)))
			real(fmt, ap);
		else
			rq_early_vwarn(fmt, ap);
		return;
	}
	line_begin(0);
	errno = e;
	rq_real.vwarn(fmt, ap);
	line_end();
}

RQ_EXPORT void vwarnx(const char *fmt, va_list ap)
{
	void (*real)(const char *, va_list);

	if (unlikely(!rq_ready())) {
		if ((real = EARLY(vwarnx)))
			real(fmt, ap);
		else
			rq_early_vwarnx(fmt, ap);
		return;
	}
	line_begin(0);
	rq_real.vwarnx(fmt, ap);
	line_end();
}

RQ_EXPORT void warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
}

RQ_EXPORT void warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
}

RQ_EXPORT void verr(int status, const char *fmt, va_list ap)
{
	void (*real)(int, const char *, va_list);
	int e = errno;

	if (unlikely(!rq_ready())) {
		errno = e;
		if ((real = EARLY(verr)))
			real(status, fmt, ap);
		rq_early_vwarn(fmt, ap);
		exit(status);
	}
	line_begin(1);
	errno = e;
	rq_real.verr(status, fmt, ap);
	exit(status); /* not reached: verr exits */
}

RQ_EXPORT void verrx(int status, const char *fmt, va_list ap)
{
	void (*real)(int, const char *, va_list);

	if (unlikely(!rq_ready())) {
		if ((real = EARLY(verrx)))
			real(status, fmt, ap);
		rq_early_vwarnx(fmt, ap);
		exit(status);
	}
	line_begin(1);
	rq_real.verrx(status, fmt, ap);
	exit(status); /* not reached: verrx exits */
}

RQ_EXPORT void err(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(status, fmt, ap);
	va_end(ap); /* not reached: verr exits */
}

RQ_EXPORT void errx(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verrx(status, fmt, ap);
	va_end(ap); /* not reached: verrx exits */
}

/*
 * error() has no va_list twin in this glibc: the message is formatted here
 * and passed as "%s" (a format of its own for %m and errno: formatted first,
 * as glibc formats it before it prints anything that could change errno).
 */
RQ_EXPORT void error(int status, int errnum, const char *fmt, ...)
{
	void (*real)(int, int, const char *, ...);
	char buf[512], *heap = NULL;
	va_list ap;
	int n;

	if (unlikely(!rq_ready())) {
		va_start(ap, fmt);
		if ((real = EARLY(error))) {
			n = rq_format(buf, sizeof(buf), &heap, -1, fmt, ap);
			real(status, errnum, "%s", n < 0 ? fmt : heap ? heap : buf);
			free(heap);
		} else {
			rq_early_error(status, errnum, 0, NULL, 0, fmt, ap);
		}
		va_end(ap);
		return;
	}
	va_start(ap, fmt);
	n = rq_format(buf, sizeof(buf), &heap, -1, fmt, ap);
	va_end(ap);
	fflush(stdout);
	line_begin(status != 0);
	rq_real.error(status, errnum, "%s", n < 0 ? fmt : heap ? heap : buf);
	line_end();
	free(heap);
}

/*
 * error_at_line() prints nothing for a repeat of the previous file and line
 * when error_one_per_line is set (and returns, whatever the status); the
 * same test here keeps a lone prefix out.
 */
RQ_EXPORT void error_at_line(int status, int errnum, const char *file, unsigned int line,
			     const char *fmt, ...)
{
	static const char *old_file;
	static unsigned int old_line;
	void (*real)(int, int, const char *, unsigned int, const char *, ...) = NULL;
	char buf[512], *heap = NULL;
	va_list ap;
	int n, quiet = 0, ready = rq_ready();

	if (error_one_per_line) {
		quiet = old_line == line && (file == old_file ||
					     (old_file && file && !strcmp(old_file, file)));
		old_file = file;
		old_line = line;
	}
	if (unlikely(!ready) && !(real = EARLY(error_at_line))) {
		if (!quiet) {
			va_start(ap, fmt);
			rq_early_error(status, errnum, 1, file, line, fmt, ap);
			va_end(ap);
		}
		return;
	}
	va_start(ap, fmt);
	n = rq_format(buf, sizeof(buf), &heap, -1, fmt, ap);
	va_end(ap);
	if (unlikely(!ready)) {
		real(status, errnum, file, line, "%s", n < 0 ? fmt : heap ? heap : buf);
		free(heap);
		return;
	}
	if (!quiet) {
		fflush(stdout);
		line_begin(status != 0);
	}
	rq_real.error_at_line(status, errnum, file, line, "%s", n < 0 ? fmt : heap ? heap : buf);
	if (!quiet)
		line_end();
	free(heap);
}

RQ_EXPORT void __assert_fail(const char *expr, const char *file, unsigned int line,
			     const char *func)
{
	void (*real)(const char *, const char *, unsigned int, const char *);

	if (unlikely(!rq_ready())) {
		if ((real = EARLY(__assert_fail)))
			real(expr, file, line, func);
		rq_early_assert(expr, file, line, func);
	}
	line_begin(1);
	rq_real.__assert_fail(expr, file, line, func);
	abort();
}
