/*
 * write(2) results and errno, reported on the file named by argv[1] (not a
 * log): the report must be the same with and without the library.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* The EFAULT and EINVAL cases below are deliberate. */
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wstringop-overread"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

static int rep;

static void report(const char *what, ssize_t r)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "%s: r=%zd errno=%s\n", what, r,
			 r < 0 ? strerror(errno) : errno == 99 ? "untouched" : strerror(errno));

	if (write(rep, line, (size_t)n) != n)
		_exit(3);
	errno = 99;
}

int main(int argc, char **argv)
{
	struct iovec v[3] = { { "a", 1 }, { "", 0 }, { "b\n", 2 } };

	if (argc < 2 || (rep = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
		return 2;
	errno = 99;
	report("line", write(1, "hello\n", 6));
	report("partial", write(1, "no newline ", 11));
	report("rest", write(1, "yet\n", 4));
	report("zero", write(1, "", 0));
	report("writev", writev(1, v, 3));
	report("badfd", write(-1, "x", 1));
	close(9);
	report("closed", write(9, "x", 1));
	report("efault", write(1, (void *)16, 5));
	report("einval-iov", writev(1, v, -1));
	report("stderr", write(2, "err line\n", 9));
	return 0;
}
