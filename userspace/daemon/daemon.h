/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockmeshd's shared state (struct sm_daemon). Each module declares its own
 * functions in its own header (worker.h, hbone.h, ...), so a file includes
 * the modules it calls and no others.
 *
 * Threads: the main thread runs the control socket, signals, the flow ring
 * buffer, the datapath and credential rotation on its event loop. Worker
 * threads (listeners.workers, default one per CPU) each run their own event
 * loop with their own outbound and HBONE listeners (SO_REUSEPORT groups),
 * relays, tunnel connections and SSL_CTXs; nothing on the data path takes a
 * lock shared between workers.
 *
 * Shared state (the catalog, credential sets, struct sm_config) is changed
 * only by the main thread, and only while every worker is paused at a safe
 * point between events (sm_workers_pause()), so workers read it without
 * locks. Counters a worker writes and another thread reads use relaxed
 * atomics (SM_STAT_*).
 */
#ifndef SOCKMESHD_DAEMON_H
#define SOCKMESHD_DAEMON_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "catalog.h"
#include "config.h"

/* The version is the file VERSION; the Makefile passes it as -DSOCKMESH_VERSION. */
#ifndef SOCKMESH_VERSION
#error "SOCKMESH_VERSION is not defined: build with make (it passes the file VERSION)"
#endif

struct sockmesh_bpf;
struct ring_buffer;
struct bpf_link;
struct sm_evloop;
struct sm_worker;
struct sm_worker_part;
struct sm_control;
struct sm_flowexp;
struct sm_hbone;
struct sm_policyd;
struct sm_metrics;
struct sm_flowstream;
struct sm_reload;
struct sm_cluster;
struct sm_workloads;
struct sm_flow_record;

/*
 * Who hears of every flow record the daemon writes and of the events a
 * user-space source lost (the metrics, when listeners.admin is set). A higher
 * layer registers it once, on the main thread before any record is written,
 * and clears it after the last; the flow export and the stream call it from
 * any thread (flowobs.h), so they never call up into the module that counts.
 */
struct sm_flow_observer {
	void (*record)(void *arg, const struct sm_flow_record *r);
	void (*lost)(void *arg, const char *source, uint64_t n);
	void *arg;
};

/* One attachment of a program to a cgroup, pinned under <bpffs>/links/. */
struct sm_attachment {
	char prog[32];	       /* program name */
	char cgroup[PATH_MAX]; /* absolute cgroup path */
	uint64_t cgroup_id;
	uint32_t link_id;
	struct bpf_link *link;
};

struct sm_daemon {
	struct sm_config cfg;
	struct sm_catalog cat;
	int node_idx;		      /* this node in cat.nodes */
	char cgroup_root[PATH_MAX];   /* cgroup v2 mount */
	char daemon_cgroup[PATH_MAX]; /* absolute */
	char enroll_root[PATH_MAX];   /* absolute: the programs' one cgroup for workloads */
	uint64_t enroll_root_id;
	int lock_fds[3]; /* one daemon per node: flocks held for the daemon's life (main.c) */
	struct sm_workloads *wl; /* workloads.c: this node's workloads by cgroup id */

	struct sm_evloop *loop;
	struct sockmesh_bpf *skel;
	struct sm_attachment *att;
	unsigned int natt;
	struct bpf_link *iter_link;
	bool redirect_attached;

	struct sm_flowexp *flows;
	struct sm_hbone *hbone; /* NULL unless tunnel.hbone: shared credentials */
	struct sm_policyd *policy;
	struct sm_metrics *metrics;	       /* NULL when listeners.admin is "" */
	struct sm_flow_observer flow_observer; /* all NULL: nobody listens */
	struct sm_flowstream *stream;	       /* flowstream.c; NULL when flowlog.ring_size is 0 */
	struct sm_reload *reload;	       /* reload.c: SIGHUP's catalog reload */
	struct sm_cluster *cluster;	       /* cluster.c: NULL in file mode (no cluster.etcd) */
	bool cluster_mode; /* catalog and policies come from etcd: local edits refused */
	uint64_t instance; /* tunnelfacts.c: this daemon, among those that ran here */
	int64_t instance_started_ns;
	bool facts_swept; /* an earlier daemon's unclaimed tunnel facts are gone */

	struct sm_worker *workers;
	unsigned int nworkers;
	const struct sm_worker_part *worker_parts[4]; /* worker.h: SM_WORKER_PARTS_MAX */
	unsigned int nworker_parts;
	pthread_mutex_t pause_mu;
	pthread_cond_t pause_cv;
	bool pause_req;
	unsigned int paused;	  /* workers waiting in the pause (under pause_mu) */
	unsigned int pause_depth; /* main thread only */
	unsigned int call_gen;	  /* sm_workers_call() rounds (under pause_mu) */

	struct sm_control *control; /* control.c; NULL until it listens */
	bool ready;
	bool draining;
	bool handed_off; /* handoff.c: an upgrade's successor has the listeners */
	time_t started;
	int64_t mono_to_real_ns;
};

#endif /* SOCKMESHD_DAEMON_H */
