// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the policy library (userspace/lib/policy_*.c): the language
 * and its errors, the semantics, the compiled entries, lookup == evaluation
 * for every (src, dst, port) tried, set operations, serialisation, diffs and
 * compile time.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "catalog.h"
#include "policy.h"
#include "yaml_doc.h"
#include "sockmesh/common.h"

/* Identities of the test catalog: SPIFFE IDs in sorted order from 256. */
#define DEV   256U /* spiffe://example.org/ns/dev/sa/api */
#define API   257U /* spiffe://example.org/ns/prod/sa/api */
#define DB    258U /* spiffe://example.org/ns/prod/sa/db */
#define WEB   259U /* spiffe://example.org/ns/prod/sa/web (two replicas) */
#define OTHER 260U /* spiffe://other.org/sa/x */
#define B     SM_ID_CIDR_BASE
#define DEF   SM_POLICY_SRC_DEFAULT

#define ID_API "spiffe://example.org/ns/prod/sa/api"
#define ID_WEB "spiffe://example.org/ns/prod/sa/web"
#define ID_DB  "spiffe://example.org/ns/prod/sa/db"

static const char catalog_yaml[] =
	"nodes:\n"
	"  - {name: n1, addresses: [10.0.0.1]}\n"
	"  - {name: n2, addresses: [10.0.0.2]}\n"
	"workloads:\n"
	"  - {name: web, node: n1, cgroup: w, spiffe_id: '" ID_WEB "'}\n"
	"  - {name: web2, node: n2, cgroup: w, spiffe_id: '" ID_WEB "'}\n"
	"  - {name: api, node: n1, cgroup: a, spiffe_id: '" ID_API "'}\n"
	"  - {name: db, node: n2, cgroup: d, spiffe_id: '" ID_DB "'}\n"
	"  - {name: dev, node: n1, cgroup: dv, spiffe_id: 'spiffe://example.org/ns/dev/sa/api'}\n"
	"  - {name: other, node: n2, cgroup: o, spiffe_id: 'spiffe://other.org/sa/x'}\n";

/* Everything a test allocates lives here, so teardown frees it after a failed check too. */
static struct sm_catalog cat;
static struct sm_policy_set set, set2, set3;
static struct sm_policy_compiled comp, comp2;
static struct sm_policy_ctx *ctx;
static struct sm_policy_diff diff;
static char *text, *text2;

static int teardown(void **state)
{
	sm_catalog_free(&cat);
	sm_policy_set_free(&set);
	sm_policy_set_free(&set2);
	sm_policy_set_free(&set3);
	sm_policy_compiled_free(&comp);
	sm_policy_compiled_free(&comp2);
	sm_policy_ctx_free(ctx);
	ctx = NULL;
	sm_policy_diff_free(&diff);
	free(text);
	free(text2);
	text = text2 = NULL;
	return 0;
}

static void load_catalog(const char *yaml)
{
	struct sm_error err = {{0}};

	sm_catalog_free(&cat);
	ASSERT_EQ(sm_catalog_parse(&cat, yaml, strlen(yaml), "cat.yaml", &err), 0, err.msg);
}

static int parse(struct sm_policy_set *s, const char *doc, struct sm_error *err)
{
	err->msg[0] = '\0';
	sm_policy_set_free(s);
	return sm_policy_set_parse(s, doc, strlen(doc), "pol.yaml", err);
}

/* Parse doc into set and compile it into comp against cat (no capacity limit). */
static void compile_doc(const char *doc, uint32_t revision)
{
	struct sm_error err = {{0}};

	ASSERT_EQ(parse(&set, doc, &err), 0, err.msg);
	sm_policy_compiled_free(&comp);
	ASSERT_EQ(sm_policy_compile(&set, &cat, revision, 0, &comp, &err), 0, err.msg);
	sm_policy_ctx_free(ctx);
	ctx = sm_policy_ctx_new(&set, &cat);
	ASSERT_NOT_NULL(ctx, "evaluation context");
}

/* ---- cross-check: the compiled entries decide exactly as the rules ---- */

static size_t add_id(uint32_t *v, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == id)
			return n;
	v[n] = id;
	return n + 1;
}

static size_t add_port(uint16_t *v, size_t n, long port)
{
	if (port < 1 || port > 65535)
		return n;
	for (size_t i = 0; i < n; i++)
		if (v[i] == port)
			return n;
	v[n] = (uint16_t) port;
	return n + 1;
}

/*
 * lookup(comp) == eval(set) for every identity (unknown, host, world, every
 * workload, every policy CIDR and one past them) as source and destination,
 * and every port the set names +-1, the range ends +-1 and unrelated ports.
 * Returns the number of combinations checked.
 */
static size_t cross_check(void)
{
	uint32_t ids[64];
	uint16_t ports[512];
	size_t nids = 0, nports = 0, checked = 0;
	char what[256];

	nids = add_id(ids, nids, 0);
	nids = add_id(ids, nids, SM_ID_HOST);
	nids = add_id(ids, nids, SM_ID_WORLD);
	nids = add_id(ids, nids, 3);
	for (unsigned int i = 0; i < cat.nworkloads && nids < 40; i++)
		nids = add_id(ids, nids, cat.workloads[i].identity);
	nids = add_id(ids, nids, SM_ID_FIRST_ALLOCATED + 4000);
	for (size_t i = 0; i <= comp.ncidrs && nids < 63; i++)
		nids = add_id(ids, nids, B + (uint32_t) i);

	nports = add_port(ports, nports, 1);
	nports = add_port(ports, nports, 12345);
	nports = add_port(ports, nports, 65535);
	for (size_t i = 0; i < set.npolicies; i++) {
		const struct sm_policy *p = &set.policies[i];

		for (size_t r = 0; r <= p->nrules; r++) {
			const struct sm_port_range *pr =
				r == p->nrules ? p->ports : p->rules[r].ports;
			size_t n = r == p->nrules ? p->nports : p->rules[r].nports;

			for (size_t k = 0; k < n && nports < 500; k++)
				for (long d = -1; d <= 1; d++) {
					nports = add_port(ports, nports, (long) pr[k].lo + d);
					nports = add_port(ports, nports, (long) pr[k].hi + d);
				}
		}
	}
	for (size_t s = 0; s < nids; s++) {
		for (size_t d = 0; d < nids; d++) {
			for (size_t p = 0; p < nports; p++) {
				struct sm_policy_decision got, want;

				sm_policy_lookup(&comp, ids[s], ids[d], ports[p], &got);
				sm_policy_eval(&set, ctx, ids[s], ids[d], ports[p], &want);
				snprintf(what, sizeof(what),
					 "src %u dst %u port %u: lookup (step %u) vs eval", ids[s],
					 ids[d], ports[p], got.step);
				ASSERT_EQ(got.action, want.action, what);
				ASSERT_EQ(got.reason, want.reason, what);
				ASSERT_EQ(got.rule_id, want.rule_id, what);
				ASSERT_EQ(got.audit, want.audit, what);
				ASSERT_EQ(got.audit_rule_id, want.audit_rule_id, what);
				checked++;
			}
		}
	}
	return checked;
}

/* ---- semantics, table-driven ---- */

struct explain_case {
	uint32_t src, dst;
	uint16_t port;
	enum sm_policy_action action;
	enum sm_policy_reason reason;
	uint32_t rule_id;
	uint32_t audit_rule_id; /* 0 = no audit flag */
	unsigned int step;	/* lookup step expected to hit */
};

struct entry_case {
	uint32_t src, dst;
	uint16_t port;
	enum sm_policy_action action;
	enum sm_policy_reason reason;
	uint32_t rule_id;
	uint32_t audit_rule_id;
};

struct semantic_case {
	const char *name;
	const char *doc;
	struct explain_case explain[12];
	size_t nexplain;
	int nentries; /* -1: not checked exactly */
	struct entry_case entries[8];
};

#define R  SM_POLICY_R_RULE
#define DD SM_POLICY_R_DEFAULT_DENY
#define NP SM_POLICY_R_NO_POLICY
#define AL SM_POLICY_ALLOW
#define DN SM_POLICY_DENY

