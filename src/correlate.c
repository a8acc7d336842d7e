#include "correlate.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "id.h"

struct rq_corr rq_corr_ring;

static uint64_t key0, key1; /* SipHash key, drawn once */

void rq_corr_init(void)
{
	key0 = rq_rand64();
	key1 = rq_rand64();
}

/* ---- SipHash-1-3 ---- */

static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static inline void round1(uint64_t *v)
{
	v[0] += v[1];
	v[1] = rotl(v[1], 13);
	v[1] ^= v[0];
	v[0] = rotl(v[0], 32);
	v[2] += v[3];
	v[3] = rotl(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = rotl(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = rotl(v[1], 17);
	v[1] ^= v[2];
	v[2] = rotl(v[2], 32);
}

static inline void block(uint64_t *v, uint64_t m)
{
	v[3] ^= m;
	round1(v);
	v[0] ^= m;
}

void rq_corr_hash_init(struct rq_corr_hasher *h)
{
	h->v[0] = key0 ^ 0x736f6d6570736575ull;
	h->v[1] = key1 ^ 0x646f72616e646f6dull;
	h->v[2] = key0 ^ 0x6c7967656e657261ull;
	h->v[3] = key1 ^ 0x7465646279746573ull;
	h->tail = 0;
	h->len = 0;
}

void rq_corr_hash_add(struct rq_corr_hasher *h, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	while (n && (h->len & 7)) { /* finish a partial word first */
		h->tail |= (uint64_t)*p++ << (8 * (h->len & 7));
		n--;
		if ((++h->len & 7) == 0) {
			block(h->v, h->tail);
			h->tail = 0;
		}
	}
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t m;

		memcpy(&m, p, 8);
		block(h->v, m);
		h->len += 8;
	}
	for (; n; n--, h->len++)
		h->tail |= (uint64_t)*p++ << (8 * (h->len & 7));
}

struct rq_corr_key rq_corr_hash_end(const struct rq_corr_hasher *h)
{
	uint64_t v[4] = { h->v[0], h->v[1], h->v[2], h->v[3] };
	uint64_t b = (uint64_t)(h->len & 0xff) << 56 | h->tail;

	block(v, b);
	v[2] ^= 0xff;
	round1(v);
	round1(v);
	round1(v);
	return (struct rq_corr_key){ v[0] ^ v[1] ^ v[2] ^ v[3], h->len };
}

struct rq_corr_key rq_corr_key_of(const char *s, size_t n)
{
	struct rq_corr_hasher h;

	rq_corr_hash_init(&h);
	rq_corr_hash_add(&h, s, n);
	return rq_corr_hash_end(&h);
}

/* ---- requests being served ---- */

static struct rq_corr_live *live(struct rq_corr *r, uint64_t serial)
{
	return &r->l[serial & (RQ_CORR_LIVE - 1)];
}

void rq_corr_begin(struct rq_corr *r, uint64_t serial, struct rq_corr_key k)
{
	struct rq_corr_live *l = live(r, serial);

	if (!serial || !k.len || serial >> 62)
		return;
	atomic_store_explicit(&l->state, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&l->hash, k.hash, memory_order_relaxed);
	atomic_store_explicit(&l->len, k.len, memory_order_relaxed);
	atomic_store_explicit(&l->state, serial << 2, memory_order_release);
	if (!atomic_load_explicit(&r->begun, memory_order_relaxed))
		atomic_store_explicit(&r->begun, 1, memory_order_relaxed);
}

int rq_corr_live_get(struct rq_corr *r, uint64_t serial, struct rq_corr_key *k, unsigned *flags)
{
	struct rq_corr_live *l = live(r, serial);
	uint64_t s1, s2;

	if (!serial)
		return 0;
	s1 = atomic_load_explicit(&l->state, memory_order_acquire);
	if (s1 >> 2 != serial)
		return 0;
	k->hash = atomic_load_explicit(&l->hash, memory_order_relaxed);
	k->len = (uint32_t)atomic_load_explicit(&l->len, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	s2 = atomic_load_explicit(&l->state, memory_order_relaxed);
	if (s2 >> 2 != serial)
		return 0;
	*flags = (unsigned)(s2 & 3);
	return 1;
}

/*
 * Sets `flag` on request `serial`, if the table still holds it. Returns its
 * flags from before, or -1 if it does not hold it.
 */
static int live_mark(struct rq_corr *r, uint64_t serial, unsigned flag)
{
	struct rq_corr_live *l = live(r, serial);
	uint64_t s = atomic_load_explicit(&l->state, memory_order_relaxed);

	do {
		if (!serial || s >> 2 != serial)
			return -1;
	} while (!atomic_compare_exchange_weak_explicit(&l->state, &s, s | flag, memory_order_acq_rel,
							memory_order_relaxed));
	return (int)(s & 3);
}

/* ---- the ring ---- */

static struct rq_corr_ent *ent(struct rq_corr *r, uint64_t order)
{
	return &r->e[order & (RQ_CORR_RING - 1)];
}

static struct rq_corr_bucket *bucket(struct rq_corr *r, uint64_t hash)
{
	return &r->b[hash & (RQ_CORR_BUCKETS - 1)];
}

void rq_corr_done(struct rq_corr *r, struct rq_corr_key k, unsigned status, uint64_t serial,
		  const char *id, uint32_t len)
{
	uint64_t w[RQ_SLOT_WORDS] = { 0 };
	uint64_t o, t, h;
	struct rq_corr_ent *e, *p;
	struct rq_corr_bucket *b;
	int was;

	if (!rq_id_valid(id, len) || status > 0xffff)
		return;
	/* A line got its ID while it was in progress: it goes in matched. */
	was = live_mark(r, serial, RQ_CORR_DONE);
	memcpy(w, id, len);
	o = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed) + 1;
	e = ent(r, o);
	t = atomic_load_explicit(&e->tag, memory_order_relaxed);
	/* Another writer still in this entry (4096 completions during one write): drop this one. */
	if (t == 1 || !atomic_compare_exchange_strong_explicit(&e->tag, &t, 1, memory_order_relaxed,
								 memory_order_relaxed))
		return;
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&e->hash, k.hash, memory_order_relaxed);
	atomic_store_explicit(&e->meta, (uint64_t)k.len << 32 | (uint64_t)status << 16 | len,
			      memory_order_relaxed);
	atomic_store_explicit(&e->serial, serial, memory_order_relaxed);
	atomic_store_explicit(&e->next, 0, memory_order_relaxed);
	for (unsigned i = 0; i < (len + 7) / 8; i++)
		atomic_store_explicit(&e->w[i], w[i], memory_order_relaxed);
	atomic_store_explicit(&e->tag, 2 * o + (was > 0 && (was & RQ_CORR_LOGGED)), memory_order_release);
	/* Publish: nothing reaches the entry before the head does, so prev may still change. */
	b = bucket(r, k.hash);
	h = atomic_load_explicit(&b->head, memory_order_relaxed);
	do
		atomic_store_explicit(&e->prev, h, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&b->head, &h, o, memory_order_release,
						      memory_order_relaxed));
	/*
	 * The forward link, a hint: readers trust it only if the entry it names
	 * has this one as prev (the entry may have been reused meanwhile).
	 */
	p = ent(r, h);
	if (h && atomic_load_explicit(&p->tag, memory_order_relaxed) >> 1 == h)
		atomic_store_explicit(&p->next, o, memory_order_release);
}

