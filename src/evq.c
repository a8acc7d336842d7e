/*
 * epoll: instances, registrations and the per-thread event queues (evq.h),
 * and the window that learns what a loop's callbacks do first.
 *
 * Instances. epoll_create claims an instance from a pool; a table indexed by
 * fd number (refs) maps each epoll fd to its instance. A reference is valid
 * while the number's fd-table generation (rq_fd_gen) is the one recorded, so
 * a close, or a dup onto the number, ends it; a dup of an epoll fd adds a
 * reference to the same instance. An instance is free again once none of the
 * numbers in its alias list refers to it; claiming it resets its entries.
 *
 * Data values. reqctx registers RQ_EVQ_TAG << 52 | seq << 20 | fd, with seq
 * from one process-wide counter, so a value names one registration of one fd.
 * Each entry keeps the current (seq, data), the one being replaced while an
 * epoll_ctl is in flight (the kernel may report events under either until
 * the call returns), and the first seq ever registered for its fd in the
 * instance. A tagged value whose seq is current maps to the caller's data; one
 * whose seq lies between that first one and the last issued was reqctx's and
 * is stale; any other value is the host's own and passes through.
 *
 * epoll_ctl calls on the same (instance, fd) are serialised by a striped spin
 * lock held across the system call (epoll_ctl never blocks); readers take no
 * lock, only the entry's seqlock.
 */
#include "evq.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "carry.h"
#include "config.h"
#include "ctx.h"
#include "fdtab.h"
#include "pool.h"

#define ENT_SHIFT  8                        /* 256 registrations per chunk */
#define DIR_LEN    (RQ_FD_MAX >> ENT_SHIFT) /* chunk pointers per instance */
#define REF_SHIFT  8                        /* 256 epoll fd numbers per chunk */
#define INST_SHIFT 6                        /* 64 instances per chunk */
#define FD_BITS    20                       /* bits of the fd in reqctx's data value */
#define TAG_SHIFT  52                       /* where RQ_EVQ_TAG starts; seq fills the 32 between */
#define NLOCKS     64                       /* stripes of the epoll_ctl lock */
#define CLAIMING   UINT32_MAX               /* an instance's ident while it is being reset */

_Static_assert((1u << FD_BITS) == RQ_FD_MAX, "the data value must hold any tracked fd");
_Static_assert(TAG_SHIFT - FD_BITS == 32, "the registration number takes 32 bits");

/* One fd's registration in one instance; [0] is current, [1] is being replaced. */
struct ent {
	_Atomic uint32_t sq;      /* seqlock: odd while being written */
	_Atomic uint32_t seq[2];  /* registration numbers; 0: none */
	_Atomic uint32_t first;   /* the first number this fd was registered under; 0: never */
	_Atomic uint64_t data[2]; /* the caller's data for each */
};

struct snap {
	uint32_t seq[2], first;
	uint64_t data[2];
};

struct inst {
	_Atomic uint32_t ident;  /* 0: never used; unique per epoll_create; CLAIMING */
	_Atomic uint32_t epoch;  /* `forks` when created: shared with a child once it differs */
	_Atomic uint32_t pinned; /* more aliases than the list holds: never freed */
	_Atomic int32_t alias[RQ_EVQ_ALIASES]; /* fd numbers that referred to it; -1: none */
	struct rq_learn learn;
	struct ent *_Atomic *_Atomic dir; /* DIR_LEN chunks, mapped on first use */
};

/* What an epoll fd number refers to. */
struct ref {
	_Atomic uint64_t at;    /* (instance index + 1) << 32 | ident; 0: nothing */
	_Atomic uint32_t fdgen; /* rq_fd_gen of the number when it was set */
};

/* An event fetched by a real wait, not yet handed out. */
struct item {
	uint32_t events;
	int32_t fd;
	uint32_t seq;
	uint32_t fdgen; /* rq_fd_gen(fd) when fetched */
};

struct queue {
	uint32_t ident, idx; /* the instance */
	uint32_t head, n;    /* it[head..n) are still to be handed out */
	struct item it[RQ_EVQ_CAP];
};

