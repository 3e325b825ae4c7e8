#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The HBONE tunnel (tunnel.hbone): captured cross-node connections travel as
# HTTP/2 CONNECT streams over mutual TLS 1.3 between the node daemons, with
# SPIFFE identities checked at both ends.

load helpers

setup() {
	sm_standard_sandbox # writes the catalog, with a test PKI
	sb_start_daemon node1
	sb_start_daemon node2
}

teardown() {
	sm_teardown
}

tunnel() { # NODE FIELD: a number from status.tunnel
	sm_status "$1" | jq -er ".tunnel.$2"
}

@test "IPv4 and IPv6 cross-node connections go through the mTLS tunnel, 4 MB intact" {
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node2 server "[fc42::2]:8080" echo
	for dst in 10.11.0.2:8080 "[fc42::2]:8080"; do
		run sm_send node1 client "$dst" 4000000 --expect echo
		echo "$output"
		[ "$status" -eq 0 ]
		[ "$(sm_field "$output" received)" -eq 4000000 ]
		[ "$(sm_field "$output" sent_sha256)" = "$(sm_field "$output" received_sha256)" ]
	done
	[ "$(tunnel node1 streams_total)" -ge 2 ]
	[ "$(tunnel node1 tls_handshakes_ok)" -ge 1 ]
	[ "$(tunnel node2 tls_handshakes_ok)" -ge 1 ]
	[ "$(sm_status node1 | jq .proxy.tunnelled)" -eq 2 ]
}

@test "both nodes' records carry the tls block and join on the trace id" {
	sb_serve node2 server 10.11.0.2:8080 echo
	run sm_send node1 client 10.11.0.2:8080 123456 --expect echo
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	out=$(sm_wait_record node1 ".type == \"conn_end\" and .source.port == $port")
	echo "node1: $out"
	# node2's address serves one workload only: node2 presents that workload's SVID
	jq -e --arg c "$SM_CLIENT_ID" --arg s "$SM_SERVER_ID" '.verdict == "FORWARDED" and .tls.encrypted == true and
		.tls.version == "TLSv1.3" and (.tls.cipher | test("GCM")) and
		.tls.local_spiffe_id == $c and
		.tls.peer_spiffe_id == $s and
		.counters.bytes_sent == 123456 and .counters.bytes_received == 123456' <<<"$out"
	trace=$(jq -r .trace_id <<<"$out")
	[[ "$trace" =~ ^00-[0-9a-f]{32}-[0-9a-f]{16}-01$ ]]

	in=$(sm_wait_record node2 ".type == \"conn_end\" and .traffic_direction == \"INGRESS\" and .trace_id == \"$trace\"")
	echo "node2: $in"
	jq -e --arg c "$SM_CLIENT_ID" --arg s "$SM_SERVER_ID" '.source.spiffe_id == $c and
		.source.workload == "client" and .destination.spiffe_id == $s and
		.tls.encrypted == true and .tls.peer_spiffe_id == $c and
		.counters.bytes_sent == 123456 and .counters.bytes_received == 123456' <<<"$in"
}

# hold_join NODE: gdb holds NODE's worker (non-stop: the other threads run on) when it
# first records what it knows of a stream, which is after it has connected to the
# service: the service's socket, and its conn_start in the ring, exist by then. Sets
# HOLDER, HOLD_OUT and RELEASE (touch it to let go); a sender from node1's client
# (SENDER, SEND_OUT) is the stream, and is held once this returns.
hold_join() {
	command -v gdb >/dev/null || {
		echo "gdb is not installed (scripts/install-deps.sh installs it)" >&2
		return 1
	}
	RELEASE=$SB_DIR/release
	sb_run "$1" stranger /usr/bin/python3 "$SM_REPO/tests/tools/breakhold.py" \
		"$(sb_daemon_pid "$1")" join_update --until "$RELEASE" --max 30
	HOLDER=$SB_RUN_PID HOLD_OUT=$SB_RUN_OUT
	sm_wait_until 60 grep -qs '"event":"ready"' "$HOLD_OUT" || return 1
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 1000 --expect echo \
		--timeout 30
	SENDER=$SB_RUN_PID SEND_OUT=$SB_RUN_OUT
	sm_wait_until 15 grep -qs '"event":"held"' "$HOLD_OUT"
}

# release_join: let the held worker go; the sender completes.
release_join() {
	touch "$RELEASE"
	sb_wait_pid "$HOLDER" 15
	grep '"event":"released"' "$HOLD_OUT"
	sb_wait_pid "$SENDER" 30
	grep -q '"ok":true' "$SEND_OUT" || { cat "$SEND_OUT"; false; }
}

# the accepting node's conn_start records of callers other than node2's own server
FROM_CALLER='.type == "conn_start" and .traffic_direction == "INGRESS" and .source.workload != "server"'

