// SPDX-License-Identifier: Apache-2.0
/*
 * The etcd v3 client of etcd.h over etcd's gRPC JSON gateway. Facts about the
 * gateway of etcd 3.4 this relies on (checked against etcd 3.4.23):
 *  - every unary call is a POST of the request message as JSON, the answer is
 *    the response message as JSON (proto field names, int64 as strings, bytes
 *    as base64, fields with their default value left out: no "kvs" = none,
 *    no "succeeded" = false, no "value" = empty);
 *  - a failed call answers {"error": "...", "code": N, "message": "..."}
 *    with N the gRPC status code; streams (watch, lease keepalive) answer one
 *    {"result": {...}} per line, and {"error": {"grpc_code": N, "message":
 *    "..."}} when the stream fails;
 *  - a watch whose start revision was compacted is first created, then
 *    canceled with "compact_revision".
 * Transfers run on a libcurl multi handle of the client (its connection cache
 * keeps the connection alive between requests), polled every 100 ms so that a
 * watch sees *stop and its idle limit in time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "etcd.h"

#define ETCD_MAX_BODY	     (64u << 20) /* any answer, and any one line of a watch */
#define ETCD_POLL_MS	     100
#define ETCD_JSON_DEPTH	     64
#define ETCD_CONNECT_TIMEOUT 2000
#define ETCD_TIMEOUT	     5000

/* gRPC status codes the gateway reports in "code" */
#define GRPC_INVALID_ARGUMENT 3
#define GRPC_DEADLINE	      4
#define GRPC_NOT_FOUND	      5
#define GRPC_PERMISSION	      7
#define GRPC_OUT_OF_RANGE     11
#define GRPC_UNAVAILABLE      14
#define GRPC_UNAUTHENTICATED  16

struct sm_etcd {
	struct sm_etcd_cfg cfg;
	CURLM *multi;
	CURL *curl;
	char password[256];
	char *token;	   /* from /v3/auth/authenticate; never logged */
	unsigned int next; /* the endpoint tried first */
	char last[SM_ETCD_URL_MAX];
};

struct body {
	char *p;
	size_t len, cap;
	bool too_big;
};

/* A watch's state while its stream runs. */
struct watch {
	struct body line;
	sm_etcd_watch_fn cb;
	void *arg;
	int64_t *compact_revision;
	struct sm_etcd *e;
	struct sm_error *err;
	int rc;	      /* set: the watch ends with it */
	bool created; /* etcd said "created" */
	bool got_data;
	bool http_error; /* the status is not 200: the body is one error object */
};

