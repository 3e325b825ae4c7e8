// SPDX-License-Identifier: Apache-2.0
/*
 * Connection policy in the daemon (docs/policy.md): the current policy
 * set and its revision, kept in <state_dir>/policy.json and restored before
 * any program is attached; compiled (userspace/lib/policy.c) and installed
 * into the kernel by filling complete new inner maps in the slot not in use
 * and then flipping policy_state (include/sockmesh/policy.h), so no lookup
 * ever sees half a revision; and the control commands behind
 * `sockmesh policy`.
 *
 * Threads: the main thread owns all of it. The workers read the compiled
 * policy (the inbound check in hbone_h2.c) through sm_policy_check(); the
 * compiled policy is replaced only while they are paused. After an apply
 * the workers re-check their live inbound streams on their own threads
 * (the revision observer, sm_policy_observe(), called with the workers
 * running).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "catalog.h"
#include "daemon.h"
#include "datapath.h"
#include "flow_record.h"
#include "log.h"
#include "policy.h"
#include "policyd.h"
#include "sockmesh.skel.h"
#include "util.h"
#include "worker.h"

#include "sockmesh/intercept.h"

#define POLICY_FILE "policy.json"

struct sm_policyd {
	struct sm_policy_set set;
	struct sm_policy_compiled compiled;
	uint32_t revision; /* 0: never applied */
	int64_t applied_at;
	char path[PATH_MAX];
	/*
	 * The inner maps of the revision this daemon installed last, entries and
	 * CIDRs (-1: none). `explain` reads the kernel's answer through them,
	 * after checking that the outer maps still hold them: opening a map by
	 * its id needs CAP_SYS_ADMIN, which the running daemon no longer has.
	 */
	int live_fd[2];
	sm_policy_live_fn on_live; /* sm_policy_observe() */
};

/* ---- kernel maps ---- */

static int fill_entries(int fd, const struct sm_policy_compiled *c)
{
	struct sm_policy_key *keys;
	struct sm_policy_value *vals;
	__u32 count = (__u32) c->nentries;
	int err;

	if (!c->nentries)
		return 0;
	keys = calloc(c->nentries, sizeof(*keys));
	vals = calloc(c->nentries, sizeof(*vals));
	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < c->nentries; i++) {
		keys[i] = c->entries[i].key;
		vals[i] = c->entries[i].value;
	}
	err = bpf_map_update_batch(fd, keys, vals, &count, NULL);
	if (!err && count != c->nentries)
		err = -EIO;
out:
	free(keys);
	free(vals);
	return err;
}

static int fill_cidrs(int fd, const struct sm_policy_compiled *c)
{
	for (size_t i = 0; i < c->ncidrs; i++) {
		struct sm_cidr_key k = {.prefixlen = 32U + c->cidrs[i].prefix};
		__u32 id = c->cidrs[i].identity;

		k.family = c->cidrs[i].addr.family;
		memcpy(k.addr, c->cidrs[i].addr.bytes, 16);
		if (bpf_map_update_elem(fd, &k, &id, BPF_ANY))
			return -errno;
	}
	return 0;
}

/* The revision just installed: its inner maps are the ones explain reads from now on. */
static void keep_live(struct sm_policyd *p, int inner, int cinner)
{
	const int fds[2] = {inner, cinner};

	for (int i = 0; i < 2; i++) {
		if (p->live_fd[i] >= 0)
			close(p->live_fd[i]);
		p->live_fd[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
	}
}

/*
 * The descriptor of the live inner map in outer slot `slot`, if it is the
 * one this daemon installed (which = 0 entries, 1 CIDRs): -ESTALE when the
 * kernel holds another map there (someone else installed it).
 */
static int live_map(struct sm_daemon *d, int which, __u32 slot)
{
	struct bpf_map *outer = which ? d->skel->maps.policy_cidr_maps : d->skel->maps.policy_maps;
	int fd = d->policy->live_fd[which];
	struct bpf_map_info info = {};
	__u32 id = 0, len = sizeof(info);

	if (bpf_map_lookup_elem(bpf_map__fd(outer), &slot, &id))
		return -errno;
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
		return -ESTALE;
	return info.id == id ? fd : -ESTALE;
}

/*
 * Fill new inner maps for c in the slot not in use, then flip policy_state:
 * a lookup sees the old revision or the new one, whole. 0 or -errno; on
 * failure the live slot is untouched.
 */
static int kernel_install(struct sm_daemon *d, const struct sm_policy_compiled *c)
{
	LIBBPF_OPTS(bpf_map_create_opts, lpm_opts, .map_flags = BPF_F_NO_PREALLOC);
	int outer = bpf_map__fd(d->skel->maps.policy_maps);
	int couter = bpf_map__fd(d->skel->maps.policy_cidr_maps);
	int state = bpf_map__fd(d->skel->maps.policy_state);
	struct sm_policy_state ps = {0};
	__u32 zero = 0, slot;
	int inner, cinner, err;

	if (bpf_map_lookup_elem(state, &zero, &ps))
		return -errno;
	slot = ps.loaded ? !ps.slot : 0;
	inner = bpf_map_create(BPF_MAP_TYPE_HASH, "sm_policy", sizeof(struct sm_policy_key),
			       sizeof(struct sm_policy_value),
			       c->nentries ? (__u32) c->nentries : 1, NULL);
	if (inner < 0)
		return -errno;
	cinner = bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "sm_policy_cidr", sizeof(struct sm_cidr_key),
				sizeof(__u32), c->ncidrs ? (__u32) c->ncidrs : 1, &lpm_opts);
	if (cinner < 0) {
		err = -errno;
		goto close_inner;
	}
	err = fill_entries(inner, c) ?: fill_cidrs(cinner, c);
	if (err)
		goto close_cinner;
	if (bpf_map_update_elem(outer, &slot, &inner, BPF_ANY) ||
	    bpf_map_update_elem(couter, &slot, &cinner, BPF_ANY)) {
		err = -errno;
		goto close_cinner;
	}
	ps.slot = slot;
	ps.revision = c->revision;
	ps.loaded = 1;
	if (bpf_map_update_elem(state, &zero, &ps, BPF_ANY)) {
		err = -errno;
		goto close_cinner;
	}
	keep_live(d->policy, inner, cinner);
close_cinner:
	close(cinner); /* the outer maps hold their own references */
close_inner:
	close(inner);
	return err;
}

