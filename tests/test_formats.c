/*
 * Log formats (REQCTX_FORMAT, REQCTX_FIELD): what a line gets and where,
 * against the fake kernel, byte for byte, at every split of a line into two
 * writes and under every short write.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ctx.h"
#include "fdtab.h"
#include "io.h"
#include "lines.h"
#include "prefix.h"

enum { LOG = 200 };

static void setup_env(const char *const *env)
{
	test_config(env);
	rq_fd_init();
	fake_install();
	fake_reset(0);
	cr_assert_eq(rq_fd_set_log(LOG), 0);
	rq_ctx_clear();
}

static void fmt(const char *format)
{
	static char v[64];
	static const char *env[3];

	snprintf(v, sizeof(v), "REQCTX_FORMAT=%s", format);
	env[0] = v;
	env[1] = NULL;
	setup_env(env);
	cr_assert_str_empty(test_report_buf, "%s", test_report_buf);
}

static void setup(void)
{
	static const char *const env[] = { NULL };

	setup_env(env);
}

TestSuite(formats, .init = setup);

static ssize_t wr(const char *s, size_t n)
{
	struct iovec v = { (void *)s, n };
	struct rq_call k = { .how = RQ_WRITE };

	return rq_io_write(LOG, &v, 1, &k);
}

static ssize_t wrs(const char *s)
{
	return wr(s, strlen(s));
}

/* Writes all of s as a careful program does: again after short writes. */
static void write_all(const char *s, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = wr(s + done, n - done);

		cr_assert_gt(r, 0, "write returned %zd for %zu bytes", r, n - done);
		done += (size_t)r;
	}
}

static void in_request(const char *id)
{
	struct rq_ctx c = { .serial = rq_serial_next(), .len = (uint32_t)strlen(id) };

	strcpy(c.id, id);
	rq_ctx_set(&c);
}

static void out_is(const char *want)
{
	fk.out[fk.len] = '\0';
	cr_assert(fk.len == strlen(want) && !memcmp(fk.out, want, fk.len),
		  "\n--- got (%zu) ---\n%s\n--- want (%zu) ---\n%s", fk.len, fk.out, strlen(want),
		  want);
}

/* Each line written whole, one write(2) each; the output must be want. */
static void lines_are(const char *const *in, const char *want)
{
	for (; *in; in++)
		cr_assert_eq(wrs(*in), (ssize_t)strlen(*in), "%s", *in);
	out_is(want);
}

/* ---- configuration ---- */

Test(formats, bad_values_are_reported_and_the_defaults_used)
{
	static const char *const env[] = { "REQCTX_FORMAT=yaml", "REQCTX_FIELD=req id", NULL };
	static const char *const env2[] = { "REQCTX_FORMAT=logfmt", "REQCTX_FIELD=trace.id", NULL };
	static const char *const env3[] = { "REQCTX_FIELD=a\"b", NULL };
	char long_field[80];
	const char *env4[] = { long_field, NULL };

	setup_env(env);
	cr_assert_str_eq(test_report_buf,
			 "reqctx: REQCTX_FORMAT=\"yaml\" is not \"prefix\", \"logfmt\", \"json\" or "
			 "\"auto\"; using \"prefix\"\n"
			 "reqctx: REQCTX_FIELD=\"req id\" is not a field name of 1-64 characters "
			 "from A-Z a-z 0-9 _ . -; using \"request_id\"\n");
	cr_assert_eq(rq_cfg.format, RQ_FMT_PREFIX);
	cr_assert_str_eq(rq_cfg.field, "request_id");
	setup_env(env2);
	cr_assert_str_empty(test_report_buf);
	cr_assert_eq(rq_cfg.format, RQ_FMT_LOGFMT);
	cr_assert_str_eq(rq_cfg.field, "trace.id");
	setup_env(env3);
	cr_assert_str_eq(rq_cfg.field, "request_id");
	cr_assert_neq(strstr(test_report_buf, "REQCTX_FIELD"), NULL);
	snprintf(long_field, sizeof(long_field), "REQCTX_FIELD=%065d", 0);
	setup_env(env4);
	cr_assert_str_eq(rq_cfg.field, "request_id", "a 65-character field is refused");
	snprintf(long_field, sizeof(long_field), "REQCTX_FIELD=%064d", 0);
	setup_env(env4);
	cr_assert_eq(rq_cfg.field_len, 64);
}

