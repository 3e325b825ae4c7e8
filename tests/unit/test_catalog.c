// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/catalog.c: parsing, every validation, identities, SPIFFE IDs. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "catalog.h"
#include "sockmesh/common.h"

/*
 * The catalog under test lives here, not on the stack, so that a failing
 * check (a longjmp out of the test) can be followed by teardown freeing it.
 */
static struct sm_catalog cat;

/* A temporary catalog file of the running test ("" when none), removed by teardown. */
static char temp_path[64];

/* A growing text buffer, for generated catalogs. */
struct textbuf {
	char *s;
	size_t len, cap;
};

/* A generated catalog's text, freed by teardown. */
static struct textbuf big;

static int free_catalog(void **state)
{
	sm_catalog_free(&cat);
	free(big.s);
	memset(&big, 0, sizeof(big));
	if (temp_path[0])
		unlink(temp_path);
	temp_path[0] = '\0';
	return 0;
}

static int parse(const char *yaml, struct sm_error *err)
{
	err->msg[0] = '\0';
	return sm_catalog_parse(&cat, yaml, strlen(yaml), "cat.yaml", err);
}

/* docs/catalog.md's example, extended: replicas share an ID, IDs sort apart from file order */
static const char good_catalog[] =
	"nodes:\n"						  /* 1 */
	"  - name: node1\n"					  /* 2 */
	"    addresses: [10.11.0.1, \"fc42::1\"]\n"		  /* 3 */
	"    credentials: /etc/sockmesh/credentials/node1\n"	  /* 4 */
	"  - name: node2\n"					  /* 5 */
	"    addresses:\n"					  /* 6 */
	"      - 10.11.0.2\n"					  /* 7 */
	"      - fc42::2\n"					  /* 8 */
	"workloads:\n"						  /* 9 */
	"  - name: client\n"					  /* 10 */
	"    node: node1\n"					  /* 11 */
	"    cgroup: sockmesh-demo/node1/client\n"		  /* 12 */
	"    spiffe_id: spiffe://example.org/ns/demo/sa/client\n" /* 13 */
	"    mode: permissive\n"				  /* 14 */
	"  - name: server2\n"					  /* 15 */
	"    node: node2\n"					  /* 16 */
	"    cgroup: system.slice/server.service\n"		  /* 17 */
	"    spiffe_id: spiffe://example.org/ns/demo/sa/server\n" /* 18 */
	"  - name: server1\n"					  /* 19 */
	"    node: node1\n"					  /* 20 */
	"    cgroup: system.slice/server.service\n"		  /* 21 */
	"    spiffe_id: spiffe://example.org/ns/demo/sa/server\n" /* 22 */
	"    mode: STRICT\n"					  /* 23 */
	"  - {name: z-app, node: node2, cgroup: z, spiffe_id: 'spiffe://a.example/app',\n"
	"     credentials: /run/sockmesh/z-app}\n"
	"services:\n"
	"  - name: echo\n"
	"    address: 10.11.0.2\n"
	"    port: 8080\n"
	"    workload: server2\n"
	"  - address: \"fc42::2\"\n"
	"    port: 8080\n"
	"    workload: server2\n"
	"  - address: 10.11.0.2\n"
	"    port: 0x1f91\n"
	"    workload: z-app\n"
	"cidrs:\n"
	"  - cidr: 10.11.0.0/24\n"
	"    workload: server2\n"
	"  - cidr: 192.168.0.0/16\n"
	"  - cidr: fc42::/64\n"
	"    workload: z-app\n";

static void test_parse_good(void **state)
{
	struct sm_error err;
	char buf[64];

	ASSERT_EQ(parse(good_catalog, &err), 0, err.msg);
	ASSERT_EQ(cat.nnodes, 2, "nodes");
	ASSERT_STR_EQ(cat.nodes[0].name, "node1", "node 0 name");
	ASSERT_EQ(cat.nodes[0].naddrs, 2, "node1 addresses");
	ASSERT_STR_EQ(sm_addr_format(&cat.nodes[0].addrs[1], buf, sizeof(buf)), "fc42::1",
		      "node1 second address");
	ASSERT_EQ(cat.nodes[1].naddrs, 2, "node2 addresses (block list)");
	ASSERT_STR_EQ(sm_addr_format(&cat.nodes[1].addrs[0], buf, sizeof(buf)), "10.11.0.2",
		      "node2 first address");

	ASSERT_EQ(cat.nworkloads, 4, "workloads");
	ASSERT_STR_EQ(cat.workloads[0].name, "client", "workload 0");
	ASSERT_EQ(cat.workloads[0].node, 0, "client on node1");
	ASSERT_STR_EQ(cat.workloads[0].cgroup, "sockmesh-demo/node1/client", "client cgroup");
	ASSERT_EQ(cat.workloads[0].mode, SM_MODE_PERMISSIVE, "client permissive");
	ASSERT_EQ(cat.workloads[1].mode, SM_MODE_STRICT, "default mode strict");
	ASSERT_EQ(cat.workloads[2].mode, SM_MODE_STRICT, "STRICT accepted");
	ASSERT_EQ(cat.workloads[3].node, 1, "z-app on node2 (flow mapping)");
	ASSERT_STR_EQ(cat.workloads[3].spiffe_id, "spiffe://a.example/app", "z-app id");
	ASSERT_STR_EQ(cat.workloads[3].credentials, "/run/sockmesh/z-app", "z-app credentials");
	ASSERT_STR_EQ(cat.workloads[0].credentials, "", "credentials are optional");
	ASSERT_STR_EQ(cat.nodes[0].credentials, "/etc/sockmesh/credentials/node1",
		      "node1 credentials");
	ASSERT_STR_EQ(cat.nodes[1].credentials, "", "node credentials are optional");

	/* sorted distinct IDs: a.example/app, .../client, .../server */
	ASSERT_EQ(cat.workloads[3].identity, SM_ID_FIRST_ALLOCATED + 0, "z-app identity");
	ASSERT_EQ(cat.workloads[0].identity, SM_ID_FIRST_ALLOCATED + 1, "client identity");
	ASSERT_EQ(cat.workloads[1].identity, SM_ID_FIRST_ALLOCATED + 2, "server2 identity");
	ASSERT_EQ(cat.workloads[2].identity, SM_ID_FIRST_ALLOCATED + 2,
		  "replica with the same SPIFFE ID shares the identity");

	ASSERT_EQ(cat.nservices, 3, "services");
	ASSERT_STR_EQ(cat.services[0].name, "echo", "service name");
	ASSERT_EQ(cat.services[0].port, 8080, "service port");
	ASSERT_EQ(cat.services[0].workload, 1, "service workload");
	ASSERT_STR_EQ(cat.services[1].name, "", "name is optional");
	ASSERT_EQ(cat.services[1].addr.family, AF_INET6, "IPv6 service");
	ASSERT_EQ(cat.services[2].port, 8081, "hex port");
	ASSERT_EQ(cat.services[2].workload, 3, "same address, other port, other workload");

	ASSERT_EQ(cat.ncidrs, 3, "cidrs");
	ASSERT_EQ(cat.cidrs[0].prefix, 24, "cidr prefix");
	ASSERT_EQ(cat.cidrs[0].workload, 1, "cidr workload");
	ASSERT_EQ(cat.cidrs[0].identity, SM_ID_FIRST_ALLOCATED + 2, "cidr = workload identity");
	ASSERT_EQ(cat.cidrs[1].workload, -1, "cidr without workload");
	ASSERT_EQ(cat.cidrs[1].identity, SM_ID_WORLD, "cidr without workload is world");
	ASSERT_EQ(cat.cidrs[2].prefix, 64, "IPv6 cidr prefix");
	ASSERT_EQ(cat.cidrs[2].identity, SM_ID_FIRST_ALLOCATED, "IPv6 cidr identity");

	ASSERT_EQ(sm_catalog_node_index(&cat, "node2"), 1, "node_index node2");
	ASSERT_EQ(sm_catalog_node_index(&cat, "node3"), -1, "node_index absent");
	ASSERT_EQ(sm_catalog_workload_by_identity(&cat, SM_ID_FIRST_ALLOCATED + 1), 0,
		  "workload_by_identity client");
	ASSERT_EQ(sm_catalog_workload_by_identity(&cat, SM_ID_FIRST_ALLOCATED + 2), 1,
		  "workload_by_identity: first workload with the identity");
	ASSERT_EQ(sm_catalog_workload_by_identity(&cat, SM_ID_WORLD), -1,
		  "workload_by_identity world");
	ASSERT_EQ(sm_catalog_workload_by_identity(&cat, 9999), -1, "workload_by_identity absent");

	/* services by address and port: each one, and near misses */
	for (unsigned int i = 0; i < cat.nservices; i++)
		ASSERT_EQ(sm_catalog_service_at(&cat, &cat.services[i].addr, cat.services[i].port),
			  (int) i, "service_at each service");
	{
		struct sm_addr a = cat.services[0].addr, v6 = cat.services[1].addr;
		struct sm_catalog scan = cat;

		ASSERT_EQ(sm_catalog_service_at(&cat, &a, 8082), -1, "service_at: other port");
		a.bytes[3] = 3;
		ASSERT_EQ(sm_catalog_service_at(&cat, &a, 8080), -1, "service_at: other address");
		/* the same 16 bytes with the other family are another address */
		v6.family = AF_INET;
		ASSERT_EQ(sm_catalog_service_at(&cat, &v6, 8080), -1, "service_at: other family");
		/* a catalog made without the parser has no index: scanned, same answers */
		scan.services_by_addr = NULL;
		ASSERT_EQ(sm_catalog_service_at(&scan, &cat.services[2].addr, 8081), 2,
			  "service_at without the index");
		ASSERT_EQ(sm_catalog_service_at(&scan, &cat.services[0].addr, 8082), -1,
			  "service_at without the index: a miss");
	}
}

