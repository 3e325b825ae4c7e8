#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Benchmark (not a test): sockmesh's HBONE mTLS tunnel vs HAProxy 2.6 as an mTLS
# TCP tunnel vs plain TCP, between two sandbox nodes, all measured in one run.
#   plain     client (unenrolled cgroup, node1) -> server (unenrolled cgroup, node2)
#   sockmesh  client (workload, node1) -> captured -> sockmeshd -> HBONE (mTLS 1.3,
#             HTTP/2 CONNECT) -> sockmeshd on node2 -> server (workload)
#   skmsg     the same with both daemons restarted with --redirect: sk_msg carries
#             the two loopback hops (client <-> sockmeshd on node1, sockmeshd <->
#             server on node2); the daemons switch back for the next sockmesh run
#   haproxy   client (unenrolled) -> haproxy on node1 127.0.0.1 (mode tcp) -> TLS 1.3
#             with the client workload's SVID -> haproxy on node2 (verify required)
#             -> the unenrolled server
# Figures per path: iperf3 1 and 4 streams (Gbit/s); request/response p50/p99 with
# 1 B and 1 KiB on one connection; new connections/s at concurrency 16 (connect,
# 1-byte echo, close); the proxies' CPU seconds per GB during the 1-stream run
# (utime+stime of both nodes' proxies); proxy RSS per idle tunnelled connection
# (2000 connections held open, VmRSS of both proxies after minus before).
# Request/response runs once per placement of the processes on the CPUs:
#   shared    the scheduler places every process (both nodes') on any CPU
#   per-node  each node's processes (client or server, proxy, all threads) are
#             pinned to a CPU of their own (node1 to the first CPU this run may
#             use, node2 to the second): two one-CPU hosts. On two shared vCPUs
#             the scheduler keeps each process on the CPU it last ran on while
#             that CPU is idle, so a round settles in whichever layout its first
#             wakeups made, and a proxy's p50 can move by 20 us between rounds;
#             pinned, every path's rounds agree.
#
# Usage: bench/hbone.sh [--quick] [--bytes 1G] [--rr-count 20000] [--rr-rounds 5]
#                       [--iperf-rounds 3] [--connects 1000] [--idle 2000]
#                       [--paths plain,sockmesh,skmsg,haproxy]
#                       [--figures iperf,rr,cps,rss] [--rr-placement shared,per-node]
#                       [--set KEY=VALUE]... [--haproxy-busy-polling] [--profile DIR]
#   --connects is per client; 16 clients run at once. --quick: small counts.
#   iperf3 runs --iperf-rounds times (default 3) and request/response --rr-rounds
#   times over the paths in turn; each figure is the median (single runs moved
#   by up to 15% on this machine). CPU per GB counts all 1-stream rounds.
#   --paths and --figures measure a subset (default: all); ratios need both ends.
#   --rr-placement: shared, per-node, or both as shared,per-node (default);
#   per-node needs 2 CPUs.
#   --set KEY=VALUE (repeatable): passed to both sockmeshd's as --set, e.g.
#   --set listeners.busy_poll=0 (a setting against its default), --set
#   flowlog.ring_size=0 (no live flow stream: the memory figure without its
#   records) or --set tunnel.max_streams=1000.
#   --haproxy-busy-polling: HAProxy with its `busy-polling` (off by default
#   there; sockmeshd's listeners.busy_poll is on by default), to compare like
#   with like.
#   --profile DIR: after the iperf3 rounds, one more 1-stream run per proxy path
#   under `perf record -g` of both proxies (not counted in the figures), saved in
#   DIR, and the CPU per GB broken down by function group (bench/perf-groups.py).
# Every run also measures the crypto floor: `openssl speed -evp aes-128-gcm` with
# 16 KiB records on one core; encrypting and decrypting a GB costs 2 / (GB/s) CPU s.
# Build directory: SM_OUTPUT (or OUTPUT), default .output.
# Results: printed, and saved as JSON under bench/results/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${SM_OUTPUT:-${OUTPUT:-.output}}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
BYTES=1G IPERF_ROUNDS=3 RR_COUNT=20000 RR_ROUNDS=5 CONNECTS=1000 IDLE=2000 CONC=16 QUICK=0
WANT_PATHS=plain,sockmesh,skmsg,haproxy WANT_FIGURES=iperf,rr,cps,rss
RR_PLACEMENT=shared,per-node PROFILE= DAEMON_SET=() HAP_BUSY=0
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 BYTES=64M IPERF_ROUNDS=1 RR_COUNT=2000 RR_ROUNDS=1 CONNECTS=100 IDLE=200; shift ;;
	--bytes) BYTES=$2; shift 2 ;;
	--rr-count) RR_COUNT=$2; shift 2 ;;
	--rr-rounds) RR_ROUNDS=$2; shift 2 ;;
	--iperf-rounds) IPERF_ROUNDS=$2; shift 2 ;;
	--connects) CONNECTS=$2; shift 2 ;;
	--idle) IDLE=$2; shift 2 ;;
	--paths) WANT_PATHS=$2; shift 2 ;;
	--figures) WANT_FIGURES=$2; shift 2 ;;
	--rr-placement) RR_PLACEMENT=$2; shift 2 ;;
	--profile) PROFILE=$2; shift 2 ;;
	--set) DAEMON_SET+=(--set "$2"); shift 2 ;;
	--haproxy-busy-polling) HAP_BUSY=1; shift ;;
	-h | --help) sed -n '3,/^# Results:/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [[ ! $IDLE =~ ^[0-9]+$ ]] || ((IDLE < 1 || IDLE > 4000)); then
	echo "bench: --idle $IDLE: want 1..4000 (each holds fds in 4 processes; the limit is $(ulimit -Hn))" >&2
	exit 2
