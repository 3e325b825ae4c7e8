// SPDX-License-Identifier: Apache-2.0
/*
 * Outbound capture: listeners on the outbound addresses (127.0.0.1:15001 and
 * [::1]:15001 by default) accept the connections connect4/6 redirected,
 * recover the original destination with getsockopt(SO_ORIGINAL_DST) (answered
 * by the cgroup/getsockopt program, or by netfilter under an iptables
 * REDIRECT), connect there with the daemon's SO_MARK, and relay bytes both
 * ways with half-close propagated, or hand them to the mTLS tunnel
 * (tunnel.hbone). Each worker has its own listeners (an SO_REUSEPORT group)
 * and relays.
 *
 * Failure contract: no original destination, or an upstream that refuses or
 * fails, closes the client's connection with a reset (never a hang). Out of
 * file descriptors, a pending connection is accepted into the worker's spare
 * descriptor and reset at once (counted, recorded as DROPPED fd_exhausted),
 * and the listener rests for SM_ACCEPT_BACKOFF_MS: the kernel's backlog
 * holds what arrives meanwhile, and the event never fires in a loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "catalog.h"
#include "config.h"
#include "daemon.h"
#include "drop_reason.h"
#include "evloop.h"
#include "flow_record.h"
#include "flowacct.h"
#include "hbone.h"
#include "log.h"
#include "proxy.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"
#include "workloads.h"

#include "sockmesh/common.h"

#define RELAY_BUF (64 * 1024)
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#define IP6T_SO_ORIGINAL_DST 80

enum { SIDE_CLIENT = 0, SIDE_UPSTREAM = 1 };

/* Bytes read from fd[from] waiting to be written to the other side. */
struct relay_dir {
	char *buf;
	size_t off, len;
	bool eof;  /* fd[from] said EOF */
	bool shut; /* EOF passed on: shutdown(SHUT_WR) on the other side */
};

struct relay {
	struct sm_worker *w;
	int fd[2];
	struct sm_ev *ev[2];
	struct relay_dir dir[2]; /* dir[i]: from fd[i] to fd[1 - i] */
	bool connecting;
	char what[160]; /* "client → original destination", for logs */
	struct relay *prev, *next;
};

struct listener {
	struct sm_worker *w;
	int fd;
	int family;
	struct sm_ev *ev;
	bool resting; /* out of descriptors: not watched for SM_ACCEPT_BACKOFF_MS */
};

struct sm_proxy {
	struct listener l[2];
	unsigned int nl;
	struct relay *relays;
	struct sm_proxy_stats st;
};

static void relay_free(struct relay *r, bool reset)
{
	struct sm_proxy *p = r->w->proxy;

	for (int i = 0; i < 2; i++) {
		free(r->dir[i].buf);
		if (r->fd[i] < 0)
			continue;
		sm_evloop_del(r->w->loop, r->ev[i]);
		if (reset)
			sm_sock_close_reset(r->fd[i]);
		else
			sm_sock_close_orderly(r->fd[i]);
	}
	if (r->prev)
		r->prev->next = r->next;
	else
		p->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	SM_STAT_DEC(p->st.active);
	free(r);
}

static void relay_interest(struct relay *r)
{
	uint32_t want[2] = {0, 0};

	if (r->connecting) {
		want[SIDE_UPSTREAM] = EPOLLOUT;
	} else {
		for (int i = 0; i < 2; i++) {
			if (r->dir[i].len == 0 && !r->dir[i].eof)
				want[i] |= EPOLLIN;
			if (r->dir[i].len > 0)
				want[1 - i] |= EPOLLOUT;
		}
	}
	for (int i = 0; i < 2; i++)
		sm_evloop_mod(r->w->loop, r->ev[i], want[i]);
}

/* Move what can move; returns 0, 1 when the relay is finished, or -errno. */
static int relay_pump(struct relay *r)
{
	for (int i = 0; i < 2; i++) {
		struct relay_dir *dir = &r->dir[i];

		if (dir->len == 0 && !dir->eof) {
			ssize_t n = read(r->fd[i], dir->buf, RELAY_BUF);

			if (n > 0) {
				dir->off = 0;
				dir->len = (size_t) n;
			} else if (n == 0) {
				dir->eof = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				return -errno;
			}
		}
		while (dir->len > 0) {
			ssize_t n = send(r->fd[1 - i], dir->buf + dir->off, dir->len, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				return -errno;
			}
			dir->off += (size_t) n;
			dir->len -= (size_t) n;
		}
		if (dir->eof && dir->len == 0 && !dir->shut) {
			shutdown(r->fd[1 - i], SHUT_WR);
			dir->shut = true;
		}
	}
	return r->dir[0].shut && r->dir[1].shut ? 1 : 0;
}

