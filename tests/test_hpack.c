/*
 * The HPACK decoder against RFC 7541 Appendix C (C.2 to C.6, with and without
 * Huffman coding, with eviction), each block fed whole, at every split point
 * and a byte at a time; and against hostile input.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "hpack.h"
#include "id.h"

static void config(const char *header)
{
	static char buf[128];
	static const char *env[2];

	snprintf(buf, sizeof(buf), "REQCTX_HEADER=%s", header);
	env[0] = buf;
	env[1] = NULL;
	test_config(env);
}

static size_t dehex(const char *s, uint8_t *out)
{
	size_t n = 0;

	while (*s) {
		unsigned v;

		if (*s == ' ' || *s == '\n') {
			s++;
			continue;
		}
		cr_assert(sscanf(s, "%2x", &v) == 1, "bad hex at %s", s);
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

/* What a block gave: "id=<v>" / "id?" (present, no valid value) / "-", then ";st=<n>". */
static const char *result(const struct rq_hpack *d)
{
	static char out[300];

	if (d->id_have)
		snprintf(out, sizeof(out), "id=%.*s;st=%u", d->id_len, d->id, d->status);
	else
		snprintf(out, sizeof(out), "%s;st=%u", d->id_seen ? "id?" : "-", d->status);
	return out;
}

