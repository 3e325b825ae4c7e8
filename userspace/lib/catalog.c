// SPDX-License-Identifier: Apache-2.0
/* The catalog: parsing, validation and identity allocation (format in docs/catalog.md). */
#include "catalog.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

/* A failed table allocation marks the entry instead of exiting (uthash's default). */
#define uthash_nonfatal_oom(e) ((e)->oom = true)
#include <uthash.h>

#include <linux/types.h>

#include "sockmesh/common.h"
#include "sockmesh/enroll.h"

#include "yaml_doc.h"

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
#define NAME_FIX   "use 1 to 63 letters, digits, '.', '_' or '-'"
#define SPIFFE_FIX "write spiffe://TRUST-DOMAIN/PATH, e.g. spiffe://example.org/ns/prod/sa/orders"
#define CREDS_FIX                                                                                  \
	"write the absolute path of a directory holding cert.pem, key.pem and bundle.pem, e.g. "   \
	"/etc/sockmesh/credentials/orders"
/* The SPIFFE ID standard's limit; ours is SM_SPIFFE_MAX - 1 (a fixed buffer). */
#define SPIFFE_STANDARD_MAX 2048

/*
 * An entry seen while parsing, by a key made of its identifying bytes (a
 * name, an address, an address and port, ...): every duplicate check and
 * every reference by name is one hash lookup, so that loading is linear in
 * the number of entries.
 */
struct seen {
	unsigned int idx; /* the entry's index in its section */
	bool oom;	  /* the table could not take it (uthash_nonfatal_oom) */
	UT_hash_handle hh;
	size_t klen;
	unsigned char key[];
};

/* Parser state; the *_lines arrays hold where each entry was defined, for "first at line N". */
struct cat_parse {
	const char *file;
	struct sm_error *err;
	struct sm_catalog *cat;
	unsigned int *node_lines;
	unsigned int *workload_lines;
	unsigned int *service_lines;
	unsigned int *cidr_lines;
	struct seen *node_names;     /* name -> node */
	struct seen *node_addrs;     /* family, address -> node */
	struct seen *workload_names; /* name -> workload */
	struct seen *cgroups;	     /* node index, cgroup path -> workload */
	struct seen *services_seen;  /* family, address, port -> service */
	struct seen *cidrs_seen;     /* family, address, prefix -> CIDR */
};

static const char *const top_keys[] = {"nodes", "workloads", "services", "cidrs"};
static const char *const node_keys[] = {"name", "addresses", "credentials"};
static const char *const workload_keys[] = {
	"name", "node", "cgroup", "unit", "slice", "spiffe_id", "mode", "credentials",
};
static const char *const service_keys[] = {"name", "address", "port", "workload"};
static const char *const cidr_keys[] = {"cidr", "workload"};

/*
 * Report and evaluate to -EINVAL: every catalog error is bad input. A macro so
 * that the value is visible where it is returned (the analyzer does not follow
 * variadic calls, and would otherwise take a failed lookup for success).
 */
#define cat_error(p, line, ...)                                                                    \
	(sm_ycheck_report((p)->err, (p)->file, (line), __VA_ARGS__), -EINVAL)

#define cat_nomem(p) sm_ycheck_nomem((p)->err, (p)->file)

/*
 * Look key up in *table and, when absent, add it for entry idx. Returns 0
 * (added), 1 with *first = the index already holding the key, or -ENOMEM.
 */
static int seen_add(struct seen **table, const void *key, size_t klen, unsigned int idx,
		    unsigned int *first)
{
	struct seen *s;

	HASH_FIND(hh, *table, key, klen, s);
	if (s) {
		*first = s->idx;
		return 1;
	}
	s = calloc(1, sizeof(*s) + klen);
	if (!s)
		return -ENOMEM;
	s->idx = idx;
	s->klen = klen;
	memcpy(s->key, key, klen);
	HASH_ADD(hh, *table, key, klen, s);
	if (s->oom) {
		free(s);
		return -ENOMEM;
	}
	return 0;
}

/* The index of the entry holding key, or -1. */
static int seen_find(struct seen *table, const void *key, size_t klen)
{
	struct seen *s;

	HASH_FIND(hh, table, key, klen, s);
	return s ? (int) s->idx : -1;
}

static void seen_free(struct seen **table)
{
	struct seen *s, *tmp;

	HASH_ITER(hh, *table, s, tmp)
	{
		// uthash's delete-while-iterating idiom (see daemon/flowacct.c)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(*table, s);
		free(s);
	}
}

/* An address as key bytes: the family, then the 4 or 16 address bytes. Returns the length. */
static size_t addr_key(const struct sm_addr *a, unsigned char key[17])
{
	size_t n = a->family == AF_INET ? 4 : 16;

	key[0] = a->family;
	memcpy(key + 1, a->bytes, n);
	return n + 1;
}

static bool name_valid(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n < SM_NAME_MAX && strspn(s, NAME_CHARS) == n;
}

