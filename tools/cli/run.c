/*
 * reqctx run: exec a command with libreqctx.so preloaded.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "cli.h"
#include "config.h"
#include "fields.h"
#include "inspect.h"

static const char help[] =
	"Usage: reqctx run [OPTIONS] [--] CMD [ARGS...]\n"
	"\n"
	"Runs CMD with libreqctx.so preloaded: the library's absolute path is appended\n"
	"to LD_PRELOAD (existing entries are kept; it is not added twice).\n"
	"\n"
	"Options (each sets one of the library's environment variables):\n"
	"  --header NAME     request/response header with the ID      (REQCTX_HEADER,\n"
	"                    default " REQCTX_DEFAULT_HEADER ")\n"
	"  --prefix FMT      log prefix, exactly one %s, %% for a %    (REQCTX_PREFIX,\n"
	"                    default \"" REQCTX_DEFAULT_PREFIX "\")\n"
	"  --format FMT      what log lines get: prefix, logfmt (FIELD=ID first), json\n"
	"                    (the field in JSON object lines, the prefix in the others)\n"
	"                    or auto (the same as json)             (REQCTX_FORMAT,\n"
	"                    default prefix)\n"
	"  --field NAME      the ID's key in logfmt and JSON lines, 1-64 characters\n"
	"                    from A-Z a-z 0-9 _ . -                  (REQCTX_FIELD,\n"
	"                    default request_id)\n"
	"  --log-file GLOB   files opened for append whose name matches GLOB are logs;\n"
	"                    repeatable, added to the existing list    (REQCTX_LOG_FILES,\n"
	"                    default " REQCTX_DEFAULT_LOG_FILES ")\n"
	"  --log-fds LIST    comma-separated fds that are log streams  (REQCTX_LOG_FDS,\n"
	"                    default " REQCTX_DEFAULT_LOG_FDS ")\n"
	"  --child-log-fds LIST  the same for programs CMD starts   (REQCTX_CHILD_LOG_FDS,\n"
	"                    default 2)\n"
	"  --no-echo         do not add the header to responses        (REQCTX_ECHO=0)\n"
	"  --bare            leave lines outside requests unprefixed   (REQCTX_UNKNOWN=bare)\n"
	"  --no-handoff      job queues do not carry contexts          (REQCTX_HANDOFF=0)\n"
	"  --no-crash        no crash reports                          (REQCTX_CRASH=0)\n"
	"  --force           run CMD even if it cannot be preloaded\n"
	"  -h, --help        this text\n"
	"\n"
	"The library is $REQCTX_LIBRARY if set, else libreqctx.so next to this program,\n"
	"else ../lib, ../lib64 or ../lib/x86_64-linux-gnu relative to it.\n"
	"Before exec, CMD is checked as 'reqctx doctor' does: a static, setuid, setgid,\n"
	"setcap, Go or foreign-architecture program is refused (exit 1) unless --force.\n"
	"\n"
	"Exit status: that of CMD; 1 if the library is missing or CMD cannot be\n"
	"preloaded, 2 for a usage error, 126 if CMD cannot be executed, 127 if it is\n"
	"not found.\n";

struct run_opts {
	const char *header, *prefix, *log_fds, *child_fds, *format, *field;
	int no_echo, bare, no_handoff, no_crash, force;
	char globs[RQ_GLOBS_BYTES];
	int nglobs;
};

/* Whether the library takes v as a list of fds (its own rule, src/config.c). */
static int fds_ok(const char *v)
{
	int fds[RQ_LOGFDS_MAX], n;

	return rq_config_fds_parse(v, fds, &n) == 0;
}

/* Appends a glob to the list the library will read, if the library takes the result. */
static int add_glob(struct run_opts *o, const char *glob)
{
	const char *base = getenv("REQCTX_LOG_FILES");
	const char *globs[RQ_GLOBS_MAX];
	char list[2 * RQ_GLOBS_BYTES], split[RQ_GLOBS_BYTES];
	int n;

	if (!*glob || strchr(glob, ':'))
		return rc_usage_err("run", "--log-file '%s': a glob must be non-empty and "
				    "contain no ':'", glob);
	if (!o->nglobs)
		snprintf(o->globs, sizeof(o->globs), "%s",
			 base ? base : REQCTX_DEFAULT_LOG_FILES);
	if ((size_t)snprintf(list, sizeof(list), "%s%s%s", o->globs, *o->globs ? ":" : "",
			     glob) >= sizeof(list) ||
	    rq_config_globs_split(list, split, globs, &n) < 0)
		return rc_usage_err("run", "too many --log-file globs (the library takes at "
				    "most %d, %d bytes in all)", RQ_GLOBS_MAX, RQ_GLOBS_BYTES - 1);
	memcpy(o->globs, list, strlen(list) + 1);
	o->nglobs++;
	return 0;
}

