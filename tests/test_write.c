/*
 * The write path against a fake kernel: log prefixes and response headers,
 * with every possible short write, EAGAIN and errno checked byte for byte.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "carry.h"
#include "common.h"
#include "carry.h"
#include "conn.h"
#include "ctx.h"
#include "fdtab.h"
#include "io.h"
#include "iowrite.h"
#include "prefix.h"
#include "reqctx.h"

enum { LOG = 200, CONN = 201, PLAIN = 202 };

static void setup_env(const char *const *env)
{
	test_config(env);
	rq_fd_init();
	fake_install();
	fake_reset(0);
	cr_assert_eq(rq_fd_set_log(LOG), 0);
	cr_assert_eq(rq_fd_set_conn(CONN), 0);
	rq_fd_forget(PLAIN);
	rq_ctx_clear();
}

static void setup(void)
{
	static const char *const env[] = { NULL };

	setup_env(env);
}

TestSuite(logs, .init = setup);
TestSuite(conn, .init = setup);

static ssize_t wrs(int fd, const char *s)
{
	return wr(fd, s, strlen(s));
}

static void in_request(const char *id)
{
	struct rq_ctx c = { .serial = rq_serial_next(), .len = (uint32_t)strlen(id) };

	strcpy(c.id, id);
	rq_ctx_set(&c);
}

static void out_is(const char *want)
{
	fake_out_is(want, 300);
}

Test(logs, a_line_gets_the_prefix_in_the_same_syscall)
{
	in_request("abc");
	errno = 1234;
	cr_assert_eq(wrs(LOG, "hello\n"), 6);
	cr_assert_eq(errno, 1234, "errno changed on success");
	cr_assert_eq(fk.calls, 1);
	out_is("[req:abc] hello\n");
}

Test(logs, outside_requests_lines_say_unknown)
{
	cr_assert_eq(wrs(LOG, "boot\n"), 5);
	out_is("[req:unknown] boot\n");
}

Test(logs, partial_writes_join_into_one_line_with_the_id_of_its_start)
{
	in_request("a");
	cr_assert_eq(wrs(LOG, "hel"), 3);
	in_request("b");
	cr_assert_eq(wrs(LOG, "lo\nx"), 4);
	cr_assert_eq(wrs(LOG, "y\n"), 2);
	out_is("[req:a] hello\n[req:b] xy\n");
}

Test(logs, several_lines_in_one_write)
{
	in_request("r1");
	cr_assert_eq(wrs(LOG, "one\ntwo\n\nthree"), 14);
	cr_assert_eq(fk.calls, 1);
	out_is("[req:r1] one\n[req:r1] two\n[req:r1] \n[req:r1] three");
}

Test(logs, nul_bytes_pass_unchanged)
{
	static const char data[] = "a\0b\nc\0\n";

	in_request("n");
	cr_assert_eq(wr(LOG, data, sizeof(data) - 1), (ssize_t)sizeof(data) - 1);
	cr_assert_eq(fk.len, 2 * 8 + sizeof(data) - 1);
	cr_assert_eq(memcmp(fk.out, "[req:n] a\0b\n[req:n] c\0\n", fk.len), 0);
}

/*
 * A gzip member written at a line start (nginx's access_log ... gzip): the
 * stream is compressed, so that write and every later one go out as they
 * are, a newline byte inside them or not, in one call each.
 */
Test(logs, a_gzip_stream_is_left_exactly_as_written)
{
	static const char gz[] = "\x1f\x8b\x08\0\0\0\0\0\0\x03\n\x4b\x04\0";
	static const char more[] = "\x1f\x8b\x08\0\x01\n\x02";

	in_request("z");
	cr_assert_eq(wr(LOG, gz, sizeof(gz) - 1), (ssize_t)sizeof(gz) - 1);
	cr_assert_eq(wr(LOG, more, sizeof(more) - 1), (ssize_t)sizeof(more) - 1);
	cr_assert_eq(wrs(LOG, "text\n"), 5);
	cr_assert_eq(fk.calls, 3);
	cr_assert_eq(fk.len, sizeof(gz) - 1 + sizeof(more) - 1 + 5);
	cr_assert_eq(memcmp(fk.out, gz, sizeof(gz) - 1), 0);
	cr_assert_eq(memcmp(fk.out + sizeof(gz) - 1, more, sizeof(more) - 1), 0);
	cr_assert_eq(memcmp(fk.out + sizeof(gz) - 1 + sizeof(more) - 1, "text\n", 5), 0);
	cr_assert_eq(rq_fd_flags(rq_fd_peek(LOG)), 0, "the fd is a log stream still");
}

/* The same bytes in the middle of a line, or without gzip's method byte, are text. */
Test(logs, gzip_magic_after_a_line_start_is_text)
{
	static const char mid[] = "x\x1f\x8b\x08\n";
	static const char nodeflate[] = "\x1f\x8b\x07\n";

	in_request("t");
	cr_assert_eq(wrs(LOG, "a"), 1);
	cr_assert_eq(wr(LOG, mid, sizeof(mid) - 1), (ssize_t)sizeof(mid) - 1);
	cr_assert_eq(wr(LOG, nodeflate, sizeof(nodeflate) - 1), (ssize_t)sizeof(nodeflate) - 1);
	out_is("[req:t] ax\x1f\x8b\x08\n[req:t] \x1f\x8b\x07\n");
	cr_assert_eq(rq_fd_flags(rq_fd_peek(LOG)), RQ_FD_LOG);
}

Test(logs, long_line_gets_one_prefix)
{
	static char line[50001];

	memset(line, 'x', 50000);
	line[49999] = '\n';
	in_request("long");
	cr_assert_eq(wr(LOG, line, 50000), 50000);
	cr_assert_eq(fk.len, 50000 + 11);
	cr_assert_eq(memcmp(fk.out, "[req:long] xxx", 14), 0);
	cr_assert_eq(memchr(fk.out + 11, '[', 50000), NULL);
}

Test(logs, many_lines_in_one_write_all_get_prefixes)
{
	char in[2000], want[8000];
	size_t n = 0, w = 0;

	in_request("m");
	for (int i = 0; i < 300; i++) {
		n += (size_t)sprintf(in + n, "%d\n", i % 10);
		w += (size_t)sprintf(want + w, "[req:m] %d\n", i % 10);
	}
	cr_assert_eq(wr(LOG, in, n), (ssize_t)n);
	out_is(want);
}

