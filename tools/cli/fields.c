#include "fields.h"

#include <errno.h>
#include <string.h>

#include "config.h"

int rc_field_set(struct rc_ids *ids, const char *name)
{
	if (rq_config_field_ok(name) < 0)
		return -EINVAL;
	ids->field_len = strlen(name);
	memcpy(ids->field, name, ids->field_len + 1);
	return 0;
}

static int blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* 1 if s[0..n) is a valid request ID. */
static int id_ok(const char *s, size_t n)
{
	if (n == 0 || n > REQCTX_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!rc_id_char((unsigned char)s[i]))
			return 0;
	return 1;
}

/* The end of the JSON string whose opening quote is at s[i] (the closing quote's index), or n. */
static size_t str_end(const char *s, size_t i, size_t n, int *escaped)
{
	*escaped = 0;
	for (i++; i < n && s[i] != '"'; i++) {
		if (s[i] == '\\') {
			*escaped = 1;
			i++;
		}
	}
	return i < n ? i : n;
}

/* The field's string value in the JSON object whose members start at s[i]. */
static int json_value(const struct rc_ids *ids, const char *s, size_t i, size_t n,
		      const char **id, size_t *id_len)
{
	int depth = 1, key = 1, esc;

	while (i < n) {
		char c = s[i];

		if (c == '"') {
			size_t e = str_end(s, i, n, &esc);
			int hit = depth == 1 && key && !esc && e - i - 1 == ids->field_len &&
				  !memcmp(s + i + 1, ids->field, ids->field_len);

			if (e == n)
				return 0;
			if (depth == 1 && key)
				key = 0;
			i = e + 1;
			if (!hit)
				continue;
			while (i < n && blank((unsigned char)s[i]))
				i++;
			if (i == n || s[i] != ':')
				continue;
			for (i++; i < n && blank((unsigned char)s[i]); i++)
				;
			if (i == n || s[i] != '"')
				return 0;
			e = str_end(s, i, n, &esc);
			if (e == n || esc || !id_ok(s + i + 1, e - i - 1))
				return 0;
			*id = s + i + 1;
			*id_len = e - i - 1;
			return 1;
		}
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return 0;
		else if (c == ',' && depth == 1)
			key = 1;
		else if (c == ':' && depth == 1)
			key = 0;
		i++;
	}
	return 0;
}

/*
 * The field's value as a logfmt key of s[0..n): *at is where its pair
 * starts. Keys and values are read as logfmt parsers read them.
 */
static int logfmt_value(const struct rc_ids *ids, const char *s, size_t n, const char **id,
			size_t *id_len, size_t *at)
{
	size_t i = 0;

	for (;;) {
		size_t start, v;
		int esc = 0;

		while (i < n && (unsigned char)s[i] <= ' ')
			i++;
		if (i == n)
			return 0;
		for (start = i; i < n && (unsigned char)s[i] > ' ' && s[i] != '=' && s[i] != '"'; i++)
			;
		if (i < n && s[i] == '=') {
			int hit = i - start == ids->field_len &&
				  !memcmp(s + start, ids->field, ids->field_len);

			i++;
			if (hit) {
				if (i < n && s[i] == '"') {
					v = str_end(s, i, n, &esc);
					if (v == n || esc || !id_ok(s + i + 1, v - i - 1))
						return 0;
					*id = s + i + 1;
					*id_len = v - i - 1;
				} else {
					for (v = i; v < n && (unsigned char)s[v] > ' '; v++)
						;
					if (!id_ok(s + i, v - i))
						return 0;
					*id = s + i;
					*id_len = v - i;
				}
				*at = start;
				return 1;
			}
		}
		if (i < n && s[i] == '"') {
			i = str_end(s, i, n, &esc);
			if (i == n)
				return 0;
			i++;
		}
		while (i < n && (unsigned char)s[i] > ' ')
			i++;
	}
}

long rc_line_id(const struct rc_ids *ids, const char *line, size_t len, const char **id,
		size_t *id_len)
{
	long off = rc_prefix_match(&ids->pfx, line, len, id, id_len);
	size_t i = 0, at;

	if (off >= 0)
		return off;
	while (i < len && blank((unsigned char)line[i]))
		i++;
	if (i < len && line[i] == '{')
		return json_value(ids, line, i + 1, len, id, id_len) ? 0 : -1;
	if (!memchr(line, '=', len) || !logfmt_value(ids, line, len, id, id_len, &at))
		return -1;
	/* reqctx's own pair, at the line start and followed by a space, is not the text */
	if (at == 0) {
		size_t end = (size_t)(*id - line) + *id_len;

		if (end < len && line[end] == '"')
			end++;
		if (end < len && line[end] == ' ')
			return (long)end + 1;
	}
	return 0;
}
