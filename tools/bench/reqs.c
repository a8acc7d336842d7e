/*
 * bench_reqs: exactly N HTTP/1.1 requests over C keep-alive connections, one
 * outstanding per connection, for counting what a server spends per request
 * (callgrind on the server, this client outside valgrind).
 *
 *   bench_reqs PORT N [C [curl|browser]]
 *
 *   curl     the request curl sends (Host, User-Agent, Accept: 78 bytes)
 *   browser  a browser's request (Host, User-Agent, Accept, Accept-Language,
 *            Accept-Encoding, Connection, Referer, Cookie ...: 520 bytes)
 *
 * Responses must carry Content-Length (nginx's `return 200` does). Prints
 * "requests N echoed E" (E: responses with an X-Request-Id header) and exits
 * 0 if every response came back with status 200, 1 otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Most connections. */
#define CONNS_MAX 1024
/* Largest response kept while it is parsed. */
#define RESP_MAX 16384

static const char curl_req[] =
	"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
static const char browser_req[] =
	"GET /index.html?utm_source=bench HTTP/1.1\r\n"
	"Host: www.example.com\r\n"
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
	"Accept-Language: en-US,en;q=0.5\r\n"
	"Accept-Encoding: gzip, deflate, br\r\n"
	"Referer: https://www.example.com/\r\n"
	"Connection: keep-alive\r\n"
	"Cookie: session=5f2b8c0e9d7a4e21b3c6; theme=dark; consent=1\r\n"
	"Upgrade-Insecure-Requests: 1\r\n"
	"Sec-Fetch-Dest: document\r\n"
	"Sec-Fetch-Mode: navigate\r\n"
	"Sec-Fetch-Site: same-origin\r\n"
	"\r\n";

struct conn {
	int fd;
	size_t have;
	char buf[RESP_MAX];
};

static struct conn conns[CONNS_MAX];
static const char *req;
static size_t req_len;
static long sent, done, echoed, bad;

static int send_req(struct conn *c)
{
	size_t off = 0;

	while (off < req_len) {
		ssize_t w = write(c->fd, req + off, req_len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	sent++;
	return 0;
}

/*
 * The response at the start of c->buf: 1 if it is complete (consumed), 0 if
 * more bytes are needed, -1 if it cannot be parsed.
 */
static int parse(struct conn *c)
{
	char *end, *cl;
	size_t head, total;

	c->buf[c->have] = '\0';
	end = strstr(c->buf, "\r\n\r\n");
	if (!end)
		return c->have >= RESP_MAX - 1 ? -1 : 0;
	head = (size_t)(end - c->buf) + 4;
	*end = '\0';
	cl = strcasestr(c->buf, "\r\ncontent-length:");
	if (!cl) {
		*end = '\r';
		return -1;
	}
	total = head + strtoul(cl + 17, NULL, 10);
	*end = '\r';
	if (total > RESP_MAX - 1)
		return -1;
	if (c->have < total)
		return 0;
	if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0)
		bad++;
	*end = '\0';
	if (strcasestr(c->buf, "\r\nx-request-id:"))
		echoed++;
	memmove(c->buf, c->buf + total, c->have - total);
	c->have -= total;
	done++;
	return 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	long n = argc > 2 ? atol(argv[2]) : 0;
	int nc = argc > 3 ? atoi(argv[3]) : 1, ep, one = 1;
	struct epoll_event evs[64];

	if (argc < 3 || n <= 0 || nc <= 0 || nc > CONNS_MAX) {
		fprintf(stderr, "usage: bench_reqs PORT N [CONNS [curl|browser]]\n");
		return 2;
	}
	req = argc > 4 && !strcmp(argv[4], "browser") ? browser_req : curl_req;
	req_len = strlen(req);
	if (nc > n)
		nc = (int)n;
	a.sin_port = htons((uint16_t)atoi(argv[1]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ep = epoll_create1(0);
	for (int i = 0; i < nc; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

		conns[i].fd = socket(AF_INET, SOCK_STREAM, 0);
		if (conns[i].fd < 0 || connect(conns[i].fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
			perror("bench_reqs: connect");
			return 1;
		}
		setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
		if (send_req(&conns[i]) < 0)
			return 1;
	}
	while (done < n) {
		int k = epoll_wait(ep, evs, 64, 10000);

		if (k <= 0) {
			fprintf(stderr, "bench_reqs: no answer (%ld of %ld)\n", done, n);
			return 1;
		}
		for (int j = 0; j < k; j++) {
			struct conn *c = &conns[evs[j].data.u32];
			ssize_t r = read(c->fd, c->buf + c->have, RESP_MAX - 1 - c->have);
			int got;

			if (r <= 0) {
				fprintf(stderr, "bench_reqs: connection closed (%ld of %ld)\n", done, n);
				return 1;
			}
			c->have += (size_t)r;
			while ((got = parse(c)) > 0)
				if (sent < n && send_req(c) < 0)
					return 1;
			if (got < 0) {
				fprintf(stderr, "bench_reqs: bad response\n");
				return 1;
			}
		}
	}
	printf("requests %ld echoed %ld\n", done, echoed);
	return bad ? 1 : 0;
}
