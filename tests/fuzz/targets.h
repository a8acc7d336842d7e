/*
 * Fuzz targets, shared by the libFuzzer drivers (make fuzz) and the corpus
 * replay suite (tests/test_fuzz.c). Each aborts on a broken invariant.
 */
#ifndef RQ_FUZZ_TARGETS_H
#define RQ_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

/*
 * The request and response scanners: the first byte picks a read size; the
 * events must be the same as for one whole read, and a kept ID must be valid.
 */
int rq_fuzz_http(const uint8_t *data, size_t size);

/*
 * The line prefixer in every log format: the first byte picks how many bytes
 * the fake kernel takes per call (or no limit), the second the ID (bits 0-1),
 * how many iovecs each call splits the rest into (bits 2-3) and the format
 * (bits 4-5: prefix, logfmt, json, auto); the rest is written to a log
 * stream, again after each short write. Each line must come out as the
 * format's rules, written again in the target, give it (its prefix, pair or
 * member where they go, or nothing for a line that has it already), so that
 * stripping what was inserted gives back the input exactly.
 */
int rq_fuzz_prefix(const uint8_t *data, size_t size);

/*
 * FastCGI: the first byte picks a read size, the second how many bytes the
 * fake kernel takes per call, the third the client's write size; the rest is
 * a stream. Inbound, the events must be the same for one read and for split
 * reads, and every ID valid. Outbound, the bytes written must be the stream
 * with whole PARAMS records inserted right before empty PARAMS records, the
 * same whatever the kernel takes, and read back inbound they must give each
 * request that had no ID the inserted one and change nothing else.
 */
int rq_fuzz_fcgi(const uint8_t *data, size_t size);

/*
 * HTTP/2, both directions. data[0]: read size; data[1]: how many bytes the
 * fake kernel takes per call (0: all); data[2]: bit 0 a non-blocking caller,
 * the rest the caller's write size; data[3..4]: length of the client's part
 * (after the preface, which is added), then the server's part. The client's
 * events must not depend on the read size; the server's bytes, written whole
 * and in pieces, must reach the wire each exactly once, changed only by
 * inserted ID fields and CONTINUATION frames, length and END_HEADERS fixes.
 */
int rq_fuzz_h2(const uint8_t *data, size_t size);

#endif
