// SPDX-License-Identifier: Apache-2.0
/*
 * Flow export: consume struct sm_flow_event from the flow_events ring buffer,
 * join each with what the catalog says (SPIFFE IDs, workload names), compute
 * per-connection deltas, and hand each record to the sinks (sinks.c: file
 * and/or stdout). Loss is never silent: when the kernel's loss counters
 * move, a "lost" record carries the difference. The last reported loss
 * counts are kept in the pinned lost_reported map, so a restarted daemon
 * reports what was lost while it was away.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <uthash.h>

#include "catalog.h"
#include "config.h"
#include "daemon.h"
#include "datapath.h"
#include "drop_reason.h"
#include "evloop.h"
#include "flow_record.h"
#include "flowacct.h"
#include "flowobs.h"
#include "flowstream.h"
#include "flowjoin.h"
#include "handoff.h"
#include "log.h"
#include "policy.h"
#include "policyd.h"
#include "sinks.h"
#include "sockmesh.skel.h"
#include "tunnelfacts.h"
#include "util.h"
#include "worker.h"
#include "workloads.h"

#include "sockmesh/flowacct.h"
#include "sockmesh/intercept.h"

/*
 * One drain of the ring buffer takes at most this long (wall clock), then
 * the loop serves its timers and sockets before the drain goes on: producers
 * on many CPUs can refill the ring as fast as one thread empties it, and a
 * drain that never returned would hold back the lost records, the control
 * socket and everything else the main loop does.
 */
#define FLOW_DRAIN_BUDGET_NS (20 * 1000000LL)
/* The callback's answer when the budget is spent: libbpf stops, the event consumed. */
#define FLOW_DRAIN_PAUSE (-EAGAIN)
/*
 * Events whose record waits for the tunnel's join (flow_wait_retry()): at
 * most this many, each at most this long. A worker writes the entry a few
 * microseconds after its connect() returns; the bound is for a worker that
 * does not run (a starved or stopped thread), not for the common case.
 */
#define FLOW_WAIT_MAX	 1024
#define FLOW_WAIT_MAX_NS (5 * 1000000000LL)

/* What the daemon remembers of a live connection: its last reported totals. */
struct flow_state {
	uint64_t cookie;
	struct sm_flow_counters last;
	UT_hash_handle hh;
};

/* An event read from the ring whose record is not written yet: see flow_wait_retry(). */
struct flow_wait {
	struct sm_flow_event ev;
	int64_t since_ns; /* CLOCK_MONOTONIC, when it was read */
};

struct sm_flowexp {
	struct ring_buffer *rb;
	struct sm_ev *rb_ev;
	struct sm_ev *drain_ev;
	int more_fd; /* eventfd: a drain stopped at its budget, with events left */
	struct sm_ev *more_ev;
	int64_t drain_deadline; /* CLOCK_MONOTONIC ns: when the current drain stops */
	struct flow_state *flows;
	/* in the order read; each cookie's events stay in order (main thread only) */
	struct flow_wait *waiting;
	size_t nwaiting;
	/* events that waited; of them, written without the join (bound or full queue) */
	uint64_t waited, waited_expired;
	/*
	 * The main thread and the workers (their own records) emit; each
	 * consumer (sinks, stream, metrics) locks what it shares itself.
	 */
	struct sm_sinks *sinks;
	uint64_t lost_records;
	/*
	 * An upgrade's successor until its predecessor is gone (handoff.c):
	 * the sinks are not open yet, so records wait here (hold_mu), at most
	 * FLOW_HOLD_MAX, then go to the sinks in the order made.
	 */
	bool holding; /* atomic */
	pthread_mutex_t hold_mu;
	struct sm_flow_record *held;
	size_t nheld, held_lost;
};

/* Records an upgrade's successor keeps while its predecessor drains (about 5 s). */
#define FLOW_HOLD_MAX 65536

