// SPDX-License-Identifier: Apache-2.0
/* Policy: parser, validator, compiler into kernel entries, lookup, evaluator, sets, diffs. */
#include "policy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <uthash.h>

#include "sockmesh/common.h"

#include "yaml_doc.h"

#define NAME_FIX                                                                                   \
	"use 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or "      \
	"digit, e.g. web-from-api"
#define SPIFFE_FORMS                                                                               \
	"write an exact ID such as spiffe://example.org/ns/prod/sa/api, or an ID prefix "          \
	"followed by /* such as spiffe://example.org/ns/prod/* or spiffe://example.org/*"
#define PORT_FIX "write a port 1..65535 or a range \"A-B\", e.g. ports: [8080, \"9000-9010\"]"
#define SOURCE_FIX                                                                                 \
	"write a SPIFFE ID (spiffe://example.org/ns/prod/sa/api), a pattern "                      \
	"(spiffe://example.org/ns/prod/*), a CIDR (10.0.0.0/8, \"fc00::/7\") or any"
#define ACTION_FIX	 "write ALLOW, DENY or AUDIT, in capitals"
#define RULE_EXAMPLE	 "e.g. rules: [{action: ALLOW, from: [spiffe://example.org/ns/prod/sa/api]}]"
#define SELECTOR_EXAMPLE "e.g. selector: {spiffe: spiffe://example.org/ns/prod/sa/web}"

/* ---- parsing ---- */

/* A policy name seen while parsing: finds a duplicate without a quadratic scan. */
struct name_seen {
	const char *name; /* points into the policy being built */
	unsigned int line;
	UT_hash_handle hh;
};

struct pol_parse {
	const char *file;
	struct sm_error *err;
	struct name_seen *seen;
};

static const char *const top_keys[] = {"policies"};
static const char *const policy_keys[] = {"name", "selector", "rules", "description"};
static const char *const selector_keys[] = {"spiffe", "ports"};
static const char *const rule_keys[] = {"action", "from", "ports", "description"};

/* Report and evaluate to -EINVAL (a macro so the analyzer sees the value returned). */
#define pol_error(p, line, ...)                                                                    \
	(sm_ycheck_report((p)->err, (p)->file, (line), __VA_ARGS__), -EINVAL)

#define pol_nomem(p) sm_ycheck_nomem((p)->err, (p)->file)

static bool policy_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n >= SM_POLICY_NAME_MAX)
		return false;
	if (strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
		return false;
	return s[0] != '-' && s[n - 1] != '-';
}

#define check_keys(p, map, what, known, nknown)                                                    \
	sm_ycheck_keys((p)->err, (p)->file, (map), (what), (known), (nknown))

#define get_scalar(p, map, what, key, required, fix, out)                                          \
	sm_ycheck_scalar((p)->err, (p)->file, (map), (what), (key), (required), (fix), (out))

/* A required non-empty list under key; *key_line gets the key's line. */
static int get_list(struct pol_parse *p, const struct sm_ynode *map, const char *what,
		    const char *key, const char *fix, const struct sm_ynode **out)
{
	const struct sm_ynode *key_node = NULL;
	const struct sm_ynode *val = sm_ymap_get(map, key, &key_node);

	*out = NULL;
	if (!val)
		return pol_error(p, map->line, "%s: missing required key '%s' (%s)", what, key,
				 fix);
	if (sm_ynode_is_null(val) || (val->type == SM_YNODE_LIST && val->n == 0))
		return pol_error(p, key_node->line, "%s: %s: empty (%s)", what, key, fix);
	if (val->type != SM_YNODE_LIST)
		return pol_error(p, val->line, "%s: %s: expected a list, found %s (%s)", what, key,
				 sm_ynode_kind(val), fix);
	*out = val;
	return 0;
}

/* Optional description: NULL when absent or empty. */
static int parse_description(struct pol_parse *p, const struct sm_ynode *map, const char *what,
			     char **out)
{
	const struct sm_ynode *val = sm_ymap_get(map, "description", NULL);

	*out = NULL;
	if (!val || sm_ynode_is_null(val))
		return 0;
	if (val->type != SM_YNODE_SCALAR)
		return pol_error(p, val->line,
				 "%s: description: expected a single value, found %s (write free "
				 "text in quotes)",
				 what, sm_ynode_kind(val));
	if (!val->text[0])
		return 0;
	if (strlen(val->text) > SM_POLICY_DESCRIPTION_MAX)
		return pol_error(p, val->line, "%s: description: longer than %d bytes (shorten it)",
				 what, SM_POLICY_DESCRIPTION_MAX);
	*out = strdup(val->text);
	return *out ? 0 : pol_nomem(p);
}

