/*
 * loadcheck: drives an HTTP server with many concurrent keep-alive
 * connections, then checks that every log line mentioning a request carries
 * that request's ID in its prefix.
 *
 * Every request gets a unique token in its URL ("tk<run>n<index>z", fixed
 * width), and a share of them carry a unique client X-Request-Id. The ID a
 * request should be logged with is the client's one when it sent one, else
 * the X-Request-Id the response echoed. After the run, each line of each
 * --log file that holds a token is classified against that request's ID.
 *
 * Prints one summary line to stdout:
 *   requests=N lines=L ok=.. wrong=.. unknown=.. unprefixed=.. unlogged=..
 *   miscounted=.. no_echo=.. echo_mismatch=.. failed=..
 * Exit status: 0 if only ok lines and no bad request, 1 otherwise, 2 on a
 * usage error or when the --echo-ids file cannot be written.
 *
 * --format json|logfmt (default prefix) reads the ID from another format:
 * each line that names a request must then be, whole, a valid JSON object
 * (RFC 8259, parsed strictly) with the --field (request_id) as a top-level
 * key whose value is a string, or a valid logfmt line (key=value pairs, a
 * value bare or a quoted string with backslash escapes) with that key; a
 * line that is not is counted as unprefixed.
 *
 * --echo-ids FILE also writes the ID echoed to every request that sent none
 * of its own, one per line in request order, so that a caller can check the
 * generated IDs (for instance that none repeats across a server's workers).
 *
 * --token-header NAME sends each request's token in header NAME instead of
 * its URL, which is then the --path-prefix alone: every request has the same
 * request line, and the server's log names the token through that header.
 *
 * --stop PID:SIG sends signal SIG to PID once every request is answered and
 * --settle-ms have passed, and waits (up to --timeout-ms) until PID has
 * exited before reading the logs: a server that buffers its log writes what
 * it holds when it stops.
 *
 * --tls speaks HTTPS: each connection is an OpenSSL client (no certificate
 * check: the suites' servers use self-signed ones), keep-alive as over TCP.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* Largest response head accepted. */
#define HEAD_MAX 65536
/* Longest echoed ID kept (longer ones are truncated and thus mismatch). */
#define ECHO_MAX 256
/* Longest valid request ID. */
#define ID_MAX 128
/* Bad items reported per category on stderr. */
#define DIAG_MAX 5
/* Distinct tokens looked at in one log line. */
#define LINE_TOKENS 8
/* Digits of the request index in a token. */
#define TOKEN_DIGITS 8
#define MAX_REQUESTS 99999999L
#define MAX_LOGS 64

enum cat { C_WRONG, C_UNKNOWN, C_UNPREFIXED, C_UNLOGGED, C_MISCOUNTED, C_NO_ECHO, C_ECHO_MISMATCH, C_FAILED, C_N };

static const char *const cat_names[C_N] = {
	"wrong", "unknown", "unprefixed", "unlogged", "miscounted", "no_echo", "echo_mismatch", "failed",
};

/* One request's outcome. */
struct rq {
	char *echo;	/* the response's X-Request-Id, or NULL */
	uint32_t nlines;
	bool has_cid;
	bool done;	/* response received or failure recorded */
	bool failed;
	bool retried;	/* resent once after a reused connection closed under it */
};

enum cstate { S_FREE, S_CONNECTING, S_HANDSHAKE, S_SENDING, S_RECEIVING };

enum rstate { R_HEAD, R_BODY_CL, R_BODY_EOF, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_CRLF, R_TRAILER, R_DONE };

/* One client connection. */
struct conn {
	int fd;
	SSL *ssl;	/* --tls */
	enum cstate st;
	long req;	/* index of the request in flight, or -1 */
	char out[1024];
	size_t outlen, outoff;
	char *in;
	size_t inlen;
	enum rstate rs;
	uint64_t left;
	bool close_after;
	int status;
	bool reused;	/* a response already came back on this fd */
	size_t got;	/* response bytes received for the current request */
};

static struct {
	const char *host;
	const char *port;
	long requests;
	long conns;
	const char *logs[MAX_LOGS];
	int nlogs;
	long lines_per_request;	/* 0: not checked */
	double cid_share;
	const char *prefix_head;	/* text before %s in --prefix */
	const char *prefix_tail;	/* text after %s */
	const char *path_prefix;
	long timeout_ms;
	long settle_ms;
	const char *echo_ids;	/* file for the generated echoed IDs, or NULL */
	bool tls;
	int format;		/* 0 prefix, 1 json, 2 logfmt */
	const char *field;
	const char *token_header; /* the token goes in this header, not the URL */
	long stop_pid;		/* stopped with stop_sig before the logs are read (0: none) */
	int stop_sig;
} opt = {
	.field = "request_id",
	.host = "127.0.0.1", .cid_share = 0.5, .path_prefix = "/t/", .timeout_ms = 20000, .settle_ms = 300,
};