void sm_flowexp_emit(struct sm_daemon *d, const struct sm_flow_record *r)
{
	const char *json = NULL;
	size_t len;

	sm_flow_observe(d, r); /* every record, whatever the sinks then keep */
	if (d->stream) {
		/*
		 * The live stream gets every record whole (its clients filter for
		 * themselves); the sinks reuse the encoding unless they mask. Both
		 * copy the line out of this thread's buffer before anything here
		 * encodes again.
		 */
		json = sm_flow_record_line(r, &len);
		if (json)
			sm_flowstream_publish(d, r, json); /* a copy, no I/O */
	}
	if (d->flows && __atomic_load_n(&d->flows->holding, __ATOMIC_ACQUIRE)) {
		struct sm_flowexp *fx = d->flows;
		bool held = false;

		pthread_mutex_lock(&fx->hold_mu);
		if (fx->holding) {
			if (fx->nheld < FLOW_HOLD_MAX && fx->held)
				fx->held[fx->nheld++] = *r;
			else
				fx->held_lost++;
			held = true;
		}
		pthread_mutex_unlock(&fx->hold_mu);
		if (held)
			return;
	}
	/* filtered, limited and encoded on this thread, then queued: never waits for a disk */
	if (d->flows && d->flows->sinks)
		sm_sinks_write(d->flows->sinks, r, json);
}

static void endpoint_fill(const struct sm_daemon *d, struct sm_flow_endpoint *ep, uint8_t family,
			  const uint8_t *addr, uint16_t port_be, uint32_t identity, int wl_hint)
{
	int wl = wl_hint;

	memset(ep, 0, sizeof(*ep));
	ep->addr.family = family == SM_AF_INET6 ? AF_INET6 : AF_INET;
	memcpy(ep->addr.bytes, addr, 16);
	ep->port = ntohs(port_be);
	ep->identity = identity;
	if (wl < 0 && identity >= SM_ID_FIRST_ALLOCATED)
		wl = sm_catalog_workload_by_identity(&d->cat, identity);
	if (wl >= 0)
		sm_workload_endpoint(&d->cat, wl, ep);
}

/* The workload behind a service address:port, for naming the destination. */
static int service_workload(const struct sm_daemon *d, uint8_t family, const uint8_t *addr,
			    uint16_t port_be)
{
	struct sm_addr a = {.family = family == SM_AF_INET6 ? AF_INET6 : AF_INET};
	int svc;

	memcpy(a.bytes, addr, a.family == AF_INET ? 4 : 16);
	svc = sm_catalog_service_at(&d->cat, &a, ntohs(port_be));
	return svc >= 0 ? (int) d->cat.services[svc].workload : -1;
}

static void counters_sub(struct sm_flow_counters *out, const struct sm_flow_counters *a,
			 const struct sm_flow_counters *b)
{
	out->bytes_sent = a->bytes_sent - b->bytes_sent;
	out->bytes_received = a->bytes_received - b->bytes_received;
	out->segs_in = a->segs_in - b->segs_in;
	out->segs_out = a->segs_out - b->segs_out;
}

/*
 * The tls block of a connection accepted in plaintext from another host
 * (SM_SK_F_PLAINTEXT): the accepting workload's mode, not encrypted. Only
 * those records get it here; tunnelled connections get theirs elsewhere.
 */
static void plaintext_tls(const struct sm_daemon *d, const struct sm_flow_event *ev, int self_wl,
			  struct sm_flow_tls *tls)
{
	int wl = self_wl >= 0 ? self_wl : sm_catalog_workload_by_identity(&d->cat, ev->identity);

	tls->present = true;
	tls->encrypted = false;
	if (wl >= 0) /* a workload gone from the catalog: mode unknown, omitted */
		sm_strlcpy(tls->mode,
			   d->cat.workloads[wl].mode == SM_MODE_STRICT ? "STRICT" : "PERMISSIVE",
			   sizeof(tls->mode));
}

/*
 * The tls block of a captured connection the tunnel has not taken yet: its
 * conn_start is often read before a worker has accepted the socket. With
 * tunnel.hbone a captured connection goes inside mTLS or nowhere (proxy.c),
 * so its first record says so already, as the tunnel's own would; without
 * this the connection's metrics would be opened under "none" (docs/metrics.md).
 */
static void tunnel_tls(const struct sm_daemon *d, int self_wl, struct sm_flow_tls *tls)
{
	tls->present = true;
	tls->encrypted = true;
	if (self_wl >= 0)
		sm_strlcpy(tls->mode,
			   d->cat.workloads[self_wl].mode == SM_MODE_STRICT ? "STRICT"
									    : "PERMISSIVE",
			   sizeof(tls->mode));
}

