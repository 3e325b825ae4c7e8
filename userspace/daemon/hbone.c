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
 * Files: this one holds TLS, connections, the streams' plain sockets, the
 * outbound pool, flow-record joins and credentials; hbone_h2.c the HTTP/2
 * session of a connection (nghttp2's callbacks, the inbound side's checks
 * of a CONNECT); hbone_int.h the types and functions they share.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <uthash.h>

#include "daemon.h"
#include "drop_reason.h"
#include "flow_record.h"
#include "hbone_int.h"
#include "log.h"
#include "sockmesh.skel.h"
#include "tlsctx.h"

#include <sockmesh/intercept.h>

#define HB_BUF		   (256 * 1024) /* read size from a plain socket */
#define HB_TLS_READ	   16384
#define HB_TLS_RBUF	   (64 * 1024) /* OpenSSL's read-ahead buffer: several records per read() */
#define HB_TLS_WBUF	   (128 * 1024) /* TLS records gathered per send() */
#define HB_MAX_HANDSHAKING 256		/* inbound handshakes in flight at once, per worker */
#define HB_JOIN_LINGER_S   60		/* a join entry outlives its stream this long */
#define HB_PUMP_ROUNDS	   64		/* reads per event, for fairness */
#define HB_KEEP_BUF	   (16 * 1024)	/* emptied buffers up to this size are freed */

/*
 * A source of inbound handshakes: one IPv4 address, or one IPv6 /64 (what
 * one host usually holds). Exists while it has handshakes in flight.
 */
struct hb_src {
	struct {
		uint8_t family;
		uint8_t addr[16];
	} key;
	unsigned int handshaking;
	UT_hash_handle hh;
};

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

/* A watched credential directory: -1 = the node's, else a catalog workload index. */
struct hb_watch {
	int wd;
	int owner;
	bool dirty;
	int64_t dirty_ns; /* last change seen; reload once it has been quiet a while */
	bool expiry_warned;
};

/* Shared, main thread: credential sets (workers read them; swapped while they are paused). */
struct sm_hbone {
	struct sm_creds *node_creds;
	struct sm_creds **wl_creds;	 /* per catalog workload, NULL when not local */
	char (*wl_sni)[SM_SNI_NAME_LEN]; /* per catalog workload with credentials: its SNI name */
	unsigned int nwl; /* entries of wl_creds and wl_sni (the catalog they were made for) */
	int addr_owner[SM_NODE_ADDRS_MAX]; /* per node address: the one local workload whose
					      services use it (with credentials), else -1 */
	int inotify_fd;
	struct sm_ev *inotify_ev;
	struct hb_watch *watches;
	unsigned int nwatches;
	uint64_t creds_reloads, creds_reload_failures, creds_expiring;
	BIO_METHOD *wbio_method; /* see tls_wbio_write() */
};

static size_t buf_pending(const struct hb_buf *b)
{
	return b->len - b->off;
}

/* Room for more bytes at data + len; 0 or -ENOMEM. */
static int buf_reserve(struct hb_buf *b, size_t more)
{
	uint8_t *p;
	size_t cap;

	if (b->off == b->len) {
		b->off = 0;
		b->len = 0;
	}
	if (b->len + more <= b->cap)
		return 0;
	if (b->off) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->len + more <= b->cap)
			return 0;
	}
	cap = b->cap ? b->cap : 4096; /* idle streams stay small */
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

/*
 * An emptied small buffer is freed: an idle stream then holds no buffer at
 * all (2,000 idle streams held 8 KiB each per node). Bulk streams, whose
 * buffers have grown past HB_KEEP_BUF, keep theirs.
 */
static void buf_release_small(struct hb_buf *b)
{
	if (b->cap && b->cap <= HB_KEEP_BUF && b->off == b->len) {
		free(b->data);
		memset(b, 0, sizeof(*b));
	}
}

