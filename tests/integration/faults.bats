#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Faults: when the kernel cannot keep a captured connection's original
# destination (orig_dst map full), the failure is counted and the daemon closes
# the connection (fail closed) instead of guessing or hanging.

load helpers

setup() {
	sm_standard_sandbox
}

teardown() {
	sm_teardown
}

@test "a full orig_dst map: the failure is counted and the connection closed, no hang" {
	sb_start_daemon node1 --set datapath.max_orig_dst=1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	jq -e '.maps[] | select(.name == "orig_dst") | .max_entries == 1' <<<"$(sm_status node1)"

	# the first connection holds the only slot while it streams slowly
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 100000 \
		--chunk 500 --rate 5000 --expect echo --timeout 30
	first_pid=$SB_RUN_PID
	holds_slot() {
		sm_status node1 | jq -e '(.proxy.active + .tunnel.streams_open >= 1) and
			(.maps[] | select(.name == "orig_dst") | .entries == 1)' >/dev/null
	}
	sm_wait_until 15 holds_slot
	before=$(sm_counter node1 orig_dst_update_fail)

	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo --timeout 20
	echo "$output"
	[ "$status" -eq 1 ]
	error=$(sm_field "$output" error)
	[[ "$error" != *timeout* ]]
	[[ "$error" == *closed* || "$error" == *reset* || "$error" == *refused* ]]

	after=$(sm_counter node1 orig_dst_update_fail)
	echo "orig_dst_update_fail: $before -> $after"
	[ "$after" -gt "$before" ]
	[ "$(sm_status node1 | jq .proxy.orig_dst_errors)" -ge 1 ]

	# the first connection was not disturbed
	sb_alive "$first_pid"
	kill "$first_pid"
}
