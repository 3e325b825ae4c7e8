// SPDX-License-Identifier: Apache-2.0
/* Policy documents: parsing and validation into a sorted policy set (docs/policy.md). */
#include "policy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "sockmesh/common.h"

#include "policy_int.h"
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
int pol_ports_normalize(const struct sm_port_range *r, size_t n, struct sm_port_range **out,
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
int pol_ports_intersect(const struct sm_port_range *a, size_t na, const struct sm_port_range *b,
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
bool pol_spiffe_match(const char *text, bool pattern, const char *id)
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
		ret = pol_ports_normalize(rule->ports, rule->nports, &norm, &nnorm);
		if (!ret)
			ret = pol_ports_intersect(norm, nnorm, sel, nsel, &both, &nboth, &empty);
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
	if (pol_ports_normalize(pol->ports, pol->nports, &sel, &nsel))
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

void pol_policy_free(struct sm_policy *pol)
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
		pol_policy_free(&set->policies[i]);
	free(set->policies);
	memset(set, 0, sizeof(*set));
}

int pol_cmp_policy_name(const void *a, const void *b)
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
	qsort(set->policies, set->npolicies, sizeof(*set->policies), pol_cmp_policy_name);
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
