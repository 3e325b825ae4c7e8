#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Credential rotation: new files in a credential directory are picked up for
# new handshakes without disturbing established streams; a broken new set, or
# a bundle that also holds another trust domain's root, is refused and the old
# one stays; certificates close to expiry are warned about.

load helpers

setup() {
	sm_require_node
	sm_standard_sandbox # writes the catalog, with a test PKI
	sb_add_cgroup node1 nodejs
	sb_start_daemon node1
	sb_start_daemon node2
}

teardown() {
	sm_teardown
}

tunnel() { # NODE FIELD
	sm_status "$1" | jq -er ".tunnel.$2"
}

# What node2 presents to a new handshake right now.
node2_presents() {
	sb_exec node1 nodejs node "$SM_REPO/tests/interop/hbone-client.js" 10.11.0.2 15008 \
		10.11.0.2:8080 "$SB_PKI/wl-client" 100 | jq -r .peer_spiffe_id
}

# Replace a credential directory's files the way a rotation agent does: write
# new files next to the old ones, then rename them into place.
install_creds() { # FROM TO
	for f in cert.pem key.pem bundle.pem; do
		cp "$1/$f" "$2/.$f.new"
		mv "$2/.$f.new" "$2/$f"
	done
}

@test "rotation under 50 streaming connections: none fails, new handshakes use the new certificate" {
	sb_serve node2 server 10.11.0.2:8080 echo
	# 10.11.0.2 serves one workload only: node2 presents its SVID (docs/tunnel.md)
	[ "$(node2_presents)" = "$SM_SERVER_ID" ]

	# 50 connections, 60 KB each at 20 KB/s: they stream across the rotation
	pids=()
	outs=()
	for i in $(seq 50); do
		sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 60000 \
			--chunk 1000 --rate 20000 --expect echo --timeout 60
		pids+=("$SB_RUN_PID")
		outs+=("$SB_RUN_OUT")
	done
	streaming() { [ "$(tunnel node1 streams_open)" -ge 50 ]; }
	sm_wait_until 20 streaming

	# the server workload's new SVID: node2's identity, which node1 also accepts
	install_creds "$SB_PKI/node2" "$SB_PKI/wl-server"
	reloaded() { [ "$(tunnel node2 credentials_reloads)" -ge 1 ]; }
	sm_wait_until 15 reloaded
	[ "$(tunnel node1 streams_open)" -ge 1 ] # still streaming: the rotation happened mid-flight
	[ "$(node2_presents)" = "spiffe://sockmesh.test/sockmesh/node/node2" ]

	failed=0
	for i in "${!pids[@]}"; do
		sb_wait_pid "${pids[$i]}" 60 || { failed=$((failed + 1)); cat "${outs[$i]}"; }
	done
	echo "failed: $failed"
	[ "$failed" -eq 0 ]
	grep -q "reloaded: spiffe://sockmesh.test/sockmesh/node/node2" "$(sb_daemon_log node2)"
}

@test "a broken new certificate is refused and the old one stays in use" {
	sb_serve node2 server 10.11.0.2:8080 echo
	echo "not a certificate" >"$SB_PKI/wl-server/.cert.pem.new"
	mv "$SB_PKI/wl-server/.cert.pem.new" "$SB_PKI/wl-server/cert.pem"
	refused() { [ "$(tunnel node2 credentials_reload_failures)" -ge 1 ]; }
	sm_wait_until 15 refused
	grep 'refused, keeping the current ones' "$(sb_daemon_log node2)"
	[ "$(node2_presents)" = "$SM_SERVER_ID" ]
	run sm_send node1 client 10.11.0.2:8080 10000 --expect echo
	[ "$status" -eq 0 ]
}

@test "a new bundle that also holds another trust domain's root is refused and the old one stays" {
	sb_serve node2 server 10.11.0.2:8080 echo
	# an SVID of sockmesh.test that only wrong.test's root vouches for
	foreign_client() {
		sb_exec node1 nodejs node "$SM_REPO/tests/interop/hbone-client.js" 10.11.0.2 15008 \
			10.11.0.2:8080 "$SB_PKI/foreign" 10 5000
	}
	refused_unknown_ca() { [ "$(tunnel node2 tls_handshakes_failed.unknown_ca)" -ge "$1" ]; }
	run foreign_client
	[ "$status" -ne 0 ]
	sm_wait_until 10 refused_unknown_ca 1

	cp "$SB_PKI/foreign-bundle.pem" "$SB_PKI/wl-server/.bundle.pem.new"
	mv "$SB_PKI/wl-server/.bundle.pem.new" "$SB_PKI/wl-server/bundle.pem"
	settled() { [ $(($(tunnel node2 credentials_reloads) + $(tunnel node2 credentials_reload_failures))) -ge 1 ]; }
	sm_wait_until 15 settled
	[ "$(tunnel node2 credentials_reload_failures)" -eq 1 ]
	[ "$(tunnel node2 credentials_reloads)" -eq 0 ]
	# the warning names the file, the CA and the trust domain it belongs to
	grep 'refused, keeping the current ones' "$(sb_daemon_log node2)" |
		grep -F "$SB_PKI/wl-server/bundle.pem" | grep -F "sockmesh wrong.test root" |
		grep -F "spiffe://wrong.test"

	# the old bundle is still the one in force: the foreign root vouches for nobody
	run foreign_client
	echo "$output"
	[ "$status" -ne 0 ]
	sm_wait_until 10 refused_unknown_ca 2
	[ "$(node2_presents)" = "$SM_SERVER_ID" ]
	run sm_send node1 client 10.11.0.2:8080 10000 --expect echo
	[ "$status" -eq 0 ]
}

@test "credentials close to expiry are counted and warned about" {
	[ "$(tunnel node2 credentials_expiring)" -eq 0 ]
	sb_stop_daemon node2
	# the test SVIDs live one day: a two-day window covers them
	sb_start_daemon node2 --set tunnel.expiry_warning=172800
	[ "$(tunnel node2 credentials_expiring)" -ge 1 ]
	grep -q 'expire in' "$(sb_daemon_log node2)"
}
