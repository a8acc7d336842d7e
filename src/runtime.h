/*
 * Runtime adapters: which runtime a program is, and the environment that
 * makes it load its adapter. Pure string functions, shared by the
 * constructor's bootstrap (preload/runtime.c) and `reqctx run`/`doctor`.
 *
 * The adapters are installed next to the library:
 *   <dir of libreqctx.so>/reqctx-adapters/node/reqctx.js     (and reqctx.node)
 *   <dir of libreqctx.so>/reqctx-adapters/python/            (sitecustomize.py, ...)
 * Node gets "--require <abs path of reqctx.js>" first in NODE_OPTIONS; Python
 * gets the python directory first in PYTHONPATH. Each is added once: a value
 * that already names it is left alone, so children are not bootstrapped twice.
 */
#ifndef RQ_RUNTIME_H
#define RQ_RUNTIME_H

#include <stddef.h>

enum rq_rt {
	RQ_RT_NONE,
	RQ_RT_NODE,   /* node, nodejs */
	RQ_RT_PYTHON, /* python, python3, python3.11, ... */
};

#define RQ_RT_NODE_JS "reqctx-adapters/node/reqctx.js" /* relative to the library's directory */
#define RQ_RT_PY_DIR  "reqctx-adapters/python"
#define RQ_RT_ENV_MAX 8192 /* longest NODE_OPTIONS or PYTHONPATH written */

/* The runtime a program whose file is named `name` (a path or its last component) is. */
enum rq_rt rq_rt_kind(const char *name);

/* "node", "python" or "none". */
const char *rq_rt_name(enum rq_rt rt);

/*
 * Writes into out (size bytes) the NODE_OPTIONS value that requires `js`
 * before anything in `old` (NULL: unset). Returns 1 when out holds the new
 * value; 0 when old already requires js (out untouched); -EINVAL when js is
 * not absolute or holds a character NODE_OPTIONS would split or unquote
 * (white space, a quote, a backslash); -ENAMETOOLONG when out is too small.
 */
int rq_rt_node_options(const char *old, const char *js, char *out, size_t size);

/*
 * The same for PYTHONPATH and the directory `dir`: 1, 0 when dir is already
 * an entry of old, -EINVAL when dir is not absolute or holds ':', or
 * -ENAMETOOLONG.
 */
int rq_rt_pythonpath(const char *old, const char *dir, char *out, size_t size);

#endif
