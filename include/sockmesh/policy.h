/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection policy in the kernel (docs/policy.md): the compiled entries
 * the connect hooks and the inbound daemon look up. See common.h for the
 * rules; the compiler is userspace/lib/policy_compile.c.
 *
 * Lookup contract (the kernel, the daemon and `policy explain` do exactly
 * this, in this order, first hit wins; sm_policy_step_key_fill() below is
 * the one definition all of them use):
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

#include "sockmesh/common.h"

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

/*
 * The lookup contract's steps as a table: step n (1..SM_POLICY_STEPS, most
 * specific first) looks up the key {SOURCE, dst, PORT ? dport : 0}, SOURCE
 * being the caller's identity, 0 (any source) or SM_POLICY_SRC_DEFAULT.
 * X(n, SOURCE, PORT) for each step, in order.
 */
enum sm_policy_step_source {
	SM_POLICY_STEP_CALLER = 1,   /* the source identity looked up */
	SM_POLICY_STEP_ANY = 2,	     /* 0: a rule for every source */
	SM_POLICY_STEP_FALLBACK = 3, /* SM_POLICY_SRC_DEFAULT: what selects dst at all */
};

#define SM_POLICY_LOOKUP_STEPS(X)                                                                  \
	X(1, SM_POLICY_STEP_CALLER, 1)                                                             \
	X(2, SM_POLICY_STEP_CALLER, 0)                                                             \
	X(3, SM_POLICY_STEP_ANY, 1)                                                                \
	X(4, SM_POLICY_STEP_ANY, 0)                                                                \
	X(5, SM_POLICY_STEP_FALLBACK, 0)

#define SM_POLICY_STEP_ONE(n, source, port) +1
#define SM_POLICY_STEPS			    (0 SM_POLICY_LOOKUP_STEPS(SM_POLICY_STEP_ONE))

/*
 * *key = the key of lookup step (1..SM_POLICY_STEPS) for src -> dst:dport
 * (host order), every byte set; 0 when step is one, -1 (key untouched) when
 * it is not. With a constant step (an unrolled loop) the table folds away.
 */
static inline int sm_policy_step_key_fill(struct sm_policy_key *key, __u32 step, __u32 src,
					  __u32 dst, __u16 dport)
{
#define SM_POLICY_STEP_CASE(n, source, port)                                                       \
	case n:                                                                                    \
		key->src_identity = (source) == SM_POLICY_STEP_CALLER ? src                        \
				    : (source) == SM_POLICY_STEP_ANY  ? 0                          \
								      : SM_POLICY_SRC_DEFAULT;      \
		key->dport = (port) ? dport : 0;                                                   \
		break;
	switch (step) {
		SM_POLICY_LOOKUP_STEPS(SM_POLICY_STEP_CASE)
	default:
		return -1;
	}
#undef SM_POLICY_STEP_CASE
	key->dst_identity = dst;
	key->proto = 6; /* IPPROTO_TCP: this header includes neither libc's nor vmlinux.h */
	key->pad = 0;
	return 0;
}

/* policy_state[0]: written by the daemon only, after the slot's maps are complete. */
struct sm_policy_state {
	__u32 slot;	/* 0 or 1: the live slot of policy_maps and policy_cidr_maps */
	__u32 revision; /* of the live slot */
	__u32 loaded;	/* 0: no policy set was ever applied, nothing is looked up */
	__u32 pad;
};

#endif /* SOCKMESH_POLICY_H */
