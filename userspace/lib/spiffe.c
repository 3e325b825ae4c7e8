// SPDX-License-Identifier: Apache-2.0
/* X.509-SVID verification (SPIFFE X.509-SVID standard) and per-trust-domain trust bundles. */
#include "spiffe.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "catalog.h"

/* Bounds on what a bundle file may hold, so a wrong file cannot make us read forever. */
#define BUNDLE_CERTS_MAX 64
#define BUNDLE_TDS_MAX	 64
/* Longest chain accepted: leaf, intermediates, root. */
#define CHAIN_DEPTH_MAX 8

struct sm_bundle_td {
	char td[SM_SPIFFE_MAX];
	X509_STORE *store;
};

struct sm_bundles {
	atomic_int refs;
	unsigned int n;
	struct sm_bundle_td tds[BUNDLE_TDS_MAX];
};

static const char *const reason_names[SM_SVID_REASON_MAX] = {
	[SM_SVID_OK] = "ok",
	[SM_SVID_NO_CERTIFICATE] = "no_client_certificate",
	[SM_SVID_EXPIRED] = "expired",
	[SM_SVID_NOT_YET_VALID] = "not_yet_valid",
	[SM_SVID_UNKNOWN_CA] = "unknown_ca",
	[SM_SVID_WRONG_TRUST_DOMAIN] = "wrong_trust_domain",
	[SM_SVID_BAD_SAN] = "bad_san",
	[SM_SVID_LEAF_IS_CA] = "leaf_is_ca",
	[SM_SVID_BAD_KEY_USAGE] = "bad_key_usage",
	[SM_SVID_BAD_EKU] = "bad_eku",
	[SM_SVID_BAD_KEY] = "bad_key",
	[SM_SVID_WEAK_SIGNATURE] = "weak_signature",
	[SM_SVID_WEAK_KEY] = "weak_key",
	[SM_SVID_IDENTITY_MISMATCH] = "identity_mismatch",
	[SM_SVID_PROTOCOL] = "protocol",
};

const char *sm_svid_reason_name(enum sm_svid_reason r)
{
	if ((unsigned int) r >= SM_SVID_REASON_MAX)
		return "unknown";
	return reason_names[r];
}

int sm_spiffe_trust_domain(const char *spiffe_id, char *td, size_t len)
{
	size_t n;

	if (!sm_spiffe_id_valid(spiffe_id))
		return -EINVAL;
	n = strcspn(spiffe_id + 9, "/");
	if (n >= len)
		return -EINVAL;
	memcpy(td, spiffe_id + 9, n);
	td[n] = '\0';
	return 0;
}

int sm_spiffe_sni_name(const char *spiffe_id, char *out, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!sm_spiffe_id_valid(spiffe_id) || len < SM_SNI_NAME_LEN ||
	    !EVP_Digest(spiffe_id, strlen(spiffe_id), md, &mdlen, EVP_sha256(), NULL) || mdlen < 16)
		return -EINVAL;
	for (unsigned int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	snprintf(out + 32, len - 32, ".svid.sockmesh.invalid");
	return 0;
}

/* A trust domain name as the SPIFFE ID standard allows it (no scheme, no path). */
static bool trust_domain_valid(const char *td)
{
	char id[SM_SPIFFE_MAX];

	if (!td || !*td || strchr(td, '/'))
		return false;
	if (snprintf(id, sizeof(id), "spiffe://%s", td) >= (int) sizeof(id))
		return false;
	return sm_spiffe_id_valid(id);
}

/* The last OpenSSL error as text for a message, and an empty queue afterwards. */
static const char *ossl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *s = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return s ? s : "unknown error";
}

static struct sm_bundle_td *bundle_find(const struct sm_bundles *b, const char *td)
{
	for (unsigned int i = 0; i < b->n; i++)
		if (strcmp(b->tds[i].td, td) == 0)
			return (struct sm_bundle_td *) &b->tds[i];
	return NULL;
}

