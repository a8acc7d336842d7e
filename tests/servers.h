/*
 * Running real servers in the suites: each server runs in a process group of
 * its own, under the library or not, and a guard process, which outlives the
 * test process, kills the groups still running when the test process goes
 * away, so nothing is left behind even after a crash or a timeout; on a
 * normal end srv_teardown stops them itself. Also: free ports, waiting for a
 * server to listen, the test's own small HTTP client, and loadcheck, which
 * drives a server with keep-alive load and checks every log line naming a
 * request against the ID its response echoed.
 *
 * A suite calls srv_setup() in its .init (it makes the test's directory,
 * srv_dir) and srv_teardown() in its .fini.
 */
#ifndef RQ_TEST_SERVERS_H
#define RQ_TEST_SERVERS_H

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "proc.h"

/* How long a server may take to start listening, in ms. */
#define SRV_START_MS 10000
/* How long one read or write of the test's own client may block, in s. */
#define SRV_IO_S 10
/* Server process groups one test may start. */
#define SRV_MAX_GROUPS 8
/* Longest log text quoted in a failure message. */
#define SRV_QUOTE_MAX 2000

static const char *srv_dir;            /* the test's directory */
static int guard_fd = -1;              /* write end of the guard's pipe */
static pid_t guard_pid;
static pid_t groups[SRV_MAX_GROUPS];   /* leaders of the running servers' groups */
static int ngroups;
static int out_fds[SRV_MAX_GROUPS];    /* read ends of servers' stdout pipes */
static int nout_fds;

/* ---- files ---------------------------------------------------------------- */

static inline const char *path_in(const char *sub, const char *name)
{
	static char bufs[8][256];
	static int k;
	char *b = bufs[k++ & 7];

	snprintf(b, 256, "%s/%s", sub, name);
	return b;
}

static inline void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(fchmod(fd, 0644), 0);
	close(fd);
}

/* The last SRV_QUOTE_MAX bytes of a file, for failure messages. */
static inline const char *tail_of(const char *path)
{
	static char buf[SRV_QUOTE_MAX + 1];
	FILE *f = fopen(path, "r");
	long size;
	size_t n;

	if (!f)
		return "(missing)";
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > SRV_QUOTE_MAX ? size - SRV_QUOTE_MAX : 0, SEEK_SET);
	n = fread(buf, 1, SRV_QUOTE_MAX, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/*
 * Forks the guard. It reads process-group IDs from a pipe (a negative one
 * withdraws a group that was stopped, 0 says the fixture cleaned up) and, at
 * EOF, which comes when the test process is gone, kills every group still
 * listed and removes the test's directory unless told it is done. It runs in
 * a session of its own and keeps no other fd, so it neither dies with the
 * test's group nor holds the runner's pipes open.
 */
static inline void guard_start(void)
{
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	guard_pid = fork();
	cr_assert_neq(guard_pid, -1);
	if (guard_pid == 0) {
		pid_t pg[64], v;
		int n = 0, done = 0;

		setsid();
		if (dup2(p[0], 3) < 0)
			_exit(1);
		syscall(SYS_close_range, 4, ~0U, 0);
		while (read(3, &v, sizeof(v)) == sizeof(v)) {
			if (v > 0 && n < 64)
				pg[n++] = v;
			done |= v == 0;
			for (int i = 0; v < 0 && i < n; i++)
				if (pg[i] == -v)
					pg[i--] = pg[--n];
		}
		for (int i = 0; i < n; i++)
			kill(-pg[i], SIGKILL);
		if (!done)
			execl("/bin/rm", "rm", "-rf", srv_dir, (char *)NULL);
		_exit(0);
	}
	close(p[0]);
	guard_fd = p[1];
}

static inline void guard_tell(pid_t v)
{
	cr_assert_eq(write(guard_fd, &v, sizeof(v)), (ssize_t)sizeof(v));
}

/*
 * Starts argv as the leader of a new process group that the guard knows of.
 * The environment is the test's without LD_PRELOAD and REQCTX_*, plus env,
 * plus LD_PRELOAD=libreqctx.so if preload. stdin is /dev/null, stdout goes to
 * out_fd (-1: /dev/null) and stderr to the file err. The server also dies
 * with the test process (PR_SET_PDEATHSIG).
 */
static inline pid_t spawn(char *const argv[], const char *const *env, int preload, int out_fd, const char *err)
{
	char *envp[512], lp[600];
	int n = 0;
	pid_t pid;

	cr_assert_lt(ngroups, SRV_MAX_GROUPS);
	for (char **e = environ; *e && n < 500; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "REQCTX_", 7))
			envp[n++] = *e;
	for (const char *const *e = env; e && *e && n < 508; e++)
		envp[n++] = (char *)*e;
	if (preload) {
		envp[n++] = (char *)proc_preload(lp, sizeof(lp), NULL);
	}
	envp[n] = NULL;
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int i = open("/dev/null", O_RDONLY);
		int o = out_fd >= 0 ? out_fd : open("/dev/null", O_WRONLY);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(125);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	setpgid(pid, pid);
	groups[ngroups++] = pid;
	guard_tell(pid);
	return pid;
}

