/*
 * srv_slow: a slow HTTP upstream for the real-server suite. It listens on
 * 127.0.0.1 on a free port, prints "port N" on stdout, and serves each
 * connection on a thread of its own:
 *   - reads one request head;
 *   - waits MIN..MAX ms (default 20..50, picked at random per request);
 *   - answers 200 with "ok\n" and closes.
 * With --overrun, the answer carries a few bytes more than its
 * Content-Length says, so a proxy in front logs a warning about the upstream
 * while it reads the answer.
 *
 * With --stats FILE, FILE holds "max_inflight N": the most requests it was
 * ever waiting on at once (rewritten whenever that grows).
 *
 * usage: srv_slow [--overrun] [--min-ms 20] [--max-ms 50] [--stats FILE]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Largest request head read. */
#define HEAD_MAX 16384

#define BODY "ok\n"
/* The bytes past Content-Length that --overrun appends. */
#define OVERRUN "overrun\n"

static bool overrun;
static long min_ms = 20, max_ms = 50;
static const char *stats;
static long inflight, max_inflight;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

/* Counts a request in (+1) or out (-1); records a new maximum in the stats file. */
static void count(int d)
{
	FILE *f;

	pthread_mutex_lock(&stats_lock);
	inflight += d;
	if (inflight > max_inflight) {
		max_inflight = inflight;
		if (stats && (f = fopen(stats, "w"))) {
			fprintf(f, "max_inflight %ld\n", max_inflight);
			fclose(f);
		}
	}
	pthread_mutex_unlock(&stats_lock);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Reads until the end of the head; returns 0, or -1 on EOF or error first. */
static int read_head(int fd)
{
	char buf[HEAD_MAX];
	size_t have = 0;

	while (have < sizeof(buf)) {
		ssize_t r = read(fd, buf + have, sizeof(buf) - have);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		have += (size_t)r;
		if (memmem(buf, have, "\r\n\r\n", 4))
			return 0;
	}
	return -1;
}

static void pause_ms(void)
{
	unsigned r = 0;
	long ms;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (unsigned)rand();
	ms = min_ms + (long)(r % (unsigned)(max_ms - min_ms + 1));
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	char resp[256];
	int n;

	if (read_head(fd) == 0) {
		count(1);
		pause_ms();
		count(-1);
		n = snprintf(resp, sizeof(resp),
			     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			     "Connection: close\r\n\r\n%s%s",
			     strlen(BODY), BODY, overrun ? OVERRUN : "");
		write_all(fd, resp, (size_t)n);
	}
	close(fd);
	return NULL;
}

static int num(const char *s, long *out)
{
	char *e;

	errno = 0;
	*out = strtol(s, &e, 10);
	return errno || e == s || *e || *out < 0 || *out > 10000 ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	pthread_attr_t at;
	int ls;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--overrun"))
			overrun = true;
		else if (!strcmp(argv[i], "--min-ms") && i + 1 < argc && !num(argv[i + 1], &min_ms))
			i++;
		else if (!strcmp(argv[i], "--max-ms") && i + 1 < argc && !num(argv[i + 1], &max_ms))
			i++;
		else if (!strcmp(argv[i], "--stats") && i + 1 < argc)
			stats = argv[++i];
		else {
			fprintf(stderr, "usage: srv_slow [--overrun] [--min-ms 20] [--max-ms 50] "
				"[--stats FILE]\n");
			return 2;
		}
	}
	if (max_ms < min_ms) {
		fprintf(stderr, "srv_slow: --max-ms is below --min-ms\n");
		return 2;
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1024) < 0 ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
		perror("srv_slow");
		return 1;
	}
	printf("port %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	for (;;) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			perror("srv_slow: accept");
			return 1;
		}
		if (pthread_create(&t, &at, serve, (void *)(long)fd) != 0)
			close(fd);
	}
}
