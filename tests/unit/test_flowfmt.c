// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/flowfmt.c: compact and VPC lines, the stream's notice, times. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flowfmt.h"

/* 2026-11-29T20:01:02.123456Z and the connection's start 2.5 s before. */
#define T_END	1795982462123456000LL
#define T_START 1795982459623456000LL

/* A conn_end of client (10.11.0.1:40000) to server2 (10.11.0.2:8080), written by node1. */
static void conn_end(struct sm_flow_record *r)
{
	memset(r, 0, sizeof(*r));
	r->type = SM_REC_CONN_END;
	r->time_ns = T_END;
	r->start_ns = T_START;
	sm_strlcpy(r->node, "node1", sizeof(r->node));
	r->verdict = SM_VERDICT_FORWARDED;
	r->direction = SM_DIR_EGRESS;
	sm_addr_parse("10.11.0.1", &r->source.addr);
	r->source.port = 40000;
	r->source.identity = 257;
	r->source.spiffe_id = sm_intern("spiffe://example.org/ns/demo/sa/client");
	r->source.workload = sm_intern("client");
	sm_addr_parse("10.11.0.2", &r->destination.addr);
	r->destination.port = 8080;
	r->destination.identity = 258;
	r->destination.spiffe_id = sm_intern("spiffe://example.org/ns/demo/sa/server");
	r->total = (struct sm_flow_counters){1000, 2000, 30, 40};
	r->delta = (struct sm_flow_counters){100, 200, 2, 3};
}

/* The same connection seen by the server's socket on node2, over IPv6, from the world. */
static void conn_ingress6(struct sm_flow_record *r)
{
	conn_end(r);
	sm_strlcpy(r->node, "node2", sizeof(r->node));
	r->direction = SM_DIR_INGRESS;
	sm_addr_parse("fc42::1", &r->source.addr);
	r->source.identity = 2;
	r->source.spiffe_id = NULL;
	r->source.workload = NULL;
	sm_addr_parse("fc42::2", &r->destination.addr);
	r->destination.workload = sm_intern("server2");
}

static void denied(struct sm_flow_record *r)
{
	conn_end(r);
	r->type = SM_REC_DENIED;
	r->verdict = SM_VERDICT_DROPPED;
	sm_strlcpy(r->drop_reason, "policy_default_deny", sizeof(r->drop_reason));
	r->source.port = 0;
	r->start_ns = r->time_ns;
	memset(&r->total, 0, sizeof(r->total));
	memset(&r->delta, 0, sizeof(r->delta));
}

static void lost(struct sm_flow_record *r)
{
	memset(r, 0, sizeof(*r));
	r->type = SM_REC_LOST;
	r->time_ns = T_END;
	sm_strlcpy(r->node, "node1", sizeof(r->node));
	r->lost_ringbuf = 12;
	r->lost_sockhash = 3;
}

static void test_compact(void **state)
{
	struct sm_flow_record r;
	char buf[SM_FLOWFMT_MAX];

	(void) state;
	conn_end(&r);
	ASSERT_EQ(sm_flowfmt_compact(&r, buf, sizeof(buf)), strlen(buf), "return is the length");
	ASSERT_STR_EQ(buf,
		      "2026-11-29T20:01:02.123Z node1: 10.11.0.1:40000 (client) -> "
		      "10.11.0.2:8080 (spiffe://example.org/ns/demo/sa/server) FORWARDED conn_end "
		      "egress 1000/2000 B",
		      "egress conn_end: workload, else SPIFFE ID; bytes as the source sent/got");

	conn_ingress6(&r);
	sm_flowfmt_compact(&r, buf, sizeof(buf));
	ASSERT_STR_EQ(buf,
		      "2026-11-29T20:01:02.123Z node2: [fc42::1]:40000 (world) -> "
		      "[fc42::2]:8080 (server2) FORWARDED conn_end ingress 2000/1000 B",
		      "ingress: the server socket's counters turned into source -> destination");

	r.source.identity = 1;
	sm_flowfmt_compact(&r, buf, sizeof(buf));
	ASSERT_HAS(buf, "[fc42::1]:40000 (host) ->", "identity 1 is the host");
	r.source.identity = 300;
	sm_flowfmt_compact(&r, buf, sizeof(buf));
	ASSERT_HAS(buf, "(identity 300) ->", "an identity without a name");

	denied(&r);
	sm_flowfmt_compact(&r, buf, sizeof(buf));
	ASSERT_STR_EQ(buf,
		      "2026-11-29T20:01:02.123Z node1: 10.11.0.1:0 (client) -> 10.11.0.2:8080 "
		      "(spiffe://example.org/ns/demo/sa/server) DROPPED policy_default_deny egress",
		      "denied: the drop reason instead of the type, no bytes");

	r.verdict = SM_VERDICT_AUDIT;
	r.drop_reason[0] = '\0';
	sm_flowfmt_compact(&r, buf, sizeof(buf));
	ASSERT_HAS(buf, " AUDIT denied egress", "audit: verdict and type");

	lost(&r);
	sm_flowfmt_compact(&r, buf, sizeof(buf));
	ASSERT_STR_EQ(buf,
		      "2026-11-29T20:01:02.123Z node1: LOST ringbuf 12, sockhash 3 (events the "
		      "kernel could not report)",
		      "lost: the non-zero counts");
}

