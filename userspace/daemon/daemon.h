/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockmeshd's modules and the state they share. One thread: everything runs
 * on the event loop (userspace/lib/evloop.h).
 */
#ifndef SOCKMESHD_DAEMON_H
#define SOCKMESHD_DAEMON_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "catalog.h"
#include "config.h"
#include "evloop.h"

#ifndef SOCKMESH_VERSION
#define SOCKMESH_VERSION "0.1.0"
#endif

struct sockmesh_bpf;
struct ring_buffer;
struct bpf_link;
struct sm_proxy;
struct sm_flowexp;

/* One attachment of a program to a cgroup, pinned under <bpffs>/links/. */
struct sm_attachment {
	char prog[32];	       /* program name */
	char cgroup[PATH_MAX]; /* absolute cgroup path */
	uint64_t cgroup_id;
	uint32_t link_id;
	struct bpf_link *link;
};

/* Per catalog workload, what this node knows of it. */
struct sm_local_workload {
	uint64_t cgroup_id; /* 0: not local, or its cgroup does not exist (yet) */
	bool attached;
};

struct sm_daemon {
	struct sm_config cfg;
	struct sm_catalog cat;
	int node_idx;		      /* this node in cat.nodes */
	char cgroup_root[PATH_MAX];   /* cgroup v2 mount */
	char daemon_cgroup[PATH_MAX]; /* absolute */
	struct sm_local_workload *wl; /* cat.nworkloads entries */

	struct sm_evloop *loop;
	struct sockmesh_bpf *skel;
	struct sm_attachment *att;
	unsigned int natt;
	struct bpf_link *iter_link;
	bool redirect_attached;

	struct sm_proxy *proxy;
	struct sm_flowexp *flows;

	int ctl_fd;
	struct sm_ev *ctl_ev;
	bool ready;
	bool draining;
	time_t started;
	int64_t mono_to_real_ns;
};

/* datapath.c: find cgroup v2 and bpffs, load, attach or adopt, clean up. */
int sm_find_cgroup2_mount(char *buf, size_t len);
int sm_datapath_open(struct sm_daemon *d);
/* Find local workloads' cgroup ids; returns how many changed. Call before
 * sm_intercept_sync(), which needs them, and that before sm_datapath_attach(),
 * so no workload runs attached before the maps know it. */
int sm_datapath_resolve(struct sm_daemon *d);
int sm_datapath_attach(struct sm_daemon *d);
/* Attach to workloads whose cgroup appeared since the last call. */
void sm_datapath_recheck(struct sm_daemon *d);
/* Drop the daemon's link handles; the links stay pinned and attached. */
void sm_datapath_release_links(struct sm_daemon *d);
void sm_datapath_close(struct sm_daemon *d);
/* Detach and unpin everything under a bpffs directory. 0 or -errno. */
int sm_datapath_cleanup(const char *bpffs);
/* Sum a per-CPU counter array into out[SM_CNT_MAX]. 0 or -errno. */
int sm_datapath_counters(struct sm_daemon *d, uint64_t *out);
/* Run the flow-update iterator once. */
void sm_datapath_run_iter(struct sm_daemon *d);

/* intercept.c: fill the workloads, services and cidrs maps from the catalog. */
int sm_intercept_sync(struct sm_daemon *d);

/* flowacct.c: ring buffer → flow records → sinks. */
int sm_flowexp_start(struct sm_daemon *d);
void sm_flowexp_stop(struct sm_daemon *d);
/* Emit lost records when the kernel's loss counters moved. */
void sm_flowexp_check_lost(struct sm_daemon *d);
uint64_t sm_flowexp_records(const struct sm_daemon *d);
uint64_t sm_flowexp_lost_records(const struct sm_daemon *d);

/* proxy.c: outbound capture listeners and plaintext relays. */
int sm_proxy_start(struct sm_daemon *d);
/* Stop accepting; relays go on. */
void sm_proxy_stop_accepting(struct sm_daemon *d);
void sm_proxy_free(struct sm_daemon *d);
struct sm_proxy_stats {
	uint64_t active, accepted, upstream_errors, orig_dst_errors;
};
void sm_proxy_stats(const struct sm_daemon *d, struct sm_proxy_stats *st);

/* control.c: the control socket. */
int sm_control_start(struct sm_daemon *d);
void sm_control_stop(struct sm_daemon *d);

/* Lookup helpers over the catalog (main.c). */
int sm_workload_by_cgroup(const struct sm_daemon *d, uint64_t cgroup_id);

#endif /* SOCKMESHD_DAEMON_H */
