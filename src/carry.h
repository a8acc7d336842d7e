/*
 * Context carriers: descriptors that move a request context from the thread
 * that writes to them to the thread that reads from them.
 *
 * Sockets, socketpairs, pipes, eventfds and timerfds a process creates are
 * carriers. They start with the context current when they were created (an
 * upstream connection opened for a request belongs to it), and every write
 * (or timerfd_settime) replaces what they carry with the writer's context,
 * so that a read, or an epoll event, on the other side resumes it:
 *
 *   write(eventfd) in request A  ->  read(eventfd) in a worker runs as A
 *   timerfd armed in request A   ->  its expiry, read or polled, runs as A
 *   request sent upstream for A  ->  the upstream's response is read as A
 *
 * A carrier holds one context: the last writer's. Two requests writing to
 * the same carrier before its reader runs (a shared wakeup eventfd, say)
 * leave the reader with the second. README "How context travels" lists this
 * and the other cases a syscall-level view cannot get right.
 */
#ifndef RQ_CARRY_H
#define RQ_CARRY_H

#include "fdtab.h"

/*
 * fd was just created and carries the current context. For a pipe, call it
 * for the read end with peer -1 and for the write end with peer = read end.
 */
void rq_carry_new(int fd, int peer);

/* fd was written to or armed: it (or its peer) now carries the current context. */
void rq_carry_put(int fd, struct rq_fd *e);

/* After a read on carrier fd: the carried context becomes the thread's. */
void rq_carry_read(int fd);

/*
 * Makes fd's context the calling thread's: a connection's current request,
 * what a carrier carries, the writer whose log write the kernel left pending
 * (src/io.c), or "unknown" for any other fd.
 */
void rq_fd_enter(int fd);

#endif
