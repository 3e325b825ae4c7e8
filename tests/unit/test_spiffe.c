// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/spiffe.c: every kind of bad X.509-SVID, EKU purposes, bundles, time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "check.h"
#include "pki.h"
#include "spiffe.h"

#define TD     "example.org"
#define ID_PFX "spiffe://" TD "/sockmesh/"

/* The PKI of this run (scripts/test-pki.sh), made by the group setup; "" when skipped. */
static int make_pki(void **state)
{
	return pki_make("spiffe", TD);
}

static int remove_pki(void **state)
{
	return pki_remove();
}

/* A credential directory's cert.pem: leaf and its intermediates; the test fails if unreadable. */
struct svid {
	X509 *leaf;
	STACK_OF(X509) * chain;
};

static void svid_free(struct svid *s)
{
	X509_free(s->leaf);
	sk_X509_pop_free(s->chain, X509_free);
	s->leaf = NULL;
	s->chain = NULL;
}

static void svid_read(const char *dir, struct svid *s)
{
	char path[256];
	FILE *f;
	X509 *x;

	snprintf(path, sizeof(path), "%s/%s/cert.pem", pki, dir);
	f = fopen(path, "r");
	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	s->leaf = PEM_read_X509(f, NULL, NULL, NULL);
	s->chain = sk_X509_new_null();
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)))
		sk_X509_push(s->chain, x);
	fclose(f);
	ERR_clear_error();
	ASSERT_NOT_NULL(s->leaf, path);
}

static struct sm_bundles *bundles_of(const char *td, const char *file)
{
	char path[256];
	struct sm_error err = {""};
	struct sm_bundles *b;

	snprintf(path, sizeof(path), "%s/%s", pki, file);
	b = sm_bundles_load(td, path, &err);
	if (!b)
		fail_msg("sm_bundles_load(%s, %s): %s", td, path, err.msg);
	return b;
}

/* Verify DIR's SVID against bundles; returns the reason, id gets the SPIFFE ID. */
static enum sm_svid_reason verify_dir(const char *dir, const struct sm_bundles *b,
				      enum sm_svid_purpose purpose, time_t now, char *id,
				      size_t len)
{
	struct svid s;
	enum sm_svid_reason r;

	svid_read(dir, &s);
	r = sm_svid_verify(s.leaf, s.chain, b, purpose, now, id, len);
	svid_free(&s);
	return r;
}

static void assert_reason(enum sm_svid_reason got, enum sm_svid_reason want, const char *what)
{
	if (got != want)
		fail_msg("%s: got %s, want %s", what, sm_svid_reason_name(got),
			 sm_svid_reason_name(want));
}

static void test_good_leaf(void **state)
{
	struct sm_bundles *b;
	char id[256];

	need_pki();
	b = bundles_of(TD, "ca/root.pem");
	for (int p = SM_SVID_PEER_IS_CLIENT; p <= SM_SVID_PEER_IS_SERVER; p++) {
		strcpy(id, "junk");
		assert_reason(verify_dir("node1", b, p, 0, id, sizeof(id)), SM_SVID_OK, "node1");
		ASSERT_STR_EQ(id, ID_PFX "node/node1", "node1's SPIFFE ID");
	}
	/* without the intermediate there is no path to the root */
	{
		struct svid s;

		svid_read("node2", &s);
		assert_reason(
			sm_svid_verify(s.leaf, NULL, b, SM_SVID_PEER_IS_SERVER, 0, id, sizeof(id)),
			SM_SVID_UNKNOWN_CA, "node2 without its intermediate");
		ASSERT_STR_EQ(id, "", "no ID on failure");
		/* a buffer too small for the ID is refused, not truncated */
		assert_reason(sm_svid_verify(s.leaf, s.chain, b, SM_SVID_PEER_IS_SERVER, 0, id, 10),
			      SM_SVID_BAD_SAN, "ID buffer of 10 bytes");
		ASSERT_STR_EQ(id, "", "no partial ID");
		assert_reason(
			sm_svid_verify(s.leaf, s.chain, b, SM_SVID_PEER_IS_SERVER, 0, NULL, 0),
			SM_SVID_OK, "no ID buffer");
		svid_free(&s);
	}
	assert_reason(sm_svid_verify(NULL, NULL, b, SM_SVID_PEER_IS_CLIENT, 0, id, sizeof(id)),
		      SM_SVID_NO_CERTIFICATE, "no leaf");
	sm_bundles_put(b);
	assert_reason(verify_dir("node1", NULL, SM_SVID_PEER_IS_CLIENT, 0, id, sizeof(id)),
		      SM_SVID_WRONG_TRUST_DOMAIN, "no bundles at all");
}

