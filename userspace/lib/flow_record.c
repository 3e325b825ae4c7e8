// SPDX-License-Identifier: Apache-2.0
/* Flow records to and from one-line JSON (schema in docs/flow-schema.md), with json-c. */
#include "flow_record.h"

#include <errno.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

static const char *const type_names[SM_REC_TYPE_MAX] = {
	[SM_REC_CONN_START] = "conn_start",
	[SM_REC_CONN_UPDATE] = "conn_update",
	[SM_REC_CONN_END] = "conn_end",
	[SM_REC_DENIED] = "denied",
	[SM_REC_LOST] = "lost",
};
static const char *const verdict_names[SM_VERDICT_MAX] = {
	[SM_VERDICT_FORWARDED] = "FORWARDED",
	[SM_VERDICT_DROPPED] = "DROPPED",
	[SM_VERDICT_AUDIT] = "AUDIT",
};
static const char *const direction_names[SM_DIR_MAX] = {
	[SM_DIR_EGRESS] = "EGRESS",
	[SM_DIR_INGRESS] = "INGRESS",
};
/* "reporter", indexed by direction: the connecting socket is the source's */
static const char *const reporter_names[SM_DIR_MAX] = {
	[SM_DIR_EGRESS] = "source",
	[SM_DIR_INGRESS] = "destination",
};

const char *sm_flow_record_type_name(enum sm_flow_record_type t)
{
	return (unsigned int) t < SM_REC_TYPE_MAX ? type_names[t] : "unknown";
}

const char *sm_verdict_name(enum sm_verdict v)
{
	return (unsigned int) v < SM_VERDICT_MAX ? verdict_names[v] : "unknown";
}

const char *sm_direction_name(enum sm_direction d)
{
	return (unsigned int) d < SM_DIR_MAX ? direction_names[d] : "unknown";
}

/* ---- encoding ---- */

/*
 * One encoder fills a json-c tree two ways. Building (update false) makes
 * every member new. Updating (update true) sets the values of a tree built
 * before for a record of the same shape, in place: the members, their order
 * and the line json-c prints are then what building would make, without the
 * allocations (json-c objects, their hash tables, the print buffer) that
 * were half of a record's cost. A member the tree lacks, or of another type,
 * stops an update with -ESTALE; so does a tree with members this record does
 * not set (counted: touched against the tree's total). The caller then
 * builds afresh: a stale tree is never printed.
 */
struct enc {
	bool update;
	unsigned int touched; /* members added or set so far */
};

/*
 * json_object_object_add_ex() takes ownership of the value even on failure,
 * and a NULL value (allocation failed) is caught here, so each helper only
 * reports whether it could add. Every key is a string literal the encoder
 * adds once per object: json-c neither copies it nor looks for an earlier
 * member of that name (those copies were a tenth of a record's encoding).
 */
static int add(struct enc *e, struct json_object *o, const char *key, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add_ex(
		    o, key, v, JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_ADD_CONSTANT_KEY)) {
		json_object_put(v);
		return -ENOMEM;
	}
	e->touched++;
	return 0;
}

/* Updating: the member key of o, which must exist with type t. */
static struct json_object *member(struct enc *e, struct json_object *o, const char *key,
				  json_type t)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, t))
		return NULL;
	e->touched++;
	return v;
}

static int add_str(struct enc *e, struct json_object *o, const char *key, const char *s)
{
	struct json_object *v;

	if (!e->update)
		return add(e, o, key, json_object_new_string(s));
	v = member(e, o, key, json_type_string);
	if (!v)
		return -ESTALE;
	return json_object_set_string(v, s) ? 0 : -ENOMEM;
}

/* Counters and ids are unsigned; json-c prints them exactly as uint64. */
static int add_u64(struct enc *e, struct json_object *o, const char *key, uint64_t n)
{
	struct json_object *v;

	if (!e->update)
		return add(e, o, key, json_object_new_uint64(n));
	v = member(e, o, key, json_type_int);
	if (!v)
		return -ESTALE;
	return json_object_set_uint64(v, n) ? 0 : -ENOMEM;
}

static int add_bool(struct enc *e, struct json_object *o, const char *key, bool b)
{
	struct json_object *v;

	if (!e->update)
		return add(e, o, key, json_object_new_boolean(b));
	v = member(e, o, key, json_type_boolean);
	if (!v)
		return -ESTALE;
	return json_object_set_boolean(v, b) ? 0 : -ENOMEM;
}

/* The object member key of o (made when building); NULL with *ret set when not. */
static struct json_object *add_obj(struct enc *e, struct json_object *o, const char *key, int *ret)
{
	struct json_object *sub;

	if (*ret)
		return NULL;
	if (e->update) {
		sub = member(e, o, key, json_type_object);
		if (!sub)
			*ret = -ESTALE;
		return sub;
	}
	sub = json_object_new_object();
	*ret = add(e, o, key, sub); /* on failure add() put it */
	return *ret ? NULL : sub;
}

static int add_time(struct enc *e, struct json_object *o, const char *key, int64_t ns)
{
	char buf[40];

	if (ns < 0)
		return -EINVAL;
	return add_str(e, o, key, sm_format_time_ns(ns, buf, sizeof(buf)));
}

/*
 * A string field held by pointer (intern.h): omitted when NULL or "";
 * longer than the schema allows (max - 1 bytes) is -EINVAL.
 */
