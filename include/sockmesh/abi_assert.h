/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The layout of every struct shared by the kernel programs and user space,
 * written down once and asserted at compile time on both sides:
 * tests/unit/test_abi.c (host compiler) and bpf/abi_check.bpf.c (clang -target
 * bpf) include this file, so a change that makes the two compilers disagree,
 * or that moves a field of a pinned map's key or value, fails the build.
 *
 * The includer provides __u8..__u64/__be16 (vmlinux.h in BPF code,
 * <linux/types.h> in user space), as for every header here.
 *
 * When a struct changes on purpose: recompute its numbers by hand from the
 * explicit padding, update the lists below, and say in the commit whether
 * pinned maps from an older daemon can still be adopted.
 */
#ifndef SOCKMESH_ABI_ASSERT_H
#define SOCKMESH_ABI_ASSERT_H

#include "sockmesh/common.h"
#include "sockmesh/flowacct.h"
#include "sockmesh/intercept.h"
#include "sockmesh/enroll.h"
#include "sockmesh/tunnel.h"
#include "sockmesh/redirect.h"
#include "sockmesh/policy.h"

/* X(struct tag, sizeof) for every shared struct. */
#define SM_ABI_STRUCTS(X)                                                                          \
	X(sm_workload, 8)                                                                          \
	X(sm_service_key, 20)                                                                      \
	X(sm_service, 16)                                                                          \
	X(sm_cidr_key, 24)                                                                         \
	X(sm_tuple, 40)                                                                            \
	X(sm_orig_dst, 32)                                                                         \
	X(sm_sock_state, 80)                                                                       \
	X(sm_flow_event, 168)                                                                      \
	X(sm_sock_key, 48)                                                                         \
	X(sm_policy_key, 12)                                                                       \
	X(sm_policy_value, 16)                                                                     \
	X(sm_policy_state, 16)                                                                     \
	X(sm_enroll_key, 256)                                                                      \
	X(sm_enroll_node, 16)                                                                      \
	X(sm_tunnel_key, 20)                                                                       \
	X(sm_tunnel_fact, 680)

