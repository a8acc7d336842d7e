/*
 * The epoll table and queues, and the poll/select reporters (src/evq.h),
 * driven in-process with real epoll fds and libc's own epoll functions.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "carry.h"
#include "common.h"
#include "ctx.h"
#include "evq.h"
#include "handle.h"
#include "fdtab.h"

static int nwaits; /* real waits made */

static int real_wait(const struct rq_evq_call *k, int epfd, struct epoll_event *ev, int max)
{
	nwaits++;
	return epoll_wait(epfd, ev, max, k->timeout);
}

static const struct rq_evq_call now = { .wait = real_wait, .timeout = 0 };

static void enter_ctx(const char *id)
{
	struct rq_ctx c = { .serial = rq_serial_next(), .len = (uint32_t)strlen(id) };

	strcpy(c.id, id);
	rq_ctx_set(&c);
}

/* An eventfd that is readable and carries context `id`. */
static int ready_fd(const char *id)
{
	int fd = eventfd(1, EFD_NONBLOCK);

	cr_assert_geq(fd, 0);
	enter_ctx(id);
	rq_carry_new(fd, -1);
	rq_ctx_clear();
	return fd;
}

static int new_ep(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	cr_assert_geq(ep, 0);
	rq_evq_created(ep);
	return ep;
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event e = { .events = events, .data.u64 = data };

	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_ADD, fd, &e), 0);
}

static void mod(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event e = { .events = events, .data.u64 = data };

	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_MOD, fd, &e), 0);
}

/* One wait with a 64-event array; returns the data of the single event handed out, or 0. */
static uint64_t next(int ep)
{
	struct epoll_event ev[64];
	int n = rq_evq_wait(ep, ev, 64, &now);

	cr_assert(n == 0 || n == 1, "n=%d", n);
	return n ? ev[0].data.u64 : 0;
}

static void setup(void)
{
	fake_install();
	nwaits = 0;
}

TestSuite(evq, .init = setup, .timeout = 30);

/* ---- the registration table ---- */

Test(evq, the_kernel_holds_reqctx_s_value_and_the_caller_gets_its_data_back)
{
	int ep = new_ep(), fd = ready_fd("a");
	struct epoll_event raw;

	add(ep, fd, EPOLLIN, 0xdeadbeefcafe1234ull);
	cr_assert_eq(epoll_wait(ep, &raw, 1, 0), 1);
	cr_assert_neq(raw.data.u64, 0xdeadbeefcafe1234ull);
	cr_assert_eq(raw.data.u64 & (RQ_FD_MAX - 1), (uint64_t)fd);
	cr_assert_eq(next(ep), 0xdeadbeefcafe1234ull);
	cr_assert_str_eq(rq_ctx_cur()->id, "a");
}

Test(evq, an_epoll_fd_reqctx_did_not_create_is_passed_through)
{
	int ep = epoll_create1(0), fd = ready_fd("a");
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 77 }, raw;

	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_ADD, fd, &e), 0);
	cr_assert_eq(epoll_wait(ep, &raw, 1, 0), 1);
	cr_assert_eq(raw.data.u64, 77);
	cr_assert_eq(rq_evq_wait(ep, &raw, 1, &now), 1);
	cr_assert_eq(raw.data.u64, 77);
	cr_assert_str_eq(rq_ctx_cur()->id, "unknown");
}

Test(evq, a_refused_add_or_mod_leaves_the_registration_as_it_was)
{
	int ep = new_ep(), fd = ready_fd("a"), file = open("/dev/null", O_RDONLY);
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 2 };

	add(ep, fd, EPOLLIN, 1);
	errno = 0;
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_ADD, fd, &e), -1);
	cr_assert_eq(errno, EEXIST);
	e.events = EPOLLIN | EPOLLEXCLUSIVE;
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_MOD, fd, &e), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_ADD, file, &e), -1);
	cr_assert_eq(errno, EPERM);
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_DEL, file, NULL), -1);
	cr_assert_eq(errno, EPERM);
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_DEL, ready_fd("z"), NULL), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_ADD, -1, &e), -1);
	cr_assert_eq(errno, EBADF);
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_ADD, fd, NULL), -1);
	cr_assert_eq(errno, EFAULT);
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, 99, fd, &e), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(next(ep), 1);
	cr_assert_eq(next(ep), 1); /* level-triggered: again */
}

