#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_BUF (1 << 20) /* stdout buffer for bulk output */

static char out_buf[OUT_BUF];
static size_t out_len;
static int out_error;

void rc_err(const char *fmt, ...)
{
	va_list ap;

	fputs("reqctx: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int rc_usage_err(const char *sub, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "reqctx %s: ", sub);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'reqctx %s --help'.\n", sub);
	return RC_EXIT_USAGE;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int rc_out_flush(void)
{
	fflush(stdout);
	if (!out_error && out_len)
		out_error = write_all(1, out_buf, out_len);
	out_len = 0;
	return out_error;
}

void rc_out(const void *data, size_t len)
{
	if (out_error)
		return;
	if (out_len + len > OUT_BUF) {
		rc_out_flush();
		if (len >= OUT_BUF) {
			if (!out_error)
				out_error = write_all(1, data, len);
			return;
		}
	}
	memcpy(out_buf + out_len, data, len);
	out_len += len;
}

void rc_out_str(const char *s)
{
	rc_out(s, strlen(s));
}

/* 0 if path names an executable regular file, else -ENOENT or -EACCES. */
static int exec_ok(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -EACCES;
	if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0)
		return -EACCES;
	return 0;
}

int rc_resolve_cmd(const char *cmd, char *out, size_t size)
{
	const char *path = getenv("PATH");
	int seen_eacces = 0;

	if (!*cmd)
		return -ENOENT;
	if (strchr(cmd, '/')) {
		if (strlen(cmd) >= size)
			return -ENAMETOOLONG;
		strcpy(out, cmd);
		return exec_ok(cmd);
	}
	if (!path)
		path = "/bin:/usr/bin";
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dl = (size_t)(end - p);
		int n = dl ? snprintf(out, size, "%.*s/%s", (int)dl, p, cmd)
			   : snprintf(out, size, "%s", cmd);
		int r;

		if (n < 0 || (size_t)n >= size)
			return -ENAMETOOLONG;
		r = exec_ok(out);
		if (r == 0)
			return 0;
		if (r == -EACCES && access(out, F_OK) == 0)
			seen_eacces = 1;
		if (!*end)
			break;
		p = end;
	}
	return seen_eacces ? -EACCES : -ENOENT;
}

static void note_tried(char *tried, size_t size, const char *path)
{
	size_t used;

	if (!tried)
		return;
	used = strlen(tried);
	snprintf(tried + used, size - used, "%s%s", used ? ", " : "", path);
}

/* Writes realpath(dir) + "/" + name to out if that file is readable. */
static int try_lib(const char *dir, const char *name, char *out, size_t size,
		   char *tried, size_t tried_size)
{
	char real[PATH_MAX], shown[RC_PATH_MAX];
	int n;

	snprintf(shown, sizeof(shown), "%s/%s", dir, name);
	note_tried(tried, tried_size, shown);
	if (!realpath(dir, real))
		return -ENOENT;
	n = snprintf(out, size, "%s/%s", real, name);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return access(out, R_OK) == 0 ? 0 : -ENOENT;
}

int rc_find_library(char *out, size_t size, char *tried, size_t tried_size)
{
	static const char *const subdirs[] = {
		"", "/../lib", "/../lib64", "/../lib/x86_64-linux-gnu",
	};
	const char *env = getenv("REQCTX_LIBRARY");
	char self[RC_PATH_MAX], dir[RC_PATH_MAX];
	ssize_t n;

	if (tried)
		tried[0] = '\0';
	if (env && *env) {
		char *slash = strrchr(env, '/');

		note_tried(tried, tried_size, env);
		if (!slash)
			return try_lib(".", env, out, size, NULL, 0);
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - env), env);
		return try_lib(slash == env ? "/" : dir, slash + 1, out, size, NULL, 0);
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return -errno;
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		snprintf(dir, sizeof(dir), "%s%s", self, subdirs[i]);
		if (i == 0 && try_lib(dir, RC_LIB_DEVNAME, out, size, tried, tried_size) == 0)
			return 0;
		if (i > 0 && try_lib(dir, RC_LIB_SONAME, out, size, tried, tried_size) == 0)
			return 0;
		if (i > 0 && try_lib(dir, RC_LIB_DEVNAME, out, size, tried, tried_size) == 0)
			return 0;
	}
	return -ENOENT;
}

int rc_prefix_parse(const char *fmt, struct rc_prefix *p)
{
	return rq_config_prefix_split(fmt, p);
}

int rc_id_valid(const char *s)
{
	return rq_id_valid(s, strlen(s));
}

long rc_prefix_match(const struct rc_prefix *p, const char *line, size_t len,
		     const char **id, size_t *id_len)
{
	const char *s = line + p->head_len;
	size_t rest, run = 0, lo = 1;

	if (len < p->head_len + 1 + p->tail_len || memcmp(line, p->head, p->head_len))
		return -1;
	rest = len - p->head_len;
	while (run < rest && run <= REQCTX_ID_MAX && rc_id_char((unsigned char)s[run]))
		run++;
	if (!p->tail_len || !rc_id_char((unsigned char)p->tail[0])) {
		/* The ID can only end where the run of ID characters ends. */
		if (run == 0 || run > REQCTX_ID_MAX)
			return -1;
		lo = run;
	} else if (run > REQCTX_ID_MAX) {
		run = REQCTX_ID_MAX;
	}
	for (size_t n = run; n >= lo && n > 0; n--) {
		if (n + p->tail_len > rest || memcmp(s + n, p->tail, p->tail_len))
			continue;
		if (!p->tail_len && n < rest && rc_id_char((unsigned char)s[n]))
			return -1;
		*id = s;
		*id_len = n;
		return (long)(p->head_len + n + p->tail_len);
	}
	return -1;
}
