/*
 * Hand-offs through a pool built like libuv's threadpool: the producer
 * signals only when a worker is idle, and the workers are started inside the
 * first request that needs them. Each step logs one line on stderr:
 *   - the pool is started inside request "boot"; a job queued by "boot"
 *     while the worker waits, then three jobs ("busy-1" .. "busy-3") queued
 *     without a signal while the worker is busy: each is done in its
 *     producer's request;
 *   - a broadcast in request "noise" that queues no job, then a job of
 *     "after-noise": the worker, waiting again, drops the stale context;
 *   - a thread whose context a runtime adapter enters (reqctx_handle_enter,
 *     here outside any request, as Node's main thread in a start-up timer)
 *     waits on a queue that "joiner" signals: it keeps its entered context.
 * With the library absent the calls run without a request.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static int (*run)(const char *, void (*)(void *), void *);
static unsigned long long (*enter)(unsigned long long);

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int jobs[16], head, tail, idle, wakes, started;
static pthread_t worker_thread;

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	for (;;) {
		int job;

		while (head == tail) {
			idle++;
			pthread_cond_wait(&cv, &m);
			idle--;
			wakes++;
		}
		job = jobs[head++ % 16];
		pthread_mutex_unlock(&m);
		if (job < 0)
			return NULL;
		fprintf(stderr, "worker did job %d\n", job);
		if (job == 1)
			usleep(100000); /* busy: the next jobs queue up without a signal */
		pthread_mutex_lock(&m);
	}
}

static void wait_idle(void)
{
	for (;;) {
		int i;

		pthread_mutex_lock(&m);
		i = idle;
		pthread_mutex_unlock(&m);
		if (i)
			return;
		usleep(1000);
	}
}

/* libuv's post(): starts the pool on first use (its worker waits), signals only an idle worker. */
static void post(void *arg)
{
	if (!started) {
		started = 1;
		pthread_create(&worker_thread, NULL, worker, NULL);
		wait_idle();
	}
	pthread_mutex_lock(&m);
	jobs[tail++ % 16] = *(int *)arg;
	if (idle > 0)
		pthread_cond_signal(&cv);
	pthread_mutex_unlock(&m);
}

static void noise(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&m);
}

/* Waits until the worker has woken after `w` wakeups and waits again. */
static void wait_rewait(int w)
{
	for (;;) {
		int ok;

		pthread_mutex_lock(&m);
		ok = wakes > w && idle;
		pthread_mutex_unlock(&m);
		if (ok)
			return;
		usleep(1000);
	}
}

static void call(const char *id, void (*fn)(void *), void *arg)
{
	if (run)
		run(id, fn, arg);
	else
		fn(arg);
}

/* The managed thread: a runtime enters its context (unknown), then it waits for a join. */
static pthread_mutex_t jm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jcv = PTHREAD_COND_INITIALIZER;
static int joined, jwaiting;

static void *managed(void *arg)
{
	(void)arg;
	if (enter)
		enter(0);
	pthread_mutex_lock(&jm);
	jwaiting = 1;
	while (!joined)
		pthread_cond_wait(&jcv, &jm);
	pthread_mutex_unlock(&jm);
	fprintf(stderr, "managed thread joined\n");
	return NULL;
}

static void join_signal(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&jm);
		if (jwaiting) {
			joined = 1;
			pthread_cond_signal(&jcv);
			pthread_mutex_unlock(&jm);
			return;
		}
		pthread_mutex_unlock(&jm);
		usleep(1000);
	}
}

int main(void)
{
	int ids[] = { 1, 2, 3, 4, 5, -1 };
	pthread_t t;
	int w;

	run = (int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");
	enter = (unsigned long long (*)(unsigned long long))dlsym(RTLD_DEFAULT, "reqctx_handle_enter");

	call("boot", post, &ids[0]); /* starts the worker, which waits, then takes job 1 */
	usleep(20000);
	call("busy-1", post, &ids[1]);
	call("busy-2", post, &ids[2]);
	call("busy-3", post, &ids[3]);
	wait_idle();
	pthread_mutex_lock(&m);
	w = wakes;
	pthread_mutex_unlock(&m);
	call("noise", noise, NULL);
	wait_rewait(w);
	call("after-noise", post, &ids[4]);
	wait_idle();
	post(&ids[5]);
	pthread_join(worker_thread, NULL);

	pthread_create(&t, NULL, managed, NULL);
	call("joiner", join_signal, NULL);
	pthread_join(t, NULL);
	fprintf(stderr, "main done\n");
	return 0;
}
