/*
 * Batched log correlation: finding request lines in log lines, and the ring
 * of completed requests that gives each line the ID of the request it names.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "correlate.h"
#include "id.h"

static struct rq_corr ring;

static void setup(void)
{
	rq_corr_init();
	memset(&ring, 0, sizeof(ring));
}

TestSuite(correlate, .init = setup);

/* ---- finding the request line ---- */

/* Parameters are copied to the test's process: strings are held inline. */
struct find_case {
	char name[64];
	char line[320];
	char want[64]; /* the request line found, or "" */
	unsigned status;
};

ParameterizedTestParameters(correlate, request_lines_are_found_where_logs_put_them)
{
	static struct find_case cases[] = {
		{ "nginx combined",
		  "127.0.0.1 - - [24/Nov/2026:06:05:44 +0000] \"GET /missing HTTP/1.1\" 404 153 \"-\" \"curl/7.88.1\"\n",
		  "GET /missing HTTP/1.1", 404 },
		{ "nginx error log",
		  "2026/11/24 06:05:44 [error] 18279#18279: *1 open() \"/var/www/html/missing\" failed (2: No "
		  "such file or directory), client: 127.0.0.1, server: , request: \"GET /missing HTTP/1.1\", "
		  "host: \"localhost\"\n",
		  "GET /missing HTTP/1.1", 0 },
		{ "python http.server",
		  "127.0.0.1 - - [24/Nov/2026 06:06:34] \"GET /index.html HTTP/1.1\" 200 -\n",
		  "GET /index.html HTTP/1.1", 200 },
		{ "apache common", "::1 - - [24/Nov/2026:06:05:44 +0000] \"POST /api/x?y=1&z=%20 HTTP/1.0\" 201 12\n",
		  "POST /api/x?y=1&z=%20 HTTP/1.0", 201 },
		{ "custom format, unquoted in the middle", "ts=1 GET /a/b HTTP/1.1 status=200 rt=0.1\n",
		  "GET /a/b HTTP/1.1", 0 },
		{ "unquoted then the status", "[x] OPTIONS * HTTP/1.1 503 0.01\n", "OPTIONS * HTTP/1.1", 503 },
		{ "HTTP/2.0 as nginx logs it", "\"GET / HTTP/2.0\" 200 5\n", "GET / HTTP/2.0", 200 },
		{ "a version without a minor", "\"GET / HTTP/3\" 204 0\n", "GET / HTTP/3", 204 },
		{ "at the line start, no newline", "PUT /u HTTP/1.1", "PUT /u HTTP/1.1", 0 },
		{ "status at the very end", "\"GET /e HTTP/1.1\" 302", "GET /e HTTP/1.1", 302 },
		{ "status cut by the end", "\"GET /e HTTP/1.1\" 30", "GET /e HTTP/1.1", 0 },
		{ "status 600 is none", "\"GET /e HTTP/1.1\" 600 1\n", "GET /e HTTP/1.1", 0 },
		{ "four digits are no status", "\"GET /e HTTP/1.1\" 2000\n", "GET /e HTTP/1.1", 0 },
		{ "method with - and _", "\"M-SEARCH_X * HTTP/1.1\" 200\n", "M-SEARCH_X * HTTP/1.1", 200 },
		{ "32-character method", "\"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF / HTTP/1.1\" 200\n",
		  "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF / HTTP/1.1", 200 },
		{ "the first of two", "\"GET /a HTTP/1.1\" ref=\"GET /b HTTP/1.1\"\n", "GET /a HTTP/1.1", 0 },
		{ "after a P/ that is not one", "via PHP/8.2 HTTP/x \"GET /x HTTP/1.1\" 200\n",
		  "GET /x HTTP/1.1", 200 },
		{ "bench line: a method but no version",
		  "GET /index.html 200 0.000123s upstream=127.0.0.1:8080 bytes=612 ua=curl/7.88.1\n", "", 0 },
		{ "a status line", "upstream sent \"HTTP/1.1 200 OK\"\n", "", 0 },
		{ "no method", "\"- HTTP/1.1\" 400\n", "", 0 },
		{ "a word before the method", "xGET / HTTP/1.1\n", "", 0 },
		{ "a lower-case method", "\"get / HTTP/1.1\" 200\n", "", 0 },
		{ "a method of 33", "\"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG / HTTP/1.1\" 200\n", "", 0 },
		{ "two spaces", "\"GET  / HTTP/1.1\" 200\n", "", 0 },
		{ "an empty target", "\"GET  HTTP/1.1\" 200\n", "", 0 },
		{ "the version at the line start", "HTTP/1.1 200\n", "", 0 },
		{ "version 1.10", "\"GET / HTTP/1.10\" 200\n", "", 0 },
		{ "version then a letter", "\"GET / HTTP/1.1x\" 200\n", "", 0 },
		{ "version cut", "\"GET / HTTP/1.", "", 0 },
		{ "version without digits", "\"GET / HTTP/\" 200\n", "", 0 },
		{ "quotes and no request line", "\"\" \"\"\" \"a\" \"-\" \"P/\" \"HTTP/\"\n", "", 0 },
		{ "empty", "", "", 0 },
	};
	return cr_make_param_array(struct find_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct find_case *c, correlate, request_lines_are_found_where_logs_put_them)
{
	struct rq_corr_found f;
	int got = rq_corr_find(c->line, strlen(c->line), &f);

	if (!*c->want) {
		cr_assert_eq(got, 0, "%s: found %.*s", c->name, got ? (int)f.len : 0,
			     got ? c->line + f.at : "");
		return;
	}
	cr_assert_eq(got, 1, "%s: nothing found", c->name);
	cr_assert_eq(f.len, strlen(c->want), "%s: %.*s", c->name, (int)f.len, c->line + f.at);
	cr_assert_arr_eq(c->line + f.at, c->want, f.len, "%s", c->name);
	cr_assert_eq(f.status, c->status, "%s: status %u", c->name, f.status);
	cr_assert_eq(f.key.len, f.len);
	cr_assert_eq(f.key.hash, rq_corr_key_of(c->want, strlen(c->want)).hash);
}

Test(correlate, every_position_and_length_is_searched)
{
	/* the SSE2 blocks, their overlapping last block and the tail all see the version */
	static const char rl[] = "GET /p HTTP/1.1";
	char line[200];

	for (size_t pad = 0; pad < 80; pad++) {
		for (size_t tail = 0; tail < 40; tail++) {
			struct rq_corr_found f;
			size_t n;

			memset(line, 'x', sizeof(line));
			line[pad] = ' ';
			memcpy(line + pad + 1, rl, sizeof(rl) - 1);
			n = pad + 1 + sizeof(rl) - 1;
			line[n] = ' ';
			n += tail;
			if (tail)
				line[pad + sizeof(rl)] = '"'; /* a boundary after the version */
			cr_assert_eq(rq_corr_find(line, n, &f), 1, "pad %zu tail %zu", pad, tail);
			cr_assert_eq(f.at, pad + 1);
			cr_assert_eq(f.len, sizeof(rl) - 1);
		}
	}
}

Test(correlate, streaming_hash_is_the_same_over_any_split)
{
	static const char s[] = "GET /a/very/long/target?with=query&and=more&and=more HTTP/1.1";
	struct rq_corr_key whole = rq_corr_key_of(s, sizeof(s) - 1);

	for (size_t a = 0; a < sizeof(s); a++) {
		for (size_t b = a; b < sizeof(s); b += 3) {
			struct rq_corr_hasher h;
			struct rq_corr_key k;

			rq_corr_hash_init(&h);
			rq_corr_hash_add(&h, s, a);
			rq_corr_hash_add(&h, s + a, b - a);
			rq_corr_hash_add(&h, s + b, sizeof(s) - 1 - b);
			k = rq_corr_hash_end(&h);
			cr_assert_eq(k.hash, whole.hash, "split at %zu and %zu", a, b);
			cr_assert_eq(k.len, sizeof(s) - 1);
		}
	}
	cr_assert_neq(rq_corr_key_of("GET / HTTP/1.1", 14).hash, rq_corr_key_of("GET / HTTP/1.0", 14).hash);
	cr_assert_neq(rq_corr_key_of("", 0).hash, rq_corr_key_of("\0", 1).hash);
}

Test(correlate, the_hash_is_keyed_per_process)
{
	struct rq_corr_key a = rq_corr_key_of("GET / HTTP/1.1", 14), b;

	rq_corr_init();
	b = rq_corr_key_of("GET / HTTP/1.1", 14);
	cr_assert_neq(a.hash, b.hash, "a new key gives new hashes");
}

/* ---- the ring ---- */

static void done(const char *rl, unsigned status, uint64_t serial, const char *id)
{
	rq_corr_done(&ring, rq_corr_key_of(rl, strlen(rl)), status, serial, id, (uint32_t)strlen(id));
}

/* The ID the line gets, or "-" if none. */
static const char *match(const char *line, uint64_t prefer)
{
	static struct rq_ctx c;

	memset(&c, 0, sizeof(c));
	if (!rq_corr_match(&ring, line, strlen(line), prefer, &c))
		return "-";
	cr_assert_eq(strlen(c.id), c.len);
	return c.id;
}

Test(correlate, a_line_gets_the_id_of_the_request_it_names_once)
{
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200 5\n", 0), "-", "an empty ring matches nothing");
	done("GET / HTTP/1.1", 200, 11, "id-a");
	done("GET /b HTTP/1.1", 200, 12, "id-b");
	cr_assert_str_eq(match("x \"GET /b HTTP/1.1\" 200 5\n", 0), "id-b");
	cr_assert_str_eq(match("x \"GET /b HTTP/1.1\" 200 5\n", 0), "-", "matched already");
	cr_assert_str_eq(match("x \"GET / HTTP/1.1\" 200 5\n", 0), "id-a");
	cr_assert_str_eq(match("x \"GET /c HTTP/1.1\" 200 5\n", 0), "-");
	cr_assert_str_eq(match("no request line here\n", 0), "-");
}

Test(correlate, the_serial_comes_back_with_the_id)
{
	struct rq_ctx c;
	static const char line[] = "\"GET /s HTTP/1.1\" 200\n";

	done("GET /s HTTP/1.1", 200, 4242, "serial-id");
	cr_assert_eq(rq_corr_match(&ring, line, sizeof(line) - 1, 0, &c), 1);
	cr_assert_eq(c.serial, 4242);
	cr_assert_str_eq(c.id, "serial-id");
	cr_assert_eq(c.len, 9);
}

Test(correlate, duplicates_are_taken_oldest_first)
{
	char id[16];

	for (int i = 0; i < 50; i++) {
		snprintf(id, sizeof(id), "dup-%d", i);
		done("GET / HTTP/1.1", 200, (uint64_t)i + 1, id);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(id, sizeof(id), "dup-%d", i);
		cr_assert_str_eq(match("1.2.3.4 \"GET / HTTP/1.1\" 200 612\n", 0), id);
	}
	cr_assert_str_eq(match("1.2.3.4 \"GET / HTTP/1.1\" 200 612\n", 0), "-");
}

Test(correlate, the_status_tells_identical_request_lines_apart)
{
	done("GET /x HTTP/1.1", 200, 1, "ok-1");
	done("GET /x HTTP/1.1", 404, 2, "nf-2");
	done("GET /x HTTP/1.1", 200, 3, "ok-3");
	done("GET /x HTTP/1.1", 0, 4, "unknown-4");
	cr_assert_str_eq(match("\"GET /x HTTP/1.1\" 404 0\n", 0), "nf-2");
	cr_assert_str_eq(match("\"GET /x HTTP/1.1\" 404 0\n", 0), "unknown-4", "an unknown status matches any");
	cr_assert_str_eq(match("\"GET /x HTTP/1.1\" 500 0\n", 0), "-");
	/* a line showing no status takes the oldest whatever its status */
	cr_assert_str_eq(match("request: \"GET /x HTTP/1.1\", host: \"a\"\n", 0), "ok-1");
	cr_assert_str_eq(match("\"GET /x HTTP/1.1\" 200 0\n", 0), "ok-3");
}

Test(correlate, prefer_keeps_a_line_with_its_own_request)
{
	done("GET / HTTP/1.1", 200, 1, "stale"); /* completed, never logged */
	done("GET / HTTP/1.1", 200, 2, "own");
	done("GET /o HTTP/1.1", 200, 3, "other");
	/* written in request 2's context: its own, not the older unmatched one */
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200 1\n", 2), "own");
	/* a preferred request with another request line changes nothing */
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200 1\n", 3), "stale");
	cr_assert_str_eq(match("\"GET /o HTTP/1.1\" 200 1\n", 99), "other");
}

Test(correlate, a_preferred_match_leaves_the_older_ones_findable)
{
	done("GET / HTTP/1.1", 200, 1, "first");
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200\n", 0), "first");
	done("GET / HTTP/1.1", 200, 2, "stale");
	done("GET / HTTP/1.1", 200, 3, "own");
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200\n", 3), "own");
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200\n", 0), "stale");
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200\n", 0), "-");
}

Test(correlate, an_nginx_batch_gets_every_line_right)
{
	/* 600 requests over 8 paths complete; their lines are flushed in batches of 37 */
	static const char *const paths[] = { "/", "/", "/", "/a", "/b?x=1", "/", "/c", "/a" };
	static char want[600][32];
	int logged = 0;

	for (int i = 0; i < 600; i++) {
		char rl[64];
		unsigned st = i % 11 == 0 ? 404 : 200;

		snprintf(rl, sizeof(rl), "GET %s HTTP/1.1", paths[i % 8]);
		snprintf(want[i], sizeof(want[i]), "r-%d", i);
		done(rl, st, (uint64_t)i + 1, want[i]);
		if (i % 37 == 36 || i == 599) {
			for (; logged <= i; logged++) {
				char line[200];

				snprintf(line, sizeof(line),
					 "127.0.0.1 - - [24/Nov/2026:06:05:44 +0000] \"GET %s HTTP/1.1\" %u 3 \"-\" "
					 "\"wrk\"\n", paths[logged % 8], logged % 11 == 0 ? 404 : 200);
				/* flushed in the context of request i, whose own line is not in the batch */
				cr_assert_str_eq(match(line, 0), want[logged], "line %d", logged);
			}
		}
	}
}

Test(correlate, the_ring_wraps_and_forgets_the_oldest)
{
	char rl[64], id[32], line[128];

	for (int i = 0; i < RQ_CORR_RING + 10; i++) {
		snprintf(rl, sizeof(rl), "GET /w/%d HTTP/1.1", i);
		snprintf(id, sizeof(id), "w-%d", i);
		done(rl, 200, (uint64_t)i + 1, id);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(line, sizeof(line), "\"GET /w/%d HTTP/1.1\" 200\n", i);
		cr_assert_str_eq(match(line, 0), "-", "request %d was overwritten", i);
	}
	for (int i = 10; i < RQ_CORR_RING + 10; i++) {
		snprintf(line, sizeof(line), "\"GET /w/%d HTTP/1.1\" 200\n", i);
		snprintf(id, sizeof(id), "w-%d", i);
		cr_assert_str_eq(match(line, 0), id);
	}
}

Test(correlate, identical_lines_past_the_wrap_start_at_the_oldest_kept)
{
	char id[32];

	for (int i = 0; i < RQ_CORR_RING + 100; i++) {
		snprintf(id, sizeof(id), "s-%d", i);
		done("GET /same HTTP/1.1", 200, (uint64_t)i + 1, id);
	}
	/* more than RQ_CORR_WALK entries are newer than the oldest kept (s-100): the walk
	 * stops at the RQ_CORR_WALK newest and takes the oldest of those */
	snprintf(id, sizeof(id), "s-%d", RQ_CORR_RING + 100 - RQ_CORR_WALK);
	cr_assert_str_eq(match("\"GET /same HTTP/1.1\" 200\n", 0), id);
	memset(&ring, 0, sizeof(ring));
	for (int i = 0; i < RQ_CORR_WALK + 100; i++) {
		snprintf(id, sizeof(id), "t-%d", i);
		done("GET /same HTTP/1.1", 200, (uint64_t)i + 1, id);
		if (i < 100) /* logged as they complete */
			cr_assert_str_eq(match("\"GET /same HTTP/1.1\" 200\n", 0), id);
	}
	/* the floor skips the 100 matched ones: every later one is found, in order */
	for (int i = 100; i < RQ_CORR_WALK + 100; i++) {
		snprintf(id, sizeof(id), "t-%d", i);
		cr_assert_str_eq(match("\"GET /same HTTP/1.1\" 200\n", 0), id);
	}
	cr_assert_str_eq(match("\"GET /same HTTP/1.1\" 200\n", 0), "-");
}

Test(correlate, the_quick_walk_falls_back_when_its_floor_is_gone)
{
	char rl[64];

	done("GET /f HTTP/1.1", 200, 1, "f-1");
	cr_assert_str_eq(match("\"GET /f HTTP/1.1\" 200\n", 0), "f-1"); /* the floor is f-1 */
	for (int i = 0; i < RQ_CORR_RING; i++) { /* f-1's entry is reused */
		snprintf(rl, sizeof(rl), "GET /other/%d HTTP/1.1", i);
		done(rl, 200, (uint64_t)i + 2, "o");
	}
	done("GET /f HTTP/1.1", 200, 9999, "f-2");
	cr_assert_str_eq(match("\"GET /f HTTP/1.1\" 200\n", 0), "f-2");
}

Test(correlate, request_lines_sharing_a_bucket_keep_their_own_order)
{
	char x[64] = "GET /x HTTP/1.1", y[64], line[96], id[16];
	uint64_t bx = rq_corr_key_of(x, strlen(x)).hash & (RQ_CORR_BUCKETS - 1);
	int n;

	for (n = 0; n < 1000000; n++) { /* another request line in the same index bucket */
		snprintf(y, sizeof(y), "GET /y%d HTTP/1.1", n);
		if ((rq_corr_key_of(y, strlen(y)).hash & (RQ_CORR_BUCKETS - 1)) == bx)
			break;
	}
	cr_assert_lt(n, 1000000);
	/* x0 y0 x1 y1 ... x9 y9 complete; the x lines are logged first, then the y lines */
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "x-%d", i);
		done(x, 200, (uint64_t)(2 * i + 1), id);
		snprintf(id, sizeof(id), "y-%d", i);
		done(y, 200, (uint64_t)(2 * i + 2), id);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "x-%d", i);
		cr_assert_str_eq(match("\"GET /x HTTP/1.1\" 200\n", 0), id);
	}
	snprintf(line, sizeof(line), "\"%s\" 200\n", y);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "y-%d", i);
		cr_assert_str_eq(match(line, 0), id);
	}
	cr_assert_str_eq(match(line, 0), "-");
	cr_assert_str_eq(match("\"GET /x HTTP/1.1\" 200\n", 0), "-");
	/* and new ones after everything was matched */
	done(y, 200, 100, "y-new");
	done(x, 200, 101, "x-new");
	cr_assert_str_eq(match("\"GET /x HTTP/1.1\" 200\n", 0), "x-new");
	cr_assert_str_eq(match(line, 0), "y-new");
}