/* A certificate's subject for a message ("O = x, CN = y", control bytes escaped). */
static void cert_subject(X509 *x, char *buf, size_t len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n = -1;

	if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_ONELINE) >= 0)
		n = BIO_read(bio, buf, (int) len - 1);
	BIO_free(bio);
	if (n < 0)
		n = snprintf(buf, len, "no readable subject");
	buf[n] = '\0';
}

/* A URI from a certificate, printable for a message: bytes outside ASCII 0x20-0x7e become '?'. */
static void printable_uri(const ASN1_IA5STRING *uri, char *buf, size_t len)
{
	const unsigned char *p = ASN1_STRING_get0_data(uri);
	size_t n = (size_t) ASN1_STRING_length(uri), i;

	for (i = 0; i < n && i + 1 < len; i++)
		buf[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char) p[i] : '?';
	buf[i] = '\0';
}

/*
 * A CA may carry its trust domain's SPIFFE ID as a URI SAN (X.509-SVID
 * standard, signing certificates). When any spiffe: URI it has is not a valid
 * ID of td, it is another domain's CA: false, with that URI in uri[len]. A
 * subjectAltName that cannot be read, or appears twice, counts as foreign.
 */
static bool ca_of_trust_domain(X509 *x, const char *td, char *uri, size_t len)
{
	char id[SM_SPIFFE_MAX], its_td[SM_SPIFFE_MAX];
	GENERAL_NAMES *names;
	bool ok = true;
	int crit = -1;

	names = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	if (!names) {
		snprintf(uri, len, "unreadable or repeated");
		return crit == -1; /* -1: no SAN at all, which names no domain */
	}
	for (int i = 0; ok && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *u = gn->d.uniformResourceIdentifier;
		int n;

		if (gn->type != GEN_URI)
			continue;
		n = ASN1_STRING_length(u);
		/* the scheme is case-insensitive to a URI parser: SPIFFE:// is caught too */
		if (n < 7 ||
		    strncasecmp((const char *) ASN1_STRING_get0_data(u), "spiffe:", 7) != 0)
			continue;
		printable_uri(u, uri, len);
		if ((size_t) n >= sizeof(id) ||
		    memchr(ASN1_STRING_get0_data(u), '\0', (size_t) n)) {
			ok = false;
			break;
		}
		memcpy(id, ASN1_STRING_get0_data(u), (size_t) n);
		id[n] = '\0';
		ok = sm_spiffe_trust_domain(id, its_td, sizeof(its_td)) == 0 &&
		     strcmp(its_td, td) == 0;
	}
	GENERAL_NAMES_free(names);
	return ok;
}

/* Certificate n of bundle path may be a root of trust domain td: 0, or -EINVAL with err set. */
static int root_check(X509 *x, const char *td, const char *path, int n, struct sm_error *err)
{
	char subject[256], uri[SM_SPIFFE_MAX];

	if (!X509_check_ca(x)) {
		sm_error_set(err,
			     "%s: certificate %d is not a CA certificate (a bundle holds "
			     "the trust domain's root CAs)",
			     path, n);
		return -EINVAL;
	}
	if (!ca_of_trust_domain(x, td, uri, sizeof(uri))) {
		cert_subject(x, subject, sizeof(subject));
		sm_error_set(err,
			     "%s: certificate %d (%s) is a CA of another trust domain "
			     "(subjectAltName: %s), but this bundle is for %s: a bundle "
			     "holds only its own trust domain's roots (remove that CA from "
			     "the file; another trust domain is federated with a bundle of "
			     "its own)",
			     path, n, subject, uri, td);
		return -EINVAL;
	}
	return 0;
}

/*
 * Read every PEM certificate of path as a root of trust domain td: at least
 * one, each a CA certificate naming no other trust domain. Only when the whole
 * file passes do they go into store, so a refused file changes no set (short
 * of running out of memory half way). 0 or -errno with err set.
 */