/* Fill r from what the tunnel put in a join (flowjoin.h). */
static void join_apply(struct sm_daemon *d, const struct sm_flowjoin *j, bool final,
		       struct sm_flow_record *r)
{
	int wl;

	r->tls = j->tls;
	/* the mode is the local workload's: the caller's outbound, the service's inbound */
	wl = sm_workloads_by_cgroup(d->wl, r->cgroup_id);
	if (wl >= 0)
		sm_strlcpy(r->tls.mode,
			   d->cat.workloads[wl].mode == SM_MODE_STRICT ? "STRICT" : "PERMISSIVE",
			   sizeof(r->tls.mode));
	sm_strlcpy(r->trace_id, j->trace, sizeof(r->trace_id));
	if (j->inbound && j->peer_identity) {
		/* the kernel saw the daemon connect; the certificate says who called */
		int peer = sm_catalog_workload_by_identity(&d->cat, j->peer_identity);

		r->source.identity = j->peer_identity;
		r->source.spiffe_id = j->tls.peer_spiffe_id;
		r->source.workload = sm_intern(j->peer_workload);
		if (peer >= 0)
			sm_workload_endpoint(&d->cat, peer, &r->source);
	}
	if (final && j->failure[0]) {
		r->verdict = SM_VERDICT_DROPPED;
		sm_strlcpy(r->drop_reason, j->failure, sizeof(r->drop_reason));
		if (j->policy.present)
			r->policy = j->policy;
	}
}

/*
 * Add what the tunnel knows (tls block, trace id, the verified caller) to the
 * record of a workload socket whose far end is key_addr:key_port; final (a
 * conn_end) forgets it. Looks through every worker's join table; false when
 * none has it, and then *expected says whether a worker is connecting a
 * socket whose entry is not written yet (flowjoin.h), which may be this one.
 */
static bool tunnel_join(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
			bool final, struct sm_flow_record *r, bool *expected)
{
	struct sm_flowjoin j;

	*expected = false;
	if (!d->hbone)
		return false;
	for (unsigned int i = 0; d->workers && i < d->nworkers; i++) {
		struct sm_flowjoins *t = d->workers[i].joins;
		bool e = false;

		if (t && sm_flowjoins_take(t, key_addr, key_port, final, &j, &e)) {
			join_apply(d, &j, final, r);
			return true;
		}
		*expected |= e;
	}
	return false;
}

/*
 * The record of a socket's event, into r: true. False, with nothing changed,
 * when may_wait and the record should wait for the tunnel's join: an accepted
 * socket whose caller connected from this host (the daemon relays from here)
 * has no entry yet, but a worker is connecting one (hbone_h2.c). Written now,
 * it would name no caller, and the connection's metrics would stay under
 * that label set (docs/metrics.md).
 */
static bool record_from_event(struct sm_daemon *d, const struct sm_flow_event *ev,
			      struct sm_flow_record *r, bool may_wait)
{
	bool passive = ev->flags & SM_SK_F_PASSIVE;
	int self_wl = sm_workloads_by_cgroup(d->wl, ev->cgroup_id);
	struct flow_state *fs = NULL;

	memset(r, 0, sizeof(*r));
	r->type = ev->type == SM_FLOW_START    ? SM_REC_CONN_START
		  : ev->type == SM_FLOW_UPDATE ? SM_REC_CONN_UPDATE
					       : SM_REC_CONN_END;
	r->time_ns = (int64_t) ev->ts_ns + d->mono_to_real_ns;
	r->start_ns = (int64_t) ev->start_ns + d->mono_to_real_ns;
	r->duration_us = (ev->ts_ns - ev->start_ns) / 1000;
	sm_strlcpy(r->node, d->cat.nodes[d->node_idx].name, sizeof(r->node));
	r->verdict = SM_VERDICT_FORWARDED;
	r->captured = ev->flags & SM_SK_F_CAPTURED;
	r->same_node = ev->flags & SM_SK_F_SAME_NODE;
	r->redirected = ev->flags & SM_SK_F_IN_SOCKHASH;
	r->cookie = ev->cookie;
	r->cgroup_id = ev->cgroup_id;

