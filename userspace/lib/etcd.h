/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small etcd v3 client over etcd's gRPC JSON gateway (the /v3/... HTTP
 * paths every etcd >= 3.4 serves on its client port): libcurl for HTTP/1.1
 * over TLS, json-c for the bodies. Keys and values travel base64-encoded in
 * the JSON (etcd's gateway convention); this API takes and returns raw bytes.
 *
 * Mutual TLS only: endpoints are https:// URLs and the client always presents
 * its certificate (cfg.cert, cfg.key) and verifies the server against cfg.ca.
 * Because the gateway cannot map a client certificate's Common Name to an
 * etcd user, role-based access control needs a user and password as well
 * (cfg.username, cfg.password_file): the client then authenticates once and
 * sends the token on every request, authenticating again when etcd says the
 * token expired.
 *
 * One struct sm_etcd is one connection (a libcurl easy handle, kept alive
 * between requests) and is used by one thread at a time. With several
 * endpoints a request that cannot connect tries the next one; the one that
 * answered is used first next time.
 *
 * Every call returns 0 or -errno with err->msg saying what failed and what
 * to check ("etcd https://10.0.0.1:2379: connection refused (is etcd
 * running? check cluster.etcd.endpoints)"). Errors:
 *   -ECONNREFUSED/-EHOSTUNREACH/-ETIMEDOUT  no endpoint answered in time
 *   -EACCES       TLS or auth failure (bad certificate, permission denied)
 *   -ESTALE       the revision asked for was compacted (get at a revision, watch)
 *   -EPROTO       an answer that is not what etcd sends (bad JSON, bad base64)
 *   -EINVAL       etcd refused the request (its message in err)
 *   -EAGAIN       etcd answered that it is unavailable (no quorum, no leader)
 *   -ECONNRESET   the connection failed or the watch stream ended
 *   -EINTR        *stop became true (watch)
 */
#ifndef SOCKMESH_ETCD_H
#define SOCKMESH_ETCD_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SM_ETCD_MAX_ENDPOINTS 8
#define SM_ETCD_URL_MAX	      256

struct sm_etcd_cfg {
	char endpoints[SM_ETCD_MAX_ENDPOINTS][SM_ETCD_URL_MAX]; /* "https://host:port" */
	unsigned int nendpoints;
	char ca[PATH_MAX];	      /* PEM: the CA that signed etcd's server certificate */
	char cert[PATH_MAX];	      /* PEM: this client's certificate (chain) */
	char key[PATH_MAX];	      /* PEM: its private key */
	char username[64];	      /* "" = no etcd authentication beyond the certificate */
	char password_file[PATH_MAX]; /* the user's password, first line; with username */
	int connect_timeout_ms;	      /* TCP + TLS connect; 0 = 2000 */
	int timeout_ms;		      /* a whole unary request; 0 = 5000 */
};

/*
 * Check cfg without connecting: at least one endpoint, each an https:// URL
 * of at most SM_ETCD_URL_MAX bytes; ca, cert and key set (readable files);
 * password_file set and readable when username is. 0 or -EINVAL with err.
 */
int sm_etcd_cfg_check(const struct sm_etcd_cfg *cfg, struct sm_error *err);

struct sm_etcd;

/* A client for cfg (checked with sm_etcd_cfg_check()); connects on first use. */
int sm_etcd_open(struct sm_etcd **out, const struct sm_etcd_cfg *cfg, struct sm_error *err);
void sm_etcd_close(struct sm_etcd *e);
/* The endpoint that answered last ("" before the first answer). */
const char *sm_etcd_endpoint(const struct sm_etcd *e);

struct sm_etcd_kv {
	char *key; /* NUL-terminated (keys with NUL bytes are refused: -EPROTO) */
	size_t key_len;
	char *value; /* NUL-terminated too, value_len bytes before the NUL */
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease; /* 0: none */
};

struct sm_etcd_kvs {
	struct sm_etcd_kv *kvs; /* sorted by key (etcd's order) */
	size_t n;
	int64_t revision; /* the store's revision the answer was read at (header.revision) */
};

void sm_etcd_kvs_free(struct sm_etcd_kvs *kvs);

/*
 * Every key in [prefix, prefix with its last byte + 1), at revision (0: the
 * latest). -ESTALE when revision was compacted. A listing that would exceed
 * 64 MiB of JSON is -EFBIG.
 */
int sm_etcd_get_prefix(struct sm_etcd *e, const char *prefix, int64_t revision,
		       struct sm_etcd_kvs *out, struct sm_error *err);
/* One key: out->n is 0 (absent) or 1. */
int sm_etcd_get(struct sm_etcd *e, const char *key, struct sm_etcd_kvs *out, struct sm_error *err);

enum sm_etcd_target {
	SM_ETCD_MOD,	 /* the key's mod_revision */
	SM_ETCD_CREATE,	 /* create_revision (0 when absent) */
	SM_ETCD_VERSION, /* version (0 when absent) */
};

enum sm_etcd_result {
	SM_ETCD_EQUAL,
	SM_ETCD_GREATER,
	SM_ETCD_LESS,
	SM_ETCD_NOT_EQUAL,
};

/* One comparison of a transaction. prefix: every key under key (range_end), all must hold. */
struct sm_etcd_cmp {
	const char *key;
	bool prefix;
	enum sm_etcd_target target;
	enum sm_etcd_result result;
	int64_t value;
};

enum sm_etcd_op_type {
	SM_ETCD_PUT,
	SM_ETCD_DELETE, /* prefix: every key under key */
};

struct sm_etcd_op {
	enum sm_etcd_op_type type;
	const char *key;
	const char *value; /* PUT: value_len bytes */
	size_t value_len;
	int64_t lease; /* PUT: 0 = none */
	bool prefix;   /* DELETE */
};

/*
 * One transaction: when every comparison holds, every op, all or nothing.
 * Returns 0 with *succeeded saying whether the comparisons held (false: no
 * op ran) and *revision the store's revision after it (header.revision).
 * etcd's --max-txn-ops (default 128) bounds nops: -E2BIG, with err saying so.
 */
int sm_etcd_txn(struct sm_etcd *e, const struct sm_etcd_cmp *cmps, size_t ncmps,
		const struct sm_etcd_op *ops, size_t nops, bool *succeeded, int64_t *revision,
		struct sm_error *err);
/* Shorthands for a one-op transaction with no comparison; revision may be NULL. */
int sm_etcd_put(struct sm_etcd *e, const char *key, const char *value, size_t value_len,
		int64_t lease, int64_t *revision, struct sm_error *err);
int sm_etcd_delete(struct sm_etcd *e, const char *key, bool prefix, int64_t *revision,
		   struct sm_error *err);

/* Leases: grant one of ttl_s seconds; keep it alive once (*ttl: seconds left, 0 = gone). */
int sm_etcd_lease_grant(struct sm_etcd *e, int ttl_s, int64_t *id, struct sm_error *err);
int sm_etcd_lease_keepalive(struct sm_etcd *e, int64_t id, int64_t *ttl, struct sm_error *err);
/* Seconds a lease has left (-1: expired or unknown) and the TTL it was granted with. */
int sm_etcd_lease_ttl(struct sm_etcd *e, int64_t id, int64_t *left, int64_t *granted,
		      struct sm_error *err);
/* Revoking a lease that is already gone (expired, revoked) is 0. */
int sm_etcd_lease_revoke(struct sm_etcd *e, int64_t id, struct sm_error *err);

/* Compact the history up to revision (tests, benchmarks, operators' tools). */
int sm_etcd_compact(struct sm_etcd *e, int64_t revision, struct sm_error *err);

struct sm_etcd_event {
	bool deleted; /* a DELETE: kv holds the key and mod_revision only */
	struct sm_etcd_kv kv;
};

/*
 * Called for every answer of a watch: once when etcd has created it (n = 0,
 * revision = the store's revision then), then for each batch of events
 * (revision = the store's revision when sent; events in revision order) and
 * for progress notifications (n = 0). The events and their strings live
 * until the callback returns. Return 0 to go on, anything else to end the
 * watch with that value.
 */
typedef int (*sm_etcd_watch_fn)(void *arg, int64_t revision, const struct sm_etcd_event *ev,
				size_t n);

/*
 * Watch every key under prefix from start_revision (>= 1), calling cb from
 * this thread, until: cb returns non-zero (that value is returned), *stop
 * becomes true (checked at least every 100 ms: -EINTR), the stream fails or
 * ends (-errno), nothing at all came for idle_ms (0: no limit; etcd's
 * progress notifications come every 10 minutes by default: -ETIMEDOUT), or
 * etcd cancels it because start_revision was compacted (-ESTALE and
 * *compact_revision = the oldest revision still kept; list again from there).
 */
int sm_etcd_watch(struct sm_etcd *e, const char *prefix, int64_t start_revision,
		  sm_etcd_watch_fn cb, void *arg, const atomic_bool *stop, int idle_ms,
		  int64_t *compact_revision, struct sm_error *err);

#endif /* SOCKMESH_ETCD_H */
