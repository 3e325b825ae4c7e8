/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Constants and types shared by the kernel programs and the user-space code.
 *
 * Contract for every header in include/sockmesh/: fixed-width __u8..__u64 and
 * __be16/__be32 types only, explicit padding, no libc and no vmlinux.h
 * includes, so that clang -target bpf and the host compiler lay the structs out
 * identically. tests/unit/test_abi.c and bpf/abi_check.bpf.c assert sizes and
 * offsets on both sides.
 */
#ifndef SOCKMESH_COMMON_H
#define SOCKMESH_COMMON_H

/* Well-known numeric identities (docs/catalog.md). */
#define SM_ID_WILDCARD	      0
#define SM_ID_HOST	      1
#define SM_ID_WORLD	      2
#define SM_ID_FIRST_ALLOCATED 256

/* Address families as stored in maps and events (values of AF_INET/AF_INET6). */
#define SM_AF_INET  2
#define SM_AF_INET6 10

/* Default ports (docs/interfaces.md). */
#define SM_DEFAULT_OUTBOUND_PORT 15001
#define SM_DEFAULT_INBOUND_PORT	 15008
#define SM_DEFAULT_ADMIN_PORT	 15020

/*
 * The daemon drains the flow_events ring buffer at least this often; the
 * kernel side wakes it earlier only when the ring fills past a quarter.
 */
#define SM_FLOW_DRAIN_MS 100

/* The daemon marks its own sockets with this SO_MARK (overridable by config). */
#define SM_DEFAULT_DAEMON_MARK 0x5ec0de
/*
 * ... and its connections to local services that carry a tunnelled caller's
 * address with this one (datapath.transparent_mark), which the routing table
 * datapath.transparent_table delivers on this host (docs/tunnel.md).
 */
#define SM_DEFAULT_TRANSPARENT_MARK  0x5ec0df
#define SM_DEFAULT_TRANSPARENT_TABLE 15006

/*
 * Indexes of the per-CPU "counters" array map. Every failure in the kernel
 * programs lands in one of these, so nothing is lost silently; the daemon sums
 * them over CPUs and reports them in `sockmesh status` and in `lost` records.
 * Append only: the numbers are part of the pinned-map ABI.
 */
enum sm_counter {
	SM_CNT_CONNECT_CAPTURED = 0, /* connect() rewritten to the outbound listener */
	SM_CNT_CONNECT_SAME_NODE,    /* destination hosted on this node: left alone */
	SM_CNT_CONNECT_PASSTHROUGH,  /* destination not in the mesh: left alone */
	SM_CNT_CONNECT_UNENROLLED,   /* caller's cgroup not a workload */
	SM_CNT_CONNECT_DAEMON,	     /* retired, always 0: no hook exempts a socket by its mark */
	SM_CNT_CONNECT_FAILCLOSED,   /* capture impossible (storage full): EPERM */
	SM_CNT_STORAGE_FAIL,	     /* sk_storage create failed */
	SM_CNT_ORIGDST_UPDATE_FAIL,  /* orig_dst map full / update failed */
	SM_CNT_RINGBUF_RESERVE_FAIL, /* flow event lost: ring buffer full */
	SM_CNT_SOCKHASH_UPDATE_FAIL, /* redirect: socket not added to sockhash */
	SM_CNT_GETSOCKOPT_HIT,	     /* SO_ORIGINAL_DST answered from orig_dst */
	SM_CNT_GETSOCKOPT_MISS,	     /* SO_ORIGINAL_DST asked, no entry */
	SM_CNT_REDIRECT_MSGS,	     /* sk_msg: messages redirected to the peer */
	SM_CNT_REDIRECT_BYTES,	     /* sk_msg: bytes redirected to the peer */
	SM_CNT_FLOW_START,	     /* conn_start events emitted */
	SM_CNT_FLOW_UPDATE,	     /* conn_update events emitted */
	SM_CNT_FLOW_END,	     /* conn_end events emitted */
	/* STRICT workload: a plaintext SYN from another host dropped */
	SM_CNT_INGRESS_PLAINTEXT_DROPPED,
	/* PERMISSIVE workload: a plaintext SYN from another host let in */
	SM_CNT_INGRESS_PLAINTEXT_ALLOWED,
	/* sk_msg: a socket's send found no peer in sock_pairs; it stays on TCP */
	SM_CNT_REDIRECT_PEER_MISSING,
	/* connect4/6: policy denied the connection (EPERM) */
	SM_CNT_POLICY_DENIED,
	/* connect4/6: policy allowed it, by a rule or because nothing selects the destination */
	SM_CNT_POLICY_ALLOWED,
	/* connect4/6: an AUDIT rule matched (the verdict did not change) */
	SM_CNT_POLICY_AUDIT,
	/* an established connection a new policy revision denies, destroyed */
	SM_CNT_POLICY_CLOSED,
	/* sk_msg: the peer had over SM_REDIRECT_BACKLOG bytes unread; the socket moved to TCP */
	SM_CNT_REDIRECT_BACKLOG,
	SM_CNT_MAX,
};

/*
 * Slots of the pinned counter maps: more than SM_CNT_MAX, so appending a
 * counter does not change the maps' size and a new daemon still adopts them.
 */
#define SM_CNT_SLOTS 64

/* Names for the counters above, in order; user space only. */
#define SM_COUNTER_NAMES                                                                           \
	{                                                                                          \
		"connect_captured", "connect_same_node", "connect_passthrough",                    \
			"connect_unenrolled", "connect_daemon", "connect_failclosed",              \
			"storage_fail", "orig_dst_update_fail", "ringbuf_reserve_fail",            \
			"sockhash_update_fail", "getsockopt_hit", "getsockopt_miss",               \
			"redirect_msgs", "redirect_bytes", "flow_start", "flow_update",            \
			"flow_end", "ingress_plaintext_dropped", "ingress_plaintext_allowed",      \
			"redirect_peer_missing", "policy_denied", "policy_allowed",                \
			"policy_audit", "policy_closed", "redirect_backlog",                       \
	}

#endif /* SOCKMESH_COMMON_H */
