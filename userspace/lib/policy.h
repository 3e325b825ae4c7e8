/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection policy in user space: the policy language (docs/policy.md), its
 * parser and validator, the compiler into kernel entries (include/sockmesh/
 * policy.h), the lookup that `policy explain` shares with the kernel, the
 * reference evaluator, set operations, serialisation and diffs.
 */
#ifndef SOCKMESH_LIB_POLICY_H
#define SOCKMESH_LIB_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <linux/types.h> /* the __u32 etc. of sockmesh/policy.h */

#include "sockmesh/policy.h"

#include "catalog.h"
#include "util.h"

/* Policy names: [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])? */
#define SM_POLICY_NAME_MAX 64
/* Longest description accepted, in bytes. */
#define SM_POLICY_DESCRIPTION_MAX 1024

/* What a rule does (the kernel only knows ALLOW and DENY; AUDIT is a flag there). */
enum sm_policy_rule_action {
	SM_POLICY_RULE_ALLOW = 1,
	SM_POLICY_RULE_DENY = 2,
	SM_POLICY_RULE_AUDIT = 3,
};

/* Ports lo..hi inclusive, host order, 1 <= lo <= hi <= 65535. */
struct sm_port_range {
	uint16_t lo;
	uint16_t hi;
};

enum sm_policy_peer_kind {
	SM_POLICY_PEER_ANY = 1,	    /* `any`: every source */
	SM_POLICY_PEER_SPIFFE = 2,  /* an exact SPIFFE ID */
	SM_POLICY_PEER_PATTERN = 3, /* "spiffe://td[/path]" + "/" "*": IDs under it */
	SM_POLICY_PEER_CIDR = 4,    /* an IPv4 or IPv6 CIDR */
};

/* A source in a rule's `from`. */
struct sm_policy_peer {
	enum sm_policy_peer_kind kind;
	char *spiffe;	     /* SPIFFE and PATTERN: the text as written */
	struct sm_addr addr; /* CIDR: network address (host bits zero) */
	uint8_t prefix;	     /* CIDR: prefix length */
	unsigned int line;   /* where it was written */
};

struct sm_policy_rule {
	enum sm_policy_rule_action action;
	struct sm_policy_peer *from; /* at least one */
	size_t nfrom;
	struct sm_port_range *ports; /* as written; nports 0 = every port */
	size_t nports;
	char *description; /* NULL when absent */
	unsigned int line;
};

struct sm_policy {
	char name[SM_POLICY_NAME_MAX];
	char *selector;		     /* SPIFFE ID or pattern of the destination workloads */
	bool selector_pattern;	     /* selector is a pattern (ends with a "*" segment) */
	unsigned int selector_line;  /* where the selector's SPIFFE ID is written */
	struct sm_port_range *ports; /* selector ports as written; nports 0 = every port */
	size_t nports;
	struct sm_policy_rule *rules; /* at least one */
	size_t nrules;
	char *description; /* NULL when absent */
	unsigned int line;
};

/* A policy set: policies sorted by name, names unique. Zeroed = empty set. */
struct sm_policy_set {
	struct sm_policy *policies;
	size_t npolicies;
};

/*
 * Parse and validate a policy document (YAML or JSON) into set (zeroed
 * first); the result is sorted by name. Returns 0, or -EINVAL / -ENOMEM with
 * err->msg = "NAME:LINE: what is wrong (what to do)", set then holding nothing.
 */
int sm_policy_set_parse(struct sm_policy_set *set, const char *buf, size_t len, const char *name,
			struct sm_error *err);
/* Same from a file (errors as sm_yaml_load(): -ENOENT, -EFBIG, ...). */
int sm_policy_set_load(struct sm_policy_set *set, const char *path, struct sm_error *err);
void sm_policy_set_free(struct sm_policy_set *set);

/* The policy named name, or NULL. */
const struct sm_policy *sm_policy_set_find(const struct sm_policy_set *set, const char *name);
/* Same policies, selectors, rules, sources, ports and descriptions (lines ignored). */
bool sm_policy_set_equal(const struct sm_policy_set *a, const struct sm_policy_set *b);
/* Deep copy into out (zeroed first). 0 or -ENOMEM. */
int sm_policy_set_copy(const struct sm_policy_set *src, struct sm_policy_set *out);
/*
 * out = current with incoming's policies replacing same-named ones and the
 * others added, sorted by name. 0 or -ENOMEM. Inputs are not changed.
 */
int sm_policy_set_merge(const struct sm_policy_set *current, const struct sm_policy_set *incoming,
			struct sm_policy_set *out);
/* out = current without the policy name. 0, -ENOENT (out empty) or -ENOMEM. */
int sm_policy_set_remove(const struct sm_policy_set *current, const char *name,
			 struct sm_policy_set *out);

