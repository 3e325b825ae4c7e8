// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer harness: one control-socket request, the bytes a client writes to
 * sockmeshd's control socket, through the library parsing and validation the
 * daemon's control server (userspace/daemon/control.c) relies on before and
 * while it dispatches: sm_ctl_parse_request_args(), then, per command, the
 * library calls its handlers make with the arguments (flow filters and the
 * "since" time for "flows"; the policy document, names and addresses for
 * "policy_*"), and the answer line the daemon builds.
 *
 * Besides "no crash, no leak, no undefined behaviour", it checks:
 *  - a refused request has a message, an accepted one a valid command name and
 *    "args" that are absent or an object;
 *  - the request the CLI sends for the same command and arguments is accepted
 *    with the same command and equal arguments;
 *  - an answer carrying the arguments (or a policy document the library wrote)
 *    as data, and an error answer carrying any message produced on the way,
 *    reach the CLI's parser intact: same data, same message.
 */
#include <errno.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <json-c/json.h>

#include "catalog.h"
#include "ctl.h"
#include "flow_record.h"
#include "flowfilter.h"
#include "flowfmt.h"
#include "policy.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The daemon's own bounds (flowstream.c, config max_policy_entries' scale). */
#define MAX_FILTERS	   64
#define MAX_POLICY_ENTRIES 4096

static const char catalog_yaml[] =
	"nodes: [{name: n1, addresses: [10.0.0.1]}, {name: n2, addresses: ['fc42::2']}]\n"
	"workloads:\n"
	"  - {name: web, node: n1, cgroup: w, spiffe_id: 'spiffe://example.org/ns/prod/sa/web'}\n"
	"  - {name: api, node: n2, cgroup: a, spiffe_id: 'spiffe://example.org/ns/prod/sa/api'}\n"
	"services: [{address: 10.0.0.1, port: 8080, workload: web}]\n";

static const char policy_yaml[] =
	"policies:\n"
	"  - name: web-in\n"
	"    selector: {spiffe: 'spiffe://example.org/ns/prod/sa/web'}\n"
	"    rules: [{action: ALLOW, from: ['spiffe://example.org/ns/prod/*', 10.0.0.0/8]}]\n";

/* Records the parsed filters are matched against: one connection, one denied. */
static const char *const record_lines[] = {
	"{\"version\":1,\"type\":\"conn_end\",\"time\":\"2026-11-30T01:02:12.664154Z\",\"node\":"
	"\"node1\",\"verdict\":\"FORWARDED\",\"traffic_direction\":\"EGRESS\",\"reporter\":"
	"\"source\",\"ip\":{\"family\":\"IPv4\"},\"l4\":{\"protocol\":\"TCP\"},\"source\":{\"ip\":"
	"\"127.0.0.1\",\"port\":53428,\"identity\":256,\"spiffe_id\":\"spiffe://example.org/ns/"
	"prod/sa/api\",\"workload\":\"api\",\"node\":\"node1\",\"cgroup\":\"a\"},\"destination\":{"
	"\"ip\":\"10.0.0.1\",\"port\":8080,\"identity\":258,\"spiffe_id\":\"spiffe://example.org/"
	"ns/prod/sa/web\",\"workload\":\"web\",\"node\":\"node2\",\"cgroup\":\"w\"},\"captured\":"
	"true,\"same_node\":false,\"redirected\":false,\"socket_cookie\":653166,\"cgroup_id\":"
	"501169,\"start_time\":\"2026-11-30T01:02:12.659660Z\",\"duration_us\":4494,\"counters\":{"
	"\"bytes_sent\":20000,\"bytes_received\":20000,\"segs_in\":5,\"segs_out\":8,\"redirected_"
	"bytes_sent\":0},\"delta\":{\"bytes_sent\":20000,\"bytes_received\":20000,\"segs_in\":4,"
	"\"segs_out\":7},\"tcp\":{\"srtt_us\":539,\"total_retrans\":0},\"trace_id\":\"00-"
	"05a98d22e5736cbcc5d60ec6479e2107-b8513568f82fe4ef-01\"}",
	"{\"version\":1,\"type\":\"denied\",\"time\":\"2026-11-30T01:02:12.648128Z\",\"node\":"
	"\"node1\",\"verdict\":\"DROPPED\",\"drop_reason\":\"policy_denied\",\"traffic_direction\":"
	"\"EGRESS\",\"reporter\":\"source\",\"ip\":{\"family\":\"IPv6\"},\"l4\":{\"protocol\":"
	"\"TCP\"},\"source\":{\"ip\":\"fc42::1\",\"port\":0,\"identity\":256},\"destination\":{"
	"\"ip\":\"fc42::2\",\"port\":8081,\"identity\":258},\"captured\":false,\"same_node\":false,"
	"\"redirected\":false,\"socket_cookie\":653165,\"cgroup_id\":501169,\"start_time\":\"2026-"
	"11-30T01:02:12.648128Z\",\"duration_us\":0,\"counters\":{\"bytes_sent\":0,\"bytes_"
	"received\":0,\"segs_in\":0,\"segs_out\":0,\"redirected_bytes_sent\":0},\"delta\":{\"bytes_"
	"sent\":0,\"bytes_received\":0,\"segs_in\":0,\"segs_out\":0},\"tcp\":{\"srtt_us\":0,"
	"\"total_retrans\":0},\"policy\":{\"revision\":1,\"match\":\"rule\",\"name\":\"server-in\","
	"\"rule\":0}}",
};

