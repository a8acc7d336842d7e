#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctx.h"
#include "id.h"
#include "proc.h"
#include "reqctx.h"

#include <sched.h>
#include <sys/syscall.h>

extern pid_t _Fork(void);

struct hostile {
	const char *name;
	char value[200];
	size_t len;
};

ParameterizedTestParameters(id, hostile_values_are_refused)
{
	static struct hostile cases[] = {
		{ "empty", "", 0 },
		{ "CR", "abc\rdef", 7 },
		{ "LF", "abc\ndef", 7 },
		{ "CRLF forged line", "x\r\n[req:evil] forged", 21 },
		{ "space", "abc def", 7 },
		{ "tab", "abc\tdef", 7 },
		{ "closing bracket", "abc]def", 7 },
		{ "opening bracket", "abc[def", 7 },
		{ "NUL", "abc\0def", 7 },
		{ "DEL", "abc\x7f", 4 },
		{ "escape", "\x1b[31mred", 8 },
		{ "quote", "a\"b", 3 },
		{ "percent", "100%", 4 },
		{ "non-ASCII", "caf\xc3\xa9", 5 },
		{ "129 bytes", "", 129 },
	};
	memset(cases[14].value, 'a', 129);
	return cr_make_param_array(struct hostile, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct hostile *h, id, hostile_values_are_refused)
{
	cr_assert_eq(rq_id_valid(h->value, h->len), 0, "%s accepted", h->name);
}

Test(id, every_documented_character_is_accepted)
{
	const char *ok = "AZaz09-_.:@+=/~";

	cr_assert_eq(rq_id_valid(ok, strlen(ok)), 1);
	cr_assert_eq(reqctx_id_valid(ok), 1);
	for (int c = 0; c < 256; c++) {
		char s[1] = { (char)c };
		int expect = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || (c && strchr("-_.:@+=/~", c));

		cr_expect_eq(rq_id_valid(s, 1), expect, "byte %d", c);
	}
}

Test(id, length_limit_is_128)
{
	char s[129];

	memset(s, 'x', sizeof(s));
	cr_assert_eq(rq_id_valid(s, 128), 1);
	cr_assert_eq(rq_id_valid(s, 129), 0);
	cr_assert_eq(rq_id_valid(s, 1), 1);
}

static int is_uuid4(const char *u)
{
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (u[i] != '-')
				return 0;
		} else if (!strchr("0123456789abcdef", u[i]) || !u[i]) {
			return 0;
		}
	}
	return u[14] == '4' && strchr("89ab", u[19]) != NULL;
}

Test(id, uuids_are_lowercase_v4_8_4_4_4_12)
{
	for (int i = 0; i < 1000; i++) {
		char u[37] = { 0 };

		rq_uuid4(u);
		cr_assert(is_uuid4(u), "bad uuid %s", u);
	}
}

/*
 * Every random digit takes each of its values: 16 for the 30 free digits, 4
 * for the variant (8, 9, a, b). 4096 IDs miss a given value of a given digit
 * with probability (15/16)^4096, about 1e-115: no digit is stuck or biased to
 * a subset, whatever the order in which the random bits are laid out.
 */
Test(id, every_random_digit_takes_every_value)
{
	static unsigned seen[36];

	for (int i = 0; i < 4096; i++) {
		char u[37] = { 0 };

		rq_uuid4(u);
		for (int k = 0; k < 36; k++)
			if (u[k] != '-') /* (a dash would shift by a negative count) */
				seen[k] |= 1u << (u[k] <= '9' ? u[k] - '0' : u[k] - 'a' + 10);
	}
	for (int k = 0; k < 36; k++) {
		if (k == 8 || k == 13 || k == 18 || k == 23 || k == 14)
			continue;
		cr_assert_eq(seen[k], k == 19 ? 0xf00u : 0xffffu, "digit %d took values 0x%x", k, seen[k]);
	}
	cr_assert_eq(seen[14], 1u << 4, "the version digit is always 4");
}

Test(id, uuids_do_not_repeat)
{
	enum { N = 20000 };
	static char seen[N][37];

	for (int i = 0; i < N; i++)
		rq_uuid4(seen[i]);
	qsort(seen, N, 37, (int (*)(const void *, const void *))strcmp);
	for (int i = 1; i < N; i++)
		cr_assert_neq(strcmp(seen[i - 1], seen[i]), 0, "repeat %s", seen[i]);
}

