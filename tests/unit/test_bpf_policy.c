// SPDX-License-Identifier: Apache-2.0
/*
 * The kernel's policy lookup against the user side's, run in the kernel with
 * BPF_PROG_TEST_RUN: tests/bpf/policy_lookup.bpf.c wraps bpf/lib/policy.h's
 * policy_lookup() and policy_lookup_addr() in a syscall program; each
 * document below is compiled, loaded into that object's policy maps the way
 * the daemon does it (new inner maps in a slot, then policy_state), and every
 * (source, destination, port) tried must get from the kernel the entry the
 * user-side lookup (sm_policy_lookup, what `policy explain` and the daemon's
 * checks use) finds, and the verdict the reference evaluator (sm_policy_eval)
 * gives. A kernel that looks its keys up in another order than the user side
 * fails here. Needs root (loading BPF); skipped otherwise.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/types.h>

#include "check.h"
#include "catalog.h"
#include "policy.h"
#include "sockmesh/common.h"
#include "sockmesh/intercept.h"
#include "sockmesh/policy.h"

#include "../bpf/policy_lookup.h"

#define ID_API "spiffe://example.org/ns/prod/sa/api"
#define ID_WEB "spiffe://example.org/ns/prod/sa/web"
#define ID_DB  "spiffe://example.org/ns/prod/sa/db"

static const char catalog_yaml[] =
	"nodes:\n"
	"  - {name: n1, addresses: [10.0.0.1]}\n"
	"  - {name: n2, addresses: [10.0.0.2]}\n"
	"workloads:\n"
	"  - {name: web, node: n1, cgroup: w, spiffe_id: '" ID_WEB "'}\n"
	"  - {name: api, node: n1, cgroup: a, spiffe_id: '" ID_API "'}\n"
	"  - {name: db, node: n2, cgroup: d, spiffe_id: '" ID_DB "'}\n"
	"  - {name: dev, node: n1, cgroup: dv, spiffe_id: 'spiffe://example.org/ns/dev/sa/api'}\n"
	"  - {name: other, node: n2, cgroup: o, spiffe_id: 'spiffe://other.org/sa/x'}\n";

/*
 * Documents whose entries hit every step of the contract: exact source with
 * and without port, any source with and without port, the fallback; DENY
 * over ALLOW, AUDIT flags, CIDR sources (nested, IPv4 and IPv6), selector
 * ports, patterns.
 */
static const char *const documents[] = {
	"policies:\n"
	"  - name: web-in\n"
	"    selector: {spiffe: " ID_WEB ", ports: [8080, \"9000-9010\"]}\n"
	"    rules:\n"
	"      - {action: ALLOW, from: [" ID_API "], ports: [8080]}\n"
	"      - {action: DENY, from: ['spiffe://example.org/ns/dev/*']}\n"
	"      - {action: AUDIT, from: [any]}\n"
	"      - {action: ALLOW, from: [\"10.1.0.0/16\"], ports: [\"9000-9005\"]}\n"
	"  - name: db-in\n"
	"    selector: {spiffe: " ID_DB "}\n"
	"    rules:\n"
	"      - {action: ALLOW, from: ['spiffe://example.org/ns/prod/*']}\n"
	"      - {action: DENY, from: [\"10.0.0.0/8\", \"fc00::/7\"], ports: [5432]}\n"
	"      - {action: ALLOW, from: [\"10.2.3.0/24\", \"fc00:1::/64\"]}\n"
	"  - name: api-audit\n"
	"    selector: {spiffe: " ID_API "}\n"
	"    rules: [{action: AUDIT, from: [any], ports: [443]}]\n"
	"  - name: other-in\n"
	"    selector: {spiffe: 'spiffe://other.org/*'}\n"
	"    rules:\n"
	"      - {action: ALLOW, from: [any], ports: [80]}\n"
	"      - {action: DENY, from: [" ID_WEB "]}\n",

	"policies:\n"
	"  - name: any-port-any-source\n"
	"    selector: {spiffe: 'spiffe://example.org/*'}\n"
	"    rules:\n"
	"      - {action: ALLOW, from: [any]}\n"
	"      - {action: DENY, from: [" ID_API "], ports: [22, \"6000-6002\"]}\n"
	"      - {action: AUDIT, from: [\"0.0.0.0/0\", \"::/0\"], ports: [22]}\n",
};

