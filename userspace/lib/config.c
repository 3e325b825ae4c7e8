// SPDX-License-Identifier: Apache-2.0
/* sockmeshd configuration: defaults, the YAML file and dotted-key overrides, all checked alike. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sockmesh/common.h"

#include "flow_record.h"
#include "flowfilter.h"
#include "log.h"
#include "metrics_agg.h"
#include "yaml_doc.h"

/* How a key's text is checked and stored. */
enum cfg_kind {
	CK_NAME,     /* char[64]: [A-Za-z0-9._-]{1,63} */
	CK_NAME_OPT, /* the same, or "" */
	CK_PATH,     /* char[PATH_MAX]: non-empty */
	CK_PATH_OPT, /* char[PATH_MAX]: may be "" */
	CK_ABS,	     /* char[PATH_MAX]: absolute */
	CK_ABS_OPT,  /* char[PATH_MAX]: "" or absolute */
	CK_SOCK,     /* char[PATH_MAX]: absolute, fits sun_path */
	CK_ADDR4,    /* struct sm_addr + uint16_t port: IPv4 ADDRESS:PORT */
	CK_ADDR6,    /* same, IPv6 [ADDRESS]:PORT */
	CK_ADDR,     /* same, either family */
	CK_PORT,     /* uint16_t */
	CK_U32,	     /* uint32_t within [min, max] */
	CK_POW2,     /* uint32_t within [min, max], a power of two */
	CK_BOOL,     /* bool */
	CK_LOGLEVEL, /* int: error|warn|info|debug */
	CK_SIZE,    /* uint64_t bytes with an optional KiB/MiB/GiB suffix: 0 or within [min, max] */
	CK_FILTERS, /* struct sm_config_list of flow filters (flowfilter.h) */
	CK_FIELDS,  /* struct sm_config_list of flow record field paths */
	CK_ADDR_OPT, /* same as CK_ADDR, or "": address zeroed, port 0 (turned off) */
	CK_URLS,     /* struct sm_config_list of https:// URLs */
	CK_PREFIX,   /* char[128]: an etcd key prefix, "/.../" (clusterstore.h) */
};

struct cfg_key {
	const char *section; /* NULL: top level */
	const char *name;
	enum cfg_kind kind;
	size_t off;	   /* the field */
	size_t port_off;   /* CK_ADDR*: the port field */
	uint64_t min, max; /* CK_U32, CK_POW2 */
	const char *fix;   /* what to do, for messages */
};

#define F(field) offsetof(struct sm_config, field)