#define NRECORDS (sizeof(record_lines) / sizeof(record_lines[0]))

static struct sm_catalog cat;
static struct sm_policy_set base;
static struct sm_flow_record records[NRECORDS];

static void setup_once(void)
{
	static int done;
	struct sm_error err;

	if (done)
		return;
	if (sm_catalog_parse(&cat, catalog_yaml, strlen(catalog_yaml), "catalog", &err) ||
	    sm_policy_set_parse(&base, policy_yaml, strlen(policy_yaml), "policy", &err))
		abort();
	for (size_t i = 0; i < NRECORDS; i++)
		if (sm_flow_record_decode(record_lines[i], &records[i]))
			abort();
	done = 1;
}

/*
 * What the CLI must read for msg: msg, each byte that is no part of a valid
 * UTF-8 character replaced by U+FFFD. glibc's decoder is the judge here,
 * independent of the library's. NULL when out of memory.
 */
static char *expected_message(const char *msg)
{
	static locale_t utf8;
	size_t len = strlen(msg), o = 0, n;
	char *want = malloc(3 * len + 1);
	mbstate_t st;
	wchar_t wc;

	if (!utf8 && !(utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0)))
		abort();
	if (!want)
		return NULL;
	uselocale(utf8);
	for (size_t i = 0; i < len; i += n) {
		memset(&st, 0, sizeof(st));
		n = mbrtowc(&wc, msg + i, len - i, &st);
		if (n == (size_t) -1 || n == (size_t) -2) {
			memcpy(want + o, "\xef\xbf\xbd", 3);
			o += 3;
			n = 1;
		} else {
			memcpy(want + o, msg + i, n);
			o += n;
		}
	}
	uselocale(LC_GLOBAL_LOCALE);
	want[o] = '\0';
	return want;
}

/* An error answer with msg must reach the CLI as that message (made valid UTF-8). */
static void check_error_answer(const char *msg)
{
	struct json_object *back = NULL;
	struct sm_error err = {{0}};
	char *line, *want;

	if (!msg[0])
		return; /* the daemon never sends an empty error */
	line = sm_ctl_format_response(NULL, msg);
	want = expected_message(msg);
	if (!line || !want)
		goto free_line; /* out of memory */
	/* sm_error holds 511 bytes: a longer message arrives cut, and so compares */
	if (sm_ctl_parse_response(line, strlen(line), &back, &err) != -EPROTO || back ||
	    strncmp(err.msg, want, sizeof(err.msg) - 1) != 0)
		abort();
free_line:
	free(want);
	free(line);
}

/* An answer with data must reach the CLI with equal data. */
static void check_data_answer(struct json_object *data)
{
	struct json_object *back = NULL;
	struct sm_error err = {{0}};
	char *line = sm_ctl_format_response(data, NULL);

	if (!line)
		return;
	if (sm_ctl_parse_response(line, strlen(line), &back, &err) != 0)
		abort();
	if (data ? !json_object_equal(back, data) : back != NULL)
		abort();
	json_object_put(back);
	free(line);
}

/* The request the CLI builds for cmd and args must be accepted as the same. */
static void check_client_request(const char *cmd, struct json_object *args)
{
	struct json_object *req = json_object_new_object(), *back = NULL;
	char again[SM_CTL_CMD_MAX];
	struct sm_error err;
	const char *line;

	if (!req || json_object_object_add(req, "cmd", json_object_new_string(cmd)) ||
	    (args && json_object_object_add(req, "args", json_object_get(args))))
		goto put_req;
	line = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!line)
		goto put_req;
	if (sm_ctl_parse_request_args(line, again, sizeof(again), &back, &err) != 0 ||
	    strcmp(again, cmd) != 0 || (args ? !json_object_equal(back, args) : back != NULL))
		abort();
	json_object_put(back);
put_req:
	json_object_put(req);
}

