/*
 * role: a program that becomes a server, or not, for the roles suite.
 *
 *   role plain        writes "out" on stdout (write and printf) and "err" on
 *                     stderr (write and fprintf)
 *   role listen       the same as "before ...", starts a child through
 *                     system(), then listens on 127.0.0.1:0 and does all of it
 *                     again as "after ..."
 *   role accept FD    the same around an accept() on the listening socket FD
 *                     it inherited (it never calls listen itself)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void say(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		exit(3);
}

static void lines(const char *when)
{
	char cmd[128];

	printf("%s out printf\n", when);
	fflush(stdout);
	say(1, when);
	say(1, " out write\n");
	fprintf(stderr, "%s err fprintf\n", when);
	say(2, when);
	say(2, " err write\n");
	snprintf(cmd, sizeof(cmd), "echo %s child out; echo %s child err >&2", when, when);
	if (system(cmd) != 0)
		exit(4);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int s, c;

	if (argc == 2 && !strcmp(argv[1], "plain")) {
		printf("out printf\n");
		fflush(stdout);
		say(1, "out write\n");
		fprintf(stderr, "err fprintf\n");
		say(2, "err write\n");
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "listen")) {
		lines("before");
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 1) < 0)
			return 2;
		lines("after");
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "accept")) {
		lines("before");
		c = accept(atoi(argv[2]), NULL, NULL);
		if (c < 0)
			return 2;
		close(c);
		lines("after");
		return 0;
	}
	fprintf(stderr, "usage: role plain | listen | accept FD\n");
	return 2;
}