	if (passive) {
		r->direction = SM_DIR_INGRESS;
		endpoint_fill(d, &r->source, ev->family, ev->remote_addr, ev->remote_port,
			      ev->peer_identity, -1);
		endpoint_fill(d, &r->destination, ev->family, ev->local_addr, ev->local_port,
			      ev->identity, self_wl);
	} else {
		r->direction = SM_DIR_EGRESS;
		endpoint_fill(d, &r->source, ev->family, ev->local_addr, ev->local_port,
			      ev->identity, self_wl);
		if (ev->orig_family)
			endpoint_fill(
				d, &r->destination, ev->orig_family, ev->orig_addr, ev->orig_port,
				ev->peer_identity,
				service_workload(d, ev->orig_family, ev->orig_addr, ev->orig_port));
		else
			endpoint_fill(
				d, &r->destination, ev->family, ev->remote_addr, ev->remote_port,
				ev->peer_identity,
				service_workload(d, ev->family, ev->remote_addr, ev->remote_port));
	}

	if (ev->flags & SM_SK_F_PLAINTEXT)
		plaintext_tls(d, ev, self_wl, &r->tls);

	r->total.bytes_sent = ev->bytes_acked + ev->redirected_tx;
	r->total.bytes_received = ev->bytes_received + ev->redirected_rx;
	r->total.segs_in = ev->segs_in;
	r->total.segs_out = ev->segs_out;
	r->redirected_bytes = ev->redirected_tx;
	r->srtt_us = ev->srtt_us;
	r->total_retrans = ev->total_retrans;

	/*
	 * A tunnelled socket: the tunnel knows its TLS details and the real
	 * caller. Not an accepted socket whose caller is a workload on this node
	 * (SM_SK_F_SAME_NODE): no tunnel carried that one, and asking costs a
	 * map lookup (a system call) per event.
	 */
	if (r->captured || (passive && !r->same_node)) {
		/* keyed by the socket's far end (EGRESS: our client side, INGRESS: the caller) */
		struct sm_addr key = r->source.addr;

		bool final = r->type == SM_REC_CONN_END, expected;

		/* a stream of this daemon's; else one a daemon that is gone carried */
		if (!tunnel_join(d, &key, r->source.port, final, r, &expected)) {
			if (expected && may_wait && passive && ev->peer_identity == SM_ID_HOST)
				return false;
			sm_tunnel_fact_apply(d, &key, r->source.port, final,
					     ev->flags & SM_SK_F_ABORTED, r);
		}
		/* a conn_end without it: the tunnel never took the socket, nothing was carried */
		if (!passive && !r->tls.present && r->type != SM_REC_CONN_END)
			tunnel_tls(d, self_wl, &r->tls);
	}
	if ((ev->flags & SM_SK_F_POLICY_CLOSED) && r->type == SM_REC_CONN_END) {
		/* a new revision denied it and the kernel closed it: which rule, found again */
		struct sm_policy_decision pd;

		if (passive) /* a plaintext caller (bpf/policy.bpf.c): known by its address */
			sm_policy_check(d, sm_policy_addr_identity(d, &r->source.addr),
					ev->identity, r->destination.port, &pd);
		else
			sm_policy_check(d, ev->identity, ev->peer_identity, r->destination.port,
					&pd);
		r->verdict = SM_VERDICT_DROPPED;
		sm_strlcpy(r->drop_reason, sm_drop_reason_name(SM_DROP_POLICY_REVOKED),
			   sizeof(r->drop_reason));
		sm_policy_fill_record(d, pd.rule_id, sm_policy_revision(d), pd.reason, false, r);
	}

	HASH_FIND(hh, d->flows->flows, &ev->cookie, sizeof(ev->cookie), fs);
	if (fs)
		counters_sub(&r->delta, &r->total, &fs->last);
	else
		r->delta = r->total; /* first record this daemon writes for the flow */

	if (r->type == SM_REC_CONN_END) {
		if (fs) {
			HASH_DEL(d->flows->flows, fs);
			free(fs);
		}
		return true;
	}
	if (!fs) {
		fs = calloc(1, sizeof(*fs));
		if (!fs)
			return true; /* the next record's delta is then its total: still correct
				      * in sum */
		fs->cookie = ev->cookie;
		HASH_ADD(hh, d->flows->flows, cookie, sizeof(fs->cookie), fs);
	}
	fs->last = r->total;
	return true;
}

/*
 * A connection the policy decided in the kernel, at connect() or at a
 * PERMISSIVE workload's plaintext ingress: DENIED (connect() failed with
 * EPERM, or the SYN was dropped; no socket follows) or AUDIT (an AUDIT rule matched, the connection
 * goes on and has its own records). One "denied" record each.
 */
