#include "json.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min, cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void rc_json_str(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	rc_out("\"", 1);
	while (p < end) {
		const unsigned char *run = p;
		char esc[8];
		size_t n;

		while (p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
			p++;
		rc_out(run, (size_t)(p - run));
		if (p == end)
			break;
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p++;
			rc_out(esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p++);
			rc_out(esc, 6);
		} else if ((n = utf8_len(p, (size_t)(end - p))) > 0) {
			rc_out(p, n);
			p += n;
		} else {
			rc_out("\\ufffd", 6);
			p++;
		}
	}
	rc_out("\"", 1);
}

void rc_json_line(const char *id, size_t id_len, const char *file, unsigned long long line,
		  const char *text, size_t text_len)
{
	char num[32];

	rc_out_str("{\"id\":");
	if (id)
		rc_json_str(id, id_len);
	else
		rc_out_str("null");
	rc_out_str(",\"file\":");
	rc_json_str(file, strlen(file));
	snprintf(num, sizeof(num), ",\"line\":%llu,\"text\":", line);
	rc_out_str(num);
	rc_json_str(text, text_len);
	rc_out_str("}\n");
}
