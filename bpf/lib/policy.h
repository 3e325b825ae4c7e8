/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection policy lookups (include/sockmesh/policy.h has the contract):
 * the live slot's entries, most specific key first, first hit wins. Used by
 * the connect hooks; userspace/lib/policy.c does the same for the daemon and
 * `sockmesh policy explain`.
 */
#ifndef SOCKMESH_BPF_POLICY_H
#define SOCKMESH_BPF_POLICY_H

#include "lib/common.h"

/* The entry that decides src → dst:dport (host order), or NULL: no policy applies. */
static __always_inline struct sm_policy_value *policy_lookup(__u32 src, __u32 dst, __u16 dport)
{
	struct sm_policy_key key = {.proto = IPPROTO_TCP};
	struct sm_policy_state *ps;
	struct sm_policy_value *v;
	__u32 zero = 0, slot;
	void *entries;

	ps = bpf_map_lookup_elem(&policy_state, &zero);
	if (!ps || !ps->loaded)
		return NULL;
	slot = ps->slot & 1;
	entries = bpf_map_lookup_elem(&policy_maps, &slot);
	if (!entries)
		return NULL;
	key.dst_identity = dst;
	key.src_identity = src;
	key.dport = dport;
	v = bpf_map_lookup_elem(entries, &key);
	if (v)
		return v;
	key.dport = 0;
	v = bpf_map_lookup_elem(entries, &key);
	if (v)
		return v;
	key.src_identity = 0;
	key.dport = dport;
	v = bpf_map_lookup_elem(entries, &key);
	if (v)
		return v;
	key.dport = 0;
	v = bpf_map_lookup_elem(entries, &key);
	if (v)
		return v;
	key.src_identity = SM_POLICY_SRC_DEFAULT;
	return bpf_map_lookup_elem(entries, &key);
}

/* A DENIED or AUDIT event for a connect() the policy decided; a full ring is counted. */
static __always_inline void policy_event(__u8 type, const struct sm_policy_value *v, __u64 cookie,
					 __u32 src, __u32 dst, __u8 family, const __u8 *addr,
					 __be16 port)
{
	struct sm_flow_event *ev = bpf_ringbuf_reserve(&flow_events, sizeof(*ev), 0);

	if (!ev) {
		count(SM_CNT_RINGBUF_RESERVE_FAIL);
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->family = family;
	ev->orig_family = family;
	ev->identity = src;
	ev->peer_identity = dst;
	ev->cookie = cookie;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->ts_ns = bpf_ktime_get_ns();
	ev->start_ns = ev->ts_ns;
	__builtin_memcpy(ev->orig_addr, addr, 16);
	__builtin_memcpy(ev->remote_addr, addr, 16);
	ev->orig_port = port;
	ev->remote_port = port;
	ev->policy_rule = type == SM_FLOW_AUDIT ? v->audit_rule_id : v->rule_id;
	ev->policy_revision = v->revision;
	ev->policy_action = v->action;
	ev->policy_reason = v->reason;
	/* denials are rare and an operator waits for them: wake the daemon */
	bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
}

#endif /* SOCKMESH_BPF_POLICY_H */
