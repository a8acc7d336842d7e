/*
 * Interposition: timers and signal handlers. Helper programs from
 * tests/progs arm timers inside reqctx_run contexts; every line they log from
 * an expiry, a callback or a handler must carry the arming context, and the
 * interrupted context must be back once a handler returns.
 */
#include "proc.h"

static char err_path[160];
static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
	snprintf(err_path, sizeof(err_path), "%s/err", dir);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(timer_preload, .init = setup, .fini = teardown, .timeout = 60);

/* Runs build/progs/VARIANT/PROG [arg] under the library; returns its stderr. */
static char *run_err(const char *variant, const char *prog, const char *arg, int want_status)
{
	char path[256];
	char *argv[] = { path, (char *)arg, NULL };

	snprintf(path, sizeof(path), "%s/progs/%s/%s", bdir(), variant, prog);
	cr_assert_eq(proc_run(argv, NULL, 1, NULL, err_path), want_status, "%s %s",
		     prog, arg ? arg : "");
	return slurp(err_path, NULL);
}

static void both(const char *arg, const char *want, int status)
{
	static const char *const variants[] = { "O0", "O2" };

	for (int i = 0; i < 2; i++) {
		char *got = run_err(variants[i], "tm_ctx", arg, status);

		cr_assert_str_eq(got, want, "%s %s\n--- got ---\n%s--- want ---\n%s",
				 variants[i], arg, got, want);
		free(got);
	}
}

Test(timer_preload, timerfd_expiry_read_anywhere_resumes_the_arming_context)
{
	both("timerfd",
	     "[req:armA] outside expired n=1\n"
	     "[req:armB] in-other expired n=1\n"
	     /* the read left the thread in armA; a failed settime changes nothing */
	     "[req:armA] bad fd r=-1 errno=9\n",
	     0);
}

/* Needs epoll delivery (preload/epoll.c) switching to the reported fd's context. */
Test(timer_preload, timerfd_expiry_reported_by_epoll_resumes_the_arming_context)
{
	both("timerfd-epoll", "[req:armE] in-loop epoll reported the expiry\n", 0);
}

Test(timer_preload, sigev_thread_callbacks_run_in_the_context_that_armed_the_timer)
{
	char *want = malloc(16384);
	size_t n = 0;

	n += (size_t)sprintf(want + n, "[req:armed] callback val=41\n");
	n += (size_t)sprintf(want + n, "[req:unknown] callback val=42\n");
	for (int i = 0; i < 150; i++)
		n += (size_t)sprintf(want + n, "[req:L%d] callback val=%d\n", i, 1000 + i);
	sprintf(want + n, "[req:unknown] main\n");
	both("thread", want, 0);
	free(want);
}

Test(timer_preload, sigev_signal_handler_runs_as_the_armer_then_the_interrupted_context_returns)
{
	both("signal",
	     "[req:sigarm] handler sig=10 code=SI_TIMER val=77\n"
	     "[req:waiting] after timer\n"
	     /* not a timer: the handler runs in the context it interrupted */
	     "[req:waiting2] handler sig=10 code=SI_TKILL\n"
	     "[req:waiting2] after raise\n"
	     "[req:unknown] handler sig=10 code=SI_TIMER val=77\n"
	     "[req:waiting3] after unknown-armed\n"
	     "[req:unknown] main\n",
	     0);
}

Test(timer_preload, setitimer_alarm_and_ualarm_handlers_installed_before_any_request)
{
	both("itimer",
	     "[req:it] alarm handler sig=14\n"
	     "[req:w1] after setitimer\n"
	     "[req:al] alarm handler sig=14\n"
	     "[req:w2] after alarm\n"
	     "[req:ua] alarm handler sig=14\n"
	     "[req:w3] after ualarm\n"
	     "[req:unknown] alarm handler sig=14\n"
	     "[req:w4] after unknown-armed\n"
	     /* ITIMER_VIRTUAL interrupts a busy loop running as another request */
	     "[req:vt] alarm handler sig=26\n"
	     "[req:busy] busy loop done\n"
	     "[req:unknown] main\n",
	     0);
}

Test(timer_preload, sa_nodefer_nested_delivery_keeps_the_context_at_every_depth)
{
	both("nodefer",
	     "[req:nd] enter depth=1\n"
	     "[req:nd] enter depth=2\n"
	     "[req:nd] leave depth=2\n"
	     "[req:nd] leave depth=1\n"
	     "[req:nd] after nested\n"
	     "[req:unknown] main\n",
	     0);
}

Test(timer_preload, sa_resethand_runs_once_then_the_default_action_kills)
{
	both("reset",
	     "[req:r1] once sig=12\n"
	     "[req:r1] after nested\n"
	     "[req:unknown] now SIG_DFL\n",
	     128 + SIGUSR2);
}