/* Stops one server's group: SIGTERM, SIGKILL after 5 s, then reaps the leader. */
static inline void group_stop(pid_t pg)
{
	long end = proc_now_ms() + 5000;
	int st;

	kill(-pg, SIGTERM);
	while (waitpid(pg, &st, WNOHANG) == 0 && proc_now_ms() < end)
		usleep(5000);
	kill(-pg, SIGKILL);
	waitpid(pg, &st, 0);
	guard_tell(-pg);
}

static inline void group_forget(pid_t pg)
{
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == pg)
			groups[i--] = groups[--ngroups];
}

/* Fails the test, naming the exact install line, when a server is missing. */
static inline void require(const char *bin, const char *pkg)
{
	if (access(bin, X_OK) != 0)
		cr_assert_fail("%s is not installed; as root, run:\n  apt-get install -y %s", bin, pkg);
}

/* A port that was free a moment ago (bind to port 0, read it back, close). */
static inline int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static inline int tcp_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	close(fd);
	return -1;
}

/* Waits until port accepts connections: 0, or -1 if pid exited first. */
static inline int wait_listening(int port, pid_t pid)
{
	long end = proc_now_ms() + SRV_START_MS;

	while (proc_now_ms() < end) {
		int st, fd;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			group_forget(pid);
			guard_tell(-pid);
			return -1;
		}
		if ((fd = tcp_connect(port)) >= 0) {
			close(fd);
			return 0;
		}
		usleep(20000);
	}
	cr_assert_fail("nothing listens on port %d after %d ms", port, SRV_START_MS);
	return -1;
}

/*
 * Starts argv with its stdout on a pipe and returns the port it names on the
 * first line it prints ("port N" in it), as srv_slow and http.server do.
 */
static inline int spawn_and_read_port(char *const argv[], const char *const *env, int preload, const char *err)
{
	long end = proc_now_ms() + SRV_START_MS;
	char buf[512];
	size_t len = 0;
	const char *at;
	int p[2], port;
	pid_t pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = spawn(argv, env, preload, p[1], err);
	close(p[1]);
	out_fds[nout_fds++] = p[0];
	while (!memchr(buf, '\n', len)) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		long left = end - proc_now_ms();
		ssize_t n;

		cr_assert(left > 0 && poll(&pf, 1, (int)left) > 0, "%s printed no port; stderr:\n%s", argv[0],
			  tail_of(err));
		n = read(p[0], buf + len, sizeof(buf) - 1 - len);
		cr_assert_gt(n, 0, "%s exited before listening; stderr:\n%s", argv[0], tail_of(err));
		len += (size_t)n;
		buf[len] = '\0';
	}
	at = strstr(buf, "port ");
	cr_assert_not_null(at, "%s said: %s", argv[0], buf);
	port = atoi(at + 5);
	cr_assert_gt(port, 0, "%s said: %s", argv[0], buf);
	cr_assert_eq(wait_listening(port, pid), 0, "%s exited; stderr:\n%s", argv[0], tail_of(err));
	return port;
}

/* ---- nginx, TLS and the static files ------------------------------------- */

#define SRV_NGINX "/usr/sbin/nginx"
#define SRV_OPENSSL "/usr/bin/openssl"

/*
 * The start of an nginx config, for snprintf with %1$s the test's directory
 * and %2$s its logs directory: two workers under a master in the foreground,
 * the pid and lock files, the error log at info, the start of http {} with
 * the default type; then SRV_NGINX_TEMPS, http {}'s temporary paths.
 */
#define SRV_NGINX_MAIN                                  \
	"worker_processes 2;\n"                         \
	"daemon off;\n"                                 \
	"master_process on;\n"                          \
	"pid %1$s/nginx.pid;\n"                         \
	"lock_file %1$s/nginx.lock;\n"                  \
	"error_log %2$s/error.log info;\n"              \
	"events { worker_connections 1024; }\n"         \
	"http {\n"                                      \
	"  default_type application/octet-stream;\n"
