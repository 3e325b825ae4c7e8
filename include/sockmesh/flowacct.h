/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow events: what sockops (bpf/flowacct.bpf.c) and the periodic socket
 * iterator send to the daemon through the "flow_events" ring buffer.
 * See common.h for the rules.
 */
#ifndef SOCKMESH_FLOWACCT_H
#define SOCKMESH_FLOWACCT_H

#include "sockmesh/common.h"

enum sm_flow_event_type {
	SM_FLOW_START = 1,  /* ACTIVE/PASSIVE_ESTABLISHED */
	SM_FLOW_UPDATE = 2, /* periodic, long-lived flows */
	SM_FLOW_END = 3,    /* state change to TCP_CLOSE */
	SM_FLOW_DENIED = 4, /* connect4/6 refused by policy (EPERM); no socket follows */
	SM_FLOW_AUDIT = 5,  /* connect4/6 matched an AUDIT rule; the connection goes on */
};

/*
 * One event per connection end per report. Local/remote are the socket's own
 * addresses; for a captured socket the remote is the outbound listener and
 * orig_* holds what the workload asked for. Counters are totals since the
 * socket was established (the daemon computes deltas). Times are
 * bpf_ktime_get_ns() (CLOCK_MONOTONIC).
 */
struct sm_flow_event {
	__u8 type;	  /* enum sm_flow_event_type */
	__u8 family;	  /* SM_AF_INET / SM_AF_INET6 */
	__u8 orig_family; /* 0 when not captured */
	__u8 pad0;
	__u32 flags;	/* SM_SK_F_* at the time of the event */
	__u32 identity; /* own workload identity */
	__u32 peer_identity;
	__u64 cookie; /* socket cookie */
	__u64 cgroup_id;
	__u64 start_ns;
	__u64 ts_ns;
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u8 orig_addr[16];
	__be16 local_port;
	__be16 remote_port;
	__be16 orig_port;
	__u16 pad1;
	__u64 bytes_acked; /* sent and acknowledged */
	__u64 bytes_received;
	__u64 redirected_tx; /* bytes sk_msg moved from this socket (TCP never counted them) */
	__u64 redirected_rx; /* bytes sk_msg moved to this socket */
	__u32 segs_in;
	__u32 segs_out;
	__u32 total_retrans;
	__u32 srtt_us; /* smoothed RTT in microseconds (kernel value >> 3) */
	/* SM_FLOW_DENIED / SM_FLOW_AUDIT: the policy entry that decided (policy.h) */
	__u32 policy_rule; /* rule_id, or audit_rule_id for SM_FLOW_AUDIT */
	__u32 policy_revision;
	__u8 policy_action; /* enum sm_policy_action */
	__u8 policy_reason; /* enum sm_policy_reason */
	__u16 pad2;
	__u32 pad3;
};

#endif /* SOCKMESH_FLOWACCT_H */