enum { MAPPED, STALE, FOREIGN };

static struct inst *_Atomic insts[RQ_EVQ_INST_MAX >> INST_SHIFT];
static struct ref *_Atomic refs[RQ_FD_MAX >> REF_SHIFT];
static _Atomic uint32_t ninst, seqs, idents, forks;
static _Atomic int locks[NLOCKS];
static RQ_TLS struct queue queues[RQ_EVQ_NQ];
static RQ_TLS int queued; /* 0: every queue of this thread is empty (set when split queues) */
static RQ_TLS int in_ctl; /* a signal handler's epoll_ctl must not wait for its own thread */
RQ_TLS struct rq_evq_watch rq_evq_w;

/* ---- instances ---- */

static struct inst *inst_at(uint32_t i, int make)
{
	struct inst *c;

	if (i >= RQ_EVQ_INST_MAX)
		return NULL;
	c = rq_chunk((void *_Atomic *)&insts[i >> INST_SHIFT], sizeof(struct inst) << INST_SHIFT, make);
	return c ? &c[i & ((1u << INST_SHIFT) - 1)] : NULL;
}

static struct ref *ref_at(int fd, int make)
{
	struct ref *c;

	if ((unsigned)fd >= RQ_FD_MAX)
		return NULL;
	c = rq_chunk((void *_Atomic *)&refs[(unsigned)fd >> REF_SHIFT], sizeof(struct ref) << REF_SHIFT,
		  make);
	return c ? &c[fd & ((1u << REF_SHIFT) - 1)] : NULL;
}

static uint64_t at_of(uint32_t idx, uint32_t ident)
{
	return (uint64_t)(idx + 1) << 32 | ident;
}

static void ref_set(struct ref *r, int fd, uint64_t at)
{
	atomic_store_explicit(&r->fdgen, rq_fd_gen(fd), memory_order_relaxed);
	atomic_store_explicit(&r->at, at, memory_order_release);
}

/* 1 if fd number `fd` still refers to the instance `at` names. */
static int refers(int fd, uint64_t at)
{
	struct ref *r = ref_at(fd, 0);

	return r && atomic_load_explicit(&r->at, memory_order_acquire) == at &&
	       atomic_load_explicit(&r->fdgen, memory_order_relaxed) == rq_fd_gen(fd);
}

/* The instance epoll fd `epfd` refers to, with its index and ident, or NULL. */
static struct inst *lookup(int epfd, uint32_t *idx, uint32_t *ident)
{
	struct ref *r = ref_at(epfd, 0);
	struct inst *in;
	uint64_t at;

	if (!r || !(at = atomic_load_explicit(&r->at, memory_order_acquire)) ||
	    atomic_load_explicit(&r->fdgen, memory_order_relaxed) != rq_fd_gen(epfd))
		return NULL;
	*idx = (uint32_t)(at >> 32) - 1;
	*ident = (uint32_t)at;
	in = inst_at(*idx, 0);
	if (!in || atomic_load_explicit(&in->ident, memory_order_acquire) != *ident)
		return NULL;
	return in;
}

static int shared(struct inst *in)
{
	return atomic_load_explicit(&in->epoch, memory_order_relaxed) !=
	       atomic_load_explicit(&forks, memory_order_relaxed);
}

/* 1 if no fd number refers to instance idx (with ident id) any more. */
static int dead(struct inst *in, uint32_t idx, uint32_t id)
{
	uint64_t at = at_of(idx, id);

	if (atomic_load_explicit(&in->pinned, memory_order_relaxed))
		return 0;
	for (int k = 0; k < RQ_EVQ_ALIASES; k++) {
		int32_t a = atomic_load_explicit(&in->alias[k], memory_order_relaxed);

		if (a >= 0 && refers(a, at))
			return 0;
	}
	return 1;
}

static int take(struct inst *in, uint32_t idx)
{
	uint32_t id = atomic_load_explicit(&in->ident, memory_order_acquire);

	return id != CLAIMING && (id == 0 || dead(in, idx, id)) &&
	       atomic_compare_exchange_strong(&in->ident, &id, CLAIMING);
}

