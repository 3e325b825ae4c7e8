// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/metrics_agg.c: record → counter rules, the bound, the text format. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flow_record.h"
#include "metrics_agg.h"

#define CLIENT_ID "spiffe://example.org/ns/demo/sa/client"
#define SERVER_ID "spiffe://example.org/ns/demo/sa/server"

/* The aggregator and page of the test being run: freed by teardown even when a check fails. */
static struct sm_metrics_agg *agg;
static struct sm_textbuf page;

static int free_all(void **state)
{
	sm_metrics_agg_free(agg);
	agg = NULL;
	sm_textbuf_free(&page);
	return 0;
}

static void new_agg(uint32_t max_series)
{
	agg = sm_metrics_agg_new(max_series);
	ASSERT_NOT_NULL(agg, "sm_metrics_agg_new");
}

/* A connection record of the client (EGRESS) or server (INGRESS) socket. */
static void make_conn(struct sm_flow_record *r, enum sm_flow_record_type type, bool ingress,
		      uint64_t sent, uint64_t received)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->verdict = SM_VERDICT_FORWARDED;
	r->direction = ingress ? SM_DIR_INGRESS : SM_DIR_EGRESS;
	r->source.spiffe_id = sm_intern(CLIENT_ID);
	r->source.workload = sm_intern("client");
	r->destination.spiffe_id = sm_intern(SERVER_ID);
	r->destination.workload = sm_intern("server");
	r->cookie = ingress ? 8193 : 4097;
	r->delta.bytes_sent = sent;
	r->delta.bytes_received = received;
	r->total = r->delta;
}

/* A policy "denied" record: DROPPED with a reason, or AUDIT. */
static void make_denied(struct sm_flow_record *r, enum sm_verdict verdict, const char *reason,
			const char *match)
{
	make_conn(r, SM_REC_DENIED, false, 0, 0);
	r->verdict = verdict;
	strcpy(r->drop_reason, reason);
	r->policy.present = true;
	r->policy.revision = 3;
	strcpy(r->policy.match, match);
}

static const char *render(const struct sm_metrics_inputs *in)
{
	sm_textbuf_free(&page);
	ASSERT_EQ(sm_metrics_agg_render(agg, &page, in), 0, "render");
	ASSERT_NOT_NULL(page.s, "rendered text");
	return page.s;
}

/* The value of the sample whose name and labels are exactly series; -1 when absent. */
static long long value_of(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
		if (strncmp(line, series, n) == 0 && line[n] == ' ')
			return strtoll(line + n + 1, NULL, 10);
	}
	return -1;
}

#define TCP_SET(reporter, security)                                                                \
	"{reporter=\"" reporter "\",source_workload=\"client\",source_principal=\"" CLIENT_ID      \
	"\",destination_workload=\"server\",destination_principal=\"" SERVER_ID                    \
	"\",connection_security_policy=\"" security "\"}"

static void test_new_checks_bound(void **state)
{
	errno = 0;
	ASSERT_EQ(sm_metrics_agg_new(0) == NULL, 1, "max_series 0 refused");
	ASSERT_EQ(errno, EINVAL, "errno");
	ASSERT_EQ(sm_metrics_agg_new(SM_METRICS_MAX_MAX_SERIES + 1) == NULL, 1,
		  "max_series above the maximum refused");
}

/*
 * Bytes come from every connection record's delta, turned into Istio's
 * directions: sent = destination → source, received = source → destination,
 * whichever socket reported; conn_start opens, conn_end closes.
 */