@test "the accepting node's first record names the caller, however late the worker gets to say who called" {
	sb_serve node2 server 10.11.0.2:8080 echo
	hold_join node2
	# a connection on node2 made after that, whose records never wait: once they are
	# in the log, the main thread has read past the held connection's conn_start
	run sm_send node2 server 10.11.0.2:8080 10 --expect echo
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	sm_wait_record node2 ".type == \"conn_start\" and .traffic_direction == \"INGRESS\" and .source.port == $port"
	# ... and has not written that one without the caller
	run sm_records node2 "$FROM_CALLER"
	echo "written while the worker was held: $output"
	[ -z "$output" ]
	release_join

	start=$(sm_wait_record node2 "$FROM_CALLER")
	echo "node2: $start"
	jq -e --arg c "$SM_CLIENT_ID" '.source.workload == "client" and .source.spiffe_id == $c and
		.tls.encrypted == true and .tls.peer_spiffe_id == $c' <<<"$start"
	[ "$(sm_records node2 "$FROM_CALLER" | wc -l)" -eq 1 ]
	# status counts the wait, and no record that gave up on it
	st=$(sm_status node2)
	jq -e '.flows.waited >= 1 and .flows.waited_expired == 0' <<<"$st"
}

@test "a record waits for the caller's name at most 5 s, then is written without it, and counted" {
	sb_serve node2 server 10.11.0.2:8080 echo
	hold_join node2
	t0=$(date +%s%N)
	gave_up() { [ "$(sm_status node2 | jq .flows.waited_expired)" -ge 1 ]; }
	sm_wait_until 15 gave_up
	waited_ms=$((($(date +%s%N) - t0) / 1000000))
	echo "written without the caller after $waited_ms ms"
	[ "$waited_ms" -ge 4500 ] # not before the bound
	# written while the worker is still held: no caller, the host's identity
	start=$(sm_wait_record node2 "$FROM_CALLER" 5)
	echo "node2: $start"
	jq -e '(.source | has("workload") | not) and .source.identity == 1' <<<"$start"
	release_join
	[ "$(sm_status node2 | jq .flows.waited_expired)" -eq 1 ]
}

@test "streams share pooled connections: 20 connections, one TLS connection (one worker)" {
	sb_stop_daemon node1
	sb_start_daemon node1 --workers 1
	sb_serve node2 server 10.11.0.2:8080 echo
	for i in $(seq 20); do
		run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
		[ "$status" -eq 0 ]
	done
	[ "$(tunnel node1 streams_total)" -eq 20 ]
	[ "$(tunnel node1 connections_out)" -eq 1 ]
	[ "$(tunnel node1 tls_handshakes_ok)" -eq 1 ]
}

@test "two workers: the kernel spreads connections over both, each pools its own TLS connection" {
	sb_stop_daemon node1
	sb_start_daemon node1 --workers 2
	sb_serve node2 server 10.11.0.2:8080 echo
	for i in $(seq 40); do
		run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
		[ "$status" -eq 0 ]
	done
	st=$(sm_status node1)
	jq '.workers' <<<"$st"
	# SO_REUSEPORT hashes each connection's 4-tuple: 40 all on one worker is a 2^-39 chance
	jq -e '(.workers | length) == 2 and ([.workers[].accepted] | all(. > 0) and add == 40) and
		([.workers[].streams_total] | add == 40) and
		([.workers[].connections_out] | all(. == 1))' <<<"$st"
	[ "$(tunnel node1 tls_handshakes_ok)" -eq 2 ]
}

@test "busy polling: by default answers through the tunnel are found by polling; listeners.busy_poll 0 never polls" {
	sb_serve node2 server 10.11.0.2:8080 echo
	busy_hits() { sm_status "$1" | jq '[.workers[].busy_poll_hits] | add'; }
	# 2,000 one-byte round trips: node2's worker waits some microseconds for the
	# service's answer, node1's for node2's; within 100 µs they are polled, not woken
	sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.2:8080 --count 2000 --size 1 \
		--timeout 60 >/dev/null
	n1=$(busy_hits node1) n2=$(busy_hits node2)
	echo "busy_poll_hits: node1 $n1, node2 $n2"
	[ "$((n1 + n2))" -gt 0 ]
	for n in node1 node2; do
		sb_stop_daemon $n
		sb_start_daemon $n --set listeners.busy_poll=0
	done
	sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.2:8080 --count 2000 --size 1 \
		--timeout 60 >/dev/null
	[ "$(busy_hits node1)" -eq 0 ]
	[ "$(busy_hits node2)" -eq 0 ]
	[ "$(tunnel node1 streams_total)" -ge 1 ]
}

