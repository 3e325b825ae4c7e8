// SPDX-License-Identifier: Apache-2.0
/*
 * Policy semantics: the reference evaluator over the rules and the compiler of
 * a set into kernel entries that give the same verdicts (include/sockmesh/policy.h).
 */
#include "policy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockmesh/common.h"

#include "policy_int.h"

/* ---- identities: the catalog's SPIFFE IDs and the policy CIDRs ---- */

struct sm_policy_ctx {
	struct sm_policy_name *by_id;	  /* sorted by identity; owns the strings */
	struct sm_policy_name *by_spiffe; /* the same, sorted by SPIFFE ID; borrows them */
	size_t nids;
	struct sm_policy_cidr *cidrs; /* sorted; identity = SM_ID_CIDR_BASE + index */
	size_t ncidrs;
};

static int cmp_name_id(const void *a, const void *b)
{
	uint32_t x = ((const struct sm_policy_name *) a)->identity;
	uint32_t y = ((const struct sm_policy_name *) b)->identity;

	return (x > y) - (x < y);
}

static int cmp_name_spiffe(const void *a, const void *b)
{
	return strcmp(((const struct sm_policy_name *) a)->spiffe,
		      ((const struct sm_policy_name *) b)->spiffe);
}

static size_t addr_len(const struct sm_addr *a)
{
	return a->family == AF_INET ? 4 : 16;
}

int pol_cmp_cidr(const void *a, const void *b)
{
	const struct sm_policy_cidr *x = a, *y = b;
	int c;

	if (x->addr.family != y->addr.family)
		return x->addr.family < y->addr.family ? -1 : 1;
	c = memcmp(x->addr.bytes, y->addr.bytes, addr_len(&x->addr));
	if (c)
		return c;
	return (x->prefix > y->prefix) - (x->prefix < y->prefix);
}

void sm_policy_ctx_free(struct sm_policy_ctx *ctx)
{
	if (!ctx)
		return;
	for (size_t i = 0; i < ctx->nids; i++)
		free(ctx->by_id[i].spiffe);
	free(ctx->by_id);
	free(ctx->by_spiffe);
	free(ctx->cidrs);
	free(ctx);
}

/* The distinct workload identities and their SPIFFE IDs (replicas share one identity). */
static int ctx_names(struct sm_policy_ctx *ctx, const struct sm_catalog *cat)
{
	struct sm_policy_name *refs;
	size_t n = 0;

	if (!cat || !cat->nworkloads)
		return 0;
	refs = calloc(cat->nworkloads, sizeof(*refs));
	ctx->by_id = calloc(cat->nworkloads, sizeof(*ctx->by_id));
	if (!refs || !ctx->by_id) {
		free(refs);
		return -ENOMEM;
	}
	/* sort borrowed pointers first, then copy one string per identity */
	for (unsigned int i = 0; i < cat->nworkloads; i++) {
		refs[i].identity = cat->workloads[i].identity;
		refs[i].spiffe = cat->workloads[i].spiffe_id;
	}
	qsort(refs, cat->nworkloads, sizeof(*refs), cmp_name_id);
	for (unsigned int i = 0; i < cat->nworkloads; i++) {
		if (n && ctx->by_id[n - 1].identity == refs[i].identity)
			continue;
		ctx->by_id[n].identity = refs[i].identity;
		ctx->by_id[n].spiffe = strdup(refs[i].spiffe);
		if (!ctx->by_id[n].spiffe)
			break;
		ctx->nids = ++n;
	}
	free(refs);
	if (n == 0 || ctx->by_id[n - 1].spiffe == NULL)
		return -ENOMEM;
	ctx->by_spiffe = malloc(n * sizeof(*ctx->by_spiffe));
	if (!ctx->by_spiffe)
		return -ENOMEM;
	memcpy(ctx->by_spiffe, ctx->by_id, n * sizeof(*ctx->by_spiffe));
	qsort(ctx->by_spiffe, n, sizeof(*ctx->by_spiffe), cmp_name_spiffe);
	return 0;
}