Test(evq, wait_errors_are_the_kernel_s)
{
	int ep = new_ep(), fd = ready_fd("a"), file = open("/dev/null", O_RDONLY);
	struct epoll_event ev[2];

	add(ep, fd, EPOLLIN, 1);
	errno = 0;
	cr_assert_eq(rq_evq_wait(ep, ev, 0, &now), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(rq_evq_wait(ep, ev, -3, &now), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(rq_evq_wait(ep, NULL, 2, &now), -1);
	cr_assert_eq(errno, EFAULT);
	cr_assert_eq(rq_evq_wait(file, ev, 2, &now), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(rq_evq_wait(987, ev, 2, &now), -1);
	cr_assert_eq(errno, EBADF);
	errno = 1234;
	cr_assert_eq(rq_evq_wait(ep, ev, 2, &now), 1);
	cr_assert_eq(errno, 1234);
}

/* ---- one event per call ---- */

Test(evq, ready_events_come_one_per_call_each_in_its_fd_s_context_from_one_real_wait)
{
	int ep = new_ep();
	const char *ids[] = { "ctx-a", "ctx-b", "ctx-c" };
	int seen[3] = { 0 };

	for (int i = 0; i < 3; i++)
		add(ep, ready_fd(ids[i]), EPOLLIN | EPOLLET, (uint64_t)i + 100);
	for (int call = 0; call < 3; call++) {
		uint64_t d = next(ep);

		cr_assert(d >= 100 && d < 103, "data %llu", (unsigned long long)d);
		seen[d - 100]++;
		cr_assert_str_eq(rq_ctx_cur()->id, ids[d - 100]);
	}
	cr_assert_eq(nwaits, 1);
	cr_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	cr_assert_eq(next(ep), 0);
	cr_assert_eq(nwaits, 2);
}

Test(evq, a_real_wait_fetches_at_most_RQ_EVQ_CAP_events)
{
	int ep = new_ep(), total = RQ_EVQ_CAP + 36;
	struct epoll_event ev[256];
	char seen[RQ_EVQ_CAP + 36] = { 0 };

	for (int i = 0; i < total; i++)
		add(ep, ready_fd("x"), EPOLLIN | EPOLLET, (uint64_t)i);
	for (int i = 0; i < total; i++) {
		cr_assert_eq(rq_evq_wait(ep, ev, 256, &now), 1);
		cr_assert_eq(seen[ev[0].data.u64]++, 0);
	}
	cr_assert_eq(nwaits, 2);
	cr_assert_eq(rq_evq_wait(ep, ev, 256, &now), 0);
}

Test(evq, queues_are_per_epoll_fd_and_do_not_mix)
{
	int a = new_ep(), b = new_ep();

	add(a, ready_fd("a1"), EPOLLIN | EPOLLET, 11);
	add(a, ready_fd("a2"), EPOLLIN | EPOLLET, 12);
	add(b, ready_fd("b1"), EPOLLIN | EPOLLET, 21);
	add(b, ready_fd("b2"), EPOLLIN | EPOLLET, 22);
	uint64_t x = next(a), y = next(b), z = next(a), w = next(b);

	cr_assert_eq(x + z, 23);
	cr_assert_eq(y + w, 43);
	cr_assert_eq(nwaits, 2);
	cr_assert_eq(next(a), 0);
	cr_assert_eq(next(b), 0);
}

Test(evq, with_every_queue_busy_another_epoll_fd_gets_its_whole_batch)
{
	int eps[RQ_EVQ_NQ + 1];
	struct epoll_event ev[8];

	for (int i = 0; i <= RQ_EVQ_NQ; i++) {
		eps[i] = new_ep();
		add(eps[i], ready_fd("q"), EPOLLIN | EPOLLET, 1);
		add(eps[i], ready_fd("last"), EPOLLIN | EPOLLET, 2);
	}
	for (int i = 0; i < RQ_EVQ_NQ; i++)
		cr_assert_neq(next(eps[i]), 0);
	cr_assert_eq(rq_evq_wait(eps[RQ_EVQ_NQ], ev, 8, &now), 2);
	cr_assert_eq(ev[0].data.u64 + ev[1].data.u64, 3);
	for (int i = 0; i < RQ_EVQ_NQ; i++)
		cr_assert_neq(next(eps[i]), 0);
	cr_assert_eq(nwaits, RQ_EVQ_NQ + 1);
}

/* ---- stale events ---- */

Test(evq, a_queued_event_of_a_deleted_registration_is_dropped)
{
	int ep = new_ep(), f1 = ready_fd("a"), f2 = ready_fd("b");

	add(ep, f1, EPOLLIN, 1);
	add(ep, f2, EPOLLIN, 2);
	uint64_t first = next(ep);
	int other = first == 1 ? f2 : f1;

	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_DEL, other, NULL), 0);
	cr_assert_eq(next(ep), first); /* level-triggered: the remaining one again */
	cr_assert_eq(nwaits, 2);
}

Test(evq, a_queued_event_of_a_modified_registration_is_replaced_by_the_kernel_s_new_report)
{
	int ep = new_ep(), f1 = ready_fd("a"), f2 = ready_fd("b");

	add(ep, f1, EPOLLIN | EPOLLET, 1);
	add(ep, f2, EPOLLIN | EPOLLET, 2);
	uint64_t first = next(ep);
	int other = first == 1 ? f2 : f1;

	mod(ep, other, EPOLLIN | EPOLLET, 50);
	cr_assert_eq(next(ep), 50);
	cr_assert_str_eq(rq_ctx_cur()->id, other == f1 ? "a" : "b");
	cr_assert_eq(next(ep), 0);
	cr_assert_eq(nwaits, 3);
}

Test(evq, a_queued_event_of_a_closed_fd_is_dropped_even_for_an_untracked_fd)
{
	int ep = new_ep(), p1[2], p2[2];

	cr_assert_eq(pipe(p1), 0); /* not made carriers: untracked fds */
	cr_assert_eq(pipe(p2), 0);
	cr_assert_eq(write(p1[1], "x", 1), 1);
	cr_assert_eq(write(p2[1], "x", 1), 1);
	add(ep, p1[0], EPOLLIN | EPOLLET, 1);
	add(ep, p2[0], EPOLLIN | EPOLLET, 2);
	uint64_t first = next(ep);
	int other = first == 1 ? p2[0] : p1[0];

	rq_fd_forget(other); /* what the close wrapper does */
	close(other);
	cr_assert_eq(next(ep), 0);
}

Test(evq, a_queued_event_of_a_reused_fd_number_is_dropped_and_the_new_one_reported)
{
	int ep = new_ep(), f1 = ready_fd("a"), f2 = ready_fd("b"), again;

	add(ep, f1, EPOLLIN | EPOLLET, 1);
	add(ep, f2, EPOLLIN | EPOLLET, 2);
	uint64_t first = next(ep);
	int other = first == 1 ? f2 : f1;

	rq_fd_forget(other);
	close(other);
	again = ready_fd("new");
	cr_assert_eq(again, other);
	add(ep, again, EPOLLIN | EPOLLET, 9);
	cr_assert_eq(next(ep), 9);
	cr_assert_str_eq(rq_ctx_cur()->id, "new");
	cr_assert_eq(next(ep), 0);
}

Test(evq, oneshot_events_are_delivered_at_most_once_and_again_after_rearming)
{
	int ep = new_ep(), f1 = ready_fd("a"), f2 = ready_fd("b");

	add(ep, f1, EPOLLIN | EPOLLONESHOT, 1);
	add(ep, f2, EPOLLIN | EPOLLONESHOT, 2);
	cr_assert_eq(next(ep) + next(ep), 3);
	cr_assert_eq(next(ep), 0);
	cr_assert_eq(next(ep), 0);
	mod(ep, f2, EPOLLIN | EPOLLONESHOT, 22);
	cr_assert_eq(next(ep), 22);
	cr_assert_str_eq(rq_ctx_cur()->id, "b");
	cr_assert_eq(next(ep), 0);
}

Test(evq, edge_triggered_events_are_not_repeated)
{
	int ep = new_ep(), fd = ready_fd("a");
	uint64_t one = 1;

	add(ep, fd, EPOLLIN | EPOLLET, 5);
	cr_assert_eq(next(ep), 5);
	cr_assert_eq(next(ep), 0);
	cr_assert_eq(write(fd, &one, 8), 8);
	cr_assert_eq(next(ep), 5);
	cr_assert_eq(next(ep), 0);
}

Test(evq, a_reused_epoll_fd_number_starts_empty_and_drops_the_old_queue)
{
	int ep = new_ep(), ep2;

	add(ep, ready_fd("old"), EPOLLIN | EPOLLET, 1);
	add(ep, ready_fd("old"), EPOLLIN | EPOLLET, 2);
	cr_assert_neq(next(ep), 0);
	rq_fd_forget(ep);
	close(ep);
	ep2 = new_ep();
	cr_assert_eq(ep2, ep);
	add(ep2, ready_fd("fresh"), EPOLLIN | EPOLLET, 3);
	cr_assert_eq(next(ep2), 3);
	cr_assert_str_eq(rq_ctx_cur()->id, "fresh");
	cr_assert_eq(next(ep2), 0);
}

Test(evq, the_child_of_a_fork_starts_with_empty_queues)
{
	int ep = new_ep();

	add(ep, ready_fd("a"), EPOLLIN | EPOLLET, 1);
	add(ep, ready_fd("b"), EPOLLIN | EPOLLET, 2);
	cr_assert_neq(next(ep), 0);
	rq_evq_after_fork();
	cr_assert_eq(next(ep), 0);
}

/*
 * A worker re-arms an EPOLLONESHOT registration from another thread while
 * the loop thread waits: the kernel may report the event before epoll_ctl
 * returns, and it must still be mapped to the new data, every time.
 */
static int race_ep, race_fd;
static _Atomic int race_round;

static void *rearm(void *arg)
{
	(void)arg;
	for (int r = 1; r <= 3000; r++) {
		while (atomic_load(&race_round) != r)
			;
		mod(race_ep, race_fd, EPOLLIN | EPOLLONESHOT, (uint64_t)r);
	}
	return NULL;
}

Test(evq, a_oneshot_rearmed_by_another_thread_during_a_wait_is_never_lost)
{
	const struct rq_evq_call slow = { .wait = real_wait, .timeout = 2000 };
	struct epoll_event ev[8];
	pthread_t th;

	race_ep = new_ep();
	race_fd = ready_fd("r");
	add(race_ep, race_fd, EPOLLIN | EPOLLONESHOT, 0);
	cr_assert_eq(pthread_create(&th, NULL, rearm, NULL), 0);
	cr_assert_eq(rq_evq_wait(race_ep, ev, 8, &slow), 1);
	for (int r = 1; r <= 3000; r++) {
		atomic_store(&race_round, r);
		cr_assert_eq(rq_evq_wait(race_ep, ev, 8, &slow), 1, "round %d", r);
		cr_assert_eq(ev[0].data.u64, (uint64_t)r);
	}
	pthread_join(th, NULL);
}

/* ---- poll and select ---- */

static void ready_pipes(int n, struct pollfd *pf, const char *const *ids)
{
	for (int i = 0; i < n; i++) {
		int p[2];

		cr_assert_eq(pipe(p), 0);
		enter_ctx(ids[i]);
		rq_carry_new(p[0], -1);
		rq_ctx_clear();
		cr_assert_eq(write(p[1], "x", 1), 1);
		pf[i] = (struct pollfd){ .fd = p[0], .events = POLLIN };
	}
}

Test(evq, poll_reports_one_ready_fd_per_call_in_turn_in_its_context)
{
	const char *ids[] = { "p0", "p1", "p2" };
	struct pollfd pf[4];
	int order[6];

	ready_pipes(3, pf, ids);
	pf[3] = (struct pollfd){ .fd = -1, .events = POLLIN };
	for (int c = 0; c < 6; c++) {
		int k = -1;

		cr_assert_eq(rq_poll_after(pf, 4, poll(pf, 4, 0)), 1);
		for (int i = 0; i < 4; i++)
			if (pf[i].revents) {
				cr_assert_eq(k, -1, "two reported");
				k = i;
			}
		cr_assert_eq(pf[k].revents, POLLIN);
		cr_assert_str_eq(rq_ctx_cur()->id, ids[k]);
		order[c] = k;
	}
	cr_assert_eq(order[0], 0);
	for (int c = 1; c < 6; c++)
		cr_assert_eq(order[c], (order[c - 1] + 1) % 3);
}

Test(evq, poll_results_with_one_ready_fd_or_none_are_unchanged)
{
	const char *ids[] = { "only" };
	struct pollfd pf[2];

	ready_pipes(1, pf, ids);
	pf[1] = (struct pollfd){ .fd = open("/dev/null", O_RDONLY), .events = 0 };
	cr_assert_eq(rq_poll_after(pf, 2, poll(pf, 2, 0)), 1);
	cr_assert_eq(pf[0].revents, POLLIN);
	cr_assert_eq(pf[1].revents, 0);
	cr_assert_str_eq(rq_ctx_cur()->id, "only");
	pf[0].events = POLLOUT;
	cr_assert_eq(rq_poll_after(pf, 2, poll(pf, 2, 0)), 0);
	errno = EINTR;
	cr_assert_eq(rq_poll_after(pf, 2, -1), -1);
	cr_assert_eq(errno, EINTR);
}

Test(evq, select_reports_one_ready_fd_per_call_with_its_bits_and_count)
{
	const char *ids[] = { "s0", "s1" };
	struct pollfd pf[2];
	int sv[2];

	ready_pipes(2, pf, ids);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	enter_ctx("sock");
	rq_carry_new(sv[0], -1);
	rq_ctx_clear();
	cr_assert_eq(write(sv[1], "x", 1), 1); /* sv[0]: readable and writable */
	int maxfd = sv[0] > pf[1].fd ? sv[0] : pf[1].fd;
	int hits[3] = { 0 };

	for (int c = 0; c < 6; c++) {
		fd_set rd, wr;
		int r, who = -1;

		FD_ZERO(&rd);
		FD_ZERO(&wr);
		FD_SET(pf[0].fd, &rd);
		FD_SET(pf[1].fd, &rd);
		FD_SET(sv[0], &rd);
		FD_SET(sv[0], &wr);
		r = rq_select_after(maxfd + 1, &rd, &wr, NULL, select(maxfd + 1, &rd, &wr, NULL, NULL));
		for (int i = 0; i <= maxfd; i++)
			if (FD_ISSET(i, &rd) || FD_ISSET(i, &wr)) {
				cr_assert_eq(who, -1, "two reported");
				who = i;
			}
		if (who == sv[0]) {
			cr_assert_eq(r, 2);
			cr_assert(FD_ISSET(sv[0], &rd) && FD_ISSET(sv[0], &wr));
			cr_assert_str_eq(rq_ctx_cur()->id, "sock");
			hits[2]++;
		} else {
			int k = who == pf[0].fd ? 0 : 1;

			cr_assert_eq(r, 1);
			cr_assert_eq(who, pf[k].fd);
			cr_assert_str_eq(rq_ctx_cur()->id, ids[k]);
			hits[k]++;
		}
	}
	cr_assert(hits[0] == 2 && hits[1] == 2 && hits[2] == 2, "%d %d %d", hits[0], hits[1],
		  hits[2]);
}

/* ---- values reqctx cannot map, aliases, fork ---- */

Test(evq, reqctx_s_values_carry_its_tag_the_registration_number_and_the_fd)
{
	int ep = new_ep(), fd = ready_fd("a");
	struct epoll_event raw;

	add(ep, fd, EPOLLIN, 77);
	cr_assert_eq(epoll_wait(ep, &raw, 1, 0), 1);
	cr_assert_eq(raw.data.u64 >> 52, RQ_EVQ_TAG);
	cr_assert_eq(raw.data.u64 & (RQ_FD_MAX - 1), (uint64_t)fd);
	cr_assert_neq((raw.data.u64 >> 20) & 0xffffffffu, 0);
}

Test(evq, a_value_reqctx_did_not_register_comes_back_as_the_kernel_gave_it_with_the_rest)
{
	int ep = new_ep(), a = ready_fd("a"), b = ready_fd("b");
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 0x100006 }, ev[8];
	uint64_t sum = 0;

	add(ep, a, EPOLLIN, 11);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, b, &e), 0); /* as a raw system call would */
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 2);       /* one fetch, returned whole */
	for (int i = 0; i < 2; i++)
		sum += ev[i].data.u64;
	cr_assert_eq(sum, 0x100006 + 11);
	cr_assert_eq(nwaits, 1);
}