/* The kernel addresses tried as non-mesh callers: in, at the edge of and outside the CIDRs. */
static const char *const addresses[] = {
	"10.1.2.3",  "10.1.255.255", "10.2.3.4",    "10.2.4.1", "10.9.9.9",
	"11.0.0.1",  "192.0.2.1",    "0.0.0.0",	    "fc00::1",	"fc00:1::5",
	"fc00:2::1", "fe80::1",	     "2001:db8::1",
};

static struct sm_catalog cat;
static struct sm_policy_set set;
static struct sm_policy_compiled comp;
static struct sm_policy_ctx *ctx;
static struct bpf_object *obj;
static int prog_fd = -1, addr_prog_fd = -1, inner_fd = -1, cinner_fd = -1;

static int teardown(void **state)
{
	if (inner_fd >= 0)
		close(inner_fd);
	if (cinner_fd >= 0)
		close(cinner_fd);
	inner_fd = cinner_fd = prog_fd = addr_prog_fd = -1;
	bpf_object__close(obj);
	obj = NULL;
	sm_policy_ctx_free(ctx);
	ctx = NULL;
	sm_policy_compiled_free(&comp);
	sm_policy_set_free(&set);
	sm_catalog_free(&cat);
	return 0;
}

/* The test object, from the build directory the runner names (SM_OUTPUT) or the default one. */
static void object_path(char *buf, size_t len)
{
	const char *out = getenv("SM_OUTPUT");

	snprintf(buf, len, "%s/tools/policy_lookup.bpf.o",
		 out && *out ? out : SM_SOURCE_DIR "/.output");
}

/*
 * Open and load the test object with only the policy maps created and
 * nothing pinned (its maps are declared pinned by name, like the daemon's:
 * left as they are, they would reuse a running daemon's maps in /sys/fs/bpf).
 */
static void load_object(void)
{
	static const char *const wanted[] = {"policy_maps", "policy_cidr_maps", "policy_state"};
	struct bpf_program *prog;
	struct bpf_map *map;
	char path[512], what[600];
	int err;

	object_path(path, sizeof(path));
	if (access(path, R_OK) != 0)
		fail_msg("%s: %s (build it: make all)", path, strerror(errno));
	obj = bpf_object__open_file(path, NULL);
	ASSERT_NOT_NULL(obj, "open the test object");
	bpf_object__for_each_map (map, obj) {
		bool keep = bpf_map__is_internal(map); /* the .rodata of constants in headers */

		for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
			keep = keep || strcmp(bpf_map__name(map), wanted[i]) == 0;
		ASSERT_EQ(bpf_map__set_pin_path(map, NULL), 0, "unpin a map");
		ASSERT_EQ(bpf_map__set_autocreate(map, keep), 0, "map creation");
	}
	err = bpf_object__load(obj);
	snprintf(what, sizeof(what), "load %s (the verifier's log is above)", path);
	ASSERT_EQ(err, 0, what);
	prog = bpf_object__find_program_by_name(obj, "policy_lookup_run");
	ASSERT_NOT_NULL(prog, "policy_lookup_run");
	prog_fd = bpf_program__fd(prog);
	prog = bpf_object__find_program_by_name(obj, "policy_lookup_addr_run");
	ASSERT_NOT_NULL(prog, "policy_lookup_addr_run");
	addr_prog_fd = bpf_program__fd(prog);
}

static int map_fd(const char *name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);

	return map ? bpf_map__fd(map) : -1;
}

