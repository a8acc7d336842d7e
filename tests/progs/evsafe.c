/*
 * Host safety of the epoll family: epoll fds and registrations that reqctx
 * cannot fully see must behave exactly as without it.
 *
 *   evsafe CASE REPORT
 *
 * writes what each epoll_wait returned to REPORT, one line per wait ("n=1
 * 0x..." with the data of every event in the order returned, or "n=0"), and
 * exits 0; the suite runs it with and without the library and compares the
 * reports byte for byte. Every wait that expects an event has a 500 ms
 * timeout; alarm() is a watchdog, so a wait that never returns kills the
 * helper (exit by SIGALRM) instead of hanging the suite.
 *
 * Cases:
 *   dup-add      register through dup(epfd), wait on epfd and on the dup
 *   dup-wait     register on epfd, wait on dup(epfd)
 *   dup2 dup3 fdupfd   the same through dup2, dup3 and fcntl(F_DUPFD_CLOEXEC)
 *   dup-close    close epfd, keep using its dup (and the reverse)
 *   raw-ctl      a raw syscall(SYS_epoll_ctl) ADD and MOD on a tracked epfd
 *   early        an epoll fd made by a raw syscall (as before start-up)
 *   lookalike    host data values shaped like reqctx's own come back unchanged
 *   raw-dup      wait on a dup made by a raw syscall(SYS_dup)
 *   scm          wait on the epoll fd received over a socket (SCM_RIGHTS)
 *   fork         the child registers on the inherited epfd; both wait on it
 *   prefork      the parent registers and forks two workers that wait, re-arm
 *                and wait again, one after the other
 *   mod-race     another thread modifies the registration during every wait
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define D1 0x00007f3a12345678ull /* host data: pointer-like values */
#define D2 0x00007f3a87654320ull
#define D3 0x0000000000000006ull

static FILE *rep;

static void die(const char *what)
{
	fprintf(stderr, "evsafe: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* alarm() is not inherited: each process of a case sets its own, and children die with the parent. */
static void watchdog(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(10);
}

static int ready_fd(void)
{
	int fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);

	if (fd < 0)
		die("eventfd");
	return fd;
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event e = { .events = events, .data.u64 = data };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
		die("epoll_ctl ADD");
}

static void mod(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event e = { .events = events, .data.u64 = data };

	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) < 0)
		die("epoll_ctl MOD");
}

/* One epoll_wait; reports its result. Returns n. */
static int wait_once(const char *what, int ep, int timeout)
{
	struct epoll_event ev[8];
	int n = epoll_wait(ep, ev, 8, timeout);

	if (n < 0) {
		fprintf(rep, "%s: n=-1 errno=%s\n", what, strerror(errno));
		return n;
	}
	fprintf(rep, "%s: n=%d", what, n);
	for (int i = 0; i < n; i++)
		fprintf(rep, " 0x%llx", (unsigned long long)ev[i].data.u64);
	fprintf(rep, "\n");
	fflush(rep);
	return n;
}

/* Waits until the one-shot registrations have all fired; reports their data in sorted order. */
static void collect(const char *what, int ep, int want)
{
	uint64_t got[16];
	int have = 0;

	while (have < want) {
		struct epoll_event ev[8];
		int n = epoll_wait(ep, ev, 8, 500);

		if (n <= 0)
			break;
		for (int i = 0; i < n && have < 16; i++)
			got[have++] = ev[i].data.u64;
	}
	for (int i = 1; i < have; i++)
		for (int j = i; j > 0 && got[j - 1] > got[j]; j--) {
			uint64_t t = got[j];

			got[j] = got[j - 1];
			got[j - 1] = t;
		}
	fprintf(rep, "%s: %d events", what, have);
	for (int i = 0; i < have; i++)
		fprintf(rep, " 0x%llx", (unsigned long long)got[i]);
	fprintf(rep, "\n");
	fflush(rep);
}

