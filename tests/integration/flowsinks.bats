#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Flow-log sinks (docs/configuration.md, flowlog): size rotation under a
# steady stream loses and duplicates no record, backups are gzip files zcat
# reads (but the newest, left plain for log shippers) and never more than
# max_backups; allow/deny filters and field masks
# apply and change on SIGHUP, a bad flowlog section is refused; DROPPED
# records over the per-source rate are suppressed and counted exactly.

load helpers

setup() {
	sm_standard_sandbox
	CFG=$(sb_config node1)
	LOG=$(sb_flowlog node1)
}

teardown() {
	local node
	if [ -n "${SMALL_FS:-}" ]; then
		# the daemons hold files on it: stopped first, then the mount goes
		for node in "${!SB_DAEMON_PID[@]}"; do
			sb_stop_daemon "$node" TERM 10 >/dev/null 2>&1
		done
		umount "$SMALL_FS" 2>/dev/null || umount -l "$SMALL_FS"
		SMALL_FS=""
	fi
	sm_teardown
}

# small_fs SIZE: a tmpfs of SIZE at $SB_DIR/small (SMALL_FS), unmounted by teardown.
small_fs() {
	mkdir -p "$SB_DIR/small" || return 1
	mount -t tmpfs -o "size=$1,mode=0750" sockmesh-test "$SB_DIR/small" || return 1
	SMALL_FS=$SB_DIR/small
}

# metric NAME_AND_LABELS: one sample of node1's /metrics, as written there (0 when absent).
metric() {
	ip netns exec "$(sb_ns node1)" curl -sS --max-time 5 http://127.0.0.1:15020/metrics |
		awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}

# Records the daemon made that are not lost records (sockmesh_flow_records_total).
records_made() {
	ip netns exec "$(sb_ns node1)" curl -sS --max-time 5 http://127.0.0.1:15020/metrics |
		awk '/^sockmesh_flow_records_total\{/ && !/type="lost"/ { n += $2 } END { print n + 0 }'
}

# flowlog_config YAML_LINES...: the node's config file with this flowlog section.
flowlog_config() {
	{
		printf 'log:\n  level: info\nflowlog:\n'
		printf '  %s\n' "$@"
	} >"$CFG"
}

# Backups on disk: numbers of PATH.N / PATH.N.gz (a .gz.tmp is not one yet).
backup_count() {
	ls "$LOG".* 2>/dev/null | grep -E '\.[0-9]+(\.gz)?$' | sed -E 's/\.gz$//' | sort -u | wc -l
}

# Every backup but the newest is compressed: the newest stays PATH.N, plain,
# for a shipper still reading it, until the next rotation (delaycompress).
older_backups_compressed() {
	local newest
	newest=$(ls "$LOG".* 2>/dev/null | grep -oE '\.[0-9]+(\.gz)?$' | grep -oE '[0-9]+' | sort -n | tail -1)
	[ -n "$newest" ] || return 0
	[ -f "$LOG.$newest" ] && [ ! -e "$LOG.$newest.gz" ] &&
		! ls "$LOG".* 2>/dev/null | grep -E '\.[0-9]+$' | grep -vqxF "$LOG.$newest"
}

queue_empty() {
	[ "$(sm_status_flows queued)" -eq 0 ]
}

flows_at_least() { # KEY N: a flows counter of node1's status has reached N
	[ "$(sm_status_flows "$1")" -ge "$2" ]
}

# COUNT FILTER: node1's flow log holds at least COUNT records matching FILTER
records_matching() {
	[ "$(sm_records node1 "$2" | wc -l)" -ge "$1" ]
}

written_equals_lines() {
	[ "$(sm_status_flows queued)" -eq 0 ] && [ "$(sm_flowlog_lines | wc -l)" -eq "$(sm_status_flows records)" ]
}

log_has() {
	grep -qF -- "$1" "$(sb_daemon_log node1)"
}

# 200 same-node connections: 4 records each (both sockets' conn_start and conn_end).
stream_connections() {
	sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count "${1:-200}" --size 1 \
		--new-conn --timeout 30
}

