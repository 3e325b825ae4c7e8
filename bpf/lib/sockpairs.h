/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket tuples in map form and the rules for joining sock_pairs (the redirect
 * sockhash), shared by the workloads' sockops (bpf/flowacct.bpf.c) and the
 * daemon's (bpf/redirect.bpf.c).
 *
 * Ordering contract. An active socket joins at ACTIVE_ESTABLISHED, before
 * connect() returns, and only if nothing of it is in flight (a TCP Fast Open
 * SYN's data would otherwise be retransmitted after bytes sk_msg moved). A
 * passive socket joins at PASSIVE_ESTABLISHED only when its active peer is in
 * already, so the pair is complete before the passive side can send a byte.
 * The active side may still send before its peer joins (the final ACK can be
 * processed after connect() returned); sk_msg then passes the bytes to TCP and
 * keeps that socket on TCP for good (bpf/redirect.bpf.c), because the
 * receiver reads its sk_msg queue before its TCP receive queue.
 */
#ifndef SOCKMESH_BPF_SOCKPAIRS_H
#define SOCKMESH_BPF_SOCKPAIRS_H

#include "lib/common.h"

/* A socket's own tuple, addresses in map form, ports in network order. */
struct sm_endpoints {
	__u8 family;
	__be16 local_port;
	__be16 remote_port;
	__u8 local[16];
	__u8 remote[16];
};

static __always_inline void skops_endpoints(struct bpf_sock_ops *skops, struct sm_endpoints *ep)
{
	__u32 l6[4] = {skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2],
		       skops->local_ip6[3]};
	__u32 r6[4] = {skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
		       skops->remote_ip6[3]};

	ep->family = addr_store(ep->local, skops->family, skops->local_ip4, l6);
	addr_store(ep->remote, skops->family, skops->remote_ip4, r6);
	ep->local_port = bpf_htons((__u16) skops->local_port);
	/* remote_port holds the network-order port in its upper 16 bits */
	ep->remote_port = (__be16) (skops->remote_port >> 16);
}

/* The socket's own sock_pairs / redirect_rx key. */
static __always_inline void sock_key_from(struct sm_sock_key *key, __u64 netns_cookie,
					  const struct sm_endpoints *ep)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->netns_cookie = netns_cookie;
	key->family = ep->family;
	key->local_port = ep->local_port;
	key->remote_port = ep->remote_port;
	__builtin_memcpy(key->local_addr, ep->local, 16);
	__builtin_memcpy(key->remote_addr, ep->remote, 16);
}

/*
 * Whether the socket's TCP peer (the reversed tuple, same network namespace)
 * is in sock_pairs. Every member has a redirect_rx entry, created before it
 * joins and deleted at its close, which a sockops program can look up
 * (looking a socket up in the sockhash itself would take a reference that
 * sockops cannot release).
 */
static __always_inline bool peer_in_sockpairs(struct bpf_sock_ops *skops,
					      const struct sm_endpoints *ep)
{
	struct sm_sock_key peer;

	__builtin_memset(&peer, 0, sizeof(peer));
	peer.netns_cookie = bpf_get_netns_cookie(skops);
	peer.family = ep->family;
	peer.local_port = ep->remote_port;
	peer.remote_port = ep->local_port;
	__builtin_memcpy(peer.local_addr, ep->remote, 16);
	__builtin_memcpy(peer.remote_addr, ep->local, 16);
	return bpf_map_lookup_elem(&redirect_rx, &peer) != NULL;
}

/*
 * Add an established socket to sock_pairs (with its redirect_rx entry) and
 * flag it SM_SK_F_IN_SOCKHASH. A socket with bytes in flight stays out (see
 * the contract above). The caller checks cfg_redirect; a failure is counted
 * and leaves the socket on TCP.
 */
static __always_inline void sockhash_add(struct bpf_sock_ops *skops, struct tcp_sock *tp,
					 struct sm_sock_state *st, const struct sm_endpoints *ep)
{
	struct sm_redirect_rx rx = {.sk = (__u64) tp};
	struct sm_sock_key key;

	if (tp->write_seq != tp->snd_una)
		return;
	st->netns_cookie = bpf_get_netns_cookie(skops);
	sock_key_from(&key, st->netns_cookie, ep);
	/* the receive counter first: sk_msg may run as soon as both ends are in */
	if (bpf_map_update_elem(&redirect_rx, &key, &rx, BPF_ANY)) {
		count(SM_CNT_SOCKHASH_UPDATE_FAIL);
		return;
	}
	if (bpf_sock_hash_update(skops, &sock_pairs, &key, BPF_NOEXIST)) {
		bpf_map_delete_elem(&redirect_rx, &key);
		count(SM_CNT_SOCKHASH_UPDATE_FAIL);
		return;
	}
	st->flags |= SM_SK_F_IN_SOCKHASH;
}

/* At close: the kernel drops the sockhash entry itself, redirect_rx is ours. */
static __always_inline void sockhash_forget(const struct sm_sock_state *st,
					    const struct sm_endpoints *ep)
{
	struct sm_sock_key key;

	if (!(st->flags & SM_SK_F_IN_SOCKHASH))
		return;
	sock_key_from(&key, st->netns_cookie, ep);
	bpf_map_delete_elem(&redirect_rx, &key);
}

#endif /* SOCKMESH_BPF_SOCKPAIRS_H */