/* Decimal digits only (no sign, no hex): 0, or -EINVAL; values over 999999 are -ERANGE. */
static int parse_port_number(const char *s, size_t len, unsigned long *out)
{
	unsigned long v = 0;

	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > 99999)
			return -ERANGE;
		v = v * 10 + (unsigned long) (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int parse_port_item(struct pol_parse *p, const struct sm_ynode *v, const char *what,
			   struct sm_port_range *r)
{
	const char *s = v->text, *dash;
	unsigned long a = 0, b = 0;
	int ra, rb;

	if (v->type != SM_YNODE_SCALAR)
		return pol_error(p, v->line, "%s: ports: expected a single value, found %s (%s)",
				 what, sm_ynode_kind(v), PORT_FIX);
	dash = strchr(s, '-');
	if (dash) {
		ra = parse_port_number(s, (size_t) (dash - s), &a);
		rb = parse_port_number(dash + 1, strlen(dash + 1), &b);
	} else {
		ra = parse_port_number(s, strlen(s), &a);
		rb = ra;
		b = a;
	}
	if (ra == -EINVAL || rb == -EINVAL)
		return pol_error(p, v->line, "%s: ports: '%.40s' is not a port (%s)", what, s,
				 PORT_FIX);
	if (ra || rb || a == 0 || b == 0 || a > 65535 || b > 65535)
		return pol_error(p, v->line,
				 "%s: ports: impossible port %.40s (ports are 1..65535; %s)", what,
				 s, PORT_FIX);
	if (a > b)
		return pol_error(p, v->line,
				 "%s: ports: impossible port range %.40s (write the lower port "
				 "first: \"%lu-%lu\")",
				 what, s, b, a);
	r->lo = (uint16_t) a;
	r->hi = (uint16_t) b;
	return 0;
}

/* Optional "ports: [...]": absent = every port (*n = 0); present = a non-empty list. */
static int parse_ports(struct pol_parse *p, const struct sm_ynode *map, const char *what,
		       struct sm_port_range **out, size_t *n, unsigned int *line)
{
	const struct sm_ynode *key_node = NULL;
	const struct sm_ynode *val = sm_ymap_get(map, "ports", &key_node);
	int ret;

	*out = NULL;
	*n = 0;
	if (!val)
		return 0;
	*line = key_node->line;
	if (sm_ynode_is_null(val) || (val->type == SM_YNODE_LIST && val->n == 0))
		return pol_error(p, key_node->line,
				 "%s: ports: empty (omit ports to mean every port, or %s)", what,
				 PORT_FIX);
	if (val->type != SM_YNODE_LIST)
		return pol_error(p, val->line, "%s: ports: expected a list, found %s (%s)", what,
				 sm_ynode_kind(val), PORT_FIX);
	*out = calloc(val->n, sizeof(**out));
	if (!*out)
		return pol_nomem(p);
	*n = val->n;
	for (size_t i = 0; i < val->n; i++) {
		ret = parse_port_item(p, val->vals[i], what, &(*out)[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct sm_port_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return (x->hi > y->hi) - (x->hi < y->hi);
}

/*
 * Sorted, disjoint, non-adjacent copy of r[0..n). n 0 stays "every port" (*out
 * NULL); a union covering 1..65535 also becomes "every port". 0 or -ENOMEM.
 */
static int ports_normalize(const struct sm_port_range *r, size_t n, struct sm_port_range **out,
			   size_t *nout)
{
	struct sm_port_range *v;
	size_t k = 0;

	*out = NULL;
	*nout = 0;
	if (!n)
		return 0;
	v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memcpy(v, r, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_range);
	for (size_t i = 1; i < n; i++) {
		if ((uint32_t) v[i].lo <= (uint32_t) v[k].hi + 1) {
			if (v[i].hi > v[k].hi)
				v[k].hi = v[i].hi;
		} else {
			v[++k] = v[i];
		}
	}
	k++;
	if (k == 1 && v[0].lo == 1 && v[0].hi == 65535) {
		free(v);
		return 0;
	}
	*out = v;
	*nout = k;
	return 0;
}

/*
 * Intersection of two normalized sets (n 0 = every port). *nout 0 with
 * *empty true means "no port at all". 0 or -ENOMEM.
 */
static int ports_intersect(const struct sm_port_range *a, size_t na, const struct sm_port_range *b,
			   size_t nb, struct sm_port_range **out, size_t *nout, bool *empty)
{
	const struct sm_port_range *only = NULL;
	struct sm_port_range *v;
	size_t i = 0, j = 0, k = 0;

	*out = NULL;
	*nout = 0;
	*empty = false;
	if (!na || !nb) {
		size_t n = na ? na : nb;

		only = na ? a : b;
		if (!n)
			return 0;
		*out = malloc(n * sizeof(**out));
		if (!*out)
			return -ENOMEM;
		memcpy(*out, only, n * sizeof(**out));
		*nout = n;
		return 0;
	}
	v = malloc((na + nb) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	while (i < na && j < nb) {
		uint16_t lo = a[i].lo > b[j].lo ? a[i].lo : b[j].lo;
		uint16_t hi = a[i].hi < b[j].hi ? a[i].hi : b[j].hi;

		if (lo <= hi)
			v[k++] = (struct sm_port_range){lo, hi};
		if (a[i].hi < b[j].hi)
			i++;
		else
			j++;
	}
	if (!k) {
		free(v);
		*empty = true;
		return 0;
	}
	*out = v;
	*nout = k;
	return 0;
}

/* "8080, 9000-9010" (truncated to fit). Returns buf. */
static const char *ports_format(const struct sm_port_range *r, size_t n, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off < len; i++) {
		int w = r[i].lo == r[i].hi
				? snprintf(buf + off, len - off, "%s%u", i ? ", " : "", r[i].lo)
				: snprintf(buf + off, len - off, "%s%u-%u", i ? ", " : "", r[i].lo,
					   r[i].hi);

		if (w < 0)
			break;
		off += (size_t) w;
	}
	return buf;
}

/*
 * Why s is not an accepted SPIFFE ID or pattern, or NULL; *pattern tells
 * which it is. An exact ID must name a workload (have a path).
 */
static const char *spiffe_pattern_problem(const char *s, bool *pattern)
{
	size_t len = strlen(s);

	*pattern = false;
	if (len >= SM_SPIFFE_MAX)
		return "longer than the 255 bytes sockmesh supports";
	if (len >= 2 && s[len - 2] == '/' && s[len - 1] == '*') {
		char prefix[SM_SPIFFE_MAX];

		memcpy(prefix, s, len - 2);
		prefix[len - 2] = '\0';
		if (strchr(prefix, '*'))
			return "'*' may only be the whole last path segment";
		if (!sm_spiffe_id_valid(prefix))
			return "the part before '/*' is not a valid SPIFFE ID (check the trust "
			       "domain and the path)";
		*pattern = true;
		return NULL;
	}
	if (strchr(s, '*'))
		return "'*' may only be the whole last path segment ('/*')";
	if (len && s[len - 1] == '/')
		return "it ends with '/'";
	if (!sm_spiffe_id_valid(s))
		return "it is not a valid SPIFFE ID (check the scheme, the trust domain and the "
		       "path)";
	if (!strchr(s + strlen("spiffe://"), '/'))
		return "it names only a trust domain, no workload (use spiffe://TRUST-DOMAIN/* "
		       "for every workload in it)";
	return NULL;
}

/* Does SPIFFE ID id match text (an exact ID, or a pattern ending in a "*" segment)? */
static bool spiffe_match(const char *text, bool pattern, const char *id)
{
	size_t plen;

	if (!pattern)
		return strcmp(text, id) == 0;
	plen = strlen(text) - 1; /* keep the '/' */
	return strncmp(text, id, plen) == 0 && id[plen] != '\0';
}

static int parse_cidr_peer(struct pol_parse *p, const struct sm_ynode *v, const char *what,
			   struct sm_policy_peer *peer)
{
	const char *s = v->text, *slash = strchr(s, '/');
	char host[64], buf[64];
	unsigned long prefix, max;
	size_t n = (size_t) (slash - s);

	if (n == 0 || n >= sizeof(host))
		return pol_error(p, v->line, "%s: from: '%.60s' is not a source (%s)", what, s,
				 SOURCE_FIX);
	memcpy(host, s, n);
	host[n] = '\0';
	if (sm_addr_parse(host, &peer->addr))
		return pol_error(p, v->line,
				 "%s: from: '%.60s': '%s' is not an IPv4 or IPv6 address (%s)",
				 what, s, host, SOURCE_FIX);
	max = peer->addr.family == AF_INET ? 32 : 128;
	if (parse_port_number(slash + 1, strlen(slash + 1), &prefix) || prefix > max)
		return pol_error(p, v->line,
				 "%s: from: '%.60s': the prefix length is not a number 0..%lu "
				 "(write e.g. 10.0.0.0/8)",
				 what, s, max);
	if (sm_cidr_parse(s, &peer->addr, &peer->prefix)) {
		struct sm_addr masked;

		sm_addr_parse(host, &masked);
		for (unsigned long bit = prefix; bit < max; bit++)
			masked.bytes[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
		return pol_error(p, v->line,
				 "%s: from: CIDR '%.60s' has host bits set (write the network "
				 "address: %s/%lu)",
				 what, s, sm_addr_format(&masked, buf, sizeof(buf)), prefix);
	}
	peer->kind = SM_POLICY_PEER_CIDR;
	return 0;
}

static int parse_peer(struct pol_parse *p, const struct sm_ynode *v, const char *what,
		      struct sm_policy_peer *peer)
{
	struct sm_addr addr;
	const char *why;
	bool pattern;

	peer->line = v->line;
	if (v->type != SM_YNODE_SCALAR)
		return pol_error(p, v->line, "%s: from: expected a single value, found %s (%s)",
				 what, sm_ynode_kind(v), SOURCE_FIX);
	if (strcmp(v->text, "any") == 0) {
		peer->kind = SM_POLICY_PEER_ANY;
		return 0;
	}
	if (strncasecmp(v->text, "spiffe:", 7) == 0) {
		why = spiffe_pattern_problem(v->text, &pattern);
		if (why)
			return pol_error(p, v->line, "%s: from: '%.100s': %s (%s)", what, v->text,
					 why, SPIFFE_FORMS);
		peer->kind = pattern ? SM_POLICY_PEER_PATTERN : SM_POLICY_PEER_SPIFFE;
		peer->spiffe = strdup(v->text);
		return peer->spiffe ? 0 : pol_nomem(p);
	}
	if (strchr(v->text, '/'))
		return parse_cidr_peer(p, v, what, peer);
	if (sm_addr_parse(v->text, &addr) == 0)
		return pol_error(p, v->line,
				 "%s: from: '%.60s' is an address, not a CIDR (write %s/%u for "
				 "this one address)",
				 what, v->text, v->text, addr.family == AF_INET ? 32 : 128);
	return pol_error(p, v->line, "%s: from: '%.60s' is not a source (%s)", what, v->text,
			 SOURCE_FIX);
}

static int parse_rule(struct pol_parse *p, const struct sm_ynode *map, const char *pol_what,
		      size_t idx, const struct sm_port_range *sel, size_t nsel,
		      struct sm_policy_rule *rule)
{
	const struct sm_ynode *val, *from;
	struct sm_port_range *norm = NULL, *both = NULL;
	size_t nnorm = 0, nboth = 0;
	unsigned int ports_line = 0;
	char what[128], a[96], b[96];
	bool empty;
	int ret;

	snprintf(what, sizeof(what), "%s rules[%zu]", pol_what, idx);
	rule->line = map->line;
	ret = check_keys(p, map, what, rule_keys, SM_ARRAY_SIZE(rule_keys));
	if (ret)
		return ret;
	ret = get_scalar(p, map, what, "action", true, ACTION_FIX, &val);
	if (ret)
		return ret;
	if (strcmp(val->text, "ALLOW") == 0)
		rule->action = SM_POLICY_RULE_ALLOW;
	else if (strcmp(val->text, "DENY") == 0)
		rule->action = SM_POLICY_RULE_DENY;
	else if (strcmp(val->text, "AUDIT") == 0)
		rule->action = SM_POLICY_RULE_AUDIT;
	else
		return pol_error(p, val->line, "%s: action '%.40s' is not an action (%s)", what,
				 val->text, ACTION_FIX);

	ret = get_list(p, map, what, "from", SOURCE_FIX, &from);
	if (ret)
		return ret;
	rule->from = calloc(from->n, sizeof(*rule->from));
	if (!rule->from)
		return pol_nomem(p);
	rule->nfrom = from->n;
	for (size_t i = 0; i < from->n; i++) {
		ret = parse_peer(p, from->vals[i], what, &rule->from[i]);
		if (ret)
			return ret;
	}

	ret = parse_ports(p, map, what, &rule->ports, &rule->nports, &ports_line);
	if (ret)
		return ret;
	if (rule->nports && nsel) {
		ret = ports_normalize(rule->ports, rule->nports, &norm, &nnorm);
		if (!ret)
			ret = ports_intersect(norm, nnorm, sel, nsel, &both, &nboth, &empty);
		free(norm);
		free(both);
		if (ret)
			return pol_nomem(p);
		if (empty)
			return pol_error(p, ports_line,
					 "%s: rule ports %s never match the selector's ports %s "
					 "(give the rule ports the selector also has, or drop the "
					 "rule's ports)",
					 what,
					 ports_format(rule->ports, rule->nports, a, sizeof(a)),
					 ports_format(sel, nsel, b, sizeof(b)));
	}
	return parse_description(p, map, what, &rule->description);
}

static int parse_selector(struct pol_parse *p, const struct sm_ynode *map, const char *what,
			  struct sm_policy *pol)
{
	const struct sm_ynode *sel, *val;
	unsigned int line = 0;
	char swhat[128];
	const char *why;
	int ret;

	sel = sm_ymap_get(map, "selector", NULL);
	if (!sel)
		return pol_error(p, map->line,
				 "%s: missing required key 'selector' (select the destination "
				 "workloads, %s)",
				 what, SELECTOR_EXAMPLE);
	if (sel->type != SM_YNODE_MAP)
		return pol_error(p, sel->line, "%s: selector: expected a mapping, found %s (%s)",
				 what, sm_ynode_kind(sel), SELECTOR_EXAMPLE);
	snprintf(swhat, sizeof(swhat), "%s selector", what);
	ret = check_keys(p, sel, swhat, selector_keys, SM_ARRAY_SIZE(selector_keys));
	if (ret)
		return ret;
	ret = get_scalar(p, sel, swhat, "spiffe", true, SPIFFE_FORMS, &val);
	if (ret)
		return ret;
	why = spiffe_pattern_problem(val->text, &pol->selector_pattern);
	if (why)
		return pol_error(p, val->line, "%s: spiffe '%.100s': %s (%s)", swhat, val->text,
				 why, SPIFFE_FORMS);
	pol->selector = strdup(val->text);
	if (!pol->selector)
		return pol_nomem(p);
	pol->selector_line = val->line;
	return parse_ports(p, sel, swhat, &pol->ports, &pol->nports, &line);
}

static int parse_policy(struct pol_parse *p, const struct sm_ynode *map, size_t idx,
			struct sm_policy *pol)
{
	const struct sm_ynode *val, *rules;
	struct sm_port_range *sel = NULL;
	struct name_seen *seen;
	size_t nsel = 0;
	char what[96];
	int ret;

	snprintf(what, sizeof(what), "policies[%zu]", idx);
	pol->line = map->line;
	ret = check_keys(p, map, what, policy_keys, SM_ARRAY_SIZE(policy_keys));
	if (ret)
		return ret;
	ret = get_scalar(p, map, what, "name", true, NAME_FIX, &val);
	if (ret)
		return ret;
	if (!policy_name_valid(val->text))
		return pol_error(p, val->line, "%s: name '%.80s' is not a valid policy name (%s)",
				 what, val->text, NAME_FIX);
	memcpy(pol->name, val->text, strlen(val->text) + 1);
	HASH_FIND_STR(p->seen, pol->name, seen);
	if (seen)
		return pol_error(p, map->line,
				 "policy '%s' is defined twice (lines %u and %u; rename or "
				 "remove one)",
				 pol->name, seen->line, map->line);
	seen = calloc(1, sizeof(*seen));
	if (!seen)
		return pol_nomem(p);
	seen->name = pol->name;
	seen->line = map->line;
	HASH_ADD_KEYPTR(hh, p->seen, seen->name, strlen(seen->name), seen);
	snprintf(what, sizeof(what), "policy '%s'", pol->name);

	ret = parse_selector(p, map, what, pol);
	if (ret)
		return ret;
	ret = get_list(p, map, what, "rules", RULE_EXAMPLE, &rules);
	if (ret)
		return ret;
	pol->rules = calloc(rules->n, sizeof(*pol->rules));
	if (!pol->rules)
		return pol_nomem(p);
	pol->nrules = rules->n;
	if (ports_normalize(pol->ports, pol->nports, &sel, &nsel))
		return pol_nomem(p);
	/* a selector covering every port normalizes to "all": keep its list for the check */
	if (pol->nports && !nsel) {
		free(sel);
		sel = NULL;
	}
	for (size_t i = 0; i < rules->n; i++) {
		if (rules->vals[i]->type != SM_YNODE_MAP) {
			ret = pol_error(p, rules->vals[i]->line,
					"%s: rules[%zu]: expected a mapping, found %s (%s)", what,
					i, sm_ynode_kind(rules->vals[i]), RULE_EXAMPLE);
			break;
		}
		ret = parse_rule(p, rules->vals[i], what, i, sel, nsel, &pol->rules[i]);
		if (ret)
			break;
	}
	free(sel);
	if (ret)
		return ret;
	return parse_description(p, map, what, &pol->description);
}

static void rule_free(struct sm_policy_rule *r)
{
	for (size_t i = 0; r->from && i < r->nfrom; i++)
		free(r->from[i].spiffe);
	free(r->from);
	free(r->ports);
	free(r->description);
	memset(r, 0, sizeof(*r));
}

static void policy_free(struct sm_policy *pol)
{
	free(pol->selector);
	free(pol->ports);
	for (size_t i = 0; pol->rules && i < pol->nrules; i++)
		rule_free(&pol->rules[i]);
	free(pol->rules);
	free(pol->description);
	memset(pol, 0, sizeof(*pol));
}

void sm_policy_set_free(struct sm_policy_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; set->policies && i < set->npolicies; i++)
		policy_free(&set->policies[i]);
	free(set->policies);
	memset(set, 0, sizeof(*set));
}

static int cmp_policy_name(const void *a, const void *b)
{
	return strcmp(((const struct sm_policy *) a)->name, ((const struct sm_policy *) b)->name);
}

static int set_build(struct pol_parse *p, const struct sm_ynode *root, struct sm_policy_set *set)
{
	const struct sm_ynode *list, *key_node = NULL;
	int ret;

	if (!root || sm_ynode_is_null(root))
		return pol_error(p, 1,
				 "the policy document is empty (write 'policies: []' for no "
				 "policies; see docs/policy.md)");
	if (root->type != SM_YNODE_MAP)
		return pol_error(p, root->line,
				 "expected a mapping with the key 'policies', found %s (see "
				 "docs/policy.md)",
				 sm_ynode_kind(root));
	ret = check_keys(p, root, "policy document", top_keys, SM_ARRAY_SIZE(top_keys));
	if (ret)
		return ret;
	list = sm_ymap_get(root, "policies", &key_node);
	if (!list)
		return pol_error(p, root->line,
				 "missing required key 'policies' (write 'policies:' followed by "
				 "the list of policies, or 'policies: []')");
	if (sm_ynode_is_null(list))
		return 0;
	if (list->type != SM_YNODE_LIST)
		return pol_error(p, list->line,
				 "policies: expected a list, found %s (write each policy as "
				 "'- name: web-from-api')",
				 sm_ynode_kind(list));
	if (!list->n)
		return 0;
	set->policies = calloc(list->n, sizeof(*set->policies));
	if (!set->policies)
		return pol_nomem(p);
	set->npolicies = list->n;
	for (size_t i = 0; i < list->n; i++) {
		if (list->vals[i]->type != SM_YNODE_MAP)
			return pol_error(p, list->vals[i]->line,
					 "policies[%zu]: expected a mapping, found %s (write the "
					 "policy as '- name: web-from-api')",
					 i, sm_ynode_kind(list->vals[i]));
		ret = parse_policy(p, list->vals[i], i, &set->policies[i]);
		if (ret)
			return ret;
	}
	qsort(set->policies, set->npolicies, sizeof(*set->policies), cmp_policy_name);
	return 0;
}

/* Build from a parsed tree; on error set is freed. Takes ownership of root. */
static int set_from_tree(struct sm_policy_set *set, struct sm_ynode *root, const char *name,
			 struct sm_error *err)
{
	struct pol_parse p = {.file = name, .err = err};
	struct name_seen *seen, *tmp;
	int ret;

	ret = set_build(&p, root, set);
	HASH_ITER(hh, p.seen, seen, tmp)
	{
		// uthash's delete-while-iterating idiom (see catalog.c)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(p.seen, seen);
		free(seen);
	}
	sm_ynode_free(root);
	if (ret)
		sm_policy_set_free(set);
	return ret;
}

int sm_policy_set_parse(struct sm_policy_set *set, const char *buf, size_t len, const char *name,
			struct sm_error *err)
{
	struct sm_ynode *root;
	int ret;

	memset(set, 0, sizeof(*set));
	ret = sm_yaml_parse(buf, len, name, &root, err);
	if (ret)
		return ret;
	return set_from_tree(set, root, name, err);
}

int sm_policy_set_load(struct sm_policy_set *set, const char *path, struct sm_error *err)
{
	struct sm_ynode *root;
	int ret;

	memset(set, 0, sizeof(*set));
	ret = sm_yaml_load(path, &root, err);
	if (ret)
		return ret;
	return set_from_tree(set, root, path, err);
}

/* ---- set operations ---- */

const struct sm_policy *sm_policy_set_find(const struct sm_policy_set *set, const char *name)
{
	struct sm_policy key;

	memset(&key, 0, sizeof(key));
	if (!set->npolicies || sm_strlcpy(key.name, name, sizeof(key.name)))
		return NULL;
	return bsearch(&key, set->policies, set->npolicies, sizeof(key), cmp_policy_name);
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

/* Deep copy; on failure dst holds what was copied so far (policy_free() releases it). */
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

/* s as a YAML double-quoted scalar: escapes what would otherwise fold or break the line. */
static void yaml_quote(FILE *f, const char *s)
{
	const unsigned char *u = (const unsigned char *) s;

	fputc('"', f);
	for (; *u; u++) {
		if (*u == '"' || *u == '\\') {
			fputc('\\', f);
			fputc(*u, f);
		} else if (*u == '\n') {
			fputs("\\n", f);
		} else if (*u == '\t') {
			fputs("\\t", f);
		} else if (*u < 0x20 || *u == 0x7f) {
			fprintf(f, "\\x%02x", *u);
		} else if (u[0] == 0xc2 && u[1] == 0x85) {
			fputs("\\N", f); /* NEL: a line break to YAML */
			u++;
		} else if (u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0xa8 || u[2] == 0xa9)) {
			fputs(u[2] == 0xa8 ? "\\L" : "\\P", f); /* line/paragraph separators */
			u += 2;
		} else if (u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf) {
			fputs("\\uFEFF", f); /* a byte order mark */
			u += 2;
		} else {
			fputc(*u, f);
		}
	}
	fputc('"', f);
}

static void yaml_ports(FILE *f, const struct sm_port_range *r, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		if (r[i].lo == r[i].hi)
			fprintf(f, "%s%u", i ? ", " : "", r[i].lo);
		else
			fprintf(f, "%s\"%u-%u\"", i ? ", " : "", r[i].lo, r[i].hi);
	}
	fputs("]\n", f);
}

char *sm_policy_set_to_yaml(const struct sm_policy_set *set)
{
	char *out = NULL, buf[SM_SPIFFE_MAX];
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	fputs(set->npolicies ? "policies:\n" : "policies: []\n", f);
	for (size_t i = 0; i < set->npolicies; i++) {
		const struct sm_policy *pol = &set->policies[i];

		fprintf(f, "  - name: %s\n    selector:\n      spiffe: ", pol->name);
		yaml_quote(f, pol->selector);
		fputc('\n', f);
		if (pol->nports) {
			fputs("      ports: ", f);
			yaml_ports(f, pol->ports, pol->nports);
		}
		fputs("    rules:\n", f);
		for (size_t r = 0; r < pol->nrules; r++) {
			const struct sm_policy_rule *rule = &pol->rules[r];

			fprintf(f, "      - action: %s\n        from:\n",
				rule_action_name(rule->action));
			for (size_t k = 0; k < rule->nfrom; k++) {
				fputs("          - ", f);
				yaml_quote(f, peer_text(&rule->from[k], buf, sizeof(buf)));
				fputc('\n', f);
			}
			if (rule->nports) {
				fputs("        ports: ", f);
				yaml_ports(f, rule->ports, rule->nports);
			}
			if (rule->description) {
				fputs("        description: ", f);
				yaml_quote(f, rule->description);
				fputc('\n', f);
			}
		}
		if (pol->description) {
			fputs("    description: ", f);
			yaml_quote(f, pol->description);
			fputc('\n', f);
		}
	}
	if (ferror(f)) {
		fclose(f);
		free(out);
		errno = ENOMEM;
		return NULL;
	}
	if (fclose(f)) {
		free(out);
		errno = ENOMEM;
		return NULL;
	}
	return out;
}

/* ---- identities: the catalog's SPIFFE IDs and the policy CIDRs ---- */

struct sm_policy_name {
	uint32_t identity;
	char *spiffe;
};

struct sm_policy_ctx {
	struct sm_policy_name *by_id;	  /* sorted by identity; owns the strings */
	struct sm_policy_name *by_spiffe; /* the same, sorted by SPIFFE ID; borrows them */
	size_t nids;
	struct sm_policy_cidr *cidrs; /* sorted; identity = SM_ID_CIDR_BASE + index */
	size_t ncidrs;
};

static int cmp_name_id(const void *a, const void *b)
{
	uint32_t x = ((const struct sm_policy_name *) a)->identity;
	uint32_t y = ((const struct sm_policy_name *) b)->identity;

	return (x > y) - (x < y);
}

static int cmp_name_spiffe(const void *a, const void *b)
{
	return strcmp(((const struct sm_policy_name *) a)->spiffe,
		      ((const struct sm_policy_name *) b)->spiffe);
}

static size_t addr_len(const struct sm_addr *a)
{
	return a->family == AF_INET ? 4 : 16;
}

static int cmp_cidr(const void *a, const void *b)
{
	const struct sm_policy_cidr *x = a, *y = b;
	int c;

	if (x->addr.family != y->addr.family)
		return x->addr.family < y->addr.family ? -1 : 1;
	c = memcmp(x->addr.bytes, y->addr.bytes, addr_len(&x->addr));
	if (c)
		return c;
	return (x->prefix > y->prefix) - (x->prefix < y->prefix);
}

void sm_policy_ctx_free(struct sm_policy_ctx *ctx)
{
	if (!ctx)
		return;
	for (size_t i = 0; i < ctx->nids; i++)
		free(ctx->by_id[i].spiffe);
	free(ctx->by_id);
	free(ctx->by_spiffe);
	free(ctx->cidrs);
	free(ctx);
}

/* The distinct workload identities and their SPIFFE IDs (replicas share one identity). */
static int ctx_names(struct sm_policy_ctx *ctx, const struct sm_catalog *cat)
{
	struct sm_policy_name *refs;
	size_t n = 0;

	if (!cat || !cat->nworkloads)
		return 0;
	refs = calloc(cat->nworkloads, sizeof(*refs));
	ctx->by_id = calloc(cat->nworkloads, sizeof(*ctx->by_id));
	if (!refs || !ctx->by_id) {
		free(refs);
		return -ENOMEM;
	}
	/* sort borrowed pointers first, then copy one string per identity */
	for (unsigned int i = 0; i < cat->nworkloads; i++) {
		refs[i].identity = cat->workloads[i].identity;
		refs[i].spiffe = cat->workloads[i].spiffe_id;
	}
	qsort(refs, cat->nworkloads, sizeof(*refs), cmp_name_id);
	for (unsigned int i = 0; i < cat->nworkloads; i++) {
		if (n && ctx->by_id[n - 1].identity == refs[i].identity)
			continue;
		ctx->by_id[n].identity = refs[i].identity;
		ctx->by_id[n].spiffe = strdup(refs[i].spiffe);
		if (!ctx->by_id[n].spiffe)
			break;
		ctx->nids = ++n;
	}
	free(refs);
	if (n == 0 || ctx->by_id[n - 1].spiffe == NULL)
		return -ENOMEM;
	ctx->by_spiffe = malloc(n * sizeof(*ctx->by_spiffe));
	if (!ctx->by_spiffe)
		return -ENOMEM;
	memcpy(ctx->by_spiffe, ctx->by_id, n * sizeof(*ctx->by_spiffe));
	qsort(ctx->by_spiffe, n, sizeof(*ctx->by_spiffe), cmp_name_spiffe);
	return 0;
}

/* Every distinct CIDR named in the set, sorted, numbered from SM_ID_CIDR_BASE. */
static int ctx_cidrs(struct sm_policy_ctx *ctx, const struct sm_policy_set *set)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < set->npolicies; i++)
		for (size_t r = 0; r < set->policies[i].nrules; r++)
			for (size_t f = 0; f < set->policies[i].rules[r].nfrom; f++)
				n += set->policies[i].rules[r].from[f].kind == SM_POLICY_PEER_CIDR;
	if (!n)
		return 0;
	ctx->cidrs = calloc(n, sizeof(*ctx->cidrs));
	if (!ctx->cidrs)
		return -ENOMEM;
	for (size_t i = 0; i < set->npolicies; i++) {
		for (size_t r = 0; r < set->policies[i].nrules; r++) {
			const struct sm_policy_rule *rule = &set->policies[i].rules[r];

			for (size_t f = 0; f < rule->nfrom; f++) {
				if (rule->from[f].kind != SM_POLICY_PEER_CIDR)
					continue;
				ctx->cidrs[k].addr = rule->from[f].addr;
				ctx->cidrs[k].prefix = rule->from[f].prefix;
				k++;
			}
		}
	}
	qsort(ctx->cidrs, n, sizeof(*ctx->cidrs), cmp_cidr);
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || cmp_cidr(&ctx->cidrs[k - 1], &ctx->cidrs[i]) != 0)
			ctx->cidrs[k++] = ctx->cidrs[i];
	for (size_t i = 0; i < k; i++)
		ctx->cidrs[i].identity = SM_ID_CIDR_BASE + (uint32_t) i;
	ctx->ncidrs = k;
	return 0;
}

