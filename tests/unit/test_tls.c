// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/tlsctx.c: real in-process TLS handshakes over a socketpair. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "check.h"
#include "pki.h"
#include "tlsctx.h"

#define TD     "example.org"
#define ID_PFX "spiffe://" TD "/sockmesh/"
/* Each side gets this many turns; a handshake needs a handful. */
#define HANDSHAKE_TURNS 500

/* The PKI of this run (scripts/test-pki.sh), made by the group setup. */

/* What each test may leave behind, released by teardown even when a check fails. */
static struct {
	struct sm_creds *creds[2];
	SSL_CTX *ctx[2];
	SSL *ssl[2];
	int fds[2];
} t = {.fds = {-1, -1}};

static int make_pki(void **state)
{
	return pki_make("tls", TD);
}

static int remove_pki(void **state)
{
	return pki_remove();
}

static int release(void **state)
{
	for (int i = 0; i < 2; i++) {
		SSL_free(t.ssl[i]);
		SSL_CTX_free(t.ctx[i]);
		sm_creds_put(t.creds[i]);
		if (t.fds[i] >= 0)
			close(t.fds[i]);
		t.ssl[i] = NULL;
		t.ctx[i] = NULL;
		t.creds[i] = NULL;
		t.fds[i] = -1;
	}
	ERR_clear_error();
	return 0;
}

static void assert_reason(enum sm_svid_reason got, enum sm_svid_reason want, const char *what)
{
	if (got != want)
		fail_msg("%s: got %s, want %s", what, sm_svid_reason_name(got),
			 sm_svid_reason_name(want));
}

static struct sm_creds *load(const char *dir)
{
	struct sm_error err = {""};
	struct sm_creds *c;
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", pki, dir);
	c = sm_creds_load(path, 2, &err);
	if (!c)
		fail_msg("sm_creds_load(%s): %s", path, err.msg);
	return c;
}

static int alpn_h2_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		      const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h2[] = {2, 'h', '2'};
	unsigned char *sel = NULL;

	if (SSL_select_next_proto(&sel, outlen, h2, sizeof(h2), in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * A plain OpenSSL context that does not verify its peer and presents DIR's
 * certificate (NULL: none): the misbehaving or badly credentialed other side.
 * Its security level is 0, so it can present SHA-1-signed or RSA 1024 chains.
 */
static SSL_CTX *raw_ctx(bool server, const char *dir, int max_version, bool alpn)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	char path[256];

	ASSERT_NOT_NULL(ctx, "SSL_CTX_new");
	SSL_CTX_set_security_level(ctx, 0);
	SSL_CTX_set_max_proto_version(ctx, max_version);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (dir) {
		snprintf(path, sizeof(path), "%s/%s/cert.pem", pki, dir);
		ASSERT_EQ(SSL_CTX_use_certificate_chain_file(ctx, path), 1, path);
		snprintf(path, sizeof(path), "%s/%s/key.pem", pki, dir);
		ASSERT_EQ(SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM), 1, path);
	}
	if (alpn && server)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_h2_cb, NULL);
	if (alpn && !server)
		ASSERT_EQ(SSL_CTX_set_alpn_protos(ctx, (const unsigned char *) "\x02h2", 3), 0,
			  "client ALPN");
	return ctx;
}

struct outcome {
	bool client_ok, server_ok;
};

/*
 * Handshake t.ssl[0] (client) with t.ssl[1] (server) over a non-blocking
 * socketpair in this thread, turn by turn. A TLS 1.3 client finishes before
 * the server has judged its certificate, so the client then reads once to
 * learn whether the server refused it.
 */
