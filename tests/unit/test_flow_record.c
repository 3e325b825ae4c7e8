// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/flow_record.c: the JSON schema, round trips, strict decoding. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flow_record.h"

#include <json-c/json.h>

#define T0 1795982462123456000LL /* 2026-11-29T20:01:02.123456Z */

/* Encoded text of the test being run: freed by teardown even when a check fails. */
static char *json_text;

static int free_text(void **state)
{
	free(json_text);
	json_text = NULL;
	return 0;
}

static void set_ep(struct sm_flow_endpoint *ep, const char *ip, uint16_t port, uint32_t identity,
		   const char *spiffe_id, const char *workload)
{
	memset(ep, 0, sizeof(*ep));
	assert_int_equal(sm_addr_parse(ip, &ep->addr), 0);
	ep->port = port;
	ep->identity = identity;
	/* unknown is NULL, as a record the daemon fills (and the decoder) leaves it */
	ep->spiffe_id = *spiffe_id ? sm_intern(spiffe_id) : NULL;
	ep->workload = *workload ? sm_intern(workload) : NULL;
}

/* A conn_end the daemon could write for a captured IPv4 connection. */
static void make_conn(struct sm_flow_record *r)
{
	memset(r, 0, sizeof(*r));
	r->type = SM_REC_CONN_END;
	r->time_ns = T0;
	strcpy(r->node, "node1");
	r->verdict = SM_VERDICT_FORWARDED;
	r->direction = SM_DIR_EGRESS;
	set_ep(&r->source, "10.11.0.1", 40000, 256, "spiffe://example.org/ns/demo/sa/client",
	       "client");
	r->source.node = sm_intern("node1");
	r->source.cgroup = sm_intern("sockmesh/client");
	set_ep(&r->destination, "10.11.0.2", 8080, 257, "spiffe://example.org/ns/demo/sa/server",
	       "server2");
	r->captured = true;
	r->same_node = false;
	r->redirected = false;
	r->cookie = 4097;
	r->cgroup_id = 12345;
	r->start_ns = T0 - 2500000000LL;
	r->duration_us = 2500000;
	r->total = (struct sm_flow_counters){1000, 2000, 30, 40};
	r->delta = (struct sm_flow_counters){100, 200, 3, 4};
	r->srtt_us = 150;
	r->total_retrans = 2;
	r->redirected_bytes = 0;
}

static const char golden_conn_end[] =
	"{\"version\":1,\"type\":\"conn_end\",\"time\":\"2026-11-29T20:01:02.123456Z\","
	"\"node\":\"node1\",\"verdict\":\"FORWARDED\",\"traffic_direction\":\"EGRESS\","
	"\"reporter\":\"source\","
	"\"ip\":{\"family\":\"IPv4\"},\"l4\":{\"protocol\":\"TCP\"},"
	"\"source\":{\"ip\":\"10.11.0.1\",\"port\":40000,\"identity\":256,"
	"\"spiffe_id\":\"spiffe://example.org/ns/demo/sa/client\",\"workload\":\"client\","
	"\"node\":\"node1\",\"cgroup\":\"sockmesh/client\"},"
	"\"destination\":{\"ip\":\"10.11.0.2\",\"port\":8080,\"identity\":257,"
	"\"spiffe_id\":\"spiffe://example.org/ns/demo/sa/server\",\"workload\":\"server2\"},"
	"\"captured\":true,\"same_node\":false,\"redirected\":false,\"socket_cookie\":4097,"
	"\"cgroup_id\":12345,\"start_time\":\"2026-11-29T20:00:59.623456Z\","
	"\"duration_us\":2500000,"
	"\"counters\":{\"bytes_sent\":1000,\"bytes_received\":2000,\"segs_in\":30,"
	"\"segs_out\":40,\"redirected_bytes_sent\":0},"
	"\"delta\":{\"bytes_sent\":100,\"bytes_received\":200,\"segs_in\":3,\"segs_out\":4},"
	"\"tcp\":{\"srtt_us\":150,\"total_retrans\":2}}";

/* encode, decode, and require the decoded record to equal the original byte for byte */
static void round_trip(const struct sm_flow_record *r, const char *what)
{
	struct sm_flow_record back;

	free_text(NULL);
	ASSERT_EQ(sm_flow_record_encode(r, &json_text), 0, what);
	ASSERT_EQ(strchr(json_text, '\n') == NULL, 1, "no newline in a record");
	ASSERT_EQ(sm_flow_record_decode(json_text, &back), 0, json_text);
	if (memcmp(&back, r, sizeof(back)) != 0) {
		print_error("FAIL %s: decoded record differs from the original: %s\n", what,
			    json_text);
		fail();
	}
}

static void test_golden_conn_end(void **state)
{
	struct sm_flow_record r;

	make_conn(&r);
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), 0, "encode");
	ASSERT_STR_EQ(json_text, golden_conn_end, "conn_end encoding");
	round_trip(&r, "conn_end");
}

