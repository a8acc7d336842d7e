/*
 * reqctx-demo: a small HTTP/1.1 server that logs like the seed's
 * request-id.js, in four concurrency styles. It knows nothing about reqctx:
 * run it under LD_PRELOAD=libreqctx.so to see the request IDs appear.
 *
 * For every request it writes four lines to stderr, one fprintf() each:
 *
 *   incoming METHOD PATH
 *   nested start METHOD PATH          (after a 50 ms hop)
 *   nested end METHOD PATH            (after a further 10 ms hop)
 *   completed METHOD PATH in N ms     (after the response was written)
 *
 * and answers "ok" with a single write() of the whole response.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* Largest request head (request line + headers) accepted; larger gets 431. */
#define HEAD_MAX 16384
/* Longest method token accepted. */
#define METHOD_MAX 32
/* Number of worker threads in pool mode. */
#define POOL_WORKERS 4
/* First hop, then second hop, in milliseconds. */
#define HOP1_MS 50
#define HOP2_MS 10
/* How long a blocking-style response write may wait for the peer, in ms. */
#define WRITE_WAIT_MS 10000
/* Stack size of per-connection threads in threads mode. */
#define THREAD_STACK (256 * 1024)

static const char RESPONSE[] =
	"HTTP/1.1 200 OK\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 2\r\n"
	"\r\n"
	"ok";

/* Same, for an HTTP/1.0 client that asked to keep the connection open. */
static const char RESPONSE_KA10[] =
	"HTTP/1.1 200 OK\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 2\r\n"
	"Connection: keep-alive\r\n"
	"\r\n"
	"ok";

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum mode { MODE_EPOLL, MODE_THREADS, MODE_POOL, MODE_TIMER };

static const char *const mode_names[] = { "epoll", "threads", "pool", "timer" };

/* One parsed request. method and target point into line. */
struct req {
	char *method;
	char *target;
	bool keepalive;
	bool http10;
	struct timespec t0;	/* when parsing finished */
	char line[];
};

/* Incremental request reader over one connection's input bytes. */
enum { HIN_HEAD, HIN_BODY };

/* Results of hin_step(); positive values are HTTP error statuses. */
enum { HIN_MORE = 0, HIN_DONE = -1, HIN_CONTINUE = -2 };

struct hin {
	char buf[HEAD_MAX];
	size_t len;
	int state;
	uint64_t body_left;
	struct req *pending;	/* head parsed, body still being read */
};

enum handle_kind { H_LISTEN, H_SIGNAL, H_CONN, H_TIMERFD };

struct handle {
	enum handle_kind kind;
	struct conn *c;
};

struct conn {
	struct handle h_sock;
	struct handle h_timer;
	int fd;
	struct req *req;	/* request being served, or NULL */
	int tfd;		/* epoll mode: the hop's timerfd, or -1 */
	int hop;		/* epoll/timer: 1 during the first hop, 2 during the second */
	timer_t timers[2];	/* timer mode: POSIX timers of the current request */
	int ntimers;
	bool want_close;	/* pool/timer: the event loop must close it */
	unsigned handoff;	/* pool/timer: bumped when a thread hands c back to the loop */
	const char *out;	/* epoll mode: unsent rest of the response */
	size_t outlen;
	struct conn *next;	/* pool queue link */
	struct hin in;
};

static enum mode g_mode = MODE_EPOLL;
static int g_ep = -1;
static int g_listen = -1;
static int g_sigfd = -1;
static int g_spare = -1;	/* reserve fd, freed to shed connections on EMFILE */

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct conn *q_head, *q_tail;

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000L + (now.tv_nsec - t0->tv_nsec) / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void log_incoming(const struct req *r)
{
	fprintf(stderr, "incoming %s %s\n", r->method, r->target);
}

static void log_nested_start(const struct req *r)
{
	fprintf(stderr, "nested start %s %s\n", r->method, r->target);
}

static void log_nested_end(const struct req *r)
{
	fprintf(stderr, "nested end %s %s\n", r->method, r->target);
}