/* An entry's index fields, read consistently (next is a hint, read as it is). */
struct view {
	uint64_t hash, meta, prev, next, serial;
	int matched;
};

/* Reads entry `o`. Returns 0, or -1 if the entry no longer (or not yet) holds order o. */
static int look(struct rq_corr *r, uint64_t o, struct view *v)
{
	struct rq_corr_ent *e = ent(r, o);

	for (int tries = 0; tries < 4; tries++) {
		uint64_t t1 = atomic_load_explicit(&e->tag, memory_order_acquire), t2;

		if (t1 >> 1 != o)
			return -1;
		v->hash = atomic_load_explicit(&e->hash, memory_order_relaxed);
		v->meta = atomic_load_explicit(&e->meta, memory_order_relaxed);
		v->prev = atomic_load_explicit(&e->prev, memory_order_relaxed);
		v->serial = atomic_load_explicit(&e->serial, memory_order_relaxed);
		v->next = atomic_load_explicit(&e->next, memory_order_acquire);
		atomic_thread_fence(memory_order_acquire);
		t2 = atomic_load_explicit(&e->tag, memory_order_relaxed);
		if (t2 >> 1 == o) {
			v->matched = (int)(t2 & 1);
			return 0;
		}
	}
	return -1;
}

/* Copies entry o's ID into out. Returns 0, or -1 if the entry moved on. */
static int read_id(struct rq_corr *r, uint64_t o, struct rq_ctx *out)
{
	struct rq_corr_ent *e = ent(r, o);
	uint64_t w[RQ_SLOT_WORDS];

	for (int tries = 0; tries < 4; tries++) {
		uint64_t t1 = atomic_load_explicit(&e->tag, memory_order_acquire);
		uint64_t meta, serial;
		uint32_t len;

		if (t1 >> 1 != o)
			return -1;
		meta = atomic_load_explicit(&e->meta, memory_order_relaxed);
		serial = atomic_load_explicit(&e->serial, memory_order_relaxed);
		len = (uint32_t)(meta & 0xffff);
		if (len > REQCTX_ID_MAX)
			len = REQCTX_ID_MAX;
		for (unsigned i = 0; i < (len + 7) / 8; i++)
			w[i] = atomic_load_explicit(&e->w[i], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&e->tag, memory_order_relaxed) >> 1 != o)
			continue;
		memcpy(out->id, w, len);
		out->id[len] = '\0';
		out->len = len;
		out->serial = serial;
		return len ? 0 : -1;
	}
	return -1;
}

