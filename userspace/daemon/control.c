// SPDX-License-Identifier: Apache-2.0
/*
 * The control socket (docs/interfaces.md): a Unix stream socket, mode 0600,
 * one JSON request line in, one JSON answer line out (except "flows", whose
 * client is handed to the flow stream, flowstream.c). Clients are served on
 * the main event loop, each with its own state and non-blocking socket (see
 * struct ctl_client), so no client can hold the loop or another client.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "catalog.h"
#include "config.h"
#include "cluster.h"
#include "control.h"
#include "ctl.h"
#include "daemon.h"
#include "datapath.h"
#include "evloop.h"
#include "flowacct.h"
#include "flowstream.h"
#include "handoff.h"
#include "hbone.h"
#include "log.h"
#include "policyd.h"
#include "proxy.h"
#include "sinks.h"
#include "sockmesh.skel.h"
#include "spiffe.h"
#include "util.h"
#include "worker.h"
#include "workloads.h"

#include "sockmesh/common.h"

#define CTL_BACKLOG	   128
#define CTL_ACCEPT_BATCH   16	       /* accepts per wakeup */
#define CTL_IO_ROUNDS	   16	       /* reads or sends per wakeup: no client hogs the loop */
#define CTL_FIRST_BUF	   4096	       /* a request's first buffer; grows to SM_CTL_MAX_REQUEST */
#define CTL_TICK_MS	   1000	       /* idle clients are looked for this often */
#define CTL_REFUSED_LOG_MS (10 * 1000) /* refusals are logged at most this often */

/*
 * A client: its request is read as it comes (up to SM_CTL_MAX_REQUEST bytes),
 * the command runs once the whole line is in, and the answer is sent as the
 * socket takes it. A client that makes no progress (sends nothing, or reads
 * nothing of its answer) for control.idle_timeout is closed; one more than
 * control.max_clients is refused with an error line.
 */
struct ctl_client {
	struct ctl_client *prev, *next;
	struct sm_control *ctl;
	int fd; /* -1 once handed to the flow stream */
	struct sm_ev *ev;
	bool writing; /* the request is in; out holds the answer */
	char *in;     /* the request so far; in_cap + 1 bytes for the NUL */
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len;
	int64_t progress_ms; /* CLOCK_MONOTONIC: connected, or last took or gave bytes */
};

struct sm_control {
	struct sm_daemon *d;
	int fd;
	struct sm_ev *listen_ev;
	struct sm_ev *tick;
	struct ctl_client *clients;
	unsigned int nclients;
	bool accept_paused; /* out of descriptors: the listener rests until the next tick */
	uint64_t refused, timed_out;
	uint64_t refused_logged; /* refusals named in the log so far */
	int64_t refused_log_ms;	 /* when refusals were last logged */
};

static const char *const counter_names[] = SM_COUNTER_NAMES;
_Static_assert(SM_ARRAY_SIZE(counter_names) == SM_CNT_MAX, "a counter has no name");

static const char *map_type_name(enum bpf_map_type t)
{
	const char *n = libbpf_bpf_map_type_str(t);

	return n ? n : "unknown";
}

static json_object *status_programs(struct sm_daemon *d)
{
	json_object *arr = json_object_new_array();
	struct bpf_program *prog;

	bpf_object__for_each_program (prog, d->skel->obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		json_object *o = json_object_new_object(), *att = json_object_new_array();

		bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len);
		json_object_object_add(o, "name", json_object_new_string(bpf_program__name(prog)));
		json_object_object_add(o, "section",
				       json_object_new_string(bpf_program__section_name(prog)));
		json_object_object_add(o, "prog_id", json_object_new_int64(info.id));
		for (unsigned int i = 0; i < d->natt; i++) {
			json_object *a;

			if (strcmp(d->att[i].prog, bpf_program__name(prog)) != 0)
				continue;
			a = json_object_new_object();
			json_object_object_add(a, "cgroup",
					       json_object_new_string(d->att[i].cgroup));
			json_object_object_add(a, "link_id",
					       json_object_new_int64(d->att[i].link_id));
			json_object_array_add(att, a);
		}
		if (prog == d->skel->progs.sk_msg_redirect && d->redirect_attached) {
			json_object *a = json_object_new_object();

			json_object_object_add(a, "map", json_object_new_string("sock_pairs"));
			json_object_array_add(att, a);
		}
		if (prog == d->skel->progs.iter_tcp_flows && d->iter_link) {
			json_object *a = json_object_new_object();

			json_object_object_add(a, "iterator", json_object_new_string("tcp"));
			json_object_array_add(att, a);
		}
		json_object_object_add(o, "attached", att);
		json_object_array_add(arr, o);
	}
	return arr;
}