Test(logs, every_short_write_keeps_bytes_exact)
{
	static const char in[] = "first line\nsecond\nthird without end";
	static const char want[] =
		"[req:id7] first line\n[req:id7] second\n[req:id7] third without end";

	for (size_t cap = 1; cap <= sizeof(want); cap++) {
		fake_reset(cap);
		setup();
		fk.cap = cap;
		in_request("id7");
		write_all(LOG, in, sizeof(in) - 1);
		out_is(want);
	}
}

Test(logs, eagain_before_anything_leaves_state_intact)
{
	in_request("e");
	fk.fail_at = 1;
	fk.fail_errno = EAGAIN;
	cr_assert_eq(wrs(LOG, "line\n"), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(wrs(LOG, "line\n"), 5);
	out_is("[req:e] line\n");
}

Test(logs, eagain_after_part_of_a_prefix_resumes_it)
{
	in_request("e2");
	fk.cap = 3;      /* first call: "[re" */
	fk.fail_at = 2;  /* the retry for the rest: EAGAIN */
	fk.fail_errno = EAGAIN;
	cr_assert_eq(wrs(LOG, "ab\n"), -1);
	cr_assert_eq(errno, EAGAIN);
	fk.cap = (size_t)-1;
	cr_assert_eq(wrs(LOG, "ab\n"), 3);
	out_is("[req:e2] ab\n");
}

/*
 * An event loop (libuv, Node's stdout on a pipe) writes what the kernel
 * refused later, from the fd's epoll event: that event resumes the context
 * of the writer whose write stalled, until a write goes out whole.
 */
Test(logs, a_write_left_pending_goes_out_later_in_its_writers_request)
{
	in_request("w1");
	fk.fail_at = 1;
	fk.fail_errno = EAGAIN;
	cr_assert_eq(wrs(LOG, "line\n"), -1);
	cr_assert_eq(errno, EAGAIN);
	in_request("other");
	rq_ctx_clear();
	errno = 77;
	rq_fd_enter(LOG);
	cr_assert_str_eq(reqctx_id(), "w1");
	cr_assert_eq(errno, 77);
	cr_assert_eq(wrs(LOG, "line\n"), 5);
	out_is("[req:w1] line\n");
	in_request("other");
	rq_fd_enter(LOG);
	cr_assert_str_eq(reqctx_id(), "unknown", "a write that went out whole forgets its writer");
}

Test(logs, a_short_write_keeps_its_writer_for_the_rest)
{
	in_request("s1");
	fk.cap = 11; /* "[req:s1] li" */
	cr_assert_eq(wrs(LOG, "line\n"), 2);
	fk.cap = (size_t)-1;
	in_request("s2");
	rq_fd_enter(LOG);
	cr_assert_str_eq(reqctx_id(), "s1");
	cr_assert_eq(wrs(LOG, "ne\n"), 3);
	out_is("[req:s1] line\n");
	in_request("s3");
	rq_fd_enter(LOG);
	cr_assert_str_eq(reqctx_id(), "unknown");
}

Test(logs, errors_are_libc_s)
{
	fk.fail_at = 1;
	fk.fail_errno = EBADF;
	cr_assert_eq(wrs(LOG, "x\n"), -1);
	cr_assert_eq(errno, EBADF);
}

Test(logs, zero_length_writes_reach_the_kernel)
{
	cr_assert_eq(wr(LOG, "", 0), 0);
	cr_assert_eq(fk.calls, 1);
	out_is("");
}

Test(logs, other_fds_pass_through_untouched)
{
	cr_assert_eq(wrs(PLAIN, "data\n"), 5);
	out_is("data\n");
}

Test(logs, writev_lines_across_iovecs)
{
	struct iovec v[3] = { { "ab", 2 }, { "c\nd", 3 }, { "e\n", 2 } };
	struct rq_call k = { .how = RQ_WRITEV };

	in_request("v");
	cr_assert_eq(rq_io_write(LOG, v, 3, &k), 7);
	cr_assert_eq(fk.calls, 1);
	out_is("[req:v] abc\n[req:v] de\n");
}

Test(logs, bare_mode_leaves_lines_outside_requests_alone)
{
	static const char *const env[] = { "REQCTX_UNKNOWN=bare", NULL };

	setup_env(env);
	cr_assert_eq(wrs(LOG, "boot\n"), 5);
	in_request("q");
	cr_assert_eq(wrs(LOG, "in\n"), 3);
	out_is("boot\n[req:q] in\n");
}

Test(logs, configured_prefix_format)
{
	static const char *const env[] = { "REQCTX_PREFIX=rid=%s 100%% | ", NULL };

	setup_env(env);
	in_request("f");
	cr_assert_eq(wrs(LOG, "x\n"), 2);
	out_is("rid=f 100% | x\n");
}

/* ---- issue 16: one line state, cut prefixes, own prefixes, many lines ---- */

Test(logs, a_prefix_cut_by_the_kernel_is_finished_as_it_started_under_another_id)
{
	fk.cap = 5; /* "[req:" */
	fk.fail_at = 2;
	fk.fail_errno = EAGAIN;
	cr_assert_eq(wrs(LOG, "boot\n"), -1);
	cr_assert_eq(errno, EAGAIN);
	in_request("23456");
	fk.cap = (size_t)-1;
	cr_assert_eq(wrs(LOG, "boot\n"), 5);
	cr_assert_eq(wrs(LOG, "next\n"), 5);
	out_is("[req:unknown] boot\n[req:23456] next\n");
}

Test(logs, a_cut_prefix_is_finished_whatever_the_next_write_is)
{
	/* cut twice inside the same prefix, then a writev, then bare mode's plain path */
	static const char *const env[] = { "REQCTX_UNKNOWN=bare", NULL };

	setup_env(env);
	in_request("first-id");
	fk.cap = 3;
	fk.fail_at = 2;
	fk.fail_errno = EAGAIN;
	cr_assert_eq(wrs(LOG, "x\n"), -1);
	fk.calls = 0;
	fk.cap = 4;
	fk.fail_at = 2;
	in_request("second");
	cr_assert_eq(wrs(LOG, "x\n"), -1);
	rq_ctx_clear(); /* bare: no prefix of its own, but the cut one is finished */
	fk.cap = (size_t)-1;
	fk.fail_at = 0;
	cr_assert_eq(wrs(LOG, "x\n"), 2);
	cr_assert_eq(wrs(LOG, "y\n"), 2);
	out_is("[req:first-id] x\ny\n");
}

Test(logs, a_line_that_starts_with_its_own_prefix_gets_no_second_one)
{
	in_request("abc123");
	cr_assert_eq(wrs(LOG, "[req:abc123] incoming\n"), 22);
	cr_assert_eq(fk.calls, 1);
	cr_assert_eq(wrs(LOG, "[req:other] not ours\n"), 21);
	cr_assert_eq(wrs(LOG, "one\n[req:abc123] two\n[req:abc123]three\n"), 39);
	out_is("[req:abc123] incoming\n[req:abc123] [req:other] not ours\n[req:abc123] one\n"
	       "[req:abc123] two\n[req:abc123] [req:abc123]three\n");
}

Test(logs, an_own_prefix_split_across_writes_gets_the_prefix_again)
{
	struct iovec v[2] = { { "[req:ab", 7 }, { "c] in one writev\n", 17 } };
	struct rq_call k = { .how = RQ_WRITEV };

	in_request("abc");
	/* the bytes of one call count, across its iovecs */
	cr_assert_eq(rq_io_write(LOG, v, 2, &k), 24);
	/* a line whose first write holds only part of the prefix is prefixed */
	cr_assert_eq(wrs(LOG, "[req:ab"), 7);
	cr_assert_eq(wrs(LOG, "c] split\n"), 9);
	out_is("[req:abc] in one writev\n[req:abc] [req:abc] split\n");
}

Test(logs, an_own_prefix_line_cut_short_goes_on_unprefixed)
{
	in_request("cut");
	fk.cap = 4;
	write_all(LOG, "[req:cut] mine\nand more\n", 24);
	out_is("[req:cut] mine\n[req:cut] and more\n");
}

/* The line state a handler would see, checked at the end of each call. */
static void handler_line(void)
{
	int e = errno;

	cr_assert_eq(wrs(LOG, "sig\n"), 4);
	errno = e;
}

Test(logs, a_handler_at_the_end_of_a_partial_write_sees_the_line_as_the_kernel_has_it)
{
	in_request("m");
	fk.hook = handler_line; /* after every system call, as a signal at syscall exit */
	cr_assert_eq(wrs(LOG, "main "), 5);
	cr_assert_eq(wrs(LOG, "line"), 4);
	cr_assert_eq(wrs(LOG, " end\n"), 5);
	cr_assert_eq(wrs(LOG, "whole\n"), 6);
	out_is("[req:m] main sig\n"
	       "[req:m] linesig\n"
	       "[req:m]  end\n"
	       "[req:m] sig\n"
	       "[req:m] whole\n"
	       "[req:m] sig\n");
}

/* n short lines "l<i>\n" into in; the prefixed text into want. Returns in's length. */
static size_t many_lines(char *in, char *want, size_t *wlen, int n, const char *pfx)
{
	size_t len = 0, w = 0;

	for (int i = 0; i < n; i++) {
		int k = sprintf(in + len, "l%d\n", i);

		w += (size_t)sprintf(want + w, "%s%.*s", pfx, k, in + len);
		len += (size_t)k;
	}
	*wlen = w;
	return len;
}

Test(logs, thousands_of_lines_in_one_write_take_one_system_call)
{
	static char in[1 << 16], want[1 << 18];
	size_t n, w;

	in_request("many");
	n = many_lines(in, want, &w, 5000, "[req:many] ");
	cr_assert_eq(wr(LOG, in, n), (ssize_t)n);
	cr_assert_eq(fk.calls, 1, "%d calls", fk.calls);
	cr_assert_leq(fk.max_iov, 1024);
	cr_assert_eq(fk.len, w);
	cr_assert_eq(memcmp(fk.out, want, w), 0);
}

Test(logs, a_writev_of_1024_iovecs_of_lines_takes_one_system_call)
{
	static struct iovec v[1024];
	static char want[1 << 16];
	size_t w = 0;
	struct rq_call k = { .how = RQ_WRITEV };

	for (int i = 0; i < 1024; i++) {
		v[i].iov_base = i % 2 ? "odd\n" : "even ";
		v[i].iov_len = i % 2 ? 4 : 5;
		w += (size_t)sprintf(want + w, "%s%s", i % 2 ? "" : "[req:v] ", (char *)v[i].iov_base);
	}
	in_request("v");
	cr_assert_eq(rq_io_write(LOG, v, 1024, &k), 1024 / 2 * 9);
	cr_assert_eq(fk.calls, 1);
	cr_assert_leq(fk.max_iov, 1024);
	cr_assert_eq(fk.len, w);
	cr_assert_eq(memcmp(fk.out, want, w), 0);
}

Test(logs, long_lines_mixed_with_short_ones_keep_their_bytes_in_one_call)
{
	static char in[1 << 20], want[1 << 21];
	size_t n = 0, w = 0;

	in_request("mix");
	for (int i = 0; i < 600; i++) {
		size_t len = i % 3 ? 10 : 1000 + (size_t)i;

		memset(in + n, 'a' + i % 26, len - 1);
		in[n + len - 1] = '\n';
		w += (size_t)sprintf(want + w, "[req:mix] ");
		memcpy(want + w, in + n, len);
		w += len;
		n += len;
	}
	cr_assert_eq(wr(LOG, in, n), (ssize_t)n);
	cr_assert_eq(fk.calls, 1, "%d calls", fk.calls);
	cr_assert_eq(fk.len, w);
	cr_assert_eq(memcmp(fk.out, want, w), 0);
}

Test(logs, a_write_of_511_long_lines_takes_one_system_call)
{
	static char in[511 * 2000], want[511 * 2020];
	size_t n = 0, w = 0;

	in_request("511");
	for (int i = 0; i < 511; i++) {
		memset(in + n, 'a' + i % 26, 1999);
		in[n + 1999] = '\n';
		w += (size_t)sprintf(want + w, "[req:511] ");
		memcpy(want + w, in + n, 2000);
		w += 2000;
		n += 2000;
	}
	cr_assert_eq(wr(LOG, in, n), (ssize_t)n);
	cr_assert_eq(fk.calls, 1, "%d calls", fk.calls);
	cr_assert_eq(fk.len, w);
	cr_assert_eq(memcmp(fk.out, want, w), 0);
}

/* After every system call of a big write: it ended after a line end. */
static void ends_at_a_line_end(void)
{
	cr_assert_eq(fk.out[fk.len - 1], '\n', "a system call ended inside a line at byte %zu", fk.len);
}

Test(logs, a_write_bigger_than_a_plan_goes_out_in_whole_lines_with_the_callers_count)
{
	static char in[4 << 20], want[8 << 20];
	size_t n, w;

	in_request("big-write-id");
	n = many_lines(in, want, &w, 300000, "[req:big-write-id] ");
	fk.hook = ends_at_a_line_end;
	cr_assert_eq(wr(LOG, in, n), (ssize_t)n);
	cr_assert_gt(fk.calls, 1);
	cr_assert_eq(fk.len, w);
	cr_assert_eq(memcmp(fk.out, want, w), 0);
}

Test(logs, every_short_write_of_a_many_line_write_keeps_bytes_exact)
{
	static char in[4096], want[16384];
	size_t n, w;

	for (size_t cap = 1; cap < 200; cap += 7) {
		setup();
		fk.cap = cap;
		in_request("s");
		n = many_lines(in, want, &w, 200, "[req:s] ");
		write_all(LOG, in, n);
		cr_assert_eq(fk.len, w, "cap %zu", cap);
		cr_assert_eq(memcmp(fk.out, want, w), 0, "cap %zu", cap);
	}
}

Test(logs, a_failure_after_some_lines_returns_the_callers_count_and_keeps_errno)
{
	static char in[2 << 20], want[4 << 20];
	size_t n, w;
	ssize_t r;

	in_request("f");
	n = many_lines(in, want, &w, 200000, "[req:f] ");
	fk.fail_at = 2; /* the second system call of the write */
	fk.fail_errno = EAGAIN;
	errno = 321;
	r = wr(LOG, in, n);
	cr_assert_gt(r, 0);
	cr_assert_lt((size_t)r, n);
	cr_assert_eq(errno, 321);
	cr_assert_eq(in[r - 1], '\n', "the first system call ended inside a line");
	write_all(LOG, in + r, n - (size_t)r);
	cr_assert_eq(fk.len, w);
	cr_assert_eq(memcmp(fk.out, want, w), 0);
}

/* ---- connections ---- */

static void reads(const char *s)
{
	struct iovec v = { (void *)s, strlen(s) };

	rq_conn_read(CONN, &v, 1, (ssize_t)strlen(s));
}

static const char ok_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

Test(conn, reading_a_request_makes_it_the_context)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: abc123\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), "abc123");
}