/*
 * Marks entry o matched and copies it out (its order into *taken). Returns
 * 0, or -1 if another line or writer got it.
 */
static int take_at(struct rq_corr *r, uint64_t o, struct rq_ctx *out, uint64_t *taken)
{
	uint64_t t = 2 * o;

	if (read_id(r, o, out) < 0 ||
	    !atomic_compare_exchange_strong_explicit(&ent(r, o)->tag, &t, t + 1,
						     memory_order_acq_rel, memory_order_relaxed))
		return -1;
	*taken = o;
	return 0;
}

static int same(const struct view *v, struct rq_corr_key k, unsigned status)
{
	unsigned st = (unsigned)(v->meta >> 16 & 0xffff);

	return v->hash == k.hash && (uint32_t)(v->meta >> 32) == k.len &&
	       (!status || !st || st == status);
}

#define FALL_BACK (-2)

/*
 * Walks k's bucket from its newest entry down to its floor. Takes the entry
 * whose serial is `prefer` as soon as it is met, else the oldest (by order:
 * concurrent writers may publish slightly out of completion order). Stores a
 * new floor when the walk shows one. Returns 1 taken, 0 none, -1 lost a race.
 */
static int back(struct rq_corr *r, struct rq_corr_key k, unsigned status, uint64_t prefer,
		struct rq_ctx *out, uint64_t *taken)
{
	struct rq_corr_bucket *b = bucket(r, k.hash);
	uint64_t o = atomic_load_explicit(&b->head, memory_order_acquire);
	uint64_t fl = atomic_load_explicit(&b->floor, memory_order_relaxed);
	uint64_t newest = atomic_load_explicit(&r->next, memory_order_relaxed);
	uint64_t best = 0, last_unm = 0, first_m = 0, target;
	int complete = 0;

	for (int steps = 0;; steps++) {
		struct view v;

		if (!o || o == fl || o + RQ_CORR_RING <= newest || look(r, o, &v) < 0) {
			complete = 1; /* the rest is matched, or gone */
			break;
		}
		if (steps == RQ_CORR_WALK)
			break;
		if (!v.matched) {
			if (same(&v, k, status)) {
				if (prefer && v.serial == prefer) /* the line's own request */
					return take_at(r, o, out, taken) < 0 ? -1 : 1;
				if (!best || o < best)
					best = o;
			}
			last_unm = o;
			first_m = 0;
		} else if (!first_m) {
			first_m = o;
		}
		o = v.prev;
	}
	target = best;
	if (!target) {
		if (complete && first_m)
			atomic_store_explicit(&b->floor, first_m, memory_order_relaxed);
		return 0;
	}
	if (take_at(r, target, out, taken) < 0)
		return -1;
	/* Every entry from the floor on is matched: that stays true, whoever stores it. */
	if (complete && (target == last_unm || first_m))
		atomic_store_explicit(&b->floor, target == last_unm ? target : first_m,
				      memory_order_relaxed);
	return 1;
}

/*
 * Walks k's bucket forwards from its floor, along the links each writer
 * leaves in the entry before its own, to the first entry with key k that no
 * line has taken: the oldest, found in one step when the lines come in the
 * order their requests completed. Returns 1 taken, 0 none, -1 lost a race,
 * or FALL_BACK when a link is missing (no floor yet, or a writer between
 * publishing and linking): walk backwards instead.
 */
