/*
 * epoll: the registration table and the per-thread event queues (evq.h).
 *
 * The data value reqctx registers is (registration number << RQ_EVQ_FD_BITS
 * | fd). Registration numbers come from one process-wide counter, so a value
 * names one registration of one fd: an event whose number is no longer its
 * fd's registration in the table belongs to a registration since modified or
 * deleted, and is dropped.
 *
 * Each table entry holds two (number, data) pairs: the current one, and
 * while an epoll_ctl is in flight the one it replaces, because the kernel may
 * report events under either until the call returns. epoll_ctl calls on the
 * same (epfd, fd) are serialised by a striped spin lock held across the
 * system call (epoll_ctl never blocks); readers take no lock, only the
 * entry's seqlock.
 */
#include "evq.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "carry.h"
#include "config.h"
#include "fdtab.h"

#define ENT_SHIFT 8                        /* 256 registrations per chunk */
#define DIR_LEN   (RQ_FD_MAX >> ENT_SHIFT) /* chunk pointers per table */
#define TAB_SHIFT 8                        /* 256 tables per chunk */
#define FD_BITS   20                       /* bits of the fd in reqctx's data value */
#define NLOCKS    64                       /* stripes of the epoll_ctl lock */

_Static_assert((1u << FD_BITS) == RQ_FD_MAX, "the data value must hold any tracked fd");

/* One fd's registration in one epoll instance; [0] is current, [1] is being replaced. */
struct ent {
	_Atomic uint32_t sq;      /* seqlock: odd while being written */
	_Atomic uint32_t seq[2];  /* registration numbers; 0: none */
	_Atomic uint64_t data[2]; /* the caller's data for each */
};

/* The table of one epoll fd number. */
struct tab {
	_Atomic uint32_t live;  /* 1 from epoll_create until the number is reused */
	_Atomic uint32_t fdgen; /* rq_fd_gen(epfd) at epoll_create: a close changes it */
	_Atomic uint32_t ident; /* unique per epoll_create; tags the thread queues */
	struct ent *_Atomic *_Atomic dir; /* DIR_LEN chunks, mapped on first use */
};

/* An event fetched by a real wait, not yet handed out. */
struct item {
	uint32_t events;
	int32_t fd;
	uint32_t seq;
	uint32_t fdgen; /* rq_fd_gen(fd) when fetched */
};

struct queue {
	int epfd;
	uint32_t ident;
	uint32_t head, n; /* it[head..n) are still to be handed out */
	struct item it[RQ_EVQ_CAP];
};

static struct tab *_Atomic tabs[RQ_FD_MAX >> TAB_SHIFT];
static _Atomic uint32_t seqs, idents;
static _Atomic int locks[NLOCKS];
static RQ_TLS struct queue queues[RQ_EVQ_NQ];
static RQ_TLS int in_ctl; /* a signal handler's epoll_ctl must not wait for its own thread */

/* ---- the table ---- */

static void *chunk(void *_Atomic *slot, size_t bytes, int make)
{
	void *c = atomic_load_explicit(slot, memory_order_acquire);
	void *expected = NULL;

	if (c || !make)
		return c;
	c = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED)
		return NULL;
	if (!atomic_compare_exchange_strong_explicit(slot, &expected, c, memory_order_acq_rel,
						     memory_order_acquire)) {
		munmap(c, bytes);
		c = expected;
	}
	return c;
}

static struct tab *tab_at(int epfd, int make)
{
	struct tab *c = chunk((void *_Atomic *)&tabs[(unsigned)epfd >> TAB_SHIFT],
			      sizeof(struct tab) << TAB_SHIFT, make);

	return c ? &c[epfd & ((1u << TAB_SHIFT) - 1)] : NULL;
}

/* The table of epfd if reqctx made it and epfd was not closed since. */
static struct tab *tab_live(int epfd)
{
	struct tab *t;

	if ((unsigned)epfd >= RQ_FD_MAX || !(t = tab_at(epfd, 0)))
		return NULL;
	if (!atomic_load_explicit(&t->live, memory_order_acquire) ||
	    atomic_load_explicit(&t->fdgen, memory_order_relaxed) != rq_fd_gen(epfd))
		return NULL;
	return t;
}

static struct ent *ent_at(struct tab *t, int fd, int make)
{
	struct ent *_Atomic *dir = chunk((void *_Atomic *)&t->dir,
					 DIR_LEN * sizeof(struct ent *), make);
	struct ent *c;

