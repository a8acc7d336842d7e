#include "crash.h"

#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
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

/*
 * The unwinder reads the stack through an address space of our own: the
 * local one's lookups (unwind tables, symbol names) with our own accessors
 * for registers and memory. libunwind's own memory check in the local
 * address space writes each address to a pipe it opened at start-up and
 * keeps, on fd numbers the host may since have reused for its files.
 */
static unw_addr_space_t space;
static unw_accessors_t acc;

RQ_TLS int rq_crash_no_pipes;

#if defined(__x86_64__)
#define NREGS (UNW_X86_64_RIP + 1)
static const int greg[NREGS] = {
	[UNW_X86_64_RAX] = REG_RAX, [UNW_X86_64_RDX] = REG_RDX, [UNW_X86_64_RCX] = REG_RCX,
	[UNW_X86_64_RBX] = REG_RBX, [UNW_X86_64_RSI] = REG_RSI, [UNW_X86_64_RDI] = REG_RDI,
	[UNW_X86_64_RBP] = REG_RBP, [UNW_X86_64_RSP] = REG_RSP, [UNW_X86_64_R8] = REG_R8,
	[UNW_X86_64_R9] = REG_R9,   [UNW_X86_64_R10] = REG_R10, [UNW_X86_64_R11] = REG_R11,
	[UNW_X86_64_R12] = REG_R12, [UNW_X86_64_R13] = REG_R13, [UNW_X86_64_R14] = REG_R14,
	[UNW_X86_64_R15] = REG_R15, [UNW_X86_64_RIP] = REG_RIP,
};
#elif defined(__aarch64__)
#define NREGS (UNW_AARCH64_PC + 1)
#else
#define NREGS 0 /* no backtrace: the first line only */
#endif

/* One walk: the registers of the frame the cursor starts from, and the memory check's state. */
struct walk {
	unw_word_t reg[NREGS > 0 ? NREGS : 1];
	pid_t pid;
	int pv[2]; /* a pipe for peek() when process_vm_readv is refused; -1 until then */
};

/* Copies the interrupted registers out of uc. Returns 0, or -1 on an architecture we do not know. */
static int load_regs(struct walk *w, const ucontext_t *uc)
{
#if defined(__x86_64__)
	for (int i = 0; i < NREGS; i++)
		w->reg[i] = (unw_word_t)uc->uc_mcontext.gregs[greg[i]];
	return 0;
#elif defined(__aarch64__)
	for (int i = 0; i < 31; i++)
		w->reg[UNW_AARCH64_X0 + i] = uc->uc_mcontext.regs[i];
	w->reg[UNW_AARCH64_SP] = uc->uc_mcontext.sp;
	w->reg[UNW_AARCH64_PC] = uc->uc_mcontext.pc;
	return 0;
#else
	(void)w;
	(void)uc;
	return -1;
#endif
}

/*
 * Reads n bytes at addr into out if they are readable, without faulting:
 * process_vm_readv on ourselves, or, where that is refused (seccomp), a
 * write into a pipe made for this report. Returns 0, or -1 if not readable.
 */
static int peek(struct walk *w, uintptr_t addr, void *out, size_t n)
{
	struct iovec here = { out, n }, there = { (void *)addr, n };
	long r = syscall(SYS_process_vm_readv, w->pid, &here, 1L, &there, 1L, 0L);

	if (r == (long)n)
		return 0;
	if (r >= 0 || errno == EFAULT || errno == ESRCH)
		return -1;
	if (w->pv[0] < 0 && syscall(SYS_pipe2, w->pv, O_CLOEXEC | O_NONBLOCK) < 0) {
		w->pv[0] = w->pv[1] = -1;
		return -1;
	}
	if (syscall(SYS_write, w->pv[1], (void *)addr, n) != (long)n)
		return -1;
	return syscall(SYS_read, w->pv[0], out, n) == (long)n ? 0 : -1;
}

static int mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
	(void)as;
	if (write)
		return -UNW_EINVAL;
	return peek(arg, addr, val, sizeof(*val)) == 0 ? 0 : -UNW_EINVAL;
}

static int reg(unw_addr_space_t as, unw_regnum_t r, unw_word_t *val, int write, void *arg)
{
	struct walk *w = arg;

	(void)as;
	if (r < 0 || r >= NREGS)
		return -UNW_EBADREG;
	if (write)
		w->reg[r] = *val;
	else
		*val = w->reg[r];
	return 0;
}

static int fpreg(unw_addr_space_t as, unw_regnum_t r, unw_fpreg_t *val, int write, void *arg)
{
	(void)as;
	(void)r;
	(void)val;
	(void)write;
	(void)arg;
	return -UNW_EBADREG;
}

/*
 * The frame that called through a bad pointer (NULL, or not code), which
 * left no frame of its own: on x86-64 the return address is at the stack
 * pointer, on aarch64 in the link register. Moves w to the caller, with the
 * pc on the call instruction itself (return address - 1) so that its unwind
 * row is the call's. Returns the return address, or 0 if there is none.
 */
static uintptr_t to_caller(struct walk *w)
{
	unw_word_t ret = 0;

#if defined(__x86_64__)
	if (peek(w, w->reg[UNW_X86_64_RSP], &ret, sizeof(ret)) < 0)
		return 0;
	w->reg[UNW_X86_64_RSP] += sizeof(ret);
#elif defined(__aarch64__)
	ret = w->reg[UNW_AARCH64_X30];
#endif
	if (ret == 0)
		return 0;
	w->reg[UNW_REG_IP] = ret - 1;
	return ret;
}

