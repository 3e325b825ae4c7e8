#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# CIDR sources (docs/policy.md): a plaintext caller has no certificate, so a
# PERMISSIVE workload's node decides its SYN by the policy CIDR holding its
# address (bpf/ingress.bpf.c); a mesh caller from the same address is decided
# by its identity, at connect() on its own node and by its certificate at the
# destination, and CIDR rules never match it.
#
# Sandbox: node1 (10.11.0.1, fc42::1): workload "client" (mesh) and cgroup
# "stranger" (not a workload: its connections are never captured, so they
# reach node2 in plaintext); node2: workload "permsrv" (permissive) serving
# 10.11.0.2:8090 and [fc42::2]:8090 (catalog services: the client's
# connections to them go through the tunnel).

load helpers

PERMSRV_ID="$SM_TD/ns/test/sa/permsrv"

setup() {
	sm_sandbox 2
	sb_add_workload node1 client "$SM_CLIENT_ID" strict
	sb_add_cgroup node1 stranger
	sb_add_workload node2 permsrv "$PERMSRV_ID" permissive
	sb_add_service 10.11.0.2 8090 permsrv echo
	sb_add_service fc42::2 8090 permsrv echo6
	sb_write_catalog
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 permsrv 10.11.0.2:8090 echo
	sb_serve node2 permsrv '[fc42::2]:8090' echo
	POL=$SB_DIR/policy.yaml
}

teardown() {
	sm_teardown
}

# policy NODE RULES...: apply on NODE one policy selecting permsrv, one rule per
# argument (flow-style YAML maps).
policy() {
	local node=$1 rule
	shift
	{
		echo "policies:"
		echo "  - name: permsrv-in"
		echo "    selector: {spiffe: \"$PERMSRV_ID\"}"
		echo "    rules:"
		for rule in "$@"; do
			echo "      - $rule"
		done
	} >"$POL"
	sb_cli "$node" policy apply -f "$POL"
}

# explain NODE FROM TO PORT: "DECISION MATCH", checked to agree with the kernel's map.
explain() {
	local out
	out=$(sb_cli "$1" policy explain --from "$2" --to "$3" --port "$4" -o json) || [ $? -eq 3 ]
	jq -e '.agree == true' <<<"$out" >/dev/null || { echo "explain disagrees: $out" >&2; return 1; }
	jq -r '"\(.decision) \(.reason)"' <<<"$out"
}

# plain ADDR:PORT: a plaintext attempt from node1's stranger; bats' run gives $status.
plain() {
	sm_send node1 stranger "$1" 1000 --expect echo --timeout "${2:-3}"
}

denied_ingress() { # JQ: the denied records on node2 for plaintext callers
	sm_records node2 ".type == \"denied\" and .traffic_direction == \"INGRESS\" $1"
}

