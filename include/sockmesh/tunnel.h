/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the tunnel knows of each stream it carries, kept where it outlives the
 * daemon: the pinned "tunnel_facts" map (userspace/daemon/tunnelfacts.c). A
 * daemon that stops or crashes takes its relays with it; the workload's
 * socket is then reset and its conn_end is read by the next daemon, which
 * finds here the trace id and the TLS details the old one knew, and which
 * daemon that was. The kernel programs never read it; it is declared with
 * the other maps so that it is pinned and adopted like them.
 * See common.h for the rules.
 */
#ifndef SOCKMESH_TUNNEL_H
#define SOCKMESH_TUNNEL_H

#include "sockmesh/common.h"

/* Key: the workload socket's far end, as its flow records see it (the daemon's socket). */
struct sm_tunnel_key {
	__u8 family; /* SM_AF_INET or SM_AF_INET6 */
	__u8 pad;
	__u16 port; /* host order */
	__u8 addr[16];
};

struct sm_tunnel_fact {
	__u64 instance;	  /* the daemon that carried the stream (random per start) */
	__u64 written_ns; /* CLOCK_MONOTONIC when the stream was established */
	__u32 handshake_us;
	__u8 inbound; /* 1: this node accepted the stream (the workload is the service) */
	__u8 pad[3];
	char trace[64];	  /* the stream's W3C traceparent */
	char version[16]; /* e.g. "TLSv1.3" */
	char cipher[64];  /* e.g. "TLS_AES_128_GCM_SHA256" */
	char local_spiffe_id[256];
	char peer_spiffe_id[256];
};

#endif /* SOCKMESH_TUNNEL_H */
