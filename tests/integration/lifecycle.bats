#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Lifecycle: SIGTERM exits 0; same-node traffic and its accounting survive a
# daemon restart (pinned links and maps are adopted); cross-node capture works
# after a restart; `sockmeshd --cleanup` leaves nothing of ours behind; one
# daemon per node: a second one touches nothing.

load helpers

setup() {
	sm_standard_sandbox
}

teardown() {
	sm_teardown
}

@test "SIGTERM: the daemon exits with status 0" {
	sb_start_daemon node1
	sb_stop_daemon node1 TERM
	echo "exit status $SB_LAST_RC"
	[ "$SB_LAST_RC" -eq 0 ]
}

@test "a live same-node connection keeps flowing across a daemon restart" {
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo

	# 200 KB at 10 KB/s: about 20 s, far longer than a restart
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.1:9090 --bytes 200000 \
		--chunk 1000 --rate 10000 --expect echo --timeout 30
	client_pid=$SB_RUN_PID
	client_out=$SB_RUN_OUT
	flt='.traffic_direction == "EGRESS" and .source.workload == "client" and .destination.port == 9090'
	start=$(sm_wait_record node1 ".type == \"conn_start\" and $flt")
	cookie=$(jq .socket_cookie <<<"$start")

	sb_stop_daemon node1 TERM
	[ "$SB_LAST_RC" -eq 0 ]
	lines_before_restart=$(wc -l <"$(sb_flowlog node1)")
	sb_start_daemon node1
	# still streaming after the restart, otherwise this test proves nothing
	sb_alive "$client_pid"

	sb_wait_pid "$client_pid" 60
	cat "$client_out"
	[ "$SB_LAST_RC" -eq 0 ]
	[ "$(jq -r .ok "$client_out")" = true ]

	end=$(sm_wait_record node1 ".type == \"conn_end\" and .socket_cookie == $cookie")
	echo "$end"
	jq -e '.counters.bytes_sent == 200000 and .counters.bytes_received == 200000' <<<"$end"
	# written by the new daemon: after everything the old one wrote
	end_line=$(jq -c '.' "$(sb_flowlog node1)" | grep -n "\"type\":\"conn_end\"" |
		grep "\"socket_cookie\":$cookie[,}]" | head -n 1 | cut -d: -f1)
	echo "conn_end on line $end_line, old daemon wrote $lines_before_restart lines"
	[ "$end_line" -gt "$lines_before_restart" ]
}

@test "new cross-node connections work after both daemons restart" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	run sm_send node1 client 10.11.0.2:8080 300000 --expect echo
	[ "$status" -eq 0 ]

	sb_stop_daemon node1 TERM
	sb_stop_daemon node2 TERM
	sb_start_daemon node1
	sb_start_daemon node2
	before=$(sm_counter node1 connect_captured)

	run sm_send node1 client 10.11.0.2:8080 300000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_counter node1 connect_captured)" -gt "$before" ]
}

@test "sockmeshd --cleanup leaves no program, link or pin of ours" {
	sb_start_daemon node1 --redirect
	st=$(sm_status node1)
	prog_ids=$(jq -r '.programs[].prog_id' <<<"$st" | sort -u)
	link_ids=$(jq -r '.programs[].attached[]? | .link_id // empty' <<<"$st" | sort -u)
	echo "programs: $(jq -r '[.programs[].name] | join(" ")' <<<"$st")"
	[ -n "$prog_ids" ]
	[ -n "$link_ids" ]
	run sm_dir_empty "$(sb_bpffs_dir node1)"
	[ "$status" -ne 0 ]

	sb_stop_daemon node1 TERM
	run timeout 30 "$SOCKMESHD" --cleanup --bpffs "$(sb_bpffs_dir node1)"
	echo "$output"
	[ "$status" -eq 0 ]

	sm_dir_empty "$(sb_bpffs_dir node1)"
	sm_cgroup_tree_empty
	ours_left() {
		local id left=""
		for id in $prog_ids; do
			bpftool prog show id "$id" >/dev/null 2>&1 && left+=" prog:$id"
		done
		for id in $link_ids; do
			bpftool link show id "$id" >/dev/null 2>&1 && left+=" link:$id"
		done
		echo "$left"
	}
	nothing_left() {
		[ -z "$(ours_left)" ]
	}
	# programs are freed asynchronously after the last reference goes
	sm_wait_until 10 nothing_left || {
		echo "still loaded:$(ours_left)"
		false
	}
}

# second_daemon ARGS...: another sockmeshd on node1, in its netns and daemon cgroup,
# with its own control socket and no admin port unless ARGS say otherwise.
second_daemon() {
	run sb_exec node1 daemon "$SOCKMESHD" -c "$(sb_config node1)" --node node1 \
		--catalog "$(sb_catalog)" --admin "" --control-socket "$SB_DIR/node1/second.sock" "$@"
	echo "second daemon: status $status"
	echo "$output"
}

