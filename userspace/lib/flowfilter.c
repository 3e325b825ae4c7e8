// SPDX-License-Identifier: Apache-2.0
/* Flow filters: parsing "KEY=VALUE|VALUE ..." and matching flow records (flowfilter.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "flowfilter.h"

#define FF_MAX_TERMS 32
#define FF_MAX_ALTS  16

enum ff_key {
	FF_TYPE,
	FF_VERDICT,
	FF_DROP_REASON,
	FF_DIRECTION,
	FF_NODE,
	FF_TRACE_ID,
	FF_IDENTITY,
	FF_WORKLOAD,
	FF_IP,
	FF_PORT,
};

enum ff_side {
	FF_EITHER,
	FF_FROM,
	FF_TO,
};

/* One alternative of a term's value, in the form its key compares. */
struct ff_alt {
	char *text;	     /* exact strings; identity: SPIFFE ID or pattern */
	size_t prefix_len;   /* identity pattern: the bytes before its final '*' */
	bool is_pattern;     /* identity: a prefix ending in '/', then '*' */
	bool is_number;	     /* identity given as a number */
	uint32_t number;     /* ... that number */
	struct sm_addr addr; /* ip */
	uint8_t prefix;	     /* ip: CIDR prefix length */
	uint16_t lo, hi;     /* port range */
};

struct ff_term {
	enum ff_key key;
	enum ff_side side;
	size_t nalts;
	struct ff_alt alts[FF_MAX_ALTS];
};

struct sm_flowfilter {
	size_t nterms;
	struct ff_term terms[FF_MAX_TERMS];
};

static const struct {
	const char *name;
	enum ff_key key;
	enum ff_side side;
} ff_keys[] = {
	{"type", FF_TYPE, FF_EITHER},
	{"verdict", FF_VERDICT, FF_EITHER},
	{"drop_reason", FF_DROP_REASON, FF_EITHER},
	{"direction", FF_DIRECTION, FF_EITHER},
	{"node", FF_NODE, FF_EITHER},
	{"trace_id", FF_TRACE_ID, FF_EITHER},
	{"identity", FF_IDENTITY, FF_EITHER},
	{"from-identity", FF_IDENTITY, FF_FROM},
	{"to-identity", FF_IDENTITY, FF_TO},
	{"workload", FF_WORKLOAD, FF_EITHER},
	{"from-workload", FF_WORKLOAD, FF_FROM},
	{"to-workload", FF_WORKLOAD, FF_TO},
	{"ip", FF_IP, FF_EITHER},
	{"from-ip", FF_IP, FF_FROM},
	{"to-ip", FF_IP, FF_TO},
	{"port", FF_PORT, FF_EITHER},
	{"from-port", FF_PORT, FF_FROM},
	{"to-port", FF_PORT, FF_TO},
};

#define FF_KEY_LIST                                                                                \
	"type, verdict, drop_reason, direction, node, trace_id, [from-|to-]identity, "             \
	"[from-|to-]workload, [from-|to-]ip, [from-|to-]port"

void sm_flowfilter_free(struct sm_flowfilter *f)
{
	if (!f)
		return;
	for (size_t t = 0; t < f->nterms; t++)
		for (size_t a = 0; a < f->terms[t].nalts; a++)
			free(f->terms[t].alts[a].text);
	free(f);
}

/* A closed set of words, checked at parse time so a typo is an error, not "no match". */
static bool in_set(const char *v, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(v, *set) == 0)
			return true;
	return false;
}

static int parse_port(const char *v, struct ff_alt *a)
{
	uint64_t lo, hi;
	const char *dash = strchr(v, '-');
	char buf[16];

	if (!dash)
		return sm_parse_u64(v, 1, 65535, &lo) ? -EINVAL
						      : (a->lo = a->hi = (uint16_t) lo, 0);
	if ((size_t) (dash - v) >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, v, (size_t) (dash - v));
	buf[dash - v] = '\0';
	if (sm_parse_u64(buf, 1, 65535, &lo) || sm_parse_u64(dash + 1, 1, 65535, &hi) || lo > hi)
		return -EINVAL;
	a->lo = (uint16_t) lo;
	a->hi = (uint16_t) hi;
	return 0;
}