#define SRV_NGINX_TEMPS                                 \
	"  client_body_temp_path %1$s/tmp/body;\n"      \
	"  proxy_temp_path %1$s/tmp/proxy;\n"           \
	"  fastcgi_temp_path %1$s/tmp/fastcgi;\n"       \
	"  uwsgi_temp_path %1$s/tmp/uwsgi;\n"           \
	"  scgi_temp_path %1$s/tmp/scgi;\n"

/*
 * Starts nginx on dir/nginx.conf (written by the caller; -p dir, its error
 * log logs/error.log) with env, under the library if preload, after removing
 * logs/error.log and logs/access.log. Returns its pid once it listens on each
 * of the nports ports, or -1 when it exited because one of them was taken
 * meanwhile (its error log says "Address already in use"; the caller tries
 * other ports). Any other failure fails the test.
 */
static inline pid_t srv_nginx(const char *dir, const char *logs, const char *const *env, int preload,
			      const int *ports, int nports)
{
	char *argv[] = { SRV_NGINX, "-p", (char *)dir, "-c", (char *)path_in(dir, "nginx.conf"), "-e",
			 (char *)path_in(logs, "error.log"), NULL };
	pid_t pid;
	char *err;
	int i = 0;

	unlink(path_in(logs, "error.log"));
	unlink(path_in(logs, "access.log"));
	pid = spawn(argv, env, preload, -1, path_in(dir, "nginx.out"));
	while (i < nports && wait_listening(ports[i], pid) == 0)
		i++;
	if (i == nports)
		return pid;
	/* wait_listening saw it exit: it is reaped and forgotten */
	err = slurp(path_in(logs, "error.log"), NULL);
	cr_assert(strstr(err, "Address already in use"), "nginx did not start:\n%s\n%s", err,
		  tail_of(path_in(dir, "nginx.out")));
	free(err);
	return -1;
}

/* A self-signed certificate for 127.0.0.1, made with openssl: cert.pem and key.pem in dir. */
static inline void srv_make_cert(const char *dir)
{
	char *argv[] = { SRV_OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
			 "-subj", "/CN=127.0.0.1", "-keyout", (char *)path_in(dir, "key.pem"),
			 "-out", (char *)path_in(dir, "cert.pem"), NULL };

	require(SRV_OPENSSL, "openssl");
	cr_assert_eq(proc_run(argv, NULL, 0, NULL, path_in(dir, "openssl.err")), 0,
		     "openssl: %s", tail_of(path_in(dir, "openssl.err")));
}

/*
 * The static site under srv_dir: html/ (mode 0755, for servers that drop
 * root) with ok.txt ("ok\n"), logs/ and tmp/. Their paths go to html and
 * logs, size bytes each.
 */
static inline void srv_site(char *html, char *logs, size_t size)
{
	snprintf(html, size, "%s/html", srv_dir);
	snprintf(logs, size, "%s/logs", srv_dir);
	cr_assert_eq(mkdir(html, 0755), 0);
	cr_assert_eq(mkdir(logs, 0755), 0);
	cr_assert_eq(mkdir(path_in(srv_dir, "tmp"), 0755), 0);
	write_file(path_in(html, "ok.txt"), "ok\n", 3);
}

/* Fills p with n random bytes (getrandom). */
static inline void srv_random(void *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = getrandom((unsigned char *)p + got, n - got, 0);

		cr_assert_gt(k, 0);
		got += (size_t)k;
	}
}

/*
 * The fixture of the nginx TLS suites: srv_site, then in html/ big.bin
 * (big_size random bytes) and heads.txt (nheads copies of head, text that
 * looks like response heads), and srv_make_cert's certificate with its key
 * readable by nginx's workers, who run as nobody.
 */
static inline void srv_tls_site(char *html, char *logs, size_t size, size_t big_size,
				const char *head, int nheads)
{
	unsigned char *big = malloc(big_size);
	size_t hl = strlen(head);
	char *heads = malloc((size_t)nheads * hl);

	srv_site(html, logs, size);
	srv_random(big, big_size);
	write_file(path_in(html, "big.bin"), big, big_size);
	for (int i = 0; i < nheads; i++)
		memcpy(heads + (size_t)i * hl, head, hl);
	write_file(path_in(html, "heads.txt"), heads, (size_t)nheads * hl);
	free(big);
	free(heads);
	srv_make_cert(srv_dir);
	cr_assert_eq(chmod(path_in(srv_dir, "key.pem"), 0644), 0);
}

/* ---- loadcheck ------------------------------------------------------------ */

struct run {
	char *out;	/* the summary line */
	char *err;	/* diagnostics */
	int status;
	long ms;
};

