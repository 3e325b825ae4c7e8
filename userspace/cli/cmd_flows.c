// SPDX-License-Identifier: Apache-2.0
/* `sockmesh flows`: recent and live flow records from the node's daemon, filtered there. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "ctl.h"
#include "flow_record.h"
#include "flowfilter.h"
#include "flowfmt.h"
#include "util.h"

#define FLOWS_MAX_FILTERS 64	     /* --filter options (the daemon takes as many) */
#define FLOWS_MAX_LINE	  (1u << 20) /* longest line the stream may send */
#define FLOWS_MAX_LAST	  1000000000ULL

enum flows_fmt {
	FLOWS_COMPACT,
	FLOWS_JSON,
	FLOWS_VPC,
};

enum {
	F_LAST = CLI_KEY_OWN,
	F_SINCE,
	F_FILTER,
	F_FORMAT,
	F_TERM, /* F_TERM + i: the filter flag of term i */
};

/*
 * Filter flags: X(id, option, flowfilter key (flowfilter.h), value, help). A
 * flag is one term of every filter sent.
 */
#define FLOWS_TERMS(X)                                                                             \
	X(T_TYPE, "type", "type", "TYPE", "conn_start, conn_update, conn_end, denied, lost")       \
	X(T_VERDICT, "verdict", "verdict", "V", "FORWARDED, DROPPED, AUDIT")                       \
	X(T_DROP_REASON, "drop-reason", "drop_reason", "R",                                        \
	  "e.g. policy_default_deny, unknown_ca")                                                  \
	X(T_IDENTITY, "identity", "identity", "ID",                                                \
	  "either end: a SPIFFE ID, a pattern\nspiffe://td/ns/prod/* or an identity number")       \
	X(T_FROM_IDENTITY, "from-identity", "from-identity", "ID", "the source's, as --identity")  \
	X(T_TO_IDENTITY, "to-identity", "to-identity", "ID", "the destination's, as --identity")   \
	X(T_WORKLOAD, "workload", "workload", "NAME", "either end: a workload of the catalog")     \
	X(T_FROM_WORKLOAD, "from-workload", "from-workload", "NAME", "the source")                 \
	X(T_TO_WORKLOAD, "to-workload", "to-workload", "NAME", "the destination")                  \
	X(T_IP, "ip", "ip", "ADDR|CIDR", "either end")                                             \
	X(T_FROM_IP, "from-ip", "from-ip", "ADDR|CIDR", "the source")                              \
	X(T_TO_IP, "to-ip", "to-ip", "ADDR|CIDR", "the destination")                               \
	X(T_PORT, "port", "port", "N|A-B", "either end")                                           \
	X(T_FROM_PORT, "from-port", "from-port", "N|A-B", "the source")                            \
	X(T_TO_PORT, "to-port", "to-port", "N|A-B", "the destination")                             \
	X(T_NODE, "node", "node", "NAME", "the reporting node")

#define TERM_ID(id, option, key, arg, help) id,
enum { FLOWS_TERMS(TERM_ID) NTERMS };
#undef TERM_ID

/* Filter flags: the option and the flowfilter key it becomes. */
#define TERM_FLAG(id, option, key, arg, help) {option, key},
static const struct {
	const char *option;
	const char *key;
} term_flags[] = {FLOWS_TERMS(TERM_FLAG)};
#undef TERM_FLAG

struct flows_args {
	bool follow;
	int64_t last; /* -1: not given */
	const char *since;
	int64_t since_ns;
	char *terms[NTERMS]; /* "key=v1|v2", NULL when the flag was not given */
	const char *filters[FLOWS_MAX_FILTERS];
	size_t nfilters;
	enum flows_fmt fmt;
};

static volatile sig_atomic_t flows_interrupted;

