#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Flow-log export (issue 5's measurements):
#   1. sink throughput: bench/flowsink-bench pushes typical conn_end records
#      through the daemon's sinks into a file with rotation (10 MiB) and gzip
#      backups, pinned to one CPU with taskset: records/s flat out, then a
#      fixed 50,000 records/s schedule, each with the queue-full count
#      (queue_dropped must stay 0: nothing lost);
#   2. daemon CPU per 1,000 flows/s: one sandbox node, same-node connections
#      (4 records each) driven at a fixed rate for --seconds, the daemon's
#      utime+stime from /proc/PID/stat before and after.
# Not part of the tests.
#
# Usage (root for part 2, after make): bench/flows.sh [--seconds S] [--conn-rate N]
#   defaults: 10 s, 1000 connections/s
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_RUN=10
CONN_RATE=1000
while [ $# -gt 0 ]; do
	case $1 in
	--seconds)
		SECONDS_RUN=$2
		shift 2
		;;
	--conn-rate)
		CONN_RATE=$2
		shift 2
		;;
	-h | --help)
		sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'
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

cpu_ticks() { # utime + stime of PID, in clock ticks
	awk '{print $14 + $15}' "/proc/$1/stat"
}
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