Test(evq, a_dup_of_an_epoll_fd_shares_its_registrations_and_outlives_it)
{
	int ep = new_ep(), d = dup(ep), fd = ready_fd("a");

	rq_evq_dup(ep, d);
	add(d, fd, EPOLLIN | EPOLLET, 5);
	cr_assert_eq(next(ep), 5);
	cr_assert_str_eq(rq_ctx_cur()->id, "a");
	rq_fd_forget(ep);
	close(ep);
	cr_assert_eq(write(fd, &(uint64_t){ 1 }, 8), 8);
	cr_assert_eq(next(d), 5);
	cr_assert_str_eq(rq_ctx_cur()->id, "a");
}

Test(evq, epoll_fds_closed_and_created_again_reuse_their_instances)
{
	int ep = -1;

	for (int i = 0; i < 2 * RQ_EVQ_INST_MAX; i++) {
		if (ep >= 0) {
			rq_fd_forget(ep);
			close(ep);
		}
		ep = new_ep();
	}
	add(ep, ready_fd("last"), EPOLLIN | EPOLLET, 9);
	cr_assert_eq(next(ep), 9);
	cr_assert_str_eq(rq_ctx_cur()->id, "last");
}

Test(evq, after_a_fork_registrations_pass_the_caller_s_data_and_come_back_unmapped)
{
	int ep = new_ep(), old = ready_fd("old"), fresh = ready_fd("fresh");
	struct epoll_event raw, ev[8];
	uint64_t sum = 0;

	add(ep, old, EPOLLIN, 1);
	rq_evq_before_fork();
	add(ep, fresh, EPOLLIN, 2);
	cr_assert_eq(rq_evq_ctl(epoll_ctl, ep, EPOLL_CTL_DEL, old, NULL), 0);
	cr_assert_eq(epoll_wait(ep, &raw, 1, 0), 1);
	cr_assert_eq(raw.data.u64, 2); /* the kernel holds the caller's own value */
	add(ep, old, EPOLLIN, 3);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 2); /* shared: never split */
	for (int i = 0; i < 2; i++)
		sum += ev[i].data.u64;
	cr_assert_eq(sum, 5);
}

