/*
 * Children of a preloaded parent (test_hardening).
 *   hard_child emit           the CGI child: writes emit_bytes() to stdout and
 *                             "child err id=<reqctx_id>\n" to stderr
 *   hard_child cgi HOW OUT    the parent: in request "parent-req", starts
 *                             `hard_child emit` with its stdout a pipe back
 *                             to the parent (HOW: fork, vfork, spawn, system,
 *                             popen), copies what the pipe brings to the
 *                             file OUT (not a log), reports the child's exit
 *                             status on stderr; the fork and vfork children
 *                             dup2 and close_range before exec, as Python's
 *                             subprocess does; the parent writes a line to
 *                             OUT.log before and after, and one to stdout
 *   hard_child forked         in request "fk1", forks without exec; the child
 *                             writes a line to stdout and one to stderr
 * reqctx_id and reqctx_run are looked up at run time, so the program runs
 * without the library too (then the ID is "none").
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *self;
static const char *how;
static const char *outp;

static const char *cur_id(void)
{
	const char *(*id)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "reqctx_id");

	return id ? id() : "none";
}

static void in_request(const char *id, void (*fn)(void *))
{
	int (*run)(const char *, void (*)(void *), void *) =
		(int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");

	if (run) {
		if (run(id, fn, NULL) != 0)
			exit(9);
	} else {
		fn(NULL);
	}
}

/* Binary bytes (every value, NULs, CRs), whole lines, and a line without its newline. */
static size_t emit_bytes(char *b)
{
	size_t n = 0;

	for (int i = 0; i < 256; i++)
		b[n++] = (char)i;
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(b + n, "Content-Line: %d\r\n", i);
	n += (size_t)sprintf(b + n, "\nno newline at the end");
	return n;
}

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

static int emit(void)
{
	static char b[8192];
	size_t n = emit_bytes(b);

	write_all(1, b, n / 2);
	write_all(1, b + n / 2, n - n / 2);
	fprintf(stderr, "child err id=%s\n", cur_id());
	return 0;
}

/* Copies fd to the file outp until EOF. */
static void drain(int fd)
{
	char buf[4096];
	int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t r;

	if (o < 0)
		exit(4);
	while ((r = read(fd, buf, sizeof(buf))) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			exit(5);
		write_all(o, buf, (size_t)r);
	}
	close(o);
}

static void run_cgi(void *arg)
{
	char *argv[] = { (char *)self, "emit", NULL };
	int p[2], st = -1, logfd;
	pid_t pid;
	char cmd[1024];

	(void)arg;
	snprintf(cmd, sizeof(cmd), "%s.log", outp);
	logfd = open(cmd, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (logfd < 0)
		exit(4);
	write_all(logfd, "before child\n", 13);
	if (!strcmp(how, "popen")) {
		FILE *f;

		snprintf(cmd, sizeof(cmd), "%s emit", self);
		f = popen(cmd, "r");
		if (!f)
			exit(6);
		drain(fileno(f));
		st = pclose(f);
		goto done;
	}
	if (pipe(p))
		exit(6);
	if (!strcmp(how, "system")) {
		/* The child's whole output fits in the pipe: read it after system returns. */
		snprintf(cmd, sizeof(cmd), "exec %s emit >&%d %d>&-", self, p[1], p[0]);
		st = system(cmd);
		close(p[1]);
		drain(p[0]);
		goto done;
	}
	if (!strcmp(how, "spawn")) {
		posix_spawn_file_actions_t fa;

		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
		posix_spawn_file_actions_addclose(&fa, p[0]);
		posix_spawn_file_actions_addclose(&fa, p[1]);
		if (posix_spawn(&pid, self, &fa, NULL, argv, environ))
			exit(7);
		posix_spawn_file_actions_destroy(&fa);
	} else {
		pid = !strcmp(how, "vfork") ? vfork() : fork();
		if (pid < 0)
			exit(7);
		if (pid == 0) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
			close_range(3, ~0U, 0);
			execve(self, argv, environ);
			_exit(127);
		}
	}
	close(p[1]);
	drain(p[0]);
	close(p[0]);
	if (waitpid(pid, &st, 0) != pid)
		exit(8);
done:
	fprintf(stderr, "parent %s status=%d id=%s\n", how, st, cur_id());
	write_all(logfd, "after child\n", 12);
	write_all(1, "parent out\n", 11);
}

static void run_forked(void *arg)
{
	int st;
	pid_t pid;

	(void)arg;
	pid = fork();
	if (pid == 0) {
		char line[128];
		int n = snprintf(line, sizeof(line), "forked child out id=%s\n", cur_id());

		write_all(1, line, (size_t)n);
		fprintf(stderr, "forked child err id=%s\n", cur_id());
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		exit(8);
	fprintf(stderr, "parent status=%d id=%s\n", st, cur_id());
}

int main(int argc, char **argv)
{
	self = argv[0];
	if (argc >= 2 && !strcmp(argv[1], "emit"))
		return emit();
	if (argc >= 4 && !strcmp(argv[1], "cgi")) {
		how = argv[2];
		outp = argv[3];
		in_request("parent-req", run_cgi);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "forked")) {
		in_request("fk1", run_forked);
		return 0;
	}
	return 2;
}