static const struct {
	const char *kind;
	enum sm_svid_reason reason;
} bad_kinds[] = {
	{"expired", SM_SVID_EXPIRED},
	{"not_yet_valid", SM_SVID_NOT_YET_VALID},
	{"unknown_ca", SM_SVID_UNKNOWN_CA},
	{"wrong_trust_domain", SM_SVID_WRONG_TRUST_DOMAIN},
	{"no_uri_san", SM_SVID_BAD_SAN},
	{"two_uri_sans", SM_SVID_BAD_SAN},
	{"not_spiffe_uri", SM_SVID_BAD_SAN},
	{"leaf_is_ca", SM_SVID_LEAF_IS_CA},
	{"key_cert_sign", SM_SVID_BAD_KEY_USAGE},
	{"crl_sign", SM_SVID_BAD_KEY_USAGE},
	{"no_key_usage", SM_SVID_BAD_KEY_USAGE},
	{"eku_wrong", SM_SVID_BAD_EKU},
	{"rsa_key", SM_SVID_BAD_KEY},
	{"int_expired", SM_SVID_EXPIRED},
	/* weak crypto anywhere in the chain, whatever the process-wide OpenSSL config says */
	{"sha1_signed", SM_SVID_WEAK_SIGNATURE},
	{"int_sha1_signed", SM_SVID_WEAK_SIGNATURE},
	{"int_rsa1024", SM_SVID_WEAK_KEY},
};

static void test_bad_kinds(void **state)
{
	struct sm_bundles *b;
	char dir[64], id[256];

	need_pki();
	b = bundles_of(TD, "ca/root.pem");
	for (size_t i = 0; i < SM_ARRAY_SIZE(bad_kinds); i++) {
		snprintf(dir, sizeof(dir), "bad/%s", bad_kinds[i].kind);
		for (int p = SM_SVID_PEER_IS_CLIENT; p <= SM_SVID_PEER_IS_SERVER; p++) {
			strcpy(id, "junk");
			assert_reason(verify_dir(dir, b, p, 0, id, sizeof(id)), bad_kinds[i].reason,
				      dir);
			ASSERT_STR_EQ(id, "", "no ID for a refused SVID");
		}
	}
	sm_bundles_put(b);
}

static void test_eku_purpose(void **state)
{
	static const struct {
		const char *dir;
		enum sm_svid_reason as_client, as_server;
	} cases[] = {
		{"eku/server_only", SM_SVID_BAD_EKU, SM_SVID_OK},
		{"eku/client_only", SM_SVID_OK, SM_SVID_BAD_EKU},
		{"eku/none", SM_SVID_OK, SM_SVID_OK},
		{"node3", SM_SVID_OK, SM_SVID_OK},
	};
	struct sm_bundles *b;
	char what[96], id[256];

	need_pki();
	b = bundles_of(TD, "ca/root.pem");
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		snprintf(what, sizeof(what), "%s as a client", cases[i].dir);
		assert_reason(
			verify_dir(cases[i].dir, b, SM_SVID_PEER_IS_CLIENT, 0, id, sizeof(id)),
			cases[i].as_client, what);
		snprintf(what, sizeof(what), "%s as a server", cases[i].dir);
		assert_reason(
			verify_dir(cases[i].dir, b, SM_SVID_PEER_IS_SERVER, 0, id, sizeof(id)),
			cases[i].as_server, what);
	}
	sm_bundles_put(b);
}

