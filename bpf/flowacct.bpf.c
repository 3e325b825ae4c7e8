// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Flow accounting: sockops registers every enrolled TCP socket when it is
 * established (identities, original destination, optional sockhash entry),
 * and reports it to the daemon through the flow_events ring buffer at
 * establish and at close. A socket iterator, run by the daemon every second,
 * reports long-lived flows every cfg_update_interval_ns.
 */
#include "lib/common.h"
#include "lib/enroll.h"
#include "lib/sockpairs.h"

struct sm_tcp_counters {
	__u64 bytes_acked;
	__u64 bytes_received;
	__u32 segs_in;
	__u32 segs_out;
	__u32 total_retrans;
	__u32 srtt_us;
};

#define SM_RCV_SHUTDOWN	 1
#define SM_SEND_SHUTDOWN 2

/*
 * Payload counters of a TCP socket. The kernel's bytes_acked counts the
 * active side's SYN and an acknowledged FIN, bytes_received a received FIN;
 * flow records promise payload bytes, so those sequence numbers are taken
 * out: our FIN is acknowledged when we shut down sending and snd_una reached
 * write_seq (which includes the FIN); theirs arrived when RCV_SHUTDOWN is set
 * (tcp_fin; an application's shutdown(SHUT_RD) would also set it, which
 * under-counts that socket's received bytes by one).
 */
static __always_inline void tcp_counters(struct tcp_sock *tp, bool passive,
					 struct sm_tcp_counters *c)
{
	__u8 shut = tp->inet_conn.icsk_inet.sk.sk_shutdown;
	__u64 acked = tp->bytes_acked, rcvd = tp->bytes_received;

	if (!passive && acked > 0)
		acked--; /* our SYN */
	if ((shut & SM_SEND_SHUTDOWN) && tp->snd_una == tp->write_seq && acked > 0)
		acked--; /* our FIN */
	if ((shut & SM_RCV_SHUTDOWN) && rcvd > 0)
		rcvd--; /* their FIN */
	c->bytes_acked = acked;
	c->bytes_received = rcvd;
	c->segs_in = tp->segs_in;
	c->segs_out = tp->segs_out;
	c->total_retrans = tp->total_retrans;
	c->srtt_us = tp->srtt_us >> 3; /* the kernel keeps srtt << 3 */
}

static __always_inline void tuple_from(struct sm_tuple *t, const struct sm_endpoints *ep,
				       bool passive)
{
	t->family = ep->family;
	if (passive) {
		t->sport = ep->remote_port;
		t->dport = ep->local_port;
		__builtin_memcpy(t->saddr, ep->remote, 16);
		__builtin_memcpy(t->daddr, ep->local, 16);
	} else {
		t->sport = ep->local_port;
		t->dport = ep->remote_port;
		__builtin_memcpy(t->saddr, ep->local, 16);
		__builtin_memcpy(t->daddr, ep->remote, 16);
	}
}

/* Send one event; a full ring buffer is counted, never silent. */
static __always_inline int emit_flow_event(__u8 type, const struct sm_sock_state *st,
					   const struct sm_endpoints *ep,
					   const struct sm_tcp_counters *c, __u64 now)
{
	struct sm_flow_event *ev;

	ev = bpf_ringbuf_reserve(&flow_events, sizeof(*ev), 0);
	if (!ev) {
		count(SM_CNT_RINGBUF_RESERVE_FAIL);
		return -SM_ENOSPC;
	}
	ev->type = type;
	ev->family = ep->family;
	ev->orig_family = (st->flags & SM_SK_F_CAPTURED) ? st->orig_family : 0;
	ev->pad0 = 0;
	ev->flags = st->flags;
	ev->identity = st->identity;
	ev->peer_identity = st->peer_identity;
	ev->cookie = st->cookie;
	ev->cgroup_id = st->cgroup_id;
	ev->start_ns = st->start_ns;
	ev->ts_ns = now;
	__builtin_memcpy(ev->local_addr, ep->local, 16);
	__builtin_memcpy(ev->remote_addr, ep->remote, 16);
	__builtin_memcpy(ev->orig_addr, st->orig_addr, 16);
	ev->local_port = ep->local_port;
	ev->remote_port = ep->remote_port;
	ev->orig_port = st->orig_port;
	ev->pad1 = 0;
	ev->bytes_acked = c->bytes_acked;
	ev->bytes_received = c->bytes_received;
	ev->redirected_tx = st->redirected_tx;
	ev->redirected_rx = 0;
	if (st->flags & SM_SK_F_IN_SOCKHASH) {
		struct sm_redirect_rx *rx;
		struct sm_sock_key key;

		sock_key_from(&key, st->netns_cookie, ep);
		rx = bpf_map_lookup_elem(&redirect_rx, &key);
		if (rx)
			ev->redirected_rx = rx->bytes;
	}
	ev->segs_in = c->segs_in;
	ev->segs_out = c->segs_out;
	ev->total_retrans = c->total_retrans;
	ev->srtt_us = c->srtt_us;
	/*
	 * Waking the daemon costs more than writing the event, so events are
	 * batched: the daemon drains the ring every SM_FLOW_DRAIN_MS anyway,
	 * and is woken early only once a quarter of the ring is in use.
	 */
	bpf_ringbuf_submit(ev, bpf_ringbuf_query(&flow_events, BPF_RB_AVAIL_DATA) >=
					       cfg_ringbuf_wakeup_bytes
				       ? BPF_RB_FORCE_WAKEUP
				       : BPF_RB_NO_WAKEUP);
	count(type == SM_FLOW_START    ? SM_CNT_FLOW_START
	      : type == SM_FLOW_UPDATE ? SM_CNT_FLOW_UPDATE
				       : SM_CNT_FLOW_END);
	return 0;
}

