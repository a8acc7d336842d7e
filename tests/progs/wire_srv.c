/*
 * A keep-alive HTTP/1.1 server for test_wire: it serves one connection, then
 * exits. It writes its port to PORTFILE.
 *
 *   wire_srv MODE PORTFILE [HOLD]
 *
 * "GET /N ..." (N = 0, 1, ...) is answered with
 *   "HTTP/1.1 200 OK\r\nContent-Length: LLL\r\n\r\n" + body(N)
 * where body(N) is 3 + N % 5 copies of
 *   "HTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n",
 * text that looks like a response head and is 40 bytes long like the real
 * head, so that a scanner that loses count of body bytes lands on one.
 *
 * Body modes: heads, and the bodies of even N, go out with write(); the body
 * of an odd N goes out through
 *   write        write()
 *   splice       splice() from a pipe it was written into
 *   splicefile   splice() from a file, through a pipe
 *   vmsplice     vmsplice() into a pipe, then splice()
 *   tee          write() into a pipe, tee() into a second one, splice() that
 *   cfr          copy_file_range() from a file; where the kernel refuses it on
 *                a socket, sendfile() (what servers fall back to); says which
 *                on stderr ("cfr: copy_file_range" or "cfr: fallback <errno>")
 *   sendfile     sendfile() from a file
 *   sendmmsg     head and body together, as two messages of one sendmmsg()
 *   pwritev2     pwritev2() at offset -1
 *   stdio        fprintf() or fwrite(), then fflush(), on a FILE from fdopen() of
 *                the connection
 *   dup          write() on a dup() of the connection
 *   duphead      head and body of an odd N through write() on a dup(); the
 *                original fd is closed once the dup is made, and the dup serves
 *                the connection from then on
 *   dprintf      head and body together, through dprintf()
 * Pipelining modes, everything through write():
 *   each         one write() per response
 *   batch        all requests complete in the buffer answered by one writev()
 *   crlf         the head in two writes: up to the final CR, then the LF and
 *                the body
 *
 * HOLD > 0: nothing is answered until HOLD request heads have been read, so
 * that that many are unanswered at once. After each response the server logs
 * "done /N" on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define UNIT "HTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n"
#define UNIT_LEN (sizeof(UNIT) - 1)
#define MAX_BODY (7 * UNIT_LEN)

static const char *mode;
static int conn;
static FILE *conn_file;

static void fail(const char *what)
{
	fprintf(stderr, "wire_srv: %s: %s\n", what, strerror(errno));
	exit(3);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			fail("write");
		p += r;
		n -= (size_t)r;
	}
}

static size_t body_of(long n, char *b)
{
	size_t k = 3 + (size_t)(n % 5);

	for (size_t i = 0; i < k; i++)
		memcpy(b + i * UNIT_LEN, UNIT, UNIT_LEN);
	return k * UNIT_LEN;
}

static size_t head_of(size_t blen, char *h)
{
	return (size_t)sprintf(h, "HTTP/1.1 200 OK\r\nContent-Length: %03zu\r\n\r\n", blen);
}

/* A file holding b, positioned at its start. */
static int file_of(const char *b, size_t n)
{
	FILE *f = tmpfile();
	int fd;

	if (!f)
		fail("tmpfile");
	fd = dup(fileno(f));
	fclose(f);
	write_all(fd, b, n);
	if (lseek(fd, 0, SEEK_SET) != 0)
		fail("lseek");
	return fd;
}

