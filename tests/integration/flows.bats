#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The live flow stream and `sockmesh flows` (docs/interfaces.md, docs/cli.md):
# the daemon's filters return exactly what jq finds in the flow log, --last,
# --since, --follow, -o json, --format vpc, bad filters, a follower too slow
# to keep up (counted, never blocking the daemon) and the followers' bound.

load helpers

setup() {
	sm_standard_sandbox
	BG_PIDS=()
}

# allow_only_client: on node1, server accepts only client (local is default-denied).
allow_only_client() {
	cat >"$SB_DIR/policy.yaml" <<-EOF
		policies:
		  - name: server-from-client
		    selector:
		      spiffe: $SM_SERVER_ID
		    rules:
		      - action: ALLOW
		        from: ["$SM_CLIENT_ID"]
	EOF
	sb_cli node1 policy apply -f "$SB_DIR/policy.yaml" >/dev/null
}

teardown() {
	local p
	for p in "${BG_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${BG_PIDS[@]}"; do
		sb_wait_pid "$p" 10 || true
	done
	sm_teardown
}

flows() { # NODE ARGS...: sockmesh flows against NODE's daemon
	local node=$1
	shift
	sb_cli "$node" flows "$@"
}

# bg_flows NODE OUT ARGS...: a follower in the background, bounded in time,
# writing to OUT; its pid is added to BG_PIDS and left in BG_PID.
bg_flows() {
	local node=$1 out=$2
	shift 2
	timeout --kill-after=10 60 "$SOCKMESH" -S "$(sb_socket "$node")" flows "$@" \
		>"$out" 2>"$out.err" 3>&- &
	BG_PID=$!
	BG_PIDS+=("$BG_PID")
}

stream_stat() { # NODE KEY: a member of status .flows.stream
	sm_status "$1" | jq -er --arg k "$2" '.flows.stream[$k]'
}

followers_are() { # NODE N
	[ "$(stream_stat "$1" followers)" -eq "$2" ]
}

# same_records NODE JQ FLAGS...: `flows -o json FLAGS` and the flow log's records
# that JQ selects are the same lines (in any order), and there is at least one.
same_records() {
	local node=$1 sel=$2 got want
	shift 2
	got=$(flows "$node" -o json "$@" | sort) || return 1
	want=$(sm_records "$node" "$sel" | sort)
	if [ -z "$want" ] || [ "$got" != "$want" ]; then
		echo "flows $* ($(grep -c . <<<"$got") lines) differs from jq '$sel' ($(grep -c . <<<"$want") lines):" >&2
		diff <(echo "$got") <(echo "$want") | head -n 6 >&2
		return 1
	fi
}

# events_logged NODE FROM N: the flow log has N kernel events after its line FROM, as
# conn_start/conn_end records or counted in lost records (a burst may overflow the
# kernel's ring buffer, all the more under the sanitizers).
events_logged() {
	local n
	n=$(tail -n +$(($2 + 1)) "$(sb_flowlog "$1")" | jq -s '([.[] |
		select(.type == "conn_start" or .type == "conn_end")] | length) +
		([.[] | select(.type == "lost") | .lost.ringbuf] | add // 0)')
	[ "$n" -ge "$3" ]
}

# Traffic of every kind on node1: same-node IPv4 and IPv6, cross-node, and a
# connect() the policy refuses (local may not call server).
mixed_traffic() {
	sb_serve node1 local 10.11.0.1:9090 echo
	sb_serve node1 local '[fc42::1]:9090' echo local6
	sb_serve node2 server 10.11.0.2:8080 echo
	allow_only_client
	sm_send node1 client 10.11.0.1:9090 1000 --expect echo >/dev/null
	sm_send node1 client '[fc42::1]:9090' 2000 --expect echo >/dev/null
	sm_send node1 client 10.11.0.2:8080 3000 --expect echo >/dev/null
	run sm_send node1 local 10.11.0.2:8080 10 # the policy refuses it
	[ "$status" -ne 0 ]
	# 2 + 2 same-node conn_ends (both sockets), 1 cross-node, 1 denied
	sm_wait_until 15 eval '[ "$(sm_records node1 ".type == \"conn_end\"" | wc -l)" -ge 5 ]'
	sm_wait_record node1 '.type == "denied"' >/dev/null
}