static void test_golden_lost(void **state)
{
	struct sm_flow_record r = {0}, back;

	r.type = SM_REC_LOST;
	r.time_ns = T0;
	strcpy(r.node, "node2");
	r.lost_ringbuf = 5;
	r.lost_orig_dst = 0;
	r.lost_storage = 1;
	r.lost_sockhash = 7;
	r.lost_queue = 3;
	r.lost_rate_limited = 11;
	r.lost_write_failed = 13;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), 0, "encode lost");
	ASSERT_STR_EQ(json_text,
		      "{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		      "\"node\":\"node2\",\"lost\":{\"ringbuf\":5,\"orig_dst\":0,\"storage\":1,"
		      "\"sockhash\":7,\"queue\":3,\"rate_limited\":11,\"write_failed\":13}}",
		      "lost encoding");
	ASSERT_EQ(sm_flow_record_decode(json_text, &back), 0, "decode lost");
	ASSERT_EQ(memcmp(&back, &r, sizeof(r)), 0, "lost round trip");
	/* a lost record of an older build has no write_failed: read as 0 */
	ASSERT_EQ(
		sm_flow_record_decode("{\"version\":1,\"type\":\"lost\",\"time\":"
				      "\"2026-11-29T20:01:02.123456Z\",\"node\":\"n\",\"lost\":"
				      "{\"ringbuf\":5,\"orig_dst\":0,\"storage\":1,\"sockhash\":7,"
				      "\"queue\":3,\"rate_limited\":11}}",
				      &back),
		0, "decode a lost record without write_failed");
	ASSERT_EQ(back.lost_write_failed, 0, "write_failed absent: 0");
}

static void test_round_trip_types(void **state)
{
	static const enum sm_flow_record_type types[] = {SM_REC_CONN_START, SM_REC_CONN_UPDATE,
							 SM_REC_CONN_END, SM_REC_DENIED};
	struct sm_flow_record r;

	for (size_t i = 0; i < SM_ARRAY_SIZE(types); i++) {
		make_conn(&r);
		r.type = types[i];
		round_trip(&r, sm_flow_record_type_name(types[i]));
		ASSERT_HAS(json_text, sm_flow_record_type_name(types[i]), "type name in JSON");
	}
	make_conn(&r);
	r.type = SM_REC_DENIED;
	r.verdict = SM_VERDICT_DROPPED;
	strcpy(r.drop_reason, "POLICY_DENIED");
	round_trip(&r, "denied with drop_reason");
	ASSERT_HAS(json_text, "\"verdict\":\"DROPPED\",\"drop_reason\":\"POLICY_DENIED\",",
		   "drop_reason follows verdict");
	make_conn(&r);
	r.verdict = SM_VERDICT_AUDIT;
	r.direction = SM_DIR_INGRESS;
	round_trip(&r, "AUDIT INGRESS");
	ASSERT_HAS(json_text, "\"traffic_direction\":\"INGRESS\"", "INGRESS");
}

static void test_round_trip_edges(void **state)
{
	static const uint64_t values[] = {
		0, 1, UINT32_MAX, 1ULL << 32, 1ULL << 62, (1ULL << 63) - 1, 1ULL << 63, UINT64_MAX};
	struct sm_flow_record r;
	char what[64];

	for (size_t i = 0; i < SM_ARRAY_SIZE(values); i++) {
		uint64_t v = values[i];

		make_conn(&r);
		r.cookie = r.cgroup_id = r.duration_us = r.redirected_bytes = v;
		r.total = (struct sm_flow_counters){v, v, v, v};
		r.delta = (struct sm_flow_counters){v, v, v, v};
		r.srtt_us = r.total_retrans = (uint32_t) (v > UINT32_MAX ? UINT32_MAX : v);
		r.source.identity = r.destination.identity = r.srtt_us;
		snprintf(what, sizeof(what), "64-bit fields = %llu", (unsigned long long) v);
		round_trip(&r, what);

		memset(&r, 0, sizeof(r));
		r.type = SM_REC_LOST;
		r.time_ns = T0;
		strcpy(r.node, "n");
		r.lost_ringbuf = r.lost_orig_dst = r.lost_storage = r.lost_sockhash = v;
		r.lost_queue = r.lost_rate_limited = r.lost_write_failed = v;
		round_trip(&r, what);
	}
	/* ports and times at their ends */
	make_conn(&r);
	r.source.port = 0;
	r.destination.port = 65535;
	r.time_ns = 0;
	r.start_ns = 0;
	round_trip(&r, "port 0/65535, time 0");
	ASSERT_HAS(json_text, "\"time\":\"1970-01-01T00:00:00.000000Z\"", "epoch");
	make_conn(&r);
	r.time_ns = 4102444799999999000LL; /* 2099-12-31T23:59:59.999999Z */
	round_trip(&r, "late time");
	ASSERT_HAS(json_text, "\"2099-12-31T23:59:59.999999Z\"", "late time text");
}

