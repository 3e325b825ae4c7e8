// SPDX-License-Identifier: Apache-2.0
/* Policy sets: comparing, copying, merging and removing policies; JSON and YAML output. */
#include "policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <yaml.h>

#include "sockmesh/common.h"

#include "policy_int.h"
#include "yaml_doc.h"

/* ---- set operations ---- */

const struct sm_policy *sm_policy_set_find(const struct sm_policy_set *set, const char *name)
{
	struct sm_policy key;

	memset(&key, 0, sizeof(key));
	if (!set->npolicies || sm_strlcpy(key.name, name, sizeof(key.name)))
		return NULL;
	return bsearch(&key, set->policies, set->npolicies, sizeof(key), pol_cmp_policy_name);
}

static bool str_equal(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool ports_equal(const struct sm_port_range *a, size_t na, const struct sm_port_range *b,
			size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i].lo != b[i].lo || a[i].hi != b[i].hi)
			return false;
	return true;
}

static bool peer_equal(const struct sm_policy_peer *a, const struct sm_policy_peer *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == SM_POLICY_PEER_CIDR)
		return a->prefix == b->prefix && sm_addr_equal(&a->addr, &b->addr);
	return str_equal(a->spiffe, b->spiffe);
}

static bool rule_equal(const struct sm_policy_rule *a, const struct sm_policy_rule *b)
{
	if (a->action != b->action || a->nfrom != b->nfrom ||
	    !ports_equal(a->ports, a->nports, b->ports, b->nports) ||
	    !str_equal(a->description, b->description))
		return false;
	for (size_t i = 0; i < a->nfrom; i++)
		if (!peer_equal(&a->from[i], &b->from[i]))
			return false;
	return true;
}

static bool policy_equal(const struct sm_policy *a, const struct sm_policy *b)
{
	if (strcmp(a->name, b->name) != 0 || !str_equal(a->selector, b->selector) ||
	    !ports_equal(a->ports, a->nports, b->ports, b->nports) || a->nrules != b->nrules ||
	    !str_equal(a->description, b->description))
		return false;
	for (size_t i = 0; i < a->nrules; i++)
		if (!rule_equal(&a->rules[i], &b->rules[i]))
			return false;
	return true;
}

bool sm_policy_set_equal(const struct sm_policy_set *a, const struct sm_policy_set *b)
{
	if (a->npolicies != b->npolicies)
		return false;
	for (size_t i = 0; i < a->npolicies; i++)
		if (!policy_equal(&a->policies[i], &b->policies[i]))
			return false;
	return true;
}

/* strdup that keeps NULL: 0 or -ENOMEM. */
static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int dup_ports(const struct sm_port_range *r, size_t n, struct sm_port_range **out)
{
	*out = NULL;
	if (!n)
		return 0;
	*out = malloc(n * sizeof(*r));
	if (!*out)
		return -ENOMEM;
	memcpy(*out, r, n * sizeof(*r));
	return 0;
}

/* Deep copy; on failure dst holds what was copied so far (pol_policy_free() releases it). */
static int policy_copy(struct sm_policy *dst, const struct sm_policy *src)
{
	memset(dst, 0, sizeof(*dst));
	memcpy(dst->name, src->name, sizeof(dst->name));
	dst->selector_pattern = src->selector_pattern;
	dst->selector_line = src->selector_line;
	dst->nports = src->nports;
	dst->line = src->line;
	if (dup_opt(src->selector, &dst->selector) ||
	    dup_opt(src->description, &dst->description) ||
	    dup_ports(src->ports, src->nports, &dst->ports))
		return -ENOMEM;
	dst->rules = calloc(src->nrules, sizeof(*dst->rules));
	if (!dst->rules)
		return -ENOMEM;
	dst->nrules = src->nrules;
	for (size_t i = 0; i < src->nrules; i++) {
		const struct sm_policy_rule *sr = &src->rules[i];
		struct sm_policy_rule *dr = &dst->rules[i];

		dr->action = sr->action;
		dr->line = sr->line;
		dr->nports = sr->nports;
		if (dup_opt(sr->description, &dr->description) ||
		    dup_ports(sr->ports, sr->nports, &dr->ports))
			return -ENOMEM;
		dr->from = calloc(sr->nfrom, sizeof(*dr->from));
		if (!dr->from)
			return -ENOMEM;
		dr->nfrom = sr->nfrom;
		for (size_t j = 0; j < sr->nfrom; j++) {
			dr->from[j] = sr->from[j];
			dr->from[j].spiffe = NULL;
			if (dup_opt(sr->from[j].spiffe, &dr->from[j].spiffe))
				return -ENOMEM;
		}
	}
	return 0;
}

