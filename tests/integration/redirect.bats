#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# sk_msg redirect (--redirect): same-node connections, and the two loopback
# hops of a tunnelled one (workload -> node1's daemon, node2's daemon ->
# workload). Data intact, redirected bytes counted by the kernel and included
# in the workloads' flow records; off by default.

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

@test "with --redirect, a peer that never joins: the client stays on TCP, intact, counted once" {
	sb_start_daemon node1 --redirect
	# a node address, so the client joins sock_pairs; an unenrolled server, so no peer does
	sb_serve node1 stranger 10.11.0.1:7777 echo
	run sm_send node1 client 10.11.0.1:7777 2000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	[ "$(sm_counter node1 redirect_bytes)" -eq 0 ]
	[ "$(sm_counter node1 redirect_peer_missing)" -eq 1 ]
	rec=$(sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")")
	echo "$rec"
	jq -e '.redirected == true and .counters.redirected_bytes_sent == 0 and
		.counters.bytes_sent == 2000000 and .counters.bytes_received == 2000000' <<<"$rec"
}

@test "with --redirect, flow control: a sender whose reader stops moves to TCP; request/response stays redirected" {
	sb_start_daemon node1 --redirect
	# a sink that reads nothing for 3 s, then everything, and answers "<bytes> <sha256>"
	sb_run node1 local python3 -c '
import hashlib, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.11.0.1", 9091))
s.listen()
print("listening", flush=True)
c, _ = s.accept()
time.sleep(3)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
c.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
c.close()'
	sm_wait_until 10 grep -q listening "$SB_RUN_OUT"
	run sm_send node1 client 10.11.0.1:9091 20000000 --expect sink --timeout 30
	echo "$output"
	[ "$status" -eq 0 ]
	moved=$(sm_counter node1 redirect_bytes)
	echo "redirect_bytes $moved, redirect_backlog $(sm_counter node1 redirect_backlog)"
	# the unread queue stopped growing at SM_REDIRECT_BACKLOG (256 KiB) and one send
	[ "$(sm_counter node1 redirect_backlog)" -eq 1 ]
	[ "$moved" -gt 0 ]
	[ "$moved" -lt 2000000 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	rec=$(sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")")
	echo "$rec"
	jq -e '.counters.bytes_sent == 20000000 and .counters.redirected_bytes_sent > 0 and
		.counters.redirected_bytes_sent < 2000000' <<<"$rec"

	# small request/response never builds a backlog: all of it redirected
	sb_serve node1 local 10.11.0.1:9090 echo
	before=$(sm_counter node1 redirect_bytes)
	run sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 2000 --size 1024
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_counter node1 redirect_backlog)" -eq 1 ]
	[ "$(($(sm_counter node1 redirect_bytes) - before))" -eq $((2 * 2000 * 1024)) ]
}

# ---- the tunnel's loopback hops ----

# delta NODE BEFORE: how far NODE's redirect_bytes moved since BEFORE
delta() {
	echo $(($(sm_counter "$1" redirect_bytes) - $2))
}

# Both workloads' conn_end records of the connection whose client port is $1:
# payload-exact both ways ($2 bytes each way; $3 back when it differs), in sock_pairs.
exact_records() {
	local port=$1 sent=$2 back=${3:-$2} out in trace
	out=$(sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")")
	echo "node1: $out"
	jq -e --argjson s "$sent" --argjson b "$back" '.redirected == true and
		.counters.bytes_sent == $s and .counters.bytes_received == $b' <<<"$out"
	# the daemon -> client direction was redirected (the accepted side joins behind the
	# client, so its sends always find it); client -> daemon unless the client's first
	# send beat its peer into the map (redirect_peer_missing)
	trace=$(jq -r .trace_id <<<"$out")
	in=$(sm_wait_record node2 ".type == \"conn_end\" and .traffic_direction == \"INGRESS\" and .trace_id == \"$trace\"")
	echo "node2: $in"
	jq -e --argjson s "$sent" --argjson b "$back" '.redirected == true and
		.counters.bytes_received == $s and .counters.bytes_sent == $b' <<<"$in"
	# all of it redirected, unless a backlog moved the server's socket to TCP
	if [ "$(sm_counter node2 redirect_backlog)" -eq 0 ]; then
		jq -e --argjson b "$back" '.counters.redirected_bytes_sent == $b' <<<"$in"
	else
		jq -e --argjson b "$back" '.counters.redirected_bytes_sent > 0 and
			.counters.redirected_bytes_sent <= $b' <<<"$in"
	fi
}