/*
 * A wait whose every event turns out stale waits again only for the time
 * left: this fake kernel modifies the registration after each real wait, so
 * every fetched event is stale and the fd is reported again at once.
 */
static int stale_timeouts[4096], nstale;
static const struct timespec *stale_ts[4096];
static int stale_ep, stale_fd;

static int stale_wait(const struct rq_evq_call *k, int epfd, struct epoll_event *ev, int max)
{
	int n = k->by_ts ? epoll_pwait2(epfd, ev, max, k->ts, NULL)
			 : epoll_wait(epfd, ev, max, k->timeout);

	if (nstale < 4096) {
		stale_timeouts[nstale] = k->timeout;
		stale_ts[nstale] = k->ts;
	}
	nstale++;
	mod(stale_ep, stale_fd, EPOLLIN, 1);
	return n;
}

Test(evq, when_every_event_is_stale_the_wait_goes_on_only_for_the_time_left)
{
	const struct rq_evq_call k = { .wait = stale_wait, .timeout = 40 };
	struct epoll_event ev[8];

	stale_ep = new_ep();
	stale_fd = ready_fd("a");
	add(stale_ep, stale_fd, EPOLLIN, 1);
	cr_assert_eq(rq_evq_wait(stale_ep, ev, 8, &k), 0);
	cr_assert_gt(nstale, 1);
	cr_assert_eq(stale_timeouts[0], 40);
	for (int i = 1; i < nstale && i < 4096; i++) {
		cr_assert_leq(stale_timeouts[i], stale_timeouts[i - 1], "wait %d", i);
		cr_assert_gt(stale_timeouts[i], 0);
	}
}

