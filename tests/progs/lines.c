/*
 * Line state cases for test_preload (issue 16), each writing a fixed text
 * that the test compares byte for byte with and without the library.
 *
 *   lines mixed          stdio and write(2) on stderr, in every order
 *   lines buffered DIR   fully buffered stdout and a .log FILE next to write(2)
 *   lines unlocked       putc_unlocked and friends, inlined at -O2, ending lines
 *   lines long           fprintf, fputs and puts of 1.5 KB to 100 KB lines on stderr
 *   lines workers N      N forked workers, 2000 fprintf lines of 1.5 KB each on stderr
 *   lines own            lines that carry reqctx's prefix already, inside reqctx_run("abc123")
 *   lines partial N      N lines on stderr, each in three write(2)s, with a SIGUSR1
 *                        handler that write(2)s "sig\n" (the test sends the signals)
 *   lines linebuf        stdout line-buffered (setvbuf) with a 64-byte buffer:
 *                        partial lines, lines longer than the buffer, putchar_unlocked
 *   lines formats        write(2) and writev of JSON, logfmt and text lines on stderr,
 *                        whole and in pieces, inside reqctx_run("abc")
 *   lines returns        the stdio calls' return values on a buffered stdout and an
 *                        unbuffered stderr, 3000 times each: exits 10 + the call
 *                        that returned something else than glibc documents
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void raw(int fd, const char *s)
{
	size_t n = strlen(s);

	if (write(fd, s, n) != (ssize_t)n)
		_exit(3);
}

static int mixed(void)
{
	fprintf(stderr, "mixed ");
	fputs("stdio ", stderr);
	raw(2, "and raw\n");
	raw(2, "raw ");
	fprintf(stderr, "then stdio\n");
	fputs("a\n", stderr);
	raw(2, "b\n");
	fputs("c\n", stderr);
	raw(2, "part");
	fputc(' ', stderr);
	raw(2, "x\n");
	return 0;
}

static int buffered(const char *dir)
{
	char path[512];
	FILE *f;

	printf("buffered line\n");
	raw(1, "raw line\n");
	printf("part");
	fflush(stdout);
	raw(1, " raw\n");
	printf("held");
	raw(1, "raw whole\n");
	printf(" end\n");
	snprintf(path, sizeof(path), "%s/app.log", dir);
	if (!(f = fopen(path, "a")))
		return 4;
	fprintf(f, "buffered\n");
	raw(fileno(f), "raw\n");
	fprintf(f, "part");
	fflush(f);
	raw(fileno(f), " raw\n");
	fclose(f);
	return 0;
}

static int unlocked(void)
{
	fputs("abc", stderr);
	putc_unlocked('\n', stderr);
	fputs("next\n", stderr);
	putc_unlocked('q', stderr);
	putc_unlocked('\n', stderr);
	fwrite_unlocked("ab\n", 1, 3, stderr);
	fputs("after\n", stderr);
	printf("abc");
	putchar_unlocked('\n');
	printf("next\n");
	putchar_unlocked('s');
	putchar_unlocked('\n');
	printf("after\n");
	return 0;
}

static char *filled(size_t n, char c)
{
	char *s = malloc(n + 1);

	if (!s)
		exit(5);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static int longs(void)
{
	char *a = filled(1500, 'a'), *b = filled(20000, 'b'), *c = filled(100000, 'c');

	fprintf(stderr, "%s\n", a);
	b[19999] = '\n';
	fputs(b, stderr);
	fprintf(stderr, "%s\n", c);
	return 0;
}

static int workers(int n)
{
	char *x = filled(1480, 'x');

	for (int w = 0; w < n; w++) {
		pid_t p = fork();

		if (p < 0)
			return 6;
		if (p == 0) {
			for (int i = 0; i < 2000; i++)
				fprintf(stderr, "w%d %04d %s\n", w, i, x);
			_exit(0);
		}
	}
	for (int w = 0; w < n; w++) {
		int st;

		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			return 7;
	}
	return 0;
}

static void own_body(void *arg)
{
	const char *id = arg;

	printf("[req:abc123] incoming\n");
	printf("[req:%s] ", id);
	printf("split by the program\n");
	printf("[req:other] not ours\n");
	fflush(stdout);
	fprintf(stderr, "[req:abc123] incoming\n");
	raw(2, "[req:abc123] raw\n");
	raw(2, "[req:abc");
	raw(2, "123] cut\n");
	raw(2, "plain\n");
}

static int own(void)
{
	int (*run)(const char *, void (*)(void *), void *) =
		(int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");

	if (run)
		return run("abc123", own_body, "abc123") ? 8 : 0;
	own_body("abc123");
	return 0;
}

static void formats_body(void *arg)
{
	struct iovec v[2] = { { "{", 1 }, { "\"c\":4}\n", 7 } };

	(void)arg;
	raw(2, "{\"w\":1}\n");
	raw(2, "{\"a\":");
	raw(2, "2}\n");
	raw(2, "  ");
	raw(2, "{\"b\":3}\n");
	if (writev(2, v, 2) != 8)
		_exit(3);
	raw(2, "{}\n{ }\ntext\n");
	raw(2, "level=info request_id=mine\n");
	raw(2, "{\"request_id\":\"mine\"}\n");
	fprintf(stderr, "{\"f\":");
	raw(2, "5}\n");
}

static int formats(void)
{
	int (*run)(const char *, void (*)(void *), void *) =
		(int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");

	if (run)
		return run("abc", formats_body, NULL) ? 8 : 0;
	formats_body(NULL);
	return 0;
}

static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
	(void)sig;
	if (write(2, "sig\n", 4) == 4)
		handled++;
}

static int partial(int n)
{
	struct sigaction sa;
	char line[64];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		return 9;
	sigset_t usr1;

	for (int i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "main %05d ", i);
		raw(2, line);
		raw(2, "middle");
		raw(2, " end\n");
	}
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL); /* no handler line after the count */
	printf("handled=%d\n", (int)handled);
	return 0;
}