/*
 * The set as a document that sm_policy_set_parse() reads back into an equal
 * set. Returns a malloc'ed NUL-terminated string, or NULL with errno set.
 */
char *sm_policy_set_to_json(const struct sm_policy_set *set);
char *sm_policy_set_to_yaml(const struct sm_policy_set *set);

/* Where a rule id comes from: rule ids are 1-based over all rules, policies in name order. */
struct sm_policy_rule_info {
	char policy[SM_POLICY_NAME_MAX];
	unsigned int rule_index; /* 0-based within the policy */
	enum sm_policy_rule_action action;
	unsigned int line; /* the rule's line in its document */
};

/* A policy CIDR and the source identity the policy_cidrs LPM trie maps it to. */
struct sm_policy_cidr {
	struct sm_addr addr;
	uint8_t prefix;
	uint32_t identity; /* SM_ID_CIDR_BASE + n, n in (family, address, prefix) order */
};

struct sm_policy_entry {
	struct sm_policy_key key;
	struct sm_policy_value value;
};

/*
 * A selector or source whose SPIFFE ID or pattern names no workload of the
 * catalog it was compiled against: a pattern nothing matches yet, or an exact
 * ID that is no workload's (an unknown identity: often a misspelling, which
 * `policy apply --strict` refuses).
 */
struct sm_policy_unmatched {
	char policy[SM_POLICY_NAME_MAX];
	int rule;	   /* 0-based index of the rule, or -1: the policy's selector */
	unsigned int line; /* where the ID or pattern is written in its document */
	bool pattern;	   /* a pattern (ending in a "*" segment); false: an exact ID */
	char spiffe[SM_SPIFFE_MAX];
};

/*
 * What u is, for messages that put "FILE:LINE: " (and "note: ") before it and
 * a fix after it: "policy 'P' rules[R]: source 'ID' names no workload of the
 * catalog", "policy 'P' selector: SPIFFE ID 'ID' names no workload of the
 * catalog", "policy 'P' rules[R]: pattern 'X' matches no workload of the
 * catalog yet". Returns buf.
 */
const char *sm_policy_unmatched_format(const struct sm_policy_unmatched *u, char *buf, size_t len);

struct sm_policy_index; /* the lookup hash, private */
struct sm_policy_name;	/* identity -> SPIFFE ID, private */

/*
 * The compiled policy: what goes into the kernel maps, plus what explain and
 * diff need. Entries are sorted by (dst, src, dport); key.proto is IPPROTO_TCP
 * and pads are zero.
 */
struct sm_policy_compiled {
	uint32_t revision;
	struct sm_policy_entry *entries;
	size_t nentries;
	struct sm_policy_cidr *cidrs; /* for the policy_cidrs LPM trie, sorted */
	size_t ncidrs;
	struct sm_policy_rule_info *rules; /* rules[id - 1] */
	size_t nrules;
	/* selectors and sources naming SPIFFE IDs that match no catalog workload */
	unsigned int unmatched_patterns;
	char unmatched_example[SM_SPIFFE_MAX]; /* the first of them, "" when none */
	struct sm_policy_unmatched *unmatched; /* all of them, by line (then policy name) */
	size_t nunmatched;		       /* = unmatched_patterns */
	struct sm_policy_name *names;	       /* private */
	size_t nnames;
	struct sm_policy_index *index; /* private */
};

/*
 * Compile set against the catalog's workloads into *out (zeroed first), every
 * value carrying revision. max_entries 0 means no limit; more entries than
 * max_entries is -E2BIG with err saying how many are needed, and nothing
 * compiled. Returns 0, -E2BIG or -ENOMEM (err set); the caller frees *out
 * with sm_policy_compiled_free().
 */
int sm_policy_compile(const struct sm_policy_set *set, const struct sm_catalog *cat,
		      uint32_t revision, size_t max_entries, struct sm_policy_compiled *out,
		      struct sm_error *err);
/* Compile again after the catalog changed (patterns re-expand): same as sm_policy_compile. */
int sm_policy_recompile(const struct sm_policy_set *set, const struct sm_catalog *cat,
			uint32_t revision, size_t max_entries, struct sm_policy_compiled *out,
			struct sm_error *err);
void sm_policy_compiled_free(struct sm_policy_compiled *c);

/*
 * For a compiled policy assembled by hand (e.g. entries read back from the
 * pinned map; the other fields may stay zero): sort the entries and build the
 * lookup index. 0 or -ENOMEM.
 */
int sm_policy_compiled_index(struct sm_policy_compiled *c);