@test "CIDR DENY at the destination: the plaintext caller's SYN is dropped, one record; the mesh caller passes" {
	run policy node2 '{action: ALLOW, from: [any]}' '{action: DENY, from: ["10.11.0.0/24"]}'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(explain node2 10.11.0.1 10.11.0.2 8090)" = "DENY rule" ]
	# --timeout 5: the client retransmits its SYN (1 s, then 3 s) and each is dropped
	run plain 10.11.0.2:8090 5
	echo "$output"
	[ "$status" -ne 0 ]
	rec=$(sm_wait_record node2 '.type == "denied" and .traffic_direction == "INGRESS"')
	echo "$rec"
	jq -e '.verdict == "DROPPED" and .drop_reason == "policy_denied" and
		.source.ip == "10.11.0.1" and .destination.ip == "10.11.0.2" and
		.destination.port == 8090 and .destination.workload == "permsrv" and
		.policy.name == "permsrv-in" and .policy.rule == 1 and .policy.revision == 1 and
		.tls.mode == "PERMISSIVE" and .tls.encrypted == false' <<<"$rec"
	# the retransmitted SYNs were dropped too, without another record or count
	[ "$(denied_ingress "" | wc -l)" -eq 1 ]
	[ "$(sm_counter node2 policy_denied)" -eq 1 ]
	# the mesh client at the same address is known by its certificate: ALLOW any
	run sm_send node1 client 10.11.0.2:8090 2000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(explain node2 "$SM_CLIENT_ID" 10.11.0.2 8090)" = "ALLOW rule" ]
	# IPv6: 10.11.0.0/24 does not hold fc42::1, so ALLOW any
	run plain '[fc42::2]:8090'
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "CIDR ALLOW: plaintext callers outside it are default-denied, IPv6 /128 allowed, the mesh caller by ID" {
	run policy node2 "{action: ALLOW, from: [\"fc42::1/128\", \"$SM_CLIENT_ID\"]}"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(explain node2 fc42::1 fc42::2 8090)" = "ALLOW rule" ]
	[ "$(explain node2 10.11.0.1 10.11.0.2 8090)" = "DENY default-deny" ]
	run plain '[fc42::2]:8090'
	echo "$output"
	[ "$status" -eq 0 ]
	run plain 10.11.0.2:8090
	[ "$status" -ne 0 ]
	rec=$(sm_wait_record node2 '.type == "denied" and .traffic_direction == "INGRESS"')
	echo "$rec"
	jq -e '.drop_reason == "policy_default_deny" and .policy.match == "default-deny" and
		.source.ip == "10.11.0.1"' <<<"$rec"
	run sm_send node1 client 10.11.0.2:8090 2000 --expect echo
	[ "$status" -eq 0 ]
	run sm_send node1 client '[fc42::2]:8090' 2000 --expect echo
	[ "$status" -eq 0 ]
}

@test "CIDR AUDIT: the plaintext caller passes and gets one AUDIT record" {
	run policy node2 '{action: AUDIT, from: ["10.0.0.0/8"]}'
	[ "$status" -eq 0 ]
	run plain 10.11.0.2:8090
	echo "$output"
	[ "$status" -eq 0 ]
	rec=$(sm_wait_record node2 '.type == "denied" and .verdict == "AUDIT"')
	echo "$rec"
	jq -e '.traffic_direction == "INGRESS" and .source.ip == "10.11.0.1" and
		.policy.audit.name == "permsrv-in" and .policy.audit.rule == 0' <<<"$rec"
	[ "$(sm_counter node2 policy_audit)" -eq 1 ]
	[ "$(sm_counter node2 policy_denied)" -eq 0 ]
}

@test "at the source node a CIDR rule never matches a mesh caller, whatever its address" {
	# on node1: DENY node1's own subnet; the client's connect() is decided by its identity
	run policy node1 '{action: ALLOW, from: [any]}' '{action: DENY, from: ["10.11.0.0/24"]}'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(explain node1 "$SM_CLIENT_ID" 10.11.0.2 8090)" = "ALLOW rule" ]
	run sm_send node1 client 10.11.0.2:8090 2000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_counter node1 policy_denied)" -eq 0 ]
	# a CIDR-only ALLOW leaves the mesh caller default-denied, at connect() with EPERM
	run policy node1 '{action: ALLOW, from: ["10.11.0.0/24"]}'
	[ "$status" -eq 0 ]
	[ "$(explain node1 "$SM_CLIENT_ID" 10.11.0.2 8090)" = "DENY default-deny" ]
	run sm_send node1 client 10.11.0.2:8090 2000 --expect echo
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"ermitted"* ]]
}

@test "a revision that denies a live plaintext connection closes it on the destination node" {
	sb_run node1 stranger "$SMTRAFFIC" send --connect 10.11.0.2:8090 --bytes 400000 \
		--chunk 1000 --rate 20000 --expect echo --timeout 60
	live=$SB_RUN_PID
	live_out=$SB_RUN_OUT
	accepted() { [ "$(sm_counter node2 ingress_plaintext_allowed)" -ge 1 ]; }
	sm_wait_until 10 accepted
	# established on node2 (the iterator skips a socket not yet established):
	# the caller has had bytes echoed back
	sm_wait_until 15 sm_tcp_received node1 "( dport = :8090 )"
	run policy node2 '{action: DENY, from: ["10.11.0.1/32"]}'
	echo "$output"
	[ "$status" -eq 0 ]
	run sb_wait_pid "$live" 10
	[ "$status" -ne 0 ]
	cat "$live_out"
	[ "$(sm_counter node2 policy_closed)" -eq 1 ]
	rec=$(sm_wait_record node2 '.type == "conn_end" and .drop_reason == "policy_revoked"')
	echo "$rec"
	jq -e '.verdict == "DROPPED" and .traffic_direction == "INGRESS" and
		.source.ip == "10.11.0.1" and .policy.name == "permsrv-in" and .policy.rule == 0 and
		.policy.revision == 1' <<<"$rec"
}