Test(correlate, a_line_split_across_writes_is_decided_at_its_start)
{
	static const char line[] = "127.0.0.1 - - [x] \"GET /split HTTP/1.1\" 200 12 \"-\"\n";
	struct rq_ctx c;

	done("GET /split HTTP/1.1", 200, 1, "sp-1");
	done("GET /split HTTP/1.1", 200, 2, "sp-2");
	/* the first write ends inside the request line: no match, nothing taken */
	for (size_t cut = 0; cut < 38; cut++)
		cr_assert_eq(rq_corr_match(&ring, line, cut, 0, &c), 0, "cut at %zu", cut);
	/* it ends right after the version: matched, without the status */
	cr_assert_eq(rq_corr_match(&ring, line, 38, 0, &c), 1);
	cr_assert_str_eq(c.id, "sp-1");
	/* the rest of a line is never a line start: the next whole line takes the next one */
	cr_assert_eq(rq_corr_match(&ring, line, sizeof(line) - 1, 0, &c), 1);
	cr_assert_str_eq(c.id, "sp-2");
}

Test(correlate, a_batch_that_ends_mid_line)
{
	char batch[1024];
	size_t n = 0, at[3];

	done("GET /1 HTTP/1.1", 200, 1, "b-1");
	done("GET /2 HTTP/1.1", 500, 2, "b-2");
	done("GET /3 HTTP/1.1", 200, 3, "b-3");
	for (int i = 1; i <= 3; i++) {
		at[i - 1] = n;
		n += (size_t)snprintf(batch + n, sizeof(batch) - n, "h \"GET /%d HTTP/1.1\" %d 1\n", i,
				      i == 2 ? 500 : 200);
	}
	n -= 4; /* the batch ends inside the third line's status: "... 20" */
	{
		/* the write path hands each line start the bytes of its line in this write */
		const char *ids[3] = { "b-1", "b-2", "b-3" };

		for (int i = 0; i < 3; i++) {
			struct rq_ctx c;
			size_t end = i < 2 ? at[i + 1] : n;

			cr_assert_eq(rq_corr_match(&ring, batch + at[i], end - at[i], 0, &c), 1, "line %d", i);
			cr_assert_str_eq(c.id, ids[i]);
		}
	}
}