/*
 * Why id is not a valid SPIFFE ID, or NULL when it is. Follows the SPIFFE ID
 * standard: lowercase scheme, a trust domain of [a-z0-9.-_], path segments of
 * [A-Za-z0-9.-_] that are neither empty, "." nor "..", no trailing '/', and
 * nothing else (no port, userinfo, query, fragment or percent-encoding).
 */
static const char *spiffe_id_problem(const char *id)
{
	static const char td_chars[] = "abcdefghijklmnopqrstuvwxyz0123456789.-_";
	static const char path_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789.-_";
	size_t len = strlen(id), td_len;
	const char *p;

	if (len > SPIFFE_STANDARD_MAX)
		return "longer than the 2048 bytes the SPIFFE standard allows";
	if (len >= SM_SPIFFE_MAX)
		return "longer than the 255 bytes sockmesh supports";
	if (strncmp(id, "spiffe://", 9) != 0) {
		if (strncasecmp(id, "spiffe://", 9) == 0)
			return "the scheme must be lowercase \"spiffe://\"";
		return "it does not start with \"spiffe://\"";
	}
	p = id + 9;
	td_len = strcspn(p, "/");
	if (td_len == 0)
		return "the trust domain is empty";
	for (size_t i = 0; i < td_len; i++) {
		if (p[i] == ':')
			return "the trust domain has a port; SPIFFE IDs have none";
		if (p[i] == '@')
			return "the trust domain has user info; SPIFFE IDs have none";
		if (p[i] >= 'A' && p[i] <= 'Z')
			return "the trust domain has uppercase letters; use lowercase";
		if (!strchr(td_chars, p[i]))
			return "the trust domain has a character other than a-z, 0-9, '.', '-', "
			       "'_'";
	}
	p += td_len;
	while (*p) {
		size_t seg;

		p++; /* the '/' */
		seg = strcspn(p, "/");
		if (seg == 0)
			return p[0] ? "the path has an empty segment ('//')"
				    : "the path ends with '/'";
		if ((seg == 1 && p[0] == '.') || (seg == 2 && p[0] == '.' && p[1] == '.'))
			return "the path has a '.' or '..' segment";
		for (size_t i = 0; i < seg; i++) {
			if (p[i] == '?')
				return "it has a query ('?'); SPIFFE IDs have none";
			if (p[i] == '#')
				return "it has a fragment ('#'); SPIFFE IDs have none";
			if (!strchr(path_chars, p[i]))
				return "the path has a character other than letters, digits, '.', "
				       "'-', '_'";
		}
		p += seg;
	}
	return NULL;
}

bool sm_spiffe_id_valid(const char *id)
{
	return id && !spiffe_id_problem(id);
}

#define get_scalar(p, map, what, key, required, fix, out)                                          \
	sm_ycheck_scalar((p)->err, (p)->file, (map), (what), (key), (required), (fix), (out))

/* A section: absent or null = no entries; otherwise a list of mappings. */
static int get_section(struct cat_parse *p, const struct sm_ynode *root, const char *section,
		       const char *example, const struct sm_ynode **out)
{
	const struct sm_ynode *key_node = NULL;
	const struct sm_ynode *list = sm_ymap_get(root, section, &key_node);

	*out = NULL;
	if (!list || sm_ynode_is_null(list))
		return 0;
	if (list->type != SM_YNODE_LIST)
		return cat_error(p, list->line,
				 "%s: expected a list, found %s (write each entry "
				 "as '- %s')",
				 section, sm_ynode_kind(list), example);
	for (size_t i = 0; i < list->n; i++)
		if (list->vals[i]->type != SM_YNODE_MAP)
			return cat_error(p, list->vals[i]->line,
					 "%s[%zu]: expected a mapping, "
					 "found %s (write the entry as '- %s')",
					 section, i, sm_ynode_kind(list->vals[i]), example);
	*out = list;
	return 0;
}

#define check_keys(p, map, what, known, nknown)                                                    \
	sm_ycheck_keys((p)->err, (p)->file, (map), (what), (known), (nknown))

static int parse_name(struct cat_parse *p, const struct sm_ynode *map, const char *what,
		      const char *key, bool required, char *out)
{
	const struct sm_ynode *val;
	int ret;

	ret = get_scalar(p, map, what, key, required, NAME_FIX, &val);
	if (ret || !val)
		return ret;
	if (!name_valid(val->text))
		return cat_error(p, val->line, "%s: %s '%.80s' is not a valid name (%s)", what, key,
				 val->text, NAME_FIX);
	sm_strlcpy(out, val->text, SM_NAME_MAX);
	return 0;
}