static void test_round_trip_ipv6_and_omitted(void **state)
{
	struct sm_flow_record r;

	make_conn(&r);
	set_ep(&r.source, "fc42::1", 40000, 2, "", "");
	set_ep(&r.destination, "fc42::2", 8080, 257, "spiffe://example.org/x", "");
	r.same_node = true;
	r.redirected = true;
	r.captured = false;
	round_trip(&r, "IPv6, world source");
	ASSERT_HAS(json_text, "\"ip\":{\"family\":\"IPv6\"}", "family IPv6");
	ASSERT_HAS(json_text, "\"source\":{\"ip\":\"fc42::1\",\"port\":40000,\"identity\":2}",
		   "empty spiffe_id and workload omitted");
	ASSERT_HAS(json_text, "\"spiffe_id\":\"spiffe://example.org/x\"}", "slashes unescaped");
	ASSERT_EQ(strstr(json_text, "drop_reason") == NULL, 1, "empty drop_reason omitted");
	ASSERT_HAS(json_text, "\"same_node\":true,\"redirected\":true", "booleans");

	/* strings that need JSON escaping survive */
	make_conn(&r);
	memset(r.node, 0, sizeof(r.node));
	strcpy(r.node, "n\"1\\\t/");
	r.source.workload = sm_intern("w\xc3\xa9");
	round_trip(&r, "escaped strings");
}

/* Sub-microsecond parts are not encoded: decoding gives the time truncated to µs. */
static void test_time_precision(void **state)
{
	struct sm_flow_record r, back;

	make_conn(&r);
	r.time_ns = T0 + 999;
	r.start_ns = T0 - 1;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), 0, "encode");
	ASSERT_EQ(sm_flow_record_decode(json_text, &back), 0, "decode");
	ASSERT_EQ(back.time_ns, T0, "time truncated to the microsecond");
	ASSERT_EQ(back.start_ns, T0 - 1000, "start_time truncated to the microsecond");
}

static void test_encode_rejects(void **state)
{
	struct sm_flow_record r;

	make_conn(&r);
	r.type = SM_REC_TYPE_MAX;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "type out of range");
	ASSERT_EQ(json_text == NULL, 1, "no output on error");
	make_conn(&r);
	r.verdict = SM_VERDICT_MAX;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "verdict out of range");
	make_conn(&r);
	r.direction = (enum sm_direction) 7;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "direction out of range");
	make_conn(&r);
	r.source.addr.family = 0;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "no address family");
	make_conn(&r);
	assert_int_equal(sm_addr_parse("::1", &r.destination.addr), 0);
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "mixed families");
	make_conn(&r);
	r.time_ns = -1;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "time before 1970");
	make_conn(&r);
	memset(r.node, 'x', sizeof(r.node));
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "unterminated node");
	make_conn(&r);
	{
		/* a string longer than the schema allows is refused, not cut */
		char long_id[SM_FLOW_SPIFFE_MAX + 1];

		memset(long_id, 'x', sizeof(long_id) - 1);
		long_id[sizeof(long_id) - 1] = '\0';
		r.source.spiffe_id = long_id;
		ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "spiffe_id too long");
		ASSERT_EQ(json_text == NULL, 1, "no output on error");
		long_id[SM_FLOW_SPIFFE_MAX - 1] = '\0'; /* 255 bytes: the most there may be */
		ASSERT_EQ(sm_flow_record_encode(&r, &json_text), 0, "a 255-byte spiffe_id");
		free_text(NULL);
		r.source.spiffe_id = NULL;
	}
	make_conn(&r);
	r.tls.present = true;
	r.tls.peer_spiffe_id = "";
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), 0, "an empty string is omitted");
	ASSERT_EQ(strstr(json_text, "peer_spiffe_id") == NULL, 1, "empty peer_spiffe_id omitted");
	free_text(NULL);
}

/* Make text from the golden record with one substring replaced. */
static char *mutate(const char *find, const char *repl)
{
	const char *at = strstr(golden_conn_end, find);
	size_t head, flen = strlen(find), rlen = strlen(repl);
	char *out;

	if (!at) {
		print_error("test bug: '%s' is not in the golden record\n", find);
		return NULL;
	}
	head = (size_t) (at - golden_conn_end);
	out = malloc(strlen(golden_conn_end) - flen + rlen + 1);
	if (!out)
		return NULL;
	memcpy(out, golden_conn_end, head);
	memcpy(out + head, repl, rlen);
	strcpy(out + head + rlen, at + flen);
	return out;
}

