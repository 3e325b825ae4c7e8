// SPDX-License-Identifier: Apache-2.0
/*
 * The control socket (docs/interfaces.md): a Unix stream socket, mode 0600,
 * one JSON request line in, one JSON answer line out (except "flows", whose
 * client is handed to the flow stream, flowstream.c). Clients are served on
 * the event loop: a client gets SM_CONTROL_TIMEOUT_MS to send its line, so a
 * stalled client cannot hold the daemon.
 */
#include <errno.h>
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

#include "ctl.h"
#include "daemon.h"
#include "log.h"
#include "sockmesh.skel.h"

#include <sockmesh/common.h>

#define SM_CONTROL_TIMEOUT_MS 2000

static const char *const counter_names[] = SM_COUNTER_NAMES;
_Static_assert(SM_ARRAY_SIZE(counter_names) == SM_CNT_MAX, "a counter has no name");

static const char *map_type_name(enum bpf_map_type t)
{
	const char *n = libbpf_bpf_map_type_str(t);

	return n ? n : "unknown";
}

/* Entries of a hash/LPM/array map by walking its keys; -1 where not countable. */
static long long map_entries(struct bpf_map *map)
{
	enum bpf_map_type t = bpf_map__type(map);
	uint8_t key[128], next[128];
	void *prev = NULL;
	long long n = 0;
	int fd = bpf_map__fd(map);

	/* arrays are always full and ring buffers/storage have no keys: no fill level */
	if (t == BPF_MAP_TYPE_RINGBUF || t == BPF_MAP_TYPE_SK_STORAGE || t == BPF_MAP_TYPE_ARRAY ||
	    t == BPF_MAP_TYPE_PERCPU_ARRAY || bpf_map__key_size(map) > sizeof(key))
		return -1;
	while (bpf_map_get_next_key(fd, prev, next) == 0 && n < 100000000) {
		memcpy(key, next, bpf_map__key_size(map));
		prev = key;
		n++;
	}
	return n;
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

static json_object *status_maps(struct sm_daemon *d)
{
	json_object *arr = json_object_new_array();
	struct bpf_map *map;

	bpf_object__for_each_map (map, d->skel->obj) {
		json_object *o;

		if (!bpf_map__is_pinned(map))
			continue; /* .rodata and friends */
		o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(bpf_map__name(map)));
		json_object_object_add(o, "type",
				       json_object_new_string(map_type_name(bpf_map__type(map))));
		json_object_object_add(o, "entries", json_object_new_int64(map_entries(map)));
		json_object_object_add(o, "max_entries",
				       json_object_new_int64(bpf_map__max_entries(map)));
		json_object_array_add(arr, o);
	}
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
		json_object_array_add(arr, o);
	}
	return arr;
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
	json_object_object_add(o, "proxy", px);
	json_object_object_add(o, "tunnel", status_tunnel(d));
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
		/* the sinks (sinks.c): what they left out, dropped and did with the file */
		struct sm_sinks_stats ss;

		sm_flowexp_sink_stats(d, &ss);
		json_object_object_add(fl, "filtered", json_object_new_uint64(ss.filtered));
		json_object_object_add(fl, "rate_limited", json_object_new_uint64(ss.rate_limited));
		json_object_object_add(fl, "queue_dropped",
				       json_object_new_uint64(ss.queue_dropped));
		json_object_object_add(fl, "queued", json_object_new_uint64(ss.queued));
		json_object_object_add(fl, "write_errors", json_object_new_uint64(ss.write_errors));
		json_object_object_add(fl, "rotations", json_object_new_uint64(ss.rotations));
		json_object_object_add(fl, "compressed", json_object_new_uint64(ss.compressed));
		json_object_object_add(fl, "compress_errors",
				       json_object_new_uint64(ss.compress_errors));
	}
	json_object_object_add(fl, "stream", sm_flowstream_status(d));
	json_object_object_add(o, "flows", fl);
	return o;
}

