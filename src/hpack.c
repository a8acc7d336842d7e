#include "hpack.h"

#include <string.h>

#include "config.h"
#include "id.h"

enum { H_REP, H_INT, H_SLEN, H_STR };     /* states */
enum { R_INDEXED, R_INCR, R_NOIDX, R_SIZE }; /* representations */
enum { W_INDEX, W_NAMEIDX, W_SIZE, W_NLEN, W_VLEN }; /* what an integer is for */

#define M_ID 1u /* the name may still be the request-ID header */
#define M_ST 2u /* the name may still be ":status" */

#define INT_BYTES 4 /* continuation bytes allowed: values up to 2^28 + 126 */

static const char status_name[] = ":status";

/* RFC 7541 Appendix A, with the lengths. */
#define E(n, v) { n, v, sizeof(n) - 1, sizeof(v) - 1 }
static const struct {
	const char *name, *value;
	uint8_t nlen, vlen;
} stat[61] = {
	E(":authority", ""), E(":method", "GET"), E(":method", "POST"), E(":path", "/"),
	E(":path", "/index.html"), E(":scheme", "http"), E(":scheme", "https"),
	E(":status", "200"), E(":status", "204"), E(":status", "206"), E(":status", "304"),
	E(":status", "400"), E(":status", "404"), E(":status", "500"), E("accept-charset", ""),
	E("accept-encoding", "gzip, deflate"), E("accept-language", ""), E("accept-ranges", ""),
	E("accept", ""), E("access-control-allow-origin", ""), E("age", ""), E("allow", ""),
	E("authorization", ""), E("cache-control", ""), E("content-disposition", ""),
	E("content-encoding", ""), E("content-language", ""), E("content-length", ""),
	E("content-location", ""), E("content-range", ""), E("content-type", ""), E("cookie", ""),
	E("date", ""), E("etag", ""), E("expect", ""), E("expires", ""), E("from", ""),
	E("host", ""), E("if-match", ""), E("if-modified-since", ""), E("if-none-match", ""),
	E("if-range", ""), E("if-unmodified-since", ""), E("last-modified", ""), E("link", ""),
	E("location", ""), E("max-forwards", ""), E("proxy-authenticate", ""),
	E("proxy-authorization", ""), E("range", ""), E("referer", ""), E("refresh", ""),
	E("retry-after", ""), E("server", ""), E("set-cookie", ""),
	E("strict-transport-security", ""), E("transfer-encoding", ""), E("user-agent", ""),
	E("vary", ""), E("via", ""), E("www-authenticate", ""),
};
#undef E

/*
 * The Huffman code of RFC 7541 Appendix B is canonical: codes of one length
 * are consecutive integers in symbol order, and each length's first code is
 * (previous first + previous count) << 1. So a code of `len` bits read so far
 * is a symbol iff it is below hlim[len], and that symbol is
 * hsym[hbase[len] + code]. (tests/test_hpack.c checks every symbol against an
 * independent encoder.)
 */
