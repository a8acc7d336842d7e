/* Shared fixtures for the unit suites, which link src/ directly (no preload). */
#ifndef RQ_TEST_COMMON_H
#define RQ_TEST_COMMON_H

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config.h"
#include "sys.h"

/* Loads the configuration from a NULL-terminated list of "NAME=value". */
static const char *const *test_env_list;
static char test_report_buf[4096];

static inline const char *test_getenv(const char *name)
{
	size_t n = strlen(name);

	for (const char *const *p = test_env_list; p && *p; p++)
		if (!strncmp(*p, name, n) && (*p)[n] == '=')
			return *p + n + 1;
	return NULL;
}

static inline void test_report(const char *line)
{
	strncat(test_report_buf, line, sizeof(test_report_buf) - strlen(test_report_buf) - 2);
	strcat(test_report_buf, "\n");
}

static inline void test_config(const char *const *env)
{
	test_env_list = env;
	test_report_buf[0] = '\0';
	rq_config_load(test_getenv, test_report);
}

/*
 * A fake kernel for the write path: it records every byte it accepts, takes
 * at most `cap` bytes per call, and fails call number `fail_at` (1-based)
 * with errno `fail_errno`. `hook`, if set, runs after each call has taken its
 * bytes, as a signal handler does when the kernel delivers a signal at the
 * end of a system call. `max_iov` is the most iovecs one call was given.
 */
struct fake {
	char out[8 << 20];
	size_t len;
	size_t cap;
	int calls, fail_at, fail_errno, max_iov;
	void (*hook)(void);
};

static struct fake fk;

static inline void fake_reset(size_t cap)
{
	fk.len = 0;
	fk.cap = cap ? cap : (size_t)-1;
	fk.calls = fk.fail_at = fk.fail_errno = fk.max_iov = 0;
	fk.hook = NULL;
}

static inline ssize_t fake_take(const struct iovec *iov, int n)
{
	size_t room, took = 0;
	void (*hook)(void) = fk.hook;

	fk.calls++;
	if (n > fk.max_iov)
		fk.max_iov = n;
	if (fk.fail_at && fk.calls == fk.fail_at) {
		errno = fk.fail_errno;
		return -1;
	}
	room = fk.cap;
	for (int i = 0; i < n && room; i++) {
		size_t t = iov[i].iov_len < room ? iov[i].iov_len : room;

		if (t > sizeof(fk.out) - fk.len)
			t = sizeof(fk.out) - fk.len;
		memcpy(fk.out + fk.len, iov[i].iov_base, t);
		fk.len += t;
		took += t;
		room -= t;
	}
	if (hook) {
		fk.hook = NULL; /* a handler's own write does not run it again */
		hook();
		fk.hook = hook;
	}
	return (ssize_t)took;
}

static inline ssize_t fake_write(int fd, const void *p, size_t n)
{
	struct iovec v = { (void *)p, n };

	(void)fd;
	return fake_take(&v, 1);
}

static inline ssize_t fake_writev(int fd, const struct iovec *iov, int n)
{
	(void)fd;
	return fake_take(iov, n);
}

static inline ssize_t fake_send(int fd, const void *p, size_t n, int flags)
{
	(void)flags;
	return fake_write(fd, p, n);
}

static inline ssize_t fake_sendto(int fd, const void *p, size_t n, int flags,
				  const struct sockaddr *a, socklen_t al)
{
	(void)a;
	(void)al;
	return fake_send(fd, p, n, flags);
}

static inline ssize_t fake_sendmsg(int fd, const struct msghdr *m, int flags)
{
	(void)fd;
	(void)flags;
	return fake_take(m->msg_iov, (int)m->msg_iovlen);
}

static inline void fake_install(void)
{
	rq_sys.write = fake_write;
	rq_sys.writev = fake_writev;
	rq_sys.send = fake_send;
	rq_sys.sendto = fake_sendto;
	rq_sys.sendmsg = fake_sendmsg;
	rq_sys.fwrite_unlocked = fwrite_unlocked;
}

#endif