static void test_tcp_counts_and_directions(void **state)
{
	struct sm_flow_record r;
	const char *text;

	new_agg(100);
	/* the client socket: it sent 1000 + 10 (the request), received 7 (the response) */
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	sm_metrics_agg_observe(agg, &r);
	make_conn(&r, SM_REC_CONN_UPDATE, false, 1000, 0);
	sm_metrics_agg_observe(agg, &r);
	make_conn(&r, SM_REC_CONN_END, false, 10, 7);
	sm_metrics_agg_observe(agg, &r);
	/* the server socket of the same connection: the mirror image */
	make_conn(&r, SM_REC_CONN_START, true, 0, 3);
	sm_metrics_agg_observe(agg, &r);
	make_conn(&r, SM_REC_CONN_END, true, 7, 1007);
	sm_metrics_agg_observe(agg, &r);

	text = render(NULL);
	ASSERT_EQ(value_of(text, "sockmesh_tcp_received_bytes_total" TCP_SET("source", "none")),
		  1010, "source reporter: request bytes are the client's sent");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_sent_bytes_total" TCP_SET("source", "none")), 7,
		  "source reporter: response bytes are the client's received");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_opened_total" TCP_SET("source", "none")),
		  1, "opened by conn_start");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_closed_total" TCP_SET("source", "none")),
		  1, "closed by conn_end");
	ASSERT_EQ(
		value_of(text, "sockmesh_tcp_received_bytes_total" TCP_SET("destination", "none")),
		1010, "destination reporter: request bytes are the server's received");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_sent_bytes_total" TCP_SET("destination", "none")), 7,
		  "destination reporter: response bytes are the server's sent");
	ASSERT_EQ(value_of(text, "sockmesh_metrics_series"), 2, "two label sets");
	ASSERT_EQ(value_of(text, "sockmesh_metrics_series_dropped_total"), 0, "none dropped");
	ASSERT_EQ(value_of(text, "sockmesh_flow_records_total{type=\"conn_start\"}"), 2,
		  "records by type");
	ASSERT_EQ(value_of(text, "sockmesh_flow_records_total{type=\"conn_update\"}"), 1,
		  "records by type");
	ASSERT_EQ(value_of(text, "sockmesh_flow_records_total{type=\"lost\"}"), 0,
		  "every type has a sample");
}

static void test_tcp_labels(void **state)
{
	struct sm_flow_record r;
	const char *text;

	new_agg(100);
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	r.tls.present = true;
	r.tls.encrypted = true;
	sm_metrics_agg_observe(agg, &r);
	/* plaintext accepted by a PERMISSIVE workload: a tls block, not encrypted */
	make_conn(&r, SM_REC_CONN_START, true, 0, 0);
	r.tls.present = true;
	r.tls.encrypted = false;
	sm_metrics_agg_observe(agg, &r);
	/* a caller outside the catalog: no SPIFFE ID, no workload */
	make_conn(&r, SM_REC_CONN_START, true, 0, 0);
	r.source.spiffe_id = NULL;
	r.source.workload = NULL;
	sm_metrics_agg_observe(agg, &r);

	text = render(NULL);
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_opened_total" TCP_SET("source", "mutual_tls")),
		  1, "encrypted: mutual_tls");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_opened_total" TCP_SET("destination", "none")),
		  1, "a tls block that says not encrypted: none");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_opened_total{reporter=\"destination\","
			   "source_workload=\"unknown\",source_principal=\"unknown\","
			   "destination_workload=\"server\",destination_principal=\"" SERVER_ID
			   "\",connection_security_policy=\"none\"}"),
		  1, "absent identities are unknown");
}

/*
 * A connection is counted under one label set, the one of the first record
 * counted for it: a conn_start written before the tunnel took the socket
 * (no tls block yet) and its conn_end (mutual_tls) open and close the same
 * series, and every byte goes there too. A conn_end whose conn_start this
 * aggregator never saw (the daemon restarted) is closed under its own.
 */
static void test_one_label_set_per_connection(void **state)
{
	struct sm_flow_record r;
	const char *text;

	new_agg(100);
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	sm_metrics_agg_observe(agg, &r);
	make_conn(&r, SM_REC_CONN_UPDATE, false, 100, 0);
	r.tls.present = true;
	r.tls.encrypted = true;
	sm_metrics_agg_observe(agg, &r);
	make_conn(&r, SM_REC_CONN_END, false, 20, 3);
	r.tls.present = true;
	r.tls.encrypted = true;
	sm_metrics_agg_observe(agg, &r);
	/* the next connection of that socket cookie is a new one: its conn_start decides */
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	r.tls.present = true;
	r.tls.encrypted = true;
	sm_metrics_agg_observe(agg, &r);
	make_conn(&r, SM_REC_CONN_END, false, 0, 0);
	sm_metrics_agg_observe(agg, &r);
	/* a conn_end without its conn_start: its own labels */
	make_conn(&r, SM_REC_CONN_END, true, 5, 5);
	r.tls.present = true;
	r.tls.encrypted = true;
	sm_metrics_agg_observe(agg, &r);

	text = render(NULL);
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_opened_total" TCP_SET("source", "none")),
		  1, "opened under the conn_start's labels");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_closed_total" TCP_SET("source", "none")),
		  1, "closed under the same labels, whatever the conn_end says");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_received_bytes_total" TCP_SET("source", "none")),
		  120, "its bytes there too");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_opened_total" TCP_SET("source", "mutual_tls")),
		  1, "the second connection opened under its own conn_start's labels");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_closed_total" TCP_SET("source", "mutual_tls")),
		  1, "and closed there");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_closed_total" TCP_SET("destination",
										 "mutual_tls")),
		  1, "a conn_end never opened: closed under its own labels");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_opened_total" TCP_SET("destination",
										 "mutual_tls")),
		  0, "and not opened");
}