static const char *arg_str(struct json_object *args, const char *key)
{
	struct json_object *v;

	if (!args || !json_object_object_get_ex(args, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* "flows": the since time and the filters, each then matched against the records. */
static void flows_args(struct json_object *args)
{
	struct json_object *filters;
	struct sm_flowfilter *fs[MAX_FILTERS];
	const char *since = arg_str(args, "since");
	size_t n = 0, total;
	int64_t ns;

	if (since)
		sm_flowfmt_parse_time(since, &ns);
	if (!args || !json_object_object_get_ex(args, "filters", &filters) ||
	    !json_object_is_type(filters, json_type_array))
		return;
	total = json_object_array_length(filters);
	for (size_t i = 0; i < total && n < MAX_FILTERS; i++) {
		struct json_object *f = json_object_array_get_idx(filters, i);
		struct sm_error err = {{0}};

		if (!json_object_is_type(f, json_type_string))
			continue;
		if (sm_flowfilter_parse(json_object_get_string(f), &fs[n], &err) == 0)
			n++;
		else
			check_error_answer(err.msg);
	}
	for (size_t r = 0; r < NRECORDS; r++) {
		bool any = false;

		for (size_t i = 0; i < n; i++)
			any |= sm_flowfilter_match(fs[i], &records[r]);
		if (sm_flowfilter_match_any(fs, n, &records[r]) != any)
			abort();
	}
	for (size_t i = 0; i < n; i++)
		sm_flowfilter_free(fs[i]);
}

/* policy_apply, _diff, _validate: the document parsed, merged, compiled, written back. */
static void policy_document(struct json_object *args)
{
	const char *doc = arg_str(args, "document"), *source = arg_str(args, "source");
	struct sm_policy_set incoming, merged;
	struct sm_policy_compiled comp;
	struct sm_error err = {{0}};
	struct json_object *o;
	char *text;

	if (!doc)
		return;
	if (sm_policy_set_parse(&incoming, doc, strlen(doc), source ? source : "policy", &err)) {
		check_error_answer(err.msg);
		return;
	}
	if (sm_policy_set_merge(&base, &incoming, &merged) == 0) {
		if (sm_policy_compile(&merged, &cat, 1, MAX_POLICY_ENTRIES, &comp, &err) == 0)
			sm_policy_compiled_free(&comp);
		else
			check_error_answer(err.msg);
		sm_policy_set_free(&merged);
	}
	/* policy_get answers with the set as a document */
	text = sm_policy_set_to_json(&incoming);
	o = json_object_new_object();
	if (text && o && !json_object_object_add(o, "document", json_object_new_string(text)))
		check_data_answer(o);
	json_object_put(o);
	free(text);
	sm_policy_set_free(&incoming);
}

/* policy_get, policy_delete: a name; policy_explain: identities as addresses or numbers. */
static void policy_names(struct json_object *args)
{
	const char *name = arg_str(args, "name");
	const char *ends[2] = {arg_str(args, "from"), arg_str(args, "to")};
	struct sm_policy_set rest;
	struct sm_addr addr;
	uint64_t n;

	if (name) {
		sm_policy_set_find(&base, name);
		if (sm_policy_set_remove(&base, name, &rest) == 0)
			sm_policy_set_free(&rest);
	}
	for (int i = 0; i < 2; i++) {
		if (!ends[i])
			continue;
		if (sm_addr_parse(ends[i], &addr) != 0)
			sm_parse_u64(ends[i], 0, UINT32_MAX, &n);
		sm_spiffe_id_valid(ends[i]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *args = NULL;
	char cmd[SM_CTL_CMD_MAX], *line;
	struct sm_error err = {{0}};
	int ret;

	setup_once();
	/* the daemon reads up to the first newline (and what came with it) and adds a NUL */
	line = malloc(size + 1);
	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	ret = sm_ctl_parse_request_args(line, cmd, sizeof(cmd), &args, &err);
	free(line);
	if (ret) {
		if (args || (ret != -EINVAL && ret != -ENAMETOOLONG && ret != -EMSGSIZE) ||
		    !err.msg[0])
			abort();
		check_error_answer(err.msg);
		return 0;
	}
	if (!cmd[0] || (args && !json_object_is_type(args, json_type_object)))
		abort();
	check_client_request(cmd, args);
	check_data_answer(args);
	if (strcmp(cmd, "flows") == 0)
		flows_args(args);
	else if (strcmp(cmd, "policy_apply") == 0 || strcmp(cmd, "policy_diff") == 0 ||
		 strcmp(cmd, "policy_validate") == 0)
		policy_document(args);
	else if (strncmp(cmd, "policy_", 7) == 0)
		policy_names(args);
	json_object_put(args);
	return 0;
}
