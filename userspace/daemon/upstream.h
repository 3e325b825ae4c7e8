/* SPDX-License-Identifier: Apache-2.0 */
/*
 * upstream.c: the daemon's sockets towards local workloads, which the
 * outbound side (proxy.c) and the tunnel both use: its own marked
 * connection to a service, and who the client of a captured connection is
 * (the kernel's orig_dst entry). A leaf: it calls no other module.
 */
#ifndef SOCKMESHD_UPSTREAM_H
#define SOCKMESHD_UPSTREAM_H

#include <stdint.h>

struct sm_addr;
struct sm_daemon;

/*
 * The local workload behind a captured client socket cfd (the client at
 * cli:cport): its identity from the orig_dst entry. 0 or -errno.
 */
int sm_capture_source_identity(struct sm_daemon *d, int cfd, const struct sm_addr *cli,
			       uint16_t cport, uint32_t *identity);
/*
 * The daemon's own non-blocking connection to dst:port, marked so connect4/6
 * let it pass; from the loopback address when dst is one of this node's own
 * addresses (see upstream.c). Returns the fd, its connect() done or in progress,
 * or connect()'s -errno.
 */
int sm_upstream_connect(const struct sm_daemon *d, const struct sm_addr *dst, uint16_t port);

#endif /* SOCKMESHD_UPSTREAM_H */
