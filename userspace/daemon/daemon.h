/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockmeshd's modules and the state they share.
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
#include "evloop.h"
#include "policy.h"
#include "sinks.h"
#include "spiffe.h"
#include "util.h"

#ifndef SOCKMESH_VERSION
#define SOCKMESH_VERSION "0.1.0"
#endif

struct sockmesh_bpf;
struct ring_buffer;
struct bpf_link;
struct sm_proxy;
struct sm_flowexp;
struct sm_hbone;
struct sm_flow_record;
struct sm_flow_endpoint;
struct sm_flow_tls;
struct sm_hbone_worker;
struct sm_policyd;
struct sm_metrics;
struct json_object;
struct sm_flowstream;
struct sm_reload;
struct sm_workloads;

/* Requests from the main thread to a worker (bits of sm_worker.cmds). */
enum {
	SM_WCMD_PAUSE = 1,	    /* wait at a safe point until sm_workers_resume() */
	SM_WCMD_STOP_ACCEPTING = 2, /* drain: close listeners, GOAWAY to peers */
	SM_WCMD_STOP = 4,	    /* leave the event loop */
	/* re-check the inbound tunnel streams against the live policy (sm_workers_call()) */
	SM_WCMD_POLICY_RECHECK = 8,
};

/* One worker thread and everything it owns. */
struct sm_worker {
	struct sm_daemon *d;
	unsigned int id;
	pthread_t thread;
	bool started;
	struct sm_evloop *loop;
	int wake_fd; /* eventfd: the main thread posted cmds */
	struct sm_ev *wake_ev;
	struct sm_ev *tick;
	struct sm_ev *backoff; /* one-shot: listeners that ran out of descriptors resume */
	bool backing_off;
	unsigned int cmds; /* SM_WCMD_* bits, atomic */
	bool draining;	   /* this worker stopped accepting */
	int spare_fd;	   /* held in reserve for sm_worker_accept(), -1 = none */
	struct sm_proxy *proxy;
	struct sm_hbone_worker *hb; /* NULL unless tunnel.hbone */
	unsigned int call_done;	    /* the last sm_workers_call() round it finished (pause_mu) */
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
	struct sm_metrics *metrics;   /* NULL when listeners.admin is "" */
	struct sm_flowstream *stream; /* flowstream.c; NULL when flowlog.ring_size is 0 */
	struct sm_reload *reload;     /* reload.c: SIGHUP's catalog reload */
	uint64_t instance;	      /* tunnelfacts.c: this daemon, among those that ran here */
	int64_t instance_started_ns;
	bool facts_swept; /* an earlier daemon's unclaimed tunnel facts are gone */

	struct sm_worker *workers;
	unsigned int nworkers;
	pthread_mutex_t pause_mu;
	pthread_cond_t pause_cv;
	bool pause_req;
	unsigned int paused;	  /* workers waiting in the pause (under pause_mu) */
	unsigned int pause_depth; /* main thread only */
	unsigned int call_gen;	  /* sm_workers_call() rounds (under pause_mu) */

	struct sm_control *control; /* control.c; NULL until it listens */
	bool ready;
	bool draining;
	time_t started;
	int64_t mono_to_real_ns;
};

/* intercept.c: fill the enroll_paths, services and cidrs maps from the catalog. */
int sm_intercept_sync(struct sm_daemon *d);
/*
 * Check that cat's workloads on node node_idx can be enrolled under d's
 * enrollment root: below it, paths the kernel side can match, and the
 * daemon's own cgroup inside none of them. 0, or -EINVAL with err set.
 */
int sm_intercept_check(const struct sm_daemon *d, const struct sm_catalog *cat, int node_idx,
		       struct sm_error *err);

