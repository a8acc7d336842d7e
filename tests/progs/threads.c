/*
 * Context across threads: creation, pipe and eventfd hand-offs, and a
 * mutex+condvar job queue. Each step logs one line on stderr.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int (*run)(const char *, void (*)(void *), void *);
static int efd, pfd[2];

static void *early(void *arg)
{
	(void)arg;
	fprintf(stderr, "early thread\n");
	return NULL;
}

static void *child(void *arg)
{
	(void)arg;
	fprintf(stderr, "child thread\n");
	return NULL;
}

static void spawn(void *arg)
{
	pthread_t t;

	(void)arg;
	pthread_create(&t, NULL, child, NULL);
	pthread_join(t, NULL);
}

static void *efd_reader(void *arg)
{
	uint64_t v;

	(void)arg;
	if (read(efd, &v, sizeof(v)) == sizeof(v))
		fprintf(stderr, "eventfd woke me\n");
	return NULL;
}

static void efd_write(void *arg)
{
	uint64_t one = 1;

	(void)arg;
	if (write(efd, &one, sizeof(one)) != sizeof(one))
		fprintf(stderr, "eventfd write failed\n");
}

static void *pipe_reader(void *arg)
{
	char c;

	(void)arg;
	if (read(pfd[0], &c, 1) == 1)
		fprintf(stderr, "pipe woke me\n");
	return NULL;
}

static void pipe_write(void *arg)
{
	(void)arg;
	if (write(pfd[1], "x", 1) != 1)
		fprintf(stderr, "pipe write failed\n");
}

/* The job queue. */
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int jobs[16], head, tail, consumer_ready;

static void *consumer(void *arg)
{
	(void)arg;
	for (int n = 0; n < 3; n++) {
		int job;

		pthread_mutex_lock(&m);
		consumer_ready = 1;
		while (head == tail)
			pthread_cond_wait(&cv, &m);
		job = jobs[head++ % 16];
		pthread_mutex_unlock(&m);
		fprintf(stderr, "consumed job %d\n", job);
		if (n == 0)
			usleep(100000); /* busy: the next jobs queue up meanwhile */
	}
	return NULL;
}

static void produce(void *arg)
{
	pthread_mutex_lock(&m);
	jobs[tail++ % 16] = *(int *)arg;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&m);
}

static void wait_ready(void)
{
	for (;;) {
		pthread_mutex_lock(&m);
		if (consumer_ready) {
			pthread_mutex_unlock(&m);
			return;
		}
		pthread_mutex_unlock(&m);
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

int main(void)
{
	pthread_t t;
	int ids[3] = { 1, 2, 3 };

	run = (int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");
	efd = eventfd(0, 0);
	if (efd < 0 || pipe(pfd) < 0)
		return 2;
	pthread_create(&t, NULL, early, NULL);
	pthread_join(t, NULL);
	call("t1", spawn, NULL);

	pthread_create(&t, NULL, efd_reader, NULL);
	usleep(20000);
	call("ev1", efd_write, NULL);
	pthread_join(t, NULL);

	pthread_create(&t, NULL, pipe_reader, NULL);
	usleep(20000);
	call("pipe1", pipe_write, NULL);
	pthread_join(t, NULL);

	pthread_create(&t, NULL, consumer, NULL);
	wait_ready();
	usleep(20000);
	call("job-a", produce, &ids[0]); /* the consumer is waiting */
	usleep(20000);
	call("job-b", produce, &ids[1]); /* a backlog: it takes these without waiting */
	call("job-c", produce, &ids[2]);
	pthread_join(t, NULL);
	fprintf(stderr, "main done\n");
	return 0;
}
