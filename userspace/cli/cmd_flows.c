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

static const char flows_help[] =
	"Usage: sockmesh flows [OPTIONS]\n"
	"\n"
	"Flow records from the node's daemon: the recent ones it keeps in memory\n"
	"(flowlog.ring_size, default 4096), and with --follow the new ones as they\n"
	"happen. The daemon filters them; nothing that does not match is sent.\n"
	"\n"
	"What to show:\n"
	"  -f, --follow              keep printing new records until interrupted\n"
	"      --last N              only the last N matching records from memory (without\n"
	"                            --follow the default is all of them, with --follow none)\n"
	"      --since T             only records from T on: RFC 3339 (2026-11-29T20:01:02Z)\n"
	"                            or a duration before now (30s, 5m, 1h, 1h30m, 2d)\n"
	"\n"
	"Filters (each flag is one term, all terms must hold; VALUE may list\n"
	"alternatives as A|B, and a flag given twice adds alternatives):\n"
	"      --type TYPE           conn_start, conn_update, conn_end, denied, lost\n"
	"      --verdict V           FORWARDED, DROPPED, AUDIT\n"
	"      --drop-reason R       e.g. policy_default_deny, unknown_ca\n"
	"      --identity ID         either end: a SPIFFE ID, a pattern spiffe://td/ns/prod/*\n"
	"                            or an identity number; --from-identity: the source,\n"
	"                            --to-identity: the destination\n"
	"      --workload NAME       either end; --from-workload, --to-workload\n"
	"      --ip ADDR|CIDR        either end; --from-ip, --to-ip\n"
	"      --port N|A-B          either end; --from-port, --to-port\n"
	"      --node NAME           the reporting node\n"
	"      --filter EXPR         a whole filter, KEY=VALUE terms separated by spaces\n"
	"                            (keys as above, plus direction and trace_id); repeat it\n"
	"                            for filters any of which may match; the flags above\n"
	"                            are added to each\n"
	"\n"
	"Output:\n"
	"  -o, --output FMT          compact (default): one line per record, like\n"
	"                            `hubble observe`: time, node, source, destination,\n"
	"                            verdict, drop reason or type, direction, bytes\n"
	"                            source->destination/back;\n"
	"                            json: the records' JSON lines exactly as the daemon\n"
	"                            wrote them (docs/flow-schema.md);\n"
	"                            vpc: AWS VPC flow log version 2 lines, with a header\n"
	"      --format FMT          the same as -o\n"
	"  -S, --socket PATH         control socket (default $" SM_CTL_SOCKET_ENV " or\n"
	"                            " SM_CTL_DEFAULT_SOCKET ")\n"
	"      --timeout MS          give up when the daemon is silent this long, except\n"
	"                            while following (1..600000, default 5000)\n"
	"  -v, --verbose             say on stderr what the daemon's memory holds\n"
	"  -h, --help                this text\n"
	"\n"
	"A reader that cannot keep up with --follow is never allowed to slow the daemon:\n"
	"what it missed is counted and shown in its place (SKIPPED, or a SKIPDATA line).\n"
	"\n"
	"Exit status: 0 done (with --follow: interrupted); 1 the daemon is unreachable,\n"
	"refused, or ended the stream early; 2 bad usage or a bad filter.\n"
	"\n"
	"Examples:\n"
	"  sockmesh flows --last 20\n"
	"  sockmesh flows -f --verdict DROPPED\n"
	"  sockmesh flows -f --from-workload api --to-port 8080 -o json\n"
	"  sockmesh flows --since 10m --to-identity 'spiffe://example.org/ns/prod/*'\n"
	"  sockmesh flows --ip 10.0.0.0/8 --type conn_end --format vpc\n"
	"  sockmesh flows --filter 'verdict=DROPPED' --filter 'verdict=AUDIT' --node node1\n";

enum flows_fmt {
	FLOWS_COMPACT,
	FLOWS_JSON,
	FLOWS_VPC,
};

enum {
	F_LAST = 0x300,
	F_SINCE,
	F_FILTER,
	F_FORMAT,
	F_TIMEOUT,
	F_TERM, /* F_TERM + i: the filter flag term_flags[i] */
};

/* Filter flags: the option and the flowfilter key it becomes (flowfilter.h). */
static const struct {
	const char *option;
	const char *key;
} term_flags[] = {
	{"type", "type"},
	{"verdict", "verdict"},
	{"drop-reason", "drop_reason"},
	{"identity", "identity"},
	{"from-identity", "from-identity"},
	{"to-identity", "to-identity"},
	{"workload", "workload"},
	{"from-workload", "from-workload"},
	{"to-workload", "to-workload"},
	{"ip", "ip"},
	{"from-ip", "from-ip"},
	{"to-ip", "to-ip"},
	{"port", "port"},
	{"from-port", "from-port"},
	{"to-port", "to-port"},
	{"node", "node"},
};

#define NTERMS SM_ARRAY_SIZE(term_flags)

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

