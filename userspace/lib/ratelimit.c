// SPDX-License-Identifier: Apache-2.0
/* Per-source token buckets in a bounded LRU table, with exact suppressed counts. */
#include "ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sockmesh/common.h"

#define NIL  UINT32_MAX
#define NANO 1000000000ULL /* a token, in the buckets' unit (one billionth of a token) */

struct rl_entry {
	struct sm_ratelimit_key key;
	uint64_t tokens; /* in billionths of a token */
	int64_t last_ns; /* when tokens was last brought up to date */
	uint64_t suppressed;
	uint32_t hnext;	     /* next in its hash bucket */
	uint32_t prev, next; /* LRU list: head is the most recently seen */
};

struct sm_ratelimit {
	uint32_t rate, burst;
	uint32_t cap, used;
	uint32_t nbuckets; /* a power of two */
	uint32_t *buckets;
	struct rl_entry *e;
	uint32_t head, tail;
	uint64_t suppressed; /* since the last take, all sources */
};

static bool key_eq(const struct sm_ratelimit_key *a, const struct sm_ratelimit_key *b)
{
	return a->identity == b->identity && a->addr.family == b->addr.family &&
	       memcmp(a->addr.bytes, b->addr.bytes, sizeof(a->addr.bytes)) == 0;
}

/* FNV-1a over the key's fields (not its padding). */
static uint32_t key_hash(const struct sm_ratelimit_key *k)
{
	uint32_t h = 2166136261U;
	uint8_t buf[4 + 1 + 16];

	memcpy(buf, &k->identity, 4);
	buf[4] = k->addr.family;
	memcpy(buf + 5, k->addr.bytes, 16);
	for (size_t i = 0; i < sizeof(buf); i++) {
		h ^= buf[i];
		h *= 16777619U;
	}
	return h;
}

void sm_ratelimit_key_of(uint32_t identity, const struct sm_addr *addr,
			 struct sm_ratelimit_key *key)
{
	memset(key, 0, sizeof(*key));
	key->identity = identity;
	if ((identity == SM_ID_WILDCARD || identity == SM_ID_WORLD) && addr)
		key->addr = *addr;
}

struct sm_ratelimit *sm_ratelimit_new(uint32_t max_sources, uint32_t rate, uint32_t burst)
{
	struct sm_ratelimit *rl;
	uint32_t nb = 1;

	if (!max_sources || max_sources > (1U << 24) || !burst) {
		errno = EINVAL;
		return NULL;
	}
	while (nb < 2 * max_sources)
		nb <<= 1;
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return NULL;
	rl->buckets = malloc(nb * sizeof(*rl->buckets));
	rl->e = calloc(max_sources, sizeof(*rl->e));
	if (!rl->buckets || !rl->e) {
		sm_ratelimit_free(rl);
		errno = ENOMEM;
		return NULL;
	}
	memset(rl->buckets, 0xff, nb * sizeof(*rl->buckets));
	rl->nbuckets = nb;
	rl->cap = max_sources;
	rl->head = rl->tail = NIL;
	rl->rate = rate;
	rl->burst = burst;
	return rl;
}

void sm_ratelimit_free(struct sm_ratelimit *rl)
{
	if (!rl)
		return;
	free(rl->buckets);
	free(rl->e);
	free(rl);
}

void sm_ratelimit_set(struct sm_ratelimit *rl, uint32_t rate, uint32_t burst)
{
	rl->rate = rate;
	rl->burst = burst ? burst : 1;
	for (uint32_t i = 0; i < rl->used; i++)
		rl->e[i].tokens = (uint64_t) rl->burst * NANO;
}

static void lru_unlink(struct sm_ratelimit *rl, uint32_t i)
{
	struct rl_entry *e = &rl->e[i];

	if (e->prev != NIL)
		rl->e[e->prev].next = e->next;
	else
		rl->head = e->next;
	if (e->next != NIL)
		rl->e[e->next].prev = e->prev;
	else
		rl->tail = e->prev;
}