Test(correlate, invalid_ids_are_never_recorded)
{
	static const char *const bad[] = { "a b", "x]", "", "\n[req:evil]" };
	char big[200];

	for (size_t i = 0; i < 4; i++)
		done("GET /bad HTTP/1.1", 200, i + 1, bad[i]);
	memset(big, 'a', 129);
	big[129] = '\0';
	done("GET /bad HTTP/1.1", 200, 9, big);
	cr_assert_str_eq(match("\"GET /bad HTTP/1.1\" 200\n", 0), "-");
	big[128] = '\0';
	done("GET /bad HTTP/1.1", 200, 10, big);
	cr_assert_str_eq(match("\"GET /bad HTTP/1.1\" 200\n", 0), big);
}

Test(correlate, hostile_lines_are_bounded_and_match_nothing)
{
	static char huge[1 << 20];
	struct rq_ctx c;
	unsigned x = 12345;

	done("GET / HTTP/1.1", 200, 1, "victim");
	/* a megabyte of "P/" candidates: only RQ_CORR_SCAN bytes are searched */
	for (size_t i = 0; i + 1 < sizeof(huge); i += 2)
		memcpy(huge + i, "P/", 2);
	cr_assert_eq(rq_corr_match(&ring, huge, sizeof(huge), 0, &c), 0);
	/* a request line beyond the scanned bytes is not seen */
	memset(huge, 'x', sizeof(huge));
	memcpy(huge + RQ_CORR_SCAN, " \"GET / HTTP/1.1\" 200", 21);
	cr_assert_eq(rq_corr_match(&ring, huge, sizeof(huge), 0, &c), 0);
	/* random binary */
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < 4096; i++) {
			x = x * 1103515245 + 12345;
			huge[i] = (char)(x >> 16);
		}
		cr_assert_eq(rq_corr_match(&ring, huge, 4096, 0, &c), 0);
	}
	/* a target of 10 KB is found and matched whole */
	{
		static char line[12000], rl[11000];
		int n;

		memset(rl, 0, sizeof(rl));
		memcpy(rl, "GET /", 5);
		memset(rl + 5, 'q', 10240);
		memcpy(rl + 5 + 10240, " HTTP/1.1", 9);
		done(rl, 200, 2, "long-target");
		n = snprintf(line, sizeof(line), "\"%s\" 200 0\n", rl);
		cr_assert_eq(rq_corr_match(&ring, line, (size_t)n, 0, &c), 1);
		cr_assert_str_eq(c.id, "long-target");
	}
	cr_assert_str_eq(match("\"GET / HTTP/1.1\" 200\n", 0), "victim");
}

