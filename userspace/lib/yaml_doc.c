// SPDX-License-Identifier: Apache-2.0
/* A small YAML document tree with line numbers, built from libyaml's event stream. */
#include "yaml_doc.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

/* A failed table allocation marks the entry instead of exiting (uthash's default). */
#define uthash_nonfatal_oom(e) ((e)->oom = true)
#include <uthash.h>

/*
 * Mappings with this many keys get a hash of their keys while they are built,
 * so that finding a duplicate key stays constant time however many keys a
 * mapping has; smaller ones are scanned, which is cheaper at their size.
 */
#define KEYS_HASHED_FROM 16

/* A key of a large mapping being built. */
struct key_seen {
	const struct sm_ynode *key;
	bool oom; /* the table could not take it (uthash_nonfatal_oom) */
	UT_hash_handle hh;
};

/* A list or mapping being filled; a mapping may hold a key awaiting its value. */
struct build_frame {
	struct sm_ynode *node;
	struct sm_ynode *pending_key;
	struct key_seen *keys; /* mapping: its keys once it has KEYS_HASHED_FROM, else NULL */
};

struct builder {
	const char *name;
	struct sm_error *err;
	struct build_frame stack[SM_YAML_MAX_DEPTH];
	int depth;
	struct sm_ynode *root;
	bool have_root;
	int documents;
};

void sm_ynode_free(struct sm_ynode *node)
{
	if (!node)
		return;
	for (size_t i = 0; i < node->n; i++) {
		if (node->keys)
			sm_ynode_free(node->keys[i]);
		sm_ynode_free(node->vals[i]);
	}
	free(node->keys);
	free(node->vals);
	free(node->text);
	free(node);
}

const char *sm_ynode_kind(const struct sm_ynode *node)
{
	if (!node)
		return "nothing";
	switch (node->type) {
	case SM_YNODE_SCALAR:
		return "a single value";
	case SM_YNODE_LIST:
		return "a list";
	case SM_YNODE_MAP:
		return "a mapping";
	}
	return "something else";
}

bool sm_ynode_is_null(const struct sm_ynode *node)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

	if (!node || node->type != SM_YNODE_SCALAR || !node->plain)
		return false;
	for (size_t i = 0; i < SM_ARRAY_SIZE(nulls); i++)
		if (strcmp(node->text, nulls[i]) == 0)
			return true;
	return false;
}

const struct sm_ynode *sm_ymap_get(const struct sm_ynode *map, const char *key,
				   const struct sm_ynode **key_node)
{
	if (!map || map->type != SM_YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++) {
		if (strcmp(map->keys[i]->text, key) == 0) {
			if (key_node)
				*key_node = map->keys[i];
			return map->vals[i];
		}
	}
	return NULL;
}

const struct sm_ynode *sm_ymap_unknown_key(const struct sm_ynode *map, const char *const *known,
					   size_t nknown)
{
	if (!map || map->type != SM_YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++) {
		size_t k;

		for (k = 0; k < nknown; k++)
			if (strcmp(map->keys[i]->text, known[k]) == 0)
				break;
		if (k == nknown)
			return map->keys[i];
	}
	return NULL;
}

const char *sm_ykeys_join(const char *const *known, size_t nknown, char *buf, size_t len)
{
	size_t used = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < nknown && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", known[i]);

		if (n < 0)
			break;
		used += (size_t) n;
	}
	return buf;
}

/* ---- the text under the YAML: encoding, NUL and control characters ---- */

/* Byte-order marks of the encodings YAML allows but sockmesh does not read. */
static const struct {
	const char *bom;
	size_t len;
	const char *encoding; /* for people */
	const char *iconv;    /* for iconv -f */
} foreign_boms[] = {
	/* UTF-32 first: its little-endian mark starts like UTF-16's */
	{"\xff\xfe\0\0", 4, "UTF-32 (little-endian)", "UTF-32"},
	{"\0\0\xfe\xff", 4, "UTF-32 (big-endian)", "UTF-32"},
	{"\xff\xfe", 2, "UTF-16 (little-endian)", "UTF-16"},
	{"\xfe\xff", 2, "UTF-16 (big-endian)", "UTF-16"},
};

/* Where a character is: line and column from 1, counted as libyaml counts its marks. */
struct text_pos {
	unsigned int line, column;
	bool after_cr; /* the last character was a CR: an LF now ends no second line */
};

static void text_pos_advance(struct text_pos *pos, uint32_t c)
{
	bool crlf = c == '\n' && pos->after_cr;

	pos->after_cr = c == '\r';
	if (crlf)
		return;
	if (c == '\r' || c == '\n' || c == 0x85 || c == 0x2028 || c == 0x2029) {
		pos->line++;
		pos->column = 1;
	} else {
		pos->column++;
	}
}

