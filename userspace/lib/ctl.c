// SPDX-License-Identifier: Apache-2.0
/* The control-socket protocol: the CLI's client and the framing shared with the daemon. */
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

/* json-c nesting limit for both directions; status output is 4 levels deep. */
#define CTL_JSON_DEPTH 64
/* How often a connect() that found the daemon's backlog full is retried. */
#define CTL_BUSY_RETRY_MS 10

/* Command names are short lower-case words: "status", "flows-follow", "dump_maps". */
static bool ctl_cmd_valid(const char *cmd)
{
	if (!cmd || !(cmd[0] >= 'a' && cmd[0] <= 'z'))
		return false;
	for (const char *p = cmd; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_'))
			return false;
	return true;
}

/*
 * Length of the well-formed UTF-8 sequence at s[0..left) (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), 0 if it is none.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t left)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		lo = s[0] == 0xe0 ? 0xa0 : 0x80; /* overlong */
		hi = s[0] == 0xed ? 0x9f : 0xbf; /* surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		lo = s[0] == 0xf0 ? 0x90 : 0x80; /* overlong */
		hi = s[0] == 0xf4 ? 0x8f : 0xbf; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (left < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/*
 * Parse exactly one JSON value from buf[0..len), which must be valid UTF-8
 * (RFC 3629): a trailing "\n" (or "\r\n") and surrounding blanks are
 * allowed, anything else after the value is not.
 * Returns a new reference or NULL; *why says what was wrong.
 */
static struct json_object *ctl_parse_line(const char *buf, size_t len, const char **why)
{
	struct json_tokener *tok;
	struct json_object *obj;
	size_t used;

	// buf is non-NULL by contract; the analyzer gets here from ctl_recv_line() by
	// taking errno for 0 after a failed recv(), i.e. a failure for a success
	// NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
	if (memchr(buf, '\0', len)) {
		*why = "contains a NUL byte";
		return NULL;
	}
	/* json-c's own check lets overlong forms, surrogates and more through */
	for (size_t i = 0, n; i < len; i += n)
		if (!(n = utf8_seq_len((const unsigned char *) buf + i, len - i))) {
			*why = "is not valid UTF-8";
			return NULL;
		}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
			   buf[len - 1] == '\t'))
		len--;
	if (len == 0) {
		*why = "is empty";
		return NULL;
	}
	if (memchr(buf, '\n', len)) {
		*why = "spans more than one line";
		return NULL;
	}
	if (len > INT32_MAX) {
		*why = "is too long";
		return NULL;
	}
	tok = json_tokener_new_ex(CTL_JSON_DEPTH);
	if (!tok) {
		*why = "could not be parsed (out of memory)";
		return NULL;
	}
	/* Strict JSON (no trailing commas, single quotes, bare words), valid UTF-8 only. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int) len);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		/* json-c's descriptions ("unexpected character") need the context */
		*why = json_tokener_get_error(tok) == json_tokener_continue
			       ? "is not a complete JSON object"
			       : "is not valid JSON or has text after the object";
		json_object_put(obj);
		obj = NULL;
		goto free_tok;
	}
	used = json_tokener_get_parse_end(tok);
	while (used < len && (buf[used] == ' ' || buf[used] == '\t'))
		used++;
	if (used != len) {
		*why = "has text after the JSON value";
		json_object_put(obj);
		obj = NULL;
	}
free_tok:
	json_tokener_free(tok);
	return obj;
}

/*
 * Does a string in v (an object, an array, a string; nested) hold U+0000?
 * JSON lets a client write it as \u0000; no command takes one, and every
 * argument is a C string to the daemon, which would end there. Sets path to
 * where it is ("args.document", "args.filters[2]") and *off to its byte
 * offset in that string.
 */
