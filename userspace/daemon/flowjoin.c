// SPDX-License-Identifier: Apache-2.0
/* The tunnel's facts for the flow records of its streams' sockets (flowjoin.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uthash.h>

#include "flowjoin.h"
#include "intern.h"
#include "util.h"

/* What few streams have: a failure, and the policy decision behind one. */
struct join_rare {
	char failure[sizeof(((struct sm_flowjoin *) 0)->failure)];
	char tls_failure[sizeof(((struct sm_flowjoin *) 0)->tls.failure)];
	struct sm_flow_policy policy;
};

/*
 * One stream's facts, kept small: every idle tunnelled connection holds one
 * on each node for its whole life. The strings that come from a small
 * vocabulary (TLS version, cipher, mode, workload and SPIFFE names) are
 * interned (intern.h) rather than copied into fixed-size buffers, and what
 * only a failed stream has lives in a block of its own. Writers and readers
 * see the expanded struct sm_flowjoin (t->scratch, join_expand()).
 */
struct join {
	UT_hash_handle hh;
	struct {
		uint8_t family;
		uint8_t addr[16];
		uint16_t port;
	} key;
	bool inbound;
	bool tls_present;
	bool tls_encrypted;
	uint32_t peer_identity;
	uint32_t handshake_us;
	int64_t expires;			      /* monotonic s; 0 while the stream lives */
	const char *mode, *version, *cipher;	      /* interned; NULL = "" */
	const char *local_spiffe_id, *peer_spiffe_id; /* interned by the writer */
	const char *peer_workload;		      /* interned; NULL = "" */
	struct join_rare *rare;			      /* NULL: no failure, no policy */
	char trace[sizeof(((struct sm_flowjoin *) 0)->trace)];
};

struct sm_flowjoins {
	pthread_mutex_t mu;
	struct join *joins;
	/* between sm_flowjoins_lock() and _unlock(): the entry and its expanded facts */
	struct join *cur;
	struct sm_flowjoin scratch;
	/* sockets being connected whose entry is not written yet (sm_flowjoins_expect()) */
	unsigned int expected;
};

static void join_free(struct join *j)
{
	free(j->rare);
	free(j);
}

static void copy_str(char *dst, size_t len, const char *src)
{
	sm_strlcpy(dst, src ? src : "", len);
}

/* The facts of j as the record blocks want them. */
static void join_expand(const struct join *j, struct sm_flowjoin *out)
{
	memset(out, 0, sizeof(*out));
	out->inbound = j->inbound;
	out->peer_identity = j->peer_identity;
	memcpy(out->trace, j->trace, sizeof(out->trace));
	copy_str(out->peer_workload, sizeof(out->peer_workload), j->peer_workload);
	out->tls.present = j->tls_present;
	out->tls.encrypted = j->tls_encrypted;
	out->tls.handshake_us = j->handshake_us;
	copy_str(out->tls.mode, sizeof(out->tls.mode), j->mode);
	copy_str(out->tls.version, sizeof(out->tls.version), j->version);
	copy_str(out->tls.cipher, sizeof(out->tls.cipher), j->cipher);
	out->tls.local_spiffe_id = j->local_spiffe_id;
	out->tls.peer_spiffe_id = j->peer_spiffe_id;
	if (j->rare) {
		memcpy(out->failure, j->rare->failure, sizeof(out->failure));
		memcpy(out->tls.failure, j->rare->tls_failure, sizeof(out->tls.failure));
		out->policy = j->rare->policy;
	}
}

static const char *intern_or_null(const char *s)
{
	return s[0] ? sm_intern(s) : NULL;
}

/*
 * Keep what the writer left in f in j. Out of memory for a failure's block,
 * the entry keeps the failure it had (the record then says less, as it
 * would had the entry itself not been made).
 */
static void join_compact(struct join *j, const struct sm_flowjoin *f)
{
	bool rare = f->failure[0] || f->tls.failure[0] || f->policy.present;

	j->inbound = f->inbound;
	j->peer_identity = f->peer_identity;
	sm_strlcpy(j->trace, f->trace, sizeof(j->trace));
	j->peer_workload = intern_or_null(f->peer_workload);
	j->tls_present = f->tls.present;
	j->tls_encrypted = f->tls.encrypted;
	j->handshake_us = f->tls.handshake_us;
	j->mode = intern_or_null(f->tls.mode);
	j->version = intern_or_null(f->tls.version);
	j->cipher = intern_or_null(f->tls.cipher);
	j->local_spiffe_id = f->tls.local_spiffe_id;
	j->peer_spiffe_id = f->tls.peer_spiffe_id;
	if (rare && !j->rare)
		j->rare = calloc(1, sizeof(*j->rare));
	if (rare && j->rare) {
		sm_strlcpy(j->rare->failure, f->failure, sizeof(j->rare->failure));
		sm_strlcpy(j->rare->tls_failure, f->tls.failure, sizeof(j->rare->tls_failure));
		j->rare->policy = f->policy;
	} else if (!rare) {
		free(j->rare);
		j->rare = NULL;
	}
}

