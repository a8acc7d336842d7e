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
 * The line prefixer: the first byte picks how many bytes the fake kernel
 * takes per call, the second the ID; the rest is written to a log stream.
 * Stripping the prefixes must give back the input exactly.
 */
int rq_fuzz_prefix(const uint8_t *data, size_t size);

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
