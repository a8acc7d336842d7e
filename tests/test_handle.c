/*
 * Handles (src/handle.c): take and enter round trips, nesting and restore,
 * records reused by later requests, long IDs, and threads taking and entering
 * each other's handles at once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "ctx.h"
#include "handle.h"
#include "reqctx.h"

static void take_into(void *arg)
{
	*(reqctx_handle *)arg = reqctx_handle_take();
}

/* The handle of a fresh request with this ID, taken inside it. */
static reqctx_handle handle_of(const char *id)
{
	reqctx_handle h = 0;

	cr_assert_eq(reqctx_run(id, take_into, &h), 0, "reqctx_run(%s)", id);
	cr_assert_neq(h, 0ull);
	return h;
}

/* A 128-byte (or any length) valid ID. */
static const char *long_id(char *buf, size_t len, char c)
{
	memset(buf, c, len);
	buf[len] = '\0';
	return buf;
}

Test(handle, outside_any_request_the_handle_is_0_and_entering_0_is_unknown)
{
	cr_assert_eq(reqctx_handle_take(), 0ull);
	cr_assert_eq(reqctx_handle_enter(0), 0ull);
	cr_assert_str_eq(reqctx_id(), "unknown");
}

Test(handle, a_handle_enters_its_request_and_returns_the_previous_one)
{
	reqctx_handle h = handle_of("h-round-trip");

	cr_assert_str_eq(reqctx_id(), "unknown");
	cr_assert_eq(reqctx_handle_enter(h), 0ull);
	cr_assert_str_eq(reqctx_id(), "h-round-trip");
	cr_assert_eq(reqctx_handle_take(), h, "taking again gives the same handle");
	cr_assert_eq(reqctx_handle_enter(h), h, "entering the current handle changes nothing");
	cr_assert_str_eq(reqctx_id(), "h-round-trip");
	cr_assert_eq(reqctx_handle_enter(0), h);
	cr_assert_str_eq(reqctx_id(), "unknown");
}

Test(handle, handles_are_the_serials_and_fit_a_double)
{
	reqctx_handle a = handle_of("h-a"), b = handle_of("h-b");

	cr_assert_gt(b, a, "serials grow");
	cr_assert_lt(b, 1ull << 53);
	cr_assert_eq((reqctx_handle)(double)b, b);
}

Test(handle, nested_enters_restore_in_order)
{
	reqctx_handle outer = handle_of("h-outer"), inner = handle_of("h-inner");
	reqctx_handle p0, p1, p2;

	p0 = reqctx_handle_enter(outer);
	cr_assert_str_eq(reqctx_id(), "h-outer");
	p1 = reqctx_handle_enter(inner);
	cr_assert_str_eq(reqctx_id(), "h-inner");
	p2 = reqctx_handle_enter(outer);
	cr_assert_str_eq(reqctx_id(), "h-outer");
	cr_assert_eq(p0, 0ull);
	cr_assert_eq(p1, outer);
	cr_assert_eq(p2, inner);
	reqctx_handle_enter(p2);
	cr_assert_str_eq(reqctx_id(), "h-inner");
	reqctx_handle_enter(p1);
	cr_assert_str_eq(reqctx_id(), "h-outer");
	reqctx_handle_enter(p0);
	cr_assert_str_eq(reqctx_id(), "unknown");
}

/*
 * A context the library made current without anyone taking a handle (here a
 * connection's request slot) is interned by enter, so restoring works.
 */
Test(handle, restoring_a_context_nobody_took_brings_it_back)
{
	struct rq_slot s = { 0 };
	reqctx_handle h = handle_of("h-other"), prev;

	rq_slot_fill(&s, "conn-request-7", 14, 0);
	rq_ctx_set_slot(&s);
	cr_assert_str_eq(reqctx_id(), "conn-request-7");
	prev = reqctx_handle_enter(h);
	cr_assert_eq(prev, atomic_load(&s.serial));
	cr_assert_str_eq(reqctx_id(), "h-other");
	reqctx_handle_enter(prev);
	cr_assert_str_eq(reqctx_id(), "conn-request-7");
	rq_ctx_clear();
}