/* The dynamic table, newest first: "size/nlen/kind,...", then "=total". */
static const char *table(const struct rq_hpack *d)
{
	static char out[4096];
	size_t len = 0;
	uint32_t size, nlen;
	int kind;

	out[0] = '\0';
	for (uint32_t i = 1; rq_hp_entry(d, i, &size, &nlen, &kind) == 0; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%u/%u/%d,", size, nlen, kind);
	snprintf(out + len, sizeof(out) - len, "=%u", d->size);
	return out;
}

/*
 * Decodes one block from state *d, split at `cut` (0: whole; SIZE_MAX: one
 * byte at a time). Returns the decoder's verdict.
 */
static int block(struct rq_hpack *d, struct rq_hp_vals *v, const uint8_t *b, size_t n, size_t cut)
{
	int r = RQ_HP_OK;

	rq_hp_begin(d);
	if (cut == SIZE_MAX) {
		for (size_t i = 0; i < n && r == RQ_HP_OK; i++)
			r = rq_hp_feed(d, v, b + i, 1);
	} else {
		if (cut > n)
			cut = n;
		r = rq_hp_feed(d, v, b, cut);
		if (r == RQ_HP_OK)
			r = rq_hp_feed(d, v, b + cut, n - cut);
	}
	return r == RQ_HP_OK ? rq_hp_end(d) : r;
}

struct step {
	const char *hex;
	const char *result; /* result() after the block */
	const char *table;  /* table() after the block */
};

/* Runs a sequence of blocks on one decoder, for every split point of every block. */
static void sequence(uint32_t max, const struct step *s, int nsteps)
{
	static struct rq_hpack d;
	static struct rq_hp_vals v;
	uint8_t b[8][512];
	size_t n[8], longest = 0;

	for (int i = 0; i < nsteps; i++) {
		n[i] = dehex(s[i].hex, b[i]);
		if (n[i] > longest)
			longest = n[i];
	}
	for (size_t cut = 0; cut <= longest + 1; cut++) {
		size_t c = cut == longest + 1 ? SIZE_MAX : cut;

		rq_hp_init(&d, max, max);
		rq_hp_vals_init(&v);
		for (int i = 0; i < nsteps; i++) {
			int r = block(&d, &v, b[i], n[i], c);

			cr_assert_eq(r, RQ_HP_OK, "block %d cut %zu: %d", i + 1, c, r);
			cr_assert_str_eq(result(&d), s[i].result, "block %d cut %zu: %s", i + 1, c, result(&d));
			cr_assert_str_eq(table(&d), s[i].table, "block %d cut %zu: %s", i + 1, c, table(&d));
		}
	}
}

/* ---- C.2: single representations ---- */

Test(hpack, c2_1_literal_with_indexing)
{
#define C2_1 "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"
	static const struct step s[] = {
		{ C2_1, "id=custom-header;st=0", "55/10/1,=55" },
	};
	static const struct step t[] = {
		{ C2_1, "-;st=0", "55/10/0,=55" },
	};

	config("Custom-Key");
	sequence(4096, s, 1);
	config("X-Request-Id");
	sequence(4096, t, 1);
#undef C2_1
}

Test(hpack, c2_2_literal_without_indexing)
{
	static const struct step s[] = {
		{ "040c 2f73 616d 706c 652f 7061 7468", "-;st=0", "=0" },
	};

	config("X-Request-Id");
	sequence(4096, s, 1);
}

Test(hpack, c2_3_literal_never_indexed)
{
	static const struct step s[] = {
		{ "1008 7061 7373 776f 7264 0673 6563 7265 74", "id=secret;st=0", "=0" },
	};

	config("password");
	sequence(4096, s, 1);
}

Test(hpack, c2_4_indexed)
{
	static const struct step s[] = { { "82", "-;st=0", "=0" } };

	config("X-Request-Id");
	sequence(4096, s, 1);
}

/* ---- C.3 / C.4: requests ---- */

#define C3_1 "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"
#define C3_2 "8286 84be 5808 6e6f 2d63 6163 6865"
#define C3_3 "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"
#define C4_1 "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"
#define C4_2 "8286 84be 5886 a8eb 1064 9cbf"
#define C4_3 "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"

#define T1 "57/10/0,=57"
#define T2 "53/13/0,57/10/0,=110"
#define T3 "54/10/1,53/13/0,57/10/0,=164"

Test(hpack, c3_requests_without_huffman)
{
	/* with custom-key as the ID header; a fourth block references it (index 62) */
	static const struct step s[] = {
		{ C3_1, "-;st=0", T1 },
		{ C3_2, "-;st=0", T2 },
		{ C3_3, "id=custom-value;st=0", T3 },
		{ "8287 85be", "id=custom-value;st=0", T3 },
	};

	config("custom-key");
	sequence(4096, s, 4);
}

Test(hpack, c4_requests_with_huffman)
{
	static const struct step s[] = {
		{ C4_1, "-;st=0", T1 },
		{ C4_2, "-;st=0", T2 },
		{ C4_3, "id=custom-value;st=0", T3 },
		{ "8287 85be", "id=custom-value;st=0", T3 },
	};

	config("custom-key");
	sequence(4096, s, 4);
}

Test(hpack, c3_c4_cache_control_as_the_id_header)
{
	/* cache-control: no-cache, literal (C.3.2, C.4.2) and then indexed (index 63 in C.3.3) */
	static const struct step raw[] = {
		{ C3_1, "-;st=0", T1 },
		{ C3_2, "id=no-cache;st=0", "53/13/1,57/10/0,=110" },
		{ C3_3, "-;st=0", "54/10/0,53/13/1,57/10/0,=164" },
		{ "82 bf", "id=no-cache;st=0", "54/10/0,53/13/1,57/10/0,=164" },
	};
	static const struct step huff[] = {
		{ C4_1, "-;st=0", T1 },
		{ C4_2, "id=no-cache;st=0", "53/13/1,57/10/0,=110" },
		{ C4_3, "-;st=0", "54/10/0,53/13/1,57/10/0,=164" },
		{ "82 bf", "id=no-cache;st=0", "54/10/0,53/13/1,57/10/0,=164" },
	};

	config("cache-control");
	sequence(4096, raw, 4);
	sequence(4096, huff, 4);
}

/* ---- C.5 / C.6: responses, 256-byte table, evictions ---- */

#define C5_1 "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133" \
	     "2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70" \
	     "6c65 2e63 6f6d"
#define C5_2 "4803 3330 37c1 c0bf"
#define C5_3 "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d" \
	     "54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049" \
	     "5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e" \
	     "3d31"
#define C6_1 "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6" \
	     "2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3"
#define C6_2 "4883 640e ffc1 c0bf"
#define C6_3 "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab" \
	     "77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f" \
	     "9587 3160 65c0 03ed 4ee5 b106 3d50 07"

/* location (id), date, cache-control, :status */
#define R1 "63/8/1,65/4/0,52/13/0,42/7/2,=222"
#define R2 "42/7/2,63/8/1,65/4/0,52/13/0,=222"
#define R3 "98/10/0,52/16/0,65/4/0,=215"

Test(hpack, c5_responses_without_huffman)
{
	/* location is the ID header: a literal in C.5.1, then index 63 from the pool in C.5.2 */
	static const struct step s[] = {
		{ C5_1, "id=https://www.example.com;st=302", R1 },
		{ C5_2, "id=https://www.example.com;st=307", R2 },
		{ C5_3, "id=https://www.example.com;st=200", R3 },
	};

	config("location");
	sequence(256, s, 3);
}

Test(hpack, c6_responses_with_huffman)
{
	static const struct step s[] = {
		{ C6_1, "id=https://www.example.com;st=302", R1 },
		{ C6_2, "id=https://www.example.com;st=307", R2 },
		{ C6_3, "id=https://www.example.com;st=200", R3 },
	};

	config("location");
	sequence(256, s, 3);
}

Test(hpack, c5_c6_invalid_values_are_present_without_an_id)
{
	/* date values have spaces and commas; set-cookie too */
	static const struct step raw[] = {
		{ C5_1, "id?;st=302", "63/8/0,65/4/1,52/13/0,42/7/2,=222" },
		{ C5_2, "id?;st=307", "42/7/2,63/8/0,65/4/1,52/13/0,=222" },
		{ C5_3, "id?;st=200", "98/10/0,52/16/0,65/4/1,=215" },
	};
	static const struct step huff[] = {
		{ C6_1, "id?;st=302", "63/8/0,65/4/1,52/13/0,42/7/2,=222" },
		{ C6_2, "id?;st=307", "42/7/2,63/8/0,65/4/1,52/13/0,=222" },
		{ C6_3, "id?;st=200", "98/10/0,52/16/0,65/4/1,=215" },
	};

	config("date");
	sequence(256, raw, 3);
	sequence(256, huff, 3);
}

/* ---- the table and its limits ---- */

static int feed_hex(struct rq_hpack *d, struct rq_hp_vals *v, const char *hex)
{
	static uint8_t b[4096];
	size_t n = dehex(hex, b);

	return block(d, v, b, n, 0);
}

Test(hpack, size_updates_evict_and_an_entry_too_big_empties_the_table)
{
	static struct rq_hpack d;

	config("custom-key");
	rq_hp_init(&d, 4096, 4096);
	cr_assert_eq(feed_hex(&d, NULL, C3_1), RQ_HP_OK);
	cr_assert_eq(feed_hex(&d, NULL, C3_2), RQ_HP_OK);
	cr_assert_str_eq(table(&d), T2);
	/* an update to 60 keeps only what fits: nothing (53 + 57 > 60 and 53 < 60: the newest) */
	cr_assert_eq(feed_hex(&d, NULL, "3f1d 82"), RQ_HP_OK); /* 31 + 29 = 60 */
	cr_assert_str_eq(table(&d), "53/13/0,=53");
	/* 0 empties it */
	cr_assert_eq(feed_hex(&d, NULL, "20"), RQ_HP_OK);
	cr_assert_str_eq(table(&d), "=0");
	/* two updates at the start of a block are allowed (RFC 7541 4.2) */
	cr_assert_eq(feed_hex(&d, NULL, "20 3fe11f 82"), RQ_HP_OK); /* 0, then 4096 */
	cr_assert_eq(d.max, 4096);
	/* an entry bigger than the table empties it and is not added */
	cr_assert_eq(feed_hex(&d, NULL, C3_1), RQ_HP_OK);
	cr_assert_eq(feed_hex(&d, NULL, "3f19"), RQ_HP_OK); /* max 56 */
	cr_assert_str_eq(table(&d), "=0");
	cr_assert_eq(feed_hex(&d, NULL, C3_1), RQ_HP_OK); /* 57 > 56 */
	cr_assert_str_eq(table(&d), "=0");
}

Test(hpack, the_newest_ids_of_the_table_are_remembered)
{
	static struct rq_hpack d;
	static struct rq_hp_vals v;
	char hex[256];

	config("X-Request-Id");
	rq_hp_init(&d, 4096, 4096);
	rq_hp_vals_init(&v);
	for (int i = 0; i < RQ_HP_VALS + 1; i++) { /* "id-0" .. "id-8", each indexed */
		snprintf(hex, sizeof(hex), "400c 782d 7265 7175 6573 742d 6964 0469 642d %02x", '0' + i);
		cr_assert_eq(feed_hex(&d, &v, hex), RQ_HP_OK);
		cr_assert_str_eq(result(&d), (snprintf(hex, sizeof(hex), "id=id-%d;st=0", i), hex));
	}
	/* index 62 is id-8, index 62 + 8 = 70 is id-0, whose value was forgotten */
	cr_assert_eq(feed_hex(&d, &v, "be"), RQ_HP_OK);
	cr_assert_str_eq(result(&d), "id=id-8;st=0");
	cr_assert_eq(feed_hex(&d, &v, "c5"), RQ_HP_OK); /* 69: id-1 */
	cr_assert_str_eq(result(&d), "id=id-1;st=0");
	cr_assert_eq(feed_hex(&d, &v, "c6"), RQ_HP_OK); /* 70: id-0 */
	cr_assert_str_eq(result(&d), "id?;st=0");
	/* the first valid value wins within a block */
	cr_assert_eq(feed_hex(&d, &v, "c6 be c5"), RQ_HP_OK);
	cr_assert_str_eq(result(&d), "id=id-8;st=0");
	/* without a pool, only the presence */
	cr_assert_eq(feed_hex(&d, NULL, "be"), RQ_HP_OK);
	cr_assert_str_eq(result(&d), "id?;st=0");
}

Test(hpack, integers_up_to_four_continuation_bytes)
{
	static struct rq_hpack d;

	config("X-Request-Id");
	/* a literal whose value length takes four continuation bytes, skipped: the block
	   ends inside it, which is an error, but the integer itself was fine */
	rq_hp_init(&d, 4096, 4096);
	rq_hp_begin(&d);
	cr_assert_eq(rq_hp_feed(&d, NULL, (const uint8_t *)"\x00\x01x\x7f\xff\xff\xff\x7f", 8), RQ_HP_OK);
	cr_assert_eq(d.left, 127u + 0x0fffffffu);
	cr_assert_eq(rq_hp_end(&d), RQ_HP_ERR);
	/* 31 is 0x1f 0x00: a zero first continuation byte is not overlong */
	rq_hp_init(&d, 4096, 4096);
	cr_assert_eq(feed_hex(&d, NULL, "3f00"), RQ_HP_OK);
	cr_assert_eq(d.max, 31);
}

Test(hpack, every_huffman_symbol_decodes_to_one_octet_and_id_characters_to_themselves)
{
	static struct rq_hpack d;
	static struct rq_hp_vals v;
	static uint8_t blk[8192];
	static char cmd[16384], line[4096];
	const char *b = getenv("REQCTX_BUILD");
	FILE *p;
	size_t cl;

	config("X-Request-Id");
	/* "a<c>a" for every byte c, then all 256 bytes in a row, Huffman-coded by python3-hpack */
	cl = (size_t)snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/../tests/h2ref.py huff",
			      b && *b ? b : "build");
	for (int c = 0; c < 256; c++)
		cl += (size_t)snprintf(cmd + cl, sizeof(cmd) - cl, " 61%02x61", c);
	cl += (size_t)snprintf(cmd + cl, sizeof(cmd) - cl, " ");
	for (int c = 0; c < 256; c++)
		cl += (size_t)snprintf(cmd + cl, sizeof(cmd) - cl, "%02x", c);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	for (int c = 0; c < 256; c++) {
		size_t n = 0, hl;
		uint8_t huff[2048];

		cr_assert_not_null(fgets(line, sizeof(line), p), "byte %d", c);
		hl = dehex(line, huff);
		blk[n++] = 0x40;
		blk[n++] = 12;
		memcpy(blk + n, "x-request-id", 12);
		n += 12;
		cr_assert_lt(hl, 127);
		blk[n++] = (uint8_t)(0x80 | hl);
		memcpy(blk + n, huff, hl);
		n += hl;
		rq_hp_init(&d, 4096, 4096);
		rq_hp_vals_init(&v);
		cr_assert_eq(block(&d, &v, blk, n, 0), RQ_HP_OK, "byte %d", c);
		cr_assert_str_eq(table(&d), "47/12/1,=47", "byte %d: %s", c, table(&d)); /* 12 + 3 + 32 */
		if (rq_id_char((unsigned char)c)) {
			char want[32];

			snprintf(want, sizeof(want), "id=a%ca;st=0", c);
			cr_assert_str_eq(result(&d), want, "byte %d", c);
		} else {
			cr_assert_str_eq(result(&d), "id?;st=0", "byte %d", c);
		}
	}
	/* the 256 in a row: 256 octets, and the stream stays in step (a field follows) */
	{
		size_t n = 0, hl;
		static uint8_t huff[2048];

		cr_assert_not_null(fgets(line, sizeof(line), p));
		hl = dehex(line, huff);
		blk[n++] = 0x40;
		blk[n++] = 1;
		blk[n++] = 'z';
		blk[n++] = 0xff; /* Huffman, length hl: 127 + the rest in 7-bit groups */
		for (size_t r = hl - 127; ; r >>= 7) {
			blk[n++] = (uint8_t)((r & 0x7f) | (r >= 128 ? 0x80 : 0));
			if (r < 128)
				break;
		}
		memcpy(blk + n, huff, hl);
		n += hl;
		memcpy(blk + n, "\x00\x0cx-request-id\x02ok", 17);
		n += 17;
		rq_hp_init(&d, 4096, 4096);
		cr_assert_eq(block(&d, &v, blk, n, SIZE_MAX), RQ_HP_OK);
		cr_assert_str_eq(table(&d), "289/1/0,=289"); /* 1 + 256 + 32 */
		cr_assert_str_eq(result(&d), "id=ok;st=0");
	}
	cr_assert_eq(pclose(p), 0);
}