/*
 * wl: the socket's workload (NULL: none), cgid its cgroup id, looked up by
 * the caller. The lookup's 256-byte key and this function's structs do not
 * fit one BPF stack: both are calls of their own, so their frames never
 * stack up.
 */
static __noinline void on_established(struct bpf_sock_ops *skops, bool passive,
				      struct sm_workload *wl, __u64 cgid)
{
	struct bpf_sock *bsk = skops->sk;
	struct sm_tcp_counters c = {};
	struct sm_endpoints ep = {};
	struct sm_orig_dst od = {};
	struct sm_tuple tuple = {};
	struct sm_sock_state *st;
	struct sm_orig_dst *peer;
	struct sm_service *svc;
	struct tcp_sock *tp;
	__u64 now = bpf_ktime_get_ns();
	bool record = false, same_node = false, join = false;

	if (!bsk)
		return;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return;
	/*
	 * Every socket below the enrollment root comes here: only a workload's
	 * (or one connect4/6 captured, which has state already) gets state.
	 */
	st = bpf_sk_storage_get(&sock_states, bsk, NULL, 0);
	if (!wl && !(st && (st->flags & SM_SK_F_CAPTURED)))
		return; /* not a workload socket (e.g. a cgroup left the catalog) */
	if (!st)
		st = bpf_sk_storage_get(&sock_states, bsk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(SM_CNT_STORAGE_FAIL);
		return;
	}
	if (wl)
		st->identity = wl->identity;
	st->cgroup_id = cgid;
	st->cookie = bpf_get_socket_cookie(skops);
	skops_endpoints(skops, &ep);
	tuple_from(&tuple, &ep, passive);

	if (passive) {
		st->flags |= SM_SK_F_PASSIVE;
		/* a same-node enrolled client registered this tuple a moment ago */
		peer = bpf_map_lookup_elem(&orig_dst, &tuple);
		if (peer) {
			st->peer_identity = peer->src_identity;
			same_node = true;
		} else if (cfg_transparent_mark && bsk->mark == cfg_transparent_mark) {
			/*
			 * The daemon relaying a tunnelled caller from the
			 * caller's node address: the SYN's mark became this
			 * socket's (net.ipv4.tcp_fwmark_accept=1).
			 */
			st->peer_identity = SM_ID_HOST;
		} else {
			st->peer_identity = identity_of_peer(ep.family, ep.remote);
			/*
			 * Neither this host (the daemon relays decrypted
			 * connections from its addresses) nor a same-node
			 * workload: plaintext from another host, which only a
			 * PERMISSIVE workload's ingress program lets in.
			 */
			if (st->peer_identity != SM_ID_HOST)
				st->flags |= SM_SK_F_PLAINTEXT;
		}
		/*
		 * A passive socket joins sock_pairs only behind its peer: a
		 * same-node workload's socket, or the daemon's connection
		 * carrying a tunnelled stream (bpf/redirect.bpf.c). Any other
		 * caller from this host (an unenrolled process, the daemon's
		 * other connections) is not in the map, so neither is this
		 * socket, and its sends never pay for a failed lookup.
		 */
		if (cfg_redirect && (same_node || st->peer_identity == SM_ID_HOST))
			join = peer_in_sockpairs(skops, &ep);
	} else if (st->flags & SM_SK_F_CAPTURED) {
		od.family = st->orig_family;
		od.port = st->orig_port;
		__builtin_memcpy(od.addr, st->orig_addr, 16);
		record = true;
		/* its peer, the daemon's accepted socket, joins behind it */
		join = true;
	} else {
		/*
		 * A destination on this node (a local service, or any port of
		 * the node's own or loopback addresses) is recorded too, so the
		 * accepting side, if enrolled, learns who called it.
		 */
		svc = lookup_destination(ep.family, ep.remote, ep.remote_port);
		st->peer_identity = svc ? svc->identity : SM_ID_WORLD;
		if (svc && svc->identity >= SM_ID_FIRST_ALLOCATED)
			same_node = !(svc->flags & SM_SVC_F_REMOTE);
		else if (svc && svc->identity == SM_ID_HOST)
			same_node = true;
		record = same_node;
		join = same_node;
		od.family = ep.family;
		od.port = ep.remote_port;
		__builtin_memcpy(od.addr, ep.remote, 16);
	}
	if (same_node)
		st->flags |= SM_SK_F_SAME_NODE;

