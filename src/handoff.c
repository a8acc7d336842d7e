#include "handoff.h"

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "ctx.h"

struct queue {
	_Atomic(void *) cv;
	_Atomic(void *) m;    /* the mutex its consumers wait with */
	uint32_t head, tail;  /* only touched with m held */
	struct rq_slot ring[RQ_HO_DEPTH];
};

struct held {
	void *m;
	int signalled;
	uint64_t handed; /* serial of the context the last hand-off gave this thread */
	uint64_t newest; /* newest context of its own (not handed to it) this thread has unlocked in */
};

static struct queue queues[RQ_HO_QUEUES];
/*
 * queues[i].m again, side by side (a queue is 80 KiB: looking a mutex up in
 * the queues themselves touched 32 pages at every unlock), and a bit per
 * hash of every mutex ever tied to a condvar: an unlock of any other mutex
 * (most of them, in a host like Node) finds its bit clear and looks no further.
 */
static _Atomic(void *) mutexes[RQ_HO_QUEUES];
static _Atomic uint64_t mutex_bits;
_Atomic int rq_ho_active; /* queues with a known mutex: none means nothing to do (handoff.h) */
static RQ_TLS struct held held;

static unsigned hash(const void *p)
{
	uintptr_t x = (uintptr_t)p >> 4;

	return (unsigned)((x * 0x9e3779b97f4a7c15ull) >> 58) % RQ_HO_QUEUES;
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

static uint64_t mutex_bit(const void *m)
{
	return (uint64_t)1 << (((uintptr_t)m >> 4) * 0x9e3779b97f4a7c15ull >> 58);
}

/* The queue whose consumers wait with m. */
static struct queue *queue_of_mutex(void *m)
{
	if (!(atomic_load_explicit(&mutex_bits, memory_order_relaxed) & mutex_bit(m)))
		return NULL;
	for (unsigned i = 0; i < RQ_HO_QUEUES; i++)
		if (atomic_load_explicit(&mutexes[i], memory_order_relaxed) == m &&
		    atomic_load_explicit(&queues[i].m, memory_order_relaxed) == m)
			return &queues[i];
	return NULL;
}

void rq_handoff_locked_slow(void *m)
{
	held.m = m;
	held.signalled = 0;
}

void rq_handoff_waited(void *cv, void *m)
{
	struct queue *q;

	if (!rq_cfg.handoff || !(q = queue_of(cv, 1)))
		return;
	if (atomic_load_explicit(&q->m, memory_order_relaxed) != m) {
		atomic_fetch_or(&mutex_bits, mutex_bit(m));
		atomic_store(&mutexes[q - queues], m);
		if (!atomic_exchange(&q->m, m))
			atomic_fetch_add(&rq_ho_active, 1);
	}
}

void rq_handoff_signal_slow(void *cv)
{
	struct queue *q;

	if (!rq_cfg.handoff || !held.m ||
	    !(atomic_load_explicit(&mutex_bits, memory_order_relaxed) & mutex_bit(held.m)) ||
	    !(q = queue_of(cv, 0)) ||
	    atomic_load_explicit(&q->m, memory_order_relaxed) != held.m)
		return;
	held.signalled = 1;
	if (q->tail - q->head == RQ_HO_DEPTH)
		q->head++;
	rq_slot_store(&q->ring[q->tail % RQ_HO_DEPTH], rq_ctx_cur());
	q->tail++;
}

/*
 * At the unlock of a queue's mutex by a thread that did not signal, the
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
void rq_handoff_unlock_slow(void *m)
{
	struct queue *q;
	struct rq_slot *s;
	uint64_t serial, queued;
	int own;

	if (held.m != m)
		return;
	held.m = NULL;
	if (!rq_cfg.handoff || held.signalled)
		return;
	serial = rq_ctx_cur()->serial;
	own = serial && serial != held.handed;
	if (own) {
		if (serial > held.newest)
			held.newest = serial;
		if (!rq_tls.finished)
			return;
	}
	if (!(q = queue_of_mutex(m)) || q->head == q->tail)
		return;
	s = &q->ring[q->head++ % RQ_HO_DEPTH];
	queued = atomic_load_explicit(&s->serial, memory_order_relaxed);
	if (own || (queued && queued < held.newest))
		return;
	rq_ctx_set_slot(s);
	held.handed = rq_ctx_cur()->serial;
}