static const struct cfg_key cfg_keys[] = {
	{NULL, "node", CK_NAME, F(node), 0, 0, 0,
	 "set this node's name as in the catalog: 1 to 63 letters, digits, '.', '_' or '-'"},
	{NULL, "catalog", CK_PATH, F(catalog), 0, 0, 0, "set the path of the catalog file"},
	{"paths", "bpffs", CK_ABS, F(bpffs), 0, 0, 0,
	 "set an absolute directory on bpffs, e.g. /sys/fs/bpf/sockmesh"},
	{"paths", "cgroup_root", CK_ABS_OPT, F(cgroup_root), 0, 0, 0,
	 "set the absolute path of the cgroup v2 mount, or \"\" to find it in "
	 "/proc/self/mountinfo"},
	{"paths", "daemon_cgroup", CK_ABS_OPT, F(daemon_cgroup), 0, 0, 0,
	 "set the absolute path of the daemon's cgroup directory, or \"\" for the one it runs in"},
	{"paths", "enrollment_root", CK_ABS_OPT, F(enrollment_root), 0, 0, 0,
	 "set the absolute path of the cgroup that holds this node's workloads, e.g. "
	 "/sys/fs/cgroup/system.slice, or \"\" for the parent of the daemon's cgroup"},
	{"paths", "control_socket", CK_SOCK, F(control_socket), 0, 0, 0,
	 "set an absolute path of at most 107 bytes, e.g. /run/sockmesh/sockmesh.sock"},
	{"paths", "state_dir", CK_ABS, F(state_dir), 0, 0, 0,
	 "set an absolute directory, e.g. /var/lib/sockmesh"},
	{"listeners", "outbound", CK_ADDR4, F(outbound_addr), F(outbound_port), 0, 0,
	 "set an IPv4 ADDRESS:PORT, e.g. 127.0.0.1:15001"},
	{"listeners", "outbound6", CK_ADDR6, F(outbound6_addr), F(outbound6_port), 0, 0,
	 "set an IPv6 [ADDRESS]:PORT in quotes, e.g. \"[::1]:15001\""},
	{"listeners", "inbound_port", CK_PORT, F(inbound_port), 0, 1, 65535,
	 "set a TCP port, e.g. 15008"},
	{"listeners", "workers", CK_U32, F(workers), 0, 0, 256,
	 "set a number of worker threads, or 0 for one per CPU, e.g. 2"},
	{"listeners", "busy_poll", CK_U32, F(busy_poll), 0, 0, 1000,
	 "set how many microseconds a worker keeps polling after its events before it sleeps, "
	 "0..1000, e.g. 50, or 0 to always sleep"},
	{"listeners", "admin", CK_ADDR_OPT, F(admin_addr), F(admin_port), 0, 0,
	 "set ADDRESS:PORT, e.g. 127.0.0.1:15020, or \"\" for no admin server"},
	{"admin", "max_connections", CK_U32, F(admin_max_connections), 0, 16, 1000000,
	 "set how many connections the admin server holds at once, e.g. 4096"},
	{"admin", "idle_timeout", CK_U32, F(admin_idle_timeout), 0, 1, 3600,
	 "set after how many seconds an idle or slow admin connection is closed, e.g. 10"},
	{"daemon", "drain_timeout", CK_U32, F(drain_timeout), 0, 0, 3600,
	 "set how many seconds a stopping or upgraded daemon lets its relayed and tunnelled "
	 "connections finish, 0..3600, e.g. 5"},
	{"control", "max_clients", CK_U32, F(control_max_clients), 0, 1, 65536,
	 "set how many control clients may be connected at once, e.g. 64"},
	{"control", "idle_timeout", CK_U32, F(control_idle_timeout), 0, 1, 3600,
	 "set after how many seconds a control client that sends or reads nothing is closed, "
	 "e.g. 10"},
	{"metrics", "max_series", CK_U32, F(metrics_max_series), 0, 1, SM_METRICS_MAX_MAX_SERIES,
	 "set how many label sets the tcp metrics keep before counting new ones as other, e.g. "
	 "10000"},
	{"datapath", "daemon_mark", CK_U32, F(daemon_mark), 0, 1, UINT32_MAX,
	 "set a non-zero SO_MARK value, e.g. 0x5ec0de"},
	{"datapath", "redirect", CK_BOOL, F(redirect), 0, 0, 0, "set true or false"},
	{"datapath", "fail_open", CK_BOOL, F(fail_open), 0, 0, 0, "set true or false"},
	{"datapath", "flow_update_interval", CK_U32, F(flow_update_interval), 0, 1, 3600,
	 "set a number of seconds"},
	{"datapath", "max_workloads", CK_U32, F(max_workloads), 0, 1, 16777216,
	 "set a number of map entries"},
	{"datapath", "max_services", CK_U32, F(max_services), 0, 1, 16777216,
	 "set a number of map entries"},
	{"datapath", "max_cidrs", CK_U32, F(max_cidrs), 0, 1, 16777216,
	 "set a number of map entries"},
	{"datapath", "max_orig_dst", CK_U32, F(max_orig_dst), 0, 1, 16777216,
	 "set a number of map entries"},
	{"datapath", "max_sockhash", CK_U32, F(max_sockhash), 0, 1, 16777216,
	 "set a number of map entries"},
	{"datapath", "max_policy_entries", CK_U32, F(max_policy_entries), 0, 1, 16777216,
	 "set a number of map entries"},
	{"datapath", "ringbuf_size", CK_POW2, F(ringbuf_size), 0, 4096, 1073741824,
	 "set a power of two number of bytes, e.g. 1048576"},
	{"datapath", "transparent_mark", CK_U32, F(transparent_mark), 0, 0, UINT32_MAX,
	 "set an SO_MARK value other than daemon_mark, e.g. 0x5ec0df, or 0 to turn real "
	 "addresses off"},
	{"datapath", "transparent_table", CK_U32, F(transparent_table), 0, 1, 0xfffffffe,
	 "set a routing table number no other route uses, e.g. 15006 (not 253, 254, 255)"},
	{"tunnel", "hbone", CK_BOOL, F(tunnel_hbone), 0, 0, 0, "set true or false"},
	{"tunnel", "max_streams", CK_U32, F(tunnel_max_streams), 0, 1, 10000,
	 "set the number of streams one mTLS connection may carry, e.g. 100"},
	{"tunnel", "idle_timeout", CK_U32, F(tunnel_idle_timeout), 0, 1, 86400,
	 "set a number of seconds, e.g. 300"},
	{"tunnel", "handshake_timeout", CK_U32, F(tunnel_handshake_timeout), 0, 1, 300,
	 "set a number of seconds, e.g. 10"},
	{"tunnel", "max_handshakes_per_source", CK_U32, F(tunnel_max_handshakes_per_source), 0, 1,
	 256, "set how many handshakes one address may have in flight per worker, e.g. 64"},
	{"tunnel", "keepalive_interval", CK_U32, F(tunnel_keepalive_interval), 0, 1, 86400,
	 "set after how many silent seconds a tunnel connection is pinged, e.g. 30"},
	{"tunnel", "keepalive_timeout", CK_U32, F(tunnel_keepalive_timeout), 0, 1, 3600,
	 "set how many seconds a ping may go unanswered before the connection is closed, e.g. 10"},
	{"tunnel", "sni", CK_BOOL, F(tunnel_sni), 0, 0, 0, "set true or false"},
	{"tunnel", "expiry_warning", CK_U32, F(tunnel_expiry_warning), 0, 0, 31536000,
	 "set how many seconds before expiry credentials are warned about, e.g. 3600"},
	{"flowlog", "file", CK_PATH_OPT, F(flowlog_file), 0, 0, 0,
	 "set a file path, or \"\" for no file sink"},
	{"flowlog", "stdout", CK_BOOL, F(flowlog_stdout), 0, 0, 0, "set true or false"},
	{"flowlog", "max_size", CK_SIZE, F(flowlog_max_size), 0, SM_FLOWLOG_MIN_SIZE, 1ULL << 40,
	 "set a size in bytes, optionally with a KiB, MiB or GiB suffix, of at least 16KiB, "
	 "e.g. 10MiB; or 0 to never rotate"},
	{"flowlog", "max_backups", CK_U32, F(flowlog_max_backups), 0, 0, 1000,
	 "set how many rotated files to keep, e.g. 5"},
	{"flowlog", "compress", CK_BOOL, F(flowlog_compress), 0, 0, 0, "set true or false"},
	{"flowlog", "rotate_min_interval", CK_U32, F(flowlog_rotate_min_interval), 0, 0, 3600,
	 "set how many seconds a live file is kept at least before it is rotated, e.g. 1; "
	 "or 0 to rotate at max_size at once"},
	{"flowlog", "allow", CK_FILTERS, F(flowlog_allow), 0, 0, 0,
	 "set a list of flow filters, e.g. [\"verdict=DROPPED\", \"to-port=443\"] "
	 "(docs/flow-schema.md, Filters)"},
	{"flowlog", "deny", CK_FILTERS, F(flowlog_deny), 0, 0, 0,
	 "set a list of flow filters, e.g. [\"type=conn_update\"] (docs/flow-schema.md, Filters)"},
	{"flowlog", "fields", CK_FIELDS, F(flowlog_fields), 0, 0, 0,
	 "set a list of record fields to keep, e.g. [verdict, source.ip, destination] "
	 "(docs/flow-schema.md)"},
	{"flowlog", "denied_rate", CK_U32, F(flowlog_denied_rate), 0, 0, 1000000,
	 "set DROPPED/AUDIT records per second per source, e.g. 100, or 0 for no limit"},
	{"flowlog", "denied_burst", CK_U32, F(flowlog_denied_burst), 0, 1, 1000000,
	 "set how many DROPPED/AUDIT records a source may send at once, e.g. 200"},
	{"flowlog", "ring_size", CK_U32, F(flowlog_ring_size), 0, 0, 65536,
	 "set how many recent records `sockmesh flows` can see, or 0 to turn the stream off, e.g. "
	 "4096"},
	{"log", "level", CK_LOGLEVEL, F(log_level), 0, 0, 0, "set one of error, warn, info, debug"},
	{"cluster", "lease_ttl", CK_U32, F(cluster_lease_ttl), 0, 2, 300,
	 "set the seconds a node's registration outlives its last contact with etcd, 2 to 300"},
	{"cluster", "start_timeout", CK_U32, F(cluster_start_timeout), 0, 1, 3600,
	 "set the seconds a first start (no state saved yet) waits for etcd, 1 to 3600"},
	{"cluster.etcd", "endpoints", CK_URLS, F(etcd_endpoints), 0, 0, 0,
	 "list etcd's client URLs, each https://HOST:PORT (mutual TLS only)"},
	{"cluster.etcd", "ca", CK_ABS_OPT, F(etcd_ca), 0, 0, 0,
	 "set the absolute path of the CA certificate (PEM) that signed etcd's certificate"},
	{"cluster.etcd", "cert", CK_ABS_OPT, F(etcd_cert), 0, 0, 0,
	 "set the absolute path of this node's etcd client certificate (PEM)"},
	{"cluster.etcd", "key", CK_ABS_OPT, F(etcd_key), 0, 0, 0,
	 "set the absolute path of that certificate's private key (PEM)"},
	{"cluster.etcd", "username", CK_NAME_OPT, F(etcd_username), 0, 0, 0,
	 "set the etcd user for role-based access control: 1 to 63 letters, digits, '.', '_' "
	 "or '-'"},
	{"cluster.etcd", "password_file", CK_ABS_OPT, F(etcd_password_file), 0, 0, 0,
	 "set the absolute path of a file holding the etcd user's password"},
	{"cluster.etcd", "prefix", CK_PREFIX, F(etcd_prefix), 0, 0, 0,
	 "set a key prefix that starts and ends with '/', e.g. /sockmesh/"},
};

