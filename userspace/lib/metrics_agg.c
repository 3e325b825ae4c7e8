// SPDX-License-Identifier: Apache-2.0
/* Flow records → Prometheus counters with bounded label sets, and the 0.0.4 text format. */
#include "metrics_agg.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow_record.h"
#include "util.h"

/* A label set the table could not store is not lost: it is counted as "other". */
#define HASH_NONFATAL_OOM      1
#define uthash_nonfatal_oom(s) ((s)->oom = true)
#include <uthash.h>

/* ---- text buffer and exposition format ---- */

static bool textbuf_reserve(struct sm_textbuf *b, size_t more)
{
	size_t want, cap;
	char *s;

	if (b->failed)
		return false;
	want = b->len + more + 1;
	if (want <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < want)
		cap *= 2;
	s = realloc(b->s, cap);
	if (!s) {
		b->failed = true;
		return false;
	}
	b->s = s;
	b->cap = cap;
	return true;
}

static void textbuf_append(struct sm_textbuf *b, const char *s, size_t n)
{
	if (!textbuf_reserve(b, n))
		return;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void sm_textbuf_printf(struct sm_textbuf *b, const char *fmt, ...)
{
	char text[SM_TEXTBUF_PRINTF_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 bug, ap is va_start'ed
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= sizeof(text)) {
		b->failed = true; /* a caller's bug: never cut text short silently */
		return;
	}
	textbuf_append(b, text, (size_t) n);
}

void sm_textbuf_free(struct sm_textbuf *b)
{
	free(b->s);
	memset(b, 0, sizeof(*b));
}

/* Text with backslash and newline escaped, and the double quote too in label values. */
static void append_escaped(struct sm_textbuf *b, const char *s, bool quote)
{
	for (const char *p = s; *p; p++) {
		if (*p == '\\')
			textbuf_append(b, "\\\\", 2);
		else if (*p == '\n')
			textbuf_append(b, "\\n", 2);
		else if (*p == '"' && quote)
			textbuf_append(b, "\\\"", 2);
		else
			textbuf_append(b, p, 1);
	}
}

void sm_prom_family(struct sm_textbuf *b, const char *name, const char *type, const char *help)
{
	sm_textbuf_printf(b, "# HELP %s ", name);
	append_escaped(b, help, false);
	sm_textbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void sample_start(struct sm_textbuf *b, const char *name, const char *const *labels,
			 const char *const *values, size_t n)
{
	textbuf_append(b, name, strlen(name));
	for (size_t i = 0; i < n; i++) {
		sm_textbuf_printf(b, "%s%s=\"", i ? "," : "{", labels[i]);
		append_escaped(b, values[i], true);
		textbuf_append(b, "\"", 1);
	}
	if (n)
		textbuf_append(b, "}", 1);
}

void sm_prom_sample(struct sm_textbuf *b, const char *name, const char *const *labels,
		    const char *const *values, size_t n, uint64_t value)
{
	sample_start(b, name, labels, values, n);
	sm_textbuf_printf(b, " %llu\n", (unsigned long long) value);
}

void sm_prom_sample_f64(struct sm_textbuf *b, const char *name, const char *const *labels,
			const char *const *values, size_t n, double value)
{
	sample_start(b, name, labels, values, n);
	if (isnan(value))
		sm_textbuf_printf(b, " NaN\n");
	else if (isinf(value))
		sm_textbuf_printf(b, " %sInf\n", value > 0 ? "+" : "-");
	else
		sm_textbuf_printf(b, " %.15g\n", value);
}

/* ---- the aggregator ---- */

/* Labels of the tcp families, in the order they are written (Istio's names). */
enum {
	TL_REPORTER,
	TL_SOURCE_WORKLOAD,
	TL_SOURCE_PRINCIPAL,
	TL_DESTINATION_WORKLOAD,
	TL_DESTINATION_PRINCIPAL,
	TL_SECURITY_POLICY,
	TL_COUNT,
};

static const char *const tcp_label_names[TL_COUNT] = {
	"reporter",
	"source_workload",
	"source_principal",
	"destination_workload",
	"destination_principal",
	"connection_security_policy",
};

enum { TC_SENT, TC_RECEIVED, TC_OPENED, TC_CLOSED, TC_COUNT };

static const struct {
	const char *name, *help;
} tcp_families[TC_COUNT] = {
	{"sockmesh_tcp_sent_bytes_total",
	 "Bytes the destination sent to the source (the response direction, as Istio counts "
	 "them), summed from the flow records' deltas."},
	{"sockmesh_tcp_received_bytes_total",
	 "Bytes the source sent to the destination (the request direction, as Istio counts "
	 "them), summed from the flow records' deltas."},
	{"sockmesh_tcp_connections_opened_total",
	 "TCP connections opened: conn_start records of workload sockets."},
	{"sockmesh_tcp_connections_closed_total",
	 "TCP connections closed: conn_end records of workload sockets."},
};

/* The label values of one set, each NUL-terminated, one after the other: the hash key. */
#define TCP_KEY_MAX 1024

struct tcp_series {
	UT_hash_handle hh;
	uint64_t count[TC_COUNT];
	bool oom;		     /* the hash table could not take it (uthash_nonfatal_oom) */
	const char *value[TL_COUNT]; /* into key */
	size_t keylen;
	char key[];
};

/*
 * A live connection (by socket cookie) and the counters of the label set its
 * first record was counted under: its series, or other[].
 */
struct conn_ref {
	UT_hash_handle hh;
	uint64_t cookie;
	uint64_t *count;
	bool oom; /* the hash table could not take it (uthash_nonfatal_oom) */
};

/* A small family: at most max label pairs, then everything else in one "other" pair. */
#define SMALL_MAX 64

struct small_counter {
	char a[64];
	char b[32];
	uint64_t n;
};

struct small_table {
	struct small_counter e[SMALL_MAX];
	size_t n, max;
	bool other_used;
	uint64_t other_n;
};

/* One entry of the list of label sets in the order they appeared. */
struct series_ref {
	struct tcp_series *s;
};

struct sm_metrics_agg {
	pthread_mutex_t mu;
	uint32_t max_series;
	struct tcp_series *tcp;	  /* the hash, by key */
	struct series_ref *order; /* the same, in the order they appeared */
	size_t nseries, cap;	  /* order[] */
	uint64_t other[TC_COUNT]; /* label sets beyond max_series */
	bool other_used;	  /* other[] has been counted into */
	uint64_t series_dropped;  /* records counted into other[] */
	uint64_t records[SM_REC_TYPE_MAX];
	struct small_table verdicts; /* action, match */
	struct small_table drops;    /* reason */
	struct small_table lost;     /* source (user space) */
	struct conn_ref *conns;	     /* live connections, least recently seen first */
	size_t nconns;
};

struct sm_metrics_agg *sm_metrics_agg_new(uint32_t max_series)
{
	struct sm_metrics_agg *m;

	if (max_series == 0 || max_series > SM_METRICS_MAX_MAX_SERIES) {
		errno = EINVAL;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->mu, NULL);
	m->max_series = max_series;
	m->verdicts.max = 16;
	m->drops.max = SMALL_MAX;
	m->lost.max = 16;
	return m;
}

void sm_metrics_agg_free(struct sm_metrics_agg *m)
{
	struct conn_ref *c, *next;

	if (!m)
		return;
	/* the table first (HASH_CLEAR frees only it), then the entries along their list */
	c = m->conns;
	HASH_CLEAR(hh, m->conns);
	for (; c; c = next) {
		next = c->hh.next;
		free(c);
	}
	HASH_CLEAR(hh, m->tcp);
	for (size_t i = 0; i < m->nseries; i++)
		free(m->order[i].s);
	free(m->order);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* Count n under the pair (a, b); b may be "" for a one-label family. Caller holds mu. */
static void small_add(struct small_table *t, const char *a, const char *b, uint64_t n)
{
	struct small_counter *c;

	for (size_t i = 0; i < t->n; i++) {
		c = &t->e[i];
		if (strcmp(c->a, a) == 0 && strcmp(c->b, b) == 0) {
			c->n += n;
			return;
		}
	}
	/* a value that does not fit its field would be truncated into a wrong name */
	if (t->n == t->max || strlen(a) >= sizeof(c->a) || strlen(b) >= sizeof(c->b)) {
		t->other_used = true;
		t->other_n += n;
		return;
	}
	c = &t->e[t->n++];
	memcpy(c->a, a, strlen(a) + 1);
	memcpy(c->b, b, strlen(b) + 1);
	c->n = n;
}

/* The tcp label values of a connection record (pointers into r or constants). */
static void tcp_labels(const struct sm_flow_record *r, const char **v)
{
	v[TL_REPORTER] = r->direction == SM_DIR_INGRESS ? "destination" : "source";
	v[TL_SOURCE_WORKLOAD] = !sm_str_empty(r->source.workload) ? r->source.workload : "unknown";
	v[TL_SOURCE_PRINCIPAL] =
		!sm_str_empty(r->source.spiffe_id) ? r->source.spiffe_id : "unknown";
	v[TL_DESTINATION_WORKLOAD] =
		!sm_str_empty(r->destination.workload) ? r->destination.workload : "unknown";
	v[TL_DESTINATION_PRINCIPAL] =
		!sm_str_empty(r->destination.spiffe_id) ? r->destination.spiffe_id : "unknown";
	v[TL_SECURITY_POLICY] = r->tls.present && r->tls.encrypted ? "mutual_tls" : "none";
}

/* The counters of r's label set: its own, or other[] beyond the bound. Caller holds mu. */
static uint64_t *tcp_counters(struct sm_metrics_agg *m, const struct sm_flow_record *r)
{
	const char *v[TL_COUNT];
	char key[TCP_KEY_MAX];
	struct tcp_series *s = NULL;
	struct series_ref *order;
	size_t len = 0, off = 0;

	tcp_labels(r, v);
	for (int i = 0; i < TL_COUNT; i++) {
		size_t n = strlen(v[i]) + 1;

		if (len + n > sizeof(key))
			goto other; /* cannot happen with the record's field sizes */
		memcpy(key + len, v[i], n);
		len += n;
	}
	HASH_FIND(hh, m->tcp, key, len, s);
	if (s)
		return s->count;
	if (m->nseries >= m->max_series)
		goto other;
	if (m->nseries == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;

		order = realloc(m->order, cap * sizeof(*order));
		if (!order)
			goto other;
		m->order = order;
		m->cap = cap;
	}
	s = calloc(1, sizeof(*s) + len);
	if (!s)
		goto other;
	memcpy(s->key, key, len);
	s->keylen = len;
	for (int i = 0; i < TL_COUNT; i++) {
		s->value[i] = s->key + off;
		off += strlen(s->key + off) + 1;
	}
	HASH_ADD_KEYPTR(hh, m->tcp, s->key, s->keylen, s);
	if (s->oom) {
		free(s);
		goto other;
	}
	m->order[m->nseries++].s = s;
	return s->count;
other:
	m->other_used = true;
	m->series_dropped++;
	return m->other;
}

/* Forget a connection. Caller holds mu. */
static void conn_forget(struct sm_metrics_agg *m, struct conn_ref *ref)
{
	HASH_DEL(m->conns, ref);
	free(ref);
	m->nconns--;
}

/*
 * Remember that r's connection counts in c, as the most recently seen; past
 * SM_METRICS_CONNS_MAX the least recently seen is forgotten. Without memory
 * the connection's later records count under their own labels, as they
 * would have anyway. Caller holds mu.
 */
static void conn_remember(struct sm_metrics_agg *m, const struct sm_flow_record *r, uint64_t *c)
{
	struct conn_ref *ref = NULL;

	HASH_FIND(hh, m->conns, &r->cookie, sizeof(r->cookie), ref);
	if (ref) {
		HASH_DEL(m->conns, ref);
	} else if (m->nconns >= SM_METRICS_CONNS_MAX) {
		ref = m->conns; /* the head of uthash's list: added longest ago; reused */
		HASH_DEL(m->conns, ref);
	} else {
		ref = calloc(1, sizeof(*ref));
		if (!ref)
			return;
		m->nconns++;
	}
	ref->cookie = r->cookie;
	ref->count = c;
	ref->oom = false;
	HASH_ADD(hh, m->conns, cookie, sizeof(ref->cookie), ref);
	if (ref->oom) {
		free(ref);
		m->nconns--;
	}
}

/*
 * The counters r counts in: its connection's, fixed by the first record
 * counted for it (a conn_start starts a connection anew), else its own
 * label set's. Caller holds mu.
 */
static uint64_t *connection_counters(struct sm_metrics_agg *m, const struct sm_flow_record *r)
{
	struct conn_ref *ref = NULL;
	uint64_t *c;

	if (r->type != SM_REC_CONN_START)
		HASH_FIND(hh, m->conns, &r->cookie, sizeof(r->cookie), ref);
	if (!ref) {
		c = tcp_counters(m, r);
		if (r->type != SM_REC_CONN_END)
			conn_remember(m, r, c);
		return c;
	}
	c = ref->count;
	if (c == m->other)
		m->series_dropped++; /* every record counted into other[] is */
	if (r->type == SM_REC_CONN_END) {
		conn_forget(m, ref);
	} else {
		/* seen again: to the end of the list, the last to be forgotten */
		HASH_DEL(m->conns, ref);
		HASH_ADD(hh, m->conns, cookie, sizeof(ref->cookie), ref);
		if (ref->oom) {
			free(ref);
			m->nconns--;
		}
	}
	return c;
}

static void observe_connection(struct sm_metrics_agg *m, const struct sm_flow_record *r)
{
	bool ingress = r->direction == SM_DIR_INGRESS;
	uint64_t *c;

	/* the daemon's own record of a refused handshake or stream: no workload socket */
	if (r->cookie == 0)
		return;
	c = connection_counters(m, r);
	/* the socket's own sent/received, turned into Istio's response/request directions */
	c[TC_SENT] += ingress ? r->delta.bytes_sent : r->delta.bytes_received;
	c[TC_RECEIVED] += ingress ? r->delta.bytes_received : r->delta.bytes_sent;
	if (r->type == SM_REC_CONN_START)
		c[TC_OPENED]++;
	else if (r->type == SM_REC_CONN_END)
		c[TC_CLOSED]++;
}

void sm_metrics_agg_observe(struct sm_metrics_agg *m, const struct sm_flow_record *r)
{
	if (!m || r->type >= SM_REC_TYPE_MAX)
		return;
	pthread_mutex_lock(&m->mu);
	m->records[r->type]++;
	if (r->type == SM_REC_LOST) {
		/* the kernel's loss counters are exported themselves: not counted twice */
		pthread_mutex_unlock(&m->mu);
		return;
	}
	if (r->verdict == SM_VERDICT_DROPPED)
		small_add(&m->drops, r->drop_reason[0] ? r->drop_reason : "unknown", "", 1);
	if (r->policy.present && r->verdict != SM_VERDICT_FORWARDED)
		small_add(&m->verdicts, r->verdict == SM_VERDICT_DROPPED ? "DENY" : "AUDIT",
			  r->policy.match[0] ? r->policy.match : "unknown", 1);
	if (r->type != SM_REC_DENIED)
		observe_connection(m, r);
	pthread_mutex_unlock(&m->mu);
}

void sm_metrics_agg_lost(struct sm_metrics_agg *m, const char *source, uint64_t n)
{
	if (!m || !n)
		return;
	pthread_mutex_lock(&m->mu);
	small_add(&m->lost, source, "", n);
	pthread_mutex_unlock(&m->mu);
}

/* One label set's counts as render saw them. */
struct series_row {
	const struct tcp_series *s; /* its labels: never freed while the aggregator lives */
	uint64_t count[TC_COUNT];
};

/* What render formats, copied under the lock. */
struct agg_snapshot {
	size_t nseries;
	struct series_row *rows;
	uint64_t other[TC_COUNT];
	bool other_used;
	uint64_t series_dropped;
	uint32_t max_series;
	uint64_t records[SM_REC_TYPE_MAX];
	struct small_table verdicts, drops, lost;
};

static int snapshot_take(struct sm_metrics_agg *m, struct agg_snapshot *s)
{
	int err = 0;

	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&m->mu);
	/* label sets are never removed and their text never changes: pointers stay valid */
	s->rows = malloc((m->nseries + 1) * sizeof(*s->rows));
	if (!s->rows) {
		err = -ENOMEM;
		goto unlock;
	}
	s->nseries = m->nseries;
	for (size_t i = 0; i < m->nseries; i++) {
		s->rows[i].s = m->order[i].s;
		memcpy(s->rows[i].count, m->order[i].s->count, sizeof(s->rows[i].count));
	}
	memcpy(s->other, m->other, sizeof(s->other));
	s->other_used = m->other_used;
	s->series_dropped = m->series_dropped;
	s->max_series = m->max_series;
	memcpy(s->records, m->records, sizeof(s->records));
	s->verdicts = m->verdicts;
	s->drops = m->drops;
	s->lost = m->lost;
unlock:
	pthread_mutex_unlock(&m->mu);
	return err;
}

static void render_tcp(struct sm_textbuf *b, const struct agg_snapshot *s)
{
	static const char *const other_values[TL_COUNT] = {
		SM_METRICS_OTHER, SM_METRICS_OTHER, SM_METRICS_OTHER,
		SM_METRICS_OTHER, SM_METRICS_OTHER, SM_METRICS_OTHER,
	};

	for (int f = 0; f < TC_COUNT; f++) {
		sm_prom_family(b, tcp_families[f].name, "counter", tcp_families[f].help);
		for (size_t i = 0; i < s->nseries; i++)
			sm_prom_sample(b, tcp_families[f].name, tcp_label_names,
				       s->rows[i].s->value, TL_COUNT, s->rows[i].count[f]);
		if (s->other_used)
			sm_prom_sample(b, tcp_families[f].name, tcp_label_names, other_values,
				       TL_COUNT, s->other[f]);
	}
	sm_prom_family(b, "sockmesh_metrics_series", "gauge",
		       "Label sets the tcp families hold, not counting the one labelled other.");
	sm_prom_sample(b, "sockmesh_metrics_series", NULL, NULL, 0, s->nseries);
	sm_prom_family(b, "sockmesh_metrics_max_series", "gauge",
		       "The bound on those label sets (metrics.max_series).");
	sm_prom_sample(b, "sockmesh_metrics_max_series", NULL, NULL, 0, s->max_series);
	sm_prom_family(
		b, "sockmesh_metrics_series_dropped_total", "counter",
		"Flow records whose tcp label set was new beyond metrics.max_series, counted "
		"in the set whose labels are all other.");
	sm_prom_sample(b, "sockmesh_metrics_series_dropped_total", NULL, NULL, 0,
		       s->series_dropped);
}

/* A one- or two-label family from a small table; extra samples (the kernel's) first. */
static void render_small(struct sm_textbuf *b, const char *name, const char *help,
			 const char *label_a, const char *label_b, const struct small_table *t,
			 const char *const *extra_a, const uint64_t *extra_n, size_t nextra)
{
	const char *labels[2] = {label_a, label_b};
	const char *values[2];
	size_t nl = label_b ? 2 : 1;

	sm_prom_family(b, name, "counter", help);
	for (size_t i = 0; i < nextra; i++) {
		values[0] = extra_a[i];
		values[1] = "unspecified";
		sm_prom_sample(b, name, labels, values, nl, extra_n[i]);
	}
	for (size_t i = 0; i < t->n; i++) {
		values[0] = t->e[i].a;
		values[1] = t->e[i].b;
		sm_prom_sample(b, name, labels, values, nl, t->e[i].n);
	}
	if (t->other_used) {
		values[0] = SM_METRICS_OTHER;
		values[1] = SM_METRICS_OTHER;
		sm_prom_sample(b, name, labels, values, nl, t->other_n);
	}
}

int sm_metrics_agg_render(struct sm_metrics_agg *m, struct sm_textbuf *b,
			  const struct sm_metrics_inputs *in)
{
	static const char *const allow[] = {"ALLOW"};
	const struct sm_metrics_inputs none = {0};
	struct agg_snapshot *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	if (!in)
		in = &none;
	err = snapshot_take(m, s);
	if (err)
		goto free_snapshot;
	render_tcp(b, s);

	sm_prom_family(b, "sockmesh_flow_records_total", "counter",
		       "Flow records the daemon made, by type.");
	for (int t = 0; t < SM_REC_TYPE_MAX; t++) {
		const char *label = "type", *value = sm_flow_record_type_name(t);

		sm_prom_sample(b, "sockmesh_flow_records_total", &label, &value, 1, s->records[t]);
	}
	render_small(b, "sockmesh_policy_verdicts_total",
		     "Policy decisions: DENY and AUDIT from the flow records' policy blocks (match "
		     "as the record says), ALLOW from the kernel's policy_allowed counter "
		     "(connect() and plaintext ingress; match unspecified).",
		     "action", "match", &s->verdicts, allow, &in->allowed,
		     in->have_allowed ? 1 : 0);
	render_small(b, "sockmesh_drops_total", "DROPPED flow records by drop_reason.", "reason",
		     NULL, &s->drops, NULL, NULL, 0);
	render_small(b, "sockmesh_lost_events_total",
		     "Events and records lost, by source: the kernel's loss counters (ringbuf, "
		     "orig_dst, storage, sockhash), the flow-log queue (queue), DROPPED/AUDIT "
		     "records over flowlog.denied_rate (rate_limit), the live stream (stream).",
		     "source", NULL, &s->lost, in->lost_sources, in->lost_counts, in->nlost);
	if (b->failed)
		err = -ENOMEM;
free_snapshot:
	free(s->rows);
	free(s);
	return err;
}
