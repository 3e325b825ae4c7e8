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

static const char policy_help[] =
	"Usage: sockmesh policy COMMAND [OPTIONS]\n"
	"\n"
	"Connection policy: named policies select destination workloads and list who may\n"
	"(ALLOW), may not (DENY) or is watched (AUDIT) connecting to them (docs/policy.md).\n"
	"The node's sockmeshd compiles them into kernel maps, enforces them at connect()\n"
	"and at the tunnel's inbound side, and keeps them across restarts.\n"
	"\n"
	"Commands:\n"
	"  apply -f FILE [--dry-run] [--strict]\n"
	"                              add or replace the file's policies (by name); prints\n"
	"                              the kernel entries that change and the new revision\n"
	"  validate -f FILE [--strict] check a file: text, syntax, fields, patterns, ports,\n"
	"                              capacity\n"
	"  diff -f FILE [--strict]     what apply would change, without applying\n"
	"  get [NAME] [-o yaml|json]   the applied policies (all, or one)\n"
	"  delete NAME                 remove one policy; delete --all --yes removes them all\n"
	"  explain --from ID --to ID|ADDR --port N\n"
	"                              the decision for a connection, the rule and why,\n"
	"                              checked against the kernel's own map\n"
	"  wait REV [--max-wait S]     until revision REV (or later) is in force\n"
	"\n"
	"FILE may be - for standard input. It must be UTF-8 text: a file that is not\n"
	"(UTF-16, another encoding, binary), holds a NUL byte or a control character is\n"
	"refused with FILE:LINE:COLUMN, before anything is sent to the daemon.\n"
	"\n"
	"A selector or source naming a SPIFFE ID that no workload of the catalog has\n"
	"(an unknown identity, often a misspelling) is accepted with a note on stderr:\n"
	"FILE:LINE: note: policy 'P' rules[N]: source 'ID' names no workload of the\n"
	"catalog. --strict makes it an error, and nothing is applied. Patterns (.../*)\n"
	"that match no workload yet only get the note.\n"
	"\n"
	"IDs of explain are SPIFFE IDs, host, world, an address (--from: a plaintext\n"
	"caller, matched by CIDR rules; --to: a service address with --port) or an\n"
	"identity number.\n"
	"\n"
	"Exit status: 0 done (explain: allowed); 1 failed, invalid file, or wait timed out;\n"
	"2 bad usage; 3 explain: denied.\n"
	"\n"
	"Examples:\n"
	"  sockmesh policy validate -f policies.yaml\n"
	"  sockmesh policy validate --strict -f policies.yaml\n"
	"  sockmesh policy apply -f policies.yaml --dry-run\n"
	"  sockmesh policy apply -f policies.yaml\n"
	"  sockmesh policy get web-from-api -o json\n"
	"  sockmesh policy explain --from spiffe://example.org/ns/prod/sa/api \\\n"
	"      --to spiffe://example.org/ns/prod/sa/web --port 8080\n"
	"  sockmesh policy explain --from 10.1.2.3 --to 10.0.2.7 --port 8080\n"
	"  sockmesh policy delete web-from-api\n"
	"  sockmesh policy wait 7 --max-wait 30\n";

enum {
	P_DRY_RUN = 0x200,
	P_STRICT,
	P_ALL,
	P_YES,
	P_FROM,
	P_TO,
	P_PORT,
	P_MAX_WAIT,
	P_TIMEOUT,
};

