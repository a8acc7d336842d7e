/*
 * Blocking calls stay cancellation points: for each of read, recv, readv,
 * recvmsg, accept, poll, select and epoll_wait, a thread blocks in it and is
 * cancelled; the program prints "<call> cancelled" for each, or exits 1
 * after 10 s ("<call> did not end"). glibc's own functions are cancellation
 * points; a raw system call (what a preload falls back to before it knows
 * the real functions) is not.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

static int rd, sk, ls, ep;

static void *in_read(void *a)
{
	char b[8];

	(void)a;
	if (read(rd, b, sizeof(b)) < 0)
		return NULL;
	return NULL;
}

static void *in_recv(void *a)
{
	char b[8];

	(void)a;
	recv(sk, b, sizeof(b), 0);
	return NULL;
}

static void *in_readv(void *a)
{
	char b[8];
	struct iovec v = { b, sizeof(b) };

	(void)a;
	if (readv(rd, &v, 1) < 0)
		return NULL;
	return NULL;
}

static void *in_recvmsg(void *a)
{
	char b[8];
	struct iovec v = { b, sizeof(b) };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };

	(void)a;
	recvmsg(sk, &m, 0);
	return NULL;
}

static void *in_accept(void *a)
{
	(void)a;
	accept(ls, NULL, NULL);
	return NULL;
}

static void *in_poll(void *a)
{
	struct pollfd p = { rd, POLLIN, 0 };

	(void)a;
	poll(&p, 1, -1);
	return NULL;
}

static void *in_select(void *a)
{
	fd_set s;

	(void)a;
	FD_ZERO(&s);
	FD_SET(rd, &s);
	select(rd + 1, &s, NULL, NULL, NULL);
	return NULL;
}

static void *in_epoll(void *a)
{
	struct epoll_event e;

	(void)a;
	epoll_wait(ep, &e, 1, -1);
	return NULL;
}

static const struct {
	const char *name;
	void *(*fn)(void *);
} calls[] = {
	{ "read", in_read },       { "recv", in_recv },     { "readv", in_readv },
	{ "recvmsg", in_recvmsg }, { "accept", in_accept }, { "poll", in_poll },
	{ "select", in_select },   { "epoll_wait", in_epoll },
};

int main(void)
{
	int p[2], sv[2];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct epoll_event ev = { .events = EPOLLIN };

	if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
	    (ls = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
	    (ep = epoll_create1(0)) < 0) {
		perror("setup");
		return 2;
	}
	rd = p[0];
	sk = sv[0];
	ev.data.fd = rd;
	epoll_ctl(ep, EPOLL_CTL_ADD, rd, &ev);
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		struct timespec ts, pause = { 0, 50 * 1000 * 1000 };
		pthread_t t;
		void *r;

		pthread_create(&t, NULL, calls[i].fn, NULL);
		nanosleep(&pause, NULL); /* let it block (a cancel before it does works too) */
		pthread_cancel(t);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		if (pthread_timedjoin_np(t, &r, &ts) != 0) {
			printf("%s did not end\n", calls[i].name);
			fflush(stdout);
			_exit(1);
		}
		printf("%s %s\n", calls[i].name, r == PTHREAD_CANCELED ? "cancelled" : "returned");
	}
	return 0;
}
