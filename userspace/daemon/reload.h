/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_RELOAD_H
#define SOCKMESHD_RELOAD_H

struct sm_daemon;

/* reload.c: SIGHUP's catalog reload, read on a thread, applied on the main loop. */
int sm_reload_start(struct sm_daemon *d);
/* SIGHUP: read the catalog file again; a bad one changes nothing. */
void sm_reload_request(struct sm_daemon *d);
void sm_reload_stop(struct sm_daemon *d);

#endif /* SOCKMESHD_RELOAD_H */