static int add_istr(struct enc *e, struct json_object *o, const char *key, const char *s,
		    size_t max)
{
	if (sm_str_empty(s))
		return 0;
	if (strnlen(s, max) >= max)
		return -EINVAL;
	return add_str(e, o, key, s);
}

static bool fits(const char *s, size_t max)
{
	return !s || strnlen(s, max) < max;
}

/* The endpoint's strings are within the schema's lengths. */
static bool endpoint_strings_fit(const struct sm_flow_endpoint *ep)
{
	return fits(ep->spiffe_id, SM_FLOW_SPIFFE_MAX) && fits(ep->workload, SM_FLOW_NAME_MAX) &&
	       fits(ep->node, SM_FLOW_NAME_MAX) && fits(ep->cgroup, SM_FLOW_CGROUP_MAX);
}

static int encode_endpoint(struct enc *e, struct json_object *parent, const char *key,
			   const struct sm_flow_endpoint *ep)
{
	char buf[64];
	int ret = 0;
	struct json_object *o = add_obj(e, parent, key, &ret);

	ret = ret ?: add_str(e, o, "ip", sm_addr_format(&ep->addr, buf, sizeof(buf)));
	ret = ret ?: add_u64(e, o, "port", ep->port);
	ret = ret ?: add_u64(e, o, "identity", ep->identity);
	ret = ret ?: add_istr(e, o, "spiffe_id", ep->spiffe_id, SM_FLOW_SPIFFE_MAX);
	ret = ret ?: add_istr(e, o, "workload", ep->workload, SM_FLOW_NAME_MAX);
	ret = ret ?: add_istr(e, o, "node", ep->node, SM_FLOW_NAME_MAX);
	ret = ret ?: add_istr(e, o, "cgroup", ep->cgroup, SM_FLOW_CGROUP_MAX);
	return ret;
}

static int encode_counters(struct enc *e, struct json_object *parent, const char *key,
			   const struct sm_flow_counters *c, bool with_redirected,
			   uint64_t redirected)
{
	int ret = 0;
	struct json_object *o = add_obj(e, parent, key, &ret);

	ret = ret ?: add_u64(e, o, "bytes_sent", c->bytes_sent);
	ret = ret ?: add_u64(e, o, "bytes_received", c->bytes_received);
	ret = ret ?: add_u64(e, o, "segs_in", c->segs_in);
	ret = ret ?: add_u64(e, o, "segs_out", c->segs_out);
	if (!ret && with_redirected)
		ret = add_u64(e, o, "redirected_bytes_sent", redirected);
	return ret;
}

static int add_str_nonempty(struct enc *e, struct json_object *o, const char *key, const char *s,
			    size_t size)
{
	if (!memchr(s, '\0', size))
		return -EINVAL;
	return s[0] ? add_str(e, o, key, s) : 0;
}

static int encode_tls(struct enc *e, struct json_object *o, const struct sm_flow_tls *t)
{
	int ret = 0;
	struct json_object *sub = add_obj(e, o, "tls", &ret);

	ret = ret ?: add_str_nonempty(e, sub, "mode", t->mode, sizeof(t->mode));
	ret = ret ?: add_bool(e, sub, "encrypted", t->encrypted);
	ret = ret ?: add_str_nonempty(e, sub, "version", t->version, sizeof(t->version));
	ret = ret ?: add_str_nonempty(e, sub, "cipher", t->cipher, sizeof(t->cipher));
	ret = ret ?: add_istr(e, sub, "local_spiffe_id", t->local_spiffe_id, SM_FLOW_SPIFFE_MAX);
	ret = ret ?: add_istr(e, sub, "peer_spiffe_id", t->peer_spiffe_id, SM_FLOW_SPIFFE_MAX);
	if (!ret && t->handshake_us)
		ret = add_u64(e, sub, "handshake_us", t->handshake_us);
	ret = ret ?: add_str_nonempty(e, sub, "failure", t->failure, sizeof(t->failure));
	return ret;
}

static int encode_policy(struct enc *e, struct json_object *o, const struct sm_flow_policy *p)
{
	int ret = 0;
	struct json_object *sub = add_obj(e, o, "policy", &ret), *audit;

	ret = ret ?: add_u64(e, sub, "revision", p->revision);
	ret = ret ?: add_str_nonempty(e, sub, "match", p->match, sizeof(p->match));
	ret = ret ?: add_str_nonempty(e, sub, "name", p->name, sizeof(p->name));
	if (!ret && p->name[0] && p->rule >= 0)
		ret = add_u64(e, sub, "rule", (uint64_t) p->rule);
	if (!ret && p->audit_name[0]) {
		audit = add_obj(e, sub, "audit", &ret);
		ret = ret
			      ?: add_str_nonempty(e, audit, "name", p->audit_name,
						  sizeof(p->audit_name));
		if (!ret && p->audit_rule >= 0)
			ret = add_u64(e, audit, "rule", (uint64_t) p->audit_rule);
	}
	return ret;
}