static struct outcome handshake(SSL_CTX *client, SSL_CTX *server, const char *expect)
{
	struct outcome o = {false, false};
	bool done[2] = {false, false}, failed[2] = {false, false};

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, t.fds), 0, "socketpair");
	t.ssl[0] = SSL_new(client);
	t.ssl[1] = SSL_new(server);
	ASSERT_NOT_NULL(t.ssl[0], "client SSL");
	ASSERT_NOT_NULL(t.ssl[1], "server SSL");
	if (expect)
		ASSERT_EQ(sm_tls_expect_peer(t.ssl[0], expect), 0, "sm_tls_expect_peer");
	SSL_set_fd(t.ssl[0], t.fds[0]);
	SSL_set_fd(t.ssl[1], t.fds[1]);
	SSL_set_connect_state(t.ssl[0]);
	SSL_set_accept_state(t.ssl[1]);
	for (int turn = 0; turn < HANDSHAKE_TURNS; turn++) {
		for (int i = 0; i < 2; i++) {
			int ret, e;

			if (done[i] || failed[i])
				continue;
			ret = SSL_do_handshake(t.ssl[i]);
			if (ret == 1) {
				done[i] = true;
				continue;
			}
			e = SSL_get_error(t.ssl[i], ret);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				failed[i] = true;
		}
		if ((done[0] || failed[0]) && (done[1] || failed[1]))
			break;
	}
	ERR_clear_error();
	o.server_ok = done[1];
	o.client_ok = done[0];
	if (done[0]) {
		char b;
		int ret = SSL_read(t.ssl[0], &b, 1);

		/* the server's refusal arrives as an alert; a good server just has nothing to say
		 */
		if (ret <= 0 && SSL_get_error(t.ssl[0], ret) != SSL_ERROR_WANT_READ)
			o.client_ok = false;
		ERR_clear_error();
	}
	return o;
}

static void test_good_handshake(void **state)
{
	const unsigned char *alpn = NULL;
	unsigned int alpn_len = 0;
	struct outcome o;
	char id[256];
	const char *suite;

	need_pki();
	t.creds[0] = load("node1");
	t.creds[1] = load("node2");
	ASSERT_STR_EQ(sm_creds_spiffe_id(t.creds[0]), ID_PFX "node/node1", "own ID");
	o = handshake(sm_creds_client_ctx(t.creds[0], 1), sm_creds_server_ctx(t.creds[1], 1),
		      ID_PFX "node/node2");
	ASSERT_EQ(o.client_ok, true, "client handshake");
	ASSERT_EQ(o.server_ok, true, "server handshake");
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(SSL_version(t.ssl[i]), TLS1_3_VERSION, "TLS 1.3");
		suite = SSL_CIPHER_standard_name(SSL_get_current_cipher(t.ssl[i]));
		if (strcmp(suite, "TLS_AES_128_GCM_SHA256") != 0 &&
		    strcmp(suite, "TLS_AES_256_GCM_SHA384") != 0)
			fail_msg("cipher suite %s is not AES-GCM", suite);
		SSL_get0_alpn_selected(t.ssl[i], &alpn, &alpn_len);
		ASSERT_EQ(alpn_len, 2, "ALPN length");
		ASSERT_EQ(memcmp(alpn, "h2", 2), 0, "ALPN h2");
		ASSERT_EQ(SSL_session_reused(t.ssl[i]), 0, "no resumption");
	}
	/* no SNI on the HBONE hop */
	ASSERT_EQ(SSL_get_servername(t.ssl[1], TLSEXT_NAMETYPE_host_name) == NULL, true, "no SNI");
	/* no ticket: the client's session cannot be resumed */
	ASSERT_EQ(SSL_SESSION_is_resumable(SSL_get0_session(t.ssl[0])), 0, "no session ticket");
	assert_reason(sm_tls_peer_result(t.ssl[0], id, sizeof(id)), SM_SVID_OK, "client's view");
	ASSERT_STR_EQ(id, ID_PFX "node/node2", "client sees the server's ID");
	assert_reason(sm_tls_peer_result(t.ssl[1], id, sizeof(id)), SM_SVID_OK, "server's view");
	ASSERT_STR_EQ(id, ID_PFX "node/node1", "server sees the client's ID");
	/* data flows */
	ASSERT_EQ(SSL_write(t.ssl[0], "ping", 4), 4, "client write");
	{
		char buf[8] = "";

		ASSERT_EQ(SSL_read(t.ssl[1], buf, sizeof(buf)), 4, "server read");
		ASSERT_EQ(memcmp(buf, "ping", 4), 0, "payload");
	}
}