/* The same IDs in another order give the same identities: nodes must agree. */
static void test_identities_independent_of_order(void **state)
{
	static const char yaml[] =
		"nodes: [{name: n1, addresses: [10.0.0.1]}]\n"
		"workloads:\n"
		"  - {name: c, node: n1, cgroup: c, spiffe_id: 'spiffe://t/c'}\n"
		"  - {name: b, node: n1, cgroup: b, spiffe_id: 'spiffe://t/b'}\n"
		"  - {name: a, node: n1, cgroup: a, spiffe_id: 'spiffe://t/a'}\n"
		"  - {name: B, node: n1, cgroup: B, spiffe_id: 'spiffe://t/B'}\n";
	struct sm_error err;

	ASSERT_EQ(parse(yaml, &err), 0, err.msg);
	/* strcmp order: "spiffe://t/B" < "spiffe://t/a" < ".../b" < ".../c" */
	ASSERT_EQ(cat.workloads[3].identity, 256, "B");
	ASSERT_EQ(cat.workloads[2].identity, 257, "a");
	ASSERT_EQ(cat.workloads[1].identity, 258, "b");
	ASSERT_EQ(cat.workloads[0].identity, 259, "c");
}

static void test_minimal_catalogs(void **state)
{
	static const char *const yamls[] = {
		"nodes: [{name: n1, addresses: [10.0.0.1]}]\n",
		"nodes: [{name: n1, addresses: [10.0.0.1]}]\nworkloads: []\nservices:\ncidrs: ~\n",
		"nodes:\n  - name: a.b_c-D9\n    addresses: ['::1', 10.0.0.1, 10.0.0.2, "
		"10.0.0.3]\n",
		/* a name of 63 characters */
		"nodes:\n  - name: "
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
		"    addresses: [10.0.0.1]\n",
		/* the same cgroup path on two nodes: replicas of one unit */
		"nodes: [{name: n1, addresses: [10.0.0.1]}, {name: n2, addresses: [10.0.0.2]}]\n"
		"workloads:\n"
		"  - {name: a, node: n1, cgroup: system.slice/x.service, spiffe_id: "
		"'spiffe://t/x'}\n"
		"  - {name: b, node: n2, cgroup: system.slice/x.service, spiffe_id: "
		"'spiffe://t/x'}\n",
		/* cgroup names may contain dots; only ".." segments are refused */
		"nodes: [{name: n1, addresses: [10.0.0.1]}]\n"
		"workloads:\n"
		"  - {name: a, node: n1, cgroup: a..b/c.d/.e, spiffe_id: 'spiffe://t/x/...'}\n",
	};
	struct sm_error err;

	for (size_t i = 0; i < SM_ARRAY_SIZE(yamls); i++) {
		ASSERT_EQ(parse(yamls[i], &err), 0, err.msg);
		sm_catalog_free(&cat);
	}
}