static void on_signal(int sig)
{
	(void) sig;
	flows_interrupted = 1;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A filter flag's value: one more alternative for its term. 0 or an exit code. */
static int add_term(struct flows_args *a, size_t i, const char *value)
{
	struct sm_flowfilter *f = NULL;
	struct sm_error err = {""};
	char *term;
	int n;

	if (!*value || value[strcspn(value, " \t\n")]) {
		cli_error(
			"--%s '%s': expected a value without spaces (see 'sockmesh flows --help')",
			term_flags[i].option, value);
		return CLI_EXIT_USAGE;
	}
	n = a->terms[i] ? asprintf(&term, "%s|%s", a->terms[i], value)
			: asprintf(&term, "%s=%s", term_flags[i].key, value);
	if (n < 0) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	free(a->terms[i]);
	a->terms[i] = term;
	/* check it alone, so the message names the flag */
	if (sm_flowfilter_parse(term, &f, &err)) {
		cli_error("--%s: %s", term_flags[i].option, err.msg);
		return CLI_EXIT_USAGE;
	}
	sm_flowfilter_free(f);
	return 0;
}

/*
 * The filters to send: each --filter with the flags' terms added, or the
 * flags' terms alone; none at all matches everything. Each is checked here
 * so that a mistake is a usage error with flowfilter's message.
 */
static int build_filters(const struct flows_args *a, struct json_object *arr)
{
	char flags[4096] = "";
	size_t used = 0;

	for (size_t i = 0; i < NTERMS; i++) {
		int n;

		if (!a->terms[i])
			continue;
		n = snprintf(flags + used, sizeof(flags) - used, "%s%s", used ? " " : "",
			     a->terms[i]);
		if (n < 0 || (size_t) n >= sizeof(flags) - used) {
			cli_error("the filter flags are too long together (at most %zu bytes)",
				  sizeof(flags) - 1);
			return CLI_EXIT_USAGE;
		}
		used += (size_t) n;
	}
	for (size_t i = 0; i < (a->nfilters ? a->nfilters : 1); i++) {
		struct sm_flowfilter *f = NULL;
		struct sm_error err = {""};
		char *text;

		if (!a->nfilters && !used)
			break; /* no filter: everything */
		if (asprintf(&text, "%s%s%s", a->nfilters ? a->filters[i] : "",
			     a->nfilters && used ? " " : "", flags) < 0) {
			cli_error("out of memory");
			return CLI_EXIT_FAIL;
		}
		if (sm_flowfilter_parse(text, &f, &err)) {
			if (a->nfilters)
				cli_error("--filter '%s': %s", a->filters[i], err.msg);
			else
				cli_error("%s", err.msg);
			free(text);
			return CLI_EXIT_USAGE;
		}
		sm_flowfilter_free(f);
		json_object_array_add(arr, json_object_new_string(text));
		free(text);
	}
	return 0;
}

static const char *const flows_format_names[] = {"compact", "table", "json", "vpc", NULL};

static const struct cli_formats flows_formats = {
	.names = flows_format_names,
	.hint = "compact, json or vpc",
	.help = "compact (default; table is the same): one line\nper record, like `hubble "
		"observe`; "
		"json: the\nrecords' JSON lines as the daemon wrote them\n(docs/flow-schema.md); "
		"vpc: AWS VPC flow log\nversion 2 lines, with a header",
};

static int flows_parse(struct cli_opts *o, void *cfg, int key, const char *value)
{
	struct flows_args *a = cfg;
	struct timespec now;
	uint64_t v;
	int ret;

	switch (key) {
	case 'f':
		a->follow = true;
		break;
	case F_LAST:
		if (sm_parse_u64(value, 0, FLOWS_MAX_LAST, &v)) {
			cli_error("--last '%s': expected a number of records, 0..%llu", value,
				  FLOWS_MAX_LAST);
			return CLI_EXIT_USAGE;
		}
		a->last = (int64_t) v;
		break;
	case F_SINCE:
		clock_gettime(CLOCK_REALTIME, &now);
		ret = sm_flowfmt_parse_since(
			value, (int64_t) now.tv_sec * 1000000000LL + now.tv_nsec, &a->since_ns);
		if (ret) {
			cli_error("--since '%s': expected an RFC 3339 time "
				  "(2026-11-29T20:01:02Z) or a duration before now "
				  "(30s, 5m, 1h, 1h30m, 2d)%s",
				  value, ret == -ERANGE ? "; this one reaches before 1970" : "");
			return CLI_EXIT_USAGE;
		}
		a->since = value;
		break;
	case F_FILTER:
		if (a->nfilters == FLOWS_MAX_FILTERS) {
			cli_error("at most %d --filter options", FLOWS_MAX_FILTERS);
			return CLI_EXIT_USAGE;
		}
		a->filters[a->nfilters++] = value;
		break;
	case F_FORMAT:
		return cli_set_format(o, &flows_formats, value); /* the same as -o */
	default:
		if (key < F_TERM || key >= F_TERM + (int) NTERMS)
			return CLI_EXIT_USAGE; /* only the keys of flows_options come here */
		return add_term(a, (size_t) (key - F_TERM), value);
	}
	return 0;
}

/* ---- the connection ---- */

/* Connected stream socket to the daemon, or -1 after a message. */
static int flows_connect(const char *path, int64_t deadline)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, e;

	if (sm_strlcpy(sun.sun_path, path, sizeof(sun.sun_path))) {
		cli_error("cannot connect to %s: path longer than %zu bytes (use a shorter "
			  "--socket PATH)",
			  path, sizeof(sun.sun_path) - 1);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		cli_error("cannot create a Unix socket: %s", strerror(errno));
		return -1;
	}
	/* EAGAIN: the daemon's accept backlog is full; it answers soon or never */
	while (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
		e = errno;
		if (e == EINTR)
			continue;
		if (e == EAGAIN && mono_ms() < deadline) {
			poll(NULL, 0, 10);
			continue;
		}
		close(fd);
		cli_error("cannot connect to %s: %s%s", path, strerror(e),
			  e == ENOENT	? " (is sockmeshd running? pass --socket PATH for another "
					  "node)"
			  : e == EACCES ? " (run as root: the socket is 0600)"
			  : e == EAGAIN ? " (the daemon is not accepting; try again)"
			  : e == ECONNREFUSED ? " (nobody listens there: is sockmeshd running?)"
					      : "");
		return -1;
	}
	return fd;
}

