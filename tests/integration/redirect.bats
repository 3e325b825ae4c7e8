#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Same-node sk_msg redirect (--redirect): data intact, redirected bytes counted
# by the kernel and included in the client's flow record; off by default.

load helpers

setup() {
	sm_standard_sandbox
}

teardown() {
	sm_teardown
}

@test "with --redirect: same-node echo intact, redirect_bytes > 0, conn_end counts them" {
	sb_start_daemon node1 --redirect
	[ "$(sm_status node1 | jq .redirect)" = true ]
	sb_serve node1 local 10.11.0.1:9090 echo
	before=$(sm_counter node1 redirect_bytes)

	run sm_send node1 client 10.11.0.1:9090 2000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" received)" -eq 2000000 ]
	port=$(sm_port_of "$(sm_field "$output" local)")

	after=$(sm_counter node1 redirect_bytes)
	echo "redirect_bytes: $before -> $after"
	[ "$after" -gt "$before" ]

	rec=$(sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")")
	echo "$rec"
	jq -e '.counters.bytes_sent == 2000000 and .counters.bytes_received == 2000000' <<<"$rec"
	jq -e '.redirected == true and .counters.redirected_bytes_sent > 0' <<<"$rec"
}

@test "with --redirect over IPv6: same-node echo intact" {
	sb_start_daemon node1 --redirect
	sb_serve node1 local '[fc42::1]:9090' echo

	run sm_send node1 client '[fc42::1]:9090' 1000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	rec=$(sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")")
	jq -e '.counters.bytes_sent == 1000000 and .counters.bytes_received == 1000000' <<<"$rec"
}

@test "without --redirect: redirect_bytes stays 0 and bytes are still exact" {
	sb_start_daemon node1
	[ "$(sm_status node1 | jq .redirect)" = false ]
	sb_serve node1 local 10.11.0.1:9090 echo

	run sm_send node1 client 10.11.0.1:9090 2000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")

	[ "$(sm_counter node1 redirect_bytes)" -eq 0 ]
	[ "$(sm_counter node1 redirect_msgs)" -eq 0 ]
	rec=$(sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")")
	echo "$rec"
	jq -e '.counters.bytes_sent == 2000000 and .redirected == false' <<<"$rec"
}