Test(evq, when_every_event_is_stale_a_zero_timeout_returns_0_after_one_wait)
{
	const struct rq_evq_call k = { .wait = stale_wait, .timeout = 0 };
	const struct timespec zero = { 0, 0 };
	const struct rq_evq_call k2 = { .wait = stale_wait, .by_ts = 1, .ts = &zero };
	struct epoll_event ev[8];

	stale_ep = new_ep();
	stale_fd = ready_fd("a");
	add(stale_ep, stale_fd, EPOLLIN, 1);
	cr_assert_eq(rq_evq_wait(stale_ep, ev, 8, &k), 0);
	cr_assert_eq(nstale, 1);
	cr_assert_eq(rq_evq_wait(stale_ep, ev, 8, &k2), 0);
	cr_assert_eq(nstale, 2);
}

Test(evq, epoll_pwait2_s_timespec_shrinks_to_the_time_left_too)
{
	const struct timespec t = { 0, 30000000 };
	const struct rq_evq_call k = { .wait = stale_wait, .by_ts = 1, .ts = &t };
	struct epoll_event ev[8];

	stale_ep = new_ep();
	stale_fd = ready_fd("a");
	add(stale_ep, stale_fd, EPOLLIN, 1);
	cr_assert_eq(rq_evq_wait(stale_ep, ev, 8, &k), 0);
	cr_assert_gt(nstale, 1);
	cr_assert_eq(stale_ts[0], &t);
	for (int i = 1; i < nstale && i < 4096; i++)
		cr_assert_neq(stale_ts[i], &t, "wait %d got the whole timeout again", i);
}