static const struct semantic_case semantic_cases[] = {
	{
		.name = "allow one source on one port; default deny for the rest",
		.doc = "policies:\n"
		       "  - name: web-from-api\n"
		       "    selector: {spiffe: " ID_WEB ", ports: [8080]}\n"
		       "    rules:\n"
		       "      - action: ALLOW\n"
		       "        from: [" ID_API "]\n",
		.explain = {{API, WEB, 8080, AL, R, 1, 0, 1},
			    {DB, WEB, 8080, DN, DD, 0, 0, 5},
			    {API, WEB, 9090, DN, DD, 0, 0, 5},
			    {API, DB, 5432, AL, NP, 0, 0, 0},
			    {SM_ID_WORLD, WEB, 8080, DN, DD, 0, 0, 5}},
		.nexplain = 5,
		.nentries = 2,
		.entries = {{API, WEB, 8080, AL, R, 1, 0}, {DEF, WEB, 0, DN, DD, 0, 0}},
	},
	{
		.name = "deny beats allow",
		.doc = "policies:\n"
		       "  - name: b-deny\n"
		       "    selector: {spiffe: " ID_WEB "}\n"
		       "    rules: [{action: DENY, from: [" ID_API "]}]\n"
		       "  - name: a-allow\n"
		       "    selector: {spiffe: " ID_WEB "}\n"
		       "    rules: [{action: ALLOW, from: [any]}]\n",
		.explain = {{API, WEB, 80, DN, R, 2, 0, 2},
			    {DB, WEB, 80, AL, R, 1, 0, 4},
			    {0, WEB, 80, AL, R, 1, 0, 2}}, /* src 0: steps 2 and 4 are one key */
		.nexplain = 3,
		.nentries = 3,
		.entries = {{0, WEB, 0, AL, R, 1, 0},
			    {API, WEB, 0, DN, R, 2, 0},
			    {DEF, WEB, 0, DN, DD, 0, 0}},
	},
	{
		.name = "a DENY on a general key is copied into a specific one",
		.doc = "policies:\n"
		       "  - name: deny-ssh\n"
		       "    selector: {spiffe: " ID_WEB ", ports: [22]}\n"
		       "    rules: [{action: DENY, from: [any]}]\n"
		       "  - name: allow-api\n"
		       "    selector: {spiffe: " ID_WEB "}\n"
		       "    rules: [{action: ALLOW, from: [" ID_API "]}]\n",
		.explain = {{API, WEB, 22, DN, R, 2, 0, 1},
			    {API, WEB, 80, AL, R, 1, 0, 2},
			    {DB, WEB, 22, DN, R, 2, 0, 3},
			    {DB, WEB, 80, DN, DD, 0, 0, 5}},
		.nexplain = 4,
		.nentries = 4,
		.entries = {{0, WEB, 22, DN, R, 2, 0},
			    {API, WEB, 0, AL, R, 1, 0},
			    {API, WEB, 22, DN, R, 2, 0},
			    {DEF, WEB, 0, DN, DD, 0, 0}},
	},
	{
		.name = "AUDIT flags and never decides",
		.doc = "policies:\n"
		       "  - name: audit-db\n"
		       "    selector: {spiffe: " ID_DB "}\n"
		       "    rules: [{action: AUDIT, from: [any]}]\n"
		       "  - name: b-deny\n"
		       "    selector: {spiffe: " ID_WEB "}\n"
		       "    rules:\n"
		       "      - {action: DENY, from: [" ID_API "]}\n"
		       "      - {action: ALLOW, from: [any]}\n"
		       "      - {action: AUDIT, from: [" ID_API ", " ID_DB "]}\n",
		.explain = {{API, DB, 5432, AL, NP, 0, 1, 4},
			    {API, WEB, 80, DN, R, 2, 4, 2},
			    {DB, WEB, 80, AL, R, 3, 4, 2},
			    {OTHER, WEB, 80, AL, R, 3, 0, 4}},
		.nexplain = 4,
		.nentries = 5,
		.entries = {{0, DB, 0, AL, NP, 0, 1},
			    {0, WEB, 0, AL, R, 3, 0},
			    {API, WEB, 0, DN, R, 2, 4},
			    {DB, WEB, 0, AL, R, 3, 4},
			    {DEF, WEB, 0, DN, DD, 0, 0}},
	},
	{
		.name = "CIDRs: containment, most specific identity, families apart",
		.doc = "policies:\n"
		       "  - name: allow-net\n"
		       "    selector: {spiffe: " ID_WEB "}\n"
		       "    rules: [{action: ALLOW, from: [10.0.0.0/8, \"fc00::/7\"]}]\n"
		       "  - name: deny-sub\n"
		       "    selector: {spiffe: " ID_WEB "}\n"
		       "    rules: [{action: DENY, from: [10.1.0.0/16]}]\n"
		       "  - name: v4-db\n"
		       "    selector: {spiffe: " ID_DB "}\n"
		       "    rules: [{action: ALLOW, from: [0.0.0.0/0]}]\n",
		/* B+0 0.0.0.0/0, B+1 10.0.0.0/8, B+2 10.1.0.0/16, B+3 fc00::/7 */
		.explain = {{B + 1, WEB, 80, AL, R, 1, 0, 2},
			    {B + 2, WEB, 80, DN, R, 2, 0, 2},
			    {B + 3, WEB, 80, AL, R, 1, 0, 2},
			    {B + 0, WEB, 80, DN, DD, 0, 0, 5},
			    {B + 0, DB, 80, AL, R, 3, 0, 2},
			    {B + 2, DB, 80, AL, R, 3, 0, 2},
			    {B + 3, DB, 80, DN, DD, 0, 0, 5},
			    {SM_ID_WORLD, WEB, 80, DN, DD, 0, 0, 5},
			    /* a mesh identity is never a CIDR's, whatever its address */
			    {API, WEB, 80, DN, DD, 0, 0, 5}},
		.nexplain = 9,
		.nentries = -1,
	},
	{
		.name = "any matches every source, known or not",
		.doc = "policies:\n"
		       "  - name: open\n"
		       "    selector: {spiffe: " ID_WEB "}\n"
		       "    rules: [{action: ALLOW, from: [any]}]\n",
		.explain = {{SM_ID_WORLD, WEB, 80, AL, R, 1, 0, 4},
			    {SM_ID_HOST, WEB, 80, AL, R, 1, 0, 4},
			    {0, WEB, 80, AL, R, 1, 0, 2},
			    {12345, WEB, 1, AL, R, 1, 0, 4}},
		.nexplain = 4,
		.nentries = 2,
		.entries = {{0, WEB, 0, AL, R, 1, 0}, {DEF, WEB, 0, DN, DD, 0, 0}},
	},
	{
		.name = "ports, ranges and selector ports meeting rule ports",
		.doc = "policies:\n"
		       "  - name: ports\n"
		       "    selector: {spiffe: " ID_WEB ", ports: [8080, \"9000-9010\"]}\n"
		       "    rules:\n"
		       "      - {action: ALLOW, from: [" ID_API "], ports: [\"9005-9020\"]}\n"
		       "      - {action: ALLOW, from: [" ID_DB "]}\n",
		.explain = {{API, WEB, 9005, AL, R, 1, 0, 1},
			    {API, WEB, 9010, AL, R, 1, 0, 1},
			    {API, WEB, 9004, DN, DD, 0, 0, 5},
			    {API, WEB, 9011, DN, DD, 0, 0, 5},
			    {API, WEB, 8080, DN, DD, 0, 0, 5},
			    {DB, WEB, 8080, AL, R, 2, 0, 1},
			    {DB, WEB, 9000, AL, R, 2, 0, 1},
			    {DB, WEB, 9011, DN, DD, 0, 0, 5}},
		.nexplain = 8,
		.nentries = 19, /* api 9005-9010 (6), db 8080 + 9000-9010 (12), fallback */
	},
	{
		.name = "patterns expand over the catalog",
		.doc = "policies:\n"
		       "  - name: prod\n"
		       "    selector: {spiffe: 'spiffe://example.org/ns/prod/*'}\n"
		       "    rules:\n"
		       "      - {action: ALLOW, from: ['spiffe://example.org/ns/prod/*']}\n"
		       "      - {action: DENY, from: ['spiffe://nowhere.org/*']}\n",
		.explain = {{API, DB, 5432, AL, R, 1, 0, 2},
			    {WEB, API, 80, AL, R, 1, 0, 2},
			    {DEV, WEB, 80, DN, DD, 0, 0, 5},
			    {OTHER, API, 80, DN, DD, 0, 0, 5},
			    {API, DEV, 80, AL, NP, 0, 0, 0}},
		.nexplain = 5,
		.nentries = 12, /* 3 destinations x (3 sources + fallback) */
	},
};

