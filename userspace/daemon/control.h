/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_CONTROL_H
#define SOCKMESHD_CONTROL_H

struct sm_daemon;

/* control.c: the control socket. */
int sm_control_start(struct sm_daemon *d);
void sm_control_stop(struct sm_daemon *d);

#endif /* SOCKMESHD_CONTROL_H */
