/*
 * A small HTTP/1.1 server for the interposition suites. It serves one
 * connection, then exits. It writes its port to argv[2].
 *   srv http PORTFILE   keep-alive; each request logged to stderr as
 *                       "handling PATH"; body = PATH
 *   srv big PORTFILE    non-blocking socket with a tiny send buffer: one
 *                       response with a 200 KB head and a 100 KB body,
 *                       written through EAGAIN and short writes
 *   srv echo PORTFILE   echoes bytes until EOF
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pf = { fd, POLLOUT, 0 };

			poll(&pf, 1, 1000);
			continue;
		}
		if (r <= 0)
			exit(3);
		p += r;
		n -= (size_t)r;
	}
}

static void serve_http(int c, int big)
{
	static char buf[1 << 16];
	size_t have = 0;

	for (;;) {
		char *end;
		ssize_t r;

		while ((end = memmem(buf, have, "\r\n\r\n", 4))) {
			char path[256] = "?", head[512];
			size_t used = (size_t)(end + 4 - buf);
			int n;

			sscanf(buf, "%*s %255s", path);
			fprintf(stderr, "handling %s\n", path);
			if (big) {
				static char pad[200000], body[100000];

				memset(pad, 'p', sizeof(pad));
				for (size_t i = 0; i < sizeof(body); i++)
					body[i] = (char)('a' + i % 26);
				n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nX-Pad: ",
					     sizeof(body));
				write_all(c, head, (size_t)n);
				write_all(c, pad, sizeof(pad));
				write_all(c, "\r\n\r\n", 4);
				write_all(c, body, sizeof(body));
			} else {
				n = snprintf(head, sizeof(head),
					     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
					     strlen(path), path);
				write_all(c, head, (size_t)n);
			}
			fprintf(stderr, "done %s\n", path);
			memmove(buf, buf + used, have - used);
			have -= used;
		}
		r = read(c, buf + have, sizeof(buf) - have);
		if (r < 0 && errno == EAGAIN) {
			struct pollfd pf = { c, POLLIN, 0 };

			poll(&pf, 1, 1000);
			continue;
		}
		if (r <= 0)
			return;
		have += (size_t)r;
	}
}

static void serve_echo(int c)
{
	char buf[4096];
	ssize_t r;

	while ((r = recv(c, buf, sizeof(buf), 0)) > 0)
		write_all(c, buf, (size_t)r);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), c, one = 1, pf;
	char port[16];

	if (argc < 3 || s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 8) ||
	    getsockname(s, (struct sockaddr *)&a, &al))
		return 2;
	snprintf(port, sizeof(port), "%d\n", ntohs(a.sin_port));
	pf = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (pf < 0 || write(pf, port, strlen(port)) < 0)
		return 2;
	close(pf);
	c = accept(s, NULL, NULL);
	if (c < 0)
		return 2;
	setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!strcmp(argv[1], "echo")) {
		serve_echo(c);
	} else if (!strcmp(argv[1], "big")) {
		int small = 4096;

		setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
		fcntl(c, F_SETFL, O_NONBLOCK);
		serve_http(c, 1);
	} else {
		serve_http(c, 0);
	}
	close(c);
	return 0;
}
