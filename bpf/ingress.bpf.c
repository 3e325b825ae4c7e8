// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Per-workload inbound modes (docs/architecture.md): a cgroup_skb/ingress
 * program on each local workload's cgroup looks at new TCP connections, i.e.
 * segments with SYN set and ACK clear, whose source is not this node (the
 * cidrs map gives loopback and every address of this node the identity
 * SM_ID_HOST, and the daemon connects to local workloads from those). A
 * STRICT workload does not get them (the segment is dropped, the client's
 * connect() times out); a PERMISSIVE workload does, and they are counted.
 * Every other segment passes untouched, so replies to a workload's own
 * outbound connections (SYN+ACK, then ACKs) are never affected. The accepted
 * socket of a plaintext connection is flagged by sockops (flowacct.bpf.c).
 *
 * A PERMISSIVE workload's plaintext callers are also subject to connection
 * policy (docs/policy.md): such a caller has no certificate, so its source
 * identity is the policy CIDR holding its address, or "any other source". A
 * denied SYN is dropped; the first SYN of each attempt produces the DENIED or
 * AUDIT event, its retransmissions only the same verdict.
 */
#include "lib/common.h"
#include "lib/enroll.h"
#include "lib/policy.h"

#define SM_SKB_PASS 1 /* cgroup_skb: 1 = let the packet in, 0 = drop it */
#define SM_SKB_DROP 0

#define SM_ETH_P_IP	  0x0800
#define SM_ETH_P_IPV6	  0x86DD
#define SM_IP6_HDR_LEN	  40
#define SM_IP6_HOPOPTS	  0
#define SM_IP6_ROUTING	  43
#define SM_IP6_DSTOPTS	  60
#define SM_IP6_MAX_EXTHDR 4
#define SM_TCP_FLAGS_OFF  13 /* the byte holding CWR..FIN in the TCP header */
#define SM_TCP_F_SYN	  0x02
#define SM_TCP_F_ACK	  0x10

/* how long a denied or audited SYN's retransmissions are recognised (tcp_syn_retries=6: 127 s) */
#define SM_SYN_RETRY_NS (130ULL * 1000000000ULL)

/* A connection attempt: the SYN's addresses (map form) and ports. */
struct sm_syn_key {
	__u8 family;
	__u8 pad;
	__be16 sport;
	__be16 dport;
	__u16 pad2;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* syn_seen: attempts the policy denied or audited → when the first SYN came (ktime ns). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct sm_syn_key);
	__type(value, __u64);
} syn_seen SEC(".maps");

/*
 * The workload the receiving socket belongs to (lib/enroll.h). In cgroup_skb
 * the skb's socket is the receiver: the listener for a SYN.
 */
static __always_inline struct sm_workload *skb_workload(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct tcp_sock *tp;
	__u64 cgid;

	if (!sk)
		return NULL;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return NULL;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return NULL;
	return sock_workload((struct sock *) tp, &cgid);
}

/*
 * Where the TCP header starts in an IPv6 packet whose network header is at
 * offset 0, or -1 when it is not TCP. Hop-by-hop, routing and destination
 * options headers (at most SM_IP6_MAX_EXTHDR) are skipped; a packet with any
 * other extension header (AH, ESP, or more of them) is treated as not TCP and
 * passes. Fragments never get here: the stack reassembles before TCP.
 */
static __always_inline int ip6_tcp_offset(struct __sk_buff *skb)
{
	__u8 ext[2]; /* next header, length in 8-octet units not counting the first */
	__u8 next;
	int off = SM_IP6_HDR_LEN;

	if (bpf_skb_load_bytes(skb, 6, &next, 1))
		return -1;
	for (int i = 0; i < SM_IP6_MAX_EXTHDR; i++) {
		if (next == SM_IPPROTO_TCP)
			return off;
		if (next != SM_IP6_HOPOPTS && next != SM_IP6_ROUTING && next != SM_IP6_DSTOPTS)
			return -1;
		if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)))
			return -1;
		next = ext[0];
		off += (ext[1] + 1) * 8;
	}
	return next == SM_IPPROTO_TCP ? off : -1;
}

/*
 * Fill the attempt's addresses and ports (map form: 16 bytes, IPv4 in the
 * first 4) and the TCP flags byte of the packet. Returns the family, or 0
 * when the packet is not TCP over IPv4/IPv6 or too short.
 */
static __always_inline __u8 tcp_attempt(struct __sk_buff *skb, struct sm_syn_key *k, __u8 *flags)
{
	int tcp_off;

	if (skb->protocol == bpf_htons(SM_ETH_P_IP)) {
		__u8 vihl, proto;

		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1))
			return 0;
		if (proto != SM_IPPROTO_TCP || (vihl & 0x0f) < 5)
			return 0;
		if (bpf_skb_load_bytes(skb, 12, k->saddr, 4) ||
		    bpf_skb_load_bytes(skb, 16, k->daddr, 4))
			return 0;
		tcp_off = (vihl & 0x0f) * 4;
		k->family = AF_INET;
	} else if (skb->protocol == bpf_htons(SM_ETH_P_IPV6)) {
		tcp_off = ip6_tcp_offset(skb);
		if (tcp_off < 0 || tcp_off > 0xffff)
			return 0;
		if (bpf_skb_load_bytes(skb, 8, k->saddr, 16) ||
		    bpf_skb_load_bytes(skb, 24, k->daddr, 16))
			return 0;
		k->family = AF_INET6;
	} else {
		return 0;
	}
	if (bpf_skb_load_bytes(skb, tcp_off, &k->sport, 2) ||
	    bpf_skb_load_bytes(skb, tcp_off + 2, &k->dport, 2) ||
	    bpf_skb_load_bytes(skb, tcp_off + SM_TCP_FLAGS_OFF, flags, 1))
		return 0;
	return k->family;
}