static const struct {
	const char *kind;
	enum sm_svid_reason reason;
} bad_kinds[] = {
	{"bad/expired", SM_SVID_EXPIRED},
	{"bad/not_yet_valid", SM_SVID_NOT_YET_VALID},
	{"bad/unknown_ca", SM_SVID_UNKNOWN_CA},
	{"bad/wrong_trust_domain", SM_SVID_WRONG_TRUST_DOMAIN},
	{"bad/no_uri_san", SM_SVID_BAD_SAN},
	{"bad/two_uri_sans", SM_SVID_BAD_SAN},
	{"bad/not_spiffe_uri", SM_SVID_BAD_SAN},
	{"bad/leaf_is_ca", SM_SVID_LEAF_IS_CA},
	{"bad/key_cert_sign", SM_SVID_BAD_KEY_USAGE},
	{"bad/crl_sign", SM_SVID_BAD_KEY_USAGE},
	{"bad/no_key_usage", SM_SVID_BAD_KEY_USAGE},
	{"bad/eku_wrong", SM_SVID_BAD_EKU},
	{"bad/rsa_key", SM_SVID_BAD_KEY},
	{"bad/int_expired", SM_SVID_EXPIRED},
	{"bad/sha1_signed", SM_SVID_WEAK_SIGNATURE},
	{"bad/int_sha1_signed", SM_SVID_WEAK_SIGNATURE},
	{"bad/int_rsa1024", SM_SVID_WEAK_KEY},
	/* good SVIDs used for the wrong purpose */
	{"eku/server_only", SM_SVID_BAD_EKU}, /* as a client only */
	{"eku/client_only", SM_SVID_BAD_EKU}, /* as a server only */
};

static void test_bad_client_cert(void **state)
{
	char what[96], id[256];
	struct outcome o;

	need_pki();
	t.creds[1] = load("node2");
	for (size_t i = 0; i < SM_ARRAY_SIZE(bad_kinds); i++) {
		if (strcmp(bad_kinds[i].kind, "eku/client_only") == 0)
			continue;
		t.ctx[0] = raw_ctx(false, bad_kinds[i].kind, TLS1_3_VERSION, true);
		o = handshake(t.ctx[0], sm_creds_server_ctx(t.creds[1], 0), NULL);
		snprintf(what, sizeof(what), "client with %s: server handshake", bad_kinds[i].kind);
		ASSERT_EQ(o.server_ok, false, what);
		ASSERT_EQ(o.client_ok, false, "the client learns of the refusal");
		snprintf(what, sizeof(what), "client with %s: server's reason", bad_kinds[i].kind);
		assert_reason(sm_tls_peer_result(t.ssl[1], id, sizeof(id)), bad_kinds[i].reason,
			      what);
		ASSERT_STR_EQ(id, "", "no peer ID");
		SSL_free(t.ssl[0]);
		SSL_free(t.ssl[1]);
		SSL_CTX_free(t.ctx[0]);
		close(t.fds[0]);
		close(t.fds[1]);
		t.ssl[0] = t.ssl[1] = NULL;
		t.ctx[0] = NULL;
		t.fds[0] = t.fds[1] = -1;
	}
}

static void test_bad_server_cert(void **state)
{
	char what[96], id[256];
	struct outcome o;

	need_pki();
	t.creds[0] = load("node1");
	for (size_t i = 0; i < SM_ARRAY_SIZE(bad_kinds); i++) {
		if (strcmp(bad_kinds[i].kind, "eku/server_only") == 0)
			continue;
		t.ctx[1] = raw_ctx(true, bad_kinds[i].kind, TLS1_3_VERSION, true);
		o = handshake(sm_creds_client_ctx(t.creds[0], 0), t.ctx[1], NULL);
		snprintf(what, sizeof(what), "server with %s: client handshake", bad_kinds[i].kind);
		ASSERT_EQ(o.client_ok, false, what);
		snprintf(what, sizeof(what), "server with %s: client's reason", bad_kinds[i].kind);
		assert_reason(sm_tls_peer_result(t.ssl[0], id, sizeof(id)), bad_kinds[i].reason,
			      what);
		ASSERT_STR_EQ(id, "", "no peer ID");
		SSL_free(t.ssl[0]);
		SSL_free(t.ssl[1]);
		SSL_CTX_free(t.ctx[1]);
		close(t.fds[0]);
		close(t.fds[1]);
		t.ssl[0] = t.ssl[1] = NULL;
		t.ctx[1] = NULL;
		t.fds[0] = t.fds[1] = -1;
	}
}