/* ---- logfmt ---- */

Test(formats, logfmt_puts_the_pair_before_each_line)
{
	static const char *const in[] = { "boot\n", NULL };
	static const char *const in2[] = { "level=info msg=\"GET /\" status=200\n", "two\nlines\n",
					   NULL };

	fmt("logfmt");
	lines_are(in, "request_id=unknown boot\n");
	fake_reset(0);
	in_request("abc-1");
	lines_are(in2, "request_id=abc-1 level=info msg=\"GET /\" status=200\n"
		       "request_id=abc-1 two\nrequest_id=abc-1 lines\n");
}

Test(formats, logfmt_quotes_an_id_with_an_equals_sign)
{
	static const char *const in[] = { "x=1\n", NULL };

	fmt("logfmt");
	in_request("YWJj==");
	lines_are(in, "request_id=\"YWJj==\" x=1\n");
}

Test(formats, logfmt_leaves_a_line_that_has_the_key_alone)
{
	static const char *const in[] = {
		"request_id=abc x=1\n",            /* its own pair, same ID */
		"level=info request_id=mine\n",    /* the program's own, anywhere */
		"request_id=\"q d\" y=2\n",        /* quoted value */
		"msg=\"request_id=inside a value\"\n",
		"my_request_id=1 request_idx=2\n", /* other keys */
		"request_id\n",                    /* a word, not a key */
		"a=\"unterminated request_id=3\n",
		"tab\trequest_id=4\n",
		NULL
	};

	fmt("logfmt");
	in_request("abc");
	lines_are(in, "request_id=abc x=1\n"
		      "level=info request_id=mine\n"
		      "request_id=\"q d\" y=2\n"
		      "request_id=abc msg=\"request_id=inside a value\"\n"
		      "request_id=abc my_request_id=1 request_idx=2\n"
		      "request_id=abc request_id\n"
		      "request_id=abc a=\"unterminated request_id=3\n"
		      "tab\trequest_id=4\n");
}

Test(formats, the_field_name_is_configurable)
{
	static const char *const env[] = { "REQCTX_FORMAT=auto", "REQCTX_FIELD=http.request.id",
					   NULL };
	static const char *const in[] = { "{\"a\":1}\n", "{\"http.request.id\":\"x\"}\n",
					  "{\"request_id\":\"x\"}\n", NULL };

	setup_env(env);
	in_request("r9");
	lines_are(in, "{\"http.request.id\":\"r9\",\"a\":1}\n{\"http.request.id\":\"x\"}\n"
		      "{\"http.request.id\":\"r9\",\"request_id\":\"x\"}\n");
}

/* ---- json ---- */

Test(formats, json_puts_the_member_after_the_brace)
{
	static const char *const in[] = { "{\"level\":30,\"msg\":\"hi\"}\n", "  {\"a\":1}\n",
					  "\t{ \"a\" : 1 }\n", "{\"a\":1}\r\n", NULL };

	fmt("json");
	in_request("j1");
	lines_are(in, "{\"request_id\":\"j1\",\"level\":30,\"msg\":\"hi\"}\n"
		      "  {\"request_id\":\"j1\",\"a\":1}\n"
		      "\t{\"request_id\":\"j1\", \"a\" : 1 }\n"
		      "{\"request_id\":\"j1\",\"a\":1}\r\n");
}

Test(formats, an_empty_object_gets_the_member_without_a_comma)
{
	static const char *const in[] = { "{}\n", "{ }\n", " {\t} \n", NULL };

	fmt("json");
	in_request("e");
	lines_are(in, "{\"request_id\":\"e\"}\n{\"request_id\":\"e\" }\n"
		      " {\"request_id\":\"e\"\t} \n");
}

