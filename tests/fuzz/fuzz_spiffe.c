// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer harness: the certificates a TLS peer presents (DER, concatenated,
 * leaf first), verified as an HBONE handshake verifies them: tlsctx.c's verify
 * callback hands sm_svid_verify() the leaf and the whole list as the untrusted
 * chain, against the trust bundles, for the peer's role (client or server).
 * The bundles are sockmesh.test's and federated.test's roots from
 * tests/fuzz/spiffe_pki.h, made together with the seeds by
 * tests/fuzz/make-spiffe-seeds.sh; the time is fixed inside the seeds' validity.
 *
 * A mutated certificate's signature no longer verifies, which would stop
 * nearly every input at the chain check. So each input is verified twice: as
 * it is, and with every certificate whose issuer the fixture holds re-signed
 * by that issuer. The rules after the chain check (not a CA, key usage, EKU,
 * key type) and OpenSSL's path validation (validity, path length, name
 * constraints) then see mutated content too.
 *
 * Then the re-signed certificates go through a real TLS 1.3 handshake, in
 * memory, as a client's certificate to a server made from a credential
 * directory like the daemon's (sm_creds_load()), so tlsctx.c's callbacks run
 * on them: the leaf gets the client's key (so that the client can sign its
 * CertificateVerify) and is re-signed; inputs whose leaf's issuer the fixture
 * does not hold skip this step. The server's verdict (sm_tls_peer_result())
 * must be what sm_svid_verify() says of the same certificates at the current
 * time, whenever the client got its certificate out.
 *
 * Besides "no crash, no leak, no undefined behaviour", it checks that:
 *  - the reason is one verification gives (not a handshake's), with a name;
 *  - a SPIFFE ID comes back exactly when the verdict is OK, and then it is a
 *    valid ID with a path, in a trust domain with a bundle, found in the
 *    leaf's bytes, with an SNI name, and the leaf is an ECDSA P-256 non-CA
 *    valid at the time;
 *  - the two roles' verdicts differ only by bad_eku;
 *  - a buffer too small for the ID gives bad_san and an empty string;
 *  - the handshake's verdict and ID are the direct call's, and a server that
 *    accepted the certificate completes the handshake.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "catalog.h"
#include "spiffe.h"
#include "spiffe_pki.h"
#include "tlsctx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* More than a peer's chain needs (the daemon accepts depth 8). */
#define MAX_CERTS 10
/* Rounds of the in-memory handshake: TLS 1.3 needs three or four. */
#define HANDSHAKE_TURNS 16
#define NISSUERS	(sizeof(spiffe_pki_issuers) / sizeof(spiffe_pki_issuers[0]))

static struct sm_bundles *bundles;
static X509 *issuer_cert[NISSUERS];
static EVP_PKEY *issuer_key[NISSUERS];
/* the TLS server, with credentials as the daemon loads them, and the client */
static struct sm_creds *server_creds;
static SSL_CTX *client_ctx;
static EVP_PKEY *client_key;

static void *pem_read(const char *pem, bool key)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	void *obj;

	if (!bio)
		abort();
	obj = key ? (void *) PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
		  : (void *) PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!obj)
		abort();
	return obj;
}

/* The bundle API reads files, as the daemon does: write pem to one for it. */
static void bundle_add(const char *td, const char *pem)
{
	char path[] = "/tmp/sockmesh-fuzz-bundle-XXXXXX";
	struct sm_error err;
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, pem, strlen(pem)) != (ssize_t) strlen(pem))
		abort();
	close(fd);
	if (!bundles)
		bundles = sm_bundles_load(td, path, &err);
	else if (sm_bundles_add(bundles, td, path, &err))
		abort();
	unlink(path);
	if (!bundles)
		abort();
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f))
		abort();
}

