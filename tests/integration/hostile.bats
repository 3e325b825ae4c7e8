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
	# 300 silent connections: more than the 256 handshakes one worker allows in flight (the
	# per-source limit raised to match, so this one source reaches the worker's limit)
	sb_stop_daemon node2
	sb_start_daemon node2 --workers 1 --set tunnel.handshake_timeout=10 \
		--set tunnel.max_handshakes_per_source=256
	sb_run node1 attacker sh -c 'for i in $(seq 300); do (sleep 20 | socat - TCP:10.11.0.2:15008 2>/dev/null &) ; done; sleep 20'
	flood=$SB_RUN_PID
	refused() { [ "$(sm_status node2 | jq '.tunnel.refused_busy + .tunnel.refused_per_source')" -ge 1 ]; }
	sm_wait_until 20 refused
	sm_status node2 | jq -c '.tunnel | {connections_in, refused_busy, refused_per_source}'
	[ "$(tunnel connections_in)" -eq 256 ]
	# another address (node1's IPv6 one) still gets a slot: the flood's oldest handshake makes room
	run sb_exec node1 attacker node "$SM_REPO/tests/interop/hbone-client.js" fc42::2 15008 \
		10.11.0.2:8080 "$SB_PKI/wl-client" 20000
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(tunnel handshakes_evicted)" -ge 1 ]
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "handshake_limit"'
	# the stalled handshakes time out and everything is released
	drained() { [ "$(tunnel connections_in)" -eq 0 ]; }
	sm_wait_until 20 drained
	kill "$flood" 2>/dev/null || true
	still_healthy
}

# raw_h2 BYTES: complete an mTLS handshake with a valid client SVID, then send
# the BYTES (printf's octal escapes: sh's printf has no \x) and keep the connection open 3 s for the answer.
raw_h2() {
	sb_exec node1 attacker sh -c "(printf '$1'; sleep 3) | timeout 10 openssl s_client \
		-connect 10.11.0.2:15008 -tls1_3 -alpn h2 -cert $SB_PKI/wl-client/cert.pem \
		-cert_chain $SB_PKI/wl-client/cert.pem -key $SB_PKI/wl-client/key.pem \
		-CAfile $SB_PKI/wl-client/bundle.pem -quiet" |
		od -An -tx1 | head -n 5
}

# The client connection preface and an empty SETTINGS frame.
H2_PREFACE='PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\000\000\000\004\000\000\000\000\000'

@test "a peer that completes mTLS but never sends the HTTP/2 preface is closed after the timeout" {
	sb_run node1 attacker sh -c "sleep 60 | openssl s_client -connect 10.11.0.2:15008 -tls1_3 \
		-alpn h2 -cert $SB_PKI/wl-client/cert.pem -cert_chain $SB_PKI/wl-client/cert.pem \
		-key $SB_PKI/wl-client/key.pem -CAfile $SB_PKI/wl-client/bundle.pem -quiet"
	silent=$SB_RUN_PID
	handshaken() { [ "$(tunnel tls_handshakes_ok)" -ge 1 ]; }
	sm_wait_until 10 handshaken
	# handshake_timeout is 2 s here: the preface has as long once the handshake is done
	rec=$(sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "preface_timeout"' 10)
	echo "$rec"
	jq -e --arg c "$SM_CLIENT_ID" '.tls.peer_spiffe_id == $c' <<<"$rec"
	closed() { [ "$(tunnel connections_in)" -eq 0 ]; }
	sm_wait_until 5 closed
	kill "$silent" 2>/dev/null || true
	still_healthy
}

@test "a frame larger than the advertised maximum: GOAWAY, a DROPPED record and bad_frames" {
	# a HEADERS frame header announcing 70,000 bytes (the limit is 16,384 until SETTINGS are acked)
	run raw_h2 "$H2_PREFACE\\001\\021\\160\\001\\004\\000\\000\\000\\001"
	echo "$output"
	rec=$(sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "http2_frame_size_error"')
	echo "$rec"
	[ "$(tunnel bad_frames)" -ge 1 ]
	still_healthy
}

@test "an :authority longer than the daemon keeps gets 400, never a cut that names a service" {
	# HEADERS on stream 1, END_HEADERS; HPACK: :method (static index 2) = CONNECT,
	# :authority (static index 1) = 64 bytes: the service's address, then 8080 in octal
	# behind 48 zeros, then a 9 that makes the port invalid. Its first 63 bytes would
	# name 10.11.0.2:8080, the echo service.
	local a
	a="10.11.0.2:$(printf '0%.0s' {1..48})176209"
	[ "${#a}" -eq 64 ]
	run raw_h2 "$H2_PREFACE\\000\\000\\113\\001\\004\\000\\000\\000\\001\\002\\007CONNECT\\001\\100$a"
	echo "$output"
	rec=$(sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "malformed_hbone"')
	echo "$rec"
	[ "$(tunnel requests_refused)" -ge 1 ]
	[ "$(tunnel streams_total)" -eq "$(tunnel requests_refused)" ]
	still_healthy
}

@test "CONNECT without :authority: RST_STREAM, a DROPPED record and bad_frames" {
	# HEADERS on stream 1, END_HEADERS, HPACK: :method (static index 2) = CONNECT, nothing else
	run raw_h2 "$H2_PREFACE\\000\\000\\011\\001\\004\\000\\000\\000\\001\\002\\007CONNECT"
	echo "$output"
	rec=$(sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "malformed_hbone"')
	echo "$rec"
	[ "$(tunnel bad_frames)" -ge 1 ]
	still_healthy
}