static void status_map(const struct sm_map_fill *f, void *arg)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(f->name));
	json_object_object_add(o, "type",
			       json_object_new_string(map_type_name((enum bpf_map_type) f->type)));
	json_object_object_add(o, "entries", json_object_new_int64(f->entries));
	json_object_object_add(o, "max_entries", json_object_new_int64(f->max_entries));
	json_object_array_add(arg, o);
}

static json_object *status_maps(struct sm_daemon *d)
{
	json_object *arr = json_object_new_array();

	sm_datapath_map_fill(d, status_map, arr);
	return arr;
}

static json_object *status_tunnel(struct sm_daemon *d)
{
	json_object *o = json_object_new_object(), *f = json_object_new_object();
	struct sm_hbone_stats st;

	sm_hbone_stats(d, &st);
	json_object_object_add(o, "hbone", json_object_new_boolean(d->hbone != NULL));
	json_object_object_add(o, "tls_handshakes_ok", json_object_new_uint64(st.tls_ok));
	for (int i = 1; i < SM_SVID_REASON_MAX; i++)
		json_object_object_add(f, sm_svid_reason_name((enum sm_svid_reason) i),
				       json_object_new_uint64(st.tls_failed[i]));
	json_object_object_add(f, "other", json_object_new_uint64(st.tls_failed_other));
	json_object_object_add(o, "tls_handshakes_failed", f);
	json_object_object_add(o, "connections_in", json_object_new_uint64(st.conns_in));
	json_object_object_add(o, "connections_out", json_object_new_uint64(st.conns_out));
	json_object_object_add(o, "streams_open", json_object_new_uint64(st.streams_open));
	json_object_object_add(o, "streams_total", json_object_new_uint64(st.streams_total));
	json_object_object_add(o, "streams_failed", json_object_new_uint64(st.streams_failed));
	json_object_object_add(o, "requests_refused", json_object_new_uint64(st.requests_refused));
	json_object_object_add(o, "upstream_errors", json_object_new_uint64(st.upstream_errors));
	json_object_object_add(o, "bad_frames", json_object_new_uint64(st.bad_frames));
	json_object_object_add(o, "refused_busy", json_object_new_uint64(st.refused_busy));
	json_object_object_add(o, "sni_selected", json_object_new_uint64(st.sni_selected));
	json_object_object_add(o, "credentials_reloads", json_object_new_uint64(st.creds_reloads));
	json_object_object_add(o, "credentials_reload_failures",
			       json_object_new_uint64(st.creds_reload_failures));
	json_object_object_add(o, "credentials_expiring",
			       json_object_new_uint64(st.creds_expiring));
	json_object_object_add(o, "keepalive_failures",
			       json_object_new_uint64(st.keepalive_failures));
	json_object_object_add(o, "policy_streams_closed",
			       json_object_new_uint64(st.policy_streams_closed));
	json_object_object_add(o, "tls_send_blocked", json_object_new_uint64(st.tls_send_blocked));
	json_object_object_add(o, "refused_per_source",
			       json_object_new_uint64(st.refused_per_source));
	json_object_object_add(o, "handshakes_evicted",
			       json_object_new_uint64(st.handshakes_evicted));
	json_object_object_add(o, "preface_timeouts", json_object_new_uint64(st.preface_timeouts));
	json_object_object_add(o, "accept_no_fd", json_object_new_uint64(st.accept_no_fd));
	return o;
}

