#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Capture: connect4/connect6 send a workload's connections to services on other
# nodes through the daemon, to the right original destination, with data intact
# both ways; same-node and unenrolled connections are left alone.

load helpers

setup() {
	sm_standard_sandbox
	sb_start_daemon node1
	sb_start_daemon node2
}

teardown() {
	sm_teardown
}

@test "IPv4 cross-node connection is captured and carries 4 MB intact both ways" {
	sb_serve node2 server 10.11.0.2:8080 echo
	before=$(sm_counter node1 connect_captured)

	run sm_send node1 client 10.11.0.2:8080 4000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" ok)" = true ]
	[ "$(sm_field "$output" received)" -eq 4000000 ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]

	after=$(sm_counter node1 connect_captured)
	echo "connect_captured: $before -> $after"
	[ "$after" -gt "$before" ]
	# it went through the daemons, and the server saw the client's own address
	# and port, as without the mesh (docs/tunnel.md, "Real addresses")
	[ "$(sm_status node1 | jq .proxy.tunnelled)" -eq 1 ]
	client_local=$(sm_field "$output" local)
	[[ "$client_local" == 10.11.0.1:* ]]
	grep -q "\"peer\":\"$client_local\"" "$SB_RUN_OUT"
}

@test "IPv6 cross-node connection is captured and carries 4 MB intact both ways" {
	sb_serve node2 server '[fc42::2]:8080' echo
	before=$(sm_counter node1 connect_captured)

	run sm_send node1 client '[fc42::2]:8080' 4000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" ok)" = true ]
	[ "$(sm_field "$output" received)" -eq 4000000 ]

	after=$(sm_counter node1 connect_captured)
	echo "connect_captured: $before -> $after"
	[ "$after" -gt "$before" ]
}

@test "the daemon connects to each connection's own original destination" {
	sb_serve node2 server 10.11.0.2:8081 greet alpha
	sb_serve node2 server 10.11.0.2:8082 greet beta
	before=$(sm_counter node1 connect_captured)

	run sm_send node1 client 10.11.0.2:8081 100000 --expect greet --expect-name alpha
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" greeting)" = alpha ]

	run sm_send node1 client 10.11.0.2:8082 100000 --expect greet --expect-name beta
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" greeting)" = beta ]

	after=$(sm_counter node1 connect_captured)
	[ "$after" -ge $((before + 2)) ]
}

@test "half-close passes through the daemon (sink: EOF, then the server's answer)" {
	sb_serve node2 server 10.11.0.2:8083 sink
	before=$(sm_counter node1 connect_captured)

	run sm_send node1 client 10.11.0.2:8083 3000000 --expect sink
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" greeting)" = "3000000 $(sm_field "$output" sent_sha256)" ]
	[ "$(sm_counter node1 connect_captured)" -gt "$before" ]
}

@test "same-node connections are not captured and the server sees the client itself" {
	sb_serve node1 local 10.11.0.1:9090 greet local1
	server_out=$SB_RUN_OUT
	captured=$(sm_counter node1 connect_captured)
	same=$(sm_counter node1 connect_same_node)

	run sm_send node1 client 10.11.0.1:9090 500000 --expect greet --expect-name local1
	echo "$output"
	[ "$status" -eq 0 ]
	client_local=$(sm_field "$output" local)

	[ "$(sm_counter node1 connect_same_node)" -gt "$same" ]
	[ "$(sm_counter node1 connect_captured)" -eq "$captured" ]
	sm_wait_until 10 grep -q "\"peer\":\"$client_local\"" "$server_out"
}

@test "a process in an unenrolled cgroup is not captured and leaves no flow record" {
	# the server is not enrolled either: a STRICT workload would refuse the
	# stranger's plaintext (modes.bats), which is not what this test is about
	sb_add_cgroup node2 bystander
	sb_serve node2 bystander 10.11.0.2:8080 echo
	server_out=$SB_RUN_OUT
	captured=$(sm_counter node1 connect_captured)

	run sm_send node1 stranger 10.11.0.2:8080 200000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	stranger_port=$(sm_port_of "$(sm_field "$output" local)")
	[ "$(sm_counter node1 connect_captured)" -eq "$captured" ]
	# not through the daemon: the server saw the stranger's own socket
	sm_wait_until 10 grep -q "\"peer\":\"$(sm_field "$output" local)\"" "$server_out"

	# an enrolled connection afterwards: once its conn_end is logged, every
	# earlier event has been consumed, so the stranger's absence means something
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]
	client_port=$(sm_port_of "$(sm_field "$output" local)")
	sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$client_port")"
	run sm_records node1 ".source.port == $stranger_port or .destination.port == $stranger_port"
	echo "records for the stranger's port: $output"
	[ -z "$output" ]
}

@test "a connection refused at the far end reaches the client as a close, not a hang" {
	# 10.11.0.2:8099 is in the catalog but nothing listens there
	before=$(sm_counter node1 connect_captured)

	run sm_send node1 client 10.11.0.2:8099 1000 --expect echo --timeout 20
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(sm_field "$output" ok)" = false ]
	error=$(sm_field "$output" error)
	[[ "$error" != *timeout* ]]
	[[ "$error" == *closed* || "$error" == *reset* || "$error" == *refused* ]]
	[ "$(sm_counter node1 connect_captured)" -gt "$before" ]
}
