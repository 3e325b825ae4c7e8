// SPDX-License-Identifier: Apache-2.0
/*
 * HBONE: the cross-node hop as HTTP/2 CONNECT over mutual TLS 1.3, as Istio's
 * ztunnel speaks it on port 15008 (docs/tunnel.md).
 *
 * Outbound, a captured connection becomes one CONNECT stream with
 * :authority = the original destination, on a pooled mTLS connection to the
 * destination node keyed by (source identity, destination identity, node) and
 * made with the source workload's SVID; the server must prove the identity
 * the catalog names (the destination workload, or its node). Inbound, a
 * listener on the node's addresses verifies the client's SVID, checks that
 * :authority is a service hosted on this node (else 400), connects to it from
 * the daemon's own cgroup, and answers 200 only once that connect succeeded
 * (502 when refused, 503 otherwise).
 *
 * Flow control: received DATA is acknowledged to the peer
 * (nghttp2_session_consume) only once written to the plain socket, so a slow
 * reader slows its sender. Half-close travels as END_STREAM one way and
 * shutdown(SHUT_WR) the other; errors reset both sides.
 *
 * Files, one job each: hbone.c (this one) the per-worker lifecycle, the
 * timers and the counters; hbone_conn.c the TLS connections and their pump;
 * hbone_stream.c a stream's plain socket; hbone_h2.c the HTTP/2 session of a
 * connection (nghttp2's callbacks, the inbound side's checks of a CONNECT);
 * hbone_out.c the outbound side and its pool; hbone_in.c the inbound
 * listeners and which SVID they present; hbone_creds.c the credential sets
 * and their rotation; hbone_recheck.c re-checking streams against a new
 * policy revision; hbone_flow.c what the tunnel adds to flow records.
 * hbone_int.h holds the types and functions they share.
 *
 * Ownership: handlers never free. A stream or connection that is finished is
 * marked dead and freed by conn_reap() at the end of the handler that marked
 * it, so no callback can touch freed memory.
 *
 * Threads: each worker (worker.c) owns its listeners, connections, streams
 * and flow-record joins (struct sm_hbone_worker); connections never move
 * between workers. The credential sets (struct sm_hbone) belong to the main
 * thread, which swaps them only while the workers are paused. The joins are
 * the one structure two threads touch (the worker writes, the main thread's
 * flow export reads), behind the worker's own mutex. When a policy revision
 * goes live, each worker re-checks its own inbound streams on its own thread
 * (sm_workers_call()), so streams, nghttp2 sessions and SSL objects are never
 * touched by two threads; the main thread only waits for the answer.
 *
 * Which SVID the inbound side presents: the workload's whose SPIFFE ID the
 * client names in SNI (sm_spiffe_sni_name()); else, on a listener address
 * whose services all belong to one local workload, that workload's; else the
 * node's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "catalog.h"
#include "config.h"
#include "daemon.h"
#include "drop_reason.h"
#include "evloop.h"
#include "flowjoin.h"
#include "hbone.h"
#include "hbone_int.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"

int sm_hbone_worker_start(struct sm_worker *w)
{
	const struct sm_node_def *self = &w->d->cat.nodes[w->d->node_idx];
	struct sm_hbone_worker *hw;
	int err;

	if (!w->d->hbone)
		return 0;
	hw = calloc(1, sizeof(*hw));
	if (!hw)
		return -ENOMEM;
	w->joins = sm_flowjoins_new();
	if (!w->joins) {
		free(hw);
		return -ENOMEM;
	}
	hw->upstream_connect = sm_upstream_connect_from;
	w->hb = hw;
	for (unsigned int i = 0; i < self->naddrs && i < SM_NODE_ADDRS_MAX; i++) {
		err = listen_inbound(w, &self->addrs[i], i);
		if (err)
			return err;
	}
	return 0;
}

void sm_hbone_stop_accepting(struct sm_worker *w)
{
	struct sm_hbone_worker *hw = w->hb;

	if (!hw)
		return;
	for (unsigned int i = 0; i < hw->nl; i++) {
		sm_evloop_del(w->loop, hw->l[i].ev);
		close(hw->l[i].fd);
	}
	hw->nl = 0;
	/* tell peers not to open new streams here */
	for (struct hb_conn *c = hw->conns; c; c = c->next) {
		if (c->h2 && !c->handshaking && !c->dead) {
			nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(c->h2),
					      NGHTTP2_NO_ERROR, NULL, 0);
			conn_pump(c);
		}
	}
}

void sm_hbone_resume_accepting(struct sm_worker *w)
{
	struct sm_hbone_worker *hw = w->hb;

	for (unsigned int i = 0; hw && i < hw->nl; i++) {
		if (!hw->l[i].resting)
			continue;
		hw->l[i].resting = false;
		sm_evloop_mod(w->loop, hw->l[i].ev, EPOLLIN);
	}
}

