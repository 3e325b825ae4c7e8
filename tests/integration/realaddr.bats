#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Real addresses end to end (docs/tunnel.md, "Real addresses"): a service
# reached through the tunnel sees the calling node's address, as it would
# without the mesh; the calling workload's getpeername() is the destination
# it connected to, not the daemon's listener; both nodes' records of one
# connection carry the same source address and port.

load helpers

PEERADDR=$BATS_TEST_DIRNAME/peeraddr.py

setup() {
	sm_standard_sandbox
	sb_start_daemon node1
	sb_start_daemon node2
}

teardown() {
	sm_teardown
}

# serve NODE CGROUP HOST PORT COUNT: the probe server, returned once it listens.
serve() {
	local deadline=$((SECONDS + 10))
	sb_run "$1" "$2" python3 "$PEERADDR" serve "$3" "$4" "$5"
	while ! grep -qs '"event":' "$SB_RUN_OUT"; do
		if ! sb_alive "$SB_RUN_PID" || ((SECONDS >= deadline)); then
			cat "$SB_RUN_ERR" >&2
			return 1
		fi
		sleep 0.05
	done
}

probe() { # NODE CGROUP HOST PORT: one connection; its JSON line
	sb_exec "$1" "$2" python3 "$PEERADDR" connect "$3" "$4"
}

@test "a tunnelled IPv4 caller: the service sees node1's address, the client node2's" {
	serve node2 server 10.11.0.2 8081 1
	run probe node1 client 10.11.0.2 8081
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.seen.ip == "10.11.0.1"' <<<"$output"
	jq -e '.peer.ip == "10.11.0.2" and .peer.port == 8081' <<<"$output"
	jq -e '.local.ip == "10.11.0.1"' <<<"$output"
	# the service sees the caller's own port too
	jq -e '.seen.port == .local.port' <<<"$output"
	[ "$(sm_status node1 | jq .proxy.tunnelled)" -eq 1 ]
}

@test "a tunnelled IPv6 caller: the service sees node1's IPv6 address, the client node2's" {
	serve node2 server fc42::2 8080 1
	run probe node1 client fc42::2 8080
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.seen.ip == "fc42::1" and .seen.port == .local.port' <<<"$output"
	jq -e '.peer.ip == "fc42::2" and .peer.port == 8080' <<<"$output"
}

@test "both nodes' records of one tunnelled connection carry the same source ip:port (5-tuple join)" {
	serve node2 server 10.11.0.2 8081 1
	run probe node1 client 10.11.0.2 8081
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(jq -r .local.port <<<"$output")
	out=$(sm_wait_record node1 ".type == \"conn_end\" and .traffic_direction == \"EGRESS\" and .source.port == $port")
	echo "node1: $out"
	trace=$(jq -r .trace_id <<<"$out")
	in=$(sm_wait_record node2 ".type == \"conn_end\" and .traffic_direction == \"INGRESS\" and .trace_id == \"$trace\"")
	echo "node2: $in"
	tuple='[.source.ip, .source.port, .destination.ip, .destination.port] | map(tostring) | join(" ")'
	[ "$(jq -r "$tuple" <<<"$out")" = "10.11.0.1 $port 10.11.0.2 8081" ]
	[ "$(jq -r "$tuple" <<<"$in")" = "10.11.0.1 $port 10.11.0.2 8081" ]
	# and the join by 5-tuple alone finds node2's record
	sm_has_record node2 ".type == \"conn_end\" and .traffic_direction == \"INGRESS\" and
		.source.ip == \"10.11.0.1\" and .source.port == $port and .destination.port == 8081"
}

@test "same-node connections keep their addresses" {
	serve node1 local 10.11.0.1 9090 1
	run probe node1 client 10.11.0.1 9090
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.seen.ip == "10.11.0.1" and .seen.port == .local.port' <<<"$output"
	jq -e '.peer.ip == "10.11.0.1" and .peer.port == 9090' <<<"$output"
	[ "$(sm_status node1 | jq .proxy.tunnelled)" -eq 0 ]
}

# in_ns NODE CMD...: CMD in NODE's network namespace
in_ns() {
	local node=$1
	shift
	nsenter --net="/run/netns/$(sb_ns "$node")" "$@"
}