/* What each worker thread carries: shows how the kernel spread connections. */
static json_object *status_workers(struct sm_daemon *d)
{
	json_object *arr = json_object_new_array();

	for (unsigned int i = 0; d->workers && i < d->nworkers; i++) {
		json_object *o = json_object_new_object();
		struct sm_proxy_stats ps;
		struct sm_hbone_stats hs;

		sm_proxy_worker_stats(&d->workers[i], &ps);
		sm_hbone_worker_stats(&d->workers[i], &hs);
		json_object_object_add(o, "id", json_object_new_int64(i));
		json_object_object_add(o, "accepted", json_object_new_uint64(ps.accepted));
		json_object_object_add(o, "relays_active", json_object_new_uint64(ps.active));
		json_object_object_add(o, "connections_in", json_object_new_uint64(hs.conns_in));
		json_object_object_add(o, "connections_out", json_object_new_uint64(hs.conns_out));
		json_object_object_add(o, "streams_open", json_object_new_uint64(hs.streams_open));
		json_object_object_add(o, "streams_total",
				       json_object_new_uint64(hs.streams_total));
		json_object_object_add(
			o, "busy_poll_hits",
			json_object_new_uint64(sm_evloop_busy_hits(d->workers[i].loop)));
		json_object_array_add(arr, o);
	}
	return arr;
}

static json_object *status_control(const struct sm_control *ctl)
{
	json_object *o = json_object_new_object();

	if (!o || !ctl)
		return o;
	json_object_object_add(o, "clients", json_object_new_uint64(ctl->nclients));
	json_object_object_add(o, "max_clients",
			       json_object_new_uint64(ctl->d->cfg.control_max_clients));
	json_object_object_add(o, "idle_timeout_s",
			       json_object_new_uint64(ctl->d->cfg.control_idle_timeout));
	json_object_object_add(o, "refused", json_object_new_uint64(ctl->refused));
	json_object_object_add(o, "timed_out", json_object_new_uint64(ctl->timed_out));
	return o;
}

static json_object *cmd_status(struct sm_daemon *d)
{
	json_object *o = json_object_new_object(), *c = json_object_new_object();
	json_object *px = json_object_new_object(), *fl = json_object_new_object();
	uint64_t cnt[SM_CNT_MAX] = {0};
	struct sm_proxy_stats ps;

	json_object_object_add(o, "node", json_object_new_string(d->cfg.node));
	json_object_object_add(o, "version", json_object_new_string(SOCKMESH_VERSION));
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "ready", json_object_new_boolean(d->ready));
	json_object_object_add(o, "uptime_s", json_object_new_int64(time(NULL) - d->started));
	json_object_object_add(o, "bpffs", json_object_new_string(d->cfg.bpffs));
	json_object_object_add(o, "cgroup_root", json_object_new_string(d->cgroup_root));
	json_object_object_add(o, "enrollment_root", json_object_new_string(d->enroll_root));
	json_object_object_add(o, "redirect", json_object_new_boolean(d->cfg.redirect));
	json_object_object_add(o, "programs", status_programs(d));
	json_object_object_add(o, "maps", status_maps(d));
	sm_datapath_counters(d, cnt);
	for (int i = 0; i < SM_CNT_MAX; i++)
		json_object_object_add(c, counter_names[i], json_object_new_uint64(cnt[i]));
	json_object_object_add(o, "counters", c);
	sm_proxy_stats(d, &ps);
	json_object_object_add(px, "active", json_object_new_uint64(ps.active));
	json_object_object_add(px, "accepted", json_object_new_uint64(ps.accepted));
	json_object_object_add(px, "upstream_errors", json_object_new_uint64(ps.upstream_errors));
	json_object_object_add(px, "orig_dst_errors", json_object_new_uint64(ps.orig_dst_errors));
	json_object_object_add(px, "tunnelled", json_object_new_uint64(ps.tunnelled));
	json_object_object_add(px, "accept_no_fd", json_object_new_uint64(ps.accept_no_fd));
	json_object_object_add(o, "proxy", px);
	json_object_object_add(o, "tunnel", status_tunnel(d));
	json_object_object_add(o, "cluster", sm_cluster_status(d)); /* null in file mode */
	json_object_object_add(o, "workers", status_workers(d));
	{
		struct sm_error perr = {{0}};
		bool handled;

		json_object_object_add(
			o, "policy",
			sm_policy_command(d, "policy_status", NULL, false, &handled, &perr));
	}
	json_object_object_add(fl, "records", json_object_new_uint64(sm_flowexp_records(d)));
	json_object_object_add(fl, "lost_records",
			       json_object_new_uint64(sm_flowexp_lost_records(d)));
	{
		uint64_t waited, expired;

		sm_flowexp_wait_stats(d, &waited, &expired);
		json_object_object_add(fl, "waited", json_object_new_uint64(waited));
		json_object_object_add(fl, "waited_expired", json_object_new_uint64(expired));
	}
	{
		/* the sinks (sinks.c): what they left out, dropped and did with the file */
		struct sm_sinks_stats ss;

		sm_flowexp_sink_stats(d, &ss);
		json_object_object_add(fl, "filtered", json_object_new_uint64(ss.filtered));
		json_object_object_add(fl, "rate_limited", json_object_new_uint64(ss.rate_limited));
		json_object_object_add(fl, "queue_dropped",
				       json_object_new_uint64(ss.queue_dropped));
		json_object_object_add(fl, "queued", json_object_new_uint64(ss.queued));
		json_object_object_add(fl, "write_errors", json_object_new_uint64(ss.write_errors));
		json_object_object_add(fl, "write_failed", json_object_new_uint64(ss.write_failed));
		json_object_object_add(fl, "rotations", json_object_new_uint64(ss.rotations));
		json_object_object_add(fl, "compressed", json_object_new_uint64(ss.compressed));
		json_object_object_add(fl, "compress_errors",
				       json_object_new_uint64(ss.compress_errors));
	}
	json_object_object_add(fl, "stream", sm_flowstream_status(d));
	json_object_object_add(o, "flows", fl);
	json_object_object_add(o, "control", status_control(d->control));
	return o;
}

