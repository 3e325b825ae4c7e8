// SPDX-License-Identifier: Apache-2.0
/*
 * The admin HTTP server on listeners.admin (default 127.0.0.1:15020): GET
 * /metrics (Prometheus text format 0.0.4, docs/metrics.md), /healthz and
 * /readyz, served by libmicrohttpd on its own thread.
 *
 * Threads: flow records are counted by sm_metrics_observe() on whichever
 * thread emits them, under the aggregator's own lock. The HTTP thread reads
 * the kernel's maps (bpf syscalls on the skeleton's fds, which are closed
 * only after sm_metrics_stop() has joined it) and a snapshot of daemon state
 * that the main loop publishes every second under mu (readiness, policy
 * revision and size, tunnel counters): it never reads memory the main thread
 * changes. That heartbeat is also what /healthz checks: a main loop that
 * stopped turning stops refreshing it.
 *
 * Connections: one epoll thread holds up to admin.max_connections (bounded by
 * the open-file limit), each closed after admin.idle_timeout without
 * activity. So that no local process can starve the probes by holding them
 * all, the server keeps room: once it holds seven eighths of its bound, each
 * new connection closes the oldest one that waits on its client (see
 * conn_evict()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <microhttpd.h>

#include "cluster.h"
#include "daemon.h"
#include "datapath.h"
#include "drop_reason.h"
#include "evloop.h"
#include "flow_record.h"
#include "handoff.h"
#include "hbone.h"
#include "log.h"
#include "metrics.h"
#include "metrics_agg.h"
#include "policyd.h"
#include "proxy.h"
#include "spiffe.h"
#include "util.h"

#include "sockmesh/common.h"

#define ADMIN_BACKLOG	   1024
#define ADMIN_MEMORY_LIMIT (32 * 1024) /* per connection: request line and headers */
#define ADMIN_FD_SHARE	   4	       /* at most 1/ADMIN_FD_SHARE of the open-file limit */
#define ADMIN_MIN_CONNS	   16	       /* the bound, however low the open-file limit */
#define ADMIN_EVICT_SCAN   64	       /* connections looked at for one that waits on its client */
#define ADMIN_EVICT_LOG_NS (10 * NS_PER_S) /* evictions are logged at most this often */
#define HEARTBEAT_MS	   1000
#define NS_PER_S	   1000000000LL
#define HEARTBEAT_STALE_NS (5 * NS_PER_S)  /* /healthz fails when the loop is this late */
#define STARTUP_GRACE_NS   (60 * NS_PER_S) /* /healthz's patience before the loop runs */

/* An admin connection; in m's list, oldest first, until it is evicted. HTTP thread only. */
struct admin_conn {
	struct admin_conn *prev, *next;
	int fd;
	bool answering; /* its request is in and its answer not all sent */
	bool evicted;	/* shut down, out of the list, freed when the library closes it */
};

struct sm_metrics {
	struct sm_daemon *d;
	struct sm_metrics_agg *agg;
	struct MHD_Daemon *mhd;
	int listen_fd; /* bound by sm_metrics_start(), MHD's from sm_metrics_serve() on; else -1 */
	struct sm_ev *beat;
	struct sm_ev *first_beat;	  /* once, as soon as the loop runs; NULL after */
	char where[INET6_ADDRSTRLEN + 8]; /* "ADDR:PORT" for messages */

	/* published by the main loop (on_heartbeat), read by the HTTP thread */
	pthread_mutex_t mu;
	int64_t started_ns; /* CLOCK_MONOTONIC: the server started */
	int64_t beat_ns;    /* the main loop's last heartbeat */
	bool live;	    /* the loop runs: the daemon is set up, its maps may be read */
	bool ready;	    /* as `sockmesh status` says */
	bool draining;
	bool tunnel; /* tunnel.hbone: credentials loaded (the daemon starts only then) */
	uint32_t revision;
	int64_t policy_entries, policy_max; /* compiled entries, datapath.max_policy_entries */
	unsigned int attachments;
	struct sm_hbone_stats tls;
	struct sm_proxy_stats proxy;