static void test_no_client_cert(void **state)
{
	struct outcome o;
	char id[256];

	need_pki();
	t.creds[1] = load("node2");
	t.ctx[0] = raw_ctx(false, NULL, TLS1_3_VERSION, true);
	o = handshake(t.ctx[0], sm_creds_server_ctx(t.creds[1], 0), NULL);
	ASSERT_EQ(o.server_ok, false, "server handshake");
	assert_reason(sm_tls_peer_result(t.ssl[1], id, sizeof(id)), SM_SVID_NO_CERTIFICATE,
		      "server's reason");
}

static void test_identity_mismatch(void **state)
{
	struct outcome o;
	char id[256];

	need_pki();
	t.creds[0] = load("node1");
	t.creds[1] = load("node2");
	o = handshake(sm_creds_client_ctx(t.creds[0], 0), sm_creds_server_ctx(t.creds[1], 0),
		      ID_PFX "node/node3");
	ASSERT_EQ(o.client_ok, false, "client handshake");
	ASSERT_EQ(o.server_ok, false, "server handshake");
	assert_reason(sm_tls_peer_result(t.ssl[0], id, sizeof(id)), SM_SVID_IDENTITY_MISMATCH,
		      "client's reason");
	ASSERT_STR_EQ(id, ID_PFX "node/node2", "the ID the server has");
	/* the server never got to judge the client */
	assert_reason(sm_tls_peer_result(t.ssl[1], id, sizeof(id)), SM_SVID_PROTOCOL,
		      "server's reason");

	ASSERT_EQ(sm_tls_expect_peer(t.ssl[1], ID_PFX "node/node1"), -EINVAL, "server side");
	ASSERT_EQ(sm_tls_expect_peer(t.ssl[0], "spiffe://Bad/x"), -EINVAL, "invalid ID");
	ASSERT_EQ(sm_tls_expect_peer(NULL, ID_PFX "x"), -EINVAL, "no SSL");
}