static void log_completed(const struct req *r)
{
	fprintf(stderr, "completed %s %s in %ld ms\n", r->method, r->target, ms_since(&r->t0));
}

/* ---- request parsing ---------------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static void consume(struct hin *h, size_t n)
{
	memmove(h->buf, h->buf + n, h->len - n);
	h->len -= n;
}

/* Trims optional whitespace around [*s, *e). */
static void trim(const char **s, const char **e)
{
	while (*s < *e && (**s == ' ' || **s == '\t'))
		(*s)++;
	while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r'))
		(*e)--;
}

/* Returns 1 if the comma-separated list [s, e) holds `tok` (case-insensitive). */
static int list_has(const char *s, const char *e, const char *tok)
{
	size_t tl = strlen(tok);

	while (s < e) {
		const char *c = memchr(s, ',', (size_t)(e - s));
		const char *ie = c ? c : e, *is = s;

		trim(&is, &ie);
		if ((size_t)(ie - is) == tl && strncasecmp(is, tok, tl) == 0)
			return 1;
		s = c ? c + 1 : e;
	}
	return 0;
}

static bool name_is(const char *s, size_t n, const char *name)
{
	return n == strlen(name) && strncasecmp(s, name, n) == 0;
}

/*
 * Parses the request head h->buf[0, len), which ends with its blank line.
 * On success stores a new request in *out, the body length in *clen and
 * whether the client waits for "100 Continue" in *expect; returns 0.
 * Returns an HTTP error status otherwise.
 */
static int parse_head(const char *p, size_t len, struct req **out, uint64_t *clen, bool *expect)
{
	const char *end = p + len, *eol = memchr(p, '\n', len);
	const char *sp1, *sp2, *le;
	bool have_cl = false, ka = false, want_close = false, chunked = false;
	uint64_t cl = 0;
	struct req *r;

	le = eol;
	if (le > p && le[-1] == '\r')
		le--;
	sp1 = memchr(p, ' ', (size_t)(le - p));
	if (!sp1 || sp1 == p || sp1 - p > METHOD_MAX)
		return 400;
	for (const char *q = p; q < sp1; q++)
		if (!is_tchar((unsigned char)*q))
			return 400;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || le - sp2 != 9 || memcmp(sp2 + 1, "HTTP/", 5) != 0)
		return 400;
	for (const char *q = sp1 + 1; q < sp2; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			return 400;
	if (sp2[6] != '1' || sp2[7] != '.')
		return (sp2[6] >= '2' && sp2[6] <= '9') ? 505 : 400;
	if (sp2[8] < '0' || sp2[8] > '9')
		return 400;
	*expect = false;

	for (const char *l = eol + 1; l < end;) {
		const char *nl = memchr(l, '\n', (size_t)(end - l)), *colon, *vs, *ve;

		if (!nl)
			break;
		ve = nl;
		if (ve > l && ve[-1] == '\r')
			ve--;
		if (ve == l)
			break;	/* the blank line */
		colon = memchr(l, ':', (size_t)(ve - l));
		if (!colon || colon == l)
			return 400;
		for (const char *q = l; q < colon; q++)
			if (!is_tchar((unsigned char)*q))
				return 400;
		vs = colon + 1;
		trim(&vs, &ve);
		if (name_is(l, (size_t)(colon - l), "Content-Length")) {
			uint64_t v = 0;

			if (vs == ve)
				return 400;
			for (const char *q = vs; q < ve; q++) {
				if (*q < '0' || *q > '9' || v > (UINT64_MAX - 9) / 10)
					return 400;
				v = v * 10 + (uint64_t)(*q - '0');
			}
			if (have_cl && v != cl)
				return 400;
			have_cl = true;
			cl = v;
		} else if (name_is(l, (size_t)(colon - l), "Transfer-Encoding")) {
			chunked = true;
		} else if (name_is(l, (size_t)(colon - l), "Connection")) {
			ka |= list_has(vs, ve, "keep-alive");
			want_close |= list_has(vs, ve, "close");
		} else if (name_is(l, (size_t)(colon - l), "Expect")) {
			*expect = list_has(vs, ve, "100-continue");
		}
		l = nl + 1;
	}
	if (chunked)
		return 411;	/* chunked request bodies are not decoded */

	r = malloc(sizeof(*r) + (size_t)(sp2 - p) + 1);
	if (!r)
		return 503;
	memcpy(r->line, p, (size_t)(sp2 - p));
	r->line[sp2 - p] = '\0';
	r->line[sp1 - p] = '\0';
	r->method = r->line;
	r->target = r->line + (sp1 - p) + 1;
	r->http10 = sp2[8] == '0';
	r->keepalive = r->http10 ? (ka && !want_close) : !want_close;
	if (r->http10)
		*expect = false;
	*out = r;
	*clen = cl;
	return 0;
}