	/* the HTTP thread's own: its connections */
	struct admin_conn *conns_head, *conns_tail; /* oldest first, not evicted */
	unsigned int max_conns;			    /* held at most (the library's limit) */
	unsigned int keep;			    /* held before the oldest is evicted */
	unsigned int held;			    /* in the list */
	unsigned int open;			    /* held or evicted, not closed yet */
	uint64_t evicted;
	int64_t evicted_log_ns; /* evictions were last logged */
};

/* Main thread, every second: prove the loop turns, and publish what the HTTP thread shows. */
static void on_heartbeat(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	struct sm_metrics *m = d->metrics;
	int64_t entries, max;
	struct sm_hbone_stats st;
	struct sm_proxy_stats ps;

	(void) loop;
	(void) ev;
	(void) events;
	sm_hbone_stats(d, &st);
	sm_proxy_stats(d, &ps);
	/* the compiled policy's size against its bound: the policy's own "map pressure" */
	sm_policy_size(d, &entries, &max);
	pthread_mutex_lock(&m->mu);
	m->beat_ns = sm_mono_ns();
	m->live = true;
	m->ready = d->ready;
	m->draining = d->draining;
	m->tunnel = d->hbone != NULL;
	m->revision = sm_policy_revision(d);
	m->policy_entries = entries;
	m->policy_max = max;
	m->attachments = d->natt;
	m->tls = st;
	m->proxy = ps;
	pthread_mutex_unlock(&m->mu);
}

/* The first heartbeat as soon as the loop runs, not a second later. */
static void on_first_heartbeat(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;

	on_heartbeat(loop, ev, events, arg);
	sm_evloop_del(loop, ev);
	d->metrics->first_beat = NULL;
}

/* ---- cluster mode ---- */

static void render_cluster(const struct sm_daemon *d, struct sm_textbuf *b)
{
	struct sm_cluster_info ci;

	sm_cluster_info(d, &ci);
	if (!ci.enabled)
		return; /* file mode: no such series */
	sm_prom_family(b, "sockmesh_cluster_connected", "gauge",
		       "1 when the last request to etcd succeeded, else 0.");
	sm_prom_sample(b, "sockmesh_cluster_connected", NULL, NULL, 0, ci.connected);
	sm_prom_family(b, "sockmesh_cluster_revision", "gauge",
		       "The etcd revision the catalog and policies in force are applied up to.");
	sm_prom_sample(b, "sockmesh_cluster_revision", NULL, NULL, 0, (uint64_t) ci.revision);
	sm_prom_family(b, "sockmesh_cluster_last_contact_seconds", "gauge",
		       "Seconds since etcd last answered (-1: never since the start).");
	sm_prom_sample_f64(b, "sockmesh_cluster_last_contact_seconds", NULL, NULL, 0,
			   (double) ci.last_contact_s);
	sm_prom_family(b, "sockmesh_cluster_stale_seconds", "gauge",
		       "Seconds since etcd stopped answering; 0 while it answers.");
	sm_prom_sample(b, "sockmesh_cluster_stale_seconds", NULL, NULL, 0, (uint64_t) ci.stale_s);
	sm_prom_family(b, "sockmesh_cluster_refusing", "gauge",
		       "1 while the newest cluster state is refused (the last good one is kept).");
	sm_prom_sample(b, "sockmesh_cluster_refusing", NULL, NULL, 0, ci.refusing);
	sm_prom_family(b, "sockmesh_cluster_applied_total", "counter",
		       "Cluster states put in force since the start.");
	sm_prom_sample(b, "sockmesh_cluster_applied_total", NULL, NULL, 0, ci.applied_total);
	sm_prom_family(b, "sockmesh_cluster_refusals_total", "counter",
		       "Cluster states refused since the start (a key that does not validate).");
	sm_prom_sample(b, "sockmesh_cluster_refusals_total", NULL, NULL, 0, ci.refused_total);
}

/* ---- /metrics ---- */

static void render_map(const struct sm_map_fill *f, void *arg)
{
	const char *label = "map";

	if (f->entries >= 0 && f->max_entries > 0)
		sm_prom_sample_f64(arg, "sockmesh_map_pressure", &label, &f->name, 1,
				   (double) f->entries / (double) f->max_entries);
}