Test(conn, generated_ids_are_uuids)
{
	reads("GET / HTTP/1.1\r\n\r\n");
	cr_assert_eq(strlen(reqctx_id()), 36);
	cr_assert_eq(reqctx_id()[14], '4');
}

Test(conn, header_goes_after_the_status_line)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: abc123\r\n\r\n");
	errno = 77;
	cr_assert_eq(wrs(CONN, ok_resp), (ssize_t)strlen(ok_resp));
	cr_assert_eq(errno, 77);
	cr_assert_eq(fk.calls, 1);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: abc123\r\nContent-Length: 2\r\n\r\nok");
}

Test(conn, response_that_has_the_header_is_left_alone)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nX-REQUEST-ID: theirs\r\nContent-Length: 0\r\n\r\n";

	reads("GET / HTTP/1.1\r\nX-Request-Id: abc\r\n\r\n");
	cr_assert_eq(wrs(CONN, r), (ssize_t)strlen(r));
	out_is(r);
}

Test(conn, head_split_over_writes_gets_it_before_the_blank_line)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: s\r\n\r\n");
	cr_assert_eq(wrs(CONN, "HTTP/1.1 200 OK\r\n"), 17);
	cr_assert_eq(wrs(CONN, "Content-Length: 2\r\n"), 19);
	cr_assert_eq(wrs(CONN, "\r\nok"), 4);
	out_is("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: s\r\n\r\nok");
}

