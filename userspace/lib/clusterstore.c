// SPDX-License-Identifier: Apache-2.0
/* Cluster mode's keys: files split into objects, objects built into a catalog and policy set. */
#include "clusterstore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* A failed table allocation marks the entry instead of exiting (uthash's default). */
#define uthash_nonfatal_oom(e) ((e)->oom = true)
#include <uthash.h>

#include "yaml_doc.h"

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
#define NAME_FIX   "use 1 to 63 letters, digits, '.', '_' or '-'"

/* The kinds of object under config/, in the order the catalog document lists them. */
enum kind {
	K_NODE,
	K_WORKLOAD,
	K_SERVICE,
	K_CIDR,
	K_POLICY,
	K_NKINDS,
};

static const struct {
	const char *dir;     /* relative to the prefix */
	const char *section; /* the file's key */
	const char *what;    /* for messages */
} kinds[K_NKINDS] = {
	[K_NODE] = {SM_CK_NODES, "nodes", "node"},
	[K_WORKLOAD] = {SM_CK_WORKLOADS, "workloads", "workload"},
	[K_SERVICE] = {SM_CK_SERVICES, "services", "service"},
	[K_CIDR] = {SM_CK_CIDRS, "cidrs", "cidr"},
	[K_POLICY] = {SM_CK_POLICIES, "policies", "policy"},
};

int sm_cluster_prefix_check(const char *prefix, struct sm_error *err)
{
	size_t n = prefix ? strlen(prefix) : 0;

	if (n < 1 || prefix[0] != '/' || prefix[n - 1] != '/') {
		sm_error_set(err,
			     "etcd key prefix '%s' must start and end with '/' (e.g. the default "
			     "%s)",
			     prefix ? prefix : "", SM_CLUSTER_PREFIX_DEFAULT);
		return -EINVAL;
	}
	if (n >= SM_CLUSTER_PREFIX_MAX) {
		sm_error_set(err, "etcd key prefix '%.40s...' is longer than %d bytes (shorten it)",
			     prefix, SM_CLUSTER_PREFIX_MAX - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (prefix[i] <= ' ' || prefix[i] > '~') {
			sm_error_set(err,
				     "etcd key prefix '%s': byte %zu is not printable ASCII or is "
				     "a space (use letters, digits and punctuation)",
				     prefix, i);
			return -EINVAL;
		}
	}
	return 0;
}

void sm_cluster_objs_free(struct sm_cluster_objs *objs)
{
	if (!objs)
		return;
	for (size_t i = 0; i < objs->n; i++)
		free(objs->objs[i].value);
	free(objs->objs);
	objs->objs = NULL;
	objs->n = 0;
}

static void state_clear(struct sm_cluster_state *st)
{
	memset(st, 0, sizeof(*st));
}

void sm_cluster_state_free(struct sm_cluster_state *st)
{
	if (!st)
		return;
	sm_catalog_free(&st->cat);
	sm_policy_set_free(&st->policies);
	free(st->catalog_doc);
	free(st->policy_doc);
	state_clear(st);
}

static bool name_ok(const char *s, size_t n)
{
	size_t i;

	if (n < 1 || n >= SM_NAME_MAX)
		return false;
	for (i = 0; i < n && s[i] && strchr(NAME_CHARS, s[i]); i++)
		;
	return i == n;
}

/* ---- text buffers ---- */

struct sbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *grown;

		while (cap < b->len + n + 1)
			cap *= 2;
		grown = realloc(b->s, cap);
		if (!grown) {
			b->oom = true;
			return;
		}
		b->s = grown;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sbuf_str(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

/* The text, or NULL (freed) when an allocation failed; "" for an empty buffer. */
static char *sbuf_take(struct sbuf *b)
{
	char *s = b->s;

	if (b->oom) {
		free(s);
		s = NULL;
	} else if (!s) {
		s = strdup("");
	}
	memset(b, 0, sizeof(*b));
	return s;
}

/* ---- YAML trees as one line of JSON ---- */

/* A plain scalar YAML reads as an integer that int64 holds, written without leading zeros. */
static bool plain_int(const char *s, int64_t *out)
{
	const char *d = s[0] == '-' ? s + 1 : s;
	char *end;

	if (!*d || strspn(d, "0123456789") != strlen(d) || (d[0] == '0' && d[1]))
		return false;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno == 0 && !*end;
}

/*
 * The tree as JSON with the same meaning to the YAML reader: plain null,
 * true/false and integers keep their type, every other scalar is a string.
 */
static struct json_object *ynode_to_json(const struct sm_ynode *n)
{
	struct json_object *o;
	int64_t v;

	switch (n->type) {
	case SM_YNODE_SCALAR:
		if (n->plain && sm_ynode_is_null(n))
			return json_object_new_null();
		if (n->plain && (strcmp(n->text, "true") == 0 || strcmp(n->text, "false") == 0))
			return json_object_new_boolean(n->text[0] == 't');
		if (n->plain && plain_int(n->text, &v))
			return json_object_new_int64(v);
		return json_object_new_string(n->text);
	case SM_YNODE_LIST:
		o = json_object_new_array();
		for (size_t i = 0; o && i < n->n; i++) {
			struct json_object *item = ynode_to_json(n->vals[i]);

			if (!item || json_object_array_add(o, item)) {
				json_object_put(item);
				json_object_put(o);
				return NULL;
			}
		}
		return o;
	case SM_YNODE_MAP:
		o = json_object_new_object();
		for (size_t i = 0; o && i < n->n; i++) {
			struct json_object *item = ynode_to_json(n->vals[i]);

			if (!item || json_object_object_add(o, n->keys[i]->text, item)) {
				json_object_put(item);
				json_object_put(o);
				return NULL;
			}
		}
		return o;
	}
	return NULL;
}

/*
 * o as one line of JSON, malloc'ed. json-c leaves U+0085, U+2028, U+2029 and
 * U+FEFF raw, and the YAML reader takes the first three for line breaks even
 * inside a quoted string: they are escaped, so the value stays one line and
 * a line of a built document stays one object.
 */
static char *json_line(struct json_object *o, size_t *len)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								  JSON_C_TO_STRING_NOSLASHESCAPE);
	struct sbuf b = {0};

	if (!s)
		return NULL;
	sbuf_add(&b, "", 0);
	while (*s) {
		size_t run = strcspn(s, "\xc2\xe2\xef");
		const unsigned char *u = (const unsigned char *) s + run;

		sbuf_add(&b, s, run);
		s += run;
		if (!*s)
			break;
		if (u[0] == 0xc2 && u[1] == 0x85) {
			sbuf_str(&b, "\\u0085");
			s += 2;
		} else if (u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0xa8 || u[2] == 0xa9)) {
			sbuf_str(&b, u[2] == 0xa8 ? "\\u2028" : "\\u2029");
			s += 3;
		} else if (u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf) {
			sbuf_str(&b, "\\ufeff");
			s += 3;
		} else {
			sbuf_add(&b, s, 1);
			s++;
		}
	}
	*len = b.len;
	return sbuf_take(&b);
}

