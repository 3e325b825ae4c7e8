// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/daemon/flowjoin.c: the tunnel's facts for the flow
 * records of its streams' sockets. What the writer puts in comes out to the
 * reader unchanged, and a live stream's entry stays small (every idle
 * tunnelled connection holds one on each node).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator statistics (sanitizer/allocator_interface.h, which gcc does not install) */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "check.h"
#include "flowjoin.h"
#include "intern.h"
#include "util.h"

/* Heap bytes in use (requested sizes under ASan, which the unit tests run with). */
static size_t heap_in_use(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return __sanitizer_get_current_allocated_bytes();
#else
	return mallinfo2().uordblks;
#endif
}

static struct sm_addr addr4(uint32_t host)
{
	struct sm_addr a;

	memset(&a, 0, sizeof(a));
	a.family = AF_INET;
	host = htonl(host);
	memcpy(a.bytes, &host, 4);
	return a;
}

/* A live outbound stream's entry, filled as join_update() (hbone_flow.c) fills it. */
static void put_live(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port)
{
	struct sm_flowjoin *j = sm_flowjoins_lock(t, a, port, true);

	ASSERT_NOT_NULL(j, "sm_flowjoins_lock(create)");
	j->inbound = false;
	snprintf(j->trace, sizeof(j->trace), "00-%032x-%016x-01", port, port);
	j->tls.present = true;
	j->tls.encrypted = true;
	sm_strlcpy(j->tls.version, "TLSv1.3", sizeof(j->tls.version));
	sm_strlcpy(j->tls.cipher, "TLS_AES_128_GCM_SHA256", sizeof(j->tls.cipher));
	j->tls.handshake_us = 1234;
	j->tls.local_spiffe_id = sm_intern("spiffe://example.org/ns/a/sa/client");
	j->tls.peer_spiffe_id = sm_intern("spiffe://example.org/ns/a/sa/server");
	sm_flowjoins_unlock(t);
}

