/*
 * Memory that reqctx takes for its own tables, never from malloc: chunks
 * mapped on first use and published with a compare-and-swap, and pools of
 * fixed-size objects made of such chunks.
 *
 * A chunk is mapped once and never unmapped, so a pointer into one stays
 * valid for the life of the process, even in a thread that races with the
 * object's release (it may then see the object reused, never freed memory).
 *
 * A pool hands out objects by index: a lock-free stack of released indices
 * (tagged against ABA), else the next never-used index, up to a fixed cap.
 * Nothing blocks and nothing allocates on the heap, so taking and giving
 * back an object is safe from any thread and from a signal handler (it may
 * map a chunk: mmap is a system call).
 */
#ifndef RQ_POOL_H
#define RQ_POOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/*
 * The chunk at *slot, of `bytes` bytes (zeroed when new). If absent, maps
 * and publishes it when `make`, else returns NULL; NULL also if the mapping
 * fails. Two threads racing to make it get the same chunk.
 */
void *rq_chunk(void *_Atomic *slot, size_t bytes, int make);

/*
 * A pool of objects of `size` bytes, 2^shift per chunk, `cap` at most. Each
 * chunk holds its objects, then the free stack's link of each (an index),
 * which only the pool writes: a thread still using a released object cannot
 * corrupt the stack. `chunk` has room for cap >> shift chunk pointers.
 */
struct rq_pool {
	size_t size;
	uint32_t shift;
	uint32_t cap;
	char *_Atomic *chunk;
	_Atomic uint64_t top;  /* free stack: tag << 32 | (index + 1); 0 when empty */
	_Atomic uint32_t hi;   /* indices ever handed out (may run past cap) */
	_Atomic uint32_t live; /* objects taken and not given back */
};

/* Defines pool `name` of `max` objects of type `type`, 2^sh per chunk. */
#define RQ_POOL_DEFINE(name, type, sh, max)                                                  \
	static char *_Atomic name##_chunks[((max) + (1u << (sh)) - 1) >> (sh)];              \
	static struct rq_pool name = { .size = sizeof(type), .shift = (sh), .cap = (max),    \
				       .chunk = name##_chunks }

/*
 * Takes an object: its index in *idx and its address, or NULL when the pool
 * is at its cap or out of memory. The object holds what it held when it was
 * last given back (zeros when new): the caller initialises it.
 */
void *rq_pool_take(struct rq_pool *p, uint32_t *idx);

/* Gives object idx back. It must have been taken, and not given back since. */
void rq_pool_give(struct rq_pool *p, uint32_t idx);

/* Object idx (taken at least once), or NULL. Never maps. */
static inline void *rq_pool_at(struct rq_pool *p, uint32_t idx)
{
	char *c;

	if (unlikely(idx >= p->cap))
		return NULL;
	c = atomic_load_explicit(&p->chunk[idx >> p->shift], memory_order_acquire);
	return c ? c + (size_t)(idx & ((1u << p->shift) - 1)) * p->size : NULL;
}

/* Objects taken and not given back. */
static inline uint32_t rq_pool_live(struct rq_pool *p)
{
	return atomic_load_explicit(&p->live, memory_order_relaxed);
}

#endif
