/*
 * Reading log input in blocks of whole lines, with big read() calls.
 *
 * The buffer starts at RC_READ_BUF and doubles while a single line does not
 * fit, so memory is O(longest line), never O(file).
 */
#ifndef RC_LINEREADER_H
#define RC_LINEREADER_H

#include <sys/types.h>

#define RC_READ_BUF      (1 << 20)  /* initial buffer: one read() of 1 MiB */
#define RC_PROGRESS_MIN  (16 << 20) /* files from this size show progress on a tty */

struct rc_reader {
	int fd;
	const char *path;  /* as given; "-" is stdin */
	char *buf;
	size_t cap, start, scan, end; /* unconsumed data is buf[start, end) */
	off_t pos;         /* bytes read from fd so far */
	off_t size;        /* file size for progress, or 0 for none */
	int progress;      /* last percent shown, -1 before the first */
	int follow;        /* 1: keep a final partial line until its '\n' arrives */
	int show;          /* 1: progress may be shown */
	dev_t dev;
	ino_t ino;
};

/*
 * Opens path ("-": stdin). With `progress`, a regular file of RC_PROGRESS_MIN
 * bytes or more shows the percentage read on stderr (the caller checks that
 * stderr is a terminal). Returns 0 or -errno.
 */
int rc_reader_open(struct rc_reader *r, const char *path, int follow, int progress);

/*
 * Returns 1 and sets *p, *len to the next block of whole lines (it ends in
 * '\n', except for the last line of the input when not following), 0 at the
 * end of the input for now, or -errno. The block stays valid until the next
 * call.
 */
int rc_reader_block(struct rc_reader *r, const char **p, size_t *len);

/*
 * For --follow at the end of the input: detects truncation (start again from
 * offset 0) and replacement of the file at r->path (reopen it). Returns 1 if
 * it did either (after a note on stderr), 0 if not.
 */
int rc_reader_recheck(struct rc_reader *r);

/* Clears the progress display if any, closes the file and frees the buffer. */
void rc_reader_close(struct rc_reader *r);

#endif
