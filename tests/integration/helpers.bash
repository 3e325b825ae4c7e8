# SPDX-License-Identifier: Apache-2.0
#
# Shared helpers for the integration tests: sandbox setup and teardown, bounded
# polling, counters from `sockmesh status`, flow-log queries. Loaded by every
# .bats file with `load helpers`; the sandbox itself is scripts/sandbox.sh.
#
# The standard sandbox (sm_standard_sandbox): two nodes;
#   node1: workloads "client" (sa/client) and "local" (sa/local), cgroup "stranger"
#          (not a workload); services 10.11.0.1:9090 and [fc42::1]:9090 → local
#   node2: workload "server" (sa/server); services 10.11.0.2:8080 and [fc42::2]:8080
#          (echo), :8081 and :8082 (greet), :8083 (sink), :8099 (nothing listens)

SM_REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
# shellcheck source=../../scripts/sandbox.sh
source "$SM_REPO/scripts/sandbox.sh"

# The test PKI is made once per run (scripts/sandbox.sh, sb_make_pki): per
# tests/run-tests.sh run when it set the cache, else per bats run (bats removes
# its BATS_RUN_TMPDIR at the end).
if [ -z "${SB_PKI_CACHE:-}" ] && [ -n "${BATS_RUN_TMPDIR:-}" ]; then
	export SB_PKI_CACHE=$BATS_RUN_TMPDIR/sockmesh-pki
fi

SM_TD=spiffe://sockmesh.test/ns/it/sa
SM_CLIENT_ID=$SM_TD/client
SM_LOCAL_ID=$SM_TD/local
SM_SERVER_ID=$SM_TD/server

# Skip (not fail) what cannot run here; fail what is merely not built.
sm_require() {
	if [ "$(id -u)" -ne 0 ]; then
		skip "needs root (network namespaces, cgroups, BPF)"
	fi
	if [ -z "$(sb_cgroup2_root)" ]; then
		skip "no cgroup v2 mount (sockmesh needs the unified hierarchy)"
	fi
	sm_require_kernel || return 1
	local b
	for b in "$SOCKMESHD" "$SOCKMESH" "$SMTRAFFIC"; do
		if [ ! -x "$b" ]; then
			echo "missing $b: build it first (make, or make OUTPUT=dir with SM_OUTPUT=dir)" >&2
			return 1
		fi
	done
}

# The kernel features every sockmesh daemon loads; a test skips, naming what
# is missing, rather than failing on a kernel that cannot run it. The probe is
# done once per bats run.
SM_KERNEL_FEATURES=(
	"program_type cgroup_sock_addr" "program_type sock_ops" "program_type sk_msg"
	"program_type cgroup_sockopt" "map_type sockhash"
	"map_type sk_storage" "map_type ringbuf"
)
sm_require_kernel() {
	local cache=${BATS_RUN_TMPDIR:-/tmp}/sockmesh-kernel-features f missing=()
	if [ ! -r /sys/kernel/btf/vmlinux ]; then
		skip "the kernel has no BTF (/sys/kernel/btf/vmlinux; needs CONFIG_DEBUG_INFO_BTF=y)"
	fi
	if [ ! -s "$cache" ]; then
		bpftool feature probe kernel 2>/dev/null >"$cache.tmp" && mv "$cache.tmp" "$cache"
	fi
	if [ ! -s "$cache" ]; then
		echo "bpftool feature probe kernel failed (is bpftool installed?)" >&2
		return 1
	fi
	for f in "${SM_KERNEL_FEATURES[@]}"; do
		grep -q "eBPF $f is available" "$cache" || missing+=("$f")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		skip "kernel lacks: ${missing[*]}"
	fi
}

# Skip tests that drive sockmeshd with Node.js's http2 module when there is no Node.js.
sm_require_node() {
	command -v node >/dev/null || skip "node (Node.js) not installed: scripts/install-deps.sh"
}

# sm_sandbox NNODES: a fresh sandbox with a unique id.
sm_sandbox() {
	sm_require || return 1
	local id
	id=$(printf 'i%x%x' "$$" "$RANDOM" | cut -c1-12)
	sb_create "$id" "$1"
}

