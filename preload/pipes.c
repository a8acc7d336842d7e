/*
 * Pipes and eventfds: hand-offs between threads. A write carries the
 * writer's context to whoever reads the other end.
 */
#include <sys/eventfd.h>

#include "carry.h"
#include "crash.h"
#include "preload.h"

static int made_pipe(int r, int fds[2])
{
	if (r == 0) {
		rq_carry_new(fds[0], -1);
		RQ_SAVE_ERRNO(rq_fd_set_relay(fds[0]));
		rq_carry_new(fds[1], fds[0]);
	}
	return r;
}

RQ_EXPORT int pipe(int fds[2])
{
	if (unlikely(!rq_ready()))
		return RQ_FALL(pipe, (fds), (int)RQ_RAW(pipe2, fds, 0));
	return made_pipe(rq_real.pipe(fds), fds);
}

RQ_EXPORT int pipe2(int fds[2], int flags)
{
	if (unlikely(rq_crash_no_pipes))
		return errno = EMFILE, -1; /* libunwind's own check pipe (src/crash.h) */
	if (unlikely(!rq_ready()))
		return RQ_FALL(pipe2, (fds, flags), (int)RQ_RAW(pipe2, fds, flags));
	return made_pipe(rq_real.pipe2(fds, flags), fds);
}

RQ_EXPORT int eventfd(unsigned int count, int flags)
{
	int fd;

	if (unlikely(!rq_ready()))
		return RQ_FALL(eventfd, (count, flags), (int)RQ_RAW(eventfd2, count, flags));
	fd = rq_real.eventfd(count, flags);
	rq_carry_new(fd, -1);
	return fd;
}