Test(formats, other_lines_fall_back_to_the_prefix)
{
	static const char *const in[] = { "plain text\n", "[1,2]\n", "{foo} bar\n", "\n",
					  "x {\"a\":1}\n", NULL };

	fmt("json");
	in_request("p");
	lines_are(in, "[req:p] plain text\n[req:p] [1,2]\n[req:p] {foo} bar\n[req:p] \n"
		      "[req:p] x {\"a\":1}\n");
}

Test(formats, auto_is_json_for_json_lines_and_the_prefix_for_the_rest)
{
	static const char *const in[] = { "{\"a\":1}\n", "text\n", "[req:au] own\n", NULL };

	fmt("auto");
	in_request("au");
	lines_are(in, "{\"request_id\":\"au\",\"a\":1}\n[req:au] text\n[req:au] own\n");
}

Test(formats, a_json_line_that_has_the_key_at_the_top_is_left_alone)
{
	static const char *const in[] = {
		"{\"request_id\":\"mine\",\"a\":1}\n",
		"{\"a\":1, \"request_id\" : 7}\n",
		"{\"a\":{\"request_id\":1}}\n",          /* nested: not the top level */
		"{\"a\":[{\"request_id\":1}],\"b\":2}\n",
		"{\"a\":\"request_id\"}\n",              /* a value */
		"{\"m\":\"\\\"request_id\\\":1\"}\n",    /* inside an escaped string */
		"{\"request\\u005fid\":1}\n",            /* another spelling: another key */
		"{\"request_idx\":1}\n",
		NULL
	};

	fmt("json");
	in_request("k");
	lines_are(in, "{\"request_id\":\"mine\",\"a\":1}\n"
		      "{\"a\":1, \"request_id\" : 7}\n"
		      "{\"request_id\":\"k\",\"a\":{\"request_id\":1}}\n"
		      "{\"request_id\":\"k\",\"a\":[{\"request_id\":1}],\"b\":2}\n"
		      "{\"request_id\":\"k\",\"a\":\"request_id\"}\n"
		      "{\"request_id\":\"k\",\"m\":\"\\\"request_id\\\":1\"}\n"
		      "{\"request_id\":\"k\",\"request\\u005fid\":1}\n"
		      "{\"request_id\":\"k\",\"request_idx\":1}\n");
}

Test(formats, outside_requests_lines_get_unknown_or_with_bare_nothing)
{
	static const char *const env[] = { "REQCTX_FORMAT=json", "REQCTX_UNKNOWN=bare", NULL };
	static const char *const in[] = { "{\"a\":1}\n", "text\n", NULL };

	fmt("json");
	lines_are(in, "{\"request_id\":\"unknown\",\"a\":1}\n[req:unknown] text\n");
	setup_env(env);
	lines_are(in, "{\"a\":1}\ntext\n");
}

/*
 * The decision is taken from the bytes of the call that starts the line:
 * written in two pieces cut at every point, each line gets exactly what
 * the rules give for its first piece.
 */
struct split_case {
	const char *line;
	const char *format;
	/* the output when the first piece has `from` bytes or more (the last entry that applies) */
	struct { size_t from; const char *want; } at[3];
};

static const struct split_case splits[] = {
	{ "{\"a\":1}\n", "json", { { 1, "{\"request_id\":\"s\",\"a\":1}\n" } } },
	/* a first piece "{" cannot show that the object is empty */
	{ "{}\n", "json", { { 1, "{\"request_id\":\"s\",}\n" }, { 2, "{\"request_id\":\"s\"}\n" } } },
	{ "{ }\n", "json", { { 1, "{\"request_id\":\"s\", }\n" }, { 3, "{\"request_id\":\"s\" }\n" } } },
	/* blanks alone do not make a JSON line */
	{ "  {\"a\":1}\n", "json",
	  { { 1, "[req:s]   {\"a\":1}\n" }, { 3, "  {\"request_id\":\"s\",\"a\":1}\n" } } },
	/* the key (up to its ':') beyond the first piece is not seen */
	{ "{\"a\":1,\"request_id\":\"x\"}\n", "json",
	  { { 1, "{\"request_id\":\"s\",\"a\":1,\"request_id\":\"x\"}\n" },
	    { 20, "{\"a\":1,\"request_id\":\"x\"}\n" } } },
	{ "k=1 request_id=x\n", "logfmt",
	  { { 1, "request_id=s k=1 request_id=x\n" }, { 15, "k=1 request_id=x\n" } } },
	/* an own prefix counts when the first piece holds all of it */
	{ "[req:s] own\n", "json", { { 1, "[req:s] [req:s] own\n" }, { 8, "[req:s] own\n" } } },
	{ "request_id=s own\n", "logfmt",
	  { { 1, "request_id=s request_id=s own\n" }, { 11, "request_id=s own\n" } } },
};

