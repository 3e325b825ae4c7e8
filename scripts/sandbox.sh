#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Test sandbox: N sockmesh nodes on one machine, each a network namespace joined
# to a hub bridge by veth, a cgroup v2 subtree and a bpffs pin directory, plus a
# temp directory for configs, the catalog, control sockets and logs.
#
# Sourced by the integration tests and the demo. Also runnable:
#   scripts/sandbox.sh destroy ID   remove a leftover sandbox by its id
#   scripts/sandbox.sh list         print the ids of sandboxes that exist
#
# Layout for sandbox ID with nodes node1..nodeN:
#   netns      smt-ID-hub (bridge br0), smt-ID-n1 .. smt-ID-nN (eth0)
#   addresses  node i: 10.11.0.i/24 and fc42::i/64 on eth0, lo up
#   cgroups    <cgroup2>/sockmesh-test-ID/nodeI/{daemon,<workload>...}
#   bpffs      /sys/fs/bpf/sockmesh-test-ID/nodeI
#   files      ${SB_TMPDIR:-/tmp}/sockmesh-test-ID/{catalog.yaml,logs/,nodeI/}, where nodeI/
#              holds sockmesh.yaml, sockmesh.sock, flows.jsonl, sockmeshd.log, state/
# Every name derives from ID, so `destroy ID` finds everything without state.
#
# Set by a test run (tests/run-tests.sh), unset otherwise:
#   SB_REGISTER    a file: sb_create appends each sandbox id to it, so the run
#                  can tell which leftovers are its own
#   SB_PKI_CACHE   a directory: sb_make_pki makes each distinct PKI once per run
#                  there and copies it (see sb_make_pki)
#
# Functions return non-zero on failure and say why on stderr; sb_destroy never
# stops half way and may be called any number of times.

