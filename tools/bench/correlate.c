/*
 * bench_correlate: the log-correlation matcher (src/correlate.c, linked
 * directly), for counting its instructions per log line under callgrind.
 *
 *   bench_correlate MODE [N]
 *
 *   miss      rq_corr_match on bench_calls' 80-byte stderr line, which names
 *             no request line, with a ring that is not empty (the cost every
 *             log line would pay)
 *   combined  batches of 100: 100 requests over 8 request lines complete,
 *             then their 100 nginx combined-format lines are matched
 *   same      the same with one request line for all ("GET / HTTP/1.1" from
 *             many clients: the longest walks)
 *
 * Count rq_corr_match (callgrind --toggle-collect=rq_corr_match) for the
 * matching, rq_corr_done for recording the completions; their request-line
 * hashes are made beforehand, as the request scanner would make them while
 * reading. Prints the lines matched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "correlate.h"

#define LINE "GET /index.html 200 0.000123s upstream=127.0.0.1:8080 bytes=612 ua=curl/7.88.1\n"
#define BATCH 100

static const char *const paths[8] = { "/", "/index.html", "/api/orders", "/a", "/", "/b?x=1",
				      "/static/app.js", "/" };
static char lines[BATCH][256];
static size_t lens[BATCH];

void complete(const struct rq_corr_key *keys, long base);
long match_lines(const char (*l)[256], const size_t *len, int n);

/* Records BATCH completed requests: a hash of each request line, as the request scanner makes it. */
__attribute__((noinline, noclone)) void complete(const struct rq_corr_key *keys, long base)
{
	static const char id[] = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";

	for (int i = 0; i < BATCH; i++)
		rq_corr_done(&rq_corr_ring, keys[i], 200, (uint64_t)(base + i + 1), id, sizeof(id) - 1);
}

__attribute__((noinline, noclone)) long match_lines(const char (*l)[256], const size_t *len, int n)
{
	long hits = 0;

	for (int i = 0; i < n; i++) {
		struct rq_ctx c;

		hits += rq_corr_match(&rq_corr_ring, l[i], len[i], 0, &c);
	}
	return hits;
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 100000, hits = 0;
	const char *mode = argc > 1 ? argv[1] : "";
	int same = !strcmp(mode, "same");
	struct rq_corr_key keys[BATCH];

	rq_corr_init();
	for (int i = 0; i < BATCH; i++) {
		char rl[64];
		int k = snprintf(rl, sizeof(rl), "GET %s HTTP/1.1", same ? "/" : paths[i % 8]);

		keys[i] = rq_corr_key_of(rl, (size_t)k);
	}
	if (!strcmp(mode, "miss")) {
		complete(keys, 0);
		strcpy(lines[0], LINE);
		lens[0] = strlen(LINE);
		for (long i = 0; i < n; i++)
			hits += match_lines(lines, lens, 1);
	} else if (same || !strcmp(mode, "combined")) {
		for (int i = 0; i < BATCH; i++)
			lens[i] = (size_t)snprintf(lines[i], sizeof(lines[i]),
					   "127.0.0.1 - - [24/Nov/2026:06:05:44 +0000] \"GET %s HTTP/1.1\" "
					   "200 612 \"-\" \"curl/7.88.1\"\n", same ? "/" : paths[i % 8]);
		for (long b = 0; b < n; b += BATCH) {
			complete(keys, b);
			hits += match_lines(lines, lens, BATCH);
		}
	} else {
		fprintf(stdout, "usage: bench_correlate miss|combined|same [N]\n");
		return 2;
	}
	printf("matched %ld\n", hits);
	return 0;
}
