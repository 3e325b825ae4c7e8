#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Cluster mode's costs (docs/cluster.md), in one sandbox: 8 nodes in cluster mode from
# their start and one etcd (mutual TLS, in the hub namespace), 290 catalog workloads
# (identities spread over the nodes, their cgroups made, no processes). Not a test.
#   1. policy apply --cluster --wait: for sets of ~10, ~1,000 and ~50,000 kernel
#      entries, N applies alternating between two sets (every key of the set changes:
#      ports 7001-7005 <-> 7006-7010); per apply the CLI's wall time (process start to
#      --wait done) and its converged_s (write -> all 8 nodes reported); the node side
#      from the logs (config/generation's "at", stamped by the CLI just before its
#      transaction -> each node's "policy revision N applied" and "cluster: revision R
#      in force"); RX bytes on each node's eth0, CPU of each daemon and of etcd per apply.
#   2. catalog churn: how fast `sockmesh catalog apply` of a one-service file goes in a
#      loop, then a service key rewritten at --churn-rate for --churn-seconds through
#      etcd's JSON gateway (bench/etcdchurn.py, one connection); the daemons' and etcd's
#      CPU, etcd's request counters (/metrics), RX bytes per change per node.
#   3. idle: RX bytes/s per node with nothing changing (lease keepalives).
# Results are printed as Markdown tables and kept in bench/results/cluster-*.json.
#
# Usage (root, after make): bench/cluster.sh [--applies N] [--max-seconds S]
#   [--sizes "small 1k 50k"] [--churn-rate R] [--churn-seconds S] [--churn-workers W]
#   [--nodes N] [--no-churn] [--quick]
#   --applies N       measured applies per size (default 100)
#   --max-seconds S   stop a size's applies after S seconds (default 600)
#   --churn-workers W connections the churn's puts are spread over (default 16)
#   --nodes N         sandbox nodes, 1..9 (default 8)
#   --no-churn        only the applies
#   --quick           10 applies, 10 s of churn: checks the whole thing in ~2 minutes
set -euo pipefail

cd "$(dirname "$0")/.."
NODES=8 CHURN=1 APPLIES=100 MAX_S=600 SIZES="small 1k 50k" CHURN_RATE=100 CHURN_S=60 CHURN_WORKERS=16 CHURN_TAIL_MAX=300 CLI_RATE_S=10
while [ $# -gt 0 ]; do
	case $1 in
	--applies) APPLIES=$2; shift 2 ;;
	--max-seconds) MAX_S=$2; shift 2 ;;
	--sizes) SIZES=$2; shift 2 ;;
	--churn-rate) CHURN_RATE=$2; shift 2 ;;
	--churn-seconds) CHURN_S=$2; shift 2 ;;
	--churn-workers) CHURN_WORKERS=$2; shift 2 ;;
	--nodes) NODES=$2; shift 2 ;;
	--no-churn) CHURN=0; shift ;;
	--quick) APPLIES=10 CHURN_S=10 CLI_RATE_S=5; shift ;;
	-h | --help)
		sed -n '3,29p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench/cluster.sh: unknown option $1 (see --help)" >&2
		exit 2
		;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench/cluster.sh: run as root" >&2; exit 1; }
((APPLIES >= 1 && APPLIES <= 1000)) || { echo "bench/cluster.sh: --applies 1..1000" >&2; exit 2; }
[[ "$NODES" =~ ^[1-9]$ ]] || { echo "bench/cluster.sh: --nodes 1..9" >&2; exit 2; }
((CHURN_S >= 1 && CHURN_S <= 600)) || { echo "bench/cluster.sh: --churn-seconds 1..600" >&2; exit 2; }
OUT=${SM_OUTPUT:-.output}
export SOCKMESHD=$OUT/sockmeshd SOCKMESH=$OUT/sockmesh SMTRAFFIC=$OUT/tools/smtraffic
# shellcheck source=scripts/sandbox.sh
. scripts/sandbox.sh

cleanup() {
	set +e
	sb_destroy
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

NSRC=250 NDST=40
TD=spiffe://bench.test/ns/c/sa
PFX=/sockmesh/
TCK=$(getconf CLK_TCK)
RESULTS=bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ).json
mkdir -p bench/results
# no tunnel traffic is measured: no PKI (290 SVIDs would take minutes), tunnel.hbone off