static bool ctl_find_nul(struct json_object *v, char *path, size_t len, size_t *off)
{
	size_t used = strlen(path);

	switch (json_object_get_type(v)) {
	case json_type_string: {
		const char *s = json_object_get_string(v);
		const char *nul = memchr(s, '\0', (size_t) json_object_get_string_len(v));

		if (nul)
			*off = (size_t) (nul - s);
		return nul != NULL;
	}
	case json_type_object: {
		json_object_object_foreach(v, key, val)
		{
			snprintf(path + used, len - used, ".%s", key);
			if (ctl_find_nul(val, path, len, off))
				return true;
		}
		break;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			snprintf(path + used, len - used, "[%zu]", i);
			if (ctl_find_nul(json_object_array_get_idx(v, i), path, len, off))
				return true;
		}
		break;
	default:
		break;
	}
	path[used] = '\0';
	return false;
}

int sm_ctl_parse_request(const char *line, char *cmd, size_t cmdlen, struct sm_error *err)
{
	struct json_object *args = NULL;
	int ret = sm_ctl_parse_request_args(line, cmd, cmdlen, &args, err);

	json_object_put(args);
	return ret;
}

int sm_ctl_parse_request_args(const char *line, char *cmd, size_t cmdlen, struct json_object **args,
			      struct sm_error *err)
{
	struct json_object *req, *jcmd, *jargs;
	const char *why = "", *name;
	size_t len = strlen(line);
	int ret = 0;

	*args = NULL;
	if (len > SM_CTL_MAX_REQUEST) {
		sm_error_set(err, "request too long (%zu bytes, at most %u)", len,
			     SM_CTL_MAX_REQUEST);
		return -EMSGSIZE;
	}
	req = ctl_parse_line(line, len, &why);
	if (!req) {
		sm_error_set(err,
			     "bad request: the line %s (send {\"cmd\":\"status\"} and a newline)",
			     why);
		return -EINVAL;
	}
	if (!json_object_is_type(req, json_type_object)) {
		sm_error_set(err, "bad request: expected a JSON object like {\"cmd\":\"status\"}");
		ret = -EINVAL;
		goto put_req;
	}
	if (!json_object_object_get_ex(req, "cmd", &jcmd) ||
	    !json_object_is_type(jcmd, json_type_string)) {
		sm_error_set(
			err,
			"bad request: missing string member \"cmd\" (e.g. {\"cmd\":\"status\"})");
		ret = -EINVAL;
		goto put_req;
	}
	name = json_object_get_string(jcmd);
	if ((size_t) json_object_get_string_len(jcmd) != strlen(name) || !ctl_cmd_valid(name)) {
		sm_error_set(err,
			     "bad request: command names are lower-case words like \"status\"");
		ret = -EINVAL;
		goto put_req;
	}
	if (strlen(name) >= cmdlen) {
		sm_error_set(err, "bad request: command name too long (at most %zu characters)",
			     cmdlen ? cmdlen - 1 : 0);
		ret = -ENAMETOOLONG;
		goto put_req;
	}
	if (json_object_object_get_ex(req, "args", &jargs) &&
	    !json_object_is_type(jargs, json_type_null)) {
		char where[128] = "args";
		size_t off = 0;

		if (!json_object_is_type(jargs, json_type_object)) {
			sm_error_set(err, "bad request: \"args\" must be a JSON object");
			ret = -EINVAL;
			goto put_req;
		}
		if (ctl_find_nul(jargs, where, sizeof(where), &off)) {
			sm_error_set(err,
				     "bad request: %s holds a NUL character (\\u0000) at byte %zu; "
				     "no command accepts one (remove it)",
				     where, off);
			ret = -EINVAL;
			goto put_req;
		}
		*args = json_object_get(jargs);
	}
	memcpy(cmd, name, strlen(name) + 1);
put_req:
	json_object_put(req);
	return ret;
}

/* json-c output flags for one wire line: no whitespace, "/" left as is. */
#define CTL_WIRE_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Serialize obj as one line with a newline; malloc'ed, NULL + errno. */
static char *ctl_to_line(struct json_object *obj)
{
	const char *s;
	size_t len;
	char *line;

	s = json_object_to_json_string_ext(obj, CTL_WIRE_FLAGS);
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	len = strlen(s);
	line = malloc(len + 2);
	if (!line)
		return NULL;
	memcpy(line, s, len);
	line[len] = '\n';
	line[len + 1] = '\0';
	return line;
}