SB_REPO=${SB_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

# The build directory: SB_OUTPUT or SM_OUTPUT (the Makefile passes its OUTPUT as
# SM_OUTPUT), else .output; relative paths are taken from the repository root.
sb__find_output() {
	local out=${SB_OUTPUT:-${SM_OUTPUT:-.output}}
	case "$out" in
	/*) echo "$out" ;;
	*) echo "$SB_REPO/$out" ;;
	esac
}
SB_OUTPUT=$(sb__find_output)
SOCKMESHD=${SOCKMESHD:-$SB_OUTPUT/sockmeshd}
SOCKMESH=${SOCKMESH:-$SB_OUTPUT/sockmesh}
SMTRAFFIC=${SMTRAFFIC:-$SB_OUTPUT/tools/smtraffic}
SB_BPFFS_MOUNT=${SB_BPFFS_MOUNT:-/sys/fs/bpf}
SB_READY_TIMEOUT=${SB_READY_TIMEOUT:-30} # seconds a daemon may take to become ready
SB_EXEC_TIMEOUT=${SB_EXEC_TIMEOUT:-120}  # seconds a foreground command may run

SB_ID=""
SB_N=0
SB_DIR=""
SB_CG=""
SB_BPFFS=""
SB_PIDS=()            # every background process started by sb_run/sb_start_daemon
declare -gA SB_DAEMON_PID=()
SB_WL_NAMES=()        # registered workloads, for the catalog
SB_WL_NODES=()
SB_WL_SPIFFE=()
SB_WL_MODES=()
SB_SVC_LINES=()       # registered services, as catalog YAML
SB_LAST_RC=0          # exit status of the last sb_stop_daemon / sb_wait_pid
SB_RUN_PID=""         # set by sb_run
SB_RUN_OUT=""
SB_RUN_ERR=""
SB_RUN_SEQ=0
SB_PKI=""             # set by sb_make_pki: credentials go into the catalog

sb_log() {
	echo "sandbox: $*" >&2
}

# jq, except that `-e` fails closed. Debian's jq 1.6 exits 0 when `-e` gets no
# input at all (an empty answer, a record that was never written), so a check
# like `jq -e '.ready == true' <<<"$answer"` would pass on nothing. With -e (also
# inside combined flags such as -er), no output at all is exit status 4, as
# later jq versions define it. Everything else is jq's own behaviour.
jq() {
	local a strict=0 out rc
	for a in "$@"; do
		case "$a" in
		--exit-status) strict=1 ;;
		--*) ;;
		-*e*) [[ "$a" =~ ^-[a-zA-Z]+$ ]] && strict=1 ;;
		esac
	done
	if [ "$strict" = 0 ]; then
		command jq "$@"
		return
	fi
	out=$(command jq "$@")
	rc=$?
	if [ "$rc" = 0 ] && [ -z "$out" ]; then
		echo "jq -e: no input or no result (an empty answer is not a pass)" >&2
		return 4
	fi
	[ -z "$out" ] || printf '%s\n' "$out"
	return "$rc"
}

# sb_daemon_ready NODE: the node's daemon answered `status` and said ready.
sb_daemon_ready() {
	local answer
	answer=$(sb_cli "$1" status -o json 2>/dev/null) || return 1
	[ -n "$answer" ] && jq -e '.ready == true' >/dev/null 2>&1 <<<"$answer"
}

# The cgroup v2 mount point, from /proc/self/mountinfo (the fs type follows " - ").
sb_cgroup2_root() {
	awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
		/proc/self/mountinfo
}

sb_check_id() {
	if [[ ! "$1" =~ ^[A-Za-z0-9]{1,12}$ ]]; then
		sb_log "bad sandbox id '$1': use 1-12 letters or digits"
		return 1
	fi
}

# Set every path from an id (no side effects).
sb__paths() {
	local cg2
	cg2=$(sb_cgroup2_root)
	SB_ID=$1
	SB_DIR=${SB_TMPDIR:-/tmp}/sockmesh-test-$1
	SB_CG=${cg2:-/nonexistent-cgroup2}/sockmesh-test-$1
	SB_BPFFS=$SB_BPFFS_MOUNT/sockmesh-test-$1
}

sb_hub_ns() { echo "smt-$SB_ID-hub"; }
# Network namespace of nodeI.
sb_ns() { echo "smt-$SB_ID-n${1#node}"; }
sb_node_ip4() { echo "10.11.0.${1#node}"; }
sb_node_ip6() { echo "fc42::${1#node}"; }
sb_socket() { echo "$SB_DIR/$1/sockmesh.sock"; }
sb_flowlog() { echo "$SB_DIR/$1/flows.jsonl"; }
sb_daemon_log() { echo "$SB_DIR/$1/sockmeshd.log"; }
sb_bpffs_dir() { echo "$SB_BPFFS/$1"; }
sb_cgroup_dir() { echo "$SB_CG/$1/$2"; }
sb_catalog() { echo "$SB_DIR/catalog.yaml"; }
# The node's config file: only what no flag sets, so /etc/sockmesh is never read.
sb_config() { echo "$SB_DIR/$1/sockmesh.yaml"; }
sb_daemon_pid() { echo "${SB_DAEMON_PID[$1]:-}"; }

sb__valid_node() {
	local i=${1#node}
	if [[ "$1" != node* || ! "$i" =~ ^[0-9]+$ ]] || ((i < 1 || i > SB_N)); then
		sb_log "unknown node '$1' (this sandbox has node1..node$SB_N)"
		return 1
	fi
}

# True while PID runs (a zombie, exited but not yet reaped, does not count).
sb_alive() {
	local st
	[ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
	st=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# sb_create ID NNODES: build the namespaces, links, addresses, cgroups and dirs.
sb_create() {
	local id=$1 n=$2 hub ns i
	sb_check_id "$id" || return 1
	if [[ ! "$n" =~ ^[1-9]$ ]]; then
		sb_log "bad node count '$n': use 1..9"
		return 1
	fi
	if [ "$(id -u)" -ne 0 ]; then
		sb_log "must run as root (network namespaces, cgroups and bpffs need it)"
		return 1
	fi
	sb__paths "$id"
	SB_N=$n
	SB_PIDS=()
	SB_DAEMON_PID=()
	SB_WL_NAMES=() SB_WL_NODES=() SB_WL_SPIFFE=() SB_WL_MODES=() SB_SVC_LINES=()
	SB_PKI=""
	if [ -z "$(sb_cgroup2_root)" ]; then
		sb_log "no cgroup v2 mount in /proc/self/mountinfo (sockmesh needs the unified hierarchy)"
		return 1
	fi
	if [ -e "$SB_DIR" ] || [ -e "$SB_CG" ] || [ -e "/run/netns/$(sb_hub_ns)" ]; then
		sb_log "sandbox '$id' exists already (remove it: scripts/sandbox.sh destroy $id)"
		return 1
	fi
	# before anything exists, so that even a half-made sandbox is on the list
	if [ -n "${SB_REGISTER:-}" ] && ! echo "$id" >>"$SB_REGISTER"; then
		sb_log "cannot add '$id' to the list of this run's sandboxes $SB_REGISTER"
		return 1
	fi
	if ! grep -qs " $SB_BPFFS_MOUNT bpf " /proc/mounts &&
		! mount -t bpf bpf "$SB_BPFFS_MOUNT"; then
		sb_log "cannot mount bpffs on $SB_BPFFS_MOUNT (mount -t bpf bpf $SB_BPFFS_MOUNT)"
		return 1
	fi
	mkdir -p "$SB_DIR/logs" || return 1
	echo "$n" >"$SB_DIR/nodes"
	hub=$(sb_hub_ns)
	{
		ip netns add "$hub" &&
			ip -n "$hub" link set lo up &&
			ip -n "$hub" link add br0 type bridge &&
			ip -n "$hub" link set br0 up
	} || { sb_log "cannot create the hub namespace $hub"; sb_destroy; return 1; }
	for ((i = 1; i <= n; i++)); do
		ns=$(sb_ns "node$i")
		{
			ip netns add "$ns" &&
				ip -n "$hub" link add "vn$i" type veth peer name eth0 netns "$ns" &&
				ip -n "$hub" link set "vn$i" master br0 up &&
				ip -n "$ns" link set lo up &&
				ip -n "$ns" addr add "$(sb_node_ip4 "node$i")/24" dev eth0 &&
				ip -n "$ns" addr add "$(sb_node_ip6 "node$i")/64" dev eth0 nodad &&
				ip -n "$ns" link set eth0 up &&
				mkdir -p "$SB_CG/node$i/daemon" "$SB_BPFFS" "$SB_DIR/node$i/state" &&
				printf '# sockmesh test sandbox %s, node%s: the rest comes as flags\nlog:\n  level: info\n' \
					"$SB_ID" "$i" >"$(sb_config "node$i")"
		} || { sb_log "cannot create node$i"; sb_destroy; return 1; }
	done
	return 0
}

# sb_add_cgroup NODE NAME: a cgroup under the node that is not a workload.
sb_add_cgroup() {
	sb__valid_node "$1" || return 1
	mkdir -p "$SB_CG/$1/$2"
}

# sb_add_workload NODE NAME SPIFFE_ID [strict|permissive]: a cgroup and a catalog entry.
sb_add_workload() {
	sb__valid_node "$1" || return 1
	mkdir -p "$SB_CG/$1/$2" || return 1
	SB_WL_NAMES+=("$2")
	SB_WL_NODES+=("$1")
	SB_WL_SPIFFE+=("$3")
	SB_WL_MODES+=("${4:-strict}")
}

# sb_add_service ADDR PORT WORKLOAD [NAME]
sb_add_service() {
	local line
	line="  - address: \"$1\"
    port: $2
    workload: $3"
	[ -n "${4:-}" ] && line+="
    name: $4"
	SB_SVC_LINES+=("$line")
}

# sb_write_catalog [FILE]: every node, workload and service registered so far.
sb_write_catalog() {
	local f=${1:-$(sb_catalog)} i
	if [ -z "$SB_PKI" ] && [ "${SB_MTLS:-1}" != 0 ]; then
		sb_make_pki || return 1
	fi
	{
		echo "# sockmesh test sandbox $SB_ID"
		echo "nodes:"
		for ((i = 1; i <= SB_N; i++)); do
			echo "  - name: node$i"
			echo "    addresses: [$(sb_node_ip4 "node$i"), \"$(sb_node_ip6 "node$i")\"]"
			if [ -n "$SB_PKI" ]; then echo "    credentials: $SB_PKI/node$i"; fi
		done
		echo "workloads:"
		for i in "${!SB_WL_NAMES[@]}"; do
			echo "  - name: ${SB_WL_NAMES[$i]}"
			echo "    node: ${SB_WL_NODES[$i]}"
			echo "    cgroup: sockmesh-test-$SB_ID/${SB_WL_NODES[$i]}/${SB_WL_NAMES[$i]}"
			echo "    spiffe_id: ${SB_WL_SPIFFE[$i]}"
			echo "    mode: ${SB_WL_MODES[$i]}"
			if [ -n "$SB_PKI" ]; then echo "    credentials: $SB_PKI/wl-${SB_WL_NAMES[$i]}"; fi
		done
		if [ ${#SB_SVC_LINES[@]} -gt 0 ]; then
			echo "services:"
			printf '%s\n' "${SB_SVC_LINES[@]}"
		fi
	} >"$f"
}

# sb_make_pki [TRUST_DOMAIN]: a test PKI under $SB_DIR/pki (scripts/test-pki.sh) with
# SVIDs for nodes 1..9 and every workload registered so far (directory wl-NAME);
# sb_write_catalog names these credentials (and makes the PKI itself on its first
# call unless SB_MTLS=0). TRUST_DOMAIN defaults to the first workload's; all
# workload SPIFFE IDs must be in it to verify.
#
# With SB_PKI_CACHE set (a directory that lives for one test run), the PKI for
# the same trust domain and workloads is generated once, by the first sandbox
# that needs it (under a lock), and every sandbox gets its own copy of it:
# $SB_DIR/pki stays private and writable (rotation tests replace files in it),
# the cached one is never written after it is made. A PKI is valid for a day
# (its leaves) and its not-yet-valid SVID becomes valid after one: never keep
# SB_PKI_CACHE across runs.
sb_make_pki() {
	local td=${1:-} args=() i
	if [ -z "$td" ]; then
		# one trust domain for the whole sandbox: the first workload's
		td=${SB_WL_SPIFFE[0]:-spiffe://sockmesh.test/x}
		td=${td#spiffe://}
		td=${td%%/*}
	fi
	for i in "${!SB_WL_NAMES[@]}"; do
		args+=("wl-${SB_WL_NAMES[$i]}=${SB_WL_SPIFFE[$i]}")
	done
	SB_PKI=$SB_DIR/pki
	if [ -n "${SB_PKI_CACHE:-}" ]; then
		sb__cached_pki "$SB_PKI" "$td" "${args[@]}"
		return
	fi
	"$SB_REPO/scripts/test-pki.sh" "$SB_PKI" "$td" "${args[@]}" ||
		{ sb_log "scripts/test-pki.sh failed"; return 1; }
}

# sb__cached_pki DEST TRUST_DOMAIN [NAME=SPIFFE_ID...]: copy into DEST the PKI
# test-pki.sh makes for these arguments, from $SB_PKI_CACHE/<hash of them>,
# making it there first if no sandbox of this run has. Parallel sandboxes wait
# for the one that makes it (flock on the entry's lock file, bounded).
sb__cached_pki() {
	local dest=$1 key entry
	shift
	key=$(printf '%s\n' "$@" | sha256sum | cut -c1-16)
	entry=$SB_PKI_CACHE/$key
	mkdir -p "$SB_PKI_CACHE" ||
		{ sb_log "cannot create the PKI cache $SB_PKI_CACHE"; return 1; }
	if [ ! -d "$entry" ]; then
		(
			flock -w 120 9 || { sb_log "gave up waiting 120 s for the lock $entry.lock"; exit 1; }
			[ ! -d "$entry" ] || exit 0
			rm -rf "$entry.tmp"
			"$SB_REPO/scripts/test-pki.sh" "$entry.tmp" "$@" ||
				{ sb_log "scripts/test-pki.sh failed"; exit 1; }
			# the rename publishes it whole: a sandbox sees all of it or none
			mv "$entry.tmp" "$entry"
		) 9>"$entry.lock" || return 1
	fi
	rm -rf "$dest"
	cp -a "$entry" "$dest" || { sb_log "cannot copy the test PKI $entry to $dest"; return 1; }
}

# ---- cluster mode: one etcd for the sandbox (scripts/test-etcd.sh) ----
# etcd runs in the hub namespace on SB_ETCD_ADDR (added to br0), with its own
# PKI in $SB_DIR/etcd: a server certificate, a client certificate per node and
# one for the operator. Nodes reach it over their veth; the CLI and etcdctl
# run in the hub namespace. sb_destroy stops it.
SB_ETCD_ADDR=10.11.0.254
sb_etcd_dir() { echo "$SB_DIR/etcd"; }
sb_etcd_url() { echo "https://$SB_ETCD_ADDR:2379"; }

# sb_etcd_start: make the PKI (first call), add the address, start etcd, wait until healthy.
sb_etcd_start() {
	local dir hub
	dir=$(sb_etcd_dir)
	hub=$(sb_hub_ns)
	if [ ! -f "$dir/ca.pem" ]; then
		"$SB_REPO/scripts/test-etcd.sh" pki "$dir" "$SB_ETCD_ADDR" ||
			{ sb_log "scripts/test-etcd.sh pki failed"; return 1; }
	fi
	if ! ip -n "$hub" -4 addr show dev br0 | grep -q " $SB_ETCD_ADDR/"; then
		ip -n "$hub" addr add "$SB_ETCD_ADDR/24" dev br0 ||
			{ sb_log "cannot add $SB_ETCD_ADDR to $hub's br0"; return 1; }
	fi
	"$SB_REPO/scripts/test-etcd.sh" start "$dir" "$SB_ETCD_ADDR" --netns "$hub" ||
		{ sb_log "etcd did not start (its log: $dir/etcd.log)"; return 1; }
}

# sb_etcd_stop: stop etcd (its data stays: sb_etcd_start starts it again with it).
sb_etcd_stop() {
	[ -f "$(sb_etcd_dir)/etcd.pid" ] || return 0
	"$SB_REPO/scripts/test-etcd.sh" stop "$(sb_etcd_dir)"
}

# sb_etcdctl ARGS...: etcdctl as the operator, in the hub namespace, bounded.
sb_etcdctl() {
	timeout --kill-after=2 30 nsenter --net="/run/netns/$(sb_hub_ns)" -- \
		"$SB_REPO/scripts/test-etcd.sh" ctl "$(sb_etcd_dir)" "$SB_ETCD_ADDR" "$@"
}

# sb_ccli ARGS...: the CLI against the cluster (etcd) as the operator, bounded.
sb_ccli() {
	local dir
	dir=$(sb_etcd_dir)
	SOCKMESH_ETCD_ENDPOINTS=$(sb_etcd_url) SOCKMESH_ETCD_CA=$dir/ca.pem \
		SOCKMESH_ETCD_CERT=$dir/client-operator.pem SOCKMESH_ETCD_KEY=$dir/client-operator-key.pem \
		timeout --kill-after=2 "${SB_CCLI_TIMEOUT:-60}" \
		nsenter --net="/run/netns/$(sb_hub_ns)" -- "$SOCKMESH" "$@"
}

# sb_cluster_config NODE: cluster mode in NODE's config file (lease TTL SB_LEASE_TTL, default 10).
sb_cluster_config() {
	local node=$1 dir
	sb__valid_node "$node" || return 1
	dir=$(sb_etcd_dir)
	cat >>"$(sb_config "$node")" <<EOC
cluster:
  lease_ttl: ${SB_LEASE_TTL:-10}
  start_timeout: ${SB_START_TIMEOUT:-30}
  etcd:
    endpoints: [$(sb_etcd_url)]
    ca: $dir/ca.pem
    cert: $dir/client-$node.pem
    key: $dir/client-$node-key.pem
EOC
}

# sb_etcd_cut NODE / sb_etcd_uncut NODE: NODE's traffic with etcd goes nowhere / goes
# again, both ways, inside the node's namespace only: a blackhole route drops what it
# sends, and strict reverse-path filtering drops what comes from an address whose
# route is a blackhole. Traffic between nodes is untouched.
sb_etcd_cut() {
	local ns
	ns=$(sb_ns "$1")
	nsenter --net="/run/netns/$ns" -- sh -c \
		'echo 1 >/proc/sys/net/ipv4/conf/all/rp_filter && echo 1 >/proc/sys/net/ipv4/conf/eth0/rp_filter' &&
		ip -n "$ns" route add blackhole "$SB_ETCD_ADDR/32"
}
sb_etcd_uncut() {
	ip -n "$(sb_ns "$1")" route del blackhole "$SB_ETCD_ADDR/32"
}

# sb_cli NODE ARGS...: the CLI against NODE's daemon, bounded in time.
sb_cli() {
	local node=$1
	shift
	timeout --kill-after=2 10 "$SOCKMESH" -S "$(sb_socket "$node")" "$@"
}

# sb_start_daemon NODE [FLAGS...]: run sockmeshd in the node's netns and daemon
# cgroup, wait (bounded) until `sockmesh status` says ready. On failure the
# daemon log is shown and 1 returned.
sb_start_daemon() {
	local node=$1 ns cg log sock pid deadline
	shift
	sb__valid_node "$node" || return 1
	if [ ! -x "$SOCKMESHD" ] || [ ! -x "$SOCKMESH" ]; then
		sb_log "$SOCKMESHD or $SOCKMESH missing (build them: make)"
		return 1
	fi
	ns=$(sb_ns "$node")
	cg=$SB_CG/$node/daemon
	log=$(sb_daemon_log "$node")
	sock=$(sb_socket "$node")
	echo "--- sandbox: starting sockmeshd on $node at $(date -u +%FT%TZ): $*" >>"$log"
	# fd 3 closed: bats waits for every holder of its fd 3
	# shellcheck disable=SC2016 # $$, $1 and $@ are the inner shell's
	nsenter --net="/run/netns/$ns" -- sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' \
		sh "$cg" "$SOCKMESHD" -c "$(sb_config "$node")" --node "$node" --catalog "$(sb_catalog)" \
		--bpffs "$(sb_bpffs_dir "$node")" --control-socket "$sock" \
		--state-dir "$SB_DIR/$node/state" --flow-log "$(sb_flowlog "$node")" "$@" \
		</dev/null >>"$log" 2>&1 3>&- &
	pid=$!
	SB_PIDS+=("$pid")
	SB_DAEMON_PID[$node]=$pid
	deadline=$((SECONDS + SB_READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! sb_alive "$pid"; then
			wait "$pid" 2>/dev/null && SB_LAST_RC=0 || SB_LAST_RC=$?
			sb_log "sockmeshd on $node exited with status $SB_LAST_RC before it was ready; its log:"
			tail -n 40 "$log" >&2
			return 1
		fi
		if [ -S "$sock" ] && sb_daemon_ready "$node"; then
			return 0
		fi
		sleep 0.1
	done
	sb_log "sockmeshd on $node not ready after ${SB_READY_TIMEOUT}s; its log:"
	tail -n 40 "$log" >&2
	return 1
}

# sb_wait_pid PID [TIMEOUT_S]: wait for a background process (bounded); its
# status in SB_LAST_RC and as return value, 124 on timeout (still running).
sb_wait_pid() {
	local pid=$1 deadline=$((SECONDS + ${2:-60}))
	while sb_alive "$pid"; do
		if ((SECONDS >= deadline)); then
			SB_LAST_RC=124
			return 124
		fi
		sleep 0.05
	done
	# (127 also when PID is not a child of this shell: call sb_run directly, not in $(...))
	wait "$pid" 2>/dev/null && SB_LAST_RC=0 || SB_LAST_RC=$?
	return $SB_LAST_RC
}

# sb_stop_daemon NODE [SIGNAL] [TIMEOUT_S]: signal the daemon (default TERM),
# wait for it to exit, SIGKILL after the timeout (default 15 s). The daemon's
# exit status goes to SB_LAST_RC (137 if it had to be killed). Returns 0 once
# it is gone.
sb_stop_daemon() {
	local node=$1 sig=${2:-TERM} pid
	pid=${SB_DAEMON_PID[$node]:-}
	if [ -z "$pid" ]; then
		sb_log "no daemon recorded for $node"
		return 1
	fi
	kill -s "$sig" "$pid" 2>/dev/null
	if ! sb_wait_pid "$pid" "${3:-15}"; then
		if [ "$SB_LAST_RC" = 124 ]; then
			sb_log "sockmeshd on $node (pid $pid) ignored SIG$sig for ${3:-15}s: killing it"
			kill -KILL "$pid" 2>/dev/null
			sb_wait_pid "$pid" 5
			SB_LAST_RC=137
		fi
	fi
	unset "SB_DAEMON_PID[$node]"
	return 0
}

# sb_run NODE CGROUP CMD...: run CMD in the background in NODE's netns and in
# cgroup NODE/CGROUP (created if missing). Sets SB_RUN_PID, SB_RUN_OUT and
# SB_RUN_ERR (stdout and stderr files). Call it directly, not in $(...).
sb_run() {
	local node=$1 cg=$2
	shift 2
	sb__valid_node "$node" || return 1
	mkdir -p "$SB_CG/$node/$cg" || return 1
	SB_RUN_SEQ=$((SB_RUN_SEQ + 1))
	# a nested CGROUP (a/b) names one file: a_b
	SB_RUN_OUT=$SB_DIR/logs/run$SB_RUN_SEQ-$node-${cg//\//_}.out
	SB_RUN_ERR=$SB_DIR/logs/run$SB_RUN_SEQ-$node-${cg//\//_}.err
	# shellcheck disable=SC2016 # $$, $1 and $@ are the inner shell's
	nsenter --net="/run/netns/$(sb_ns "$node")" -- \
		sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$SB_CG/$node/$cg" "$@" \
		</dev/null >"$SB_RUN_OUT" 2>"$SB_RUN_ERR" 3>&- &
	SB_RUN_PID=$!
	SB_PIDS+=("$SB_RUN_PID")
}

# sb_exec NODE CGROUP CMD...: run CMD in the foreground the same way, at most
# SB_EXEC_TIMEOUT seconds; its stdout/stderr pass through, its status returned.
sb_exec() {
	local node=$1 cg=$2
	shift 2
	sb__valid_node "$node" || return 1
	mkdir -p "$SB_CG/$node/$cg" || return 1
	# shellcheck disable=SC2016 # $$, $1 and $@ are the inner shell's
	nsenter --net="/run/netns/$(sb_ns "$node")" -- \
		sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$SB_CG/$node/$cg" \
		timeout --kill-after=5 "$SB_EXEC_TIMEOUT" "$@" </dev/null
}

# sb_serve NODE CGROUP ADDR:PORT MODE [NAME] [MORE smtraffic FLAGS...]: an
# smtraffic server in the background, returned once it listens (SB_RUN_* set).
sb_serve() {
	local node=$1 cg=$2 addr=$3 mode=$4 name=${5:-$2} deadline
	shift 4
	[ $# -gt 0 ] && shift
	sb_run "$node" "$cg" "$SMTRAFFIC" serve --listen "$addr" --mode "$mode" --name "$name" \
		--timeout 300 "$@" || return 1
	deadline=$((SECONDS + 10))
	while ! grep -qs '"event":"listening"' "$SB_RUN_OUT"; do
		if ! sb_alive "$SB_RUN_PID" || ((SECONDS >= deadline)); then
			sb_log "smtraffic server on $node $addr did not start:"
			cat "$SB_RUN_ERR" >&2
			return 1
		fi
		sleep 0.05
	done
}

# Kill every process of a cgroup subtree and remove it, deepest first.
sb__remove_cgroups() {
	local top=$1 deadline
	[ -d "$top" ] || return 0
	if [ -e "$top/cgroup.kill" ]; then
		echo 1 >"$top/cgroup.kill" 2>/dev/null
	else
		# kernels before 5.14 have no cgroup.kill: kill what the subtree holds by pid
		local pids
		mapfile -t pids < <(find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null)
		[ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
	fi
	deadline=$((SECONDS + 10))
	while [ -n "$(find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] &&
		((SECONDS < deadline)); do
		sleep 0.05
	done
	find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null
	[ ! -d "$top" ] || sb_log "could not remove cgroup $top (processes left: $(find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' '))"
}

# sb_destroy [ID]: remove everything of the sandbox (the current one by default).
# Idempotent; never stops half way (errexit is off while it runs); returns 0.
sb_destroy() {
	local restore_errexit=""
	case $- in
	*e*)
		restore_errexit=1
		set +e
		;;
	esac
	sb__destroy "$@"
	[ -z "$restore_errexit" ] || set -e
	return 0
}

sb__destroy() {
	local id=${1:-$SB_ID} pid node n i ns pids deadline
	[ -n "$id" ] || return 0
	sb_check_id "$id" || return 0
	if [ "$id" != "$SB_ID" ]; then
		sb__paths "$id"
		SB_N=0
		SB_PIDS=()
		SB_DAEMON_PID=()
	fi
	n=$SB_N
	[ "$n" -gt 0 ] 2>/dev/null || n=$(cat "$SB_DIR/nodes" 2>/dev/null || echo 0)
	[ "$n" -gt 0 ] 2>/dev/null || n=$(find "$SB_CG" -mindepth 1 -maxdepth 1 -name 'node*' 2>/dev/null | wc -l)

	# 1. daemons get a chance to stop cleanly, then every recorded process goes;
	# disowned first so that the shell does not announce each "Killed" job
	for pid in "${SB_PIDS[@]}"; do
		disown "$pid" 2>/dev/null
	done
	for node in "${!SB_DAEMON_PID[@]}"; do
		kill -TERM "${SB_DAEMON_PID[$node]}" 2>/dev/null
		kill -CONT "${SB_DAEMON_PID[$node]}" 2>/dev/null # a stopped daemon cannot act on TERM
	done
	deadline=$((SECONDS + 5))
	for node in "${!SB_DAEMON_PID[@]}"; do
		while sb_alive "${SB_DAEMON_PID[$node]}" && ((SECONDS < deadline)); do
			sleep 0.05
		done
	done
	for pid in "${SB_PIDS[@]}"; do
		sb_alive "$pid" && kill -CONT "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	done
	for pid in "${SB_PIDS[@]}"; do
		deadline=$((SECONDS + 5))
		while sb_alive "$pid" && ((SECONDS < deadline)); do
			sleep 0.05
		done
	done
	# processes in our cgroups that were not recorded (e.g. a leftover run)
	if [ -d "$SB_CG" ]; then
		[ -e "$SB_CG/cgroup.kill" ] && echo 1 >"$SB_CG/cgroup.kill" 2>/dev/null
	fi
	# etcd (cluster tests), by the pid it wrote: before its namespace goes
	if [ -f "$SB_DIR/etcd/etcd.pid" ]; then
		"$SB_REPO/scripts/test-etcd.sh" stop "$SB_DIR/etcd" >/dev/null 2>&1 ||
			sb_log "could not stop the sandbox's etcd (pid $(cat "$SB_DIR/etcd/etcd.pid" 2>/dev/null))"
	fi
	# ... and in our namespaces
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^smt-$id-(hub|n[0-9]+)\$"); do
		mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
		[ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
	done

	# 2. detach and unpin what the daemons attached
	mkdir -p "$SB_DIR/logs" 2>/dev/null
	for ((i = 1; i <= n; i++)); do
		if [ -d "$SB_BPFFS/node$i" ] && [ -x "$SOCKMESHD" ]; then
			timeout --kill-after=2 20 "$SOCKMESHD" --cleanup --bpffs "$SB_BPFFS/node$i" \
				>>"$SB_DIR/logs/cleanup.log" 2>&1 ||
				sb_log "sockmeshd --cleanup --bpffs $SB_BPFFS/node$i failed (see $SB_DIR/logs/cleanup.log)"
		fi
	done

	# 3. cgroups, deepest first
	sb__remove_cgroups "$SB_CG"

	# 4. namespaces
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^smt-$id-(hub|n[0-9]+)\$"); do
		ip netns del "$ns" 2>/dev/null || sb_log "could not delete netns $ns"
	done

	# 5. pins the daemon did not remove, then the bpffs dirs
	if [ -d "$SB_BPFFS" ]; then
		rm -rf "$SB_BPFFS" 2>/dev/null || sb_log "could not remove $SB_BPFFS"
	fi

	# 6. temp files (kept when SB_KEEP_LOGS=1, for debugging)
	if [ -d "$SB_DIR" ] && [ "${SB_KEEP_LOGS:-0}" != 1 ]; then
		rm -rf "$SB_DIR"
	fi
	SB_PIDS=()
	SB_DAEMON_PID=()
	SB_N=0
	SB_ID=""
	return 0
}

# Ids of the sandboxes that exist (netns, cgroup, bpffs or temp dir).
sb_list() {
	local cg2 d
	cg2=$(sb_cgroup2_root)
	{
		ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^smt-\([A-Za-z0-9]*\)-hub$/\1/p'
		ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^smt-\([A-Za-z0-9]*\)-n[0-9]*$/\1/p'
		for d in "$cg2"/sockmesh-test-* "$SB_BPFFS_MOUNT"/sockmesh-test-* \
			"${SB_TMPDIR:-/tmp}"/sockmesh-test-*; do
			[ -e "$d" ] && echo "${d##*/sockmesh-test-}"
		done
	} | sort -u
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case "${1:-}" in
	destroy)
		if [ $# -ne 2 ]; then
			echo "usage: $0 destroy ID" >&2
			exit 2
		fi
		sb_check_id "$2" || exit 2
		sb_destroy "$2"
		;;
	list)
		sb_list
		;;
	*)
		echo "usage: $0 destroy ID | list" >&2
		echo "(source it to use the sb_* functions; see the comments at the top)" >&2
		exit 2
		;;
	esac
fi
