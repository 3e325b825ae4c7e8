// SPDX-License-Identifier: Apache-2.0
/*
 * The tunnel's inbound side: the listeners on this node's addresses,
 * accepting (with limits on handshakes in flight, in all and per source),
 * and which SVID a handshake presents (by SNI, by listener address, else
 * the node's). What a CONNECT then asks is checked in hbone_h2.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <uthash.h>

#include "catalog.h"
#include "daemon.h"
#include "drop_reason.h"
#include "evloop.h"
#include "hbone_int.h"
#include "log.h"
#include "tlsctx.h"
#include "util.h"
#include "worker.h"

#define HB_MAX_HANDSHAKING 256 /* inbound handshakes in flight at once, per worker */

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
void src_release(struct sm_hbone_worker *hw, struct hb_conn *c)
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

/* The service hosted on this node at addr:port, or -1. */
int local_service(const struct sm_daemon *d, const struct sm_addr *a, uint16_t port)
{
	int i = sm_catalog_service_at(&d->cat, a, port);

	if (i < 0 ||
	    d->cat.workloads[d->cat.services[i].workload].node != (unsigned int) d->node_idx)
		return -1;
	return i;
}

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

int listen_inbound(struct sm_worker *w, const struct sm_addr *a, unsigned int addr)
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

unsigned int sm_hbone_listen_fds(struct sm_worker *w, int *fds, unsigned int max)
{
	unsigned int n = 0;

	for (unsigned int i = 0; w->hb && i < w->hb->nl && n < max; i++)
		fds[n++] = w->hb->l[i].fd;
	return n;
}
