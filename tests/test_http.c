#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "http.h"

static void setup(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
}

TestSuite(http, .init = setup);

/*
 * Feeds a stream to the request scanner in pieces of `chunk` bytes and
 * returns what it saw: "H<id>;" per request head ("H-;" with no valid ID),
 * "D;" when it stopped.
 */
static const char *scan(const char *s, size_t len, size_t chunk)
{
	static char out[4096];
	struct rq_req p;

	memset(&p, 0, sizeof(p));
	out[0] = '\0';
	for (size_t at = 0; at < len; at += chunk) {
		size_t n = len - at < chunk ? len - at : chunk, off = 0;

		while (off < n) {
			enum rq_ev ev;

			off += rq_req_feed(&p, s + at + off, n - off, &ev);
			if (ev == RQ_EV_HEAD) {
				strcat(out, "H");
				strncat(out, p.h.xr_have ? p.xr : "-", p.h.xr_have ? p.h.xr_len : 1);
				strcat(out, p.h.method == RQ_M_HEAD ? "(HEAD);" : ";");
			} else if (ev == RQ_EV_DEAD) {
				strcat(out, "D;");
			}
		}
	}
	return out;
}

/* The same verdict for every way of splitting the stream into reads. */
static void expect_all_splits(const char *s, const char *want)
{
	size_t len = strlen(s);

	for (size_t chunk = 1; chunk <= len; chunk++)
		{ const char *got = scan(s, len, chunk); cr_assert_str_eq(got, want, "split every %zu bytes: got %s want %s", chunk, got, want); }
}

Test(http, one_request_with_its_id)
{
	expect_all_splits("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc123\r\n\r\n", "Habc123;");
}

Test(http, header_name_is_case_insensitive_and_value_is_trimmed)
{
	expect_all_splits("GET / HTTP/1.1\r\nx-REQUEST-id: \t abc123 \t\r\n\r\n", "Habc123;");
}

Test(http, request_without_id)
{
	expect_all_splits("GET /x?y=1 HTTP/1.0\r\nHost: a\r\n\r\n", "H-;");
}

Test(http, pipelined_requests_in_one_read)
{
	expect_all_splits("GET /1 HTTP/1.1\r\nX-Request-Id: one\r\n\r\n"
			  "HEAD /2 HTTP/1.1\r\n\r\n"
			  "GET /3 HTTP/1.1\r\nX-Request-Id: three\r\n\r\n",
			  "Hone;H-(HEAD);Hthree;");
}

Test(http, content_length_body_is_skipped)
{
	/* The body holds text that looks like a request: it must not count. */
	expect_all_splits("POST /a HTTP/1.1\r\nContent-Length: 40\r\nX-Request-Id: a\r\n\r\n"
			  "GET /fake HTTP/1.1\r\nX-Request-Id: evil\r\n"
			  "GET /b HTTP/1.1\r\nX-Request-Id: b\r\n\r\n",
			  "Ha;Hb;");
}

Test(http, chunked_body_is_skipped)
{
	expect_all_splits("POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nX-Request-Id: a\r\n\r\n"
			  "5;ext=1\r\nGET /\r\n"
			  "16\r\nX-Request-Id: evil\r\n\r\n\r\n"
			  "0\r\nTrailer: x\r\n\r\n"
			  "GET /b HTTP/1.1\r\nX-Request-Id: b\r\n\r\n",
			  "Ha;Hb;");
}

Test(http, expect_100_continue_then_body)
{
	expect_all_splits("PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
			  "X-Request-Id: up\r\n\r\nabc"
			  "GET /n HTTP/1.1\r\n\r\n",
			  "Hup;H-;");
}

Test(http, bare_lf_line_endings_are_accepted)
{
	expect_all_splits("GET / HTTP/1.1\nX-Request-Id: lf\n\n", "Hlf;");
}

Test(http, empty_lines_before_a_request_are_skipped)
{
	expect_all_splits("\r\n\r\nGET / HTTP/1.1\r\nX-Request-Id: a\r\n\r\n", "Ha;");
}

Test(http, first_valid_id_wins)
{
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: first\r\nX-Request-Id: second\r\n\r\n",
			  "Hfirst;");
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: bad]\r\nX-Request-Id: good\r\n\r\n",
			  "Hgood;");
}

Test(http, hostile_ids_are_dropped)
{
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: a b\r\n\r\n", "H-;");
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: [req:x]\r\n\r\n", "H-;");
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: \r\n\r\n", "H-;");
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: a\r\n b\r\n\r\n", "H-;"); /* folded */
}

