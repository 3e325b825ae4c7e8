#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The admin port (docs/metrics.md): /metrics scraped with curl and parsed by
# the Prometheus client library's own text parser, so malformed output fails;
# the tcp counters agree with the flow log, policy denials show as drops and
# verdicts, the label-set bound holds; /healthz, /readyz, 404 and 405; a taken
# port stops the daemon before it attaches anything; probes are answered while
# one workload process holds 1,000 idle and slow connections, more than
# admin.max_connections, or opens them as fast as the server closes them.

load helpers

setup() {
	sm_standard_sandbox
	PY=""
	local p
	for p in /usr/bin/python3 python3; do
		if "$p" -c 'import prometheus_client.parser' 2>/dev/null; then
			PY=$p
			break
		fi
	done
	if [ -z "$PY" ]; then
		echo "no python3 with prometheus_client (python3-prometheus-client): run scripts/install-deps.sh" >&2
		return 1
	fi
}

teardown() {
	sm_teardown
}

# admin NODE PATH [CURL ARGS...]: GET the node's admin port, print the body.
admin() {
	local node=$1 path=$2
	shift 2
	ip netns exec "$(sb_ns "$node")" curl -sS --max-time 5 "$@" "http://127.0.0.1:15020$path"
}

# admin_code NODE PATH [CURL ARGS...]: the HTTP status code only.
admin_code() {
	admin "$@" -o /dev/null -w '%{http_code}'
}

# scrape NODE: /metrics parsed by prometheus_client; prints the samples as a JSON array
# of {name, labels, value}. Fails on text the parser refuses, on a family without HELP
# or TYPE, and on a counter whose samples do not end in _total.
scrape() {
	admin "$1" /metrics >"$SB_DIR/scrape-$1.txt" || return 1
	"$PY" -c '
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    if fam.type == "unknown" or not fam.documentation:
        sys.exit("family %s has no TYPE or no HELP line" % fam.name)
    for s in fam.samples:
        if fam.type == "counter" and not s.name.endswith("_total"):
            sys.exit("counter sample %s does not end in _total" % s.name)
        v = s.value
        if math.isfinite(v) and v == int(v):
            v = int(v)  # jq prints 1.0 as 1: compare integers as integers
        out.append({"name": s.name, "labels": s.labels, "value": v})
json.dump(out, sys.stdout)
' <"$SB_DIR/scrape-$1.txt"
}

# value SAMPLES NAME [LABELS_JSON]: the value of the one sample with exactly these labels.
value() {
	local labels=${3:-}
	[ -n "$labels" ] || labels='{}'
	jq -er --arg n "$2" --argjson l "$labels" \
		'[.[] | select(.name == $n and .labels == $l)] | if length == 1 then .[0].value else error("\(length) samples") end' \
		<<<"$1"
}

# tcp_from_metrics SAMPLES: the four tcp families by label set, "a|b|c|d|e|f" → counts.
tcp_from_metrics() {
	jq -S '[.[] | select(.name | test("^sockmesh_tcp_"))
		| {key: ([.labels.reporter, .labels.source_workload, .labels.source_principal,
			  .labels.destination_workload, .labels.destination_principal,
			  .labels.connection_security_policy] | join("|")),
		   f: (.name | sub("^sockmesh_tcp_"; "") | sub("_total$"; "")), v: (.value | floor)}]
		| group_by(.key) | map({key: .[0].key, value: (map({key: .f, value: .v}) | from_entries)})
		| from_entries' <<<"$1"
}

# tcp_agrees NODE: the metrics equal the flow log's sums, for every label set.
tcp_agrees() {
	local samples m f
	samples=$(scrape "$1") || return 1
	m=$(tcp_from_metrics "$samples")
	f=$(sm_tcp_from_flowlog "$1")
	if [ "$m" != "$f" ]; then
		echo "$1: metrics and flow log differ:" >&2
		diff <(echo "$m") <(echo "$f") >&2
		return 1
	fi
}

