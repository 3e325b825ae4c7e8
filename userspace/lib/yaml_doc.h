/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small YAML document tree (scalars, lists, mappings) with the line of every
 * node, built with libyaml, so that config and catalog checks can name the
 * line of whatever they reject.
 *
 * Deliberately narrower than YAML: one document per file, mapping keys are
 * scalars and appear once, aliases (*name) are rejected (they would let a
 * small file expand into a huge or cyclic tree). Tags are ignored.
 */
#ifndef SOCKMESH_YAML_DOC_H
#define SOCKMESH_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Files larger than this are refused by sm_yaml_load() (-EFBIG). */
#define SM_YAML_MAX_FILE (16U << 20)
/* Lists and mappings nested deeper than this are refused. */
#define SM_YAML_MAX_DEPTH 64

enum sm_ynode_type {
	SM_YNODE_SCALAR,
	SM_YNODE_LIST,
	SM_YNODE_MAP,
};

struct sm_ynode {
	enum sm_ynode_type type;
	unsigned int line;	/* 1-based line where the node starts */
	char *text;		/* scalar: its value, NUL-terminated (no embedded NUL) */
	bool plain;		/* scalar: written without quotes */
	size_t n;		/* list: items; mapping: key/value pairs */
	size_t cap;		/* allocated slots in keys/vals */
	struct sm_ynode **keys; /* mapping: key scalars, in file order */
	struct sm_ynode **vals; /* mapping: values; list: items */
};

/*
 * Is buf[0..len) text this parser reads: UTF-8 (a UTF-8 byte-order mark
 * allowed), no NUL, no control character other than tab and line breaks,
 * nothing YAML forbids (its printable set)? Returns 0, or -EINVAL with err =
 * "NAME:LINE:COLUMN: what is wrong (what to do)" for the first offence: a
 * UTF-16 or UTF-32 byte-order mark, a byte sequence that is not UTF-8
 * (overlong, surrogate, past U+10FFFF, cut short), a NUL, a control
 * character. Lines and columns count from 1, columns in characters, lines as
 * YAML breaks them (LF, CR, CRLF, NEL, LS, PS), so they agree with the
 * parser's. For callers that check a file before handing it on (the CLI).
 */
int sm_yaml_text_check(const char *buf, size_t len, const char *name, struct sm_error *err);

/*
 * Parse len bytes of YAML; all len bytes count: a NUL is an error (see
 * sm_yaml_text_check(), which runs first), never the end of the text.
 * *root is the document's top node, or NULL for an empty document. name is
 * used in messages ("name:LINE: ..."). Returns 0 or -EINVAL (not text,
 * syntax or one of the restrictions above) / -ENOMEM with err set. Linear in
 * len: duplicate keys are found through a hash in large mappings. The
 * caller frees *root with sm_ynode_free().
 */
int sm_yaml_parse(const char *buf, size_t len, const char *name, struct sm_ynode **root,
		  struct sm_error *err);

/*
 * Read and parse a file. A missing file is -ENOENT (err set too, the caller
 * decides whether that is an error); an unreadable one -errno; a file over
 * SM_YAML_MAX_FILE -EFBIG.
 */
int sm_yaml_load(const char *path, struct sm_ynode **root, struct sm_error *err);

void sm_ynode_free(struct sm_ynode *node);

/* "a single value", "a list" or "a mapping": for "expected X, found Y" messages. */
const char *sm_ynode_kind(const struct sm_ynode *node);

/* A plain scalar that YAML reads as null: empty, "~", "null", "Null", "NULL". */
bool sm_ynode_is_null(const struct sm_ynode *node);

/* The value of key in a mapping, or NULL; *key_node (if non-NULL) gets the key. */
const struct sm_ynode *sm_ymap_get(const struct sm_ynode *map, const char *key,
				   const struct sm_ynode **key_node);

/*
 * The first key of map that is not in known[0..nknown), or NULL when all are
 * known. Used to reject misspelt keys.
 */
const struct sm_ynode *sm_ymap_unknown_key(const struct sm_ynode *map, const char *const *known,
					   size_t nknown);

/* "a, b, c" into buf (truncated to fit). Returns buf. */
const char *sm_ykeys_join(const char *const *known, size_t nknown, char *buf, size_t len);

/*
 * Checking a parsed document: what the config, catalog and policy parsers
 * share. Every message is "FILE:LINE: what is wrong (what to do)" in err.
 */
void sm_ycheck_report(struct sm_error *err, const char *file, unsigned int line, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
/* "FILE: out of memory"; returns -ENOMEM. */
int sm_ycheck_nomem(struct sm_error *err, const char *file);
/* A key of map not in known: -EINVAL naming it and the known keys; else 0. */
int sm_ycheck_keys(struct sm_error *err, const char *file, const struct sm_ynode *map,
		   const char *what, const char *const *known, size_t nknown);
/*
 * A single-value key of map: missing (when required), a list or mapping, or
 * empty are -EINVAL naming what and the fix; *out is NULL for an absent
 * optional key.
 */
int sm_ycheck_scalar(struct sm_error *err, const char *file, const struct sm_ynode *map,
		     const char *what, const char *key, bool required, const char *fix,
		     const struct sm_ynode **out);

#endif /* SOCKMESH_YAML_DOC_H */
