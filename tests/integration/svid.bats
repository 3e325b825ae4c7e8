#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Which SVID the inbound side presents (docs/tunnel.md): the workload the
# client names in SNI; else the one workload whose services use the address
# the client reached; else the node's own.

load helpers

SM_OTHER_ID=$SM_TD/other
NODE2_ID=spiffe://sockmesh.test/sockmesh/node/node2

setup() {
	sm_require_node
	# node2 hosts two workloads: 10.11.0.2 is shared, fc42::2 is the server's alone
	sm_sandbox 2
	sb_add_workload node1 client "$SM_CLIENT_ID"
	sb_add_workload node2 server "$SM_SERVER_ID"
	sb_add_workload node2 other "$SM_OTHER_ID"
	sb_add_cgroup node1 nodejs
	sb_add_service 10.11.0.2 8080 server echo
	sb_add_service fc42::2 8080 server echo6
	sb_add_service 10.11.0.2 8090 other other-echo
	sb_write_catalog
	sb_start_daemon node2
}

teardown() {
	sm_teardown
}

sni_of() { # SPIFFE_ID: its server name, as docs/tunnel.md defines it
	printf '%s.svid.sockmesh.invalid' "$(printf '%s' "$1" | sha256sum | cut -c1-32)"
}

presents() { # HOST AUTHORITY [SNI]: the SPIFFE ID node2 answers a Node.js client with
	HBONE_SNI=${3:-} sb_exec node1 nodejs node "$SM_REPO/tests/interop/hbone-client.js" \
		"$1" 15008 "$2" "$SB_PKI/wl-client" 100 | jq -r .peer_spiffe_id
}

@test "no SNI: the node's SVID on a shared address, the workload's on its own address" {
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node2 server "[fc42::2]:8080" echo
	[ "$(presents 10.11.0.2 10.11.0.2:8080)" = "$NODE2_ID" ]
	[ "$(presents fc42::2 '[fc42::2]:8080')" = "$SM_SERVER_ID" ]
	[ "$(sm_status node2 | jq .tunnel.sni_selected)" -eq 0 ]
}

@test "SNI naming a local workload selects its SVID; an unknown name gets the default" {
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node2 other 10.11.0.2:8090 echo
	[ "$(presents 10.11.0.2 10.11.0.2:8080 "$(sni_of "$SM_SERVER_ID")")" = "$SM_SERVER_ID" ]
	[ "$(presents 10.11.0.2 10.11.0.2:8090 "$(sni_of "$SM_OTHER_ID")")" = "$SM_OTHER_ID" ]
	# once per connection, though Node.js's ClientHello comes twice (HelloRetryRequest to P-256)
	[ "$(sm_status node2 | jq .tunnel.sni_selected)" -eq 2 ]
	[ "$(presents 10.11.0.2 10.11.0.2:8080 "$(sni_of "$SM_TD/nobody")")" = "$NODE2_ID" ]
	[ "$(presents 10.11.0.2 10.11.0.2:8080 unrelated.example.com)" = "$NODE2_ID" ]
	[ "$(sm_status node2 | jq .tunnel.sni_selected)" -eq 2 ]
	# the inbound record names the SVID that was presented
	rec=$(sm_wait_record node2 '.type == "conn_end" and .traffic_direction == "INGRESS" and .destination.port == 8090')
	jq -e --arg o "$SM_OTHER_ID" '.tls.local_spiffe_id == $o' <<<"$rec"
}

@test "sockmeshd with tunnel.sni: node1 asks for the destination workload's SVID and gets it" {
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_start_daemon node1 --set tunnel.sni=true
	run sm_send node1 client 10.11.0.2:8080 20000 --expect echo
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	out=$(sm_wait_record node1 ".type == \"conn_end\" and .source.port == $port")
	echo "$out"
	jq -e --arg s "$SM_SERVER_ID" '.tls.peer_spiffe_id == $s and .verdict == "FORWARDED"' <<<"$out"
	[ "$(sm_status node2 | jq .tunnel.sni_selected)" -ge 1 ]
}

@test "sockmeshd without tunnel.sni on a shared address: node2 presents its node SVID" {
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_start_daemon node1
	run sm_send node1 client 10.11.0.2:8080 20000 --expect echo
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	out=$(sm_wait_record node1 ".type == \"conn_end\" and .source.port == $port")
	jq -e --arg n "$NODE2_ID" '.tls.peer_spiffe_id == $n' <<<"$out"
	[ "$(sm_status node2 | jq .tunnel.sni_selected)" -eq 0 ]
}