/* Returns the length of the head at the start of h (blank line included), or 0. */
static size_t head_len(const struct hin *h)
{
	for (size_t i = 0; i < h->len; i++) {
		if (h->buf[i] != '\n')
			continue;
		if (i + 1 < h->len && h->buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < h->len && h->buf[i + 1] == '\r' && h->buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/*
 * Advances the reader over the bytes in h->buf. Returns HIN_DONE with the
 * complete request (head parsed, body consumed) in *out; HIN_CONTINUE once
 * after a head whose client waits for "100 Continue" (send it, then call
 * again); HIN_MORE when more input is needed; or an HTTP error status, after
 * which the connection must be closed.
 */
static int hin_step(struct hin *h, struct req **out)
{
	for (;;) {
		if (h->state == HIN_BODY) {
			size_t n = h->len < h->body_left ? h->len : (size_t)h->body_left;

			consume(h, n);
			h->body_left -= n;
			if (h->body_left)
				return HIN_MORE;
			h->state = HIN_HEAD;
			*out = h->pending;
			h->pending = NULL;
			clock_gettime(CLOCK_MONOTONIC, &(*out)->t0);
			return HIN_DONE;
		}

		size_t skip = 0, hl;
		uint64_t clen;
		bool expect;
		int st;

		while (skip < h->len && (h->buf[skip] == '\r' || h->buf[skip] == '\n'))
			skip++;
		consume(h, skip);
		hl = head_len(h);
		if (!hl)
			return h->len >= sizeof(h->buf) ? 431 : HIN_MORE;
		st = parse_head(h->buf, hl, &h->pending, &clen, &expect);
		if (st)
			return st;
		consume(h, hl);
		h->state = HIN_BODY;
		h->body_left = clen;
		if (expect && clen > h->len)
			return HIN_CONTINUE;
	}
}

static void hin_reset(struct hin *h)
{
	free(h->pending);
	h->pending = NULL;
}

/* ---- socket helpers ----------------------------------------------------- */

/*
 * Writes all of buf, waiting with poll() when the socket is full. Returns 0,
 * or -errno (-ETIMEDOUT after WRITE_WAIT_MS without progress).
 */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int r = poll(&pfd, 1, WRITE_WAIT_MS);

			if (r < 0 && errno != EINTR)
				return -errno;
			if (r == 0)
				return -ETIMEDOUT;
			continue;
		}
		return n < 0 ? -errno : -EIO;
	}
	return 0;
}

static const char *reason(int st)
{
	switch (st) {
	case 400: return "Bad Request";
	case 411: return "Length Required";
	case 431: return "Request Header Fields Too Large";
	case 505: return "HTTP Version Not Supported";
	default: return "Service Unavailable";
	}
}

/* Sends a short error response (best effort) and shuts down our side. */
static void send_error(int fd, int st)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s\n",
			 st, reason(st), strlen(reason(st)) + 1, reason(st));

	if (write(fd, buf, (size_t)n) < 0) {
		/* The peer is gone; nothing more to tell it. */
	}
	shutdown(fd, SHUT_WR);
}

static const char *response_for(const struct req *r, size_t *len)
{
	if (r->http10 && r->keepalive) {
		*len = sizeof(RESPONSE_KA10) - 1;
		return RESPONSE_KA10;
	}
	*len = sizeof(RESPONSE) - 1;
	return RESPONSE;
}

