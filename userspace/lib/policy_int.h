/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the policy library's files share and nobody else uses: the parser
 * (policy_parse.c), set operations and output (policy_set.c), the
 * evaluator and compiler (policy_compile.c) and lookup, naming and diffs
 * (policy_query.c). Callers include "policy.h" only.
 */
#ifndef SOCKMESH_LIB_POLICY_INT_H
#define SOCKMESH_LIB_POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* An identity and its SPIFFE ID (the compiled policy's names, the evaluator's context). */
struct sm_policy_name {
	uint32_t identity;
	char *spiffe;
};

/* policy_parse.c */

/*
 * Sorted, disjoint, non-adjacent copy of r[0..n). n 0 stays "every port" (*out
 * NULL); a union covering 1..65535 also becomes "every port". 0 or -ENOMEM.
 */
int pol_ports_normalize(const struct sm_port_range *r, size_t n, struct sm_port_range **out,
			size_t *nout);
/*
 * Intersection of two normalized sets (n 0 = every port). *nout 0 with
 * *empty true means "no port at all". 0 or -ENOMEM.
 */
int pol_ports_intersect(const struct sm_port_range *a, size_t na, const struct sm_port_range *b,
			size_t nb, struct sm_port_range **out, size_t *nout, bool *empty);
/* Does SPIFFE ID id match text (an exact ID, or a pattern ending in a "*" segment)? */
bool pol_spiffe_match(const char *text, bool pattern, const char *id);
/* Frees what pol owns and zeroes it. */
void pol_policy_free(struct sm_policy *pol);
/* qsort/bsearch order of struct sm_policy: by name. */
int pol_cmp_policy_name(const void *a, const void *b);

/* policy_compile.c */

/* qsort order of struct sm_policy_cidr: family, address, prefix. */
int pol_cmp_cidr(const void *a, const void *b);
/* qsort order of struct sm_policy_entry: (dst, src, dport). */
int pol_cmp_entry(const void *a, const void *b);
/* The SPIFFE ID of identity in by_id[0..n) (sorted by identity), or NULL. */
const char *pol_names_find(const struct sm_policy_name *by_id, size_t n, uint32_t identity);
/* The policy CIDR whose identity is identity, or NULL. */
const struct sm_policy_cidr *pol_cidr_by_identity(const struct sm_policy_cidr *cidrs, size_t n,
						  uint32_t identity);
/* *d = the verdict v, found at lookup step step (0: none / evaluated). */
void pol_value_to_decision(const struct sm_policy_value *v, unsigned int step,
			   struct sm_policy_decision *d);
/* Same verdict (the revision and pads do not count). */
bool pol_value_equal(const struct sm_policy_value *a, const struct sm_policy_value *b);

#endif /* SOCKMESH_LIB_POLICY_INT_H */
