// SPDX-License-Identifier: Apache-2.0
/*
 * Cluster mode's commands: `sockmesh catalog apply|get|delete`, `policy
 * apply|delete|wait --cluster` and `status --cluster`. They read and write
 * the cluster's catalog and policies in etcd (key layout in clusterstore.h)
 * and never talk to a daemon: every write is one etcd transaction that
 * holds only if nothing under config/ changed since it was read, so two
 * writers never merge; `--wait` watches the nodes' applied states.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "clusterstore.h"
#include "etcd.h"
#include "policy.h"
#include "table.h"
#include "util.h"
#include "yaml_doc.h"

/* etcd's default --max-txn-ops: a write that needs more operations is refused, not split. */
#define ETCD_TXN_OPS_MAX       128
#define WAIT_DEFAULT_S	       30
#define POLICY_ENTRIES_DEFAULT 65536
#define POLICY_ENTRIES_MAX     (1u << 24)

/* ---- options ---- */

int cli_cluster_parse(struct cli_cluster_args *c, int key, const char *value)
{
	switch (key) {
	case CLI_K_ETCD:
		c->endpoints = value;
		break;
	case CLI_K_ETCD_CA:
		c->ca = value;
		break;
	case CLI_K_ETCD_CERT:
		c->cert = value;
		break;
	case CLI_K_ETCD_KEY:
		c->key = value;
		break;
	case CLI_K_ETCD_PREFIX:
		c->prefix = value;
		break;
	case CLI_K_ETCD_USER:
		c->user = value;
		break;
	case CLI_K_ETCD_PASSWORD_FILE:
		c->password_file = value;
		break;
	case CLI_K_CLUSTER:
		c->cluster = true;
		break;
	case CLI_K_WAIT:
		c->wait = true;
		break;
	case CLI_K_DRY_RUN:
		c->dry_run = true;
		break;
	case CLI_K_MAX_WAIT:
		if (sm_parse_u64(value, 1, 86400, &c->max_wait_s)) {
			cli_error("--max-wait '%s': expected seconds, 1..86400", value);
			return CLI_EXIT_USAGE;
		}
		break;
	case CLI_K_MAX_POLICY_ENTRIES:
		if (sm_parse_u64(value, 1, POLICY_ENTRIES_MAX, &c->max_policy_entries)) {
			cli_error("--max-policy-entries '%s': expected 1..%u (the nodes' "
				  "datapath.max_policy_entries)",
				  value, POLICY_ENTRIES_MAX);
			return CLI_EXIT_USAGE;
		}
		break;
	default:
		return -1;
	}
	return 0;
}

/* An option's value, else the environment's; NULL when neither is set. */
static const char *setting(const char *opt, const char *env)
{
	const char *v = getenv(env);

	if (opt)
		return opt;
	return v && *v ? v : NULL;
}

/* c's settings into cfg and prefix: 0 or CLI_EXIT_USAGE after a message saying what to set. */
static int cluster_cfg(const struct cli_opts *o, const struct cli_cluster_args *c,
		       struct sm_etcd_cfg *cfg, char *prefix, size_t prefix_len)
{
	static const struct {
		const char *opt, *env, *what;
	} required[] = {
		{"--etcd URL[,URL...]", "SOCKMESH_ETCD_ENDPOINTS", "no etcd endpoint"},
		{"--etcd-ca FILE", "SOCKMESH_ETCD_CA", "no CA for etcd's server certificate"},
		{"--etcd-cert FILE", "SOCKMESH_ETCD_CERT", "no client certificate for etcd"},
		{"--etcd-key FILE", "SOCKMESH_ETCD_KEY", "no private key for etcd"},
	};
	const char *vals[] = {
		setting(c->endpoints, "SOCKMESH_ETCD_ENDPOINTS"),
		setting(c->ca, "SOCKMESH_ETCD_CA"),
		setting(c->cert, "SOCKMESH_ETCD_CERT"),
		setting(c->key, "SOCKMESH_ETCD_KEY"),
	};
	const char *user = setting(c->user, "SOCKMESH_ETCD_USER");
	const char *pwfile = setting(c->password_file, "SOCKMESH_ETCD_PASSWORD_FILE");
	const char *p = setting(c->prefix, "SOCKMESH_ETCD_PREFIX");
	struct sm_error err = {""};
	char *list, *tok, *save = NULL;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < SM_ARRAY_SIZE(required); i++) {
		if (!vals[i]) {
			cli_error("%s: set %s or the environment variable %s", required[i].what,
				  required[i].opt, required[i].env);
			return CLI_EXIT_USAGE;
		}
	}
	if (user && !pwfile) {
		cli_error("etcd user '%s' has no password: set --etcd-password-file FILE or "
			  "SOCKMESH_ETCD_PASSWORD_FILE",
			  user);
		return CLI_EXIT_USAGE;
	}
	list = strdup(vals[0]);
	if (!list) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (cfg->nendpoints == SM_ETCD_MAX_ENDPOINTS ||
		    sm_strlcpy(cfg->endpoints[cfg->nendpoints], tok, SM_ETCD_URL_MAX)) {
			cli_error("--etcd: at most %d URLs of at most %d bytes each",
				  SM_ETCD_MAX_ENDPOINTS, SM_ETCD_URL_MAX - 1);
			free(list);
			return CLI_EXIT_USAGE;
		}
		cfg->nendpoints++;
	}
	free(list);
	if (sm_strlcpy(cfg->ca, vals[1], sizeof(cfg->ca)) ||
	    sm_strlcpy(cfg->cert, vals[2], sizeof(cfg->cert)) ||
	    sm_strlcpy(cfg->key, vals[3], sizeof(cfg->key)) ||
	    sm_strlcpy(cfg->username, user ? user : "", sizeof(cfg->username)) ||
	    sm_strlcpy(cfg->password_file, pwfile ? pwfile : "", sizeof(cfg->password_file))) {
		cli_error("an etcd setting is too long (paths: PATH_MAX, user: 63 bytes)");
		return CLI_EXIT_USAGE;
	}
	cfg->timeout_ms = o->timeout_ms;
	if (sm_etcd_cfg_check(cfg, &err)) {
		cli_error("%s", err.msg);
		return CLI_EXIT_USAGE;
	}
	if (sm_strlcpy(prefix, p ? p : SM_CLUSTER_PREFIX_DEFAULT, prefix_len) ||
	    sm_cluster_prefix_check(prefix, &err)) {
		cli_error("%s (--etcd-prefix or SOCKMESH_ETCD_PREFIX)",
			  err.msg[0] ? err.msg : "the etcd prefix is too long");
		return CLI_EXIT_USAGE;
	}
	return 0;
}

/* ---- one session with etcd ---- */

struct session {
	const struct cli_opts *o;
	struct cli_cluster_args *c;
	struct sm_etcd *e;
	char prefix[SM_CLUSTER_PREFIX_MAX];
	char config[SM_CLUSTER_KEY_MAX]; /* PREFIX config/ */
	struct sm_etcd_kvs kvs;		 /* what config/ held when read */
};