/*
 * The code point UTF-8 encodes at s[0..len) (len >= 1), its length in *n;
 * -1 when the bytes are not UTF-8: a byte that starts no character, a
 * sequence cut short, an overlong form, a surrogate or a value past U+10FFFF
 * (the ranges of RFC 3629, section 4).
 */
static int32_t utf8_decode(const unsigned char *s, size_t len, size_t *n)
{
	unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
	size_t need;
	uint32_t c;

	if (s[0] < 0x80) {
		*n = 1;
		return s[0];
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 1;
		c = s[0] & 0x1fU;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 2;
		c = s[0] & 0x0fU;
		lo = s[0] == 0xe0 ? 0xa0 : lo;
		hi = s[0] == 0xed ? 0x9f : hi;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 3;
		c = s[0] & 0x07U;
		lo = s[0] == 0xf0 ? 0x90 : lo;
		hi = s[0] == 0xf4 ? 0x8f : hi;
	} else {
		return -1;
	}
	if (len <= need)
		return -1;
	for (size_t i = 1; i <= need; i++) {
		if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
			return -1;
		c = (c << 6) | (s[i] & 0x3fU);
	}
	*n = need + 1;
	return (int32_t) c;
}

/* YAML 1.1's printable characters, the set libyaml's reader enforces. */
static bool yaml_printable(uint32_t c)
{
	return c == 0x09 || c == 0x0a || c == 0x0d || (c >= 0x20 && c <= 0x7e) || c == 0x85 ||
	       (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) ||
	       (c >= 0x10000 && c <= 0x10ffff);
}

/* The position of byte offset off of s[0..len) (bytes that are not UTF-8 count one each). */
static struct text_pos text_pos_at(const unsigned char *s, size_t len, size_t off)
{
	struct text_pos pos = {.line = 1, .column = 1};
	size_t i = len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0 ? 3 : 0, n = 1;

	while (i < off && i < len) {
		int32_t c = utf8_decode(s + i, len - i, &n);

		text_pos_advance(&pos, c < 0 ? 'x' : (uint32_t) c);
		i += c < 0 ? 1 : n;
	}
	return pos;
}

int sm_yaml_text_check(const char *buf, size_t len, const char *name, struct sm_error *err)
{
	const unsigned char *s = (const unsigned char *) buf;
	struct text_pos pos = {.line = 1, .column = 1};
	size_t i = 0, n = 1;

	for (size_t b = 0; b < SM_ARRAY_SIZE(foreign_boms); b++) {
		if (len >= foreign_boms[b].len &&
		    memcmp(buf, foreign_boms[b].bom, foreign_boms[b].len) == 0) {
			sm_error_set(err,
				     "%s:1:1: the file is %s text (it starts with that encoding's "
				     "byte-order mark); sockmesh reads UTF-8 (convert it to UTF-8: "
				     "iconv -f %s -t UTF-8)",
				     name, foreign_boms[b].encoding, foreign_boms[b].iconv);
			return -EINVAL;
		}
	}
	/* a UTF-8 byte-order mark is allowed and, as for libyaml, is no character */
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	for (; i < len; i += n) {
		int32_t c = utf8_decode(s + i, len - i, &n);

		if (c < 0) {
			sm_error_set(
				err,
				"%s:%u:%u: not valid UTF-8 at byte 0x%02x (offset %zu) (save the "
				"file as UTF-8, or convert it: iconv -f ENCODING -t UTF-8, e.g. "
				"-f LATIN1)",
				name, pos.line, pos.column, s[i], i);
			return -EINVAL;
		}
		if (c == 0) {
			sm_error_set(
				err,
				"%s:%u:%u: a NUL byte, which text never holds (remove it; if the "
				"file is UTF-16 or UTF-32 without a byte-order mark, convert it "
				"to UTF-8: iconv -f UTF-16 -t UTF-8)",
				name, pos.line, pos.column);
			return -EINVAL;
		}
		if (!yaml_printable((uint32_t) c)) {
			bool control = c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0);

			sm_error_set(
				err,
				"%s:%u:%u: %s U+%04X, which YAML does not allow in a file "
				"(remove it, or inside double quotes write the escape \\%s%0*x)",
				name, pos.line, pos.column,
				control ? "control character" : "character", (unsigned int) c,
				c <= 0xff ? "x" : "u", c <= 0xff ? 2 : 4, (unsigned int) c);
			return -EINVAL;
		}
		text_pos_advance(&pos, (uint32_t) c);
	}
	return 0;
}

