#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The sockmesh CLI against a live daemon: status, workloads and services as
# tables and as JSON; a clear error when the daemon is not there.

load helpers

setup() {
	sm_standard_sandbox
	sb_start_daemon node1
}

teardown() {
	sm_teardown
}

@test "status: a table, and JSON with programs, maps and counters" {
	run sb_cli node1 status
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *node1* ]]
	[[ "$output" == *sock4_connect* && "$output" == *orig_dst* ]]

	run sb_cli node1 status -o json
	[ "$status" -eq 0 ]
	jq -e --argjson pid "$(sb_daemon_pid node1)" \
		'.node == "node1" and .ready == true and .pid == $pid and
		 (.programs | length > 0) and (.maps | length > 0) and
		 (.counters | has("connect_captured") and has("ringbuf_reserve_fail")) and
		 (.proxy | has("active")) and (.flows | has("records")) and .redirect == false' \
		<<<"$output"
	# every counter named in include/sockmesh/common.h, and only numbers
	jq -e '[.counters[] | type == "number"] | all' <<<"$output"
	[ "$(jq '.counters | length' <<<"$output")" -eq \
		"$(sed -n '/SM_COUNTER_NAMES/,/}/p' "$SM_REPO/include/sockmesh/common.h" | grep -o '"[a-z_]*"' | wc -l)" ]
}

@test "workloads: a table, and JSON with identities and attachment" {
	run sb_cli node1 workloads
	echo "$output"
	[ "$status" -eq 0 ]
	for w in client local server "$SM_CLIENT_ID"; do
		[[ "$output" == *"$w"* ]]
	done

	run sb_cli node1 workloads -o json
	[ "$status" -eq 0 ]
	jq -e 'type == "array" and length == 3' <<<"$output"
	jq -e --arg c "$SM_CLIENT_ID" '.[] | select(.name == "client") |
		.spiffe_id == $c and .local == true and .enrolled == true and .cgroup_id > 0 and
		.node == "node1" and .mode == "STRICT"' <<<"$output"
	jq -e '.[] | select(.name == "server") | .local == false and .node == "node2"' <<<"$output"
	# identities: 256 + index of the SPIFFE ID in the sorted list (docs/catalog.md)
	want=$(printf '%s\n' "$SM_CLIENT_ID" "$SM_LOCAL_ID" "$SM_SERVER_ID" | sort |
		awk '{printf "%s%s=%d", (NR > 1 ? " " : ""), $0, 255 + NR}')
	got=$(jq -r 'sort_by(.spiffe_id) | map("\(.spiffe_id)=\(.identity)") | join(" ")' <<<"$output")
	echo "identities: want '$want' got '$got'"
	[ "$got" = "$want" ]
}

@test "services: a table, and JSON with addresses, ports and where they live" {
	run sb_cli node1 services
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *10.11.0.2* && "$output" == *8080* && "$output" == *fc42::2* ]]

	run sb_cli node1 services -o json
	[ "$status" -eq 0 ]
	jq -e 'type == "array" and length == 8' <<<"$output"
	jq -e --arg s "$SM_SERVER_ID" '.[] | select(.address == "10.11.0.2" and .port == 8080) |
		.workload == "server" and .spiffe_id == $s and .node == "node2" and .remote == true and
		.identity >= 256' <<<"$output"
	jq -e '.[] | select(.address == "10.11.0.1" and .port == 9090) |
		.workload == "local" and .remote == false' <<<"$output"
	jq -e '[.[] | select(.address == "fc42::2" and .port == 8080)] | length == 1' <<<"$output"
}

@test "the CLI says which socket it could not reach when the daemon is down" {
	sb_stop_daemon node1 TERM
	for cmd in status workloads services; do
		run sb_cli node1 "$cmd"
		echo "$output"
		[ "$status" -eq 1 ]
		[[ "$output" == *"$(sb_socket node1)"* ]]
	done
	run "$SOCKMESH" -S "$SB_DIR/no-such.sock" status -o json
	[ "$status" -eq 1 ]
	[[ "$output" == *"$SB_DIR/no-such.sock"* ]]
}

@test "usage errors exit 2" {
	run sb_cli node1 status -o yaml
	echo "$output"
	[ "$status" -eq 2 ]
	run sb_cli node1 status --no-such-option
	[ "$status" -eq 2 ]
}
