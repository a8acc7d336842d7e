/*
 * Handles: a context named by its serial, for runtimes that capture and
 * re-enter contexts many times per request (reqctx_handle_take/enter).
 *
 * A handle is struct rq_ctx.serial. take() interns the current context into
 * a process-wide, direct-mapped table indexed by serial mod RQ_HD_RECS, and
 * writes only when the record does not already hold that serial; enter(h)
 * reads the record back under its seqlock and makes it current if it still
 * holds serial h, else "unknown". No lock and no malloc: the table's chunks
 * are mmap'ed on first use, so a host that never takes a handle maps nothing.
 *
 * Records are 64 bytes and hold IDs of up to RQ_HD_INLINE bytes (a UUID is
 * 36). A longer ID goes into a second table of RQ_HD_LONG full-size records,
 * indexed by serial mod RQ_HD_LONG; the main record then only says so.
 *
 * Bound: 4 MiB for the main table and 576 KiB for long IDs, each touched only
 * as used. A record is overwritten only when a context whose serial is
 * congruent mod RQ_HD_RECS (mod RQ_HD_LONG for a long ID) is taken, that is,
 * one at least that many requests apart. A handle whose record was reused
 * enters "unknown", never another request.
 *
 * Two threads writing the same record at the same instant do not wait for
 * each other: the second leaves it alone (if it was interning another
 * serial, its handle enters "unknown"). Everything here is
 * async-signal-safe.
 */
#ifndef RQ_HANDLE_H
#define RQ_HANDLE_H

#include <stdint.h>

#define RQ_HD_RECS   (1u << 16) /* records of the main table, 64 bytes each */
#define RQ_HD_CHUNK  (1u << 10) /* records per mmap'ed chunk (64 KiB) */
#define RQ_HD_INLINE 48         /* longest ID held in a main record */
#define RQ_HD_LONG   (1u << 12) /* records for longer IDs, 144 bytes each */

/* Interns the current context; returns its handle (0 outside any request). */
uint64_t rq_handle_take(void);

/*
 * Enters handle h ("unknown" for 0, or when its record no longer holds it).
 * Interns the context current before, so that entering the returned handle
 * restores it. Returns that handle.
 */
uint64_t rq_handle_enter(uint64_t h);

/*
 * Makes handle h current as the library's own context (a switch the library
 * makes itself, like a read's; not an rq_handle_enter), "unknown" if its
 * record no longer holds it.
 */
void rq_handle_resume(uint64_t h);

#endif