static void test_decode_rejects(void **state)
{
	static const struct {
		const char *find, *repl;
	} cases[] = {
		/* header */
		{"\"version\":1", "\"version\":2"},
		{"\"version\":1", "\"version\":0"},
		{"\"version\":1", "\"version\":\"1\""},
		{"\"version\":1", "\"version\":1.0"},
		{"\"version\":1,", ""},
		{"\"conn_end\"", "\"conn_ended\""},
		{"\"conn_end\"", "\"CONN_END\""},
		{"\"conn_end\"", "3"},
		{"\"type\":\"conn_end\",", ""},
		{"2026-11-29T20:01:02.123456Z", "2026-11-29 20:01:02.123456Z"},
		{"2026-11-29T20:01:02.123456Z", "2026-11-29T20:01:02Z"},
		{"2026-11-29T20:01:02.123456Z", "2026-11-29T20:01:02.123456+00:00"},
		{"2026-11-29T20:01:02.123456Z", "2026-11-29T20:01:02.1234567Z"},
		{"2026-11-29T20:01:02.123456Z", "2026-02-30T20:01:02.123456Z"},
		{"2026-11-29T20:01:02.123456Z", "2026-13-29T20:01:02.123456Z"},
		{"2026-11-29T20:01:02.123456Z", "2026-11-29T24:01:02.123456Z"},
		{"2026-11-29T20:01:02.123456Z", "1969-12-31T23:59:59.000000Z"},
		{"2026-11-29T20:01:02.123456Z", "2026-11-2xT20:01:02.123456Z"},
		{"\"time\":\"2026-11-29T20:01:02.123456Z\"", "\"time\":1795982462"},
		{"\"node\":\"node1\",", ""},
		{"\"node\":\"node1\"", "\"node\":null"},
		{"\"node\":\"node1\"",
		 "\"node\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""},
		{"\"node\":\"node1\"", "\"node\":\"no\\u0000de\""},
		/* connection fields */
		{"\"FORWARDED\"", "\"forwarded\""},
		{"\"FORWARDED\"", "\"DENIED\""},
		{"\"verdict\":\"FORWARDED\",", ""},
		{"\"EGRESS\"", "\"OUTBOUND\""},
		{"\"traffic_direction\":\"EGRESS\",", ""},
		{"\"reporter\":\"source\",", ""},
		{"\"reporter\":\"source\"", "\"reporter\":\"destination\""},
		{"\"reporter\":\"source\"", "\"reporter\":\"src\""},
		{"\"cgroup\":\"sockmesh/client\"", "\"cgroup\":12"},
		{"\"workload\":\"client\",\"node\":\"node1\"",
		 "\"workload\":\"client\",\"node\":1"},
		{"\"FORWARDED\",", "\"FORWARDED\",\"drop_reason\":5,"},
		{"\"IPv4\"", "\"IPv6\""},
		{"\"IPv4\"", "\"ipv4\""},
		{"\"ip\":{\"family\":\"IPv4\"},", ""},
		{"\"TCP\"", "\"UDP\""},
		{"\"l4\":{\"protocol\":\"TCP\"},", ""},
		{"\"10.11.0.1\"", "\"10.11.0.256\""},
		{"\"10.11.0.1\"", "\"fc42::1\""},
		{"\"ip\":\"10.11.0.1\",", ""},
		{"\"port\":40000", "\"port\":65536"},
		{"\"port\":40000", "\"port\":-1"},
		{"\"port\":40000", "\"port\":\"40000\""},
		{"\"port\":8080,", ""},
		{"\"identity\":256", "\"identity\":4294967296"},
		{"\"identity\":256", "\"identity\":-256"},
		{"\"identity\":257,", ""},
		{"\"workload\":\"client\"", "\"workload\":7"},
		{"\"spiffe_id\":\"spiffe://example.org/ns/demo/sa/client\"", "\"spiffe_id\":[]"},
		{"\"source\":{", "\"source\":[{"},
		{"\"captured\":true", "\"captured\":1"},
		{"\"captured\":true", "\"captured\":\"true\""},
		{"\"same_node\":false,", ""},
		{"\"redirected\":false,", ""},
		{"\"socket_cookie\":4097", "\"socket_cookie\":-4097"},
		{"\"socket_cookie\":4097", "\"socket_cookie\":18446744073709551616"},
		{"\"socket_cookie\":4097", "\"socket_cookie\":99999999999999999999999"},
		{"\"socket_cookie\":4097", "\"socket_cookie\":000000000000000000004097"},
		{"\"bytes_sent\":1000", "\"bytes_sent\":-9223372036854775809"},
		{"\"cgroup_id\":12345,", ""},
		{"\"start_time\":\"2026-11-29T20:00:59.623456Z\",", ""},
		{"\"duration_us\":2500000", "\"duration_us\":2.5e6"},
		{"\"bytes_sent\":1000", "\"bytes_sent\":-1"},
		{"\"bytes_sent\":1000", "\"bytes_sent\":1000.5"},
		{"\"bytes_received\":2000,", ""},
		{",\"redirected_bytes_sent\":0", ""},
		{"\"segs_out\":4}", "\"segs_out\":null}"},
		{"\"delta\":{", "\"delta_\":{"},
		{"\"srtt_us\":150", "\"srtt_us\":4294967296"},
		{",\"total_retrans\":2", ""},
		{",\"tcp\":{\"srtt_us\":150,\"total_retrans\":2}", ""},
		/* not one JSON object */
		{"}}", "}"},
		{"}}", "}},}"},
		{"}}", "}}x"},
		{"}}", "}}{}"},
		{"\"node\":\"node1\",", "\"node\":\"node1\",,"},
		{"\"node\":\"node1\"", "'node':'node1'"},
		{"\"node\":\"node1\",", "/* c */\"node\":\"node1\","},
		{"{\"version\"", "[{\"version\""},
	};
	struct sm_flow_record r;
	char what[256];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		free_text(NULL);
		json_text = mutate(cases[i].find, cases[i].repl);
		assert_non_null(json_text);
		snprintf(what, sizeof(what), "case %zu: '%s' -> '%s'", i, cases[i].find,
			 cases[i].repl);
		memset(&r, 0x5a, sizeof(r));
		ASSERT_EQ(sm_flow_record_decode(json_text, &r), -EINVAL, what);
		ASSERT_EQ(r.node[0] == 0 && r.time_ns == 0, 1, "record cleared on error");
	}

	static const char *const texts[] = {
		"",
		" ",
		"null",
		"1",
		"\"conn_end\"",
		"[]",
		"{}",
		"{\"version\":1}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\"}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":1,\"orig_dst\":2,\"storage\":3}}",
		/* queue and rate_limited are required */
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":1,\"orig_dst\":2,\"storage\":3,"
		"\"sockhash\":4}}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":1,\"orig_dst\":2,\"storage\":3,"
		"\"sockhash\":4,\"queue\":0}}",
		/* sources: a non-empty list of {identity, ip?, suppressed} */
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":1,\"orig_dst\":2,\"storage\":3,"
		"\"sockhash\":4,\"queue\":0,\"rate_limited\":0,\"rate_limited_sources\":[]}}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":1,\"orig_dst\":2,\"storage\":3,"
		"\"sockhash\":4,\"queue\":0,\"rate_limited\":1,\"rate_limited_sources\":"
		"[{\"identity\":2,\"ip\":\"not-an-ip\",\"suppressed\":1}]}}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":1,\"orig_dst\":2,\"storage\":3,"
		"\"sockhash\":4,\"queue\":0,\"rate_limited\":1,\"rate_limited_sources\":"
		"[{\"identity\":300}]}}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":1,\"orig_dst\":2,\"storage\":3,"
		"\"sockhash\":4,\"queue\":0,\"rate_limited\":0,\"write_failed\":-1}}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":[1,2,3,4]}",
		"{\"version\":1,\"type\":\"lost\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"n\",\"lost\":{\"ringbuf\":-1,\"orig_dst\":2,\"storage\":3,\"sockhash\":"
		"4}}",
		"{\"version\":1,\"type\":\"lost\"",
		"not json",
	};
	for (size_t i = 0; i < SM_ARRAY_SIZE(texts); i++)
		ASSERT_EQ(sm_flow_record_decode(texts[i], &r), -EINVAL, texts[i]);
}