int buf_append(struct hb_buf *b, const uint8_t *p, size_t n)
{
	if (buf_reserve(b, n))
		return -ENOMEM;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static void set_mark(struct sm_daemon *d, int fd)
{
	int one = 1;

	/* the mark keeps the daemon's own connections out of connect4/6 */
	setsockopt(fd, SOL_SOCKET, SO_MARK, &d->cfg.daemon_mark, sizeof(d->cfg.daemon_mark));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void fail_count(struct sm_hbone_worker *hw, const char *reason)
{
	for (int i = 0; i < SM_SVID_REASON_MAX; i++) {
		if (strcmp(reason, sm_svid_reason_name((enum sm_svid_reason) i)) == 0) {
			SM_STAT_INC(hw->st.tls_failed[i]);
			return;
		}
	}
	SM_STAT_INC(hw->st.tls_failed_other);
}

/* ---- inbound handshakes by source ---- */

static void src_key(struct hb_src *k, const struct sm_addr *a)
{
	memset(&k->key, 0, sizeof(k->key));
	k->key.family = a->family;
	/* an IPv6 host usually holds a whole /64: count it as one source */
	memcpy(k->key.addr, a->bytes, a->family == AF_INET ? 4 : 8);
}

static struct hb_src *src_find(struct sm_hbone_worker *hw, const struct sm_addr *a)
{
	struct hb_src probe, *src = NULL;

	src_key(&probe, a);
	HASH_FIND(hh, hw->srcs, &probe.key, sizeof(probe.key), src);
	return src;
}

/* Count c's handshake against its source. 0 or -ENOMEM. */
static int src_hold(struct sm_hbone_worker *hw, struct hb_conn *c)
{
	struct hb_src *src = src_find(hw, &c->peer);

	if (!src) {
		src = calloc(1, sizeof(*src));
		if (!src)
			return -ENOMEM;
		src_key(src, &c->peer);
		HASH_ADD(hh, hw->srcs, key, sizeof(src->key), src);
	}
	src->handshaking++;
	c->src = src;
	return 0;
}

/* c's handshake is over (done, failed or freed): it no longer counts. */
static void src_release(struct sm_hbone_worker *hw, struct hb_conn *c)
{
	struct hb_src *src = c->src;

	if (!src)
		return;
	c->src = NULL;
	if (--src->handshaking == 0) {
		HASH_DEL(hw->srcs, src);
		free(src);
	}
}

/* ---- flow-record joins ---- */

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
	wl = sm_workload_by_cgroup(d, r->cgroup_id);
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

/* The service hosted on this node at addr:port, or -1. */
int local_service(const struct sm_daemon *d, const struct sm_addr *a, uint16_t port)
{
	for (unsigned int i = 0; i < d->cat.nservices; i++) {
		const struct sm_service_def *sv = &d->cat.services[i];

		if (sv->port == port && sm_addr_equal(&sv->addr, a) &&
		    d->cat.workloads[sv->workload].node == (unsigned int) d->node_idx)
			return (int) i;
	}
	return -1;
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

/* ---- streams ---- */

struct hb_stream *stream_new(struct hb_conn *c, int fd)
{
	struct hb_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->conn = c;
	s->fd = fd;
	s->id = -1;
	s->next = c->streams;
	c->streams = s;
	c->nstreams++;
	c->idle_since = 0;
	SM_STAT_INC(c->w->hb->st.streams_open);
	SM_STAT_INC(c->w->hb->st.streams_total);
	return s;
}

/* The stream failed: RST_STREAM to the peer, reset of the plain socket at reap. */
void stream_fail(struct hb_stream *s, uint32_t h2_error, const char *reason)
{
	struct hb_conn *c = s->conn;

	if (s->dead)
		return;
	SM_STAT_INC(c->w->hb->st.streams_failed);
	join_update(s, reason);
	if (s->id > 0 && c->h2 && !s->h2_closed)
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, h2_error);
	s->dead = true;
	s->reset = true;
	pr_debug("stream %d (%s) failed: %s", s->id, s->authority, reason);
}

static void stream_interest(struct hb_stream *s)
{
	uint32_t want = 0;

	if (!s->ev || s->dead)
		return;
	if (s->fd_connecting) {
		want = EPOLLOUT;
	} else {
		if (s->established && !s->fd_eof && buf_pending(&s->up) == 0)
			want |= EPOLLIN;
		if (buf_pending(&s->down) > 0)
			want |= EPOLLOUT;
	}
	sm_evloop_mod(s->conn->w->loop, s->ev, want);
}

/* Write what HTTP/2 delivered to the plain socket; acknowledge it to the peer. */
void stream_flush_down(struct hb_stream *s)
{
	struct hb_conn *c = s->conn;
	size_t written = 0;

	if (s->dead || s->fd_connecting || s->fd < 0)
		return;
	while (buf_pending(&s->down) > 0) {
		ssize_t n = send(s->fd, s->down.data + s->down.off, buf_pending(&s->down),
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			stream_fail(s, NGHTTP2_CONNECT_ERROR,
				    sm_drop_reason_name(SM_DROP_PLAIN_SOCKET_RESET));
			return;
		}
		s->down.off += (size_t) n;
		written += (size_t) n;
	}
	/* acknowledging only what reached the socket reopens the peer's window */
	if (written && c->h2) {
		if (s->h2_closed)
			nghttp2_session_consume_connection(c->h2, written);
		else
			nghttp2_session_consume(c->h2, s->id, written);
	}
	if (buf_pending(&s->down) == 0 && s->h2_eof && !s->fd_shut) {
		shutdown(s->fd, SHUT_WR);
		s->fd_shut = true;
	}
	buf_release_small(&s->down);
}

/* Read the plain socket into the up buffer and wake the data provider. */
static void stream_read_up(struct hb_stream *s)
{
	struct hb_conn *c = s->conn;
	ssize_t n;

	if (s->dead || s->fd_eof || !s->established || buf_pending(&s->up) > 0)
		return;
	/* start small (idle streams cost little) and grow while reads fill the buffer */
	if (!s->read_size)
		s->read_size = 4096;
	if (buf_reserve(&s->up, s->read_size)) {
		stream_fail(s, NGHTTP2_INTERNAL_ERROR, sm_drop_reason_name(SM_DROP_OUT_OF_MEMORY));
		return;
	}
	n = recv(s->fd, s->up.data + s->up.len, s->read_size, 0);
	if (n > 0) {
		if ((size_t) n == s->read_size && s->read_size < HB_BUF)
			s->read_size *= 2;
		s->up.len += (size_t) n;
	} else if (n == 0) {
		s->fd_eof = true;
	} else {
		if (errno != EAGAIN && errno != EINTR)
			stream_fail(s, NGHTTP2_CONNECT_ERROR,
				    sm_drop_reason_name(SM_DROP_PLAIN_SOCKET_RESET));
		return;
	}
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(c->h2, s->id);
	}
}

/* nghttp2 pulls the bytes of our DATA frames from here. */
ssize_t data_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		  nghttp2_data_source *src, void *user)
{
	struct hb_stream *s = src->ptr;
	size_t n;

	(void) h2;
	(void) id;
	(void) user;
	if (!s || s->dead)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = buf_pending(&s->up);
	if (n && s->established) {
		if (n > len)
			n = len;
		memcpy(buf, s->up.data + s->up.off, n);
		s->up.off += n;
		if (buf_pending(&s->up) == 0 && s->fd_eof)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
		buf_release_small(&s->up);
		return (ssize_t) n;
	}
	if (s->fd_eof && s->established) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	s->deferred = true;
	return NGHTTP2_ERR_DEFERRED;
}

/* ---- connections ---- */

void conn_fail(struct hb_conn *c, const char *reason)
{
	if (c->dead)
		return;
	if (!c->failure[0])
		sm_strlcpy(c->failure, reason, sizeof(c->failure));
	for (struct hb_stream *s = c->streams; s; s = s->next)
		stream_fail(s, NGHTTP2_CONNECT_ERROR, reason);
	c->dead = true;
	pr_debug("%s connection %s: %s", c->server ? "inbound" : "outbound", c->peer_spiffe,
		 reason);
}

static void conn_free(struct hb_conn *c)
{
	struct sm_hbone_worker *hw = c->w->hb;
	struct hb_conn **pp;

	for (pp = &hw->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->server && c->handshaking)
		hw->handshaking_in--;
	src_release(hw, c);
	if (c->server)
		SM_STAT_DEC(hw->st.conns_in);
	else
		SM_STAT_DEC(hw->st.conns_out);
	sm_evloop_del(c->w->loop, c->ev);
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd >= 0) {
		if (c->failure[0])
			sm_sock_close_reset(c->fd);
		else
			close(c->fd);
	}
	nghttp2_session_del(c->h2);
	sm_creds_put(c->creds);
	free(c->out.data);
	free(c->tls_out.data);
	free(c);
}

