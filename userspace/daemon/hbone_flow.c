// SPDX-License-Identifier: Apache-2.0
/*
 * The tunnel's part in flow records. Joins: what the tunnel knows of a
 * stream (tls block, trace id, verified caller, a failure), kept per worker
 * by the plain socket's far end so that the flow export (main thread) can
 * add it to the kernel's records of that socket (sm_hbone_decorate()). And
 * the records the tunnel makes itself, for failures no workload socket
 * reports (a refused handshake, a refused CONNECT).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <uthash.h>

#include "catalog.h"
#include "daemon.h"
#include "drop_reason.h"
#include "flow_record.h"
#include "flowacct.h"
#include "hbone.h"
#include "hbone_int.h"
#include "policy.h"
#include "policyd.h"
#include "tlsctx.h"
#include "tunnelfacts.h"
#include "util.h"
#include "workloads.h"

#define HB_JOIN_LINGER_S 60 /* a join entry outlives its stream this long */

/* What a tunnelled socket's flow records get: see sm_hbone_decorate(). */
struct hb_join {
	struct {
		uint8_t family;
		uint8_t addr[16];
		uint16_t port;
	} key;
	struct sm_flow_tls tls;
	char trace[64];
	bool inbound;
	uint32_t peer_identity; /* inbound: the verified calling workload */
	char peer_workload[64];
	char failure[64]; /* a handshake or stream failure: the record is DROPPED */
	/* failure policy_revoked: the revision and the rule that did it */
	struct sm_flow_policy policy;
	int64_t expires; /* monotonic s; 0 while the stream lives */
	UT_hash_handle hh;
};

static void join_key(struct hb_join *j, const struct sm_addr *a, uint16_t port)
{
	memset(&j->key, 0, sizeof(j->key));
	j->key.family = a->family;
	memcpy(j->key.addr, a->bytes, a->family == AF_INET ? 4 : 16);
	j->key.port = port;
}

/* Caller holds hw->join_mu. */
static struct hb_join *join_find(struct sm_hbone_worker *hw, const struct sm_addr *a, uint16_t port)
{
	struct hb_join probe, *j = NULL;

	join_key(&probe, a, port);
	HASH_FIND(hh, hw->joins, &probe.key, sizeof(probe.key), j);
	return j;
}

/* Record what the stream knows (and a failure, first one wins) for its socket's records. */
void join_update(struct hb_stream *s, const char *failure)
{
	struct hb_conn *c = s->conn;
	struct sm_daemon *d = c->d;
	struct sm_hbone_worker *hw = c->w->hb;
	struct sm_flow_tls tls;
	struct hb_join *j;
	bool publish;

	if (!s->key_port)
		return;
	pthread_mutex_lock(&hw->join_mu);
	j = join_find(hw, &s->key_addr, s->key_port);
	if (!j) {
		j = calloc(1, sizeof(*j));
		if (!j) {
			pthread_mutex_unlock(&hw->join_mu);
			return;
		}
		join_key(j, &s->key_addr, s->key_port);
		HASH_ADD(hh, hw->joins, key, sizeof(j->key), j);
	}
	j->inbound = c->server;
	sm_strlcpy(j->trace, s->trace, sizeof(j->trace));
	j->tls.present = true;
	/*
	 * A stream travels inside mTLS or not at all, so it is encrypted from
	 * the start: a conn_start may be written while the pooled connection's
	 * handshake is still under way (then without version and cipher). Not
	 * when that handshake failed: nothing was carried.
	 */
	if (!c->failure[0])
		j->tls.encrypted = true;
	else if (c->handshaking)
		j->tls.encrypted = false;
	if (c->ssl && !c->handshaking && !c->failure[0]) {
		const char *v = SSL_get_version(c->ssl), *ciph = SSL_get_cipher_name(c->ssl);

		sm_strlcpy(j->tls.version, v ? v : "", sizeof(j->tls.version));
		sm_strlcpy(j->tls.cipher, ciph ? ciph : "", sizeof(j->tls.cipher));
		j->tls.handshake_us = c->handshake_us;
	}
	if (c->creds)
		sm_strlcpy(j->tls.local_spiffe_id, sm_creds_spiffe_id(c->creds),
			   sizeof(j->tls.local_spiffe_id));
	sm_strlcpy(j->tls.peer_spiffe_id, c->peer_spiffe, sizeof(j->tls.peer_spiffe_id));
	if (c->server && c->peer_spiffe[0] && !j->peer_identity) {
		for (unsigned int i = 0; i < d->cat.nworkloads; i++) {
			if (strcmp(d->cat.workloads[i].spiffe_id, c->peer_spiffe) == 0) {
				j->peer_identity = d->cat.workloads[i].identity;
				sm_strlcpy(j->peer_workload, d->cat.workloads[i].name,
					   sizeof(j->peer_workload));
				break;
			}
		}
	}
	if (failure && !j->failure[0]) {
		sm_strlcpy(j->failure, failure, sizeof(j->failure));
		sm_strlcpy(j->tls.failure, failure, sizeof(j->tls.failure));
	}
	publish = s->established && !s->published && !failure && j->tls.version[0];
	if (publish)
		tls = j->tls;
	pthread_mutex_unlock(&hw->join_mu);
	if (publish) {
		/* what outlives this daemon: see userspace/daemon/tunnelfacts.c */
		sm_tunnel_fact_publish(d, &s->key_addr, s->key_port, c->server, s->trace, &tls);
		s->published = true;
	}
}