@test "rotation under a steady stream: no record lost or duplicated, backups are gzip" {
	flowlog_config "max_size: 16KiB" "rotate_min_interval: 0" "max_backups: 1000" "compress: true"
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo

	run stream_connections 200
	echo "$output"
	[ "$status" -eq 0 ]
	# every record made (the daemon drains the kernel's ring every few ms, so the
	# last ones can still be on their way when the client is done), all written
	sm_wait_until 15 flows_at_least records 800
	sm_wait_until 15 written_equals_lines
	sm_wait_until 15 older_backups_compressed
	rotations=$(sm_status_flows rotations)
	echo "records $(sm_status_flows records), rotations $rotations, compressed $(sm_status_flows compressed)"
	[ "$rotations" -ge 10 ]
	[ "$(sm_status_flows compressed)" -eq $((rotations - 1)) ]
	[ "$(sm_status_flows queue_dropped)" -eq 0 ]
	# every backup is gzip that zcat reads (but the newest, PATH.N plain), and none
	# is over max_size uncompressed
	[ -f "$LOG.$rotations" ] && [ "$(wc -c <"$LOG.$rotations")" -le 16384 ]
	for f in "$LOG".*.gz; do
		gzip -t "$f"
		[ "$(zcat "$f" | wc -c)" -le 16384 ]
	done
	# whole JSON lines only, exactly as many as the daemon wrote, none twice
	[ "$(sm_flowlog_lines | jq -c . | wc -l)" -eq "$(sm_status_flows records)" ]
	[ "$(sm_flowlog_lines | jq -r '[.socket_cookie, .type, .time] | @text' | sort | uniq -d | wc -l)" -eq 0 ]
	# all 200 connections' records are there: both sockets start and end
	[ "$(sm_flowlog_lines | jq -r 'select(.type == "conn_end" and .destination.port == 9090 and
		.traffic_direction == "EGRESS") | .socket_cookie' | sort -u | wc -l)" -eq 200 ]
	[ "$(sm_flowlog_lines | jq -r 'select(.type == "conn_start") | .socket_cookie' | sort -u | wc -l)" -ge 400 ]
	# the backups validate against the schema too (teardown checks the live file)
	sm_flowlog_lines | sm_validate_flows -
}

@test "backups never exceed max_backups; the newest are kept" {
	flowlog_config "max_size: 16KiB" "rotate_min_interval: 0" "max_backups: 2"
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo

	sb_run node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 300 --size 1 \
		--new-conn --timeout 30
	pid=$SB_RUN_PID
	max=0
	while sb_alive "$pid"; do
		n=$(backup_count)
		((n > max)) && max=$n
		sleep 0.02
	done
	sb_wait_pid "$pid" 10
	# every record written (4 a connection: start and end of both sockets), so no
	# rotation is still to come, and every backup but the newest compressed
	all_written() { [ "$(sm_status_flows records)" -ge 1200 ] && queue_empty; }
	sm_wait_until 30 all_written
	sm_wait_until 15 older_backups_compressed
	echo "most backups seen: $max; rotations $(sm_status_flows rotations)"
	[ "$max" -le 2 ]
	[ "$(backup_count)" -eq 2 ]
	[ "$(sm_status_flows rotations)" -ge 5 ]
	# the two kept are the two highest numbers, the older gzip-compressed, the
	# newest plain (a shipper may still be reading it)
	last=$(sm_status_flows rotations)
	[ -f "$LOG.$last" ] && [ -f "$LOG.$((last - 1)).gz" ]
	jq -e . "$LOG.$last" >/dev/null
	zcat "$LOG.$((last - 1)).gz" | jq -e . >/dev/null
}

