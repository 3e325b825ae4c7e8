// SPDX-License-Identifier: Apache-2.0
/* `sockmesh policy ...`: apply, validate, diff, get, delete, explain and wait (docs/policy.md). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "ctl.h"
#include "policy.h"
#include "util.h"
#include "yaml_doc.h"

#define POLICY_FILE_MAX (4u << 20)

enum {
	P_DRY_RUN = CLI_KEY_OWN,
	P_STRICT,
	P_ALL,
	P_YES,
	P_FROM,
	P_TO,
	P_PORT,
	P_MAX_WAIT,
};

/* One struct for every policy command: they take each other's options (cli.h). */
struct policy_args {
	const char *file, *from, *to, *format;
	bool dry_run, strict, all, yes;
	uint64_t port, max_wait;
	struct cli_cluster_args cluster; /* --cluster and how to reach etcd (cmd_cluster.c) */
};

/* One request; *data on success. Prints the daemon's or the transport's message. */
static int request(const struct cli_opts *o, const char *cmd, json_object *args, json_object **data)
{
	struct sm_error err = {""};
	int ret = sm_ctl_request_args(o->socket, cmd, args, o->timeout_ms, data, &err);

	if (ret == -EPROTO)
		cli_error("%s", err.msg);
	else if (ret)
		cli_error("%s", err.msg);
	return ret ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static int64_t num(json_object *o, const char *key)
{
	int64_t v = 0;

	cli_json_i64(o, key, &v);
	return v;
}

static int print_json(json_object *data)
{
	const char *s = json_object_to_json_string_ext(
		data,
		JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);

	puts(s ? s : "null");
	return CLI_EXIT_OK;
}

/* apply / diff: the changes, then one summary line. */
static int show_change(const struct cli_opts *o, json_object *data, bool dry_run)
{
	const char *diff = cli_json_str(data, "diff");

	if (o->output == CLI_OUT_JSON)
		return print_json(data);
	if (diff && *diff)
		fputs(diff, stdout);
	if (dry_run)
		printf("dry run: revision %lld stays; the change is %lld added, %lld removed, %lld "
		       "changed kernel entries (%lld in all, %lld policies)\n",
		       (long long) num(data, "revision"), (long long) num(data, "added"),
		       (long long) num(data, "removed"), (long long) num(data, "changed"),
		       (long long) num(data, "entries"), (long long) num(data, "policies"));
	else
		printf("revision %lld applied: %lld policies, %lld kernel entries (%lld added, "
		       "%lld "
		       "removed, %lld changed)\n",
		       (long long) num(data, "revision"), (long long) num(data, "policies"),
		       (long long) num(data, "entries"), (long long) num(data, "added"),
		       (long long) num(data, "removed"), (long long) num(data, "changed"));
	if (!dry_run && (num(data, "closed") || num(data, "streams_closed")))
		printf("closed: %lld established connection(s) and %lld inbound tunnel stream(s) "
		       "that revision %lld denies\n",
		       (long long) num(data, "closed"), (long long) num(data, "streams_closed"),
		       (long long) num(data, "revision"));
	return CLI_EXIT_OK;
}

/*
 * The selectors and sources of file that match no workload, one note each on
 * stderr: "FILE:LINE: note: policy 'P' rules[N]: source 'ID' names no
 * workload of the catalog (...)". A daemon without the list gets the count.
 */
static void print_unmatched(json_object *data, const char *file)
{
	json_object *list, *e;
	int64_t more = 0;
	char what[SM_SPIFFE_MAX + 128];

	if (!json_object_object_get_ex(data, "unmatched", &list) ||
	    !json_object_is_type(list, json_type_array)) {
		if (num(data, "unmatched_patterns"))
			fprintf(stderr,
				"%s: note: %lld selector(s) or source(s) match no workload of the "
				"catalog, e.g. %s\n",
				file, (long long) num(data, "unmatched_patterns"),
				cli_json_str(data, "unmatched_example")
					? cli_json_str(data, "unmatched_example")
					: "?");
		return;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct sm_policy_unmatched u = {.rule = -1};
		json_object *v;
		int64_t n = 0;

		e = json_object_array_get_idx(list, i);
		sm_strlcpy(u.policy, cli_json_str(e, "policy") ? cli_json_str(e, "policy") : "?",
			   sizeof(u.policy));
		sm_strlcpy(u.spiffe, cli_json_str(e, "spiffe") ? cli_json_str(e, "spiffe") : "?",
			   sizeof(u.spiffe));
		if (cli_json_i64(e, "rule", &n))
			u.rule = (int) n;
		u.line = (unsigned int) num(e, "line");
		u.pattern =
			json_object_object_get_ex(e, "pattern", &v) && json_object_get_boolean(v);
		fprintf(stderr, "%s:%u: note: %s (%s)\n", file, u.line,
			sm_policy_unmatched_format(&u, what, sizeof(what)),
			u.pattern ? "it takes effect for the workloads it matches once the "
				    "catalog has some"
				  : "an unknown identity: check the spelling, or add the workload "
				    "to the catalog; --strict refuses it");
	}
	if (cli_json_i64(data, "unmatched_more", &more) && more)
		fprintf(stderr, "%s: note: and %lld more\n", file, (long long) more);
}

static int run_with_file(const struct cli_opts *o, const char *sub, const struct policy_args *a)
{
	json_object *args, *data = NULL;
	struct sm_error err = {""};
	const char *name;
	size_t len;
	char *text;
	int ret;

	if (!a->file) {
		cli_error("policy %s needs -f FILE (see 'sockmesh policy %s --help')", sub, sub);
		return CLI_EXIT_USAGE;
	}
	name = strcmp(a->file, "-") == 0 ? "<stdin>" : a->file;
	text = cli_read_input(a->file, POLICY_FILE_MAX, "split the policies over several files",
			      &len);
	if (!text)
		return CLI_EXIT_FAIL;
	/* the daemon would refuse it too, but could not name the file, line and column */
	if (sm_yaml_text_check(text, len, name, &err)) {
		cli_error("%s", err.msg);
		free(text);
		return CLI_EXIT_FAIL;
	}
	args = json_object_new_object();
	json_object_object_add(args, "document", json_object_new_string_len(text, (int) len));
	json_object_object_add(args, "source", json_object_new_string(name));
	json_object_object_add(args, "dry_run", json_object_new_boolean(a->dry_run));
	json_object_object_add(args, "strict", json_object_new_boolean(a->strict));
	free(text);
	ret = request(o,
		      strcmp(sub, "apply") == 0	 ? "policy_apply"
		      : strcmp(sub, "diff") == 0 ? "policy_diff"
						 : "policy_validate",
		      args, &data);
	json_object_put(args);
	if (ret)
		return ret;
	if (o->output == CLI_OUT_JSON)
		ret = print_json(data);
	else if (strcmp(sub, "validate") == 0)
		printf("%s: valid: %lld policies, %lld rules, %lld kernel entries of %lld\n", name,
		       (long long) num(data, "policies"), (long long) num(data, "rules"),
		       (long long) num(data, "entries"), (long long) num(data, "max_entries"));
	else
		ret = show_change(o, data, a->dry_run || strcmp(sub, "diff") == 0);
	print_unmatched(data, name);
	json_object_put(data);
	return ret;
}

static int run_get(const struct cli_opts *o, const char *name, const struct policy_args *a)
{
	json_object *args = json_object_new_object(), *data = NULL;
	const char *doc;
	int ret;

	if (name)
		json_object_object_add(args, "name", json_object_new_string(name));
	json_object_object_add(args, "format",
			       json_object_new_string(a->format ? a->format : "yaml"));
	ret = request(o, "policy_get", args, &data);
	json_object_put(args);
	if (ret)
		return ret;
	doc = cli_json_str(data, "document");
	fputs(doc ? doc : "", stdout);
	if (doc && *doc && doc[strlen(doc) - 1] != '\n')
		putchar('\n');
	if (!a->format || strcmp(a->format, "yaml") == 0)
		fprintf(stderr, "# revision %lld, %lld policies\n",
			(long long) num(data, "revision"), (long long) num(data, "policies"));
	json_object_put(data);
	return CLI_EXIT_OK;
}

static int run_delete(const struct cli_opts *o, const char *name, const struct policy_args *a)
{
	json_object *args = json_object_new_object(), *data = NULL;
	int ret;

	if (a->all) {
		if (!a->yes || name) {
			cli_error("policy delete --all removes every policy: add --yes to confirm "
				  "(and name no policy)");
			json_object_put(args);
			return CLI_EXIT_USAGE;
		}
		json_object_object_add(args, "all", json_object_new_boolean(true));
		json_object_object_add(args, "yes", json_object_new_boolean(true));
	} else if (!name) {
		cli_error("policy delete needs a policy name (or --all --yes)");
		json_object_put(args);
		return CLI_EXIT_USAGE;
	} else {
		json_object_object_add(args, "name", json_object_new_string(name));
	}
	ret = request(o, "policy_delete", args, &data);
	json_object_put(args);
	if (!ret)
		ret = show_change(o, data, false);
	json_object_put(data);
	return ret;
}

static int run_explain(const struct cli_opts *o, const struct policy_args *a)
{
	json_object *args, *data = NULL, *rule, *audit, *kernel;
	const char *decision;
	int ret;

	if (!a->from || !a->to || !a->port) {
		cli_error("policy explain needs --from ID, --to ID|ADDR and --port N");
		return CLI_EXIT_USAGE;
	}
	args = json_object_new_object();
	json_object_object_add(args, "from", json_object_new_string(a->from));
	json_object_object_add(args, "to", json_object_new_string(a->to));
	json_object_object_add(args, "port", json_object_new_int64((int64_t) a->port));
	ret = request(o, "policy_explain", args, &data);
	json_object_put(args);
	if (ret)
		return ret;
	decision = cli_json_str(data, "decision");
	if (o->output == CLI_OUT_JSON) {
		print_json(data);
	} else {
		printf("%s  (%s, revision %lld)\n", decision ? decision : "?",
		       cli_json_str(data, "reason") ? cli_json_str(data, "reason") : "?",
		       (long long) num(data, "revision"));
		if (json_object_object_get_ex(data, "rule", &rule))
			printf("rule:   %s #%lld (%s, line %lld)\n", cli_json_str(rule, "policy"),
			       (long long) num(rule, "rule"), cli_json_str(rule, "action"),
			       (long long) num(rule, "line"));
		if (json_object_object_get_ex(data, "audit", &audit))
			printf("audit:  %s #%lld (line %lld): an AUDIT record is written\n",
			       cli_json_str(audit, "policy"), (long long) num(audit, "rule"),
			       (long long) num(audit, "line"));
		printf("why:    %s\n", cli_json_str(data, "why") ? cli_json_str(data, "why") : "");
		printf("from identity %lld to identity %lld port %lld; lookup step %lld\n",
		       (long long) num(data, "src_identity"), (long long) num(data, "dst_identity"),
		       (long long) num(data, "port"), (long long) num(data, "lookup_step"));
		if (json_object_object_get_ex(data, "kernel", &kernel))
			printf("kernel: %s (rule id %lld, step %lld) — %s\n",
			       cli_json_str(kernel, "decision"), (long long) num(kernel, "rule_id"),
			       (long long) num(kernel, "lookup_step"),
			       strcmp(cli_json_yesno(data, "agree"), "yes") == 0
				       ? "agrees"
				       : "DISAGREES (report this: the maps and the compiler "
					 "differ)");
	}
	ret = strcmp(cli_json_yesno(data, "agree"), "yes") != 0 ? CLI_EXIT_FAIL
	      : decision && strcmp(decision, "DENY") == 0	? CLI_EXIT_DENIED
								: CLI_EXIT_OK;
	json_object_put(data);
	return ret;
}

static int run_wait(const struct cli_opts *o, const char *rev_s, const struct policy_args *a)
{
	uint64_t rev, waited_ms = 0, max_ms = (a->max_wait ? a->max_wait : 60) * 1000;
	json_object *data = NULL;

	if (!rev_s || sm_parse_u64(rev_s, 1, UINT32_MAX, &rev)) {
		cli_error("policy wait needs a revision number (see 'sockmesh policy get')");
		return CLI_EXIT_USAGE;
	}
	for (;;) {
		if (request(o, "policy_status", NULL, &data))
			return CLI_EXIT_FAIL;
		if ((uint64_t) num(data, "revision") >= rev) {
			printf("revision %lld is in force\n", (long long) num(data, "revision"));
			json_object_put(data);
			return CLI_EXIT_OK;
		}
		json_object_put(data);
		data = NULL;
		if (waited_ms >= max_ms) {
			cli_error("revision %llu not in force after %llu s",
				  (unsigned long long) rev, (unsigned long long) (max_ms / 1000));
			return CLI_EXIT_FAIL;
		}
		usleep(200 * 1000);
		waited_ms += 200;
	}
}

static int policy_parse(struct cli_opts *o, void *cfg, int key, const char *value)
{
	struct policy_args *a = cfg;
	int ret;

	switch (key) {
	case 'f':
		a->file = value;
		break;
	case P_DRY_RUN:
		a->dry_run = true;
		break;
	case P_STRICT:
		a->strict = true;
		break;
	case P_ALL:
		a->all = true;
		break;
	case P_YES:
		a->yes = true;
		break;
	case P_FROM:
		a->from = value;
		break;
	case P_TO:
		a->to = value;
		break;
	case P_PORT:
		if (sm_parse_u64(value, 1, 65535, &a->port)) {
			cli_error("--port '%s': expected 1..65535", value);
			return CLI_EXIT_USAGE;
		}
		break;
	case P_MAX_WAIT:
		if (sm_parse_u64(value, 1, 86400, &a->max_wait)) {
			cli_error("--max-wait '%s': expected seconds, 1..86400", value);
			return CLI_EXIT_USAGE;
		}
		a->cluster.max_wait_s = a->max_wait;
		break;
	default:
		/* only keys of the policy commands' options come here: the rest are cluster's */
		ret = cli_cluster_parse(&a->cluster, key, value);
		return ret < 0 ? CLI_EXIT_USAGE : ret;
	}
	return 0;
}

/* A subcommand without --cluster: a usage error naming those that have it. */
static int no_cluster(const struct cli_cmd *cmd, const struct policy_args *a)
{
	if (!a->cluster.cluster)
		return 0;
	cli_error("policy %s has no --cluster (apply, delete and wait have; 'sockmesh catalog "
		  "get' and etcdctl read the cluster)",
		  cmd->name);
	return CLI_EXIT_USAGE;
}

/* apply, validate, diff */
static int cmd_with_file(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
			 char **argv)
{
	struct policy_args *a = cfg;

	if (a->cluster.cluster && strcmp(cmd->name, "apply") == 0) {
		if ((a->file && argc > 0) || (!a->file && argc == 0)) {
			cli_error("policy apply --cluster takes one FILE (or -f FILE)");
			return CLI_EXIT_USAGE;
		}
		a->cluster.dry_run = a->dry_run;
		a->cluster.strict = a->strict;
		return cli_cluster_policy_apply(o, &a->cluster, a->file ? a->file : argv[0]);
	}
	if (no_cluster(cmd, a))
		return CLI_EXIT_USAGE;
	if (argc > 0) {
		cli_error("policy %s takes -f FILE, not '%s'", cmd->name, argv[0]);
		return CLI_EXIT_USAGE;
	}
	return run_with_file(o, cmd->name, cfg);
}

static int cmd_get(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv)
{
	struct policy_args *a = cfg;

	if (no_cluster(cmd, a))
		return CLI_EXIT_USAGE;
	/* -o table is get's default, YAML; the daemon is asked for yaml or json */
	a->format = o->format && strcmp(o->format, "table") != 0 ? o->format : NULL;
	return run_get(o, argc ? argv[0] : NULL, a);
}

static int cmd_delete(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
		      char **argv)
{
	struct policy_args *a = cfg;

	if (a->cluster.cluster) {
		if (a->all ? !a->yes || argc : !argc) {
			cli_error("policy delete --cluster needs a policy NAME, or --all --yes "
				  "(and no NAME)");
			return CLI_EXIT_USAGE;
		}
		return cli_cluster_policy_delete(o, &a->cluster, argc ? argv[0] : NULL, a->all);
	}
	return run_delete(o, argc ? argv[0] : NULL, cfg);
}

/* A word after explain has always been ignored. */
static int cmd_explain(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
		       char **argv)
{
	if (no_cluster(cmd, cfg))
		return CLI_EXIT_USAGE;
	return run_explain(o, cfg);
}

static int cmd_wait(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv)
{
	struct policy_args *a = cfg;

	if (a->cluster.cluster)
		return cli_cluster_policy_wait(o, &a->cluster, argc ? argv[0] : NULL);
	return run_wait(o, argc ? argv[0] : NULL, cfg);
}

#define CLUSTER_OPT                                                                                \
	{                                                                                          \
		"cluster", CLI_K_CLUSTER, NULL,                                                    \
			"the cluster's policies in etcd, not this node's\n(docs/cli.md, cluster "  \
			"mode)"                                                                    \
	}
#define CLUSTER_WAIT_OPTS                                                                          \
	{"wait", CLI_K_WAIT, NULL, "--cluster: then wait until every ready node\napplied it"},     \
	{                                                                                          \
		"max-wait", P_MAX_WAIT, "S",                                                       \
			"give up waiting after S seconds, 1..86400\n(default 60; --cluster: 30)"   \
	}

static const struct cli_opt file_opts[] = {
	{"file", 'f', "FILE", "the policies (YAML, docs/policy.md); - for standard input"},
	{"dry-run", P_DRY_RUN, NULL, "compile and compare, change nothing"},
	{"strict", P_STRICT, NULL,
	 "a SPIFFE ID that names no workload of the catalog\nis an error"},
	CLUSTER_OPT,
	CLUSTER_WAIT_OPTS,
	{"max-policy-entries", CLI_K_MAX_POLICY_ENTRIES, "N",
	 "--cluster: the policies must compile into at most\nN kernel entries (default 65536)"},
	CLI_ETCD_OPTS,
	{NULL, 0, NULL, NULL},
};

/* validate and diff: file_opts without --dry-run */
static const struct cli_opt check_opts[] = {
	{"file", 'f', "FILE", "the policies (YAML, docs/policy.md); - for standard input"},
	{"strict", P_STRICT, NULL,
	 "a SPIFFE ID that names no workload of the catalog\nis an error"},
	{NULL, 0, NULL, NULL},
};

static const struct cli_opt delete_opts[] = {
	{"all", P_ALL, NULL, "remove every policy (needs --yes, and no NAME)"},
	{"yes", P_YES, NULL, "confirm --all"},
	CLUSTER_OPT,
	CLUSTER_WAIT_OPTS,
	CLI_ETCD_OPTS,
	{NULL, 0, NULL, NULL},
};

static const struct cli_opt explain_opts[] = {
	{"from", P_FROM, "ID",
	 "the caller: a SPIFFE ID, host, world, an address\n(a plaintext "
	 "caller, matched by CIDR rules) or an\nidentity number"},
	{"to", P_TO, "ID|ADDR",
	 "the destination: a SPIFFE ID, an identity number\nor a "
	 "service address"},
	{"port", P_PORT, "N", "the destination port, 1..65535"},
	{NULL, 0, NULL, NULL},
};

static const struct cli_opt wait_opts[] = {
	{"max-wait", P_MAX_WAIT, "S",
	 "give up after S seconds, 1..86400 (default 60;\n--cluster: 30)"},
	{"cluster", CLI_K_CLUSTER, NULL,
	 "REV is an etcd revision: wait until every ready\nnode of the cluster applied it"},
	CLI_ETCD_OPTS,
	{NULL, 0, NULL, NULL},
};

static const char *const policy_format_names[] = {"table", "yaml", "json", NULL};

static const struct cli_formats policy_formats = {
	.names = policy_format_names,
	.hint = "table, yaml or json",
	.help = "table (default) or json: the daemon's answer as it\ncame; get: yaml (default) "
		"or json",
};

#define POLICY_FILE_EXITS                                                                          \
	"An invalid file (text, syntax, fields, patterns, ports, capacity; with --strict\n"        \
	"a SPIFFE ID that names no workload) is a failure (1).\n"
#define POLICY_COMMON                                                                              \
	.globals = CLI_G_SOCKET | CLI_G_OUTPUT | CLI_G_TIMEOUT | CLI_G_HELP,                       \
	.cfg_size = sizeof(struct policy_args), .parse = policy_parse

#define POLICY_FILE_HELP                                                                           \
	"FILE must be UTF-8 text: a file that is not (UTF-16, another encoding, binary),\n"        \
	"holds a NUL byte or a control character is refused with FILE:LINE:COLUMN,\n"              \
	"before anything is sent to the daemon. A selector or source naming a SPIFFE ID\n"         \
	"that no workload of the catalog has (often a misspelling) gets a note on stderr:\n"       \
	"FILE:LINE: note: policy 'P' rules[N]: source 'ID' names no workload of the\n"             \
	"catalog. --strict makes it an error, and nothing is applied. Patterns (.../*)\n"          \
	"that match no workload yet only get the note.\n"

static const struct cli_cmd policy_apply = {
	.name = "apply",
	.synopsis = "-f FILE [--dry-run] [--strict]",
	.summary = "add or replace the file's policies (by name); prints the kernel entries\n"
		   "      that change and the new revision",
	.help = "Adds or replaces the file's policies, by name: the node's sockmeshd compiles\n"
		"them, swaps them into the kernel maps as one revision, keeps them across\n"
		"restarts, and closes the established connections the new revision denies.\n"
		"Prints the kernel entries that change and the new revision.\n"
		"\n" POLICY_FILE_HELP,
	.examples = "sockmesh policy apply -f policies.yaml --dry-run\n"
		    "sockmesh policy apply -f policies.yaml\n"
		    "cat policies.yaml | sockmesh policy apply -f -\n",
	.options = file_opts,
	.exits = CLI_EXITS_COMMON,
	.exit_notes = POLICY_FILE_EXITS,
	.run = cmd_with_file,
	POLICY_COMMON,
};

static const struct cli_cmd policy_validate = {
	.name = "validate",
	.synopsis = "-f FILE [--strict]",
	.summary = "check a file: text, syntax, fields, patterns, ports, capacity",
	.help = "Checks a file as apply would, against the node's catalog and map sizes, and\n"
		"changes nothing.\n"
		"\n" POLICY_FILE_HELP,
	.examples = "sockmesh policy validate -f policies.yaml\n"
		    "sockmesh policy validate --strict -f policies.yaml\n",
	.options = check_opts,
	.exits = CLI_EXITS_COMMON,
	.exit_notes = POLICY_FILE_EXITS,
	.run = cmd_with_file,
	POLICY_COMMON,
};

static const struct cli_cmd policy_diff = {
	.name = "diff",
	.synopsis = "-f FILE [--strict]",
	.summary = "what apply would change, without applying",
	.help = "Prints the kernel entries apply would add, remove and change, and changes\n"
		"nothing (the same as apply --dry-run).\n"
		"\n" POLICY_FILE_HELP,
	.examples = "sockmesh policy diff -f policies.yaml\n",
	.options = check_opts,
	.exits = CLI_EXITS_COMMON,
	.exit_notes = POLICY_FILE_EXITS,
	.run = cmd_with_file,
	POLICY_COMMON,
};

static const struct cli_cmd policy_get = {
	.name = "get",
	.synopsis = "[NAME] [-o yaml|json]",
	.summary = "the applied policies (all, or one)",
	.help = "Prints the applied policies, all of them or the one named, as YAML (with the\n"
		"revision on stderr) or, with -o json, as JSON.\n",
	.examples = "sockmesh policy get\n"
		    "sockmesh policy get web-from-api -o json\n",
	.exits = CLI_EXITS_COMMON,
	.run = cmd_get,
	POLICY_COMMON,
};

static const struct cli_cmd policy_delete = {
	.name = "delete",
	.synopsis = "NAME | --all --yes",
	.summary = "remove one policy; delete --all --yes removes them all",
	.help = "Removes the policy named, or every policy with --all --yes, as a new\n"
		"revision; prints the kernel entries that change.\n",
	.examples = "sockmesh policy delete web-from-api\n"
		    "sockmesh policy delete --all --yes\n",
	.options = delete_opts,
	.exits = CLI_EXITS_COMMON,
	.run = cmd_delete,
	POLICY_COMMON,
};

static const struct cli_cmd policy_explain = {
	.name = "explain",
	.synopsis = "--from ID --to ID|ADDR --port N",
	.summary = "the decision for a connection, the rule and why, checked against the\n"
		   "      kernel's own map",
	.help = "The decision the node's policy makes for a connection, the rule that makes\n"
		"it and why, checked against the decision the kernel's own map gives: a\n"
		"disagreement is a failure (exit 1), to be reported.\n",
	.examples = "sockmesh policy explain --from spiffe://example.org/ns/prod/sa/api \\\n"
		    "    --to spiffe://example.org/ns/prod/sa/web --port 8080\n"
		    "sockmesh policy explain --from 10.1.2.3 --to 10.0.2.7 --port 8080\n",
	.options = explain_opts,
	.exits = CLI_EXITS_COMMON | 1u << CLI_EXIT_DENIED,
	.exit_notes = "0: allowed; 3: denied; 1 also when the kernel's map and the compiler\n"
		      "disagree (report that).\n",
	.run = cmd_explain,
	POLICY_COMMON,
};

static const struct cli_cmd policy_wait = {
	.name = "wait",
	.synopsis = "REV [--max-wait S]",
	.summary = "until revision REV (or later) is in force",
	.help = "Waits until revision REV, or a later one, is in force on the node (exit 0),\n"
		"or fails after --max-wait seconds (exit 1).\n",
	.examples = "sockmesh policy wait 7 --max-wait 30\n",
	.options = wait_opts,
	.exits = CLI_EXITS_COMMON,
	.exit_notes = "1 also when the revision is not in force after --max-wait.\n",
	.run = cmd_wait,
	POLICY_COMMON,
};

static const struct cli_cmd *const policy_subs[] = {
	&policy_apply,	&policy_validate, &policy_diff, &policy_get,
	&policy_delete, &policy_explain,  &policy_wait, NULL,
};

const struct cli_cmd cli_policy_cmd = {
	.name = "policy",
	.summary = "connection policy: apply, validate, diff, get, delete, explain, wait",
	.help = "Connection policy: named policies select destination workloads and list who may\n"
		"(ALLOW), may not (DENY) or is watched (AUDIT) connecting to them "
		"(docs/policy.md).\n"
		"The node's sockmeshd compiles them into kernel maps, enforces them at connect()\n"
		"and at the tunnel's inbound side, and keeps them across restarts.\n",
	.examples = "sockmesh policy validate -f policies.yaml\n"
		    "sockmesh policy apply -f policies.yaml\n"
		    "sockmesh policy explain --from 10.1.2.3 --to 10.0.2.7 --port 8080\n",
	.formats = &policy_formats,
	.exits = CLI_EXITS_COMMON | 1u << CLI_EXIT_DENIED,
	.exit_notes =
		"explain: 0 allowed, 3 denied. An invalid file, or a wait that timed out, is\n"
		"a failure (1).\n",
	.subs = policy_subs,
	.subs_share_options = true,
	.max_args = 1,
	POLICY_COMMON,
};
