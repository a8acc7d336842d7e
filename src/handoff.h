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

void rq_handoff_locked(void *m);
void rq_handoff_signal(void *cv);
void rq_handoff_unlock(void *m);

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
