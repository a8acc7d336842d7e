/*
 * reqctx logs: filter, group, count or convert logs written under reqctx.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "fields.h"
#include "json.h"
#include "linereader.h"
#include "logagg.h"

#define FOLLOW_POLL_MS 200 /* --follow: pause between looks at files that did not grow */

static const char help[] =
	"Usage: reqctx logs [OPTIONS] [FILE...]\n"
	"\n"
	"Reads log lines in every format the library writes (REQCTX_FORMAT): a line\n"
	"that starts with the prefix (the format with its %s replaced by a request ID),\n"
	"a JSON object line with the field as a top-level key and a string value, or\n"
	"a line with the field as a logfmt key (FIELD=ID or FIELD=\"ID\") anywhere; an ID\n"
	"is 1-128 characters from A-Z a-z 0-9 and -_.:@+=/~. FILE \"-\", or no FILE, is\n"
	"standard input. Lines that name no request count as unprefixed; lines of any\n"
	"length are handled.\n"
	"\n"
	"Modes (at most one; without one, every line is printed as it is):\n"
	"  --id ID          only the lines of request ID, from all files in order;\n"
	"                   memory is bounded by the longest line\n"
	"  --group          all lines grouped by request ID, groups in first-seen order\n"
	"                   (\"unknown\" is a group like the others), then the unprefixed\n"
	"                   lines; memory grows with the input\n"
	"  --stats          a summary; memory is O(distinct IDs), not O(lines):\n"
	"                     requests: N                 distinct IDs but \"unknown\"\n"
	"                     lines: N                    all lines read\n"
	"                     lines per request: min N, median N, max N\n"
	"                                                 (lower median; 0s if none)\n"
	"                     unknown lines: N (P%)       P with one decimal\n"
	"                     unprefixed lines: N (P%)\n"
	"                     top requests:               then up to 10 lines\n"
	"                       COUNT  ID                 most lines first, ties in\n"
	"                                                 first-seen order; \" none\"\n"
	"                                                 after the colon if empty\n"
	"Output:\n"
	"  --json           NDJSON, one object per line:\n"
	"                   {\"id\":\"ID\",\"file\":\"FILE\",\"line\":N,\"text\":\"...\"}\n"
	"                   text without the prefix (or the logfmt pair reqctx put at\n"
	"                   the line start; a JSON line is kept whole); \"id\":null for\n"
	"                   unprefixed lines;\n"
	"                   \"file\":\"-\" for stdin; control characters as \\u00XX, bytes\n"
	"                   that are not valid UTF-8 as \\ufffd\n"
	"  --with-filename  print \"FILE:\" before each line (default with 2+ files)\n"
	"  --no-filename    never print \"FILE:\"\n"
	"Other options:\n"
	"  --prefix FMT     the prefix format (default \"" REQCTX_DEFAULT_PREFIX "\")\n"
	"  --field NAME     the ID's key in JSON and logfmt lines (default request_id)\n"
	"  --follow         keep reading files as they grow, like tail -f (not with\n"
	"                   --group or --stats); a truncated or replaced file is read\n"
	"                   again from its start\n"
	"  -h, --help       this text\n"
	"\n"
	"When stderr is a terminal, reading a file of 16 MiB or more shows its progress\n"
	"there (unless lines are being printed to the same terminal).\n"
	"Exit status: 0 on success, 1 if --id matched no line or a file could not be\n"
	"read, 2 for a usage error.\n";

enum mode { M_ALL, M_ID, M_GROUP, M_STATS };

struct logs {
	enum mode mode;
	int json, follow, names;
	struct rc_ids ids;
	const char *id;
	size_t id_len;
	int fast;          /* --id without --json: only lines holding the ID are parsed */
	unsigned long long matched;
	struct rc_agg *agg;
};

static void print_line(const struct logs *L, const char *file, unsigned long long lineno,
		       const char *id, size_t id_len, const char *line, size_t len, long off)
{
	if (L->json) {
		rc_json_line(id, id_len, file, lineno, off < 0 ? line : line + off,
			     off < 0 ? len : len - (size_t)off);
		return;
	}
	if (L->names) {
		rc_out_str(file);
		rc_out(":", 1);
	}
	rc_out(line, len);
	rc_out("\n", 1);
}