/* Free what handlers marked dead; stream fds get their final interest. */
void conn_reap(struct hb_conn *c)
{
	struct hb_stream **pp = &c->streams;

	while (*pp) {
		struct hb_stream *s = *pp;
		bool finished = !s->fd_connecting && s->h2_closed && s->fd_eof && s->fd_shut &&
				buf_pending(&s->down) == 0;

		if (!s->dead && (finished || c->dead)) {
			/* both ways done cleanly; or the tunnel is gone under the stream */
			s->dead = true;
			s->reset = !finished;
		}
		if (!s->dead) {
			stream_interest(s);
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		/* bytes we will never write still hold the connection's window */
		if (buf_pending(&s->down) && c->h2 && !c->dead)
			nghttp2_session_consume_connection(c->h2, buf_pending(&s->down));
		if (s->fd >= 0) {
			sm_evloop_del(c->w->loop, s->ev);
			if (s->reset)
				sm_sock_close_reset(s->fd);
			else
				sm_sock_close_orderly(s->fd);
		}
		if (s->published && !c->w->hb->stopping)
			sm_tunnel_fact_forget(c->d, &s->key_addr, s->key_port);
		if (s->key_port) {
			struct sm_hbone_worker *hw = c->w->hb;
			struct hb_join *j;

			pthread_mutex_lock(&hw->join_mu);
			j = join_find(hw, &s->key_addr, s->key_port);
			if (j && !j->expires)
				j->expires = sm_mono_s() + HB_JOIN_LINGER_S;
			pthread_mutex_unlock(&hw->join_mu);
		}
		if (s->id > 0 && c->h2)
			nghttp2_session_set_stream_user_data(c->h2, s->id, NULL);
		free(s->up.data);
		free(s->down.data);
		c->nstreams--;
		SM_STAT_DEC(c->w->hb->st.streams_open);
		free(s);
	}
	if (c->nstreams == 0 && !c->idle_since)
		c->idle_since = sm_mono_s();
	if (c->dead)
		conn_free(c);
}

static void handshake_done(struct hb_conn *c)
{
	struct sm_hbone_worker *hw = c->w->hb;
	enum sm_svid_reason why;

	c->handshaking = false;
	c->established_ns = sm_mono_ns();
	c->handshake_us = (uint32_t) ((c->established_ns - c->started_ns) / 1000);
	if (c->server)
		hw->handshaking_in--;
	src_release(hw, c);
	why = sm_tls_peer_result(c->ssl, c->peer_spiffe, sizeof(c->peer_spiffe));
	if (why != SM_SVID_OK) {
		/* cannot happen with SSL_VERIFY_PEER, but never trust an unverified peer */
		fail_count(hw, sm_svid_reason_name(why));
		if (c->server)
			record_failure(c, sm_svid_reason_name(why), NULL);
		conn_fail(c, sm_svid_reason_name(why));
		return;
	}
	if (!c->server && strcmp(c->peer_spiffe, c->expect[0]) != 0 &&
	    strcmp(c->peer_spiffe, c->expect[1]) != 0) {
		pr_warn("server %s presented %s, but the catalog names %s (or its node %s)",
			c->expect[0], c->peer_spiffe, c->expect[0], c->expect[1]);
		fail_count(hw, sm_drop_reason_name(SM_DROP_IDENTITY_MISMATCH));
		conn_fail(c, sm_drop_reason_name(SM_DROP_IDENTITY_MISMATCH));
		return;
	}
	SM_STAT_INC(hw->st.tls_ok);
	for (struct hb_stream *s = c->streams; s; s = s->next)
		join_update(s, NULL);
}

/* Why a handshake failed, in the words of sm_svid_reason_name() where possible. */
static const char *handshake_failure(struct hb_conn *c)
{
	char ignored[8];
	enum sm_svid_reason why = sm_tls_peer_result(c->ssl, ignored, sizeof(ignored));
	unsigned long e = ERR_peek_last_error();

	if (why != SM_SVID_OK && why != SM_SVID_PROTOCOL)
		return sm_svid_reason_name(why);
	/* the peer refused us: its alert says why */
	switch (ERR_GET_REASON(e)) {
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		return sm_drop_reason_name(SM_DROP_PEER_REFUSED_EXPIRED);
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return sm_drop_reason_name(SM_DROP_PEER_REFUSED_UNKNOWN_CA);
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		return sm_drop_reason_name(SM_DROP_PEER_REFUSED_CERTIFICATE);
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return sm_drop_reason_name(SM_DROP_PEER_REQUIRES_CERTIFICATE);
	default:
		return sm_svid_reason_name(SM_SVID_PROTOCOL);
	}
}

/*
 * TLS output. OpenSSL writes each record (16 KiB at most) with its own
 * write() to a socket BIO; every write() is a TCP push, and on a veth the
 * peer's receive processing runs inline in the sender's thread, once per
 * push. Records go to tls_out instead, through the BIO below, and reach the
 * socket in one send() per pump round (or per HB_TLS_WBUF). One iperf3
 * stream through a two-node sandbox went from 5.6-5.9 to 6.4-7.2 Gbit/s;
 * bench/README.md has the run against HAProxy. Kernel TLS, once the kernel
 * has it, would make the socket the record writer again.
 *
 * Returns 0 when all is sent, -EAGAIN when the socket is full (the rest
 * waits for EPOLLOUT), or -errno.
 */
static int tls_flush(struct hb_conn *c)
{
	while (buf_pending(&c->tls_out) > 0) {
		ssize_t n = send(c->fd, c->tls_out.data + c->tls_out.off, buf_pending(&c->tls_out),
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			SM_STAT_INC(c->w->hb->st.tls_send_blocked);
			return -EAGAIN;
		}
		c->tls_out.off += (size_t) n;
	}
	buf_release_small(&c->tls_out);
	return 0;
}

/*
 * The peer closed without a close_notify (OpenSSL 3 calls that an unexpected
 * EOF) or reset the connection: what a daemon that stops or dies leaves.
 * e: SSL_get_error() of a read that returned r; errno as that read left it.
 */
static bool peer_gone(int e, int r)
{
	if (e == SSL_ERROR_SYSCALL)
		return r == 0 || errno == ECONNRESET || errno == EPIPE;
	return e == SSL_ERROR_SSL &&
	       ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* Takes a record unless HB_TLS_WBUF bytes still wait: then OpenSSL retries it later. */
static int tls_wbio_write(BIO *b, const char *data, int len)
{
	struct hb_conn *c = BIO_get_data(b);
	int r;

	BIO_clear_retry_flags(b);
	if (buf_pending(&c->tls_out) >= HB_TLS_WBUF) {
		r = tls_flush(c);
		if (r == -EAGAIN) {
			BIO_set_retry_write(b);
			return -1;
		}
		if (r < 0) {
			errno = -r;
			return -1;
		}
	}
	if (len <= 0)
		return 0;
	if (buf_append(&c->tls_out, (const uint8_t *) data, (size_t) len)) {
		errno = ENOMEM;
		return -1;
	}
	return len;
}

static long tls_wbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct hb_conn *c = BIO_get_data(b);
	int r;

	(void) num;
	(void) ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH: /* the end of a handshake flight, or an alert */
		BIO_clear_retry_flags(b);
		r = tls_flush(c);
		if (r == -EAGAIN)
			BIO_set_retry_write(b);
		else if (r < 0)
			errno = -r;
		return r == 0 ? 1 : -1;
	case BIO_CTRL_WPENDING:
		return (long) buf_pending(&c->tls_out);
	default:
		return 0;
	}
}

static BIO_METHOD *tls_wbio_method_new(void)
{
	BIO_METHOD *m =
		BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sockmesh tls out");

	if (m && (!BIO_meth_set_write(m, tls_wbio_write) || !BIO_meth_set_ctrl(m, tls_wbio_ctrl))) {
		BIO_meth_free(m);
		m = NULL;
	}
	return m;
}