/*
 * SIGINT and SIGTERM are blocked but while flows_wait() sleeps in ppoll(),
 * which takes this mask: a signal that comes between the flag's check and
 * the wait would otherwise be noticed only when the wait ends (never, when
 * following a quiet stream).
 */
static sigset_t flows_waitmask;

/*
 * SIGINT or SIGTERM pending (blocked). ppoll() delivers a pending signal only
 * when it has to sleep: when fd is ready at once it returns that, and the
 * signal stays pending. A follower behind a busy stream always finds records
 * waiting, so without this look it would never see ^C.
 */
static bool interrupt_pending(void)
{
	sigset_t pending;

	if (sigpending(&pending))
		return false;
	return sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1;
}

/* Wait for fd to be ready for events until deadline (-1: forever). 1 ready, 0 timeout, -1 signal.
 */
static int flows_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	for (;;) {
		int64_t left = deadline < 0 ? -1 : deadline - mono_ms();
		struct timespec ts;
		int n;

		if (flows_interrupted)
			return -1;
		if (deadline >= 0 && left <= 0)
			return 0;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		n = ppoll(&pfd, 1, left < 0 ? NULL : &ts, &flows_waitmask);
		if (n > 0 && interrupt_pending()) {
			flows_interrupted = 1;
			return -1;
		}
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return 1; /* let the read or write report it */
	}
}

static int send_request(int fd, const char *path, const char *req, int64_t deadline)
{
	size_t len = strlen(req), off = 0;

	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t) n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && flows_wait(fd, POLLOUT, deadline) > 0)
			continue;
		cli_error("cannot send the request to %s: %s", path,
			  n < 0 && errno != EAGAIN ? strerror(errno) : "timed out");
		return CLI_EXIT_FAIL;
	}
	return 0;
}

/* What came, for the checks at the end. */
struct flows_state {
	const struct cli_opts *o;
	const struct flows_args *a;
	bool have_header;
	uint64_t history; /* records the header promised (one-shot) */
	uint64_t records, skipped, unreadable;
};