static void remove_file(const char *dir, const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

/* A credential directory (tlsctx.h) for the server, loaded as the daemon loads one. */
static void server_setup(void)
{
	char dir[] = "/tmp/sockmesh-fuzz-creds-XXXXXX", sub[64];
	struct sm_error err = {{0}};

	if (!mkdtemp(dir))
		abort();
	snprintf(sub, sizeof(sub), "%s/bundles", dir);
	if (mkdir(sub, 0700))
		abort();
	write_file(dir, "cert.pem", spiffe_pki_server_chain_pem);
	write_file(dir, "key.pem", spiffe_pki_server_key_pem);
	write_file(dir, "bundle.pem", spiffe_pki_root_pem);
	write_file(dir, "bundles/federated.test.pem", spiffe_pki_fed_root_pem);
	server_creds = sm_creds_load(dir, 1, &err);
	remove_file(dir, "bundles/federated.test.pem");
	remove_file(dir, "bundle.pem");
	remove_file(dir, "key.pem");
	remove_file(dir, "cert.pem");
	rmdir(sub);
	rmdir(dir);
	if (!server_creds) {
		fprintf(stderr, "fuzz_spiffe: the server's credentials: %s\n", err.msg);
		abort();
	}
	/* the client: the daemon's profile, and it does not judge the server */
	client_key = EVP_EC_gen("P-256");
	client_ctx = SSL_CTX_new(TLS_client_method());
	if (!client_key || !client_ctx ||
	    !SSL_CTX_set_min_proto_version(client_ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set1_groups_list(client_ctx, "P-256") ||
	    SSL_CTX_set_alpn_protos(client_ctx, (const unsigned char *) "\x02h2", 3) != 0)
		abort();
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
	/* send the chain given, never one built from a store */
	SSL_CTX_set_mode(client_ctx, SSL_MODE_NO_AUTO_CHAIN);
}

static void setup_once(void)
{
	if (bundles)
		return;
	bundle_add("sockmesh.test", spiffe_pki_root_pem);
	bundle_add("federated.test", spiffe_pki_fed_root_pem);
	for (size_t i = 0; i < NISSUERS; i++) {
		issuer_cert[i] = pem_read(spiffe_pki_issuers[i].cert_pem, false);
		issuer_key[i] = pem_read(spiffe_pki_issuers[i].key_pem, true);
	}
	server_setup();
}

/* What must hold of the leaf when it was accepted as an SVID with ID id. */
static void check_accepted(X509 *leaf, const char *id)
{
	char td[SM_SPIFFE_MAX], sni[SM_SNI_NAME_LEN], group[64];
	time_t now = SPIFFE_PKI_NOW;
	unsigned char *der = NULL;
	EVP_PKEY *pk;
	size_t glen;
	int n;

	if (!sm_spiffe_id_valid(id) || !strchr(id + strlen("spiffe://"), '/') ||
	    sm_spiffe_trust_domain(id, td, sizeof(td)) ||
	    (strcmp(td, "sockmesh.test") != 0 && strcmp(td, "federated.test") != 0))
		abort();
	if (sm_spiffe_sni_name(id, sni, sizeof(sni)) || strlen(sni) != 54)
		abort();
	/* the ID was in the certificate, byte for byte */
	n = i2d_X509(leaf, &der);
	if (n <= 0 || !memmem(der, (size_t) n, id, strlen(id)))
		abort();
	OPENSSL_free(der);
	if (X509_check_ca(leaf) != 0)
		abort();
	pk = X509_get0_pubkey(leaf);
	if (!pk || !EVP_PKEY_is_a(pk, "EC") ||
	    !EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) ||
	    strcmp(group, "prime256v1") != 0)
		abort();
	if (X509_cmp_time(X509_get0_notBefore(leaf), &now) > 0 ||
	    X509_cmp_time(X509_get0_notAfter(leaf), &now) < 0)
		abort();
}

/* Verify certs for one role; check the answer; return it (ID in id). */
static enum sm_svid_reason verify_as(STACK_OF(X509) * certs, enum sm_svid_purpose purpose, char *id,
				     size_t len)
{
	X509 *leaf = sk_X509_num(certs) > 0 ? sk_X509_value(certs, 0) : NULL;
	enum sm_svid_reason r;

	r = sm_svid_verify(leaf, certs, bundles, purpose, SPIFFE_PKI_NOW, id, len);
	if ((unsigned int) r >= SM_SVID_REASON_MAX || r == SM_SVID_IDENTITY_MISMATCH ||
	    r == SM_SVID_PROTOCOL || (r == SM_SVID_NO_CERTIFICATE) != !leaf ||
	    strcmp(sm_svid_reason_name(r), "unknown") == 0)
		abort();
	if ((r == SM_SVID_OK) != (id[0] != '\0'))
		abort();
	if (r == SM_SVID_OK)
		check_accepted(leaf, id);
	return r;
}

static void verify_chain(STACK_OF(X509) * certs)
{
	char id_client[SM_SPIFFE_MAX], id_server[SM_SPIFFE_MAX], small[SM_SPIFFE_MAX];
	enum sm_svid_reason rc, rs;

	rc = verify_as(certs, SM_SVID_PEER_IS_CLIENT, id_client, sizeof(id_client));
	rs = verify_as(certs, SM_SVID_PEER_IS_SERVER, id_server, sizeof(id_server));
	/* the role decides the EKU that must be present, nothing else */
	if (rc != rs && rc != SM_SVID_BAD_EKU && rs != SM_SVID_BAD_EKU)
		abort();
	if (rc == SM_SVID_OK && rs == SM_SVID_OK && strcmp(id_client, id_server) != 0)
		abort();
	/* no room for the terminating NUL: refused, nothing cut handed out */
	if (rc == SM_SVID_OK) {
		small[0] = 'x';
		if (sm_svid_verify(sk_X509_value(certs, 0), certs, bundles, SM_SVID_PEER_IS_CLIENT,
				   SPIFFE_PKI_NOW, small, strlen(id_client)) != SM_SVID_BAD_SAN ||
		    small[0] != '\0')
			abort();
	}
}

/*
 * x signed again by its issuer if the fixture holds that issuer, then passed
 * through DER as a peer would send it: a new certificate, or NULL.
 */
static X509 *sign_again(X509 *x)
{
	const unsigned char *p;
	unsigned char *der = NULL;
	X509 *back = NULL;
	int n;

	for (size_t i = 0; i < NISSUERS; i++) {
		if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(issuer_cert[i])))
			continue;
		if (X509_sign(x, issuer_key[i], EVP_sha256()) > 0 && (n = i2d_X509(x, &der)) > 0) {
			p = der;
			back = d2i_X509(NULL, &p, n);
		}
		OPENSSL_free(der);
		break;
	}
	return back;
}

