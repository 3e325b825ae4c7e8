/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_PRIVILEGES_H
#define SOCKMESHD_PRIVILEGES_H

struct sm_daemon;

/*
 * privileges.c: once the programs are attached, keep only the capabilities
 * the running daemon uses (docs/security.md). Before any thread exists:
 * capabilities are per thread and threads inherit the creator's. 0 or -errno.
 */
int sm_privileges_drop(struct sm_daemon *d);

#endif /* SOCKMESHD_PRIVILEGES_H */
