/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flow records: one JSON object per line. The schema is
 * documented in docs/flow-schema.md; SM_FLOW_SCHEMA_VERSION is in every record.
 * Field names follow Hubble where the meaning matches.
 */
#ifndef SOCKMESH_FLOW_RECORD_H
#define SOCKMESH_FLOW_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "intern.h"
#include "util.h"

#define SM_FLOW_SCHEMA_VERSION 1

enum sm_flow_record_type {
	SM_REC_CONN_START = 0, /* "conn_start" */
	SM_REC_CONN_UPDATE,    /* "conn_update" */
	SM_REC_CONN_END,       /* "conn_end" */
	SM_REC_DENIED,	       /* "denied" */
	SM_REC_LOST,	       /* "lost" */
	SM_REC_TYPE_MAX,
};

enum sm_verdict {
	SM_VERDICT_FORWARDED = 0, /* "FORWARDED" */
	SM_VERDICT_DROPPED,	  /* "DROPPED" */
	SM_VERDICT_AUDIT,	  /* "AUDIT" */
	SM_VERDICT_MAX,
};

enum sm_direction {
	SM_DIR_EGRESS = 0, /* "EGRESS": this socket connected */
	SM_DIR_INGRESS,	   /* "INGRESS": this socket was accepted */
	SM_DIR_MAX,
};

/* Longest string fields a record may carry (bytes, NUL included), as the schema says. */
#define SM_FLOW_SPIFFE_MAX 256 /* spiffe_id, tls.local_spiffe_id, tls.peer_spiffe_id */
#define SM_FLOW_NAME_MAX   64  /* workload, node */
#define SM_FLOW_CGROUP_MAX 512 /* cgroup */

struct sm_flow_endpoint {
	struct sm_addr addr;
	uint16_t port; /* host order */
	uint32_t identity;
	/* interned (intern.h) or static strings; NULL or "" when unknown (omitted from JSON) */
	const char *spiffe_id;
	const char *workload;
	const char *node;   /* the catalog node hosting the workload */
	const char *cgroup; /* the workload's cgroup (catalog path) */
};

struct sm_flow_counters {
	uint64_t bytes_sent; /* bytes_acked + bytes redirected by sk_msg */
	uint64_t bytes_received;
	uint64_t segs_in;
	uint64_t segs_out;
};

/*
 * The "tls" block: how the connection was protected. Written only when
 * present is set; empty strings and a zero handshake_us are omitted.
 */
struct sm_flow_tls {
	bool present;
	char mode[16];	  /* "mode": "STRICT" | "PERMISSIVE" */
	bool encrypted;	  /* "encrypted": false for plaintext accepted in PERMISSIVE */
	char version[16]; /* "version", e.g. "TLSv1.3" */
	char cipher[64];  /* "cipher", e.g. "TLS_AES_128_GCM_SHA256" */
	/* interned (intern.h); NULL or "" = omitted */
	const char *local_spiffe_id; /* "local_spiffe_id": the SVID this side presented */
	const char *peer_spiffe_id;  /* "peer_spiffe_id": the verified peer */
	uint32_t handshake_us;	     /* "handshake_us" */
	char failure[64];	     /* "failure": why the handshake or stream failed */
};

/*
 * The "policy" block: what the connection policy decided (docs/policy.md).
 * Written only when present is set.
 */
struct sm_flow_policy {
	bool present;
	uint32_t revision;   /* "revision" of the policy set */
	char match[16];	     /* "match": "rule" | "default-deny" | "no-policy" */
	char name[64];	     /* "name": the deciding policy, "" = omitted */
	int rule;	     /* "rule": its rule index (0-based), -1 = omitted */
	char audit_name[64]; /* "audit": {"name", "rule"}: an AUDIT rule that matched */
	int audit_rule;
};

/* Most sources a lost record names in "lost.rate_limited_sources". */
#define SM_FLOW_LOST_SOURCES_MAX 8

/*
 * One source whose DROPPED/AUDIT records a sink's rate limit suppressed:
 * "identity", plus "ip" when the identity is 0 or 2 (world) and the source
 * is known by its address; "suppressed" records since the previous lost record.
 */
struct sm_flow_lost_source {
	uint32_t identity;
	struct sm_addr addr; /* family 0: no "ip" */
	uint64_t suppressed;
};

