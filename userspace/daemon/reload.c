// SPDX-License-Identifier: Apache-2.0
/*
 * SIGHUP's catalog reload, with the parsing off the main loop. A catalog of
 * a hundred thousand nodes takes seconds to read and validate; the main loop
 * drains the flow ring buffer and answers the control socket, and must not
 * stop for that. So a thread reads the file into a fresh struct sm_catalog
 * (it touches nothing of the daemon's), and the main loop, woken through an
 * eventfd, checks and applies the result: only the swap, the map sync and
 * the recompile of the policy run there, with the workers paused.
 *
 * One load at a time; a SIGHUP while one runs asks for another when it ends
 * (the file may have changed again), so the last signal's file always wins.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "catalog.h"
#include "daemon.h"
#include "evloop.h"
#include "hbone.h"
#include "intercept.h"
#include "log.h"
#include "policyd.h"
#include "reload.h"
#include "util.h"
#include "worker.h"
#include "workloads.h"

struct sm_reload {
	int efd; /* the loader thread → the main loop: done */
	struct sm_ev *ev;
	pthread_t thread;
	bool running; /* main thread only */
	bool again;   /* a SIGHUP came while a load ran */
	sm_reload_done_fn done;
	/* the job: written by the main thread before the start, by the loader until done */
	char path[PATH_MAX];
	struct sm_catalog cat;
	struct sm_error err;
	int ret;
	int64_t took_ms;
};

static void *loader(void *arg)
{
	struct sm_reload *r = arg;
	int64_t t0 = sm_mono_ms();
	uint64_t one = 1;

	r->ret = sm_catalog_load(&r->cat, r->path, &r->err);
	r->took_ms = sm_mono_ms() - t0;
	if (write(r->efd, &one, sizeof(one)) != sizeof(one))
		pr_warn("SIGHUP: cannot wake the main loop: %s", strerror(errno));
	return NULL;
}

int sm_reload_swap_catalog(struct sm_daemon *d, struct sm_catalog *cat, struct sm_error *err)
{
	struct sm_workloads *wl;
	int idx = sm_catalog_node_index(cat, d->cfg.node);
	bool failed;

	if (idx < 0) {
		sm_error_set(err, "node '%s' is not in the new catalog", d->cfg.node);
		return -EINVAL;
	}
	if (sm_intercept_check(d, cat, idx, err))
		return -EINVAL;
	wl = sm_workloads_new(cat);
	if (!wl) {
		sm_error_set(err, "out of memory");
		return -ENOMEM;
	}
	/* the workers read the catalog and the credentials: hold them while both change */
	sm_workers_pause(d);
	sm_catalog_free(&d->cat);
	sm_workloads_free(d->wl);
	d->cat = *cat;
	memset(cat, 0, sizeof(*cat));
	d->wl = wl;
	d->node_idx = idx;
	sm_workloads_refresh(d->wl, &d->cat, d->node_idx, d->cgroup_root);
	/* the programs stay attached to the enrollment root: only the maps change */
	failed =
		sm_intercept_sync(d) || sm_hbone_catalog_changed(d) || sm_policy_catalog_changed(d);
	sm_workers_resume(d);
	if (failed)
		pr_warn("the new catalog was only partly applied; see the messages above");
	return 0;
}

/* The main loop's part: check the new catalog and put it in place. */
static void apply(struct sm_daemon *d, struct sm_catalog *cat)
{
	struct sm_error e = {{0}};

	if (sm_reload_swap_catalog(d, cat, &e)) {
		pr_warn("SIGHUP: %s: %s; keeping the current catalog", d->cfg.catalog, e.msg);
		sm_catalog_free(cat);
		return;
	}
	pr_info("SIGHUP: catalog reloaded");
}

static int start_load(struct sm_daemon *d)
{
	struct sm_reload *r = d->reload;
	int err;

	memset(&r->cat, 0, sizeof(r->cat));
	memset(&r->err, 0, sizeof(r->err));
	sm_strlcpy(r->path, d->cfg.catalog, sizeof(r->path));
	err = pthread_create(&r->thread, NULL, loader, r);
	if (err) {
		pr_warn("SIGHUP: cannot start reading %s: %s; keeping the current catalog", r->path,
			strerror(err));
		return -err;
	}
	r->running = true;
	r->again = false;
	return 0;
}

static void on_loaded(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	struct sm_reload *r = d->reload;
	uint64_t n;

	(void) loop;
	(void) events;
	if (read(sm_ev_fd(ev), &n, sizeof(n)) != sizeof(n) || !r->running)
		return;
	pthread_join(r->thread, NULL);
	r->running = false;
	if (r->ret) {
		pr_warn("SIGHUP: %s; keeping the current catalog", r->err.msg);
		sm_catalog_free(&r->cat);
	} else {
		pr_info("SIGHUP: read %s in %lld ms (%u nodes, %u workloads, %u services)", r->path,
			(long long) r->took_ms, r->cat.nnodes, r->cat.nworkloads, r->cat.nservices);
		apply(d, &r->cat);
	}
	if (r->again && !d->draining && !start_load(d))
		return; /* done when that one ends */
	if (!d->draining && r->done)
		r->done(d);
}

int sm_reload_start(struct sm_daemon *d, sm_reload_done_fn done)
{
	struct sm_reload *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->done = done;
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0) {
		free(r);
		return -errno;
	}
	d->reload = r;
	r->ev = sm_evloop_add(d->loop, r->efd, EPOLLIN, on_loaded, d);
	if (!r->ev) {
		close(r->efd);
		free(r);
		d->reload = NULL;
		return -errno;
	}
	return 0;
}

bool sm_reload_request(struct sm_daemon *d)
{
	struct sm_reload *r = d->reload;

	if (!r)
		return false;
	if (d->cluster) {
		pr_info("SIGHUP: cluster mode: the catalog comes from etcd, %s is not read",
			d->cfg.catalog);
		return false;
	}
	if (r->running) {
		r->again = true;
		pr_info("SIGHUP: a catalog reload is under way; %s is read again when it ends",
			d->cfg.catalog);
		return true;
	}
	return start_load(d) == 0;
}

void sm_reload_stop(struct sm_daemon *d)
{
	struct sm_reload *r = d->reload;

	if (!r)
		return;
	if (r->running) {
		pthread_join(r->thread, NULL); /* a read ends by itself; nothing waits on us */
		sm_catalog_free(&r->cat);
	}
	sm_evloop_del(d->loop, r->ev);
	close(r->efd);
	free(r);
	d->reload = NULL;
}