void sm_hbone_worker_free(struct sm_worker *w)
{
	struct sm_hbone_worker *hw = w->hb;

	if (!hw)
		return;
	sm_hbone_stop_accepting(w);
	hw->stopping = true;
	while (hw->conns) {
		struct hb_conn *c = hw->conns;

		conn_fail(c, sm_drop_reason_name(SM_DROP_DAEMON_STOPPED));
		conn_reap(c);
	}
	sm_flowjoins_free(w->joins);
	w->joins = NULL;
	free(hw);
	w->hb = NULL;
}

void sm_hbone_worker_tick(struct sm_worker *w)
{
	const struct sm_config *cfg = &w->d->cfg;
	struct sm_hbone_worker *hw = w->hb;
	int64_t now = sm_mono_s(), now_ns = sm_mono_ns();
	struct hb_conn *c, *next;

	if (!hw)
		return;
	for (c = hw->conns; c; c = next) {
		next = c->next;
		if (c->handshaking &&
		    now_ns - c->started_ns >
			    (int64_t) cfg->tunnel_handshake_timeout * 1000000000LL) {
			fail_count(hw, sm_drop_reason_name(SM_DROP_HANDSHAKE_TIMEOUT));
			if (c->server)
				record_failure(c, sm_drop_reason_name(SM_DROP_HANDSHAKE_TIMEOUT),
					       NULL);
			conn_fail(c, sm_drop_reason_name(SM_DROP_HANDSHAKE_TIMEOUT));
		} else if (c->server && !c->handshaking && !c->got_settings && !c->dead &&
			   now_ns - c->established_ns >
				   (int64_t) cfg->tunnel_handshake_timeout * 1000000000LL) {
			/* authenticated, but it holds the connection without speaking HTTP/2 */
			SM_STAT_INC(hw->st.preface_timeouts);
			record_failure(c, sm_drop_reason_name(SM_DROP_PREFACE_TIMEOUT), NULL);
			conn_fail(c, sm_drop_reason_name(SM_DROP_PREFACE_TIMEOUT));
		} else if (!c->handshaking && c->ping_ns &&
			   now_ns - c->ping_ns >
				   (int64_t) cfg->tunnel_keepalive_timeout * 1000000000LL) {
			/* the peer stopped answering: its streams are gone with it */
			SM_STAT_INC(hw->st.keepalive_failures);
			conn_fail(c, sm_drop_reason_name(SM_DROP_KEEPALIVE_TIMEOUT));
		} else if (!c->handshaking && !c->ping_ns && !c->dead &&
			   now_ns - c->last_rx_ns >
				   (int64_t) cfg->tunnel_keepalive_interval * 1000000000LL) {
			c->ping_ns = now_ns;
			nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
			conn_pump(c);
		} else if (!c->handshaking && c->nstreams == 0 && c->idle_since &&
			   now - c->idle_since > (int64_t) cfg->tunnel_idle_timeout) {
			nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL,
					      0);
			conn_pump(c);
			c->dead = true;
		}
		conn_reap(c);
	}
	sm_flowjoins_expire(w->joins, now);
}

void sm_hbone_worker_stats(const struct sm_worker *w, struct sm_hbone_stats *st)
{
	const uint64_t *src;
	uint64_t *dst = (uint64_t *) st;

	memset(st, 0, sizeof(*st));
	if (!w->hb)
		return;
	/* every field is a uint64_t counter (checked below) */
	src = (const uint64_t *) &w->hb->st;
	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		dst[i] = SM_STAT_GET(src[i]);
}

void sm_hbone_stats(const struct sm_daemon *d, struct sm_hbone_stats *st)
{
	struct sm_hbone_stats one = {0};
	uint64_t *dst = (uint64_t *) st;
	const uint64_t *src = (const uint64_t *) &one;

	memset(st, 0, sizeof(*st));
	if (!d->hbone)
		return;
	for (unsigned int i = 0; d->workers && i < d->nworkers; i++) {
		sm_hbone_worker_stats(&d->workers[i], &one);
		for (size_t k = 0; k < sizeof(*st) / sizeof(uint64_t); k++)
			dst[k] += src[k];
	}
	st->creds_reloads = d->hbone->creds_reloads;
	st->creds_reload_failures = d->hbone->creds_reload_failures;
	st->creds_expiring = d->hbone->creds_expiring;
}

_Static_assert(sizeof(struct sm_hbone_stats) % sizeof(uint64_t) == 0,
	       "struct sm_hbone_stats holds uint64_t counters only");

const struct sm_worker_part sm_hbone_worker_part = {
	.start = sm_hbone_worker_start,
	.stop_accepting = sm_hbone_stop_accepting,
	.resume_accepting = sm_hbone_resume_accepting,
	.tick = sm_hbone_worker_tick,
	.policy_recheck = sm_hbone_worker_policy_recheck,
	.free = sm_hbone_worker_free,
	.listen_fds = sm_hbone_listen_fds,
};