/* Optional "credentials: DIR": an absolute path that fits PATH_MAX; "" when absent. */
static int parse_credentials(struct cat_parse *p, const struct sm_ynode *map, const char *what,
			     char *out)
{
	const struct sm_ynode *val;
	int ret;

	out[0] = '\0';
	ret = get_scalar(p, map, what, "credentials", false, CREDS_FIX, &val);
	if (ret || !val)
		return ret;
	if (val->text[0] != '/')
		return cat_error(p, val->line,
				 "%s: credentials '%.100s' is not an absolute path (%s)", what,
				 val->text, CREDS_FIX);
	if (sm_strlcpy(out, val->text, PATH_MAX))
		return cat_error(p, val->line, "%s: credentials: the path is too long (%s)", what,
				 CREDS_FIX);
	return 0;
}

static int parse_node(struct cat_parse *p, const struct sm_ynode *map, unsigned int idx)
{
	struct sm_node_def *node = &p->cat->nodes[idx];
	const struct sm_ynode *addrs, *key_node = NULL;
	char what[96], buf[64];
	unsigned char key[17];
	unsigned int first;
	int ret;

	snprintf(what, sizeof(what), "nodes[%u]", idx);
	ret = check_keys(p, map, what, node_keys, SM_ARRAY_SIZE(node_keys));
	if (ret)
		return ret;
	ret = parse_name(p, map, what, "name", true, node->name);
	if (ret)
		return ret;
	p->node_lines[idx] = map->line;
	snprintf(what, sizeof(what), "node '%s'", node->name);
	ret = seen_add(&p->node_names, node->name, strlen(node->name), idx, &first);
	if (ret < 0)
		return cat_nomem(p);
	if (ret)
		return cat_error(p, map->line,
				 "%s is defined twice (first at line %u; "
				 "rename or remove one)",
				 what, p->node_lines[first]);

	addrs = sm_ymap_get(map, "addresses", &key_node);
	if (!addrs)
		return cat_error(p, map->line,
				 "%s: missing required key 'addresses' (list the "
				 "node's own addresses, e.g. addresses: [10.0.0.1])",
				 what);
	if (addrs->type != SM_YNODE_LIST)
		return cat_error(p, addrs->line,
				 "%s: addresses: expected a list, found %s (write "
				 "addresses: [10.0.0.1])",
				 what, sm_ynode_kind(addrs));
	if (addrs->n == 0 || addrs->n > SM_NODE_ADDRS_MAX)
		return cat_error(p, addrs->line,
				 "%s: addresses: %zu given (list 1 to %d of the "
				 "node's own addresses)",
				 what, addrs->n, SM_NODE_ADDRS_MAX);
	for (size_t a = 0; a < addrs->n; a++) {
		const struct sm_ynode *v = addrs->vals[a];
		struct sm_addr *addr = &node->addrs[a];

		if (v->type != SM_YNODE_SCALAR)
			return cat_error(p, v->line,
					 "%s: addresses[%zu]: expected a single value, "
					 "found %s (write one IPv4 or IPv6 address per item)",
					 what, a, sm_ynode_kind(v));
		if (sm_addr_parse(v->text, addr))
			return cat_error(p, v->line,
					 "%s: addresses: '%.80s' is not an IPv4 or IPv6 "
					 "address (write a numeric address, e.g. 10.0.0.1 or "
					 "\"fc00::1\")",
					 what, v->text);
		node->naddrs = (unsigned int) a + 1;
		/* an address names one node: two claiming it make "same node" ambiguous */
		ret = seen_add(&p->node_addrs, key, addr_key(addr, key), idx, &first);
		if (ret < 0)
			return cat_nomem(p);
		if (ret)
			return cat_error(p, v->line,
					 "%s: address %s is already an "
					 "address of node '%s' (line %u) (give each "
					 "address to one node only)",
					 what, sm_addr_format(addr, buf, sizeof(buf)),
					 p->cat->nodes[first].name, p->node_lines[first]);
	}
	return parse_credentials(p, map, what, node->credentials);
}

/* "relative to the cgroup v2 mount": no leading '/', no ".." segment, not empty. */
static const char *cgroup_problem(const char *s)
{
	const char *seg = s;

	if (!*s)
		return "it is empty";
	if (*s == '/')
		return "it starts with '/'";
	if (strlen(s) >= PATH_MAX)
		return "it is too long";
	while (seg) {
		size_t len = strcspn(seg, "/");

		if (len == 0)
			return "it has an empty segment ('//', or a '/' at the end)";
		if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return "it has a '.' or '..' segment";
		if (len > SM_ENROLL_NAME_MAX)
			return "a segment is longer than 246 bytes (workloads are enrolled by "
			       "name)";
		seg = seg[len] ? seg + len + 1 : NULL;
	}
	return NULL;
}

/* seen_add() for the pair (workload's node, its cgroup path). */
static int cgroup_seen(struct cat_parse *p, const struct sm_workload_def *wl, unsigned int idx,
		       unsigned int *first)
{
	unsigned char key[sizeof(wl->node) + sizeof(wl->cgroup)];
	size_t len = strlen(wl->cgroup);

	memcpy(key, &wl->node, sizeof(wl->node));
	memcpy(key + sizeof(wl->node), wl->cgroup, len);
	return seen_add(&p->cgroups, key, sizeof(wl->node) + len, idx, first);
}