@test "tunnel with --redirect: 20 MB each way intact, both loopback hops redirected until a backlog, records exact" {
	sb_start_daemon node1 --redirect
	sb_start_daemon node2 --redirect
	[ "$(sm_status node1 | jq '[.programs[] | select(.name == "sockops_daemon") | .attached[]] | length')" -eq 1 ]
	sb_serve node2 server 10.11.0.2:8080 echo
	b1=$(sm_counter node1 redirect_bytes)
	b2=$(sm_counter node2 redirect_bytes)

	run sm_send node1 client 10.11.0.2:8080 20000000 --expect echo --timeout 60
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" received)" -eq 20000000 ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	port=$(sm_port_of "$(sm_field "$output" local)")

	d1=$(delta node1 "$b1")
	d2=$(delta node2 "$b2")
	missing=$(($(sm_counter node1 redirect_peer_missing) + $(sm_counter node2 redirect_peer_missing)))
	backlog=$(($(sm_counter node1 redirect_backlog) + $(sm_counter node2 redirect_backlog)))
	echo "redirect_bytes moved: node1 $d1, node2 $d2; redirect_peer_missing $missing; redirect_backlog $backlog"
	# node1: the daemon's writes to the client; node2: the server's writes to the daemon;
	# a sender whose reader falls SM_REDIRECT_BACKLOG behind goes on over TCP
	[ "$d1" -gt 0 ]
	[ "$d2" -gt 0 ]
	if [ "$missing" -eq 0 ] && [ "$backlog" -eq 0 ]; then
		[ "$d1" -eq 40000000 ]
		[ "$d2" -eq 40000000 ]
	fi
	exact_records "$port" 20000000
	# the daemons' own sockets are never reported: node1 has the client's records only
	[ "$(sm_records node1 '.type == "conn_start"' | wc -l)" -eq 1 ]
	[ "$(sm_records node2 '.type == "conn_start"' | wc -l)" -eq 1 ]
}

@test "tunnel with --redirect over IPv6: intact, redirected, records exact" {
	sb_start_daemon node1 --redirect
	sb_start_daemon node2 --redirect
	sb_serve node2 server '[fc42::2]:8080' echo
	b1=$(sm_counter node1 redirect_bytes)
	b2=$(sm_counter node2 redirect_bytes)

	run sm_send node1 client '[fc42::2]:8080' 2000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	[ "$(delta node1 "$b1")" -gt 0 ]
	[ "$(delta node2 "$b2")" -gt 0 ]
	exact_records "$port" 2000000
}

@test "tunnel with --redirect: half-close and a server that speaks first" {
	sb_start_daemon node1 --redirect
	sb_start_daemon node2 --redirect
	sb_serve node2 server 10.11.0.2:8083 sink
	sb_serve node2 server 10.11.0.2:8081 greet alpha
	b1=$(sm_counter node1 redirect_bytes)
	b2=$(sm_counter node2 redirect_bytes)

	# sink: the client half-closes after 3 MB; the server answers after EOF
	run sm_send node1 client 10.11.0.2:8083 3000000 --expect sink
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	reply=$(sm_field "$output" received)
	exact_records "$port" 3000000 "$reply"

	run sm_send node1 client 10.11.0.2:8081 100000 --expect greet --expect-name alpha
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	exact_records "$port" 100000 "$(sm_field "$output" received)"

	[ "$(delta node1 "$b1")" -gt 0 ]
	[ "$(delta node2 "$b2")" -gt 0 ]
}

@test "tunnel with --redirect: 200 concurrent connections all complete intact" {
	sb_start_daemon node1 --redirect
	sb_start_daemon node2 --redirect
	sb_serve node2 server 10.11.0.2:8080 echo
	pids=()
	outs=()
	for i in $(seq 200); do
		sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 50000 \
			--expect echo --timeout 60
		pids+=("$SB_RUN_PID")
		outs+=("$SB_RUN_OUT")
	done
	failed=0
	for i in "${!pids[@]}"; do
		sb_wait_pid "${pids[$i]}" 90 || { failed=$((failed + 1)); cat "${outs[$i]}"; }
	done
	echo "failed: $failed; node1 redirect_peer_missing $(sm_counter node1 redirect_peer_missing)"
	[ "$failed" -eq 0 ]
	[ "$(sm_status node1 | jq .tunnel.streams_total)" -ge 200 ]
	[ "$(sm_counter node1 redirect_bytes)" -ge 10000000 ]
	[ "$(sm_counter node2 redirect_bytes)" -ge 10000000 ]
	# every pair left sock_pairs and redirect_rx with its sockets
	empty() {
		local n
		for n in node1 node2; do
			[ "$(sm_status $n | jq '[.maps[] | select(.name == "sock_pairs" or
				.name == "redirect_rx") | .entries] | add')" -eq 0 ] || return 1
		done
	}
	sm_wait_until 10 empty
}

@test "tunnel without --redirect: nothing redirected, records exact" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	run sm_send node1 client 10.11.0.2:8080 2000000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	for n in node1 node2; do
		[ "$(sm_counter $n redirect_bytes)" -eq 0 ]
		[ "$(sm_counter $n redirect_msgs)" -eq 0 ]
		[ "$(sm_status $n | jq '.maps[] | select(.name == "sock_pairs") | .entries')" -eq 0 ]
	done
	out=$(sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")")
	echo "$out"
	jq -e '.redirected == false and .counters.bytes_sent == 2000000 and
		.counters.bytes_received == 2000000' <<<"$out"
}