static int body_add(struct body *b, const char *p, size_t n)
{
	if (b->len + n + 1 > ETCD_MAX_BODY) {
		b->too_big = true;
		return -EFBIG;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *q;

		while (cap < b->len + n + 1)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static void body_free(struct body *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- base64 (OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock) ---- */

static json_object *b64_json(const void *p, size_t n)
{
	size_t olen = 4 * ((n + 2) / 3);
	unsigned char *out = malloc(olen + 1);
	json_object *j;

	if (!out)
		return NULL;
	EVP_EncodeBlock(out, p, (int) n);
	j = json_object_new_string_len((const char *) out, (int) olen);
	free(out);
	return j;
}

/* Decode s into a new NUL-terminated buffer. EVP_DecodeBlock counts the
 * padding as zero bytes: one less per '='. */
static int b64_decode(const char *s, size_t n, char **out, size_t *out_len)
{
	unsigned char *p;
	int len;

	if (n % 4)
		return -EPROTO;
	p = malloc(n / 4 * 3 + 1);
	if (!p)
		return -ENOMEM;
	len = n ? EVP_DecodeBlock(p, (const unsigned char *) s, (int) n) : 0;
	if (len < 0) {
		free(p);
		return -EPROTO;
	}
	if (n && s[n - 1] == '=')
		len--;
	if (n > 1 && s[n - 2] == '=')
		len--;
	p[len] = '\0';
	*out = (char *) p;
	*out_len = (size_t) len;
	return 0;
}

/* ---- JSON helpers ---- */

/* An int64 field as the gateway sends it (a string), or a JSON integer; absent = 0. */
static int get_i64(json_object *o, const char *name, int64_t *v)
{
	json_object *f;
	const char *s;
	char *end;

	*v = 0;
	if (!o || !json_object_object_get_ex(o, name, &f) || !f)
		return 0;
	if (json_object_is_type(f, json_type_int)) {
		*v = json_object_get_int64(f);
		return 0;
	}
	if (!json_object_is_type(f, json_type_string))
		return -EPROTO;
	s = json_object_get_string(f);
	errno = 0;
	*v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -EPROTO;
	return 0;
}

static json_object *get_obj(json_object *o, const char *name, json_type type)
{
	json_object *f;

	if (!o || !json_object_object_get_ex(o, name, &f) || !json_object_is_type(f, type))
		return NULL;
	return f;
}

static bool get_bool(json_object *o, const char *name)
{
	json_object *f = get_obj(o, name, json_type_boolean);

	return f && json_object_get_boolean(f);
}

static int add_i64(json_object *o, const char *name, int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%lld", (long long) v);
	return json_object_object_add(o, name, json_object_new_string(s));
}

static int add_b64(json_object *o, const char *name, const void *p, size_t n)
{
	json_object *j = b64_json(p, n);

	if (!j)
		return -ENOMEM;
	return json_object_object_add(o, name, j) ? -ENOMEM : 0;
}

/*
 * The end of the range of keys starting with prefix: prefix with its last byte
 * below 0xff incremented (and what follows dropped); "\0" (every key from
 * prefix on) when there is none.
 */
static int add_range_end(json_object *o, const char *prefix)
{
	size_t n = strlen(prefix);
	char *end = strdup(prefix);
	int rc;

	if (!end)
		return -ENOMEM;
	while (n > 0 && (unsigned char) end[n - 1] == 0xff)
		n--;
	if (n == 0) {
		rc = add_b64(o, "range_end", "", 1);
	} else {
		end[n - 1]++;
		rc = add_b64(o, "range_end", end, n);
	}
	free(end);
	return rc;
}

static int parse_kv(json_object *j, struct sm_etcd_kv *kv)
{
	json_object *k = get_obj(j, "key", json_type_string);
	json_object *v = get_obj(j, "value", json_type_string);
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!k)
		return -EPROTO;
	rc = b64_decode(json_object_get_string(k), (size_t) json_object_get_string_len(k), &kv->key,
			&kv->key_len);
	if (rc)
		return rc;
	if (memchr(kv->key, '\0', kv->key_len))
		return -EPROTO;
	rc = b64_decode(v ? json_object_get_string(v) : "",
			v ? (size_t) json_object_get_string_len(v) : 0, &kv->value, &kv->value_len);
	if (rc)
		return rc;
	if (get_i64(j, "create_revision", &kv->create_revision) ||
	    get_i64(j, "mod_revision", &kv->mod_revision) || get_i64(j, "version", &kv->version) ||
	    get_i64(j, "lease", &kv->lease))
		return -EPROTO;
	return 0;
}

static void kv_free(struct sm_etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	kv->key = kv->value = NULL;
}

void sm_etcd_kvs_free(struct sm_etcd_kvs *kvs)
{
	if (!kvs)
		return;
	for (size_t i = 0; i < kvs->n; i++)
		kv_free(&kvs->kvs[i]);
	free(kvs->kvs);
	memset(kvs, 0, sizeof(*kvs));
}

static json_object *parse_json(const char *p, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(ETCD_JSON_DEPTH);
	json_object *o;

	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, p, (int) n);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* ---- configuration ---- */

int sm_etcd_cfg_check(const struct sm_etcd_cfg *cfg, struct sm_error *err)
{
	const struct {
		const char *what, *path;
	} files[] = {{"ca", cfg->ca}, {"cert", cfg->cert}, {"key", cfg->key}};

	if (cfg->nendpoints == 0 || cfg->nendpoints > SM_ETCD_MAX_ENDPOINTS) {
		sm_error_set(err, "etcd: %u endpoints: give 1 to %d https:// URLs", cfg->nendpoints,
			     SM_ETCD_MAX_ENDPOINTS);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < cfg->nendpoints; i++) {
		const char *u = cfg->endpoints[i];
		size_t n = strnlen(u, SM_ETCD_URL_MAX);

		if (n == SM_ETCD_URL_MAX) {
			sm_error_set(err, "etcd endpoint %u: longer than %d bytes", i + 1,
				     SM_ETCD_URL_MAX - 1);
			return -EINVAL;
		}
		if (strncmp(u, "https://", 8) != 0 || n == 8 || strpbrk(u + 8, " \t\r\n?#/@")) {
			sm_error_set(
				err,
				"etcd endpoint '%s': not an https:// URL (etcd is reached over "
				"mutual TLS only: https://host:port, no path)",
				u);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (!files[i].path[0]) {
			sm_error_set(err, "etcd: no %s file: mutual TLS needs ca, cert and key",
				     files[i].what);
			return -EINVAL;
		}
		if (access(files[i].path, R_OK) != 0) {
			sm_error_set(err, "etcd %s file %s: %s", files[i].what, files[i].path,
				     strerror(errno));
			return -EINVAL;
		}
	}
	if (cfg->username[0]) {
		if (!cfg->password_file[0]) {
			sm_error_set(err, "etcd user '%s': no password file", cfg->username);
			return -EINVAL;
		}
		if (access(cfg->password_file, R_OK) != 0) {
			sm_error_set(err, "etcd password file %s: %s", cfg->password_file,
				     strerror(errno));
			return -EINVAL;
		}
	}
	return 0;
}

static int read_password(struct sm_etcd *e, struct sm_error *err)
{
	FILE *f = fopen(e->cfg.password_file, "re");
	size_t n;

	if (!f) {
		sm_error_set(err, "etcd password file %s: %s", e->cfg.password_file,
			     strerror(errno));
		return -errno;
	}
	if (!fgets(e->password, sizeof(e->password), f))
		e->password[0] = '\0';
	fclose(f);
	n = strcspn(e->password, "\r\n");
	e->password[n] = '\0';
	if (n == 0) {
		sm_error_set(err, "etcd password file %s: empty first line", e->cfg.password_file);
		return -EINVAL;
	}
	return 0;
}

int sm_etcd_open(struct sm_etcd **out, const struct sm_etcd_cfg *cfg, struct sm_error *err)
{
	static bool curl_ready;
	struct sm_etcd *e;
	int rc;

	rc = sm_etcd_cfg_check(cfg, err);
	if (rc)
		return rc;
	/* Not thread-safe in old libcurl: the first open happens before threads start. */
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			sm_error_set(err, "etcd: libcurl initialisation failed");
			return -ENOMEM;
		}
		curl_ready = true;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	if (!e->cfg.connect_timeout_ms)
		e->cfg.connect_timeout_ms = ETCD_CONNECT_TIMEOUT;
	if (!e->cfg.timeout_ms)
		e->cfg.timeout_ms = ETCD_TIMEOUT;
	if (cfg->username[0]) {
		rc = read_password(e, err);
		if (rc)
			goto free_e;
	}
	e->multi = curl_multi_init();
	e->curl = curl_easy_init();
	if (!e->multi || !e->curl) {
		sm_error_set(err, "etcd: out of memory for libcurl handles");
		rc = -ENOMEM;
		goto free_curl;
	}
	*out = e;
	return 0;
free_curl:
	curl_easy_cleanup(e->curl);
	curl_multi_cleanup(e->multi);
free_e:
	OPENSSL_cleanse(e->password, sizeof(e->password));
	free(e);
	return rc;
}

void sm_etcd_close(struct sm_etcd *e)
{
	if (!e)
		return;
	curl_easy_cleanup(e->curl);
	curl_multi_cleanup(e->multi);
	if (e->token) {
		OPENSSL_cleanse(e->token, strlen(e->token));
		free(e->token);
	}
	OPENSSL_cleanse(e->password, sizeof(e->password));
	free(e);
}

const char *sm_etcd_endpoint(const struct sm_etcd *e)
{
	return e->last;
}

/* ---- transfers ---- */

static size_t write_body(char *p, size_t size, size_t n, void *arg)
{
	return body_add(arg, p, size * n) ? 0 : size * n;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What a transfer's libcurl result means: 0, a connection failure worth trying
 * the next endpoint for (*next), or the final -errno with err. */
static int curl_result(struct sm_etcd *e, const char *url, CURLcode res, const char *detail,
		       bool *next, struct sm_error *err)
{
	curl_off_t pre = 0;
	long nconn = 0, status = 0;

	*next = false;
	switch (res) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		*next = true;
		sm_error_set(err, "etcd %s: %s (is etcd running there? check the endpoints)", url,
			     detail);
		return res == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		curl_easy_getinfo(e->curl, CURLINFO_PRETRANSFER_TIME_T, &pre);
		*next = pre == 0; /* nothing was sent: the connection never came up */
		sm_error_set(err, "etcd %s: %s (is etcd up and reachable? check the endpoints)",
			     url, detail);
		return -ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		sm_error_set(err,
			     "etcd %s: etcd's certificate is not trusted: %s (is ca %s the CA that "
			     "signed it, and the endpoint's host in its SANs?)",
			     url, detail, e->cfg.ca);
		return -EACCES;
	case CURLE_SSL_CERTPROBLEM:
		sm_error_set(err,
			     "etcd %s: the client certificate cannot be used: %s (check %s and %s)",
			     url, detail, e->cfg.cert, e->cfg.key);
		return -EACCES;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CIPHER:
		sm_error_set(
			err,
			"etcd %s: TLS handshake failed: %s (does etcd's --trusted-ca-file hold "
			"the CA of the client certificate? check etcd's log)",
			url, detail);
		return -EACCES;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		/*
		 * In TLS 1.3 the server checks the client certificate after the
		 * client's handshake is done: etcd refuses one it does not trust
		 * with an alert and a close, which the client sees on its first
		 * write or read as an alert or a reset on the new connection.
		 */
		curl_easy_getinfo(e->curl, CURLINFO_NUM_CONNECTS, &nconn);
		curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
		if (strstr(detail, "alert") || strstr(detail, "certificate") ||
		    (nconn > 0 && status == 0)) {
			sm_error_set(err,
				     "etcd %s: etcd closed the new TLS connection: %s (does etcd's "
				     "--trusted-ca-file hold the CA of the client certificate? "
				     "else check etcd's log)",
				     url, detail);
			return -EACCES;
		}
		sm_error_set(err, "etcd %s: %s (check etcd's log)", url, detail);
		return -ECONNRESET;
	case CURLE_WRITE_ERROR:
		return -EIO; /* the caller knows why it stopped */
	case CURLE_OUT_OF_MEMORY:
		sm_error_set(err, "etcd %s: out of memory", url);
		return -ENOMEM;
	default:
		sm_error_set(err, "etcd %s: %s (check the endpoint and etcd's log)", url, detail);
		return -EIO;
	}
}

/*
 * Run one POST of body to path on the endpoints in turn (from the one that
 * answered last) until one connects; write/warg receive the answer. idle_ms
 * (watch) replaces the whole-request timeout; stop ends it with -EINTR.
 */
static int transfer(struct sm_etcd *e, const char *path, const char *body,
		    curl_write_callback write, void *warg, struct watch *w, const atomic_bool *stop,
		    int idle_ms, long *status, struct sm_error *err)
{
	struct curl_slist *hdrs = NULL, *h;
	char auth[64 + 4096];
	int rc = -EIO;

	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (!h)
		return -ENOMEM;
	hdrs = h;
	if (e->token && strlen(e->token) < sizeof(auth) - 32) {
		snprintf(auth, sizeof(auth), "Authorization: %s", e->token);
		h = curl_slist_append(hdrs, auth);
		OPENSSL_cleanse(auth, sizeof(auth));
		if (!h) {
			rc = -ENOMEM;
			goto free_hdrs;
		}
		hdrs = h;
	}
	for (unsigned int i = 0; i < e->cfg.nendpoints; i++) {
		unsigned int idx = (e->next + i) % e->cfg.nendpoints;
		const char *ep = e->cfg.endpoints[idx];
		char url[SM_ETCD_URL_MAX + 64], errbuf[CURL_ERROR_SIZE] = "";
		int64_t last_data = now_ms();
		size_t seen = 0;
		CURLcode res = CURLE_OK;
		bool next, done = false;

		snprintf(url, sizeof(url), "%s%s", ep, path);
		curl_easy_reset(e->curl);
		curl_easy_setopt(e->curl, CURLOPT_URL, url);
		curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "https");
		curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(e->curl, CURLOPT_CAINFO, e->cfg.ca);
		curl_easy_setopt(e->curl, CURLOPT_CAPATH, NULL);
		curl_easy_setopt(e->curl, CURLOPT_SSLCERT, e->cfg.cert);
		curl_easy_setopt(e->curl, CURLOPT_SSLKEY, e->cfg.key);
		curl_easy_setopt(e->curl, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(e->curl, CURLOPT_SSL_VERIFYHOST, 2L);
		curl_easy_setopt(e->curl, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
		curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS,
				 (long) e->cfg.connect_timeout_ms);
		if (!w)
			curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long) e->cfg.timeout_ms);
		/* the header promises HTTP/1.1: one stream per connection, simple framing */
		curl_easy_setopt(e->curl, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
		curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e->curl, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(e->curl, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, write);
		curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, warg);
		if (curl_multi_add_handle(e->multi, e->curl) != CURLM_OK) {
			sm_error_set(err, "etcd %s: libcurl refused the transfer", ep);
			rc = -ENOMEM;
			goto free_hdrs;
		}
		while (!done) {
			int running = 0, left;
			CURLMsg *m;

			curl_multi_perform(e->multi, &running);
			while ((m = curl_multi_info_read(e->multi, &left))) {
				if (m->msg == CURLMSG_DONE && m->easy_handle == e->curl) {
					res = m->data.result;
					done = true;
				}
			}
			if (done)
				break;
			if (w && w->rc)
				break; /* the callback or a bad line ended it */
			if (stop && atomic_load(stop)) {
				sm_error_set(err, "etcd %s: watch stopped", ep);
				w->rc = -EINTR;
				break;
			}
			if (w) {
				if (w->line.len != seen || w->got_data) {
					seen = w->line.len;
					w->got_data = false;
					last_data = now_ms();
				}
				if (idle_ms > 0 && now_ms() - last_data > idle_ms) {
					sm_error_set(err,
						     "etcd %s: watch: nothing for %d ms (is etcd "
						     "alive? check its log)",
						     ep, idle_ms);
					w->rc = -ETIMEDOUT;
					break;
				}
			}
			curl_multi_poll(e->multi, NULL, 0, ETCD_POLL_MS, NULL);
		}
		curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, status);
		curl_multi_remove_handle(e->multi, e->curl);
		if (w && w->rc) {
			rc = w->rc;
			goto free_hdrs;
		}
		if (res == CURLE_WRITE_ERROR && !w) {
			sm_error_set(err, "etcd %s: the answer is larger than %u bytes", ep,
				     ETCD_MAX_BODY);
			rc = -EFBIG;
			goto free_hdrs;
		}
		rc = curl_result(e, ep, res, errbuf[0] ? errbuf : curl_easy_strerror(res), &next,
				 err);
		if (rc == 0) {
			e->next = idx;
			snprintf(e->last, sizeof(e->last), "%s", ep);
		}
		if (!next)
			break;
	}
