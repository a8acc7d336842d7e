/*
 * HPACK (RFC 7541) decoding for one direction of an HTTP/2 connection,
 * streaming and without allocation.
 *
 * The decoder reads header block fragments cut anywhere (across CONTINUATION
 * frames and across reads) and keeps only what reqctx needs: for each block,
 * whether the request-ID header (rq_cfg.hdr_lc) was present, its value when
 * that is a valid ID (the first valid one wins, as in HTTP/1), and the
 * `:status` code. It never stores a header value other than an ID.
 *
 * The dynamic table is tracked exactly but compactly: for each entry its name
 * and value lengths (eviction needs the sizes, and a literal with an indexed
 * name needs that name's length) and what the name is (the ID header,
 * `:status`, or anything else). ID values live in a small pool beside it
 * (struct rq_hp_vals), which only the request side needs.
 *
 * Errors are final. RQ_HP_ERR: the input is not valid HPACK (a bad integer,
 * index, Huffman code or size update; a representation cut by the end of the
 * block). RQ_HP_CAP: valid, but more than the decoder tracks (more than
 * RQ_HP_ENTS entries, a name of 64 KiB or more, a block that expands past
 * RQ_HP_LIST_MAX). Either way the caller gives up on the connection.
 *
 * Strings that reqctx does not need (values of other headers, sent without
 * indexing) are skipped by length without being decoded, so an invalid
 * Huffman code in one of those is not noticed; every string whose content or
 * decoded length matters is decoded and checked (RFC 7541 5.2: no EOS, at
 * most 7 bits of padding, all ones).
 */
#ifndef RQ_HPACK_H
#define RQ_HPACK_H

#include <stddef.h>
#include <stdint.h>

#include "reqctx.h"

#define RQ_HP_ENTS     128          /* dynamic table entries tracked (a full 4096-byte
				       table of the smallest entries holds 128) */
#define RQ_HP_VALS     8            /* request-ID values kept from the dynamic table */
#define RQ_HP_LIST_MAX (256u << 10) /* decoded size of one block (RFC 7541 4.1 sizes) */
#define RQ_HP_DEFAULT  4096         /* SETTINGS_HEADER_TABLE_SIZE until announced */

enum { RQ_HP_OK = 0, RQ_HP_ERR = -1, RQ_HP_CAP = -2 };

/* What a name is. */
enum { RQ_HP_OTHER, RQ_HP_ID, RQ_HP_STATUS };

/*
 * The ID values of the newest RQ_HP_VALS dynamic-table entries of the ID
 * header, so that an indexed reference to one yields its value. An older
 * entry's value is forgotten when its place is taken: a reference to it
 * reports the header present without a value (a fresh ID is used).
 */
struct rq_hp_vals {
	uint8_t next;
	uint8_t len[RQ_HP_VALS];
	uint32_t owner[RQ_HP_VALS]; /* insertion number of the entry holding it, 0: none */
	char v[RQ_HP_VALS][REQCTX_ID_MAX];
};

struct rq_hpack {
	/* the representation being read */
	uint8_t st;     /* H_* state */
	uint8_t rep;    /* R_* representation */
	uint8_t what;   /* what the integer being read is for */
	uint8_t ibytes; /* continuation bytes of that integer */
	uint8_t huff;   /* the string being read is Huffman-coded */
	uint8_t hbits;  /* Huffman: bits of the code being read */
	uint8_t kind;   /* RQ_HP_* of the field's name */
	uint8_t match;  /* names still matching the name being read */
	uint8_t decode; /* the string's octets are needed (decoded, not skipped) */
	uint8_t vst;    /* ID value: 0 before, 1 inside, 2 after the text */
	uint8_t vbad;   /* the value being read is not a valid ID or status */
	uint8_t vlen_id;
	uint16_t aux;   /* indexed name's entry: its status, or its ID value's slot + 1 */
	uint16_t vstatus;
	uint32_t ival;  /* integer accumulator */
	uint32_t left;  /* encoded bytes left of the string */
	uint32_t hcode; /* Huffman: the code's bits */
	uint32_t nlen;  /* decoded octets of the name */
	uint32_t vlen;  /* decoded (or, when skipped, encoded) octets of the value */
	char vbuf[REQCTX_ID_MAX];

	/* the block being read */
	uint8_t fields;  /* a field was read (size updates must come first) */
	uint8_t id_seen; /* the ID header was present */
	uint8_t id_have; /* and id/id_len hold its first valid value */
	uint8_t id_len;
	uint16_t status; /* :status, 0 if absent or invalid */
	uint32_t list;   /* decoded size so far */
	char id[REQCTX_ID_MAX];

	/* the dynamic table */
	int8_t err;     /* RQ_HP_* once failed */
	uint32_t limit; /* largest size an update may set (the decoder side's setting) */
	uint32_t max;   /* current maximum size */
	uint32_t size;  /* current size */
	uint32_t n;     /* entries */
	uint32_t head;  /* ring index of the newest entry */
	uint32_t ins;   /* entries ever inserted (numbers them for rq_hp_vals) */
	uint32_t esize[RQ_HP_ENTS];
	uint16_t enlen[RQ_HP_ENTS];
	uint16_t eaux[RQ_HP_ENTS];
	uint8_t ekind[RQ_HP_ENTS];
};

/* An empty table of `max` bytes, updates allowed up to `limit`. */
void rq_hp_init(struct rq_hpack *d, uint32_t max, uint32_t limit);

/* Starts a header block: clears the per-block results. */
void rq_hp_begin(struct rq_hpack *d);

/*
 * Decodes n bytes of the current block. `vals` keeps request-ID values from
 * the dynamic table (NULL: none are kept, only their presence). Returns
 * RQ_HP_OK, or the error, which every later call returns too.
 */
int rq_hp_feed(struct rq_hpack *d, struct rq_hp_vals *vals, const uint8_t *buf, size_t n);

/* Ends the block: RQ_HP_ERR if it stopped inside a representation. */
int rq_hp_end(struct rq_hpack *d);

/* Empties `vals`. */
void rq_hp_vals_init(struct rq_hp_vals *v);

/*
 * Entry i of the dynamic table (1: the newest): its size (RFC 7541 4.1),
 * name length and kind. Returns -1 if there is no such entry. For tests.
 */
int rq_hp_entry(const struct rq_hpack *d, uint32_t i, uint32_t *size, uint32_t *nlen, int *kind);

#endif
