// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the control-socket protocol (framing, client against a fake daemon) and tables. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "check.h"
#include "ctl.h"
#include "flowfilter.h"
#include "table.h"
#include "util.h"

/* Every blocking step of the fake daemon gives up after this long. */
#define FAKE_WAIT_MS 5000
/* The client's timeout in tests that expect an answer (generous: ASan is slow). */
#define CLIENT_TIMEOUT_MS 5000

/* ---- request framing ---- */

struct request_case {
	const char *line;
	int want_ret;
	const char *want_cmd; /* when want_ret == 0 */
};

static void test_parse_request_table(void **state)
{
	static const struct request_case cases[] = {
		{"{\"cmd\":\"status\"}", 0, "status"},
		{"{\"cmd\":\"status\"}\n", 0, "status"},
		{"  {\"cmd\":\"workloads\"}\r\n", 0, "workloads"},
		{"{ \"cmd\" : \"services\" , \"follow\" : true }\n", 0, "services"},
		{"{\"cmd\":\"flows-follow_2\"}\n", 0, "flows-follow_2"},
		{"", -EINVAL, NULL},
		{"\n", -EINVAL, NULL},
		{"status\n", -EINVAL, NULL},
		{"[\"status\"]\n", -EINVAL, NULL},
		{"\"status\"\n", -EINVAL, NULL},
		{"{}\n", -EINVAL, NULL},
		{"{\"cmd\":1}\n", -EINVAL, NULL},
		{"{\"cmd\":null}\n", -EINVAL, NULL},
		{"{\"cmd\":\"\"}\n", -EINVAL, NULL},
		{"{\"cmd\":\"STATUS\"}\n", -EINVAL, NULL},
		{"{\"cmd\":\"a b\"}\n", -EINVAL, NULL},
		{"{\"cmd\":\"1status\"}\n", -EINVAL, NULL},
		{"{\"cmd\":\"st\\u0000x\"}\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\"", -EINVAL, NULL},
		{"{\"cmd\":\"status\",}\n", -EINVAL, NULL},
		{"{'cmd':'status'}\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\"} x\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\"}{\"cmd\":\"x\"}\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\"}\n{\"cmd\":\"x\"}\n", -EINVAL, NULL},
		{"{\"cmd\":\"st\xff\"}\n", -EINVAL, NULL},
		/*
		 * Found by fuzz_ctl: json-c's UTF-8 check lets overlong forms,
		 * surrogates and code points above U+10FFFF through; the protocol
		 * takes RFC 3629 UTF-8 only, as its answers are.
		 */
		{"{\"cmd\":\"status\",\"args\":{\"x\":\"\xc1\x83\"}}\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\",\"args\":{\"x\":\"\xe0\x80\xaf\"}}\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\",\"args\":{\"x\":\"\xed\xa0\x80\"}}\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\",\"args\":{\"x\":\"\xf4\x90\x80\x80\"}}\n", -EINVAL, NULL},
		{"{\"cmd\":\"status\",\"args\":{\"x\":\"\xf0\x9f\x98\x80\xc3\xa9\"}}\n", 0,
		 "status"},
	};

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct sm_error err = {""};
		char cmd[SM_CTL_CMD_MAX] = "untouched";
		int ret = sm_ctl_parse_request(cases[i].line, cmd, sizeof(cmd), &err);

		if (ret != cases[i].want_ret)
			fail_msg("case %zu \"%s\": got %d, want %d (%s)", i, cases[i].line, ret,
				 cases[i].want_ret, err.msg);
		if (ret == 0) {
			ASSERT_STR_EQ(cmd, cases[i].want_cmd, cases[i].line);
		} else {
			ASSERT_STR_EQ(cmd, "untouched", "cmd left alone on failure");
			if (!err.msg[0])
				fail_msg("case %zu \"%s\": no error message", i, cases[i].line);
		}
	}
}

