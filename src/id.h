/*
 * Request IDs: validation of client-supplied values and UUIDv4 generation.
 *
 * A valid ID is 1 to REQCTX_ID_MAX bytes from A-Z a-z 0-9 - _ . : @ + = / ~.
 * None of those can end a log line, close the "[req:...]" prefix or split a
 * header, so a valid ID is safe to write anywhere.
 */
#ifndef RQ_ID_H
#define RQ_ID_H

#include <stddef.h>
#include <stdint.h>

#define RQ_UUID_LEN 36

/* 1 if c may appear in an ID. */
static inline int rq_id_char(unsigned char c)
{
	extern const uint8_t rq_id_chars[256];
	return rq_id_chars[c];
}

/* 1 if the n bytes at s form a valid ID, 0 if not. */
int rq_id_valid(const char *s, size_t n);

/*
 * Writes a fresh lowercase UUIDv4 (36 bytes, no NUL) to out. Draws from a
 * per-thread generator seeded once from getrandom and again in every new
 * process, however it was made (fork, _Fork, a raw clone: a page the kernel
 * wipes in children tells, at no syscall per ID), so forked workers never
 * repeat each other's IDs. Async-signal-safe.
 */
void rq_uuid4(char out[RQ_UUID_LEN]);

/* 64 random bits from the same per-thread generator. Async-signal-safe. */
uint64_t rq_rand64(void);

/* Makes every thread reseed before its next ID (pthread_atfork child hook). */
void rq_id_after_fork(void);

#endif