static void test_semantics(void **state)
{
	char what[256];

	load_catalog(catalog_yaml);
	for (size_t c = 0; c < SM_ARRAY_SIZE(semantic_cases); c++) {
		const struct semantic_case *tc = &semantic_cases[c];

		compile_doc(tc->doc, 7);
		for (size_t i = 0; i < tc->nexplain; i++) {
			const struct explain_case *e = &tc->explain[i];
			struct sm_policy_decision d;

			snprintf(what, sizeof(what), "%s: src %u dst %u port %u", tc->name, e->src,
				 e->dst, e->port);
			sm_policy_lookup(&comp, e->src, e->dst, e->port, &d);
			ASSERT_EQ(d.action, e->action, what);
			ASSERT_EQ(d.reason, e->reason, what);
			ASSERT_EQ(d.rule_id, e->rule_id, what);
			ASSERT_EQ(d.audit, e->audit_rule_id != 0, what);
			ASSERT_EQ(d.audit_rule_id, e->audit_rule_id, what);
			ASSERT_EQ(d.step, e->step, what);
			sm_policy_eval(&set, ctx, e->src, e->dst, e->port, &d);
			ASSERT_EQ(d.action, e->action, what);
			ASSERT_EQ(d.rule_id, e->rule_id, what);
		}
		if (tc->nentries >= 0) {
			snprintf(what, sizeof(what), "%s: entries", tc->name);
			ASSERT_EQ(comp.nentries, tc->nentries, what);
		}
		for (int i = 0; i < tc->nentries && tc->entries[0].dst; i++) {
			const struct entry_case *w = &tc->entries[i];
			const struct sm_policy_entry *g = &comp.entries[i];

			snprintf(what, sizeof(what), "%s: entry %d", tc->name, i);
			ASSERT_EQ(g->key.src_identity, w->src, what);
			ASSERT_EQ(g->key.dst_identity, w->dst, what);
			ASSERT_EQ(g->key.dport, w->port, what);
			ASSERT_EQ(g->key.proto, IPPROTO_TCP, what);
			ASSERT_EQ(g->key.pad, 0, what);
			ASSERT_EQ(g->value.action, w->action, what);
			ASSERT_EQ(g->value.reason, w->reason, what);
			ASSERT_EQ(g->value.rule_id, w->rule_id, what);
			ASSERT_EQ(g->value.flags, w->audit_rule_id ? SM_POLICY_F_AUDIT : 0, what);
			ASSERT_EQ(g->value.audit_rule_id, w->audit_rule_id, what);
			ASSERT_EQ(g->value.revision, 7, what);
		}
		ASSERT_GE(cross_check(), 100, tc->name);
	}
}

static void test_cidrs_and_warnings(void **state)
{
	struct sm_addr a;

	load_catalog(catalog_yaml);
	compile_doc(semantic_cases[4].doc, 1);
	ASSERT_EQ(comp.ncidrs, 4, "distinct policy CIDRs");
	ASSERT_EQ(comp.cidrs[0].prefix, 0, "0.0.0.0/0 sorts first");
	ASSERT_EQ(comp.cidrs[3].addr.family, AF_INET6, "IPv6 after IPv4");
	ASSERT_EQ(comp.cidrs[3].identity, B + 3, "fc00::/7 identity");
	sm_addr_parse("10.1.2.3", &a);
	ASSERT_EQ(sm_policy_cidr_identity(&comp, &a), B + 2, "10.1.2.3: most specific");
	sm_addr_parse("10.2.0.1", &a);
	ASSERT_EQ(sm_policy_cidr_identity(&comp, &a), B + 1, "10.2.0.1");
	sm_addr_parse("192.168.1.1", &a);
	ASSERT_EQ(sm_policy_cidr_identity(&comp, &a), B + 0, "192.168.1.1: the /0");
	sm_addr_parse("fc00::1", &a);
	ASSERT_EQ(sm_policy_cidr_identity(&comp, &a), B + 3, "fc00::1");
	sm_addr_parse("2001:db8::1", &a);
	ASSERT_EQ(sm_policy_cidr_identity(&comp, &a), 0, "no IPv6 /0");
	ASSERT_EQ(comp.unmatched_patterns, 0, "no unmatched patterns");

	compile_doc(semantic_cases[7].doc, 1);
	ASSERT_EQ(comp.unmatched_patterns, 1, "unmatched patterns");
	ASSERT_STR_EQ(comp.unmatched_example, "spiffe://nowhere.org/*", "unmatched example");
}

/* Every selector and source that names no catalog workload: its policy, rule and line. */
static void test_unmatched_references(void **state)
{
	static const char doc[] = "policies:\n"				   /* 1 */
				  "  - name: ghost\n"			   /* 2 */
				  "    selector: {spiffe: '" ID_DB "x'}\n" /* 3 */
				  "    rules: [{action: ALLOW, from: ['spiffe://nowhere.org/*']}]\n"
				  "  - name: deny-typo\n"			       /* 5 */
				  "    selector: {spiffe: " ID_WEB "}\n"	       /* 6 */
				  "    rules:\n"				       /* 7 */
				  "      - action: ALLOW\n"			       /* 8 */
				  "        from: [any, 'spiffe://example.org/ns/*']\n" /* 9 */
				  "      - action: DENY\n"			       /* 10 */
				  "        from:\n"				       /* 11 */
				  "          - " ID_API "\n"			       /* 12 */
				  "          - " ID_API "i\n";			       /* 13 */
	const struct sm_policy_unmatched *u;
	char buf[SM_SPIFFE_MAX + 128];
	struct sm_error err = {{0}};

	load_catalog(catalog_yaml);
	compile_doc(doc, 1);
	ASSERT_EQ(comp.nunmatched, 3, "unmatched references");
	ASSERT_EQ(comp.unmatched_patterns, 3, "the count agrees");
	/* in the document's order, whatever the policies' names */
	u = &comp.unmatched[0];
	ASSERT_STR_EQ(u->policy, "ghost", "0: policy");
	ASSERT_EQ(u->rule, -1, "0: the selector");
	ASSERT_EQ(u->line, 3, "0: line");
	ASSERT_EQ(u->pattern, false, "0: an exact ID");
	ASSERT_STR_EQ(u->spiffe, ID_DB "x", "0: the ID");
	u = &comp.unmatched[1];
	ASSERT_STR_EQ(u->policy, "ghost", "1: policy");
	ASSERT_EQ(u->rule, 0, "1: rules[0]");
	ASSERT_EQ(u->line, 4, "1: line");
	ASSERT_EQ(u->pattern, true, "1: a pattern");
	ASSERT_STR_EQ(u->spiffe, "spiffe://nowhere.org/*", "1: the pattern");
	u = &comp.unmatched[2];
	ASSERT_STR_EQ(u->policy, "deny-typo", "2: policy");
	ASSERT_EQ(u->rule, 1, "2: rules[1], the DENY");
	ASSERT_EQ(u->line, 13, "2: the line the misspelt ID is on");
	ASSERT_EQ(u->pattern, false, "2: an exact ID");
	ASSERT_STR_EQ(u->spiffe, ID_API "i", "2: the ID");
	ASSERT_STR_EQ(sm_policy_unmatched_format(&comp.unmatched[0], buf, sizeof(buf)),
		      "policy 'ghost' selector: SPIFFE ID '" ID_DB
		      "x' names no workload of the catalog",
		      "selector, for people");
	ASSERT_STR_EQ(sm_policy_unmatched_format(&comp.unmatched[1], buf, sizeof(buf)),
		      "policy 'ghost' rules[0]: pattern 'spiffe://nowhere.org/*' matches no "
		      "workload of the catalog yet",
		      "pattern, for people");
	ASSERT_STR_EQ(sm_policy_unmatched_format(u, buf, sizeof(buf)),
		      "policy 'deny-typo' rules[1]: source '" ID_API
		      "i' names no workload of the catalog",
		      "source, for people");

	/* a copy of the set keeps the lines: the daemon compiles merged copies */
	ASSERT_EQ(sm_policy_set_copy(&set, &set2), 0, "copy");
	sm_policy_compiled_free(&comp2);
	ASSERT_EQ(sm_policy_compile(&set2, &cat, 1, 0, &comp2, &err), 0, err.msg);
	ASSERT_EQ(comp2.nunmatched, 3, "copy: unmatched references");
	ASSERT_EQ(comp2.unmatched[0].line, 3, "copy: selector line");
	ASSERT_EQ(comp2.unmatched[2].line, 13, "copy: source line");

	compile_doc(semantic_cases[0].doc, 1);
	ASSERT_EQ(comp.nunmatched, 0, "every reference matches");
}