static json_object *cmd_workloads(struct sm_daemon *d)
{
	json_object *arr = json_object_new_array();

	sm_workloads_refresh(d->wl, &d->cat, d->node_idx,
			     d->cgroup_root); /* the cgroup ids as they are now */

	for (unsigned int i = 0; i < d->cat.nworkloads; i++) {
		const struct sm_workload_def *w = &d->cat.workloads[i];
		json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(w->name));
		json_object_object_add(o, "spiffe_id", json_object_new_string(w->spiffe_id));
		json_object_object_add(o, "identity", json_object_new_int64(w->identity));
		json_object_object_add(o, "node",
				       json_object_new_string(d->cat.nodes[w->node].name));
		json_object_object_add(
			o, "local", json_object_new_boolean(w->node == (unsigned int) d->node_idx));
		json_object_object_add(o, "cgroup", json_object_new_string(w->cgroup));
		/* the systemd unit (and slice) the cgroup was computed from, null for a path */
		json_object_object_add(o, "unit",
				       w->unit[0] ? json_object_new_string(w->unit) : NULL);
		json_object_object_add(o, "slice",
				       w->slice[0] ? json_object_new_string(w->slice) : NULL);
		json_object_object_add(o, "cgroup_id",
				       json_object_new_uint64(sm_workloads_cgroup(d->wl, (int) i)));
		json_object_object_add(o, "mode",
				       json_object_new_string(w->mode == SM_MODE_STRICT
								      ? "STRICT"
								      : "PERMISSIVE"));
		/* local workloads are enrolled by path: whether their cgroup exists now or not */
		json_object_object_add(
			o, "enrolled",
			json_object_new_boolean(w->node == (unsigned int) d->node_idx &&
						d->natt > 0));
		json_object_array_add(arr, o);
	}
	return arr;
}

static json_object *cmd_services(struct sm_daemon *d)
{
	json_object *arr = json_object_new_array();
	char buf[INET6_ADDRSTRLEN];

	for (unsigned int i = 0; i < d->cat.nservices; i++) {
		const struct sm_service_def *s = &d->cat.services[i];
		const struct sm_workload_def *w = &d->cat.workloads[s->workload];
		json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(s->name));
		json_object_object_add(
			o, "address",
			json_object_new_string(sm_addr_format(&s->addr, buf, sizeof(buf))));
		json_object_object_add(o, "port", json_object_new_int(s->port));
		json_object_object_add(o, "workload", json_object_new_string(w->name));
		json_object_object_add(o, "spiffe_id", json_object_new_string(w->spiffe_id));
		json_object_object_add(o, "identity", json_object_new_int64(w->identity));
		json_object_object_add(o, "node",
				       json_object_new_string(d->cat.nodes[w->node].name));
		json_object_object_add(
			o, "remote",
			json_object_new_boolean(w->node != (unsigned int) d->node_idx));
		json_object_array_add(arr, o);
	}
	return arr;
}