# tcp LABELSET_KEY FAMILY: one count from tcp_from_metrics output in $TCP.
tcp() {
	jq -er --arg k "$1" --arg f "$2" '.[$k][$f]' <<<"$TCP"
}

readyz_ok() {
	[ "$(admin_code "$1" /readyz)" = 200 ]
}

# start_nodes NODE...: start each daemon and wait until its /readyz says ready.
start_nodes() {
	local node
	for node in "$@"; do
		sb_start_daemon "$node" || return 1
		sm_wait_until 5 readyz_ok "$node" || return 1
	done
}

@test "/metrics parses as Prometheus text and matches status; healthz, readyz, 404, 405; the label-set bound" {
	sb_start_daemon node1 --set metrics.max_series=1
	sb_serve node1 local 10.11.0.1:9090 echo
	# two label sets (the client's socket and the server's): one fits, one is other
	run sm_send node1 client 10.11.0.1:9090 100000 --expect echo
	[ "$status" -eq 0 ]
	sm_wait_record node1 '.type == "conn_end" and .traffic_direction == "INGRESS"'
	sm_wait_record node1 '.type == "conn_end" and .traffic_direction == "EGRESS"'
	sm_wait_until 5 readyz_ok node1

	samples=$(scrape node1)
	st=$(sm_status node1)
	[ "$(value "$samples" sockmesh_up)" = 1 ]
	[ "$(value "$samples" sockmesh_ready)" = 1 ]
	[ "$(value "$samples" sockmesh_build_info "{\"version\":$(jq .version <<<"$st")}")" = 1 ]
	[ "$(value "$samples" sockmesh_policy_revision)" = 0 ]
	for src in ringbuf:ringbuf_reserve_fail orig_dst:orig_dst_update_fail storage:storage_fail \
		sockhash:sockhash_update_fail; do
		[ "$(value "$samples" sockmesh_lost_events_total "{\"source\":\"${src%%:*}\"}")" = \
			"$(jq ".counters.${src#*:}" <<<"$st")" ]
	done
	# map pressure as `sockmesh status` counts: the enrolled paths and the services
	for map in enroll_paths services; do
		want=$(jq --arg m "$map" '.maps[] | select(.name == $m) | .entries / .max_entries' <<<"$st")
		got=$(value "$samples" sockmesh_map_pressure "{\"map\":\"$map\"}")
		jq -ne --argjson w "$want" --argjson g "$got" '$w > 0 and (($w - $g) | fabs) < 1e-9'
	done
	[ "$(value "$samples" sockmesh_map_pressure '{"map":"policy"}')" = 0 ]

	# the bound: one label set kept, the other counted as other
	[ "$(value "$samples" sockmesh_metrics_series)" = 1 ]
	[ "$(value "$samples" sockmesh_metrics_max_series)" = 1 ]
	# conn_start and conn_end of the second socket
	[ "$(value "$samples" sockmesh_metrics_series_dropped_total)" = 2 ]
	other='{"reporter":"other","source_workload":"other","source_principal":"other","destination_workload":"other","destination_principal":"other","connection_security_policy":"other"}'
	[ "$(value "$samples" sockmesh_tcp_connections_opened_total "$other")" = 1 ]
	[ "$(value "$samples" sockmesh_tcp_received_bytes_total "$other")" = 100000 ]
	run tcp_agrees node1 # the flow log knows both sets; the bound folded one
	[ "$status" -ne 0 ]
	[ "$(jq '[.[] | select(.name == "sockmesh_tcp_connections_opened_total") | .value] | add' <<<"$samples")" = 2 ]

	[ "$(admin_code node1 /healthz)" = 200 ]
	[ "$(admin node1 /healthz)" = ok ]
	[[ "$(admin node1 /readyz)" == "ready: "*"policy revision 0, tunnel credentials loaded" ]]
	[ "$(admin_code node1 /nothing-here)" = 404 ]
	[ "$(admin_code node1 /metrics/)" = 404 ]
	[ "$(admin_code node1 /metrics -X POST -d x=1)" = 405 ]
	[ "$(admin_code node1 /healthz -I)" = 405 ] # HEAD: GET only
	admin node1 /readyz -X DELETE -D - -o /dev/null | grep -qi '^Allow: GET'
	admin node1 /metrics -D - -o /dev/null | grep -qi '^Content-Type: text/plain; version=0.0.4'
}

@test "tcp counters equal the flow log's deltas, same-node and cross-node, on both nodes" {
	start_nodes node1 node2
	sb_serve node1 local 10.11.0.1:9090 echo
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node2 server 10.11.0.2:8083 sink
	run sm_send node1 client 10.11.0.1:9090 100000 --expect echo
	[ "$status" -eq 0 ]
	run sm_send node1 client 10.11.0.2:8080 100000 --expect echo
	[ "$status" -eq 0 ]
	run sm_send node1 client 10.11.0.2:8083 50000 --expect sink
	[ "$status" -eq 0 ]
	reply=$(sm_field "$output" received) # the sink's answer line
	[ "$reply" -gt 0 ]
	# every socket's conn_end: 3 client sockets and 1 server socket on node1, 2 on node2
	have_ends() { [ "$(sm_records "$1" '.type == "conn_end"' | wc -l)" -eq "$2" ]; }
	sm_wait_until 15 have_ends node1 4
	sm_wait_until 15 have_ends node2 2

	sm_wait_until 10 tcp_agrees node1
	sm_wait_until 10 tcp_agrees node2

	# and the numbers themselves, so that agreement is not agreement on nothing
	c="client|$SM_CLIENT_ID"
	TCP=$(tcp_from_metrics "$(scrape node1)")
	echo "node1: $TCP"
	[ "$(tcp "source|$c|local|$SM_LOCAL_ID|none" received_bytes)" -eq 100000 ]
	[ "$(tcp "source|$c|local|$SM_LOCAL_ID|none" sent_bytes)" -eq 100000 ]
	[ "$(tcp "destination|$c|local|$SM_LOCAL_ID|none" received_bytes)" -eq 100000 ]
	[ "$(tcp "destination|$c|local|$SM_LOCAL_ID|none" connections_closed)" -eq 1 ]
	[ "$(tcp "source|$c|server|$SM_SERVER_ID|mutual_tls" received_bytes)" -eq 150000 ]
	[ "$(tcp "source|$c|server|$SM_SERVER_ID|mutual_tls" sent_bytes)" -eq $((100000 + reply)) ]
	[ "$(tcp "source|$c|server|$SM_SERVER_ID|mutual_tls" connections_opened)" -eq 2 ]
	[ "$(tcp "source|$c|server|$SM_SERVER_ID|mutual_tls" connections_closed)" -eq 2 ]
	TCP=$(tcp_from_metrics "$(scrape node2)")
	echo "node2: $TCP"
	# the accepting node names the verified caller, and the bytes are the payload's
	[ "$(tcp "destination|$c|server|$SM_SERVER_ID|mutual_tls" received_bytes)" -eq 150000 ]
	[ "$(tcp "destination|$c|server|$SM_SERVER_ID|mutual_tls" sent_bytes)" -eq $((100000 + reply)) ]
	[ "$(tcp "destination|$c|server|$SM_SERVER_ID|mutual_tls" connections_closed)" -eq 2 ]

	# handshakes as the tunnel counts them (published by the main loop each second)
	tls_agrees() {
		local s
		s=$(scrape "$1") || return 1
		[ "$(value "$s" sockmesh_tls_handshakes_total '{"result":"ok"}')" = \
			"$(sm_status "$1" | jq .tunnel.tls_handshakes_ok)" ]
	}
	sm_wait_until 5 tls_agrees node1
	sm_wait_until 5 tls_agrees node2
	[ "$(value "$(scrape node1)" sockmesh_tls_handshakes_total '{"result":"ok"}')" -ge 1 ]
}

# opened_equals_closed NODE: every conn_end in NODE's flow log counted as closed (at
# least $1 of them), and opened equals closed in every label set; the sets in $TCP.
opened_equals_closed() {
	local samples ends
	samples=$(scrape "$1") || return 1
	TCP=$(tcp_from_metrics "$samples")
	ends=$(sm_records "$1" '.type == "conn_end" and .socket_cookie != 0' | wc -l)
	[ "$ends" -ge "$2" ] || return 1
	jq -e --argjson n "$ends" '([.[] | .connections_closed // 0] | add) == $n' <<<"$TCP" >/dev/null &&
		jq -e 'all(.[]; (.connections_opened // 0) == (.connections_closed // 0))' <<<"$TCP" >/dev/null
}

@test "connections closed right after connect(): opened and closed in the same label set" {
	start_nodes node1 node2
	sb_serve node2 server 10.11.0.2:8080 echo
	n=300
	# closed at once, nothing sent: most are gone before the tunnel could take them
	run sb_exec node1 client "$SMTRAFFIC" storm --connect 10.11.0.2:8080 --count "$n"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" connected)" -eq "$n" ]
	# half-closed at once: each goes through the tunnel, whose record of it may come
	# after the conn_start was read
	run sb_exec node1 client sh -c 'i=0; while [ $i -lt "$1" ]; do
		"$0" send --connect 10.11.0.2:8080 --bytes 0 --expect echo --timeout 10 >/dev/null || exit 1
		i=$((i + 1)); done' "$SMTRAFFIC" "$n"
	[ "$status" -eq 0 ]
	for node in node1 node2; do
		if ! sm_wait_until 15 opened_equals_closed "$node" "$n"; then
			echo "$node: $TCP"
			false
		fi
		echo "$node: $TCP"
	done
	# on the calling node, all in the label set of what carries them: the mTLS tunnel
	# (it takes a captured connection or nobody does)
	TCP=$(tcp_from_metrics "$(scrape node1)")
	c="client|$SM_CLIENT_ID"
	[ "$(jq -r 'keys | length' <<<"$TCP")" -eq 1 ]
	[ "$(tcp "source|$c|server|$SM_SERVER_ID|mutual_tls" connections_opened)" -eq $((2 * n)) ]
}

@test "policy denials count in drops_total and policy_verdicts, at connect() and at the tunnel" {
	start_nodes node1 node2
	sb_serve node2 server 10.11.0.2:8080 echo
	pol=$SB_DIR/policy.yaml
	# node1: only client may call server; node2: only local may (so client is refused there)
	for node in node1 node2; do
		from=$SM_CLIENT_ID
		[ "$node" = node2 ] && from=$SM_LOCAL_ID
		printf 'policies:\n  - name: server-in\n    selector: {spiffe: "%s"}\n    rules:\n      - action: ALLOW\n        from: ["%s"]\n' \
			"$SM_SERVER_ID" "$from" >"$pol"
		sb_cli "$node" policy apply -f "$pol"
	done
	run sm_send node1 local 10.11.0.2:8080 1000 --expect echo
	[ "$status" -ne 0 ] # EPERM at connect() on node1
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -ne 0 ] # 403 from node2's tunnel
	sm_wait_record node1 '.type == "denied"'
	sm_wait_record node2 '.type == "denied"'
	sm_wait_record node1 '.type == "conn_end" and .drop_reason == "policy_denied_remote"'

	# node1: the connect() it refused, and the connection node2 refused
	s1=$(scrape node1)
	[ "$(value "$s1" sockmesh_drops_total '{"reason":"policy_default_deny"}')" = 1 ]
	[ "$(value "$s1" sockmesh_drops_total '{"reason":"policy_denied_remote"}')" = 1 ]
	[ "$(value "$s1" sockmesh_policy_verdicts_total '{"action":"DENY","match":"default-deny"}')" = 1 ]
	[ "$(value "$s1" sockmesh_policy_verdicts_total '{"action":"ALLOW","match":"unspecified"}')" = \
		"$(sm_counter node1 policy_allowed)" ]
	[ "$(value "$s1" sockmesh_flow_records_total '{"type":"denied"}')" = \
		"$(sm_records node1 '.type == "denied"' | wc -l)" ]
	# a refused connect() is no connection: the local workload has no tcp series
	[ "$(jq '[.[] | select(.name == "sockmesh_tcp_connections_opened_total" and
		.labels.source_workload == "local")] | length' <<<"$s1")" -eq 0 ]
	# published by the main loop each second: the revision, and the policy's entries
	policy_published() {
		local s
		s=$(scrape node1) || return 1
		[ "$(value "$s" sockmesh_policy_revision)" = 1 ] &&
			[ "$(value "$s" sockmesh_map_pressure '{"map":"policy"}')" != 0 ]
	}
	sm_wait_until 5 policy_published

	# node2: the CONNECT its tunnel refused by the caller's certificate
	s2=$(scrape node2)
	[ "$(value "$s2" sockmesh_drops_total '{"reason":"policy_default_deny"}')" = 1 ]
	[ "$(value "$s2" sockmesh_policy_verdicts_total '{"action":"DENY","match":"default-deny"}')" = 1 ]
}