/* Every distinct CIDR named in the set, sorted, numbered from SM_ID_CIDR_BASE. */
static int ctx_cidrs(struct sm_policy_ctx *ctx, const struct sm_policy_set *set)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < set->npolicies; i++)
		for (size_t r = 0; r < set->policies[i].nrules; r++)
			for (size_t f = 0; f < set->policies[i].rules[r].nfrom; f++)
				n += set->policies[i].rules[r].from[f].kind == SM_POLICY_PEER_CIDR;
	if (!n)
		return 0;
	ctx->cidrs = calloc(n, sizeof(*ctx->cidrs));
	if (!ctx->cidrs)
		return -ENOMEM;
	for (size_t i = 0; i < set->npolicies; i++) {
		for (size_t r = 0; r < set->policies[i].nrules; r++) {
			const struct sm_policy_rule *rule = &set->policies[i].rules[r];

			for (size_t f = 0; f < rule->nfrom; f++) {
				if (rule->from[f].kind != SM_POLICY_PEER_CIDR)
					continue;
				ctx->cidrs[k].addr = rule->from[f].addr;
				ctx->cidrs[k].prefix = rule->from[f].prefix;
				k++;
			}
		}
	}
	qsort(ctx->cidrs, n, sizeof(*ctx->cidrs), pol_cmp_cidr);
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || pol_cmp_cidr(&ctx->cidrs[k - 1], &ctx->cidrs[i]) != 0)
			ctx->cidrs[k++] = ctx->cidrs[i];
	for (size_t i = 0; i < k; i++)
		ctx->cidrs[i].identity = SM_ID_CIDR_BASE + (uint32_t) i;
	ctx->ncidrs = k;
	return 0;
}

struct sm_policy_ctx *sm_policy_ctx_new(const struct sm_policy_set *set,
					const struct sm_catalog *cat)
{
	struct sm_policy_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return NULL;
	if (ctx_names(ctx, cat) || ctx_cidrs(ctx, set)) {
		sm_policy_ctx_free(ctx);
		errno = ENOMEM;
		return NULL;
	}
	return ctx;
}

const char *pol_names_find(const struct sm_policy_name *by_id, size_t n, uint32_t identity)
{
	struct sm_policy_name key = {.identity = identity};
	const struct sm_policy_name *hit;

	if (!n)
		return NULL;
	hit = bsearch(&key, by_id, n, sizeof(key), cmp_name_id);
	return hit ? hit->spiffe : NULL;
}

const struct sm_policy_cidr *pol_cidr_by_identity(const struct sm_policy_cidr *cidrs, size_t n,
						  uint32_t identity)
{
	if (identity < SM_ID_CIDR_BASE || identity - SM_ID_CIDR_BASE >= n)
		return NULL;
	return &cidrs[identity - SM_ID_CIDR_BASE];
}

/* ---- the semantics ---- */

static bool ports_contain(const struct sm_port_range *r, size_t n, uint16_t port)
{
	if (!n)
		return true;
	for (size_t i = 0; i < n; i++)
		if (port >= r[i].lo && port <= r[i].hi)
			return true;
	return false;
}

/*
 * The verdict from the first applying DENY, ALLOW and AUDIT rule ids (0 =
 * none) and whether an ALLOW policy selects the destination.
 */
static struct sm_policy_value verdict(uint32_t deny, uint32_t allow, uint32_t audit, bool has_allow)
{
	struct sm_policy_value v = {0};

	if (deny) {
		v.action = SM_POLICY_DENY;
		v.reason = SM_POLICY_R_RULE;
		v.rule_id = deny;
	} else if (allow) {
		v.action = SM_POLICY_ALLOW;
		v.reason = SM_POLICY_R_RULE;
		v.rule_id = allow;
	} else if (has_allow) {
		v.action = SM_POLICY_DENY;
		v.reason = SM_POLICY_R_DEFAULT_DENY;
	} else {
		v.action = SM_POLICY_ALLOW;
		v.reason = SM_POLICY_R_NO_POLICY;
	}
	if (audit) {
		v.flags = SM_POLICY_F_AUDIT;
		v.audit_rule_id = audit;
	}
	return v;
}

void pol_value_to_decision(const struct sm_policy_value *v, unsigned int step,
			   struct sm_policy_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->action = (enum sm_policy_action) v->action;
	d->reason = (enum sm_policy_reason) v->reason;
	d->rule_id = v->rule_id;
	d->audit = v->flags & SM_POLICY_F_AUDIT;
	d->audit_rule_id = d->audit ? v->audit_rule_id : 0;
	d->step = step;
}

/* Same verdict (the revision and pads do not count). */
bool pol_value_equal(const struct sm_policy_value *a, const struct sm_policy_value *b)
{
	return a->action == b->action && a->reason == b->reason && a->flags == b->flags &&
	       a->rule_id == b->rule_id && a->audit_rule_id == b->audit_rule_id;
}