struct sm_flowjoins *sm_flowjoins_new(void)
{
	struct sm_flowjoins *t = calloc(1, sizeof(*t));
	int err;

	if (!t)
		return NULL;
	err = pthread_mutex_init(&t->mu, NULL);
	if (err) {
		free(t);
		errno = err;
		return NULL;
	}
	return t;
}

void sm_flowjoins_free(struct sm_flowjoins *t)
{
	struct join *j, *tmp;

	if (!t)
		return;
	HASH_ITER(hh, t->joins, j, tmp)
	{
		// uthash's delete-while-iterating idiom (see flowacct.c)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
		HASH_DEL(t->joins, j);
		join_free(j);
	}
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static void join_key(struct join *j, const struct sm_addr *a, uint16_t port)
{
	memset(&j->key, 0, sizeof(j->key));
	j->key.family = a->family;
	memcpy(j->key.addr, a->bytes, a->family == AF_INET ? 4 : 16);
	j->key.port = port;
}

/* Caller holds t->mu. */
static struct join *join_find(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port)
{
	struct join probe, *j = NULL;

	join_key(&probe, a, port);
	HASH_FIND(hh, t->joins, &probe.key, sizeof(probe.key), j);
	return j;
}

struct sm_flowjoin *sm_flowjoins_lock(struct sm_flowjoins *t, const struct sm_addr *a,
				      uint16_t port, bool create)
{
	struct join *j;

	pthread_mutex_lock(&t->mu);
	j = join_find(t, a, port);
	if (!j && create) {
		j = calloc(1, sizeof(*j));
		if (!j)
			return NULL;
		join_key(j, a, port);
		HASH_ADD(hh, t->joins, key, sizeof(j->key), j);
	}
	t->cur = j;
	if (!j)
		return NULL;
	join_expand(j, &t->scratch);
	return &t->scratch;
}

void sm_flowjoins_unlock(struct sm_flowjoins *t)
{
	if (t->cur)
		join_compact(t->cur, &t->scratch);
	t->cur = NULL;
	pthread_mutex_unlock(&t->mu);
}

void sm_flowjoins_linger(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port,
			 int64_t expires)
{
	struct join *j;

	pthread_mutex_lock(&t->mu);
	j = join_find(t, a, port);
	if (j && !j->expires)
		j->expires = expires;
	pthread_mutex_unlock(&t->mu);
}

void sm_flowjoins_expire(struct sm_flowjoins *t, int64_t now)
{
	struct join *j, *tmp;

	pthread_mutex_lock(&t->mu);
	HASH_ITER(hh, t->joins, j, tmp)
	{
		/* entries are calloc'ed: expires is always set (cppcheck loses that in uthash) */
		// cppcheck-suppress uninitvar
		if (j->expires && j->expires < now) {
			// uthash's delete-while-iterating idiom (see flowacct.c)
			// NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
			HASH_DEL(t->joins, j);
			join_free(j);
		}
	}
	pthread_mutex_unlock(&t->mu);
}

void sm_flowjoins_forget(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port)
{
	struct join *j;

	pthread_mutex_lock(&t->mu);
	j = join_find(t, a, port);
	if (j) {
		HASH_DEL(t->joins, j);
		join_free(j);
	}
	pthread_mutex_unlock(&t->mu);
}

void sm_flowjoins_expect(struct sm_flowjoins *t, bool begin)
{
	pthread_mutex_lock(&t->mu);
	if (begin)
		t->expected++;
	else if (t->expected)
		t->expected--;
	pthread_mutex_unlock(&t->mu);
}

bool sm_flowjoins_take(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port, bool final,
		       struct sm_flowjoin *out, bool *expected)
{
	struct join *j;

	pthread_mutex_lock(&t->mu);
	j = join_find(t, a, port);
	if (expected)
		*expected = !j && t->expected;
	if (j) {
		join_expand(j, out);
		if (final) {
			HASH_DEL(t->joins, j);
			join_free(j);
		}
	}
	pthread_mutex_unlock(&t->mu);
	return j != NULL;
}
