/*
 * ThreadSanitizer stress for the structures src/ shares between threads.
 * Criterion cannot start under TSan (its inheritable arena needs a fixed
 * mapping that TSan's shadow memory takes), so this is a plain program: each
 * case checks its outcome and the run ends with "N passed, N failed".
 * Built and run by `make test-tsan`.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "ctx.h"
#include "fdtab.h"
#include "handle.h"
#include "handoff.h"
#include "http.h"
#include "id.h"
#include "io.h"

static int passed, failed;

#define CHECK(what, cond)                                                      \
	do {                                                                   \
		if (cond) {                                                    \
			passed++;                                              \
		} else {                                                       \
			failed++;                                              \
			fprintf(stderr, "FAIL %s (%s:%d)\n", what, __FILE__, __LINE__); \
		}                                                              \
	} while (0)

/* 1. A connection's request slot read while its reader refills it. */
static struct rq_slot slot;
static atomic_int stop;

static void *slot_writer(void *arg)
{
	static const char *const ids[] = { "a", "bb-bb", "cccccccccccccccccccccccccccccccc" };

	(void)arg;
	for (int i = 0; i < 200000; i++)
		rq_slot_fill(&slot, ids[i % 3], (uint32_t)strlen(ids[i % 3]), 0);
	atomic_store(&stop, 1);
	return NULL;
}

static void *slot_reader(void *arg)
{
	long *bad = arg;

	while (!atomic_load(&stop)) {
		struct rq_ctx c;

		if (rq_slot_read(&slot, &c, NULL) == 0 && c.serial &&
		    (strlen(c.id) != c.len || !rq_id_valid(c.id, c.len) ||
		     (c.id[0] == 'a' && c.len != 1) || (c.id[0] == 'b' && c.len != 5)))
			(*bad)++;
	}
	return NULL;
}

static void slots_stay_whole(void)
{
	pthread_t w, r[2];
	long bad[2] = { 0, 0 };

	rq_slot_fill(&slot, "a", 1, 0);
	pthread_create(&r[0], NULL, slot_reader, &bad[0]);
	pthread_create(&r[1], NULL, slot_reader, &bad[1]);
	pthread_create(&w, NULL, slot_writer, NULL);
	pthread_join(w, NULL);
	pthread_join(r[0], NULL);
	pthread_join(r[1], NULL);
	CHECK("slot reads are never torn", bad[0] == 0 && bad[1] == 0);
}

/* 2. fd table chunks published by one thread, read by others. */
static void *fd_setter(void *arg)
{
	int base = *(int *)arg;

	for (int i = 0; i < 2000; i++) {
		int fd = base + (i % 4000) * 2;

		rq_fd_set_conn(fd);
		rq_fd_forget(fd);
		rq_fd_set_log(fd + 1);
	}
	return NULL;
}

static void *fd_peeker(void *arg)
{
	long *seen = arg;

	for (int round = 0; round < 50; round++)
		for (int fd = 1000; fd < 9000; fd++)
			if (rq_fd_flags(rq_fd_peek(fd)) & RQ_FD_LOG)
				(*seen)++;
	return NULL;
}

static void fd_table_publishes_safely(void)
{
	pthread_t s[2], p;
	int bases[2] = { 1000, 5000 };
	long seen = 0;

	pthread_create(&p, NULL, fd_peeker, &seen);
	pthread_create(&s[0], NULL, fd_setter, &bases[0]);
	pthread_create(&s[1], NULL, fd_setter, &bases[1]);
	pthread_join(s[0], NULL);
	pthread_join(s[1], NULL);
	pthread_join(p, NULL);
	CHECK("fd 1001 is a log", rq_fd_flags(rq_fd_peek(1001)) == RQ_FD_LOG);
	CHECK("fd 1000 was forgotten", rq_fd_flags(rq_fd_peek(1000)) == 0);
}

/* 3. A job queue: producers in requests, consumers taking jobs, as the wrappers would see it. */
static pthread_mutex_t qm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER;
static int jobs[4096], qhead, qtail, done_ok, done_bad, waiting;
#define NJOBS 2000

static void *consumer(void *arg)
{
	(void)arg;
	for (;;) {
		int job;
		char want[32];

		pthread_mutex_lock(&qm);
		rq_handoff_locked(&qm);
		while (qhead == qtail) {
			waiting = 1;
			rq_handoff_waited(&qcv, &qm);
			pthread_cond_wait(&qcv, &qm);
			rq_handoff_locked(&qm);
		}
		job = jobs[qhead++ % 4096];
		rq_handoff_unlock(&qm);
		pthread_mutex_unlock(&qm);
		if (job < 0)
			return NULL;
		snprintf(want, sizeof(want), "job-%d", job);
		pthread_mutex_lock(&qm); /* counters only; not a queue section */
		if (!strcmp(reqctx_id(), want))
			done_ok++;
		else
			done_bad++;
		pthread_mutex_unlock(&qm);
	}
}

