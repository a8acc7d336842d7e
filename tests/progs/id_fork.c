/*
 * Request IDs in children made without fork(): the parent serves one
 * request (which seeds its ID generator), then makes 7 children with
 * _Fork() and 7 with a raw clone system call; each serves one request of
 * its own. Every process writes one line "WHO N ID" to stdout, where ID is
 * the one reqctx gave the request (reqctx_id, looked up at run time; "none"
 * without the library). Requests carry no X-Request-Id, so every ID is
 * generated. Exits 0 once all the children have exited 0.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIDS 7

extern pid_t _Fork(void);

/* Accepts one connection from ourselves, reads one request on it; returns 0 or -1. */
static int serve_one(const char *who, int n)
{
	static const char req[] = "GET /id HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	const char *(*id)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "reqctx_id");
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s;
	char buf[256], line[200];
	ssize_t got = 0;
	int len;

	if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &al) || connect(c, (struct sockaddr *)&a, al))
		return -1;
	if ((s = accept(l, NULL, NULL)) < 0 || write(c, req, sizeof(req) - 1) != sizeof(req) - 1)
		return -1;
	while (got < (ssize_t)sizeof(req) - 1) {
		ssize_t r = read(s, buf, sizeof(buf));

		if (r <= 0)
			return -1;
		got += r;
	}
	len = snprintf(line, sizeof(line), "%s %d %s\n", who, n, id ? id() : "none");
	close(s);
	close(c);
	close(l);
	return write(1, line, (size_t)len) == len ? 0 : -1;
}

static int wait_all(pid_t *kids, int n)
{
	int bad = 0, st;

	for (int i = 0; i < n; i++)
		if (kids[i] <= 0 || waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			bad = 1;
	return bad;
}

int main(void)
{
	pid_t kids[2 * KIDS];

	if (serve_one("parent", 0) < 0)
		return 2;
	for (int i = 0; i < KIDS; i++) {
		kids[i] = _Fork();
		if (kids[i] == 0)
			_exit(serve_one("_Fork", i) < 0 ? 3 : 0);
	}
	for (int i = 0; i < KIDS; i++) {
		kids[KIDS + i] = (pid_t)syscall(SYS_clone, SIGCHLD, 0L, 0L, 0L, 0L);
		if (kids[KIDS + i] == 0)
			_exit(serve_one("clone", i) < 0 ? 4 : 0);
	}
	return wait_all(kids, 2 * KIDS) ? 5 : 0;
}