/* ---- threads ---- */

#define WRITERS 3
#define READERS 3
#define PER_WRITER 30000
#define PATHS 24

static _Atomic int writers_done;
static char (*seen)[24]; /* IDs returned by readers */
static _Atomic long nseen, inconsistent;

static void *writer(void *arg)
{
	int w = (int)(long)arg;

	for (int i = 0; i < PER_WRITER; i++) {
		char rl[64], id[32];

		snprintf(rl, sizeof(rl), "GET /p%d HTTP/1.1", i % PATHS);
		snprintf(id, sizeof(id), "p%d-w%d-%d", i % PATHS, w, i);
		done(rl, 200, ((uint64_t)w << 32) | (uint64_t)(i + 1), id);
	}
	atomic_fetch_add(&writers_done, 1);
	return NULL;
}

static void *reader(void *arg)
{
	unsigned x = (unsigned)(long)arg * 7919u + 1;

	while (atomic_load(&writers_done) < WRITERS) {
		char line[96];
		struct rq_ctx c;
		int p, n;

		x = x * 1103515245 + 12345;
		p = (int)((x >> 16) % PATHS);
		n = snprintf(line, sizeof(line), "1.2.3.4 - - [t] \"GET /p%d HTTP/1.1\" 200 3\n", p);
		if (rq_corr_match(&ring, line, (size_t)n, 0, &c)) {
			char want[16];
			long k = atomic_fetch_add(&nseen, 1);
			int wl = snprintf(want, sizeof(want), "p%d-", p);

			if (strncmp(c.id, want, (size_t)wl) || !rq_id_valid(c.id, c.len) ||
			    strlen(c.id) != c.len)
				atomic_fetch_add(&inconsistent, 1);
			if (k < (long)WRITERS * PER_WRITER)
				memcpy(seen[k], c.id, c.len + 1);
		}
	}
	return NULL;
}

static int cmpid(const void *a, const void *b)
{
	return strcmp(a, b);
}

Test(correlate, concurrent_writers_and_readers_agree, .timeout = 120)
{
	pthread_t w[WRITERS], r[READERS];
	long n;

	seen = calloc((size_t)WRITERS * PER_WRITER, sizeof(*seen));
	cr_assert_not_null(seen);
	for (long i = 0; i < READERS; i++)
		pthread_create(&r[i], NULL, reader, (void *)i);
	for (long i = 0; i < WRITERS; i++)
		pthread_create(&w[i], NULL, writer, (void *)i);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	n = atomic_load(&nseen);
	cr_assert_eq(atomic_load(&inconsistent), 0, "a line got an ID of another request line");
	cr_assert_gt(n, 0, "the readers matched nothing");
	cr_assert_leq(n, (long)WRITERS * PER_WRITER);
	qsort(seen, (size_t)n, sizeof(*seen), cmpid);
	for (long i = 1; i < n; i++)
		cr_assert_str_neq(seen[i - 1], seen[i], "%s was given to two lines", seen[i]);
	free(seen);
}

/* ---- wired into the library: requests read and answered on connections, lines written to a log ---- */

#include "common.h"
#include "conn.h"
#include "fdtab.h"
#include "io.h"
#include "iowrite.h"
#include "lines.h"
#include "stdlog.h"

enum { LOG = 200, CONNS = 300 };

static void wsetup_env(const char *const *env)
{
	test_config(env);
	cr_assert_str_empty(test_report_buf, "%s", test_report_buf);
	rq_fd_init();
	rq_corr_init();
	fake_install();
	fake_reset(0);
	cr_assert_eq(rq_fd_set_log(LOG), 0);
	rq_ctx_clear();
}

static void wsetup(void)
{
	static const char *const env[] = { NULL };

	wsetup_env(env);
}

static void wenv(const char *v)
{
	static const char *env[2];

	env[0] = v;
	env[1] = NULL;
	wsetup_env(env);
}