static void test_describe_and_format(void **state)
{
	struct sm_policy_rule_info info;
	char buf[512];

	load_catalog(catalog_yaml);
	compile_doc(semantic_cases[1].doc, 3);
	ASSERT_EQ(sm_policy_describe(&comp, 2, &info), 0, "rule 2");
	ASSERT_STR_EQ(info.policy, "b-deny", "rule 2 policy (name order)");
	ASSERT_EQ(info.rule_index, 0, "rule 2 index");
	ASSERT_EQ(info.action, SM_POLICY_RULE_DENY, "rule 2 action");
	ASSERT_EQ(info.line, 4, "rule 2 line");
	ASSERT_EQ(sm_policy_set_describe(&set, 2, &info), 0, "set: rule 2");
	ASSERT_STR_EQ(info.policy, "b-deny", "set: rule 2 policy");
	ASSERT_EQ(info.line, 4, "set: rule 2 line");
	ASSERT_EQ(sm_policy_describe(&comp, 3, &info), -ENOENT, "no rule 3");
	ASSERT_EQ(sm_policy_set_describe(&set, 0, &info), -ENOENT, "no rule 0");

	ASSERT_STR_EQ(sm_policy_entry_format(&comp, NULL, &comp.entries[1], buf, sizeof(buf)),
		      "deny src=" ID_API " dst=" ID_WEB " port=any rule=b-deny#0", "entry 1");
	ASSERT_STR_EQ(sm_policy_entry_format(&comp, NULL, &comp.entries[2], buf, sizeof(buf)),
		      "deny src=default dst=" ID_WEB " port=any rule=default-deny", "fallback");
	ASSERT_STR_EQ(sm_policy_identity_name(&comp, NULL, 9999, buf, sizeof(buf)), "identity 9999",
		      "unknown identity");
	ASSERT_STR_EQ(sm_policy_identity_name(NULL, &cat, WEB, buf, sizeof(buf)), ID_WEB,
		      "identity named through the catalog");
}

/* ---- bad input ---- */

struct bad_case {
	const char *doc;
	unsigned int line;
	const char *what; /* part of the message saying what is wrong */
	const char *fix;  /* part saying what to do */
};

#define HEAD                                                                                       \
	"policies:\n"                                                                              \
	"  - name: p\n"                                                                            \
	"    selector: {spiffe: " ID_WEB "}\n"
#define RULES1	   "    rules: [{action: ALLOW, from: [any]}]\n"
#define RULE(from) "    rules: [{action: ALLOW, from: [" from "]}]\n"
#define SEL(spiffe)                                                                                \
	"policies:\n"                                                                              \
	"  - name: p\n"                                                                            \
	"    selector: {spiffe: '" spiffe "'}\n" RULES1

static const struct bad_case bad_cases[] = {
	{"", 1, "empty", "policies: []"},
	{"- a\n", 1, "expected a mapping", "docs/policy.md"},
	{"policies: []\nextra: 1\n", 2, "unknown key 'extra'", "known keys: policies"},
	{"other: 1\n", 1, "unknown key 'other'", "known keys: policies"},
	{"policies: 3\n", 1, "expected a list", "- name:"},
	{"policies: [3]\n", 1, "expected a mapping", "- name:"},
	{HEAD RULES1 "    color: red\n", 5, "unknown key 'color'",
	 "known keys: name, selector, rules, description"},
	{"policies:\n  - selector: {spiffe: " ID_WEB "}\n" RULES1, 2, "missing required key 'name'",
	 "lowercase"},
	{"policies:\n  - name: [a]\n    selector: {spiffe: " ID_WEB "}\n" RULES1, 2,
	 "name: expected a single value, found a list", "lowercase"},
	{"policies:\n  - name: Web_API\n    selector: {spiffe: " ID_WEB "}\n" RULES1, 2,
	 "'Web_API' is not a valid policy name", "e.g. web-from-api"},
	{"policies:\n  - name: -web\n    selector: {spiffe: " ID_WEB "}\n" RULES1, 2,
	 "not a valid policy name", "starting and ending with a letter or digit"},
	{HEAD RULES1 "  - name: q\n    selector: {spiffe: " ID_WEB "}\n" RULES1 "  - name: p\n"
		     "    selector: {spiffe: " ID_WEB "}\n" RULES1,
	 8, "policy 'p' is defined twice (lines 2 and 8", "rename or remove one"},
	{"policies:\n  - name: p\n" RULES1, 2, "missing required key 'selector'",
	 "selector: {spiffe:"},
	{"policies:\n  - name: p\n    selector: " ID_WEB "\n" RULES1, 3,
	 "selector: expected a mapping, found a single value", "selector: {spiffe:"},
	{"policies:\n  - name: p\n    selector: {spifee: " ID_WEB "}\n" RULES1, 3,
	 "unknown key 'spifee'", "known keys: spiffe, ports"},
	{SEL("spiffe://example.org/ns/*/sa"), 3, "'*' may only be the whole last path segment",
	 "spiffe://example.org/ns/prod/*"},
	{SEL("spiffe://example.org/ns/**"), 3, "'*' may only be", "or an ID prefix followed by /*"},
	{SEL("spiffe://example.org/ns/"), 3, "it ends with '/'", "spiffe://example.org/*"},
	{SEL("spiffe://Example.org/ns"), 3, "not a valid SPIFFE ID", "write an exact ID"},
	{SEL("spiffe://exa mple.org/*"), 3, "before '/*' is not a valid SPIFFE ID",
	 "write an exact ID"},
	{SEL("spiffe://example.org"), 3, "only a trust domain", "spiffe://TRUST-DOMAIN/*"},
	{HEAD, 2, "missing required key 'rules'", "action: ALLOW"},
	{HEAD "    rules: []\n", 4, "rules: empty", "action: ALLOW"},
	{HEAD "    rules: {action: ALLOW}\n", 4, "rules: expected a list, found a mapping",
	 "action: ALLOW"},
	{HEAD "    rules: [ALLOW]\n", 4, "rules[0]: expected a mapping", "action: ALLOW"},
	{HEAD "    rules:\n      - action: ALLOW\n        form: [any]\n", 6, "unknown key 'form'",
	 "known keys: action, from, ports, description"},
	{HEAD "    rules:\n      - from: [any]\n", 5, "missing required key 'action'",
	 "ALLOW, DENY or AUDIT"},
	{HEAD "    rules:\n      - {action: allow, from: [any]}\n", 5,
	 "action 'allow' is not an action", "in capitals"},
	{HEAD "    rules:\n      - action: ALLOW\n", 5, "missing required key 'from'", "CIDR"},
	{HEAD "    rules:\n      - action: ALLOW\n        from: []\n", 6, "from: empty", "or any"},
	{HEAD "    rules:\n      - action: ALLOW\n        from: any\n", 6,
	 "from: expected a list, found a single value", "or any"},
	{HEAD RULE("[any]"), 4, "from: expected a single value, found a list", "or any"},
	{HEAD RULE("10.1.2.0/8"), 4, "CIDR '10.1.2.0/8' has host bits set",
	 "write the network address: 10.0.0.0/8"},
	{HEAD RULE("\"fc00::1/7\""), 4, "host bits set", "fc00::/7"},
	{HEAD RULE("10.0.0.300/8"), 4, "'10.0.0.300' is not an IPv4 or IPv6 address", "or any"},
	{HEAD RULE("10.0.0.0/33"), 4, "prefix length is not a number 0..32", "10.0.0.0/8"},
	{HEAD RULE("10.1.2.3"), 4, "is an address, not a CIDR", "write 10.1.2.3/32"},
	{HEAD RULE("web"), 4, "'web' is not a source", "spiffe://example.org/ns/prod/*"},
	{HEAD RULE("ANY"), 4, "'ANY' is not a source", "or any"},
	{HEAD RULE("'spiffe://example.org/ns/*/x'"), 4, "'*' may only be", "prefix followed by /*"},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], ports: [0]}\n", 5,
	 "impossible port 0", "1..65535"},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], ports: [70000]}\n", 5,
	 "impossible port 70000", "1..65535"},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], ports: [\"9010-9000\"]}\n", 5,
	 "impossible port range 9010-9000", "\"9000-9010\""},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], ports: [http]}\n", 5,
	 "'http' is not a port", "\"9000-9010\""},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], ports: [\"80-\"]}\n", 5,
	 "'80-' is not a port", "1..65535"},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], ports: 8080}\n", 5,
	 "ports: expected a list, found a single value", "ports: [8080"},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], ports: []}\n", 5, "ports: empty",
	 "omit ports to mean every port"},
	{"policies:\n  - name: p\n    selector: {spiffe: " ID_WEB
	 ", ports: [8080, \"9000-9010\"]}\n"
	 "    rules:\n      - action: ALLOW\n        from: [any]\n        ports: [22, 9011]\n",
	 7, "rule ports 22, 9011 never match the selector's ports 8080, 9000-9010",
	 "drop the rule's ports"},
	{HEAD "    rules:\n      - {action: ALLOW, from: [any], description: [a]}\n", 5,
	 "description: expected a single value", "free text"},
	{"policies: [\n", 2, "", ""},
};

