/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flow-log sinks (file with rotation and gzip backups, stdout) behind the
 * flowlog section's filters, field mask and rate limits. Records are encoded
 * on the caller's thread and written by the sinks' own threads. Holds no
 * daemon state, so the unit tests drive it without root.
 */
#ifndef SOCKMESH_SINKS_H
#define SOCKMESH_SINKS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

struct sm_flow_record;
struct sm_sinks;

struct sm_sinks_stats {
	uint64_t written;	  /* records written whole to the file (to stdout without one) */
	uint64_t filtered;	  /* left out by flowlog.allow / flowlog.deny */
	uint64_t rate_limited;	  /* DROPPED/AUDIT records over flowlog.denied_rate */
	uint64_t queue_dropped;	  /* dropped: the writer's queue was full */
	uint64_t write_errors;	  /* failed writes, rotations or opens */
	uint64_t write_failed;	  /* records a sink could not write (each sink counts its own) */
	uint64_t rotations;	  /* live file renamed to a backup */
	uint64_t compressed;	  /* backups gzipped */
	uint64_t compress_errors; /* backups left uncompressed */
	uint64_t queued;	  /* lines waiting for the writer now */
};

/* Open the sinks cfg's flowlog section names; NULL with errno and err set. */
struct sm_sinks *sm_sinks_new(const struct sm_config *cfg, struct sm_error *err);
/* New flowlog settings; a bad section (or a file that cannot open) changes nothing. */
int sm_sinks_reconfigure(struct sm_sinks *s, const struct sm_config *cfg, struct sm_error *err);
/*
 * Filter, limit, mask and queue one record. Any thread; never blocks on I/O.
 * whole: r as sm_flow_record_encode() writes it, when the caller has it
 * (used as the line when no mask applies), or NULL.
 */
void sm_sinks_write(struct sm_sinks *s, const struct sm_flow_record *r, const char *whole);
/* Fill r's lost_queue / lost_rate_limited(_sources) since the last call; true if any. */
bool sm_sinks_take_lost(struct sm_sinks *s, struct sm_flow_record *r);
/*
 * Add to r's lost_* what the lost records the queue dropped said (counted
 * once already: not for the metrics again); true if any.
 */
bool sm_sinks_take_carried(struct sm_sinks *s, struct sm_flow_record *r);
/* Records the sinks could not write since the last call (lost_events_total{write_failed}). */
uint64_t sm_sinks_take_write_failed(struct sm_sinks *s);
/* Wait until the queue is written and the backups compressed. 0 or -ETIMEDOUT. */
int sm_sinks_flush(struct sm_sinks *s, int timeout_ms);
void sm_sinks_stats(struct sm_sinks *s, struct sm_sinks_stats *st);
/* Write what is queued, finish the compressions, close. */
void sm_sinks_free(struct sm_sinks *s);

#endif /* SOCKMESH_SINKS_H */