	if (record) {
		od.src_identity = st->identity;
		od.dst_identity = st->peer_identity;
		if (bpf_map_update_elem(&orig_dst, &tuple, &od, BPF_ANY))
			count(SM_CNT_ORIGDST_UPDATE_FAIL);
	}
	if (cfg_redirect && join)
		sockhash_add(skops, tp, st, &ep);

	st->start_ns = now;
	st->last_report_ns = now;
	st->flags |= SM_SK_F_ESTABLISHED;
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	tcp_counters(tp, passive, &c);
	emit_flow_event(SM_FLOW_START, st, &ep, &c, now);
}

/* A call of its own, like on_established(): the entry's frame stays small. */
static __noinline void on_close(struct bpf_sock_ops *skops)
{
	struct bpf_sock *bsk = skops->sk;
	struct sm_tcp_counters c = {};
	struct sm_endpoints ep = {};
	struct sm_tuple tuple = {};
	struct sm_sock_state *st;
	struct tcp_sock *tp;

	if (!bsk)
		return;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return;
	st = bpf_sk_storage_get(&sock_states, bsk, NULL, 0);
	if (!st || !(st->flags & SM_SK_F_ESTABLISHED))
		return;
	skops_endpoints(skops, &ep);
	if (!(st->flags & SM_SK_F_PASSIVE)) {
		tuple_from(&tuple, &ep, false);
		bpf_map_delete_elem(&orig_dst, &tuple);
	}
	tcp_counters(tp, st->flags & SM_SK_F_PASSIVE, &c);
	/* a reset (received or sent) skips FIN_WAIT and LAST_ACK on its way to TCP_CLOSE */
	if (skops->args[0] == BPF_TCP_ESTABLISHED || skops->args[0] == BPF_TCP_CLOSE_WAIT)
		st->flags |= SM_SK_F_ABORTED;
	emit_flow_event(SM_FLOW_END, st, &ep, &c, bpf_ktime_get_ns());
	st->flags &= ~SM_SK_F_ESTABLISHED; /* one conn_end per connection */
	sockhash_forget(st, &ep);
}

/* The workload of an established socket (lib/enroll.h); a call of its own, as above. */
static __noinline struct sm_workload *established_workload(struct bpf_sock_ops *skops, __u64 *cgid)
{
	struct bpf_sock *bsk = skops->sk;
	struct tcp_sock *tp;

	*cgid = 0;
	if (!bsk)
		return NULL;
	tp = bpf_skc_to_tcp_sock(bsk);
	return tp ? sock_workload((struct sock *) tp, cgid) : NULL;
}

SEC("sockops")
int sockops_flow(struct bpf_sock_ops *skops)
{
	struct sm_workload *wl;
	__u64 cgid;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		wl = established_workload(skops, &cgid);
		on_established(skops, skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, wl, cgid);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			on_close(skops);
		break;
	default:
		break;
	}
	return 1;
}

/*
 * Periodic conn_update for long-lived flows. The daemon runs this iterator
 * (in its own network namespace, which is the node's) once a second; only
 * sockets whose last report is older than the interval are reported, so the
 * cost is one storage lookup per TCP socket per run and nothing per packet.
 */
SEC("iter/tcp")
int iter_tcp_flows(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sm_tcp_counters c = {};
	struct sm_endpoints ep = {};
	struct sm_sock_state *st;
	struct tcp_sock *tp;
	__u32 l6[4], r6[4];
	__u64 now;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	st = bpf_sk_storage_get(&sock_states, tp, NULL, 0);
	if (!st || !(st->flags & SM_SK_F_ESTABLISHED))
		return 0;
	now = bpf_ktime_get_ns();
	if (now - st->last_report_ns < cfg_update_interval_ns)
		return 0;

	BPF_CORE_READ_INTO(&l6, skc, skc_v6_rcv_saddr.in6_u.u6_addr32);
	BPF_CORE_READ_INTO(&r6, skc, skc_v6_daddr.in6_u.u6_addr32);
	ep.family = addr_store(ep.local, skc->skc_family, skc->skc_rcv_saddr, l6);
	addr_store(ep.remote, skc->skc_family, skc->skc_daddr, r6);
	ep.local_port = bpf_htons(skc->skc_num);
	ep.remote_port = skc->skc_dport;

	tcp_counters(tp, st->flags & SM_SK_F_PASSIVE, &c);
	if (emit_flow_event(SM_FLOW_UPDATE, st, &ep, &c, now) == 0)
		st->last_report_ns = now;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
