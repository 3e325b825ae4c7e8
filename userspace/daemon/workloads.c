// SPDX-License-Identifier: Apache-2.0
/* This node's workloads by cgroup id (workloads.h). */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* a bucket array that cannot grow leaves the entry out and says so, nothing aborts */
#define HASH_NONFATAL_OOM      1
#define uthash_nonfatal_oom(e) ((e)->oom = true)
#include <uthash.h>

#include "catalog.h"
#include "datapath.h"
#include "flow_record.h"
#include "log.h"
#include "util.h"
#include "workloads.h"

struct wl_entry {
	uint64_t cgroup_id; /* key; never 0 in the index */
	int wl;
	bool oom; /* the index could not take it (uthash_nonfatal_oom) */
	UT_hash_handle hh;
};

struct sm_workloads {
	pthread_rwlock_t lock;
	unsigned int n;		/* the catalog's workloads */
	struct wl_entry *ents;	/* n entries, one per workload: no allocation per refresh */
	struct wl_entry *index; /* hash by cgroup id over the entries with one */
};

struct sm_workloads *sm_workloads_new(const struct sm_catalog *cat)
{
	struct sm_workloads *ws = calloc(1, sizeof(*ws));
	int err;

	if (!ws)
		return NULL;
	ws->n = cat->nworkloads;
	ws->ents = calloc(ws->n ? ws->n : 1, sizeof(*ws->ents));
	if (!ws->ents) {
		free(ws);
		errno = ENOMEM;
		return NULL;
	}
	err = pthread_rwlock_init(&ws->lock, NULL);
	if (err) {
		free(ws->ents);
		free(ws);
		errno = err;
		return NULL;
	}
	for (unsigned int i = 0; i < ws->n; i++)
		ws->ents[i].wl = (int) i;
	return ws;
}

void sm_workloads_free(struct sm_workloads *ws)
{
	if (!ws)
		return;
	HASH_CLEAR(hh, ws->index);
	pthread_rwlock_destroy(&ws->lock);
	free(ws->ents);
	free(ws);
}

void sm_workloads_refresh(struct sm_workloads *ws, const struct sm_catalog *cat, int node_idx,
			  const char *cgroup_root)
{
	uint64_t *ids = calloc(ws->n ? ws->n : 1, sizeof(*ids));
	char path[PATH_MAX];
	bool oom = false;

	if (!ids) {
		pr_warn("out of memory reading the workloads' cgroup ids: flow records and status "
			"keep the ones read before");
		return;
	}
	/* the file system first, outside the lock: readers wait only for the swap */
	for (unsigned int i = 0; i < ws->n && i < cat->nworkloads; i++) {
		if (cat->workloads[i].node != (unsigned int) node_idx)
			continue;
		snprintf(path, sizeof(path), "%s/%s", cgroup_root, cat->workloads[i].cgroup);
		ids[i] = sm_cgroup_id_of(path);
	}
	pthread_rwlock_wrlock(&ws->lock);
	HASH_CLEAR(hh, ws->index);
	for (unsigned int i = 0; i < ws->n; i++) {
		struct wl_entry *e = &ws->ents[i], *dup = NULL;

		e->cgroup_id = ids[i];
		if (!e->cgroup_id)
			continue;
		/* two workloads in one cgroup: the first in the catalog names it */
		HASH_FIND(hh, ws->index, &e->cgroup_id, sizeof(e->cgroup_id), dup);
		if (dup)
			continue;
		e->oom = false;
		HASH_ADD(hh, ws->index, cgroup_id, sizeof(e->cgroup_id), e);
		oom |= e->oom;
	}
	pthread_rwlock_unlock(&ws->lock);
	free(ids);
	if (oom)
		pr_warn("out of memory indexing the workloads by cgroup id: some flow records "
			"will not name their workload");
}

int sm_workloads_by_cgroup(struct sm_workloads *ws, uint64_t cgroup_id)
{
	struct wl_entry *e = NULL;
	int wl;

	if (!cgroup_id)
		return -1;
	pthread_rwlock_rdlock(&ws->lock);
	HASH_FIND(hh, ws->index, &cgroup_id, sizeof(cgroup_id), e);
	wl = e ? e->wl : -1;
	pthread_rwlock_unlock(&ws->lock);
	return wl;
}

uint64_t sm_workloads_cgroup(struct sm_workloads *ws, int wl)
{
	uint64_t id;

	if (wl < 0 || (unsigned int) wl >= ws->n)
		return 0;
	pthread_rwlock_rdlock(&ws->lock);
	id = ws->ents[wl].cgroup_id;
	pthread_rwlock_unlock(&ws->lock);
	return id;
}

void sm_workload_endpoint(const struct sm_catalog *cat, int wl, struct sm_flow_endpoint *ep)
{
	const struct sm_workload_def *w = &cat->workloads[wl];

	ep->identity = w->identity;
	/* interned: the record may outlive this catalog (a reload frees it) */
	ep->spiffe_id = sm_intern(w->spiffe_id);
	ep->workload = sm_intern(w->name);
	ep->node = sm_intern(cat->nodes[w->node].name);
	ep->cgroup = sm_intern(w->cgroup);
}