static void lru_push_head(struct sm_ratelimit *rl, uint32_t i)
{
	struct rl_entry *e = &rl->e[i];

	e->prev = NIL;
	e->next = rl->head;
	if (rl->head != NIL)
		rl->e[rl->head].prev = i;
	rl->head = i;
	if (rl->tail == NIL)
		rl->tail = i;
}

static void hash_unlink(struct sm_ratelimit *rl, uint32_t i)
{
	uint32_t *p = &rl->buckets[key_hash(&rl->e[i].key) & (rl->nbuckets - 1)];

	while (*p != NIL && *p != i)
		p = &rl->e[*p].hnext;
	if (*p == i)
		*p = rl->e[i].hnext;
}

/* The entry of key, made (evicting the least recently seen) when absent; now the most recent. */
static struct rl_entry *entry_get(struct sm_ratelimit *rl, const struct sm_ratelimit_key *key,
				  int64_t now_ns)
{
	uint32_t b = key_hash(key) & (rl->nbuckets - 1), i;

	for (i = rl->buckets[b]; i != NIL; i = rl->e[i].hnext)
		if (key_eq(&rl->e[i].key, key))
			break;
	if (i != NIL) {
		lru_unlink(rl, i);
	} else {
		if (rl->used < rl->cap) {
			i = rl->used++;
		} else {
			/* its suppressed count stays in rl->suppressed: only the detail goes */
			i = rl->tail;
			lru_unlink(rl, i);
			hash_unlink(rl, i);
		}
		memset(&rl->e[i], 0, sizeof(rl->e[i]));
		rl->e[i].key = *key;
		rl->e[i].tokens = (uint64_t) rl->burst * NANO;
		rl->e[i].last_ns = now_ns;
		rl->e[i].hnext = rl->buckets[b];
		rl->buckets[b] = i;
	}
	lru_push_head(rl, i);
	return &rl->e[i];
}

bool sm_ratelimit_allow(struct sm_ratelimit *rl, const struct sm_ratelimit_key *key, int64_t now_ns)
{
	uint64_t full = (uint64_t) rl->burst * NANO;
	struct rl_entry *e;

	if (!rl->rate)
		return true;
	e = entry_get(rl, key, now_ns);
	if (now_ns > e->last_ns) {
		/* long idle times are capped before multiplying, so nothing overflows */
		uint64_t dt = (uint64_t) (now_ns - e->last_ns), fill_ns = full / rl->rate + 1;

		if (dt > fill_ns)
			dt = fill_ns;
		e->tokens += dt * rl->rate;
		if (e->tokens > full)
			e->tokens = full;
		e->last_ns = now_ns;
	}
	if (e->tokens >= NANO) {
		e->tokens -= NANO;
		return true;
	}
	e->suppressed++;
	rl->suppressed++;
	return false;
}

uint64_t sm_ratelimit_take(struct sm_ratelimit *rl, struct sm_ratelimit_top *top, size_t ntop,
			   size_t *n)
{
	uint64_t total = rl->suppressed;
	size_t have = 0;

	/* insertion into a short sorted list: ntop is small (a record's worth) */
	for (uint32_t i = 0; i < rl->used && ntop; i++) {
		struct rl_entry *e = &rl->e[i];
		size_t pos;

		if (!e->suppressed)
			continue;
		if (have == ntop && e->suppressed <= top[have - 1].suppressed) {
			e->suppressed = 0;
			continue;
		}
		pos = have < ntop ? have++ : ntop - 1;
		while (pos > 0 && top[pos - 1].suppressed < e->suppressed) {
			top[pos] = top[pos - 1];
			pos--;
		}
		top[pos].key = e->key;
		top[pos].suppressed = e->suppressed;
		e->suppressed = 0;
	}
	for (uint32_t i = 0; i < rl->used; i++)
		rl->e[i].suppressed = 0;
	rl->suppressed = 0;
	if (n)
		*n = have;
	return total;
}

uint32_t sm_ratelimit_sources(const struct sm_ratelimit *rl)
{
	return rl->used;
}
