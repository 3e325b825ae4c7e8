/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Interned strings: one shared, never-freed copy of each distinct string.
 *
 * Flow records name workloads, nodes, cgroups and SPIFFE IDs; they point at
 * interned copies instead of carrying fixed-size buffers for each (a record
 * was 3.3 KB, mostly unused buffer tails). A pointer stays valid for the
 * process's life, so a record may outlive the catalog it was filled from
 * (a SIGHUP reload frees that). The values come from the catalog and from
 * verified certificates: a bounded vocabulary. The pool is capped all the
 * same (SM_INTERN_MAX_BYTES); past it, new strings come back as "" (the
 * field is then omitted from JSON) and are counted. Thread-safe.
 */
#ifndef SOCKMESH_INTERN_H
#define SOCKMESH_INTERN_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of distinct strings the pool keeps at most. */
#define SM_INTERN_MAX_BYTES (64u << 20)

/* The interned copy of s (NULL or "" in: ""). Never NULL. */
const char *sm_intern(const char *s);

/* The same for the first n bytes of s (stops at a NUL). */
const char *sm_intern_n(const char *s, size_t n);

/* Distinct strings kept, their bytes, and strings refused at the cap. */
struct sm_intern_stats {
	uint64_t strings;
	uint64_t bytes;
	uint64_t refused;
};
void sm_intern_stats(struct sm_intern_stats *out);

/* s, or "" for NULL: for reading a record's string fields. */
static inline const char *sm_str(const char *s)
{
	return s ? s : "";
}

/* Is s NULL or ""? */
static inline int sm_str_empty(const char *s)
{
	return !s || !*s;
}

#endif /* SOCKMESH_INTERN_H */