static char *ynode_json_line(const struct sm_ynode *n, size_t *len)
{
	struct json_object *o = ynode_to_json(n);
	char *s = o ? json_line(o, len) : NULL;

	json_object_put(o);
	return s;
}

/*
 * The messages of what reads etcd's values quote text any etcd client wrote,
 * decoded (a JSON "\u001b" is the byte 0x1b by then): a control character
 * other than a tab becomes \xNN, so that a log or a terminal shows it and
 * does not act on it. Cut at the message's size.
 */
static void msg_clean(struct sm_error *err)
{
	char out[sizeof(err->msg)];
	size_t o = 0;

	for (const unsigned char *c = (const unsigned char *) err->msg; *c; c++) {
		if ((*c >= 0x20 && *c != 0x7f) || *c == '\t') {
			if (o + 1 >= sizeof(out))
				break;
			out[o++] = (char) *c;
			continue;
		}
		if (o + 5 >= sizeof(out))
			break;
		o += (size_t) snprintf(out + o, sizeof(out) - o, "\\x%02x", *c);
	}
	out[o] = '\0';
	memcpy(err->msg, out, o + 1);
}

char *sm_cluster_value_json(const char *value, size_t len, const char *name, size_t *out_len,
			    struct sm_error *err)
{
	struct sm_ynode *root = NULL;
	char *s = NULL;
	int ret;

	ret = sm_yaml_parse(value, len, name, &root, err);
	if (!ret && (!root || root->type != SM_YNODE_MAP)) {
		sm_error_set(err, "%s: expected a mapping, found %s", name,
			     root ? sm_ynode_kind(root) : "nothing");
		ret = -EINVAL;
	}
	if (!ret) {
		s = ynode_json_line(root, out_len);
		if (!s) {
			sm_error_set(err, "%s: out of memory", name);
			ret = -ENOMEM;
		}
	}
	sm_ynode_free(root);
	if (ret) {
		msg_clean(err);
		errno = -ret;
	}
	return s;
}

/* ---- an object's name ---- */

/* "ADDRESS_NUMBER" with ':' as '-'; 0 or -EINVAL. */
static int addr_name(const struct sm_addr *a, unsigned int number, char *out, size_t len)
{
	char buf[64];

	sm_addr_format(a, buf, sizeof(buf));
	for (char *c = buf; *c; c++)
		if (*c == ':')
			*c = '-';
	if ((size_t) snprintf(out, len, "%s_%u", buf, number) >= len)
		return -EINVAL;
	return 0;
}

/*
 * The name an object of kind is stored under: its name, or for a service
 * without one its address and port, for a CIDR its network. 0, or -EINVAL
 * with why in *why (static text) and *at the node it is about (NULL: map).
 */