/* Connections whose conn_end never came (lost) are forgotten, oldest first, past a bound. */
static void test_connections_remembered_bounded(void **state)
{
	struct sm_flow_record r;
	const char *text;

	new_agg(100);
	/* the first connection stays, updated, while many more open and are never closed */
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	r.cookie = 1;
	sm_metrics_agg_observe(agg, &r);
	for (uint64_t i = 0; i < SM_METRICS_CONNS_MAX + 10; i++) {
		make_conn(&r, SM_REC_CONN_START, false, 0, 0);
		r.cookie = 100 + i;
		sm_metrics_agg_observe(agg, &r);
		if (i % 1000 == 0) {
			make_conn(&r, SM_REC_CONN_UPDATE, false, 1, 0);
			r.cookie = 1;
			r.tls.present = true;
			r.tls.encrypted = true;
			sm_metrics_agg_observe(agg, &r);
		}
	}
	/* the oldest unclosed one was forgotten: its conn_end counts under its own labels */
	make_conn(&r, SM_REC_CONN_END, false, 0, 0);
	r.cookie = 100;
	r.tls.present = true;
	r.tls.encrypted = true;
	sm_metrics_agg_observe(agg, &r);
	/* the one kept busy is still known */
	make_conn(&r, SM_REC_CONN_END, false, 0, 0);
	r.cookie = 1;
	r.tls.present = true;
	r.tls.encrypted = true;
	sm_metrics_agg_observe(agg, &r);

	text = render(NULL);
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_opened_total" TCP_SET("source", "none")),
		  SM_METRICS_CONNS_MAX + 11, "all opened");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_closed_total" TCP_SET("source", "none")),
		  1, "the busy one closed where it was opened");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_closed_total" TCP_SET("source", "mutual_tls")),
		  1, "the forgotten one closed under its own labels");
}