static void render_maps(struct sm_daemon *d, struct sm_textbuf *b, int64_t policy_entries,
			int64_t policy_max)
{
	const char *label = "map", *policy = "policy";

	sm_prom_family(b, "sockmesh_map_pressure", "gauge",
		       "Fill level of each pinned map that has one: entries / max_entries (0..1); "
		       "policy: compiled entries / datapath.max_policy_entries.");
	if (policy_entries >= 0 && policy_max > 0)
		sm_prom_sample_f64(b, "sockmesh_map_pressure", &label, &policy, 1,
				   (double) policy_entries / (double) policy_max);
	sm_datapath_map_fill(d, render_map, b);
}

static void render_tls(struct sm_textbuf *b, const struct sm_hbone_stats *st)
{
	const char *label = "result", *value = "ok";

	sm_prom_family(
		b, "sockmesh_tls_handshakes_total", "counter",
		"TLS handshakes of the tunnel: ok, or why they failed (the refusal names of "
		"docs/security.md; other: timeouts, refusals by the peer, connect failures).");
	sm_prom_sample(b, "sockmesh_tls_handshakes_total", &label, &value, 1, st->tls_ok);
	for (int i = 1; i < SM_SVID_REASON_MAX; i++) {
		value = sm_svid_reason_name((enum sm_svid_reason) i);
		sm_prom_sample(b, "sockmesh_tls_handshakes_total", &label, &value, 1,
			       st->tls_failed[i]);
	}
	value = SM_METRICS_OTHER;
	sm_prom_sample(b, "sockmesh_tls_handshakes_total", &label, &value, 1, st->tls_failed_other);
}

/* Connections the listeners reset at once, by listener and why (docs/metrics.md). */
static void render_refused(struct sm_textbuf *b, const struct sm_hbone_stats *st,
			   const struct sm_proxy_stats *ps)
{
	const char *labels[] = {"listener", "reason"};
	const char *fd = sm_drop_reason_name(SM_DROP_FD_EXHAUSTED);
	const char *hs = sm_drop_reason_name(SM_DROP_HANDSHAKE_LIMIT);
	const struct {
		const char *listener, *reason;
		uint64_t n;
	} rows[] = {
		{"outbound", fd, ps->accept_no_fd},
		{"inbound", fd, st->accept_no_fd},
		{"inbound", hs, st->refused_per_source + st->refused_busy + st->handshakes_evicted},
	};

	sm_prom_family(b, "sockmesh_connections_refused_total", "counter",
		       "Connections a listener reset at once or cut off early: out of file "
		       "descriptors (fd_exhausted), or over the inbound handshake limits "
		       "(handshake_limit).");
	for (size_t i = 0; i < SM_ARRAY_SIZE(rows); i++) {
		const char *values[] = {rows[i].listener, rows[i].reason};

		sm_prom_sample(b, "sockmesh_connections_refused_total", labels, values, 2,
			       rows[i].n);
	}
}

