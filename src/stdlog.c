#include "stdlog.h"

#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "sys.h"

/* glibc's fortified vsnprintf; its headers declare it only under _FORTIFY_SOURCE. */
int __vsnprintf_chk(char *, size_t, int, size_t, const char *, va_list);

#define OUT_MAX 1024 /* assembled bytes per fwrite: one syscall for an unbuffered line */

struct out {
	FILE *f;
	size_t n, caller, ok; /* bytes held, caller bytes among them, caller bytes out */
	int failed;
	char buf[OUT_MAX];
};

static void flush(struct out *o)
{
	if (o->n && !o->failed) {
		if ((rq_sys.fwrite_unlocked)(o->buf, 1, o->n, o->f) == o->n)
			o->ok += o->caller;
		else
			o->failed = 1;
	}
	o->n = o->caller = 0;
}

static void put(struct out *o, const char *p, size_t len, int caller)
{
	if (o->failed)
		return;
	if (len > OUT_MAX - o->n)
		flush(o);
	if (len > OUT_MAX) { /* too big to assemble: straight to the FILE */
		size_t w = (rq_sys.fwrite_unlocked)(p, 1, len, o->f);

		if (caller)
			o->ok += w;
		if (w != len)
			o->failed = 1;
		return;
	}
	memcpy(o->buf + o->n, p, len);
	o->n += len;
	if (caller)
		o->caller += len;
}

size_t rq_stdio_put(FILE *f, struct rq_fd *e, const struct iovec *v, int nv)
{
	struct out o = { .f = f };
	char buf[RQ_INS_MAX];
	const char *pfx = "";
	size_t plen = 0;
	int mid = (int)atomic_load_explicit(&e->smid, memory_order_relaxed);

	if (rq_prefix_wanted())
		pfx = rq_prefix_acquire(buf, &plen);
	for (int i = 0; i < nv && !o.failed; i++) {
		const char *s = v[i].iov_base;
		size_t left = v[i].iov_len;

		while (left) {
			const char *nl = memchr(s, '\n', left);
			size_t take = nl ? (size_t)(nl - s) + 1 : left;

			if (!mid)
				put(&o, pfx, plen, 0);
			put(&o, s, take, 1);
			mid = !nl;
			s += take;
			left -= take;
		}
	}
	flush(&o);
	rq_prefix_release(pfx);
	atomic_store_explicit(&e->smid, (uint32_t)mid, memory_order_relaxed);
	return o.ok;
}

int rq_format(char *buf, size_t size, char **heap, int flag, const char *fmt, va_list ap)
{
	va_list again;
	int n;

	*heap = NULL;
	va_copy(again, ap);
	n = flag >= 0 ? __vsnprintf_chk(buf, size, flag, size, fmt, ap)
		      : vsnprintf(buf, size, fmt, ap);
	if (n >= 0 && (size_t)n >= size) {
		char *h = malloc((size_t)n + 1);

		if (!h) {
			n = -1;
			errno = ENOMEM;
		} else {
			n = flag >= 0 ? __vsnprintf_chk(h, (size_t)n + 1, flag, (size_t)n + 1, fmt, again)
				      : vsnprintf(h, (size_t)n + 1, fmt, again);
			*heap = h;
		}
	}
	va_end(again);
	return n;
}

int rq_stdio_vprintf(FILE *f, struct rq_fd *e, int flag, const char *fmt, va_list ap)
{
	char buf[512], *heap;
	int n = rq_format(buf, sizeof(buf), &heap, flag, fmt, ap);
	struct iovec v;

	if (n < 0)
		return -1;
	v.iov_base = heap ? heap : buf;
	v.iov_len = (size_t)n;
	if (n && rq_stdio_put(f, e, &v, 1) != (size_t)n)
		n = -1;
	free(heap);
	return n;
}

void rq_stdio_line_start(FILE *f)
{
	struct rq_fd *e = rq_stdio_log(f);
	char pfx[RQ_INS_MAX];

	if (!e || atomic_load_explicit(&e->smid, memory_order_relaxed) || !rq_prefix_wanted())
		return;
	(rq_sys.fwrite_unlocked)(pfx, 1, rq_prefix_render(pfx), f);
	atomic_store_explicit(&e->smid, 1, memory_order_relaxed);
}

void rq_stdio_line_done(FILE *f)
{
	struct rq_fd *e = rq_stdio_log(f);

	if (e)
		atomic_store_explicit(&e->smid, 0, memory_order_relaxed);
}