/* Protocol refusals: wrong version, suite, group or ALPN on either side. */
static void test_protocol(void **state)
{
	static const struct {
		const char *what;
		const char *suites, *groups, *alpn_list; /* NULL: OpenSSL's defaults */
		int max_version;
		bool server_raw; /* else the client is the raw side */
		bool alpn;	 /* the raw side offers or selects "h2" */
		bool no_cert;	 /* the raw side presents no certificate */
	} cases[] = {
		{.what = "TLS 1.2-only client", .max_version = TLS1_2_VERSION, .alpn = true},
		{.what = "client without ALPN", .max_version = TLS1_3_VERSION},
		/* refused at the ClientHello, before the missing certificate matters */
		{.what = "client without ALPN or certificate",
		 .max_version = TLS1_3_VERSION,
		 .no_cert = true},
		{.what = "client offering http/1.1 only",
		 .max_version = TLS1_3_VERSION,
		 .alpn = true,
		 .alpn_list = "\x08http/1.1"},
		{.what = "ChaCha20-only client",
		 .max_version = TLS1_3_VERSION,
		 .alpn = true,
		 .suites = "TLS_CHACHA20_POLY1305_SHA256"},
		{.what = "X25519-only client",
		 .max_version = TLS1_3_VERSION,
		 .alpn = true,
		 .groups = "X25519"},
		{.what = "TLS 1.2-only server",
		 .server_raw = true,
		 .max_version = TLS1_2_VERSION,
		 .alpn = true},
		{.what = "server without ALPN", .server_raw = true, .max_version = TLS1_3_VERSION},
		{.what = "ChaCha20-only server",
		 .server_raw = true,
		 .max_version = TLS1_3_VERSION,
		 .alpn = true,
		 .suites = "TLS_CHACHA20_POLY1305_SHA256"},
	};
	struct outcome o;
	char what[96];

	need_pki();
	t.creds[0] = load("node1");
	t.creds[1] = load("node2");
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		const char *dir = cases[i].server_raw ? "node2" : "node1";
		SSL_CTX *raw = raw_ctx(cases[i].server_raw, cases[i].no_cert ? NULL : dir,
				       cases[i].max_version, cases[i].alpn);
		SSL *ours;

		t.ctx[0] = raw;
		if (cases[i].suites)
			ASSERT_EQ(SSL_CTX_set_ciphersuites(raw, cases[i].suites), 1, "suites");
		if (cases[i].groups)
			ASSERT_EQ(SSL_CTX_set1_groups_list(raw, cases[i].groups), 1, "groups");
		if (cases[i].alpn_list)
			ASSERT_EQ(SSL_CTX_set_alpn_protos(
					  raw, (const unsigned char *) cases[i].alpn_list,
					  strlen(cases[i].alpn_list)),
				  0, "alpn");
		if (cases[i].server_raw)
			o = handshake(sm_creds_client_ctx(t.creds[0], 0), raw, NULL);
		else
			o = handshake(raw, sm_creds_server_ctx(t.creds[1], 0), NULL);
		ours = cases[i].server_raw ? t.ssl[0] : t.ssl[1];
		snprintf(what, sizeof(what), "%s: handshake", cases[i].what);
		ASSERT_EQ(cases[i].server_raw ? o.client_ok : o.server_ok, false, what);
		snprintf(what, sizeof(what), "%s: reason", cases[i].what);
		assert_reason(sm_tls_peer_result(ours, NULL, 0), SM_SVID_PROTOCOL, what);
		SSL_free(t.ssl[0]);
		SSL_free(t.ssl[1]);
		SSL_CTX_free(raw);
		close(t.fds[0]);
		close(t.fds[1]);
		t.ssl[0] = t.ssl[1] = NULL;
		t.ctx[0] = NULL;
		t.fds[0] = t.fds[1] = -1;
	}
	/* the raw contexts are good otherwise: the same sides with the profile succeed */
	t.ctx[0] = raw_ctx(false, "node1", TLS1_3_VERSION, true);
	o = handshake(t.ctx[0], sm_creds_server_ctx(t.creds[1], 0), NULL);
	ASSERT_EQ(o.server_ok, true, "control: raw TLS 1.3 client with ALPN h2");
}

/* Write a file under the PKI dir from another one (NULL src: text). */
static void put_file(const char *dst, const char *src, const char *text)
{
	char path[256], cmd[600];

	snprintf(path, sizeof(path), "%s/%s", pki, dst);
	if (src) {
		snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\" && cp '%s/%s' '%s'", path,
			 pki, src, path);
		ASSERT_EQ(system(cmd), 0, cmd);
	} else {
		FILE *f = fopen(path, "w");

		ASSERT_NOT_NULL(f, path);
		fputs(text, f);
		fclose(f);
	}
}

static void make_dir(const char *dir)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", pki, dir);
	if (mkdir(path, 0700) && errno != EEXIST)
		fail_msg("mkdir %s: %s", path, strerror(errno));
}

static void expect_load_error(const char *dir, int want_errno, const char *file, const char *msg)
{
	struct sm_error err = {""};
	struct sm_creds *c;
	char path[256], named[300];

	snprintf(path, sizeof(path), "%s/%s", pki, dir);
	errno = 0;
	c = sm_creds_load(path, 2, &err);
	if (c) {
		sm_creds_put(c);
		fail_msg("sm_creds_load(%s) accepted it", path);
	}
	if (want_errno)
		ASSERT_EQ(errno, want_errno, path);
	else
		ASSERT_GE(errno, 1, path);
	snprintf(named, sizeof(named), "%s/%s", path, file);
	ASSERT_HAS(err.msg, named, "the message names the file");
	ASSERT_HAS(err.msg, msg, path);
	ASSERT_EQ(ERR_peek_error(), 0, "OpenSSL error queue left empty");
}

