/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster mode's data in etcd: where each thing lives under the key prefix,
 * how a catalog or policy file becomes keys, and how the keys become one
 * catalog and one policy set again. The node daemon (daemon/cluster.c) and
 * the CLI (cli/cmd_cluster.c) both use it, so they agree on every key.
 *
 * Layout under PREFIX (cluster.etcd.prefix, default "/sockmesh/", always
 * ending in '/'):
 *
 *   PREFIX config/catalog/nodes/NAME       one node, as in the catalog file's nodes: list
 *   PREFIX config/catalog/workloads/NAME   one workload
 *   PREFIX config/catalog/services/NAME    one service: its name, else ADDRESS_PORT
 *   PREFIX config/catalog/cidrs/NAME       one CIDR of cidrs:, NAME = ADDRESS_PREFIX
 *   PREFIX config/policies/NAME            one policy (docs/policy.md), named NAME
 *   PREFIX config/generation               rewritten by every sockmesh write (see below)
 *   PREFIX status/nodes/NODE               registration, under the node's lease
 *   PREFIX status/applied/NODE             applied state, under the node's lease
 *
 * Nodes watch PREFIX config/ only, so one node's status writes never reach
 * the others. Values under config/ are JSON objects with exactly the fields
 * the files have (YAML that parses to a mapping is accepted too, for keys
 * written by hand with etcdctl). NAME is the object's name: [A-Za-z0-9._-],
 * 1..63 bytes; a services key without a name is "ADDRESS_PORT" and a cidrs
 * key "ADDRESS_PREFIX" (10.0.0.0_8), with ':' in an IPv6 address written as
 * '-' and the address as sm_addr_format() writes it.
 *
 * Writes by sockmesh are one transaction that compares config/generation's
 * mod_revision with the one the diff was made from, and every config/ key's
 * mod_revision with the revision it was read at, so a concurrent writer
 * (sockmesh or etcdctl) makes it fail with a conflict, never a merge.
 */
#ifndef SOCKMESH_CLUSTERSTORE_H
#define SOCKMESH_CLUSTERSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "etcd.h"
#include "policy.h"
#include "util.h"

#define SM_CLUSTER_PREFIX_DEFAULT "/sockmesh/"
#define SM_CLUSTER_PREFIX_MAX	  128
#define SM_CLUSTER_KEY_MAX	  (SM_CLUSTER_PREFIX_MAX + 128)

/* Relative paths under the prefix. */
#define SM_CK_CONFIG	 "config/"
#define SM_CK_CATALOG	 "config/catalog/"
#define SM_CK_NODES	 "config/catalog/nodes/"
#define SM_CK_WORKLOADS	 "config/catalog/workloads/"
#define SM_CK_SERVICES	 "config/catalog/services/"
#define SM_CK_CIDRS	 "config/catalog/cidrs/"
#define SM_CK_POLICIES	 "config/policies/"
#define SM_CK_GENERATION "config/generation"
#define SM_CK_STATUS	 "status/"
#define SM_CK_REG	 "status/nodes/"
#define SM_CK_APPLIED	 "status/applied/"

/* A prefix is "/" followed by printable ASCII without spaces, ending in '/'. 0 or -EINVAL. */
int sm_cluster_prefix_check(const char *prefix, struct sm_error *err);

/* One object as a key (relative to the prefix) and its value (one line of JSON). */
struct sm_cluster_obj {
	char key[SM_CLUSTER_KEY_MAX];
	char *value;
	size_t value_len;
	unsigned int line; /* where the object starts in the file it was split from */
};

struct sm_cluster_objs {
	struct sm_cluster_obj *objs;
	size_t n;
};

void sm_cluster_objs_free(struct sm_cluster_objs *objs);

/*
 * A catalog file's text (all or part of a catalog: any of nodes:,
 * workloads:, services:, cidrs:) as objects, one per list item, in file
 * order; an empty document is no objects.
 * Checks the text, the structure and each object's name; the whole catalog
 * is checked later, by sm_cluster_build(), once merged with what is in
 * etcd. Two objects with the same key are an error naming both lines.
 * 0 or -errno with err = "NAME:LINE: what is wrong".
 */