static const char *split_want(const struct split_case *c, size_t cut)
{
	const char *w = NULL;

	for (int i = 0; i < 3 && c->at[i].want; i++)
		if (cut >= c->at[i].from)
			w = c->at[i].want;
	return w;
}

Test(formats, every_split_of_a_line_into_two_writes_follows_its_first_piece)
{
	for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		const struct split_case *c = &splits[i];
		size_t len = strlen(c->line);

		for (size_t cut = 1; cut < len; cut++) {
			fmt(c->format);
			in_request("s");
			cr_assert_eq(wr(c->line, cut), (ssize_t)cut);
			cr_assert_eq(wr(c->line + cut, len - cut), (ssize_t)(len - cut));
			fk.out[fk.len] = '\0';
			cr_assert_str_eq(fk.out, split_want(c, cut), "%s cut at %zu", c->line, cut);
		}
	}
}

/*
 * Under every short write (the kernel taking 1, 2, ... bytes per call), the
 * bytes that reach it are those of one whole write: a text cut anywhere, or
 * a write that stopped before the brace or right after it, is finished as it
 * started, under the ID of the line's start.
 */
Test(formats, every_short_write_gives_the_bytes_of_a_whole_write)
{
	static const char *const cases[][2] = {
		{ "json", "  {\"level\":30}\n{}\ntext\n{\"request_id\":\"own\"}\n\t{ \"b\":[1,{}]}\n" },
		{ "logfmt", "a=1 b=\"x y\"\nrequest_id=own\nplain\n" },
		{ "auto", "{\"a\":1}\nx\n" },
	};
	char want[1024];

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *in = cases[c][1];
		size_t n = strlen(in);

		fmt(cases[c][0]);
		in_request("first");
		write_all(in, n);
		cr_assert_lt(fk.len, sizeof(want));
		memcpy(want, fk.out, fk.len);
		want[fk.len] = '\0';
		for (size_t cap = 1; cap <= strlen(want); cap++) {
			fmt(cases[c][0]);
			in_request("first");
			fk.cap = cap;
			write_all(in, n);
			fk.out[fk.len] = '\0';
			cr_assert_str_eq(fk.out, want, "%s cap %zu", cases[c][0], cap);
		}
	}
}

Test(formats, a_cut_inside_the_member_is_finished_under_the_lines_id)
{
	fmt("json");
	in_request("aaa");
	fk.cap = 5; /* "{\"req" */
	fk.fail_at = 2;
	fk.fail_errno = EAGAIN;
	cr_assert_eq(wrs("{\"x\":1}\n"), 1); /* only the brace is the caller's */
	cr_assert_eq(wrs("\"x\":1}\n"), -1);
	cr_assert_eq(errno, EAGAIN);
	in_request("bbb");
	fk.cap = (size_t)-1;
	fk.fail_at = 0;
	cr_assert_eq(wrs("\"x\":1}\n"), 7);
	cr_assert_eq(wrs("{}\n"), 3);
	out_is("{\"request_id\":\"aaa\",\"x\":1}\n{\"request_id\":\"bbb\"}\n");
}

