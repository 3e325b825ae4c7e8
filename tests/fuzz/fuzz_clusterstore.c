// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target: what cluster mode reads from etcd. Any etcd client that
 * may write under PREFIX config/ (a hostile or buggy writer, a hand-made
 * etcdctl put) decides the keys and values a node builds its catalog and
 * policy set from, so they are untrusted input.
 *
 * Framing: the input is up to MAX_KVS records separated by the line "%%"
 * (that is, by "\n%%\n"); records past MAX_KVS are ignored. A record's first
 * line is its key, the rest (after the '\n') its value; a record without a
 * '\n' is a key with an empty value. A key that does not start with '/' is
 * relative to the default prefix "/sockmesh/" (so "config/policies/p" is
 * "/sockmesh/config/policies/p"); one that does is taken as it is. A key
 * holding a NUL byte is skipped (the etcd client refuses such keys). The
 * records are given to sm_cluster_build() in input order, each with
 * mod_revision = its index + 1, read at revision MAX_KVS + 1.
 *
 * The raw input is also given, whole, to sm_cluster_split_catalog(),
 * sm_cluster_split_policies(), sm_cluster_value_json() and
 * sm_cluster_applied_parse().
 *
 * Checks beyond "no crash, leak or undefined behaviour":
 *   - build succeeds, and then the catalog it made (catalog_doc) loads again
 *     with sm_catalog_parse() to as many nodes, workloads and services
 *     (unless there is no catalog key: catalog_doc is "" then), and its
 *     policy_doc parses with sm_policy_set_parse() to an equal set; or
 *   - build fails with a non-empty message without control characters but
 *     tabs (it quotes keys and values any writer chose, and reaches logs
 *     and terminals) and bad_key "" or one of the input's keys;
 *   - sm_cluster_value_json() and sm_cluster_applied_parse() (what the CLI
 *     reads from etcd) succeed or fail with such a message too;
 *   - the splits (of a file the operator gives the CLI) succeed or fail with
 *     a non-empty message; the objects they make have a key and a value,
 *     and each value reads back with sm_cluster_value_json().
 *
 * SM_FUZZ_DEBUG=1 in the environment prints what the build said, to see what
 * a seed or a saved input reaches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clusterstore.h"

#define MAX_KVS 16
#define SEP	"\n%%\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_clusterstore: %s: %s\n", what, detail);
	abort();
}

