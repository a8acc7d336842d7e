/*
 * bench_idgen: how fast the request-ID generator is, linked directly
 * (src/id.c), and what it asks of the kernel.
 *
 *   bench_idgen [N [THREADS]]
 *
 * Each of THREADS threads (default 1) draws N UUIDv4s (default 10^7) in a
 * loop; prints "ids_per_sec_per_thread R" (the median thread's rate) and
 * "ids N*THREADS". Run it under strace -f -e trace=getrandom to count the
 * syscalls: one seed per thread is expected, none per ID.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "id.h"

/* Most threads the benchmark starts. */
#define THREADS_MAX 64

struct job {
	long n;
	double rate;
	unsigned sink;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct job *j = arg;
	char id[RQ_UUID_LEN];
	double t0;

	rq_uuid4(id); /* the seed is drawn once per thread, outside the timing */
	t0 = now();
	for (long i = 0; i < j->n; i++) {
		rq_uuid4(id);
		j->sink += (unsigned char)id[i & 31];
	}
	j->rate = (double)j->n / (now() - t0);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000000;
	int t = argc > 2 ? atoi(argv[2]) : 1;
	struct job jobs[THREADS_MAX];
	pthread_t th[THREADS_MAX];
	double rates[THREADS_MAX];
	unsigned sink = 0;

	if (n <= 0 || t < 1 || t > THREADS_MAX) {
		fprintf(stderr, "usage: bench_idgen [N [THREADS]]\n");
		return 2;
	}
	for (int i = 0; i < t; i++) {
		jobs[i] = (struct job){ .n = n };
		if (pthread_create(&th[i], NULL, run, &jobs[i]) != 0) {
			perror("bench_idgen: pthread_create");
			return 1;
		}
	}
	for (int i = 0; i < t; i++) {
		pthread_join(th[i], NULL);
		rates[i] = jobs[i].rate;
		sink += jobs[i].sink;
	}
	qsort(rates, (size_t)t, sizeof(rates[0]), cmp);
	printf("ids_per_sec_per_thread %.0f\nids %ld\nsink %u\n", rates[t / 2], n * t, sink);
	return 0;
}
