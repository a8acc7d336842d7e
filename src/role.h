/*
 * Which standard streams of a process are logs, and from when.
 *
 * A program that is not a server must come out byte for byte unchanged under
 * a global LD_PRELOAD (`ls -l > file`, `pg_dump > backup.sql`, `python3 x.py
 * | jq`). So fd 1 and fd 2 (REQCTX_LOG_FDS) become log streams only when the
 * process becomes a server: it calls listen(), or accept()s on a listening
 * socket it inherited (pre-fork workers, socket activation), or it was
 * started as one (`reqctx run`, or REQCTX_LOG_FDS set explicitly). Lines
 * written before that pass through bare. Files opened for appending whose
 * name looks like a log are logs from the start, as before.
 *
 * A process started by a server (a CGI script, system(), a tool it spawns)
 * usually hands its stdout to the server as data: there only
 * REQCTX_CHILD_LOG_FDS (stderr) are logs, from the start, and stdout never
 * is. A child learns that its parent is a server from REQCTX_TOP_PID =
 * "<pid>:<0|1>": the top process of a tree writes it at start-up and flips the
 * flag in place when it becomes a server, so that children started through
 * any path (fork+exec, posix_spawn, system, popen, vfork) inherit the state
 * current when they start. A CGI/1.1 child is a child of a server whatever
 * its environment says: GATEWAY_INTERFACE is set by the server for every CGI
 * child, and survives servers that clean the environment (lighttpd keeps
 * LD_PRELOAD but drops REQCTX_*).
 */
#ifndef RQ_ROLE_H
#define RQ_ROLE_H

struct rq_role {
	int top;    /* this process heads its tree: it (re)writes REQCTX_TOP_PID */
	int child;  /* started by a server: REQCTX_CHILD_LOG_FDS are logs from the start */
	int server; /* a server from the start: REQCTX_LOG_FDS are logs at once */
};

/*
 * Parses REQCTX_TOP_PID: "<pid>" (as written by older versions) or
 * "<pid>:<0|1>". Returns 0 with *pid and *server set, or -EINVAL.
 */
int rq_top_parse(const char *v, long *pid, int *server);

/*
 * Decides the role of process `pid` at start-up. `top_env` is
 * REQCTX_TOP_PID (NULL if unset), `cgi` whether GATEWAY_INTERFACE is set,
 * `logfds_set` whether REQCTX_LOG_FDS is set explicitly.
 *
 * - A CGI child, or a process whose REQCTX_TOP_PID names another process
 *   that is a server, is a child.
 * - Anything else heads its own tree (top): the same pid (exec without fork
 *   keeps it), an unset or unreadable variable, or a parent that is not a
 *   server (a shell, a supervisor); it is a server from the start if the
 *   variable already says so for its own pid (`reqctx run`) or
 *   REQCTX_LOG_FDS is set explicitly.
 */
void rq_role_decide(const char *top_env, long pid, int cgi, int logfds_set,
		    struct rq_role *r);

#endif
