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
