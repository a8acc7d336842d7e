/*
 * How many events each wait of an event loop returns, next to what the
 * kernel reported, with exact request IDs in the loop's log lines.
 *
 *   evbatch MODE ORDER ROUNDS REPORT
 *     MODE   epoll | poll | select
 *     ORDER  touch: each handler reads its fd first, then logs
 *            log:   each handler logs first, then reads its fd
 *
 * One process is both ends: it connects NCONN clients to its own listener
 * (AF_UNIX, so a write is readable at the other end when it returns) and
 * accepts them. Each round writes one request on every client, then runs the
 * loop until every request is answered: a connection's event reads the
 * request and writes a per-connection eventfd (the hop); the hop's event
 * reads it and writes the response. Nothing arrives during a wait, so each
 * wait sees exactly what the one before it left ready: NCONN connections,
 * then NCONN hops.
 *
 * Before each wait a raw system call (ppoll, pselect6 or epoll_pwait with a
 * zero timeout; every registration is level-triggered, so it consumes
 * nothing) counts what the kernel reports; REPORT gets one line per wait,
 * "R K N": round, the kernel's count, the wait's. Log lines go to stderr:
 *   "event on a new connection" / "event for PATH"  (log order, before the read)
 *   "got PATH"      after reading a request head
 *   "hop PATH"      the hop is ready (before reading it, in log order)
 *   "respond PATH"  after writing the response
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define NCONN 8

struct conn {
	int cli, fd, hop;
	int has_path;
	char path[64];
};

static struct conn conns[NCONN];
static int ep = -1, touch_first, pending;
static FILE *rep;

static void die(const char *what)
{
	fprintf(stderr, "evbatch: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void on_conn(struct conn *c)
{
	char buf[512];
	uint64_t one = 1;
	ssize_t r;

	if (!touch_first) {
		if (c->has_path)
			fprintf(stderr, "event for %s\n", c->path);
		else
			fprintf(stderr, "event on a new connection\n");
	}
	r = read(c->fd, buf, sizeof(buf) - 1);
	if (r <= 0)
		die("read");
	buf[r] = '\0';
	if (sscanf(buf, "%*s %63s", c->path) != 1 || !strstr(buf, "\r\n\r\n"))
		die("request");
	c->has_path = 1;
	fprintf(stderr, "got %s\n", c->path);
	if (write(c->hop, &one, 8) != 8)
		die("hop write");
}

static void on_hop(struct conn *c)
{
	char resp[256];
	uint64_t v;
	int n;

	if (!touch_first)
		fprintf(stderr, "hop %s\n", c->path);
	if (read(c->hop, &v, 8) != 8)
		die("hop read");
	if (touch_first)
		fprintf(stderr, "hop %s\n", c->path);
	n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
		     strlen(c->path), c->path);
	if (write(c->fd, resp, (size_t)n) != n)
		die("response");
	fprintf(stderr, "respond %s\n", c->path);
	pending--;
}

/* who: slot << 1 | 1 for a hop. */
static void dispatch(int who)
{
	(who & 1 ? on_hop : on_conn)(&conns[who >> 1]);
}

static void watch(int fd, int who)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)who };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
		die("epoll_ctl");
}

static void wait_epoll(int round)
{
	struct epoll_event ev[64];
	int k = (int)syscall(SYS_epoll_pwait, ep, ev, 64, 0, NULL, 8);
	int n = epoll_wait(ep, ev, 64, 5000);

	if (k < 0 || n <= 0)
		die("epoll_wait");
	fprintf(rep, "%d %d %d\n", round, k, n);
	for (int i = 0; i < n; i++) {
		if (ev[i].data.u64 >= 2 * NCONN)
			die("data");
		dispatch((int)ev[i].data.u64);
	}
}