/* x re-signed (sign_again) if it can be, else x: a new reference either way. */
static X509 *resigned(X509 *x)
{
	X509 *copy = X509_dup(x), *back = copy ? sign_again(copy) : NULL;

	X509_free(copy);
	if (!back && X509_up_ref(x))
		back = x;
	return back;
}

/*
 * Hand certs to the server as a client's certificate, over an in-memory BIO
 * pair, turn by turn. Returns the server's verdict, its ID in id; *sent is
 * whether the client got its whole flight out (Certificate, CertificateVerify,
 * Finished: only then did the server judge these certificates), *accepted
 * whether the server completed the handshake.
 */
static enum sm_svid_reason handshake(STACK_OF(X509) * certs, char *id, size_t len, bool *sent,
				     bool *accepted)
{
	SSL *ssl[2] = {SSL_new(client_ctx), SSL_new(sm_creds_server_ctx(server_creds, 0))};
	STACK_OF(X509) *chain = sk_X509_dup(certs);
	bool done[2] = {false, false}, failed[2] = {false, false};
	enum sm_svid_reason r = SM_SVID_PROTOCOL;
	BIO *bio[2] = {NULL, NULL};

	*sent = *accepted = false;
	id[0] = '\0';
	if (!ssl[0] || !ssl[1] || !chain || !BIO_new_bio_pair(&bio[0], 0, &bio[1], 0))
		goto free_ssl;
	for (int i = 0; i < 2; i++)
		SSL_set_bio(ssl[i], bio[i], bio[i]);
	SSL_set_connect_state(ssl[0]);
	SSL_set_accept_state(ssl[1]);
	(void) sk_X509_shift(chain); /* the leaf; the rest is its chain */
	if (!SSL_use_certificate(ssl[0], sk_X509_value(certs, 0)) ||
	    !SSL_use_PrivateKey(ssl[0], client_key) || !SSL_set1_chain(ssl[0], chain))
		goto free_ssl; /* OpenSSL refuses to send them (e.g. a weak chain certificate) */
	for (int turn = 0; turn < HANDSHAKE_TURNS; turn++) {
		for (int i = 0; i < 2; i++) {
			int ret, e;

			if (done[i] || failed[i])
				continue;
			ret = SSL_do_handshake(ssl[i]);
			if (ret == 1) {
				done[i] = true;
				continue;
			}
			e = SSL_get_error(ssl[i], ret);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				failed[i] = true;
		}
		if ((done[0] || failed[0]) && (done[1] || failed[1]))
			break;
	}
	r = sm_tls_peer_result(ssl[1], id, len);
	*sent = done[0];
	*accepted = done[1];
free_ssl:
	sk_X509_free(chain);
	SSL_free(ssl[0]);
	SSL_free(ssl[1]);
	ERR_clear_error();
	return r;
}

