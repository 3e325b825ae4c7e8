// SPDX-License-Identifier: Apache-2.0
/*
 * sockmesh, the operator's CLI: the command table's root, the one option
 * parser, help from the table, the __commands dump, talking to sockmeshd.
 */
#include <ctype.h>
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
#define CLI_MAX_OPTS	   48 /* options one command takes, globals included */
#define CLI_HELP_COL	   28 /* where an option's help starts */
#define CLI_HELP_WIDTH	   80 /* columns of wrapped help text */

const struct cli_exit_doc cli_exit_docs[] = {
	{CLI_EXIT_OK, "ok", "success"},
	{CLI_EXIT_FAIL, "fail",
	 "failure: the daemon is unreachable, timed out, answered outside the protocol or "
	 "reported an error, or the command failed (the message says which and what to do)"},
	{CLI_EXIT_USAGE, "usage",
	 "usage error: unknown command or option, missing or bad option value, stray argument"},
	{CLI_EXIT_DENIED, "denied", "policy explain: the connection would be denied"},
};
const size_t cli_exit_ndocs = SM_ARRAY_SIZE(cli_exit_docs);

enum {
	G_TIMEOUT = 0x100,
	G_VERSION,
};

/* The global options, parsed here only; cli_cmd.globals picks them per command. */
static const struct {
	struct cli_opt opt;
	unsigned int bit;
} global_opts[] = {
	{{"socket", 'S', "PATH",
	  "control socket of the node's sockmeshd\n(default $" SM_CTL_SOCKET_ENV
	  " or " SM_CTL_DEFAULT_SOCKET ")"},
	 CLI_G_SOCKET},
	{{"output", 'o', "FMT", NULL}, CLI_G_OUTPUT}, /* help: the command's formats */
	{{"verbose", 'v', NULL, "more detail (repeatable)"}, CLI_G_VERBOSE},
	{{"timeout", G_TIMEOUT, "MS",
	  "give up on the daemon after MS milliseconds\n(1..600000, default 5000)"},
	 CLI_G_TIMEOUT},
	{{"help", 'h', NULL, "this help"}, CLI_G_HELP},
	{{"version", G_VERSION, NULL, "the CLI's version"}, CLI_G_VERSION},
};

static const char *const table_formats[] = {"table", "json", NULL};