static int fwd(struct rq_corr *r, struct rq_corr_key k, unsigned status, struct rq_ctx *out,
	       uint64_t *taken)
{
	struct rq_corr_bucket *b = bucket(r, k.hash);
	uint64_t fl = atomic_load_explicit(&b->floor, memory_order_relaxed);
	uint64_t newest = atomic_load_explicit(&r->next, memory_order_relaxed);
	uint64_t at = fl, adv = fl, x;
	int clean = 1; /* every entry from the floor to here is matched */
	struct view v;

	if (!fl || look(r, fl, &v) < 0)
		return FALL_BACK;
	for (int steps = 0;; steps++) {
		int ok;

		x = v.next;
		if (!x) /* the newest, or its successor has not linked it yet */
			return atomic_load_explicit(&b->head, memory_order_acquire) == at ? 0 : FALL_BACK;
		if (steps == RQ_CORR_WALK || look(r, x, &v) < 0 || v.prev != at)
			return FALL_BACK;
		ok = !v.matched && x + RQ_CORR_RING > newest;
		if (ok && same(&v, k, status))
			break;
		if (ok)
			clean = 0;
		else if (clean)
			adv = x;
		at = x;
	}
	if (take_at(r, x, out, taken) < 0)
		return -1;
	if (clean)
		adv = x;
	if (adv != fl)
		atomic_store_explicit(&b->floor, adv, memory_order_relaxed);
	return 1;
}

/* rq_corr_take, with the order of the entry taken in *taken. */
static int take(struct rq_corr *r, struct rq_corr_key k, unsigned status, uint64_t prefer,
		struct rq_ctx *out, uint64_t *taken)
{
	for (int tries = 0; tries < 4; tries++) {
		int got = prefer ? FALL_BACK : fwd(r, k, status, out, taken);

		if (got == FALL_BACK)
			got = back(r, k, status, prefer, out, taken);
		if (got >= 0)
			return got;
	}
	return 0;
}

int rq_corr_take(struct rq_corr *r, struct rq_corr_key k, unsigned status, uint64_t prefer,
		 struct rq_ctx *out)
{
	uint64_t o;

	return take(r, k, status, prefer, out, &o);
}

void rq_corr_untake(struct rq_corr *r, uint64_t o)
{
	struct rq_corr_ent *e = ent(r, o);
	uint64_t t = 2 * o + 1;

	if (!o || !atomic_compare_exchange_strong_explicit(&e->tag, &t, 2 * o, memory_order_acq_rel,
							   memory_order_relaxed))
		return; /* gone meanwhile */
	/* The bucket's floor may lie above it now: none is known until a walk finds one. */
	atomic_store_explicit(&bucket(r, atomic_load_explicit(&e->hash, memory_order_relaxed))->floor,
			      0, memory_order_relaxed);
}

/* ---- finding a request line in a log line ---- */

static int upper(unsigned char c)
{
	return c >= 'A' && c <= 'Z';
}

static int digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int word(unsigned char c)
{
	return upper(c) || (c >= 'a' && c <= 'z') || digit(c) || c == '-' || c == '_';
}

#ifdef __SSE2__
/* Bit j set if s[j] == 'P' and s[j + 1] == '/', for j < 16 (reads 17 bytes). */
static inline unsigned pslash16(const char *s)
{
	const __m128i P = _mm_set1_epi8('P'), S = _mm_set1_epi8('/');

	return (unsigned)_mm_movemask_epi8(
		_mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)s), P),
			      _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(s + 1)), S)));
}
#endif

/* The first i >= from with s[i] == 'P' and s[i + 1] == '/', or n. */
static size_t next_pslash(const char *s, size_t n, size_t from)
{
	size_t i = from;

#ifdef __SSE2__
	if (n >= 17) {
		size_t last = n - 17; /* the last block that fits; it may overlap the one before */
		unsigned m;

		for (; i + 32 <= last + 16; i += 32) { /* two blocks per test */
			m = pslash16(s + i) | pslash16(s + i + 16) << 16;
			if (m)
				return i + (unsigned)__builtin_ctz(m);
		}
		for (; i <= last; i += 16)
			if ((m = pslash16(s + i)))
				return i + (unsigned)__builtin_ctz(m);
		if (i < n - 1 && (m = pslash16(s + last) >> (i - last)))
			return i + (unsigned)__builtin_ctz(m);
		return n;
	}
#else
	/* Eight bytes at a time: a zero byte of (x ^ c) marks c (exact for the lowest one). */
	for (; i + 9 <= n; i += 8) {
		const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
		uint64_t a, b, x, y, m;

		memcpy(&a, s + i, 8);
		memcpy(&b, s + i + 1, 8);
		x = a ^ (ones * 'P');
		y = b ^ (ones * '/');
		m = ((x - ones) & ~x & highs) & ((y - ones) & ~y & highs);
		if (m) /* a candidate among these eight (the test may also flag a few above one) */
			for (size_t j = i; j < i + 8; j++)
				if (s[j] == 'P' && s[j + 1] == '/')
					return j;
	}
#endif
	for (; i + 1 < n; i++)
		if (s[i] == 'P' && s[i + 1] == '/')
			return i;
	return n;
}