/* A verdict, from the compiled entries or from the reference evaluator. */
struct sm_policy_decision {
	enum sm_policy_action action;
	enum sm_policy_reason reason;
	uint32_t rule_id; /* 0 = none (DEFAULT_DENY, NO_POLICY) */
	bool audit;
	uint32_t audit_rule_id; /* with audit */
	unsigned int step;	/* lookup: contract step that hit, 1..5; 0 = none / evaluated */
};

/*
 * The key of lookup step (1..SM_POLICY_STEPS, include/sockmesh/policy.h) for
 * src -> dst:port.
 */
void sm_policy_step_key(unsigned int step, uint32_t src, uint32_t dst, uint16_t port,
			struct sm_policy_key *key);

/*
 * The LOOKUP CONTRACT of include/sockmesh/policy.h over c's entries, exactly
 * as the kernel does it. No hit: ALLOW, NO_POLICY. Returns 0.
 */
int sm_policy_lookup(const struct sm_policy_compiled *c, uint32_t src, uint32_t dst, uint16_t port,
		     struct sm_policy_decision *d);

/* The source identity of a non-mesh address: its longest policy CIDR's, or 0. */
uint32_t sm_policy_cidr_identity(const struct sm_policy_compiled *c, const struct sm_addr *addr);

/* What the reference evaluator needs besides the set: identities' SPIFFE IDs, policy CIDRs. */
struct sm_policy_ctx;
/* NULL with errno = ENOMEM on failure. */
struct sm_policy_ctx *sm_policy_ctx_new(const struct sm_policy_set *set,
					const struct sm_catalog *cat);
void sm_policy_ctx_free(struct sm_policy_ctx *ctx);

/*
 * The semantics (docs/policy.md) evaluated directly on the rules, for a TCP
 * connection from identity src to identity dst, port (host order). ctx must
 * have been built from the same set. Returns 0.
 */
int sm_policy_eval(const struct sm_policy_set *set, const struct sm_policy_ctx *ctx, uint32_t src,
		   uint32_t dst, uint16_t port, struct sm_policy_decision *d);

/* Where rule_id comes from. 0, or -ENOENT when there is no such rule. */
int sm_policy_describe(const struct sm_policy_compiled *c, uint32_t rule_id,
		       struct sm_policy_rule_info *info);
int sm_policy_set_describe(const struct sm_policy_set *set, uint32_t rule_id,
			   struct sm_policy_rule_info *info);

/*
 * An identity for people: "any" (0), "default" (the fallback), "host",
 * "world", a policy CIDR, a SPIFFE ID (from c's names or, failing that, cat
 * when non-NULL), else "identity N". Returns buf.
 */
const char *sm_policy_identity_name(const struct sm_policy_compiled *c,
				    const struct sm_catalog *cat, uint32_t identity, char *buf,
				    size_t len);
/*
 * One entry as "allow src=ID dst=ID port=N|any rule=POLICY#I", with
 * " audit=POLICY#I" when flagged; rule=default-deny / no-policy for rule 0.
 * Returns buf.
 */
const char *sm_policy_entry_format(const struct sm_policy_compiled *c, const struct sm_catalog *cat,
				   const struct sm_policy_entry *e, char *buf, size_t len);

enum sm_policy_diff_kind {
	SM_POLICY_DIFF_ADDED = 1,
	SM_POLICY_DIFF_REMOVED = 2,
	SM_POLICY_DIFF_CHANGED = 3,
};

struct sm_policy_diff_item {
	enum sm_policy_diff_kind kind;
	struct sm_policy_key key;
	struct sm_policy_value old_value; /* REMOVED, CHANGED */
	struct sm_policy_value new_value; /* ADDED, CHANGED */
};

/* Entry changes (values compared without their revision), in key order. */
struct sm_policy_diff {
	size_t added, removed, changed;
	struct sm_policy_diff_item *items;
	size_t nitems;
	size_t cidrs_added, cidrs_removed; /* policy_cidrs trie changes */
};

/*
 * What turning old into new changes in the kernel. old or new may be NULL
 * (no entries). *diff is zeroed first. 0 or -ENOMEM.
 */
int sm_policy_diff(const struct sm_policy_compiled *old, const struct sm_policy_compiled *new_c,
		   struct sm_policy_diff *diff);
void sm_policy_diff_free(struct sm_policy_diff *diff);
/*
 * One line per change: "+ ENTRY", "- ENTRY", "~ ENTRY (was ACTION rule=...)",
 * ENTRY as sm_policy_entry_format(); then "+ cidr C identity N" / "- cidr ...".
 * Names come from new (old for removed entries), then cat (may be NULL).
 */
void sm_policy_diff_print(FILE *f, const struct sm_policy_diff *diff,
			  const struct sm_policy_compiled *old,
			  const struct sm_policy_compiled *new_c, const struct sm_catalog *cat);

#endif /* SOCKMESH_LIB_POLICY_H */
