#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Benchmark (not a test): plain TCP vs sockmesh capture-and-forward between two
# sandbox nodes, measured in the same run, reported as ratios.
#   1. a 1 GiB single-stream transfer (iperf3 -n 1G), plain vs captured
#   2. a 1-byte request/response loop on one connection (p50/p99), plain vs captured
#   3. new connections: one connection per 1-byte round trip (connect, request,
#      response, close), connections/s and p50/p99, plain vs captured
#   4. the per-call cost of the hooks during 3, from kernel.bpf_stats_enabled
#      (run_time_ns / run_cnt of the programs attached in the sandbox)
# "Plain" is the same client on node1 in a cgroup that is not a workload, so
# both paths cross the same veth; "captured" goes client → 127.0.0.1:15001 →
# sockmeshd → node2.
#
# Usage: bench/run.sh [--bytes 1G] [--rr-count 20000] [--connects 5000]
# Results: printed, and saved as JSON under bench/results/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUTPUT:-$PWD/.output}
BYTES=1G RR_COUNT=20000 CONNECTS=5000
while [ $# -gt 0 ]; do
	case $1 in
	--bytes) BYTES=$2; shift 2 ;;
	--rr-count) RR_COUNT=$2; shift 2 ;;
	--connects) CONNECTS=$2; shift 2 ;;
	-h | --help) sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (namespaces, cgroups, BPF)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "bench: iperf3 missing (scripts/install-deps.sh)" >&2; exit 1; }

export SOCKMESHD=$OUT/sockmeshd SOCKMESH=$OUT/sockmesh SMTRAFFIC=$OUT/tools/smtraffic
# shellcheck source=scripts/sandbox.sh
. scripts/sandbox.sh