static void record_from_policy_event(struct sm_daemon *d, const struct sm_flow_event *ev,
				     struct sm_flow_record *r)
{
	bool audit = ev->type == SM_FLOW_AUDIT;

	memset(r, 0, sizeof(*r));
	r->type = SM_REC_DENIED;
	r->time_ns = (int64_t) ev->ts_ns + d->mono_to_real_ns;
	r->start_ns = r->time_ns;
	sm_strlcpy(r->node, d->cat.nodes[d->node_idx].name, sizeof(r->node));
	r->cookie = ev->cookie;
	r->cgroup_id = ev->cgroup_id;
	if (ev->flags & SM_SK_F_PASSIVE) {
		/* a plaintext SYN to a PERMISSIVE workload (bpf/ingress.bpf.c) */
		int wl = sm_workloads_by_cgroup(d->wl, ev->cgroup_id);

		r->direction = SM_DIR_INGRESS;
		endpoint_fill(d, &r->source, ev->family, ev->remote_addr, ev->remote_port,
			      ev->peer_identity, -1);
		endpoint_fill(d, &r->destination, ev->family, ev->local_addr, ev->local_port,
			      ev->identity, wl);
		plaintext_tls(d, ev, wl, &r->tls);
	} else {
		r->direction = SM_DIR_EGRESS;
		endpoint_fill(d, &r->source, ev->family, ev->local_addr, 0, ev->identity,
			      sm_workloads_by_cgroup(d->wl, ev->cgroup_id));
		endpoint_fill(d, &r->destination, ev->family, ev->orig_addr, ev->orig_port,
			      ev->peer_identity,
			      service_workload(d, ev->family, ev->orig_addr, ev->orig_port));
	}
	if (audit) {
		r->verdict = SM_VERDICT_AUDIT;
	} else {
		r->verdict = SM_VERDICT_DROPPED;
		sm_strlcpy(r->drop_reason,
			   ev->policy_reason == SM_POLICY_R_DEFAULT_DENY
				   ? sm_drop_reason_name(SM_DROP_POLICY_DEFAULT_DENY)
				   : sm_drop_reason_name(SM_DROP_POLICY_DENIED),
			   sizeof(r->drop_reason));
	}
	sm_policy_fill_record(d, audit ? 0 : ev->policy_rule, ev->policy_revision,
			      (enum sm_policy_reason) ev->policy_reason, false, r);
	if (audit)
		sm_policy_fill_record(d, ev->policy_rule, ev->policy_revision,
				      (enum sm_policy_reason) ev->policy_reason, true, r);
}

static bool flow_waiting_cookie(const struct sm_flowexp *fx, size_t n, uint64_t cookie)
{
	for (size_t i = 0; i < n; i++)
		if (fx->waiting[i].ev.cookie == cookie)
			return true;
	return false;
}

/*
 * Write the records of the waiting events that need not wait any longer: the
 * join came, or no worker is connecting any more (the socket was not one of
 * the tunnel's), or it waited FLOW_WAIT_MAX_NS, or force (the daemon stops
 * reading the ring). An event waits behind an earlier one of its socket, so
 * a socket's records keep their order.
 */
static void flow_wait_retry(struct sm_daemon *d, bool force)
{
	struct sm_flowexp *fx = d->flows;
	int64_t now = sm_mono_ns();
	struct sm_flow_record r;
	size_t keep = 0;

	for (size_t i = 0; i < fx->nwaiting; i++) {
		struct flow_wait *w = &fx->waiting[i];

		if (flow_waiting_cookie(fx, keep, w->ev.cookie)) {
			/* behind an earlier event of its socket */
		} else if (record_from_event(d, &w->ev, &r, true)) {
			sm_flowexp_emit(d, &r);
			continue;
		} else if (force || now - w->since_ns >= FLOW_WAIT_MAX_NS) {
			/* written as it is, without the tunnel's word */
			record_from_event(d, &w->ev, &r, false);
			sm_flowexp_emit(d, &r);
			SM_STAT_INC(fx->waited_expired);
			continue;
		}
		if (keep != i)
			fx->waiting[keep] = *w;
		keep++;
	}
	fx->nwaiting = keep;
}

