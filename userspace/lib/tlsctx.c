// SPDX-License-Identifier: Apache-2.0
/* Credential directories and the TLS 1.3 client/server contexts of the HBONE hop. */
#include "tlsctx.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "catalog.h"

#define CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
#define GROUPS	     "P-256"
/* ALPN wire format: length-prefixed protocol names */
static const unsigned char alpn_h2[] = {2, 'h', '2'};

/* Bounds on what cert.pem and bundles/ may hold. */
#define CHAIN_CERTS_MAX	      8
#define FEDERATED_BUNDLES_MAX 32

struct sm_creds {
	atomic_int refs;
	char spiffe_id[SM_SPIFFE_MAX];
	time_t not_after;
	unsigned int nctx;
	struct {
		SSL_CTX *client;
		SSL_CTX *server;
	} ctx[]; /* one pair per worker: no OpenSSL object shared between threads */
};

/* Per-SSL verification state, in SSL ex_data; freed with the SSL. */
struct peer_state {
	bool verified; /* the verify callback ran and stored reason */
	bool no_cert;  /* the server refused a client that sent no certificate */
	bool done;     /* our side of the handshake completed */
	enum sm_svid_reason reason;
	char spiffe_id[SM_SPIFFE_MAX]; /* the peer's, when reason is OK or IDENTITY_MISMATCH */
	char expect[SM_SPIFFE_MAX];    /* client: the server's required ID, "" = any */
	sm_tls_sni_fn sni_fn;	       /* server: picks a context by the client's SNI */
	void *sni_arg;
};

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ssl_state_idx = -1;	 /* SSL: struct peer_state * */
static int ctx_bundles_idx = -1; /* SSL_CTX: struct sm_bundles *, a reference */

static void free_peer_state(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			    void *argp)
{
	free(ptr);
}

static void free_ctx_bundles(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			     void *argp)
{
	sm_bundles_put(ptr);
}

static void ex_init(void)
{
	ssl_state_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_peer_state);
	ctx_bundles_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_ctx_bundles);
}

static int ex_ready(void)
{
	pthread_once(&ex_once, ex_init);
	return ssl_state_idx >= 0 && ctx_bundles_idx >= 0 ? 0 : -ENOMEM;
}

/* The SSL's verification state, created on first use; NULL when out of memory. */
static struct peer_state *peer_state(SSL *ssl, bool create)
{
	struct peer_state *st;

	if (ex_ready())
		return NULL;
	st = SSL_get_ex_data(ssl, ssl_state_idx);
	if (st || !create)
		return st;
	st = calloc(1, sizeof(*st));
	if (st && !SSL_set_ex_data(ssl, ssl_state_idx, st)) {
		free(st);
		st = NULL;
	}
	return st;
}

/* The X509 error (hence the TLS alert) that best tells the peer why it was refused. */
static int reason_x509_error(enum sm_svid_reason r)
{
	switch (r) {
	case SM_SVID_EXPIRED:
		return X509_V_ERR_CERT_HAS_EXPIRED;
	case SM_SVID_NOT_YET_VALID:
		return X509_V_ERR_CERT_NOT_YET_VALID;
	case SM_SVID_UNKNOWN_CA:
	case SM_SVID_WRONG_TRUST_DOMAIN:
		return X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
	case SM_SVID_WEAK_SIGNATURE: /* both: alert bad_certificate */
		return X509_V_ERR_CA_MD_TOO_WEAK;
	case SM_SVID_WEAK_KEY:
		return X509_V_ERR_EE_KEY_TOO_SMALL;
	default:
		return X509_V_ERR_APPLICATION_VERIFICATION;
	}
}

static bool alpn_is_h2(const SSL *ssl)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;

	SSL_get0_alpn_selected(ssl, &p, &n);
	return n == 2 && p && memcmp(p, "h2", 2) == 0;
}

/*
 * Replaces OpenSSL's chain verification on both contexts: the peer's chain
 * goes through sm_svid_verify() against our bundles, and the outcome is kept
 * on the SSL for sm_tls_peer_result(). ALPN was settled before the
 * certificates arrive (ClientHello / EncryptedExtensions), so it is checked
 * here too: a client whose server chose no protocol refuses it.
 */
