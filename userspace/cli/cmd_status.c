// SPDX-License-Identifier: Apache-2.0
/* `sockmesh status`: the daemon's health, programs, maps, counters and statistics as text. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "table.h"
#include "util.h"

/* "3d04h05m", "1h02m03s", "4m05s", "42s" */
static const char *format_uptime(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "-");
	else if (s >= 86400)
		snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h%02" PRId64 "m", s / 86400,
			 s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m%02" PRId64 "s", s / 3600,
			 s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRId64 "s", s);
	return buf;
}

/* The header's labels, as wide as the widest ("enrollment root:") and a blank. */
#define LABEL_WIDTH 17

static void print_field(const char *name, const char *value)
{
	printf("%-*s%s\n", LABEL_WIDTH, name, value && *value ? value : "-");
}

static void print_header(struct json_object *d)
{
	char buf[64];
	int64_t v;

	print_field("node:", cli_json_text(d, "node", buf, sizeof(buf)));
	print_field("version:", cli_json_text(d, "version", buf, sizeof(buf)));
	print_field("ready:", cli_json_yesno(d, "ready"));
	print_field("pid:", cli_json_text(d, "pid", buf, sizeof(buf)));
	print_field("uptime:",
		    cli_json_i64(d, "uptime_s", &v) ? format_uptime(v, buf, sizeof(buf)) : "-");
	print_field("bpffs:", cli_json_str(d, "bpffs"));
	print_field("cgroup root:", cli_json_str(d, "cgroup_root"));
	print_field("enrollment root:", cli_json_str(d, "enrollment_root"));
	if (strcmp(cli_json_yesno(d, "redirect"), "-") == 0)
		print_field("redirect:", "-");
	else
		print_field("redirect:",
			    strcmp(cli_json_yesno(d, "redirect"), "yes") == 0 ? "on" : "off");
}

/* "3 active, 120 accepted, ..." from the members named in keys, "-" for a missing one. */
static void print_stats(const char *title, struct json_object *obj, const char *const *keys,
			const char *const *labels, size_t n)
{
	char buf[32];

	printf("%-*s", LABEL_WIDTH, title);
	if (!obj || !json_object_is_type(obj, json_type_object)) {
		printf("-\n");
		return;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s%s %s", i ? ", " : "", cli_json_text(obj, keys[i], buf, sizeof(buf)),
		       labels[i]);
	printf("\n");
}

static struct json_object *member(struct json_object *obj, const char *key, enum json_type type)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

/* One row per (program, cgroup); a program attached nowhere gets one row with "-". */
static int print_programs(struct json_object *progs)
{
	static const struct sm_table_col cols[] = {
		{"NAME", false},   {"SECTION", false},	   {"PROG ID", true},
		{"LINK ID", true}, {"ATTACHED TO", false},
	};
	struct sm_table *t = sm_table_new(cols, SM_ARRAY_SIZE(cols));
	size_t n = json_object_array_length(progs);
	char id[32], link[32], target[512];
	int err = 0;

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n && !err; i++) {
		struct json_object *p = json_object_array_get_idx(progs, i);
		struct json_object *att = member(p, "attached", json_type_array);
		size_t natt = att ? json_object_array_length(att) : 0;
		const char *row[] = {
			cli_json_text(p, "name", NULL, 0),
			cli_json_text(p, "section", NULL, 0),
			cli_json_text(p, "prog_id", id, sizeof(id)),
			"-",
			"(not attached)",
		};

		for (size_t j = 0; j < natt && !err; j++) {
			struct json_object *a = json_object_array_get_idx(att, j);

			/* continuation rows leave the program's columns blank */
			if (j > 0)
				row[0] = row[1] = row[2] = "";
			row[3] = cli_json_text(a, "link_id", link, sizeof(link));
			/* a cgroup path, or the map (sk_msg) / iterator the program hangs off */
			if (member(a, "cgroup", json_type_string))
				snprintf(target, sizeof(target), "%s",
					 cli_json_text(a, "cgroup", NULL, 0));
			else if (member(a, "map", json_type_string))
				snprintf(target, sizeof(target), "map %s",
					 cli_json_text(a, "map", NULL, 0));
			else
				snprintf(target, sizeof(target), "%s iterator",
					 cli_json_text(a, "iterator", NULL, 0));
			row[4] = target;
			err = sm_table_add_row(t, row, SM_ARRAY_SIZE(row));
		}
		if (natt == 0)
			err = sm_table_add_row(t, row, SM_ARRAY_SIZE(row));
	}
	if (!err) {
		printf("\nPrograms (%zu):\n", n);
		err = sm_table_print(t, stdout);
	}
	sm_table_free(t);
	return err;
}