	if (!dir)
		return NULL;
	c = chunk((void *_Atomic *)&dir[(unsigned)fd >> ENT_SHIFT],
		  sizeof(struct ent) << ENT_SHIFT, make);
	return c ? &c[fd & ((1u << ENT_SHIFT) - 1)] : NULL;
}

void rq_evq_created(int epfd)
{
	struct ent *_Atomic *dir;
	struct tab *t;
	int e = errno;

	if (epfd < 0 || (unsigned)epfd >= RQ_FD_MAX || rq_cfg.disabled || !(t = tab_at(epfd, 1)))
		goto out;
	rq_fd_track(epfd);
	atomic_store_explicit(&t->live, 0, memory_order_release);
	if ((dir = atomic_load_explicit(&t->dir, memory_order_acquire)))
		for (unsigned i = 0; i < DIR_LEN; i++) {
			struct ent *c = atomic_load_explicit(&dir[i], memory_order_acquire);
			size_t bytes = sizeof(struct ent) << ENT_SHIFT;

			/* Anonymous private pages read back as zeros: every entry is empty. */
			if (c && madvise(c, bytes, MADV_DONTNEED) != 0)
				memset(c, 0, bytes);
		}
	atomic_store_explicit(&t->fdgen, rq_fd_gen(epfd), memory_order_relaxed);
	atomic_store_explicit(&t->ident, atomic_fetch_add(&idents, 1) + 1, memory_order_relaxed);
	atomic_store_explicit(&t->live, 1, memory_order_release);
out:
	errno = e;
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
	atomic_store_explicit(&en->sq, q + 2, memory_order_release);
}

/* The caller's data for registration `seq` of fd. Returns 0, or -ESTALE if it is gone. */
static int ent_data(struct tab *t, int fd, uint32_t seq, uint64_t *data)
{
	struct ent *en = ent_at(t, fd, 0);

	if (!en || !seq)
		return -ESTALE;
	for (;;) {
		uint32_t q = atomic_load_explicit(&en->sq, memory_order_acquire);
		uint32_t s0 = atomic_load_explicit(&en->seq[0], memory_order_relaxed);
		uint32_t s1 = atomic_load_explicit(&en->seq[1], memory_order_relaxed);
		uint64_t d0 = atomic_load_explicit(&en->data[0], memory_order_relaxed);
		uint64_t d1 = atomic_load_explicit(&en->data[1], memory_order_relaxed);

		atomic_thread_fence(memory_order_acquire);
		if ((q & 1) || atomic_load_explicit(&en->sq, memory_order_relaxed) != q) {
			sched_yield();
			continue;
		}
		if (seq != s0 && seq != s1)
			return -ESTALE;
		*data = seq == s0 ? d0 : d1;
		return 0;
	}
}

