/* Replays the fuzz corpus (tests/fuzz/corpus) through the fuzz targets, built without libFuzzer. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz/targets.h"

static int replay(const char *sub, int (*target)(const uint8_t *, size_t))
{
	char dir[512];
	struct dirent *d;
	DIR *dh;
	int n = 0;
	const char *b = getenv("REQCTX_BUILD");

	snprintf(dir, sizeof(dir), "%s/../tests/fuzz/corpus/%s", b && *b ? b : "build", sub);
	dh = opendir(dir);
	cr_assert_not_null(dh, "no corpus at %s", dir);
	while ((d = readdir(dh))) {
		char path[1024];
		static uint8_t buf[1 << 20];
		FILE *f;
		size_t len;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		f = fopen(path, "rb");
		cr_assert_not_null(f);
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		cr_assert_eq(target(buf, len), 0, "%s", path);
		n++;
	}
	closedir(dh);
	return n;
}

Test(fuzz, http_corpus_replays_clean)
{
	cr_assert_geq(replay("http", rq_fuzz_http), 6);
}

Test(fuzz, prefix_corpus_replays_clean)
{
	cr_assert_geq(replay("prefix", rq_fuzz_prefix), 3);
}

Test(fuzz, fcgi_corpus_replays_clean)
{
	cr_assert_geq(replay("fcgi", rq_fuzz_fcgi), 8);
}

Test(fuzz, h2_corpus_replays_clean)
{
	cr_assert_geq(replay("h2", rq_fuzz_h2), 12);
}