static int session_open(struct session *s, const struct cli_opts *o, struct cli_cluster_args *c)
{
	struct sm_etcd_cfg cfg;
	struct sm_error err = {""};
	int ret;

	memset(s, 0, sizeof(*s));
	s->o = o;
	s->c = c;
	ret = cluster_cfg(o, c, &cfg, s->prefix, sizeof(s->prefix));
	if (ret)
		return ret;
	snprintf(s->config, sizeof(s->config), "%s%s", s->prefix, SM_CK_CONFIG);
	if (sm_etcd_open(&s->e, &cfg, &err)) {
		cli_error("%s", err.msg);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

static void session_close(struct session *s)
{
	sm_etcd_kvs_free(&s->kvs);
	sm_etcd_close(s->e);
	s->e = NULL;
}

/*
 * For tests of concurrent writers only: with SOCKMESH_TEST_PAUSE_AFTER_READ
 * set to a path, the command writes the revision it read into that file and
 * waits (at most 60 s) until the file is removed, so that a test can write
 * in between deterministically.
 */
static void test_pause_after_read(int64_t revision)
{
	const char *path = getenv("SOCKMESH_TEST_PAUSE_AFTER_READ");
	const struct timespec tick = {.tv_nsec = 20 * 1000 * 1000};
	int64_t until = sm_mono_ms() + 60000;
	FILE *f;

	if (!path || !*path)
		return;
	f = fopen(path, "we");
	if (!f)
		return;
	fprintf(f, "%" PRId64 "\n", revision);
	fclose(f);
	while (access(path, F_OK) == 0 && sm_mono_ms() < until)
		nanosleep(&tick, NULL);
}

/* Read PREFIX config/ into s->kvs: 0 or CLI_EXIT_FAIL after a message. */
static int session_read(struct session *s)
{
	struct sm_error err = {""};

	if (sm_etcd_get_prefix(s->e, s->config, 0, &s->kvs, &err)) {
		cli_error("%s", err.msg);
		return CLI_EXIT_FAIL;
	}
	test_pause_after_read(s->kvs.revision);
	return 0;
}

/* The key in s->kvs (sorted by key, as etcd lists), or NULL. */
static const struct sm_etcd_kv *find_kv(const struct sm_etcd_kvs *kvs, const char *key)
{
	size_t lo = 0, hi = kvs->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(kvs->kvs[mid].key, key);

		if (c == 0)
			return &kvs->kvs[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The highest mod_revision under config/: the latest change the nodes must apply. */
static int64_t latest_config_revision(const struct sm_etcd_kvs *kvs)
{
	int64_t max = 0;

	for (size_t i = 0; i < kvs->n; i++)
		if (kvs->kvs[i].mod_revision > max)
			max = kvs->kvs[i].mod_revision;
	return max;
}

/* ---- reading a file ---- */

/* ---- a change: what is put and deleted, checked, then one transaction ---- */

enum change_kind {
	CH_UNCHANGED,
	CH_ADDED,
	CH_CHANGED,
	CH_DELETED,
};

struct change_item {
	char key[SM_CLUSTER_KEY_MAX]; /* full key */
	enum change_kind kind;
	const char *value; /* puts: borrowed from the objects */
	size_t value_len;
	unsigned int line; /* in the file, 0 when none */
};

struct change {
	const char *command; /* "catalog apply", ... for the generation and messages */
	const char *source;  /* the file, or NULL */
	struct change_item *items;
	size_t n, cap;
	size_t counts[4]; /* by enum change_kind */
	bool sorted;	  /* items by key: change_find() bisects */
};

static void change_free(struct change *ch)
{
	free(ch->items);
	ch->items = NULL;
	ch->n = 0;
}

static int change_add(struct change *ch, const char *key, enum change_kind kind, const char *value,
		      size_t value_len, unsigned int line)
{
	struct change_item *it;

	if (ch->n == ch->cap) {
		size_t cap = ch->cap ? ch->cap * 2 : 16;
		struct change_item *grown = realloc(ch->items, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		ch->items = grown;
		ch->cap = cap;
	}
	ch->sorted = false;
	it = &ch->items[ch->n++];
	memset(it, 0, sizeof(*it));
	sm_strlcpy(it->key, key, sizeof(it->key));
	it->kind = kind;
	it->value = value;
	it->value_len = value_len;
	it->line = line;
	ch->counts[kind]++;
	return 0;
}

/* The objects' puts against what was read: added, changed or unchanged. */
static int change_puts(struct session *s, struct change *ch, const struct sm_cluster_objs *objs)
{
	for (size_t i = 0; i < objs->n; i++) {
		const struct sm_cluster_obj *obj = &objs->objs[i];
		char key[SM_CLUSTER_KEY_MAX];
		const struct sm_etcd_kv *kv;
		enum change_kind kind = CH_ADDED;

		snprintf(key, sizeof(key), "%s%s", s->prefix, obj->key);
		kv = find_kv(&s->kvs, key);
		if (kv)
			kind = kv->value_len == obj->value_len &&
					       memcmp(kv->value, obj->value, obj->value_len) == 0
				       ? CH_UNCHANGED
				       : CH_CHANGED;
		if (change_add(ch, key, kind, obj->value, obj->value_len, obj->line)) {
			cli_error("out of memory");
			return CLI_EXIT_FAIL;
		}
	}
	return 0;
}

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const struct change_item *) a)->key, ((const struct change_item *) b)->key);
}

/* Items by key, so that finding one is a bisection (a file may hold 50,000 objects). */
static void change_sort(struct change *ch)
{
	if (ch->n)
		qsort(ch->items, ch->n, sizeof(*ch->items), cmp_item);
	ch->sorted = true;
}

static const struct change_item *change_find(const struct change *ch, const char *key)
{
	struct change_item probe;

	if (!ch->sorted) {
		for (size_t i = 0; i < ch->n; i++)
			if (strcmp(ch->items[i].key, key) == 0)
				return &ch->items[i];
		return NULL;
	}
	if (!ch->n || sm_strlcpy(probe.key, key, sizeof(probe.key)))
		return NULL;
	return bsearch(&probe, ch->items, ch->n, sizeof(*ch->items), cmp_item);
}

/*
 * The keys config/ would hold after ch, for sm_cluster_build(): what was read
 * with the puts' values in place and the deletes left out, plus the added
 * keys. Strings are borrowed. NULL when out of memory.
 */
static struct sm_etcd_kv *change_merged(const struct session *s, const struct change *ch, size_t *n)
{
	struct sm_etcd_kv *kvs = calloc(s->kvs.n + ch->n + 1, sizeof(*kvs));
	int64_t next = s->kvs.revision + 1;

	*n = 0;
	if (!kvs)
		return NULL;
	for (size_t i = 0; i < s->kvs.n; i++) {
		const struct change_item *it = ch->n ? change_find(ch, s->kvs.kvs[i].key) : NULL;

		if (it && it->kind == CH_DELETED)
			continue;
		kvs[*n] = s->kvs.kvs[i];
		if (it && it->kind == CH_CHANGED) {
			kvs[*n].value = (char *) it->value;
			kvs[*n].value_len = it->value_len;
			kvs[*n].mod_revision = next;
		}
		(*n)++;
	}
	for (size_t i = 0; i < ch->n; i++) {
		if (ch->items[i].kind != CH_ADDED)
			continue;
		kvs[*n] = (struct sm_etcd_kv){
			.key = ch->items[i].key,
			.key_len = strlen(ch->items[i].key),
			.value = (char *) ch->items[i].value,
			.value_len = ch->items[i].value_len,
			.create_revision = next,
			.mod_revision = next,
			.version = 1,
		};
		(*n)++;
	}
	return kvs;
}

/*
 * Would the cluster still load after ch? The merged keys must build
 * (sm_cluster_build()) and the policies compile against the catalog within
 * --max-policy-entries. 0 or CLI_EXIT_FAIL after a message naming the key
 * (and the file's line when the key comes from the file).
 */
static int change_check(struct session *s, const struct change *ch)
{
	uint64_t max_entries =
		s->c->max_policy_entries ? s->c->max_policy_entries : POLICY_ENTRIES_DEFAULT;
	struct sm_cluster_state st;
	struct sm_policy_compiled comp;
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""};
	const struct change_item *it;
	struct sm_etcd_kv *merged;
	size_t n;
	int ret;

	merged = change_merged(s, ch, &n);
	if (!merged) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	ret = sm_cluster_build(s->prefix, merged, n, s->kvs.revision, &st, bad_key, sizeof(bad_key),
			       &err);
	free(merged);
	if (ret) {
		it = bad_key[0] ? change_find(ch, bad_key) : NULL;
		if (it && it->line && ch->source)
			cli_error("%s:%u: %s (nothing was written)", ch->source, it->line, err.msg);
		else if (bad_key[0] && !it)
			cli_error("%s (the key is in etcd already; fix or delete it, e.g. "
				  "etcdctl del '%s'; nothing was written)",
				  err.msg, bad_key);
		else
			cli_error("%s (nothing was written)", err.msg);
		return CLI_EXIT_FAIL;
	}
	ret = sm_policy_compile(&st.policies, &st.cat, 1, max_entries, &comp, &err);
	if (ret) {
		cli_error("the cluster's policies do not compile against its catalog: %s "
			  "(nothing was written)",
			  err.msg);
		sm_cluster_state_free(&st);
		return CLI_EXIT_FAIL;
	}
	for (size_t i = 0; s->c->strict && i < comp.nunmatched; i++) {
		char what[SM_SPIFFE_MAX + 128];

		if (comp.unmatched[i].pattern)
			continue;
		cli_error("--strict: %s (check the spelling, or add the workload to the "
			  "catalog; nothing was written)",
			  sm_policy_unmatched_format(&comp.unmatched[i], what, sizeof(what)));
		sm_policy_compiled_free(&comp);
		sm_cluster_state_free(&st);
		return CLI_EXIT_FAIL;
	}
	if (comp.nunmatched)
		fprintf(stderr,
			"sockmesh: note: %zu selector(s) or source(s) of the cluster's policies "
			"match no workload of its catalog, e.g. %s\n",
			comp.nunmatched, comp.unmatched_example);
	sm_policy_compiled_free(&comp);
	sm_cluster_state_free(&st);
	return 0;
}