static const struct cli_formats root_formats = {
	.names = table_formats,
	.hint = "use -o table or -o json",
	.help = "table (default) or json: the daemon's data,\npretty-printed",
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

char *cli_read_input(const char *path, size_t max, const char *split_hint, size_t *len)
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
	if (!buf)
		cli_error("%s: out of memory", path);
	while (buf && (n = fread(buf + *len, 1, cap - *len, f)) > 0) {
		*len += n;
		if (*len > max) {
			cli_error("%s is larger than %zu bytes: %s", path, max, split_hint);
			free(buf);
			buf = NULL;
			break;
		}
		if (*len == cap) {
			cap *= 2;
			grown = realloc(buf, cap + 1);
			if (!grown) {
				cli_error("%s: out of memory", path);
				free(buf);
			}
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

int cli_set_format(struct cli_opts *o, const struct cli_formats *formats, const char *fmt)
{
	for (const char *const *n = formats->names; *n; n++) {
		if (strcmp(*n, fmt) == 0) {
			o->format = *n;
			o->output = strcmp(*n, "json") == 0 ? CLI_OUT_JSON : CLI_OUT_TABLE;
			return 0;
		}
	}
	cli_error("unknown output format '%s' (%s)", fmt, formats->hint);
	return CLI_EXIT_USAGE;
}

/* ---- the table's root ---- */

static int run_help(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
		    char **argv);
static int run_dump(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
		    char **argv);

static const struct cli_cmd help_cmd = {
	.name = "help",
	.synopsis = "[COMMAND [SUBCOMMAND]]",
	.summary = "help on a command: sockmesh help status",
	.help = "Prints the same text as 'sockmesh [COMMAND [SUBCOMMAND]] --help'.\n",
	.examples = "sockmesh help\n"
		    "sockmesh help flows\n"
		    "sockmesh help policy explain\n",
	.exits = 1u << CLI_EXIT_OK | 1u << CLI_EXIT_USAGE,
	.raw = true,
	.run = run_help,
};

/* The table as JSON, for tests/tools/check-cli-docs.py; not part of the interface. */
static const struct cli_cmd dump_cmd = {
	.name = "__commands",
	.summary = "the command table as JSON",
	.help = "",
	.exits = 1u << CLI_EXIT_OK,
	.raw = true,
	.hidden = true,
	.run = run_dump,
};

static const struct cli_cmd *const root_subs[] = {
	&cli_status_cmd, &cli_workloads_cmd, &cli_services_cmd,
	&cli_policy_cmd, &cli_flows_cmd,     &cli_catalog_cmd,
	&help_cmd,	 &dump_cmd,	     NULL,
};

static const struct cli_cmd root_cmd = {
	.name = "sockmesh",
	.synopsis = "[OPTIONS] COMMAND [OPTIONS]",
	.help = "Inspects and steers the sockmesh data plane of one node through sockmeshd's\n"
		"control socket. Options may come before or after the command. In cluster mode,\n"
		"catalog, policy ... --cluster and status --cluster work on etcd instead.\n",
	.globals = CLI_G_ALL,
	.formats = &root_formats,
	.exits = CLI_EXITS_COMMON | 1u << CLI_EXIT_DENIED,
	.subs = root_subs,
};

static const struct cli_cmd *find_sub(const struct cli_cmd *group, const char *name)
{
	for (const struct cli_cmd *const *c = group->subs; *c; c++)
		if (strcmp((*c)->name, name) == 0)
			return *c;
	return NULL;
}

/* "unknown command 'x' (commands: a, b; run 'sockmesh --help')" and its policy twin. */
static int unknown_sub(const struct cli_cmd *group, const char *path, const char *name)
{
	char list[256] = "";
	size_t used = 0;

	for (const struct cli_cmd *const *c = group->subs; *c; c++) {
		if ((*c)->raw || (*c)->hidden)
			continue;
		used += (size_t) snprintf(list + used,
					  used < sizeof(list) ? sizeof(list) - used : 0, "%s%s",
					  used ? ", " : "", (*c)->name);
	}
	if (group == &root_cmd)
		cli_error("unknown command '%s' (commands: %s; run '%s --help')", name, list, path);
	else
		cli_error("unknown %s command '%s' (%s; see '%s --help')", group->name, name, list,
			  path);
	return CLI_EXIT_USAGE;
}

static const struct cli_formats *formats_of(const struct cli_cmd *cmd, const struct cli_cmd *parent)
{
	if (cmd->formats)
		return cmd->formats;
	if (parent && parent->formats)
		return parent->formats;
	return &root_formats;
}

/* ---- help from the table ---- */

/* "  -S, --socket PATH         help", continuation lines indented as far. */
static void print_opt(FILE *out, const struct cli_opt *opt, const char *help)
{
	char left[64];
	int n;

	if (opt->key < 0x100 && isalnum(opt->key))
		n = snprintf(left, sizeof(left), "-%c, --%s%s%s", opt->key, opt->name,
			     opt->arg ? " " : "", opt->arg ? opt->arg : "");
	else
		n = snprintf(left, sizeof(left), "    --%s%s%s", opt->name, opt->arg ? " " : "",
			     opt->arg ? opt->arg : "");
	if (n + 2 >= CLI_HELP_COL)
		fprintf(out, "  %s\n%*s", left, CLI_HELP_COL, "");
	else
		fprintf(out, "  %-*s", CLI_HELP_COL - 2, left);
	for (const char *p = help ? help : ""; *p; p++) {
		fputc(*p, out);
		if (*p == '\n' && p[1])
			fprintf(out, "%*s", CLI_HELP_COL, "");
	}
	fputc('\n', out);
}

static void print_globals(FILE *out, unsigned int globals, const struct cli_formats *formats)
{
	for (size_t i = 0; i < SM_ARRAY_SIZE(global_opts); i++)
		if (globals & global_opts[i].bit)
			print_opt(out, &global_opts[i].opt,
				  global_opts[i].bit == CLI_G_OUTPUT ? formats->help
								     : global_opts[i].opt.help);
}

static void print_lines(FILE *out, const char *indent, const char *text)
{
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");

		fprintf(out, "%s%.*s\n", indent, (int) n, p);
		p += n + (p[n] == '\n');
	}
}

/* text after "  N  ", broken at blanks into lines of at most CLI_HELP_WIDTH columns */
static void print_wrapped(FILE *out, const char *text, int indent)
{
	int col = indent;

	while (*text) {
		int n = (int) strcspn(text, " ");

		if (col > indent && col + 1 + n > CLI_HELP_WIDTH) {
			fprintf(out, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', out);
			col++;
		}
		fprintf(out, "%.*s", n, text);
		col += n;
		text += n;
		text += strspn(text, " ");
	}
	fputc('\n', out);
}

static void print_exits(FILE *out, unsigned int exits, const char *notes)
{
	fprintf(out, "\nExit status:\n");
	for (size_t i = 0; i < cli_exit_ndocs; i++) {
		if (!(exits & 1u << cli_exit_docs[i].code))
			continue;
		fprintf(out, "  %d  ", cli_exit_docs[i].code);
		print_wrapped(out, cli_exit_docs[i].meaning, 5);
	}
	if (notes) {
		fputc('\n', out);
		print_lines(out, "  ", notes);
	}
}

/* path: "sockmesh policy apply"; parent: the group cmd belongs to (NULL for the root). */
static void print_help(FILE *out, const struct cli_cmd *cmd, const struct cli_cmd *parent,
		       const char *path)
{
	const struct cli_formats *formats = formats_of(cmd, parent);
	bool own = cmd->options && cmd->options[0].name;

	if (cmd == &root_cmd)
		fprintf(out, "Usage: %s %s\n\n", path, cmd->synopsis);
	else if (cmd->subs)
		fprintf(out, "Usage: %s COMMAND [OPTIONS]\n\n", path);
	else
		fprintf(out, "Usage: %s%s%s%s\n\n", path, cmd->synopsis ? " " : "",
			cmd->synopsis ? cmd->synopsis : "", cmd->globals ? " [OPTIONS]" : "");
	fputs(cmd->help, out);
	if (cmd->subs) {
		fprintf(out, "\nCommands:\n");
		for (const struct cli_cmd *const *c = cmd->subs; *c; c++) {
			if ((*c)->hidden)
				continue;
			if (cmd == &root_cmd)
				fprintf(out, "  %-12s %s\n", (*c)->name, (*c)->summary);
			else
				fprintf(out, "  %s%s%s\n      %s\n", (*c)->name,
					(*c)->synopsis ? " " : "",
					(*c)->synopsis ? (*c)->synopsis : "", (*c)->summary);
		}
	}
	if (own) {
		fprintf(out, "\nOptions:\n");
		for (const struct cli_opt *opt = cmd->options; opt->name; opt++)
			print_opt(out, opt, opt->help);
	}
	if (cmd->globals) {
		fprintf(out, "\n%s:\n",
			cmd == &root_cmd ? "Options (before or after the command)"
			: cmd->subs	 ? "Options of every command below"
			: own		 ? "Common options"
					 : "Options");
		print_globals(out, cmd->globals, formats);
	}
	print_exits(out, cmd->exits, cmd->exit_notes);
	if (cmd->examples) {
		fprintf(out, "\nExamples:\n");
		print_lines(out, "  ", cmd->examples);
	}
	if (cmd->subs)
		fprintf(out, "\nRun '%s COMMAND --help' for a command's options and examples.\n",
			cmd == &root_cmd ? "sockmesh" : path);
}

/* ---- the one option parser ---- */

/* The options one command segment takes: its own (or its group's), then globals. */
struct opt_set {
	const struct cli_opt *opts[CLI_MAX_OPTS];
	size_t n;
};

static void add_opts(struct opt_set *s, const struct cli_opt *opts)
{
	for (; opts && opts->name; opts++) {
		bool dup = false;

		for (size_t i = 0; i < s->n && !dup; i++)
			dup = strcmp(s->opts[i]->name, opts->name) == 0;
		if (!dup && s->n < CLI_MAX_OPTS)
			s->opts[s->n++] = opts;
	}
}

static bool is_own(const struct opt_set *s, int key)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->opts[i]->key == key)
			return true;
	return false;
}

struct segment {
	const struct cli_cmd *cmd; /* whose parse and cfg get the own options, may be NULL */
	const char *path;	   /* "sockmesh policy get": where messages point */
	unsigned int globals;
	const struct cli_formats *formats;
	bool stop_at_word; /* the root's: options end at the command */
	bool help, version;
};

/*
 * Parse argv (argv[0] is the command's name) into o and cfg. Returns -1 to go
 * on (optind: the first positional argument), or an exit code after a message.
 */
static int parse_segment(struct segment *seg, const struct opt_set *own, struct cli_opts *o,
			 void *cfg, int argc, char **argv)
{
	struct option longopts[CLI_MAX_OPTS + SM_ARRAY_SIZE(global_opts) + 1];
	char optstring[2 * (CLI_MAX_OPTS + SM_ARRAY_SIZE(global_opts)) + 3];
	size_t nl = 0, ns = 0;
	uint64_t v;
	int c, ret;

	optstring[ns++] = seg->stop_at_word ? '+' : ':';
	if (seg->stop_at_word)
		optstring[ns++] = ':';
	for (size_t i = 0; i < own->n + SM_ARRAY_SIZE(global_opts); i++) {
		const struct cli_opt *opt =
			i < own->n ? own->opts[i] : &global_opts[i - own->n].opt;

		if (i >= own->n && !(seg->globals & global_opts[i - own->n].bit))
			continue;
		longopts[nl++] = (struct option){
			opt->name, opt->arg ? required_argument : no_argument, NULL, opt->key};
		if (opt->key < 0x100 && isalnum(opt->key)) {
			optstring[ns++] = (char) opt->key;
			if (opt->arg)
				optstring[ns++] = ':';
		}
	}
	longopts[nl] = (struct option){NULL, 0, NULL, 0};
	optstring[ns] = '\0';

	opterr = 0;
	optind = 0; /* glibc: full reinitialization, this runs once per segment */
	while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		if (c != '?' && c != ':' && is_own(own, c)) {
			ret = seg->cmd->parse(o, cfg, c, optarg);
			if (ret)
				return ret;
			continue;
		}
		switch (c) {
		case 'S':
			if (!*optarg) {
				cli_error("--socket needs a path (see '%s --help')", seg->path);
				return CLI_EXIT_USAGE;
			}
			o->socket = optarg;
			break;
		case 'o':
			ret = cli_set_format(o, seg->formats, optarg);
			if (ret)
				return ret;
			break;
		case 'v':
			if (o->verbose < 10)
				o->verbose++;
			break;
		case G_TIMEOUT:
			if (sm_parse_u64(optarg, 1, CLI_TIMEOUT_MAX_MS, &v)) {
				cli_error("--timeout '%s': expected milliseconds from 1 to %d",
					  optarg, CLI_TIMEOUT_MAX_MS);
				return CLI_EXIT_USAGE;
			}
			o->timeout_ms = (int) v;
			break;
		case 'h':
			seg->help = true;
			break;
		case G_VERSION:
			seg->version = true;
			break;
		case ':':
			cli_error("option '%s' needs a value (see '%s --help')", argv[optind - 1],
				  seg->path);
			return CLI_EXIT_USAGE;
		default:
			cli_error("unknown option '%s' (see '%s --help')", argv[optind - 1],
				  seg->path);
			return CLI_EXIT_USAGE;
		}
	}
	return -1;
}