static int obj_name(enum kind k, const struct sm_ynode *map, char *out, size_t len,
		    const char **why, const struct sm_ynode **at)
{
	const struct sm_ynode *name = sm_ymap_get(map, k == K_CIDR ? "cidr" : "name", NULL);
	const struct sm_ynode *addr, *port;
	struct sm_addr a;
	uint64_t p;
	uint8_t prefix;

	*at = name;
	if (name && (name->type != SM_YNODE_SCALAR || sm_ynode_is_null(name))) {
		*why = k == K_CIDR ? "cidr: expected ADDRESS/PREFIX"
				   : "name: expected a single value (" NAME_FIX ")";
		return -EINVAL;
	}
	if (k == K_CIDR) {
		if (!name || sm_cidr_parse(name->text, &a, &prefix)) {
			*why = "cidr: missing or not ADDRESS/PREFIX with the host bits zero "
			       "(e.g. 10.0.0.0/24)";
			*at = name ? name : map;
			return -EINVAL;
		}
		return addr_name(&a, prefix, out, len);
	}
	if (name) {
		if (!name_ok(name->text, strlen(name->text))) {
			*why = "name: not a valid name (" NAME_FIX ")";
			return -EINVAL;
		}
		return sm_strlcpy(out, name->text, len);
	}
	*at = map;
	if (k != K_SERVICE) {
		*why = k == K_POLICY ? "missing required key 'name'"
				     : "missing required key 'name' (" NAME_FIX ")";
		return -EINVAL;
	}
	addr = sm_ymap_get(map, "address", NULL);
	port = sm_ymap_get(map, "port", NULL);
	if (!addr || addr->type != SM_YNODE_SCALAR || sm_addr_parse(addr->text, &a) || !port ||
	    port->type != SM_YNODE_SCALAR || sm_parse_u64(port->text, 1, 65535, &p)) {
		*why = "a service without a name needs a valid address and port 1..65535 (its "
		       "key is ADDRESS_PORT); or give it a name";
		return -EINVAL;
	}
	return addr_name(&a, (unsigned int) p, out, len);
}

/* ---- splitting files ---- */

/* A key seen while splitting: the line of its object, for "first at line N". */
struct key_seen {
	unsigned int line;
	bool oom;
	UT_hash_handle hh;
	char key[];
};

static void keys_free(struct key_seen **table)
{
	struct key_seen *k, *tmp;

	HASH_ITER(hh, *table, k, tmp)
	{
		// uthash's delete-while-iterating idiom (see catalog.c)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(*table, k);
		free(k);
	}
}

/* 0 (added), 1 with *first = the line holding key already, or -ENOMEM. */
static int keys_add(struct key_seen **table, const char *key, unsigned int line,
		    unsigned int *first)
{
	size_t n = strlen(key);
	struct key_seen *k;

	HASH_FIND(hh, *table, key, n, k);
	if (k) {
		*first = k->line;
		return 1;
	}
	k = calloc(1, sizeof(*k) + n + 1);
	if (!k)
		return -ENOMEM;
	k->line = line;
	memcpy(k->key, key, n + 1);
	HASH_ADD(hh, *table, key[0], n, k);
	if (k->oom) {
		free(k);
		return -ENOMEM;
	}
	return 0;
}

