#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The control socket under clients that stall (docs/interfaces.md, "Control
# socket protocol"): silent clients, half requests and clients that never read
# their answer delay no other client; they are closed after control.timeout;
# a client over control.max_clients is refused with a clear error; and the
# flow ring buffer is drained while 16 silent clients sit on the socket during
# a connection churn. The stalling clients are one process,
# tests/tools/holdconns.py.

load helpers

HOLDCONNS=$SM_REPO/tests/tools/holdconns.py

setup() {
	sm_standard_sandbox
}

teardown() {
	sm_teardown
}

# hold_control ARGS...: holdconns.py on node1's control socket, in the
# background; returns once it holds its connections (HOLD_PID, HOLD_OUT set).
hold_control() {
	sb_run node1 stranger /usr/bin/python3 "$HOLDCONNS" --unix "$(sb_socket node1)" "$@" ||
		return 1
	HOLD_PID=$SB_RUN_PID
	HOLD_OUT=$SB_RUN_OUT
	sm_wait_until 15 grep -qs '"event":"holding"' "$HOLD_OUT"
	grep '"event":"holding"' "$HOLD_OUT"
}

# closed_count: connections of the holder the daemon closed so far.
closed_count() {
	grep -c '"event":"closed"' "$HOLD_OUT"
}

# status_ms: `sockmesh status` answers; prints how long it took in ms.
status_ms() {
	local t0 t1
	t0=$(date +%s%N)
	sb_cli node1 status -o json >/dev/null || return 1
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}

# prompt_statuses N: N `sockmesh status` in a row, each answered within 1 s.
prompt_statuses() {
	local i ms times=()
	for ((i = 0; i < $1; i++)); do
		ms=$(status_ms) || { echo "status $((i + 1)) failed" >&2; return 1; }
		times+=("$ms")
		if [ "$ms" -ge 1000 ]; then
			echo "status $((i + 1)) took $ms ms (${times[*]})" >&2
			return 1
		fi
	done
	echo "status answered in ${times[*]} ms"
}

@test "silent clients and half requests delay no status answer; they are closed after the timeout" {
	sb_start_daemon node1
	hold_control --idle 16 --partial 4 --duration 60
	jq -e '.connected == 20 and .failed == 0' <<<"$(grep '"event":"holding"' "$HOLD_OUT")"
	run prompt_statuses 10
	echo "$output"
	[ "$status" -eq 0 ]

	# while they sit there, status counts them (and the client asking)
	jq -e '.control.clients == 21 and .control.max_clients == 64 and .control.idle_timeout_s == 10' \
		<<<"$(sm_status node1)"
	# then the daemon closes each, silently, after control.timeout (10 s by default)
	sm_wait_until 20 eval '[ "$(closed_count)" -eq 20 ]'
	jq -se '[.[] | select(.event == "closed")] | length == 20 and
		all(.after_s >= 9 and .after_s < 15 and .data == "")' "$HOLD_OUT"
	jq -e '.control.clients == 1 and .control.timed_out == 20' <<<"$(sm_status node1)"
}

@test "a client that never reads its answer delays no one, and is closed after the timeout" {
	# 4,000 more services: the services answer (about 1 MB) outgrows the socket's buffer
	for ((i = 0; i < 4000; i++)); do
		sb_add_service "10.12.$((i / 250)).$((i % 250 + 1))" 80 local "bulk-$i"
	done
	sb_write_catalog
	sb_start_daemon node1
	size=$(sb_cli node1 services -o json | wc -c)
	echo "services answer: $size bytes"
	[ "$size" -gt 500000 ]

	hold_control --request 4 --request-data '{"cmd":"services"}'$'\n' --duration 60
	run prompt_statuses 10
	echo "$output"
	[ "$status" -eq 0 ]
	sm_wait_until 20 eval '[ "$(closed_count)" -eq 4 ]'
	jq -se '[.[] | select(.event == "closed")] | all(.after_s >= 9)' "$HOLD_OUT"
	jq -e '.control.clients == 1 and .control.timed_out == 4' <<<"$(sm_status node1)"
}

@test "one client over control.max_clients is refused with a clear error; room again after the timeout" {
	sb_start_daemon node1 --set control.max_clients=8 --set control.idle_timeout=2
	hold_control --idle 8 --duration 60
	run sb_cli node1 status
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"8 control clients are connected already, the most this daemon serves at once"* ]]
	[[ "$output" == *"control.max_clients"* ]]
	# the silent ones go after control.timeout: the next status is answered
	sm_wait_until 10 eval '[ "$(closed_count)" -eq 8 ]'
	run sb_cli node1 status -o json
	[ "$status" -eq 0 ]
	jq -e '.control.refused == 1 and .control.timed_out == 8' <<<"$output"
}

@test "no flow event is lost while 16 silent clients sit on the control socket during a churn" {
	# one flow-log file (no rotation): every record of the churn is counted in it
	sb_start_daemon node1 --set flowlog.max_size=0
	sb_serve node1 local 10.11.0.1:9090 echo
	st=$(sm_status node1)
	fail0=$(jq -e .counters.ringbuf_reserve_fail <<<"$st")
	lost0=$(jq -e .flows.lost_records <<<"$st")
	ends() {
		sm_records node1 '.type == "conn_end" and .traffic_direction == "EGRESS" and
			.source.workload == "client"' | wc -l
	}
	ends0=$(ends)

	# 16 silent clients the whole time: each one the daemon closes comes back at once
	hold_control --idle 16 --reconnect --duration 120
	# 1,500 connections a second for 2 s, 4 records each (a rate a sanitizer build keeps up with)
	run sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 3000 --size 1 \
		--new-conn --rate 1500 --timeout 60
	echo "$output"
	[ "$status" -eq 0 ]
	kill "$HOLD_PID"
	sb_wait_pid "$HOLD_PID" 10 || true

	sm_wait_until 30 eval '[ $(($(ends) - ends0)) -ge 3000 ]' || true
	st=$(sm_status node1)
	jq -c '.flows' <<<"$st"
	echo "ringbuf_reserve_fail $fail0 -> $(jq .counters.ringbuf_reserve_fail <<<"$st"), lost_records $lost0 -> $(jq .flows.lost_records <<<"$st"), client conn_end records $(($(ends) - ends0)) of 3000"
	[ "$(jq .counters.ringbuf_reserve_fail <<<"$st")" -eq "$fail0" ]
	[ "$(jq .flows.lost_records <<<"$st")" -eq "$lost0" ]
	[ $(($(ends) - ends0)) -eq 3000 ]
}
