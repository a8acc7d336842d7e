/*
 * A program built against the librt-era POSIX timer functions
 * (timer_*@GLIBC_2.3.3, the same ABI as GLIBC_2.34): the library's
 * unversioned wrappers must catch these calls too. The callback logs in the
 * context its timer was armed in; the SIGEV_SIGNAL timer's handler too.
 */
#include <dlfcn.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

__asm__(".symver timer_create,timer_create@GLIBC_2.3.3");
__asm__(".symver timer_settime,timer_settime@GLIBC_2.3.3");
__asm__(".symver timer_delete,timer_delete@GLIBC_2.3.3");

typedef int (*run_fn)(const char *, void (*)(void *), void *);

static sem_t done;
static timer_t t;
static volatile sig_atomic_t hits;

static void callback(union sigval v)
{
	fprintf(stderr, "old-abi callback val=%d\n", v.sival_int);
	sem_post(&done);
}

static void on_usr1(int sig)
{
	fprintf(stderr, "old-abi handler sig=%d\n", sig);
	hits++;
}

static void make(void *notify)
{
	struct sigevent ev = { .sigev_notify = (int)(intptr_t)notify, .sigev_signo = SIGUSR1,
			       .sigev_notify_function = callback };

	ev.sigev_value.sival_int = 5;
	if (timer_create(CLOCK_MONOTONIC, &ev, &t) < 0)
		perror("timer_create");
}

static void arm(void *arg)
{
	struct itimerspec its = { .it_value = { 0, 20000000L } };

	(void)arg;
	if (timer_settime(t, 0, &its, NULL) < 0)
		perror("timer_settime");
}

int main(void)
{
	run_fn run = (run_fn)dlsym(RTLD_DEFAULT, "reqctx_run");
	sigset_t s, old;

	if (!run)
		return 2;
	sem_init(&done, 0, 0);
	run("oldmade", make, (void *)SIGEV_THREAD);
	run("oldarmed", arm, NULL);
	while (sem_wait(&done) < 0)
		;
	fprintf(stderr, "delete r=%d\n", timer_delete(t));

	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigprocmask(SIG_BLOCK, &s, &old);
	signal(SIGUSR1, on_usr1);
	run("oldsig", make, (void *)SIGEV_SIGNAL);
	run("oldsigarmed", arm, NULL);
	while (!hits)
		sigsuspend(&old);
	fprintf(stderr, "delete r=%d\n", timer_delete(t));
	return 0;
}
