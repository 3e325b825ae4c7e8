// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Connect-time interception: cgroup/connect4 and connect6 decide, for each
 * connect() of an enrolled workload, whether the destination is a service on
 * another node (rewrite to the daemon's outbound listener, remember the
 * original destination in socket storage), on this node, or outside the mesh
 * (both left alone), after the connection policy had its say (a denied
 * connect fails at once with EPERM). A captured socket is bound to the node's
 * address first (node_source), so its source is what the destination sees.
 * cgroup/getsockopt answers the daemon's getsockopt(SO_ORIGINAL_DST) from the
 * orig_dst map; cgroup/getpeername4/6 give the workload the destination it
 * asked for, not the daemon's listener.
 */
#include "lib/common.h"
#include "lib/enroll.h"
#include "lib/policy.h"

#define SM_SOL_IP	   0
#define SM_SOL_IPV6	   41
#define SM_SO_ORIGINAL_DST 80 /* also IP6T_SO_ORIGINAL_DST */

/*
 * Shared by connect4/6: family and addr (16-byte form) are the destination
 * the workload asked for, port in network order. Returns SM_ALLOW_VERDICT or
 * SM_EPERM_VERDICT and sets *capture when the caller must rewrite.
 */
static __always_inline int __sock_connect(struct bpf_sock_addr *ctx, __u8 family, const __u8 *addr,
					  __be16 port, bool *capture)
{
	struct bpf_sock *sk = ctx->sk;
	struct sm_policy_value *pv;
	struct sm_sock_state *st;
	struct sm_workload *wl;
	struct sm_service *svc;

	*capture = false;
	if (!sk || ctx->type != SM_SOCK_STREAM)
		return SM_ALLOW_VERDICT;
	/*
	 * No exemption by SO_MARK: a workload process with CAP_NET_ADMIN can
	 * set any mark. The daemon is exempt because its cgroup is no
	 * workload's (it refuses to start inside one).
	 */
	wl = current_workload();
	if (!wl) {
		count(SM_CNT_CONNECT_UNENROLLED);
		return SM_ALLOW_VERDICT;
	}
	svc = lookup_destination(family, addr, port);
	if (!svc || svc->identity < SM_ID_FIRST_ALLOCATED) {
		count(SM_CNT_CONNECT_PASSTHROUGH);
		return SM_ALLOW_VERDICT;
	}
	pv = policy_lookup(wl->identity, svc->identity, bpf_ntohs(port));
	if (pv) {
		if (pv->flags & SM_POLICY_F_AUDIT) {
			count(SM_CNT_POLICY_AUDIT);
			policy_event(SM_FLOW_AUDIT, pv, bpf_get_socket_cookie(ctx), wl->identity,
				     svc->identity, family, addr, port);
		}
		if (pv->action == SM_POLICY_DENY) {
			count(SM_CNT_POLICY_DENIED);
			policy_event(SM_FLOW_DENIED, pv, bpf_get_socket_cookie(ctx), wl->identity,
				     svc->identity, family, addr, port);
			return SM_EPERM_VERDICT;
		}
	}
	count(SM_CNT_POLICY_ALLOWED);
	if (!(svc->flags & SM_SVC_F_REMOTE)) {
		count(SM_CNT_CONNECT_SAME_NODE);
		return SM_ALLOW_VERDICT;
	}

	st = bpf_sk_storage_get(&sock_states, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		/* Without storage the daemon could not learn where to go. */
		count(SM_CNT_STORAGE_FAIL);
		if (cfg_fail_open)
			return SM_ALLOW_VERDICT;
		count(SM_CNT_CONNECT_FAILCLOSED);
		return SM_EPERM_VERDICT;
	}
	st->identity = wl->identity;
	st->peer_identity = svc->identity;
	st->flags |= SM_SK_F_CAPTURED;
	st->orig_family = family;
	st->orig_port = port;
	__builtin_memcpy(st->orig_addr, addr, 16);
	count(SM_CNT_CONNECT_CAPTURED);
	*capture = true;
	return SM_ALLOW_VERDICT;
}