static void produce(int job)
{
	char id[32];
	struct rq_ctx c;

	for (;;) { /* a bounded queue: at most 256 jobs waiting (the hand-off keeps 512) */
		struct timespec us = { 0, 100000 };
		int backlog;

		pthread_mutex_lock(&qm);
		backlog = qtail - qhead;
		pthread_mutex_unlock(&qm);
		if (backlog < 256)
			break;
		nanosleep(&us, NULL);
	}
	snprintf(id, sizeof(id), "job-%d", job);
	c.serial = rq_serial_next();
	c.len = (uint32_t)strlen(id);
	memcpy(c.id, id, c.len + 1);
	rq_ctx_set(&c);
	pthread_mutex_lock(&qm);
	rq_handoff_locked(&qm);
	jobs[qtail++ % 4096] = job;
	rq_handoff_signal(&qcv);
	pthread_cond_signal(&qcv);
	rq_handoff_unlock(&qm);
	pthread_mutex_unlock(&qm);
}

static void queue_hands_contexts_over(void)
{
	pthread_t c;

	pthread_create(&c, NULL, consumer, NULL);
	for (;;) { /* the queue is known once its consumer has waited on it */
		struct timespec ms = { 0, 1000000 };

		pthread_mutex_lock(&qm);
		if (waiting)
			break;
		pthread_mutex_unlock(&qm);
		nanosleep(&ms, NULL);
	}
	pthread_mutex_unlock(&qm);
	for (int i = 0; i < NJOBS; i++)
		produce(i);
	produce(-1);
	pthread_join(c, NULL);
	CHECK("every job ran in its producer's context", done_ok == NJOBS && done_bad == 0);
	if (done_bad)
		fprintf(stderr, "ok=%d bad=%d\n", done_ok, done_bad);
}

/*
 * 4. Handles: threads intern contexts whose serials share records (the table
 * wraps many times) while others enter published handles. An entered ID is
 * the handle's own or "unknown", never another request's.
 */
#define HD_THREADS 4
#define HD_ROUNDS  60000 /* HD_THREADS * HD_ROUNDS wraps the table of RQ_HD_RECS 3 times */

struct pub {
	_Atomic uint64_t h;
	_Atomic int round;
};

static struct pub pubs[HD_THREADS];
static atomic_long hd_wrong, hd_exact;

static void hd_publish(void *arg)
{
	long k = (long)arg;
	struct pub *p = &pubs[k / HD_ROUNDS];

	atomic_store(&p->h, 0);
	atomic_store(&p->round, (int)(k % HD_ROUNDS));
	atomic_store(&p->h, rq_handle_take());
}

static void *hd_churn(void *arg)
{
	long t = (long)arg;

	for (int i = 0; i < HD_ROUNDS; i++) {
		char id[32], want[32];
		struct pub *o = &pubs[(t + 1 + i % (HD_THREADS - 1)) % HD_THREADS];
		uint64_t h, prev;
		int round;

		snprintf(id, sizeof(id), "h%ld-%d", t, i);
		reqctx_run(id, hd_publish, (void *)(t * HD_ROUNDS + i));
		round = atomic_load(&o->round);
		if (!(h = atomic_load(&o->h)) || atomic_load(&o->round) != round)
			continue;
		snprintf(want, sizeof(want), "h%ld-%d", (long)(o - pubs), round);
		prev = rq_handle_enter(h);
		if (!strcmp(reqctx_id(), want))
			atomic_fetch_add(&hd_exact, 1);
		else if (strcmp(reqctx_id(), "unknown"))
			atomic_fetch_add(&hd_wrong, 1);
		rq_handle_enter(prev);
	}
	return NULL;
}

static void handles_never_enter_another_request(void)
{
	pthread_t th[HD_THREADS];

	for (long t = 0; t < HD_THREADS; t++)
		pthread_create(&th[t], NULL, hd_churn, (void *)t);
	for (int t = 0; t < HD_THREADS; t++)
		pthread_join(th[t], NULL);
	CHECK("an entered handle is its own request or unknown", hd_wrong == 0);
	CHECK("most entered handles are exact", hd_exact > HD_THREADS * HD_ROUNDS / 4);
	if (hd_wrong)
		fprintf(stderr, "handles: %ld wrong, %ld exact\n", hd_wrong, hd_exact);
}

int main(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
	rq_fd_init();
	slots_stay_whole();
	fd_table_publishes_safely();
	queue_hands_contexts_over();
	handles_never_enter_another_request();
	printf("tsan: %d passed, %d failed\n", passed, failed);
	return failed != 0;
}