#undef F

/* The top-level keys: the two scalars first, then the sections. */
static const char *const top_keys[] = {"node",	  "catalog", "paths", "listeners", "datapath",
				       "tunnel",  "flowlog", "log",   "metrics",   "admin",
				       "control", "cluster", "daemon"};

void sm_config_defaults(struct sm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* the constants below fit their buffers; a failure would be a build bug */
	sm_strlcpy(cfg->catalog, "/etc/sockmesh/catalog.yaml", sizeof(cfg->catalog));
	sm_strlcpy(cfg->bpffs, "/sys/fs/bpf/sockmesh", sizeof(cfg->bpffs));
	sm_strlcpy(cfg->control_socket, "/run/sockmesh/sockmesh.sock", sizeof(cfg->control_socket));
	sm_strlcpy(cfg->state_dir, "/var/lib/sockmesh", sizeof(cfg->state_dir));
	sm_addr_parse("127.0.0.1", &cfg->outbound_addr);
	cfg->outbound_port = SM_DEFAULT_OUTBOUND_PORT;
	sm_addr_parse("::1", &cfg->outbound6_addr);
	cfg->outbound6_port = SM_DEFAULT_OUTBOUND_PORT;
	cfg->inbound_port = SM_DEFAULT_INBOUND_PORT;
	sm_addr_parse("127.0.0.1", &cfg->admin_addr);
	cfg->admin_port = SM_DEFAULT_ADMIN_PORT;
	cfg->admin_max_connections = 4096;
	cfg->admin_idle_timeout = 10;
	cfg->control_max_clients = 64;
	cfg->control_idle_timeout = 10;
	cfg->drain_timeout = 5;
	cfg->busy_poll = 100; /* the wait for an answer through the far node, docs/tunnel.md */
	cfg->metrics_max_series = SM_METRICS_DEFAULT_MAX_SERIES;
	cfg->daemon_mark = SM_DEFAULT_DAEMON_MARK;
	cfg->transparent_mark = SM_DEFAULT_TRANSPARENT_MARK;
	cfg->transparent_table = SM_DEFAULT_TRANSPARENT_TABLE;
	cfg->redirect = false;
	cfg->tunnel_hbone = true;
	cfg->tunnel_max_streams = 100;
	cfg->tunnel_idle_timeout = 300;
	cfg->tunnel_handshake_timeout = 10;
	cfg->tunnel_max_handshakes_per_source = 64;
	cfg->tunnel_expiry_warning = 3600;
	cfg->tunnel_keepalive_interval = 30;
	cfg->tunnel_keepalive_timeout = 10;
	cfg->fail_open = false;
	cfg->flow_update_interval = 10;
	cfg->max_workloads = 4096;
	cfg->max_services = 65536;
	cfg->max_cidrs = 16384;
	cfg->max_orig_dst = 65536;
	cfg->max_sockhash = 65536;
	cfg->max_policy_entries = 65536;
	/*
	 * 16 MiB: about 95,000 events (176 bytes each with the ring's header),
	 * 0.8 s of 30,000 new same-node connections/s (4 events each) with the
	 * reader getting no CPU at all. 1 MiB lost half of a storm's events
	 * (bench/README.md).
	 */
	cfg->ringbuf_size = 16U << 20;
	cfg->flowlog_stdout = false;
	cfg->flowlog_max_size = 10ULL << 20;
	cfg->flowlog_max_backups = 5;
	cfg->flowlog_compress = true;
	cfg->flowlog_rotate_min_interval = 1;
	cfg->flowlog_denied_rate = 100;
	cfg->flowlog_denied_burst = 200;
	cfg->flowlog_ring_size = 4096;
	cfg->log_level = SM_LOG_INFO;
	sm_strlcpy(cfg->etcd_prefix, "/sockmesh/", sizeof(cfg->etcd_prefix));
	cfg->cluster_lease_ttl = 10;
	cfg->cluster_start_timeout = 30;
}

