#include "linereader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_fd(struct rc_reader *r)
{
	struct stat st;

	r->fd = strcmp(r->path, "-") ? open(r->path, O_RDONLY | O_CLOEXEC) : 0;
	if (r->fd < 0)
		return -errno;
	if (fstat(r->fd, &st) < 0) {
		int e = -errno;

		if (r->fd)
			close(r->fd);
		return e;
	}
	if (S_ISDIR(st.st_mode)) {
		close(r->fd);
		return -EISDIR;
	}
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	r->size = 0;
	if (r->show && !r->follow && S_ISREG(st.st_mode) && st.st_size >= RC_PROGRESS_MIN)
		r->size = st.st_size;
	return 0;
}

int rc_reader_open(struct rc_reader *r, const char *path, int follow, int progress)
{
	int e;

	memset(r, 0, sizeof(*r));
	r->path = path;
	r->follow = follow;
	r->show = progress;
	r->progress = -1;
	r->buf = malloc(RC_READ_BUF);
	if (!r->buf)
		return -ENOMEM;
	r->cap = RC_READ_BUF;
	e = open_fd(r);
	if (e < 0) {
		free(r->buf);
		r->buf = NULL;
	}
	return e;
}

static void show_progress(struct rc_reader *r)
{
	int pct = (int)(r->pos * 100 / r->size);

	if (pct == r->progress)
		return;
	r->progress = pct;
	fprintf(stderr, "\rreqctx: %s: %d%%", r->path, pct);
}

/* Makes room at the end of the buffer: compacts, or doubles a full buffer. */
static int make_room(struct rc_reader *r)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->scan -= r->start;
		r->start = 0;
	}
	if (r->end == r->cap) {
		char *nb = realloc(r->buf, r->cap * 2);

		if (!nb)
			return -ENOMEM;
		r->buf = nb;
		r->cap *= 2;
	}
	return 0;
}

static int take(struct rc_reader *r, size_t upto, const char **p, size_t *len)
{
	*p = r->buf + r->start;
	*len = upto - r->start;
	r->start = r->scan = upto;
	return 1;
}

int rc_reader_block(struct rc_reader *r, const char **p, size_t *len)
{
	for (;;) {
		ssize_t n;
		char *nl;

		if (r->scan < r->end) {
			nl = memrchr(r->buf + r->scan, '\n', r->end - r->scan);
			if (nl)
				return take(r, (size_t)(nl + 1 - r->buf), p, len);
			r->scan = r->end;
		}
		if (make_room(r) < 0)
			return -ENOMEM;
		n = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			if (r->start < r->end && !r->follow)
				return take(r, r->end, p, len);
			return 0;
		}
		r->end += (size_t)n;
		r->pos += n;
		if (r->size)
			show_progress(r);
	}
}

int rc_reader_recheck(struct rc_reader *r)
{
	struct stat st, now;

	if (!strcmp(r->path, "-") || fstat(r->fd, &st) < 0)
		return 0;
	if (st.st_size < r->pos) {
		fprintf(stderr, "reqctx: %s: file truncated\n", r->path);
		lseek(r->fd, 0, SEEK_SET);
		r->pos = 0;
		r->start = r->scan = r->end = 0;
		return 1;
	}
	if (stat(r->path, &now) == 0 && (now.st_ino != r->ino || now.st_dev != r->dev)) {
		int old = r->fd;

		if (open_fd(r) < 0) {
			r->fd = old;
			return 0;
		}
		close(old);
		fprintf(stderr, "reqctx: %s: file replaced; following the new file\n", r->path);
		r->pos = 0;
		r->start = r->scan = r->end = 0;
		return 1;
	}
	return 0;
}

void rc_reader_close(struct rc_reader *r)
{
	if (r->progress >= 0)
		fputs("\r\033[K", stderr);
	if (r->fd > 0)
		close(r->fd);
	free(r->buf);
	r->buf = NULL;
}
