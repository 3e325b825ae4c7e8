/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_RELOAD_H
#define SOCKMESHD_RELOAD_H

#include <stdbool.h>

struct sm_daemon;
struct sm_catalog;
struct sm_error;

/*
 * reload.c: SIGHUP's catalog reload, read on a thread, applied on the main
 * loop. done (NULL: none) runs on the main loop when a reload has ended,
 * applied or refused, unless the daemon is draining.
 */
typedef void (*sm_reload_done_fn)(struct sm_daemon *d);
int sm_reload_start(struct sm_daemon *d, sm_reload_done_fn done);
/*
 * SIGHUP: read the catalog file again; a bad one changes nothing. True when a
 * read is under way (its end runs done); false when nothing is read (cluster
 * mode, no thread).
 */
bool sm_reload_request(struct sm_daemon *d);
void sm_reload_stop(struct sm_daemon *d);
/*
 * Main thread: make cat the catalog (taken over: cat is zeroed) after the
 * checks a start makes (this node is in it, its workloads can be enrolled),
 * with the maps, the tunnel's view and the policy's compilation following;
 * the workers are paused meanwhile. 0, or -errno with err and nothing changed.
 */
int sm_reload_swap_catalog(struct sm_daemon *d, struct sm_catalog *cat, struct sm_error *err);

#endif /* SOCKMESHD_RELOAD_H */
