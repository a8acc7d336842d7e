/*
 * HTTP/2 (RFC 9113) for reqctx: a frame scanner for each direction of a
 * connection, request IDs per stream, and the plan that adds the ID header to
 * each response's HEADERS block. Streaming, no allocation, fixed state.
 *
 * Inbound (bytes the server reads), rq_h2_read: the client preface, then
 * frames. SETTINGS (HEADER_TABLE_SIZE bounds the server's encoder, so the
 * response-side decoder; MAX_FRAME_SIZE bounds what the server may send),
 * HEADERS/CONTINUATION decoded with HPACK, and for each new stream an event
 * "stream S's request headers are complete, with the client's ID or none".
 * After every read `in.last` names the stream whose frame was read last.
 *
 * Outbound (bytes the server writes), rq_h2_plan + rq_h2_commit: the server's
 * SETTINGS (HEADER_TABLE_SIZE bounds the client's encoder, so the request-side
 * decoder), HEADERS/CONTINUATION/PUSH_PROMISE decoded with HPACK, and for the
 * first HEADERS block of a response with a final status (not 1xx, not
 * trailers) that has no ID header, an insertion of
 *
 *     0x00 <name length> <name> <value length> <value>
 *
 * (a literal header field without indexing, new name, no Huffman: neither
 * side's dynamic table changes) at the end of the block, with the block's
 * last frame length fixed. If the grown frame would exceed the client's
 * SETTINGS_MAX_FRAME_SIZE, the last frame's END_HEADERS flag is cleared
 * instead and a CONTINUATION frame (END_HEADERS) carrying the field follows
 * it. The scanner only ever sees the caller's bytes; the edits are applied
 * on the way out.
 *
 * A block's last frame must be wholly in one write for the length to be
 * fixed. When it is cut across writes, the first write that holds its flags
 * byte clears END_HEADERS, and the write that holds the frame's end adds a
 * CONTINUATION frame with the field, or an empty one if the block turns out
 * to need none (a 1xx, trailers, or the server's own header): a block is
 * never guessed at. When even the flags byte went out in an earlier write
 * the response is left alone.
 *
 * Anything that is not valid HTTP/2, or more than reqctx tracks, stops the
 * inbound scanner for the connection ("dead": one ID for the connection from
 * then on, RQ_H2_EV_DEAD once) and the outbound planner (no more edits; an
 * edit already half on the wire is still finished, so the frames stay
 * exact). Caps: RQ_HP_ENTS dynamic table entries and RQ_HP_LIST_MAX decoded
 * bytes per block (hpack.h), RQ_H2_BLOCK_MAX encoded bytes and
 * RQ_H2_BLOCK_FRAMES frames per header block, RQ_H2_SETTINGS_RUN client
 * SETTINGS frames in a row, a size update beyond the announced table size.
 * Streams beyond RQ_H2_STREAMS open at once share the connection's ID.
 *
 * ---- Integration (the connection layer) ----------------------------------
 *
 * Memory: sizeof(struct rq_h2) is 4696 bytes per HTTP/2 connection (two HPACK
 * tables of RQ_HP_ENTS entries, RQ_HP_VALS remembered IDs, the stream map),
 * needed only once a connection turns out to speak HTTP/2, plus
 * RQ_H2_STREAMS + 1 request slots (struct rq_slot, 152 bytes each: 5 KiB) for
 * the IDs. A plan (struct rq_h2_plan) is 4160 bytes of the writer's stack. The
 * state is plain memory: it may live in any zeroed or reused block, and is
 * never resized.
 *
 * Detection:
 *   - h2c by prior knowledge: the HTTP/1 request scanner stops (RQ_EV_DEAD)
 *     on "PRI * HTTP/2.0" at its 12th byte. Run rq_h2_preface() on every byte
 *     of the connection's first reads until it answers 1 (the preface is
 *     there: rq_h2_init(h, 0), then rq_h2_read() the whole preface and what
 *     follows) or -1 (not HTTP/2). A server on an HTTP/2-only port (nginx
 *     `listen 80 http2`) may write its SETTINGS before it reads anything: a
 *     first write on a connection with no request yet whose 4th byte is 0x04
 *     (SETTINGS) and whose stream ID is 0 is that server preface: init then,
 *     and plan that write; the first read must then be the client preface.
 *   - h2 over TLS: after the handshake, if SSL_get0_alpn_selected() is "h2",
 *     rq_h2_init(h, 0) and feed every plaintext byte read from the start.
 *   - h2c by Upgrade: the request scanner must note a request with
 *     "Upgrade: h2c" (the token) and an HTTP2-Settings header (http.c does
 *     not yet); when the response scanner reports the end of a 101 head for
 *     it, rq_h2_init(h, RQ_H2_UPGRADED): stream 1 is that request (slot 0:
 *     copy the HTTP/1 request's ID there), the server's bytes after the 101
 *     head are frames (plan only those: pass the rest of the iovecs), and the
 *     client's next bytes are the preface. The client's HTTP2-Settings are
 *     not read: its table size is then not checked on the response side (its
 *     MAX_FRAME_SIZE cannot be below the 16384 assumed).
 *
 * On read (n bytes in buf): loop `off += rq_h2_read(h, buf + off, n - off,
 * &ev)` until off == n. RQ_H2_EV_REQ: fill slot ev.slot with ev.id (ev.id_len
 * bytes, a valid ID) or a fresh UUIDv4 when ev.id_len is 0; for ev.slot ==
 * RQ_H2_CONN (more streams than tracked) keep the connection's ID if it has
 * one. RQ_H2_EV_DEAD: generate the connection's ID if it has none; every
 * stream shares it from then on. After the loop, the thread's context is slot
 * `h->in.last` (RQ_H2_CONN: the connection's ID; RQ_H2_NONE: no stream yet).
 *
 * A read that holds frames of several streams leaves the context on the
 * stream of the last frame read with a non-zero stream ID (PRIORITY frames
 * and frames on stream 0 -- SETTINGS, PING, GOAWAY, a connection-level
 * WINDOW_UPDATE -- leave it as it was; a stream not tracked gives the
 * connection's ID). A line the server logs after that read, before its next
 * read or write on the connection, carries that stream's ID, even if it is
 * about an earlier stream of the same read. A write makes the stream of its
 * last frame current (`h->out.last`, same rules), so what the server logs
 * after writing a response (nginx's access log line) carries that
 * response's ID. A server that runs each request as it parses the read
 * (nginx) and logs about it before answering it (a 404's error line) logs
 * the first stream of a read under the last one's ID, and each later one
 * under the ID of the response it wrote just before.
 * RQ_H2_EV_REQ events come in frame order, so a layer that wants the first
 * new stream of a read instead can have it.
 *
 * On write (the caller's iovecs, `total` bytes):
 *     rq_h2_plan(h, iov, iovcnt, id_fn, arg, &p);
 *     if p.n == 0: write the caller's bytes as they are (p.covered bytes
 *         may be all of them); c = the kernel's count, x = 0
 *     else: rq_h2_wire(&p, iov, iovcnt, v, max) builds the iovecs to write
 *         (p.wire bytes); r = the kernel's count; rq_h2_map(&p, r, &c, &x)
 *     ret = rq_h2_commit(h, &p, iov, iovcnt, c, x, hold)
 * and the caller is told `ret` bytes (the kernel's error if r < 0: nothing
 * is committed then; repeat with the same bytes). id_fn(arg, slot, sid, out)
 * writes the ID of slot `slot` (stream `sid`) and returns its length (0:
 * none); it is called only while planning. With `hold` set (a non-blocking
 * caller), a write whose caller bytes all went out but whose trailing
 * insertion did not is reported one byte short: that byte is dropped from the
 * next write, which finishes the insertion, so the caller comes back instead
 * of the peer waiting on a half frame. Without `hold` (a blocking caller),
 * write the rest of a trailing insertion before returning: rq_h2_plan on an
 * empty write plans exactly that remainder.
 *
 * For SSL_write, which takes one buffer and must be retried with the same
 * one: emit the wire segments in order (a bounce buffer, or one SSL_write
 * per segment) and commit only what OpenSSL reports written. A plan's texts
 * live in the plan, so after SSL_ERROR_WANT_WRITE keep the plan (and any
 * bounce buffer) where the retry finds it at the same address, per thread or
 * per connection, and give OpenSSL the same segment again; plan anew only
 * after a commit (a new plan may differ: the client's SETTINGS or the
 * reader's state may have changed in between).
 *
 * Cost: a plan scans the caller's bytes ahead on a copy of the outbound state
 * (1.8 KiB); DATA payloads are skipped by length, header blocks decoded. When
 * all it covered went out, the commit takes that copy as the state (and
 * makes the stream-map changes the plan noted); otherwise it scans again the
 * bytes that did. A kernel that takes a few bytes per call makes each retry
 * plan the rest of the write again.
 *
 * sendfile on an HTTP/2 connection (nginx sends DATA payloads of files that
 * way on h2c): first get out any insertion due at this point (plan an empty
 * write, as above), then sendfile, then rq_h2_opaque(h, r). Bytes inside a
 * DATA frame's payload are accounted for; anywhere else the planner stops
 * for the connection.
 *
 * On close: nothing to free; the state is plain memory.
 */
