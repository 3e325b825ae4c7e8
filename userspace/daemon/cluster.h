/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_CLUSTER_H
#define SOCKMESHD_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

struct sm_daemon;
struct sm_config;
struct json_object;

/*
 * cluster.c: cluster mode (docs/cluster.md). The catalog and the policy set
 * come from etcd instead of files: a watcher thread lists and watches the
 * prefix's config/ keys and hands every new state to the main loop, which
 * puts it in force through the same code as a reload and a policy apply; a
 * reporter thread keeps the node's registration and applied state in etcd
 * under a lease. What is in force is saved in <state_dir>/cluster.json, so
 * a node that starts while etcd is away enforces what it had (fail static).
 */

/* Cluster mode is on: cluster.etcd.endpoints is set. */
bool sm_cluster_enabled(const struct sm_config *cfg);

/*
 * Before anything is attached, in place of reading the catalog file: the
 * catalog from <state_dir>/cluster.json, else (a first start) from etcd,
 * waiting up to cluster.start_timeout. Fills d->cat. check_only: only
 * the configuration is checked (etcd is not asked). 0, -EINVAL (bad
 * configuration or state: exit 2) or -errno.
 */
int sm_cluster_prepare(struct sm_daemon *d, bool check_only);
/*
 * After sm_policy_start(), before the programs attach: put the saved (or
 * first listed) cluster policy in force, so the node never enforces less
 * than it last had. 0 or -errno.
 */
int sm_cluster_restore_policy(struct sm_daemon *d);
/* Once ready: start watching etcd and reporting to it. 0 or -errno. */
int sm_cluster_start(struct sm_daemon *d);
/* Stop both threads and remove the node's registration (its lease). */
void sm_cluster_stop(struct sm_daemon *d);
void sm_cluster_free(struct sm_daemon *d);

/* What status, /readyz and the metrics show (any thread). */
struct sm_cluster_info {
	bool enabled;
	bool connected;		  /* the last request to etcd succeeded */
	int64_t revision;	  /* the store revision config/ is applied up to */
	int64_t catalog_revision; /* of the catalog in force */
	int64_t policy_revision;  /* of the policy set in force */
	int64_t last_contact_s;	  /* seconds since etcd last answered; -1: never */
	int64_t stale_s;	  /* seconds since etcd stopped answering; 0: it answers */
	bool refusing;		  /* the newest state was refused; the last good one is kept */
	int64_t refused_revision;
	uint64_t applied_total; /* states put in force */
	uint64_t refused_total; /* states refused */
};

void sm_cluster_info(const struct sm_daemon *d, struct sm_cluster_info *out);
/* status's "cluster" object (main thread). */
struct json_object *sm_cluster_status(const struct sm_daemon *d);

#endif /* SOCKMESHD_CLUSTER_H */