static void print_header_info(const struct flows_state *st, struct json_object *data)
{
	const char *oldest = cli_json_str(data, "oldest");
	int64_t size = 0, buffered = 0;

	cli_json_i64(data, "ring_size", &size);
	cli_json_i64(data, "buffered", &buffered);
	fprintf(stderr,
		"sockmesh: %s keeps %lld of at most %lld records in memory%s%s; %llu of them "
		"match%s\n",
		cli_json_text(data, "node", NULL, 0), (long long) buffered, (long long) size,
		oldest ? ", since " : "", oldest ? oldest : "", (unsigned long long) st->history,
		st->a->follow ? ", then new ones as they come" : "");
}

/* The first line: {"ok":true,"data":{...}} or the daemon's refusal. */
static int handle_header(struct flows_state *st, const char *line, size_t len)
{
	struct json_object *data = NULL;
	struct sm_error err = {""};
	int64_t v = 0;
	int ret = sm_ctl_parse_response(line, len, &data, &err);

	if (ret == -EPROTO) {
		cli_error("sockmeshd at %s: %s", st->o->socket, err.msg);
		return CLI_EXIT_FAIL;
	}
	if (ret || !cli_json_i64(data, "history", &v) || v < 0) {
		json_object_put(data);
		return cli_bad_answer(st->o, "flows", ret ? err.msg : "no \"history\" count");
	}
	st->history = (uint64_t) v;
	st->have_header = true;
	if (st->o->verbose)
		print_header_info(st, data);
	json_object_put(data);
	if (st->a->fmt == FLOWS_VPC)
		puts(SM_FLOWFMT_VPC_HEADER);
	return 0;
}

/* One line after the header (NUL-terminated, no newline). */
static void handle_line(struct flows_state *st, char *line)
{
	char text[SM_FLOWFMT_MAX];
	struct sm_flow_skipped s;
	struct sm_flow_record r;
	bool notice =
		strncmp(line, "{\"skipped\":", 11) == 0 && sm_flow_skipped_decode(line, &s) == 0;

	if (notice)
		st->skipped += s.count;
	else
		st->records++;
	if (st->a->fmt == FLOWS_JSON) {
		puts(line); /* as the daemon wrote it, notices included */
		return;
	}
	if (notice) {
		if (st->a->fmt == FLOWS_VPC)
			sm_flowfmt_vpc_skipped(&s, text, sizeof(text));
		else
			sm_flowfmt_compact_skipped(&s, text, sizeof(text));
	} else if (sm_flow_record_decode(line, &r) == 0) {
		if (st->a->fmt == FLOWS_VPC)
			sm_flowfmt_vpc(&r, text, sizeof(text));
		else
			sm_flowfmt_compact(&r, text, sizeof(text));
	} else {
		st->unreadable++;
		return;
	}
	fputs(text, stdout);
	if (st->a->fmt == FLOWS_COMPACT)
		putchar('\n');
}

