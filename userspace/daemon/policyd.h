/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SOCKMESHD_POLICYD_H
#define SOCKMESHD_POLICYD_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

struct sm_daemon;
struct sm_addr;
struct sm_error;
struct sm_flow_record;
struct json_object;
struct sm_catalog;

/* policyd.c: the connection policy set, its kernel maps and its control commands. */
/* Restore <state_dir>/policy.json into the kernel; before any attach (fail closed). */
int sm_policy_start(struct sm_daemon *d);
void sm_policy_stop(struct sm_daemon *d);
/*
 * For tests, which have no kernel maps (the tunnel's fuzz harness): set,
 * compiled against d's catalog as revision revision, becomes the policy
 * sm_policy_check() answers from, in the daemon's copy only; nothing goes
 * to the kernel. Instead of sm_policy_start(); sm_policy_stop() frees it.
 * 0, or -errno with err set when it does not compile (-EBUSY: started).
 */
int sm_policy_start_unattached(struct sm_daemon *d, const struct sm_policy_set *set,
			       uint32_t revision, struct sm_error *err);
/* The catalog changed (workers paused): recompile, patterns re-expand. 0 or -errno. */
int sm_policy_catalog_changed(struct sm_daemon *d);
/* The catalog identity of a SPIFFE ID; SM_ID_WORLD when it names no workload. */
uint32_t sm_policy_identity_of(const struct sm_daemon *d, const char *spiffe_id);
/* A plaintext caller's source identity: its policy CIDR's, else SM_ID_WORLD (no certificate). */
uint32_t sm_policy_addr_identity(const struct sm_daemon *d, const struct sm_addr *addr);
/* The live policy's verdict for src → dst:port (any thread). */
void sm_policy_check(const struct sm_daemon *d, uint32_t src, uint32_t dst, uint16_t port,
		     struct sm_policy_decision *out);
uint32_t sm_policy_revision(const struct sm_daemon *d);
/*
 * What a module that holds live connections does when a new revision went
 * live (main thread, after the kernel maps changed, workers running): check
 * them again and close those now denied; returns how many it closed, which
 * the apply's answer reports. The tunnel registers one at its start, so the
 * policy never calls up into it.
 */
typedef uint64_t (*sm_policy_live_fn)(struct sm_daemon *d);
/*
 * Cluster mode: make set the whole policy set, as an apply would (the local
 * revision + 1, saved, live, established connections checked again). An
 * equal set changes nothing. 0, or -errno with err and the old set live.
 */
int sm_policy_replace(struct sm_daemon *d, const struct sm_policy_set *set, struct sm_error *err);
/* Does set compile against cat within datapath.max_policy_entries? 0 or -errno with err. */
int sm_policy_compiles(const struct sm_daemon *d, const struct sm_policy_set *set,
		       const struct sm_catalog *cat, struct sm_error *err);
/* Register fn (NULL: none) as the one revision observer; after sm_policy_start(). 0 or -errno. */
int sm_policy_observe(struct sm_daemon *d, sm_policy_live_fn fn);
/* The compiled policy's entries and their bound (datapath.max_policy_entries); -1, -1 before load.
 */
void sm_policy_size(const struct sm_daemon *d, int64_t *entries, int64_t *max);
/* Fill r->policy for a decision (audit: rule_id is the AUDIT rule's). */
void sm_policy_fill_record(const struct sm_daemon *d, uint32_t rule_id, uint32_t revision,
			   enum sm_policy_reason reason, bool audit, struct sm_flow_record *r);
/*
 * A control command named policy_*: *handled says whether cmd was one. The
 * answer's data, or NULL with err set. privileged: the client may change
 * the policy (its uid is root or the daemon's).
 */
struct json_object *sm_policy_command(struct sm_daemon *d, const char *cmd,
				      struct json_object *args, bool privileged, bool *handled,
				      struct sm_error *err);

#endif /* SOCKMESHD_POLICYD_H */
