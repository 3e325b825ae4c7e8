// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/flowfilter.c: every key, sides, alternatives, and bad filters. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flowfilter.h"

/* A denied connect() from api (10.0.1.5:40000) to web (10.0.2.7:8080) on node1. */
static void sample(struct sm_flow_record *r)
{
	memset(r, 0, sizeof(*r));
	r->type = SM_REC_DENIED;
	sm_strlcpy(r->node, "node1", sizeof(r->node));
	r->verdict = SM_VERDICT_DROPPED;
	sm_strlcpy(r->drop_reason, "policy_default_deny", sizeof(r->drop_reason));
	r->direction = SM_DIR_EGRESS;
	sm_addr_parse("10.0.1.5", &r->source.addr);
	r->source.port = 40000;
	r->source.identity = 256;
	r->source.spiffe_id = sm_intern("spiffe://example.org/ns/prod/sa/api");
	r->source.workload = sm_intern("api");
	sm_addr_parse("10.0.2.7", &r->destination.addr);
	r->destination.port = 8080;
	r->destination.identity = 258;
	r->destination.spiffe_id = sm_intern("spiffe://example.org/ns/prod/sa/web");
	r->destination.workload = sm_intern("web");
	sm_strlcpy(r->trace_id, "00-0123-4567-01", sizeof(r->trace_id));
}

static bool matches(const char *text, const struct sm_flow_record *r)
{
	struct sm_flowfilter *f;
	struct sm_error err = {{0}};
	bool m;

	if (sm_flowfilter_parse(text, &f, &err))
		fail_msg("'%s' did not parse: %s", text, err.msg);
	m = sm_flowfilter_match(f, r);
	sm_flowfilter_free(f);
	return m;
}

static void test_match(void **state)
{
	static const struct {
		const char *filter;
		bool want;
	} cases[] = {
		{"", true},
		{"   ", true},
		{"type=denied", true},
		{"type=conn_end", false},
		{"type=conn_start|conn_end|denied", true},
		{"verdict=DROPPED", true},
		{"verdict=FORWARDED|AUDIT", false},
		{"drop_reason=policy_default_deny", true},
		{"drop_reason=policy_denied", false},
		{"direction=EGRESS", true},
		{"direction=INGRESS", false},
		{"node=node1", true},
		{"node=node2", false},
		{"trace_id=00-0123-4567-01", true},
		{"trace_id=00", false},
		/* identities: either side, or one side; exact, pattern, number */
		{"identity=spiffe://example.org/ns/prod/sa/web", true},
		{"from-identity=spiffe://example.org/ns/prod/sa/web", false},
		{"to-identity=spiffe://example.org/ns/prod/sa/web", true},
		{"from-identity=spiffe://example.org/ns/prod/*", true},
		{"from-identity=spiffe://example.org/ns/dev/*", false},
		{"identity=spiffe://example.org/ns/prod/sa/ap", false},
		{"from-identity=256", true},
		{"to-identity=256", false},
		{"identity=258", true},
		/* workloads */
		{"workload=web", true},
		{"from-workload=web", false},
		{"from-workload=db|api", true},
		/* addresses and CIDRs */
		{"ip=10.0.2.7", true},
		{"from-ip=10.0.2.7", false},
		{"from-ip=10.0.0.0/16", true},
		{"to-ip=10.0.1.0/24", false},
		{"ip=0.0.0.0/0", true},
		{"ip=::/0", false},
		/* ports and ranges */
		{"port=8080", true},
		{"from-port=8080", false},
		{"to-port=8000-8100", true},
		{"to-port=8081-9000", false},
		{"from-port=40000", true},
		/* terms AND, alternatives OR */
		{"verdict=DROPPED to-port=8080 from-workload=api", true},
		{"verdict=DROPPED to-port=8081", false},
		{"verdict=AUDIT|DROPPED\tto-workload=web", true},
	};
	struct sm_flow_record r;

	(void) state;
	sample(&r);
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++)
		ASSERT_EQ(matches(cases[i].filter, &r), cases[i].want, cases[i].filter);
}

static void test_lost_records(void **state)
{
	struct sm_flow_record r;

	(void) state;
	memset(&r, 0, sizeof(r));
	r.type = SM_REC_LOST;
	sm_strlcpy(r.node, "node1", sizeof(r.node));
	ASSERT_EQ(matches("type=lost", &r), true, "type=lost");
	ASSERT_EQ(matches("node=node1", &r), true, "node on a lost record");
	/* no endpoints, no verdict: a zeroed record must not look like FORWARDED to 0.0.0.0 */
	ASSERT_EQ(matches("verdict=FORWARDED", &r), false, "verdict on a lost record");
	ASSERT_EQ(matches("direction=EGRESS", &r), false, "direction on a lost record");
	ASSERT_EQ(matches("ip=0.0.0.0/0", &r), false, "ip on a lost record");
}