Test(conn, every_short_write_keeps_bytes_exact)
{
	static const char want[] =
		"HTTP/1.1 200 OK\r\nX-Request-Id: abc\r\nContent-Length: 2\r\n\r\nok"
		"HTTP/1.1 200 OK\r\nX-Request-Id: def\r\nContent-Length: 2\r\n\r\nok";

	for (size_t cap = 1; cap <= sizeof(want); cap++) {
		setup();
		fk.cap = cap;
		reads("GET / HTTP/1.1\r\nX-Request-Id: abc\r\n\r\n");
		write_all(CONN, ok_resp, strlen(ok_resp));
		reads("GET / HTTP/1.1\r\nX-Request-Id: def\r\n\r\n");
		write_all(CONN, ok_resp, strlen(ok_resp));
		out_is(want);
	}
}

Test(conn, eagain_inside_the_header_resumes_it)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: abc\r\n\r\n");
	fk.cap = 20; /* the status line and 3 bytes of the header */
	fk.fail_at = 2;
	fk.fail_errno = EAGAIN;
	cr_assert_eq(wrs(CONN, ok_resp), 17);
	cr_assert_eq(wrs(CONN, ok_resp + 17), -1);
	cr_assert_eq(errno, EAGAIN);
	fk.cap = (size_t)-1;
	cr_assert_eq(wrs(CONN, ok_resp + 17), (ssize_t)strlen(ok_resp) - 17);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: abc\r\nContent-Length: 2\r\n\r\nok");
}

Test(conn, keep_alive_requests_get_their_own_ids)
{
	reads("GET /1 HTTP/1.1\r\nX-Request-Id: one\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), "one");
	wrs(CONN, ok_resp);
	cr_assert_str_eq(reqctx_id(), "one");
	reads("GET /2 HTTP/1.1\r\nX-Request-Id: two\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), "two");
	wrs(CONN, ok_resp);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: one\r\nContent-Length: 2\r\n\r\nok"
	       "HTTP/1.1 200 OK\r\nX-Request-Id: two\r\nContent-Length: 2\r\n\r\nok");
}

Test(conn, pipelined_responses_carry_their_own_requests_ids)
{
	reads("GET /1 HTTP/1.1\r\nX-Request-Id: p1\r\n\r\n"
	      "HEAD /2 HTTP/1.1\r\nX-Request-Id: p2\r\n\r\n"
	      "GET /3 HTTP/1.1\r\nX-Request-Id: p3\r\n\r\n");
	wrs(CONN, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
		  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: p1\r\nContent-Length: 2\r\n\r\nok"
	       "HTTP/1.1 200 OK\r\nX-Request-Id: p2\r\nContent-Length: 5\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nX-Request-Id: p3\r\nContent-Length: 0\r\n\r\n");
}

Test(conn, interim_100_continue_is_not_touched)
{
	reads("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\nX-Request-Id: c\r\n\r\n");
	wrs(CONN, "HTTP/1.1 100 Continue\r\n\r\n");
	reads("hi");
	wrs(CONN, ok_resp);
	out_is("HTTP/1.1 100 Continue\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nX-Request-Id: c\r\nContent-Length: 2\r\n\r\nok");
}

Test(conn, body_that_looks_like_a_head_is_not_touched)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";

	reads("GET / HTTP/1.1\r\nX-Request-Id: b\r\n\r\n");
	wrs(CONN, r);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: b\r\nContent-Length: 19\r\n\r\n"
	       "HTTP/1.1 200 OK\r\n\r\n");
}

