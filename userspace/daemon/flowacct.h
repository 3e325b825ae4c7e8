/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_FLOWACCT_H
#define SOCKMESHD_FLOWACCT_H

#include <stdbool.h>
#include <stdint.h>

struct sm_daemon;
struct sm_config;
struct sm_error;
struct sm_flow_record;
struct sm_flow_endpoint;
struct sm_sinks_stats;

/* flowacct.c: ring buffer → flow records → sinks. */
int sm_flowexp_start(struct sm_daemon *d);
void sm_flowexp_stop(struct sm_daemon *d);
/*
 * Upgrade (handoff.c): one process at a time reads the ring buffer and one
 * writes the sinks. The predecessor releases the ring (after reading what is
 * in it) when the successor is ready; the successor takes it then, and opens
 * the sinks (writing the records it held) once the predecessor is gone.
 */
void sm_flowexp_release_ring(struct sm_daemon *d);
int sm_flowexp_take_ring(struct sm_daemon *d);
bool sm_flowexp_owns_ring(const struct sm_daemon *d);
void sm_flowexp_open_sinks(struct sm_daemon *d);
/* Emit lost records when the kernel's loss counters moved. */
void sm_flowexp_check_lost(struct sm_daemon *d);
uint64_t sm_flowexp_records(const struct sm_daemon *d);
uint64_t sm_flowexp_lost_records(const struct sm_daemon *d);
/*
 * Kernel events whose record waited for the tunnel to name the caller
 * (docs/flow-schema.md), and of them those written without it: the wait's
 * bound passed, the queue was full, or the daemon stopped reading the ring.
 */
void sm_flowexp_wait_stats(const struct sm_daemon *d, uint64_t *waited, uint64_t *expired);
/* The sinks' counters (zero before start). */
void sm_flowexp_sink_stats(const struct sm_daemon *d, struct sm_sinks_stats *st);
/* Write a record the daemon made itself (e.g. a refused handshake). Any thread. */
void sm_flowexp_emit(struct sm_daemon *d, const struct sm_flow_record *r);

/* The sinks' part: apply a reloaded config's flowlog section (SIGHUP). */
int sm_flowexp_reconfigure(struct sm_daemon *d, const struct sm_config *cfg, struct sm_error *err);

#endif /* SOCKMESHD_FLOWACCT_H */
