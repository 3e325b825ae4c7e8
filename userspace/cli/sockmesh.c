// SPDX-License-Identifier: Apache-2.0
/* sockmesh, the operator's CLI: option parsing, the subcommand table, talking to sockmeshd. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "ctl.h"
#include "util.h"

#define CLI_TIMEOUT_MAX_MS 600000

static const char *const common_options_help =
	"Options (before or after the command):\n"
	"  -S, --socket PATH   control socket of the node's sockmeshd\n"
	"                      (default $" SM_CTL_SOCKET_ENV " or " SM_CTL_DEFAULT_SOCKET ")\n"
	"  -o, --output FMT    table (default) or json: the daemon's data, pretty-printed\n"
	"  -v, --verbose       more detail in tables (repeatable)\n"
	"      --timeout MS    give up on the daemon after MS milliseconds (1..600000,\n"
	"                      default 5000)\n"
	"  -h, --help          this help; --version: the CLI's version\n";

static const struct cli_cmd commands[] = {
	{
		.name = "status",
		.summary = "programs, maps and fill levels, counters, daemon health",
		.help = "Shows the node's daemon: readiness, uptime, the pin and cgroup "
			"directories,\n"
			"the BPF programs and the cgroups they are attached to, every map with "
			"its\n"
			"fill level, the kernel counters that are not zero (all of them with -v),\n"
			"and the proxy's and flow log's statistics.\n"
			"\n"
			"Examples:\n"
			"  sockmesh status\n"
			"  sockmesh status -v\n"
			"  sockmesh -S /run/sockmesh/node2.sock status\n"
			"  sockmesh status -o json | jq '.maps[] | select(.max_entries > 0)'\n",
		.render = cli_render_status,
	},
	{
		.name = "workloads",
		.summary = "enrolled workloads",
		.help = "Lists the workloads of the catalog: name, numeric identity, SPIFFE ID, "
			"the\n"
			"node that hosts them, whether that is this node, STRICT or PERMISSIVE "
			"mode,\n"
			"whether the programs see the workload's cgroup, and the cgroup (with its\n"
			"cgroup id under -v).\n"
			"\n"
			"Examples:\n"
			"  sockmesh workloads\n"
			"  sockmesh workloads -v\n"
			"  sockmesh workloads -o json | jq -r '.[] | select(.local) | .name'\n",
		.render = cli_render_workloads,
	},
	{
		.name = "services",
		.summary = "services from the catalog",
		.help = "Lists the services of the catalog: name, address and port, the workload "
			"that\n"
			"serves them with its identity, its node, and whether that node is remote\n"
			"(connections to it are carried through the mTLS tunnel).\n"
			"\n"
			"Examples:\n"
			"  sockmesh services\n"
			"  sockmesh services -o json | jq -r '.[] | \"\\(.address):\\(.port)\"'\n",
		.render = cli_render_services,
	},
};

enum {
	OPT_TIMEOUT = 0x100,
	OPT_VERSION,
};

static const struct option long_options[] = {
	{"socket", required_argument, NULL, 'S'},
	{"output", required_argument, NULL, 'o'},
	{"verbose", no_argument, NULL, 'v'},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, OPT_VERSION},
	{NULL, 0, NULL, 0},
};

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("sockmesh: ", stderr);
	va_start(ap, fmt);
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 bug, ap is va_start'ed
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_bad_answer(const struct cli_opts *o, const char *cmd, const char *what)
{
	cli_error("unexpected answer to '%s' from %s: %s (is sockmeshd the same version as "
		  "sockmesh %s? -o json shows the raw answer)",
		  cmd, o->socket, what, SOCKMESH_VERSION);
	return CLI_EXIT_FAIL;
}

const char *cli_json_str(struct json_object *obj, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

bool cli_json_i64(struct json_object *obj, const char *key, int64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_int))
		return false;
	*out = json_object_get_int64(v);
	return true;
}

const char *cli_json_yesno(struct json_object *obj, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_boolean))
		return "-";
	return json_object_get_boolean(v) ? "yes" : "no";
}

const char *cli_json_text(struct json_object *obj, const char *key, char *buf, size_t len)
{
	const char *s = cli_json_str(obj, key);
	int64_t v;

	if (s)
		return *s ? s : "-";
	if (buf && len && cli_json_i64(obj, key, &v)) {
		snprintf(buf, len, "%lld", (long long) v);
		return buf;
	}
	return "-";
}

static void print_usage(FILE *out)
{
	fprintf(out, "Usage: sockmesh [OPTIONS] COMMAND [OPTIONS]\n"
		     "\n"
		     "Inspects and steers the sockmesh data plane of one node through sockmeshd's\n"
		     "control socket.\n"
		     "\n"
		     "Commands:\n");
	for (size_t i = 0; i < SM_ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "  %-12s %s\n", "policy",
		"connection policy: apply, validate, diff, get, delete, explain, wait");
	fprintf(out, "  %-12s %s\n", "flows", "recent and live flow records, filtered (--follow)");
	fprintf(out, "  %-12s %s\n", "help", "help on a command: sockmesh help status");
	fprintf(out,
		"\n%s"
		"\n"
		"Exit status: 0 ok, 1 daemon unreachable or it reported an error, 2 usage error.\n"
		"Run 'sockmesh COMMAND --help' for a command's details and examples.\n",
		common_options_help);
}

static void print_cmd_help(const struct cli_cmd *cmd)
{
	printf("Usage: sockmesh %s [OPTIONS]\n\n%s", cmd->name, cmd->help);
	printf("\n%s", common_options_help);
}

static const struct cli_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < SM_ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int unknown_cmd(const char *name)
{
	cli_error("unknown command '%s' (commands: status, workloads, services, policy, flows; "
		  "run 'sockmesh --help')",
		  name);
	return CLI_EXIT_USAGE;
}

/*
 * Parse the options of one argv segment into o. stop_at_cmd: the program's
 * own options, which end at the first word (the command). Returns -1 to go on,
 * or an exit code; *help / *version report those flags. "where" names the
 * --help to point at in messages.
 */