/* config/generation's value: who wrote what, when. malloc'ed, NULL when out of memory. */
static char *generation_value(const struct session *s, const struct change *ch)
{
	struct json_object *o = json_object_new_object();
	const struct passwd *pw = getpwuid(getuid());
	char host[256] = "", when[64], who[320];
	char *out = NULL;
	const char *text;

	if (!o)
		return NULL;
	gethostname(host, sizeof(host) - 1);
	snprintf(who, sizeof(who), "%s@%s", pw ? pw->pw_name : "?", host);
	json_object_object_add(o, "by", json_object_new_string(who));
	json_object_object_add(
		o, "at",
		json_object_new_string(sm_format_time_ns(sm_real_ns(), when, sizeof(when))));
	json_object_object_add(o, "command", json_object_new_string(ch->command));
	if (ch->source)
		json_object_object_add(o, "source", json_object_new_string(ch->source));
	json_object_object_add(o, "read_revision", json_object_new_int64(s->kvs.revision));
	json_object_object_add(o, "added", json_object_new_int64((int64_t) ch->counts[CH_ADDED]));
	json_object_object_add(o, "changed",
			       json_object_new_int64((int64_t) ch->counts[CH_CHANGED]));
	json_object_object_add(o, "deleted",
			       json_object_new_int64((int64_t) ch->counts[CH_DELETED]));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text)
		out = strdup(text);
	json_object_put(o);
	return out;
}

/*
 * The change as one transaction: it holds only if config/generation is as
 * read (or still absent) and no key under config/ changed after the read's
 * revision. 0 with *written and *revision, or CLI_EXIT_FAIL after a message.
 */