static int encode_conn(struct enc *e, struct json_object *o, const struct sm_flow_record *r)
{
	struct json_object *sub;
	int ret;

	if ((unsigned int) r->verdict >= SM_VERDICT_MAX ||
	    (unsigned int) r->direction >= SM_DIR_MAX)
		return -EINVAL;
	if ((r->source.addr.family != AF_INET && r->source.addr.family != AF_INET6) ||
	    r->destination.addr.family != r->source.addr.family)
		return -EINVAL;
	/* the fixed-size strings must be terminated */
	if (!memchr(r->drop_reason, '\0', sizeof(r->drop_reason)) ||
	    !endpoint_strings_fit(&r->source) || !endpoint_strings_fit(&r->destination))
		return -EINVAL;

	ret = add_str(e, o, "verdict", verdict_names[r->verdict]);
	if (!ret && r->drop_reason[0])
		ret = add_str(e, o, "drop_reason", r->drop_reason);
	ret = ret ?: add_str(e, o, "traffic_direction", direction_names[r->direction]);
	/* which end wrote it: the connecting socket's node is the source's */
	ret = ret ?: add_str(e, o, "reporter", reporter_names[r->direction]);
	sub = add_obj(e, o, "ip", &ret);
	ret = ret ?: add_str(e, sub, "family", r->source.addr.family == AF_INET ? "IPv4" : "IPv6");
	sub = add_obj(e, o, "l4", &ret);
	ret = ret ?: add_str(e, sub, "protocol", "TCP");
	ret = ret ?: encode_endpoint(e, o, "source", &r->source);
	ret = ret ?: encode_endpoint(e, o, "destination", &r->destination);
	ret = ret ?: add_bool(e, o, "captured", r->captured);
	ret = ret ?: add_bool(e, o, "same_node", r->same_node);
	ret = ret ?: add_bool(e, o, "redirected", r->redirected);
	ret = ret ?: add_u64(e, o, "socket_cookie", r->cookie);
	ret = ret ?: add_u64(e, o, "cgroup_id", r->cgroup_id);
	ret = ret ?: add_time(e, o, "start_time", r->start_ns);
	ret = ret ?: add_u64(e, o, "duration_us", r->duration_us);
	ret = ret ?: encode_counters(e, o, "counters", &r->total, true, r->redirected_bytes);
	ret = ret ?: encode_counters(e, o, "delta", &r->delta, false, 0);
	sub = add_obj(e, o, "tcp", &ret);
	ret = ret ?: add_u64(e, sub, "srtt_us", r->srtt_us);
	ret = ret ?: add_u64(e, sub, "total_retrans", r->total_retrans);
	ret = ret ?: add_str_nonempty(e, o, "trace_id", r->trace_id, sizeof(r->trace_id));
	if (!ret && r->tls.present)
		ret = encode_tls(e, o, &r->tls);
	if (!ret && r->policy.present)
		ret = encode_policy(e, o, &r->policy);
	return ret;
}

/* Lost records are rare and their list varies: always built. */
static int encode_lost_sources(struct enc *e, struct json_object *lost,
			       const struct sm_flow_record *r)
{
	struct json_object *arr, *entry;
	char buf[64];
	int ret;

	if (!r->nlost_sources)
		return 0;
	if (r->nlost_sources > SM_FLOW_LOST_SOURCES_MAX)
		return -EINVAL;
	arr = json_object_new_array();
	ret = add(e, lost, "rate_limited_sources", arr);
	for (unsigned int i = 0; !ret && i < r->nlost_sources; i++) {
		const struct sm_flow_lost_source *ls = &r->lost_sources[i];

		entry = json_object_new_object();
		if (!entry || json_object_array_add(arr, entry)) {
			json_object_put(entry);
			return -ENOMEM;
		}
		ret = add_u64(e, entry, "identity", ls->identity);
		if (!ret && ls->addr.family) {
			if (ls->addr.family != AF_INET && ls->addr.family != AF_INET6)
				return -EINVAL;
			ret = add_str(e, entry, "ip", sm_addr_format(&ls->addr, buf, sizeof(buf)));
		}
		ret = ret ?: add_u64(e, entry, "suppressed", ls->suppressed);
	}
	return ret;
}

static int encode_lost(struct enc *e, struct json_object *o, const struct sm_flow_record *r)
{
	int ret = 0;
	struct json_object *sub = add_obj(e, o, "lost", &ret);

	ret = ret ?: add_u64(e, sub, "ringbuf", r->lost_ringbuf);
	ret = ret ?: add_u64(e, sub, "orig_dst", r->lost_orig_dst);
	ret = ret ?: add_u64(e, sub, "storage", r->lost_storage);
	ret = ret ?: add_u64(e, sub, "sockhash", r->lost_sockhash);
	ret = ret ?: add_u64(e, sub, "queue", r->lost_queue);
	ret = ret ?: add_u64(e, sub, "rate_limited", r->lost_rate_limited);
	ret = ret ?: add_u64(e, sub, "write_failed", r->lost_write_failed);
	return ret ?: encode_lost_sources(e, sub, r);
}

/* Fill o (built or updated, as e says) from r; 0 or -EINVAL/-ENOMEM/-ESTALE. */
static int encode_record(struct enc *e, struct json_object *o, const struct sm_flow_record *r)
{
	int ret;

	if ((unsigned int) r->type >= SM_REC_TYPE_MAX || !memchr(r->node, '\0', sizeof(r->node)))
		return -EINVAL;
	ret = add_u64(e, o, "version", SM_FLOW_SCHEMA_VERSION);
	ret = ret ?: add_str(e, o, "type", type_names[r->type]);
	ret = ret ?: add_time(e, o, "time", r->time_ns);
	ret = ret ?: add_str(e, o, "node", r->node);
	if (!ret)
		ret = r->type == SM_REC_LOST ? encode_lost(e, o, r) : encode_conn(e, o, r);
	return ret;
}

