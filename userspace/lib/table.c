// SPDX-License-Identifier: Apache-2.0
/* Plain-text tables for people: content-sized columns, header row, right-aligned numbers. */
#include "table.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Blanks between two columns. */
#define TABLE_GAP 2

struct sm_table {
	const struct sm_table_col *cols;
	size_t ncols;
	char **cells; /* nrows * ncols, row-major; NULL = no cell */
	size_t nrows;
	size_t cap;    /* rows allocated */
	size_t filled; /* cells set in the last row */
};

struct sm_table *sm_table_new(const struct sm_table_col *cols, size_t ncols)
{
	struct sm_table *t;

	if (!cols || ncols == 0) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cols = cols;
	t->ncols = ncols;
	return t;
}

int sm_table_row(struct sm_table *t)
{
	char **cells;
	size_t cap;

	if (t->nrows == t->cap) {
		cap = t->cap ? t->cap * 2 : 16;
		cells = reallocarray(t->cells, cap * t->ncols, sizeof(*cells));
		if (!cells)
			return -ENOMEM;
		memset(cells + t->cap * t->ncols, 0, (cap - t->cap) * t->ncols * sizeof(*cells));
		t->cells = cells;
		t->cap = cap;
	}
	t->nrows++;
	t->filled = 0;
	return 0;
}

int sm_table_cell(struct sm_table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	if (t->nrows == 0)
		return -EINVAL;
	if (t->filled == t->ncols)
		return -E2BIG;
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	for (char *p = s; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			*p = '?';
	t->cells[(t->nrows - 1) * t->ncols + t->filled++] = s;
	return 0;
}

int sm_table_add_row(struct sm_table *t, const char *const *cells, size_t n)
{
	int err;

	if (n > t->ncols)
		return -E2BIG;
	err = sm_table_row(t);
	for (size_t i = 0; i < n && !err; i++)
		err = sm_table_cell(t, "%s", cells[i] ? cells[i] : "");
	return err;
}

size_t sm_table_rows(const struct sm_table *t)
{
	return t->nrows;
}

/* Display width of UTF-8 text: characters, not bytes (continuation bytes skipped). */
static size_t table_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char) *s & 0xc0) != 0x80)
			w++;
	return w;
}

static void table_put(FILE *out, const char *s, size_t width, bool right, bool last)
{
	size_t pad = width - table_width(s);

	if (right)
		fprintf(out, "%*s%s", (int) pad, "", s);
	else if (last)
		fputs(s, out);
	else
		fprintf(out, "%s%*s", s, (int) pad, "");
}

/* One line: cells[0..ncols), NULL cells empty. */
static void table_put_row(const struct sm_table *t, FILE *out, const size_t *widths,
			  const char *const *cells)
{
	size_t last = t->ncols - 1;

	/* trailing empty cells would only print blanks */
	while (last > 0 && (!cells[last] || !*cells[last]))
		last--;
	for (size_t c = 0; c <= last; c++) {
		if (c > 0)
			fprintf(out, "%*s", TABLE_GAP, "");
		table_put(out, cells[c] ? cells[c] : "", widths[c], t->cols[c].right, c == last);
	}
	fputc('\n', out);
}

int sm_table_print(const struct sm_table *t, FILE *out)
{
	const char **header;
	size_t *widths, w;

	widths = calloc(t->ncols, sizeof(*widths));
	header = calloc(t->ncols, sizeof(*header));
	if (!widths || !header) {
		free(widths);
		free(header);
		return -ENOMEM;
	}
	for (size_t c = 0; c < t->ncols; c++) {
		header[c] = t->cols[c].name;
		widths[c] = header[c] ? table_width(header[c]) : 0;
		for (size_t r = 0; r < t->nrows; r++) {
			const char *s = t->cells[r * t->ncols + c];

			w = s ? table_width(s) : 0;
			if (w > widths[c])
				widths[c] = w;
		}
	}
	table_put_row(t, out, widths, header);
	for (size_t r = 0; r < t->nrows; r++)
		table_put_row(t, out, widths, (const char *const *) &t->cells[r * t->ncols]);
	free(header);
	free(widths);
	return ferror(out) ? -EIO : 0;
}

void sm_table_free(struct sm_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