/* What a reader of the flow log sees: a trailing newline, and fields added by a later writer. */
static void test_decode_tolerates(void **state)
{
	struct sm_flow_record r, want;

	make_conn(&want);
	json_text = malloc(strlen(golden_conn_end) + 2);
	assert_non_null(json_text);
	sprintf(json_text, "%s\n", golden_conn_end);
	ASSERT_EQ(sm_flow_record_decode(json_text, &r), 0, "trailing newline");
	ASSERT_EQ(memcmp(&r, &want, sizeof(r)), 0, "same record");
	free_text(NULL);
	json_text = mutate("\"tcp\":{", "\"future\":{\"version\":\"TLSv9\"},\"tcp\":{\"x\":1,");
	assert_non_null(json_text);
	ASSERT_EQ(sm_flow_record_decode(json_text, &r), 0, "unknown fields are ignored");
	ASSERT_EQ(memcmp(&r, &want, sizeof(r)), 0, "same record with extra fields");
}

/* The policy block: round trip with and without rule and audit, and a bad one refused. */
static void test_policy_block(void **state)
{
	struct sm_flow_record r, back;
	char *json = NULL;

	(void) state;
	make_conn(&r);
	r.type = SM_REC_DENIED;
	r.verdict = SM_VERDICT_DROPPED;
	snprintf(r.drop_reason, sizeof(r.drop_reason), "policy_denied");
	r.policy.present = true;
	r.policy.revision = 7;
	snprintf(r.policy.match, sizeof(r.policy.match), "rule");
	snprintf(r.policy.name, sizeof(r.policy.name), "web-in");
	r.policy.rule = 2;
	snprintf(r.policy.audit_name, sizeof(r.policy.audit_name), "watch");
	r.policy.audit_rule = 0;
	ASSERT_EQ(sm_flow_record_encode(&r, &json), 0, "encode with policy");
	ASSERT_HAS(json,
		   "\"policy\":{\"revision\":7,\"match\":\"rule\",\"name\":\"web-in\",\"rule\":2,"
		   "\"audit\":{\"name\":\"watch\",\"rule\":0}}",
		   "policy block written");
	memset(&back, 0, sizeof(back));
	ASSERT_EQ(sm_flow_record_decode(json, &back), 0, "decode with policy");
	ASSERT_EQ(memcmp(&r, &back, sizeof(r)), 0, "policy round trip");
	free(json);
	json = NULL;
	/* default-deny: no name, no rule, no audit */
	memset(&r.policy, 0, sizeof(r.policy));
	r.policy.present = true;
	r.policy.revision = 3;
	snprintf(r.policy.match, sizeof(r.policy.match), "default-deny");
	r.policy.rule = -1;
	r.policy.audit_rule = -1;
	ASSERT_EQ(sm_flow_record_encode(&r, &json), 0, "encode default-deny");
	ASSERT_HAS(json, "\"policy\":{\"revision\":3,\"match\":\"default-deny\"}", "short block");
	memset(&back, 0, sizeof(back));
	ASSERT_EQ(sm_flow_record_decode(json, &back), 0, "decode default-deny");
	ASSERT_EQ(memcmp(&r, &back, sizeof(r)), 0, "default-deny round trip");
	free(json);
	json_text = NULL;
}

