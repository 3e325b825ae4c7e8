#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# A real Prometheus (Debian's prometheus) scrapes the admin port with the job
# docs/operations.md shows (at a 1 s interval) and its HTTP query API returns
# the sums of the flow log's fields: the sockmesh_tcp_* counters by label set,
# as docs/metrics.md derives them from the records. Prometheus runs as a plain
# process in node1's network namespace (nsenter --net), its storage in the
# sandbox's directory, and is killed by its pid.

load helpers

setup() {
	command -v prometheus >/dev/null || skip "prometheus not installed: scripts/install-deps.sh"
	sm_standard_sandbox
	PROM_DIR=$SB_DIR/prometheus
	PROM_PID=""
}

teardown() {
	if [ -n "$PROM_PID" ]; then
		kill "$PROM_PID" 2>/dev/null
		sb_wait_pid "$PROM_PID" 10 || kill -KILL "$PROM_PID" 2>/dev/null
	fi
	sm_teardown
}

# in_node1 CMD...: CMD in node1's network namespace, as docs/operations.md says to enter it.
in_node1() {
	nsenter --net="/run/netns/$(sb_ns node1)" -- "$@"
}

# prom_get PATH [CURL ARGS...]: Prometheus's HTTP API (in node1's namespace).
prom_get() {
	local path=$1
	shift
	in_node1 curl -sS --max-time 5 "$@" "http://127.0.0.1:9090$path"
}

# The scrape target is up: its last scrape succeeded.
target_up() {
	prom_get /api/v1/targets |
		jq -e '[.data.activeTargets[] | select(.labels.job == "sockmesh")] |
			length == 1 and .[0].health == "up"' >/dev/null
}

# tcp_from_prometheus: the four sockmesh_tcp_* families as Prometheus returns them,
# by label set "reporter|src wl|src id|dst wl|dst id|security" → {family: value}.
tcp_from_prometheus() {
	prom_get /api/v1/query --data-urlencode 'query={__name__=~"sockmesh_tcp_.+_total"}' |
		jq -S -e '.status == "success" and (.data.resultType == "vector")' >/dev/null || return 1
	prom_get /api/v1/query --data-urlencode 'query={__name__=~"sockmesh_tcp_.+_total"}' |
		jq -S '[.data.result[] | .metric as $m
			| {key: ([$m.reporter, $m.source_workload, $m.source_principal,
				  $m.destination_workload, $m.destination_principal,
				  $m.connection_security_policy] | join("|")),
			   f: ($m.__name__ | sub("^sockmesh_tcp_"; "") | sub("_total$"; "")),
			   v: (.value[1] | tonumber | floor)}]
		| group_by(.key) | map({key: .[0].key, value: (map({key: .f, value: .v}) | from_entries)})
		| from_entries'
}

# What Prometheus returns equals the flow log's sums, for every label set.
prometheus_agrees() {
	local p f
	p=$(tcp_from_prometheus) || return 1
	f=$(sm_tcp_from_flowlog node1)
	[ "$p" = "$f" ] && return 0
	diff <(echo "$p") <(echo "$f") >"$SB_DIR/prometheus.diff"
	return 1
}

# start_prometheus: prometheus in node1's namespace with the documented job, every 1 s.
start_prometheus() {
	mkdir -p "$PROM_DIR/data" || return 1
	{
		printf 'global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n'
		sm_doc_block '# /etc/prometheus/prometheus.yml' | sed 's/scrape_interval: 15s/scrape_interval: 1s/'
	} >"$PROM_DIR/prometheus.yml"
	grep -q 'job_name: sockmesh' "$PROM_DIR/prometheus.yml" || {
		echo "no Prometheus block found in docs/operations.md" >&2
		return 1
	}
	in_node1 prometheus --config.file="$PROM_DIR/prometheus.yml" \
		--storage.tsdb.path="$PROM_DIR/data" --web.listen-address=127.0.0.1:9090 \
		</dev/null >"$PROM_DIR/prometheus.log" 2>&1 &
	PROM_PID=$!
}

@test "Prometheus scrapes the admin port; its query API returns the flow log's sums" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node1 local 10.11.0.1:9090 echo
	sb_serve node2 server 10.11.0.2:8080 echo
	start_prometheus
	sm_wait_until 60 target_up

	# same-node and tunnelled connections, several of each
	for i in 1 2 3; do
		run sm_send node1 client 10.11.0.1:9090 $((i * 10000)) --expect echo
		[ "$status" -eq 0 ]
		run sm_send node1 client 10.11.0.2:8080 $((i * 20000)) --expect echo
		[ "$status" -eq 0 ]
	done
	# every socket's conn_end on node1: 3 + 3 client sockets, 3 local server sockets
	have_ends() { [ "$(sm_records node1 '.type == "conn_end"' | wc -l)" -eq 9 ]; }
	sm_wait_until 15 have_ends

	# Prometheus's newest samples reach the final counts within a few scrapes
	sm_wait_until 30 prometheus_agrees || {
		cat "$SB_DIR/prometheus.diff"
		false
	}
	TCP=$(tcp_from_prometheus)
	echo "$TCP"
	c="client|$SM_CLIENT_ID"
	[ "$(jq -r --arg k "destination|$c|local|$SM_LOCAL_ID|none" '.[$k].received_bytes' <<<"$TCP")" -eq 60000 ]
	[ "$(jq -r --arg k "source|$c|server|$SM_SERVER_ID|mutual_tls" '.[$k].received_bytes' <<<"$TCP")" -eq 120000 ]
	[ "$(jq -r --arg k "source|$c|server|$SM_SERVER_ID|mutual_tls" '.[$k].connections_closed' <<<"$TCP")" -eq 3 ]

	# the query docs/operations.md shows, as written there
	query=$(sm_doc_block 'curl -s http://127.0.0.1:9090/api/v1/query --data-urlencode \')
	[ -n "$query" ]
	run in_node1 sh -c "$query"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(jq -r '.data.result[] | select(.metric.destination_workload == "local") | .value[1]' <<<"$output")" = 60000 ]
}