static int print_maps(struct json_object *maps)
{
	static const struct sm_table_col cols[] = {
		{"NAME", false}, {"TYPE", false}, {"ENTRIES", true}, {"MAX", true}, {"FILL", true},
	};
	struct sm_table *t = sm_table_new(cols, SM_ARRAY_SIZE(cols));
	size_t n = json_object_array_length(maps);
	char nent[32], nmax[32], fill[32];
	int64_t entries, max;
	int err = 0;

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n && !err; i++) {
		struct json_object *m = json_object_array_get_idx(maps, i);
		/* entries is -1 for maps whose fill cannot be counted (ring buffers, sk_storage) */
		bool countable = cli_json_i64(m, "entries", &entries) && entries >= 0;
		const char *row[] = {
			cli_json_text(m, "name", NULL, 0),
			cli_json_text(m, "type", NULL, 0),
			countable ? cli_json_text(m, "entries", nent, sizeof(nent)) : "-",
			cli_json_text(m, "max_entries", nmax, sizeof(nmax)),
			"-",
		};

		if (countable && cli_json_i64(m, "max_entries", &max) && max > 0) {
			double pct = (double) entries * 100.0 / (double) max;

			/* a map in use never shows as empty */
			if (entries > 0 && pct < 0.1)
				snprintf(fill, sizeof(fill), "<0.1%%");
			else
				snprintf(fill, sizeof(fill), "%.1f%%", pct);
			row[4] = fill;
		}
		err = sm_table_add_row(t, row, SM_ARRAY_SIZE(row));
	}
	if (!err) {
		printf("\nMaps (%zu):\n", n);
		err = sm_table_print(t, stdout);
	}
	sm_table_free(t);
	return err;
}

/* Non-zero counters, or all of them when verbose. */
static int print_counters(struct json_object *counters, bool all)
{
	static const struct sm_table_col cols[] = {{"COUNTER", false}, {"VALUE", true}};
	struct sm_table *t = sm_table_new(cols, SM_ARRAY_SIZE(cols));
	size_t total = 0;
	char buf[32];
	int err = 0;

	if (!t)
		return -ENOMEM;
	json_object_object_foreach(counters, name, val)
	{
		bool is_int = json_object_is_type(val, json_type_int);
		const char *row[] = {name, is_int ? buf : "-"};

		total++;
		if (err || (!all && is_int && json_object_get_int64(val) == 0))
			continue;
		snprintf(buf, sizeof(buf), "%" PRId64, json_object_get_int64(val));
		err = sm_table_add_row(t, row, SM_ARRAY_SIZE(row));
	}
	if (!err && sm_table_rows(t) == 0) {
		printf("\nCounters: all %zu zero (-v lists them)\n", total);
	} else if (!err) {
		printf("\nCounters (%s):\n", all ? "all" : "non-zero; -v lists all");
		err = sm_table_print(t, stdout);
	}
	sm_table_free(t);
	return err;
}

/* Cluster mode's one line (nothing in file mode): the revision, etcd's answer, a refusal. */
static void print_cluster(struct json_object *c)
{
	struct json_object *r;
	int64_t rev = 0, stale = 0, contact = -1;

	if (!c)
		return;
	cli_json_i64(c, "revision", &rev);
	cli_json_i64(c, "stale_s", &stale);
	cli_json_i64(c, "last_contact_s", &contact);
	printf("%-*setcd revision %" PRId64 " in force, ", LABEL_WIDTH, "cluster:", rev);
	if (strcmp(cli_json_yesno(c, "connected"), "yes") == 0)
		printf("etcd answers");
	else if (contact < 0)
		printf("etcd not reached since the start (enforcing the saved state)");
	else
		printf("etcd has not answered for %" PRId64 " s", stale);
	r = member(c, "refused", json_type_object);
	if (r) {
		const char *key = cli_json_str(r, "key"), *why = cli_json_str(r, "reason");
		int64_t rr = 0;

		cli_json_i64(r, "revision", &rr);
		printf("; revision %" PRId64 " REFUSED: %s: %s", rr, key && *key ? key : "-",
		       why ? why : "-");
	}
	printf("\n");
}