free_hdrs:
	curl_slist_free_all(hdrs);
	return rc;
}

/* err from a gateway error answer: its gRPC code and message. */
static int gw_error(const char *ep, const char *path, int code, const char *msg,
		    struct sm_error *err)
{
	const char *what = "etcd refused the request";
	int rc = -EINVAL;

	switch (code) {
	case GRPC_OUT_OF_RANGE:
		if (strstr(msg, "compacted")) {
			what = "the revision was compacted (list again)";
			rc = -ESTALE;
		}
		break;
	case GRPC_UNAUTHENTICATED:
	case GRPC_PERMISSION:
		what = "access denied (check the etcd user, its password and its roles)";
		rc = -EACCES;
		break;
	case GRPC_INVALID_ARGUMENT:
		if (strstr(msg, "user name is empty")) {
			/* authentication is on and this client sent no token */
			what = "etcd wants a user (set the etcd username and password file)";
			rc = -EACCES;
		} else if (strstr(msg, "too many operations")) {
			what = "too many operations in one transaction (etcd's --max-txn-ops)";
			rc = -E2BIG;
		}
		break;
	case GRPC_NOT_FOUND:
		rc = -ENOENT;
		break;
	case GRPC_DEADLINE:
		rc = -ETIMEDOUT;
		break;
	case GRPC_UNAVAILABLE:
		what = "etcd is unavailable (has it a quorum? check its log)";
		rc = -EAGAIN;
		break;
	default:
		break;
	}
	sm_error_set(err, "etcd %s%s: %s: %s (gRPC code %d)", ep, path, what, msg, code);
	return rc;
}

