/*
 * bench_corrwrite: the log write path with batched log correlation, run
 * under the library (LD_PRELOAD), for counting what each log line costs with
 * callgrind (--toggle-collect=emit: the write(2) calls, the library's work in
 * them included, nothing else).
 *
 *   bench_corrwrite MODE [N]
 *
 *   line        N write(2)s of bench_calls' 80-byte line, which names no
 *               request line, to corr.log (a log file by its name)
 *   batch-miss  N/100 write(2)s of 100 such lines
 *   batch       N/100 rounds: 100 requests, each its own request line, are
 *               served over a loopback keep-alive connection, then one
 *               write(2) holds their 100 access lines (nginx's combined
 *               format), in the order they completed
 *
 * Before any line is written, requests are served, so that the library has
 * completed requests to match lines against (with none it looks at no line).
 * Prints the lines written.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINE "GET /index.html 200 0.000123s upstream=127.0.0.1:8080 bytes=612 ua=curl/7.88.1\n"
#define BATCH 100

static int logfd = -1, srv = -1, cli = -1;

/* The measured call; noinline so that callgrind can toggle on it. */
__attribute__((noinline)) static long emit(const char *b, size_t n)
{
	return write(logfd, b, n) == (ssize_t)n ? 0 : 1;
}

/* A keep-alive connection to ourselves: cli is the client's end, srv the accepted one. */
static int connect_self(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	cli = socket(AF_INET, SOCK_STREAM, 0);
	if (cli < 0 || connect(cli, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	srv = accept(l, NULL, NULL);
	close(l);
	return srv < 0 ? -1 : 0;
}

/* One request for `path`, read by the server and answered whole. Returns 0 or -1. */
static int serve(const char *path)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	char req[256], buf[1024];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: b\r\n\r\n", path);
	size_t have = 0;

	if (write(cli, req, (size_t)n) != n || read(srv, buf, sizeof(buf)) != n ||
	    write(srv, resp, sizeof(resp) - 1) <= 0)
		return -1;
	while (have < 2 || memcmp(buf + have - 2, "ok", 2)) { /* the head has grown by the ID */
		ssize_t r = read(cli, buf + have, sizeof(buf) - have);

		if (r <= 0)
			return -1;
		have += (size_t)r;
		if (have == sizeof(buf))
			have = 0;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char batch[BATCH * 160];
	const char *mode = argc > 1 ? argv[1] : "";
	long n = argc > 2 ? atol(argv[2]) : 100000, bad = 0, lines = 0;

	logfd = open("corr.log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (logfd < 0 || connect_self() < 0)
		return 2;
	for (int i = 0; i < BATCH; i++) { /* requests whose lines are never written */
		char p[32];

		snprintf(p, sizeof(p), "/warm%d", i);
		if (serve(p) < 0)
			return 2;
	}
	if (!strcmp(mode, "line")) {
		for (; lines < n; lines++)
			bad += emit(LINE, sizeof(LINE) - 1);
	} else if (!strcmp(mode, "batch-miss")) {
		size_t len = 0;

		for (int i = 0; i < BATCH; i++)
			len += (size_t)snprintf(batch + len, sizeof(batch) - len, "%s", LINE);
		for (; lines < n; lines += BATCH)
			bad += emit(batch, len);
	} else if (!strcmp(mode, "batch")) {
		for (long r = 0; lines < n; r++, lines += BATCH) {
			size_t len = 0;

			for (int i = 0; i < BATCH; i++) {
				char p[48];

				snprintf(p, sizeof(p), "/r%ld/%d", r, i);
				if (serve(p) < 0)
					return 2;
				len += (size_t)snprintf(batch + len, sizeof(batch) - len,
							"127.0.0.1 - - [24/Nov/2026:06:05:44 +0000] \"GET %s "
							"HTTP/1.1\" 200 2 \"-\" \"curl/7.88.1\"\n", p);
			}
			bad += emit(batch, len);
		}
	} else {
		fprintf(stderr, "usage: bench_corrwrite line|batch-miss|batch [N]\n");
		return 2;
	}
	printf("lines %ld\n", lines);
	return bad ? 1 : 0;
}