static int render_status(const struct cli_opts *o, const char *cmd, struct json_object *data)
{
	static const char *const proxy_keys[] = {"active", "accepted", "upstream_errors",
						 "orig_dst_errors"};
	static const char *const proxy_labels[] = {"active", "accepted", "upstream errors",
						   "orig_dst errors"};
	static const char *const flow_keys[] = {"records",	"lost_records",	 "filtered",
						"rate_limited", "queue_dropped", "write_failed",
						"rotations"};
	static const char *const flow_labels[] = {"records",	  "lost",	   "filtered",
						  "rate limited", "queue dropped", "write failed",
						  "rotations"};
	static const char *const tunnel_keys[] = {"connections_out",   "connections_in",
						  "streams_open",      "streams_total",
						  "tls_handshakes_ok", "credentials_reloads"};
	static const char *const tunnel_labels[] = {
		"out", "in", "streams open", "streams", "TLS handshakes", "rotations"};
	struct json_object *tun;
	struct json_object *v;
	int err = 0;

	if (!data || !json_object_is_type(data, json_type_object))
		return cli_bad_answer(o, cmd, "expected an object");
	print_header(data);
	print_stats("proxy:", member(data, "proxy", json_type_object), proxy_keys, proxy_labels,
		    SM_ARRAY_SIZE(proxy_keys));
	print_stats("flows:", member(data, "flows", json_type_object), flow_keys, flow_labels,
		    SM_ARRAY_SIZE(flow_keys));
	/* the tunnel, or why there is none */
	tun = member(data, "tunnel", json_type_object);
	if (tun && json_object_get_boolean(member(tun, "hbone", json_type_boolean)))
		print_stats("tunnel:", tun, tunnel_keys, tunnel_labels, SM_ARRAY_SIZE(tunnel_keys));
	else if (tun)
		printf("%-*splaintext relay (tunnel.hbone: false): traffic between nodes is NOT "
		       "encrypted\n",
		       LABEL_WIDTH, "tunnel:");

	print_cluster(member(data, "cluster", json_type_object));

	v = member(data, "programs", json_type_array);
	if (v)
		err = print_programs(v);
	v = member(data, "maps", json_type_array);
	if (v && !err)
		err = print_maps(v);
	v = member(data, "counters", json_type_object);
	if (v && !err)
		err = print_counters(v, o->verbose > 0);
	if (err) {
		cli_error("cannot print the status: %s", strerror(-err));
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

const struct cli_cmd cli_status_cmd = {
	.name = "status",
	.summary = "programs, maps and fill levels, counters, daemon health",
	.help = "Shows the node's daemon: readiness, uptime, the pin and cgroup directories,\n"
		"the BPF programs and the cgroups they are attached to, every map with its\n"
		"fill level, the kernel counters that are not zero (all of them with -v),\n"
		"and the proxy's and flow log's statistics.\n"
		"With --cluster: every node of the cluster as etcd has it (docs/cli.md,\n"
		"cluster mode), and no daemon is asked.\n",
	.examples = "sockmesh status\n"
		    "sockmesh status -v\n"
		    "sockmesh -S /run/sockmesh/node2.sock status\n"
		    "sockmesh status -o json | jq '.maps[] | select(.max_entries > 0)'\n"
		    "sockmesh status --cluster\n",
	.options = cli_status_opts,
	.globals = CLI_G_ALL,
	.exits = CLI_EXITS_COMMON,
	.cfg_size = sizeof(struct cli_cluster_args),
	.parse = cli_status_parse,
	.run = cli_status_run,
	.query = "status",
	.render = render_status,
};