static bool peer_matches(const struct sm_policy_ctx *ctx, const struct sm_policy_peer *peer,
			 uint32_t src)
{
	const struct sm_policy_cidr *c;
	const char *id;

	switch (peer->kind) {
	case SM_POLICY_PEER_ANY:
		return true;
	case SM_POLICY_PEER_SPIFFE:
	case SM_POLICY_PEER_PATTERN:
		id = pol_names_find(ctx->by_id, ctx->nids, src);
		return id &&
		       pol_spiffe_match(peer->spiffe, peer->kind == SM_POLICY_PEER_PATTERN, id);
	case SM_POLICY_PEER_CIDR:
		c = pol_cidr_by_identity(ctx->cidrs, ctx->ncidrs, src);
		return c && sm_cidr_contains(&peer->addr, peer->prefix, &c->addr, c->prefix);
	}
	return false;
}

int sm_policy_eval(const struct sm_policy_set *set, const struct sm_policy_ctx *ctx, uint32_t src,
		   uint32_t dst, uint16_t port, struct sm_policy_decision *d)
{
	const char *dst_id = pol_names_find(ctx->by_id, ctx->nids, dst);
	uint32_t id = 0, deny = 0, allow = 0, audit = 0;
	struct sm_policy_value v;
	bool has_allow = false;

	for (size_t i = 0; i < set->npolicies; i++) {
		const struct sm_policy *pol = &set->policies[i];
		bool selected =
			dst_id && pol_spiffe_match(pol->selector, pol->selector_pattern, dst_id);

		for (size_t r = 0; r < pol->nrules; r++) {
			const struct sm_policy_rule *rule = &pol->rules[r];
			bool from = false;

			id++;
			if (!selected)
				continue;
			if (rule->action == SM_POLICY_RULE_ALLOW)
				has_allow = true;
			if (!ports_contain(pol->ports, pol->nports, port) ||
			    !ports_contain(rule->ports, rule->nports, port))
				continue;
			for (size_t f = 0; f < rule->nfrom && !from; f++)
				from = peer_matches(ctx, &rule->from[f], src);
			if (!from)
				continue;
			if (rule->action == SM_POLICY_RULE_DENY && !deny)
				deny = id;
			else if (rule->action == SM_POLICY_RULE_ALLOW && !allow)
				allow = id;
			else if (rule->action == SM_POLICY_RULE_AUDIT && !audit)
				audit = id;
		}
	}
	v = verdict(deny, allow, audit, has_allow);
	pol_value_to_decision(&v, 0, d);
	return 0;
}

/* ---- the compiler ---- */

/* A rule as the compiler sees it: effective ports and the source identities it names. */
struct crule {
	enum sm_policy_rule_action action;
	bool any;		     /* `any` among the sources */
	bool never;		     /* selector and rule ports do not meet */
	struct sm_port_range *ports; /* selector ∩ rule ports, normalized; NULL = every port */
	size_t nports;
	uint32_t *srcs; /* sorted, distinct; workloads and CIDR identities */
	size_t nsrcs;
};

struct idvec {
	uint32_t *v;
	size_t n, cap;
};

/* (identity, index) pairs: destinations with their policies, sources with their rules */
struct pair {
	uint32_t id;
	uint32_t idx;
};

struct compiler {
	const struct sm_policy_set *set;
	struct sm_policy_ctx *ctx;
	uint32_t revision;
	size_t max;
	struct crule *rules;
	size_t nrules;
	size_t *first_rule; /* per policy */
	bool *has_allow;    /* per policy */
	struct pair *dsts;  /* (dst identity, policy index), sorted */
	size_t ndsts, dsts_cap;
	struct sm_policy_entry *entries;
	size_t nentries, cap;
	size_t needed; /* entries the policy needs (may exceed max; then not all are stored) */
	struct sm_policy_unmatched *unmatched;
	size_t nunmatched, unmatched_cap;
};

/* Where a SPIFFE ID or pattern being matched is written: for sm_policy_unmatched. */
struct ref_where {
	size_t policy;
	int rule; /* -1: the selector */
	unsigned int line;
};

static int idvec_push(struct idvec *v, uint32_t id)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		uint32_t *nv = realloc(v->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = id;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

	return (x > y) - (x < y);
}