/* ---- learning split or batch ---- */

/* n ready eventfds, each carrying its own context, registered level-triggered. */
static int ready_set(int ep, int n, int *fds)
{
	static char ids[64][16];

	for (int i = 0; i < n; i++) {
		snprintf(ids[i], sizeof(ids[i]), "ctx-%d", i);
		fds[i] = ready_fd(ids[i]);
		add(ep, fds[i], EPOLLIN, (uint64_t)i + 1);
	}
	return n;
}

/* Hands out events one per call and, like a touch-first callback, reads each one's fd first. */
static void touch_first(int ep, int calls)
{
	for (int i = 0; i < calls; i++) {
		struct epoll_event ev[8];

		cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1, "call %d", i);
		if (rq_evq_w.fd1)
			rq_evq_touch(rq_evq_w.fd1 - 1);
	}
}

Test(evq, a_loop_whose_callbacks_touch_their_fd_first_turns_to_batch_after_the_warm_up)
{
	int ep = new_ep(), fds[4];
	struct epoll_event ev[8];

	ready_set(ep, 4, fds);
	touch_first(ep, RQ_EVQ_LEARN - 1);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1); /* still split */
	rq_evq_touch(rq_evq_w.fd1 - 1);                 /* the RQ_EVQ_LEARN-th */
	cr_assert_eq(nwaits, RQ_EVQ_LEARN / 4);         /* one real wait per four hand-outs */
	for (int round = 1; round <= 3; round++) {
		uint64_t sum = 0;

		cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 4, "round %d", round);
		for (int i = 0; i < 4; i++)
			sum += ev[i].data.u64;
		cr_assert_eq(sum, 10);
		cr_assert_eq(nwaits, RQ_EVQ_LEARN / 4 + round);
	}
}

Test(evq, in_batch_mode_the_first_event_s_context_is_entered)
{
	int ep = new_ep(), fds[3];
	struct epoll_event ev[8];

	rq_cfg.loop = RQ_LOOP_BATCH;
	ready_set(ep, 3, fds);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 3);
	cr_assert_eq(nwaits, 1);
	cr_assert_eq(rq_ctx_cur()->id[4] - '0', (int)ev[0].data.u64 - 1);
}

Test(evq, a_callback_that_logs_in_the_entered_context_keeps_the_loop_split_for_good)
{
	int ep = new_ep(), fds[4];
	struct epoll_event ev[8];

	ready_set(ep, 4, fds);
	enter_ctx("before");
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
	rq_evq_use(); /* a log line before any I/O: in "ctx-N", not "before" */
	touch_first(ep, 3 * RQ_EVQ_LEARN);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
}