/*
 * Run the policy_recheck socket iterator once (bpf/policy.bpf.c): established
 * connections the live revision denies are destroyed. Returns how many.
 */
static uint64_t recheck_established(struct sm_daemon *d)
{
	uint64_t before[SM_CNT_MAX] = {0}, after[SM_CNT_MAX] = {0};
	struct bpf_link *link;

	link = bpf_program__attach_iter(d->skel->progs.policy_recheck, NULL);
	if (!link) {
		pr_warn("cannot re-check established connections against the new policy: %s "
			"(they stay open; new ones are checked)",
			strerror(errno));
		return 0;
	}
	sm_datapath_counters(d, before);
	sm_datapath_drive_iter(link, "policy re-check");
	bpf_link__destroy(link);
	sm_datapath_counters(d, after);
	return after[SM_CNT_POLICY_CLOSED] - before[SM_CNT_POLICY_CLOSED];
}

/* ---- the state file ---- */

/* Write the set and its revision, atomically (temp file, fsync, rename). */
static int state_save(struct sm_policyd *p, const struct sm_policy_set *set, uint32_t revision)
{
	json_object *o = json_object_new_object(), *doc;
	char *text = sm_policy_set_to_json(set);
	const char *out;
	int err = 0;

	if (!o || !text) {
		err = -ENOMEM;
		goto out;
	}
	doc = json_tokener_parse(text);
	if (!doc) {
		err = -EINVAL;
		goto out;
	}
	json_object_object_add(o, "revision", json_object_new_int64(revision));
	json_object_object_add(o, "set", doc);
	out = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							JSON_C_TO_STRING_NOSLASHESCAPE);
	err = sm_write_file_atomic(p->path, out, strlen(out), 0600);
out:
	if (err)
		pr_err("cannot save the policy to %s: %s", p->path, strerror(-err));
	json_object_put(o);
	free(text);
	return err;
}

/* Read <state_dir>/policy.json: 0 (set, revision), -ENOENT (none yet) or -errno. */
static int state_load(struct sm_policyd *p, struct sm_policy_set *set, uint32_t *revision)
{
	struct sm_error err = {{0}};
	json_object *o, *rev, *doc;
	const char *text;
	int ret;

	o = json_object_from_file(p->path);
	if (!o) {
		if (access(p->path, F_OK) < 0 && errno == ENOENT)
			return -ENOENT;
		pr_err("%s: not a policy state file (JSON): %s (move it away to start without "
		       "policy, or restore it)",
		       p->path, json_util_get_last_err() ? json_util_get_last_err() : "unreadable");
		return -EINVAL;
	}
	if (!json_object_object_get_ex(o, "revision", &rev) ||
	    !json_object_is_type(rev, json_type_int) || json_object_get_int64(rev) < 0 ||
	    json_object_get_int64(rev) > UINT32_MAX || !json_object_object_get_ex(o, "set", &doc)) {
		pr_err("%s: expected {\"revision\": N, \"set\": {...}} (restore the file, or move "
		       "it "
		       "away to start without policy)",
		       p->path);
		json_object_put(o);
		return -EINVAL;
	}
	*revision = (uint32_t) json_object_get_int64(rev);
	text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
	ret = sm_policy_set_parse(set, text, strlen(text), p->path, &err);
	if (ret)
		pr_err("%s: the stored policy set does not parse: %s", p->path, err.msg);
	json_object_put(o);
	return ret;
}

/* ---- apply ---- */

/* Make c the live policy (kernel, then the daemon's copy, under a worker pause). */
static int go_live(struct sm_daemon *d, struct sm_policy_set *set, struct sm_policy_compiled *c)
{
	struct sm_policyd *p = d->policy;
	struct sm_policy_compiled old;
	struct sm_policy_set old_set;
	int err = kernel_install(d, c);

	if (err) {
		pr_err("cannot install policy revision %u in the kernel: %s (the previous "
		       "revision stays)",
		       c->revision, strerror(-err));
		return err;
	}
	sm_workers_pause(d);
	old = p->compiled;
	old_set = p->set;
	p->compiled = *c;
	p->set = *set;
	p->revision = c->revision;
	p->applied_at = time(NULL);
	sm_workers_resume(d);
	sm_policy_compiled_free(&old);
	sm_policy_set_free(&old_set);
	memset(c, 0, sizeof(*c));
	memset(set, 0, sizeof(*set));
	return 0;
}

