/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_SDNOTIFY_H
#define SOCKMESHD_SDNOTIFY_H

#include <stdint.h>

/*
 * sdnotify.c: the service manager's readiness protocol (sd_notify(3)). Every
 * call does nothing and returns 0 when $NOTIFY_SOCKET is unset (not started
 * by systemd as Type=notify); a failed send is warned about once and never
 * stops the daemon. Main thread only. A leaf: it knows no other module.
 */

/* Send msg ("KEY=value" lines). 1 sent, 0 nothing to send to, -errno. */
int sm_sd_notify(const char *msg);

/* READY=1 with STATUS=status (one line: what is in force). */
void sm_sd_ready(const char *status);
/* SIGHUP: RELOADING=1 with MONOTONIC_USEC= (systemd >= 253 requires it). */
void sm_sd_reloading(void);
/* SIGTERM: STOPPING=1. */
void sm_sd_stopping(void);

/*
 * The main loop's heartbeat: WATCHDOG=1, at most every $WATCHDOG_USEC / 2,
 * when $WATCHDOG_USEC is set and $WATCHDOG_PID (if set) is this process.
 * The interval, or 0 when there is no watchdog for us (read once).
 */
uint64_t sm_sd_watchdog(void);

#endif /* SOCKMESHD_SDNOTIFY_H */
