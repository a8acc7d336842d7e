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
#include "correlate.h"
#include "ctx.h"
#include "fdtab.h"
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

/* 4. The ring of completed requests: threads completing requests while others match lines. */
static struct rq_corr ring;
static atomic_int corr_writers;
static atomic_long corr_hits, corr_bad;

#define CORR_N 20000
#define CORR_PATHS 16

static void *corr_writer(void *arg)
{
	int w = (int)(long)arg;

	for (int i = 0; i < CORR_N; i++) {
		char rl[48], id[48];
		int n = snprintf(rl, sizeof(rl), "GET /p%d HTTP/1.1", i % CORR_PATHS);

		snprintf(id, sizeof(id), "p%d-w%d-%d", i % CORR_PATHS, w, i);
		rq_corr_done(&ring, rq_corr_key_of(rl, (size_t)n), 200, (uint64_t)i + 1, id,
			     (uint32_t)strlen(id));
	}
	atomic_fetch_add(&corr_writers, 1);
	return NULL;
}

static void *corr_reader(void *arg)
{
	unsigned x = (unsigned)(long)arg + 1;

	while (atomic_load(&corr_writers) < 2) {
		char line[96], want[16];
		struct rq_ctx c;
		int p, n, wl;

		x = x * 1103515245 + 12345;
		p = (int)((x >> 16) % CORR_PATHS);
		n = snprintf(line, sizeof(line), "h - - [t] \"GET /p%d HTTP/1.1\" 200 3\n", p);
		wl = snprintf(want, sizeof(want), "p%d-", p);
		if (rq_corr_match(&ring, line, (size_t)n, 0, &c)) {
			atomic_fetch_add(&corr_hits, 1);
			if (strncmp(c.id, want, (size_t)wl) || strlen(c.id) != c.len ||
			    !rq_id_valid(c.id, c.len))
				atomic_fetch_add(&corr_bad, 1);
		}
	}
	return NULL;
}

static void ring_matches_stay_whole(void)
{
	pthread_t w[2], r[2];

	rq_corr_init();
	for (long i = 0; i < 2; i++)
		pthread_create(&r[i], NULL, corr_reader, (void *)i);
	for (long i = 0; i < 2; i++)
		pthread_create(&w[i], NULL, corr_writer, (void *)i);
	for (int i = 0; i < 2; i++) {
		pthread_join(w[i], NULL);
		pthread_join(r[i], NULL);
	}
	CHECK("every matched line got an ID of its own request line", atomic_load(&corr_bad) == 0);
	CHECK("no more matches than completions", atomic_load(&corr_hits) <= 2 * CORR_N);
}

int main(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
	rq_fd_init();
	slots_stay_whole();
	fd_table_publishes_safely();
	queue_hands_contexts_over();
	ring_matches_stay_whole();
	printf("tsan: %d passed, %d failed\n", passed, failed);
	return failed != 0;
}