@test "allow and deny filters apply; SIGHUP changes them and the field mask without a restart" {
	flowlog_config 'allow: ["type=conn_end"]' 'deny: ["direction=INGRESS"]'
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	pid=$(sb_daemon_pid node1)

	run stream_connections 3
	[ "$status" -eq 0 ]
	sm_wait_until 10 records_matching 3 '.type == "conn_end" and .traffic_direction == "EGRESS"'
	sm_wait_until 10 written_equals_lines
	[ "$(sm_records node1 '.type != "lost"' | wc -l)" -eq 3 ]
	[ "$(sm_records node1 '.type == "conn_end" and .traffic_direction == "EGRESS"' | wc -l)" -eq 3 ]
	sm_wait_until 10 flows_at_least filtered 9

	# now: every type but conn_start, ingress too, and only some fields
	flowlog_config 'deny: ["type=conn_start"]' 'fields: [verdict, source.ip, destination.port]'
	kill -HUP "$pid"
	sm_wait_until 10 log_has "SIGHUP: flowlog settings reloaded"
	before=$(wc -l <"$LOG")
	run stream_connections 2
	[ "$status" -eq 0 ]
	new_lines() { [ "$(tail -n +"$((before + 1))" "$LOG" | jq -c 'select(.type != "lost")' | wc -l)" -ge 4 ]; }
	sm_wait_until 10 new_lines
	sm_wait_until 10 written_equals_lines
	new=$(tail -n +"$((before + 1))" "$LOG")
	echo "$new"
	[ "$(jq -c 'select(.type != "lost")' <<<"$new" | wc -l)" -eq 4 ]
	# masked: the fixed four, and what the mask names
	jq -e 'select(.type != "lost") | (keys_unsorted == ["version", "type", "time", "node",
		"verdict", "source", "destination"]) and (.source | keys == ["ip"]) and
		(.destination | keys == ["port"]) and .destination.port == 9090' <<<"$new"
	[ "$(jq -r 'select(.type == "conn_start") | .type' <<<"$new" | wc -l)" -eq 0 ]
	# the same daemon throughout
	[ "$(sb_daemon_pid node1)" = "$pid" ] && sb_alive "$pid"
	# masked records are for external consumers and do not match the strict
	# schema: the teardown must not validate them
	rm -f "$LOG"
}

@test "a bad flowlog section on SIGHUP is refused with one log line; the old one stays" {
	flowlog_config 'deny: ["direction=INGRESS"]'
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	pid=$(sb_daemon_pid node1)

	flowlog_config 'deny: ["colour=red"]'
	kill -HUP "$pid"
	sm_wait_until 10 log_has "keeping the current flowlog settings"
	grep -F "keeping the current flowlog settings" "$(sb_daemon_log node1)"
	[ "$(grep -c "keeping the current flowlog settings" "$(sb_daemon_log node1)")" -eq 1 ]
	log_has "unknown key 'colour'"
	log_has "flowlog.deny"

	run stream_connections 2
	[ "$status" -eq 0 ]
	sm_wait_until 10 records_matching 2 '.type == "conn_end"'
	sm_wait_until 10 written_equals_lines
	# still the old deny: no INGRESS record
	[ "$(sm_records node1 '.traffic_direction == "INGRESS"' | wc -l)" -eq 0 ]
	[ "$(sm_records node1 '.type == "conn_end"' | wc -l)" -eq 2 ]
	# a changed key elsewhere is named, not applied
	flowlog_config 'deny: ["direction=INGRESS"]'
	printf 'datapath:\n  redirect: true\n' >>"$CFG"
	kill -HUP "$pid"
	sm_wait_until 10 log_has "changed datapath.redirect: not applied"
	[ "$(sm_status node1 | jq -r .redirect)" = false ]
}

