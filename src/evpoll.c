/*
 * poll and select (evq.h): split mode reports one ready fd per call, in turn;
 * batch mode returns the kernel's result unchanged. Each thread learns its
 * poll loop and its select loop separately (REQCTX_LOOP=auto).
 *
 * Both are level-triggered, so an fd left out of one call's result is
 * reported again by the next. In split mode a per-thread cursor remembers
 * where the last reported fd was (an index into the pollfd array, an fd
 * number for select) and the next call reports the first ready one after it,
 * wrapping around, so no ready fd waits more than one round.
 */
#include "evq.h"

#include <limits.h>


#define WORD_BITS (sizeof(unsigned long) * CHAR_BIT)

static RQ_TLS nfds_t poll_next;
static RQ_TLS int select_next;
static RQ_TLS struct rq_learn poll_l, select_l;

int rq_poll_after(struct pollfd *fds, nfds_t nfds, int r)
{
	nfds_t start, pick = 0;
	int e = errno;

	if (r <= 0 || (uintptr_t)fds < RQ_FIRST_PAGE || nfds == 0)
		return r;
	if (rq_evq_mode(&poll_l) == RQ_LM_BATCH) {
		while (pick < nfds && !fds[pick].revents)
			pick++;
		if (pick < nfds)
			rq_evq_enter(fds[pick].fd, &poll_l, NULL, 0);
		errno = e;
		return r;
	}
	start = r > 1 && poll_next < nfds ? poll_next : 0;
	for (nfds_t j = 0; j < nfds; j++) {
		pick = (start + j) % nfds;
		if (fds[pick].revents)
			break;
	}
	if (r > 1) {
		for (nfds_t i = 0; i < nfds; i++)
			if (i != pick)
				fds[i].revents = 0;
		poll_next = pick + 1;
	}
	rq_evq_enter(fds[pick].fd, &poll_l, NULL, 0);
	errno = e;
	return 1;
}

static int bit(const fd_set *s, int fd)
{
	return s && (((const unsigned long *)s)[fd / WORD_BITS] >> (fd % WORD_BITS)) & 1;
}

static void clear(fd_set *s, int fd)
{
	if (s)
		((unsigned long *)s)[fd / WORD_BITS] &= ~(1UL << (fd % WORD_BITS));
}

static int bits(const fd_set *rd, const fd_set *wr, const fd_set *ex, int fd)
{
	return bit(rd, fd) + bit(wr, fd) + bit(ex, fd);
}

/* The first fd at or after `from` (wrapping) with a bit in any set, or -1. */
static int next_ready(int nfds, const fd_set *rd, const fd_set *wr, const fd_set *ex, int from)
{
	for (int j = 0; j < nfds; j++) {
		int fd = (from + j) % nfds;

		if (bits(rd, wr, ex, fd))
			return fd;
	}
	return -1;
}

int rq_select_after(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int r)
{
	int e = errno, pick, n, batch;

	if (r <= 0 || nfds <= 0)
		return r;
	batch = rq_evq_mode(&select_l) == RQ_LM_BATCH;
	pick = next_ready(nfds, rd, wr, ex, batch || select_next >= nfds ? 0 : select_next);
	if (pick < 0)
		return r;
	n = bits(rd, wr, ex, pick);
	if (!batch && n < r) {
		for (int fd = 0; fd < nfds; fd++)
			if (fd != pick) {
				clear(rd, fd);
				clear(wr, fd);
				clear(ex, fd);
			}
		select_next = pick + 1;
		r = n;
	}
	rq_evq_enter(pick, &select_l, NULL, 0);
	errno = e;
	return r;
}