# What the running daemon has in the kernel: its links' programs and its policy.
kernel_state() {
	local st
	st=$(sm_status node1) || return 1
	jq -r '[.programs[].attached[]? | .link_id // empty] | sort | .[]' <<<"$st" |
		while read -r id; do bpftool link show id "$id" | head -n 1 | awk '{print $1, $NF, $(NF-1)}'; done
	jq -r '"policy revision \(.policy.revision)"' <<<"$st"
}

@test "a second daemon on the same bpffs, state directory or node refuses to start and touches nothing" {
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	pid=$(sb_daemon_pid node1)
	cat >"$SB_DIR/deny.yaml" <<EOF
policies:
  - name: local-closed
    selector:
      spiffe: $SM_LOCAL_ID
    rules:
      - action: DENY
        from: ["$SM_CLIENT_ID"]
EOF
	sb_cli node1 policy apply -f "$SB_DIR/deny.yaml"
	before=$(kernel_state)
	echo "before: $before"
	[[ "$before" == *"policy revision 1"* ]]

	mkdir -p "$SB_DIR/other-state" "$SB_BPFFS/other"
	# the same bpffs directory
	second_daemon --bpffs "$(sb_bpffs_dir node1)" --state-dir "$SB_DIR/other-state"
	[ "$status" -eq 1 ]
	[[ "$output" == *"another sockmeshd (pid $pid)"*"$(sb_bpffs_dir node1)"* ]]
	# the same state directory
	second_daemon --bpffs "$SB_BPFFS/other" --state-dir "$SB_DIR/node1/state"
	[ "$status" -eq 1 ]
	[[ "$output" == *"another sockmeshd (pid $pid)"*"state directory"* ]]
	# the same node: its enrollment root
	second_daemon --bpffs "$SB_BPFFS/other" --state-dir "$SB_DIR/other-state"
	[ "$status" -eq 1 ]
	[[ "$output" == *"another sockmeshd (pid $pid)"*"enrollment root"* ]]
	# and --cleanup does not pull the running daemon's programs
	run timeout 30 "$SOCKMESHD" --cleanup --bpffs "$(sb_bpffs_dir node1)"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"pid $pid"* ]]

	after=$(kernel_state)
	echo "after: $after"
	[ "$after" = "$before" ]
	run sm_send node1 client 10.11.0.1:9090 100 --expect echo
	[ "$status" -ne 0 ]
	[[ "$output" == *"ermitted"* ]]
	out=$(sb_cli node1 policy explain --from "$SM_CLIENT_ID" --to "$SM_LOCAL_ID" --port 9090 -o json) ||
		true
	echo "$out"
	jq -e '.decision == "DENY" and .agree == true' <<<"$out"
	sb_alive "$pid"
}

