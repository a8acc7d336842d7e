#include "logagg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

#define TABLE_MIN 1024 /* initial slots; the table doubles at 1/2 load */

struct gline {
	struct gline *next;
	const char *file;
	unsigned long long lineno;
	size_t len, text_off;
	char data[];
};

struct ent {
	char *id;          /* NULL for the unprefixed lines */
	size_t len;
	uint64_t hash;
	unsigned long long count;
	struct gline *head, *tail;
};

struct rc_agg {
	int keep;
	struct ent *ents;  /* in first-seen order */
	size_t nents, ents_cap;
	uint32_t *slots;   /* index + 1 into ents, 0 when empty */
	size_t nslots;
	struct ent unpref;
	unsigned long long lines;
};

static uint64_t hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h;
}

struct rc_agg *rc_agg_new(int keep_lines)
{
	struct rc_agg *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->keep = keep_lines;
	a->nslots = TABLE_MIN;
	a->slots = calloc(a->nslots, sizeof(*a->slots));
	if (!a->slots) {
		free(a);
		return NULL;
	}
	return a;
}

static int grow_table(struct rc_agg *a)
{
	size_t n = a->nslots * 2;
	uint32_t *s = calloc(n, sizeof(*s));

	if (!s)
		return -1;
	for (size_t i = 0; i < a->nents; i++) {
		size_t j = a->ents[i].hash & (n - 1);

		while (s[j])
			j = (j + 1) & (n - 1);
		s[j] = (uint32_t)(i + 1);
	}
	free(a->slots);
	a->slots = s;
	a->nslots = n;
	return 0;
}

/* The entry for id, created if new; NULL on ENOMEM. */
static struct ent *lookup(struct rc_agg *a, const char *id, size_t len)
{
	uint64_t h = hash(id, len);
	size_t j = h & (a->nslots - 1);
	struct ent *e;

	for (; a->slots[j]; j = (j + 1) & (a->nslots - 1)) {
		e = &a->ents[a->slots[j] - 1];
		if (e->hash == h && e->len == len && !memcmp(e->id, id, len))
			return e;
	}
	if (a->nents == a->ents_cap) {
		size_t cap = a->ents_cap ? a->ents_cap * 2 : 256;
		struct ent *ne = realloc(a->ents, cap * sizeof(*ne));

		if (!ne)
			return NULL;
		a->ents = ne;
		a->ents_cap = cap;
	}
	e = &a->ents[a->nents];
	memset(e, 0, sizeof(*e));
	e->id = malloc(len + 1);
	if (!e->id)
		return NULL;
	memcpy(e->id, id, len);
	e->id[len] = '\0';
	e->len = len;
	e->hash = h;
	a->slots[j] = (uint32_t)++a->nents;
	if (a->nents * 2 > a->nslots && grow_table(a) < 0)
		return NULL;
	return &a->ents[a->nents - 1];
}

int rc_agg_add(struct rc_agg *a, const char *id, size_t id_len, const char *file,
	       unsigned long long lineno, const char *line, size_t len, size_t text_off)
{
	struct ent *e = id ? lookup(a, id, id_len) : &a->unpref;
	struct gline *g;

	if (!e)
		return -1;
	e->count++;
	a->lines++;
	if (!a->keep)
		return 0;
	g = malloc(sizeof(*g) + len);
	if (!g)
		return -1;
	g->next = NULL;
	g->file = file;
	g->lineno = lineno;
	g->len = len;
	g->text_off = text_off;
	memcpy(g->data, line, len);
	if (e->tail)
		e->tail->next = g;
	else
		e->head = g;
	e->tail = g;
	return 0;
}

static void print_group(const struct ent *e, int json, int show_names)
{
	for (const struct gline *g = e->head; g; g = g->next) {
		if (json) {
			rc_json_line(e->id, e->len, g->file, g->lineno, g->data + g->text_off,
				     g->len - g->text_off);
			continue;
		}
		if (show_names) {
			rc_out_str(g->file);
			rc_out(":", 1);
		}
		rc_out(g->data, g->len);
		rc_out("\n", 1);
	}
}

void rc_agg_print_groups(const struct rc_agg *a, int json, int show_names)
{
	for (size_t i = 0; i < a->nents; i++)
		print_group(&a->ents[i], json, show_names);
	print_group(&a->unpref, json, show_names);
}

static int by_count(const void *x, const void *y)
{
	unsigned long long a = *(const unsigned long long *)x, b = *(const unsigned long long *)y;

	return (a > b) - (a < b);
}

/* Inserts e into top[0..*n), kept by count descending, first seen first on ties. */
static void top_insert(const struct ent **top, size_t *n, const struct ent *e)
{
	size_t i = *n < RC_TOP_N ? (*n)++ : RC_TOP_N;

	while (i > 0 && top[i - 1]->count < e->count) {
		if (i < RC_TOP_N)
			top[i] = top[i - 1];
		i--;
	}
	if (i < RC_TOP_N)
		top[i] = e;
}

static double pct(unsigned long long part, unsigned long long whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

void rc_agg_print_stats(const struct rc_agg *a)
{
	const struct ent *top[RC_TOP_N];
	unsigned long long *counts = malloc((a->nents + 1) * sizeof(*counts));
	unsigned long long unknown = 0, min = 0, med = 0, max = 0;
	size_t nreq = 0, ntop = 0;
	int width;

	if (!counts) {
		rc_err("out of memory");
		return;
	}
	for (size_t i = 0; i < a->nents; i++) {
		const struct ent *e = &a->ents[i];

		if (!strcmp(e->id, REQCTX_UNKNOWN)) {
			unknown = e->count;
			continue;
		}
		counts[nreq++] = e->count;
		top_insert(top, &ntop, e);
	}
	qsort(counts, nreq, sizeof(*counts), by_count);
	if (nreq) {
		min = counts[0];
		med = counts[(nreq - 1) / 2];
		max = counts[nreq - 1];
	}
	free(counts);
	printf("requests: %zu\n", nreq);
	printf("lines: %llu\n", a->lines);
	printf("lines per request: min %llu, median %llu, max %llu\n", min, med, max);
	printf("unknown lines: %llu (%.1f%%)\n", unknown, pct(unknown, a->lines));
	printf("unprefixed lines: %llu (%.1f%%)\n", a->unpref.count, pct(a->unpref.count, a->lines));
	printf("top requests:%s\n", ntop ? "" : " none");
	width = snprintf(NULL, 0, "%llu", max);
	for (size_t i = 0; i < ntop; i++)
		printf("  %*llu  %s\n", width, top[i]->count, top[i]->id);
}

void rc_agg_free(struct rc_agg *a)
{
	struct ent *all = a->ents;

	for (size_t i = 0; i <= a->nents; i++) {
		struct ent *e = i < a->nents ? &all[i] : &a->unpref;

		for (struct gline *g = e->head, *next; g; g = next) {
			next = g->next;
			free(g);
		}
		free(e->id);
	}
	free(a->ents);
	free(a->slots);
	free(a);
}