Test(id, forked_children_do_not_repeat_the_parent_or_each_other)
{
	char ids[3][37] = { { 0 } };
	int p[2];

	rq_uuid4(ids[0]); /* seeds the parent */
	cr_assert_eq(pipe(p), 0);
	for (int k = 0; k < 2; k++) {
		pid_t pid = fork();

		if (pid == 0) {
			char u[36];

			rq_id_after_fork(); /* what the pthread_atfork hook does */
			rq_uuid4(u);
			_exit(write(p[1], u, 36) == 36 ? 0 : 1);
		}
		cr_assert_gt(pid, 0);
		cr_assert_eq(read(p[0], ids[k + 1], 36), 36);
		waitpid(pid, NULL, 0);
	}
	cr_assert(is_uuid4(ids[1]) && is_uuid4(ids[2]));
	cr_assert_neq(strcmp(ids[1], ids[2]), 0, "two workers made %s", ids[1]);
	rq_uuid4(ids[0]);
	cr_assert_neq(strcmp(ids[0], ids[1]), 0);
	cr_assert_neq(strcmp(ids[0], ids[2]), 0);
}

/*
 * Children that no pthread_atfork hook hears of: _Fork() and a raw clone.
 * make(k) starts child k, which writes one ID to p[1] and exits.
 */
static void children_do_not_repeat(pid_t (*make)(void))
{
	enum { KIDS = 7 };
	char ids[KIDS + 1][37] = { { 0 } };
	int p[2];

	rq_uuid4(ids[KIDS]); /* seeds the parent */
	cr_assert_eq(pipe(p), 0);
	for (int k = 0; k < KIDS; k++) {
		pid_t pid = make();

		if (pid == 0) {
			char u[36];

			rq_uuid4(u);
			_exit(write(p[1], u, 36) == 36 ? 0 : 1);
		}
		cr_assert_gt(pid, 0);
		cr_assert_eq(read(p[0], ids[k], 36), 36);
		cr_assert_eq(waitpid(pid, NULL, 0), pid);
	}
	rq_uuid4(ids[KIDS]);
	for (int i = 0; i <= KIDS; i++) {
		cr_assert(is_uuid4(ids[i]), "%s", ids[i]);
		for (int j = 0; j < i; j++)
			cr_assert_neq(strcmp(ids[i], ids[j]), 0, "processes %d and %d made %s", j, i,
				      ids[i]);
	}
}

static pid_t raw_clone(void)
{
	return (pid_t)syscall(SYS_clone, SIGCHLD, 0L, 0L, 0L, 0L);
}

Test(id, children_made_by_fork_without_atfork_handlers_do_not_repeat)
{
	children_do_not_repeat(_Fork);
}

Test(id, children_made_by_a_raw_clone_do_not_repeat)
{
	children_do_not_repeat(raw_clone);
}

/*
 * The same under the library: 1 + 7 + 7 processes, each serving one request
 * with a generated ID. (Each child sends its request to itself while in the
 * request its parent served: with propagation on, that request would carry
 * the parent's ID, as it should; here the generator is under test.)
 */
Test(id_preload, requests_in_fork_and_clone_children_get_distinct_ids, .timeout = 60)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=2", "REQCTX_PROPAGATE=0", NULL };
	const char *dir = tmpdir_new();
	char path[256], out[256], err[256], who[16], id[64];
	char *argv[] = { path, NULL };
	char ids[15][64];
	int n = 0, forks = 0, clones = 0, k;
	char *text, *line;

	snprintf(path, sizeof(path), "%s/progs/O2/id_fork", bdir());
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	cr_assert_eq(proc_run(argv, env, 1, out, err), 0, "%s", slurp(err, NULL));
	text = slurp(out, NULL);
	for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		cr_assert_lt(n, 15, "too many lines");
		cr_assert_eq(sscanf(line, "%15s %d %63s", who, &k, id), 3, "%s", line);
		cr_assert(is_uuid4(id), "%s", line);
		forks += !strcmp(who, "_Fork");
		clones += !strcmp(who, "clone");
		for (int j = 0; j < n; j++)
			cr_assert_str_neq(ids[j], id, "two processes got %s", id);
		strcpy(ids[n++], id);
	}
	cr_assert_eq(n, 15);
	cr_assert_eq(forks, 7);
	cr_assert_eq(clones, 7);
	tmpdir_remove(dir);
}

/* reqctx_run: the seed's nested-run demo. */
static char trail[256];

static void note(void *tag)
{
	strcat(trail, (const char *)tag);
	strcat(trail, "=");
	strcat(trail, reqctx_id());
	strcat(trail, " ");
}

static void inner(void *arg)
{
	(void)arg;
	note("B");
}

static void outer(void *arg)
{
	(void)arg;
	note("A");
	cr_assert_eq(reqctx_run("inner", inner, NULL), 0);
	note("C");
}

