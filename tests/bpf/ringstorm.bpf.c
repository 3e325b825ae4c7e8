// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The kernel side of tests/tools/ringstorm: offers a running daemon's
 * flow_events ring buffer more events per second than any reader can take.
 * Each run tries STORM_EVENTS conn_end events of made-up sockets (local and
 * remote port 1, so a flowlog.deny filter keeps them out of the file) and
 * counts those the full ring refuses in ringbuf_reserve_fail, as the
 * datapath's own programs do (bpf/flowacct.bpf.c).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sockmesh/flowacct.h"

#define STORM_EVENTS 4096

/* Both are the daemon's pinned maps (the loader reuses them). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} flow_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SM_CNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static long offer_event(__u64 i, void *ctx)
{
	__u32 key = SM_CNT_RINGBUF_RESERVE_FAIL;
	struct sm_flow_event *ev;
	__u64 *lost, now;

	ev = bpf_ringbuf_reserve(&flow_events, sizeof(*ev), 0);
	if (!ev) {
		lost = bpf_map_lookup_elem(&counters, &key);
		if (lost)
			*lost += 1; /* per-CPU slot, and the program runs pinned to its CPU */
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	now = bpf_ktime_get_ns();
	ev->type = SM_FLOW_END;
	ev->family = SM_AF_INET;
	ev->cookie = (1ULL << 62) | (now & 0xffffffffffULL) | i;
	ev->start_ns = now;
	ev->ts_ns = now;
	ev->local_addr[0] = 127;
	ev->local_addr[3] = 1;
	ev->remote_addr[0] = 127;
	ev->remote_addr[3] = 1;
	ev->local_port = bpf_htons(1);
	ev->remote_port = bpf_htons(1);
	/* as the datapath does once the ring is a quarter full, as it is in a storm */
	bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("syscall")
int ringstorm(void *ctx)
{
	bpf_loop(STORM_EVENTS, offer_event, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