/*
 * Bind a captured socket to the node's address (port 0: BPF's bind leaves the
 * port to connect()), so that, once sent to the loopback listener, its source
 * is the node's and not 127.0.0.1. A socket the workload bound itself keeps
 * its address (bpf_bind fails with EINVAL and is ignored). family is the
 * destination's (AF_INET for a v4-mapped one); v6 is the socket's own family.
 */
static __always_inline void bind_node_source(struct bpf_sock_addr *ctx, __u8 family, bool v6)
{
	struct sm_node_source *ns;
	struct sockaddr_in6 sin6 = {};
	struct sockaddr_in sin = {};
	__u32 key = 0;

	ns = bpf_map_lookup_elem(&node_source, &key);
	if (!ns)
		return;
	if (family == AF_INET && !v6) {
		if (!ns->ip4)
			return;
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = ns->ip4;
		bpf_bind(ctx, (struct sockaddr *) &sin, sizeof(sin));
		return;
	}
	sin6.sin6_family = AF_INET6;
	if (family == AF_INET) {
		if (!ns->ip4)
			return;
		sin6.sin6_addr.in6_u.u6_addr32[2] = bpf_htonl(0x0000ffff);
		sin6.sin6_addr.in6_u.u6_addr32[3] = ns->ip4;
	} else {
		if (!(ns->ip6[0] | ns->ip6[1] | ns->ip6[2] | ns->ip6[3]))
			return;
		sin6.sin6_addr.in6_u.u6_addr32[0] = ns->ip6[0];
		sin6.sin6_addr.in6_u.u6_addr32[1] = ns->ip6[1];
		sin6.sin6_addr.in6_u.u6_addr32[2] = ns->ip6[2];
		sin6.sin6_addr.in6_u.u6_addr32[3] = ns->ip6[3];
	}
	bpf_bind(ctx, (struct sockaddr *) &sin6, sizeof(sin6));
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	__u8 addr[16] = {};
	bool capture;
	int verdict;

	*(__u32 *) addr = ctx->user_ip4;
	verdict = __sock_connect(ctx, AF_INET, addr, (__be16) ctx->user_port, &capture);
	if (capture) {
		bind_node_source(ctx, AF_INET, false);
		ctx->user_ip4 = cfg_outbound_ip4;
		ctx->user_port = cfg_outbound_port;
	}
	return verdict;
}

SEC("cgroup/connect6")
int sock6_connect(struct bpf_sock_addr *ctx)
{
	__u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
	__u8 addr[16];
	__u8 family;
	bool capture;
	int verdict;

	family = addr_store(addr, AF_INET6, 0, ip6);
	verdict = __sock_connect(ctx, family, addr, (__be16) ctx->user_port, &capture);
	if (!capture)
		return verdict;
	bind_node_source(ctx, family, true);
	if (family == AF_INET) {
		/* v4-mapped destination on a dual-stack socket: the IPv4 listener */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = cfg_outbound_ip4;
		ctx->user_port = cfg_outbound_port;
	} else {
		ctx->user_ip6[0] = cfg_outbound_ip6[0];
		ctx->user_ip6[1] = cfg_outbound_ip6[1];
		ctx->user_ip6[2] = cfg_outbound_ip6[2];
		ctx->user_ip6[3] = cfg_outbound_ip6[3];
		ctx->user_port = cfg_outbound6_port;
	}
	return verdict;
}

/*
 * Answer SO_ORIGINAL_DST (SOL_IP) / IP6T_SO_ORIGINAL_DST (SOL_IPV6) on a
 * socket the daemon accepted: its peer is the captured client, whose tuple
 * keys orig_dst. With no entry the kernel's own answer stands, so an iptables
 * REDIRECT setup keeps working through the same call.
 */
