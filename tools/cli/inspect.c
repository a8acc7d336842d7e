#include "inspect.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"

#define SCRIPT_DEPTH 4    /* nested #! interpreters followed, as the kernel */
#define SHEBANG_MAX  256  /* bytes of a #! line the kernel reads */

/* Go writes this magic at the start of its build information. */
static const char go_magic[] = "\xff Go buildinf:";

static void add(struct rc_report *r, const char *name, int ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void add(struct rc_report *r, const char *name, int ok, const char *fmt, ...)
{
	struct rc_check *c;
	va_list ap;

	if (r->n == RC_CHECKS_MAX)
		return;
	c = &r->c[r->n];
	c->name = name;
	c->ok = ok;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	if (!ok && r->first_fail < 0)
		r->first_fail = r->n;
	r->n++;
}

struct image {
	const unsigned char *p;
	size_t size;
};

static int map_file(const char *path, struct image *im)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	if (st.st_size == 0) {
		close(fd);
		return -ENOEXEC;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -errno;
	im->p = p;
	im->size = (size_t)st.st_size;
	return 0;
}

static int is_elf(const struct image *im)
{
	return im->size >= EI_NIDENT && !memcmp(im->p, ELFMAG, SELFMAG);
}

static const char *class_name(int cls)
{
	return cls == ELFCLASS64 ? "64-bit" : cls == ELFCLASS32 ? "32-bit" : "unknown-class";
}

static const char *machine_name(int m)
{
	switch (m) {
	case EM_X86_64: return "x86-64";
	case EM_386: return "i386";
	case EM_AARCH64: return "AArch64";
	case EM_ARM: return "ARM";
	case EM_RISCV: return "RISC-V";
	case EM_PPC64: return "PowerPC64";
	case EM_S390: return "S/390";
	default: return "another machine";
	}
}

/* Class and machine of the reference file, or -1 each if unreadable. */
static void ref_kind(const char *ref, int *cls, int *mach)
{
	unsigned char h[sizeof(Elf64_Ehdr)];
	int fd = open(ref, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, h, sizeof(h));

	*cls = *mach = -1;
	if (fd >= 0)
		close(fd);
	if (n < (ssize_t)sizeof(Elf32_Ehdr) || memcmp(h, ELFMAG, SELFMAG))
		return;
	*cls = h[EI_CLASS];
	*mach = ((Elf32_Ehdr *)h)->e_machine; /* same offset in both classes */
}

/* Name of section i, or "" when out of bounds. */
static const char *sect_name(const struct image *im, const Elf64_Ehdr *eh, const Elf64_Shdr *sh,
			     unsigned i)
{
	const Elf64_Shdr *strs = &sh[eh->e_shstrndx];
	uint64_t off = strs->sh_offset + sh[i].sh_name;

	if (strs->sh_offset > im->size || off >= im->size ||
	    !memchr(im->p + off, '\0', im->size - off))
		return "";
	return (const char *)im->p + off;
}

static int has_go_section(const struct image *im, const Elf64_Ehdr *eh)
{
	const Elf64_Shdr *sh;

	if (!eh->e_shoff || eh->e_shentsize != sizeof(Elf64_Shdr) ||
	    eh->e_shoff > im->size ||
	    (im->size - eh->e_shoff) / sizeof(Elf64_Shdr) < eh->e_shnum ||
	    eh->e_shstrndx >= eh->e_shnum)
		return 0;
	sh = (const Elf64_Shdr *)(im->p + eh->e_shoff);
	for (unsigned i = 0; i < eh->e_shnum; i++) {
		const char *name = sect_name(im, eh, sh, i);

		if (!strcmp(name, ".go.buildinfo") || !strcmp(name, ".note.go.buildid"))
			return 1;
	}
	return 0;
}

/* Finds PT_INTERP; returns 1 and its string, 0 when absent, -1 if malformed. */
static int find_interp(const struct image *im, const Elf64_Ehdr *eh, char *interp, size_t size)
{
	const Elf64_Phdr *ph;

	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > im->size ||
	    (im->size - eh->e_phoff) / sizeof(Elf64_Phdr) < eh->e_phnum)
		return -1;
	ph = (const Elf64_Phdr *)(im->p + eh->e_phoff);
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_INTERP)
			continue;
		if (ph[i].p_offset > im->size || ph[i].p_filesz > im->size - ph[i].p_offset)
			return -1;
		snprintf(interp, size, "%.*s", (int)strnlen((const char *)im->p + ph[i].p_offset,
							     ph[i].p_filesz),
			 (const char *)im->p + ph[i].p_offset);
		return 1;
	}
	return 0;
}

static void check_privileges(const char *path, const char *label, struct rc_report *r)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID))) {
		add(r, "privileges", 0,
		    "%s is %s; the dynamic loader ignores LD_PRELOAD for it (secure-execution mode)",
		    label, (st.st_mode & S_ISUID) ? "setuid" : "setgid");
		return;
	}
	if (getxattr(path, "security.capability", NULL, 0) > 0) {
		add(r, "privileges", 0,
		    "%s has file capabilities (setcap); the dynamic loader ignores LD_PRELOAD for it",
		    label);
		return;
	}
	add(r, "privileges", 1, "%s is not setuid, setgid or setcap", label);
}