static int load_roots(X509_STORE *store, const char *td, const char *path, struct sm_error *err)
{
	STACK_OF(X509) * roots;
	FILE *f = fopen(path, "r");
	int n = 0, ret = 0;

	if (!f) {
		ret = -errno;
		sm_error_set(err,
			     "%s: cannot open the trust bundle: %s (write the trust domain's "
			     "root certificates there as PEM)",
			     path, strerror(errno));
		return ret;
	}
	roots = sk_X509_new_null();
	if (!roots) {
		sm_error_set(err, "%s: out of memory", path);
		ret = -ENOMEM;
		goto close_file;
	}
	ERR_clear_error();
	for (;;) {
		X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
		unsigned long e;

		if (!x) {
			e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
				ERR_clear_error();
				break;
			}
			sm_error_set(err, "%s: certificate %d is not valid PEM: %s", path, n + 1,
				     ossl_reason());
			ret = -EINVAL;
			goto free_roots;
		}
		if (n >= BUNDLE_CERTS_MAX) {
			X509_free(x);
			sm_error_set(err,
				     "%s: more than %d certificates (a bundle holds roots only)",
				     path, BUNDLE_CERTS_MAX);
			ret = -E2BIG;
			goto free_roots;
		}
		n++;
		ret = root_check(x, td, path, n, err);
		if (ret) {
			X509_free(x);
			goto free_roots;
		}
		if (!sk_X509_push(roots, x)) {
			X509_free(x);
			sm_error_set(err, "%s: out of memory", path);
			ret = -ENOMEM;
			goto free_roots;
		}
	}
	if (n == 0) {
		sm_error_set(err,
			     "%s: no PEM certificate found (write the trust domain's root "
			     "certificates there as PEM)",
			     path);
		ret = -ENOENT;
		goto free_roots;
	}
	for (int i = 0; i < n; i++) {
		/* the store takes its own reference; a duplicate is not an error */
		if (!X509_STORE_add_cert(store, sk_X509_value(roots, i))) {
			sm_error_set(err, "%s: certificate %d: %s", path, i + 1, ossl_reason());
			ret = -ENOMEM;
			break;
		}
	}
free_roots:
	sk_X509_pop_free(roots, X509_free);
close_file:
	fclose(f);
	ERR_clear_error();
	return ret;
}

int sm_bundles_add(struct sm_bundles *b, const char *trust_domain, const char *pem_path,
		   struct sm_error *err)
{
	struct sm_bundle_td *slot;
	X509_STORE *store;
	int ret;

	if (!b || !pem_path) {
		sm_error_set(err, "trust bundle: no bundle set or no file given");
		return -EINVAL;
	}
	if (!trust_domain_valid(trust_domain)) {
		sm_error_set(err,
			     "%s: trust domain '%.100s' is not valid (use lowercase a-z, "
			     "0-9, '.', '-', '_', e.g. example.org)",
			     pem_path, trust_domain ? trust_domain : "");
		return -EINVAL;
	}
	if (atomic_load(&b->refs) > 1) {
		sm_error_set(err,
			     "%s: the bundle set is already shared; add every trust domain "
			     "before handing it out",
			     pem_path);
		return -EBUSY;
	}
	/* A domain given twice gets the roots of both files (rotation overlap). */
	slot = bundle_find(b, trust_domain);
	if (slot)
		return load_roots(slot->store, trust_domain, pem_path, err);
	if (b->n >= BUNDLE_TDS_MAX) {
		sm_error_set(err, "%s: more than %d trust domains", pem_path, BUNDLE_TDS_MAX);
		return -E2BIG;
	}
	store = X509_STORE_new();
	if (!store) {
		sm_error_set(err, "%s: out of memory", pem_path);
		return -ENOMEM;
	}
	ret = load_roots(store, trust_domain, pem_path, err);
	if (ret) {
		X509_STORE_free(store);
		return ret;
	}
	slot = &b->tds[b->n++];
	sm_strlcpy(slot->td, trust_domain, sizeof(slot->td));
	slot->store = store;
	return 0;
}

