/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps every feature shares. Each bpf/<feature>.bpf.c includes this file;
 * the definitions are __weak so that `bpftool gen object` links them into one
 * map each. All maps are pinned by name under the daemon's bpffs directory, so
 * a restarted daemon adopts them (and the live sockets' state) as they are.
 * Sizes marked "set by the loader" come from the config (datapath.max_*).
 */
#ifndef SOCKMESH_BPF_MAPS_H
#define SOCKMESH_BPF_MAPS_H

#include "sockmesh/intercept.h"
#include "sockmesh/enroll.h"
#include "sockmesh/tunnel.h"
#include "sockmesh/flowacct.h"
#include "sockmesh/redirect.h"
#include "sockmesh/policy.h"

/*
 * enroll_paths: the local workloads' cgroup paths below the enrollment root,
 * one entry per path component (include/sockmesh/enroll.h). Written by the
 * daemon; read by every program through lib/enroll.h.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* set by the loader */
	__type(key, struct sm_enroll_key);
	__type(value, struct sm_enroll_node);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} enroll_paths SEC(".maps") __weak;

/* services: exact address:port → hosting workload. Written by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* set by the loader */
	__type(key, struct sm_service_key);
	__type(value, struct sm_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps") __weak;

/* cidrs: longest-prefix match of an address → identity. Written by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384); /* set by the loader */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sm_cidr_key);
	__type(value, struct sm_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidrs SEC(".maps") __weak;

/*
 * orig_dst: 4-tuple of an enrolled client socket → what it asked for. Written
 * by sockops at ACTIVE_ESTABLISHED for captured and same-node connections,
 * deleted at close; read by cgroup/getsockopt (SO_ORIGINAL_DST) and by the
 * passive side's sockops to learn a same-node client's identity. A plain hash,
 * not LRU: a full map must be visible (counted), never a silent eviction.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* set by the loader */
	__type(key, struct sm_tuple);
	__type(value, struct sm_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} orig_dst SEC(".maps") __weak;

/* sock_states: per-socket state, freed with the socket. Written by all features. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sm_sock_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_states SEC(".maps") __weak;

/* sock_pairs: same-node sockets for sk_msg redirect, keyed by own tuple. Written by sockops. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536); /* set by the loader */
	__type(key, struct sm_sock_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_pairs SEC(".maps") __weak;

/*
 * redirect_rx: a socket's own sock_pairs key → bytes sk_msg moved into it, and
 * the socket's address. sk_msg cannot reach the receiving socket's storage
 * (no reference release in that program type), so the receiver's count lives
 * here. Created by sockops with the sockhash entry, deleted at close.
 */
struct sm_redirect_rx {
	__u64 bytes;
	/*
	 * The socket (its struct tcp_sock), for the senders' flow control in
	 * bpf/redirect.bpf.c, which only probe-reads through it: TCP sockets
	 * are freed after an RCU grace period, and a stale read can only move
	 * a sender to TCP early.
	 */
	__u64 sk;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* set by the loader, = sock_pairs */
	__type(key, struct sm_sock_key);
	__type(value, struct sm_redirect_rx);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} redirect_rx SEC(".maps") __weak;

/*
 * tunnel_facts: a tunnelled stream's far end → what the tunnel knew of it
 * (include/sockmesh/tunnel.h). Written and deleted by the daemon only; no
 * program reads it. Pinned so that the next daemon names the connections
 * the last one carried when they were cut.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* set by the loader, = orig_dst */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct sm_tunnel_key));
	__uint(value_size, sizeof(struct sm_tunnel_fact));
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tunnel_facts SEC(".maps") __weak;

/* flow_events: struct sm_flow_event records to the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* set by the loader */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flow_events SEC(".maps") __weak;

/* counters: enum sm_counter → count, per CPU. Read by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SM_CNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps") __weak;

/* node_source: the address captured sockets are bound to (sockmesh/intercept.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sm_node_source);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} node_source SEC(".maps") __weak;

/*
 * lost_reported: enum sm_counter → the value last reported in a "lost"
 * record. Written by the daemon only; pinned, so a restarted daemon reports
 * exactly what was lost while it was away.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SM_CNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lost_reported SEC(".maps") __weak;

/*
 * Connection policy (include/sockmesh/policy.h). Two slots per outer map:
 * the daemon fills new inner maps for a revision in the slot not in use,
 * then flips policy_state.slot, so a lookup sees one whole revision or the
 * other, never a mix; the entries and the CIDR identities flip together.
 */
struct sm_policy_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* the daemon creates each revision's map at its size */
	/* sizes, not BTF types: objects that never use the structs carry only forward declarations
	 */
	__uint(key_size, sizeof(struct sm_policy_key));
	__uint(value_size, sizeof(struct sm_policy_value));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct sm_policy_inner); /* last: a flexible array */
} policy_maps SEC(".maps") __weak;

/* CIDR sources → their policy identities (LPM, key as the cidrs map's). */
struct sm_policy_cidr_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct sm_cidr_key));
	__uint(value_size, sizeof(__u32));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct sm_policy_cidr_inner);
} policy_cidr_maps SEC(".maps") __weak;

/* Which slot is live, its revision, and whether any policy is loaded. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sm_policy_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy_state SEC(".maps") __weak;

#endif /* SOCKMESH_BPF_MAPS_H */