/* flowacct.c: ring buffer → flow records → sinks. */
int sm_flowexp_start(struct sm_daemon *d);
void sm_flowexp_stop(struct sm_daemon *d);
/* Emit lost records when the kernel's loss counters moved. */
void sm_flowexp_check_lost(struct sm_daemon *d);
uint64_t sm_flowexp_records(const struct sm_daemon *d);
uint64_t sm_flowexp_lost_records(const struct sm_daemon *d);
/* The sinks' counters (zero before start). */
void sm_flowexp_sink_stats(const struct sm_daemon *d, struct sm_sinks_stats *st);
/* Write a record the daemon made itself (e.g. a refused handshake). Any thread. */
void sm_flowexp_emit(struct sm_daemon *d, const struct sm_flow_record *r);
/* Name an endpoint after catalog workload wl: identity, SPIFFE ID, name, node, cgroup. */
void sm_flow_endpoint_workload(const struct sm_daemon *d, struct sm_flow_endpoint *ep, int wl);

/* flowacct.c, the sinks' part: apply a reloaded config's flowlog section (SIGHUP). */
int sm_flowexp_reconfigure(struct sm_daemon *d, const struct sm_config *cfg, struct sm_error *err);

/*
 * flowstream.c: the live stream behind `sockmesh flows`, a ring of the last
 * flowlog.ring_size records and the control clients reading it.
 */
/* Before anything emits records; the loop must exist. 0 or -errno. */
int sm_flowstream_start(struct sm_daemon *d);
/* After every publisher stopped (workers, sm_flowexp_stop()): closes the clients. */
void sm_flowstream_stop(struct sm_daemon *d);
/*
 * Offer a record and its encoded line to the stream. Any thread; copies both
 * and returns at once (no I/O, a short lock), the main loop does the rest.
 */
void sm_flowstream_publish(struct sm_daemon *d, const struct sm_flow_record *r, const char *json);
/*
 * The control command "flows" on the client socket fd (its request read).
 * 0: the stream answers and owns fd from now on. -errno with err set: the
 * caller answers {"ok":false} and closes fd.
 */
int sm_flowstream_command(struct sm_daemon *d, int fd, struct json_object *args,
			  struct sm_error *err);
/* The stream's part of `status` (flows.stream). */
struct json_object *sm_flowstream_status(struct sm_daemon *d);

/* worker.c: worker threads. */
/* How many: listeners.workers, or one per online CPU (at most 256). */
unsigned int sm_workers_count(const struct sm_daemon *d);
/* Make the workers and their listeners (errors reported here), then start the threads. */
int sm_workers_start(struct sm_daemon *d);
/* Post cmds (SM_WCMD_*) to every worker. */
void sm_workers_post(struct sm_daemon *d, unsigned int cmds);
/* Stop and join the threads, then free what each worker owns. */
void sm_workers_stop(struct sm_daemon *d);
/*
 * Hold every running worker at a safe point (between events) so the main
 * thread may change shared state; sm_workers_resume() lets them go on. Both
 * only from the main thread; no-ops before the threads run.
 */
void sm_workers_pause(struct sm_daemon *d);
void sm_workers_resume(struct sm_daemon *d);
/*
 * Post cmd (a command a worker acknowledges: SM_WCMD_POLICY_RECHECK) and wait
 * until every running worker has run it on its own thread, for work that
 * needs a worker's own loop, sockets and SSL objects. Main thread only, and
 * never while the workers are paused (they could not answer): -EDEADLK.
 * -ETIMEDOUT when a worker did not answer within 10 s (it runs cmd later).
 */
int sm_workers_call(struct sm_daemon *d, unsigned int cmd);
/* A listener of worker w on a:port; the first worker's probe reports a taken port. */
int sm_worker_listen(struct sm_worker *w, const struct sm_addr *a, uint16_t port, int backlog);
/*
 * accept4() on listener lfd (non-blocking, close-on-exec; the peer in *ss).
 * Out of descriptors (EMFILE/ENFILE), the worker's spare descriptor makes
 * room for one accept, so a pending connection is reset at once instead of
 * waiting in the backlog while the listener's event fires in a loop: then
 * *no_fd is set and the caller must name the refusal (count, record) and
 * hand the fd to sm_worker_refuse(), which resets it and takes the spare
 * back. Returns the fd, or -EAGAIN when nothing is pending, or -EMFILE /
 * -ENFILE when no spare was left either (the caller stops accepting for a
 * while), or another accept4() -errno.
 */
