/*
 * Real servers under plain LD_PRELOAD, from Debian's packages and with their
 * stock logging: nginx (a master and two forked workers, access and error
 * logs, keep-alive, sendfile on and off, a slow proxied upstream) and
 * python3 -m http.server (a thread per connection, logging on stderr).
 * loadcheck drives each with thousands of requests over dozens of keep-alive
 * connections and checks every log line that names a request.
 *
 * Every server runs in a process group of its own. A guard process, which
 * outlives the test process, kills the groups still running when the test
 * process goes away, so nothing is left behind even after a crash or a
 * timeout; on a normal end the fixture stops them itself.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "proc.h"

#define NGINX "/usr/sbin/nginx"
#define PYTHON "/usr/bin/python3"

/* Requests per loadcheck run. */
#define REQUESTS 5000
/* Concurrent keep-alive connections per loadcheck run. */
#define CONNS 32
/* Connections for the proxied run, so that more requests wait on the upstream at once. */
#define PROXY_CONNS 64
/* The slow upstream's delay per request, in ms. */
#define UP_MIN_MS 20
#define UP_MAX_MS 50
/* Size of the static file of random bytes. */
#define BIG_SIZE (1 << 20)
/* Requests for the static file per check. */
#define BIG_GETS 4
/* How long a server may take to start listening, in ms. */
#define START_MS 10000
/* How long loadcheck may take, in ms. */
#define RUN_MS 90000
/* How long one read or write of the test's own client may block, in s. */
#define IO_S 10
/* Attempts at starting nginx on a free port. */
#define PORT_TRIES 5
/* Server process groups one test may start. */
#define MAX_GROUPS 8
/* Longest log text quoted in a failure message. */
#define QUOTE_MAX 2000

static const char *dir;
static char html[128], logs[128];
static unsigned char *big;
static int guard_fd = -1;	/* write end of the guard's pipe */
static pid_t guard_pid;
static pid_t groups[MAX_GROUPS];	/* leaders of the running servers' groups */
static int ngroups;
static int out_fds[MAX_GROUPS];	/* read ends of servers' stdout pipes */
static int nout_fds;

/* ---- files ---------------------------------------------------------------- */

static const char *path_in(const char *sub, const char *name)
{
	static char bufs[8][256];
	static int k;
	char *b = bufs[k++ & 7];

	snprintf(b, 256, "%s/%s", sub, name);
	return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(fchmod(fd, 0644), 0);
	close(fd);
}

/* The last QUOTE_MAX bytes of a file, for failure messages. */
static const char *tail_of(const char *path)
{
	static char buf[QUOTE_MAX + 1];
	FILE *f = fopen(path, "r");
	long size;
	size_t n;

	if (!f)
		return "(missing)";
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > QUOTE_MAX ? size - QUOTE_MAX : 0, SEEK_SET);
	n = fread(buf, 1, QUOTE_MAX, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* ---- the guard and the servers -------------------------------------------- */

/*
 * Forks the guard. It reads process-group IDs from a pipe (a negative one
 * withdraws a group that was stopped, 0 says the fixture cleaned up) and, at
 * EOF, which comes when the test process is gone, kills every group still
 * listed and removes the test's directory unless told it is done. It runs in
 * a session of its own and keeps no other fd, so it neither dies with the
 * test's group nor holds the runner's pipes open.
 */
static void guard_start(void)
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
			execl("/bin/rm", "rm", "-rf", dir, (char *)NULL);
		_exit(0);
	}
	close(p[0]);
	guard_fd = p[1];
}

static void guard_tell(pid_t v)
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
static pid_t spawn(char *const argv[], const char *const *env, int preload, int out_fd, const char *err)
{
	char *envp[512], lp[600];
	int n = 0;
	pid_t pid;

	cr_assert_lt(ngroups, MAX_GROUPS);
	for (char **e = environ; *e && n < 500; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "REQCTX_", 7))
			envp[n++] = *e;
	for (const char *const *e = env; e && *e && n < 508; e++)
		envp[n++] = (char *)*e;
	if (preload) {
		snprintf(lp, sizeof(lp), "LD_PRELOAD=%s/libreqctx.so", bdir());
		envp[n++] = lp;
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
static void group_stop(pid_t pg)
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

static void group_forget(pid_t pg)
{
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == pg)
			groups[i--] = groups[--ngroups];
}

/* Fails the test, naming the exact install line, when a server is missing. */
static void require(const char *bin, const char *pkg)
{
	if (access(bin, X_OK) != 0)
		cr_assert_fail("%s is not installed; as root, run:\n  apt-get install -y %s", bin, pkg);
}