static struct rq *rqs;
static uint32_t nonce;
static long next_req, finished;
static int ep = -1;
static struct addrinfo *addr;
static char host_hdr[300];
static long counts[C_N];
static long n_ok, n_lines;
static SSL_CTX *tls_ctx;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Counts one bad item; the first few get a diagnostic line on stderr. */
static void bad(enum cat c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bad(enum cat c, const char *fmt, ...)
{
	va_list ap;

	if (counts[c]++ >= DIAG_MAX)
		return;
	fprintf(stderr, "loadcheck: %s: ", cat_names[c]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void token(long i, char *buf, size_t n)
{
	snprintf(buf, n, "tk%08xn%0*ldz", nonce, TOKEN_DIGITS, i % (MAX_REQUESTS + 1));
}

static void client_id(long i, char *buf, size_t n)
{
	snprintf(buf, n, "cid-%08lu-%08x", (unsigned long)i, nonce ^ 0x5a5a5a5au);
}

/* The ID request i should be logged with, or NULL if it cannot be known. */
static const char *expected_id(long i, char *buf, size_t n)
{
	if (rqs[i].has_cid) {
		client_id(i, buf, n);
		return buf;
	}
	return rqs[i].echo;
}

/* ---- the client --------------------------------------------------------- */

static void fail_req(struct conn *c, const char *why)
{
	char tk[32];

	if (c->req < 0)
		return;
	token(c->req, tk, sizeof(tk));
	rqs[c->req].failed = true;
	rqs[c->req].done = true;
	finished++;
	bad(C_FAILED, "request %s: %s", tk, why);
	c->req = -1;
}

static void conn_drop(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->st = S_FREE;
}

static int watch(struct conn *c, uint32_t events, int op)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(ep, op, c->fd, &ev);
}

static void build_request(struct conn *c, long i)
{
	char tk[32], cid[48];
	int n;

	token(i, tk, sizeof(tk));
	if (opt.token_header)
		n = snprintf(c->out, sizeof(c->out),
			     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadcheck\r\n%s: %s\r\n",
			     opt.path_prefix, host_hdr, opt.token_header, tk);
	else
		n = snprintf(c->out, sizeof(c->out),
			     "GET %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadcheck\r\n", opt.path_prefix,
			     tk, host_hdr);
	if (rqs[i].has_cid) {
		client_id(i, cid, sizeof(cid));
		n += snprintf(c->out + n, sizeof(c->out) - (size_t)n, "X-Request-Id: %s\r\n", cid);
	}
	n += snprintf(c->out + n, sizeof(c->out) - (size_t)n, "\r\n");
	c->outlen = (size_t)n;
	c->outoff = 0;
	c->inlen = 0;
	c->rs = R_HEAD;
	c->close_after = false;
	c->status = 0;
	c->got = 0;
}

/* Starts a non-blocking connect; returns 0 or -errno. */
static int conn_open(struct conn *c)
{
	int fd = socket(addr->ai_family, addr->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, addr->ai_protocol);

	if (fd < 0)
		return -errno;
	if (connect(fd, addr->ai_addr, addr->ai_addrlen) < 0 && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	c->fd = fd;
	c->st = S_CONNECTING;
	c->reused = false;
	if (watch(c, EPOLLOUT, EPOLL_CTL_ADD) < 0) {
		int err = -errno;

		conn_drop(c);
		return err;
	}
	return 0;
}

/* Gives c the next unsent request, connecting first if needed. */
static void conn_next(struct conn *c)
{
	while (next_req < opt.requests) {
		c->req = next_req++;
		build_request(c, c->req);
		if (c->fd >= 0) {
			c->st = S_SENDING;
			if (watch(c, EPOLLOUT, EPOLL_CTL_MOD) == 0)
				return;
			fail_req(c, strerror(errno));
			conn_drop(c);
			continue;
		}
		int err = conn_open(c);

		if (err == 0)
			return;
		fail_req(c, strerror(-err));
	}
	conn_drop(c);
}

/*
 * Ends c's connection after an I/O failure. A request that got no response
 * byte on a reused keep-alive connection (the server may have closed it while
 * idle) is resent once on a fresh one; anything else fails the request.
 */
static void conn_failed(struct conn *c, const char *why)
{
	long i = c->req;

	conn_drop(c);
	if (i >= 0 && c->reused && c->got == 0 && !rqs[i].retried) {
		int err;

		rqs[i].retried = true;
		build_request(c, i);
		err = conn_open(c);
		if (err == 0)
			return;
		why = strerror(-err);
	}
	fail_req(c, why);
	conn_next(c);
}

/* Finds the end of a line at s[0, n): returns its length with the newline, or 0. */
static size_t line_len(const char *s, size_t n)
{
	const char *nl = memchr(s, '\n', n);

	return nl ? (size_t)(nl - s) + 1 : 0;
}

static bool hdr_is(const char *l, size_t n, const char *name)
{
	size_t k = strlen(name);

	return n > k && l[k] == ':' && strncasecmp(l, name, k) == 0;
}

/* Returns the trimmed value of header line l (length n, newline excluded). */
static const char *hdr_val(const char *l, size_t n, size_t *vn)
{
	const char *s = memchr(l, ':', n) + 1, *e = l + n;

	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	*vn = (size_t)(e - s);
	return s;
}

static bool has_token(const char *s, size_t n, const char *tok)
{
	size_t k = strlen(tok);

	for (size_t i = 0; i + k <= n; i++)
		if (strncasecmp(s + i, tok, k) == 0 && (i == 0 || s[i - 1] == ',' || s[i - 1] == ' ') &&
		    (i + k == n || s[i + k] == ',' || s[i + k] == ' '))
			return true;
	return false;
}

/*
 * Parses a response head of hl bytes at c->in. Returns 0 and sets up body
 * reading, 1 for an interim (1xx) response to skip, or -1 if malformed.
 */
static int parse_head(struct conn *c, size_t hl)
{
	const char *p = c->in, *end = p + hl;
	size_t n = line_len(p, hl), vn;
	bool http10, chunked = false, have_cl = false, ka = false;
	uint64_t cl = 0;
	struct rq *r = &rqs[c->req];

	if (n < 13 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
		return -1;
	http10 = p[7] == '0';
	if (sscanf(p + 9, "%3d", &c->status) != 1)
		return -1;
	if (c->status >= 100 && c->status < 200)
		return 1;
	c->close_after = http10;
	for (p += n; p < end; p += n) {
		const char *v;

		n = line_len(p, (size_t)(end - p));
		if (n <= 2)
			break;
		if (!memchr(p, ':', n))
			return -1;
		v = hdr_val(p, n - 1, &vn);
		if (hdr_is(p, n, "X-Request-Id") && !r->echo) {
			if (vn > ECHO_MAX)
				vn = ECHO_MAX;
			r->echo = strndup(v, vn);
		} else if (hdr_is(p, n, "Content-Length")) {
			char *e;

			cl = strtoull(v, &e, 10);
			if (e != v + vn || vn == 0)
				return -1;
			have_cl = true;
		} else if (hdr_is(p, n, "Transfer-Encoding")) {
			chunked = has_token(v, vn, "chunked");
		} else if (hdr_is(p, n, "Connection")) {
			if (has_token(v, vn, "close"))
				c->close_after = true;
			ka |= has_token(v, vn, "keep-alive");
		}
	}
	if (http10 && ka)
		c->close_after = false;
	if (c->status == 204 || c->status == 304)
		c->rs = R_DONE;
	else if (chunked)
		c->rs = R_CHUNK_SIZE;
	else if (have_cl) {
		c->rs = cl ? R_BODY_CL : R_DONE;
		c->left = cl;
	} else {
		c->rs = R_BODY_EOF;
		c->close_after = true;
	}
	return 0;
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->inlen - n);
	c->inlen -= n;
}

/* Advances over c's buffered response bytes. Returns -1 on a protocol error. */
static int parse_response(struct conn *c)
{
	for (;;) {
		size_t n;

		switch (c->rs) {
		case R_HEAD: {
			size_t hl = 0;

			for (size_t i = 0; i < c->inlen && !hl; i++)
				if (c->in[i] == '\n' && i + 1 < c->inlen && c->in[i + 1] == '\n')
					hl = i + 2;
				else if (c->in[i] == '\n' && i + 2 < c->inlen && c->in[i + 1] == '\r' &&
					 c->in[i + 2] == '\n')
					hl = i + 3;
			if (!hl)
				return c->inlen >= HEAD_MAX ? -1 : 0;
			int st = parse_head(c, hl);

			if (st < 0)
				return -1;
			consume(c, hl);
			break;
		}
		case R_BODY_CL:
		case R_CHUNK_DATA:
		case R_BODY_EOF:
			n = c->inlen;
			if (c->rs != R_BODY_EOF && n > c->left)
				n = (size_t)c->left;
			consume(c, n);
			if (c->rs == R_BODY_EOF)
				return 0;
			c->left -= n;
			if (c->left)
				return 0;
			c->rs = c->rs == R_BODY_CL ? R_DONE : R_CHUNK_CRLF;
			break;
		case R_CHUNK_SIZE: {
			char *e;

			n = line_len(c->in, c->inlen);
			if (!n)
				return c->inlen >= HEAD_MAX ? -1 : 0;
			c->left = strtoull(c->in, &e, 16);
			if (e == c->in)
				return -1;
			consume(c, n);
			c->rs = c->left ? R_CHUNK_DATA : R_TRAILER;
			break;
		}
		case R_CHUNK_CRLF:
			n = line_len(c->in, c->inlen);
			if (!n)
				return c->inlen >= 2 ? -1 : 0;
			if (n > 2 || (n == 2 && c->in[0] != '\r'))
				return -1;
			consume(c, n);
			c->rs = R_CHUNK_SIZE;
			break;
		case R_TRAILER:
			n = line_len(c->in, c->inlen);
			if (!n)
				return c->inlen >= HEAD_MAX ? -1 : 0;
			consume(c, n);
			if (n <= 2)
				c->rs = R_DONE;
			break;
		case R_DONE:
			return 0;
		}
	}
}

/* Records c's finished response and moves c on to its next request. */
static void response_done(struct conn *c)
{
	struct rq *r = &rqs[c->req];

	if (c->status < 200 || c->status > 299) {
		char why[48];

		snprintf(why, sizeof(why), "status %d", c->status);
		fail_req(c, why);
	} else {
		r->done = true;
		finished++;
		c->req = -1;
	}
	c->reused = true;
	if (c->close_after || c->inlen)
		conn_drop(c);	/* the server closes, or sent more than asked for */
	conn_next(c);
}

/*
 * One read or write of the connection: the socket's, or OpenSSL's with --tls.
 * Returns what read(2)/write(2) would, with errno EAGAIN when OpenSSL wants
 * the socket readable (*want_in) or writable first.
 */
static ssize_t conn_io(struct conn *c, int writing, void *buf, size_t n, bool *want_in)
{
	int r, e;

	*want_in = !writing;
	if (!c->ssl)
		return writing ? write(c->fd, buf, n) : read(c->fd, buf, n);
	ERR_clear_error();
	r = writing ? SSL_write(c->ssl, buf, (int)n) : SSL_read(c->ssl, buf, (int)n);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*want_in = e == SSL_ERROR_WANT_READ;
		errno = EAGAIN;
		return -1;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
		return 0;
	if (e == SSL_ERROR_SSL)
		errno = EPROTO;
	return -1;
}

/* The TLS handshake, non-blocking: 1 when done, 0 to wait (watching what it wants), -1. */
static int handshake(struct conn *c)
{
	int r, e;

	if (!c->ssl) {
		if (!(c->ssl = SSL_new(tls_ctx)) || !SSL_set_fd(c->ssl, c->fd))
			return -1;
		SSL_set_connect_state(c->ssl);
	}
	ERR_clear_error();
	if ((r = SSL_do_handshake(c->ssl)) == 1)
		return 1;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return watch(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT, EPOLL_CTL_MOD) == 0 ? 0
												  : -1;
	return -1;
}

static void on_readable(struct conn *c)
{
	for (;;) {
		bool want_in;
		ssize_t n = conn_io(c, 0, c->in + c->inlen, HEAD_MAX - c->inlen, &want_in);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (!want_in)
				watch(c, EPOLLOUT, EPOLL_CTL_MOD);
			else
				watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
			return;
		}
		if (n <= 0) {
			if (n == 0 && c->rs == R_BODY_EOF) {
				c->rs = R_DONE;
				c->close_after = true;
				response_done(c);
				return;
			}
			conn_failed(c, n == 0 ? "connection closed by server" : strerror(errno));
			return;
		}
		c->inlen += (size_t)n;
		c->got += (size_t)n;
		if (parse_response(c) < 0) {
			fail_req(c, "malformed response");
			conn_drop(c);
			conn_next(c);
			return;
		}
		if (c->rs == R_DONE) {
			response_done(c);
			return;
		}
	}
}

static void on_event(struct conn *c, uint32_t events)
{
	if (c->st == S_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			fail_req(c, err ? strerror(err) : "connect failed");
			conn_drop(c);
			conn_next(c);
			return;
		}
		c->st = opt.tls ? S_HANDSHAKE : S_SENDING;
	}
	if (c->st == S_HANDSHAKE) {
		int h = handshake(c);

		if (h < 0) {
			fail_req(c, "TLS handshake failed");
			conn_drop(c);
			conn_next(c);
			return;
		}
		if (h == 0)
			return;
		c->st = S_SENDING;
	}
	if (c->st == S_SENDING) {
		while (c->outoff < c->outlen) {
			bool want_in;
			ssize_t n = conn_io(c, 1, c->out + c->outoff, c->outlen - c->outoff, &want_in);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				watch(c, want_in ? EPOLLIN : EPOLLOUT, EPOLL_CTL_MOD);
				return;
			}
			if (n <= 0) {
				conn_failed(c, strerror(errno));
				return;
			}
			c->outoff += (size_t)n;
		}
		c->st = S_RECEIVING;
		if (watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD) < 0) {
			fail_req(c, strerror(errno));
			conn_drop(c);
			conn_next(c);
		}
		return;
	}
	if (c->st == S_RECEIVING)
		on_readable(c);
}