#ifndef RQ_H2_H
#define RQ_H2_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "hpack.h"

#define RQ_H2_STREAMS      32          /* streams tracked at once; more share the connection's ID */
#define RQ_H2_CONN         RQ_H2_STREAMS /* slot of the connection's own ID */
#define RQ_H2_NONE         0xffu       /* in.last / out.last before any stream */
#define RQ_H2_BLOCK_MAX    (256u << 10) /* encoded bytes of one header block */
#define RQ_H2_BLOCK_FRAMES 64          /* frames of one header block */
#define RQ_H2_SETTINGS_RUN 32          /* client SETTINGS frames in a row without a header block */
#define RQ_H2_EDITS        16          /* edits in one plan */
#define RQ_H2_TEXT         1024        /* inserted bytes in one plan */
#define RQ_H2_LOG          32          /* stream map changes a plan keeps for its commit */
/* Largest insertion: a CONTINUATION header and the field. */
#define RQ_H2_INS_MAX      (9 + 1 + 1 + RQ_HDR_MAX + 2 + REQCTX_ID_MAX)

#define RQ_H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define RQ_H2_PREFACE_LEN 24

#define RQ_H2_UPGRADED 1 /* rq_h2_init: h2c after a 101 to an Upgrade request (stream 1) */

/* One direction's frame parser. */
struct rq_h2_fr {
	uint8_t st;         /* F_* */
	uint8_t n;          /* bytes of the frame header, preface or setting gathered */
	uint8_t type, flags;
	uint8_t pre;        /* HEADERS/PUSH_PROMISE: priority or promised-stream bytes left */
	uint8_t pad;        /* padding length */
	uint8_t blk;        /* open header block: 0, B_HDR or B_PUSH */
	uint8_t blk_es;     /* its HEADERS frame had END_STREAM */
	uint8_t blk_new;    /* inbound: it opens a stream */
	uint8_t blk_cand;   /* outbound: it may need the ID header */
	uint8_t blk_slot;
	uint8_t blk_frames;
	uint8_t setrun;     /* SETTINGS frames since the last header block */
	uint8_t watch;      /* plan: decide at this fragment's end */
	uint8_t b[9];
	uint32_t len, sid;  /* current frame */
	uint32_t left;      /* its payload bytes not read yet */
	uint32_t frag;      /* of those, header block fragment bytes */
	uint32_t blk_sid, blk_bytes;
	uint64_t pos;       /* bytes scanned in this direction */
	uint64_t hdr_pos;   /* where the current frame started */
};