static int handle_line(struct logs *L, const char *file, unsigned long long lineno,
		       const char *line, size_t len)
{
	const char *id = NULL;
	size_t id_len = 0;
	long off = rc_line_id(&L->ids, line, len, &id, &id_len);

	if (off < 0)
		id = NULL;
	switch (L->mode) {
	case M_ID:
		if (!id || id_len != L->id_len || memcmp(id, L->id, id_len))
			return 0;
		L->matched++;
		break;
	case M_GROUP:
	case M_STATS:
		return rc_agg_add(L->agg, id, id_len, file, lineno, line, len,
				  off < 0 ? 0 : (size_t)off);
	case M_ALL:
		break;
	}
	print_line(L, file, lineno, id, id_len, line, len, off);
	return 0;
}

/* Every line of a block, one at a time. */
static int scan_lines(struct logs *L, const char *file, unsigned long long *lineno,
		      const char *p, size_t n)
{
	const char *end = p + n;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl ? nl : end;

		if (handle_line(L, file, ++*lineno, p, (size_t)(stop - p)) < 0)
			return -ENOMEM;
		p = stop + 1;
	}
	return 0;
}

/*
 * --id without --json: only lines that hold the ID can match, in any format,
 * so memmem finds the ID and only the lines it is in are parsed.
 */
static void scan_id(struct logs *L, const char *file, const char *p, size_t n)
{
	const char *end = p + n, *hit = memmem(p, n, L->id, L->id_len);

	while (hit) {
		const char *line = hit, *nl;

		while (line > p && line[-1] != '\n')
			line--;
		nl = memchr(hit, '\n', (size_t)(end - hit));
		if (!nl)
			nl = end;
		handle_line(L, file, 0, line, (size_t)(nl - line));
		if (nl == end)
			break;
		hit = memmem(nl, (size_t)(end - nl), L->id, L->id_len);
	}
}