/* Sends every request; returns when all are answered or failed, or at the deadline. */
static void run_client(struct conn *cs, long nc)
{
	long deadline = now_ms() + opt.timeout_ms;
	struct epoll_event evs[256];

	for (long i = 0; i < nc; i++)
		conn_next(&cs[i]);
	while (finished < opt.requests) {
		long left = deadline - now_ms();
		int n;

		if (left <= 0)
			break;
		n = epoll_wait(ep, evs, 256, (int)(left > 1000 ? 1000 : left));
		if (n < 0 && errno != EINTR) {
			perror("loadcheck: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
	}
	for (long i = 0; i < nc; i++) {
		fail_req(&cs[i], "timed out");
		conn_drop(&cs[i]);
	}
	for (; next_req < opt.requests; next_req++) {
		struct conn dummy = { .req = next_req };

		fail_req(&dummy, "not sent before the timeout");
	}
}

/* ---- the log check ------------------------------------------------------ */

static bool id_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("-_.:@+=/~", ch));
}

/*
 * Finds the request ID in the prefix of line. Returns its length and sets
 * *id, or returns 0 if the line does not start with a valid prefix.
 */
static size_t prefixed_id(const char *line, size_t len, const char **id)
{
	size_t hl = strlen(opt.prefix_head), tl = strlen(opt.prefix_tail), n = 0;
	const char *s = line + hl;

	if (len < hl || memcmp(line, opt.prefix_head, hl) != 0)
		return 0;
	while (hl + n < len && id_char((unsigned char)s[n]))
		n++;
	if (n == 0 || n > ID_MAX)
		return 0;
	if (tl && (hl + n + tl > len || memcmp(s + n, opt.prefix_tail, tl) != 0))
		return 0;
	*id = s;
	return n;
}

