#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Flow-log export (issue 5's and issue 17's measurements):
#   1. sink throughput: bench/flowsink-bench pushes typical conn_end records
#      through the daemon's sinks into a file with rotation (10 MiB) and gzip
#      backups, pinned to one CPU with taskset: records/s flat out, then a
#      fixed 50,000 records/s schedule, each with the queue-full count
#      (queue_dropped must stay 0: nothing lost);
#   2. daemon CPU per 1,000 flows/s: one sandbox node, same-node connections
#      (4 records each) driven at a fixed rate for --seconds, the daemon's
#      utime+stime from /proc/PID/stat before and after.
#   3. with --storm (instead of 1 and 2): as many same-node connections as
#      the machine can make for --seconds (or --conn-rate of them a second),
#      from --clients `smtraffic storm` processes in parallel (each to its own server; connect and close, 4
#      events each), on a node with default settings: connections/s reached,
#      the daemon's CPU in total and per 1,000 flows/s, the events the kernel
#      lost (ringbuf_reserve_fail) and the sinks dropped (queue_dropped), and
#      whether the flow log has every connection's 4 records. --profile FILE
#      records the daemon with perf (-g) meanwhile and prints the time by
#      function group (bench/flows-profile.sh). --set KEY=VALUE (repeatable)
#      passes a setting to the daemon (e.g. datapath.ringbuf_size=4194304);
#      --daemon-nice N runs the daemon's threads at nice N (e.g. -10: the CPU
#      it needs first, as a node would give it with the unit's Nice= or
#      CPUWeight=).
# Not part of the tests.
#
# Usage (root for parts 2 and 3, after make): bench/flows.sh [--seconds S]
#   [--conn-rate N] [--storm [--clients C] [--profile FILE] [--set K=V]...
#   [--daemon-nice N]]
#   defaults: 10 s, 1000 connections/s, 2 storm clients
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_RUN=10
CONN_RATE=1000
STORM=0
STORM_RATE=""
CLIENTS=2
PROFILE=""
NICE=""
SETS=()
while [ $# -gt 0 ]; do
	case $1 in
	--seconds)
		SECONDS_RUN=$2
		shift 2
		;;
	--conn-rate)
		CONN_RATE=$2
		STORM_RATE=$2
		shift 2
		;;
	--storm)
		STORM=1
		shift
		;;
	--clients)
		CLIENTS=$2
		shift 2
		;;
	--profile)
		PROFILE=$(realpath -m "$2")
		shift 2
		;;
	--set)
		SETS+=(--set "$2")
		shift 2
		;;
	--daemon-nice)
		NICE=$2
		shift 2
		;;
	-h | --help)
		sed -n '3,31p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench/flows.sh: unknown option $1 (see --help)" >&2
		exit 2
		;;
	esac
