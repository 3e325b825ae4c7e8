/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_HANDOFF_H
#define SOCKMESHD_HANDOFF_H

#include <stdbool.h>
#include <stdint.h>

struct sm_daemon;
struct sm_addr;

/*
 * handoff.c: upgrade in place (SIGUSR2, docs/operations.md "Restart and
 * upgrade"). The running daemon (the predecessor) has the binary on disk
 * started as its successor, which inherits the listening sockets and the
 * instance locks; the predecessor then stops accepting, drains and exits.
 * All calls from the main thread.
 */

/* What main.c does for the handoff (it owns the drain and READY=1). */
struct sm_handoff_ops {
	/* predecessor: the successor took over; drain (why: for the log) */
	void (*drain)(struct sm_daemon *d);
	/* successor: the predecessor released the flow ring buffer and the main PID */
	void (*took_over)(struct sm_daemon *d);
};

/*
 * Successor: read and clear $SOCKMESH_HANDOFF (the inherited descriptors),
 * before anything opens a descriptor. 0 (also when not set) or -EINVAL.
 */
int sm_handoff_import(void);
/* Started by an upgrade, and the predecessor is not gone yet. */
bool sm_handoff_successor(void);
/* An inherited listening socket bound to a:port / to the unix path, or -ENOENT. */
int sm_handoff_take_tcp(const struct sm_addr *a, uint16_t port);
int sm_handoff_take_unix(const char *path);
/* The inherited (already locked) descriptor of path's instance lock, or -ENOENT. */
int sm_handoff_take_lock(const char *path);
/* The most inherited listeners on one address and port (0: none). */
unsigned int sm_handoff_group_size(void);

/*
 * Fork the spawner: a process that keeps the privileges the start needs
 * (the daemon drops them) and starts the successor when asked. Before
 * privileges drop and before any thread. argv: the daemon's command line.
 */
int sm_handoff_start(struct sm_daemon *d, char **argv, const struct sm_handoff_ops *ops);
/* Successor, once everything runs: tell the predecessor, wait for it on d->loop. */
int sm_handoff_announce(struct sm_daemon *d);
/* Predecessor: SIGUSR2. A failure is logged; this daemon serves on. */
void sm_handoff_begin(struct sm_daemon *d);
/* Stop watching (before the event loop goes). */
void sm_handoff_stop(struct sm_daemon *d);

#endif /* SOCKMESHD_HANDOFF_H */
