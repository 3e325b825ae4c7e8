// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/clusterstore.c: splitting files into keys, building them back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "clusterstore.h"

#define PREFIX "/sockmesh/"

/* What a test holds, freed by teardown even when a check fails. */
static struct sm_cluster_objs objs;
static struct sm_cluster_state st;
static struct sm_catalog want;
static struct sm_etcd_kv *kvs;
static size_t nkvs;
static char *text;

static int cleanup(void **state)
{
	sm_cluster_objs_free(&objs);
	sm_cluster_state_free(&st);
	sm_catalog_free(&want);
	for (size_t i = 0; i < nkvs; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
	kvs = NULL;
	nkvs = 0;
	free(text);
	text = NULL;
	return 0;
}

/* Add PREFIX rel = value as etcd would list it, at mod_revision rev. */
static void kv_add(const char *rel, const char *value, int64_t rev)
{
	static size_t cap;
	struct sm_etcd_kv *kv;
	size_t klen = strlen(PREFIX) + strlen(rel);

	if (!kvs)
		cap = 0;
	if (nkvs == cap) {
		cap = cap ? cap * 2 : 16;
		struct sm_etcd_kv *grown = realloc(kvs, cap * sizeof(*kvs));

		assert_non_null(grown);
		kvs = grown;
	}
	kv = &kvs[nkvs++];
	memset(kv, 0, sizeof(*kv));
	kv->key = malloc(klen + 1);
	assert_non_null(kv->key);
	snprintf(kv->key, klen + 1, "%s%s", PREFIX, rel);
	kv->key_len = klen;
	kv->value = strdup(value);
	assert_non_null(kv->value);
	kv->value_len = strlen(value);
	kv->mod_revision = rev;
	kv->create_revision = rev;
	kv->version = 1;
}

/* The objects as kvs, in reverse order (build must not depend on it), revisions 10, 11, ... */
static void objs_to_kvs(void)
{
	for (size_t i = objs.n; i-- > 0;)
		kv_add(objs.objs[i].key, objs.objs[i].value, (int64_t) (10 + i));
}

static int build(struct sm_error *err, char *bad_key)
{
	err->msg[0] = '\0';
	bad_key[0] = '\0';
	return sm_cluster_build(PREFIX, kvs, nkvs, 99, &st, bad_key, SM_CLUSTER_KEY_MAX, err);
}

static const char catalog_file[] = "nodes:\n"						/* 1 */
				   "  - name: node1\n"					/* 2 */
				   "    addresses: [10.11.0.1, \"fc42::1\"]\n"		/* 3 */
				   "    credentials: /etc/sockmesh/credentials/node1\n" /* 4 */
				   "  - name: node2\n"					/* 5 */
				   "    addresses: [10.11.0.2]\n"			/* 6 */
				   "workloads:\n"					/* 7 */
				   "  - name: client\n"					/* 8 */
				   "    node: node1\n"					/* 9 */
				   "    cgroup: sockmesh-demo/node1/client\n"		/* 10 */
				   "    spiffe_id: spiffe://example.org/ns/demo/sa/client\n"
				   "    mode: permissive\n"
				   "  - name: server2\n"
				   "    node: node2\n"
				   "    cgroup: sockmesh-demo/node2/server2\n"
				   "    spiffe_id: spiffe://example.org/ns/demo/sa/server\n"
				   "services:\n"
				   "  - name: echo\n"
				   "    address: 10.11.0.2\n"
				   "    port: 8080\n"
				   "    workload: server2\n"
				   "  - address: \"fc42::0:2\"\n"
				   "    port: 0x1f91\n"
				   "    workload: server2\n"
				   "cidrs:\n"
				   "  - cidr: 10.11.0.0/24\n"
				   "    workload: server2\n"
				   "  - cidr: 192.0.2.0/24\n";

static void test_prefix_check(void **state)
{
	static const char *const good[] = {"/", "/sockmesh/", "/a/b-c_d.e/"};
	static const char *const bad[] = {"", "sockmesh/", "/sockmesh", "/a b/", "/a\tb/", "/é/"};
	struct sm_error err;
	char long_prefix[SM_CLUSTER_PREFIX_MAX + 2];

	for (size_t i = 0; i < SM_ARRAY_SIZE(good); i++)
		ASSERT_EQ(sm_cluster_prefix_check(good[i], &err), 0, good[i]);
	for (size_t i = 0; i < SM_ARRAY_SIZE(bad); i++)
		ASSERT_EQ(sm_cluster_prefix_check(bad[i], &err), -EINVAL, bad[i]);
	memset(long_prefix, 'a', sizeof(long_prefix) - 1);
	long_prefix[0] = '/';
	long_prefix[sizeof(long_prefix) - 2] = '/';
	long_prefix[sizeof(long_prefix) - 1] = '\0';
	ASSERT_EQ(sm_cluster_prefix_check(long_prefix, &err), -EINVAL, "a prefix too long");
	ASSERT_HAS(err.msg, "longer than", "the message");
}

static void test_split_catalog_keys(void **state)
{
	static const char *const keys[] = {
		"config/catalog/nodes/node1",	     "config/catalog/nodes/node2",
		"config/catalog/workloads/client",   "config/catalog/workloads/server2",
		"config/catalog/services/echo",	     "config/catalog/services/fc42--2_8081",
		"config/catalog/cidrs/10.11.0.0_24", "config/catalog/cidrs/192.0.2.0_24",
	};
	static const unsigned int lines[] = {2, 5, 8, 13, 18, 22, 26, 28};
	struct sm_error err = {""};

	ASSERT_EQ(
		sm_cluster_split_catalog(catalog_file, strlen(catalog_file), "c.yaml", &objs, &err),
		0, err.msg);
	ASSERT_EQ(objs.n, SM_ARRAY_SIZE(keys), "objects");
	for (size_t i = 0; i < objs.n; i++) {
		ASSERT_STR_EQ(objs.objs[i].key, keys[i], "key in file order");
		ASSERT_EQ(objs.objs[i].line, lines[i], keys[i]);
		ASSERT_EQ(strlen(objs.objs[i].value), objs.objs[i].value_len, "value_len");
		ASSERT_EQ(strchr(objs.objs[i].value, '\n') == NULL, 1, "one line");
	}
	ASSERT_STR_EQ(objs.objs[0].value,
		      "{\"name\":\"node1\",\"addresses\":[\"10.11.0.1\",\"fc42::1\"],"
		      "\"credentials\":\"/etc/sockmesh/credentials/node1\"}",
		      "a node's value: the same fields, as JSON");
	ASSERT_STR_EQ(objs.objs[4].value,
		      "{\"name\":\"echo\",\"address\":\"10.11.0.2\",\"port\":8080,"
		      "\"workload\":\"server2\"}",
		      "a plain integer stays a number");
}

static void test_split_catalog_errors(void **state)
{
	static const struct {
		const char *yaml, *want;
	} cases[] = {
		{"nodes:\n  - name: a\n    addresses: [10.0.0.1]\n  - name: a\n"
		 "    addresses: [10.0.0.2]\n",
		 "c.yaml:4: node 'a' is given twice (first at line 2), both would be key "
		 "config/catalog/nodes/a (remove one)"},
		{"services:\n  - address: 10.0.0.1\n    port: 80\n    workload: w\n"
		 "  - address: \"10.0.0.1\"\n    port: 0x50\n    workload: v\n",
		 "c.yaml:5: service '10.0.0.1_80' is given twice (first at line 2)"},
		{"nodes:\n  - name: \"a/b\"\n    addresses: [10.0.0.1]\n",
		 "c.yaml:2: nodes[0]: name: not a valid name"},
		{"nodes:\n  - name: " /* 64 bytes */
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		 "c.yaml:2: nodes[0]: name: not a valid name"},
		{"workloads:\n  - node: n\n",
		 "c.yaml:2: workloads[0]: missing required key 'name'"},
		{"services:\n  - port: 80\n", "c.yaml:2: services[0]: a service without a name"},
		{"cidrs:\n  - cidr: 10.0.0.1/8\n", "c.yaml:2: cidrs[0]: cidr: missing or not"},
		{"nodes: {name: a}\n", "c.yaml:1: nodes: expected a list, found a mapping"},
		{"nodes:\n  - a\n", "c.yaml:2: nodes[0]: expected a mapping, found a single value"},
		{"node:\n  - name: a\n", "c.yaml:1: catalog: unknown key 'node'"},
		{"- a\n", "c.yaml:1: expected a mapping with keys nodes"},
		{"nodes: [\n", "c.yaml:"},
	};
	struct sm_error err;

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		err.msg[0] = '\0';
		ASSERT_EQ(sm_cluster_split_catalog(cases[i].yaml, strlen(cases[i].yaml), "c.yaml",
						   &objs, &err),
			  -EINVAL, cases[i].yaml);
		ASSERT_EQ(objs.n, 0, "nothing on error");
		ASSERT_HAS(err.msg, cases[i].want, cases[i].yaml);
	}
	/* empty documents are no objects */
	ASSERT_EQ(sm_cluster_split_catalog("", 0, "c.yaml", &objs, &err), 0, "empty");
	ASSERT_EQ(objs.n, 0, "empty");
	ASSERT_EQ(sm_cluster_split_catalog("nodes:\n", 7, "c.yaml", &objs, &err), 0, "null list");
	ASSERT_EQ(objs.n, 0, "null list");
}