static void wait_poll(int round)
{
	struct pollfd pf[2 * NCONN], raw[2 * NCONN];
	struct timespec zero = { 0, 0 };
	int k, n, seen = 0;

	for (int s = 0; s < NCONN; s++) {
		pf[2 * s] = (struct pollfd){ conns[s].fd, POLLIN, 0 };
		pf[2 * s + 1] = (struct pollfd){ conns[s].hop, POLLIN, 0 };
	}
	memcpy(raw, pf, sizeof(pf));
	k = (int)syscall(SYS_ppoll, raw, 2 * NCONN, &zero, NULL, 8);
	n = poll(pf, 2 * NCONN, 5000);
	if (k < 0 || n <= 0)
		die("poll");
	fprintf(rep, "%d %d %d\n", round, k, n);
	for (int i = 0; i < 2 * NCONN; i++)
		if (pf[i].revents) {
			seen++;
			dispatch(i);
		}
	if (seen != n)
		die("poll count");
}

static void wait_select(int round)
{
	fd_set rd, raw;
	struct timespec zero = { 0, 0 };
	struct timeval tv = { 5, 0 };
	int maxfd = 0, k, n, seen = 0;

	FD_ZERO(&rd);
	for (int s = 0; s < NCONN; s++) {
		FD_SET(conns[s].fd, &rd);
		FD_SET(conns[s].hop, &rd);
		maxfd = conns[s].fd > maxfd ? conns[s].fd : maxfd;
		maxfd = conns[s].hop > maxfd ? conns[s].hop : maxfd;
	}
	raw = rd;
	k = (int)syscall(SYS_pselect6, maxfd + 1, &raw, NULL, NULL, &zero, NULL);
	n = select(maxfd + 1, &rd, NULL, NULL, &tv);
	if (k < 0 || n <= 0)
		die("select");
	fprintf(rep, "%d %d %d\n", round, k, n);
	for (int s = 0; s < NCONN; s++) {
		if (FD_ISSET(conns[s].fd, &rd))
			seen++, dispatch(s << 1);
		if (FD_ISSET(conns[s].hop, &rd))
			seen++, dispatch(s << 1 | 1);
	}
	if (seen != n)
		die("select count");
}

/* Reads one whole response on c's client end and checks its body. */
static void client_read(struct conn *c)
{
	char buf[1024];
	size_t have = 0;

	for (;;) {
		ssize_t r = read(c->cli, buf + have, sizeof(buf) - 1 - have);
		char *body;

		if (r <= 0)
			die("client read");
		have += (size_t)r;
		buf[have] = '\0';
		if ((body = strstr(buf, "\r\n\r\n")) && strlen(body + 4) >= strlen(c->path)) {
			if (strcmp(body + 4, c->path))
				die("response body");
			return;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	socklen_t alen;
	const char *mode;
	int lfd, rounds;

	if (argc != 5 || !(rep = fopen(argv[4], "w")))
		return 64;
	mode = argv[1];
	touch_first = !strcmp(argv[2], "touch");
	rounds = atoi(argv[3]);
	/* An abstract name: no file to clean up. */
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
			   (size_t)snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1,
					    "reqctx-evbatch-%d", (int)getpid()));
	if ((lfd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 || bind(lfd, (struct sockaddr *)&a, alen) < 0 ||
	    listen(lfd, NCONN) < 0)
		die("listen");
	if (!strcmp(mode, "epoll") && (ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	for (int s = 0; s < NCONN; s++) {
		struct conn *c = &conns[s];

		if ((c->cli = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
		    connect(c->cli, (struct sockaddr *)&a, alen) < 0 ||
		    (c->fd = accept(lfd, NULL, NULL)) < 0 ||
		    (c->hop = eventfd(0, EFD_NONBLOCK)) < 0)
			die("connect");
		if (ep >= 0) {
			watch(c->fd, s << 1);
			watch(c->hop, s << 1 | 1);
		}
	}
	for (int r = 0; r < rounds; r++) {
		for (int s = 0; s < NCONN; s++) {
			char req[160];
			int n = snprintf(req, sizeof(req),
					 "GET /c%d-r%d HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-c%d-r%d\r\n\r\n",
					 s, r, s, r);

			if (write(conns[s].cli, req, (size_t)n) != n)
				die("request");
		}
		for (pending = NCONN; pending > 0;) {
			if (ep >= 0)
				wait_epoll(r);
			else if (!strcmp(mode, "poll"))
				wait_poll(r);
			else
				wait_select(r);
		}
		for (int s = 0; s < NCONN; s++)
			client_read(&conns[s]);
	}
	return fclose(rep) == 0 ? 0 : 1;
}