/* Fill r from a join entry; caller holds the worker's join_mu. */
static void join_apply(struct sm_daemon *d, const struct hb_join *j, bool final,
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
		sm_strlcpy(r->source.spiffe_id, j->tls.peer_spiffe_id, sizeof(r->source.spiffe_id));
		sm_strlcpy(r->source.workload, j->peer_workload, sizeof(r->source.workload));
		if (peer >= 0)
			sm_flow_endpoint_workload(d, &r->source, peer);
	}
	if (final && j->failure[0]) {
		r->verdict = SM_VERDICT_DROPPED;
		sm_strlcpy(r->drop_reason, j->failure, sizeof(r->drop_reason));
		if (j->policy.present)
			r->policy = j->policy;
	}
}

bool sm_hbone_decorate(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
		       bool final, struct sm_flow_record *r)
{
	if (!d->hbone)
		return false;
	for (unsigned int i = 0; d->workers && i < d->nworkers; i++) {
		struct sm_hbone_worker *hw = d->workers[i].hb;
		struct hb_join *j;

		if (!hw)
			continue;
		pthread_mutex_lock(&hw->join_mu);
		j = join_find(hw, key_addr, key_port);
		if (j) {
			join_apply(d, j, final, r);
			if (final) {
				HASH_DEL(hw->joins, j);
				free(j);
			}
		}
		pthread_mutex_unlock(&hw->join_mu);
		if (j)
			return true;
	}
	return false;
}

/*
 * A record of the daemon's own, for a failure no workload socket reports;
 * pd: the policy decision behind it, if the policy refused the stream. With
 * reason NULL and pd: the AUDIT record of a stream the policy let through.
 */