static int alias(const char *how, int ep)
{
	int d = -1;

	if (!strcmp(how, "dup2") || !strcmp(how, "dup3")) {
		int spare = ready_fd(); /* a number in use: dup2 replaces it */

		d = !strcmp(how, "dup2") ? dup2(ep, spare) : dup3(ep, spare, O_CLOEXEC);
	} else if (!strcmp(how, "fdupfd")) {
		d = fcntl(ep, F_DUPFD_CLOEXEC, 100);
	} else {
		d = dup(ep);
	}
	if (d < 0)
		die(how);
	return d;
}

static int new_ep(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		die("epoll_create1");
	return ep;
}

static void case_dup(const char *how)
{
	int ep = new_ep(), d = alias(how, ep), a = ready_fd();

	add(d, a, EPOLLIN, D1); /* through the alias */
	wait_once("wait on epfd", ep, 500);
	wait_once("wait on the alias", d, 500);
	mod(ep, a, EPOLLIN | EPOLLONESHOT, D1); /* through the original, one-shot */
	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D2);
	collect("both one-shot, through the alias", d, 2);
	wait_once("nothing left", ep, 0);
}

static void case_dup_wait(void)
{
	int ep = new_ep(), d = dup(ep);

	if (d < 0)
		die("dup");
	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D1);
	wait_once("wait on the dup", d, 500);
	wait_once("nothing left on epfd", ep, 0);
}

static void case_dup_close(void)
{
	int ep = new_ep(), d = dup(ep), d2;

	if (d < 0)
		die("dup");
	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D1);
	close(ep);
	add(d, ready_fd(), EPOLLIN | EPOLLONESHOT, D2);
	collect("after closing epfd, on its dup", d, 2);
	d2 = dup(d);
	if (d2 < 0)
		die("dup");
	close(d);
	add(d2, ready_fd(), EPOLLIN | EPOLLONESHOT, D3);
	collect("after closing that too, on the next dup", d2, 1);
	ep = new_ep(); /* probably on a freed number: it starts empty */
	wait_once("a new epoll fd", ep, 0);
	wait_once("the old instance, still open", d2, 0);
}

static void case_raw_ctl(void)
{
	int ep = new_ep(), a = ready_fd(), b = ready_fd();
	struct epoll_event e = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = D1 };

	if (syscall(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, a, &e) < 0)
		die("raw epoll_ctl");
	wait_once("raw ADD", ep, 500);
	add(ep, b, EPOLLIN | EPOLLONESHOT, D2);
	e.data.u64 = D3;
	if (syscall(SYS_epoll_ctl, ep, EPOLL_CTL_MOD, b, &e) < 0)
		die("raw epoll_ctl MOD");
	wait_once("raw MOD of a wrapped ADD", ep, 500);
	mod(ep, a, EPOLLIN | EPOLLONESHOT, D2);
	wait_once("wrapped MOD of a raw ADD", ep, 500);
	e.events = EPOLLIN; /* level-triggered and unknown: must not be spun on */
	e.data.u64 = D1;
	if (syscall(SYS_epoll_ctl, ep, EPOLL_CTL_MOD, a, &e) < 0)
		die("raw epoll_ctl MOD");
	wait_once("raw level-triggered", ep, 500);
	wait_once("raw level-triggered again", ep, 500);
}

static void case_early(void)
{
	int ep = (int)syscall(SYS_epoll_create1, EPOLL_CLOEXEC), d;

	if (ep < 0)
		die("raw epoll_create1");
	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D1);
	wait_once("raw epoll fd", ep, 500);
	if ((d = dup(ep)) < 0)
		die("dup");
	add(d, ready_fd(), EPOLLIN | EPOLLONESHOT, D2);
	wait_once("its dup", ep, 500);
}

/* One raw wait: what the kernel holds for the one ready registration. */
static uint64_t kernel_value(int ep)
{
	struct epoll_event e;

	if (syscall(SYS_epoll_pwait, ep, &e, 1, 500, NULL, 8) != 1)
		die("raw epoll_pwait");
	return e.data.u64;
}

