/*
 * Children that start in their parent's request.
 *
 * A program a server starts while one of its threads is in a request (a CGI
 * script, system(), posix_spawn, fork+exec) is usually doing that request's
 * work. It starts in that request's context: the exec wrappers
 * (preload/exec.c) pass the ID in the child's environment as
 * REQCTX_PARENT_ID=<id>, which the library reads once at start-up in the
 * child and makes the context of its first thread. A CGI child (its
 * environment has GATEWAY_INTERFACE) also gets the ID as the CGI meta-variable
 * of the request header (HTTP_X_REQUEST_ID for X-Request-Id) when the server
 * did not set one, so that the script can read it the CGI way.
 *
 * Outside a request nothing is added. Workers forked without exec (nginx,
 * gunicorn) keep what they inherit in memory and are not concerned.
 */
#ifndef RQ_CHILD_H
#define RQ_CHILD_H

#include <stddef.h>

#include "config.h"
#include "reqctx.h"

#define RQ_PARENT_VAR "REQCTX_PARENT_ID"

/* Text rq_child_env may add: the two variables, each with an ID. */
#define RQ_CHILD_TEXT (sizeof(RQ_PARENT_VAR "=") + sizeof("HTTP_=") + RQ_HDR_MAX + \
		       2 * (REQCTX_ID_MAX + 1))

/* Environment entries rq_child_env accepts; beyond that the child's environment is left as is. */
#define RQ_CHILD_ENV_MAX 4096

/* The number of entries of envp (NULL-terminated), or -1 if more than RQ_CHILD_ENV_MAX. */
long rq_child_env_count(char *const envp[]);

/*
 * Builds in vec (room for n + 3 pointers, n = rq_child_env_count(envp)) and
 * text (RQ_CHILD_TEXT bytes) the environment of a child started in request
 * `id` (len bytes, a valid ID): envp's entries without any REQCTX_PARENT_ID,
 * then REQCTX_PARENT_ID=<id>, then, if envp has GATEWAY_INTERFACE and no
 * meta-variable for the request header, that meta-variable set to the ID.
 * Returns vec. No allocation: safe in a vfork child.
 */
char **rq_child_env(char *const envp[], long n, const char *id, size_t len, char **vec, char *text);

/*
 * The command a shell runs for system() or popen() in request `id`: it
 * exports REQCTX_PARENT_ID=<id>, then execs a second shell that runs `cmd`
 * unchanged, so that the shell running the command starts in the request
 * too (its own messages, "sh: 1: x: not found", carry the ID). In out, with
 * room for rq_child_cmd_size(cmd, len) bytes, NUL included. Returns out.
 */
size_t rq_child_cmd_size(const char *cmd, size_t len);
char *rq_child_cmd(const char *cmd, const char *id, size_t len, char *out);

/*
 * The ID a child was started in: REQCTX_PARENT_ID's value, if it is a valid
 * ID, copied into out (REQCTX_ID_MAX + 1 bytes). Returns its length, or 0.
 */
size_t rq_child_parent_id(const char *value, char *out);

#endif
