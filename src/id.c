#include "id.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define R(c) [c] = 1
const uint8_t rq_id_chars[256] = {
	R('-'), R('_'), R('.'), R(':'), R('@'), R('+'), R('='), R('/'), R('~'),
	R('0'), R('1'), R('2'), R('3'), R('4'), R('5'), R('6'), R('7'), R('8'), R('9'),
	R('a'), R('b'), R('c'), R('d'), R('e'), R('f'), R('g'), R('h'), R('i'), R('j'),
	R('k'), R('l'), R('m'), R('n'), R('o'), R('p'), R('q'), R('r'), R('s'), R('t'),
	R('u'), R('v'), R('w'), R('x'), R('y'), R('z'),
	R('A'), R('B'), R('C'), R('D'), R('E'), R('F'), R('G'), R('H'), R('I'), R('J'),
	R('K'), R('L'), R('M'), R('N'), R('O'), R('P'), R('Q'), R('R'), R('S'), R('T'),
	R('U'), R('V'), R('W'), R('X'), R('Y'), R('Z'),
};
#undef R

int rq_id_valid(const char *s, size_t n)
{
	if (n == 0 || n > 128)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!rq_id_char((unsigned char)s[i]))
			return 0;
	return 1;
}

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18 /* Linux 4.14 */
#endif

/* xoshiro256**, one state per thread. */
struct rng {
	uint64_t s[4];
	uint64_t token; /* the process token (see token()) the state was seeded under */
	unsigned gen;   /* fork generation the state was seeded in */
	int seeded;
};

static RQ_TLS struct rng rng;
static _Atomic unsigned fork_gen;

/*
 * Which process this is, without a system call: a page the kernel zeroes in
 * every child, however it was made (fork, _Fork, vfork's exec aside, a raw
 * clone without CLONE_VM), holding a nonzero token. A zero token means a new
 * process: it takes the next value of `tokens`, which no thread of this
 * process has seen. Where MADV_WIPEONFORK is refused (Linux < 4.14) the token
 * is the pid, at one getpid per ID.
 */
#define NO_PAGE ((_Atomic uint64_t *)1)

static _Atomic uint64_t *_Atomic wiped;
static _Atomic uint64_t tokens;

static _Atomic uint64_t *map_page(void)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = page > 0 ? (size_t)page : 4096;
	_Atomic uint64_t *p, *none = NULL;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NO_PAGE;
	if (madvise(m, len, MADV_WIPEONFORK) != 0) {
		munmap(m, len);
		p = NO_PAGE;
	} else {
		p = m;
	}
	if (!atomic_compare_exchange_strong(&wiped, &none, p)) {
		if (p != NO_PAGE)
			munmap(m, len); /* another thread was first */
		p = none;
	}
	return p;
}

static uint64_t token(void)
{
	_Atomic uint64_t *p = atomic_load_explicit(&wiped, memory_order_acquire);
	uint64_t t, zero = 0;

	if (unlikely(!p))
		p = map_page();
	if (unlikely(p == NO_PAGE))
		return (uint64_t)syscall(SYS_getpid) << 1 | 1;
	t = atomic_load_explicit(p, memory_order_relaxed);
	if (likely(t))
		return t;
	t = atomic_fetch_add_explicit(&tokens, 2, memory_order_relaxed) + 2; /* even: never a pid's */
	if (!atomic_compare_exchange_strong(p, &zero, t))
		t = zero;
	return t;
}

void rq_id_after_fork(void)
{
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Seeds from getrandom. If the kernel refuses (seccomp, very old kernel), mixes
 * the clock, pid, tid and addresses instead: unpredictable enough for
 * correlation IDs, and still distinct across threads and forks.
 */
static void seed(struct rng *r, uint64_t tok, unsigned gen)
{
	uint64_t key[4] = { 0, 0, 0, 0 };
	long got = syscall(SYS_getrandom, key, sizeof(key), 0x0001 /* GRND_NONBLOCK */);

	if (got != (long)sizeof(key)) {
		struct timespec ts;
		uint64_t x;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
		    ((uint64_t)syscall(SYS_gettid) << 16) ^ (uint64_t)(uintptr_t)&ts ^
		    ((uint64_t)getpid() << 40) ^ key[0];
		for (int i = 0; i < 4; i++)
			key[i] ^= splitmix(&x);
	}
	if (!(key[0] | key[1] | key[2] | key[3]))
		key[0] = 1; /* xoshiro's one forbidden state */
	memcpy(r->s, key, sizeof(key));
	r->token = tok;
	r->gen = gen;
	r->seeded = 1;
}

/* The thread's generator, reseeded first in a new process (fork, _Fork, clone). */
static struct rng *ready_rng(void)
{
	struct rng *r = &rng;
	unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	uint64_t tok = token();

	if (unlikely(!r->seeded || r->token != tok || r->gen != gen))
		seed(r, tok, gen);
	return r;
}

uint64_t rq_rand64(void)
{
	int e = errno;
	uint64_t v = next(ready_rng());

	errno = e;
	return v;
}

void rq_uuid4(char out[RQ_UUID_LEN])
{
	static const char hex[16] = "0123456789abcdef";
	uint8_t b[16];
	uint64_t lo, hi;
	int e = errno;
	struct rng *r = ready_rng();

	lo = next(r);
	hi = next(r);
	memcpy(b, &lo, 8);
	memcpy(b + 8, &hi, 8);
	b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80; /* variant 10 */
	for (int i = 0, o = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	errno = e;
}
