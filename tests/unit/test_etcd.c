// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/lib/etcd.c against a real etcd (Debian's etcd-server,
 * started by scripts/test-etcd.sh on 127.0.0.1 with ports of its own, mutual
 * TLS). Without /usr/bin/etcd the tests fail: CI installs it
 * (scripts/install-deps.sh, group unit).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "etcd.h"

#define SCRIPT "scripts/test-etcd.sh"

static struct {
	char dir[64];
	int client_port;
	bool started;
	struct sm_etcd *e, *e2;
	int refuse_fd;
} g = {.refuse_fd = -1};

static int run(const char *cmd)
{
	int rc = system(cmd);

	if (rc != 0)
		fprintf(stderr, "test_etcd: '%s' failed (status %d)\n", cmd, rc);
	return rc == 0 ? 0 : -1;
}

static int stop_etcd(void **state);

/* A failed setup stops what it started (stop_etcd() may run again: it is idempotent). */
static int start_etcd(void **state)
{
	char cmd[512];

	if (access("/usr/bin/etcd", X_OK) != 0 || access("/usr/bin/etcdctl", X_OK) != 0) {
		fprintf(stderr, "test_etcd: /usr/bin/etcd or /usr/bin/etcdctl missing: install "
				"etcd-server and etcd-client (scripts/install-deps.sh)\n");
		return -1;
	}
	if (access(SCRIPT, X_OK) != 0) {
		fprintf(stderr, "test_etcd: %s not found (run from the repository root)\n", SCRIPT);
		return -1;
	}
	snprintf(g.dir, sizeof(g.dir), "/tmp/sockmesh-etcd-XXXXXX");
	if (!mkdtemp(g.dir)) {
		perror("mkdtemp");
		g.dir[0] = '\0';
		return -1;
	}
	/* ports of this process: parallel runs on 127.0.0.1 do not collide */
	g.client_port = 20000 + (int) (getpid() % 10000) * 2;
	snprintf(cmd, sizeof(cmd), "%s start %s/srv 127.0.0.1 --client-port %d --peer-port %d",
		 SCRIPT, g.dir, g.client_port, g.client_port + 1);
	g.started = true; /* stop does nothing without a pid file */
	if (run(cmd))
		goto stop;
	/* a PKI of another CA: its client certificates must be refused */
	snprintf(cmd, sizeof(cmd), "%s pki %s/other", SCRIPT, g.dir);
	if (run(cmd))
		goto stop;
	return 0;
stop:
	stop_etcd(state);
	return -1;
}

static int stop_etcd(void **state)
{
	char cmd[256];

	if (g.started) {
		snprintf(cmd, sizeof(cmd), "%s stop %s/srv", SCRIPT, g.dir);
		run(cmd);
		/* test_auth_token_expiry's, if a failed check left it running */
		snprintf(cmd, sizeof(cmd), "%s stop %s/ttl", SCRIPT, g.dir);
		run(cmd);
	}
	if (strncmp(g.dir, "/tmp/sockmesh-etcd-", 19) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
		run(cmd);
	}
	return 0;
}

static void cfg_init(struct sm_etcd_cfg *cfg, const char *pki, const char *client)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->endpoints[0], SM_ETCD_URL_MAX, "https://127.0.0.1:%d", g.client_port);
	cfg->nendpoints = 1;
	snprintf(cfg->ca, sizeof(cfg->ca), "%s/srv/ca.pem", g.dir);
	snprintf(cfg->cert, sizeof(cfg->cert), "%s/%s/client-%s.pem", g.dir, pki, client);
	snprintf(cfg->key, sizeof(cfg->key), "%s/%s/client-%s-key.pem", g.dir, pki, client);
}

static void open_client(struct sm_etcd **e)
{
	struct sm_etcd_cfg cfg;
	struct sm_error err = {{0}};

	cfg_init(&cfg, "srv", "node1");
	if (sm_etcd_open(e, &cfg, &err))
		fail_msg("sm_etcd_open: %s", err.msg);
}

static int setup(void **state)
{
	open_client(&g.e);
	return 0;
}

