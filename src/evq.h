/*
 * Readiness APIs (epoll, poll, select): the callback that handles an fd's
 * event runs in that fd's context, even if it logs before touching the fd.
 *
 * epoll. The kernel returns epoll_event.data untouched, so reqctx registers
 * its own value, (fd, registration number), and keeps the caller's data in a
 * table per epoll instance (keyed by epoll fd and fd). A wait makes one real
 * call for up to RQ_EVQ_CAP events, keeps them in a queue per thread and per
 * epoll fd, and hands them out one per call: each time it makes the event's
 * fd current (rq_fd_enter) and restores the caller's data. A queued event is
 * dropped if its registration was modified or deleted, or its fd closed,
 * reused or dup'ed onto, since the fetch; the kernel re-reports what is still
 * ready (EPOLL_CTL_MOD re-evaluates readiness, also for EPOLLET and
 * EPOLLONESHOT), so nothing ready is lost and nothing is delivered twice.
 *
 * poll and select are level-triggered: when several fds are ready, one is
 * reported (the others' results are cleared), in turn across calls, and the
 * next call reports the next one. Each ready fd costs one system call.
 *
 * Limits (README "How context travels"):
 * - while a thread has queued events for an epoll fd, epoll_pwait and
 *   epoll_pwait2 return the next one without a system call, so their signal
 *   mask is not applied for that call;
 * - a thread with queued events for RQ_EVQ_NQ epoll fds that waits on yet
 *   another one gets that wait's whole batch, in the context of its first
 *   event;
 * - epoll instances created before reqctx started, or reached through a dup
 *   of an epoll fd, are passed through untouched: a dup of a tracked epoll fd
 *   sees reqctx's data values, not the caller's;
 * - fds at or above RQ_FD_MAX cannot be registered in a tracked instance
 *   (epoll_ctl fails with ENOMEM);
 * - the child of a fork starts with empty queues: events its parent had
 *   fetched but not yet handed out stay with the parent;
 * - a thread that stops waiting (it exits, or leaves its loop) while events
 *   are queued for it drops them, as a program would drop the rest of a
 *   batch it did not process: level-triggered fds are reported again,
 *   edge-triggered and one-shot ones are not;
 * - epoll_ctl reads the caller's epoll_event itself: a NULL (or first-page)
 *   pointer still fails with EFAULT, any other invalid one faults;
 * - fds registered through a dup of a tracked epoll fd are not known to the
 *   original's table: their events are dropped when waited for through it.
 */
#ifndef RQ_EVQ_H
#define RQ_EVQ_H

#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

#include "internal.h"

#define RQ_EVQ_CAP 64 /* events fetched per real wait (and queued per epoll fd) */
#define RQ_EVQ_NQ  4  /* epoll fds a thread can hold queued events for at once */

/* How to make the real wait: wait() calls epoll_wait, epoll_pwait or epoll_pwait2. */
struct rq_evq_call {
	int (*wait)(const struct rq_evq_call *k, int epfd, struct epoll_event *ev, int max);
	void *real;
	int timeout;
	const struct timespec *ts;
	const sigset_t *mask;
};

typedef int (*rq_epoll_ctl_fn)(int, int, int, struct epoll_event *);

/* epfd was just returned by epoll_create or epoll_create1: it starts an empty table. */
void rq_evq_created(int epfd);

/*
 * Stands in for epoll_ctl: records the registration and passes reqctx's own
 * data value to `real`. Returns what the kernel returned, with its errno; on
 * failure the table is as it was.
 */
int rq_evq_ctl(rq_epoll_ctl_fn real, int epfd, int op, int fd, struct epoll_event *ev);

/*
 * Stands in for the epoll wait family: returns the next queued event of
 * epfd for this thread, or makes one real wait (k->wait). Returns what the
 * real wait would (-1 with its errno, 0 on timeout) or, for an event, 1 with
 * ev[0] holding the caller's data and the event's fd's context current.
 */
int rq_evq_wait(int epfd, struct epoll_event *ev, int maxevents, const struct rq_evq_call *k);

/* In the child of a fork: frees the epoll_ctl locks, drops this thread's queued events. */
void rq_evq_after_fork(void);

/*
 * After poll or ppoll returned r: if several fds are ready, keeps one (in
 * turn) and clears the others' revents. Returns the count to return, and
 * makes the reported fd's context current.
 */
int rq_poll_after(struct pollfd *fds, nfds_t nfds, int r);

/* The same for select and pselect: keeps one ready fd's bits in the three sets. */
int rq_select_after(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int r);

#endif