static bool token_expired(int code, const char *msg)
{
	return code == GRPC_UNAUTHENTICATED && strstr(msg, "token");
}

static int call_once(struct sm_etcd *e, const char *path, json_object *req, json_object **resp,
		     int *gcode, struct sm_error *err)
{
	const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	struct body b = {0};
	json_object *o;
	long status = 0;
	int64_t code;
	int rc;

	*resp = NULL;
	*gcode = 0;
	rc = transfer(e, path, body, write_body, &b, NULL, NULL, 0, &status, err);
	if (rc)
		goto free_body;
	o = parse_json(b.p ? b.p : "", b.len);
	if (!o && status == 400 && b.p && strstr(b.p, "CommonName")) {
		/* etcd 3.4 with authentication on refuses gateway requests whose client
		 * certificate has a Common Name (it would not be used as the user) */
		sm_error_set(err,
			     "etcd %s%s: etcd refuses a client certificate with a Common Name "
			     "while its authentication is on: use a client certificate without a "
			     "Common Name (the identity in its SANs only) as %s",
			     e->last, path, e->cfg.cert);
		rc = -EACCES;
		goto free_body;
	}
	if (!o) {
		sm_error_set(err,
			     "etcd %s%s: HTTP %ld with an answer that is not JSON (is it etcd?)",
			     e->last, path, status);
		rc = -EPROTO;
		goto free_body;
	}
	if (json_object_object_get_ex(o, "error", NULL) || status != 200) {
		json_object *m = get_obj(o, "message", json_type_string);

		if (!m)
			m = get_obj(o, "error", json_type_string);
		get_i64(o, "code", &code);
		*gcode = (int) code;
		rc = gw_error(e->last, path, (int) code, m ? json_object_get_string(m) : "?", err);
		if (token_expired((int) code, m ? json_object_get_string(m) : ""))
			*gcode = -1;
		json_object_put(o);
		goto free_body;
	}
	*resp = o;
free_body:
	body_free(&b);
	return rc;
}

