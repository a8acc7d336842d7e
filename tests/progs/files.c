/*
 * Which files are logs: writes the same lines to files opened in different
 * ways under DIR (argv[1]), inside reqctx_run("f1") when the library is there.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *dir;

static int op(const char *name, int flags)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return open(p, flags, 0644);
}

static FILE *fop(const char *name, const char *mode)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return fopen(p, mode);
}

static void put(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		_exit(3);
}

static void body(void *arg)
{
	int aof = op("appendonly.aof", O_WRONLY | O_CREAT | O_APPEND);
	int log = op("app.log", O_WRONLY | O_CREAT | O_APPEND);
	int trunc = op("trunc.log", O_WRONLY | O_CREAT | O_TRUNC);
	int rot = op("app.log.1", O_WRONLY | O_CREAT | O_APPEND);
	FILE *data = fop("data.txt", "a"), *flog = fop("svc_log", "a"), *w = fop("w.log", "w");
	int d;

	(void)arg;
	put(aof, "SET k v\n*3\r\n$3\r\nSET\r\n");
	put(log, "log line\n");
	put(trunc, "not appended\n");
	put(rot, "rotated\n");
	fputs("data line\n", data);
	fprintf(flog, "stdio log %d\n", 1);
	fputs("w mode\n", w);
	fclose(data);
	fclose(flog);
	fclose(w);
	d = dup(log);
	put(d, "via dup\n");
	close(log);
	close(d);
	d = op("reused.bin", O_WRONLY | O_CREAT | O_APPEND); /* may reuse the log's number */
	put(d, "binary\n");
	close(d);
	close(aof);
	close(trunc);
	close(rot);
}

int main(int argc, char **argv)
{
	int (*run)(const char *, void (*)(void *), void *) =
		(int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");

	if (argc < 2)
		return 2;
	dir = argv[1];
	if (run)
		run("f1", body, NULL);
	else
		body(NULL);
	return 0;
}
