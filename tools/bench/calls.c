/*
 * bench_calls: N iterations of one kind of call, for counting what the
 * library adds to each (instructions under callgrind, syscalls under strace).
 *
 *   bench_calls MODE [N]
 *
 *   devnull     write(2) of 64 bytes to /dev/null
 *   socketpair  write then read of 64 bytes over an AF_UNIX socketpair
 *   stderr      write(2) of one 80-byte line to fd 2 (a log stream under
 *               the library: the line gets its prefix)
 *   printf      fprintf of one 80-byte line to "x.log" opened for appending
 *               (a log file under the library), flushed inside the loop
 *   stderr-json write(2) of one 80-byte JSON object line to fd 2
 *   mutex       pthread_mutex_lock then pthread_mutex_unlock of an
 *               uncontended mutex (a host that never waits on a condvar)
 *   mutexq      the same, once a job queue exists (a thread waited on a
 *               condvar with another mutex, as in Node's libuv threadpool)
 *
 * Set-up and tear-down happen outside loop(), so that
 * valgrind --tool=callgrind --toggle-collect=loop counts the loop alone.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bytes per non-log I/O call. */
#define IO_BYTES 64
/* The log line: 79 characters and a newline. */
#define LINE "GET /index.html 200 0.000123s upstream=127.0.0.1:8080 bytes=612 ua=curl/7.88.1\n"
/* A JSON logger's line of the same length (pino's keys). */
#define JLINE "{\"level\":30,\"time\":1700000000000,\"pid\":4242,\"msg\":\"GET /index.html 200 0.12ms\"}\n"

enum mode { DEVNULL, SOCKETPAIR, STDERR, PRINTF, STDERR_JSON, MUTEX, MUTEXQ };

static int fd_a = -1, fd_b = -1;
static FILE *logfile;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER, qm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER;
static int queued;

/* The producer of one job, for mutexq's set-up. */
static void *produce(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&qm);
	queued = 1;
	pthread_cond_signal(&qcv);
	pthread_mutex_unlock(&qm);
	return NULL;
}

static int setup(enum mode m)
{
	int sv[2];

	switch (m) {
	case DEVNULL:
		fd_a = open("/dev/null", O_WRONLY);
		return fd_a < 0 ? -1 : 0;
	case SOCKETPAIR:
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
			return -1;
		fd_a = sv[0];
		fd_b = sv[1];
		return 0;
	case STDERR:
	case STDERR_JSON:
		return 0;
	case PRINTF:
		logfile = fopen("x.log", "a");
		return logfile ? 0 : -1;
	case MUTEX:
		return 0;
	case MUTEXQ: {
		pthread_t t;

		pthread_mutex_lock(&qm);
		if (pthread_create(&t, NULL, produce, NULL) != 0)
			return -1;
		while (!queued)
			pthread_cond_wait(&qcv, &qm);
		pthread_mutex_unlock(&qm);
		return pthread_join(t, NULL) == 0 ? 0 : -1;
	}
	}
	return -1;
}

/* The measured loop; noinline so that callgrind can toggle on it. */
__attribute__((noinline)) static long loop(enum mode m, long n)
{
	char buf[IO_BYTES];
	long bad = 0;

	memset(buf, 'x', sizeof(buf));
	for (long i = 0; i < n; i++) {
		switch (m) {
		case DEVNULL:
			bad += write(fd_a, buf, sizeof(buf)) != sizeof(buf);
			break;
		case SOCKETPAIR:
			bad += write(fd_a, buf, sizeof(buf)) != sizeof(buf);
			bad += read(fd_b, buf, sizeof(buf)) != sizeof(buf);
			break;
		case STDERR:
			bad += write(2, LINE, sizeof(LINE) - 1) != sizeof(LINE) - 1;
			break;
		case STDERR_JSON:
			bad += write(2, JLINE, sizeof(JLINE) - 1) != sizeof(JLINE) - 1;
			break;
		case PRINTF:
			bad += fprintf(logfile, "%.*s", (int)sizeof(LINE) - 1, LINE) < 0;
			break;
		case MUTEX:
		case MUTEXQ:
			bad += pthread_mutex_lock(&mu) != 0;
			bad += pthread_mutex_unlock(&mu) != 0;
			break;
		}
	}
	if (logfile)
		fflush(logfile);
	return bad;
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "devnull", "socketpair", "stderr", "printf",
					       "stderr-json", "mutex", "mutexq" };
	long n = argc > 2 ? atol(argv[2]) : 100000, bad;
	int m = -1;

	for (int i = 0; argc > 1 && i < 7; i++)
		if (!strcmp(argv[1], names[i]))
			m = i;
	if (m < 0 || n < 0) {
		fprintf(stdout, "usage: bench_calls devnull|socketpair|stderr|printf|stderr-json|"
				"mutex|mutexq [N]\n");
		return 2;
	}
	if (setup((enum mode)m) < 0) {
		perror("bench_calls: setup");
		return 1;
	}
	bad = loop((enum mode)m, n);
	if (logfile)
		fclose(logfile);
	if (bad) {
		fprintf(stdout, "bench_calls: %ld calls failed\n", bad);
		return 1;
	}
	return 0;
}