/* A policy picked for a new set (a struct so that arrays of them size cleanly). */
struct pol_ref {
	const struct sm_policy *pol;
};

/* out = the policies list[0..n), deep-copied, in that order (already sorted). */
static int set_from_list(const struct pol_ref *list, size_t n, struct sm_policy_set *out)
{
	memset(out, 0, sizeof(*out));
	if (!n)
		return 0;
	out->policies = calloc(n, sizeof(*out->policies));
	if (!out->policies)
		return -ENOMEM;
	out->npolicies = n;
	for (size_t i = 0; i < n; i++) {
		if (policy_copy(&out->policies[i], list[i].pol)) {
			sm_policy_set_free(out);
			return -ENOMEM;
		}
	}
	return 0;
}

int sm_policy_set_copy(const struct sm_policy_set *src, struct sm_policy_set *out)
{
	struct pol_ref *list;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!src->npolicies)
		return 0;
	list = malloc(src->npolicies * sizeof(*list));
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < src->npolicies; i++)
		list[i].pol = &src->policies[i];
	ret = set_from_list(list, src->npolicies, out);
	free(list);
	return ret;
}

int sm_policy_set_merge(const struct sm_policy_set *current, const struct sm_policy_set *incoming,
			struct sm_policy_set *out)
{
	struct pol_ref *list;
	size_t i = 0, j = 0, n = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!current->npolicies && !incoming->npolicies)
		return 0;
	list = malloc((current->npolicies + incoming->npolicies) * sizeof(*list));
	if (!list)
		return -ENOMEM;
	/* both sorted by name: merge, incoming winning on equal names */
	while (i < current->npolicies || j < incoming->npolicies) {
		int c;

		if (i == current->npolicies)
			c = 1;
		else if (j == incoming->npolicies)
			c = -1;
		else
			c = strcmp(current->policies[i].name, incoming->policies[j].name);
		if (c < 0) {
			list[n++].pol = &current->policies[i++];
		} else {
			if (c == 0)
				i++;
			list[n++].pol = &incoming->policies[j++];
		}
	}
	ret = set_from_list(list, n, out);
	free(list);
	return ret;
}

int sm_policy_set_remove(const struct sm_policy_set *current, const char *name,
			 struct sm_policy_set *out)
{
	struct pol_ref *list;
	size_t n = 0;
	bool found = false;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!current->npolicies)
		return -ENOENT;
	list = malloc(current->npolicies * sizeof(*list));
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < current->npolicies; i++) {
		if (strcmp(current->policies[i].name, name) == 0)
			found = true;
		else
			list[n++].pol = &current->policies[i];
	}
	ret = found ? set_from_list(list, n, out) : -ENOENT;
	free(list);
	return ret;
}

/* ---- serialisation ---- */

static const char *rule_action_name(enum sm_policy_rule_action a)
{
	switch (a) {
	case SM_POLICY_RULE_ALLOW:
		return "ALLOW";
	case SM_POLICY_RULE_DENY:
		return "DENY";
	case SM_POLICY_RULE_AUDIT:
		return "AUDIT";
	}
	return "?";
}

