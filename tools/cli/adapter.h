/*
 * Which runtime adapter a command gets (src/runtime.h), for `reqctx run`
 * (which sets it up the way the library's constructor would) and `reqctx
 * doctor` (which says so).
 */
#ifndef RC_ADAPTER_H
#define RC_ADAPTER_H

#include <stddef.h>

#include "runtime.h"

/*
 * The runtime of the executable at `path`: by its file name (after
 * symlinks), or for a #! script by its interpreter ("#!/usr/bin/env NAME":
 * by NAME).
 */
enum rq_rt rc_runtime(const char *path);

/*
 * Writes into out the adapter the library at `lib` gives runtime rt (the
 * Node adapter's reqctx.js, or the Python adapter's directory). Returns 0
 * if it is installed, -ENOENT if not (out still names where it would be).
 */
int rc_adapter(enum rq_rt rt, const char *lib, char *out, size_t size);

/* Returns 1 if REQCTX_RUNTIMES=0 or REQCTX_DISABLE=1 turns the adapters off. */
int rc_adapters_off(void);

#endif