static _Atomic int *lock_for(int epfd, int fd)
{
	return &locks[((unsigned)epfd * 31u + (unsigned)fd) % NLOCKS];
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

/* ADD or MOD: register reqctx's value; the table is left as it was if the kernel refuses. */
static int ctl_set(rq_epoll_ctl_fn real, struct ent *en, int epfd, int op, int fd,
		   struct epoll_event *ev)
{
	uint32_t os = atomic_load_explicit(&en->seq[0], memory_order_relaxed);
	uint64_t od = atomic_load_explicit(&en->data[0], memory_order_relaxed);
	uint64_t data = ev->data.u64;
	uint32_t s = seq_next();
	struct epoll_event kev = { .events = ev->events,
				   .data.u64 = (uint64_t)s << FD_BITS | (unsigned)fd };
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

int rq_evq_ctl(rq_epoll_ctl_fn real, int epfd, int op, int fd, struct epoll_event *ev)
{
	int set = op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD;
	struct tab *t = tab_live(epfd);
	struct ent *en;
	_Atomic int *l;
	int r;

	if (!t || fd < 0 || (set && (uintptr_t)ev < 4096) || (!set && op != EPOLL_CTL_DEL))
		return real(epfd, op, fd, ev);
	if ((unsigned)fd >= RQ_FD_MAX) {
		if (!set)
			return real(epfd, op, fd, ev);
		errno = ENOMEM;
		return -1;
	}
	if (set)
		RQ_SAVE_ERRNO(rq_fd_track(fd));
	l = lock_for(epfd, fd);
	if (!in_ctl)
		lock(l);
	in_ctl++;
	if (!(en = ent_at(t, fd, set))) {
		r = set ? (errno = ENOMEM, -1) : real(epfd, op, fd, ev);
	} else if (set) {
		r = ctl_set(real, en, epfd, op, fd, ev);
	} else if ((r = real(epfd, op, fd, ev)) == 0) {
		ent_set(en, 0, 0, 0, 0);
	}
	if (!--in_ctl)
		unlock(l);
	return r;
}

/* ---- the queues ---- */

/*
 * Turns the kernel's event into a queue item, or returns 0 if the
 * registration it was reported for is gone.
 */
static int fetched(struct tab *t, const struct epoll_event *kev, struct item *it,
		   uint64_t *data)
{
	it->fd = (int32_t)(kev->data.u64 & (RQ_FD_MAX - 1));
	it->seq = (uint32_t)(kev->data.u64 >> FD_BITS);
	it->events = kev->events;
	it->fdgen = rq_fd_gen(it->fd);
	return ent_data(t, it->fd, it->seq, data) == 0;
}

/* Writes the item as the caller's event, if its fd and registration are unchanged. */
static int deliver(struct tab *t, const struct item *it, struct epoll_event *ev)
{
	uint64_t data;

	if (rq_fd_gen(it->fd) != it->fdgen || ent_data(t, it->fd, it->seq, &data) != 0)
		return 0;
	ev->events = it->events;
	ev->data.u64 = data;
	rq_fd_enter(it->fd);
	return 1;
}

static int pop(struct queue *q, struct tab *t, struct epoll_event *ev)
{
	while (q->head < q->n)
		if (deliver(t, &q->it[q->head++], ev))
			return 1;
	return 0;
}

/*
 * This thread's queue for epfd, or a free one to fill (*fresh = 1), or NULL
 * if every queue holds events of other epoll fds. Queues of epoll fds that
 * were closed since are emptied on the way.
 */
static struct queue *queue_for(int epfd, uint32_t ident, int *fresh)
{
	struct queue *free_q = NULL;

	for (int i = 0; i < RQ_EVQ_NQ; i++) {
		struct queue *q = &queues[i];

		if (q->head < q->n) {
			struct tab *t = tab_live(q->epfd);

			if (q->epfd == epfd && q->ident == ident) {
				*fresh = 0;
				return q;
			}
			if (t && atomic_load_explicit(&t->ident, memory_order_relaxed) == q->ident)
				continue;
			q->head = q->n = 0;
		}
		if (!free_q)
			free_q = q;
	}
	*fresh = 1;
	return free_q;
}

/* Every queue is busy: hand the caller the whole batch, decoded in place. */
static int batch(struct tab *t, int epfd, struct epoll_event *ev, int max,
		 const struct rq_evq_call *k)
{
	for (;;) {
		int n = k->wait(k, epfd, ev, max), kept = 0, first = -1;

		if (n <= 0)
			return n;
		for (int i = 0; i < n; i++) {
			struct item it;
			uint64_t data;

			if (!fetched(t, &ev[i], &it, &data))
				continue;
			if (first < 0)
				first = it.fd;
			ev[kept].events = it.events;
			ev[kept++].data.u64 = data;
		}
		if (kept) {
			RQ_SAVE_ERRNO(rq_fd_enter(first));
			return kept;
		}
	}
}

int rq_evq_wait(int epfd, struct epoll_event *ev, int maxevents, const struct rq_evq_call *k)
{
	struct tab *t = tab_live(epfd);
	uint32_t ident;
	struct queue *q;
	int fresh, saved = errno;

	if (!t || maxevents <= 0 || (uintptr_t)ev < 4096)
		return k->wait(k, epfd, ev, maxevents);
	ident = atomic_load_explicit(&t->ident, memory_order_relaxed);
	q = queue_for(epfd, ident, &fresh);
	if (q && !fresh) {
		if (pop(q, t, ev))
			goto out;
		q->head = q->n = 0;
	}
	if (!q)
		return batch(t, epfd, ev, maxevents, k);
	for (;;) {
		int n = k->wait(k, epfd, ev, maxevents < RQ_EVQ_CAP ? maxevents : RQ_EVQ_CAP);

		if (n <= 0)
			return n;
		q->epfd = epfd;
		q->ident = ident;
		q->head = q->n = 0;
		for (int i = 0; i < n; i++) {
			uint64_t data;

			if (fetched(t, &ev[i], &q->it[q->n], &data))
				q->n++;
		}
		if (pop(q, t, ev))
			goto out;
	}
out:
	errno = saved;
	return 1;
}

void rq_evq_after_fork(void)
{
	for (int i = 0; i < NLOCKS; i++)
		atomic_store_explicit(&locks[i], 0, memory_order_relaxed);
	for (int i = 0; i < RQ_EVQ_NQ; i++)
		queues[i].head = queues[i].n = 0;
	in_ctl = 0;
}