static int change_commit(struct session *s, const struct change *ch, bool *written,
			 int64_t *revision)
{
	char gen_key[SM_CLUSTER_KEY_MAX];
	const struct sm_etcd_kv *gen;
	struct sm_etcd_cmp cmps[2];
	struct sm_etcd_op *ops;
	struct sm_error err = {""};
	size_t nops = 0;
	char *gen_value;
	int ret;

	snprintf(gen_key, sizeof(gen_key), "%s%s", s->prefix, SM_CK_GENERATION);
	gen = find_kv(&s->kvs, gen_key);
	cmps[0] = (struct sm_etcd_cmp){
		.key = gen_key,
		.target = gen ? SM_ETCD_MOD : SM_ETCD_CREATE,
		.result = SM_ETCD_EQUAL,
		.value = gen ? gen->mod_revision : 0,
	};
	cmps[1] = (struct sm_etcd_cmp){
		.key = s->config,
		.prefix = true,
		.target = SM_ETCD_MOD,
		.result = SM_ETCD_LESS,
		.value = s->kvs.revision + 1,
	};
	gen_value = generation_value(s, ch);
	ops = calloc(ch->n + 1, sizeof(*ops));
	if (!gen_value || !ops) {
		free(gen_value);
		free(ops);
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	for (size_t i = 0; i < ch->n; i++) {
		const struct change_item *it = &ch->items[i];

		if (it->kind == CH_UNCHANGED)
			continue;
		ops[nops++] = (struct sm_etcd_op){
			.type = it->kind == CH_DELETED ? SM_ETCD_DELETE : SM_ETCD_PUT,
			.key = it->key,
			.value = it->value,
			.value_len = it->value_len,
		};
	}
	ops[nops++] = (struct sm_etcd_op){
		.type = SM_ETCD_PUT,
		.key = gen_key,
		.value = gen_value,
		.value_len = strlen(gen_value),
	};
	ret = sm_etcd_txn(s->e, cmps, 2, ops, nops, written, revision, &err);
	free(gen_value);
	free(ops);
	if (ret == -E2BIG) {
		cli_error("%s: %s (nothing was written)", ch->command, err.msg);
		return CLI_EXIT_FAIL;
	}
	if (ret == -EACCES) {
		/* refused before it ran: at the TLS handshake or by etcd's permission check */
		cli_error("%s: %s (nothing was written; writing %s needs an etcd user with "
			  "readwrite on it, such as one with the role sockmesh-operator: "
			  "docs/cluster.md, Security)",
			  ch->command, err.msg, s->config);
		return CLI_EXIT_FAIL;
	}
	if (ret) {
		cli_error("%s: %s (the write may or may not have happened: check with "
			  "'sockmesh catalog get' or 'etcdctl get %s --prefix --keys-only')",
			  ch->command, err.msg, s->config);
		return CLI_EXIT_FAIL;
	}
	if (!*written) {
		cli_error("conflict: the cluster changed since it was read (revision %" PRId64
			  "); nothing was written; run the command again",
			  s->kvs.revision);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

/* ---- waiting for the nodes ---- */

struct wnode {
	char name[SM_NAME_MAX];
	bool registered, ready, has_applied;
	int64_t lease;
	struct sm_cluster_applied applied;
};

struct waiter {
	const char *reg_prefix, *applied_prefix; /* full keys */
	int64_t target;
	struct wnode *nodes;
	size_t n, cap;
	const struct wnode *refused; /* the node that refused target, once seen */
	atomic_bool stop;
	atomic_bool finished;
	int64_t deadline_ms;
	int64_t last_revision;
};

static struct wnode *waiter_node(struct waiter *w, const char *name)
{
	struct wnode *grown;

	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->nodes[i].name, name) == 0)
			return &w->nodes[i];
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;

		grown = realloc(w->nodes, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		w->nodes = grown;
		w->cap = cap;
	}
	memset(&w->nodes[w->n], 0, sizeof(w->nodes[0]));
	sm_strlcpy(w->nodes[w->n].name, name, SM_NAME_MAX);
	return &w->nodes[w->n++];
}

/* A registration's "ready" (value NUL-terminated, as etcd.h gives it): false unless true. */
static bool registration_ready(const char *value)
{
	struct json_object *o = json_tokener_parse(value), *v;
	bool ready = false;

	if (o && json_object_object_get_ex(o, "ready", &v) &&
	    json_object_is_type(v, json_type_boolean))
		ready = json_object_get_boolean(v);
	json_object_put(o);
	return ready;
}

/* One key under status/ (or its deletion) into the waiter. -ENOMEM or 0. */
static int waiter_update(struct waiter *w, const struct sm_etcd_kv *kv, bool deleted)
{
	size_t rl = strlen(w->reg_prefix), al = strlen(w->applied_prefix);
	bool reg = strncmp(kv->key, w->reg_prefix, rl) == 0;
	bool app = !reg && strncmp(kv->key, w->applied_prefix, al) == 0;
	const char *name = reg ? kv->key + rl : kv->key + al;
	struct sm_error err;
	struct wnode *n;

	if ((!reg && !app) || !*name || strlen(name) >= SM_NAME_MAX)
		return 0;
	n = waiter_node(w, name);
	if (!n)
		return -ENOMEM;
	if (reg) {
		n->registered = !deleted;
		n->ready = !deleted && registration_ready(kv->value);
		n->lease = deleted ? 0 : kv->lease;
	} else {
		n->has_applied = !deleted && sm_cluster_applied_parse(kv->value, kv->value_len,
								      &n->applied, &err) == 0;
		if (!deleted && !n->has_applied)
			fprintf(stderr, "sockmesh: note: %s: %s\n", kv->key, err.msg);
	}
	return 0;
}

/* 1: every ready node applied target; 2: one refused it (w->refused); 0: not yet. */
static int waiter_state(struct waiter *w)
{
	bool done = true;

	for (size_t i = 0; i < w->n; i++) {
		const struct wnode *n = &w->nodes[i];

		if (n->has_applied && n->applied.refused_revision >= w->target) {
			w->refused = n;
			return 2;
		}
		if (n->registered && n->ready &&
		    (!n->has_applied || n->applied.revision < w->target))
			done = false;
	}
	return done ? 1 : 0;
}

static int waiter_event(void *arg, int64_t revision, const struct sm_etcd_event *ev, size_t n)
{
	struct waiter *w = arg;

	for (size_t i = 0; i < n; i++)
		if (waiter_update(w, &ev[i].kv, ev[i].deleted))
			return -ENOMEM;
	if (revision > w->last_revision)
		w->last_revision = revision;
	return waiter_state(w);
}

/* Sets w->stop at the deadline, so the watch ends then (it checks every 100 ms). */
static void *waiter_timer(void *arg)
{
	struct waiter *w = arg;
	const struct timespec tick = {.tv_nsec = 50 * 1000 * 1000};

	while (!atomic_load(&w->finished) && sm_mono_ms() < w->deadline_ms)
		nanosleep(&tick, NULL);
	atomic_store(&w->stop, true);
	return NULL;
}

static int cmp_wnode(const void *a, const void *b)
{
	return strcmp(((const struct wnode *) a)->name, ((const struct wnode *) b)->name);
}

/*
 * Wait until every registered node that is ready has applied revision
 * target (status/applied/NODE's revision >= target), watching PREFIX status/
 * from the listing's revision + 1. A node whose applied state refused target
 * or later fails it at once. 0 or CLI_EXIT_FAIL after a message.
 */
static int wait_for(struct session *s, int64_t target, json_object *report)
{
	uint64_t max_s = s->c->max_wait_s ? s->c->max_wait_s : WAIT_DEFAULT_S;
	char status[SM_CLUSTER_KEY_MAX], reg[SM_CLUSTER_KEY_MAX], app[SM_CLUSTER_KEY_MAX];
	struct waiter w = {.reg_prefix = reg, .applied_prefix = app, .target = target};
	int64_t start = sm_mono_ms(), compact = 0;
	struct sm_etcd_kvs kvs = {0};
	struct sm_error err = {""};
	size_t ready = 0;
	pthread_t timer;
	int ret, state;

	snprintf(status, sizeof(status), "%s%s", s->prefix, SM_CK_STATUS);
	snprintf(reg, sizeof(reg), "%s%s", s->prefix, SM_CK_REG);
	snprintf(app, sizeof(app), "%s%s", s->prefix, SM_CK_APPLIED);
	if (sm_etcd_get_prefix(s->e, status, 0, &kvs, &err)) {
		cli_error("%s", err.msg);
		return CLI_EXIT_FAIL;
	}
	for (size_t i = 0; i < kvs.n; i++) {
		if (waiter_update(&w, &kvs.kvs[i], false)) {
			sm_etcd_kvs_free(&kvs);
			free(w.nodes);
			cli_error("out of memory");
			return CLI_EXIT_FAIL;
		}
	}
	w.last_revision = kvs.revision;
	sm_etcd_kvs_free(&kvs);
	state = waiter_state(&w);
	if (state == 0) {
		w.deadline_ms = start + (int64_t) max_s * 1000;
		atomic_init(&w.stop, false);
		atomic_init(&w.finished, false);
		if (pthread_create(&timer, NULL, waiter_timer, &w)) {
			free(w.nodes);
			cli_error("cannot start the --wait timer: %s", strerror(errno));
			return CLI_EXIT_FAIL;
		}
		ret = sm_etcd_watch(s->e, status, w.last_revision + 1, waiter_event, &w, &w.stop, 0,
				    &compact, &err);
		atomic_store(&w.finished, true);
		pthread_join(timer, NULL);
		state = ret == 1 || ret == 2 ? ret : 0;
		if (ret < 0 && ret != -EINTR) {
			cli_error("waiting for the nodes: %s", err.msg);
			free(w.nodes);
			return CLI_EXIT_FAIL;
		}
	}
	if (w.n)
		qsort(w.nodes, w.n, sizeof(*w.nodes), cmp_wnode);
	for (size_t i = 0; i < w.n; i++)
		ready += w.nodes[i].registered && w.nodes[i].ready;
	if (state == 2) {
		const struct wnode *n = w.refused;

		cli_error("node %s refused revision %" PRId64 " (it refused revision %" PRId64
			  "): %s: %s (fix that key and apply again)",
			  n->name, target, n->applied.refused_revision, n->applied.refused_key,
			  n->applied.refused_reason);
		free(w.nodes);
		return CLI_EXIT_FAIL;
	}
	if (state == 0) {
		char list[4096] = "";
		size_t used = 0;

		for (size_t i = 0; i < w.n; i++) {
			const struct wnode *n = &w.nodes[i];
			char at[64];

			if (!n->registered || !n->ready ||
			    (n->has_applied && n->applied.revision >= target))
				continue;
			if (n->has_applied)
				snprintf(at, sizeof(at), "at revision %" PRId64,
					 n->applied.revision);
			else
				snprintf(at, sizeof(at), "no applied state");
			used += (size_t) snprintf(list + used,
						  used < sizeof(list) ? sizeof(list) - used : 0,
						  "%s%s (%s)", used ? ", " : "", n->name, at);
		}
		cli_error("timed out after %" PRIu64 " s waiting for revision %" PRId64
			  ": not applied by %s (is sockmeshd running there? its log says why)",
			  max_s, target, list);
		free(w.nodes);
		return CLI_EXIT_FAIL;
	}
	if (report) {
		json_object_object_add(
			report, "converged_s",
			json_object_new_double((double) (sm_mono_ms() - start) / 1000.0));
		json_object_object_add(report, "nodes", json_object_new_int64((int64_t) ready));
	} else if (ready == 0) {
		printf("no node is registered and ready: nothing to wait for\n");
	} else {
		printf("revision %" PRId64 " applied by all %zu ready node(s) in %.2f s\n", target,
		       ready, (double) (sm_mono_ms() - start) / 1000.0);
	}
	free(w.nodes);
	return 0;
}

/* ---- printing a change ---- */

static int change_print(const struct session *s, const struct change *ch, bool written,
			int64_t revision, bool dry_run, json_object **report)
{
	static const char marks[] = {' ', '+', '~', '-'};
	static const char *const names[] = {"unchanged", "added", "changed", "deleted"};

	if (s->o->output == CLI_OUT_JSON) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "command", json_object_new_string(ch->command));
		json_object_object_add(o, "read_revision", json_object_new_int64(s->kvs.revision));
		json_object_object_add(o, "written", json_object_new_boolean(written));
		json_object_object_add(o, "dry_run", json_object_new_boolean(dry_run));
		json_object_object_add(o, "revision",
				       json_object_new_int64(written ? revision : s->kvs.revision));
		for (int k = CH_ADDED; k <= CH_DELETED; k++) {
			json_object *arr = json_object_new_array();

			for (size_t i = 0; i < ch->n; i++)
				if ((int) ch->items[i].kind == k)
					json_object_array_add(
						arr, json_object_new_string(ch->items[i].key));
			json_object_object_add(o, names[k], arr);
		}
		json_object_object_add(o, "unchanged",
				       json_object_new_int64((int64_t) ch->counts[CH_UNCHANGED]));
		*report = o;
		return 0;
	}
	for (size_t i = 0; i < ch->n; i++)
		if (ch->items[i].kind != CH_UNCHANGED)
			printf("%c %s\n", marks[ch->items[i].kind], ch->items[i].key);
	printf("%s: %zu added, %zu changed, %zu deleted, %zu unchanged; ", ch->command,
	       ch->counts[CH_ADDED], ch->counts[CH_CHANGED], ch->counts[CH_DELETED],
	       ch->counts[CH_UNCHANGED]);
	if (dry_run)
		printf("dry run: nothing written (read at revision %" PRId64 ")\n",
		       s->kvs.revision);
	else if (written)
		printf("written at revision %" PRId64 " (read at %" PRId64 ")\n", revision,
		       s->kvs.revision);
	else
		printf("nothing to write (revision %" PRId64 ")\n", s->kvs.revision);
	return 0;
}