/* ---- the event loop (epoll, pool and timer modes) ------------------------ */

static struct conn *conn_new(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->tfd = -1;
	c->h_sock.kind = H_CONN;
	c->h_sock.c = c;
	c->h_timer.kind = H_TIMERFD;
	c->h_timer.c = c;
	return c;
}

static void conn_drop_timers(struct conn *c)
{
	while (c->ntimers > 0)
		timer_delete(c->timers[--c->ntimers]);
}

static void conn_close(struct conn *c)
{
	epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->tfd >= 0) {
		epoll_ctl(g_ep, EPOLL_CTL_DEL, c->tfd, NULL);
		close(c->tfd);
	}
	conn_drop_timers(c);
	hin_reset(&c->in);
	free(c->req);
	free(c);
}

/*
 * Re-enables events on c (connections are registered EPOLLONESHOT, so only
 * one thread at a time ever owns one). After this the caller must not touch c.
 */
static int conn_arm(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events | EPOLLONESHOT | EPOLLRDHUP, .data.ptr = &c->h_sock };

	return epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_request(struct conn *c, struct req *r);

/*
 * Reads and parses c's input until a request is complete (then starts it),
 * more input must be waited for (then re-arms c), or c is finished (then
 * closes it). Runs on the event loop thread only.
 */
static void drive(struct conn *c)
{
	for (;;) {
		struct req *r = NULL;
		int st = hin_step(&c->in, &r);
		ssize_t n;

		if (st == HIN_DONE) {
			start_request(c, r);
			return;
		}
		if (st == HIN_CONTINUE) {
			if (write(c->fd, CONTINUE, sizeof(CONTINUE) - 1) != (ssize_t)sizeof(CONTINUE) - 1)
				goto fail_close;
			continue;
		}
		if (st > 0) {
			send_error(c->fd, st);
			goto fail_close;
		}
		n = read(c->fd, c->in.buf + c->in.len, sizeof(c->in.buf) - c->in.len);
		if (n > 0) {
			c->in.len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (conn_arm(c, EPOLLIN) < 0)
				goto fail_close;
			return;
		}
		goto fail_close;	/* EOF or a socket error */
	}
fail_close:
	conn_close(c);
}

/* Ends c's current request once its response is out. */
static void finish_request_epoll(struct conn *c)
{
	bool ka = c->req->keepalive;

	log_completed(c->req);
	free(c->req);
	c->req = NULL;
	if (ka)
		drive(c);
	else
		conn_close(c);
}

static int arm_timerfd(struct conn *c, int ms)
{
	struct itimerspec its = { .it_value = { 0, ms * 1000000L } };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->h_timer };
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (tfd < 0)
		return -errno;
	if (timerfd_settime(tfd, 0, &its, NULL) < 0 || epoll_ctl(g_ep, EPOLL_CTL_ADD, tfd, &ev) < 0) {
		int err = -errno;

		close(tfd);
		return err;
	}
	c->tfd = tfd;
	return 0;
}

/* Epoll mode: a hop's timerfd fired. */
static void on_timerfd(struct conn *c)
{
	uint64_t exp;
	size_t len;
	const char *resp;
	ssize_t n;

	if (read(c->tfd, &exp, sizeof(exp)) < 0 && errno == EAGAIN)
		return;
	epoll_ctl(g_ep, EPOLL_CTL_DEL, c->tfd, NULL);
	close(c->tfd);
	c->tfd = -1;
	if (c->hop == 1) {
		log_nested_start(c->req);
		c->hop = 2;
		if (arm_timerfd(c, HOP2_MS) < 0) {
			send_error(c->fd, 503);
			conn_close(c);
		}
		return;
	}
	log_nested_end(c->req);
	resp = response_for(c->req, &len);
	n = write(c->fd, resp, len);
	if (n == (ssize_t)len) {
		finish_request_epoll(c);
		return;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		conn_close(c);	/* the client went away */
		return;
	}
	c->out = resp + (n > 0 ? n : 0);
	c->outlen = len - (size_t)(n > 0 ? n : 0);
	if (conn_arm(c, EPOLLOUT) < 0)
		conn_close(c);
}