struct sm_bundles *sm_bundles_load(const char *trust_domain, const char *pem_path,
				   struct sm_error *err)
{
	struct sm_bundles *b = calloc(1, sizeof(*b));
	int ret;

	if (!b) {
		sm_error_set(err, "%s: out of memory", pem_path ? pem_path : "trust bundle");
		errno = ENOMEM;
		return NULL;
	}
	atomic_init(&b->refs, 1);
	ret = sm_bundles_add(b, trust_domain, pem_path, err);
	if (ret) {
		sm_bundles_put(b);
		errno = -ret;
		return NULL;
	}
	return b;
}

struct sm_bundles *sm_bundles_get(struct sm_bundles *b)
{
	if (b)
		atomic_fetch_add(&b->refs, 1);
	return b;
}

void sm_bundles_put(struct sm_bundles *b)
{
	if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	for (unsigned int i = 0; i < b->n; i++)
		X509_STORE_free(b->tds[i].store);
	free(b);
}

/*
 * The leaf's SPIFFE ID: exactly one URI SAN, a valid SPIFFE ID with a path
 * (a leaf's ID is never the bare trust domain). SM_SVID_OK or SM_SVID_BAD_SAN.
 */
static enum sm_svid_reason leaf_spiffe_id(X509 *leaf, char *id, size_t len)
{
	GENERAL_NAMES *names;
	const ASN1_IA5STRING *uri = NULL;
	enum sm_svid_reason r = SM_SVID_BAD_SAN;
	int crit = -1, nuri = 0, n, ulen;

	/* NULL also when the extension appears twice (crit == -2): refused either way */
	names = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	if (!names)
		return SM_SVID_BAD_SAN;
	n = sk_GENERAL_NAME_num(names);
	for (int i = 0; i < n; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

		if (gn->type == GEN_URI) {
			uri = gn->d.uniformResourceIdentifier;
			nuri++;
		}
	}
	if (nuri != 1)
		goto free_names;
	ulen = ASN1_STRING_length(uri);
	/* an embedded NUL would make the C string differ from what was signed */
	if (ulen <= 0 || (size_t) ulen >= len || (size_t) ulen >= SM_SPIFFE_MAX ||
	    memchr(ASN1_STRING_get0_data(uri), '\0', (size_t) ulen))
		goto free_names;
	memcpy(id, ASN1_STRING_get0_data(uri), (size_t) ulen);
	id[ulen] = '\0';
	if (sm_spiffe_id_valid(id) && strchr(id + 9, '/'))
		r = SM_SVID_OK;
	else
		id[0] = '\0';
free_names:
	GENERAL_NAMES_free(names);
	return r;
}

static enum sm_svid_reason map_verify_error(int e)
{
	switch (e) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return SM_SVID_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return SM_SVID_NOT_YET_VALID;
	case X509_V_ERR_CA_MD_TOO_WEAK: /* any certificate's signature, leaf included */
		return SM_SVID_WEAK_SIGNATURE;
	case X509_V_ERR_EE_KEY_TOO_SMALL:
	case X509_V_ERR_CA_KEY_TOO_SMALL: /* an intermediate's or the root's key */
		return SM_SVID_WEAK_KEY;
	default:
		/* no path to a root of the bundle, a bad signature, a bad intermediate */
		return SM_SVID_UNKNOWN_CA;
	}
}

/*
 * RFC 5280 path validation of leaf to the trust domain's roots, at now (0:
 * current time), at SM_SVID_SECURITY_LEVEL: OpenSSL then checks the key of
 * every certificate of the path (the root's too) and the signature of every
 * one but the root's self-signature, which nothing relies on.
 */
