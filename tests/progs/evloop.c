/*
 * A one-thread HTTP/1.1 event loop for the epoll/poll/select suite.
 *
 *   evloop MODE HOP PORTFILE NREQ
 *     MODE  epoll | poll | select: how the loop waits
 *     HOP   eventfd | pipe | timerfd: each request takes one hop through a
 *           per-connection fd of this kind before its response
 *
 * Every handler logs to stderr BEFORE any system call on its fd:
 *   "event on a new connection"   a connection readable, no request read yet
 *   "event for PATH"              a connection readable; PATH: its last request
 *   "got PATH"                    after reading a request head
 *   "hop PATH"                    the hop fd is ready, before reading it
 *   "respond PATH"                after reading the hop fd
 * and answers each request with PATH as the body. It exits 0 once it has
 * answered NREQ requests and every connection is closed. poll and select
 * handle every ready fd of a wait, as a plain loop does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define MAXC 64

enum { K_LISTEN, K_CONN, K_HOP };

struct conn {
	int fd, hop, hopw; /* hopw: a pipe's write end, else == hop */
	int has_path;
	char path[128];
	char buf[4096];
	size_t have;
};

static struct conn conns[MAXC];
static int ep = -1, lfd, nconns, answered, nreq;
static const char *mode, *hopkind;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void watch(int fd, int kind, int slot)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)slot << 2 | kind };

	if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
		die("epoll_ctl");
}

static void on_accept(void)
{
	int fd = accept(lfd, NULL, NULL), s;

	if (fd < 0)
		die("accept");
	for (s = 0; s < MAXC && conns[s].fd > 0; s++)
		;
	if (s == MAXC)
		die("too many connections");
	memset(&conns[s], 0, sizeof(conns[s]));
	conns[s].fd = fd;
	if (!strcmp(hopkind, "eventfd")) {
		conns[s].hop = conns[s].hopw = eventfd(0, EFD_NONBLOCK);
	} else if (!strcmp(hopkind, "timerfd")) {
		conns[s].hop = conns[s].hopw = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	} else {
		int p[2];

		if (pipe2(p, O_NONBLOCK) < 0)
			die("pipe2");
		conns[s].hop = p[0];
		conns[s].hopw = p[1];
	}
	if (conns[s].hop < 0)
		die("hop fd");
	watch(fd, K_CONN, s);
	watch(conns[s].hop, K_HOP, s);
	nconns++;
}

static void hop(struct conn *c)
{
	uint64_t one = 1;

	if (!strcmp(hopkind, "timerfd")) {
		struct itimerspec it = { .it_value = { 0, 2000000 } };

		if (timerfd_settime(c->hop, 0, &it, NULL) < 0)
			die("timerfd_settime");
	} else if (write(c->hopw, &one, !strcmp(hopkind, "pipe") ? 1 : 8) <= 0) {
		die("hop write");
	}
}

static void drop(struct conn *c)
{
	if (ep >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		epoll_ctl(ep, EPOLL_CTL_DEL, c->hop, NULL);
	}
	close(c->fd);
	close(c->hop);
	if (c->hopw != c->hop)
		close(c->hopw);
	c->fd = 0;
	nconns--;
}

static void on_conn(struct conn *c)
{
	char *end;
	ssize_t r;

	if (c->has_path)
		fprintf(stderr, "event for %s\n", c->path);
	else
		fprintf(stderr, "event on a new connection\n");
	r = read(c->fd, c->buf + c->have, sizeof(c->buf) - 1 - c->have);
	if (r <= 0) {
		drop(c);
		return;
	}
	c->have += (size_t)r;
	if (!(end = memmem(c->buf, c->have, "\r\n\r\n", 4)))
		return;
	if (sscanf(c->buf, "%*s %127s", c->path) != 1)
		die("request line");
	c->has_path = 1;
	c->have -= (size_t)(end + 4 - c->buf);
	memmove(c->buf, end + 4, c->have);
	fprintf(stderr, "got %s\n", c->path);
	hop(c);
}