static int linebuf(void)
{
	static char buf[64];
	char *longer = filled(300, 'l');

	if (setvbuf(stdout, buf, _IOLBF, sizeof(buf)))
		return 16;
	for (int i = 0; i < 50; i++) {
		printf("part %d ", i);
		fputs("more ", stdout);
		printf("%s", longer);
		putchar_unlocked(' ');
		fwrite("end\n", 1, 4, stdout);
		putchar_unlocked('u');
		putchar_unlocked('\n');
	}
	return 0;
}

/* Every call's documented return value, on stream f. */
static int returns_on(FILE *f)
{
	for (int i = 0; i < 3000; i++) {
		if (fprintf(f, "fprintf %d\n", i) != 10 + (i > 9) + (i > 99) + (i > 999))
			return 10;
		if (fwrite("fwrite\n", 1, 7, f) != 7 || fwrite("ab", 2, 1, f) != 1)
			return 11;
		if (fputs(" fputs\n", f) < 0 || fputc('c', f) != 'c' || putc('\n', f) != '\n')
			return 12;
		if (fwrite_unlocked("unlocked\n", 1, 9, f) != 9 || fputs_unlocked("u\n", f) < 0)
			return 13;
	}
	return 0;
}

static int returns(void)
{
	int r = returns_on(stdout);

	if (!r)
		r = returns_on(stderr);
	if (!r && (puts("puts") < 0 || printf("%s", "printf\n") != 7))
		r = 14;
	if (fflush(stdout) || ferror(stdout) || ferror(stderr))
		r = 15;
	return r;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "returns"))
		return returns();
	if (argc >= 2 && !strcmp(argv[1], "linebuf"))
		return linebuf();
	if (argc >= 2 && !strcmp(argv[1], "mixed"))
		return mixed();
	if (argc >= 3 && !strcmp(argv[1], "buffered"))
		return buffered(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "unlocked"))
		return unlocked();
	if (argc >= 2 && !strcmp(argv[1], "long"))
		return longs();
	if (argc >= 3 && !strcmp(argv[1], "workers"))
		return workers(atoi(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "own"))
		return own();
	if (argc >= 2 && !strcmp(argv[1], "formats"))
		return formats();
	if (argc >= 3 && !strcmp(argv[1], "partial"))
		return partial(atoi(argv[2]));
	return 2;
}