/* Drive TLS and HTTP/2 as far as the sockets allow. */
static void conn_pump(struct hb_conn *c)
{
	uint8_t buf[HB_TLS_READ];
	uint32_t want = EPOLLIN;
	int r, e;

	if (c->dead)
		return;
	if (c->handshaking) {
		ERR_clear_error();
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				/*
				 * OpenSSL flushes its flights itself; this sends
				 * anything it left. A send error shows up at the
				 * next step of the handshake, with its reason.
				 */
				(void) tls_flush(c);
				want = e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
				if (buf_pending(&c->tls_out))
					want |= EPOLLOUT;
				sm_evloop_mod(c->w->loop, c->ev, want);
				return;
			}
			const char *why =
				e == SSL_ERROR_SYSCALL && errno && !c->server
					? sm_drop_reason_name(SM_DROP_TUNNEL_CONNECT_FAILED)
					: handshake_failure(c);

			fail_count(c->w->hb, why);
			if (c->server)
				record_failure(c, why, NULL);
			conn_fail(c, why);
			return;
		}
		handshake_done(c);
		if (c->dead)
			return;
		c->rx_ready = true; /* the peer's first frames may have come with its Finished */
	}

	/*
	 * Records read ahead wait in OpenSSL's buffer, where no epoll event
	 * announces them: they are always read out, past the round limit too.
	 */
	for (int round = 0; (c->rx_ready && round < HB_PUMP_ROUNDS) || SSL_has_pending(c->ssl);
	     round++) {
		ERR_clear_error();
		r = SSL_read(c->ssl, buf, sizeof(buf));
		if (r > 0) {
			c->last_rx_ns = sm_mono_ns();
			if (hb_h2_recv(c, buf, (size_t) r))
				return;
			if (c->rx_short)
				c->rx_ready = false;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			c->rx_ready = false;
			break;
		}
		if (e == SSL_ERROR_ZERO_RETURN || peer_gone(e, r)) {
			/*
			 * The peer closed or went away (a daemon that dies leaves a
			 * reset): streams that are still open were cut off.
			 */
			for (struct hb_stream *s = c->streams; s; s = s->next)
				if (!s->h2_closed)
					stream_fail(s, NGHTTP2_CONNECT_ERROR,
						    sm_drop_reason_name(SM_DROP_TUNNEL_CLOSED));
			c->dead = true;
			return;
		}
		conn_fail(c, sm_drop_reason_name(SM_DROP_TLS_ERROR));
		return;
	}
	/* what this round delivered goes to the plain sockets in one write each */
	for (struct hb_stream *s = c->streams; s; s = s->next)
		if (buf_pending(&s->down) > 0)
			stream_flush_down(s);

	for (int round = 0; round < HB_PUMP_ROUNDS; round++) {
		if (hb_h2_gather(c))
			return;
		if (buf_pending(&c->out) == 0)
			break;
		ERR_clear_error();
		r = SSL_write(c->ssl, c->out.data + c->out.off, (int) buf_pending(&c->out));
		if (r > 0) {
			c->out.off += (size_t) r;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
			break;
		conn_fail(c, sm_drop_reason_name(SM_DROP_TLS_ERROR));
		return;
	}
	r = tls_flush(c);
	if (r < 0 && r != -EAGAIN) {
		conn_fail(c, sm_drop_reason_name(r == -ECONNRESET || r == -EPIPE
							 ? SM_DROP_TUNNEL_CLOSED
							 : SM_DROP_TLS_ERROR));
		return;
	}
	if (buf_pending(&c->out) > 0 || nghttp2_session_want_write(c->h2) ||
	    buf_pending(&c->tls_out) > 0)
		want |= EPOLLOUT;
	sm_evloop_mod(c->w->loop, c->ev, want);
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	    buf_pending(&c->out) == 0 && buf_pending(&c->tls_out) == 0)
		c->dead = true; /* both sides said GOAWAY and all is sent */
}

static void on_conn(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct hb_conn *c = arg;

	(void) loop;
	(void) ev;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		c->rx_ready = true;
	conn_pump(c);
	conn_reap(c);
}

/* Notes whether the socket's last read() came back short: then it was drained. */
static long rbio_watch(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
		       size_t *processed)
{
	struct hb_conn *c = (struct hb_conn *) BIO_get_callback_arg(b);

	(void) argp;
	(void) argi;
	(void) argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && c)
		c->rx_short = ret <= 0 || !processed || *processed < len;
	return ret;
}

static struct hb_conn *conn_new(struct sm_worker *w, int fd, bool server, struct sm_creds *creds)
{
	struct hb_conn *c = calloc(1, sizeof(*c));
	SSL_CTX *ctx =
		server ? sm_creds_server_ctx(creds, w->id) : sm_creds_client_ctx(creds, w->id);
	BIO *wbio;

	if (!c)
		return NULL;
	c->d = w->d;
	c->w = w;
	c->fd = fd;
	c->server = server;
	c->handshaking = true;
	c->started_ns = sm_mono_ns();
	c->last_rx_ns = c->started_ns;
	c->creds = sm_creds_get(creds);
	c->ssl = SSL_new(ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1 || hb_h2_init(c))
		goto fail;
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* one read() takes what the socket holds, up to several records, not a header then a body
	 */
	SSL_set_read_ahead(c->ssl, 1);
	SSL_set_default_read_buffer_len(c->ssl, HB_TLS_RBUF);
	BIO_set_callback_ex(SSL_get_rbio(c->ssl), rbio_watch);
	BIO_set_callback_arg(SSL_get_rbio(c->ssl), (char *) c);
	wbio = BIO_new(w->d->hbone->wbio_method);
	if (!wbio)
		goto fail;
	BIO_set_data(wbio, c);
	BIO_set_init(wbio, 1);
	SSL_set0_wbio(c->ssl, wbio); /* reads stay on the socket BIO */
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	c->ev = sm_evloop_add(w->loop, fd, server ? EPOLLIN : EPOLLOUT, on_conn, c);
	if (!c->ev)
		goto fail;
	c->next = w->hb->conns;
	w->hb->conns = c;
	if (server)
		SM_STAT_INC(w->hb->st.conns_in);
	else
		SM_STAT_INC(w->hb->st.conns_out);
	return c;
fail:
	if (c->ssl)
		SSL_free(c->ssl);
	nghttp2_session_del(c->h2);
	sm_creds_put(c->creds);
	free(c);
	return NULL;
}

/* ---- plain sockets of streams ---- */

void stream_fd_event(struct hb_stream *s, uint32_t events)
{
	struct hb_conn *c = s->conn;

	if (s->dead)
		return;
	if (s->fd_connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			SM_STAT_INC(c->w->hb->st.upstream_errors);
			hb_respond(s, err == ECONNREFUSED ? "502" : "503",
				   err == ECONNREFUSED
					   ? sm_drop_reason_name(SM_DROP_UPSTREAM_REFUSED)
					   : sm_drop_reason_name(SM_DROP_UPSTREAM_UNREACHABLE));
		} else {
			hb_upstream_ready(s);
		}
	} else {
		if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			stream_read_up(s);
		if (events & EPOLLOUT)
			stream_flush_down(s);
	}
}