static const uint16_t hsym[257] = {
	48, 49, 50, 97, 99, 101, 105, 111, 115, 116, 32, 37, 45, 46,
	47, 51, 52, 53, 54, 55, 56, 57, 61, 65, 95, 98, 100, 102,
	103, 104, 108, 109, 110, 112, 114, 117, 58, 66, 67, 68, 69, 70,
	71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84,
	85, 86, 87, 89, 106, 107, 113, 118, 119, 120, 121, 122, 38, 42,
	44, 59, 88, 90, 33, 34, 40, 41, 63, 39, 43, 124, 35, 62,
	0, 36, 64, 91, 93, 126, 94, 125, 60, 96, 123, 92, 195, 208,
	128, 130, 131, 162, 184, 194, 224, 226, 153, 161, 167, 172, 176, 177,
	179, 209, 216, 217, 227, 229, 230, 129, 132, 133, 134, 136, 146, 154,
	156, 160, 163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190,
	196, 198, 228, 232, 233, 1, 135, 137, 138, 139, 140, 141, 143, 147,
	149, 150, 151, 152, 155, 157, 158, 165, 166, 168, 174, 175, 180, 182,
	183, 188, 191, 197, 231, 239, 9, 142, 144, 145, 148, 159, 171, 206,
	215, 225, 236, 237, 199, 207, 234, 235, 192, 193, 200, 201, 202, 205,
	210, 213, 218, 219, 238, 240, 242, 243, 255, 203, 204, 211, 212, 214,
	221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252, 253, 254,
	2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18,
	19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 220,
	249, 10, 13, 22, 256,
};
static const uint32_t hlim[31] = {
	0, 0, 0, 0, 0, 10,
	46, 124, 254, 508, 1021, 2045,
	4092, 8190, 16382, 32767, 65534, 131068,
	262136, 524275, 1048558, 2097129, 4194284, 8388597,
	16777206, 33554416, 67108847, 134217713, 268435455, 536870910,
	1073741824,
};
static const int32_t hbase[31] = {
	0, 0, 0, 0, 0, 0,
	-10, -56, -180, -434, -942, -1963,
	-4008, -8100, -16290, -32672, -65439, -130973,
	-262041, -524177, -1048452, -2097010, -4194139, -8388423,
	-16777020, -33554226, -67108642, -134217489, -268435202, -536870657,
	-1073741567,
};

#define EOS 256

static int fail(struct rq_hpack *d, int err)
{
	d->err = (int8_t)err;
	return err;
}

void rq_hp_vals_init(struct rq_hp_vals *v)
{
	memset(v, 0, sizeof(*v));
}

void rq_hp_init(struct rq_hpack *d, uint32_t max, uint32_t limit)
{
	memset(d, 0, offsetof(struct rq_hpack, esize));
	d->st = H_REP;
	d->max = max;
	d->limit = limit;
}

void rq_hp_begin(struct rq_hpack *d)
{
	d->fields = 0;
	d->id_seen = d->id_have = 0;
	d->id_len = 0;
	d->status = 0;
	d->list = 0;
}

int rq_hp_end(struct rq_hpack *d)
{
	if (d->err)
		return d->err;
	return d->st == H_REP ? RQ_HP_OK : fail(d, RQ_HP_ERR);
}

/* Ring index of dynamic entry j (1: the newest). */
static uint32_t ring(const struct rq_hpack *d, uint32_t j)
{
	return (d->head + RQ_HP_ENTS - (j - 1)) % RQ_HP_ENTS;
}

int rq_hp_entry(const struct rq_hpack *d, uint32_t i, uint32_t *size, uint32_t *nlen, int *kind)
{
	uint32_t r;

	if (i == 0 || i > d->n)
		return -1;
	r = ring(d, i);
	*size = d->esize[r];
	*nlen = d->enlen[r];
	*kind = d->ekind[r];
	return 0;
}

static void evict_to(struct rq_hpack *d, uint32_t max)
{
	while (d->n && d->size > max) {
		d->size -= d->esize[ring(d, d->n)];
		d->n--;
	}
}

static int is_id_name(const char *s, size_t n)
{
	return n == rq_cfg.hdr_len && memcmp(s, rq_cfg.hdr_lc, n) == 0;
}

/* A field of the block, whatever its representation. */
static int field(struct rq_hpack *d, int kind, uint64_t nlen, uint64_t vlen, const char *id,
		 size_t id_len, uint16_t status)
{
	uint64_t list = d->list + nlen + vlen + 32;

	if (list > RQ_HP_LIST_MAX)
		return fail(d, RQ_HP_CAP);
	d->list = (uint32_t)list;
	d->fields = 1;
	if (kind == RQ_HP_ID) {
		d->id_seen = 1;
		if (!d->id_have && id) {
			memcpy(d->id, id, id_len);
			d->id_len = (uint8_t)id_len;
			d->id_have = 1;
		}
	} else if (kind == RQ_HP_STATUS && !d->status) {
		d->status = status;
	}
	return RQ_HP_OK;
}

