// SPDX-License-Identifier: Apache-2.0
/*
 * Cluster mode: the catalog and the policy set from etcd (docs/cluster.md).
 *
 * Threads. The watcher lists PREFIX config/, then watches it from the next
 * revision, keeping a copy of every key (the mirror); after each batch of
 * events it builds the state the keys make (clusterstore.h), off the main
 * loop, and posts it to a one-slot mailbox: a newer state replaces one the
 * main loop has not taken yet, so a burst of changes costs one apply. The
 * main loop checks the state against this node (its node is in the catalog,
 * the policy compiles within datapath.max_policy_entries, the workloads can
 * be enrolled), then puts it in force through the reload's catalog swap and
 * the policy's apply, saves it to <state_dir>/cluster.json and tells the
 * reporter. The reporter owns the node's lease: it writes the registration
 * and the applied state under it and keeps it alive every TTL/3; when etcd
 * stops answering it asks the watcher to reconnect, because a watch on a
 * connection that no longer carries anything says nothing.
 *
 * Failure is static: nothing here ever removes policy. A state that does not
 * validate is refused whole (every node refuses the same keys, so nodes
 * never enforce different halves), the last good one stays, and the refusal
 * (key and reason) goes to the log, `sockmesh status`, the applied-state key
 * and the metrics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "cluster.h"
#include "clusterstore.h"
#include "daemon.h"
#include "etcd.h"
#include "evloop.h"
#include "log.h"
#include "policy.h"
#include "policyd.h"
#include "reload.h"
#include "util.h"

#define STATE_FILE     "cluster.json"
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000
#define SLICE_MS       100
#define REASON_MAX     512

/* A state for the main loop: built, or refused by the watcher (it did not build). */
struct mail {
	bool refused;
	struct sm_cluster_state st; /* !refused */
	int64_t revision;	    /* refused: the revision that was refused */
	char key[SM_CLUSTER_KEY_MAX];
	char reason[REASON_MAX];
};

struct sm_cluster {
	struct sm_daemon *d;

	/* in force (main thread; copies for other threads under mu) */
	char *catalog_doc;
	char *policy_doc;
	int64_t revision, catalog_revision, policy_revision;

	/* what other threads read: under mu */
	int64_t info_revision, info_catalog_revision, info_policy_revision;
	int64_t refused_revision;
	uint64_t applied_total, refused_total;
	int64_t last_contact_ms; /* CLOCK_MONOTONIC, 0: never */
	int64_t stale_since_ms;	 /* CLOCK_MONOTONIC, 0: not stale */
	time_t stale_since_wall;
	char *addresses; /* the node's addresses, a JSON array (set_addresses()) */

	/* the mailbox: the watcher posts, the main loop takes (under box_mu) */
	struct mail *box;
	struct sm_ev *ev;

	pthread_t watcher, reporter;

	/* the watcher's own */
	struct sm_etcd_kv *kvs; /* sorted by key */
	size_t nkvs, capkvs;
	int64_t mirror_revision;

	pthread_mutex_t mu;
	pthread_mutex_t box_mu;
	pthread_cond_t cv;	      /* the reporter waits on it (with mu) */
	uint32_t info_local_revision; /* the policy module's own revision (under mu) */
	int efd;		      /* the mailbox's wake-up */
	unsigned int watch_failures;  /* in a row, for the watcher's backoff */
	struct sm_etcd_cfg ecfg;

	/* under mu */
	bool refusing;
	bool connected;
	bool status_dirty; /* the reporter should write the applied state */
	bool reg_dirty;	   /* ... and the registration */

	atomic_bool stop;
	atomic_bool resync;	 /* the reporter lost etcd: the watcher reconnects */
	atomic_bool watch_abort; /* stop || resync, for the watch in progress */
	bool watcher_running, reporter_running;
	bool watch_logged; /* the watcher logged "etcd away" */

	char prefix[SM_CLUSTER_PREFIX_MAX];
	char config_prefix[SM_CLUSTER_KEY_MAX];
	char refused_key[SM_CLUSTER_KEY_MAX];		    /* under mu */
	char refused_reason[REASON_MAX];		    /* under mu */
	char last_refusal[SM_CLUSTER_KEY_MAX + REASON_MAX]; /* logged once until it changes */
	char state_path[PATH_MAX];
};

bool sm_cluster_enabled(const struct sm_config *cfg)
{
	return cfg->etcd_endpoints.n > 0;
}

static void contact(struct sm_cluster *c, bool ok)
{
	int64_t now = sm_mono_ms();

	pthread_mutex_lock(&c->mu);
	if (ok) {
		c->last_contact_ms = now;
		c->stale_since_ms = 0;
		c->stale_since_wall = 0;
	} else if (!c->stale_since_ms) {
		c->stale_since_ms = now;
		c->stale_since_wall = time(NULL);
	}
	c->connected = ok;
	pthread_mutex_unlock(&c->mu);
}