/* unit (and slice) -> the cgroup systemd gives the unit, relative to the cgroup v2 mount */
static void test_units(void **state)
{
	static const struct {
		const char *unit, *slice, *cgroup;
	} cases[] = {
		{"nginx.service", NULL, "system.slice/nginx.service"},
		{"nginx.socket", NULL, "system.slice/nginx.socket"},
		{"run-u7.scope", NULL, "system.slice/run-u7.scope"},
		{"web.service", "web.slice", "web.slice/web.service"},
		{"api.service", "system-web-api.slice",
		 "system.slice/system-web.slice/system-web-api.slice/api.service"},
		{"api.service", "system.slice", "system.slice/api.service"},
		/* instances of a template go to system-PREFIX.slice, the prefix escaped */
		{"getty@tty1.service", NULL, "system.slice/system-getty.slice/getty@tty1.service"},
		{"my-app@2.service", NULL, "system.slice/system-my\\x2dapp.slice/my-app@2.service"},
		{"my-app@2.service", "apps.slice", "apps.slice/my-app@2.service"},
		/* a slice is a workload of its own: everything in it */
		{"web.slice", NULL, "web.slice"},
		{"system-web.slice", NULL, "system.slice/system-web.slice"},
		/* cgroupfs names systemd escapes with '_' (its cg_escape) */
		{"io.service", NULL, "system.slice/_io.service"},
		{"memory.service", NULL, "system.slice/_memory.service"},
		{"_x.service", NULL, "system.slice/__x.service"},
		{"iox.service", NULL, "system.slice/iox.service"},
		{"a:b\\x2dc_d.e.service", NULL, "system.slice/a:b\\x2dc_d.e.service"},
	};
	char yaml[1024], what[256];
	struct sm_error err;

	(void) state;
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		snprintf(yaml, sizeof(yaml),
			 "nodes: [{name: n1, addresses: [10.0.0.1]}]\n"
			 "workloads:\n"
			 "  - name: w\n"
			 "    node: n1\n"
			 "    unit: '%s'\n"
			 "%s%s%s"
			 "    spiffe_id: spiffe://t/w\n",
			 cases[i].unit, cases[i].slice ? "    slice: '" : "",
			 cases[i].slice ? cases[i].slice : "", cases[i].slice ? "'\n" : "");
		snprintf(what, sizeof(what), "unit %s slice %s", cases[i].unit,
			 cases[i].slice ? cases[i].slice : "-");
		ASSERT_EQ(parse(yaml, &err), 0, err.msg);
		ASSERT_STR_EQ(cat.workloads[0].cgroup, cases[i].cgroup, what);
		ASSERT_STR_EQ(cat.workloads[0].unit, cases[i].unit, what);
		ASSERT_STR_EQ(cat.workloads[0].slice, cases[i].slice ? cases[i].slice : "", what);
		sm_catalog_free(&cat);
	}
	/* a path workload has no unit */
	ASSERT_EQ(parse(good_catalog, &err), 0, err.msg);
	ASSERT_STR_EQ(cat.workloads[0].unit, "", "path workload");
}

struct bad_case {
	const char *yaml;
	unsigned int line;	 /* the message starts with "cat.yaml:LINE: " */
	const char *has1, *has2; /* substrings the message must contain (NULL: none) */
};

/* A cgroup name one byte over what enrollment can match. */
#define LONG_NAME_247                                                                              \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"                                       \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"                                       \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"                                       \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"                                       \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

/* lines 1-3 */
#define NODES "nodes:\n  - name: n1\n    addresses: [10.0.0.1]\n"
/* lines 4-8 */
#define WL                                                                                         \
	"workloads:\n  - name: w1\n    node: n1\n    cgroup: sockmesh/w1\n    spiffe_id: "         \
	"spiffe://td.example/w1\n"
/* a workload entry at lines 5-8 with the given node, cgroup and SPIFFE ID lines */
#define WL_WITH(node, cgroup, id)                                                                  \
	NODES "workloads:\n  - name: w1\n    node: " node "\n    cgroup: " cgroup                  \
	      "\n    spiffe_id: " id "\n"
/* a workload entry at lines 5-8 named by unit (line 7) */
#define WL_UNIT(unit)                                                                              \
	NODES "workloads:\n  - name: w1\n    node: n1\n    spiffe_id: spiffe://td.example/w1\n"    \
	      "    unit: " unit "\n"
#define LONG_ID_PATH_100                                                                           \
	"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  \
	"aaaaaaaaaaaa"

