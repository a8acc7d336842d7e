#define UNW_LOCAL_ONLY
#include "crash.h"

#include <errno.h>
#include <libunwind.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctx.h"
#include "sigctx.h"

extern int __sigaction(int, const struct sigaction *, struct sigaction *);
extern char *program_invocation_short_name;

struct mod {
	uintptr_t lo, hi; /* the span of its PT_LOAD segments */
	char name[RQ_CRASH_MODNAME];
};

static struct mod mods[RQ_CRASH_MODS];
static int nmods;

/* The fatal signal this thread is reporting, 0 if none: a crash inside the report. */
static RQ_TLS int reporting;

const char *rq_crash_signame(int sig)
{
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGILL: return "SIGILL";
	case SIGFPE: return "SIGFPE";
	case SIGABRT: return "SIGABRT";
	}
	return NULL;
}

size_t rq_crash_fmt_dec(char *out, unsigned long long v)
{
	char tmp[20];
	size_t n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

size_t rq_crash_fmt_hex(char *out, unsigned long long v)
{
	char tmp[16];
	size_t n = 0;

	do
		tmp[n++] = "0123456789abcdef"[v & 15];
	while ((v >>= 4) != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

/* A line being built in a fixed buffer; one byte is always kept for the newline. */
struct line {
	char *p;
	size_t n, cap;
};

static void add(struct line *l, const char *s, size_t len)
{
	while (len-- && l->n + 1 < l->cap)
		l->p[l->n++] = *s++;
}

static void adds(struct line *l, const char *s)
{
	add(l, s, strlen(s));
}

static void add_dec(struct line *l, unsigned long long v)
{
	char d[20];

	add(l, d, rq_crash_fmt_dec(d, v));
}

static void add_hex(struct line *l, unsigned long long v)
{
	char d[16];

	adds(l, "0x");
	add(l, d, rq_crash_fmt_hex(d, v));
}

static void start(struct line *l, char *buf, size_t cap, const char *id)
{
	*l = (struct line){ buf, 0, cap };
	add(l, rq_cfg.pfx_head, rq_cfg.pfx_head_len);
	adds(l, id);
	add(l, rq_cfg.pfx_tail, rq_cfg.pfx_tail_len);
}

static size_t finish(struct line *l)
{
	l->p[l->n++] = '\n';
	return l->n;
}

size_t rq_crash_head(char *buf, size_t cap, const char *id, int sig, uintptr_t addr, long tid)
{
	const char *name = rq_crash_signame(sig);
	struct line l;

	start(&l, buf, cap, id);
	adds(&l, "fatal signal ");
	add_dec(&l, (unsigned)sig);
	adds(&l, " (");
	adds(&l, name ? name : "?");
	adds(&l, ") at ");
	add_hex(&l, addr);
	adds(&l, " in thread ");
	add_dec(&l, (unsigned long)tid);
	return finish(&l);
}

size_t rq_crash_frame(char *buf, size_t cap, const char *id, unsigned n, const char *fn,
		      uintptr_t off, const char *module)
{
	struct line l;

	start(&l, buf, cap, id);
	adds(&l, "  #");
	add_dec(&l, n);
	adds(&l, " ");
	if (fn) {
		adds(&l, fn);
		adds(&l, "+");
	}
	add_hex(&l, off);
	adds(&l, " (");
	adds(&l, module);
	adds(&l, ")");
	return finish(&l);
}

const char *rq_crash_module(uintptr_t ip)
{
	for (int i = 0; i < nmods; i++)
		if (ip >= mods[i].lo && ip < mods[i].hi)
			return mods[i].name;
	return "?";
}

/* Writes all of buf, through short writes and EINTR; gives up on any other error. */
static void put(rq_crash_write_fn wr, int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t r = wr(fd, buf, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		buf += r;
		n -= (size_t)r;
	}
}

/* A fault the kernel raised, which the faulting instruction raises again if resumed. */
static int is_fault(int sig, const siginfo_t *si)
{
	return si && sig != SIGABRT && si->si_code > 0;
}

static long tid(void)
{
	return syscall(SYS_gettid);
}

void rq_crash_report(rq_crash_write_fn wr, int fd, int sig, const siginfo_t *si, void *uc)
{
	const struct rq_ctx *c = rq_ctx_cur();
	const char *id = c->serial ? c->id : "unknown";
	char buf[RQ_CRASH_LINE], name[RQ_CRASH_NAME];
	uintptr_t addr = si ? (uintptr_t)si->si_addr : 0;
	unw_context_t here;
	unw_cursor_t cur;
	unw_word_t ip, off;
	int ok;

	if (uc)
		ok = unw_init_local2(&cur, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) == 0;
	else
		ok = unw_getcontext(&here) == 0 && unw_init_local(&cur, &here) == 0 &&
		     unw_step(&cur) > 0; /* from our caller */
	if (ok && si && !is_fault(sig, si) && unw_get_reg(&cur, UNW_REG_IP, &ip) == 0)
		addr = ip;
	put(wr, fd, buf, rq_crash_head(buf, sizeof(buf), id, sig, addr, tid()));
	for (unsigned n = 0; ok && n < RQ_CRASH_FRAMES; n++) {
		const char *fn = name;
		int r;

		if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || ip == 0)
			break;
		name[0] = '\0';
		r = unw_get_proc_name(&cur, name, sizeof(name), &off);
		if ((r != 0 && r != -UNW_ENOMEM) || !name[0]) {
			fn = NULL;
			off = ip;
		}
		/* Past frame 0, ip is a return address: look up the call itself. */
		put(wr, fd, buf, rq_crash_frame(buf, sizeof(buf), id, n, fn, off,
						rq_crash_module(n ? ip - 1 : ip)));
		ok = unw_step(&cur) > 0;
	}
}

static ssize_t raw_write(int fd, const void *buf, size_t n)
{
	return syscall(SYS_write, fd, buf, n);
}

static void set_default(int sig)
{
	struct sigaction a;

	memset(&a, 0, sizeof(a));
	a.sa_handler = SIG_DFL;
	__sigaction(sig, &a, NULL);
}

/*
 * Lets sig take its default action: a fault is raised again by its
 * instruction once the handler returns; anything else is sent again, and
 * arrives when the handler returns and the signal is unblocked.
 */
static void die(int sig, const siginfo_t *si)
{
	set_default(sig);
	if (!is_fault(sig, si))
		syscall(SYS_tgkill, getpid(), tid(), sig);
}

/* A fatal signal inside the report: the first one kills the process, now. */
static void again(int sig)
{
	int first = reporting;
	sigset_t s;

	set_default(sig);
	set_default(first);
	sigemptyset(&s);
	sigaddset(&s, first);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	syscall(SYS_tgkill, getpid(), tid(), first);
}

/*
 * The report, with SIGPIPE held back: a closed stderr must not turn the
 * crash into a death by SIGPIPE. A SIGPIPE our writes raised is dropped.
 */
static void report_quietly(int sig, siginfo_t *si, void *uc)
{
	static const struct timespec now = { 0, 0 };
	sigset_t pipe, old, pending;
	int had;

	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &old);
	had = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
	rq_crash_report(raw_write, 2, sig, si, uc);
	if (!had && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
		sigtimedwait(&pipe, NULL, &now);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void rq_crash_handler(int sig, siginfo_t *si, void *uc)
{
	struct rq_sigrec h;
	int e = errno;

	if (reporting) {
		again(sig);
		return;
	}
	reporting = sig;
	report_quietly(sig, si, uc);
	rq_sig_get(sig, &h);
	reporting = 0;
	errno = e;
	if (rq_sig_call_host(&h, sig, si, uc))
		return;
	/* SIG_IGN only if the host changed the action just now: a fault kills anyway. */
	if (h.fn == (void *)SIG_IGN && !is_fault(sig, si))
		return;
	die(sig, si);
	errno = e;
}

static void base_name(char *out, const char *path)
{
	const char *b = strrchr(path, '/');
	size_t n;

	b = b ? b + 1 : path;
	n = strlen(b);
	if (n >= RQ_CRASH_MODNAME)
		n = RQ_CRASH_MODNAME - 1;
	memcpy(out, b, n);
	out[n] = '\0';
}

static int add_module(struct dl_phdr_info *info, size_t size, void *exe)
{
	struct mod *m = &mods[nmods];
	uintptr_t lo = UINTPTR_MAX, hi = 0;

	(void)size;
	if (nmods == RQ_CRASH_MODS)
		return 1;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		if (info->dlpi_addr + ph->p_vaddr < lo)
			lo = info->dlpi_addr + ph->p_vaddr;
		if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
			hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	if (lo >= hi)
		return 0;
	m->lo = lo;
	m->hi = hi;
	if (info->dlpi_name && info->dlpi_name[0])
		base_name(m->name, info->dlpi_name);
	else if (*(const char **)exe && (*(const char **)exe)[0])
		base_name(m->name, *(const char **)exe);
	else
		strcpy(m->name, "?");
	*(const char **)exe = NULL; /* the program is the first object */
	nmods++;
	return 0;
}

void rq_crash_init(void)
{
	unw_context_t uc;
	unw_cursor_t c;
	unw_word_t off;
	char name[64], path[256];
	const char *exe = path;
	int e = errno;
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	/* Early (a host's preinit), program_invocation_short_name is not set yet. */
	if (n > 0)
		path[n] = '\0';
	else
		exe = program_invocation_short_name;
	if (nmods == 0)
		dl_iterate_phdr(add_module, &exe);
	/* libunwind sets itself up on first use: let that happen outside any handler. */
	if (unw_getcontext(&uc) == 0 && unw_init_local(&c, &uc) == 0) {
		unw_get_proc_name(&c, name, sizeof(name), &off);
		unw_step(&c);
	}
	errno = e;
}

static size_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (size_t)p : 4096;
}

static size_t alt_size(void)
{
	size_t size = RQ_CRASH_ALTSTACK, page = page_size();
#ifdef _SC_SIGSTKSZ
	long min = sysconf(_SC_SIGSTKSZ);

	if (min > 0 && (size_t)min > size)
		size = (size_t)min;
#endif
	return (size + page - 1) / page * page;
}

void *rq_crash_altstack(void)
{
	size_t page = page_size(), size = alt_size();
	stack_t cur, ss;
	char *mem;
	int e = errno;

	if (sigaltstack(NULL, &cur) < 0 || !(cur.ss_flags & SS_DISABLE))
		return NULL;
	mem = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (mem == MAP_FAILED)
		goto fail_map;
	mprotect(mem, page, PROT_NONE); /* guard page: an overflow faults, not corrupts */
	ss = (stack_t){ .ss_sp = mem + page, .ss_size = size, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) < 0)
		goto fail_install;
	errno = e;
	return mem;
fail_install:
	munmap(mem, size + page);
fail_map:
	errno = e;
	return NULL;
}

void rq_crash_altstack_free(void *mem)
{
	size_t page = page_size();
	stack_t cur, off = { .ss_flags = SS_DISABLE };
	int e = errno;

	if (!mem)
		return;
	if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == (char *)mem + page &&
	    !(cur.ss_flags & SS_ONSTACK) && sigaltstack(&off, NULL) == 0)
		munmap(mem, alt_size() + page);
	errno = e;
}
