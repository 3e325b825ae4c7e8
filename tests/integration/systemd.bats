#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# systemd integration without systemd: a stand-in notify socket
# (sdnotify_listener.py) receives what sockmeshd sends to $NOTIFY_SOCKET, as
# it would under Type=notify: READY=1 with a STATUS= once `sockmesh status`
# says ready, WATCHDOG=1 from the main loop when $WATCHDOG_USEC asks for it,
# RELOADING=1 + MONOTONIC_USEC then READY=1 around a SIGHUP reload, STOPPING=1
# on SIGTERM (in cluster mode too: STATUS names the etcd revision, SIGHUP's
# READY=1 follows at once); on SIGUSR2 (an upgrade) the old main PID sends
# MAINPID= of the new one, which then says READY=1. And packaging/sockmeshd.service passes
# `systemd-analyze verify` (scripts/verify-unit.sh).

load helpers

LISTENER=$BATS_TEST_DIRNAME/sdnotify_listener.py

setup() {
	sm_standard_sandbox
	NOTIFY_OUT=$SB_DIR/notify.out
	: >"$NOTIFY_OUT"
}

teardown() {
	sm_teardown
}

# start_listener NODE: the stand-in notify socket; on READY=1 it asks NODE's
# daemon whether it is ready (the check sb_start_daemon makes) and records the answer.
start_listener() {
	local sock
	sock=$(sb_socket "$1")
	export NOTIFY_SOCKET=$SB_DIR/notify.sock
	# shellcheck disable=SC2016 # $0 and $1 are the inner shell's
	python3 "$LISTENER" "$NOTIFY_SOCKET" "$NOTIFY_OUT" 300 bash -c \
		'a=$(timeout 5 "$0" -S "$1" status -o json) && jq -e ".ready == true" <<<"$a"' \
		"$SOCKMESH" "$sock" </dev/null >/dev/null 2>&1 3>&- &
	SB_PIDS+=("$!")
	sm_wait_until 10 grep -q '^listening$' "$NOTIFY_OUT"
}

count() { # PATTERN: messages (lines) that match the extended regex PATTERN
	grep -cE "$1" "$NOTIFY_OUT" || true
}

at_least() { # N PATTERN
	[ "$(count "$2")" -ge "$1" ]
}

@test "READY=1 with STATUS=ready... arrives once status says ready; nothing without NOTIFY_SOCKET" {
	start_listener node1
	sb_start_daemon node1
	sm_wait_until 10 at_least 1 'READY=1'
	cat "$NOTIFY_OUT"
	[ "$(count 'READY=1')" -eq 1 ]
	# the daemon's own control socket said ready when READY=1 arrived
	grep -E 'READY=1' "$NOTIFY_OUT" | grep -q '|cmd=0|'
	grep -E 'READY=1' "$NOTIFY_OUT" | grep -qE 'STATUS=ready: node1, [0-9]+ programs, policy revision [0-9]+, tunnel credentials loaded\|'
	sleep 2.5 # absence: two ticks of the main loop, no WATCHDOG_USEC
	[ "$(count 'WATCHDOG=1')" -eq 0 ]
	sb_stop_daemon node1 TERM
	run grep -c 'cannot notify' "$(sb_daemon_log node1)"
	[ "$output" = 0 ]

	# no NOTIFY_SOCKET: nothing to send to, nothing fails, nothing warned
	unset NOTIFY_SOCKET
	: >"$(sb_daemon_log node1)"
	sb_start_daemon node1
	sb_stop_daemon node1 TERM
	[ "$SB_LAST_RC" -eq 0 ]
	run grep -ci 'notify' "$(sb_daemon_log node1)"
	[ "$output" = 0 ]
}

@test "WATCHDOG=1 arrives repeatedly with WATCHDOG_USEC, not at all without it or for another WATCHDOG_PID" {
	start_listener node1
	WATCHDOG_USEC=2000000 sb_start_daemon node1
	sm_wait_until 20 at_least 3 'WATCHDOG=1'
	cat "$NOTIFY_OUT"
	# at most every WATCHDOG_USEC/2 (1 s); 0.5 s is a generous lower bound
	grep -E '^WATCHDOG=1' "$NOTIFY_OUT" | sed 's/.*|at=//' |
		awk 'NR > 1 && $1 - prev < 0.5 { bad = 1 } { prev = $1 } END { exit bad }'
	sb_stop_daemon node1 TERM

	# WATCHDOG_PID names another process: the watchdog is not ours
	: >"$NOTIFY_OUT"
	echo listening >"$NOTIFY_OUT"
	WATCHDOG_USEC=2000000 WATCHDOG_PID=1 sb_start_daemon node1
	sm_wait_until 10 at_least 1 'READY=1'
	sleep 3 # absence: three ticks of the main loop
	cat "$NOTIFY_OUT"
	[ "$(count 'WATCHDOG=1')" -eq 0 ]
}