@test "once attached, every thread keeps only CAP_BPF, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH, and the daemon still works" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	pid=$(sb_daemon_pid node1)
	want=$(printf '%016x' $(((1 << 39) | (1 << 12) | (1 << 2))))
	threads=0
	for st in /proc/"$pid"/task/*/status; do
		threads=$((threads + 1))
		for set in CapEff CapPrm CapBnd; do
			got=$(awk -v k="$set:" '$1 == k { print $2 }' "$st")
			[ "$got" = "$want" ] || { echo "$st: $set $got, want $want"; false; }
		done
		for set in CapInh CapAmb; do
			got=$(awk -v k="$set:" '$1 == k { print $2 }' "$st")
			[ "$got" = 0000000000000000 ] || { echo "$st: $set $got, want none"; false; }
		done
	done
	echo "$threads threads checked"
	[ "$threads" -ge 3 ] # main, workers, the sink writer and the HTTP thread
	grep -q 'capabilities from now on: cap_dac_read_search,cap_net_admin,cap_bpf=ep' \
		"$(sb_daemon_log node1)"

	# what needs them: a policy revision (new maps), a tunnelled connection (SO_MARK)
	cat >"$SB_DIR/audit.yaml" <<EOF
policies:
  - name: watch
    selector:
      spiffe: $SM_SERVER_ID
    rules:
      - action: AUDIT
        from: ["$SM_CLIENT_ID"]
EOF
	run sb_cli node1 policy apply -f "$SB_DIR/audit.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	run sm_send node1 client 10.11.0.2:8080 20000 --expect echo
	[ "$status" -eq 0 ]
	kill -HUP "$pid"
	sm_wait_until 10 grep -q 'SIGHUP: catalog reloaded' "$(sb_daemon_log node1)"
}

@test "a listener below port 1024: the daemon also keeps CAP_NET_BIND_SERVICE, and binds it" {
	sb_start_daemon node1 --outbound 127.0.0.1:801 --outbound6 "[::1]:801"
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	want=$(printf '%016x' $(((1 << 39) | (1 << 12) | (1 << 10) | (1 << 2))))
	[ "$(awk '$1 == "CapEff:" { print $2 }' "/proc/$(sb_daemon_pid node1)/status")" = "$want" ]
	run sm_send node1 client 10.11.0.2:8080 2000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	# carried by the listener on :801 (the client's getpeername() is its original
	# destination, docs/tunnel.md "Real addresses")
	[ "$(sm_status node1 | jq .proxy.tunnelled)" -eq 1 ]
	[ -n "$(nsenter --net="/run/netns/$(sb_ns node1)" ss -tlnH 'sport = :801')" ]
}

# cut_by NODE SIGNAL: a tunnelled connection from node1's client to node2's echo
# is open while NODE's daemon goes away with SIGNAL (KILL: a crash; TERM: a stop
# whose 5 s drain ends before the connection does); the daemon is started again.
# Sets TRACE (the stream's trace id, from node1's conn_end) and CLIENT_OUT (the
# client's JSON line).
cut_by() {
	local node=$1 sig=$2 flt start seen client_pid cookie port
	flt='.type == "conn_start" and .traffic_direction == "EGRESS" and .captured and
		.destination.port == 8080'
	# this round's client socket is the one whose cookie no earlier record has
	seen=" $(sm_records node1 "$flt" | jq -r .socket_cookie | tr '\n' ' ')"
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 400000 \
		--chunk 1000 --rate 20000 --expect echo --timeout 60
	client_pid=$SB_RUN_PID
	CLIENT_OUT=$SB_RUN_OUT
	start=$(sm_wait_record node1 "$flt and ((.socket_cookie | tostring) as \$c |
		\"$seen\" | contains(\" \\(\$c) \") | not)")
	cookie=$(jq -r .socket_cookie <<<"$start")
	port=$(jq -r .source.port <<<"$start")
	# The stream is established end to end once echoed bytes reach the client:
	# node1 has had node2's answer. (Not the conn_start's trace id: that record
	# is often read before a worker has taken the socket, and then has none.)
	sm_wait_until 15 client_has_echo "$port"
	sb_stop_daemon "$node" "$sig" 30
	sb_wait_pid "$client_pid" 30 || true # it must fail, but promptly
	[ "$SB_LAST_RC" -ne 124 ] || { echo "the client still ran 30 s after the cut"; return 1; }
	echo "client: $(cat "$CLIENT_OUT")"
	sb_start_daemon "$node"
	TRACE=$(sm_wait_record node1 ".type == \"conn_end\" and .socket_cookie == $cookie" 20 |
		jq -r '.trace_id // empty')
	[ -n "$TRACE" ] || { echo "node1's conn_end of socket $cookie has no trace id"; return 1; }
}

# client_has_echo PORT: node1's client socket on 127.0.0.1:PORT has received bytes.
client_has_echo() {
	local n
	n=$(nsenter --net="/run/netns/$(sb_ns node1)" ss -tinH state established \
		"( sport = :$1 )" | grep -o 'bytes_received:[0-9]*' | head -n 1)
	[ "${n#bytes_received:}" -gt 0 ] 2>/dev/null
}

# assert_cut NODE REASON: NODE's conn_end of the stream names REASON and keeps
# the trace id and the tls block.
assert_cut() {
	local rec
	rec=$(sm_wait_record "$1" ".type == \"conn_end\" and .trace_id == \"$TRACE\"" 20) || return 1
	echo "$1: $rec"
	jq -e --arg r "$2" --arg c "$SM_CLIENT_ID" --arg s "$SM_SERVER_ID" '.verdict == "DROPPED" and
		.drop_reason == $r and .tls.encrypted == true and .tls.version == "TLSv1.3" and
		.tls.failure == $r and ([.tls.local_spiffe_id, .tls.peer_spiffe_id] | sort) ==
		([$c, $s] | sort) and .source.spiffe_id == $c' <<<"$rec"
}

@test "a tunnelled connection cut by a daemon crash is reset, and both nodes' records say why" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	for round in 1 2 3; do
		cut_by node1 KILL
		# never a clean end of a stream cut short: the workload sees a reset
		[ "$(jq -r .ok "$CLIENT_OUT")" = false ]
		jq -e '.error | test("reset"; "i")' "$CLIENT_OUT"
		# the new daemon wrote node1's record with what the dead one knew
		assert_cut node1 daemon_stopped
		assert_cut node2 tunnel_closed
	done
}

@test "a tunnelled connection that outlives the drain is reset, and both nodes' records say why" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	cut_by node1 TERM
	jq -e '.ok == false and (.error | test("reset"; "i"))' "$CLIENT_OUT"
	assert_cut node1 daemon_stopped
	assert_cut node2 tunnel_closed
	# the far side's daemon going away cuts it the same way, from the other end
	cut_by node2 KILL
	jq -e '.ok == false and (.error | test("reset"; "i"))' "$CLIENT_OUT"
	assert_cut node2 daemon_stopped
	assert_cut node1 tunnel_closed
}
