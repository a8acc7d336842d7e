/*
 * Calls every stdio entry point reqctx wraps, inside reqctx_run("abc") when
 * the library is there, then one line outside. Built at -O0 and at -O2 with
 * _FORTIFY_SOURCE=2, where the compiler turns printf into puts, putchar,
 * fwrite, fputs and the _chk functions.
 *
 *   stdio_all        text lines
 *   stdio_all json   the same calls printing JSON object lines (the message
 *                    functions still print their text lines)
 */
#include <dlfcn.h>
#include <err.h>
#include <errno.h>
#include <error.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void vp(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

static void vfp(FILE *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
}

static void vdp(int fd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdprintf(fd, fmt, ap);
	va_end(ap);
}

static void vw(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
}

static void vwx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
}

static void body(void *arg)
{
	const char *s = arg;

	printf("printf-literal\n");
	printf("%s\n", s);
	printf("x");
	printf("\n");
	printf("printf %d\n", 42);
	vp("vprintf %d\n", 1);
	fprintf(stdout, "fprintf-literal\n");
	fprintf(stdout, "%s", "fprintf-s\n");
	fprintf(stdout, "fprintf %d\n", 2);
	vfp(stdout, "vfprintf %d\n", 3);
	fwrite("fwrite\n", 1, 7, stdout);
	fwrite_unlocked("fwrite_unlocked\n", 1, 16, stdout);
	fputs("fputs\n", stdout);
	fputs_unlocked("fputs_unlocked\n", stdout);
	puts("puts");
	fputc('c', stdout);
	fputc('\n', stdout);
	putc('p', stdout);
	putc('\n', stdout);
	putchar('r');
	putchar('\n');
	fputc_unlocked('u', stdout);
	fputc_unlocked('\n', stdout);
	putc_unlocked('q', stdout);
	putc_unlocked('\n', stdout);
	putchar_unlocked('s');
	putchar_unlocked('\n');
	printf("two\nlines\n");
	printf("partial ");
	printf("line\n");
	fflush(stdout);
	dprintf(1, "dprintf %d\n", 4);
	vdp(1, "vdprintf %d\nvdprintf-second\n", 5);
	errno = ENOENT;
	perror("perror");
	psignal(SIGTERM, "psignal");
	errno = EACCES;
	warn("warn %d", 1);
	warnx("warnx %d", 2);
	errno = EACCES;
	vw("vwarn %d", 3);
	vwx("vwarnx %d", 4);
	error(0, EPERM, "error %d", 5);
	error_at_line(0, 0, "file.c", 7, "error_at_line %d", 6);
	fprintf(stderr, "fprintf-stderr %d\n", 7);
	printf("flushed at exit\n");
}

/* body's calls, each line a JSON object; a line started by a character function goes on with fputs. */
static void body_json(void *arg)
{
	const char *s = arg;

	printf("{\"printf-literal\":1}\n");
	printf("%s\n", s);
	printf("{\"x\":");
	printf("1}\n");
	printf("{\"printf\":%d}\n", 42);
	vp("{\"vprintf\":%d}\n", 1);
	fprintf(stdout, "{\"fprintf-literal\":1}\n");
	fprintf(stdout, "%s", "{\"fprintf-s\":1}\n");
	fprintf(stdout, "{\"fprintf\":%d}\n", 2);
	vfp(stdout, "{\"vfprintf\":%d}\n", 3);
	fwrite("{\"fwrite\":1}\n", 1, 13, stdout);
	fwrite_unlocked("{\"fwrite_unlocked\":1}\n", 1, 22, stdout);
	fputs("{\"fputs\":1}\n", stdout);
	fputs_unlocked("{\"fputs_unlocked\":1}\n", stdout);
	puts("{\"puts\":1}");
	puts("{}");
	fputc('{', stdout);
	fputs("\"fputc\":1}\n", stdout);
	putc('{', stdout);
	fputs("\"putc\":1}\n", stdout);
	putchar('{');
	fputs("\"putchar\":1}\n", stdout);
	fputc_unlocked('{', stdout);
	fputs("\"u\":1}\n", stdout);
	putc_unlocked('{', stdout);
	fputs("\"q\":1}\n", stdout);
	putchar_unlocked('{');
	fputs("\"s\":1}\n", stdout);
	printf("{\"two\":1}\n{ }\n");
	printf("  {\"partial\":");
	printf("\"line\"}\n");
	printf("{\"request_id\":\"own\"}\n");
	fflush(stdout);
	dprintf(1, "{\"dprintf\":%d}\n", 4);
	vdp(1, "{\"vdprintf\":%d}\n{\"vdprintf-second\":1}\n", 5);
	errno = ENOENT;
	perror("perror");
	psignal(SIGTERM, "psignal");
	errno = EACCES;
	warn("warn %d", 1);
	warnx("warnx %d", 2);
	errno = EACCES;
	vw("vwarn %d", 3);
	vwx("vwarnx %d", 4);
	error(0, EPERM, "error %d", 5);
	error_at_line(0, 0, "file.c", 7, "error_at_line %d", 6);
	fprintf(stderr, "{\"fprintf-stderr\":%d}\n", 7);
	fputs("{}\n", stderr);
	printf("{\"flushed at exit\":1}\n");
}

int main(int argc, char **argv)
{
	int (*run)(const char *, void (*)(void *), void *) =
		(int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");
	int json = argc > 1 && !strcmp(argv[1], "json");
	void (*fn)(void *) = json ? body_json : body;
	const char *arg = json ? "{\"printf-s\":1}" : "printf-s";

	if (run)
		run("abc", fn, (void *)arg);
	else
		fn((void *)arg);
	fprintf(stderr, json ? "{\"outside\":1}\n" : "outside\n");
	printf(json ? "{\"outside\":1}\n" : "outside\n");
	return 0;
}
