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