@test "the daemon sets up its routing in its namespace at start and removes it at stop" {
	run sm_realaddr_routing node2
	echo "$output"
	[ "$(grep -c 'fwmark 0x5ec0df lookup 15006' <<<"$output")" -eq 2 ]
	grep -q '^local default dev lo' <<<"$output"
	[ "$(grep -c '^local default dev lo' <<<"$output")" -eq 2 ]
	[ "$(grep -cx 1 <<<"$output")" -eq 3 ]
	grep -q "real addresses: tunnelled callers reach local services" "$(sb_daemon_log node2)"

	sb_stop_daemon node2
	run sm_realaddr_routing node2
	echo "$output"
	[ "$(grep -cx 0 <<<"$output")" -eq 3 ]
	[ "$(grep -c . <<<"$output")" -eq 3 ]

	# a daemon that was killed left it all: the next one takes it as is, and removes it at stop
	sb_start_daemon node2
	sb_stop_daemon node2 KILL
	[ "$(sm_realaddr_routing node2 | grep -c 'fwmark 0x5ec0df')" -eq 2 ]
	sb_start_daemon node2
	sb_stop_daemon node2
	# and the sysctls go back to what the namespace had before the first daemon
	# (paths.state_dir/transparent-sysctls kept them across the SIGKILL)
	run sm_realaddr_routing node2
	echo "$output"
	[ "$(grep -cx 0 <<<"$output")" -eq 3 ]
	[ "$(grep -c . <<<"$output")" -eq 3 ]
	[ ! -e "$SB_DIR/node2/state/transparent-sysctls" ]
}

@test "datapath.transparent_mark: 0 turns real addresses off: no routing, callers from loopback" {
	sb_stop_daemon node2
	echo "datapath: {transparent_mark: 0}" >>"$(sb_config node2)"
	sb_start_daemon node2
	run sm_realaddr_routing node2
	echo "$output"
	[ -z "$(grep -v -x 0 <<<"$output")" ]
	serve node2 server 10.11.0.2 8081 1
	run probe node1 client 10.11.0.2 8081
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.seen.ip == "127.0.0.1"' <<<"$output"
}

@test "a peer's forwarded header picks only its own node's address; the port is its word, from 1024 up" {
	sm_require_node
	sb_add_cgroup node1 nodejs
	serve node2 server 10.11.0.2 8081 4
	out=$SB_RUN_OUT
	hbone() { # FORWARDED: one CONNECT from node1 (not captured) with that header
		sb_exec node1 nodejs env HBONE_FORWARDED="$1" \
			node "$SM_REPO/tests/interop/hbone-client.js" 10.11.0.2 15008 10.11.0.2:8081 \
			"$SB_PKI/wl-client" 0 || true
	}
	seen() { sed -n "$1p" "$out"; } # the Nth peer the server printed (line 1 is "listening")
	has_seen() { [ -n "$(seen "$1")" ]; }
	# node2's own address: not the peer's node, so ignored with its port
	run hbone 'for="10.11.0.2:1234"'
	echo "$output"
	jq -e '.status == 200' <<<"$output"
	sm_wait_until 10 has_seen 2
	echo "server saw: $(seen 2)"
	[[ "$(seen 2)" == "10.11.0.1 "* ]]
	[ "$(seen 2)" != "10.11.0.1 1234" ]
	# an address nobody holds: the same
	run hbone 'for="192.0.2.7:1235"'
	sm_wait_until 10 has_seen 3
	echo "server saw: $(seen 3)"
	[[ "$(seen 3)" == "10.11.0.1 "* ]]
	[ "$(seen 3)" != "10.11.0.1 1235" ]
	# its own address: the port it names is used
	run hbone 'for="10.11.0.1:1236"'
	sm_wait_until 10 has_seen 4
	echo "server saw: $(seen 4)"
	[ "$(seen 4)" = "10.11.0.1 1236" ]
	# but never a privileged port, which a service might trust as root's on node1
	run hbone 'for="10.11.0.1:999"'
	sm_wait_until 10 has_seen 5
	echo "server saw: $(seen 5)"
	[[ "$(seen 5)" == "10.11.0.1 "* ]]
	[ "$(seen 5)" != "10.11.0.1 999" ]
}