void on_stream_fd(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct hb_stream *s = arg;
	struct hb_conn *c = s->conn;

	(void) loop;
	(void) ev;
	if (s->dead)
		return;
	stream_fd_event(s, events);
	conn_pump(c);
	conn_reap(c);
}

/* ---- re-checking live streams when a policy revision goes live ---- */

/* Keep the revoking decision for the conn_end record of the stream's service socket. */
static void join_set_policy(struct hb_stream *s, const struct sm_flow_policy *pol)
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

uint64_t sm_hbone_policy_recheck(struct sm_daemon *d)
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

/* ---- outbound ---- */

/* The node that hosts addr:port (a service, else a workload's range) and its workload. */
static int destination_node(const struct sm_daemon *d, const struct sm_addr *a, uint16_t port,
			    int *workload)
{
	for (unsigned int i = 0; i < d->cat.nservices; i++) {
		const struct sm_service_def *sv = &d->cat.services[i];

		if (sv->port == port && sm_addr_equal(&sv->addr, a)) {
			*workload = (int) sv->workload;
			return (int) d->cat.workloads[sv->workload].node;
		}
	}
	return -1;
}

static struct sm_creds *workload_creds(struct sm_daemon *d, uint32_t identity)
{
	for (unsigned int i = 0; i < d->hbone->nwl && i < d->cat.nworkloads; i++)
		if (d->hbone->wl_creds[i] && d->cat.workloads[i].identity == identity &&
		    d->cat.workloads[i].node == (unsigned int) d->node_idx)
			return d->hbone->wl_creds[i];
	return NULL;
}

/* spiffe://<trust domain of example>/sockmesh/node/<node>: how nodes are named. */
static void node_spiffe_id(const char *example, const char *node, char *out, size_t len)
{
	char td[256];

	if (sm_spiffe_trust_domain(example, td, sizeof(td)))
		td[0] = '\0';
	snprintf(out, len, "spiffe://%s/sockmesh/node/%s", td, node);
}

