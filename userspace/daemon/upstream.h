/* SPDX-License-Identifier: Apache-2.0 */
/*
 * upstream.c: the daemon's sockets towards local workloads, which the
 * outbound side (proxy.c) and the tunnel both use: its own marked
 * connection to a service, and who the client of a captured connection is
 * (the kernel's orig_dst entry). It calls transparent.c (a leaf) only for
 * the mark of a connection from a caller's address.
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
/*
 * The same from src:sport, a tunnelled caller's node address (the service
 * sees the caller as it would without the mesh): an IP_TRANSPARENT socket
 * with the transparent mark (transparent.h); sport 0 or one in use here is
 * replaced by the kernel's choice. Without the transparent routing, or when
 * src is NULL or of another family than dst, it is sm_upstream_connect(); a
 * transparent socket that cannot be made falls back to it with a warning.
 * Returns the fd or connect()'s -errno.
 */
int sm_upstream_connect_from(const struct sm_daemon *d, const struct sm_addr *dst, uint16_t port,
			     const struct sm_addr *src, uint16_t sport);

#endif /* SOCKMESHD_UPSTREAM_H */