/* Moves n bytes from the read end of a pipe to the connection. */
static void splice_out(int from, size_t n)
{
	while (n) {
		ssize_t r = splice(from, NULL, conn, NULL, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			fail("splice to the socket");
		n -= (size_t)r;
	}
}

static void body_splice(const char *b, size_t n)
{
	int p[2];

	if (pipe(p))
		fail("pipe");
	write_all(p[1], b, n);
	splice_out(p[0], n);
	close(p[0]);
	close(p[1]);
}

static void body_splicefile(const char *b, size_t n)
{
	int f = file_of(b, n), p[2];

	if (pipe(p))
		fail("pipe");
	if (splice(f, NULL, p[1], NULL, n, 0) != (ssize_t)n)
		fail("splice from the file");
	splice_out(p[0], n);
	close(p[0]);
	close(p[1]);
	close(f);
}

static void body_vmsplice(const char *b, size_t n)
{
	/* the pipe, then the socket, refer to these pages until sent: never reused */
	struct iovec v = { memcpy(malloc(n), b, n), n };
	int p[2];

	if (pipe(p))
		fail("pipe");
	if (vmsplice(p[1], &v, 1, 0) != (ssize_t)n)
		fail("vmsplice");
	splice_out(p[0], n);
	close(p[0]);
	close(p[1]);
}

static void body_tee(const char *b, size_t n)
{
	int a[2], c[2];
	char sink[MAX_BODY];

	if (pipe(a) || pipe(c))
		fail("pipe");
	write_all(a[1], b, n);
	if (tee(a[0], c[1], n, 0) != (ssize_t)n)
		fail("tee");
	splice_out(c[0], n);
	if (read(a[0], sink, n) != (ssize_t)n) /* what tee left in the first pipe */
		fail("read");
	close(a[0]);
	close(a[1]);
	close(c[0]);
	close(c[1]);
}

static void sendfile_all(int f, size_t n)
{
	while (n) {
		ssize_t r = sendfile(conn, f, NULL, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			fail("sendfile");
		n -= (size_t)r;
	}
}

static void body_cfr(const char *b, size_t n)
{
	static int said;
	int f = file_of(b, n);
	ssize_t r = copy_file_range(f, NULL, conn, NULL, n, 0);

	if (r == (ssize_t)n) {
		if (!said++)
			fprintf(stderr, "cfr: copy_file_range\n");
	} else if (r < 0) {
		if (!said++)
			fprintf(stderr, "cfr: fallback %s\n", strerrorname_np(errno));
		sendfile_all(f, n);
	} else {
		fail("copy_file_range was short");
	}
	close(f);
}

static void body_sendfile(const char *b, size_t n)
{
	int f = file_of(b, n);

	sendfile_all(f, n);
	close(f);
}

static void body_pwritev2(const char *b, size_t n)
{
	struct iovec v = { (void *)b, n };

	if (pwritev2(conn, &v, 1, -1, 0) != (ssize_t)n)
		fail("pwritev2");
}

static int dup_of_conn(void)
{
	static int copy = -1;

	if (copy >= 0)
		return copy;
	if ((copy = dup(conn)) < 0)
		fail("dup");
	if (!strcmp(mode, "duphead")) { /* the dup alone serves the connection from now on */
		close(conn);
		conn = copy;
	}
	return copy;
}

static void body_dup(const char *b, size_t n)
{
	write_all(dup_of_conn(), b, n);
}

/* fprintf and fwrite by turns, each flushed. */
static void body_stdio(const char *b, size_t n)
{
	static int calls;

	if (!conn_file && !(conn_file = fdopen(conn, "w")))
		fail("fdopen");
	if (calls++ % 2 == 0 ? fprintf(conn_file, "%.*s", (int)n, b) != (int)n
			     : fwrite(b, 1, n, conn_file) != n)
		fail("stdio");
	if (fflush(conn_file))
		fail("fflush");
}

/* One response; `out` collects it instead for the batch mode. */
static void answer(long n, char *out, size_t *outlen)
{
	char h[64], b[MAX_BODY];
	size_t blen = body_of(n, b), hlen = head_of(blen, h);
	int odd = n % 2;

	if (out) {
		memcpy(out + *outlen, h, hlen);
		memcpy(out + *outlen + hlen, b, blen);
		*outlen += hlen + blen;
		return;
	}
	if (!strcmp(mode, "crlf")) {
		write_all(conn, h, hlen - 1);
		write_all(conn, h + hlen - 1, 1);
		write_all(conn, b, blen);
		return;
	}
	if (odd && !strcmp(mode, "sendmmsg")) {
		struct iovec v[2] = { { h, hlen }, { b, blen } };
		struct mmsghdr m[2] = { { .msg_hdr = { .msg_iov = &v[0], .msg_iovlen = 1 } },
					{ .msg_hdr = { .msg_iov = &v[1], .msg_iovlen = 1 } } };

		if (sendmmsg(conn, m, 2, 0) != 2 || m[0].msg_len != hlen || m[1].msg_len != blen)
			fail("sendmmsg");
		return;
	}
	if (odd && !strcmp(mode, "duphead")) {
		int copy = dup_of_conn();

		write_all(copy, h, hlen);
		write_all(copy, b, blen);
		return;
	}
	if (odd && !strcmp(mode, "dprintf")) {
		if (dprintf(conn, "%s%.*s", h, (int)blen, b) != (int)(hlen + blen))
			fail("dprintf");
		return;
	}
	write_all(conn, h, hlen);
	if (!odd || !strcmp(mode, "write") || !strcmp(mode, "each"))
		write_all(conn, b, blen);
	else if (!strcmp(mode, "splice"))
		body_splice(b, blen);
	else if (!strcmp(mode, "splicefile"))
		body_splicefile(b, blen);
	else if (!strcmp(mode, "vmsplice"))
		body_vmsplice(b, blen);
	else if (!strcmp(mode, "tee"))
		body_tee(b, blen);
	else if (!strcmp(mode, "cfr"))
		body_cfr(b, blen);
	else if (!strcmp(mode, "sendfile"))
		body_sendfile(b, blen);
	else if (!strcmp(mode, "pwritev2"))
		body_pwritev2(b, blen);
	else if (!strcmp(mode, "stdio"))
		body_stdio(b, blen);
	else if (!strcmp(mode, "dup"))
		body_dup(b, blen);
	else
		fail("unknown mode");
}

static void serve(long hold)
{
	static char buf[1 << 16], out[1 << 20];
	size_t have = 0;

	for (;;) {
		size_t outlen = 0, used = 0;
		long heads = 0;
		char *end;
		ssize_t r;

		for (char *p = buf; (end = memmem(p, have - (size_t)(p - buf), "\r\n\r\n", 4));
		     p = end + 4)
			heads++;
		if (heads && heads >= hold) {
			int batch = !strcmp(mode, "batch");

			hold = 0;
			while ((end = memmem(buf + used, have - used, "\r\n\r\n", 4))) {
				long n = -1;

				sscanf(buf + used, "GET /%ld ", &n);
				if (n < 0)
					fail("not a GET /N");
				answer(n, batch ? out : NULL, &outlen);
				if (!batch)
					fprintf(stderr, "done /%ld\n", n);
				used = (size_t)(end + 4 - buf);
			}
			if (batch && outlen) {
				struct iovec v = { out, outlen };

				if (writev(conn, &v, 1) != (ssize_t)outlen)
					fail("writev");
				fprintf(stderr, "done batch of %ld\n", heads);
			}
			memmove(buf, buf + used, have - used);
			have -= used;
		}
		r = read(conn, buf + have, sizeof(buf) - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		have += (size_t)r;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), pf;
	char port[16];

	if (argc < 3 || s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 8) ||
	    getsockname(s, (struct sockaddr *)&a, &al))
		return 2;
	mode = argv[1];
	snprintf(port, sizeof(port), "%d\n", ntohs(a.sin_port));
	pf = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (pf < 0 || write(pf, port, strlen(port)) < 0)
		return 2;
	close(pf);
	conn = accept(s, NULL, NULL);
	if (conn < 0)
		return 2;
	serve(argc > 3 ? atol(argv[3]) : 0);
	if (conn_file)
		fclose(conn_file); /* and with it the connection */
	else
		close(conn);
	return 0;
}