/* A NUL in any string of args is refused, naming the member: no argument may be cut short. */
static void test_parse_request_args_nul(void **state)
{
	static const struct {
		const char *line;
		const char *where; /* NULL: accepted */
	} cases[] = {
		{"{\"cmd\":\"policy_apply\",\"args\":{\"document\":\"policies: []\\n\"}}", NULL},
		{"{\"cmd\":\"policy_apply\",\"args\":{\"document\":\"policies: []\\n\\u0000x\"}}",
		 "args.document holds a NUL character (\\u0000) at byte 13"},
		{"{\"cmd\":\"policy_delete\",\"args\":{\"name\":\"a\\u0000b\"}}",
		 "args.name holds a NUL"},
		{"{\"cmd\":\"flows\",\"args\":{\"follow\":true,\"filters\":[\"a\",\"\\u0000\"]}}",
		 "args.filters[1] holds a NUL character (\\u0000) at byte 0"},
		{"{\"cmd\":\"x\",\"args\":{\"a\":{\"b\":[1,{\"c\":\"\\u0000\"}]}}}",
		 "args.a.b[1].c"},
		{"{\"cmd\":\"x\",\"args\":{\"ok\":\"\\u0001\",\"n\":0}}", NULL},
	};

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct sm_error err = {""};
		struct json_object *args = NULL;
		char cmd[SM_CTL_CMD_MAX];
		int ret = sm_ctl_parse_request_args(cases[i].line, cmd, sizeof(cmd), &args, &err);

		json_object_put(args);
		if (!cases[i].where) {
			ASSERT_EQ(ret, 0, err.msg);
			continue;
		}
		ASSERT_EQ(ret, -EINVAL, cases[i].line);
		ASSERT_EQ(args == NULL, 1, "no args on error");
		ASSERT_HAS(err.msg, cases[i].where, cases[i].line);
		ASSERT_HAS(err.msg, "remove it", cases[i].line);
	}
}

static void test_parse_request_limits(void **state)
{
	struct sm_error err = {""};
	char cmd[SM_CTL_CMD_MAX];
	char small[7];
	char *line;
	size_t n;

	/* a name that does not fit the caller's buffer */
	ASSERT_EQ(sm_ctl_parse_request("{\"cmd\":\"workloads\"}", small, sizeof(small), &err),
		  -ENAMETOOLONG, "name longer than the buffer");
	ASSERT_HAS(err.msg, "too long", "name-too-long message");
	ASSERT_EQ(sm_ctl_parse_request("{\"cmd\":\"status\"}", small, sizeof(small), &err), 0,
		  "name that just fits");
	ASSERT_STR_EQ(small, "status", "name that just fits");

	/* a line longer than SM_CTL_MAX_REQUEST */
	n = SM_CTL_MAX_REQUEST + 100;
	line = malloc(n + 1);
	assert_non_null(line);
	memset(line, ' ', n);
	memcpy(line + n - 17, "{\"cmd\":\"status\"}", 16);
	line[n - 1] = '\n';
	line[n] = '\0';
	ASSERT_EQ(sm_ctl_parse_request(line, cmd, sizeof(cmd), &err), -EMSGSIZE, "long line");
	free(line);

	/* nesting deeper than the parser's limit is refused, not recursed into */
	n = 200;
	line = calloc(1, 2 * n + 64);
	assert_non_null(line);
	strcpy(line, "{\"cmd\":\"status\",\"x\":");
	memset(line + strlen(line), '[', n);
	memset(line + strlen(line), ']', n);
	strcat(line, "}\n");
	ASSERT_EQ(sm_ctl_parse_request(line, cmd, sizeof(cmd), &err), -EINVAL, "deep nesting");
	free(line);
}

/* ---- response framing ---- */