static const struct sm_node_def *node_named(const struct sm_catalog *c, const char *name)
{
	for (unsigned int i = 0; i < c->nnodes; i++)
		if (strcmp(c->nodes[i].name, name) == 0)
			return &c->nodes[i];
	return NULL;
}

static const struct sm_workload_def *workload_named(const struct sm_catalog *c, const char *name)
{
	for (unsigned int i = 0; i < c->nworkloads; i++)
		if (strcmp(c->workloads[i].name, name) == 0)
			return &c->workloads[i];
	return NULL;
}

/* got and want hold the same objects, whatever their order. */
static void assert_same_catalog(const struct sm_catalog *got, const struct sm_catalog *w)
{
	ASSERT_EQ(got->nnodes, w->nnodes, "nodes");
	ASSERT_EQ(got->nworkloads, w->nworkloads, "workloads");
	ASSERT_EQ(got->nservices, w->nservices, "services");
	ASSERT_EQ(got->ncidrs, w->ncidrs, "cidrs");
	for (unsigned int i = 0; i < w->nnodes; i++) {
		const struct sm_node_def *a = &w->nodes[i], *b = node_named(got, a->name);

		ASSERT_NOT_NULL(b, a->name);
		ASSERT_EQ(b->naddrs, a->naddrs, a->name);
		ASSERT_EQ(memcmp(b->addrs, a->addrs, sizeof(a->addrs)), 0, a->name);
		ASSERT_STR_EQ(b->credentials, a->credentials, a->name);
	}
	for (unsigned int i = 0; i < w->nworkloads; i++) {
		const struct sm_workload_def *a = &w->workloads[i],
					     *b = workload_named(got, a->name);

		ASSERT_NOT_NULL(b, a->name);
		ASSERT_STR_EQ(got->nodes[b->node].name, w->nodes[a->node].name, a->name);
		ASSERT_STR_EQ(b->cgroup, a->cgroup, a->name);
		ASSERT_STR_EQ(b->unit, a->unit, a->name);
		ASSERT_STR_EQ(b->slice, a->slice, a->name);
		ASSERT_STR_EQ(b->spiffe_id, a->spiffe_id, a->name);
		ASSERT_EQ(b->mode, a->mode, a->name);
		ASSERT_EQ(b->identity, a->identity, "identities agree");
		ASSERT_STR_EQ(b->credentials, a->credentials, a->name);
	}
	for (unsigned int i = 0; i < w->nservices; i++) {
		const struct sm_service_def *a = &w->services[i];
		bool found = false;

		for (unsigned int j = 0; j < got->nservices && !found; j++) {
			const struct sm_service_def *b = &got->services[j];

			found = sm_addr_equal(&a->addr, &b->addr) && a->port == b->port &&
				strcmp(a->name, b->name) == 0 &&
				strcmp(got->workloads[b->workload].name,
				       w->workloads[a->workload].name) == 0;
		}
		ASSERT_EQ(found, 1, "service");
	}
	for (unsigned int i = 0; i < w->ncidrs; i++) {
		const struct sm_cidr_def *a = &w->cidrs[i];
		bool found = false;

		for (unsigned int j = 0; j < got->ncidrs && !found; j++) {
			const struct sm_cidr_def *b = &got->cidrs[j];

			found = sm_addr_equal(&a->addr, &b->addr) && a->prefix == b->prefix &&
				a->identity == b->identity;
		}
		ASSERT_EQ(found, 1, "cidr");
	}
}