static int print_report(json_object *report)
{
	const char *text = json_object_to_json_string_ext(
		report,
		JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);

	puts(text ? text : "null");
	return CLI_EXIT_OK;
}

/*
 * Check ch against what was read, write it in one transaction unless dry
 * run or nothing changes, print it, and with --wait wait for the nodes.
 */
static int change_run(struct session *s, struct change *ch)
{
	size_t nops = ch->counts[CH_ADDED] + ch->counts[CH_CHANGED] + ch->counts[CH_DELETED] + 1;
	json_object *report = NULL;
	bool written = false;
	int64_t revision = 0;
	int ret;

	change_sort(ch);
	ret = change_check(s, ch);
	if (ret)
		return ret;
	if (nops > ETCD_TXN_OPS_MAX) {
		cli_error("%s: the change is %zu keys, more than the %d operations etcd takes in "
			  "one transaction (its --max-txn-ops) with config/generation; sockmesh "
			  "writes a change in one transaction or not at all: apply it in parts of "
			  "at most %d objects; nothing was written",
			  ch->command, nops - 1, ETCD_TXN_OPS_MAX, ETCD_TXN_OPS_MAX - 1);
		return CLI_EXIT_FAIL;
	}
	if (!s->c->dry_run && nops > 1) {
		ret = change_commit(s, ch, &written, &revision);
		if (ret)
			return ret;
	}
	change_print(s, ch, written, revision, s->c->dry_run, &report);
	/* what was written is said before a wait that may take minutes (tee, logs) */
	fflush(stdout);
	if (s->c->wait && !s->c->dry_run) {
		/* nothing written: wait for the latest change already there */
		ret = wait_for(s, written ? revision : latest_config_revision(&s->kvs), report);
		if (ret) {
			json_object_put(report);
			return ret;
		}
	}
	if (report) {
		print_report(report);
		json_object_put(report);
	}
	return CLI_EXIT_OK;
}

/* ---- apply and delete ---- */

typedef int (*split_fn)(const char *text, size_t len, const char *name, struct sm_cluster_objs *out,
			struct sm_error *err);

static int cluster_apply(const struct cli_opts *o, struct cli_cluster_args *c, const char *file,
			 const char *command, split_fn split)
{
	struct change ch = {.command = command};
	struct sm_cluster_objs objs = {0};
	struct sm_error err = {""};
	struct session s;
	const char *name;
	size_t len;
	char *text;
	int ret;

	ret = session_open(&s, o, c);
	if (ret)
		return ret;
	name = strcmp(file, "-") == 0 ? "<stdin>" : file;
	ch.source = name;
	text = cli_read_input(file, SM_YAML_MAX_FILE, "split it", &len);
	if (!text) {
		ret = CLI_EXIT_FAIL;
		goto close;
	}
	ret = split(text, len, name, &objs, &err);
	free(text);
	if (ret) {
		cli_error("%s (nothing was written)", err.msg);
		ret = CLI_EXIT_FAIL;
		goto close;
	}
	ret = session_read(&s);
	if (!ret)
		ret = change_puts(&s, &ch, &objs);
	if (!ret)
		ret = change_run(&s, &ch);
	change_free(&ch);
	sm_cluster_objs_free(&objs);
close:
	session_close(&s);
	return ret;
}

/* Delete keys (relative to the prefix); each must exist. */
static int cluster_delete(const struct cli_opts *o, struct cli_cluster_args *c, const char *command,
			  const char *const *rel, size_t n, const char *dir)
{
	struct change ch = {.command = command};
	struct session s;
	int ret;

	ret = session_open(&s, o, c);
	if (ret)
		return ret;
	ret = session_read(&s);
	for (size_t i = 0; !ret && i < n; i++) {
		char key[SM_CLUSTER_KEY_MAX];

		snprintf(key, sizeof(key), "%s%s", s.prefix, rel[i]);
		if (change_find(&ch, key))
			continue;
		if (!find_kv(&s.kvs, key)) {
			cli_error("%s: no such key in the cluster (revision %" PRId64
				  "; 'etcdctl get %s%s --prefix --keys-only' lists what is "
				  "there); nothing was written",
				  key, s.kvs.revision, s.prefix, dir);
			ret = CLI_EXIT_FAIL;
		} else if (change_add(&ch, key, CH_DELETED, NULL, 0, 0)) {
			cli_error("out of memory");
			ret = CLI_EXIT_FAIL;
		}
	}
	if (!ret)
		ret = change_run(&s, &ch);
	change_free(&ch);
	session_close(&s);
	return ret;
}