static int verify_peer_cb(X509_STORE_CTX *x509ctx, void *arg)
{
	const struct sm_bundles *bundles = arg;
	SSL *ssl = X509_STORE_CTX_get_ex_data(x509ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct peer_state *st = ssl ? peer_state(ssl, true) : NULL;
	enum sm_svid_purpose purpose;
	enum sm_svid_reason r;

	if (!st) {
		X509_STORE_CTX_set_error(x509ctx, X509_V_ERR_OUT_OF_MEM);
		return 0;
	}
	purpose = SSL_is_server(ssl) ? SM_SVID_PEER_IS_CLIENT : SM_SVID_PEER_IS_SERVER;
	st->spiffe_id[0] = '\0';
	if (!alpn_is_h2(ssl)) {
		r = SM_SVID_PROTOCOL;
	} else {
		r = sm_svid_verify(X509_STORE_CTX_get0_cert(x509ctx),
				   X509_STORE_CTX_get0_untrusted(x509ctx), bundles, purpose, 0,
				   st->spiffe_id, sizeof(st->spiffe_id));
		if (r == SM_SVID_OK && st->expect[0] && strcmp(st->expect, st->spiffe_id) != 0)
			r = SM_SVID_IDENTITY_MISMATCH;
		if (r != SM_SVID_OK && r != SM_SVID_IDENTITY_MISMATCH)
			st->spiffe_id[0] = '\0';
	}
	st->verified = true;
	st->reason = r;
	X509_STORE_CTX_set_error(x509ctx, r == SM_SVID_OK ? X509_V_OK : reason_x509_error(r));
	return r == SM_SVID_OK;
}

/*
 * OpenSSL refuses a client without a certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT)
 * before any verify callback runs; the certificate_required alert it sends
 * is how we learn that this, not the protocol, was the reason.
 */
static void info_cb(const SSL *ssl, int where, int ret)
{
	struct peer_state *st;

	if (where & SSL_CB_HANDSHAKE_DONE) {
		st = peer_state((SSL *) ssl, false);
		if (st)
			st->done = true;
	}
	if (!(where & SSL_CB_WRITE_ALERT) || (ret & 0xff) != SSL_AD_CERTIFICATE_REQUIRED)
		return;
	st = peer_state((SSL *) ssl, true);
	if (st && !st->verified)
		st->no_cert = true;
}

/* Server: a ClientHello without ALPN is refused (the select callback would not run). */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	const unsigned char *ext = NULL;
	size_t len = 0;

	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
				       &ext, &len)) {
		*alert = SSL_AD_NO_APPLICATION_PROTOCOL;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* Server: a server name the owner of the SSL knows may switch the SVID presented. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
	struct peer_state *st = peer_state(ssl, false);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *ctx;

	(void) alert;
	(void) arg;
	if (!st || !st->sni_fn || !name)
		return SSL_TLSEXT_ERR_OK;
	ctx = st->sni_fn(ssl, name, st->sni_arg);
	/* the contexts are built alike: only the certificate and key differ */
	if (ctx && ctx != SSL_get_SSL_CTX(ssl) && !SSL_set_SSL_CTX(ssl, ctx))
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	return SSL_TLSEXT_ERR_OK;
}

