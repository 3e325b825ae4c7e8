// SPDX-License-Identifier: Apache-2.0
/* The daemon's sockets towards local workloads (upstream.h). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>

#include "catalog.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "transparent.h"
#include "sockmesh.skel.h"
#include "upstream.h"
#include "util.h"

#include "sockmesh/intercept.h"

static bool is_own_address(const struct sm_daemon *d, const struct sm_addr *a)
{
	const struct sm_node_def *self;

	if (d->node_idx < 0)
		return false;
	self = &d->cat.nodes[d->node_idx];
	for (unsigned int i = 0; i < self->naddrs && i < SM_NODE_ADDRS_MAX; i++)
		if (sm_addr_equal(a, &self->addrs[i]))
			return true;
	return false;
}

int sm_upstream_connect(const struct sm_daemon *d, const struct sm_addr *dst, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(dst->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, err;

	if (fd < 0)
		return -errno;
	/* a local service's end of a relay: a daemon that dies mid-stream resets it */
	sm_sock_abort_on_close(fd);
	/* the mark keeps our own connection out of connect4/6 */
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &d->cfg.daemon_mark, sizeof(d->cfg.daemon_mark)) <
	    0)
		pr_debug("SO_MARK on upstream socket: %s", strerror(errno));
	/*
	 * The daemon usually closes first (a tunnel's half-close becomes its
	 * FIN), so the TIME_WAITs are on its side, and the kernel reuses one
	 * within the minute only for loopback addresses (tcp_tw_reuse=2, the
	 * default). From the node's address to one service at a node address,
	 * 28k of them (the whole ephemeral range) piled up within 15 s at 2,000
	 * connections per second: connect() spent a third of the machine's CPU
	 * searching for a port, and then failed. A service at one of the node's
	 * own addresses is reached over lo anyway, so the daemon calls it from
	 * the loopback address (as Istio's sidecar calls its application from
	 * 127.0.0.6); the port is still the kernel's choice, at connect().
	 */
	if (is_own_address(d, dst)) {
		struct sm_addr src;

		sm_addr_parse(dst->family == AF_INET ? "127.0.0.1" : "::1", &src);
		len = sm_addr_to_sockaddr(&src, 0, &ss);
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *) &ss, len) < 0)
			pr_debug("binding an upstream socket to the loopback address: %s",
				 strerror(errno));
	}
	len = sm_addr_to_sockaddr(dst, port, &ss);
	if (connect(fd, (struct sockaddr *) &ss, len) == 0 || errno == EINPROGRESS)
		return fd;
	err = errno;
	close(fd);
	return -err;
}

/*
 * A socket that connects from src:sport, an address of another node: it is
 * IP_TRANSPARENT (bind to an address this host does not hold) and carries
 * the transparent mark, which the routing set up by transparent.c keeps on
 * this host for the service's replies. sport 0, or a port taken here (a
 * TIME_WAIT of an earlier caller's connection), is the kernel's choice.
 *
 * Bound to lo (where a local service is reached anyway): the daemon usually
 * closes first, so the TIME_WAITs are its own, and the kernel reuses one a
 * second later only for a socket bound to lo or with a loopback address
 * (tcp_tw_reuse=2, the default); SO_REUSEADDR lets bind() take a caller's
 * port that such a TIME_WAIT still holds. Without both, a busy service ran
 * the daemon out of ports, as sm_upstream_connect() says.
 */
static int connect_transparent(uint32_t mark, const struct sm_addr *dst, uint16_t port,
			       const struct sm_addr *src, uint16_t sport)
{
	int one = 1, err, fd;
	struct sockaddr_storage ss;
	socklen_t len;

	fd = socket(dst->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sm_sock_abort_on_close(fd);
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) < 0 ||
	    (dst->family == AF_INET
		     ? setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one))
		     : setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))) < 0) {
		err = -errno;
		goto close_fd;
	}
	len = sm_addr_to_sockaddr(src, sport, &ss);
	if (sport && bind(fd, (struct sockaddr *) &ss, len) == 0)
		goto bound;
	if (sport && errno != EADDRINUSE) {
		err = -errno;
		goto close_fd;
	}
	sport = 0;
	len = sm_addr_to_sockaddr(src, 0, &ss);
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *) &ss, len) < 0) {
		err = -errno;
		goto close_fd;
	}
bound:
	len = sm_addr_to_sockaddr(dst, port, &ss);
	if (connect(fd, (struct sockaddr *) &ss, len) == 0 || errno == EINPROGRESS)
		return fd;
	err = -errno;
close_fd:
	close(fd);
	/* the caller's port is in use towards this service (TIME_WAIT): any port will do */
	if (sport && err == -EADDRNOTAVAIL)
		return connect_transparent(mark, dst, port, src, 0);
	return err;
}

int sm_upstream_connect_from(const struct sm_daemon *d, const struct sm_addr *dst, uint16_t port,
			     const struct sm_addr *src, uint16_t sport)
{
	uint32_t mark = sm_transparent_mark();
	char buf[INET6_ADDRSTRLEN];
	int fd;

	if (!src || !mark || src->family != dst->family)
		return sm_upstream_connect(d, dst, port);
	fd = connect_transparent(mark, dst, port, src, sport);
	/* the service's own answer (refused, unreachable) is the caller's; a setup error is ours */
	if (fd >= 0 || fd == -ECONNREFUSED || fd == -ENETUNREACH || fd == -EHOSTUNREACH)
		return fd;
	pr_warn_limited("cannot connect to a local service from the caller's address %s: %s; "
			"calling it from the loopback address instead",
			sm_addr_format(src, buf, sizeof(buf)), strerror(-fd));
	return sm_upstream_connect(d, dst, port);
}

int sm_capture_source_identity(struct sm_daemon *d, int cfd, const struct sm_addr *cli,
			       uint16_t cport, uint32_t *identity)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct sm_tuple key;
	struct sm_orig_dst od;
	struct sm_addr local;
	uint16_t lport;

	if (getsockname(cfd, (struct sockaddr *) &ss, &sl) < 0)
		return -errno;
	sm_addr_from_sockaddr((struct sockaddr *) &ss, &local, &lport);
	memset(&key, 0, sizeof(key));
	key.family = cli->family;
	key.sport = htons(cport);
	key.dport = htons(lport);
	memcpy(key.saddr, cli->bytes, cli->family == AF_INET ? 4 : 16);
	memcpy(key.daddr, local.bytes, local.family == AF_INET ? 4 : 16);
	if (bpf_map_lookup_elem(bpf_map__fd(d->skel->maps.orig_dst), &key, &od))
		return -ENOENT;
	*identity = od.src_identity;
	return 0;
}
