#include "child.h"

#include <string.h>

#include "id.h"

long rq_child_env_count(char *const envp[])
{
	long n = 0;

	while (envp[n])
		if (++n > RQ_CHILD_ENV_MAX)
			return -1;
	return n;
}

static int has_var(const char *entry, const char *name, size_t len)
{
	return !strncmp(entry, name, len) && entry[len] == '=';
}

/* "HTTP_X_REQUEST_ID" for "X-Request-Id": the CGI meta-variable of the request header. */
static size_t meta_name(char *out)
{
	size_t n = 5;

	memcpy(out, "HTTP_", 5);
	for (size_t i = 0; i < rq_cfg.hdr_len; i++) {
		unsigned char c = (unsigned char)rq_cfg.hdr[i];

		out[n++] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : (char)c;
	}
	return n;
}

static char *put(char *text, const char *name, size_t nlen, const char *id, size_t len)
{
	memcpy(text, name, nlen);
	text[nlen] = '=';
	memcpy(text + nlen + 1, id, len);
	text[nlen + 1 + len] = '\0';
	return text;
}

char **rq_child_env(char *const envp[], long n, const char *id, size_t len, char **vec, char *text)
{
	char meta[sizeof("HTTP_") + RQ_HDR_MAX];
	size_t mlen = meta_name(meta), plen = sizeof(RQ_PARENT_VAR) - 1;
	int cgi = 0, has_meta = 0;
	long k = 0;

	for (long i = 0; i < n; i++) {
		if (has_var(envp[i], RQ_PARENT_VAR, plen))
			continue;
		cgi |= has_var(envp[i], "GATEWAY_INTERFACE", 17);
		has_meta |= has_var(envp[i], meta, mlen);
		vec[k++] = envp[i];
	}
	vec[k++] = put(text, RQ_PARENT_VAR, plen, id, len);
	if (cgi && !has_meta)
		vec[k++] = put(text + plen + len + 2, meta, mlen, id, len);
	vec[k] = NULL;
	return vec;
}

static const char cmd_head[] = "export " RQ_PARENT_VAR "='";
static const char cmd_mid[] = "'; exec /bin/sh -c '";
static const char cmd_quote[] = "'\\''"; /* a ' inside single quotes */

size_t rq_child_cmd_size(const char *cmd, size_t len)
{
	size_t n = sizeof(cmd_head) - 1 + len + sizeof(cmd_mid) - 1 + 2;

	for (; *cmd; cmd++)
		n += *cmd == '\'' ? sizeof(cmd_quote) - 1 : 1;
	return n;
}

/*
 * A valid ID has no quote, so it stands in single quotes as it is; the
 * command goes to a second shell, in single quotes, each ' written '\''.
 */
char *rq_child_cmd(const char *cmd, const char *id, size_t len, char *out)
{
	char *p = out;

	memcpy(p, cmd_head, sizeof(cmd_head) - 1);
	p += sizeof(cmd_head) - 1;
	memcpy(p, id, len);
	p += len;
	memcpy(p, cmd_mid, sizeof(cmd_mid) - 1);
	p += sizeof(cmd_mid) - 1;
	for (; *cmd; cmd++) {
		if (*cmd == '\'') {
			memcpy(p, cmd_quote, sizeof(cmd_quote) - 1);
			p += sizeof(cmd_quote) - 1;
		} else {
			*p++ = *cmd;
		}
	}
	*p++ = '\'';
	*p = '\0';
	return out;
}

size_t rq_child_parent_id(const char *value, char *out)
{
	size_t n;

	if (!value)
		return 0;
	n = strnlen(value, REQCTX_ID_MAX + 1);
	if (!rq_id_valid(value, n))
		return 0;
	memcpy(out, value, n);
	out[n] = '\0';
	return n;
}