static void test_format_response(void **state)
{
	struct json_object *data, *back = NULL;
	struct sm_error err = {""};
	char *line;

	data = json_tokener_parse("{\"node\":\"n1\",\"bpffs\":\"/sys/fs/bpf/sockmesh\","
				  "\"ready\":true,\"uptime_s\":5}");
	assert_non_null(data);
	line = sm_ctl_format_response(data, NULL);
	ASSERT_STR_EQ(line,
		      "{\"ok\":true,\"data\":{\"node\":\"n1\",\"bpffs\":\"/sys/fs/bpf/sockmesh\","
		      "\"ready\":true,\"uptime_s\":5}}\n",
		      "ok response, slashes not escaped");
	/* the round trip gives the same data back */
	ASSERT_EQ(sm_ctl_parse_response(line, strlen(line), &back, &err), 0, "parse own answer");
	ASSERT_EQ(json_object_equal(back, data), 1, "round trip keeps data");
	json_object_put(back);
	free(line);
	/* data was borrowed: ours is the last reference, so this put frees it */
	ASSERT_EQ(json_object_put(data), 1, "format_response leaves data's refcount alone");

	line = sm_ctl_format_response(NULL, NULL);
	ASSERT_STR_EQ(line, "{\"ok\":true,\"data\":null}\n", "ok without data");
	ASSERT_EQ(sm_ctl_parse_response(line, strlen(line), &back, &err), 0, "parse null data");
	ASSERT_EQ(back == NULL, 1, "null data comes back as NULL");
	free(line);

	line = sm_ctl_format_response(NULL, "unknown command 'x' (try: status)");
	ASSERT_STR_EQ(line, "{\"ok\":false,\"error\":\"unknown command 'x' (try: status)\"}\n",
		      "error response");
	free(line);

	/* an error with quotes and newlines still makes exactly one line */
	data = json_object_new_int(7);
	line = sm_ctl_format_response(data, "bad \"x\"\nsecond line");
	ASSERT_STR_EQ(line, "{\"ok\":false,\"error\":\"bad \\\"x\\\"\\nsecond line\"}\n",
		      "error escaped, data ignored");
	ASSERT_EQ(strchr(line, '\n') == line + strlen(line) - 1, 1, "one newline, at the end");
	ASSERT_EQ(sm_ctl_parse_response(line, strlen(line), &back, &err), -EPROTO,
		  "parse own error");
	ASSERT_STR_EQ(err.msg, "bad \"x\"\nsecond line", "error message round trip");
	ASSERT_EQ(back == NULL, 1, "no data on error");
	free(line);
	json_object_put(data);
}

/*
 * Found by fuzz_ctl: a message that quotes a user's text cut at a byte limit
 * (flowfilter's '%.80s') may end in half a UTF-8 character. The daemon's
 * answer must still be valid UTF-8, or the CLI's strict parser refuses it
 * and the operator reads "the daemon's answer is not valid JSON" instead of
 * what was wrong with the filter.
 */