static void test_compact_hostile_names(void **state)
{
	struct sm_flow_record r;
	char buf[SM_FLOWFMT_MAX];

	(void) state;
	conn_end(&r);
	r.source.workload = sm_intern("a\x1b[31mb\n");
	sm_strlcpy(r.drop_reason, "x\ty", sizeof(r.drop_reason));
	sm_flowfmt_compact(&r, buf, sizeof(buf));
	ASSERT_HAS(buf, "(a?[31mb?)", "escape and newline shown as '?'");
	ASSERT_HAS(buf, " x?y ", "tab in a drop reason");
	ASSERT_EQ(strchr(buf, '\x1b') == NULL, 1, "no escape character left");
}

static void test_truncation(void **state)
{
	struct sm_flow_record r;
	char full[SM_FLOWFMT_MAX], small[16];
	int need;

	(void) state;
	conn_end(&r);
	need = sm_flowfmt_compact(&r, full, sizeof(full));
	ASSERT_EQ(sm_flowfmt_compact(&r, small, sizeof(small)), need, "cut: still the full length");
	ASSERT_EQ(strlen(small), sizeof(small) - 1, "cut text fills the buffer");
	ASSERT_EQ(strncmp(small, full, sizeof(small) - 1), 0, "cut text is the beginning");
	ASSERT_EQ(sm_flowfmt_compact(&r, NULL, 0), need, "no buffer: only the length");

	/* a cut in the middle of a name, where put_clean writes byte by byte */
	need = sm_flowfmt_compact(&r, full, sizeof(full));
	for (size_t n = 1; n < (size_t) need; n += 7) {
		char *b = malloc(n);

		ASSERT_NOT_NULL(b, "malloc");
		ASSERT_EQ(sm_flowfmt_compact(&r, b, n), need, "length at every cut");
		ASSERT_EQ(strlen(b), n - 1, "terminated at every cut");
		free(b);
	}
	r.type = SM_REC_TYPE_MAX;
	ASSERT_EQ(sm_flowfmt_compact(&r, full, sizeof(full)), -EINVAL, "unknown type");
	ASSERT_EQ(sm_flowfmt_vpc(&r, full, sizeof(full)), -EINVAL, "unknown type (vpc)");
}

static void test_vpc(void **state)
{
	struct sm_flow_record r;
	char buf[SM_FLOWFMT_MAX];

	(void) state;
	conn_end(&r);
	ASSERT_EQ(sm_flowfmt_vpc(&r, buf, sizeof(buf)), strlen(buf), "return is the length");
	ASSERT_STR_EQ(buf,
		      "2 - - 10.11.0.1 10.11.0.2 40000 8080 6 3 100 1795982459 1795982462 ACCEPT "
		      "OK\n"
		      "2 - - 10.11.0.2 10.11.0.1 8080 40000 6 2 200 1795982459 1795982462 ACCEPT "
		      "OK\n",
		      "egress: both directions from delta (segs_out/bytes_sent first)");

	conn_ingress6(&r);
	sm_flowfmt_vpc(&r, buf, sizeof(buf));
	ASSERT_STR_EQ(buf,
		      "2 - - fc42::1 fc42::2 40000 8080 6 2 200 1795982459 1795982462 ACCEPT OK\n"
		      "2 - - fc42::2 fc42::1 8080 40000 6 3 100 1795982459 1795982462 ACCEPT OK\n",
		      "ingress: what the server socket received is the client's direction");
}