Test(formats, a_write_stopped_before_the_brace_owes_the_member_after_it)
{
	fmt("json");
	in_request("lead");
	fk.cap = 1;
	cr_assert_eq(wrs("  {\"x\":1}\n"), 1);
	cr_assert_eq(rq_ln_skip(atomic_load(&rq_fd_peek(LOG)->line)), 2);
	fk.cap = (size_t)-1;
	in_request("other");
	cr_assert_eq(wrs(" "), 1); /* a write shorter than what is owed before the text */
	cr_assert_eq(wrs("{\"x\":1}\n"), 8);
	out_is("  {\"request_id\":\"lead\",\"x\":1}\n");
}

Test(formats, writev_lines_across_iovecs_are_judged_on_all_their_bytes)
{
	static const char *const parts[5] = { " ", "", "{", " \"a\":1,\"requ",
					      "est_id\":2}\n{\"b\":1}\n" };
	struct iovec v[5];
	struct rq_call k = { .how = RQ_WRITEV };
	size_t n = 0;

	for (int i = 0; i < 5; i++) {
		v[i].iov_base = (void *)parts[i];
		n += v[i].iov_len = strlen(parts[i]);
	}
	fmt("json");
	in_request("v");
	cr_assert_eq(rq_io_write(LOG, v, 5, &k), (ssize_t)n);
	cr_assert_eq(fk.calls, 1);
	out_is(" { \"a\":1,\"request_id\":2}\n{\"request_id\":\"v\",\"b\":1}\n");
}

Test(formats, thousands_of_json_lines_in_one_write_take_one_system_call)
{
	static char in[40000], want[120000];
	size_t n = 0, w = 0;

	fmt("json");
	in_request("many");
	for (int i = 0; i < 2000; i++) {
		n += (size_t)sprintf(in + n, "{\"i\":%d}\n", i);
		w += (size_t)sprintf(want + w, "{\"request_id\":\"many\",\"i\":%d}\n", i);
	}
	cr_assert_eq(wr(in, n), (ssize_t)n);
	cr_assert_eq(fk.calls, 1);
	out_is(want);
}

Test(formats, a_signal_handler_line_during_a_line_gets_its_own_member)
{
	char buf[RQ_TEXTS_MAX];
	struct rq_texts t;
	const char *outer;

	fmt("json");
	in_request("outer");
	outer = rq_prefix_acquire(buf, &t);
	cr_assert_eq(t.olen, strlen("\"request_id\":\"outer\","));
	in_request("inner");
	cr_assert_eq(wrs("{\"h\":1}\n"), 8);
	rq_prefix_release(outer);
	out_is("{\"request_id\":\"inner\",\"h\":1}\n");
}

/* ---- under the library: every stdio entry point and write(2), per format ---- */

#include "proc.h"

static const char *pdir;

static void psetup(void)
{
	pdir = tmpdir_new();
}

static void pteardown(void)
{
	tmpdir_remove(pdir);
}

TestSuite(formats_preload, .init = psetup, .fini = pteardown, .timeout = 60);

static char *run_prog(const char *prog, const char *arg, const char *format, int preload,
		      char **err)
{
	char path[256], fenv[64], o[256], e[256];
	char *argv[] = { path, (char *)arg, NULL };
	const char *env[] = { fenv, NULL };

	snprintf(path, sizeof(path), "%s/progs/%s", bdir(), prog);
	snprintf(fenv, sizeof(fenv), "REQCTX_FORMAT=%s", format);
	snprintf(o, sizeof(o), "%s/out", pdir);
	snprintf(e, sizeof(e), "%s/err", pdir);
	cr_assert_eq(proc_run(argv, env, preload, o, e), 0, "%s %s", prog, arg ? arg : "");
	*err = slurp(e, NULL);
	return slurp(o, NULL);
}

/*
 * The formats' rules on one whole line, for the simple lines of these
 * programs (none has the field but the one that starts with it).
 */
