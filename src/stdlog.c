#include "stdlog.h"

#include <stdlib.h>
#include <string.h>

#include "correlate.h"
#include "io.h"
#include "lines.h"
#include "prefix.h"
#include "sys.h"

/* glibc's fortified vsnprintf; its headers declare it only under _FORTIFY_SOURCE. */
int __vsnprintf_chk(char *, size_t, int, size_t, const char *, va_list);

/* glibc's FILE flags (libio.h), part of its ABI since 2.1. */
#define F_UNBUFFERED 0x0002 /* _IO_UNBUFFERED */
#define F_NO_WRITES  0x0008 /* _IO_NO_WRITES */
#define F_LINE_BUF   0x0200 /* _IO_LINE_BUF */
#define F_PUTTING    0x0800 /* _IO_CURRENTLY_PUTTING: the put area is set up */
#define F_POS_BAD    ((__off64_t)-1) /* _IO_pos_BAD: the FILE does not know its offset */

/* Bytes that f holds in its buffer, not yet written. */
static int pending(const FILE *f)
{
	return f->_IO_write_ptr > f->_IO_write_base;
}

/*
 * An unbuffered stream (stderr) writes each call at once, in glibc one
 * write(2) per fwrite: here the call goes out through the log write path
 * instead, prefixes and all in one system call, as glibc would write it.
 * Only for a FILE in the plain state: writable, byte-oriented, nothing
 * buffered for reading.
 */
static int direct(const FILE *f)
{
	return (f->_flags & (F_UNBUFFERED | F_NO_WRITES)) == F_UNBUFFERED &&
	       f->_IO_read_ptr == f->_IO_read_end && f->_mode <= 0;
}

/*
 * What glibc's write for an unbuffered FILE does with it: on to the end
 * through short writes, stop at the first error with the error flag set.
 * The FILE's idea of its offset is dropped (the prefixes went out too), as
 * glibc drops it for append mode: ftell asks the kernel.
 */
static size_t put_direct(FILE *f, const struct iovec *v, int nv, size_t total)
{
	struct iovec rest[RQ_STDIO_NV];
	struct rq_call k = { .how = nv == 1 ? RQ_WRITE : RQ_WRITEV };
	size_t done = 0;
	int i = 0;

	if (pending(f) && fflush_unlocked(f) != 0)
		return 0;
	memcpy(rest, v, (size_t)nv * sizeof(*v));
	while (done < total) {
		ssize_t r = rq_io_write(f->_fileno, rest + i, nv - i, &k);

		if (r <= 0) {
			f->_flags |= _IO_ERR_SEEN;
			break;
		}
		done += (size_t)r;
		for (size_t n = (size_t)r; n;) {
			size_t t = n < rest[i].iov_len ? n : rest[i].iov_len;

			rest[i].iov_base = (char *)rest[i].iov_base + t;
			rest[i].iov_len -= t;
			n -= t;
			if (!rest[i].iov_len && i < nv - 1)
				i++;
		}
	}
	if (f->_offset != F_POS_BAD)
		f->_offset = F_POS_BAD;
	return done;
}

/*
 * Where a line is on f: what f holds in its buffer comes next on the stream,
 * so its last byte tells (it also shows a newline that an inlined
 * putc_unlocked put there); with nothing buffered, the fd's line state does,
 * which write(2) shares. Returns 1 inside a line; the rest of an owed text
 * is copied into rest (*rlen), due after *skip caller bytes.
 */
static int where(FILE *f, struct rq_fd *e, uint32_t *st, char rest[RQ_PFX_MAX], size_t *rlen,
		 size_t *skip)
{
	*rlen = *skip = 0;
	if (pending(f)) {
		*st = atomic_load_explicit(&e->line, memory_order_relaxed);
		return f->_IO_write_ptr[-1] != '\n';
	}
	*rlen = rq_ln_load(f->_fileno, e, st, rest, skip);
	return (*st & RQ_LN_MID) || *rlen;
}

/* The last of the caller's bytes (there is one). */
static char last_byte(const struct iovec *v, int nv)
{
	while (!v[nv - 1].iov_len)
		nv--;
	return ((const char *)v[nv - 1].iov_base)[v[nv - 1].iov_len - 1];
}

/* 1 if the pieces hold a newline. */
static int has_nl(const struct iovec *v, int nv)
{
	for (int i = 0; i < nv; i++)
		if (memchr(v[i].iov_base, '\n', v[i].iov_len))
			return 1;
	return 0;
}