/* X(struct tag, field, offsetof) for every field of the structs above. */
#define SM_ABI_FIELDS(X)                                                                           \
	X(sm_enroll_key, parent, 0)                                                                \
	X(sm_enroll_key, name, 8)                                                                  \
	X(sm_enroll_node, node, 0)                                                                 \
	X(sm_enroll_node, wl, 8)                                                                   \
	X(sm_tunnel_key, family, 0)                                                                \
	X(sm_tunnel_key, pad, 1)                                                                   \
	X(sm_tunnel_key, port, 2)                                                                  \
	X(sm_tunnel_key, addr, 4)                                                                  \
	X(sm_tunnel_fact, instance, 0)                                                             \
	X(sm_tunnel_fact, written_ns, 8)                                                           \
	X(sm_tunnel_fact, handshake_us, 16)                                                        \
	X(sm_tunnel_fact, inbound, 20)                                                             \
	X(sm_tunnel_fact, pad, 21)                                                                 \
	X(sm_tunnel_fact, trace, 24)                                                               \
	X(sm_tunnel_fact, version, 88)                                                             \
	X(sm_tunnel_fact, cipher, 104)                                                             \
	X(sm_tunnel_fact, local_spiffe_id, 168)                                                    \
	X(sm_tunnel_fact, peer_spiffe_id, 424)                                                     \
	X(sm_workload, identity, 0)                                                                \
	X(sm_workload, flags, 4)                                                                   \
	X(sm_service_key, family, 0)                                                               \
	X(sm_service_key, proto, 1)                                                                \
	X(sm_service_key, port, 2)                                                                 \
	X(sm_service_key, addr, 4)                                                                 \
	X(sm_service, identity, 0)                                                                 \
	X(sm_service, flags, 4)                                                                    \
	X(sm_service, node, 8)                                                                     \
	X(sm_service, pad, 12)                                                                     \
	X(sm_cidr_key, prefixlen, 0)                                                               \
	X(sm_cidr_key, family, 4)                                                                  \
	X(sm_cidr_key, pad, 5)                                                                     \
	X(sm_cidr_key, addr, 8)                                                                    \
	X(sm_tuple, family, 0)                                                                     \
	X(sm_tuple, pad, 1)                                                                        \
	X(sm_tuple, sport, 4)                                                                      \
	X(sm_tuple, dport, 6)                                                                      \
	X(sm_tuple, saddr, 8)                                                                      \
	X(sm_tuple, daddr, 24)                                                                     \
	X(sm_orig_dst, family, 0)                                                                  \
	X(sm_orig_dst, pad, 1)                                                                     \
	X(sm_orig_dst, port, 2)                                                                    \
	X(sm_orig_dst, src_identity, 4)                                                            \
	X(sm_orig_dst, dst_identity, 8)                                                            \
	X(sm_orig_dst, pad2, 12)                                                                   \
	X(sm_orig_dst, addr, 16)                                                                   \
	X(sm_sock_state, cookie, 0)                                                                \
	X(sm_sock_state, start_ns, 8)                                                              \
	X(sm_sock_state, last_report_ns, 16)                                                       \
	X(sm_sock_state, cgroup_id, 24)                                                            \
	X(sm_sock_state, redirected_tx, 32)                                                        \
	X(sm_sock_state, netns_cookie, 40)                                                         \
	X(sm_sock_state, identity, 48)                                                             \
	X(sm_sock_state, peer_identity, 52)                                                        \
	X(sm_sock_state, flags, 56)                                                                \
	X(sm_sock_state, orig_family, 60)                                                          \
	X(sm_sock_state, pad, 61)                                                                  \
	X(sm_sock_state, orig_port, 62)                                                            \
	X(sm_sock_state, orig_addr, 64)                                                            \
	X(sm_flow_event, type, 0)                                                                  \
	X(sm_flow_event, family, 1)                                                                \
	X(sm_flow_event, orig_family, 2)                                                           \
	X(sm_flow_event, pad0, 3)                                                                  \
	X(sm_flow_event, flags, 4)                                                                 \
	X(sm_flow_event, identity, 8)                                                              \
	X(sm_flow_event, peer_identity, 12)                                                        \
	X(sm_flow_event, cookie, 16)                                                               \
	X(sm_flow_event, cgroup_id, 24)                                                            \
	X(sm_flow_event, start_ns, 32)                                                             \
	X(sm_flow_event, ts_ns, 40)                                                                \
	X(sm_flow_event, local_addr, 48)                                                           \
	X(sm_flow_event, remote_addr, 64)                                                          \
	X(sm_flow_event, orig_addr, 80)                                                            \
	X(sm_flow_event, local_port, 96)                                                           \
	X(sm_flow_event, remote_port, 98)                                                          \
	X(sm_flow_event, orig_port, 100)                                                           \
	X(sm_flow_event, pad1, 102)                                                                \
	X(sm_flow_event, bytes_acked, 104)                                                         \
	X(sm_flow_event, bytes_received, 112)                                                      \
	X(sm_flow_event, redirected_tx, 120)                                                       \
	X(sm_flow_event, redirected_rx, 128)                                                       \
	X(sm_flow_event, segs_in, 136)                                                             \
	X(sm_flow_event, segs_out, 140)                                                            \
	X(sm_flow_event, total_retrans, 144)                                                       \
	X(sm_flow_event, srtt_us, 148)                                                             \
	X(sm_flow_event, policy_rule, 152)                                                         \
	X(sm_flow_event, policy_revision, 156)                                                     \
	X(sm_flow_event, policy_action, 160)                                                       \
	X(sm_flow_event, policy_reason, 161)                                                       \
	X(sm_flow_event, pad2, 162)                                                                \
	X(sm_flow_event, pad3, 164)                                                                \
	X(sm_policy_key, src_identity, 0)                                                          \
	X(sm_policy_key, dst_identity, 4)                                                          \
	X(sm_policy_key, dport, 8)                                                                 \
	X(sm_policy_key, proto, 10)                                                                \
	X(sm_policy_key, pad, 11)                                                                  \
	X(sm_policy_value, action, 0)                                                              \
	X(sm_policy_value, reason, 1)                                                              \
	X(sm_policy_value, flags, 2)                                                               \
	X(sm_policy_value, pad, 3)                                                                 \
	X(sm_policy_value, rule_id, 4)                                                             \
	X(sm_policy_value, audit_rule_id, 8)                                                       \
	X(sm_policy_value, revision, 12)                                                           \
	X(sm_policy_state, slot, 0)                                                                \
	X(sm_policy_state, revision, 4)                                                            \
	X(sm_policy_state, loaded, 8)                                                              \
	X(sm_policy_state, pad, 12)                                                                \
	X(sm_sock_key, netns_cookie, 0)                                                            \
	X(sm_sock_key, family, 8)                                                                  \
	X(sm_sock_key, pad, 9)                                                                     \
	X(sm_sock_key, local_port, 12)                                                             \
	X(sm_sock_key, remote_port, 14)                                                            \
	X(sm_sock_key, local_addr, 16)                                                             \
	X(sm_sock_key, remote_addr, 32)

/*
 * X(name, value) for constants whose numbers are part of the pinned-map ABI
 * (counter indexes, event types, flag bits): they may be appended to, never
 * renumbered.
 */