/* A new tree for r, and the number of its members (nested ones included). */
static struct json_object *build(const struct sm_flow_record *r, unsigned int *members)
{
	struct enc e = {.update = false};
	struct json_object *o = json_object_new_object();
	int ret;

	if (!o) {
		errno = ENOMEM;
		return NULL;
	}
	ret = encode_record(&e, o, r);
	if (ret) {
		json_object_put(o);
		errno = -ret;
		return NULL;
	}
	if (members)
		*members = e.touched;
	return o;
}

struct json_object *sm_flow_record_to_json(const struct sm_flow_record *r)
{
	return build(r, NULL);
}

int sm_flow_record_encode(const struct sm_flow_record *r, char **out)
{
	const char *text;
	size_t len;

	*out = NULL;
	text = sm_flow_record_line(r, &len);
	if (!text)
		return -errno;
	*out = strdup(text);
	return *out ? 0 : -ENOMEM;
}

/*
 * The trees sm_flow_record_line() keeps, per thread: one per shape of the
 * records it saw last (which optional members they have), so a record finds
 * its own without a try at each. A shape names no tree for sure: the update
 * itself checks (struct enc).
 */
#define LINE_TREES 8

struct line_tree {
	struct json_object *o; /* NULL: unused */
	uint64_t shape;
	unsigned int members;
	uint64_t used; /* when last used, for replacing the least recent */
};

struct line_trees {
	struct line_tree t[LINE_TREES];
	uint64_t clock;
	struct json_object *lost; /* the last lost record's, built anew each time */
};

static pthread_key_t trees_key;
static pthread_once_t trees_once = PTHREAD_ONCE_INIT;
static int trees_key_err;

static void trees_free(void *p)
{
	struct line_trees *lt = p;

	for (size_t i = 0; lt && i < LINE_TREES; i++)
		json_object_put(lt->t[i].o);
	if (lt)
		json_object_put(lt->lost);
	free(lt);
}

static void trees_key_make(void)
{
	trees_key_err = pthread_key_create(&trees_key, trees_free);
}

static uint64_t endpoint_shape(const struct sm_flow_endpoint *ep)
{
	return (uint64_t) !sm_str_empty(ep->spiffe_id) |
	       (uint64_t) !sm_str_empty(ep->workload) << 1 |
	       (uint64_t) !sm_str_empty(ep->node) << 2 | (uint64_t) !sm_str_empty(ep->cgroup) << 3;
}

/* Which optional members r has: a hint for finding its tree, checked by the update. */
static uint64_t record_shape(const struct sm_flow_record *r)
{
	const struct sm_flow_tls *t = &r->tls;
	const struct sm_flow_policy *p = &r->policy;

	return (uint64_t) (r->drop_reason[0] != 0) | endpoint_shape(&r->source) << 1 |
	       endpoint_shape(&r->destination) << 5 | (uint64_t) (r->trace_id[0] != 0) << 9 |
	       (uint64_t) t->present << 10 | (uint64_t) (t->mode[0] != 0) << 11 |
	       (uint64_t) (t->version[0] != 0) << 12 | (uint64_t) (t->cipher[0] != 0) << 13 |
	       (uint64_t) !sm_str_empty(t->local_spiffe_id) << 14 |
	       (uint64_t) !sm_str_empty(t->peer_spiffe_id) << 15 |
	       (uint64_t) (t->handshake_us != 0) << 16 | (uint64_t) (t->failure[0] != 0) << 17 |
	       (uint64_t) p->present << 18 | (uint64_t) (p->match[0] != 0) << 19 |
	       (uint64_t) (p->name[0] != 0) << 20 | (uint64_t) (p->rule >= 0) << 21 |
	       (uint64_t) (p->audit_name[0] != 0) << 22 | (uint64_t) (p->audit_rule >= 0) << 23;
}

static const char *print(struct json_object *o, size_t *len)
{
	const char *text = json_object_to_json_string_length(o, SM_FLOW_JSON_FLAGS, len);

	if (!text)
		errno = ENOMEM;
	return text;
}