static int parse(int argc, char **argv, struct run_opts *o)
{
	static const struct option longs[] = {
		{ "header", required_argument, NULL, 'H' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "format", required_argument, NULL, 'm' },
		{ "field", required_argument, NULL, 'k' },
		{ "log-file", required_argument, NULL, 'l' },
		{ "log-fds", required_argument, NULL, 'f' },
		{ "child-log-fds", required_argument, NULL, 'c' },
		{ "no-echo", no_argument, NULL, 'E' },
		{ "bare", no_argument, NULL, 'b' },
		{ "no-handoff", no_argument, NULL, 'O' },
		{ "no-crash", no_argument, NULL, 'C' },
		{ "force", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rc_prefix pfx;
	struct rc_ids ids;
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", longs, NULL)) != -1) {
		switch (c) {
		case 'H':
			if (rq_config_header_ok(optarg) < 0)
				return rc_usage_err("run", "--header '%s' is not a header name "
						    "(1-%d token characters)", optarg, RQ_HDR_MAX);
			o->header = optarg;
			break;
		case 'p':
			if (rc_prefix_parse(optarg, &pfx) < 0)
				return rc_usage_err("run", "--prefix '%s' needs exactly one %%s, "
						    "printable characters, %%%% for a literal %%, "
						    "and at most %d characters on each side",
						    optarg, RC_PFX_PART);
			o->prefix = optarg;
			break;
		case 'm':
			if (rq_config_format_parse(optarg) < 0)
				return rc_usage_err("run", "--format '%s' is not prefix, logfmt, json "
						    "or auto", optarg);
			o->format = optarg;
			break;
		case 'k':
			if (rc_field_set(&ids, optarg) < 0)
				return rc_usage_err("run", "--field '%s' is not a field name (1-%d "
						    "characters from A-Z a-z 0-9 _ . -)", optarg,
						    RC_FIELD_MAX);
			o->field = optarg;
			break;
		case 'l':
			if (add_glob(o, optarg))
				return RC_EXIT_USAGE;
			break;
		case 'f':
			if (!fds_ok(optarg))
				return rc_usage_err("run", "--log-fds '%s' is not a comma-separated "
						    "list of at most %d fds", optarg, RQ_LOGFDS_MAX);
			o->log_fds = optarg;
			break;
		case 'c':
			if (!fds_ok(optarg))
				return rc_usage_err("run", "--child-log-fds '%s' is not a "
						    "comma-separated list of at most %d fds",
						    optarg, RQ_LOGFDS_MAX);
			o->child_fds = optarg;
			break;
		case 'E': o->no_echo = 1; break;
		case 'b': o->bare = 1; break;
		case 'O': o->no_handoff = 1; break;
		case 'C': o->no_crash = 1; break;
		case 'F': o->force = 1; break;
		case 'h':
			fputs(help, stdout);
			return -1;
		default:
			return rc_usage_err("run", "unknown or incomplete option '%s'",
					    argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return rc_usage_err("run", "no command given");
	return 0;
}

static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return !strcmp(a, b) || (stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
				 sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

/* Sets LD_PRELOAD to its old entries plus lib, unless lib is already one. */
static int set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	char *copy, *tok, *save = NULL, *val;
	int present = 0, r;
	size_t len;

	if (!old || !old[strspn(old, " :")])
		return setenv("LD_PRELOAD", lib, 1);
	copy = strdup(old);
	if (!copy)
		return -1;
	for (tok = strtok_r(copy, " :", &save); tok; tok = strtok_r(NULL, " :", &save))
		present |= same_file(tok, lib);
	free(copy);
	if (present)
		return 0;
	len = strlen(old);
	while (len && (old[len - 1] == ' ' || old[len - 1] == ':'))
		len--;
	if (asprintf(&val, "%.*s:%s", (int)len, old, lib) < 0)
		return -1;
	r = setenv("LD_PRELOAD", val, 1);
	free(val);
	return r;
}

/*
 * exec keeps the pid: naming it in REQCTX_TOP_PID, with the server flag set,
 * makes CMD the top of its tree (even under an inherited REQCTX_TOP_PID of an
 * outer preloaded process) and a server from the start, so its fd 1 and 2
 * are logs at once and the programs it starts know they are its children.
 */
static int set_top(void)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%ld:1", (long)getpid());
	return setenv("REQCTX_TOP_PID", buf, 1);
}

static int set_env(const struct run_opts *o, const char *lib)
{
	if (set_top() ||
	    ((o->header && setenv("REQCTX_HEADER", o->header, 1)) ||
	    (o->prefix && setenv("REQCTX_PREFIX", o->prefix, 1)) ||
	    (o->format && setenv("REQCTX_FORMAT", o->format, 1)) ||
	    (o->field && setenv("REQCTX_FIELD", o->field, 1)) ||
	    (o->nglobs && setenv("REQCTX_LOG_FILES", o->globs, 1)) ||
	    (o->log_fds && setenv("REQCTX_LOG_FDS", o->log_fds, 1)) ||
	    (o->child_fds && setenv("REQCTX_CHILD_LOG_FDS", o->child_fds, 1)) ||
	    (o->no_echo && setenv("REQCTX_ECHO", "0", 1)) ||
	    (o->bare && setenv("REQCTX_UNKNOWN", "bare", 1)) ||
	    (o->no_handoff && setenv("REQCTX_HANDOFF", "0", 1)) ||
	    (o->no_crash && setenv("REQCTX_CRASH", "0", 1))))
		return -1;
	return set_preload(lib);
}

/*
 * Gives a Node or Python command its runtime adapter as the library's
 * constructor would (NODE_OPTIONS or PYTHONPATH, src/runtime.h), so that the
 * command starts with that environment in full view; the constructor then
 * finds it already there. REQCTX_RUNTIMES=0 leaves the environment alone.
 * Returns 0, or -1 if it cannot be set.
 */
static int set_adapter(const char *path, const char *lib)
{
	char js[RC_PATH_MAX], val[RQ_RT_ENV_MAX];
	enum rq_rt rt = rc_adapters_off() ? RQ_RT_NONE : rc_runtime(path);
	int r;

	if (!rt || rc_adapter(rt, lib, js, sizeof(js)) < 0)
		return 0;
	if (rt == RQ_RT_NODE)
		r = rq_rt_node_options(getenv("NODE_OPTIONS"), js, val, sizeof(val));
	else
		r = rq_rt_pythonpath(getenv("PYTHONPATH"), js, val, sizeof(val));
	if (r < 0)
		rc_err("%s: cannot add the %s adapter %s (%s); running without it", path,
		       rq_rt_name(rt), js, strerror(-r));
	return r == 1 ? setenv(rt == RQ_RT_NODE ? "NODE_OPTIONS" : "PYTHONPATH", val, 1) : 0;
}

int rc_cmd_run(int argc, char **argv)
{
	struct run_opts o = { 0 };
	char lib[RC_PATH_MAX], tried[2 * RC_PATH_MAX], path[RC_PATH_MAX];
	struct rc_report rep;
	const char *cmd;
	int r = parse(argc, argv, &o);

	if (r)
		return r < 0 ? RC_EXIT_OK : r;
	cmd = argv[optind];
	r = rc_resolve_cmd(cmd, path, sizeof(path));
	if (r == -ENOENT) {
		rc_err("%s: command not found", cmd);
		return RC_EXIT_NOTFOUND;
	}
	if (r < 0) {
		rc_err("%s: cannot execute: %s", cmd, strerror(-r));
		return RC_EXIT_NOEXEC;
	}
	r = rc_find_library(lib, sizeof(lib), tried, sizeof(tried));
	if (r < 0) {
		rc_err("cannot find libreqctx.so (tried %s); set REQCTX_LIBRARY", tried);
		return RC_EXIT_FAIL;
	}
	if (strpbrk(lib, " :")) {
		rc_err("%s: LD_PRELOAD cannot hold a path with a space or ':'", lib);
		return RC_EXIT_FAIL;
	}
	rc_inspect(path, lib, &rep);
	if (rep.first_fail >= 0 && !o.force) {
		rc_err("%s", rep.c[rep.first_fail].msg);
		rc_err("not running it without the library; --force runs it anyway");
		return RC_EXIT_FAIL;
	}
	if (set_env(&o, lib) < 0 || set_adapter(path, lib) < 0) {
		rc_err("cannot set the environment: %s", strerror(errno));
		return RC_EXIT_FAIL;
	}
	execv(path, argv + optind);
	r = errno;
	rc_err("%s: cannot execute: %s", path, strerror(r));
	return r == ENOENT ? RC_EXIT_NOTFOUND : RC_EXIT_NOEXEC;
}