static void test_match_any(void **state)
{
	struct sm_flowfilter *fs[2];
	struct sm_error err = {{0}};
	struct sm_flow_record r;

	(void) state;
	sample(&r);
	ASSERT_EQ(sm_flowfilter_parse("verdict=AUDIT", &fs[0], &err), 0, "parse 0");
	ASSERT_EQ(sm_flowfilter_parse("to-port=8080", &fs[1], &err), 0, "parse 1");
	ASSERT_EQ(sm_flowfilter_match_any(fs, 0, &r), false, "no filters: none matches");
	ASSERT_EQ(sm_flowfilter_match_any(fs, 1, &r), false, "first only");
	ASSERT_EQ(sm_flowfilter_match_any(fs, 2, &r), true, "second matches");
	sm_flowfilter_free(fs[0]);
	sm_flowfilter_free(fs[1]);
}

/*
 * The view the live stream keeps per record instead of the record: the same
 * answers once the record is gone (strings interned, as flowstream.c does),
 * at a fraction of the size (it is kept flowlog.ring_size times).
 */
static void test_match_view(void **state)
{
	static const char *const filters[] = {
		"verdict=DROPPED",
		"verdict=AUDIT",
		"to-port=8080",
		"from-port=1-100",
		"node=node1",
		"node=node2",
		"drop_reason=policy_default_deny",
		"drop_reason=policy_denied",
		"type=denied",
		"type=conn_end",
		"ip=10.0.2.0/24",
		"from-ip=10.0.2.0/24",
		"trace_id=00-0123-4567-01",
		"trace_id=00-x-y-01",
		"from-identity=spiffe://example.org/ns/prod/*",
		"to-workload=web direction=EGRESS",
	};
	struct sm_flow_record *r = calloc(1, sizeof(*r));
	struct sm_flow_match m;

	(void) state;
	ASSERT_NOT_NULL(r, "record");
	sample(r);
	sm_flow_match_of(&m, r);
	m.node = sm_intern(r->node);
	m.drop_reason = sm_intern(r->drop_reason);
	for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
		struct sm_flowfilter *f;
		struct sm_error err = {{0}};
		bool want;

		ASSERT_EQ(sm_flowfilter_parse(filters[i], &f, &err), 0, filters[i]);
		want = sm_flowfilter_match(f, r);
		/* the record is reused: the view must not point into it */
		memset(r->node, 'z', sizeof(r->node) - 1);
		memset(r->drop_reason, 'z', sizeof(r->drop_reason) - 1);
		ASSERT_EQ(sm_flowfilter_match_view(f, &m), want, filters[i]);
		ASSERT_EQ(sm_flowfilter_match_any_view(&f, 1, &m), want, filters[i]);
		sample(r);
		sm_flowfilter_free(f);
	}
	ASSERT_GE(sizeof(*r) / 4, sizeof(m), "the view is at most a quarter of a record");
	free(r);
}

static void test_bad_filters(void **state)
{
	static const struct {
		const char *filter;
		const char *says; /* part of the message */
	} cases[] = {
		{"verdict", "expected KEY=VALUE"},
		{"colour=red", "unknown key 'colour'"},
		{"verdict=dropped", "unknown value 'dropped'"},
		{"type=flow", "one of: conn_start"},
		{"direction=IN", "EGRESS, INGRESS"},
		{"verdict=", "empty value"},
		{"verdict=DROPPED|", "empty value"},
		{"identity=web", "neither a SPIFFE ID"},
		{"identity=spiffe://example.org/ns/*/sa", "whole last path segment"},
		{"ip=10.0.0.1/8", "host bits zero"},
		{"ip=example.org", "not an address"},
		{"port=0", "not a port"},
		{"port=70000", "not a port"},
		{"port=9000-8000", "A <= B"},
		{"port=http", "not a port"},
	};

	(void) state;
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct sm_flowfilter *f = (struct sm_flowfilter *) 1;
		struct sm_error err = {{0}};

		ASSERT_EQ(sm_flowfilter_parse(cases[i].filter, &f, &err), -EINVAL, cases[i].filter);
		ASSERT_EQ(f == NULL, 1, cases[i].filter);
		if (!strstr(err.msg, cases[i].says))
			fail_msg("'%s': message '%s' does not say '%s'", cases[i].filter, err.msg,
				 cases[i].says);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),	    cmocka_unit_test(test_lost_records),
		cmocka_unit_test(test_match_any),   cmocka_unit_test(test_match_view),
		cmocka_unit_test(test_bad_filters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
