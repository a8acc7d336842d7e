/*
 * bench_conns: the server's memory per idle keep-alive connection.
 *
 *   bench_conns PORT N PID
 *
 * Reads VmRSS of PID, opens N connections to 127.0.0.1:PORT, sends one
 * keep-alive request on each and reads its whole response (a small one:
 * the head and a Content-Length body in one read), then reads VmRSS again
 * with every connection still open and idle. Prints
 * "rss_before_kb A", "rss_after_kb B", "conns N" and closes them all.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* The request each connection sends. */
#define REQ "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
/* How long one response may take, in ms. */
#define RESP_MS 10000
/* Connections in flight at once while opening. */
#define BATCH 200

static long rss_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	fclose(f);
	return kb;
}

static int dial(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads until the response's head and Content-Length body are in: 0, or -1. */
static int read_response(int fd)
{
	char buf[4096];
	size_t have = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *end, *cl;
		ssize_t r;

		if (poll(&p, 1, RESP_MS) <= 0)
			return -1;
		r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r <= 0)
			return -1;
		have += (size_t)r;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		cl = strcasestr(buf, "content-length:");
		if (!cl || (size_t)(end + 4 - buf) + (size_t)atol(cl + 15) <= have)
			return 0;
	}
}

/* Opens fds[a..b): connects and sends them all first, then reads the answers. */
static int open_batch(int port, int *fds, int a, int b)
{
	for (int i = a; i < b; i++) {
		fds[i] = dial(port);
		if (fds[i] < 0 || write(fds[i], REQ, sizeof(REQ) - 1) != sizeof(REQ) - 1) {
			fprintf(stderr, "bench_conns: connection %d: %s\n", i, strerror(errno));
			return -1;
		}
	}
	for (int i = a; i < b; i++)
		if (read_response(fds[i]) < 0) {
			fprintf(stderr, "bench_conns: connection %d got no response\n", i);
			return -1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	long pid, before, after;
	int port, n, *fds;

	if (argc != 4 || (port = atoi(argv[1])) <= 0 || (n = atoi(argv[2])) <= 0 ||
	    (pid = atol(argv[3])) <= 0) {
		fprintf(stderr, "usage: bench_conns PORT N PID\n");
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fds = calloc((size_t)n, sizeof(*fds));
	if (!fds)
		return 1;
	before = rss_kb(pid);
	for (int i = 0; i < n; i += BATCH)
		if (open_batch(port, fds, i, i + BATCH < n ? i + BATCH : n) < 0)
			return 1;
	usleep(200000); /* let the server settle back to idle */
	after = rss_kb(pid);
	printf("rss_before_kb %ld\nrss_after_kb %ld\nconns %d\n", before, after, n);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	return before < 0 || after < 0;
}