static void test_vpc_actions(void **state)
{
	struct sm_flow_record r;
	char buf[SM_FLOWFMT_MAX];

	(void) state;
	conn_end(&r);
	r.verdict = SM_VERDICT_DROPPED;
	sm_strlcpy(r.drop_reason, "policy_revoked", sizeof(r.drop_reason));
	sm_flowfmt_vpc(&r, buf, sizeof(buf));
	ASSERT_EQ(strstr(buf, "ACCEPT") == NULL, 1, "a dropped connection is not ACCEPT");
	ASSERT_HAS(buf, " 6 3 100 1795982459 1795982462 REJECT OK\n",
		   "dropped: REJECT, bytes kept");

	denied(&r);
	sm_flowfmt_vpc(&r, buf, sizeof(buf));
	ASSERT_STR_EQ(buf,
		      "2 - - 10.11.0.1 10.11.0.2 0 8080 6 0 0 1795982462 1795982462 REJECT OK\n",
		      "denied: one line, REJECT");

	r.verdict = SM_VERDICT_AUDIT;
	sm_flowfmt_vpc(&r, buf, sizeof(buf));
	ASSERT_HAS(buf, " ACCEPT OK\n", "audit: allowed");

	lost(&r);
	sm_flowfmt_vpc(&r, buf, sizeof(buf));
	ASSERT_STR_EQ(buf, "2 - - - - - - - - - 1795982462 1795982462 - SKIPDATA\n",
		      "lost: SKIPDATA");
	ASSERT_STR_EQ(SM_FLOWFMT_VPC_HEADER,
		      "version account-id interface-id srcaddr dstaddr srcport dstport protocol "
		      "packets bytes start end action log-status",
		      "AWS's default format, in order");
}

static void test_skipped(void **state)
{
	struct sm_flow_skipped s = {.count = 42,
				    .reason = SM_SKIPPED_SLOW_READER,
				    .time_ns = T_END,
				    .node = "node1"},
			       back;
	struct sm_flow_record r;
	char buf[SM_FLOWFMT_MAX], *line;

	(void) state;
	line = sm_flow_skipped_encode(&s);
	ASSERT_NOT_NULL(line, "encode");
	ASSERT_STR_EQ(line,
		      "{\"skipped\":42,\"reason\":\"slow_reader\",\"time\":\"2026-11-29T20:01:02."
		      "123456Z\",\"node\":\"node1\"}\n",
		      "the notice line");
	ASSERT_EQ(sm_flow_skipped_decode(line, &back), 0, "decode");
	ASSERT_EQ(back.count, 42, "count");
	ASSERT_STR_EQ(back.reason, "slow_reader", "reason");
	ASSERT_EQ(back.time_ns, T_END / 1000 * 1000, "time, to the microsecond");
	ASSERT_STR_EQ(back.node, "node1", "node");
	ASSERT_EQ(sm_flow_record_decode(line, &r), -EINVAL, "a notice is not a flow record");
	free(line);

	conn_end(&r);
	ASSERT_EQ(sm_flow_record_encode(&r, &line), 0, "encode a record");
	ASSERT_EQ(sm_flow_skipped_decode(line, &back), -EINVAL, "a record is not a notice");
	free(line);
	ASSERT_EQ(sm_flow_skipped_decode("{\"skipped\":-1,\"reason\":\"x\",\"time\":\"2026-11-"
					 "29T20:01:02Z\",\"node\":\"n\"}",
					 &back),
		  -EINVAL, "negative count");
	ASSERT_EQ(sm_flow_skipped_decode("{\"skipped\":1,\"reason\":\"x\",\"time\":\"yesterday\","
					 "\"node\":\"n\"}",
					 &back),
		  -EINVAL, "bad time");
	ASSERT_EQ(sm_flow_skipped_decode("not json", &back), -EINVAL, "not JSON");

	sm_flowfmt_compact_skipped(&s, buf, sizeof(buf));
	ASSERT_STR_EQ(buf,
		      "2026-11-29T20:01:02.123Z node1: SKIPPED 42 records (slow_reader: this "
		      "reader did not keep up; they are in the flow log)",
		      "compact notice");
	sm_strlcpy(s.reason, SM_SKIPPED_DAEMON_BUSY, sizeof(s.reason));
	sm_flowfmt_compact_skipped(&s, buf, sizeof(buf));
	ASSERT_HAS(buf, "(daemon_busy: the daemon did not keep up", "busy notice");
	sm_flowfmt_vpc_skipped(&s, buf, sizeof(buf));
	ASSERT_STR_EQ(buf, "2 - - - - - - - - - 1795982462 1795982462 - SKIPDATA\n",
		      "vpc notice: SKIPDATA");
}