/* Server: "h2" or nothing; no overlap fails the handshake (no_application_protocol). */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned char *sel = NULL;
	unsigned char sel_len = 0;

	if (SSL_select_next_proto(&sel, &sel_len, alpn_h2, sizeof(alpn_h2), in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	*outlen = sel_len;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * One context: TLS 1.3 only, AES-GCM, P-256, no resumption, our SVID, and
 * sm_svid_verify() for the peer. The context keeps its own reference to
 * bundles (dropped when OpenSSL frees it), so live connections never see the
 * bundles freed under them.
 */
static SSL_CTX *build_ctx(bool server, X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key,
			  struct sm_bundles *bundles, const char *dir, struct sm_error *err)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	const char *what = "";

	if (!ctx || ex_ready()) {
		what = "cannot create an SSL_CTX";
		goto fail;
	}
	if (!SSL_CTX_set_ex_data(ctx, ctx_bundles_idx, bundles)) {
		what = "cannot attach the trust bundles";
		goto fail;
	}
	sm_bundles_get(bundles);
	/* not openssl.cnf's level; the peer's chain is judged by sm_svid_verify() anyway */
	SSL_CTX_set_security_level(ctx, SM_SVID_SECURITY_LEVEL);
	what = "cannot apply the TLS profile";
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, CIPHERSUITES) || !SSL_CTX_set1_groups_list(ctx, GROUPS))
		goto fail;
	/* no resumption: a session must not outlive a certificate rotation */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (server && !SSL_CTX_set_num_tickets(ctx, 0))
		goto fail;
	what = "cannot install the certificate and key";
	if (!SSL_CTX_use_certificate(ctx, leaf) || (chain && !SSL_CTX_set1_chain(ctx, chain)) ||
	    !SSL_CTX_use_PrivateKey(ctx, key) || !SSL_CTX_check_private_key(ctx))
		goto fail;
	SSL_CTX_set_cert_verify_callback(ctx, verify_peer_cb, bundles);
	SSL_CTX_set_info_callback(ctx, info_cb);
	if (server) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
		SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		/* returns 0 on success, unlike the rest of the API */
		if (SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2)) != 0) {
			what = "cannot set ALPN";
			goto fail;
		}
	}
	ERR_clear_error();
	return ctx;
fail:
	sm_error_set(err, "%s: %s %s context: %s", dir, what, server ? "server" : "client",
		     ERR_peek_last_error() ? ERR_reason_error_string(ERR_peek_last_error())
					   : "out of memory");
	ERR_clear_error();
	SSL_CTX_free(ctx); /* NULL-safe; drops the bundles reference through ex_data */
	return NULL;
}

static int pem_no_password(char *buf, int size, int rwflag, void *u)
{
	return -1; /* an encrypted key is refused, never prompted for */
}

static bool pem_at_end(void)
{
	unsigned long e = ERR_peek_last_error();

	return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

/* cert.pem: the leaf and up to CHAIN_CERTS_MAX - 1 intermediates. */
static int read_cert_chain(const char *path, X509 **leaf, STACK_OF(X509) * *chain,
			   struct sm_error *err)
{
	FILE *f = fopen(path, "r");
	int ret = 0, n = 0;

	*leaf = NULL;
	*chain = NULL;
	if (!f) {
		ret = -errno;
		sm_error_set(err,
			     "%s: cannot open: %s (write the SVID there: leaf first, then "
			     "intermediates, PEM)",
			     path, strerror(errno));
		return ret;
	}
	ERR_clear_error();
	*chain = sk_X509_new_null();
	if (!*chain) {
		ret = -ENOMEM;
		sm_error_set(err, "%s: out of memory", path);
		goto close_file;
	}
	for (;;) {
		X509 *x = PEM_read_X509(f, NULL, pem_no_password, NULL);

		if (!x) {
			if (pem_at_end())
				break;
			sm_error_set(err, "%s: certificate %d is not valid PEM: %s", path, n + 1,
				     ERR_reason_error_string(ERR_peek_last_error()));
			ret = -EINVAL;
			goto close_file;
		}
		if (++n > CHAIN_CERTS_MAX) {
			X509_free(x);
			sm_error_set(err,
				     "%s: more than %d certificates (write the leaf and its "
				     "intermediates only)",
				     path, CHAIN_CERTS_MAX);
			ret = -E2BIG;
			goto close_file;
		}
		if (!*leaf) {
			*leaf = x;
		} else if (!sk_X509_push(*chain, x)) {
			X509_free(x);
			ret = -ENOMEM;
			sm_error_set(err, "%s: out of memory", path);
			goto close_file;
		}
	}
	if (!*leaf) {
		sm_error_set(err,
			     "%s: no PEM certificate found (write the SVID there: leaf "
			     "first, then intermediates)",
			     path);
		ret = -ENOENT;
	}
close_file:
	fclose(f);
	ERR_clear_error();
	if (ret) {
		X509_free(*leaf);
		sk_X509_pop_free(*chain, X509_free);
		*leaf = NULL;
		*chain = NULL;
	}
	return ret;
}

static EVP_PKEY *read_key(const char *path, struct sm_error *err)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *key;

	if (!f) {
		sm_error_set(err, "%s: cannot open: %s (write the SVID's private key there, PEM)",
			     path, strerror(errno));
		return NULL;
	}
	ERR_clear_error();
	key = PEM_read_PrivateKey(f, NULL, pem_no_password, NULL);
	if (!key)
		sm_error_set(err, "%s: not an unencrypted PEM private key: %s", path,
			     ERR_peek_last_error() ? ERR_reason_error_string(ERR_peek_last_error())
						   : "no key found");
	fclose(f);
	ERR_clear_error();
	return key;
}