static bool name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Printable ASCII without spaces or quotes (an etcd key prefix). */
static bool printable_word(const char *s)
{
	for (; *s; s++)
		if (*s <= ' ' || *s > '~' || *s == '"' || *s == '\'' || *s == '\\')
			return false;
	return true;
}

static const char *key_dotted(const struct cfg_key *k, char *buf, size_t len)
{
	if (k->section)
		snprintf(buf, len, "%s.%s", k->section, k->name);
	else
		snprintf(buf, len, "%s", k->name);
	return buf;
}

const char *sm_config_key_name(size_t i, char *buf, size_t len)
{
	if (i >= SM_ARRAY_SIZE(cfg_keys))
		return NULL;
	return key_dotted(&cfg_keys[i], buf, len);
}

/* "N", "NKiB", "NMiB" or "NGiB" into bytes. 0, -EINVAL or -ERANGE. */
static int parse_size(const char *text, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned int shift;
	} units[] = {{"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
	char digits[32];
	size_t n = strspn(text, "0123456789");
	unsigned int shift = 0;
	uint64_t v;
	int ret;

	if (n == 0 || n >= sizeof(digits))
		return n ? -ERANGE : -EINVAL;
	if (text[n]) {
		size_t i;

		for (i = 0; i < SM_ARRAY_SIZE(units); i++)
			if (strcmp(text + n, units[i].suffix) == 0)
				break;
		if (i == SM_ARRAY_SIZE(units))
			return -EINVAL;
		shift = units[i].shift;
	}
	memcpy(digits, text, n);
	digits[n] = '\0';
	ret = sm_parse_u64(digits, 0, UINT64_MAX >> shift, &v);
	if (ret)
		return ret;
	*out = v << shift;
	return 0;
}

/* One item of a list key: a filter that parses, or a known field path. */
static int list_item_check(const struct cfg_key *k, const char *item, const char *where,
			   const char *key, struct sm_error *err)
{
	struct sm_flowfilter *f = NULL;
	struct sm_error ferr = {{0}};
	int ret;

	if (strlen(item) >= SM_CONFIG_ITEM_MAX) {
		sm_error_set(err, "%s%s: an item of %zu bytes is longer than %d (%s)", where, key,
			     strlen(item), SM_CONFIG_ITEM_MAX - 1, k->fix);
		return -ERANGE;
	}
	if (k->kind == CK_URLS) {
		if (strncmp(item, "https://", 8) == 0 && item[8] && !strpbrk(item, " \t\"'"))
			return 0;
		sm_error_set(err, "%s%s: '%.100s' is not an https:// URL (%s)", where, key, item,
			     k->fix);
		return -EINVAL;
	}
	if (k->kind == CK_FIELDS) {
		if (sm_flow_field_known(item))
			return 0;
		sm_error_set(err,
			     "%s%s: '%.100s' is not a flow record field (name a top-level field "
			     "such as verdict or tls, or a member such as source.ip; see "
			     "docs/flow-schema.md)",
			     where, key, item);
		return -EINVAL;
	}
	ret = sm_flowfilter_parse(item, &f, &ferr);
	sm_flowfilter_free(f);
	if (ret == -EINVAL)
		sm_error_set(err, "%s%s: %s", where, key, ferr.msg);
	else if (ret)
		sm_error_set(err, "%s%s: out of memory", where, key);
	return ret;
}

/* Check every item, then store them all (n == 0: the empty list). */
static int list_apply(struct sm_config *cfg, const struct cfg_key *k, const char *const *items,
		      size_t n, const char *where, struct sm_error *err)
{
	struct sm_config_list *list = (struct sm_config_list *) ((char *) cfg + k->off);
	char key[64];
	int ret;

	key_dotted(k, key, sizeof(key));
	if (n > SM_CONFIG_LIST_MAX) {
		sm_error_set(err, "%s%s: %zu items, at most %d (%s)", where, key, n,
			     SM_CONFIG_LIST_MAX, k->fix);
		return -ERANGE;
	}
	for (size_t i = 0; i < n; i++) {
		ret = list_item_check(k, items[i], where, key, err);
		if (ret)
			return ret;
	}
	memset(list, 0, sizeof(*list));
	for (size_t i = 0; i < n; i++)
		sm_strlcpy(list->items[i], items[i], SM_CONFIG_ITEM_MAX);
	list->n = (uint32_t) n;
	return 0;
}

/*
 * A list key set from one string (a flag): "" is the empty list; a filter
 * list takes the string as its one filter; field and URL lists are
 * comma-separated.
 */
static int list_apply_text(struct sm_config *cfg, const struct cfg_key *k, const char *text,
			   const char *where, struct sm_error *err)
{
	const char *items[SM_CONFIG_LIST_MAX + 1];
	char buf[SM_CONFIG_LIST_MAX * SM_CONFIG_ITEM_MAX], *save = NULL, *tok;
	size_t n = 0;

	if (!*text)
		return list_apply(cfg, k, NULL, 0, where, err);
	if (k->kind == CK_FILTERS) {
		items[0] = text;
		return list_apply(cfg, k, items, 1, where, err);
	}
	if (sm_strlcpy(buf, text, sizeof(buf))) {
		sm_error_set(err, "%s%s: too long (%s)", where, k->name, k->fix);
		return -ERANGE;
	}
	for (tok = strtok_r(buf, ",", &save); tok && n <= SM_CONFIG_LIST_MAX;
	     tok = strtok_r(NULL, ",", &save))
		items[n++] = tok;
	return list_apply(cfg, k, items, n, where, err);
}

/*
 * The appliers of one kind of key each: check text for key k (dotted name
 * key) and, only when it is valid, store it at base + k->off. where is
 * "FILE:LINE: " or "" and starts every message. 0, -EINVAL or -ERANGE.
 */
static int apply_invalid(const struct cfg_key *k, const char *key, const char *text,
			 const char *where, struct sm_error *err)
{
	sm_error_set(err, "%s%s: '%.200s' is not valid (%s)", where, key, text, k->fix);
	return -EINVAL;
}

static int apply_path(char *base, const struct cfg_key *k, const char *key, const char *text,
		      const char *where, struct sm_error *err)
{
	if (!*text && k->kind != CK_PATH_OPT && k->kind != CK_ABS_OPT) {
		sm_error_set(err, "%s%s: empty (%s)", where, key, k->fix);
		return -EINVAL;
	}
	if (*text && k->kind != CK_PATH && k->kind != CK_PATH_OPT && *text != '/') {
		sm_error_set(err, "%s%s: '%.200s' is not an absolute path (%s)", where, key, text,
			     k->fix);
		return -EINVAL;
	}
	if (k->kind == CK_SOCK && strlen(text) >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
		sm_error_set(err, "%s%s: %zu bytes is too long for a Unix socket path (%s)", where,
			     key, strlen(text), k->fix);
		return -ERANGE;
	}
	if (strlen(text) >= PATH_MAX) {
		sm_error_set(err, "%s%s: path longer than %d bytes (%s)", where, key, PATH_MAX - 1,
			     k->fix);
		return -ERANGE;
	}
	sm_strlcpy(base + k->off, text, PATH_MAX);
	return 0;
}

static int apply_addr(char *base, const struct cfg_key *k, const char *key, const char *text,
		      const char *where, struct sm_error *err)
{
	struct sm_addr addr = {0};
	uint16_t port = 0;

	if (k->kind == CK_ADDR_OPT && !*text)
		goto store; /* "" = off */
	if (sm_addrport_parse(text, &addr, &port))
		return apply_invalid(k, key, text, where, err);
	if ((k->kind == CK_ADDR4 && addr.family != AF_INET) ||
	    (k->kind == CK_ADDR6 && addr.family != AF_INET6)) {
		sm_error_set(err, "%s%s: '%.200s' is an %s address (%s)", where, key, text,
			     addr.family == AF_INET ? "IPv4" : "IPv6", k->fix);
		return -EINVAL;
	}
store:
	memcpy(base + k->off, &addr, sizeof(addr));
	memcpy(base + k->port_off, &port, sizeof(port));
	return 0;
}

static int apply_number(char *base, const struct cfg_key *k, const char *key, const char *text,
			const char *where, struct sm_error *err)
{
	uint64_t v;
	int ret = sm_parse_u64(text, k->min, k->max, &v);

	if (ret == -ERANGE) {
		sm_error_set(err, "%s%s: %.100s is out of range %llu..%llu (%s)", where, key, text,
			     (unsigned long long) k->min, (unsigned long long) k->max, k->fix);
		return -ERANGE;
	}
	if (ret) {
		sm_error_set(err, "%s%s: '%.100s' is not a number (%s)", where, key, text, k->fix);
		return -EINVAL;
	}
	if (k->kind == CK_POW2 && (v & (v - 1))) {
		sm_error_set(err, "%s%s: %.100s is not a power of two (%s)", where, key, text,
			     k->fix);
		return -EINVAL;
	}
	if (k->kind == CK_PORT) {
		uint16_t port = (uint16_t) v;

		memcpy(base + k->off, &port, sizeof(port));
	} else {
		uint32_t v32 = (uint32_t) v;

		memcpy(base + k->off, &v32, sizeof(v32));
	}
	return 0;
}

static int apply_size(char *base, const struct cfg_key *k, const char *key, const char *text,
		      const char *where, struct sm_error *err)
{
	uint64_t v;
	int ret = parse_size(text, &v);

	if (ret == -EINVAL)
		return apply_invalid(k, key, text, where, err);
	if (ret || (v && (v < k->min || v > k->max))) {
		sm_error_set(err, "%s%s: %.100s is out of range (%s)", where, key, text, k->fix);
		return -ERANGE;
	}
	memcpy(base + k->off, &v, sizeof(v));
	return 0;
}

/* Check text for key k and, only when it is valid, store it in cfg (see the appliers). */
static int cfg_apply(struct sm_config *cfg, const struct cfg_key *k, const char *text,
		     const char *where, struct sm_error *err)
{
	char *base = (char *) cfg;
	char key[64];
	bool b;
	int level;

	key_dotted(k, key, sizeof(key));
	switch (k->kind) {
	case CK_NAME:
	case CK_NAME_OPT:
		if (!name_valid(text) && (k->kind == CK_NAME || *text))
			break;
		sm_strlcpy(base + k->off, text, SM_ARRAY_SIZE(cfg->node));
		return 0;
	case CK_PATH:
	case CK_PATH_OPT:
	case CK_ABS:
	case CK_ABS_OPT:
	case CK_SOCK:
		return apply_path(base, k, key, text, where, err);
	case CK_ADDR_OPT:
	case CK_ADDR4:
	case CK_ADDR6:
	case CK_ADDR:
		return apply_addr(base, k, key, text, where, err);
	case CK_PORT:
	case CK_U32:
	case CK_POW2:
		return apply_number(base, k, key, text, where, err);
	case CK_BOOL:
		if (sm_parse_bool(text, &b)) {
			sm_error_set(err, "%s%s: '%.100s' is not true or false (%s)", where, key,
				     text, k->fix);
			return -EINVAL;
		}
		memcpy(base + k->off, &b, sizeof(b));
		return 0;
	case CK_LOGLEVEL:
		level = sm_log_level_parse(text);
		if (level < 0)
			break;
		memcpy(base + k->off, &level, sizeof(level));
		return 0;
	case CK_SIZE:
		return apply_size(base, k, key, text, where, err);
	case CK_FILTERS:
	case CK_FIELDS:
	case CK_URLS:
		return list_apply_text(cfg, k, text, where, err);
	case CK_PREFIX:
		if (strlen(text) < 2 || strlen(text) >= SM_ARRAY_SIZE(cfg->etcd_prefix) ||
		    text[0] != '/' || text[strlen(text) - 1] != '/' || !printable_word(text))
			break;
		sm_strlcpy(base + k->off, text, SM_ARRAY_SIZE(cfg->etcd_prefix));
		return 0;
	}
	return apply_invalid(k, key, text, where, err);
}

static const struct cfg_key *cfg_key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < SM_ARRAY_SIZE(cfg_keys); i++) {
		const struct cfg_key *k = &cfg_keys[i];

		if (strcmp(k->name, name) != 0)
			continue;
		if ((!section && !k->section) ||
		    (section && k->section && strcmp(section, k->section) == 0))
			return k;
	}
	return NULL;
}

