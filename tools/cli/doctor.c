/*
 * reqctx doctor: explain whether a command can be preloaded.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "cli.h"
#include "inspect.h"

static const char help[] =
	"Usage: reqctx doctor CMD\n"
	"\n"
	"Explains whether libreqctx.so can be preloaded into CMD (a path, or a name\n"
	"looked up in $PATH). Prints one line per check, \"ok\" or \"FAIL\":\n"
	"  library     libreqctx.so is found (as 'reqctx run' finds it)\n"
	"  format      CMD is an ELF executable of the library's class and machine,\n"
	"              or a #! script (then its interpreter is checked, and for\n"
	"              #!/usr/bin/env NAME, NAME too)\n"
	"  linking     it has a program interpreter (PT_INTERP): not static\n"
	"  runtime     it is not a Go program (Go makes raw system calls)\n"
	"  privileges  it is not setuid, setgid or setcap (secure-execution mode)\n"
	"  sanitizer   (a note, only for a program built with AddressSanitizer) its\n"
	"              runtime must be loaded before the library\n"
	"  tls         how it speaks TLS: OpenSSL's libssl linked dynamically (its HTTPS\n"
	"              requests get their IDs), OpenSSL linked into the program itself\n"
	"              (WARN: its HTTPS connections cannot be reached), or neither (a\n"
	"              libssl loaded later, as Python's ssl module does, is reached)\n"
	"then the runtime adapter it gets (\"ok\", \"WARN\" when it is not installed,\n"
	"\"--\" for none; it does not change the verdict), and, if it can be preloaded,\n"
	"when its stdout and stderr become logs (once it listens or accepts; under\n"
	"'reqctx run', from the start), then a last line \"verdict: ...\".\n"
	"\n"
	"Exit status: 0 if preloading will work, 1 if not, 2 for a usage error,\n"
	"126 if CMD exists but cannot be executed, 127 if it is not found.\n";

/*
 * 1 if the 64-bit ELF at path needs AddressSanitizer's runtime (libasan.so
 * in its .dynstr, where DT_NEEDED names live). ASan aborts at start-up unless
 * its runtime is the first library loaded, so it must come before ours in
 * LD_PRELOAD.
 */
static int needs_asan(const char *path)
{
	const unsigned char *p;
	const Elf64_Ehdr *eh;
	const Elf64_Shdr *sh;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), found = 0;

	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(*eh)) {
		close(fd);
		return 0;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return 0;
	eh = (const Elf64_Ehdr *)p;
	if (!memcmp(eh->e_ident, ELFMAG, SELFMAG) && eh->e_ident[EI_CLASS] == ELFCLASS64 &&
	    eh->e_shentsize == sizeof(*sh) && eh->e_shoff < (size_t)st.st_size &&
	    ((size_t)st.st_size - eh->e_shoff) / sizeof(*sh) >= eh->e_shnum) {
		sh = (const Elf64_Shdr *)(p + eh->e_shoff);
		for (unsigned i = 0; i < eh->e_shnum && !found; i++) {
			if (sh[i].sh_type != SHT_STRTAB || sh[i].sh_offset > (size_t)st.st_size ||
			    sh[i].sh_size > (size_t)st.st_size - sh[i].sh_offset ||
			    !(sh[i].sh_flags & SHF_ALLOC))
				continue;
			found = memmem(p + sh[i].sh_offset, sh[i].sh_size, "libasan.so", 10) != NULL;
		}
	}
	munmap((void *)p, (size_t)st.st_size);
	return found;
}

/* The 64-bit ELF at path, mapped whole (NULL if it is not one); *size gets its size. */
static const unsigned char *map_elf(const char *path, size_t *size)
{
	const unsigned char *p;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(Elf64_Ehdr)) {
		close(fd);
		return NULL;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return NULL;
	*size = (size_t)st.st_size;
	if (memcmp(p, ELFMAG, SELFMAG) || p[EI_CLASS] != ELFCLASS64) {
		munmap((void *)p, *size);
		return NULL;
	}
	return p;
}

/* Section i of an ELF whose section headers were checked, if it lies within the file. */
static const Elf64_Shdr *section(const unsigned char *p, size_t size, unsigned i)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)p;
	const Elf64_Shdr *sh = (const Elf64_Shdr *)(p + eh->e_shoff) + i;

	return i < eh->e_shnum && sh->sh_offset <= size && sh->sh_size <= size - sh->sh_offset ? sh
												 : NULL;
}

enum tls_kind { TLS_NONE, TLS_DYNAMIC, TLS_STATIC };

/*
 * How the program at path speaks TLS: OpenSSL inside it (SSL_write defined in
 * its dynamic or static symbol table, as in the official Node builds),
 * libssl as a shared library it needs, or neither as far as its file says.
 */
static enum tls_kind tls_kind(const char *path)
{
	size_t size = 0;
	const unsigned char *p = map_elf(path, &size);
	const Elf64_Ehdr *eh;
	enum tls_kind k = TLS_NONE;

