// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The kernel's policy lookups (bpf/lib/policy.h) wrapped in programs a unit
 * test runs with BPF_PROG_TEST_RUN over the maps it filled, comparing every
 * answer with the user-side lookup and the reference evaluator
 * (tests/unit/test_bpf_policy.c). Both take and give back a struct
 * policy_lookup_args.
 */
#include "lib/common.h"
#include "lib/policy.h"

#include "policy_lookup.h"

/* policy_lookup() for a caller known by its identity; the args are the run's context. */
SEC("syscall")
int policy_lookup_run(struct policy_lookup_args *a)
{
	struct sm_policy_value *v;

	v = policy_lookup(a->src, a->dst, a->dport);
	a->src_out = a->src;
	a->found = v != NULL;
	if (v)
		a->value = *v;
	return 0;
}

/*
 * policy_lookup_addr() for a caller known by its address. Not a syscall
 * program: those are sleepable, and sleepable programs may not use the LPM
 * trie of the policy CIDRs (not even as an inner map). An XDP program is
 * not, and its test run hands back the packet: the args are the packet.
 */
SEC("xdp")
int policy_lookup_addr_run(struct xdp_md *ctx)
{
	void *data = (void *) (long) ctx->data, *end = (void *) (long) ctx->data_end;
	struct policy_lookup_args *a = data;
	struct sm_policy_value *v;
	__u8 addr[16];
	__u32 src;

	if ((void *) (a + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(addr, a->addr, sizeof(addr));
	v = policy_lookup_addr(a->family, addr, a->dst, a->dport, &src);
	a->src_out = src;
	a->found = v != NULL;
	if (v)
		a->value = *v;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