/* Prometheus' usual process metrics, from /proc/self. */
static void render_process(struct sm_textbuf *b)
{
	unsigned long utime = 0, stime = 0;
	unsigned long long start = 0, btime = 0;
	long rss = 0, tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	char buf[1024], *p;
	struct rlimit rl;
	long long fds = 0;
	struct dirent *de;
	DIR *dir;
	FILE *f;

	f = fopen("/proc/self/stat", "re");
	if (f) {
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
			/* fields 14 utime, 15 stime, 22 starttime, 24 rss (proc(5)) */
			sscanf(p + 1,
			       " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
			       "%*d %*d %*d %llu %*u %ld",
			       &utime, &stime, &start, &rss);
		fclose(f);
	}
	f = fopen("/proc/stat", "re");
	if (f) {
		while (fgets(buf, sizeof(buf), f))
			if (sscanf(buf, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	dir = opendir("/proc/self/fd");
	if (dir) {
		while ((de = readdir(dir)))
			fds += de->d_name[0] != '.';
		closedir(dir);
		fds--; /* the directory's own */
	}
	if (tck <= 0)
		tck = 100;
	sm_prom_family(b, "process_cpu_seconds_total", "counter",
		       "User and system CPU time of the daemon, in seconds.");
	sm_prom_sample_f64(b, "process_cpu_seconds_total", NULL, NULL, 0,
			   (double) (utime + stime) / (double) tck);
	sm_prom_family(b, "process_resident_memory_bytes", "gauge", "Resident memory, in bytes.");
	sm_prom_sample(b, "process_resident_memory_bytes", NULL, NULL, 0,
		       (uint64_t) (rss > 0 && page > 0 ? rss * page : 0));
	sm_prom_family(b, "process_start_time_seconds", "gauge",
		       "When the daemon started, in seconds since the Unix epoch.");
	sm_prom_sample_f64(b, "process_start_time_seconds", NULL, NULL, 0,
			   (double) btime + (double) start / (double) tck);
	sm_prom_family(b, "process_open_fds", "gauge", "Open file descriptors.");
	sm_prom_sample(b, "process_open_fds", NULL, NULL, 0, (uint64_t) (fds > 0 ? fds : 0));
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		sm_prom_family(b, "process_max_fds", "gauge", "The open file descriptor limit.");
		sm_prom_sample(b, "process_max_fds", NULL, NULL, 0, (uint64_t) rl.rlim_cur);
	}
}

/* This server's own connections. HTTP thread. */
static void render_admin(const struct sm_metrics *m, struct sm_textbuf *b)
{
	sm_prom_family(b, "sockmesh_admin_connections", "gauge",
		       "Connections the admin server holds now, this one included.");
	sm_prom_sample(b, "sockmesh_admin_connections", NULL, NULL, 0, m->open);
	sm_prom_family(b, "sockmesh_admin_max_connections", "gauge",
		       "The most it holds: admin.max_connections, or less when the open-file "
		       "limit is low.");
	sm_prom_sample(b, "sockmesh_admin_max_connections", NULL, NULL, 0, m->max_conns);
	sm_prom_family(b, "sockmesh_admin_connections_evicted_total", "counter",
		       "Connections closed, oldest first, to make room for new ones when the "
		       "server held seven eighths of its bound.");
	sm_prom_sample(b, "sockmesh_admin_connections_evicted_total", NULL, NULL, 0, m->evicted);
}

/* The whole page; b->failed on allocation failure. HTTP thread. */
static void render_metrics(struct sm_metrics *m, struct sm_textbuf *b)
{
	static const char *const lost_names[] = {"ringbuf", "orig_dst", "storage", "sockhash"};
	static const enum sm_counter lost_counters[] = {
		SM_CNT_RINGBUF_RESERVE_FAIL,
		SM_CNT_ORIGDST_UPDATE_FAIL,
		SM_CNT_STORAGE_FAIL,
		SM_CNT_SOCKHASH_UPDATE_FAIL,
	};
	uint64_t cnt[SM_CNT_MAX], lost[SM_ARRAY_SIZE(lost_counters)];
	struct sm_metrics_inputs in = {0};
	struct sm_hbone_stats tls;
	struct sm_proxy_stats proxy;
	const char *label = "version", *value = SOCKMESH_VERSION;
	int64_t policy_entries, policy_max;
	bool live, ready;
	uint32_t revision;

	pthread_mutex_lock(&m->mu);
	live = m->live;
	ready = m->ready;
	revision = m->revision;
	policy_entries = m->policy_entries;
	policy_max = m->policy_max;
	tls = m->tls;
	proxy = m->proxy;
	pthread_mutex_unlock(&m->mu);

	sm_prom_family(b, "sockmesh_up", "gauge", "1: the daemon runs and serves this page.");
	sm_prom_sample(b, "sockmesh_up", NULL, NULL, 0, 1);
	sm_prom_family(b, "sockmesh_build_info", "gauge", "Always 1; the labels say which build.");
	sm_prom_sample(b, "sockmesh_build_info", &label, &value, 1, 1);
	sm_prom_family(b, "sockmesh_ready", "gauge", "1 when /readyz answers 200, else 0.");
	sm_prom_sample(b, "sockmesh_ready", NULL, NULL, 0, ready);

	/* the kernel's side only once the datapath is up (before, the daemon is starting) */
	if (live && sm_datapath_counters(m->d, cnt) == 0) {
		for (size_t i = 0; i < SM_ARRAY_SIZE(lost_counters); i++)
			lost[i] = cnt[lost_counters[i]];
		in.have_allowed = true;
		in.allowed = cnt[SM_CNT_POLICY_ALLOWED];
		in.lost_sources = lost_names;
		in.lost_counts = lost;
		in.nlost = SM_ARRAY_SIZE(lost_names);
	}
	sm_metrics_agg_render(m->agg, b, &in);

	sm_prom_family(b, "sockmesh_policy_revision", "gauge",
		       "Revision of the policy set in force (0: none was ever applied).");
	if (live)
		sm_prom_sample(b, "sockmesh_policy_revision", NULL, NULL, 0, revision);
	if (live) {
		render_maps(m->d, b, policy_entries, policy_max);
		render_tls(b, &tls);
		render_refused(b, &tls, &proxy);
	}
	render_cluster(m->d, b);
	render_admin(m, b);
	render_process(b);
}

/* ---- /healthz and /readyz ---- */

/* 200 while the main loop turns (or is still starting, within the grace). */
static unsigned int health(struct sm_metrics *m, struct sm_textbuf *b)
{
	int64_t now = sm_mono_ns(), beat, started;
	bool live;

	pthread_mutex_lock(&m->mu);
	live = m->live;
	beat = m->beat_ns;
	started = m->started_ns;
	pthread_mutex_unlock(&m->mu);
	if (!live && now - started <= STARTUP_GRACE_NS) {
		sm_textbuf_printf(b, "ok\n"); /* starting: /readyz tells that apart */
		return MHD_HTTP_OK;
	}
	if (!live) {
		sm_textbuf_printf(b,
				  "unhealthy: the daemon has been starting for %lld s and its main "
				  "loop has not run yet\n",
				  (long long) ((now - started) / NS_PER_S));
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	if (now - beat > HEARTBEAT_STALE_NS) {
		sm_textbuf_printf(b, "unhealthy: the main loop has not run for %lld s\n",
				  (long long) ((now - beat) / NS_PER_S));
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	sm_textbuf_printf(b, "ok\n");
	return MHD_HTTP_OK;
}

/* 200 when `sockmesh status` says ready; else 503 and what is missing. */
static unsigned int readiness(struct sm_metrics *m, struct sm_textbuf *b)
{
	int64_t now = sm_mono_ns();
	bool live, ready, draining, tunnel;
	unsigned int attachments;
	uint32_t revision;
	int64_t beat;

	pthread_mutex_lock(&m->mu);
	live = m->live;
	ready = m->ready;
	draining = m->draining;
	tunnel = m->tunnel;
	attachments = m->attachments;
	revision = m->revision;
	beat = m->beat_ns;
	pthread_mutex_unlock(&m->mu);
	if (!live) {
		sm_textbuf_printf(b, "not ready: starting: programs not attached, policy not "
				     "restored, tunnel credentials not loaded yet\n");
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	if (draining) {
		sm_textbuf_printf(b, "not ready: draining: the daemon is stopping and takes no new "
				     "connections\n");
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	if (now - beat > HEARTBEAT_STALE_NS) {
		sm_textbuf_printf(b, "not ready: the main loop has not run for %lld s\n",
				  (long long) ((now - beat) / NS_PER_S));
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	if (!ready) {
		sm_textbuf_printf(b, "not ready: programs, policy or credentials not in place\n");
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	sm_textbuf_printf(b, "ready: %u program attachments, policy revision %u, %s\n", attachments,
			  revision,
			  tunnel ? "tunnel credentials loaded" : "tunnel off (tunnel.hbone false)");
	{
		struct sm_cluster_info ci;

		/* fail static: a node away from etcd stays ready and enforces what it has */
		sm_cluster_info(m->d, &ci);
		if (ci.enabled && ci.stale_s > 0)
			sm_textbuf_printf(b,
					  "cluster: etcd has not answered for %lld s; enforcing "
					  "revision %lld\n",
					  (long long) ci.stale_s, (long long) ci.revision);
		else if (ci.enabled && !ci.connected)
			sm_textbuf_printf(
				b, "cluster: etcd not reached yet; enforcing revision %lld\n",
				(long long) ci.revision);
		else if (ci.enabled)
			sm_textbuf_printf(b, "cluster: revision %lld%s\n", (long long) ci.revision,
					  ci.refusing ? " (a newer one is refused: see sockmesh "
							"status)"
						      : "");
	}
	return MHD_HTTP_OK;
}

/* ---- connections ---- */

static void conn_unlink(struct sm_metrics *m, struct admin_conn *ac)
{
	if (ac->prev)
		ac->prev->next = ac->next;
	else
		m->conns_head = ac->next;
	if (ac->next)
		ac->next->prev = ac->prev;
	else
		m->conns_tail = ac->prev;
	ac->prev = ac->next = NULL;
	m->held--;
}

/*
 * Make room: the oldest connection that waits on its client is shut down.
 * Passed over: one being answered, and one whose bytes the server has not
 * read yet (a probe's, between accept and the read that answers it at once).
 * When the first ADMIN_EVICT_SCAN are all such, the oldest goes anyway: the
 * bound holds. Its descriptor stays open (the library closes it, and then
 * calls on_connection(): no other thread closes it meanwhile), so shutdown()
 * never reaches a reused descriptor.
 */
static void conn_evict(struct sm_metrics *m)
{
	struct admin_conn *ac = m->conns_head;
	int scanned = 0;
	int64_t now;

	for (struct admin_conn *c = m->conns_head; c && scanned < ADMIN_EVICT_SCAN;
	     c = c->next, scanned++) {
		int pending = 0;

		if (!c->answering && ioctl(c->fd, FIONREAD, &pending) == 0 && pending == 0) {
			ac = c;
			break;
		}
	}
	conn_unlink(m, ac);
	ac->evicted = true;
	shutdown(ac->fd, SHUT_RDWR);
	m->evicted++;
	now = sm_mono_ns();
	if (now - m->evicted_log_ns >= ADMIN_EVICT_LOG_NS) {
		pr_warn("admin server %s: holds %u of at most %u connections "
			"(admin.max_connections): closing the oldest to make room for new ones "
			"(%llu so far); a local process may be holding them (ss -tnp 'sport = "
			":%u' shows which)",
			m->where, m->held + 1, m->max_conns, (unsigned long long) m->evicted,
			m->d->cfg.admin_port);
		m->evicted_log_ns = now;
	}
}

/* The library's STARTED and CLOSED notices, on the HTTP thread. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct sm_metrics *m = cls;
	struct admin_conn *ac = *socket_context;
	const union MHD_ConnectionInfo *info;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (!ac)
			return;
		if (!ac->evicted)
			conn_unlink(m, ac);
		m->open--;
		free(ac);
		*socket_context = NULL;
		return;
	}
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	ac = info ? calloc(1, sizeof(*ac)) : NULL;
	if (!ac)
		return; /* not tracked, never evicted: it still times out */
	ac->fd = info->connect_fd;
	ac->prev = m->conns_tail;
	if (m->conns_tail)
		m->conns_tail->next = ac;
	else
		m->conns_head = ac;
	m->conns_tail = ac;
	m->held++;
	m->open++;
	*socket_context = ac;
	while (m->held > m->keep && m->conns_head)
		conn_evict(m);
}

/* The connection's tracking, or NULL (not tracked: out of memory when it came). */
static struct admin_conn *conn_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info ? info->socket_context : NULL;
}

/* The library's notice that a request's answer went out (or the connection failed). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct admin_conn *ac = conn_of(conn);

	(void) cls;
	(void) req_cls;
	(void) toe;
	if (ac)
		ac->answering = false;
}

/*
 * How many connections the server may hold: admin.max_connections, but at
 * most a share of the open-file limit, so that the admin port can never take
 * the descriptors the proxy and the tunnel need.
 */
static unsigned int admin_conn_limit(const struct sm_metrics *m)
{
	unsigned int want = m->d->cfg.admin_max_connections;
	struct rlimit rl;
	rlim_t share;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return want;
	share = rl.rlim_cur / ADMIN_FD_SHARE;
	if (share >= want)
		return want;
	if (share < ADMIN_MIN_CONNS)
		share = ADMIN_MIN_CONNS;
	pr_warn("admin server %s: holds at most %u connections, not %u (admin.max_connections): "
		"a quarter of the open-file limit %llu (raise the limit, e.g. LimitNOFILE= in the "
		"unit, or lower admin.max_connections)",
		m->where, (unsigned int) share, want, (unsigned long long) rl.rlim_cur);
	return (unsigned int) share;
}

/* ---- HTTP ---- */

/* Queue b's text (taken over) as the answer; a failed b becomes a 500. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned int status, const char *type,
			       struct sm_textbuf *b, bool allow_get)
{
	static const char oom[] = "out of memory\n";
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (b->failed || !b->s) {
		sm_textbuf_free(b);
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		type = "text/plain; charset=utf-8";
		resp = MHD_create_response_from_buffer(sizeof(oom) - 1, (void *) oom,
						       MHD_RESPMEM_PERSISTENT);
	} else {
		resp = MHD_create_response_from_buffer_with_free_callback(b->len, b->s, free);
		if (!resp)
			sm_textbuf_free(b);
	}
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow_get)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	static const char text[] = "text/plain; charset=utf-8";
	struct sm_metrics *m = cls;
	struct sm_textbuf b = {0};
	struct admin_conn *ac;
	unsigned int status;

	(void) version;
	(void) upload_data;
	(void) upload_data_size;
	(void) req_cls;
	ac = conn_of(conn);
	if (ac)
		ac->answering = true; /* until on_completed() */
	if (strcmp(url, "/metrics") != 0 && strcmp(url, "/healthz") != 0 &&
	    strcmp(url, "/readyz") != 0) {
		sm_textbuf_printf(&b,
				  "not found: this port serves /metrics, /healthz and /readyz\n");
		return respond(conn, MHD_HTTP_NOT_FOUND, text, &b, false);
	}
	/* answered at once, before any body: MHD then closes such a connection */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
		sm_textbuf_printf(&b, "method %.16s not allowed: use GET\n", method);
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, &b, true);
	}
	if (strcmp(url, "/metrics") == 0) {
		render_metrics(m, &b);
		return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &b,
			       false);
	}
	status = strcmp(url, "/healthz") == 0 ? health(m, &b) : readiness(m, &b);
	return respond(conn, status, text, &b, false);
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void) cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	pr_info("admin server: %s", buf);
}

/* ---- lifecycle ---- */

/* The flow observer: every record, whatever the sinks then keep. Any thread. */
static void observe_record(void *arg, const struct sm_flow_record *r)
{
	struct sm_metrics *m = arg;

	sm_metrics_agg_observe(m->agg, r);
}

/* n events a user-space source lost: lost_events_total{source}. Any thread. */
static void observe_lost(void *arg, const char *source, uint64_t n)
{
	struct sm_metrics *m = arg;

	sm_metrics_agg_lost(m->agg, source, n);
}

int sm_metrics_start(struct sm_daemon *d)
{
	struct sm_metrics *m;
	char addr[INET6_ADDRSTRLEN];
	int fd, err;

	if (!d->cfg.admin_port) {
		pr_info("admin server off (listeners.admin is \"\"): no /metrics, /healthz, "
			"/readyz");
		return 0;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->d = d;
	m->listen_fd = -1;
	pthread_mutex_init(&m->mu, NULL);
	m->started_ns = sm_mono_ns();
	sm_addr_format(&d->cfg.admin_addr, addr, sizeof(addr));
	snprintf(m->where, sizeof(m->where),
		 d->cfg.admin_addr.family == AF_INET6 ? "[%s]:%u" : "%s:%u", addr,
		 d->cfg.admin_port);
	m->agg = sm_metrics_agg_new(d->cfg.metrics_max_series);
	if (!m->agg) {
		err = -errno;
		goto free_m;
	}
	/* an upgrade's predecessor's socket, else a new one */
	fd = sm_handoff_take_tcp(&d->cfg.admin_addr, d->cfg.admin_port);
	if (fd < 0)
		fd = sm_tcp_listen(&d->cfg.admin_addr, d->cfg.admin_port, ADMIN_BACKLOG, false);
	if (fd < 0) {
		err = fd;
		pr_err("cannot listen on the admin port %s: %s (%s)", m->where, strerror(-err),
		       err == -EADDRINUSE
			       ? "another process holds it, maybe another sockmeshd: stop it, or "
				 "set listeners.admin (--admin ADDR:PORT) to a free port, or \"\" "
				 "to turn the admin server off"
			       : "set listeners.admin (--admin ADDR:PORT) to an address of this "
				 "host, or \"\" to turn the admin server off");
		goto free_agg;
	}
	m->beat = sm_evloop_timer(d->loop, HEARTBEAT_MS, on_heartbeat, d);
	m->first_beat = sm_evloop_timer(d->loop, 1, on_first_heartbeat, d);
	if (!m->beat || !m->first_beat) {
		err = -errno;
		close(fd);
		goto del_beat;
	}
	m->max_conns = admin_conn_limit(m);
	m->keep = m->max_conns - m->max_conns / 8;
	m->listen_fd = fd;
	d->metrics = m;
	d->flow_observer =
		(struct sm_flow_observer){.record = observe_record, .lost = observe_lost, .arg = m};
	return 0;
del_beat:
	sm_evloop_del(d->loop, m->first_beat);
	sm_evloop_del(d->loop, m->beat);
free_agg:
	sm_metrics_agg_free(m->agg);
free_m:
	pthread_mutex_destroy(&m->mu);
	free(m);
	return err;
}

int sm_metrics_serve(struct sm_daemon *d)
{
	struct sm_metrics *m = d->metrics;
	int fd;

	if (!m)
		return 0;
	fd = m->listen_fd;
	m->listen_fd = -1; /* MHD's from here on */
	/*
	 * One epoll thread: its cost grows with the connections that are active,
	 * not with those held. It inherits the caller's signal mask (SIGTERM etc.
	 * stay the main loop's) and capabilities (the reduced set).
	 */
	m->mhd = MHD_start_daemon(
		/* ITC: MHD_quiesce_daemon() gives the listener up without a shutdown() of it */
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL, NULL,
		on_request, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
		fd, MHD_OPTION_CONNECTION_LIMIT, m->max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int) d->cfg.admin_idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t) ADMIN_MEMORY_LIMIT, MHD_OPTION_NOTIFY_CONNECTION, on_connection, m,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, m, MHD_OPTION_END);
	if (!m->mhd) {
		pr_err("cannot start the admin HTTP server on %s (libmicrohttpd refused; see the "
		       "messages above)",
		       m->where);
		/* whether MHD closed fd on its way out is not documented; no thread of its runs */
		if (fcntl(fd, F_GETFD) >= 0)
			close(fd);
		return -EIO;
	}
	pr_info("admin server on %s: /metrics, /healthz, /readyz (at most %u connections, closed "
		"after %u s idle)",
		m->where, m->max_conns, d->cfg.admin_idle_timeout);
	return 0;
}