/* A free instance, now CLAIMING, and its index; NULL if RQ_EVQ_INST_MAX are in use. */
static struct inst *claim(uint32_t *idx)
{
	uint32_t n = atomic_load_explicit(&ninst, memory_order_acquire);
	struct inst *in;

	for (uint32_t i = 0; i < n && i < RQ_EVQ_INST_MAX; i++)
		if ((in = inst_at(i, 0)) && take(in, i))
			return *idx = i, in;
	for (;;) {
		uint32_t i = atomic_fetch_add(&ninst, 1);

		if (i >= RQ_EVQ_INST_MAX || !(in = inst_at(i, 1)))
			return NULL;
		if (take(in, i))
			return *idx = i, in;
	}
}

/* Empties a claimed instance: anonymous private pages read back as zeros. */
static void reset(struct inst *in)
{
	struct ent *_Atomic *dir = atomic_load_explicit(&in->dir, memory_order_acquire);
	size_t bytes = sizeof(struct ent) << ENT_SHIFT;

	if (dir)
		for (unsigned i = 0; i < DIR_LEN; i++) {
			struct ent *c = atomic_load_explicit(&dir[i], memory_order_acquire);

			if (c && madvise(c, bytes, MADV_DONTNEED) != 0)
				memset(c, 0, bytes);
		}
	for (int k = 0; k < RQ_EVQ_ALIASES; k++)
		atomic_store_explicit(&in->alias[k], -1, memory_order_relaxed);
	atomic_store_explicit(&in->pinned, 0, memory_order_relaxed);
	atomic_store_explicit(&in->learn.mode, RQ_LM_LEARN, memory_order_relaxed);
	atomic_store_explicit(&in->learn.good, 0, memory_order_relaxed);
	atomic_store_explicit(&in->epoch, atomic_load(&forks), memory_order_relaxed);
}

static uint32_t ident_next(void)
{
	uint32_t id;

	while ((id = atomic_fetch_add_explicit(&idents, 1, memory_order_relaxed) + 1) == 0 ||
	       id == CLAIMING)
		;
	return id;
}

void rq_evq_created(int epfd)
{
	struct inst *in;
	struct ref *r;
	uint32_t idx, id;
	int e = errno;

	if (epfd < 0 || rq_fd_track(epfd) < 0 || !(r = ref_at(epfd, 1)))
		goto out;
	atomic_store_explicit(&r->at, 0, memory_order_release);
	if (!(in = claim(&idx)))
		goto out; /* too many: this one is passed through */
	reset(in);
	atomic_store_explicit(&in->alias[0], epfd, memory_order_relaxed);
	id = ident_next();
	ref_set(r, epfd, at_of(idx, id)); /* before the ident: it is never seen dead */
	atomic_store_explicit(&in->ident, id, memory_order_release);
out:
	errno = e;
}

/* Records fd in the instance's alias list, reusing the slot of a number that no longer refers to it. */
static void alias_add(struct inst *in, uint64_t at, int fd)
{
	for (int k = 0; k < RQ_EVQ_ALIASES; k++) {
		int32_t a = atomic_load_explicit(&in->alias[k], memory_order_relaxed);

		if (a == fd)
			return;
		if ((a < 0 || !refers(a, at)) && atomic_compare_exchange_strong(&in->alias[k], &a, fd))
			return;
	}
	atomic_store_explicit(&in->pinned, 1, memory_order_relaxed);
}

void rq_evq_dup(int from, int to)
{
	struct inst *in;
	struct ref *r;
	uint32_t idx, id;
	int e = errno;

	if (from == to || to < 0 || !(in = lookup(from, &idx, &id)))
		goto out;
	if (rq_fd_track(to) < 0 || !(r = ref_at(to, 1)))
		goto out;
	alias_add(in, at_of(idx, id), to);
	ref_set(r, to, at_of(idx, id));
out:
	errno = e;
}

void rq_evq_before_fork(void)
{
	atomic_fetch_add(&forks, 1);
}