static void expect_line(char *out, size_t *w, const char *format, const char *id,
			const char *line, size_t len)
{
	size_t i = 0, j;

	if (!strcmp(format, "logfmt")) {
		*w += (size_t)sprintf(out + *w, "request_id=%s ", id);
	} else {
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		for (j = i + 1; i < len && line[i] == '{' && j < len && line[j] == ' '; j++)
			;
		if (i < len && line[i] == '{' && (line[j] == '"' || line[j] == '}')) {
			memcpy(out + *w, line, i + 1);
			*w += i + 1;
			if (strncmp(line + i + 1, "\"request_id\":", 13))
				*w += (size_t)sprintf(out + *w, line[j] == '}' ? "\"request_id\":\"%s\"" :
							  "\"request_id\":\"%s\",", id);
			line += i + 1;
			len -= i + 1;
		} else {
			*w += (size_t)sprintf(out + *w, "[req:%s] ", id);
		}
	}
	memcpy(out + *w, line, len);
	*w += len;
}

/* plain with each line as the library should put it out (skip: lines it does not see). */
static void expect_formatted(const char *plain, const char *got, const char *format,
			     const char *const *skip)
{
	char *want = malloc(strlen(plain) * 4 + 64);
	size_t w = 0;

	for (const char *l = plain; *l;) {
		const char *nl = strchr(l, '\n');
		size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
		int seen = 1;

		for (const char *const *s = skip; s && *s; s++)
			if (strlen(*s) == len && !memcmp(*s, l, len))
				seen = 0;
		if (seen)
			expect_line(want, &w, format, strstr(l, "outside") && strstr(l, "outside") < l + len
				    ? "unknown" : "abc", l, len);
		else
			memcpy(want + w, l, len), w += len;
		l += len;
	}
	want[w] = '\0';
	cr_assert_str_eq(got, want, "\n--- got ---\n%s--- want ---\n%s", got, want);
	free(want);
}

static void stdio_format(const char *variant, const char *format)
{
	/* glibc's headers inline the _unlocked character functions at -O2 */
	static const char *const inlined_text[] = { "u\n", "q\n", "s\n", NULL };
	static const char *const inlined_json[] = { "{\"u\":1}\n", "{\"q\":1}\n", "{\"s\":1}\n", NULL };
	int json = strcmp(format, "logfmt") != 0, o2 = !strcmp(variant, "O2");
	char prog[64], *plain_err, *err, *plain, *out;

	snprintf(prog, sizeof(prog), "%s/stdio_all", variant);
	plain = run_prog(prog, json ? "json" : NULL, format, 0, &plain_err);
	out = run_prog(prog, json ? "json" : NULL, format, 1, &err);
	cr_assert(strstr(plain_err, "psignal: Terminated\n"));
	expect_formatted(plain, out, format, o2 ? (json ? inlined_json : inlined_text) : NULL);
	expect_formatted(plain_err, err, format, NULL);
}

Test(formats_preload, every_stdio_entry_point_in_json_at_O0_and_O2)
{
	stdio_format("O0", "json");
	stdio_format("O2", "json");
}

Test(formats_preload, every_stdio_entry_point_in_auto_at_O0_and_O2)
{
	stdio_format("O0", "auto");
	stdio_format("O2", "auto");
}

Test(formats_preload, every_stdio_entry_point_in_logfmt_at_O0_and_O2)
{
	stdio_format("O0", "logfmt");
	stdio_format("O2", "logfmt");
}

/* write(2) and writev, whole lines and lines in pieces: exact bytes in each format. */
Test(formats_preload, write_and_writev_lines_in_each_format)
{
	static const char plain[] = "{\"w\":1}\n{\"a\":2}\n  {\"b\":3}\n{\"c\":4}\n{}\n{ }\ntext\n"
				    "level=info request_id=mine\n{\"request_id\":\"mine\"}\n{\"f\":5}\n";
	static const char json[] =
		"{\"request_id\":\"abc\",\"w\":1}\n{\"request_id\":\"abc\",\"a\":2}\n"
		"[req:abc]   {\"b\":3}\n{\"request_id\":\"abc\",\"c\":4}\n{\"request_id\":\"abc\"}\n"
		"{\"request_id\":\"abc\" }\n[req:abc] text\n[req:abc] level=info request_id=mine\n"
		"{\"request_id\":\"mine\"}\n{\"request_id\":\"abc\",\"f\":5}\n";
	static const char logfmt[] =
		"request_id=abc {\"w\":1}\nrequest_id=abc {\"a\":2}\nrequest_id=abc   {\"b\":3}\n"
		"request_id=abc {\"c\":4}\nrequest_id=abc {}\nrequest_id=abc { }\nrequest_id=abc text\n"
		"level=info request_id=mine\nrequest_id=abc {\"request_id\":\"mine\"}\n"
		"request_id=abc {\"f\":5}\n";
	char *err;

	for (int v = 0; v < 2; v++) {
		const char *prog = v ? "O2/lines" : "O0/lines";

		run_prog(prog, "formats", "json", 0, &err);
		cr_assert_str_eq(err, plain);
		run_prog(prog, "formats", "json", 1, &err);
		cr_assert_str_eq(err, json);
		run_prog(prog, "formats", "auto", 1, &err);
		cr_assert_str_eq(err, json);
		run_prog(prog, "formats", "logfmt", 1, &err);
		cr_assert_str_eq(err, logfmt);
	}
}