#define CGROUP_FIX                                                                                 \
	"write the path relative to the cgroup v2 mount, e.g. system.slice/orders.service, or "    \
	"name a systemd unit: unit: orders.service"

/*
 * The workload's cgroup: "cgroup: PATH", or "unit: NAME" with an optional
 * "slice: NAME" turned into the path systemd gives that unit (sdunit.h).
 * *where is the key the path came from, for messages about it.
 */
static int parse_workload_cgroup(struct cat_parse *p, const struct sm_ynode *map, const char *what,
				 struct sm_workload_def *wl, const struct sm_ynode **where)
{
	const struct sm_ynode *path, *unit, *slice;
	char why[512];
	const char *problem;
	int ret;

	ret = get_scalar(p, map, what, "cgroup", false, CGROUP_FIX, &path);
	ret = ret ?: get_scalar(p, map, what, "unit", false, CGROUP_FIX, &unit);
	ret = ret
		      ?: get_scalar(p, map, what, "slice", false,
				    "write NAME.slice, e.g. web.slice", &slice);
	if (ret)
		return ret;
	if (path && unit)
		return cat_error(p, unit->line,
				 "%s: give either cgroup or unit, not both (remove one: unit "
				 "names a systemd unit, cgroup a path)",
				 what);
	if (!path && !unit)
		return cat_error(p, map->line, "%s: missing required key 'cgroup' or 'unit' (%s)",
				 what, CGROUP_FIX);
	if (slice && !unit)
		return cat_error(p, slice->line,
				 "%s: slice is only for a unit (write unit: NAME.service beside "
				 "it, or put the slice in the cgroup path and remove slice)",
				 what);
	*where = path ? path : unit;
	if (unit) {
		if (sm_unit_check(unit->text, why, sizeof(why)))
			return cat_error(p, unit->line, "%s: unit '%.80s': %s", what, unit->text,
					 why);
		if (slice && sm_unit_is_slice(unit->text))
			return cat_error(p, slice->line,
					 "%s: unit '%.80s' is a slice: a slice's place follows "
					 "from its name (remove slice, or name the slice "
					 "parent-%.80s)",
					 what, unit->text, unit->text);
		if (slice && sm_slice_check(slice->text, why, sizeof(why)))
			return cat_error(p, slice->line, "%s: slice '%.80s': %s", what, slice->text,
					 why);
		sm_strlcpy(wl->unit, unit->text, sizeof(wl->unit));
		if (slice)
			sm_strlcpy(wl->slice, slice->text, sizeof(wl->slice));
		if (sm_unit_cgroup(wl->unit, slice ? wl->slice : NULL, wl->cgroup,
				   sizeof(wl->cgroup)))
			return cat_error(p, unit->line,
					 "%s: unit '%.80s': its cgroup path is too long "
					 "(use a shorter unit or slice name)",
					 what, unit->text);
		problem = cgroup_problem(wl->cgroup);
		if (problem)
			return cat_error(p, unit->line,
					 "%s: unit '%.80s' is in cgroup '%.200s', which cannot be "
					 "enrolled: %s (use a shorter unit or slice name)",
					 what, unit->text, wl->cgroup, problem);
		return 0;
	}
	problem = cgroup_problem(path->text);
	if (problem)
		return cat_error(
			p, path->line,
			"%s: cgroup '%.80s' is not valid: %s (write the path "
			"relative to the cgroup v2 mount, e.g. system.slice/orders.service)",
			what, path->text, problem);
	sm_strlcpy(wl->cgroup, path->text, sizeof(wl->cgroup));
	return 0;
}

