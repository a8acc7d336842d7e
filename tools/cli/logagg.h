/*
 * Per-request aggregation for `reqctx logs --group` and `--stats`.
 *
 * A hash table maps each distinct ID to its line count and, for --group, the
 * list of its lines. Without kept lines, memory is O(distinct IDs): at most
 * REQCTX_ID_MAX + ~64 bytes per ID, never O(lines).
 */
#ifndef RC_LOGAGG_H
#define RC_LOGAGG_H

#include <stddef.h>

#define RC_TOP_N 10 /* requests listed by --stats */

struct rc_agg;

/* A new table; keep_lines 1 stores every line for rc_agg_print_groups. NULL on ENOMEM. */
struct rc_agg *rc_agg_new(int keep_lines);

/*
 * Records one line: id[0..id_len) is its request ID, or NULL when the line is
 * unprefixed. line[0..len) is the whole line, text_off where the text after
 * the prefix starts. `file` must outlive the table. Returns 0 or -ENOMEM.
 */
int rc_agg_add(struct rc_agg *a, const char *id, size_t id_len, const char *file,
	       unsigned long long lineno, const char *line, size_t len, size_t text_off);

/*
 * Prints the kept lines grouped by ID, groups in first-seen order, then the
 * unprefixed lines; as they were ("FILE:" first when show_names) or as NDJSON.
 */
void rc_agg_print_groups(const struct rc_agg *a, int json, int show_names);

/* Prints the --stats report (format in logs.c's help text). */
void rc_agg_print_stats(const struct rc_agg *a);

void rc_agg_free(struct rc_agg *a);

#endif