void record_failure_policy(struct hb_conn *c, const char *reason, const char *authority,
			   const struct sm_policy_decision *pd)
{
	struct sm_daemon *d = c->d;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct sm_flow_record r;
	int64_t age = sm_mono_ns() - c->started_ns;
	uint16_t port = 0;
	int svc;

	memset(&r, 0, sizeof(r));
	r.type = SM_REC_CONN_END;
	r.time_ns = sm_real_ns();
	r.start_ns = r.time_ns - age;
	r.duration_us = (uint64_t) age / 1000;
	sm_strlcpy(r.node, d->cat.nodes[d->node_idx].name, sizeof(r.node));
	r.verdict = reason ? SM_VERDICT_DROPPED : SM_VERDICT_AUDIT;
	if (reason)
		sm_strlcpy(r.drop_reason, reason, sizeof(r.drop_reason));
	r.direction = c->server ? SM_DIR_INGRESS : SM_DIR_EGRESS;
	r.source.addr = c->peer;
	r.source.port = c->peer_port;
	r.source.identity = SM_ID_WORLD;
	sm_strlcpy(r.source.spiffe_id, c->peer_spiffe, sizeof(r.source.spiffe_id));
	/* the destination the CONNECT named, else this end of the TLS connection */
	if (authority && sm_addrport_parse(authority, &r.destination.addr, &port) == 0) {
		r.destination.port = port;
		svc = c->server ? local_service(d, &r.destination.addr, port) : -1;
		if (svc >= 0)
			sm_flow_endpoint_workload(d, &r.destination,
						  (int) d->cat.services[svc].workload);
	} else if (getsockname(c->fd, (struct sockaddr *) &ss, &sl) == 0) {
		sm_addr_from_sockaddr((struct sockaddr *) &ss, &r.destination.addr,
				      &r.destination.port);
	} else {
		r.destination.addr = c->peer;
	}
	/*
	 * One family per record: an IPv6 service reached through an IPv4
	 * tunnel keeps its own address, and the caller, known by its
	 * certificate, gets the unspecified address of that family.
	 */
	if (r.destination.addr.family != r.source.addr.family) {
		memset(&r.source.addr, 0, sizeof(r.source.addr));
		r.source.addr.family = r.destination.addr.family;
		r.source.port = 0;
	}
	r.tls.present = true;
	/* the HBONE port itself accepts nothing but mTLS */
	sm_strlcpy(r.tls.mode, "STRICT", sizeof(r.tls.mode));
	if (reason)
		sm_strlcpy(r.tls.failure, reason, sizeof(r.tls.failure));
	sm_strlcpy(r.tls.peer_spiffe_id, c->peer_spiffe, sizeof(r.tls.peer_spiffe_id));
	if (c->creds)
		sm_strlcpy(r.tls.local_spiffe_id, sm_creds_spiffe_id(c->creds),
			   sizeof(r.tls.local_spiffe_id));
	if (pd) {
		/* a decision about one CONNECT, made now: not the pooled connection's age */
		int peer;

		r.type = SM_REC_DENIED;
		r.start_ns = r.time_ns;
		r.duration_us = 0;
		r.source.identity = sm_policy_identity_of(d, c->peer_spiffe);
		peer = sm_catalog_workload_by_identity(&d->cat, r.source.identity);
		if (peer >= 0)
			sm_flow_endpoint_workload(d, &r.source, peer);
		/* an AUDIT record names only the AUDIT rule: the verdict was not a rule's */
		if (reason)
			sm_policy_fill_record(d, pd->rule_id, sm_policy_revision(d), pd->reason,
					      false, &r);
		else
			sm_policy_fill_record(d, 0, sm_policy_revision(d), pd->reason, false, &r);
		if (pd->audit)
			sm_policy_fill_record(d, pd->audit_rule_id, sm_policy_revision(d),
					      pd->reason, true, &r);
	}
	sm_flowexp_emit(d, &r);
}

void record_failure(struct hb_conn *c, const char *reason, const char *authority)
{
	record_failure_policy(c, reason, authority, NULL);
}

/* Keep the revoking decision for the conn_end record of the stream's service socket. */
void join_set_policy(struct hb_stream *s, const struct sm_flow_policy *pol)
{
	struct sm_hbone_worker *hw = s->conn->w->hb;
	struct hb_join *j;

	if (!s->key_port)
		return;
	pthread_mutex_lock(&hw->join_mu);
	j = join_find(hw, &s->key_addr, s->key_port);
	/* only when this revocation is the failure the record will report */
	if (j && strcmp(j->failure, sm_drop_reason_name(SM_DROP_POLICY_REVOKED)) == 0)
		j->policy = *pol;
	pthread_mutex_unlock(&hw->join_mu);
}

void join_linger(struct sm_hbone_worker *hw, const struct hb_stream *s)
{
	struct hb_join *j;

	if (!s->key_port)
		return;
	pthread_mutex_lock(&hw->join_mu);
	j = join_find(hw, &s->key_addr, s->key_port);
	if (j && !j->expires)
		j->expires = sm_mono_s() + HB_JOIN_LINGER_S;
	pthread_mutex_unlock(&hw->join_mu);
}

void join_expire(struct sm_hbone_worker *hw, int64_t now)
{
	struct hb_join *j, *tmp;

	pthread_mutex_lock(&hw->join_mu);
	HASH_ITER(hh, hw->joins, j, tmp)
	{
		/* entries are calloc'ed: expires is always set (cppcheck loses that in uthash) */
		// cppcheck-suppress uninitvar
		if (j->expires && j->expires < now) {
			// uthash's delete-while-iterating idiom (see flowacct.c)
			// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
			HASH_DEL(hw->joins, j);
			free(j);
		}
	}
	pthread_mutex_unlock(&hw->join_mu);
}

void join_free_all(struct sm_hbone_worker *hw)
{
	struct hb_join *j, *tmp;

	HASH_ITER(hh, hw->joins, j, tmp)
	{
		// uthash's delete-while-iterating idiom (see flowacct.c)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(hw->joins, j);
		free(j);
	}
}