static int parse_workload(struct cat_parse *p, const struct sm_ynode *map, unsigned int idx)
{
	struct sm_workload_def *wl = &p->cat->workloads[idx];
	const struct sm_ynode *val;
	char what[96], node_name[SM_NAME_MAX] = "";
	unsigned int first;
	const char *why;
	int ret, node;

	snprintf(what, sizeof(what), "workloads[%u]", idx);
	ret = check_keys(p, map, what, workload_keys, SM_ARRAY_SIZE(workload_keys));
	if (ret)
		return ret;
	ret = parse_name(p, map, what, "name", true, wl->name);
	if (ret)
		return ret;
	p->workload_lines[idx] = map->line;
	snprintf(what, sizeof(what), "workload '%s'", wl->name);
	ret = seen_add(&p->workload_names, wl->name, strlen(wl->name), idx, &first);
	if (ret < 0)
		return cat_nomem(p);
	if (ret)
		return cat_error(p, map->line,
				 "%s is defined twice (first at line %u; "
				 "rename or remove one)",
				 what, p->workload_lines[first]);

	ret = parse_name(p, map, what, "node", true, node_name);
	if (ret)
		return ret;
	node = seen_find(p->node_names, node_name, strlen(node_name));
	if (node < 0) {
		val = sm_ymap_get(map, "node", NULL);
		return cat_error(p, val->line,
				 "%s: node '%s' is not in nodes (add it under nodes "
				 "or fix the name)",
				 what, node_name);
	}
	wl->node = (unsigned int) node;

	ret = parse_workload_cgroup(p, map, what, wl, &val);
	if (ret)
		return ret;
	/* one cgroup is one workload on a node; replicas on other nodes may share the path */
	ret = cgroup_seen(p, wl, idx, &first);
	if (ret < 0)
		return cat_nomem(p);
	if (ret)
		return cat_error(p, val->line,
				 "%s: cgroup '%.200s'%s%.80s on node '%s' is already "
				 "workload '%s' (line %u) (give each workload its own cgroup)",
				 what, wl->cgroup, wl->unit[0] ? " of unit " : "", wl->unit,
				 p->cat->nodes[wl->node].name, p->cat->workloads[first].name,
				 p->workload_lines[first]);

	ret = get_scalar(p, map, what, "spiffe_id", true, SPIFFE_FIX, &val);
	if (ret)
		return ret;
	why = spiffe_id_problem(val->text);
	if (why)
		return cat_error(p, val->line,
				 "%s: spiffe_id '%.100s%s' is not a valid SPIFFE ID: "
				 "%s (%s)",
				 what, val->text, strlen(val->text) > 100 ? "..." : "", why,
				 SPIFFE_FIX);
	if (!strchr(val->text + 9, '/'))
		return cat_error(p, val->line,
				 "%s: spiffe_id '%.100s' names only a trust domain (a "
				 "workload's ID needs a path; %s)",
				 what, val->text, SPIFFE_FIX);
	sm_strlcpy(wl->spiffe_id, val->text, sizeof(wl->spiffe_id));

	ret = get_scalar(p, map, what, "mode", false, "write strict or permissive", &val);
	if (ret)
		return ret;
	if (!val || strcasecmp(val->text, "strict") == 0)
		wl->mode = SM_MODE_STRICT;
	else if (strcasecmp(val->text, "permissive") == 0)
		wl->mode = SM_MODE_PERMISSIVE;
	else
		return cat_error(p, val->line,
				 "%s: mode '%.40s' is not valid (write strict or "
				 "permissive)",
				 what, val->text);
	return parse_credentials(p, map, what, wl->credentials);
}

/* A workload reference: 0 with *idx set, 0 with *idx = -1 when optional and absent, or error. */
static int parse_workload_ref(struct cat_parse *p, const struct sm_ynode *map, const char *what,
			      bool required, int *idx)
{
	char name[SM_NAME_MAX];
	const struct sm_ynode *val;
	int ret;

	*idx = -1;
	name[0] = '\0';
	ret = parse_name(p, map, what, "workload", required, name);
	if (ret || !name[0])
		return ret;
	*idx = seen_find(p->workload_names, name, strlen(name));
	if (*idx < 0) {
		val = sm_ymap_get(map, "workload", NULL);
		return cat_error(p, val->line,
				 "%s: workload '%s' is not in workloads (add it under "
				 "workloads or fix the name)",
				 what, name);
	}
	return 0;
}

static int parse_service(struct cat_parse *p, const struct sm_ynode *map, unsigned int idx)
{
	struct sm_service_def *svc = &p->cat->services[idx];
	const struct sm_ynode *val, *addr_node;
	unsigned char key[19];
	char what[96], buf[64];
	unsigned int first;
	uint64_t port;
	size_t klen;
	int ret, wl;

	snprintf(what, sizeof(what), "services[%u]", idx);
	ret = check_keys(p, map, what, service_keys, SM_ARRAY_SIZE(service_keys));
	if (ret)
		return ret;
	ret = parse_name(p, map, what, "name", false, svc->name);
	if (ret)
		return ret;
	if (svc->name[0])
		snprintf(what, sizeof(what), "service '%s'", svc->name);
	p->service_lines[idx] = map->line;

	ret = get_scalar(p, map, what, "address", true,
			 "write the service's IPv4 or IPv6 address, e.g. 10.0.0.2", &addr_node);
	if (ret)
		return ret;
	if (sm_addr_parse(addr_node->text, &svc->addr))
		return cat_error(p, addr_node->line,
				 "%s: address '%.80s' is not an IPv4 or IPv6 "
				 "address (write a numeric address, e.g. 10.0.0.2 or \"fc00::2\")",
				 what, addr_node->text);

	ret = get_scalar(p, map, what, "port", true, "write a TCP port 1..65535", &val);
	if (ret)
		return ret;
	ret = sm_parse_u64(val->text, 1, 65535, &port);
	if (ret == -ERANGE)
		return cat_error(p, val->line,
				 "%s: port %.40s is out of range 1..65535 (write a TCP "
				 "port)",
				 what, val->text);
	if (ret)
		return cat_error(p, val->line,
				 "%s: port '%.40s' is not a number (write a TCP port "
				 "1..65535)",
				 what, val->text);
	svc->port = (uint16_t) port;

	klen = addr_key(&svc->addr, key);
	memcpy(key + klen, &svc->port, sizeof(svc->port));
	ret = seen_add(&p->services_seen, key, klen + sizeof(svc->port), idx, &first);
	if (ret < 0)
		return cat_nomem(p);
	if (ret)
		return cat_error(p, addr_node->line,
				 "%s: %s%s%s:%u is already a service "
				 "(line %u) (each address:port is one service; remove one)",
				 what, svc->addr.family == AF_INET6 ? "[" : "",
				 sm_addr_format(&svc->addr, buf, sizeof(buf)),
				 svc->addr.family == AF_INET6 ? "]" : "", svc->port,
				 p->service_lines[first]);

	ret = parse_workload_ref(p, map, what, true, &wl);
	if (ret)
		return ret;
	svc->workload = (unsigned int) wl;
	return 0;
}

