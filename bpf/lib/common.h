/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Helpers shared by the kernel programs: loader-set configuration, counters,
 * destination lookups and address handling (which workload a cgroup is:
 * lib/enroll.h). Helpers return 0 / -errno or a
 * pointer; only program entries turn results into verdicts.
 */
#ifndef SOCKMESH_BPF_COMMON_H
#define SOCKMESH_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "lib/maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define SM_SOCK_STREAM	 1
#define SM_ENOSPC	 28
#define SM_IPPROTO_TCP	 6
#define SM_EPERM_VERDICT 0 /* cgroup sock_addr: 0 = reject with EPERM */
#define SM_ALLOW_VERDICT 1

/* Configuration set by the loader between open and load (rodata). */
const volatile __u32 cfg_daemon_mark __weak = SM_DEFAULT_DAEMON_MARK;
const volatile __be32 cfg_outbound_ip4 __weak = 0;    /* network order */
const volatile __u32 cfg_outbound_ip6[4] __weak = {}; /* network order */
const volatile __be16 cfg_outbound_port __weak = 0;   /* network order */
const volatile __be16 cfg_outbound6_port __weak = 0;  /* network order */
/*
 * SO_MARK of the daemon's connections to local services that carry a
 * tunnelled caller's address (datapath.transparent_mark; 0 = none): their SYN
 * comes from another node's address but from this host.
 */
const volatile __u32 cfg_transparent_mark __weak = 0;
const volatile bool cfg_fail_open __weak = false;
const volatile bool cfg_redirect __weak = false;
const volatile __u64 cfg_update_interval_ns __weak = 10ULL * 1000000000ULL;
/* flow_events fill level (bytes) from which a new event wakes the daemon */
const volatile __u64 cfg_ringbuf_wakeup_bytes __weak = 0;

static __always_inline void count_add(enum sm_counter c, __u64 n)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += n; /* per-CPU slot: no atomics needed */
}

static __always_inline void count(enum sm_counter c)
{
	count_add(c, 1);
}

static __always_inline bool ip6_is_v4mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/*
 * Store an address in the 16-byte map form. A v4-mapped IPv6 address becomes
 * IPv4 so both ends of a dual-stack connection agree on the key. Returns the
 * family stored.
 */
static __always_inline __u8 addr_store(__u8 *dst, __u32 family, __u32 ip4, const __u32 *ip6)
{
	__u32 *d = (__u32 *) dst;

	if (family == AF_INET6 && !ip6_is_v4mapped(ip6)) {
		d[0] = ip6[0];
		d[1] = ip6[1];
		d[2] = ip6[2];
		d[3] = ip6[3];
		return AF_INET6;
	}
	d[0] = family == AF_INET6 ? ip6[3] : ip4;
	d[1] = 0;
	d[2] = 0;
	d[3] = 0;
	return AF_INET;
}

/*
 * The identity and placement of a destination: exact service first, then the
 * longest CIDR. Returns NULL when the destination is not in the catalog.
 */
static __always_inline struct sm_service *lookup_destination(__u8 family, const __u8 *addr,
							     __be16 port)
{
	struct sm_service_key skey = {};
	struct sm_cidr_key ckey = {};
	struct sm_service *svc;

	skey.family = family;
	skey.proto = SM_IPPROTO_TCP;
	skey.port = port;
	__builtin_memcpy(skey.addr, addr, 16);
	svc = bpf_map_lookup_elem(&services, &skey);
	if (svc)
		return svc;
	ckey.prefixlen = 32 + (family == AF_INET ? 32 : 128);
	ckey.family = family;
	__builtin_memcpy(ckey.addr, addr, 16);
	return bpf_map_lookup_elem(&cidrs, &ckey);
}

static __always_inline __u32 identity_of_peer(__u8 family, const __u8 *addr)
{
	struct sm_cidr_key ckey = {};
	struct sm_service *svc;

	ckey.prefixlen = 32 + (family == AF_INET ? 32 : 128);
	ckey.family = family;
	__builtin_memcpy(ckey.addr, addr, 16);
	svc = bpf_map_lookup_elem(&cidrs, &ckey);
	return svc ? svc->identity : SM_ID_WORLD;
}

#endif /* SOCKMESH_BPF_COMMON_H */