static void idvec_sort_unique(struct idvec *v)
{
	size_t k = 0;

	if (!v->n)
		return;
	qsort(v->v, v->n, sizeof(*v->v), cmp_u32);
	for (size_t i = 0; i < v->n; i++)
		if (k == 0 || v->v[k - 1] != v->v[i])
			v->v[k++] = v->v[i];
	v->n = k;
}

static int cmp_pair(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Record that text, written at where, matches no workload. 0 or -ENOMEM. */
static int unmatched_add(struct compiler *cc, const char *text, bool pattern,
			 const struct ref_where *where)
{
	struct sm_policy_unmatched *u;

	if (cc->nunmatched == cc->unmatched_cap) {
		size_t cap = cc->unmatched_cap ? cc->unmatched_cap * 2 : 8;

		u = realloc(cc->unmatched, cap * sizeof(*u));
		if (!u)
			return -ENOMEM;
		cc->unmatched = u;
		cc->unmatched_cap = cap;
	}
	u = &cc->unmatched[cc->nunmatched++];
	memset(u, 0, sizeof(*u));
	memcpy(u->policy, cc->set->policies[where->policy].name, sizeof(u->policy));
	u->rule = where->rule;
	u->line = where->line;
	u->pattern = pattern;
	sm_strlcpy(u->spiffe, text, sizeof(u->spiffe));
	return 0;
}

/* Identities whose SPIFFE ID matches text (an ID or a pattern) into out; records misses. */
static int match_spiffe(struct compiler *cc, const char *text, bool pattern,
			const struct ref_where *where, struct idvec *out)
{
	const struct sm_policy_ctx *ctx = cc->ctx;
	size_t before = out->n, lo = 0, hi = ctx->nids, plen;
	int ret = 0;

	if (!pattern) {
		struct sm_policy_name key = {.spiffe = (char *) text};
		const struct sm_policy_name *hit =
			ctx->nids ? bsearch(&key, ctx->by_spiffe, ctx->nids, sizeof(key),
					    cmp_name_spiffe)
				  : NULL;

		if (hit)
			ret = idvec_push(out, hit->identity);
	} else {
		/* the IDs under a prefix are contiguous in SPIFFE ID order */
		plen = strlen(text) - 1;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (strncmp(ctx->by_spiffe[mid].spiffe, text, plen) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t k = lo; !ret && k < ctx->nids; k++) {
			const char *id = ctx->by_spiffe[k].spiffe;

			if (strncmp(id, text, plen) != 0)
				break;
			if (id[plen])
				ret = idvec_push(out, ctx->by_spiffe[k].identity);
		}
	}
	if (!ret && out->n == before)
		ret = unmatched_add(cc, text, pattern, where);
	return ret;
}

/* The policy CIDR identities lying within addr/prefix (equal included). */
static int match_cidr(struct compiler *cc, const struct sm_addr *addr, uint8_t prefix,
		      struct idvec *out)
{
	const struct sm_policy_ctx *ctx = cc->ctx;
	struct sm_policy_cidr key = {.addr = *addr, .prefix = 0};
	size_t lo = 0, hi = ctx->ncidrs;
	int ret = 0;

	/* the CIDRs inside a range start at its address and are contiguous in CIDR order */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pol_cmp_cidr(&ctx->cidrs[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = lo; !ret && k < ctx->ncidrs; k++) {
		const struct sm_policy_cidr *c = &ctx->cidrs[k];

		if (!sm_cidr_contains(addr, prefix, &c->addr, addr->family == AF_INET ? 32 : 128))
			break;
		if (c->prefix >= prefix)
			ret = idvec_push(out, c->identity);
	}
	return ret;
}

static int compile_rule(struct compiler *cc, const struct sm_port_range *sel, size_t nsel,
			size_t policy, size_t rule_idx, struct crule *cr)
{
	const struct sm_policy_rule *rule = &cc->set->policies[policy].rules[rule_idx];
	struct sm_port_range *norm = NULL;
	struct idvec srcs = {0};
	size_t nnorm = 0;
	int ret;

	cr->action = rule->action;
	ret = pol_ports_normalize(rule->ports, rule->nports, &norm, &nnorm);
	if (!ret)
		ret = pol_ports_intersect(sel, nsel, norm, nnorm, &cr->ports, &cr->nports,
					  &cr->never);
	free(norm);
	for (size_t f = 0; !ret && f < rule->nfrom; f++) {
		const struct sm_policy_peer *peer = &rule->from[f];

		switch (peer->kind) {
		case SM_POLICY_PEER_ANY:
			cr->any = true;
			break;
		case SM_POLICY_PEER_SPIFFE:
		case SM_POLICY_PEER_PATTERN: {
			struct ref_where where = {policy, (int) rule_idx, peer->line};

			ret = match_spiffe(cc, peer->spiffe, peer->kind == SM_POLICY_PEER_PATTERN,
					   &where, &srcs);
			break;
		}
		case SM_POLICY_PEER_CIDR:
			ret = match_cidr(cc, &peer->addr, peer->prefix, &srcs);
			break;
		}
	}
	idvec_sort_unique(&srcs);
	cr->srcs = srcs.v;
	cr->nsrcs = srcs.n;
	return ret;
}

/* Flatten the rules, expand selectors and sources over the catalog. */
static int compile_prepare(struct compiler *cc)
{
	const struct sm_policy_set *set = cc->set;
	size_t k = 0;
	int ret = 0;

	for (size_t i = 0; i < set->npolicies; i++)
		cc->nrules += set->policies[i].nrules;
	cc->rules = calloc(cc->nrules ? cc->nrules : 1, sizeof(*cc->rules));
	cc->first_rule = calloc(set->npolicies ? set->npolicies : 1, sizeof(*cc->first_rule));
	cc->has_allow = calloc(set->npolicies ? set->npolicies : 1, sizeof(*cc->has_allow));
	if (!cc->rules || !cc->first_rule || !cc->has_allow)
		return -ENOMEM;
	for (size_t i = 0; !ret && i < set->npolicies; i++) {
		const struct sm_policy *pol = &set->policies[i];
		struct sm_port_range *sel = NULL;
		struct idvec dst = {0};
		size_t nsel = 0;

		cc->first_rule[i] = k;
		ret = pol_ports_normalize(pol->ports, pol->nports, &sel, &nsel);
		for (size_t r = 0; !ret && r < pol->nrules; r++) {
			if (pol->rules[r].action == SM_POLICY_RULE_ALLOW)
				cc->has_allow[i] = true;
			ret = compile_rule(cc, sel, nsel, i, r, &cc->rules[k++]);
		}
		free(sel);
		if (!ret) {
			struct ref_where where = {i, -1, pol->selector_line};

			ret = match_spiffe(cc, pol->selector, pol->selector_pattern, &where, &dst);
		}
		idvec_sort_unique(&dst);
		for (size_t d = 0; !ret && d < dst.n; d++) {
			if (cc->ndsts == cc->dsts_cap) {
				size_t cap = cc->dsts_cap ? cc->dsts_cap * 2 : 64;
				struct pair *np = realloc(cc->dsts, cap * sizeof(*np));

				if (!np) {
					ret = -ENOMEM;
					break;
				}
				cc->dsts = np;
				cc->dsts_cap = cap;
			}
			cc->dsts[cc->ndsts++] = (struct pair){dst.v[d], (uint32_t) i};
		}
		free(dst.v);
	}
	if (!ret && cc->ndsts)
		qsort(cc->dsts, cc->ndsts, sizeof(*cc->dsts), cmp_pair);
	return ret;
}

int pol_cmp_entry(const void *a, const void *b)
{
	const struct sm_policy_key *x = &((const struct sm_policy_entry *) a)->key;
	const struct sm_policy_key *y = &((const struct sm_policy_entry *) b)->key;

	if (x->dst_identity != y->dst_identity)
		return x->dst_identity < y->dst_identity ? -1 : 1;
	if (x->src_identity != y->src_identity)
		return x->src_identity < y->src_identity ? -1 : 1;
	return (x->dport > y->dport) - (x->dport < y->dport);
}

/* Entries {src, dst, port} for port in lo..hi (0..0 for the port wildcard). */
static int emit(struct compiler *cc, uint32_t src, uint32_t dst, uint32_t lo, uint32_t hi,
		const struct sm_policy_value *v)
{
	for (uint32_t port = lo; port <= hi; port++) {
		struct sm_policy_entry *e;

		cc->needed++;
		if (cc->max && cc->needed > cc->max)
			continue; /* refused in the end; keep counting for the message */
		if (cc->nentries == cc->cap) {
			size_t cap = cc->cap ? cc->cap * 2 : 256;
			struct sm_policy_entry *ne = realloc(cc->entries, cap * sizeof(*ne));

			if (!ne)
				return -ENOMEM;
			cc->entries = ne;
			cc->cap = cap;
		}
		e = &cc->entries[cc->nentries++];
		memset(e, 0, sizeof(*e));
		e->key.src_identity = src;
		e->key.dst_identity = dst;
		e->key.dport = (uint16_t) port;
		e->key.proto = IPPROTO_TCP;
		e->value = *v;
		e->value.revision = cc->revision;
	}
	return 0;
}

/* A port class: lo..hi behave alike for every rule of one destination. */
struct port_class {
	uint32_t lo, hi;
};

struct port_event {
	uint32_t port;
	int delta;
};

static int cmp_event(const void *a, const void *b)
{
	uint32_t x = ((const struct port_event *) a)->port;
	uint32_t y = ((const struct port_event *) b)->port;

	return (x > y) - (x < y);
}

/*
 * Split the ports named by rules[0..n) into classes whose ports no rule tells
 * apart; ports named by no rule are left out (they behave like port 0).
 */
static int port_classes(const struct compiler *cc, const uint32_t *rules, size_t n,
			struct port_class **out, size_t *nout)
{
	struct port_event *ev;
	size_t nev = 0, k = 0;
	int depth = 0;

	*out = NULL;
	*nout = 0;
	for (size_t i = 0; i < n; i++)
		nev += 2 * cc->rules[rules[i]].nports;
	if (!nev)
		return 0;
	ev = malloc(nev * sizeof(*ev));
	*out = malloc(nev * sizeof(**out));
	if (!ev || !*out) {
		free(ev);
		return -ENOMEM;
	}
	nev = 0;
	for (size_t i = 0; i < n; i++) {
		const struct crule *r = &cc->rules[rules[i]];

		for (size_t j = 0; j < r->nports; j++) {
			ev[nev++] = (struct port_event){r->ports[j].lo, 1};
			ev[nev++] = (struct port_event){(uint32_t) r->ports[j].hi + 1, -1};
		}
	}
	qsort(ev, nev, sizeof(*ev), cmp_event);
	for (size_t i = 0; i < nev;) {
		uint32_t at = ev[i].port;

		while (i < nev && ev[i].port == at)
			depth += ev[i++].delta;
		if (depth > 0 && i < nev)
			(*out)[k++] = (struct port_class){at, ev[i].port - 1};
	}
	free(ev);
	*nout = k;
	return 0;
}

static bool crule_port(const struct crule *r, uint32_t port)
{
	size_t lo = 0, hi = r->nports;

	if (r->never)
		return false;
	if (!r->ports)
		return true;
	if (!port)
		return false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (port < r->ports[mid].lo)
			hi = mid;
		else if (port > r->ports[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/*
 * The verdict for a source that the rules any[] (rules with `any`) and
 * own[] (rules naming it) match, at port (0 = a port no rule names). Both
 * lists ascend, so the first applying rule of each action is the first seen.
 */
static struct sm_policy_value eval_compiled(const struct compiler *cc, const uint32_t *any,
					    size_t nany, const uint32_t *own, size_t nown,
					    uint32_t port, bool has_allow)
{
	uint32_t deny = 0, allow = 0, audit = 0;
	size_t i = 0, j = 0;

	while (i < nany || j < nown) {
		uint32_t r;
		const struct crule *cr;

		if (j == nown || (i < nany && any[i] <= own[j])) {
			r = any[i++];
			if (j < nown && own[j] == r)
				j++;
		} else {
			r = own[j++];
		}
		cr = &cc->rules[r];
		if (!crule_port(cr, port))
			continue;
		if (cr->action == SM_POLICY_RULE_DENY && !deny)
			deny = r + 1;
		else if (cr->action == SM_POLICY_RULE_ALLOW && !allow)
			allow = r + 1;
		else if (cr->action == SM_POLICY_RULE_AUDIT && !audit)
			audit = r + 1;
		if (deny && audit)
			break;
	}
	return verdict(deny, allow, audit, has_allow);
}

/*
 * The entries of one destination (see docs/policy.md, "How it compiles"):
 * candidate keys evaluated, then each dropped when the lookup without it
 * returns the same verdict, from the most general key to the most specific.
 */
static int compile_dst(struct compiler *cc, uint32_t dst, const struct pair *pols, size_t npols)
{
	static const struct sm_policy_value nohit = {.action = SM_POLICY_ALLOW,
						     .reason = SM_POLICY_R_NO_POLICY};
	static const uint32_t no_rules[1];
	struct idvec rules = {0}, any = {0};
	struct sm_policy_value fallback, general, *cls = NULL;
	struct port_class *classes = NULL;
	struct pair *srcs = NULL;
	size_t nclasses = 0, nsrcs = 0;
	bool has_allow = false;
	int ret = 0;

	for (size_t i = 0; !ret && i < npols; i++) {
		size_t first = cc->first_rule[pols[i].idx];
		size_t n = cc->set->policies[pols[i].idx].nrules;

		has_allow |= cc->has_allow[pols[i].idx];
		for (size_t r = first; !ret && r < first + n; r++) {
			ret = idvec_push(&rules, (uint32_t) r);
			nsrcs += cc->rules[r].nsrcs;
			if (!ret && cc->rules[r].any)
				ret = idvec_push(&any, (uint32_t) r);
		}
	}
	if (!ret && nsrcs) {
		size_t k = 0;

		srcs = malloc(nsrcs * sizeof(*srcs));
		if (!srcs)
			ret = -ENOMEM;
		for (size_t i = 0; !ret && i < rules.n; i++) {
			const struct crule *cr = &cc->rules[rules.v[i]];

			for (size_t s = 0; s < cr->nsrcs; s++)
				srcs[k++] = (struct pair){cr->srcs[s], rules.v[i]};
		}
		if (!ret)
			qsort(srcs, nsrcs, sizeof(*srcs), cmp_pair);
	}
	if (!ret)
		ret = port_classes(cc, rules.v, rules.n, &classes, &nclasses);
	if (!ret && nclasses) {
		cls = malloc(nclasses * sizeof(*cls));
		if (!cls)
			ret = -ENOMEM;
	}
	if (ret)
		goto out_free;

	/* 5: the fallback, the verdict when no rule matches; 4: {any, dst, any port} */
	fallback = verdict(0, 0, 0, has_allow);
	if (!pol_value_equal(&fallback, &nohit))
		ret = emit(cc, SM_POLICY_SRC_DEFAULT, dst, 0, 0, &fallback);
	general = eval_compiled(cc, any.v, any.n, no_rules, 0, 0, has_allow);
	if (!ret && !pol_value_equal(&general, &fallback))
		ret = emit(cc, 0, dst, 0, 0, &general);
	/* 3: {any, dst, port} */
	for (size_t c = 0; !ret && c < nclasses; c++) {
		cls[c] = eval_compiled(cc, any.v, any.n, no_rules, 0, classes[c].lo, has_allow);
		if (!pol_value_equal(&cls[c], &general))
			ret = emit(cc, 0, dst, classes[c].lo, classes[c].hi, &cls[c]);
	}
	/* 2 and 1: each named source, every port and then port by port */
	for (size_t i = 0; !ret && i < nsrcs;) {
		uint32_t src = srcs[i].id, own[64], *ownv = own;
		struct sm_policy_value wild;
		size_t n = 0;
		bool keep_wild;

		while (i + n < nsrcs && srcs[i + n].id == src)
			n++;
		if (n > SM_ARRAY_SIZE(own)) {
			ownv = malloc(n * sizeof(*ownv));
			if (!ownv) {
				ret = -ENOMEM;
				break;
			}
		}
		for (size_t k = 0; k < n; k++)
			ownv[k] = srcs[i + k].idx;
		i += n;
		wild = eval_compiled(cc, any.v, any.n, ownv, n, 0, has_allow);
		keep_wild = !pol_value_equal(&wild, &general);
		if (keep_wild)
			ret = emit(cc, src, dst, 0, 0, &wild);
		for (size_t c = 0; !ret && c < nclasses; c++) {
			struct sm_policy_value v =
				eval_compiled(cc, any.v, any.n, ownv, n, classes[c].lo, has_allow);
			const struct sm_policy_value *below = keep_wild ? &wild : &cls[c];

			if (!pol_value_equal(&v, below))
				ret = emit(cc, src, dst, classes[c].lo, classes[c].hi, &v);
		}
		if (ownv != own)
			free(ownv);
	}
out_free:
	free(cls);
	free(classes);
	free(srcs);
	free(any.v);
	free(rules.v);
	return ret;
}

static void compiler_free(struct compiler *cc)
{
	for (size_t i = 0; cc->rules && i < cc->nrules; i++) {
		free(cc->rules[i].ports);
		free(cc->rules[i].srcs);
	}
	free(cc->rules);
	free(cc->first_rule);
	free(cc->has_allow);
	free(cc->dsts);
	free(cc->entries);
	free(cc->unmatched);
	sm_policy_ctx_free(cc->ctx);
}

const char *sm_policy_unmatched_format(const struct sm_policy_unmatched *u, char *buf, size_t len)
{
	char where[32];

	if (u->rule < 0)
		snprintf(where, sizeof(where), "selector");
	else
		snprintf(where, sizeof(where), "rules[%d]", u->rule);
	if (u->pattern)
		snprintf(buf, len,
			 "policy '%s' %s: pattern '%s' matches no workload of the catalog yet",
			 u->policy, where, u->spiffe);
	else
		snprintf(buf, len, "policy '%s' %s: %s '%s' names no workload of the catalog",
			 u->policy, where, u->rule < 0 ? "SPIFFE ID" : "source", u->spiffe);
	return buf;
}

/* Document order: by line, then (for sets merged from several documents) policy name. */
static int cmp_unmatched(const void *a, const void *b)
{
	const struct sm_policy_unmatched *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return strcmp(x->policy, y->policy);
}

/* Move the results into out. 0 or -ENOMEM. */
static int compile_finish(struct compiler *cc, struct sm_policy_compiled *out)
{
	const struct sm_policy_set *set = cc->set;
	size_t k = 0;

	out->rules = calloc(cc->nrules ? cc->nrules : 1, sizeof(*out->rules));
	if (!out->rules)
		return -ENOMEM;
	for (size_t i = 0; i < set->npolicies; i++) {
		for (size_t r = 0; r < set->policies[i].nrules; r++, k++) {
			struct sm_policy_rule_info *info = &out->rules[k];

			memcpy(info->policy, set->policies[i].name, sizeof(info->policy));
			info->rule_index = (unsigned int) r;
			info->action = set->policies[i].rules[r].action;
			info->line = set->policies[i].rules[r].line;
		}
	}
	out->nrules = cc->nrules;
	out->entries = cc->entries;
	out->nentries = cc->nentries;
	cc->entries = NULL;
	out->cidrs = cc->ctx->cidrs;
	out->ncidrs = cc->ctx->ncidrs;
	cc->ctx->cidrs = NULL;
	cc->ctx->ncidrs = 0;
	out->names = cc->ctx->by_id;
	out->nnames = cc->ctx->nids;
	cc->ctx->by_id = NULL;
	cc->ctx->nids = 0;
	if (cc->nunmatched)
		qsort(cc->unmatched, cc->nunmatched, sizeof(*cc->unmatched), cmp_unmatched);
	out->unmatched = cc->unmatched;
	out->nunmatched = cc->nunmatched;
	cc->unmatched = NULL;
	out->unmatched_patterns = (unsigned int) out->nunmatched;
	if (out->nunmatched)
		memcpy(out->unmatched_example, out->unmatched[0].spiffe,
		       sizeof(out->unmatched_example));
	return sm_policy_compiled_index(out);
}

int sm_policy_compile(const struct sm_policy_set *set, const struct sm_catalog *cat,
		      uint32_t revision, size_t max_entries, struct sm_policy_compiled *out,
		      struct sm_error *err)
{
	struct compiler cc = {.set = set, .revision = revision, .max = max_entries};
	int ret;

	memset(out, 0, sizeof(*out));
	out->revision = revision;
	cc.ctx = sm_policy_ctx_new(set, cat);
	ret = cc.ctx ? compile_prepare(&cc) : -ENOMEM;
	for (size_t i = 0; !ret && i < cc.ndsts;) {
		size_t n = 0;

		while (i + n < cc.ndsts && cc.dsts[i + n].id == cc.dsts[i].id)
			n++;
		ret = compile_dst(&cc, cc.dsts[i].id, &cc.dsts[i], n);
		i += n;
	}
	if (!ret && cc.max && cc.needed > cc.max) {
		sm_error_set(err,
			     "the policy needs %zu kernel entries, the map holds %zu (raise "
			     "datapath.max_policy_entries or narrow the rules)",
			     cc.needed, cc.max);
		ret = -E2BIG;
	} else if (!ret) {
		ret = compile_finish(&cc, out);
	}
	if (ret == -ENOMEM)
		sm_error_set(err, "compiling the policy: out of memory");
	compiler_free(&cc);
	if (ret) {
		sm_policy_compiled_free(out);
		out->revision = revision;
	}
	return ret;
}

int sm_policy_recompile(const struct sm_policy_set *set, const struct sm_catalog *cat,
			uint32_t revision, size_t max_entries, struct sm_policy_compiled *out,
			struct sm_error *err)
{
	return sm_policy_compile(set, cat, revision, max_entries, out, err);
}