@test "SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 once the catalog is applied" {
	start_listener node1
	sb_start_daemon node1
	sm_wait_until 10 at_least 1 'READY=1'
	sb_add_service 10.11.0.2 8084 server added-later
	sb_write_catalog
	kill -HUP "$(sb_daemon_pid node1)"
	sm_wait_until 10 at_least 2 'READY=1'
	cat "$NOTIFY_OUT"
	grep -q 'SIGHUP: catalog reloaded' "$(sb_daemon_log node1)"
	# the order: READY=1 (start), RELOADING=1, READY=1 (reload done)
	run grep -oE '^(READY|RELOADING)=1' "$NOTIFY_OUT"
	[ "${lines[*]}" = "READY=1 RELOADING=1 READY=1" ]
	# MONOTONIC_USEC is CLOCK_MONOTONIC (the listener's clock too) in microseconds
	line=$(grep -E '^RELOADING=1' "$NOTIFY_OUT")
	usec=$(grep -oE 'MONOTONIC_USEC=[0-9]+' <<<"$line" | cut -d= -f2)
	at=${line##*|at=}
	echo "RELOADING=1 sent at $usec us, received at $at s"
	awk -v u="$usec" -v a="$at" 'BEGIN { d = a - u / 1e6; exit !(d > -0.001 && d < 5) }'

	# a broken catalog: the reload ends too (the old one kept), so READY=1 again
	echo "services: [ {address: 10.11.0.2, port: 70000" >"$(sb_catalog)"
	kill -HUP "$(sb_daemon_pid node1)"
	sm_wait_until 10 at_least 3 'READY=1'
	[ "$(count 'RELOADING=1')" -eq 2 ]
	grep -q 'keeping the current catalog' "$(sb_daemon_log node1)"
}

@test "SIGTERM: STOPPING=1 when the drain starts" {
	start_listener node1
	sb_start_daemon node1
	sm_wait_until 10 at_least 1 'READY=1'
	[ "$(count 'STOPPING=1')" -eq 0 ]
	sb_stop_daemon node1 TERM
	[ "$SB_LAST_RC" -eq 0 ]
	cat "$NOTIFY_OUT"
	[ "$(count '^STOPPING=1')" -eq 1 ]
}

@test "SIGUSR2 upgrade: the old main PID names the new one MAINPID=, then the new one says READY=1 and beats the watchdog" {
	local old new wrap
	start_listener node1
	# as systemd starts it: WATCHDOG_PID is the daemon's own PID (the wrapper execs it)
	wrap=$SB_DIR/watchdog-pid.sh
	printf '#!/bin/sh\nWATCHDOG_PID=$$ exec %s "$@"\n' "$SOCKMESHD" >"$wrap"
	chmod +x "$wrap"
	SOCKMESHD=$wrap WATCHDOG_USEC=2000000 sb_start_daemon node1
	sm_wait_until 10 at_least 1 'READY=1'
	old=$(sb_daemon_pid node1)
	kill -USR2 "$old"
	sm_wait_until 30 at_least 1 '^MAINPID='
	sm_wait_until 30 at_least 2 'READY=1'
	sm_wait_until 30 bash -c "! kill -0 $old 2>/dev/null"
	new=$(sm_status node1 | jq -er .pid)
	# shellcheck disable=SC2034,SC2154 # sandbox.sh's associative array: teardown stops this one
	SB_DAEMON_PID[node1]=$new
	SB_PIDS+=("$new")
	# WATCHDOG_PID followed the main PID: the new one beats the watchdog
	sm_wait_until 10 grep -qE "^WATCHDOG=1.*[|]pid=${new}[|]" "$NOTIFY_OUT"
	cat "$NOTIFY_OUT"
	echo "pid $old -> $new"
	[ "$new" != "$old" ]
	# the main PID (old) hands over; only then does the new one speak, and says ready
	grep -E '^(READY=1|MAINPID=)' "$NOTIFY_OUT" | sed -E 's/^(READY=1|MAINPID=[0-9]+).*[|]pid=([0-9]+)[|].*/\1 \2/' >"$SB_DIR/order"
	cat "$SB_DIR/order"
	[ "$(tr '\n' ' ' <"$SB_DIR/order")" = "READY=1 $old MAINPID=$new $old READY=1 $new " ]
	grep -E '^READY=1' "$NOTIFY_OUT" | tail -n 1 | grep -q '|cmd=0|'
	# nothing systemd (NotifyAccess=main) would reject: the new one is silent before
	# MAINPID=, the old one after it; and no STOPPING=1
	awk -v o="$old" -v n="$new" '/^MAINPID=/ { after = 1; next }
		index($0, "|pid=" (after ? o : n) "|") { bad = 1 } END { exit bad }' "$NOTIFY_OUT"
	[ "$(count '^STOPPING=1')" -eq 0 ]
}

@test "packaging/sockmeshd.service passes systemd-analyze verify" {
	command -v systemd-analyze >/dev/null || skip "systemd-analyze missing (apt-get install systemd)"
	run "$BATS_TEST_DIRNAME/../../scripts/verify-unit.sh" "$SOCKMESHD"
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "cluster mode: READY=1's STATUS has the etcd revision; SIGHUP's READY=1 follows at once" {
	sb_etcd_start
	run sb_ccli catalog apply "$(sb_catalog)"
	echo "$output"
	[ "$status" -eq 0 ]
	sb_cluster_config node1
	start_listener node1
	sb_start_daemon node1
	sm_wait_until 10 at_least 1 'READY=1'
	cat "$NOTIFY_OUT"
	grep -E 'READY=1' "$NOTIFY_OUT" | grep -qE 'STATUS=ready: node1, [0-9]+ programs, policy revision [0-9]+, etcd revision [1-9][0-9]*, tunnel'
	# only the flowlog settings are read (synchronously): the reload ends in the same turn
	kill -HUP "$(sb_daemon_pid node1)"
	sm_wait_until 10 at_least 2 'READY=1'
	cat "$NOTIFY_OUT"
	grep -q 'SIGHUP: cluster mode: the catalog comes from etcd' "$(sb_daemon_log node1)"
	run grep -oE '^(READY|RELOADING)=1' "$NOTIFY_OUT"
	[ "${lines[*]}" = "READY=1 RELOADING=1 READY=1" ]
}
