// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Same-node redirect (off by default; datapath.redirect): a message sent on a
 * socket in sock_pairs goes straight into its peer's receive queue. TCP's own
 * counters never see these bytes, so they are added to the sender's state,
 * the receiver's redirect_rx entry and the redirect counters.
 */
#include "lib/common.h"

SEC("sk_msg")
int sk_msg_redirect(struct sk_msg_md *msg)
{
	struct sm_sock_key peer = {};
	struct bpf_sock *sk = msg->sk;
	struct sm_sock_state *st;
	__u64 *rx;
	__u32 l6[4], r6[4];
	__u64 size = msg->size;

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
	 * SK_DROP would fail the write with EPERM (KERNEL-NOTES.md, Traps).
	 */
	if (bpf_msg_redirect_hash(msg, &sock_pairs, &peer, BPF_F_INGRESS) != SK_PASS)
		return SK_PASS;

	count(SM_CNT_REDIRECT_MSGS);
	count_add(SM_CNT_REDIRECT_BYTES, size);
	if (sk) {
		st = bpf_sk_storage_get(&sock_states, sk, NULL, 0);
		if (st)
			__sync_fetch_and_add(&st->redirected_tx, size);
	}
	rx = bpf_map_lookup_elem(&redirect_rx, &peer);
	if (rx)
		__sync_fetch_and_add(rx, size);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
