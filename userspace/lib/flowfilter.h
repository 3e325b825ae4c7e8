/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flow filters: which flow records a sink, the live stream or `sockmesh
 * flows` keeps. One language for the config's allow/deny lists and the CLI's
 * flags (docs/flow-schema.md, "Filters").
 *
 * A filter is terms separated by spaces, all of which must hold:
 *   verdict=DROPPED|AUDIT to-port=8080 from-workload=api
 * A term is KEY=VALUE; VALUE may list alternatives separated by '|', any of
 * which may match. Keys:
 *   type, verdict, drop_reason, direction, node, trace_id   exact (case-sensitive)
 *   identity, from-identity, to-identity   a SPIFFE ID, a pattern (a SPIFFE ID
 *                                          prefix ending in '/', then '*'), or a
 *                                          number
 *   workload, from-workload, to-workload   a workload name
 *   ip, from-ip, to-ip                     an address or a CIDR
 *   port, from-port, to-port               a port or a range "A-B"
 * "from-" is the record's source, "to-" its destination; no prefix: either.
 * A list of filters matches a record when any of them does.
 */
#ifndef SOCKMESH_FLOWFILTER_H
#define SOCKMESH_FLOWFILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "flow_record.h"
#include "util.h"

struct sm_flowfilter;

/*
 * What a filter reads of a record: a fifth of its size, for keeping many
 * records (the live stream's ring keeps flowlog.ring_size of them). Made by
 * sm_flow_match_of(); node and drop_reason point into the record then, and
 * whoever keeps the view longer than the record interns them (intern.h).
 */
struct sm_flow_match {
	enum sm_flow_record_type type;
	enum sm_verdict verdict;
	enum sm_direction direction;
	const char *node;
	const char *drop_reason;
	struct sm_flow_endpoint source;
	struct sm_flow_endpoint destination;
	char trace_id[sizeof(((struct sm_flow_record *) 0)->trace_id)];
};

void sm_flow_match_of(struct sm_flow_match *m, const struct sm_flow_record *r);

/*
 * Parse one filter. Returns 0 and *out (free with sm_flowfilter_free), or
 * -EINVAL with err->msg naming the bad term and what to write instead, or
 * -ENOMEM. An empty (or all-space) filter matches every record.
 */
int sm_flowfilter_parse(const char *text, struct sm_flowfilter **out, struct sm_error *err);
void sm_flowfilter_free(struct sm_flowfilter *f);
bool sm_flowfilter_match(const struct sm_flowfilter *f, const struct sm_flow_record *r);

/* Any of n filters matches (n == 0: false). */
bool sm_flowfilter_match_any(struct sm_flowfilter *const *fs, size_t n,
			     const struct sm_flow_record *r);
/* The same on a record's view. */
bool sm_flowfilter_match_view(const struct sm_flowfilter *f, const struct sm_flow_match *m);
bool sm_flowfilter_match_any_view(struct sm_flowfilter *const *fs, size_t n,
				  const struct sm_flow_match *m);

#endif /* SOCKMESH_FLOWFILTER_H */