/* denied records and the daemon's own failure records are not connections. */
static void test_drops_and_verdicts(void **state)
{
	struct sm_metrics_inputs in = {.have_allowed = true, .allowed = 42};
	struct sm_flow_record r;
	const char *text;

	new_agg(100);
	make_denied(&r, SM_VERDICT_DROPPED, "policy_default_deny", "default-deny");
	sm_metrics_agg_observe(agg, &r);
	sm_metrics_agg_observe(agg, &r);
	make_denied(&r, SM_VERDICT_DROPPED, "policy_denied", "rule");
	sm_metrics_agg_observe(agg, &r);
	make_denied(&r, SM_VERDICT_AUDIT, "", "rule");
	sm_metrics_agg_observe(agg, &r);
	/* a conn_end a new revision closed: a DENY verdict and a drop, and a closed connection */
	make_conn(&r, SM_REC_CONN_END, false, 5, 5);
	r.verdict = SM_VERDICT_DROPPED;
	strcpy(r.drop_reason, "policy_revoked");
	r.policy.present = true;
	strcpy(r.policy.match, "rule");
	sm_metrics_agg_observe(agg, &r);
	/* the daemon's record of a refused handshake: a drop, no connection of a workload */
	make_conn(&r, SM_REC_CONN_END, true, 0, 0);
	r.cookie = 0;
	r.verdict = SM_VERDICT_DROPPED;
	strcpy(r.drop_reason, "unknown_ca");
	sm_metrics_agg_observe(agg, &r);
	/* DROPPED without a reason still counts */
	make_conn(&r, SM_REC_CONN_END, true, 0, 0);
	r.cookie = 0;
	r.verdict = SM_VERDICT_DROPPED;
	sm_metrics_agg_observe(agg, &r);
	text = render(&in);
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"policy_default_deny\"}"), 2,
		  "default deny drops");
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"policy_denied\"}"), 1,
		  "explicit deny drops");
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"policy_revoked\"}"), 1,
		  "revoked connections");
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"unknown_ca\"}"), 1,
		  "handshake refusals");
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"unknown\"}"), 1, "no reason");
	ASSERT_EQ(
		value_of(text,
			 "sockmesh_policy_verdicts_total{action=\"DENY\",match=\"default-deny\"}"),
		2, "DENY default-deny");
	ASSERT_EQ(value_of(text, "sockmesh_policy_verdicts_total{action=\"DENY\",match=\"rule\"}"),
		  2, "DENY rule: the denied record and the revoked conn_end");
	ASSERT_EQ(value_of(text, "sockmesh_policy_verdicts_total{action=\"AUDIT\",match=\"rule\"}"),
		  1, "AUDIT");
	ASSERT_EQ(value_of(text, "sockmesh_policy_verdicts_total{action=\"ALLOW\","
				 "match=\"unspecified\"}"),
		  42, "ALLOW from the kernel's counter");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_closed_total" TCP_SET("source", "none")),
		  1, "only the revoked connection closed");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_opened_total" TCP_SET("source", "none")),
		  0, "denied records open nothing");
	ASSERT_EQ(value_of(text, "sockmesh_metrics_series"), 1,
		  "no label set from denied or daemon records");
	ASSERT_EQ(value_of(text, "sockmesh_flow_records_total{type=\"denied\"}"), 4,
		  "denied records counted by type");
}

static void test_cardinality_bound(void **state)
{
	struct sm_flow_record r;
	const char *text;

	new_agg(2);
	for (int i = 0; i < 5; i++) {
		char name[16];

		snprintf(name, sizeof(name), "w%d", i);
		make_conn(&r, SM_REC_CONN_START, false, 0, 0);
		r.source.workload = sm_intern(name);
		sm_metrics_agg_observe(agg, &r);
		make_conn(&r, SM_REC_CONN_END, false, 100, 1);
		r.source.workload = sm_intern(name);
		sm_metrics_agg_observe(agg, &r);
	}
	/* a set that made it in keeps counting in its own series */
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	r.source.workload = sm_intern("w0");
	sm_metrics_agg_observe(agg, &r);

	text = render(NULL);
	ASSERT_EQ(value_of(text, "sockmesh_metrics_series"), 2, "at most max_series sets");
	ASSERT_EQ(value_of(text, "sockmesh_metrics_max_series"), 2, "the bound");
	ASSERT_EQ(value_of(text, "sockmesh_metrics_series_dropped_total"), 6,
		  "records of w2..w4 counted as other");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_opened_total{reporter=\"other\","
				 "source_workload=\"other\",source_principal=\"other\","
				 "destination_workload=\"other\",destination_principal=\"other\","
				 "connection_security_policy=\"other\"}"),
		  3, "other: opened");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_received_bytes_total{reporter=\"other\","
				 "source_workload=\"other\",source_principal=\"other\","
				 "destination_workload=\"other\",destination_principal=\"other\","
				 "connection_security_policy=\"other\"}"),
		  300, "other: bytes");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_opened_total{reporter=\"source\","
			   "source_workload=\"w0\",source_principal=\"" CLIENT_ID
			   "\",destination_workload=\"server\",destination_principal=\"" SERVER_ID
			   "\",connection_security_policy=\"none\"}"),
		  2, "w0 kept its own series");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_opened_total{reporter=\"source\","
			   "source_workload=\"w2\",source_principal=\"" CLIENT_ID
			   "\",destination_workload=\"server\",destination_principal=\"" SERVER_ID
			   "\",connection_security_policy=\"none\"}"),
		  -1, "w2 has no series of its own");
}

