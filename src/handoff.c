#include "handoff.h"

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "ctx.h"

struct queue {
	_Atomic(void *) cv;
	_Atomic(void *) m;    /* the mutex its consumers wait with */
	_Atomic int waiting;  /* consumers in pthread_cond_wait on cv now */
	uint32_t head, tail;  /* only touched with m held */
	struct rq_slot ring[RQ_HO_DEPTH];
};

struct held {
	void *m;
	int signalled;
	uint32_t consumes; /* bit i: this thread has waited on queues[i] */
	int managed;       /* a runtime adapter enters this thread's contexts (rq_handle_enter) */
	uint64_t handed; /* serial of the context the last hand-off gave this thread */
	uint64_t newest; /* newest context of its own (not handed to it) this thread has unlocked in */
};

static struct queue queues[RQ_HO_QUEUES];
static _Atomic int nmutexes; /* queues with a known mutex: none means nothing to do */
static _Atomic uint64_t mbloom;
static RQ_TLS struct held held;

static unsigned hash(const void *p)
{
	uintptr_t x = (uintptr_t)p >> 4;

	return (unsigned)((x * 0x9e3779b97f4a7c15ull) >> 58) % RQ_HO_QUEUES;
}

/* A bit for mutex m in mbloom, the set of mutexes consumers wait with (a quick "not one"). */
static uint64_t mbit(const void *m)
{
	uintptr_t x = (uintptr_t)m >> 4;

	return 1ull << ((x * 0x9e3779b97f4a7c15ull) >> 58);
}

/* The queue of cv, claimed on first use if `claim`; NULL if none (or the table is full). */
static struct queue *queue_of(void *cv, int claim)
{
	unsigned h = hash(cv);

	for (unsigned i = 0; i < 8; i++) {
		struct queue *q = &queues[(h + i) % RQ_HO_QUEUES];
		void *k = atomic_load_explicit(&q->cv, memory_order_acquire);

		if (k == cv)
			return q;
		if (!k && claim) {
			void *none = NULL;

			if (atomic_compare_exchange_strong(&q->cv, &none, cv) || none == cv)
				return q;
		}
	}
	return NULL;
}

/* The queue whose consumers wait with m. */
static struct queue *queue_of_mutex(void *m)
{
	for (unsigned i = 0; i < RQ_HO_QUEUES; i++)
		if (atomic_load_explicit(&queues[i].m, memory_order_relaxed) == m)
			return &queues[i];
	return NULL;
}

void rq_handoff_locked(void *m)
{
	held.m = m;
	held.signalled = 0;
}

/* Queues the current context on q (its mutex held). */
static void push(struct queue *q)
{
	if (q->tail - q->head == RQ_HO_DEPTH)
		q->head++;
	rq_slot_store(&q->ring[q->tail % RQ_HO_DEPTH], rq_ctx_cur());
	q->tail++;
}

void rq_handoff_inherited(void)
{
	held.handed = rq_ctx_cur()->serial;
}

void rq_handoff_managed(void)
{
	held.managed = 1;
}

/*
 * A consumer starts waiting, holding m. With the textbook loop it waits only
 * when the queue of jobs is empty, so every job pushed so far has been taken
 * and whatever contexts are still queued are stale (a signal that queued no
 * job, a job cancelled): they are dropped, which puts the queue back in step.
 */
void *rq_handoff_waited(void *cv, void *m)
{
	struct queue *q;

	if (!rq_cfg.handoff || !(q = queue_of(cv, 1)))
		return NULL;
	if (atomic_load_explicit(&q->m, memory_order_relaxed) != m) {
		atomic_fetch_or(&mbloom, mbit(m));
		if (!atomic_exchange(&q->m, m))
			atomic_fetch_add(&nmutexes, 1);
	}
	held.consumes |= 1u << (q - queues);
	q->head = q->tail;
	atomic_fetch_add_explicit(&q->waiting, 1, memory_order_relaxed);
	return q;
}

void rq_handoff_woke(void *token)
{
	struct queue *q = token;

	if (q)
		atomic_fetch_sub_explicit(&q->waiting, 1, memory_order_relaxed);
}

void rq_handoff_signal(void *cv)
{
	struct queue *q;

	if (!rq_cfg.handoff || !held.m || !(q = queue_of(cv, 0)) ||
	    atomic_load_explicit(&q->m, memory_order_relaxed) != held.m)
		return;
	held.signalled = 1;
	push(q);
}

/*
 * At the unlock of a queue's mutex by a thread that did not signal:
 *  - if the thread has never waited on the queue (a producer), and it is in
 *    a request, and no consumer waits: it queues its context, as if it had
 *    signalled. A producer may skip the signal when no consumer waits
 *    (libuv's threadpool does); a consumer that pops that job without
 *    waiting takes the context. Outside a request, or while a consumer
 *    waits, an unlock without a signal queued no job.
 * Else (a consumer), nothing changes on a thread whose contexts a runtime
 * adapter enters (Node's main thread): the adapter enters the right one
 * before anything the library looks at, and what a pool queued there
 * (V8's garbage-collection helpers joining) is never that. Elsewhere the
 * oldest queued context is:
 *  - left queued, if the thread's context is its own request (read from a
 *    connection, or entered) and its response is not out: it is not between
 *    jobs;
 *  - dropped, if its context is its own request and the response is out:
 *    the thread keeps its request (it may still log about it, as Node does
 *    after res.end()), and the queue stays in step with its jobs;
 *  - taken, if its context is unknown or came from a hand-off, unless it is
 *    older than a request of the thread's own: then it is dropped, because
 *    it is stale (a pool thread's leftover signalled into a queue that the
 *    thread waits on, such as V8's garbage collection joins in Node).
 */
void rq_handoff_unlock(void *m)
{
	struct queue *q;
	struct rq_slot *s;
	uint64_t serial, queued;
	int own;

	if (held.m != m)
		return;
	held.m = NULL;
	if (!rq_cfg.handoff || held.signalled || !atomic_load_explicit(&nmutexes, memory_order_relaxed))
		return;
	serial = rq_ctx_cur()->serial;
	own = serial && serial != held.handed;
	if (own && serial > held.newest)
		held.newest = serial;
	if (!(atomic_load_explicit(&mbloom, memory_order_relaxed) & mbit(m)) || !(q = queue_of_mutex(m)))
		return;
	if (!(held.consumes & (1u << (q - queues)))) {
		if (serial && !atomic_load_explicit(&q->waiting, memory_order_relaxed))
			push(q);
		return;
	}
	if ((own && !rq_tls.finished) || held.managed)
		return;
	if (q->head == q->tail)
		return;
	s = &q->ring[q->head++ % RQ_HO_DEPTH];
	queued = atomic_load_explicit(&s->serial, memory_order_relaxed);
	if (own || (queued && queued < held.newest))
		return;
	rq_ctx_set_slot(s);
	held.handed = rq_ctx_cur()->serial;
}
