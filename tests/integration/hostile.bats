#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Malformed or hostile input on the HBONE port: plaintext, garbage after a good
# handshake, oversized headers, a client that stalls mid-handshake, and a
# flood of handshakes. Each is refused with a counted reason, what it held is
# freed, and the daemon stays healthy (a good connection still works).

load helpers

setup() {
	sm_require_node
	sm_standard_sandbox # writes the catalog, with a test PKI
	sb_add_cgroup node1 attacker
	sb_start_daemon node2 --set tunnel.handshake_timeout=2
	sb_serve node2 server 10.11.0.2:8080 echo
}

teardown() {
	sm_teardown
}

tunnel() { # FIELD of node2's status.tunnel
	sm_status node2 | jq -er ".tunnel.$1"
}

still_healthy() {
	sm_status node2 | jq -e '.ready == true' >/dev/null
	run sb_exec node1 attacker node "$SM_REPO/tests/interop/hbone-client.js" 10.11.0.2 15008 \
		10.11.0.2:8080 "$SB_PKI/wl-client" 20000
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "plaintext on 15008 is refused as protocol, counted and logged" {
	run sb_exec node1 attacker sh -c 'printf "GET / HTTP/1.1\r\nHost: x\r\n\r\n" | timeout 5 socat - TCP:10.11.0.2:15008'
	echo "$output"
	sm_wait_until 10 sh -c "[ \"\$(sm_status node2 | jq .tunnel.tls_handshakes_failed.protocol)\" -ge 1 ]" ||
		[ "$(tunnel tls_handshakes_failed.protocol)" -ge 1 ]
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "protocol"'
	still_healthy
}

@test "garbage after a good mTLS handshake is malformed_hbone, and the connection is closed" {
	run sb_exec node1 attacker sh -c "head -c 4096 /dev/urandom | timeout 5 openssl s_client \
		-connect 10.11.0.2:15008 -tls1_3 -alpn h2 -cert $SB_PKI/wl-client/cert.pem \
		-cert_chain $SB_PKI/wl-client/cert.pem \
		-key $SB_PKI/wl-client/key.pem -CAfile $SB_PKI/wl-client/bundle.pem -quiet"
	echo "$output"
	bad() { [ "$(tunnel bad_frames)" -ge 1 ]; }
	sm_wait_until 10 bad
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "malformed_hbone"'
	[ "$(tunnel connections_in)" -eq 0 ]
	still_healthy
}

@test "an oversized request header gets 400, the connection stays usable for others" {
	run sb_exec node1 attacker env HBONE_JUNK_HEADER=2000 node "$SM_REPO/tests/interop/hbone-client.js" \
		10.11.0.2 15008 10.11.0.2:8080 "$SB_PKI/wl-client" 10 5000
	echo "$output"
	[ "$status" -ne 0 ]
	[ "$(sm_field "$output" status)" -eq 400 ]
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "malformed_hbone"'
	still_healthy
}

@test "a client that stalls mid-handshake is cut off by the handshake timeout" {
	# connect and say nothing: the handshake never completes
	sb_run node1 attacker sh -c 'sleep 30 | socat - TCP:10.11.0.2:15008'
	staller=$SB_RUN_PID
	timed_out() { [ "$(tunnel tls_handshakes_failed.other)" -ge 1 ]; }
	sm_wait_until 15 timed_out
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "handshake_timeout"'
	[ "$(tunnel connections_in)" -eq 0 ]
	kill "$staller" 2>/dev/null || true
	still_healthy
}

@test "a handshake flood is bounded: the excess is refused and counted, then all is freed" {
	# 300 silent connections: more than the 256 handshakes one worker allows in flight
	sb_stop_daemon node2
	sb_start_daemon node2 --workers 1 --set tunnel.handshake_timeout=2
	sb_run node1 attacker sh -c 'for i in $(seq 300); do (sleep 20 | socat - TCP:10.11.0.2:15008 2>/dev/null &) ; done; sleep 20'
	flood=$SB_RUN_PID
	refused() { [ "$(tunnel refused_busy)" -ge 1 ]; }
	sm_wait_until 20 refused
	echo "refused_busy: $(tunnel refused_busy)"
	# the stalled handshakes time out and everything is released
	drained() { [ "$(tunnel connections_in)" -eq 0 ]; }
	sm_wait_until 20 drained
	kill "$flood" 2>/dev/null || true
	still_healthy
}