Test(conn, binary_traffic_passes_unchanged)
{
	char bin[4096];

	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (char)(i * 7 + 3);
	reads("\x16\x03\x01 hello");
	cr_assert_eq(strlen(reqctx_id()), 36, "a non-HTTP connection gets one ID");
	cr_assert_eq(wr(CONN, bin, sizeof(bin)), (ssize_t)sizeof(bin));
	cr_assert_eq(fk.len, sizeof(bin));
	cr_assert_eq(memcmp(fk.out, bin, sizeof(bin)), 0);
}

Test(conn, echo_off_leaves_responses_alone)
{
	static const char *const env[] = { "REQCTX_ECHO=0", NULL };

	setup_env(env);
	reads("GET / HTTP/1.1\r\nX-Request-Id: e\r\n\r\n");
	wrs(CONN, ok_resp);
	out_is(ok_resp);
	cr_assert_str_eq(reqctx_id(), "e");
}

Test(conn, sendmsg_keeps_its_flags_and_gets_the_header)
{
	struct iovec v[2] = { { "HTTP/1.1 204 No Content\r\n", 25 }, { "\r\n", 2 } };
	struct msghdr m = { .msg_iov = v, .msg_iovlen = 2 };
	struct rq_call k = { .how = RQ_SENDMSG, .msg = &m, .flags = MSG_NOSIGNAL };

	reads("GET / HTTP/1.1\r\nX-Request-Id: m\r\n\r\n");
	cr_assert_eq(rq_io_write(CONN, v, 2, &k), 27);
	out_is("HTTP/1.1 204 No Content\r\nX-Request-Id: m\r\n\r\n");
}

Test(logs, one_line_writes_under_every_short_write_keep_bytes_exact)
{
	static const char want[] = "[req:one] a single line\n[req:one] another\n";

	for (size_t cap = 1; cap <= sizeof(want); cap++) {
		setup();
		fk.cap = cap;
		in_request("one");
		write_all(LOG, "a single line\n", 14);
		write_all(LOG, "another\n", 8);
		out_is(want);
	}
}

Test(logs, a_signal_handler_line_during_a_line_gets_its_own_prefix)
{
	/* The prefix cache is busy while a line is written; a nested write renders its own. */
	char buf[RQ_TEXTS_MAX];
	struct rq_texts t;
	const char *outer;

	in_request("outer");
	outer = rq_prefix_acquire(buf, &t);
	in_request("inner");
	cr_assert_eq(wrs(LOG, "from a handler\n"), 15);
	rq_prefix_release(outer);
	out_is("[req:inner] from a handler\n");
}

/* ---- heads cut into writes at every point ---- */

/*
 * Where the header goes when `resp` is written in pieces ending at cuts[]:
 * right after the status line (status_end), unless a write boundary falls
 * after it and at or before the blank line (blank), then before the blank line.
 */
static size_t insert_point(const size_t *cuts, int ncuts, size_t status_end, size_t blank)
{
	for (int i = 0; i < ncuts; i++)
		if (cuts[i] > status_end && cuts[i] <= blank)
			return blank;
	return status_end;
}

static void split_case(const char *resp, const char *id, const size_t *cuts, int ncuts, size_t cap)
{
	size_t len = strlen(resp), at = 0;
	size_t status_end = (size_t)(strchr(resp, '\n') + 1 - resp);
	const char *blank = strstr(resp, "\r\n\r\n") ? strstr(resp, "\r\n\r\n") + 2 : strstr(resp, "\n\n") + 1;
	size_t ins = insert_point(cuts, ncuts, status_end, (size_t)(blank - resp));
	char req[256], want[512];

	setup();
	fk.cap = cap ? cap : (size_t)-1;
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Request-Id: %s\r\n\r\n", id);
	reads(req);
	for (int i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		write_all(CONN, resp + at, end - at);
		at = end;
	}
	snprintf(want, sizeof(want), "%.*sX-Request-Id: %s\r\n%s", (int)ins, resp, id, resp + ins);
	fk.out[fk.len] = '\0';
	cr_assert_str_eq(fk.out, want, "cuts at %zu %zu (of %d), cap %zu:\n--- got ---\n%s\n--- want ---\n%s",
			 ncuts ? cuts[0] : 0, ncuts > 1 ? cuts[1] : 0, ncuts, cap, fk.out, want);
}

static const char *const split_resps[] = {
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nA: b\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
};

Test(conn, every_cut_of_a_head_into_two_or_three_writes_gets_exactly_one_header)
{
	for (size_t r = 0; r < RQ_ARRAY_LEN(split_resps); r++) {
		size_t len = strlen(split_resps[r]);

		for (size_t i = 1; i < len; i++) {
			split_case(split_resps[r], "cut", (size_t[]){ i }, 1, 0);
			for (size_t j = i + 1; j < len; j++)
				split_case(split_resps[r], "cut3", (size_t[]){ i, j }, 2, 0);
		}
	}
}