done
OUT=$(realpath -m "${SM_OUTPUT:-.output}")
make --no-print-directory OUTPUT="$OUT" bench-tools >/dev/null
CPU=$(($(nproc) - 1))
TMPD=$(mktemp -d /tmp/sockmesh-bench-flows.XXXXXX)
cleanup() {
	set +e
	[ -z "${SB_ID:-}" ] || sb_destroy
	rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cpu_ticks() { # utime + stime of PID, in clock ticks
	awk '{print $14 + $15}' "/proc/$1/stat"
}
busy_ticks() { # busy and total clock ticks of every CPU (/proc/stat)
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

storm() {
	local pid i c0 c1 t0 t1 b0 b1 tot0 tot1 s0 s1 connected attempts perf_pid hz
	[ "$(id -u)" -eq 0 ] || { echo "--storm needs root (a sandbox node)" >&2; exit 1; }
	export SOCKMESHD=$OUT/sockmeshd SOCKMESH=$OUT/sockmesh SMTRAFFIC=$OUT/tools/smtraffic
	# shellcheck source=scripts/sandbox.sh
	. scripts/sandbox.sh
	TD=spiffe://bench.test/ns/f/sa
	SB_MTLS=0
	sb_create "fls$$" 1
	sb_add_workload node1 client "$TD/client"
	sb_add_workload node1 server "$TD/server"
	for ((i = 0; i < CLIENTS; i++)); do
		sb_add_service 10.11.0.1 $((7000 + i)) server
	done
	sb_write_catalog "$(sb_catalog)"
	# the client closes first, so its side waits in TIME_WAIT: reuse those (after
	# 1 s, timestamps on) and every local port, or the storm runs out of ports
	ip netns exec "$(sb_ns node1)" sysctl -qw net.ipv4.tcp_tw_reuse=1 \
		net.ipv4.ip_local_port_range="1024 65535"
	sb_start_daemon node1 --set tunnel.hbone=false "${SETS[@]}"
	for ((i = 0; i < CLIENTS; i++)); do
		sb_serve node1 server 10.11.0.1:$((7000 + i)) echo
	done
	pid=$(sb_daemon_pid node1)
	if [ -n "$NICE" ]; then
		# every thread: setpriority() takes one at a time
		for i in /proc/"$pid"/task/*; do
			renice -n "$NICE" -p "${i##*/}" >/dev/null
		done
	fi
	status() { sb_cli node1 status -o json; }
	s0=$(status)
	read -r b0 tot0 < <(busy_ticks)
	c0=$(cpu_ticks "$pid")
	if [ -n "$PROFILE" ]; then
		perf record -q --call-graph dwarf,16384 -F 999 -o "$PROFILE" -p "$pid" 2>/dev/null &
		perf_pid=$!
	fi
	t0=$(date +%s.%N)
	local clients=() rate=()
	[ -z "$STORM_RATE" ] || rate=(--rate $((STORM_RATE / CLIENTS)))
	for ((i = 0; i < CLIENTS; i++)); do
		sb_run node1 client "$SMTRAFFIC" storm --connect 10.11.0.1:$((7000 + i)) \
			--seconds "$SECONDS_RUN" --timeout 10 "${rate[@]}"
		clients+=("$SB_RUN_PID")
	done
	for i in "${clients[@]}"; do
		sb_wait_pid "$i" $((SECONDS_RUN + 30)) || {
			echo "a storm client failed ($SB_LAST_RC):" >&2
			cat "$SB_DIR"/logs/run*-client.err >&2
			exit 1
		}
	done
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	read -r b1 tot1 < <(busy_ticks)
	connected=$(cat "$SB_DIR"/logs/run*-client.out | jq -s 'map(.connected) | add')
	attempts=$(cat "$SB_DIR"/logs/run*-client.out | jq -s 'map(.attempts) | add')
	# the rest of the ring drains: wait (bounded) until every event is a record
	# or the records stop moving
	local prev=-1 now deadline=$((SECONDS + 60))
	want() { # the events the kernel put in the ring since the start (lost ones not counted)
		jq -r --argjson a "$s0" '.counters.flow_start + .counters.flow_end
			- $a.counters.flow_start - $a.counters.flow_end' <<<"$1"
	}
	while ((SECONDS < deadline)); do
		s1=$(status)
		now=$(jq -r --argjson a "$s0" '.flows.records - $a.flows.records' <<<"$s1")
		[ "$now" -ge "$(want "$s1")" ] && break
		[ "$now" -eq "$prev" ] && break
		prev=$now
		sleep 1
	done
	local c2
	c2=$(cpu_ticks "$pid")
	if [ -n "$PROFILE" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
	fi
	hz=$(getconf CLK_TCK)
	echo "== storm: $CLIENTS clients for $SECONDS_RUN s${STORM_RATE:+ at $STORM_RATE connections/s}, same node, ${SETS[*]:-default settings}${NICE:+, daemon at nice $NICE}"
	echo "  machine: $(nproc) CPUs busy $(echo "$b0 $tot0 $b1 $tot1" | awk '{printf "%.0f%%", 100 * ($3 - $1) / ($4 - $2)}') during the storm; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	jq -rn --argjson a "$s0" --argjson b "$s1" --argjson conn "$connected" \
		--argjson att "$attempts" --argjson t "$(echo "$t1 - $t0" | bc -l)" \
		--argjson cpu "$(echo "($c1 - $c0) / $hz" | bc -l)" \
		--argjson cpu2 "$(echo "($c2 - $c0) / $hz" | bc -l)" '
		def d(f): (($b | f) - ($a | f));
		def r(x): (x * 100 | round) / 100;
		($conn / $t) as $rate
		| d(.counters.flow_start + .counters.flow_end) as $ev
		| "  \($conn) connections (\($att) attempts) in \(r($t)) s = \($rate | round) connections/s",
		  "  kernel events \($ev) (\(r($ev / $conn)) per connection), lost in the ring (ringbuf_reserve_fail) \(d(.counters.ringbuf_reserve_fail))",
		  "  records written \(d(.flows.records)), queue_dropped \(d(.flows.queue_dropped)), lost records \(d(.flows.lost_records))",
		  "  daemon CPU \(r($cpu)) s during the storm (\(r($cpu / $t)) of a core), \(r($cpu2)) s with the drain after it",
		  "  per 1,000 flows/s: \(($cpu / $t) / ($rate / 1000) * 1000 | round / 1000) CPU s per s; per event \(($cpu2 / $ev * 1e6) * 10 | round / 10) us"'
	# the flow log rotates (10 MiB) and keeps 5 files: the counters say what was written
	jq -r --argjson a "$s0" --argjson b "$s1" '
		(($b.counters.flow_start + $b.counters.flow_end) - ($a.counters.flow_start + $a.counters.flow_end)) as $ev
		| ($b.flows.records - $a.flows.records) as $rec
		| ($b.counters.ringbuf_reserve_fail - $a.counters.ringbuf_reserve_fail) as $lost
		| "  every event kept: \(if $lost == 0 and $rec >= $ev and $b.flows.queue_dropped == $a.flows.queue_dropped then "yes" else "NO" end)"' <<<"$s1"
	if [ -n "$PROFILE" ]; then
		echo "== profile of the daemon during the storm ($PROFILE)"
		bench/flows-profile.sh "$PROFILE" "$(echo "($c2 - $c0) / $hz" | bc -l)" \
			"$(jq -r --argjson a "$s0" '.flows.records - $a.flows.records' <<<"$s1")"
	fi
}

if [ "$STORM" = 1 ]; then
	storm
	exit 0
fi

echo "== sink throughput, one CPU (taskset -c $CPU), 10 MiB rotation, gzip backups"
for mode in max 50000; do
	rm -rf "${TMPD:?}"/sink && mkdir "$TMPD/sink"
	args=(--dir "$TMPD/sink" --seconds "$SECONDS_RUN")
	[ "$mode" = max ] || args+=(--rate "$mode")
	j=$(taskset -c "$CPU" "$OUT/bench/flowsink-bench" "${args[@]}")
	echo "$j" | jq -r --arg m "$mode" '"  \($m | if . == "max" then "flat out" else . + "/s schedule" end): \(.records_per_s) records/s written, \(.written) of \(.emitted), queue_dropped \(.queue_dropped), \(.rotations) rotations, \(.compressed) compressed, \(.cpu_s) CPU s in \(.seconds) s"'
	# the backups hold whole records: a check, not a figure
	for f in "$TMPD"/sink/flows.jsonl.*.gz; do
		[ -e "$f" ] || continue
		zcat "$f" | tail -n 1 | jq -e .version >/dev/null
	done
done

[ "$(id -u)" -eq 0 ] || { echo "part 2 needs root (a sandbox node): skipped"; exit 0; }
echo "== daemon CPU per 1,000 flows/s ($CONN_RATE connections/s for $SECONDS_RUN s, same node)"
export SOCKMESHD=$OUT/sockmeshd SOCKMESH=$OUT/sockmesh SMTRAFFIC=$OUT/tools/smtraffic
# shellcheck source=scripts/sandbox.sh
. scripts/sandbox.sh
TD=spiffe://bench.test/ns/f/sa
SB_MTLS=0
sb_create "flw$$" 1
sb_add_workload node1 client "$TD/client"
sb_add_workload node1 server "$TD/server"
sb_add_service 10.11.0.1 7000 server echo
sb_write_catalog "$(sb_catalog)"
printf 'flowlog:\n  max_size: 10MiB\n  max_backups: 5\n  compress: true\n' >>"$(sb_config node1)"
sb_start_daemon node1 --set tunnel.hbone=false
sb_serve node1 server 10.11.0.1:7000 echo
pid=$(sb_daemon_pid node1)

flows() {
	sb_cli node1 status -o json | jq -r '"\(.flows.records) \(.flows.queue_dropped)"'
}
per_tick=$((CONN_RATE / 10))
read -r rec0 _ < <(flows)
c0=$(cpu_ticks "$pid")
t0=$(date +%s.%N)
# a fixed schedule: CONN_RATE/10 connections every 100 ms
for ((i = 0; i < SECONDS_RUN * 10; i++)); do
	due=$(echo "$t0 + ($i + 1) / 10" | bc -l)
	sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:7000 --count "$per_tick" --size 1 \
		--new-conn --timeout 10 >/dev/null
	now=$(date +%s.%N)
	wait_s=$(echo "$due - $now" | bc -l)
	if [ "$(echo "$wait_s > 0" | bc -l)" = 1 ]; then sleep "$wait_s"; fi
done
t1=$(date +%s.%N)
sleep 1 # the last records drain (the ring buffer is read every 100 ms)
c1=$(cpu_ticks "$pid")
read -r rec1 dropped < <(flows)
hz=$(getconf CLK_TCK)
elapsed=$(echo "$t1 - $t0" | bc -l)
conns=$((per_tick * SECONDS_RUN * 10))
echo "$conns $elapsed $((c1 - c0)) $hz $((rec1 - rec0)) $dropped" | awk '{
	rate = $1 / $2; cpu = $3 / $4; recs = $5
	printf "  %d connections in %.2f s = %.0f flows/s, %d records (%.0f/s), queue_dropped %d\n", $1, $2, rate, recs, recs / $2, $6
	printf "  daemon CPU %.2f s = %.3f CPU s per s; per 1,000 flows/s: %.3f CPU s per s (%.1f%% of a core)\n", cpu, cpu / $2, (cpu / $2) / (rate / 1000), 100 * (cpu / $2) / (rate / 1000)
}'