static int parse_options(int argc, char **argv, bool stop_at_cmd, struct cli_opts *o, bool *help,
			 bool *version, const char *where)
{
	const char *optstring = stop_at_cmd ? "+:S:o:vh" : ":S:o:vh";
	uint64_t v;
	int c;

	opterr = 0;
	optind = 0; /* glibc: full reinitialization, this runs twice */
	while ((c = getopt_long(argc, argv, optstring, long_options, NULL)) != -1) {
		switch (c) {
		case 'S':
			if (!*optarg) {
				cli_error("--socket needs a path (see '%s --help')", where);
				return CLI_EXIT_USAGE;
			}
			o->socket = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "table") == 0) {
				o->output = CLI_OUT_TABLE;
			} else if (strcmp(optarg, "json") == 0) {
				o->output = CLI_OUT_JSON;
			} else {
				cli_error("unknown output format '%s' (use -o table or -o json)",
					  optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'v':
			if (o->verbose < 10)
				o->verbose++;
			break;
		case OPT_TIMEOUT:
			if (sm_parse_u64(optarg, 1, CLI_TIMEOUT_MAX_MS, &v)) {
				cli_error("--timeout '%s': expected milliseconds from 1 to %d",
					  optarg, CLI_TIMEOUT_MAX_MS);
				return CLI_EXIT_USAGE;
			}
			o->timeout_ms = (int) v;
			break;
		case 'h':
			*help = true;
			break;
		case OPT_VERSION:
			*version = true;
			break;
		case ':':
			cli_error("option '%s' needs a value (see '%s --help')", argv[optind - 1],
				  where);
			return CLI_EXIT_USAGE;
		default:
			cli_error("unknown option '%s' (see '%s --help')", argv[optind - 1], where);
			return CLI_EXIT_USAGE;
		}
	}
	return -1;
}

