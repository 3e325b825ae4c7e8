// SPDX-License-Identifier: Apache-2.0
/*
 * The tunnel's part in flow records: what it knows of each stream (tls
 * block, trace id, verified caller, a failure), put into its worker's join
 * table (flowjoin.c) for the flow export to add to the kernel's records of
 * the stream's socket; and the records the tunnel makes itself, for
 * failures no workload socket reports (a refused handshake, a refused
 * CONNECT).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <openssl/ssl.h>

#include "catalog.h"
#include "daemon.h"
#include "drop_reason.h"
#include "flow_record.h"
#include "flowacct.h"
#include "flowjoin.h"
#include "hbone_int.h"
#include "policy.h"
#include "policyd.h"
#include "tlsctx.h"
#include "tunnelfacts.h"
#include "util.h"
#include "workloads.h"

#define HB_JOIN_LINGER_S 60 /* a join entry outlives its stream this long */

/* Record what the stream knows (and a failure, first one wins) for its socket's records. */
void join_update(struct hb_stream *s, const char *failure)
{
	struct hb_conn *c = s->conn;
	struct sm_daemon *d = c->d;
	struct sm_flowjoins *t = c->w->joins;
	struct sm_flow_tls tls;
	struct sm_flowjoin *j;
	bool publish;

	if (!s->key_port || !t)
		return;
	j = sm_flowjoins_lock(t, &s->key_addr, s->key_port, true);
	if (!j) {
		sm_flowjoins_unlock(t);
		return;
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
		j->tls.local_spiffe_id = sm_intern(sm_creds_spiffe_id(c->creds));
	j->tls.peer_spiffe_id = sm_intern(c->peer_spiffe);
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
	sm_flowjoins_unlock(t);
	if (publish) {
		/* what outlives this daemon: see userspace/daemon/tunnelfacts.c */
		sm_tunnel_fact_publish(d, &s->key_addr, s->key_port, c->server, s->trace, &tls);
		s->published = true;
	}
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
	r.source.spiffe_id = sm_intern(c->peer_spiffe);
	/* the destination the CONNECT named, else this end of the TLS connection */
	if (authority && sm_addrport_parse(authority, &r.destination.addr, &port) == 0) {
		r.destination.port = port;
		svc = c->server ? local_service(d, &r.destination.addr, port) : -1;
		if (svc >= 0)
			sm_workload_endpoint(&d->cat, (int) d->cat.services[svc].workload,
					     &r.destination);
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
	r.tls.peer_spiffe_id = sm_intern(c->peer_spiffe);
	if (c->creds)
		r.tls.local_spiffe_id = sm_intern(sm_creds_spiffe_id(c->creds));
	if (pd) {
		/* a decision about one CONNECT, made now: not the pooled connection's age */
		int peer;

		r.type = SM_REC_DENIED;
		r.start_ns = r.time_ns;
		r.duration_us = 0;
		r.source.identity = sm_policy_identity_of(d, c->peer_spiffe);
		peer = sm_catalog_workload_by_identity(&d->cat, r.source.identity);
		if (peer >= 0)
			sm_workload_endpoint(&d->cat, peer, &r.source);
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
	struct sm_flowjoins *t = s->conn->w->joins;
	struct sm_flowjoin *j;

	if (!s->key_port || !t)
		return;
	j = sm_flowjoins_lock(t, &s->key_addr, s->key_port, false);
	/* only when this revocation is the failure the record will report */
	if (j && strcmp(j->failure, sm_drop_reason_name(SM_DROP_POLICY_REVOKED)) == 0)
		j->policy = *pol;
	sm_flowjoins_unlock(t);
}

void join_linger(const struct hb_stream *s)
{
	if (s->key_port && s->conn->w->joins)
		sm_flowjoins_linger(s->conn->w->joins, &s->key_addr, s->key_port,
				    sm_mono_s() + HB_JOIN_LINGER_S);
}