/* Compiled entries and CIDRs into new inner maps of slot, then policy_state: the daemon's order. */
static void install(uint32_t slot, uint32_t loaded)
{
	LIBBPF_OPTS(bpf_map_create_opts, lpm_opts, .map_flags = BPF_F_NO_PREALLOC);
	struct sm_policy_state ps = {.slot = slot, .revision = comp.revision, .loaded = loaded};
	__u32 zero = 0;

	if (inner_fd >= 0)
		close(inner_fd);
	if (cinner_fd >= 0)
		close(cinner_fd);
	inner_fd = bpf_map_create(BPF_MAP_TYPE_HASH, "sm_policy", sizeof(struct sm_policy_key),
				  sizeof(struct sm_policy_value),
				  comp.nentries ? (__u32) comp.nentries : 1, NULL);
	ASSERT_GE(inner_fd, 0, "create an entries map");
	cinner_fd =
		bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "sm_policy_cidr", sizeof(struct sm_cidr_key),
			       sizeof(__u32), comp.ncidrs ? (__u32) comp.ncidrs : 1, &lpm_opts);
	ASSERT_GE(cinner_fd, 0, "create a CIDR map");
	for (size_t i = 0; i < comp.nentries; i++)
		ASSERT_EQ(bpf_map_update_elem(inner_fd, &comp.entries[i].key,
					      &comp.entries[i].value, BPF_NOEXIST),
			  0, "add an entry");
	for (size_t i = 0; i < comp.ncidrs; i++) {
		struct sm_cidr_key k = {.prefixlen = 32U + comp.cidrs[i].prefix};
		__u32 id = comp.cidrs[i].identity;

		k.family = comp.cidrs[i].addr.family;
		memcpy(k.addr, comp.cidrs[i].addr.bytes, sizeof(k.addr));
		ASSERT_EQ(bpf_map_update_elem(cinner_fd, &k, &id, BPF_NOEXIST), 0, "add a CIDR");
	}
	ASSERT_EQ(bpf_map_update_elem(map_fd("policy_maps"), &slot, &inner_fd, BPF_ANY), 0,
		  "entries map into its slot");
	ASSERT_EQ(bpf_map_update_elem(map_fd("policy_cidr_maps"), &slot, &cinner_fd, BPF_ANY), 0,
		  "CIDR map into its slot");
	ASSERT_EQ(bpf_map_update_elem(map_fd("policy_state"), &zero, &ps, BPF_ANY), 0,
		  "policy_state");
}

/* One run of the kernel's lookup by identity: a syscall program's context is read-write. */
static void kernel_lookup(struct policy_lookup_args *a)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = a, .ctx_size_in = sizeof(*a));

	ASSERT_EQ(bpf_prog_test_run_opts(prog_fd, &opts), 0, "BPF_PROG_TEST_RUN");
	ASSERT_EQ(opts.retval, 0, "the program's return value");
}

/* One run of the kernel's lookup by address: the args go in and come back as the packet. */
static void kernel_lookup_addr(struct policy_lookup_args *a)
{
	struct policy_lookup_args out = {0};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = a, .data_size_in = sizeof(*a),
		    .data_out = &out, .data_size_out = sizeof(out));

	ASSERT_EQ(bpf_prog_test_run_opts(addr_prog_fd, &opts), 0, "BPF_PROG_TEST_RUN (XDP)");
	ASSERT_EQ(opts.retval, XDP_PASS, "the program's return value");
	ASSERT_EQ(opts.data_size_out, sizeof(out), "the packet back");
	*a = out;
}

/* The kernel's answer == the user-side lookup's entry == the evaluator's verdict. */
static void check_same(const struct policy_lookup_args *a, uint32_t src, const char *what)
{
	struct sm_policy_decision user, ref;

	sm_policy_lookup(&comp, src, a->dst, a->dport, &user);
	sm_policy_eval(&set, ctx, src, a->dst, a->dport, &ref);
	/* the user side found an entry exactly when the kernel did */
	ASSERT_EQ(a->found, user.step != 0, what);
	if (!a->found) {
		ASSERT_EQ(user.action, SM_POLICY_ALLOW, what);
		ASSERT_EQ(user.reason, SM_POLICY_R_NO_POLICY, what);
	} else {
		ASSERT_EQ(a->value.action, user.action, what);
		ASSERT_EQ(a->value.reason, user.reason, what);
		ASSERT_EQ(a->value.rule_id, user.rule_id, what);
		ASSERT_EQ(!!(a->value.flags & SM_POLICY_F_AUDIT), user.audit, what);
		ASSERT_EQ(a->value.flags & SM_POLICY_F_AUDIT ? a->value.audit_rule_id : 0,
			  user.audit_rule_id, what);
		ASSERT_EQ(a->value.revision, comp.revision, what);
	}
	ASSERT_EQ(user.action, ref.action, what);
	ASSERT_EQ(user.reason, ref.reason, what);
	ASSERT_EQ(user.rule_id, ref.rule_id, what);
	ASSERT_EQ(user.audit, ref.audit, what);
	ASSERT_EQ(user.audit_rule_id, ref.audit_rule_id, what);
}

