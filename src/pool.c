#include "pool.h"

#include <sys/mman.h>

void *rq_chunk(void *_Atomic *slot, size_t bytes, int make)
{
	void *c = atomic_load_explicit(slot, memory_order_acquire);
	void *expected = NULL;

	if (c || !make)
		return c;
	c = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED)
		return NULL;
	if (!atomic_compare_exchange_strong_explicit(slot, &expected, c, memory_order_acq_rel,
						     memory_order_acquire)) {
		munmap(c, bytes);
		c = expected;
	}
	return c;
}

static size_t chunk_bytes(const struct rq_pool *p)
{
	return (p->size + sizeof(uint32_t)) << p->shift;
}

/* The free-stack link of object idx, whose chunk exists. */
static _Atomic uint32_t *link_of(struct rq_pool *p, uint32_t idx)
{
	char *c = atomic_load_explicit(&p->chunk[idx >> p->shift], memory_order_acquire);

	return (_Atomic uint32_t *)(c + (p->size << p->shift)) + (idx & ((1u << p->shift) - 1));
}

/* Pops an index from the free stack, or returns -1 if it is empty. */
static int64_t pop(struct rq_pool *p)
{
	uint64_t top = atomic_load_explicit(&p->top, memory_order_acquire);

	while ((uint32_t)top) {
		uint32_t idx = (uint32_t)top - 1;
		uint32_t next = atomic_load_explicit(link_of(p, idx), memory_order_relaxed);
		uint64_t now = ((top >> 32) + 1) << 32 | next;

		if (atomic_compare_exchange_weak_explicit(&p->top, &top, now, memory_order_acquire,
							  memory_order_acquire))
			return idx;
	}
	return -1;
}

void *rq_pool_take(struct rq_pool *p, uint32_t *idx)
{
	int64_t got = pop(p);
	uint32_t i;

	if (got >= 0) {
		i = (uint32_t)got;
	} else {
		i = atomic_fetch_add_explicit(&p->hi, 1, memory_order_relaxed);
		if (i >= p->cap ||
		    !rq_chunk((void *_Atomic *)&p->chunk[i >> p->shift], chunk_bytes(p), 1))
			return NULL; /* (an index lost to a failed mapping is not reused) */
	}
	atomic_fetch_add_explicit(&p->live, 1, memory_order_relaxed);
	*idx = i;
	return rq_pool_at(p, i);
}

void rq_pool_give(struct rq_pool *p, uint32_t idx)
{
	_Atomic uint32_t *l = link_of(p, idx);
	uint64_t top = atomic_load_explicit(&p->top, memory_order_relaxed), now;

	atomic_fetch_sub_explicit(&p->live, 1, memory_order_relaxed);
	do {
		atomic_store_explicit(l, (uint32_t)top, memory_order_relaxed);
		now = ((top >> 32) + 1) << 32 | (idx + 1);
	} while (!atomic_compare_exchange_weak_explicit(&p->top, &top, now, memory_order_release,
							memory_order_relaxed));
}