/* Report a denied or audited plaintext attempt: the workload's side is the local one. */
static __always_inline void ingress_event(struct __sk_buff *skb, __u8 type,
					  const struct sm_policy_value *v, __u32 own, __u32 peer,
					  const struct sm_syn_key *k)
{
	struct sm_flow_event *ev = policy_event_new(type, v, own, peer, k->family);

	if (!ev)
		return;
	ev->flags = SM_SK_F_PASSIVE | SM_SK_F_PLAINTEXT;
	ev->cgroup_id = bpf_skb_cgroup_id(skb);
	__builtin_memcpy(ev->local_addr, k->daddr, 16);
	__builtin_memcpy(ev->orig_addr, k->daddr, 16);
	__builtin_memcpy(ev->remote_addr, k->saddr, 16);
	ev->local_port = k->dport;
	ev->orig_port = k->dport;
	ev->remote_port = k->sport;
	bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
}

/*
 * Connection policy for a plaintext attempt on a PERMISSIVE workload. A SYN
 * already decided (the same addresses and ports within SM_SYN_RETRY_NS) gets
 * the same verdict silently, so one attempt is one record and one count.
 */
static __always_inline int ingress_policy(struct __sk_buff *skb, const struct sm_workload *wl,
					  const struct sm_syn_key *k)
{
	struct sm_policy_value *pv;
	__u64 now, *seen;
	bool deny;
	__u32 src;

	pv = policy_lookup_addr(k->family, k->saddr, wl->identity, bpf_ntohs(k->dport), &src);
	if (!pv || (pv->action != SM_POLICY_DENY && !(pv->flags & SM_POLICY_F_AUDIT))) {
		count(SM_CNT_POLICY_ALLOWED);
		count(SM_CNT_INGRESS_PLAINTEXT_ALLOWED);
		return SM_SKB_PASS;
	}
	deny = pv->action == SM_POLICY_DENY;
	now = bpf_ktime_get_ns();
	seen = bpf_map_lookup_elem(&syn_seen, k);
	if (seen && now - *seen < SM_SYN_RETRY_NS)
		return deny ? SM_SKB_DROP : SM_SKB_PASS;
	bpf_map_update_elem(&syn_seen, k, &now, BPF_ANY);
	if (pv->flags & SM_POLICY_F_AUDIT) {
		count(SM_CNT_POLICY_AUDIT);
		ingress_event(skb, SM_FLOW_AUDIT, pv, wl->identity, src ?: SM_ID_WORLD, k);
	}
	if (deny) {
		count(SM_CNT_POLICY_DENIED);
		ingress_event(skb, SM_FLOW_DENIED, pv, wl->identity, src ?: SM_ID_WORLD, k);
		return SM_SKB_DROP;
	}
	count(SM_CNT_POLICY_ALLOWED);
	count(SM_CNT_INGRESS_PLAINTEXT_ALLOWED);
	return SM_SKB_PASS;
}

SEC("cgroup_skb/ingress")
int skb_ingress_mode(struct __sk_buff *skb)
{
	struct sm_syn_key k = {};
	struct sm_workload *wl;
	__u8 flags = 0;

	if (!tcp_attempt(skb, &k, &flags))
		return SM_SKB_PASS;
	/* only a new connection: SYN without ACK; everything else passes */
	if ((flags & (SM_TCP_F_SYN | SM_TCP_F_ACK)) != SM_TCP_F_SYN)
		return SM_SKB_PASS;
	if (identity_of_peer(k.family, k.saddr) == SM_ID_HOST)
		return SM_SKB_PASS; /* loopback, this node's addresses: the daemon, local callers */
	/*
	 * The daemon relaying a tunnelled caller from the caller's node
	 * address. A mark never crosses from another host (leaving a network
	 * namespace clears it); setting it takes CAP_NET_ADMIN or CAP_NET_RAW
	 * here, which could as well call from 127.0.0.1.
	 */
	if (cfg_transparent_mark && skb->mark == cfg_transparent_mark)
		return SM_SKB_PASS;
	wl = skb_workload(skb);
	if (!wl)
		return SM_SKB_PASS; /* not (or no longer) enrolled */
	if (wl->flags & SM_WL_F_STRICT) {
		count(SM_CNT_INGRESS_PLAINTEXT_DROPPED);
		return SM_SKB_DROP;
	}
	return ingress_policy(skb, wl, &k);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
