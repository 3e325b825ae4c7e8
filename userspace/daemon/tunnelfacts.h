/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_TUNNELFACTS_H
#define SOCKMESHD_TUNNELFACTS_H

#include <stdbool.h>
#include <stdint.h>

struct sm_daemon;
struct sm_addr;
struct sm_flow_tls;
struct sm_flow_record;

/*
 * tunnelfacts.c: what the tunnel knew of each stream, in the pinned
 * tunnel_facts map, for the records of connections a daemon that stopped or
 * crashed carried (include/sockmesh/tunnel.h).
 */
int sm_tunnel_facts_start(struct sm_daemon *d);
/* A stream is established (a worker): keep its facts. */
void sm_tunnel_fact_publish(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
			    bool inbound, const char *trace, const struct sm_flow_tls *tls);
/* The stream ended while the daemon runs (a worker): its facts go. */
void sm_tunnel_fact_forget(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port);
/*
 * A record of a tunnelled socket the tunnel has no stream for (main thread):
 * fill it from the facts; final (a conn_end) forgets them, and names a reset
 * the stopped daemon's doing (aborted: the socket closed by a reset). True
 * when there were facts.
 */
bool sm_tunnel_fact_apply(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
			  bool final, bool aborted, struct sm_flow_record *r);
/* Main thread, until d->facts_swept: forget an earlier daemon's unclaimed facts. */
void sm_tunnel_facts_sweep(struct sm_daemon *d);

#endif /* SOCKMESHD_TUNNELFACTS_H */