/* The tls block and trace id: round trip, omission of empty fields, strictness. */
static void test_tls_block(void **state)
{
	struct sm_flow_record r, back;
	char *json = NULL;

	make_conn(&r);
	r.tls.present = true;
	snprintf(r.tls.mode, sizeof(r.tls.mode), "STRICT");
	r.tls.encrypted = true;
	snprintf(r.tls.version, sizeof(r.tls.version), "TLSv1.3");
	snprintf(r.tls.cipher, sizeof(r.tls.cipher), "TLS_AES_128_GCM_SHA256");
	r.tls.local_spiffe_id = sm_intern("spiffe://td/a");
	r.tls.peer_spiffe_id = sm_intern("spiffe://td/b");
	r.tls.handshake_us = 1234;
	snprintf(r.trace_id, sizeof(r.trace_id),
		 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	ASSERT_EQ(sm_flow_record_encode(&r, &json), 0, "encode with tls");
	ASSERT_HAS(json, "\"tls\":{\"mode\":\"STRICT\",\"encrypted\":true", "tls block written");
	ASSERT_HAS(json, "\"trace_id\":\"00-0af7", "trace id written");
	memset(&back, 0, sizeof(back));
	ASSERT_EQ(sm_flow_record_decode(json, &back), 0, "decode with tls");
	ASSERT_EQ(memcmp(&r, &back, sizeof(r)), 0, "tls round trip");
	free(json);
	json = NULL;

	/* plaintext in PERMISSIVE: no handshake fields at all */
	make_conn(&r);
	r.tls.present = true;
	snprintf(r.tls.mode, sizeof(r.tls.mode), "PERMISSIVE");
	ASSERT_EQ(sm_flow_record_encode(&r, &json), 0, "encode plaintext");
	ASSERT_HAS(json, "\"tls\":{\"mode\":\"PERMISSIVE\",\"encrypted\":false}", "only mode");
	ASSERT_EQ(strstr(json, "trace_id") == NULL, 1, "empty trace id omitted");
	free(json);

	json_text = mutate("\"tcp\":{", "\"tls\":\"yes\",\"tcp\":{");
	assert_non_null(json_text);
	ASSERT_EQ(sm_flow_record_decode(json_text, &back), -EINVAL, "tls not an object");
	free_text(NULL);
	json_text = mutate("\"tcp\":{", "\"tls\":{\"encrypted\":1},\"tcp\":{");
	assert_non_null(json_text);
	ASSERT_EQ(sm_flow_record_decode(json_text, &back), -EINVAL, "encrypted not a bool");
	free_text(NULL);
	json_text =
		mutate("\"tcp\":{", "\"tls\":{\"encrypted\":true,\"handshake_us\":-1},\"tcp\":{");
	assert_non_null(json_text);
	ASSERT_EQ(sm_flow_record_decode(json_text, &back), -EINVAL, "negative handshake time");
}

static void test_names(void **state)
{
	ASSERT_STR_EQ(sm_flow_record_type_name(SM_REC_CONN_START), "conn_start", "conn_start");
	ASSERT_STR_EQ(sm_flow_record_type_name(SM_REC_CONN_UPDATE), "conn_update", "conn_update");
	ASSERT_STR_EQ(sm_flow_record_type_name(SM_REC_CONN_END), "conn_end", "conn_end");
	ASSERT_STR_EQ(sm_flow_record_type_name(SM_REC_DENIED), "denied", "denied");
	ASSERT_STR_EQ(sm_flow_record_type_name(SM_REC_LOST), "lost", "lost");
	ASSERT_STR_EQ(sm_flow_record_type_name(SM_REC_TYPE_MAX), "unknown", "type out of range");
	ASSERT_STR_EQ(sm_verdict_name(SM_VERDICT_FORWARDED), "FORWARDED", "FORWARDED");
	ASSERT_STR_EQ(sm_verdict_name(SM_VERDICT_DROPPED), "DROPPED", "DROPPED");
	ASSERT_STR_EQ(sm_verdict_name(SM_VERDICT_AUDIT), "AUDIT", "AUDIT");
	ASSERT_STR_EQ(sm_verdict_name(SM_VERDICT_MAX), "unknown", "verdict out of range");
	ASSERT_STR_EQ(sm_direction_name(SM_DIR_EGRESS), "EGRESS", "EGRESS");
	ASSERT_STR_EQ(sm_direction_name(SM_DIR_INGRESS), "INGRESS", "INGRESS");
	ASSERT_STR_EQ(sm_direction_name(SM_DIR_MAX), "unknown", "direction out of range");
}

static void test_lost_sources(void **state)
{
	struct sm_flow_record r = {0}, back;

	r.type = SM_REC_LOST;
	r.time_ns = T0;
	strcpy(r.node, "node1");
	r.lost_rate_limited = 42;
	r.nlost_sources = 2;
	r.lost_sources[0].identity = 2;
	sm_addr_parse("10.0.0.9", &r.lost_sources[0].addr);
	r.lost_sources[0].suppressed = 40;
	r.lost_sources[1].identity = 300;
	r.lost_sources[1].suppressed = 2;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), 0, "encode lost with sources");
	ASSERT_HAS(json_text,
		   "\"rate_limited\":42,\"write_failed\":0,\"rate_limited_sources\":[{\"identity\":"
		   "2,\"ip\":"
		   "\"10.0.0.9\",\"suppressed\":40},{\"identity\":300,\"suppressed\":2}]}",
		   "sources listed, ip only for a source known by its address");
	ASSERT_EQ(sm_flow_record_decode(json_text, &back), 0, "decode lost with sources");
	ASSERT_EQ(memcmp(&back, &r, sizeof(r)), 0, "lost sources round trip");
	free(json_text);
	json_text = NULL;
	r.nlost_sources = SM_FLOW_LOST_SOURCES_MAX + 1;
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), -EINVAL, "too many sources");
}