/* ---- real JSON and logfmt loggers, under keep-alive load ---- */

#include "servers.h"

#define PYTHON "/usr/bin/python3"
#define NODE "/usr/bin/node"
#define JQ "/usr/bin/jq"
/* Requests and keep-alive connections per loadcheck run. */
#define LOAD_REQUESTS 2000
#define LOAD_CONNS 32

static void ssetup(void)
{
	srv_setup();
}

static void steardown(void)
{
	srv_teardown();
}

TestSuite(formats_servers, .init = ssetup, .fini = steardown, .timeout = 150);

/* Runs jq with args on file; returns its exit status, its stdout in *out. */
static int jq(const char *const *args, const char *file, char **out)
{
	char *argv[16] = { JQ }, o[256], e[256];
	int n = 1, st;

	require(JQ, "jq");
	snprintf(o, sizeof(o), "%s/jq.out", srv_dir);
	snprintf(e, sizeof(e), "%s/jq.err", srv_dir);
	for (; *args && n < 14; args++)
		argv[n++] = (char *)*args;
	argv[n++] = (char *)file;
	argv[n] = NULL;
	st = proc_run(argv, NULL, 0, o, e);
	*out = slurp(o, NULL);
	return st;
}

static int count_lines(const char *path)
{
	char *t = slurp(path, NULL);
	int n = 0;

	for (char *p = t; (p = strchr(p, '\n')); p++)
		n++;
	free(t);
	return n;
}

/*
 * Every line of the log is a JSON object (jq parses the file as a stream of
 * JSON values: as many as there are lines) whose field is a string.
 */
static void all_json_with_field(const char *log)
{
	static const char *const count[] = { "-s", "length", NULL };
	static const char *const check[] = {
		"-e", "-s", "length > 0 and all(.[]; type == \"object\" and (.request_id | type) == \"string\")",
		NULL
	};
	char *out, want[32];

	cr_assert_eq(jq(check, log, &out), 0, "jq: %s\n%s", out, tail_of(log));
	cr_assert_str_eq(out, "true\n");
	cr_assert_eq(jq(count, log, &out), 0);
	snprintf(want, sizeof(want), "%d\n", count_lines(log));
	cr_assert_str_eq(out, want, "%s is not one JSON value per line", log);
}

static int python_start(const char *format, const char *err)
{
	static char script[512], fenv[64];
	char *argv[] = { PYTHON, script, (char *)format, NULL };
	const char *env[] = { fenv, "PYTHONUNBUFFERED=1", NULL };

	require(PYTHON, "python3");
	snprintf(script, sizeof(script), "%s/../tests/fixtures/pylog_srv.py", bdir());
	snprintf(fenv, sizeof(fenv), "REQCTX_FORMAT=%s", format);
	return spawn_and_read_port(argv, env, 1, err);
}

/*
 * Python's logging with a JSON formatter (json.dumps of a dict) in a
 * threaded keep-alive server: 2000 requests over 32 connections, each
 * logged in one line that must be, whole and strictly, a JSON object whose
 * request_id is its request's ID (the client's or the echoed one); jq finds
 * a string request_id in every line of the log, start-up's included.
 */