static const struct bad_case bad_cases[] = {
	/* the document */
	{"", 1, "the catalog is empty", "nodes:"},
	{"# nothing\n", 1, "the catalog is empty", NULL},
	{"nodes: []\n", 1, "no nodes", NULL},
	{"workloads: []\n", 1, "no nodes", NULL},
	{"- a\n", 1, "expected a mapping with keys nodes, workloads, services, cidrs", NULL},
	{NODES "node: x\n", 4, "unknown key 'node'",
	 "(known keys: nodes, workloads, services, cidrs)"},
	{NODES "nodes: []\n", 4, "duplicate key 'nodes' (first at line 1)", NULL},
	{"nodes:\n  - name: n1\n    addresses: [10.0.0.1\n", 4, "invalid YAML", NULL},
	{"nodes:\n  - name: n1\n   addresses: [10.0.0.1]\n", 3, "invalid YAML", NULL},
	{"nodes:\n  - &n {name: n1, addresses: [10.0.0.1]}\n  - *n\n", 3, "aliases", NULL},
	/* nodes */
	{"nodes:\n  name: n1\n", 2, "nodes: expected a list, found a mapping", "- name: node1"},
	{"nodes: n1\n", 1, "nodes: expected a list, found a single value", NULL},
	{"nodes:\n  - n1\n", 2, "nodes[0]: expected a mapping, found a single value", NULL},
	{"nodes:\n  - name: n1\n    adresses: [10.0.0.1]\n", 3,
	 "nodes[0]: unknown key 'adresses' (known keys: name, addresses, credentials)", NULL},
	{"nodes:\n  - addresses: [10.0.0.1]\n", 2, "nodes[0]: missing required key 'name'", NULL},
	{"nodes:\n  - name: n 1\n    addresses: [10.0.0.1]\n", 2,
	 "nodes[0]: name 'n 1' is not a valid name", "1 to 63 letters"},
	{"nodes:\n  - name: n/1\n    addresses: [10.0.0.1]\n", 2, "name 'n/1' is not a valid name",
	 NULL},
	{"nodes:\n  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	 "    addresses: [10.0.0.1]\n",
	 2, "is not a valid name", NULL},
	{"nodes:\n  - name: [n1]\n    addresses: [10.0.0.1]\n", 2,
	 "nodes[0]: name: expected a single value, found a list", NULL},
	{"nodes:\n  - name:\n    addresses: [10.0.0.1]\n", 2, "nodes[0]: name: empty", NULL},
	{"nodes:\n  - name: \"\"\n    addresses: [10.0.0.1]\n", 2, "nodes[0]: name: empty", NULL},
	{"nodes:\n  - name: n1\n    name: n2\n", 3, "duplicate key 'name' (first at line 2)", NULL},
	{NODES "  - name: n1\n    addresses: [10.0.0.2]\n", 4,
	 "node 'n1' is defined twice (first at line 2", NULL},
	{"nodes:\n  - name: n1\n", 2, "node 'n1': missing required key 'addresses'", NULL},
	{"nodes:\n  - name: n1\n    addresses: 10.0.0.1\n", 3,
	 "node 'n1': addresses: expected a list, found a single value", "[10.0.0.1]"},
	{"nodes:\n  - name: n1\n    addresses: []\n", 3, "node 'n1': addresses: 0 given", "1 to 4"},
	{"nodes:\n  - name: n1\n    addresses: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, "
	 "10.0.0.5]\n",
	 3, "node 'n1': addresses: 5 given", NULL},
	{"nodes:\n  - name: n1\n    addresses:\n      - 10.0.0.1\n      - 10.0.0.300\n", 5,
	 "node 'n1': addresses: '10.0.0.300' is not an IPv4 or IPv6 address", NULL},
	{"nodes:\n  - name: n1\n    addresses: [node1.example]\n", 3,
	 "'node1.example' is not an IPv4 or IPv6 address", "numeric address"},
	{"nodes:\n  - name: n1\n    addresses: [[10.0.0.1]]\n", 3,
	 "node 'n1': addresses[0]: expected a single value, found a list", NULL},
	{"nodes:\n  - name: n1\n    addresses: [10.0.0.1, 10.0.0.1]\n", 3,
	 "node 'n1': address 10.0.0.1 is already an address of node 'n1' (line 2)", NULL},
	{NODES "  - name: n2\n    addresses: [\"fc00::1\", 10.0.0.1]\n", 5,
	 "node 'n2': address 10.0.0.1 is already an address of node 'n1' (line 2)", NULL},
	/* workloads */
	{NODES "workloads:\n  name: w1\n", 5, "workloads: expected a list, found a mapping", NULL},
	{NODES "workloads:\n  - [w1]\n", 5, "workloads[0]: expected a mapping, found a list", NULL},
	{NODES WL "    spiffeid: spiffe://td.example/w1\n", 9,
	 "workloads[0]: unknown key 'spiffeid' (known keys: name, node, cgroup, unit, slice, "
	 "spiffe_id, mode, credentials)",
	 NULL},
	{NODES "workloads:\n  - node: n1\n", 5, "workloads[0]: missing required key 'name'", NULL},
	{NODES "workloads:\n  - name: w1\n    cgroup: x\n", 5,
	 "workload 'w1': missing required key 'node'", NULL},
	{WL_WITH("n9", "sockmesh/w1", "spiffe://td.example/w1"), 6,
	 "workload 'w1': node 'n9' is not in nodes", NULL},
	{WL_WITH("[n1]", "sockmesh/w1", "spiffe://td.example/w1"), 6,
	 "workload 'w1': node: expected a single value, found a list", NULL},
	{NODES "workloads:\n  - name: w1\n    node: n1\n", 5,
	 "workload 'w1': missing required key 'cgroup' or 'unit'", "system.slice/orders.service"},
	{WL_WITH("n1", "/sys/fs/cgroup/sockmesh/w1", "spiffe://td.example/w1"), 7,
	 "workload 'w1': cgroup '/sys/fs/cgroup/sockmesh/w1' is not valid: it starts with '/'",
	 "relative to the cgroup v2 mount"},
	{WL_WITH("n1", "sockmesh/../w1", "spiffe://td.example/w1"), 7,
	 "cgroup 'sockmesh/../w1' is not valid: it has a '.' or '..' segment", NULL},
	{WL_WITH("n1", "..", "spiffe://td.example/w1"), 7, "cgroup '..' is not valid", NULL},
	{WL_WITH("n1", "a/..", "spiffe://td.example/w1"), 7, "'..' segment", NULL},
	/* what the kernel side could never match by name (include/sockmesh/enroll.h) */
	{WL_WITH("n1", "a//b", "spiffe://td.example/w1"), 7, "empty segment", NULL},
	{WL_WITH("n1", "a/", "spiffe://td.example/w1"), 7, "empty segment", NULL},
	{WL_WITH("n1", "a/./b", "spiffe://td.example/w1"), 7, "'.' or '..' segment", NULL},
	{WL_WITH("n1", "a/" LONG_NAME_247, "spiffe://td.example/w1"), 7, "longer than 246 bytes",
	 NULL},
	{WL_WITH("n1", "\"\"", "spiffe://td.example/w1"), 7, "workload 'w1': cgroup: empty", NULL},
	{WL_WITH("n1", "[a]", "spiffe://td.example/w1"), 7,
	 "cgroup: expected a single value, found a list", NULL},
	{NODES WL
	 "  - name: w2\n    node: n1\n    cgroup: sockmesh/w1\n    spiffe_id: spiffe://t/w2\n",
	 11, "workload 'w2': cgroup 'sockmesh/w1' on node 'n1' is already workload 'w1' (line 5)",
	 NULL},
	{NODES WL
	 "  - name: w1\n    node: n1\n    cgroup: sockmesh/w2\n    spiffe_id: spiffe://t/w2\n",
	 9, "workload 'w1' is defined twice (first at line 5", NULL},
	{NODES "workloads:\n  - name: w1\n    node: n1\n    cgroup: a\n", 5,
	 "workload 'w1': missing required key 'spiffe_id'", "spiffe://"},
	/* unit: and slice: (a systemd unit's cgroup), docs/catalog.md */
	{WL_UNIT("nginx"), 8, "workload 'w1': unit 'nginx': it has no type", "nginx.service"},
	{WL_UNIT("nginx.timer"), 8,
	 "workload 'w1': unit 'nginx.timer': a .timer unit has no cgroup", ".service"},
	{WL_UNIT("nginx.target"), 8, "a .target unit has no cgroup", NULL},
	{WL_UNIT("nginx.sevice"), 8, "unit 'nginx.sevice': '.sevice' is not a unit type",
	 ".service, .socket, .scope, .slice, .mount or .swap"},
	{WL_UNIT("system.slice/nginx.service"), 8, "'/' is not allowed", "cgroup:"},
	{WL_UNIT("../nginx.service"), 8, "'/' is not allowed", NULL},
	{WL_UNIT("\"ng inx.service\""), 8, "' ' is not allowed", NULL},
	{WL_UNIT("\"ngïnx.service\""), 8, "is not allowed", NULL},
	{WL_UNIT(".service"), 8, "unit '.service': nothing before the type", NULL},
	{WL_UNIT("\"@x.service\""), 8, "nothing before '@'", NULL},
	{WL_UNIT("getty@.service"), 8, "a template", "getty@NAME.service"},
	{WL_UNIT(LONG_NAME_247 "xxxxxxxxxx.service"), 8, "longer than 255 bytes", NULL},
	/* a valid unit name whose cgroup name enrollment cannot match */
	{WL_UNIT(LONG_NAME_247 ".service"), 8, "longer than 246 bytes", NULL},
	{WL_UNIT("\"\""), 8, "workload 'w1': unit: empty", NULL},
	{WL_UNIT("[a.service]"), 8, "unit: expected a single value, found a list", NULL},
	{WL_UNIT("-.slice"), 8, "the root slice", NULL},
	{WL_UNIT("a--b.slice"), 8, "not a valid slice name", NULL},
	{WL_UNIT("web-.slice"), 8, "not a valid slice name", NULL},
	{WL_UNIT("a@b.slice"), 8, "not a valid slice name", NULL},
	{WL_UNIT("web.slice") "    slice: system.slice\n", 9,
	 "a slice's place follows from its name", "remove slice"},
	{WL_UNIT("web.service") "    slice: web\n", 9,
	 "workload 'w1': slice 'web': not a valid slice name", "web.slice"},
	{WL_UNIT("web.service") "    slice: web.service\n", 9, "not a valid slice name", NULL},
	{WL_UNIT("web.service") "    slice: -web.slice\n", 9, "not a valid slice name", NULL},
	{WL_UNIT("web.service") "    slice: -.slice\n", 9, "the root slice", NULL},
	{WL_UNIT("web.service") "    slice: a/b.slice\n", 9, "'/' is not allowed", NULL},
	{WL_UNIT("web.service") "    cgroup: system.slice/web.service\n", 8,
	 "workload 'w1': give either cgroup or unit, not both", NULL},
	{WL_WITH("n1", "a", "spiffe://td.example/w1") "    slice: web.slice\n", 9,
	 "workload 'w1': slice is only for a unit", "unit: NAME.service"},
	{NODES "workloads:\n  - name: w1\n    node: n1\n    spiffe_id: spiffe://t/w1\n", 5,
	 "workload 'w1': missing required key 'cgroup' or 'unit'", "unit: orders.service"},
	/* a unit and a path naming one cgroup */
	{NODES WL
	 "  - name: w2\n    node: n1\n    unit: w1\\x2d.service\n    spiffe_id: spiffe://t/w2\n"
	 "  - name: w3\n    node: n1\n    cgroup: system.slice/w1\\x2d.service\n"
	 "    spiffe_id: spiffe://t/w3\n",
	 15,
	 "workload 'w3': cgroup 'system.slice/w1\\x2d.service' on node 'n1' is already workload "
	 "'w2' (line 9)",
	 NULL},
	{NODES WL
	 "  - name: w2\n    node: n1\n    cgroup: system.slice/system-web.slice/x.service\n"
	 "    spiffe_id: spiffe://t/w2\n"
	 "  - name: w3\n    node: n1\n    spiffe_id: spiffe://t/w3\n    unit: x.service\n"
	 "    slice: system-web.slice\n",
	 16,
	 "workload 'w3': cgroup 'system.slice/system-web.slice/x.service' of unit x.service on "
	 "node 'n1' is already workload 'w2' (line 9)",
	 NULL},

	{WL_WITH("n1", "a", "spiffe://Example.org/w1"), 8,
	 "workload 'w1': spiffe_id 'spiffe://Example.org/w1' is not a valid SPIFFE ID",
	 "uppercase"},
	{WL_WITH("n1", "a", "SPIFFE://example.org/w1"), 8, "is not a valid SPIFFE ID",
	 "scheme must be lowercase"},
	{WL_WITH("n1", "a", "https://example.org/w1"), 8, "is not a valid SPIFFE ID",
	 "does not start with \"spiffe://\""},
	{WL_WITH("n1", "a", "spiffe:///w1"), 8, "is not a valid SPIFFE ID",
	 "the trust domain is empty"},
	{WL_WITH("n1", "a", "spiffe://example.org:443/w1"), 8, "is not a valid SPIFFE ID", "port"},
	{WL_WITH("n1", "a", "spiffe://u@example.org/w1"), 8, "is not a valid SPIFFE ID",
	 "user info"},
	{WL_WITH("n1", "a", "spiffe://example.org/w1/"), 8, "is not a valid SPIFFE ID",
	 "ends with '/'"},
	{WL_WITH("n1", "a", "spiffe://example.org//w1"), 8, "is not a valid SPIFFE ID",
	 "empty segment"},
	{WL_WITH("n1", "a", "spiffe://example.org/./w1"), 8, "is not a valid SPIFFE ID",
	 "'.' or '..' segment"},
	{WL_WITH("n1", "a", "spiffe://example.org/w1/.."), 8, "is not a valid SPIFFE ID",
	 "'.' or '..' segment"},
	{WL_WITH("n1", "a", "spiffe://example.org/w1?x=1"), 8, "is not a valid SPIFFE ID", "query"},
	{WL_WITH("n1", "a", "\"spiffe://example.org/w1#f\""), 8, "is not a valid SPIFFE ID",
	 "fragment"},
	{WL_WITH("n1", "a", "spiffe://example.org/w%201"), 8, "is not a valid SPIFFE ID",
	 "character other than letters"},
	{WL_WITH("n1", "a", "spiffe://example.org"), 8,
	 "workload 'w1': spiffe_id 'spiffe://example.org' names only a trust domain", NULL},
	{WL_WITH("n1", "a",
		 "spiffe://example.org" LONG_ID_PATH_100 LONG_ID_PATH_100 LONG_ID_PATH_100),
	 8, "is not a valid SPIFFE ID", "longer than the 255 bytes sockmesh supports"},
	{WL_WITH("n1", "a", "[spiffe://example.org/w1]"), 8,
	 "spiffe_id: expected a single value, found a list", NULL},
	{NODES WL "    mode: mtls\n", 9, "workload 'w1': mode 'mtls' is not valid",
	 "(write strict or permissive)"},
	{NODES WL "    mode:\n", 9, "workload 'w1': mode: empty", NULL},
	/* credentials, on workloads (line 9) and on nodes (line 4) */
	{NODES WL "    credentials: creds/w1\n", 9,
	 "workload 'w1': credentials 'creds/w1' is not an absolute path", "cert.pem, key.pem"},
	{NODES WL "    credentials: ./w1\n", 9, "credentials './w1' is not an absolute path", NULL},
	{NODES WL "    credentials: [/etc/w1]\n", 9,
	 "workload 'w1': credentials: expected a single value, found a list", "absolute path"},
	{NODES WL "    credentials: {dir: /etc/w1}\n", 9,
	 "credentials: expected a single value, found a mapping", NULL},
	{NODES WL "    credentials: 42\n", 9, "credentials '42' is not an absolute path", NULL},
	{NODES WL "    credentials: ''\n", 9, "workload 'w1': credentials: empty", NULL},
	{NODES WL "    credentials:\n", 9, "workload 'w1': credentials: empty", NULL},
	{NODES "    credentials: etc/node1\n", 4,
	 "node 'n1': credentials 'etc/node1' is not an absolute path", NULL},
	{NODES "    credentials: [/a, /b]\n", 4,
	 "node 'n1': credentials: expected a single value, found a list", NULL},
	/* services: lines 9.. */
	{NODES WL "services:\n  - address: 10.0.0.1\n    port: 80\n    workload: w1\n"
		  "    proto: tcp\n",
	 13, "services[0]: unknown key 'proto' (known keys: name, address, port, workload)", NULL},
	{NODES WL "services: {address: 10.0.0.1}\n", 9,
	 "services: expected a list, found a mapping", NULL},
	{NODES WL "services:\n  - port: 80\n    workload: w1\n", 10,
	 "services[0]: missing required key 'address'", NULL},
	{NODES WL "services:\n  - name: echo\n    address: 10.0.0\n    port: 80\n", 11,
	 "service 'echo': address '10.0.0' is not an IPv4 or IPv6 address", NULL},
	{NODES WL "services:\n  - name: e cho\n    address: 10.0.0.1\n", 10,
	 "services[0]: name 'e cho' is not a valid name", NULL},
	{NODES WL "services:\n  - address: 10.0.0.1\n    workload: w1\n", 10,
	 "services[0]: missing required key 'port'", NULL},
	{NODES WL "services:\n  - address: 10.0.0.1\n    port: 0\n    workload: w1\n", 11,
	 "services[0]: port 0 is out of range 1..65535", NULL},
	{NODES WL "services:\n  - address: 10.0.0.1\n    port: 65536\n    workload: w1\n", 11,
	 "port 65536 is out of range 1..65535", NULL},
	{NODES WL "services:\n  - address: 10.0.0.1\n    port: http\n    workload: w1\n", 11,
	 "port 'http' is not a number", NULL},
	{NODES WL "services:\n  - address: 10.0.0.1\n    port: [80]\n    workload: w1\n", 11,
	 "port: expected a single value, found a list", NULL},
	{NODES WL "services:\n  - address: 10.0.0.1\n    port: 80\n", 10,
	 "services[0]: missing required key 'workload'", NULL},
	{NODES WL "services:\n  - address: 10.0.0.1\n    port: 80\n    workload: w9\n", 12,
	 "services[0]: workload 'w9' is not in workloads", NULL},
	{NODES WL "services:\n  - {address: 10.0.0.1, port: 80, workload: w1}\n"
		  "  - {address: 10.0.0.1, port: 80, workload: w1}\n",
	 11, "10.0.0.1:80 is already a service (line 10)", NULL},
	{NODES WL "services:\n  - {address: 'fc00::1', port: 80, workload: w1}\n"
		  "  - {name: b, address: 'fc00:0::1', port: 80, workload: w1}\n",
	 11, "service 'b': [fc00::1]:80 is already a service (line 10)", NULL},
	/* cidrs: lines 9.. */
	{NODES WL "cidrs:\n  - cidr: 10.0.0.1/24\n", 10,
	 "cidr '10.0.0.1/24': host bits are set (did you mean 10.0.0.0/24?)", NULL},
	{NODES WL "cidrs:\n  - cidr: fc00::1/64\n", 10,
	 "host bits are set (did you mean "
	 "fc00::/64?)",
	 NULL},
	{NODES WL "cidrs:\n  - cidr: 10.0.0.0/33\n", 10,
	 "cidr '10.0.0.0/33': prefix length '33' is not a number 0..32", NULL},
	{NODES WL "cidrs:\n  - cidr: fc00::/129\n", 10,
	 "prefix length '129' is not a number 0..128", NULL},
	{NODES WL "cidrs:\n  - cidr: 10.0.0.0\n", 10, "cidr '10.0.0.0': not ADDRESS/PREFIX", NULL},
	{NODES WL "cidrs:\n  - cidr: ten/8\n", 10,
	 "cidr 'ten/8': 'ten' is not an IPv4 or IPv6 "
	 "address",
	 NULL},
	{NODES WL "cidrs:\n  - cidr: 10.0.0.0/8\n    workload: w9\n", 11,
	 "cidr '10.0.0.0/8': workload 'w9' is not in workloads", NULL},
	{NODES WL "cidrs:\n  - cidr: 10.0.0.0/8\n  - cidr: 10.0.0.0/8\n    workload: w1\n", 11,
	 "cidr '10.0.0.0/8' is defined twice (first at line 10", NULL},
	{NODES WL "cidrs:\n  - cidr: 10.0.0.0/8\n    identity: 5\n", 11,
	 "cidrs[0]: unknown key 'identity' (known keys: cidr, workload)", NULL},
	{NODES WL "cidrs:\n  - workload: w1\n", 10, "cidrs[0]: missing required key 'cidr'", NULL},
	{NODES WL "cidrs:\n  - 10.0.0.0/8\n", 10,
	 "cidrs[0]: expected a mapping, found a single "
	 "value",
	 NULL},
};

