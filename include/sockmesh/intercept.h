/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of the connect-time interception feature (bpf/intercept.bpf.c) and the
 * per-socket state every feature shares. See common.h for the rules.
 *
 * Byte order: addresses are network order, stored in 16 bytes (IPv4 in the
 * first 4, the rest zero); ports named *_port are network order (__be16).
 */
#ifndef SOCKMESH_INTERCEPT_H
#define SOCKMESH_INTERCEPT_H

#include "sockmesh/common.h"

/* workloads: key = cgroup v2 id (inode number of the cgroup directory),
 * value = the workload's identity. Written by the daemon from the catalog. */
struct sm_workload {
	__u32 identity;
	__u32 flags; /* SM_WL_F_* */
};
#define SM_WL_F_STRICT (1U << 0) /* mode STRICT (mTLS only); else PERMISSIVE */

/* services: exact destination address:port → the service's workload. */
struct sm_service_key {
	__u8 family; /* SM_AF_INET or SM_AF_INET6 */
	__u8 proto;  /* IPPROTO_TCP */
	__be16 port;
	__u8 addr[16];
};

struct sm_service {
	__u32 identity; /* the hosting workload's identity */
	__u32 flags;	/* SM_SVC_F_* */
	__u32 node;	/* catalog index of the hosting node */
	__u32 pad;
};
#define SM_SVC_F_REMOTE (1U << 0) /* hosted on another node: capture */

/* cidrs: LPM trie, prefixlen counts bits from the start of {family, pad, addr},
 * so the first 32 bits (family + pad) are always part of the prefix. The
 * daemon writes prefixlen = 32 + the CIDR's own prefix length. */
struct sm_cidr_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};
/* value: struct sm_service (port ignored; identity, flags, node as above). */

/*
 * node_source: one entry (key 0), written by the daemon from the catalog: the
 * node's own first IPv4 and IPv6 address. connect4/6 bind a captured socket
 * to it (port 0: the kernel still picks the port at connect) before sending it
 * to the outbound listener, so the socket's source is the node's address, the
 * one the destination service and both nodes' records see (docs/tunnel.md,
 * "Real addresses"). Zero: the kernel picks the source (loopback).
 */
struct sm_node_source {
	__be32 ip4;
	__u32 ip6[4];
};

/* A TCP 4-tuple seen from the connecting (active) side. */
struct sm_tuple {
	__u8 family;
	__u8 pad[3];
	__be16 sport;	/* active side's port */
	__be16 dport;	/* passive side's port */
	__u8 saddr[16]; /* active side's address */
	__u8 daddr[16]; /* passive side's address */
};

/* The destination a workload asked for before connect4/6 rewrote it. */
struct sm_orig_dst {
	__u8 family;
	__u8 pad;
	__be16 port;
	__u32 src_identity; /* the connecting workload */
	__u32 dst_identity; /* the destination's identity (services/cidrs) */
	__u32 pad2;
	__u8 addr[16];
};

/* orig_dst: key = struct sm_tuple of the captured client socket (client →
 * outbound listener), value = struct sm_orig_dst. Written by sockops at
 * ACTIVE_ESTABLISHED, read by cgroup/getsockopt for the daemon's accepted
 * socket, deleted by sockops at close. */

/* Per-socket state (BPF_MAP_TYPE_SK_STORAGE "sock_states"), created at connect
 * or at the first sockops callback. Lives and dies with the socket. */
struct sm_sock_state {
	__u64 cookie;	      /* socket cookie, taken at establish */
	__u64 start_ns;	      /* bpf_ktime_get_ns() at establish */
	__u64 last_report_ns; /* last conn_start/conn_update sent */
	__u64 cgroup_id;      /* the socket's cgroup */
	__u64 redirected_tx;  /* bytes sk_msg redirected from this socket */
	__u64 netns_cookie;   /* set when the socket joins sock_pairs */
	__u32 identity;	      /* own workload identity */
	__u32 peer_identity;  /* destination (active) / source (passive) */
	__u32 flags;	      /* SM_SK_F_* */
	__u8 orig_family;     /* captured: the original destination */
	__u8 pad;
	__be16 orig_port;
	__u8 orig_addr[16];
};
#define SM_SK_F_CAPTURED    (1U << 0) /* rewritten to the outbound listener */
#define SM_SK_F_ESTABLISHED (1U << 1) /* conn_start sent */
#define SM_SK_F_PASSIVE	    (1U << 2) /* accepted (inbound) side */
#define SM_SK_F_IN_SOCKHASH (1U << 3)
#define SM_SK_F_SAME_NODE   (1U << 4) /* peer is a service on this node */
/* accepted from another host without the mesh's mTLS (PERMISSIVE lets it in) */
#define SM_SK_F_PLAINTEXT (1U << 5)
/* in sock_pairs, but a send found no peer, or a peer too far behind: on TCP for good */
#define SM_SK_F_TCP_ONLY (1U << 6)
/* destroyed because a new policy revision denies it (bpf/policy.bpf.c) */
#define SM_SK_F_POLICY_CLOSED (1U << 7)
/*
 * conn_end only: the connection ended by a reset or an abort (it went to
 * TCP_CLOSE straight from ESTABLISHED or CLOSE_WAIT), not by the FIN exchange
 */
#define SM_SK_F_ABORTED (1U << 8)

/*
 * sk_msg flow control: a socket whose peer has more than this many redirected
 * bytes unread moves to TCP for good (bpf/redirect.bpf.c).
 */
#define SM_REDIRECT_BACKLOG (256 * 1024)

#endif /* SOCKMESH_INTERCEPT_H */
