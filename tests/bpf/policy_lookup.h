/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What tests/bpf/policy_lookup.bpf.c's programs take and give back through
 * BPF_PROG_TEST_RUN (tests/unit/test_bpf_policy.c): the question going in,
 * the kernel's answer coming out. Include after the __u32 types.
 */
#ifndef SOCKMESH_TEST_POLICY_LOOKUP_H
#define SOCKMESH_TEST_POLICY_LOOKUP_H

#include "sockmesh/policy.h"

struct policy_lookup_args {
	/* in */
	__u32 src; /* the caller's identity (policy_lookup_run) */
	__u32 dst;
	__u16 dport; /* host order */
	__u8 family; /* policy_lookup_addr_run: the caller's AF_INET or AF_INET6 address */
	__u8 pad;
	__u8 addr[16];
	/* out */
	__u32 found;   /* 1: an entry decided (value), 0: no entry or no policy loaded */
	__u32 src_out; /* the source identity looked up (by address: the CIDR trie's, 0: none) */
	struct sm_policy_value value;
};

#endif /* SOCKMESH_TEST_POLICY_LOOKUP_H */
