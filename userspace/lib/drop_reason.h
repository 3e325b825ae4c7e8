/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Why a connection was dropped or failed: the one list of names that flow
 * records (drop_reason, tls.failure), counters and logs use. Every name the
 * code writes comes from this table; docs/flow-schema.md and
 * docs/flow-schema.json are checked against it by a unit test
 * (tests/unit/test_drop_reason.c), so a new reason is one line here plus
 * its row in the docs.
 */
#ifndef SOCKMESH_DROP_REASON_H
#define SOCKMESH_DROP_REASON_H

#include <stdbool.h>
#include <stddef.h>

enum sm_drop_reason {
	/* the peer's SVID was refused: the names of enum sm_svid_reason (spiffe.h) */
	SM_DROP_NO_CLIENT_CERTIFICATE,
	SM_DROP_EXPIRED,
	SM_DROP_NOT_YET_VALID,
	SM_DROP_UNKNOWN_CA,
	SM_DROP_WRONG_TRUST_DOMAIN,
	SM_DROP_BAD_SAN,
	SM_DROP_LEAF_IS_CA,
	SM_DROP_BAD_KEY_USAGE,
	SM_DROP_BAD_EKU,
	SM_DROP_BAD_KEY,
	SM_DROP_WEAK_SIGNATURE,
	SM_DROP_WEAK_KEY,
	SM_DROP_IDENTITY_MISMATCH,
	SM_DROP_PROTOCOL,
	/* the peer refused our certificate */
	SM_DROP_PEER_REFUSED_EXPIRED,
	SM_DROP_PEER_REFUSED_UNKNOWN_CA,
	SM_DROP_PEER_REFUSED_CERTIFICATE,
	SM_DROP_PEER_REQUIRES_CERTIFICATE,
	/* the tunnel connection */
	SM_DROP_HANDSHAKE_TIMEOUT,
	SM_DROP_HANDSHAKE_LIMIT,
	SM_DROP_PREFACE_TIMEOUT,
	SM_DROP_TUNNEL_CONNECT_FAILED,
	SM_DROP_TLS_ERROR,
	SM_DROP_HTTP2_FRAME_SIZE_ERROR,
	SM_DROP_HTTP2_PROTOCOL_ERROR,
	SM_DROP_HTTP2_ERROR,
	SM_DROP_KEEPALIVE_TIMEOUT,
	SM_DROP_TUNNEL_CLOSED,
	SM_DROP_DAEMON_STOPPED,
	/* one stream */
	SM_DROP_MALFORMED_HBONE,
	SM_DROP_AUTHORITY_NOT_HOSTED,
	SM_DROP_UPSTREAM_REFUSED,
	SM_DROP_UPSTREAM_UNREACHABLE,
	SM_DROP_HTTP_STATUS,
	SM_DROP_STREAM_RESET,
	SM_DROP_PLAIN_SOCKET_RESET,
	/* the daemon's own resources */
	SM_DROP_FD_EXHAUSTED,
	SM_DROP_OUT_OF_MEMORY,
	/* policy */
	SM_DROP_POLICY_DENIED,
	SM_DROP_POLICY_DEFAULT_DENY,
	SM_DROP_POLICY_DENIED_REMOTE,
	SM_DROP_POLICY_REVOKED,
	SM_DROP_REASON_MAX,
};

struct sm_drop_reason_def {
	const char *name; /* as written in records; "http_<status>" stands for http_100..http_599 */
	const char *meaning; /* one line, as docs/flow-schema.md shows it */
};

/* The name of r ("unknown" out of range). SM_DROP_HTTP_STATUS: use sm_drop_reason_http(). */
const char *sm_drop_reason_name(enum sm_drop_reason r);
/* The whole table, SM_DROP_REASON_MAX entries in enum order. */
const struct sm_drop_reason_def *sm_drop_reasons(void);
/* "http_<status>" for a CONNECT answered with status (100..599) into buf. */
const char *sm_drop_reason_http(int status, char *buf, size_t len);
/* Is name one of the table's (http_<status> with a status of 100..599 included)? */
bool sm_drop_reason_known(const char *name);

#endif /* SOCKMESH_DROP_REASON_H */