static void on_relay(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct relay *r = arg;
	int err;

	(void) loop;
	(void) events;
	if (r->connecting) {
		socklen_t len = sizeof(err);

		if (ev != r->ev[SIDE_UPSTREAM])
			return;
		if (getsockopt(r->fd[SIDE_UPSTREAM], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			SM_STAT_INC(r->w->proxy->st.upstream_errors);
			pr_info("upstream connect failed for %s: %s (client reset)", r->what,
				strerror(err));
			relay_free(r, true);
			return;
		}
		r->connecting = false;
	}
	err = relay_pump(r);
	if (err < 0) {
		pr_debug("relay %s: %s (both sides reset)", r->what, strerror(-err));
		relay_free(r, true);
		return;
	}
	if (err == 1) {
		pr_debug("relay %s finished", r->what);
		relay_free(r, false);
		return;
	}
	relay_interest(r);
}

static int original_destination(int fd, int family, struct sockaddr_storage *ss)
{
	socklen_t len =
		family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6)
		return getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, ss, &len) < 0 ? -errno : 0;
	return getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, ss, &len) < 0 ? -errno : 0;
}

/* The original destination must not be one of our own listeners (a loop). */
static bool is_own_listener(const struct sm_daemon *d, const struct sm_addr *a, uint16_t port)
{
	return (port == d->cfg.outbound_port && sm_addr_equal(a, &d->cfg.outbound_addr)) ||
	       (port == d->cfg.outbound6_port && sm_addr_equal(a, &d->cfg.outbound6_addr));
}

/*
 * The DROPPED record of a captured connection the daemon reset itself (e.g.
 * for lack of descriptors): the client, its workload, and the destination it
 * asked for.
 */
static void record_dropped(struct sm_worker *w, int fd, int family, const struct sm_addr *cli,
			   uint16_t cport, enum sm_drop_reason reason)
{
	struct sm_daemon *d = w->d;
	struct sockaddr_storage dst;
	struct sm_flow_record r;
	uint32_t id = 0;
	int wl;

	memset(&r, 0, sizeof(r));
	r.type = SM_REC_CONN_END;
	r.time_ns = sm_real_ns();
	r.start_ns = r.time_ns;
	sm_strlcpy(r.node, d->cfg.node, sizeof(r.node));
	r.verdict = SM_VERDICT_DROPPED;
	sm_strlcpy(r.drop_reason, sm_drop_reason_name(reason), sizeof(r.drop_reason));
	r.direction = SM_DIR_EGRESS;
	r.captured = true;
	r.source.addr = *cli;
	r.source.port = cport;
	r.source.identity = SM_ID_WORLD;
	if (sm_capture_source_identity(d, fd, cli, cport, &id) == 0) {
		wl = sm_catalog_workload_by_identity(&d->cat, id);
		r.source.identity = id;
		if (wl >= 0)
			sm_workload_endpoint(&d->cat, wl, &r.source);
	}
	r.destination.addr.family = cli->family;
	r.destination.identity = SM_ID_WORLD;
	if (original_destination(fd, family, &dst) == 0 &&
	    sm_addr_from_sockaddr((struct sockaddr *) &dst, &r.destination.addr,
				  &r.destination.port) == 0) {
		for (unsigned int i = 0; i < d->cat.nservices; i++) {
			const struct sm_service_def *sv = &d->cat.services[i];

			if (sv->port == r.destination.port &&
			    sm_addr_equal(&sv->addr, &r.destination.addr)) {
				sm_workload_endpoint(&d->cat, (int) sv->workload, &r.destination);
				break;
			}
		}
	}
	sm_flowexp_emit(d, &r);
}