static void test_bad_input(void **state)
{
	struct sm_error err;
	char prefix[32], what[64];

	for (size_t i = 0; i < SM_ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *bc = &bad_cases[i];

		snprintf(what, sizeof(what), "bad case %zu", i);
		ASSERT_EQ(parse(&set, bc->doc, &err), -EINVAL, what);
		ASSERT_EQ(set.npolicies, 0, "nothing parsed on error");
		snprintf(prefix, sizeof(prefix), "pol.yaml:%u: ", bc->line);
		if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
			fail_msg("%s: '%s' does not start with '%s'", what, err.msg, prefix);
		ASSERT_HAS(err.msg, bc->what, err.msg);
		ASSERT_HAS(err.msg, bc->fix, err.msg);
		if (bc->fix[0])
			ASSERT_HAS(err.msg, "(", "the message has a fix in parentheses");
	}
}

/*
 * Text that is not UTF-8, holds a NUL or a control character is refused at
 * its line and column (characters from 1), never truncated or placed on line 1.
 */
#define DOC12                                                                                      \
	"policies:\n"                                                                              \
	"  - name: web-from-api\n"                                                                 \
	"    selector:\n"                                                                          \
	"      spiffe: " ID_WEB "\n"                                                               \
	"      ports: [8080]\n"                                                                    \
	"    rules:\n"                                                                             \
	"      - action: ALLOW\n"                                                                  \
	"        from:\n"                                                                          \
	"          - " ID_API "\n"                                                                 \
	"          - spiffe://example.org/ns/prod/*\n"                                             \
	"        ports: [8080]\n"                                                                  \
	"      - action: AUDIT\n"
/* line 13: the value starts at column 23 */
#define LINE13(value) "        description: \"" value "\"\n        from: [any]\n"

struct text_case {
	const char *doc;
	size_t len; /* 0: strlen(doc); otherwise the document holds a NUL */
	const char *prefix;
	const char *what, *fix;
};

static const struct text_case text_cases[] = {
	{DOC12 LINE13("caf\xff"), 0, "pol.yaml:13:26: ", "not valid UTF-8", "UTF-8"},
	{DOC12 LINE13("caf\xc3"), 0, "pol.yaml:13:26: ", "not valid UTF-8", "iconv"},
	{DOC12 LINE13("\xc3\xa9t\xe9"), 0, "pol.yaml:13:25: ", "not valid UTF-8", "iconv"},
	{DOC12 LINE13("\xc0\xaf"), 0, "pol.yaml:13:23: ", "not valid UTF-8", "UTF-8"},
	{DOC12 LINE13("\xed\xa0\x80"), 0, "pol.yaml:13:23: ", "not valid UTF-8", "UTF-8"},
	{DOC12 LINE13("\xf4\x90\x80\x80"), 0, "pol.yaml:13:23: ", "not valid UTF-8", "UTF-8"},
	{DOC12 LINE13("bell\a"), 0, "pol.yaml:13:27: ", "control character U+0007", "remove"},
	{DOC12 LINE13("\xc2\x9b"), 0, "pol.yaml:13:23: ", "control character U+009B", "remove"},
	{"policies:\n\0  - name: p\n", 23, "pol.yaml:2:1: ", "NUL", "remove"},
	{DOC12 LINE13("a\0b"), sizeof(DOC12 LINE13("a\0b")) - 1, "pol.yaml:13:24: ", "NUL",
	 "UTF-16"},
	{"\xff\xfep\0o\0l\0", 8, "pol.yaml:1:1: ", "UTF-16", "iconv -f UTF-16 -t UTF-8"},
	{"\xfe\xff\0p\0o", 6, "pol.yaml:1:1: ", "UTF-16", "iconv -f UTF-16 -t UTF-8"},
	{"\xff\xfe\0\0p\0\0\0", 8, "pol.yaml:1:1: ", "UTF-32", "iconv -f UTF-32 -t UTF-8"},
	{"\0\0\xfe\xff\0\0\0p", 8, "pol.yaml:1:1: ", "UTF-32", "iconv -f UTF-32 -t UTF-8"},
	{"\x89PNG\r\n\x1a\n", 0, "pol.yaml:1:1: ", "not valid UTF-8", "UTF-8"},
};

static void test_bad_text(void **state)
{
	struct sm_error err;
	char what[96];

	for (size_t i = 0; i < SM_ARRAY_SIZE(text_cases); i++) {
		const struct text_case *tc = &text_cases[i];
		size_t len = tc->len ? tc->len : strlen(tc->doc);

		snprintf(what, sizeof(what), "text case %zu", i);
		sm_policy_set_free(&set);
		err.msg[0] = '\0';
		ASSERT_EQ(sm_policy_set_parse(&set, tc->doc, len, "pol.yaml", &err), -EINVAL, what);
		ASSERT_EQ(set.npolicies, 0, "nothing parsed on error");
		if (strncmp(err.msg, tc->prefix, strlen(tc->prefix)) != 0)
			fail_msg("%s: '%s' does not start with '%s'", what, err.msg, tc->prefix);
		ASSERT_HAS(err.msg, tc->what, err.msg);
		ASSERT_HAS(err.msg, tc->fix, err.msg);
		/* the check the CLI makes before sending gives the same answer */
		err.msg[0] = '\0';
		ASSERT_EQ(sm_yaml_text_check(tc->doc, len, "pol.yaml", &err), -EINVAL, what);
		if (strncmp(err.msg, tc->prefix, strlen(tc->prefix)) != 0)
			fail_msg("%s: '%s' does not start with '%s'", what, err.msg, tc->prefix);
	}
	/* what YAML allows stays allowed: a UTF-8 BOM, tabs, CRLF, NEL, any printable character */
	ASSERT_EQ(parse(&set,
			"\xef\xbb\xbf" DOC12 LINE13("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9d"
						    "\t\xc2\x85"),
			&err),
		  0, err.msg);
	ASSERT_HAS(set.policies[0].rules[1].description, "caf\xc3\xa9", "UTF-8 kept");
	ASSERT_EQ(parse(&set,
			"policies:\r\n  - name: p\r\n    selector: {spiffe: " ID_WEB "}\r\n" RULES1,
			&err),
		  0, err.msg);
	ASSERT_EQ(sm_yaml_text_check(DOC12, strlen(DOC12), "pol.yaml", &err), 0, err.msg);
}

static void test_good_edge_cases(void **state)
{
	struct sm_error err;

	ASSERT_EQ(parse(&set, "policies: []\n", &err), 0, err.msg);
	ASSERT_EQ(set.npolicies, 0, "empty set");
	ASSERT_EQ(parse(&set, "policies:\n", &err), 0, err.msg);
	ASSERT_EQ(set.npolicies, 0, "null policies is an empty set");
	ASSERT_EQ(parse(&set,
			HEAD
			"    rules:\n      - {action: ALLOW, from: [any], ports: [\"1-65535\", "
			"0x50, 8080]}\n",
			&err),
		  -EINVAL, "hex port refused");
	ASSERT_EQ(parse(&set,
			HEAD
			"    rules:\n      - {action: AUDIT, from: [any], ports: [\"1-65535\", "
			"\"80\", 8080]}\n    description: ''\n",
			&err),
		  0, err.msg);
	ASSERT_EQ(set.policies[0].rules[0].nports, 3, "ports kept as written");
	ASSERT_EQ(set.policies[0].description == NULL, 1, "an empty description is none");
	ASSERT_EQ(parse(&set, HEAD RULE("'spiffe://example.org/*', 0.0.0.0/0, \"::/0\""), &err), 0,
		  err.msg);
	ASSERT_EQ(set.policies[0].rules[0].from[0].kind, SM_POLICY_PEER_PATTERN, "pattern");
	ASSERT_EQ(set.policies[0].rules[0].from[2].kind, SM_POLICY_PEER_CIDR, "::/0");
	ASSERT_EQ(parse(&set,
			"policies:\n  - {name: b, selector: {spiffe: " ID_WEB "}, rules: "
			"[{action: DENY, from: [any]}]}\n  - {name: a, selector: {spiffe: " ID_DB
			"}, rules: [{action: DENY, from: [any]}]}\n",
			&err),
		  0, err.msg);
	ASSERT_STR_EQ(set.policies[0].name, "a", "sorted by name");
	ASSERT_NOT_NULL(sm_policy_set_find(&set, "b"), "find b");
	ASSERT_EQ(sm_policy_set_find(&set, "c") == NULL, 1, "no c");
}