static int objs_reserve(struct sm_cluster_objs *out, size_t more)
{
	struct sm_cluster_obj *grown;

	if (!more)
		return 0;
	grown = realloc(out->objs, (out->n + more) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	out->objs = grown;
	return 0;
}

static int split_section(const struct sm_ynode *root, enum kind k, const char *name,
			 struct key_seen **seen, struct sm_cluster_objs *out, struct sm_error *err)
{
	const struct sm_ynode *list = sm_ymap_get(root, kinds[k].section, NULL);
	int ret;

	if (!list || sm_ynode_is_null(list))
		return 0;
	if (list->type != SM_YNODE_LIST) {
		sm_ycheck_report(err, name, list->line,
				 "%s: expected a list, found %s (write each entry as '- ...')",
				 kinds[k].section, sm_ynode_kind(list));
		return -EINVAL;
	}
	if (objs_reserve(out, list->n))
		return sm_ycheck_nomem(err, name);
	for (size_t i = 0; i < list->n; i++) {
		const struct sm_ynode *item = list->vals[i], *at;
		struct sm_cluster_obj *obj = &out->objs[out->n];
		char oname[SM_CLUSTER_KEY_MAX];
		const char *why = "";
		unsigned int first;

		if (item->type != SM_YNODE_MAP) {
			sm_ycheck_report(err, name, item->line,
					 "%s[%zu]: expected a mapping, found %s", kinds[k].section,
					 i, sm_ynode_kind(item));
			return -EINVAL;
		}
		if (obj_name(k, item, oname, sizeof(oname), &why, &at)) {
			sm_ycheck_report(err, name, (at ? at : item)->line, "%s[%zu]: %s",
					 kinds[k].section, i, why);
			return -EINVAL;
		}
		memset(obj, 0, sizeof(*obj));
		snprintf(obj->key, sizeof(obj->key), "%s%s", kinds[k].dir, oname);
		obj->line = item->line;
		ret = keys_add(seen, obj->key, item->line, &first);
		if (ret < 0)
			return sm_ycheck_nomem(err, name);
		if (ret) {
			sm_ycheck_report(err, name, item->line,
					 "%s '%s' is given twice (first at line %u), both would be "
					 "key %s (remove one)",
					 kinds[k].what, oname, first, obj->key);
			return -EINVAL;
		}
		obj->value = ynode_json_line(item, &obj->value_len);
		if (!obj->value)
			return sm_ycheck_nomem(err, name);
		out->n++;
	}
	return 0;
}

int sm_cluster_split_catalog(const char *text, size_t len, const char *name,
			     struct sm_cluster_objs *out, struct sm_error *err)
{
	static const char *const top_keys[] = {"nodes", "workloads", "services", "cidrs"};
	struct key_seen *seen = NULL;
	struct sm_ynode *root = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = sm_yaml_parse(text, len, name, &root, err);
	if (ret)
		return ret;
	if (!root || sm_ynode_is_null(root))
		goto free_root;
	if (root->type != SM_YNODE_MAP) {
		sm_ycheck_report(err, name, root->line,
				 "expected a mapping with keys nodes, workloads, services, cidrs, "
				 "found %s (see docs/catalog.md)",
				 sm_ynode_kind(root));
		ret = -EINVAL;
		goto free_root;
	}
	ret = sm_ycheck_keys(err, name, root, "catalog", top_keys, SM_ARRAY_SIZE(top_keys));
	for (enum kind k = K_NODE; !ret && k <= K_CIDR; k++)
		ret = split_section(root, k, name, &seen, out, err);
	keys_free(&seen);
free_root:
	sm_ynode_free(root);
	if (ret)
		sm_cluster_objs_free(out);
	return ret;
}

int sm_cluster_split_policies(const char *text, size_t len, const char *name,
			      struct sm_cluster_objs *out, struct sm_error *err)
{
	struct sm_policy_set set;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = sm_policy_set_parse(&set, text, len, name, err);
	if (ret)
		return ret;
	if (objs_reserve(out, set.npolicies)) {
		ret = sm_ycheck_nomem(err, name);
		goto free_set;
	}
	for (size_t i = 0; i < set.npolicies; i++) {
		/* a set of that one policy, borrowed: only read by the serialiser */
		struct sm_policy_set one = {.policies = &set.policies[i], .npolicies = 1};
		struct sm_cluster_obj *obj = &out->objs[out->n];
		struct json_object *doc = NULL, *list, *pol;
		char *s = sm_policy_set_to_json(&one);

		memset(obj, 0, sizeof(*obj));
		if (s)
			doc = json_tokener_parse(s);
		free(s);
		if (doc && json_object_object_get_ex(doc, "policies", &list) &&
		    (pol = json_object_array_get_idx(list, 0)))
			obj->value = json_line(pol, &obj->value_len);
		json_object_put(doc);
		if (!obj->value) {
			ret = sm_ycheck_nomem(err, name);
			goto free_set;
		}
		snprintf(obj->key, sizeof(obj->key), "%s%s", SM_CK_POLICIES, set.policies[i].name);
		obj->line = set.policies[i].line;
		out->n++;
	}
free_set:
	sm_policy_set_free(&set);
	if (ret)
		sm_cluster_objs_free(out);
	return ret;
}

/* ---- building a state from keys ---- */

/* A built document: its text and, for each of its lines, the key it came from (NULL: none). */
struct doc {
	struct sbuf text;
	const char **line_keys; /* [line - 1] */
	size_t nlines, cap;
	size_t nobjs;
};

static int doc_line(struct doc *d, const char *text, size_t len, const char *key)
{
	if (d->nlines == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		// NOLINTNEXTLINE(bugprone-sizeof-expression): an array of string pointers
		const char **grown = realloc(d->line_keys, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		d->line_keys = grown;
		d->cap = cap;
	}
	d->line_keys[d->nlines++] = key;
	sbuf_add(&d->text, text, len);
	sbuf_add(&d->text, "\n", 1);
	return d->text.oom ? -ENOMEM : 0;
}

static void doc_free(struct doc *d)
{
	free(d->text.s);
	free(d->line_keys);
	memset(d, 0, sizeof(*d));
}

static const char *doc_key(const struct doc *d, unsigned long line)
{
	return line >= 1 && line <= d->nlines ? d->line_keys[line - 1] : NULL;
}

/*
 * A parser's "NAME:LINE: rest" about document d as "KEY: rest", KEY the key
 * of that line (whole_key when the line is no object's), with "line N" in
 * rest naming the key of line N too. bad_key gets the key ("" for none).
 */
static void map_error(const struct doc *d, const char *name, const char *whole_key,
		      struct sm_error *err, char *bad_key, size_t bad_key_len)
{
	size_t nlen = strlen(name);
	const char *msg = err->msg, *key = NULL, *p;
	unsigned long line = 0;
	struct sbuf b = {0};
	char *end, *text;

	if (bad_key_len)
		bad_key[0] = '\0';
	if (strncmp(msg, name, nlen) == 0 && msg[nlen] == ':') {
		line = strtoul(msg + nlen + 1, &end, 10);
		if (end[0] == ':' && end[1] == ' ')
			msg = end + 2;
		else
			msg += nlen + 1;
		key = doc_key(d, line);
	}
	if (key && bad_key_len)
		sm_strlcpy(bad_key, key, bad_key_len);
	sbuf_str(&b, key ? key : whole_key);
	sbuf_str(&b, ": ");
	/* "line N" and "line N)" as the key of line N */
	for (p = msg; *p;) {
		const char *hit = strstr(p, "line ");
		const char *other;

		if (!hit) {
			sbuf_str(&b, p);
			break;
		}
		line = strtoul(hit + 5, &end, 10);
		other = end != hit + 5 ? doc_key(d, line) : NULL;
		if (other) {
			sbuf_add(&b, p, (size_t) (hit - p));
			sbuf_str(&b, other);
			p = end;
		} else {
			sbuf_add(&b, p, (size_t) (hit - p) + 5);
			p = hit + 5;
		}
	}
	text = sbuf_take(&b);
	if (text)
		sm_error_set(err, "%s", text);
	free(text);
}

/* What build works on: each key's kind and name, sorted by key. */
struct build_kv {
	const struct sm_etcd_kv *kv;
	enum kind kind;
	bool generation;
};

static int cmp_build_kv(const void *a, const void *b)
{
	const struct build_kv *x = a, *y = b;

	return strcmp(x->kv->key, y->kv->key);
}

/* Which kind of key rel (relative to the prefix) is; -1 when none. */
/*
 * key as it may be shown in a message: any writer chose it, so a byte that
 * is not printable ASCII, a quote or a backslash is written \xNN (a terminal
 * would act on a control character; a quote would end the quoted key of a
 * command to paste). Cut at len. Returns whether anything was escaped.
 */
static bool key_shown(const char *key, char *buf, size_t len)
{
	bool escaped = false;
	size_t o = 0;

	for (const unsigned char *c = (const unsigned char *) key; *c && o + 5 < len; c++) {
		if (*c >= 0x20 && *c < 0x7f && *c != '\'' && *c != '\\') {
			buf[o++] = (char) *c;
			continue;
		}
		o += (size_t) snprintf(buf + o, len - o, "\\x%02x", *c);
		escaped = true;
	}
	buf[o] = '\0';
	return escaped;
}

static int classify(const char *rel, enum kind *k, bool *generation)
{
	*generation = strcmp(rel, SM_CK_GENERATION) == 0;
	if (*generation)
		return 0;
	for (enum kind i = K_NODE; i < K_NKINDS; i++) {
		size_t n = strlen(kinds[i].dir);

		if (strncmp(rel, kinds[i].dir, n) == 0 && name_ok(rel + n, strlen(rel + n))) {
			*k = i;
			return 0;
		}
	}
	return -1;
}

/* One value: parsed, a mapping of its key's name, as one line of JSON. */
static int build_value(const struct build_kv *b, const char *name, char **line, size_t *len,
		       struct sm_error *err)
{
	const char *key = b->kv->key;
	struct sm_ynode *root = NULL;
	const struct sm_ynode *at;
	char oname[SM_CLUSTER_KEY_MAX];
	const char *why = "";
	int ret;

	ret = sm_yaml_parse(b->kv->value, b->kv->value_len, key, &root, err);
	if (ret)
		return ret;
	if (!root || root->type != SM_YNODE_MAP) {
		sm_error_set(err,
			     "%s: expected a mapping (a %s as JSON, e.g. {\"name\": \"%s\", ...}), "
			     "found %s (write the object, or delete the key)",
			     key, kinds[b->kind].what, name,
			     root ? sm_ynode_kind(root) : "nothing");
		ret = -EINVAL;
		goto free_root;
	}
	if (obj_name(b->kind, root, oname, sizeof(oname), &why, &at)) {
		sm_error_set(err, "%s: %s", key, why);
		ret = -EINVAL;
		goto free_root;
	}
	if (strcmp(oname, name) != 0) {
		sm_error_set(err,
			     "%s: the %s is '%s' but its key says '%s' (a key holds the object "
			     "of its name: rename the key or the object)",
			     key, kinds[b->kind].what, oname, name);
		ret = -EINVAL;
		goto free_root;
	}
	*line = ynode_json_line(root, len);
	if (!*line) {
		sm_error_set(err, "%s: out of memory", key);
		ret = -ENOMEM;
	}
free_root:
	sm_ynode_free(root);
	return ret;
}

struct build {
	struct doc cat, pol;
	bool any_catalog;
	char whole_catalog[SM_CLUSTER_KEY_MAX], whole_policies[SM_CLUSTER_KEY_MAX];
};

/* Every key of the sorted list into the two documents, one object per line. */
static int build_docs(struct build *bd, const char *prefix, const struct build_kv *bkv, size_t n,
		      struct sm_cluster_state *out, char *bad_key, size_t bad_key_len,
		      struct sm_error *err)
{
	size_t plen = strlen(prefix);
	int ret;

	ret = doc_line(&bd->pol, "{\"policies\": [", 14, NULL);
	for (enum kind k = K_NODE; !ret && k < K_NKINDS; k++) {
		struct doc *d = k == K_POLICY ? &bd->pol : &bd->cat;
		int64_t *rev = k == K_POLICY ? &out->policy_revision : &out->catalog_revision;
		size_t first = d->nobjs;

		for (size_t i = 0; !ret && i < n; i++) {
			const char *key = bkv[i].kv->key;
			size_t len = 0;
			char *line = NULL;

			if (bkv[i].generation || bkv[i].kind != k)
				continue;
			ret = build_value(&bkv[i], key + plen + strlen(kinds[k].dir), &line, &len,
					  err);
			if (ret) {
				sm_strlcpy(bad_key, key, bad_key_len);
				return ret;
			}
			if (k == K_POLICY && d->nobjs) {
				/* the separator ends the line before: it stays one object's */
				d->text.s[d->text.len - 1] = ',';
				sbuf_add(&d->text, "\n", 1);
			} else if (k != K_POLICY && d->nobjs == first) {
				ret = doc_line(d, kinds[k].section, strlen(kinds[k].section), NULL);
				d->text.s[d->text.len - 1] = ':';
				sbuf_add(&d->text, "\n", 1);
			}
			if (!ret && k != K_POLICY)
				sbuf_add(&d->text, "- ", 2);
			if (!ret)
				ret = doc_line(d, line, len, key);
			free(line);
			d->nobjs++;
			if (bkv[i].kv->mod_revision > *rev)
				*rev = bkv[i].kv->mod_revision;
		}
	}
	if (!ret)
		ret = doc_line(&bd->pol, "]}", 2, NULL);
	if (ret || bd->cat.text.oom || bd->pol.text.oom) {
		sm_error_set(err, "%sconfig/: out of memory", prefix);
		return -ENOMEM;
	}
	return 0;
}

static int build_state(const char *prefix, const struct sm_etcd_kv *kvs, size_t n, int64_t revision,
		       struct sm_cluster_state *out, char *bad_key, size_t bad_key_len,
		       struct sm_error *err)
{
	struct build bd = {0};
	struct build_kv *bkv = NULL;
	char cfg[SM_CLUSTER_KEY_MAX], shown[4 * SM_CLUSTER_KEY_MAX];
	size_t plen, clen;
	int ret;

	state_clear(out);
	if (bad_key_len)
		bad_key[0] = '\0';
	ret = sm_cluster_prefix_check(prefix, err);
	if (ret)
		return ret;
	plen = strlen(prefix);
	clen = (size_t) snprintf(cfg, sizeof(cfg), "%s%s", prefix, SM_CK_CONFIG);
	snprintf(bd.whole_catalog, sizeof(bd.whole_catalog), "%s%s", prefix, SM_CK_CATALOG);
	snprintf(bd.whole_policies, sizeof(bd.whole_policies), "%s%s", prefix, SM_CK_POLICIES);
	bkv = calloc(n ? n : 1, sizeof(*bkv));
	if (!bkv) {
		sm_error_set(err, "%s: out of memory", cfg);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		bkv[i].kv = &kvs[i];
		if (bad_key_len && kvs[i].key_len >= bad_key_len) {
			/* only keys outside the layout are this long: name it by its start,
			 * as a cut key in bad_key would name a key that does not exist */
			key_shown(kvs[i].key, shown, 81);
			sm_error_set(err,
				     "a key of %zu bytes starting with '%s' is not a key sockmesh "
				     "keeps under %s (they are at most %d bytes); find it with "
				     "etcdctl get --prefix --keys-only '%s' and delete it",
				     kvs[i].key_len, shown, cfg, SM_CLUSTER_KEY_MAX - 1, cfg);
			ret = -EINVAL;
			goto free_bkv;
		}
		if (strncmp(kvs[i].key, cfg, clen) != 0 ||
		    classify(kvs[i].key + plen, &bkv[i].kind, &bkv[i].generation)) {
			bool escaped = key_shown(kvs[i].key, shown, sizeof(shown));

			sm_error_set(
				err,
				"%s: not a key sockmesh keeps under %s (those are "
				"catalog/nodes/NAME, catalog/workloads/NAME, "
				"catalog/services/NAME, catalog/cidrs/NAME, policies/NAME "
				"and generation, NAME of 1 to 63 letters, digits, '.', '_' "
				"or '-'; %s%s%s)",
				shown, cfg,
				escaped ? "it holds bytes shown as \\xNN: find it with etcdctl "
					  "get --prefix --keys-only '"
					: "delete it: etcdctl del '",
				escaped ? cfg : shown, escaped ? "' and delete it" : "'");
			sm_strlcpy(bad_key, kvs[i].key, bad_key_len);
			ret = -EINVAL;
			goto free_bkv;
		}
	}
	/* every node builds the same documents from the same keys, however they came */
	qsort(bkv, n, sizeof(*bkv), cmp_build_kv);
	ret = build_docs(&bd, prefix, bkv, n, out, bad_key, bad_key_len, err);
	if (ret)
		goto free_docs;

	if (bd.cat.nobjs) {
		ret = sm_catalog_parse(&out->cat, bd.cat.text.s, bd.cat.text.len, "catalog", err);
		if (ret) {
			map_error(&bd.cat, "catalog", bd.whole_catalog, err, bad_key, bad_key_len);
			goto free_docs;
		}
	}
	ret = sm_policy_set_parse(&out->policies, bd.pol.text.s, bd.pol.text.len, "policies", err);
	if (ret) {
		map_error(&bd.pol, "policies", bd.whole_policies, err, bad_key, bad_key_len);
		goto free_catalog;
	}
	out->catalog_len = bd.cat.text.len;
	out->catalog_doc = sbuf_take(&bd.cat.text);
	out->policy_len = bd.pol.text.len;
	out->policy_doc = sbuf_take(&bd.pol.text);
	if (!out->catalog_doc || !out->policy_doc) {
		sm_error_set(err, "%s: out of memory", cfg);
		ret = -ENOMEM;
		sm_cluster_state_free(out);
		goto free_docs;
	}
	out->revision = revision;
	out->nkeys = n;
	goto free_docs;

free_catalog:
	sm_catalog_free(&out->cat);
free_docs:
	doc_free(&bd.cat);
	doc_free(&bd.pol);
	if (ret)
		state_clear(out);
free_bkv:
	free(bkv);
	return ret;
}

/* ---- status values ---- */

static bool add(struct json_object *o, const char *key, struct json_object *v)
{
	if (!v)
		return false;
	if (json_object_object_add(o, key, v)) {
		json_object_put(v);
		return false;
	}
	return true;
}

char *sm_cluster_applied_json(const struct sm_cluster_applied *a)
{
	struct json_object *o = json_object_new_object(), *r = NULL;
	bool ok = o != NULL;
	char *s = NULL;
	size_t len;

	ok = ok && add(o, "node", json_object_new_string(a->node));
	ok = ok && add(o, "revision", json_object_new_int64(a->revision));
	ok = ok && add(o, "catalog_revision", json_object_new_int64(a->catalog_revision));
	ok = ok && add(o, "policy_revision", json_object_new_int64(a->policy_revision));
	ok = ok && add(o, "local_policy_revision", json_object_new_int64(a->local_policy_revision));
	ok = ok && add(o, "connected", json_object_new_boolean(a->connected));
	if (ok && a->stale_since[0])
		ok = add(o, "stale_since", json_object_new_string(a->stale_since));
	else if (ok)
		ok = json_object_object_add(o, "stale_since", NULL) == 0;
	if (ok && a->refused_revision) {
		r = json_object_new_object();
		ok = r && add(r, "revision", json_object_new_int64(a->refused_revision)) &&
		     add(r, "key", json_object_new_string(a->refused_key)) &&
		     add(r, "reason", json_object_new_string(a->refused_reason));
		ok = ok && add(o, "refused", r);
		if (!ok && r && !json_object_object_get_ex(o, "refused", NULL))
			json_object_put(r);
	} else if (ok) {
		ok = json_object_object_add(o, "refused", NULL) == 0;
	}
	ok = ok && add(o, "updated", json_object_new_string(a->updated));
	if (ok)
		s = json_line(o, &len);
	json_object_put(o);
	if (!s)
		errno = ENOMEM;
	return s;
}

/* Member key of o with type t (json_type_null allowed when nullable); NULL after a message. */
static struct json_object *member(struct json_object *o, const char *key, enum json_type t,
				  bool nullable, bool *is_null, struct sm_error *err)
{
	struct json_object *v = NULL;

	if (is_null)
		*is_null = false;
	if (!json_object_object_get_ex(o, key, &v)) {
		sm_error_set(err, "applied state: missing '%s'", key);
		return NULL;
	}
	if (!v && nullable) {
		*is_null = true;
		return NULL;
	}
	if (!v || !json_object_is_type(v, t)) {
		sm_error_set(err, "applied state: '%s' is not %s", key,
			     t == json_type_int	      ? "an integer"
			     : t == json_type_boolean ? "true or false"
			     : t == json_type_string  ? "a string"
						      : "an object");
		return NULL;
	}
	return v;
}

static int get_str(struct json_object *o, const char *key, bool nullable, char *out, size_t len,
		   struct sm_error *err)
{
	bool is_null = false;
	struct json_object *v = member(o, key, json_type_string, nullable, &is_null, err);

	out[0] = '\0';
	if (is_null)
		return 0;
	if (!v)
		return -EINVAL;
	if ((size_t) json_object_get_string_len(v) >= len) {
		sm_error_set(err, "applied state: '%s' is longer than %zu bytes", key, len - 1);
		return -EINVAL;
	}
	memcpy(out, json_object_get_string(v), (size_t) json_object_get_string_len(v) + 1);
	return 0;
}

static int get_int(struct json_object *o, const char *key, int64_t max, int64_t *out,
		   struct sm_error *err)
{
	struct json_object *v = member(o, key, json_type_int, false, NULL, err);

	if (!v)
		return -EINVAL;
	errno = 0;
	*out = json_object_get_int64(v);
	if (*out < 0 || *out > max || errno) {
		sm_error_set(err, "applied state: '%s' is out of range 0..%" PRId64, key, max);
		return -EINVAL;
	}
	return 0;
}

static int applied_parse(const char *json, size_t len, struct sm_cluster_applied *a,
			 struct sm_error *err)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL, *v, *r;
	bool is_null = false;
	int64_t n;
	int ret = -EINVAL;

	memset(a, 0, sizeof(*a));
	if (!tok) {
		sm_error_set(err, "applied state: out of memory");
		return -ENOMEM;
	}
	if (len > INT32_MAX || memchr(json, '\0', len))
		sm_error_set(err, "applied state: not JSON text");
	else
		o = json_tokener_parse_ex(tok, json, (int) len);
	/* one object and nothing after it but blanks */
	for (size_t i = o ? (size_t) tok->char_offset : len; i < len; i++) {
		if (!strchr(" \t\r\n", json[i])) {
			json_object_put(o);
			o = NULL;
			break;
		}
	}
	json_tokener_free(tok);
	if (!o) {
		sm_error_set(err, "applied state: not one JSON object");
		return -EINVAL;
	}
	if (!json_object_is_type(o, json_type_object)) {
		sm_error_set(err, "applied state: not a JSON object");
		goto put;
	}
	if (get_str(o, "node", false, a->node, sizeof(a->node), err) ||
	    get_int(o, "revision", INT64_MAX, &a->revision, err) ||
	    get_int(o, "catalog_revision", INT64_MAX, &a->catalog_revision, err) ||
	    get_int(o, "policy_revision", INT64_MAX, &a->policy_revision, err) ||
	    get_int(o, "local_policy_revision", UINT32_MAX, &n, err))
		goto put;
	a->local_policy_revision = (uint32_t) n;
	v = member(o, "connected", json_type_boolean, false, NULL, err);
	if (!v)
		goto put;
	a->connected = json_object_get_boolean(v);
	if (get_str(o, "stale_since", true, a->stale_since, sizeof(a->stale_since), err) ||
	    get_str(o, "updated", false, a->updated, sizeof(a->updated), err))
		goto put;
	r = member(o, "refused", json_type_object, true, &is_null, err);
	if (!r && !is_null)
		goto put;
	if (r && (get_int(r, "revision", INT64_MAX, &a->refused_revision, err) ||
		  get_str(r, "key", false, a->refused_key, sizeof(a->refused_key), err) ||
		  get_str(r, "reason", false, a->refused_reason, sizeof(a->refused_reason), err)))
		goto put;
	if (r && a->refused_revision < 1) {
		sm_error_set(err, "applied state: refused.revision must be at least 1");
		goto put;
	}
	ret = 0;
put:
	json_object_put(o);
	if (ret) {
		char msg[sizeof(err->msg)];

		sm_strlcpy(msg, err->msg, sizeof(msg));
		memset(a, 0, sizeof(*a));
		sm_error_set(err, "%s", msg);
	}
	return ret;
}

int sm_cluster_build(const char *prefix, const struct sm_etcd_kv *kvs, size_t n, int64_t revision,
		     struct sm_cluster_state *out, char *bad_key, size_t bad_key_len,
		     struct sm_error *err)
{
	int ret = build_state(prefix, kvs, n, revision, out, bad_key, bad_key_len, err);

	if (ret)
		msg_clean(err);
	return ret;
}

int sm_cluster_applied_parse(const char *json, size_t len, struct sm_cluster_applied *a,
			     struct sm_error *err)
{
	int ret = applied_parse(json, len, a, err);

	if (ret)
		msg_clean(err);
	return ret;
}