/* "a, b, c": the keys of one section (NULL = top level), for unknown-key messages. */
static const char *section_keys(const char *section, char *buf, size_t len)
{
	const char *names[SM_ARRAY_SIZE(cfg_keys)];
	size_t n = 0;

	if (!section)
		return sm_ykeys_join(top_keys, SM_ARRAY_SIZE(top_keys), buf, len);
	for (size_t i = 0; i < SM_ARRAY_SIZE(cfg_keys); i++)
		if (cfg_keys[i].section && strcmp(cfg_keys[i].section, section) == 0)
			names[n++] = cfg_keys[i].name;
	return sm_ykeys_join(names, n, buf, len);
}

/* "paths, listeners, ...": the sections, for unknown-key messages. */
static const char *section_names(char *buf, size_t len)
{
	return sm_ykeys_join(top_keys + 2, SM_ARRAY_SIZE(top_keys) - 2, buf, len);
}

static bool section_known(const char *name)
{
	for (size_t i = 0; i < SM_ARRAY_SIZE(cfg_keys); i++)
		if (cfg_keys[i].section && strcmp(cfg_keys[i].section, name) == 0)
			return true;
	return false;
}

/* The value of a list key in the file: a list of single values; null or [] is empty. */
static int cfg_apply_list_node(struct sm_config *cfg, const struct cfg_key *k,
			       const struct sm_ynode *val, const char *file, const char *where,
			       struct sm_error *err)
{
	const char *items[SM_CONFIG_LIST_MAX];
	char key[64], item_where[PATH_MAX + 32];
	int ret;