/*
 * The client parses answers as strict UTF-8, but a message may quote a user's
 * text cut at a byte limit ('%.80s', the size of struct sm_error) in the
 * middle of a character. So every byte of line (malloc'ed) that is not part
 * of a well-formed sequence becomes U+FFFD, as Go's encoding/json does; such
 * bytes are >= 0x80, never JSON syntax. Returns line itself when it is valid,
 * else a new string (line freed); NULL when out of memory (line freed).
 */
static char *ctl_utf8_coerce(char *line)
{
	const unsigned char *s = (const unsigned char *) line;
	size_t len = strlen(line), bad = 0, i, n, o = 0;
	char *out;

	for (i = 0; i < len; i += n ? n : 1)
		if (!(n = utf8_seq_len(s + i, len - i)))
			bad++;
	if (!bad)
		return line;
	out = malloc(len + 2 * bad + 1); /* each bad byte grows to three */
	if (!out)
		goto free_line;
	for (i = 0; i < len; i += n ? n : 1) {
		n = utf8_seq_len(s + i, len - i);
		if (n) {
			memcpy(out + o, line + i, n);
			o += n;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	out[o] = '\0';
free_line:
	free(line);
	return out;
}

char *sm_ctl_format_response(struct json_object *data, const char *error)
{
	struct json_object *resp;
	char *line = NULL;

	resp = json_object_new_object();
	if (!resp)
		goto oom;
	if (error) {
		if (json_object_object_add(resp, "ok", json_object_new_boolean(0)) ||
		    json_object_object_add(resp, "error", json_object_new_string(error)))
			goto put_resp;
	} else {
		if (json_object_object_add(resp, "ok", json_object_new_boolean(1)))
			goto put_resp;
		/* The wrapper takes a reference of its own: data stays the caller's. */
		json_object_get(data);
		if (json_object_object_add(resp, "data", data)) {
			json_object_put(data);
			goto put_resp;
		}
	}
	line = ctl_to_line(resp);
	if (line)
		line = ctl_utf8_coerce(line);
put_resp:
	json_object_put(resp);
	if (line)
		return line;
oom:
	errno = ENOMEM;
	return NULL;
}

int sm_ctl_parse_response(const char *line, size_t len, struct json_object **data,
			  struct sm_error *err)
{
	struct json_object *resp, *jok, *jerr, *jdata;
	const char *why = "";
	int ret = 0;

	*data = NULL;
	resp = ctl_parse_line(line, len, &why);
	if (!resp) {
		sm_error_set(err,
			     "the daemon's answer %s (is the socket a sockmeshd of the same "
			     "version?)",
			     why);
		return -EBADMSG;
	}
	if (!json_object_is_type(resp, json_type_object) ||
	    !json_object_object_get_ex(resp, "ok", &jok) ||
	    !json_object_is_type(jok, json_type_boolean)) {
		sm_error_set(err, "the daemon's answer has no boolean \"ok\" member (is the socket "
				  "a sockmeshd of the same version?)");
		ret = -EBADMSG;
		goto put_resp;
	}
	if (!json_object_get_boolean(jok)) {
		if (json_object_object_get_ex(resp, "error", &jerr) &&
		    json_object_is_type(jerr, json_type_string) && json_object_get_string_len(jerr))
			sm_error_set(err, "%s", json_object_get_string(jerr));
		else
			sm_error_set(err, "the daemon reported an error without a message");
		ret = -EPROTO;
		goto put_resp;
	}
	if (json_object_object_get_ex(resp, "data", &jdata))
		*data = json_object_get(jdata);
put_resp:
	json_object_put(resp);
	return ret;
}

static int64_t ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, at least 0, for poll(). */
static int ctl_left_ms(int64_t deadline)
{
	int64_t left = deadline - ctl_now_ms();

	return left < 0 ? 0 : (int) left;
}

/* The hint appended to a failed connect() to path, by errno. */
static const char *ctl_connect_hint(const char *path, int e)
{
	struct stat st;

	switch (e) {
	case ECONNREFUSED:
		/* Linux also refuses a connect() to a file that is not a socket */
		if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
			return " (not a socket: check --socket PATH)";
		return " (nobody listens there: is sockmeshd running? pass --socket PATH for "
		       "another node)";
	case ENOENT:
		return " (is sockmeshd running? pass --socket PATH for another node)";
	case EACCES:
	case EPERM:
		return " (run as root: the socket is 0600)";
	case ENOTSOCK:
	case ENOTDIR:
		return " (not a socket: check --socket PATH)";
	default:
		return "";
	}
}

/* Connect a non-blocking stream socket to path within deadline. fd or -errno, err set. */
static int ctl_connect(const char *path, int64_t deadline, struct sm_error *err)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, e;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		sm_error_set(err,
			     "cannot connect to %s: path longer than %zu bytes (use a shorter "
			     "--socket PATH)",
			     path, sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		sm_error_set(err, "cannot create a Unix socket: %s", strerror(e));
		return -e;
	}
	/*
	 * A Unix stream connect() completes at once or fails; EAGAIN means the
	 * daemon's accept backlog is full, so wait a little and try again.
	 */
	for (;;) {
		if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) == 0)
			return fd;
		e = errno;
		if (e == EINTR)
			continue;
		if (e != EAGAIN || ctl_left_ms(deadline) == 0)
			break;
		poll(NULL, 0, CTL_BUSY_RETRY_MS);
	}
	close(fd);
	if (e == EAGAIN) {
		sm_error_set(err,
			     "cannot connect to %s: the daemon is not accepting connections "
			     "(busy or hung; try again or raise --timeout)",
			     path);
		return -ETIMEDOUT;
	}
	sm_error_set(err, "cannot connect to %s: %s%s", path, strerror(e),
		     ctl_connect_hint(path, e));
	return -e;
}