Test(conn, the_final_cr_and_lf_in_separate_writes_get_the_header)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

	reads("GET / HTTP/1.1\r\nX-Request-Id: crlf\r\n\r\n");
	cr_assert_eq(wrs(CONN, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r"), 37);
	cr_assert_eq(wrs(CONN, "\nok"), 3);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: crlf\r\nContent-Length: 2\r\n\r\nok");
	(void)r;
	/* and when the status line went out alone before */
	setup();
	reads("GET / HTTP/1.1\r\nX-Request-Id: crlf2\r\n\r\n");
	cr_assert_eq(wrs(CONN, "HTTP/1.1 200 OK\r\n"), 17);
	cr_assert_eq(wrs(CONN, "Content-Length: 2\r\n\r"), 20);
	cr_assert_eq(wrs(CONN, "\n"), 1);
	cr_assert_eq(wrs(CONN, "ok"), 2);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: crlf2\r\nContent-Length: 2\r\n\r\nok");
	/* and when a header line went out alone before */
	setup();
	reads("GET / HTTP/1.1\r\nX-Request-Id: crlf3\r\n\r\n");
	cr_assert_eq(wrs(CONN, "HTTP/1.1 200 OK\r\nA: b\r\n"), 23);
	cr_assert_eq(wrs(CONN, "Content-Length: 2\r\n\r"), 20);
	cr_assert_eq(wrs(CONN, "\nok"), 3);
	out_is("HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 2\r\nX-Request-Id: crlf3\r\n\r\nok");
}

Test(conn, every_cut_and_every_short_write_of_a_head_keep_bytes_exact)
{
	const char *resp = split_resps[0];
	size_t len = strlen(resp);

	for (size_t i = 1; i < len; i++)
		for (size_t cap = 1; cap <= len + 24; cap += 3)
			split_case(resp, "sw", (size_t[]){ i }, 1, cap);
}

/* ---- deep pipelines ---- */

/* Reads n pipelined requests (IDs p<first>...) in one read. */
static void reads_pipelined(int first, int n, int head_at)
{
	static char buf[65536];
	size_t len = 0;

	for (int i = first; i < first + n; i++)
		len += (size_t)sprintf(buf + len, "%s /%d HTTP/1.1\r\nX-Request-Id: p%d\r\n\r\n",
				       i == head_at ? "HEAD" : "GET", i, i);
	reads(buf);
}

static const char resp2[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* What response i looks like with the header of p<i> (or none if i < 0). */
static size_t resp_with(char *out, int i)
{
	if (i < 0)
		return (size_t)sprintf(out, "%s", resp2);
	return (size_t)sprintf(out, "HTTP/1.1 200 OK\r\nX-Request-Id: p%d\r\nContent-Length: 2\r\n\r\nok", i);
}

Test(conn, sixty_four_pipelined_requests_each_get_their_own_header_and_context)
{
	static char want[65536];
	size_t w = 0;

	reads_pipelined(0, RQ_PIPE, -1);
	cr_assert_str_eq(reqctx_id(), "p63");
	for (int i = 0; i < RQ_PIPE; i++) {
		char id[16];

		cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
		snprintf(id, sizeof(id), "p%d", i);
		cr_assert_str_eq(reqctx_id(), id, "after response %d", i);
		w += resp_with(want + w, i);
	}
	cr_assert_eq(fk.calls, RQ_PIPE);
	out_is(want);
}

Test(conn, sixty_four_responses_in_one_write_each_get_their_own_header)
{
	static char in[65536], want[65536];
	size_t n = 0, w = 0;

	reads_pipelined(0, RQ_PIPE, -1);
	for (int i = 0; i < RQ_PIPE; i++) {
		n += (size_t)sprintf(in + n, "%s", resp2);
		w += resp_with(want + w, i);
	}
	cr_assert_eq(wr(CONN, in, n), (ssize_t)n);
	out_is(want);
}

Test(conn, many_responses_in_one_write_under_every_short_write_keep_bytes_exact)
{
	static char in[4096], want[8192];
	size_t n = 0, w = 0;

	for (int i = 0; i < 9; i++) {
		n += (size_t)sprintf(in + n, "%s", resp2);
		w += resp_with(want + w, i);
	}
	for (size_t cap = 1; cap <= w; cap += 7) {
		setup();
		fk.cap = cap;
		reads_pipelined(0, 9, -1);
		write_all(CONN, in, n);
		out_is(want);
	}
}

Test(conn, head_responses_deep_in_a_pipeline_have_no_body)
{
	static char want[8192];
	size_t w = 0;

	reads_pipelined(0, 40, 37);
	for (int i = 0; i < 40; i++) {
		const char *r = i == 37 ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" : resp2;

		cr_assert_eq(wrs(CONN, r), (ssize_t)strlen(r));
		w += resp_with(want + w, i);
		if (i == 37)
			w -= 2; /* no "ok" */
	}
	out_is(want);
}

/*
 * Beyond RQ_PIPE unanswered requests, the excess get no header (never
 * another's), and the requests after them get theirs again.
 */
Test(conn, beyond_64_unanswered_requests_the_rest_get_none_then_theirs_again)
{
	static char want[65536];
	size_t w = 0;

	reads_pipelined(0, RQ_PIPE + 6, -1);
	for (int i = 0; i < RQ_PIPE + 6; i++) {
		cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
		w += resp_with(want + w, i < RQ_PIPE ? i : -1);
	}
	for (int i = RQ_PIPE + 6; i < RQ_PIPE + 9; i++) {
		reads_pipelined(i, 1, -1);
		cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
		w += resp_with(want + w, i);
	}
	out_is(want);
}

/*
 * The same while the queue drains, with a client that keeps 67 requests in
 * flight: a request read while RQ_PIPE are queued and unanswered is lost
 * (no header); every other one gets its own. The test keeps that model.
 */
Test(conn, requests_read_while_an_overflowed_queue_drains_stay_in_step)
{
	static char want[65536];
	static int tracked[200];
	size_t w = 0;
	int next = 0, answered = 0, queued = 0;

	for (; next < RQ_PIPE + 3; next++) {
		tracked[next] = queued < RQ_PIPE;
		queued += tracked[next];
	}
	reads_pipelined(0, next, -1);
	while (answered < 200) {
		cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
		w += resp_with(want + w, tracked[answered] ? answered : -1);
		queued -= tracked[answered++];
		if (next < 200) {
			tracked[next] = queued < RQ_PIPE;
			queued += tracked[next];
			reads_pipelined(next++, 1, -1);
		}
	}
	out_is(want);
}

/* A HEAD request that cannot be queued would leave its response's framing unknown: no more headers. */
Test(conn, a_head_request_beyond_the_queue_stops_the_header_for_good)
{
	static const char head_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
	static char want[65536];
	size_t w = 0;

	reads_pipelined(0, RQ_PIPE + 2, RQ_PIPE + 1);
	for (int i = 0; i < RQ_PIPE + 2; i++) {
		const char *r = i == RQ_PIPE + 1 ? head_resp : resp2;

		cr_assert_eq(wrs(CONN, r), (ssize_t)strlen(r));
		w += i < RQ_PIPE ? resp_with(want + w, i) : (size_t)sprintf(want + w, "%s", r);
	}
	reads_pipelined(100, 1, -1);
	cr_assert_str_eq(reqctx_id(), "p100");
	cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
	w += resp_with(want + w, -1);
	out_is(want);
}

/* ---- bytes reqctx cannot weave into ---- */

#define HEAD40 "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"
#define EMPTY_RESP "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

Test(conn, opaque_body_bytes_keep_the_scanner_in_step)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: o1\r\n\r\n");
	cr_assert_eq(wrs(CONN, HEAD40), 39);
	rq_conn_opaque(CONN, 40); /* sendfile, splice: the body */
	reads("GET / HTTP/1.1\r\nX-Request-Id: o2\r\n\r\n");
	cr_assert_eq(wrs(CONN, ok_resp), (ssize_t)strlen(ok_resp));
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: o1\r\nContent-Length: 40\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nX-Request-Id: o2\r\nContent-Length: 2\r\n\r\nok");
}

Test(conn, opaque_bytes_where_a_head_belongs_stop_the_header_for_good)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: o1\r\n\r\n");
	rq_conn_opaque(CONN, 40); /* a whole response from a file */
	reads("GET / HTTP/1.1\r\nX-Request-Id: o2\r\n\r\n");
	cr_assert_eq(wrs(CONN, ok_resp), (ssize_t)strlen(ok_resp));
	out_is(ok_resp);
	cr_assert_str_eq(reqctx_id(), "o2");
	reads("GET / HTTP/1.1\r\nX-Request-Id: o3\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), "o3", "reads still set the context");
}

Test(conn, unseen_writes_stop_the_header_for_good)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: u1\r\n\r\n");
	cr_assert_eq(wrs(CONN, HEAD40), 39);
	rq_conn_unseen(CONN); /* stdio on the connection */
	for (int i = 2; i < RQ_PIPE + 10; i++) {
		char req[128];

		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Request-Id: u%d\r\n\r\n", i);
		reads(req);
		cr_assert_eq(wrs(CONN, EMPTY_RESP), (ssize_t)strlen(EMPTY_RESP));
	}
	cr_assert_str_eq(reqctx_id(), "u73");
	cr_assert_eq(fk.len, 39 + 18 + (RQ_PIPE + 8) * strlen(EMPTY_RESP), "%zu bytes", fk.len);
}