static int authenticate(struct sm_etcd *e, struct sm_error *err)
{
	json_object *req = json_object_new_object(), *resp = NULL, *t;
	int rc, gcode;

	if (!req)
		return -ENOMEM;
	if (e->token) {
		OPENSSL_cleanse(e->token, strlen(e->token));
		free(e->token);
		e->token = NULL;
	}
	json_object_object_add(req, "name", json_object_new_string(e->cfg.username));
	json_object_object_add(req, "password", json_object_new_string(e->password));
	rc = call_once(e, "/v3/auth/authenticate", req, &resp, &gcode, err);
	/* the password is in req's string: wipe it before freeing */
	t = get_obj(req, "password", json_type_string);
	if (t)
		OPENSSL_cleanse((char *) json_object_get_string(t), strlen(e->password));
	json_object_put(req);
	if (rc) {
		/* gcode 0: no answer from etcd's auth (TLS, a certificate with a CN, ...):
		 * err says what it was, the password is not to blame */
		if (gcode && (rc == -EINVAL || rc == -EACCES))
			sm_error_set(err,
				     "etcd %s: authentication of user '%s' failed (check the user "
				     "and its password file %s)",
				     e->last, e->cfg.username, e->cfg.password_file);
		return rc == -EINVAL ? -EACCES : rc;
	}
	t = get_obj(resp, "token", json_type_string);
	if (t)
		e->token = strdup(json_object_get_string(t));
	json_object_put(resp);
	if (!e->token) {
		sm_error_set(err, "etcd %s: authentication answered no token", e->last);
		return -EPROTO;
	}
	return 0;
}

/* One unary call; authenticates first (and again once when the token expired). */
static int call(struct sm_etcd *e, const char *path, json_object *req, json_object **resp,
		struct sm_error *err)
{
	int rc, gcode;

	if (e->cfg.username[0] && !e->token) {
		rc = authenticate(e, err);
		if (rc)
			return rc;
	}
	rc = call_once(e, path, req, resp, &gcode, err);
	if (rc && gcode == -1 && e->cfg.username[0]) {
		rc = authenticate(e, err);
		if (rc)
			return rc;
		rc = call_once(e, path, req, resp, &gcode, err);
	}
	return rc;
}

/* ---- KV ---- */

static int parse_kvs(struct sm_etcd *e, json_object *resp, struct sm_etcd_kvs *out,
		     struct sm_error *err)
{
	json_object *hdr = get_obj(resp, "header", json_type_object);
	json_object *arr = get_obj(resp, "kvs", json_type_array);
	size_t n = arr ? json_object_array_length(arr) : 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (get_i64(hdr, "revision", &out->revision))
		goto bad;
	if (n == 0)
		return 0;
	out->kvs = calloc(n, sizeof(*out->kvs));
	if (!out->kvs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		rc = parse_kv(json_object_array_get_idx(arr, i), &out->kvs[i]);
		out->n = i + 1;
		if (rc) {
			sm_etcd_kvs_free(out);
			if (rc == -ENOMEM)
				return rc;
			goto bad;
		}
	}
	return 0;
bad:
	sm_error_set(err,
		     "etcd %s: a range answer with a bad key-value (bad base64 or a NUL in a key)",
		     e->last);
	return -EPROTO;
}

