// SPDX-License-Identifier: Apache-2.0
/*
 * The tunnel's outbound side: a captured connection becomes one CONNECT
 * stream on a pooled mTLS connection to the destination node, keyed by
 * (source identity, destination identity, node) and made with the source
 * workload's SVID.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "catalog.h"
#include "daemon.h"
#include "evloop.h"
#include "hbone.h"
#include "hbone_int.h"
#include "upstream.h"
#include "spiffe.h"
#include "util.h"
#include "worker.h"

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
	char abuf[INET6_ADDRSTRLEN], fwd[64];
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
	if (sm_capture_source_identity(d, cfd, cli, cport, &src_id))
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
	/*
	 * The caller's address and port (RFC 7239), so the destination can
	 * call its service from them; it trusts the address only as far as it
	 * is one of this node's (hbone_h2.c).
	 */
	sm_addr_format(cli, abuf, sizeof(abuf));
	snprintf(fwd, sizeof(fwd), cli->family == AF_INET6 ? "for=\"[%s]:%u\"" : "for=\"%s:%u\"",
		 abuf, cport);
	{
		nghttp2_nv nv[] = {
			{(uint8_t *) ":method", (uint8_t *) "CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE},
			{(uint8_t *) ":authority", (uint8_t *) s->authority, 10,
			 strlen(s->authority), NGHTTP2_NV_FLAG_NONE},
			{(uint8_t *) "traceparent", (uint8_t *) s->trace, 11, strlen(s->trace),
			 NGHTTP2_NV_FLAG_NONE},
			{(uint8_t *) "forwarded", (uint8_t *) fwd, 9, strlen(fwd),
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