static int parse_alt(struct ff_term *t, const char *v, struct sm_error *err, const char *term)
{
	static const char *const types[] = {"conn_start", "conn_update", "conn_end",
					    "denied",	  "lost",	 NULL};
	static const char *const verdicts[] = {"FORWARDED", "DROPPED", "AUDIT", NULL};
	static const char *const directions[] = {"EGRESS", "INGRESS", NULL};
	struct ff_alt *a = &t->alts[t->nalts];
	uint64_t n;
	size_t len = strlen(v);

	memset(a, 0, sizeof(*a));
	if (!len) {
		sm_error_set(err, "filter term '%.80s': an empty value (write KEY=VALUE)", term);
		return -EINVAL;
	}
	switch (t->key) {
	case FF_TYPE:
		if (!in_set(v, types))
			goto bad_word;
		break;
	case FF_VERDICT:
		if (!in_set(v, verdicts))
			goto bad_word;
		break;
	case FF_DIRECTION:
		if (!in_set(v, directions))
			goto bad_word;
		break;
	case FF_IDENTITY:
		if (strncmp(v, "spiffe://", 9) == 0) {
			a->is_pattern = len > 10 && strcmp(v + len - 2, "/*") == 0;
			a->prefix_len = a->is_pattern ? len - 1 : len;
			if (strchr(v, '*') && !a->is_pattern) {
				sm_error_set(err,
					     "filter term '%.80s': '*' may only be the whole last "
					     "path segment (spiffe://example.org/ns/prod/*)",
					     term);
				return -EINVAL;
			}
		} else if (sm_parse_u64(v, 0, UINT32_MAX, &n) == 0) {
			a->is_number = true;
			a->number = (uint32_t) n;
		} else {
			sm_error_set(
				err,
				"filter term '%.80s': '%.80s' is neither a SPIFFE ID "
				"(spiffe://...), a pattern (spiffe://.../*) nor an identity number",
				term, v);
			return -EINVAL;
		}
		break;
	case FF_IP:
		if (strchr(v, '/')) {
			if (sm_cidr_parse(v, &a->addr, &a->prefix) == 0)
				break;
		} else if (sm_addr_parse(v, &a->addr) == 0) {
			a->prefix = a->addr.family == AF_INET ? 32 : 128;
			break;
		}
		sm_error_set(err,
			     "filter term '%.80s': '%.80s' is not an address or a CIDR with its "
			     "host bits zero (10.0.0.1, 10.0.0.0/8, fc00::/7)",
			     term, v);
		return -EINVAL;
	case FF_PORT:
		if (parse_port(v, a)) {
			sm_error_set(
				err,
				"filter term '%.80s': '%.80s' is not a port 1..65535 or a range "
				"A-B with A <= B",
				term, v);
			return -EINVAL;
		}
		break;
	default:
		break;
	}
	a->text = strdup(v);
	if (!a->text)
		return -ENOMEM;
	t->nalts++;
	return 0;
bad_word:
	sm_error_set(err, "filter term '%.80s': unknown value '%.40s' (one of: %s)", term, v,
		     t->key == FF_TYPE	    ? "conn_start, conn_update, conn_end, denied, lost"
		     : t->key == FF_VERDICT ? "FORWARDED, DROPPED, AUDIT"
					    : "EGRESS, INGRESS");
	return -EINVAL;
}

/* One "KEY=V1|V2" term (a NUL-terminated copy the caller owns). */
static int parse_term(struct sm_flowfilter *f, char *term, struct sm_error *err)
{
	char *eq = strchr(term, '='), *v, *bar, whole[128];
	struct ff_term *t;
	size_t k;
	int ret;

	snprintf(whole, sizeof(whole), "%s", term);
	if (!eq) {
		sm_error_set(err, "filter term '%.80s': expected KEY=VALUE (keys: %s)", whole,
			     FF_KEY_LIST);
		return -EINVAL;
	}
	*eq = '\0';
	for (k = 0; k < SM_ARRAY_SIZE(ff_keys); k++)
		if (strcmp(term, ff_keys[k].name) == 0)
			break;
	if (k == SM_ARRAY_SIZE(ff_keys)) {
		sm_error_set(err, "filter term '%.80s': unknown key '%.40s' (keys: %s)", whole,
			     term, FF_KEY_LIST);
		return -EINVAL;
	}
	if (f->nterms == FF_MAX_TERMS) {
		sm_error_set(err, "a filter has at most %d terms", FF_MAX_TERMS);
		return -EINVAL;
	}
	t = &f->terms[f->nterms++];
	t->key = ff_keys[k].key;
	t->side = ff_keys[k].side;
	for (v = eq + 1;; v = bar + 1) {
		bar = strchr(v, '|');
		if (bar)
			*bar = '\0';
		if (t->nalts == FF_MAX_ALTS) {
			sm_error_set(err, "filter term '%.80s': at most %d alternatives", whole,
				     FF_MAX_ALTS);
			return -EINVAL;
		}
		ret = parse_alt(t, v, err, whole);
		if (ret)
			return ret;
		if (!bar)
			return 0;
	}
}

