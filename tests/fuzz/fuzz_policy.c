// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target: the policy parser must accept or reject any input without
 * crashing or leaking; what it accepts must survive the YAML and JSON round
 * trips unchanged, and its compiled entries must decide as the rules do.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char catalog_yaml[] =
	"nodes: [{name: n1, addresses: [10.0.0.1]}]\n"
	"workloads:\n"
	"  - {name: web, node: n1, cgroup: w, spiffe_id: 'spiffe://example.org/ns/prod/sa/web'}\n"
	"  - {name: api, node: n1, cgroup: a, spiffe_id: 'spiffe://example.org/ns/prod/sa/api'}\n"
	"  - {name: dev, node: n1, cgroup: d, spiffe_id: 'spiffe://example.org/ns/dev/sa/api'}\n";

/* The parse of text must equal set. */
static void check_round_trip(const struct sm_policy_set *set, char *text)
{
	struct sm_policy_set back;
	struct sm_error err;

	if (!text)
		return; /* out of memory */
	if (sm_policy_set_parse(&back, text, strlen(text), "round-trip", &err) != 0)
		abort();
	if (!sm_policy_set_equal(set, &back))
		abort();
	sm_policy_set_free(&back);
	free(text);
}

static void check_compiled(const struct sm_policy_set *set, const struct sm_catalog *cat)
{
	static const uint32_t ids[] = {0, 1, 2, 256, 257, 258, 259, 1U << 24, (1U << 24) + 1};
	static const uint16_t ports[] = {1, 22, 80, 443, 8080, 65535};
	struct sm_policy_compiled comp;
	struct sm_policy_ctx *ctx;
	struct sm_error err;

	if (sm_policy_compile(set, cat, 1, 100000, &comp, &err))
		return; /* too big, or out of memory */
	ctx = sm_policy_ctx_new(set, cat);
	for (size_t s = 0; ctx && s < sizeof(ids) / sizeof(ids[0]); s++)
		for (size_t d = 0; d < sizeof(ids) / sizeof(ids[0]); d++)
			for (size_t p = 0; p < sizeof(ports) / sizeof(ports[0]); p++) {
				struct sm_policy_decision a, b;

				sm_policy_lookup(&comp, ids[s], ids[d], ports[p], &a);
				sm_policy_eval(set, ctx, ids[s], ids[d], ports[p], &b);
				if (a.action != b.action || a.reason != b.reason ||
				    a.rule_id != b.rule_id || a.audit != b.audit ||
				    a.audit_rule_id != b.audit_rule_id)
					abort();
			}
	sm_policy_ctx_free(ctx);
	sm_policy_compiled_free(&comp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sm_catalog cat;
	static int have_cat;
	struct sm_policy_set set;
	struct sm_error err;

	if (!have_cat) {
		if (sm_catalog_parse(&cat, catalog_yaml, strlen(catalog_yaml), "catalog", &err))
			abort();
		have_cat = 1;
	}
	if (sm_policy_set_parse(&set, (const char *) data, size, "fuzz.yaml", &err) != 0)
		return 0;
	check_round_trip(&set, sm_policy_set_to_yaml(&set));
	check_round_trip(&set, sm_policy_set_to_json(&set));
	check_compiled(&set, &cat);
	sm_policy_set_free(&set);
	return 0;
}
