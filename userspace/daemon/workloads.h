/* SPDX-License-Identifier: Apache-2.0 */
/*
 * This node's catalog workloads as the kernel knows them: the cgroup id each
 * has now, and the index from a cgroup id back to its workload, which every
 * flow event consults (a hash: O(1) however many workloads the node runs).
 *
 * A leaf: it reads the catalog and the cgroup filesystem and calls no other
 * module of the daemon except the cgroup-id helper. Enrollment is by path
 * (include/sockmesh/enroll.h), so the ids only name records and `status`.
 *
 * Threads: the main thread makes, refreshes and frees it; any thread looks
 * up (a read-write lock, so a refresh for `status` while workers record is
 * safe).
 */
#ifndef SOCKMESHD_WORKLOADS_H
#define SOCKMESHD_WORKLOADS_H

#include <stdint.h>

struct sm_catalog;
struct sm_flow_endpoint;
struct sm_workloads;

/* For cat's workloads, no cgroup id known yet. NULL with errno set. */
struct sm_workloads *sm_workloads_new(const struct sm_catalog *cat);
void sm_workloads_free(struct sm_workloads *ws);
/*
 * Read the cgroup id of each of cat's workloads on node node_idx
 * (cgroup_root/<its cgroup>) as it is now, and index them; the others, and
 * workloads whose cgroup does not exist now, get 0. cat is the catalog ws
 * was made for. Out of memory, it says so and the index misses some.
 */
void sm_workloads_refresh(struct sm_workloads *ws, const struct sm_catalog *cat, int node_idx,
			  const char *cgroup_root);
/* The workload (catalog index) whose cgroup had id cgroup_id at the last refresh, or -1. */
int sm_workloads_by_cgroup(struct sm_workloads *ws, uint64_t cgroup_id);
/* Name endpoint ep after cat's workload wl: identity, SPIFFE ID, name, node, cgroup. */
void sm_workload_endpoint(const struct sm_catalog *cat, int wl, struct sm_flow_endpoint *ep);
/* Workload wl's cgroup id at the last refresh; 0: not on this node, or no such cgroup. */
uint64_t sm_workloads_cgroup(struct sm_workloads *ws, int wl);

#endif /* SOCKMESHD_WORKLOADS_H */
