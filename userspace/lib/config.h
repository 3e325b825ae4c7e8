/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockmeshd configuration: built-in defaults, then a YAML file, then flags
 * (each flag is a config key set with sm_config_set()). The file format and
 * every key are documented in docs/configuration.md.
 */
#ifndef SOCKMESH_CONFIG_H
#define SOCKMESH_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define SM_DEFAULT_CONFIG_PATH "/etc/sockmesh/sockmesh.yaml"

/* flowlog: list keys (allow, deny, fields): at most this many items of this many bytes. */
#define SM_CONFIG_LIST_MAX 32
#define SM_CONFIG_ITEM_MAX 256
/* flowlog.max_size: smallest size that rotates (0 = never rotate) */
#define SM_FLOWLOG_MIN_SIZE (16ULL << 10)

struct sm_config_list {
	uint32_t n;
	char items[SM_CONFIG_LIST_MAX][SM_CONFIG_ITEM_MAX];
};

struct sm_config {
	char node[64];		/* node: this node's name in the catalog */
	char catalog[PATH_MAX]; /* catalog: path of the catalog file */

	/* paths: */
	char bpffs[PATH_MAX];		/* paths.bpffs, default /sys/fs/bpf/sockmesh */
	char cgroup_root[PATH_MAX];	/* paths.cgroup_root, "" = found in mountinfo */
	char daemon_cgroup[PATH_MAX];	/* paths.daemon_cgroup, "" = the daemon's own */
	char enrollment_root[PATH_MAX]; /* paths.enrollment_root, "" = the daemon cgroup's parent */
	char control_socket[PATH_MAX];	/* paths.control_socket, /run/sockmesh/sockmesh.sock */
	char state_dir[PATH_MAX];	/* paths.state_dir, /var/lib/sockmesh */

	/* listeners: */
	struct sm_addr outbound_addr; /* listeners.outbound, 127.0.0.1:15001 */
	uint16_t outbound_port;
	struct sm_addr outbound6_addr; /* listeners.outbound6, [::1]:15001 */
	uint16_t outbound6_port;
	uint16_t inbound_port;	   /* listeners.inbound_port, 15008 */
	struct sm_addr admin_addr; /* listeners.admin, 127.0.0.1:15020 */
	uint16_t admin_port;	   /* 0: listeners.admin is "", no admin server */

	/* admin: the admin HTTP server's bounds (docs/metrics.md) */
	uint32_t admin_max_connections; /* admin.max_connections held at once, 4096 */
	uint32_t admin_idle_timeout;	/* admin.idle_timeout (s) of an idle or slow one, 10 */

	/* daemon: its own lifecycle (docs/operations.md, "Restart and upgrade") */
	uint32_t drain_timeout; /* daemon.drain_timeout (s) relays get on stop or upgrade, 5 */

	/* control: the control socket's bounds (docs/interfaces.md) */
	uint32_t control_max_clients;  /* control.max_clients connected at once, 64 */
	uint32_t control_idle_timeout; /* control.idle_timeout (s) without progress, 10 */

	/* metrics: the admin port's Prometheus metrics (docs/metrics.md) */
	uint32_t metrics_max_series; /* metrics.max_series: tcp label sets kept, 10000 */

	/* datapath: */
	uint32_t daemon_mark;	       /* datapath.daemon_mark, 0x5ec0de */
	uint32_t transparent_mark;     /* datapath.transparent_mark, 0x5ec0df; 0 = off */
	uint32_t transparent_table;    /* datapath.transparent_table, 15006 */
	bool redirect;		       /* datapath.redirect, false */
	bool fail_open;		       /* datapath.fail_open, false */
	uint32_t flow_update_interval; /* datapath.flow_update_interval (s), 10; 1..3600 */
	uint32_t max_workloads;	       /* datapath.max_workloads, 4096 */
	uint32_t max_services;	       /* datapath.max_services, 65536 */
	uint32_t max_cidrs;	       /* datapath.max_cidrs, 16384 */
	uint32_t max_orig_dst;	       /* datapath.max_orig_dst, 65536 */
	uint32_t max_sockhash;	       /* datapath.max_sockhash, 65536 */
	uint32_t max_policy_entries;   /* datapath.max_policy_entries, 65536 */
	uint32_t ringbuf_size; /* datapath.ringbuf_size (bytes, power of 2 >= 4096), 16 MiB */

	/* tunnel: the cross-node hop (docs/tunnel.md) */
	bool tunnel_hbone;	      /* tunnel.hbone: mTLS HBONE (true) or plaintext relay */
	uint32_t tunnel_max_streams;  /* tunnel.max_streams per connection, 100 */
	uint32_t tunnel_idle_timeout; /* tunnel.idle_timeout (s) of an unused connection, 300 */
	uint32_t tunnel_handshake_timeout; /* tunnel.handshake_timeout (s), 10 */
	/* tunnel.max_handshakes_per_source: inbound handshakes in flight from one address, per
	 * worker, 64 */
	uint32_t tunnel_max_handshakes_per_source;
	uint32_t tunnel_expiry_warning;	    /* tunnel.expiry_warning (s) before expiry, 3600 */
	uint32_t tunnel_keepalive_interval; /* tunnel.keepalive_interval (s) of silence before a
					       PING, 30 */
	uint32_t tunnel_keepalive_timeout;  /* tunnel.keepalive_timeout (s) for its answer, 10 */
	bool tunnel_sni; /* tunnel.sni: name the destination's SPIFFE ID in SNI, false */