# The two-node layout described at the top; daemons are not started.
sm_standard_sandbox() {
	sm_sandbox 2 || return 1
	sb_add_workload node1 client "$SM_CLIENT_ID" || return 1
	sb_add_workload node1 local "$SM_LOCAL_ID" || return 1
	sb_add_workload node2 server "$SM_SERVER_ID" || return 1
	sb_add_cgroup node1 stranger || return 1
	sb_add_service 10.11.0.1 9090 local local-echo
	sb_add_service fc42::1 9090 local local-echo6
	sb_add_service 10.11.0.2 8080 server echo
	sb_add_service fc42::2 8080 server echo6
	sb_add_service 10.11.0.2 8081 server greet-a
	sb_add_service 10.11.0.2 8082 server greet-b
	sb_add_service 10.11.0.2 8083 server sink
	sb_add_service 10.11.0.2 8099 server refused
	sb_write_catalog
}

# Teardown: on failure show what the daemons said, then remove everything. A
# sanitizer report in a daemon's log (an ASan/UBSan build, as make test uses)
# fails the test even when everything else passed; daemons are stopped first,
# so leak reports written at exit are seen too. So does a flow record that
# does not validate against docs/flow-schema.json: every test's flow logs are
# checked, so every record the suite makes is.
sm_teardown() {
	local f bad=0 node logs=()
	if [ -n "${SB_ID:-}" ]; then
		for node in "${!SB_DAEMON_PID[@]}"; do
			sb_stop_daemon "$node" TERM 10 >/dev/null 2>&1
		done
		for f in "$SB_DIR"/node*/flows.jsonl; do
			[ -s "$f" ] && logs+=("$f")
		done
		if [ ${#logs[@]} -gt 0 ] && ! sm_validate_flows "${logs[@]}" >"$SB_DIR/schema.out" 2>&1; then
			bad=1
			echo "--- flow records that do not match docs/flow-schema.json"
			head -n 40 "$SB_DIR/schema.out"
		fi
		for f in "$SB_DIR"/node*/sockmeshd.log; do
			[ -s "$f" ] || continue
			if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f"; then
				bad=1
				echo "--- sanitizer report in $f"
				grep -A30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f" | head -n 60
			elif [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
				echo "--- last lines of $f"
				tail -n 25 "$f"
			fi
		done
	fi
	sb_destroy
	return "$bad"
}

# sm_validate_flows FILE... [--types=T,...]: validate flow-log lines against
# docs/flow-schema.json with the jsonschema library (tests/tools/validate-flows.py).
sm_validate_flows() {
	local py
	for py in /usr/bin/python3 python3; do
		"$py" -c 'import jsonschema' 2>/dev/null && break
		py=
	done
	[ -n "$py" ] || { echo "python3-jsonschema is missing: run scripts/install-deps.sh" >&2; return 1; }
	"$py" "$SM_REPO/tests/tools/validate-flows.py" "$SM_REPO/docs/flow-schema.json" "$@"
}

# sm_wait_until TIMEOUT_S CMD...: poll CMD every 0.1 s until it succeeds.
sm_wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	while ! "$@"; do
		if ((SECONDS >= deadline)); then
			echo "gave up after waiting for: $*" >&2
			return 1
		fi
		sleep 0.1
	done
}

sm_status() {
	sb_cli "$1" status -o json
}

# sm_counter NODE NAME: a kernel counter from `sockmesh status -o json`.
sm_counter() {
	sm_status "$1" | jq -er --arg n "$2" '.counters[$n]'
}

# smtraffic's JSON line: one field.
sm_field() {
	jq -r ".$2" <<<"$1"
}

# The port of "ip:port" or "[ip]:port".
sm_port_of() {
	echo "${1##*:}"
}

# sm_send NODE CGROUP ADDR:PORT BYTES [smtraffic send flags...]: run a client in
# the foreground; bats' run sets $status and $output (the JSON line).
sm_send() {
	local node=$1 cg=$2 addr=$3 bytes=$4
	shift 4
	sb_exec "$node" "$cg" "$SMTRAFFIC" send --connect "$addr" --bytes "$bytes" --timeout 30 "$@"
}

# sm_records NODE JQ_FILTER: flow records of NODE's log that match, compact.
sm_records() {
	[ -f "$(sb_flowlog "$1")" ] || return 0
	jq -c "select($2)" "$(sb_flowlog "$1")"
}

# sm_has_record NODE JQ_FILTER: true when at least one record matches.
sm_has_record() {
	[ -n "$(sm_records "$1" "$2")" ]
}

# sm_wait_record NODE JQ_FILTER [TIMEOUT_S]: wait for a matching record, print the first.
sm_wait_record() {
	sm_wait_until "${3:-15}" sm_has_record "$1" "$2" || return 1
	sm_records "$1" "$2" | head -n 1
}

# Filter for records of the client socket whose local port is $1.
sm_egress_port() {
	echo ".traffic_direction == \"EGRESS\" and .source.port == $1"
}

# sm_tcp_field NODE FIELD SS_FILTER...: the tcp_info counter FIELD, as `ss -i`
# names it (bytes_received, bytes_acked, ...), of the first established TCP
# socket in NODE's netns that SS_FILTER matches, e.g. "( sport = :40123 )".
# Fails when no socket matches or the counter is absent (ss leaves out zeros).
sm_tcp_field() {
	local node=$1 field=$2 v
	shift 2
	v=$(nsenter --net="/run/netns/$(sb_ns "$node")" ss -tinH state established "$@" |
		grep -oE "(^|[[:space:]])$field:[0-9]+" | head -n 1)
	[ -n "$v" ] || return 1
	echo "${v#*:}"
}

# sm_tcp_in_state NODE STATE SS_FILTER...: a TCP socket in NODE's netns that
# SS_FILTER matches is in STATE (as ss names it: established, fin-wait-2, ...).
sm_tcp_in_state() {
	local node=$1 state=$2
	shift 2
	[ -n "$(nsenter --net="/run/netns/$(sb_ns "$node")" ss -tnH state "$state" "$@")" ]
}

# sm_tcp_received NODE SS_FILTER...: that socket has received bytes (for a
# client of an echo server: what it sent went all the way and came back).
sm_tcp_received() {
	local n
	n=$(sm_tcp_field "$1" bytes_received "${@:2}") && [ "$n" -gt 0 ]
}

# sm_egress_start NODE DPORT [N]: wait (bounded) for N (default 1) conn_start
# records of enrolled callers on NODE to port DPORT; print their source ports.
sm_egress_start() {
	local flt=".type == \"conn_start\" and .traffic_direction == \"EGRESS\" and
		.destination.port == $2"
	enough() { [ "$(sm_records "$1" "$2" | wc -l)" -ge "$3" ]; }
	sm_wait_until 15 enough "$1" "$flt" "${3:-1}" || return 1
	sm_records "$1" "$flt" | jq -r .source.port
}

# sm_assert_start_before_end NODE COOKIE: exactly one conn_start and one
# conn_end for the socket, in that order.
sm_assert_start_before_end() {
	local types
	types=$(jq -r --argjson c "$2" 'select(.socket_cookie == $c and
		(.type == "conn_start" or .type == "conn_end")) | .type' "$(sb_flowlog "$1")" | tr '\n' ' ')
	if [ "$types" != "conn_start conn_end " ]; then
		echo "socket $2 on $1: records '$types', want 'conn_start conn_end'" >&2
		return 1
	fi
}

# sm_cgroup_tree_empty: nothing attached to any cgroup of the sandbox.
sm_cgroup_tree_empty() {
	local out
	out=$(bpftool cgroup tree "$SB_CG" 2>&1 | grep -v -e '^CgroupPath' -e '^ID ' -e '^$' || true)
	if [ -n "$out" ]; then
		echo "programs attached under $SB_CG:" >&2
		echo "$out" >&2
		return 1
	fi
}

# A directory that is absent or empty.
sm_dir_empty() {
	[ ! -d "$1" ] || [ -z "$(ls -A "$1")" ]
}

# sm_loopback_etcd_start NAME: an etcd for a whole bats file (setup_file), on
# 127.0.0.1 with two free ports and its own PKI (scripts/test-etcd.sh), in a temp
# dir; exports ETCD_DIR, CPORT and PPORT. sm_loopback_etcd_stop removes it.
sm_loopback_etcd_start() {
	export ETCD_DIR CPORT PPORT
	ETCD_DIR=$(mktemp -d "/tmp/sockmesh-$1.XXXXXX") || return 1
	read -r CPORT PPORT < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
	"$SM_REPO/scripts/test-etcd.sh" start "$ETCD_DIR" 127.0.0.1 \
		--client-port "$CPORT" --peer-port "$PPORT"
}

sm_loopback_etcd_stop() {
	"$SM_REPO/scripts/test-etcd.sh" stop "$ETCD_DIR" || true
	rm -rf "$ETCD_DIR"
}

# sm_doc_block FIRST_LINE: the fenced block of docs/operations.md that begins with FIRST_LINE.
sm_doc_block() {
	awk -v first="$1" '
		/^```/ { if (inb) exit; fence = 1; next }
		fence && $0 == first { inb = 1 }
		{ fence = 0 }
		inb { print }' "$SM_REPO/docs/operations.md"
}

# sm_tcp_from_flowlog NODE: the sockmesh_tcp_* sums by label set ("a|b|c|d|e|f" →
# counts), computed from the node's flow log by docs/metrics.md's rules: connection
# records of workload sockets; reporter from traffic_direction; sent = destination →
# source, received = source → destination; conn_start opens, conn_end closes; every
# record of a connection (socket_cookie) counts in the label set of its first record.
sm_tcp_from_flowlog() {
	jq -sS 'def key: (.traffic_direction == "INGRESS") as $in
			| [(if $in then "destination" else "source" end),
			   (.source.workload // "unknown"), (.source.spiffe_id // "unknown"),
			   (.destination.workload // "unknown"), (.destination.spiffe_id // "unknown"),
			   (if .tls.encrypted == true then "mutual_tls" else "none" end)] | join("|");
		reduce (.[] | select((.type == "conn_start" or .type == "conn_update" or .type == "conn_end")
			and .socket_cookie != 0)) as $r ({conns: {}, out: []};
			($r.socket_cookie | tostring) as $c
			| (if $r.type == "conn_start" then ($r | key) else (.conns[$c] // ($r | key)) end) as $k
			| .conns[$c] = $k
			| if $r.type == "conn_end" then .conns |= del(.[$c]) else . end
			| (($r.traffic_direction == "INGRESS") as $in
			   | .out += [{key: $k,
				sent_bytes: (if $in then $r.delta.bytes_sent else $r.delta.bytes_received end),
				received_bytes: (if $in then $r.delta.bytes_received else $r.delta.bytes_sent end),
				connections_opened: (if $r.type == "conn_start" then 1 else 0 end),
				connections_closed: (if $r.type == "conn_end" then 1 else 0 end)}]))
		| .out
		| group_by(.key) | map({key: .[0].key, value: {
			sent_bytes: (map(.sent_bytes) | add), received_bytes: (map(.received_bytes) | add),
			connections_opened: (map(.connections_opened) | add),
			connections_closed: (map(.connections_closed) | add)}})
		| from_entries' "$(sb_flowlog "$1")"
}

# sm_status_flows KEY: a flows counter of node1's status.
sm_status_flows() {
	sm_status node1 | jq -er --arg k "$1" '.flows[$k]'
}

# sm_flowlog_lines: every line of the flow-log file $LOG and its backups (LOG.N and
# LOG.N.gz), oldest first.
sm_flowlog_lines() {
	local f
	for f in $(ls "$LOG".* 2>/dev/null | grep -E '\.[0-9]+(\.gz)?$' | sort -t. -k3,3n); do
		zcat -f "$f"
	done
	cat "$LOG"
}

# sm_realaddr_routing NODE: the routing of real addresses in NODE's namespace, one per
# line: the rules (IPv4, IPv6), the local routes of table 15006, then the three sysctls.
sm_realaddr_routing() {
	local ns
	ns=/run/netns/$(sb_ns "$1")
	nsenter --net="$ns" ip -4 rule show pref 32700
	nsenter --net="$ns" ip -6 rule show pref 32700
	nsenter --net="$ns" ip -4 route show table 15006
	nsenter --net="$ns" ip -6 route show table 15006
	nsenter --net="$ns" cat /proc/sys/net/ipv4/tcp_fwmark_accept \
		/proc/sys/net/ipv4/fwmark_reflect /proc/sys/net/ipv6/fwmark_reflect
}