static void test_parse_bad(void **state)
{
	char prefix[64], what[800];
	struct sm_error err;

	for (size_t i = 0; i < SM_ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		int ret = parse(c->yaml, &err);

		snprintf(what, sizeof(what), "case %zu (%.200s): %s", i, c->yaml, err.msg);
		ASSERT_EQ(ret, -EINVAL, what);
		snprintf(prefix, sizeof(prefix), "cat.yaml:%u: ", c->line);
		ASSERT_EQ(strncmp(err.msg, prefix, strlen(prefix)), 0, what);
		ASSERT_HAS(err.msg, c->has1, what);
		if (c->has2) /* a second expected phrase is optional */
			ASSERT_HAS(err.msg, c->has2, what);
		ASSERT_EQ(err.msg[strlen(err.msg) - 1], ')', what);
		/* on error the catalog holds nothing (ASan checks nothing leaked) */
		ASSERT_EQ(cat.nodes == NULL && cat.workloads == NULL && cat.services == NULL &&
				  cat.cidrs == NULL && cat.nnodes == 0 && cat.nworkloads == 0,
			  1, what);
	}
}

static void test_spiffe_id_valid(void **state)
{
	static const struct {
		const char *id;
		bool valid;
	} cases[] = {
		{"spiffe://example.org", true},
		{"spiffe://example.org/ns/prod/sa/orders", true},
		{"spiffe://a-b_c.d9/x.y-z_0/A/B", true},
		{"spiffe://10.0.0.1/x", true},
		{"spiffe://example.org/...", true},
		{"spiffe://example.org/.x/..y", true},
		{"", false},
		{"spiffe:", false},
		{"spiffe://", false},
		{"spiffe:/example.org/x", false},
		{"SPIFFE://example.org/x", false},
		{"Spiffe://example.org/x", false},
		{"http://example.org/x", false},
		{"example.org/x", false},
		{"spiffe:///x", false},
		{"spiffe://Example.org/x", false},
		{"spiffe://exa mple.org/x", false},
		{"spiffe://example.org:8080/x", false},
		{"spiffe://user@example.org/x", false},
		{"spiffe://[::1]/x", false},
		{"spiffe://example.org/", false},
		{"spiffe://example.org/x/", false},
		{"spiffe://example.org//x", false},
		{"spiffe://example.org/.", false},
		{"spiffe://example.org/./x", false},
		{"spiffe://example.org/..", false},
		{"spiffe://example.org/x/../y", false},
		{"spiffe://example.org/x?y=1", false},
		{"spiffe://example.org/x#y", false},
		{"spiffe://example.org/x%2Fy", false},
		{"spiffe://example.org/x y", false},
		{"spiffe://example.org/x:y", false},
		{"spiffe://example.org/x\xc3\xa9", false},
		{" spiffe://example.org/x", false},
		{"spiffe://example.org/x ", false},
	};
	char id[3000];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++)
		ASSERT_EQ(sm_spiffe_id_valid(cases[i].id), cases[i].valid, cases[i].id);
	ASSERT_EQ(sm_spiffe_id_valid(NULL), false, "NULL");

	/* our limit: 255 bytes fit SM_SPIFFE_MAX with the NUL, 256 do not */
	memset(id, 'a', sizeof(id));
	memcpy(id, "spiffe://example.org/", 21);
	id[SM_SPIFFE_MAX - 1] = '\0';
	ASSERT_EQ(sm_spiffe_id_valid(id), true, "255 bytes");
	id[SM_SPIFFE_MAX - 1] = 'a';
	id[SM_SPIFFE_MAX] = '\0';
	ASSERT_EQ(sm_spiffe_id_valid(id), false, "256 bytes");
	id[SM_SPIFFE_MAX] = 'a';
	id[2049] = '\0';
	ASSERT_EQ(sm_spiffe_id_valid(id), false, "2049 bytes, over the standard's limit");
}