/* ---- clients ---- */

static void client_close(struct ctl_client *c, const char *why)
{
	struct sm_control *ctl = c->ctl;

	pr_debug("control client %s", why);
	sm_evloop_del(ctl->d->loop, c->ev);
	if (c->fd >= 0)
		close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ctl->nclients--;
	free(c->in);
	free(c->out);
	free(c);
}

/* May this client change things (the policy)? root, or the daemon's own user. */
static bool client_privileged(int fd)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return false;
	return uc.uid == 0 || uc.uid == geteuid();
}

/* Send what c's socket takes now; c is closed (freed) once all went out or it is gone. */
static void client_flush(struct ctl_client *c)
{
	for (int round = 0; round < CTL_IO_ROUNDS; round++) {
		ssize_t n;

		if (c->out_off == c->out_len) {
			client_close(c, "answered");
			return;
		}
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t) n;
			c->progress_ms = sm_mono_ms();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		client_close(c, "went away before reading its answer");
		return;
	}
	/* the rest when the socket takes it (or the client is closed as idle) */
	if (sm_evloop_mod(c->ctl->d->loop, c->ev, EPOLLOUT))
		client_close(c, "could not be watched");
}

/* Answer data, or err's message when data is NULL; c may be freed on return. */
static void client_answer(struct ctl_client *c, json_object *data, const struct sm_error *err)
{
	c->writing = true;
	c->out = sm_ctl_format_response(data, data ? NULL : err->msg);
	if (!c->out) {
		client_close(c, "could not be answered (out of memory)");
		return;
	}
	c->out_len = strlen(c->out);
	client_flush(c);
}

static void on_client(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg);

/*
 * c's request line is complete (c->in): run the command, answer. The command
 * runs on the loop, but only now, with the whole request in memory, and its
 * answer is sent without waiting: no command waits on a client's I/O.
 * c may be freed on return.
 */
static void client_serve(struct ctl_client *c)
{
	struct sm_daemon *d = c->ctl->d;
	struct sm_error err = {{0}};
	json_object *data = NULL, *args = NULL;
	bool handled = false;
	char cmd[SM_CTL_CMD_MAX];

	c->writing = true;
	if (sm_ctl_parse_request_args(c->in, cmd, sizeof(cmd), &args, &err) == 0) {
		if (strcmp(cmd, "status") == 0) {
			data = cmd_status(d);
		} else if (strcmp(cmd, "workloads") == 0) {
			data = cmd_workloads(d);
		} else if (strcmp(cmd, "services") == 0) {
			data = cmd_services(d);
		} else if (strcmp(cmd, "flows") == 0) {
			/* the stream watches the socket itself from now on */
			sm_evloop_del(d->loop, c->ev);
			c->ev = NULL;
			if (sm_flowstream_command(d, c->fd, args, &err) == 0) {
				json_object_put(args);
				c->fd = -1;
				client_close(c, "handed to the flow stream");
				return;
			}
			/* refused: err says why, and goes out like any answer */
			c->ev = sm_evloop_add(d->loop, c->fd, EPOLLOUT, on_client, c);
			if (!c->ev) {
				json_object_put(args);
				client_close(c, "could not be watched");
				return;
			}
		} else {
			data = sm_policy_command(d, cmd, args, client_privileged(c->fd), &handled,
						 &err);
		}
		if (!data && !handled && !err.msg[0])
			sm_error_set(&err,
				     "unknown command '%s' (try: status, workloads, services, "
				     "flows, policy_*)",
				     cmd);
	}
	json_object_put(args);
	free(c->in); /* up to SM_CTL_MAX_REQUEST bytes, not needed any more */
	c->in = NULL;
	c->in_len = c->in_cap = 0;
	client_answer(c, data, &err);
	json_object_put(data);
	/*
	 * A policy request may have parsed, compiled and diffed a large set and
	 * answered with a large document: give the freed heap back to the
	 * system rather than keep the peak resident for the daemon's life.
	 */
	if (handled)
		malloc_trim(0);
}