static void on_hop(struct conn *c)
{
	char resp[512], drain[8];
	int n;

	fprintf(stderr, "hop %s\n", c->path);
	if (read(c->hop, drain, 8) <= 0)
		die("hop read");
	fprintf(stderr, "respond %s\n", c->path);
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nContent-Type: text/plain\r\n\r\n%s",
		     strlen(c->path), c->path);
	if (write(c->fd, resp, (size_t)n) != n)
		die("response");
	answered++;
}

static void dispatch(int kind, int slot)
{
	if (kind == K_LISTEN)
		on_accept();
	else if (conns[slot].fd > 0)
		(kind == K_CONN ? on_conn : on_hop)(&conns[slot]);
}

static void loop_epoll(void)
{
	struct epoll_event ev[32];

	while (answered < nreq || nconns) {
		int n = epoll_wait(ep, ev, 32, 10000);

		if (n <= 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++)
			dispatch((int)(ev[i].data.u64 & 3), (int)(ev[i].data.u64 >> 2));
	}
}

static void loop_poll(void)
{
	while (answered < nreq || nconns) {
		struct pollfd pf[2 * MAXC + 1];
		int who[2 * MAXC + 1], n = 0;

		pf[n] = (struct pollfd){ lfd, POLLIN, 0 };
		who[n++] = -1;
		for (int s = 0; s < MAXC; s++)
			if (conns[s].fd > 0) {
				pf[n] = (struct pollfd){ conns[s].fd, POLLIN, 0 };
				who[n++] = s << 2 | K_CONN;
				pf[n] = (struct pollfd){ conns[s].hop, POLLIN, 0 };
				who[n++] = s << 2 | K_HOP;
			}
		if (poll(pf, (nfds_t)n, 10000) <= 0)
			die("poll");
		for (int i = 0; i < n; i++)
			if (pf[i].revents)
				dispatch(who[i] < 0 ? K_LISTEN : who[i] & 3, who[i] >> 2);
	}
}

static void loop_select(void)
{
	while (answered < nreq || nconns) {
		fd_set rd;
		int maxfd = lfd, n;
		struct timeval tv = { 10, 0 };

		FD_ZERO(&rd);
		FD_SET(lfd, &rd);
		for (int s = 0; s < MAXC; s++)
			if (conns[s].fd > 0) {
				FD_SET(conns[s].fd, &rd);
				FD_SET(conns[s].hop, &rd);
				maxfd = conns[s].fd > maxfd ? conns[s].fd : maxfd;
				maxfd = conns[s].hop > maxfd ? conns[s].hop : maxfd;
			}
		if ((n = select(maxfd + 1, &rd, NULL, NULL, &tv)) <= 0)
			die("select");
		if (FD_ISSET(lfd, &rd))
			dispatch(K_LISTEN, 0);
		for (int s = 0; s < MAXC; s++) {
			int fd = conns[s].fd, h = conns[s].hop;

			if (fd > 0 && FD_ISSET(fd, &rd))
				dispatch(K_CONN, s);
			if (conns[s].fd > 0 && FD_ISSET(h, &rd))
				dispatch(K_HOP, s);
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	FILE *pf;
	int one = 1;

	if (argc != 5)
		return 64;
	mode = argv[1];
	hopkind = argv[2];
	nreq = atoi(argv[4]);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
		die("listen");
	if (!strcmp(mode, "epoll")) {
		if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("epoll_create1");
		watch(lfd, K_LISTEN, 0);
	}
	if (!(pf = fopen(argv[3], "w")) || fprintf(pf, "%d\n", ntohs(a.sin_port)) < 0 ||
	    fclose(pf) != 0)
		die("portfile");
	if (!strcmp(mode, "epoll"))
		loop_epoll();
	else if (!strcmp(mode, "poll"))
		loop_poll();
	else
		loop_select();
	return 0;
}