/* Write all of buf to the non-blocking fd within deadline. 0 or -errno, err set. */
static int ctl_send_all(int fd, const char *path, const char *buf, size_t len, int64_t deadline,
			struct sm_error *err)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	ssize_t n;
	int e;

	while (len > 0) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t) n;
			continue;
		}
		e = n < 0 ? errno : EIO;
		if (e == EINTR)
			continue;
		if (e != EAGAIN) {
			sm_error_set(err, "cannot send the request to %s: %s", path, strerror(e));
			return -e;
		}
		n = poll(&pfd, 1, ctl_left_ms(deadline));
		if (n == 0) {
			sm_error_set(err,
				     "timed out sending the request to %s (daemon hung? raise "
				     "--timeout)",
				     path);
			return -ETIMEDOUT;
		}
		if (n < 0 && errno != EINTR) {
			e = errno;
			sm_error_set(err, "poll on %s: %s", path, strerror(e));
			return -e;
		}
	}
	return 0;
}

/*
 * Read up to and including the first newline within deadline and at most
 * SM_CTL_MAX_RESPONSE bytes. 0 with *out (malloc'ed, NUL-terminated, newline
 * kept) and *outlen, or -errno with err set.
 */
static int ctl_recv_line(int fd, const char *path, int64_t deadline, char **out, size_t *outlen,
			 struct sm_error *err)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t len = 0, cap = 0, scanned = 0;
	char *buf = NULL, *nbuf;
	ssize_t n;
	int ret, e;

	for (;;) {
		if (len == cap) {
			if (cap >= SM_CTL_MAX_RESPONSE) {
				sm_error_set(err,
					     "the answer from %s exceeds %u bytes without a "
					     "newline",
					     path, SM_CTL_MAX_RESPONSE);
				ret = -EMSGSIZE;
				goto free_buf;
			}
			cap = cap ? cap * 2 : 4096;
			if (cap > SM_CTL_MAX_RESPONSE)
				cap = SM_CTL_MAX_RESPONSE;
			/* one more byte for the terminating NUL */
			nbuf = realloc(buf, cap + 1);
			if (!nbuf) {
				sm_error_set(err, "out of memory reading the answer from %s", path);
				ret = -ENOMEM;
				goto free_buf;
			}
			buf = nbuf;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n > 0) {
			len += (size_t) n;
			if (memchr(buf + scanned, '\n', len - scanned))
				break;
			scanned = len;
			continue;
		}
		if (n == 0) {
			sm_error_set(err,
				     "%s closed the connection %s (daemon crashed or "
				     "restarting? check its log)",
				     path,
				     len ? "in the middle of its answer" : "without answering");
			ret = -EBADMSG;
			goto free_buf;
		}
		e = errno;
		if (e == EINTR)
			continue;
		if (e != EAGAIN) {
			sm_error_set(err, "cannot read the answer from %s: %s", path, strerror(e));
			ret = -e;
			goto free_buf;
		}
		n = poll(&pfd, 1, ctl_left_ms(deadline));
		if (n == 0) {
			sm_error_set(err,
				     "timed out waiting for the answer from %s (daemon hung? "
				     "raise --timeout)",
				     path);
			ret = -ETIMEDOUT;
			goto free_buf;
		}
		if (n < 0 && errno != EINTR) {
			e = errno;
			sm_error_set(err, "poll on %s: %s", path, strerror(e));
			ret = -e;
			goto free_buf;
		}
	}
	/* The protocol has one line per answer; anything after the newline is ignored. */
	len = (size_t) ((char *) memchr(buf, '\n', len) - buf) + 1;
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
free_buf:
	free(buf);
	return ret;
}