/*
 * A buffered stream gets the pieces into its buffer: a fully buffered one
 * has them copied there while its put area has room (what the inlined
 * putc_unlocked does), else through fwrite_unlocked, which flushes as glibc
 * always does (a line-buffered stream at each newline). The line state is
 * the stream's as the program produces it (see README, "stdio").
 */
static size_t put_buffered(FILE *f, struct rq_fd *e, const struct iovec *v, int nv, size_t total)
{
	char buf[RQ_TEXTS_MAX], rest[RQ_PFX_MAX], txt[2 * RQ_TEXTS_MAX];
	struct rq_cment ents[4];
	struct rq_cmemo cm;
	const char *held = NULL;
	size_t rlen, skip, ok = 0;
	struct rq_texts tx;
	struct rq_walk w;
	struct rq_seg s;
	uint32_t st, post, after;
	unsigned epoch;
	int mid;

	if (rq_prefix_wanted())
		held = rq_prefix_acquire(buf, &tx);
	for (int tries = 0;; tries++) { /* again if a signal handler wrote meanwhile */
		epoch = rq_ln_begin();
		mid = where(f, e, &st, rest, &rlen, &skip);
		post = last_byte(v, nv) != '\n' ? RQ_LN_MID : 0;
		if (unlikely(rlen && skip > total) && !has_nl(v, nv)) /* still owed after these bytes */
			post = rq_ln_cut(rq_ln_which(st), rq_ln_plen(st) - rlen, rq_ln_plen(st),
					 skip - total);
		after = post;
		if (post == st)
			break;
		if (tries == 3) {
			atomic_store_explicit(&e->line, post, memory_order_release);
			break;
		}
		if (rq_ln_epoch == epoch &&
		    atomic_compare_exchange_strong_explicit(&e->line, &st, post, memory_order_release,
							    memory_order_relaxed))
			break;
	}
	rq_walk_init(&w, v, nv, total, mid, rest, rlen, skip, held ? &tx : NULL);
	if (unlikely(rq_corr_on())) { /* each text is copied into the FILE before the next line */
		rq_cmemo_init(&cm, total, ents, 4, txt, sizeof(txt), 0);
		w.cm = &cm;
	}
	while (rq_walk_next(&w, &s)) {
		size_t put;

		if ((f->_flags & (F_LINE_BUF | F_PUTTING)) == F_PUTTING &&
		    f->_IO_write_end > f->_IO_write_ptr &&
		    s.len <= (size_t)(f->_IO_write_end - f->_IO_write_ptr)) {
			/* room in the buffer: what the inlined putc_unlocked does, byte by byte */
			memcpy(f->_IO_write_ptr, s.p, s.len);
			f->_IO_write_ptr += s.len;
			if (s.kind == RQ_SEG_CALLER)
				ok += s.len;
			continue;
		}
		put = (rq_sys.fwrite_unlocked)(s.p, 1, s.len, f);

		if (s.kind == RQ_SEG_CALLER)
			ok += put;
		if (put < s.len) {
			after = s.kind != RQ_SEG_CALLER || !put || s.p[put - 1] != '\n' ? RQ_LN_MID : 0;
			break;
		}
	}
	rq_ln_fix(e, epoch, post, after);
	if (held)
		rq_prefix_release(held);
	return ok;
}

size_t rq_stdio_put(FILE *f, struct rq_fd *e, const struct iovec *v, int nv)
{
	size_t total = 0;

	for (int i = 0; i < nv; i++)
		total += v[i].iov_len;
	if (!total)
		return 0;
	if (direct(f))
		return put_direct(f, v, nv, total);
	return put_buffered(f, e, v, nv, total);
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
	char pfx[RQ_INS_MAX], rest[RQ_PFX_MAX];
	size_t rlen, skip;
	uint32_t st;
	int mid;

	if (!e)
		return;
	rq_ln_begin();
	mid = where(f, e, &st, rest, &rlen, &skip);
	if (st != RQ_LN_MID)
		atomic_store_explicit(&e->line, RQ_LN_MID, memory_order_release);
	if (rlen && !skip) /* (a text owed after a JSON line's brace: glibc's bytes are no such line) */
		(rq_sys.fwrite_unlocked)(rest, 1, rlen, f);
	else if (!mid && rq_prefix_wanted())
		(rq_sys.fwrite_unlocked)(pfx, 1, rq_prefix_render(pfx), f);
}

void rq_stdio_line_done(FILE *f)
{
	struct rq_fd *e = rq_stdio_log(f);

	if (e) {
		rq_ln_begin();
		atomic_store_explicit(&e->line, 0, memory_order_release);
	}
}