@test "200 concurrent connections through the tunnel all complete intact" {
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
	echo "failed: $failed"
	[ "$failed" -eq 0 ]
	[ "$(tunnel node1 streams_total)" -ge 200 ]
}

@test "a conn_start written while the tunnel's handshake is under way already says encrypted" {
	sb_serve node2 server 10.11.0.2:8080 echo
	kill -STOP "$(sb_daemon_pid node2)" # node2's kernel accepts; its TLS answer waits
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 1000 --expect echo \
		--timeout 30
	client=$SB_RUN_PID out=$SB_RUN_OUT
	start=$(sm_wait_record node1 '.type == "conn_start" and .destination.port == 8080') ||
		{ kill -CONT "$(sb_daemon_pid node2)"; false; }
	kill -CONT "$(sb_daemon_pid node2)"
	echo "$start"
	jq -e '.tls.encrypted == true and .tls.version == null and .tls.cipher == null' <<<"$start"
	sb_wait_pid "$client" 30 || { cat "$out"; false; }
	end=$(sm_wait_record node1 '.type == "conn_end" and .destination.port == 8080')
	jq -e '.tls.encrypted == true and .tls.version == "TLSv1.3"' <<<"$end"
}

@test "a busy service at the node's address never runs the daemon out of ports" {
	# The daemon closes first (it forwards the client's FIN), so the TIME_WAITs
	# are its own; from the caller's address, as any socket not on lo, they
	# would hold all 32 ports of these ranges for a minute. Bound to lo, the
	# kernel reuses one after a second, also for the caller's own port.
	ip netns exec "$(sb_ns node1)" sysctl -qw net.ipv4.ip_local_port_range="40000 40031"
	ip netns exec "$(sb_ns node2)" sysctl -qw net.ipv4.ip_local_port_range="40000 40031"
	sb_serve node2 server 10.11.0.2:8080 echo
	for round in 1 2 3; do
		run sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.2:8080 --count 24 --size 1 \
			--new-conn --timeout 10
		echo "round $round: $output"
		[ "$status" -eq 0 ]
		sleep 2.2 # the kernel's reuse delay is 1 s, counted in whole seconds before 6.13
	done
	tw=$(ip netns exec "$(sb_ns node2)" ss -Htn state time-wait dst 10.11.0.2:8080)
	echo "$tw"
	[ "$(grep -c . <<<"$tw")" -ge 20 ]
	# every one of them the daemon's, from node1's address, on lo; and the
	# daemon never fell back to calling from the loopback address
	[ -z "$(grep -v '10\.11\.0\.1%lo:' <<<"$tw")" ]
	! grep -q "calling it from the loopback address instead" "$(sb_daemon_log node2)"
}

# freeze NODE CGROUP 1|0: freeze (1) or thaw (0) every process of the cgroup
# (cgroup v2 cgroup.freeze) and wait until the kernel says it is done.
freeze() {
	local cg
	cg=$(sb_cgroup_dir "$1" "$2")
	echo "$3" >"$cg/cgroup.freeze"
	sm_wait_until 10 grep -qx "frozen $3" "$cg/cgroup.events"
}

# Small TCP buffers on the tunnel hop (far less than one stream's 1 MiB
# HTTP/2 window, so the TLS socket fills before the window runs out), an
# upload of BYTES at RATE bytes/s to node2's sink, and node2's daemon stopped
# once it has answered the CONNECT, with most of the upload still to come.
# Sets client and out.
upload_then_stop_node2() { # BYTES RATE TIMEOUT
	ip netns exec "$(sb_ns node1)" sysctl -qw net.ipv4.tcp_wmem="4096 32768 65536"
	ip netns exec "$(sb_ns node2)" sysctl -qw net.ipv4.tcp_rmem="4096 32768 65536"
	sb_serve node2 server 10.11.0.2:8083 sink
	[ "$(tunnel node1 tls_send_blocked)" -eq 0 ]
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8083 --bytes "$1" --chunk 4096 \
		--rate "$2" --expect sink --timeout "$3"
	client=$SB_RUN_PID out=$SB_RUN_OUT
	# The client is paused once node1's outbound listener has taken its first
	# bytes: node1 holds them until node2 answers the CONNECT. Waiting for
	# node2's answer with the client running let a slow machine pass the whole
	# upload through node2 before it was stopped (and node1 never blocked).
	sent_some() {
		local n
		n=$(sm_tcp_field node1 bytes_acked "( dport = :15001 )") && [ "$n" -gt 1 ]
	}
	sm_wait_until 15 sent_some
	freeze node1 client 1
	# The sink has bytes: node2 has answered (node1 sends DATA only after the
	# answer). Stopped before that answer, node1 would hold the upload unsent,
	# not in TLS.
	sm_wait_until 15 sm_tcp_received node2 "( sport = :8083 )"
	kill -STOP "$(sb_daemon_pid node2)"
	freeze node1 client 0
}