static size_t add_u32(uint32_t *v, size_t n, size_t cap, uint32_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return n;
	if (n < cap)
		v[n++] = x;
	return n;
}

/* Every port a set names, +-1, and ports no rule names. */
static size_t ports_of(uint32_t *ports, size_t cap)
{
	size_t n = 0;

	n = add_u32(ports, n, cap, 1);
	n = add_u32(ports, n, cap, 12345);
	n = add_u32(ports, n, cap, 65535);
	for (size_t i = 0; i < set.npolicies; i++) {
		const struct sm_policy *p = &set.policies[i];

		for (size_t r = 0; r <= p->nrules; r++) {
			const struct sm_port_range *pr =
				r == p->nrules ? p->ports : p->rules[r].ports;
			size_t np = r == p->nrules ? p->nports : p->rules[r].nports;

			for (size_t k = 0; k < np; k++)
				for (int d = -1; d <= 1; d++) {
					if (pr[k].lo + d >= 1 && pr[k].lo + d <= 65535)
						n = add_u32(ports, n, cap,
							    (uint32_t) (pr[k].lo + d));
					if (pr[k].hi + d >= 1 && pr[k].hi + d <= 65535)
						n = add_u32(ports, n, cap,
							    (uint32_t) (pr[k].hi + d));
				}
		}
	}
	return n;
}

/* Identities: none, host, world, an unknown one, every workload, every policy CIDR and one past. */
static size_t identities_of(uint32_t *ids, size_t cap)
{
	size_t n = 0;

	n = add_u32(ids, n, cap, 0);
	n = add_u32(ids, n, cap, SM_ID_HOST);
	n = add_u32(ids, n, cap, SM_ID_WORLD);
	n = add_u32(ids, n, cap, 3);
	n = add_u32(ids, n, cap, SM_ID_FIRST_ALLOCATED + 4000);
	for (size_t i = 0; i < cat.nworkloads; i++)
		n = add_u32(ids, n, cap, cat.workloads[i].identity);
	for (size_t i = 0; i <= comp.ncidrs; i++)
		n = add_u32(ids, n, cap, SM_ID_CIDR_BASE + (uint32_t) i);
	return n;
}

static void compile_document(const char *doc, uint32_t revision)
{
	struct sm_error err = {{0}};

	sm_policy_ctx_free(ctx);
	sm_policy_compiled_free(&comp);
	sm_policy_set_free(&set);
	ASSERT_EQ(sm_policy_set_parse(&set, doc, strlen(doc), "pol.yaml", &err), 0, err.msg);
	ASSERT_EQ(sm_policy_compile(&set, &cat, revision, 0, &comp, &err), 0, err.msg);
	ctx = sm_policy_ctx_new(&set, &cat);
	ASSERT_NOT_NULL(ctx, "evaluation context");
}

static bool have_root(void)
{
	if (geteuid() == 0)
		return true;
	print_message("# skipped: loading BPF programs and running BPF_PROG_TEST_RUN needs root "
		      "(CAP_BPF and CAP_SYS_ADMIN); run make test-unit as root\n");
	return false;
}