/* Epoll mode: continues a partial response write. */
static void flush_out(struct conn *c)
{
	while (c->outlen) {
		ssize_t n = write(c->fd, c->out, c->outlen);

		if (n > 0) {
			c->out += n;
			c->outlen -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			if (conn_arm(c, EPOLLOUT) < 0)
				conn_close(c);
			return;
		} else {
			conn_close(c);
			return;
		}
	}
	finish_request_epoll(c);
}

/*
 * Pool and timer modes: the thread that wrote a response hands c back to the
 * event loop, which closes it or parses its next request.
 */
static void respond_and_release(struct conn *c)
{
	size_t len;
	const char *resp = response_for(c->req, &len);
	bool ka = c->req->keepalive;

	if (write_all(c->fd, resp, len) == 0)
		log_completed(c->req);
	else
		ka = false;
	free(c->req);
	c->req = NULL;
	c->want_close = !ka;
	/* epoll_ctl orders this in practice; the atomic makes it explicit (and TSan-visible). */
	__atomic_fetch_add(&c->handoff, 1, __ATOMIC_RELEASE);
	if (conn_arm(c, EPOLLIN | EPOLLOUT) < 0) {
		/* Cannot happen while c->fd is registered; nothing sane to do. */
		fprintf(stderr, "reqctx-demo: epoll_ctl: %s\n", strerror(errno));
	}
}

static void timer_hop2(union sigval sv)
{
	struct conn *c = sv.sival_ptr;

	log_nested_end(c->req);
	respond_and_release(c);
}

static int arm_posix_timer(struct conn *c, void (*fn)(union sigval), int ms)
{
	struct sigevent sev = {
		.sigev_notify = SIGEV_THREAD,
		.sigev_value.sival_ptr = c,
		.sigev_notify_function = fn,
	};
	struct itimerspec its = { .it_value = { 0, ms * 1000000L } };
	timer_t t;

	if (timer_create(CLOCK_MONOTONIC, &sev, &t) < 0)
		return -errno;
	c->timers[c->ntimers++] = t;
	if (timer_settime(t, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

static void timer_hop1(union sigval sv)
{
	struct conn *c = sv.sival_ptr;

	log_nested_start(c->req);
	if (arm_posix_timer(c, timer_hop2, HOP2_MS) < 0) {
		/* Skip the hop rather than leave the client hanging. */
		timer_hop2(sv);
	}
}

static void start_request(struct conn *c, struct req *r)
{
	c->req = r;
	switch (g_mode) {
	case MODE_EPOLL:
		log_incoming(r);
		c->hop = 1;
		if (arm_timerfd(c, HOP1_MS) < 0) {
			send_error(c->fd, 503);
			conn_close(c);
		}
		break;
	case MODE_TIMER:
		log_incoming(r);
		conn_drop_timers(c);
		if (arm_posix_timer(c, timer_hop1, HOP1_MS) < 0) {
			send_error(c->fd, 503);
			conn_close(c);
		}
		break;
	case MODE_POOL:
		pthread_mutex_lock(&q_lock);
		c->next = NULL;
		if (q_tail)
			q_tail->next = c;
		else
			q_head = c;
		q_tail = c;
		pthread_cond_signal(&q_cond);
		pthread_mutex_unlock(&q_lock);
		break;
	case MODE_THREADS:
		break;	/* served by conn_thread() */
	}
}

static void *pool_worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct conn *c;

		pthread_mutex_lock(&q_lock);
		while (!q_head)
			pthread_cond_wait(&q_cond, &q_lock);
		c = q_head;
		q_head = c->next;
		if (!q_head)
			q_tail = NULL;
		pthread_mutex_unlock(&q_lock);

		log_incoming(c->req);
		sleep_ms(HOP1_MS);
		log_nested_start(c->req);
		sleep_ms(HOP2_MS);
		log_nested_end(c->req);
		respond_and_release(c);
	}
	return NULL;
}

/* Sheds one pending connection when out of descriptors, so accept stops firing. */
static void shed_one(void)
{
	int fd;

	if (g_spare < 0)
		return;
	close(g_spare);
	fd = accept(g_listen, NULL, NULL);
	if (fd >= 0)
		close(fd);
	g_spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_accept(void)
{
	for (;;) {
		int fd = accept4(g_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;
		struct epoll_event ev;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				shed_one();
			return;
		}
		c = conn_new(fd);
		ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
		ev.data.ptr = c ? &c->h_sock : NULL;
		if (!c || epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			close(fd);
		}
	}
}

static void on_conn(struct conn *c)
{
	(void)__atomic_load_n(&c->handoff, __ATOMIC_ACQUIRE);
	if (c->outlen) {
		flush_out(c);
		return;
	}
	conn_drop_timers(c);
	if (c->want_close) {
		conn_close(c);
		return;
	}
	drive(c);
}

static int epoll_add(int fd, struct handle *h)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = h };

	return epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
}