Test(evq, a_log_line_in_the_same_context_as_before_tells_nothing)
{
	int ep = new_ep(), same = ready_fd("same"), other = ready_fd("other"), batched = 0;
	struct epoll_event ev[8];

	add(ep, same, EPOLLIN, 1);
	add(ep, other, EPOLLIN, 2);
	rq_fd_enter(same);
	/* "same" logs first, but over its own context; "other" reads first and leaves "same" current. */
	for (int i = 0; i < 4 * RQ_EVQ_LEARN && !batched; i++) {
		int n = rq_evq_wait(ep, ev, 8, &now);

		if (n == 2) {
			batched = 1;
		} else if (ev[0].data.u64 == 1) {
			rq_evq_use();
			rq_evq_touch(same);
		} else {
			rq_evq_touch(other);
			rq_fd_enter(same);
		}
	}
	cr_assert(batched);
}

Test(evq, storing_the_entered_context_in_a_carrier_counts_as_using_it)
{
	int ep = new_ep(), fds[2], p[2];
	struct epoll_event ev[8];

	ready_set(ep, 2, fds);
	cr_assert_eq(pipe(p), 0);
	rq_carry_new(p[0], -1);
	enter_ctx("before");
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
	rq_carry_put(p[0], rq_fd_peek(p[0])); /* a write to a pipe, before any read */
	touch_first(ep, 2 * RQ_EVQ_LEARN);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
}

Test(evq, REQCTX_LOOP_split_never_turns_to_batch)
{
	int ep = new_ep(), fds[3];

	rq_cfg.loop = RQ_LOOP_SPLIT;
	ready_set(ep, 3, fds);
	for (int i = 0; i < 3 * RQ_EVQ_LEARN; i++) {
		struct epoll_event ev[8];

		cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
		cr_assert_eq(rq_evq_w.fd1, 0); /* nothing to learn */
		rq_evq_touch(fds[ev[0].data.u64 - 1]);
	}
}

Test(evq, in_batch_mode_a_log_first_callback_sends_the_loop_back_to_split_for_good)
{
	int ep = new_ep(), fds[3];
	struct epoll_event ev[8];

	ready_set(ep, 3, fds);
	touch_first(ep, RQ_EVQ_LEARN);
	while (rq_evq_wait(ep, ev, 8, &now) != 3)
		;
	enter_ctx("before");
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 3);
	rq_evq_use();
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
	touch_first(ep, 2 * RQ_EVQ_LEARN);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
}

Test(evq, poll_turns_to_batch_per_thread_and_then_returns_the_kernel_s_result)
{
	const char *ids[] = { "p0", "p1", "p2" };
	struct pollfd pf[3];

	ready_pipes(3, pf, ids);
	for (int i = 0; i < RQ_EVQ_LEARN; i++) {
		cr_assert_eq(rq_poll_after(pf, 3, poll(pf, 3, 0)), 1);
		cr_assert_neq(rq_evq_w.fd1, 0);
		rq_evq_touch(rq_evq_w.fd1 - 1);
	}
	cr_assert_eq(rq_poll_after(pf, 3, poll(pf, 3, 0)), 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pf[i].revents, POLLIN);
	cr_assert_str_eq(rq_ctx_cur()->id, "p0");
}

Test(evq, select_in_batch_mode_returns_the_kernel_s_sets_and_count)
{
	const char *ids[] = { "s0", "s1" };
	struct pollfd pf[2];
	fd_set rd;
	int maxfd;

	rq_cfg.loop = RQ_LOOP_BATCH;
	ready_pipes(2, pf, ids);
	maxfd = pf[0].fd > pf[1].fd ? pf[0].fd : pf[1].fd;
	FD_ZERO(&rd);
	FD_SET(pf[0].fd, &rd);
	FD_SET(pf[1].fd, &rd);
	cr_assert_eq(rq_select_after(maxfd + 1, &rd, NULL, NULL, select(maxfd + 1, &rd, NULL, NULL, NULL)), 2);
	cr_assert(FD_ISSET(pf[0].fd, &rd) && FD_ISSET(pf[1].fd, &rd));
	cr_assert_str_eq(rq_ctx_cur()->id, pf[0].fd < pf[1].fd ? "s0" : "s1");
}

/*
 * nginx, when an upstream connection it opened for a request becomes
 * writable, writes that request to it before reading anything: the write
 * stores the entered context in the upstream socket (a carrier), whose reply
 * is then read in it. Batch mode would store the previous callback's instead,
 * so such a window keeps the loop split, even when the next callback's I/O
 * sets another request's context.
 */
