/*
 * bench_genlog: writes a large log as the library would leave it, for
 * timing `reqctx logs --id` against grep -F.
 *
 *   bench_genlog FILE MB ID
 *
 * Lines look like nginx's combined access log with the "[req:<id>] " prefix:
 * each request has a fresh pseudo-random UUIDv4 and 1 to 4 lines, one line
 * in 64 says "unknown", and request ID (1 request in 1000) is sprinkled
 * through the whole file. Deterministic: the same MB gives the same file.
 * Prints "lines N" and "id_lines K".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One request in this many is the searched ID. */
#define ID_EVERY 1000

static uint64_t state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t z = (state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void uuid(char out[37])
{
	uint64_t a = rnd(), b = rnd();

	snprintf(out, 37, "%08x-%04x-4%03x-%x%03x-%012llx", (unsigned)(a >> 32),
		 (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff, 8 + (unsigned)(b >> 62),
		 (unsigned)(b >> 48) & 0xfff, (unsigned long long)(b & 0xffffffffffffull));
}

int main(int argc, char **argv)
{
	static const char *const paths[] = { "/", "/index.html", "/api/v1/items?page=2",
					     "/static/app.js", "/favicon.ico" };
	unsigned long long lines = 0, id_lines = 0, limit, bytes = 0;
	char id[160];
	FILE *f;

	if (argc != 4 || atoll(argv[2]) <= 0 || strlen(argv[3]) > 128) {
		fprintf(stderr, "usage: bench_genlog FILE MB ID\n");
		return 2;
	}
	limit = (unsigned long long)atoll(argv[2]) << 20;
	f = fopen(argv[1], "w");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	for (unsigned long long req = 0; bytes < limit; req++) {
		uint64_t r = rnd();
		int n = 1 + (int)(r & 3), mine = r % ID_EVERY == 7;

		if (mine)
			snprintf(id, sizeof(id), "%s", argv[3]);
		else if ((r >> 8) % 64 == 0)
			strcpy(id, "unknown");
		else
			uuid(id);
		for (int i = 0; i < n; i++) {
			int w = fprintf(f, "[req:%s] 127.0.0.%u - - [24/Nov/2026:05:52:%02u +0000] "
				       "\"GET %s HTTP/1.1\" 200 %u \"-\" \"curl/7.88.1\"\n",
				       id, (unsigned)(r >> 16) % 250 + 1, (unsigned)(req % 60),
				       paths[(r >> 24) % 5], (unsigned)(r >> 32) % 40000);

			if (w < 0) {
				perror(argv[1]);
				return 1;
			}
			bytes += (unsigned)w;
			lines++;
			id_lines += mine;
		}
	}
	if (fclose(f) != 0) {
		perror(argv[1]);
		return 1;
	}
	printf("lines %llu\nid_lines %llu\n", lines, id_lines);
	return 0;
}