static void test_kernel_lookup_equals_user_lookup(void **state)
{
	struct sm_error err = {{0}};
	uint32_t ids[64], ports[256];
	size_t nids, nports, runs = 0, hits = 0;
	unsigned int steps_hit = 0;
	char what[256];

	if (!have_root()) {
		skip();
		return;
	}
	ASSERT_EQ(sm_catalog_parse(&cat, catalog_yaml, strlen(catalog_yaml), "cat.yaml", &err), 0,
		  err.msg);
	load_object();
	for (size_t d = 0; d < sizeof(documents) / sizeof(documents[0]); d++) {
		compile_document(documents[d], (uint32_t) (10 + d));
		install((uint32_t) (d + 1) & 1, 1); /* both slots get used */
		nids = identities_of(ids, sizeof(ids) / sizeof(ids[0]));
		nports = ports_of(ports, sizeof(ports) / sizeof(ports[0]));
		for (size_t s = 0; s < nids; s++)
			for (size_t t = 0; t < nids; t++)
				for (size_t p = 0; p < nports; p++) {
					struct policy_lookup_args a = {.src = ids[s],
								       .dst = ids[t],
								       .dport = (__u16) ports[p]};
					struct sm_policy_decision user;

					kernel_lookup(&a);
					snprintf(what, sizeof(what),
						 "document %zu: src %u dst %u port %u", d, ids[s],
						 ids[t], ports[p]);
					check_same(&a, ids[s], what);
					sm_policy_lookup(&comp, ids[s], ids[t], (uint16_t) ports[p],
							 &user);
					steps_hit |= 1U << user.step;
					runs++;
					hits += a.found;
				}
	}
	print_message("# %zu kernel lookups, %zu decided by an entry, all equal to the user "
		      "side\n",
		      runs, hits);
	/* the documents exercise every step of the contract (bit 0: no entry) */
	for (unsigned int step = 0; step <= SM_POLICY_STEPS; step++) {
		snprintf(what, sizeof(what), "some case is decided at step %u", step);
		ASSERT_EQ(!!(steps_hit & (1U << step)), 1, what);
	}
}

static void test_kernel_cidr_lookup_equals_user_lookup(void **state)
{
	struct sm_error err = {{0}};
	uint32_t ports[256];
	size_t nports, runs = 0, in_cidr = 0;
	char what[256];

	if (!have_root()) {
		skip();
		return;
	}
	ASSERT_EQ(sm_catalog_parse(&cat, catalog_yaml, strlen(catalog_yaml), "cat.yaml", &err), 0,
		  err.msg);
	load_object();
	for (size_t d = 0; d < sizeof(documents) / sizeof(documents[0]); d++) {
		compile_document(documents[d], (uint32_t) (20 + d));
		install((uint32_t) d & 1, 1);
		nports = ports_of(ports, sizeof(ports) / sizeof(ports[0]));
		for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); i++) {
			struct sm_addr addr;
			uint32_t want_src;

			ASSERT_EQ(sm_addr_parse(addresses[i], &addr), 0, addresses[i]);
			want_src = sm_policy_cidr_identity(&comp, &addr);
			in_cidr += want_src != 0;
			for (size_t w = 0; w < cat.nworkloads; w++)
				for (size_t p = 0; p < nports; p++) {
					struct policy_lookup_args a = {
						.dst = cat.workloads[w].identity,
						.dport = (__u16) ports[p],
						.family = addr.family};

					memcpy(a.addr, addr.bytes, sizeof(a.addr));
					kernel_lookup_addr(&a);
					snprintf(what, sizeof(what),
						 "document %zu: from %s dst %u port %u", d,
						 addresses[i], a.dst, ports[p]);
					ASSERT_EQ(a.src_out, want_src, what);
					check_same(&a, want_src, what);
					runs++;
				}
		}
	}
	ASSERT_GE(in_cidr, 8, "addresses inside policy CIDRs");
	print_message("# %zu kernel lookups by address, all equal to the user side\n", runs);
}

static void test_kernel_lookup_without_policy(void **state)
{
	struct sm_error err = {{0}};
	struct policy_lookup_args a = {.dst = SM_ID_FIRST_ALLOCATED, .dport = 8080};

	if (!have_root()) {
		skip();
		return;
	}
	ASSERT_EQ(sm_catalog_parse(&cat, catalog_yaml, strlen(catalog_yaml), "cat.yaml", &err), 0,
		  err.msg);
	load_object();
	kernel_lookup(&a);
	ASSERT_EQ(a.found, 0, "no policy_state yet: nothing is looked up");
	compile_document(documents[1], 7);
	install(0, 0);
	for (size_t i = 0; i < cat.nworkloads; i++) {
		a.dst = cat.workloads[i].identity;
		kernel_lookup(&a);
		ASSERT_EQ(a.found, 0, "entries filled but policy_state.loaded 0");
	}
	install(0, 1);
	a.dst = cat.workloads[0].identity;
	kernel_lookup(&a);
	ASSERT_EQ(a.found, 1, "the same entries once loaded");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_kernel_lookup_equals_user_lookup, teardown),
		cmocka_unit_test_teardown(test_kernel_cidr_lookup_equals_user_lookup, teardown),
		cmocka_unit_test_teardown(test_kernel_lookup_without_policy, teardown),
	};

	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