/* ---- the tree ---- */

static struct sm_ynode *node_new(enum sm_ynode_type type, const yaml_mark_t *mark)
{
	struct sm_ynode *node = calloc(1, sizeof(*node));

	if (!node)
		return NULL;
	node->type = type;
	node->line = (unsigned int) mark->line + 1;
	return node;
}

/* Make room for one more item (and key, for a mapping). 0 or -ENOMEM. */
static int node_reserve(struct sm_ynode *node)
{
	struct sm_ynode **vals, **keys;
	size_t cap;

	if (node->n < node->cap)
		return 0;
	cap = node->cap ? node->cap * 2 : 4;
	// NOLINTNEXTLINE(bugprone-sizeof-expression): an array of node pointers
	vals = realloc(node->vals, cap * sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	node->vals = vals;
	if (node->type == SM_YNODE_MAP) {
		// NOLINTNEXTLINE(bugprone-sizeof-expression): an array of node pointers
		keys = realloc(node->keys, cap * sizeof(*keys));
		if (!keys)
			return -ENOMEM;
		node->keys = keys;
	}
	node->cap = cap;
	return 0;
}

static int build_error(struct builder *b, unsigned int line, int ret, const char *what,
		       const char *fix)
{
	sm_error_set(b->err, "%s:%u: %s (%s)", b->name, line, what, fix);
	return ret;
}

/* The key named text of the mapping being built in f, or NULL. */
static const struct sm_ynode *frame_find_key(const struct build_frame *f, const char *text)
{
	const struct sm_ynode *first = NULL;
	struct key_seen *hit;

	if (!f->keys)
		return sm_ymap_get(f->node, text, &first) ? first : NULL;
	HASH_FIND(hh, f->keys, text, strlen(text), hit);
	return hit ? hit->key : NULL;
}

static int frame_hash_key(struct build_frame *f, const struct sm_ynode *key)
{
	struct key_seen *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	k->key = key;
	HASH_ADD_KEYPTR(hh, f->keys, key->text, strlen(key->text), k);
	if (k->oom) {
		free(k);
		return -ENOMEM;
	}
	return 0;
}

static void frame_free_keys(struct build_frame *f)
{
	struct key_seen *k = f->keys, *next;

	/* the table first (HASH_CLEAR reads it through the head), then the entries */
	HASH_CLEAR(hh, f->keys);
	for (; k; k = next) {
		next = k->hh.next;
		free(k);
	}
}

/* After a key/value pair joined f's mapping: hash its key, or all of them at the threshold. */
static int frame_index_key(struct build_frame *f)
{
	const struct sm_ynode *map = f->node;
	int ret = 0;

	if (f->keys)
		return frame_hash_key(f, map->keys[map->n - 1]);
	if (map->n < KEYS_HASHED_FROM)
		return 0;
	for (size_t i = 0; !ret && i < map->n; i++)
		ret = frame_hash_key(f, map->keys[i]);
	return ret;
}

/*
 * Hand a finished node to its parent (or make it the root). Takes ownership of
 * child in every case: on error it is freed.
 */
static int builder_add(struct builder *b, struct sm_ynode *child)
{
	struct build_frame *f;
	char what[160];

	if (b->depth == 0) {
		/* libyaml gives a document one top node; check anyway rather than leak one */
		if (b->have_root) {
			unsigned int line = child->line;

			sm_ynode_free(child);
			return build_error(b, line, -EINVAL, "a second top-level value",
					   "keep one list or mapping at the top of the file");
		}
		b->root = child;
		b->have_root = true;
		return 0;
	}
	f = &b->stack[b->depth - 1];
	if (f->node->type == SM_YNODE_MAP && !f->pending_key) {
		const struct sm_ynode *first = NULL;
		unsigned int line = child->line;

		if (child->type != SM_YNODE_SCALAR) {
			sm_ynode_free(child);
			return build_error(b, line, -EINVAL, "a mapping key must be a single value",
					   "write keys as plain words followed by ':'");
		}
		first = frame_find_key(f, child->text);
		if (first) {
			snprintf(what, sizeof(what), "duplicate key '%.60s' (first at line %u)",
				 child->text, first->line);
			sm_ynode_free(child);
			return build_error(b, line, -EINVAL, what, "remove one of them");
		}
		f->pending_key = child;
		return 0;
	}
	if (node_reserve(f->node)) {
		sm_ynode_free(child);
		sm_error_set(b->err, "%s: out of memory", b->name);
		return -ENOMEM;
	}
	if (f->node->type == SM_YNODE_MAP) {
		f->node->keys[f->node->n] = f->pending_key;
		f->pending_key = NULL;
	}
	f->node->vals[f->node->n++] = child;
	if (f->node->type == SM_YNODE_MAP && frame_index_key(f)) {
		sm_error_set(b->err, "%s: out of memory", b->name);
		return -ENOMEM;
	}
	return 0;
}

static int builder_scalar(struct builder *b, const yaml_event_t *ev)
{
	struct sm_ynode *node;
	size_t len = ev->data.scalar.length;

	if (memchr(ev->data.scalar.value, '\0', len))
		return build_error(b, (unsigned int) ev->start_mark.line + 1, -EINVAL,
				   "value contains a NUL character", "remove it");
	node = node_new(SM_YNODE_SCALAR, &ev->start_mark);
	if (!node)
		goto err_nomem;
	node->text = malloc(len + 1);
	if (!node->text) {
		free(node);
		goto err_nomem;
	}
	memcpy(node->text, ev->data.scalar.value, len);
	node->text[len] = '\0';
	node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	return builder_add(b, node);

err_nomem:
	sm_error_set(b->err, "%s: out of memory", b->name);
	return -ENOMEM;
}

static int builder_push(struct builder *b, enum sm_ynode_type type, const yaml_mark_t *mark)
{
	struct sm_ynode *node;

	if (b->depth >= SM_YAML_MAX_DEPTH)
		return build_error(b, (unsigned int) mark->line + 1, -EINVAL,
				   "lists and mappings are nested too deeply",
				   "flatten the document");
	node = node_new(type, mark);
	if (!node) {
		sm_error_set(b->err, "%s: out of memory", b->name);
		return -ENOMEM;
	}
	b->stack[b->depth].node = node;
	b->stack[b->depth].pending_key = NULL;
	b->stack[b->depth].keys = NULL;
	b->depth++;
	return 0;
}

static int builder_pop(struct builder *b, unsigned int line)
{
	struct build_frame *f;

	/* libyaml pairs every end with a start; check anyway rather than index stack[-1] */
	if (b->depth == 0)
		return build_error(b, line, -EINVAL, "end of a list or mapping that never began",
				   "check the document's structure");
	f = &b->stack[--b->depth];
	/* libyaml never ends a mapping between a key and its value */
	sm_ynode_free(f->pending_key);
	f->pending_key = NULL;
	frame_free_keys(f);
	return builder_add(b, f->node);
}

static void builder_cleanup(struct builder *b)
{
	while (b->depth > 0) {
		struct build_frame *f = &b->stack[--b->depth];

		frame_free_keys(f);
		sm_ynode_free(f->pending_key);
		sm_ynode_free(f->node);
	}
	sm_ynode_free(b->root);
	b->root = NULL;
}

static int builder_event(struct builder *b, const yaml_event_t *ev)
{
	unsigned int line = (unsigned int) ev->start_mark.line + 1;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++b->documents > 1)
			return build_error(b, line, -EINVAL, "a second YAML document",
					   "keep one document per file: remove the '---'");
		return 0;
	case YAML_ALIAS_EVENT:
		return build_error(b, line, -EINVAL, "aliases (*name) are not supported",
				   "write the value out in full");
	case YAML_SCALAR_EVENT:
		return builder_scalar(b, ev);
	case YAML_SEQUENCE_START_EVENT:
		return builder_push(b, SM_YNODE_LIST, &ev->start_mark);
	case YAML_MAPPING_START_EVENT:
		return builder_push(b, SM_YNODE_MAP, &ev->start_mark);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return builder_pop(b, line);
	default:
		return 0;
	}
}

