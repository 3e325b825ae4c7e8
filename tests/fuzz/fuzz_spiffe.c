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
 * Besides "no crash, no leak, no undefined behaviour", it checks that:
 *  - the reason is one verification gives (not a handshake's), with a name;
 *  - a SPIFFE ID comes back exactly when the verdict is OK, and then it is a
 *    valid ID with a path, in a trust domain with a bundle, found in the
 *    leaf's bytes, with an SNI name, and the leaf is an ECDSA P-256 non-CA
 *    valid at the time;
 *  - the two roles' verdicts differ only by bad_eku;
 *  - a buffer too small for the ID gives bad_san and an empty string.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "catalog.h"
#include "spiffe.h"
#include "spiffe_pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* More than a peer's chain needs (the daemon accepts depth 8). */
#define MAX_CERTS 10
#define NISSUERS  (sizeof(spiffe_pki_issuers) / sizeof(spiffe_pki_issuers[0]))

static struct sm_bundles *bundles;
static X509 *issuer_cert[NISSUERS];
static EVP_PKEY *issuer_key[NISSUERS];

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
 * x re-signed by its issuer if the fixture holds it, and passed through DER
 * as a peer would send it; else x. A new reference either way.
 */
static X509 *resigned(X509 *x)
{
	const unsigned char *p;
	unsigned char *der = NULL;
	X509 *copy, *back = NULL;
	int n;

	for (size_t i = 0; i < NISSUERS; i++) {
		if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(issuer_cert[i])))
			continue;
		copy = X509_dup(x);
		if (copy && X509_sign(copy, issuer_key[i], EVP_sha256()) > 0 &&
		    (n = i2d_X509(copy, &der)) > 0) {
			p = der;
			back = d2i_X509(NULL, &p, n);
		}
		OPENSSL_free(der);
		X509_free(copy);
		break;
	}
	if (!back && X509_up_ref(x))
		back = x;
	return back;
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
	if (sk_X509_num(again) > 0)
		verify_chain(again);
free_stacks:
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(again, X509_free);
	ERR_clear_error();
	return 0;
}