/* Ask the daemon for cmd->name and show the answer as o->output says. */
static int run_cmd(const struct cli_cmd *cmd, const struct cli_opts *o)
{
	struct json_object *data = NULL;
	struct sm_error err = {""};
	const char *s;
	int ret;

	ret = sm_ctl_request(o->socket, cmd->name, o->timeout_ms, &data, &err);
	if (ret == -EPROTO) {
		cli_error("%s: sockmeshd at %s: %s", cmd->name, o->socket, err.msg);
		return CLI_EXIT_FAIL;
	}
	if (ret) {
		cli_error("%s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (o->output == CLI_OUT_JSON) {
		s = json_object_to_json_string_ext(data, JSON_C_TO_STRING_PRETTY |
								 JSON_C_TO_STRING_SPACED |
								 JSON_C_TO_STRING_NOSLASHESCAPE);
		ret = puts(s ? s : "null") < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
	} else {
		ret = cmd->render(o, cmd->name, data);
	}
	json_object_put(data);
	if (fflush(stdout) != 0 && ret == CLI_EXIT_OK) {
		cli_error("cannot write the output: %s", strerror(errno));
		ret = CLI_EXIT_FAIL;
	}
	return ret;
}

/* `sockmesh help [COMMAND]` */
static int run_help(int argc, char **argv)
{
	const struct cli_cmd *cmd;

	if (argc < 2) {
		print_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (argc > 2) {
		cli_error("help takes one command name (e.g. 'sockmesh help status')");
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "help") == 0) {
		print_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "policy") == 0) {
		char *sub[] = {argv[1], (char *) "--help", NULL};
		struct cli_opts o = {0};

		return cli_policy(&o, 2, sub);
	}
	if (strcmp(argv[1], "flows") == 0) {
		char *sub[] = {argv[1], (char *) "--help", NULL};
		struct cli_opts o = {0};

		return cli_flows(&o, 2, sub);
	}
	cmd = find_cmd(argv[1]);
	if (!cmd)
		return unknown_cmd(argv[1]);
	print_cmd_help(cmd);
	return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct cli_opts o = {
		.socket = SM_CTL_DEFAULT_SOCKET,
		.output = CLI_OUT_TABLE,
		.timeout_ms = SM_CTL_DEFAULT_TIMEOUT_MS,
	};
	bool help = false, version = false;
	const struct cli_cmd *cmd;
	const char *env = getenv(SM_CTL_SOCKET_ENV);
	char where[64];
	int ret, cmd_argc;
	char **cmd_argv;

	if (env && *env)
		o.socket = env;

	ret = parse_options(argc, argv, true, &o, &help, &version, "sockmesh");
	if (ret >= 0)
		return ret;
	if (version) {
		printf("sockmesh %s\n", SOCKMESH_VERSION);
		return CLI_EXIT_OK;
	}
	if (optind >= argc) {
		if (help) {
			print_usage(stdout);
			return CLI_EXIT_OK;
		}
		cli_error("no command given (run 'sockmesh --help' for the list)");
		return CLI_EXIT_USAGE;
	}
	cmd_argc = argc - optind;
	cmd_argv = argv + optind;
	if (strcmp(cmd_argv[0], "help") == 0)
		return run_help(cmd_argc, cmd_argv);
	if (strcmp(cmd_argv[0], "policy") == 0)
		return cli_policy(&o, cmd_argc, cmd_argv);
	if (strcmp(cmd_argv[0], "flows") == 0)
		return cli_flows(&o, cmd_argc, cmd_argv);
	cmd = find_cmd(cmd_argv[0]);
	if (!cmd)
		return unknown_cmd(cmd_argv[0]);

	snprintf(where, sizeof(where), "sockmesh %s", cmd->name);
	ret = parse_options(cmd_argc, cmd_argv, false, &o, &help, &version, where);
	if (ret >= 0)
		return ret;
	if (help) {
		print_cmd_help(cmd);
		return CLI_EXIT_OK;
	}
	if (version) {
		printf("sockmesh %s\n", SOCKMESH_VERSION);
		return CLI_EXIT_OK;
	}
	if (optind < cmd_argc) {
		cli_error("%s takes no arguments, got '%s' (see '%s --help')", cmd->name,
			  cmd_argv[optind], where);
		return CLI_EXIT_USAGE;
	}
	return run_cmd(cmd, &o);
}