static void test_round_trip(void **state)
{
	struct sm_flowjoins *t = sm_flowjoins_new();
	struct sm_addr a = addr4(0x0a000001), b = addr4(0x0a000002);
	struct sm_flowjoin *j, out;

	(void) state;
	ASSERT_NOT_NULL(t, "sm_flowjoins_new");
	/* no entry and none made: NULL, table still locked */
	ASSERT_EQ(sm_flowjoins_lock(t, &a, 40000, false) == NULL, 1, "lock without create");
	sm_flowjoins_unlock(t);
	ASSERT_EQ(sm_flowjoins_take(t, &a, 40000, false, &out, NULL), 0, "take of a missing entry");

	put_live(t, &a, 40000);
	/* an inbound entry with every field the writers set */
	j = sm_flowjoins_lock(t, &b, 40001, true);
	ASSERT_NOT_NULL(j, "lock(create) b");
	j->inbound = true;
	sm_strlcpy(j->trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		   sizeof(j->trace));
	j->tls.present = true;
	j->tls.encrypted = true;
	sm_strlcpy(j->tls.mode, "STRICT", sizeof(j->tls.mode));
	sm_strlcpy(j->tls.version, "TLSv1.3", sizeof(j->tls.version));
	sm_strlcpy(j->tls.cipher, "TLS_AES_256_GCM_SHA384", sizeof(j->tls.cipher));
	j->peer_identity = 77;
	sm_strlcpy(j->peer_workload, "client", sizeof(j->peer_workload));
	sm_flowjoins_unlock(t);
	/* a second update sees the first one's facts and adds a failure and a policy */
	j = sm_flowjoins_lock(t, &b, 40001, false);
	ASSERT_NOT_NULL(j, "lock b again");
	ASSERT_EQ(j->peer_identity, 77, "peer_identity kept between updates");
	ASSERT_STR_EQ(j->tls.cipher, "TLS_AES_256_GCM_SHA384", "cipher kept between updates");
	sm_strlcpy(j->failure, "policy_revoked", sizeof(j->failure));
	sm_strlcpy(j->tls.failure, "policy_revoked", sizeof(j->tls.failure));
	j->policy.present = true;
	j->policy.revision = 9;
	sm_strlcpy(j->policy.match, "rule", sizeof(j->policy.match));
	sm_strlcpy(j->policy.name, "deny-all", sizeof(j->policy.name));
	j->policy.rule = 3;
	sm_strlcpy(j->policy.audit_name, "watch", sizeof(j->policy.audit_name));
	j->policy.audit_rule = 1;
	sm_flowjoins_unlock(t);

	ASSERT_EQ(sm_flowjoins_take(t, &a, 40000, false, &out, NULL), 1, "take a");
	ASSERT_EQ(out.inbound, 0, "a inbound");
	ASSERT_STR_EQ(out.trace, "00-00000000000000000000000000009c40-0000000000009c40-01",
		      "a trace");
	ASSERT_EQ(out.tls.present && out.tls.encrypted, 1, "a tls present, encrypted");
	ASSERT_STR_EQ(out.tls.mode, "", "a mode (never set)");
	ASSERT_STR_EQ(out.tls.version, "TLSv1.3", "a version");
	ASSERT_STR_EQ(out.tls.cipher, "TLS_AES_128_GCM_SHA256", "a cipher");
	ASSERT_EQ(out.tls.handshake_us, 1234, "a handshake_us");
	ASSERT_STR_EQ(out.tls.local_spiffe_id, "spiffe://example.org/ns/a/sa/client", "a local");
	ASSERT_STR_EQ(out.tls.peer_spiffe_id, "spiffe://example.org/ns/a/sa/server", "a peer");
	ASSERT_STR_EQ(out.failure, "", "a failure");
	ASSERT_STR_EQ(out.tls.failure, "", "a tls failure");
	ASSERT_EQ(out.policy.present, 0, "a policy");
	ASSERT_STR_EQ(out.peer_workload, "", "a peer_workload");

	ASSERT_EQ(sm_flowjoins_take(t, &b, 40001, true, &out, NULL), 1, "take b (final)");
	ASSERT_EQ(out.inbound, 1, "b inbound");
	ASSERT_STR_EQ(out.trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		      "b trace");
	ASSERT_STR_EQ(out.tls.mode, "STRICT", "b mode");
	ASSERT_EQ(out.tls.local_spiffe_id == NULL || !out.tls.local_spiffe_id[0], 1, "b local");
	ASSERT_EQ(out.peer_identity, 77, "b peer_identity");
	ASSERT_STR_EQ(out.peer_workload, "client", "b peer_workload");
	ASSERT_STR_EQ(out.failure, "policy_revoked", "b failure");
	ASSERT_STR_EQ(out.tls.failure, "policy_revoked", "b tls failure");
	ASSERT_EQ(out.policy.present, 1, "b policy present");
	ASSERT_EQ(out.policy.revision, 9, "b policy revision");
	ASSERT_STR_EQ(out.policy.match, "rule", "b policy match");
	ASSERT_STR_EQ(out.policy.name, "deny-all", "b policy name");
	ASSERT_EQ(out.policy.rule, 3, "b policy rule");
	ASSERT_STR_EQ(out.policy.audit_name, "watch", "b policy audit");
	ASSERT_EQ(out.policy.audit_rule, 1, "b policy audit_rule");
	/* final: forgotten */
	ASSERT_EQ(sm_flowjoins_take(t, &b, 40001, false, &out, NULL), 0, "b after its final take");
	sm_flowjoins_free(t);
}

/* Lingering entries expire; live ones (no expiry set) stay. */
static void test_linger_expire(void **state)
{
	struct sm_flowjoins *t = sm_flowjoins_new();
	struct sm_addr a = addr4(0x0a000001);
	struct sm_flowjoin out;

	(void) state;
	ASSERT_NOT_NULL(t, "sm_flowjoins_new");
	put_live(t, &a, 1);
	put_live(t, &a, 2);
	sm_flowjoins_linger(t, &a, 1, 100);
	sm_flowjoins_expire(t, 1000);
	ASSERT_EQ(sm_flowjoins_take(t, &a, 1, false, &out, NULL), 0, "lingered entry expired");
	ASSERT_EQ(sm_flowjoins_take(t, &a, 2, false, &out, NULL), 1, "live entry kept");
	sm_flowjoins_free(t);
}

/*
 * The writer's promise around a connect(): while one is under way, a missing
 * entry may yet come (expected); once the entry is written and the promise
 * ended, it is found; with no promise open, a missing entry is just missing.
 * Promises nest (two connects at once) and an unmatched end does not wrap.
 */