/* ---- strict JSON (RFC 8259) -------------------------------------------- */

struct jp {
	const char *p, *e;
};

static void j_ws(struct jp *j)
{
	while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
		j->p++;
}

static bool hexd(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string at j->p; *v, *n: its raw contents, *esc: whether it has escapes. */
static bool j_string(struct jp *j, const char **v, size_t *n, bool *esc)
{
	const char *start;

	if (j->p >= j->e || *j->p != '"')
		return false;
	start = ++j->p;
	*esc = false;
	while (j->p < j->e && *j->p != '"') {
		unsigned char c = (unsigned char)*j->p;

		if (c < 0x20)
			return false;
		if (c == '\\') {
			*esc = true;
			if (++j->p >= j->e)
				return false;
			if (*j->p == 'u') {
				if (j->e - j->p < 5 || !hexd(j->p[1]) || !hexd(j->p[2]) || !hexd(j->p[3]) ||
				    !hexd(j->p[4]))
					return false;
				j->p += 4;
			} else if (!strchr("\"\\/bfnrt", *j->p)) {
				return false;
			}
		}
		j->p++;
	}
	if (j->p >= j->e)
		return false;
	*v = start;
	*n = (size_t)(j->p - start);
	j->p++;
	return true;
}

static bool digits(struct jp *j)
{
	const char *s = j->p;

	while (j->p < j->e && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s;
}

static bool j_number(struct jp *j)
{
	if (j->p < j->e && *j->p == '-')
		j->p++;
	if (j->p < j->e && *j->p == '0')
		j->p++;
	else if (!digits(j))
		return false;
	if (j->p < j->e && *j->p == '.' && (j->p++, !digits(j)))
		return false;
	if (j->p < j->e && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->e && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!digits(j))
			return false;
	}
	return true;
}

static bool j_word(struct jp *j, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(j->e - j->p) < n || memcmp(j->p, w, n))
		return false;
	j->p += n;
	return true;
}

