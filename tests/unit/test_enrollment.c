// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/lib/enrollment.c: the enroll_paths entries a set of
 * workload paths makes, walked here the way bpf/lib/enroll.h walks them in
 * the kernel (nearest enrolled ancestor wins, whole names compared), and the
 * path rules.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "enrollment.h"

#define MAX_ENTS 64

struct table {
	struct sm_enroll_key key[MAX_ENTS];
	struct sm_enroll_node node[MAX_ENTS];
	size_t n;
};

static int collect(void *ctx, const struct sm_enroll_key *key, const struct sm_enroll_node *node)
{
	struct table *t = ctx;

	if (t->n == MAX_ENTS)
		return -ENOSPC;
	t->key[t->n] = *key;
	t->node[t->n++] = *node;
	return 0;
}

static const struct sm_enroll_node *find(const struct table *t, uint64_t parent, const char *name)
{
	struct sm_enroll_key k;

	memset(&k, 0, sizeof(k));
	k.parent = parent;
	strncpy(k.name, name, sizeof(k.name) - 1);
	for (size_t i = 0; i < t->n; i++)
		if (memcmp(&t->key[i], &k, sizeof(k)) ==
		    0) /* the whole key, as the map hashes it */
			return &t->node[i];
	return NULL;
}

/* The identity a cgroup at path (below the root) gets: the kernel side's walk. */
static uint32_t walk(const struct table *t, const char *path)
{
	char buf[512], *save = NULL;
	uint64_t parent = 0;
	uint32_t found = 0;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		const struct sm_enroll_node *n = find(t, parent, c);

		if (!n)
			break;
		if (n->wl.identity)
			found = n->wl.identity;
		parent = n->node;
	}
	return found;
}

static void build(struct table *t, const struct sm_enroll_workload *wl, size_t n)
{
	struct sm_error err = {{0}};
	int ret;

	memset(t, 0, sizeof(*t));
	ret = sm_enroll_build(wl, n, collect, t, &err);
	if (ret)
		fail_msg("sm_enroll_build: %d: %s", ret, err.msg);
}

static void test_tree(void **state)
{
	static const struct sm_enroll_workload wl[] = {
		{"orders.service", 300, SM_WL_F_STRICT},
		{"kubepods.slice/pod-a.slice/cri-a.scope", 301, 0},
		{"kubepods.slice/pod-a.slice/cri-b.scope", 302, 0},
		{"nested", 303, 0},
		{"nested/inner", 304, SM_WL_F_STRICT},
	};
	struct table t;
	const struct sm_enroll_node *n;

	(void) state;
	build(&t, wl, sizeof(wl) / sizeof(wl[0]));
	/* one entry per distinct component: orders, kubepods, pod-a, 2 scopes, nested, inner */
	ASSERT_EQ(t.n, 7, "entries");
	n = find(&t, 0, "orders.service");
	ASSERT_NOT_NULL(n, "orders.service under the root");
	ASSERT_EQ(n->wl.identity, 300, "orders identity");
	ASSERT_EQ(n->wl.flags, SM_WL_F_STRICT, "orders strict");
	n = find(&t, 0, "kubepods.slice");
	ASSERT_NOT_NULL(n, "intermediate kubepods.slice");
	ASSERT_EQ(n->wl.identity, 0, "an intermediate directory is no workload");

	ASSERT_EQ(walk(&t, "orders.service"), 300, "the workload's cgroup");
	ASSERT_EQ(walk(&t, "orders.service/sub/deeper"), 300, "sub-cgroups belong to it");
	ASSERT_EQ(walk(&t, "kubepods.slice/pod-a.slice/cri-b.scope"), 302, "a container");
	ASSERT_EQ(walk(&t, "kubepods.slice/pod-a.slice"), 0, "the pod slice is no workload");
	ASSERT_EQ(walk(&t, "kubepods.slice/pod-a.slice/cri-c.scope"), 0, "another container");
	ASSERT_EQ(walk(&t, "nested/inner/x"), 304, "the nearest enrolled ancestor wins");
	ASSERT_EQ(walk(&t, "nested/other"), 303, "the outer workload's other children");
	ASSERT_EQ(walk(&t, "orders.service2"), 0, "a longer name");
	ASSERT_EQ(walk(&t, "orders"), 0, "a prefix of the name");
	ASSERT_EQ(walk(&t, "x/orders.service"), 0, "the name elsewhere in the tree");
	ASSERT_EQ(walk(&t, "cri-a.scope"), 0, "a deep name at the top");
}