	if (sm_ynode_is_null(val))
		return list_apply(cfg, k, NULL, 0, where, err);
	key_dotted(k, key, sizeof(key));
	if (val->type != SM_YNODE_LIST) {
		sm_error_set(err, "%s%s: expected a list, found %s (%s)", where, key,
			     sm_ynode_kind(val), k->fix);
		return -EINVAL;
	}
	if (val->n > SM_CONFIG_LIST_MAX) {
		sm_error_set(err, "%s%s: %zu items, at most %d (%s)", where, key, val->n,
			     SM_CONFIG_LIST_MAX, k->fix);
		return -ERANGE;
	}
	for (size_t i = 0; i < val->n; i++) {
		if (val->vals[i]->type != SM_YNODE_SCALAR || sm_ynode_is_null(val->vals[i])) {
			sm_error_set(err, "%s%s: item %zu: expected a single value, found %s (%s)",
				     where, key, i + 1, sm_ynode_kind(val->vals[i]), k->fix);
			return -EINVAL;
		}
		items[i] = val->vals[i]->text;
		/* checked here too, so that a message names the item's own line */
		snprintf(item_where, sizeof(item_where), "%s:%u: ", file, val->vals[i]->line);
		ret = list_item_check(k, items[i], item_where, key, err);
		if (ret)
			return ret;
	}
	return list_apply(cfg, k, items, val->n, where, err);
}