/* Read the header, then lines until EOF (or, following, a signal). An exit code. */
static int read_stream(struct flows_state *st, int fd, int64_t header_deadline)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap), *nl;
	int ret = CLI_EXIT_OK;

	if (!buf) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	for (;;) {
		int64_t deadline = !st->have_header ? header_deadline
				   : st->a->follow  ? -1
						    : mono_ms() + st->o->timeout_ms;
		int w = flows_wait(fd, POLLIN, deadline);
		size_t start = 0;
		ssize_t n;

		if (w < 0)
			break; /* interrupted: a normal end for a follower */
		if (w == 0) {
			cli_error("timed out waiting for %s from %s (daemon hung? raise --timeout)",
				  st->have_header ? "records" : "the answer", st->o->socket);
			ret = CLI_EXIT_FAIL;
			break;
		}
		if (len + 1 >= cap) { /* room for at least one byte and the NUL */
			char *grown;

			if (cap >= FLOWS_MAX_LINE) {
				cli_error("a line from %s is longer than %u bytes", st->o->socket,
					  FLOWS_MAX_LINE);
				ret = CLI_EXIT_FAIL;
				break;
			}
			grown = realloc(buf, cap * 2);
			if (!grown) {
				cli_error("out of memory");
				ret = CLI_EXIT_FAIL;
				break;
			}
			buf = grown;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			if (n < 0)
				cli_error("cannot read from %s: %s", st->o->socket,
					  strerror(errno));
			else if (!st->have_header)
				cli_error("%s closed the connection without answering (daemon "
					  "crashed or restarting? check its log)",
					  st->o->socket);
			else if (st->a->follow)
				cli_error("sockmeshd at %s ended the stream (it stopped or "
					  "restarted)",
					  st->o->socket);
			else if (len)
				cli_error("the stream from %s ended in the middle of a line",
					  st->o->socket);
			else if (st->records + st->skipped < st->history)
				cli_error("the stream from %s ended after %llu of %llu records "
					  "(did the daemon stop?)",
					  st->o->socket,
					  (unsigned long long) st->records + st->skipped,
					  (unsigned long long) st->history);
			else
				break; /* complete */
			ret = CLI_EXIT_FAIL;
			break;
		}
		len += (size_t) n;
		buf[len] = '\0';
		while ((nl = memchr(buf + start, '\n', len - start))) {
			*nl = '\0';
			if (!st->have_header) {
				ret = handle_header(st, buf + start, (size_t) (nl - buf - start));
				if (ret)
					goto out;
			} else {
				handle_line(st, buf + start);
			}
			start = (size_t) (nl - buf) + 1;
		}
		memmove(buf, buf + start, len - start);
		len -= start;
		if (fflush(stdout) != 0) {
			cli_error("cannot write the output: %s", strerror(errno));
			ret = CLI_EXIT_FAIL;
			break;
		}
	}
out:
	free(buf);
	return ret;
}