/* A pooled connection with room for a stream, or a new one; NULL + errno. */
static struct hb_conn *pool_get(struct sm_worker *w, uint32_t src_id, uint32_t dst_id, int node,
				int wl, struct sm_creds *creds)
{
	struct sm_daemon *d = w->d;
	const struct sm_node_def *n = &d->cat.nodes[node];
	struct sockaddr_storage ss;
	struct hb_conn *c;
	socklen_t sl;
	int fd;

	for (c = w->hb->conns; c; c = c->next)
		if (!c->server && !c->dead && !c->goaway && c->src_id == src_id &&
		    c->dst_id == dst_id && c->node == node &&
		    c->nstreams < d->cfg.tunnel_max_streams &&
		    /* past the peer's limit a stream would wait, unopened, for another to end */
		    c->nstreams < nghttp2_session_get_remote_settings(
					  c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
			return c;
	if (n->naddrs == 0) {
		errno = EHOSTUNREACH;
		return NULL;
	}
	fd = socket(n->addrs[0].family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	set_mark(d, fd);
	sl = sm_addr_to_sockaddr(&n->addrs[0], d->cfg.inbound_port, &ss);
	if (connect(fd, (struct sockaddr *) &ss, sl) < 0 && errno != EINPROGRESS) {
		int err = errno;

		close(fd);
		errno = err;
		return NULL;
	}
	c = conn_new(w, fd, false, creds);
	if (!c) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	c->src_id = src_id;
	c->dst_id = dst_id;
	c->node = node;
	c->peer = n->addrs[0];
	c->peer_port = d->cfg.inbound_port;
	sm_strlcpy(c->expect[0], d->cat.workloads[wl].spiffe_id, sizeof(c->expect[0]));
	node_spiffe_id(d->cat.workloads[wl].spiffe_id, n->name, c->expect[1], sizeof(c->expect[1]));
	if (d->cfg.tunnel_sni) {
		char sni[SM_SNI_NAME_LEN];

		/* ask for the destination workload's SVID (the server may still send its node's) */
		if (sm_spiffe_sni_name(c->expect[0], sni, sizeof(sni)) == 0)
			SSL_set_tlsext_host_name(c->ssl, sni);
	}
	return c;
}

/* W3C trace context: a fresh trace id shared by both nodes' records. */
static void new_traceparent(char *out, size_t len)
{
	unsigned char r[24];
	char hex[49];

	if (RAND_bytes(r, sizeof(r)) != 1)
		memset(r, 0x5a, sizeof(r));
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	snprintf(out, len, "00-%.32s-%.16s-01", hex, hex + 32);
}

int sm_hbone_outbound(struct sm_worker *w, int cfd, const struct sm_addr *dst, uint16_t dport,
		      const struct sm_addr *cli, uint16_t cport)
{
	struct sm_daemon *d = w->d;
	struct sm_hbone *hb = d->hbone;
	nghttp2_data_provider prd = {.read_callback = data_read};
	char abuf[INET6_ADDRSTRLEN];
	struct sm_creds *creds;
	struct hb_stream *s;
	struct hb_conn *c;
	uint32_t src_id = 0;
	int node, wl = -1;

	if (!hb || !w->hb)
		return -ENOTCONN;
	node = destination_node(d, dst, dport, &wl);
	if (node < 0 || node == d->node_idx)
		return -EHOSTUNREACH;
	if (sm_proxy_source_identity(d, cfd, cli, cport, &src_id))
		return -ENOENT;
	creds = workload_creds(d, src_id);
	if (!creds)
		creds = hb->node_creds;
	if (!creds)
		return -ENOKEY;
	c = pool_get(w, src_id, d->cat.workloads[wl].identity, node, wl, creds);
	if (!c)
		return errno ? -errno : -ECONNREFUSED; /* e.g. EMFILE: the log names it */
	s = stream_new(c, cfd);
	if (!s)
		return -ENOMEM;
	s->key_addr = *cli;
	s->key_port = cport;
	sm_addr_format(dst, abuf, sizeof(abuf));
	snprintf(s->authority, sizeof(s->authority), dst->family == AF_INET6 ? "[%s]:%u" : "%s:%u",
		 abuf, dport);
	new_traceparent(s->trace, sizeof(s->trace));
	{
		nghttp2_nv nv[] = {
			{(uint8_t *) ":method", (uint8_t *) "CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE},
			{(uint8_t *) ":authority", (uint8_t *) s->authority, 10,
			 strlen(s->authority), NGHTTP2_NV_FLAG_NONE},
			{(uint8_t *) "traceparent", (uint8_t *) s->trace, 11, strlen(s->trace),
			 NGHTTP2_NV_FLAG_NONE},
		};

		prd.source.ptr = s;
		s->id = nghttp2_submit_request(c->h2, NULL, nv, SM_ARRAY_SIZE(nv), &prd, s);
	}
	s->ev = sm_evloop_add(w->loop, cfd, 0, on_stream_fd, s);
	if (s->id < 0 || !s->ev) {
		/* the caller still owns cfd: give it back untouched */
		s->fd = -1;
		sm_evloop_del(w->loop, s->ev);
		s->ev = NULL;
		s->dead = true;
		conn_reap(c);
		return -ENOMEM;
	}
	join_update(s, NULL);
	conn_pump(c);
	conn_reap(c);
	return 0;
}

/* ---- inbound ---- */

/* SNI named a SPIFFE ID: answer with that local workload's SVID if we hold it. */
static SSL_CTX *pick_by_sni(SSL *ssl, const char *name, void *arg)
{
	struct hb_conn *c = arg;
	struct sm_hbone *hb = c->d->hbone;

	(void) ssl;
	for (unsigned int i = 0; i < hb->nwl; i++) {
		struct sm_creds *cr = hb->wl_creds[i];

		if (!cr || strcmp(hb->wl_sni[i], name) != 0)
			continue;
		if (cr != c->creds) {
			sm_creds_put(c->creds);
			c->creds = sm_creds_get(cr);
		}
		if (!c->sni_selected)
			SM_STAT_INC(c->w->hb->st.sni_selected);
		c->sni_selected = true;
		return sm_creds_server_ctx(cr, c->w->id);
	}
	return NULL; /* unknown name: the default SVID; the client decides */
}

/* The SVID a listener presents when SNI names none: its address's one workload, or the node. */
static struct sm_creds *listener_creds(const struct sm_hbone *hb, unsigned int addr)
{
	int owner = addr < SM_NODE_ADDRS_MAX ? hb->addr_owner[addr] : -1;

	if (owner >= 0 && (unsigned int) owner < hb->nwl && hb->wl_creds[owner])
		return hb->wl_creds[owner];
	return hb->node_creds;
}

/*
 * The DROPPED record of an inbound connection refused at accept: it has no
 * hb_conn of its own, so a stand-in carries what record_failure() reads.
 */
static void record_refused(struct sm_worker *w, int fd, const struct sm_addr *peer, uint16_t port,
			   const char *reason)
{
	struct hb_conn tmp;

	memset(&tmp, 0, sizeof(tmp));
	tmp.d = w->d;
	tmp.w = w;
	tmp.server = true;
	tmp.fd = fd;
	tmp.peer = *peer;
	tmp.peer_port = port;
	tmp.started_ns = sm_mono_ns();
	record_failure(&tmp, reason, NULL);
}

/*
 * All handshake slots are taken: make room by cutting off the oldest
 * handshake of the source with the most in flight, if that source holds
 * more than the newcomer's would (have + 1). So a flood from a few
 * addresses, each under the per-source limit, still never refuses a
 * lighter source's clients. Returns true when a slot was freed.
 */
static bool evict_heaviest(struct sm_hbone_worker *hw, unsigned int have)
{
	struct hb_src *src, *heavy = NULL;
	struct hb_conn *victim = NULL;

	for (src = hw->srcs; src; src = src->hh.next)
		if (!heavy || src->handshaking > heavy->handshaking)
			heavy = src;
	if (!heavy || heavy->handshaking <= have + 1)
		return false;
	/* the list is newest first: the last match is the oldest */
	for (struct hb_conn *c = hw->conns; c; c = c->next)
		if (c->server && c->handshaking && !c->dead && c->src == heavy)
			victim = c;
	if (!victim)
		return false;
	SM_STAT_INC(hw->st.handshakes_evicted);
	fail_count(hw, sm_drop_reason_name(SM_DROP_HANDSHAKE_LIMIT));
	record_failure(victim, sm_drop_reason_name(SM_DROP_HANDSHAKE_LIMIT), NULL);
	conn_fail(victim, sm_drop_reason_name(SM_DROP_HANDSHAKE_LIMIT));
	conn_reap(victim);
	return true;
}

static void on_accept(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct hb_listener *l = arg;
	struct sm_worker *w = l->w;
	struct sm_hbone_worker *hw = w->hb;
	unsigned int per_source = w->d->cfg.tunnel_max_handshakes_per_source;
	bool rest = false;

	(void) loop;
	(void) ev;
	(void) events;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char buf[INET6_ADDRSTRLEN];
		struct sm_addr peer;
		uint16_t port = 0;
		struct hb_src *src;
		struct hb_conn *c;
		bool no_fd;
		int fd = sm_worker_accept(w, l->fd, &ss, &sl, &no_fd);

		if (fd == -EMFILE || fd == -ENFILE) {
			rest = true; /* not even the spare: the backlog waits for the backoff */
			break;
		}
		if (fd < 0) {
			if (fd != -EAGAIN)
				pr_warn_limited("accept on the HBONE listener: %s", strerror(-fd));
			break;
		}
		sm_addr_from_sockaddr((struct sockaddr *) &ss, &peer, &port);
		if (no_fd) {
			SM_STAT_INC(hw->st.accept_no_fd);
			pr_warn_limited("accept on the HBONE listener: %s: the connection from "
					"%s:%u is reset (raise the daemon's descriptor limit, "
					"LimitNOFILE=; `sockmesh status`: tunnel.accept_no_fd)",
					strerror(EMFILE), sm_addr_format(&peer, buf, sizeof(buf)),
					port);
			record_refused(w, fd, &peer, port,
				       sm_drop_reason_name(SM_DROP_FD_EXHAUSTED));
			sm_worker_refuse(w, fd);
			rest = true;
			continue;
		}
		if (w->draining) {
			SM_STAT_INC(hw->st.refused_busy);
			sm_sock_close_reset(fd);
			continue;
		}
		src = src_find(hw, &peer);
		if (src && src->handshaking >= per_source) {
			SM_STAT_INC(hw->st.refused_per_source);
			pr_warn_limited("refusing an HBONE connection from %s: %u handshakes from "
					"there are in progress already (tunnel."
					"max_handshakes_per_source; `sockmesh status`: "
					"tunnel.refused_per_source)",
					sm_addr_format(&peer, buf, sizeof(buf)), src->handshaking);
			record_refused(w, fd, &peer, port,
				       sm_drop_reason_name(SM_DROP_HANDSHAKE_LIMIT));
			sm_sock_close_reset(fd);
			continue;
		}
		if (hw->handshaking_in >= HB_MAX_HANDSHAKING &&
		    !evict_heaviest(hw, src ? src->handshaking : 0)) {
			SM_STAT_INC(hw->st.refused_busy);
			pr_warn_limited("refusing an HBONE connection from %s: all %u handshake "
					"slots of worker %u are taken (`sockmesh status`: "
					"tunnel.refused_busy)",
					sm_addr_format(&peer, buf, sizeof(buf)), HB_MAX_HANDSHAKING,
					w->id);
			record_refused(w, fd, &peer, port,
				       sm_drop_reason_name(SM_DROP_HANDSHAKE_LIMIT));
			sm_sock_close_reset(fd);
			continue;
		}
		set_mark(w->d, fd);
		c = conn_new(w, fd, true, listener_creds(w->d->hbone, l->addr));
		if (!c) {
			sm_sock_close_reset(fd);
			continue;
		}
		c->peer = peer;
		c->peer_port = port;
		hw->handshaking_in++;
		if (src_hold(hw, c) || sm_tls_on_sni(c->ssl, pick_by_sni, c))
			conn_fail(c, sm_drop_reason_name(SM_DROP_OUT_OF_MEMORY));
		conn_pump(c);
		conn_reap(c);
	}
	if (rest && !l->resting) {
		l->resting = true;
		sm_evloop_mod(w->loop, l->ev, 0);
		sm_worker_backoff(w);
	}
}

static int listen_inbound(struct sm_worker *w, const struct sm_addr *a, unsigned int addr)
{
	struct sm_hbone_worker *hw = w->hb;
	struct hb_listener *l = &hw->l[hw->nl];
	char buf[INET6_ADDRSTRLEN];
	int fd, err;

	fd = sm_worker_listen(w, a, w->d->cfg.inbound_port, 1024);
	if (fd < 0) {
		pr_err("cannot listen for HBONE on %s port %u: %s (is the address on this node? "
		       "another sockmeshd? change listeners.inbound_port if the port is taken)",
		       sm_addr_format(a, buf, sizeof(buf)), w->d->cfg.inbound_port, strerror(-fd));
		return fd;
	}
	l->w = w;
	l->fd = fd;
	l->addr = addr;
	l->ev = sm_evloop_add(w->loop, fd, EPOLLIN, on_accept, l);
	if (!l->ev) {
		err = -errno;
		close(fd);
		return err;
	}
	hw->nl++;
	if (w->id == 0)
		pr_info("HBONE inbound listener on %s port %u", sm_addr_format(a, buf, sizeof(buf)),
			w->d->cfg.inbound_port);
	return 0;
}

/* ---- credential rotation ---- */

#define HB_QUIET_NS (300 * 1000000LL) /* writers update several files: wait until they are done */

static struct sm_creds **watch_slot(struct sm_daemon *d, const struct hb_watch *w)
{
	return w->owner < 0 ? &d->hbone->node_creds : &d->hbone->wl_creds[w->owner];
}

static const char *watch_dir(const struct sm_daemon *d, const struct hb_watch *w)
{
	return w->owner < 0 ? d->cat.nodes[d->node_idx].credentials
			    : d->cat.workloads[w->owner].credentials;
}

static void on_inotify(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	struct sm_hbone *hb = d->hbone;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	(void) loop;
	(void) ev;
	(void) events;
	while ((n = read(hb->inotify_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ie = (const struct inotify_event *) p;

			for (unsigned int i = 0; i < hb->nwatches; i++) {
				if (hb->watches[i].wd == ie->wd) {
					hb->watches[i].dirty = true;
					hb->watches[i].dirty_ns = sm_mono_ns();
				}
			}
			p += sizeof(*ie) + ie->len;
		}
	}
}

/*
 * A changed directory, once quiet: load the new set and swap it in for new
 * handshakes. Connections made with the old set keep their reference and are
 * not disturbed; a set that does not load leaves the old one in place. The
 * swap happens while the workers are paused (they read the slots unlocked).
 */
static void creds_reload(struct sm_daemon *d, struct hb_watch *w)
{
	struct sm_creds **slot = watch_slot(d, w), *fresh, *old;
	struct sm_error err = {{0}};
	const char *dir = watch_dir(d, w);

	w->dirty = false;
	fresh = sm_creds_load(dir, d->nworkers, &err);
	if (!fresh) {
		d->hbone->creds_reload_failures++;
		pr_warn("new credentials in %s refused, keeping the current ones: %s", dir,
			err.msg);
		return;
	}
	sm_workers_pause(d);
	old = *slot;
	*slot = fresh;
	sm_workers_resume(d);
	sm_creds_put(old);
	w->expiry_warned = false;
	d->hbone->creds_reloads++;
	pr_info("credentials in %s reloaded: %s, valid until %ld", dir, sm_creds_spiffe_id(fresh),
		(long) sm_creds_not_after(fresh));
}

/* Reload quiet changed sets; warn (once per set) about those close to expiry. */
static void creds_tick(struct sm_daemon *d)
{
	struct sm_hbone *hb = d->hbone;
	time_t now = time(NULL);
	uint64_t expiring = 0;

	for (unsigned int i = 0; i < hb->nwatches; i++) {
		struct hb_watch *w = &hb->watches[i];
		struct sm_creds *c;

		if (w->dirty && sm_mono_ns() - w->dirty_ns >= HB_QUIET_NS)
			creds_reload(d, w);
		c = *watch_slot(d, w);
		if (!c || sm_creds_not_after(c) - now > (time_t) d->cfg.tunnel_expiry_warning)
			continue;
		expiring++;
		if (!w->expiry_warned) {
			w->expiry_warned = true;
			pr_warn("credentials %s (%s) expire in %ld s; rotate them", watch_dir(d, w),
				sm_creds_spiffe_id(c), (long) (sm_creds_not_after(c) - now));
		}
	}
	hb->creds_expiring = expiring;
}

static int creds_watch(struct sm_daemon *d, int owner)
{
	struct sm_hbone *hb = d->hbone;
	struct hb_watch *grown;
	const char *dir;
	int wd;

	grown = realloc(hb->watches, (hb->nwatches + 1) * sizeof(*hb->watches));
	if (!grown)
		return -ENOMEM;
	hb->watches = grown;
	memset(&hb->watches[hb->nwatches], 0, sizeof(*hb->watches));
	hb->watches[hb->nwatches].owner = owner;
	dir = watch_dir(d, &hb->watches[hb->nwatches]);
	wd = inotify_add_watch(hb->inotify_fd, dir,
			       IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB);
	if (wd < 0) {
		pr_warn("cannot watch %s for rotation: %s (credentials there will not reload)", dir,
			strerror(errno));
		return 0;
	}
	hb->watches[hb->nwatches++].wd = wd;
	return 0;
}

static struct sm_creds *load_creds(const struct sm_daemon *d, const char *what, const char *dir)
{
	struct sm_error err = {{0}};
	struct sm_creds *c = sm_creds_load(dir, d->nworkers, &err);

	if (!c)
		pr_err("%s: cannot load credentials from %s: %s", what, dir, err.msg);
	else
		pr_info("%s: credentials %s (%s)", what, dir, sm_creds_spiffe_id(c));
	return c;
}

/* Drop every credential set and watch (connections keep their own references). */
static void creds_release_all(struct sm_daemon *d)
{
	struct sm_hbone *hb = d->hbone;

	for (unsigned int i = 0; i < hb->nwatches; i++)
		inotify_rm_watch(hb->inotify_fd, hb->watches[i].wd);
	free(hb->watches);
	hb->watches = NULL;
	hb->nwatches = 0;
	for (unsigned int i = 0; i < hb->nwl; i++)
		sm_creds_put(hb->wl_creds[i]);
	free(hb->wl_creds);
	hb->wl_creds = NULL;
	free(hb->wl_sni);
	hb->wl_sni = NULL;
	hb->nwl = 0;
	sm_creds_put(hb->node_creds);
	hb->node_creds = NULL;
}

/*
 * For each of this node's addresses, the one local workload with credentials
 * whose services use it, or -1 (none, or several: the node's SVID serves them).
 */
static void addr_owners(struct sm_daemon *d)
{
	const struct sm_node_def *self = &d->cat.nodes[d->node_idx];
	struct sm_hbone *hb = d->hbone;

	for (unsigned int a = 0; a < SM_NODE_ADDRS_MAX; a++)
		hb->addr_owner[a] = -1;
	for (unsigned int a = 0; a < self->naddrs && a < SM_NODE_ADDRS_MAX; a++) {
		for (unsigned int i = 0; i < d->cat.nservices; i++) {
			const struct sm_service_def *sv = &d->cat.services[i];
			int wl = (int) sv->workload;

			if (!sm_addr_equal(&sv->addr, &self->addrs[a]) || hb->addr_owner[a] == wl)
				continue;
			if (hb->addr_owner[a] != -1 || !hb->wl_creds[wl] ||
			    d->cat.workloads[wl].node != (unsigned int) d->node_idx) {
				hb->addr_owner[a] = -2; /* shared, or a workload without an SVID */
				break;
			}
			hb->addr_owner[a] = wl;
		}
		if (hb->addr_owner[a] < 0)
			hb->addr_owner[a] = -1;
	}
}

/* Load the node's and every local workload's credentials named by the catalog. */
static int creds_load_all(struct sm_daemon *d)
{
	const struct sm_node_def *self = &d->cat.nodes[d->node_idx];
	struct sm_hbone *hb = d->hbone;
	int err;

	/* an array of pointers to credential sets, one per catalog workload */
	// NOLINTNEXTLINE(bugprone-sizeof-expression)
	hb->wl_creds = calloc(d->cat.nworkloads ? d->cat.nworkloads : 1, sizeof(*hb->wl_creds));
	hb->wl_sni = calloc(d->cat.nworkloads ? d->cat.nworkloads : 1, sizeof(*hb->wl_sni));
	if (!hb->wl_creds || !hb->wl_sni)
		return -ENOMEM;
	hb->nwl = d->cat.nworkloads;
	if (!self->credentials[0]) {
		pr_err("node %s has no credentials in the catalog: the HBONE tunnel needs the "
		       "node's "
		       "SVID (add credentials: DIR to the node, or set tunnel.hbone: false)",
		       self->name);
		return -ENOKEY;
	}
	hb->node_creds = load_creds(d, self->name, self->credentials);
	if (!hb->node_creds)
		return -ENOKEY;
	err = creds_watch(d, -1);
	if (err)
		return err;
	for (unsigned int i = 0; i < d->cat.nworkloads; i++) {
		const struct sm_workload_def *w = &d->cat.workloads[i];

		if (w->node != (unsigned int) d->node_idx || !w->credentials[0])
			continue;
		hb->wl_creds[i] = load_creds(d, w->name, w->credentials);
		if (!hb->wl_creds[i])
			return -ENOKEY;
		if (sm_spiffe_sni_name(w->spiffe_id, hb->wl_sni[i], sizeof(hb->wl_sni[i])))
			hb->wl_sni[i][0] = '\0';
		err = creds_watch(d, (int) i);
		if (err)
			return err;
	}
	addr_owners(d);
	creds_tick(d);
	return 0;
}

int sm_hbone_catalog_changed(struct sm_daemon *d)
{
	int err;

	if (!d->hbone)
		return 0;
	creds_release_all(d);
	err = creds_load_all(d);
	if (err)
		pr_warn("the new catalog's credentials did not all load: tunnelled connections "
			"from "
			"the workloads concerned will fail until they do");
	return err;
}

/* ---- lifecycle ---- */

int sm_hbone_start(struct sm_daemon *d)
{
	struct sm_hbone *hb;

	if (!d->cfg.tunnel_hbone)
		return 0;
	hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	d->hbone = hb;
	hb->wbio_method = tls_wbio_method_new();
	if (!hb->wbio_method)
		return -ENOMEM;
	hb->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (hb->inotify_fd < 0)
		return -errno;
	hb->inotify_ev = sm_evloop_add(d->loop, hb->inotify_fd, EPOLLIN, on_inotify, d);
	if (!hb->inotify_ev)
		return -errno;
	return creds_load_all(d);
}

void sm_hbone_free(struct sm_daemon *d)
{
	struct sm_hbone *hb = d->hbone;

	if (!hb)
		return;
	if (hb->inotify_fd > 0) {
		creds_release_all(d);
		sm_evloop_del(d->loop, hb->inotify_ev);
		close(hb->inotify_fd);
	}
	sm_creds_put(hb->node_creds);
	BIO_meth_free(hb->wbio_method);
	free(hb);
	d->hbone = NULL;
}

void sm_hbone_tick(struct sm_daemon *d)
{
	if (d->hbone)
		creds_tick(d);
}

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
	err = -pthread_mutex_init(&hw->join_mu, NULL);
	if (err) {
		free(hw);
		return err;
	}
	hw->upstream_connect = sm_upstream_connect;
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
	struct hb_join *j, *tmp;

	if (!hw)
		return;
	sm_hbone_stop_accepting(w);
	hw->stopping = true;
	while (hw->conns) {
		struct hb_conn *c = hw->conns;

		conn_fail(c, sm_drop_reason_name(SM_DROP_DAEMON_STOPPED));
		conn_reap(c);
	}
	HASH_ITER(hh, hw->joins, j, tmp)
	{
		// uthash's delete-while-iterating idiom (see flowacct.c)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(hw->joins, j);
		free(j);
	}
	pthread_mutex_destroy(&hw->join_mu);
	free(hw);
	w->hb = NULL;
}

void sm_hbone_worker_tick(struct sm_worker *w)
{
	const struct sm_config *cfg = &w->d->cfg;
	struct sm_hbone_worker *hw = w->hb;
	int64_t now = sm_mono_s(), now_ns = sm_mono_ns();
	struct hb_join *j, *tmp;
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
	pthread_mutex_lock(&hw->join_mu);
	HASH_ITER(hh, hw->joins, j, tmp)
	{
		/* entries are calloc'ed: expires is always set (cppcheck loses that in uthash) */
		// cppcheck-suppress uninitvar
		if (j->expires && j->expires < now) {
			HASH_DEL(hw->joins, j);
			free(j);
		}
	}
	pthread_mutex_unlock(&hw->join_mu);
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

_Static_assert(sizeof(struct sm_hbone_stats) % sizeof(uint64_t) == 0,
	       "struct sm_hbone_stats holds uint64_t counters only");

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
