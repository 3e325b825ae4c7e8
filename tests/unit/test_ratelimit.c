// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/ratelimit.c: token buckets, exact suppressed counts, the LRU bound.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ratelimit.h"
#include "sockmesh/common.h"

#define SEC 1000000000LL

static struct sm_ratelimit_key id_key(uint32_t identity)
{
	struct sm_ratelimit_key k;

	sm_ratelimit_key_of(identity, NULL, &k);
	return k;
}

/* How many of n records at time t pass. */
static unsigned int allow_n(struct sm_ratelimit *rl, const struct sm_ratelimit_key *k, int n,
			    int64_t t)
{
	unsigned int passed = 0;

	for (int i = 0; i < n; i++)
		passed += sm_ratelimit_allow(rl, k, t);
	return passed;
}

static void test_burst_then_rate(void **state)
{
	struct sm_ratelimit *rl = sm_ratelimit_new(16, 10, 20);
	struct sm_ratelimit_key k = id_key(300);
	struct sm_ratelimit_top top[4];
	size_t n;

	ASSERT_NOT_NULL(rl, "new");
	ASSERT_EQ(allow_n(rl, &k, 100, SEC), 20, "a burst of 100 at once: the burst passes");
	/* half a second later: 5 tokens */
	ASSERT_EQ(allow_n(rl, &k, 100, SEC + SEC / 2), 5, "10/s for 0.5 s");
	/* a long pause refills to the burst, not beyond */
	ASSERT_EQ(allow_n(rl, &k, 100, 1000 * SEC), 20, "refilled to the burst only");
	ASSERT_EQ(sm_ratelimit_take(rl, top, 4, &n), 80 + 95 + 80, "suppressed total");
	ASSERT_EQ(n, 1, "one source");
	ASSERT_EQ(top[0].key.identity, 300, "its identity");
	ASSERT_EQ(top[0].suppressed, 255, "its count");
	ASSERT_EQ(sm_ratelimit_take(rl, top, 4, &n), 0, "take resets");
	ASSERT_EQ(n, 0, "no sources after the reset");
	/* time going backwards adds nothing */
	ASSERT_EQ(allow_n(rl, &k, 5, SEC), 0, "earlier time: no new tokens");
	sm_ratelimit_free(rl);
}

static void test_unlimited(void **state)
{
	struct sm_ratelimit *rl = sm_ratelimit_new(4, 0, 1);
	struct sm_ratelimit_key k = id_key(300);

	ASSERT_NOT_NULL(rl, "new");
	ASSERT_EQ(allow_n(rl, &k, 10000, SEC), 10000, "rate 0 passes everything");
	ASSERT_EQ(sm_ratelimit_take(rl, NULL, 0, NULL), 0, "nothing suppressed");
	ASSERT_EQ(sm_ratelimit_sources(rl), 0, "no source remembered");
	sm_ratelimit_free(rl);
}

/* World and wildcard sources are told apart by address; others by identity only. */
static void test_keys(void **state)
{
	struct sm_ratelimit *rl = sm_ratelimit_new(16, 1, 1);
	struct sm_ratelimit_key a, b, c, d;
	struct sm_addr x, y;

	sm_addr_parse("10.0.0.1", &x);
	sm_addr_parse("10.0.0.2", &y);
	sm_ratelimit_key_of(SM_ID_WORLD, &x, &a);
	sm_ratelimit_key_of(SM_ID_WORLD, &y, &b);
	sm_ratelimit_key_of(300, &x, &c);
	sm_ratelimit_key_of(300, &y, &d);
	ASSERT_EQ(c.addr.family, 0, "an allocated identity is the key alone");
	ASSERT_EQ(allow_n(rl, &a, 2, SEC), 1, "world from x");
	ASSERT_EQ(allow_n(rl, &b, 2, SEC), 1, "world from y: its own bucket");
	ASSERT_EQ(allow_n(rl, &c, 2, SEC), 1, "identity 300");
	ASSERT_EQ(allow_n(rl, &d, 2, SEC), 0, "identity 300 from another address: same bucket");
	ASSERT_EQ(sm_ratelimit_sources(rl), 3, "three sources");
	sm_ratelimit_free(rl);
}

