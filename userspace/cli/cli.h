/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the sockmesh CLI's files share: the command table's types, options,
 * exit codes and JSON helpers. Every command and subcommand is one struct
 * cli_cmd: its run function, its options and its help; main() only
 * dispatches, `--help` is printed from the entry, and `sockmesh __commands`
 * dumps the table for the check that keeps docs/cli.md and sockmesh(1) true.
 */
#ifndef SOCKMESH_CLI_H
#define SOCKMESH_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

/* The version is the file VERSION; the Makefile passes it as -DSOCKMESH_VERSION. */
#ifndef SOCKMESH_VERSION
#error "SOCKMESH_VERSION is not defined: build with make (it passes the file VERSION)"
#endif

/*
 * Exit codes: `sockmesh --help`, sockmesh(1) and docs/cli.md list them, from
 * cli_exit_docs[]. A code's meaning never changes; a new one gets a new number.
 */
enum cli_exit {
	CLI_EXIT_OK = 0,     /* done; policy explain: allowed; flows --follow: interrupted */
	CLI_EXIT_FAIL = 1,   /* daemon unreachable, timed out or reported an error; the
			      * command failed (bad policy file, wait timed out, ...) */
	CLI_EXIT_USAGE = 2,  /* unknown command or option, bad option value, stray argument */
	CLI_EXIT_DENIED = 3, /* policy explain: the connection would be denied */
};

/* The exit codes every command may end with (struct cli_cmd's .exits). */
#define CLI_EXITS_COMMON (1u << CLI_EXIT_OK | 1u << CLI_EXIT_FAIL | 1u << CLI_EXIT_USAGE)

struct cli_exit_doc {
	int code;
	const char *name;    /* the constant's name without CLI_EXIT_, lower case */
	const char *meaning; /* one sentence for --help and the docs */
};

extern const struct cli_exit_doc cli_exit_docs[];
extern const size_t cli_exit_ndocs;

enum cli_output {
	CLI_OUT_TABLE,
	CLI_OUT_JSON,
};

struct cli_opts {
	const char *socket; /* control socket path */
	enum cli_output output;
	/* -o/--output (or flows' --format) as given after the command, NULL when not */
	const char *format;
	int verbose;	/* -v count */
	int timeout_ms; /* whole request, connect to answer */
};

/*
 * One option of a command. key is the short option's letter (shown as -k; not
 * one of the global options' S, o, v, h) or, for a long-only option, a number
 * from CLI_KEY_OWN on; getopt_long returns it and the command's parse function
 * gets it. A command (or a group sharing its subcommands' options) has at most
 * CLI_MAX_OPTS in sockmesh.c.
 */
struct cli_opt {
	const char *name; /* long name, without "--" */
	int key;
	const char *arg;  /* the value's name in help ("FILE"), NULL for a flag */
	const char *help; /* for --help; '\n' starts a continuation line */
};

#define CLI_KEY_OWN 0x200 /* first key of a command's long-only options */

/* The global options; a command's .globals says which it takes after its name. */
enum cli_global {
	CLI_G_SOCKET = 1u << 0,	 /* -S, --socket PATH */
	CLI_G_OUTPUT = 1u << 1,	 /* -o, --output FMT */
	CLI_G_VERBOSE = 1u << 2, /* -v, --verbose */
	CLI_G_TIMEOUT = 1u << 3, /* --timeout MS */
	CLI_G_HELP = 1u << 4,	 /* -h, --help */
	CLI_G_VERSION = 1u << 5, /* --version */
	CLI_G_ALL = (1u << 6) - 1,
};

/* The values -o takes for a command. */
struct cli_formats {
	const char *const *names; /* NULL-terminated; "json" sets CLI_OUT_JSON */
	const char *hint;	  /* the list in the message about a bad one */
	const char *help;	  /* -o's line in --help */
};

struct cli_cmd;