static int parse_format(const char *v, struct flows_args *a)
{
	if (strcmp(v, "compact") == 0 || strcmp(v, "table") == 0) {
		a->fmt = FLOWS_COMPACT;
	} else if (strcmp(v, "json") == 0) {
		a->fmt = FLOWS_JSON;
	} else if (strcmp(v, "vpc") == 0) {
		a->fmt = FLOWS_VPC;
	} else {
		cli_error("unknown output format '%s' (compact, json or vpc)", v);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

static int parse_flows_args(struct cli_opts *o, int argc, char **argv, struct flows_args *a,
			    bool *help)
{
	static struct option opts[NTERMS + 12];
	struct timespec now;
	size_t n = 0;
	uint64_t v;
	int c, ret;

	if (!opts[0].name) {
		opts[n++] = (struct option){"follow", no_argument, NULL, 'f'};
		opts[n++] = (struct option){"last", required_argument, NULL, F_LAST};
		opts[n++] = (struct option){"since", required_argument, NULL, F_SINCE};
		opts[n++] = (struct option){"filter", required_argument, NULL, F_FILTER};
		opts[n++] = (struct option){"output", required_argument, NULL, 'o'};
		opts[n++] = (struct option){"format", required_argument, NULL, F_FORMAT};
		opts[n++] = (struct option){"socket", required_argument, NULL, 'S'};
		opts[n++] = (struct option){"timeout", required_argument, NULL, F_TIMEOUT};
		opts[n++] = (struct option){"verbose", no_argument, NULL, 'v'};
		opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
		for (size_t i = 0; i < NTERMS; i++)
			opts[n++] = (struct option){term_flags[i].option, required_argument, NULL,
						    F_TERM + (int) i};
	}
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":fo:S:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			a->follow = true;
			break;
		case F_LAST:
			if (sm_parse_u64(optarg, 0, FLOWS_MAX_LAST, &v)) {
				cli_error("--last '%s': expected a number of records, 0..%llu",
					  optarg, FLOWS_MAX_LAST);
				return CLI_EXIT_USAGE;
			}
			a->last = (int64_t) v;
			break;
		case F_SINCE:
			clock_gettime(CLOCK_REALTIME, &now);
			ret = sm_flowfmt_parse_since(
				optarg, (int64_t) now.tv_sec * 1000000000LL + now.tv_nsec,
				&a->since_ns);
			if (ret) {
				cli_error("--since '%s': expected an RFC 3339 time "
					  "(2026-11-29T20:01:02Z) or a duration before now "
					  "(30s, 5m, 1h, 1h30m, 2d)%s",
					  optarg,
					  ret == -ERANGE ? "; this one reaches before 1970" : "");
				return CLI_EXIT_USAGE;
			}
			a->since = optarg;
			break;
		case F_FILTER:
			if (a->nfilters == FLOWS_MAX_FILTERS) {
				cli_error("at most %d --filter options", FLOWS_MAX_FILTERS);
				return CLI_EXIT_USAGE;
			}
			a->filters[a->nfilters++] = optarg;
			break;
		case 'o':
		case F_FORMAT:
			ret = parse_format(optarg, a);
			if (ret)
				return ret;
			break;
		case 'S':
			if (!*optarg) {
				cli_error("--socket needs a path (see 'sockmesh flows --help')");
				return CLI_EXIT_USAGE;
			}
			o->socket = optarg;
			break;
		case F_TIMEOUT:
			if (sm_parse_u64(optarg, 1, 600000, &v)) {
				cli_error("--timeout '%s': expected milliseconds from 1 to 600000",
					  optarg);
				return CLI_EXIT_USAGE;
			}
			o->timeout_ms = (int) v;
			break;
		case 'v':
			if (o->verbose < 10)
				o->verbose++;
			break;
		case 'h':
			*help = true;
			break;
		case ':':
			cli_error("option '%s' needs a value (see 'sockmesh flows --help')",
				  argv[optind - 1]);
			return CLI_EXIT_USAGE;
		case '?':
			cli_error("unknown option '%s' (see 'sockmesh flows --help')",
				  argv[optind - 1]);
			return CLI_EXIT_USAGE;
		default:
			if (c < F_TERM || c >= F_TERM + (int) NTERMS)
				return CLI_EXIT_USAGE; /* getopt_long returns only what opts names
							*/
			ret = add_term(a, (size_t) (c - F_TERM), optarg);
			if (ret)
				return ret;
			break;
		}
	}
	if (optind < argc) {
		cli_error("flows takes no arguments, got '%s' (filters are flags: see 'sockmesh "
			  "flows --help')",
			  argv[optind]);
		return CLI_EXIT_USAGE;
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

int cli_flows(struct cli_opts *o, int argc, char **argv)
{
	struct flows_args a = {
		.last = -1,
		.fmt = o->output == CLI_OUT_JSON ? FLOWS_JSON : FLOWS_COMPACT,
	};
	bool help = false;
	int ret;

	ret = parse_flows_args(o, argc, argv, &a, &help);
	if (!ret && help)
		fputs(flows_help, stdout);
	else if (!ret)
		ret = run_flows(o, &a);
	for (size_t i = 0; i < NTERMS; i++)
		free(a.terms[i]);
	return ret;
}