Test(ctx, nested_runs_override_then_restore)
{
	trail[0] = '\0';
	note("before");
	cr_assert_eq(reqctx_run("outer", outer, NULL), 0);
	note("after");
	cr_assert_str_eq(trail, "before=unknown A=outer B=inner C=outer after=unknown ");
}

Test(ctx, invalid_ids_are_refused_without_running)
{
	trail[0] = '\0';
	cr_assert_eq(reqctx_run("bad id", inner, NULL), -EINVAL);
	cr_assert_eq(reqctx_run("x]", inner, NULL), -EINVAL);
	cr_assert_eq(reqctx_run("", inner, NULL), -EINVAL);
	cr_assert_eq(reqctx_run(NULL, inner, NULL), -EINVAL);
	cr_assert_eq(reqctx_run("ok", NULL, NULL), -EINVAL);
	cr_assert_str_eq(trail, "");
	cr_assert_str_eq(reqctx_id(), "unknown");
}

Test(ctx, slots_copy_into_the_thread_context)
{
	struct rq_slot s = { 0 };
	struct rq_ctx c;

	rq_slot_fill(&s, "req-1", 5, RQ_SLOT_HEAD);
	cr_assert_eq(rq_slot_read(&s, &c, NULL), 0);
	cr_assert_str_eq(c.id, "req-1");
	rq_ctx_set_slot(&s);
	cr_assert_str_eq(reqctx_id(), "req-1");
	rq_slot_fill(&s, "a-much-longer-request-id-0123456789", 35, 0);
	rq_ctx_set_slot(&s);
	cr_assert_str_eq(reqctx_id(), "a-much-longer-request-id-0123456789");
	rq_slot_fill(&s, "xy", 2, 0);
	rq_ctx_set_slot(&s);
	cr_assert_str_eq(reqctx_id(), "xy");
	rq_ctx_clear();
	cr_assert_str_eq(reqctx_id(), "unknown");
}

/* Snapshots: capture on one thread, resume on another. */
struct snap_job {
	reqctx_snapshot snap;
	char seen_inside[REQCTX_ID_MAX + 1];
	char seen_after[REQCTX_ID_MAX + 1];
	int rc;
};

static void record(void *arg)
{
	strcpy(((struct snap_job *)arg)->seen_inside, reqctx_id());
}

static void *worker(void *arg)
{
	struct snap_job *j = arg;

	j->rc = reqctx_snapshot_run(&j->snap, record, j);
	strcpy(j->seen_after, reqctx_id());
	return NULL;
}

static void take(void *arg)
{
	reqctx_snapshot_take(arg);
}

Test(ctx, snapshot_taken_in_a_request_runs_on_another_thread)
{
	struct snap_job j = { .rc = -1 };
	pthread_t t;

	cr_assert_eq(reqctx_run("snap-1", take, &j.snap), 0);
	cr_assert_str_eq(reqctx_id(), "unknown");
	cr_assert_eq(pthread_create(&t, NULL, worker, &j), 0);
	pthread_join(t, NULL);
	cr_assert_eq(j.rc, 0);
	cr_assert_str_eq(j.seen_inside, "snap-1");
	cr_assert_str_eq(j.seen_after, "unknown");
}

Test(ctx, snapshot_enter_switches_until_the_next_switch)
{
	reqctx_snapshot s, out;

	cr_assert_eq(reqctx_run("snap-2", take, &s), 0);
	reqctx_snapshot_take(&out);
	cr_assert_eq(out.serial, 0ull);
	cr_assert_str_eq(out.id, "unknown");
	cr_assert_eq(reqctx_snapshot_enter(&s), 0);
	cr_assert_str_eq(reqctx_id(), "snap-2");
	cr_assert_eq(reqctx_snapshot_enter(&out), 0);
	cr_assert_str_eq(reqctx_id(), "unknown");
}

Test(ctx, forged_snapshots_are_refused)
{
	reqctx_snapshot s;

	cr_assert_eq(reqctx_run("ok-id", take, &s), 0);
	strcpy(s.id, "x]\n");
	s.len = 3;
	cr_assert_eq(reqctx_snapshot_enter(&s), -EINVAL);
	cr_assert_eq(reqctx_snapshot_run(&s, record, NULL), -EINVAL);
	s.len = 500;
	cr_assert_eq(reqctx_snapshot_enter(&s), -EINVAL);
	cr_assert_eq(reqctx_snapshot_enter(NULL), -EINVAL);
	cr_assert_str_eq(reqctx_id(), "unknown");
}
