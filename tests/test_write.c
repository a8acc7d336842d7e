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
#include "ctx.h"
#include "fdtab.h"
#include "io.h"
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

static ssize_t wr(int fd, const char *s, size_t n)
{
	struct iovec v = { (void *)s, n };
	struct rq_call k = { .how = RQ_WRITE };

	return rq_io_write(fd, &v, 1, &k);
}

static ssize_t wrs(int fd, const char *s)
{
	return wr(fd, s, strlen(s));
}

/* Writes all of s the way a careful program does: again after short writes and EAGAIN. */
static void write_all(int fd, const char *s, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = wr(fd, s + done, n - done);

		if (r < 0) {
			cr_assert_eq(errno, EAGAIN);
			continue;
		}
		cr_assert_gt(r, 0, "write returned 0 for %zu bytes", n - done);
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
	cr_assert_eq(fk.len, strlen(want), "got %zu bytes: \"%s\"", fk.len, fk.out);
	cr_assert_eq(memcmp(fk.out, want, fk.len), 0, "got \"%s\" want \"%s\"", fk.out, want);
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
	char buf[RQ_INS_MAX];
	size_t len;
	const char *outer;

	in_request("outer");
	outer = rq_prefix_acquire(buf, &len);
	in_request("inner");
	cr_assert_eq(wrs(LOG, "from a handler\n"), 15);
	rq_prefix_release(outer);
	out_is("[req:inner] from a handler\n");
}