/* ---- JSON, round trips, set operations ---- */

static const char rich_doc[] =
	"policies:\n"
	"  - name: web-from-api\n"
	"    selector:\n"
	"      spiffe: " ID_WEB "\n"
	"      ports: [8080, \"9000-9010\"]\n"
	"    rules:\n"
	"      - action: ALLOW\n"
	"        from:\n"
	"          - " ID_API "\n"
	"          - spiffe://example.org/ns/prod/*\n"
	"          - 10.0.0.0/8\n"
	"          - \"fc00::/7\"\n"
	"          - any\n"
	"        ports: [8080]\n"
	"        description: \"quotes \\\" and \\\\ backslash,\\nnew line, tab\\t, caf\\u00e9, "
	"\\u2028 sep: # not a comment\"\n"
	"      - action: AUDIT\n"
	"        from: ['spiffe://example.org/*']\n"
	"    description: 'free text: {not: a map}, [not a list]'\n"
	"  - name: db-deny\n"
	"    selector: {spiffe: 'spiffe://example.org/ns/prod/sa/db'}\n"
	"    rules: [{action: DENY, from: [\"10.1.0.0/16\"]}]\n";

static const char rich_json[] =
	"{\"policies\": [\n"
	" {\"name\": \"db-deny\", \"selector\": {\"spiffe\": \"" ID_DB "\"},\n"
	"  \"rules\": [{\"action\": \"DENY\", \"from\": [\"10.1.0.0/16\"]}]},\n"
	" {\"name\": \"web-from-api\",\n"
	"  \"selector\": {\"spiffe\": \"" ID_WEB "\", \"ports\": [8080, \"9000-9010\"]},\n"
	"  \"rules\": [\n"
	"   {\"action\": \"ALLOW\", \"from\": [\"" ID_API
	"\", \"spiffe://example.org/ns/prod/*\",\n"
	"     \"10.0.0.0/8\", \"fc00::/7\", \"any\"], \"ports\": [8080],\n"
	"    \"description\": \"quotes \\\" and \\\\ backslash,\\nnew line, tab\\t, caf\\u00e9, "
	"\\u2028 sep: # not a comment\"},\n"
	"   {\"action\": \"AUDIT\", \"from\": [\"spiffe://example.org/*\"]}],\n"
	"  \"description\": \"free text: {not: a map}, [not a list]\"}]}\n";

