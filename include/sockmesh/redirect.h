/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Same-node socket redirect (bpf/redirect.bpf.c): the sockhash key.
 * See common.h for the rules.
 */
#ifndef SOCKMESH_REDIRECT_H
#define SOCKMESH_REDIRECT_H

#include "sockmesh/common.h"

/*
 * "sock_pairs" sockhash key. Each socket is inserted under its own tuple
 * (local first); sk_msg builds the reversed tuple to find its peer. The
 * netns cookie keeps identical loopback tuples of different namespaces apart.
 */
struct sm_sock_key {
	__u64 netns_cookie;
	__u8 family;
	__u8 pad[3];
	__be16 local_port;
	__be16 remote_port;
	__u8 local_addr[16];
	__u8 remote_addr[16];
};

#endif /* SOCKMESH_REDIRECT_H */