static int range(struct sm_etcd *e, const char *key, bool prefix, int64_t revision,
		 struct sm_etcd_kvs *out, struct sm_error *err)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	if (!req)
		return -ENOMEM;
	if (add_b64(req, "key", key, strlen(key)) || (prefix && add_range_end(req, key)) ||
	    (revision && add_i64(req, "revision", revision)))
		goto free_req;
	rc = call(e, "/v3/kv/range", req, &resp, err);
	if (rc)
		goto free_req;
	rc = parse_kvs(e, resp, out, err);
	json_object_put(resp);
free_req:
	json_object_put(req);
	return rc;
}

int sm_etcd_get_prefix(struct sm_etcd *e, const char *prefix, int64_t revision,
		       struct sm_etcd_kvs *out, struct sm_error *err)
{
	return range(e, prefix, true, revision, out, err);
}

int sm_etcd_get(struct sm_etcd *e, const char *key, struct sm_etcd_kvs *out, struct sm_error *err)
{
	return range(e, key, false, 0, out, err);
}

static const char *const target_names[] = {
	[SM_ETCD_MOD] = "MOD", [SM_ETCD_CREATE] = "CREATE", [SM_ETCD_VERSION] = "VERSION"};
static const char *const target_fields[] = {[SM_ETCD_MOD] = "mod_revision",
					    [SM_ETCD_CREATE] = "create_revision",
					    [SM_ETCD_VERSION] = "version"};
static const char *const result_names[] = {[SM_ETCD_EQUAL] = "EQUAL",
					   [SM_ETCD_GREATER] = "GREATER",
					   [SM_ETCD_LESS] = "LESS",
					   [SM_ETCD_NOT_EQUAL] = "NOT_EQUAL"};