stats_before=$(cat /proc/sys/kernel/bpf_stats_enabled)
cleanup() {
	set +e # teardown must run to the end whatever fails in it
	echo "$stats_before" >/proc/sys/kernel/bpf_stats_enabled
	sb_destroy
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sb_create "bench$$" 2
sb_add_workload node1 client spiffe://example.org/ns/bench/sa/client
sb_add_cgroup node1 plain
# PERMISSIVE: the "plain TCP" client is not enrolled, and a STRICT server refuses
# plaintext from other hosts
sb_add_workload node2 server spiffe://example.org/ns/bench/sa/server permissive
sb_add_service 10.11.0.2 5201 server iperf
sb_add_service 10.11.0.2 7000 server echo
sb_write_catalog
sb_start_daemon node1
sb_start_daemon node2
sb_run node2 server iperf3 -s -B 10.11.0.2 -p 5201
sb_serve node2 server 10.11.0.2:7000 echo
sleep 0.5

iperf() { # CGROUP → Gbit/s of a single stream transferring $BYTES
	sb_exec node1 "$1" iperf3 -c 10.11.0.2 -p 5201 -n "$BYTES" -J |
		jq '.end.sum_received.bits_per_second / 1e9'
}
rr() { # CGROUP [--new-conn] → {"p50_us":..,"p99_us":..,"per_s":..}
	sb_exec node1 "$1" "$SMTRAFFIC" rr --connect 10.11.0.2:7000 --count "$RR_COUNT" --size 1 \
		--timeout 120 ${2:-} | jq -c '{p50_us,p99_us,per_s}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "== transfer of $BYTES, single stream (iperf3)"
plain_bw=$(iperf plain)
mesh_bw=$(iperf client)
printf '  plain TCP  %6.2f Gbit/s\n  sockmesh   %6.2f Gbit/s   ratio %s\n' "$plain_bw" "$mesh_bw" \
	"$(ratio "$mesh_bw" "$plain_bw")"

echo "== 1-byte request/response, one connection, $RR_COUNT round trips"
plain_rr=$(rr plain)
mesh_rr=$(rr client)
p50p=$(jq .p50_us <<<"$plain_rr") p99p=$(jq .p99_us <<<"$plain_rr")
p50m=$(jq .p50_us <<<"$mesh_rr") p99m=$(jq .p99_us <<<"$mesh_rr")
printf '  plain TCP  p50 %6s us  p99 %6s us\n' "$p50p" "$p99p"
printf '  sockmesh   p50 %6s us  p99 %6s us   ratio p50 %s, p99 %s\n' "$p50m" "$p99m" \
	"$(ratio "$p50m" "$p50p")" "$(ratio "$p99m" "$p99p")"

echo "== new connection per 1-byte round trip, $CONNECTS connections"
RR_COUNT=$CONNECTS
plain_cc=$(rr plain --new-conn)
echo 1 >/proc/sys/kernel/bpf_stats_enabled
prog_ids=$(for cg in "$(sb_cgroup_dir node1 client)" "$(sb_cgroup_dir node1 daemon)"; do
	bpftool cgroup show "$cg" -j | jq -r '.[].id'
done | sort -u)
snapshot() { for id in $prog_ids; do bpftool prog show id "$id" -j | jq -c "{name, run_time_ns: (.run_time_ns // 0), run_cnt: (.run_cnt // 0)}"; done; }
before=$(snapshot)
mesh_cc=$(rr client --new-conn)
after=$(snapshot)
echo "$stats_before" >/proc/sys/kernel/bpf_stats_enabled
printf '  plain TCP  %6s conn/s  p50 %6s us  p99 %6s us\n' "$(jq .per_s <<<"$plain_cc")" \
	"$(jq .p50_us <<<"$plain_cc")" "$(jq .p99_us <<<"$plain_cc")"
printf '  sockmesh   %6s conn/s  p50 %6s us  p99 %6s us   ratio conn/s %s, p50 %s\n' \
	"$(jq .per_s <<<"$mesh_cc")" "$(jq .p50_us <<<"$mesh_cc")" "$(jq .p99_us <<<"$mesh_cc")" \
	"$(ratio "$(jq .per_s <<<"$mesh_cc")" "$(jq .per_s <<<"$plain_cc")")" \
	"$(ratio "$(jq .p50_us <<<"$mesh_cc")" "$(jq .p50_us <<<"$plain_cc")")"

echo "== hook cost per call (kernel.bpf_stats_enabled) during the captured run above"
hooks=$(jq -s -c --argjson n "$(wc -l <<<"$before")" \
	'(.[:$n] | map({(.name): .}) | add) as $b | .[$n:] | map({name, calls: (.run_cnt - ($b[.name].run_cnt // 0)),
	 ns_per_call: (if (.run_cnt - ($b[.name].run_cnt // 0)) > 0 then ((.run_time_ns - ($b[.name].run_time_ns // 0)) / (.run_cnt - ($b[.name].run_cnt // 0)) | floor) else null end)})' \
	<<<"$before
$after")
jq -r '.[] | select(.calls > 0) | "  \(.name): \(.calls) calls, \(.ns_per_call) ns per call"' <<<"$hooks"

mkdir -p bench/results
res=bench/results/$(date -u +%Y%m%dT%H%M%SZ).json
jq -n --arg bytes "$BYTES" --argjson plain_bw "$plain_bw" --argjson mesh_bw "$mesh_bw" \
	--argjson plain_rr "$plain_rr" --argjson mesh_rr "$mesh_rr" --argjson hooks "$hooks" \
	--argjson plain_cc "$plain_cc" --argjson mesh_cc "$mesh_cc" \
	--arg kernel "$(uname -r)" \
	'{kernel: $kernel, transfer: {bytes: $bytes, plain_gbps: $plain_bw, sockmesh_gbps: $mesh_bw},
	  rr_1b: {plain: $plain_rr, sockmesh: $mesh_rr},
	  new_conn_rr_1b: {plain: $plain_cc, sockmesh: $mesh_cc}, hooks: $hooks}' >"$res"
echo "saved $res"