/*
 * A command's run: argv holds its positional arguments only (argc may be 0),
 * cfg its parsed options (NULL without .cfg_size). Returns an exit code and
 * prints its own messages.
 */
typedef int (*cli_run_fn)(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
			  char **argv);
/* One of the command's own options (key from its .options) into cfg: 0 or an exit code. */
typedef int (*cli_parse_fn)(struct cli_opts *o, void *cfg, int key, const char *value);

/* Renders a query command's "data" for people (data may be NULL): an exit code. */
typedef int (*cli_render_fn)(const struct cli_opts *o, const char *cmd, struct json_object *data);

struct cli_cmd {
	const char *name;	       /* the word on the command line */
	const char *synopsis;	       /* what follows the name in the usage line, may be NULL */
	const char *summary;	       /* one line in the parent's command list */
	const char *help;	       /* description for --help */
	const char *examples;	       /* lines for --help, may be NULL */
	const struct cli_opt *options; /* its own, ended by a NULL name; may be NULL */
	unsigned int globals;	       /* CLI_G_* it takes after its name */
	const struct cli_formats *formats; /* -o's values; NULL: the parent's */
	unsigned int exits;		   /* 1u << code of every exit code it returns */
	const char *exit_notes;		   /* what the codes mean for it, may be NULL */
	const struct cli_cmd *const *subs; /* subcommands, ended by NULL */
	/*
	 * The subcommands take each other's options (and ignore those not
	 * theirs): kept so that scripts written for the one option list of the
	 * policy commands go on working. Help lists each one's own.
	 */
	bool subs_share_options;
	int max_args;	 /* positional arguments a subcommand may take */
	bool raw;	 /* no option parsing: run gets every word after the name */
	bool hidden;	 /* not listed in help or the docs (__commands) */
	size_t cfg_size; /* bytes of cfg, zeroed, then .cfg_init */
	void (*cfg_init)(void *cfg);
	void (*cfg_free)(void *cfg);
	cli_parse_fn parse;
	cli_run_fn run;
	const char *query;    /* query commands: the protocol command */
	cli_render_fn render; /* query commands: the table */
};

/*
 * Cluster mode (cmd_cluster.c): the commands that read and write the
 * cluster's catalog and policies in etcd. Their options have keys from
 * CLI_KEY_CLUSTER on, apart from any command's own, so the policy and status
 * commands hand the keys they do not know to cli_cluster_parse().
 */
#define CLI_KEY_CLUSTER 0x300

enum cli_cluster_key {
	CLI_K_ETCD = CLI_KEY_CLUSTER,
	CLI_K_ETCD_CA,
	CLI_K_ETCD_CERT,
	CLI_K_ETCD_KEY,
	CLI_K_ETCD_PREFIX,
	CLI_K_ETCD_USER,
	CLI_K_ETCD_PASSWORD_FILE,
	CLI_K_CLUSTER,
	CLI_K_WAIT,
	CLI_K_MAX_WAIT,
	CLI_K_DRY_RUN,
	CLI_K_MAX_POLICY_ENTRIES,
};

/* How to reach etcd (options, else SOCKMESH_ETCD_* variables) and what to do there. */
struct cli_cluster_args {
	const char *endpoints, *ca, *cert, *key, *prefix, *user, *password_file;
	bool cluster, wait, dry_run, strict; /* strict: policy apply's --strict */
	uint64_t max_wait_s;		     /* --wait's bound; 0: the default, 30 s */
	uint64_t max_policy_entries;	     /* 0: the daemon's default, 65536 */
};