int sm_flowfilter_parse(const char *text, struct sm_flowfilter **out, struct sm_error *err)
{
	struct sm_flowfilter *f = calloc(1, sizeof(*f));
	char *copy = strdup(text ? text : ""), *save = NULL, *tok;
	int ret = 0;

	*out = NULL;
	if (!f || !copy) {
		ret = -ENOMEM;
		sm_error_set(err, "out of memory parsing a flow filter");
		goto out;
	}
	for (tok = strtok_r(copy, " \t", &save); tok && !ret; tok = strtok_r(NULL, " \t", &save))
		ret = parse_term(f, tok, err);
	if (ret == -ENOMEM)
		sm_error_set(err, "out of memory parsing a flow filter");
out:
	free(copy);
	if (ret) {
		sm_flowfilter_free(f);
		return ret;
	}
	*out = f;
	return 0;
}

static bool alt_matches_endpoint(enum ff_key key, const struct ff_alt *a,
				 const struct sm_flow_endpoint *ep)
{
	switch (key) {
	case FF_IDENTITY:
		if (a->is_number)
			return ep->identity == a->number;
		if (a->is_pattern)
			return strncmp(sm_str(ep->spiffe_id), a->text, a->prefix_len) == 0 &&
			       ep->spiffe_id[a->prefix_len] != '\0';
		return strcmp(sm_str(ep->spiffe_id), a->text) == 0;
	case FF_WORKLOAD:
		return strcmp(sm_str(ep->workload), a->text) == 0;
	case FF_IP:
		return sm_cidr_contains(&a->addr, a->prefix, &ep->addr,
					ep->addr.family == AF_INET ? 32 : 128);
	case FF_PORT:
		return ep->port >= a->lo && ep->port <= a->hi;
	default:
		return false;
	}
}

static bool alt_matches(const struct ff_term *t, const struct ff_alt *a,
			const struct sm_flow_match *r)
{
	switch (t->key) {
	case FF_TYPE:
		return strcmp(sm_flow_record_type_name(r->type), a->text) == 0;
	case FF_VERDICT:
		return r->type != SM_REC_LOST && strcmp(sm_verdict_name(r->verdict), a->text) == 0;
	case FF_DROP_REASON:
		return strcmp(sm_str(r->drop_reason), a->text) == 0;
	case FF_DIRECTION:
		return r->type != SM_REC_LOST &&
		       strcmp(sm_direction_name(r->direction), a->text) == 0;
	case FF_NODE:
		return strcmp(sm_str(r->node), a->text) == 0;
	case FF_TRACE_ID:
		return strcmp(r->trace_id, a->text) == 0;
	default:
		break;
	}
	/* endpoint keys: lost records have no endpoints */
	if (r->type == SM_REC_LOST)
		return false;
	if (t->side != FF_TO && alt_matches_endpoint(t->key, a, &r->source))
		return true;
	return t->side != FF_FROM && alt_matches_endpoint(t->key, a, &r->destination);
}

void sm_flow_match_of(struct sm_flow_match *m, const struct sm_flow_record *r)
{
	m->type = r->type;
	m->verdict = r->verdict;
	m->direction = r->direction;
	m->node = r->node;
	m->drop_reason = r->drop_reason;
	m->source = r->source;
	m->destination = r->destination;
	memcpy(m->trace_id, r->trace_id, sizeof(m->trace_id));
}

bool sm_flowfilter_match_view(const struct sm_flowfilter *f, const struct sm_flow_match *m)
{
	for (size_t t = 0; t < f->nterms; t++) {
		bool any = false;

		for (size_t a = 0; a < f->terms[t].nalts && !any; a++)
			any = alt_matches(&f->terms[t], &f->terms[t].alts[a], m);
		if (!any)
			return false;
	}
	return true;
}

bool sm_flowfilter_match_any_view(struct sm_flowfilter *const *fs, size_t n,
				  const struct sm_flow_match *m)
{
	for (size_t i = 0; i < n; i++)
		if (sm_flowfilter_match_view(fs[i], m))
			return true;
	return false;
}

bool sm_flowfilter_match(const struct sm_flowfilter *f, const struct sm_flow_record *r)
{
	struct sm_flow_match m;

	sm_flow_match_of(&m, r);
	return sm_flowfilter_match_view(f, &m);
}

bool sm_flowfilter_match_any(struct sm_flowfilter *const *fs, size_t n,
			     const struct sm_flow_record *r)
{
	struct sm_flow_match m;

	if (!n)
		return false;
	sm_flow_match_of(&m, r);
	return sm_flowfilter_match_any_view(fs, n, &m);
}