Test(http, id_of_10kb_is_dropped_and_scanning_goes_on)
{
	size_t n = 10240;
	char *s = malloc(n + 200);

	strcpy(s, "GET / HTTP/1.1\r\nX-Request-Id: ");
	memset(s + strlen(s), 'a', n);
	strcpy(s + 30 + n, "\r\n\r\nGET /2 HTTP/1.1\r\nX-Request-Id: next\r\n\r\n");
	cr_assert_str_eq(scan(s, strlen(s), 7), "H-;Hnext;");
	cr_assert_str_eq(scan(s, strlen(s), 4096), "H-;Hnext;");
	free(s);
}

Test(http, id_of_128_bytes_is_kept)
{
	char s[300], id[129];

	memset(id, 'z', 128);
	id[128] = '\0';
	snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nX-Request-Id: %s\r\n\r\n", id);
	cr_assert_eq(strncmp(scan(s, strlen(s), 3), "H", 1), 0);
	cr_assert_eq(strlen(scan(s, strlen(s), 3)), 128 + 2);
}

Test(http, nul_in_a_header_stops_the_scanner)
{
	static const char s[] = "GET / HTTP/1.1\r\nX-Request-Id: a\0b\r\n\r\n";

	cr_assert_str_eq(scan(s, sizeof(s) - 1, 1), "D;");
}