/* The mask keeps what it names (whole subtrees or single members) and the four fixed fields. */
static void test_mask(void **state)
{
	static const char *const paths[] = {"verdict", "source.ip", "tls"};
	struct sm_flow_record r;
	struct json_object *o;
	const char *text;

	make_conn(&r);
	r.tls.present = true;
	strcpy(r.tls.mode, "STRICT");
	o = sm_flow_record_to_json(&r);
	ASSERT_NOT_NULL(o, "to_json");
	ASSERT_EQ(sm_flow_json_mask(o, paths, SM_ARRAY_SIZE(paths)), 0, "mask");
	text = json_object_to_json_string_ext(o, SM_FLOW_JSON_FLAGS);
	ASSERT_STR_EQ(
		text,
		"{\"version\":1,\"type\":\"conn_end\",\"time\":\"2026-11-29T20:01:02.123456Z\","
		"\"node\":\"node1\",\"verdict\":\"FORWARDED\",\"source\":{\"ip\":\"10.11.0.1\"},"
		"\"tls\":{\"mode\":\"STRICT\",\"encrypted\":false}}",
		"masked record");
	json_object_put(o);

	/* no paths: the record whole, the same text the encoder writes */
	o = sm_flow_record_to_json(&r);
	ASSERT_EQ(sm_flow_json_mask(o, NULL, 0), 0, "empty mask");
	ASSERT_EQ(sm_flow_record_encode(&r, &json_text), 0, "encode");
	ASSERT_STR_EQ(json_object_to_json_string_ext(o, SM_FLOW_JSON_FLAGS), json_text,
		      "empty mask keeps all");
	json_object_put(o);
	ASSERT_EQ(sm_flow_json_mask(NULL, paths, 1), -EINVAL, "not an object");
}

static void test_field_known(void **state)
{
	ASSERT_EQ(sm_flow_field_known("source.ip"), true, "source.ip");
	ASSERT_EQ(sm_flow_field_known("tls"), true, "tls");
	ASSERT_EQ(sm_flow_field_known("policy.audit.rule"), true, "policy.audit.rule");
	ASSERT_EQ(sm_flow_field_known("source.ipp"), false, "typo");
	ASSERT_EQ(sm_flow_field_known("source."), false, "trailing dot");
	ASSERT_EQ(sm_flow_field_known(""), false, "empty");
}

