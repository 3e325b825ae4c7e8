/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_METRICS_H
#define SOCKMESHD_METRICS_H

struct sm_daemon;

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
/* The admin listening socket (an upgrade hands it over), or -1. */
int sm_metrics_listen_fd(const struct sm_daemon *d);
/* An upgrade's successor has the admin socket: stop accepting on it (no shutdown()). */
void sm_metrics_quiesce(struct sm_daemon *d);
/*
 * Stop serving and free the counts; after the last flow record
 * (sm_flowexp_stop()). The metrics count records and lost events as the
 * daemon's flow observer, registered by sm_metrics_start().
 */
void sm_metrics_free(struct sm_daemon *d);

#endif /* SOCKMESHD_METRICS_H */
