/*
 * reqctx: the command-line companion of libreqctx.so.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
	"Usage: reqctx COMMAND [OPTIONS] [ARGS...]\n"
	"\n"
	"Request correlation for unmodified servers (libreqctx.so, LD_PRELOAD).\n"
	"\n"
	"Commands:\n"
	"  run [OPTIONS] -- CMD [ARGS...]  run CMD with libreqctx.so preloaded\n"
	"  logs [OPTIONS] [FILE...]        filter, group, count or convert prefixed logs\n"
	"  doctor CMD                      explain whether CMD can be preloaded\n"
	"  help                            this text\n"
	"  version                         print the version\n"
	"\n"
	"'reqctx COMMAND --help' describes each command. See reqctx(1) and libreqctx(7).\n";

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd) {
		fputs(usage, stderr);
		return RC_EXIT_USAGE;
	}
	if (!strcmp(cmd, "run"))
		return rc_cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "logs"))
		return rc_cmd_logs(argc - 1, argv + 1);
	if (!strcmp(cmd, "doctor"))
		return rc_cmd_doctor(argc - 1, argv + 1);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		fputs(usage, stdout);
		return RC_EXIT_OK;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("reqctx %s\n", REQCTX_VERSION);
		return RC_EXIT_OK;
	}
	fprintf(stderr, "reqctx: unknown command '%s'\n\n%s", cmd, usage);
	return RC_EXIT_USAGE;
}