Test(formats_servers, python_logging_json_lines_carry_their_request_id)
{
	const char *log = strdup(path_in(srv_dir, "py.err"));
	const char *const lv[] = { log, NULL };
	const char *const extra[] = { "--format", "json", NULL };
	int port = python_start("json", log);
	struct run r = loadcheck_ext(port, LOAD_REQUESTS, LOAD_CONNS, "0.5", "/t/", 1,
				     path_in(srv_dir, "ids"), lv, extra);
	char *text;

	expect_clean(&r, LOAD_REQUESTS, "python json", 1);
	all_json_with_field(log);
	text = slurp(log, NULL);
	cr_assert_eq(strncmp(text, "{\"request_id\":\"unknown\",\"time\":", 31), 0, "%.200s", text);
	free(text);
}

/*
 * The same server with a logfmt formatter and REQCTX_FORMAT=logfmt: every
 * line parses strictly as logfmt with the request's ID under request_id,
 * and jq, splitting each line without a regex, finds request_id first.
 */
Test(formats_servers, python_logging_logfmt_lines_carry_their_request_id)
{
	static const char *const first_key[] = {
		"-R", "-e", "-s",
		"split(\"\\n\") | map(select(length > 0)) | length > 0 and "
		"all(.[]; (split(\" \") | .[0] | split(\"=\") | .[0]) == \"request_id\")",
		NULL
	};
	const char *log = strdup(path_in(srv_dir, "py.err"));
	const char *const lv[] = { log, NULL };
	const char *const extra[] = { "--format", "logfmt", NULL };
	int port = python_start("logfmt", log);
	struct run r = loadcheck_ext(port, LOAD_REQUESTS, LOAD_CONNS, "0.5", "/t/", 1,
				     path_in(srv_dir, "ids"), lv, extra);
	char *out, *text;

	expect_clean(&r, LOAD_REQUESTS, "python logfmt", 1);
	cr_assert_eq(jq(first_key, log, &out), 0, "jq: %s", out);
	cr_assert_str_eq(out, "true\n");
	text = slurp(log, NULL);
	cr_assert_eq(strncmp(text, "request_id=unknown level=info logger=srv msg=\"listening on port ",
			     strlen("request_id=unknown level=info logger=srv msg=\"listening on port ")),
		     0, "%.200s", text);
	free(text);
}

/*
 * pino (installed by npm ci from tests/node/pino's lock into the build
 * tree) in a Node http server: two lines per request, one of them from a
 * timer, over keep-alive connections; each line a JSON object with its
 * request's ID, and jq finds a string request_id in every line.
 */
Test(formats_servers, pino_json_lines_carry_their_request_id)
{
	static char script[512], mods[512], pj[600];
	const char *log = strdup(path_in(srv_dir, "pino.err"));
	const char *const lv[] = { log, NULL };
	const char *const extra[] = { "--format", "json", NULL };
	char *argv[] = { NODE, script, mods, NULL };
	const char *env[] = { "REQCTX_FORMAT=json", NULL };
	struct run r;
	int port;

	require(NODE, "nodejs");
	snprintf(script, sizeof(script), "%s/../tests/node/pino_srv.js", bdir());
	snprintf(mods, sizeof(mods), "%s/npm/node_modules", bdir());
	snprintf(pj, sizeof(pj), "%s/pino/package.json", mods);
	cr_assert_eq(access(pj, R_OK), 0,
		     "pino is not installed in %s: make %s/npm/.installed (npm ci from "
		     "tests/node/pino)", mods, bdir());
	cr_assert_eq(access(bpath("reqctx-adapters/node/reqctx.node"), R_OK), 0,
		     "the Node adapter is not built (apt-get install -y libnode-dev)");
	port = spawn_and_read_port(argv, env, 1, log);
	r = loadcheck_ext(port, LOAD_REQUESTS, 16, "0.5", "/t/", 2, path_in(srv_dir, "ids"), lv,
			  extra);
	expect_clean(&r, LOAD_REQUESTS, "pino", 2);
	all_json_with_field(log);
}