static void test_creds_load(void **state)
{
	char dir[64], msg[64];
	time_t now = time(NULL), na;

	need_pki();
	t.creds[0] = load("node3");
	ASSERT_STR_EQ(sm_creds_spiffe_id(t.creds[0]), ID_PFX "node/node3", "own ID");
	na = sm_creds_not_after(t.creds[0]);
	if (na < now + 86400 - 600 || na > now + 86400 + 600)
		fail_msg("not_after %lld is not about a day from now (%lld)", (long long) na,
			 (long long) now);
	ASSERT_NOT_NULL(sm_creds_client_ctx(t.creds[0], 0), "client ctx");
	ASSERT_NOT_NULL(sm_creds_server_ctx(t.creds[0], 0), "server ctx");
	/* one pair per worker (load() asks for 2), indexes wrap around */
	if (sm_creds_client_ctx(t.creds[0], 0) == sm_creds_client_ctx(t.creds[0], 1) ||
	    sm_creds_server_ctx(t.creds[0], 0) == sm_creds_server_ctx(t.creds[0], 1))
		fail_msg("workers 0 and 1 share an SSL_CTX");
	ASSERT_EQ(sm_creds_client_ctx(t.creds[0], 2) == sm_creds_client_ctx(t.creds[0], 0), true,
		  "index 2 wraps to 0");
	/* a reference outlives the loader's */
	t.creds[1] = sm_creds_get(t.creds[0]);
	sm_creds_put(t.creds[0]);
	t.creds[0] = NULL;
	ASSERT_STR_EQ(sm_creds_spiffe_id(t.creds[1]), ID_PFX "node/node3", "after one put");

	expect_load_error("missing", ENOENT, "cert.pem", "cannot open");
	make_dir("t-nokey");
	put_file("t-nokey/cert.pem", "node1/cert.pem", NULL);
	put_file("t-nokey/bundle.pem", "node1/bundle.pem", NULL);
	expect_load_error("t-nokey", 0, "key.pem", "cannot open");
	put_file("t-nokey/key.pem", NULL,
		 "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
	expect_load_error("t-nokey", EINVAL, "key.pem", "not an unencrypted PEM private key");
	put_file("t-nokey/key.pem", "node2/key.pem", NULL);
	expect_load_error("t-nokey", EINVAL, "key.pem", "does not match");
	put_file("t-nokey/key.pem", "node1/key.pem", NULL);
	put_file("t-nokey/bundle.pem", NULL, "");
	expect_load_error("t-nokey", ENOENT, "bundle.pem", "no PEM certificate");
	put_file("t-nokey/bundle.pem", "ca/other-root.pem", NULL);
	expect_load_error("t-nokey", EINVAL, "cert.pem", "unknown_ca");
	put_file("t-nokey/cert.pem", NULL, "");
	expect_load_error("t-nokey", ENOENT, "cert.pem", "no PEM certificate");

	for (size_t i = 0; i < SM_ARRAY_SIZE(bad_kinds); i++) {
		if (strncmp(bad_kinds[i].kind, "bad/", 4) != 0)
			continue;
		snprintf(msg, sizeof(msg), "%s", bad_kinds[i].kind + 4);
		/* the leaf's own trust domain, wrong.test, gets bundle.pem: our root */
		if (strcmp(msg, "wrong_trust_domain") == 0)
			snprintf(msg, sizeof(msg), "unknown_ca");
		if (strcmp(msg, "no_uri_san") == 0 || strcmp(msg, "two_uri_sans") == 0 ||
		    strcmp(msg, "not_spiffe_uri") == 0)
			snprintf(msg, sizeof(msg), "bad_san");
		else
			snprintf(msg, sizeof(msg), "%s",
				 sm_svid_reason_name(bad_kinds[i].reason ==
								     SM_SVID_WRONG_TRUST_DOMAIN
							     ? SM_SVID_UNKNOWN_CA
							     : bad_kinds[i].reason));
		expect_load_error(bad_kinds[i].kind, EINVAL, "cert.pem", msg);
	}
	/* one purpose is enough: an SVID for serving only still loads */
	snprintf(dir, sizeof(dir), "eku/server_only");
	t.creds[0] = load(dir);
}

/* bundles/<td>.pem adds a federated trust domain to both contexts. */
static void test_federation_and_rotation(void **state)
{
	struct outcome o;
	char id[256];

	need_pki();
	make_dir("t-fed");
	make_dir("t-fed/bundles");
	put_file("t-fed/cert.pem", "node2/cert.pem", NULL);
	put_file("t-fed/key.pem", "node2/key.pem", NULL);
	put_file("t-fed/bundle.pem", "node2/bundle.pem", NULL);
	put_file("t-fed/bundles/wrong.test.pem", "ca/other-root.pem", NULL);
	t.creds[1] = load("t-fed");
	t.ctx[0] = raw_ctx(false, "bad/wrong_trust_domain", TLS1_3_VERSION, true);
	o = handshake(t.ctx[0], sm_creds_server_ctx(t.creds[1], 0), NULL);
	ASSERT_EQ(o.server_ok, true, "federated client accepted");
	assert_reason(sm_tls_peer_result(t.ssl[1], id, sizeof(id)), SM_SVID_OK, "server's view");
	ASSERT_STR_EQ(id, "spiffe://wrong.test/sockmesh/bad/wrong_trust_domain", "federated ID");
	release(state);

	put_file("t-fed/bundles/Bad.pem", "ca/other-root.pem", NULL);
	expect_load_error("t-fed", EINVAL, "bundles/Bad.pem", "trust domain 'Bad'");

	/* rotation overlap: an old-root node and a new-root node, both trusting both roots */
	make_dir("t-old");
	put_file("t-old/cert.pem", "node1/cert.pem", NULL);
	put_file("t-old/key.pem", "node1/key.pem", NULL);
	put_file("t-old/bundle.pem", "both-roots.pem", NULL);
	make_dir("t-new");
	put_file("t-new/cert.pem", "other/cert.pem", NULL);
	put_file("t-new/key.pem", "other/key.pem", NULL);
	put_file("t-new/bundle.pem", "both-roots.pem", NULL);
	t.creds[0] = load("t-old");
	t.creds[1] = load("t-new");
	for (int dir = 0; dir < 2; dir++) {
		o = handshake(sm_creds_client_ctx(t.creds[dir], 0),
			      sm_creds_server_ctx(t.creds[!dir], 0), NULL);
		ASSERT_EQ(o.client_ok && o.server_ok, true, "old and new roots interoperate");
		assert_reason(sm_tls_peer_result(t.ssl[1], id, sizeof(id)), SM_SVID_OK, "server");
		ASSERT_STR_EQ(id, sm_creds_spiffe_id(t.creds[dir]), "server sees the client");
		SSL_free(t.ssl[0]);
		SSL_free(t.ssl[1]);
		close(t.fds[0]);
		close(t.fds[1]);
		t.ssl[0] = t.ssl[1] = NULL;
		t.fds[0] = t.fds[1] = -1;
	}
	/* the old node trusting only its own root refuses the new one */
	sm_creds_put(t.creds[0]);
	t.creds[0] = load("node1");
	o = handshake(sm_creds_client_ctx(t.creds[0], 0), sm_creds_server_ctx(t.creds[1], 0), NULL);
	ASSERT_EQ(o.client_ok, false, "old root only");
	assert_reason(sm_tls_peer_result(t.ssl[0], id, sizeof(id)), SM_SVID_UNKNOWN_CA,
		      "old root only: client's reason");
}

/*
 * The weak kinds are refused by the chain check itself, not by the contexts'
 * security level (which an openssl.cnf may lower): contexts dropped to level
 * 0 still refuse them, in both directions, with the named reason.
 */
static void test_weak_chain_at_level_0(void **state)
{
	static const struct {
		const char *kind;
		enum sm_svid_reason reason;
	} weak[] = {
		{"bad/sha1_signed", SM_SVID_WEAK_SIGNATURE},
		{"bad/int_sha1_signed", SM_SVID_WEAK_SIGNATURE},
		{"bad/int_rsa1024", SM_SVID_WEAK_KEY},
	};
	char what[96];
	struct outcome o;

	need_pki();
	t.creds[0] = load("node1");
	t.creds[1] = load("node2");
	SSL_CTX_set_security_level(sm_creds_client_ctx(t.creds[0], 0), 0);
	SSL_CTX_set_security_level(sm_creds_server_ctx(t.creds[1], 0), 0);
	for (size_t i = 0; i < SM_ARRAY_SIZE(weak); i++) {
		for (int server_raw = 0; server_raw < 2; server_raw++) {
			t.ctx[0] = raw_ctx(server_raw, weak[i].kind, TLS1_3_VERSION, true);
			if (server_raw)
				o = handshake(sm_creds_client_ctx(t.creds[0], 0), t.ctx[0], NULL);
			else
				o = handshake(t.ctx[0], sm_creds_server_ctx(t.creds[1], 0), NULL);
			snprintf(what, sizeof(what), "%s %s at level 0", weak[i].kind,
				 server_raw ? "server" : "client");
			ASSERT_EQ(server_raw ? o.client_ok : o.server_ok, false, what);
			assert_reason(sm_tls_peer_result(t.ssl[server_raw ? 0 : 1], NULL, 0),
				      weak[i].reason, what);
			SSL_free(t.ssl[0]);
			SSL_free(t.ssl[1]);
			SSL_CTX_free(t.ctx[0]);
			close(t.fds[0]);
			close(t.fds[1]);
			t.ssl[0] = t.ssl[1] = NULL;
			t.ctx[0] = NULL;
			t.fds[0] = t.fds[1] = -1;
		}
	}
}

/* A bundle file holding a CA that names another trust domain is refused, federated ones too. */
static void test_creds_foreign_root(void **state)
{
	char path[256];

	need_pki();
	/* foreign/: an SVID of ours issued by wrong.test's root, which bundle.pem also holds */
	expect_load_error("foreign", EINVAL, "bundle.pem", "spiffe://wrong.test");
	expect_load_error("foreign", EINVAL, "bundle.pem", "sockmesh wrong.test root");

	make_dir("t-fed3");
	make_dir("t-fed3/bundles");
	put_file("t-fed3/cert.pem", "node2/cert.pem", NULL);
	put_file("t-fed3/key.pem", "node2/key.pem", NULL);
	put_file("t-fed3/bundle.pem", "node2/bundle.pem", NULL);
	put_file("t-fed3/bundles/other.test.pem", "ca/foreign-root.pem", NULL);
	expect_load_error("t-fed3", EINVAL, "bundles/other.test.pem", "spiffe://wrong.test");
	/* the same root as wrong.test's own bundle is federation as intended */
	snprintf(path, sizeof(path), "%s/t-fed3/bundles/other.test.pem", pki);
	ASSERT_EQ(unlink(path), 0, path);
	put_file("t-fed3/bundles/wrong.test.pem", "ca/foreign-root.pem", NULL);
	t.creds[0] = load("t-fed3");
}

/* Connections keep working after the last reference to their credentials is dropped. */
static void test_creds_outlive_put(void **state)
{
	struct outcome o;
	char buf[8] = "";

	need_pki();
	t.creds[0] = load("node1");
	t.creds[1] = load("node2");
	o = handshake(sm_creds_client_ctx(t.creds[0], 0), sm_creds_server_ctx(t.creds[1], 0), NULL);
	ASSERT_EQ(o.client_ok && o.server_ok, true, "handshake");
	sm_creds_put(t.creds[0]);
	sm_creds_put(t.creds[1]);
	t.creds[0] = t.creds[1] = NULL;
	ASSERT_EQ(SSL_write(t.ssl[1], "pong", 4), 4, "server write after put");
	ASSERT_EQ(SSL_read(t.ssl[0], buf, sizeof(buf)), 4, "client read after put");
	ASSERT_EQ(sm_tls_peer_result(t.ssl[0], NULL, 0), SM_SVID_OK, "result after put");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_good_handshake, release),
		cmocka_unit_test_teardown(test_bad_client_cert, release),
		cmocka_unit_test_teardown(test_bad_server_cert, release),
		cmocka_unit_test_teardown(test_no_client_cert, release),
		cmocka_unit_test_teardown(test_identity_mismatch, release),
		cmocka_unit_test_teardown(test_protocol, release),
		cmocka_unit_test_teardown(test_creds_load, release),
		cmocka_unit_test_teardown(test_federation_and_rotation, release),
		cmocka_unit_test_teardown(test_creds_outlive_put, release),
		cmocka_unit_test_teardown(test_weak_chain_at_level_0, release),
		cmocka_unit_test_teardown(test_creds_foreign_root, release),
	};

	return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
