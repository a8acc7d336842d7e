/*
 * Opening files: a file opened for appending whose name matches
 * REQCTX_LOG_FILES becomes a log stream; any other open resets the fd's entry.
 */
#include <fcntl.h>
#include <string.h>

#include "config.h"
#include "fdtab.h"
#include "preload.h"

static void classify(int fd, const char *path, int append)
{
	int e = errno;

	if (rq_vfork_child())
		return; /* the table is the parent's (sockets.c) */
	if (!(append && path && rq_config_is_log_path(path)) || rq_fd_set_log(fd) < 0)
		rq_fd_forget(fd); /* (a log that cannot be tracked passes through as any file) */
	errno = e;
}

static int opened(int fd, const char *path, int flags)
{
	if (fd >= 0)
		classify(fd, path, (flags & O_APPEND) && (flags & O_ACCMODE) != O_RDONLY);
	return fd;
}

static FILE *fopened(FILE *f, const char *path, const char *mode)
{
	if (f && path && f->_fileno >= 0)
		classify(f->_fileno, path, mode && strchr(mode, 'a'));
	return f;
}

static int needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

#define MODE_ARG(flags)                                         \
	mode_t mode = 0;                                        \
	if (needs_mode(flags)) {                                \
		va_list ap;                                     \
		va_start(ap, flags);                            \
		mode = (mode_t)va_arg(ap, int);                 \
		va_end(ap);                                     \
	}

RQ_EXPORT int open(const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (unlikely(!rq_ready()))
		return RQ_FALL(open, (path, flags, mode),
			       (int)RQ_RAW(openat, AT_FDCWD, path, flags, mode));
	return opened(rq_real.open(path, flags, mode), path, flags);
}

RQ_EXPORT int open64(const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (unlikely(!rq_ready()))
		return RQ_FALL(open64, (path, flags, mode),
			       (int)RQ_RAW(openat, AT_FDCWD, path, flags | O_LARGEFILE, mode));
	return opened(rq_real.open64(path, flags, mode), path, flags);
}

RQ_EXPORT int openat(int dir, const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (unlikely(!rq_ready()))
		return RQ_FALL(openat, (dir, path, flags, mode),
			       (int)RQ_RAW(openat, dir, path, flags, mode));
	return opened(rq_real.openat(dir, path, flags, mode), path, flags);
}

RQ_EXPORT int openat64(int dir, const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (unlikely(!rq_ready()))
		return RQ_FALL(openat64, (dir, path, flags, mode),
			       (int)RQ_RAW(openat, dir, path, flags | O_LARGEFILE, mode));
	return opened(rq_real.openat64(dir, path, flags, mode), path, flags);
}

RQ_EXPORT int __open_2(const char *path, int flags)
{
	if (unlikely(!rq_ready() || !rq_real.__open_2))
		return RQ_FALL(__open_2, (path, flags),
			       (int)RQ_RAW(openat, AT_FDCWD, path, flags, 0));
	return opened(rq_real.__open_2(path, flags), path, flags);
}

RQ_EXPORT int __open64_2(const char *path, int flags)
{
	if (unlikely(!rq_ready() || !rq_real.__open64_2))
		return RQ_FALL(__open64_2, (path, flags),
			       (int)RQ_RAW(openat, AT_FDCWD, path, flags | O_LARGEFILE, 0));
	return opened(rq_real.__open64_2(path, flags), path, flags);
}

RQ_EXPORT int __openat_2(int dir, const char *path, int flags)
{
	if (unlikely(!rq_ready() || !rq_real.__openat_2))
		return RQ_FALL(__openat_2, (dir, path, flags),
			       (int)RQ_RAW(openat, dir, path, flags, 0));
	return opened(rq_real.__openat_2(dir, path, flags), path, flags);
}

RQ_EXPORT int __openat64_2(int dir, const char *path, int flags)
{
	if (unlikely(!rq_ready() || !rq_real.__openat64_2))
		return RQ_FALL(__openat64_2, (dir, path, flags),
			       (int)RQ_RAW(openat, dir, path, flags | O_LARGEFILE, 0));
	return opened(rq_real.__openat64_2(dir, path, flags), path, flags);
}

RQ_EXPORT int creat(const char *path, mode_t mode)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(creat, (path, mode),
			       (int)RQ_RAW(openat, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode));
	return opened(rq_real.creat(path, mode), path, O_WRONLY);
}

RQ_EXPORT int creat64(const char *path, mode_t mode)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(creat64, (path, mode),
			       (int)RQ_RAW(openat, AT_FDCWD, path,
				   O_CREAT | O_WRONLY | O_TRUNC | O_LARGEFILE, mode));
	return opened(rq_real.creat64(path, mode), path, O_WRONLY);
}

/* Before our resolution is done, the FILE functions fall back to glibc's _IO_ aliases. */
extern FILE *_IO_fopen(const char *, const char *);
extern int _IO_fclose(FILE *);

RQ_EXPORT FILE *fopen(const char *path, const char *mode)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(fopen, (path, mode), _IO_fopen(path, mode));
	return fopened(rq_real.fopen(path, mode), path, mode);
}

RQ_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(fopen64, (path, mode), _IO_fopen(path, mode));
	return fopened(rq_real.fopen64(path, mode), path, mode);
}

/*
 * glibc exports no alias for freopen. Before resolution is done (only in a
 * thread racing our first initialisation) it fails with EAGAIN; in
 * pass-through it is libc's.
 */
RQ_EXPORT FILE *freopen(const char *path, const char *mode, FILE *f)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(freopen, (path, mode, f), (errno = EAGAIN, NULL));
	return fopened(rq_real.freopen(path, mode, f), path, mode);
}

RQ_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *f)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(freopen64, (path, mode, f), (errno = EAGAIN, NULL));
	return fopened(rq_real.freopen64(path, mode, f), path, mode);
}

RQ_EXPORT int fclose(FILE *f)
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(fclose, (f), _IO_fclose(f));
	if (f && f->_fileno >= 0 && !rq_vfork_child())
		rq_fd_forget(f->_fileno);
	return rq_real.fclose(f);
}