static int read_file(struct logs *L, struct rc_reader *r, unsigned long long *lineno)
{
	const char *p;
	size_t n;
	int got;

	while ((got = rc_reader_block(r, &p, &n)) > 0) {
		if (L->fast)
			scan_id(L, r->path, p, n);
		else if (scan_lines(L, r->path, lineno, p, n) < 0)
			return -ENOMEM;
	}
	return got;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Reads every file to its end, then (--follow) keeps polling for more. */
static int read_all(struct logs *L, char **files, int nfiles)
{
	struct rc_reader *rd = calloc((size_t)nfiles, sizeof(*rd));
	unsigned long long *lineno = calloc((size_t)nfiles, sizeof(*lineno));
	int failed = 0, open = 0;
	/* Progress on a terminal, unless lines go to that terminal meanwhile. */
	int progress = isatty(2) && (!isatty(1) || L->mode == M_GROUP || L->mode == M_STATS);

	if (!rd || !lineno) {
		rc_err("out of memory");
		return RC_EXIT_FAIL;
	}
	for (int i = 0; i < nfiles; i++) {
		int e = rc_reader_open(&rd[i], files[i], L->follow, progress);

		if (e < 0) {
			rc_err("%s: %s", files[i], strerror(-e));
			failed = 1;
			continue;
		}
		e = read_file(L, &rd[i], &lineno[i]);
		if (e < 0) {
			rc_err("%s: %s", files[i], strerror(-e));
			failed = 1;
		}
		if (e < 0 || !L->follow || !strcmp(files[i], "-"))
			rc_reader_close(&rd[i]);
		else
			open++;
		if (e == -ENOMEM)
			break;
	}
	while (L->follow && open) {
		int grew = 0;

		rc_out_flush();
		for (int i = 0; i < nfiles; i++) {
			unsigned long long before = rd[i].pos;

			if (!rd[i].buf)
				continue;
			if (rc_reader_recheck(&rd[i]))
				lineno[i] = 0;
			if (read_file(L, &rd[i], &lineno[i]) < 0)
				continue;
			grew |= (unsigned long long)rd[i].pos != before;
		}
		if (!grew)
			sleep_ms(FOLLOW_POLL_MS);
	}
	free(rd);
	free(lineno);
	return failed;
}

static int parse(int argc, char **argv, struct logs *L)
{
	static const struct option longs[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "group", no_argument, NULL, 'g' },
		{ "stats", no_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "follow", no_argument, NULL, 'f' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "field", required_argument, NULL, 'F' },
		{ "with-filename", no_argument, NULL, 'H' },
		{ "no-filename", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = REQCTX_DEFAULT_PREFIX, *field = "request_id";
	int c, modes = 0, names = -1;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (!rc_id_valid(optarg))
				return rc_usage_err("logs", "--id '%s' is not a request ID (1-%d "
						    "characters from A-Z a-z 0-9 -_.:@+=/~)",
						    optarg, REQCTX_ID_MAX);
			L->id = optarg;
			L->mode = M_ID;
			modes++;
			break;
		case 'g': L->mode = M_GROUP; modes++; break;
		case 's': L->mode = M_STATS; modes++; break;
		case 'j': L->json = 1; break;
		case 'f': L->follow = 1; break;
		case 'p': fmt = optarg; break;
		case 'F': field = optarg; break;
		case 'H': names = 1; break;
		case 'N': names = 0; break;
		case 'h':
			fputs(help, stdout);
			return -1;
		default:
			return rc_usage_err("logs", "unknown or incomplete option '%s'",
					    argv[optind - 1]);
		}
	}
	if (modes > 1)
		return rc_usage_err("logs", "--id, --group and --stats exclude each other");
	if (L->follow && (L->mode == M_GROUP || L->mode == M_STATS))
		return rc_usage_err("logs", "--follow does not go with --group or --stats");
	if (L->json && L->mode == M_STATS)
		return rc_usage_err("logs", "--json does not go with --stats");
	if (rc_field_set(&L->ids, field) < 0)
		return rc_usage_err("logs", "--field '%s' is not a field name (1-%d characters "
				    "from A-Z a-z 0-9 _ . -)", field, RC_FIELD_MAX);
	if (rc_prefix_parse(fmt, &L->ids.pfx) < 0)
		return rc_usage_err("logs", "--prefix '%s' needs exactly one %%s, printable "
				    "characters, %%%% for a literal %%, and at most %d "
				    "characters on each side", fmt, RC_PFX_PART);
	L->names = names >= 0 ? names : argc - optind > 1;
	return 0;
}

int rc_cmd_logs(int argc, char **argv)
{
	static char *stdin_only[] = { "-", NULL };
	struct logs L = { 0 };
	char **files;
	int nfiles, failed, e, r = parse(argc, argv, &L);

	if (r)
		return r < 0 ? RC_EXIT_OK : r;
	files = optind < argc ? argv + optind : stdin_only;
	nfiles = optind < argc ? argc - optind : 1;
	if (L.mode == M_ID) {
		L.id_len = strlen(L.id);
		L.fast = !L.json;
	}
	if (L.mode == M_GROUP || L.mode == M_STATS) {
		L.agg = rc_agg_new(L.mode == M_GROUP);
		if (!L.agg)
			goto oom;
	}
	failed = read_all(&L, files, nfiles);
	if (L.mode == M_GROUP)
		rc_agg_print_groups(L.agg, L.json, L.names);
	else if (L.mode == M_STATS)
		rc_agg_print_stats(L.agg);
	if (L.agg)
		rc_agg_free(L.agg);
	if ((e = rc_out_flush()) < 0) {
		rc_err("write error: %s", strerror(-e));
		return RC_EXIT_FAIL;
	}
	if (failed || (L.mode == M_ID && !L.matched))
		return RC_EXIT_FAIL;
	return RC_EXIT_OK;
oom:
	rc_err("out of memory");
	return RC_EXIT_FAIL;
}