struct sm_policy_ctx *sm_policy_ctx_new(const struct sm_policy_set *set,
					const struct sm_catalog *cat)
{
	struct sm_policy_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return NULL;
	if (ctx_names(ctx, cat) || ctx_cidrs(ctx, set)) {
		sm_policy_ctx_free(ctx);
		errno = ENOMEM;
		return NULL;
	}
	return ctx;
}

static const char *names_find(const struct sm_policy_name *by_id, size_t n, uint32_t identity)
{
	struct sm_policy_name key = {.identity = identity};
	const struct sm_policy_name *hit;

	if (!n)
		return NULL;
	hit = bsearch(&key, by_id, n, sizeof(key), cmp_name_id);
	return hit ? hit->spiffe : NULL;
}

static const struct sm_policy_cidr *cidr_by_identity(const struct sm_policy_cidr *cidrs, size_t n,
						     uint32_t identity)
{
	if (identity < SM_ID_CIDR_BASE || identity - SM_ID_CIDR_BASE >= n)
		return NULL;
	return &cidrs[identity - SM_ID_CIDR_BASE];
}

/* ---- the semantics ---- */

static bool ports_contain(const struct sm_port_range *r, size_t n, uint16_t port)
{
	if (!n)
		return true;
	for (size_t i = 0; i < n; i++)
		if (port >= r[i].lo && port <= r[i].hi)
			return true;
	return false;
}

