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
	struct rq_req p;
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
				CHECK(!p.h.xr_have || rq_id_valid(p.xr, p.h.xr_len));
				len += (size_t)snprintf(out + len, cap - len, "H%.*s;",
							p.h.xr_have ? (int)p.h.xr_len : 1,
							p.h.xr_have ? p.xr : "-");
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
	struct rq_call k = { .how = RQ_WRITE };
	struct rq_ctx c = { .serial = 0 };
	char pfx[64];
	size_t done = 0, plen, o = 0, i = 0;
	int at_start = 1;

	if (size < 2 || size > 30000)
		return 0;
	init_once();
	fake_install();
	fake_reset(data[0] % 64 + 1);
	CHECK(rq_fd_set_log(300) == 0);
	c.serial = rq_serial_next();
	strcpy(c.id, ids[data[1] % 3]);
	c.len = (uint32_t)strlen(c.id);
	rq_ctx_set(&c);
	plen = (size_t)snprintf(pfx, sizeof(pfx), "[req:%s] ", c.id);
	data += 2;
	size -= 2;
	while (done < size) {
		struct iovec v = { (void *)(data + done), size - done };
		ssize_t r = rq_io_write(300, &v, 1, &k);

		CHECK(r > 0 && (size_t)r <= size - done);
		done += (size_t)r;
	}
	/* Strip: each line start in the output must be the prefix. */
	while (o < fk.len) {
		if (at_start) {
			CHECK(fk.len - o >= plen && memcmp(fk.out + o, pfx, plen) == 0);
			o += plen;
			at_start = 0;
			continue;
		}
		CHECK(i < size && fk.out[o] == (char)data[i]);
		at_start = data[i] == '\n';
		o++;
		i++;
	}
	CHECK(i == size);
	rq_fd_forget(300);
	return 0;
}
