#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Logging that fits the journal (docs/operations.md#systemd): when
# $JOURNAL_STREAM names the file sockmeshd's stderr is open on ("DEV:INO", as
# systemd sets it for a unit logging to the journal), every line carries an
# sd-daemon priority prefix (<3> error, <4> warning, <6> info, <7> debug) and no
# timestamp of the daemon's own; otherwise lines keep "TIME IDENT LEVEL: ...".
# No journald here: the daemon's stderr is the sandbox's log file, and
# JOURNAL_STREAM is set to that file's device and inode, as systemd would.

load helpers

setup() {
	sm_sandbox 1
	sb_add_workload node1 client "$SM_CLIENT_ID"
	sb_write_catalog
	LOG=$(sb_daemon_log node1)
	: >>"$LOG"
}

teardown() {
	unset JOURNAL_STREAM
	sm_teardown
}

# since_start: the daemon's lines since the sandbox's last "--- sandbox: starting" marker.
since_start() {
	awk '/^--- sandbox: starting sockmeshd/ { n = NR } { l[NR] = $0 }
		END { for (i = n + 1; i <= NR; i++) print l[i] }' "$LOG"
}

TS='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z sockmeshd (error|warn|info|debug): '

@test "JOURNAL_STREAM naming stderr: priority prefixes, no timestamp" {
	JOURNAL_STREAM=$(stat -c '%d:%i' "$LOG")
	export JOURNAL_STREAM
	sb_start_daemon node1 -v
	sb_stop_daemon node1 TERM
	[ "$SB_LAST_RC" -eq 0 ]
	out=$(since_start)
	echo "$out"
	[ "$(wc -l <<<"$out")" -ge 5 ]
	# every line, debug ones (-v) and the shutdown's too
	! grep -vE '^<(3|4|6|7)>(error|warn|info|debug): ' <<<"$out"
	! grep -E '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z' <<<"$out"
	grep -qE '^<6>info: enrollment root ' <<<"$out"
	grep -qE '^<7>debug: ' <<<"$out"
	# the prefix matches the level word
	! grep -E '^<3>(warn|info|debug)|^<4>(error|info|debug)|^<6>(error|warn|debug)|^<7>(error|warn|info)' <<<"$out"
}

@test "without JOURNAL_STREAM, or with one naming another file, lines keep their timestamp" {
	unset JOURNAL_STREAM
	sb_start_daemon node1
	sb_stop_daemon node1 TERM
	out=$(since_start)
	echo "$out"
	! grep -vE "$TS" <<<"$out"
	grep -qE "${TS}enrollment root " <<<"$out"

	# stderr redirected elsewhere than the journal systemd set up (e.g. 2>file in a wrapper)
	JOURNAL_STREAM=$(stat -c '%d:%i' "$SB_DIR/catalog.yaml")
	export JOURNAL_STREAM
	sb_start_daemon node1
	sb_stop_daemon node1 TERM
	out=$(since_start)
	echo "$out"
	! grep -vE "$TS" <<<"$out"
	! grep -E '^<[0-9]>' <<<"$out"
}
