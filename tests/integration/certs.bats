#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Every bad certificate kind is refused in both directions with the reason an
# operator can act on: as a client presenting it to sockmeshd's inbound port
# (Node.js http2 client), and as a server sockmeshd's outbound side reaches
# (Node.js http2 server posing as node2). Plus no client certificate, a server
# with the wrong identity, a TLS 1.2-only peer, and a trust bundle holding
# another trust domain's root, refused at start. The Node.js side runs at
# OpenSSL security level 0 (HBONE_SECLEVEL) so it can present the weak kinds.

load helpers

# bad kind (scripts/test-pki.sh) → the reason sockmeshd reports
declare -gA REASON=(
	[expired]=expired [not_yet_valid]=not_yet_valid [unknown_ca]=unknown_ca
	[wrong_trust_domain]=wrong_trust_domain [no_uri_san]=bad_san [two_uri_sans]=bad_san
	[not_spiffe_uri]=bad_san [leaf_is_ca]=leaf_is_ca [key_cert_sign]=bad_key_usage
	[crl_sign]=bad_key_usage [no_key_usage]=bad_key_usage [eku_wrong]=bad_eku
	[sha1_signed]=weak_signature [int_sha1_signed]=weak_signature [int_rsa1024]=weak_key
)

setup() {
	sm_require_node
	sm_standard_sandbox # writes the catalog, with a test PKI
	sb_add_cgroup node1 nodejs
	sb_add_cgroup node2 nodejs
}

teardown() {
	sm_teardown
}

failed_count() { # NODE REASON
	sm_status "$1" | jq -er --arg r "$2" '.tunnel.tls_handshakes_failed[$r]'
}

@test "inbound: each bad client certificate kind is refused with its reason" {
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	[ "${#REASON[@]}" -eq 15 ] # the table is really there (a loop over nothing passes)
	for kind in "${!REASON[@]}"; do
		reason=${REASON[$kind]}
		before=$(failed_count node2 "$reason")
		flt=".verdict == \"DROPPED\" and .drop_reason == \"$reason\""
		records_before=$(sm_records node2 "$flt" | wc -l)
		run sb_exec node1 nodejs env HBONE_SECLEVEL=0 node "$SM_REPO/tests/interop/hbone-client.js" \
			10.11.0.2 15008 10.11.0.2:8080 "$SB_PKI/bad/$kind" 10 5000
		echo "$kind: $output"
		[ "$status" -ne 0 ]
		after=$(failed_count node2 "$reason")
		echo "$kind: tls_handshakes_failed.$reason $before -> $after"
		[ "$after" -eq $((before + 1)) ]
		# a new DROPPED record with this reason (several kinds share one)
		more_records() { [ "$(sm_records node2 "$flt" | wc -l)" -gt "$records_before" ]; }
		sm_wait_until 10 more_records
	done
	# the good client still gets through after all that
	run sb_exec node1 nodejs node "$SM_REPO/tests/interop/hbone-client.js" 10.11.0.2 15008 \
		10.11.0.2:8080 "$SB_PKI/wl-client" 1000
	[ "$status" -eq 0 ]
}

@test "inbound: no client certificate is refused as no_client_certificate" {
	sb_start_daemon node2
	mkdir -p "$SB_DIR/nocert"
	HBONE_CA=$SB_PKI/ca/root.pem run sb_exec node1 nodejs env HBONE_CA="$SB_PKI/ca/root.pem" \
		node "$SM_REPO/tests/interop/hbone-client.js" 10.11.0.2 15008 10.11.0.2:8080 \
		"$SB_DIR/nocert" 10 5000
	echo "$output"
	[ "$status" -ne 0 ]
	[ "$(failed_count node2 no_client_certificate)" -eq 1 ]
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "no_client_certificate"'
}

@test "outbound: each bad server certificate kind, and a wrong identity, is refused with its reason" {
	sb_start_daemon node1
	declare -A OUT=([node3]=identity_mismatch)
	for kind in "${!REASON[@]}"; do OUT[bad/$kind]=${REASON[$kind]}; done
	[ "${#OUT[@]}" -eq 16 ]
	for creds in "${!OUT[@]}"; do
		reason=${OUT[$creds]}
		log=$SB_DIR/logs/server-${creds//\//-}.jsonl
		sb_run node2 nodejs env HBONE_SECLEVEL=0 node "$SM_REPO/tests/interop/hbone-server.js" \
			10.11.0.2 15008 "$SB_PKI/$creds" "$log"
		server=$SB_RUN_PID
		sm_wait_until 10 grep -q listening "$SB_RUN_OUT"
		before=$(failed_count node1 "$reason")
		flt=".type == \"conn_end\" and .captured and .verdict == \"DROPPED\" and .drop_reason == \"$reason\" and .tls.failure == \"$reason\""
		records_before=$(sm_records node1 "$flt" | wc -l)
		run sm_send node1 client 10.11.0.2:8080 1000 --expect echo --timeout 15
		echo "$creds: $output"
		[ "$status" -ne 0 ]
		[[ "$(sm_field "$output" error)" != *timeout* ]]
		after=$(failed_count node1 "$reason")
		echo "$creds: tls_handshakes_failed.$reason $before -> $after"
		[ "$after" -eq $((before + 1)) ]
		# the client socket's conn_end says DROPPED and why
		more_records() { [ "$(sm_records node1 "$flt" | wc -l)" -gt "$records_before" ]; }
		sm_wait_until 10 more_records
		[ ! -s "$log" ] # nothing reached the impostor
		kill "$server"
		sb_wait_pid "$server" 10 || true
	done
}

@test "a trust bundle that also holds another trust domain's root is refused at start" {
	# node2's bundle for sockmesh.test gains the root of wrong.test (its URI SAN says so)
	cp "$SB_PKI/foreign-bundle.pem" "$SB_PKI/node2/bundle.pem"
	if sb_start_daemon node2; then
		echo "sockmeshd started with wrong.test's root in sockmesh.test's bundle"
		return 1
	fi
	[ "$SB_LAST_RC" -ne 0 ]
	# one line names the file, the CA and the trust domain it belongs to
	grep -F "$SB_PKI/node2/bundle.pem" "$(sb_daemon_log node2)" |
		grep -F "sockmesh wrong.test root" | grep -F "spiffe://wrong.test"
}
