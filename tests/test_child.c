/*
 * Children that start in their parent's request (src/child.h): the
 * environment and the command the exec wrappers build, then every way of
 * starting a program, under the library.
 */
#include "common.h"
#include "child.h"
#include "proc.h"

static void std_config(void)
{
	test_config(NULL);
}

TestSuite(child, .init = std_config);

static char **env_of(char *const *envp, const char *id, char **vec, char *text)
{
	long n = rq_child_env_count(envp);

	cr_assert_geq(n, 0);
	return rq_child_env(envp, n, id, strlen(id), vec, text);
}

Test(child, the_request_id_is_added_after_the_parents_variables)
{
	char *envp[] = { "PATH=/bin", "HOME=/root", NULL };
	char *vec[8], text[RQ_CHILD_TEXT];
	char **e = env_of(envp, "abc123", vec, text);

	cr_assert_str_eq(e[0], "PATH=/bin");
	cr_assert_str_eq(e[1], "HOME=/root");
	cr_assert_str_eq(e[2], "REQCTX_PARENT_ID=abc123");
	cr_assert_null(e[3]);
}

Test(child, an_inherited_parent_id_is_replaced_not_doubled)
{
	char *envp[] = { "REQCTX_PARENT_ID=old", "A=1", "REQCTX_PARENT_ID=older", NULL };
	char *vec[8], text[RQ_CHILD_TEXT];
	char **e = env_of(envp, "new-1", vec, text);

	cr_assert_str_eq(e[0], "A=1");
	cr_assert_str_eq(e[1], "REQCTX_PARENT_ID=new-1");
	cr_assert_null(e[2]);
}

Test(child, a_cgi_child_gets_the_header_meta_variable_unless_the_server_set_it)
{
	char *cgi[] = { "GATEWAY_INTERFACE=CGI/1.1", "QUERY_STRING=x", NULL };
	char *set[] = { "GATEWAY_INTERFACE=CGI/1.1", "HTTP_X_REQUEST_ID=client-7", NULL };
	char *vec[8], text[RQ_CHILD_TEXT];
	char **e = env_of(cgi, "gen-9", vec, text);

	cr_assert_str_eq(e[2], "REQCTX_PARENT_ID=gen-9");
	cr_assert_str_eq(e[3], "HTTP_X_REQUEST_ID=gen-9");
	cr_assert_null(e[4]);
	e = env_of(set, "client-7", vec, text);
	cr_assert_str_eq(e[1], "HTTP_X_REQUEST_ID=client-7");
	cr_assert_str_eq(e[2], "REQCTX_PARENT_ID=client-7");
	cr_assert_null(e[3]);
}

Test(child, the_meta_variable_follows_the_configured_header)
{
	static const char *const cfg[] = { "REQCTX_HEADER=X-Correlation-Id", NULL };
	char *cgi[] = { "GATEWAY_INTERFACE=CGI/1.1", NULL };
	char *vec[8], text[RQ_CHILD_TEXT];
	char **e;

	test_config(cfg);
	e = env_of(cgi, "c-1", vec, text);
	cr_assert_str_eq(e[2], "HTTP_X_CORRELATION_ID=c-1");
}

Test(child, the_longest_id_and_header_fit_the_text)
{
	static const char *const cfg[] = {
		"REQCTX_HEADER=X-0123456789012345678901234567890123456789012345678901234567890", NULL
	};
	char *cgi[] = { "GATEWAY_INTERFACE=CGI/1.1", NULL };
	char id[REQCTX_ID_MAX + 1], *vec[8], text[RQ_CHILD_TEXT];
	char **e;

	test_config(cfg);
	cr_assert_eq(rq_cfg.hdr_len, 63);
	memset(id, 'z', REQCTX_ID_MAX);
	id[REQCTX_ID_MAX] = '\0';
	e = env_of(cgi, id, vec, text);
	cr_assert_eq(strlen(e[1]), sizeof(RQ_PARENT_VAR) + REQCTX_ID_MAX);
	cr_assert_eq(strlen(e[2]), 5 + 63 + 1 + REQCTX_ID_MAX);
	cr_assert_leq((size_t)(e[2] + strlen(e[2]) + 1 - text), sizeof(text));
}

Test(child, an_environment_beyond_the_bound_is_counted_as_too_big)
{
	static char *big[RQ_CHILD_ENV_MAX + 2];

	for (int i = 0; i <= RQ_CHILD_ENV_MAX; i++)
		big[i] = "A=1";
	cr_assert_eq(rq_child_env_count(big), -1);
	big[RQ_CHILD_ENV_MAX] = NULL;
	cr_assert_eq(rq_child_env_count(big), RQ_CHILD_ENV_MAX);
}

Test(child, a_shell_command_is_wrapped_with_its_quotes_escaped)
{
	const char *cmd = "echo 'it''s' \"$HOME\"";
	char out[256];

	cr_assert_eq(rq_child_cmd_size(cmd, 3), strlen(rq_child_cmd(cmd, "r-1", 3, out)) + 1);
	cr_assert_str_eq(out, "export REQCTX_PARENT_ID='r-1'; exec /bin/sh -c "
			      "'echo '\\''it'\\'''\\''s'\\'' \"$HOME\"'");
}