static int teardown(void **state)
{
	sm_etcd_close(g.e);
	sm_etcd_close(g.e2);
	g.e = g.e2 = NULL;
	if (g.refuse_fd >= 0)
		close(g.refuse_fd);
	g.refuse_fd = -1;
	return 0;
}

#define OK(call)                                                                                   \
	do {                                                                                       \
		struct sm_error err_ = {{0}};                                                      \
		int rc_ = (call);                                                                  \
		if (rc_ != 0)                                                                      \
			fail_msg("%s: %d (%s)", #call, rc_, err_.msg);                             \
	} while (0)
/* The calls below name their struct sm_error err_ through ERR. */
#define ERR (&err_)

static void put(const char *key, const char *value, size_t len, int64_t lease, int64_t *rev)
{
	OK(sm_etcd_put(g.e, key, value, len, lease, rev, ERR));
}

/* ---- configuration ---- */

static void test_cfg_check(void **state)
{
	struct sm_etcd_cfg cfg;
	struct sm_error err = {{0}};
	struct sm_etcd *e = NULL;

	cfg_init(&cfg, "srv", "node1");
	ASSERT_EQ(sm_etcd_cfg_check(&cfg, &err), 0, err.msg);
	snprintf(cfg.endpoints[0], SM_ETCD_URL_MAX, "http://127.0.0.1:%d", g.client_port);
	ASSERT_EQ(sm_etcd_cfg_check(&cfg, &err), -EINVAL, "http:// endpoint");
	assert_non_null(strstr(err.msg, "https://"));
	ASSERT_EQ(sm_etcd_open(&e, &cfg, &err), -EINVAL, "open with an http:// endpoint");
	snprintf(cfg.endpoints[0], SM_ETCD_URL_MAX, "https://127.0.0.1:%d/", g.client_port);
	ASSERT_EQ(sm_etcd_cfg_check(&cfg, &err), -EINVAL, "an endpoint with a path");

	cfg_init(&cfg, "srv", "node1");
	cfg.nendpoints = 0;
	ASSERT_EQ(sm_etcd_cfg_check(&cfg, &err), -EINVAL, "no endpoint");
	cfg_init(&cfg, "srv", "node1");
	snprintf(cfg.key, sizeof(cfg.key), "%s/nonexistent.pem", g.dir);
	ASSERT_EQ(sm_etcd_cfg_check(&cfg, &err), -EINVAL, "missing key file");
	assert_non_null(strstr(err.msg, "nonexistent.pem"));
	cfg_init(&cfg, "srv", "node1");
	snprintf(cfg.username, sizeof(cfg.username), "sockmesh");
	ASSERT_EQ(sm_etcd_cfg_check(&cfg, &err), -EINVAL, "username without password file");
}

/* ---- KV ---- */

static void test_put_get(void **state)
{
	static const char bin[] = {'a', '\0', 'b', '\xff', '\n', '"', '\\', '\0'};
	const char *ukey = "t/get/dir/sub/\xc3\xa9t\xc3\xa9-\xe2\x9c\x93";
	struct sm_etcd_kvs kvs;
	int64_t r1, r2, r3;

	put("t/get/bin", bin, sizeof(bin), 0, &r1);
	put("t/get/empty", "", 0, 0, &r2);
	put(ukey, "u", 1, 0, &r3);
	ASSERT_GE(r2, r1 + 1, "revision after the second put");
	ASSERT_GE(r3, r2 + 1, "revision after the third put");

	OK(sm_etcd_get(g.e, "t/get/bin", &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "one key");
	ASSERT_EQ(kvs.kvs[0].value_len, sizeof(bin), "binary value length");
	assert_memory_equal(kvs.kvs[0].value, bin, sizeof(bin));
	ASSERT_EQ(kvs.kvs[0].value[sizeof(bin)], '\0', "NUL after the value");
	assert_string_equal(kvs.kvs[0].key, "t/get/bin");
	ASSERT_EQ(kvs.kvs[0].mod_revision, r1, "mod_revision");
	ASSERT_EQ(kvs.kvs[0].create_revision, r1, "create_revision");
	ASSERT_EQ(kvs.kvs[0].version, 1, "version");
	ASSERT_EQ(kvs.kvs[0].lease, 0, "no lease");
	ASSERT_GE(kvs.revision, r3, "header revision");
	sm_etcd_kvs_free(&kvs);

	OK(sm_etcd_get(g.e, "t/get/empty", &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "the empty value's key");
	ASSERT_EQ(kvs.kvs[0].value_len, 0, "empty value");
	assert_string_equal(kvs.kvs[0].value, "");
	sm_etcd_kvs_free(&kvs);

	OK(sm_etcd_get(g.e, "t/get/absent", &kvs, ERR));
	ASSERT_EQ(kvs.n, 0, "absent key");
	sm_etcd_kvs_free(&kvs);
	/* "t/get/bin" is not a prefix match of get() */
	OK(sm_etcd_get(g.e, "t/get/bi", &kvs, ERR));
	ASSERT_EQ(kvs.n, 0, "get is not a prefix get");
	sm_etcd_kvs_free(&kvs);

	OK(sm_etcd_get_prefix(g.e, "t/get/", 0, &kvs, ERR));
	ASSERT_EQ(kvs.n, 3, "keys under t/get/");
	assert_string_equal(kvs.kvs[0].key, "t/get/bin");
	assert_string_equal(kvs.kvs[1].key, ukey);
	assert_string_equal(kvs.kvs[2].key, "t/get/empty");
	ASSERT_EQ(kvs.kvs[1].key_len, strlen(ukey), "unicode key length");
	sm_etcd_kvs_free(&kvs);

	/* at an older revision: only what existed then */
	OK(sm_etcd_get_prefix(g.e, "t/get/", r1, &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "keys under t/get/ at the first put's revision");
	sm_etcd_kvs_free(&kvs);
}

static void test_prefix_ff(void **state)
{
	struct sm_etcd_kvs kvs;

	put("t/ff/a\xff", "1", 1, 0, NULL);
	put("t/ff/a\xff\xff", "2", 1, 0, NULL);
	put("t/ff/a\xffz", "3", 1, 0, NULL);
	put("t/ff/b", "4", 1, 0, NULL);
	put("t/ff/a", "5", 1, 0, NULL);
	/* range end "t/ff/b": a 0xff last byte is dropped, not wrapped to 0x00 */
	OK(sm_etcd_get_prefix(g.e, "t/ff/a\xff", 0, &kvs, ERR));
	ASSERT_EQ(kvs.n, 3, "keys under t/ff/a\\xff");
	assert_string_equal(kvs.kvs[0].key, "t/ff/a\xff");
	assert_string_equal(kvs.kvs[1].key, "t/ff/a\xffz");
	assert_string_equal(kvs.kvs[2].key, "t/ff/a\xff\xff");
	sm_etcd_kvs_free(&kvs);
	OK(sm_etcd_get_prefix(g.e, "t/ff/a\xff\xff", 0, &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "keys under t/ff/a\\xff\\xff");
	sm_etcd_kvs_free(&kvs);
}

static void test_txn(void **state)
{
	struct sm_etcd_kvs kvs;
	int64_t r1, rev;
	bool ok;

	put("t/txn/a", "1", 1, 0, &r1);
	{
		struct sm_etcd_cmp cmp = {.key = "t/txn/a",
					  .target = SM_ETCD_MOD,
					  .result = SM_ETCD_EQUAL,
					  .value = r1};
		struct sm_etcd_cmp absent = {.key = "t/txn/new",
					     .target = SM_ETCD_CREATE,
					     .result = SM_ETCD_EQUAL,
					     .value = 0};
		struct sm_etcd_op ops[] = {
			{.type = SM_ETCD_PUT, .key = "t/txn/a", .value = "2", .value_len = 1},
			{.type = SM_ETCD_PUT, .key = "t/txn/new", .value = "n", .value_len = 1},
		};
		struct sm_etcd_cmp both[] = {cmp, absent};

		OK(sm_etcd_txn(g.e, both, 2, ops, 2, &ok, &rev, ERR));
		assert_true(ok);
		ASSERT_EQ(rev, r1 + 1, "one revision for the whole transaction");
		/* the same comparison again: a:mod is rev now, not r1 */
		ops[0].value = "3";
		OK(sm_etcd_txn(g.e, both, 2, ops, 2, &ok, &rev, ERR));
		assert_false(ok);
		ASSERT_EQ(rev, r1 + 1, "a failed transaction writes nothing");
	}
	OK(sm_etcd_get(g.e, "t/txn/a", &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "t/txn/a");
	assert_string_equal(kvs.kvs[0].value, "2");
	sm_etcd_kvs_free(&kvs);

	/* on a prefix: every key's mod_revision must be below rev + 1 */
	{
		struct sm_etcd_cmp cmp = {.key = "t/txn/",
					  .prefix = true,
					  .target = SM_ETCD_MOD,
					  .result = SM_ETCD_LESS,
					  .value = rev + 1};
		struct sm_etcd_op op = {
			.type = SM_ETCD_PUT, .key = "t/txn/b", .value = "b", .value_len = 1};
		int64_t rev2;

		OK(sm_etcd_txn(g.e, &cmp, 1, &op, 1, &ok, &rev2, ERR));
		assert_true(ok);
		/* t/txn/b is at rev2 > rev now: the same comparison fails */
		OK(sm_etcd_txn(g.e, &cmp, 1, &op, 1, &ok, &rev2, ERR));
		assert_false(ok);
		/* a key outside the prefix does not count */
		cmp.key = "t/txn/a";
		cmp.prefix = false;
		OK(sm_etcd_txn(g.e, &cmp, 1, &op, 1, &ok, &rev2, ERR));
		assert_true(ok);
	}
}

static void test_txn_too_big(void **state)
{
	struct sm_etcd_op ops[200];
	struct sm_error err = {{0}};
	char keys[200][32];
	bool ok = true;
	int64_t rev;

	for (int i = 0; i < 200; i++) {
		snprintf(keys[i], sizeof(keys[i]), "t/big/%03d", i);
		ops[i] = (struct sm_etcd_op){
			.type = SM_ETCD_PUT, .key = keys[i], .value = "x", .value_len = 1};
	}
	ASSERT_EQ(sm_etcd_txn(g.e, NULL, 0, ops, 200, &ok, &rev, &err), -E2BIG, err.msg);
	assert_non_null(strstr(err.msg, "max-txn-ops"));
	assert_false(ok);
	OK(sm_etcd_txn(g.e, NULL, 0, ops, 128, &ok, &rev, ERR));
	assert_true(ok);
}

static void test_delete_prefix(void **state)
{
	struct sm_etcd_kvs kvs;
	int64_t rev;

	put("t/del/a", "1", 1, 0, NULL);
	put("t/del/b/c", "2", 1, 0, NULL);
	put("t/del/b/d", "3", 1, 0, NULL);
	put("t/delx", "4", 1, 0, NULL);
	OK(sm_etcd_delete(g.e, "t/del/b/c", false, NULL, ERR));
	OK(sm_etcd_get_prefix(g.e, "t/del/", 0, &kvs, ERR));
	ASSERT_EQ(kvs.n, 2, "after deleting one key");
	sm_etcd_kvs_free(&kvs);
	OK(sm_etcd_delete(g.e, "t/del/", true, &rev, ERR));
	OK(sm_etcd_get_prefix(g.e, "t/del/", 0, &kvs, ERR));
	ASSERT_EQ(kvs.n, 0, "after deleting the prefix");
	ASSERT_GE(kvs.revision, rev, "revision after the delete");
	sm_etcd_kvs_free(&kvs);
	OK(sm_etcd_get(g.e, "t/delx", &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "a key beside the prefix stays");
	sm_etcd_kvs_free(&kvs);
}

/* ---- leases ---- */

static void test_lease(void **state)
{
	struct sm_etcd_kvs kvs;
	int64_t id = 0, ttl, left, granted;

	OK(sm_etcd_lease_grant(g.e, 60, &id, ERR));
	assert_true(id != 0);
	OK(sm_etcd_lease_ttl(g.e, id, &left, &granted, ERR));
	ASSERT_EQ(granted, 60, "granted TTL");
	ASSERT_GE(left, 1, "seconds left");
	assert_true(left <= 60);
	OK(sm_etcd_lease_keepalive(g.e, id, &ttl, ERR));
	ASSERT_EQ(ttl, 60, "TTL after a keepalive");

	put("t/lease/k", "v", 1, id, NULL);
	OK(sm_etcd_get(g.e, "t/lease/k", &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "the leased key");
	ASSERT_EQ(kvs.kvs[0].lease, id, "its lease");
	sm_etcd_kvs_free(&kvs);

	OK(sm_etcd_lease_revoke(g.e, id, ERR));
	/* again: the lease is gone, which is what revoking asks */
	OK(sm_etcd_lease_revoke(g.e, id, ERR));
	OK(sm_etcd_get(g.e, "t/lease/k", &kvs, ERR));
	ASSERT_EQ(kvs.n, 0, "the key went with its revoked lease");
	sm_etcd_kvs_free(&kvs);
	OK(sm_etcd_lease_keepalive(g.e, id, &ttl, ERR));
	ASSERT_EQ(ttl, 0, "keepalive of a revoked lease");
	OK(sm_etcd_lease_ttl(g.e, id, &left, &granted, ERR));
	ASSERT_EQ(left, -1, "TTL of a revoked lease");
}

/* ---- watch ---- */

struct seen {
	int calls, created;
	int64_t created_rev;
	int nev;
	bool deleted[8];
	char keys[8][32];
	char values[8][8];
	int64_t mod[8];
	atomic_bool stop;
	bool stop_on_create, write_on_create;
};

static int on_watch(void *arg, int64_t revision, const struct sm_etcd_event *ev, size_t n)
{
	struct seen *s = arg;

	s->calls++;
	if (s->calls == 1) {
		struct sm_error err = {{0}};
		int rc = 0;

		/* the first answer is the creation */
		assert_int_equal(n, 0);
		s->created++;
		s->created_rev = revision;
		if (s->stop_on_create)
			atomic_store(&s->stop, true);
		if (s->write_on_create) {
			rc = rc ?: sm_etcd_put(g.e2, "t/w/a", "1", 1, 0, NULL, &err);
			rc = rc ?: sm_etcd_put(g.e2, "t/w/b", "2", 1, 0, NULL, &err);
			rc = rc ?: sm_etcd_put(g.e2, "t/wx", "outside", 7, 0, NULL, &err);
			rc = rc ?: sm_etcd_delete(g.e2, "t/w/a", false, NULL, &err);
			if (rc)
				fail_msg("writing during the watch: %s", err.msg);
		}
		return 0;
	}
	for (size_t i = 0; i < n && s->nev < 8; i++, s->nev++) {
		s->deleted[s->nev] = ev[i].deleted;
		snprintf(s->keys[s->nev], sizeof(s->keys[0]), "%s", ev[i].kv.key);
		snprintf(s->values[s->nev], sizeof(s->values[0]), "%s", ev[i].kv.value);
		s->mod[s->nev] = ev[i].kv.mod_revision;
	}
	return s->nev >= 3 ? 42 : 0;
}

static int64_t current_revision(void)
{
	struct sm_etcd_kvs kvs;
	int64_t rev;

	OK(sm_etcd_get(g.e, "t/none", &kvs, ERR));
	rev = kvs.revision;
	sm_etcd_kvs_free(&kvs);
	return rev;
}

static void test_watch_events(void **state)
{
	struct seen s = {.write_on_create = true};
	struct sm_error err = {{0}};
	int64_t rev = current_revision(), compact = -1;

	open_client(&g.e2);
	ASSERT_EQ(sm_etcd_watch(g.e, "t/w/", rev + 1, on_watch, &s, &s.stop, 20000, &compact, &err),
		  42, err.msg);
	ASSERT_EQ(s.created, 1, "created callbacks");
	ASSERT_EQ(s.created_rev, rev, "revision at creation");
	ASSERT_EQ(s.nev, 3, "events");
	assert_string_equal(s.keys[0], "t/w/a");
	assert_string_equal(s.values[0], "1");
	assert_false(s.deleted[0]);
	assert_string_equal(s.keys[1], "t/w/b");
	assert_false(s.deleted[1]);
	assert_string_equal(s.keys[2], "t/w/a");
	assert_true(s.deleted[2]);
	ASSERT_EQ(s.mod[0], rev + 1, "first event's revision");
	ASSERT_EQ(s.mod[1], rev + 2, "second event's revision");
	/* rev + 3 is t/wx, outside the prefix */
	ASSERT_EQ(s.mod[2], rev + 4, "the delete's revision");
	ASSERT_EQ(compact, 0, "no compaction");

	/* the same events again from history, on the same (kept-alive) client */
	memset(&s, 0, sizeof(s));
	ASSERT_EQ(sm_etcd_watch(g.e, "t/w/", rev + 1, on_watch, &s, NULL, 20000, NULL, &err), 42,
		  err.msg);
	ASSERT_EQ(s.nev, 3, "replayed events");
	assert_true(s.deleted[2]);
}

static int64_t elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_watch_stop(void **state)
{
	struct seen s = {.stop_on_create = true};
	struct sm_error err = {{0}};
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(sm_etcd_watch(g.e, "t/stop/", current_revision() + 1, on_watch, &s, &s.stop, 0,
				NULL, &err),
		  -EINTR, err.msg);
	ASSERT_EQ(s.created, 1, "created before the stop");
	/* generous: the contract is a check every 100 ms */
	assert_true(elapsed_ms(&t0) < 3000);
}

static void test_watch_idle(void **state)
{
	struct seen s = {0};
	struct sm_error err = {{0}};
	struct timespec t0;
	int64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(sm_etcd_watch(g.e, "t/idle/", current_revision() + 1, on_watch, &s, &s.stop, 300,
				NULL, &err),
		  -ETIMEDOUT, err.msg);
	ms = elapsed_ms(&t0);
	ASSERT_EQ(s.created, 1, "created");
	ASSERT_GE(ms, 300, "ms before the idle timeout");
	assert_true(ms < 10000);
}

/* Compaction: gets and watches from before it are -ESTALE. Runs after the other watches. */
static void test_compacted(void **state)
{
	struct seen s = {0};
	struct sm_etcd_kvs kvs;
	struct sm_error err = {{0}};
	int64_t r1, r2, compact = 0;

	put("t/cmp/k", "1", 1, 0, &r1);
	put("t/cmp/k", "2", 1, 0, &r2);
	OK(sm_etcd_compact(g.e, r2, ERR));
	ASSERT_EQ(sm_etcd_get_prefix(g.e, "t/cmp/", r1, &kvs, &err), -ESTALE, err.msg);
	assert_non_null(strstr(err.msg, "compacted"));
	OK(sm_etcd_get_prefix(g.e, "t/cmp/", r2, &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "at the compaction revision");
	assert_string_equal(kvs.kvs[0].value, "2");
	sm_etcd_kvs_free(&kvs);

	ASSERT_EQ(sm_etcd_watch(g.e, "t/cmp/", r1, on_watch, &s, &s.stop, 20000, &compact, &err),
		  -ESTALE, err.msg);
	ASSERT_EQ(compact, r2, "compact_revision of the canceled watch");
}

/* ---- endpoints, TLS ---- */

/* A port on 127.0.0.1 that refuses connections: bound, never listening. */
static int refusing_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	g.refuse_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(g.refuse_fd >= 0);
	assert_int_equal(bind(g.refuse_fd, (struct sockaddr *) &a, sizeof(a)), 0);
	assert_int_equal(getsockname(g.refuse_fd, (struct sockaddr *) &a, &len), 0);
	return ntohs(a.sin_port);
}

static void test_failover(void **state)
{
	struct sm_etcd_cfg cfg;
	struct sm_etcd_kvs kvs;
	struct sm_error err = {{0}};
	char bad[SM_ETCD_URL_MAX];

	cfg_init(&cfg, "srv", "node2");
	snprintf(bad, sizeof(bad), "https://127.0.0.1:%d", refusing_port());
	snprintf(cfg.endpoints[1], SM_ETCD_URL_MAX, "%s", cfg.endpoints[0]);
	snprintf(cfg.endpoints[0], SM_ETCD_URL_MAX, "%s", bad);
	cfg.nendpoints = 2;
	OK(sm_etcd_open(&g.e2, &cfg, ERR));
	assert_string_equal(sm_etcd_endpoint(g.e2), "");
	OK(sm_etcd_get(g.e2, "t/none", &kvs, ERR));
	sm_etcd_kvs_free(&kvs);
	assert_string_equal(sm_etcd_endpoint(g.e2), cfg.endpoints[1]);
	sm_etcd_close(g.e2);
	g.e2 = NULL;

	/* only the refusing one */
	cfg.nendpoints = 1;
	OK(sm_etcd_open(&g.e2, &cfg, ERR));
	ASSERT_EQ(sm_etcd_get(g.e2, "t/none", &kvs, &err), -ECONNREFUSED, err.msg);
	assert_non_null(strstr(err.msg, bad));
}

static void test_bad_client_cert(void **state)
{
	struct sm_etcd_cfg cfg;
	struct sm_etcd_kvs kvs;
	struct sm_error err = {{0}};

	cfg_init(&cfg, "other", "operator");
	OK(sm_etcd_open(&g.e2, &cfg, ERR));
	ASSERT_EQ(sm_etcd_get(g.e2, "t/none", &kvs, &err), -EACCES, err.msg);
	assert_non_null(strstr(err.msg, "--trusted-ca-file"));
	sm_etcd_close(g.e2);
	g.e2 = NULL;

	/* and a server certificate our CA did not sign */
	cfg_init(&cfg, "srv", "operator");
	snprintf(cfg.ca, sizeof(cfg.ca), "%s/other/ca.pem", g.dir);
	OK(sm_etcd_open(&g.e2, &cfg, ERR));
	ASSERT_EQ(sm_etcd_get(g.e2, "t/none", &kvs, &err), -EACCES, err.msg);
	assert_non_null(strstr(err.msg, "not trusted"));
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/*
 * Role-based access: users and passwords (the gateway cannot map a client
 * certificate to a user). Enables authentication in the shared etcd: last.
 */
static void test_auth(void **state)
{
	static const char *const setup_cmds[] = {
		"user add root --new-user-password=root-secret-1",
		"user grant-role root root",
		"user add operator --new-user-password=operator-secret-1",
		"user grant-role operator root",
		"user add node --new-user-password=node-secret-1",
		"role add nodes",
		"role grant-permission nodes --prefix=true readwrite t/auth/",
		"user grant-role node nodes",
		"auth enable",
	};
	struct sm_etcd_cfg cfg;
	struct sm_etcd_kvs kvs;
	struct sm_error err = {{0}};
	char cmd[512];

	for (size_t i = 0; i < sizeof(setup_cmds) / sizeof(setup_cmds[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s ctl %s/srv 127.0.0.1:%d %s >/dev/null", SCRIPT,
			 g.dir, g.client_port, setup_cmds[i]);
		assert_int_equal(run(cmd), 0);
	}
	/* a certificate with a CN: etcd 3.4 refuses it on the gateway now */
	ASSERT_EQ(sm_etcd_put(g.e, "t/auth/a", "1", 1, 0, NULL, &err), -EACCES, err.msg);
	assert_non_null(strstr(err.msg, "Common Name"));
	sm_etcd_close(g.e);
	g.e = NULL;
	/* no user: etcd wants a token */
	cfg_init(&cfg, "srv", "node3-nocn");
	OK(sm_etcd_open(&g.e, &cfg, ERR));
	ASSERT_EQ(sm_etcd_put(g.e, "t/auth/a", "1", 1, 0, NULL, &err), -EACCES, err.msg);
	assert_non_null(strstr(err.msg, "username"));

	cfg_init(&cfg, "srv", "node3-nocn");
	snprintf(cfg.username, sizeof(cfg.username), "node");
	snprintf(cfg.password_file, sizeof(cfg.password_file), "%s/pw-good", g.dir);
	write_file(cfg.password_file, "node-secret-1\n");
	OK(sm_etcd_open(&g.e2, &cfg, ERR));
	OK(sm_etcd_put(g.e2, "t/auth/a", "1", 1, 0, NULL, ERR));
	OK(sm_etcd_get_prefix(g.e2, "t/auth/", 0, &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "keys under t/auth/ as node");
	sm_etcd_kvs_free(&kvs);
	ASSERT_EQ(sm_etcd_put(g.e2, "t/other", "1", 1, 0, NULL, &err), -EACCES, err.msg);
	assert_null(strstr(err.msg, "node-secret-1"));
	sm_etcd_close(g.e2);
	g.e2 = NULL;

	snprintf(cfg.password_file, sizeof(cfg.password_file), "%s/pw-bad", g.dir);
	write_file(cfg.password_file, "wrong-secret-2\n");
	OK(sm_etcd_open(&g.e2, &cfg, ERR));
	ASSERT_EQ(sm_etcd_get(g.e2, "t/auth/a", &kvs, &err), -EACCES, err.msg);
	assert_non_null(strstr(err.msg, "'node'"));
	assert_null(strstr(err.msg, "wrong-secret-2"));
}

/*
 * An expired token: the client authenticates again and the call succeeds.
 * A second etcd whose simple tokens expire after 1 s idle.
 */
static void test_auth_token_expiry(void **state)
{
	static const char *const setup_cmds[] = {
		"user add root --new-user-password=root-secret-1",
		"user grant-role root root",
		"user add operator --new-user-password=operator-secret-1",
		"user grant-role operator root",
		"auth enable",
	};
	int port = 40000 + (int) (getpid() % 10000) * 2;
	struct sm_etcd_cfg cfg;
	struct sm_etcd_kvs kvs;
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "ETCD_AUTH_TOKEN_TTL=1 %s start %s/ttl 127.0.0.1 --client-port %d --peer-port %d",
		 SCRIPT, g.dir, port, port + 1);
	assert_int_equal(run(cmd), 0);
	for (size_t i = 0; i < sizeof(setup_cmds) / sizeof(setup_cmds[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s ctl %s/ttl 127.0.0.1:%d %s >/dev/null", SCRIPT,
			 g.dir, port, setup_cmds[i]);
		if (run(cmd))
			goto stop;
	}
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.endpoints[0], SM_ETCD_URL_MAX, "https://127.0.0.1:%d", port);
	cfg.nendpoints = 1;
	snprintf(cfg.ca, sizeof(cfg.ca), "%s/ttl/ca.pem", g.dir);
	snprintf(cfg.cert, sizeof(cfg.cert), "%s/ttl/client-node1-nocn.pem", g.dir);
	snprintf(cfg.key, sizeof(cfg.key), "%s/ttl/client-node1-nocn-key.pem", g.dir);
	snprintf(cfg.username, sizeof(cfg.username), "root");
	snprintf(cfg.password_file, sizeof(cfg.password_file), "%s/pw-root", g.dir);
	write_file(cfg.password_file, "root-secret-1\n");
	OK(sm_etcd_open(&g.e2, &cfg, ERR));
	OK(sm_etcd_put(g.e2, "t/ttl", "1", 1, 0, NULL, ERR));
	/* idle past the token's TTL (etcd checks expiry every second or so) */
	sleep(3);
	OK(sm_etcd_get(g.e2, "t/ttl", &kvs, ERR));
	ASSERT_EQ(kvs.n, 1, "t/ttl after the token expired");
	sm_etcd_kvs_free(&kvs);
stop:
	snprintf(cmd, sizeof(cmd), "%s stop %s/ttl", SCRIPT, g.dir);
	run(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cfg_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefix_ff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compacted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_client_cert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_token_expiry, setup, teardown),
	};

	return cmocka_run_group_tests(tests, start_etcd, stop_etcd);
}
