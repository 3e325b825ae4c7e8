// SPDX-License-Identifier: Apache-2.0
/* `sockmesh workloads` and `sockmesh services`: the catalog as the daemon sees it, as tables. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "table.h"
#include "util.h"

static int print_table(struct sm_table *t, const char *cmd, int err)
{
	if (t && !err)
		err = sm_table_print(t, stdout);
	sm_table_free(t);
	if (err) {
		cli_error("cannot print the %s: %s", cmd, strerror(-err));
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

static bool cgid_zero(struct json_object *w)
{
	struct json_object *v;

	return !json_object_object_get_ex(w, "cgroup_id", &v) || json_object_get_uint64(v) == 0;
}

static int render_workloads(const struct cli_opts *o, const char *cmd, struct json_object *data)
{
	static const struct sm_table_col cols[] = {
		{"NAME", false},   {"IDENTITY", true},	{"SPIFFE-ID", false}, {"NODE", false},
		{"LOCAL", false},  {"MODE", false},	{"ENROLLED", false},  {"UNIT", false},
		{"CGROUP", false}, {"CGROUP ID", true},
	};
	size_t ncols = SM_ARRAY_SIZE(cols);
	struct sm_table *t;
	size_t n;
	int err = 0;

	if (!data || !json_object_is_type(data, json_type_array))
		return cli_bad_answer(o, cmd, "expected an array");
	n = json_object_array_length(data);
	if (n == 0) {
		printf("no workloads in the catalog\n");
		return CLI_EXIT_OK;
	}
	t = sm_table_new(cols, ncols);
	if (!t)
		return print_table(NULL, cmd, -ENOMEM);
	for (size_t i = 0; i < n && !err; i++) {
		struct json_object *w = json_object_array_get_idx(data, i);
		bool local = strcmp(cli_json_yesno(w, "local"), "yes") == 0;
		char id[32], cgid[32];
		const char *row[] = {
			cli_json_text(w, "name", NULL, 0),
			cli_json_text(w, "identity", id, sizeof(id)),
			cli_json_text(w, "spiffe_id", NULL, 0),
			cli_json_text(w, "node", NULL, 0),
			cli_json_yesno(w, "local"),
			cli_json_text(w, "mode", NULL, 0),
			/* enrollment and cgroup id only mean something on the workload's node */
			local ? cli_json_yesno(w, "enrolled") : "-",
			/* the systemd unit it is named by; "-" for a workload named by path */
			cli_json_text(w, "unit", NULL, 0),
			cli_json_text(w, "cgroup", NULL, 0),
			/* the cgroup as it is now; "-" while it does not exist (still enrolled) */
			local && !cgid_zero(w) ? cli_json_text(w, "cgroup_id", cgid, sizeof(cgid))
					       : "-",
		};

		err = sm_table_add_row(t, row, ncols);
	}
	return print_table(t, cmd, err);
}

static int render_services(const struct cli_opts *o, const char *cmd, struct json_object *data)
{
	static const struct sm_table_col cols[] = {
		{"NAME", false},    {"ADDRESS", false}, {"PORT", true},	   {"WORKLOAD", false},
		{"IDENTITY", true}, {"NODE", false},	{"REMOTE", false},
	};
	struct sm_table *t;
	size_t n;
	int err = 0;

	if (!data || !json_object_is_type(data, json_type_array))
		return cli_bad_answer(o, cmd, "expected an array");
	n = json_object_array_length(data);
	if (n == 0) {
		printf("no services in the catalog\n");
		return CLI_EXIT_OK;
	}
	t = sm_table_new(cols, SM_ARRAY_SIZE(cols));
	if (!t)
		return print_table(NULL, cmd, -ENOMEM);
	for (size_t i = 0; i < n && !err; i++) {
		struct json_object *s = json_object_array_get_idx(data, i);
		char port[32], id[32];
		const char *row[] = {
			cli_json_text(s, "name", NULL, 0),
			cli_json_text(s, "address", NULL, 0),
			cli_json_text(s, "port", port, sizeof(port)),
			cli_json_text(s, "workload", NULL, 0),
			cli_json_text(s, "identity", id, sizeof(id)),
			cli_json_text(s, "node", NULL, 0),
			cli_json_yesno(s, "remote"),
		};

		err = sm_table_add_row(t, row, SM_ARRAY_SIZE(row));
	}
	return print_table(t, cmd, err);
}

const struct cli_cmd cli_workloads_cmd = {
	.name = "workloads",
	.summary = "enrolled workloads",
	.help = "Lists the workloads of the catalog: name, numeric identity, SPIFFE ID, the\n"
		"node that hosts them, whether that is this node, STRICT or PERMISSIVE mode,\n"
		"whether the programs see the workload's cgroup, the systemd unit it is named\n"
		"by (\"-\" for a cgroup path), the cgroup and its id.\n",
	.examples = "sockmesh workloads\n"
		    "sockmesh workloads -o json | jq -r '.[] | select(.local) | .name'\n",
	.globals = CLI_G_ALL,
	.exits = CLI_EXITS_COMMON,
	.run = cli_run_query,
	.query = "workloads",
	.render = render_workloads,
};

const struct cli_cmd cli_services_cmd = {
	.name = "services",
	.summary = "services from the catalog",
	.help = "Lists the services of the catalog: name, address and port, the workload that\n"
		"serves them with its identity, its node, and whether that node is remote\n"
		"(connections to it are carried through the mTLS tunnel).\n",
	.examples = "sockmesh services\n"
		    "sockmesh services -o json | jq -r '.[] | \"\\(.address):\\(.port)\"'\n",
	.globals = CLI_G_ALL,
	.exits = CLI_EXITS_COMMON,
	.run = cli_run_query,
	.query = "services",
	.render = render_services,
};