struct rq_h2_in {
	struct rq_h2_fr fr;
	struct rq_hpack hp;
	struct rq_hp_vals vals;
	uint32_t max_sid;   /* highest stream the client opened */
	uint8_t last;       /* slot of the last frame read (RQ_H2_NONE, RQ_H2_CONN) */
	uint8_t dead;
};

struct rq_h2_out {
	struct rq_h2_fr fr;
	struct rq_hpack hp;
	uint8_t last;       /* slot of the last frame written */
	uint8_t nomore;     /* no new edits (the planner gave up) */
	uint8_t skip;       /* caller bytes at the next write's start already on the wire */
	/* The edit in force: its first byte is out, the rest must follow. */
	uint8_t rep_n;      /* caller bytes at rep_pos replaced by rep (0: none) */
	uint8_t rep[3];
	uint8_t ins_st;     /* 0: none; 1: ins at ins_pos, ins_sent bytes out; 2: at ins_pos,
			       a CONTINUATION still to be decided (for stream ins_sid) */
	uint8_t ins_slot;
	uint16_t ins_len, ins_sent;
	uint32_t ins_sid;
	uint64_t rep_pos, ins_pos;
	char ins[RQ_H2_INS_MAX];
};

/* A tracked stream: its ID in the high half, S_* flags in the low half (0: free). */
struct rq_h2_stream {
	_Atomic uint64_t w;
};

struct rq_h2 {
	struct rq_h2_in in;   /* the reader's */
	struct rq_h2_out out; /* the writer's */
	_Atomic uint32_t peer_hts; /* largest HEADER_TABLE_SIZE the client announced */
	_Atomic uint32_t peer_mfs; /* the client's MAX_FRAME_SIZE */
	_Atomic uint32_t own_hts;  /* largest HEADER_TABLE_SIZE the server announced */
	_Atomic uint32_t in_dead;
	uint8_t upgraded;
	struct rq_h2_stream st[RQ_H2_STREAMS];
};

/* Inbound events. */
enum { RQ_H2_EV_NONE, RQ_H2_EV_REQ, RQ_H2_EV_DEAD };

struct rq_h2_ev {
	int type;
	uint32_t sid;
	unsigned slot;   /* RQ_H2_EV_REQ: 0..RQ_H2_STREAMS-1, or RQ_H2_CONN */
	uint32_t id_len; /* 0: the client sent no valid ID */
	const char *id;  /* valid until the next rq_h2_read */
};

