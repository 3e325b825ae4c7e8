/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection policy in the kernel (docs/policy.md): the compiled entries
 * the connect hooks and the inbound daemon look up. See common.h for the
 * rules; the compiler is userspace/lib/policy_compile.c.
 *
 * Lookup contract (the kernel, the daemon and `policy explain` do exactly
 * this, in this order, first hit wins):
 *   1. {src, dst, dport}    2. {src, dst, 0}    3. {0, dst, dport}
 *   4. {0, dst, 0}          5. {SM_POLICY_SRC_DEFAULT, dst, 0}
 *   no hit: no policy selects dst, the connection is allowed.
 * The compiler makes each entry's value the final verdict for every
 * connection that reaches it (a DENY that covers a more specific ALLOW is
 * copied into it), so first-hit lookup is the full semantics.
 *
 * Identities: workloads' as in the catalog; SM_ID_HOST, SM_ID_WORLD; and
 * CIDR identities (SM_ID_CIDR_BASE + n) for sources named by CIDR, found with
 * the policy_cidrs LPM trie (key struct sm_cidr_key, value __u32 identity).
 * Ports are host order; 0 means every port.
 */
#ifndef SOCKMESH_POLICY_H
#define SOCKMESH_POLICY_H

#include "common.h"

#define SM_POLICY_SRC_DEFAULT 0xffffffffU /* key src of the per-destination fallback */
#define SM_ID_CIDR_BASE	      (1U << 24)  /* identities of policy CIDRs start here */

struct sm_policy_key {
	__u32 src_identity; /* 0 = any source, SM_POLICY_SRC_DEFAULT = fallback */
	__u32 dst_identity;
	__u16 dport; /* host order, 0 = any port */
	__u8 proto;  /* IPPROTO_TCP */
	__u8 pad;
};

enum sm_policy_action {
	SM_POLICY_ALLOW = 1,
	SM_POLICY_DENY = 2,
};

enum sm_policy_reason {
	SM_POLICY_R_RULE = 1,	      /* an ALLOW or DENY rule decided */
	SM_POLICY_R_DEFAULT_DENY = 2, /* selected by an ALLOW policy, no rule allowed this */
	SM_POLICY_R_NO_POLICY = 3,    /* only AUDIT rules select dst: allowed */
};

#define SM_POLICY_F_AUDIT (1U << 0) /* an AUDIT rule matched: report an AUDIT record */

struct sm_policy_value {
	__u8 action; /* enum sm_policy_action */
	__u8 reason; /* enum sm_policy_reason */
	__u8 flags;  /* SM_POLICY_F_* */
	__u8 pad;
	__u32 rule_id;	     /* the deciding rule (1-based, compiled order), 0 = none */
	__u32 audit_rule_id; /* with SM_POLICY_F_AUDIT: the first AUDIT rule that matched */
	__u32 revision;	     /* the policy set revision these entries belong to */
};

/* policy_state[0]: written by the daemon only, after the slot's maps are complete. */
struct sm_policy_state {
	__u32 slot;	/* 0 or 1: the live slot of policy_maps and policy_cidr_maps */
	__u32 revision; /* of the live slot */
	__u32 loaded;	/* 0: no policy set was ever applied, nothing is looked up */
	__u32 pad;
};

#endif /* SOCKMESH_POLICY_H */