/* sigaction's oldact and signal()'s return are byte for byte what plain glibc reports. */
static void flags_case(const char *variant)
{
	char prog[256], r0[160], r1[160];
	char *a0[] = { prog, r0, NULL }, *a1[] = { prog, r1, NULL };
	char *plain, *got;

	snprintf(prog, sizeof(prog), "%s/progs/%s/tm_flags", bdir(), variant);
	snprintf(r0, sizeof(r0), "%s/plain.rep", dir);
	snprintf(r1, sizeof(r1), "%s/preload.rep", dir);
	cr_assert_eq(proc_run(a0, NULL, 0, NULL, NULL), 0);
	cr_assert_eq(proc_run(a1, NULL, 1, NULL, err_path), 0);
	plain = slurp(r0, NULL);
	got = slurp(r1, NULL);
	/* The report covers what it claims to. */
	cr_assert(strstr(plain, "now h2: r=0 errno=untouched handler=h2 flags=0xc000004 "));
	cr_assert(strstr(plain, "signal h3: returned h2 errno=untouched\n"));
	cr_assert(strstr(plain, "resethand calls=1\nafter reset: r=0 errno=untouched "
				"handler=SIG_DFL flags=0x84000004 "));
	cr_assert(strstr(plain, "sysv calls=1\n"));
	cr_assert(strstr(plain, "sigaction kill: r=-1 errno=22\n"));
	cr_assert(strstr(plain, "nodefer: enter1 enter2 leave2 leave1\n"));
	cr_assert(strstr(plain, "defer: enter1 leave1 enter1 leave1\n"));
	cr_assert_str_eq(got, plain, "\n--- preload ---\n%s--- plain ---\n%s", got, plain);
	cr_assert_str_eq(slurp(err_path, NULL), "");
}

Test(timer_preload, sigaction_and_signal_report_exactly_what_glibc_reports_O0)
{
	flags_case("O0");
}

Test(timer_preload, sigaction_and_signal_report_exactly_what_glibc_reports_O2)
{
	flags_case("O2");
}

/* A binary linked against timer_*@GLIBC_2.3.3 (librt's ABI) goes through the wrappers too. */
Test(timer_preload, librt_era_symbol_versions_reach_the_unversioned_wrappers)
{
	char cmd[512];
	char *syms;

	snprintf(cmd, sizeof(cmd), "nm -D %s/progs/O0/tm_ver | grep -o 'timer_[a-z]*@GLIBC_[0-9.]*' "
		 "| sort > %s/syms", bdir(), dir);
	cr_assert_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/syms", dir);
	syms = slurp(cmd, NULL);
	cr_assert_str_eq(syms, "timer_create@GLIBC_2.3.3\ntimer_delete@GLIBC_2.3.3\n"
			       "timer_settime@GLIBC_2.3.3\n");
	for (int i = 0; i < 2; i++) {
		char *got = run_err(i ? "O2" : "O0", "tm_ver", NULL, 0);

		cr_assert_str_eq(got, "[req:oldarmed] old-abi callback val=5\n"
				      "[req:unknown] delete r=0\n"
				      "[req:oldsigarmed] old-abi handler sig=10\n"
				      "[req:unknown] delete r=0\n");
		free(got);
	}
}

/* The demo's timer mode: hops through SIGEV_THREAD callbacks, every line prefixed right. */
Test(timer_preload, demo_timer_mode_passes_the_concurrency_check, .timeout = 120)
{
	char demo[256], lc[256], port[16], out[160], summary[160];
	char *dargv[] = { demo, "--port", "0", "--mode", "timer", NULL };
	char *largv[] = { lc, "--port", port, "--requests", "600", "--conns", "16", "--log",
			  err_path, "--lines-per-request", "4", NULL };
	char *o = NULL, *s = NULL;
	pid_t d;

	snprintf(demo, sizeof(demo), "%s/reqctx-demo", bdir());
	snprintf(lc, sizeof(lc), "%s/progs/O0/loadcheck", bdir());
	snprintf(out, sizeof(out), "%s/demo.out", dir);
	snprintf(summary, sizeof(summary), "%s/summary", dir);
	d = proc_start(dargv, NULL, 1, out, err_path);
	for (int i = 0; i < 500; i++, usleep(10000)) {
		if (access(out, R_OK) != 0)
			continue;
		free(o);
		o = slurp(out, NULL);
		if ((s = strstr(o, "127.0.0.1:")) && strchr(s, '\n'))
			break;
	}
	cr_assert(s && strchr(s, '\n'), "demo did not print its port: %s", o);
	snprintf(port, sizeof(port), "%d", atoi(s + 10));
	cr_assert_eq(proc_run(largv, NULL, 0, summary, NULL), 0);
	kill(d, SIGTERM);
	proc_wait(d, 10000);
	s = slurp(summary, NULL);
	cr_assert(strstr(s, "requests=600 lines=2400 ok=2400 wrong=0 unknown=0 unprefixed=0 "
			    "unlogged=0 "), "%s", s);
}