/* A port that was free a moment ago (bind to port 0, read it back, close). */
static int free_port(void)
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

static int tcp_connect(int port)
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
static int wait_listening(int port, pid_t pid)
{
	long end = proc_now_ms() + START_MS;

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
	cr_assert_fail("nothing listens on port %d after %d ms", port, START_MS);
	return -1;
}

/*
 * Starts argv with its stdout on a pipe and returns the port it names on the
 * first line it prints ("port N" in it), as srv_slow and http.server do.
 */
static int spawn_and_read_port(char *const argv[], const char *const *env, int preload, const char *err)
{
	long end = proc_now_ms() + START_MS;
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

/* The slow upstream: srv_slow, without the library. */
static int upstream_start(void)
{
	char prog[512], lo[16], hi[16];
	char *argv[] = { prog, "--overrun", "--min-ms", lo, "--max-ms", hi, NULL };

	snprintf(prog, sizeof(prog), "%s/progs/O0/srv_slow", bdir());
	snprintf(lo, sizeof(lo), "%d", UP_MIN_MS);
	snprintf(hi, sizeof(hi), "%d", UP_MAX_MS);
	return spawn_and_read_port(argv, NULL, 0, path_in(dir, "upstream.err"));
}

/* ---- nginx ---------------------------------------------------------------- */

static pid_t nginx_pid;

/*
 * The config: two workers under a master in the foreground, every path under
 * the test's directory, the error log at info, the stock combined access log.
 *   /t/...          missing files: nginx logs "open() ... failed" with the
 *                   request line at error level, then serves ok.txt (200);
 *   /p/...          proxied to the slow upstream, which sends more than its
 *                   Content-Length: nginx warns about it with the request line;
 *   /sendfile-on/, /sendfile-off/   the static root, with sendfile on and off.
 */
static void nginx_write_conf(int port, int up_port)
{
	char conf[4096];
	int n;

	n = snprintf(conf, sizeof(conf),
		     "worker_processes 2;\n"
		     "daemon off;\n"
		     "master_process on;\n"
		     "pid %1$s/nginx.pid;\n"
		     "lock_file %1$s/nginx.lock;\n"
		     "error_log %2$s/error.log info;\n"
		     "events { worker_connections 1024; }\n"
		     "http {\n"
		     "  default_type application/octet-stream;\n"
		     "  access_log %2$s/access.log combined;\n"
		     "  client_body_temp_path %1$s/tmp/body;\n"
		     "  proxy_temp_path %1$s/tmp/proxy;\n"
		     "  fastcgi_temp_path %1$s/tmp/fastcgi;\n"
		     "  uwsgi_temp_path %1$s/tmp/uwsgi;\n"
		     "  scgi_temp_path %1$s/tmp/scgi;\n"
		     "  keepalive_timeout 60s;\n"
		     "  keepalive_requests 100000;\n"
		     "  server {\n"
		     "    listen 127.0.0.1:%3$d reuseport;\n"
		     "    root %4$s;\n"
		     "    location /t/ { error_page 404 =200 /ok.txt; }\n"
		     "    location = /ok.txt { }\n"
		     "    location /p/ { proxy_pass http://127.0.0.1:%5$d; }\n"
		     "    location /sendfile-on/ { sendfile on; alias %4$s/; }\n"
		     "    location /sendfile-off/ { sendfile off; alias %4$s/; }\n"
		     "  }\n"
		     "}\n",
		     dir, logs, port, html, up_port);
	cr_assert_lt(n, (int)sizeof(conf));
	write_file(path_in(dir, "nginx.conf"), conf, (size_t)n);
}

/*
 * Starts nginx under the library; returns its port. Picks a free port and
 * tries again with another when something takes it first.
 */
static int nginx_start(int up_port)
{
	require(NGINX, "nginx-light");
	for (int t = 0; t < PORT_TRIES; t++) {
		int port = free_port();
		char *argv[] = { NGINX, "-p", (char *)dir, "-c", (char *)path_in(dir, "nginx.conf"), "-e",
				 (char *)path_in(logs, "error.log"), NULL };
		char *err;

		unlink(path_in(logs, "error.log"));
		unlink(path_in(logs, "access.log"));
		nginx_write_conf(port, up_port);
		nginx_pid = spawn(argv, NULL, 1, -1, path_in(dir, "nginx.out"));
		if (wait_listening(port, nginx_pid) == 0)
			return port;
		err = slurp(path_in(logs, "error.log"), NULL);
		cr_assert(strstr(err, "Address already in use"), "nginx did not start:\n%s\n%s", err,
			  tail_of(path_in(dir, "nginx.out")));
		free(err);
	}
	cr_assert_fail("nginx found no free port in %d tries", PORT_TRIES);
	return -1;
}

/* No worker crashed ("worker process N exited on signal") and nothing went critically wrong. */
static void nginx_expect_no_alerts(void)
{
	static const char *const levels[] = { " [alert] ", " [crit] ", " [emerg] " };
	char *text = slurp(path_in(logs, "error.log"), NULL);

	for (int i = 0; i < 3; i++) {
		const char *at = strstr(text, levels[i]);

		cr_expect_null(at, "error.log:%.*s", at ? (int)strcspn(at, "\n") : 0, at);
	}
	free(text);
}

/* Adds v to the set s of *n values (at most max); returns *n. */
static int set_add(long *s, int *n, int max, long v)
{
	int j;

	for (j = 0; j < *n && s[j] != v; j++)
		;
	if (j == *n && *n < max)
		s[(*n)++] = v;
	return *n;
}

/*
 * Reads the error-level lines ("[error] PID#TID: *CONN open() ... failed"):
 * sets *workers to the distinct processes that logged them, none of which
 * may be the master, and *conns to the distinct connections they name.
 */
static void nginx_error_lines(int *workers, int *conns)
{
	char *text = slurp(path_in(logs, "error.log"), NULL);
	long pids[16], cs[1024];

	*workers = *conns = 0;
	for (char *l = text; (l = strstr(l, " [error] ")); l++) {
		char *e;
		long pid = strtol(l + 9, &e, 10);
		char *star = strstr(e, ": *");

		cr_assert_neq(pid, (long)nginx_pid, "the master served a request");
		set_add(pids, workers, 16, pid);
		cr_assert_not_null(star);
		set_add(cs, conns, 1024, strtol(star + 3, NULL, 10));
	}
	free(text);
}

/* ---- python3 -m http.server ----------------------------------------------- */

static int python_start(void)
{
	char *argv[] = { PYTHON, "-m", "http.server", "--bind", "127.0.0.1", "--directory", html,
			 "--protocol", "HTTP/1.1", "0", NULL };
	static const char *const env[] = { "PYTHONUNBUFFERED=1", NULL };

	require(PYTHON, "python3");
	return spawn_and_read_port(argv, env, 1, path_in(logs, "python.err"));
}

/* ---- loadcheck ------------------------------------------------------------ */

struct run {
	char *out;	/* the summary line */
	char *err;	/* diagnostics */
	int status;
	long ms;
};

/*
 * Runs loadcheck against port: REQUESTS requests over conns connections,
 * share of them with a client ID, URLs under path_prefix; checks the logs
 * (NULL-terminated) for lines_per_request lines each, and writes the echoed
 * generated IDs to ids.
 */
static struct run loadcheck(int port, int conns, const char *share, const char *path_prefix,
			    int lines_per_request, const char *ids, const char *const *logv)
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
	snprintf(n, sizeof(n), "%d", REQUESTS);
	snprintf(c, sizeof(c), "%d", conns);
	snprintf(k, sizeof(k), "%d", lines_per_request);
	snprintf(t, sizeof(t), "%d", RUN_MS);
	for (; *logv && a < 60; logv++) {
		argv[a++] = "--log";
		argv[a++] = (char *)*logv;
	}
	argv[a] = NULL;
	r.status = proc_wait(proc_start(argv, NULL, 0, path_in(dir, "lc.out"), path_in(dir, "lc.err")),
			     RUN_MS + 20000);
	r.ms = proc_now_ms() - start;
	r.out = slurp(path_in(dir, "lc.out"), NULL);
	r.err = slurp(path_in(dir, "lc.err"), NULL);
	return r;
}

