// SPDX-License-Identifier: Apache-2.0
/*
 * What the tunnel knew of each stream, kept in the pinned tunnel_facts map
 * (include/sockmesh/tunnel.h) so that it outlives the daemon.
 *
 * A daemon carries its tunnelled connections in its own sockets; when it
 * stops at the drain deadline or crashes, they are reset (the workload sees
 * ECONNRESET, docs/tunnel.md) and the workload's conn_end is read by whoever
 * drains the ring buffer next: the stopping daemon itself, or its
 * successor, which has none of the old one's memory. The tunnel therefore
 * writes one fact per stream when it is established (trace id, TLS details,
 * which daemon), and deletes it when the stream ends while the daemon runs.
 * A conn_end that finds no stream in the tunnel's memory but a fact here is a
 * connection a daemon that is gone (or going) carried: its record keeps the
 * trace id and the tls block, and, when the connection was reset, says
 * DROPPED with drop_reason daemon_stopped.
 *
 * Threads: workers publish and forget (any thread: map syscalls only), the
 * main thread applies, deletes and sweeps. Facts of an earlier daemon that no
 * conn_end claimed (the event was lost) are swept once the events pending at
 * the start have had their time.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <openssl/rand.h>

#include "catalog.h"
#include "daemon.h"
#include "drop_reason.h"
#include "flow_record.h"
#include "log.h"
#include "policyd.h"
#include "sockmesh.skel.h"
#include "tunnelfacts.h"
#include "util.h"
#include "workloads.h"

#include "sockmesh/tunnel.h"

/* Facts of an earlier daemon older than this after our start are nobody's any more. */
#define FACTS_GRACE_S 30

static void fact_key(struct sm_tunnel_key *k, const struct sm_addr *a, uint16_t port)
{
	memset(k, 0, sizeof(*k));
	k->family = a->family;
	k->port = port;
	memcpy(k->addr, a->bytes, a->family == AF_INET ? 4 : 16);
}

static int facts_fd(const struct sm_daemon *d)
{
	return d->skel ? bpf_map__fd(d->skel->maps.tunnel_facts) : -1;
}

int sm_tunnel_facts_start(struct sm_daemon *d)
{
	uint64_t id = 0;

	if (RAND_bytes((unsigned char *) &id, sizeof(id)) != 1 || !id)
		id = (uint64_t) sm_mono_ns() ^ ((uint64_t) getpid() << 32);
	d->instance = id;
	d->instance_started_ns = sm_mono_ns();
	return 0;
}

void sm_tunnel_fact_publish(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
			    bool inbound, const char *trace, const struct sm_flow_tls *tls)
{
	struct sm_tunnel_fact f;
	struct sm_tunnel_key k;
	int fd = facts_fd(d);

	if (fd < 0 || !key_port)
		return;
	memset(&f, 0, sizeof(f));
	f.instance = d->instance;
	f.written_ns = (uint64_t) sm_mono_ns();
	f.handshake_us = tls->handshake_us;
	f.inbound = inbound;
	sm_strlcpy(f.trace, trace, sizeof(f.trace));
	sm_strlcpy(f.version, tls->version, sizeof(f.version));
	sm_strlcpy(f.cipher, tls->cipher, sizeof(f.cipher));
	sm_strlcpy(f.local_spiffe_id, sm_str(tls->local_spiffe_id), sizeof(f.local_spiffe_id));
	sm_strlcpy(f.peer_spiffe_id, sm_str(tls->peer_spiffe_id), sizeof(f.peer_spiffe_id));
	fact_key(&k, key_addr, key_port);
	if (bpf_map_update_elem(fd, &k, &f, BPF_ANY))
		pr_warn_limited("tunnel_facts: cannot keep a stream's facts: %s (raise "
				"datapath.max_orig_dst if the map is full; its records after a "
				"daemon restart will lack trace id and tls)",
				strerror(errno));
}

void sm_tunnel_fact_forget(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port)
{
	struct sm_tunnel_key k;
	int fd = facts_fd(d);

	if (fd < 0 || !key_port)
		return;
	fact_key(&k, key_addr, key_port);
	bpf_map_delete_elem(fd, &k);
}