static void test_format_response_utf8(void **state)
{
	static const struct {
		const char *msg, *want;
	} cases[] = {
		/* a snowman, then one cut after two of its three bytes */
		{"term 'ip=\xe2\x98\x83\xe2\x98': bad",
		 "term 'ip=\xe2\x98\x83\xef\xbf\xbd\xef\xbf\xbd': bad"},
		{"lone \x80 continuation", "lone \xef\xbf\xbd continuation"},
		{"overlong \xc0\xaf slash", "overlong \xef\xbf\xbd\xef\xbf\xbd slash"},
		{"surrogate \xed\xa0\x80.", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd."},
		{"above U+10FFFF \xf4\x90\x80\x80",
		 "above U+10FFFF \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
		{"\xff", "\xef\xbf\xbd"},
		{"kept: \xc3\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbf",
		 "kept: \xc3\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbf"},
	};
	struct json_object *data, *back = NULL;
	struct sm_flowfilter *f = NULL;
	struct sm_error err, ferr = {""};
	char filter[400] = "ip=", *line;

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		line = sm_ctl_format_response(NULL, cases[i].msg);
		ASSERT_NOT_NULL(line, "format");
		ASSERT_EQ(sm_ctl_parse_response(line, strlen(line), &back, &err), -EPROTO,
			  cases[i].msg);
		ASSERT_STR_EQ(err.msg, cases[i].want, "invalid bytes become U+FFFD");
		free(line);
	}

	/* the case the fuzzer found: a filter of snowmen, its error message cut mid-character */
	for (int i = 0; i < 100; i++)
		strcat(filter, "\xe2\x98\x83");
	ASSERT_EQ(sm_flowfilter_parse(filter, &f, &ferr), -EINVAL, "filter of snowmen");
	line = sm_ctl_format_response(NULL, ferr.msg);
	ASSERT_NOT_NULL(line, "format");
	ASSERT_EQ(sm_ctl_parse_response(line, strlen(line), &back, &err), -EPROTO,
		  "the CLI reads the filter's error");
	ASSERT_HAS(err.msg, "filter term 'ip=\xe2\x98\x83", "the filter's own message");
	free(line);

	/* the same for strings in data */
	data = json_object_new_object();
	json_object_object_add(data, "name", json_object_new_string("a\xffz"));
	line = sm_ctl_format_response(data, NULL);
	ASSERT_EQ(sm_ctl_parse_response(line, strlen(line), &back, &err), 0, "data with \\xff");
	ASSERT_STR_EQ(json_object_get_string(json_object_object_get(back, "name")),
		      "a\xef\xbf\xbdz", "data string coerced");
	json_object_put(back);
	json_object_put(data);
	free(line);
}

struct response_case {
	const char *line;
	int want_ret;
	const char *want_msg; /* substring of err.msg */
};

static void test_parse_response_table(void **state)
{
	static const struct response_case cases[] = {
		{"{\"ok\":true,\"data\":[]}\n", 0, NULL},
		{"{\"ok\":true}\n", 0, NULL},
		{"{\"ok\":false,\"error\":\"boom\"}\n", -EPROTO, "boom"},
		{"{\"ok\":false}\n", -EPROTO, "without a message"},
		{"{\"ok\":false,\"error\":42}\n", -EPROTO, "without a message"},
		{"{\"ok\":false,\"error\":\"\"}\n", -EPROTO, "without a message"},
		{"{\"ok\":1,\"data\":{}}\n", -EBADMSG, "\"ok\""},
		{"{\"data\":{}}\n", -EBADMSG, "\"ok\""},
		{"[true]\n", -EBADMSG, "\"ok\""},
		{"hello\n", -EBADMSG, "answer"},
		{"\n", -EBADMSG, "empty"},
		{"{\"ok\":true,\"data\":{}} trailing\n", -EBADMSG, "not valid JSON"},
		{"{\"ok\":true,\"data\":{\n", -EBADMSG, "answer"},
	};

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct json_object *data = (struct json_object *) &data; /* must be overwritten */
		struct sm_error err = {""};
		int ret = sm_ctl_parse_response(cases[i].line, strlen(cases[i].line), &data, &err);

		if (ret != cases[i].want_ret)
			fail_msg("case %zu \"%s\": got %d, want %d (%s)", i, cases[i].line, ret,
				 cases[i].want_ret, err.msg);
		if (ret)
			ASSERT_EQ(data == NULL, 1, "no data on failure");
		if (cases[i].want_msg)
			ASSERT_HAS(err.msg, cases[i].want_msg, cases[i].line);
		json_object_put(data);
	}
}

/* ---- a fake daemon on a Unix socket in a temporary directory ---- */

struct fake_daemon {
	char dir[64];
	char path[96];
	int listen_fd;
	int stop_pipe[2]; /* closing [1] releases a held connection */
	pthread_t thread;
	/* what to do with the one connection it accepts */
	const char *reply; /* sent after the request line; NULL: nothing */
	size_t reply_len;  /* 0: strlen(reply) */
	size_t chunk;	   /* send in pieces this big (0: all at once) */
	bool hold;	   /* keep the connection open until released */
	bool no_read;	   /* answer at once, without reading the request, and close */
	/* what it saw */
	char request[256];
	int accepted;
};

/* Wait until fd has events, up to FAKE_WAIT_MS. 1 ready, 0 timeout or error. */
static int fake_wait(int fd, short events)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	return poll(&pfd, 1, FAKE_WAIT_MS) == 1;
}