static void check_elf(const struct image *im, const char *label, const char *ref,
		      struct rc_report *r)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)im->p;
	int cls = im->p[EI_CLASS], rcls, rmach, mach;
	char interp[RC_PATH_MAX];
	int found;

	ref_kind(ref, &rcls, &rmach);
	if (rcls < 0) {
		rcls = ELFCLASS64;
		rmach = EM_X86_64;
	}
	if (im->size < sizeof(Elf32_Ehdr) || im->p[EI_DATA] != ELFDATA2LSB) {
		add(r, "format", 0, "%s is an ELF file of an unsupported byte order or size", label);
		return;
	}
	mach = ((const Elf32_Ehdr *)im->p)->e_machine;
	if (cls != rcls || mach != rmach) {
		add(r, "format", 0, "%s is a %s %s ELF file; libreqctx.so is %s %s", label,
		    class_name(cls), machine_name(mach), class_name(rcls), machine_name(rmach));
		return;
	}
	if (cls != ELFCLASS64 || im->size < sizeof(Elf64_Ehdr)) {
		add(r, "format", 0, "%s: only 64-bit ELF files can be inspected", label);
		return;
	}
	if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN) {
		add(r, "format", 0, "%s is an ELF file but not an executable", label);
		return;
	}
	add(r, "format", 1, "%s is a %s %s ELF executable", label, class_name(cls),
	    machine_name(mach));
	found = find_interp(im, eh, interp, sizeof(interp));
	if (found < 0)
		add(r, "linking", 0, "%s has malformed program headers", label);
	else if (found == 0)
		add(r, "linking", 0, "%s is statically linked; LD_PRELOAD cannot reach it", label);
	else
		add(r, "linking", 1, "%s is dynamically linked (loader %s)", label, interp);
	if (has_go_section(im, eh) || memmem(im->p, im->size, go_magic, sizeof(go_magic) - 1))
		add(r, "runtime", 0,
		    "%s is a Go program; Go makes raw system calls that LD_PRELOAD cannot see",
		    label);
	else
		add(r, "runtime", 1, "%s is not a Go program", label);
}

/*
 * Splits a #! line into interpreter and optional argument (the kernel's
 * rules: one argument, the rest of the line). Returns 0 or -ENOEXEC.
 */
static int parse_shebang(const struct image *im, char *interp, size_t isize, char *arg,
			 size_t asize)
{
	char line[SHEBANG_MAX + 1];
	size_t n = im->size < SHEBANG_MAX ? im->size : SHEBANG_MAX, len;
	char *s = line + 2, *end;

	memcpy(line, im->p, n);
	line[n] = '\0';
	end = strchrnul(s, '\n');
	*end = '\0';
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	s += strspn(s, " \t");
	len = strcspn(s, " \t");
	if (!len || len >= isize)
		return -ENOEXEC;
	memcpy(interp, s, len);
	interp[len] = '\0';
	s += len;
	s += strspn(s, " \t");
	snprintf(arg, asize, "%s", s);
	return 0;
}

static void inspect(const char *path, const char *label, const char *ref, int depth,
		    struct rc_report *r);

/* A label for messages; long paths are cut short. */
static void fmt_label(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fmt_label(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, size, fmt, ap);
	va_end(ap);
}

static void check_script(const struct image *im, const char *label, const char *ref,
			 int depth, struct rc_report *r)
{
	char interp[RC_PATH_MAX], arg[SHEBANG_MAX], found[RC_PATH_MAX], sub[RC_MSG_MAX / 2];
	const char *base;

	if (parse_shebang(im, interp, sizeof(interp), arg, sizeof(arg)) < 0) {
		add(r, "format", 0, "%s has an empty or malformed #! line", label);
		return;
	}
	if (depth >= SCRIPT_DEPTH) {
		add(r, "format", 0, "%s: too many nested #! interpreters", label);
		return;
	}
	add(r, "format", 1, "%s is a script for %s%s%s", label, interp, *arg ? " " : "", arg);
	if (access(interp, X_OK) < 0) {
		add(r, "format", 0, "%s: its interpreter %s cannot be executed (%s)", label,
		    interp, strerror(errno));
		return;
	}
	fmt_label(sub, sizeof(sub), "%s (interpreter of %s)", interp, label);
	inspect(interp, sub, ref, depth + 1, r);
	base = strrchr(interp, '/');
	base = base ? base + 1 : interp;
	if (strcmp(base, "env") || !*arg || arg[0] == '-' || strchr(arg, ' '))
		return;
	if (rc_resolve_cmd(arg, found, sizeof(found)) < 0) {
		add(r, "format", 1, "%s: \"%s\" is not in PATH here, so it was not checked", label,
		    arg);
		return;
	}
	fmt_label(sub, sizeof(sub), "%s (run by env for %s)", found, label);
	inspect(found, sub, ref, depth + 1, r);
}

static void inspect(const char *path, const char *label, const char *ref, int depth,
		    struct rc_report *r)
{
	struct image im;
	int e = map_file(path, &im);

	if (e < 0) {
		add(r, "format", 0, "%s cannot be read to check it: %s", label,
		    e == -ENOEXEC ? "empty file" : strerror(-e));
		return;
	}
	if (is_elf(&im)) {
		check_elf(&im, label, ref, r);
		check_privileges(path, label, r);
	} else if (im.size >= 2 && im.p[0] == '#' && im.p[1] == '!') {
		check_script(&im, label, ref, depth, r);
	} else {
		add(r, "format", 0, "%s is neither an ELF executable nor a #! script", label);
	}
	munmap((void *)im.p, im.size);
}

void rc_inspect(const char *path, const char *ref, struct rc_report *r)
{
	r->n = 0;
	r->first_fail = -1;
	inspect(path, path, ref, 0, r);
}
