/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which workload a cgroup belongs to, decided from its path below the
 * enrollment root (include/sockmesh/enroll.h has the contract). Used by every
 * program that asks "is this socket a workload's?": the connect hooks (the
 * calling task's cgroup), sockops and the ingress program (the socket's).
 *
 * The cost is a few probe reads and one hash lookup per path component below
 * the root (a 256-byte key), and it stops at the first component that no
 * enrolled path has, so a cgroup outside every workload usually pays one.
 */
#ifndef SOCKMESH_BPF_ENROLL_H
#define SOCKMESH_BPF_ENROLL_H

#include "lib/common.h"

#include "sockmesh/enroll.h"

/* The enrollment root's cgroup id (its kernfs node id), set by the loader. */
const volatile __u64 cfg_enroll_root_id __weak = 0;

/*
 * The ancestor of cgrp at level (0 = the cgroup v2 root, cgrp->level =
 * cgrp itself), or NULL. struct cgroup has kept its ancestors[] since 6.1;
 * an older kernel fails the load here (fail closed), never enrolls nothing.
 */
static __always_inline struct cgroup *cgroup_ancestor(struct cgroup *cgrp, int level)
{
	struct cgroup *anc = NULL;

	if (bpf_core_read(&anc, sizeof(anc), &cgrp->ancestors[level]))
		return NULL;
	return anc;
}

/*
 * The workload cgrp belongs to: the deepest enrolled path among cgrp and its
 * ancestors below the enrollment root, or NULL (not below the root, or no
 * enrolled path). cgrp may be any kernel address of a struct cgroup (read
 * with probe reads only).
 */
static __always_inline struct sm_workload *cgroup_workload(struct cgroup *cgrp)
{
	struct sm_workload *found = NULL;
	struct sm_enroll_key key;
	struct sm_enroll_node *n;
	struct cgroup *anc;
	int level, root = -1;

	if (!cgrp || !cfg_enroll_root_id)
		return NULL;
	level = BPF_CORE_READ(cgrp, level);
	/* the root is a strict ancestor; typically one of the first few levels */
	for (int i = 0; i < SM_ENROLL_MAX_ROOT_LEVEL && i < level; i++) {
		anc = cgroup_ancestor(cgrp, i);
		if (anc && BPF_CORE_READ(anc, kn, id) == cfg_enroll_root_id) {
			root = i;
			break;
		}
	}
	if (root < 0)
		return NULL;
	key.parent = 0;
	for (int i = 1; i <= SM_ENROLL_MAX_DEPTH && root + i <= level; i++) {
		const char *name;
		long len;

		anc = cgroup_ancestor(cgrp, root + i);
		if (!anc)
			break;
		name = BPF_CORE_READ(anc, kn, name);
		__builtin_memset(key.name, 0, sizeof(key.name));
		len = bpf_probe_read_kernel_str(key.name, sizeof(key.name), name);
		/* a name that filled the key was cut short: longer than any enrolled one */
		if (len <= 1 || len >= (long) sizeof(key.name))
			break;
		n = bpf_map_lookup_elem(&enroll_paths, &key);
		if (!n)
			break; /* no enrolled path continues this way */
		if (n->wl.identity)
			found = &n->wl;
		key.parent = n->node;
	}
	return found;
}

/* The workload of the task running now (process context: the connect hooks). */
static __always_inline struct sm_workload *current_workload(void)
{
	struct task_struct *task = (struct task_struct *) bpf_get_current_task();

	return cgroup_workload(BPF_CORE_READ(task, cgroups, dfl_cgrp));
}

/*
 * The workload a socket belongs to, from the cgroup recorded in the socket
 * itself (valid in softirq context, and for accepted sockets, which inherit
 * their listener's cgroup). *cgid receives the socket's own cgroup id.
 */
static __always_inline struct sm_workload *sock_workload(struct sock *sk, __u64 *cgid)
{
	struct cgroup *cgrp = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);

	*cgid = cgrp ? BPF_CORE_READ(cgrp, kn, id) : 0;
	return cgroup_workload(cgrp);
}

#endif /* SOCKMESH_BPF_ENROLL_H */
