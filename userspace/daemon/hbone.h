/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_HBONE_H
#define SOCKMESHD_HBONE_H

#include <stdbool.h>
#include <stdint.h>

#include "spiffe.h"

struct sm_daemon;
struct sm_worker;
struct sm_worker_part;
struct sm_addr;
struct sm_flow_record;

/* hbone.c: the mTLS HTTP/2 CONNECT tunnel between nodes. */
struct sm_hbone_stats {
	uint64_t tls_ok;			 /* handshakes that verified the peer */
	uint64_t tls_failed[SM_SVID_REASON_MAX]; /* by enum sm_svid_reason */
	uint64_t tls_failed_other;		 /* timeouts, peer refusals, connect failures */
	uint64_t conns_in, conns_out;		 /* open TLS connections */
	uint64_t streams_open, streams_total, streams_failed;
	uint64_t requests_refused;	/* 400/502/503 answered */
	uint64_t upstream_errors;	/* the local service did not answer */
	uint64_t bad_frames;		/* malformed HTTP/2 */
	uint64_t refused_busy;		/* accepted while too many handshakes ran */
	uint64_t sni_selected;		/* inbound handshakes that chose a workload's SVID by SNI */
	uint64_t creds_reloads;		/* rotations applied */
	uint64_t creds_reload_failures; /* new sets refused (old kept) */
	uint64_t creds_expiring;	/* sets within tunnel.expiry_warning of expiry */
	uint64_t keepalive_failures;	/* connections closed: PING unanswered */
	uint64_t policy_streams_closed; /* inbound streams reset: a new revision denies them */
	uint64_t tls_send_blocked;	/* a TLS socket was full: output waited for the peer */
	uint64_t refused_per_source;	/* its source had max_handshakes_per_source in flight */
	uint64_t handshakes_evicted;	/* a stalled handshake of the heaviest source made room */
	uint64_t preface_timeouts;	/* mTLS done, no HTTP/2 preface in time */
	uint64_t accept_no_fd;		/* reset at accept: the daemon was out of descriptors */
};
/* Shared part (main thread): credentials and their rotation. */
int sm_hbone_start(struct sm_daemon *d);
void sm_hbone_free(struct sm_daemon *d);
/* Main thread, every second: credential rotation and expiry warnings. */
void sm_hbone_tick(struct sm_daemon *d);
/* The catalog was replaced (workers paused): reload credentials. 0 or -errno. */
int sm_hbone_catalog_changed(struct sm_daemon *d);
/* What the tunnel runs on every worker (register before the outbound side's). */
extern const struct sm_worker_part sm_hbone_worker_part;
/* Per worker: its inbound listeners, connections and flow-record joins. */
int sm_hbone_worker_start(struct sm_worker *w);
void sm_hbone_stop_accepting(struct sm_worker *w);
/* Listeners that rested for lack of descriptors watch their sockets again. */
void sm_hbone_resume_accepting(struct sm_worker *w);
void sm_hbone_worker_free(struct sm_worker *w);
/* Worker, every second: handshake and keepalive timeouts, idle connections. */
void sm_hbone_worker_tick(struct sm_worker *w);
/* The same, for one worker's own streams, on that worker's thread. */
void sm_hbone_worker_policy_recheck(struct sm_worker *w);
/* Summed over the workers plus the shared counters (any thread). */
void sm_hbone_stats(const struct sm_daemon *d, struct sm_hbone_stats *st);
void sm_hbone_worker_stats(const struct sm_worker *w, struct sm_hbone_stats *st);
/*
 * Take a captured connection (cfd, whose peer is cli:cport) to dst:dport
 * through the tunnel. 0: cfd is the tunnel's now; -errno: the caller still
 * owns cfd (not a remote service, no credentials, no route to the node).
 */
int sm_hbone_outbound(struct sm_worker *w, int cfd, const struct sm_addr *dst, uint16_t dport,
		      const struct sm_addr *cli, uint16_t cport);

#endif /* SOCKMESHD_HBONE_H */