static int on_flow_event(void *ctx, void *data, size_t size)
{
	struct sm_daemon *d = ctx;
	struct sm_flowexp *fx = d->flows;
	const struct sm_flow_event *ev = data;
	struct sm_flow_record r;

	if (size < sizeof(struct sm_flow_event)) {
		pr_warn("short flow event (%zu bytes, want %zu): kernel and daemon builds differ",
			size, sizeof(struct sm_flow_event));
	} else if (ev->type == SM_FLOW_DENIED || ev->type == SM_FLOW_AUDIT) {
		record_from_policy_event(d, ev, &r);
		sm_flowexp_emit(d, &r);
	} else if (!fx->waiting) { /* no memory for waiting: written at once */
		record_from_event(d, ev, &r, false);
		sm_flowexp_emit(d, &r);
	} else {
		if (fx->nwaiting == FLOW_WAIT_MAX)
			flow_wait_retry(d, true); /* full: written as they are, in order */
		if (flow_waiting_cookie(fx, fx->nwaiting, ev->cookie) ||
		    !record_from_event(d, ev, &r, true)) {
			fx->waiting[fx->nwaiting].ev = *ev;
			fx->waiting[fx->nwaiting].since_ns = sm_mono_ns();
			fx->nwaiting++;
			SM_STAT_INC(fx->waited);
		} else {
			sm_flowexp_emit(d, &r);
		}
	}
	return sm_mono_ns() >= fx->drain_deadline ? FLOW_DRAIN_PAUSE : 0;
}

/*
 * Drain the ring for at most FLOW_DRAIN_BUDGET_NS. When events are left,
 * more_fd brings the loop straight back here once it has served whatever
 * else is due (the once-a-second tick among them).
 */