log() { echo "== $(date -u +%T) $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; } # others' work shares the 2 CPUs: recorded per phase
now() { echo "$EPOCHREALTIME"; }
node_of() { echo "node$((($1 - 1) % NODES + 1))"; } # identity i -> its node, round robin

sb_create "clu$$" "$NODES"
log "sandbox $SB_ID: $NODES nodes, $((NSRC + NDST)) workloads"
for ((i = 1; i <= NSRC; i++)); do sb_add_workload "$(node_of "$i")" "src$i" "$TD/src$i"; done
for ((i = 1; i <= NDST; i++)); do sb_add_workload "$(node_of "$i")" "dst$i" "$TD/dst$i"; done

# the catalog in parts of at most 100 objects: one transaction holds at most 128 operations
wl_yaml() { # NAME NODE
	printf '  - {name: %s, node: %s, cgroup: sockmesh-test-%s/%s/%s, spiffe_id: "%s/%s", mode: strict}\n' \
		"$1" "$2" "$SB_ID" "$2" "$1" "$TD" "$1"
}
CAT=$SB_DIR/catalog-part
{
	echo "nodes:"
	for ((i = 1; i <= NODES; i++)); do
		echo "  - {name: node$i, addresses: [$(sb_node_ip4 "node$i"), \"$(sb_node_ip6 "node$i")\"]}"
	done
} >"$CAT-0.yaml"
for ((p = 0; p * 100 < NSRC + NDST; p++)); do
	echo "workloads:" >"$CAT-$((p + 1)).yaml"
	for ((i = p * 100 + 1; i <= (p + 1) * 100 && i <= NSRC + NDST; i++)); do
		if ((i <= NSRC)); then
			wl_yaml "src$i" "$(node_of "$i")"
		else
			wl_yaml "dst$((i - NSRC))" "$(node_of $((i - NSRC)))"
		fi
	done >>"$CAT-$((p + 1)).yaml"
done
SVC=$SB_DIR/service.yaml
svc_doc() { # PORT: one service, on dst1 (node1)
	printf 'services:\n  - {name: churn, address: "%s", port: %s, workload: dst1}\n' "$(sb_node_ip4 node1)" "$1"
}
svc_doc 9000 >"$SVC"
# the daemons get --catalog; in cluster mode they do not read it, but it must parse
{ cat "$CAT-0.yaml"; echo "workloads:"; cat "$CAT"-[1-9].yaml | grep -v '^workloads:'; } >"$(sb_catalog)"

sb_etcd_start
for f in "$CAT"-*.yaml "$SVC"; do
	sb_ccli catalog apply "$f" -o json | jq -c '{written, revision, added: (.added | length)}' >&2
done
for ((i = 1; i <= NODES; i++)); do
	sb_cluster_config "node$i"
done
# etcd alone, no node connected: its own background work
e0=$(awk '{ print $14 + $15 }' "/proc/$(cat "$(sb_etcd_dir)/etcd.pid")/stat")
sleep 10
ETCD_ALONE=$(awk -v a="$e0" -v b="$(awk '{ print $14 + $15 }' "/proc/$(cat "$(sb_etcd_dir)/etcd.pid")/stat")" \
	-v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.4f", (b - a) / t / 10 }')
log "etcd with no node connected: CPU s/s $ETCD_ALONE"
t0=$(now)
for ((i = 1; i <= NODES; i++)); do
	sb_start_daemon "node$i" --set tunnel.hbone=false
done
log "$NODES daemons ready in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"

EDIR=$(sb_etcd_dir)
ETCD_PID=$(cat "$EDIR/etcd.pid")
HUB=$(sb_hub_ns)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
threads() { # PID: "TID TICKS RUN_NS RUNQUEUE_WAIT_NS" per thread (stat, schedstat)
	local t
	for t in /proc/"$1"/task/*; do
		echo "$(awk '{ print $1, $14 + $15 }' "$t/stat") $(awk '{ print $1, $2 }' "$t/schedstat")"
	done
}
daemons_cpu() { # one line: ticks of node1..node8's daemons
	local i out=""
	for ((i = 1; i <= NODES; i++)); do out+="$(cpu_ticks "$(sb_daemon_pid "node$i")") "; done
	echo "$out"
}
rx_bytes() { # one line: eth0 RX bytes of node1..node8
	local i out=""
	for ((i = 1; i <= NODES; i++)); do
		out+="$(ip -n "$(sb_ns "node$i")" -s -j link show eth0 | jq '.[0].stats64.rx.bytes') "
	done
	echo "$out"
}
metrics() { # etcd's Prometheus text, as the operator
	timeout 10 nsenter --net="/run/netns/$HUB" -- curl -sS --cacert "$EDIR/ca.pem" \
		--cert "$EDIR/client-operator.pem" --key "$EDIR/client-operator-key.pem" \
		"$(sb_etcd_url)/metrics"
}
# A JSON object from "before" and "after" lines of numbers (per node), divided by DIV.
per_node() { # BEFORE AFTER DIV SCALE
	python3 -c '
import json, sys
b = [float(x) for x in sys.argv[1].split()]
a = [float(x) for x in sys.argv[2].split()]
d, s = float(sys.argv[3]), float(sys.argv[4])
v = [(y - x) * s / d for x, y in zip(b, a)]
print(json.dumps({"per_node": [round(x, 4) for x in v], "mean": round(sum(v) / len(v), 4),
                  "min": round(min(v), 4), "max": round(max(v), 4)}))' "$1" "$2" "$3" "$4"
}
# etcd's counters between two /metrics texts, divided by DIV (seconds, or applies).
metrics_diff() { # FILE_BEFORE FILE_AFTER DIV
	python3 - "$@" <<'EOF'
import json, re, sys
def load(f):
    m = {}
    for line in open(f):
        if line.startswith("#"):
            continue
        mm = re.match(r'^([a-zA-Z_:]+)(\{[^}]*\})?\s+(\S+)$', line.strip())
        if mm:
            m[(mm.group(1), mm.group(2) or "")] = float(mm.group(3))
    return m
b, a, s = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
def d(name, lab=None):
    return sum(v - b.get(k, 0.0) for k, v in a.items()
               if k[0] == name and (lab is None or lab in k[1]))
def by_method(name):
    out = {}
    for (n, lab), v in a.items():
        if n == name:
            meth = re.search(r'grpc_method="([^"]*)"', lab).group(1)
            out[meth] = out.get(meth, 0) + v - b.get((n, lab), 0.0)
    return {k: round(v / s, 1) for k, v in sorted(out.items()) if v}
fs_n = d("etcd_disk_wal_fsync_duration_seconds_count")
out = {
    # unary calls (Put, Txn, Range, LeaseGrant) start once each; the gateway's
    # keepalive and watch are streams: their messages are the msg counters
    "grpc_started": round(d("grpc_server_started_total") / s, 1),
    "grpc_started_by_method": by_method("grpc_server_started_total"),
    "grpc_msg_received_by_method": by_method("grpc_server_msg_received_total"),
    "grpc_msg_sent_by_method": by_method("grpc_server_msg_sent_total"),
    "mvcc_put": round(d("etcd_mvcc_put_total") / s, 1),
    "mvcc_range": round(d("etcd_mvcc_range_total") / s, 1),
    "mvcc_txn": round(d("etcd_mvcc_txn_total") / s, 1),
    "watch_events": round(d("etcd_debugging_mvcc_events_total") / s, 1),
    "wal_fsync": round(fs_n / s, 1),
    "wal_fsync_mean_ms": round(d("etcd_disk_wal_fsync_duration_seconds_sum") / fs_n * 1000, 2) if fs_n else None,
    "wal_write_bytes": round(d("etcd_disk_wal_write_bytes_total") / s),
    "grpc_sent_bytes": round(d("etcd_network_client_grpc_sent_bytes_total") / s),
    "grpc_received_bytes": round(d("etcd_network_client_grpc_received_bytes_total") / s),
}
print(json.dumps(out))
EOF
}

# ---- idle: what a node receives with nothing changing (lease keepalives) ----
IDLE_S=10
sleep 2
r0=$(rx_bytes)
c0=$(daemons_cpu)
e0=$(cpu_ticks "$ETCD_PID")
sleep "$IDLE_S"
IDLE_RX=$(per_node "$r0" "$(rx_bytes)" "$IDLE_S" 1)
IDLE_CPU=$(per_node "$c0" "$(daemons_cpu)" "$IDLE_S" "$(awk -v t="$TCK" 'BEGIN { print 1 / t }')")
IDLE_ETCD=$(awk -v a="$e0" -v b="$(cpu_ticks "$ETCD_PID")" -v t="$TCK" -v s="$IDLE_S" 'BEGIN { printf "%.4f", (b - a) / t / s }')
log "idle: RX bytes/s per node $(jq -c '{mean, min, max}' <<<"$IDLE_RX"), etcd CPU s/s $IDLE_ETCD"

# ---- policy applies ----
POL=$SB_DIR/policy
policy_doc() { # NDST NSRC FIRST_PORT
	local nd=$1 ns=$2 p=$3 i j
	echo "policies:"
	for ((i = 1; i <= nd; i++)); do
		echo "  - name: bulk-$i"
		echo "    selector: {spiffe: \"$TD/dst$i\"}"
		echo "    rules:"
		echo "      - action: ALLOW"
		echo "        ports: [$p, $((p + 1)), $((p + 2)), $((p + 3)), $((p + 4))]"
		echo "        from:"
		for ((j = 1; j <= ns; j++)); do echo "          - \"$TD/src$j\""; done
	done
}
size_args() {
	case $1 in
	small) echo "1 2" ;;   # 1 x 2 x 5 = 10 entries
	1k) echo "1 200" ;;    # 1 x 200 x 5 = 1,000
	50k) echo "40 250" ;;  # 40 x 250 x 5 = 50,000
	*) echo "bench/cluster.sh: unknown size $1 (small, 1k, 50k)" >&2; exit 2 ;;
	esac
}
apply_wait() { # FILE: the CLI's JSON on stdout
	SB_CCLI_TIMEOUT=150 sb_ccli policy apply --cluster -f "$1" --wait --max-wait 120 -o json
}
entries_of() { # NODE: kernel entries of the node's last applied policy revision
	grep 'policy revision [0-9]* applied' "$(sb_daemon_log "$1")" | tail -n 1 |
		sed -n 's/.* \([0-9][0-9]*\) kernel entries.*/\1/p'
}

# config/generation's "at" for every write from revision FROM on: "REV AT" lines
gen_times() { # FROM
	# the watch replays the history from FROM and then waits: bounded, its end is expected
	timeout 6 nsenter --net="/run/netns/$HUB" -- scripts/test-etcd.sh ctl "$EDIR" "$SB_ETCD_ADDR" \
		watch --rev="$1" "${PFX}config/generation" -w json 2>/dev/null |
		python3 -c '
import base64, json, sys
text, dec, i = sys.stdin.read(), json.JSONDecoder(), 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    try:
        o, i = dec.raw_decode(text, i)
    except ValueError:
        break
    for ev in o.get("Events") or []:
        kv = ev["kv"]
        print(kv["mod_revision"], json.loads(base64.b64decode(kv["value"]))["at"])' || true
}

# Node-side latency per revision from the daemon logs: write ("at") -> "policy revision N
# applied" and -> "cluster: revision R in force", per node and the slowest node.
node_side() { # GEN_FILE REVS_FILE LOG...
	python3 - "$@" <<'EOF'
import json, math, re, sys
from datetime import datetime, timezone
def ts(s):
    return datetime.strptime(s.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
gen = {}
for line in open(sys.argv[1]):
    r, at = line.split()
    gen[int(r)] = ts(at)
revs = [int(x) for x in open(sys.argv[2]).read().split()]
applied, inforce = [], []
slow_applied, slow_inforce = [], []
for_rev = {r: ([], []) for r in revs}
for f in sys.argv[3:]:
    last_pol = None
    for line in open(f):
        m = re.match(r'^(\S+Z) \S+ \S+: (.*)$', line)
        if not m:
            continue
        t, msg = ts(m.group(1)), m.group(2)
        if re.match(r'policy revision \d+ applied', msg):
            last_pol = t
        mm = re.match(r'cluster: revision (\d+) in force', msg)
        if mm and int(mm.group(1)) in for_rev and int(mm.group(1)) in gen:
            r = int(mm.group(1))
            for_rev[r][0].append(last_pol - gen[r] if last_pol is not None else None)
            for_rev[r][1].append(t - gen[r])
            last_pol = None
def pct(v, p):
    v = sorted(x for x in v if x is not None)
    return round(v[max(0, math.ceil(p / 100.0 * len(v)) - 1)] * 1000, 1) if v else None
missing = 0
for r, (a, b) in for_rev.items():
    applied += a
    inforce += b
    if len(b) == len(sys.argv) - 3:
        slow_inforce.append(max(b))
        if all(x is not None for x in a):
            slow_applied.append(max(a))
    else:
        missing += 1
print(json.dumps({
    "revisions": len(revs), "revisions_not_in_all_logs": missing,
    "per_node_applied_ms": {"p50": pct(applied, 50), "p99": pct(applied, 99), "n": len(applied)},
    "per_node_in_force_ms": {"p50": pct(inforce, 50), "p99": pct(inforce, 99), "n": len(inforce)},
    "slowest_node_applied_ms": {"p50": pct(slow_applied, 50), "p99": pct(slow_applied, 99)},
    "slowest_node_in_force_ms": {"p50": pct(slow_inforce, 50), "p99": pct(slow_inforce, 99)},
}))
EOF
}
# p50/p99 (nearest rank) and max of numbers on stdin, in the unit given (x SCALE)
pcts() { # SCALE
	python3 -c '
import json, math, sys
v = sorted(float(x) * float(sys.argv[1]) for x in sys.stdin.read().split())
p = lambda q: round(v[max(0, math.ceil(q / 100.0 * len(v)) - 1)], 1)
print(json.dumps({"n": len(v), "p50": p(50), "p99": p(99), "max": round(v[-1], 1),
                  "mean": round(sum(v) / len(v), 1)}))' "$1"
}

declare -A RES
LOGS=()
for ((i = 1; i <= NODES; i++)); do LOGS+=("$(sb_daemon_log "node$i")"); done
run_size() { # SIZE
	local s=$1 nd ns a b out rx0 rx1 c0 c1 e0 e1 t0 t1 tstart n=0 rev first_rev=0 f
	read -r nd ns <<<"$(size_args "$s")"
	a=$POL-$s-a.yaml b=$POL-$s-b.yaml
	policy_doc "$nd" "$ns" 7001 >"$a"
	policy_doc "$nd" "$ns" 7006 >"$b"
	# the first apply (not measured) brings the size in; bulk-N of a smaller size is replaced
	out=$(apply_wait "$a")
	RES[$s.entries]=$(entries_of node1)
	RES[$s.value_bytes]=$(sb_etcdctl get --prefix "${PFX}config/policies/" -w json |
		jq '[.kvs[].value | @base64d | length] | add')
	log "size $s: ${RES[$s.entries]} kernel entries on node1, $(jq -r .converged_s <<<"$out") s for the first apply, policy values ${RES[$s.value_bytes]} bytes in etcd"
	: >"$SB_DIR/$s.wall" && : >"$SB_DIR/$s.conv" && : >"$SB_DIR/$s.revs"
	sleep 1
	# one apply alone: its bytes per node
	rx0=$(rx_bytes)
	t0=$(now)
	out=$(apply_wait "$b")
	t1=$(now)
	sleep 0.5
	RES[$s.rx_one]=$(per_node "$rx0" "$(rx_bytes)" 1 1)
	echo "$t0 $t1" | awk '{ print $2 - $1 }' >>"$SB_DIR/$s.wall"
	jq -r .converged_s <<<"$out" >>"$SB_DIR/$s.conv"
	rev=$(jq -r .revision <<<"$out")
	first_rev=$rev
	echo "$rev" >>"$SB_DIR/$s.revs"
	n=1
	rx0=$(rx_bytes)
	c0=$(daemons_cpu)
	e0=$(cpu_ticks "$ETCD_PID")
	metrics >"$SB_DIR/$s.m0"
	tstart=$(now)
	while ((n < APPLIES)); do
		if awk -v a="$tstart" -v b="$(now)" -v m="$MAX_S" 'BEGIN { exit !(b - a > m) }'; then
			log "size $s: stopped after $n applies ($MAX_S s)"
			break
		fi
		f=$a
		((n % 2 == 0)) && f=$b
		t0=$(now)
		out=$(apply_wait "$f")
		t1=$(now)
		echo "$t0 $t1" | awk '{ print $2 - $1 }' >>"$SB_DIR/$s.wall"
		jq -r .converged_s <<<"$out" >>"$SB_DIR/$s.conv"
		jq -r .revision <<<"$out" >>"$SB_DIR/$s.revs"
		n=$((n + 1))
	done
	t1=$(now)
	sleep 0.5
	rx1=$(rx_bytes)
	c1=$(daemons_cpu)
	e1=$(cpu_ticks "$ETCD_PID")
	metrics >"$SB_DIR/$s.m1"
	RES[$s.n]=$n
	RES[$s.load]=$(loadavg)
	RES[$s.metrics]=$(metrics_diff "$SB_DIR/$s.m0" "$SB_DIR/$s.m1" $((n - 1)))
	RES[$s.loop_s]=$(awk -v a="$tstart" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	RES[$s.rx_mean]=$(per_node "$rx0" "$rx1" $((n - 1)) 1)
	RES[$s.cpu]=$(per_node "$c0" "$c1" $((n - 1)) "$(awk -v t="$TCK" 'BEGIN { print 1 / t }')")
	RES[$s.etcd_cpu]=$(awk -v a="$e0" -v b="$e1" -v t="$TCK" -v n=$((n - 1)) 'BEGIN { printf "%.4f", (b - a) / t / n }')
	RES[$s.wall]=$(pcts 1000 <"$SB_DIR/$s.wall")
	RES[$s.conv]=$(pcts 1000 <"$SB_DIR/$s.conv")
	gen_times "$first_rev" >"$SB_DIR/$s.gen"
	RES[$s.node]=$(node_side "$SB_DIR/$s.gen" "$SB_DIR/$s.revs" "${LOGS[@]}")
	log "size $s: load average ${RES[$s.load]}"
	log "size $s: $n applies; wall ms ${RES[$s.wall]}; converged ms ${RES[$s.conv]}"
	log "size $s: node side ${RES[$s.node]}"
	log "size $s: RX bytes per node, one apply $(jq -c '{mean, min, max}' <<<"${RES[$s.rx_one]}"), mean of the loop $(jq -c '{mean, min, max}' <<<"${RES[$s.rx_mean]}"); daemon CPU s per apply $(jq -c '{mean, max}' <<<"${RES[$s.cpu]}"), etcd ${RES[$s.etcd_cpu]}"
	log "size $s: etcd per apply ${RES[$s.metrics]}"
}

# During the churn: for every "cluster: revision R in force" of a node, how old the
# newest put it contains was (in force time - that put's answer time); and at the end
# of the puts, how many puts each node had not put in force yet (status --cluster).
churn_lag() { # PUTS_FILE STATUS_JSON T0 T1 LOG...
	python3 - "$@" <<'EOF'
import bisect, json, math, re, sys
from datetime import datetime, timezone
def ts(s):
    return datetime.strptime(s.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
puts = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
revs = [int(r) for r, _ in puts]
t0, t1 = float(sys.argv[3]), float(sys.argv[4])
ages, rates = [], []
for f in sys.argv[5:]:
    n = 0
    for line in open(f):
        m = re.match(r'^(\S+Z) \S+ \S+: cluster: revision (\d+) in force', line)
        if not m:
            continue
        t, r = ts(m.group(1)), int(m.group(2))
        if not (t0 <= t <= t1):
            continue
        n += 1
        i = bisect.bisect_right(revs, r) - 1
        if i >= 0:
            ages.append(t - puts[i][1])
    rates.append(n / (t1 - t0))
behind = []
try:
    st = json.load(open(sys.argv[2]))
    for nd in st.get("nodes", []):
        behind.append(len(revs) - bisect.bisect_right(revs, int(nd.get("revision") or 0)))
except (OSError, ValueError):
    pass
def pct(v, p):
    v = sorted(v)
    return round(v[max(0, math.ceil(p / 100.0 * len(v)) - 1)] * 1000, 1) if v else None
print(json.dumps({"applies_per_s_per_node": [round(x, 2) for x in rates],
                  "age_of_newest_change_in_force_ms": {"p50": pct(ages, 50), "p99": pct(ages, 99), "max": pct(ages, 100), "n": len(ages)},
                  "puts_not_in_force_at_end_per_node": behind}))
EOF
}

# ---- catalog churn ----
churn() {
	local t0 n=0 ok=0 rx0 rx1 v0 c0 c1 e0 e1 out last t1 conv0 i applies0 applies1
	# 1. the CLI in a loop (one process per change), bounded by time and count
	t0=$(now)
	while ((n < 2000)) && awk -v a="$t0" -v b="$(now)" -v m="$CLI_RATE_S" 'BEGIN { exit !(b - a < m) }'; do
		svc_doc $((10000 + n)) >"$SVC"
		sb_ccli catalog apply "$SVC" >/dev/null 2>&1 && ok=$((ok + 1))
		n=$((n + 1))
	done
	RES[churn.cli_rate]=$(awk -v a="$t0" -v b="$(now)" -v n="$ok" 'BEGIN { printf "%.1f", n / (b - a) }')
	RES[churn.cli_tries]=$n
	RES[churn.cli_ok]=$ok
	log "churn: sockmesh catalog apply in a loop: ${RES[churn.cli_rate]} changes/s ($ok of $n)"
	sleep 3 # the nodes catch up with the CLI's changes before the counters start
	# 2. the service key through the gateway at CHURN_RATE
	local skey=${PFX}config/catalog/services/churn value
	value=$(sb_etcdctl get "$skey" --print-value-only)
	metrics >"$SB_DIR/m0.txt"
	rx0=$(rx_bytes)
	c0=$(daemons_cpu)
	e0=$(cpu_ticks "$ETCD_PID")
	applies0=$(cat "${LOGS[@]}" | grep -c 'cluster: revision [0-9]* in force' || true)
	threads "$(sb_daemon_pid node1)" >"$SB_DIR/threads0"
	v0=$(for k in nodes applied; do sb_etcdctl get "${PFX}status/$k/node1" -w json |
		jq -c --arg k "$k" '{($k): .kvs[0].version}'; done | jq -sc add)
	t0=$(now)
	out=$(timeout $((CHURN_S + 30)) nsenter --net="/run/netns/$HUB" -- python3 bench/etcdchurn.py \
		--url "$(sb_etcd_url)" --ca "$EDIR/ca.pem" --cert "$EDIR/client-operator.pem" \
		--key "$EDIR/client-operator-key.pem" --skey "$skey" --value "$value" \
		--rate "$CHURN_RATE" --seconds "$CHURN_S" --workers "$CHURN_WORKERS" \
		--log "$SB_DIR/churn.puts")
	t1=$(now)
	c1=$(daemons_cpu)
	e1=$(cpu_ticks "$ETCD_PID")
	threads "$(sb_daemon_pid node1)" >"$SB_DIR/threads1"
	metrics >"$SB_DIR/m1.txt"
	RES[churn.client]=$out
	n=$(jq .puts <<<"$out")
	last=$(jq .last_revision <<<"$out")
	# where the nodes are when the puts stop, then how long until every node has the last one
	# (bounded: a node that cannot keep up is reported, not waited for forever)
	SB_CCLI_TIMEOUT=20 sb_ccli status --cluster -o json >"$SB_DIR/churn.status" || true
	conv0=$(now)
	if SB_CCLI_TIMEOUT=$((CHURN_TAIL_MAX + 30)) sb_ccli policy wait --cluster "$last" \
		--max-wait "$CHURN_TAIL_MAX" >/dev/null 2>"$SB_DIR/churn.wait"; then
		RES[churn.tail_s]=$(awk -v a="$conv0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
	else
		RES[churn.tail_s]=null
		log "churn: the nodes did not all have revision $last ${CHURN_TAIL_MAX} s after the last put: $(cat "$SB_DIR/churn.wait")"
	fi
	# bytes: until every node has the last change (a node behind has not received it all
	# when the puts stop); the lease keepalives of the tail are in it (idle rate above)
	rx1=$(rx_bytes)
	# how often node1 rewrote its two keys during the churn and its tail
	RES[churn.node1_key_versions]=$(for k in nodes applied; do sb_etcdctl get "${PFX}status/$k/node1" -w json |
		jq -c --arg k "$k" '{($k): .kvs[0].version}'; done | jq -sc add)
	RES[churn.lag]=$(churn_lag "$SB_DIR/churn.puts" "$SB_DIR/churn.status" "$t0" "$t1" "${LOGS[@]}")
	applies1=$(cat "${LOGS[@]}" | grep -c 'cluster: revision [0-9]* in force' || true)
	local secs
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	RES[churn.secs]=$secs
	# node1's threads: the main thread is the pid; they have no names, the busiest other
	# one during the churn is the watcher (workers carry no traffic here). schedstat says
	# how long each ran and how long it waited for a CPU while runnable.
	RES[churn.threads]=$(python3 -c '
import json, sys
b = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(sys.argv[1]) if l.strip()}
a = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(sys.argv[2]) if l.strip()}
pid, tck, s = sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
out = {}
for tid, v in sorted(a.items()):
    w = b.get(tid, [0, 0, 0])
    cpu, run, wait = (v[0] - w[0]) / tck / s, (v[1] - w[1]) / 1e9 / s, (v[2] - w[2]) / 1e9 / s
    if run > 0.001 or wait > 0.001:
        out["main" if tid == pid else "tid" + tid] = {"cpu_s_per_s": round(cpu, 4),
            "on_cpu_s_per_s": round(run, 4), "runqueue_wait_s_per_s": round(wait, 4)}
print(json.dumps(out))' "$SB_DIR/threads0" "$SB_DIR/threads1" "$(sb_daemon_pid node1)" "$TCK" "$secs")
	RES[churn.load]=$(loadavg)
	RES[churn.n]=$n
	RES[churn.applies_per_node]=$(awk -v a="$applies0" -v b="$applies1" -v n="$NODES" 'BEGIN { printf "%.1f", (b - a) / n }')
	RES[churn.rx]=$(per_node "$rx0" "$rx1" "$n" 1)
	RES[churn.cpu]=$(per_node "$c0" "$c1" "$secs" "$(awk -v t="$TCK" 'BEGIN { print 1 / t }')")
	RES[churn.etcd_cpu]=$(awk -v a="$e0" -v b="$e1" -v t="$TCK" -v s="$secs" 'BEGIN { printf "%.4f", (b - a) / t / s }')
	RES[churn.metrics]=$(metrics_diff "$SB_DIR/m0.txt" "$SB_DIR/m1.txt" "$secs")
	log "churn: $out; load average ${RES[churn.load]}"
	log "churn: nodes had the last change ${RES[churn.tail_s]} s after it; ${RES[churn.applies_per_node]} applies per node for $n changes"
	log "churn: lag ${RES[churn.lag]}"
	RES[churn.v0]=$v0
	log "churn: node1's status keys, versions before $v0, after ${RES[churn.node1_key_versions]}"
	log "churn: node1's threads, CPU s/s ${RES[churn.threads]}"
	log "churn: daemon CPU s/s $(jq -c '{mean, min, max}' <<<"${RES[churn.cpu]}"), etcd CPU s/s ${RES[churn.etcd_cpu]}"
	log "churn: RX bytes per change per node $(jq -c '{mean, min, max}' <<<"${RES[churn.rx]}")"
	log "churn: etcd per second ${RES[churn.metrics]}"
}

for s in $SIZES; do
	run_size "$s"
	if [ "$s" = small ] && [ "$CHURN" = 1 ]; then churn; fi
done
[[ " $SIZES " == *" small "* ]] || [ "$CHURN" = 0 ] || churn

# ---- report ----
{
	echo "{"
	echo "\"machine\": {\"cpus\": $(nproc), \"kernel\": \"$(uname -r)\", \"etcd\": \"$(etcd --version | head -n 1 | awk '{ print $3 }')\"},"
	echo "\"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\","
	echo "\"idle\": {\"rx_bytes_per_s\": $IDLE_RX, \"daemon_cpu_s_per_s\": $IDLE_CPU, \"etcd_cpu_s_per_s\": $IDLE_ETCD, \"etcd_alone_cpu_s_per_s\": $ETCD_ALONE},"
	for s in $SIZES; do
		echo "\"$s\": {\"entries\": ${RES[$s.entries]:-null}, \"policy_value_bytes\": ${RES[$s.value_bytes]:-null}, \"applies\": ${RES[$s.n]}, \"loop_s\": ${RES[$s.loop_s]}, \"wall_ms\": ${RES[$s.wall]}, \"converged_ms\": ${RES[$s.conv]}, \"node_side\": ${RES[$s.node]}, \"rx_bytes_one_apply\": ${RES[$s.rx_one]}, \"rx_bytes_per_apply_loop\": ${RES[$s.rx_mean]}, \"daemon_cpu_s_per_apply\": ${RES[$s.cpu]}, \"etcd_cpu_s_per_apply\": ${RES[$s.etcd_cpu]}, \"etcd_per_apply\": ${RES[$s.metrics]}, \"loadavg_after\": \"${RES[$s.load]}\"},"
	done
	[ "$CHURN" = 1 ] || { echo "\"nodes\": $NODES"; echo "}"; exit 0; }
	echo "\"nodes\": $NODES,"
	echo "\"churn\": {\"cli_rate\": ${RES[churn.cli_rate]}, \"cli_tries\": ${RES[churn.cli_tries]}, \"client\": ${RES[churn.client]}, \"seconds\": ${RES[churn.secs]}, \"tail_s\": ${RES[churn.tail_s]}, \"lag\": ${RES[churn.lag]}, \"node1_key_versions_before\": ${RES[churn.v0]}, \"node1_key_versions_after\": ${RES[churn.node1_key_versions]}, \"node1_threads_cpu_s_per_s\": ${RES[churn.threads]}, \"applies_per_node\": ${RES[churn.applies_per_node]}, \"rx_bytes_per_change\": ${RES[churn.rx]}, \"daemon_cpu_s_per_s\": ${RES[churn.cpu]}, \"etcd_cpu_s_per_s\": ${RES[churn.etcd_cpu]}, \"etcd_per_s\": ${RES[churn.metrics]}, \"loadavg_after\": \"${RES[churn.load]}\"}"
	echo "}"
} | jq . >"$RESULTS"

echo
echo "| set | kernel entries | applies | CLI wall p50 / p99, ms | converged_s p50 / p99, ms | node: write → in force p50 / p99 (slowest node), ms | RX bytes per node, one apply | daemon CPU s per apply (mean) | etcd CPU s per apply |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for s in $SIZES; do
	echo "| $s | ${RES[$s.entries]} | ${RES[$s.n]} | $(jq -r '"\(.p50) / \(.p99)"' <<<"${RES[$s.wall]}") | $(jq -r '"\(.p50) / \(.p99)"' <<<"${RES[$s.conv]}") | $(jq -r '"\(.slowest_node_in_force_ms.p50) / \(.slowest_node_in_force_ms.p99)"' <<<"${RES[$s.node]}") | $(jq -r '.mean | floor' <<<"${RES[$s.rx_one]}") | $(jq -r .mean <<<"${RES[$s.cpu]}") | ${RES[$s.etcd_cpu]} |"
done
echo
[ "$CHURN" = 1 ] && echo "churn: $(jq -r '"\(.puts) changes in \(.seconds) s = \(.rate)/s"' <<<"${RES[churn.client]}") (CLI loop alone: ${RES[churn.cli_rate]}/s); daemon CPU $(jq -r .mean <<<"${RES[churn.cpu]}") s/s per node; etcd CPU ${RES[churn.etcd_cpu]} s/s; RX $(jq -r '.mean | floor' <<<"${RES[churn.rx]}") bytes per change per node"
echo "results: $RESULTS"