static void relay_start(struct sm_worker *w, int cfd, int family)
{
	struct sm_daemon *d = w->d;
	struct sm_proxy *p = w->proxy;
	struct sockaddr_storage dst, peer;
	socklen_t plen = sizeof(peer);
	char dbuf[INET6_ADDRSTRLEN], pbuf[INET6_ADDRSTRLEN];
	struct sm_addr daddr, paddr;
	uint16_t dport = 0, pport = 0;
	struct relay *r;
	int ufd, err;

	getpeername(cfd, (struct sockaddr *) &peer, &plen);
	sm_addr_from_sockaddr((struct sockaddr *) &peer, &paddr, &pport);
	err = original_destination(cfd, family, &dst);
	if (!err)
		err = sm_addr_from_sockaddr((struct sockaddr *) &dst, &daddr, &dport);
	if (err || dport == 0 || is_own_listener(d, &daddr, dport)) {
		SM_STAT_INC(p->st.orig_dst_errors);
		pr_warn_limited(
			"no original destination for captured connection from %s:%u: %s (closing "
			"it; "
			"is the orig_dst map full? see `sockmesh status`)",
			sm_addr_format(&paddr, pbuf, sizeof(pbuf)), pport,
			err ? strerror(-err) : "points back at the outbound listener");
		sm_sock_close_reset(cfd);
		return;
	}

	if (d->cfg.tunnel_hbone) {
		/* the mTLS tunnel takes the connection, or nobody does: never plaintext */
		err = sm_hbone_outbound(w, cfd, &daddr, dport, &paddr, pport);
		if (err) {
			SM_STAT_INC(p->st.upstream_errors);
			pr_warn_limited("cannot tunnel %s:%u -> %s:%u: %s (connection reset)",
					sm_addr_format(&paddr, pbuf, sizeof(pbuf)), pport,
					sm_addr_format(&daddr, dbuf, sizeof(dbuf)), dport,
					err == -EHOSTUNREACH ? "not a service on another node"
					: err == -ENOENT     ? "no orig_dst entry for the client"
					: err == -ENOKEY ? "no credentials for the source workload"
							 : strerror(-err));
			if (err == -EMFILE || err == -ENFILE)
				record_dropped(w, cfd, family, &paddr, pport, SM_DROP_FD_EXHAUSTED);
			sm_sock_close_reset(cfd);
		} else {
			SM_STAT_INC(p->st.tunnelled);
		}
		return;
	}

	r = calloc(1, sizeof(*r));
	if (!r) {
		sm_sock_close_reset(cfd);
		return;
	}
	r->w = w;
	r->fd[SIDE_CLIENT] = cfd;
	r->fd[SIDE_UPSTREAM] = -1;
	snprintf(r->what, sizeof(r->what), "%s:%u -> %s:%u",
		 sm_addr_format(&paddr, pbuf, sizeof(pbuf)), pport,
		 sm_addr_format(&daddr, dbuf, sizeof(dbuf)), dport);
	r->next = p->relays;
	if (p->relays)
		p->relays->prev = r;
	p->relays = r;
	SM_STAT_INC(p->st.active);

	for (int i = 0; i < 2; i++) {
		r->dir[i].buf = malloc(RELAY_BUF);
		if (!r->dir[i].buf)
			goto fail;
	}
	ufd = sm_upstream_connect(d, &daddr, dport);
	if (ufd < 0) {
		SM_STAT_INC(p->st.upstream_errors);
		pr_info_limited("upstream connect failed for %s: %s (client reset)", r->what,
				strerror(-ufd));
		if (ufd == -EMFILE || ufd == -ENFILE)
			record_dropped(w, cfd, family, &paddr, pport, SM_DROP_FD_EXHAUSTED);
		goto fail;
	}
	r->fd[SIDE_UPSTREAM] = ufd;
	r->connecting = true;
	r->ev[SIDE_CLIENT] = sm_evloop_add(w->loop, cfd, 0, on_relay, r);
	r->ev[SIDE_UPSTREAM] = sm_evloop_add(w->loop, ufd, EPOLLOUT, on_relay, r);
	if (!r->ev[SIDE_CLIENT] || !r->ev[SIDE_UPSTREAM])
		goto fail;
	pr_debug("captured %s", r->what);
	return;
fail:
	relay_free(r, true);
}

static void on_accept(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct listener *l = arg;
	struct sm_worker *w = l->w;
	bool rest = false;

	(void) loop;
	(void) ev;
	(void) events;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char buf[INET6_ADDRSTRLEN];
		struct sm_addr cli;
		uint16_t cport = 0;
		bool no_fd;
		int cfd = sm_worker_accept(w, l->fd, &ss, &sl, &no_fd);

		if (cfd == -EMFILE || cfd == -ENFILE) {
			rest = true; /* not even the spare: the backlog waits for the backoff */
			break;
		}
		if (cfd < 0) {
			if (cfd != -EAGAIN)
				pr_warn_limited("accept on outbound listener: %s", strerror(-cfd));
			break;
		}
		if (no_fd) {
			sm_addr_from_sockaddr((struct sockaddr *) &ss, &cli, &cport);
			SM_STAT_INC(w->proxy->st.accept_no_fd);
			pr_warn_limited("accept on outbound listener: %s: the connection from "
					"%s:%u is reset (raise the daemon's descriptor limit, "
					"LimitNOFILE=; `sockmesh status`: proxy.accept_no_fd)",
					strerror(EMFILE), sm_addr_format(&cli, buf, sizeof(buf)),
					cport);
			record_dropped(w, cfd, l->family, &cli, cport, SM_DROP_FD_EXHAUSTED);
			sm_worker_refuse(w, cfd);
			rest = true;
			continue;
		}
		SM_STAT_INC(w->proxy->st.accepted);
		/* if this daemon dies with the connection open, the workload sees a reset */
		sm_sock_abort_on_close(cfd);
		relay_start(w, cfd, l->family);
	}
	if (rest && !l->resting) {
		l->resting = true;
		sm_evloop_mod(w->loop, l->ev, 0);
		sm_worker_backoff(w);
	}
}

