// SPDX-License-Identifier: Apache-2.0
/*
 * Fill the interception maps from the catalog: enroll_paths (this node's
 * workloads' cgroup paths below the enrollment root, include/sockmesh/enroll.h),
 * services (exact address:port), and cidrs (catalog ranges, this node's own
 * addresses and loopback as "host").
 * Entries the catalog no longer names are removed; the rest are rewritten in
 * place, so a live lookup never sees a missing entry that should exist.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <uthash.h>

#include "catalog.h"
#include "daemon.h"
#include "enrollment.h"
#include "intercept.h"
#include "log.h"
#include "sockmesh.skel.h"
#include "util.h"

#include "sockmesh/enroll.h"
#include "sockmesh/intercept.h"

/* One wanted entry; key and value bytes follow in data[] (key first). */
struct kv {
	UT_hash_handle hh;
	uint8_t data[];
};

/*
 * The entries a map must hold, hashed by key so that building the set and
 * finding stale map keys stay linear in the catalog's size.
 */
struct kv_set {
	size_t key_size, value_size;
	size_t n;
	struct kv *head;
};

static int kv_add(struct kv_set *s, const void *key, const void *value)
{
	struct kv *e = NULL;

	HASH_FIND(hh, s->head, key, s->key_size, e);
	if (e) {
		/* a later entry for the same key wins (most specific source last) */
		memcpy(e->data + s->key_size, value, s->value_size);
		return 0;
	}
	e = malloc(sizeof(*e) + s->key_size + s->value_size);
	if (!e)
		return -ENOMEM;
	memcpy(e->data, key, s->key_size);
	memcpy(e->data + s->key_size, value, s->value_size);
	HASH_ADD_KEYPTR(hh, s->head, e->data, s->key_size, e);
	s->n++;
	return 0;
}

static bool kv_has(const struct kv_set *s, const void *key)
{
	struct kv *e = NULL;

	HASH_FIND(hh, s->head, key, s->key_size, e);
	return e != NULL;
}

static void kv_free(struct kv_set *s)
{
	struct kv *e, *tmp;

	HASH_ITER(hh, s->head, e, tmp)
	{
		// uthash's delete-while-iterating idiom (see flowacct.c)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(s->head, e);
		free(e);
	}
}

/* Make the map hold exactly the set: update every wanted key, delete the rest. */
static int map_sync(struct bpf_map *map, const struct kv_set *want)
{
	int fd = bpf_map__fd(map);
	/* the largest key of the maps synced here */
	uint8_t key[sizeof(struct sm_enroll_key)], next[sizeof(struct sm_enroll_key)];
	uint8_t *stale = NULL;
	size_t nstale = 0;
	int err = 0;
	void *prev = NULL;

	for (const struct kv *e = want->head; e; e = e->hh.next) {
		if (bpf_map_update_elem(fd, e->data, e->data + want->key_size, BPF_ANY)) {
			err = -errno;
			pr_err("cannot update map %s: %s (%zu entries wanted, max_entries %u: "
			       "raise "
			       "datapath.max_* if full)",
			       bpf_map__name(map), strerror(-err), want->n,
			       bpf_map__max_entries(map));
			return err;
		}
	}
	/* collect stale keys first: deleting while walking would restart the walk */
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		if (!kv_has(want, next)) {
			uint8_t *grown = realloc(stale, (nstale + 1) * want->key_size);

			if (!grown) {
				err = -ENOMEM;
				break;
			}
			stale = grown;
			memcpy(stale + nstale++ * want->key_size, next, want->key_size);
		}
		memcpy(key, next, want->key_size);
		prev = key;
	}
	for (size_t i = 0; i < nstale; i++)
		bpf_map_delete_elem(fd, stale + i * want->key_size);
	free(stale);
	return err;
}

static void cidr_key(struct sm_cidr_key *k, const struct sm_addr *a, uint8_t prefix)
{
	memset(k, 0, sizeof(*k));
	k->prefixlen = 32 + prefix;
	k->family = a->family;
	memcpy(k->addr, a->bytes, 16);
}