/* The local end's workload, for the tls mode, as the tunnel's own join does. */
static void fill_mode(const struct sm_daemon *d, struct sm_flow_record *r)
{
	int wl = sm_workloads_by_cgroup(d->wl, r->cgroup_id);

	if (wl < 0)
		wl = sm_catalog_workload_by_identity(&d->cat, r->direction == SM_DIR_INGRESS
								      ? r->destination.identity
								      : r->source.identity);
	if (wl >= 0)
		sm_strlcpy(r->tls.mode,
			   d->cat.workloads[wl].mode == SM_MODE_STRICT ? "STRICT" : "PERMISSIVE",
			   sizeof(r->tls.mode));
}

bool sm_tunnel_fact_apply(struct sm_daemon *d, const struct sm_addr *key_addr, uint16_t key_port,
			  bool final, bool aborted, struct sm_flow_record *r)
{
	int64_t start_mono = r->start_ns - d->mono_to_real_ns;
	struct sm_tunnel_fact f;
	struct sm_tunnel_key k;
	int fd = facts_fd(d);

	if (fd < 0 || !key_port)
		return false;
	fact_key(&k, key_addr, key_port);
	if (bpf_map_lookup_elem(fd, &k, &f))
		return false;
	/* an older connection's, from the same address and port: not this one's */
	if ((int64_t) f.written_ns < start_mono) {
		if (final)
			bpf_map_delete_elem(fd, &k);
		return false;
	}
	r->tls.present = true;
	r->tls.encrypted = true;
	sm_strlcpy(r->tls.version, f.version, sizeof(r->tls.version));
	sm_strlcpy(r->tls.cipher, f.cipher, sizeof(r->tls.cipher));
	r->tls.local_spiffe_id = sm_intern_n(f.local_spiffe_id, sizeof(f.local_spiffe_id));
	r->tls.peer_spiffe_id = sm_intern_n(f.peer_spiffe_id, sizeof(f.peer_spiffe_id));
	r->tls.handshake_us = f.handshake_us;
	fill_mode(d, r);
	sm_strlcpy(r->trace_id, f.trace, sizeof(r->trace_id));
	if (f.inbound && f.peer_spiffe_id[0]) {
		/* the kernel saw the daemon connect; the certificate said who called */
		uint32_t id = sm_policy_identity_of(d, f.peer_spiffe_id);
		int peer = sm_catalog_workload_by_identity(&d->cat, id);

		r->source.identity = id;
		r->source.spiffe_id = r->tls.peer_spiffe_id;
		if (peer >= 0)
			sm_workload_endpoint(&d->cat, peer, &r->source);
	}
	if (!final)
		return true;
	/* the daemon that carried it is gone, or going: a reset here is its doing */
	if (aborted && (f.instance != d->instance || d->draining)) {
		const char *why = sm_drop_reason_name(SM_DROP_DAEMON_STOPPED);

		r->verdict = SM_VERDICT_DROPPED;
		sm_strlcpy(r->drop_reason, why, sizeof(r->drop_reason));
		sm_strlcpy(r->tls.failure, why, sizeof(r->tls.failure));
	}
	bpf_map_delete_elem(fd, &k);
	return true;
}

void sm_tunnel_facts_sweep(struct sm_daemon *d)
{
	uint8_t key[sizeof(struct sm_tunnel_key)], next[sizeof(struct sm_tunnel_key)];
	struct sm_tunnel_fact f;
	unsigned int swept = 0;
	int fd = facts_fd(d);
	void *prev = NULL;

	if (fd < 0 || sm_mono_ns() - d->instance_started_ns < FACTS_GRACE_S * 1000000000LL)
		return;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		/* deleting the current key would restart the walk: delete the one before */
		if (prev && bpf_map_lookup_elem(fd, prev, &f) == 0 && f.instance != d->instance &&
		    bpf_map_delete_elem(fd, prev) == 0)
			swept++;
		memcpy(key, next, sizeof(key));
		prev = key;
	}
	if (prev && bpf_map_lookup_elem(fd, prev, &f) == 0 && f.instance != d->instance &&
	    bpf_map_delete_elem(fd, prev) == 0)
		swept++;
	if (swept)
		pr_info("tunnel_facts: %u streams of an earlier daemon had no conn_end (lost "
			"events); forgotten",
			swept);
	d->facts_swept = true;
}
