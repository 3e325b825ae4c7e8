/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The catalog: the mesh-wide list of nodes, workloads and services, read from
 * a YAML file. Format in docs/catalog.md.
 *
 * Identities: every distinct SPIFFE ID gets a numeric identity, allocated
 * deterministically as SM_ID_FIRST_ALLOCATED + its index in the sorted list of
 * distinct SPIFFE IDs, so every node reading the same catalog agrees.
 */
#ifndef SOCKMESH_CATALOG_H
#define SOCKMESH_CATALOG_H

#include <limits.h>
#include <stdint.h>

#include "sdunit.h"
#include "util.h"

#define SM_NAME_MAX	  64
#define SM_SPIFFE_MAX	  256
#define SM_NODE_ADDRS_MAX 4

enum sm_mode {
	SM_MODE_PERMISSIVE = 0,
	SM_MODE_STRICT = 1,
};

struct sm_node_def {
	char name[SM_NAME_MAX];
	unsigned int naddrs;
	struct sm_addr addrs[SM_NODE_ADDRS_MAX]; /* addresses: the node's own addresses */
	char credentials[PATH_MAX]; /* optional absolute directory (tlsctx.h); "" when absent */
};

struct sm_workload_def {
	char name[SM_NAME_MAX]; /* unique */
	unsigned int node;	/* index into nodes */
	char cgroup[PATH_MAX];	/* path relative to the cgroup v2 mount, no leading '/' */
	/* unit: the systemd unit cgroup was computed from (sdunit.h), "" for a path */
	char unit[SM_UNIT_NAME_MAX];
	char slice[SM_UNIT_NAME_MAX]; /* slice: as given, "" when absent or a path */
	char spiffe_id[SM_SPIFFE_MAX];
	enum sm_mode mode;	    /* mode: strict|permissive, default strict */
	uint32_t identity;	    /* allocated, see above */
	char credentials[PATH_MAX]; /* optional absolute directory (tlsctx.h); "" when absent */
};

struct sm_service_def {
	char name[SM_NAME_MAX]; /* optional; "" when absent */
	struct sm_addr addr;
	uint16_t port;	       /* host order */
	unsigned int workload; /* index into workloads */
};

struct sm_cidr_def {
	struct sm_addr addr;
	uint8_t prefix;
	int workload;	   /* index into workloads, or -1: not a workload */
	uint32_t identity; /* workload's identity, or SM_ID_WORLD */
};

struct sm_catalog {
	struct sm_node_def *nodes;
	unsigned int nnodes;
	struct sm_workload_def *workloads;
	unsigned int nworkloads;
	struct sm_service_def *services;
	unsigned int nservices;
	struct sm_cidr_def *cidrs;
	unsigned int ncidrs;
	/* the first workload of each identity, by identity - SM_ID_FIRST_ALLOCATED */
	unsigned int *by_identity;
	unsigned int nidentities;
	/* the services' indices by address and port, for sm_catalog_service_at() */
	unsigned int *services_by_addr;
};

/*
 * Parse and validate a catalog file into cat (zeroed first). Checks: the
 * text (UTF-8, no NUL or control character: sm_yaml_text_check()), required
 * keys, unknown keys, types, unique names, unique node addresses, a
 * workload's cgroup given as a path or as a systemd unit (and slice) turned
 * into one (sdunit.h), unique cgroups per node, unique service address:port and CIDRs, references
 * to existing nodes/workloads, valid SPIFFE IDs ("spiffe://trust-domain/path"), ports 1..65535,
 * CIDR host bits zero, credentials directories given as absolute paths (their contents are read
 * later, by sm_creds_load()). Returns 0, or -errno with err->msg = "FILE:LINE: what is wrong (what
 * to do)"; on error cat holds nothing to free.
 *
 * Time and memory are linear in the file's size (hash tables for every
 * uniqueness check and reference; identities sorted, n log n). The load reads
 * the file and writes only cat and err: no global state, no logging, so it
 * may run on any thread (e.g. a reload next to an event loop) and the result
 * be swapped in afterwards; sm_catalog_free() releases it.
 */
int sm_catalog_load(struct sm_catalog *cat, const char *path, struct sm_error *err);
/* Same from a string; name is used in messages in place of the file name. */
int sm_catalog_parse(struct sm_catalog *cat, const char *yaml, size_t len, const char *name,
		     struct sm_error *err);
void sm_catalog_free(struct sm_catalog *cat);

/* Lookups: index, or -1 when absent. By name: a scan, for one-off lookups. */
int sm_catalog_node_index(const struct sm_catalog *cat, const char *name);
/* The first workload (in file order) with identity; constant time. */
int sm_catalog_workload_by_identity(const struct sm_catalog *cat, uint32_t identity);
/*
 * The service at a:port (addresses and ports are unique among services), or
 * -1; O(log services), a binary search. The flow export asks once per record
 * and the tunnel once per CONNECT, so a scan of the list would cost each of
 * them as much as the catalog is long. A catalog not made by
 * sm_catalog_parse() (no index) is scanned.
 */
int sm_catalog_service_at(const struct sm_catalog *cat, const struct sm_addr *a, uint16_t port);

/* "spiffe://td/path" with a valid trust domain and path (SPIFFE ID standard). */
bool sm_spiffe_id_valid(const char *id);

#endif /* SOCKMESH_CATALOG_H */
