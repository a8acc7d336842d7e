/* W3C Trace Context: traceparent validation, formatting, and trace/span IDs for requests. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "trace.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* Parameters are copied to the test's process: strings are held inline. */
struct tp_case {
	char name[64];
	char value[128];
};

ParameterizedTestParameters(trace, valid_traceparents_are_accepted)
{
	static struct tp_case cases[] = {
		{ "the specification's example", TP },
		{ "not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" },
		{ "unknown flag bits", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff" },
		{ "trace-id with one bit", "00-00000000000000000000000000000001-0000000000000001-01" },
		{ "a higher version of exactly 55", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "a higher version with more after a dash",
		  "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds" },
		{ "version fe and a bare dash", "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-" },
	};
	return cr_make_param_array(struct tp_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct tp_case *c, trace, valid_traceparents_are_accepted)
{
	struct rq_trace t;

	memset(&t, 0xee, sizeof(t));
	cr_assert_eq(rq_trace_parse(c->value, strlen(c->value), &t), 0, "%s refused", c->name);
	cr_assert_neq(t.version, 0xff);
}

ParameterizedTestParameters(trace, invalid_traceparents_are_ignored_whole)
{
	static struct tp_case cases[] = {
		{ "empty", "" },
		{ "version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "upper-case version", "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "non-hex version", "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "upper-case trace-id", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01" },
		{ "upper-case parent-id", "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01" },
		{ "upper-case flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A" },
		{ "all-zero trace-id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01" },
		{ "all-zero parent-id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01" },
		{ "version 00 one longer", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" },
		{ "version 00 with more", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz" },
		{ "one short", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1" },
		{ "trace-id one short", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-011" },
		{ "parent-id one long", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b71-1" },
		{ "underscores", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01" },
		{ "non-hex in the trace-id", "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01" },
		{ "non-hex in the parent-id", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01" },
		{ "non-hex flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x" },
		{ "a higher version followed by no dash",
		  "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x" },
		{ "a higher version, short", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7" },
		{ "leading space", " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "trailing space", TP " " },
		{ "CRLF injected", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\r\n" },
	};
	return cr_make_param_array(struct tp_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct tp_case *c, trace, invalid_traceparents_are_ignored_whole)
{
	struct rq_trace t, before;

	memset(&t, 0x5a, sizeof(t));
	before = t;
	cr_assert_eq(rq_trace_parse(c->value, strlen(c->value), &t), -EINVAL, "%s accepted",
		     c->name);
	cr_assert_arr_eq(&t, &before, sizeof(t), "%s: the output was touched", c->name);
}

Test(trace, null_is_refused)
{
	struct rq_trace t;

	cr_assert_eq(rq_trace_parse(NULL, 55, &t), -EINVAL);
	cr_assert_eq(rq_trace_from_id(NULL, 36, t.trace), -EINVAL);
}

Test(trace, fields_are_read_exactly)
{
	static const uint8_t trace[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
					   0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
	static const uint8_t span[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };
	static const char future[] = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-08-x";
	struct rq_trace t;

	cr_assert_eq(rq_trace_parse(TP, 55, &t), 0);
	cr_assert_eq(t.version, 0);
	cr_assert_eq(t.flags, 1);
	cr_assert_arr_eq(t.trace, trace, 16);
	cr_assert_arr_eq(t.span, span, 8);
	cr_assert_eq(rq_trace_parse(future, strlen(future), &t), 0);
	cr_assert_eq(t.version, 0xcc);
	cr_assert_eq(t.flags, 8);
	cr_assert_arr_eq(t.trace, trace, 16);
}

Test(trace, version_00_round_trips_and_higher_versions_are_written_as_00)
{
	static const char future[] = "7f-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-zz";
	char out[RQ_TRACEPARENT_LEN + 1] = "";
	struct rq_trace t, u;

	cr_assert_eq(rq_trace_parse(TP, 55, &t), 0);
	rq_trace_format(&t, out);
	cr_assert_str_eq(out, TP);
	cr_assert_eq(rq_trace_parse(future, strlen(future), &t), 0);
	rq_trace_format(&t, out);
	cr_assert_str_eq(out, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03");
	cr_assert_eq(rq_trace_parse(out, 55, &u), 0);
	cr_assert_arr_eq(u.trace, t.trace, 16);
	cr_assert_arr_eq(u.span, t.span, 8);
	cr_assert_eq(u.flags, t.flags);
}

Test(trace, a_uuid_request_id_maps_to_its_32_hex_digits)
{
	uint8_t tr[16];
	char hex[33] = "";

	cr_assert_eq(rq_trace_from_id("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", 36, tr), 0);
	rq_trace_hex(tr, 16, hex);
	cr_assert_str_eq(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
	cr_assert_eq(rq_trace_from_id("4BF92F35-77B3-4DA6-A3CE-929D0E0E4736", 36, tr), 0);
	rq_trace_hex(tr, 16, hex);
	cr_assert_str_eq(hex, "4bf92f3577b34da6a3ce929d0e0e4736", "upper case is lowered");
	cr_assert_eq(rq_trace_from_id("0af7651916cd43dd8448eb211c80319c", 32, tr), 0);
	rq_trace_hex(tr, 16, hex);
	cr_assert_str_eq(hex, "0af7651916cd43dd8448eb211c80319c", "nginx's $request_id");
}

Test(trace, other_request_ids_map_to_no_trace_id)
{
	static const char *const ids[] = {
		"abc123",
		"00000000-0000-0000-0000-000000000000",
		"00000000000000000000000000000000",
		"4bf92f3577b3-4da6-a3ce-929d0e0e4736",
		"4bf92f35-77b3-4da6-a3ce-929d0e0e473g",
		"4bf92f35-77b3-4da6-a3ce_929d0e0e4736",
		"4bf92f35-77b3-4da6-a3ce-929d0e0e47366",
		"0af7651916cd43dd8448eb211c80319",
		"0af7651916cd43dd8448eb211c80319c0",
		"my-request-id-that-is-36-chars-long!",
	};
	uint8_t tr[16] = { 7 };

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		cr_assert_eq(rq_trace_from_id(ids[i], strlen(ids[i]), tr), -EINVAL, "%s mapped", ids[i]);
		cr_assert_eq(tr[0], 7, "%s: the output was touched", ids[i]);
	}
}

Test(trace, every_generated_uuid_maps_and_the_header_it_makes_is_valid)
{
	for (int i = 0; i < 10000; i++) {
		char id[RQ_UUID_LEN], hex[33] = "", digits[33], tp[RQ_TRACEPARENT_LEN];
		struct rq_trace t = { .flags = 1 }, u;
		int d = 0;

		rq_uuid4(id);
		for (int k = 0; k < RQ_UUID_LEN; k++)
			if (id[k] != '-')
				digits[d++] = id[k];
		digits[32] = '\0';
		cr_assert_eq(rq_trace_from_id(id, RQ_UUID_LEN, t.trace), 0, "%.36s", id);
		rq_trace_hex(t.trace, 16, hex);
		cr_assert_str_eq(hex, digits);
		rq_trace_new_span(t.span);
		rq_trace_format(&t, tp);
		cr_assert_eq(rq_trace_parse(tp, sizeof(tp), &u), 0, "%.55s", tp);
		cr_assert_arr_eq(tp + 3, digits, 32);
	}
}

static int cmp64(const void *a, const void *b)
{
	uint64_t x, y;

	memcpy(&x, a, 8);
	memcpy(&y, b, 8);
	return x < y ? -1 : x > y;
}

Test(trace, new_spans_and_trace_ids_are_never_zero_and_do_not_repeat)
{
	enum { N = 100000 };
	static uint8_t spans[N][8];
	uint8_t zero[16] = { 0 }, tr[16];

	for (int i = 0; i < N; i++) {
		rq_trace_new_span(spans[i]);
		cr_assert_neq(memcmp(spans[i], zero, 8), 0);
	}
	qsort(spans, N, 8, cmp64);
	for (int i = 1; i < N; i++)
		cr_assert_neq(memcmp(spans[i - 1], spans[i], 8), 0, "span repeated");
	rq_trace_new_id(tr);
	cr_assert_neq(memcmp(tr, zero, 16), 0);
}