@test "DROPPED records over the per-source rate are suppressed and counted exactly" {
	flowlog_config "denied_rate: 2" "denied_burst: 5"
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	pol=$SB_DIR/policy.yaml
	printf 'policies:\n  - name: no-client\n    selector:\n      spiffe: %s\n    rules:\n      - action: DENY\n        from: ["%s"]\n' \
		"$SM_LOCAL_ID" "$SM_CLIENT_ID" >"$pol"
	sb_cli node1 policy apply -f "$pol"

	attempts=60
	run sb_exec node1 client sh -c 'i=0; while [ $i -lt "$1" ]; do
		"$0" send --connect 10.11.0.1:9090 --bytes 1 --timeout 5 >/dev/null 2>&1 && exit 1
		i=$((i + 1)); done' "$SMTRAFFIC" "$attempts"
	[ "$status" -eq 0 ]
	accounted() {
		local written suppressed
		written=$(sm_records node1 '.type == "denied" and .verdict == "DROPPED"' | wc -l)
		suppressed=$(sm_records node1 '.type == "lost"' | jq -s 'map(.lost.rate_limited) | add // 0')
		echo "denied records $written + suppressed $suppressed" >&2
		[ $((written + suppressed)) -eq "$attempts" ]
	}
	sm_wait_until 15 accounted
	[ "$(sm_counter node1 policy_denied)" -eq "$attempts" ]
	written=$(sm_records node1 '.type == "denied"' | wc -l)
	[ "$written" -ge 5 ] && [ "$written" -lt "$attempts" ]
	[ "$(sm_status_flows rate_limited)" -eq $((attempts - written)) ]
	# the lost records name the source: the client's identity
	cid=$(sb_cli node1 workloads -o json | jq -er '.[] | select(.name == "client") | .identity')
	sm_records node1 '.type == "lost" and .lost.rate_limited > 0' |
		jq -e --argjson c "$cid" '.lost.rate_limited_sources[0].identity == $c and
			.lost.rate_limited_sources[0].suppressed == .lost.rate_limited and .lost.queue == 0'
	# and the metrics count them as lost events of their own source
	rate_limit_metric() {
		ip netns exec "$(sb_ns node1)" curl -sS --max-time 5 http://127.0.0.1:15020/metrics |
			awk '$1 == "sockmesh_lost_events_total{source=\"rate_limit\"}" { print $2 }'
	}
	echo "sockmesh_lost_events_total{source=\"rate_limit\"} $(rate_limit_metric)"
	[ "$(rate_limit_metric)" -eq $((attempts - written)) ]
}

@test "a full disk: no partial line, every record written or counted lost, reported when space returns" {
	small_fs 256k
	LOG=$SMALL_FS/flows.jsonl
	# room the test gives back later, as an operator would by removing something
	head -c 65536 /dev/zero >"$SMALL_FS/filler"
	flowlog_config "max_size: 0"
	sb_start_daemon node1 --flow-log "$LOG"
	sb_serve node1 local 10.11.0.1:9090 echo

	# about 1 MiB of records into 190 KiB of room
	run stream_connections 300
	[ "$status" -eq 0 ]
	made_all() { [ "$(records_made)" -ge 1200 ] && queue_empty; }
	sm_wait_until 30 made_all
	whole=$(wc -l <"$LOG")
	unfinished=0
	[ "$(tail -c 1 "$LOG" | od -An -tx1 | tr -d ' ')" = 0a ] || unfinished=1
	echo "full: $(df -k --output=avail "$SMALL_FS" | tail -n 1) KiB free; records made" \
		"$(records_made), written $(sm_status_flows records), failed $(sm_status_flows write_failed)," \
		"a line being written: $unfinished"
	# the whole lines are whole records (a line still being written may end the file)
	[ "$(head -n "$whole" "$LOG" | jq -c . | wc -l)" -eq "$whole" ]
	[ "$(sm_status_flows records)" -eq "$whole" ]
	[ "$(sm_status_flows write_failed)" -gt 0 ]
	[ "$(records_made)" -eq $(($(sm_status_flows records) + $(sm_status_flows write_failed) + unfinished)) ]
	[ "$(sm_status_flows queue_dropped)" -eq 0 ]

	# space returns: the daemon notices by itself and says what the file is missing
	rm "$SMALL_FS/filler"
	reported() {
		[ "$(jq -s '[.[] | select(.type == "lost") | .lost.write_failed] | add // 0' "$LOG")" -eq \
			"$(sm_status_flows write_failed)" ]
	}
	sm_wait_until 10 reported
	jq -c 'select(.type == "lost")' "$LOG"
	failed=$(sm_status_flows write_failed)
	# every line whole, the file ends with one
	[ "$(jq -c . "$LOG" | wc -l)" -eq "$(wc -l <"$LOG")" ]
	[ "$(tail -c 1 "$LOG" | od -An -tx1 | tr -d ' ')" = 0a ]
	[ "$(sm_status_flows records)" -eq "$(wc -l <"$LOG")" ]
	# exactly: every record made is in the file or counted as lost, in status and metrics
	in_file=$(jq -c 'select(.type != "lost")' "$LOG" | wc -l)
	echo "made $(records_made) = in the file $in_file + lost $failed"
	[ "$(records_made)" -eq $((in_file + failed)) ]
	metric_agrees() { [ "$(metric 'sockmesh_lost_events_total{source="write_failed"}')" -eq "$failed" ]; }
	sm_wait_until 5 metric_agrees
	sm_validate_flows "$LOG"

	# and writing goes on
	before=$(wc -l <"$LOG")
	run stream_connections 2
	[ "$status" -eq 0 ]
	more() { [ "$(wc -l <"$LOG")" -ge $((before + 8)) ] && queue_empty; }
	sm_wait_until 10 more
	[ "$(sm_status_flows write_failed)" -eq "$failed" ]
}