int sm_ctl_request(const char *socket_path, const char *cmd, int timeout_ms,
		   struct json_object **data, struct sm_error *err)
{
	return sm_ctl_request_args(socket_path, cmd, NULL, timeout_ms, data, err);
}

int sm_ctl_request_args(const char *socket_path, const char *cmd, struct json_object *args,
			int timeout_ms, struct json_object **data, struct sm_error *err)
{
	struct json_object *req = NULL;
	char *reqline = NULL, *answer = NULL;
	size_t answer_len = 0;
	int64_t deadline;
	int fd, ret;

	*data = NULL;
	if (!ctl_cmd_valid(cmd) || strlen(cmd) >= SM_CTL_CMD_MAX || timeout_ms <= 0 ||
	    !socket_path || !*socket_path) {
		sm_error_set(err, "invalid control request (command '%s', timeout %d ms)",
			     cmd ? cmd : "(null)", timeout_ms);
		return -EINVAL;
	}
	deadline = ctl_now_ms() + timeout_ms;

	req = json_object_new_object();
	if (req && !json_object_object_add(req, "cmd", json_object_new_string(cmd)) &&
	    (!args || !json_object_object_add(req, "args", json_object_get(args))))
		reqline = ctl_to_line(req);
	if (!reqline) {
		sm_error_set(err, "out of memory building the control request");
		ret = -ENOMEM;
		goto put_req;
	}

	fd = ctl_connect(socket_path, deadline, err);
	if (fd < 0) {
		ret = fd;
		goto free_reqline;
	}
	ret = ctl_send_all(fd, socket_path, reqline, strlen(reqline), deadline, err);
	if (ret == -EPIPE || ret == -ECONNRESET) {
		/*
		 * The daemon may answer before it reads the request, and close: a
		 * refusal (too many clients). Its answer is the better error.
		 */
		struct sm_error rerr = {{0}};

		if (ctl_recv_line(fd, socket_path, deadline, &answer, &answer_len, &rerr) == 0) {
			ret = sm_ctl_parse_response(answer, answer_len, data, err);
			free(answer);
		}
		goto close_fd;
	}
	if (ret)
		goto close_fd;
	ret = ctl_recv_line(fd, socket_path, deadline, &answer, &answer_len, err);
	if (ret)
		goto close_fd;
	ret = sm_ctl_parse_response(answer, answer_len, data, err);
	free(answer);
close_fd:
	close(fd);
free_reqline:
	free(reqline);
put_req:
	json_object_put(req);
	return ret;
}
