/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prometheus metrics made from flow records (docs/metrics.md): the
 * Istio-compatible tcp families with a bounded number of label sets, policy
 * verdicts, drops by reason and lost events, plus the text exposition format
 * 0.0.4 that the daemon's admin port (userspace/daemon/metrics.c) serves.
 * Holds no daemon state, so the unit tests drive it without root.
 */
#ifndef SOCKMESH_METRICS_AGG_H
#define SOCKMESH_METRICS_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sm_flow_record;

/* metrics.max_series: label sets the tcp families keep (docs/configuration.md). */
#define SM_METRICS_DEFAULT_MAX_SERIES 10000
#define SM_METRICS_MAX_MAX_SERIES     1000000

/*
 * Live connections whose label set is remembered (each about 80 bytes): a
 * connection's records all count under the label set of its first one. Past
 * this many, the least recently seen is forgotten (one whose conn_end was
 * lost, most likely); its later records count under their own labels.
 */
#define SM_METRICS_CONNS_MAX 65536

/* The label value of whatever did not fit a bound, and of series folded together. */
#define SM_METRICS_OTHER "other"

/*
 * A growing text buffer. On allocation failure it keeps what it had and sets
 * failed; every later append is then a no-op, so a caller checks once.
 * sm_textbuf_printf formats at most SM_TEXTBUF_PRINTF_MAX - 1 bytes a call
 * (longer text sets failed): long values go through sm_prom_sample.
 */
#define SM_TEXTBUF_PRINTF_MAX 1024
struct sm_textbuf {
	char *s; /* NUL-terminated, malloc'ed; NULL until the first append */
	size_t len;
	size_t cap;
	bool failed;
};

void sm_textbuf_printf(struct sm_textbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sm_textbuf_free(struct sm_textbuf *b);

/*
 * Text exposition format 0.0.4. sm_prom_family writes the "# HELP" and
 * "# TYPE" lines (type "counter" or "gauge"; help is escaped). A sample is
 * name{labels[0]="values[0]",...} value, with the values escaped (backslash,
 * double quote, newline); n may be 0 (no braces).
 */
void sm_prom_family(struct sm_textbuf *b, const char *name, const char *type, const char *help);
void sm_prom_sample(struct sm_textbuf *b, const char *name, const char *const *labels,
		    const char *const *values, size_t n, uint64_t value);
void sm_prom_sample_f64(struct sm_textbuf *b, const char *name, const char *const *labels,
			const char *const *values, size_t n, double value);

struct sm_metrics_agg;

/* An aggregator keeping at most max_series tcp label sets (plus "other"). NULL + errno. */
struct sm_metrics_agg *sm_metrics_agg_new(uint32_t max_series);
void sm_metrics_agg_free(struct sm_metrics_agg *m);

/*
 * Count one flow record: conn_start opens and conn_end closes a connection
 * of the tcp families, the deltas of conn_start, conn_update and conn_end add
 * bytes, all under the label set of the connection's first record counted
 * (its conn_start, normally; by socket_cookie), so that a connection is
 * opened and closed in the same series even when a later record knows more
 * (e.g. the tunnel's tls block); DROPPED records count in drops by drop_reason; records with a
 * policy block count as DENY (DROPPED) or AUDIT verdicts. "denied" records are not connections, and
 * neither are the daemon's own records of refused handshakes and streams (socket_cookie 0). Any
 * thread; takes only the aggregator's own lock, briefly.
 */
void sm_metrics_agg_observe(struct sm_metrics_agg *m, const struct sm_flow_record *r);

/* Count n events a user-space source lost (lost_events_total{source}). Any thread. */
void sm_metrics_agg_lost(struct sm_metrics_agg *m, const char *source, uint64_t n);

/* What the caller adds from elsewhere (the kernel) to the families rendered here. */
struct sm_metrics_inputs {
	/* policy_verdicts_total{action="ALLOW",match="unspecified"}: the kernel's count */
	bool have_allowed;
	uint64_t allowed;
	/* lost_events_total: more sources (the kernel's), before the user-space ones */
	const char *const *lost_sources;
	const uint64_t *lost_counts;
	size_t nlost;
};

/*
 * Append every family this aggregator makes to b (in a fixed order, each
 * family once with its HELP and TYPE). The counts are copied under the
 * lock and formatted after it, so a scrape of many series does not hold up
 * the flow records. in may be NULL. 0, or -ENOMEM (b->failed).
 */
int sm_metrics_agg_render(struct sm_metrics_agg *m, struct sm_textbuf *b,
			  const struct sm_metrics_inputs *in);

#endif /* SOCKMESH_METRICS_AGG_H */
