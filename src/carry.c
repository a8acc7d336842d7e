#include "carry.h"

#include <string.h>

#include "config.h"
#include "conn.h"
#include "ctx.h"
#include "handle.h"
#include "id.h"

void rq_carry_new(int fd, int peer)
{
	int e = errno;

	if (fd >= 0 && rq_fd_set_carry(fd, peer) == 0)
		rq_slot_store(rq_carry_slot(fd), rq_ctx_cur());
	errno = e;
}

void rq_carry_put(int fd, struct rq_fd *e)
{
	int peer = atomic_load_explicit(&e->peer, memory_order_relaxed);
	struct rq_slot *s;

	if (peer >= 0) {
		if (!(rq_fd_flags(rq_fd_peek(peer)) & RQ_FD_CARRY))
			return;
		fd = peer;
	}
	if ((s = rq_carry_slot(fd)))
		rq_slot_store(s, rq_ctx_cur()); /* a no-op when it already holds that context */
}

void rq_carry_read(int fd)
{
	struct rq_slot *s = rq_carry_slot(fd);

	/* rq_fd_enter for a carrier, without looking the fd up again; errno is not touched */
	if (!s)
		return;
	if (atomic_load_explicit(&s->serial, memory_order_relaxed) != rq_ctx_cur()->serial)
		rq_ctx_set_slot(s);
	else
		rq_ctx_reaffirm();
}

void rq_fd_enter(int fd)
{
	struct rq_fd *e = rq_fd_peek(fd);
	uint32_t fl = rq_fd_flags(e);
	struct rq_conn *c;
	uint64_t h;

	if ((fl & RQ_FD_CONNS) && (c = rq_fd_conn(e)))
		rq_conn_enter(c);
	else if (fl & RQ_FD_CARRY)
		rq_ctx_set_slot(rq_carry_slot(fd));
	else if ((fl & RQ_FD_LOG) &&
		 (h = atomic_load_explicit(&e->stall, memory_order_relaxed)))
		rq_handle_resume(h); /* writable again: what is still pending is its stalled writer's */
	else
		rq_ctx_clear();
}

RQ_TLS uint64_t rq_relay_serial;
RQ_TLS int rq_relay_on;

/*
 * The ID named by a line that starts with the configured prefix: its length
 * (id gets the bytes), 0 for a line without one or with an invalid ID in it.
 */
static size_t prefix_id(const struct iovec *iov, int iovcnt, int from, size_t off, size_t r,
			char id[REQCTX_ID_MAX])
{
	char buf[RQ_PFX_PART + REQCTX_ID_MAX + RQ_PFX_PART];
	size_t have = 0, head = rq_cfg.pfx_head_len, tail = rq_cfg.pfx_tail_len;

	for (int i = from; i < iovcnt && have < sizeof(buf) && have < r; i++) {
		size_t skip = i == from ? off : 0, take = iov[i].iov_len - skip;

		if (take > sizeof(buf) - have)
			take = sizeof(buf) - have;
		if (take > r - have)
			take = r - have;
		if (take)
			memcpy(buf + have, (const char *)iov[i].iov_base + skip, take);
		have += take;
	}
	while (have >= RQ_FPM_FLUSH_LEN && rq_fpm_flush(buf, RQ_FPM_FLUSH_LEN)) {
		have -= RQ_FPM_FLUSH_LEN; /* the end of what came before */
		memmove(buf, buf + RQ_FPM_FLUSH_LEN, have);
	}
	if (have < head + 1 + tail || memcmp(buf, rq_cfg.pfx_head, head))
		return 0;
	for (size_t n = 1; n <= REQCTX_ID_MAX && head + n + tail <= have; n++) {
		if (!rq_id_char((unsigned char)buf[head + n - 1]))
			return 0;
		if (!memcmp(buf + head + n, rq_cfg.pfx_tail, tail) && rq_id_valid(buf + head, n)) {
			memcpy(id, buf + head, n);
			return n;
		}
	}
	return 0;
}

/* Whether the r bytes read end a line: a newline, or php-fpm's flush command. */
static int ends_line(const struct iovec *iov, int iovcnt, size_t r)
{
	char tail[RQ_FPM_FLUSH_LEN];
	size_t lo = r > sizeof(tail) ? r - sizeof(tail) : 0, pos = 0;

	for (int i = 0; i < iovcnt && pos < r; i++) { /* the last bytes read, into tail */
		size_t len = iov[i].iov_len < r - pos ? iov[i].iov_len : r - pos;
		size_t from = pos > lo ? pos : lo;

		if (from < pos + len)
			memcpy(tail + (from - lo), (const char *)iov[i].iov_base + (from - pos),
			       pos + len - from);
		pos += len;
	}
	if (!r)
		return 1;
	return tail[r - lo - 1] == '\n' || (r - lo == sizeof(tail) && rq_fpm_flush(tail, sizeof(tail)));
}

void rq_carry_relay(int fd, struct rq_fd *e, const struct iovec *iov, int iovcnt, ssize_t r)
{
	struct rq_slot *s = rq_carry_slot(fd);
	uint64_t cur = rq_ctx_cur()->serial;
	int saved = errno;
	char id[REQCTX_ID_MAX];
	struct rq_ctx had;
	size_t n;

	if (!s || r <= 0 || (cur && !(rq_relay_on && cur == rq_relay_serial) &&
			     !(cur == atomic_load_explicit(&s->serial, memory_order_relaxed) &&
			       (atomic_load_explicit(&s->flags, memory_order_relaxed) & RQ_SLOT_RELAY)))) {
		rq_carry_read(fd); /* a thread in a request of its own: a carrier as any */
		errno = saved;
		return;
	}
	if (!atomic_load_explicit(&e->line, memory_order_relaxed)) { /* a line starts */
		n = prefix_id(iov, iovcnt, 0, 0, (size_t)r, id);
		if (n == sizeof(REQCTX_UNKNOWN) - 1 && !memcmp(id, REQCTX_UNKNOWN, n))
			n = 0;
		if (!n) {
			/* a bare line ends a relayed context; a writer of this process keeps its own */
			if (atomic_load_explicit(&s->flags, memory_order_relaxed) & RQ_SLOT_RELAY)
				rq_slot_store(s, &rq_ctx_unknown);
		} else if (rq_slot_read(s, &had, NULL) < 0 || !had.serial || had.len != n ||
			 memcmp(had.id, id, n))
			rq_slot_fill(s, id, (uint32_t)n, RQ_SLOT_RELAY);
	}
	atomic_store_explicit(&e->line, !ends_line(iov, iovcnt, (size_t)r), memory_order_relaxed);
	rq_carry_read(fd);
	rq_relay_serial = rq_ctx_cur()->serial;
	rq_relay_on = 1;
	errno = saved;
}

int rq_relay_prefixed(const struct iovec *iov, int iovcnt, int i, size_t off, size_t left)
{
	char id[REQCTX_ID_MAX];
	size_t n = prefix_id(iov, iovcnt, i, off, left, id);

	return n && !(n == sizeof(REQCTX_UNKNOWN) - 1 && !memcmp(id, REQCTX_UNKNOWN, n));
}