static int run_flows(const struct cli_opts *o, const struct flows_args *a)
{
	struct json_object *req = json_object_new_object(), *args = json_object_new_object(),
			   *filters = json_object_new_array();
	struct flows_state st = {.o = o, .a = a};
	struct sigaction sa = {.sa_handler = on_signal};
	int64_t deadline = mono_ms() + o->timeout_ms;
	sigset_t blocked;
	char when[40];
	const char *text;
	char *reqline;
	int fd, ret;

	if (!req || !args || !filters) {
		json_object_put(req);
		json_object_put(args);
		json_object_put(filters);
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	json_object_object_add(req, "cmd", json_object_new_string("flows"));
	json_object_object_add(req, "args", args);
	json_object_object_add(args, "follow", json_object_new_boolean(a->follow));
	if (a->last >= 0)
		json_object_object_add(args, "last", json_object_new_int64(a->last));
	if (a->since)
		json_object_object_add(
			args, "since",
			json_object_new_string(sm_format_time_ns(a->since_ns, when, sizeof(when))));
	json_object_object_add(args, "filters", filters);
	ret = build_filters(a, filters);
	if (ret) {
		json_object_put(req);
		return ret;
	}
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text || asprintf(&reqline, "%s\n", text) < 0) {
		json_object_put(req);
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	json_object_put(req);

	/* a follower ends with ^C or SIGTERM: that is its normal end, exit 0 */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigprocmask(SIG_BLOCK, &blocked, &flows_waitmask); /* delivered in ppoll() only */
	sigdelset(&flows_waitmask, SIGINT);
	sigdelset(&flows_waitmask, SIGTERM);
	fd = flows_connect(o->socket, deadline);
	if (fd < 0) {
		free(reqline);
		return CLI_EXIT_FAIL;
	}
	ret = send_request(fd, o->socket, reqline, deadline);
	free(reqline);
	if (!ret)
		ret = read_stream(&st, fd, deadline);
	close(fd);
	if (st.unreadable)
		cli_error("%llu lines were not flow records this sockmesh can read (a newer "
			  "sockmeshd? -o json shows them as they are)",
			  (unsigned long long) st.unreadable);
	if (flows_interrupted && !st.have_header && ret == CLI_EXIT_OK)
		ret = CLI_EXIT_FAIL; /* interrupted before the daemon answered */
	return ret;
}

static int flows_run(const struct cli_cmd *cmd, struct cli_opts *o, void *cfg, int argc,
		     char **argv)
{
	struct flows_args *a = cfg;

	if (argc > 0) {
		cli_error("flows takes no arguments, got '%s' (filters are flags: see 'sockmesh "
			  "flows --help')",
			  argv[0]);
		return CLI_EXIT_USAGE;
	}
	/* -o or --format after the command, else -o json before it */
	if (o->format && strcmp(o->format, "json") == 0)
		a->fmt = FLOWS_JSON;
	else if (o->format && strcmp(o->format, "vpc") == 0)
		a->fmt = FLOWS_VPC;
	else if (o->format)
		a->fmt = FLOWS_COMPACT;
	else
		a->fmt = o->output == CLI_OUT_JSON ? FLOWS_JSON : FLOWS_COMPACT;
	return run_flows(o, a);
}

static void flows_init(void *cfg)
{
	struct flows_args *a = cfg;

	a->last = -1;
}

static void flows_free(void *cfg)
{
	struct flows_args *a = cfg;

	for (size_t i = 0; i < NTERMS; i++)
		free(a->terms[i]);
}

#define TERM_OPT(id, option, key, arg, help) {option, F_TERM + id, arg, help},
static const struct cli_opt flows_options[] = {
	{"follow", 'f', NULL, "keep printing new records until interrupted"},
	{"last", F_LAST, "N",
	 "only the last N matching records from memory\n(without --follow the default is all "
	 "of them,\nwith --follow none)"},
	{"since", F_SINCE, "T",
	 "only records from T on: RFC 3339\n(2026-11-29T20:01:02Z) or a duration before "
	 "now\n(30s, 5m, 1h, 1h30m, 2d)"},
	FLOWS_TERMS(TERM_OPT){"filter", F_FILTER, "EXPR",
			      "a whole filter, KEY=VALUE terms separated by\nspaces (keys as "
			      "the flags, plus direction and\ntrace_id); repeat it for filters "
			      "any of which\nmay match; the flags are added to each"},
	{"format", F_FORMAT, "FMT", "the same as -o"},
	{NULL, 0, NULL, NULL},
};
#undef TERM_OPT

const struct cli_cmd cli_flows_cmd = {
	.name = "flows",
	.synopsis = "[--follow] [--last N] [--since T] [FILTER FLAGS] [--filter EXPR]...",
	.summary = "recent and live flow records, filtered (--follow)",
	.help = "Flow records from the node's daemon: the recent ones it keeps in memory\n"
		"(flowlog.ring_size, default 4096), and with --follow the new ones as they\n"
		"happen. The daemon filters them; nothing that does not match is sent.\n"
		"\n"
		"Each filter flag is one term and all terms must hold; a VALUE may list\n"
		"alternatives as A|B, and a flag given twice adds alternatives.\n"
		"\n"
		"--timeout bounds connecting and every wait for data, except while following;\n"
		"-v says on stderr what the daemon's memory holds. A reader that cannot keep\n"
		"up with --follow is never allowed to slow the daemon: what it missed is\n"
		"counted and shown in its place (SKIPPED, or a SKIPDATA line).\n",
	.examples = "sockmesh flows --last 20\n"
		    "sockmesh flows -f --verdict DROPPED\n"
		    "sockmesh flows -f --from-workload api --to-port 8080 -o json\n"
		    "sockmesh flows --since 10m --to-identity 'spiffe://example.org/ns/prod/*'\n"
		    "sockmesh flows --ip 10.0.0.0/8 --type conn_end --format vpc\n"
		    "sockmesh flows --filter 'verdict=DROPPED' --filter 'verdict=AUDIT' --node "
		    "node1\n",
	.options = flows_options,
	.globals = CLI_G_SOCKET | CLI_G_OUTPUT | CLI_G_VERBOSE | CLI_G_TIMEOUT | CLI_G_HELP,
	.formats = &flows_formats,
	.exits = CLI_EXITS_COMMON,
	.exit_notes = "With --follow, ^C or SIGTERM ends it with 0. 1 also when the stream ends\n"
		      "early: a follower's daemon stopped, or a one-shot stream brought fewer\n"
		      "records than announced. A bad filter, --since or --last is a usage error.\n",
	.cfg_size = sizeof(struct flows_args),
	.cfg_init = flows_init,
	.cfg_free = flows_free,
	.parse = flows_parse,
	.run = flows_run,
};