void sm_metrics_stop(struct sm_daemon *d)
{
	struct sm_metrics *m = d->metrics;

	if (!m || !m->mhd)
		return;
	MHD_stop_daemon(m->mhd); /* joins the thread and closes the listener */
	m->mhd = NULL;
}

int sm_metrics_listen_fd(const struct sm_daemon *d)
{
	const union MHD_DaemonInfo *info;

	if (!d->metrics)
		return -1;
	if (!d->metrics->mhd)
		return d->metrics->listen_fd;
	info = MHD_get_daemon_info(d->metrics->mhd, MHD_DAEMON_INFO_LISTEN_FD);
	return info ? info->listen_fd : -1;
}

void sm_metrics_quiesce(struct sm_daemon *d)
{
	int fd;

	if (!d->metrics || !d->metrics->mhd)
		return;
	/* MHD stops watching it; the successor's copy of the socket serves on */
	fd = MHD_quiesce_daemon(d->metrics->mhd);
	if (fd >= 0)
		close(fd);
}

void sm_metrics_free(struct sm_daemon *d)
{
	struct sm_metrics *m = d->metrics;

	if (!m)
		return;
	sm_metrics_stop(d);
	if (m->listen_fd >= 0)
		close(m->listen_fd); /* bound, never served */
	sm_evloop_del(d->loop, m->first_beat);
	sm_evloop_del(d->loop, m->beat);
	d->metrics = NULL;
	memset(&d->flow_observer, 0, sizeof(d->flow_observer));
	sm_metrics_agg_free(m->agg);
	pthread_mutex_destroy(&m->mu);
	free(m);
}