/* The long-ID message names both limits apart: the standard's and ours. */
static void test_spiffe_id_limit_messages(void **state)
{
	static char yaml[4000];
	char id[2100];
	struct sm_error err;

	memset(id, 'a', sizeof(id));
	memcpy(id, "spiffe://example.org/", 21);
	id[2060] = '\0';
	snprintf(yaml, sizeof(yaml), WL_WITH("n1", "a", "%s"), id);
	ASSERT_EQ(parse(yaml, &err), -EINVAL, err.msg);
	ASSERT_HAS(err.msg, "cat.yaml:8: ", "line of the spiffe_id");
	ASSERT_HAS(err.msg, "2048 bytes the SPIFFE standard allows", err.msg);
	id[300] = '\0';
	snprintf(yaml, sizeof(yaml), WL_WITH("n1", "a", "%s"), id);
	ASSERT_EQ(parse(yaml, &err), -EINVAL, err.msg);
	ASSERT_HAS(err.msg, "longer than the 255 bytes sockmesh supports", err.msg);
}

/* A catalog that is not UTF-8 text is refused at the line and column of the first bad byte. */
static void test_bad_text(void **state)
{
	static const char nul_doc[] = NODES "\0" WL;
	struct sm_error err;

	ASSERT_EQ(parse(WL_WITH("n1", "sockmesh/w\xe9", "spiffe://td.example/w1"), &err), -EINVAL,
		  err.msg);
	ASSERT_HAS(err.msg, "cat.yaml:7:23: ", err.msg);
	ASSERT_HAS(err.msg, "not valid UTF-8", err.msg);
	err.msg[0] = '\0';
	ASSERT_EQ(sm_catalog_parse(&cat, nul_doc, sizeof(nul_doc) - 1, "cat.yaml", &err), -EINVAL,
		  "a NUL is an error, not the end of the catalog");
	ASSERT_HAS(err.msg, "cat.yaml:4:1: ", err.msg);
	ASSERT_HAS(err.msg, "NUL", err.msg);
	ASSERT_EQ(cat.nnodes, 0, "nothing loaded");
}