TestSuite(wiring, .init = wsetup, .timeout = 60);

/* Connection i of the test (an accepted socket, fresh). */
static int conn(int i)
{
	cr_assert_eq(rq_fd_set_conn(CONNS + i), 0);
	return CONNS + i;
}

/* The server reads n bytes from fd. */
static void rd(int fd, const char *b, size_t n)
{
	struct iovec v = { (void *)b, n };

	rq_conn_read(fd, &v, 1, (ssize_t)n);
}

/* The server reads a request with request line `line` and the client's ID `id` (NULL: none). */
static void req(int fd, const char *line, const char *id)
{
	char b[512];
	int n = snprintf(b, sizeof(b), "%s\r\nHost: h\r\n%s%s%s\r\n", line, id ? "X-Request-Id: " : "",
			 id ? id : "", id ? "\r\n" : "");

	rd(fd, b, (size_t)n);
}

/* Bytes written to a connection are not kept: fk.out holds only what the log got. */
static void conn_write(int fd, const char *s)
{
	size_t keep = fk.len;

	write_all(fd, s, strlen(s));
	fk.len = keep;
}

/* The server answers fd's oldest request whole, with `status` and a body of 2 bytes. */
static void resp(int fd, int status)
{
	char b[128];

	snprintf(b, sizeof(b), "HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok", status);
	conn_write(fd, b);
}

/* An access line as nginx's combined format writes it. */
static int acc(char *b, size_t n, const char *rl, int status)
{
	return snprintf(b, n, "127.0.0.1 - - [24/Nov/2026:06:05:44 +0000] \"%s\" %d 2 \"-\" \"t\"\n", rl,
			status);
}

static void wout_is(const char *want)
{
	fake_out_is(want, 400);
}

/* A batch of access lines for (request line, status, ID the line must get); want gets the result. */
struct bl {
	const char *rl;
	int status;
	const char *id; /* NULL: a line that names no request */
};

static void batch(const struct bl *l, int n, const char *cur, char *in, size_t isz, char *want,
		  size_t wsz)
{
	size_t i0 = 0, w0 = 0;

	for (int k = 0; k < n; k++) {
		char line[256];

		if (l[k].rl)
			acc(line, sizeof(line), l[k].rl, l[k].status);
		else
			snprintf(line, sizeof(line), "a line that names no request %d\n", k);
		i0 += (size_t)snprintf(in + i0, isz - i0, "%s", line);
		w0 += (size_t)snprintf(want + w0, wsz - w0, "[req:%s] %s", l[k].id ? l[k].id : cur, line);
	}
}

/* Writes the batch in one write(2) and checks every line; returns the system calls it took. */
static int batch_is(const struct bl *l, int n, const char *cur)
{
	static char in[1 << 16], want[1 << 17];
	int calls;

	batch(l, n, cur, in, sizeof(in), want, sizeof(want));
	fk.len = 0;
	calls = fk.calls;
	cr_assert_eq(wr(LOG, in, strlen(in)), (ssize_t)strlen(in));
	wout_is(want);
	return fk.calls - calls;
}

Test(wiring, a_batch_flushed_in_another_request_gives_each_line_its_request)
{
	static const struct bl lines[] = {
		{ "GET /a2 HTTP/1.1", 200, "id2" }, { "GET /a0 HTTP/1.1", 200, "id0" },
		{ NULL, 0, NULL },                   { "GET /a1 HTTP/1.1", 404, "id1" },
		{ "GET /a3 HTTP/1.1", 200, "id3" }, { "GET /nowhere HTTP/1.1", 200, NULL },
	};
	static const struct bl again[] = { { "GET /a2 HTTP/1.1", 200, NULL }, { "GET /a0 HTTP/1.1", 200, NULL } };

	for (int i = 0; i < 4; i++) {
		char rl[32], id[8];
		int fd = conn(i);

		snprintf(rl, sizeof(rl), "GET /a%d HTTP/1.1", i);
		snprintf(id, sizeof(id), "id%d", i);
		req(fd, rl, id);
		resp(fd, i == 1 ? 404 : 200);
	}
	req(conn(4), "GET /z HTTP/1.1", "flusher"); /* the request whose turn flushes the batch */
	cr_assert_eq(batch_is(lines, 6, "flusher"), 1, "one system call");
	/* each request is matched once: lines naming them again keep today's rule */
	cr_assert_eq(batch_is(again, 2, "flusher"), 1);
}

Test(wiring, identical_request_lines_go_to_their_requests_in_completion_order)
{
	static const struct bl lines[] = {
		{ "GET / HTTP/1.1", 200, "d2" }, { "GET / HTTP/1.1", 200, "d3" },
		{ "GET / HTTP/1.1", 200, "d1" }, { "GET / HTTP/1.1", 200, NULL },
	};
	int f[4];

	for (int i = 0; i < 3; i++) {
		char id[8];

		snprintf(id, sizeof(id), "d%d", i + 1);
		req(f[i] = conn(i), "GET / HTTP/1.1", id);
	}
	resp(f[1], 200);
	resp(f[2], 200);
	resp(f[0], 200);
	req(f[3] = conn(3), "GET /other HTTP/1.1", "cur");
	batch_is(lines, 4, "cur");
}

Test(wiring, the_status_tells_identical_request_lines_apart)
{
	static const struct bl lines[] = { { "GET /x HTTP/1.1", 200, "ok1" }, { "GET /x HTTP/1.1", 404, "nf" } };
	int a = conn(0), b = conn(1);

	req(a, "GET /x HTTP/1.1", "nf");
	resp(a, 404);
	req(b, "GET /x HTTP/1.1", "ok1");
	resp(b, 200);
	req(conn(2), "GET /c HTTP/1.1", "cur");
	batch_is(lines, 2, "cur");
}

/*
 * Every split of a request into two reads, and one read per byte, on one
 * keep-alive connection: the request line hashes the same. The batch of all
 * their lines (more than the stack holds decisions for) is one system call.
 */
Test(wiring, request_lines_split_across_reads_are_recognized)
{
	static struct bl lines[80];
	static char rls[80][48], ids[80][16];
	int fd = conn(0), n = 0;

	for (int cut = 1;; cut++) {
		char b[160];
		int len;

		snprintf(rls[n], sizeof(rls[n]), "GET /split%d HTTP/1.1", cut);
		snprintf(ids[n], sizeof(ids[n]), "sp%d", cut);
		len = snprintf(b, sizeof(b), "%s\r\nX-Request-Id: %s\r\n\r\n", rls[n], ids[n]);
		if (cut >= len)
			break;
		rd(fd, b, (size_t)cut);
		rd(fd, b + cut, (size_t)(len - cut));
		resp(fd, 200);
		lines[n] = (struct bl){ rls[n], 200, ids[n] };
		n++;
	}
	{
		static const char one[] = "GET /bytes HTTP/1.1\r\nX-Request-Id: bytes\r\n\r\n";

		for (size_t i = 0; i < sizeof(one) - 1; i++)
			rd(fd, one + i, 1);
		resp(fd, 200);
		lines[n++] = (struct bl){ "GET /bytes HTTP/1.1", 200, "bytes" };
	}
	req(conn(1), "GET /c HTTP/1.1", "cur");
	cr_assert_gt(n, 40);
	cr_assert_eq(batch_is(lines, n, "cur"), 1);
}