	if (!p)
		return TLS_NONE;
	eh = (const Elf64_Ehdr *)p;
	if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff >= size ||
	    (size - eh->e_shoff) / sizeof(Elf64_Shdr) < eh->e_shnum)
		goto out;
	for (unsigned i = 0; i < eh->e_shnum && k != TLS_STATIC; i++) {
		const Elf64_Shdr *sh = section(p, size, i), *str;

		if (!sh)
			continue;
		if (sh->sh_type == SHT_STRTAB && (sh->sh_flags & SHF_ALLOC) &&
		    memmem(p + sh->sh_offset, sh->sh_size, "libssl.so", 9))
			k = TLS_DYNAMIC; /* (.dynstr, where DT_NEEDED names live) */
		if ((sh->sh_type != SHT_DYNSYM && sh->sh_type != SHT_SYMTAB) ||
		    !(str = section(p, size, sh->sh_link)))
			continue;
		for (size_t s = 0; s < sh->sh_size / sizeof(Elf64_Sym); s++) {
			const Elf64_Sym *sym = (const Elf64_Sym *)(p + sh->sh_offset) + s;

			if (sym->st_shndx != SHN_UNDEF && sym->st_name < str->sh_size &&
			    str->sh_size - sym->st_name > 9 &&
			    !memcmp(p + str->sh_offset + sym->st_name, "SSL_write", 10)) {
				k = TLS_STATIC;
				break;
			}
		}
	}
out:
	munmap((void *)p, size);
	return k;
}

static void print_tls(const char *path)
{
	switch (tls_kind(path)) {
	case TLS_STATIC:
		printf("  WARN  tls         OpenSSL is linked into %s itself, out of LD_PRELOAD's reach: "
		       "its HTTPS connections get one ID each and no X-Request-Id (plain HTTP is "
		       "unaffected)\n", path);
		break;
	case TLS_DYNAMIC:
		printf("  ok    tls         libssl is a shared library of %s: HTTPS requests get their "
		       "IDs\n", path);
		break;
	default:
		printf("  --    tls         no libssl linked: one loaded later (Python's ssl module) is "
		       "reached, OpenSSL built into a module it loads is not\n");
	}
}

/*
 * Says which runtime adapter CMD gets from the library at lib (NULL: none
 * found): the Node adapter through NODE_OPTIONS, the Python one through
 * PYTHONPATH, or none.
 */
static void print_adapter(const char *path, const char *lib)
{
	enum rq_rt rt = rc_runtime(path);
	const char *name = rq_rt_name(rt);
	char a[RC_PATH_MAX];

	if (!rt)
		printf("  --    adapter     none: not a Node or Python program\n");
	else if (rc_adapters_off())
		printf("  --    adapter     %s: turned off (REQCTX_RUNTIMES=0 or REQCTX_DISABLE=1)\n", name);
	else if (!lib || rc_adapter(rt, lib, a, sizeof(a)) < 0)
		printf("  WARN  adapter     %s: the %s adapter %s is not installed; request IDs will "
		       "not follow its event loop's hops\n", name, name, lib ? a : "");
	else if (rt == RQ_RT_NODE)
		printf("  ok    adapter     node: %s, through NODE_OPTIONS=--require\n", a);
	else
		printf("  ok    adapter     python: %s, through PYTHONPATH\n", a);
}

int rc_cmd_doctor(int argc, char **argv)
{
	char lib[RC_PATH_MAX], tried[2 * RC_PATH_MAX], path[RC_PATH_MAX];
	struct rc_report rep;
	int r, lib_ok, ok;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(help, stdout);
		return RC_EXIT_OK;
	}
	if (argc != 2 || (argv[1][0] == '-' && argv[1][1]))
		return rc_usage_err("doctor", argc == 2 ? "unknown option '%s'"
					      : "expects exactly one command", argv[1]);
	r = rc_resolve_cmd(argv[1], path, sizeof(path));
	if (r == -ENOENT) {
		rc_err("%s: command not found", argv[1]);
		return RC_EXIT_NOTFOUND;
	}
	if (r < 0) {
		rc_err("%s: cannot execute: %s", argv[1], strerror(-r));
		return RC_EXIT_NOEXEC;
	}
	lib_ok = rc_find_library(lib, sizeof(lib), tried, sizeof(tried)) == 0;
	printf("reqctx doctor: %s\n", path);
	if (lib_ok)
		printf("  ok    library     %s\n", lib);
	else
		printf("  FAIL  library     libreqctx.so not found (tried %s); "
		       "set REQCTX_LIBRARY\n", tried);
	rc_inspect(path, lib_ok ? lib : "/proc/self/exe", &rep);
	for (int i = 0; i < rep.n; i++)
		printf("  %-4s  %-10s  %s\n", rep.c[i].ok ? "ok" : "FAIL", rep.c[i].name,
		       rep.c[i].msg);
	print_adapter(path, lib_ok ? lib : NULL);
	print_tls(path);
	ok = lib_ok && rep.first_fail < 0;
	if (needs_asan(path))
		printf("  note  sanitizer   built with AddressSanitizer, whose runtime must load "
		       "first: LD_PRELOAD=\"$(gcc -print-file-name=libasan.so)\" reqctx run -- %s\n",
		       path);
	if (ok)
		printf("  note  logs        fd 1 and 2 become logs once it listens or accepts "
		       "(under 'reqctx run', from the start)\n");
	if (ok)
		printf("verdict: %s can be preloaded\n", path);
	else
		printf("verdict: %s cannot be preloaded\n", path);
	return ok ? RC_EXIT_OK : RC_EXIT_FAIL;
}
