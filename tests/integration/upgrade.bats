#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Upgrade in place (SIGUSR2, docs/operations.md "Restart and upgrade"): the
# running daemon starts the binary on disk as its successor and hands it the
# listening sockets and the instance locks, so the node refuses nothing:
# new cross-node connections every 10 ms across the swap all succeed; a
# tunnelled transfer that ends within daemon.drain_timeout keeps every byte;
# one that outlives it is reset and both nodes' records say why; same-node
# traffic is the kernel's and flows on; the successor is a new process on the
# same listening sockets. A successor that cannot start changes nothing.

load helpers

SMDIAL=$BATS_TEST_DIRNAME/../tools/smdial.py

setup() {
	sm_standard_sandbox
}

teardown() {
	sm_teardown
}

# listeners NODE: the inodes of the daemon's listening sockets in NODE's netns
# (TCP: outbound, HBONE inbound, admin; unix: the control socket), sorted.
listeners() {
	local ns sock
	ns=/run/netns/$(sb_ns "$1")
	sock=$(sb_socket "$1")
	{
		nsenter --net="$ns" ss -tlnHe | grep -oE ':(15001|15008|15020) .*ino:[0-9]+' |
			sed -E 's/^:([0-9]+) .*ino:([0-9]+)/tcp:\1 ino:\2/'
		nsenter --net="$ns" ss -xlH | awk -v p="$sock" '$5 == p { print "unix ino:" $6 }'
	} | sort
}

# upgrade NODE: SIGUSR2 to NODE's daemon, then upgrade_done NODE.
upgrade() {
	OLD_PID=$(sb_daemon_pid "$1")
	kill -USR2 "$OLD_PID"
	upgrade_done "$1"
}

# upgrade_done NODE: wait (bounded) for NODE's daemon (OLD_PID) to exit and a
# new one (another PID) to answer on the control socket. Sets NEW_PID.
upgrade_done() {
	local node=$1
	sm_wait_until 60 bash -c "! kill -0 $OLD_PID 2>/dev/null" || return 1
	NEW_PID=$(sm_status "$node" | jq -er .pid) || return 1
	echo "$node: pid $OLD_PID -> $NEW_PID"
	[ "$NEW_PID" != "$OLD_PID" ] || return 1
	kill -0 "$NEW_PID"
	# shellcheck disable=SC2034 # sandbox.sh's associative array: teardown stops this one
	SB_DAEMON_PID[$node]=$NEW_PID
	SB_PIDS+=("$NEW_PID")
}

dial_count() { # PROGRESS_FILE: attempts so far
	[ -s "$1" ] && cut -d' ' -f1 "$1" || echo 0
}

at_least_dials() { # PROGRESS_FILE N
	[ "$(dial_count "$1")" -ge "$2" ]
}

log_has() { # NODE PATTERN
	grep -qE "$2" "$(sb_daemon_log "$1")"
}

