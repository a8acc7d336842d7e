/*
 * glibc 2.36's err/warn/error/perror/psignal/assert, byte for byte: the same
 * text (translated through libc's own catalogue), the same locking of
 * stderr, the same flushing and the same exit. They print through glibc's
 * exported _IO_ entry points, which reqctx does not wrap, as __fxprintf does:
 * to a wide-oriented stderr through the wide printf.
 *
 * psiginfo is the exception: before the real one is known it prints
 * psignal's line, without the detail glibc adds in parentheses.
 */
#include "early.h"

#include <error.h>
#include <libintl.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "preload.h"

extern int _IO_vfprintf(FILE *, const char *, va_list);
extern int _IO_fflush(FILE *);
extern char *__progname;

/* glibc's _(): its message catalogue. */
static const char *tr(const char *msg)
{
	return dcgettext("libc", msg, LC_MESSAGES);
}

/* __vfxprintf: a wide stream gets the format widened, as glibc does. */
static void vfx(FILE *fp, const char *fmt, va_list ap)
{
	wchar_t small[512], *w = small;
	size_t n = strlen(fmt) + 1;
	mbstate_t mb;
	const char *p = fmt;

	if (fwide(fp, 0) <= 0) {
		_IO_vfprintf(fp, fmt, ap);
		return;
	}
	if (n > RQ_ARRAY_LEN(small) && !(w = malloc(n * sizeof(*w))))
		return;
	memset(&mb, 0, sizeof(mb));
	if (mbsrtowcs(w, &p, n, &mb) != (size_t)-1)
		vfwprintf(fp, w, ap);
	if (w != small)
		free(w);
}

__attribute__((format(printf, 2, 3))) static void fx(FILE *fp, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfx(fp, fmt, ap);
	va_end(ap);
}

static void perror_to(FILE *fp, const char *s, int errnum)
{
	char buf[1024];
	const char *colon;

	if (!s || !*s)
		s = colon = "";
	else
		colon = ": ";
	fx(fp, "%s%s%s\n", s, colon, strerror_r(errnum, buf, sizeof(buf)));
}

/* perror leaves an unoriented stderr unoriented: it writes through a FILE of its own. */
void rq_early_perror(const char *s)
{
	int errnum = errno, fd = -1;
	FILE *fp = NULL;

	if (fwide(stderr, 0) != 0 || (fd = fileno(stderr)) == -1 || (fd = dup(fd)) == -1 ||
	    !(fp = fdopen(fd, "w+"))) {
		if (fd != -1)
			close(fd);
		perror_to(stderr, s, errnum);
		return;
	}
	perror_to(fp, s, errnum);
	fclose(fp);
}

void rq_early_psignal(int sig, const char *s)
{
	const char *colon, *desc;
	char *buf;

	if (!s || !*s)
		s = colon = "";
	else
		colon = ": ";
	if ((desc = sigdescr_np(sig))) {
		fx(stderr, "%s%s%s\n", s, colon, tr(desc));
	} else if (asprintf(&buf, tr("%s%sUnknown signal %d\n"), s, colon, sig) < 0) {
		fx(stderr, "%s%s%s\n", s, colon, tr("Unknown signal\n"));
	} else {
		fx(stderr, "%s", buf);
		free(buf);
	}
}

void rq_early_psiginfo(const siginfo_t *si, const char *s)
{
	rq_early_psignal(si->si_signo, s);
}

void rq_early_vwarnx(const char *fmt, va_list ap)
{
	flockfile(stderr);
	fx(stderr, "%s: ", __progname);
	if (fmt)
		vfx(stderr, fmt, ap);
	fx(stderr, "\n");
	funlockfile(stderr);
}

void rq_early_vwarn(const char *fmt, va_list ap)
{
	int e = errno;

	flockfile(stderr);
	if (fmt) {
		fx(stderr, "%s: ", __progname);
		vfx(stderr, fmt, ap);
		errno = e;
		fx(stderr, ": %m\n");
	} else {
		errno = e;
		fx(stderr, "%s: %m\n", __progname);
	}
	funlockfile(stderr);
}

void rq_early_error(int status, int errnum, int at_line, const char *file, unsigned int line,
		    const char *fmt, va_list ap)
{
	char buf[1024];
	int state;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
	_IO_fflush(stdout);
	flockfile(stderr);
	if (error_print_progname)
		error_print_progname();
	else
		fx(stderr, at_line ? "%s:" : "%s: ", program_invocation_name);
	if (at_line)
		fx(stderr, file ? "%s:%u: " : " ", file, line);
	vfx(stderr, fmt, ap);
	++error_message_count;
	if (errnum)
		fx(stderr, ": %s", strerror_r(errnum, buf, sizeof(buf)));
	fx(stderr, "\n");
	_IO_fflush(stderr);
	if (status)
		exit(status);
	funlockfile(stderr);
	pthread_setcancelstate(state, NULL);
}

void rq_early_assert(const char *expr, const char *file, unsigned int line, const char *func)
{
	char *str;
	int total;

	if (asprintf(&str, tr("%s%s%s:%u: %s%sAssertion `%s' failed.\n%n"), __progname,
		     __progname[0] ? ": " : "", file, line, func ? func : "", func ? ": " : "", expr,
		     &total) >= 0) {
		fx(stderr, "%s", str);
		_IO_fflush(stderr);
		free(str);
	} else {
		static const char msg[] = "Unexpected error.\n";

		RQ_RAW(write, 2, msg, sizeof(msg) - 1);
	}
	abort();
}
