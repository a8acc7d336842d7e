/*
 * reqctx: request correlation for unmodified servers.
 *
 * libreqctx.so is normally loaded with LD_PRELOAD. It gives every HTTP/1.x
 * request on an accepted connection an ID (the client's X-Request-Id when it
 * is valid, otherwise a fresh UUIDv4), keeps that ID as the calling thread's
 * current context while the connection is being served, prefixes every line
 * written to a log stream with "[req:<id>] " and echoes the ID in the
 * response head.
 *
 * The functions below let a program that knows about reqctx read and set the
 * context itself. They work the same when the library is preloaded and when
 * the program links it with -lreqctx.
 */
#ifndef REQCTX_H
#define REQCTX_H

#ifdef __cplusplus
extern "C" {
#endif

/* Longest request ID accepted, in bytes (not counting the NUL). */
#define REQCTX_ID_MAX 128

/* The ID reported outside any request. */
#define REQCTX_UNKNOWN "unknown"

/* Defaults of the environment variables read at start-up. */
#define REQCTX_DEFAULT_HEADER    "X-Request-Id"
#define REQCTX_DEFAULT_PREFIX    "[req:%s] "
#define REQCTX_DEFAULT_LOG_FDS   "1,2"
#define REQCTX_DEFAULT_LOG_FILES "*.log:*_log:*.log.[0-9]*:/var/log/*"

/*
 * The calling thread's current request ID, or "unknown" outside any request.
 * The string lives in thread-local storage: it stays valid until this thread's
 * context next changes (its next I/O on a connection, or the end of the
 * enclosing reqctx_run). Copy it to keep it longer.
 */
const char *reqctx_id(void);

/*
 * Runs fn(arg) with `id` as the calling thread's context, then restores the
 * context that was current before, whatever fn did to it. Calls nest: an inner
 * run overrides the ID, and the outer one is back when it returns.
 *
 * `id` must be 1 to REQCTX_ID_MAX characters from the set A-Z a-z 0-9 and
 * - _ . : @ + = / ~ (see reqctx_id_valid).
 *
 * Returns 0 after fn has run, or -EINVAL without calling fn if `id` is NULL or
 * invalid, or if fn is NULL.
 */
int reqctx_run(const char *id, void (*fn)(void *), void *arg);

/* Returns 1 if `id` is a valid request ID (see reqctx_run), 0 otherwise. */
int reqctx_id_valid(const char *id);

/*
 * A captured context, like AsyncLocalStorage.snapshot(): a plain value that
 * may be copied, stored with a job, and resumed on any thread. Interposition
 * cannot see hand-offs through a program's own data structures (a lock-free
 * queue, a callback list); capture there and run the consumer in the snapshot.
 * Treat the fields as private.
 */
typedef struct reqctx_snapshot {
	unsigned long long serial; /* 0: outside any request */
	unsigned int len;
	char id[REQCTX_ID_MAX + 1];
} reqctx_snapshot;

/* Captures the calling thread's current context into *s. */
void reqctx_snapshot_take(reqctx_snapshot *s);

/*
 * Runs fn(arg) in the captured context, then restores the caller's, like
 * reqctx_run. Returns 0 after fn has run, or -EINVAL without running it if s
 * or fn is NULL or s does not hold a valid context.
 */
int reqctx_snapshot_run(const reqctx_snapshot *s, void (*fn)(void *), void *arg);

/*
 * Makes the captured context the calling thread's current one until its next
 * switch (its next I/O on a connection, or another enter), like
 * AsyncLocalStorage.enterWith(). Prefer reqctx_snapshot_run, which restores.
 * Returns 0, or -EINVAL if s does not hold a valid context.
 */
int reqctx_snapshot_enter(const reqctx_snapshot *s);

/*
 * Handles: the cheapest way for a runtime's scheduler (Node's async hooks,
 * asyncio's handles) to capture a context when it schedules a callback and
 * to enter it when the callback runs.
 *
 * A handle is a number: 0 outside any request, else the context's serial,
 * unique per request in this process and the same in every copy of that
 * context (threads, carriers, hand-offs). Serials stay below 2^53, so a
 * JavaScript Number or a Python int holds one exactly.
 *
 * Handles are valid in the process that took them (and are not to be
 * trusted across fork). The library keeps the contexts behind them in a
 * bounded table of 65536 records (4 MiB at most, plus 576 KiB for IDs longer
 * than 48 bytes, mapped as used): a handle whose record was reused by a
 * request 65536 serials later (4096 for a long ID) enters "unknown", never
 * another request.
 */
typedef unsigned long long reqctx_handle;

/* The calling thread's current context, captured: a handle to enter later, on any thread. */
reqctx_handle reqctx_handle_take(void);

/*
 * Makes the context of handle h current on the calling thread until its
 * next switch ("unknown" for 0, or when h's record was reused). Returns the
 * handle of the context that was current before, so that entering it
 * restores the caller's context:
 *
 *   reqctx_handle prev = reqctx_handle_enter(h);
 *   callback();
 *   reqctx_handle_enter(prev);
 *
 * A few instructions when h is already current. Never fails, never
 * allocates, takes no lock; async-signal-safe.
 */
reqctx_handle reqctx_handle_enter(reqctx_handle h);

/*
 * The address of two doubles, valid for the calling thread's life:
 *   [0] always holds the thread's current handle (its serial; 0 outside any
 *       request);
 *   [1] is 1 from a reqctx_handle_enter that switched the context until the
 *       library next sets one itself (a read or an event on a connection or
 *       a carrier, a hand-off), else 0. A runtime that enters lazily, only
 *       where the library will look, tells by it whether the context of an
 *       I/O callback is still the one the library set when it read.
 * For runtimes that read memory faster than they call C (Node reads them
 * through a Float64Array): reading [0] does not intern the context, so a
 * value may stand for a handle only once reqctx_handle_take or
 * reqctx_handle_enter (which interns the context it leaves) has returned it,
 * and entering a handle equal to it can be skipped.
 *
 * A thread that calls reqctx_handle_enter is taken to have its contexts
 * managed by a runtime: from then on it takes no context from a
 * mutex+condvar hand-off (README "How context travels").
 */
const volatile double *reqctx_handle_current(void);

#ifdef __cplusplus
}
#endif

#endif /* REQCTX_H */
