#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Connection policy at scale (issue 4's measurements), in one sandbox node:
#   - the connect4 hook's cost per call (kernel.bpf_stats_enabled: run_time_ns /
#     run_cnt of sock4_connect) and the connect + 1-byte echo latency of allowed
#     same-node connections, with no policy, ~1,000 and ~50,000 kernel entries;
#   - how long `sockmesh policy apply` takes for each (the daemon's apply_ms:
#     compile, fill new maps, flip, save) and what it costs in memory (the
#     daemon's RSS, and the kernel's memlock of the live policy map).
# Ratios are against no policy in the same run. Not part of the tests.
#
# Usage (root, after make): bench/policy.sh [--connects N]   (default 5000)
set -euo pipefail

cd "$(dirname "$0")/.."
CONNECTS=5000
while [ $# -gt 0 ]; do
	case $1 in
	--connects)
		CONNECTS=$2
		shift 2
		;;
	-h | --help)
		sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench/policy.sh: unknown option $1 (see --help)" >&2
		exit 2
		;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench/policy.sh: run as root" >&2; exit 1; }
OUT=${SM_OUTPUT:-.output}
export SOCKMESHD=$OUT/sockmeshd SOCKMESH=$OUT/sockmesh SMTRAFFIC=$OUT/tools/smtraffic
# shellcheck source=scripts/sandbox.sh
. scripts/sandbox.sh

stats_before=$(cat /proc/sys/kernel/bpf_stats_enabled)
cleanup() {
	set +e
	echo "$stats_before" >/proc/sys/kernel/bpf_stats_enabled
	sb_destroy
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TD=spiffe://bench.test/ns/p/sa
NSRC=250 NDST=40
SB_MTLS=0 # same-node connections only: no tunnel, no PKI
sb_create "pol$$" 1
sb_add_workload node1 client "$TD/client"
sb_add_workload node1 server "$TD/server"
sb_add_service 10.11.0.1 7000 server echo
# identities for the large policy: they need catalog entries, not processes
for i in $(seq $NSRC); do sb_add_workload node1 "src$i" "$TD/src$i"; done
for i in $(seq $NDST); do sb_add_workload node1 "dst$i" "$TD/dst$i"; done
sb_write_catalog "$(sb_catalog)"
sb_start_daemon node1 --set tunnel.hbone=false --set datapath.max_policy_entries=65536
sb_serve node1 server 10.11.0.1:7000 echo

POL=$SB_DIR/policy.yaml
# policy_doc NDST NSRC PORTS: ALLOW from NSRC sources on PORTS to NDST destinations, and
# the measured pair (client -> server) allowed on 7000
policy_doc() {
	local nd=$1 ns=$2 ports=$3 i
	echo "policies:"
	echo "  - name: server-from-client"
	echo "    selector: {spiffe: \"$TD/server\"}"
	echo "    rules:"
	echo "      - {action: ALLOW, from: [\"$TD/client\"], ports: [7000]}"
	for ((i = 1; i <= nd; i++)); do
		echo "  - name: bulk-$i"
		echo "    selector: {spiffe: \"$TD/dst$i\"}"
		echo "    rules:"
		echo "      - action: ALLOW"
		echo "        ports: [$ports]"
		echo "        from:"
		for ((j = 1; j <= ns; j++)); do echo "          - \"$TD/src$j\""; done
	done
}

prog_id=$(bpftool cgroup show "$(sb_cgroup_dir node1 client)" -j | jq -r '.[] | select(.name == "sock4_connect") | .id')
[ -n "$prog_id" ] || { echo "bench/policy.sh: no sock4_connect on the client cgroup" >&2; exit 1; }
stats() { bpftool prog show id "$prog_id" -j | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"'; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$(sb_daemon_pid node1)/status"; }
# A bpftool JSON value -> a number: a plain number, or a byte array (["0x01","0x00",...])
# whose first 4 bytes are a little-endian u32.
num_of() {
	local v
	v=$(jq -r 'if type == "array" then "hex:" + (.[0:4] | reverse | map(ltrimstr("0x")) | join("")) else tostring end')
	case $v in
	hex:*) echo $((16#${v#hex:})) ;;
	*) echo "$v" ;;
	esac
}
policy_memlock() { # the live inner map's memlock, KiB
	local dir slot id
	dir=$(sb_bpffs_dir node1)/maps
	slot=$(bpftool map dump pinned "$dir/policy_state" -j |
		jq -c '.[0].value | if type == "array" then . else .slot end' | num_of)
	id=$(bpftool map lookup pinned "$dir/policy_maps" key "$slot" 0 0 0 -j |
		jq -c '.inner_map_id // .value' | num_of)
	bpftool map show id "$id" -j | jq -r '(.bytes_memlock // 0) / 1024 | floor'
}

declare -A R
measure() { # LABEL
	local t0 c0 t1 c1 j
	echo 1 >/proc/sys/kernel/bpf_stats_enabled
	read -r t0 c0 < <(stats)
	j=$(sb_exec node1 client "$SMTRAFFIC" rr --connect 10.11.0.1:7000 --count "$CONNECTS" --size 1 --new-conn --timeout 120)
	read -r t1 c1 < <(stats)
	echo "$stats_before" >/proc/sys/kernel/bpf_stats_enabled
	R[$1.ns]=$(((t1 - t0) / (c1 - c0)))
	R[$1.p50]=$(jq .p50_us <<<"$j")
	R[$1.p99]=$(jq .p99_us <<<"$j")
	printf '  %-8s sock4_connect %5s ns/call  connect+echo p50 %6s us  p99 %6s us\n' "$1" \
		"${R[$1.ns]}" "${R[$1.p50]}" "${R[$1.p99]}"
}

apply() { # LABEL NDST NSRC PORTS
	local rss0 out
	policy_doc "$2" "$3" "$4" >"$POL"
	rss0=$(rss_kib)
	out=$(sb_cli node1 policy apply -f "$POL" -o json --timeout 120000)
	R[$1.entries]=$(jq .entries <<<"$out")
	R[$1.apply_ms]=$(jq '.apply_ms | floor' <<<"$out")
	R[$1.rss]=$(($(rss_kib) - rss0))
	R[$1.memlock]=$(policy_memlock)
	printf '  %-8s %6s entries  apply %5s ms  daemon RSS +%s KiB  kernel map %s KiB\n' "$1" \
		"${R[$1.entries]}" "${R[$1.apply_ms]}" "${R[$1.rss]}" "${R[$1.memlock]}"
}

echo "== $CONNECTS allowed same-node connections (connect, 1-byte echo, close) per size"
measure none
apply 1k 1 199 '7001, 7002, 7003, 7004, 7005'
measure 1k
apply 50k $NDST $NSRC '7001, 7002, 7003, 7004, 7005'
measure 50k

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "| policy | kernel entries | apply, ms | sock4_connect ns/call | ratio | connect+echo p50 / p99, µs | ratio p50 |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
echo "| none | 0 | - | ${R[none.ns]} | 1.00 | ${R[none.p50]} / ${R[none.p99]} | 1.00 |"
for s in 1k 50k; do
	echo "| $s | ${R[$s.entries]} | ${R[$s.apply_ms]} | ${R[$s.ns]} | $(ratio "${R[$s.ns]}" "${R[none.ns]}") | ${R[$s.p50]} / ${R[$s.p99]} | $(ratio "${R[$s.p50]}" "${R[none.p50]}") |"
done
