/*
 * Crash reports that name the request.
 *
 * On a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) the crashing
 * thread writes to fd 2 one line naming the signal, the address and the
 * thread, then one line per frame of its backtrace, each with the configured
 * prefix and the thread's current request ID ("unknown" outside a request):
 *
 *   [req:abc] fatal signal 11 (SIGSEGV) at 0x0 in thread 1234
 *   [req:abc]   #0 handle_request_crash+0x14 (crash)
 *   [req:abc]   #1 0x7f0e3c2a1d90 (?)
 *
 * The address is si_addr for a fault the kernel raised, and the interrupted
 * program counter for a signal sent by a process (abort, kill). A frame whose
 * function libunwind cannot name shows its address instead; a module not
 * loaded at start-up (dlopen'ed later) shows as "?".
 *
 * Then the signal is handed on: to the host's handler if it installed one
 * (the table in src/sigctx.h keeps it), else to the default action, so that
 * the process dies exactly as it would have without reqctx (same signal,
 * same core dump).
 *
 * Everything reachable from rq_crash_handler is async-signal-safe: fixed
 * buffers, our own number formatting, raw writes, libunwind's unwinder over
 * an address space whose memory reads are checked with process_vm_readv (or
 * a pipe made and closed within the report), and a module table captured
 * once by rq_crash_init. No fd is held between reports.
 */
#ifndef RQ_CRASH_H
#define RQ_CRASH_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

#define RQ_CRASH_FRAMES   64          /* most frames reported */
#define RQ_CRASH_LINE     768         /* longest report line, newline included */
#define RQ_CRASH_NAME     256         /* longest function name kept */
#define RQ_CRASH_MODS     256         /* modules remembered at start-up */
#define RQ_CRASH_MODNAME  64          /* longest module name kept */
#define RQ_CRASH_ALTSTACK (64 * 1024) /* alternate signal stack per thread */

typedef ssize_t (*rq_crash_write_fn)(int fd, const void *buf, size_t n);

/* "SIGSEGV" and so on for the five fatal signals, else NULL. */
const char *rq_crash_signame(int sig);

/* Writes v in decimal (hex: lower case, no 0x) to out, unterminated. Returns its length (at most 20). */
size_t rq_crash_fmt_dec(char *out, unsigned long long v);
size_t rq_crash_fmt_hex(char *out, unsigned long long v);

/*
 * The report's first line, with the configured prefix around `id`, into buf
 * (cap bytes, cap >= 2). Returns its length; the line always ends with a
 * newline, cut short if it does not fit.
 */
size_t rq_crash_head(char *buf, size_t cap, const char *id, int sig, uintptr_t addr, long tid);

/*
 * One frame line: "#n fn+0xoff (module)", or "#n 0xip (module)" when fn is
 * NULL (off is then the address). Same contract as rq_crash_head.
 */
size_t rq_crash_frame(char *buf, size_t cap, const char *id, unsigned n, const char *fn,
		      uintptr_t off, const char *module);

/* The name of the module loaded at start-up that holds ip, or "?". */
const char *rq_crash_module(uintptr_t ip);

/*
 * Writes the whole report for signal sig to fd through wr: the first line,
 * then the backtrace from uc (the handler's ucontext) or, if uc is NULL, from
 * the caller of rq_crash_report. si may be NULL (address 0). Async-signal-safe.
 */
void rq_crash_report(rq_crash_write_fn wr, int fd, int sig, const siginfo_t *si, void *uc);

/* The handler the kernel gets for the fatal signals (see src/sigctx.h). */
void rq_crash_handler(int sig, siginfo_t *si, void *uc);

/*
 * Captures the module table and sets libunwind up, outside any handler.
 * libunwind opens a pipe for its own memory check when it is first set up;
 * the pipe wrappers refuse it while rq_crash_no_pipes is set (the check is
 * never used: see rq_crash_report), so the host keeps all its fds.
 */
void rq_crash_init(void);
extern RQ_TLS int rq_crash_no_pipes;

/*
 * Gives the calling thread an alternate signal stack of RQ_CRASH_ALTSTACK
 * bytes (plus a guard page), unless it already has one. Returns the mapping
 * to pass to rq_crash_altstack_free, or NULL if none was installed.
 */
void *rq_crash_altstack(void);

/* Removes the calling thread's alternate stack if it is `mem`, and unmaps it. */
void rq_crash_altstack_free(void *mem);

#endif
