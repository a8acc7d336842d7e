/*
 * Helper for test_cli: prints what `reqctx run` handed over, one line each:
 * LD_PRELOAD and the REQCTX_* variables ("NAME=value", or "NAME unset"), then
 * "arg: X" per argument. With "--exit N" as its arguments it exits with N.
 * The lines go to the file named by $CLI_ENV_OUT if set (not a log stream,
 * so the library leaves them alone), else to stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const vars[] = {
	"LD_PRELOAD", "REQCTX_HEADER", "REQCTX_PREFIX", "REQCTX_LOG_FILES",
	"REQCTX_LOG_FDS", "REQCTX_ECHO", "REQCTX_UNKNOWN",
};

int main(int argc, char **argv)
{
	const char *path = getenv("CLI_ENV_OUT");
	FILE *out = path ? fopen(path, "w") : stdout;

	if (!out)
		return 99;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);

		if (v)
			fprintf(out, "%s=%s\n", vars[i], v);
		else
			fprintf(out, "%s unset\n", vars[i]);
	}
	for (int i = 1; i < argc; i++)
		fprintf(out, "arg: %s\n", argv[i]);
	fclose(out);
	if (argc == 3 && !strcmp(argv[1], "--exit"))
		return atoi(argv[2]);
	return 0;
}
