/*
 * A host whose own constructors do I/O (test_hardening).
 *   hard_ctor DIR   a constructor(101) writes to stderr, to stdout through
 *                   stdio, and to DIR/ctor.log; main writes one more line to
 *                   each. Built by the test with -DHARD_CTOR_LIB and linked
 *                   against a library whose constructor also writes (it runs
 *                   before libreqctx.so's), hardlib_done() says what it did.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HARD_CTOR_LIB
const char *hardlib_done(void);
#endif

static int ctor_ok;

static void append(const char *dir, const char *text)
{
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/ctor.log", dir);
	fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		return;
	close(fd);
}

__attribute__((constructor(101))) static void early(int argc, char **argv)
{
	if (argc < 2)
		return;
	if (write(2, "main ctor err\n", 14) != 14)
		return;
	printf("main ctor out\n");
	fflush(stdout);
	append(argv[1], "main ctor log\n");
	ctor_ok = 1;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !ctor_ok)
		return 2;
#ifdef HARD_CTOR_LIB
	printf("lib: %s\n", hardlib_done());
#endif
	fprintf(stderr, "main err\n");
	printf("main out\n");
	append(argv[1], "main log\n");
	return 0;
}