/* 1 if pc, where frame 0 stopped, is not code: nothing readable there, or the fault is the fetch. */
static int bad_pc(struct walk *w, uintptr_t pc, int sig, const siginfo_t *si)
{
	char b;

	if (peek(w, pc, &b, 1) < 0)
		return 1;
	return sig == SIGSEGV && si && si->si_code > 0 && (uintptr_t)si->si_addr == pc;
}

static int start_at(unw_cursor_t *cur, struct walk *w)
{
	return space && NREGS > 0 && unw_init_remote(cur, space, w) == 0;
}

/* "name" and offset of ip, which is a return address if `ret`. Returns name, or NULL. */
static const char *name_of(unw_cursor_t *cur, struct walk *w, uintptr_t ip, int ret, char *name,
			   size_t cap, unw_word_t *off)
{
	int r;

	name[0] = '\0';
	if (ret)
		r = acc.get_proc_name ? acc.get_proc_name(space, ip - 1, name, cap, off, w) : -1;
	else
		r = unw_get_proc_name(cur, name, cap, off);
	if ((r != 0 && r != -UNW_ENOMEM) || !name[0])
		return NULL;
	if (ret)
		*off += 1;
	return name;
}

void rq_crash_report(rq_crash_write_fn wr, int fd, int sig, const siginfo_t *si, void *uc)
{
	const struct rq_ctx *c = rq_ctx_cur();
	const char *id = c->serial ? c->id : "unknown";
	char buf[RQ_CRASH_LINE], name[RQ_CRASH_NAME];
	uintptr_t addr = si ? (uintptr_t)si->si_addr : 0, ip, shown;
	struct walk w = { .pid = getpid(), .pv = { -1, -1 } };
	unw_context_t here;
	unw_cursor_t cur;
	unw_word_t off;
	int ok, caller = 0, pipes = rq_crash_no_pipes;

	rq_crash_no_pipes = 1; /* libunwind never checks our reads, but should it: no pipe */
	if (uc)
		ok = load_regs(&w, uc) == 0 && start_at(&cur, &w);
	else
		ok = unw_getcontext(&here) == 0 && load_regs(&w, &here) == 0 && start_at(&cur, &w) &&
		     unw_step(&cur) > 0; /* from our caller */
	if (ok && si && !is_fault(sig, si) && unw_get_reg(&cur, UNW_REG_IP, &off) == 0)
		addr = off;
	put(wr, fd, buf, rq_crash_head(buf, sizeof(buf), id, sig, addr, tid()));
	for (unsigned n = 0; ok && n < RQ_CRASH_FRAMES; n++) {
		const char *fn;

		if (unw_get_reg(&cur, UNW_REG_IP, &off) < 0 || (off == 0 && n > 0))
			break;
		ip = off;
		shown = caller ? ip + 1 : ip;
		fn = name_of(&cur, &w, shown, caller, name, sizeof(name), &off);
		/* Past frame 0, ip is a return address: look up the call itself. */
		put(wr, fd, buf, rq_crash_frame(buf, sizeof(buf), id, n, fn, fn ? off : shown,
						rq_crash_module(n ? shown - 1 : shown)));
		caller = 0;
		if (n == 0 && uc && bad_pc(&w, ip, sig, si)) {
			/* Called through a bad pointer: go on from the caller. */
			caller = to_caller(&w) != 0;
			ok = caller && start_at(&cur, &w);
		} else {
			ok = unw_step(&cur) > 0;
		}
	}
	if (w.pv[0] >= 0) {
		syscall(SYS_close, w.pv[0]);
		syscall(SYS_close, w.pv[1]);
	}
	rq_crash_no_pipes = pipes;
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
	rq_sig_get(sig, &h);
	if (h.fn != (void *)SIG_DFL && h.fn != (void *)SIG_IGN) {
		/*
		 * The host handles it (a JVM's own faults, a recovery with
		 * siglongjmp): no report. A one-shot handler falls back to the
		 * default here, as the kernel would have done, but with us still
		 * installed, so that a re-raise is reported.
		 */
		if (h.flags & SA_RESETHAND)
			rq_sig_put(sig, &(struct rq_sigrec){ (void *)SIG_DFL, h.flags, h.wrapped });
		errno = e;
		rq_sig_call_host(&h, sig, si, uc);
		return;
	}
	/* SIG_IGN only if the host changed the action just now: a fault kills anyway. */
	if (h.fn == (void *)SIG_IGN && !is_fault(sig, si))
		return;
	reporting = sig;
	report_quietly(sig, si, uc);
	reporting = 0;
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

/*
 * Our address space (see `space`). libunwind opens its memory-check pipe the
 * first time it is set up; the pipe2 wrapper refuses it while
 * rq_crash_no_pipes is set, so no fd is taken from the host.
 */
static void make_space(void)
{
	unw_accessors_t *local;

	if (space)
		return;
	rq_crash_no_pipes = 1;
	local = unw_get_accessors(unw_local_addr_space);
	if (local) {
		acc = *local;
		acc.access_mem = mem;
		acc.access_reg = reg;
		acc.access_fpreg = fpreg;
		acc.resume = NULL;
		space = unw_create_addr_space(&acc, 0);
		/* No cache: nothing to lock or fill inside a handler. */
		if (space)
			unw_set_caching_policy(space, UNW_CACHE_NONE);
	}
	rq_crash_no_pipes = 0;
}

void rq_crash_init(void)
{
	struct walk w = { .pid = getpid(), .pv = { -1, -1 } };
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
	make_space();
	/* libunwind sets itself up on first use: let that happen outside any handler. */
	if (unw_getcontext(&uc) == 0 && load_regs(&w, &uc) == 0 && start_at(&c, &w)) {
		unw_get_proc_name(&c, name, sizeof(name), &off);
		unw_step(&c);
	}
	if (w.pv[0] >= 0) {
		syscall(SYS_close, w.pv[0]);
		syscall(SYS_close, w.pv[1]);
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
