/*
 * Readiness APIs (epoll, poll, select): the callback that handles an fd's
 * event runs in that fd's context, at no more loop iterations than without
 * reqctx once the loop is known not to need help.
 *
 * epoll. The kernel returns epoll_event.data untouched, so reqctx registers
 * its own value, tagged (RQ_EVQ_TAG in the top 12 bits) with a registration
 * number and the fd, and keeps the caller's data in a table per epoll
 * instance. Every fd number that refers to the instance (the epoll fd and
 * its dups: dup, dup2, dup3, F_DUPFD*) shares the table; closing one leaves
 * the others working. An event whose value is not reqctx's (a registration
 * made by a raw system call, before start-up, or after a fork, below) is
 * returned exactly as the kernel gave it. An event of a registration since
 * modified or deleted, or of an fd closed, reused or dup'ed onto, is dropped:
 * the kernel re-reports what is still ready (EPOLL_CTL_MOD re-evaluates
 * readiness, also for EPOLLET and EPOLLONESHOT), so nothing ready is lost and
 * nothing is delivered twice. When every event of a real wait is dropped, the
 * wait goes on for the time left of its timeout (CLOCK_MONOTONIC), never the
 * whole timeout again.
 *
 * Split and batch. A loop whose callbacks log before touching their fd needs
 * each event handed out by itself, with its fd's context made current first:
 * "split" fetches up to RQ_EVQ_CAP events in one real wait, queues them per
 * thread and per instance, and hands them out one per call. A loop whose
 * callbacks first read their fd (or write a connection) gets its context from
 * that I/O, and the extra calls only multiply its iterations: "batch" returns
 * everything the kernel returned, data decoded, in one call, with the first
 * event's fd context current. Under REQCTX_LOOP=auto each epoll instance
 * starts split and watches each callback it hands out (the window, below):
 * after RQ_EVQ_LEARN callbacks whose first act was I/O that sets their fd's
 * context it turns to batch; a callback that depended on the context reqctx
 * entered (it logged, or stored the context in a carrier, timer or hand-off
 * queue, while that context was still current and differed from the one
 * before, and then did its own fd's I/O, or none) keeps the instance split
 * for good. In batch mode the first event of each batch is still watched,
 * and the same finding turns the instance back to split for good. poll and
 * select follow the same rule per thread.
 *
 * poll and select are level-triggered: split reports one ready fd per call
 * (the others' results cleared), in turn across calls; batch returns the
 * kernel's result as it is, with the first ready fd's context current.
 *
 * Limits (README "How context travels"):
 * - a batch's callbacks after the first run in the context their own I/O
 *   sets; a callback that logs or writes a carrier before any such I/O, once
 *   its instance has turned to batch, does it in the previous callback's
 *   context (REQCTX_LOOP=split restores one event per call);
 * - while a thread has queued events for an instance, epoll_pwait and
 *   epoll_pwait2 return the next one without a system call, so their signal
 *   mask is not applied for that call;
 * - a thread with queued events for RQ_EVQ_NQ instances that waits on yet
 *   another one gets that wait's whole batch, in the context of its first
 *   event;
 * - once a process forks (fork(), or anything that runs pthread_atfork
 *   handlers), the epoll instances it had are shared with the child: from
 *   then on registrations on them, in the parent as in the child, pass the
 *   caller's data to the kernel as it is, and their events come back as the
 *   kernel gives them, without a context (the I/O of the callback sets it);
 *   registrations made before the fork keep working in both; _Fork() and raw
 *   clone() are not seen;
 * - an epoll fd reqctx does not track (created before it started, or by a
 *   raw system call; a raw dup; one received over a socket) is passed
 *   through, without contexts or splitting, except that values reqctx
 *   registered through a tracked fd of the same instance are decoded by
 *   their registration number, unique in the process (until every tracked
 *   fd of that instance is closed and a new epoll_create reuses its table:
 *   then they come back as the kernel holds them); an exec'd program that
 *   inherits a tracked epoll fd gets reqctx's values for what its parent
 *   registered (as it would get the parent's pointers without reqctx); an
 *   instance that more than RQ_EVQ_ALIASES fd numbers refer to at once is
 *   kept for the life of the process; at most RQ_EVQ_INST_MAX instances are
 *   tracked at once, later ones are passed through;
 * - a value the host registers itself (raw epoll_ctl, or after a fork) that
 *   carries RQ_EVQ_TAG, the number of an fd reqctx registered in the same
 *   instance and a registration number between the first reqctx gave that
 *   fd there and the last it issued is taken for a stale one of reqctx's and
 *   dropped (pointers, fd numbers and small or negative integers never carry
 *   the tag);
 * - in either mode, work a loop runs before this iteration's callbacks
 *   (asyncio's tasks scheduled by an earlier iteration) runs in the first
 *   handed-out event's context until its own I/O;
 * - fds at or above RQ_FD_MAX cannot be registered in a tracked, unshared
 *   instance (epoll_ctl fails with ENOMEM);
 * - the child of a fork starts with empty queues: events its parent had
 *   fetched but not yet handed out stay with the parent;
 * - a thread that stops waiting (it exits, or leaves its loop) while events
 *   are queued for it drops them, as a program would drop the rest of a
 *   batch it did not process: level-triggered fds are reported again,
 *   edge-triggered and one-shot ones are not;
 * - epoll_ctl reads the caller's epoll_event itself: a NULL (or first-page)
 *   pointer still fails with EFAULT, any other invalid one faults.
 */
