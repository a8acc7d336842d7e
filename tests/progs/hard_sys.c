/*
 * What LD_PRELOAD cannot reach (test_hardening): a write made with syscall()
 * next to ordinary ones. The test also builds this file with -static.
 */
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	static const char raw[] = "raw syscall line\n", plain[] = "write line\n";

	if (syscall(SYS_write, 2, raw, strlen(raw)) != (long)strlen(raw))
		return 3;
	if (write(2, plain, strlen(plain)) != (ssize_t)strlen(plain))
		return 4;
	printf("stdout line %d\n", 1);
	return 0;
}
