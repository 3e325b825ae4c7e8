// SPDX-License-Identifier: Apache-2.0
/* The tunnel's facts for the flow records of its streams' sockets (flowjoin.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uthash.h>

#include "flowjoin.h"
#include "util.h"

struct join {
	struct {
		uint8_t family;
		uint8_t addr[16];
		uint16_t port;
	} key;
	struct sm_flowjoin facts;
	int64_t expires; /* monotonic s; 0 while the stream lives */
	UT_hash_handle hh;
};

struct sm_flowjoins {
	pthread_mutex_t mu;
	struct join *joins;
};

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
		free(j);
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
	return j ? &j->facts : NULL;
}

void sm_flowjoins_unlock(struct sm_flowjoins *t)
{
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
			free(j);
		}
	}
	pthread_mutex_unlock(&t->mu);
}

bool sm_flowjoins_take(struct sm_flowjoins *t, const struct sm_addr *a, uint16_t port, bool final,
		       struct sm_flowjoin *out)
{
	struct join *j;

	pthread_mutex_lock(&t->mu);
	j = join_find(t, a, port);
	if (j) {
		*out = j->facts;
		if (final) {
			HASH_DEL(t->joins, j);
			free(j);
		}
	}
	pthread_mutex_unlock(&t->mu);
	return j != NULL;
}
