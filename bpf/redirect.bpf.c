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

/* SK_USER_DATA_PTRMASK of include/net/sock.h: the low bits of sk_user_data are flags */
#define SM_SK_USER_DATA_FLAGS 7UL

/*
 * Bytes the peer has not read yet of what sk_msg queued on it: its psock's
 * msg_tot_len, the kernel's own count (what FIONREAD reports). Probe reads
 * through the address sockops saved: sk_msg may not hold a reference to
 * another socket (it has no bpf_sk_release()). A kernel whose psock has no
 * msg_tot_len yet loads the program all the same, without flow control.
 */
static __always_inline __u32 peer_backlog(const struct sm_redirect_rx *rx)
{
	struct tcp_sock *tp = (struct tcp_sock *) rx->sk;
	struct sk_psock *psock;
	unsigned long ud = 0;
	__u32 len = 0;

	if (!bpf_core_field_exists(struct sk_psock, msg_tot_len))
		return 0;
	if (!tp || bpf_core_read(&ud, sizeof(ud), &tp->inet_conn.icsk_inet.sk.sk_user_data))
		return 0;
	psock = (struct sk_psock *) (ud & ~SM_SK_USER_DATA_FLAGS);
	if (!psock || bpf_core_read(&len, sizeof(len), &psock->msg_tot_len))
		return 0;
	return len;
}

SEC("sk_msg")
int sk_msg_redirect(struct sk_msg_md *msg)
{
	struct sm_sock_key peer = {};
	struct bpf_sock *sk = msg->sk;
	struct sm_redirect_rx *rx;
	struct sm_sock_state *st;
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
	 * Flow control. A redirected send completes once it is queued on the
	 * peer, however little the peer has read: the kernel applies no
	 * receive buffer to sk_msg ingress. So a socket whose peer has more
	 * than SM_REDIRECT_BACKLOG bytes unread moves to TCP for good, and
	 * TCP's windows hold the sender back from then on. The order holds:
	 * the peer reads its sk_msg queue before its TCP receive queue.
	 * Request/response traffic never builds such a backlog and stays
	 * redirected; a bulk transfer to a slower reader moves to TCP within
	 * its first SM_REDIRECT_BACKLOG bytes.
	 */
	rx = bpf_map_lookup_elem(&redirect_rx, &peer);
	if (rx && peer_backlog(rx) > SM_REDIRECT_BACKLOG) {
		st->flags |= SM_SK_F_TCP_ONLY;
		count(SM_CNT_REDIRECT_BACKLOG);
		return SK_PASS;
	}

	/*
	 * SK_PASS when the peer is not (yet) in the map: returning the helper's
	 * SK_DROP would fail the write with EPERM (docs/kernel.md). The
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
	if (rx)
		__sync_fetch_and_add(&rx->bytes, size);
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
		if (bsk->mark != cfg_daemon_mark &&
		    !(cfg_transparent_mark && bsk->mark == cfg_transparent_mark))
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