/* Adds an entry (RFC 7541 4.4): evicts what it must, or empties the table if it is too big. */
static int insert(struct rq_hpack *d, struct rq_hp_vals *vals, int kind, uint32_t nlen,
		  uint32_t vlen, uint16_t aux, const char *id, size_t id_len)
{
	uint64_t size = (uint64_t)nlen + vlen + 32;
	uint32_t r;

	if (size > d->max) {
		evict_to(d, 0);
		return RQ_HP_OK;
	}
	evict_to(d, d->max - (uint32_t)size);
	if (d->n == RQ_HP_ENTS || nlen > UINT16_MAX)
		return fail(d, RQ_HP_CAP);
	d->head = (d->head + 1) % RQ_HP_ENTS;
	d->n++;
	d->ins++;
	d->size += (uint32_t)size;
	r = d->head;
	d->esize[r] = (uint32_t)size;
	d->enlen[r] = (uint16_t)nlen;
	d->ekind[r] = (uint8_t)kind;
	d->eaux[r] = aux;
	if (kind == RQ_HP_ID) {
		d->eaux[r] = 0;
		if (vals && id) {
			uint8_t s = vals->next;

			vals->next = (uint8_t)((s + 1) % RQ_HP_VALS);
			vals->owner[s] = d->ins;
			vals->len[s] = (uint8_t)id_len;
			memcpy(vals->v[s], id, id_len);
			d->eaux[r] = (uint16_t)(s + 1);
		}
	}
	return RQ_HP_OK;
}