void sm_proxy_resume_accepting(struct sm_worker *w)
{
	struct sm_proxy *p = w->proxy;

	for (unsigned int i = 0; p && i < p->nl; i++) {
		if (!p->l[i].resting)
			continue;
		p->l[i].resting = false;
		sm_evloop_mod(w->loop, p->l[i].ev, EPOLLIN);
	}
}

static int listen_on(struct sm_worker *w, const struct sm_addr *a, uint16_t port)
{
	struct sm_proxy *p = w->proxy;
	char buf[INET6_ADDRSTRLEN];
	struct listener *l = &p->l[p->nl];
	int fd, err;

	fd = sm_worker_listen(w, a, port, 4096);
	if (fd < 0) {
		pr_err("cannot listen on %s port %u: %s (another sockmeshd in this network "
		       "namespace? change listeners.outbound / --outbound)",
		       sm_addr_format(a, buf, sizeof(buf)), port, strerror(-fd));
		return fd;
	}
	l->w = w;
	l->fd = fd;
	l->family = a->family;
	l->ev = sm_evloop_add(w->loop, fd, EPOLLIN, on_accept, l);
	if (!l->ev) {
		err = -errno;
		close(fd);
		return err;
	}
	p->nl++;
	if (w->id == 0)
		pr_info("outbound listener on %s port %u", sm_addr_format(a, buf, sizeof(buf)),
			port);
	return 0;
}

int sm_proxy_start(struct sm_worker *w)
{
	const struct sm_config *cfg = &w->d->cfg;
	int err;

	w->proxy = calloc(1, sizeof(*w->proxy));
	if (!w->proxy)
		return -ENOMEM;
	err = listen_on(w, &cfg->outbound_addr, cfg->outbound_port);
	if (err)
		return err;
	err = listen_on(w, &cfg->outbound6_addr, cfg->outbound6_port);
	if (err == -EADDRNOTAVAIL || err == -EAFNOSUPPORT) {
		if (w->id == 0)
			pr_warn("no IPv6 outbound listener: captured IPv6 connections will be "
				"refused");
		err = 0;
	}
	return err;
}

void sm_proxy_stop_accepting(struct sm_worker *w)
{
	struct sm_proxy *p = w->proxy;

	if (!p)
		return;
	for (unsigned int i = 0; i < p->nl; i++) {
		sm_evloop_del(w->loop, p->l[i].ev);
		close(p->l[i].fd);
	}
	p->nl = 0;
}

static unsigned int proxy_listen_fds(struct sm_worker *w, int *fds, unsigned int max)
{
	unsigned int n = 0;

	for (unsigned int i = 0; w->proxy && i < w->proxy->nl && n < max; i++)
		fds[n++] = w->proxy->l[i].fd;
	return n;
}

void sm_proxy_free(struct sm_worker *w)
{
	struct sm_proxy *p = w->proxy;

	if (!p)
		return;
	sm_proxy_stop_accepting(w);
	for (struct relay *r = p->relays, *next; r; r = next) {
		next = r->next;
		relay_free(r, true);
	}
	free(p);
	w->proxy = NULL;
}

void sm_proxy_worker_stats(const struct sm_worker *w, struct sm_proxy_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!w->proxy)
		return;
	st->active = SM_STAT_GET(w->proxy->st.active);
	st->accepted = SM_STAT_GET(w->proxy->st.accepted);
	st->upstream_errors = SM_STAT_GET(w->proxy->st.upstream_errors);
	st->orig_dst_errors = SM_STAT_GET(w->proxy->st.orig_dst_errors);
	st->tunnelled = SM_STAT_GET(w->proxy->st.tunnelled);
	st->accept_no_fd = SM_STAT_GET(w->proxy->st.accept_no_fd);
}

void sm_proxy_stats(const struct sm_daemon *d, struct sm_proxy_stats *st)
{
	struct sm_proxy_stats one;

	memset(st, 0, sizeof(*st));
	for (unsigned int i = 0; d->workers && i < d->nworkers; i++) {
		sm_proxy_worker_stats(&d->workers[i], &one);
		st->active += one.active;
		st->accepted += one.accepted;
		st->upstream_errors += one.upstream_errors;
		st->orig_dst_errors += one.orig_dst_errors;
		st->tunnelled += one.tunnelled;
		st->accept_no_fd += one.accept_no_fd;
	}
}

const struct sm_worker_part sm_proxy_worker_part = {
	.start = sm_proxy_start,
	.stop_accepting = sm_proxy_stop_accepting,
	.resume_accepting = sm_proxy_resume_accepting,
	.free = sm_proxy_free,
	.listen_fds = proxy_listen_fds,
};