/* Sleep ms in slices, returning early (true) when asked to stop. */
static bool nap(struct sm_cluster *c, int ms)
{
	for (int left = ms; left > 0; left -= SLICE_MS) {
		if (atomic_load(&c->stop))
			return true;
		struct timespec ts = {0, (long) (left < SLICE_MS ? left : SLICE_MS) * 1000000L};

		nanosleep(&ts, NULL);
	}
	return atomic_load(&c->stop);
}

/* ---- configuration ---- */

static int etcd_cfg(const struct sm_config *cfg, struct sm_etcd_cfg *e, struct sm_error *err)
{
	memset(e, 0, sizeof(*e));
	if (cfg->etcd_endpoints.n > SM_ETCD_MAX_ENDPOINTS) {
		sm_error_set(err, "cluster.etcd.endpoints: %u endpoints, at most %d",
			     cfg->etcd_endpoints.n, SM_ETCD_MAX_ENDPOINTS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < cfg->etcd_endpoints.n; i++)
		sm_strlcpy(e->endpoints[i], cfg->etcd_endpoints.items[i], SM_ETCD_URL_MAX);
	e->nendpoints = cfg->etcd_endpoints.n;
	sm_strlcpy(e->ca, cfg->etcd_ca, sizeof(e->ca));
	sm_strlcpy(e->cert, cfg->etcd_cert, sizeof(e->cert));
	sm_strlcpy(e->key, cfg->etcd_key, sizeof(e->key));
	sm_strlcpy(e->username, cfg->etcd_username, sizeof(e->username));
	sm_strlcpy(e->password_file, cfg->etcd_password_file, sizeof(e->password_file));
	return sm_etcd_cfg_check(e, err);
}

/* ---- the saved state ---- */

/* Save what is in force (temp file, fsync, rename). 0 or -errno, logged. */
static int state_save(struct sm_cluster *c)
{
	json_object *o = json_object_new_object();
	char tmp[PATH_MAX + 8];
	const char *text;
	int fd, err = 0;
	size_t len;

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "revision", json_object_new_int64(c->revision));
	json_object_object_add(o, "catalog_revision", json_object_new_int64(c->catalog_revision));
	json_object_object_add(o, "policy_revision", json_object_new_int64(c->policy_revision));
	json_object_object_add(o, "prefix", json_object_new_string(c->prefix));
	json_object_object_add(o, "catalog", json_object_new_string(c->catalog_doc));
	json_object_object_add(o, "policies", json_object_new_string(c->policy_doc));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(text);
	snprintf(tmp, sizeof(tmp), "%s.tmp", c->state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (write(fd, text, len) != (ssize_t) len || write(fd, "\n", 1) != 1 || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && rename(tmp, c->state_path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
out:
	if (err)
		pr_err("cannot save the cluster state to %s: %s (a restart while etcd is away "
		       "would "
		       "start from the state saved before)",
		       c->state_path, strerror(-err));
	json_object_put(o);
	return err;
}

static char *dup_field(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return strdup(json_object_get_string(v));
}

static int64_t int_field(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return -1;
	return json_object_get_int64(v);
}

/* Read <state_dir>/cluster.json into c: 0, -ENOENT (none yet) or -EINVAL (logged). */
static int state_load(struct sm_cluster *c)
{
	json_object *o = json_object_from_file(c->state_path);
	char *prefix;

	if (!o) {
		if (access(c->state_path, F_OK) < 0 && errno == ENOENT)
			return -ENOENT;
		pr_err("%s: not a cluster state file (JSON): %s (move it away: the node then waits "
		       "for etcd at its start)",
		       c->state_path,
		       json_util_get_last_err() ? json_util_get_last_err() : "unreadable");
		return -EINVAL;
	}
	c->catalog_doc = dup_field(o, "catalog");
	c->policy_doc = dup_field(o, "policies");
	prefix = dup_field(o, "prefix");
	c->revision = int_field(o, "revision");
	c->catalog_revision = int_field(o, "catalog_revision");
	c->policy_revision = int_field(o, "policy_revision");
	json_object_put(o);
	if (!c->catalog_doc || !c->policy_doc || !prefix || c->revision < 0 ||
	    c->catalog_revision < 0 || c->policy_revision < 0) {
		pr_err("%s: expected revision, catalog_revision, policy_revision, prefix, catalog "
		       "and policies (move it away: the node then waits for etcd at its start)",
		       c->state_path);
		free(prefix);
		return -EINVAL;
	}
	if (strcmp(prefix, c->prefix) != 0) {
		pr_err("%s was saved for the prefix %s, not %s (cluster.etcd.prefix changed: move "
		       "the file away to start from the new prefix)",
		       c->state_path, prefix, c->prefix);
		free(prefix);
		return -EINVAL;
	}
	free(prefix);
	return 0;
}

/* ---- the mirror (watcher thread) ---- */

static void kv_free(struct sm_etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

static int kv_copy(struct sm_etcd_kv *dst, const struct sm_etcd_kv *src)
{
	*dst = *src;
	dst->key = malloc(src->key_len + 1);
	dst->value = malloc(src->value_len + 1);
	if (!dst->key || !dst->value) {
		kv_free(dst);
		return -ENOMEM;
	}
	memcpy(dst->key, src->key, src->key_len + 1);
	if (src->value_len)
		memcpy(dst->value, src->value, src->value_len);
	dst->value[src->value_len] = '\0';
	return 0;
}

static void mirror_clear(struct sm_cluster *c)
{
	for (size_t i = 0; i < c->nkvs; i++)
		kv_free(&c->kvs[i]);
	c->nkvs = 0;
}

/* The index of key, or of where it would go (*found false). */
static size_t mirror_find(const struct sm_cluster *c, const char *key, bool *found)
{
	size_t lo = 0, hi = c->nkvs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(c->kvs[mid].key, key);

		if (cmp == 0) {
			*found = true;
			return mid;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static int mirror_put(struct sm_cluster *c, const struct sm_etcd_kv *kv)
{
	struct sm_etcd_kv copy;
	bool found;
	size_t i = mirror_find(c, kv->key, &found);

	if (kv_copy(&copy, kv))
		return -ENOMEM;
	if (found) {
		kv_free(&c->kvs[i]);
		c->kvs[i] = copy;
		return 0;
	}
	if (c->nkvs == c->capkvs) {
		size_t cap = c->capkvs ? c->capkvs * 2 : 64;
		struct sm_etcd_kv *n = realloc(c->kvs, cap * sizeof(*n));

		if (!n) {
			kv_free(&copy);
			return -ENOMEM;
		}
		c->kvs = n;
		c->capkvs = cap;
	}
	memmove(&c->kvs[i + 1], &c->kvs[i], (c->nkvs - i) * sizeof(*c->kvs));
	c->kvs[i] = copy;
	c->nkvs++;
	return 0;
}

static void mirror_delete(struct sm_cluster *c, const char *key)
{
	bool found;
	size_t i = mirror_find(c, key, &found);

	if (!found)
		return;
	kv_free(&c->kvs[i]);
	memmove(&c->kvs[i], &c->kvs[i + 1], (c->nkvs - i - 1) * sizeof(*c->kvs));
	c->nkvs--;
}

/* ---- the mailbox ---- */

static void mail_free(struct mail *m)
{
	if (!m)
		return;
	if (!m->refused)
		sm_cluster_state_free(&m->st);
	free(m);
}

/* Build the mirror's state and post it (watcher thread). */
static void post_state(struct sm_cluster *c, int64_t revision)
{
	struct mail *m = calloc(1, sizeof(*m)), *old;
	struct sm_error err = {{0}};
	uint64_t one = 1;

	if (!m) {
		pr_warn("cluster: out of memory building revision %lld; waiting for the next",
			(long long) revision);
		return;
	}
	m->revision = revision;
	if (sm_cluster_build(c->prefix, c->kvs, c->nkvs, revision, &m->st, m->key, sizeof(m->key),
			     &err)) {
		m->refused = true;
		sm_strlcpy(m->reason, err.msg, sizeof(m->reason));
	}
	pthread_mutex_lock(&c->box_mu);
	old = c->box;
	c->box = m;
	pthread_mutex_unlock(&c->box_mu);
	mail_free(old); /* the main loop had not taken it: this one is newer */
	if (write(c->efd, &one, sizeof(one)) != sizeof(one))
		pr_warn("cluster: cannot wake the main loop: %s", strerror(errno));
}

/* ---- the watcher thread ---- */

/* List config/ into the mirror. 0 or -errno (logged by the caller). */
static int relist(struct sm_cluster *c, struct sm_etcd *e, struct sm_error *err)
{
	struct sm_etcd_kvs kvs = {0};
	int ret = sm_etcd_get_prefix(e, c->config_prefix, 0, &kvs, err);

	if (ret)
		return ret;
	mirror_clear(c);
	for (size_t i = 0; i < kvs.n && !ret; i++)
		ret = mirror_put(c, &kvs.kvs[i]);
	if (!ret)
		c->mirror_revision = kvs.revision;
	else
		sm_error_set(err, "out of memory copying %zu keys", kvs.n);
	sm_etcd_kvs_free(&kvs);
	return ret;
}

static int on_events(void *arg, int64_t revision, const struct sm_etcd_event *ev, size_t n)
{
	struct sm_cluster *c = arg;
	int64_t upto = c->mirror_revision;

	contact(c, true);
	c->watch_failures = 0; /* the watcher's backoff starts again */
	if (c->watch_logged)
		pr_info("cluster: etcd answers again; watching %s from revision %lld",
			c->config_prefix, (long long) c->mirror_revision + 1);
	c->watch_logged = false;
	if (n == 0) {
		/*
		 * Created, or a progress notification: nothing is pending below
		 * the store's revision then, except right after creation, when
		 * the history since start_revision may still come. Only a
		 * progress notice moves the applied revision: ours is at least
		 * the mirror's.
		 */
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (ev[i].deleted)
			mirror_delete(c, ev[i].kv.key);
		else if (mirror_put(c, &ev[i].kv))
			return -ENOMEM;
		if (ev[i].kv.mod_revision > upto)
			upto = ev[i].kv.mod_revision;
	}
	(void) revision;
	c->mirror_revision = upto;
	post_state(c, upto);
	return 0;
}

static void *watcher_main(void *arg)
{
	struct sm_cluster *c = arg;
	struct sm_error err = {{0}};
	struct sm_etcd *e = NULL;
	bool need_list = true;
	int64_t compacted = 0;
	int backoff, ret;

	ret = sm_etcd_open(&e, &c->ecfg, &err);
	if (ret) {
		pr_err("cluster: %s; this node keeps the state it has", err.msg);
		return NULL;
	}
	while (!atomic_load(&c->stop)) {
		atomic_store(&c->resync, false);
		atomic_store(&c->watch_abort, false);
		if (need_list) {
			ret = relist(c, e, &err);
			if (ret)
				goto failed;
			need_list = false;
			post_state(c, c->mirror_revision);
			pr_info("cluster: listed %zu keys under %s at revision %lld", c->nkvs,
				c->config_prefix, (long long) c->mirror_revision);
		}
		ret = sm_etcd_watch(e, c->config_prefix, c->mirror_revision + 1, on_events, c,
				    &c->watch_abort, 0, &compacted, &err);
		if (atomic_load(&c->stop))
			break;
		if (ret == -ESTALE) {
			pr_info("cluster: revision %lld was compacted (oldest kept %lld): listing "
				"again",
				(long long) c->mirror_revision + 1, (long long) compacted);
			need_list = true;
			continue;
		}
		if (ret == -EINTR) { /* the reporter lost etcd: reconnect */
			pr_debug("cluster: watch restarted after a failed contact");
			continue;
		}
	failed:
		contact(c, false);
		if (!c->watch_logged)
			pr_warn("cluster: %s; enforcing revision %lld until etcd answers",
				err.msg[0] ? err.msg : strerror(-ret),
				(long long) c->mirror_revision);
		c->watch_logged = true;
		/* 200 ms, doubling to 5 s while etcd stays away */
		backoff = BACKOFF_MIN_MS << (c->watch_failures < 5 ? c->watch_failures : 5);
		if (backoff > BACKOFF_MAX_MS)
			backoff = BACKOFF_MAX_MS;
		c->watch_failures++;
		if (nap(c, backoff))
			break;
	}
	sm_etcd_close(e);
	return NULL;
}

/* ---- the reporter thread ---- */

/* The node's addresses as a JSON array, for the registration (main thread, under mu). */
static void set_addresses(struct sm_cluster *c)
{
	const struct sm_daemon *d = c->d;
	json_object *a = json_object_new_array();
	char buf[INET6_ADDRSTRLEN];
	char *text;

	if (d->node_idx >= 0 && (unsigned int) d->node_idx < d->cat.nnodes) {
		const struct sm_node_def *n = &d->cat.nodes[d->node_idx];

		for (unsigned int i = 0; i < n->naddrs; i++)
			json_object_array_add(a, json_object_new_string(sm_addr_format(
							 &n->addrs[i], buf, sizeof(buf))));
	}
	text = strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
	json_object_put(a);
	pthread_mutex_lock(&c->mu);
	/* the registration is written again only when they changed: every catalog change
	 * comes here, and a rewrite per node per change would double the status writes */
	if (text && (!c->addresses || strcmp(text, c->addresses) != 0)) {
		free(c->addresses);
		c->addresses = text;
		text = NULL;
		c->reg_dirty = true;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	free(text);
}

static char *registration_json(struct sm_cluster *c, bool ready)
{
	const struct sm_daemon *d = c->d;
	json_object *o = json_object_new_object(), *addrs;
	char buf[64], *out;
	struct tm tm;
	time_t started = d->started;

	pthread_mutex_lock(&c->mu);
	addrs = json_tokener_parse(c->addresses ? c->addresses : "[]");
	c->reg_dirty = false;
	pthread_mutex_unlock(&c->mu);
	json_object_object_add(o, "node", json_object_new_string(d->cfg.node));
	json_object_object_add(o, "addresses", addrs ? addrs : json_object_new_array());
	json_object_object_add(o, "version", json_object_new_string(SOCKMESH_VERSION));
	json_object_object_add(o, "ready", json_object_new_boolean(ready));
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	gmtime_r(&started, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_object_add(o, "started", json_object_new_string(buf));
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}

static void rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *applied_json(struct sm_cluster *c)
{
	struct sm_cluster_applied a = {0};

	sm_strlcpy(a.node, c->d->cfg.node, sizeof(a.node));
	pthread_mutex_lock(&c->mu);
	a.revision = c->info_revision;
	a.catalog_revision = c->info_catalog_revision;
	a.policy_revision = c->info_policy_revision;
	a.local_policy_revision = c->info_local_revision;
	a.connected = c->connected;
	if (c->stale_since_wall)
		rfc3339(c->stale_since_wall, a.stale_since, sizeof(a.stale_since));
	if (c->refusing) {
		a.refused_revision = c->refused_revision;
		sm_strlcpy(a.refused_key, c->refused_key, sizeof(a.refused_key));
		sm_strlcpy(a.refused_reason, c->refused_reason, sizeof(a.refused_reason));
	}
	c->status_dirty = false;
	pthread_mutex_unlock(&c->mu);
	rfc3339(time(NULL), a.updated, sizeof(a.updated));
	return sm_cluster_applied_json(&a);
}

/* Write one of the node's keys under the lease. 0 or -errno with err. */
static int put_status(struct sm_cluster *c, struct sm_etcd *e, const char *rel, char *value,
		      int64_t lease, struct sm_error *err)
{
	char key[SM_CLUSTER_KEY_MAX + SM_NAME_MAX];
	int ret;

	if (!value) {
		sm_error_set(err, "out of memory");
		return -ENOMEM;
	}
	snprintf(key, sizeof(key), "%s%s%s", c->prefix, rel, c->d->cfg.node);
	ret = sm_etcd_put(e, key, value, strlen(value), lease, NULL, err);
	free(value);
	return ret;
}

static void *reporter_main(void *arg)
{
	struct sm_cluster *c = arg;
	struct sm_error err = {{0}};
	struct sm_etcd *e = NULL;
	int64_t lease = 0, ttl_left = 0, next_keepalive = 0;
	int ttl = (int) c->d->cfg.cluster_lease_ttl, period_ms = ttl * 1000 / 3;
	bool was_ready = false, logged = false, dirty;
	int ret = 0;

	if (sm_etcd_open(&e, &c->ecfg, &err)) {
		pr_err("cluster: %s; this node does not register", err.msg);
		return NULL;
	}
	while (!atomic_load(&c->stop)) {
		bool ready = __atomic_load_n(&c->d->ready, __ATOMIC_RELAXED), talked = false;

		if (!lease) {
			ret = sm_etcd_lease_grant(e, ttl, &lease, &err);
			if (ret)
				goto failed;
			talked = true;
			was_ready = !ready; /* write the registration below */
			pthread_mutex_lock(&c->mu);
			c->status_dirty = true;
			pthread_mutex_unlock(&c->mu);
			next_keepalive = sm_mono_ms() + period_ms;
		}
		pthread_mutex_lock(&c->mu);
		dirty = c->reg_dirty;
		pthread_mutex_unlock(&c->mu);
		if (ready != was_ready || dirty) {
			ret = put_status(c, e, SM_CK_REG, registration_json(c, ready), lease, &err);
			if (ret)
				goto failed;
			talked = true;
			was_ready = ready;
		}
		pthread_mutex_lock(&c->mu);
		dirty = c->status_dirty;
		pthread_mutex_unlock(&c->mu);
		if (dirty) {
			ret = put_status(c, e, SM_CK_APPLIED, applied_json(c), lease, &err);
			if (ret)
				goto failed;
			talked = true;
		}
		if (sm_mono_ms() >= next_keepalive) {
			ret = sm_etcd_lease_keepalive(e, lease, &ttl_left, &err);
			if (ret)
				goto failed;
			talked = true;
			next_keepalive = sm_mono_ms() + period_ms;
			if (ttl_left <= 0) {
				pr_warn("cluster: the registration's lease expired (etcd was away "
					"longer than cluster.lease_ttl = %d s); registering again",
					ttl);
				lease = 0;
				continue;
			}
		}
		if (talked) { /* only an answer says etcd is there */
			contact(c, true);
			if (logged)
				pr_info("cluster: etcd answers again; registration kept");
			logged = false;
		}
		/* wait for a change to report, the next keepalive, or the stop */
		pthread_mutex_lock(&c->mu);
		if (!c->status_dirty && !c->reg_dirty && !atomic_load(&c->stop) &&
		    ready == __atomic_load_n(&c->d->ready, __ATOMIC_RELAXED)) {
			struct timespec ts;
			int64_t wait_ms = next_keepalive - sm_mono_ms();

			if (wait_ms > SLICE_MS * 5)
				wait_ms = SLICE_MS * 5; /* ready changes are polled */
			if (wait_ms > 0) {
				clock_gettime(CLOCK_MONOTONIC, &ts);
				ts.tv_sec += wait_ms / 1000;
				ts.tv_nsec += (wait_ms % 1000) * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&c->cv, &c->mu, &ts);
			}
		}
		pthread_mutex_unlock(&c->mu);
		continue;
	failed:
		contact(c, false);
		/* the watch may sit on a dead connection: make the watcher reconnect */
		atomic_store(&c->resync, true);
		atomic_store(&c->watch_abort, true);
		if (!logged)
			pr_warn("cluster: %s; traffic and enforcement go on with what is in force",
				err.msg[0] ? err.msg : strerror(-ret));
		logged = true;
		if (nap(c, period_ms < 1000 ? period_ms : 1000))
			break;
	}
	/* a clean stop: the registration goes now, not after the TTL */
	if (lease && sm_etcd_lease_revoke(e, lease, &err))
		pr_debug("cluster: cannot revoke the lease: %s (it expires by itself)", err.msg);
	sm_etcd_close(e);
	return NULL;
}

/* ---- the main loop's part ---- */

static void refuse(struct sm_cluster *c, int64_t revision, const char *key, const char *reason)
{
	char what[sizeof(c->last_refusal)];

	snprintf(what, sizeof(what), "%s\n%s", key, reason);
	pthread_mutex_lock(&c->mu);
	c->refusing = true;
	c->refused_revision = revision;
	sm_strlcpy(c->refused_key, key, sizeof(c->refused_key));
	sm_strlcpy(c->refused_reason, reason, sizeof(c->refused_reason));
	c->refused_total++;
	c->status_dirty = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (strcmp(what, c->last_refusal) != 0)
		pr_warn("cluster: revision %lld refused, revision %lld stays in force: %s%s%s",
			(long long) revision, (long long) c->revision, key, key[0] ? ": " : "",
			reason);
	sm_strlcpy(c->last_refusal, what, sizeof(c->last_refusal));
}

static bool doc_differs(const char *a, const char *b)
{
	return !a || !b || strcmp(a, b) != 0;
}

/* Put st in force (main thread). 0, or -errno with key/err saying what was refused. */
static int apply_state(struct sm_cluster *c, struct sm_cluster_state *st, char *key, size_t key_len,
		       struct sm_error *err)
{
	struct sm_daemon *d = c->d;
	bool cat_changed = doc_differs(c->catalog_doc, st->catalog_doc);
	bool pol_changed = doc_differs(c->policy_doc, st->policy_doc);
	char node_key[SM_CLUSTER_KEY_MAX + SM_NAME_MAX];
	char *cat_doc = NULL, *pol_doc = NULL;
	int ret;

	key[0] = '\0';
	if (cat_changed || pol_changed) {
		if (sm_catalog_node_index(&st->cat, d->cfg.node) < 0) {
			snprintf(node_key, sizeof(node_key), "%s%s%s", c->prefix, SM_CK_NODES,
				 d->cfg.node);
			sm_strlcpy(key, node_key, key_len);
			sm_error_set(err, "this node (%s) is not in the cluster catalog",
				     d->cfg.node);
			return -EINVAL;
		}
		/* the policy must compile against the new catalog before anything changes */
		ret = sm_policy_compiles(d, &st->policies, &st->cat, err);
		if (ret)
			return ret;
		cat_doc = strdup(st->catalog_doc);
		pol_doc = strdup(st->policy_doc);
		if (!cat_doc || !pol_doc) {
			ret = -ENOMEM;
			sm_error_set(err, "out of memory");
			goto fail;
		}
	}
	if (cat_changed) {
		/* the policy in force is compiled again against it there */
		ret = sm_reload_swap_catalog(d, &st->cat, err);
		if (ret)
			goto fail;
		set_addresses(c);
	}
	if (pol_changed) {
		ret = sm_policy_replace(d, &st->policies, err);
		if (ret) {
			/* the catalog is in: record it, so the next state is compared right */
			if (cat_changed) {
				free(c->catalog_doc);
				c->catalog_doc = cat_doc;
				cat_doc = NULL;
			}
			goto fail;
		}
	}
	if (cat_doc) {
		free(c->catalog_doc);
		c->catalog_doc = cat_doc;
	}
	if (pol_doc) {
		free(c->policy_doc);
		c->policy_doc = pol_doc;
	}
	c->revision = st->revision;
	c->catalog_revision = st->catalog_revision;
	c->policy_revision = st->policy_revision;
	if (cat_changed || pol_changed) {
		state_save(c);
		pr_info("cluster: revision %lld in force (catalog %lld: %u nodes, %u workloads, %u "
			"services; policies %lld: %zu)",
			(long long) st->revision, (long long) st->catalog_revision, d->cat.nnodes,
			d->cat.nworkloads, d->cat.nservices, (long long) st->policy_revision,
			st->policies.npolicies);
	}
	return 0;
fail:
	free(cat_doc);
	free(pol_doc);
	return ret;
}

static void on_mail(struct sm_evloop *loop, struct sm_ev *ev, uint32_t events, void *arg)
{
	struct sm_daemon *d = arg;
	struct sm_cluster *c = d->cluster;
	struct sm_error err = {{0}};
	char key[SM_CLUSTER_KEY_MAX];
	struct mail *m;
	uint64_t n;

	(void) loop;
	(void) events;
	if (read(sm_ev_fd(ev), &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&c->box_mu);
	m = c->box;
	c->box = NULL;
	pthread_mutex_unlock(&c->box_mu);
	if (!m || d->draining) {
		mail_free(m);
		return;
	}
	if (m->refused) {
		refuse(c, m->revision, m->key, m->reason);
	} else if (apply_state(c, &m->st, key, sizeof(key), &err)) {
		refuse(c, m->st.revision, key, err.msg);
	} else {
		pthread_mutex_lock(&c->mu);
		c->refusing = false;
		c->info_revision = c->revision;
		c->info_catalog_revision = c->catalog_revision;
		c->info_policy_revision = c->policy_revision;
		c->info_local_revision = sm_policy_revision(d);
		c->applied_total++;
		c->status_dirty = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		c->last_refusal[0] = '\0';
	}
	mail_free(m);
}

/* ---- start and stop ---- */

static struct sm_cluster *cluster_new(struct sm_daemon *d, struct sm_error *err)
{
	struct sm_cluster *c = calloc(1, sizeof(*c));

	if (!c) {
		sm_error_set(err, "out of memory");
		return NULL;
	}
	c->d = d;
	c->efd = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->box_mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	sm_strlcpy(c->prefix, d->cfg.etcd_prefix, sizeof(c->prefix));
	snprintf(c->config_prefix, sizeof(c->config_prefix), "%s%s", c->prefix, SM_CK_CONFIG);
	snprintf(c->state_path, sizeof(c->state_path), "%s/%s", d->cfg.state_dir, STATE_FILE);
	if (etcd_cfg(&d->cfg, &c->ecfg, err) || sm_cluster_prefix_check(c->prefix, err)) {
		free(c);
		return NULL;
	}
	return c;
}

/* A first start: list etcd until it answers or cluster.start_timeout passes. */
static int first_list(struct sm_cluster *c, struct sm_cluster_state *st)
{
	struct sm_daemon *d = c->d;
	int64_t deadline = sm_mono_ms() + (int64_t) d->cfg.cluster_start_timeout * 1000;
	struct sm_error err = {{0}};
	char bad[SM_CLUSTER_KEY_MAX];
	struct sm_etcd *e = NULL;
	int backoff = BACKOFF_MIN_MS, ret;

	ret = sm_etcd_open(&e, &c->ecfg, &err);
	if (ret) {
		pr_err("cluster: %s", err.msg);
		return -EINVAL;
	}
	pr_info("cluster: no saved state in %s: reading %s from etcd (waiting up to %u s)",
		c->state_path, c->config_prefix, d->cfg.cluster_start_timeout);
	while ((ret = relist(c, e, &err)) != 0) {
		if (sm_mono_ms() + backoff > deadline) {
			pr_err("cluster: %s; no state saved in %s to start from (start it once "
			       "while etcd answers, or raise cluster.start_timeout)",
			       err.msg, c->state_path);
			sm_etcd_close(e);
			return ret == -EACCES ? -EACCES : -EHOSTUNREACH;
		}
		pr_debug("cluster: %s; trying again", err.msg);
		if (nap(c, backoff))
			break;
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	sm_etcd_close(e);
	contact(c, true);
	ret = sm_cluster_build(c->prefix, c->kvs, c->nkvs, c->mirror_revision, st, bad, sizeof(bad),
			       &err);
	mirror_clear(c);
	if (ret) {
		pr_err("cluster: the cluster's state at revision %lld does not validate: %s (fix "
		       "it "
		       "with sockmesh catalog apply / policy apply --cluster)",
		       (long long) c->mirror_revision, err.msg);
		return -EINVAL;
	}
	return 0;
}

int sm_cluster_prepare(struct sm_daemon *d, bool check_only)
{
	struct sm_cluster_state st = {0};
	struct sm_error err = {{0}};
	struct sm_cluster *c;
	int ret;

	c = cluster_new(d, &err);
	if (!c) {
		pr_err("%s", err.msg);
		return -EINVAL;
	}
	d->cluster = c;
	if (check_only)
		return 0;
	if (mkdir(d->cfg.state_dir, 0700) < 0 && errno != EEXIST) {
		pr_err("cannot create the state directory %s: %s (set paths.state_dir)",
		       d->cfg.state_dir, strerror(errno));
		return -EINVAL;
	}
	ret = state_load(c);
	if (ret == 0) {
		ret = sm_catalog_parse(&d->cat, c->catalog_doc, strlen(c->catalog_doc),
				       c->state_path, &err);
		if (ret) {
			pr_err("%s: the saved catalog does not load: %s (move the file away: the "
			       "node then reads etcd at its start)",
			       c->state_path, err.msg);
			return -EINVAL;
		}
		pr_info("cluster: starting from %s: revision %lld (catalog %lld, policies %lld); "
			"etcd is read once running",
			c->state_path, (long long) c->revision, (long long) c->catalog_revision,
			(long long) c->policy_revision);
		c->info_revision = c->revision;
		c->info_catalog_revision = c->catalog_revision;
		c->info_policy_revision = c->policy_revision;
		return 0;
	}
	if (ret != -ENOENT)
		return ret;
	ret = first_list(c, &st);
	if (ret)
		return ret;
	d->cat = st.cat;
	memset(&st.cat, 0, sizeof(st.cat));
	c->catalog_doc = st.catalog_doc;
	c->policy_doc = st.policy_doc;
	st.catalog_doc = st.policy_doc = NULL;
	c->revision = c->info_revision = st.revision;
	c->catalog_revision = c->info_catalog_revision = st.catalog_revision;
	c->policy_revision = c->info_policy_revision = st.policy_revision;
	sm_cluster_state_free(&st);
	return 0;
}

int sm_cluster_restore_policy(struct sm_daemon *d)
{
	struct sm_cluster *c = d->cluster;
	struct sm_policy_set set = {0};
	struct sm_error err = {{0}};
	int ret;

	if (!c)
		return 0;
	ret = sm_policy_set_parse(&set, c->policy_doc, strlen(c->policy_doc), c->state_path, &err);
	if (ret) {
		pr_err("cluster: the policy set of revision %lld does not parse: %s",
		       (long long) c->policy_revision, err.msg);
		return -EINVAL;
	}
	ret = sm_policy_replace(d, &set, &err);
	sm_policy_set_free(&set);
	if (ret) {
		pr_err("cluster: the policy set of revision %lld cannot be put in force: %s",
		       (long long) c->policy_revision, err.msg);
		return ret;
	}
	return state_save(c);
}

int sm_cluster_start(struct sm_daemon *d)
{
	struct sm_cluster *c = d->cluster;
	int ret;

	if (!c)
		return 0;
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0)
		return -errno;
	c->ev = sm_evloop_add(d->loop, c->efd, EPOLLIN, on_mail, d);
	if (!c->ev)
		return -errno;
	pthread_mutex_lock(&c->mu);
	c->info_local_revision = sm_policy_revision(d);
	pthread_mutex_unlock(&c->mu);
	set_addresses(c);
	ret = pthread_create(&c->watcher, NULL, watcher_main, c);
	if (ret)
		return -ret;
	c->watcher_running = true;
	ret = pthread_create(&c->reporter, NULL, reporter_main, c);
	if (ret)
		return -ret;
	c->reporter_running = true;
	return 0;
}

void sm_cluster_stop(struct sm_daemon *d)
{
	struct sm_cluster *c = d->cluster;

	if (!c)
		return;
	atomic_store(&c->stop, true);
	atomic_store(&c->watch_abort, true);
	pthread_mutex_lock(&c->mu);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (c->watcher_running)
		pthread_join(c->watcher, NULL);
	if (c->reporter_running)
		pthread_join(c->reporter, NULL);
	c->watcher_running = c->reporter_running = false;
	if (c->ev)
		sm_evloop_del(d->loop, c->ev);
	c->ev = NULL;
	if (c->efd >= 0)
		close(c->efd);
	c->efd = -1;
}

void sm_cluster_free(struct sm_daemon *d)
{
	struct sm_cluster *c = d->cluster;

	if (!c)
		return;
	sm_cluster_stop(d);
	mail_free(c->box);
	mirror_clear(c);
	free(c->kvs);
	free(c->catalog_doc);
	free(c->policy_doc);
	free(c->addresses);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->box_mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	d->cluster = NULL;
}

/* ---- what others see ---- */

void sm_cluster_info(const struct sm_daemon *d, struct sm_cluster_info *out)
{
	struct sm_cluster *c = d->cluster;
	int64_t now = sm_mono_ms();

	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	out->enabled = true;
	pthread_mutex_lock(&c->mu);
	out->connected = c->connected;
	out->revision = c->info_revision;
	out->catalog_revision = c->info_catalog_revision;
	out->policy_revision = c->info_policy_revision;
	out->last_contact_s = c->last_contact_ms ? (now - c->last_contact_ms) / 1000 : -1;
	out->stale_s = c->stale_since_ms ? (now - c->stale_since_ms) / 1000 : 0;
	out->refusing = c->refusing;
	out->refused_revision = c->refusing ? c->refused_revision : 0;
	out->applied_total = c->applied_total;
	out->refused_total = c->refused_total;
	pthread_mutex_unlock(&c->mu);
}

json_object *sm_cluster_status(const struct sm_daemon *d)
{
	struct sm_cluster *c = d->cluster;
	struct sm_cluster_info info;
	json_object *o, *r;

	if (!c)
		return NULL;
	sm_cluster_info(d, &info);
	o = json_object_new_object();
	json_object_object_add(o, "endpoints", json_object_new_int64((int64_t) c->ecfg.nendpoints));
	json_object_object_add(o, "prefix", json_object_new_string(c->prefix));
	json_object_object_add(o, "connected", json_object_new_boolean(info.connected));
	json_object_object_add(o, "revision", json_object_new_int64(info.revision));
	json_object_object_add(o, "catalog_revision", json_object_new_int64(info.catalog_revision));
	json_object_object_add(o, "policy_revision", json_object_new_int64(info.policy_revision));
	json_object_object_add(o, "last_contact_s", json_object_new_int64(info.last_contact_s));
	json_object_object_add(o, "stale_s", json_object_new_int64(info.stale_s));
	json_object_object_add(o, "applied", json_object_new_uint64(info.applied_total));
	json_object_object_add(o, "refusals", json_object_new_uint64(info.refused_total));
	r = NULL;
	pthread_mutex_lock(&c->mu);
	if (c->refusing) {
		r = json_object_new_object();
		json_object_object_add(r, "revision", json_object_new_int64(c->refused_revision));
		json_object_object_add(r, "key", json_object_new_string(c->refused_key));
		json_object_object_add(r, "reason", json_object_new_string(c->refused_reason));
	}
	pthread_mutex_unlock(&c->mu);
	json_object_object_add(o, "refused", r);
	return o;
}