@test "SIGUSR2: a new daemon takes the listeners over; nothing refused, drained streams kept or reset with a reason" {
	local before after dial_pid dial_out stop prog n0 a_pid a_out b_pid b_out s_pid s_out
	local flt cookie trace rec bin old_ino
	# node1 runs a copy, replaced on disk before the upgrade as a package manager would
	bin=$SB_DIR/bin/sockmeshd
	mkdir -p "$SB_DIR/bin"
	cp "$SOCKMESHD" "$bin"
	SOCKMESHD=$bin sb_start_daemon node1 --set daemon.drain_timeout=10
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node1 local 10.11.0.1:9090 echo
	before=$(listeners node1)
	echo "listeners before: $before"
	[ "$(wc -l <<<"$before")" -ge 4 ]

	stop=$SB_DIR/dial.stop
	prog=$SB_DIR/dial.progress
	sb_run node1 client python3 "$SMDIAL" --connect 10.11.0.2:8080 --interval 10 \
		--stop-file "$stop" --progress "$prog" --duration 120
	dial_pid=$SB_RUN_PID dial_out=$SB_RUN_OUT
	# A: ends within the 10 s drain (400 KB at 50 KB/s: 8 s)
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 400000 \
		--chunk 1000 --rate 50000 --expect echo --seed 7 --timeout 60
	a_pid=$SB_RUN_PID a_out=$SB_RUN_OUT
	# B: outlives it (600 KB at 20 KB/s: 30 s)
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 600000 \
		--chunk 1000 --rate 20000 --expect echo --seed 8 --timeout 90
	b_pid=$SB_RUN_PID b_out=$SB_RUN_OUT
	# same-node: the kernel's (300 KB at 20 KB/s: 15 s)
	sb_run node1 local "$SMTRAFFIC" send --connect 10.11.0.1:9090 --bytes 300000 \
		--chunk 1000 --rate 20000 --expect echo --seed 9 --timeout 90
	s_pid=$SB_RUN_PID s_out=$SB_RUN_OUT
	sm_wait_until 20 at_least_dials "$prog" 100

	old_ino=$(stat -L -c %i "/proc/$(sb_daemon_pid node1)/exe")
	cp "$SOCKMESHD" "$bin.new"
	mv "$bin.new" "$bin"
	[ "$(stat -c %i "$bin")" != "$old_ino" ]
	OLD_PID=$(sb_daemon_pid node1)
	[ "$(sm_status node1 | jq -er .pid)" = "$OLD_PID" ]
	kill -USR2 "$(sm_status node1 | jq -er .pid)" # as docs/operations.md shows it
	sm_wait_until 30 log_has node1 "upgrade: pid [0-9]+ took over"
	# A is still open when the old daemon hands over: the old one drains it
	sb_alive "$a_pid"
	upgrade_done node1
	# the successor runs the binary now on disk, not the one the old daemon ran
	[ "$(stat -L -c %i "/proc/$NEW_PID/exe")" = "$(stat -c %i "$bin")" ]
	n0=$(dial_count "$prog")
	sm_wait_until 30 at_least_dials "$prog" $((n0 + 100))
	touch "$stop"
	sb_wait_pid "$dial_pid" 30 || true
	echo "dialer: $(cat "$dial_out")"
	jq -e '.failed == 0 and .ok > 200' "$dial_out"

	sb_wait_pid "$a_pid" 60 || true
	echo "A: $(cat "$a_out")"
	jq -e '.ok == true' "$a_out"
	sb_wait_pid "$s_pid" 60 || true
	echo "same-node: $(cat "$s_out")"
	jq -e '.ok == true' "$s_out"
	sb_wait_pid "$b_pid" 60 || true
	echo "B: $(cat "$b_out")"
	jq -e '.ok == false and (.error | test("reset"; "i"))' "$b_out"

	# B's records: node1 (written by the new daemon) and node2 say why
	flt='.type == "conn_end" and .traffic_direction == "EGRESS" and .destination.port == 8080 and .verdict == "DROPPED"'
	rec=$(sm_wait_record node1 "$flt" 20)
	echo "node1: $rec"
	trace=$(jq -r '.trace_id // empty' <<<"$rec")
	[ -n "$trace" ]
	jq -e '.drop_reason == "daemon_stopped" and .tls.failure == "daemon_stopped"' <<<"$rec"
	rec=$(sm_wait_record node2 ".type == \"conn_end\" and .trace_id == \"$trace\"" 20)
	echo "node2: $rec"
	jq -e '.verdict == "DROPPED" and .drop_reason == "tunnel_closed"' <<<"$rec"
	# no conn_end of node1's cross-node callers says FORWARDED for a reset stream
	cookie=$(jq -r .socket_cookie <<<"$(sm_records node1 "$flt" | head -n 1)")
	[ "$(sm_records node1 ".type == \"conn_end\" and .socket_cookie == $cookie" | wc -l)" -eq 1 ]

	after=$(listeners node1)
	echo "listeners after: $after"
	[ "$before" = "$after" ]
	run kill -0 "$OLD_PID"
	[ "$status" -ne 0 ]
	# the flow log has one writer at a time: every line is one whole record
	jq -c . "$(sb_flowlog node1)" >/dev/null
}