static void test_catalog_round_trip(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};
	struct sm_catalog again;

	ASSERT_EQ(sm_catalog_parse(&want, catalog_file, strlen(catalog_file), "c.yaml", &err), 0,
		  err.msg);
	ASSERT_EQ(
		sm_cluster_split_catalog(catalog_file, strlen(catalog_file), "c.yaml", &objs, &err),
		0, err.msg);
	objs_to_kvs();
	kv_add(SM_CK_GENERATION, "{\"by\":\"test\"}", 40);
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	assert_same_catalog(&st.cat, &want);
	ASSERT_EQ(st.revision, 99, "revision read at");
	ASSERT_EQ(st.catalog_revision, 17, "the highest catalog mod_revision");
	ASSERT_EQ(st.policy_revision, 0, "no policies");
	ASSERT_EQ(st.policies.npolicies, 0, "no policies");
	ASSERT_EQ(st.nkeys, 9, "keys, the generation included");
	/* the document is what a node loads: it reads back as the same catalog */
	ASSERT_EQ(sm_catalog_parse(&again, st.catalog_doc, st.catalog_len, "doc", &err), 0,
		  err.msg);
	assert_same_catalog(&again, &want);
	sm_catalog_free(&again);
	ASSERT_HAS(st.catalog_doc, "nodes:\n- {\"name\":\"node1\"", "one object per line");
}

static void test_build_is_order_independent(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};
	char *first;

	ASSERT_EQ(
		sm_cluster_split_catalog(catalog_file, strlen(catalog_file), "c.yaml", &objs, &err),
		0, err.msg);
	for (size_t i = 0; i < objs.n; i++)
		kv_add(objs.objs[i].key, objs.objs[i].value, 5);
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	first = strdup(st.catalog_doc);
	assert_non_null(first);
	sm_cluster_state_free(&st);
	/* the same keys listed in another order */
	for (size_t i = 0; i < nkvs / 2; i++) {
		struct sm_etcd_kv t = kvs[i];

		kvs[i] = kvs[nkvs - 1 - i];
		kvs[nkvs - 1 - i] = t;
	}
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	ASSERT_STR_EQ(st.catalog_doc, first, "the same document");
	free(first);
}

static const char base_nodes[] = "{\"name\":\"n1\",\"addresses\":[\"10.0.0.1\"]}";