/* Rotation overlap: a bundle with the old and the new root accepts SVIDs of both. */
static void test_two_roots(void **state)
{
	struct sm_bundles *old_only, *new_only, *both, *added;
	struct sm_error err = {""};
	char path[256], id[256];

	need_pki();
	old_only = bundles_of(TD, "ca/root.pem");
	new_only = bundles_of(TD, "ca/other-root.pem");
	both = bundles_of(TD, "both-roots.pem");
	added = bundles_of(TD, "ca/root.pem");
	snprintf(path, sizeof(path), "%s/ca/other-root.pem", pki);
	ASSERT_EQ(sm_bundles_add(added, TD, path, &err), 0, "adding a second root to a domain");

	assert_reason(verify_dir("node1", old_only, 1, 0, id, sizeof(id)), SM_SVID_OK, "old/old");
	assert_reason(verify_dir("other", old_only, 1, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "new SVID, old root only");
	assert_reason(verify_dir("node1", new_only, 1, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "old SVID, new root only");
	assert_reason(verify_dir("other", new_only, 1, 0, id, sizeof(id)), SM_SVID_OK, "new/new");
	for (int i = 0; i < 2; i++) {
		struct sm_bundles *b = i ? added : both;

		assert_reason(verify_dir("node1", b, 1, 0, id, sizeof(id)), SM_SVID_OK,
			      "old SVID, both roots");
		ASSERT_STR_EQ(id, ID_PFX "node/node1", "old SVID's ID");
		assert_reason(verify_dir("other", b, 0, 0, id, sizeof(id)), SM_SVID_OK,
			      "new SVID, both roots");
		ASSERT_STR_EQ(id, ID_PFX "other", "new SVID's ID");
	}
	sm_bundles_put(old_only);
	sm_bundles_put(new_only);
	sm_bundles_put(both);
	sm_bundles_put(added);
}

/* Federation: a second trust domain with its own roots. */
static void test_federated_domain(void **state)
{
	struct sm_bundles *b;
	struct sm_error err = {""};
	char path[256], id[256];

	need_pki();
	b = bundles_of(TD, "ca/root.pem");
	assert_reason(verify_dir("bad/wrong_trust_domain", b, 0, 0, id, sizeof(id)),
		      SM_SVID_WRONG_TRUST_DOMAIN, "unfederated domain");
	snprintf(path, sizeof(path), "%s/ca/root.pem", pki);
	/* the roots of example.org do not vouch for wrong.test */
	ASSERT_EQ(sm_bundles_add(b, "wrong.test", path, &err), 0, "add wrong.test with our root");
	assert_reason(verify_dir("bad/wrong_trust_domain", b, 0, 0, id, sizeof(id)),
		      SM_SVID_UNKNOWN_CA, "federated domain, wrong roots");
	snprintf(path, sizeof(path), "%s/ca/other-root.pem", pki);
	ASSERT_EQ(sm_bundles_add(b, "wrong.test", path, &err), 0, "add wrong.test's own root");
	assert_reason(verify_dir("bad/wrong_trust_domain", b, 0, 0, id, sizeof(id)), SM_SVID_OK,
		      "federated domain, its roots");
	ASSERT_STR_EQ(id, "spiffe://wrong.test/sockmesh/bad/wrong_trust_domain", "federated ID");
	/* other.root vouches for wrong.test only, not for our own domain */
	assert_reason(verify_dir("bad/unknown_ca", b, 0, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "our domain, a federated domain's root");
	/* a shared set cannot change under its readers */
	sm_bundles_get(b);
	ASSERT_EQ(sm_bundles_add(b, "late.test", path, &err), -EBUSY, "add to a shared set");
	ASSERT_HAS(err.msg, "shared", "message");
	sm_bundles_put(b);
	sm_bundles_put(b);
}

/*
 * A bundle holds only its own trust domain's CAs: a root whose URI SAN names
 * another trust domain is refused with the file, the CA and both domains named,
 * and a refused file adds nothing to a set.
 */
static void test_bundle_foreign_root(void **state)
{
	struct sm_error err = {""};
	char path[256], mixed[256], cmd[600], id[256];
	struct sm_bundles *b;

	need_pki();
	/* without the check, wrong.test's root vouches for our own IDs */
	snprintf(path, sizeof(path), "%s/foreign-bundle.pem", pki);
	errno = 0;
	b = sm_bundles_load(TD, path, &err);
	if (b) {
		assert_reason(verify_dir("foreign", b, 0, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
			      "an SVID of ours issued by wrong.test's root");
		sm_bundles_put(b);
		fail_msg("%s was accepted as a bundle of %s", path, TD);
	}
	ASSERT_EQ(errno, EINVAL, "errno");
	ASSERT_HAS(err.msg, path, "the message names the file");
	ASSERT_HAS(err.msg, "certificate 2", "... which certificate");
	ASSERT_HAS(err.msg, "sockmesh wrong.test root", "... the CA");
	ASSERT_HAS(err.msg, "spiffe://wrong.test", "... the trust domain it names");
	ASSERT_HAS(err.msg, "for " TD, "... the bundle's trust domain");

	/* another root first, then the foreign one: refused whole, the set unchanged */
	snprintf(mixed, sizeof(mixed), "%s/t-mixed.pem", pki);
	snprintf(cmd, sizeof(cmd), "cat '%s/ca/other-root.pem' '%s/ca/foreign-root.pem' >'%s'", pki,
		 pki, mixed);
	ASSERT_EQ(system(cmd), 0, cmd);
	b = bundles_of(TD, "ca/root.pem");
	err.msg[0] = '\0';
	ASSERT_EQ(sm_bundles_add(b, TD, mixed, &err), -EINVAL, "add to a domain of the set");
	ASSERT_HAS(err.msg, "spiffe://wrong.test", "message");
	assert_reason(verify_dir("other", b, 0, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "the good root before the foreign one was not added");
	assert_reason(verify_dir("foreign", b, 0, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "the foreign root was not added");
	assert_reason(verify_dir("node1", b, 0, 0, id, sizeof(id)), SM_SVID_OK, "own root kept");
	/* the same for any refused file: a root, then a leaf */
	snprintf(cmd, sizeof(cmd), "cat '%s/ca/other-root.pem' '%s/node1/cert.pem' >'%s'", pki, pki,
		 mixed);
	ASSERT_EQ(system(cmd), 0, cmd);
	ASSERT_EQ(sm_bundles_add(b, TD, mixed, &err), -EINVAL, "a root, then a leaf");
	ASSERT_HAS(err.msg, "not a CA certificate", "message");
	assert_reason(verify_dir("other", b, 0, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "the root before the leaf was not added");

	/* for its own trust domain the same root is fine, and vouches only there */
	snprintf(path, sizeof(path), "%s/ca/foreign-root.pem", pki);
	ASSERT_EQ(sm_bundles_add(b, "wrong.test", path, &err), 0,
		  "wrong.test's root for wrong.test");
	assert_reason(verify_dir("foreign", b, 0, 0, id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "wrong.test's root does not vouch for " TD);
	sm_bundles_put(b);
	ASSERT_EQ(ERR_peek_error(), 0, "OpenSSL error queue left empty");
}

/* The validity window is judged at now, not at the wall clock, when now is given. */
static void test_time_window(void **state)
{
	time_t t = time(NULL);
	struct sm_bundles *b;
	char id[256];

	need_pki();
	b = bundles_of(TD, "ca/root.pem");
	assert_reason(verify_dir("node1", b, 0, t + 12 * 3600, id, sizeof(id)), SM_SVID_OK,
		      "good leaf in 12 h");
	assert_reason(verify_dir("node1", b, 0, t + 2 * 86400, id, sizeof(id)), SM_SVID_EXPIRED,
		      "good leaf in 2 days");
	assert_reason(verify_dir("node1", b, 0, t - 2 * 3600, id, sizeof(id)),
		      SM_SVID_NOT_YET_VALID, "good leaf 2 h ago");
	assert_reason(verify_dir("bad/expired", b, 0, t - 36 * 3600, id, sizeof(id)), SM_SVID_OK,
		      "expired leaf 36 h ago, when it was valid");
	assert_reason(verify_dir("bad/not_yet_valid", b, 0, t + 36 * 3600, id, sizeof(id)),
		      SM_SVID_OK, "not-yet-valid leaf in 36 h");
	assert_reason(verify_dir("bad/not_yet_valid", b, 0, t + 3 * 86400, id, sizeof(id)),
		      SM_SVID_EXPIRED, "not-yet-valid leaf in 3 days");
	sm_bundles_put(b);
}

static void test_bundles_load_errors(void **state)
{
	static const struct {
		const char *file; /* under the PKI dir; written first when content is set */
		const char *content;
		const char *td;
		int err;
		const char *msg;
	} cases[] = {
		{"missing.pem", NULL, TD, ENOENT, "cannot open"},
		{"node1/cert.pem", NULL, TD, EINVAL, "not a CA certificate"},
		{"empty.pem", "", TD, ENOENT, "no PEM certificate"},
		{"junk.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", TD,
		 EINVAL, "not valid PEM"},
		{"ca/root.pem", NULL, "Example.org", EINVAL, "trust domain 'Example.org'"},
		{"ca/root.pem", NULL, "example.org/path", EINVAL, "is not valid"},
		{"ca/root.pem", NULL, "", EINVAL, "is not valid"},
	};
	struct sm_error err;
	char path[256];

	need_pki();
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct sm_bundles *b;

		snprintf(path, sizeof(path), "%s/%s", pki, cases[i].file);
		if (cases[i].content) {
			FILE *f = fopen(path, "w");

			ASSERT_NOT_NULL(f, path);
			fputs(cases[i].content, f);
			fclose(f);
		}
		err.msg[0] = '\0';
		errno = 0;
		b = sm_bundles_load(cases[i].td, path, &err);
		if (b) {
			sm_bundles_put(b);
			fail_msg("%s (trust domain '%s') was accepted", path, cases[i].td);
		}
		ASSERT_EQ(errno, cases[i].err, path);
		ASSERT_HAS(err.msg, path, "message names the file");
		ASSERT_HAS(err.msg, cases[i].msg, path);
	}
	ASSERT_EQ(ERR_peek_error(), 0, "OpenSSL error queue left empty");
}

/* The SNI name of a SPIFFE ID: a fixed vector (sha256sum), DNS-safe, bounded, checked. */
static void test_sni_name(void **state)
{
	char name[SM_SNI_NAME_LEN], other[SM_SNI_NAME_LEN], small[16], longid[2100];

	(void) state;
	ASSERT_EQ(sm_spiffe_sni_name("spiffe://example.org/ns/prod/sa/web", name, sizeof(name)), 0,
		  "sni name");
	/* printf %s spiffe://example.org/ns/prod/sa/web | sha256sum | cut -c1-32 */
	ASSERT_STR_EQ(name, "6faf9c8ba36dcc9e61068da2de1762b4.svid.sockmesh.invalid", "vector");
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.'))
			fail_msg("not DNS-safe: %s", name);
	ASSERT_EQ(sm_spiffe_sni_name("spiffe://example.org/ns/prod/sa/api", other, sizeof(other)),
		  0, "another ID");
	if (strcmp(other, name) == 0)
		fail_msg("two IDs share a name");
	ASSERT_EQ(sm_spiffe_sni_name("spiffe://example.org/x", small, sizeof(small)), -EINVAL,
		  "buffer too small");
	ASSERT_EQ(sm_spiffe_sni_name("http://example.org/x", name, sizeof(name)), -EINVAL,
		  "not a SPIFFE ID");
	/* the longest IDs still give a short name */
	memset(longid, 'a', sizeof(longid));
	memcpy(longid, "spiffe://example.org/", 21);
	longid[2000] = '\0';
	if (sm_spiffe_sni_name(longid, name, sizeof(name)) == 0 && strlen(name) != 54)
		fail_msg("name length %zu", strlen(name));
}

static void test_names_and_trust_domain(void **state)
{
	static const char *const names[] = {
		"ok",
		"no_client_certificate",
		"expired",
		"not_yet_valid",
		"unknown_ca",
		"wrong_trust_domain",
		"bad_san",
		"leaf_is_ca",
		"bad_key_usage",
		"bad_eku",
		"bad_key",
		"weak_signature",
		"weak_key",
		"identity_mismatch",
		"protocol",
	};
	char td[32];

	ASSERT_EQ(SM_ARRAY_SIZE(names), SM_SVID_REASON_MAX, "a name per reason");
	for (int r = 0; r < SM_SVID_REASON_MAX; r++)
		ASSERT_STR_EQ(sm_svid_reason_name(r), names[r], "reason name");
	ASSERT_STR_EQ(sm_svid_reason_name(SM_SVID_REASON_MAX), "unknown", "out of range");
	ASSERT_STR_EQ(sm_svid_reason_name(-1), "unknown", "negative");

	ASSERT_EQ(sm_spiffe_trust_domain("spiffe://example.org/ns/a", td, sizeof(td)), 0, "td");
	ASSERT_STR_EQ(td, "example.org", "td of an ID");
	ASSERT_EQ(sm_spiffe_trust_domain("spiffe://td.only", td, sizeof(td)), 0, "bare td");
	ASSERT_STR_EQ(td, "td.only", "td of a bare trust domain");
	ASSERT_EQ(sm_spiffe_trust_domain("https://example.org/x", td, sizeof(td)), -EINVAL,
		  "not spiffe");
	ASSERT_EQ(sm_spiffe_trust_domain("spiffe://Example.org/x", td, sizeof(td)), -EINVAL,
		  "uppercase td");
	ASSERT_EQ(sm_spiffe_trust_domain("spiffe://example.org/x", td, 5), -EINVAL,
		  "buffer too small");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_leaf),
		cmocka_unit_test(test_bad_kinds),
		cmocka_unit_test(test_eku_purpose),
		cmocka_unit_test(test_two_roots),
		cmocka_unit_test(test_federated_domain),
		cmocka_unit_test(test_time_window),
		cmocka_unit_test(test_bundles_load_errors),
		cmocka_unit_test(test_bundle_foreign_root),
		cmocka_unit_test(test_names_and_trust_domain),
		cmocka_unit_test(test_sni_name),
	};

	return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