const char *sm_flow_record_line(const struct sm_flow_record *r, size_t *len)
{
	struct line_trees *lt;
	struct line_tree *slot = NULL, *oldest = NULL;
	struct json_object *o;
	uint64_t shape;
	unsigned int members;

	pthread_once(&trees_once, trees_key_make);
	lt = trees_key_err ? NULL : pthread_getspecific(trees_key);
	if (!lt && !trees_key_err) {
		lt = calloc(1, sizeof(*lt));
		if (lt && pthread_setspecific(trees_key, lt)) {
			free(lt);
			lt = NULL;
		}
	}
	if (!lt) {
		errno = trees_key_err ? trees_key_err : ENOMEM;
		return NULL;
	}
	if (r->type == SM_REC_LOST) {
		json_object_put(lt->lost);
		lt->lost = build(r, NULL);
		return lt->lost ? print(lt->lost, len) : NULL;
	}
	shape = record_shape(r) << 3 | (uint64_t) r->type;
	for (size_t i = 0; i < LINE_TREES; i++) {
		struct line_tree *t = &lt->t[i];

		if (t->o && t->shape == shape)
			slot = t;
		if (!oldest || !t->o || (oldest->o && t->used < oldest->used))
			oldest = t;
	}
	if (slot) {
		struct enc e = {.update = true};
		int ret = encode_record(&e, slot->o, r);

		if (!ret && e.touched == slot->members) {
			slot->used = ++lt->clock;
			return print(slot->o, len);
		}
		if (ret && ret != -ESTALE) {
			errno = -ret;
			return NULL;
		}
		oldest = slot; /* a stale tree: this record's replaces it */
	}
	o = build(r, &members);
	if (!o)
		return NULL;
	json_object_put(oldest->o);
	*oldest =
		(struct line_tree){.o = o, .shape = shape, .members = members, .used = ++lt->clock};
	return print(o, len);
}

/* ---- field masks ---- */

/*
 * Every field path of the schema (docs/flow-schema.md), for checking a
 * configured mask: a name missing here is most likely a typo.
 */
static const char *const known_fields[] = {
	"version",
	"type",
	"time",
	"node",
	"verdict",
	"drop_reason",
	"traffic_direction",
	"reporter",
	"ip",
	"ip.family",
	"l4",
	"l4.protocol",
	"source",
	"source.ip",
	"source.port",
	"source.identity",
	"source.spiffe_id",
	"source.workload",
	"source.node",
	"source.cgroup",
	"destination",
	"destination.ip",
	"destination.port",
	"destination.identity",
	"destination.spiffe_id",
	"destination.workload",
	"destination.node",
	"destination.cgroup",
	"captured",
	"same_node",
	"redirected",
	"socket_cookie",
	"cgroup_id",
	"start_time",
	"duration_us",
	"counters",
	"counters.bytes_sent",
	"counters.bytes_received",
	"counters.segs_in",
	"counters.segs_out",
	"counters.redirected_bytes_sent",
	"delta",
	"delta.bytes_sent",
	"delta.bytes_received",
	"delta.segs_in",
	"delta.segs_out",
	"tcp",
	"tcp.srtt_us",
	"tcp.total_retrans",
	"trace_id",
	"tls",
	"tls.mode",
	"tls.encrypted",
	"tls.version",
	"tls.cipher",
	"tls.local_spiffe_id",
	"tls.peer_spiffe_id",
	"tls.handshake_us",
	"tls.failure",
	"policy",
	"policy.revision",
	"policy.match",
	"policy.name",
	"policy.rule",
	"policy.audit",
	"policy.audit.name",
	"policy.audit.rule",
};

bool sm_flow_field_known(const char *path)
{
	for (size_t i = 0; i < SM_ARRAY_SIZE(known_fields); i++)
		if (strcmp(path, known_fields[i]) == 0)
			return true;
	return false;
}

/* How the mask paths relate to the member key of an object at prefix ("" or "a.b."). */
enum mask_hit {
	MASK_NONE,  /* no path names it: drop the member */
	MASK_WHOLE, /* a path names it: keep it whole */
	MASK_INNER, /* paths name members of it: keep those */
};

static enum mask_hit mask_lookup(const char *const *paths, size_t n, const char *prefix,
				 const char *key)
{
	size_t plen = strlen(prefix), klen = strlen(key);
	enum mask_hit hit = MASK_NONE;

	for (size_t i = 0; i < n; i++) {
		const char *p = paths[i];

		if (strncmp(p, prefix, plen) != 0 || strncmp(p + plen, key, klen) != 0)
			continue;
		if (p[plen + klen] == '\0')
			return MASK_WHOLE;
		if (p[plen + klen] == '.')
			hit = MASK_INNER;
	}
	return hit;
}

static bool always_kept(const char *key)
{
	return strcmp(key, "version") == 0 || strcmp(key, "type") == 0 ||
	       strcmp(key, "time") == 0 || strcmp(key, "node") == 0;
}

static int mask_object(struct json_object *o, const char *const *paths, size_t n,
		       const char *prefix)
{
	/* collected first: deleting members while iterating a json-c object is not safe */
	const char *drop[64];
	char sub[256];
	size_t ndrop = 0;
	int ret;

	json_object_object_foreach(o, key, val)
	{
		enum mask_hit hit = mask_lookup(paths, n, prefix, key);

		if ((!prefix[0] && always_kept(key)) || hit == MASK_WHOLE)
			continue;
		if (hit == MASK_INNER && json_object_is_type(val, json_type_object)) {
			if ((size_t) snprintf(sub, sizeof(sub), "%s%s.", prefix, key) >=
			    sizeof(sub))
				return -EINVAL;
			ret = mask_object(val, paths, n, sub);
			if (ret)
				return ret;
			continue;
		}
		if (ndrop == SM_ARRAY_SIZE(drop))
			return -EINVAL;
		drop[ndrop++] = key;
	}
	for (size_t i = 0; i < ndrop; i++)
		json_object_object_del(o, drop[i]);
	return 0;
}

int sm_flow_json_mask(struct json_object *o, const char *const *paths, size_t n)
{
	if (!json_object_is_type(o, json_type_object))
		return -EINVAL;
	return n ? mask_object(o, paths, n, "") : 0;
}

