/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Credentials and TLS contexts for the HBONE hop (docs/security.md):
 * TLS 1.3 only, AES-GCM suites, ECDSA P-256, ALPN "h2", no session
 * resumption, peers verified with sm_svid_verify().
 *
 * A credential directory holds, as SPIRE's helper and cert-manager write them:
 *   cert.pem    the SVID: leaf first, then intermediates
 *   key.pem     its private key (ECDSA P-256)
 *   bundle.pem  the roots of our own trust domain (several allowed)
 *   bundles/<trust-domain>.pem  optional: federated trust domains' roots
 */
#ifndef SOCKMESH_TLSCTX_H
#define SOCKMESH_TLSCTX_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "spiffe.h"
#include "util.h"

/*
 * One loaded credential set with nctx pairs of client and server SSL_CTX
 * built from it, one pair per worker thread (each with its own trust store),
 * so threads share no OpenSSL object. Refcounted (atomically): a connection
 * holds a reference for its lifetime, so swapping in new credentials never
 * disturbs established connections.
 */
struct sm_creds;

/*
 * Load and check a credential directory: files parse, key matches the leaf,
 * the leaf is itself a valid SVID under bundle.pem (so a bad new set is
 * refused before use). NULL + errno, err->msg says which file and what.
 */
struct sm_creds *sm_creds_load(const char *dir, unsigned int nctx, struct sm_error *err);
struct sm_creds *sm_creds_get(struct sm_creds *c);
void sm_creds_put(struct sm_creds *c);

const char *sm_creds_spiffe_id(const struct sm_creds *c); /* our own SPIFFE ID */
time_t sm_creds_not_after(const struct sm_creds *c);	  /* leaf expiry */
/* Worker i's contexts (i modulo nctx), borrowed. */
SSL_CTX *sm_creds_client_ctx(const struct sm_creds *c, unsigned int i);
SSL_CTX *sm_creds_server_ctx(const struct sm_creds *c, unsigned int i);

/*
 * The outcome of a handshake's peer verification, kept on the SSL by the
 * verify callback of both contexts. After a failed handshake it says why
 * (SM_SVID_PROTOCOL when verification never ran, e.g. wrong version);
 * after a good one it holds the peer's SPIFFE ID.
 */
enum sm_svid_reason sm_tls_peer_result(SSL *ssl, char *spiffe_id, size_t len);

/*
 * Client side only: require the server's SPIFFE ID to be expected (the
 * catalog's workload or node), checked inside the handshake; a mismatch fails
 * the handshake with SM_SVID_IDENTITY_MISMATCH. Call before SSL_connect.
 */
int sm_tls_expect_peer(SSL *ssl, const char *spiffe_id);

/*
 * Server side: when the client sends a server name (SNI), fn(ssl, name, arg)
 * may return another server context to answer with (e.g. the SVID of the
 * workload the name encodes, see sm_spiffe_sni_name()); NULL keeps the one
 * the SSL was made with. Call before the handshake. 0 or -ENOMEM.
 */
typedef SSL_CTX *(*sm_tls_sni_fn)(SSL *ssl, const char *name, void *arg);
int sm_tls_on_sni(SSL *ssl, sm_tls_sni_fn fn, void *arg);

#endif /* SOCKMESH_TLSCTX_H */
