// SPDX-License-Identifier: Apache-2.0
/*
 * Re-checking live inbound streams when a policy revision goes live: each
 * worker checks its own streams on its own thread (sm_workers_call()), as
 * the CONNECT was checked, and resets those the new revision denies.
 */
#include <errno.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "daemon.h"
#include "drop_reason.h"
#include "flow_record.h"
#include "hbone.h"
#include "hbone_int.h"
#include "log.h"
#include "policy.h"
#include "policyd.h"
#include "util.h"
#include "worker.h"

/*
 * The live revision denies a stream an older one admitted. Not answered yet
 * (the service is still being connected): 403, as if the CONNECT came now.
 * Established: RST_STREAM with CANCEL. Not REFUSED_STREAM: that tells the
 * peer the stream was not processed and may be retried as it is (RFC 9113
 * section 8.7), which is false once bytes were relayed, and a retry would be
 * refused anyway; CANCEL says the stream is no longer wanted, which is what
 * a revocation is. The socket to the service is reset at the next reap; its
 * conn_end record (the join) says DROPPED, policy_revoked, and which rule.
 */
static void stream_revoke(struct hb_stream *s, const struct sm_policy_decision *pd)
{
	struct hb_conn *c = s->conn;
	struct sm_daemon *d = c->d;
	struct sm_flow_record r;

	if (!s->established) {
		hb_respond_policy(s, "403", hb_policy_reason(pd), pd);
		return;
	}
	SM_STAT_INC(c->w->hb->st.policy_streams_closed);
	stream_fail(s, NGHTTP2_CANCEL, sm_drop_reason_name(SM_DROP_POLICY_REVOKED));
	/* the record's policy block, made the way every policy record's is */
	memset(&r, 0, sizeof(r));
	sm_policy_fill_record(d, pd->rule_id, sm_policy_revision(d), pd->reason, false, &r);
	join_set_policy(s, &r.policy);
	pr_debug("stream %d (%s) from %s reset: policy revision %u denies it", s->id, s->authority,
		 c->peer_spiffe, sm_policy_revision(d));
}

void sm_hbone_worker_policy_recheck(struct sm_worker *w)
{
	struct sm_hbone_worker *hw = w->hb;
	struct sm_daemon *d = w->d;
	struct hb_conn *c, *next;

	if (!hw)
		return;
	for (c = hw->conns; c; c = next) {
		bool touched = false;
		uint32_t src, dst;

		next = c->next; /* conn_reap() may free c */
		if (!c->server || c->handshaking || c->dead)
			continue;
		/* the same lookups handle_request() made, against today's catalog and policy */
		src = sm_policy_identity_of(d, c->peer_spiffe);
		for (struct hb_stream *s = c->streams; s; s = s->next) {
			struct sm_policy_decision pd;
			int svc;

			if (s->dead || !s->admitted)
				continue;
			/* gone from the catalog: a catalog matter, not the policy's */
			svc = local_service(d, &s->svc_addr, s->dport);
			if (svc < 0)
				continue;
			dst = d->cat.workloads[d->cat.services[svc].workload].identity;
			sm_policy_check(d, src, dst, s->dport, &pd);
			if (pd.action != SM_POLICY_DENY)
				continue;
			stream_revoke(s, &pd);
			touched = true;
		}
		if (touched) {
			conn_pump(c); /* the resets and answers go out now, not at the next event */
			conn_reap(c);
		}
	}
}

uint64_t hb_policy_recheck(struct sm_daemon *d)
{
	struct sm_hbone_stats before, after;
	int err;

	if (!d->hbone)
		return 0;
	sm_hbone_stats(d, &before);
	err = sm_workers_call(d, SM_WCMD_POLICY_RECHECK);
	if (err == -ETIMEDOUT)
		pr_warn("policy revision %u: a worker did not re-check its inbound tunnel streams "
			"within 10 s (it does when it gets to it; the count reported misses them)",
			sm_policy_revision(d));
	else if (err)
		pr_warn("policy revision %u: cannot re-check the inbound tunnel streams: %s (they "
			"stay open; new streams are checked)",
			sm_policy_revision(d), strerror(-err));
	sm_hbone_stats(d, &after);
	return after.policy_streams_closed - before.policy_streams_closed;
}