int sm_yaml_parse(const char *buf, size_t len, const char *name, struct sm_ynode **root,
		  struct sm_error *err)
{
	struct builder b = {.name = name, .err = err};
	yaml_parser_t parser;
	yaml_event_t ev;
	bool done = false;
	int ret = 0;

	*root = NULL;
	ret = sm_yaml_text_check(buf, len, name, err);
	if (ret)
		return ret;
	if (!yaml_parser_initialize(&parser)) {
		sm_error_set(err, "%s: out of memory", name);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *) buf, len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			if (parser.error == YAML_MEMORY_ERROR) {
				sm_error_set(err, "%s: out of memory", name);
				ret = -ENOMEM;
			} else if (parser.error == YAML_READER_ERROR) {
				/* libyaml gives a reader error an offset, not a mark */
				struct text_pos pos = text_pos_at((const unsigned char *) buf, len,
								  parser.problem_offset);

				sm_error_set(err, "%s:%u:%u: not YAML text: %s (save it as UTF-8)",
					     name, pos.line, pos.column,
					     parser.problem ? parser.problem : "unreadable");
				ret = -EINVAL;
			} else {
				sm_error_set(err,
					     "%s:%zu: invalid YAML: %s%s%s (check indentation, "
					     "':' and quotes on this line and the one before)",
					     name, parser.problem_mark.line + 1,
					     parser.problem ? parser.problem : "syntax error",
					     parser.context ? " " : "",
					     parser.context ? parser.context : "");
				ret = -EINVAL;
			}
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		ret = builder_event(&b, &ev);
		yaml_event_delete(&ev);
		if (ret)
			break;
	}
	yaml_parser_delete(&parser);
	/* libyaml ends every list and mapping before the stream; check anyway, not leak */
	if (!ret && b.depth > 0)
		ret = build_error(&b, b.stack[b.depth - 1].node->line, -EINVAL,
				  "a list or mapping that never ends",
				  "check the document's structure");
	if (ret) {
		builder_cleanup(&b);
		return ret;
	}
	*root = b.root;
	return 0;
}