/* Runs the event loop until SIGINT or SIGTERM. Returns 0, or 1 on failure. */
static int run_event_loop(void)
{
	static struct handle h_listen = { H_LISTEN, NULL }, h_signal = { H_SIGNAL, NULL };
	struct epoll_event evs[256];

	g_ep = epoll_create1(EPOLL_CLOEXEC);
	if (g_ep < 0 || epoll_add(g_listen, &h_listen) < 0 || epoll_add(g_sigfd, &h_signal) < 0) {
		perror("reqctx-demo: epoll");
		return 1;
	}
	if (g_mode == MODE_POOL) {
		for (int i = 0; i < POOL_WORKERS; i++) {
			pthread_t t;

			if (pthread_create(&t, NULL, pool_worker, NULL) != 0) {
				fprintf(stderr, "reqctx-demo: cannot start worker threads\n");
				return 1;
			}
		}
	}
	for (;;) {
		int n = epoll_wait(g_ep, evs, sizeof(evs) / sizeof(evs[0]), -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("reqctx-demo: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct handle *h = evs[i].data.ptr;

			switch (h->kind) {
			case H_LISTEN:
				on_accept();
				break;
			case H_SIGNAL:
				return 0;
			case H_CONN:
				on_conn(h->c);
				break;
			case H_TIMERFD:
				on_timerfd(h->c);
				break;
			}
		}
	}
}

/* ---- threads mode ------------------------------------------------------- */

/* Serves one blocking connection until it ends. */
static void *conn_thread(void *arg)
{
	struct conn *c = arg;

	for (;;) {
		struct req *r = NULL;
		int st = hin_step(&c->in, &r);
		ssize_t n;

		if (st == HIN_DONE) {
			size_t len;
			const char *resp = response_for(r, &len);
			bool ka = r->keepalive;

			log_incoming(r);
			sleep_ms(HOP1_MS);
			log_nested_start(r);
			sleep_ms(HOP2_MS);
			log_nested_end(r);
			if (write_all(c->fd, resp, len) < 0) {
				free(r);
				break;
			}
			log_completed(r);
			free(r);
			if (!ka)
				break;
			continue;
		}
		if (st == HIN_CONTINUE) {
			if (write_all(c->fd, CONTINUE, sizeof(CONTINUE) - 1) < 0)
				break;
			continue;
		}
		if (st > 0) {
			send_error(c->fd, st);
			break;
		}
		n = read(c->fd, c->in.buf + c->in.len, sizeof(c->in.buf) - c->in.len);
		if (n > 0)
			c->in.len += (size_t)n;
		else if (!(n < 0 && errno == EINTR))
			break;
	}
	close(c->fd);
	hin_reset(&c->in);
	free(c);
	return NULL;
}

static int run_threads(void)
{
	pthread_attr_t attr;
	struct pollfd pfd[2] = { { .fd = g_listen, .events = POLLIN }, { .fd = g_sigfd, .events = POLLIN } };

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("reqctx-demo: poll");
			return 1;
		}
		if (pfd[1].revents)
			return 0;
		for (;;) {
			int fd = accept4(g_listen, NULL, NULL, SOCK_CLOEXEC);
			struct conn *c;
			pthread_t t;

			if (fd < 0) {
				if (errno == EMFILE || errno == ENFILE)
					shed_one();
				break;
			}
			c = conn_new(fd);
			if (!c || pthread_create(&t, &attr, conn_thread, c) != 0) {
				free(c);
				close(fd);
			}
		}
	}
}