/*
 * Our own trust domain, read from the leaf's single URI SAN without any other
 * check: it names the trust domain bundle.pem belongs to. sm_svid_verify()
 * then judges the leaf fully.
 */
static int leaf_trust_domain(X509 *leaf, char *td, size_t len)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	char id[SM_SPIFFE_MAX] = "";
	int nuri = 0, ret = -EINVAL;

	for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		int ulen;

		if (gn->type != GEN_URI)
			continue;
		nuri++;
		ulen = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		if (ulen > 0 && (size_t) ulen < sizeof(id)) {
			memcpy(id, ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
			       (size_t) ulen);
			id[ulen] = '\0';
		}
	}
	GENERAL_NAMES_free(names);
	ERR_clear_error();
	if (nuri == 1 && strlen(id) > 0)
		ret = sm_spiffe_trust_domain(id, td, len);
	return ret;
}

/* bundles/<trust-domain>.pem: the roots of federated trust domains, if the directory exists. */
static int load_federated(struct sm_bundles *b, const char *dir, struct sm_error *err)
{
	char sub[PATH_MAX], path[PATH_MAX], td[SM_SPIFFE_MAX];
	struct dirent *de;
	unsigned int n = 0;
	DIR *d;
	int ret = 0;

	if (snprintf(sub, sizeof(sub), "%s/bundles", dir) >= (int) sizeof(sub)) {
		sm_error_set(err, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	d = opendir(sub);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		sm_error_set(err, "%s: cannot open: %s", sub, strerror(errno));
		return ret;
	}
	while ((de = readdir(d))) {
		size_t nl = strlen(de->d_name);

		if (de->d_name[0] == '.' || nl <= 4 || strcmp(de->d_name + nl - 4, ".pem") != 0)
			continue;
		if (++n > FEDERATED_BUNDLES_MAX) {
			sm_error_set(err, "%s: more than %d bundles", sub, FEDERATED_BUNDLES_MAX);
			ret = -E2BIG;
			break;
		}
		if (nl - 4 >= sizeof(td) ||
		    snprintf(path, sizeof(path), "%s/%s", sub, de->d_name) >= (int) sizeof(path)) {
			sm_error_set(err, "%s/%s: name too long", sub, de->d_name);
			ret = -ENAMETOOLONG;
			break;
		}
		memcpy(td, de->d_name, nl - 4);
		td[nl - 4] = '\0';
		ret = sm_bundles_add(b, td, path, err);
		if (ret)
			break;
	}
	closedir(d);
	return ret;
}

static time_t asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

/* The SVID's files in dir. 0 or -ENAMETOOLONG (err set). */
static int creds_paths(const char *dir, char *cert, char *key, char *bundle, size_t len,
		       struct sm_error *err)
{
	if (snprintf(cert, len, "%s/cert.pem", dir) >= (int) len ||
	    snprintf(key, len, "%s/key.pem", dir) >= (int) len ||
	    snprintf(bundle, len, "%s/bundle.pem", dir) >= (int) len) {
		sm_error_set(err, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

/*
 * Read the SVID's chain and key, check that they belong together and that
 * the leaf names a SPIFFE ID; its trust domain into td. 0 (the caller frees
 * *leaf, *chain, *key) or -errno with err set and nothing held.
 */
static int creds_read(const char *cert_path, const char *key_path, X509 **leaf,
		      STACK_OF(X509) * *chain, EVP_PKEY **key, char *td, size_t tdlen,
		      struct sm_error *err)
{
	int ret = read_cert_chain(cert_path, leaf, chain, err);

	if (ret)
		return ret;
	*key = read_key(key_path, err);
	if (!*key) {
		ret = -EINVAL;
		goto free_cert;
	}
	if (!X509_check_private_key(*leaf, *key)) {
		ERR_clear_error();
		sm_error_set(err,
			     "%s: the key does not match the certificate in %s (write the "
			     "key and certificate of the same SVID)",
			     key_path, cert_path);
		ret = -EINVAL;
		goto free_key;
	}
	if (leaf_trust_domain(*leaf, td, tdlen)) {
		sm_error_set(err,
			     "%s: the leaf is not an X.509-SVID: it needs exactly one URI SAN "
			     "holding a SPIFFE ID (reason bad_san)",
			     cert_path);
		ret = -EINVAL;
		goto free_key;
	}
	return 0;
free_key:
	EVP_PKEY_free(*key);
	*key = NULL;
free_cert:
	X509_free(*leaf);
	*leaf = NULL;
	sk_X509_pop_free(*chain, X509_free);
	*chain = NULL;
	return ret;
}

/*
 * Build c's nctx pairs of contexts; each pair gets its own trust store (the
 * first shares bundles), so verification shares no lock either. 0, or -errno
 * with the pairs built so far left in c (c->nctx) for the caller to free.
 */
static int creds_build_ctxs(struct sm_creds *c, unsigned int nctx, X509 *leaf,
			    STACK_OF(X509) * chain, EVP_PKEY *key, struct sm_bundles *bundles,
			    const char *td, const char *bundle_path, const char *dir,
			    struct sm_error *err)
{
	for (unsigned int i = 0; i < nctx; i++) {
		struct sm_bundles *b =
			i == 0 ? sm_bundles_get(bundles) : sm_bundles_load(td, bundle_path, err);

		if (!b || (i > 0 && load_federated(b, dir, err))) {
			sm_bundles_put(b);
			return -EINVAL;
		}
		c->ctx[i].client = build_ctx(false, leaf, chain, key, b, dir, err);
		c->ctx[i].server =
			c->ctx[i].client ? build_ctx(true, leaf, chain, key, b, dir, err) : NULL;
		sm_bundles_put(b); /* the contexts hold their own references */
		c->nctx = i + 1;
		if (!c->ctx[i].server)
			return -ENOMEM;
	}
	return 0;
}

struct sm_creds *sm_creds_load(const char *dir, unsigned int nctx, struct sm_error *err)
{
	char cert_path[PATH_MAX], key_path[PATH_MAX], bundle_path[PATH_MAX];
	char td[SM_SPIFFE_MAX], id[SM_SPIFFE_MAX];
	struct sm_bundles *bundles = NULL;
	STACK_OF(X509) *chain = NULL;
	enum sm_svid_reason rs, rc;
	struct sm_creds *c = NULL;
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL;
	int ret;

	if (nctx == 0)
		nctx = 1;
	if (!dir || !*dir) {
		sm_error_set(err, "credentials: no directory given");
		errno = EINVAL;
		return NULL;
	}
	ret = creds_paths(dir, cert_path, key_path, bundle_path, PATH_MAX, err);
	if (ret)
		goto fail;
	ret = creds_read(cert_path, key_path, &leaf, &chain, &key, td, sizeof(td), err);
	if (ret)
		goto fail;
	bundles = sm_bundles_load(td, bundle_path, err);
	if (!bundles) {
		ret = -errno;
		goto free_svid;
	}
	ret = load_federated(bundles, dir, err);
	if (ret)
		goto put_bundles;
	/* a node or workload SVID serves and connects: one purpose passing is enough */
	rs = sm_svid_verify(leaf, chain, bundles, SM_SVID_PEER_IS_SERVER, 0, id, sizeof(id));
	rc = rs == SM_SVID_OK ? SM_SVID_OK
			      : sm_svid_verify(leaf, chain, bundles, SM_SVID_PEER_IS_CLIENT, 0, id,
					       sizeof(id));
	if (rc != SM_SVID_OK) {
		sm_error_set(err, "%s: the certificate is not a valid X.509-SVID under %s: %s",
			     cert_path, bundle_path, sm_svid_reason_name(rs));
		ret = -EINVAL;
		goto put_bundles;
	}
	c = calloc(1, sizeof(*c) + nctx * sizeof(c->ctx[0]));
	if (!c) {
		sm_error_set(err, "%s: out of memory", dir);
		ret = -ENOMEM;
		goto put_bundles;
	}
	atomic_init(&c->refs, 1);
	sm_strlcpy(c->spiffe_id, id, sizeof(c->spiffe_id));
	c->not_after = asn1_to_time(X509_get0_notAfter(leaf));
	ret = creds_build_ctxs(c, nctx, leaf, chain, key, bundles, td, bundle_path, dir, err);
	if (ret)
		goto free_creds;
	goto put_bundles;
free_creds:
	for (unsigned int i = 0; i < c->nctx; i++) {
		SSL_CTX_free(c->ctx[i].client);
		SSL_CTX_free(c->ctx[i].server);
	}
	free(c);
	c = NULL;
put_bundles:
	sm_bundles_put(bundles);
free_svid:
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
fail:
	ERR_clear_error();
	if (ret)
		errno = -ret;
	return c;
}

struct sm_creds *sm_creds_get(struct sm_creds *c)
{
	if (c)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

void sm_creds_put(struct sm_creds *c)
{
	if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	/* SSL objects still alive keep their SSL_CTX (and its bundles) referenced */
	for (unsigned int i = 0; i < c->nctx; i++) {
		SSL_CTX_free(c->ctx[i].client);
		SSL_CTX_free(c->ctx[i].server);
	}
	free(c);
}

const char *sm_creds_spiffe_id(const struct sm_creds *c)
{
	return c->spiffe_id;
}

time_t sm_creds_not_after(const struct sm_creds *c)
{
	return c->not_after;
}

SSL_CTX *sm_creds_client_ctx(const struct sm_creds *c, unsigned int i)
{
	return c->ctx[i % c->nctx].client;
}

SSL_CTX *sm_creds_server_ctx(const struct sm_creds *c, unsigned int i)
{
	return c->ctx[i % c->nctx].server;
}

enum sm_svid_reason sm_tls_peer_result(SSL *ssl, char *spiffe_id, size_t len)
{
	const struct peer_state *st = ssl ? peer_state(ssl, false) : NULL;
	enum sm_svid_reason r = SM_SVID_PROTOCOL;

	if (spiffe_id && len)
		spiffe_id[0] = '\0';
	if (!st)
		return r;
	if (st->verified)
		r = st->reason;
	else if (st->no_cert)
		r = SM_SVID_NO_CERTIFICATE;
	/*
	 * A good certificate, then a failed handshake (e.g. a bad
	 * CertificateVerify): the peer is not authenticated. A client whose
	 * handshake completed keeps OK even if the server then refuses it.
	 */
	if (r == SM_SVID_OK && !st->done)
		r = SM_SVID_PROTOCOL;
	if ((r == SM_SVID_OK || r == SM_SVID_IDENTITY_MISMATCH) && spiffe_id && len)
		sm_strlcpy(spiffe_id, st->spiffe_id, len);
	return r;
}

int sm_tls_expect_peer(SSL *ssl, const char *spiffe_id)
{
	struct peer_state *st;

	if (!ssl || SSL_is_server(ssl) || !sm_spiffe_id_valid(spiffe_id))
		return -EINVAL;
	st = peer_state(ssl, true);
	if (!st)
		return -ENOMEM;
	return sm_strlcpy(st->expect, spiffe_id, sizeof(st->expect));
}

int sm_tls_on_sni(SSL *ssl, sm_tls_sni_fn fn, void *arg)
{
	struct peer_state *st = peer_state(ssl, true);

	if (!st)
		return -ENOMEM;
	st->sni_fn = fn;
	st->sni_arg = arg;
	return 0;
}