/* ---- registrations ---- */

static struct ent *ent_at(struct inst *in, int fd, int make)
{
	struct ent *_Atomic *dir = rq_chunk((void *_Atomic *)&in->dir,
					 DIR_LEN * sizeof(struct ent *), make);
	struct ent *c;

	if (!dir)
		return NULL;
	c = rq_chunk((void *_Atomic *)&dir[(unsigned)fd >> ENT_SHIFT],
		  sizeof(struct ent) << ENT_SHIFT, make);
	return c ? &c[fd & ((1u << ENT_SHIFT) - 1)] : NULL;
}

static uint32_t seq_next(void)
{
	uint32_t s;

	while ((s = atomic_fetch_add_explicit(&seqs, 1, memory_order_relaxed) + 1) == 0)
		;
	return s;
}

/* Writer side of the entry's seqlock (the caller holds the entry's ctl lock). */
static void ent_set(struct ent *en, uint32_t s0, uint64_t d0, uint32_t s1, uint64_t d1)
{
	uint32_t q = atomic_load_explicit(&en->sq, memory_order_relaxed);

	atomic_store_explicit(&en->sq, q + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&en->seq[0], s0, memory_order_relaxed);
	atomic_store_explicit(&en->data[0], d0, memory_order_relaxed);
	atomic_store_explicit(&en->seq[1], s1, memory_order_relaxed);
	atomic_store_explicit(&en->data[1], d1, memory_order_relaxed);
	if (s0 && !atomic_load_explicit(&en->first, memory_order_relaxed))
		atomic_store_explicit(&en->first, s0, memory_order_relaxed);
	atomic_store_explicit(&en->sq, q + 2, memory_order_release);
}