static void test_node_ids(void **state)
{
	uint64_t a = sm_enroll_node_id(0, "a", 1);

	(void) state;
	ASSERT_EQ(a == sm_enroll_node_id(0, "a", 1), 1, "deterministic");
	ASSERT_EQ(a == sm_enroll_node_id(a, "a", 1), 0, "a/a is not a");
	ASSERT_EQ(a == sm_enroll_node_id(0, "b", 1), 0, "b is not a");
	ASSERT_EQ(sm_enroll_node_id(0, "ab", 1) == a, 1, "only len bytes count");
	ASSERT_EQ(a != 0, 1, "never the root's id");
}

static void test_same_name_in_two_places(void **state)
{
	static const struct sm_enroll_workload wl[] = {
		{"a/app", 300, 0},
		{"b/app", 301, 0},
	};
	struct table t;

	(void) state;
	build(&t, wl, 2);
	ASSERT_EQ(t.n, 4, "a, b and two app entries under different parents");
	ASSERT_EQ(walk(&t, "a/app"), 300, "a/app");
	ASSERT_EQ(walk(&t, "b/app"), 301, "b/app");
}

static void test_path_rules(void **state)
{
	static const struct {
		const char *path;
		const char *why; /* NULL: accepted; else a word of the reason */
	} cases[] = {
		{"orders.service", NULL},
		{"a/b/c", NULL},
		{"", "root"},
		{"a//b", "empty"},
		{"/a", "empty"},
		{"a/", "empty"},
		{"a/./b", "'.'"},
		{"a/../b", "'..'"},
		{"1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", NULL},
		{"1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", "16 levels"},
	};
	char longname[SM_ENROLL_NAME_MAX + 2];

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = sm_enroll_path_problem(cases[i].path);

		if (!cases[i].why)
			ASSERT_EQ(why == NULL, 1, cases[i].path);
		else
			ASSERT_HAS(why, cases[i].why, cases[i].path);
	}
	memset(longname, 'x', SM_ENROLL_NAME_MAX);
	longname[SM_ENROLL_NAME_MAX] = '\0';
	ASSERT_EQ(sm_enroll_path_problem(longname) == NULL, 1, "246 bytes");
	longname[SM_ENROLL_NAME_MAX] = 'x';
	longname[SM_ENROLL_NAME_MAX + 1] = '\0';
	ASSERT_HAS(sm_enroll_path_problem(longname), "246", "247 bytes");
}

static void test_bad_input(void **state)
{
	static const struct sm_enroll_workload bad_path[] = {{"a//b", 300, 0}};
	static const struct sm_enroll_workload no_id[] = {{"a", 0, 0}};
	struct sm_error err = {{0}};
	struct table t = {.n = 0};

	(void) state;
	ASSERT_EQ(sm_enroll_build(bad_path, 1, collect, &t, &err), -EINVAL, "bad path");
	ASSERT_HAS(err.msg, "a//b", "the message names the path");
	ASSERT_EQ(t.n, 0, "nothing emitted");
	ASSERT_EQ(sm_enroll_build(no_id, 1, collect, &t, &err), -EINVAL, "identity 0");
	ASSERT_EQ(sm_enroll_build(NULL, 0, collect, &t, &err), 0, "no workloads");
}

static void test_relative(void **state)
{
	(void) state;
	ASSERT_STR_EQ(sm_enroll_relative("/sys/fs/cgroup/system.slice",
					 "/sys/fs/cgroup/system.slice/orders.service"),
		      "orders.service", "below");
	ASSERT_STR_EQ(sm_enroll_relative("system.slice/", "system.slice/a/b"), "a/b",
		      "relative paths, trailing slash on the root");
	ASSERT_EQ(sm_enroll_relative("/sys/fs/cgroup/system.slice",
				     "/sys/fs/cgroup/system.slice") == NULL,
		  1, "the root itself");
	ASSERT_EQ(sm_enroll_relative("/sys/fs/cgroup/system", "/sys/fs/cgroup/system.slice/a") ==
			  NULL,
		  1, "a sibling whose name starts the same");
	ASSERT_EQ(sm_enroll_relative("/a/b", "/a") == NULL, 1, "an ancestor");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tree),
		cmocka_unit_test(test_node_ids),
		cmocka_unit_test(test_same_name_in_two_places),
		cmocka_unit_test(test_path_rules),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_relative),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
