// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/config.c: defaults, the YAML file, sm_config_set and every error. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"

/*
 * Configs are large (several PATH_MAX buffers): static rather than on the
 * stack, and not malloc'ed so that a failing check (which longjmps out of the
 * test) leaks nothing under ASan.
 */
static struct sm_config cfg_buf, other_buf;

/* Write text to a new temporary file; the caller unlinks path. */
static void write_temp(const char *text, char *path, size_t len)
{
	size_t n = strlen(text);
	int fd;

	snprintf(path, len, "/tmp/sockmesh-test-config-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t) n);
	close(fd);
}

/* Load text as a config file over the defaults; returns the result, message in err. */
static int load_text(const char *text, struct sm_config *cfg, struct sm_error *err, char *path,
		     size_t len)
{
	int ret;

	write_temp(text, path, len);
	sm_config_defaults(cfg);
	err->msg[0] = '\0';
	ret = sm_config_load(cfg, path, err);
	unlink(path);
	return ret;
}

static void addr_is(const struct sm_addr *a, const char *want, const char *what)
{
	struct sm_addr w;

	assert_int_equal(sm_addr_parse(want, &w), 0);
	ASSERT_EQ(sm_addr_equal(a, &w), 1, what);
}

static void test_defaults(void **state)
{
	struct sm_config *cfg = &cfg_buf;

	memset(cfg, 0x5a, sizeof(*cfg));
	sm_config_defaults(cfg);
	ASSERT_STR_EQ(cfg->node, "", "node");
	ASSERT_STR_EQ(cfg->catalog, "/etc/sockmesh/catalog.yaml", "catalog");
	ASSERT_STR_EQ(cfg->bpffs, "/sys/fs/bpf/sockmesh", "paths.bpffs");
	ASSERT_STR_EQ(cfg->cgroup_root, "", "paths.cgroup_root");
	ASSERT_STR_EQ(cfg->daemon_cgroup, "", "paths.daemon_cgroup");
	ASSERT_STR_EQ(cfg->control_socket, "/run/sockmesh/sockmesh.sock", "paths.control_socket");
	ASSERT_STR_EQ(cfg->state_dir, "/var/lib/sockmesh", "paths.state_dir");
	addr_is(&cfg->outbound_addr, "127.0.0.1", "listeners.outbound address");
	ASSERT_EQ(cfg->outbound_port, 15001, "listeners.outbound port");
	addr_is(&cfg->outbound6_addr, "::1", "listeners.outbound6 address");
	ASSERT_EQ(cfg->outbound6_port, 15001, "listeners.outbound6 port");
	ASSERT_EQ(cfg->inbound_port, 15008, "listeners.inbound_port");
	addr_is(&cfg->admin_addr, "127.0.0.1", "listeners.admin address");
	ASSERT_EQ(cfg->admin_port, 15020, "listeners.admin port");
	ASSERT_EQ(cfg->metrics_max_series, 10000, "metrics.max_series");
	ASSERT_EQ(cfg->admin_max_connections, 4096, "admin.max_connections");
	ASSERT_EQ(cfg->admin_idle_timeout, 10, "admin.idle_timeout");
	ASSERT_EQ(cfg->control_max_clients, 64, "control.max_clients");
	ASSERT_EQ(cfg->control_idle_timeout, 10, "control.idle_timeout");
	ASSERT_EQ(cfg->drain_timeout, 5, "daemon.drain_timeout");
	ASSERT_EQ(cfg->daemon_mark, 0x5ec0de, "datapath.daemon_mark");
	ASSERT_EQ(cfg->transparent_mark, 0x5ec0df, "datapath.transparent_mark");
	ASSERT_EQ(cfg->transparent_table, 15006, "datapath.transparent_table");
	ASSERT_EQ(cfg->redirect, false, "datapath.redirect");
	ASSERT_EQ(cfg->fail_open, false, "datapath.fail_open");
	ASSERT_EQ(cfg->flow_update_interval, 10, "datapath.flow_update_interval");
	ASSERT_EQ(cfg->tunnel_hbone, true, "tunnel.hbone on by default");
	ASSERT_EQ(cfg->tunnel_max_streams, 100, "tunnel.max_streams");
	ASSERT_EQ(cfg->tunnel_idle_timeout, 300, "tunnel.idle_timeout");
	ASSERT_EQ(cfg->tunnel_handshake_timeout, 10, "tunnel.handshake_timeout");
	ASSERT_EQ(cfg->tunnel_expiry_warning, 3600, "tunnel.expiry_warning");
	ASSERT_EQ(cfg->tunnel_keepalive_interval, 30, "tunnel.keepalive_interval");
	ASSERT_EQ(cfg->tunnel_keepalive_timeout, 10, "tunnel.keepalive_timeout");
	ASSERT_EQ(cfg->tunnel_sni, false, "tunnel.sni off by default (docs/tunnel.md)");
	ASSERT_EQ(cfg->workers, 0, "listeners.workers: one per CPU");
	ASSERT_EQ(cfg->busy_poll, 100, "listeners.busy_poll: 100 µs");
	ASSERT_EQ(cfg->max_workloads, 4096, "datapath.max_workloads");
	ASSERT_EQ(cfg->max_services, 65536, "datapath.max_services");
	ASSERT_EQ(cfg->max_cidrs, 16384, "datapath.max_cidrs");
	ASSERT_EQ(cfg->max_orig_dst, 65536, "datapath.max_orig_dst");
	ASSERT_EQ(cfg->max_sockhash, 65536, "datapath.max_sockhash");
	ASSERT_EQ(cfg->ringbuf_size, 16777216, "datapath.ringbuf_size");
	ASSERT_STR_EQ(cfg->flowlog_file, "", "flowlog.file");
	ASSERT_EQ(cfg->flowlog_stdout, false, "flowlog.stdout");
	ASSERT_EQ(cfg->flowlog_max_size, 10 << 20, "flowlog.max_size");
	ASSERT_EQ(cfg->flowlog_max_backups, 5, "flowlog.max_backups");
	ASSERT_EQ(cfg->flowlog_compress, true, "flowlog.compress");
	ASSERT_EQ(cfg->flowlog_rotate_min_interval, 1, "flowlog.rotate_min_interval");
	ASSERT_EQ(cfg->flowlog_allow.n + cfg->flowlog_deny.n + cfg->flowlog_fields.n, 0,
		  "flowlog.allow, deny, fields empty");
	ASSERT_EQ(cfg->flowlog_denied_rate, 100, "flowlog.denied_rate");
	ASSERT_EQ(cfg->flowlog_denied_burst, 200, "flowlog.denied_burst");
	ASSERT_EQ(cfg->flowlog_ring_size, 4096, "flowlog.ring_size");
	ASSERT_EQ(cfg->log_level, SM_LOG_INFO, "log.level");
}

/* The documented example (docs/configuration.md) with every key, all values changed. */
static const char full_config[] = "# every key\n"
				  "node: node1\n"
				  "catalog: /tmp/catalog.yaml\n"
				  "paths:\n"
				  "  bpffs: /sys/fs/bpf/sockmesh-test\n"
				  "  cgroup_root: /sys/fs/cgroup/unified\n"
				  "  daemon_cgroup: /sys/fs/cgroup/unified/sockmesh-test/daemon\n"
				  "  control_socket: /tmp/sockmesh-test.sock\n"
				  "  state_dir: /tmp/sockmesh-state\n"
				  "listeners:\n"
				  "  outbound: 127.0.0.2:16001\n"
				  "  outbound6: \"[fc42::1]:16001\"\n"
				  "  inbound_port: 16008\n"
				  "  admin: '[::1]:16020'\n"
				  "  workers: 3\n"
				  "  busy_poll: 75\n"
				  "metrics:\n"
				  "  max_series: 5\n"
				  "admin:\n"
				  "  max_connections: 100\n"
				  "  idle_timeout: 3\n"
				  "control:\n"
				  "  max_clients: 7\n"
				  "  idle_timeout: 4\n"
				  "datapath:\n"
				  "  daemon_mark: 0x1234\n"
				  "  transparent_mark: 0\n"
				  "  transparent_table: 100\n"
				  "  redirect: true\n"
				  "  fail_open: yes\n"
				  "  flow_update_interval: 3600\n"
				  "  max_workloads: 1\n"
				  "  max_services: 16777216\n"
				  "  max_cidrs: 2\n"
				  "  max_orig_dst: 3\n"
				  "  max_sockhash: 4\n"
				  "  ringbuf_size: 4096\n"
				  "tunnel:\n"
				  "  hbone: false\n"
				  "  max_streams: 7\n"
				  "  idle_timeout: 8\n"
				  "  handshake_timeout: 9\n"
				  "  keepalive_interval: 11\n"
				  "  keepalive_timeout: 12\n"
				  "  sni: true\n"
				  "  expiry_warning: 13\n"
				  "flowlog:\n"
				  "  file: /tmp/flows.json\n"
				  "  stdout: on\n"
				  "  max_size: 1MiB\n"
				  "  max_backups: 9\n"
				  "  compress: false\n"
				  "  allow: [\"verdict=DROPPED|AUDIT\", \"to-port=443\"]\n"
				  "  deny:\n"
				  "    - type=conn_update\n"
				  "  fields: [verdict, source.ip, tls]\n"
				  "  denied_rate: 7\n"
				  "  denied_burst: 8\n"
				  "  ring_size: 0\n"
				  "log:\n"
				  "  level: debug\n";

static void test_load_every_key(void **state)
{
	struct sm_config *cfg = &cfg_buf;
	struct sm_error err;
	char path[64];

	ASSERT_EQ(load_text(full_config, cfg, &err, path, sizeof(path)), 0, err.msg);
	ASSERT_STR_EQ(cfg->node, "node1", "node");
	ASSERT_STR_EQ(cfg->catalog, "/tmp/catalog.yaml", "catalog");
	ASSERT_STR_EQ(cfg->bpffs, "/sys/fs/bpf/sockmesh-test", "paths.bpffs");
	ASSERT_STR_EQ(cfg->cgroup_root, "/sys/fs/cgroup/unified", "paths.cgroup_root");
	ASSERT_STR_EQ(cfg->daemon_cgroup, "/sys/fs/cgroup/unified/sockmesh-test/daemon",
		      "paths.daemon_cgroup");
	ASSERT_STR_EQ(cfg->control_socket, "/tmp/sockmesh-test.sock", "paths.control_socket");
	ASSERT_STR_EQ(cfg->state_dir, "/tmp/sockmesh-state", "paths.state_dir");
	addr_is(&cfg->outbound_addr, "127.0.0.2", "listeners.outbound");
	ASSERT_EQ(cfg->outbound_port, 16001, "listeners.outbound port");
	addr_is(&cfg->outbound6_addr, "fc42::1", "listeners.outbound6");
	ASSERT_EQ(cfg->outbound6_port, 16001, "listeners.outbound6 port");
	ASSERT_EQ(cfg->inbound_port, 16008, "listeners.inbound_port");
	addr_is(&cfg->admin_addr, "::1", "listeners.admin");
	ASSERT_EQ(cfg->admin_port, 16020, "listeners.admin port");
	ASSERT_EQ(cfg->metrics_max_series, 5, "metrics.max_series");
	ASSERT_EQ(cfg->admin_max_connections, 100, "admin.max_connections");
	ASSERT_EQ(cfg->admin_idle_timeout, 3, "admin.idle_timeout");
	ASSERT_EQ(cfg->control_max_clients, 7, "control.max_clients");
	ASSERT_EQ(cfg->control_idle_timeout, 4, "control.idle_timeout");
	ASSERT_EQ(cfg->daemon_mark, 0x1234, "datapath.daemon_mark");
	ASSERT_EQ(cfg->transparent_mark, 0, "datapath.transparent_mark");
	ASSERT_EQ(cfg->transparent_table, 100, "datapath.transparent_table");
	ASSERT_EQ(cfg->redirect, true, "datapath.redirect");
	ASSERT_EQ(cfg->fail_open, true, "datapath.fail_open");
	ASSERT_EQ(cfg->flow_update_interval, 3600, "datapath.flow_update_interval");
	ASSERT_EQ(cfg->max_workloads, 1, "datapath.max_workloads");
	ASSERT_EQ(cfg->max_services, 16777216, "datapath.max_services");
	ASSERT_EQ(cfg->max_cidrs, 2, "datapath.max_cidrs");
	ASSERT_EQ(cfg->max_orig_dst, 3, "datapath.max_orig_dst");
	ASSERT_EQ(cfg->max_sockhash, 4, "datapath.max_sockhash");
	ASSERT_EQ(cfg->ringbuf_size, 4096, "datapath.ringbuf_size");
	ASSERT_EQ(cfg->workers, 3, "listeners.workers");
	ASSERT_EQ(cfg->busy_poll, 75, "listeners.busy_poll");
	ASSERT_EQ(cfg->tunnel_hbone, false, "tunnel.hbone");
	ASSERT_EQ(cfg->tunnel_max_streams, 7, "tunnel.max_streams");
	ASSERT_EQ(cfg->tunnel_idle_timeout, 8, "tunnel.idle_timeout");
	ASSERT_EQ(cfg->tunnel_handshake_timeout, 9, "tunnel.handshake_timeout");
	ASSERT_EQ(cfg->tunnel_keepalive_interval, 11, "tunnel.keepalive_interval");
	ASSERT_EQ(cfg->tunnel_keepalive_timeout, 12, "tunnel.keepalive_timeout");
	ASSERT_EQ(cfg->tunnel_sni, true, "tunnel.sni");
	ASSERT_EQ(cfg->tunnel_expiry_warning, 13, "tunnel.expiry_warning");
	ASSERT_STR_EQ(cfg->flowlog_file, "/tmp/flows.json", "flowlog.file");
	ASSERT_EQ(cfg->flowlog_stdout, true, "flowlog.stdout");
	ASSERT_EQ(cfg->flowlog_max_size, 1 << 20, "flowlog.max_size");
	ASSERT_EQ(cfg->flowlog_max_backups, 9, "flowlog.max_backups");
	ASSERT_EQ(cfg->flowlog_compress, false, "flowlog.compress");
	ASSERT_EQ(cfg->flowlog_allow.n, 2, "flowlog.allow items");
	ASSERT_STR_EQ(cfg->flowlog_allow.items[0], "verdict=DROPPED|AUDIT", "flowlog.allow[0]");
	ASSERT_STR_EQ(cfg->flowlog_allow.items[1], "to-port=443", "flowlog.allow[1]");
	ASSERT_EQ(cfg->flowlog_deny.n, 1, "flowlog.deny items");
	ASSERT_STR_EQ(cfg->flowlog_deny.items[0], "type=conn_update", "flowlog.deny[0]");
	ASSERT_EQ(cfg->flowlog_fields.n, 3, "flowlog.fields items");
	ASSERT_STR_EQ(cfg->flowlog_fields.items[1], "source.ip", "flowlog.fields[1]");
	ASSERT_EQ(cfg->flowlog_denied_rate, 7, "flowlog.denied_rate");
	ASSERT_EQ(cfg->flowlog_denied_burst, 8, "flowlog.denied_burst");
	ASSERT_EQ(cfg->flowlog_ring_size, 0, "flowlog.ring_size 0: no stream");
	ASSERT_EQ(cfg->log_level, SM_LOG_DEBUG, "log.level");
}

static void test_load_partial_keeps_rest(void **state)
{
	static const char *const texts[] = {
		"", /* empty file */
		"# only a comment\n",
		"---\n",    /* empty document */
		"paths:\n", /* empty section */
		"datapath: ~\n",
		"datapath: {}\n",
		"paths:\n  cgroup_root: \"\"\n", /* explicit defaults */
		"paths:\n  cgroup_root:\n",
		"flowlog: {file: ''}\n",
	};
	struct sm_config *cfg = &cfg_buf, *def = &other_buf;
	struct sm_error err;
	char path[64];

	sm_config_defaults(def);
	for (size_t i = 0; i < SM_ARRAY_SIZE(texts); i++) {
		ASSERT_EQ(load_text(texts[i], cfg, &err, path, sizeof(path)), 0, err.msg);
		ASSERT_EQ(memcmp(cfg, def, sizeof(*cfg)), 0, texts[i]);
	}
	ASSERT_EQ(load_text("datapath:\n  redirect: true\n", cfg, &err, path, sizeof(path)), 0,
		  err.msg);
	ASSERT_EQ(cfg->redirect, true, "the named key changed");
	ASSERT_EQ(cfg->ringbuf_size, def->ringbuf_size, "others kept");
	ASSERT_STR_EQ(cfg->bpffs, def->bpffs, "others kept");
}

struct bad_case {
	const char *yaml;
	int ret;
	unsigned int line;	 /* the message starts with "PATH:LINE: " */
	const char *has1, *has2; /* substrings the message must contain (NULL: none) */
};

static const struct bad_case bad_cases[] = {
	/* flowlog sinks */
	{"flowlog:\n  max_size: 1000\n", -ERANGE, 2, "flowlog.max_size: 1000 is out of range",
	 "at least 16KiB"},
	{"flowlog:\n  max_size: 15KiB\n", -ERANGE, 2, "flowlog.max_size: 15KiB is out of range",
	 NULL},
	{"flowlog:\n  max_size: 10MB\n", -EINVAL, 2, "flowlog.max_size: '10MB' is not valid",
	 "KiB, MiB or GiB"},
	{"flowlog:\n  max_size: 99999999999999999999GiB\n", -ERANGE, 2,
	 "flowlog.max_size: 99999999999999999999GiB is out of range", NULL},
	{"flowlog:\n  max_backups: 1001\n", -ERANGE, 2, "flowlog.max_backups: 1001", NULL},
	{"flowlog:\n  allow: verdict=DROPPED\n", -EINVAL, 2,
	 "flowlog.allow: expected a list, found a single value", NULL},
	{"flowlog:\n  allow:\n    - verdict=DROPPED\n    - colour=red\n", -EINVAL, 4,
	 "flowlog.allow: ", "colour"},
	{"flowlog:\n  deny: [[a]]\n", -EINVAL, 2, "flowlog.deny: item 1: expected a single value",
	 NULL},
	{"flowlog:\n  fields: [verdict, source.ipp]\n", -EINVAL, 2,
	 "flowlog.fields: 'source.ipp' is not a flow record field", NULL},
	{"flowlog:\n  denied_burst: 0\n", -ERANGE, 2, "flowlog.denied_burst: 0 is out of range",
	 NULL},
	/* unknown keys */
	{"node: n1\ncatalog: /c\nnodee: n1\n", -EINVAL, 3, "unknown key 'nodee'",
	 "(known keys: node, catalog, paths, listeners, datapath, tunnel, flowlog, log, metrics, "
	 "admin, control, cluster, daemon)"},
	{"paths:\n  bpfs: /x\n", -EINVAL, 2, "unknown key 'paths.bpfs'",
	 "known keys in paths: bpffs, cgroup_root, daemon_cgroup, enrollment_root, control_socket, "
	 "state_dir"},
	{"datapath:\n  redirect: true\n  max_workload: 5\n", -EINVAL, 3,
	 "unknown key 'datapath.max_workload'", "max_workloads"},
	{"listeners:\n  inbound: 15008\n", -EINVAL, 2, "unknown key 'listeners.inbound'",
	 "inbound_port"},
	{"log:\n  file: /x\n", -EINVAL, 2, "unknown key 'log.file'", "known keys in log: level"},
	{"Node: n1\n", -EINVAL, 1, "unknown key 'Node'", NULL},
	/* wrong types */
	{"datapath:\n  flow_update_interval: [1]\n", -EINVAL, 2,
	 "datapath.flow_update_interval: expected a single value, found a list",
	 "(set a number of seconds)"},
	{"datapath:\n  redirect:\n    on: true\n", -EINVAL, 3,
	 "datapath.redirect: expected a single value, found a mapping", "true or false"},
	{"node:\n  - n1\n", -EINVAL, 2, "node: expected a single value, found a list", NULL},
	{"paths: [a, b]\n", -EINVAL, 1, "paths: expected a mapping, found a list", "bpffs"},
	{"log: info\n", -EINVAL, 1, "log: expected a mapping, found a single value", "level"},
	{"- node: n1\n", -EINVAL, 1, "expected a mapping of keys, found a list", NULL},
	{"just words\n", -EINVAL, 1, "expected a mapping of keys, found a single value", NULL},
	/* out of range and invalid numbers */
	{"node: n1\n\n# c\n\ndatapath:\n  redirect: false\n  flow_update_interval: 0\n", -ERANGE, 7,
	 "datapath.flow_update_interval: 0 is out of range 1..3600 (set a number of "
	 "seconds)",
	 NULL},
	{"tunnel:\n  max_streams: 0\n", -ERANGE, 2,
	 "tunnel.max_streams: 0 is out of range 1..10000", NULL},
	{"tunnel:\n  hbone: maybe\n", -EINVAL, 2, "tunnel.hbone", "set true or false"},
	{"tunnel:\n  handshake_timeout: 301\n", -ERANGE, 2, "301 is out of range 1..300", NULL},
	{"tunnel:\n  hbones: true\n", -EINVAL, 2, "unknown key 'tunnel.hbones'", NULL},
	{"listeners:\n  workers: 257\n", -ERANGE, 2,
	 "listeners.workers: 257 is out of range 0..256", "worker threads"},
	{"listeners:\n  busy_poll: 1001\n", -ERANGE, 2,
	 "listeners.busy_poll: 1001 is out of range 0..1000", "microseconds a worker"},
	{"datapath:\n  flow_update_interval: 3601\n", -ERANGE, 2, "3601 is out of range 1..3600",
	 NULL},
	{"datapath:\n  flow_update_interval: ten\n", -EINVAL, 2,
	 "datapath.flow_update_interval: 'ten' is not a number", "seconds"},
	{"datapath:\n  flow_update_interval: -1\n", -EINVAL, 2, "'-1' is not a number", NULL},
	{"datapath:\n  flow_update_interval: 1.5\n", -EINVAL, 2, "'1.5' is not a number", NULL},
	{"datapath:\n  flow_update_interval:\n", -EINVAL, 2, "'' is not a number", NULL},
	{"datapath:\n  max_workloads: 0\n", -ERANGE, 2,
	 "datapath.max_workloads: 0 is out of range 1..16777216", NULL},
	{"datapath:\n  max_services: 16777217\n", -ERANGE, 2,
	 "datapath.max_services: 16777217 is out of range", NULL},
	{"datapath:\n  max_cidrs: 0\n", -ERANGE, 2, "datapath.max_cidrs: 0 is out of range", NULL},
	{"datapath:\n  max_orig_dst: 99999999999999999999\n", -ERANGE, 2,
	 "datapath.max_orig_dst: 99999999999999999999 is out of range", NULL},
	{"datapath:\n  max_sockhash: 0\n", -ERANGE, 2, "datapath.max_sockhash: 0 is out of range",
	 NULL},
	{"datapath:\n  transparent_table: 0\n", -ERANGE, 2,
	 "datapath.transparent_table: 0 is out of range 1..4294967294", "15006"},
	{"datapath:\n  daemon_mark: 0\n", -ERANGE, 2,
	 "datapath.daemon_mark: 0 is out of range 1..4294967295", "0x5ec0de"},
	{"datapath:\n  daemon_mark: 0x100000000\n", -ERANGE, 2,
	 "daemon_mark: 0x100000000 is out "
	 "of range",
	 NULL},
	{"datapath:\n  ringbuf_size: 5000\n", -EINVAL, 2,
	 "datapath.ringbuf_size: 5000 is not a power of two", "power of two"},
	{"datapath:\n  ringbuf_size: 2048\n", -ERANGE, 2,
	 "datapath.ringbuf_size: 2048 is out of range 4096..1073741824", NULL},
	{"datapath:\n  ringbuf_size: 2147483648\n", -ERANGE, 2,
	 "datapath.ringbuf_size: 2147483648 is out of range 4096..1073741824", NULL},
	{"datapath:\n  ringbuf_size: 0\n", -ERANGE, 2, "ringbuf_size: 0 is out of range", NULL},
	{"listeners:\n  inbound_port: 0\n", -ERANGE, 2,
	 "listeners.inbound_port: 0 is out of range 1..65535", NULL},
	{"listeners:\n  inbound_port: 65536\n", -ERANGE, 2,
	 "listeners.inbound_port: 65536 is out of range 1..65535", NULL},
	{"listeners:\n  inbound_port: hbone\n", -EINVAL, 2,
	 "listeners.inbound_port: 'hbone' is not a number", NULL},
	/* booleans */
	{"datapath:\n  redirect: maybe\n", -EINVAL, 2,
	 "datapath.redirect: 'maybe' is not true or false", "(set true or false)"},
	{"datapath:\n  fail_open: 2\n", -EINVAL, 2, "datapath.fail_open: '2' is not true or false",
	 NULL},
	{"flowlog:\n  stdout: ~\n", -EINVAL, 2, "flowlog.stdout: '' is not true or false", NULL},
	{"flowlog:\n  ring_size: 65537\n", -ERANGE, 2,
	 "flowlog.ring_size: 65537 is out of range 0..65536", "or 0 to turn the stream off"},
	{"flowlog:\n  ring_size: lots\n", -EINVAL, 2, "flowlog.ring_size: 'lots' is not a number",
	 NULL},
	/* addresses */
	{"listeners:\n  outbound: \"[::1]:15001\"\n", -EINVAL, 2,
	 "listeners.outbound: '[::1]:15001' is an IPv6 address", "IPv4 ADDRESS:PORT"},
	{"listeners:\n  outbound6: 127.0.0.1:15001\n", -EINVAL, 2,
	 "listeners.outbound6: '127.0.0.1:15001' is an IPv4 address", "IPv6"},
	{"listeners:\n  outbound: 127.0.0.1\n", -EINVAL, 2,
	 "listeners.outbound: '127.0.0.1' is not valid", "127.0.0.1:15001"},
	{"listeners:\n  outbound: 127.0.0.1:0\n", -EINVAL, 2, "listeners.outbound: '127.0.0.1:0'",
	 NULL},
	{"listeners:\n  outbound: 127.0.0.1:65536\n", -EINVAL, 2, "'127.0.0.1:65536' is not valid",
	 NULL},
	{"listeners:\n  admin: localhost:15020\n", -EINVAL, 2,
	 "listeners.admin: 'localhost:15020' is not valid", "ADDRESS:PORT"},
	{"listeners:\n  admin: ::1:15020\n", -EINVAL, 2, "listeners.admin: '::1:15020'", NULL},
	/* paths */
	{"paths:\n  bpffs: sys/fs/bpf\n", -EINVAL, 2,
	 "paths.bpffs: 'sys/fs/bpf' is not an absolute path", "/sys/fs/bpf/sockmesh"},
	{"paths:\n  bpffs: \"\"\n", -EINVAL, 2, "paths.bpffs: empty", NULL},
	{"paths:\n  state_dir: var/lib\n", -EINVAL, 2,
	 "paths.state_dir: 'var/lib' is not an "
	 "absolute path",
	 NULL},
	{"paths:\n  state_dir:\n", -EINVAL, 2, "paths.state_dir: empty", NULL},
	{"paths:\n  daemon_cgroup: sockmesh/daemon\n", -EINVAL, 2,
	 "paths.daemon_cgroup: 'sockmesh/daemon' is not an absolute path", NULL},
	{"paths:\n  cgroup_root: sys/fs/cgroup\n", -EINVAL, 2,
	 "paths.cgroup_root: 'sys/fs/cgroup' is not an absolute path", NULL},
	{"paths:\n  control_socket: run/s.sock\n", -EINVAL, 2,
	 "paths.control_socket: 'run/s.sock' is not an absolute path", NULL},
	{"paths:\n  control_socket: "
	 "/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
	 -ERANGE, 2, "paths.control_socket: 122 bytes is too long for a Unix socket path", "107"},
	{"catalog: \"\"\n", -EINVAL, 1, "catalog: empty", "catalog file"},
	{"catalog:\n", -EINVAL, 1, "catalog: empty", NULL},
	/* names and levels */
	{"node: bad name\n", -EINVAL, 1, "node: 'bad name' is not valid", "1 to 63"},
	{"node: \"\"\n", -EINVAL, 1, "node: '' is not valid", NULL},
	{"node: n1/x\n", -EINVAL, 1, "node: 'n1/x' is not valid", NULL},
	{"node: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", -EINVAL, 1,
	 "is not valid", NULL},
	{"log:\n  level: verbose\n", -EINVAL, 2, "log.level: 'verbose' is not valid",
	 "(set one of error, warn, info, debug)"},
	{"log:\n  level: INFO\n", -EINVAL, 2, "log.level: 'INFO' is not valid", NULL},
	/* YAML the parser refuses */
	{"node: n1\ncatalog: [unclosed\n", -EINVAL, 3, "invalid YAML", NULL},
	{"node: n1\npaths:\n  bpffs: /a\n bad: indent\n", -EINVAL, 4, "invalid YAML", NULL},
	{"node: n1\n\tcatalog: /c\n", -EINVAL, 2, "invalid YAML", NULL},
	{"node: \"unterminated\n", -EINVAL, 2, "invalid YAML", NULL},
	{"node: n1\nnode: n2\n", -EINVAL, 2, "duplicate key 'node' (first at line 1)",
	 "remove one"},
	{"datapath:\n  redirect: true\n  redirect: false\n", -EINVAL, 3,
	 "duplicate key 'redirect' (first at line 2)", NULL},
	{"a: &x n1\nnode: *x\n", -EINVAL, 2, "aliases (*name) are not supported", NULL},
	{"node: n1\n---\nnode: n2\n", -EINVAL, 2, "a second YAML document", NULL},
	{"? [a, b]\n: c\n", -EINVAL, 1, "a mapping key must be a single value", NULL},
};

static void test_load_bad(void **state)
{
	struct sm_config *cfg = &cfg_buf, *def = &other_buf;
	char path[64], prefix[96], what[700];
	struct sm_error err;

	sm_config_defaults(def);
	for (size_t i = 0; i < SM_ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		int ret = load_text(c->yaml, cfg, &err, path, sizeof(path));

		snprintf(what, sizeof(what), "case %zu (%.60s): %s", i, c->yaml, err.msg);
		ASSERT_EQ(ret, c->ret, what);
		snprintf(prefix, sizeof(prefix), "%s:%u: ", path, c->line);
		ASSERT_EQ(strncmp(err.msg, prefix, strlen(prefix)), 0, what);
		ASSERT_HAS(err.msg, c->has1, what);
		if (c->has2) /* a second expected phrase is optional */
			ASSERT_HAS(err.msg, c->has2, what);
		/* every message ends with what to do, in parentheses */
		ASSERT_EQ(err.msg[strlen(err.msg) - 1], ')', what);
		/* a bad file changes nothing, not even the keys before the bad one */
		ASSERT_EQ(memcmp(cfg, def, sizeof(*cfg)), 0, what);
	}
}

static void test_load_missing_and_unreadable(void **state)
{
	struct sm_config *cfg = &cfg_buf;
	struct sm_error err;

	sm_config_defaults(cfg);
	ASSERT_EQ(sm_config_load(cfg, "/tmp/sockmesh-test-no-such-file.yaml", &err), -ENOENT,
		  "missing file is -ENOENT");
	ASSERT_HAS(err.msg, "/tmp/sockmesh-test-no-such-file.yaml", "message names the file");
	ASSERT_EQ(sm_config_load(cfg, "/tmp", &err), -EINVAL, "a directory is refused");
	ASSERT_HAS(err.msg, "not a regular file", err.msg);
}

struct set_case {
	const char *key, *value;
	int ret;
	const char *has; /* message substring when ret != 0 */
};

static const struct set_case set_cases[] = {
	{"node", "node2", 0, NULL},
	{"catalog", "relative/catalog.yaml", 0, NULL},
	{"paths.bpffs", "/sys/fs/bpf/sockmesh-x", 0, NULL},
	{"paths.cgroup_root", "", 0, NULL},
	{"listeners.outbound", "127.0.0.9:15101", 0, NULL},
	{"listeners.outbound6", "[::1]:15101", 0, NULL},
	{"listeners.inbound_port", "15108", 0, NULL},
	{"datapath.redirect", "true", 0, NULL},
	{"datapath.flow_update_interval", "1", 0, NULL},
	{"datapath.ringbuf_size", "1073741824", 0, NULL},
	{"datapath.daemon_mark", "0xffffffff", 0, NULL},
	{"flowlog.file", "/tmp/f.json", 0, NULL},
	{"flowlog.stdout", "1", 0, NULL},
	{"flowlog.ring_size", "65536", 0, NULL},
	{"log.level", "warn", 0, NULL},
	{"daemon.drain_timeout", "0", 0, NULL},
	{"daemon.drain_timeout", "3600", 0, NULL},
	{"daemon.drain_timeout", "3601", -ERANGE,
	 "daemon.drain_timeout: 3601 is out of range 0..3600"},
	{"flowlog.max_size", "16KiB", 0, NULL},
	{"flowlog.fields", "verdict,source.ip", 0, NULL},
	{"flowlog.deny", "verdict=AUDIT to-port=80", 0, NULL},
	{"flowlog.allow", "verdict=DROPPED", 0, NULL},
	{"flowlog.allow", "", 0, NULL},
	{"flowlog.max_size", "16383", -ERANGE, "flowlog.max_size: 16383 is out of range"},
	{"flowlog.fields", "verdict,nope", -EINVAL, "'nope' is not a flow record field"},
	{"flowlog.deny", "port=x", -EINVAL, "flowlog.deny: "},
	{"nodee", "x", -ENOENT, "unknown key 'nodee'"},
	{"datapath.redirekt", "true", -ENOENT,
	 "unknown key 'datapath.redirekt' (known keys in datapath: daemon_mark, redirect"},
	{"dataplane.redirect", "true", -ENOENT,
	 "unknown key 'dataplane.redirect' (known sections: paths, listeners, datapath, tunnel, "
	 "flowlog, log, metrics, admin, control, cluster, daemon)"},
	{"datapath", "true", -ENOENT, "unknown key 'datapath'"},
	{"datapath.", "true", -ENOENT, "unknown key 'datapath.'"},
	{".redirect", "true", -ENOENT, "unknown key '.redirect'"},
	{"paths.bpffs.x", "/a", -ENOENT, "unknown key 'paths.bpffs.x'"},
	{"datapath.flow_update_interval", "0", -ERANGE,
	 "datapath.flow_update_interval: 0 is out of range 1..3600 (set a number of seconds)"},
	{"datapath.flow_update_interval", "x", -EINVAL, "'x' is not a number"},
	{"datapath.ringbuf_size", "12288", -EINVAL, "12288 is not a power of two"},
	{"datapath.redirect", "", -EINVAL, "'' is not true or false"},
	{"listeners.outbound", "[::1]:15001", -EINVAL, "is an IPv6 address"},
	{"paths.bpffs", "relative", -EINVAL, "is not an absolute path"},
	{"node", "a b", -EINVAL, "node: 'a b' is not valid"},
	{"log.level", "trace", -EINVAL, "log.level: 'trace' is not valid"},
};

static void test_set(void **state)
{
	struct sm_config *cfg = &cfg_buf, *before = &other_buf;
	struct sm_error err;
	char what[700];

	sm_config_defaults(cfg);
	for (size_t i = 0; i < SM_ARRAY_SIZE(set_cases); i++) {
		const struct set_case *c = &set_cases[i];
		int ret;

		memcpy(before, cfg, sizeof(*cfg));
		err.msg[0] = '\0';
		ret = sm_config_set(cfg, c->key, c->value, &err);
		snprintf(what, sizeof(what), "sm_config_set(%s, '%s'): %s", c->key, c->value,
			 err.msg);
		ASSERT_EQ(ret, c->ret, what);
		if (ret) {
			ASSERT_HAS(err.msg, c->has, what);
			ASSERT_EQ(memcmp(cfg, before, sizeof(*cfg)), 0,
				  "a refused value changes "
				  "nothing");
		}
	}
	ASSERT_STR_EQ(cfg->node, "node2", "node set");
	ASSERT_STR_EQ(cfg->bpffs, "/sys/fs/bpf/sockmesh-x", "paths.bpffs set");
	ASSERT_EQ(cfg->outbound_port, 15101, "listeners.outbound port set");
	ASSERT_EQ(cfg->inbound_port, 15108, "listeners.inbound_port set");
	ASSERT_EQ(cfg->redirect, true, "datapath.redirect set");
	ASSERT_EQ(cfg->flow_update_interval, 1, "flow_update_interval set");
	ASSERT_EQ(cfg->ringbuf_size, 1073741824, "ringbuf_size set");
	ASSERT_EQ(cfg->daemon_mark, 0xffffffffU, "daemon_mark set");
	ASSERT_EQ(cfg->flowlog_stdout, true, "flowlog.stdout set");
	ASSERT_EQ(cfg->flowlog_ring_size, 65536, "flowlog.ring_size set");
	ASSERT_EQ(cfg->log_level, SM_LOG_WARN, "log.level set");
	ASSERT_EQ(cfg->flowlog_max_size, 16384, "flowlog.max_size set");
	ASSERT_EQ(cfg->flowlog_fields.n, 2, "flowlog.fields: comma-separated");
	ASSERT_STR_EQ(cfg->flowlog_fields.items[1], "source.ip", "flowlog.fields[1]");
	ASSERT_EQ(cfg->flowlog_deny.n, 1, "flowlog.deny: one filter");
	ASSERT_STR_EQ(cfg->flowlog_deny.items[0], "verdict=AUDIT to-port=80", "the whole filter");
	ASSERT_EQ(cfg->flowlog_allow.n, 0, "flowlog.allow emptied by ''");
}

/* SIGHUP's tools: copy one section, name the keys that differ elsewhere. */
static void test_sections(void **state)
{
	struct sm_config *a = &cfg_buf, *b = &other_buf;
	struct sm_error err;
	char buf[128];

	sm_config_defaults(a);
	sm_config_defaults(b);
	ASSERT_EQ(sm_config_changed_keys(a, b, NULL, buf, sizeof(buf)), 0, "equal");
	ASSERT_STR_EQ(buf, "", "nothing named");
	ASSERT_EQ(sm_config_set(b, "flowlog.deny", "type=conn_update", &err), 0, err.msg);
	ASSERT_EQ(sm_config_set(b, "flowlog.max_size", "1MiB", &err), 0, err.msg);
	ASSERT_EQ(sm_config_set(b, "datapath.redirect", "true", &err), 0, err.msg);
	ASSERT_EQ(sm_config_set(b, "listeners.admin", "127.0.0.1:1", &err), 0, err.msg);
	ASSERT_EQ(sm_config_changed_keys(a, b, "flowlog", buf, sizeof(buf)), 2, "outside flowlog");
	ASSERT_STR_EQ(buf, "listeners.admin, datapath.redirect", "named in table order");
	ASSERT_EQ(sm_config_changed_keys(a, b, NULL, buf, sizeof(buf)), 4, "all");
	ASSERT_EQ(sm_config_changed_keys(a, b, NULL, buf, 12), 4, "short buffer");
	ASSERT_STR_EQ(buf, "listener...", "truncated with dots");
	sm_config_copy_section(a, b, "flowlog");
	ASSERT_EQ(a->flowlog_deny.n, 1, "flowlog copied");
	ASSERT_EQ(a->flowlog_max_size, 1 << 20, "flowlog.max_size copied");
	ASSERT_EQ(a->redirect, false, "datapath not copied");
	ASSERT_EQ(sm_config_changed_keys(a, b, NULL, buf, sizeof(buf)), 2, "two left");
}

/* cluster: and the section inside it (cluster.etcd), from a file and from --set. */
static void test_cluster_keys(void **state)
{
	static const struct bad_case bad[] = {
		{"cluster:\n  etcd:\n    endpoints: [http://10.0.0.1:2379]\n", -EINVAL, 3,
		 "cluster.etcd.endpoints: 'http://10.0.0.1:2379' is not an https:// URL",
		 "mutual TLS only"},
		{"cluster:\n  etcd:\n    prefix: sockmesh\n", -EINVAL, 3,
		 "cluster.etcd.prefix: 'sockmesh' is not valid", "starts and ends with '/'"},
		{"cluster:\n  etcd:\n    prefix: \"/a b/\"\n", -EINVAL, 3, "cluster.etcd.prefix",
		 NULL},
		{"cluster:\n  etcd:\n    endpoint: x\n", -EINVAL, 3,
		 "unknown key 'cluster.etcd.endpoint'", "endpoints"},
		{"cluster:\n  lease_ttl: 1\n", -ERANGE, 2,
		 "cluster.lease_ttl: 1 is out of range 2..300", NULL},
		{"cluster:\n  etcd: 5\n", -EINVAL, 2, "cluster.etcd: expected a mapping", NULL},
	};
	struct sm_config *cfg = &cfg_buf, *def = &other_buf;
	struct sm_error err;
	char path[64], what[700];

	ASSERT_EQ(load_text("cluster:\n  lease_ttl: 5\n  etcd:\n    endpoints:\n"
			    "      - https://10.0.0.1:2379\n      - https://[fc00::1]:2379\n"
			    "    ca: /etc/ca.pem\n    prefix: /mesh/a/\n    username: node-1\n",
			    cfg, &err, path, sizeof(path)),
		  0, err.msg);
	ASSERT_EQ(cfg->cluster_lease_ttl, 5, "cluster.lease_ttl");
	ASSERT_EQ(cfg->etcd_endpoints.n, 2, "two endpoints");
	ASSERT_STR_EQ(cfg->etcd_endpoints.items[1], "https://[fc00::1]:2379", "the second");
	ASSERT_STR_EQ(cfg->etcd_ca, "/etc/ca.pem", "cluster.etcd.ca");
	ASSERT_STR_EQ(cfg->etcd_prefix, "/mesh/a/", "cluster.etcd.prefix");
	ASSERT_STR_EQ(cfg->etcd_username, "node-1", "cluster.etcd.username");
	sm_config_defaults(cfg);
	ASSERT_STR_EQ(cfg->etcd_prefix, "/sockmesh/", "the default prefix");
	ASSERT_EQ(cfg->etcd_endpoints.n, 0, "file mode by default");
	ASSERT_EQ(sm_config_set(cfg, "cluster.etcd.endpoints", "https://a:1,https://b:2", &err), 0,
		  err.msg);
	ASSERT_EQ(cfg->etcd_endpoints.n, 2, "--set: comma-separated");
	ASSERT_EQ(sm_config_set(cfg, "cluster.etcd.prefix", "/x/", &err), 0, err.msg);
	ASSERT_STR_EQ(cfg->etcd_prefix, "/x/", "--set cluster.etcd.prefix");
	ASSERT_EQ(sm_config_set(cfg, "cluster.etcd.username", "", &err), 0, err.msg);
	ASSERT_EQ(sm_config_set(cfg, "cluster.start_timeout", "0", &err), -ERANGE, err.msg);
	ASSERT_EQ(sm_config_set(cfg, "cluster.etcd.nope", "1", &err), -ENOENT, err.msg);

	sm_config_defaults(def);
	for (size_t i = 0; i < SM_ARRAY_SIZE(bad); i++) {
		int ret = load_text(bad[i].yaml, cfg, &err, path, sizeof(path));

		snprintf(what, sizeof(what), "case %zu (%.60s): %s", i, bad[i].yaml, err.msg);
		ASSERT_EQ(ret, bad[i].ret, what);
		ASSERT_HAS(err.msg, bad[i].has1, what);
		if (bad[i].has2)
			ASSERT_HAS(err.msg, bad[i].has2, what);
	}
}

/* listeners.admin may be "" (no admin server); metrics.max_series is range-checked. */
static void test_admin_and_metrics_keys(void **state)
{
	static const struct bad_case bad[] = {
		{"metrics:\n  max_series: 0\n", -ERANGE, 2,
		 "metrics.max_series: 0 is out of range 1..1000000", "label sets"},
		{"metrics:\n  max_series: 1000001\n", -ERANGE, 2,
		 "metrics.max_series: 1000001 is out of range", NULL},
		{"metrics:\n  max_series: many\n", -EINVAL, 2, "'many' is not a number", NULL},
		{"metrics:\n  series: 5\n", -EINVAL, 2, "unknown key 'metrics.series'",
		 "known keys in metrics: max_series"},
		{"metrics: 5\n", -EINVAL, 1, "metrics: expected a mapping", NULL},
		{"listeners:\n  admin: 127.0.0.1\n", -EINVAL, 2,
		 "listeners.admin: '127.0.0.1' is not valid", "or \"\" for no admin server"},
		{"admin:\n  max_connections: 15\n", -ERANGE, 2,
		 "admin.max_connections: 15 is out of range 16..1000000", "e.g. 4096"},
		{"admin:\n  idle_timeout: 0\n", -ERANGE, 2,
		 "admin.idle_timeout: 0 is out of range 1..3600", "idle or slow admin connection"},
		{"admin:\n  timeout: 5\n", -EINVAL, 2, "unknown key 'admin.timeout'",
		 "known keys in admin: max_connections, idle_timeout"},
		{"control:\n  max_clients: 0\n", -ERANGE, 2,
		 "control.max_clients: 0 is out of range 1..65536", "control clients"},
		{"control:\n  idle_timeout: 3601\n", -ERANGE, 2,
		 "control.idle_timeout: 3601 is out of range 1..3600", NULL},
	};
	struct sm_config *cfg = &cfg_buf, *def = &other_buf;
	struct sm_error err;
	char path[64], what[700];

	ASSERT_EQ(load_text("listeners:\n  admin: \"\"\n", cfg, &err, path, sizeof(path)), 0,
		  err.msg);
	ASSERT_EQ(cfg->admin_port, 0, "listeners.admin \"\": port 0, no admin server");
	ASSERT_EQ(cfg->admin_addr.family, 0, "listeners.admin \"\": no address");
	ASSERT_EQ(load_text("listeners:\n  admin:\n", cfg, &err, path, sizeof(path)), 0, err.msg);
	ASSERT_EQ(cfg->admin_port, 0, "listeners.admin with no value means \"\"");
	ASSERT_EQ(load_text("metrics:\n  max_series: 1000000\n", cfg, &err, path, sizeof(path)), 0,
		  err.msg);
	ASSERT_EQ(cfg->metrics_max_series, 1000000, "metrics.max_series at its maximum");

	sm_config_defaults(cfg);
	ASSERT_EQ(sm_config_set(cfg, "listeners.admin", "", &err), 0, err.msg);
	ASSERT_EQ(cfg->admin_port, 0, "--admin \"\"");
	ASSERT_EQ(sm_config_set(cfg, "listeners.admin", "[::1]:15020", &err), 0, err.msg);
	addr_is(&cfg->admin_addr, "::1", "--admin [::1]:15020");
	ASSERT_EQ(cfg->admin_port, 15020, "--admin [::1]:15020 port");
	ASSERT_EQ(sm_config_set(cfg, "metrics.max_series", "1", &err), 0, err.msg);
	ASSERT_EQ(cfg->metrics_max_series, 1, "--set metrics.max_series=1");
	ASSERT_EQ(sm_config_set(cfg, "metrics.max_series", "0", &err), -ERANGE, err.msg);
	ASSERT_EQ(cfg->metrics_max_series, 1, "a refused value changes nothing");
	ASSERT_EQ(sm_config_set(cfg, "admin.max_connections", "1000000", &err), 0, err.msg);
	ASSERT_EQ(cfg->admin_max_connections, 1000000, "--set admin.max_connections");
	ASSERT_EQ(sm_config_set(cfg, "control.max_clients", "65536", &err), 0, err.msg);
	ASSERT_EQ(cfg->control_max_clients, 65536, "--set control.max_clients");
	ASSERT_EQ(sm_config_set(cfg, "control.idle_timeout", "1", &err), 0, err.msg);
	ASSERT_EQ(cfg->control_idle_timeout, 1, "--set control.idle_timeout");

	sm_config_defaults(def);
	for (size_t i = 0; i < SM_ARRAY_SIZE(bad); i++) {
		int ret = load_text(bad[i].yaml, cfg, &err, path, sizeof(path));

		snprintf(what, sizeof(what), "case %zu (%.60s): %s", i, bad[i].yaml, err.msg);
		ASSERT_EQ(ret, bad[i].ret, what);
		ASSERT_HAS(err.msg, bad[i].has1, what);
		if (bad[i].has2)
			ASSERT_HAS(err.msg, bad[i].has2, what);
		ASSERT_EQ(memcmp(cfg, def, sizeof(*cfg)), 0, what);
	}
}

/* flags after the file: the file sets a value, sm_config_set overrides it */
static void test_file_then_set(void **state)
{
	struct sm_config *cfg = &cfg_buf;
	struct sm_error err;
	char path[64];

	ASSERT_EQ(
		load_text("datapath:\n  flow_update_interval: 30\n", cfg, &err, path, sizeof(path)),
		0, err.msg);
	ASSERT_EQ(cfg->flow_update_interval, 30, "from the file");
	ASSERT_EQ(sm_config_set(cfg, "datapath.flow_update_interval", "5", &err), 0, err.msg);
	ASSERT_EQ(cfg->flow_update_interval, 5, "flag wins");
}

#ifndef SM_SOURCE_DIR
#define SM_SOURCE_DIR "."
#endif
#define CONFIG_MD SM_SOURCE_DIR "/docs/configuration.md"

/*
 * docs/configuration.md's first yaml block, the documented full config, into
 * a static buffer (a failing check longjmps: nothing to leak).
 */
static const char *doc_config_block(void)
{
	static char md[1 << 17];
	static const char open_fence[] = "```yaml\n";
	char *start, *end;
	size_t n;
	FILE *f = fopen(CONFIG_MD, "r");

	ASSERT_EQ(f != NULL, 1, CONFIG_MD);
	n = fread(md, 1, sizeof(md) - 1, f);
	fclose(f);
	md[n] = '\0';
	start = strstr(md, open_fence);
	ASSERT_EQ(start != NULL, 1, "no ```yaml block in " CONFIG_MD);
	start += strlen(open_fence);
	end = strstr(start, "\n```");
	ASSERT_EQ(end != NULL, 1, "the ```yaml block in " CONFIG_MD " is not closed");
	end[1] = '\0';
	return start;
}

/*
 * The dotted keys the block names, one per line, into keys (newline-separated,
 * each line "\nKEY\n"-searchable): "name:" alone opens a section at its
 * indentation (0, 2: a section inside one, as cluster: etcd:), a line with a
 * value names a key of the sections above it, deeper lines continue comments.
 */
static void doc_keys(const char *block, char *keys, size_t len)
{
	char sections[2][32] = {"", ""}, name[64];
	const char *line = block;

	snprintf(keys, len, "\n");
	while (*line) {
		const char *nl = strchr(line, '\n'), *p = line;
		size_t ll = nl ? (size_t) (nl - line) : strlen(line);
		int indent = 0;
		size_t k = 0;

		while (p < line + ll && *p == ' ')
			p++, indent++;
		while (p + k < line + ll && strchr("abcdefghijklmnopqrstuvwxyz0123456789_", p[k]))
			k++;
		if (k && k < sizeof(name) && p[k] == ':' && indent % 2 == 0 && indent <= 4) {
			const char *v = p + k + 1;
			int level = indent / 2;

			memcpy(name, p, k);
			name[k] = '\0';
			while (v < line + ll && *v == ' ')
				v++;
			if (level < 2 && (v == line + ll || *v == '#')) {
				snprintf(sections[level], sizeof(sections[level]), "%s", name);
				if (level == 0)
					sections[1][0] = '\0';
			} else {
				size_t used = strlen(keys);

				snprintf(keys + used, len - used, "%s%s%s%s%s\n",
					 level > 0 ? sections[0] : "", level > 0 ? "." : "",
					 level > 1 ? sections[1] : "", level > 1 ? "." : "", name);
			}
		}
		line += ll + (nl ? 1 : 0);
	}
}

/* docs/configuration.md shows every key, no unknown one, each with its default. */
static void test_docs_show_every_key_and_default(void **state)
{
	struct sm_config *cfg = &cfg_buf, *def = &other_buf;
	const char *block = doc_config_block();
	char keys[8192], key[64], want[80], changed[256], path[64];
	struct sm_error err;
	size_t n = 0;

	(void) state;
	doc_keys(block, keys, sizeof(keys));
	for (size_t i = 0; sm_config_key_name(i, key, sizeof(key)); i++, n++) {
		snprintf(want, sizeof(want), "\n%s\n", key);
		if (!strstr(keys, want))
			fail_msg("docs/configuration.md's yaml block lacks the key %s", key);
	}
	assert_true(n > 40);
	/* the block parses as a config file: an unknown or misspelled key fails here */
	if (load_text(block, cfg, &err, path, sizeof(path)) != 0)
		fail_msg("docs/configuration.md's yaml block: %s", err.msg);
	/* and shows the defaults: only node is an example value ("" by default) */
	sm_config_defaults(def);
	if (sm_config_changed_keys(def, cfg, NULL, changed, sizeof(changed)) != 1 ||
	    strcmp(changed, "node") != 0)
		fail_msg("docs/configuration.md's yaml block differs from the built-in defaults in "
			 "%s (only node may)",
			 changed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_docs_show_every_key_and_default),
		cmocka_unit_test(test_load_every_key),
		cmocka_unit_test(test_load_partial_keeps_rest),
		cmocka_unit_test(test_load_bad),
		cmocka_unit_test(test_load_missing_and_unreadable),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_file_then_set),
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_admin_and_metrics_keys),
		cmocka_unit_test(test_cluster_keys),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
