/*
 * Hand-offs through a mutex+condvar queue: the context of the thread that
 * queues work travels to the thread that takes it.
 *
 * The pattern recognised is the textbook one:
 *
 *   producer: lock(m); push(job); signal(cv); unlock(m);
 *   consumer: lock(m); while (empty) wait(cv, m); pop(job); unlock(m);
 *
 * A consumer's untimed pthread_cond_wait(cv, m) ties m to cv. Each signal or
 * broadcast on cv made while holding m queues the signaller's context on cv
 * (at most RQ_HO_DEPTH; a deeper backlog drops the oldest and the queue
 * loses step with its jobs). A producer that skips the signal because no
 * consumer is waiting (libuv signals only when a thread is idle) queues its
 * context at its unlock of m instead, when it is in a request. When a
 * consumer that holds m, did not signal, and has no request of its own in
 * flight (its context is unknown, its last response is out, or it came from
 * an earlier hand-off or from its creator) unlocks m, it takes the oldest
 * queued context. A consumer that starts waiting drops what is still queued
 * (with nothing left to pop, it is stale). Push and pop both happen under
 * m, so they stay in step with the jobs.
 *
 * What cannot be seen: a producer that signals after unlocking, queues that
 * are not first-in first-out, consumers that take several jobs per lock or
 * wait while jobs are queued, producers in a request that lock m without
 * pushing a job while no consumer waits, and
 * timed waits (CPython's GIL uses pthread_cond_timedwait; it is deliberately
 * not treated as a queue). REQCTX_HANDOFF=0 turns all of this off.
 */
#ifndef RQ_HANDOFF_H
#define RQ_HANDOFF_H

#define RQ_HO_QUEUES 32  /* condvars tracked at once */
#define RQ_HO_DEPTH  512 /* contexts queued per condvar: 80 KiB, touched as used */

#include <stdatomic.h>

#include "internal.h"

/*
 * Condvars whose consumers' mutex is known: 0 until the first untimed
 * pthread_cond_wait (with REQCTX_HANDOFF=1), and it never goes back. While it
 * is 0 a lock or unlock does nothing more than this load. A lock reads it
 * once the mutex is held: a lock that reads 0 then cannot be one a hand-off
 * needs, because the consumer that turned it 1 held that mutex and turned
 * it before releasing it (inside its wait), so a lock that acquires the
 * mutex after that release reads 1. (Read before the lock, a producer could
 * read 0, block, and get the mutex from the first consumer's wait unnoted.)
 */
extern _Atomic int rq_ho_active;

/* 1 once hand-offs may happen (see rq_ho_active). */
static inline int rq_handoff_on(void)
{
	return unlikely(atomic_load_explicit(&rq_ho_active, memory_order_relaxed) != 0);
}

void rq_handoff_locked_slow(void *m);
void rq_handoff_unlock_slow(void *m);
void rq_handoff_signal_slow(void *cv);

/* After m was locked (lock, trylock, timedlock, or the return of a wait). */
static inline void rq_handoff_locked(void *m)
{
	if (rq_handoff_on())
		rq_handoff_locked_slow(m);
}

/*
 * At a signal or broadcast on cv. Only a thread holding a mutex tied to a
 * condvar (CPython's GIL is not: its wait is timed) looks cv up.
 */
static inline void rq_handoff_signal(void *cv)
{
	if (rq_handoff_on())
		rq_handoff_signal_slow(cv);
}

/* Before m is unlocked. */
static inline void rq_handoff_unlock(void *m)
{
	if (rq_handoff_on())
		rq_handoff_unlock_slow(m);
}

/* A consumer waits on cv with m: returns a token for rq_handoff_woke(), called when the wait returns. */
void *rq_handoff_waited(void *cv, void *m);
void rq_handoff_woke(void *token);

/*
 * The calling thread starts in the context its creator had (pthread_create):
 * for hand-offs that context counts as handed to it, not as a request of its
 * own, so a pool thread started inside a request takes the contexts of the
 * jobs it pops.
 */
void rq_handoff_inherited(void);

/*
 * A runtime adapter enters handles on the calling thread (rq_handle_enter):
 * from now on the thread takes no context from hand-offs.
 */
void rq_handoff_managed(void);

#endif