Test(handle, ids_of_every_length_round_trip)
{
	static const size_t lens[] = { 1, 7, 8, 36, 47, 48, 49, 64, 127, 128 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		char id[REQCTX_ID_MAX + 1];
		reqctx_handle h = handle_of(long_id(id, lens[i], (char)('a' + i)));

		cr_assert_eq(reqctx_handle_enter(h), 0ull);
		cr_assert_str_eq(reqctx_id(), id, "length %zu", lens[i]);
		cr_assert_eq(rq_ctx_cur()->len, lens[i]);
		reqctx_handle_enter(0);
	}
}

Test(handle, a_handle_never_taken_enters_unknown)
{
	reqctx_handle h = handle_of("h-real");

	cr_assert_eq(reqctx_handle_enter(h), 0ull);
	reqctx_handle_enter(h + 1);
	cr_assert_str_eq(reqctx_id(), "unknown");
	reqctx_handle_enter(h + RQ_HD_RECS * 3ull);
	cr_assert_str_eq(reqctx_id(), "unknown");
	reqctx_handle_enter(~0ull);
	cr_assert_str_eq(reqctx_id(), "unknown");
}

/* Uses up serials until the next one is congruent to h modulo m. */
static void skip_to_congruent(reqctx_handle h, uint64_t m)
{
	uint64_t s;

	do
		s = rq_serial_next();
	while ((s + 1) % m != h % m);
}

Test(handle, a_record_reused_by_a_later_request_enters_unknown_never_it)
{
	reqctx_handle a = handle_of("h-evicted"), b;

	skip_to_congruent(a, RQ_HD_RECS);
	b = handle_of("h-evictor");
	cr_assert_eq(b, a + RQ_HD_RECS);
	cr_assert_eq(reqctx_handle_enter(a), 0ull);
	cr_assert_str_eq(reqctx_id(), "unknown");
	reqctx_handle_enter(b);
	cr_assert_str_eq(reqctx_id(), "h-evictor");
	reqctx_handle_enter(0);
}

Test(handle, a_long_id_whose_overflow_record_was_reused_enters_unknown)
{
	char id1[REQCTX_ID_MAX + 1], id2[REQCTX_ID_MAX + 1];
	reqctx_handle a = handle_of(long_id(id1, 100, 'x')), b;

	skip_to_congruent(a, RQ_HD_LONG);
	b = handle_of(long_id(id2, 100, 'y'));
	cr_assert_eq(b, a + RQ_HD_LONG);
	cr_assert_eq(reqctx_handle_enter(a), 0ull);
	cr_assert_str_eq(reqctx_id(), "unknown", "got %s", reqctx_id());
	reqctx_handle_enter(b);
	cr_assert_str_eq(reqctx_id(), id2);
	reqctx_handle_enter(0);
}

/* Taking a context again after its record was reused makes its handle good again. */
Test(handle, taking_again_after_reuse_restores_the_record)
{
	reqctx_handle a = handle_of("h-again"), b, again;

	reqctx_handle_enter(a);
	skip_to_congruent(a, RQ_HD_RECS);
	b = handle_of("h-between");
	cr_assert_eq(b, a + RQ_HD_RECS);
	again = reqctx_handle_take(); /* still in h-again */
	cr_assert_eq(again, a);
	reqctx_handle_enter(0);
	reqctx_handle_enter(a);
	cr_assert_str_eq(reqctx_id(), "h-again");
	reqctx_handle_enter(b);
	cr_assert_str_eq(reqctx_id(), "unknown", "b's record now holds a");
	reqctx_handle_enter(0);
}

/* ---- threads ---------------------------------------------------------------- */

#define THREADS 4
#define ROUNDS  4000 /* THREADS * ROUNDS < RQ_HD_RECS: no record is reused */

static _Atomic reqctx_handle published[THREADS][ROUNDS];
static _Atomic int nbad, nseen;

struct taker {
	int t;
	int round;
};

static void publish(void *arg)
{
	struct taker *k = arg;

	atomic_store(&published[k->t][k->round], reqctx_handle_take());
}

