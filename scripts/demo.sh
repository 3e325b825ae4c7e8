#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `make demo`: two sandbox nodes on this machine, a client workload on node1,
# services on node1 and node2, one sockmeshd per node; drives cross-node and
# same-node traffic over IPv4 and IPv6, then shows the flow log and what
# `sockmesh status`, `workloads` and `services` say on node1. Removes
# everything it created on exit, also on Ctrl-C or an error. Needs root.
set -euo pipefail

# shellcheck source=sandbox.sh
source "$(dirname "${BASH_SOURCE[0]}")/sandbox.sh"

TD=spiffe://demo.sockmesh.test/ns/demo/sa
ID=demo$$
ID=${ID:0:12}

step() {
	printf '\n\033[1m==> %s\033[0m\n' "$*"
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	step "cleaning up sandbox $ID (namespaces, cgroups, pins, processes)"
	sb_destroy "$ID"
	exit "$rc"
}

# send NODE ADDR:PORT BYTES EXPECT [NAME]: one client connection, its JSON line shown.
send() {
	local node=$1 addr=$2 bytes=$3 expect=$4 name=${5:-}
	local args=(send --connect "$addr" --bytes "$bytes" --expect "$expect" --timeout 20)
	[ -n "$name" ] && args+=(--expect-name "$name")
	echo "client on $node -> $addr: $bytes bytes, expecting $expect${name:+ '$name'}"
	sb_exec "$node" client "$SMTRAFFIC" "${args[@]}" |
		jq -c '{ok, sent, received, greeting, local, error}' || echo "  (that connection failed; continuing)"
}

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (network namespaces, cgroups, BPF): sudo make demo" >&2
	exit 1
fi
for b in "$SOCKMESHD" "$SOCKMESH" "$SMTRAFFIC"; do
	if [ ! -x "$b" ]; then
		echo "demo: $b is missing: run make first" >&2
		exit 1
	fi
done

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "creating sandbox $ID: 2 nodes (netns smt-$ID-n1/n2 on a bridge, 10.11.0.0/24 and fc42::/64)"
sb_create "$ID" 2
sb_add_workload node1 client "$TD/client"
sb_add_workload node1 web "$TD/web"
sb_add_workload node2 api "$TD/api"
sb_add_service 10.11.0.1 8000 web web
sb_add_service fc42::1 8000 web web6
sb_add_service 10.11.0.2 8080 api api
sb_add_service fc42::2 8080 api api6
step "making a test PKI (scripts/test-pki.sh): SVIDs for both nodes and every workload"
sb_make_pki
sb_write_catalog
echo "catalog ($(sb_catalog)):"
sed 's/^/    /' "$(sb_catalog)"

step "starting sockmeshd on node1 and node2"
sb_start_daemon node1
sb_start_daemon node2
echo "both daemons ready"

step "starting services: web on node1 (10.11.0.1:8000, [fc42::1]:8000), api on node2 (10.11.0.2:8080, [fc42::2]:8080)"
sb_serve node1 web 10.11.0.1:8000 echo
sb_serve node1 web '[fc42::1]:8000' echo
sb_serve node2 api 10.11.0.2:8080 greet api
sb_serve node2 api '[fc42::2]:8080' greet api
echo "listening"

step "cross-node traffic: client (node1) -> api (node2), captured and carried in mTLS (HBONE)"
send node1 10.11.0.2:8080 1000000 greet api
send node1 '[fc42::2]:8080' 1000000 greet api

step "same-node traffic: client (node1) -> web (node1), not captured, accounted by sockops"
send node1 10.11.0.1:8000 500000 echo
send node1 '[fc42::1]:8000' 500000 echo

step "waiting for the flow records to reach the log"
deadline=$((SECONDS + 10))
while [ "$(grep -c '"conn_end"' "$(sb_flowlog node1)" 2>/dev/null || true)" -lt 4 ] &&
	((SECONDS < deadline)); do
	sleep 0.2
done

step "flow log of node1 ($(sb_flowlog node1))"
if [ -s "$(sb_flowlog node1)" ]; then
	jq -c '{type, traffic_direction, src: "\(.source.ip):\(.source.port) \(.source.workload // "-")",
		dst: "\(.destination.ip // "-"):\(.destination.port // "-") \(.destination.workload // "-")",
		captured, same_node, bytes_sent: .counters.bytes_sent,
		bytes_received: .counters.bytes_received, encrypted: .tls.encrypted}' "$(sb_flowlog node1)"
	step "one full record: the client's end of the tunnelled IPv4 connection (node1)"
	grep '"conn_end"' "$(sb_flowlog node1)" | jq -c 'select(.captured and .ip.family == "IPv4")' |
		head -n 1 | jq .
	step "the same connection as node2's api saw it: same trace_id, the verified caller as source"
	trace=$(grep '"conn_end"' "$(sb_flowlog node1)" |
		jq -r 'select(.captured and .ip.family == "IPv4") | .trace_id' | head -n 1)
	jq -c --arg t "$trace" 'select(.trace_id == $t and .type == "conn_end") |
		{node, traffic_direction, trace_id, source: .source.spiffe_id,
		 destination: .destination.spiffe_id, tls}' "$(sb_flowlog node2)"
else
	echo "(empty)"
fi

step "sockmesh status (node1)"
sb_cli node1 status
step "sockmesh workloads (node1)"
sb_cli node1 workloads
step "sockmesh services (node1)"
sb_cli node1 services

step "done"