static void flow_drain(struct sm_daemon *d)
{
	struct sm_flowexp *fx = d->flows;
	int ret;

	if (!fx->rb)
		return; /* an upgrade's successor reads it */
	fx->drain_deadline = sm_mono_ns() + FLOW_DRAIN_BUDGET_NS;
	if (fx->nwaiting)
		flow_wait_retry(d, false);
	ret = ring_buffer__consume(fx->rb);
	if (fx->nwaiting) /* the worker may have written its entry meanwhile */
		flow_wait_retry(d, false);
	if (ret == FLOW_DRAIN_PAUSE) {
		uint64_t one = 1;

		if (write(fx->more_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			pr_warn("cannot wake the flow drain: %s", strerror(errno));
	} else if (ret < 0) {
		pr_warn("ring buffer consume failed: %s", strerror(-ret));
	}
}

static void on_ringbuf(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	(void) loop;
	(void) ev;
	(void) events;
	flow_drain(arg);
}

static void on_more(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	uint64_t n;

	(void) loop;
	(void) ev;
	(void) events;
	if (read(d->flows->more_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_warn("cannot read the flow drain's eventfd: %s", strerror(errno));
	flow_drain(d);
}

static const enum sm_counter loss_counters[] = {
	SM_CNT_RINGBUF_RESERVE_FAIL,
	SM_CNT_ORIGDST_UPDATE_FAIL,
	SM_CNT_STORAGE_FAIL,
	SM_CNT_SOCKHASH_UPDATE_FAIL,
};

void sm_flowexp_check_lost(struct sm_daemon *d)
{
	/* the reader of the ring reports its losses, once, when its sinks are open */
	if (!sm_flowexp_owns_ring(d) || !d->flows->sinks)
		return;
	int fd = bpf_map__fd(d->skel->maps.lost_reported);
	uint64_t now[SM_CNT_MAX], seen[SM_ARRAY_SIZE(loss_counters)],
		delta[SM_ARRAY_SIZE(loss_counters)];
	struct sm_flow_record r;
	bool any = false, sinks_lost;

	if (sm_datapath_counters(d, now))
		return;
	/* drain first (within its budget), so that "lost" follows the records that made it */
	flow_drain(d);
	for (size_t i = 0; i < SM_ARRAY_SIZE(loss_counters); i++) {
		uint32_t k = loss_counters[i];

		seen[i] = 0;
		bpf_map_lookup_elem(fd, &k, &seen[i]);
		delta[i] = now[k] >= seen[i] ? now[k] - seen[i] : now[k];
		any |= delta[i] != 0;
	}
	memset(&r, 0, sizeof(r));
	/* what the sinks dropped (queue full) or suppressed (rate limits) */
	sinks_lost = sm_sinks_take_lost(d->flows->sinks, &r);
	/* the kernel's sources are read by the metrics themselves; these are the sinks' */
	sm_flow_observe_lost(d, "queue", r.lost_queue);
	sm_flow_observe_lost(d, "rate_limit", r.lost_rate_limited);
	/*
	 * Records the sinks could not write: their own lost record says so in
	 * the file once writing works again (sinks.c); the metric counts them as
	 * they fail, a second late at most.
	 */
	sm_flow_observe_lost(d, "write_failed", sm_sinks_take_write_failed(d->flows->sinks));
	r.lost_ringbuf = delta[0];
	r.lost_orig_dst = delta[1];
	r.lost_storage = delta[2];
	r.lost_sockhash = delta[3];
	/* and what lost records the queue had to drop said, again */
	sinks_lost |= sm_sinks_take_carried(d->flows->sinks, &r);
	if (!any && !sinks_lost)
		return;
	r.type = SM_REC_LOST;
	r.time_ns = sm_real_ns();
	sm_strlcpy(r.node, d->cat.nodes[d->node_idx].name, sizeof(r.node));
	sm_flowexp_emit(d, &r);
	SM_STAT_INC(d->flows->lost_records);
	if (r.lost_queue)
		pr_warn("flow log queue full: %llu records dropped (the disk is slower than the "
			"records; see the lost record)",
			(unsigned long long) r.lost_queue);
	if (!any)
		return;
	for (size_t i = 0; i < SM_ARRAY_SIZE(loss_counters); i++) {
		uint32_t k = loss_counters[i];

		bpf_map_update_elem(fd, &k, &now[k], BPF_ANY);
	}
	pr_warn("lost events: ring buffer %llu, orig_dst %llu, storage %llu, sockhash %llu",
		(unsigned long long) delta[0], (unsigned long long) delta[1],
		(unsigned long long) delta[2], (unsigned long long) delta[3]);
}

int sm_flowexp_take_ring(struct sm_daemon *d)
{
	struct sm_flowexp *fx = d->flows;
	int err;

	if (!fx || fx->rb)
		return 0;
	fx->rb = ring_buffer__new(bpf_map__fd(d->skel->maps.flow_events), on_flow_event, d, NULL);
	if (!fx->rb) {
		err = -errno;
		pr_err("cannot open the flow_events ring buffer: %s", strerror(-err));
		return err;
	}
	fx->rb_ev = sm_evloop_add(d->loop, ring_buffer__epoll_fd(fx->rb), EPOLLIN, on_ringbuf, d);
	if (!fx->rb_ev)
		return -errno;
	/* the kernel batches wakeups (see emit_flow_event): drain on a timer too */
	fx->drain_ev = sm_evloop_timer(d->loop, SM_FLOW_DRAIN_MS, on_ringbuf, d);
	if (!fx->drain_ev)
		return -errno;
	return 0;
}

void sm_flowexp_release_ring(struct sm_daemon *d)
{
	struct sm_flowexp *fx = d->flows;

	if (!fx || !fx->rb)
		return;
	/* the last events this daemon can join; the next reader gets the rest */
	fx->drain_deadline = INT64_MAX;
	ring_buffer__consume(fx->rb);
	flow_wait_retry(d, true);
	sm_evloop_del(d->loop, fx->rb_ev);
	sm_evloop_del(d->loop, fx->drain_ev);
	ring_buffer__free(fx->rb);
	fx->rb = NULL;
	fx->rb_ev = fx->drain_ev = NULL;
}

bool sm_flowexp_owns_ring(const struct sm_daemon *d)
{
	return d->flows && d->flows->rb;
}

void sm_flowexp_open_sinks(struct sm_daemon *d)
{
	struct sm_flowexp *fx = d->flows;
	struct sm_error e = {{0}};
	struct sm_sinks *sinks;

	if (!fx || !fx->holding)
		return;
	sinks = sm_sinks_new(&d->cfg, &e);
	if (!sinks)
		pr_err("%s: the flow records are not written (fix flowlog and restart)", e.msg);
	pthread_mutex_lock(&fx->hold_mu);
	for (size_t i = 0; sinks && i < fx->nheld; i++)
		sm_sinks_write(sinks, &fx->held[i], NULL);
	if (fx->held_lost)
		pr_warn("upgrade: %zu flow records made while the previous daemon drained did not "
			"fit "
			"in memory (%d): lost",
			fx->held_lost, FLOW_HOLD_MAX);
	free(fx->held);
	fx->held = NULL;
	fx->nheld = 0;
	fx->sinks = sinks;
	__atomic_store_n(&fx->holding, false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fx->hold_mu);
}

int sm_flowexp_start(struct sm_daemon *d)
{
	struct sm_flowexp *fx = calloc(1, sizeof(*fx));
	struct sm_error e = {{0}};
	int err;

	if (!fx)
		return -ENOMEM;
	fx->more_fd = -1;
	pthread_mutex_init(&fx->hold_mu, NULL);
	d->flows = fx;
	/* without it (no memory) records never wait (on_flow_event()) */
	fx->waiting = calloc(FLOW_WAIT_MAX, sizeof(*fx->waiting));
	fx->more_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fx->more_fd < 0) {
		err = -errno;
		pr_err("cannot make the flow drain's eventfd: %s", strerror(-err));
		return err;
	}
	fx->more_ev = sm_evloop_add(d->loop, fx->more_fd, EPOLLIN, on_more, d);
	if (!fx->more_ev)
		return -errno;
	if (sm_handoff_successor()) {
		/* the predecessor reads the ring and writes the sinks until it lets go */
		fx->held = calloc(FLOW_HOLD_MAX, sizeof(*fx->held));
		fx->holding = true;
		return 0;
	}
	fx->sinks = sm_sinks_new(&d->cfg, &e);
	if (!fx->sinks) {
		err = -errno;
		pr_err("%s", e.msg);
		return err;
	}
	return sm_flowexp_take_ring(d);
}

void sm_flowexp_stop(struct sm_daemon *d)
{
	struct sm_flowexp *fx = d->flows;
	struct flow_state *fs, *tmp;

	if (!fx)
		return;
	if (fx->rb) {
		/* the last events, however long they take: nothing else runs now */
		fx->drain_deadline = INT64_MAX;
		ring_buffer__consume(fx->rb);
		flow_wait_retry(d, true);
		sm_evloop_del(d->loop, fx->rb_ev);
		sm_evloop_del(d->loop, fx->drain_ev);
		ring_buffer__free(fx->rb);
	}
	sm_evloop_del(d->loop, fx->more_ev);
	if (fx->more_fd >= 0)
		close(fx->more_fd);
	free(fx->held);
	free(fx->waiting);
	pthread_mutex_destroy(&fx->hold_mu);
	HASH_ITER(hh, fx->flows, fs, tmp)
	{
		// uthash's delete-while-iterating idiom; the analyzer does not know that
		// the head's hh.prev is NULL, so it thinks deleting it leaves head stale
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(fx->flows, fs);
		free(fs);
	}
	sm_sinks_free(fx->sinks);
	free(fx);
	d->flows = NULL;
}

uint64_t sm_flowexp_records(const struct sm_daemon *d)
{
	struct sm_sinks_stats st;

	sm_flowexp_sink_stats(d, &st);
	return st.written;
}

uint64_t sm_flowexp_lost_records(const struct sm_daemon *d)
{
	return d->flows ? SM_STAT_GET(d->flows->lost_records) : 0;
}

void sm_flowexp_wait_stats(const struct sm_daemon *d, uint64_t *waited, uint64_t *expired)
{
	*waited = d->flows ? SM_STAT_GET(d->flows->waited) : 0;
	*expired = d->flows ? SM_STAT_GET(d->flows->waited_expired) : 0;
}

void sm_flowexp_sink_stats(const struct sm_daemon *d, struct sm_sinks_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (d->flows && d->flows->sinks)
		sm_sinks_stats(d->flows->sinks, st);
}

int sm_flowexp_reconfigure(struct sm_daemon *d, const struct sm_config *cfg, struct sm_error *err)
{
	if (d->flows && d->flows->holding) {
		sm_error_set(err, "an upgrade is under way (the previous daemon still writes the "
				  "flow log): send SIGHUP again once it is complete");
		return -EBUSY;
	}
	if (!d->flows || !d->flows->sinks) {
		sm_error_set(err, "the flow exporter is not running");
		return -ENODEV;
	}
	return sm_sinks_reconfigure(d->flows->sinks, cfg, err);
}