/*
 * A request line around the "P/" at p (of "HTTP/"), checked backwards and
 * forwards as the header describes. Returns 1 and fills f, or 0.
 */
static int around(const unsigned char *s, size_t n, size_t p, struct rq_corr_found *f)
{
	size_t v, end, t, m;

	if (p < 7 || s[p - 3] != 'H' || s[p - 2] != 'T' || s[p - 1] != 'T' || p + 2 >= n ||
	    !digit(s[p + 2]))
		return 0;
	v = p - 3;
	end = p + 3;
	if (end + 1 < n && s[end] == '.' && digit(s[end + 1]))
		end += 2;
	if (end < n && (word(s[end]) || s[end] == '.' || s[end] == '/'))
		return 0;
	if (s[v - 1] != ' ')
		return 0;
	for (t = v - 1; t > 0 && s[t - 1] > 0x20 && s[t - 1] != 0x7f; t--)
		;
	if (t == v - 1 || t < 2 || s[t - 1] != ' ')
		return 0;
	for (m = t - 1; m > 0 && (upper(s[m - 1]) || s[m - 1] == '-' || s[m - 1] == '_'); m--)
		if (t - 1 - m == 32)
			return 0;
	if (m == t - 1 || !upper(s[m]) || (m > 0 && word(s[m - 1])))
		return 0;
	f->at = m;
	f->len = end - m;
	f->status = 0;
	t = end;
	if (t < n && s[t] == '"')
		t++;
	if (t + 4 <= n && s[t] == ' ' && s[t + 1] >= '1' && s[t + 1] <= '5' && digit(s[t + 2]) &&
	    digit(s[t + 3]) && (t + 4 == n || !digit(s[t + 4])))
		f->status = (unsigned)((s[t + 1] - '0') * 100 + (s[t + 2] - '0') * 10 + (s[t + 3] - '0'));
	return 1;
}

int rq_corr_find(const char *s, size_t n, struct rq_corr_found *f)
{
	if (n > RQ_CORR_SCAN)
		n = RQ_CORR_SCAN;
	for (size_t p = next_pslash(s, n, 0); p < n; p = next_pslash(s, n, p + 1)) {
		if (around((const unsigned char *)s, n, p, f)) {
			f->key = rq_corr_key_of(s + f->at, f->len);
			return 1;
		}
	}
	return 0;
}

int rq_corr_match(struct rq_corr *r, const char *s, size_t n, uint64_t prefer,
		  struct rq_ctx *out)
{
	struct rq_corr_found f;

	if (!atomic_load_explicit(&r->next, memory_order_relaxed) || !rq_corr_find(s, n, &f))
		return 0;
	return rq_corr_take(r, f.key, f.status, prefer, out);
}

int rq_corr_line(struct rq_corr *r, const char *s, size_t n, const struct rq_ctx *cur, int single,
		 struct rq_ctx *out, uint64_t *taken)
{
	struct rq_corr_found f;
	struct rq_corr_key own;
	unsigned flags = 0;
	int was;

	*taken = 0;
	if (!rq_corr_find(s, n, &f))
		return 0;
	if (rq_corr_live_get(r, cur->serial, &own, &flags) && !(flags & RQ_CORR_DONE) &&
	    own.hash == f.key.hash && own.len == f.key.len) {
		/* the current request's own line, while it is in progress */
		if (single && !f.status)
			return 0;
		if (atomic_load_explicit(&r->next, memory_order_relaxed) &&
		    take(r, f.key, f.status, 0, out, taken))
			return 1;
		if (!f.status || (was = live_mark(r, cur->serial, RQ_CORR_LOGGED)) < 0 ||
		    !(was & RQ_CORR_DONE))
			return 0;
		/* it completed meanwhile, unmatched: its own entry, if it is there yet */
		return take(r, f.key, f.status, cur->serial, out, taken);
	}
	if (!atomic_load_explicit(&r->next, memory_order_relaxed))
		return 0;
	return take(r, f.key, f.status, single ? cur->serial : 0, out, taken);
}
