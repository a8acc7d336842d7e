/*
 * Can a program be preloaded? Shared by `reqctx run` (which refuses what
 * fails) and `reqctx doctor` (which prints every check).
 */
#ifndef RC_INSPECT_H
#define RC_INSPECT_H

#define RC_CHECKS_MAX 16  /* checks recorded, including a script's interpreters */
#define RC_MSG_MAX    768 /* longest check message */

struct rc_check {
	const char *name;      /* "format", "linking", "privileges", "runtime" */
	int ok;                /* 1 passed, 0 failed */
	char msg[RC_MSG_MAX];  /* a sentence naming the file */
};

struct rc_report {
	int n;
	struct rc_check c[RC_CHECKS_MAX];
	int first_fail;        /* index into c of the first failure, or -1 */
};

/*
 * Checks the executable at `path` (already resolved, known to exist) against
 * the ELF class and machine of the file `ref` (the library, or the reqctx
 * tool when the library is missing). A #! script is judged by its
 * interpreter, and "#!/usr/bin/env NAME" by NAME found in $PATH.
 */
void rc_inspect(const char *path, const char *ref, struct rc_report *r);

#endif