static bool j_value(struct jp *j, int depth, const char **id, size_t *idn);

/* An object; at depth 0, the --field's string value goes to *id. */
static bool j_object(struct jp *j, int depth, const char **id, size_t *idn)
{
	j->p++;
	j_ws(j);
	if (j->p < j->e && *j->p == '}')
		return j->p++, true;
	for (;;) {
		const char *k, *v;
		size_t kn, vn;
		bool esc, vesc;

		j_ws(j);
		if (!j_string(j, &k, &kn, &esc))
			return false;
		j_ws(j);
		if (j->p >= j->e || *j->p++ != ':')
			return false;
		j_ws(j);
		if (depth == 0 && !esc && kn == strlen(opt.field) && !memcmp(k, opt.field, kn) &&
		    j->p < j->e && *j->p == '"') {
			if (!j_string(j, &v, &vn, &vesc))
				return false;
			if (*id) /* a key twice */
				return false;
			*id = vesc ? "" : v; /* an escaped value is no ID */
			*idn = vesc ? 0 : vn;
		} else if (!j_value(j, depth + 1, id, idn)) {
			return false;
		}
		j_ws(j);
		if (j->p < j->e && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->e && *j->p == '}')
			return j->p++, true;
		return false;
	}
}

static bool j_value(struct jp *j, int depth, const char **id, size_t *idn)
{
	const char *v;
	size_t n;
	bool esc;

	if (depth > 64 || j->p >= j->e)
		return false;
	switch (*j->p) {
	case '{':
		return j_object(j, depth, id, idn);
	case '[':
		j->p++;
		j_ws(j);
		if (j->p < j->e && *j->p == ']')
			return j->p++, true;
		for (;;) {
			j_ws(j);
			if (!j_value(j, depth + 1, id, idn))
				return false;
			j_ws(j);
			if (j->p < j->e && *j->p == ',') {
				j->p++;
				continue;
			}
			if (j->p < j->e && *j->p == ']')
				return j->p++, true;
			return false;
		}
	case '"':
		return j_string(j, &v, &n, &esc);
	case 't':
		return j_word(j, "true");
	case 'f':
		return j_word(j, "false");
	case 'n':
		return j_word(j, "null");
	default:
		return j_number(j);
	}
}