static json_object *cmd_workloads(struct sm_daemon *d)
{
	json_object *arr = json_object_new_array();

	sm_intercept_refresh(d); /* the cgroup ids as they are now */

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
		json_object_object_add(o, "cgroup_id", json_object_new_uint64(d->wl[i].cgroup_id));
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

/* Read one request line (up to SM_CTL_MAX_REQUEST); malloc'ed, NULL when out of memory. */
static char *read_request(int fd)
{
	size_t got = 0, cap = 4096;
	char *line = malloc(cap + 1), *grown;

	if (!line)
		return NULL;
	/* SO_RCVTIMEO bounds a stalled client */
	while (got < SM_CTL_MAX_REQUEST) {
		ssize_t n;

		if (got == cap) {
			cap = cap * 2 > SM_CTL_MAX_REQUEST ? SM_CTL_MAX_REQUEST : cap * 2;
			grown = realloc(line, cap + 1);
			if (!grown)
				break;
			line = grown;
		}
		n = recv(fd, line + got, cap - got, 0);
		if (n <= 0)
			break;
		got += (size_t) n;
		if (memchr(line + got - (size_t) n, '\n', (size_t) n))
			break;
	}
	line[got] = '\0';
	return line;
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

/* Answer one request on fd. Returns true when fd was handed over (the flow stream's now). */
static bool serve(struct sm_daemon *d, int fd)
{
	struct sm_error err = {{0}};
	json_object *data = NULL, *args = NULL;
	char *line = read_request(fd), cmd[64];
	bool handled = false, taken = false;
	char *answer;

	if (!line) {
		sm_error_set(&err, "out of memory reading the request");
	} else if (sm_ctl_parse_request_args(line, cmd, sizeof(cmd), &args, &err) == 0) {
		if (strcmp(cmd, "status") == 0)
			data = cmd_status(d);
		else if (strcmp(cmd, "workloads") == 0)
			data = cmd_workloads(d);
		else if (strcmp(cmd, "services") == 0)
			data = cmd_services(d);
		else if (strcmp(cmd, "flows") == 0)
			/* 0: the stream answers and serves fd from the event loop */
			taken = sm_flowstream_command(d, fd, args, &err) == 0;
		else
			data = sm_policy_command(d, cmd, args, client_privileged(fd), &handled,
						 &err);
		if (!taken && !data && !handled && !err.msg[0])
			sm_error_set(&err,
				     "unknown command '%s' (try: status, workloads, services, "
				     "flows, policy_*)",
				     cmd);
	}
	free(line);
	json_object_put(args);
	if (taken)
		return true;
	answer = sm_ctl_format_response(data, data ? NULL : err.msg);
	if (answer) {
		size_t len = strlen(answer), off = 0;

		while (off < len) {
			ssize_t n = send(fd, answer + off, len - off, MSG_NOSIGNAL);

			if (n <= 0)
				break;
			off += (size_t) n;
		}
		free(answer);
	}
	json_object_put(data);
	/*
	 * A policy request may have parsed, compiled and diffed a large set and
	 * answered with a large document: give the freed heap back to the
	 * system rather than keep the peak resident for the daemon's life.
	 */
	if (handled)
		malloc_trim(0);
	return false;
}

static void on_control(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	struct timeval tv = {SM_CONTROL_TIMEOUT_MS / 1000, (SM_CONTROL_TIMEOUT_MS % 1000) * 1000};

	(void) loop;
	(void) ev;
	(void) events;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(d->ctl_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			return;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (!serve(d, fd))
			close(fd);
	}
}

int sm_control_start(struct sm_daemon *d)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = d->cfg.control_socket;
	char dir[PATH_MAX], *slash;
	int fd, err;

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
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path); /* a stale socket of a previous daemon */
	if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 64) < 0) {
		err = -errno;
		pr_err("cannot listen on control socket %s: %s", path, strerror(-err));
		close(fd);
		return err;
	}
	d->ctl_fd = fd;
	d->ctl_ev = sm_evloop_add(d->loop, fd, EPOLLIN, on_control, d);
	if (!d->ctl_ev) {
		err = -errno;
		close(fd);
		d->ctl_fd = -1;
		return err;
	}
	return 0;
}

void sm_control_stop(struct sm_daemon *d)
{
	if (d->ctl_fd < 0)
		return;
	sm_evloop_del(d->loop, d->ctl_ev);
	close(d->ctl_fd);
	unlink(d->cfg.control_socket);
	d->ctl_fd = -1;
}