@test "a stalled receiving daemon fills the TLS socket: the sender waits, then every byte arrives" {
	upload_then_stop_node2 64000000 32000000 60 # 2 s at that rate
	blocked=0
	for ((i = 0; i < 100; i++)); do
		blocked=$(tunnel node1 tls_send_blocked) || break
		((blocked > 0)) && break
		sleep 0.1
	done
	sleep 0.5 # node1 waits on EPOLLOUT meanwhile
	kill -CONT "$(sb_daemon_pid node2)"
	echo "tls_send_blocked: $blocked"
	[ "$blocked" -gt 0 ]
	sb_wait_pid "$client" 60 || { cat "$out" "${out%.out}.err"; false; }
	cat "$out"
	jq -e '.ok and .sent == 64000000' "$out" # the sink's reply line: count and sha256 agree
	[ "$(tunnel node1 streams_failed)" -eq 0 ]
}

@test "the tail of an upload waits in the TLS buffer and goes out once the stalled peer resumes" {
	# 300 kB stays under the 512 KiB after which node2 sends a WINDOW_UPDATE,
	# and the sink answers only at the end: once node2 resumes nothing comes
	# back to node1, so only the socket's EPOLLOUT can send what waits there.
	upload_then_stop_node2 300000 200000 30
	# the client sends all in 1.5 s at its rate, then its FIN: node1 has acked
	# that when the client's socket is in FIN-WAIT-2. node1 then holds the rest:
	# wait for both
	port=$(sm_egress_start node1 8083)
	sm_wait_until 20 sm_tcp_in_state node1 fin-wait-2 "( sport = :$port )"
	blocked=0
	for ((i = 0; i < 150; i++)); do
		blocked=$(tunnel node1 tls_send_blocked) || break
		((blocked > 0)) && break
		sleep 0.1
	done
	kill -CONT "$(sb_daemon_pid node2)"
	echo "tls_send_blocked: $blocked"
	[ "$blocked" -gt 0 ]
	sb_wait_pid "$client" 20 || { cat "$out" "${out%.out}.err"; false; }
	cat "$out"
	jq -e '.ok and .sent == 300000' "$out"
}

@test "half-close and a server that speaks first work through the tunnel" {
	sb_serve node2 server 10.11.0.2:8083 sink
	sb_serve node2 server 10.11.0.2:8081 greet alpha
	run sm_send node1 client 10.11.0.2:8083 300000 --expect sink
	echo "$output"
	[ "$status" -eq 0 ]
	run sm_send node1 client 10.11.0.2:8081 1000 --expect greet --expect-name alpha
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "refused at the far end: the client sees a close, node2 records upstream_refused" {
	run sm_send node1 client 10.11.0.2:8099 1000 --expect echo --timeout 20
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$(sm_field "$output" error)" != *timeout* ]]
	sm_wait_record node2 '.verdict == "DROPPED" and .drop_reason == "upstream_refused"'
	port=$(sm_port_of "$(sm_field "$output" local)")
	sm_wait_record node1 ".type == \"conn_end\" and .source.port == $port and .verdict == \"DROPPED\""
}

@test "keepalive: answered PINGs keep an idle pooled connection; a silent peer is cut off" {
	sb_stop_daemon node1
	sb_stop_daemon node2
	# one worker: both connections below must share its one pooled TLS connection
	sb_start_daemon node1 --workers 1 --set tunnel.keepalive_interval=1 \
		--set tunnel.keepalive_timeout=2
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo

	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]
	sleep 4 # several PINGs go out and are answered while the pool connection idles
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]
	[ "$(tunnel node1 tls_handshakes_ok)" -eq 1 ] # the same connection served both
	[ "$(tunnel node1 keepalive_failures)" -eq 0 ]

	# a stream in flight, then node2's daemon stops answering (its kernel still ACKs TCP)
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 200000 \
		--chunk 1000 --rate 10000 --expect echo --timeout 60
	client=$SB_RUN_PID
	streaming() { [ "$(tunnel node1 streams_open)" -ge 1 ]; }
	sm_wait_until 10 streaming
	kill -STOP "$(sb_daemon_pid node2)"
	cut_off() { [ "$(tunnel node1 keepalive_failures)" -ge 1 ]; }
	sm_wait_until 15 cut_off
	kill -CONT "$(sb_daemon_pid node2)"
	# the client learns of it as a reset, not by hanging until its own timeout
	sb_wait_pid "$client" 20 || true
	cat "$SB_RUN_OUT"
	[ "$SB_LAST_RC" -ne 124 ]
	[ "$(jq -r .ok "$SB_RUN_OUT")" = false ]
	[[ "$(jq -r .error "$SB_RUN_OUT")" != *timeout* ]]
}