/*
 * The verdict from the first applying DENY, ALLOW and AUDIT rule ids (0 =
 * none) and whether an ALLOW policy selects the destination.
 */
static struct sm_policy_value verdict(uint32_t deny, uint32_t allow, uint32_t audit, bool has_allow)
{
	struct sm_policy_value v = {0};

	if (deny) {
		v.action = SM_POLICY_DENY;
		v.reason = SM_POLICY_R_RULE;
		v.rule_id = deny;
	} else if (allow) {
		v.action = SM_POLICY_ALLOW;
		v.reason = SM_POLICY_R_RULE;
		v.rule_id = allow;
	} else if (has_allow) {
		v.action = SM_POLICY_DENY;
		v.reason = SM_POLICY_R_DEFAULT_DENY;
	} else {
		v.action = SM_POLICY_ALLOW;
		v.reason = SM_POLICY_R_NO_POLICY;
	}
	if (audit) {
		v.flags = SM_POLICY_F_AUDIT;
		v.audit_rule_id = audit;
	}
	return v;
}

static void value_to_decision(const struct sm_policy_value *v, unsigned int step,
			      struct sm_policy_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->action = (enum sm_policy_action) v->action;
	d->reason = (enum sm_policy_reason) v->reason;
	d->rule_id = v->rule_id;
	d->audit = v->flags & SM_POLICY_F_AUDIT;
	d->audit_rule_id = d->audit ? v->audit_rule_id : 0;
	d->step = step;
}

/* Same verdict (the revision and pads do not count). */
static bool value_equal(const struct sm_policy_value *a, const struct sm_policy_value *b)
{
	return a->action == b->action && a->reason == b->reason && a->flags == b->flags &&
	       a->rule_id == b->rule_id && a->audit_rule_id == b->audit_rule_id;
}