/* How long loadcheck may take, in ms. */
#ifndef SRV_RUN_MS
#define SRV_RUN_MS 90000
#endif

/*
 * Runs loadcheck against port: `requests` requests over conns connections,
 * share of them with a client ID, URLs under path_prefix; checks the logs
 * (NULL-terminated) for lines_per_request lines each, and writes the echoed
 * generated IDs to ids. extra: more of loadcheck's options (NULL-terminated, or NULL).
 */
static inline struct run loadcheck_ext(int port, long requests, int conns, const char *share,
				       const char *path_prefix, int lines_per_request, const char *ids,
				       const char *const *logv, const char *const *extra)
{
	char prog[512], p[16], n[16], c[16], k[16], t[16];
	char *argv[64] = { prog, "--port", p, "--requests", n, "--conns", c, "--client-id-share", (char *)share,
			   "--path-prefix", (char *)path_prefix, "--lines-per-request", k, "--timeout-ms", t,
			   "--echo-ids", (char *)ids };
	int a = 17;
	struct run r;
	long start = proc_now_ms();

	snprintf(prog, sizeof(prog), "%s/progs/O0/loadcheck", bdir());
	snprintf(p, sizeof(p), "%d", port);
	snprintf(n, sizeof(n), "%ld", requests);
	snprintf(c, sizeof(c), "%d", conns);
	snprintf(k, sizeof(k), "%d", lines_per_request);
	snprintf(t, sizeof(t), "%d", SRV_RUN_MS);
	for (; *logv && a < 56; logv++) {
		argv[a++] = "--log";
		argv[a++] = (char *)*logv;
	}
	for (; extra && *extra && a < 62; extra++)
		argv[a++] = (char *)*extra;
	argv[a] = NULL;
	r.status = proc_wait(proc_start(argv, NULL, 0, path_in(srv_dir, "lc.out"), path_in(srv_dir, "lc.err")),
			     SRV_RUN_MS + 20000);
	r.ms = proc_now_ms() - start;
	r.out = slurp(path_in(srv_dir, "lc.out"), NULL);
	r.err = slurp(path_in(srv_dir, "lc.err"), NULL);
	return r;
}

/* loadcheck_ext without loadcheck options of its own (extra: more of them, NULL-terminated). */
static inline struct run loadcheck(int port, long requests, int conns, const char *share, const char *path_prefix,
			    int lines_per_request, const char *ids, const char *const *logv)
{
	return loadcheck_ext(port, requests, conns, share, path_prefix, lines_per_request, ids, logv, NULL);
}

/* Asserts loadcheck's exact summary for a run where every line is right. */
static inline void expect_clean(struct run *r, long requests, const char *what, int lines_per_request)
{
	char want[256];
	long lines = requests * lines_per_request;

	snprintf(want, sizeof(want),
		 "requests=%ld lines=%ld ok=%ld wrong=0 unknown=0 unprefixed=0 unlogged=0 miscounted=0 "
		 "no_echo=0 echo_mismatch=0 failed=0\n",
		 requests, lines, lines);
	cr_assert_str_eq(r->out, want, "%s: loadcheck said\n%s%s", what, r->out, r->err);
	cr_assert_eq(r->status, 0, "%s: loadcheck status %d", what, r->status);
	cr_log_info("%s: %ld ms: %.*s", what, r->ms, (int)strcspn(r->out, "\n"), r->out);
}

/* ---- IDs ------------------------------------------------------------------ */

static inline int is_uuid4(const char *s, size_t n)
{
	if (n != 36)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) {
			return 0;
		}
	}
	return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static inline int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The file holds want lines, each a UUIDv4, no two alike. */
static inline void expect_unique_uuids(const char *path, long want)
{
	char *text = slurp(path, NULL);
	char **ids = malloc(sizeof(*ids) * (size_t)(want + 1));
	long n = 0;

	for (char *l = text, *nl; *l; l = nl + 1) {
		nl = strchr(l, '\n');
		cr_assert_not_null(nl);
		*nl = '\0';
		cr_assert(is_uuid4(l, strlen(l)), "echoed ID %ld is no UUIDv4: %s", n, l);
		cr_assert_lt(n, want, "more than %ld generated IDs", want);
		ids[n++] = l;
	}
	cr_assert_eq(n, want, "%ld generated IDs, expected %ld", n, want);
	qsort(ids, (size_t)n, sizeof(*ids), cmp_str);
	for (long i = 1; i < n; i++)
		cr_assert_str_neq(ids[i - 1], ids[i], "ID %s was generated twice", ids[i]);
	free(ids);
	free(text);
}