/* Looks up index i (RFC 7541 2.3.3) for its name: kind, name length, and aux. */
static int lookup(struct rq_hpack *d, uint32_t i, int *kind, uint32_t *nlen, uint32_t *vlen,
		  uint16_t *aux)
{
	if (i == 0)
		return fail(d, RQ_HP_ERR);
	if (i <= 61) {
		const char *n = stat[i - 1].name, *v = stat[i - 1].value;

		*nlen = stat[i - 1].nlen;
		*vlen = stat[i - 1].vlen;
		*aux = 0;
		if (i >= 8 && i <= 14) {
			*kind = RQ_HP_STATUS;
			*aux = (uint16_t)((v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0'));
		} else {
			*kind = is_id_name(n, *nlen) ? RQ_HP_ID : RQ_HP_OTHER;
		}
		return RQ_HP_OK;
	}
	i -= 61;
	if (i > d->n)
		return fail(d, RQ_HP_ERR);
	{
		uint32_t r = ring(d, i);

		*kind = d->ekind[r];
		*nlen = d->enlen[r];
		*vlen = d->esize[r] - d->enlen[r] - 32;
		*aux = d->eaux[r];
	}
	return RQ_HP_OK;
}

static int indexed(struct rq_hpack *d, const struct rq_hp_vals *vals, uint32_t i)
{
	uint32_t nlen, vlen;
	uint16_t aux;
	int kind;

	if (lookup(d, i, &kind, &nlen, &vlen, &aux) < 0)
		return d->err;
	if (kind == RQ_HP_ID) {
		if (i <= 61) {
			const char *v = stat[i - 1].value;

			return field(d, kind, nlen, vlen, rq_id_valid(v, vlen) ? v : NULL, vlen, 0);
		}
		/* the value, if it was valid and is still in the pool */
		if (vals && aux && vals->owner[aux - 1] == d->ins - (i - 62))
			return field(d, kind, nlen, vlen, vals->v[aux - 1], vals->len[aux - 1], 0);
		return field(d, kind, nlen, vlen, NULL, 0, 0);
	}
	return field(d, kind, nlen, vlen, NULL, 0, aux);
}

/* The string that follows: name or value, `len` encoded bytes. */
static void str_start(struct rq_hpack *d, uint32_t len)
{
	d->left = len;
	d->hbits = 0;
	d->hcode = 0;
	d->st = H_STR;
	if (d->what == W_NLEN) {
		d->nlen = 0;
		d->match = M_ID | M_ST;
		d->decode = 1;
		if (!d->huff && len != rq_cfg.hdr_len && len != sizeof(status_name) - 1) {
			d->nlen = len; /* it cannot match: skip it */
			d->match = 0;
			d->decode = 0;
		}
	} else {
		d->vlen = 0;
		d->vst = d->vbad = 0;
		d->vlen_id = 0;
		d->vstatus = 0;
		d->decode = d->kind != RQ_HP_OTHER || (d->rep == R_INCR && d->huff);
		if (!d->decode)
			d->vlen = len;
	}
}

static int field_literal(struct rq_hpack *d, struct rq_hp_vals *vals);
static int int_done(struct rq_hpack *d, struct rq_hp_vals *vals, uint32_t v);

/* A string ended; checks its Huffman padding (RFC 7541 5.2). */
static int str_end(struct rq_hpack *d, struct rq_hp_vals *vals)
{
	if (d->huff && d->decode && (d->hbits > 7 || d->hcode != (1u << d->hbits) - 1))
		return fail(d, RQ_HP_ERR);
	if (d->what == W_NLEN) {
		if ((d->match & M_ID) && d->nlen == rq_cfg.hdr_len)
			d->kind = RQ_HP_ID;
		else if ((d->match & M_ST) && d->nlen == sizeof(status_name) - 1)
			d->kind = RQ_HP_STATUS;
		else
			d->kind = RQ_HP_OTHER;
		d->aux = 0;
		d->what = W_VLEN;
		d->st = H_SLEN;
		return RQ_HP_OK;
	}
	d->st = H_REP;
	return field_literal(d, vals);
}

/* One decoded octet of the current string. */
static void octet(struct rq_hpack *d, unsigned char c)
{
	if (d->what == W_NLEN) {
		uint32_t i = d->nlen++;

		if ((d->match & M_ID) && (i >= rq_cfg.hdr_len || (unsigned char)rq_cfg.hdr_lc[i] != c))
			d->match &= ~M_ID;
		if ((d->match & M_ST) && (i >= sizeof(status_name) - 1 ||
					  (unsigned char)status_name[i] != c))
			d->match &= ~M_ST;
		return;
	}
	d->vlen++;
	if (d->kind == RQ_HP_ID) {
		if (c == ' ' || c == '\t') {
			if (d->vst == 1)
				d->vst = 2;
		} else if (d->vst == 2 || !rq_id_char(c) || d->vlen_id == REQCTX_ID_MAX) {
			d->vbad = 1;
		} else {
			d->vst = 1;
			d->vbuf[d->vlen_id++] = (char)c;
		}
	} else if (d->kind == RQ_HP_STATUS) {
		if (d->vlen > 3 || c < '0' || c > '9')
			d->vbad = 1;
		else
			d->vstatus = (uint16_t)(d->vstatus * 10 + (c - '0'));
	}
}

/* Huffman-decodes one byte into octets. */
static int huff_byte(struct rq_hpack *d, unsigned char c)
{
	uint32_t code = d->hcode;
	unsigned len = d->hbits;

	for (int k = 7; k >= 0; k--) {
		code = (code << 1) | ((c >> k) & 1u);
		len++;
		if (code < hlim[len]) {
			unsigned sym = hsym[hbase[len] + (int32_t)code];

			if (sym == EOS)
				return fail(d, RQ_HP_ERR);
			octet(d, (unsigned char)sym);
			code = 0;
			len = 0;
		} else if (len == 30) {
			return fail(d, RQ_HP_ERR); /* not reached: the code is complete */
		}
	}
	d->hcode = code;
	d->hbits = (uint8_t)len;
	return RQ_HP_OK;
}

static int field_literal(struct rq_hpack *d, struct rq_hp_vals *vals)
{
	const char *id = NULL;
	uint16_t status = 0;

	if (d->kind == RQ_HP_ID && !d->vbad && d->vlen_id)
		id = d->vbuf;
	if (d->kind == RQ_HP_STATUS)
		status = (!d->vbad && d->vlen == 3) ? d->vstatus : 0;
	if (field(d, d->kind, d->nlen, d->vlen, id, d->vlen_id, status) < 0)
		return d->err;
	if (d->rep == R_INCR)
		return insert(d, vals, d->kind, d->nlen, d->vlen, status, id, d->vlen_id);
	return RQ_HP_OK;
}

/* Starts an integer with an N-bit prefix whose value is v (mask = 2^N - 1). */
static int int_start(struct rq_hpack *d, struct rq_hp_vals *vals, int what, uint32_t v,
		     uint32_t mask)
{
	d->what = (uint8_t)what;
	if (v < mask)
		return int_done(d, vals, v);
	d->ival = mask;
	d->ibytes = 0;
	d->st = H_INT;
	return RQ_HP_OK;
}

static int int_done(struct rq_hpack *d, struct rq_hp_vals *vals, uint32_t v)
{
	uint32_t vlen;

	switch (d->what) {
	case W_INDEX:
		d->st = H_REP;
		return indexed(d, vals, v);
	case W_NAMEIDX: {
		int kind;

		d->st = H_SLEN;
		if (v == 0) {
			d->what = W_NLEN;
			return RQ_HP_OK;
		}
		d->what = W_VLEN;
		if (lookup(d, v, &kind, &d->nlen, &vlen, &d->aux) < 0)
			return d->err;
		d->kind = (uint8_t)kind;
		return RQ_HP_OK;
	}
	case W_SIZE:
		if (d->fields || v > d->limit)
			return fail(d, RQ_HP_ERR);
		d->max = v;
		evict_to(d, v);
		d->st = H_REP;
		return RQ_HP_OK;
	default: /* W_NLEN, W_VLEN */
		str_start(d, v);
		return d->left ? RQ_HP_OK : str_end(d, vals);
	}
}

int rq_hp_feed(struct rq_hpack *d, struct rq_hp_vals *vals, const uint8_t *buf, size_t n)
{
	size_t i = 0;

	if (d->err)
		return d->err;
	while (i < n) {
		unsigned char c = buf[i];
		int r = RQ_HP_OK;

		switch (d->st) {
		case H_REP:
			i++;
			if (c & 0x80) {
				d->rep = R_INDEXED;
				r = int_start(d, vals, W_INDEX, c & 0x7fu, 0x7f);
			} else if (c & 0x40) {
				d->rep = R_INCR;
				r = int_start(d, vals, W_NAMEIDX, c & 0x3fu, 0x3f);
			} else if (c & 0x20) {
				d->rep = R_SIZE;
				r = int_start(d, vals, W_SIZE, c & 0x1fu, 0x1f);
			} else { /* without indexing (0000) or never indexed (0001) */
				d->rep = R_NOIDX;
				r = int_start(d, vals, W_NAMEIDX, c & 0x0fu, 0x0f);
			}
			break;
		case H_INT:
			i++;
			if (++d->ibytes > INT_BYTES || (c == 0 && d->ibytes > 1))
				return fail(d, RQ_HP_ERR); /* too big, or overlong */
			d->ival += (uint32_t)(c & 0x7f) << (7 * (d->ibytes - 1));
			if (!(c & 0x80))
				r = int_done(d, vals, d->ival);
			break;
		case H_SLEN:
			i++;
			d->huff = (c & 0x80) != 0;
			r = int_start(d, vals, d->what, c & 0x7fu, 0x7f);
			break;
		case H_STR: {
			size_t take = n - i < d->left ? n - i : d->left;

			if (!d->decode) {
				i += take;
			} else if (d->huff) {
				for (size_t k = 0; k < take; k++)
					if (huff_byte(d, buf[i + k]) < 0)
						return d->err;
				i += take;
			} else {
				for (size_t k = 0; k < take; k++)
					octet(d, buf[i + k]);
				i += take;
			}
			d->left -= (uint32_t)take;
			if (!d->left)
				r = str_end(d, vals);
			break;
		}
		}
		if (r < 0)
			return r;
	}
	return RQ_HP_OK;
}