int sm_worker_accept(struct sm_worker *w, int lfd, struct sockaddr_storage *ss, socklen_t *sl,
		     bool *no_fd);
void sm_worker_refuse(struct sm_worker *w, int fd);
/*
 * A listener of w stopped watching its descriptor for lack of descriptors:
 * in SM_ACCEPT_BACKOFF_MS the worker calls sm_proxy_resume_accepting() and
 * sm_hbone_resume_accepting(), so what waits in the backlog is taken (or
 * reset) then, not in a loop now.
 */
#define SM_ACCEPT_BACKOFF_MS 100
void sm_worker_backoff(struct sm_worker *w);

/* proxy.c: outbound capture listeners and plaintext relays, per worker. */
int sm_proxy_start(struct sm_worker *w);
/* Stop accepting; relays go on. */
void sm_proxy_stop_accepting(struct sm_worker *w);
void sm_proxy_free(struct sm_worker *w);
/* Listeners that rested for lack of descriptors watch their sockets again. */
void sm_proxy_resume_accepting(struct sm_worker *w);
/*
 * The local workload behind a captured client socket cfd (the client at
 * cli:cport): its identity from the orig_dst entry. 0 or -errno.
 */
int sm_proxy_source_identity(struct sm_daemon *d, int cfd, const struct sm_addr *cli,
			     uint16_t cport, uint32_t *identity);
/*
 * The daemon's own non-blocking connection to dst:port, marked so connect4/6
 * let it pass; from the loopback address when dst is one of this node's own
 * addresses (see proxy.c). Returns the fd, its connect() done or in progress,
 * or connect()'s -errno.
 */
int sm_upstream_connect(const struct sm_daemon *d, const struct sm_addr *dst, uint16_t port);
struct sm_proxy_stats {
	uint64_t active, accepted, upstream_errors, orig_dst_errors;
	uint64_t tunnelled;    /* handed to the HBONE tunnel */
	uint64_t accept_no_fd; /* reset at accept: the daemon was out of descriptors */
};
/* Summed over the workers (any thread). */
void sm_proxy_stats(const struct sm_daemon *d, struct sm_proxy_stats *st);
void sm_proxy_worker_stats(const struct sm_worker *w, struct sm_proxy_stats *st);

/* hbone.c: the mTLS HTTP/2 CONNECT tunnel between nodes. */
struct sm_hbone_stats {
	uint64_t tls_ok;			 /* handshakes that verified the peer */
	uint64_t tls_failed[SM_SVID_REASON_MAX]; /* by enum sm_svid_reason */
	uint64_t tls_failed_other;		 /* timeouts, peer refusals, connect failures */
	uint64_t conns_in, conns_out;		 /* open TLS connections */
	uint64_t streams_open, streams_total, streams_failed;
	uint64_t requests_refused;	/* 400/502/503 answered */
	uint64_t upstream_errors;	/* the local service did not answer */
	uint64_t bad_frames;		/* malformed HTTP/2 */
	uint64_t refused_busy;		/* accepted while too many handshakes ran */
	uint64_t sni_selected;		/* inbound handshakes that chose a workload's SVID by SNI */
	uint64_t creds_reloads;		/* rotations applied */
	uint64_t creds_reload_failures; /* new sets refused (old kept) */
	uint64_t creds_expiring;	/* sets within tunnel.expiry_warning of expiry */
	uint64_t keepalive_failures;	/* connections closed: PING unanswered */
	uint64_t policy_streams_closed; /* inbound streams reset: a new revision denies them */
	uint64_t tls_send_blocked;	/* a TLS socket was full: output waited for the peer */
	uint64_t refused_per_source;	/* its source had max_handshakes_per_source in flight */
	uint64_t handshakes_evicted;	/* a stalled handshake of the heaviest source made room */
	uint64_t preface_timeouts;	/* mTLS done, no HTTP/2 preface in time */
	uint64_t accept_no_fd;		/* reset at accept: the daemon was out of descriptors */
};
/* Shared part (main thread): credentials and their rotation. */
int sm_hbone_start(struct sm_daemon *d);
void sm_hbone_free(struct sm_daemon *d);
/* Main thread, every second: credential rotation and expiry warnings. */
void sm_hbone_tick(struct sm_daemon *d);
/* The catalog was replaced (workers paused): reload credentials. 0 or -errno. */
int sm_hbone_catalog_changed(struct sm_daemon *d);
/* Per worker: its inbound listeners, connections and flow-record joins. */
int sm_hbone_worker_start(struct sm_worker *w);
void sm_hbone_stop_accepting(struct sm_worker *w);
/* Listeners that rested for lack of descriptors watch their sockets again. */
void sm_hbone_resume_accepting(struct sm_worker *w);
void sm_hbone_worker_free(struct sm_worker *w);
/* Worker, every second: handshake and keepalive timeouts, idle connections. */
void sm_hbone_worker_tick(struct sm_worker *w);
/*
 * A new policy revision went live: every worker checks its live inbound
 * streams again, as the CONNECT was checked (caller's certificate identity →
 * the service's workload, port), and resets those now denied. Main thread,
 * workers not paused (sm_workers_call()). Returns how many were reset.
 */