@test "readyz is 503 naming what is missing while the daemon drains; healthz stays 200" {
	start_nodes node1 node2
	sb_serve node2 server 10.11.0.2:8080 echo
	# a slow relayed connection keeps node1 draining for its full deadline
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 400000 \
		--chunk 1000 --rate 20000 --expect echo --timeout 60
	relaying() { [ "$(sm_status node1 | jq '.proxy.active + .tunnel.streams_open')" -ge 1 ]; }
	sm_wait_until 10 relaying
	kill -TERM "$(sb_daemon_pid node1)"
	draining() { [ "$(admin_code node1 /readyz)" = 503 ]; }
	sm_wait_until 4 draining
	body=$(admin node1 /readyz)
	echo "$body"
	[[ "$body" == "not ready: draining"* ]]
	[ "$(admin_code node1 /healthz)" = 200 ]
	[ "$(value "$(scrape node1)" sockmesh_ready)" = 0 ]
	sb_stop_daemon node1 TERM 15
	[ "$SB_LAST_RC" -eq 0 ]
}

@test "a taken admin port stops the daemon before it attaches anything; an empty --admin turns it off" {
	sb_serve node1 stranger 127.0.0.1:15020 sink
	run sb_start_daemon node1
	[ "$status" -ne 0 ]
	log=$(sb_daemon_log node1)
	grep -q 'cannot listen on the admin port 127.0.0.1:15020: Address already in use (another process holds it' "$log"
	grep -q 'or "" to turn the admin server off' "$log"
	sm_dir_empty "$(sb_bpffs_dir node1)"
	sm_cgroup_tree_empty

	sb_start_daemon node1 --admin ""
	grep -q 'admin server off' "$log"
	sb_stop_daemon node1
	sb_start_daemon node1 --admin 127.0.0.1:15021
	[ "$(ip netns exec "$(sb_ns node1)" curl -sS --max-time 5 http://127.0.0.1:15021/healthz)" = ok ]
}