/* ---- decoding: every helper returns 0 or -EINVAL ---- */

static struct json_object *get(struct json_object *o, const char *key, json_type type)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

static int get_u64(struct json_object *o, const char *key, uint64_t max, uint64_t *out)
{
	struct json_object *v = get(o, key, json_type_int);

	/* get_int64 is negative only for negative numbers (large unsigned ones clamp up) */
	if (!v || json_object_get_int64(v) < 0)
		return -EINVAL;
	*out = json_object_get_uint64(v);
	return *out <= max ? 0 : -EINVAL;
}

static int get_u32(struct json_object *o, const char *key, uint32_t *out)
{
	uint64_t v;

	if (get_u64(o, key, UINT32_MAX, &v))
		return -EINVAL;
	*out = (uint32_t) v;
	return 0;
}

static int get_bool(struct json_object *o, const char *key, bool *out)
{
	struct json_object *v = get(o, key, json_type_boolean);

	if (!v)
		return -EINVAL;
	*out = json_object_get_boolean(v);
	return 0;
}

/* A string that fits size with its NUL; absent is an error only when required. */
static int get_str(struct json_object *o, const char *key, bool required, char *out, size_t size)
{
	struct json_object *v;

	out[0] = '\0';
	if (!json_object_object_get_ex(o, key, &v))
		return required ? -EINVAL : 0;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	/* json-c strings may hold NUL; we cannot: reject rather than truncate */
	if ((size_t) json_object_get_string_len(v) != strlen(json_object_get_string(v)))
		return -EINVAL;
	return sm_strlcpy(out, json_object_get_string(v), size) ? -EINVAL : 0;
}

/*
 * An optional string field held by pointer: absent leaves *out NULL; else
 * the interned copy. As get_str(): a NUL inside, or max bytes or more, is
 * -EINVAL.
 */
static int get_istr(struct json_object *o, const char *key, size_t max, const char **out)
{
	struct json_object *v;
	const char *text;
	size_t n;

	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	text = json_object_get_string(v);
	n = (size_t) json_object_get_string_len(v);
	if (n != strlen(text) || n >= max)
		return -EINVAL;
	*out = sm_intern(text);
	return 0;
}