/* Requests with bodies (a length, chunks) and the requests after them in one read, answered in one write. */
Test(wiring, request_lines_after_bodies_in_one_read_are_recognized)
{
	static const char in[] = "POST /p HTTP/1.1\r\nContent-Length: 5\r\nX-Request-Id: p1\r\n\r\nhello"
				 "GET /after HTTP/1.1\r\nX-Request-Id: p2\r\n\r\n"
				 "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Request-Id: p3\r\n\r\n"
				 "3\r\nabc\r\n0\r\n\r\n"
				 "\r\nDELETE /d HTTP/1.1\r\nX-Request-Id: p4\r\n\r\n";
	static const struct bl lines[] = {
		{ "DELETE /d HTTP/1.1", 200, "p4" }, { "PUT /c HTTP/1.1", 201, "p3" },
		{ "GET /after HTTP/1.1", 200, "p2" }, { "POST /p HTTP/1.1", 200, "p1" },
	};
	int fd = conn(0);

	rd(fd, in, sizeof(in) - 1);
	conn_write(fd, "HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\nok"
		       "HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\nok"
		       "HTTP/1.1 201 X\r\nContent-Length: 2\r\n\r\nok"
		       "HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\nok");
	req(conn(1), "GET /c HTTP/1.1", "cur");
	batch_is(lines, 4, "cur");
}

/* A request is recorded when its response's last byte goes out, the order servers log in. */
Test(wiring, requests_complete_at_their_responses_last_byte)
{
	static const struct bl lines[] = { { "GET /same HTTP/1.1", 200, "b" }, { "GET /same HTTP/1.1", 200, "a" } };
	int a = conn(0), b = conn(1);

	req(a, "GET /same HTTP/1.1", "a");
	conn_write(a, "HTTP/1.1 200 X\r\nContent-Length: 4\r\n\r\n");
	req(b, "GET /same HTTP/1.1", "b");
	resp(b, 200);
	conn_write(a, "ab");
	conn_write(a, "cd");
	req(conn(2), "GET /c HTTP/1.1", "cur");
	batch_is(lines, 2, "cur");
}

/* A HEAD, a 204 and a 304 have no body: their heads are their last bytes. */
Test(wiring, responses_without_a_body_complete_with_their_head)
{
	static const struct bl lines[] = {
		{ "GET /n HTTP/1.1", 304, "nm" }, { "HEAD /h HTTP/1.1", 200, "hd" }, { "DELETE /x HTTP/1.1", 204, "nc" },
	};
	int fd = conn(0);

	req(fd, "HEAD /h HTTP/1.1", "hd");
	conn_write(fd, "HTTP/1.1 200 X\r\nContent-Length: 99\r\n\r\n");
	req(fd, "DELETE /x HTTP/1.1", "nc");
	conn_write(fd, "HTTP/1.1 204 X\r\n\r\n");
	req(fd, "GET /n HTTP/1.1", "nm");
	conn_write(fd, "HTTP/1.1 304 X\r\n\r\n");
	req(conn(1), "GET /c HTTP/1.1", "cur");
	batch_is(lines, 3, "cur");
}

/* The ring remembers the last RQ_CORR_RING requests: the lines of older ones keep today's rule. */
Test(wiring, the_ring_wraps_and_the_oldest_requests_are_forgotten)
{
	enum { N = RQ_CORR_RING + 104 };
	static struct bl lines[16];
	static char rls[16][32], ids[16][16];
	int fd = conn(0), n = 0;

	for (int i = 0; i < N; i++) {
		char rl[32], id[16];

		snprintf(rl, sizeof(rl), "GET /w%d HTTP/1.1", i);
		snprintf(id, sizeof(id), "w%d", i);
		req(fd, rl, id);
		resp(fd, 200);
	}
	for (int i = 100; i < 108; i++, n++) { /* w0..w103 are gone */
		snprintf(rls[n], sizeof(rls[n]), "GET /w%d HTTP/1.1", i);
		snprintf(ids[n], sizeof(ids[n]), "w%d", i);
		lines[n] = (struct bl){ rls[n], 200, i >= 104 ? ids[n] : NULL };
	}
	req(conn(1), "GET /c HTTP/1.1", "cur");
	batch_is(lines, n, "cur");
}

/*
 * A line is decided at its start, from the bytes of the write that starts
 * it: one whose request line is in its first piece gets its request; one cut
 * inside its request line keeps today's rule, and its request stays for the
 * next line that names it.
 */
Test(wiring, lines_split_across_writes_and_a_batch_that_ends_mid_line)
{
	int fd = conn(0);
	static const char *const w[] = {
		"x \"GET /s1 HTTP/1.1\" 200 2 par", "t of it\n",
		"y \"GET /s3 HTTP/1.1\" 200 2\nz \"GET /s2 HT", "TP/1.1\" 200 2\nw \"GET /s2 HTTP/1.1\" 200 2\n",
	};

	req(fd, "GET /s1 HTTP/1.1", "s1");
	resp(fd, 200);
	req(fd, "GET /s2 HTTP/1.1", "s2");
	resp(fd, 200);
	req(fd, "GET /s3 HTTP/1.1", "s3");
	resp(fd, 200);
	req(conn(1), "GET /c HTTP/1.1", "cur");
	fk.len = 0;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(wr(LOG, w[i], strlen(w[i])), (ssize_t)strlen(w[i]));
	wout_is("[req:s1] x \"GET /s1 HTTP/1.1\" 200 2 part of it\n"
		"[req:s3] y \"GET /s3 HTTP/1.1\" 200 2\n[req:cur] z \"GET /s2 HTTP/1.1\" 200 2\n"
		"[req:s2] w \"GET /s2 HTTP/1.1\" 200 2\n");
}

/* Lines spread over the iovecs of one writev are searched across them. */
Test(wiring, a_line_spread_over_iovecs_is_matched)
{
	static const char *const parts[] = { "1.2.3.4 \"GET /v", "ec HTTP/1", ".1\" 200 2\n", "nothing\n" };
	struct iovec v[4];
	struct rq_call k = { .how = RQ_WRITEV };
	size_t n = 0;
	int fd = conn(0);

	req(fd, "GET /vec HTTP/1.1", "vec");
	resp(fd, 200);
	req(conn(1), "GET /c HTTP/1.1", "cur");
	for (int i = 0; i < 4; i++) {
		v[i].iov_base = (void *)parts[i];
		n += v[i].iov_len = strlen(parts[i]);
	}
	fk.len = 0;
	cr_assert_eq(rq_io_write(LOG, v, 4, &k), (ssize_t)n);
	wout_is("[req:vec] 1.2.3.4 \"GET /vec HTTP/1.1\" 200 2\n[req:cur] nothing\n");
}