static int parse_cidr(struct cat_parse *p, const struct sm_ynode *map, unsigned int idx)
{
	struct sm_cidr_def *c = &p->cat->cidrs[idx];
	const struct sm_ynode *val;
	char what[96], host[64], buf[64];
	unsigned char key[18];
	unsigned int first;
	const char *slash;
	uint64_t prefix, max;
	size_t n, klen;
	int ret, wl;

	snprintf(what, sizeof(what), "cidrs[%u]", idx);
	ret = check_keys(p, map, what, cidr_keys, SM_ARRAY_SIZE(cidr_keys));
	if (ret)
		return ret;
	p->cidr_lines[idx] = map->line;
	ret = get_scalar(p, map, what, "cidr", true, "write ADDRESS/PREFIX, e.g. 10.0.0.0/24",
			 &val);
	if (ret)
		return ret;
	snprintf(what, sizeof(what), "cidr '%.60s'", val->text);
	/* take it apart here rather than in sm_cidr_parse, to say which part is wrong */
	slash = strchr(val->text, '/');
	n = slash ? (size_t) (slash - val->text) : 0;
	if (!slash || n >= sizeof(host))
		return cat_error(p, val->line,
				 "%s: not ADDRESS/PREFIX (write e.g. 10.0.0.0/24 or "
				 "fc00::/64)",
				 what);
	memcpy(host, val->text, n);
	host[n] = '\0';
	if (sm_addr_parse(host, &c->addr))
		return cat_error(p, val->line,
				 "%s: '%s' is not an IPv4 or IPv6 address (write e.g. "
				 "10.0.0.0/24 or fc00::/64)",
				 what, host);
	max = c->addr.family == AF_INET ? 32 : 128;
	ret = sm_parse_u64(slash + 1, 0, max, &prefix);
	if (ret)
		return cat_error(p, val->line,
				 "%s: prefix length '%.20s' is not a number 0..%llu "
				 "(write e.g. 10.0.0.0/24)",
				 what, slash + 1, (unsigned long long) max);
	c->prefix = (uint8_t) prefix;
	if (sm_cidr_parse(val->text, &c->addr, &c->prefix)) {
		struct sm_addr masked = c->addr;

		for (unsigned int bit = (unsigned int) prefix; bit < max; bit++)
			masked.bytes[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
		return cat_error(p, val->line, "%s: host bits are set (did you mean %s/%u?)", what,
				 sm_addr_format(&masked, buf, sizeof(buf)), (unsigned int) prefix);
	}
	klen = addr_key(&c->addr, key);
	key[klen++] = c->prefix;
	ret = seen_add(&p->cidrs_seen, key, klen, idx, &first);
	if (ret < 0)
		return cat_nomem(p);
	if (ret)
		return cat_error(p, val->line,
				 "%s is defined twice (first at line %u; remove "
				 "one)",
				 what, p->cidr_lines[first]);

	ret = parse_workload_ref(p, map, what, false, &wl);
	if (ret)
		return ret;
	c->workload = wl;
	return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Order of services by family, address, then port; 0 for the same address:port. */
static int svc_key_cmp(const struct sm_addr *a, uint16_t aport, const struct sm_addr *b,
		       uint16_t bport)
{
	int c;

	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	c = memcmp(a->bytes, b->bytes, a->family == AF_INET ? 4 : 16);
	if (c)
		return c;
	return aport < bport ? -1 : aport > bport;
}

/* A service's key and index, sorted to make cat->services_by_addr. */
struct svc_key {
	struct sm_addr addr;
	uint16_t port;
	unsigned int index;
};

static int cmp_svc_key(const void *x, const void *y)
{
	const struct svc_key *a = x, *b = y;

	return svc_key_cmp(&a->addr, a->port, &b->addr, b->port);
}

/* cat->services_by_addr: the services' indices sorted by svc_key_cmp() */
static int index_services(struct cat_parse *p)
{
	struct sm_catalog *cat = p->cat;
	struct svc_key *keys;

	if (!cat->nservices)
		return 0;
	keys = calloc(cat->nservices, sizeof(*keys));
	cat->services_by_addr = calloc(cat->nservices, sizeof(*cat->services_by_addr));
	if (!keys || !cat->services_by_addr) {
		free(keys);
		return cat_nomem(p);
	}
	for (unsigned int i = 0; i < cat->nservices; i++) {
		keys[i].addr = cat->services[i].addr;
		keys[i].port = cat->services[i].port;
		keys[i].index = i;
	}
	qsort(keys, cat->nservices, sizeof(*keys), cmp_svc_key);
	for (unsigned int i = 0; i < cat->nservices; i++)
		cat->services_by_addr[i] = keys[i].index;
	free(keys);
	return 0;
}

/* identity = SM_ID_FIRST_ALLOCATED + index of the SPIFFE ID among the sorted distinct IDs */
static int allocate_identities(struct cat_parse *p)
{
	struct sm_catalog *cat = p->cat;
	const char **ids;
	size_t nids = 0;

	if (!cat->nworkloads)
		goto cidrs;
	ids = calloc(cat->nworkloads, sizeof(*ids));
	if (!ids)
		return cat_nomem(p);
	for (unsigned int i = 0; i < cat->nworkloads; i++)
		ids[i] = cat->workloads[i].spiffe_id;
	qsort(ids, cat->nworkloads, sizeof(*ids), cmp_str_ptr);
	for (unsigned int i = 0; i < cat->nworkloads; i++)
		if (nids == 0 || strcmp(ids[nids - 1], ids[i]) != 0)
			ids[nids++] = ids[i];
	for (unsigned int i = 0; i < cat->nworkloads; i++) {
		const char *key = cat->workloads[i].spiffe_id;
		const char **hit = bsearch(&key, ids, nids, sizeof(*ids), cmp_str_ptr);

		/* hit cannot be NULL: every ID was put in the list above */
		cat->workloads[i].identity = SM_ID_FIRST_ALLOCATED + (uint32_t) (hit - ids);
	}
	free(ids);
	/* the first workload of each identity, for sm_catalog_workload_by_identity() */
	cat->by_identity = malloc(nids * sizeof(*cat->by_identity));
	if (!cat->by_identity)
		return cat_nomem(p);
	cat->nidentities = (unsigned int) nids;
	for (size_t k = 0; k < nids; k++)
		cat->by_identity[k] = UINT_MAX;
	for (unsigned int i = cat->nworkloads; i-- > 0;)
		cat->by_identity[cat->workloads[i].identity - SM_ID_FIRST_ALLOCATED] = i;
cidrs:
	for (unsigned int i = 0; i < cat->ncidrs; i++) {
		struct sm_cidr_def *c = &cat->cidrs[i];

		c->identity = c->workload >= 0 ? cat->workloads[c->workload].identity : SM_ID_WORLD;
	}
	return 0;
}

/* Allocate the entries and their line arrays for one section. */
static int alloc_section(struct cat_parse *p, const struct sm_ynode *list, size_t elem,
			 void **items, unsigned int **lines)
{
	size_t n = list ? list->n : 0;

	if (!n)
		return 0;
	*items = calloc(n, elem);
	*lines = calloc(n, sizeof(**lines));
	if (!*items || !*lines)
		return cat_nomem(p);
	return 0;
}

static int catalog_build(struct cat_parse *p, const struct sm_ynode *root)
{
	const struct sm_ynode *nodes, *workloads, *services, *cidrs;
	struct sm_catalog *cat = p->cat;
	char list[128];
	int ret;

	if (!root || sm_ynode_is_null(root))
		return cat_error(p, 1,
				 "the catalog is empty (list at least the nodes: "
				 "nodes: [{name: node1, addresses: [10.0.0.1]}])");
	if (root->type != SM_YNODE_MAP)
		return cat_error(
			p, root->line,
			"expected a mapping with keys %s, found %s (see "
			"docs/catalog.md)",
			sm_ykeys_join(top_keys, SM_ARRAY_SIZE(top_keys), list, sizeof(list)),
			sm_ynode_kind(root));
	ret = check_keys(p, root, "catalog", top_keys, SM_ARRAY_SIZE(top_keys));
	if (ret)
		return ret;
	ret = get_section(p, root, "nodes", "name: node1", &nodes);
	if (!ret)
		ret = get_section(p, root, "workloads", "name: orders", &workloads);
	if (!ret)
		ret = get_section(p, root, "services", "address: 10.0.0.2", &services);
	if (!ret)
		ret = get_section(p, root, "cidrs", "cidr: 10.0.0.0/24", &cidrs);
	if (ret)
		return ret;
	if (!nodes || nodes->n == 0)
		return cat_error(p, root->line,
				 "no nodes (list this mesh's nodes under 'nodes:', "
				 "e.g. '- name: node1')");

	ret = alloc_section(p, nodes, sizeof(*cat->nodes), (void **) &cat->nodes, &p->node_lines);
	if (!ret)
		ret = alloc_section(p, workloads, sizeof(*cat->workloads),
				    (void **) &cat->workloads, &p->workload_lines);
	if (!ret)
		ret = alloc_section(p, services, sizeof(*cat->services), (void **) &cat->services,
				    &p->service_lines);
	if (!ret)
		ret = alloc_section(p, cidrs, sizeof(*cat->cidrs), (void **) &cat->cidrs,
				    &p->cidr_lines);
	if (ret)
		return ret;

	/* counts grow entry by entry, so lookups during parsing see only earlier entries */
	for (unsigned int i = 0; i < nodes->n; i++) {
		ret = parse_node(p, nodes->vals[i], i);
		if (ret)
			return ret;
		cat->nnodes = i + 1;
	}
	for (unsigned int i = 0; workloads && i < workloads->n; i++) {
		ret = parse_workload(p, workloads->vals[i], i);
		if (ret)
			return ret;
		cat->nworkloads = i + 1;
	}
	for (unsigned int i = 0; services && i < services->n; i++) {
		ret = parse_service(p, services->vals[i], i);
		if (ret)
			return ret;
		cat->nservices = i + 1;
	}
	for (unsigned int i = 0; cidrs && i < cidrs->n; i++) {
		ret = parse_cidr(p, cidrs->vals[i], i);
		if (ret)
			return ret;
		cat->ncidrs = i + 1;
	}
	ret = index_services(p);
	if (ret)
		return ret;
	return allocate_identities(p);
}

/* Build from a parsed tree; on error cat is freed and zeroed. Takes ownership of root. */
static int catalog_from_tree(struct sm_catalog *cat, struct sm_ynode *root, const char *name,
			     struct sm_error *err)
{
	struct cat_parse p = {.file = name, .err = err, .cat = cat};
	int ret;

	ret = catalog_build(&p, root);
	free(p.node_lines);
	free(p.workload_lines);
	free(p.service_lines);
	free(p.cidr_lines);
	seen_free(&p.node_names);
	seen_free(&p.node_addrs);
	seen_free(&p.workload_names);
	seen_free(&p.cgroups);
	seen_free(&p.services_seen);
	seen_free(&p.cidrs_seen);
	sm_ynode_free(root);
	if (ret)
		sm_catalog_free(cat);
	return ret;
}

int sm_catalog_load(struct sm_catalog *cat, const char *path, struct sm_error *err)
{
	struct sm_ynode *root;
	int ret;

	memset(cat, 0, sizeof(*cat));
	ret = sm_yaml_load(path, &root, err);
	if (ret)
		return ret;
	return catalog_from_tree(cat, root, path, err);
}

int sm_catalog_parse(struct sm_catalog *cat, const char *yaml, size_t len, const char *name,
		     struct sm_error *err)
{
	struct sm_ynode *root;
	int ret;

	memset(cat, 0, sizeof(*cat));
	ret = sm_yaml_parse(yaml, len, name, &root, err);
	if (ret)
		return ret;
	return catalog_from_tree(cat, root, name, err);
}

void sm_catalog_free(struct sm_catalog *cat)
{
	if (!cat)
		return;
	free(cat->nodes);
	free(cat->workloads);
	free(cat->services);
	free(cat->cidrs);
	free(cat->by_identity);
	free(cat->services_by_addr);
	memset(cat, 0, sizeof(*cat));
}

int sm_catalog_node_index(const struct sm_catalog *cat, const char *name)
{
	for (unsigned int i = 0; i < cat->nnodes; i++)
		if (strcmp(cat->nodes[i].name, name) == 0)
			return (int) i;
	return -1;
}

int sm_catalog_service_at(const struct sm_catalog *cat, const struct sm_addr *a, uint16_t port)
{
	size_t lo = 0, hi = cat->nservices;

	if (!cat->services_by_addr) {
		for (unsigned int i = 0; i < cat->nservices; i++)
			if (svc_key_cmp(a, port, &cat->services[i].addr, cat->services[i].port) ==
			    0)
				return (int) i;
		return -1;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		unsigned int i = cat->services_by_addr[mid];
		int c = svc_key_cmp(a, port, &cat->services[i].addr, cat->services[i].port);

		if (c == 0)
			return (int) i;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

int sm_catalog_workload_by_identity(const struct sm_catalog *cat, uint32_t identity)
{
	if (identity < SM_ID_FIRST_ALLOCATED ||
	    identity - SM_ID_FIRST_ALLOCATED >= cat->nidentities)
		return -1;
	/* every identity in range belongs to a workload: they are allocated from them */
	return (int) cat->by_identity[identity - SM_ID_FIRST_ALLOCATED];
}
