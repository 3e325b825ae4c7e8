/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Plain-text tables for people: a header row, columns as wide as their widest
 * cell, two spaces between columns, numbers right-aligned.
 *
 * Usage: t = sm_table_new(cols, n); for each row: sm_table_row(t), then one
 * sm_table_cell(t, fmt, ...) per column; sm_table_print(t, stdout); sm_table_free(t).
 */
#ifndef SOCKMESH_TABLE_H
#define SOCKMESH_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct sm_table_col {
	const char *name; /* header text, printed as given (not copied) */
	bool right;	  /* right-align (numbers) */
};

struct sm_table;

/* cols is borrowed and must outlive the table. NULL + errno (EINVAL, ENOMEM). */
struct sm_table *sm_table_new(const struct sm_table_col *cols, size_t ncols);
/* Start a new row. 0 or -ENOMEM. */
int sm_table_row(struct sm_table *t);
/*
 * Append a cell to the current row (copied). Control characters are shown as
 * '?' so that daemon-supplied text cannot drive the terminal. 0, -ENOMEM,
 * -E2BIG (row already has ncols cells) or -EINVAL (no row started).
 */
int sm_table_cell(struct sm_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* sm_table_row() and then one cell per cells[i] (NULL: empty), n <= ncols. 0 or -errno. */
int sm_table_add_row(struct sm_table *t, const char *const *cells, size_t n);
/* Rows so far. */
size_t sm_table_rows(const struct sm_table *t);
/*
 * Print the header and the rows; cells a row lacks print empty. No trailing
 * blanks: the last column is not padded when left-aligned. Widths count UTF-8
 * characters, not bytes. 0 or -EIO.
 */
int sm_table_print(const struct sm_table *t, FILE *out);
void sm_table_free(struct sm_table *t);

#endif /* SOCKMESH_TABLE_H */
