#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Per-workload modes: a STRICT workload refuses new plaintext connections from
# other hosts but not from its own node; a PERMISSIVE workload accepts them,
# counts them and its flow records say so in their tls block; a STRICT
# workload's own outbound connections are not affected.
#
# Sandbox: node1: workload "client" (strict), cgroup "stranger" (not a
# workload); node2: workloads "strictsrv" (strict) and "permsrv" (permissive),
# cgroup "other". The ports used (707x) are not catalog services, so nothing is
# captured: every connection here is plain TCP end to end.

load helpers

setup() {
	sm_sandbox 2
	sb_add_workload node1 client "$SM_CLIENT_ID" strict
	sb_add_workload node2 strictsrv "$SM_TD/strictsrv" strict
	sb_add_workload node2 permsrv "$SM_TD/permsrv" permissive
	sb_add_cgroup node1 stranger
	sb_add_cgroup node2 other
	sb_add_service 10.11.0.2 8080 strictsrv echo
	sb_write_catalog
	sb_start_daemon node1
	sb_start_daemon node2
}

teardown() {
	sm_teardown
}

@test "STRICT: plaintext from another host is refused, from the node itself accepted" {
	sb_serve node2 strictsrv 10.11.0.2:7070 echo
	dropped=$(sm_counter node2 ingress_plaintext_dropped)

	run sm_send node1 stranger 10.11.0.2:7070 1000 --expect echo --timeout 3
	echo "$output"
	[ "$status" -ne 0 ]
	[ "$(sm_field "$output" ok)" = false ]
	after=$(sm_counter node2 ingress_plaintext_dropped)
	echo "ingress_plaintext_dropped: $dropped -> $after"
	[ "$after" -gt "$dropped" ]

	# the same listener from node2 itself (another cgroup): the node's own address passes
	run sm_send node2 other 10.11.0.2:7070 100000 --expect echo --timeout 10
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" ok)" = true ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	[ "$(sm_counter node2 ingress_plaintext_dropped)" -eq "$after" ]
}

@test "PERMISSIVE: plaintext from another host is accepted, counted and logged as such" {
	sb_serve node2 permsrv 10.11.0.2:7071 echo
	allowed=$(sm_counter node2 ingress_plaintext_allowed)
	dropped=$(sm_counter node2 ingress_plaintext_dropped)

	run sm_send node1 stranger 10.11.0.2:7071 300000 --expect echo --timeout 10
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" ok)" = true ]
	[ "$(sm_field "$output" received)" -eq 300000 ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	after=$(sm_counter node2 ingress_plaintext_allowed)
	echo "ingress_plaintext_allowed: $allowed -> $after"
	[ "$after" -gt "$allowed" ]
	[ "$(sm_counter node2 ingress_plaintext_dropped)" -eq "$dropped" ]

	flt=".traffic_direction == \"INGRESS\" and .source.port == $port"
	for type in conn_start conn_end; do
		rec=$(sm_wait_record node2 ".type == \"$type\" and $flt")
		echo "$rec"
		jq -e '.destination.workload == "permsrv" and .source.ip == "10.11.0.1"' <<<"$rec"
		jq -e '.tls.mode == "PERMISSIVE" and .tls.encrypted == false' <<<"$rec"
	done

	# from the node itself: not plaintext from another host, so no tls block
	run sm_send node2 other 10.11.0.2:7071 1000 --expect echo --timeout 10
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	rec=$(sm_wait_record node2 ".type == \"conn_end\" and .traffic_direction == \"INGRESS\" and
		.source.port == $port")
	echo "$rec"
	jq -e 'has("tls") | not' <<<"$rec"
}

@test "STRICT: the workload's own outbound connections still get their replies" {
	# node1's client is STRICT and guarded: a new connection from node2 to it is refused
	sb_serve node1 client 10.11.0.1:7072 echo
	dropped=$(sm_counter node1 ingress_plaintext_dropped)
	run sm_send node2 other 10.11.0.1:7072 1000 --expect echo --timeout 3
	echo "$output"
	[ "$status" -ne 0 ]
	after=$(sm_counter node1 ingress_plaintext_dropped)
	[ "$after" -gt "$dropped" ]

	# ... while its own connection to a non-mesh server on node2 works both ways
	sb_serve node2 other 10.11.0.2:7073 echo
	passthrough=$(sm_counter node1 connect_passthrough)
	run sm_send node1 client 10.11.0.2:7073 500000 --expect echo --timeout 10
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" ok)" = true ]
	[ "$(sm_field "$output" received)" -eq 500000 ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	[ "$(sm_counter node1 connect_passthrough)" -gt "$passthrough" ]
	[ "$(sm_counter node1 ingress_plaintext_dropped)" -eq "$after" ]
}