/* A source as written in a document. Returns buf. */
static const char *peer_text(const struct sm_policy_peer *peer, char *buf, size_t len)
{
	char addr[64];

	switch (peer->kind) {
	case SM_POLICY_PEER_ANY:
		snprintf(buf, len, "any");
		break;
	case SM_POLICY_PEER_CIDR:
		snprintf(buf, len, "%s/%u", sm_addr_format(&peer->addr, addr, sizeof(addr)),
			 peer->prefix);
		break;
	default:
		snprintf(buf, len, "%s", peer->spiffe ? peer->spiffe : "");
		break;
	}
	return buf;
}

static struct json_object *ports_to_json(const struct sm_port_range *r, size_t n)
{
	struct json_object *arr = json_object_new_array();
	char buf[16];

	for (size_t i = 0; arr && i < n; i++) {
		struct json_object *v;

		if (r[i].lo == r[i].hi) {
			v = json_object_new_int(r[i].lo);
		} else {
			snprintf(buf, sizeof(buf), "%u-%u", r[i].lo, r[i].hi);
			v = json_object_new_string(buf);
		}
		if (!v || json_object_array_add(arr, v)) {
			json_object_put(v);
			json_object_put(arr);
			return NULL;
		}
	}
	return arr;
}

/* Add v under key, taking v; false (v released) on failure or when v is NULL. */
static bool json_add(struct json_object *obj, const char *key, struct json_object *v)
{
	if (!v)
		return false;
	if (json_object_object_add(obj, key, v)) {
		json_object_put(v);
		return false;
	}
	return true;
}

static bool json_add_str(struct json_object *obj, const char *key, const char *s)
{
	return json_add(obj, key, json_object_new_string(s));
}

static struct json_object *rule_to_json(const struct sm_policy_rule *r)
{
	struct json_object *o = json_object_new_object(), *from = json_object_new_array();
	char buf[SM_SPIFFE_MAX];
	bool ok = o && from;