static void test_json_and_round_trip(void **state)
{
	struct sm_error err;

	load_catalog(catalog_yaml);
	ASSERT_EQ(parse(&set, rich_doc, &err), 0, err.msg);
	ASSERT_EQ(parse(&set2, rich_json, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_set_equal(&set, &set2), 1, "JSON and YAML give the same set");
	ASSERT_HAS(set.policies[1].rules[0].description, "\xe2\x80\xa8", "U+2028 kept");

	text = sm_policy_set_to_yaml(&set);
	ASSERT_NOT_NULL(text, "to YAML");
	ASSERT_EQ(parse(&set3, text, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_set_equal(&set, &set3), 1, "YAML round trip");
	text2 = sm_policy_set_to_json(&set);
	ASSERT_NOT_NULL(text2, "to JSON");
	ASSERT_EQ(parse(&set3, text2, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_set_equal(&set, &set3), 1, "JSON round trip");

	/* equal sets compile to the same entries */
	ASSERT_EQ(sm_policy_compile(&set, &cat, 1, 0, &comp, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_compile(&set2, &cat, 1, 0, &comp2, &err), 0, err.msg);
	ASSERT_EQ(comp.nentries, comp2.nentries, "same entry count");
	ASSERT_EQ(memcmp(comp.entries, comp2.entries, comp.nentries * sizeof(*comp.entries)), 0,
		  "same entries");
	ctx = sm_policy_ctx_new(&set, &cat);
	ASSERT_NOT_NULL(ctx, "context");
	ASSERT_GE(cross_check(), 1000, "rich document");

	free(text);
	sm_policy_set_free(&set3);
	text = sm_policy_set_to_yaml(&set3);
	ASSERT_STR_EQ(text, "policies: []\n", "empty set as YAML");
	ASSERT_EQ(parse(&set2, text, &err), 0, err.msg);
	ASSERT_EQ(set2.npolicies, 0, "empty round trip");
	free(text2);
	text2 = sm_policy_set_to_json(&set3);
	ASSERT_EQ(parse(&set2, text2, &err), 0, err.msg);
	ASSERT_EQ(set2.npolicies, 0, "empty JSON round trip");
}

/*
 * Names and descriptions that YAML reads as something else when written
 * plain (null, numbers, indicators, comments, breaks, quotes) survive
 * sm_policy_set_to_yaml(): the set is built in memory (no YAML quoting
 * involved), written as YAML, read back and compared, field by field as well
 * as with sm_policy_set_equal().
 */
static const char *const yaml_tricky_names[] = {
	"null", "true", "no", "on", "y", "123", "0x1f", "1e3", "0", "web-from-api",
};

static const char *const yaml_tricky_texts[] = {
	"key: value",
	"a:b",
	"ends with colon:",
	"\"double\" and 'single' quotes",
	"'",
	"\"",
	"back\\slash",
	"- leading dash",
	"-",
	"--- document marker",
	"...",
	"# not a comment",
	"text # not a comment either",
	"caf\xc3\xa9 \xc3\xbcn\xc3\xaf \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
	"",
	"null",
	"~",
	"true",
	"123",
	"  leading and trailing spaces  ",
	"line\nbreak",
	"two\n\nbreaks and trailing\n",
	"\ttab",
	"carriage\rreturn",
	"[not, a, list]",
	"{not: a map}",
	"*alias",
	"&anchor",
	"!tag",
	"%directive",
	"@at",
	"`backtick",
	"|",
	"> folded",
	"? question",
	"NEL\xc2\x85here",
	"line\xe2\x80\xa8separator and paragraph\xe2\x80\xa9separator",
	"\xef\xbb\xbf"
	"byte order mark",
};

static void yaml_round_trip_one(const char *name, const char *s)
{
	const char *want = s[0] ? s : NULL; /* an empty description is no description */
	struct sm_error err = {{0}};
	struct sm_policy *pol;
	char what[256];

	snprintf(what, sizeof(what), "name '%s', text '%s'", name, s);
	ASSERT_EQ(parse(&set,
			"policies:\n"
			"  - name: placeholder\n"
			"    selector: {spiffe: " ID_WEB "}\n"
			"    rules:\n"
			"      - action: ALLOW\n"
			"        from: [spiffe://example.org/ns/prod/*, fc00::/7, any, " ID_API
			"]\n",
			&err),
		  0, err.msg);
	pol = &set.policies[0];
	snprintf(pol->name, sizeof(pol->name), "%s", name);
	pol->description = want ? strdup(want) : NULL;
	pol->rules[0].description = want ? strdup(want) : NULL;

	free(text);
	text = sm_policy_set_to_yaml(&set);
	ASSERT_NOT_NULL(text, what);
	if (parse(&set2, text, &err) != 0)
		fail_msg("%s: the YAML written does not read back: %s\n%s", what, err.msg, text);
	ASSERT_EQ(sm_policy_set_equal(&set, &set2), 1, what);
	ASSERT_EQ(set2.npolicies, 1, what);
	ASSERT_STR_EQ(set2.policies[0].name, name, what);
	ASSERT_EQ(set2.policies[0].rules[0].nfrom, 4, what);
	ASSERT_STR_EQ(set2.policies[0].rules[0].from[3].spiffe, ID_API, what);
	if (want) {
		ASSERT_NOT_NULL(set2.policies[0].description, what);
		ASSERT_STR_EQ(set2.policies[0].description, want, what);
		ASSERT_NOT_NULL(set2.policies[0].rules[0].description, what);
		ASSERT_STR_EQ(set2.policies[0].rules[0].description, want, what);
	} else {
		ASSERT_EQ(set2.policies[0].description == NULL, 1, what);
	}
}

static void test_yaml_quoting_round_trip(void **state)
{
	char long_text[SM_POLICY_DESCRIPTION_MAX + 1];

	for (size_t i = 0; i < SM_ARRAY_SIZE(yaml_tricky_names); i++)
		yaml_round_trip_one(yaml_tricky_names[i], "plain words");
	for (size_t i = 0; i < SM_ARRAY_SIZE(yaml_tricky_texts); i++)
		yaml_round_trip_one("web", yaml_tricky_texts[i]);
	/* a long line with spaces: an emitter that folds it must fold it back the same */
	for (size_t i = 0; i < sizeof(long_text) - 1; i++)
		long_text[i] = i % 7 == 6 ? ' ' : (char) ('a' + i % 26);
	long_text[sizeof(long_text) - 1] = '\0';
	yaml_round_trip_one("long", long_text);
}

static void test_merge_remove(void **state)
{
	struct sm_error err;

	ASSERT_EQ(
		parse(&set,
		      "policies:\n"
		      "  - {name: c, selector: {spiffe: " ID_WEB "}, rules: [{action: DENY, from: "
		      "[any]}]}\n"
		      "  - {name: a, selector: {spiffe: " ID_WEB "}, rules: [{action: DENY, from: "
		      "[any]}]}\n",
		      &err),
		0, err.msg);
	ASSERT_EQ(
		parse(&set2,
		      "policies:\n"
		      "  - {name: c, selector: {spiffe: " ID_DB "}, rules: [{action: ALLOW, from: "
		      "[any]}]}\n"
		      "  - {name: b, selector: {spiffe: " ID_DB "}, rules: [{action: ALLOW, from: "
		      "[any]}]}\n",
		      &err),
		0, err.msg);
	ASSERT_EQ(sm_policy_set_merge(&set, &set2, &set3), 0, "merge");
	ASSERT_EQ(set3.npolicies, 3, "merged count");
	ASSERT_STR_EQ(set3.policies[0].name, "a", "merged 0");
	ASSERT_STR_EQ(set3.policies[1].name, "b", "merged 1 (added)");
	ASSERT_STR_EQ(set3.policies[2].name, "c", "merged 2");
	ASSERT_STR_EQ(set3.policies[2].selector, ID_DB, "c replaced by the incoming one");
	ASSERT_EQ(set3.policies[2].rules[0].action, SM_POLICY_RULE_ALLOW, "incoming rule");
	ASSERT_EQ(set.npolicies, 2, "current unchanged");

	sm_policy_set_free(&set2);
	ASSERT_EQ(sm_policy_set_remove(&set3, "b", &set2), 0, "remove b");
	ASSERT_EQ(set2.npolicies, 2, "after remove");
	ASSERT_STR_EQ(set2.policies[1].name, "c", "c kept");
	sm_policy_set_free(&set);
	ASSERT_EQ(sm_policy_set_remove(&set2, "zz", &set), -ENOENT, "remove absent");
	ASSERT_EQ(set.npolicies, 0, "nothing on -ENOENT");
	ASSERT_EQ(sm_policy_set_copy(&set2, &set), 0, "copy");
	ASSERT_EQ(sm_policy_set_equal(&set, &set2), 1, "copy equal");
}

/* ---- diff ---- */

static void test_diff(void **state)
{
	struct sm_error err;
	size_t len = 0;
	FILE *f;

	load_catalog(catalog_yaml);
	compile_doc(semantic_cases[0].doc, 1); /* {api, web, 8080} allow; fallback */
	ASSERT_EQ(parse(&set2, semantic_cases[0].doc, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_compile(&set2, &cat, 2, 0, &comp2, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_diff(&comp, &comp2, &diff), 0, "same policy, new revision");
	ASSERT_EQ(diff.added + diff.removed + diff.changed, 0, "revision alone is no change");
	sm_policy_diff_free(&diff);

	ASSERT_EQ(sm_policy_diff(NULL, &comp2, &diff), 0, "from nothing");
	ASSERT_EQ(diff.added, 2, "all added");
	sm_policy_diff_free(&diff);

	/* the port moves: one entry out, one in */
	ASSERT_EQ(parse(&set2,
			"policies:\n  - name: web-from-api\n    selector: {spiffe: " ID_WEB
			", ports: [8081]}\n    rules: [{action: ALLOW, from: [" ID_API "]}]\n",
			&err),
		  0, err.msg);
	sm_policy_compiled_free(&comp2);
	ASSERT_EQ(sm_policy_compile(&set2, &cat, 2, 0, &comp2, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_diff(&comp, &comp2, &diff), 0, "port moved");
	ASSERT_EQ(diff.added, 1, "port moved: added");
	ASSERT_EQ(diff.removed, 1, "port moved: removed");
	ASSERT_EQ(diff.changed, 0, "port moved: changed");
	sm_policy_diff_free(&diff);

	/* ALLOW becomes DENY: the entry changes, the default-deny fallback goes, a CIDR comes */
	ASSERT_EQ(parse(&set2,
			"policies:\n  - name: web-from-api\n    selector: {spiffe: " ID_WEB
			", ports: [8080]}\n    rules: [{action: DENY, from: [" ID_API
			", 10.0.0.0/8]}]\n",
			&err),
		  0, err.msg);
	sm_policy_compiled_free(&comp2);
	ASSERT_EQ(sm_policy_compile(&set2, &cat, 2, 0, &comp2, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_diff(&comp, &comp2, &diff), 0, "allow to deny");
	ASSERT_EQ(diff.changed, 1, "allow to deny: changed");
	ASSERT_EQ(diff.removed, 1, "allow to deny: fallback removed");
	ASSERT_EQ(diff.added, 1, "allow to deny: the CIDR's entry");
	ASSERT_EQ(diff.cidrs_added, 1, "allow to deny: CIDR added");
	f = open_memstream(&text, &len);
	ASSERT_NOT_NULL(f, "memstream");
	sm_policy_diff_print(f, &diff, &comp, &comp2, NULL);
	fclose(f);
	ASSERT_HAS(text,
		   "~ deny src=" ID_API " dst=" ID_WEB " port=8080 rule=web-from-api#0 (was "
		   "allow rule=web-from-api#0)\n",
		   "changed line");
	ASSERT_HAS(text, "- deny src=default dst=" ID_WEB " port=any rule=default-deny\n",
		   "removed line");
	ASSERT_HAS(text, "+ deny src=10.0.0.0/8 dst=" ID_WEB " port=8080 rule=web-from-api#0\n",
		   "added line");
	ASSERT_HAS(text, "+ cidr 10.0.0.0/8 identity 16777216\n", "cidr line");
}

/* ---- capacity and catalog changes ---- */

static void test_capacity_and_recompile(void **state)
{
	static const char doc[] =
		"policies:\n"
		"  - name: wide\n"
		"    selector: {spiffe: " ID_WEB "}\n"
		"    rules: [{action: ALLOW, from: [" ID_API "], ports: [\"1000-1999\"]}]\n";
	static const char doc_pattern[] =
		"policies:\n"
		"  - name: prod\n"
		"    selector: {spiffe: 'spiffe://example.org/ns/prod/*'}\n"
		"    rules: [{action: ALLOW, from: [any]}]\n";
	struct sm_error err;

	load_catalog(catalog_yaml);
	ASSERT_EQ(parse(&set, doc, &err), 0, err.msg);
	ASSERT_EQ(sm_policy_compile(&set, &cat, 1, 500, &comp, &err), -E2BIG, "over capacity");
	ASSERT_HAS(err.msg, "the policy needs 1001 kernel entries, the map holds 500", err.msg);
	ASSERT_HAS(err.msg, "raise datapath.max_policy_entries or narrow the rules", err.msg);
	ASSERT_EQ(comp.nentries, 0, "nothing compiled when refused");
	ASSERT_EQ(sm_policy_compile(&set, &cat, 1, 1001, &comp, &err), 0, err.msg);
	ASSERT_EQ(comp.nentries, 1001, "exactly at capacity");
	sm_policy_compiled_free(&comp);

	compile_doc(doc_pattern, 1);
	ASSERT_EQ(comp.nentries, 6, "3 prod identities x (any + fallback)");
	load_catalog("nodes: [{name: n1, addresses: [10.0.0.1]}]\n"
		     "workloads:\n"
		     "  - {name: web, node: n1, cgroup: w, spiffe_id: '" ID_WEB "'}\n"
		     "  - {name: new, node: n1, cgroup: x, spiffe_id: "
		     "'spiffe://example.org/ns/prod/sa/new'}\n");
	sm_policy_compiled_free(&comp);
	ASSERT_EQ(sm_policy_recompile(&set, &cat, 2, 0, &comp, &err), 0, err.msg);
	ASSERT_EQ(comp.nentries, 4, "patterns re-expanded over the new catalog");
	ASSERT_EQ(comp.entries[0].value.revision, 2, "new revision");
}

/* ---- random documents: the compiler against the reference semantics ---- */

static uint64_t rng_state = 0x5eed5eedULL;

static unsigned int rnd(unsigned int n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned int) (rng_state % n);
}

static void rnd_ports(char *buf, size_t len)
{
	static const char *const ports[] = {"22",	 "80",	"8080",	     "\"8000-8100\"",
					    "\"79-81\"", "443", "\"1-1024\""};
	unsigned int n = 1 + rnd(2);
	size_t off = (size_t) snprintf(buf, len, "[");

	for (unsigned int i = 0; i < n; i++)
		off += (size_t) snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
					 ports[rnd(SM_ARRAY_SIZE(ports))]);
	snprintf(buf + off, len - off, "]");
}

static void random_doc(char *doc, size_t len)
{
	static const char *const selectors[] = {
		ID_WEB, "'spiffe://example.org/ns/prod/*'",   "'spiffe://example.org/*'",
		ID_DB,	"spiffe://example.org/ns/dev/sa/api", "'spiffe://other.org/*'",
	};
	static const char *const peers[] = {
		"any",
		ID_API,
		"'spiffe://example.org/ns/prod/*'",
		"'spiffe://example.org/ns/dev/*'",
		"spiffe://other.org/sa/x",
		"10.0.0.0/8",
		"10.1.0.0/16",
		"10.1.2.0/24",
		"\"fc00::/7\"",
		"\"fc00:1::/32\"",
		"0.0.0.0/0",
		"'spiffe://nowhere.org/*'",
		ID_WEB,
	};
	static const char *const actions[] = {"ALLOW", "ALLOW", "DENY", "AUDIT"};
	unsigned int npol = 1 + rnd(4);
	size_t off = (size_t) snprintf(doc, len, "policies:\n");
	char ports[96];

	for (unsigned int p = 0; p < npol; p++) {
		unsigned int nrules = 1 + rnd(3);

		off += (size_t) snprintf(doc + off, len - off,
					 "  - name: p%u\n    selector:\n      spiffe: %s\n", p,
					 selectors[rnd(SM_ARRAY_SIZE(selectors))]);
		if (rnd(2)) {
			rnd_ports(ports, sizeof(ports));
			off += (size_t) snprintf(doc + off, len - off, "      ports: %s\n", ports);
		}
		off += (size_t) snprintf(doc + off, len - off, "    rules:\n");
		for (unsigned int r = 0; r < nrules; r++) {
			unsigned int nfrom = 1 + rnd(3);

			off += (size_t) snprintf(doc + off, len - off,
						 "      - action: %s\n        from: [",
						 actions[rnd(SM_ARRAY_SIZE(actions))]);
			for (unsigned int f = 0; f < nfrom; f++)
				off += (size_t) snprintf(doc + off, len - off, "%s%s",
							 f ? ", " : "",
							 peers[rnd(SM_ARRAY_SIZE(peers))]);
			off += (size_t) snprintf(doc + off, len - off, "]\n");
			if (rnd(3) == 0) {
				rnd_ports(ports, sizeof(ports));
				off += (size_t) snprintf(doc + off, len - off,
							 "        ports: %s\n", ports);
			}
		}
	}
}

static void test_random_documents(void **state)
{
	struct sm_error err;
	size_t docs = 0, checked = 0;
	char doc[4096];

	load_catalog(catalog_yaml);
	for (int i = 0; i < 400 && docs < 250; i++) {
		random_doc(doc, sizeof(doc));
		if (parse(&set, doc, &err)) {
			/* only "rule ports never match the selector's" can be wrong here */
			ASSERT_HAS(err.msg, "never match", err.msg);
			continue;
		}
		sm_policy_compiled_free(&comp);
		ASSERT_EQ(sm_policy_compile(&set, &cat, 9, 0, &comp, &err), 0, err.msg);
		sm_policy_ctx_free(ctx);
		ctx = sm_policy_ctx_new(&set, &cat);
		ASSERT_NOT_NULL(ctx, "context");
		checked += cross_check();
		docs++;
	}
	ASSERT_GE(docs, 200, "random documents compiled");
	print_message("[ info     ] %zu random documents, %zu lookups == evaluations\n", docs,
		      checked);
}

/* ---- scale ---- */

static void test_compile_50k(void **state)
{
	const unsigned int nwl = 250, ndst = 40;
	size_t cap = 64 * 1024, off;
	struct timespec t0, t1;
	struct sm_error err;
	char *buf = malloc(cap);
	double ms;

	ASSERT_NOT_NULL(buf, "buffer");
	off = (size_t) snprintf(buf, cap,
				"nodes: [{name: n1, addresses: [10.0.0.1]}]\nworkloads:\n");
	for (unsigned int i = 0; i < nwl; i++)
		off += (size_t) snprintf(buf + off, cap - off,
					 "  - {name: w%u, node: n1, cgroup: c%u, spiffe_id: "
					 "'spiffe://example.org/ns/perf/sa/w%03u'}\n",
					 i, i, i);
	load_catalog(buf);
	off = (size_t) snprintf(buf, cap, "policies:\n");
	for (unsigned int d = 0; d < ndst; d++)
		off += (size_t) snprintf(
			buf + off, cap - off,
			"  - name: p%03u\n"
			"    selector: {spiffe: 'spiffe://example.org/ns/perf/sa/w%03u',"
			" ports: [80, 443, 8080, 8443, 9090]}\n"
			"    rules:\n"
			"      - {action: ALLOW, from: ['spiffe://example.org/ns/perf/*']}\n"
			"      - {action: DENY, from: ['spiffe://example.org/ns/perf/sa/w%03u']}\n",
			d, d, (d + 1) % nwl);
	ASSERT_EQ(parse(&set, buf, &err), 0, err.msg);
	free(buf);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(sm_policy_compile(&set, &cat, 1, 0, &comp, &err), 0, err.msg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
	print_message("[ info     ] compiled %zu entries in %.1f ms\n", comp.nentries, ms);
	/* each destination: 250 sources x 5 ports (one of them denied), and the fallback */
	ASSERT_EQ(comp.nentries, ndst * (250 * 5 + 1), "entries");
	ASSERT_GE(comp.nentries, 50000, "at least 50,000 entries");
	if (ms > 5000)
		fail_msg("compiling %zu entries took %.0f ms (want well under 1 s)", comp.nentries,
			 ms);
	ASSERT_EQ(sm_policy_compile(&set, &cat, 1, 50000, &comp2, &err), -E2BIG,
		  "refused at 50000");
	ASSERT_HAS(err.msg, "needs 50040 kernel entries", err.msg);

	ctx = sm_policy_ctx_new(&set, &cat);
	ASSERT_NOT_NULL(ctx, "context");
	for (uint32_t s = 255; s < 256 + nwl + 1; s += 7) {
		for (uint32_t d = 255; d < 256 + ndst + 2; d += 3) {
			static const uint16_t ports[] = {80, 81, 443, 9090, 12345};

			for (size_t p = 0; p < SM_ARRAY_SIZE(ports); p++) {
				struct sm_policy_decision got, want;

				sm_policy_lookup(&comp, s, d, ports[p], &got);
				sm_policy_eval(&set, ctx, s, d, ports[p], &want);
				ASSERT_EQ(got.action, want.action, "50k: action");
				ASSERT_EQ(got.rule_id, want.rule_id, "50k: rule");
				ASSERT_EQ(got.reason, want.reason, "50k: reason");
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_semantics, teardown),
		cmocka_unit_test_teardown(test_cidrs_and_warnings, teardown),
		cmocka_unit_test_teardown(test_unmatched_references, teardown),
		cmocka_unit_test_teardown(test_describe_and_format, teardown),
		cmocka_unit_test_teardown(test_bad_input, teardown),
		cmocka_unit_test_teardown(test_bad_text, teardown),
		cmocka_unit_test_teardown(test_good_edge_cases, teardown),
		cmocka_unit_test_teardown(test_json_and_round_trip, teardown),
		cmocka_unit_test_teardown(test_yaml_quoting_round_trip, teardown),
		cmocka_unit_test_teardown(test_merge_remove, teardown),
		cmocka_unit_test_teardown(test_diff, teardown),
		cmocka_unit_test_teardown(test_capacity_and_recompile, teardown),
		cmocka_unit_test_teardown(test_random_documents, teardown),
		cmocka_unit_test_teardown(test_compile_50k, teardown),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
