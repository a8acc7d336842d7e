/*
 * Return values and errno of the epoll, poll and select families, written
 * to argv[1]; the suite compares a run under the library with a plain one.
 * Events are reported as the set of data values a drain collects, which is
 * the same whether they come in one batch or one per call.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <unistd.h>

static FILE *rep;
static void *volatile null_ptr; /* hides NULL from the compiler's nonnull checks */

static void show(const char *what, int r)
{
	fprintf(rep, "%s: r=%d errno=%s\n", what, r, r < 0 ? strerror(errno) : "-");
}

/* Collects events until a wait returns 0; prints the sum of data values and how many. */
static void drain(const char *what, int ep, int which)
{
	struct epoll_event ev[8];
	struct timespec zero = { 0, 0 };
	sigset_t mask;
	uint64_t sum = 0;
	int n, total = 0, calls = 0;

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	do {
		if (which == 0)
			n = epoll_wait(ep, ev, 8, 0);
		else if (which == 1)
			n = epoll_pwait(ep, ev, 8, 0, &mask);
		else
			n = epoll_pwait2(ep, ev, 8, &zero, &mask);
		for (int i = 0; i < n; i++)
			sum += ev[i].data.u64;
		total += n > 0 ? n : 0;
	} while (n > 0 && ++calls < 100);
	fprintf(rep, "%s: events=%d sum=%llu last=%d\n", what, total, (unsigned long long)sum, n);
}

int main(int argc, char **argv)
{
	struct epoll_event e = { .events = EPOLLIN | EPOLLET };
	struct epoll_event ev[4];
	struct pollfd pf = { .fd = -1 };
	fd_set rd;
	int ep, fds[3];

	if (argc != 2 || !(rep = fopen(argv[1], "w")))
		return 64;
	errno = 0;
	show("epoll_create(0)", epoll_create(0));
	show("epoll_create1(bad)", epoll_create1(12345));
	ep = epoll_create(1);
	show("epoll_create(1) ok", ep >= 0 ? 0 : -1);
	for (int i = 0; i < 3; i++) {
		fds[i] = eventfd(1, EFD_NONBLOCK);
		e.data.u64 = 100 + (uint64_t)i;
		show("add", epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e));
	}
	show("add again", epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &e));
	show("mod unknown", epoll_ctl(ep, EPOLL_CTL_MOD, 0, &e));
	show("del unknown", epoll_ctl(ep, EPOLL_CTL_DEL, ep, NULL));
	show("ctl bad op", epoll_ctl(ep, 7, fds[0], &e));
	show("ctl NULL event", epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], null_ptr));
	show("ctl on non-epoll", epoll_ctl(fds[0], EPOLL_CTL_ADD, fds[1], &e));
	drain("epoll_wait", ep, 0);
	for (int i = 0; i < 3; i++) {
		e.data.u64 = 200 + (uint64_t)i;
		show("mod", epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &e));
	}
	drain("epoll_pwait", ep, 1);
	for (int i = 0; i < 3; i++) {
		e.data.u64 = 300 + (uint64_t)i;
		show("mod", epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &e));
	}
	drain("epoll_pwait2", ep, 2);
	show("wait maxevents 0", epoll_wait(ep, ev, 0, 0));
	show("wait NULL events", epoll_wait(ep, null_ptr, 4, 0));
	show("wait bad epfd", epoll_wait(-5, ev, 4, 0));
	show("wait non-epoll", epoll_wait(fds[0], ev, 4, 0));
	show("pwait2 bad epfd", epoll_pwait2(-5, ev, 4, NULL, NULL));
	show("del", epoll_ctl(ep, EPOLL_CTL_DEL, fds[1], NULL));
	drain("after del", ep, 0);
	show("poll NULL", poll(null_ptr, 1, 0));
	show("poll none ready", poll(&pf, 1, 0));
	show("ppoll bad timeout",
	     ppoll(&pf, 1, &(struct timespec){ 0, 2000000000L }, NULL));
	FD_ZERO(&rd);
	show("select nfds -1", select(-1, &rd, NULL, NULL, &(struct timeval){ 0, 0 }));
	show("pselect none", pselect(1, &rd, NULL, NULL, &(struct timespec){ 0, 0 }, NULL));
	errno = 4321;
	show("errno kept", epoll_wait(ep, ev, 4, 0) == 0 && errno == 4321 ? 0 : -1);
	return fclose(rep) == 0 ? 0 : 1;
}