/*
 * certs (already re-signed) with the leaf's key replaced by the client's, the
 * leaf re-signed, through the handshake and straight to sm_svid_verify(),
 * both at the current time: the same verdict.
 */
static void check_handshake(STACK_OF(X509) * certs)
{
	char id_direct[SM_SPIFFE_MAX], id_tls[SM_SPIFFE_MAX];
	X509 *copy = X509_dup(sk_X509_value(certs, 0)), *leaf = NULL;
	STACK_OF(X509) *chain = NULL;
	enum sm_svid_reason direct, tls;
	bool sent, accepted;

	if (copy && X509_set_pubkey(copy, client_key))
		leaf = sign_again(copy);
	X509_free(copy);
	if (!leaf)
		return; /* an issuer the fixture does not hold: no valid signature */
	chain = sk_X509_dup(certs);
	if (!chain || !sk_X509_set(chain, 0, leaf))
		goto free_chain;
	direct = sm_svid_verify(leaf, chain, bundles, SM_SVID_PEER_IS_CLIENT, 0, id_direct,
				sizeof(id_direct));
	tls = handshake(chain, id_tls, sizeof(id_tls), &sent, &accepted);
	if (!sent)
		goto free_chain; /* the client refused to send them: no verdict to compare */
	if (tls != direct || strcmp(id_tls, direct == SM_SVID_OK ? id_direct : "") != 0 ||
	    (direct == SM_SVID_OK) != accepted)
		abort();
free_chain:
	sk_X509_free(chain);
	X509_free(leaf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	STACK_OF(X509) *certs = sk_X509_new_null(), *again = sk_X509_new_null();
	const unsigned char *p = data, *end = data + size;

	setup_once();
	if (!certs || !again)
		goto free_stacks;
	while (p < end && sk_X509_num(certs) < MAX_CERTS) {
		X509 *x = d2i_X509(NULL, &p, end - p);

		if (!x)
			break;
		if (!sk_X509_push(certs, x)) {
			X509_free(x);
			goto free_stacks;
		}
	}
	verify_chain(certs);
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *x = resigned(sk_X509_value(certs, i));

		if (!x || !sk_X509_push(again, x)) {
			X509_free(x);
			goto free_stacks;
		}
	}
	if (sk_X509_num(again) > 0) {
		verify_chain(again);
		check_handshake(again);
	}
free_stacks:
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(again, X509_free);
	ERR_clear_error();
	return 0;
}