uint64_t sm_hbone_policy_recheck(struct sm_daemon *d);
/* The same, for one worker's own streams, on that worker's thread. */
void sm_hbone_worker_policy_recheck(struct sm_worker *w);
/* Summed over the workers plus the shared counters (any thread). */
void sm_hbone_stats(const struct sm_daemon *d, struct sm_hbone_stats *st);
void sm_hbone_worker_stats(const struct sm_worker *w, struct sm_hbone_stats *st);
/*
 * Take a captured connection (cfd, whose peer is cli:cport) to dst:dport
 * through the tunnel. 0: cfd is the tunnel's now; -errno: the caller still
 * owns cfd (not a remote service, no credentials, no route to the node).
 */
int sm_hbone_outbound(struct sm_worker *w, int cfd, const struct sm_addr *dst, uint16_t dport,
		      const struct sm_addr *cli, uint16_t cport);
/*
 * Add what the tunnel knows (tls block, trace id, the verified caller) to the
 * record of a workload socket whose far end is key_addr:key_port; final (a
 * conn_end) forgets it. Main thread; looks through every worker's joins.
 * False when no worker has a join for it.
 */
bool sm_hbone_decorate(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
		       bool final, struct sm_flow_record *r);

/* policy.c: the connection policy set, its kernel maps and its control commands. */
/* Restore <state_dir>/policy.json into the kernel; before any attach (fail closed). */
int sm_policy_start(struct sm_daemon *d);
void sm_policy_stop(struct sm_daemon *d);
/*
 * For tests, which have no kernel maps (the tunnel's fuzz harness): set,
 * compiled against d's catalog as revision revision, becomes the policy
 * sm_policy_check() answers from, in the daemon's copy only; nothing goes
 * to the kernel. Instead of sm_policy_start(); sm_policy_stop() frees it.
 * 0, or -errno with err set when it does not compile (-EBUSY: started).
 */
int sm_policy_start_unattached(struct sm_daemon *d, const struct sm_policy_set *set,
			       uint32_t revision, struct sm_error *err);
/* The catalog changed (workers paused): recompile, patterns re-expand. 0 or -errno. */
int sm_policy_catalog_changed(struct sm_daemon *d);
/* The catalog identity of a SPIFFE ID; SM_ID_WORLD when it names no workload. */
uint32_t sm_policy_identity_of(const struct sm_daemon *d, const char *spiffe_id);
/* A plaintext caller's source identity: its policy CIDR's, else SM_ID_WORLD (no certificate). */
uint32_t sm_policy_addr_identity(const struct sm_daemon *d, const struct sm_addr *addr);
/* The live policy's verdict for src → dst:port (any thread). */
void sm_policy_check(const struct sm_daemon *d, uint32_t src, uint32_t dst, uint16_t port,
		     struct sm_policy_decision *out);
