// SPDX-License-Identifier: Apache-2.0
/* Interned strings (intern.h): a uthash set under one mutex; entries are never freed. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "intern.h"
#include "log.h"

struct intern_entry {
	UT_hash_handle hh;
	char s[]; /* the key, NUL-terminated */
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct intern_entry *pool;
static struct sm_intern_stats pool_stats;

const char *sm_intern_n(const char *s, size_t n)
{
	struct intern_entry *e = NULL;
	const char *out = "";

	if (!s)
		return "";
	n = strnlen(s, n);
	if (n == 0)
		return "";
	pthread_mutex_lock(&pool_mu);
	HASH_FIND(hh, pool, s, n, e);
	if (e) {
		out = e->s;
		goto unlock;
	}
	e = pool_stats.bytes + n + 1 > SM_INTERN_MAX_BYTES ? NULL : malloc(sizeof(*e) + n + 1);
	if (!e) {
		if (!pool_stats.refused++)
			pr_warn("the pool of names for flow records is full (%llu strings, %llu "
				"bytes) or out of memory: new workload, node and SPIFFE names are "
				"left out of flow records from now on (restart the daemon to "
				"reset it; a catalog that keeps renaming its workloads fills it)",
				(unsigned long long) pool_stats.strings,
				(unsigned long long) pool_stats.bytes);
		goto unlock;
	}
	memcpy(e->s, s, n);
	e->s[n] = '\0';
	HASH_ADD_KEYPTR(hh, pool, e->s, n, e);
	pool_stats.strings++;
	pool_stats.bytes += n + 1;
	out = e->s;
unlock:
	pthread_mutex_unlock(&pool_mu);
	return out;
}

const char *sm_intern(const char *s)
{
	return s ? sm_intern_n(s, strlen(s)) : "";
}

void sm_intern_stats(struct sm_intern_stats *out)
{
	pthread_mutex_lock(&pool_mu);
	*out = pool_stats;
	pthread_mutex_unlock(&pool_mu);
}
