#include "targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ctx.h"
#include "fdtab.h"
#include "http.h"
#include "id.h"
#include "io.h"

#define CHECK(c)                                                                  \
	do {                                                                      \
		if (!(c)) {                                                       \
			fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #c, \
				__FILE__, __LINE__);                              \
			abort();                                                  \
		}                                                                 \
	} while (0)

static void init_once(void)
{
	static int done;
	static const char *const env[] = { NULL };

	if (done)
		return;
	done = 1;
	test_config(env);
	rq_fd_init();
}

/* Request events as text: "H<id or ->;" per head, "D;" when the scanner stops. */
static size_t req_events(const uint8_t *s, size_t n, size_t chunk, char *out, size_t cap)
{
	struct rq_hdrs p;
	size_t len = 0;

	memset(&p, 0, sizeof(p));
	for (size_t at = 0; at < n; at += chunk) {
		size_t m = n - at < chunk ? n - at : chunk, off = 0;

		while (off < m) {
			enum rq_ev ev;
			size_t used = rq_req_feed(&p, (const char *)s + at + off, m - off, &ev);

			CHECK(used <= m - off);
			CHECK(used > 0 || ev != RQ_EV_NONE);
			off += used;
			if (ev == RQ_EV_HEAD) {
				CHECK(!p.xr_have || rq_id_valid(p.xr, p.xr_len));
				len += (size_t)snprintf(out + len, cap - len, "H%.*s;",
							p.xr_have ? (int)p.xr_len : 1,
							p.xr_have ? p.xr : "-");
			} else if (ev == RQ_EV_DEAD) {
				len += (size_t)snprintf(out + len, cap - len, "D;");
			}
			if (len >= cap - 200)
				return len;
		}
	}
	return len;
}

/* Response events with their offsets. */
static size_t resp_events(const uint8_t *s, size_t n, size_t chunk, char *out, size_t cap)
{
	struct rq_hdrs p;
	size_t len = 0;

	memset(&p, 0, sizeof(p));
	for (size_t at = 0; at < n; at += chunk) {
		size_t m = n - at < chunk ? n - at : chunk, off = 0;

		while (off < m) {
			enum rq_ev ev;
			size_t used = rq_resp_feed(&p, (const char *)s + at + off, m - off, 0, &ev);

			CHECK(used <= m - off);
			off += used;
			if (ev == RQ_EV_DEAD) /* it swallows the rest of the read: no offset */
				len += (size_t)snprintf(out + len, cap - len, "D;");
			else if (ev != RQ_EV_NONE)
				len += (size_t)snprintf(out + len, cap - len, "%d@%zu;", ev, at + off);
			if (len >= cap - 200)
				return len;
		}
	}
	return len;
}

int rq_fuzz_http(const uint8_t *data, size_t size)
{
	static char whole[1 << 16], split[1 << 16];
	size_t chunk, a, b;

	if (size < 1)
		return 0;
	init_once();
	chunk = data[0] % 17 + 1;
	data++;
	size--;
	a = req_events(data, size, size ? size : 1, whole, sizeof(whole));
	b = req_events(data, size, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);
	a = resp_events(data, size, size ? size : 1, whole, sizeof(whole));
	b = resp_events(data, size, chunk, split, sizeof(split));
	CHECK(a == b && memcmp(whole, split, a) == 0);
	return 0;
}

int rq_fuzz_prefix(const uint8_t *data, size_t size)
{
	static const char *const ids[] = { "a", "req-1", "0123456789abcdef0123456789abcdef" };
	static char want[1 << 20];
	struct rq_ctx c = { .serial = 0 };
	char pfx[64];
	size_t done = 0, plen, w = 0;
	int pieces;

	if (size < 2 || size > 30000)
		return 0;
	init_once();
	fake_install();
	fake_reset(data[0] & 0x80 ? 0 : data[0] % 64 + 1);
	CHECK(rq_fd_set_log(300) == 0);
	c.serial = rq_serial_next();
	strcpy(c.id, ids[data[1] % 3]);
	c.len = (uint32_t)strlen(c.id);
	rq_ctx_set(&c);
	plen = (size_t)snprintf(pfx, sizeof(pfx), "[req:%s] ", c.id);
	pieces = data[1] / 3 % 4 + 1;
	data += 2;
	size -= 2;
	while (done < size) {
		struct iovec v[4];
		size_t left = size - done;
		struct rq_call k = { .how = pieces > 1 ? RQ_WRITEV : RQ_WRITE };
		ssize_t r;

		for (int i = 0; i < pieces; i++) {
			size_t from = left * (size_t)i / (size_t)pieces, to = left * (size_t)(i + 1) / (size_t)pieces;

			v[i].iov_base = (void *)(data + done + from);
			v[i].iov_len = to - from;
		}
		r = rq_io_write(300, v, pieces, &k);
		CHECK(r > 0 && (size_t)r <= left);
		done += (size_t)r;
	}
	/*
	 * Stripping each inserted prefix gives back the input: every line starts
	 * with the prefix, once; a line that started with it already (with the
	 * whole prefix in the call that started it: here, the rest of the input)
	 * got none of its own.
	 */
	for (size_t i = 0; i < size;) {
		const uint8_t *nl = memchr(data + i, '\n', size - i);
		size_t len = nl ? (size_t)(nl - (data + i)) + 1 : size - i;

		if (!(size - i >= plen && !memcmp(data + i, pfx, plen))) {
			memcpy(want + w, pfx, plen);
			w += plen;
		}
		memcpy(want + w, data + i, len);
		w += len;
		i += len;
	}
	CHECK(fk.len == w && memcmp(fk.out, want, w) == 0);
	rq_fd_forget(300);
	return 0;
}