int sm_policy_start(struct sm_daemon *d)
{
	struct sm_policy_set set = {0};
	struct sm_policy_compiled c = {0};
	struct sm_error err = {{0}};
	struct sm_policyd *p;
	uint32_t revision = 0;
	int ret;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->live_fd[0] = p->live_fd[1] = -1;
	d->policy = p;
	if (mkdir(d->cfg.state_dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		pr_err("cannot create the state directory %s: %s (set paths.state_dir)",
		       d->cfg.state_dir, strerror(-ret));
		return ret;
	}
	snprintf(p->path, sizeof(p->path), "%s/%s", d->cfg.state_dir, POLICY_FILE);
	ret = state_load(p, &set, &revision);
	/* -ENOENT: no policy ever applied, an empty set, nothing is denied */
	if (ret && ret != -ENOENT)
		return ret; /* fail closed: attach nothing rather than run unenforced */
	ret = sm_policy_compile(&set, &d->cat, revision, d->cfg.max_policy_entries, &c, &err);
	if (ret) {
		pr_err("%s: the stored policy no longer compiles: %s", p->path, err.msg);
		sm_policy_set_free(&set);
		return ret;
	}
	ret = go_live(d, &set, &c);
	if (ret) {
		sm_policy_compiled_free(&c);
		sm_policy_set_free(&set);
		return ret;
	}
	if (revision)
		pr_info("policy revision %u restored from %s: %zu policies, %zu kernel entries",
			revision, p->path, p->set.npolicies, p->compiled.nentries);
	return 0;
}

int sm_policy_start_unattached(struct sm_daemon *d, const struct sm_policy_set *set,
			       uint32_t revision, struct sm_error *err)
{
	struct sm_policyd *p;
	int ret;

	if (d->policy)
		return -EBUSY;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->live_fd[0] = p->live_fd[1] = -1;
	ret = sm_policy_set_copy(set, &p->set)
		      ?: sm_policy_compile(&p->set, &d->cat, revision, d->cfg.max_policy_entries,
					   &p->compiled, err);
	if (ret) {
		sm_policy_set_free(&p->set);
		free(p);
		return ret;
	}
	p->revision = revision;
	p->applied_at = time(NULL);
	d->policy = p;
	return 0;
}

void sm_policy_stop(struct sm_daemon *d)
{
	struct sm_policyd *p = d->policy;

	if (!p)
		return;
	sm_policy_compiled_free(&p->compiled);
	sm_policy_set_free(&p->set);
	for (int i = 0; i < 2; i++)
		if (p->live_fd[i] >= 0)
			close(p->live_fd[i]);
	free(p);
	d->policy = NULL;
}

int sm_policy_catalog_changed(struct sm_daemon *d)
{
	struct sm_policyd *p = d->policy;
	struct sm_policy_compiled c = {0};
	struct sm_policy_set set = {0};
	struct sm_error err = {{0}};
	int ret;

	if (!p)
		return 0;
	ret = sm_policy_set_copy(&p->set, &set)
		      ?: sm_policy_recompile(&set, &d->cat, p->revision, d->cfg.max_policy_entries,
					     &c, &err);
	if (ret) {
		pr_warn("policy revision %u does not compile against the new catalog: %s (the "
			"kernel keeps the entries compiled before)",
			p->revision, err.msg[0] ? err.msg : strerror(-ret));
		sm_policy_set_free(&set);
		return ret;
	}
	ret = go_live(d, &set, &c);
	if (ret) {
		sm_policy_compiled_free(&c);
		sm_policy_set_free(&set);
	}
	return ret;
}

/* ---- checks the workers make ---- */

uint32_t sm_policy_identity_of(const struct sm_daemon *d, const char *spiffe_id)
{
	for (unsigned int i = 0; i < d->cat.nworkloads; i++)
		if (strcmp(d->cat.workloads[i].spiffe_id, spiffe_id) == 0)
			return d->cat.workloads[i].identity;
	return SM_ID_WORLD;
}

uint32_t sm_policy_addr_identity(const struct sm_daemon *d, const struct sm_addr *addr)
{
	uint32_t id = d->policy ? sm_policy_cidr_identity(&d->policy->compiled, addr) : 0;

	return id ? id : SM_ID_WORLD;
}

void sm_policy_check(const struct sm_daemon *d, uint32_t src, uint32_t dst, uint16_t port,
		     struct sm_policy_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->action = SM_POLICY_ALLOW;
	out->reason = SM_POLICY_R_NO_POLICY;
	if (d->policy)
		sm_policy_lookup(&d->policy->compiled, src, dst, port, out);
}

uint32_t sm_policy_revision(const struct sm_daemon *d)
{
	return d->policy ? d->policy->revision : 0;
}

int sm_policy_observe(struct sm_daemon *d, sm_policy_live_fn fn)
{
	if (!d->policy)
		return -ENOENT;
	if (fn && d->policy->on_live)
		return -EBUSY;
	d->policy->on_live = fn;
	return 0;
}

void sm_policy_size(const struct sm_daemon *d, int64_t *entries, int64_t *max)
{
	const struct sm_policyd *p = d->policy;

	*entries = p ? (int64_t) p->compiled.nentries : -1;
	*max = p ? (int64_t) d->cfg.max_policy_entries : -1;
}

void sm_policy_fill_record(const struct sm_daemon *d, uint32_t rule_id, uint32_t revision,
			   enum sm_policy_reason reason, bool audit, struct sm_flow_record *r)
{
	struct sm_policy_rule_info info;

	r->policy.present = true;
	r->policy.revision = revision;
	sm_strlcpy(r->policy.match,
		   reason == SM_POLICY_R_DEFAULT_DENY ? "default-deny"
		   : reason == SM_POLICY_R_NO_POLICY  ? "no-policy"
						      : "rule",
		   sizeof(r->policy.match));
	r->policy.rule = -1;
	if (d->policy && rule_id && sm_policy_describe(&d->policy->compiled, rule_id, &info) == 0) {
		if (audit) {
			sm_strlcpy(r->policy.audit_name, info.policy, sizeof(r->policy.audit_name));
			r->policy.audit_rule = (int) info.rule_index;
		} else {
			sm_strlcpy(r->policy.name, info.policy, sizeof(r->policy.name));
			r->policy.rule = (int) info.rule_index;
		}
	}
}

/* ---- control commands ---- */

static const char *arg_str(json_object *args, const char *key)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/*
 * A string argument and its length: JSON strings may hold U+0000, which the
 * parsers must see (and refuse), not end at.
 */
static const char *arg_text(json_object *args, const char *key, size_t *len)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	*len = (size_t) json_object_get_string_len(v);
	return json_object_get_string(v);
}