Test(http, non_http_streams_stop_the_scanner_once)
{
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
	static const char garbage[] = "\x00\xff\xfe binary";

	cr_assert_str_eq(scan(tls, sizeof(tls) - 1, 1), "D;");
	cr_assert_str_eq(scan(garbage, sizeof(garbage) - 1, 4), "D;");
	expect_all_splits("EHLO mail.example.com\r\nMAIL FROM:<a@b>\r\n", "D;");
	expect_all_splits("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "D;");
	expect_all_splits("get / HTTP/1.1\r\n\r\n", "D;");
}

Test(http, invalid_framing_stops_the_scanner)
{
	expect_all_splits("POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", "D;");
	expect_all_splits("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "D;");
	expect_all_splits("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET / HTTP/1.1\r\n\r\n",
			  "H-;");
	expect_all_splits("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "H-;D;");
}

Test(http, connect_turns_into_a_tunnel)
{
	expect_all_splits("CONNECT a:443 HTTP/1.1\r\nX-Request-Id: t\r\n\r\nGET / HTTP/1.1\r\n\r\n",
			  "Ht;");
}

Test(http, configured_header_name_is_used)
{
	static const char *const env[] = { "REQCTX_HEADER=X-Correlation-ID", NULL };

	test_config(env);
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: no\r\nx-correlation-id: yes\r\n\r\n",
			  "Hyes;");
}

/*
 * Whole lines are read at once (16 bytes at a time), lines cut by a read byte
 * by byte: each verdict below holds for every split, so both ways agree on
 * each edge of the fast path.
 */
Test(http, lines_read_whole_agree_with_lines_read_byte_by_byte)
{
	/* names of other token bytes, longer than 16, or ending where the read does */
	expect_all_splits("GET / HTTP/1.1\r\nX_Odd.Name~1: v\r\nUpgrade-Insecure-Requests: 1\r\n"
			  "X-Request-Id: id-1\r\nA: b\r\n\r\n", "Hid-1;");
	/* tabs and obs-text in values; OWS around the ID, tabs included */
	expect_all_splits("GET / HTTP/1.1\r\nUser-Agent: a\tcaf\xc3\xa9\t\r\n"
			  "X-Request-Id:\t \tab:c@d+e=f/g~h.i_j \t\r\n\r\n", "Hab:c@d+e=f/g~h.i_j;");
	/* an ID with obs-text, with OWS inside, or only OWS is no ID */
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: caf\xc3\xa9\r\n\r\n", "H-;");
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: a\tb\r\n\r\n", "H-;");
	expect_all_splits("GET / HTTP/1.1\r\nX-Request-Id: \t \t\r\nX-Request-Id: two\r\n\r\n",
			  "Htwo;");
	/* a name as long as the configured one, and the same first letter, is not it */
	expect_all_splits("GET / HTTP/1.1\r\nContent-Type: x\r\nX-Request-Ix: y\r\n\r\n", "H-;");
	/* a bare CR or a DEL in a value, a separator or a space in a name: not HTTP */
	expect_all_splits("GET / HTTP/1.1\r\nAccept: a\rb\r\n\r\n", "D;");
	expect_all_splits("GET / HTTP/1.1\r\nAccept: a\x7f\r\n\r\n", "D;");
	expect_all_splits("GET / HTTP/1.1\r\nAc@cept: a\r\n\r\n", "D;");
	expect_all_splits("GET / HTTP/1.1\r\nAccept : a\r\n\r\n", "D;");
	expect_all_splits("GET / HTTP/1.1\r\n: a\r\n\r\n", "D;");
	/* request lines: 32-letter methods, targets with obs-text, bare LF; and what is not one */
	expect_all_splits("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF /\xc3\xa9?q HTTP/1.0\n"
			  "X-Request-Id: m\n\nHEAD / HTTP/1.1\r\n\r\n", "Hm;H-(HEAD);");
	expect_all_splits("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG / HTTP/1.1\r\n\r\n", "D;");
	expect_all_splits("GET /a\x7f HTTP/1.1\r\n\r\n", "D;");
	expect_all_splits("GET  / HTTP/1.1\r\n\r\n", "D;");
	expect_all_splits("GET / HTTP/1.x\r\n\r\n", "D;");
	expect_all_splits("GET / HTTP/1.1\rX\r\n\r\n", "D;");
	expect_all_splits("HEADS / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n",
			  "H-;H-;");
}

/*
 * The request scanner as conn.c drives it for REQCTX_CORRELATE: a message
 * starts where rq_req_at_start says before a call, and its request line is
 * found in the bytes each call consumed (as corr_read does). Reports
 * "L<line>;" at each request line's end, "H<id>|<trace>;" per head (<id>
 * the kept ID or "-"; <trace> the traceparent's trace-id digits when no ID
 * was kept, "ok" when one was, "-" when it is not valid or was lost),
 * "B;" per body end and "D;".
 */
static const char *cscan(const char *s, size_t len, size_t chunk)
{
	static char out[8192], line[512];
	size_t ll = 0;
	int on = 0;
	struct rq_req p;

	memset(&p, 0, sizeof(p));
	out[0] = '\0';
	for (size_t at = 0; at < len; at += chunk) {
		size_t n = len - at < chunk ? len - at : chunk, off = 0;

		while (off < n) {
			const char *b = s + at + off;
			int fresh = !on && rq_req_at_start(&p);
			enum rq_ev ev;
			size_t k = rq_req_feed(&p, b, n - off, &ev), i = 0, e;

			if (fresh) {
				while (i < k && (b[i] == '\r' || b[i] == '\n'))
					i++;
				if (i < k) {
					on = 1;
					ll = 0;
				}
			}
			if (on) {
				for (e = i; e < k && b[e] != '\r' && b[e] != '\n'; e++)
					if (ll < sizeof(line) - 1)
						line[ll++] = b[e];
				if (e < k && ev != RQ_EV_DEAD) { /* (a dead stream's is dropped) */
					on = 0;
					line[ll] = '\0';
					strcat(out, "L");
					strcat(out, line);
					strcat(out, ";");
				}
			}
			off += k;
			if (ev == RQ_EV_HEAD) {
				strcat(out, "H");
				if (p.h.xr_have)
					strncat(out, p.xr, p.h.xr_len);
				else
					strcat(out, "-");
				strcat(out, "|");
				if (!rq_req_tp(&p))
					strcat(out, "-");
				else if (p.h.xr_have)
					strcat(out, "ok");
				else
					strncat(out, p.xr + RQ_TP_AT, RQ_TP_DIGITS);
				strcat(out, ";");
			} else if (ev == RQ_EV_BODY) {
				strcat(out, "B;");
			} else if (ev == RQ_EV_DEAD) {
				on = 0;
				strcat(out, "D;");
			}
		}
	}
	return out;
}

static void cexpect(const char *s, const char *want)
{
	size_t len = strlen(s);

	for (size_t chunk = 1; chunk <= len; chunk++) {
		const char *got = cscan(s, len, chunk);

		cr_assert_str_eq(got, want, "split every %zu bytes: got %s want %s", chunk, got, want);
	}
}

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP "00-" TRACE "-00f067aa0ba902b7-01"

/*
 * Whole lines (the SSE2 path) and lines read byte by byte give correlation
 * the same request lines and message starts: after a body, a head without
 * one, empty lines between messages, a bare LF.
 */
Test(http, every_split_shows_each_request_line_from_its_message_start)
{
	cexpect("POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
		"GET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n\r\n"
		"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
		"HEAD /c HTTP/1.0\nX-Request-Id: r1\n\n"
		"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
		"LPOST /a HTTP/1.1;H-|-;B;LGET /b?q=1 HTTP/1.1;H-|-;LPOST /u HTTP/1.1;H-|-;B;"
		"LHEAD /c HTTP/1.0;Hr1|-;LGET /\xc3\xa9 HTTP/1.1;H-|-;");
	cexpect("GET / HTTP/1.1\r\nA: b\r\n\r\nSSH-2.0\r\n", "LGET / HTTP/1.1;H-|-;D;");
}

/* With REQCTX_TRACEPARENT=1, whole lines and lines read byte by byte agree on traceparent. */
Test(http, traceparent_read_whole_agrees_with_traceparent_read_byte_by_byte)
{
	static const char *const env[] = { "REQCTX_TRACEPARENT=1", NULL };
	char id100[101], s[1024];

	test_config(env);
	cexpect("GET / HTTP/1.1\r\nHost: a\r\ntraceparent: " TP "\r\n\r\n",
		"LGET / HTTP/1.1;H-|" TRACE ";");
	/* any case in the name, OWS around the value, a bare LF */
	cexpect("GET / HTTP/1.1\nTraceParent:\t " TP " \t\n\n", "LGET / HTTP/1.1;H-|" TRACE ";");
	/* a higher version may carry more fields; 00 may not; ff is invalid */
	cexpect("GET / HTTP/1.1\r\ntraceparent: 01-" TRACE "-00f067aa0ba902b7-01-what:ever\r\n\r\n",
		"LGET / HTTP/1.1;H-|" TRACE ";");
	cexpect("GET / HTTP/1.1\r\ntraceparent: " TP "-x\r\n\r\n", "LGET / HTTP/1.1;H-|-;");
	cexpect("GET / HTTP/1.1\r\ntraceparent: ff-" TRACE "-00f067aa0ba902b7-01\r\n\r\n",
		"LGET / HTTP/1.1;H-|-;");
	/* upper-case hex, an all-zero trace-id, two headers, a folded value */
	cexpect("GET / HTTP/1.1\r\ntraceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
		"\r\n\r\n", "LGET / HTTP/1.1;H-|-;");
	cexpect("GET / HTTP/1.1\r\ntraceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01"
		"\r\n\r\n", "LGET / HTTP/1.1;H-|-;");
	cexpect("GET / HTTP/1.1\r\ntraceparent: " TP "\r\ntraceparent: " TP "\r\n\r\n",
		"LGET / HTTP/1.1;H-|-;");
	cexpect("GET / HTTP/1.1\r\ntraceparent: " TP "\r\n x\r\n\r\n", "LGET / HTTP/1.1;H-|-;");
	/* an ID kept wins; the digits stay valid until an ID reaches them (RQ_TP_AT) */
	cexpect("GET / HTTP/1.1\r\nX-Request-Id: abc\r\ntraceparent: " TP "\r\n\r\n",
		"LGET / HTTP/1.1;Habc|ok;");
	cexpect("GET / HTTP/1.1\r\ntraceparent: " TP "\r\nX-Request-Id: a]b\r\n\r\n",
		"LGET / HTTP/1.1;H-|" TRACE ";");
	memset(id100, 'i', 100);
	id100[100] = '\0';
	snprintf(s, sizeof(s), "GET / HTTP/1.1\r\ntraceparent: " TP "\r\nX-Request-Id: %s\r\n\r\n",
		 id100);
	cexpect(s, "LGET / HTTP/1.1;H" "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"
		   "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii" "|-;");
	/* an invalid ID as long, before or after: what it wrote there is lost either way */
	id100[99] = ']';
	snprintf(s, sizeof(s), "GET / HTTP/1.1\r\ntraceparent: " TP "\r\nX-Request-Id: %s\r\n\r\n",
		 id100);
	cexpect(s, "LGET / HTTP/1.1;H-|-;");
	snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nX-Request-Id: %s\r\ntraceparent: " TP "\r\n\r\n",
		 id100);
	cexpect(s, "LGET / HTTP/1.1;H-|-;");
	/* an invalid ID short of the digits leaves them */
	snprintf(s, sizeof(s), "GET / HTTP/1.1\r\ntraceparent: " TP "\r\nX-Request-Id: %s\r\n\r\n",
		 id100 + 40);
	cexpect(s, "LGET / HTTP/1.1;H-|" TRACE ";");
}

Test(http, traceparent_is_not_read_unless_configured)
{
	cexpect("GET / HTTP/1.1\r\ntraceparent: " TP "\r\n\r\n", "LGET / HTTP/1.1;H-|-;");
}

/* Response scanner: reports as "S@off" (status end), "B@off" (blank line), "E<status>@off". */
static const char *rscan(const char *s, size_t len, size_t chunk, int method)
{
	static char out[4096];
	struct rq_hdrs p;

	memset(&p, 0, sizeof(p));
	out[0] = '\0';
	for (size_t at = 0; at < len; at += chunk) {
		size_t n = len - at < chunk ? len - at : chunk, off = 0;

		while (off < n) {
			enum rq_ev ev;
			char e[64] = "";

			off += rq_resp_feed(&p, s + at + off, n - off, method, &ev);
			if (ev == RQ_EV_STATUS)
				snprintf(e, sizeof(e), "S@%zu;", at + off);
			else if (ev == RQ_EV_BLANK)
				snprintf(e, sizeof(e), "B@%zu;", at + off);
			else if (ev == RQ_EV_END)
				snprintf(e, sizeof(e), "E%u%s@%zu;", p.status, p.xr_seen ? "x" : "",
					 at + off);
			else if (ev == RQ_EV_DEAD)
				snprintf(e, sizeof(e), "D;");
			strcat(out, e);
		}
	}
	return out;
}

static void rexpect(const char *s, int method, const char *want)
{
	for (size_t chunk = 1; chunk <= strlen(s); chunk++)
		{ const char *got = rscan(s, strlen(s), chunk, method); cr_assert_str_eq(got, want, "chunk %zu: got %s want %s", chunk, got, want); }
}

Test(http, response_head_positions)
{
	rexpect("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, "S@17;B@36;E200@38;");
}

Test(http, response_with_the_header_already)
{
	rexpect("HTTP/1.1 200 OK\r\nx-request-id: mine\r\nContent-Length: 0\r\n\r\n", 0,
		"S@17;B@56;E200x@58;");
}

Test(http, interim_then_final_response)
{
	rexpect("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 0,
		"S@23;B@23;E100@25;S@50;B@50;E204@52;");
}

Test(http, chunked_response_body_is_skipped)
{
	rexpect("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		"13\r\nHTTP/1.1 200 OK\r\n\r\n\r\n0\r\n\r\n"
		"HTTP/1.1 404 NF\r\nContent-Length: 0\r\n\r\n", 0,
		"S@17;B@45;E200@47;S@94;B@113;E404@115;");
}

Test(http, head_response_has_no_body)
{
	rexpect("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", RQ_M_HEAD,
		"S@17;B@37;E200@39;S@56;B@56;E200@58;");
}

Test(http, response_without_length_ends_the_scan)
{
	rexpect("HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", 0, "S@17;B@17;E200@19;");
	rexpect("SSH-2.0-OpenSSH\r\n", 0, "D;");
}

/* The status line and header lines read whole agree with those read byte by byte. */
Test(http, response_lines_read_whole_agree_with_byte_by_byte)
{
	/* a reason with a tab and a CR in it, or none at all; a bare LF ends the line */
	rexpect("HTTP/1.1 200 O\tK\rX\r\nContent-Length: 0\r\n\r\n"
		"HTTP/1.1 204\r\n\r\nHTTP/1.0 304\n\n", 0,
		"S@20;B@39;E200@41;S@55;B@55;E204@57;S@70;B@70;E304@71;");
	/* a name of the configured header's length that is another, then the header itself */
	rexpect("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-REQUEST-ID:\tx\r\n"
		"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, "S@17;B@88;E200x@90;");
	/* obs-text and tabs in values; names longer than 16 bytes */
	rexpect("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nX-A: \xff\t\xfe\r\n"
		"Content-Length: 1\r\n\r\nz", 0, "S@17;B@78;E200@80;");
	/* a status of four digits, a bare CR or a DEL in a value, a space in a name */
	rexpect("HTTP/1.1 2000 OK\r\n\r\n", 0, "D;");
	rexpect("HTTP/1.1 200 OK\r\nServer: a\rb\r\n\r\n", 0, "S@17;D;");
	rexpect("HTTP/1.1 200 OK\r\nServer: a\x7f\r\n\r\n", 0, "S@17;D;");
	rexpect("HTTP/1.1 200 OK\r\nSer ver: a\r\n\r\n", 0, "S@17;D;");
}

Test(http, sendfile_bytes_count_as_body)
{
	struct rq_hdrs p;
	enum rq_ev ev;
	const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
	size_t off = 0;

	memset(&p, 0, sizeof(p));
	while (off < strlen(h))
		off += rq_resp_feed(&p, h + off, strlen(h) - off, 0, &ev);
	rq_hdrs_opaque(&p, 4);
	cr_assert_eq(rq_resp_at_start(&p), 0);
	rq_hdrs_opaque(&p, 6);
	cr_assert_eq(rq_resp_at_start(&p), 1);
	rq_hdrs_opaque(&p, 1); /* opaque bytes where a head belongs: give up */
	cr_assert_eq(rq_hdrs_dead(&p), 1);
}
