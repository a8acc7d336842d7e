/*
 * ThreadSanitizer stress for the structures src/ shares between threads.
 * Criterion cannot start under TSan (its inheritable arena needs a fixed
 * mapping that TSan's shadow memory takes), so this is a plain program: each
 * case checks its outcome and the run ends with "N passed, N failed".
 * Built and run by `make test-tsan`.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "correlate.h"
#include "conn.h"
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

/*
 * 5. A connection read by one thread and answered by another, up to 64
 * requests deep: every response carries its own request's ID.
 */
#define PIPE_FD 9000
#define PIPE_N 20000
static _Atomic int pipe_read, pipe_answered;
static int pipe_want, pipe_bad;

static ssize_t pipe_sink(int fd, const struct iovec *iov, int n)
{
	char got[512], want[32];
	size_t len = 0, total = 0;

	(void)fd;
	for (int i = 0; i < n; i++) {
		size_t t = iov[i].iov_len < sizeof(got) - 1 - len ? iov[i].iov_len : sizeof(got) - 1 - len;

		memcpy(got + len, iov[i].iov_base, t);
		len += t;
		total += iov[i].iov_len;
	}
	got[len] = '\0';
	snprintf(want, sizeof(want), "X-Request-Id: t%d\r\n", pipe_want);
	pipe_bad += !strstr(got, want);
	return (ssize_t)total;
}

static void *pipe_reader(void *arg)
{
	(void)arg;
	for (int i = 0; i < PIPE_N;) {
		char buf[4096];
		size_t len = 0;
		int batch = 1 + i % 8;

		while (i + batch > atomic_load(&pipe_answered) + RQ_PIPE)
			sched_yield();
		for (int k = 0; k < batch && i < PIPE_N; k++, i++)
			len += (size_t)sprintf(buf + len, "GET / HTTP/1.1\r\nX-Request-Id: t%d\r\n\r\n", i);
		rq_conn_read(PIPE_FD, &(struct iovec){ buf, len }, 1, (ssize_t)len);
		atomic_store(&pipe_read, i);
	}
	return NULL;
}

static void connection_read_and_answered_by_two_threads(void)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct rq_call k = { .how = RQ_WRITE };
	pthread_t r;

	rq_sys.writev = pipe_sink;
	rq_fd_set_conn(PIPE_FD);
	pthread_create(&r, NULL, pipe_reader, NULL);
	for (int j = 0; j < PIPE_N; j++) {
		struct iovec v = { (void *)resp, sizeof(resp) - 1 };

		while (j >= atomic_load(&pipe_read))
			sched_yield();
		pipe_want = j;
		if (rq_io_write(PIPE_FD, &v, 1, &k) != (ssize_t)sizeof(resp) - 1)
			pipe_bad++;
		atomic_store(&pipe_answered, j + 1);
	}
	pthread_join(r, NULL);
	CHECK("every response carries its own request's ID", pipe_bad == 0);
	if (pipe_bad)
		fprintf(stderr, "%d of %d responses wrong\n", pipe_bad, PIPE_N);
	rq_fd_forget(PIPE_FD);
}

/* 6. The ring of completed requests: threads completing requests while others match lines. */
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

/*
 * 7. Connections taken from the pool, dup'ed, closed and given back by many
 * threads at once, while others dup and close the same fds (a host race):
 * nothing is lost or given back twice, and each fd's connection is either
 * its own or none.
 */
#define CONN_THREADS 4
#define CONN_ROUNDS 20000
#define CONN_FD0 9100
static atomic_int conn_bad;

static void *conn_churn(void *arg)
{
	int t = (int)(intptr_t)arg, fd = CONN_FD0 + 2 * t, copy = fd + 1;

	for (int i = 0; i < CONN_ROUNDS; i++) {
		struct rq_conn *c;

		if (rq_fd_set_conn(fd) != 0) {
			atomic_fetch_add(&conn_bad, 1);
			continue;
		}
		c = rq_conn_of(fd);
		rq_fd_copy(fd, copy);
		if (rq_conn_of(copy) != c)
			atomic_fetch_add(&conn_bad, 1);
		if (i % 2)
			rq_fd_forget(fd);
		else
			rq_fd_forget(copy);
		rq_conn_enter(c);
		rq_fd_forget(fd);
		rq_fd_forget(copy);
	}
	return NULL;
}

/* Dups fd 9190 onto 9191 and 9192 while another thread closes and re-accepts 9190. */
static atomic_int race_stop;

static void *conn_racer(void *arg)
{
	(void)arg;
	while (!atomic_load(&race_stop)) {
		rq_fd_copy(9190, 9191);
		rq_fd_copy(9191, 9192);
		rq_fd_forget(9191);
		rq_fd_forget(9192);
	}
	return NULL;
}

static void connections_shared_and_given_back_by_many_threads(void)
{
	pthread_t th[CONN_THREADS], racer;
	uint32_t live = rq_conn_live();

	for (int t = 0; t < CONN_THREADS; t++)
		pthread_create(&th[t], NULL, conn_churn, (void *)(intptr_t)t);
	pthread_create(&racer, NULL, conn_racer, NULL);
	for (int i = 0; i < CONN_ROUNDS; i++) {
		rq_fd_set_conn(9190);
		rq_fd_forget(9190);
	}
	atomic_store(&race_stop, 1);
	for (int t = 0; t < CONN_THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_join(racer, NULL);
	CHECK("dups name their connection", atomic_load(&conn_bad) == 0);
	CHECK("every connection went back to the pool", rq_conn_live() == live);
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
	connection_read_and_answered_by_two_threads();
	ring_matches_stay_whole();
	connections_shared_and_given_back_by_many_threads();
	printf("tsan: %d passed, %d failed\n", passed, failed);
	return failed != 0;
}