# raise_nofile: the open-file soft limit of this shell, and so of the daemons and
# tools it starts from now on, up to the hard limit (at least 8192 are needed).
raise_nofile() {
	local hard
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt 8192 ]; then
		skip "the open-file hard limit is $hard; this test needs 8192"
	fi
	ulimit -Sn "$hard"
}

# hold_admin NODE ARGS...: holdconns.py against NODE's admin port from one
# unprivileged process (nobody) in the client workload, in the background;
# returns once it holds its connections (HOLD_OUT set).
hold_admin() {
	local node=$1
	shift
	sb_run "$node" client setpriv --reuid=65534 --regid=65534 --clear-groups \
		/usr/bin/python3 "$SM_REPO/tests/tools/holdconns.py" --tcp 127.0.0.1:15020 "$@" ||
		return 1
	HOLD_OUT=$SB_RUN_OUT
	sm_wait_until 40 grep -qs '"event":"holding"' "$HOLD_OUT"
	grep '"event":"holding"' "$HOLD_OUT"
}

# probes NODE N: N GET /healthz in a row (curl, 2 s each at most); prints "CODE SECONDS"
# a line; fails unless every one answered 200 ok.
probes() {
	local i out bad=0
	for ((i = 0; i < $2; i++)); do
		# curl prints the code (000: no answer) and the time even when it fails
		out=$(admin "$1" /healthz --max-time 2 -o /dev/null -w '%{http_code} %{time_total}' \
			2>/dev/null)
		echo "$out"
		[[ "$out" == "200 "* ]] || bad=1
	done
	return "$bad"
}

