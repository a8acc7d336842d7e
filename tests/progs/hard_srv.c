/*
 * A one-thread epoll server for many connections (test_hardening). It writes
 * its port to PORTFILE and runs until killed.
 *   hard_srv sum PORTFILE    reads each connection to EOF, then answers
 *                            "HTTP/1.1 200 OK\r\nContent-Length: N\r\n
 *                            Connection: close\r\n\r\nread=<bytes> fnv=<hash>\n"
 *                            and logs "conn read=<bytes> fnv=<hash>" on stderr
 *                            (FNV-1a 64 of every byte it read)
 *   hard_srv http PORTFILE   keep-alive: answers each request head (no body)
 *                            with "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
 *                            and logs "req PATH" on stderr
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 32768

struct conn {
	uint64_t fnv;
	size_t n, have;
	char buf[2048];
};

static struct conn *conns[MAXFD];
static int sum_mode;

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue; /* responses are small; the client reads them */
		if (r <= 0)
			return;
		p += r;
		n -= (size_t)r;
	}
}

static void drop(int ep, int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	free(conns[fd]);
	conns[fd] = NULL;
}

static void finish_sum(int ep, int fd, struct conn *c)
{
	char body[128], head[256];
	int bn = snprintf(body, sizeof(body), "read=%zu fnv=%016llx\n", c->n,
			  (unsigned long long)c->fnv);
	int hn = snprintf(head, sizeof(head),
			  "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", bn);

	fprintf(stderr, "conn read=%zu fnv=%016llx\n", c->n, (unsigned long long)c->fnv);
	write_all(fd, head, (size_t)hn);
	write_all(fd, body, (size_t)bn);
	drop(ep, fd);
}

static void answer_http(struct conn *c, int fd)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	char *end;

	while ((end = memmem(c->buf, c->have, "\r\n\r\n", 4))) {
		size_t used = (size_t)(end + 4 - c->buf);
		char path[64] = "?";

		sscanf(c->buf, "%*s %63s", path);
		fprintf(stderr, "req %s\n", path);
		write_all(fd, resp, sizeof(resp) - 1);
		memmove(c->buf, c->buf + used, c->have - used);
		c->have -= used;
	}
	if (c->have == sizeof(c->buf))
		c->have = 0; /* a head too big for this server: forget it */
}

static void on_data(int ep, int fd)
{
	struct conn *c = conns[fd];

	for (;;) {
		char tmp[65536];
		char *dst = sum_mode ? tmp : c->buf + c->have;
		size_t room = sum_mode ? sizeof(tmp) : sizeof(c->buf) - c->have;
		ssize_t r = read(fd, dst, room);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			if (sum_mode && r == 0)
				finish_sum(ep, fd, c);
			else
				drop(ep, fd);
			return;
		}
		if (sum_mode) {
			for (ssize_t i = 0; i < r; i++)
				c->fnv = (c->fnv ^ (unsigned char)tmp[i]) * 0x100000001b3ULL;
			c->n += (size_t)r;
		} else {
			c->have += (size_t)r;
			answer_http(c, fd);
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int s, ep, pf, one = 1;
	struct epoll_event ev = { .events = EPOLLIN };
	char port[16];

	if (argc != 3)
		return 2;
	sum_mode = !strcmp(argv[1], "sum");
	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 4096) ||
	    getsockname(s, (struct sockaddr *)&a, &al))
		return 2;
	ep = epoll_create1(0);
	ev.data.fd = s;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev))
		return 2;
	snprintf(port, sizeof(port), "%d\n", ntohs(a.sin_port));
	pf = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (pf < 0 || write(pf, port, strlen(port)) < 0)
		return 2;
	close(pf);
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd != s) {
				if (conns[fd])
					on_data(ep, fd);
				continue;
			}
			for (;;) {
				int c = accept4(s, NULL, NULL, SOCK_NONBLOCK);

				if (c < 0)
					break;
				if (c >= MAXFD || !(conns[c] = calloc(1, sizeof(struct conn)))) {
					close(c);
					continue;
				}
				conns[c]->fnv = 0xcbf29ce484222325ULL;
				ev.data.fd = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
			}
		}
	}
}