/* The wrapped command prints what the plain one does, and sees the ID. */
Test(child, a_wrapped_command_runs_as_the_original_does)
{
	static const char *const cmds[] = {
		"echo 'single' \"double\" $((1+2)) `echo back`; printf '%s\\n' \"a'b\"",
		"for i in 1 2; do echo \"$i\"; done; exit 3",
		"echo \"$REQCTX_PARENT_ID\"",
	};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char wrapped[512], plain_cmd[600], wrapped_cmd[1200];
		FILE *a, *b;
		char pa[256] = "", pb[256] = "";
		int sa, sb;

		rq_child_cmd(cmds[i], "r-42", 4, wrapped);
		snprintf(plain_cmd, sizeof(plain_cmd), "%s", cmds[i]);
		a = popen(plain_cmd, "r");
		snprintf(wrapped_cmd, sizeof(wrapped_cmd), "%s", wrapped);
		b = popen(wrapped_cmd, "r");
		cr_assert(a && b);
		cr_assert_geq(fread(pa, 1, sizeof(pa) - 1, a), 0);
		cr_assert_geq(fread(pb, 1, sizeof(pb) - 1, b), 0);
		sa = pclose(a);
		sb = pclose(b);
		if (i < 2) {
			cr_assert_str_eq(pb, pa, "%s", cmds[i]);
			cr_assert_eq(sb, sa, "%s", cmds[i]);
		} else {
			cr_assert_str_eq(pb, "r-42\n");
		}
	}
}

Test(child, only_a_valid_parent_id_is_taken)
{
	char out[REQCTX_ID_MAX + 1];
	char long_id[REQCTX_ID_MAX + 2];

	cr_assert_eq(rq_child_parent_id("abc-123", out), 7);
	cr_assert_str_eq(out, "abc-123");
	cr_assert_eq(rq_child_parent_id(NULL, out), 0);
	cr_assert_eq(rq_child_parent_id("", out), 0);
	cr_assert_eq(rq_child_parent_id("a b", out), 0);
	cr_assert_eq(rq_child_parent_id("x]\n[req:forged", out), 0);
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	cr_assert_eq(rq_child_parent_id(long_id, out), 0);
}

/* ---- under the library ------------------------------------------------------- */

static const char *dir;

static void setup(void)
{
	dir = tmpdir_new();
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(child_preload, .init = setup, .fini = teardown, .timeout = 60);

static const char *const hows[] = { "system", "popen", "posix_spawn", "posix_spawnp", "execl",
				    "execlp", "execle", "execv", "execvp", "execve", "cgi" };
#define NHOWS (sizeof(hows) / sizeof(hows[0]))

/*
 * Inside a request, every way of starting a program passes the ID: the
 * child's stdout, which is data for its parent, shows the variable it got
 * and nothing else; its stderr lines carry the request's ID. A CGI child
 * also gets HTTP_X_REQUEST_ID. A child started outside any request gets
 * nothing and logs as unknown.
 */
Test(child_preload, every_way_of_starting_a_child_in_a_request_passes_its_id)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=2", NULL };
	char out[256], err[256], want_out[2048] = "", want_err[2048] = "";
	char *argv[] = { (char *)bpath("progs/O2/spawn"), "req-77", NULL };

	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	cr_assert_eq(proc_wait(proc_start(argv, env, 1, out, err), 30000), 0, "%s", slurp(err, NULL));
	for (size_t i = 0; i < NHOWS; i++) {
		snprintf(want_out + strlen(want_out), sizeof(want_out) - strlen(want_out),
			 "%s req-77 %s\n", hows[i], strcmp(hows[i], "cgi") ? "-" : "req-77");
		snprintf(want_err + strlen(want_err), sizeof(want_err) - strlen(want_err),
			 "[req:req-77] %s err\n", hows[i]);
	}
	strcat(want_out, "outside - -\n");
	strcat(want_err, "[req:unknown] outside err\n");
	cr_assert_str_eq(slurp(out, NULL), want_out);
	cr_assert_str_eq(slurp(err, NULL), want_err);
}

/*
 * A program started with REQCTX_PARENT_ID runs in that request from its first
 * line: a shell's own message, written before it runs anything, carries it.
 */
Test(child_preload, a_child_starts_in_the_request_its_parent_id_names)
{
	static const char *const env[] = { "REQCTX_LOG_FDS=2", "REQCTX_PARENT_ID=p-5", NULL };
	char err[256];
	char *sh[] = { "/bin/sh", "-c", "nosuch-reqctx-cmd", NULL };

	snprintf(err, sizeof(err), "%s/err", dir);
	cr_assert_eq(proc_wait(proc_start(sh, env, 1, NULL, err), 30000), 127);
	cr_assert_str_eq(slurp(err, NULL), "[req:p-5] /bin/sh: 1: nosuch-reqctx-cmd: not found\n");
}

/* A hostile REQCTX_PARENT_ID is never used, never written. */
Test(child_preload, a_hostile_parent_id_is_ignored)
{
	static const char *const penv[] = { "REQCTX_PARENT_ID=a]b\n[req:forged] x", NULL };
	char err[256];
	char *sh[] = { "/bin/sh", "-c", "echo hi >&2", NULL };

	snprintf(err, sizeof(err), "%s/err", dir);
	cr_assert_eq(proc_wait(proc_start(sh, penv, 1, NULL, err), 30000), 0);
	cr_assert_str_eq(slurp(err, NULL), "[req:unknown] hi\n");
}