/* Small families are bounded too: drop reasons beyond 64 are counted as other. */
static void test_drop_reasons_bounded(void **state)
{
	struct sm_flow_record r;
	const char *text;

	new_agg(10);
	for (int i = 0; i < 70; i++) {
		make_conn(&r, SM_REC_CONN_END, false, 0, 0);
		r.verdict = SM_VERDICT_DROPPED;
		snprintf(r.drop_reason, sizeof(r.drop_reason), "http_%d", 400 + i);
		sm_metrics_agg_observe(agg, &r);
	}
	text = render(NULL);
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"http_463\"}"), 1, "the 64th kept");
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"http_464\"}"), -1, "the 65th not");
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"other\"}"), 6, "the rest: other");
}

static void test_lost_sources(void **state)
{
	static const char *const kernel[] = {"ringbuf", "orig_dst"};
	static const uint64_t counts[] = {12, 0};
	struct sm_metrics_inputs in = {.lost_sources = kernel, .lost_counts = counts, .nlost = 2};
	struct sm_flow_record r;
	const char *text;

	new_agg(10);
	sm_metrics_agg_lost(agg, "stream_queue", 5);
	sm_metrics_agg_lost(agg, "stream_queue", 2);
	sm_metrics_agg_lost(agg, "nothing", 0);
	/* a lost record repeats the kernel's counts: not counted again */
	memset(&r, 0, sizeof(r));
	r.type = SM_REC_LOST;
	r.lost_ringbuf = 12;
	sm_metrics_agg_observe(agg, &r);
	text = render(&in);
	ASSERT_EQ(value_of(text, "sockmesh_lost_events_total{source=\"ringbuf\"}"), 12, "kernel");
	ASSERT_EQ(value_of(text, "sockmesh_lost_events_total{source=\"orig_dst\"}"), 0,
		  "kernel, zero");
	ASSERT_EQ(value_of(text, "sockmesh_lost_events_total{source=\"stream_queue\"}"), 7,
		  "user space");
	ASSERT_EQ(value_of(text, "sockmesh_lost_events_total{source=\"nothing\"}"), -1,
		  "nothing lost, no series");
	ASSERT_EQ(value_of(text, "sockmesh_flow_records_total{type=\"lost\"}"), 1, "lost record");
	ASSERT_EQ(value_of(text, "sockmesh_drops_total{reason=\"unknown\"}"), -1,
		  "a lost record is no drop");
}

static void test_escaping(void **state)
{
	static const char *const labels[] = {"a", "b"};
	static const char *const values[] = {"x\\y\"z", "line\nbreak"};
	struct sm_flow_record r;
	const char *text;

	sm_prom_family(&page, "t_total", "counter", "help with \\ and\nnewline \"quoted\"");
	sm_prom_sample(&page, "t_total", labels, values, 2, 18446744073709551615ULL);
	sm_prom_sample(&page, "t_total", NULL, NULL, 0, 0);
	sm_prom_sample_f64(&page, "g", NULL, NULL, 0, 0.25);
	ASSERT_EQ(page.failed, false, "no allocation failure");
	ASSERT_STR_EQ(page.s,
		      "# HELP t_total help with \\\\ and\\nnewline \"quoted\"\n"
		      "# TYPE t_total counter\n"
		      "t_total{a=\"x\\\\y\\\"z\",b=\"line\\nbreak\"} 18446744073709551615\n"
		      "t_total 0\n"
		      "g 0.25\n",
		      "exposition text");

	/* a label value from a record goes through the same escaping */
	new_agg(10);
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	r.source.workload = sm_intern("we\"ird");
	sm_metrics_agg_observe(agg, &r);
	text = render(NULL);
	ASSERT_HAS(text, "source_workload=\"we\\\"ird\"", "record label escaped");
}