static void test_expect(void **state)
{
	struct sm_flowjoins *t = sm_flowjoins_new();
	struct sm_addr a = addr4(0x0a000001);
	struct sm_flowjoin out;
	bool expected = true;

	(void) state;
	ASSERT_NOT_NULL(t, "sm_flowjoins_new");
	ASSERT_EQ(sm_flowjoins_take(t, &a, 1, false, &out, &expected), 0, "no entry");
	ASSERT_EQ(expected, 0, "nothing connecting: not expected");

	sm_flowjoins_expect(t, true);
	sm_flowjoins_expect(t, true);
	ASSERT_EQ(sm_flowjoins_take(t, &a, 1, false, &out, &expected), 0, "not written yet");
	ASSERT_EQ(expected, 1, "a connect under way: expected");
	put_live(t, &a, 1);
	sm_flowjoins_expect(t, false);
	ASSERT_EQ(sm_flowjoins_take(t, &a, 1, false, &out, &expected), 1, "written");
	ASSERT_EQ(expected, 0, "found: not reported as expected");
	ASSERT_EQ(sm_flowjoins_take(t, &a, 2, false, &out, &expected), 0, "another port");
	ASSERT_EQ(expected, 1, "the second connect is still under way");
	sm_flowjoins_expect(t, false);
	ASSERT_EQ(sm_flowjoins_take(t, &a, 2, false, &out, &expected), 0, "another port");
	ASSERT_EQ(expected, 0, "both connects ended");
	sm_flowjoins_expect(t, false); /* one end too many */
	ASSERT_EQ(sm_flowjoins_take(t, &a, 2, false, &out, &expected), 0, "another port");
	ASSERT_EQ(expected, 0, "an extra end does not wrap around");
	sm_flowjoins_free(t);
}

/*
 * A stream whose connect failed leaves its entry, with the failure, to
 * linger; a later socket with the same address and port starts clean once
 * the writer forgets it: no failure of the earlier one, and no expiry.
 */
static void test_forget(void **state)
{
	struct sm_flowjoins *t = sm_flowjoins_new();
	struct sm_addr a = addr4(0x0a000001);
	struct sm_flowjoin *j, out;

	(void) state;
	ASSERT_NOT_NULL(t, "sm_flowjoins_new");
	put_live(t, &a, 7);
	j = sm_flowjoins_lock(t, &a, 7, false);
	ASSERT_NOT_NULL(j, "the entry");
	sm_strlcpy(j->failure, "upstream_refused", sizeof(j->failure));
	sm_flowjoins_unlock(t);
	sm_flowjoins_linger(t, &a, 7, 100);

	sm_flowjoins_forget(t, &a, 7);
	ASSERT_EQ(sm_flowjoins_take(t, &a, 7, false, &out, NULL), 0, "forgotten");
	put_live(t, &a, 7);
	sm_flowjoins_expire(t, 1000); /* the earlier entry's expiry is not the new one's */
	ASSERT_EQ(sm_flowjoins_take(t, &a, 7, true, &out, NULL), 1, "the new entry");
	ASSERT_STR_EQ(out.failure, "", "no failure of the earlier socket");
	sm_flowjoins_forget(t, &a, 8); /* no entry: nothing happens */
	sm_flowjoins_free(t);
}

/*
 * Each idle tunnelled connection keeps its entry on both nodes for as long
 * as it lives, so its size is memory per idle connection: at most
 * SM_JOIN_BYTES_MAX each (the table's hash buckets included), measured over
 * 2,000 live entries. It was about 650 bytes when the entry held the
 * expanded record blocks (fixed-size strings).
 */
#define SM_JOIN_BYTES_MAX 320
#define NLIVE		  2000

static void test_live_entry_size(void **state)
{
	struct sm_flowjoins *t = sm_flowjoins_new();
	size_t before, per;

	(void) state;
	ASSERT_NOT_NULL(t, "sm_flowjoins_new");
	/* interned strings are shared by every entry: not part of one entry's cost */
	put_live(t, &(struct sm_addr){.family = AF_INET}, 1);
	before = heap_in_use();
	for (uint32_t i = 0; i < NLIVE; i++) {
		struct sm_addr a = addr4(0x0a000000 + i);

		put_live(t, &a, (uint16_t) (10000 + i));
	}
	per = (heap_in_use() - before) / NLIVE;
	sm_flowjoins_free(t);
	print_message("  %d live entries: %zu bytes each\n", NLIVE, per);
	if (per > SM_JOIN_BYTES_MAX)
		fail_msg("a live stream's join entry takes %zu bytes, want at most %d", per,
			 SM_JOIN_BYTES_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),	cmocka_unit_test(test_linger_expire),
		cmocka_unit_test(test_expect),		cmocka_unit_test(test_forget),
		cmocka_unit_test(test_live_entry_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
