/*
 * Non-blocking writes to a log that fills up: a FIFO named like a log, read
 * slowly by a child that copies it to argv[2]. Writes argv[3] lines of 100
 * bytes, retrying after EAGAIN as a careful program does.
 * Usage: nbfifo DIR/x.log OUTFILE NLINES
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void reader(const char *fifo, const char *out)
{
	int in = open(fifo, O_RDONLY), o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char buf[777];
	ssize_t n;
	struct timespec slow = { 0, 200000 };

	if (in < 0 || o < 0)
		_exit(2);
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (write(o, buf, (size_t)n) != n)
			_exit(3);
		nanosleep(&slow, NULL);
	}
	_exit(n < 0 ? 4 : 0);
}

int main(int argc, char **argv)
{
	int fd, lines, eagain = 0, shorts = 0, st;
	pid_t pid;

	if (argc < 4 || mkfifo(argv[1], 0600) < 0)
		return 2;
	lines = atoi(argv[3]);
	pid = fork();
	if (pid == 0)
		reader(argv[1], argv[2]);
	fd = open(argv[1], O_WRONLY | O_APPEND);
	if (fd < 0 || fcntl(fd, F_SETFL, O_NONBLOCK | O_APPEND) < 0)
		return 2;
	for (int i = 0; i < lines; i++) {
		char line[101];
		size_t done = 0;

		memset(line, '.', sizeof(line));
		memcpy(line, "line ", 5);
		for (int d = 0, v = i; d < 6; d++, v /= 10)
			line[10 - d] = (char)('0' + v % 10);
		line[99] = '\n';
		while (done < 100) {
			ssize_t r = write(fd, line + done, 100 - done);

			if (r < 0 && errno == EAGAIN) {
				struct pollfd p = { fd, POLLOUT, 0 };

				eagain++;
				poll(&p, 1, 1000);
				continue;
			}
			if (r <= 0)
				return 3;
			if ((size_t)r < 100 - done)
				shorts++;
			done += (size_t)r;
		}
	}
	close(fd);
	waitpid(pid, &st, 0);
	fprintf(stderr, "eagain=%d short=%d\n", eagain > 0, shorts >= 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 5;
}
