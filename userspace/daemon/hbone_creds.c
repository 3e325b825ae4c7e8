// SPDX-License-Identifier: Apache-2.0
/*
 * The tunnel's shared part (main thread): the credential sets of the node
 * and of each local workload, loaded at start and again when the catalog
 * changes, and rotated when their files change (inotify, then a quiet
 * period). Workers read the sets; they are swapped only while the workers
 * are paused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "catalog.h"
#include "daemon.h"
#include "evloop.h"
#include "hbone.h"
#include "hbone_int.h"
#include "log.h"
#include "policyd.h"
#include "spiffe.h"
#include "tlsctx.h"
#include "util.h"
#include "worker.h"

#define HB_QUIET_NS (300 * 1000000LL) /* writers update several files: wait until they are done */

/* A watched credential directory: -1 = the node's, else a catalog workload index. */
struct hb_watch {
	int wd;
	int owner;
	bool dirty;
	int64_t dirty_ns; /* last change seen; reload once it has been quiet a while */
	bool expiry_warned;
};

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
void creds_tick(struct sm_daemon *d)
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

int sm_hbone_start(struct sm_daemon *d)
{
	struct sm_hbone *hb;
	int err;

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
	/* live streams are checked again when a new policy revision goes live */
	err = sm_policy_observe(d, hb_policy_recheck);
	if (err)
		return err;
	return creds_load_all(d);
}

void sm_hbone_free(struct sm_daemon *d)
{
	struct sm_hbone *hb = d->hbone;

	if (!hb)
		return;
	sm_policy_observe(d, NULL);
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
