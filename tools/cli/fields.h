/*
 * The request ID of a log line, in each format the library writes
 * (REQCTX_FORMAT): the prefix at the line start, a logfmt key, or a
 * top-level key of a line that is a JSON object.
 */
#ifndef RC_FIELDS_H
#define RC_FIELDS_H

#include <stddef.h>

#include "cli.h"
#include "config.h"

#define RC_FIELD_MAX RQ_FIELD_MAX /* longest field name, as the library's REQCTX_FIELD */

struct rc_ids {
	struct rc_prefix pfx;
	char field[RC_FIELD_MAX + 1];
	size_t field_len;
};

/*
 * Sets the field name with the library's rule (rq_config_field_ok: 1-64
 * characters from A-Z a-z 0-9 _ . -). Returns 0 or -EINVAL.
 */
int rc_field_set(struct rc_ids *ids, const char *name);

/*
 * Finds the request ID of line[0..len), trying in turn:
 *   - the prefix at the line start (rc_prefix_match);
 *   - a line that is a JSON object (blanks, then '{'): the string value of
 *     the field as a top-level key;
 *   - the field as a logfmt key anywhere in the line, with a quoted or a
 *     bare value.
 * The value must be a valid request ID (an escaped or longer one is none).
 * Sets *id, *id_len and returns the offset of the text after what reqctx
 * put before the line (the prefix, or the logfmt pair at the line start; 0
 * for a JSON line, whose field is part of the object); -1 if the line names
 * no request.
 */
long rc_line_id(const struct rc_ids *ids, const char *line, size_t len, const char **id,
		size_t *id_len);

#endif
