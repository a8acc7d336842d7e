/*
 * The first hand-off of a process, with the producer already blocked on the
 * mutex when the consumer first waits (libuv's first uv_queue_work: the
 * main thread posts while the new workers take the mutex to wait):
 *   - the consumer takes the mutex;
 *   - the producer, inside request "first", calls pthread_mutex_lock and
 *     blocks (the program waits until its thread sleeps);
 *   - the consumer makes the process's first untimed pthread_cond_wait,
 *     which releases the mutex to the producer;
 *   - the producer queues a job, signals, unlocks;
 *   - the consumer takes the job and logs one line on stderr.
 * Under the library that line is in the producer's request.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int (*run)(const char *, void (*)(void *), void *);

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int job;
static _Atomic int held, ptid;

/* The state letter of thread tid of this process ('S': asleep), or 0. */
static char state_of(int tid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	if (!(f = fopen(path, "r")))
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the name may hold spaces */
	return p && p[1] == ' ' ? p[2] : 0;
}

static void produce(void *arg)
{
	(void)arg;
	atomic_store(&ptid, (int)syscall(SYS_gettid));
	pthread_mutex_lock(&m);
	job = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&m);
}

static void *producer(void *arg)
{
	(void)arg;
	while (!atomic_load(&held))
		usleep(1000);
	if (run)
		run("first", produce, NULL);
	else
		produce(NULL);
	return NULL;
}

static void *consumer(void *arg)
{
	int tid;

	(void)arg;
	pthread_mutex_lock(&m);
	atomic_store(&held, 1);
	while (!(tid = atomic_load(&ptid)))
		usleep(1000);
	while (state_of(tid) != 'S') /* blocked in pthread_mutex_lock: nothing else sleeps there */
		usleep(1000);
	while (!job)
		pthread_cond_wait(&cv, &m);
	job = 0;
	pthread_mutex_unlock(&m);
	fprintf(stderr, "consumer took the first job\n");
	return NULL;
}

int main(void)
{
	pthread_t c, p;

	run = (int (*)(const char *, void (*)(void *), void *))dlsym(RTLD_DEFAULT, "reqctx_run");
	if (pthread_create(&c, NULL, consumer, NULL) != 0 ||
	    pthread_create(&p, NULL, producer, NULL) != 0)
		return 1;
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	fprintf(stderr, "main done\n");
	return 0;
}