/* Empty b, with room to grow. */
static void tb_reset(struct textbuf *b)
{
	free(b->s);
	b->len = 0;
	b->cap = 1u << 20;
	b->s = malloc(b->cap);
	assert_non_null(b->s);
}

/* Add printf-formatted text to b, growing it; aborts the test when out of memory. */
static void __attribute__((format(printf, 2, 3))) tb_add(struct textbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *grown;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		assert_true(n >= 0);
		if ((size_t) n < b->cap - b->len)
			break;
		grown = realloc(b->s, b->cap * 2 + (size_t) n + 1);
		assert_non_null(grown);
		b->s = grown;
		b->cap = b->cap * 2 + (size_t) n + 1;
	}
	b->len += (size_t) n;
}

/*
 * n nodes, n workloads (one per node), n/2 services and n/4 CIDRs, every
 * name, address, cgroup, service and CIDR distinct so that every duplicate
 * check runs against all the entries before it: 15.5 MB for n = 100,000,
 * under SM_YAML_MAX_FILE. dup adds, last, a second node named like the first.
 * The text is left in big.
 */
static const char *big_catalog(unsigned int n, bool dup)
{
	struct textbuf *b = &big;

	tb_reset(b);
	tb_add(b, "nodes:\n");
	for (unsigned int i = 0; i < n; i++)
		tb_add(b, "- {name: n%u, addresses: [10.%u.%u.%u]}\n", i, 1 + i / 65536,
		       (i / 256) % 256, i % 256);
	if (dup)
		tb_add(b, "- {name: n0, addresses: [192.168.0.1]}\n");
	tb_add(b, "workloads:\n");
	for (unsigned int i = 0; i < n; i++)
		tb_add(b, "- {name: w%u, node: n%u, cgroup: c, spiffe_id: 'spiffe://t/w%u'}\n", i,
		       n - 1 - i, i);
	tb_add(b, "services:\n");
	for (unsigned int i = 0; i < n / 2; i++)
		tb_add(b, "- {address: 10.%u.%u.%u, port: 80, workload: w%u}\n", 101 + i / 65536,
		       (i / 256) % 256, i % 256, n - 1 - i);
	tb_add(b, "cidrs:\n");
	for (unsigned int i = 0; i < n / 4; i++)
		tb_add(b, "- {cidr: 172.%u.%u.0/24, workload: w%u}\n", 16 + i / 256, i % 256, i);
	return b->s;
}

/* CPU seconds a child may spend on one big catalog (see test_load_100k_linear). */
#define CHILD_CPU_LIMIT 30

/*
 * sm_catalog_parse(yaml) in a child limited to CHILD_CPU_LIMIT s of CPU time,
 * so that a quadratic loader fails at the bound instead of running on, and
 * what else runs on the machine does not count. Returns the parse's result
 * (0 or -errno); fails the test when the child was killed.
 */
static int parse_in_child(const char *yaml, const char *what)
{
	struct rlimit cpu = {.rlim_cur = CHILD_CPU_LIMIT, .rlim_max = CHILD_CPU_LIMIT + 1};
	struct rusage usage;
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm_catalog loaded;
		struct sm_error err;
		int ret;

		if (setrlimit(RLIMIT_CPU, &cpu))
			_exit(100);
		ret = sm_catalog_parse(&loaded, yaml, strlen(yaml), "big.yaml", &err);
		_exit(-ret); /* no free: _exit skips the leak check, the process ends here */
	}
	assert_true(wait4(pid, &status, 0, &usage) == pid);
	print_message("[ info     ] %s: %.1f s of CPU time\n", what,
		      (double) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
			      (double) (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
	if (WIFSIGNALED(status))
		fail_msg("%s: killed by signal %d%s", what, WTERMSIG(status),
			 WTERMSIG(status) == SIGXCPU ? " at the CPU time limit (quadratic?)" : "");
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 100);
	return -WEXITSTATUS(status);
}

/* CPU seconds the lookups of every service of the big catalog may take. */
#define SERVICE_LOOKUPS_CPU_LIMIT 1.0

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/*
 * The flow export looks a record's service up once per record, the tunnel
 * once per CONNECT: each of the catalog's nservices services is found at its
 * index, and all of them within SERVICE_LOOKUPS_CPU_LIMIT. A scan of the
 * list (what it was) needs nservices^2 / 2 comparisons for this, 1.25 * 10^9
 * for 50,000 services: seconds. A binary search needs a millisecond or two.
 */