/* A record of shape bits (each bit an optional member or a choice), values from n. */
static void make_shaped(struct sm_flow_record *r, unsigned int bits, uint64_t n)
{
	make_conn(r);
	r->type = (enum sm_flow_record_type)(n % 4); /* conn_start, _update, _end, denied */
	r->direction = bits & 1 ? SM_DIR_INGRESS : SM_DIR_EGRESS;
	r->time_ns = T0 + (int64_t) (n * 1234567);
	r->cookie = n;
	r->total.bytes_sent = n * 1000003;
	r->srtt_us = (uint32_t) (n % 997);
	if (bits & 2)
		snprintf(r->drop_reason, sizeof(r->drop_reason), "reason-%u",
			 (unsigned int) (n % 7));
	if (bits & 4)
		r->source.workload = NULL;
	if (bits & 8)
		r->destination.node =
			sm_intern(n % 2 ? "node2" : "a-much-longer-node-name-than-before");
	if (bits & 16)
		snprintf(r->trace_id, sizeof(r->trace_id), "%032llx", (unsigned long long) n);
	if (bits & 32) {
		r->tls.present = true;
		strcpy(r->tls.mode, n % 2 ? "STRICT" : "PERMISSIVE");
		r->tls.encrypted = n % 3;
		r->tls.handshake_us = (uint32_t) (n % 5);
		if (bits & 64)
			r->tls.peer_spiffe_id = r->destination.spiffe_id;
	}
	if (bits & 128) {
		r->policy.present = true;
		r->policy.revision = (uint32_t) n;
		strcpy(r->policy.match, "rule");
		strcpy(r->policy.name, "p");
		r->policy.rule = (int) (n % 3) - 1;
		r->policy.audit_rule = -1;
	}
	if (bits & 256) {
		assert_int_equal(sm_addr_parse("fc42::1", &r->source.addr), 0);
		assert_int_equal(sm_addr_parse("fc42::2", &r->destination.addr), 0);
	}
}

/*
 * sm_flow_record_line() sets the values of a kept tree in place: its line
 * must be what building the record afresh prints, whatever shapes came
 * before (more of them than the trees it keeps, so trees are replaced, and
 * shapes the hint cannot tell apart, so updates find stale trees).
 */
static void test_line_matches_fresh(void **state)
{
	struct sm_flow_record r;
	uint64_t seed = 88172645463325252ULL;

	for (uint64_t n = 1; n <= 4000; n++) {
		struct json_object *fresh;
		const char *line, *want;
		size_t len;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		/* runs of one shape (updates), then another (a kept tree, or a new one) */
		make_shaped(&r, (unsigned int) (n % 50 < 40 ? (n / 50) % 512 : seed % 512), n);
		if (n % 97 == 0) {
			memset(&r, 0, sizeof(r));
			r.type = SM_REC_LOST;
			r.time_ns = T0;
			strcpy(r.node, "node1");
			r.lost_ringbuf = n;
		}
		fresh = sm_flow_record_to_json(&r);
		ASSERT_EQ(fresh != NULL, 1, "build");
		want = json_object_to_json_string_ext(fresh, SM_FLOW_JSON_FLAGS);
		line = sm_flow_record_line(&r, &len);
		if (!line || strcmp(line, want) != 0 || len != strlen(want)) {
			print_error("FAIL record %llu: kept tree printed\n%s\nfresh:\n%s\n",
				    (unsigned long long) n, line ? line : "(null)", want);
			json_object_put(fresh);
			fail();
		}
		json_object_put(fresh);
	}
	/* a record the encoder refuses is refused by the kept trees too */
	make_shaped(&r, 0, 1);
	r.verdict = SM_VERDICT_MAX;
	ASSERT_EQ(sm_flow_record_line(&r, &(size_t){0}) == NULL, 1, "bad verdict refused");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_golden_conn_end, free_text),
		cmocka_unit_test(test_line_matches_fresh),
		cmocka_unit_test_teardown(test_golden_lost, free_text),
		cmocka_unit_test_teardown(test_lost_sources, free_text),
		cmocka_unit_test_teardown(test_mask, free_text),
		cmocka_unit_test(test_field_known),
		cmocka_unit_test_teardown(test_round_trip_types, free_text),
		cmocka_unit_test_teardown(test_round_trip_edges, free_text),
		cmocka_unit_test_teardown(test_round_trip_ipv6_and_omitted, free_text),
		cmocka_unit_test_teardown(test_time_precision, free_text),
		cmocka_unit_test_teardown(test_encode_rejects, free_text),
		cmocka_unit_test_teardown(test_decode_rejects, free_text),
		cmocka_unit_test_teardown(test_decode_tolerates, free_text),
		cmocka_unit_test_teardown(test_tls_block, free_text),
		cmocka_unit_test_teardown(test_policy_block, free_text),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests_name("flow_record", tests, NULL, NULL);
}
