/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-source rate limits for flow records: a token bucket per source (rate
 * records per second, up to burst at once) in a table of bounded size that
 * forgets the least recently seen source when full, and exact counts of what
 * it suppressed. Not thread-safe: the caller serializes.
 */
#ifndef SOCKMESH_RATELIMIT_H
#define SOCKMESH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* A source: an identity, and an address when the identity does not name one (0, 2). */
struct sm_ratelimit_key {
	uint32_t identity;
	struct sm_addr addr; /* family 0 when the identity is the key */
};

/* A source and how many of its records were suppressed since the last take. */
struct sm_ratelimit_top {
	struct sm_ratelimit_key key;
	uint64_t suppressed;
};

struct sm_ratelimit;

/*
 * A limiter of rate records/s with bursts of up to burst (>= 1) per source,
 * remembering at most max_sources (>= 1) sources. rate 0 allows everything.
 * NULL with errno EINVAL or ENOMEM.
 */
struct sm_ratelimit *sm_ratelimit_new(uint32_t max_sources, uint32_t rate, uint32_t burst);
void sm_ratelimit_free(struct sm_ratelimit *rl);

/* New limits; every source's bucket is refilled to the new burst. */
void sm_ratelimit_set(struct sm_ratelimit *rl, uint32_t rate, uint32_t burst);

/*
 * Whether one record of key at now_ns (any clock that does not jump: a
 * record's time) may pass. When not, it is counted as suppressed. A time
 * earlier than the source's previous one adds no tokens.
 */
bool sm_ratelimit_allow(struct sm_ratelimit *rl, const struct sm_ratelimit_key *key,
			int64_t now_ns);

/*
 * Suppressed records since the previous take: returns the total (exact, also
 * for sources the table has since forgotten) and fills top with up to ntop
 * sources that had the most, most first (*n of them). Resets the counts.
 */
uint64_t sm_ratelimit_take(struct sm_ratelimit *rl, struct sm_ratelimit_top *top, size_t ntop,
			   size_t *n);

/* How many sources the table holds now. */
uint32_t sm_ratelimit_sources(const struct sm_ratelimit *rl);

/* The key of a record's source: its identity, or its address for identity 0 or 2 (world). */
void sm_ratelimit_key_of(uint32_t identity, const struct sm_addr *addr,
			 struct sm_ratelimit_key *key);

#endif /* SOCKMESH_RATELIMIT_H */