static void *new_cfg(const struct cli_cmd *cmd)
{
	void *cfg;

	if (!cmd || !cmd->cfg_size)
		return NULL;
	cfg = calloc(1, cmd->cfg_size);
	if (cfg && cmd->cfg_init)
		cmd->cfg_init(cfg);
	return cfg;
}

static void free_cfg(const struct cli_cmd *cmd, void *cfg)
{
	if (cfg && cmd->cfg_free)
		cmd->cfg_free(cfg);
	free(cfg);
}

/* A command without subcommands: argv[0] is its name. */
static int run_leaf(const struct cli_cmd *cmd, const struct cli_cmd *parent, const char *path,
		    struct cli_opts *o, int argc, char **argv, bool help)
{
	struct segment seg = {.cmd = cmd,
			      .path = path,
			      .globals = cmd->globals,
			      .formats = formats_of(cmd, parent),
			      .help = help};
	struct opt_set own = {.n = 0};
	void *cfg = new_cfg(cmd);
	int ret;

	if (cmd->cfg_size && !cfg) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	add_opts(&own, cmd->options);
	ret = parse_segment(&seg, &own, o, cfg, argc, argv);
	if (ret < 0 && seg.help) {
		print_help(stdout, cmd, parent, path);
		ret = CLI_EXIT_OK;
	} else if (ret < 0 && seg.version) {
		printf("sockmesh %s\n", SOCKMESH_VERSION);
		ret = CLI_EXIT_OK;
	} else if (ret < 0) {
		ret = cmd->run(cmd, o, cfg, argc - optind, argv + optind);
	}
	free_cfg(cmd, cfg);
	return ret;
}