/* Check the page line by line: HELP and TYPE before each family's samples, counters in _total. */
static void check_exposition(const char *text)
{
	char family[128] = "", type[16] = "", line[2048], what[2200];
	const char *p = text;
	int samples = 0;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n;

		ASSERT_NOT_NULL(nl, "every line ends with a newline");
		n = (size_t) (nl - p);
		ASSERT_EQ(n < sizeof(line), 1, "line length");
		memcpy(line, p, n);
		line[n] = '\0';
		p = nl + 1;
		snprintf(what, sizeof(what), "line '%s'", line);
		if (strncmp(line, "# HELP ", 7) == 0) {
			ASSERT_EQ(sscanf(line + 7, "%127s", family), 1, what);
			type[0] = '\0';
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			char name[128];

			ASSERT_EQ(sscanf(line + 7, "%127s %15s", name, type), 2, what);
			ASSERT_STR_EQ(name, family, what);
			ASSERT_EQ(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0, 1,
				  what);
			continue;
		}
		/* a sample of the family just announced */
		ASSERT_EQ(type[0] != '\0', 1, what);
		ASSERT_EQ(strncmp(line, family, strlen(family)), 0, what);
		ASSERT_EQ(line[strlen(family)] == '{' || line[strlen(family)] == ' ', 1, what);
		if (strcmp(type, "counter") == 0)
			ASSERT_EQ(strlen(family) > 6 &&
					  strcmp(family + strlen(family) - 6, "_total") == 0,
				  1, what);
		samples++;
	}
	ASSERT_GE(samples, 1, "samples");
}

static void test_page_well_formed(void **state)
{
	static const char *const kernel[] = {"ringbuf"};
	static const uint64_t counts[] = {1};
	struct sm_metrics_inputs in = {.have_allowed = true,
				       .allowed = 1,
				       .lost_sources = kernel,
				       .lost_counts = counts,
				       .nlost = 1};
	struct sm_flow_record r;

	new_agg(1);
	make_conn(&r, SM_REC_CONN_START, false, 0, 0);
	sm_metrics_agg_observe(agg, &r);
	make_conn(&r, SM_REC_CONN_START, true, 0, 0);
	sm_metrics_agg_observe(agg, &r); /* beyond the bound: other */
	make_denied(&r, SM_VERDICT_DROPPED, "policy_denied", "rule");
	sm_metrics_agg_observe(agg, &r);
	check_exposition(render(&in));
	/* an empty aggregator's page is well formed too */
	sm_metrics_agg_free(agg);
	new_agg(10);
	check_exposition(render(NULL));
}

struct observer {
	pthread_t thread;
	bool ingress;
};

static void *observe_many(void *arg)
{
	struct observer *o = arg;
	struct sm_flow_record r;

	for (int i = 0; i < 20000; i++) {
		make_conn(&r, i % 2 ? SM_REC_CONN_END : SM_REC_CONN_START, o->ingress, 1, 0);
		sm_metrics_agg_observe(agg, &r);
	}
	return NULL;
}

/* Two threads count while a third renders: nothing is lost or torn. */
static void test_threads(void **state)
{
	struct observer o[2] = {{.ingress = false}, {.ingress = true}};
	const char *text;

	new_agg(10);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&o[i].thread, NULL, observe_many, &o[i]), 0, "thread");
	for (int i = 0; i < 20; i++)
		render(NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(o[i].thread, NULL);
	text = render(NULL);
	ASSERT_EQ(value_of(text, "sockmesh_tcp_connections_opened_total" TCP_SET("source", "none")),
		  10000, "opened");
	ASSERT_EQ(value_of(text,
			   "sockmesh_tcp_connections_closed_total" TCP_SET("destination", "none")),
		  10000, "closed");
	ASSERT_EQ(value_of(text, "sockmesh_tcp_received_bytes_total" TCP_SET("source", "none")),
		  20000, "bytes");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_new_checks_bound, free_all),
		cmocka_unit_test_teardown(test_tcp_counts_and_directions, free_all),
		cmocka_unit_test_teardown(test_tcp_labels, free_all),
		cmocka_unit_test_teardown(test_one_label_set_per_connection, free_all),
		cmocka_unit_test_teardown(test_connections_remembered_bounded, free_all),
		cmocka_unit_test_teardown(test_drops_and_verdicts, free_all),
		cmocka_unit_test_teardown(test_cardinality_bound, free_all),
		cmocka_unit_test_teardown(test_drop_reasons_bounded, free_all),
		cmocka_unit_test_teardown(test_lost_sources, free_all),
		cmocka_unit_test_teardown(test_escaping, free_all),
		cmocka_unit_test_teardown(test_page_well_formed, free_all),
		cmocka_unit_test_teardown(test_threads, free_all),
	};

	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
