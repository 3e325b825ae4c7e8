/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control-socket protocol (docs/interfaces.md): the CLI's client and the
 * framing helpers the daemon's server side shares with it.
 *
 * One exchange per connection: the client sends one JSON object and a newline,
 * {"cmd":"status"}\n, or with arguments {"cmd":"policy_get","args":{...}}\n;
 * the daemon answers one JSON object and a newline,
 * {"ok":true,"data":...}\n or {"ok":false,"error":"message"}\n, then closes.
 */
#ifndef SOCKMESH_CTL_H
#define SOCKMESH_CTL_H

#include <stddef.h>

#include "util.h"

struct json_object;

#define SM_CTL_DEFAULT_SOCKET "/run/sockmesh/sockmesh.sock"
/* Environment variable naming the socket when no --socket is given. */
#define SM_CTL_SOCKET_ENV	  "SOCKMESH_SOCKET"
#define SM_CTL_DEFAULT_TIMEOUT_MS 5000
/* Longest answer the client accepts, newline included. */
#define SM_CTL_MAX_RESPONSE (16u << 20)
/* Longest request line a server should read (newline included) before giving up:
 * room for a policy document (`sockmesh policy apply -f`). */
#define SM_CTL_MAX_REQUEST (8u << 20)
/* Longest command name, terminating NUL included. */
#define SM_CTL_CMD_MAX 64

/*
 * Send {"cmd":"<cmd>"} to the daemon at socket_path and wait for its answer,
 * all within timeout_ms (connect, send and receive together; > 0).
 *
 * Returns 0 and sets *data to the answer's "data" member (a new reference the
 * caller releases with json_object_put(); NULL when the daemon sent null or no
 * data). On failure *data is NULL, err->msg says what went wrong and how to fix
 * it, and the return value is:
 *   -EPROTO        the daemon answered {"ok":false}; err holds its message verbatim
 *   -ENOENT, -ECONNREFUSED, -EACCES, ...  connecting failed (errno of connect())
 *   -ENAMETOOLONG  socket_path does not fit in sockaddr_un
 *   -ETIMEDOUT     no complete answer within timeout_ms
 *   -EBADMSG       the answer is not a protocol message (not JSON, no "ok", truncated)
 *   -EMSGSIZE      the answer exceeds SM_CTL_MAX_RESPONSE
 *   -EINVAL        bad arguments (cmd empty or not a valid command name)
 */
int sm_ctl_request(const char *socket_path, const char *cmd, int timeout_ms,
		   struct json_object **data, struct sm_error *err);
/* The same with an "args" object (borrowed; NULL sends none). */
int sm_ctl_request_args(const char *socket_path, const char *cmd, struct json_object *args,
			int timeout_ms, struct json_object **data, struct sm_error *err);

/*
 * Server side: parse one request line (the trailing newline, if present, is
 * allowed) and copy its "cmd" into cmd[cmdlen]. Other members are ignored
 * (reserved for command arguments). Returns 0, or -EINVAL (not valid UTF-8,
 * not a JSON object, no string "cmd", empty or malformed name) / -ENAMETOOLONG (name does not fit)
 * / -EMSGSIZE (line longer than SM_CTL_MAX_REQUEST), with err set to a message
 * fit to send back as the "error" of the answer.
 */
int sm_ctl_parse_request(const char *line, char *cmd, size_t cmdlen, struct sm_error *err);
/*
 * The same, also returning the request's "args" member in *args (a new
 * reference the caller releases; NULL when absent). "args" other than an
 * object, or holding a string with a NUL character (JSON's \u0000, which
 * would cut a C string short), is -EINVAL with err naming the member.
 */
int sm_ctl_parse_request_args(const char *line, char *cmd, size_t cmdlen, struct json_object **args,
			      struct sm_error *err);

/*
 * Server side: the answer line, malloc'ed and ending in "\n", always one line
 * (json-c escapes newlines in strings). error != NULL gives
 * {"ok":false,"error":error} and data is ignored; otherwise {"ok":true,"data":data}
 * (data NULL → null). data is borrowed, not consumed. The line is valid UTF-8
 * (what the client's parser requires): a byte of error or of a string in data
 * that is not part of a well-formed UTF-8 sequence is sent as U+FFFD.
 * NULL + errno on failure.
 */
char *sm_ctl_format_response(struct json_object *data, const char *error);

/*
 * Client side, split out of sm_ctl_request for testing: interpret one answer
 * line of len bytes (newline optional). Same *data and return contract as
 * sm_ctl_request for -EPROTO and -EBADMSG.
 */
int sm_ctl_parse_response(const char *line, size_t len, struct json_object **data,
			  struct sm_error *err);

#endif /* SOCKMESH_CTL_H */