static void *fake_daemon_run(void *arg)
{
	struct fake_daemon *f = arg;
	size_t len = 0, off = 0, total;
	ssize_t n;
	int fd;

	if (!fake_wait(f->listen_fd, POLLIN))
		return NULL;
	fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	f->accepted = 1;
	/* read the request line, bounded in size and time */
	while (!f->no_read && len < sizeof(f->request) - 1 && !memchr(f->request, '\n', len)) {
		if (!fake_wait(fd, POLLIN))
			break;
		n = recv(fd, f->request + len, sizeof(f->request) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t) n;
	}
	f->request[len] = '\0';
	if (f->reply) {
		total = f->reply_len ? f->reply_len : strlen(f->reply);
		while (off < total) {
			size_t piece = f->chunk && f->chunk < total - off ? f->chunk : total - off;

			n = send(fd, f->reply + off, piece, MSG_NOSIGNAL);
			if (n <= 0)
				break; /* the client gave up: expected in the oversize test */
			off += (size_t) n;
		}
	}
	if (f->hold)
		fake_wait(f->stop_pipe[0], POLLIN);
	close(fd);
	return NULL;
}

/* Bind (and, if listen_too, listen on) a socket in a fresh temp dir; start the thread. */
static void fake_daemon_setup(struct fake_daemon *f, bool listen_too)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	snprintf(f->dir, sizeof(f->dir), "/tmp/sockmesh-test-ctl-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/sockmesh.sock", f->dir);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *) &sun, sizeof(sun)), 0);
	assert_int_equal(pipe2(f->stop_pipe, O_CLOEXEC), 0);
	if (!listen_too)
		return;
	assert_int_equal(listen(f->listen_fd, 4), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_daemon_run, f), 0);
}

static void fake_daemon_teardown(struct fake_daemon *f, bool started)
{
	close(f->stop_pipe[1]);
	if (started)
		pthread_join(f->thread, NULL);
	close(f->stop_pipe[0]);
	close(f->listen_fd);
	unlink(f->path);
	rmdir(f->dir);
}

/* Run one exchange against a fake daemon answering reply; returns sm_ctl_request's result. */
static int exchange(struct fake_daemon *f, const char *cmd, int timeout_ms,
		    struct json_object **data, struct sm_error *err)
{
	int ret;

	fake_daemon_setup(f, true);
	ret = sm_ctl_request(f->path, cmd, timeout_ms, data, err);
	fake_daemon_teardown(f, true);
	return ret;
}

static void test_request_ok(void **state)
{
	struct fake_daemon f = {
		.reply = "{\"ok\":true,\"data\":{\"node\":\"n1\",\"pid\":42}}\nignored after "
			 "newline",
	};
	struct json_object *data = NULL, *v;
	struct sm_error err = {""};

	ASSERT_EQ(exchange(&f, "status", CLIENT_TIMEOUT_MS, &data, &err), 0, err.msg);
	ASSERT_EQ(f.accepted, 1, "daemon saw a connection");
	ASSERT_STR_EQ(f.request, "{\"cmd\":\"status\"}\n", "request line on the wire");
	assert_non_null(data);
	assert_true(json_object_object_get_ex(data, "node", &v));
	ASSERT_STR_EQ(json_object_get_string(v), "n1", "data.node");
	assert_true(json_object_object_get_ex(data, "pid", &v));
	ASSERT_EQ(json_object_get_int(v), 42, "data.pid");
	json_object_put(data);
}

static void test_request_ok_in_pieces(void **state)
{
	struct fake_daemon f = {
		.reply = "{\"ok\":true,\"data\":[{\"name\":\"orders\",\"port\":8080}]}\n",
		.chunk = 1,
	};
	struct json_object *data = NULL;
	struct sm_error err = {""};

	ASSERT_EQ(exchange(&f, "services", CLIENT_TIMEOUT_MS, &data, &err), 0, err.msg);
	ASSERT_STR_EQ(f.request, "{\"cmd\":\"services\"}\n", "request line on the wire");
	assert_non_null(data);
	ASSERT_EQ(json_object_array_length(data), 1, "one service");
	json_object_put(data);
}