/* ---- the test's own client, for the large file ---------------------------- */

struct resp {
	int status;
	int nids;	/* X-Request-Id headers */
	char id[160];
	long clen;
	unsigned char *body;
};

static inline int http_open(int port)
{
	struct timeval tv = { SRV_IO_S, 0 };
	int rcv = 16384, fd = tcp_connect(port);

	cr_assert_geq(fd, 0, "connect to %d: %s", port, strerror(errno));
	/* A small receive buffer makes the server meet a full socket many times. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static inline int hdr_is(const char *l, const char *name)
{
	size_t k = strlen(name);

	return strncasecmp(l, name, k) == 0 && l[k] == ':';
}

/* GETs path on fd (keep-alive), with X-Request-Id: cid unless NULL. */
static inline void http_get(int fd, const char *path, const char *cid, struct resp *r)
{
	char req[512], head[8192];
	size_t hl = 0, have, n;
	char *end;

	n = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", path,
			     cid ? "X-Request-Id: " : "", cid ? cid : "", cid ? "\r\n" : "");
	cr_assert_eq(send(fd, req, n, MSG_NOSIGNAL), (ssize_t)n, "GET %s: %s", path, strerror(errno));
	memset(r, 0, sizeof(*r));
	r->clen = -1;
	while (!(end = memmem(head, hl, "\r\n\r\n", 4))) {
		ssize_t got = read(fd, head + hl, sizeof(head) - 1 - hl);

		cr_assert_gt(got, 0, "GET %s: head cut after %zu bytes", path, hl);
		hl += (size_t)got;
	}
	have = hl - (size_t)(end + 4 - head);
	*end = '\0';
	cr_assert_eq(sscanf(head, "HTTP/1.1 %d", &r->status), 1, "GET %s: %s", path, head);
	for (char *l = strstr(head, "\r\n"); l; l = strstr(l, "\r\n")) {
		char *v;

		l += 2;
		v = strchr(l, ':');
		if (!v)
			break;
		for (v++; *v == ' '; v++)
			;
		if (hdr_is(l, "X-Request-Id")) {
			r->nids++;
			snprintf(r->id, sizeof(r->id), "%.*s", (int)strcspn(v, "\r"), v);
		} else if (hdr_is(l, "Content-Length")) {
			r->clen = strtol(v, NULL, 10);
		}
	}
	cr_assert_geq(r->clen, 0, "GET %s: no Content-Length:\n%s", path, head);
	r->body = malloc((size_t)r->clen + 1);
	cr_assert_leq(have, (size_t)r->clen, "GET %s: more bytes than the Content-Length", path);
	memcpy(r->body, end + 4, have);
	while (have < (size_t)r->clen) {
		ssize_t got = read(fd, r->body + have, (size_t)r->clen - have);

		cr_assert_gt(got, 0, "GET %s: body cut after %zu of %ld bytes", path, have, r->clen);
		have += (size_t)got;
	}
}

/* The one line of the log that names tk; waits up to 2 s for it to be written. */
static inline char *line_naming(const char *log, const char *tk)
{
	long end = proc_now_ms() + 2000;

	for (;;) {
		char *text = slurp(log, NULL), *at = strstr(text, tk), *l, *nl;

		if (at) {
			cr_assert_null(strstr(at + 1, tk), "%s names %s twice", log, tk);
			for (l = at; l > text && l[-1] != '\n'; l--)
				;
			nl = strchr(at, '\n');
			l = strndup(l, nl ? (size_t)(nl - l) : strlen(l));
			free(text);
			return l;
		}
		free(text);
		cr_assert_lt(proc_now_ms(), end, "%s has no line naming %s", log, tk);
		usleep(20000);
	}
}

/* ---- the fixture ---------------------------------------------------------- */

/* Makes the test's directory (mode 0755: servers that drop root must reach it) and starts the guard. */
static inline void srv_setup(void)
{
	static char d[64];

	snprintf(d, sizeof(d), "%s", tmpdir_new());
	srv_dir = d;
	cr_assert_eq(chmod(srv_dir, 0755), 0);
	guard_start();
}

/* Stops every server still running, removes the directory, ends the guard. */
static inline void srv_teardown(void)
{
	int st;

	while (ngroups > 0)
		group_stop(groups[--ngroups]);
	while (nout_fds > 0)
		close(out_fds[--nout_fds]);
	tmpdir_remove(srv_dir);
	if (guard_fd >= 0) {
		guard_tell(0);
		close(guard_fd);
		waitpid(guard_pid, &st, 0);
		guard_fd = -1;
	}
}

#endif