static enum sm_svid_reason verify_chain(X509 *leaf, STACK_OF(X509) * chain, X509_STORE *store,
					time_t now)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	enum sm_svid_reason r = SM_SVID_UNKNOWN_CA;

	if (!ctx)
		return SM_SVID_UNKNOWN_CA;
	if (!X509_STORE_CTX_init(ctx, store, leaf, chain))
		goto free_ctx;
	X509_STORE_CTX_set_depth(ctx, CHAIN_DEPTH_MAX);
	X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx), SM_SVID_SECURITY_LEVEL);
	if (now)
		X509_STORE_CTX_set_time(ctx, 0, now);
	/* no X509_V_FLAG_PARTIAL_CHAIN: only the bundle's roots are anchors */
	if (X509_verify_cert(ctx) == 1)
		r = SM_SVID_OK;
	else
		r = map_verify_error(X509_STORE_CTX_get_error(ctx));
free_ctx:
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return r;
}

static bool key_is_p256(X509 *leaf)
{
	EVP_PKEY *pk = X509_get0_pubkey(leaf);
	char group[64];
	size_t glen = 0;

	if (!pk || !EVP_PKEY_is_a(pk, "EC"))
		return false;
	if (!EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen))
		return false;
	return strcmp(group, SN_X9_62_prime256v1) == 0 || strcmp(group, "P-256") == 0;
}

/* The SVID rules for the leaf itself, once its chain is known good. */
static enum sm_svid_reason check_leaf(X509 *leaf, enum sm_svid_purpose purpose)
{
	uint32_t flags = X509_get_extension_flags(leaf);
	uint32_t ku = X509_get_key_usage(leaf);
	uint32_t want_xku = purpose == SM_SVID_PEER_IS_SERVER ? XKU_SSL_SERVER : XKU_SSL_CLIENT;

	if (flags & EXFLAG_INVALID)
		return SM_SVID_BAD_SAN;
	if (flags & EXFLAG_CA)
		return SM_SVID_LEAF_IS_CA;
	/* UINT32_MAX means "no keyUsage extension": the standard requires one */
	if (ku == UINT32_MAX || !(ku & KU_DIGITAL_SIGNATURE) ||
	    (ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)))
		return SM_SVID_BAD_KEY_USAGE;
	/* anyExtendedKeyUsage alone does not count: the purpose must be named */
	if ((flags & EXFLAG_XKUSAGE) && !(X509_get_extended_key_usage(leaf) & want_xku))
		return SM_SVID_BAD_EKU;
	if (!key_is_p256(leaf))
		return SM_SVID_BAD_KEY;
	return SM_SVID_OK;
}

enum sm_svid_reason sm_svid_verify(X509 *leaf, STACK_OF(X509) * chain,
				   const struct sm_bundles *bundles, enum sm_svid_purpose purpose,
				   time_t now, char *spiffe_id, size_t len)
{
	char id[SM_SPIFFE_MAX], td[SM_SPIFFE_MAX];
	const struct sm_bundle_td *b;
	enum sm_svid_reason r;

	if (spiffe_id && len)
		spiffe_id[0] = '\0';
	if (!leaf)
		return SM_SVID_NO_CERTIFICATE;
	/* the ID first: its trust domain picks the roots the chain must lead to */
	r = leaf_spiffe_id(leaf, id, sizeof(id));
	if (r != SM_SVID_OK)
		goto out;
	if (sm_spiffe_trust_domain(id, td, sizeof(td)) || !bundles ||
	    !(b = bundle_find(bundles, td))) {
		r = SM_SVID_WRONG_TRUST_DOMAIN;
		goto out;
	}
	r = verify_chain(leaf, chain, b->store, now);
	if (r != SM_SVID_OK)
		goto out;
	r = check_leaf(leaf, purpose);
	if (r == SM_SVID_OK && spiffe_id && sm_strlcpy(spiffe_id, id, len)) {
		spiffe_id[0] = '\0';
		r = SM_SVID_BAD_SAN; /* the caller's buffer cannot hold it */
	}
out:
	ERR_clear_error();
	return r;
}
