#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# tunnel.hbone: false, the development mode: captured connections are relayed
# between nodes as plaintext. A STRICT server refuses that; a PERMISSIVE one
# accepts it, and its records say the connection was not encrypted.

load helpers

setup() {
	sm_sandbox 2
	sb_add_workload node1 client "$SM_CLIENT_ID"
	sb_add_workload node2 open "$SM_TD/open" permissive
	sb_add_workload node2 strict "$SM_TD/strict" strict
	sb_add_service 10.11.0.2 8080 open
	sb_add_service 10.11.0.2 8081 strict
	sb_write_catalog
	sb_start_daemon node1 --set tunnel.hbone=false
	sb_start_daemon node2 --set tunnel.hbone=false
}

teardown() {
	sm_teardown
}

@test "plaintext relay: a PERMISSIVE server gets the bytes, its records say encrypted: false" {
	sb_serve node2 open 10.11.0.2:8080 echo
	[ "$(sm_status node1 | jq .tunnel.hbone)" = false ]
	sb_cli node1 status | grep -q 'NOT encrypted'

	run sm_send node1 client 10.11.0.2:8080 300000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_status node1 | jq .proxy.tunnelled)" -eq 0 ]
	rec=$(sm_wait_record node2 '.type == "conn_end" and .traffic_direction == "INGRESS" and .destination.port == 8080')
	echo "$rec"
	jq -e '.tls.mode == "PERMISSIVE" and .tls.encrypted == false and
		.counters.bytes_received == 300000' <<<"$rec"
}

@test "plaintext relay: a STRICT server refuses it" {
	sb_serve node2 strict 10.11.0.2:8081 echo
	before=$(sm_counter node2 ingress_plaintext_dropped)
	run sm_send node1 client 10.11.0.2:8081 1000 --expect echo --timeout 5
	echo "$output"
	[ "$status" -ne 0 ]
	[ "$(sm_counter node2 ingress_plaintext_dropped)" -gt "$before" ]
}