@test "1,000 idle and 50 slow connections from one workload process: /healthz answers 30 of 30" {
	raise_nofile
	start_nodes node1
	hold_admin node1 --idle 1000 --slow 50 --slow-interval 50 --connect-timeout 30 --duration 120
	run probes node1 30
	echo "$output"
	awk '{ print $2 }' <<<"$output" | sort -n |
		awk '{ t[NR] = $1 } END { printf "healthz time_total: median %s s, max %s s\n", t[int((NR + 1) / 2)], t[NR] }'
	[ "$status" -eq 0 ]
	[ "$(grep -c '^200 ' <<<"$output")" -eq 30 ]
	# each well within the curl bound: seconds, not the probe's timeout
	awk '{ if ($2 >= 1.0) exit 1 }' <<<"$output"
	# and the server held all 1,050 the whole time
	jq -e '.connected == 1050 and .failed == 0' <<<"$(grep '"event":"holding"' "$HOLD_OUT")"
	[ "$(grep -c '"event":"closed"' "$HOLD_OUT")" -eq 0 ]
}

@test "past admin.max_connections the oldest connections make room: /healthz answers 30 of 30" {
	raise_nofile
	sb_start_daemon node1 --set admin.max_connections=64
	sm_wait_until 5 readyz_ok node1
	# 1,000 idle connections into room for 64: from 56 held on, the oldest go
	hold_admin node1 --idle 1000 --connect-timeout 30 --duration 120
	sm_wait_until 10 eval '[ "$(grep -c "\"event\":\"closed\"" "$HOLD_OUT")" -ge 944 ]'
	run probes node1 30
	echo "$output"
	[ "$status" -eq 0 ]
	awk '{ if ($2 >= 1.0) exit 1 }' <<<"$output"
	samples=$(scrape node1)
	[ "$(value "$samples" sockmesh_admin_max_connections)" = 64 ]
	[ "$(value "$samples" sockmesh_admin_connections)" -le 57 ]
	evicted=$(value "$samples" sockmesh_admin_connections_evicted_total)
	echo "evicted: $evicted"
	[ "$evicted" -ge 944 ]
	grep -q 'admin server 127.0.0.1:15020: holds 57 of at most 64 connections (admin.max_connections): closing the oldest to make room for new ones' \
		"$(sb_daemon_log node1)"
}

@test "a storm of connections over admin.max_connections, each one closed opened again: /healthz answers 30 of 30" {
	raise_nofile
	sb_start_daemon node1 --set admin.max_connections=1024
	sm_wait_until 5 readyz_ok node1
	# 2,000 idle connections, each one the server closes made again at once: the server
	# closes thousands a second, and a probe is still never the oldest long enough
	hold_admin node1 --idle 2000 --reconnect --connect-timeout 30 --duration 120
	run probes node1 30
	echo "$output"
	[ "$status" -eq 0 ]
	awk '{ if ($2 >= 1.0) exit 1 }' <<<"$output"
	evicted=$(value "$(scrape node1)" sockmesh_admin_connections_evicted_total)
	echo "evicted: $evicted"
	[ "$evicted" -ge 1000 ]
}