int cli_cluster_policy_apply(const struct cli_opts *o, struct cli_cluster_args *c, const char *file)
{
	return cluster_apply(o, c, file, "policy apply", sm_cluster_split_policies);
}

int cli_cluster_policy_delete(const struct cli_opts *o, struct cli_cluster_args *c,
			      const char *name, bool all)
{
	struct session s;
	const char *rel[1];
	char key[SM_CLUSTER_KEY_MAX];
	int ret;

	if (!all) {
		snprintf(key, sizeof(key), "%s%s", SM_CK_POLICIES, name);
		rel[0] = key;
		return cluster_delete(o, c, "policy delete", rel, 1, SM_CK_POLICIES);
	}
	/* --all: every key under policies/ as read, deleted in the one transaction */
	ret = session_open(&s, o, c);
	if (ret)
		return ret;
	ret = session_read(&s);
	if (!ret) {
		struct change ch = {.command = "policy delete --all"};
		char pol[SM_CLUSTER_KEY_MAX];

		snprintf(pol, sizeof(pol), "%s%s", s.prefix, SM_CK_POLICIES);
		for (size_t i = 0; !ret && i < s.kvs.n; i++)
			if (strncmp(s.kvs.kvs[i].key, pol, strlen(pol)) == 0 &&
			    change_add(&ch, s.kvs.kvs[i].key, CH_DELETED, NULL, 0, 0))
				ret = CLI_EXIT_FAIL;
		if (!ret)
			ret = change_run(&s, &ch);
		change_free(&ch);
	}
	session_close(&s);
	return ret;
}

int cli_cluster_policy_wait(const struct cli_opts *o, struct cli_cluster_args *c, const char *rev)
{
	json_object *report = NULL;
	struct session s;
	uint64_t target;
	int ret;

	if (!rev || sm_parse_u64(rev, 1, INT64_MAX, &target)) {
		cli_error("policy wait --cluster needs an etcd revision (the one apply printed)");
		return CLI_EXIT_USAGE;
	}
	ret = session_open(&s, o, c);
	if (ret)
		return ret;
	if (o->output == CLI_OUT_JSON)
		report = json_object_new_object();
	ret = wait_for(&s, (int64_t) target, report);
	if (!ret && report) {
		json_object_object_add(report, "revision", json_object_new_int64((int64_t) target));
		print_report(report);
	}
	json_object_put(report);
	session_close(&s);
	return ret ? ret : CLI_EXIT_OK;
}

/* ---- sockmesh catalog ---- */

static const char *const catalog_kinds[] = {"nodes", "workloads", "services", "cidrs"};
static const char *const catalog_dirs[] = {SM_CK_NODES, SM_CK_WORKLOADS, SM_CK_SERVICES,
					   SM_CK_CIDRS};

static int catalog_kind(const char *word)
{
	for (size_t i = 0; i < SM_ARRAY_SIZE(catalog_kinds); i++)
		if (strcmp(word, catalog_kinds[i]) == 0)
			return (int) i;
	cli_error("unknown kind '%s' (nodes, workloads, services or cidrs)", word);
	return -1;
}

static int catalog_parse(struct cli_opts *o, void *cfg, int key, const char *value)
{
	int ret = cli_cluster_parse(cfg, key, value);

	return ret < 0 ? CLI_EXIT_USAGE : ret;
}

static int cmd_catalog_apply(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
			     char **argv)
{
	if (argc != 1) {
		cli_error("catalog apply takes one FILE (a catalog file, or - for standard "
			  "input)%s%s",
			  argc > 1 ? ", got also " : "", argc > 1 ? argv[1] : "");
		return CLI_EXIT_USAGE;
	}
	return cluster_apply(o, cfg, argv[0], "catalog apply", sm_cluster_split_catalog);
}