/* One value node of the file for key k: a single value, null meaning "". */
static int cfg_apply_node(struct sm_config *cfg, const struct cfg_key *k,
			  const struct sm_ynode *val, const char *file, struct sm_error *err)
{
	char where[PATH_MAX + 32], key[64];

	snprintf(where, sizeof(where), "%s:%u: ", file, val->line);
	if (k->kind == CK_FILTERS || k->kind == CK_FIELDS || k->kind == CK_URLS)
		return cfg_apply_list_node(cfg, k, val, file, where, err);
	if (val->type != SM_YNODE_SCALAR) {
		sm_error_set(err, "%s%s: expected a single value, found %s (%s)", where,
			     key_dotted(k, key, sizeof(key)), sm_ynode_kind(val), k->fix);
		return -EINVAL;
	}
	return cfg_apply(cfg, k, sm_ynode_is_null(val) ? "" : val->text, where, err);
}

static int cfg_apply_section(struct sm_config *cfg, const char *section, const struct sm_ynode *map,
			     const char *file, struct sm_error *err)
{
	char known[256];
	int ret;

	if (sm_ynode_is_null(map))
		return 0; /* "paths:" with nothing under it */
	if (map->type != SM_YNODE_MAP) {
		sm_error_set(err, "%s:%u: %s: expected a mapping, found %s (put keys under it: %s)",
			     file, map->line, section, sm_ynode_kind(map),
			     section_keys(section, known, sizeof(known)));
		return -EINVAL;
	}
	for (size_t i = 0; i < map->n; i++) {
		const struct cfg_key *k = cfg_key_find(section, map->keys[i]->text);
		char sub[32];

		/* a section inside a section: cluster: etcd: ... is section "cluster.etcd" */
		if (!k &&
		    (size_t) snprintf(sub, sizeof(sub), "%s.%s", section, map->keys[i]->text) <
			    sizeof(sub) &&
		    section_known(sub)) {
			ret = cfg_apply_section(cfg, sub, map->vals[i], file, err);
			if (ret)
				return ret;
			continue;
		}
		if (!k) {
			sm_error_set(err, "%s:%u: unknown key '%s.%.60s' (known keys in %s: %s)",
				     file, map->keys[i]->line, section, map->keys[i]->text, section,
				     section_keys(section, known, sizeof(known)));
			return -EINVAL;
		}
		ret = cfg_apply_node(cfg, k, map->vals[i], file, err);
		if (ret)
			return ret;
	}
	return 0;
}

static int cfg_apply_doc(struct sm_config *cfg, const struct sm_ynode *root, const char *file,
			 struct sm_error *err)
{
	char known[256];
	int ret;

	if (!root || sm_ynode_is_null(root))
		return 0; /* an empty file changes nothing */
	if (root->type != SM_YNODE_MAP) {
		sm_error_set(err,
			     "%s:%u: expected a mapping of keys, found %s (start with e.g. "
			     "'node: node1')",
			     file, root->line, sm_ynode_kind(root));
		return -EINVAL;
	}
	for (size_t i = 0; i < root->n; i++) {
		const char *name = root->keys[i]->text;
		const struct cfg_key *k = cfg_key_find(NULL, name);

		if (k)
			ret = cfg_apply_node(cfg, k, root->vals[i], file, err);
		else if (section_known(name))
			ret = cfg_apply_section(cfg, name, root->vals[i], file, err);
		else {
			sm_error_set(err, "%s:%u: unknown key '%.60s' (known keys: %s)", file,
				     root->keys[i]->line, name,
				     section_keys(NULL, known, sizeof(known)));
			ret = -EINVAL;
		}
		if (ret)
			return ret;
	}
	return 0;
}

