/*
 * JSON output for `reqctx logs --json`.
 */
#ifndef RC_JSON_H
#define RC_JSON_H

#include <stddef.h>

/*
 * Writes s[0..len) as a JSON string, quotes included. '"' and '\' are
 * escaped with a backslash, control characters (0x00-0x1f, 0x7f) as \u00XX,
 * valid UTF-8 is copied as is, and each byte that is not part of a valid
 * UTF-8 sequence becomes \ufffd (U+FFFD REPLACEMENT CHARACTER).
 */
void rc_json_str(const char *s, size_t len);

/*
 * Writes one NDJSON record: {"id":...,"file":...,"line":N,"text":...}\n,
 * with "id":null when id is NULL (an unprefixed line).
 */
void rc_json_line(const char *id, size_t id_len, const char *file, unsigned long long line,
		  const char *text, size_t text_len);

#endif