static int cmd_catalog_delete(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
			      char **argv)
{
	char(*keys)[SM_CLUSTER_KEY_MAX];
	const char **rel;
	int kind, ret;

	if (argc < 2) {
		cli_error("catalog delete needs KIND and at least one NAME (e.g. 'sockmesh "
			  "catalog delete workloads orders')");
		return CLI_EXIT_USAGE;
	}
	kind = catalog_kind(argv[0]);
	if (kind < 0)
		return CLI_EXIT_USAGE;
	keys = calloc((size_t) argc, sizeof(*keys));
	rel = calloc((size_t) argc, sizeof(*rel));
	if (!keys || !rel) {
		free(keys);
		free(rel);
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	for (int i = 1; i < argc; i++) {
		snprintf(keys[i - 1], sizeof(keys[i - 1]), "%s%s", catalog_dirs[kind], argv[i]);
		rel[i - 1] = keys[i - 1];
	}
	ret = cluster_delete(o, cfg, "catalog delete", rel, (size_t) argc - 1, catalog_dirs[kind]);
	free(keys);
	free(rel);
	return ret;
}

static int cmd_catalog_get(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
			   char **argv)
{
	bool json = o->format && strcmp(o->format, "json") == 0;
	json_object *doc = NULL;
	struct sm_cluster_state st;
	char bad_key[SM_CLUSTER_KEY_MAX];
	struct sm_error err = {""}, loaded = {""};
	bool broken = false;
	size_t found = 0;
	struct session s;
	int kind = -1, ret;

	if (argc > 2) {
		cli_error("catalog get takes at most KIND and NAME, got also '%s'", argv[2]);
		return CLI_EXIT_USAGE;
	}
	if (argc >= 1 && (kind = catalog_kind(argv[0])) < 0)
		return CLI_EXIT_USAGE;
	ret = session_open(&s, o, cfg);
	if (ret)
		return ret;
	ret = session_read(&s);
	if (ret)
		goto close;
	/*
	 * A cluster that does not load is printed all the same (that is when the
	 * operator needs to see it), then reported: exit 1.
	 */
	if (sm_cluster_build(s.prefix, s.kvs.kvs, s.kvs.n, s.kvs.revision, &st, bad_key,
			     sizeof(bad_key), &loaded)) {
		memset(&st, 0, sizeof(st));
		for (size_t i = 0; i < s.kvs.n; i++)
			if (strncmp(s.kvs.kvs[i].key + strlen(s.prefix), SM_CK_CATALOG,
				    strlen(SM_CK_CATALOG)) == 0 &&
			    s.kvs.kvs[i].mod_revision > st.catalog_revision)
				st.catalog_revision = s.kvs.kvs[i].mod_revision;
		broken = true;
	}
	if (json)
		doc = json_object_new_object();
	else
		printf("# the cluster's catalog at etcd revision %" PRId64
		       " (last changed at %" PRId64 ")\n",
		       s.kvs.revision, st.catalog_revision);
	for (int k = 0; k < (int) SM_ARRAY_SIZE(catalog_kinds); k++) {
		char dir[SM_CLUSTER_KEY_MAX];
		json_object *arr = NULL;
		bool header = false;

		if (kind >= 0 && k != kind)
			continue;
		snprintf(dir, sizeof(dir), "%s%s", s.prefix, catalog_dirs[k]);
		for (size_t i = 0; i < s.kvs.n; i++) {
			const struct sm_etcd_kv *kv = &s.kvs.kvs[i];
			size_t len;
			char *line;

			if (strncmp(kv->key, dir, strlen(dir)) != 0 ||
			    (argc == 2 && strcmp(kv->key + strlen(dir), argv[1]) != 0))
				continue;
			line = sm_cluster_value_json(kv->value, kv->value_len, kv->key, &len, &err);
			if (!line) {
				/* a value that is no mapping is left out (broken says so) */
				broken = true;
				continue;
			}
			found++;
			if (json) {
				if (!arr)
					arr = json_object_new_array();
				json_object_array_add(arr, json_tokener_parse(line));
			} else {
				if (!header)
					printf("%s:\n", catalog_kinds[k]);
				header = true;
				printf("  - %s\n", line);
			}
			free(line);
		}
		if (arr)
			json_object_object_add(doc, catalog_kinds[k], arr);
	}
	if (argc == 2 && !found) {
		cli_error("no %s '%s' in the cluster's catalog (revision %" PRId64
			  "; 'sockmesh catalog get %s' lists them)",
			  catalog_kinds[kind], argv[1], s.kvs.revision, catalog_kinds[kind]);
		ret = CLI_EXIT_FAIL;
		goto free_doc;
	}
	if (json) {
		print_report(doc);
		fprintf(stderr,
			"# etcd revision %" PRId64 ", catalog last changed at %" PRId64 "\n",
			s.kvs.revision, st.catalog_revision);
	}
	if (broken) {
		fflush(stdout);
		cli_error("the cluster's configuration does not load: %s (fix or delete that key)",
			  loaded.msg[0] ? loaded.msg : err.msg);
		ret = CLI_EXIT_FAIL;
	}
free_doc:
	json_object_put(doc);
	sm_cluster_state_free(&st);
close:
	session_close(&s);
	return ret;
}

/* ---- sockmesh status --cluster ---- */

int cli_status_parse(struct cli_opts *o, void *cfg, int key, const char *value)
{
	int ret = cli_cluster_parse(cfg, key, value);

	return ret < 0 ? CLI_EXIT_USAGE : ret;
}

/* A registration's member as text ("-" when absent). */
static json_object *parse_object(const char *value)
{
	json_object *o = json_tokener_parse(value);

	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

static int cluster_status(const struct cli_opts *o, struct cli_cluster_args *c)
{
	static const struct sm_table_col cols[] = {
		{"NODE", false}, {"READY", false},	 {"REVISION", true},
		{"LAG", true},	 {"LAST CONTACT", true}, {"REFUSED", false},
	};
	char status[SM_CLUSTER_KEY_MAX], reg[SM_CLUSTER_KEY_MAX];
	struct waiter w = {.reg_prefix = reg};
	char app[SM_CLUSTER_KEY_MAX];
	struct sm_etcd_kvs kvs = {0};
	struct sm_error err = {""};
	json_object *out = NULL, *arr = NULL;
	struct sm_table *t = NULL;
	struct session s;
	int64_t latest;
	int ret;

	ret = session_open(&s, o, c);
	if (ret)
		return ret;
	ret = session_read(&s);
	if (ret)
		goto close;
	latest = latest_config_revision(&s.kvs);
	snprintf(status, sizeof(status), "%s%s", s.prefix, SM_CK_STATUS);
	snprintf(reg, sizeof(reg), "%s%s", s.prefix, SM_CK_REG);
	snprintf(app, sizeof(app), "%s%s", s.prefix, SM_CK_APPLIED);
	w.applied_prefix = app;
	if (sm_etcd_get_prefix(s.e, status, 0, &kvs, &err)) {
		cli_error("%s", err.msg);
		ret = CLI_EXIT_FAIL;
		goto close;
	}
	for (size_t i = 0; i < kvs.n && !ret; i++)
		if (waiter_update(&w, &kvs.kvs[i], false))
			ret = CLI_EXIT_FAIL;
	if (ret)
		goto free_kvs;
	if (w.n)
		qsort(w.nodes, w.n, sizeof(*w.nodes), cmp_wnode);
	if (o->output == CLI_OUT_JSON) {
		out = json_object_new_object();
		arr = json_object_new_array();
		json_object_object_add(out, "revision", json_object_new_int64(kvs.revision));
		json_object_object_add(out, "latest_config_revision",
				       json_object_new_int64(latest));
	} else {
		t = sm_table_new(cols, SM_ARRAY_SIZE(cols));
	}
	for (size_t i = 0; i < w.n; i++) {
		const struct wnode *n = &w.nodes[i];
		int64_t left = -1, granted = -1, contact = -1, lag = -1;
		char key[SM_CLUSTER_KEY_MAX], rev[32], lagb[32], contactb[32];
		char refused[SM_CLUSTER_KEY_MAX + 520];
		const struct sm_etcd_kv *regkv = NULL;

		if (!n->registered && !n->has_applied)
			continue;
		snprintf(key, sizeof(key), "%s%s", reg, n->name);
		for (size_t k = 0; k < kvs.n && !regkv; k++)
			if (strcmp(kvs.kvs[k].key, key) == 0)
				regkv = &kvs.kvs[k];
		if (n->registered && n->lease &&
		    sm_etcd_lease_ttl(s.e, n->lease, &left, &granted, &err) == 0 && left >= 0)
			contact = granted - left;
		if (n->has_applied)
			lag = latest > n->applied.revision ? latest - n->applied.revision : 0;
		if (n->has_applied && n->applied.refused_revision)
			snprintf(refused, sizeof(refused), "%s: %s", n->applied.refused_key,
				 n->applied.refused_reason);
		else
			snprintf(refused, sizeof(refused), "-");
		if (out) {
			json_object *j = json_object_new_object();

			json_object_object_add(j, "node", json_object_new_string(n->name));
			json_object_object_add(j, "registered",
					       json_object_new_boolean(n->registered));
			json_object_object_add(j, "ready", json_object_new_boolean(n->ready));
			json_object_object_add(
				j, "revision",
				n->has_applied ? json_object_new_int64(n->applied.revision) : NULL);
			json_object_object_add(j, "lag",
					       lag >= 0 ? json_object_new_int64(lag) : NULL);
			json_object_object_add(j, "last_contact_s",
					       contact >= 0 ? json_object_new_int64(contact)
							    : NULL);
			json_object_object_add(j, "registration",
					       regkv ? parse_object(regkv->value) : NULL);
			if (n->has_applied) {
				char *aj = sm_cluster_applied_json(&n->applied);

				json_object_object_add(j, "applied", aj ? parse_object(aj) : NULL);
				free(aj);
			} else {
				json_object_object_add(j, "applied", NULL);
			}
			json_object_array_add(arr, j);
			continue;
		}
		snprintf(rev, sizeof(rev), "%" PRId64, n->applied.revision);
		snprintf(lagb, sizeof(lagb), "%" PRId64, lag);
		snprintf(contactb, sizeof(contactb), "%" PRId64 "s", contact);
		{
			const char *row[] = {
				n->name,
				!n->registered ? "gone"
				: n->ready     ? "yes"
					       : "no",
				n->has_applied ? rev : "-",
				lag >= 0 ? lagb : "-",
				contact >= 0 ? contactb : "-",
				refused,
			};

			if (t && sm_table_add_row(t, row, SM_ARRAY_SIZE(row)))
				ret = CLI_EXIT_FAIL;
		}
	}
	if (out) {
		json_object_object_add(out, "nodes", arr);
		print_report(out);
		json_object_put(out);
	} else if (!t || ret) {
		cli_error("out of memory");
		ret = CLI_EXIT_FAIL;
	} else if (sm_table_rows(t) == 0) {
		printf("no node has registered under %s (latest config revision %" PRId64 ")\n",
		       reg, latest);
	} else {
		printf("latest config revision %" PRId64 " (etcd revision %" PRId64 ")\n", latest,
		       kvs.revision);
		if (sm_table_print(t, stdout))
			ret = CLI_EXIT_FAIL;
	}
	sm_table_free(t);
free_kvs:
	free(w.nodes);
	sm_etcd_kvs_free(&kvs);
close:
	session_close(&s);
	return ret;
}

int cli_status_run(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv)
{
	struct cli_cluster_args *c = cfg;

	if (!c->cluster)
		return cli_run_query(cmd, o, NULL, argc, argv);
	if (argc > 0) {
		cli_error("status takes no arguments, got '%s'", argv[0]);
		return CLI_EXIT_USAGE;
	}
	return cluster_status(o, c);
}

const struct cli_opt cli_status_opts[] = {
	{"cluster", CLI_K_CLUSTER, NULL,
	 "every node of the cluster, from etcd: registration,\napplied revision, lag, last "
	 "contact, refusals"},
	CLI_ETCD_OPTS,
	{NULL, 0, NULL, NULL},
};

/* ---- the catalog command table ---- */

static const struct cli_opt apply_opts[] = {
	{"wait", CLI_K_WAIT, NULL, "then wait until every ready node applied it"},
	{"max-wait", CLI_K_MAX_WAIT, "S", "--wait gives up after S seconds (default 30)"},
	{"dry-run", CLI_K_DRY_RUN, NULL, "check and show the change, write nothing"},
	{"max-policy-entries", CLI_K_MAX_POLICY_ENTRIES, "N",
	 "the policies must compile into at most N kernel\nentries (default 65536, the "
	 "nodes' default)"},
	CLI_ETCD_OPTS,
	{NULL, 0, NULL, NULL},
};

static const struct cli_opt get_opts[] = {
	CLI_ETCD_OPTS,
	{NULL, 0, NULL, NULL},
};

static const char *const catalog_format_names[] = {"table", "yaml", "json", NULL};

static const struct cli_formats catalog_formats = {
	.names = catalog_format_names,
	.hint = "table, yaml or json",
	.help = "apply, delete: table (default) or json; get: yaml\n(default) or json",
};

#define CATALOG_COMMON                                                                             \
	.globals = CLI_G_OUTPUT | CLI_G_TIMEOUT | CLI_G_HELP, .formats = &catalog_formats,         \
	.cfg_size = sizeof(struct cli_cluster_args), .parse = catalog_parse,                       \
	.exits = CLI_EXITS_COMMON

#define CATALOG_WRITE_HELP                                                                         \
	"The write is one etcd transaction that holds only if nothing under the\n"                 \
	"prefix's config/ changed since it was read: a concurrent writer makes it\n"               \
	"fail with 'conflict: ...; nothing was written' (exit 1); run it again.\n"                 \
	"Before writing, the cluster's catalog and policies as they would be after\n"              \
	"the change are loaded and compiled as a node would: an error names the file's\n"          \
	"line or the etcd key, and nothing is written. A change of more than 127 keys\n"           \
	"is refused (etcd takes 128 operations in one transaction).\n"                             \
	"--wait then waits until every registered node that is ready has applied the\n"            \
	"new revision (exit 1 naming the nodes that lag after --max-wait seconds, or at\n"         \
	"once naming the node and key when a node refused it).\n"

#define CLUSTER_ENV_HELP                                                                           \
	"etcd is reached over mutual TLS with --etcd, --etcd-ca, --etcd-cert and\n"                \
	"--etcd-key, or the variables SOCKMESH_ETCD_ENDPOINTS, _CA, _CERT, _KEY, _PREFIX,\n"       \
	"_USER and _PASSWORD_FILE. --timeout MS bounds each etcd request.\n"

static const struct cli_cmd catalog_apply = {
	.name = "apply",
	.synopsis = "FILE [--wait [--max-wait S]] [--dry-run]",
	.summary = "add or replace the file's nodes, workloads, services and CIDRs in\n"
		   "      the cluster (by key); prints the keys that change and the revision",
	.help = "Adds or replaces the catalog file's objects in the cluster's catalog in etcd:\n"
		"each node, workload, service and CIDR is one key; keys not in the file stay.\n"
		"Unchanged objects are not rewritten.\n"
		"\n" CATALOG_WRITE_HELP "\n" CLUSTER_ENV_HELP,
	.examples = "sockmesh catalog apply catalog.yaml --dry-run\n"
		    "sockmesh catalog apply catalog.yaml --wait --max-wait 60\n",
	.options = apply_opts,
	.exit_notes = "1 also on a conflict, an invalid file or cluster state, or a --wait that\n"
		      "timed out or saw a refusal.\n",
	.run = cmd_catalog_apply,
	CATALOG_COMMON,
};

static const struct cli_cmd catalog_get = {
	.name = "get",
	.synopsis = "[KIND [NAME]] [-o yaml|json]",
	.summary = "the cluster's catalog as a catalog file (all, a kind, or one object)",
	.help = "Prints the cluster's catalog from etcd as a catalog file: YAML (one object per\n"
		"line, the revision in a comment on the first line) or, with -o json, JSON\n"
		"(the revision on stderr). KIND is nodes, workloads, services or cidrs.\n"
		"\n" CLUSTER_ENV_HELP,
	.examples = "sockmesh catalog get > catalog.yaml\n"
		    "sockmesh catalog get workloads orders -o json\n",
	.options = get_opts,
	.run = cmd_catalog_get,
	CATALOG_COMMON,
};

static const struct cli_cmd catalog_delete = {
	.name = "delete",
	.synopsis = "KIND NAME... [--wait] [--dry-run]",
	.summary = "remove objects from the cluster's catalog",
	.help = "Removes the named objects of one kind (nodes, workloads, services or cidrs)\n"
		"from the cluster's catalog, in one transaction. A service without a name is\n"
		"named ADDRESS_PORT, a CIDR ADDRESS_PREFIX (':' written '-'). Refused when what\n"
		"remains does not load, e.g. a node that workloads still name.\n"
		"\n" CATALOG_WRITE_HELP "\n" CLUSTER_ENV_HELP,
	.examples = "sockmesh catalog delete workloads orders orders-2 --wait\n"
		    "sockmesh catalog delete services 10.0.0.2_8080\n",
	.options = apply_opts,
	.exit_notes = "1 also on a conflict, a name not in the cluster, a catalog that would not\n"
		      "load, or a --wait that timed out or saw a refusal.\n",
	.run = cmd_catalog_delete,
	CATALOG_COMMON,
};

static const struct cli_cmd *const catalog_subs[] = {&catalog_apply, &catalog_get, &catalog_delete,
						     NULL};

const struct cli_cmd cli_catalog_cmd = {
	.name = "catalog",
	.summary = "the cluster's catalog in etcd: apply, get, delete",
	.help = "Cluster mode: the catalog every node loads, kept in etcd under the prefix's\n"
		"config/catalog/ (docs/cli.md, cluster mode). These commands talk to etcd,\n"
		"not to a daemon; the nodes watch etcd and apply what changes.\n",
	.examples = "sockmesh catalog apply catalog.yaml --wait\n"
		    "sockmesh catalog get nodes\n",
	.subs = catalog_subs,
	.max_args = 1024,
	CATALOG_COMMON,
};
