#include "trace.h"

#include <errno.h>
#include <string.h>

#include "id.h"

/* Value of a lowercase hex digit, or -1. */
static int lhex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Reads 2n lowercase hex digits into n bytes. Returns 0, or -1. */
static int unhex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi = lhex((unsigned char)s[2 * i]), lo = lhex((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int zero(const uint8_t *b, size_t n)
{
	uint8_t any = 0;

	for (size_t i = 0; i < n; i++)
		any |= b[i];
	return !any;
}

int rq_trace_parse(const char *s, size_t n, struct rq_trace *t)
{
	struct rq_trace v;

	if (!s || n < RQ_TRACEPARENT_LEN || unhex(s, 1, &v.version) < 0 || v.version == 0xff)
		return -EINVAL;
	if (v.version == 0 ? n != RQ_TRACEPARENT_LEN
			   : n > RQ_TRACEPARENT_LEN && s[RQ_TRACEPARENT_LEN] != '-')
		return -EINVAL;
	if (s[2] != '-' || s[35] != '-' || s[52] != '-' || unhex(s + 3, 16, v.trace) < 0 ||
	    unhex(s + 36, 8, v.span) < 0 || unhex(s + 53, 1, &v.flags) < 0)
		return -EINVAL;
	if (zero(v.trace, 16) || zero(v.span, 8))
		return -EINVAL;
	*t = v;
	return 0;
}

void rq_trace_hex(const uint8_t *b, size_t n, char *out)
{
	static const char hex[16] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
}

void rq_trace_format(const struct rq_trace *t, char out[RQ_TRACEPARENT_LEN])
{
	out[0] = out[1] = '0';
	out[2] = out[35] = out[52] = '-';
	rq_trace_hex(t->trace, 16, out + 3);
	rq_trace_hex(t->span, 8, out + 36);
	rq_trace_hex(&t->flags, 1, out + 53);
}

int rq_trace_from_id(const char *id, size_t n, uint8_t trace[16])
{
	char digits[32];
	uint8_t b[16];
	size_t d = 0;

	if (!id || (n != 32 && n != RQ_UUID_LEN))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];

		if (n == RQ_UUID_LEN && (i == 8 || i == 13 || i == 18 || i == 23)) {
			if (c != '-')
				return -EINVAL;
			continue;
		}
		if (c >= 'A' && c <= 'F')
			c += 32;
		digits[d++] = (char)c;
	}
	if (unhex(digits, 16, b) < 0 || zero(b, 16))
		return -EINVAL;
	memcpy(trace, b, 16);
	return 0;
}

static void fill(uint8_t *b, size_t n)
{
	do {
		for (size_t i = 0; i < n; i += 8) {
			uint64_t x = rq_rand64();

			memcpy(b + i, &x, n - i < 8 ? n - i : 8);
		}
	} while (zero(b, n));
}

void rq_trace_new_span(uint8_t span[8])
{
	fill(span, 8);
}

void rq_trace_new_id(uint8_t trace[16])
{
	fill(trace, 16);
}

/* splitmix64's finaliser: spreads a hash's bits. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void rq_trace_of(const char *id, size_t n, uint8_t trace[16])
{
	uint64_t a = 0xcbf29ce484222325ull, b = 0x6c62272e07bb0142ull;

	if (rq_trace_from_id(id, n, trace) == 0)
		return;
	for (size_t i = 0; i < n; i++) { /* FNV-1a, two lanes */
		a = (a ^ (unsigned char)id[i]) * 0x100000001b3ull;
		b = (b ^ (unsigned char)id[i]) * 0x100000001b3ull;
		b ^= b >> 29;
	}
	a = mix(a ^ n);
	b = mix(b + 0x9e3779b97f4a7c15ull);
	for (int i = 0; i < 8; i++) {
		trace[i] = (uint8_t)(a >> (56 - 8 * i));
		trace[8 + i] = (uint8_t)(b >> (56 - 8 * i));
	}
	if (zero(trace, 16))
		trace[15] = 1;
}