fi
for v in "$IPERF_ROUNDS" "$RR_ROUNDS"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench: rounds must be a positive count, not '$v'" >&2; exit 2; }
done
in_list() { [[ ",$2," == *",$1,"* ]]; } # WORD LIST
for w in ${WANT_PATHS//,/ }; do
	in_list "$w" plain,sockmesh,skmsg,haproxy || { echo "bench: --paths: unknown path $w" >&2; exit 2; }
done
for w in ${WANT_FIGURES//,/ }; do
	in_list "$w" iperf,rr,cps,rss || { echo "bench: --figures: unknown figure $w" >&2; exit 2; }
done
# the CPUs this bench may use, e.g. "0-1" -> (0 1); per-node pins node1 to the
# first and node2 to the second
ALL_CPUS=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)
read -r -a CPUS <<<"$(tr ',' '\n' <<<"$ALL_CPUS" |
	awk -F- '{ for (i = $1; i <= ($2 == "" ? $1 : $2); i++) printf "%d ", i }')"
for w in ${RR_PLACEMENT//,/ }; do
	in_list "$w" shared,per-node || { echo "bench: --rr-placement: unknown placement $w (shared, per-node)" >&2; exit 2; }
	[ "$w" != per-node ] || ((${#CPUS[@]} >= 2)) ||
		{ echo "bench: --rr-placement per-node needs 2 CPUs, this run may use $ALL_CPUS" >&2; exit 2; }
done
[ -n "$RR_PLACEMENT" ] || { echo "bench: --rr-placement: empty (shared, per-node)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (namespaces, cgroups, BPF)" >&2; exit 1; }
for t in iperf3 haproxy jq python3 openssl ${PROFILE:+perf}; do
	command -v "$t" >/dev/null || { echo "bench: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
if [ -n "$PROFILE" ]; then
	mkdir -p "$PROFILE" && PROFILE=$(realpath "$PROFILE") ||
		{ echo "bench: --profile $PROFILE: cannot make that directory" >&2; exit 2; }
fi

declare -A R=() # results: R[path.metric]
# the crypto floor: AES-128-GCM bytes/s on one core with 16 KiB records (TLS's largest)
R[machine.aes_gcm_gbps]=$(openssl speed -mr -seconds 3 -bytes 16384 -evp aes-128-gcm 2>/dev/null |
	awk -F: '/^\+F:/ { printf "%.2f", $4 / 1e9 }')
R[machine.crypto_floor]=$(awk -v g="${R[machine.aes_gcm_gbps]}" 'BEGIN { printf "%.3f", 2 / g }')
echo "== crypto floor: AES-128-GCM ${R[machine.aes_gcm_gbps]} GB/s on one core (openssl speed, 16 KiB);" \
	"encrypt + decrypt = ${R[machine.crypto_floor]} CPU s per GB"

export SOCKMESHD=$OUT/sockmeshd SOCKMESH=$OUT/sockmesh SMTRAFFIC=$OUT/tools/smtraffic
# shellcheck source=scripts/sandbox.sh
. scripts/sandbox.sh

cleanup() {
	set +e # teardown must run to the end whatever fails in it
	sb_destroy
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 2000 idle connections mean ~2000 fds in each of the daemons, haproxys and helpers
ulimit -n "$(ulimit -Hn)"

SRV=10.11.0.2
sb_create "hb$$" 2
sb_add_workload node1 client spiffe://example.org/ns/bench/sa/client
sb_add_cgroup node1 plain
sb_add_workload node2 server spiffe://example.org/ns/bench/sa/server
sb_add_cgroup node2 plainsrv
# sockmesh path: the workload's servers; plain and haproxy paths: the unenrolled ones
sb_add_service $SRV 5201 server iperf
sb_add_service $SRV 7000 server echo
sb_add_service $SRV 7200 server idle
sb_write_catalog "$(sb_catalog)"
sb_start_daemon node1 "${DAEMON_SET[@]}"
sb_start_daemon node2 "${DAEMON_SET[@]}"

sb_run node2 server iperf3 -s -B $SRV -p 5201
sb_run node2 plainsrv iperf3 -s -B $SRV -p 5202
sb_serve node2 server $SRV:7000 echo
sb_serve node2 plainsrv $SRV:7100 echo
for spec in server:7200 plainsrv:7300; do
	sb_run node2 "${spec%:*}" python3 bench/idleconns.py serve --listen "$SRV:${spec#*:}" --timeout 900
done

# ---- haproxy: node1 127.0.0.1:16xxx -> TLS -> node2 10.11.0.2:26xxx -> server ----
HAP_DIR=$SB_DIR/haproxy
mkdir -p "$HAP_DIR"
(umask 077 && cat "$SB_PKI/wl-client/cert.pem" "$SB_PKI/wl-client/key.pem" >"$HAP_DIR/client.pem" &&
	cat "$SB_PKI/node2/cert.pem" "$SB_PKI/node2/key.pem" >"$HAP_DIR/node2.pem")
# TLS profile of docs/security.md: 1.3 only, AES-GCM, P-256, no resumption. haproxy 2.6
# has no `curves` for servers: the client's groups come from an OpenSSL config.
TLS="ssl-min-ver TLSv1.3 ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
cat >"$HAP_DIR/openssl.cnf" <<EOF
openssl_conf = sockmesh_bench
[sockmesh_bench]
ssl_conf = sockmesh_bench_ssl
[sockmesh_bench_ssl]
system_default = sockmesh_bench_tls
[sockmesh_bench_tls]
Groups = P-256
EOF
hap_head() {
	printf 'global\n\tnbthread 2\n\tmaxconn 5000\n'
	((HAP_BUSY == 0)) || printf '\tbusy-polling\n'
	printf 'defaults\n\tmode tcp\n\ttimeout connect 5s\n\ttimeout client 600s\n\ttimeout server 600s\n'
}
{
	hap_head
	for p in 6201 6700 6730; do
		printf 'listen out%s\n\tbind 127.0.0.1:1%s\n' $p $p
		printf '\tserver node2 %s:2%s ssl crt %s ca-file %s verify required no-ssl-reuse %s\n' \
			$SRV $p "$HAP_DIR/client.pem" "$SB_PKI/wl-client/bundle.pem" "$TLS"
	done
} >"$HAP_DIR/node1.cfg"
{
	hap_head
	for p in 6201:5202 6700:7100 6730:7300; do
		printf 'listen in%s\n' "${p%:*}"
		printf '\tbind %s:2%s ssl crt %s ca-file %s verify required curves P-256 no-tls-tickets %s\n' \
			$SRV "${p%:*}" "$HAP_DIR/node2.pem" "$SB_PKI/node2/bundle.pem" "$TLS"
		printf '\tserver app %s:%s\n' $SRV "${p#*:}"
	done
} >"$HAP_DIR/node2.cfg"
declare -A HAP_PID=()
for node in node2 node1; do
	haproxy -c -q -f "$HAP_DIR/$node.cfg" || { echo "bench: bad haproxy config $HAP_DIR/$node.cfg" >&2; exit 1; }
	sb_run "$node" haproxy env OPENSSL_CONF="$HAP_DIR/openssl.cnf" haproxy -db -f "$HAP_DIR/$node.cfg"
	HAP_PID[$node]=$SB_RUN_PID
	port=$([ $node = node1 ] && echo 16730 || echo 26730)
	for ((i = 0; i < 100; i++)); do
		nsenter --net="/run/netns/$(sb_ns $node)" ss -Hltn "sport = :$port" | grep -q . && break
		sb_alive "${HAP_PID[$node]}" || break
		sleep 0.1
	done
	if ((i == 100)) || ! sb_alive "${HAP_PID[$node]}"; then
		echo "bench: haproxy on $node did not start:" >&2
		cat "$SB_RUN_ERR" >&2
		exit 1
	fi
done
sleep 0.3

# path -> client cgroup, server address for iperf3, echo, idle
declare -A CG=([plain]=plain [sockmesh]=client [skmsg]=client [haproxy]=plain)
declare -A IPERF=([plain]=$SRV:5202 [sockmesh]=$SRV:5201 [skmsg]=$SRV:5201 [haproxy]=127.0.0.1:16201)
declare -A ECHO=([plain]=$SRV:7100 [sockmesh]=$SRV:7000 [skmsg]=$SRV:7000 [haproxy]=127.0.0.1:16700)
declare -A IDLEADDR=([sockmesh]=$SRV:7200 [skmsg]=$SRV:7200 [haproxy]=127.0.0.1:16730)
declare -A LABEL=([plain]=plain [sockmesh]=sockmesh [skmsg]=sockmesh+sk_msg [haproxy]=haproxy)
PATHS=()
for p in plain sockmesh skmsg haproxy; do in_list $p "$WANT_PATHS" && PATHS+=("$p"); done

proxy_pids() { # PATH -> the pids of its proxies on node1 and node2
	case $1 in
	sockmesh | skmsg) echo "$(sb_daemon_pid node1) $(sb_daemon_pid node2)" ;;
	haproxy) echo "${HAP_PID[node1]} ${HAP_PID[node2]}" ;;
	esac
}

# The sockmesh and skmsg paths share the daemons: restart both, with or without
# --redirect, when the next path wants the other setting (their servers stay up).
REDIRECT=off
daemons_for() { # PATH
	local want=off node
	case $1 in
	sockmesh) ;;
	skmsg) want=on ;;
	*) return 0 ;;
	esac
	[ "$want" != "$REDIRECT" ] || return 0
	for node in node1 node2; do
		sb_stop_daemon $node
		if [ "$want" = on ]; then sb_start_daemon $node --redirect "${DAEMON_SET[@]}"; else sb_start_daemon $node "${DAEMON_SET[@]}"; fi ||
			{ echo "bench: sockmeshd on $node did not restart" >&2; exit 1; }
	done
	REDIRECT=$want
}
cpu_ticks() { # PIDS... -> utime+stime summed, in clock ticks
	local pid st sum=0 f
	for pid in "$@"; do
		st=$(cat "/proc/$pid/stat")
		read -ra f <<<"${st##*) }" # fields from the 3rd (state) on
		sum=$((sum + f[11] + f[12]))
	done
	echo $sum
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'; }
iperf() { # PATH STREAMS -> "Gbit/s bytes"
	local hp=${IPERF[$1]}
	sb_exec node1 "${CG[$1]}" iperf3 -c "${hp%:*}" -p "${hp#*:}" -n "$BYTES" -P "$2" -J |
		jq -r '"\(.end.sum_received.bits_per_second / 1e9) \(.end.sum_received.bytes)"'
}

TCK=$(getconf CLK_TCK)
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
in_list iperf "$WANT_FIGURES" &&
	echo "== iperf3, $BYTES, 1 stream (with the proxies' CPU) and 4 streams; median of $IPERF_ROUNDS rounds over the paths in turn"
declare -A BW1=() BW4=() TICKS=() MOVED=()
for ((round = 1; round <= IPERF_ROUNDS; round++)); do
	in_list iperf "$WANT_FIGURES" || break
	for p in "${PATHS[@]}"; do
		daemons_for "$p"
		ppids=$(proxy_pids "$p")
		# shellcheck disable=SC2086 # ppids is a list
		[ -z "$ppids" ] || t0=$(cpu_ticks $ppids)
		read -r bw bytes < <(iperf "$p" 1) || true
		[ -n "${bytes:-}" ] || { echo "bench: iperf3 over $p failed" >&2; exit 1; }
		BW1[$p]+=" $bw"
		if [ -n "$ppids" ]; then
			# shellcheck disable=SC2086
			t1=$(cpu_ticks $ppids)
			TICKS[$p]=$((${TICKS[$p]:-0} + t1 - t0))
			MOVED[$p]=$((${MOVED[$p]:-0} + bytes))
		fi
		bw=$(iperf "$p" 4)
		BW4[$p]+=" ${bw%% *}"
	done
done
for p in "${PATHS[@]}"; do
	in_list iperf "$WANT_FIGURES" || break
	R[$p.bw1]=$(median <<<"${BW1[$p]}")
	R[$p.bw4]=$(median <<<"${BW4[$p]}")
	[ -z "${MOVED[$p]:-}" ] ||
		R[$p.cpu]=$(awk -v t="${TICKS[$p]}" -v k="$TCK" -v b="${MOVED[$p]}" 'BEGIN { printf "%.3f", t / k / (b / 1e9) }')
	# shellcheck disable=SC2086 # BW1 holds a list
	printf '  %-15s 1 stream %6.2f Gbit/s  4 streams %6.2f Gbit/s  proxy CPU %s s/GB  (1 stream:%s)\n' \
		"${LABEL[$p]}" "${R[$p.bw1]}" "${R[$p.bw4]}" "${R[$p.cpu]:--}" "$(printf ' %.2f' ${BW1[$p]})"
done

SYSCALLS="read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_ctl"
# One more 1-stream run per proxy path under perf (perturbs it: not in the figures);
# CPU s per GB of each function group = the group's share of the samples x the
# path's measured CPU s per GB.
for p in "${PATHS[@]}"; do
	[ -n "$PROFILE" ] && in_list iperf "$WANT_FIGURES" && [ -n "${R[$p.cpu]:-}" ] || continue
	daemons_for "$p"
	ppids=$(proxy_pids "$p")
	perf record -q --call-graph "${SM_PERF_CALLGRAPH:-fp}" -F 1999 -o "$PROFILE/$p.data" -p "${ppids// /,}" >"$PROFILE/$p.perf.log" 2>&1 &
	perf_pid=$!
	# and the system calls the proxies make, by name
	perf stat -x, -e "$(printf 'syscalls:sys_enter_%s,' $SYSCALLS | sed 's/,$//')" \
		-p "${ppids// /,}" -o "$PROFILE/$p.syscalls" &
	stat_pid=$!
	sleep 1 # perf attaches to every thread of both proxies
	read -r _ bytes < <(iperf "$p" 1) || { echo "bench: iperf3 over $p failed under perf" >&2; exit 1; }
	kill -INT $perf_pid $stat_pid
	wait $perf_pid $stat_pid || true
	for sc in $SYSCALLS; do
		R[$p.sys_$sc]=$(awk -F, -v e="syscalls:sys_enter_$sc" -v b="$bytes" \
			'$3 == e { printf "%.1f", $1 / (b / 1e6) }' "$PROFILE/$p.syscalls")
	done
	python3 bench/perf-groups.py --own sockmeshd --own haproxy "$PROFILE/$p.data" >"$PROFILE/$p.json" ||
		{ echo "bench: no profile of $p (see $PROFILE/$p.perf.log)" >&2; continue; }
	for g in $(jq -r '.groups_pct | keys[]' "$PROFILE/$p.json"); do
		R[$p.prof_$g]=$(jq -r --arg g "$g" --argjson c "${R[$p.cpu]}" \
			'.groups_pct[$g] * $c / 100 | . * 1000 | round / 1000' "$PROFILE/$p.json")
	done
	for k in send recv epoll other none; do
		R[$p.prof_sys_$k]=$(jq -r --arg k "$k" --argjson c "${R[$p.cpu]}" \
			'.kernel_by_syscall_pct[$k] * $c / 100 | . * 1000 | round / 1000' "$PROFILE/$p.json")
	done
done
if [ -n "$PROFILE" ] && in_list iperf "$WANT_FIGURES"; then
	echo "== proxy CPU s per GB by function group (1 stream, perf record -g; $PROFILE)"
	printf '  %-15s' group
	for p in "${PATHS[@]}"; do [ -z "${R[$p.prof_crypto]:-}" ] || printf ' %16s' "${LABEL[$p]}"; done
	echo
	for g in crypto tls http2 copies net syscall sched memory bpf flowexport own other \
		sys_send sys_recv sys_epoll sys_other sys_none; do
		printf '  %-15s' "$g"
		for p in "${PATHS[@]}"; do [ -z "${R[$p.prof_crypto]:-}" ] || printf ' %16s' "${R[$p.prof_$g]}"; done
		echo
	done
	echo "  (sys_*: kernel time by the system call it ran under; none = outside of one)"
	echo "== system calls of both proxies per MB received (the same run)"
	for sc in $SYSCALLS; do
		printf '  %-15s' "$sc"
		for p in "${PATHS[@]}"; do [ -z "${R[$p.prof_crypto]:-}" ] || printf ' %16s' "${R[$p.sys_$sc]:--}"; done
		echo
	done
fi

# place per-node|shared: pin every process of node1's cgroups (all its threads) to
# CPU ${CPUS[0]} and node2's to CPU ${CPUS[1]}, or give them all CPUs back. The
# daemons are pinned again after each restart; a process that exits meanwhile is
# skipped.
place() {
	local node i=0 pid cpus
	for node in node1 node2; do
		cpus=$ALL_CPUS
		[ "$1" = shared ] || cpus=${CPUS[i]}
		i=$((i + 1))
		while read -r pid; do
			taskset -a -cp "$cpus" "$pid" >/dev/null 2>&1 || ! sb_alive "$pid" ||
				{ echo "bench: cannot pin $node's process $pid to CPU $cpus" >&2; exit 1; }
		done < <(find "$SB_CG/$node" -name cgroup.procs -exec cat {} +)
	done
}
# RR keys: rr1.p50 with shared placement, rr1_per_node.p50 with per-node
declare -A PLACE_KEY=([shared]="" [per-node]=_per_node)
declare -A PLACE_LABEL=([shared]="shared CPUs" [per-node]="one CPU per node")
declare -A RRTICKS=() # proxy CPU ticks over the request/response rounds, per path, size, placement
for placement in ${RR_PLACEMENT//,/ }; do
	in_list rr "$WANT_FIGURES" || break
	echo "== request/response on one connection, $RR_COUNT round trips, ${PLACE_LABEL[$placement]};" \
		"median of $RR_ROUNDS rounds over the paths in turn"
	ks=${PLACE_KEY[$placement]} runon=()
	[ "$placement" = shared ] || runon=(taskset -c "${CPUS[0]}")
	for size in 1 1024; do
		declare -A P50=() P99=()
		for ((round = 1; round <= RR_ROUNDS; round++)); do
			for p in "${PATHS[@]}"; do
				daemons_for "$p"
				[ "$placement" = shared ] || place per-node
				ppids=$(proxy_pids "$p")
				# shellcheck disable=SC2086 # ppids is a list
				[ -z "$ppids" ] || t0=$(cpu_ticks $ppids)
				j=$(sb_exec node1 "${CG[$p]}" "${runon[@]}" "$SMTRAFFIC" rr --connect "${ECHO[$p]}" \
					--count "$RR_COUNT" --size $size --timeout 120)
				P50[$p]+=" $(jq .p50_us <<<"$j")" P99[$p]+=" $(jq .p99_us <<<"$j")"
				if [ -n "$ppids" ]; then
					# shellcheck disable=SC2086
					RRTICKS[$p$size$ks]=$((${RRTICKS[$p$size$ks]:-0} + $(cpu_ticks $ppids) - t0))
				fi
			done
		done
		for p in "${PATHS[@]}"; do
			R[$p.rr$size$ks.p50]=$(median <<<"${P50[$p]}")
			R[$p.rr$size$ks.p99]=$(median <<<"${P99[$p]}")
			[ -z "${RRTICKS[$p$size$ks]:-}" ] ||
				R[$p.rr$size$ks.cpu_us]=$(awk -v t="${RRTICKS[$p$size$ks]}" -v k="$TCK" \
					-v n=$((RR_COUNT * RR_ROUNDS)) 'BEGIN { printf "%.1f", t / k * 1e6 / n }')
			printf '  %-15s %4s B  p50 %7s us  p99 %7s us  proxy CPU %s us per round trip  (p50s:%s)\n' \
				"${LABEL[$p]}" $size "${R[$p.rr$size$ks.p50]}" "${R[$p.rr$size$ks.p99]}" \
				"${R[$p.rr$size$ks.cpu_us]:--}" "${P50[$p]}"
		done
		unset P50 P99
	done
	[ "$placement" = shared ] || place shared
done

in_list cps "$WANT_FIGURES" && echo "== new connections (connect, 1-byte echo, close), $CONC clients x $CONNECTS"
for p in "${PATHS[@]}"; do
	in_list cps "$WANT_FIGURES" || break
	daemons_for "$p"
	pids=() outs=()
	start=$(date +%s%N)
	for ((i = 0; i < CONC; i++)); do
		sb_run node1 "${CG[$p]}" "$SMTRAFFIC" rr --connect "${ECHO[$p]}" --count "$CONNECTS" \
			--size 1 --new-conn --timeout 60
		pids+=("$SB_RUN_PID") outs+=("$SB_RUN_OUT")
	done
	failed=0 good=()
	for i in "${!pids[@]}"; do
		if sb_wait_pid "${pids[$i]}" 300; then
			good+=("${outs[$i]}")
			continue
		fi
		# a failed client is reported, and the run goes on with the others
		failed=$((failed + 1))
		echo "bench: $p client $i failed (status $SB_LAST_RC):" >&2
		cat "${outs[$i]/%.out/.err}" >&2
		if [ "$p" != haproxy ] && [ "$p" != plain ]; then
			for n in node1 node2; do
				grep -E ' (warn|error): ' "$(sb_daemon_log $n)" | tail -n 3 >&2 || true
			done
		fi
	done
	wall_ns=$(($(date +%s%N) - start))
	R[$p.cps_failed]=$failed
	if [ ${#good[@]} -eq 0 ]; then
		echo "  ${LABEL[$p]}: every client failed; no figure" >&2
		R[$p.cps]=failed R[$p.cps_wall]=failed R[$p.cps_p99]=failed
		continue
	fi
	R[$p.cps]=$(cat "${good[@]}" | jq -s 'map(.per_s) | add | floor')
	R[$p.cps_wall]=$(awk -v n=$((${#good[@]} * CONNECTS)) -v t=$wall_ns 'BEGIN { printf "%.0f", n * 1e9 / t }')
	R[$p.cps_p99]=$(cat "${good[@]}" | jq -s 'map(.p99_us) | max')
	printf '  %-15s %7s conn/s (sum of clients; %s over the wall time)  worst client p99 %s us%s\n' \
		"${LABEL[$p]}" "${R[$p.cps]}" "${R[$p.cps_wall]}" "${R[$p.cps_p99]}" \
		"$( ((failed == 0)) || echo "  ($failed of $CONC clients FAILED; the sum is of the others)")"
done

# One round: IDLE connections opened and held; "RSSA RSSB RSSA2 RSSB2" of both proxies
# before and with them, in KiB. The holder is killed before it returns.
idle_round() { # PATH
	local p=$1 pa pb ra rb holder i
	read -r pa pb <<<"$(proxy_pids "$p")"
	ra=$(rss_kib "$pa") rb=$(rss_kib "$pb")
	sb_run node1 "${CG[$p]}" python3 bench/idleconns.py open --connect "${IDLEADDR[$p]}" \
		--count "$IDLE" --batch 100 --timeout 120 --hold 300
	holder=$SB_RUN_PID
	for ((i = 0; i < 1500; i++)); do
		grep -qs '"ok"' "$SB_RUN_OUT" && break
		sb_alive "$holder" || break
		sleep 0.1
	done
	if ! grep -qs '"ok": true' "$SB_RUN_OUT"; then
		echo "bench: $p: $IDLE idle connections did not open:" >&2
		cat "$SB_RUN_OUT" "$SB_RUN_ERR" >&2
		exit 1
	fi
	sleep 1 # let both ends settle
	echo "$ra $rb $(rss_kib "$pa") $(rss_kib "$pb")"
	kill "$holder"
	sb_wait_pid "$holder" 10 || true
}
per_conn() { awk -v d="$1" -v n="$IDLE" 'BEGIN { printf "%.1f", d / n }'; }

in_list rss "$WANT_FIGURES" && echo "== proxy RSS with $IDLE idle tunnelled connections"
for p in sockmesh skmsg haproxy; do
	if ! in_list rss "$WANT_FIGURES" || ! in_list $p "$WANT_PATHS"; then continue; fi
	daemons_for "$p"
	read -r ra rb ra2 rb2 <<<"$(idle_round "$p")"
	R[$p.rss]=$(per_conn $((ra2 - ra + rb2 - rb)))
	R[$p.rss1]=$(per_conn $((ra2 - ra)))
	R[$p.rss2]=$(per_conn $((rb2 - rb)))
	R[$p.rss_base]=$((ra + rb))
	printf '  %-15s %s KiB per connection (node1 %s, node2 %s; both proxies %s KiB before)\n' \
		"${LABEL[$p]}" "${R[$p.rss]}" "${R[$p.rss1]}" "${R[$p.rss2]}" "${R[$p.rss_base]}"
done

# ---- the table ----
row() { # LABEL KEY: plain, sockmesh, sockmesh + sk_msg, haproxy and four ratios
	local a=${R[plain.$2]:-} b=${R[sockmesh.$2]:-} k=${R[skmsg.$2]:-} c=${R[haproxy.$2]:-}
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${a:--}" "${b:--}" "${k:--}" \
		"${c:--}" "$(ratio "$b" "$a")" "$(ratio "$c" "$a")" "$(ratio "$b" "$c")" "$(ratio "$k" "$b")"
}
for p in "${PATHS[@]}"; do
	for k in bw1 bw4; do [ -z "${R[$p.$k]:-}" ] || R[$p.$k]=$(printf '%.2f' "${R[$p.$k]}"); done
done
echo
echo "| | plain TCP | sockmesh | sockmesh + sk_msg | HAProxy | sockmesh/plain | HAProxy/plain | sockmesh/HAProxy | sk_msg/sockmesh |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
row "iperf3 1 stream, Gbit/s" bw1
row "iperf3 4 streams, Gbit/s" bw4
rr_each() { # FUNC UNIT: FUNC "LABEL[UNIT], PLACEMENT" KEY for each RR figure and placement
	local placement ks pl
	for placement in ${RR_PLACEMENT//,/ }; do
		ks=${PLACE_KEY[$placement]} pl=${PLACE_LABEL[$placement]}
		"$1" "RR 1 B p50$2, $pl" rr1"$ks".p50
		"$1" "RR 1 B p99$2, $pl" rr1"$ks".p99
		"$1" "RR 1 KiB p50$2, $pl" rr1024"$ks".p50
		"$1" "RR 1 KiB p99$2, $pl" rr1024"$ks".p99
	done
}
rr_each row ", µs"
for placement in ${RR_PLACEMENT//,/ }; do
	in_list rr "$WANT_FIGURES" || break
	row "proxy CPU µs per 1 B round trip, ${PLACE_LABEL[$placement]}" "rr1${PLACE_KEY[$placement]}.cpu_us"
done
row "new connections/s, $CONC clients" cps
row "proxy CPU s per GB (1 stream)" cpu
echo "| crypto floor, CPU s per GB (AES-128-GCM ${R[machine.aes_gcm_gbps]} GB/s per core) | - | ${R[machine.crypto_floor]} | ${R[machine.crypto_floor]} | ${R[machine.crypto_floor]} | - | - | - | - |"
row "proxy RSS KiB per idle connection" rss
# issue 3's latency target is on the latency a proxy adds: path minus plain TCP
added() { # LABEL KEY
	local a=${R[plain.$2]:-} d=() p v
	for p in sockmesh skmsg haproxy; do
		v=${R[$p.$2]:-}
		if [[ $a =~ ^[0-9.]+$ && $v =~ ^[0-9.]+$ ]]; then d+=("$(awk -v x="$v" -v y="$a" 'BEGIN { printf "%.1f", x - y }')"); else d+=(-); fi
	done
	printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "${d[0]}" "${d[1]}" "${d[2]}" "$(ratio "${d[0]}" "${d[2]}")" \
		"$(ratio "${d[1]}" "${d[2]}")"
}
if in_list rr "$WANT_FIGURES"; then
	echo
	echo "| added over plain TCP, µs | sockmesh | sockmesh + sk_msg | HAProxy | sockmesh/HAProxy | sk_msg/HAProxy |"
	echo "| --- | --- | --- | --- | --- | --- |"
	rr_each added ""
fi

mkdir -p bench/results
res=bench/results/hbone-$(date -u +%Y%m%dT%H%M%SZ).json
for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done |
	jq -R -s --arg bytes "$BYTES" --argjson rr "$RR_COUNT" --argjson conc "$CONC" \
		--argjson connects "$CONNECTS" --argjson idle "$IDLE" --argjson quick "$QUICK" \
		--argjson rr_rounds "$RR_ROUNDS" --arg rr_placement "$RR_PLACEMENT" \
		--argjson iperf_rounds "$IPERF_ROUNDS" --argjson hap_busy "$HAP_BUSY" \
		--arg daemon_set "${DAEMON_SET[*]}" \
		--arg cpus "$ALL_CPUS" --arg kernel "$(uname -r)" --arg haproxy "$(haproxy -v | awk 'NR == 1 { print $3 }')" \
		'split("\n") | map(select(length > 0) | split("\t")) |
		 (reduce .[] as [$k, $v] ({}; setpath($k | split(".") | [.[0], (.[1:] | join("."))];
		   ($v | tonumber? // $v)))) as $r |
		 {kernel: $kernel, haproxy: $haproxy, quick: ($quick == 1),
		  params: {daemon_set: $daemon_set, haproxy_busy_polling: ($hap_busy == 1), bytes: $bytes, iperf_rounds: $iperf_rounds, rr_count: $rr, rr_rounds: $rr_rounds, rr_placement: $rr_placement, cpus: $cpus, concurrency: $conc, connects_per_client: $connects, idle: $idle},
		  units: {bw1: "Gbit/s", bw4: "Gbit/s", "rr1.p50": "us", cps: "conn/s (sum of clients)",
		          cps_wall: "conn/s (all over wall time)", cpu: "proxy CPU s per GB, both nodes",
		          rss: "KiB per idle connection, both nodes"},
		  results: $r}' >"$res"
echo "saved $res"
