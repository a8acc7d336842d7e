/*
 * POSIX timers (timer_create): each timer a host creates gets a record that
 * holds the context it was last armed in (timer_settime), or created in.
 *
 * SIGEV_THREAD timers get a trampoline: the kernel-side sigevent names our
 * function, with a value that encodes the record's index and generation, and
 * the trampoline switches to the armed context before calling the host's
 * function with the host's value. SIGEV_SIGNAL and SIGEV_THREAD_ID timers keep
 * the host's sigevent untouched; their signal handler finds the record by the
 * siginfo's si_timerid (see sigctx.h).
 *
 * Records live in chunks that are never freed, so a stale pointer or index
 * always names valid memory. A deleted record goes to the tail of a FIFO free
 * list and is reused only once RQ_TIMER_QUARANTINE others wait behind it (or
 * when the table is full): a SIGEV_THREAD callback that glibc starts just
 * before timer_delete still finds its record, and the generation check skips
 * the call if the record was reused meanwhile. At most RQ_TIMER_MAX records
 * exist; timers beyond that pass through untouched.
 *
 * Creation and deletion take a mutex (timer_create and timer_delete are not
 * async-signal-safe). Lookups by timer id (timer_settime, signal handlers)
 * take no lock: an open-addressed table read under a seqlock.
 */
#ifndef RQ_TIMERS_H
#define RQ_TIMERS_H

#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "ctx.h"

#define RQ_TIMER_MAX        (1u << 15) /* records at most */
#define RQ_TIMER_CHUNK      256u       /* records per allocation */
#define RQ_TIMER_QUARANTINE 64u        /* freed records that wait before reuse */

struct rq_timer {
	struct rq_slot ctx;          /* the arming context */
	_Atomic uint32_t gen;        /* bumped on each reuse; 0 while being rewritten */
	_Atomic uintptr_t fn;        /* SIGEV_THREAD: the host's function */
	_Atomic uintptr_t val;       /* SIGEV_THREAD: the host's sigev_value.sival_ptr */
	uint32_t idx;                /* own index */
	uint32_t next;               /* free list link */
	int live;                    /* between rq_timer_new and rq_timer_free (under the mutex) */
};

/*
 * Makes a record for a timer about to be created with `evp` (NULL: the
 * default SIGEV_SIGNAL/SIGALRM), holding the current context. For
 * SIGEV_THREAD, fills `out` with the sigevent to pass to the real
 * timer_create and points *use at it; otherwise *use is evp. Returns the
 * record, or NULL if none is needed (SIGEV_NONE) or none is left (then the
 * timer passes through untouched and *use is evp).
 */
struct rq_timer *rq_timer_new(const struct sigevent *evp, struct sigevent *out,
			      const struct sigevent **use);

/* The real timer_create succeeded with id: t becomes findable by it. */
void rq_timer_publish(struct rq_timer *t, timer_t id);

/* Returns t to the free list (the real timer_create failed, or the timer was deleted). */
void rq_timer_free(struct rq_timer *t);

/*
 * The record published for id, or NULL. Lock-free and async-signal-safe; it
 * waits out another thread's table update, and reports NULL if it runs in a
 * signal handler that interrupted this thread's own update.
 */
struct rq_timer *rq_timer_find(timer_t id);

/* The record published for id, found under the mutex (never misses; not async-signal-safe). */
struct rq_timer *rq_timer_lookup(timer_t id);

/* Unpublishes id if it still names t, then frees t (after a successful timer_delete). */
void rq_timer_delete(timer_t id, struct rq_timer *t);

/* The timer is being armed: it now carries the current context; *prev gets the old one. */
void rq_timer_arm(struct rq_timer *t, struct rq_ctx *prev);

/* Arming failed: puts back what rq_timer_arm replaced. */
void rq_timer_unarm(struct rq_timer *t, const struct rq_ctx *prev);

/*
 * A signal from a timer whose kernel id is kid arrived: switches to the
 * context the timer was armed in. Returns 1, or 0 if kid names no record
 * (the context is then left as it is). Async-signal-safe.
 */
int rq_timer_enter_signal(int kid);

/* Number of records in use (tests). */
unsigned rq_timer_count(void);

/* fork handlers for the mutex. */
void rq_timers_lock(void);
void rq_timers_unlock(void);

#endif