uint32_t sm_policy_revision(const struct sm_daemon *d);
/* The compiled policy's entries and their bound (datapath.max_policy_entries); -1, -1 before load.
 */
void sm_policy_size(const struct sm_daemon *d, int64_t *entries, int64_t *max);
/* Fill r->policy for a decision (audit: rule_id is the AUDIT rule's). */
void sm_policy_fill_record(const struct sm_daemon *d, uint32_t rule_id, uint32_t revision,
			   enum sm_policy_reason reason, bool audit, struct sm_flow_record *r);
/*
 * A control command named policy_*: *handled says whether cmd was one. The
 * answer's data, or NULL with err set. privileged: the client may change
 * the policy (its uid is root or the daemon's).
 */
struct json_object *sm_policy_command(struct sm_daemon *d, const char *cmd,
				      struct json_object *args, bool privileged, bool *handled,
				      struct sm_error *err);

/* metrics.c: the admin HTTP server: Prometheus /metrics, /healthz, /readyz (docs/metrics.md). */
/*
 * Bind listeners.admin (a taken port is an error, found before anything is
 * loaded); nothing when it is "". No thread yet. 0 or -errno.
 */
int sm_metrics_start(struct sm_daemon *d);
/* Start the HTTP thread on the bound port (after sm_privileges_drop()). 0 or -errno. */
int sm_metrics_serve(struct sm_daemon *d);
/* Stop serving; before the workers and the maps go (the HTTP thread reads them). */
void sm_metrics_stop(struct sm_daemon *d);
/* Stop serving and free the counts; after the last flow record (sm_flowexp_stop()). */
void sm_metrics_free(struct sm_daemon *d);
/* Count a flow record into the metrics (sm_flowexp_emit()). Any thread. */
void sm_metrics_observe(struct sm_daemon *d, const struct sm_flow_record *r);
/* Count n events a user-space source lost: lost_events_total{source}. Any thread. */
void sm_metrics_lost(struct sm_daemon *d, const char *source, uint64_t n);

/*
 * privileges.c: once the programs are attached, keep only the capabilities
 * the running daemon uses (docs/security.md). Before any thread exists:
 * capabilities are per thread and threads inherit the creator's. 0 or -errno.
 */
int sm_privileges_drop(struct sm_daemon *d);

/*
 * tunnelfacts.c: what the tunnel knew of each stream, in the pinned
 * tunnel_facts map, for the records of connections a daemon that stopped or
 * crashed carried (include/sockmesh/tunnel.h).
 */
int sm_tunnel_facts_start(struct sm_daemon *d);
/* A stream is established (a worker): keep its facts. */
void sm_tunnel_fact_publish(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
			    bool inbound, const char *trace, const struct sm_flow_tls *tls);
/* The stream ended while the daemon runs (a worker): its facts go. */
void sm_tunnel_fact_forget(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port);
/*
 * A record of a tunnelled socket the tunnel has no stream for (main thread):
 * fill it from the facts; final (a conn_end) forgets them, and names a reset
 * the stopped daemon's doing (aborted: the socket closed by a reset). True
 * when there were facts.
 */
bool sm_tunnel_fact_apply(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
			  bool final, bool aborted, struct sm_flow_record *r);
/* Main thread, until d->facts_swept: forget an earlier daemon's unclaimed facts. */
void sm_tunnel_facts_sweep(struct sm_daemon *d);

/* reload.c: SIGHUP's catalog reload, read on a thread, applied on the main loop. */
int sm_reload_start(struct sm_daemon *d);
/* SIGHUP: read the catalog file again; a bad one changes nothing. */
void sm_reload_request(struct sm_daemon *d);
void sm_reload_stop(struct sm_daemon *d);

/* control.c: the control socket. */
int sm_control_start(struct sm_daemon *d);
void sm_control_stop(struct sm_daemon *d);

#endif /* SOCKMESHD_DAEMON_H */
