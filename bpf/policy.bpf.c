// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Re-checking established connections when a policy revision goes live: the
 * daemon runs this TCP socket iterator once after each flip of
 * policy_state. Every enrolled connection's calling side (the socket that
 * connect4/6 let through) is looked up again with the same contract; one the
 * new revision denies is destroyed (bpf_sock_destroy: the application sees
 * ECONNABORTED, the peer a reset) and flagged, so its conn_end record says
 * why. A plaintext connection a PERMISSIVE workload accepted is re-checked
 * on the accepting side, by the caller's address. The connect hooks and the
 * ingress program enforce new connections; this closes the old ones.
 */
#include "lib/common.h"
#include "lib/policy.h"

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/*
 * The decision for a plaintext connection a PERMISSIVE workload accepted:
 * the caller is known by its address only (ingress.bpf.c decided its SYN the
 * same way).
 */
static __always_inline struct sm_policy_value *recheck_plaintext(struct sock_common *skc,
								 const struct sm_sock_state *st)
{
	__u32 ip6[4], ip4, src;
	__u8 addr[16] = {};
	__u16 family, port;
	__u8 fam;

	family = skc->skc_family;
	ip4 = skc->skc_daddr;
	port = skc->skc_num;
	barrier_var(port);
	BPF_CORE_READ_INTO(&ip6, skc, skc_v6_daddr.in6_u.u6_addr32);
	fam = addr_store(addr, family, ip4, ip6);
	return policy_lookup_addr(fam, addr, st->identity, port, &src);
}

SEC("iter/tcp")
int policy_recheck(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sm_policy_value *v;
	struct sm_sock_state *st;
	struct tcp_sock *tp;
	__be16 dport, oport;
	__u16 port;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	st = bpf_sk_storage_get(&sock_states, tp, NULL, 0);
	if (!st || !(st->flags & SM_SK_F_ESTABLISHED) || st->identity < SM_ID_FIRST_ALLOCATED)
		return 0;
	if (st->flags & SM_SK_F_PASSIVE) {
		/* the accepting side decides plaintext callers; the caller's node the rest */
		if (!(st->flags & SM_SK_F_PLAINTEXT))
			return 0;
		v = recheck_plaintext(skc, st);
		goto decided;
	}
	/* the connecting side of an enrolled connection to a workload's service */
	if (st->peer_identity < SM_ID_FIRST_ALLOCATED)
		return 0;
	/*
	 * Both ports read up front: a load inside each branch may be merged
	 * into one instruction on two kinds of pointer, which the verifier
	 * refuses ("same insn cannot be used with different pointers").
	 */
	dport = skc->skc_dport;
	barrier_var(dport);
	oport = st->orig_port;
	barrier_var(oport);
	if (st->flags & SM_SK_F_CAPTURED)
		port = bpf_ntohs(oport);
	else if (st->flags & SM_SK_F_SAME_NODE)
		port = bpf_ntohs(dport);
	else
		return 0;
	v = policy_lookup(st->identity, st->peer_identity, port);
decided:
	if (!v || v->action != SM_POLICY_DENY)
		return 0;
	/* the daemon finds the rule again for the record (the state has no room for it) */
	st->flags |= SM_SK_F_POLICY_CLOSED;
	if (bpf_sock_destroy(skc) == 0)
		count(SM_CNT_POLICY_CLOSED);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
