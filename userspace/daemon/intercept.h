/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_INTERCEPT_H
#define SOCKMESHD_INTERCEPT_H

struct sm_daemon;
struct sm_catalog;
struct sm_error;

/* intercept.c: fill the enroll_paths, services and cidrs maps from the catalog. */
int sm_intercept_sync(struct sm_daemon *d);
/*
 * Check that cat's workloads on node node_idx can be enrolled under d's
 * enrollment root: below it, paths the kernel side can match, and the
 * daemon's own cgroup inside none of them. 0, or -EINVAL with err set.
 */
int sm_intercept_check(const struct sm_daemon *d, const struct sm_catalog *cat, int node_idx,
		       struct sm_error *err);

#endif /* SOCKMESHD_INTERCEPT_H */