/* The --field's value in line, a whole JSON object; 0 if the line is none or has no such string. */
static size_t json_id(const char *line, size_t len, const char **id)
{
	struct jp j = { line, line + len };
	size_t n = 0;

	*id = NULL;
	j_ws(&j);
	if (j.p >= j.e || *j.p != '{' || !j_object(&j, 0, id, &n))
		return 0;
	j_ws(&j);
	return j.p == j.e && *id ? n : 0;
}

/* The --field's value in line, a whole logfmt line; 0 if the line is none or lacks the key. */
static size_t logfmt_id(const char *line, size_t len, const char **id)
{
	const char *p = line, *e = line + len;
	size_t found = 0;

	while (p < e) {
		const char *k = p, *v;
		size_t kn, vn;

		while (p < e && (unsigned char)*p > ' ' && *p != '=' && *p != '"')
			p++;
		kn = (size_t)(p - k);
		if (!kn)
			return 0;
		v = p;
		vn = 0;
		if (p < e && *p == '=') {
			v = ++p;
			if (p < e && *p == '"') {
				bool esc = false;

				for (v = ++p; p < e && *p != '"'; p++) {
					if ((unsigned char)*p < 0x20)
						return 0;
					if (*p == '\\') {
						esc = true;
						if (++p == e)
							return 0;
					}
				}
				if (p == e)
					return 0;
				vn = esc ? 0 : (size_t)(p - v);
				p++;
			} else {
				while (p < e && (unsigned char)*p > ' ' && *p != '=' && *p != '"')
					p++;
				vn = (size_t)(p - v);
			}
		}
		if (p < e && *p != ' ')
			return 0;
		if (kn == strlen(opt.field) && !memcmp(k, opt.field, kn)) {
			if (found)
				return 0; /* a key twice */
			*id = v;
			found = vn ? vn : (size_t)-1;
		}
		while (p < e && *p == ' ')
			p++;
	}
	return found == (size_t)-1 ? 0 : found;
}

/* The request ID a log line names in the --format, 0 if none. */
static size_t line_id(const char *line, size_t len, const char **id)
{
	size_t n = opt.format == 1 ? json_id(line, len, id)
		   : opt.format == 2 ? logfmt_id(line, len, id)
		   : prefixed_id(line, len, id);

	if (n > ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!id_char((unsigned char)(*id)[i]))
			return 0;
	return n;
}

/* Collects the distinct request indexes whose token is in line; returns how many. */
static int find_tokens(const char *line, size_t len, long *idx)
{
	char head[16];
	size_t hl = (size_t)snprintf(head, sizeof(head), "tk%08xn", nonce);
	const char *p = line, *end = line + len;
	int k = 0;

	while (k < LINE_TOKENS && (p = memmem(p, (size_t)(end - p), head, hl)) != NULL) {
		const char *d = p + hl;
		long v = 0;
		int j;

		p += hl;
		if (end - d < TOKEN_DIGITS + 1)
			break;
		for (j = 0; j < TOKEN_DIGITS && d[j] >= '0' && d[j] <= '9'; j++)
			v = v * 10 + (d[j] - '0');
		if (j < TOKEN_DIGITS || d[j] != 'z' || v >= opt.requests)
			continue;
		for (j = 0; j < k && idx[j] != v; j++)
			;
		if (j == k)
			idx[k++] = v;
	}
	return k;
}

/* Longest part of a log line quoted in a diagnostic. */
#define QUOTE_MAX 400

static void check_line(const char *line, size_t len)
{
	int q = len > QUOTE_MAX ? QUOTE_MAX : (int)len;
	long idx[LINE_TOKENS];
	int k = find_tokens(line, len, idx);
	const char *id, *want;
	char buf[48];
	size_t idn;

	if (k == 0)
		return;
	n_lines++;
	for (int j = 0; j < k; j++)
		rqs[idx[j]].nlines++;
	want = expected_id(idx[0], buf, sizeof(buf));
	idn = line_id(line, len, &id);
	if (idn == 0)
		bad(C_UNPREFIXED, "expected %s: %.*s", want ? want : "(no echo)", q, line);
	else if (idn == strlen("unknown") && memcmp(id, "unknown", idn) == 0)
		bad(C_UNKNOWN, "expected %s: %.*s", want ? want : "(no echo)", q, line);
	else if (want && strlen(want) == idn && memcmp(id, want, idn) == 0)
		n_ok++;
	else
		bad(C_WRONG, "expected %s: %.*s", want ? want : "(no echo)", q, line);
}

/* Reads one log file line by line. Returns 0, or -1 if it cannot be read. */
static int check_log(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f) {
		fprintf(stderr, "loadcheck: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			n--;
		check_line(line, (size_t)n);
	}
	free(line);
	fclose(f);
	return 0;
}

