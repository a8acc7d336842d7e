/* Context across threads, through the preload: exact stderr of tests/progs/threads.c. */
#include "proc.h"

static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(threads, .init = setup, .fini = teardown, .timeout = 30);

static char *run_threads(const char *const *env)
{
	char prog[256], err[160];
	char *argv[] = { prog, NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O2/threads", bdir());
	snprintf(err, sizeof(err), "%s/err", dir);
	cr_assert_eq(proc_run(argv, env, 1, NULL, err), 0);
	return slurp(err, NULL);
}

Test(threads, context_follows_threads_pipes_eventfds_and_job_queues)
{
	cr_assert_str_eq(run_threads(NULL),
			 "[req:unknown] early thread\n"
			 "[req:t1] child thread\n"
			 "[req:ev1] eventfd woke me\n"
			 "[req:pipe1] pipe woke me\n"
			 "[req:job-a] consumed job 1\n"
			 "[req:job-b] consumed job 2\n"
			 "[req:job-c] consumed job 3\n"
			 "[req:unknown] main done\n");
}

Test(threads, handoff_can_be_turned_off)
{
	static const char *const env[] = { "REQCTX_HANDOFF=0", NULL };
	char *err = run_threads(env);

	cr_assert_not_null(strstr(err, "[req:unknown] consumed job 1\n"));
	cr_assert_not_null(strstr(err, "[req:unknown] consumed job 3\n"));
	cr_assert_not_null(strstr(err, "[req:pipe1] pipe woke me\n"));
}

/*
 * A pool like libuv's threadpool (tests/progs/pool.c): started inside a
 * request, signalled only when its worker is idle; a broadcast that queues
 * no job; a thread whose context a runtime adapter enters.
 */
Test(threads, a_pool_that_signals_only_idle_workers_runs_each_job_in_its_request)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=2", NULL };
	char prog[256], err[160];
	char *argv[] = { prog, NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O2/pool", bdir());
	snprintf(err, sizeof(err), "%s/err", dir);
	cr_assert_eq(proc_run(argv, env, 1, NULL, err), 0);
	cr_assert_str_eq(slurp(err, NULL),
			 "[req:boot] worker did job 1\n"
			 "[req:busy-1] worker did job 2\n"
			 "[req:busy-2] worker did job 3\n"
			 "[req:busy-3] worker did job 4\n"
			 "[req:after-noise] worker did job 5\n"
			 "[req:unknown] managed thread joined\n"
			 "[req:unknown] main done\n");
}