/* One wrapped wait that must return exactly one event; its data. */
static uint64_t one_event(int ep)
{
	struct epoll_event e[4];
	int n = epoll_wait(ep, e, 4, 500);

	return n == 1 ? e[0].data.u64 : ~0ull;
}

static void case_lookalike(void)
{
	int ep = new_ep(), a = ready_fd(), b = ready_fd(), c = ready_fd();
	struct epoll_event e = { .events = EPOLLIN | EPOLLONESHOT };
	uint64_t v;

	add(ep, a, EPOLLIN, D1);
	v = kernel_value(ep); /* reqctx's own value, or D1 without it */
	mod(ep, a, EPOLLIN | EPOLLONESHOT, D1);
	wait_once("the wrapped one", ep, 500);
	/* The old encoding (registration number << 20 | fd). */
	e.data.u64 = (uint64_t)1 << 20 | (uint64_t)b;
	if (syscall(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, b, &e) < 0)
		die("raw epoll_ctl");
	fprintf(rep, "old-style value: %s\n", one_event(ep) == e.data.u64 ? "unchanged" : "CHANGED");
	/* reqctx's value for fd a with another registration number. */
	e.data.u64 = (v == D1 ? D1 : v) + ((uint64_t)7 << 40);
	if (syscall(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, c, &e) < 0)
		die("raw epoll_ctl");
	fprintf(rep, "another number: %s\n", one_event(ep) == e.data.u64 ? "unchanged" : "CHANGED");
}

static void case_raw_dup(void)
{
	int ep = new_ep(), d = (int)syscall(SYS_dup, ep);

	if (d < 0)
		die("raw dup");
	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D1);
	wait_once("wait on the raw dup", d, 500);
	add(d, ready_fd(), EPOLLIN | EPOLLONESHOT, D2); /* through the raw dup: not seen */
	wait_once("wait on epfd", ep, 500);
}

/* Sends fd over a socketpair and returns the number it arrives as. */
static int pass_fd(int fd)
{
	char c = 'x', ctl[CMSG_SPACE(sizeof(int))];
	struct iovec v = { &c, 1 };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	struct cmsghdr *h;
	int sv[2], got;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(int));
	if (sendmsg(sv[0], &m, 0) != 1 || recvmsg(sv[1], &m, 0) != 1)
		die("SCM_RIGHTS");
	h = CMSG_FIRSTHDR(&m);
	if (!h || h->cmsg_type != SCM_RIGHTS)
		die("no fd received");
	memcpy(&got, CMSG_DATA(h), sizeof(int));
	return got;
}

static void case_scm(void)
{
	int ep = new_ep(), r;

	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D1);
	r = pass_fd(ep);
	wait_once("wait on the received epoll fd", r, 500);
	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D3);
	close(ep);
	wait_once("the original closed", r, 500);
}

/* fork: the child registers on the inherited epoll fd, the parent waits for it. */
static void case_fork(void)
{
	int ep = new_ep(), c2p[2], p2c[2], st = 0;
	char x;
	pid_t pid;

	add(ep, ready_fd(), EPOLLIN | EPOLLONESHOT, D1);
	if (pipe(c2p) < 0 || pipe(p2c) < 0)
		die("pipe");
	fflush(rep);
	if ((pid = fork()) < 0)
		die("fork");
	if (pid == 0) {
		int b = ready_fd();

		watchdog();

		wait_once("child: the parent's registration", ep, 500);
		add(ep, b, EPOLLIN, D2); /* level-triggered: reported until deleted */
		wait_once("child: its own", ep, 500);
		if (write(c2p[1], "x", 1) != 1 || read(p2c[0], &x, 1) != 1)
			die("child pipe");
		if (epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL) < 0)
			die("epoll_ctl DEL");
		wait_once("child: after deleting it", ep, 0);
		fflush(rep);
		_exit(0);
	}
	if (read(c2p[0], &x, 1) != 1)
		die("parent pipe");
	wait_once("parent: the child's registration", ep, 500);
	wait_once("parent: again (level-triggered)", ep, 500);
	if (write(p2c[1], "x", 1) != 1 || waitpid(pid, &st, 0) != pid)
		die("waitpid");
	fprintf(rep, "child status %d\n", st);
	wait_once("parent: after the child deleted it", ep, 0);
}