	for (size_t i = 0; ok && i < r->nfrom; i++) {
		struct json_object *v =
			json_object_new_string(peer_text(&r->from[i], buf, sizeof(buf)));

		if (!v || json_object_array_add(from, v)) {
			json_object_put(v);
			ok = false;
		}
	}
	ok = ok && json_add_str(o, "action", rule_action_name(r->action));
	ok = ok && json_add(o, "from", from);
	from = NULL;
	if (ok && r->nports)
		ok = json_add(o, "ports", ports_to_json(r->ports, r->nports));
	if (ok && r->description)
		ok = json_add_str(o, "description", r->description);
	json_object_put(from);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static struct json_object *policy_to_json(const struct sm_policy *pol)
{
	struct json_object *o = json_object_new_object(), *sel = json_object_new_object();
	struct json_object *rules = json_object_new_array();
	bool ok = o && sel && rules;

	ok = ok && json_add_str(sel, "spiffe", pol->selector);
	if (ok && pol->nports)
		ok = json_add(sel, "ports", ports_to_json(pol->ports, pol->nports));
	for (size_t i = 0; ok && i < pol->nrules; i++) {
		struct json_object *r = rule_to_json(&pol->rules[i]);

		if (!r || json_object_array_add(rules, r)) {
			json_object_put(r);
			ok = false;
		}
	}
	ok = ok && json_add_str(o, "name", pol->name);
	ok = ok && json_add(o, "selector", sel);
	sel = NULL;
	ok = ok && json_add(o, "rules", rules);
	rules = NULL;
	if (ok && pol->description)
		ok = json_add_str(o, "description", pol->description);
	json_object_put(sel);
	json_object_put(rules);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/*
 * json-c leaves U+0085, U+2028, U+2029 and U+FEFF raw, and YAML parsers (ours
 * included) take the first three for line breaks inside a quoted string: escape
 * them. They can only occur inside JSON strings, so a plain replace is safe.
 */
static char *json_escape_breaks(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1), *o; /* 2 or 3 bytes become 6 */

	if (!out)
		return NULL;
	o = out;
	while (*s) {
		const unsigned char *u = (const unsigned char *) s;

		if (u[0] == 0xc2 && u[1] == 0x85) {
			o += sprintf(o, "\\u0085");
			s += 2;
		} else if (u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0xa8 || u[2] == 0xa9)) {
			o += sprintf(o, "\\u%s", u[2] == 0xa8 ? "2028" : "2029");
			s += 3;
		} else if (u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf) {
			o += sprintf(o, "\\ufeff");
			s += 3;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
	return out;
}

char *sm_policy_set_to_json(const struct sm_policy_set *set)
{
	struct json_object *root = json_object_new_object(), *arr = json_object_new_array();
	bool ok = root && arr;
	char *out = NULL;

	for (size_t i = 0; ok && i < set->npolicies; i++) {
		struct json_object *p = policy_to_json(&set->policies[i]);

		if (!p || json_object_array_add(arr, p)) {
			json_object_put(p);
			ok = false;
		}
	}
	ok = ok && json_add(root, "policies", arr);
	arr = NULL;
	if (ok) {
		const char *s = json_object_to_json_string_ext(
			root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
				      JSON_C_TO_STRING_NOSLASHESCAPE);

		out = s ? json_escape_breaks(s) : NULL;
	}
	json_object_put(arr);
	json_object_put(root);
	if (!out)
		errno = ENOMEM;
	return out;
}

/*
 * The YAML side is written with libyaml's emitter, the library that reads it
 * back: it chooses plain, single- or double-quoted style and escapes what the
 * text holds. What it cannot know is which plain words the reader resolves to
 * something other than text: a value the reader takes for null (sm_ynode_is_null:
 * "", "~", "null", ...) is marked not to be written plain.
 */
struct yemit {
	yaml_emitter_t e;
	yaml_event_t ev;
	bool ok;
};

/* Emit the event y->ev holds; after a failure, emit nothing more. */
static void yemit_event(struct yemit *y, int made)
{
	if (!y->ok)
		return;
	if (!made) {
		y->ok = false;
		return;
	}
	y->ok = yaml_emitter_emit(&y->e, &y->ev) != 0; /* takes the event, also on failure */
}

/* A text value (a string to the reader); style 0 lets the emitter choose. */
static void yemit_text(struct yemit *y, const char *s, yaml_scalar_style_t style)
{
	struct sm_ynode plain = {.type = SM_YNODE_SCALAR, .text = (char *) s, .plain = true};

	yemit_event(y, yaml_scalar_event_initialize(&y->ev, NULL, NULL, (yaml_char_t *) s,
						    (int) strlen(s), !sm_ynode_is_null(&plain), 1,
						    style ? style : YAML_ANY_SCALAR_STYLE));
}

static void yemit_key(struct yemit *y, const char *key)
{
	yemit_text(y, key, YAML_PLAIN_SCALAR_STYLE);
}

static void yemit_seq(struct yemit *y, yaml_sequence_style_t style)
{
	yemit_event(y, yaml_sequence_start_event_initialize(&y->ev, NULL, NULL, 1, style));
}

static void yemit_seq_end(struct yemit *y)
{
	yemit_event(y, yaml_sequence_end_event_initialize(&y->ev));
}

static void yemit_map(struct yemit *y)
{
	yemit_event(y, yaml_mapping_start_event_initialize(&y->ev, NULL, NULL, 1,
							   YAML_BLOCK_MAPPING_STYLE));
}

static void yemit_map_end(struct yemit *y)
{
	yemit_event(y, yaml_mapping_end_event_initialize(&y->ev));
}

/* ports: [8080, "9000-9010"]: numbers plain, ranges quoted as documents write them. */
static void yemit_ports(struct yemit *y, const struct sm_port_range *r, size_t n)
{
	char buf[16];

	yemit_key(y, "ports");
	yemit_seq(y, YAML_FLOW_SEQUENCE_STYLE);
	for (size_t i = 0; i < n; i++) {
		if (r[i].lo == r[i].hi) {
			snprintf(buf, sizeof(buf), "%u", r[i].lo);
			yemit_text(y, buf, YAML_PLAIN_SCALAR_STYLE);
		} else {
			snprintf(buf, sizeof(buf), "%u-%u", r[i].lo, r[i].hi);
			yemit_text(y, buf, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
		}
	}
	yemit_seq_end(y);
}

static void yemit_rule(struct yemit *y, const struct sm_policy_rule *rule)
{
	char buf[SM_SPIFFE_MAX];

	yemit_map(y);
	yemit_key(y, "action");
	yemit_text(y, rule_action_name(rule->action), YAML_PLAIN_SCALAR_STYLE);
	yemit_key(y, "from");
	yemit_seq(y, YAML_BLOCK_SEQUENCE_STYLE);
	for (size_t k = 0; k < rule->nfrom; k++)
		yemit_text(y, peer_text(&rule->from[k], buf, sizeof(buf)), 0);
	yemit_seq_end(y);
	if (rule->nports)
		yemit_ports(y, rule->ports, rule->nports);
	if (rule->description) {
		yemit_key(y, "description");
		yemit_text(y, rule->description, 0);
	}
	yemit_map_end(y);
}

static void yemit_policy(struct yemit *y, const struct sm_policy *pol)
{
	yemit_map(y);
	yemit_key(y, "name");
	yemit_text(y, pol->name, 0);
	yemit_key(y, "selector");
	yemit_map(y);
	yemit_key(y, "spiffe");
	yemit_text(y, pol->selector, 0);
	if (pol->nports)
		yemit_ports(y, pol->ports, pol->nports);
	yemit_map_end(y);
	yemit_key(y, "rules");
	yemit_seq(y, YAML_BLOCK_SEQUENCE_STYLE);
	for (size_t r = 0; r < pol->nrules; r++)
		yemit_rule(y, &pol->rules[r]);
	yemit_seq_end(y);
	if (pol->description) {
		yemit_key(y, "description");
		yemit_text(y, pol->description, 0);
	}
	yemit_map_end(y);
}

char *sm_policy_set_to_yaml(const struct sm_policy_set *set)
{
	struct yemit y = {.ok = true};
	char *out = NULL;
	size_t len = 0;
	int err;
	FILE *f;

	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	if (!yaml_emitter_initialize(&y.e)) {
		fclose(f);
		free(out);
		errno = ENOMEM;
		return NULL;
	}
	yaml_emitter_set_output_file(&y.e, f);
	yaml_emitter_set_unicode(&y.e, 1); /* UTF-8 text as it is, not as escapes */
	yaml_emitter_set_width(&y.e, -1);  /* no folding of long descriptions */
	yaml_emitter_set_indent(&y.e, 2);
	yemit_event(&y, yaml_stream_start_event_initialize(&y.ev, YAML_UTF8_ENCODING));
	yemit_event(&y, yaml_document_start_event_initialize(&y.ev, NULL, NULL, NULL, 1));
	yemit_map(&y);
	yemit_key(&y, "policies");
	yemit_seq(&y, YAML_BLOCK_SEQUENCE_STYLE);
	for (size_t i = 0; i < set->npolicies; i++)
		yemit_policy(&y, &set->policies[i]);
	yemit_seq_end(&y);
	yemit_map_end(&y);
	yemit_event(&y, yaml_document_end_event_initialize(&y.ev, 1));
	yemit_event(&y, yaml_stream_end_event_initialize(&y.ev));
	if (y.ok && !yaml_emitter_flush(&y.e))
		y.ok = false;
	/* the emitter refuses text that is not UTF-8; the parser never gives it any */
	err = y.ok ? 0 : y.e.error == YAML_EMITTER_ERROR ? EINVAL : ENOMEM;
	yaml_emitter_delete(&y.e);
	if (fclose(f) && !err)
		err = ENOMEM;
	if (err) {
		free(out);
		errno = err;
		return NULL;
	}
	return out;
}