Test(evq, a_use_of_the_entered_context_before_any_io_keeps_the_loop_split)
{
	int ep = new_ep(), fds[4], other = ready_fd("another request");
	struct epoll_event ev[8];

	ready_set(ep, 4, fds);
	for (int i = 0; i < 2 * RQ_EVQ_LEARN; i++) {
		rq_fd_enter(other); /* where the last callback left off */
		cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1, "call %d", i);
		rq_evq_use();       /* the upstream write, in the entered context */
		rq_evq_touch(other); /* the next callback's read... */
		rq_fd_enter(other);  /* ...which sets another request's context */
	}
	cr_assert_eq(nwaits, 2 * RQ_EVQ_LEARN / 4, "one event per call throughout");
}

/*
 * asyncio runs the tasks an earlier iteration scheduled before this
 * iteration's callbacks; with its runtime adapter each task enters its own
 * request first. A log line in such a task, in a context reqctx did not
 * enter, says nothing about the callback: the window stays open, and the
 * callback's read of its fd, which follows, counts toward batch.
 */
Test(evq, a_use_in_a_context_an_adapter_entered_leaves_the_window_open)
{
	int ep = new_ep(), fds[4];
	struct epoll_event ev[8];

	ready_set(ep, 4, fds);
	for (int i = 0; i < RQ_EVQ_LEARN; i++) {
		int n = rq_evq_wait(ep, ev, 8, &now);

		cr_assert_eq(n, 1, "call %d", i);
		enter_ctx("a task's request"); /* the adapter enters the task's context */
		rq_evq_use();                  /* the task's log line */
		rq_evq_touch(fds[ev[0].data.u64 - 1]); /* the I/O callback reads its fd */
		rq_fd_enter(fds[ev[0].data.u64 - 1]);
	}
	cr_assert_eq(nwaits, RQ_EVQ_LEARN / 4);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 4);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 4);
}

/*
 * The same when the task's request is the very one reqctx entered for the
 * event (asyncio often runs the earlier task of the request whose connection
 * is ready): the adapter's enter is what the task relied on, not reqctx's.
 */
Test(evq, an_adapter_entering_the_entered_context_leaves_the_window_open)
{
	int ep = new_ep(), fds[4];
	struct epoll_event ev[8];

	ready_set(ep, 4, fds);
	for (int i = 0; i < RQ_EVQ_LEARN; i++) {
		int n = rq_evq_wait(ep, ev, 8, &now);

		cr_assert_eq(n, 1, "call %d", i);
		rq_handle_enter(rq_handle_take()); /* the adapter enters the task's context */
		rq_evq_use();                      /* the task's log line */
		rq_evq_touch(fds[ev[0].data.u64 - 1]);
		rq_fd_enter(fds[ev[0].data.u64 - 1]);
	}
	cr_assert_eq(nwaits, RQ_EVQ_LEARN / 4);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 4);
}

/*
 * The earlier task also writes its own connection before the callback runs:
 * that I/O is the task's, and the watch waits for the callback's own read.
 */
Test(evq, after_an_adapter_enter_a_tasks_io_elsewhere_leaves_the_window_open)
{
	int ep = new_ep(), fds[4], task = ready_fd("the task's request");
	struct epoll_event ev[8];

	ready_set(ep, 4, fds);
	for (int i = 0; i < RQ_EVQ_LEARN; i++) {
		int n = rq_evq_wait(ep, ev, 8, &now);

		cr_assert_eq(n, 1, "call %d", i);
		enter_ctx("a task's request");
		rq_evq_api();       /* the adapter entered it */
		rq_evq_use();       /* the task's log line */
		rq_evq_touch(task); /* the task's response write */
		rq_fd_enter(task);
		rq_evq_touch(fds[ev[0].data.u64 - 1]); /* then the I/O callback reads its fd */
		rq_fd_enter(fds[ev[0].data.u64 - 1]);
	}
	cr_assert_eq(nwaits, RQ_EVQ_LEARN / 4);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 4);
}

Test(evq, a_use_followed_by_io_that_keeps_the_entered_context_keeps_the_loop_split)
{
	int ep = new_ep(), fd = ready_fd("r"), same = -1, p[2];
	struct epoll_event ev[8];

	add(ep, fd, EPOLLIN, 1);
	add(ep, ready_fd("s"), EPOLLIN, 2);
	cr_assert_eq(pipe(p), 0);
	enter_ctx("before");
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
	/* Another fd of the same request: a carrier holding the entered context. */
	rq_carry_new(p[0], -1);
	same = p[0];
	rq_evq_use();
	rq_evq_touch(same);
	rq_fd_enter(same);
	rq_evq_use(); /* settles: the entered context is still current */
	touch_first(ep, 2 * RQ_EVQ_LEARN);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
}

Test(evq, a_use_and_then_no_io_before_the_next_wait_keeps_the_loop_split)
{
	int ep = new_ep(), fds[2];
	struct epoll_event ev[8];

	ready_set(ep, 2, fds);
	enter_ctx("before");
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
	rq_evq_use();
	touch_first(ep, 2 * RQ_EVQ_LEARN);
	cr_assert_eq(rq_evq_wait(ep, ev, 8, &now), 1);
}