/* Each format puts the matched ID where it puts the current one. */
static void formats_case(const char *env, const char *in, const char *want)
{
	int fd;

	wenv(env);
	fd = conn(0);
	req(fd, "GET /j1 HTTP/1.1", "j1");
	resp(fd, 200);
	req(fd, "GET /j2 HTTP/1.1", "j2");
	resp(fd, 200);
	req(conn(1), "GET /c HTTP/1.1", "cur");
	fk.len = 0;
	cr_assert_eq(wr(LOG, in, strlen(in)), (ssize_t)strlen(in));
	wout_is(want);
}

Test(wiring, every_format_puts_the_matched_id_where_it_goes)
{
	static const char json_in[] = "{\"req\":\"GET /j2 HTTP/1.1\",\"status\":200}\n"
				      "plain \"GET /j1 HTTP/1.1\" 200 2\n{\"msg\":\"none\"}\n";

	formats_case("REQCTX_FORMAT=json", json_in,
		     "{\"request_id\":\"j2\",\"req\":\"GET /j2 HTTP/1.1\",\"status\":200}\n"
		     "[req:j1] plain \"GET /j1 HTTP/1.1\" 200 2\n{\"request_id\":\"cur\",\"msg\":\"none\"}\n");
	formats_case("REQCTX_FORMAT=auto", json_in,
		     "{\"request_id\":\"j2\",\"req\":\"GET /j2 HTTP/1.1\",\"status\":200}\n"
		     "[req:j1] plain \"GET /j1 HTTP/1.1\" 200 2\n{\"request_id\":\"cur\",\"msg\":\"none\"}\n");
	formats_case("REQCTX_FORMAT=logfmt",
		     "req=\"GET /j2 HTTP/1.1\" status=200\nts=1 GET /j1 HTTP/1.1 status=200\nmsg=none\n",
		     "request_id=j2 req=\"GET /j2 HTTP/1.1\" status=200\n"
		     "request_id=j1 ts=1 GET /j1 HTTP/1.1 status=200\nrequest_id=cur msg=none\n");
	formats_case("REQCTX_PREFIX=<%s> ", "\"GET /j1 HTTP/1.1\" 200\n\"GET /j2 HTTP/1.1\" 200\n",
		     "<j1> \"GET /j1 HTTP/1.1\" 200\n<j2> \"GET /j2 HTTP/1.1\" 200\n");
	/* a line that carries the matched request's own prefix already gets no second one */
	formats_case("REQCTX_FORMAT=prefix", "[req:j1] \"GET /j1 HTTP/1.1\" 200\n[req:cur] \"GET /j2 HTTP/1.1\" 200\n",
		     "[req:j1] \"GET /j1 HTTP/1.1\" 200\n[req:j2] [req:cur] \"GET /j2 HTTP/1.1\" 200\n");
}

Test(wiring, with_correlate_0_every_line_keeps_the_current_id)
{
	static const struct bl lines[] = { { "GET /a HTTP/1.1", 200, NULL }, { "GET /b HTTP/1.1", 200, NULL } };
	int fd;

	wenv("REQCTX_CORRELATE=0");
	fd = conn(0);
	req(fd, "GET /a HTTP/1.1", "a");
	resp(fd, 200);
	req(fd, "GET /b HTTP/1.1", "b");
	resp(fd, 200);
	req(conn(1), "GET /c HTTP/1.1", "cur");
	batch_is(lines, 2, "cur");
}

/* Outside any request with REQCTX_UNKNOWN=bare: matched lines get their request, the others nothing. */
Test(wiring, a_batch_written_outside_requests_with_bare_unknown)
{
	static const char in[] = "\"GET /u HTTP/1.1\" 200 2\nboot line\n";
	int fd;

	wenv("REQCTX_UNKNOWN=bare");
	fd = conn(0);
	req(fd, "GET /u HTTP/1.1", "u1");
	resp(fd, 200);
	rq_ctx_clear();
	fk.len = 0;
	cr_assert_eq(wr(LOG, in, sizeof(in) - 1), (ssize_t)sizeof(in) - 1);
	wout_is("[req:u1] \"GET /u HTTP/1.1\" 200 2\nboot line\n");
}

/*
 * An error-log line (alone in its write, no status after the request line)
 * naming the request in progress is about that request: it keeps the
 * current ID and takes nothing, so the access lines find theirs.
 */
Test(wiring, an_error_line_about_the_request_in_progress_takes_nothing)
{
	static const char err[] = "2026/11/24 06:05:44 [error] 1#1: *1 open() \"/x\" failed, request: "
				  "\"GET /e HTTP/1.1\", host: \"h\"\n";
	static const struct bl lines[] = { { "GET /e HTTP/1.1", 200, "e0" }, { "GET /e HTTP/1.1", 200, "ea" } };
	int a = conn(0), b = conn(1);

	req(a, "GET /e HTTP/1.1", "e0");
	resp(a, 200); /* completed; its line is still in a buffer */
	req(b, "GET /e HTTP/1.1", "ea");
	fk.len = 0;
	cr_assert_eq(wr(LOG, err, sizeof(err) - 1), (ssize_t)sizeof(err) - 1);
	{
		char want[256];

		snprintf(want, sizeof(want), "[req:ea] %s", err);
		wout_is(want);
	}
	resp(b, 200);
	req(conn(2), "GET /c HTTP/1.1", "cur");
	batch_is(lines, 2, "cur");
}

/*
 * On a keep-alive connection, the access line of a request written after
 * the next request was read (in that request's context) gets its own
 * request's ID, with identical request lines too; the next one's line,
 * written after its response, gets the next one's.
 */
Test(wiring, an_access_line_written_after_the_next_request_was_read)
{
	static const char *const rls[] = { "GET /k HTTP/1.1", "GET /k HTTP/1.1", "GET /k3 HTTP/1.1", "GET /k4 HTTP/1.1" };
	static const char *const ids[] = { "k1", "k2", "k3", "k4" };
	int fd = conn(0);
	char line[256], want[512];

	for (int i = 0; i < 4; i += 2) {
		req(fd, rls[i], ids[i]);
		resp(fd, 200);
		req(fd, rls[i + 1], ids[i + 1]); /* the context is now the next request's */
		for (int j = i; j < i + 2; j++) {
			acc(line, sizeof(line), rls[j], 200);
			snprintf(want, sizeof(want), "[req:%s] %s", ids[j], line);
			fk.len = 0;
			cr_assert_eq(wr(LOG, line, strlen(line)), (ssize_t)strlen(line));
			wout_is(want);
			if (j == i)
				resp(fd, 200);
		}
	}
}

/*
 * A server that logs a request before its response goes out (Python's
 * http.server logs in send_response): the line keeps the current ID, and the
 * request, once complete, is recorded as matched, so that no later line
 * takes it.
 */
