/*
 * spawn: starts children every way a program can, inside a request (made
 * with the library's reqctx_run, looked up at run time) and outside any.
 * Each child prints "<how> <REQCTX_PARENT_ID> <HTTP_X_REQUEST_ID>" on stdout
 * and "<how> err" on stderr; the parent waits for each before the next.
 *
 *   spawn ID    the children of the request ID, then one outside any
 */
#include <dlfcn.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define SHOW(how) "echo " how " ${REQCTX_PARENT_ID:--} ${HTTP_X_REQUEST_ID:--}; echo " how " err >&2"

static void wait_for(pid_t pid)
{
	int st;

	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		exit(3);
}

static char *const *cgi_env(void)
{
	static char *e[64];
	int n = 0;

	for (char **p = environ; *p && n < 62; p++)
		e[n++] = *p;
	e[n++] = "GATEWAY_INTERFACE=CGI/1.1";
	e[n] = NULL;
	return e;
}

static void children(void *arg)
{
	char *sys_argv[] = { "sh", "-c", SHOW("posix_spawn"), NULL };
	char *spp_argv[] = { "sh", "-c", SHOW("posix_spawnp"), NULL };
	char *cgi_argv[] = { "sh", "-c", SHOW("cgi"), NULL };
	char *ev_argv[] = { "sh", "-c", SHOW("execv"), NULL };
	char *evp_argv[] = { "sh", "-c", SHOW("execvp"), NULL };
	char *eve_argv[] = { "sh", "-c", SHOW("execve"), NULL };
	char line[256];
	FILE *p;
	pid_t pid;

	(void)arg;
	fflush(stdout);
	if (system(SHOW("system")) != 0)
		exit(4);
	p = popen(SHOW("popen"), "r");
	while (p && fgets(line, sizeof(line), p))
		fputs(line, stdout);
	if (!p || pclose(p) != 0)
		exit(5);
	fflush(stdout);
	if (posix_spawn(&pid, "/bin/sh", NULL, NULL, sys_argv, environ) != 0)
		exit(6);
	wait_for(pid);
	if (posix_spawnp(&pid, "sh", NULL, NULL, spp_argv, environ) != 0)
		exit(6);
	wait_for(pid);
	if ((pid = fork()) == 0) {
		execl("/bin/sh", "sh", "-c", SHOW("execl"), (char *)NULL);
		_exit(7);
	}
	wait_for(pid);
	if ((pid = fork()) == 0) {
		execlp("sh", "sh", "-c", SHOW("execlp"), (char *)NULL);
		_exit(7);
	}
	wait_for(pid);
	if ((pid = fork()) == 0) {
		execle("/bin/sh", "sh", "-c", SHOW("execle"), (char *)NULL, environ);
		_exit(7);
	}
	wait_for(pid);
	if ((pid = fork()) == 0) {
		execv("/bin/sh", ev_argv);
		_exit(7);
	}
	wait_for(pid);
	if ((pid = fork()) == 0) {
		execvp("sh", evp_argv);
		_exit(7);
	}
	wait_for(pid);
	if ((pid = vfork()) == 0) {
		execve("/bin/sh", eve_argv, environ);
		_exit(7);
	}
	wait_for(pid);
	if ((pid = vfork()) == 0) {
		execve("/bin/sh", cgi_argv, cgi_env());
		_exit(7);
	}
	wait_for(pid);
}

int main(int argc, char **argv)
{
	int (*run)(const char *, void (*)(void *), void *) =
		(int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");

	if (argc != 2) {
		fprintf(stderr, "usage: spawn ID\n");
		return 2;
	}
	if (run) {
		if (run(argv[1], children, NULL) != 0)
			return 8;
	} else {
		children(NULL); /* without the library: the same children, outside any request */
	}
	if (system(SHOW("outside")) != 0)
		return 4;
	return 0;
}