int sm_cluster_split_catalog(const char *text, size_t len, const char *name,
			     struct sm_cluster_objs *out, struct sm_error *err);
/* A policy file's text (docs/policy.md) as one object per policy, checked as the parser does. */
int sm_cluster_split_policies(const char *text, size_t len, const char *name,
			      struct sm_cluster_objs *out, struct sm_error *err);

/*
 * A value under config/ (JSON, or YAML written by hand) as the one line of
 * JSON sockmesh would have written: for printing what a key holds. Returns
 * a malloc'ed string (*len bytes), or NULL with err = "NAME:LINE: ..." when
 * it is not a mapping (errno EINVAL or ENOMEM).
 */
char *sm_cluster_value_json(const char *value, size_t len, const char *name, size_t *out_len,
			    struct sm_error *err);

/* Everything under PREFIX config/, made into what a node enforces. */
struct sm_cluster_state {
	struct sm_catalog cat;
	struct sm_policy_set policies;
	char *catalog_doc; /* the catalog as one YAML document (sm_catalog_parse() reads it) */
	size_t catalog_len;
	char *policy_doc; /* the policy set as one JSON document (sm_policy_set_parse()) */
	size_t policy_len;
	int64_t revision;	  /* the store's revision the keys were read at */
	int64_t catalog_revision; /* the highest mod_revision among catalog keys (0: none) */
	int64_t policy_revision;  /* the same among policy keys */
	size_t nkeys;		  /* config/ keys it was made from (generation included) */
};

/*
 * Build a state from the keys under PREFIX config/ (kvs: full keys, any
 * order) read at revision. Each value must parse to a mapping that is a
 * valid object of its kind with the name its key says; then the whole
 * catalog must load (sm_catalog_parse()) and the policy set parse. Keys
 * under config/ that fit none of the kinds are an error too. Returns 0, or
 * -EINVAL with bad_key = the offending key ("" when no single key is to
 * blame, or when the key does not fit in bad_key_len: only a key outside
 * the layout can be that long, and err then gives its length and start)
 * and err = "KEY: what is wrong" (the catalog's messages name the key of
 * the line they are about). out holds nothing to free on error.
 *
 * No catalog key at all is not an error: cat is then empty (no nodes; what
 * sm_catalog_parse() would refuse), catalog_doc "" and catalog_revision 0,
 * so that policies can be stored before the catalog (a node then has no
 * catalog to apply yet). Catalog keys without a node are an error.
 */
int sm_cluster_build(const char *prefix, const struct sm_etcd_kv *kvs, size_t n, int64_t revision,
		     struct sm_cluster_state *out, char *bad_key, size_t bad_key_len,
		     struct sm_error *err);
void sm_cluster_state_free(struct sm_cluster_state *st);

/*
 * The status values nodes write (JSON objects), read by `sockmesh status
 * --cluster` and `--wait`:
 *
 * status/nodes/NODE: {"node": NAME, "addresses": [..], "version": "x.y.z",
 *   "ready": bool, "pid": N, "started": RFC 3339}
 * status/applied/NODE: {"node": NAME, "revision": N (config/ is applied up to
 *   this store revision), "catalog_revision": N, "policy_revision": N,
 *   "local_policy_revision": N, "connected": bool, "stale_since": RFC 3339 or
 *   null, "refused": null or {"revision": N, "key": K, "reason": R},
 *   "updated": RFC 3339}
 */
struct sm_cluster_applied {
	char node[SM_NAME_MAX];
	int64_t revision;
	int64_t catalog_revision;
	int64_t policy_revision;
	uint32_t local_policy_revision;
	bool connected;
	char stale_since[40];	  /* "" = not stale */
	int64_t refused_revision; /* 0: nothing refused */
	char refused_key[SM_CLUSTER_KEY_MAX];
	char refused_reason[512];
	char updated[40];
};

/* Serialise / parse an applied-state value. Parse: 0 or -EINVAL with err. */
char *sm_cluster_applied_json(const struct sm_cluster_applied *a);
int sm_cluster_applied_parse(const char *json, size_t len, struct sm_cluster_applied *a,
			     struct sm_error *err);

#endif /* SOCKMESH_CLUSTERSTORE_H */
