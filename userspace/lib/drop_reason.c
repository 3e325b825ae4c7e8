// SPDX-License-Identifier: Apache-2.0
/* The one list of drop and failure reasons: names and what each means. */
#include "drop_reason.h"

#include <stdio.h>
#include <string.h>

static const struct sm_drop_reason_def reasons[SM_DROP_REASON_MAX] = {
	[SM_DROP_NO_CLIENT_CERTIFICATE] = {"no_client_certificate",
					   "the peer presented no certificate"},
	[SM_DROP_EXPIRED] = {"expired", "the peer's SVID has expired"},
	[SM_DROP_NOT_YET_VALID] = {"not_yet_valid", "the peer's SVID is not valid yet"},
	[SM_DROP_UNKNOWN_CA] = {"unknown_ca",
				"the peer's SVID does not chain to its trust domain's bundle"},
	[SM_DROP_WRONG_TRUST_DOMAIN] = {"wrong_trust_domain",
					"no bundle for the peer's trust domain"},
	[SM_DROP_BAD_SAN] = {"bad_san", "not exactly one URI SAN, or it is not a SPIFFE ID"},
	[SM_DROP_LEAF_IS_CA] = {"leaf_is_ca", "the peer's leaf certificate is a CA"},
	[SM_DROP_BAD_KEY_USAGE] =
		{"bad_key_usage",
		 "key usage lacks digitalSignature or allows signing certificates"},
	[SM_DROP_BAD_EKU] = {"bad_eku", "extended key usage lacks serverAuth or clientAuth"},
	[SM_DROP_BAD_KEY] = {"bad_key", "the peer's key is not ECDSA P-256"},
	[SM_DROP_WEAK_SIGNATURE] =
		{"weak_signature", "a certificate of the peer's chain is signed with a weak digest "
				   "(SHA-1)"},
	[SM_DROP_WEAK_KEY] = {"weak_key",
			      "a key in the peer's chain is below 112 bits of security (e.g. "
			      "RSA-1024)"},
	[SM_DROP_IDENTITY_MISMATCH] = {"identity_mismatch",
				       "a valid SVID, but not the identity the catalog names"},
	[SM_DROP_PROTOCOL] = {"protocol",
			      "not TLS 1.3 with the cipher and ALPN h2, or not TLS at all"},
	[SM_DROP_PEER_REFUSED_EXPIRED] = {"peer_refused_expired",
					  "the peer refused our certificate as expired"},
	[SM_DROP_PEER_REFUSED_UNKNOWN_CA] = {"peer_refused_unknown_ca",
					     "the peer does not trust our certificate's CA"},
	[SM_DROP_PEER_REFUSED_CERTIFICATE] = {"peer_refused_certificate",
					      "the peer refused our certificate"},
	[SM_DROP_PEER_REQUIRES_CERTIFICATE] =
		{"peer_requires_certificate",
		 "the peer wants a client certificate we did not send"},
	[SM_DROP_HANDSHAKE_TIMEOUT] =
		{"handshake_timeout",
		 "the TLS handshake took longer than tunnel.handshake_timeout"},
	[SM_DROP_HANDSHAKE_LIMIT] = {"handshake_limit",
				     "refused at accept: its source address has "
				     "tunnel.max_handshakes_per_source handshakes in progress, or "
				     "a lighter source took the last slot"},
	[SM_DROP_PREFACE_TIMEOUT] = {"preface_timeout",
				     "mTLS done, but no HTTP/2 preface and SETTINGS within "
				     "tunnel.handshake_timeout"},
	[SM_DROP_TUNNEL_CONNECT_FAILED] = {"tunnel_connect_failed",
					   "the TCP connection to the peer node failed"},
	[SM_DROP_TLS_ERROR] = {"tls_error", "a TLS read or write failed after the handshake"},
	[SM_DROP_HTTP2_FRAME_SIZE_ERROR] = {"http2_frame_size_error",
					    "the peer sent a frame larger than we allow or of a "
					    "wrong size (GOAWAY FRAME_SIZE_ERROR)"},
	[SM_DROP_HTTP2_PROTOCOL_ERROR] = {"http2_protocol_error",
					  "the peer broke HTTP/2 on the connection (GOAWAY with "
					  "an error code)"},
	[SM_DROP_HTTP2_ERROR] = {"http2_error", "the HTTP/2 library failed to write frames"},
	[SM_DROP_KEEPALIVE_TIMEOUT] = {"keepalive_timeout",
				       "the peer did not answer a keepalive PING in time"},
	[SM_DROP_TUNNEL_CLOSED] = {"tunnel_closed",
				   "the tunnel connection closed under an open stream (e.g. the "
				   "other node's daemon stopped or crashed)"},
	[SM_DROP_DAEMON_STOPPED] = {"daemon_stopped",
				    "this node's daemon stopped or crashed with the connection "
				    "open (recorded by it, or by the next daemon)"},
	[SM_DROP_MALFORMED_HBONE] = {"malformed_hbone",
				     "not HTTP/2, or a request that is not a valid CONNECT "
				     "(RST_STREAM or 400)"},
	[SM_DROP_AUTHORITY_NOT_HOSTED] = {"authority_not_hosted",
					  "CONNECT to an address that is no service of this node "
					  "(400)"},
	[SM_DROP_UPSTREAM_REFUSED] = {"upstream_refused", "the local service refused (502)"},
	[SM_DROP_UPSTREAM_UNREACHABLE] = {"upstream_unreachable",
					  "the local service could not be reached (503)"},
	[SM_DROP_HTTP_STATUS] = {"http_<status>",
				 "the far node answered the CONNECT with this status"},
	[SM_DROP_STREAM_RESET] = {"stream_reset", "the peer reset the stream"},
	[SM_DROP_PLAIN_SOCKET_RESET] = {"plain_socket_reset",
					"the workload's or service's socket failed"},
	[SM_DROP_FD_EXHAUSTED] = {"fd_exhausted",
				  "the daemon was out of file descriptors: the connection was "
				  "reset at once (at accept, or when it needed a socket to the far "
				  "node or the service)"},
	[SM_DROP_OUT_OF_MEMORY] = {"out_of_memory", "the daemon could not allocate memory"},
	[SM_DROP_POLICY_DENIED] = {"policy_denied", "a DENY rule"},
	[SM_DROP_POLICY_DEFAULT_DENY] = {"policy_default_deny",
					 "an ALLOW policy selects the destination and no rule "
					 "allowed this"},
	[SM_DROP_POLICY_DENIED_REMOTE] = {"policy_denied_remote",
					  "the destination node answered 403"},
	[SM_DROP_POLICY_REVOKED] = {"policy_revoked",
				    "on conn_end: a new policy revision denied the established "
				    "connection and it was closed"},
};

const char *sm_drop_reason_name(enum sm_drop_reason r)
{
	if ((unsigned int) r >= SM_DROP_REASON_MAX)
		return "unknown";
	return reasons[r].name;
}

const struct sm_drop_reason_def *sm_drop_reasons(void)
{
	return reasons;
}

const char *sm_drop_reason_http(int status, char *buf, size_t len)
{
	snprintf(buf, len, "http_%d", status);
	return buf;
}

bool sm_drop_reason_known(const char *name)
{
	if (strncmp(name, "http_", 5) == 0 && strlen(name) == 8 && name[5] >= '1' &&
	    name[5] <= '5' && name[6] >= '0' && name[6] <= '9' && name[7] >= '0' && name[7] <= '9')
		return true;
	for (int i = 0; i < SM_DROP_REASON_MAX; i++)
		if (i != SM_DROP_HTTP_STATUS && strcmp(name, reasons[i].name) == 0)
			return true;
	return false;
}
