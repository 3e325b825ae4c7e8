/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Telling the registered flow observer (struct sm_flow_observer in daemon.h)
 * of a record or of lost events. Any thread.
 */
#ifndef SOCKMESHD_FLOWOBS_H
#define SOCKMESHD_FLOWOBS_H

#include <stdint.h>

#include "daemon.h"

static inline void sm_flow_observe(const struct sm_daemon *d, const struct sm_flow_record *r)
{
	if (d->flow_observer.record)
		d->flow_observer.record(d->flow_observer.arg, r);
}

static inline void sm_flow_observe_lost(const struct sm_daemon *d, const char *source, uint64_t n)
{
	if (d->flow_observer.lost)
		d->flow_observer.lost(d->flow_observer.arg, source, n);
}

#endif /* SOCKMESHD_FLOWOBS_H */