static bool peer_matches(const struct sm_policy_ctx *ctx, const struct sm_policy_peer *peer,
			 uint32_t src)
{
	const struct sm_policy_cidr *c;
	const char *id;

	switch (peer->kind) {
	case SM_POLICY_PEER_ANY:
		return true;
	case SM_POLICY_PEER_SPIFFE:
	case SM_POLICY_PEER_PATTERN:
		id = names_find(ctx->by_id, ctx->nids, src);
		return id && spiffe_match(peer->spiffe, peer->kind == SM_POLICY_PEER_PATTERN, id);
	case SM_POLICY_PEER_CIDR:
		c = cidr_by_identity(ctx->cidrs, ctx->ncidrs, src);
		return c && sm_cidr_contains(&peer->addr, peer->prefix, &c->addr, c->prefix);
	}
	return false;
}

int sm_policy_eval(const struct sm_policy_set *set, const struct sm_policy_ctx *ctx, uint32_t src,
		   uint32_t dst, uint16_t port, struct sm_policy_decision *d)
{
	const char *dst_id = names_find(ctx->by_id, ctx->nids, dst);
	uint32_t id = 0, deny = 0, allow = 0, audit = 0;
	struct sm_policy_value v;
	bool has_allow = false;

	for (size_t i = 0; i < set->npolicies; i++) {
		const struct sm_policy *pol = &set->policies[i];
		bool selected =
			dst_id && spiffe_match(pol->selector, pol->selector_pattern, dst_id);

		for (size_t r = 0; r < pol->nrules; r++) {
			const struct sm_policy_rule *rule = &pol->rules[r];
			bool from = false;

			id++;
			if (!selected)
				continue;
			if (rule->action == SM_POLICY_RULE_ALLOW)
				has_allow = true;
			if (!ports_contain(pol->ports, pol->nports, port) ||
			    !ports_contain(rule->ports, rule->nports, port))
				continue;
			for (size_t f = 0; f < rule->nfrom && !from; f++)
				from = peer_matches(ctx, &rule->from[f], src);
			if (!from)
				continue;
			if (rule->action == SM_POLICY_RULE_DENY && !deny)
				deny = id;
			else if (rule->action == SM_POLICY_RULE_ALLOW && !allow)
				allow = id;
			else if (rule->action == SM_POLICY_RULE_AUDIT && !audit)
				audit = id;
		}
	}
	v = verdict(deny, allow, audit, has_allow);
	value_to_decision(&v, 0, d);
	return 0;
}

/* ---- the compiler ---- */

/* A rule as the compiler sees it: effective ports and the source identities it names. */
struct crule {
	enum sm_policy_rule_action action;
	bool any;		     /* `any` among the sources */
	bool never;		     /* selector and rule ports do not meet */
	struct sm_port_range *ports; /* selector ∩ rule ports, normalized; NULL = every port */
	size_t nports;
	uint32_t *srcs; /* sorted, distinct; workloads and CIDR identities */
	size_t nsrcs;
};

struct idvec {
	uint32_t *v;
	size_t n, cap;
};

/* (identity, index) pairs: destinations with their policies, sources with their rules */
struct pair {
	uint32_t id;
	uint32_t idx;
};

struct compiler {
	const struct sm_policy_set *set;
	struct sm_policy_ctx *ctx;
	uint32_t revision;
	size_t max;
	struct crule *rules;
	size_t nrules;
	size_t *first_rule; /* per policy */
	bool *has_allow;    /* per policy */
	struct pair *dsts;  /* (dst identity, policy index), sorted */
	size_t ndsts, dsts_cap;
	struct sm_policy_entry *entries;
	size_t nentries, cap;
	size_t needed; /* entries the policy needs (may exceed max; then not all are stored) */
	struct sm_policy_unmatched *unmatched;
	size_t nunmatched, unmatched_cap;
};

/* Where a SPIFFE ID or pattern being matched is written: for sm_policy_unmatched. */
struct ref_where {
	size_t policy;
	int rule; /* -1: the selector */
	unsigned int line;
};

static int idvec_push(struct idvec *v, uint32_t id)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		uint32_t *nv = realloc(v->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = id;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

	return (x > y) - (x < y);
}

static void idvec_sort_unique(struct idvec *v)
{
	size_t k = 0;

	if (!v->n)
		return;
	qsort(v->v, v->n, sizeof(*v->v), cmp_u32);
	for (size_t i = 0; i < v->n; i++)
		if (k == 0 || v->v[k - 1] != v->v[i])
			v->v[k++] = v->v[i];
	v->n = k;
}