SEC("cgroup/getsockopt")
int sockopt_orig_dst(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct sm_tuple key = {};
	struct sm_orig_dst *od;
	__u32 ip6[4];

	if (ctx->optname != SM_SO_ORIGINAL_DST || !sk)
		return 1;
	if (ctx->level != SM_SOL_IP && ctx->level != SM_SOL_IPV6)
		return 1;

	/* the accepted socket's remote end is the active side of the tuple */
	if (sk->family == AF_INET6) {
		ip6[0] = sk->dst_ip6[0];
		ip6[1] = sk->dst_ip6[1];
		ip6[2] = sk->dst_ip6[2];
		ip6[3] = sk->dst_ip6[3];
		key.family = addr_store(key.saddr, AF_INET6, 0, ip6);
		ip6[0] = sk->src_ip6[0];
		ip6[1] = sk->src_ip6[1];
		ip6[2] = sk->src_ip6[2];
		ip6[3] = sk->src_ip6[3];
		addr_store(key.daddr, AF_INET6, 0, ip6);
	} else {
		__builtin_memset(ip6, 0, sizeof(ip6));
		key.family = addr_store(key.saddr, AF_INET, sk->dst_ip4, ip6);
		addr_store(key.daddr, AF_INET, sk->src_ip4, ip6);
	}
	key.sport = (__be16) sk->dst_port;
	key.dport = bpf_htons((__u16) sk->src_port);

	od = bpf_map_lookup_elem(&orig_dst, &key);
	if (!od) {
		count(SM_CNT_GETSOCKOPT_MISS);
		return 1;
	}

	if (ctx->level == SM_SOL_IP) {
		struct sockaddr_in *sin = ctx->optval;

		if (od->family != AF_INET || (void *) (sin + 1) > ctx->optval_end)
			return 1;
		sin->sin_family = AF_INET;
		sin->sin_port = od->port;
		sin->sin_addr.s_addr = *(__u32 *) od->addr;
		__builtin_memset(sin->__pad, 0, sizeof(sin->__pad));
		ctx->optlen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = ctx->optval;

		if (od->family != AF_INET6 || (void *) (sin6 + 1) > ctx->optval_end)
			return 1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = od->port;
		sin6->sin6_flowinfo = 0;
		__builtin_memcpy(&sin6->sin6_addr, od->addr, 16);
		sin6->sin6_scope_id = 0;
		ctx->optlen = sizeof(*sin6);
	}
	ctx->retval = 0;
	count(SM_CNT_GETSOCKOPT_HIT);
	return 1;
}

/*
 * The captured socket's state, if getpeername() must show its original
 * destination instead of the outbound listener it is connected to.
 */
static __always_inline struct sm_sock_state *captured_state(struct bpf_sock_addr *ctx)
{
	struct sm_sock_state *st;

	if (!ctx->sk)
		return NULL;
	st = bpf_sk_storage_get(&sock_states, ctx->sk, NULL, 0);
	if (!st || !(st->flags & SM_SK_F_CAPTURED))
		return NULL;
	return st;
}

/* getpeername() of a captured socket: the destination the workload asked for. */
SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	struct sm_sock_state *st = captured_state(ctx);

	if (st && st->orig_family == AF_INET) {
		ctx->user_ip4 = *(__u32 *) st->orig_addr;
		ctx->user_port = st->orig_port;
	}
	return 1;
}

SEC("cgroup/getpeername6")
int sock6_getpeername(struct bpf_sock_addr *ctx)
{
	struct sm_sock_state *st = captured_state(ctx);

	if (!st)
		return 1;
	if (st->orig_family == AF_INET) {
		/* a v4-mapped destination on a dual-stack socket */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = *(__u32 *) st->orig_addr;
	} else {
		ctx->user_ip6[0] = *(__u32 *) &st->orig_addr[0];
		ctx->user_ip6[1] = *(__u32 *) &st->orig_addr[4];
		ctx->user_ip6[2] = *(__u32 *) &st->orig_addr[8];
		ctx->user_ip6[3] = *(__u32 *) &st->orig_addr[12];
	}
	ctx->user_port = st->orig_port;
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
