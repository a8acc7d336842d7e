/*
 * Signals against log writes (test_hardening).
 *   hard_sig flood HOW N REPORT   SIGALRM every 100 us, with a handler that
 *                                 write()s "sig\n" to stderr, while the main
 *                                 thread writes N whole lines to stderr
 *                                 (HOW: write, printf); REPORT gets
 *                                 "handled=<count>\n"
 *   hard_sig eintr FLAGS REPORT   a blocking read on a pipe and recv on a
 *                                 socketpair, interrupted by SIGALRM with a
 *                                 handler installed with FLAGS (restart or
 *                                 norestart); REPORT gets what each returned
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_alarm(int sig)
{
	int e = errno;

	(void)sig;
	if (write(2, "sig\n", 4) == 4)
		handled++;
	errno = e;
}

static void on_alarm_quiet(int sig)
{
	(void)sig;
	handled++;
}

static void report(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		exit(4);
	close(fd);
}

static void arm(long usec, long interval)
{
	struct itimerval it = { { 0, interval }, { 0, usec } };

	if (setitimer(ITIMER_REAL, &it, NULL))
		exit(5);
}

static int flood(const char *how, int n, const char *rep)
{
	struct sigaction sa;
	char line[128], text[64];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGALRM, &sa, NULL))
		return 5;
	arm(100, 100);
	for (int i = 0; i < n; i++) {
		int len = snprintf(line, sizeof(line),
				   "main line %06d ........................................\n", i);
		const char *p = line;

		if (!strcmp(how, "printf")) {
			if (fprintf(stderr, "main line %06d ........................................\n", i) != len)
				return 6;
			continue;
		}

		while (len) {
			ssize_t r = write(2, p, (size_t)len);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return 6;
			p += r;
			len -= (int)r;
		}
	}
	arm(0, 0);
	snprintf(text, sizeof(text), "handled=%d\n", (int)handled);
	report(rep, text);
	return 0;
}

static int wfd = -1;

static void *late_writer(void *arg)
{
	(void)arg;
	usleep(150000);
	if (write(wfd, "x", 1) != 1)
		exit(7);
	return NULL;
}

/* One blocking call interrupted by SIGALRM 30 ms in; a thread feeds it at 150 ms. */
static void one(int rfd, int feed, int use_recv, char *out, size_t cap)
{
	pthread_t t;
	char c = 0;
	ssize_t r;
	int e;
	sigset_t all, old;

	wfd = feed;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_create(&t, NULL, late_writer, NULL); /* it takes no signal */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	handled = 0;
	arm(30000, 0);
	errno = 0;
	r = use_recv ? recv(rfd, &c, 1, 0) : read(rfd, &c, 1);
	e = errno;
	pthread_join(t, NULL);
	snprintf(out + strlen(out), cap - strlen(out), "%s: r=%zd errno=%s byte=%c handled=%d\n",
		 use_recv ? "recv" : "read", r, r < 0 ? strerror(e) : "-", r == 1 ? c : '-',
		 (int)handled);
}

static int eintr(const char *flags, const char *rep)
{
	struct sigaction sa;
	char out[512] = "";
	int p[2], sv[2];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm_quiet;
	sa.sa_flags = !strcmp(flags, "restart") ? SA_RESTART : 0;
	if (sigaction(SIGALRM, &sa, NULL) || pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 5;
	one(p[0], p[1], 0, out, sizeof(out));
	one(sv[0], sv[1], 1, out, sizeof(out));
	report(rep, out);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "flood"))
		return flood(argv[2], atoi(argv[3]), argv[4]);
	if (argc == 4 && !strcmp(argv[1], "eintr"))
		return eintr(argv[2], argv[3]);
	return 2;
}