static void service_lookups_fast(unsigned int nservices)
{
	double t0 = cpu_seconds(), spent;
	struct sm_addr miss;

	ASSERT_EQ(cat.nservices, nservices, "services");
	for (unsigned int i = 0; i < nservices; i++)
		if (sm_catalog_service_at(&cat, &cat.services[i].addr, cat.services[i].port) !=
		    (int) i)
			fail_msg("service %u (of %u) not found at its index", i, nservices);
	spent = cpu_seconds() - t0;
	print_message("[ info     ] %u service lookups: %.3f s of CPU time\n", nservices, spent);
	if (spent > SERVICE_LOOKUPS_CPU_LIMIT)
		fail_msg("%u service lookups took %.2f s of CPU time, want at most %.1f (a scan?)",
			 nservices, spent, SERVICE_LOOKUPS_CPU_LIMIT);
	miss = cat.services[nservices - 1].addr;
	ASSERT_EQ(sm_catalog_service_at(&cat, &miss, 81), -1, "a port no service has");
}

/*
 * Loading is linear in the entries: 100,000 nodes and workloads, 50,000
 * services and 25,000 CIDRs load within 30 s of CPU time, some six times what
 * a linear load needs under the sanitizers (about 5 s), where checking each
 * entry against all the ones before it (5 * 10^9 comparisons for the nodes
 * alone) takes minutes even without them.
 */
static void test_load_100k_linear(void **state)
{
	const unsigned int n = 100000;
	struct sm_error err;
	const char *yaml = big_catalog(n, false);

	ASSERT_EQ(parse_in_child(yaml, "100,000 nodes and workloads"), 0, "loads");

	/* the same in this process: every entry where it belongs, identities allocated */
	ASSERT_EQ(sm_catalog_parse(&cat, yaml, strlen(yaml), "big.yaml", &err), 0, err.msg);
	ASSERT_EQ(cat.nnodes, n, "nodes");
	ASSERT_EQ(cat.nworkloads, n, "workloads");
	ASSERT_EQ(cat.nservices, n / 2, "services");
	ASSERT_EQ(cat.ncidrs, n / 4, "CIDRs");
	ASSERT_EQ(cat.workloads[n - 1].node, 0, "last workload on the first node");
	ASSERT_EQ(cat.services[0].workload, n - 1, "first service: the last workload");
	ASSERT_EQ(cat.cidrs[7].workload, 7, "CIDR workload");
	ASSERT_EQ(sm_catalog_node_index(&cat, "n99999"), 99999, "node index, last");
	ASSERT_EQ(sm_catalog_node_index(&cat, "n100000"), -1, "node index, absent");
	ASSERT_EQ(sm_catalog_workload_by_identity(&cat, cat.workloads[4242].identity), 4242,
		  "workload by identity");
	service_lookups_fast(n / 2);
	sm_catalog_free(&cat);

	/* duplicates at the end of a big catalog are still found, with the first one's line */
	yaml = big_catalog(n, true);
	ASSERT_EQ(sm_catalog_parse(&cat, yaml, strlen(yaml), "big.yaml", &err), -EINVAL, "dup");
	ASSERT_HAS(err.msg, "big.yaml:100002: node 'n0' is defined twice (first at line 2",
		   err.msg);
}

/* A mapping with 200,000 keys: the duplicate-key check is linear too. */
static void test_big_mapping_linear(void **state)
{
	struct sm_error err;

	tb_reset(&big);
	tb_add(&big, "nodes:\n- name: n1\n  addresses: [10.0.0.1]\n");
	for (unsigned int i = 0; i < 200000; i++)
		tb_add(&big, "k%u: 1\n", i);
	/* every key is read, then the first unknown one refused */
	ASSERT_EQ(parse_in_child(big.s, "a mapping of 200,000 keys"), -EINVAL, "refused");
	ASSERT_EQ(sm_catalog_parse(&cat, big.s, big.len, "big.yaml", &err), -EINVAL, err.msg);
	ASSERT_HAS(err.msg, "big.yaml:4: catalog: unknown key 'k0'", err.msg);
	tb_add(&big, "k7: 2\n");
	ASSERT_EQ(sm_catalog_parse(&cat, big.s, big.len, "big.yaml", &err), -EINVAL, err.msg);
	ASSERT_HAS(err.msg, "big.yaml:200004: duplicate key 'k7' (first at line 11)", err.msg);
}

static void test_load_file(void **state)
{
	char *path = temp_path, prefix[96];
	struct sm_error err;
	size_t n = strlen(good_catalog);
	int fd;

	snprintf(path, sizeof(temp_path), "/tmp/sockmesh-test-catalog-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		path[0] = '\0';
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good_catalog, n), (ssize_t) n);
	close(fd);
	ASSERT_EQ(sm_catalog_load(&cat, path, &err), 0, err.msg);
	ASSERT_EQ(cat.nworkloads, 4, "workloads from the file");
	sm_catalog_free(&cat);
	ASSERT_EQ(cat.nodes == NULL && cat.nnodes == 0, 1, "free zeroes the catalog");
	sm_catalog_free(&cat); /* twice is harmless */

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	n = strlen(NODES "  - name: n1\n");
	assert_int_equal(write(fd, NODES "  - name: n1\n", n), (ssize_t) n);
	close(fd);
	ASSERT_EQ(sm_catalog_load(&cat, path, &err), -EINVAL, err.msg);
	snprintf(prefix, sizeof(prefix), "%s:4: ", path);
	ASSERT_EQ(strncmp(err.msg, prefix, strlen(prefix)), 0, err.msg);
	ASSERT_HAS(err.msg, "defined twice", err.msg);
	unlink(path);

	ASSERT_EQ(sm_catalog_load(&cat, path, &err), -ENOENT, "missing file");
	ASSERT_HAS(err.msg, path, "message names the missing file");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_parse_good, free_catalog),
		cmocka_unit_test_teardown(test_identities_independent_of_order, free_catalog),
		cmocka_unit_test_teardown(test_minimal_catalogs, free_catalog),
		cmocka_unit_test_teardown(test_parse_bad, free_catalog),
		cmocka_unit_test_teardown(test_units, free_catalog),
		cmocka_unit_test(test_spiffe_id_valid),
		cmocka_unit_test_teardown(test_spiffe_id_limit_messages, free_catalog),
		cmocka_unit_test_teardown(test_load_file, free_catalog),
		cmocka_unit_test_teardown(test_bad_text, free_catalog),
		cmocka_unit_test_teardown(test_load_100k_linear, free_catalog),
		cmocka_unit_test_teardown(test_big_mapping_linear, free_catalog),
	};

	return cmocka_run_group_tests_name("catalog", tests, NULL, NULL);
}
