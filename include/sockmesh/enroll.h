/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Enrollment by cgroup path (bpf/lib/enroll.h, userspace/daemon/enroll.c).
 * See common.h for the rules.
 *
 * The programs are attached once, to the node's enrollment root (a cgroup the
 * operator names, e.g. system.slice; never the cgroup v2 root), and so run for
 * every cgroup below it, including ones created later, from their first
 * syscall. Which of those cgroups is a workload is decided in the kernel, at
 * each lookup, from the cgroup's path below the root: its kernfs names. A
 * cgroup removed and made again with the same name (a service restart) is
 * the same workload from its first connect(), whatever its new cgroup id; a
 * cgroup below a workload's belongs to that workload (the nearest enrolled
 * ancestor wins).
 *
 * The "enroll_paths" hash map holds the local workloads' paths as a tree of
 * names: one entry per path component, keyed by its parent's node id (0 =
 * the enrollment root) and its name. The value is the component's own node
 * id and, for a workload's cgroup, the workload. Node ids are a hash of the
 * component's path, computed by the daemon only; the kernel only follows
 * them and compares whole names, so a cgroup name can never forge one.
 */
#ifndef SOCKMESH_ENROLL_H
#define SOCKMESH_ENROLL_H

#include "sockmesh/common.h"
#include "sockmesh/intercept.h"

/*
 * Longest cgroup name (one path component, without its NUL) that can be
 * enrolled; the kernel allows 255. The catalog refuses longer ones. The key
 * has room for one byte more, so that a longer name, which the kernel side
 * reads cut short, is recognised as too long and never matches.
 */
#define SM_ENROLL_NAME_MAX 246
/* Deepest workload cgroup below the enrollment root, in path components. */
#define SM_ENROLL_MAX_DEPTH 16
/* Deepest enrollment root below the cgroup v2 root, in path components. */
#define SM_ENROLL_MAX_ROOT_LEVEL 32

/* enroll_paths key: one path component under its parent. */
struct sm_enroll_key {
	__u64 parent;			   /* the parent's node id; 0 = the enrollment root */
	char name[SM_ENROLL_NAME_MAX + 2]; /* NUL-terminated, zero-padded */
};

/* enroll_paths value. */
struct sm_enroll_node {
	__u64 node; /* this component's node id (never 0) */
	/* identity 0: a directory on the way to a workload, not a workload itself */
	struct sm_workload wl;
};

#endif /* SOCKMESH_ENROLL_H */