static json_object *txn_cmp(const struct sm_etcd_cmp *c)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if ((unsigned int) c->target > SM_ETCD_VERSION ||
	    (unsigned int) c->result > SM_ETCD_NOT_EQUAL ||
	    add_b64(o, "key", c->key, strlen(c->key)) || (c->prefix && add_range_end(o, c->key)) ||
	    json_object_object_add(o, "target", json_object_new_string(target_names[c->target])) ||
	    json_object_object_add(o, "result", json_object_new_string(result_names[c->result])) ||
	    add_i64(o, target_fields[c->target], c->value)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static json_object *txn_op(const struct sm_etcd_op *op)
{
	json_object *o = json_object_new_object(), *r = json_object_new_object();

	if (!o || !r)
		goto fail;
	if (add_b64(r, "key", op->key, strlen(op->key)))
		goto fail;
	if (op->type == SM_ETCD_PUT) {
		if (add_b64(r, "value", op->value ? op->value : "",
			    op->value ? op->value_len : 0) ||
		    (op->lease && add_i64(r, "lease", op->lease)))
			goto fail;
		json_object_object_add(o, "request_put", r);
	} else if (op->type == SM_ETCD_DELETE) {
		if (op->prefix && add_range_end(r, op->key))
			goto fail;
		json_object_object_add(o, "request_delete_range", r);
	} else {
		goto fail;
	}
	return o;
fail:
	json_object_put(r);
	json_object_put(o);
	return NULL;
}

int sm_etcd_txn(struct sm_etcd *e, const struct sm_etcd_cmp *cmps, size_t ncmps,
		const struct sm_etcd_op *ops, size_t nops, bool *succeeded, int64_t *revision,
		struct sm_error *err)
{
	json_object *req = json_object_new_object(), *resp = NULL, *c = NULL, *s = NULL;
	int64_t rev;
	int rc = -ENOMEM;

	*succeeded = false;
	if (revision)
		*revision = 0;
	if (!req)
		return -ENOMEM;
	c = json_object_new_array();
	s = json_object_new_array();
	if (!c || !s)
		goto free_req;
	for (size_t i = 0; i < ncmps; i++) {
		json_object *x = txn_cmp(&cmps[i]);

		if (!x || json_object_array_add(c, x)) {
			json_object_put(x);
			sm_error_set(err, "etcd: transaction comparison %zu: bad target or result",
				     i);
			rc = -EINVAL;
			goto free_req;
		}
	}
	for (size_t i = 0; i < nops; i++) {
		json_object *x = txn_op(&ops[i]);

		if (!x || json_object_array_add(s, x)) {
			json_object_put(x);
			sm_error_set(err, "etcd: transaction operation %zu: bad type", i);
			rc = -EINVAL;
			goto free_req;
		}
	}
	json_object_object_add(req, "compare", c);
	json_object_object_add(req, "success", s);
	c = s = NULL;
	rc = call(e, "/v3/kv/txn", req, &resp, err);
	if (rc)
		goto free_req;
	if (get_i64(get_obj(resp, "header", json_type_object), "revision", &rev)) {
		sm_error_set(err, "etcd %s: a transaction answer with a bad header", e->last);
		rc = -EPROTO;
		goto free_resp;
	}
	*succeeded = get_bool(resp, "succeeded");
	if (revision)
		*revision = rev;
free_resp:
	json_object_put(resp);
free_req:
	json_object_put(c);
	json_object_put(s);
	json_object_put(req);
	return rc;
}

int sm_etcd_put(struct sm_etcd *e, const char *key, const char *value, size_t value_len,
		int64_t lease, int64_t *revision, struct sm_error *err)
{
	struct sm_etcd_op op = {.type = SM_ETCD_PUT,
				.key = key,
				.value = value,
				.value_len = value_len,
				.lease = lease};
	bool ok;

	return sm_etcd_txn(e, NULL, 0, &op, 1, &ok, revision, err);
}

int sm_etcd_delete(struct sm_etcd *e, const char *key, bool prefix, int64_t *revision,
		   struct sm_error *err)
{
	struct sm_etcd_op op = {.type = SM_ETCD_DELETE, .key = key, .prefix = prefix};
	bool ok;

	return sm_etcd_txn(e, NULL, 0, &op, 1, &ok, revision, err);
}

/* ---- leases, compaction ---- */

/* A call with one int64 field in the request; resp kept for the caller. */
static int call_i64(struct sm_etcd *e, const char *path, const char *name, int64_t v,
		    json_object **resp, struct sm_error *err)
{
	json_object *req = json_object_new_object();
	int rc;

	if (!req || add_i64(req, name, v)) {
		json_object_put(req);
		return -ENOMEM;
	}
	rc = call(e, path, req, resp, err);
	json_object_put(req);
	return rc;
}

int sm_etcd_lease_grant(struct sm_etcd *e, int ttl_s, int64_t *id, struct sm_error *err)
{
	json_object *resp;
	int rc = call_i64(e, "/v3/lease/grant", "TTL", ttl_s, &resp, err);

	if (rc)
		return rc;
	if (get_i64(resp, "ID", id) || *id == 0) {
		sm_error_set(err, "etcd %s: a lease grant answer without an ID", e->last);
		rc = -EPROTO;
	}
	json_object_put(resp);
	return rc;
}

/*
 * LeaseKeepAlive is a stream; through the gateway one POST sends one request
 * and the answer is one {"result": {...}} line (no TTL: the lease is gone).
 */
int sm_etcd_lease_keepalive(struct sm_etcd *e, int64_t id, int64_t *ttl, struct sm_error *err)
{
	json_object *resp, *res;
	int rc = call_i64(e, "/v3/lease/keepalive", "ID", id, &resp, err);

	*ttl = 0;
	if (rc)
		return rc;
	res = get_obj(resp, "result", json_type_object);
	if (!res || get_i64(res, "TTL", ttl)) {
		sm_error_set(err, "etcd %s: a lease keepalive answer without a result", e->last);
		rc = -EPROTO;
	}
	json_object_put(resp);
	return rc;
}

int sm_etcd_lease_ttl(struct sm_etcd *e, int64_t id, int64_t *left, int64_t *granted,
		      struct sm_error *err)
{
	json_object *resp;
	int rc = call_i64(e, "/v3/lease/timetolive", "ID", id, &resp, err);

	*left = -1;
	*granted = 0;
	if (rc)
		return rc;
	if (get_i64(resp, "TTL", left) || get_i64(resp, "grantedTTL", granted)) {
		sm_error_set(err, "etcd %s: a bad lease time-to-live answer", e->last);
		rc = -EPROTO;
	}
	json_object_put(resp);
	return rc;
}

int sm_etcd_lease_revoke(struct sm_etcd *e, int64_t id, struct sm_error *err)
{
	json_object *resp;
	int rc = call_i64(e, "/v3/lease/revoke", "ID", id, &resp, err);

	if (!rc)
		json_object_put(resp);
	/* etcd answers NOT_FOUND for a lease that expired or was revoked: it is gone */
	return rc == -ENOENT ? 0 : rc;
}

int sm_etcd_compact(struct sm_etcd *e, int64_t revision, struct sm_error *err)
{
	json_object *resp;
	int rc = call_i64(e, "/v3/kv/compaction", "revision", revision, &resp, err);

	if (!rc)
		json_object_put(resp);
	return rc;
}

/* ---- watch ---- */

static int watch_result(struct watch *w, json_object *res)
{
	json_object *hdr = get_obj(res, "header", json_type_object);
	json_object *evs = get_obj(res, "events", json_type_array);
	size_t n = evs ? json_object_array_length(evs) : 0;
	struct sm_etcd_event *ev = NULL;
	int64_t rev, compact;
	int rc = 0;

	if (get_i64(hdr, "revision", &rev) || get_i64(res, "compact_revision", &compact))
		return -EPROTO;
	if (get_bool(res, "canceled")) {
		json_object *why = get_obj(res, "cancel_reason", json_type_string);

		if (compact) {
			*w->compact_revision = compact;
			sm_error_set(w->err,
				     "etcd %s: watch: the start revision was compacted (the oldest "
				     "kept is %lld: list again from there)",
				     w->e->last, (long long) compact);
			return -ESTALE;
		}
		sm_error_set(w->err, "etcd %s: watch canceled by etcd: %s", w->e->last,
			     why ? json_object_get_string(why) : "no reason given");
		return -ECANCELED;
	}
	if (get_bool(res, "created")) {
		w->created = true;
		return w->cb(w->arg, rev, NULL, 0);
	}
	if (n) {
		ev = calloc(n, sizeof(*ev));
		if (!ev)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *j = json_object_array_get_idx(evs, i);
		json_object *type = get_obj(j, "type", json_type_string);

		ev[i].deleted = type && !strcmp(json_object_get_string(type), "DELETE");
		rc = parse_kv(get_obj(j, "kv", json_type_object), &ev[i].kv);
		if (rc)
			goto free_ev;
	}
	rc = w->cb(w->arg, rev, ev, n);
free_ev:
	for (size_t i = 0; i < n; i++)
		kv_free(&ev[i].kv);
	free(ev);
	return rc;
}

static int watch_line(struct watch *w, const char *p, size_t n)
{
	json_object *o, *res, *e;
	int rc;

	while (n && (p[n - 1] == '\r' || p[n - 1] == ' '))
		n--;
	if (!n)
		return 0;
	o = parse_json(p, n);
	if (!o) {
		sm_error_set(w->err, "etcd %s: watch: a line that is not JSON", w->e->last);
		return -EPROTO;
	}
	res = get_obj(o, "result", json_type_object);
	if (res) {
		rc = watch_result(w, res);
		if (rc == -EPROTO)
			sm_error_set(w->err, "etcd %s: watch: a bad event", w->e->last);
	} else if (json_object_object_get_ex(o, "error", &e)) {
		/* a stream error: {"error": {"grpc_code": N, "message": "..."}}; a unary-style
		 * one (HTTP status not 200) has "code" and "message" at the top */
		json_object *src = json_object_is_type(e, json_type_object) ? e : o;
		json_object *m = get_obj(src, "message", json_type_string);
		int64_t code;

		get_i64(src, src == o ? "code" : "grpc_code", &code);
		rc = gw_error(w->e->last, "/v3/watch", (int) code,
			      m ? json_object_get_string(m) : "?", w->err);
	} else {
		sm_error_set(w->err, "etcd %s: watch: a line with neither result nor error",
			     w->e->last);
		rc = -EPROTO;
	}
	json_object_put(o);
	return rc;
}

static size_t write_watch(char *p, size_t size, size_t n, void *arg)
{
	struct watch *w = arg;
	size_t len = size * n, start = 0;
	char *nl;

	if (w->rc)
		return 0;
	w->got_data = true;
	if (body_add(&w->line, p, len)) {
		sm_error_set(w->err, "etcd %s: watch: an answer line longer than %u bytes",
			     w->e->last, ETCD_MAX_BODY);
		w->rc = -EFBIG;
		return 0;
	}
	while ((nl = memchr(w->line.p + start, '\n', w->line.len - start))) {
		int rc = watch_line(w, w->line.p + start, (size_t) (nl - (w->line.p + start)));

		start = (size_t) (nl - w->line.p) + 1;
		if (rc) {
			w->rc = rc;
			return 0;
		}
	}
	memmove(w->line.p, w->line.p + start, w->line.len - start);
	w->line.len -= start;
	w->line.p[w->line.len] = '\0';
	return len;
}

int sm_etcd_watch(struct sm_etcd *e, const char *prefix, int64_t start_revision,
		  sm_etcd_watch_fn cb, void *arg, const atomic_bool *stop, int idle_ms,
		  int64_t *compact_revision, struct sm_error *err)
{
	json_object *req = json_object_new_object(), *cr = json_object_new_object();
	struct watch w = {
		.cb = cb, .arg = arg, .compact_revision = compact_revision, .e = e, .err = err};
	int64_t dummy = 0;
	long status = 0;
	int rc = -ENOMEM;

	if (!compact_revision)
		w.compact_revision = &dummy;
	*w.compact_revision = 0;
	if (!req || !cr)
		goto free_req;
	if (start_revision < 1) {
		sm_error_set(err, "etcd: watch from revision %lld: give a revision >= 1",
			     (long long) start_revision);
		rc = -EINVAL;
		goto free_req;
	}
	if (add_b64(cr, "key", prefix, strlen(prefix)) || add_range_end(cr, prefix) ||
	    add_i64(cr, "start_revision", start_revision) ||
	    json_object_object_add(cr, "progress_notify", json_object_new_boolean(1)))
		goto free_req;
	json_object_object_add(req, "create_request", cr);
	cr = NULL;
	if (e->cfg.username[0] && !e->token) {
		rc = authenticate(e, err);
		if (rc)
			goto free_req;
	}
	rc = transfer(e, "/v3/watch", json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN),
		      write_watch, &w, &w, stop, idle_ms, &status, err);
	if (rc == 0 && w.line.len && status != 200) {
		/* an error answer without a newline at its end */
		rc = watch_line(&w, w.line.p, w.line.len);
	}
	if (rc == 0) {
		sm_error_set(err, "etcd %s: the watch stream ended (HTTP %ld; check etcd's log)",
			     e->last, status);
		rc = -ECONNRESET;
	}
	if (rc == -EACCES && e->token) {
		/* the token may have expired: a new one for the caller's next watch */
		OPENSSL_cleanse(e->token, strlen(e->token));
		free(e->token);
		e->token = NULL;
	}
free_req:
	body_free(&w.line);
	json_object_put(cr);
	json_object_put(req);
	return rc;
}
