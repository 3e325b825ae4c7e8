#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Interop with an HBONE implementation nobody here wrote: Node.js's built-in
# http2 module, as a client (CONNECT over mTLS into sockmeshd) and as a server
# (that sockmeshd's outbound side reaches). Bytes are checked both ways.

load helpers

setup() {
	sm_require_node
	sm_standard_sandbox # writes the catalog, with a test PKI
	sb_add_cgroup node1 nodejs
	sb_add_cgroup node2 nodejs
}

teardown() {
	sm_teardown
}

js() { # NODE CGROUP SCRIPT ARGS...: a Node.js helper in the foreground
	local node=$1 cg=$2 script=$3
	shift 3
	sb_exec "$node" "$cg" node "$SM_REPO/tests/interop/$script" "$@"
}

@test "Node.js http2 client: CONNECT over mTLS into sockmeshd, bytes intact both ways" {
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	run js node1 nodejs hbone-client.js 10.11.0.2 15008 10.11.0.2:8080 "$SB_PKI/wl-client" 500000
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" ok)" = true ]
	# 10.11.0.2 serves one workload only: node2 presents that workload's SVID
	[ "$(sm_field "$output" peer_spiffe_id)" = "$SM_SERVER_ID" ]
	rec=$(sm_wait_record node2 '.type == "conn_end" and .traffic_direction == "INGRESS" and .destination.port == 8080')
	echo "$rec"
	jq -e --arg c "$SM_CLIENT_ID" '.source.spiffe_id == $c and .tls.peer_spiffe_id == $c and
		.counters.bytes_received == 500000 and .counters.bytes_sent == 500000' <<<"$rec"
}

@test "Node.js http2 client: a CONNECT to an address node2 does not host gets 400" {
	sb_start_daemon node2
	# 10.11.0.1:9090 is a service, but of node1
	run js node1 nodejs hbone-client.js 10.11.0.2 15008 10.11.0.1:9090 "$SB_PKI/wl-client" 10
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(sm_field "$output" status)" -eq 400 ]
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "authority_not_hosted"'
	[ "$(sm_status node2 | jq .tunnel.requests_refused)" -ge 1 ]
}

@test "Node.js http2 server: sockmeshd's outbound side tunnels to it, bytes intact" {
	sb_start_daemon node1
	log=$SB_DIR/logs/node-hbone-server.jsonl
	sb_run node2 nodejs node "$SM_REPO/tests/interop/hbone-server.js" 10.11.0.2 15008 \
		"$SB_PKI/node2" "$log"
	sm_wait_until 10 grep -q listening "$SB_RUN_OUT"

	run sm_send node1 client 10.11.0.2:8080 300000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	sm_wait_until 10 test -s "$log"
	cat "$log"
	jq -e --arg c "$SM_CLIENT_ID" '.authority == "10.11.0.2:8080" and .peer_spiffe_id == $c and
		.bytes == 300000 and (.traceparent | test("^00-[0-9a-f]{32}-[0-9a-f]{16}-01$"))' "$log"
}