static void check_requests(void)
{
	char tk[32], buf[48];

	for (long i = 0; i < opt.requests; i++) {
		struct rq *r = &rqs[i];

		if (r->failed)
			continue;
		token(i, tk, sizeof(tk));
		if (r->nlines == 0)
			bad(C_UNLOGGED, "request %s (id %s) is in no log line", tk,
			    expected_id(i, buf, sizeof(buf)) ? buf : "?");
		else if (opt.lines_per_request && r->nlines != opt.lines_per_request)
			bad(C_MISCOUNTED, "request %s is in %u log lines, expected %ld", tk, r->nlines,
			    opt.lines_per_request);
		if (r->has_cid) {
			client_id(i, buf, sizeof(buf));
			if (r->echo && strcmp(r->echo, buf) != 0)
				bad(C_ECHO_MISMATCH, "request %s sent id %s, response echoed %s", tk, buf,
				    r->echo);
		} else if (!r->echo) {
			bad(C_NO_ECHO, "request %s: response has no X-Request-Id", tk);
		}
	}
}

/*
 * Writes the echoed ID of each request that sent no ID of its own to
 * opt.echo_ids. Returns 0, or -1 if the file cannot be written.
 */
static int dump_echo_ids(void)
{
	FILE *f = fopen(opt.echo_ids, "w");
	int err;

	if (!f) {
		fprintf(stderr, "loadcheck: %s: %s\n", opt.echo_ids, strerror(errno));
		return -1;
	}
	for (long i = 0; i < opt.requests; i++)
		if (!rqs[i].has_cid && rqs[i].echo)
			fprintf(f, "%s\n", rqs[i].echo);
	err = ferror(f);
	if (fclose(f) != 0 || err) {
		fprintf(stderr, "loadcheck: %s: write failed\n", opt.echo_ids);
		return -1;
	}
	return 0;
}