static int get_enum(struct json_object *o, const char *key, const char *const *names, int n,
		    int *out)
{
	char buf[32];

	if (get_str(o, key, true, buf, sizeof(buf)))
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (names[i] && strcmp(buf, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Exactly what sm_format_time_ns writes: "YYYY-MM-DDTHH:MM:SS.ffffffZ". */
static int get_time(struct json_object *o, const char *key, int64_t *out)
{
	char buf[32], again[40];
	struct tm tm = {0};
	time_t sec;

	if (get_str(o, key, true, buf, sizeof(buf)) || strlen(buf) != 27)
		return -EINVAL;
	if (buf[4] != '-' || buf[7] != '-' || buf[10] != 'T' || buf[13] != ':' || buf[16] != ':' ||
	    buf[19] != '.' || buf[26] != 'Z')
		return -EINVAL;
	if (!all_digits(buf, 4) || !all_digits(buf + 5, 2) || !all_digits(buf + 8, 2) ||
	    !all_digits(buf + 11, 2) || !all_digits(buf + 14, 2) || !all_digits(buf + 17, 2) ||
	    !all_digits(buf + 20, 6))
		return -EINVAL;
	tm.tm_year = atoi(buf) - 1900;
	tm.tm_mon = atoi(buf + 5) - 1;
	tm.tm_mday = atoi(buf + 8);
	tm.tm_hour = atoi(buf + 11);
	tm.tm_min = atoi(buf + 14);
	tm.tm_sec = atoi(buf + 17);
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -EINVAL;
	sec = timegm(&tm);
	/* before 1970 is never written; past 2262 does not fit int64 ns */
	if (sec < 0 || sec > INT64_MAX / 1000000000LL - 1)
		return -EINVAL;
	*out = (int64_t) sec * 1000000000LL + (int64_t) atoi(buf + 20) * 1000;
	/* timegm() normalizes "02-31" into March: only a date that formats back is real */
	return strcmp(sm_format_time_ns(*out, again, sizeof(again)), buf) == 0 ? 0 : -EINVAL;
}

static int decode_endpoint(struct json_object *o, int family, struct sm_flow_endpoint *ep)
{
	char ip[64];
	uint64_t port;

	if (!o)
		return -EINVAL;
	if (get_str(o, "ip", true, ip, sizeof(ip)) || sm_addr_parse(ip, &ep->addr) ||
	    ep->addr.family != family)
		return -EINVAL;
	if (get_u64(o, "port", 65535, &port) || get_u32(o, "identity", &ep->identity))
		return -EINVAL;
	ep->port = (uint16_t) port;
	if (get_istr(o, "spiffe_id", SM_FLOW_SPIFFE_MAX, &ep->spiffe_id) ||
	    get_istr(o, "workload", SM_FLOW_NAME_MAX, &ep->workload) ||
	    get_istr(o, "node", SM_FLOW_NAME_MAX, &ep->node) ||
	    get_istr(o, "cgroup", SM_FLOW_CGROUP_MAX, &ep->cgroup))
		return -EINVAL;
	return 0;
}

static int decode_counters(struct json_object *o, struct sm_flow_counters *c, uint64_t *redirected)
{
	if (!o)
		return -EINVAL;
	if (get_u64(o, "bytes_sent", UINT64_MAX, &c->bytes_sent) ||
	    get_u64(o, "bytes_received", UINT64_MAX, &c->bytes_received) ||
	    get_u64(o, "segs_in", UINT64_MAX, &c->segs_in) ||
	    get_u64(o, "segs_out", UINT64_MAX, &c->segs_out))
		return -EINVAL;
	if (redirected && get_u64(o, "redirected_bytes_sent", UINT64_MAX, redirected))
		return -EINVAL;
	return 0;
}

/* The optional "tls" block; absent leaves t->present false. */
static int decode_tls(struct json_object *o, struct sm_flow_tls *t)
{
	struct json_object *sub;

	if (!json_object_object_get_ex(o, "tls", &sub))
		return 0;
	if (!json_object_is_type(sub, json_type_object))
		return -EINVAL;
	t->present = true;
	if (get_str(sub, "mode", false, t->mode, sizeof(t->mode)) ||
	    get_bool(sub, "encrypted", &t->encrypted) ||
	    get_str(sub, "version", false, t->version, sizeof(t->version)) ||
	    get_str(sub, "cipher", false, t->cipher, sizeof(t->cipher)) ||
	    get_istr(sub, "local_spiffe_id", SM_FLOW_SPIFFE_MAX, &t->local_spiffe_id) ||
	    get_istr(sub, "peer_spiffe_id", SM_FLOW_SPIFFE_MAX, &t->peer_spiffe_id) ||
	    get_str(sub, "failure", false, t->failure, sizeof(t->failure)))
		return -EINVAL;
	if (json_object_object_get_ex(sub, "handshake_us", NULL) &&
	    get_u32(sub, "handshake_us", &t->handshake_us))
		return -EINVAL;
	return 0;
}

/* The optional "policy" block; absent leaves p->present false. */
static int decode_policy(struct json_object *o, struct sm_flow_policy *p)
{
	struct json_object *sub, *audit;
	uint64_t rule;

	if (!json_object_object_get_ex(o, "policy", &sub))
		return 0;
	if (!json_object_is_type(sub, json_type_object))
		return -EINVAL;
	p->present = true;
	p->rule = -1;
	p->audit_rule = -1;
	if (get_u32(sub, "revision", &p->revision) ||
	    get_str(sub, "match", false, p->match, sizeof(p->match)) ||
	    get_str(sub, "name", false, p->name, sizeof(p->name)))
		return -EINVAL;
	if (json_object_object_get_ex(sub, "rule", NULL)) {
		if (get_u64(sub, "rule", INT32_MAX, &rule))
			return -EINVAL;
		p->rule = (int) rule;
	}
	if (!json_object_object_get_ex(sub, "audit", &audit))
		return 0;
	if (!json_object_is_type(audit, json_type_object) ||
	    get_str(audit, "name", false, p->audit_name, sizeof(p->audit_name)))
		return -EINVAL;
	if (json_object_object_get_ex(audit, "rule", NULL)) {
		if (get_u64(audit, "rule", INT32_MAX, &rule))
			return -EINVAL;
		p->audit_rule = (int) rule;
	}
	return 0;
}

static int decode_conn(struct json_object *o, struct sm_flow_record *r)
{
	struct json_object *sub;
	char buf[16];
	int v, family;

	if (get_enum(o, "verdict", verdict_names, SM_VERDICT_MAX, &v))
		return -EINVAL;
	r->verdict = (enum sm_verdict) v;
	if (get_str(o, "drop_reason", false, r->drop_reason, sizeof(r->drop_reason)))
		return -EINVAL;
	if (get_enum(o, "traffic_direction", direction_names, SM_DIR_MAX, &v))
		return -EINVAL;
	r->direction = (enum sm_direction) v;
	/* derived from the direction: a record where they disagree is not ours */
	if (get_enum(o, "reporter", reporter_names, SM_DIR_MAX, &v) || v != (int) r->direction)
		return -EINVAL;

	sub = get(o, "ip", json_type_object);
	if (!sub || get_str(sub, "family", true, buf, sizeof(buf)))
		return -EINVAL;
	if (strcmp(buf, "IPv4") == 0)
		family = AF_INET;
	else if (strcmp(buf, "IPv6") == 0)
		family = AF_INET6;
	else
		return -EINVAL;
	sub = get(o, "l4", json_type_object);
	if (!sub || get_str(sub, "protocol", true, buf, sizeof(buf)) || strcmp(buf, "TCP") != 0)
		return -EINVAL;
	if (decode_endpoint(get(o, "source", json_type_object), family, &r->source) ||
	    decode_endpoint(get(o, "destination", json_type_object), family, &r->destination))
		return -EINVAL;
	if (get_bool(o, "captured", &r->captured) || get_bool(o, "same_node", &r->same_node) ||
	    get_bool(o, "redirected", &r->redirected))
		return -EINVAL;
	if (get_u64(o, "socket_cookie", UINT64_MAX, &r->cookie) ||
	    get_u64(o, "cgroup_id", UINT64_MAX, &r->cgroup_id) ||
	    get_time(o, "start_time", &r->start_ns) ||
	    get_u64(o, "duration_us", UINT64_MAX, &r->duration_us))
		return -EINVAL;
	if (decode_counters(get(o, "counters", json_type_object), &r->total,
			    &r->redirected_bytes) ||
	    decode_counters(get(o, "delta", json_type_object), &r->delta, NULL))
		return -EINVAL;
	sub = get(o, "tcp", json_type_object);
	if (!sub || get_u32(sub, "srtt_us", &r->srtt_us) ||
	    get_u32(sub, "total_retrans", &r->total_retrans))
		return -EINVAL;
	if (get_str(o, "trace_id", false, r->trace_id, sizeof(r->trace_id)))
		return -EINVAL;
	return decode_tls(o, &r->tls) ?: decode_policy(o, &r->policy);
}

/* The optional "rate_limited_sources" of a lost record. */
static int decode_lost_sources(struct json_object *lost, struct sm_flow_record *r)
{
	struct json_object *arr;
	size_t n;

	if (!json_object_object_get_ex(lost, "rate_limited_sources", &arr))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return -EINVAL;
	n = json_object_array_length(arr);
	if (n == 0 || n > SM_FLOW_LOST_SOURCES_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		struct sm_flow_lost_source *ls = &r->lost_sources[i];
		char ip[64];

		if (!json_object_is_type(e, json_type_object) ||
		    get_u32(e, "identity", &ls->identity) ||
		    get_str(e, "ip", false, ip, sizeof(ip)) ||
		    get_u64(e, "suppressed", UINT64_MAX, &ls->suppressed))
			return -EINVAL;
		if (ip[0] && sm_addr_parse(ip, &ls->addr))
			return -EINVAL;
	}
	r->nlost_sources = (unsigned int) n;
	return 0;
}

static int decode_lost(struct json_object *o, struct sm_flow_record *r)
{
	struct json_object *sub = get(o, "lost", json_type_object);

	if (!sub || get_u64(sub, "ringbuf", UINT64_MAX, &r->lost_ringbuf) ||
	    get_u64(sub, "orig_dst", UINT64_MAX, &r->lost_orig_dst) ||
	    get_u64(sub, "storage", UINT64_MAX, &r->lost_storage) ||
	    get_u64(sub, "sockhash", UINT64_MAX, &r->lost_sockhash) ||
	    get_u64(sub, "queue", UINT64_MAX, &r->lost_queue) ||
	    get_u64(sub, "rate_limited", UINT64_MAX, &r->lost_rate_limited))
		return -EINVAL;
	/* written since write failures are counted: absent from older files */
	if (json_object_object_get_ex(sub, "write_failed", NULL) &&
	    get_u64(sub, "write_failed", UINT64_MAX, &r->lost_write_failed))
		return -EINVAL;
	return decode_lost_sources(sub, r);
}

/*
 * json-c clamps integers that do not fit 64 bits to INT64/UINT64 limits
 * without telling its caller, which would turn a corrupt 2^64 into a valid
 * UINT64_MAX. So find them in the text first: an integer outside strings
 * longer than UINT64_MAX's 20 digits, or of 20 digits above it. Digits of
 * fractions and exponents are left alone (those numbers are not integers).
 */
static bool integers_fit_u64(const char *json)
{
	static const char u64_max[] = "18446744073709551615";
	bool in_string = false;

	for (const char *p = json; *p; p++) {
		size_t n;

		if (in_string) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_string = false;
			continue;
		}
		if (*p == '"') {
			in_string = true;
			continue;
		}
		if (*p < '0' || *p > '9')
			continue;
		n = strspn(p, "0123456789");
		if (p == json || !strchr(".eE+", p[-1])) {
			if (n > sizeof(u64_max) - 1 ||
			    (n == sizeof(u64_max) - 1 && strncmp(p, u64_max, n) > 0))
				return false;
		}
		p += n - 1;
	}
	return true;
}

int sm_flow_record_decode(const char *json, struct sm_flow_record *r)
{
	struct json_tokener *tok;
	struct json_object *o;
	uint64_t version;
	size_t len;
	int type, ret = -EINVAL;

	memset(r, 0, sizeof(*r));
	len = strlen(json);
	if (len > INT32_MAX || !integers_fit_u64(json))
		return -EINVAL;
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	/* strict: no trailing commas, comments or single quotes */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, json, (int) len);
	/* one complete object and nothing after it but whitespace (e.g. the newline) */
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) +
			    strspn(json + json_tokener_get_parse_end(tok), " \t\r\n") !=
		    len)
		goto put;
	if (!json_object_is_type(o, json_type_object))
		goto put;
	if (get_u64(o, "version", UINT64_MAX, &version) || version != SM_FLOW_SCHEMA_VERSION)
		goto put;
	if (get_enum(o, "type", type_names, SM_REC_TYPE_MAX, &type))
		goto put;
	r->type = (enum sm_flow_record_type) type;
	if (get_time(o, "time", &r->time_ns) || get_str(o, "node", true, r->node, sizeof(r->node)))
		goto put;
	ret = r->type == SM_REC_LOST ? decode_lost(o, r) : decode_conn(o, r);
put:
	json_object_put(o);
	json_tokener_free(tok);
	if (ret)
		memset(r, 0, sizeof(*r));
	return ret;
}