/* The options every cluster command takes, for its .options array. */
#define CLI_ETCD_OPTS                                                                              \
	{"etcd", CLI_K_ETCD, "URL[,URL...]",                                                       \
	 "etcd's client URLs, https:// (or\n$SOCKMESH_ETCD_ENDPOINTS)"},                           \
		{"etcd-ca", CLI_K_ETCD_CA, "FILE",                                                 \
		 "the CA of etcd's server certificate\n(or $SOCKMESH_ETCD_CA)"},                   \
		{"etcd-cert", CLI_K_ETCD_CERT, "FILE",                                             \
		 "this client's certificate (or\n$SOCKMESH_ETCD_CERT)"},                           \
		{"etcd-key", CLI_K_ETCD_KEY, "FILE", "its private key (or $SOCKMESH_ETCD_KEY)"},   \
		{"etcd-prefix", CLI_K_ETCD_PREFIX, "P",                                            \
		 "the cluster's key prefix (or\n$SOCKMESH_ETCD_PREFIX; default /sockmesh/)"},      \
		{"etcd-user", CLI_K_ETCD_USER, "NAME",                                             \
		 "an etcd user, when etcd has auth on (or\n$SOCKMESH_ETCD_USER)"},                 \
	{                                                                                          \
		"etcd-password-file", CLI_K_ETCD_PASSWORD_FILE, "FILE",                            \
			"the user's password, first line (or\n$SOCKMESH_ETCD_PASSWORD_FILE)"       \
	}

/* One cluster option into c: 0, CLI_EXIT_USAGE after a message, or -1: not a cluster key. */
int cli_cluster_parse(struct cli_cluster_args *c, int key, const char *value);
/* policy apply/delete/wait --cluster (cmd_policy.c hands them over). */
int cli_cluster_policy_apply(const struct cli_opts *o, struct cli_cluster_args *c,
			     const char *file);
int cli_cluster_policy_delete(const struct cli_opts *o, struct cli_cluster_args *c,
			      const char *name, bool all);
int cli_cluster_policy_wait(const struct cli_opts *o, struct cli_cluster_args *c, const char *rev);
/* status's run: the node's daemon, or with --cluster every node's state in etcd. */
int cli_status_run(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv);
int cli_status_parse(struct cli_opts *o, void *cfg, int key, const char *value);
extern const struct cli_opt cli_status_opts[];

/* The tables, in cmd_*.c. */
extern const struct cli_cmd cli_policy_cmd;
extern const struct cli_cmd cli_flows_cmd;
extern const struct cli_cmd cli_status_cmd;
extern const struct cli_cmd cli_workloads_cmd;
extern const struct cli_cmd cli_services_cmd;
extern const struct cli_cmd cli_catalog_cmd;

/* Ask the daemon for cmd->query and print it as o->output says (a cli_run_fn). */
int cli_run_query(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc, char **argv);

/* -o and --format: FMT checked against formats; 0 or CLI_EXIT_USAGE after a message. */
int cli_set_format(struct cli_opts *o, const struct cli_formats *formats, const char *fmt);

/* "sockmesh: <message>" on stderr: the CLI's messages to its user. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * FILE (or standard input for "-") whole into a malloc'ed buffer of *len
 * bytes, NUL-terminated (it may hold NULs: *len counts them); more than max
 * bytes is an error ending in split_hint. NULL after a message.
 */
char *cli_read_input(const char *path, size_t max, const char *split_hint, size_t *len);
/* The answer to cmd was not shaped as docs/interfaces.md says: message, CLI_EXIT_FAIL. */
int cli_bad_answer(const struct cli_opts *o, const char *cmd, const char *what);

/*
 * Members of a JSON object, tolerant of daemons that omit or mistype one:
 * NULL / false when the member is missing or has another type.
 */
const char *cli_json_str(struct json_object *obj, const char *key);
bool cli_json_i64(struct json_object *obj, const char *key, int64_t *out);
/* "yes"/"no" for a boolean member, "-" when missing. */
const char *cli_json_yesno(struct json_object *obj, const char *key);
/*
 * The member as text for a table cell: a non-empty string as is, an integer in
 * decimal written to buf (only when buf is given), anything else "-".
 */
const char *cli_json_text(struct json_object *obj, const char *key, char *buf, size_t len);

#endif /* SOCKMESH_CLI_H */