/* 1 while process pid exists and has not exited (a zombie has). */
static bool alive(long pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (!(f = fopen(path, "r")))
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the state follows the command name */
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* Stops the server (--stop) and waits until it has exited. Returns 0, or -1 if it did not. */
static int stop_server(void)
{
	long end = now_ms() + opt.timeout_ms;

	if (kill((pid_t)opt.stop_pid, opt.stop_sig) < 0 && errno != ESRCH) {
		fprintf(stderr, "loadcheck: kill %ld: %s\n", opt.stop_pid, strerror(errno));
		return -1;
	}
	while (alive(opt.stop_pid)) {
		struct timespec ts = { 0, 10000000 };

		if (now_ms() > end) {
			fprintf(stderr, "loadcheck: %ld did not exit after signal %d\n", opt.stop_pid,
				opt.stop_sig);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* ---- start-up ----------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: loadcheck --port P [--host 127.0.0.1] --requests N --conns C\n"
		"                 --log FILE [--log FILE ...] [--lines-per-request K]\n"
		"                 [--client-id-share 0.5] [--prefix '[req:%%s] ']\n"
		"                 [--path-prefix /t/] [--timeout-ms 20000] [--settle-ms 300]\n"
		"                 [--echo-ids FILE] [--format prefix|json|logfmt]\n"
		"                 [--field request_id] [--token-header NAME] [--stop PID:SIG] [--tls]\n");
}

static int num(const char *s, long lo, long hi, long *out)
{
	char *e;
	long v;

	errno = 0;
	v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Splits the --prefix format at its single %s into head and tail. */
static int set_prefix(const char *fmt)
{
	static char head[256], tail[256];
	char *d = head;
	int seen = 0;

	for (const char *s = fmt; *s; s++) {
		if (d >= (seen ? tail : head) + sizeof(head) - 1)
			return -1;
		if (*s != '%') {
			*d++ = *s;
		} else if (s[1] == '%') {
			*d++ = '%';
			s++;
		} else if (s[1] == 's' && !seen) {
			*d = '\0';
			d = tail;
			seen = 1;
			s++;
		} else {
			return -1;
		}
	}
	*d = '\0';
	if (!seen)
		return -1;
	opt.prefix_head = head;
	opt.prefix_tail = tail;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'H' },
		{ "requests", required_argument, NULL, 'n' },
		{ "conns", required_argument, NULL, 'c' },
		{ "log", required_argument, NULL, 'l' },
		{ "lines-per-request", required_argument, NULL, 'k' },
		{ "client-id-share", required_argument, NULL, 's' },
		{ "prefix", required_argument, NULL, 'P' },
		{ "path-prefix", required_argument, NULL, 'x' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "settle-ms", required_argument, NULL, 'w' },
		{ "echo-ids", required_argument, NULL, 'e' },
		{ "tls", no_argument, NULL, 'T' },
		{ "format", required_argument, NULL, 'f' },
		{ "field", required_argument, NULL, 'F' },
		{ "token-header", required_argument, NULL, 'K' },
		{ "stop", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	long port = -1;
	int o;

	if (set_prefix("[req:%s] ") < 0)
		return -1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *e;
		int bad_arg = 0;

		switch (o) {
		case 'p': bad_arg = num(optarg, 1, 65535, &port); opt.port = optarg; break;
		case 'H': opt.host = optarg; break;
		case 'n': bad_arg = num(optarg, 1, MAX_REQUESTS, &opt.requests); break;
		case 'c': bad_arg = num(optarg, 1, 100000, &opt.conns); break;
		case 'l':
			if (opt.nlogs == MAX_LOGS)
				bad_arg = -1;
			else
				opt.logs[opt.nlogs++] = optarg;
			break;
		case 'k': bad_arg = num(optarg, 1, 1000000, &opt.lines_per_request); break;
		case 's':
			errno = 0;
			opt.cid_share = strtod(optarg, &e);
			bad_arg = errno || e == optarg || *e || !(opt.cid_share >= 0 && opt.cid_share <= 1);
			break;
		case 'P': bad_arg = set_prefix(optarg); break;
		case 'x':
			bad_arg = optarg[0] != '/' || strlen(optarg) > 512 || strpbrk(optarg, " \r\n");
			opt.path_prefix = optarg;
			break;
		case 't': bad_arg = num(optarg, 1, 86400000, &opt.timeout_ms); break;
		case 'w': bad_arg = num(optarg, 0, 600000, &opt.settle_ms); break;
		case 'e': opt.echo_ids = optarg; break;
		case 'T': opt.tls = true; break;
		case 'f':
			opt.format = !strcmp(optarg, "json") ? 1 : !strcmp(optarg, "logfmt") ? 2 : 0;
			bad_arg = !opt.format && strcmp(optarg, "prefix");
			break;
		case 'F': opt.field = optarg; bad_arg = !*optarg; break;
		case 'K':
			opt.token_header = optarg;
			bad_arg = !*optarg || strlen(optarg) > 64 || strpbrk(optarg, ": \r\n") != NULL;
			break;
		case 'S': {
			long sig = 0;
			char *colon = strchr(optarg, ':');

			bad_arg = !colon;
			if (colon) {
				*colon = '\0';
				bad_arg = num(optarg, 1, 4194304, &opt.stop_pid) < 0 ||
					  num(colon + 1, 1, 64, &sig) < 0;
				opt.stop_sig = (int)sig;
			}
			break;
		}
		default: return -1;
		}
		if (bad_arg) {
			fprintf(stderr, "loadcheck: bad option value '%s'\n", optarg);
			return -1;
		}
	}
	if (optind < argc || port < 0 || opt.requests == 0 || opt.conns == 0 || opt.nlogs == 0)
		return -1;
	if (opt.conns > opt.requests)
		opt.conns = opt.requests;
	return 0;
}

static int resolve(void)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	int err = getaddrinfo(opt.host, opt.port, &hints, &addr);

	if (err) {
		fprintf(stderr, "loadcheck: %s: %s\n", opt.host, gai_strerror(err));
		return -1;
	}
	snprintf(host_hdr, sizeof(host_hdr), strchr(opt.host, ':') ? "[%s]:%s" : "%s:%s", opt.host, opt.port);
	return 0;
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
	struct conn *cs;
	long with_cid = 0;
	int rc = 0;

	if (parse_args(argc, argv) < 0) {
		usage();
		return 2;
	}
	if (resolve() < 0)
		return 2;
	if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
		nonce = (uint32_t)getpid() ^ (uint32_t)now_ms();
	raise_fd_limit();
	if (opt.tls && !(tls_ctx = SSL_CTX_new(TLS_client_method()))) {
		fprintf(stderr, "loadcheck: SSL_CTX_new failed\n");
		return 2;
	}

	rqs = calloc((size_t)opt.requests, sizeof(*rqs));
	cs = calloc((size_t)opt.conns, sizeof(*cs));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!rqs || !cs || ep < 0) {
		perror("loadcheck");
		return 2;
	}
	/* Spread the client IDs evenly: request i has one when the running share steps up. */
	for (long i = 0; i < opt.requests; i++) {
		long want = (long)((double)(i + 1) * opt.cid_share + 1e-9);

		rqs[i].has_cid = want > with_cid;
		with_cid = want;
	}
	for (long i = 0; i < opt.conns; i++) {
		cs[i].fd = -1;
		cs[i].req = -1;
		cs[i].in = malloc(HEAD_MAX);
		if (!cs[i].in) {
			perror("loadcheck");
			return 2;
		}
	}

	run_client(cs, opt.conns);
	if (opt.settle_ms) {
		struct timespec ts = { opt.settle_ms / 1000, (opt.settle_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	if (opt.stop_pid && stop_server() < 0)
		rc = 2;
	for (int i = 0; i < opt.nlogs; i++)
		check_log(opt.logs[i]);
	check_requests();
	if (opt.echo_ids && dump_echo_ids() < 0)
		rc = 2;

	printf("requests=%ld lines=%ld ok=%ld", opt.requests, n_lines, n_ok);
	for (int c = 0; c < C_N; c++) {
		printf(" %s=%ld", cat_names[c], counts[c]);
		if (counts[c] && rc == 0)
			rc = 1;
	}
	printf("\n");
	fflush(stdout);
	return rc;
}
