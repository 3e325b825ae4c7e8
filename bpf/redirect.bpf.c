// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket redirect (off by default; datapath.redirect): a message sent on a
 * socket in sock_pairs goes straight into its peer's receive queue. Pairs are
 * same-node workload connections and the two loopback hops of a tunnelled
 * one: workload -> the daemon's outbound listener, and the daemon -> a local
 * service. The workloads' sockets join in bpf/flowacct.bpf.c, the daemon's in
 * sockops_daemon below, under the rules of bpf/lib/sockpairs.h.
 *
 * TCP's own counters never see redirected bytes, so they are added to the
 * sender's state, the receiver's redirect_rx entry and the redirect counters.
 */
#include "lib/common.h"
#include "lib/sockpairs.h"

SEC("sk_msg")
int sk_msg_redirect(struct sk_msg_md *msg)
{
	struct sm_sock_key peer = {};
	struct bpf_sock *sk = msg->sk;
	struct sm_sock_state *st;
	__u64 *rx;
	__u32 l6[4], r6[4];
	__u64 size = msg->size;

	if (!sk)
		return SK_PASS;
	/* every member has state (sockhash_add); this program runs under the socket lock */
	st = bpf_sk_storage_get(&sock_states, sk, NULL, 0);
	if (!st || (st->flags & SM_SK_F_TCP_ONLY))
		return SK_PASS;

	peer.netns_cookie = bpf_get_netns_cookie(msg);
	l6[0] = msg->local_ip6[0];
	l6[1] = msg->local_ip6[1];
	l6[2] = msg->local_ip6[2];
	l6[3] = msg->local_ip6[3];
	r6[0] = msg->remote_ip6[0];
	r6[1] = msg->remote_ip6[1];
	r6[2] = msg->remote_ip6[2];
	r6[3] = msg->remote_ip6[3];
	/* the peer's own key is our tuple reversed */
	peer.family = addr_store(peer.local_addr, msg->family, msg->remote_ip4, r6);
	addr_store(peer.remote_addr, msg->family, msg->local_ip4, l6);
	peer.local_port = (__be16) (msg->remote_port >> 16);
	peer.remote_port = bpf_htons((__u16) msg->local_port);

	/*
	 * SK_PASS when the peer is not (yet) in the map: returning the helper's
	 * SK_DROP would fail the write with EPERM (KERNEL-NOTES.md, Traps). The
	 * bytes then go over TCP, and so must every later byte of this socket:
	 * the receiver reads what sk_msg queued before its TCP receive queue,
	 * so a redirect after a TCP send could overtake it.
	 */
	if (bpf_msg_redirect_hash(msg, &sock_pairs, &peer, BPF_F_INGRESS) != SK_PASS) {
		st->flags |= SM_SK_F_TCP_ONLY;
		count(SM_CNT_REDIRECT_PEER_MISSING);
		return SK_PASS;
	}

	count(SM_CNT_REDIRECT_MSGS);
	count_add(SM_CNT_REDIRECT_BYTES, size);
	__sync_fetch_and_add(&st->redirected_tx, size);
	rx = bpf_map_lookup_elem(&redirect_rx, &peer);
	if (rx)
		__sync_fetch_and_add(rx, size);
	return SK_PASS;
}

/*
 * The daemon's own sockets, on its cgroup: the accepted end of a captured
 * connection (local port = an outbound listener's), behind its peer, the
 * workload's socket; and the daemon's connection to a service on this node
 * (its SO_MARK, a local service per the services map), which the service's
 * accepted socket joins behind. They get socket state for sk_msg's sake but
 * never SM_SK_F_ESTABLISHED, so neither close nor the flow iterator reports
 * them.
 */
static __always_inline void daemon_established(struct bpf_sock_ops *skops, bool passive)
{
	struct bpf_sock *bsk = skops->sk;
	struct sm_endpoints ep = {};
	struct sm_sock_state *st;
	struct sm_service *svc;
	struct tcp_sock *tp;

	if (!bsk)
		return;
	skops_endpoints(skops, &ep);
	if (passive) {
		if (ep.local_port != cfg_outbound_port && ep.local_port != cfg_outbound6_port)
			return;
		if (!peer_in_sockpairs(skops, &ep))
			return;
	} else {
		if (bsk->mark != cfg_daemon_mark)
			return;
		svc = lookup_destination(ep.family, ep.remote, ep.remote_port);
		if (!svc || svc->identity < SM_ID_FIRST_ALLOCATED || (svc->flags & SM_SVC_F_REMOTE))
			return;
	}
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return;
	st = bpf_sk_storage_get(&sock_states, bsk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(SM_CNT_STORAGE_FAIL);
		return;
	}
	sockhash_add(skops, tp, st, &ep);
	if (st->flags & SM_SK_F_IN_SOCKHASH)
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
							 BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline void daemon_close(struct bpf_sock_ops *skops)
{
	struct bpf_sock *bsk = skops->sk;
	struct sm_endpoints ep = {};
	struct sm_sock_state *st;

	if (!bsk)
		return;
	st = bpf_sk_storage_get(&sock_states, bsk, NULL, 0);
	if (!st)
		return;
	skops_endpoints(skops, &ep);
	sockhash_forget(st, &ep);
	st->flags &= ~SM_SK_F_IN_SOCKHASH;
}

SEC("sockops")
int sockops_daemon(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		if (cfg_redirect)
			daemon_established(skops, false);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (cfg_redirect)
			daemon_established(skops, true);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* asked for by members only: their redirect_rx entry goes */
		if (skops->args[1] == BPF_TCP_CLOSE)
			daemon_close(skops);
		break;
	default:
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