static uint32_t workload_flags_remote(const struct sm_daemon *d, unsigned int wl)
{
	return d->cat.workloads[wl].node == (unsigned int) d->node_idx ? 0 : SM_SVC_F_REMOTE;
}

/*
 * Workload w's cgroup path relative to the enrollment root, pointing into
 * w->cgroup, or NULL when it is not below the root. Both the catalog's paths
 * and the root (relative to the cgroup v2 mount) are compared as names, so
 * this holds whether the cgroups exist now or not.
 */
static const char *workload_rel(const struct sm_daemon *d, const struct sm_workload_def *w)
{
	const char *root = sm_enroll_relative(d->cgroup_root, d->enroll_root);

	return root ? sm_enroll_relative(root, w->cgroup) : NULL;
}

int sm_intercept_check(const struct sm_daemon *d, const struct sm_catalog *cat, int node_idx,
		       struct sm_error *err)
{
	char path[PATH_MAX];
	const char *rel, *why;

	for (unsigned int i = 0; i < cat->nworkloads; i++) {
		const struct sm_workload_def *w = &cat->workloads[i];

		if (w->node != (unsigned int) node_idx)
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->cgroup_root, w->cgroup);
		rel = workload_rel(d, w);
		if (!rel) {
			sm_error_set(err,
				     "workload %s: cgroup %s is not below the enrollment root %s "
				     "(set paths.enrollment_root to a cgroup that holds every "
				     "workload of this node, e.g. %s/system.slice)",
				     w->name, path, d->enroll_root, d->cgroup_root);
			return -EINVAL;
		}
		why = sm_enroll_path_problem(rel);
		if (why) {
			sm_error_set(err, "workload %s: cgroup %s cannot be enrolled: %s", w->name,
				     path, why);
			return -EINVAL;
		}
		if (d->daemon_cgroup[0] && (strcmp(d->daemon_cgroup, path) == 0 ||
					    sm_enroll_relative(path, d->daemon_cgroup))) {
			sm_error_set(err,
				     "sockmeshd runs in %s, inside workload %s's cgroup: its own "
				     "connections would be captured; run it in a cgroup of its own "
				     "(e.g. its systemd unit's)",
				     d->daemon_cgroup, w->name);
			return -EINVAL;
		}
	}
	return 0;
}

static int enroll_emit(void *ctx, const struct sm_enroll_key *key,
		       const struct sm_enroll_node *node)
{
	return kv_add(ctx, key, node);
}

/* One entry per component of every local workload's path below the enrollment root. */
static int want_enroll(const struct sm_daemon *d, struct kv_set *s)
{
	struct sm_enroll_workload *wl = calloc(d->cat.nworkloads + 1, sizeof(*wl));
	struct sm_error err = {{0}};
	size_t n = 0;
	int ret;

	if (!wl)
		return -ENOMEM;
	for (unsigned int i = 0; i < d->cat.nworkloads; i++) {
		const struct sm_workload_def *w = &d->cat.workloads[i];

		if (w->node != (unsigned int) d->node_idx)
			continue;
		wl[n].path = workload_rel(d, w);
		if (!wl[n].path)
			continue; /* sm_intercept_check() refused such a catalog already */
		wl[n].identity = w->identity;
		wl[n].flags = w->mode == SM_MODE_STRICT ? SM_WL_F_STRICT : 0;
		n++;
	}
	ret = sm_enroll_build(wl, n, enroll_emit, s, &err);
	if (ret == -EINVAL)
		pr_err("%s", err.msg);
	free(wl);
	return ret;
}

static int want_services(const struct sm_daemon *d, struct kv_set *s)
{
	for (unsigned int i = 0; i < d->cat.nservices; i++) {
		const struct sm_service_def *sv = &d->cat.services[i];
		struct sm_service_key k = {
			.family = sv->addr.family, .proto = IPPROTO_TCP, .port = htons(sv->port)};
		struct sm_service v = {
			.identity = d->cat.workloads[sv->workload].identity,
			.flags = workload_flags_remote(d, sv->workload),
			.node = d->cat.workloads[sv->workload].node,
		};

		memcpy(k.addr, sv->addr.bytes, 16);
		if (kv_add(s, &k, &v))
			return -ENOMEM;
	}
	return 0;
}