static const struct option policy_options[] = {
	{"file", required_argument, NULL, 'f'},
	{"dry-run", no_argument, NULL, P_DRY_RUN},
	{"strict", no_argument, NULL, P_STRICT},
	{"all", no_argument, NULL, P_ALL},
	{"yes", no_argument, NULL, P_YES},
	{"from", required_argument, NULL, P_FROM},
	{"to", required_argument, NULL, P_TO},
	{"port", required_argument, NULL, P_PORT},
	{"max-wait", required_argument, NULL, P_MAX_WAIT},
	{"socket", required_argument, NULL, 'S'},
	{"output", required_argument, NULL, 'o'},
	{"timeout", required_argument, NULL, P_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

struct policy_args {
	const char *file, *from, *to, *format;
	bool dry_run, strict, all, yes;
	uint64_t port, max_wait;
};

/*
 * Read FILE (or stdin for "-") whole into a malloc'ed buffer of *len bytes
 * (NUL-terminated, but it may hold NULs: *len counts); NULL after a message.
 */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	size_t cap = 65536, n;
	char *buf, *grown;

	*len = 0;
	if (!f) {
		cli_error("cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(cap + 1);
	while (buf && (n = fread(buf + *len, 1, cap - *len, f)) > 0) {
		*len += n;
		if (*len > POLICY_FILE_MAX) {
			cli_error(
				"%s is larger than %u bytes: split the policies over several files",
				path, POLICY_FILE_MAX);
			free(buf);
			buf = NULL;
			break;
		}
		if (*len == cap) {
			cap *= 2;
			grown = realloc(buf, cap + 1);
			if (!grown)
				free(buf);
			buf = grown;
		}
	}
	if (buf && ferror(f)) {
		cli_error("cannot read %s: %s", path, strerror(errno));
		free(buf);
		buf = NULL;
	}
	if (f != stdin)
		fclose(f);
	if (buf)
		buf[*len] = '\0';
	return buf;
}

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
		cli_error("policy %s needs -f FILE (see 'sockmesh policy --help')", sub);
		return CLI_EXIT_USAGE;
	}
	name = strcmp(a->file, "-") == 0 ? "<stdin>" : a->file;
	text = read_file(a->file, &len);
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
	      : decision && strcmp(decision, "DENY") == 0	? 3
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

int cli_policy(struct cli_opts *o, int argc, char **argv)
{
	struct policy_args a = {0};
	const char *sub, *arg = NULL;
	int c;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(policy_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	sub = argv[1];
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc - 1, argv + 1, ":f:S:o:h", policy_options, NULL)) != -1) {
		uint64_t v;

		switch (c) {
		case 'f':
			a.file = optarg;
			break;
		case P_DRY_RUN:
			a.dry_run = true;
			break;
		case P_STRICT:
			a.strict = true;
			break;
		case P_ALL:
			a.all = true;
			break;
		case P_YES:
			a.yes = true;
			break;
		case P_FROM:
			a.from = optarg;
			break;
		case P_TO:
			a.to = optarg;
			break;
		case P_PORT:
			if (sm_parse_u64(optarg, 1, 65535, &a.port)) {
				cli_error("--port '%s': expected 1..65535", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case P_MAX_WAIT:
			if (sm_parse_u64(optarg, 1, 86400, &a.max_wait)) {
				cli_error("--max-wait '%s': expected seconds, 1..86400", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'S':
			o->socket = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") == 0) {
				o->output = CLI_OUT_JSON;
				a.format = "json";
			} else if (strcmp(optarg, "yaml") == 0 || strcmp(optarg, "table") == 0) {
				o->output = CLI_OUT_TABLE;
				a.format = strcmp(optarg, "yaml") == 0 ? "yaml" : NULL;
			} else {
				cli_error("unknown output format '%s' (table, yaml or json)",
					  optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case P_TIMEOUT:
			if (sm_parse_u64(optarg, 1, 600000, &v)) {
				cli_error("--timeout '%s': expected milliseconds from 1 to 600000",
					  optarg);
				return CLI_EXIT_USAGE;
			}
			o->timeout_ms = (int) v;
			break;
		case 'h':
			fputs(policy_help, stdout);
			return CLI_EXIT_OK;
		case ':':
			cli_error("option '%s' needs a value (see 'sockmesh policy --help')",
				  argv[optind]);
			return CLI_EXIT_USAGE;
		default:
			cli_error("unknown option '%s' (see 'sockmesh policy --help')",
				  argv[optind]);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind + 1 < argc)
		arg = argv[optind + 1];
	if (optind + 2 < argc) {
		cli_error("policy %s: unexpected argument '%s'", sub, argv[optind + 2]);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(sub, "apply") == 0 || strcmp(sub, "validate") == 0 || strcmp(sub, "diff") == 0)
		return arg ? (cli_error("policy %s takes -f FILE, not '%s'", sub, arg),
			      CLI_EXIT_USAGE)
			   : run_with_file(o, sub, &a);
	if (strcmp(sub, "get") == 0)
		return run_get(o, arg, &a);
	if (strcmp(sub, "delete") == 0)
		return run_delete(o, arg, &a);
	if (strcmp(sub, "explain") == 0)
		return run_explain(o, &a);
	if (strcmp(sub, "wait") == 0)
		return run_wait(o, arg, &a);
	cli_error("unknown policy command '%s' (apply, validate, diff, get, delete, explain, "
		  "wait; see 'sockmesh policy --help')",
		  sub);
	return CLI_EXIT_USAGE;
}