static void test_request_daemon_error(void **state)
{
	struct fake_daemon f = {
		.reply = "{\"ok\":false,\"error\":\"unknown command 'bogus' (try: status, "
			 "workloads, services)\"}\n",
	};
	struct json_object *data = NULL;
	struct sm_error err = {""};

	ASSERT_EQ(exchange(&f, "bogus", CLIENT_TIMEOUT_MS, &data, &err), -EPROTO, err.msg);
	ASSERT_STR_EQ(err.msg, "unknown command 'bogus' (try: status, workloads, services)",
		      "daemon's message passed through verbatim");
	ASSERT_EQ(data == NULL, 1, "no data on error");
}

/*
 * A daemon that refuses a client (too many connected) answers before it
 * reads the request and closes: the client, still sending a request larger
 * than the socket takes, gets EPIPE, and must then show the daemon's answer.
 */
static void test_request_refused_before_reading(void **state)
{
	struct fake_daemon f = {
		.reply = "{\"ok\":false,\"error\":\"64 control clients are connected already\"}\n",
		.no_read = true,
	};
	struct json_object *args = json_object_new_object(), *data = NULL;
	size_t n = 4u << 20;
	struct sm_error err = {""};
	char *big = malloc(n + 1);
	int ret;

	assert_non_null(args);
	assert_non_null(big);
	memset(big, 'x', n);
	big[n] = '\0';
	json_object_object_add(args, "document", json_object_new_string(big));
	fake_daemon_setup(&f, true);
	ret = sm_ctl_request_args(f.path, "policy_apply", args, CLIENT_TIMEOUT_MS, &data, &err);
	fake_daemon_teardown(&f, true);
	ASSERT_EQ(ret, -EPROTO, err.msg);
	ASSERT_STR_EQ(err.msg, "64 control clients are connected already",
		      "the daemon's answer, not the broken pipe");
	json_object_put(args);
	free(big);
}

static void test_request_bad_answers(void **state)
{
	static const struct response_case cases[] = {
		{"garbage\n", -EBADMSG, "answer"},
		{"{\"ok\":\"yes\"}\n", -EBADMSG, "\"ok\""},
		{"{\"ok\":true,\"data\":{}}", -EBADMSG, "in the middle"}, /* no newline */
		{NULL, -EBADMSG, "without answering"},			  /* closes at once */
	};

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct fake_daemon f = {.reply = cases[i].line};
		struct json_object *data = NULL;
		struct sm_error err = {""};
		int ret = exchange(&f, "status", CLIENT_TIMEOUT_MS, &data, &err);

		if (ret != cases[i].want_ret)
			fail_msg("case %zu: got %d, want %d (%s)", i, ret, cases[i].want_ret,
				 err.msg);
		ASSERT_HAS(err.msg, cases[i].want_msg, "message");
		ASSERT_EQ(data == NULL, 1, "no data on failure");
	}
}

static void test_request_timeout(void **state)
{
	struct fake_daemon f = {.hold = true}; /* reads the request, never answers */
	struct json_object *data = NULL;
	struct sm_error err = {""};
	int ret;

	fake_daemon_setup(&f, true);
	ret = sm_ctl_request(f.path, "status", 200, &data, &err);
	fake_daemon_teardown(&f, true); /* releases the held connection */
	ASSERT_EQ(ret, -ETIMEDOUT, err.msg);
	ASSERT_HAS(err.msg, "timed out", "timeout message");
	ASSERT_HAS(err.msg, f.path, "timeout message names the socket");
	ASSERT_EQ(data == NULL, 1, "no data on timeout");
}