/* One record. For type SM_REC_LOST only time, node and lost_* are used. */
struct sm_flow_record {
	enum sm_flow_record_type type;
	int64_t time_ns;	     /* CLOCK_REALTIME, ns: "time" */
	char node[64];		     /* reporting node: "node" */
	enum sm_verdict verdict;     /* "verdict" */
	char drop_reason[64];	     /* "drop_reason", "" = omitted */
	enum sm_direction direction; /* "traffic_direction" */
	struct sm_flow_endpoint source;
	struct sm_flow_endpoint destination;
	bool captured;		       /* "captured": rewritten to the daemon's listener */
	bool same_node;		       /* "same_node": peer hosted on this node */
	bool redirected;	       /* "redirected": socket was in the sk_msg sockhash */
	uint64_t cookie;	       /* "socket_cookie" */
	uint64_t cgroup_id;	       /* "cgroup_id" */
	int64_t start_ns;	       /* CLOCK_REALTIME, ns: "start_time" */
	uint64_t duration_us;	       /* "duration_us" (time - start_time) */
	struct sm_flow_counters total; /* "counters": since the connection started */
	struct sm_flow_counters delta; /* "delta": since this connection's previous record */
	uint32_t srtt_us;	       /* "tcp.srtt_us" */
	uint32_t total_retrans;	       /* "tcp.total_retrans" */
	char trace_id[64];	       /* "trace_id": shared by both nodes' records, "" = omitted */
	struct sm_flow_tls tls;	       /* "tls" */
	struct sm_flow_policy policy;  /* "policy" */
	uint64_t redirected_bytes;     /* "counters.redirected_bytes_sent" */
	/* lost records: "lost": {"ringbuf": N, "orig_dst": N, "storage": N, "sockhash": N} */
	uint64_t lost_ringbuf;
	uint64_t lost_orig_dst;
	uint64_t lost_storage;
	uint64_t lost_sockhash;
	uint64_t lost_queue;	    /* "queue": records dropped because the sink queue was full */
	uint64_t lost_rate_limited; /* "rate_limited": DROPPED/AUDIT records suppressed */
	uint64_t lost_write_failed; /* "write_failed": records the sink could not write */
	/* "rate_limited_sources": the sources suppressed most (omitted when none) */
	unsigned int nlost_sources;
	struct sm_flow_lost_source lost_sources[SM_FLOW_LOST_SOURCES_MAX];
};

const char *sm_flow_record_type_name(enum sm_flow_record_type t);
const char *sm_verdict_name(enum sm_verdict v);
const char *sm_direction_name(enum sm_direction d);

/* json-c serialization flags of a record: one line, SPIFFE IDs' '/' unescaped. */
#define SM_FLOW_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct json_object;

/*
 * The one encoder: r as a json-c object (the caller puts it), for callers
 * that change it before serializing (field masks). NULL with errno EINVAL
 * (a field out of range, an unterminated string) or ENOMEM.
 */
struct json_object *sm_flow_record_to_json(const struct sm_flow_record *r);

/*
 * Encode r as one JSON object without a trailing newline into a malloc'ed
 * string (*out, caller frees). Returns 0 or -ENOMEM/-EINVAL.
 */
int sm_flow_record_encode(const struct sm_flow_record *r, char **out);

/*
 * The same line (length in *len), in a buffer of this thread's that the
 * next call on the thread overwrites: for callers that copy it at once. The
 * thread keeps the json-c trees of the last few shapes of record and sets
 * their values in place, which saves most of the encoding's allocations.
 * NULL with errno EINVAL or ENOMEM.
 */
const char *sm_flow_record_line(const struct sm_flow_record *r, size_t *len);

/*
 * Decode one JSON line produced by sm_flow_record_encode back into r.
 * Returns 0, or -EINVAL when the text is not a record of this schema version
 * (unknown type, missing required fields, wrong types). Used by tests and the CLI.
 */
int sm_flow_record_decode(const char *json, struct sm_flow_record *r);

/*
 * Whether path names a field of the schema: a top-level name ("tls") or a
 * dotted path to a member of an object ("source.ip", "tls.peer_spiffe_id").
 */
bool sm_flow_field_known(const char *path);

/*
 * A field mask: keep in o (an encoded record) only the fields that one of
 * paths names (whole subtrees for a top-level or intermediate name) and the
 * fields every record keeps: version, type, time, node. n == 0 keeps all.
 * Returns 0 or -EINVAL when o is not an object.
 */
int sm_flow_json_mask(struct json_object *o, const char *const *paths, size_t n);

#endif /* SOCKMESH_FLOW_RECORD_H */
