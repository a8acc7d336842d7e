/*
 * The reqctx command: shared declarations.
 *
 * One file per subcommand (run.c, logs.c, doctor.c) plus helpers: util.c
 * (messages, PATH and library lookup, prefix formats), inspect.c (can a
 * program be preloaded?), linereader.c, logagg.c (--group, --stats) and
 * json.c. Helpers return 0 or a negative errno.
 */
#ifndef RC_CLI_H
#define RC_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "../../include/reqctx.h"
#include "config.h"
#include "id.h"

#ifndef REQCTX_VERSION
#define REQCTX_VERSION "unknown"
#endif

#define RC_EXIT_OK       0   /* success */
#define RC_EXIT_FAIL     1   /* failure, or nothing matched */
#define RC_EXIT_USAGE    2   /* bad command line */
#define RC_EXIT_NOEXEC   126 /* the command exists but cannot be executed */
#define RC_EXIT_NOTFOUND 127 /* the command does not exist */

#define RC_PATH_MAX 4096     /* longest path handled */
#define RC_PFX_PART RQ_PFX_PART /* longest text on either side of %s (the library's) */

/* The library file names looked for, most specific first. */
#define RC_LIB_SONAME "libreqctx.so.0"
#define RC_LIB_DEVNAME "libreqctx.so"

/* A prefix format split at its %s (src/config.h). */
#define rc_prefix rq_prefix_parts

/* Subcommands: each returns the process exit code. */
int rc_cmd_run(int argc, char **argv);
int rc_cmd_logs(int argc, char **argv);
int rc_cmd_doctor(int argc, char **argv);

/* Prints "reqctx: <message>\n" on stderr. */
void rc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "reqctx <sub>: ...; try 'reqctx <sub> --help'" and returns RC_EXIT_USAGE. */
int rc_usage_err(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Resolves a command name as execvp would: a name with a slash is taken as
 * is, others are looked up in $PATH (default "/bin:/usr/bin"). Writes the
 * path found to out. Returns 0, -ENOENT if nothing by that name exists,
 * -EACCES if only non-executable files or directories do, -ENAMETOOLONG.
 */
int rc_resolve_cmd(const char *cmd, char *out, size_t size);

/*
 * Finds libreqctx.so: $REQCTX_LIBRARY if set, else next to the reqctx
 * executable (build tree), else in ../lib, ../lib64, ../lib/<multiarch>
 * relative to it. Writes an absolute path to out. Returns 0, -ENOENT when not
 * found (tried paths are listed in `tried` if non-NULL), or -errno.
 */
int rc_find_library(char *out, size_t size, char *tried, size_t tried_size);

/*
 * Splits a prefix format with the library's rules: exactly one %s, %% for a
 * literal %, no control characters, at most RC_PFX_PART bytes on each side.
 * Returns 0 or -EINVAL.
 */
int rc_prefix_parse(const char *fmt, struct rc_prefix *p);

/* 1 if c may appear in a request ID (A-Z a-z 0-9 - _ . : @ + = / ~): the library's table. */
static inline int rc_id_char(unsigned char c)
{
	return rq_id_char(c);
}

/* 1 if s (NUL-terminated) is a valid request ID. */
int rc_id_valid(const char *s);

/*
 * Parses the prefix at the start of line[0..len). On a match, sets *id and
 * *id_len to the ID and returns the offset of the text after the prefix. The
 * ID is the longest run of ID characters (at most REQCTX_ID_MAX) followed by
 * the tail. Returns -1 when the line is unprefixed.
 */
long rc_prefix_match(const struct rc_prefix *p, const char *line, size_t len,
		     const char **id, size_t *id_len);

/* Buffered stdout for bulk output; rc_out_flush returns 0 or -errno. */
void rc_out(const void *data, size_t len);
void rc_out_str(const char *s);
int rc_out_flush(void);

#endif