static char *dup_bytes(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* One record as a kv; false when it is to be skipped. */
static bool record_kv(const char *p, size_t n, int64_t rev, struct sm_etcd_kv *kv)
{
	const char *nl = memchr(p, '\n', n);
	size_t klen = nl ? (size_t) (nl - p) : n;
	const char *prefix = "";

	if (memchr(p, '\0', klen))
		return false;
	if (klen == 0 || p[0] != '/')
		prefix = SM_CLUSTER_PREFIX_DEFAULT;
	memset(kv, 0, sizeof(*kv));
	kv->key_len = strlen(prefix) + klen;
	kv->key = malloc(kv->key_len + 1);
	if (!kv->key)
		abort();
	memcpy(kv->key, prefix, strlen(prefix));
	memcpy(kv->key + strlen(prefix), p, klen);
	kv->key[kv->key_len] = '\0';
	if (nl)
		kv->value = dup_bytes(nl + 1, n - klen - 1);
	else
		kv->value = dup_bytes("", 0);
	kv->value_len = nl ? n - klen - 1 : 0;
	kv->create_revision = rev;
	kv->mod_revision = rev;
	kv->version = 1;
	return true;
}

static size_t split_records(const char *in, size_t size, struct sm_etcd_kv *kvs)
{
	size_t n = 0, off = 0, rec = 0;

	while (rec < MAX_KVS) {
		const char *start = in + off;
		const char *end = memmem(start, size - off, SEP, strlen(SEP));
		size_t len = end ? (size_t) (end - start) : size - off;

		if (record_kv(start, len, (int64_t) rec + 1, &kvs[n]))
			n++;
		rec++;
		if (!end)
			break;
		off += len + strlen(SEP);
	}
	return n;
}

/* A message of what reads etcd's values: not empty, no control character but a tab. */
static void check_msg(const char *what, const struct sm_error *err)
{
	if (err->msg[0] == '\0')
		fail(what, "failed without a message");
	for (const char *c = err->msg; *c; c++) {
		if (((unsigned char) *c < 0x20 && *c != '\t') || *c == 0x7f) {
			fprintf(stderr, "fuzz_clusterstore: %s: a control character in: %s\n", what,
				err->msg);
			abort();
		}
	}
}

static void check_build(const struct sm_etcd_kv *kvs, size_t n)
{
	struct sm_cluster_state st;
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err;

	memset(bad_key, 'x', sizeof(bad_key) - 1);
	bad_key[sizeof(bad_key) - 1] = '\0';
	err.msg[0] = '\0';
	if (sm_cluster_build(SM_CLUSTER_PREFIX_DEFAULT, kvs, n, MAX_KVS + 1, &st, bad_key,
			     sizeof(bad_key), &err) != 0) {
		bool known = bad_key[0] == '\0';

		for (size_t i = 0; i < n && !known; i++)
			known = strcmp(bad_key, kvs[i].key) == 0;
		if (!known)
			fail("build failed naming a key that is not in the input", bad_key);
		check_msg("build", &err);
		if (getenv("SM_FUZZ_DEBUG"))
			fprintf(stderr, "build: %s [%s]\n", err.msg, bad_key);
		return;
	}
	if (getenv("SM_FUZZ_DEBUG"))
		fprintf(stderr, "build: ok, %u nodes, %zu policies\n", st.cat.nnodes,
			st.policies.npolicies);
	if (st.catalog_len > 0) {
		struct sm_catalog cat;

		if (sm_catalog_parse(&cat, st.catalog_doc, st.catalog_len, "built.yaml", &err))
			fail("the built catalog does not load again", err.msg);
		if (cat.nnodes != st.cat.nnodes || cat.nworkloads != st.cat.nworkloads ||
		    cat.nservices != st.cat.nservices || cat.ncidrs != st.cat.ncidrs)
			fail("the built catalog loads again to other objects", st.catalog_doc);
		sm_catalog_free(&cat);
	} else if (st.cat.nnodes || st.cat.nworkloads || st.cat.nservices || st.cat.ncidrs) {
		fail("an empty catalog document for a catalog with objects", "");
	}
	if (st.policy_doc) {
		struct sm_policy_set set;

		if (sm_policy_set_parse(&set, st.policy_doc, st.policy_len, "built.json", &err))
			fail("the built policy set does not parse again", err.msg);
		if (!sm_policy_set_equal(&set, &st.policies))
			fail("the built policy set parses again to another set", st.policy_doc);
		sm_policy_set_free(&set);
	}
	sm_cluster_state_free(&st);
}

static void check_objs(int rc, struct sm_cluster_objs *objs, const struct sm_error *err)
{
	if (rc) {
		if (err->msg[0] == '\0')
			fail("a split failed without a message", "");
		return;
	}
	for (size_t i = 0; i < objs->n; i++) {
		const struct sm_cluster_obj *o = &objs->objs[i];
		struct sm_error verr;
		size_t len;
		char *json;

		if (o->key[0] == '\0' || !o->value || o->value_len != strlen(o->value))
			fail("a split made an object without a key or value", o->key);
		json = sm_cluster_value_json(o->value, o->value_len, o->key, &len, &verr);
		if (!json)
			fail("a split made a value that does not read back", verr.msg);
		free(json);
	}
	sm_cluster_objs_free(objs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *) data;
	struct sm_etcd_kv kvs[MAX_KVS];
	struct sm_cluster_objs objs;
	struct sm_cluster_applied a;
	struct sm_error err;
	size_t n, len;
	char *json;
	int rc;

	n = split_records(in, size, kvs);
	check_build(kvs, n);
	for (size_t i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}

	memset(&objs, 0, sizeof(objs));
	err.msg[0] = '\0';
	rc = sm_cluster_split_catalog(in, size, "fuzz.yaml", &objs, &err);
	check_objs(rc, &objs, &err);
	memset(&objs, 0, sizeof(objs));
	err.msg[0] = '\0';
	rc = sm_cluster_split_policies(in, size, "fuzz.yaml", &objs, &err);
	check_objs(rc, &objs, &err);

	err.msg[0] = '\0';
	json = sm_cluster_value_json(in, size, "fuzz", &len, &err);
	if (!json)
		check_msg("value_json", &err);
	free(json);

	err.msg[0] = '\0';
	if (sm_cluster_applied_parse(in, size, &a, &err))
		check_msg("applied_parse", &err);
	return 0;
}