/* An edit of the caller's bytes of one write. */
struct rq_h2_edit {
	size_t at;         /* caller offset */
	uint32_t del;      /* caller bytes it stands for: 0 (an insertion), 1 or 3
			      (replaced by as many bytes), or `skip` (dropped: len 0) */
	uint32_t len;
	const char *text;
};

/* A decision of one plan, kept if its first byte goes out. */
struct rq_h2_grp {
	uint8_t kind;      /* G_NEW or G_DECIDE */
	uint8_t rep_n;
	uint8_t rep[3];
	uint8_t ins_st;    /* 1: decided (ins), 2: to decide at ins_pos */
	uint8_t slot;
	uint16_t ins_len;
	uint32_t sid;
	uint64_t rep_pos, ins_pos;
	const char *ins;
};

/* A change to the stream map that a plan found, made when its bytes go out. */
struct rq_h2_mark {
	uint32_t sid;
	uint8_t bit, reset;
};

struct rq_h2_plan {
	size_t total;      /* the caller's bytes */
	size_t covered;    /* of those, the ones this plan covers (the rest: next call) */
	size_t wire;       /* bytes it puts on the wire */
	uint64_t base;     /* stream position of the caller's first byte */
	int n, ng;
	size_t tlen;
	struct rq_h2_edit e[RQ_H2_EDITS];
	struct rq_h2_grp g[RQ_H2_EDITS];
	char text[RQ_H2_TEXT];
	int adopt;         /* scratch may become the state if all of it goes out */
	int nlog;
	uint32_t hts;      /* largest HEADER_TABLE_SIZE the server announced in it */
	struct rq_h2_mark log[RQ_H2_LOG];
	struct rq_h2_out scratch; /* the outbound state, scanned ahead */
};

/* Returns the ID of request slot `slot` (stream `sid`) in out; its length, 0 if none. */
typedef size_t (*rq_h2_id_fn)(void *arg, unsigned slot, uint32_t sid, char out[REQCTX_ID_MAX]);

/* A new HTTP/2 connection; `mode` 0 (preface first) or RQ_H2_UPGRADED. */
void rq_h2_init(struct rq_h2 *h, int mode);

/*
 * Matches the client preface incrementally: *matched (0 at the start) counts
 * the bytes matched so far. Returns 1 once all 24 are there, -1 as soon as
 * a byte differs, 0 while it is a strict prefix.
 */
int rq_h2_preface(uint8_t *matched, const char *buf, size_t n);

/*
 * Scans n bytes the server read. Stops after a stream's request headers
 * (RQ_H2_EV_REQ) and the first time the scanner gives up (RQ_H2_EV_DEAD).
 * Returns the bytes consumed.
 */
size_t rq_h2_read(struct rq_h2 *h, const char *buf, size_t n, struct rq_h2_ev *ev);

/*
 * Plans a write of the caller's iovecs (see the integration notes): edits in
 * caller order, covering the first p->covered bytes. Returns p->n.
 */
int rq_h2_plan(struct rq_h2 *h, const struct iovec *iov, int iovcnt, rq_h2_id_fn id,
	       void *arg, struct rq_h2_plan *p);

/*
 * Lays out a plan's wire bytes as iovecs over the caller's buffers and the
 * plan's text. Returns how many it used, or -1 if more than max are needed.
 */
int rq_h2_wire(const struct rq_h2_plan *p, const struct iovec *iov, int iovcnt,
	       struct iovec *out, int max);

/*
 * Maps `wire` bytes taken by the kernel to the caller's bytes they complete
 * (*caller) and, when they end inside or right after an insertion with no
 * caller byte after it, the bytes of that insertion among them (*ins).
 */
void rq_h2_map(const struct rq_h2_plan *p, size_t wire, size_t *caller, size_t *ins);

/*
 * Advances the outbound scanner over the `caller` bytes that went out and
 * keeps the edits in force, with `ins` bytes of an insertion at that point.
 * Returns the caller byte count to report (see `hold`).
 */
size_t rq_h2_commit(struct rq_h2 *h, const struct rq_h2_plan *p, const struct iovec *iov,
		    int iovcnt, size_t caller, size_t ins, int hold);

/*
 * Accounts for n bytes the server wrote without showing them (sendfile).
 * Returns 0 if they are DATA payload; -EAGAIN, changing nothing, if an
 * insertion is due first; -EINVAL if they cannot be followed: the planner
 * then stops for good (rq_h2_out_kill).
 */
int rq_h2_opaque(struct rq_h2 *h, uint64_t n);

/*
 * Stops the inbound scanner for good, as invalid input does (bytes the
 * server read without reqctx seeing them: one ID for the connection).
 */
void rq_h2_in_kill(struct rq_h2 *h);

/*
 * Stops planning new edits for good. An edit already half out is still
 * finished; once none is, frames are no longer followed either.
 */
void rq_h2_out_kill(struct rq_h2 *h);

#endif