static void test_parse_time(void **state)
{
	static const struct {
		const char *text;
		int ret;
		long long ns;
	} cases[] = {
		{"2026-11-29T20:01:02Z", 0, 1795982462000000000LL},
		{"2026-11-29T20:01:02.123456Z", 0, 1795982462123456000LL},
		{"2026-11-29T20:01:02.123456789Z", 0, 1795982462123456789LL},
		{"2026-11-29T20:01:02.1234567891Z", 0, 1795982462123456789LL},
		{"2026-11-29t20:01:02.5z", 0, 1795982462500000000LL},
		{"2026-11-29 20:01:02Z", 0, 1795982462000000000LL},
		{"2026-11-29T22:01:02+02:00", 0, 1795982462000000000LL},
		{"2026-11-29T15:31:02-04:30", 0, 1795982462000000000LL},
		{"1970-01-01T00:00:00Z", 0, 0},
		{"2016-12-31T23:59:60Z", 0, 1483228800000000000LL},
		{"2024-02-29T00:00:00Z", 0, 1709164800000000000LL},
		{"2026-02-29T00:00:00Z", -EINVAL, 0},
		{"2026-04-31T00:00:00Z", -EINVAL, 0},
		{"2026-13-01T00:00:00Z", -EINVAL, 0},
		{"2026-11-29T24:00:00Z", -EINVAL, 0},
		{"2026-11-29T20:01:02", -EINVAL, 0},
		{"2026-11-29T20:01:02.Z", -EINVAL, 0},
		{"2026-11-29T20:01:02Zx", -EINVAL, 0},
		{"2026-11-29T20:01:02+2:00", -EINVAL, 0},
		{"2026-11-29", -EINVAL, 0},
		{"1969-12-31T23:59:59Z", -EINVAL, 0},
		{"1970-01-01T00:30:00+01:00", -EINVAL, 0},
		{"2263-01-01T00:00:00Z", -EINVAL, 0},
		{"", -EINVAL, 0},
	};

	(void) state;
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		int64_t ns = -1;
		int ret = sm_flowfmt_parse_time(cases[i].text, &ns);

		if (ret != cases[i].ret)
			fail_msg("'%s': got %d, want %d", cases[i].text, ret, cases[i].ret);
		if (!ret && ns != cases[i].ns)
			fail_msg("'%s': got %lld ns, want %lld", cases[i].text, (long long) ns,
				 cases[i].ns);
	}
}

static void test_parse_since(void **state)
{
	static const struct {
		const char *text;
		int ret;
		long long before; /* now - result, ns */
	} cases[] = {
		{"30s", 0, 30000000000LL},
		{"5m", 0, 300000000000LL},
		{"1h", 0, 3600000000000LL},
		{"2d", 0, 172800000000000LL},
		{"1h30m", 0, 5400000000000LL},
		{"250ms", 0, 250000000LL},
		{"1m30s500ms", 0, 90500000000LL},
		{"0s", 0, 0},
		{"5", -EINVAL, 0},
		{"m", -EINVAL, 0},
		{"5x", -EINVAL, 0},
		{"-5m", -EINVAL, 0},
		{"5 m", -EINVAL, 0},
		{"", -EINVAL, 0},
		{"99999999999999999999s", -ERANGE, 0},
		{"200000000d", -ERANGE, 0},
		{"1000000d", -ERANGE, 0}, /* before 1970 */
	};
	const int64_t now = T_END;
	int64_t ns;

	(void) state;
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		int ret = sm_flowfmt_parse_since(cases[i].text, now, &ns);

		if (ret != cases[i].ret)
			fail_msg("'%s': got %d, want %d", cases[i].text, ret, cases[i].ret);
		if (!ret && now - ns != cases[i].before)
			fail_msg("'%s': got now - %lld ns, want now - %lld", cases[i].text,
				 (long long) (now - ns), cases[i].before);
	}
	ASSERT_EQ(sm_flowfmt_parse_since("2026-11-29T20:00:00Z", now, &ns), 0, "RFC 3339 too");
	ASSERT_EQ(ns, 1795982400000000000LL, "RFC 3339 is absolute");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compact),	    cmocka_unit_test(test_compact_hostile_names),
		cmocka_unit_test(test_truncation),  cmocka_unit_test(test_vpc),
		cmocka_unit_test(test_vpc_actions), cmocka_unit_test(test_skipped),
		cmocka_unit_test(test_parse_time),  cmocka_unit_test(test_parse_since),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
