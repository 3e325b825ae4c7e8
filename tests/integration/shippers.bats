#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Log shippers (docs/operations.md, "Log shippers and Prometheus"): rsyslog's
# imfile, run as a plain process with the configuration docs/operations.md
# shows (its paths replaced), follows the flow log through a burst of 20,000
# records at max_size 1MiB with compression on, stopped for the burst's first
# 2,400 records as a busy shipper falls behind, and ships every record once:
# each live file is kept flowlog.rotate_min_interval (1 s by default), so
# rsyslog opens every one, and the newest backup stays plain until the next
# rotation. rsyslogd is started here with its
# own config, work dir and pid file in the sandbox's directory and killed by
# its pid; the host's rsyslog is not touched.

load helpers

setup() {
	command -v rsyslogd >/dev/null || skip "rsyslogd not installed (rsyslog): scripts/install-deps.sh"
	sm_standard_sandbox
	CFG=$(sb_config node1)
	LOG=$(sb_flowlog node1)
	RS_DIR=$SB_DIR/rsyslog
	RS_PID=""
}

teardown() {
	if [ -n "$RS_PID" ]; then
		kill -CONT "$RS_PID" 2>/dev/null # a failed check may have left it stopped
		kill "$RS_PID" 2>/dev/null
		sb_wait_pid "$RS_PID" 10 || kill -KILL "$RS_PID" 2>/dev/null
	fi
	sm_teardown
}

# One key a record: its type, socket and time (a socket has one record of each type at a time).
record_keys() {
	jq -r '[.type, .socket_cookie, .time] | @tsv'
}

shipped_lines() {
	[ -f "$RS_DIR/out.jsonl" ] && wc -l <"$RS_DIR/out.jsonl" || echo 0
}

# rsyslog has shipped at least N lines
shipped_at_least() {
	[ "$(shipped_lines)" -ge "$1" ]
}

# The daemon wrote at least N records and has nothing queued.
written_at_least() {
	[ "$(sm_status_flows records)" -ge "$1" ] && [ "$(sm_status_flows queued)" -eq 0 ]
}

# start_rsyslog: rsyslogd in the foreground (-n) with the documented drop-in, reading $LOG.
start_rsyslog() {
	mkdir -p "$RS_DIR/work" || return 1
	{
		echo "global(workDirectory=\"$RS_DIR/work\")"
		sm_doc_block '# /etc/rsyslog.d/30-sockmesh-flows.conf' |
			sed -e "s|/var/log/sockmesh-shipped/flows.jsonl|$RS_DIR/out.jsonl|" \
				-e "s|/var/log/sockmesh/flows.jsonl|$LOG|"
	} >"$RS_DIR/rsyslog.conf"
	grep -q 'type="imfile"' "$RS_DIR/rsyslog.conf" || {
		echo "no rsyslog block found in docs/operations.md" >&2
		return 1
	}
	rsyslogd -N1 -f "$RS_DIR/rsyslog.conf" >"$RS_DIR/check.log" 2>&1 || {
		cat "$RS_DIR/check.log" >&2
		return 1
	}
	rsyslogd -n -f "$RS_DIR/rsyslog.conf" -i "$RS_DIR/rsyslogd.pid" \
		</dev/null >"$RS_DIR/rsyslogd.log" 2>&1 &
	RS_PID=$!
}

@test "rsyslog imfile ships all 20,000 records of a burst at 1MiB rotation with compression: none lost or twice" {
	# a ring buffer that holds the whole burst: the kernel's events all reach the log
	{
		printf 'log:\n  level: info\ndatapath:\n  ringbuf_size: 16777216\nflowlog:\n'
		printf '  %s\n' "max_size: 1MiB" "max_backups: 100" "compress: true"
	} >"$CFG"
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo

	# rsyslog following before the burst: a few connections' records reach its output
	start_rsyslog
	sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 5 --size 1 \
		--new-conn --timeout 30
	sm_wait_until 30 shipped_at_least 20

	# the burst: 5,000 connections, 4 records each (both sockets' conn_start and
	# conn_end); rsyslog is stopped, as a busy shipper falls behind, until the file
	# has rotated and 2,400 records (2.2 MiB) are written: rotating at max_size at
	# once made two rotations by then, and rsyslog never opened the file between
	# them. With the file kept a second it has most of that second left to open it.
	before=$(sm_status_flows records)
	r0=$(sm_status_flows rotations)
	kill -STOP "$RS_PID"
	sb_run node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 5000 --size 1 \
		--new-conn --timeout 300
	burst=$SB_RUN_PID
	rotated_and_written() {
		[ "$(sm_status_flows rotations)" -gt "$r0" ] && [ "$(sm_status_flows records)" -ge "$1" ]
	}
	sm_wait_until 60 rotated_and_written $((before + 2400))
	r_stopped=$(sm_status_flows rotations)
	kill -CONT "$RS_PID"
	sb_wait_pid "$burst" 300
	[ "$SB_LAST_RC" -eq 0 ]
	sm_wait_until 60 written_at_least $((before + 20000))
	# then 50 connections at a time until the file has rotated three times in all
	# (each live file is kept a second), so older backups are compressed under rsyslog
	for ((i = 0; i < 200 && $(sm_status_flows rotations) < 3; i++)); do
		sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 50 --size 1 \
			--new-conn --timeout 30 >/dev/null
	done
	sm_wait_until 30 written_at_least $((before + 20000 + 200 * i))
	written=$(sm_status_flows records)
	# rsyslog catches up within a bound; a lost generation never arrives, so go on
	# and count after the bound either way
	sm_wait_until 60 shipped_at_least "$written" || true
	rotations=$(sm_status_flows rotations)
	echo "written $written, shipped $(shipped_lines), rotations $rotations ($r_stopped before" \
		"rsyslog went on), compressed $(sm_status_flows compressed)," \
		"queue_dropped $(sm_status_flows queue_dropped)"
	[ "$rotations" -ge 3 ]
	[ "$(sm_status_flows queue_dropped)" -eq 0 ]
	[ "$(sm_status_flows write_failed)" -eq 0 ]
	[ "$(sm_status_flows compressed)" -ge $((rotations - 1)) ]
	# the files hold exactly what the daemon counted, each record once
	sm_flowlog_lines | record_keys | sort >"$SB_DIR/written.keys"
	[ "$(wc -l <"$SB_DIR/written.keys")" -eq "$written" ]
	[ "$(uniq -d "$SB_DIR/written.keys" | wc -l)" -eq 0 ]
	# what rsyslog shipped: whole JSON records, the same set, none twice
	record_keys <"$RS_DIR/out.jsonl" | sort >"$SB_DIR/shipped.keys"
	lost=$(comm -23 "$SB_DIR/written.keys" "$SB_DIR/shipped.keys" | wc -l)
	extra=$(comm -13 "$SB_DIR/written.keys" "$SB_DIR/shipped.keys" | wc -l)
	twice=$(uniq -d "$SB_DIR/shipped.keys" | wc -l)
	echo "lost $lost, not written but shipped $extra, shipped twice $twice"
	[ "$lost" -eq 0 ]
	[ "$extra" -eq 0 ]
	[ "$twice" -eq 0 ]
	[ "$(wc -l <"$SB_DIR/shipped.keys")" -eq "$written" ]
	# and the burst is in it: every connection's client conn_end
	[ "$(jq -r 'select(.type == "conn_end" and .destination.port == 9090 and
		.traffic_direction == "EGRESS") | .socket_cookie' "$RS_DIR/out.jsonl" | sort -u | wc -l)" -ge 5005 ]
}