Test(wiring, a_line_written_before_its_response_leaves_nothing_behind)
{
	static const struct bl late[] = { { "GET /py HTTP/1.1", 200, "py3" }, { "GET /py HTTP/1.1", 200, NULL } };
	char line[256], want[512];

	for (int i = 0; i < 2; i++) {
		int fd = conn(i);
		char id[8];

		snprintf(id, sizeof(id), "py%d", i + 1);
		req(fd, "GET /py HTTP/1.1", id);
		acc(line, sizeof(line), "GET /py HTTP/1.1", 200);
		snprintf(want, sizeof(want), "[req:%s] %s", id, line);
		fk.len = 0;
		cr_assert_eq(wr(LOG, line, strlen(line)), (ssize_t)strlen(line));
		wout_is(want);
		resp(fd, 200);
	}
	req(conn(2), "GET /py HTTP/1.1", "py3");
	resp(2 + CONNS, 200); /* completed, its line not written yet */
	req(conn(3), "GET /c HTTP/1.1", "cur");
	batch_is(late, 2, "cur");
}

/* The batch of the short-write test: six matched lines, two that are not. */
static void short_batch(int round, char *in, size_t isz, char *want, size_t wsz)
{
	static char rls[6][48], ids[6][24];
	struct bl l[8];
	int n = 0, fd = conn(0);

	for (int j = 0; j < 6; j++) {
		snprintf(rls[j], sizeof(rls[j]), "GET /c%d-%d HTTP/1.1", round, j);
		snprintf(ids[j], sizeof(ids[j]), "id-%d-%d", round, j);
		req(fd, rls[j], ids[j]);
		resp(fd, 200);
	}
	req(conn(1), "GET /cur HTTP/1.1", "cur");
	for (int j = 0; j < 6; j++) {
		l[n++] = (struct bl){ rls[5 - j], 200, ids[5 - j] };
		if (j == 2 || j == 4)
			l[n++] = (struct bl){ NULL, 0, NULL };
	}
	batch(l, n, "cur", in, isz, want, wsz);
}

/*
 * Under every short write (the kernel taking 1, 2, ... bytes per call) and
 * a write that fails first with EAGAIN, a careful writer's batch comes out
 * as one whole write does: a line that had not begun when a write stopped
 * gives its request back, and the next write decides it again.
 */
Test(wiring, short_and_failed_writes_give_the_lines_their_requests_all_the_same, .timeout = 120)
{
	static char in[4096], want[8192];
	size_t len;

	short_batch(0, in, sizeof(in), want, sizeof(want));
	len = strlen(want);
	for (size_t cap = 1; cap <= len + 1; cap++) {
		short_batch((int)cap, in, sizeof(in), want, sizeof(want));
		fk.len = 0;
		fk.cap = cap <= len ? cap : (size_t)-1;
		if (cap > len) { /* the last round: the first call fails */
			fk.fail_at = fk.calls + 1;
			fk.fail_errno = EAGAIN;
		}
		write_all(LOG, in, strlen(in));
		fk.cap = (size_t)-1;
		fk.fail_at = 0;
		fk.out[fk.len] = '\0';
		cr_assert_str_eq(fk.out, want, "cap %zu", cap);
	}
}

/*
 * The one-line path: a line alone in its write, written in its own
 * request's context after its response (an unbuffered access log), while an
 * older identical request waits unlogged: a write that fails gives its own
 * request back, and the retry takes it again, not the older one.
 */
Test(wiring, a_line_in_its_own_context_whose_write_fails_keeps_its_request)
{
	int a = conn(0), b = conn(1);
	char line[256], want[512];

	req(a, "GET /same HTTP/1.1", "stale");
	resp(a, 200);
	req(b, "GET /same HTTP/1.1", "own");
	resp(b, 200);
	acc(line, sizeof(line), "GET /same HTTP/1.1", 200);
	snprintf(want, sizeof(want), "[req:own] %s", line);
	fk.len = 0;
	fk.fail_at = fk.calls + 1;
	fk.fail_errno = EAGAIN;
	write_all(LOG, line, strlen(line));
	fk.fail_at = 0;
	wout_is(want);
	/* the older one is still there for the line that names it */
	req(conn(2), "GET /c HTTP/1.1", "cur");
	snprintf(want, sizeof(want), "[req:stale] %s", line);
	fk.len = 0;
	write_all(LOG, line, strlen(line));
	wout_is(want);
}

/* The one-line path: a line alone in its write that names another request, cut or failing. */
Test(wiring, a_line_alone_that_names_another_request_under_short_writes)
{
	int fd = conn(0);
	char line[256], want[512];

	for (size_t cap = 1; cap < 200; cap++) {
		char rl[48], id[24];

		snprintf(rl, sizeof(rl), "GET /one%zu HTTP/1.1", cap);
		snprintf(id, sizeof(id), "one-%zu", cap);
		req(fd, rl, id);
		resp(fd, 200);
		req(fd, "GET /next HTTP/1.1", "next"); /* in progress: the line is written in its turn */
		acc(line, sizeof(line), rl, 200);
		snprintf(want, sizeof(want), "[req:%s] %s", id, line);
		if (cap >= strlen(want))
			break;
		fk.len = 0;
		fk.cap = cap;
		fk.fail_at = cap % 3 == 0 ? fk.calls + 1 : 0; /* every third round fails first */
		fk.fail_errno = EAGAIN;
		write_all(LOG, line, strlen(line));
		fk.cap = (size_t)-1;
		fk.fail_at = 0;
		fk.out[fk.len] = '\0';
		cr_assert_str_eq(fk.out, want, "cap %zu", cap);
		resp(fd, 200);
	}
}

/* A buffered stdio log: each line gets its request when it goes into the FILE. */
Test(wiring, a_buffered_stdio_log_matches_each_line_as_it_is_produced)
{
	char path[] = "/tmp/reqctx-corr-XXXXXX", got[1024];
	int tfd = mkstemp(path), fd = conn(0);
	static const char in[] = "\"GET /f2 HTTP/1.1\" 200 2\nplain\n\"GET /f1 HTTP/1.1\" 200 2\n";
	struct iovec v = { (void *)in, sizeof(in) - 1 };
	FILE *f;
	ssize_t n;

	cr_assert_geq(tfd, 0);
	unlink(path);
	cr_assert_eq(rq_fd_set_log(tfd), 0);
	f = fdopen(tfd, "w");
	cr_assert_not_null(f);
	req(fd, "GET /f1 HTTP/1.1", "f1");
	resp(fd, 200);
	req(fd, "GET /f2 HTTP/1.1", "f2");
	resp(fd, 200);
	req(conn(1), "GET /c HTTP/1.1", "cur");
	flockfile(f);
	cr_assert_eq(rq_stdio_put(f, rq_stdio_log(f), &v, 1), sizeof(in) - 1);
	funlockfile(f);
	cr_assert_eq(fflush(f), 0);
	n = pread(tfd, got, sizeof(got) - 1, 0);
	cr_assert_gt(n, 0);
	got[n] = '\0';
	cr_assert_str_eq(got, "[req:f2] \"GET /f2 HTTP/1.1\" 200 2\n[req:cur] plain\n[req:f1] \"GET /f1 HTTP/1.1\" 200 2\n");
	fclose(f);
}