static bool arg_bool(json_object *args, const char *key)
{
	json_object *v;

	return args && json_object_object_get_ex(args, key, &v) &&
	       json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

/* The diff as text, one line per change, as `policy apply` prints it. */
static json_object *diff_text(const struct sm_daemon *d, const struct sm_policy_diff *diff,
			      const struct sm_policy_compiled *old,
			      const struct sm_policy_compiled *new_c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	json_object *s;

	if (!f)
		return json_object_new_string("");
	sm_policy_diff_print(f, diff, old, new_c, &d->cat);
	fclose(f);
	s = json_object_new_string_len(buf ? buf : "", (int) len);
	free(buf);
	return s;
}

/* At most this many unmatched selectors and sources are listed in an answer. */
#define UNMATCHED_LISTED 100

/* What a request brings: its document's set and name, and how strict to be. */
/* The source of a whole set from the cluster (sm_policy_replace()): compared by address. */
static const char cluster_source[] = "cluster";

struct incoming {
	const struct sm_policy_set *set; /* NULL: none (delete) */
	const char *source;		 /* the document's name in messages */
	bool strict;			 /* unknown identities are errors */
};

/* Is u about a policy of the request's own document (not one already applied)? */
static bool from_incoming(const struct sm_policy_unmatched *u, const struct incoming *in)
{
	return in->set && sm_policy_set_find(in->set, u->policy);
}

/*
 * With strict, an exact SPIFFE ID of the request's document that names no
 * workload of the catalog (an unknown identity: a misspelling, or a workload
 * not in the catalog yet) is an error: -EINVAL with err naming the first one.
 */
static int check_strict(const struct sm_policy_compiled *c, const struct incoming *in,
			struct sm_error *err)
{
	const struct sm_policy_unmatched *first = NULL;
	char what[SM_SPIFFE_MAX + 128], more[48] = "";
	size_t unknown = 0;

	if (!in->strict)
		return 0;
	for (size_t i = 0; i < c->nunmatched; i++) {
		if (c->unmatched[i].pattern || !from_incoming(&c->unmatched[i], in))
			continue;
		if (!unknown++)
			first = &c->unmatched[i];
	}
	if (!first)
		return 0;
	if (unknown > 1)
		snprintf(more, sizeof(more), "; %zu more after it", unknown - 1);
	sm_error_set(err,
		     "%s:%u: %s: an unknown identity (--strict refuses them: fix the SPIFFE ID, "
		     "or add its workload to the catalog first%s)",
		     in->source, first->line, sm_policy_unmatched_format(first, what, sizeof(what)),
		     more);
	return -EINVAL;
}

/*
 * The request document's selectors and sources that match no workload, into
 * o: "unmatched" [{policy, rule (absent: the selector), line, spiffe,
 * pattern}], at most UNMATCHED_LISTED, "unmatched_more" when there are more,
 * and "unknown_identities", the exact IDs among them.
 */
static void add_unmatched(json_object *o, const struct sm_policy_compiled *c,
			  const struct incoming *in)
{
	json_object *list = json_object_new_array();
	size_t listed = 0, more = 0, unknown = 0;

	for (size_t i = 0; i < c->nunmatched; i++) {
		const struct sm_policy_unmatched *u = &c->unmatched[i];
		json_object *e;

		if (!from_incoming(u, in))
			continue;
		unknown += !u->pattern;
		if (listed == UNMATCHED_LISTED) {
			more++;
			continue;
		}
		e = json_object_new_object();
		json_object_object_add(e, "policy", json_object_new_string(u->policy));
		if (u->rule >= 0)
			json_object_object_add(e, "rule", json_object_new_int(u->rule));
		json_object_object_add(e, "line", json_object_new_int64(u->line));
		json_object_object_add(e, "spiffe", json_object_new_string(u->spiffe));
		json_object_object_add(e, "pattern", json_object_new_boolean(u->pattern));
		json_object_array_add(list, e);
		listed++;
	}
	json_object_object_add(o, "unmatched", list);
	if (more)
		json_object_object_add(o, "unmatched_more", json_object_new_int64((int64_t) more));
	json_object_object_add(o, "unknown_identities", json_object_new_int64((int64_t) unknown));
}

/*
 * Compile a candidate set (the request's document merged into the current
 * set, or the current one minus a policy) and either report the diff
 * (dry_run) or make it live, saved first. Returns the answer, or NULL with
 * err set.
 */
static json_object *change(struct sm_daemon *d, struct sm_policy_set *set,
			   const struct incoming *in, bool dry_run, struct sm_error *err)
{
	struct sm_policyd *p = d->policy;
	struct sm_policy_compiled c = {0};
	struct sm_policy_diff diff = {0};
	uint32_t revision = p->revision + 1;
	json_object *o = NULL;
	int64_t t0 = sm_mono_ns(), t1;
	uint64_t closed, streams;
	int ret;

	ret = sm_policy_compile(set, &d->cat, revision, d->cfg.max_policy_entries, &c, err);
	if (ret)
		goto out; /* err says why: too many entries (with the numbers), ... */
	if (check_strict(&c, in, err))
		goto out;
	if (sm_policy_diff(&p->compiled, &c, &diff)) {
		sm_error_set(err, "out of memory computing the diff");
		goto out;
	}
	o = json_object_new_object();
	json_object_object_add(o, "dry_run", json_object_new_boolean(dry_run));
	json_object_object_add(o, "revision",
			       json_object_new_int64(dry_run ? p->revision : revision));
	json_object_object_add(o, "policies", json_object_new_int64((int64_t) set->npolicies));
	json_object_object_add(o, "entries", json_object_new_int64((int64_t) c.nentries));
	json_object_object_add(o, "added", json_object_new_int64((int64_t) diff.added));
	json_object_object_add(o, "removed", json_object_new_int64((int64_t) diff.removed));
	json_object_object_add(o, "changed", json_object_new_int64((int64_t) diff.changed));
	json_object_object_add(o, "unmatched_patterns",
			       json_object_new_int64(c.unmatched_patterns));
	if (c.unmatched_example[0])
		json_object_object_add(o, "unmatched_example",
				       json_object_new_string(c.unmatched_example));
	/* what a person reads (the CLI prints them); a cluster apply has nobody to show them */
	if (in->source != cluster_source) {
		add_unmatched(o, &c, in);
		json_object_object_add(o, "diff", diff_text(d, &diff, &p->compiled, &c));
	}
	if (dry_run)
		goto out;
	if (state_save(p, set, revision)) {
		sm_error_set(err,
			     "cannot save the policy to %s (see the daemon's log); nothing "
			     "changed",
			     p->path);
		goto fail;
	}
	if (go_live(d, set, &c)) {
		sm_error_set(err,
			     "the kernel refused the new policy maps (see the daemon's log); "
			     "revision %u stays live",
			     p->revision);
		/* the file already holds the new set: put the live one back */
		state_save(p, &p->set, p->revision);
		goto fail;
	}
	t1 = sm_mono_ns();
	/* the calling sides here (kernel), then the streams this node accepted (tunnel) */
	closed = recheck_established(d);
	streams = p->on_live ? p->on_live(d) : 0;
	json_object_object_add(o, "closed", json_object_new_int64((int64_t) closed));
	json_object_object_add(o, "streams_closed", json_object_new_int64((int64_t) streams));
	if (closed || streams)
		pr_info("policy revision %u: %llu established connections and %llu inbound tunnel "
			"streams it denies were closed",
			revision, (unsigned long long) closed, (unsigned long long) streams);
	json_object_object_add(o, "apply_ms", json_object_new_double((double) (t1 - t0) / 1e6));
	pr_info("policy revision %u applied: %zu policies, %zu kernel entries (+%zu -%zu ~%zu)",
		revision, p->set.npolicies, p->compiled.nentries, diff.added, diff.removed,
		diff.changed);
	goto out;
fail:
	json_object_put(o);
	o = NULL;
out:
	sm_policy_diff_free(&diff);
	sm_policy_compiled_free(&c);
	return o;
}

/*
 * The request's document (args.document, named args.source, args.strict)
 * parsed into set, described by *in. 0, or -1 with err set and nothing held.
 */
static int parse_incoming(json_object *args, struct sm_policy_set *set, struct incoming *in,
			  struct sm_error *err)
{
	size_t len = 0;
	const char *doc = arg_text(args, "document", &len), *source = arg_str(args, "source");

	*in = (struct incoming){set, source ? source : "policy", arg_bool(args, "strict")};
	if (!doc) {
		sm_error_set(err, "missing args.document (the policy file's text)");
		return -1;
	}
	return sm_policy_set_parse(set, doc, len, in->source, err) ? -1 : 0;
}

static json_object *cmd_apply(struct sm_daemon *d, json_object *args, bool force_dry_run,
			      struct sm_error *err)
{
	struct sm_policy_set incoming = {0}, merged = {0};
	struct incoming in;
	json_object *o = NULL;

	if (parse_incoming(args, &incoming, &in, err))
		return NULL;
	if (sm_policy_set_merge(&d->policy->set, &incoming, &merged)) {
		sm_error_set(err, "out of memory merging the policy set");
		goto out;
	}
	o = change(d, &merged, &in, force_dry_run || arg_bool(args, "dry_run"), err);
out:
	sm_policy_set_free(&merged);
	sm_policy_set_free(&incoming);
	return o;
}

static json_object *cmd_validate(struct sm_daemon *d, json_object *args, struct sm_error *err)
{
	struct sm_policy_compiled c = {0};
	struct sm_policy_set set = {0};
	struct incoming in;
	json_object *o = NULL;

	if (parse_incoming(args, &set, &in, err))
		return NULL;
	/* compiled on its own, against this node's catalog: capacity is checked too */
	if (sm_policy_compile(&set, &d->cat, 0, d->cfg.max_policy_entries, &c, err) == 0 &&
	    check_strict(&c, &in, err) == 0) {
		o = json_object_new_object();
		json_object_object_add(o, "valid", json_object_new_boolean(true));
		json_object_object_add(o, "policies",
				       json_object_new_int64((int64_t) set.npolicies));
		json_object_object_add(o, "rules", json_object_new_int64((int64_t) c.nrules));
		json_object_object_add(o, "entries", json_object_new_int64((int64_t) c.nentries));
		json_object_object_add(o, "cidrs", json_object_new_int64((int64_t) c.ncidrs));
		json_object_object_add(o, "max_entries",
				       json_object_new_int64(d->cfg.max_policy_entries));
		json_object_object_add(o, "unmatched_patterns",
				       json_object_new_int64(c.unmatched_patterns));
		if (c.unmatched_example[0])
			json_object_object_add(o, "unmatched_example",
					       json_object_new_string(c.unmatched_example));
		add_unmatched(o, &c, &in);
	}
	sm_policy_compiled_free(&c);
	sm_policy_set_free(&set);
	return o;
}

static json_object *cmd_delete(struct sm_daemon *d, json_object *args, struct sm_error *err)
{
	static const struct incoming no_document = {NULL, "policy", false};
	const char *name = arg_str(args, "name");
	struct sm_policy_set rest = {0};
	json_object *o;

	if (arg_bool(args, "all")) {
		if (!arg_bool(args, "yes")) {
			sm_error_set(err,
				     "deleting every policy needs all and yes (sockmesh policy "
				     "delete --all --yes)");
			return NULL;
		}
		return change(d, &rest, &no_document, false, err);
	}
	if (!name) {
		sm_error_set(err, "missing args.name (the policy to delete)");
		return NULL;
	}
	if (sm_policy_set_remove(&d->policy->set, name, &rest)) {
		sm_error_set(err, "no policy named '%s' (sockmesh policy get lists them)", name);
		return NULL;
	}
	o = change(d, &rest, &no_document, false, err);
	sm_policy_set_free(&rest);
	return o;
}

static json_object *cmd_get(struct sm_daemon *d, json_object *args, struct sm_error *err)
{
	const char *name = arg_str(args, "name"), *format = arg_str(args, "format");
	struct sm_policyd *p = d->policy;
	struct sm_policy_set one = {0};
	const struct sm_policy_set *set = &p->set;
	json_object *o;
	char *text;

	if (name) {
		const struct sm_policy *pol = sm_policy_set_find(&p->set, name);

		if (!pol) {
			sm_error_set(err, "no policy named '%s' (sockmesh policy get lists them)",
				     name);
			return NULL;
		}
		/* a set of that one policy, borrowed: only read by the serialisers */
		one.policies = (struct sm_policy *) pol;
		one.npolicies = 1;
		set = &one;
	}
	text = format && strcmp(format, "yaml") == 0 ? sm_policy_set_to_yaml(set)
						     : sm_policy_set_to_json(set);
	o = json_object_new_object();
	json_object_object_add(o, "revision", json_object_new_int64(p->revision));
	json_object_object_add(o, "policies", json_object_new_int64((int64_t) set->npolicies));
	json_object_object_add(o, "document", json_object_new_string(text ? text : ""));
	free(text);
	return o;
}

int sm_policy_compiles(const struct sm_daemon *d, const struct sm_policy_set *set,
		       const struct sm_catalog *cat, struct sm_error *err)
{
	struct sm_policy_compiled c = {0};
	int ret = sm_policy_compile(set, cat, 0, d->cfg.max_policy_entries, &c, err);

	sm_policy_compiled_free(&c);
	return ret;
}

int sm_policy_replace(struct sm_daemon *d, const struct sm_policy_set *set, struct sm_error *err)
{
	static const struct incoming whole = {NULL, cluster_source, false};
	struct sm_policy_set copy = {0};
	json_object *o;

	if (!d->policy) {
		sm_error_set(err, "policy is not loaded yet");
		return -EAGAIN;
	}
	if (sm_policy_set_equal(&d->policy->set, set))
		return 0;
	if (sm_policy_set_copy(set, &copy)) {
		sm_error_set(err, "out of memory copying the policy set");
		return -ENOMEM;
	}
	o = change(d, &copy, &whole, false, err); /* takes copy over when it goes live */
	sm_policy_set_free(&copy);
	if (!o)
		return -EINVAL;
	json_object_put(o);
	return 0;
}

/* An identity from a SPIFFE ID, "host", "world", an address (CIDR or service), or a number. */
static int parse_identity(const struct sm_daemon *d, const char *s, bool dst, uint16_t port,
			  uint32_t *id, struct sm_error *err)
{
	struct sm_addr a;
	uint64_t n;

	if (strncmp(s, "spiffe://", 9) == 0) {
		*id = sm_policy_identity_of(d, s);
		if (*id == SM_ID_WORLD) {
			sm_error_set(err, "%s is not a workload of the catalog", s);
			return -ENOENT;
		}
		return 0;
	}
	if (strcmp(s, "host") == 0 || strcmp(s, "world") == 0) {
		*id = strcmp(s, "host") == 0 ? SM_ID_HOST : SM_ID_WORLD;
		return 0;
	}
	if (sm_addr_parse(s, &a) == 0) {
		if (dst) {
			for (unsigned int i = 0; i < d->cat.nservices; i++) {
				if (sm_addr_equal(&d->cat.services[i].addr, &a) &&
				    d->cat.services[i].port == port) {
					*id = d->cat.workloads[d->cat.services[i].workload]
						      .identity;
					return 0;
				}
			}
			sm_error_set(err, "no catalog service at %s port %u", s, port);
			return -ENOENT;
		}
		*id = sm_policy_addr_identity(d, &a);
		return 0;
	}
	if (sm_parse_u64(s, 0, UINT32_MAX, &n) == 0) {
		*id = (uint32_t) n;
		return 0;
	}
	sm_error_set(err,
		     "'%s': expected a SPIFFE ID, host, world, an address or an identity number",
		     s);
	return -EINVAL;
}

/* The live kernel map's answer for the same lookup (the contract's steps). */
/*
 * What the kernel's live maps answer, with the lookups the programs make.
 * from: a plaintext caller's address, whose source identity the kernel finds
 * in its own CIDR map (*src is replaced by it; 0 there is SM_ID_WORLD here),
 * or NULL: *src as given. *step = 0 when no entry (or no policy) applies.
 */
static int kernel_lookup(struct sm_daemon *d, const struct sm_addr *from, uint32_t *src,
			 uint32_t dst, uint16_t port, struct sm_policy_value *out,
			 unsigned int *step)
{
	struct sm_policy_state ps = {0};
	struct sm_policy_key k;
	__u32 zero = 0, id = 0;
	int fd;

	*step = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(d->skel->maps.policy_state), &zero, &ps))
		return -errno;
	if (!ps.loaded)
		return 0;
	if (from) {
		struct sm_cidr_key ck = {.family = from->family};

		ck.prefixlen = 32U + (from->family == AF_INET ? 32U : 128U);
		memcpy(ck.addr, from->bytes, sizeof(ck.addr));
		fd = live_map(d, 1, ps.slot);
		if (fd < 0)
			return fd;
		if (bpf_map_lookup_elem(fd, &ck, &id))
			id = 0;
		*src = id ? id : SM_ID_WORLD;
	}
	fd = live_map(d, 0, ps.slot);
	if (fd < 0)
		return fd;
	for (unsigned int i = 1; i <= SM_POLICY_STEPS; i++) {
		sm_policy_step_key(i, *src, dst, port, &k);
		if (bpf_map_lookup_elem(fd, &k, out) == 0) {
			*step = i;
			break;
		}
	}
	return 0;
}