/* Asserts loadcheck's exact summary for a run where every line is right. */
static void expect_clean(struct run *r, const char *what, int lines_per_request)
{
	char want[256];
	long lines = (long)REQUESTS * lines_per_request;

	snprintf(want, sizeof(want),
		 "requests=%d lines=%ld ok=%ld wrong=0 unknown=0 unprefixed=0 unlogged=0 miscounted=0 "
		 "no_echo=0 echo_mismatch=0 failed=0\n",
		 REQUESTS, lines, lines);
	cr_assert_str_eq(r->out, want, "%s: loadcheck said\n%s%s", what, r->out, r->err);
	cr_assert_eq(r->status, 0, "%s: loadcheck status %d", what, r->status);
	cr_log_info("%s: %ld ms: %.*s", what, r->ms, (int)strcspn(r->out, "\n"), r->out);
}

/* ---- IDs ------------------------------------------------------------------ */

static int is_uuid4(const char *s, size_t n)
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

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The file holds want lines, each a UUIDv4, no two alike. */
static void expect_unique_uuids(const char *path, long want)
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

static int http_open(int port)
{
	struct timeval tv = { IO_S, 0 };
	int rcv = 16384, fd = tcp_connect(port);

	cr_assert_geq(fd, 0, "connect to %d: %s", port, strerror(errno));
	/* A small receive buffer makes the server meet a full socket many times. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static int hdr_is(const char *l, const char *name)
{
	size_t k = strlen(name);

	return strncasecmp(l, name, k) == 0 && l[k] == ':';
}

/* GETs path on fd (keep-alive), with X-Request-Id: cid unless NULL. */
static void http_get(int fd, const char *path, const char *cid, struct resp *r)
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
static char *line_naming(const char *log, const char *tk)
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

/*
 * GETs the 1 MiB file BIG_GETS times over one keep-alive connection, half the
 * times with a client ID: every body is the file's bytes, every response
 * carries exactly one X-Request-Id (the client's, or a fresh UUIDv4), and the
 * log line naming each request carries that ID.
 */
static void big_file_arrives_intact(int port, const char *url, const char *log)
{
	int fd = http_open(port);

	for (int i = 0; i < BIG_GETS; i++) {
		char path[256], tk[64], cid[64], prefix[200], *line;
		struct resp r;

		snprintf(tk, sizeof(tk), "bigtk%dp%d", i, (int)getpid());
		snprintf(cid, sizeof(cid), "big-client-%d-%d", i, (int)getpid());
		snprintf(path, sizeof(path), "%s?%s", url, tk);
		http_get(fd, path, i % 2 ? cid : NULL, &r);
		cr_assert_eq(r.status, 200, "GET %s: status %d", path, r.status);
		cr_assert_eq(r.nids, 1, "GET %s: %d X-Request-Id headers", path, r.nids);
		if (i % 2)
			cr_assert_str_eq(r.id, cid, "GET %s: the client's ID was not kept", path);
		else
			cr_assert(is_uuid4(r.id, strlen(r.id)), "GET %s: echoed ID %s", path, r.id);
		cr_assert_eq(r.clen, BIG_SIZE, "GET %s: Content-Length %ld", path, r.clen);
		for (long b = 0; b < BIG_SIZE; b++)
			cr_assert_eq(r.body[b], big[b], "GET %s: body differs from the file at byte %ld", path, b);
		snprintf(prefix, sizeof(prefix), "[req:%s] ", r.id);
		line = line_naming(log, tk);
		cr_assert_eq(strncmp(line, prefix, strlen(prefix)), 0, "expected %s: %s", prefix, line);
		free(line);
		free(r.body);
	}
	close(fd);
}

/* ---- the fixture ---------------------------------------------------------- */

static void setup(void)
{
	static char d[64];
	size_t got = 0;

	snprintf(d, sizeof(d), "%s", tmpdir_new());
	dir = d;
	/* nginx's workers drop root for nobody, who must reach the static root. */
	cr_assert_eq(chmod(dir, 0755), 0);
	snprintf(html, sizeof(html), "%s/html", dir);
	snprintf(logs, sizeof(logs), "%s/logs", dir);
	cr_assert_eq(mkdir(html, 0755), 0);
	cr_assert_eq(mkdir(logs, 0755), 0);
	cr_assert_eq(mkdir(path_in(dir, "tmp"), 0755), 0);
	write_file(path_in(html, "ok.txt"), "ok\n", 3);
	big = malloc(BIG_SIZE);
	while (got < BIG_SIZE) {
		ssize_t n = getrandom(big + got, BIG_SIZE - got, 0);

		cr_assert_gt(n, 0);
		got += (size_t)n;
	}
	write_file(path_in(html, "big.bin"), big, BIG_SIZE);
	guard_start();
}

static void teardown(void)
{
	int st;

	while (ngroups > 0)
		group_stop(groups[--ngroups]);
	while (nout_fds > 0)
		close(out_fds[--nout_fds]);
	free(big);
	big = NULL;
	tmpdir_remove(dir);
	if (guard_fd >= 0) {
		guard_tell(0);
		close(guard_fd);
		waitpid(guard_pid, &st, 0);
		guard_fd = -1;
	}
}

TestSuite(nginx, .init = setup, .fini = teardown, .timeout = 150);
TestSuite(python, .init = setup, .fini = teardown, .timeout = 150);

/* ---- nginx ---------------------------------------------------------------- */

/*
 * Static requests, half with the client's own ID: each is named by exactly
 * one access-log line and one error-log line ("open() ... failed"), and both
 * carry its ID; every response echoes it.
 */
Test(nginx, every_static_request_is_logged_with_its_id_in_both_logs)
{
	int port = nginx_start(free_port());
	const char *const lv[] = { path_in(logs, "access.log"), path_in(logs, "error.log"), NULL };
	struct run r = loadcheck(port, CONNS, "0.5", "/t/", 2, path_in(dir, "ids"), lv);

	int workers, conns;

	expect_clean(&r, "nginx, static", 2);
	nginx_error_lines(&workers, &conns);
	cr_assert_eq(conns, CONNS, "%d connections served the requests, not %d kept alive", conns, CONNS);
	nginx_expect_no_alerts();
}

/*
 * Every request gets a generated ID, served by both forked workers: 5000
 * distinct UUIDv4s, so no worker repeats the master's random state or the
 * other worker's.
 */
Test(nginx, generated_ids_never_repeat_across_the_two_workers)
{
	int port = nginx_start(free_port());
	const char *const lv[] = { path_in(logs, "access.log"), path_in(logs, "error.log"), NULL };
	struct run r = loadcheck(port, CONNS, "0", "/t/", 2, path_in(dir, "ids"), lv);

	int workers, conns;

	expect_clean(&r, "nginx, generated IDs", 2);
	nginx_error_lines(&workers, &conns);
	cr_assert_eq(workers, 2, "%d workers served requests", workers);
	expect_unique_uuids(path_in(dir, "ids"), REQUESTS);
	nginx_expect_no_alerts();
}

/*
 * Requests proxied to an upstream that takes 20-50 ms, many in flight at once,
 * with loadcheck checking one of nginx's logs.
 */
static void proxied_requests_check(const char *log, const char *what)
{
	int port = nginx_start(upstream_start());
	const char *const lv[] = { path_in(logs, log), NULL };
	struct run r = loadcheck(port, PROXY_CONNS, "0.5", "/p/", 1, path_in(dir, "ids"), lv);

	expect_clean(&r, what, 1);
	/* Serially the upstream alone would take REQUESTS * UP_MIN_MS. */
	cr_expect_lt(r.ms * 4, (long)REQUESTS * UP_MIN_MS, "%ld ms: too few requests were in flight at once",
		     r.ms);
	nginx_expect_no_alerts();
}

/* The access-log line, written once the response is sent, carries the client request's ID. */
Test(nginx, proxied_requests_access_log_lines_carry_the_client_request_ids)
{
	proxied_requests_check("access.log", "nginx, proxied, access.log");
}

/*
 * nginx's warning about the upstream's answer ("upstream sent more data than
 * specified in Content-Length"), logged while it reads the upstream
 * connection, carries the client request's ID: the upstream connection
 * inherits the context of the request that opened and wrote it.
 */
Test(nginx, proxied_requests_upstream_warnings_carry_the_client_request_ids)
{
	proxied_requests_check("error.log", "nginx, proxied, error.log");
}

Test(nginx, large_file_arrives_byte_identical_with_sendfile_on)
{
	int port = nginx_start(free_port());

	big_file_arrives_intact(port, "/sendfile-on/big.bin", path_in(logs, "access.log"));
	nginx_expect_no_alerts();
}

Test(nginx, large_file_arrives_byte_identical_with_sendfile_off)
{
	int port = nginx_start(free_port());

	big_file_arrives_intact(port, "/sendfile-off/big.bin", path_in(logs, "access.log"));
	nginx_expect_no_alerts();
}

/* ---- python3 -m http.server ----------------------------------------------- */

/*
 * A thread per connection, one stderr line per request: each line carries
 * its request's ID, every response echoes it, and the generated ones are
 * distinct UUIDv4s.
 */
Test(python, every_request_is_logged_on_stderr_with_its_id)
{
	int port = python_start();
	const char *const lv[] = { path_in(logs, "python.err"), NULL };
	struct run r = loadcheck(port, CONNS, "0.5", "/ok.txt?", 1, path_in(dir, "ids"), lv);

	char *err;

	expect_clean(&r, "python", 1);
	expect_unique_uuids(path_in(dir, "ids"), REQUESTS / 2);
	err = slurp(path_in(logs, "python.err"), NULL);
	cr_expect_null(strstr(err, "Traceback"), "python.err:\n%s", tail_of(path_in(logs, "python.err")));
	free(err);
}

Test(python, large_file_arrives_byte_identical)
{
	int port = python_start();

	big_file_arrives_intact(port, "/big.bin", path_in(logs, "python.err"));
}