#ifndef RQ_EVQ_H
#define RQ_EVQ_H

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

#include "internal.h"

#define RQ_EVQ_CAP      64   /* events fetched per real wait in split mode (and queued per instance) */
#define RQ_EVQ_NQ       4    /* epoll instances a thread can hold queued events for at once */
#define RQ_EVQ_LEARN    64   /* callbacks that touched their fd first, before auto turns to batch */
#define RQ_EVQ_ALIASES  8    /* fd numbers per instance tracked for its reuse */
#define RQ_EVQ_INST_MAX 4096 /* epoll instances tracked at once */
#define RQ_EVQ_TAG      0xa5cull /* top 12 bits of every data value reqctx registers */

/* How to make the real wait: wait() calls epoll_wait, epoll_pwait or epoll_pwait2. */
struct rq_evq_call {
	int (*wait)(const struct rq_evq_call *k, int epfd, struct epoll_event *ev, int max);
	void *real;
	int by_ts;                 /* 1: the timeout is ts (epoll_pwait2, NULL: none); 0: timeout, in ms */
	int timeout;
	const struct timespec *ts;
	const sigset_t *mask;
};

typedef int (*rq_epoll_ctl_fn)(int, int, int, struct epoll_event *);

/* epfd was just returned by epoll_create or epoll_create1: a new, empty instance. */
void rq_evq_created(int epfd);

/* `to` was just made a copy of `from` (dup, dup2, dup3, F_DUPFD*): an alias if `from` is tracked. */
void rq_evq_dup(int from, int to);

/*
 * Stands in for epoll_ctl: records the registration and passes reqctx's own
 * data value to `real` (the caller's, on an instance shared with another
 * process). Returns what the kernel returned, with its errno; on failure the
 * table is as it was.
 */
int rq_evq_ctl(rq_epoll_ctl_fn real, int epfd, int op, int fd, struct epoll_event *ev);

/*
 * Stands in for the epoll wait family: returns this thread's queued events of
 * the instance, or makes real waits (k->wait). Returns what the real wait
 * would (-1 with its errno, 0 on timeout), or the events, each with the
 * caller's data (or the kernel's, for a value reqctx did not register), with
 * the first one's fd context current: one event in split mode, all of them in
 * batch mode.
 */
