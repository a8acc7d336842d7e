/*
 * A server's write(2) through the library's write path (src/io.c's
 * rq_io_write, as preload/ calls it), for the unit suites that drive it
 * (test_write.c, test_out.c, test_correlate.c) over common.h's fake
 * kernel, and a check of what that kernel took.
 */
#ifndef RQ_TEST_IOWRITE_H
#define RQ_TEST_IOWRITE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <sys/uio.h>

#include "common.h"
#include "io.h"

/* write(fd, s, n) as the host calls it. */
static inline ssize_t wr(int fd, const char *s, size_t n)
{
	struct iovec v = { (void *)s, n };
	struct rq_call k = { .how = RQ_WRITE };

	return rq_io_write(fd, &v, 1, &k);
}

/* Writes all of s as a careful server does: again after short writes and EAGAIN. */
static inline void write_all(int fd, const char *s, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = wr(fd, s + done, n - done);

		if (r < 0) {
			cr_assert_eq(errno, EAGAIN);
			continue;
		}
		cr_assert_gt(r, 0, "write returned 0 for %zu bytes", n - done);
		done += (size_t)r;
	}
}

/*
 * The fake kernel took exactly want. A failure says where they first
 * differ and quotes each from 100 bytes before that, up to quote bytes.
 */
static inline void fake_out_is(const char *want, int quote)
{
	size_t d = 0, wl = strlen(want);

	fk.out[fk.len] = '\0';
	while (d < fk.len && d < wl && fk.out[d] == want[d])
		d++;
	cr_assert(d == wl && d == fk.len,
		  "got %zu bytes, want %zu; they differ at %zu:\n--- got ---\n%.*s\n--- want ---\n%.*s",
		  fk.len, wl, d, quote, fk.out + (d > 100 ? d - 100 : 0), quote,
		  want + (d > 100 ? d - 100 : 0));
}

#endif