@test "filters: each flag returns exactly the records jq finds in the flow log" {
	sb_start_daemon node1
	sb_start_daemon node2
	mixed_traffic
	local c=$SM_CLIENT_ID l=$SM_LOCAL_ID
	set -f # the flags are split into words, their '*' is no glob
	while IFS='@' read -r sel flags; do
		# shellcheck disable=SC2086 # the flags are words
		# (waits out a record between the log and the stream; says why at the end)
		sm_wait_until 5 same_records node1 "$sel" $flags 2>/dev/null ||
			same_records node1 "$sel" $flags
	done <<-EOF
		.type == "conn_end"@--type conn_end
		.type == "conn_start" or .type == "denied"@--type conn_start --type denied
		.verdict == "DROPPED"@--verdict DROPPED
		.drop_reason == "policy_default_deny"@--drop-reason policy_default_deny
		.source.workload == "client"@--from-workload client
		.destination.workload == "local"@--to-workload local
		.source.workload == "server" or .destination.workload == "server"@--workload server
		.destination.port == 9090@--to-port 9090
		.source.port >= 8000 and .source.port <= 9000 or .destination.port >= 8000 and .destination.port <= 9000@--port 8000-9000
		.source.ip == "10.11.0.2" or .destination.ip == "10.11.0.2"@--ip 10.11.0.2
		(.destination.ip | startswith("fc42::"))@--to-ip fc42::/64
		.source.spiffe_id == "$c"@--from-identity $c
		.destination.spiffe_id == "$l"@--to-identity $l
		(.destination.spiffe_id // "") | startswith("spiffe://sockmesh.test/ns/it/")@--to-identity spiffe://sockmesh.test/ns/it/*
		.node == "node1"@--node node1
		.type == "conn_end" and .source.workload == "client" and .destination.port == 8080@--type conn_end --from-workload client --to-port 8080
		(.verdict == "DROPPED" or .destination.port == 9090) and .type != "conn_start"@--filter verdict=DROPPED --filter to-port=9090 --type conn_end|conn_update|denied
		.traffic_direction == "INGRESS" and .destination.port == 9090@--filter direction=INGRESS --to-port 9090
	EOF
	set +f
	# and a filter that matches nothing returns nothing
	run flows node1 -o json --to-port 1
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "--last N, --since T (RFC 3339 and durations) pick from the daemon's memory" {
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	for i in 1 2 3; do
		sm_send node1 client 10.11.0.1:9090 100 --expect echo >/dev/null
	done
	sm_wait_until 15 eval '[ "$(sm_records node1 ".type == \"conn_end\"" | wc -l)" -eq 6 ]'
	log=$(sb_flowlog node1)
	[ "$(flows node1 -o json --last 3)" = "$(tail -n 3 "$log")" ]
	[ "$(flows node1 -o json --last 2 --type conn_start)" = \
		"$(jq -c 'select(.type == "conn_start")' "$log" | tail -n 2)" ]
	[ "$(flows node1 -o json --last 100000)" = "$(cat "$log")" ]
	run flows node1 -o json --last 0
	[ "$status" -eq 0 ]
	[ -z "$output" ]

	# from the 7th record's time on: the records at or after it, by the log
	t=$(sed -n 7p "$log" | jq -r .time)
	want=$(jq -c --arg t "$t" 'select(.time >= $t)' "$log")
	[ "$(grep -c . <<<"$want")" -ge 6 ] && [ "$(grep -c . <<<"$want")" -lt 12 ]
	[ "$(flows node1 -o json --since "$t")" = "$want" ]
	# the same instant with an offset
	s=$(date -u -d "${t%.*}Z" +%s)
	frac=${t#*.}
	t_off=$(date -u -d "@$((s + 7200))" '+%Y-%m-%dT%H:%M:%S').${frac%Z}+02:00
	[ "$(flows node1 -o json --since "$t_off")" = "$want" ]
	[ "$(flows node1 -o json --since 1h)" = "$(cat "$log")" ]
	run flows node1 -o json --since "$(date -u -d '+1 hour' '+%Y-%m-%dT%H:%M:%SZ')"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	run flows node1 --since yesterday
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--since 'yesterday': expected an RFC 3339 time"* ]]
}

@test "--follow gets the records of connections made after it started, then ends cleanly" {
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	run sm_send node1 client 10.11.0.1:9090 100 --expect echo
	before=$(sm_port_of "$(sm_field "$output" local)")
	sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$before")" >/dev/null

	out=$SB_DIR/follow.out
	bg_flows node1 "$out" -f -o json --to-port 9090
	pid=$BG_PID
	sm_wait_until 10 followers_are node1 1
	run sm_send node1 client 10.11.0.1:9090 4321 --expect echo
	[ "$status" -eq 0 ]
	after=$(sm_port_of "$(sm_field "$output" local)")
	sel=".destination.port == 9090 and .source.port == $after"
	want=$(sm_records node1 "$sel" | sort)
	got_all() { [ "$(jq -c "select($sel)" "$out" | sort)" = "$want" ] && [ -n "$want" ]; }
	sm_wait_until 10 eval 'want=$(sm_records node1 "$sel" | sort); got_all'
	[ "$(grep -c . <<<"$want")" -eq 4 ] # both sockets' conn_start and conn_end
	# nothing from before it started, nothing else
	[ -z "$(jq -c "select(.source.port == $before)" "$out")" ]
	[ "$(wc -l <"$out")" -eq 4 ]
	jq -se 'map(select(.type == "conn_end" and .traffic_direction == "EGRESS")) |
		length == 1 and .[0].counters.bytes_sent == 4321' "$out"

	# a burst (2800 records, more than a socket and a pipe hold) reaches a reader that keeps up
	mark=$(wc -l <"$(sb_flowlog node1)")
	run sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 700 --size 10 --new-conn
	[ "$status" -eq 0 ]
	all_there() {
		[ "$(wc -l <"$out")" -eq $(($(sm_records node1 '.destination.port == 9090' | wc -l) - 4)) ]
	}
	sm_wait_until 20 eval 'events_logged node1 "$mark" 2800 && all_there'
	[ -z "$(jq -c 'select(.skipped)' "$out")" ]
	[ "$(stream_stat node1 skipped)" -eq 0 ]

	# one-shot requests go on being answered while it follows
	sm_status node1 >/dev/null
	kill -TERM "$pid"
	sb_wait_pid "$pid" 10
	[ "$SB_LAST_RC" -eq 0 ] # interrupted: its normal end
	sm_wait_until 10 followers_are node1 0

	# --last with --follow: history first, then live
	bg_flows node1 "$out" -f -o json --last 2 --type conn_end
	sm_wait_until 10 followers_are node1 1
	sm_wait_until 10 eval '[ "$(wc -l <"$out")" -eq 2 ]'
	[ "$(cat "$out")" = "$(sm_records node1 '.type == "conn_end"' | tail -n 2)" ]
	sm_send node1 client 10.11.0.1:9090 10 --expect echo >/dev/null
	sm_wait_until 10 eval '[ "$(wc -l <"$out")" -eq 4 ]'
	[ "$(cat "$out")" = "$(sm_records node1 '.type == "conn_end"' | tail -n 4)" ]

	# the daemon going away ends a follower with status 1 and says so
	sb_stop_daemon node1 TERM 10
	sb_wait_pid "$BG_PID" 10 || true
	[ "$SB_LAST_RC" -eq 1 ]
	grep -q "ended the stream (it stopped or restarted)" "$out.err"
}

@test "-o json is the flow log's lines; the compact view has one line per record" {
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	run sm_send node1 client 10.11.0.1:9090 1234 --expect echo
	port=$(sm_port_of "$(sm_field "$output" local)")
	sm_wait_until 15 eval '[ "$(sm_records node1 ".type == \"conn_end\"" | wc -l)" -eq 2 ]'

	json=$(flows node1 -o json)
	[ "$json" = "$(cat "$(sb_flowlog node1)")" ]
	# every line decodes as a version 1 record
	[ "$(jq -c 'select(.version == 1 and (.type | type) == "string")' <<<"$json" | wc -l)" -eq 4 ]
	run flows node1
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 4 ]
	[[ "$output" == *"node1: 10.11.0.1:$port (client) -> 10.11.0.1:9090 (local) FORWARDED conn_end egress 1234/1234 B"* ]]
	[[ "$output" == *"node1: 10.11.0.1:$port (client) -> 10.11.0.1:9090 (local) FORWARDED conn_end ingress 1234/1234 B"* ]]
	[[ "${lines[0]}" =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z\ node1:\  ]]
	# the global -o json works too
	[ "$(sb_cli node1 -o json flows --last 1)" = "$(tail -n 1 "$(sb_flowlog node1)")" ]
}

@test "--format vpc: bytes, ports and ACCEPT for a known transfer; REJECT for a refused connect" {
	sb_start_daemon node1
	sb_serve node1 local 10.11.0.1:9090 echo
	run sm_send node1 client 10.11.0.1:9090 54321 --expect echo
	port=$(sm_port_of "$(sm_field "$output" local)")
	sm_wait_record node1 ".type == \"conn_end\" and $(sm_egress_port "$port")" >/dev/null

	run flows node1 --format vpc --filter direction=EGRESS --from-port "$port"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status" ]
	[ "${#lines[@]}" -eq 5 ] # header, 2 lines each for conn_start and conn_end
	fwd=$(printf '%s\n' "${lines[@]:1}" | awk -v p="$port" '$6 == p && $7 == 9090')
	rev=$(printf '%s\n' "${lines[@]:1}" | awk -v p="$port" '$6 == 9090 && $7 == p')
	[ "$(awk '{ s += $10 } END { print s }' <<<"$fwd")" -eq 54321 ]
	[ "$(awk '{ s += $10 } END { print s }' <<<"$rev")" -eq 54321 ]
	# every line: version 2, no account or interface, TCP, our addresses, ACCEPT, OK
	[ "$(awk '$1 == 2 && $2 == "-" && $3 == "-" && $4 == "10.11.0.1" && $5 == "10.11.0.1" &&
		$8 == 6 && $9 > 0 && $11 <= $12 && $13 == "ACCEPT" && $14 == "OK"' \
		<(printf '%s\n%s\n' "$fwd" "$rev") | wc -l)" -eq 4 ]
	# packets: the client's segments out, as the conn_end's counters say
	segs=$(sm_records node1 "$(sm_egress_port "$port")" | jq -s 'map(.delta.segs_out) | add')
	[ "$(awk '{ s += $9 } END { print s }' <<<"$fwd")" -eq "$segs" ]

	# a connect() the policy refuses is one REJECT line
	sb_start_daemon node2
	allow_only_client
	run sm_send node1 local 10.11.0.2:8080 10 # the policy refuses it
	[ "$status" -ne 0 ]
	sm_wait_record node1 '.type == "denied"' >/dev/null
	run flows node1 --format vpc --type denied
	echo "$output"
	[ "${#lines[@]}" -eq 2 ]
	read -r -a f <<<"${lines[1]}"
	[ "${f[4]}" = 10.11.0.2 ] && [ "${f[6]}" = 8080 ] && [ "${f[9]}" = 0 ]
	[ "${f[12]}" = REJECT ] && [ "${f[13]}" = OK ]
}

@test "bad filters and arguments are refused with what to write, by the CLI and the daemon" {
	sb_start_daemon node1
	run flows node1 --filter 'verdict=DENY'
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--filter 'verdict=DENY': filter term 'verdict=DENY': unknown value 'DENY' (one of: FORWARDED, DROPPED, AUDIT)"* ]]
	run flows node1 --port 0
	[ "$status" -eq 2 ]
	[[ "$output" == *"--port: filter term 'port=0': '0' is not a port 1..65535"* ]]
	run flows node1 --to-ip 10.0.0.1/8
	[ "$status" -eq 2 ]
	[[ "$output" == *"is not an address or a CIDR with its host bits zero"* ]]
	run flows node1 --from-identity 'spiffe://x/a*'
	[ "$status" -eq 2 ]
	[[ "$output" == *"'*' may only be the whole last path segment"* ]]
	run flows node1 --workload 'a b'
	[ "$status" -eq 2 ]
	run flows node1 --last -1
	[ "$status" -eq 2 ]
	run flows node1 --format yaml
	[ "$status" -eq 2 ]
	[[ "$output" == *"unknown output format 'yaml' (compact, json or vpc)"* ]]
	run flows node1 extra
	[ "$status" -eq 2 ]

	# the daemon checks what other clients send, with the same messages
	sock=$(sb_socket node1)
	ask() { echo "$1" | timeout 5 socat -t 2 - "UNIX-CONNECT:$sock"; }
	run ask '{"cmd":"flows","args":{"filters":["to-port=80","verdikt=1"]}}'
	echo "$output"
	[ "$(jq -r .ok <<<"$output")" = false ]
	[[ "$(jq -r .error <<<"$output")" == "flows: filter 2: filter term 'verdikt=1': unknown key 'verdikt'"* ]]
	run ask '{"cmd":"flows","args":{"since":"5m"}}'
	[[ "$(jq -r .error <<<"$output")" == *'"since" must be an RFC 3339 time'* ]]
	run ask '{"cmd":"flows","args":{"last":-2}}'
	[[ "$(jq -r .error <<<"$output")" == *'"last" must be a number of records'* ]]
	run ask '{"cmd":"flows","args":{"folow":true}}'
	[[ "$(jq -r .error <<<"$output")" == *'unknown argument "folow"'* ]]
	# a well-formed one: the header, and the ring's records
	run ask '{"cmd":"flows","args":{"last":5}}'
	jq -e '.ok == true and .data.node == "node1" and .data.ring_size == 4096 and .data.follow == false' \
		<<<"${lines[0]}"

	# a daemon whose stream is off says so
	sb_start_daemon node2 --set flowlog.ring_size=0
	run flows node2
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"the flow stream is off (flowlog.ring_size is 0): set flowlog.ring_size"* ]]
	sm_status node2 | jq -e '.flows.stream.ring_size == 0'
}

@test "a follower too slow to read never blocks the daemon; what it missed is counted in the stream" {
	# a ring of 256 records: a follower may fall that far behind (and its buffers' worth)
	sb_start_daemon node1 --set flowlog.ring_size=256
	sb_serve node1 local 10.11.0.1:9090 echo
	out=$SB_DIR/slow.out
	go=$SB_DIR/slow.go
	fifo=$SB_DIR/slow.fifo
	mkfifo "$fifo"
	# the reader holds the fifo open but reads nothing until $go exists: the CLI
	# blocks writing to it, and stops reading the daemon
	# shellcheck disable=SC2016 # the inner shell expands
	sh -c 'exec 4<"$1"; i=0; while [ ! -e "$2" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
		exec cat <&4 >"$3"' sh "$fifo" "$go" "$out" 3>&- &
	BG_PIDS+=($!)
	timeout --kill-after=2 60 "$SOCKMESH" -S "$(sb_socket node1)" flows -f -o json \
		>"$fifo" 2>"$out.err" 3>&- &
	BG_PIDS+=($!)
	# and one that reads as fast as it can, through the same small ring
	fast=$SB_DIR/fast.out
	bg_flows node1 "$fast" -f -o json
	sm_wait_until 10 followers_are node1 2
	before=$(wc -l <"$(sb_flowlog node1)")

	# 2000 connections, 8000 records, far more than the ring, the sockets and the pipe hold
	sb_run node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 2000 --size 10 --new-conn
	rr=$SB_RUN_PID
	# the daemon goes on while the slow follower is behind: status answers, and counts it
	sm_wait_until 20 eval '[ "$(stream_stat node1 skipped)" -gt 0 ]'
	# the reader wakes up while records still come: it catches up through the ring
	touch "$go"
	sb_wait_pid "$rr" 60
	[ "$SB_LAST_RC" -eq 0 ]
	sm_wait_until 20 events_logged node1 "$before" 8000

	# every record after it started is either in its output or counted by a notice
	delivered() { # OUT
		local recs skipped total
		total=$(($(wc -l <"$(sb_flowlog node1)") - before))
		recs=$(jq -c 'select(.version == 1)' "$1" | wc -l)
		skipped=$(jq -s '[.[] | select(.skipped) | .skipped] | add // 0' "$1")
		echo "$1: delivered $recs, skipped $skipped, want $total" >&2
		[ $((recs + skipped)) -eq "$total" ]
	}
	sm_wait_until 20 delivered "$out"
	sm_wait_until 20 delivered "$fast"
	[ -z "$(comm -23 <(jq -c 'select(.version == 1)' "$fast" | sort) <(sort "$(sb_flowlog node1)"))" ]
	jq -se 'map(select(.skipped)) | length > 0 and
		all(.reason == "slow_reader" and .node == "node1" and .skipped > 0)' "$out"
	# what it did get is what the flow log has
	[ -z "$(comm -23 <(jq -c 'select(.version == 1)' "$out" | sort) <(sort "$(sb_flowlog node1)"))" ]
	[ "$(stream_stat node1 skipped)" -eq "$(cat "$out" "$fast" |
		jq -s '[.[] | select(.skipped) | .skipped] | add')" ]
}

@test "a follower behind a busy stream still ends at once on SIGTERM" {
	sb_start_daemon node1 --set flowlog.ring_size=256
	sb_serve node1 local 10.11.0.1:9090 echo
	fifo=$SB_DIR/behind.fifo
	mkfifo "$fifo"
	# its reader takes a line every 5 ms, far slower than the records come: whenever
	# the CLI gets back from writing, records are waiting on its socket
	/usr/bin/python3 -c 'import sys, time
for line in sys.stdin:
    time.sleep(0.005)' <"$fifo" 3>&- &
	BG_PIDS+=($!)
	timeout --kill-after=10 60 "$SOCKMESH" -S "$(sb_socket node1)" flows -f -o json \
		>"$fifo" 2>"$SB_DIR/behind.err" 3>&- &
	pid=$!
	BG_PIDS+=("$pid")
	sm_wait_until 10 followers_are node1 1
	sb_run node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:9090 --count 20000 --size 10 --new-conn
	rr=$SB_RUN_PID
	# behind: the daemon has had to skip records for it
	sm_wait_until 20 eval '[ "$(stream_stat node1 skipped)" -gt 0 ]'
	sb_alive "$rr" # and records still come
	kill -TERM "$pid"
	sb_wait_pid "$pid" 5
	echo "status $SB_LAST_RC; $(cat "$SB_DIR/behind.err")"
	[ "$SB_LAST_RC" -eq 0 ] # interrupted: its normal end
	kill "$rr"
	sb_wait_pid "$rr" 10 || true
}

@test "records the daemon had to drop before filtering reach followers as a daemon_busy notice" {
	# a ring of 4: the main loop may fall at most 4 records behind the worker threads
	sb_start_daemon node1
	sb_start_daemon node2 --set flowlog.ring_size=4
	sb_serve node2 server 10.11.0.2:8080 echo
	# node2 refuses client at its tunnel (403): each attempt is a record a worker writes
	cat >"$SB_DIR/policy.yaml" <<-EOF
		policies:
		  - name: server-from-local
		    selector:
		      spiffe: $SM_SERVER_ID
		    rules:
		      - action: ALLOW
		        from: ["$SM_LOCAL_ID"]
	EOF
	sb_cli node2 policy apply -f "$SB_DIR/policy.yaml" >/dev/null
	out=$SB_DIR/busy.out
	bg_flows node2 "$out" -f -o json
	sm_wait_until 10 followers_are node2 1
	before=$(wc -l <"$(sb_flowlog node2)")

	# node2's main loop stops: its thread (only it) is held with ptrace, the workers go on
	release=$SB_DIR/release
	sb_run node2 stranger /usr/bin/python3 "$SM_REPO/tests/tools/holdthread.py" \
		"$(sb_daemon_pid node2)" --until "$release" --max 30
	holder=$SB_RUN_PID hold_out=$SB_RUN_OUT
	sm_wait_until 10 grep -qs '"event":"stopped"' "$hold_out"
	for i in $(seq 10); do
		sm_send node1 client 10.11.0.2:8080 10 >/dev/null 2>&1 || true
	done
	sm_wait_until 10 eval '[ $(($(wc -l <"$(sb_flowlog node2)") - before)) -ge 10 ]'
	[ -z "$(jq -c 'select(.version == 1)' "$out")" ] # the main loop is still held
	touch "$release"
	sb_wait_pid "$holder" 10
	grep '"event":"released"' "$hold_out"

	delivered() {
		local recs skipped total
		total=$(($(wc -l <"$(sb_flowlog node2)") - before))
		recs=$(jq -c 'select(.version == 1)' "$out" | wc -l)
		skipped=$(jq -s '[.[] | select(.skipped) | .skipped] | add // 0' "$out")
		echo "delivered $recs, skipped $skipped, want $total" >&2
		[ "$skipped" -gt 0 ] && [ $((recs + skipped)) -eq "$total" ]
	}
	sm_wait_until 15 delivered
	jq -se 'map(select(.skipped)) | length > 0 and all(.reason == "daemon_busy")' "$out"
	[ "$(stream_stat node2 dropped)" -eq "$(jq -s '[.[] | select(.skipped) | .skipped] | add' "$out")" ]
	grep -q 'records dropped before the followers saw them' "$(sb_daemon_log node2)"
}

@test "at most 16 followers: the 17th is refused with a clear error, one-shot reads go on" {
	sb_start_daemon node1
	for i in $(seq 16); do
		bg_flows node1 "$SB_DIR/f$i.out" -f
	done
	sm_wait_until 15 followers_are node1 16
	run flows node1 -f
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"16 following (--follow) clients are connected already, the most this daemon serves at once"* ]]
	run flows node1 --last 1
	[ "$status" -eq 0 ]
	for p in "${BG_PIDS[@]}"; do
		kill "$p"
	done
	sm_wait_until 10 followers_are node1 0
	bg_flows node1 "$SB_DIR/again.out" -f
	sm_wait_until 10 followers_are node1 1
}