/* The table never grows past its bound; evicted sources' counts stay in the total. */
static void test_lru_bound(void **state)
{
	struct sm_ratelimit *rl = sm_ratelimit_new(8, 1, 1);
	struct sm_ratelimit_top top[3];
	struct sm_ratelimit_key k;
	uint64_t want = 0;
	size_t n;

	ASSERT_NOT_NULL(rl, "new");
	for (uint32_t id = 1000; id < 1100; id++) {
		k = id_key(id);
		/* id 1000 is seen again and again: the most recent, never evicted */
		ASSERT_EQ(allow_n(rl, &k, 1 + (int) (id % 3), SEC), 1, "one token each");
		want += id % 3;
		k = id_key(1000);
		if (id > 1000)
			want += 1 - allow_n(rl, &k, 1, SEC);
		ASSERT_GE(8, sm_ratelimit_sources(rl), "bounded");
	}
	ASSERT_EQ(sm_ratelimit_sources(rl), 8, "full");
	ASSERT_EQ(sm_ratelimit_take(rl, top, 3, &n), want, "exact total across evictions");
	ASSERT_EQ(n, 3, "top 3");
	ASSERT_EQ(top[0].key.identity, 1000, "the busiest source first");
	ASSERT_EQ(top[0].suppressed, 100, "its count: 1 in its own round, then 99");
	ASSERT_GE(top[1].suppressed, top[2].suppressed, "sorted");
	sm_ratelimit_free(rl);
}

/* Top-N keeps the N largest, largest first, whatever the order they are met in. */
static void test_top_order(void **state)
{
	static const int counts[] = {3, 9, 1, 7, 5, 8, 2};
	struct sm_ratelimit *rl = sm_ratelimit_new(16, 1, 1);
	struct sm_ratelimit_top top[3];
	struct sm_ratelimit_key k;
	size_t n;

	for (size_t i = 0; i < SM_ARRAY_SIZE(counts); i++) {
		k = id_key(500 + (uint32_t) i);
		allow_n(rl, &k, counts[i] + 1, SEC);
	}
	ASSERT_EQ(sm_ratelimit_take(rl, top, 3, &n), 35, "total");
	ASSERT_EQ(n, 3, "three");
	ASSERT_EQ(top[0].suppressed, 9, "first");
	ASSERT_EQ(top[1].suppressed, 8, "second");
	ASSERT_EQ(top[2].suppressed, 7, "third");
	ASSERT_EQ(top[0].key.identity, 501, "first's identity");
	sm_ratelimit_free(rl);
}

static void test_set_and_bad_args(void **state)
{
	struct sm_ratelimit *rl = sm_ratelimit_new(4, 1, 2);
	struct sm_ratelimit_key k = id_key(300);

	ASSERT_EQ(allow_n(rl, &k, 10, SEC), 2, "burst 2");
	sm_ratelimit_set(rl, 1, 5);
	ASSERT_EQ(allow_n(rl, &k, 10, SEC), 5, "new burst applies at once");
	sm_ratelimit_set(rl, 0, 5);
	ASSERT_EQ(allow_n(rl, &k, 10, SEC), 10, "rate 0: unlimited");
	sm_ratelimit_free(rl);

	errno = 0;
	ASSERT_EQ(sm_ratelimit_new(0, 1, 1) == NULL, 1, "no sources");
	ASSERT_EQ(errno, EINVAL, "EINVAL");
	ASSERT_EQ(sm_ratelimit_new(4, 1, 0) == NULL, 1, "burst 0");
	sm_ratelimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_rate),
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_lru_bound),
		cmocka_unit_test(test_top_order),
		cmocka_unit_test(test_set_and_bad_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
