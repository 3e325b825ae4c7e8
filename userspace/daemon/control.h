/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_CONTROL_H
#define SOCKMESHD_CONTROL_H

struct sm_daemon;

/* control.c: the control socket. */
int sm_control_start(struct sm_daemon *d);
void sm_control_stop(struct sm_daemon *d);
/* The listening socket (an upgrade hands it over), or -1. */
int sm_control_listen_fd(const struct sm_daemon *d);
/* An upgrade's successor has the socket: close ours, serve the clients connected. */
void sm_control_stop_accepting(struct sm_daemon *d);

#endif /* SOCKMESHD_CONTROL_H */
