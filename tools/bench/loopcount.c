/*
 * A counting shim for tools/bench/loop.sh: preloaded in front of
 * libreqctx.so (or alone), it counts the epoll_wait, epoll_pwait,
 * epoll_pwait2, poll and select calls the host makes, which are its event
 * loop's iterations, and the events they return. strace cannot count these
 * under the library: in split mode reqctx serves queued events without a
 * system call. At exit each process appends "pid calls events" to the file
 * named by $LOOPCOUNT_FILE, read at start-up (nginx clears its workers'
 * environment).
 *
 *   cc -shared -fPIC -O2 -o loopcount.so tools/bench/loopcount.c -ldl
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <unistd.h>

static _Atomic unsigned long calls, events;
static char path[4096];

__attribute__((constructor)) static void start(void)
{
	const char *p = getenv("LOOPCOUNT_FILE");

	if (p)
		snprintf(path, sizeof(path), "%s", p);
}

static int count(int r)
{
	atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
	if (r > 0)
		atomic_fetch_add_explicit(&events, (unsigned long)r, memory_order_relaxed);
	return r;
}

#define NEXT(name) \
	static __typeof__(name) *next; \
	if (!next) \
		next = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int epoll_wait(int ep, struct epoll_event *ev, int max, int timeout)
{
	NEXT(epoll_wait);
	return count(next(ep, ev, max, timeout));
}

int epoll_pwait(int ep, struct epoll_event *ev, int max, int timeout, const sigset_t *m)
{
	NEXT(epoll_pwait);
	return count(next(ep, ev, max, timeout, m));
}

int epoll_pwait2(int ep, struct epoll_event *ev, int max, const struct timespec *t,
		 const sigset_t *m)
{
	NEXT(epoll_pwait2);
	return count(next(ep, ev, max, t, m));
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	NEXT(poll);
	return count(next(fds, n, timeout));
}

int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t)
{
	NEXT(select);
	return count(next(n, r, w, e, t));
}

__attribute__((destructor)) static void report(void)
{
	char line[96];
	int fd, n;

	if (!path[0] || !calls)
		return;
	n = snprintf(line, sizeof(line), "%d %lu %lu\n", (int)getpid(), calls, events);
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) >= 0) {
		if (write(fd, line, (size_t)n) != n)
			n = 0;
		close(fd);
	}
}