static void *churn(void *arg)
{
	int t = (int)(long)arg;
	unsigned x = (unsigned)t * 2654435761u + 1;

	for (int i = 0; i < ROUNDS; i++) {
		char id[32], want[32];
		struct taker k = { t, i };
		int ot, oi;
		reqctx_handle h, prev;

		snprintf(id, sizeof(id), "t%d-r%d", t, i);
		reqctx_run(id, publish, &k);
		x = x * 1103515245u + 12345u;
		ot = (int)(x >> 8) % THREADS;
		oi = (int)(x >> 12) % (i + 1);
		if (!(h = atomic_load(&published[ot][oi])))
			continue;
		snprintf(want, sizeof(want), "t%d-r%d", ot, oi);
		prev = reqctx_handle_enter(h);
		if (strcmp(reqctx_id(), want))
			atomic_fetch_add(&nbad, 1);
		reqctx_handle_enter(prev);
		if (strcmp(reqctx_id(), "unknown"))
			atomic_fetch_add(&nbad, 1);
		atomic_fetch_add(&nseen, 1);
	}
	return NULL;
}

Test(handle, threads_taking_and_entering_each_others_handles_see_exact_ids)
{
	pthread_t th[THREADS];

	for (long t = 0; t < THREADS; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, churn, (void *)t), 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	cr_assert_eq(atomic_load(&nbad), 0, "%d wrong of %d", atomic_load(&nbad), atomic_load(&nseen));
	cr_assert_gt(atomic_load(&nseen), THREADS * ROUNDS / 2);
}

/* reqctx_handle_current: a double that follows every switch, without interning. */
Test(handle, the_current_handle_double_follows_every_switch)
{
	const volatile double *cur = reqctx_handle_current();
	reqctx_handle a = handle_of("h-cur-a"), b = handle_of("h-cur-b");

	cr_assert_eq(*cur, 0.0);
	reqctx_handle_enter(a);
	cr_assert_eq(*cur, (double)a);
	reqctx_handle_enter(b);
	cr_assert_eq(*cur, (double)b);
	reqctx_handle_enter(0);
	cr_assert_eq(*cur, 0.0);
}

/*
 * reqctx_handle_current()[1]: 1 from an enter that switched until the
 * library sets a context itself (here rq_ctx_set_slot, as a read does, even
 * to the same request, and rq_ctx_clear), which a lazy adapter uses to tell
 * an I/O callback's own context from one it entered.
 */
Test(handle, the_entered_mark_lasts_until_the_library_switches_itself)
{
	const volatile double *cur = reqctx_handle_current();
	reqctx_handle a = handle_of("h-mark-a");
	struct rq_slot s;
	struct rq_ctx c;

	cr_assert_eq(cur[1], 0.0);
	reqctx_handle_enter(a);
	cr_assert_eq(cur[0], (double)a);
	cr_assert_eq(cur[1], 1.0);
	memset(&s, 0, sizeof(s));
	c = *rq_ctx_cur();
	rq_slot_store(&s, &c); /* a's connection slot, as a read of it would set it */
	rq_ctx_set_slot(&s);
	cr_assert_eq(cur[0], (double)a);
	cr_assert_eq(cur[1], 0.0, "the library's own switch to the same request clears the mark");
	reqctx_handle_enter(0);
	cr_assert_eq(cur[1], 1.0);
	rq_ctx_clear();
	cr_assert_eq(cur[1], 0.0);
	cr_assert_str_eq(reqctx_id(), "unknown");
}

/* rq_handle_resume: the library's own switch to a handle, without the entered mark. */
Test(handle, resume_switches_without_the_mark)
{
	const volatile double *cur = reqctx_handle_current();
	reqctx_handle a = handle_of("h-resume");

	rq_handle_resume(a);
	cr_assert_str_eq(reqctx_id(), "h-resume");
	cr_assert_eq(cur[0], (double)a);
	cr_assert_eq(cur[1], 0.0);
	reqctx_handle_enter(0);
	rq_handle_resume(a + 1); /* never taken */
	cr_assert_str_eq(reqctx_id(), "unknown");
	cr_assert_eq(cur[1], 0.0);
}