#define SM_ABI_CONSTANTS(X)                                                                        \
	X(SM_ID_WILDCARD, 0)                                                                       \
	X(SM_ID_HOST, 1)                                                                           \
	X(SM_ID_WORLD, 2)                                                                          \
	X(SM_ID_FIRST_ALLOCATED, 256)                                                              \
	X(SM_AF_INET, 2)                                                                           \
	X(SM_AF_INET6, 10)                                                                         \
	X(SM_CNT_CONNECT_CAPTURED, 0)                                                              \
	X(SM_CNT_CONNECT_SAME_NODE, 1)                                                             \
	X(SM_CNT_CONNECT_PASSTHROUGH, 2)                                                           \
	X(SM_CNT_CONNECT_UNENROLLED, 3)                                                            \
	X(SM_CNT_CONNECT_DAEMON, 4)                                                                \
	X(SM_CNT_CONNECT_FAILCLOSED, 5)                                                            \
	X(SM_CNT_STORAGE_FAIL, 6)                                                                  \
	X(SM_CNT_ORIGDST_UPDATE_FAIL, 7)                                                           \
	X(SM_CNT_RINGBUF_RESERVE_FAIL, 8)                                                          \
	X(SM_CNT_SOCKHASH_UPDATE_FAIL, 9)                                                          \
	X(SM_CNT_GETSOCKOPT_HIT, 10)                                                               \
	X(SM_CNT_GETSOCKOPT_MISS, 11)                                                              \
	X(SM_CNT_REDIRECT_MSGS, 12)                                                                \
	X(SM_CNT_REDIRECT_BYTES, 13)                                                               \
	X(SM_CNT_FLOW_START, 14)                                                                   \
	X(SM_CNT_FLOW_UPDATE, 15)                                                                  \
	X(SM_CNT_FLOW_END, 16)                                                                     \
	X(SM_CNT_INGRESS_PLAINTEXT_DROPPED, 17)                                                    \
	X(SM_CNT_INGRESS_PLAINTEXT_ALLOWED, 18)                                                    \
	X(SM_CNT_REDIRECT_PEER_MISSING, 19)                                                        \
	X(SM_CNT_POLICY_DENIED, 20)                                                                \
	X(SM_CNT_POLICY_ALLOWED, 21)                                                               \
	X(SM_CNT_POLICY_AUDIT, 22)                                                                 \
	X(SM_CNT_POLICY_CLOSED, 23)                                                                \
	X(SM_CNT_REDIRECT_BACKLOG, 24)                                                             \
	X(SM_FLOW_DENIED, 4)                                                                       \
	X(SM_FLOW_AUDIT, 5)                                                                        \
	X(SM_POLICY_SRC_DEFAULT, 0xffffffffU)                                                      \
	X(SM_ID_CIDR_BASE, 16777216)                                                               \
	X(SM_POLICY_ALLOW, 1)                                                                      \
	X(SM_POLICY_DENY, 2)                                                                       \
	X(SM_POLICY_R_RULE, 1)                                                                     \
	X(SM_POLICY_R_DEFAULT_DENY, 2)                                                             \
	X(SM_POLICY_R_NO_POLICY, 3)                                                                \
	X(SM_POLICY_F_AUDIT, 1)                                                                    \
	X(SM_CNT_MAX, 25)                                                                          \
	X(SM_FLOW_START, 1)                                                                        \
	X(SM_FLOW_UPDATE, 2)                                                                       \
	X(SM_FLOW_END, 3)                                                                          \
	X(SM_WL_F_STRICT, 1)                                                                       \
	X(SM_SVC_F_REMOTE, 1)                                                                      \
	X(SM_SK_F_CAPTURED, 1)                                                                     \
	X(SM_SK_F_ESTABLISHED, 2)                                                                  \
	X(SM_SK_F_PASSIVE, 4)                                                                      \
	X(SM_SK_F_IN_SOCKHASH, 8)                                                                  \
	X(SM_SK_F_SAME_NODE, 16)                                                                   \
	X(SM_SK_F_PLAINTEXT, 32)                                                                   \
	X(SM_SK_F_TCP_ONLY, 64)                                                                    \
	X(SM_SK_F_POLICY_CLOSED, 128)

/* offsetof without <stddef.h>, which BPF code does not have */
#define SM_ABI_OFFSETOF(type, field) __builtin_offsetof(struct type, field)

#define SM_ABI_ASSERT_SIZE(type, size)                                                             \
	_Static_assert(sizeof(struct type) == (size), "sizeof(struct " #type ") != " #size);
#define SM_ABI_ASSERT_FIELD(type, field, off)                                                      \
	_Static_assert(SM_ABI_OFFSETOF(type, field) == (off),                                      \
		       "offsetof(struct " #type ", " #field ") != " #off);
#define SM_ABI_ASSERT_CONST(name, value) _Static_assert((name) == (value), #name " != " #value);

SM_ABI_STRUCTS(SM_ABI_ASSERT_SIZE)
SM_ABI_FIELDS(SM_ABI_ASSERT_FIELD)
SM_ABI_CONSTANTS(SM_ABI_ASSERT_CONST)

/* one name per counter, so `sockmesh status` never prints a counter under the wrong name */
_Static_assert(SM_CNT_MAX <= SM_CNT_SLOTS, "the counter maps have no slot for every counter");
_Static_assert(sizeof((const char *[]) SM_COUNTER_NAMES) / sizeof(const char *) == SM_CNT_MAX,
	       "SM_COUNTER_NAMES must name every enum sm_counter value");

#endif /* SOCKMESH_ABI_ASSERT_H */