int sm_yaml_load(const char *path, struct sm_ynode **root, struct sm_error *err)
{
	struct stat st;
	size_t used = 0;
	char *buf;
	int fd, ret;

	*root = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			sm_error_set(err, "%s: no such file (check the path)", path);
		else
			sm_error_set(err,
				     "%s: cannot open: %s (check the path and its permissions)",
				     path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		sm_error_set(err, "%s: cannot stat: %s", path, strerror(-ret));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		sm_error_set(err, "%s: not a regular file (give the path of a YAML file)", path);
		goto close_fd;
	}
	if ((uint64_t) st.st_size > SM_YAML_MAX_FILE) {
		ret = -EFBIG;
		sm_error_set(err, "%s: larger than %u bytes (split or trim the file)", path,
			     SM_YAML_MAX_FILE);
		goto close_fd;
	}
	buf = malloc((size_t) st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		sm_error_set(err, "%s: out of memory", path);
		goto close_fd;
	}
	/* read what fstat promised, no more: the file may grow while we read */
	while (used < (size_t) st.st_size) {
		ssize_t n = read(fd, buf + used, (size_t) st.st_size - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			sm_error_set(err, "%s: cannot read: %s", path, strerror(-ret));
			goto free_buf;
		}
		if (n == 0)
			break;
		used += (size_t) n;
	}
	buf[used] = '\0';
	ret = sm_yaml_parse(buf, used, path, root, err);
free_buf:
	free(buf);
close_fd:
	close(fd);
	return ret;
}

void sm_ycheck_report(struct sm_error *err, const char *file, unsigned int line, const char *fmt,
		      ...)
{
	char msg[sizeof(err->msg)];
	va_list ap;

	va_start(ap, fmt);
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 bug, ap is va_start'ed
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sm_error_set(err, "%s:%u: %s", file, line, msg);
}

int sm_ycheck_nomem(struct sm_error *err, const char *file)
{
	sm_error_set(err, "%s: out of memory", file);
	return -ENOMEM;
}

int sm_ycheck_keys(struct sm_error *err, const char *file, const struct sm_ynode *map,
		   const char *what, const char *const *known, size_t nknown)
{
	const struct sm_ynode *bad = sm_ymap_unknown_key(map, known, nknown);
	char list[128];

	if (!bad)
		return 0;
	sm_ycheck_report(err, file, bad->line, "%s: unknown key '%.60s' (known keys: %s)", what,
			 bad->text, sm_ykeys_join(known, nknown, list, sizeof(list)));
	return -EINVAL;
}

int sm_ycheck_scalar(struct sm_error *err, const char *file, const struct sm_ynode *map,
		     const char *what, const char *key, bool required, const char *fix,
		     const struct sm_ynode **out)
{
	const struct sm_ynode *key_node = NULL;
	const struct sm_ynode *val = sm_ymap_get(map, key, &key_node);

	*out = NULL;
	if (!val) {
		if (!required)
			return 0;
		sm_ycheck_report(err, file, map->line, "%s: missing required key '%s' (%s)", what,
				 key, fix);
		return -EINVAL;
	}
	if (val->type != SM_YNODE_SCALAR) {
		sm_ycheck_report(err, file, val->line,
				 "%s: %s: expected a single value, found %s (%s)", what, key,
				 sm_ynode_kind(val), fix);
		return -EINVAL;
	}
	if (sm_ynode_is_null(val) || !val->text[0]) {
		sm_ycheck_report(err, file, key_node->line, "%s: %s: empty (%s)", what, key, fix);
		return -EINVAL;
	}
	*out = val;
	return 0;
}