static int want_cidrs(const struct sm_daemon *d, struct kv_set *s)
{
	const struct sm_node_def *self = &d->cat.nodes[d->node_idx];
	struct sm_service host = {.identity = SM_ID_HOST, .node = (uint32_t) d->node_idx};
	struct sm_cidr_key k;
	struct sm_addr lo;

	for (unsigned int i = 0; i < d->cat.ncidrs; i++) {
		const struct sm_cidr_def *c = &d->cat.cidrs[i];
		struct sm_service v = {.identity = c->identity};

		if (c->workload >= 0) {
			v.flags = workload_flags_remote(d, (unsigned int) c->workload);
			v.node = d->cat.workloads[c->workload].node;
		}
		cidr_key(&k, &c->addr, c->prefix);
		if (kv_add(s, &k, &v))
			return -ENOMEM;
	}
	/* this node's addresses and loopback are the host, whatever a range says */
	sm_addr_parse("127.0.0.0", &lo);
	cidr_key(&k, &lo, 8);
	if (kv_add(s, &k, &host))
		return -ENOMEM;
	sm_addr_parse("::1", &lo);
	cidr_key(&k, &lo, 128);
	if (kv_add(s, &k, &host))
		return -ENOMEM;
	for (unsigned int i = 0; i < self->naddrs; i++) {
		cidr_key(&k, &self->addrs[i], self->addrs[i].family == AF_INET ? 32 : 128);
		if (kv_add(s, &k, &host))
			return -ENOMEM;
	}
	return 0;
}

/*
 * node_source: the node's first IPv4 and IPv6 address, which connect4/6 bind
 * captured sockets to; zeros (the kernel's choice, loopback) with real
 * addresses off (datapath.transparent_mark: 0).
 */
static int sync_node_source(struct sm_daemon *d)
{
	const struct sm_node_def *self = &d->cat.nodes[d->node_idx];
	struct sm_node_source ns;
	bool v4 = false, v6 = false;
	uint32_t key = 0;

	memset(&ns, 0, sizeof(ns));
	for (unsigned int i = 0; d->cfg.transparent_mark && i < self->naddrs; i++) {
		const struct sm_addr *a = &self->addrs[i];

		if (a->family == AF_INET && !v4) {
			memcpy(&ns.ip4, a->bytes, 4);
			v4 = true;
		} else if (a->family == AF_INET6 && !v6) {
			memcpy(ns.ip6, a->bytes, 16);
			v6 = true;
		}
	}
	if (bpf_map_update_elem(bpf_map__fd(d->skel->maps.node_source), &key, &ns, BPF_ANY))
		return -errno;
	return 0;
}

int sm_intercept_sync(struct sm_daemon *d)
{
	struct kv_set wl = {.key_size = sizeof(struct sm_enroll_key),
			    .value_size = sizeof(struct sm_enroll_node)};
	struct kv_set sv = {.key_size = sizeof(struct sm_service_key),
			    .value_size = sizeof(struct sm_service)};
	struct kv_set cd = {.key_size = sizeof(struct sm_cidr_key),
			    .value_size = sizeof(struct sm_service)};
	int err;

	/* services and ranges first, so a workload is never enrolled before its peers are known */
	err = want_services(d, &sv) ?: want_cidrs(d, &cd) ?: want_enroll(d, &wl);
	if (err)
		goto out;
	err = map_sync(d->skel->maps.services, &sv) ?: map_sync(d->skel->maps.cidrs, &cd) ?:
	      sync_node_source(d) ?: map_sync(d->skel->maps.enroll_paths, &wl);
	if (!err)
		pr_info("maps synced: %zu enrolled path components, %zu services, %zu cidrs", wl.n,
			sv.n, cd.n);
out:
	kv_free(&wl);
	kv_free(&sv);
	kv_free(&cd);
	return err;
}