static const char *action_name(enum sm_policy_action a)
{
	return a == SM_POLICY_DENY ? "DENY" : "ALLOW";
}

static const char *reason_name(enum sm_policy_reason r)
{
	return r == SM_POLICY_R_DEFAULT_DENY ? "default-deny"
	       : r == SM_POLICY_R_RULE	     ? "rule"
					     : "no-policy";
}

static json_object *rule_json(const struct sm_policyd *p, uint32_t rule_id)
{
	struct sm_policy_rule_info info;
	json_object *o;

	if (!rule_id || sm_policy_describe(&p->compiled, rule_id, &info))
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "policy", json_object_new_string(info.policy));
	json_object_object_add(o, "rule", json_object_new_int64(info.rule_index));
	json_object_object_add(o, "action",
			       json_object_new_string(info.action == SM_POLICY_RULE_DENY ? "DENY"
						      : info.action == SM_POLICY_RULE_AUDIT
							      ? "AUDIT"
							      : "ALLOW"));
	json_object_object_add(o, "line", json_object_new_int64(info.line));
	return o;
}

static json_object *cmd_explain(struct sm_daemon *d, json_object *args, struct sm_error *err)
{
	const char *from = arg_str(args, "from"), *to = arg_str(args, "to");
	struct sm_policyd *p = d->policy;
	struct sm_policy_decision dec, ev;
	struct sm_policy_value kv = {0};
	struct sm_policy_ctx *ctx;
	json_object *o, *port_j, *k;
	uint32_t src, dst, ksrc;
	struct sm_addr from_addr;
	unsigned int step;
	int64_t port;
	char why[512];
	int ret;

	if (!from || !to || !args || !json_object_object_get_ex(args, "port", &port_j) ||
	    !json_object_is_type(port_j, json_type_int) ||
	    (port = json_object_get_int64(port_j)) < 1 || port > 65535) {
		sm_error_set(err, "explain needs from, to and a port 1..65535");
		return NULL;
	}
	if (parse_identity(d, from, false, 0, &src, err) ||
	    parse_identity(d, to, true, (uint16_t) port, &dst, err))
		return NULL;
	sm_policy_lookup(&p->compiled, src, dst, (uint16_t) port, &dec);
	ctx = sm_policy_ctx_new(&p->set, &d->cat);
	if (!ctx) {
		sm_error_set(err, "out of memory");
		return NULL;
	}
	sm_policy_eval(&p->set, ctx, src, dst, (uint16_t) port, &ev);
	sm_policy_ctx_free(ctx);
	ksrc = src;
	ret = kernel_lookup(d, sm_addr_parse(from, &from_addr) == 0 ? &from_addr : NULL, &ksrc, dst,
			    (uint16_t) port, &kv, &step);
	if (ret) {
		sm_error_set(err, "cannot read the kernel's policy map: %s",
			     ret == -ESTALE ? "the live map is not the one this daemon installed "
					      "(another process changed the policy maps)"
					    : strerror(-ret));
		return NULL;
	}

	o = json_object_new_object();
	json_object_object_add(o, "revision", json_object_new_int64(p->revision));
	json_object_object_add(o, "src_identity", json_object_new_int64(src));
	json_object_object_add(o, "dst_identity", json_object_new_int64(dst));
	json_object_object_add(o, "port", json_object_new_int64(port));
	json_object_object_add(o, "decision", json_object_new_string(action_name(dec.action)));
	json_object_object_add(o, "reason", json_object_new_string(reason_name(dec.reason)));
	if (dec.rule_id)
		json_object_object_add(o, "rule", rule_json(p, dec.rule_id));
	if (dec.audit)
		json_object_object_add(o, "audit", rule_json(p, dec.audit_rule_id));
	json_object_object_add(o, "lookup_step", json_object_new_int64(dec.step));
	if (dec.reason == SM_POLICY_R_DEFAULT_DENY)
		snprintf(why, sizeof(why),
			 "a policy with ALLOW rules selects the destination and "
			 "none of its rules allows this source and port");
	else if (dec.reason == SM_POLICY_R_NO_POLICY)
		snprintf(why, sizeof(why),
			 "no ALLOW or DENY rule applies and no ALLOW policy "
			 "selects the destination");
	else if (dec.action == SM_POLICY_DENY)
		snprintf(why, sizeof(why), "a DENY rule applies (it beats any ALLOW)");
	else
		snprintf(why, sizeof(why), "an ALLOW rule applies and no DENY rule does");
	json_object_object_add(o, "why", json_object_new_string(why));
	/* what the kernel's own map answers, and the rules evaluated directly */
	k = json_object_new_object();
	json_object_object_add(k, "decision",
			       json_object_new_string(step ? action_name(kv.action) : "ALLOW"));
	json_object_object_add(k, "rule_id", json_object_new_int64(step ? kv.rule_id : 0));
	json_object_object_add(k, "lookup_step", json_object_new_int64(step));
	json_object_object_add(k, "src_identity", json_object_new_int64(ksrc));
	json_object_object_add(o, "kernel", k);
	json_object_object_add(o, "agree",
			       json_object_new_boolean(
				       (step ? (enum sm_policy_action) kv.action
					     : SM_POLICY_ALLOW) == dec.action &&
				       (step ? kv.rule_id : 0) == dec.rule_id && step == dec.step &&
				       ksrc == src && ev.action == dec.action &&
				       ev.rule_id == dec.rule_id && ev.reason == dec.reason));
	return o;
}

