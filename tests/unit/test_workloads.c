// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/daemon/workloads.c: this node's workloads by
 * cgroup id. The cgroup filesystem is replaced by a table (sm_cgroup_id_of()
 * below), so the tests say which id each cgroup has and change it.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "check.h"
#include "workloads.h"

#define ROOT	 "/cg"
#define MAX_FAKE 4096

/* The fake cgroup filesystem: path -> id (0: no such cgroup). */
static struct {
	char path[PATH_MAX];
	uint64_t id;
} fake[MAX_FAKE];
static unsigned int nfake;

uint64_t sm_cgroup_id_of(const char *path);
uint64_t sm_cgroup_id_of(const char *path)
{
	for (unsigned int i = 0; i < nfake; i++)
		if (strcmp(fake[i].path, path) == 0)
			return fake[i].id;
	return 0;
}

static void fake_set(const char *cgroup, uint64_t id)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", ROOT, cgroup);
	for (unsigned int i = 0; i < nfake; i++) {
		if (strcmp(fake[i].path, path) == 0) {
			fake[i].id = id;
			return;
		}
	}
	assert_true(nfake < MAX_FAKE);
	snprintf(fake[nfake].path, sizeof(fake[nfake].path), "%s", path);
	fake[nfake++].id = id;
}

/* A catalog of n workloads named w<i> in cgroups wl/<i>, on node node_of(i). */
static void catalog_make(struct sm_catalog *cat, unsigned int n,
			 unsigned int (*node_of)(unsigned int))
{
	memset(cat, 0, sizeof(*cat));
	cat->workloads = calloc(n, sizeof(*cat->workloads));
	assert_non_null(cat->workloads);
	cat->nworkloads = n;
	for (unsigned int i = 0; i < n; i++) {
		snprintf(cat->workloads[i].name, sizeof(cat->workloads[i].name), "w%u", i);
		snprintf(cat->workloads[i].cgroup, sizeof(cat->workloads[i].cgroup), "wl/%u", i);
		cat->workloads[i].node = node_of(i);
	}
}

static unsigned int node_even_odd(unsigned int i)
{
	return i % 2;
}

static unsigned int node_zero(unsigned int i)
{
	(void) i;
	return 0;
}

static void test_lookup_local_only(void **state)
{
	struct sm_catalog cat;
	struct sm_workloads *ws;

	(void) state;
	nfake = 0;
	catalog_make(&cat, 4, node_even_odd);
	fake_set("wl/0", 100);
	fake_set("wl/1", 101); /* on node 1: not this node's */
	fake_set("wl/2", 102);
	/* wl/3 does not exist */
	ws = sm_workloads_new(&cat);
	ASSERT_NOT_NULL(ws, "new");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 100), -1, "nothing known before the first refresh");
	sm_workloads_refresh(ws, &cat, 0, ROOT);
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 100), 0, "w0 by its cgroup id");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 102), 2, "w2 by its cgroup id");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 101), -1, "another node's workload is not local");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 0), -1, "id 0 names nothing");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 999), -1, "an unknown id");
	ASSERT_EQ(sm_workloads_cgroup(ws, 0), 100, "w0's id");
	ASSERT_EQ(sm_workloads_cgroup(ws, 1), 0, "w1 is not on this node");
	ASSERT_EQ(sm_workloads_cgroup(ws, 3), 0, "w3's cgroup does not exist");
	ASSERT_EQ(sm_workloads_cgroup(ws, 4), 0, "past the end");
	ASSERT_EQ(sm_workloads_cgroup(ws, -1), 0, "negative");
	sm_workloads_free(ws);
	free(cat.workloads);
}

/* A cgroup removed and made again has a new id: the old one names nothing after a refresh. */
static void test_refresh_follows_the_cgroups(void **state)
{
	struct sm_catalog cat;
	struct sm_workloads *ws;

	(void) state;
	nfake = 0;
	catalog_make(&cat, 2, node_zero);
	fake_set("wl/0", 10);
	ws = sm_workloads_new(&cat);
	ASSERT_NOT_NULL(ws, "new");
	sm_workloads_refresh(ws, &cat, 0, ROOT);
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 10), 0, "before");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 11), -1, "w1 has no cgroup yet");
	fake_set("wl/0", 20);
	fake_set("wl/1", 11);
	sm_workloads_refresh(ws, &cat, 0, ROOT);
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 10), -1, "the old id is gone");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 20), 0, "the new id");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 11), 1, "w1's cgroup appeared");
	fake_set("wl/1", 0);
	sm_workloads_refresh(ws, &cat, 0, ROOT);
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 11), -1, "w1's cgroup went away");
	sm_workloads_free(ws);
	free(cat.workloads);
}

/* Two workloads whose cgroups resolve to one id: the first in the catalog names it. */
static void test_shared_id_first_wins(void **state)
{
	struct sm_catalog cat;
	struct sm_workloads *ws;

	(void) state;
	nfake = 0;
	catalog_make(&cat, 3, node_zero);
	fake_set("wl/0", 7);
	fake_set("wl/1", 5);
	fake_set("wl/2", 5);
	ws = sm_workloads_new(&cat);
	ASSERT_NOT_NULL(ws, "new");
	sm_workloads_refresh(ws, &cat, 0, ROOT);
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 5), 1, "the first of two");
	ASSERT_EQ(sm_workloads_cgroup(ws, 2), 5, "the second still has its id");
	sm_workloads_free(ws);
	free(cat.workloads);
}

/* Every one of many workloads is found by its id, and the empty catalog works. */
static void test_many_and_none(void **state)
{
	const unsigned int n = 3000;
	struct sm_catalog cat, empty = {0};
	struct sm_workloads *ws;
	char cg[32];

	(void) state;
	nfake = 0;
	catalog_make(&cat, n, node_zero);
	for (unsigned int i = 0; i < n; i++) {
		snprintf(cg, sizeof(cg), "wl/%u", i);
		fake_set(cg, 1000000 + (uint64_t) i * 7);
	}
	ws = sm_workloads_new(&cat);
	ASSERT_NOT_NULL(ws, "new");
	sm_workloads_refresh(ws, &cat, 0, ROOT);
	for (unsigned int i = 0; i < n; i++)
		ASSERT_EQ(sm_workloads_by_cgroup(ws, 1000000 + (uint64_t) i * 7), i, "by id");
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 1000001), -1, "between two ids");
	sm_workloads_free(ws);
	free(cat.workloads);

	ws = sm_workloads_new(&empty);
	ASSERT_NOT_NULL(ws, "new, no workloads");
	sm_workloads_refresh(ws, &empty, 0, ROOT);
	ASSERT_EQ(sm_workloads_by_cgroup(ws, 1000000), -1, "no workloads");
	ASSERT_EQ(sm_workloads_cgroup(ws, 0), 0, "no workload 0");
	sm_workloads_free(ws);
	sm_workloads_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup_local_only),
		cmocka_unit_test(test_refresh_follows_the_cgroups),
		cmocka_unit_test(test_shared_id_first_wins),
		cmocka_unit_test(test_many_and_none),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