Test(conn, a_header_cut_short_is_finished_before_bytes_reqctx_cannot_see)
{
	reads("GET / HTTP/1.1\r\nX-Request-Id: abc\r\n\r\n");
	fk.cap = 20; /* the status line and 3 bytes of the header */
	cr_assert_eq(wrs(CONN, ok_resp), 17);
	fk.cap = (size_t)-1;
	cr_assert_eq(rq_conn_unseen_pre(CONN), 0);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: abc\r\n");
	cr_assert_eq(wrs(CONN, ok_resp + 17), (ssize_t)strlen(ok_resp) - 17);
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: abc\r\nContent-Length: 2\r\n\r\nok");
}

Test(conn, request_body_bytes_read_unseen_keep_the_request_scanner_in_step)
{
	reads("POST / HTTP/1.1\r\nX-Request-Id: b1\r\nContent-Length: 10\r\n\r\n");
	rq_conn_skipped(CONN, 10); /* spliced away */
	reads("GET / HTTP/1.1\r\nX-Request-Id: b2\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), "b2");
}

Test(conn, bytes_seen_but_not_woven_into_keep_the_scanner_in_step)
{
	struct iovec v[2] = { { (void *)ok_resp, 17 }, { (void *)(ok_resp + 17), strlen(ok_resp) - 17 } };

	reads("GET / HTTP/1.1\r\nX-Request-Id: s1\r\n\r\n");
	rq_conn_wrote(CONN, v, 2, (ssize_t)strlen(ok_resp)); /* sendmmsg, pwritev2: no header */
	reads("GET / HTTP/1.1\r\nX-Request-Id: s2\r\n\r\n");
	cr_assert_eq(wrs(CONN, ok_resp), (ssize_t)strlen(ok_resp));
	out_is("HTTP/1.1 200 OK\r\nX-Request-Id: s2\r\nContent-Length: 2\r\n\r\nok");
}

/*
 * A dup names the same connection: the two fds write one response stream
 * (a head on one, its body on the other), reads on either queue requests,
 * and the connection lives until its last fd closes.
 */
Test(conn, a_dup_shares_the_connection_and_its_headers)
{
	enum { COPY = 203, COPY2 = 204 };
	static char want[8192];
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
	uint32_t live = rq_conn_live();
	size_t w = 0;

	reads_pipelined(0, 10, -1); /* the current request, p9, is in the overflow area */
	rq_fd_copy(CONN, COPY);
	cr_assert_eq(rq_conn_live(), live, "a dup takes no new connection");
	cr_assert_eq(rq_conn_of(COPY), rq_conn_of(CONN));
	rq_ctx_clear();
	rq_fd_enter(COPY);
	cr_assert_str_eq(reqctx_id(), "p9");
	cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
	w += resp_with(want + w, 0);
	cr_assert_eq(wrs(COPY, resp2), (ssize_t)strlen(resp2));
	w += resp_with(want + w, 1);
	cr_assert_eq(wrs(CONN, head), (ssize_t)strlen(head)); /* the head on one fd, */
	cr_assert_eq(wrs(COPY, "ok"), 2);                     /* its body on the other */
	w += resp_with(want + w, 2);
	cr_assert_str_eq(reqctx_id(), "p2");
	out_is(want);
	reads_pipelined(10, 1, -1);
	cr_assert_str_eq(reqctx_id(), "p10", "reads still set the context");
	rq_fd_forget(CONN); /* the original closes: the dup goes on */
	cr_assert_eq(rq_conn_live(), live);
	rq_fd_copy(COPY, COPY2);
	cr_assert_eq(wrs(COPY2, resp2), (ssize_t)strlen(resp2));
	w += resp_with(want + w, 3);
	out_is(want);
	rq_fd_forget(COPY);
	cr_assert_eq(rq_conn_live(), live);
	rq_fd_forget(COPY2); /* the last fd: the connection is given back */
	cr_assert_eq(rq_conn_live(), live - 1);
	cr_assert_null(rq_conn_of(COPY2));
}

Test(conn, a_connection_accepted_after_a_deep_one_starts_clean)
{
	static char want[8192];
	size_t w = 0;

	reads_pipelined(0, 20, -1);
	for (int i = 0; i < 10; i++) { /* 10 left unanswered when it closes */
		cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
		w += resp_with(want + w, i);
	}
	cr_assert_eq(rq_fd_set_conn(CONN), 0); /* closed; a new one on the same fd */
	reads_pipelined(100, 20, -1);
	for (int i = 100; i < 120; i++) {
		cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
		w += resp_with(want + w, i);
	}
	out_is(want);
}

Test(conn, with_echo_off_a_deep_pipeline_still_sets_each_context)
{
	static const char *const env[] = { "REQCTX_ECHO=0", NULL };

	setup_env(env);
	for (int i = 0; i < 3 * RQ_PIPE; i++) {
		char id[16];

		reads_pipelined(i, 1, -1);
		snprintf(id, sizeof(id), "p%d", i);
		cr_assert_str_eq(reqctx_id(), id);
	}
	cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
	out_is(resp2);
}

Test(conn, generated_ids_of_a_deep_pipeline_are_distinct_and_echoed)
{
	static char buf[8192], ids[RQ_PIPE][40];
	size_t len = 0;

	for (int i = 0; i < RQ_PIPE; i++)
		len += (size_t)sprintf(buf + len, "GET /%d HTTP/1.1\r\n\r\n", i);
	reads(buf);
	for (int i = 0; i < RQ_PIPE; i++) {
		size_t before = fk.len;
		const char *at;

		cr_assert_eq(wrs(CONN, resp2), (ssize_t)strlen(resp2));
		fk.out[fk.len] = '\0';
		at = strstr(fk.out + before, "X-Request-Id: ");
		cr_assert_not_null(at, "response %d has no header", i);
		memcpy(ids[i], at + 14, 36);
		ids[i][36] = '\0';
		cr_assert_str_eq(reqctx_id(), ids[i], "the context after response %d", i);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(ids[j], ids[i]);
	}
}

/* ---- random streams ---- */

static unsigned rnd_state;

static unsigned rnd(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 8) % n;
}

