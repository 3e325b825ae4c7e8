/* SPDX-License-Identifier: Apache-2.0 */
/*
 * transparent.c: the routing that lets the daemon call a local service from
 * a tunnelled caller's node address (docs/tunnel.md, "Real addresses"). In
 * the network namespace the daemon runs in:
 *   - net.ipv4.tcp_fwmark_accept = 1, so the service's accepted socket (and
 *     its SYN-ACK) takes the mark of the daemon's SYN; net.ipv4.fwmark_reflect
 *     and net.ipv6.fwmark_reflect = 1, so does a reset for a closed port;
 *   - `ip rule add fwmark M lookup T pref 32700` (IPv4 and IPv6);
 *   - `ip route add local 0.0.0.0/0 dev lo table T` (and ::/0),
 * where M = datapath.transparent_mark, T = datapath.transparent_table: the
 * service's replies to the caller's address stay on this host, for the
 * daemon's socket, instead of leaving for the caller's node. Set up at start,
 * removed at stop; no iptables. A leaf: it calls no other module.
 */
#ifndef SOCKMESHD_TRANSPARENT_H
#define SOCKMESHD_TRANSPARENT_H

#include <stdbool.h>
#include <stdint.h>

#define SM_TRANSPARENT_RULE_PREF 32700 /* before the main table's rule (32766) */

/*
 * Set up the rule, route and sysctl for mark and table (mark 0: do nothing).
 * An existing rule or route is taken as is. The sysctls' values from before
 * the first daemon are kept in STATE_DIR/transparent-sysctls until the
 * teardown that restores them. On failure everything set up is undone, a
 * warning says why and what to fix, and sm_transparent_mark() stays 0: the
 * daemon then calls services from the loopback address. Returns 0 or -errno.
 */
int sm_transparent_setup(uint32_t mark, uint32_t table, const char *state_dir);
/* Remove what sm_transparent_setup() set up; a sysctl that was 0 goes back to 0. */
void sm_transparent_teardown(void);
/*
 * Stop using the routing and leave it in place: another daemon of an upgrade
 * (the successor that took over, or the predecessor that still serves) uses
 * it and removes it at its own stop.
 */
void sm_transparent_leave(void);
/* The mark for a connection from a caller's address, or 0 when that is not set up. */
uint32_t sm_transparent_mark(void);

#endif /* SOCKMESHD_TRANSPARENT_H */