/* A consistent copy of fd's entry. Returns 0, or -ENOENT if fd never had one. */
static int ent_read(struct inst *in, int fd, struct snap *s)
{
	struct ent *en = ent_at(in, fd, 0);

	if (!en)
		return -ENOENT;
	for (;;) {
		uint32_t q = atomic_load_explicit(&en->sq, memory_order_acquire);

		s->seq[0] = atomic_load_explicit(&en->seq[0], memory_order_relaxed);
		s->seq[1] = atomic_load_explicit(&en->seq[1], memory_order_relaxed);
		s->data[0] = atomic_load_explicit(&en->data[0], memory_order_relaxed);
		s->data[1] = atomic_load_explicit(&en->data[1], memory_order_relaxed);
		s->first = atomic_load_explicit(&en->first, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (!(q & 1) && atomic_load_explicit(&en->sq, memory_order_relaxed) == q)
			return 0;
		sched_yield();
	}
}

/* The data of registration `seq` if it is current: 1, or 0. */
static int current(const struct snap *s, uint32_t seq, uint64_t *data)
{
	for (int i = 0; i < 2; i++)
		if (seq && seq == s->seq[i]) {
			*data = s->data[i];
			return 1;
		}
	return 0;
}

static _Atomic int *lock_for(uint32_t idx, int fd)
{
	return &locks[(idx * 31u + (unsigned)fd) % NLOCKS];
}

static void lock(_Atomic int *l)
{
	while (atomic_exchange_explicit(l, 1, memory_order_acquire))
		sched_yield();
}

static void unlock(_Atomic int *l)
{
	atomic_store_explicit(l, 0, memory_order_release);
}

/* ADD or MOD with reqctx's value; the entry is left as it was if the kernel refuses. */
static int ctl_set(rq_epoll_ctl_fn real, struct ent *en, int epfd, int op, int fd,
		   struct epoll_event *ev)
{
	uint32_t os = atomic_load_explicit(&en->seq[0], memory_order_relaxed);
	uint64_t od = atomic_load_explicit(&en->data[0], memory_order_relaxed);
	uint64_t data = ev->data.u64;
	uint32_t s = seq_next();
	struct epoll_event kev = { .events = ev->events,
				   .data.u64 = RQ_EVQ_TAG << TAG_SHIFT | (uint64_t)s << FD_BITS |
					       (unsigned)fd };
	int r, e;

	ent_set(en, s, data, os, od);
	r = real(epfd, op, fd, &kev);
	e = errno;
	if (r == 0)
		ent_set(en, s, data, 0, 0);
	else
		ent_set(en, os, od, 0, 0);
	errno = e;
	return r;
}

/*
 * DEL, or ADD/MOD with the caller's own value (a shared instance): the
 * current registration, if any, is retired if the kernel accepts.
 */
static int ctl_retire(rq_epoll_ctl_fn real, struct ent *en, int epfd, int op, int fd,
		      struct epoll_event *ev)
{
	int r = real(epfd, op, fd, ev), e = errno;

	if (r == 0 && atomic_load_explicit(&en->seq[0], memory_order_relaxed))
		ent_set(en, 0, 0, 0, 0);
	errno = e;
	return r;
}

int rq_evq_ctl(rq_epoll_ctl_fn real, int epfd, int op, int fd, struct epoll_event *ev)
{
	int set = op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD, enc;
	uint32_t idx, id;
	struct inst *in = lookup(epfd, &idx, &id);
	struct ent *en;
	_Atomic int *l;
	int r;

	if (!in || fd < 0 || (set && (uintptr_t)ev < RQ_FIRST_PAGE) || (!set && op != EPOLL_CTL_DEL))
		return real(epfd, op, fd, ev);
	enc = set && !shared(in);
	if ((unsigned)fd >= RQ_FD_MAX) {
		if (!enc)
			return real(epfd, op, fd, ev);
		errno = ENOMEM;
		return -1;
	}
	if (enc)
		RQ_SAVE_ERRNO(rq_fd_track(fd));
	l = lock_for(idx, fd);
	if (!in_ctl)
		lock(l);
	in_ctl++;
	if (!(en = ent_at(in, fd, enc)))
		r = enc ? (errno = ENOMEM, -1) : real(epfd, op, fd, ev);
	else if (enc)
		r = ctl_set(real, en, epfd, op, fd, ev);
	else
		r = ctl_retire(real, en, epfd, op, fd, ev);
	if (!--in_ctl)
		unlock(l);
	return r;
}

/* ---- the window: what a callback does first ---- */

int rq_evq_mode(const struct rq_learn *l)
{
	if (rq_cfg.loop == RQ_LOOP_SPLIT)
		return RQ_LM_SPLIT;
	if (rq_cfg.loop == RQ_LOOP_BATCH)
		return RQ_LM_BATCH;
	return (int)atomic_load_explicit(&l->mode, memory_order_relaxed);
}

void rq_evq_enter(int fd, struct rq_learn *l, const _Atomic uint32_t *live, uint32_t ident)
{
	struct rq_evq_watch *w = &rq_evq_w;
	uint64_t p = rq_ctx_cur()->serial;

	w->fd1 = 0;
	rq_fd_enter(fd);
	if (!l || fd < 0 || rq_cfg.loop != RQ_LOOP_AUTO ||
	    atomic_load_explicit(&l->mode, memory_order_relaxed) == RQ_LM_SPLIT)
		return;
	w->l = l;
	w->live = live;
	w->ident = ident;
	w->p = p;
	w->cx = rq_ctx_cur()->serial;
	w->api = 0;
	atomic_signal_fence(memory_order_seq_cst); /* a signal handler sees a whole window or none */
	w->fd1 = fd + 1;
}

/* Closes the window with a verdict: 1 good, 0 bad (split for good), -1 none. */
static void verdict(int good)
{
	struct rq_evq_watch *w = &rq_evq_w;
	struct rq_learn *l = w->l;
	uint32_t m = RQ_LM_LEARN;

	w->fd1 = 0;
	atomic_signal_fence(memory_order_seq_cst);
	if (good < 0 || !l ||
	    (w->live && atomic_load_explicit(w->live, memory_order_relaxed) != w->ident))
		return; /* no verdict, or the instance was closed and reused since */
	if (!good) {
		atomic_store_explicit(&l->mode, RQ_LM_SPLIT, memory_order_relaxed);
		return;
	}
	if (atomic_load_explicit(&l->mode, memory_order_relaxed) == RQ_LM_LEARN &&
	    atomic_fetch_add_explicit(&l->good, 1, memory_order_relaxed) + 1 >= RQ_EVQ_LEARN)
		atomic_compare_exchange_strong(&l->mode, &m, RQ_LM_BATCH);
}

void rq_evq_touched(int fd)
{
	if (!(rq_fd_flags(rq_fd_peek(fd)) & (RQ_FD_CONNS | RQ_FD_CARRY)))
		return; /* a log write: not I/O that sets a context */
	if (fd + 1 == rq_evq_w.fd1)
		verdict(1);
	else if (!rq_evq_w.api)
		verdict(-1);
	/*
	 * After an adapter's enter, I/O elsewhere is that task's (asyncio runs
	 * earlier tasks before this iteration's callbacks, and entering the
	 * event's context could not have helped the callback, which runs after
	 * them in split mode too): the watch waits for the callback's own I/O.
	 */
}

/*
 * A use of the entered context before any I/O that sets one: the callback
 * relied on it (a log line, or the context stored in a carrier as nginx does
 * when an upstream connects), so batch mode would have given it the previous
 * callback's. A use while another context is current (a runtime adapter, or
 * the API, entered it) tells nothing: the window stays open.
 */
void rq_evq_used(void)
{
	struct rq_evq_watch *w = &rq_evq_w;
	uint64_t cur = rq_ctx_cur()->serial;

	if (!w->api && cur == w->cx && w->cx != w->p)
		verdict(0);
}

void rq_evq_idle(void)
{
	if (rq_evq_w.fd1)
		verdict(-1);
}

/* ---- the queues ---- */

/* What the kernel's value `v` is: reqctx's current registration (*data), a stale one, or the host's. */
static int classify(struct inst *in, uint64_t v, struct item *it, uint64_t *data)
{
	struct snap s;

	if (v >> TAG_SHIFT != RQ_EVQ_TAG)
		return FOREIGN;
	it->fd = (int32_t)(v & (RQ_FD_MAX - 1));
	it->seq = (uint32_t)(v >> FD_BITS);
	if (ent_read(in, it->fd, &s) < 0 || !s.first)
		return FOREIGN;
	if (current(&s, it->seq, data))
		return MAPPED;
	if (it->seq - s.first <= atomic_load_explicit(&seqs, memory_order_relaxed) - s.first)
		return STALE;
	return FOREIGN;
}

static void enter(int fd, struct inst *in, uint32_t ident)
{
	rq_evq_enter(fd, shared(in) ? NULL : &in->learn, &in->ident, ident);
}

/* Writes the item as the caller's event, if its fd and registration are unchanged. */
static int deliver(struct inst *in, const struct item *it, struct epoll_event *ev)
{
	struct snap s;
	uint64_t data;

	if (rq_fd_gen(it->fd) != it->fdgen || ent_read(in, it->fd, &s) < 0 ||
	    !current(&s, it->seq, &data))
		return 0;
	ev->events = it->events;
	ev->data.u64 = data;
	return 1;
}

/* Hands out the next valid queued event (split). */
static int pop(struct queue *q, struct inst *in, struct epoll_event *ev)
{
	while (q->head < q->n) {
		const struct item *it = &q->it[q->head++];

		if (deliver(in, it, ev)) {
			enter(it->fd, in, q->ident);
			return 1;
		}
	}
	return 0;
}

/* Hands out every valid queued event at once, up to max (batch). */
static int drain(struct queue *q, struct inst *in, struct epoll_event *ev, int max)
{
	int n = 0, first = -1;

	while (q->head < q->n && n < max) {
		const struct item *it = &q->it[q->head++];

		if (deliver(in, it, &ev[n])) {
			if (first < 0)
				first = it->fd;
			n++;
		}
	}
	if (n)
		enter(first, in, q->ident);
	return n;
}

/*
 * Decodes a real wait's events in place: reqctx's values become the caller's
 * data, stale ones are dropped, the host's own stay as they are. Makes the
 * first decoded event's fd context current. Returns how many are left.
 */
static int batch(struct inst *in, uint32_t ident, struct epoll_event *ev, int n)
{
	int kept = 0, first = -1;

	for (int i = 0; i < n; i++) {
		struct item it;
		uint64_t data;
		int c = classify(in, ev[i].data.u64, &it, &data);

		if (c == STALE)
			continue;
		if (c == MAPPED) {
			ev[i].data.u64 = data;
			if (first < 0)
				first = it.fd;
		}
		ev[kept++] = ev[i];
	}
	if (first >= 0)
		enter(first, in, ident);
	return kept;
}

/*
 * Queues a real wait's events and hands out the first (split). A wait that
 * brought back a value reqctx did not register is returned whole instead
 * (batch): an event it cannot check could otherwise be handed out after the
 * host had already dropped what it names.
 */
static int split(struct queue *q, struct inst *in, uint32_t idx, uint32_t ident,
		 struct epoll_event *ev, int n)
{
	q->ident = ident;
	q->idx = idx;
	q->head = q->n = 0;
	for (int i = 0; i < n; i++) {
		struct item *it = &q->it[q->n];
		uint64_t data;
		int c = classify(in, ev[i].data.u64, it, &data);

		if (c == FOREIGN) {
			q->n = 0;
			return batch(in, ident, ev, n);
		}
		if (c == MAPPED) {
			it->events = ev[i].events;
			it->fdgen = rq_fd_gen(it->fd);
			q->n++;
		}
	}
	if (q->n > 1)
		queued = 1; /* pop hands out the first one now */
	return pop(q, in, ev);
}

/* 1 if the queue's instance may still be waited on. */
static int alive(const struct queue *q)
{
	struct inst *in = inst_at(q->idx, 0);

	return in && atomic_load_explicit(&in->ident, memory_order_acquire) == q->ident &&
	       !dead(in, q->idx, q->ident);
}

/*
 * This thread's queue for the instance, or a free one to fill (*fresh = 1),
 * or NULL if every queue holds events of other live instances. Queues of
 * instances no longer open are emptied on the way.
 */
static struct queue *queue_for(uint32_t idx, uint32_t ident, int *fresh)
{
	struct queue *free_q = NULL;
	int busy = 0;

	*fresh = 1;
	if (likely(!queued))
		return &queues[0];
	for (int i = 0; i < RQ_EVQ_NQ; i++) {
		struct queue *q = &queues[i];

		if (q->head < q->n) {
			if (q->ident == ident && q->idx == idx) {
				*fresh = 0;
				return q;
			}
			if (alive(q)) {
				busy = 1;
				continue;
			}
			q->head = q->n = 0;
		}
		if (!free_q)
			free_q = q;
	}
	queued = busy;
	return free_q;
}

static int64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The wait's timeout in ns: -1 for none (wait forever), 0 for a poll. */
static int64_t timeout_ns(const struct rq_evq_call *k)
{
	if (!k->by_ts)
		return k->timeout < 0 ? -1 : (int64_t)k->timeout * 1000000;
	if (!k->ts)
		return -1;
	if (k->ts->tv_sec < 0 || k->ts->tv_nsec < 0)
		return 0; /* the kernel refused it before anything was fetched */
	if (k->ts->tv_sec > INT64_MAX / 1000000000 - 1)
		return INT64_MAX;
	return (int64_t)k->ts->tv_sec * 1000000000 + k->ts->tv_nsec;
}

/*
 * After a real wait whose events were all dropped: sets k2 to wait for what
 * is left of the timeout since `start`. Returns 0 if nothing is left.
 */
static int time_left(const struct rq_evq_call *k, struct rq_evq_call *k2, struct timespec *ts2,
		     int64_t total, int64_t start)
{
	int64_t left;

	if (total < 0)
		return 1;
	if (total == 0 || (left = total - (now_ns() - start)) <= 0)
		return 0;
	if (k->by_ts) {
		ts2->tv_sec = (time_t)(left / 1000000000);
		ts2->tv_nsec = (long)(left % 1000000000);
		k2->ts = ts2;
	} else {
		k2->timeout = (int)((left + 999999) / 1000000);
	}
	return 1;
}

/*
 * A wait on an epoll fd reqctx does not track (a raw dup, one received over a
 * socket) may still return values reqctx registered through a tracked fd of
 * the same instance. Registration numbers are unique in the process, so the
 * instance that holds one current is the one: its data replaces the value;
 * a value stale in some instance is dropped; any other is left as it is.
 * Returns how many events are left.
 */
static int rescue(struct epoll_event *ev, int n)
{
	uint32_t ni = atomic_load_explicit(&ninst, memory_order_acquire);
	int kept = 0;

	for (int i = 0; i < n; i++) {
		int c = FOREIGN;

		if (ev[i].data.u64 >> TAG_SHIFT == RQ_EVQ_TAG)
			for (uint32_t j = 0; j < ni && j < RQ_EVQ_INST_MAX && c != MAPPED; j++) {
				struct inst *in = inst_at(j, 0);
				uint32_t id = in ? atomic_load_explicit(&in->ident, memory_order_acquire) : 0;
				struct item it;
				uint64_t data;
				int cj;

				if (!id || id == CLAIMING)
					continue;
				if ((cj = classify(in, ev[i].data.u64, &it, &data)) == MAPPED)
					ev[i].data.u64 = data;
				if (cj != FOREIGN)
					c = cj;
			}
		if (c != STALE)
			ev[kept++] = ev[i];
	}
	return kept;
}

int rq_evq_wait(int epfd, struct epoll_event *ev, int maxevents, const struct rq_evq_call *k)
{
	struct rq_evq_call k2;
	struct timespec ts2;
	struct queue *q = NULL;
	struct inst *in;
	uint32_t idx = 0, ident = 0;
	int64_t total, start = 0;
	int fresh, mode = RQ_LM_BATCH, n, saved = errno;

	rq_evq_idle(); /* the last callback is over */
	if (maxevents <= 0 || (uintptr_t)ev < RQ_FIRST_PAGE)
		return k->wait(k, epfd, ev, maxevents);
	if ((in = lookup(epfd, &idx, &ident))) {
		mode = shared(in) ? RQ_LM_BATCH : rq_evq_mode(&in->learn);
		q = queue_for(idx, ident, &fresh);
		if (q && !fresh) {
			n = mode == RQ_LM_BATCH ? drain(q, in, ev, maxevents) : pop(q, in, ev);
			if (n > 0)
				goto out;
			q->head = q->n = 0;
		}
	} else if (!atomic_load_explicit(&seqs, memory_order_relaxed)) {
		return k->wait(k, epfd, ev, maxevents); /* reqctx never registered a value */
	}
	k2 = *k;
	if ((total = timeout_ns(k)) > 0)
		start = now_ns();
	for (;;) {
		int split_it = q && mode != RQ_LM_BATCH;

		n = k2.wait(&k2, epfd, ev,
			    split_it && maxevents > RQ_EVQ_CAP ? RQ_EVQ_CAP : maxevents);
		if (n <= 0)
			return n;
		if (!in)
			n = rescue(ev, n);
		else if (split_it)
			n = split(q, in, idx, ident, ev, n);
		else
			n = batch(in, ident, ev, n);
		/* An instance closed and reused during the wait: its events mean nothing now. */
		if (in && atomic_load_explicit(&in->ident, memory_order_acquire) != ident)
			n = 0;
		if (n > 0)
			goto out;
		if (!time_left(k, &k2, &ts2, total, start))
			break;
	}
out:
	errno = saved;
	return n;
}

void rq_evq_after_fork(void)
{
	for (int i = 0; i < NLOCKS; i++)
		atomic_store_explicit(&locks[i], 0, memory_order_relaxed);
	for (int i = 0; i < RQ_EVQ_NQ; i++)
		queues[i].head = queues[i].n = 0;
	queued = 0;
	in_ctl = 0;
	rq_evq_w.fd1 = 0;
}