/*
 * A response for request i (HEAD if is_head): bodies full of fake heads,
 * chunked, interim 100s, 204/304, and some with their own X-Request-Id.
 * Sets *own if it carries its own header.
 */
static size_t random_resp(char *out, int is_head, int *own)
{
	static const char fake[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	size_t n = 0;
	unsigned kind = rnd(6);

	*own = 0;
	if (rnd(5) == 0)
		n += (size_t)sprintf(out + n, "HTTP/1.1 100 Continue\r\n\r\n");
	if (kind == 0) {
		n += (size_t)sprintf(out + n, "HTTP/1.1 204 No Content\r\nA: b\r\n\r\n");
	} else if (kind == 1) {
		n += (size_t)sprintf(out + n, "HTTP/1.1 304 Not Modified\r\n\r\n");
	} else if (kind == 2) {
		n += (size_t)sprintf(out + n, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
		if (!is_head) /* a HEAD response has no body, chunked or not */
			n += (size_t)sprintf(out + n, "%zx\r\n%s\r\n0\r\n\r\n", sizeof(fake) - 1, fake);
	} else if (kind == 3) {
		*own = 1;
		n += (size_t)sprintf(out + n, "HTTP/1.1 200 OK\r\nx-request-id: theirs\r\nContent-Length: 0\r\n\r\n");
	} else {
		unsigned k = rnd(3);

		n += (size_t)sprintf(out + n, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n",
				     is_head ? 7 : k * (sizeof(fake) - 1), kind == 4 ? "B: c\r\n" : "");
		for (unsigned j = 0; !is_head && j < k; j++)
			n += (size_t)sprintf(out + n, "%s", fake);
	}
	return n;
}

/*
 * Removes every "X-Request-Id: r<N>\r\n" from s, noting each N in ids[];
 * returns the new length and counts them.
 */
static size_t strip_ours(char *s, size_t n, int *count, int *ids)
{
	size_t w = 0;

	*count = 0;
	for (size_t i = 0; i < n;) {
		size_t d = 0;

		if (n - i > 15 && !memcmp(s + i, "X-Request-Id: r", 15)) {
			for (d = 15; i + d < n && s[i + d] >= '0' && s[i + d] <= '9'; d++)
				;
			if (d > 15 && n - i - d >= 2 && !memcmp(s + i + d, "\r\n", 2)) {
				ids[(*count)++] = atoi(s + i + 15);
				i += d + 2;
				continue;
			}
		}
		s[w++] = s[i++];
	}
	return w;
}

/*
 * 300 random streams: requests pipelined up to 70 deep, their responses cut
 * into random writes under random short writes. Taking out the headers reqctx
 * put in gives back exactly the bytes written, and every response without
 * its own header got one, as long as no more than RQ_PIPE were unanswered.
 */
Test(conn, random_cuts_and_short_writes_never_change_a_caller_byte)
{
	static char in[32768], req[16384];
	static int want_ids[128], got_ids[128];

	for (unsigned round = 0; round < 300; round++) {
		size_t n = 0, rl = 0;
		int want = 0, got, nreq;

		rnd_state = round + 1;
		nreq = 1 + (int)rnd(70);
		setup();
		fk.cap = rnd(3) ? 1 + rnd(60) : (size_t)-1;
		for (int i = 0; i < nreq; i++) {
			int is_head = rnd(6) == 0, own;

			rl += (size_t)sprintf(req + rl, "%s /%d HTTP/1.1\r\nX-Request-Id: r%d\r\n\r\n",
					      is_head ? "HEAD" : "GET", i, i);
			n += random_resp(in + n, is_head, &own);
			if (!own && i < RQ_PIPE)
				want_ids[want++] = i;
		}
		reads(req);
		for (size_t at = 0; at < n;) {
			size_t piece = 1 + rnd(80);

			if (piece > n - at)
				piece = n - at;
			write_all(CONN, in + at, piece);
			at += piece;
		}
		fk.len = strip_ours(fk.out, fk.len, &got, got_ids);
		cr_assert_eq(fk.len, n, "round %u: %zu bytes, want %zu", round, fk.len, n);
		cr_assert_eq(memcmp(fk.out, in, n), 0, "round %u: bytes changed", round);
		cr_assert_eq(got, want, "round %u: %d headers, want %d", round, got, want);
		for (int i = 0; i < want; i++)
			cr_assert_eq(got_ids[i], want_ids[i], "round %u: header %d names r%d, want r%d",
				     round, i, got_ids[i], want_ids[i]);
	}
}
