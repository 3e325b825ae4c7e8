/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_METRICS_H
#define SOCKMESHD_METRICS_H
#include <stdint.h>

struct sm_daemon;
struct sm_flow_record;

/* metrics.c: the admin HTTP server: Prometheus /metrics, /healthz, /readyz (docs/metrics.md). */
/*
 * Bind listeners.admin (a taken port is an error, found before anything is
 * loaded); nothing when it is "". No thread yet. 0 or -errno.
 */
int sm_metrics_start(struct sm_daemon *d);
/* Start the HTTP thread on the bound port (after sm_privileges_drop()). 0 or -errno. */
int sm_metrics_serve(struct sm_daemon *d);
/* Stop serving; before the workers and the maps go (the HTTP thread reads them). */
void sm_metrics_stop(struct sm_daemon *d);
/* Stop serving and free the counts; after the last flow record (sm_flowexp_stop()). */
void sm_metrics_free(struct sm_daemon *d);
/* Count a flow record into the metrics (sm_flowexp_emit()). Any thread. */
void sm_metrics_observe(struct sm_daemon *d, const struct sm_flow_record *r);
/* Count n events a user-space source lost: lost_events_total{source}. Any thread. */
void sm_metrics_lost(struct sm_daemon *d, const char *source, uint64_t n);

#endif /* SOCKMESHD_METRICS_H */
