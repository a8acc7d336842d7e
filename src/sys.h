/*
 * The real libc functions that src/ calls for I/O it performs on the host's
 * behalf. preload/init.c fills the table once (dlsym RTLD_NEXT); the unit
 * tests fill it with libc's own functions or with fakes. src/ never calls the
 * interposed names directly, since inside libreqctx.so those bind to our own
 * wrappers.
 */
#ifndef RQ_SYS_H
#define RQ_SYS_H

#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct rq_sys {
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	size_t (*fwrite_unlocked)(const void *, size_t, size_t, FILE *);
};

extern struct rq_sys rq_sys;

#endif
