/*
 * Hosts that are rough with descriptors, or with the allocator (test_hardening).
 *   hard_fds serve DIR PORTFILE         logs to stderr and DIR/app.log, serves
 *                                       one request on one connection
 *   hard_fds closeall HOW DIR PORTFILE  opens a log, a pipe and a socketpair,
 *                                       closes every fd from 3 up (HOW: range
 *                                       = close_range(3, ~0U, 0), loop =
 *                                       close() on each fd below the limit,
 *                                       raw = the close_range system call
 *                                       itself), then opens DIR/plain.txt (it
 *                                       takes the old log's number) and
 *                                       DIR/app.log, and serves as above
 * The request is logged as "handling PATH"; the response is
 * "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".
 * If a test allocator is loaded (it exports talloc_calls), stderr says so.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			exit(3);
		p += r;
		n -= (size_t)r;
	}
}

static void say(int fd, const char *s)
{
	write_all(fd, s, strlen(s));
}

static int open_log(const char *dir, const char *name)
{
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		exit(4);
	return fd;
}

static int serve(const char *dir, const char *portfile)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
	int (*talloc)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "talloc_calls");
	int log = open_log(dir, "app.log"), s, c, pf;
	char buf[8192], path[256] = "?", line[512];
	size_t have = 0;
	FILE *f;

	say(log, "serving\n");
	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 8) ||
	    getsockname(s, (struct sockaddr *)&a, &al))
		return 2;
	snprintf(line, sizeof(line), "%d\n", ntohs(a.sin_port));
	pf = open(portfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (pf < 0)
		return 2;
	say(pf, line);
	close(pf);
	c = accept(s, NULL, NULL);
	if (c < 0)
		return 2;
	while (!memmem(buf, have, "\r\n\r\n", 4)) {
		ssize_t r = read(c, buf + have, sizeof(buf) - 1 - have);

		if (r <= 0)
			return 5;
		have += (size_t)r;
	}
	buf[have] = '\0';
	sscanf(buf, "%*s %255s", path);
	fprintf(stderr, "handling %s\n", path);
	snprintf(line, sizeof(line), "handled %s\n", path);
	say(log, line);
	write_all(c, resp, sizeof(resp) - 1);
	close(c);
	close(s);
	/* stdio on a log file too, after the request */
	snprintf(line, sizeof(line), "%s/app.log", dir);
	f = fopen(line, "a");
	if (!f)
		return 6;
	fprintf(f, "stdio after %s\n", path);
	fclose(f);
	if (talloc)
		fprintf(stderr, "test allocator %s\n", talloc() > 0 ? "used" : "unused");
	return 0;
}

static int closeall(const char *how, const char *dir, const char *portfile)
{
	int log, p[2], sv[2], plain;
	char path[512];
	struct rlimit rl;

	syscall(SYS_close_range, 3, ~0U, 0); /* whatever the test harness left open */
	log = open_log(dir, "before.log");
	if (log != 3 || pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 7;
	say(log, "before\n");
	say(p[1], "x");
	if (!strcmp(how, "range")) {
		if (close_range(3, ~0U, 0))
			return 8;
	} else if (!strcmp(how, "raw")) {
		if (syscall(SYS_close_range, 3, ~0U, 0))
			return 8;
	} else {
		getrlimit(RLIMIT_NOFILE, &rl);
		for (int fd = 3; fd < (int)rl.rlim_cur; fd++)
			close(fd);
	}
	snprintf(path, sizeof(path), "%s/plain.txt", dir);
	plain = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (plain != 3)
		return 9;
	say(plain, "plain line\n");
	close(plain);
	return serve(dir, portfile);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "serve"))
		return serve(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "closeall"))
		return closeall(argv[2], argv[3], argv[4]);
	return 2;
}