static void test_build_errors_name_keys(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err;

	/* a workload naming a node that no key holds: the workload's key is to blame */
	kv_add(SM_CK_NODES "n1", base_nodes, 3);
	kv_add(SM_CK_WORKLOADS "w1",
	       "{\"name\":\"w1\",\"node\":\"n9\",\"cgroup\":\"a/b\","
	       "\"spiffe_id\":\"spiffe://example.org/w1\"}",
	       4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a dangling reference");
	ASSERT_STR_EQ(bad_key, PREFIX "config/catalog/workloads/w1", "bad_key");
	ASSERT_HAS(err.msg, PREFIX "config/catalog/workloads/w1: workload 'w1': node 'n9'",
		   "the message starts with the key");
	ASSERT_EQ(st.cat.nnodes, 0, "nothing built");
	cleanup(NULL);

	/* two nodes with one address: the second key, and "line N" names the first key */
	kv_add(SM_CK_NODES "n1", base_nodes, 3);
	kv_add(SM_CK_NODES "n2", "{\"name\":\"n2\",\"addresses\":[\"10.0.0.1\"]}", 4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a duplicate address");
	ASSERT_STR_EQ(bad_key, PREFIX "config/catalog/nodes/n2", "bad_key");
	ASSERT_HAS(err.msg, PREFIX "config/catalog/nodes/n1", "the other key is named");
	ASSERT_EQ(strstr(err.msg, "line ") == NULL, 1, err.msg);
	cleanup(NULL);

	/* a value whose name is not its key's */
	kv_add(SM_CK_NODES "n1", "{\"name\":\"other\",\"addresses\":[\"10.0.0.1\"]}", 3);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a name that is not the key's");
	ASSERT_STR_EQ(bad_key, PREFIX "config/catalog/nodes/n1", "bad_key");
	ASSERT_HAS(err.msg, "the node is 'other' but its key says 'n1'", err.msg);
	cleanup(NULL);

	/* keys that fit no kind */
	static const char *const unknown[] = {
		"config/catalog/routes/r1", "config/policies/", "config/catalog/nodes/a/b",
		"config/catalog/nodes/a b", "config/other",	"status/nodes/n1",
	};
	for (size_t i = 0; i < SM_ARRAY_SIZE(unknown); i++) {
		kv_add(SM_CK_NODES "n1", base_nodes, 3);
		kv_add(unknown[i], "{}", 4);
		ASSERT_EQ(build(&err, bad_key), -EINVAL, unknown[i]);
		ASSERT_HAS(bad_key, unknown[i], "bad_key");
		ASSERT_HAS(err.msg, "not a key sockmesh keeps under " PREFIX "config/", err.msg);
		cleanup(NULL);
	}

	/* values that are not a mapping, or not YAML at all */
	static const char *const values[] = {"", "[1, 2]", "just words", "{\"name\": \"n1\"",
					     "{\"name\": [1]}"};
	for (size_t i = 0; i < SM_ARRAY_SIZE(values); i++) {
		kv_add(SM_CK_NODES "n1", values[i], 3);
		ASSERT_EQ(build(&err, bad_key), -EINVAL, values[i]);
		ASSERT_STR_EQ(bad_key, PREFIX "config/catalog/nodes/n1", values[i]);
		ASSERT_HAS(err.msg, PREFIX "config/catalog/nodes/n1:", values[i]);
		cleanup(NULL);
	}

	/* workloads but no node at all: no single key to blame */
	kv_add(SM_CK_SERVICES "s",
	       "{\"name\":\"s\",\"address\":\"10.0.0.9\",\"port\":80,\"workload\":\"w\"}", 3);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "no nodes");
	ASSERT_STR_EQ(bad_key, "", "no one key");
	ASSERT_HAS(err.msg, PREFIX "config/catalog/: no nodes", err.msg);
}

/* Workloads named by systemd unit (docs/catalog.md) go through etcd and back unchanged. */
static void test_unit_workloads_round_trip(void **state)
{
	static const char file[] = "nodes:\n"
				   "  - name: node1\n"
				   "    addresses: [10.11.0.1]\n"
				   "workloads:\n"
				   "  - name: web\n"
				   "    node: node1\n"
				   "    unit: nginx.service\n"
				   "    spiffe_id: spiffe://example.org/web\n"
				   "  - name: api\n"
				   "    node: node1\n"
				   "    unit: api@2.service\n"
				   "    slice: system-apps-api.slice\n"
				   "    spiffe_id: spiffe://example.org/api\n"
				   "  - name: batch\n"
				   "    node: node1\n"
				   "    unit: batch.slice\n"
				   "    spiffe_id: spiffe://example.org/batch\n";
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};
	struct sm_catalog again;

	(void) state;
	ASSERT_EQ(sm_catalog_parse(&want, file, strlen(file), "c.yaml", &err), 0, err.msg);
	ASSERT_STR_EQ(want.workloads[1].cgroup,
		      "system.slice/system-apps.slice/system-apps-api.slice/api@2.service",
		      "computed from unit and slice");
	ASSERT_EQ(sm_cluster_split_catalog(file, strlen(file), "c.yaml", &objs, &err), 0, err.msg);
	objs_to_kvs();
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	assert_same_catalog(&st.cat, &want);
	/* unit and slice are stored as written, not the path computed from them */
	ASSERT_HAS(st.catalog_doc, "\"unit\":\"api@2.service\"", st.catalog_doc);
	ASSERT_HAS(st.catalog_doc, "\"slice\":\"system-apps-api.slice\"", st.catalog_doc);
	ASSERT_EQ(strstr(st.catalog_doc, "cgroup") == NULL, 1, st.catalog_doc);
	ASSERT_EQ(sm_catalog_parse(&again, st.catalog_doc, st.catalog_len, "doc", &err), 0,
		  err.msg);
	assert_same_catalog(&again, &want);
	sm_catalog_free(&again);
	cleanup(NULL);

	/* a bad unit written straight into etcd: the message names its key and the fix */
	kv_add(SM_CK_NODES "n1", base_nodes, 3);
	kv_add(SM_CK_WORKLOADS "w1",
	       "{\"name\":\"w1\",\"node\":\"n1\",\"unit\":\"nginx.timer\","
	       "\"spiffe_id\":\"spiffe://example.org/w1\"}",
	       4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a timer has no cgroup");
	ASSERT_STR_EQ(bad_key, PREFIX "config/catalog/workloads/w1", "bad_key");
	ASSERT_HAS(err.msg,
		   PREFIX "config/catalog/workloads/w1: workload 'w1': unit 'nginx.timer': a "
			  ".timer unit has no cgroup",
		   err.msg);
}

/*
 * Found by fuzz_clusterstore: a key under config/ longer than bad_key holds
 * (any etcd client may write one) came back cut, naming a key that does not
 * exist. It is now "" and the message says how long the key is and how it
 * starts, and how to find it.
 */
static void test_build_key_too_long(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX], rel[400];
	struct sm_error err;

	memset(rel, 'x', sizeof(rel) - 1);
	rel[sizeof(rel) - 1] = '\0';
	memcpy(rel, "config/catalog/nodes/", strlen("config/catalog/nodes/"));
	kv_add(SM_CK_NODES "n1", base_nodes, 3);
	kv_add(rel, "{}", 4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a key too long");
	ASSERT_STR_EQ(bad_key, "", "no cut key named");
	ASSERT_HAS(err.msg, "a key of 409 bytes starting with '" PREFIX "config/catalog/nodes/xxx",
		   err.msg);
	ASSERT_HAS(err.msg, "etcdctl get --prefix --keys-only '" PREFIX "config/'", err.msg);
	cleanup(NULL);

	/* the longest key that fits is still named */
	rel[SM_CLUSTER_KEY_MAX - 1 - strlen(PREFIX)] = '\0';
	kv_add(SM_CK_NODES "n1", base_nodes, 3);
	kv_add(rel, "{}", 4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a key that fits");
	ASSERT_EQ(strlen(bad_key), SM_CLUSTER_KEY_MAX - 1, bad_key);
	ASSERT_HAS(bad_key, PREFIX "config/catalog/nodes/xxx", "bad_key");
}

/*
 * Found by fuzz_clusterstore once it checked messages: a key any etcd client
 * chose went into the message as it was, so control characters reached logs
 * and terminals (an escape sequence acts on a terminal) and a quote broke
 * out of the suggested etcdctl command. Such bytes are now shown as \xNN,
 * and then no command to paste is suggested.
 */
static void test_build_hostile_key_in_message(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err;

	kv_add("config/x\x1b]0;owned\x07", "{}", 4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a key with escapes");
	ASSERT_STR_EQ(bad_key, PREFIX "config/x\x1b]0;owned\x07", "bad_key is the key as it is");
	ASSERT_HAS(err.msg, PREFIX "config/x\\x1b]0;owned\\x07: not a key", err.msg);
	ASSERT_EQ(strchr(err.msg, 0x1b) == NULL, 1, err.msg);
	ASSERT_EQ(strstr(err.msg, "etcdctl del") == NULL, 1, err.msg);
	ASSERT_HAS(err.msg, "etcdctl get --prefix --keys-only '" PREFIX "config/'", err.msg);
	cleanup(NULL);

	kv_add("config/a'; touch /tmp/x; '", "{}", 4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a key with quotes");
	ASSERT_HAS(err.msg, PREFIX "config/a\\x27; touch /tmp/x; \\x27: not a key", err.msg);
	ASSERT_EQ(strstr(err.msg, "etcdctl del") == NULL, 1, err.msg);
	cleanup(NULL);

	/* a key of printable bytes keeps its command to paste */
	kv_add("config/other", "{}", 4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a plain key");
	ASSERT_HAS(err.msg, "etcdctl del '" PREFIX "config/other'", err.msg);
	cleanup(NULL);

	/* the same through a value: a JSON escape becomes the byte that the catalog's
	 * message then quotes; the message shows it escaped, a tab stays a tab */
	kv_add(SM_CK_NODES "n1", base_nodes, 3);
	kv_add(SM_CK_WORKLOADS "w1",
	       "{\"name\":\"w1\",\"node\":\"n1\",\"cgroup\":\"a/w1\","
	       "\"spiffe_id\":\"spiffe://x/\\u001b]0;owned\\u0007\\t\"}",
	       4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a value with escapes");
	ASSERT_STR_EQ(bad_key, PREFIX "config/catalog/workloads/w1", "bad_key");
	ASSERT_HAS(err.msg, "'spiffe://x/\\x1b]0;owned\\x07\t'", err.msg);
	ASSERT_EQ(strchr(err.msg, 0x1b) == NULL, 1, err.msg);
	cleanup(NULL);

	/* a status value (any node may write its own) */
	static const char applied[] = "{\"node\":\"n\\u001b1\",\"revision\":\"x\"}";
	struct sm_cluster_applied a;

	ASSERT_EQ(sm_cluster_applied_parse(applied, strlen(applied), &a, &err), -EINVAL, applied);
	ASSERT_EQ(strchr(err.msg, 0x1b) == NULL, 1, err.msg);
}

static void test_build_handwritten_yaml(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};

	/* what someone writes with etcdctl put: block YAML, a service keyed by address */
	kv_add(SM_CK_NODES "n1", "name: n1\naddresses:\n  - 10.0.0.1\n  - fc00::1\n", 3);
	kv_add(SM_CK_WORKLOADS "w1",
	       "name: w1\nnode: n1\ncgroup: a/w1\nspiffe_id: spiffe://example.org/w1\n", 4);
	kv_add(SM_CK_SERVICES "fc00--9_443", "address: \"fc00::9\"\nport: 443\nworkload: w1\n", 5);
	kv_add(SM_CK_POLICIES "p1",
	       "name: p1\nselector: {spiffe: \"spiffe://example.org/w1\"}\n"
	       "rules:\n  - action: ALLOW\n    from: [any]\n",
	       6);
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	ASSERT_EQ(st.cat.nnodes, 1, "nodes");
	ASSERT_EQ(st.cat.nodes[0].naddrs, 2, "addresses");
	ASSERT_EQ(st.cat.nservices, 1, "services");
	ASSERT_EQ(st.cat.services[0].port, 443, "port");
	ASSERT_EQ(st.policies.npolicies, 1, "policies");
	ASSERT_STR_EQ(st.policies.policies[0].name, "p1", "policy");
	ASSERT_EQ(st.catalog_revision, 5, "catalog revision");
	ASSERT_EQ(st.policy_revision, 6, "policy revision");
	cleanup(NULL);

	/* a service keyed by another address than its own */
	kv_add(SM_CK_NODES "n1", base_nodes, 3);
	kv_add(SM_CK_SERVICES "10.0.0.1_80", "{\"address\":\"10.0.0.1\",\"port\":81}", 4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a service under another address");
	ASSERT_HAS(err.msg, "the service is '10.0.0.1_81' but its key says '10.0.0.1_80'", err.msg);
}

static void test_value_json(void **state)
{
	struct sm_error err = {""};
	static const char yaml[] = "name: n1\naddresses: [10.0.0.1]\nport: 0x10\n";
	size_t len = 0;
	char *s;

	s = sm_cluster_value_json(yaml, strlen(yaml), "k", &len, &err);
	text = s; /* freed by teardown if a check fails */
	ASSERT_NOT_NULL(s, err.msg);
	ASSERT_STR_EQ(s, "{\"name\":\"n1\",\"addresses\":[\"10.0.0.1\"],\"port\":\"0x10\"}",
		      "YAML as one line of JSON");
	ASSERT_EQ(len, strlen(s), "length");
	s = sm_cluster_value_json("[1]", 3, "k", &len, &err);
	ASSERT_EQ(s == NULL, 1, "a list is refused");
	ASSERT_HAS(err.msg, "k: expected a mapping, found a list", err.msg);
}

static void test_build_empty(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};

	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	ASSERT_EQ(st.cat.nnodes, 0, "an empty catalog");
	ASSERT_EQ(st.catalog_len, 0, "an empty document");
	ASSERT_STR_EQ(st.catalog_doc, "", "an empty document");
	ASSERT_EQ(st.policies.npolicies, 0, "no policies");
	ASSERT_EQ(st.catalog_revision, 0, "no catalog revision");
	cleanup(NULL);

	/* policies before any catalog: kept, compiled against an empty catalog */
	kv_add(SM_CK_GENERATION, "{}", 7);
	kv_add(SM_CK_POLICIES "p1",
	       "{\"name\":\"p1\",\"selector\":{\"spiffe\":\"spiffe://example.org/a\"},"
	       "\"rules\":[{\"action\":\"DENY\",\"from\":[\"any\"]}]}",
	       8);
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	ASSERT_EQ(st.cat.nnodes, 0, "still no catalog");
	ASSERT_EQ(st.policies.npolicies, 1, "the policy");
	ASSERT_EQ(st.nkeys, 2, "keys");
}

static const char policy_file[] =
	"policies:\n"
	"  - name: web-from-api\n"
	"    selector:\n"
	"      spiffe: spiffe://example.org/ns/prod/sa/web\n"
	"      ports: [8080, \"9000-9010\"]\n"
	"    rules:\n"
	"      - action: ALLOW\n"
	"        from: [spiffe://example.org/ns/prod/sa/api, 10.0.0.0/8, \"fc00::/7\"]\n"
	"        description: \"line\\u2028break\"\n"
	"  - name: audit-all\n"
	"    selector: {spiffe: \"spiffe://example.org/*\"}\n"
	"    rules: [{action: AUDIT, from: [any]}]\n";

static void test_policies_round_trip(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};
	struct sm_policy_set orig;

	ASSERT_EQ(sm_policy_set_parse(&orig, policy_file, strlen(policy_file), "p.yaml", &err), 0,
		  err.msg);
	ASSERT_EQ(
		sm_cluster_split_policies(policy_file, strlen(policy_file), "p.yaml", &objs, &err),
		0, err.msg);
	ASSERT_EQ(objs.n, 2, "policies");
	ASSERT_STR_EQ(objs.objs[0].key, "config/policies/audit-all", "sorted by name");
	ASSERT_EQ(objs.objs[0].line, 10, "line");
	ASSERT_STR_EQ(objs.objs[1].key, "config/policies/web-from-api", "key");
	ASSERT_HAS(objs.objs[1].value, "\\u2028", "a line separator stays escaped");
	objs_to_kvs();
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	ASSERT_EQ(sm_policy_set_equal(&st.policies, &orig), 1, "the same set");
	ASSERT_EQ(st.policy_revision, 11, "policy revision");
	sm_policy_set_free(&orig);

	/* split refuses what the parser refuses, with its message */
	sm_cluster_objs_free(&objs);
	ASSERT_EQ(sm_cluster_split_policies("policies: [{name: X}]", 21, "p.yaml", &objs, &err),
		  -EINVAL, "a bad policy");
	ASSERT_HAS(err.msg, "p.yaml:1:", err.msg);
}

static void test_policy_errors_name_keys(void **state)
{
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err;

	kv_add(SM_CK_POLICIES "a",
	       "{\"name\":\"a\",\"selector\":{\"spiffe\":\"spiffe://example.org/a\"},"
	       "\"rules\":[{\"action\":\"DENY\",\"from\":[\"any\"]}]}",
	       3);
	kv_add(SM_CK_POLICIES "b",
	       "{\"name\":\"b\",\"selector\":{\"spiffe\":\"spiffe://example.org/b\"},"
	       "\"rules\":[{\"action\":\"PERMIT\",\"from\":[\"any\"]}]}",
	       4);
	kv_add(SM_CK_POLICIES "c",
	       "{\"name\":\"c\",\"selector\":{\"spiffe\":\"spiffe://example.org/c\"},"
	       "\"rules\":[{\"action\":\"DENY\",\"from\":[\"any\"]}]}",
	       5);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a bad action");
	ASSERT_STR_EQ(bad_key, PREFIX "config/policies/b", "the key of the bad policy");
	ASSERT_HAS(err.msg, PREFIX "config/policies/b: ", err.msg);
	ASSERT_HAS(err.msg, "PERMIT", err.msg);
	cleanup(NULL);

	/* an upper-case name fits a key but not a policy */
	kv_add(SM_CK_POLICIES "Bad",
	       "{\"name\":\"Bad\",\"selector\":{\"spiffe\":\"spiffe://example.org/b\"},"
	       "\"rules\":[{\"action\":\"DENY\",\"from\":[\"any\"]}]}",
	       4);
	ASSERT_EQ(build(&err, bad_key), -EINVAL, "a bad policy name");
	ASSERT_STR_EQ(bad_key, PREFIX "config/policies/Bad", "bad_key");
}

/* 50,000 policies: split and built in linear time (a generous CPU-time bound under ASan). */
static void test_50k_policies(void **state)
{
	const size_t n = 50000;
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};
	size_t cap = n * 200 + 64, len = 0;
	clock_t start;
	double cpu;

	text = malloc(cap);
	assert_non_null(text);
	len += (size_t) snprintf(text + len, cap - len, "policies:\n");
	for (size_t i = 0; i < n; i++)
		len += (size_t) snprintf(text + len, cap - len,
					 "- {name: p%zu, selector: {spiffe: "
					 "\"spiffe://example.org/w%zu\"}, rules: [{action: ALLOW, "
					 "from: [\"spiffe://example.org/c%zu\"]}]}\n",
					 i, i, i % 97);
	start = clock();
	ASSERT_EQ(sm_cluster_split_policies(text, len, "big.yaml", &objs, &err), 0, err.msg);
	ASSERT_EQ(objs.n, n, "objects");
	objs_to_kvs();
	ASSERT_EQ(build(&err, bad_key), 0, err.msg);
	cpu = (double) (clock() - start) / CLOCKS_PER_SEC;
	ASSERT_EQ(st.policies.npolicies, n, "policies built");
	print_message("50,000 policies split and built in %.2f s of CPU time\n", cpu);
	/* quadratic work on 50,000 keys would take minutes; this takes seconds under ASan */
	ASSERT_EQ(cpu < 60.0, 1, "CPU time under 60 s");
}

static void assert_same_applied(const struct sm_cluster_applied *b,
				const struct sm_cluster_applied *a)
{
	ASSERT_STR_EQ(b->node, a->node, "node");
	ASSERT_EQ(b->revision, a->revision, "revision");
	ASSERT_EQ(b->catalog_revision, a->catalog_revision, "catalog_revision");
	ASSERT_EQ(b->policy_revision, a->policy_revision, "policy_revision");
	ASSERT_EQ(b->local_policy_revision, a->local_policy_revision, "local_policy_revision");
	ASSERT_EQ(b->connected, a->connected, "connected");
	ASSERT_STR_EQ(b->stale_since, a->stale_since, "stale_since");
	ASSERT_EQ(b->refused_revision, a->refused_revision, "refused_revision");
	ASSERT_STR_EQ(b->refused_key, a->refused_key, "refused_key");
	ASSERT_STR_EQ(b->refused_reason, a->refused_reason, "refused_reason");
	ASSERT_STR_EQ(b->updated, a->updated, "updated");
}

static void test_applied_round_trip(void **state)
{
	struct sm_cluster_applied a = {
		.node = "node1",
		.revision = 42,
		.catalog_revision = 40,
		.policy_revision = 41,
		.local_policy_revision = 7,
		.connected = true,
		.stale_since = "",
		.refused_revision = 42,
		.refused_key = PREFIX "config/policies/p",
		.refused_reason = "a \"quoted\" reason\nover two lines",
		.updated = "2026-12-06T09:00:00.000000Z",
	};
	struct sm_cluster_applied b;
	struct sm_error err = {""};
	char *s = sm_cluster_applied_json(&a);

	ASSERT_NOT_NULL(s, "serialised");
	ASSERT_EQ(strchr(s, '\n') == NULL, 1, "one line");
	ASSERT_EQ(sm_cluster_applied_parse(s, strlen(s), &b, &err), 0, err.msg);
	free(s);
	assert_same_applied(&b, &a);

	a.refused_revision = 0;
	a.refused_key[0] = a.refused_reason[0] = '\0';
	sm_strlcpy(a.stale_since, "2026-12-06T09:00:01.000000Z", sizeof(a.stale_since));
	a.connected = false;
	s = sm_cluster_applied_json(&a);
	ASSERT_NOT_NULL(s, "serialised");
	ASSERT_HAS(s, "\"refused\":null", "nothing refused is null");
	ASSERT_EQ(sm_cluster_applied_parse(s, strlen(s), &b, &err), 0, err.msg);
	free(s);
	assert_same_applied(&b, &a);
}

static void test_applied_parse_strict(void **state)
{
#define GOOD_HEAD "{\"node\":\"n1\",\"revision\":5,\"catalog_revision\":4,\"policy_revision\":3,"
#define GOOD_TAIL "\"stale_since\":null,\"refused\":null,\"updated\":\"t\"}"
	static const struct {
		const char *json, *want;
	} bad[] = {
		{"", "not one JSON object"},
		{"[1]", "not a JSON object"},
		{GOOD_HEAD "\"local_policy_revision\":0,\"connected\":true," GOOD_TAIL " x",
		 "not one JSON object"},
		{"{\"revision\":5}", "missing 'node'"},
		{"{\"node\":5}", "'node' is not a string"},
		{"{\"node\":\"n1\",\"revision\":\"5\"}", "'revision' is not an integer"},
		{"{\"node\":\"n1\",\"revision\":-1}", "'revision' is out of range"},
		{GOOD_HEAD "\"local_policy_revision\":4294967296,\"connected\":true," GOOD_TAIL,
		 "'local_policy_revision' is out of range"},
		{GOOD_HEAD "\"local_policy_revision\":0,\"connected\":1," GOOD_TAIL,
		 "'connected' is not true or false"},
		{GOOD_HEAD "\"local_policy_revision\":0,\"connected\":true,\"stale_since\":null,"
			   "\"refused\":{\"revision\":0,\"key\":\"k\",\"reason\":\"r\"},"
			   "\"updated\":\"t\"}",
		 "refused.revision must be at least 1"},
		{GOOD_HEAD "\"local_policy_revision\":0,\"connected\":true,\"stale_since\":null,"
			   "\"refused\":{\"revision\":3,\"key\":\"k\"},\"updated\":\"t\"}",
		 "missing 'reason'"},
		{GOOD_HEAD "\"local_policy_revision\":0,\"connected\":true,\"stale_since\":null,"
			   "\"refused\":\"yes\",\"updated\":\"t\"}",
		 "'refused' is not an object"},
		{"{\"node\":\"n1234567890123456789012345678901234567890123456789012345678901234\"}",
		 "'node' is longer than 63 bytes"},
	};
	struct sm_cluster_applied a;
	struct sm_error err;

	for (size_t i = 0; i < SM_ARRAY_SIZE(bad); i++) {
		err.msg[0] = '\0';
		ASSERT_EQ(sm_cluster_applied_parse(bad[i].json, strlen(bad[i].json), &a, &err),
			  -EINVAL, bad[i].json);
		ASSERT_HAS(err.msg, bad[i].want, bad[i].json);
		ASSERT_EQ(a.node[0], 0, "nothing on error");
	}
	/* unknown members are ignored: a newer node may write more */
	static const char newer[] = GOOD_HEAD "\"local_policy_revision\":0,\"connected\":true,"
					      "\"extra\":[1],\"stale_since\":null,\"refused\":null,"
					      "\"updated\":\"t\"}\n";
	ASSERT_EQ(sm_cluster_applied_parse(newer, strlen(newer), &a, &err), 0, err.msg);
	ASSERT_EQ(a.revision, 5, "revision");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_prefix_check, cleanup),
		cmocka_unit_test_teardown(test_split_catalog_keys, cleanup),
		cmocka_unit_test_teardown(test_split_catalog_errors, cleanup),
		cmocka_unit_test_teardown(test_catalog_round_trip, cleanup),
		cmocka_unit_test_teardown(test_unit_workloads_round_trip, cleanup),
		cmocka_unit_test_teardown(test_build_is_order_independent, cleanup),
		cmocka_unit_test_teardown(test_build_errors_name_keys, cleanup),
		cmocka_unit_test_teardown(test_build_key_too_long, cleanup),
		cmocka_unit_test_teardown(test_build_hostile_key_in_message, cleanup),
		cmocka_unit_test_teardown(test_build_handwritten_yaml, cleanup),
		cmocka_unit_test_teardown(test_build_empty, cleanup),
		cmocka_unit_test_teardown(test_value_json, cleanup),
		cmocka_unit_test_teardown(test_policies_round_trip, cleanup),
		cmocka_unit_test_teardown(test_policy_errors_name_keys, cleanup),
		cmocka_unit_test_teardown(test_50k_policies, cleanup),
		cmocka_unit_test_teardown(test_applied_round_trip, cleanup),
		cmocka_unit_test_teardown(test_applied_parse_strict, cleanup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