/* ---- start-up ----------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: reqctx-demo [--port N] [--mode epoll|threads|pool|timer] [--help]\n"
		"\n"
		"A small HTTP/1.1 server on 127.0.0.1 (default port 3000; 0 picks a free\n"
		"port). It prints 'listening on http://127.0.0.1:PORT' when ready, answers\n"
		"every request with 200 \"ok\", and logs four lines per request to stderr:\n"
		"  incoming METHOD PATH\n"
		"  nested start METHOD PATH        (after a 50 ms hop)\n"
		"  nested end METHOD PATH          (after a further 10 ms hop)\n"
		"  completed METHOD PATH in N ms   (after the response was written)\n"
		"\n"
		"Modes:\n"
		"  epoll    one thread, one epoll loop; each hop is a timerfd (default)\n"
		"  threads  one thread per connection; hops are nanosleep()\n"
		"  pool     an epoll thread reads and parses; 4 workers log, sleep and reply\n"
		"  timer    epoll loop; hops are POSIX timers (SIGEV_THREAD) whose callbacks\n"
		"           log, and the last one writes the response\n"
		"\n"
		"HTTP: keep-alive and pipelining; Connection: close and HTTP/1.0 without\n"
		"keep-alive close after the response (an HTTP/1.0 keep-alive request gets\n"
		"Connection: keep-alive). Content-Length bodies are read and\n"
		"ignored; Expect: 100-continue is answered. Chunked request bodies are not\n"
		"decoded: they get 411 and the connection is closed. A request head over\n"
		"%d bytes gets 431. Runs until SIGINT or SIGTERM, then exits 0.\n",
		HEAD_MAX);
}

static int parse_args(int argc, char **argv, int *port)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "p:m:h", opts, NULL)) != -1) {
		char *end;
		long v;
		size_t i;

		switch (o) {
		case 'p':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 0 || v > 65535) {
				fprintf(stderr, "reqctx-demo: bad port '%s'\n", optarg);
				return 2;
			}
			*port = (int)v;
			break;
		case 'm':
			for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
				if (strcmp(optarg, mode_names[i]) == 0)
					break;
			if (i == sizeof(mode_names) / sizeof(mode_names[0])) {
				fprintf(stderr, "reqctx-demo: unknown mode '%s'\n", optarg);
				return 2;
			}
			g_mode = (enum mode)i;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	return 0;
}

/* Opens the listening socket on 127.0.0.1:port; returns the bound port or -1. */
static int open_listener(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t sl = sizeof(sa);
	int one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_listen = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (g_listen < 0)
		return -1;
	setsockopt(g_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(g_listen, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(g_listen, 4096) < 0 ||
	    getsockname(g_listen, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	return ntohs(sa.sin_port);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	int port = 3000, rc;
	sigset_t set;

	rc = parse_args(argc, argv, &port);
	if (rc)
		return rc < 0 ? 0 : rc;

	signal(SIGPIPE, SIG_IGN);
	/* Blocked before any thread exists, so only the signalfd sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (g_sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		perror("reqctx-demo: signalfd");
		return 1;
	}
	raise_fd_limit();
	g_spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

	port = open_listener(port);
	if (port < 0) {
		perror("reqctx-demo: listen");
		return 1;
	}
	printf("listening on http://127.0.0.1:%d\n", port);
	fflush(stdout);

	rc = g_mode == MODE_THREADS ? run_threads() : run_event_loop();
	fflush(NULL);
	if (g_mode != MODE_EPOLL)
		exit(rc);	/* other threads may still be serving; end them all */
	return rc;
}
