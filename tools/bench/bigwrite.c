/*
 * bench_bigwrite: one big multi-line write(2), for counting what the library
 * makes of it (system calls under strace, time).
 *
 *   bench_bigwrite MB LEN
 *
 * Fills MB megabytes with lines of LEN bytes (LEN - 1 characters and a
 * newline), then writes them to fd 1 with write(2), again after a short
 * write, as a careful program does. Prints "ns N writes W" on stderr: the
 * time spent in the writes and how many write() calls it took.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	size_t mb = argc > 1 ? strtoul(argv[1], NULL, 10) : 100;
	size_t len = argc > 2 ? strtoul(argv[2], NULL, 10) : 80, n = mb << 20, done = 0;
	int writes = 0;
	long long t0;
	char *buf;

	if (len < 2 || !(buf = malloc(n)))
		return 2;
	for (size_t i = 0; i < n; i++)
		buf[i] = i % len == len - 1 ? '\n' : (char)('a' + i % 26);
	t0 = now_ns();
	while (done < n) {
		ssize_t r = write(1, buf + done, n - done);

		writes++;
		if (r <= 0)
			return 3;
		done += (size_t)r;
	}
	fprintf(stderr, "ns %lld writes %d\n", now_ns() - t0, writes);
	return 0;
}