int rq_evq_wait(int epfd, struct epoll_event *ev, int maxevents, const struct rq_evq_call *k);

/* Before fork: the instances become shared with the child. */
void rq_evq_before_fork(void);

/* In the child of a fork: frees the epoll_ctl locks, drops this thread's queued events. */
void rq_evq_after_fork(void);

/* The thread is about to wait (epoll, poll, select): the last callback is over. */
void rq_evq_idle(void);

/*
 * After poll or ppoll returned r: in split mode, if several fds are ready,
 * keeps one (in turn) and clears the others' revents. Returns the count to
 * return, and makes the (first) reported fd's context current.
 */
int rq_poll_after(struct pollfd *fds, nfds_t nfds, int r);

/* The same for select and pselect: split mode keeps one ready fd's bits in the three sets. */
int rq_select_after(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int r);

/* ---- learning what a loop's callbacks do first ---- */

enum rq_loop_mode { RQ_LM_LEARN, RQ_LM_SPLIT, RQ_LM_BATCH };

/* What one epoll instance, or one thread's poll or select loop, has learned. */
struct rq_learn {
	_Atomic uint32_t mode; /* enum rq_loop_mode */
	_Atomic uint32_t good; /* callbacks seen touching their fd first */
};

/*
 * The window: after an event for fd is handed out (its context entered),
 * what the thread does next tells whether the loop needs split mode:
 *  - I/O that sets fd's context (a read of it, a write if it is a
 *    connection) before any use of the entered context: the callback does
 *    not need the context entered (good);
 *  - a use of the entered context (a log line; storing it in a carrier, a
 *    timer or a hand-off queue), when it differs from the one before, before
 *    such I/O: the callback relied on it (bad: split for good). nginx does
 *    this when an upstream connection becomes writable: it writes the
 *    request, storing the context in the upstream socket, before reading
 *    anything;
 *  - once a runtime adapter or the API has entered a context (asyncio runs
 *    the tasks an earlier iteration scheduled before this iteration's
 *    callbacks, each in its own request), its uses and its I/O on other fds
 *    are the task's and leave the window open, until the callback's own I/O;
 *  - I/O on another fd, or the next wait, closes the window without a
 *    verdict.
 */

struct rq_evq_watch {
	int fd1;                /* the watched fd + 1; 0: no window open */
	int api;                /* a runtime adapter or the API entered a context since it opened */
	uint32_t ident;         /* the instance's ident, if l belongs to one */
	struct rq_learn *l;
	const _Atomic uint32_t *live; /* the instance's ident word, or NULL */
	uint64_t cx, p;         /* serials of the context entered and the one before */
};

extern RQ_TLS struct rq_evq_watch rq_evq_w;

/* The effective mode for learner l: REQCTX_LOOP, or what l learned. */
int rq_evq_mode(const struct rq_learn *l);

/* Makes fd's context current for an event about to be handed out, and opens a window on it. */
void rq_evq_enter(int fd, struct rq_learn *l, const _Atomic uint32_t *live, uint32_t ident);

void rq_evq_touched(int fd);
void rq_evq_used(void);

/* I/O on fd that sets its context: a read on a connection or carrier, a write on a connection. */
static inline void rq_evq_touch(int fd)
{
	if (unlikely(rq_evq_w.fd1))
		rq_evq_touched(fd);
}

/*
 * A runtime adapter or the public API enters a context (maybe the very one
 * reqctx entered for the event): uses from now on are the adapter's, not the
 * callback's reliance on reqctx's entering.
 */
static inline void rq_evq_api(void)
{
	if (unlikely(rq_evq_w.fd1))
		rq_evq_w.api = 1;
}

/* The current context is about to be used: a log line, or stored in a carrier, timer or queue. */
static inline void rq_evq_use(void)
{
	if (unlikely(rq_evq_w.fd1))
		rq_evq_used();
}

#endif