@test "a full disk with rotation and compression: backups whole, compressed again once there is room" {
	small_fs 256k
	LOG=$SMALL_FS/flows.jsonl
	head -c 131072 /dev/zero >"$SMALL_FS/filler"
	flowlog_config "max_size: 16KiB" "rotate_min_interval: 0" "max_backups: 1000" "compress: true"
	sb_start_daemon node1 --flow-log "$LOG"
	sb_serve node1 local 10.11.0.1:9090 echo

	run stream_connections 300
	[ "$status" -eq 0 ]
	made_all() { [ "$(records_made)" -ge 1200 ] && queue_empty; }
	sm_wait_until 30 made_all
	echo "full: records made $(records_made), written $(sm_status_flows records)," \
		"failed $(sm_status_flows write_failed), rotations $(sm_status_flows rotations)," \
		"compressed $(sm_status_flows compressed), compress errors $(sm_status_flows compress_errors)"
	ls -l "$SMALL_FS"
	[ "$(sm_status_flows write_failed)" -gt 0 ]
	[ "$(sm_status_flows rotations)" -ge 3 ]
	# no rotation for lines that were not written: every backup holds records
	for f in $(ls "$LOG".* | grep -E '\.[0-9]+(\.gz)?$'); do
		[ "$(zcat -f "$f" | wc -l)" -gt 0 ]
	done

	rm "$SMALL_FS/filler"
	reported() {
		[ "$(sm_flowlog_lines | jq -s '[.[] | select(.type == "lost") | .lost.write_failed] | add // 0')" -eq \
			"$(sm_status_flows write_failed)" ]
	}
	sm_wait_until 10 reported
	# more records: the next rotation compresses what the full disk left uncompressed
	run stream_connections 20
	[ "$status" -eq 0 ]
	sm_wait_until 15 older_backups_compressed
	sm_wait_until 10 queue_empty
	ls -l "$SMALL_FS"
	! ls "$SMALL_FS" | grep -q '\.gz\.tmp$'
	for f in "$LOG".*.gz; do
		gzip -t "$f"
	done
	# whole records only, across the backups and the live file; each made one written or lost
	[ "$(sm_flowlog_lines | jq -c . | wc -l)" -eq "$(sm_flowlog_lines | wc -l)" ]
	[ "$(sm_flowlog_lines | wc -l)" -eq "$(sm_status_flows records)" ]
	in_file=$(sm_flowlog_lines | jq -c 'select(.type != "lost")' | wc -l)
	failed=$(sm_status_flows write_failed)
	echo "made $(records_made) = in the files $in_file + lost $failed;" \
		"compressed $(sm_status_flows compressed), compress errors $(sm_status_flows compress_errors)"
	[ "$(records_made)" -eq $((in_file + failed)) ]
	sm_flowlog_lines | sm_validate_flows -
}