static void test_request_oversize(void **state)
{
	size_t n = SM_CTL_MAX_RESPONSE + 4096;
	char *big = malloc(n);
	struct fake_daemon f = {.reply = big, .reply_len = n, .hold = true};
	struct json_object *data = NULL;
	struct sm_error err = {""};

	assert_non_null(big);
	memset(big, ' ', n); /* blanks, never a newline */
	ASSERT_EQ(exchange(&f, "status", CLIENT_TIMEOUT_MS, &data, &err), -EMSGSIZE, err.msg);
	ASSERT_HAS(err.msg, "exceeds", "oversize message");
	free(big);
}

static void test_request_connect_errors(void **state)
{
	struct fake_daemon f = {0};
	struct json_object *data = NULL;
	struct sm_error err = {""};
	char path[256];
	int fd;

	/* no socket at all */
	fake_daemon_setup(&f, false);
	snprintf(path, sizeof(path), "%s/absent.sock", f.dir);
	ASSERT_EQ(sm_ctl_request(path, "status", 1000, &data, &err), -ENOENT, err.msg);
	ASSERT_HAS(err.msg, "cannot connect to ", "ENOENT message");
	ASSERT_HAS(err.msg, path, "ENOENT message names the socket");
	ASSERT_HAS(err.msg, "is sockmeshd running?", "ENOENT hint");
	ASSERT_HAS(err.msg, "--socket PATH", "ENOENT hint");

	/* a bound socket nobody listens on (a dead daemon's leftover) */
	ASSERT_EQ(sm_ctl_request(f.path, "status", 1000, &data, &err), -ECONNREFUSED, err.msg);
	ASSERT_HAS(err.msg, "is sockmeshd running?", "ECONNREFUSED hint");

	/* a regular file */
	snprintf(path, sizeof(path), "%s/file", f.dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	ASSERT_EQ(sm_ctl_request(path, "status", 1000, &data, &err), -ECONNREFUSED, err.msg);
	ASSERT_HAS(err.msg, "not a socket", "regular-file hint");
	unlink(path);

	/* a path that does not fit in sockaddr_un */
	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	ASSERT_EQ(sm_ctl_request(path, "status", 1000, &data, &err), -ENAMETOOLONG, err.msg);

	/* bad arguments */
	ASSERT_EQ(sm_ctl_request(f.path, "Status!", 1000, &data, &err), -EINVAL, "bad cmd");
	ASSERT_EQ(sm_ctl_request(f.path, "status", 0, &data, &err), -EINVAL, "zero timeout");
	ASSERT_EQ(sm_ctl_request("", "status", 1000, &data, &err), -EINVAL, "empty path");
	ASSERT_EQ(data == NULL, 1, "no data on failure");
	fake_daemon_teardown(&f, false);
}

/*
 * A socket its user may not open: mode 0 on a listening socket. root ignores
 * file modes, so as root the client runs in a child that became nobody.
 */
static void test_request_eacces(void **state)
{
	struct fake_daemon f = {0};
	struct json_object *data = NULL;
	struct sm_error err = {""};
	int status, ret;
	pid_t pid;

	fake_daemon_setup(&f, false);
	assert_int_equal(listen(f.listen_fd, 1), 0);
	assert_int_equal(chmod(f.path, 0), 0);
	if (geteuid() != 0) {
		ret = sm_ctl_request(f.path, "status", 1000, &data, &err);
		ASSERT_EQ(ret, -EACCES, err.msg);
		ASSERT_HAS(err.msg, "run as root", "EACCES hint");
		fake_daemon_teardown(&f, false);
		return;
	}
	/* the child needs to reach the socket through the temp dir */
	assert_int_equal(chmod(f.dir, 0711), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(10);
		ret = sm_ctl_request(f.path, "status", 1000, &data, &err);
		if (ret != -EACCES)
			_exit(11);
		_exit(strstr(err.msg, "(run as root: the socket is 0600)") ? 0 : 12);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	fake_daemon_teardown(&f, false);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("EACCES check in a child as nobody: status %d (10 setuid, 11 not EACCES, "
			 "12 message lacks the hint)",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ---- tables ---- */

/* Render t into a malloc'ed string. */
static char *render(const struct sm_table *t)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	ASSERT_EQ(sm_table_print(t, out), 0, "table print");
	fclose(out);
	return buf;
}

static void test_table_alignment(void **state)
{
	static const struct sm_table_col cols[] = {
		{"NAME", false},
		{"COUNT", true},
		{"NOTE", false},
	};
	struct sm_table *t = sm_table_new(cols, SM_ARRAY_SIZE(cols));
	char *s;

	assert_non_null(t);
	ASSERT_EQ(sm_table_row(t), 0, "row 1");
	ASSERT_EQ(sm_table_cell(t, "%s", "a"), 0, "cell");
	ASSERT_EQ(sm_table_cell(t, "%d", 5), 0, "cell");
	ASSERT_EQ(sm_table_cell(t, "%s", "x"), 0, "cell");
	ASSERT_EQ(sm_table_cell(t, "%s", "too many"), -E2BIG, "fourth cell in a 3-column row");
	ASSERT_EQ(sm_table_row(t), 0, "row 2");
	ASSERT_EQ(sm_table_cell(t, "%s", "longer"), 0, "cell");
	ASSERT_EQ(sm_table_cell(t, "%d", 12345), 0, "cell");
	ASSERT_EQ(sm_table_cell(t, "%s", ""), 0, "cell");
	ASSERT_EQ(sm_table_row(t), 0, "row 3 (short)");
	ASSERT_EQ(sm_table_cell(t, "%s", "b"), 0, "cell");
	ASSERT_EQ(sm_table_rows(t), 3, "rows");
	s = render(t);
	ASSERT_STR_EQ(s,
		      "NAME    COUNT  NOTE\n"
		      "a           5  x\n"
		      "longer  12345\n"
		      "b\n",
		      "widths from content, numbers right, no trailing blanks");
	free(s);
	sm_table_free(t);
}

static void test_table_right_last_utf8_control(void **state)
{
	static const struct sm_table_col cols[] = {{"N", false}, {"VALUE", true}};
	struct sm_table *t = sm_table_new(cols, SM_ARRAY_SIZE(cols));
	char *s;

	assert_non_null(t);
	ASSERT_EQ(sm_table_cell(t, "x"), -EINVAL, "cell before any row");
	ASSERT_EQ(sm_table_row(t), 0, "row");
	ASSERT_EQ(sm_table_cell(t, "%s", "h\xc3\xa9llo"), 0, "utf-8 cell");
	ASSERT_EQ(sm_table_cell(t, "%d", 7), 0, "cell");
	ASSERT_EQ(sm_table_row(t), 0, "row");
	ASSERT_EQ(sm_table_cell(t, "%s", "a\tb\x1b[2J"), 0, "control characters");
	ASSERT_EQ(sm_table_cell(t, "%d", 1234567), 0, "cell");
	s = render(t);
	ASSERT_STR_EQ(s,
		      "N          VALUE\n"
		      "h\xc3\xa9llo          7\n"
		      "a?b?[2J  1234567\n",
		      "utf-8 width in characters, control bytes shown as '?', right column padded");
	free(s);
	sm_table_free(t);

	ASSERT_EQ(sm_table_new(cols, 0) == NULL, 1, "zero columns refused");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_request_table),
		cmocka_unit_test(test_parse_request_args_nul),
		cmocka_unit_test(test_parse_request_limits),
		cmocka_unit_test(test_format_response),
		cmocka_unit_test(test_format_response_utf8),
		cmocka_unit_test(test_parse_response_table),
		cmocka_unit_test(test_request_ok),
		cmocka_unit_test(test_request_ok_in_pieces),
		cmocka_unit_test(test_request_daemon_error),
		cmocka_unit_test(test_request_refused_before_reading),
		cmocka_unit_test(test_request_bad_answers),
		cmocka_unit_test(test_request_timeout),
		cmocka_unit_test(test_request_oversize),
		cmocka_unit_test(test_request_connect_errors),
		cmocka_unit_test(test_request_eacces),
		cmocka_unit_test(test_table_alignment),
		cmocka_unit_test(test_table_right_last_utf8_control),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