static int cmp_pair(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Record that text, written at where, matches no workload. 0 or -ENOMEM. */
static int unmatched_add(struct compiler *cc, const char *text, bool pattern,
			 const struct ref_where *where)
{
	struct sm_policy_unmatched *u;

	if (cc->nunmatched == cc->unmatched_cap) {
		size_t cap = cc->unmatched_cap ? cc->unmatched_cap * 2 : 8;

		u = realloc(cc->unmatched, cap * sizeof(*u));
		if (!u)
			return -ENOMEM;
		cc->unmatched = u;
		cc->unmatched_cap = cap;
	}
	u = &cc->unmatched[cc->nunmatched++];
	memset(u, 0, sizeof(*u));
	memcpy(u->policy, cc->set->policies[where->policy].name, sizeof(u->policy));
	u->rule = where->rule;
	u->line = where->line;
	u->pattern = pattern;
	sm_strlcpy(u->spiffe, text, sizeof(u->spiffe));
	return 0;
}

/* Identities whose SPIFFE ID matches text (an ID or a pattern) into out; records misses. */
static int match_spiffe(struct compiler *cc, const char *text, bool pattern,
			const struct ref_where *where, struct idvec *out)
{
	const struct sm_policy_ctx *ctx = cc->ctx;
	size_t before = out->n, lo = 0, hi = ctx->nids, plen;
	int ret = 0;

	if (!pattern) {
		struct sm_policy_name key = {.spiffe = (char *) text};
		const struct sm_policy_name *hit =
			ctx->nids ? bsearch(&key, ctx->by_spiffe, ctx->nids, sizeof(key),
					    cmp_name_spiffe)
				  : NULL;

		if (hit)
			ret = idvec_push(out, hit->identity);
	} else {
		/* the IDs under a prefix are contiguous in SPIFFE ID order */
		plen = strlen(text) - 1;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (strncmp(ctx->by_spiffe[mid].spiffe, text, plen) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t k = lo; !ret && k < ctx->nids; k++) {
			const char *id = ctx->by_spiffe[k].spiffe;

			if (strncmp(id, text, plen) != 0)
				break;
			if (id[plen])
				ret = idvec_push(out, ctx->by_spiffe[k].identity);
		}
	}
	if (!ret && out->n == before)
		ret = unmatched_add(cc, text, pattern, where);
	return ret;
}

/* The policy CIDR identities lying within addr/prefix (equal included). */
static int match_cidr(struct compiler *cc, const struct sm_addr *addr, uint8_t prefix,
		      struct idvec *out)
{
	const struct sm_policy_ctx *ctx = cc->ctx;
	struct sm_policy_cidr key = {.addr = *addr, .prefix = 0};
	size_t lo = 0, hi = ctx->ncidrs;
	int ret = 0;

	/* the CIDRs inside a range start at its address and are contiguous in CIDR order */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cmp_cidr(&ctx->cidrs[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = lo; !ret && k < ctx->ncidrs; k++) {
		const struct sm_policy_cidr *c = &ctx->cidrs[k];

		if (!sm_cidr_contains(addr, prefix, &c->addr, addr->family == AF_INET ? 32 : 128))
			break;
		if (c->prefix >= prefix)
			ret = idvec_push(out, c->identity);
	}
	return ret;
}

static int compile_rule(struct compiler *cc, const struct sm_port_range *sel, size_t nsel,
			size_t policy, size_t rule_idx, struct crule *cr)
{
	const struct sm_policy_rule *rule = &cc->set->policies[policy].rules[rule_idx];
	struct sm_port_range *norm = NULL;
	struct idvec srcs = {0};
	size_t nnorm = 0;
	int ret;

	cr->action = rule->action;
	ret = ports_normalize(rule->ports, rule->nports, &norm, &nnorm);
	if (!ret)
		ret = ports_intersect(sel, nsel, norm, nnorm, &cr->ports, &cr->nports, &cr->never);
	free(norm);
	for (size_t f = 0; !ret && f < rule->nfrom; f++) {
		const struct sm_policy_peer *peer = &rule->from[f];

		switch (peer->kind) {
		case SM_POLICY_PEER_ANY:
			cr->any = true;
			break;
		case SM_POLICY_PEER_SPIFFE:
		case SM_POLICY_PEER_PATTERN: {
			struct ref_where where = {policy, (int) rule_idx, peer->line};

			ret = match_spiffe(cc, peer->spiffe, peer->kind == SM_POLICY_PEER_PATTERN,
					   &where, &srcs);
			break;
		}
		case SM_POLICY_PEER_CIDR:
			ret = match_cidr(cc, &peer->addr, peer->prefix, &srcs);
			break;
		}
	}
	idvec_sort_unique(&srcs);
	cr->srcs = srcs.v;
	cr->nsrcs = srcs.n;
	return ret;
}

/* Flatten the rules, expand selectors and sources over the catalog. */
static int compile_prepare(struct compiler *cc)
{
	const struct sm_policy_set *set = cc->set;
	size_t k = 0;
	int ret = 0;

	for (size_t i = 0; i < set->npolicies; i++)
		cc->nrules += set->policies[i].nrules;
	cc->rules = calloc(cc->nrules ? cc->nrules : 1, sizeof(*cc->rules));
	cc->first_rule = calloc(set->npolicies ? set->npolicies : 1, sizeof(*cc->first_rule));
	cc->has_allow = calloc(set->npolicies ? set->npolicies : 1, sizeof(*cc->has_allow));
	if (!cc->rules || !cc->first_rule || !cc->has_allow)
		return -ENOMEM;
	for (size_t i = 0; !ret && i < set->npolicies; i++) {
		const struct sm_policy *pol = &set->policies[i];
		struct sm_port_range *sel = NULL;
		struct idvec dst = {0};
		size_t nsel = 0;

		cc->first_rule[i] = k;
		ret = ports_normalize(pol->ports, pol->nports, &sel, &nsel);
		for (size_t r = 0; !ret && r < pol->nrules; r++) {
			if (pol->rules[r].action == SM_POLICY_RULE_ALLOW)
				cc->has_allow[i] = true;
			ret = compile_rule(cc, sel, nsel, i, r, &cc->rules[k++]);
		}
		free(sel);
		if (!ret) {
			struct ref_where where = {i, -1, pol->selector_line};

			ret = match_spiffe(cc, pol->selector, pol->selector_pattern, &where, &dst);
		}
		idvec_sort_unique(&dst);
		for (size_t d = 0; !ret && d < dst.n; d++) {
			if (cc->ndsts == cc->dsts_cap) {
				size_t cap = cc->dsts_cap ? cc->dsts_cap * 2 : 64;
				struct pair *np = realloc(cc->dsts, cap * sizeof(*np));

				if (!np) {
					ret = -ENOMEM;
					break;
				}
				cc->dsts = np;
				cc->dsts_cap = cap;
			}
			cc->dsts[cc->ndsts++] = (struct pair){dst.v[d], (uint32_t) i};
		}
		free(dst.v);
	}
	if (!ret && cc->ndsts)
		qsort(cc->dsts, cc->ndsts, sizeof(*cc->dsts), cmp_pair);
	return ret;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct sm_policy_key *x = &((const struct sm_policy_entry *) a)->key;
	const struct sm_policy_key *y = &((const struct sm_policy_entry *) b)->key;

	if (x->dst_identity != y->dst_identity)
		return x->dst_identity < y->dst_identity ? -1 : 1;
	if (x->src_identity != y->src_identity)
		return x->src_identity < y->src_identity ? -1 : 1;
	return (x->dport > y->dport) - (x->dport < y->dport);
}

/* Entries {src, dst, port} for port in lo..hi (0..0 for the port wildcard). */
static int emit(struct compiler *cc, uint32_t src, uint32_t dst, uint32_t lo, uint32_t hi,
		const struct sm_policy_value *v)
{
	for (uint32_t port = lo; port <= hi; port++) {
		struct sm_policy_entry *e;

		cc->needed++;
		if (cc->max && cc->needed > cc->max)
			continue; /* refused in the end; keep counting for the message */
		if (cc->nentries == cc->cap) {
			size_t cap = cc->cap ? cc->cap * 2 : 256;
			struct sm_policy_entry *ne = realloc(cc->entries, cap * sizeof(*ne));

			if (!ne)
				return -ENOMEM;
			cc->entries = ne;
			cc->cap = cap;
		}
		e = &cc->entries[cc->nentries++];
		memset(e, 0, sizeof(*e));
		e->key.src_identity = src;
		e->key.dst_identity = dst;
		e->key.dport = (uint16_t) port;
		e->key.proto = IPPROTO_TCP;
		e->value = *v;
		e->value.revision = cc->revision;
	}
	return 0;
}

/* A port class: lo..hi behave alike for every rule of one destination. */
struct port_class {
	uint32_t lo, hi;
};

struct port_event {
	uint32_t port;
	int delta;
};

static int cmp_event(const void *a, const void *b)
{
	uint32_t x = ((const struct port_event *) a)->port;
	uint32_t y = ((const struct port_event *) b)->port;

	return (x > y) - (x < y);
}

/*
 * Split the ports named by rules[0..n) into classes whose ports no rule tells
 * apart; ports named by no rule are left out (they behave like port 0).
 */
static int port_classes(const struct compiler *cc, const uint32_t *rules, size_t n,
			struct port_class **out, size_t *nout)
{
	struct port_event *ev;
	size_t nev = 0, k = 0;
	int depth = 0;

	*out = NULL;
	*nout = 0;
	for (size_t i = 0; i < n; i++)
		nev += 2 * cc->rules[rules[i]].nports;
	if (!nev)
		return 0;
	ev = malloc(nev * sizeof(*ev));
	*out = malloc(nev * sizeof(**out));
	if (!ev || !*out) {
		free(ev);
		return -ENOMEM;
	}
	nev = 0;
	for (size_t i = 0; i < n; i++) {
		const struct crule *r = &cc->rules[rules[i]];

		for (size_t j = 0; j < r->nports; j++) {
			ev[nev++] = (struct port_event){r->ports[j].lo, 1};
			ev[nev++] = (struct port_event){(uint32_t) r->ports[j].hi + 1, -1};
		}
	}
	qsort(ev, nev, sizeof(*ev), cmp_event);
	for (size_t i = 0; i < nev;) {
		uint32_t at = ev[i].port;

		while (i < nev && ev[i].port == at)
			depth += ev[i++].delta;
		if (depth > 0 && i < nev)
			(*out)[k++] = (struct port_class){at, ev[i].port - 1};
	}
	free(ev);
	*nout = k;
	return 0;
}

static bool crule_port(const struct crule *r, uint32_t port)
{
	size_t lo = 0, hi = r->nports;

	if (r->never)
		return false;
	if (!r->ports)
		return true;
	if (!port)
		return false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (port < r->ports[mid].lo)
			hi = mid;
		else if (port > r->ports[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/*
 * The verdict for a source that the rules any[] (rules with `any`) and
 * own[] (rules naming it) match, at port (0 = a port no rule names). Both
 * lists ascend, so the first applying rule of each action is the first seen.
 */
static struct sm_policy_value eval_compiled(const struct compiler *cc, const uint32_t *any,
					    size_t nany, const uint32_t *own, size_t nown,
					    uint32_t port, bool has_allow)
{
	uint32_t deny = 0, allow = 0, audit = 0;
	size_t i = 0, j = 0;

	while (i < nany || j < nown) {
		uint32_t r;
		const struct crule *cr;

		if (j == nown || (i < nany && any[i] <= own[j])) {
			r = any[i++];
			if (j < nown && own[j] == r)
				j++;
		} else {
			r = own[j++];
		}
		cr = &cc->rules[r];
		if (!crule_port(cr, port))
			continue;
		if (cr->action == SM_POLICY_RULE_DENY && !deny)
			deny = r + 1;
		else if (cr->action == SM_POLICY_RULE_ALLOW && !allow)
			allow = r + 1;
		else if (cr->action == SM_POLICY_RULE_AUDIT && !audit)
			audit = r + 1;
		if (deny && audit)
			break;
	}
	return verdict(deny, allow, audit, has_allow);
}

/*
 * The entries of one destination (see docs/policy.md, "How it compiles"):
 * candidate keys evaluated, then each dropped when the lookup without it
 * returns the same verdict, from the most general key to the most specific.
 */
static int compile_dst(struct compiler *cc, uint32_t dst, const struct pair *pols, size_t npols)
{
	static const struct sm_policy_value nohit = {.action = SM_POLICY_ALLOW,
						     .reason = SM_POLICY_R_NO_POLICY};
	static const uint32_t no_rules[1];
	struct idvec rules = {0}, any = {0};
	struct sm_policy_value fallback, general, *cls = NULL;
	struct port_class *classes = NULL;
	struct pair *srcs = NULL;
	size_t nclasses = 0, nsrcs = 0;
	bool has_allow = false;
	int ret = 0;

	for (size_t i = 0; !ret && i < npols; i++) {
		size_t first = cc->first_rule[pols[i].idx];
		size_t n = cc->set->policies[pols[i].idx].nrules;

		has_allow |= cc->has_allow[pols[i].idx];
		for (size_t r = first; !ret && r < first + n; r++) {
			ret = idvec_push(&rules, (uint32_t) r);
			nsrcs += cc->rules[r].nsrcs;
			if (!ret && cc->rules[r].any)
				ret = idvec_push(&any, (uint32_t) r);
		}
	}
	if (!ret && nsrcs) {
		size_t k = 0;

		srcs = malloc(nsrcs * sizeof(*srcs));
		if (!srcs)
			ret = -ENOMEM;
		for (size_t i = 0; !ret && i < rules.n; i++) {
			const struct crule *cr = &cc->rules[rules.v[i]];

			for (size_t s = 0; s < cr->nsrcs; s++)
				srcs[k++] = (struct pair){cr->srcs[s], rules.v[i]};
		}
		if (!ret)
			qsort(srcs, nsrcs, sizeof(*srcs), cmp_pair);
	}
	if (!ret)
		ret = port_classes(cc, rules.v, rules.n, &classes, &nclasses);
	if (!ret && nclasses) {
		cls = malloc(nclasses * sizeof(*cls));
		if (!cls)
			ret = -ENOMEM;
	}
	if (ret)
		goto out_free;

	/* 5: the fallback, the verdict when no rule matches; 4: {any, dst, any port} */
	fallback = verdict(0, 0, 0, has_allow);
	if (!value_equal(&fallback, &nohit))
		ret = emit(cc, SM_POLICY_SRC_DEFAULT, dst, 0, 0, &fallback);
	general = eval_compiled(cc, any.v, any.n, no_rules, 0, 0, has_allow);
	if (!ret && !value_equal(&general, &fallback))
		ret = emit(cc, 0, dst, 0, 0, &general);
	/* 3: {any, dst, port} */
	for (size_t c = 0; !ret && c < nclasses; c++) {
		cls[c] = eval_compiled(cc, any.v, any.n, no_rules, 0, classes[c].lo, has_allow);
		if (!value_equal(&cls[c], &general))
			ret = emit(cc, 0, dst, classes[c].lo, classes[c].hi, &cls[c]);
	}
	/* 2 and 1: each named source, every port and then port by port */
	for (size_t i = 0; !ret && i < nsrcs;) {
		uint32_t src = srcs[i].id, own[64], *ownv = own;
		struct sm_policy_value wild;
		size_t n = 0;
		bool keep_wild;

		while (i + n < nsrcs && srcs[i + n].id == src)
			n++;
		if (n > SM_ARRAY_SIZE(own)) {
			ownv = malloc(n * sizeof(*ownv));
			if (!ownv) {
				ret = -ENOMEM;
				break;
			}
		}
		for (size_t k = 0; k < n; k++)
			ownv[k] = srcs[i + k].idx;
		i += n;
		wild = eval_compiled(cc, any.v, any.n, ownv, n, 0, has_allow);
		keep_wild = !value_equal(&wild, &general);
		if (keep_wild)
			ret = emit(cc, src, dst, 0, 0, &wild);
		for (size_t c = 0; !ret && c < nclasses; c++) {
			struct sm_policy_value v =
				eval_compiled(cc, any.v, any.n, ownv, n, classes[c].lo, has_allow);
			const struct sm_policy_value *below = keep_wild ? &wild : &cls[c];

			if (!value_equal(&v, below))
				ret = emit(cc, src, dst, classes[c].lo, classes[c].hi, &v);
		}
		if (ownv != own)
			free(ownv);
	}
out_free:
	free(cls);
	free(classes);
	free(srcs);
	free(any.v);
	free(rules.v);
	return ret;
}

static void compiler_free(struct compiler *cc)
{
	for (size_t i = 0; cc->rules && i < cc->nrules; i++) {
		free(cc->rules[i].ports);
		free(cc->rules[i].srcs);
	}
	free(cc->rules);
	free(cc->first_rule);
	free(cc->has_allow);
	free(cc->dsts);
	free(cc->entries);
	free(cc->unmatched);
	sm_policy_ctx_free(cc->ctx);
}

const char *sm_policy_unmatched_format(const struct sm_policy_unmatched *u, char *buf, size_t len)
{
	char where[32];

	if (u->rule < 0)
		snprintf(where, sizeof(where), "selector");
	else
		snprintf(where, sizeof(where), "rules[%d]", u->rule);
	if (u->pattern)
		snprintf(buf, len,
			 "policy '%s' %s: pattern '%s' matches no workload of the catalog yet",
			 u->policy, where, u->spiffe);
	else
		snprintf(buf, len, "policy '%s' %s: %s '%s' names no workload of the catalog",
			 u->policy, where, u->rule < 0 ? "SPIFFE ID" : "source", u->spiffe);
	return buf;
}

/* Document order: by line, then (for sets merged from several documents) policy name. */
static int cmp_unmatched(const void *a, const void *b)
{
	const struct sm_policy_unmatched *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return strcmp(x->policy, y->policy);
}

/* Move the results into out. 0 or -ENOMEM. */
static int compile_finish(struct compiler *cc, struct sm_policy_compiled *out)
{
	const struct sm_policy_set *set = cc->set;
	size_t k = 0;

	out->rules = calloc(cc->nrules ? cc->nrules : 1, sizeof(*out->rules));
	if (!out->rules)
		return -ENOMEM;
	for (size_t i = 0; i < set->npolicies; i++) {
		for (size_t r = 0; r < set->policies[i].nrules; r++, k++) {
			struct sm_policy_rule_info *info = &out->rules[k];

			memcpy(info->policy, set->policies[i].name, sizeof(info->policy));
			info->rule_index = (unsigned int) r;
			info->action = set->policies[i].rules[r].action;
			info->line = set->policies[i].rules[r].line;
		}
	}
	out->nrules = cc->nrules;
	out->entries = cc->entries;
	out->nentries = cc->nentries;
	cc->entries = NULL;
	out->cidrs = cc->ctx->cidrs;
	out->ncidrs = cc->ctx->ncidrs;
	cc->ctx->cidrs = NULL;
	cc->ctx->ncidrs = 0;
	out->names = cc->ctx->by_id;
	out->nnames = cc->ctx->nids;
	cc->ctx->by_id = NULL;
	cc->ctx->nids = 0;
	if (cc->nunmatched)
		qsort(cc->unmatched, cc->nunmatched, sizeof(*cc->unmatched), cmp_unmatched);
	out->unmatched = cc->unmatched;
	out->nunmatched = cc->nunmatched;
	cc->unmatched = NULL;
	out->unmatched_patterns = (unsigned int) out->nunmatched;
	if (out->nunmatched)
		memcpy(out->unmatched_example, out->unmatched[0].spiffe,
		       sizeof(out->unmatched_example));
	return sm_policy_compiled_index(out);
}

int sm_policy_compile(const struct sm_policy_set *set, const struct sm_catalog *cat,
		      uint32_t revision, size_t max_entries, struct sm_policy_compiled *out,
		      struct sm_error *err)
{
	struct compiler cc = {.set = set, .revision = revision, .max = max_entries};
	int ret;

	memset(out, 0, sizeof(*out));
	out->revision = revision;
	cc.ctx = sm_policy_ctx_new(set, cat);
	ret = cc.ctx ? compile_prepare(&cc) : -ENOMEM;
	for (size_t i = 0; !ret && i < cc.ndsts;) {
		size_t n = 0;

		while (i + n < cc.ndsts && cc.dsts[i + n].id == cc.dsts[i].id)
			n++;
		ret = compile_dst(&cc, cc.dsts[i].id, &cc.dsts[i], n);
		i += n;
	}
	if (!ret && cc.max && cc.needed > cc.max) {
		sm_error_set(err,
			     "the policy needs %zu kernel entries, the map holds %zu (raise "
			     "datapath.max_policy_entries or narrow the rules)",
			     cc.needed, cc.max);
		ret = -E2BIG;
	} else if (!ret) {
		ret = compile_finish(&cc, out);
	}
	if (ret == -ENOMEM)
		sm_error_set(err, "compiling the policy: out of memory");
	compiler_free(&cc);
	if (ret) {
		sm_policy_compiled_free(out);
		out->revision = revision;
	}
	return ret;
}

int sm_policy_recompile(const struct sm_policy_set *set, const struct sm_catalog *cat,
			uint32_t revision, size_t max_entries, struct sm_policy_compiled *out,
			struct sm_error *err)
{
	return sm_policy_compile(set, cat, revision, max_entries, out, err);
}

/* ---- lookup ---- */

struct sm_policy_index_item {
	struct sm_policy_key key;
	size_t idx;
	UT_hash_handle hh;
};

struct sm_policy_index {
	struct sm_policy_index_item *items;
	struct sm_policy_index_item *head;
};

static void index_free(struct sm_policy_index *ix)
{
	if (!ix)
		return;
	HASH_CLEAR(hh, ix->head);
	free(ix->items);
	free(ix);
}

int sm_policy_compiled_index(struct sm_policy_compiled *c)
{
	struct sm_policy_index *ix;

	index_free(c->index);
	c->index = NULL;
	if (c->nentries)
		qsort(c->entries, c->nentries, sizeof(*c->entries), cmp_entry);
	ix = calloc(1, sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	ix->items = calloc(c->nentries ? c->nentries : 1, sizeof(*ix->items));
	if (!ix->items) {
		free(ix);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->nentries; i++) {
		struct sm_policy_index_item *it = &ix->items[i];

		it->key = c->entries[i].key;
		it->idx = i;
		HASH_ADD(hh, ix->head, key, sizeof(it->key), it);
	}
	c->index = ix;
	return 0;
}

void sm_policy_compiled_free(struct sm_policy_compiled *c)
{
	if (!c)
		return;
	index_free(c->index);
	for (size_t i = 0; c->names && i < c->nnames; i++)
		free(c->names[i].spiffe);
	free(c->names);
	free(c->entries);
	free(c->cidrs);
	free(c->rules);
	free(c->unmatched);
	memset(c, 0, sizeof(*c));
}

static const struct sm_policy_entry *entry_find(const struct sm_policy_compiled *c, uint32_t src,
						uint32_t dst, uint16_t port)
{
	struct sm_policy_index_item *it = NULL;
	struct sm_policy_key key;

	if (!c->index)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.src_identity = src;
	key.dst_identity = dst;
	key.dport = port;
	key.proto = IPPROTO_TCP;
	HASH_FIND(hh, c->index->head, &key, sizeof(key), it);
	return it ? &c->entries[it->idx] : NULL;
}

void sm_policy_step_key(unsigned int step, uint32_t src, uint32_t dst, uint16_t port,
			struct sm_policy_key *key)
{
	memset(key, 0, sizeof(*key));
	key->proto = IPPROTO_TCP;
	key->dst_identity = dst;
	key->src_identity = step <= 2 ? src : step == 5 ? SM_POLICY_SRC_DEFAULT : 0;
	key->dport = step == 1 || step == 3 ? port : 0;
}

int sm_policy_lookup(const struct sm_policy_compiled *c, uint32_t src, uint32_t dst, uint16_t port,
		     struct sm_policy_decision *d)
{
	static const struct sm_policy_value nohit = {.action = SM_POLICY_ALLOW,
						     .reason = SM_POLICY_R_NO_POLICY};
	struct sm_policy_key k;

	for (unsigned int step = 1; step <= SM_POLICY_STEPS; step++) {
		const struct sm_policy_entry *e;

		sm_policy_step_key(step, src, dst, port, &k);
		e = entry_find(c, k.src_identity, dst, k.dport);
		if (e) {
			value_to_decision(&e->value, step, d);
			return 0;
		}
	}
	value_to_decision(&nohit, 0, d);
	return 0;
}

uint32_t sm_policy_cidr_identity(const struct sm_policy_compiled *c, const struct sm_addr *addr)
{
	const struct sm_policy_cidr *best = NULL;
	unsigned int full = addr->family == AF_INET ? 32 : 128;

	for (size_t i = 0; i < c->ncidrs; i++) {
		const struct sm_policy_cidr *x = &c->cidrs[i];

		if (sm_cidr_contains(&x->addr, x->prefix, addr, (uint8_t) full) &&
		    (!best || x->prefix > best->prefix))
			best = x;
	}
	return best ? best->identity : 0;
}

/* ---- describe, names, formatting ---- */

int sm_policy_describe(const struct sm_policy_compiled *c, uint32_t rule_id,
		       struct sm_policy_rule_info *info)
{
	if (rule_id == 0 || rule_id > c->nrules)
		return -ENOENT;
	*info = c->rules[rule_id - 1];
	return 0;
}

int sm_policy_set_describe(const struct sm_policy_set *set, uint32_t rule_id,
			   struct sm_policy_rule_info *info)
{
	uint32_t id = rule_id;

	if (rule_id == 0)
		return -ENOENT;
	for (size_t i = 0; i < set->npolicies; i++) {
		const struct sm_policy *pol = &set->policies[i];

		if (id > pol->nrules) {
			id -= (uint32_t) pol->nrules;
			continue;
		}
		memset(info, 0, sizeof(*info));
		memcpy(info->policy, pol->name, sizeof(info->policy));
		info->rule_index = id - 1;
		info->action = pol->rules[id - 1].action;
		info->line = pol->rules[id - 1].line;
		return 0;
	}
	return -ENOENT;
}

const char *sm_policy_identity_name(const struct sm_policy_compiled *c,
				    const struct sm_catalog *cat, uint32_t identity, char *buf,
				    size_t len)
{
	const struct sm_policy_cidr *cidr = NULL;
	const char *id = NULL;
	char addr[64];
	int wl;

	if (identity == SM_ID_WILDCARD)
		snprintf(buf, len, "any");
	else if (identity == SM_POLICY_SRC_DEFAULT)
		snprintf(buf, len, "default");
	else if (identity == SM_ID_HOST)
		snprintf(buf, len, "host");
	else if (identity == SM_ID_WORLD)
		snprintf(buf, len, "world");
	else if (c && (cidr = cidr_by_identity(c->cidrs, c->ncidrs, identity)))
		snprintf(buf, len, "%s/%u", sm_addr_format(&cidr->addr, addr, sizeof(addr)),
			 cidr->prefix);
	else if (c && (id = names_find(c->names, c->nnames, identity)))
		snprintf(buf, len, "%s", id);
	else if (cat && (wl = sm_catalog_workload_by_identity(cat, identity)) >= 0)
		snprintf(buf, len, "%s", cat->workloads[wl].spiffe_id);
	else
		snprintf(buf, len, "identity %u", identity);
	return buf;
}

/* "POLICY#I", or the reason when no rule decided. Returns buf. */
static const char *rule_name(const struct sm_policy_compiled *c, uint32_t rule_id, uint8_t reason,
			     char *buf, size_t len)
{
	if (rule_id == 0)
		snprintf(buf, len, "%s",
			 reason == SM_POLICY_R_DEFAULT_DENY ? "default-deny" : "no-policy");
	else if (c && rule_id <= c->nrules)
		snprintf(buf, len, "%s#%u", c->rules[rule_id - 1].policy,
			 c->rules[rule_id - 1].rule_index);
	else
		snprintf(buf, len, "#%u", rule_id);
	return buf;
}

/* "allow rule=POLICY#I[ audit=POLICY#I]". Returns buf. */
static const char *verdict_format(const struct sm_policy_compiled *c,
				  const struct sm_policy_value *v, char *buf, size_t len)
{
	char rule[96], audit[96];

	rule_name(c, v->rule_id, v->reason, rule, sizeof(rule));
	if (v->flags & SM_POLICY_F_AUDIT)
		snprintf(buf, len, "%s rule=%s audit=%s",
			 v->action == SM_POLICY_DENY ? "deny" : "allow", rule,
			 rule_name(c, v->audit_rule_id, SM_POLICY_R_RULE, audit, sizeof(audit)));
	else
		snprintf(buf, len, "%s rule=%s", v->action == SM_POLICY_DENY ? "deny" : "allow",
			 rule);
	return buf;
}

const char *sm_policy_entry_format(const struct sm_policy_compiled *c, const struct sm_catalog *cat,
				   const struct sm_policy_entry *e, char *buf, size_t len)
{
	char src[SM_SPIFFE_MAX], dst[SM_SPIFFE_MAX], port[8], verd[256];
	const char *action;
	const char *rest;

	verdict_format(c, &e->value, verd, sizeof(verd));
	/* verd is "ACTION rule=...": split the action off to put the key in between */
	rest = strchr(verd, ' ');
	action = e->value.action == SM_POLICY_DENY ? "deny" : "allow";
	if (e->key.dport)
		snprintf(port, sizeof(port), "%u", e->key.dport);
	else
		snprintf(port, sizeof(port), "any");
	snprintf(buf, len, "%s src=%s dst=%s port=%s%s", action,
		 sm_policy_identity_name(c, cat, e->key.src_identity, src, sizeof(src)),
		 sm_policy_identity_name(c, cat, e->key.dst_identity, dst, sizeof(dst)), port,
		 rest ? rest : "");
	return buf;
}

/* ---- diff ---- */

static int diff_push(struct sm_policy_diff *d, size_t *cap, const struct sm_policy_diff_item *it)
{
	if (d->nitems == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct sm_policy_diff_item *n = realloc(d->items, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		d->items = n;
		*cap = ncap;
	}
	d->items[d->nitems++] = *it;
	return 0;
}

static int cmp_cidr_identity(const struct sm_policy_cidr *a, const struct sm_policy_cidr *b)
{
	int c = cmp_cidr(a, b);

	if (c)
		return c;
	return (a->identity > b->identity) - (a->identity < b->identity);
}

int sm_policy_diff(const struct sm_policy_compiled *old, const struct sm_policy_compiled *new_c,
		   struct sm_policy_diff *diff)
{
	static const struct sm_policy_compiled none = {0};
	const struct sm_policy_compiled *a = old ? old : &none, *b = new_c ? new_c : &none;
	size_t i = 0, j = 0, cap = 0;
	int ret = 0;

	memset(diff, 0, sizeof(*diff));
	/* both entry lists are sorted by key: one merge pass */
	while (!ret && (i < a->nentries || j < b->nentries)) {
		struct sm_policy_diff_item it;
		int c;

		memset(&it, 0, sizeof(it));
		if (i == a->nentries)
			c = 1;
		else if (j == b->nentries)
			c = -1;
		else
			c = cmp_entry(&a->entries[i], &b->entries[j]);
		if (c < 0) {
			it.kind = SM_POLICY_DIFF_REMOVED;
			it.key = a->entries[i].key;
			it.old_value = a->entries[i++].value;
			diff->removed++;
		} else if (c > 0) {
			it.kind = SM_POLICY_DIFF_ADDED;
			it.key = b->entries[j].key;
			it.new_value = b->entries[j++].value;
			diff->added++;
		} else {
			const struct sm_policy_entry *x = &a->entries[i++], *y = &b->entries[j++];

			if (value_equal(&x->value, &y->value))
				continue;
			it.kind = SM_POLICY_DIFF_CHANGED;
			it.key = y->key;
			it.old_value = x->value;
			it.new_value = y->value;
			diff->changed++;
		}
		ret = diff_push(diff, &cap, &it);
	}
	for (i = 0, j = 0; i < a->ncidrs || j < b->ncidrs;) {
		int c = i == a->ncidrs	 ? 1
			: j == b->ncidrs ? -1
					 : cmp_cidr_identity(&a->cidrs[i], &b->cidrs[j]);

		diff->cidrs_removed += c < 0;
		diff->cidrs_added += c > 0;
		i += c <= 0;
		j += c >= 0;
	}
	if (ret)
		sm_policy_diff_free(diff);
	return ret;
}

void sm_policy_diff_free(struct sm_policy_diff *diff)
{
	if (!diff)
		return;
	free(diff->items);
	memset(diff, 0, sizeof(*diff));
}

static void cidr_line(FILE *f, char sign, const struct sm_policy_cidr *c)
{
	char addr[64];

	fprintf(f, "%c cidr %s/%u identity %u\n", sign,
		sm_addr_format(&c->addr, addr, sizeof(addr)), c->prefix, c->identity);
}

void sm_policy_diff_print(FILE *f, const struct sm_policy_diff *diff,
			  const struct sm_policy_compiled *old,
			  const struct sm_policy_compiled *new_c, const struct sm_catalog *cat)
{
	static const struct sm_policy_compiled none = {0};
	const struct sm_policy_compiled *a = old ? old : &none, *b = new_c ? new_c : &none;
	char line[1024], was[256];

	for (size_t i = 0; i < diff->nitems; i++) {
		const struct sm_policy_diff_item *it = &diff->items[i];
		struct sm_policy_entry e = {.key = it->key};

		switch (it->kind) {
		case SM_POLICY_DIFF_ADDED:
			e.value = it->new_value;
			fprintf(f, "+ %s\n",
				sm_policy_entry_format(b, cat, &e, line, sizeof(line)));
			break;
		case SM_POLICY_DIFF_REMOVED:
			e.value = it->old_value;
			fprintf(f, "- %s\n",
				sm_policy_entry_format(a, cat, &e, line, sizeof(line)));
			break;
		case SM_POLICY_DIFF_CHANGED:
			e.value = it->new_value;
			fprintf(f, "~ %s (was %s)\n",
				sm_policy_entry_format(b, cat, &e, line, sizeof(line)),
				verdict_format(a, &it->old_value, was, sizeof(was)));
			break;
		}
	}
	for (size_t i = 0, j = 0; i < a->ncidrs || j < b->ncidrs;) {
		int c = i == a->ncidrs	 ? 1
			: j == b->ncidrs ? -1
					 : cmp_cidr_identity(&a->cidrs[i], &b->cidrs[j]);

		if (c < 0)
			cidr_line(f, '-', &a->cidrs[i]);
		else if (c > 0)
			cidr_line(f, '+', &b->cidrs[j]);
		i += c <= 0;
		j += c >= 0;
	}
}