static json_object *cmd_status(struct sm_daemon *d)
{
	struct sm_policyd *p = d->policy;
	json_object *o = json_object_new_object();

	json_object_object_add(o, "revision", json_object_new_int64(p->revision));
	json_object_object_add(o, "policies", json_object_new_int64((int64_t) p->set.npolicies));
	json_object_object_add(o, "entries", json_object_new_int64((int64_t) p->compiled.nentries));
	json_object_object_add(o, "cidrs", json_object_new_int64((int64_t) p->compiled.ncidrs));
	json_object_object_add(o, "max_entries", json_object_new_int64(d->cfg.max_policy_entries));
	json_object_object_add(o, "applied_at", json_object_new_int64(p->applied_at));
	json_object_object_add(o, "file", json_object_new_string(p->path));
	return o;
}

json_object *sm_policy_command(struct sm_daemon *d, const char *cmd, json_object *args,
			       bool privileged, bool *handled, struct sm_error *err)
{
	bool mutating = strcmp(cmd, "policy_apply") == 0 || strcmp(cmd, "policy_delete") == 0;

	*handled = strncmp(cmd, "policy_", 7) == 0;
	if (!*handled)
		return NULL;
	if (!d->policy) {
		sm_error_set(err, "policy is not loaded yet");
		return NULL;
	}
	if (mutating && d->cluster_mode && !arg_bool(args, "dry_run")) {
		sm_error_set(
			err,
			"this node runs in cluster mode: its policies come from etcd (write "
			"them with sockmesh policy apply --cluster / policy delete --cluster)");
		return NULL;
	}
	if (mutating && !privileged) {
		sm_error_set(err,
			     "%s changes the policy: only root (or the daemon's own user) may "
			     "do that",
			     cmd);
		return NULL;
	}
	if (strcmp(cmd, "policy_apply") == 0)
		return cmd_apply(d, args, false, err);
	if (strcmp(cmd, "policy_diff") == 0)
		return cmd_apply(d, args, true, err);
	if (strcmp(cmd, "policy_validate") == 0)
		return cmd_validate(d, args, err);
	if (strcmp(cmd, "policy_delete") == 0)
		return cmd_delete(d, args, err);
	if (strcmp(cmd, "policy_get") == 0)
		return cmd_get(d, args, err);
	if (strcmp(cmd, "policy_explain") == 0)
		return cmd_explain(d, args, err);
	if (strcmp(cmd, "policy_status") == 0)
		return cmd_status(d);
	sm_error_set(err,
		     "unknown command '%s' (policy_apply, policy_diff, policy_validate, "
		     "policy_delete, policy_get, policy_explain, policy_status)",
		     cmd);
	return NULL;
}
