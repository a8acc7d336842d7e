#include "timers.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define NCHUNKS (RQ_TIMER_MAX / RQ_TIMER_CHUNK)
#define HBITS   16                /* hash slots: 2 * RQ_TIMER_MAX */
#define HSIZE   (1u << HBITS)
#define HMASK   (HSIZE - 1)
#define NIL     UINT32_MAX        /* no record (free list end) */

struct hslot {
	_Atomic uintptr_t key; /* the host's timer_t */
	_Atomic uint32_t ref;  /* record index + 1; 0: empty */
};

static struct rq_timer *_Atomic chunks[NCHUNKS];
static struct hslot hash[HSIZE];
static _Atomic uint32_t hseq; /* seqlock over hash: odd while a writer changes it */
static RQ_TLS int writing;    /* this thread holds hseq odd */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t nrec;                      /* records ever allocated */
static uint32_t free_head = NIL, free_tail = NIL, nfree;
static uint32_t nlive;
static _Atomic uint32_t gens;

static struct rq_timer *rec(uint32_t idx)
{
	struct rq_timer *c;

	if (idx >= RQ_TIMER_MAX)
		return NULL;
	c = atomic_load_explicit(&chunks[idx / RQ_TIMER_CHUNK], memory_order_acquire);
	return c ? &c[idx % RQ_TIMER_CHUNK] : NULL;
}

void rq_timers_lock(void)
{
	pthread_mutex_lock(&lock);
}

void rq_timers_unlock(void)
{
	pthread_mutex_unlock(&lock);
}

/* A fresh record while there is room, else the oldest freed one. Under the lock. */
static struct rq_timer *take(void)
{
	struct rq_timer *t, *c;

	if (nfree > RQ_TIMER_QUARANTINE || (nfree && nrec == RQ_TIMER_MAX)) {
		t = rec(free_head);
		free_head = t->next;
		if (free_head == NIL)
			free_tail = NIL;
		nfree--;
		return t;
	}
	if (nrec == RQ_TIMER_MAX)
		return NULL;
	if (nrec % RQ_TIMER_CHUNK == 0) {
		if (!(c = calloc(RQ_TIMER_CHUNK, sizeof(*c))))
			return NULL;
		for (uint32_t i = 0; i < RQ_TIMER_CHUNK; i++)
			c[i].idx = nrec + i;
		atomic_store_explicit(&chunks[nrec / RQ_TIMER_CHUNK], c, memory_order_release);
	}
	return rec(nrec++);
}

static void trampoline(union sigval v);

struct rq_timer *rq_timer_new(const struct sigevent *evp, struct sigevent *out,
			      const struct sigevent **use)
{
	int notify = evp ? evp->sigev_notify : SIGEV_SIGNAL;
	struct rq_timer *t;
	uint32_t g;
	int e = errno;

	*use = evp;
	if (notify == SIGEV_NONE)
		return NULL;
	pthread_mutex_lock(&lock);
	t = take();
	if (t) {
		t->live = 1;
		nlive++;
	}
	pthread_mutex_unlock(&lock);
	errno = e;
	if (!t)
		return NULL;
	/* Readers that still hold the old generation see 0 and give up. */
	atomic_store_explicit(&t->gen, 0, memory_order_release);
	do
		g = atomic_fetch_add_explicit(&gens, 1, memory_order_relaxed) + 1;
	while (g == 0);
	if (notify == SIGEV_THREAD) {
		atomic_store_explicit(&t->fn, (uintptr_t)evp->sigev_notify_function,
				      memory_order_relaxed);
		atomic_store_explicit(&t->val, (uintptr_t)evp->sigev_value.sival_ptr,
				      memory_order_relaxed);
		*out = *evp;
		out->sigev_notify_function = trampoline;
		out->sigev_value.sival_ptr = (void *)(((uintptr_t)g << 32) | t->idx);
		*use = out;
	} else {
		atomic_store_explicit(&t->fn, 0, memory_order_relaxed);
		atomic_store_explicit(&t->val, 0, memory_order_relaxed);
	}
	rq_slot_store(&t->ctx, rq_ctx_cur());
	atomic_store_explicit(&t->gen, g, memory_order_release);
	return t;
}

static uint32_t home(uintptr_t key)
{
	return (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> (64 - HBITS));
}

/* Index of key's slot, or of the empty slot that ends its probe. Writers only. */
static uint32_t probe(uintptr_t key)
{
	uint32_t i = home(key);

	while (atomic_load_explicit(&hash[i].ref, memory_order_relaxed) &&
	       atomic_load_explicit(&hash[i].key, memory_order_relaxed) != key)
		i = (i + 1) & HMASK;
	return i;
}

static void hset(uint32_t i, uintptr_t key, uint32_t ref)
{
	atomic_store_explicit(&hash[i].key, key, memory_order_relaxed);
	atomic_store_explicit(&hash[i].ref, ref, memory_order_relaxed);
}

