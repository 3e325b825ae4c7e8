/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection policy lookups (include/sockmesh/policy.h has the contract):
 * the live slot's entries, most specific key first, first hit wins. Used by
 * the connect hooks; userspace/lib/policy_query.c does the same for the daemon and
 * `sockmesh policy explain`.
 */
#ifndef SOCKMESH_BPF_POLICY_H
#define SOCKMESH_BPF_POLICY_H

#include "lib/common.h"

/* The live revision's entries map and (when cidr_out) CIDR map, or NULL: no policy loaded. */
static __always_inline void *policy_live(void **cidr_out)
{
	struct sm_policy_state *ps;
	__u32 zero = 0, slot;

	ps = bpf_map_lookup_elem(&policy_state, &zero);
	if (!ps || !ps->loaded)
		return NULL;
	slot = ps->slot & 1;
	if (cidr_out)
		*cidr_out = bpf_map_lookup_elem(&policy_cidr_maps, &slot);
	return bpf_map_lookup_elem(&policy_maps, &slot);
}

/*
 * The entry of one revision's map that decides src → dst:dport (host order),
 * or NULL: the contract's steps (sm_policy_step_key_fill) in order, first
 * hit wins.
 */
static __always_inline struct sm_policy_value *policy_find(void *entries, __u32 src, __u32 dst,
							   __u16 dport)
{
	struct sm_policy_key key;
	struct sm_policy_value *v;

#pragma unroll
	for (__u32 step = 1; step <= SM_POLICY_STEPS; step++) {
		sm_policy_step_key_fill(&key, step, src, dst, dport);
		v = bpf_map_lookup_elem(entries, &key);
		if (v)
			return v;
	}
	return NULL;
}

/* The entry that decides src → dst:dport (host order), or NULL: no policy applies. */
static __always_inline struct sm_policy_value *policy_lookup(__u32 src, __u32 dst, __u16 dport)
{
	void *entries = policy_live(NULL);

	return entries ? policy_find(entries, src, dst, dport) : NULL;
}

/*
 * The same for a non-mesh peer known only by its address (16-byte map form):
 * its source identity is the most specific policy CIDR holding it, from the
 * same revision as the entries, else 0 ("any other source"; a catalog
 * address proves nothing without a certificate). *src receives it.
 */
static __always_inline struct sm_policy_value *
policy_lookup_addr(__u8 family, const __u8 *addr, __u32 dst, __u16 dport, __u32 *src)
{
	struct sm_cidr_key ckey = {};
	void *entries, *cidrs = NULL;
	__u32 *id;

	*src = 0;
	entries = policy_live(&cidrs);
	if (!entries)
		return NULL;
	if (cidrs) {
		ckey.prefixlen = 32 + (family == AF_INET ? 32 : 128);
		ckey.family = family;
		__builtin_memcpy(ckey.addr, addr, 16);
		id = bpf_map_lookup_elem(cidrs, &ckey);
		if (id)
			*src = *id;
	}
	return policy_find(entries, *src, dst, dport);
}

/*
 * Reserve a DENIED or AUDIT event and fill what every enforcement point
 * shares: the decision and the identities (own: the workload enforced on,
 * peer: the other side). NULL when the ring is full
 * (counted). The caller adds the endpoints and submits with
 * BPF_RB_FORCE_WAKEUP: denials are rare and an operator waits for them.
 */
static __always_inline struct sm_flow_event *
policy_event_new(__u8 type, const struct sm_policy_value *v, __u32 own, __u32 peer, __u8 family)
{
	struct sm_flow_event *ev = bpf_ringbuf_reserve(&flow_events, sizeof(*ev), 0);

	if (!ev) {
		count(SM_CNT_RINGBUF_RESERVE_FAIL);
		return NULL;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->family = family;
	ev->orig_family = family;
	ev->identity = own;
	ev->peer_identity = peer;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->start_ns = ev->ts_ns;
	ev->policy_rule = type == SM_FLOW_AUDIT ? v->audit_rule_id : v->rule_id;
	ev->policy_revision = v->revision;
	ev->policy_action = v->action;
	ev->policy_reason = v->reason;
	return ev;
}

/* The event for a connect() the policy decided: the caller's side, addr:port asked for. */
static __always_inline void policy_event(__u8 type, const struct sm_policy_value *v, __u64 cookie,
					 __u32 src, __u32 dst, __u8 family, const __u8 *addr,
					 __be16 port)
{
	struct sm_flow_event *ev = policy_event_new(type, v, src, dst, family);

	if (!ev)
		return;
	ev->cookie = cookie;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	__builtin_memcpy(ev->orig_addr, addr, 16);
	__builtin_memcpy(ev->remote_addr, addr, 16);
	ev->orig_port = port;
	ev->remote_port = port;
	bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
}

#endif /* SOCKMESH_BPF_POLICY_H */
