/* SPDX-License-Identifier: Apache-2.0 */
/* What the sockmesh CLI's files share: options, exit codes, the command table, JSON helpers. */
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

/* Exit codes (docs/interfaces.md). */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,  /* daemon unreachable, or it reported an error */
	CLI_EXIT_USAGE = 2, /* unknown command or option, bad option value */
};

enum cli_output {
	CLI_OUT_TABLE,
	CLI_OUT_JSON,
};

struct cli_opts {
	const char *socket; /* control socket path */
	enum cli_output output;
	int verbose;	/* -v count */
	int timeout_ms; /* whole request, connect to answer */
};

/*
 * Renders a command's "data" for people; data is the daemon's answer (may be
 * NULL). Returns an exit code; prints its own messages.
 */
typedef int (*cli_render_fn)(const struct cli_opts *o, const char *cmd, struct json_object *data);

struct cli_cmd {
	const char *name;    /* the subcommand, also the protocol command */
	const char *summary; /* one line for `sockmesh --help` */
	const char *help;    /* the rest of `sockmesh NAME --help`: description, examples */
	cli_render_fn render;
};

/* Subcommands, in cmd_*.c. */
int cli_render_status(const struct cli_opts *o, const char *cmd, struct json_object *data);
int cli_render_workloads(const struct cli_opts *o, const char *cmd, struct json_object *data);
int cli_render_services(const struct cli_opts *o, const char *cmd, struct json_object *data);
/* `sockmesh policy SUBCOMMAND ...` (argv[0] is "policy"); its own options. */
int cli_policy(struct cli_opts *o, int argc, char **argv);
/* `sockmesh flows [OPTIONS]` (argv[0] is "flows"): the flow stream; its own options. */
int cli_flows(struct cli_opts *o, int argc, char **argv);

/* "sockmesh: <message>" on stderr: the CLI's messages to its user. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
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