/* Grow c's request buffer. 0, -EMSGSIZE (SM_CTL_MAX_REQUEST reached) or -ENOMEM. */
static int client_grow(struct ctl_client *c)
{
	size_t cap = c->in_cap ? c->in_cap * 2 : CTL_FIRST_BUF;
	char *grown;

	if (c->in_cap >= SM_CTL_MAX_REQUEST)
		return -EMSGSIZE;
	if (cap > SM_CTL_MAX_REQUEST)
		cap = SM_CTL_MAX_REQUEST;
	grown = realloc(c->in, cap + 1);
	if (!grown)
		return -ENOMEM;
	c->in = grown;
	c->in_cap = cap;
	return 0;
}

/* Take what c sent; serve it once the line is complete. c may be freed on return. */
static void client_read(struct ctl_client *c)
{
	struct sm_error err = {{0}};

	for (int round = 0; round < CTL_IO_ROUNDS; round++) {
		ssize_t n;
		char *nl;
		int ret;

		if (c->in_len == c->in_cap) {
			ret = client_grow(c);
			if (ret == -EMSGSIZE) {
				sm_error_set(&err,
					     "request too long: more than %u bytes without a "
					     "newline (a request is one JSON line)",
					     SM_CTL_MAX_REQUEST);
				client_answer(c, NULL, &err);
				return;
			}
			if (ret) {
				client_close(c, "could not be read (out of memory)");
				return;
			}
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n > 0) {
			nl = memchr(c->in + c->in_len, '\n', (size_t) n);
			c->in_len += (size_t) n;
			c->progress_ms = sm_mono_ms();
			if (nl) {
				nl[1] = '\0'; /* one request per connection: the rest is ignored */
				client_serve(c);
				return;
			}
			continue;
		}
		if (n == 0) {
			/* the client shut its sending side: what it sent is its request */
			if (!c->in_len) {
				client_close(c, "left without a request");
				return;
			}
			c->in[c->in_len] = '\0';
			client_serve(c);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			client_close(c, "failed");
		return;
	}
}

static void on_client(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct ctl_client *c = arg;

	(void) loop;
	(void) ev;
	(void) events; /* a hang-up or an error shows in the recv() or send() */
	if (c->writing)
		client_flush(c);
	else
		client_read(c);
}

/* One more than control.max_clients: an error line (it fits any socket buffer), closed. */
static void refuse(struct sm_control *ctl, int fd)
{
	const struct sm_config *cfg = &ctl->d->cfg;
	struct sm_error err = {{0}};
	char *line;

	sm_error_set(&err,
		     "%u control clients are connected already, the most this daemon serves at "
		     "once (control.max_clients): try again; a client that sends or reads "
		     "nothing is closed after %u s (control.idle_timeout)",
		     cfg->control_max_clients, cfg->control_idle_timeout);
	line = sm_ctl_format_response(NULL, err.msg);
	if (line && send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		pr_debug("control socket: a refused client went away: %s", strerror(errno));
	free(line);
	close(fd);
	ctl->refused++;
}

static int client_add(struct sm_control *ctl, int fd)
{
	struct ctl_client *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->ctl = ctl;
	c->fd = fd;
	c->progress_ms = sm_mono_ms();
	c->ev = sm_evloop_add(ctl->d->loop, fd, EPOLLIN, on_client, c);
	if (!c->ev) {
		int err = -errno;

		free(c);
		return err;
	}
	c->next = ctl->clients;
	if (ctl->clients)
		ctl->clients->prev = c;
	ctl->clients = c;
	ctl->nclients++;
	return 0;
}

static void on_listen(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_control *ctl = arg;

	(void) events;
	for (int i = 0; i < CTL_ACCEPT_BATCH; i++) {
		int fd = accept4(ctl->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), err;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE and friends: the listener stays readable; rest, or spin */
			pr_warn("control socket %s: cannot accept a client: %s (not accepting for "
				"a second; raise the daemon's open-file limit, LimitNOFILE)",
				ctl->d->cfg.control_socket, strerror(errno));
			ctl->accept_paused = true;
			sm_evloop_mod(loop, ev, 0);
			return;
		}
		if (ctl->nclients >= ctl->d->cfg.control_max_clients) {
			refuse(ctl, fd);
			continue;
		}
		err = client_add(ctl, fd);
		if (err) {
			pr_warn("control socket %s: cannot serve a client: %s",
				ctl->d->cfg.control_socket, strerror(-err));
			close(fd);
		}
	}
}

/* Close the clients idle for control.idle_timeout; accept again; log refusals. */
static void on_tick(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_control *ctl = arg;
	const struct sm_config *cfg = &ctl->d->cfg;
	int64_t now = sm_mono_ms(), idle = (int64_t) cfg->control_idle_timeout * 1000;
	struct ctl_client *c, *next;

	(void) ev;
	(void) events;
	for (c = ctl->clients; c; c = next) {
		next = c->next;
		if (now - c->progress_ms < idle)
			continue;
		ctl->timed_out++;
		client_close(c, c->writing ? "closed: it read nothing of its answer for "
					     "control.idle_timeout"
					   : "closed: it sent no request for control.idle_timeout");
	}
	if (ctl->accept_paused && ctl->listen_ev &&
	    sm_evloop_mod(loop, ctl->listen_ev, EPOLLIN) == 0)
		ctl->accept_paused = false;
	if (ctl->refused != ctl->refused_logged &&
	    now - ctl->refused_log_ms >= CTL_REFUSED_LOG_MS) {
		pr_warn("control socket %s: refused %llu clients: %u were connected already "
			"(control.max_clients; `ss -xp` shows who holds them)",
			cfg->control_socket,
			(unsigned long long) (ctl->refused - ctl->refused_logged),
			cfg->control_max_clients);
		ctl->refused_logged = ctl->refused;
		ctl->refused_log_ms = now;
	}
}

int sm_control_start(struct sm_daemon *d)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = d->cfg.control_socket;
	char dir[PATH_MAX], *slash;
	struct sm_control *ctl;
	int err;

	if (sm_strlcpy(sa.sun_path, path, sizeof(sa.sun_path))) {
		pr_err("control socket path %s is too long (at most %zu bytes)", path,
		       sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	sm_strlcpy(dir, path, sizeof(dir));
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			pr_warn("cannot create %s: %s", dir, strerror(errno));
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->d = d;
	/* an upgrade's predecessor's socket: its clients are never turned away meanwhile */
	ctl->fd = sm_handoff_take_unix(path);
	if (ctl->fd >= 0) {
		int fl = fcntl(ctl->fd, F_GETFL);

		if (fl < 0 || fcntl(ctl->fd, F_SETFL, fl | O_NONBLOCK) < 0)
			pr_warn("control socket %s: cannot make it non-blocking: %s", path,
				strerror(errno));
		goto watch;
	}
	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd < 0) {
		err = -errno;
		goto free_ctl;
	}
	unlink(path); /* a stale socket of a previous daemon */
	if (bind(ctl->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(ctl->fd, CTL_BACKLOG) < 0) {
		err = -errno;
		pr_err("cannot listen on control socket %s: %s", path, strerror(-err));
		goto close_fd;
	}
watch:
	ctl->listen_ev = sm_evloop_add(d->loop, ctl->fd, EPOLLIN, on_listen, ctl);
	if (!ctl->listen_ev) {
		err = -errno;
		goto close_fd;
	}
	ctl->tick = sm_evloop_timer(d->loop, CTL_TICK_MS, on_tick, ctl);
	if (!ctl->tick) {
		err = -errno;
		goto del_listen;
	}
	d->control = ctl;
	return 0;
del_listen:
	sm_evloop_del(d->loop, ctl->listen_ev);
close_fd:
	close(ctl->fd);
free_ctl:
	free(ctl);
	return err;
}

void sm_control_stop(struct sm_daemon *d)
{
	struct sm_control *ctl = d->control;

	if (!ctl)
		return;
	for (struct ctl_client *c = ctl->clients, *next; c; c = next) {
		next = c->next;
		client_close(c, "closed: the daemon stops");
	}
	sm_evloop_del(d->loop, ctl->tick);
	sm_control_stop_accepting(d);
	/* after an upgrade the path is the successor's socket */
	if (!d->handed_off)
		unlink(d->cfg.control_socket);
	d->control = NULL;
	free(ctl);
}

int sm_control_listen_fd(const struct sm_daemon *d)
{
	return d->control ? d->control->fd : -1;
}

void sm_control_stop_accepting(struct sm_daemon *d)
{
	struct sm_control *ctl = d->control;

	if (!ctl || ctl->fd < 0)
		return;
	sm_evloop_del(d->loop, ctl->listen_ev);
	ctl->listen_ev = NULL;
	close(ctl->fd);
	ctl->fd = -1;
}
