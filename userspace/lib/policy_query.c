// SPDX-License-Identifier: Apache-2.0
/* Compiled policies: the kernel's lookup over the entries, names for people, diffs. */
#include "policy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "sockmesh/common.h"

#include "policy_int.h"

/* ---- lookup ---- */

struct sm_policy_index_item {
	struct sm_policy_key key;
	size_t idx;
	UT_hash_handle hh;
};

struct sm_policy_index {
	struct sm_policy_index_item *items;
	struct sm_policy_index_item *head;
};

static void index_free(struct sm_policy_index *ix)
{
	if (!ix)
		return;
	HASH_CLEAR(hh, ix->head);
	free(ix->items);
	free(ix);
}

int sm_policy_compiled_index(struct sm_policy_compiled *c)
{
	struct sm_policy_index *ix;

	index_free(c->index);
	c->index = NULL;
	if (c->nentries)
		qsort(c->entries, c->nentries, sizeof(*c->entries), pol_cmp_entry);
	ix = calloc(1, sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	ix->items = calloc(c->nentries ? c->nentries : 1, sizeof(*ix->items));
	if (!ix->items) {
		free(ix);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->nentries; i++) {
		struct sm_policy_index_item *it = &ix->items[i];

		it->key = c->entries[i].key;
		it->idx = i;
		HASH_ADD(hh, ix->head, key, sizeof(it->key), it);
	}
	c->index = ix;
	return 0;
}

void sm_policy_compiled_free(struct sm_policy_compiled *c)
{
	if (!c)
		return;
	index_free(c->index);
	for (size_t i = 0; c->names && i < c->nnames; i++)
		free(c->names[i].spiffe);
	free(c->names);
	free(c->entries);
	free(c->cidrs);
	free(c->rules);
	free(c->unmatched);
	memset(c, 0, sizeof(*c));
}

static const struct sm_policy_entry *entry_find(const struct sm_policy_compiled *c, uint32_t src,
						uint32_t dst, uint16_t port)
{
	struct sm_policy_index_item *it = NULL;
	struct sm_policy_key key;

	if (!c->index)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.src_identity = src;
	key.dst_identity = dst;
	key.dport = port;
	key.proto = IPPROTO_TCP;
	HASH_FIND(hh, c->index->head, &key, sizeof(key), it);
	return it ? &c->entries[it->idx] : NULL;
}

void sm_policy_step_key(unsigned int step, uint32_t src, uint32_t dst, uint16_t port,
			struct sm_policy_key *key)
{
	memset(key, 0, sizeof(*key));
	sm_policy_step_key_fill(key, step, src, dst, port);
}

int sm_policy_lookup(const struct sm_policy_compiled *c, uint32_t src, uint32_t dst, uint16_t port,
		     struct sm_policy_decision *d)
{
	static const struct sm_policy_value nohit = {.action = SM_POLICY_ALLOW,
						     .reason = SM_POLICY_R_NO_POLICY};
	struct sm_policy_key k;

	for (unsigned int step = 1; step <= SM_POLICY_STEPS; step++) {
		const struct sm_policy_entry *e;

		sm_policy_step_key(step, src, dst, port, &k);
		e = entry_find(c, k.src_identity, dst, k.dport);
		if (e) {
			pol_value_to_decision(&e->value, step, d);
			return 0;
		}
	}
	pol_value_to_decision(&nohit, 0, d);
	return 0;
}

uint32_t sm_policy_cidr_identity(const struct sm_policy_compiled *c, const struct sm_addr *addr)
{
	const struct sm_policy_cidr *best = NULL;
	unsigned int full = addr->family == AF_INET ? 32 : 128;

	for (size_t i = 0; i < c->ncidrs; i++) {
		const struct sm_policy_cidr *x = &c->cidrs[i];

		if (sm_cidr_contains(&x->addr, x->prefix, addr, (uint8_t) full) &&
		    (!best || x->prefix > best->prefix))
			best = x;
	}
	return best ? best->identity : 0;
}

/* ---- describe, names, formatting ---- */

int sm_policy_describe(const struct sm_policy_compiled *c, uint32_t rule_id,
		       struct sm_policy_rule_info *info)
{
	if (rule_id == 0 || rule_id > c->nrules)
		return -ENOENT;
	*info = c->rules[rule_id - 1];
	return 0;
}

int sm_policy_set_describe(const struct sm_policy_set *set, uint32_t rule_id,
			   struct sm_policy_rule_info *info)
{
	uint32_t id = rule_id;

	if (rule_id == 0)
		return -ENOENT;
	for (size_t i = 0; i < set->npolicies; i++) {
		const struct sm_policy *pol = &set->policies[i];

		if (id > pol->nrules) {
			id -= (uint32_t) pol->nrules;
			continue;
		}
		memset(info, 0, sizeof(*info));
		memcpy(info->policy, pol->name, sizeof(info->policy));
		info->rule_index = id - 1;
		info->action = pol->rules[id - 1].action;
		info->line = pol->rules[id - 1].line;
		return 0;
	}
	return -ENOENT;
}

const char *sm_policy_identity_name(const struct sm_policy_compiled *c,
				    const struct sm_catalog *cat, uint32_t identity, char *buf,
				    size_t len)
{
	const struct sm_policy_cidr *cidr = NULL;
	const char *id = NULL;
	char addr[64];
	int wl;

	if (identity == SM_ID_WILDCARD)
		snprintf(buf, len, "any");
	else if (identity == SM_POLICY_SRC_DEFAULT)
		snprintf(buf, len, "default");
	else if (identity == SM_ID_HOST)
		snprintf(buf, len, "host");
	else if (identity == SM_ID_WORLD)
		snprintf(buf, len, "world");
	else if (c && (cidr = pol_cidr_by_identity(c->cidrs, c->ncidrs, identity)))
		snprintf(buf, len, "%s/%u", sm_addr_format(&cidr->addr, addr, sizeof(addr)),
			 cidr->prefix);
	else if (c && (id = pol_names_find(c->names, c->nnames, identity)))
		snprintf(buf, len, "%s", id);
	else if (cat && (wl = sm_catalog_workload_by_identity(cat, identity)) >= 0)
		snprintf(buf, len, "%s", cat->workloads[wl].spiffe_id);
	else
		snprintf(buf, len, "identity %u", identity);
	return buf;
}

/* "POLICY#I", or the reason when no rule decided. Returns buf. */
static const char *rule_name(const struct sm_policy_compiled *c, uint32_t rule_id, uint8_t reason,
			     char *buf, size_t len)
{
	if (rule_id == 0)
		snprintf(buf, len, "%s",
			 reason == SM_POLICY_R_DEFAULT_DENY ? "default-deny" : "no-policy");
	else if (c && rule_id <= c->nrules)
		snprintf(buf, len, "%s#%u", c->rules[rule_id - 1].policy,
			 c->rules[rule_id - 1].rule_index);
	else
		snprintf(buf, len, "#%u", rule_id);
	return buf;
}

/* "allow rule=POLICY#I[ audit=POLICY#I]". Returns buf. */
static const char *verdict_format(const struct sm_policy_compiled *c,
				  const struct sm_policy_value *v, char *buf, size_t len)
{
	char rule[96], audit[96];

	rule_name(c, v->rule_id, v->reason, rule, sizeof(rule));
	if (v->flags & SM_POLICY_F_AUDIT)
		snprintf(buf, len, "%s rule=%s audit=%s",
			 v->action == SM_POLICY_DENY ? "deny" : "allow", rule,
			 rule_name(c, v->audit_rule_id, SM_POLICY_R_RULE, audit, sizeof(audit)));
	else
		snprintf(buf, len, "%s rule=%s", v->action == SM_POLICY_DENY ? "deny" : "allow",
			 rule);
	return buf;
}

const char *sm_policy_entry_format(const struct sm_policy_compiled *c, const struct sm_catalog *cat,
				   const struct sm_policy_entry *e, char *buf, size_t len)
{
	char src[SM_SPIFFE_MAX], dst[SM_SPIFFE_MAX], port[8], verd[256];
	const char *action;
	const char *rest;

	verdict_format(c, &e->value, verd, sizeof(verd));
	/* verd is "ACTION rule=...": split the action off to put the key in between */
	rest = strchr(verd, ' ');
	action = e->value.action == SM_POLICY_DENY ? "deny" : "allow";
	if (e->key.dport)
		snprintf(port, sizeof(port), "%u", e->key.dport);
	else
		snprintf(port, sizeof(port), "any");
	snprintf(buf, len, "%s src=%s dst=%s port=%s%s", action,
		 sm_policy_identity_name(c, cat, e->key.src_identity, src, sizeof(src)),
		 sm_policy_identity_name(c, cat, e->key.dst_identity, dst, sizeof(dst)), port,
		 rest ? rest : "");
	return buf;
}

/* ---- diff ---- */

static int diff_push(struct sm_policy_diff *d, size_t *cap, const struct sm_policy_diff_item *it)
{
	if (d->nitems == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct sm_policy_diff_item *n = realloc(d->items, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		d->items = n;
		*cap = ncap;
	}
	d->items[d->nitems++] = *it;
	return 0;
}

static int cmp_cidr_identity(const struct sm_policy_cidr *a, const struct sm_policy_cidr *b)
{
	int c = pol_cmp_cidr(a, b);

	if (c)
		return c;
	return (a->identity > b->identity) - (a->identity < b->identity);
}

int sm_policy_diff(const struct sm_policy_compiled *old, const struct sm_policy_compiled *new_c,
		   struct sm_policy_diff *diff)
{
	static const struct sm_policy_compiled none = {0};
	const struct sm_policy_compiled *a = old ? old : &none, *b = new_c ? new_c : &none;
	size_t i = 0, j = 0, cap = 0;
	int ret = 0;

	memset(diff, 0, sizeof(*diff));
	/* both entry lists are sorted by key: one merge pass */
	while (!ret && (i < a->nentries || j < b->nentries)) {
		struct sm_policy_diff_item it;
		int c;

		memset(&it, 0, sizeof(it));
		if (i == a->nentries)
			c = 1;
		else if (j == b->nentries)
			c = -1;
		else
			c = pol_cmp_entry(&a->entries[i], &b->entries[j]);
		if (c < 0) {
			it.kind = SM_POLICY_DIFF_REMOVED;
			it.key = a->entries[i].key;
			it.old_value = a->entries[i++].value;
			diff->removed++;
		} else if (c > 0) {
			it.kind = SM_POLICY_DIFF_ADDED;
			it.key = b->entries[j].key;
			it.new_value = b->entries[j++].value;
			diff->added++;
		} else {
			const struct sm_policy_entry *x = &a->entries[i++], *y = &b->entries[j++];

			if (pol_value_equal(&x->value, &y->value))
				continue;
			it.kind = SM_POLICY_DIFF_CHANGED;
			it.key = y->key;
			it.old_value = x->value;
			it.new_value = y->value;
			diff->changed++;
		}
		ret = diff_push(diff, &cap, &it);
	}
	for (i = 0, j = 0; i < a->ncidrs || j < b->ncidrs;) {
		int c = i == a->ncidrs	 ? 1
			: j == b->ncidrs ? -1
					 : cmp_cidr_identity(&a->cidrs[i], &b->cidrs[j]);

		diff->cidrs_removed += c < 0;
		diff->cidrs_added += c > 0;
		i += c <= 0;
		j += c >= 0;
	}
	if (ret)
		sm_policy_diff_free(diff);
	return ret;
}

void sm_policy_diff_free(struct sm_policy_diff *diff)
{
	if (!diff)
		return;
	free(diff->items);
	memset(diff, 0, sizeof(*diff));
}

static void cidr_line(FILE *f, char sign, const struct sm_policy_cidr *c)
{
	char addr[64];

	fprintf(f, "%c cidr %s/%u identity %u\n", sign,
		sm_addr_format(&c->addr, addr, sizeof(addr)), c->prefix, c->identity);
}

void sm_policy_diff_print(FILE *f, const struct sm_policy_diff *diff,
			  const struct sm_policy_compiled *old,
			  const struct sm_policy_compiled *new_c, const struct sm_catalog *cat)
{
	static const struct sm_policy_compiled none = {0};
	const struct sm_policy_compiled *a = old ? old : &none, *b = new_c ? new_c : &none;
	char line[1024], was[256];

	for (size_t i = 0; i < diff->nitems; i++) {
		const struct sm_policy_diff_item *it = &diff->items[i];
		struct sm_policy_entry e = {.key = it->key};

		switch (it->kind) {
		case SM_POLICY_DIFF_ADDED:
			e.value = it->new_value;
			fprintf(f, "+ %s\n",
				sm_policy_entry_format(b, cat, &e, line, sizeof(line)));
			break;
		case SM_POLICY_DIFF_REMOVED:
			e.value = it->old_value;
			fprintf(f, "- %s\n",
				sm_policy_entry_format(a, cat, &e, line, sizeof(line)));
			break;
		case SM_POLICY_DIFF_CHANGED:
			e.value = it->new_value;
			fprintf(f, "~ %s (was %s)\n",
				sm_policy_entry_format(b, cat, &e, line, sizeof(line)),
				verdict_format(a, &it->old_value, was, sizeof(was)));
			break;
		}
	}
	for (size_t i = 0, j = 0; i < a->ncidrs || j < b->ncidrs;) {
		int c = i == a->ncidrs	 ? 1
			: j == b->ncidrs ? -1
					 : cmp_cidr_identity(&a->cidrs[i], &b->cidrs[j]);

		if (c < 0)
			cidr_line(f, '-', &a->cidrs[i]);
		else if (c > 0)
			cidr_line(f, '+', &b->cidrs[j]);
		i += c <= 0;
		j += c >= 0;
	}
}
