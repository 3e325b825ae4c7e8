/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The enroll_paths map's contents (include/sockmesh/enroll.h): the local
 * workloads' cgroup paths below the node's enrollment root, as a tree of
 * names keyed by their parent's node id. Pure computation, no kernel access:
 * the daemon writes what sm_enroll_build() emits (userspace/daemon/intercept.c).
 */
#ifndef SOCKMESH_ENROLLMENT_H
#define SOCKMESH_ENROLLMENT_H

#include <linux/types.h>
#include <stddef.h>
#include <stdint.h>

#include "sockmesh/enroll.h"

#include "util.h"

/* One local workload: its cgroup path relative to the enrollment root. */
struct sm_enroll_workload {
	const char *path; /* "a/b/c": no leading or trailing '/', no empty component */
	uint32_t identity;
	uint32_t flags; /* SM_WL_F_* */
};

/* Receives each map entry once; 0 or -errno stops the build. */
typedef int (*sm_enroll_emit_fn)(void *ctx, const struct sm_enroll_key *key,
				 const struct sm_enroll_node *node);

/*
 * Emit the entries for n workloads: one per distinct path component, a
 * workload's own component carrying its identity and flags, the components on
 * the way to it identity 0. 0, or -EINVAL with err set (a path too deep, a
 * component empty or too long, an identity 0), -ENOMEM, or emit's error.
 */
int sm_enroll_build(const struct sm_enroll_workload *wl, size_t n, sm_enroll_emit_fn emit,
		    void *ctx, struct sm_error *err);

/* The node id of the component name (len bytes) below parent: never 0. */
uint64_t sm_enroll_node_id(uint64_t parent, const char *name, size_t len);

/*
 * Why path (relative to the enrollment root) cannot be enrolled, or NULL:
 * empty, a component empty, "." or "..", longer than SM_ENROLL_NAME_MAX,
 * or deeper than SM_ENROLL_MAX_DEPTH.
 */
const char *sm_enroll_path_problem(const char *path);

/*
 * cgroup (an absolute path) relative to root (an absolute path), or NULL when
 * it is not strictly below root. Trailing slashes of root are ignored.
 */
const char *sm_enroll_relative(const char *root, const char *cgroup);

#endif /* SOCKMESH_ENROLLMENT_H */