int sm_config_load(struct sm_config *cfg, const char *path, struct sm_error *err)
{
	struct sm_config *next;
	struct sm_ynode *root;
	int ret;

	ret = sm_yaml_load(path, &root, err);
	if (ret)
		return ret;
	/* apply to a copy so that a bad file leaves cfg as it was */
	next = malloc(sizeof(*next));
	if (!next) {
		sm_error_set(err, "%s: out of memory", path);
		ret = -ENOMEM;
		goto free_root;
	}
	memcpy(next, cfg, sizeof(*next));
	ret = cfg_apply_doc(next, root, path, err);
	if (!ret)
		memcpy(cfg, next, sizeof(*cfg));
	free(next);
free_root:
	sm_ynode_free(root);
	return ret;
}

int sm_config_set(struct sm_config *cfg, const char *key, const char *value, struct sm_error *err)
{
	char section[32], known[256];
	const struct cfg_key *k;
	const char *dot = strrchr(key, '.'); /* the section may have dots: cluster.etcd.prefix */
	size_t n;

	if (!dot) {
		k = cfg_key_find(NULL, key);
		if (!k) {
			sm_error_set(err,
				     "unknown key '%.60s' (known keys: node, catalog, or "
				     "SECTION.KEY with SECTION one of %s)",
				     key, section_names(known, sizeof(known)));
			return -ENOENT;
		}
		return cfg_apply(cfg, k, value, "", err);
	}
	n = (size_t) (dot - key);
	if (n >= sizeof(section))
		n = sizeof(section) - 1;
	memcpy(section, key, n);
	section[n] = '\0';
	if (!section_known(section)) {
		sm_error_set(err, "unknown key '%.60s' (known sections: %s)", key,
			     section_names(known, sizeof(known)));
		return -ENOENT;
	}
	k = cfg_key_find(section, dot + 1);
	if (!k) {
		sm_error_set(err, "unknown key '%.60s' (known keys in %s: %s)", key, section,
			     section_keys(section, known, sizeof(known)));
		return -ENOENT;
	}
	return cfg_apply(cfg, k, value, "", err);
}

/* The size of the field a key of kind kind stores (CK_ADDR*: the address; the port apart). */
static size_t kind_size(enum cfg_kind kind)
{
	switch (kind) {
	case CK_NAME:
	case CK_NAME_OPT:
		return SM_ARRAY_SIZE(((struct sm_config *) 0)->node);
	case CK_PATH:
	case CK_PATH_OPT:
	case CK_ABS:
	case CK_ABS_OPT:
	case CK_SOCK:
		return PATH_MAX;
	case CK_ADDR4:
	case CK_ADDR6:
	case CK_ADDR:
	case CK_ADDR_OPT:
		return sizeof(struct sm_addr);
	case CK_PORT:
		return sizeof(uint16_t);
	case CK_U32:
	case CK_POW2:
		return sizeof(uint32_t);
	case CK_BOOL:
		return sizeof(bool);
	case CK_LOGLEVEL:
		return sizeof(int);
	case CK_SIZE:
		return sizeof(uint64_t);
	case CK_FILTERS:
	case CK_FIELDS:
	case CK_URLS:
		return sizeof(struct sm_config_list);
	case CK_PREFIX:
		return SM_ARRAY_SIZE(((struct sm_config *) 0)->etcd_prefix);
	}
	return 0;
}

static bool section_is(const struct cfg_key *k, const char *section)
{
	return k->section && section && strcmp(k->section, section) == 0;
}

void sm_config_copy_section(struct sm_config *dst, const struct sm_config *src, const char *section)
{
	for (size_t i = 0; i < SM_ARRAY_SIZE(cfg_keys); i++) {
		const struct cfg_key *k = &cfg_keys[i];

		if (!section_is(k, section))
			continue;
		memcpy((char *) dst + k->off, (const char *) src + k->off, kind_size(k->kind));
		if (k->port_off)
			memcpy((char *) dst + k->port_off, (const char *) src + k->port_off,
			       sizeof(uint16_t));
	}
}

unsigned int sm_config_changed_keys(const struct sm_config *a, const struct sm_config *b,
				    const char *skip, char *buf, size_t len)
{
	unsigned int n = 0;
	size_t used = 0;
	char key[64];

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < SM_ARRAY_SIZE(cfg_keys); i++) {
		const struct cfg_key *k = &cfg_keys[i];
		bool differ;

		if (section_is(k, skip))
			continue;
		differ = memcmp((const char *) a + k->off, (const char *) b + k->off,
				kind_size(k->kind)) != 0;
		if (k->port_off)
			differ |= memcmp((const char *) a + k->port_off,
					 (const char *) b + k->port_off, sizeof(uint16_t)) != 0;
		if (!differ)
			continue;
		n++;
		if (used < len) {
			int w = snprintf(buf + used, len - used, "%s%s", n > 1 ? ", " : "",
					 key_dotted(k, key, sizeof(key)));

			used += w > 0 ? (size_t) w : 0;
			if (used >= len && len > 4)
				memcpy(buf + len - 4, "...", 4);
		}
	}
	return n;
}