static bool is_help_word(const char *s)
{
	return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "help") == 0;
}

/*
 * A command with subcommands: argv[0] is its name, argv[1] the subcommand's.
 * The options are parsed before an unknown subcommand is reported, so that
 * `policy x --help` shows the group's help.
 */
static int run_group(const struct cli_cmd *group, const char *path, struct cli_opts *o, int argc,
		     char **argv, bool help)
{
	const struct cli_cmd *sub, *owner;
	struct opt_set own = {.n = 0};
	struct segment seg;
	char subpath[128];
	void *cfg;
	int ret;

	if (argc < 2) {
		print_help(help ? stdout : stderr, group, NULL, path);
		return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	if (is_help_word(argv[1])) {
		print_help(stdout, group, NULL, path);
		return CLI_EXIT_OK;
	}
	sub = find_sub(group, argv[1]);
	if (sub && !group->subs_share_options) {
		add_opts(&own, sub->options);
	} else {
		for (const struct cli_cmd *const *c = group->subs; *c; c++)
			add_opts(&own, (*c)->options);
	}
	owner = sub ? sub : group;
	snprintf(subpath, sizeof(subpath), "%s %s", path, argv[1]);
	seg = (struct segment){.cmd = owner,
			       .path = sub ? subpath : path,
			       .globals = owner->globals,
			       .formats = formats_of(owner, group),
			       .help = help};
	cfg = new_cfg(owner);
	if (owner->cfg_size && !cfg) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	ret = parse_segment(&seg, &own, o, cfg, argc - 1, argv + 1);
	if (ret >= 0)
		goto free_cfg;
	if (seg.help) {
		print_help(stdout, sub ? sub : group, sub ? group : NULL, sub ? subpath : path);
		ret = CLI_EXIT_OK;
	} else if (argc - 1 - optind > group->max_args) {
		cli_error("%s %s: unexpected argument '%s'", group->name, argv[1],
			  argv[1 + optind + group->max_args]);
		ret = CLI_EXIT_USAGE;
	} else if (!sub) {
		ret = unknown_sub(group, path, argv[1]);
	} else {
		ret = sub->run(sub, o, cfg, argc - 1 - optind, argv + 1 + optind);
	}
free_cfg:
	free_cfg(owner, cfg);
	return ret;
}

/* cmd, reached from the root; argv[0] is its name. */
static int dispatch(const struct cli_cmd *cmd, struct cli_opts *o, int argc, char **argv, bool help)
{
	char path[64];

	snprintf(path, sizeof(path), "sockmesh %s", cmd->name);
	if (cmd->raw)
		return cmd->run(cmd, o, NULL, argc - 1, argv + 1);
	if (cmd->subs)
		return run_group(cmd, path, o, argc, argv, help);
	return run_leaf(cmd, &root_cmd, path, o, argc, argv, help);
}

/* `sockmesh help [COMMAND [SUBCOMMAND]]` */
static int run_help(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv)
{
	const struct cli_cmd *c, *sub;
	char path[128];

	if (argc < 1 || strcmp(argv[0], "help") == 0) {
		print_help(stdout, &root_cmd, NULL, "sockmesh");
		return CLI_EXIT_OK;
	}
	if (argc == 1 && is_help_word(argv[0])) {
		print_help(stdout, cmd, &root_cmd, "sockmesh help");
		return CLI_EXIT_OK;
	}
	c = find_sub(&root_cmd, argv[0]);
	if (argc > (c && c->subs ? 2 : 1)) {
		cli_error("help takes one command name (e.g. 'sockmesh help status')");
		return CLI_EXIT_USAGE;
	}
	if (!c)
		return unknown_sub(&root_cmd, "sockmesh", argv[0]);
	snprintf(path, sizeof(path), "sockmesh %s", c->name);
	if (argc == 1) {
		print_help(stdout, c, c->subs ? NULL : &root_cmd, path);
		return CLI_EXIT_OK;
	}
	sub = find_sub(c, argv[1]);
	if (!sub)
		return unknown_sub(c, path, argv[1]);
	snprintf(path, sizeof(path), "sockmesh %s %s", c->name, sub->name);
	print_help(stdout, sub, c, path);
	return CLI_EXIT_OK;
}

/* ---- the table as JSON ---- */

static json_object *dump_opt(const struct cli_opt *opt, bool global)
{
	json_object *j = json_object_new_object();
	char s[2] = {0};

	json_object_object_add(j, "long", json_object_new_string(opt->name));
	if (opt->key < 0x100 && isalnum(opt->key)) {
		s[0] = (char) opt->key;
		json_object_object_add(j, "short", json_object_new_string(s));
	}
	if (opt->arg)
		json_object_object_add(j, "arg", json_object_new_string(opt->arg));
	json_object_object_add(j, "global", json_object_new_boolean(global));
	return j;
}

static void dump_cmd_json(json_object *arr, const struct cli_cmd *cmd, const struct cli_cmd *parent,
			  const char *path)
{
	json_object *j = json_object_new_object(), *opts = json_object_new_array(),
		    *exits = json_object_new_array(), *formats = json_object_new_array();
	const struct cli_formats *f = formats_of(cmd, parent);
	char subpath[128];

	json_object_object_add(j, "command", json_object_new_string(path));
	json_object_object_add(j, "summary",
			       json_object_new_string(cmd->summary ? cmd->summary : ""));
	json_object_object_add(j, "synopsis",
			       json_object_new_string(cmd->synopsis ? cmd->synopsis : ""));
	json_object_object_add(j, "group", json_object_new_boolean(cmd->subs != NULL));
	for (const struct cli_opt *opt = cmd->options; opt && opt->name; opt++)
		json_object_array_add(opts, dump_opt(opt, false));
	for (size_t i = 0; i < SM_ARRAY_SIZE(global_opts); i++)
		if (cmd->globals & global_opts[i].bit)
			json_object_array_add(opts, dump_opt(&global_opts[i].opt, true));
	json_object_object_add(j, "options", opts);
	for (size_t i = 0; i < cli_exit_ndocs; i++)
		if (cmd->exits & 1u << cli_exit_docs[i].code)
			json_object_array_add(exits, json_object_new_int(cli_exit_docs[i].code));
	json_object_object_add(j, "exits", exits);
	for (const char *const *n = f->names; (cmd->globals & CLI_G_OUTPUT) && *n; n++)
		json_object_array_add(formats, json_object_new_string(*n));
	json_object_object_add(j, "formats", formats);
	json_object_array_add(arr, j);
	for (const struct cli_cmd *const *c = cmd->subs; c && *c; c++) {
		if ((*c)->hidden)
			continue;
		snprintf(subpath, sizeof(subpath), "%s%s%s", path, *path ? " " : "", (*c)->name);
		dump_cmd_json(arr, *c, cmd == &root_cmd ? NULL : cmd, subpath);
	}
}

static int run_dump(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv)
{
	json_object *top = json_object_new_object(), *cmds = json_object_new_array(),
		    *codes = json_object_new_array();
	int ret = CLI_EXIT_OK;

	for (size_t i = 0; i < cli_exit_ndocs; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "code", json_object_new_int(cli_exit_docs[i].code));
		json_object_object_add(c, "name", json_object_new_string(cli_exit_docs[i].name));
		json_object_object_add(c, "meaning",
				       json_object_new_string(cli_exit_docs[i].meaning));
		json_object_array_add(codes, c);
	}
	json_object_object_add(top, "exit_codes", codes);
	dump_cmd_json(cmds, &root_cmd, NULL, "");
	json_object_object_add(top, "commands", cmds);
	if (puts(json_object_to_json_string_ext(top, JSON_C_TO_STRING_PRETTY |
							     JSON_C_TO_STRING_NOSLASHESCAPE)) < 0 ||
	    fflush(stdout) != 0)
		ret = CLI_EXIT_FAIL;
	json_object_put(top);
	return ret;
}

