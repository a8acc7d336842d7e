/*
 * Building HTTP/2 frames for the suites (test_h2.c, test_h2wire.c), and the
 * independent reference that checks a wire (tests/h2ref.py, python3-h2 and
 * python3-hpack).
 *
 * A suite defines H2_BUF_CAP, the bytes one struct buf holds, before it
 * includes this; put() fails the test past it. H2_REF_TMP, the mkstemp
 * template of the reference's input file, may be defined too.
 */
#ifndef RQ_TEST_H2FRAMES_H
#define RQ_TEST_H2FRAMES_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef H2_BUF_CAP
#error "define H2_BUF_CAP (the bytes of a struct buf) before including h2frames.h"
#endif
#ifndef H2_REF_TMP
#define H2_REF_TMP "/tmp/rq_h2ref.XXXXXX"
#endif

/* ---- frames ---- */

struct buf {
	size_t n;
	uint8_t b[H2_BUF_CAP];
};

static inline void put(struct buf *b, const void *p, size_t n)
{
	cr_assert_leq(b->n + n, sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static inline void put8(struct buf *b, unsigned v)
{
	uint8_t c = (uint8_t)v;

	put(b, &c, 1);
}

static inline void frame(struct buf *b, unsigned type, unsigned flags, uint32_t sid,
			 const void *p, size_t n)
{
	uint8_t h[9] = { (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, (uint8_t)type,
			 (uint8_t)flags, (uint8_t)(sid >> 24), (uint8_t)(sid >> 16),
			 (uint8_t)(sid >> 8), (uint8_t)sid };

	put(b, h, 9);
	put(b, p, n);
}

/* An HPACK integer with an N-bit prefix after the bits `hi`. */
static inline void hint(struct buf *b, unsigned hi, int bits, uint64_t v)
{
	uint64_t max = (1u << bits) - 1;

	if (v < max) {
		put8(b, hi | (unsigned)v);
		return;
	}
	put8(b, hi | (unsigned)max);
	v -= max;
	while (v >= 128) {
		put8(b, (unsigned)(v % 128) | 0x80);
		v /= 128;
	}
	put8(b, (unsigned)v);
}

/* A literal without indexing, new name, raw strings. */
static inline void lit(struct buf *b, const char *name, const char *value)
{
	put8(b, 0);
	hint(b, 0, 7, strlen(name));
	put(b, name, strlen(name));
	hint(b, 0, 7, strlen(value));
	put(b, value, strlen(value));
}

/* The gn bytes at got are exactly want's. */
static inline void expect_mem(const void *got, size_t gn, const struct buf *want, const char *what)
{
	size_t i = 0;
	const uint8_t *g = got;

	while (i < gn && i < want->n && g[i] == want->b[i])
		i++;
	cr_assert(gn == want->n && i == gn, "%s: %zu bytes, want %zu; first difference at %zu",
		  what, gn, want->n, i);
}

/* ---- the independent reference (tests/h2ref.py) ---- */

static inline const char *ref_script(void)
{
	static char path[512];
	const char *b = getenv("REQCTX_BUILD");

	snprintf(path, sizeof(path), "%s/../tests/h2ref.py", b && *b ? b : "build");
	return path;
}

static inline void hexline(FILE *f, const char *word, const void *p, size_t n)
{
	const uint8_t *b = p;

	fprintf(f, "%s ", word);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", b[i]);
}

/*
 * The reference's input, one file: the original bytes (ORIG), the IDs each
 * stream must get (IDS, "sid=id ..."), then one WIRE line per wire to check.
 */
struct ref {
	char path[64];
	FILE *f;
	int wires;
};

/* Starts the reference's file: ORIG the n bytes at orig, frames of at most mfs bytes. */
static inline void ref_open(struct ref *r, const void *orig, size_t n, const char *ids, unsigned mfs)
{
	int fd;

	snprintf(r->path, sizeof(r->path), H2_REF_TMP);
	fd = mkstemp(r->path);
	cr_assert_geq(fd, 0);
	r->f = fdopen(fd, "w");
	r->wires = 0;
	fprintf(r->f, "MFS %u\n", mfs);
	hexline(r->f, "ORIG", orig, n);
	fprintf(r->f, "\nIDS %s\n", ids);
}

/* A wire of n bytes made from ORIG written in writes that ended at the ncuts offsets `cuts`. */
static inline void ref_wire_at(struct ref *r, const void *wire, size_t n, const size_t *cuts,
			       int ncuts)
{
	hexline(r->f, "WIRE", wire, n);
	for (int i = 0; i < ncuts; i++)
		fprintf(r->f, "%c%zu", i ? ',' : ' ', cuts[i]);
	fputc('\n', r->f);
	r->wires++;
}

/* Every wire must decode to ORIG with the IDs added, and nothing else changed. */
static inline void ref_finish(struct ref *r)
{
	char cmd[1024], line[4096];
	FILE *p;
	int n = 0;

	fclose(r->f);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s check < %s", ref_script(), r->path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p)) {
		cr_assert_str_eq(line, "ok\n", "wire %d: %s", n, line);
		n++;
	}
	cr_assert_eq(pclose(p), 0, "%s failed", cmd);
	unlink(r->path);
	cr_assert_eq(n, r->wires, "the reference answered %d of %d", n, r->wires);
	cr_assert_gt(n, 0);
}

#endif