/* Pre-fork: the parent registers, workers wait on the shared epoll fd and re-arm it. */
static void case_prefork(void)
{
	static const uint64_t rearm[] = { D2, D3 };
	int ep = new_ep(), l = ready_fd(), st = 0;

	add(ep, l, EPOLLIN, D1); /* a listener stand-in: always ready */
	for (int k = 0; k < 2; k++) {
		pid_t pid;

		fflush(rep);
		if ((pid = fork()) < 0)
			die("fork");
		if (pid == 0) {
			char what[64];

			watchdog();

			snprintf(what, sizeof(what), "worker %d", k);
			wait_once(what, ep, 500);
			mod(ep, l, EPOLLIN, rearm[k]);
			snprintf(what, sizeof(what), "worker %d after its MOD", k);
			wait_once(what, ep, 500);
			fflush(rep);
			_exit(0);
		}
		if (waitpid(pid, &st, 0) != pid)
			die("waitpid");
		fprintf(rep, "worker %d status %d\n", k, st);
	}
	wait_once("parent", ep, 500);
	mod(ep, l, EPOLLIN, D1);
	wait_once("parent after its own MOD", ep, 500);
}

static int race_ep, race_fd;
static atomic_int race_stop;

static void *modder(void *arg)
{
	(void)arg;
	for (uint64_t i = 0; !atomic_load(&race_stop); i++)
		mod(race_ep, race_fd, EPOLLIN, i & 1 ? D2 : D1);
	return NULL;
}

/* Every wait returns one event with one of the host's values, however often it is modified. */
static void case_mod_race(void)
{
	int good = 0, zero = 0, bad = 0;
	pthread_t th;

	race_ep = new_ep();
	race_fd = ready_fd();
	add(race_ep, race_fd, EPOLLIN, D1);
	if (pthread_create(&th, NULL, modder, NULL) != 0)
		die("pthread_create");
	for (int i = 0; i < 2000; i++) {
		struct epoll_event ev[4];
		int n = epoll_wait(race_ep, ev, 4, 500);

		if (n == 1 && (ev[0].data.u64 == D1 || ev[0].data.u64 == D2))
			good++;
		else if (n == 0)
			zero++;
		else
			bad++;
	}
	atomic_store(&race_stop, 1);
	pthread_join(th, NULL);
	fprintf(rep, "2000 waits: %s\n", good + zero == 2000 && !bad ? "each one event or none, host data" : "WRONG");
}

int main(int argc, char **argv)
{
	const char *c;

	if (argc != 3 || !(rep = fopen(argv[2], "w")))
		return 64;
	c = argv[1];
	watchdog();
	if (!strcmp(c, "dup-add"))
		case_dup("dup");
	else if (!strcmp(c, "dup2") || !strcmp(c, "dup3") || !strcmp(c, "fdupfd"))
		case_dup(c);
	else if (!strcmp(c, "dup-wait"))
		case_dup_wait();
	else if (!strcmp(c, "dup-close"))
		case_dup_close();
	else if (!strcmp(c, "raw-ctl"))
		case_raw_ctl();
	else if (!strcmp(c, "early"))
		case_early();
	else if (!strcmp(c, "lookalike"))
		case_lookalike();
	else if (!strcmp(c, "raw-dup"))
		case_raw_dup();
	else if (!strcmp(c, "scm"))
		case_scm();
	else if (!strcmp(c, "fork"))
		case_fork();
	else if (!strcmp(c, "prefork"))
		case_prefork();
	else if (!strcmp(c, "mod-race"))
		case_mod_race();
	else
		return 64;
	return fclose(rep) == 0 ? 0 : 1;
}