static void write_begin(void)
{
	writing = 1;
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&hseq, atomic_load_explicit(&hseq, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void write_end(void)
{
	atomic_store_explicit(&hseq, atomic_load_explicit(&hseq, memory_order_relaxed) + 1,
			      memory_order_release);
	atomic_signal_fence(memory_order_seq_cst);
	writing = 0;
}

void rq_timer_publish(struct rq_timer *t, timer_t id)
{
	uintptr_t key = (uintptr_t)id;

	pthread_mutex_lock(&lock);
	write_begin();
	/* A record still published under this id is stale (its timer went away unseen). */
	hset(probe(key), key, t->idx + 1);
	write_end();
	pthread_mutex_unlock(&lock);
}

/* Removes slot i by shifting later members of its cluster back. Under the lock. */
static void hremove(uint32_t i)
{
	for (uint32_t j = (i + 1) & HMASK;; j = (j + 1) & HMASK) {
		uint32_t ref = atomic_load_explicit(&hash[j].ref, memory_order_relaxed);
		uintptr_t key = atomic_load_explicit(&hash[j].key, memory_order_relaxed);
		uint32_t k;

		if (!ref)
			break;
		k = home(key);
		/* Slot j may move to i only if its home is not cyclically within (i, j]. */
		if (((j - k) & HMASK) >= ((j - i) & HMASK)) {
			hset(i, key, ref);
			i = j;
		}
	}
	hset(i, 0, 0);
}

static void release(struct rq_timer *t)
{
	if (!t->live)
		return;
	t->live = 0;
	nlive--;
	t->next = NIL;
	if (free_tail == NIL)
		free_head = t->idx;
	else
		rec(free_tail)->next = t->idx;
	free_tail = t->idx;
	nfree++;
}

void rq_timer_free(struct rq_timer *t)
{
	pthread_mutex_lock(&lock);
	release(t);
	pthread_mutex_unlock(&lock);
}

void rq_timer_delete(timer_t id, struct rq_timer *t)
{
	uintptr_t key = (uintptr_t)id;
	uint32_t i;

	pthread_mutex_lock(&lock);
	i = probe(key);
	if (atomic_load_explicit(&hash[i].ref, memory_order_relaxed) == t->idx + 1) {
		write_begin();
		hremove(i);
		write_end();
	}
	release(t);
	pthread_mutex_unlock(&lock);
}

/*
 * Writers hold the seqlock for a few stores, but may be preempted inside it,
 * and a writer that runs flat out can overlap many reads in a row: readers
 * retry for as long as it takes, yielding the CPU after a few quick looks.
 * The one writer that cannot finish while we wait is this very thread,
 * interrupted by the signal whose handler is reading: then there is no
 * answer, and the reader reports no record.
 */
#define RQ_FIND_SPIN 64         /* quick looks before each further look yields the CPU */
#define RQ_FIND_MAX  (1u << 22) /* a bound for the unthinkable */

struct rq_timer *rq_timer_find(timer_t id)
{
	uintptr_t key = (uintptr_t)id;

	for (uint32_t tries = 0; tries < RQ_FIND_MAX; tries++) {
		uint32_t q = atomic_load_explicit(&hseq, memory_order_acquire);
		uint32_t i = home(key), ref = 0;

		if (q & 1) {
			if (writing)
				return NULL;
			if (tries >= RQ_FIND_SPIN)
				sched_yield();
			continue;
		}
		for (uint32_t n = 0; n < HSIZE; n++, i = (i + 1) & HMASK) {
			ref = atomic_load_explicit(&hash[i].ref, memory_order_relaxed);
			if (!ref || atomic_load_explicit(&hash[i].key, memory_order_relaxed) == key)
				break;
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&hseq, memory_order_relaxed) != q)
			continue;
		return ref ? rec(ref - 1) : NULL;
	}
	return NULL;
}

struct rq_timer *rq_timer_lookup(timer_t id)
{
	uint32_t ref;

	pthread_mutex_lock(&lock);
	ref = atomic_load_explicit(&hash[probe((uintptr_t)id)].ref, memory_order_relaxed);
	pthread_mutex_unlock(&lock);
	return ref ? rec(ref - 1) : NULL;
}

void rq_timer_arm(struct rq_timer *t, struct rq_ctx *prev)
{
	if (rq_slot_read(&t->ctx, prev, NULL) < 0)
		prev->serial = 0;
	rq_slot_store(&t->ctx, rq_ctx_cur());
}

void rq_timer_unarm(struct rq_timer *t, const struct rq_ctx *prev)
{
	rq_slot_store(&t->ctx, prev->serial ? prev : &rq_ctx_unknown);
}

int rq_timer_enter_signal(int kid)
{
	struct rq_timer *t = rq_timer_find((timer_t)(intptr_t)kid);

	if (!t)
		return 0;
	rq_ctx_set_slot(&t->ctx);
	return 1;
}

unsigned rq_timer_count(void)
{
	unsigned n;

	pthread_mutex_lock(&lock);
	n = nlive;
	pthread_mutex_unlock(&lock);
	return n;
}

/*
 * Runs a SIGEV_THREAD callback in its timer's armed context. A record reused
 * since the expiry was queued (its generation changed) means the timer was
 * deleted: the call is skipped, since the host's function and value are gone.
 */
static void trampoline(union sigval v)
{
	struct rq_timer *t = rec((uint32_t)(uintptr_t)v.sival_ptr);
	uint32_t g = (uint32_t)((uintptr_t)v.sival_ptr >> 32);
	struct rq_ctx saved;
	void (*fn)(union sigval);
	union sigval hv;

	if (!t || atomic_load_explicit(&t->gen, memory_order_acquire) != g)
		return;
	fn = (void (*)(union sigval))atomic_load_explicit(&t->fn, memory_order_relaxed);
	hv.sival_ptr = (void *)atomic_load_explicit(&t->val, memory_order_relaxed);
	saved = *rq_ctx_cur();
	rq_ctx_set_slot(&t->ctx);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&t->gen, memory_order_relaxed) == g && fn)
		fn(hv);
	rq_ctx_set(&saved);
}