	/* workers: threads serving the listeners and the tunnel */
	uint32_t workers; /* listeners.workers, 0 = one per online CPU */
	/* listeners.busy_poll: µs a worker polls without sleeping after its events, 100; 0 = never
	 */
	uint32_t busy_poll;

	/* flowlog: */
	char flowlog_file[PATH_MAX]; /* flowlog.file, "" = no file sink */
	bool flowlog_stdout;	     /* flowlog.stdout, false */
	/* flowlog sinks (userspace/lib/sinks.c): rotation, filters, masks, rate limits */
	uint64_t flowlog_max_size;    /* flowlog.max_size (bytes), 10 MiB; 0 = never rotate */
	uint32_t flowlog_max_backups; /* flowlog.max_backups, 5 */
	bool flowlog_compress;	      /* flowlog.compress: gzip the backups, true */
	uint32_t flowlog_rotate_min_interval; /* flowlog.rotate_min_interval (s), 1; 0 = none */
	struct sm_config_list flowlog_allow;  /* flowlog.allow: filters (flowfilter.h), any */
	struct sm_config_list flowlog_deny;   /* flowlog.deny: filters, none may match */
	struct sm_config_list flowlog_fields; /* flowlog.fields: field paths to keep, [] = all */
	uint32_t flowlog_denied_rate; /* flowlog.denied_rate (records/s per source), 100; 0 = off */
	uint32_t flowlog_denied_burst; /* flowlog.denied_burst, 200 */
	/* the live stream (flowstream.c): records kept for `sockmesh flows`, 4096; 0 = none */
	uint32_t flowlog_ring_size; /* flowlog.ring_size, 0..65536 */

	/* log: */
	int log_level; /* log.level: error|warn|info|debug, info */

	/* cluster: cluster mode (docs/cluster.md), on when cluster.etcd.endpoints is set */
	struct sm_config_list etcd_endpoints; /* cluster.etcd.endpoints: https:// URLs, [] */
	char etcd_ca[PATH_MAX];		      /* cluster.etcd.ca: etcd's CA (PEM) */
	char etcd_cert[PATH_MAX];	      /* cluster.etcd.cert: this node's client cert */
	char etcd_key[PATH_MAX];	      /* cluster.etcd.key: its private key */
	char etcd_username[64];		      /* cluster.etcd.username, "" = none (RBAC) */
	char etcd_password_file[PATH_MAX];    /* cluster.etcd.password_file */
	char etcd_prefix[128];		      /* cluster.etcd.prefix, /sockmesh/ */
	uint32_t cluster_lease_ttl;	      /* cluster.lease_ttl (s) of registration, 10 */
	uint32_t cluster_start_timeout; /* cluster.start_timeout (s): first start, no state, 30 */
};

/* Fill every field with its built-in default. */
void sm_config_defaults(struct sm_config *cfg);

/*
 * Read a YAML file over cfg (fields the file does not name keep their value).
 * Unknown keys, wrong types and out-of-range values are errors.
 * Returns 0, or -errno with err->msg = "FILE:LINE: what is wrong (what to do)".
 * A missing file is -ENOENT (the caller decides whether that is an error).
 */
int sm_config_load(struct sm_config *cfg, const char *path, struct sm_error *err);

/*
 * Set one key by its dotted name ("datapath.redirect", "node", ...) from a
 * string, with the same checks as the file. Used for flags.
 * Returns 0 or -EINVAL/-ERANGE/-ENOENT (unknown key) with err->msg set.
 */
int sm_config_set(struct sm_config *cfg, const char *key, const char *value, struct sm_error *err);

/*
 * The dotted name ("tunnel.sni", "node") of the i-th key this module knows,
 * into buf; NULL past the last one. For checks that the docs name every key.
 */
const char *sm_config_key_name(size_t i, char *buf, size_t len);

/* Copy the keys of one section ("flowlog") from src to dst; the rest of dst stays. */
void sm_config_copy_section(struct sm_config *dst, const struct sm_config *src,
			    const char *section);

/*
 * The dotted names of the keys whose values differ between a and b, outside
 * section skip (NULL: none skipped), as "a.b, c.d" into buf (truncated with
 * "..." when long). Returns how many differ.
 */
unsigned int sm_config_changed_keys(const struct sm_config *a, const struct sm_config *b,
				    const char *skip, char *buf, size_t len);

#endif /* SOCKMESH_CONFIG_H */