@test "SIGUSR2 with a successor that cannot start: the running daemon keeps serving and says why" {
	local pid cfg dial_pid dial_out stop prog n0
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	pid=$(sb_daemon_pid node1)
	cfg=$(sb_config node1)
	cp "$cfg" "$cfg.good"
	printf 'listeners:\n  workers: many\n' >>"$cfg"

	stop=$SB_DIR/dial.stop
	prog=$SB_DIR/dial.progress
	sb_run node1 client python3 "$SMDIAL" --connect 10.11.0.2:8080 --interval 10 \
		--stop-file "$stop" --progress "$prog" --duration 120
	dial_pid=$SB_RUN_PID dial_out=$SB_RUN_OUT
	sm_wait_until 20 at_least_dials "$prog" 50
	kill -USR2 "$pid"
	sm_wait_until 30 log_has node1 "upgrade failed: .*keeps serving"
	grep -E "upgrade failed" "$(sb_daemon_log node1)"
	n0=$(dial_count "$prog")
	sm_wait_until 30 at_least_dials "$prog" $((n0 + 50))
	kill -0 "$pid"
	[ "$(sm_status node1 | jq -r .pid)" = "$pid" ]

	# fixed, it goes through
	cp "$cfg.good" "$cfg"
	upgrade node1
	# the instance locks moved with it, and name it: --cleanup stays off its programs
	run timeout 30 "$SOCKMESHD" --cleanup --bpffs "$(sb_bpffs_dir node1)"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"running sockmeshd (pid $NEW_PID)"* ]]
	n0=$(dial_count "$prog")
	sm_wait_until 30 at_least_dials "$prog" $((n0 + 50))
	touch "$stop"
	sb_wait_pid "$dial_pid" 30 || true
	echo "dialer: $(cat "$dial_out")"
	jq -e '.failed == 0' "$dial_out"
}

@test "SIGUSR2 keeps real addresses: the routing outlives the old daemon; the last stop restores the sysctls" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	upgrade node2
	# the old daemon is gone and left the routing to the new one
	run sm_realaddr_routing node2
	echo "$output"
	[ "$(grep -c 'fwmark 0x5ec0df lookup 15006' <<<"$output")" -eq 2 ]
	[ "$(grep -c '^local default dev lo' <<<"$output")" -eq 2 ]
	[ "$(grep -cx 1 <<<"$output")" -eq 3 ]
	# which it uses: without it the service's SYN-ACK to node1's address would leave
	# the host and the call would fail
	run sm_send node1 client 10.11.0.2:8080 3000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	rec=$(sm_wait_record node2 ".type == \"conn_end\" and .traffic_direction == \"INGRESS\" and
		.source.port == $port")
	echo "$rec"
	jq -e '.source.ip == "10.11.0.1"' <<<"$rec"
	sb_stop_daemon node2
	run sm_realaddr_routing node2
	echo "$output"
	[ "$(grep -cx 0 <<<"$output")" -eq 3 ]
	[ "$(grep -c . <<<"$output")" -eq 3 ]
}

@test "the spawner holds nothing of the daemon's: only stdio and its socket to the daemon" {
	local pid sp fds
	sb_start_daemon node1
	pid=$(sb_daemon_pid node1)
	# the daemon's one child named sockmeshd-spawn (docs/security.md)
	sp=$(pgrep -P "$pid" -x sockmeshd-spawn)
	[ -n "$sp" ] && [ "$(wc -w <<<"$sp")" -eq 1 ]
	fds=$(ls "/proc/$sp/fd" | sort -n | tr '\n' ' ')
	echo "spawner $sp: fds $fds"
	[ "$fds" = "0 1 2 3 " ]
	[[ "$(readlink "/proc/$sp/fd/3")" == socket:* ]]
}