/* ---- query commands ---- */

int cli_run_query(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv)
{
	struct json_object *data = NULL;
	struct sm_error err = {""};
	const char *s;
	int ret;

	if (argc > 0) {
		cli_error("%s takes no arguments, got '%s' (see 'sockmesh %s --help')", cmd->name,
			  argv[0], cmd->name);
		return CLI_EXIT_USAGE;
	}
	ret = sm_ctl_request(o->socket, cmd->query, o->timeout_ms, &data, &err);
	if (ret == -EPROTO) {
		cli_error("%s: sockmeshd at %s: %s", cmd->query, o->socket, err.msg);
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
		ret = cmd->render(o, cmd->query, data);
	}
	json_object_put(data);
	if (fflush(stdout) != 0 && ret == CLI_EXIT_OK) {
		cli_error("cannot write the output: %s", strerror(errno));
		ret = CLI_EXIT_FAIL;
	}
	return ret;
}

int main(int argc, char **argv)
{
	struct cli_opts o = {
		.socket = SM_CTL_DEFAULT_SOCKET,
		.output = CLI_OUT_TABLE,
		.timeout_ms = SM_CTL_DEFAULT_TIMEOUT_MS,
	};
	struct segment seg = {.path = "sockmesh",
			      .globals = CLI_G_ALL,
			      .formats = &root_formats,
			      .stop_at_word = true};
	struct opt_set none = {.n = 0};
	const char *env = getenv(SM_CTL_SOCKET_ENV);
	const struct cli_cmd *cmd;
	int ret;

	if (env && *env)
		o.socket = env;

	ret = parse_segment(&seg, &none, &o, NULL, argc, argv);
	if (ret >= 0)
		return ret;
	/* -o before the command sets the output only: a command's own formats come after it */
	o.format = NULL;
	if (seg.version) {
		printf("sockmesh %s\n", SOCKMESH_VERSION);
		return CLI_EXIT_OK;
	}
	if (optind >= argc) {
		if (seg.help) {
			print_help(stdout, &root_cmd, NULL, "sockmesh");
			return CLI_EXIT_OK;
		}
		cli_error("no command given (run 'sockmesh --help' for the list)");
		return CLI_EXIT_USAGE;
	}
	cmd = find_sub(&root_cmd, argv[optind]);
	if (!cmd)
		return unknown_sub(&root_cmd, "sockmesh", argv[optind]);
	return dispatch(cmd, &o, argc - optind, argv + optind, seg.help);
}
