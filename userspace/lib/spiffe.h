/* SPDX-License-Identifier: Apache-2.0 */
/*
 * X.509-SVID verification per the SPIFFE X.509-SVID standard, stricter than
 * ztunnel and Linkerd (docs/security.md): the chain must lead to the
 * bundle of the peer's own trust domain; the leaf has exactly one URI SAN and
 * it is a valid SPIFFE ID; the leaf is not a CA; key usage includes
 * digitalSignature and excludes keyCertSign and cRLSign; the validity window
 * holds; an extended key usage, if present, includes the purpose needed
 * (serverAuth for a server, clientAuth for a client); the key is ECDSA P-256;
 * every certificate of the chain meets SM_SVID_SECURITY_LEVEL.
 */
#ifndef SOCKMESH_SPIFFE_H
#define SOCKMESH_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "util.h"

/* Why a peer's SVID was refused: stable names for flow records and counters. */
enum sm_svid_reason {
	SM_SVID_OK = 0,
	SM_SVID_NO_CERTIFICATE,	    /* "no_client_certificate" (or none from a server) */
	SM_SVID_EXPIRED,	    /* "expired" */
	SM_SVID_NOT_YET_VALID,	    /* "not_yet_valid" */
	SM_SVID_UNKNOWN_CA,	    /* "unknown_ca": no chain to the trust domain's bundle */
	SM_SVID_WRONG_TRUST_DOMAIN, /* "wrong_trust_domain": no bundle for its trust domain */
	SM_SVID_BAD_SAN,	    /* "bad_san": not exactly one URI SAN, or not a SPIFFE ID */
	SM_SVID_LEAF_IS_CA,	    /* "leaf_is_ca" */
	SM_SVID_BAD_KEY_USAGE,	    /* "bad_key_usage" */
	SM_SVID_BAD_EKU,	    /* "bad_eku" */
	SM_SVID_BAD_KEY,	    /* "bad_key": not ECDSA P-256 */
	SM_SVID_WEAK_SIGNATURE,	    /* "weak_signature": signed with SHA-1 or weaker */
	SM_SVID_WEAK_KEY,	    /* "weak_key": a key below 112 bits (RSA 1024) */
	SM_SVID_IDENTITY_MISMATCH,  /* "identity_mismatch": valid, but not who we expected */
	SM_SVID_PROTOCOL,	    /* "protocol": TLS version, cipher or ALPN refused */
	SM_SVID_REASON_MAX,
};

const char *sm_svid_reason_name(enum sm_svid_reason r);

/*
 * The OpenSSL security level of every chain check and TLS context: 112-bit
 * strength, so no RSA or DSA key under 2048 bits, no EC key under 224 bits
 * and no SHA-1 (or weaker) signature on any certificate of the chain
 * (SM_SVID_WEAK_KEY, SM_SVID_WEAK_SIGNATURE). Set explicitly: a hand-built
 * verification context has no level, and a context's default comes from
 * openssl.cnf.
 */
#define SM_SVID_SECURITY_LEVEL 2

/* Which side the peer is: decides the EKU that must be present, if any EKU is. */
enum sm_svid_purpose {
	SM_SVID_PEER_IS_CLIENT = 0,
	SM_SVID_PEER_IS_SERVER = 1,
};

/*
 * Trust bundles, one set of root certificates per trust domain. A bundle may
 * hold several roots (rotation overlap). Opaque; refcounted through
 * sm_bundles_get/put so a verifier can keep using a set while a newer one
 * replaces it.
 */
struct sm_bundles;

/*
 * Load every certificate of a PEM file as roots of trust_domain (e.g.
 * "example.org"). NULL + errno on failure, with err->msg naming the file and
 * the problem. Add more domains with sm_bundles_add().
 */
struct sm_bundles *sm_bundles_load(const char *trust_domain, const char *pem_path,
				   struct sm_error *err);
int sm_bundles_add(struct sm_bundles *b, const char *trust_domain, const char *pem_path,
		   struct sm_error *err);
struct sm_bundles *sm_bundles_get(struct sm_bundles *b);
void sm_bundles_put(struct sm_bundles *b);

/*
 * Verify leaf (+ untrusted intermediates in chain, may be NULL) at time now
 * (0 = current time) against bundles for purpose. On success writes the
 * SPIFFE ID (spiffe_id[len]) and returns SM_SVID_OK; else the reason.
 */
enum sm_svid_reason sm_svid_verify(X509 *leaf, STACK_OF(X509) * chain,
				   const struct sm_bundles *bundles, enum sm_svid_purpose purpose,
				   time_t now, char *spiffe_id, size_t len);

/* The trust domain of a SPIFFE ID ("spiffe://td/path" → "td"). 0 or -EINVAL. */
int sm_spiffe_trust_domain(const char *spiffe_id, char *td, size_t len);

/*
 * The TLS server name (SNI) that names a SPIFFE ID on the HBONE hop: the
 * first 128 bits of SHA-256 over the ID, as 32 lowercase hex digits, then
 * ".svid.sockmesh.invalid". A DNS-safe host name (one 32-character label,
 * 54 bytes in all) for IDs of any length; a server compares it with the names
 * of the IDs it holds SVIDs for. len >= SM_SNI_NAME_LEN. 0 or -EINVAL.
 */
#define SM_SNI_NAME_LEN 64
int sm_spiffe_sni_name(const char *spiffe_id, char *out, size_t len);

#endif /* SOCKMESH_SPIFFE_H */
