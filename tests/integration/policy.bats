#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Connection policy (docs/policy.md): enforced at connect() on the source node
# (EPERM and a "denied" record), at the destination node's tunnel by
# certificate identity (403), applied atomically, kept across restarts, and
# explained by the same lookup the kernel makes.

load helpers

setup() {
	sm_standard_sandbox
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node2 server 10.11.0.2:8081 echo
	POL=$SB_DIR/policy.yaml
}

teardown() {
	sm_teardown
}

# write_policy NAME SELECTOR ACTION FROM [PORTS]: one policy with one rule, to $POL.
write_policy() {
	{
		echo "policies:"
		echo "  - name: $1"
		echo "    selector:"
		echo "      spiffe: $2"
		echo "    rules:"
		echo "      - action: $3"
		echo "        from: [\"$4\"]"
		[ -z "${5:-}" ] || echo "        ports: [$5]"
	} >"$POL"
}

apply() { # NODE: apply $POL there
	sb_cli "$1" policy apply -f "$POL"
}

revision() {
	sm_status "$1" | jq -er .policy.revision
}

# explain NODE FROM TO PORT: the decision word, checked to agree with the kernel's map.
explain() {
	local out
	out=$(sb_cli "$1" policy explain --from "$2" --to "$3" --port "$4" -o json) || [ $? -eq 3 ]
	jq -e '.agree == true' <<<"$out" >/dev/null || { echo "explain disagrees: $out" >&2; return 1; }
	jq -r .decision <<<"$out"
}

@test "no policy: connections pass; status shows revision 0 and explain says no-policy" {
	[ "$(revision node1)" -eq 0 ]
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]
	[ "$(explain node1 "$SM_CLIENT_ID" "$SM_SERVER_ID" 8080)" = ALLOW ]
}

@test "ALLOW selects the server: the allowed caller passes, another is default-denied at connect" {
	write_policy server-from-client "$SM_SERVER_ID" ALLOW "$SM_CLIENT_ID"
	run apply node1
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"revision 1 applied"* ]]
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]
	run sm_send node1 local 10.11.0.2:8080 1000 --expect echo
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"ermitted"* ]] # EPERM from connect(), at once
	rec=$(sm_wait_record node1 '.type == "denied" and .verdict == "DROPPED"')
	echo "$rec"
	jq -e --arg l "$SM_LOCAL_ID" --arg s "$SM_SERVER_ID" '.drop_reason == "policy_default_deny" and
		.source.spiffe_id == $l and .destination.spiffe_id == $s and
		.destination.port == 8080 and .policy.revision == 1 and
		.policy.match == "default-deny"' <<<"$rec"
	[ "$(sm_counter node1 policy_denied)" -eq 1 ]
	[ "$(explain node1 "$SM_CLIENT_ID" "$SM_SERVER_ID" 8080)" = ALLOW ]
	[ "$(explain node1 "$SM_LOCAL_ID" "$SM_SERVER_ID" 8080)" = DENY ]
}

@test "DENY beats ALLOW; the record names the policy and the rule" {
	cat >"$POL" <<-EOF2
	policies:
	  - name: server-open
	    selector: {spiffe: "$SM_SERVER_ID"}
	    rules:
	      - action: ALLOW
	        from: [any]
	      - action: DENY
	        from: ["$SM_CLIENT_ID"]
	        ports: [8081]
	EOF2
	apply node1
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]
	run sm_send node1 client 10.11.0.2:8081 1000 --expect echo
	[ "$status" -ne 0 ]
	rec=$(sm_wait_record node1 '.type == "denied" and .destination.port == 8081')
	echo "$rec"
	jq -e '.drop_reason == "policy_denied" and .policy.name == "server-open" and .policy.rule == 1' <<<"$rec"
	[ "$(explain node1 "$SM_CLIENT_ID" "$SM_SERVER_ID" 8081)" = DENY ]
	[ "$(explain node1 "$SM_CLIENT_ID" "$SM_SERVER_ID" 8080)" = ALLOW ]
	[ "$(explain node1 "$SM_LOCAL_ID" "$SM_SERVER_ID" 8081)" = ALLOW ]
}

@test "AUDIT never changes the verdict and writes an AUDIT record" {
	write_policy watch-server "$SM_SERVER_ID" AUDIT "$SM_CLIENT_ID"
	apply node1
	run sm_send node1 client 10.11.0.2:8080 2000 --expect echo
	[ "$status" -eq 0 ]
	rec=$(sm_wait_record node1 '.type == "denied" and .verdict == "AUDIT"')
	echo "$rec"
	jq -e '.policy.audit.name == "watch-server" and .policy.audit.rule == 0' <<<"$rec"
	[ "$(sm_counter node1 policy_audit)" -ge 1 ]
	[ "$(sm_counter node1 policy_denied)" -eq 0 ]
	[ "$(explain node1 "$SM_CLIENT_ID" "$SM_SERVER_ID" 8080)" = ALLOW ]
}

@test "the destination node enforces by certificate: 403, DROPPED records on both nodes" {
	# only node2 has the policy: node1 lets the connection out, node2 refuses the stream
	write_policy server-from-local "$SM_SERVER_ID" ALLOW "$SM_LOCAL_ID"
	apply node2
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -ne 0 ]
	port=$(sm_port_of "$(sm_field "$output" local)")
	in=$(sm_wait_record node2 '.type == "denied" and .drop_reason == "policy_default_deny"')
	echo "node2: $in"
	jq -e --arg c "$SM_CLIENT_ID" '.verdict == "DROPPED" and .tls.peer_spiffe_id == $c and
		.policy.revision == 1' <<<"$in"
	out=$(sm_wait_record node1 ".type == \"conn_end\" and .source.port == $port")
	echo "node1: $out"
	jq -e '.verdict == "DROPPED" and .drop_reason == "policy_denied_remote"' <<<"$out"
	[ "$(explain node2 "$SM_CLIENT_ID" "$SM_SERVER_ID" 8080)" = DENY ]
}

@test "AUDIT at the destination: the stream passes and node2 writes the AUDIT record" {
	write_policy watch-server "$SM_SERVER_ID" AUDIT "$SM_CLIENT_ID"
	apply node2
	run sm_send node1 client 10.11.0.2:8080 2000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	rec=$(sm_wait_record node2 '.type == "denied" and .verdict == "AUDIT"')
	echo "$rec"
	jq -e --arg c "$SM_CLIENT_ID" '.traffic_direction == "INGRESS" and (has("drop_reason") | not) and
		.tls.peer_spiffe_id == $c and .policy.audit.name == "watch-server" and
		.policy.audit.rule == 0 and .policy.revision == 1' <<<"$rec"
	[ "$(sm_records node2 '.type == "denied"' | wc -l)" -eq 1 ]
	! sm_has_record node1 '.type == "denied"'
}

@test "validate, diff and --dry-run change nothing; bad files are refused with file and line" {
	write_policy server-from-client "$SM_SERVER_ID" ALLOW "$SM_CLIENT_ID"
	run sb_cli node1 policy validate -f "$POL"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"valid: 1 policies"* ]]
	run sb_cli node1 policy apply -f "$POL" --dry-run
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"dry run"* && "$output" == *"+ "* ]]
	run sb_cli node1 policy diff -f "$POL"
	[ "$status" -eq 0 ]
	[ "$(revision node1)" -eq 0 ]
	run sm_send node1 local 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]

	printf 'policies:\n  - name: Bad_Name\n    selector: {spiffe: "%s"}\n    rules: []\n' \
		"$SM_SERVER_ID" >"$POL"
	run sb_cli node1 policy apply -f "$POL"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$POL:2:"* ]]
	printf 'policies:\n  - name: p\n    selector: {spiffe: "%s", ports: [70000]}\n    rules:\n      - {action: ALLOW, from: [any]}\n' \
		"$SM_SERVER_ID" >"$POL"
	run sb_cli node1 policy validate -f "$POL"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$POL:3:"* ]]
	[ "$(revision node1)" -eq 0 ]
}

@test "get, delete (and --all only with --yes), and an over-capacity policy refused whole" {
	write_policy server-from-client "$SM_SERVER_ID" ALLOW "$SM_CLIENT_ID"
	apply node1
	run sb_cli node1 policy get server-from-client -o json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.policies[0].name == "server-from-client"' <<<"$output"
	run sb_cli node1 policy delete --all
	[ "$status" -eq 2 ]
	run sb_cli node1 policy delete server-from-client
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(revision node1)" -eq 2 ]
	run sm_send node1 local 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]

	sb_stop_daemon node1
	sb_start_daemon node1 --set datapath.max_policy_entries=1
	cat >"$POL" <<-EOF2
	policies:
	  - name: two-ports
	    selector: {spiffe: "$SM_SERVER_ID"}
	    rules:
	      - {action: ALLOW, from: ["$SM_CLIENT_ID"], ports: [8080, 8081]}
	EOF2
	run apply node1
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"needs"*"entries"* ]]
	[ "$(revision node1)" -eq 2 ]
}

@test "a restart restores the policy before traffic flows" {
	write_policy server-from-client "$SM_SERVER_ID" ALLOW "$SM_CLIENT_ID"
	apply node1
	sb_stop_daemon node1
	# the pinned programs and maps keep enforcing while the daemon is away
	run sm_send node1 local 10.11.0.2:8080 1000 --expect echo --timeout 5
	[ "$status" -ne 0 ]
	sb_start_daemon node1
	[ "$(revision node1)" -eq 1 ]
	run sm_send node1 local 10.11.0.2:8080 1000 --expect echo
	[ "$status" -ne 0 ]
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -eq 0 ]
	grep -q "policy revision 1 restored" "$(sb_daemon_log node1)"
}

@test "applying revisions while 50 allowed connections stream: none of them fails" {
	write_policy server-from-client "$SM_SERVER_ID" ALLOW "$SM_CLIENT_ID"
	apply node1
	pids=()
	outs=()
	for i in $(seq 50); do
		sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 40000 \
			--chunk 1000 --rate 20000 --expect echo --timeout 60
		pids+=("$SB_RUN_PID")
		outs+=("$SB_RUN_OUT")
	done
	for r in 1 2 3 4 5; do
		cat >"$POL" <<-EOF2
		policies:
		  - name: extra-$r
		    selector: {spiffe: "$SM_LOCAL_ID"}
		    rules:
		      - {action: ALLOW, from: ["$SM_CLIENT_ID"], ports: [$((9000 + r))]}
		EOF2
		apply node1
		sleep 0.2
	done
	[ "$(revision node1)" -eq 6 ]
	failed=0
	for i in "${!pids[@]}"; do
		sb_wait_pid "${pids[$i]}" 60 || { failed=$((failed + 1)); cat "${outs[$i]}"; }
	done
	echo "failed: $failed"
	[ "$failed" -eq 0 ]
	run sb_cli node1 policy wait 6 --max-wait 2
	[ "$status" -eq 0 ]
}

@test "a revision that denies a live connection closes it, with a policy_revoked record" {
	write_policy server-from-client "$SM_SERVER_ID" ALLOW "$SM_CLIENT_ID"
	apply node1
	# a cross-node (tunnelled) and a same-node connection, both streaming for a while
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 400000 \
		--chunk 1000 --rate 20000 --expect echo --timeout 60
	cross=$SB_RUN_PID
	cross_out=$SB_RUN_OUT
	sb_serve node1 local 10.11.0.1:9090 echo
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.1:9090 --bytes 400000 \
		--chunk 1000 --rate 20000 --expect echo --timeout 60
	same=$SB_RUN_PID
	streaming() { [ "$(sm_status node1 | jq .tunnel.streams_open)" -ge 1 ]; }
	sm_wait_until 10 streaming
	# both established on node1 (the iterator skips a socket not yet established)
	# and carrying data: each client has had bytes echoed back
	port=$(sm_egress_start node1 8080)
	sm_wait_until 15 sm_tcp_received node1 "( sport = :$port )"
	port=$(sm_egress_start node1 9090)
	sm_wait_until 15 sm_tcp_received node1 "( sport = :$port )"
	cat >"$POL" <<-EOF2
	policies:
	  - name: lockdown
	    selector: {spiffe: "$SM_TD/*"}
	    rules:
	      - {action: DENY, from: ["$SM_CLIENT_ID"]}
	EOF2
	run apply node1
	echo "$output"
	[ "$status" -eq 0 ]
	# both end at once, long before their 20 s of streaming
	run sb_wait_pid "$cross" 10
	[ "$status" -ne 0 ]
	run sb_wait_pid "$same" 10
	[ "$status" -ne 0 ]
	cat "$cross_out"
	[ "$(sm_counter node1 policy_closed)" -ge 2 ]
	rec=$(sm_wait_record node1 '.type == "conn_end" and .drop_reason == "policy_revoked" and .destination.port == 8080')
	echo "$rec"
	jq -e '.verdict == "DROPPED" and .policy.name == "lockdown" and .policy.revision == 2' <<<"$rec"
	sm_wait_record node1 '.type == "conn_end" and .drop_reason == "policy_revoked" and .destination.port == 9090'
	# and new ones are refused at connect
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -ne 0 ]
}

@test "a revision applied only on the destination resets the live streams it denies there" {
	# no policy anywhere: two long tunnelled connections to the server, from client and local
	sb_run node1 client "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 240000 \
		--chunk 1000 --rate 20000 --expect echo --timeout 60
	denied=$SB_RUN_PID
	denied_out=$SB_RUN_OUT
	denied_err=$SB_RUN_ERR
	sb_run node1 local "$SMTRAFFIC" send --connect 10.11.0.2:8080 --bytes 240000 \
		--chunk 1000 --rate 20000 --expect echo --timeout 60
	allowed=$SB_RUN_PID
	allowed_out=$SB_RUN_OUT
	both_open() { [ "$(sm_status node2 | jq .tunnel.streams_open)" -ge 2 ]; }
	sm_wait_until 10 both_open
	# both streams established on node2 (only those are reset; one still
	# connecting to the service is answered 403): each client has had bytes
	# echoed back through node2
	ports=$(sm_egress_start node1 8080 2)
	for port in $ports; do
		sm_wait_until 15 sm_tcp_received node1 "( sport = :$port )"
	done
	[ "$(sm_status node2 | jq -e .tunnel.policy_streams_closed)" -eq 0 ]
	# only node2 learns it: node1 still lets the client connect, node2 must close it
	write_policy server-from-local "$SM_SERVER_ID" ALLOW "$SM_LOCAL_ID"
	run sb_cli node2 policy apply -f "$POL" -o json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.revision == 1 and .streams_closed == 1' <<<"$output"
	# the client's connection ends at once, long before its 12 s of streaming
	rc=0
	sb_wait_pid "$denied" 5 || rc=$?
	cat "$denied_out" "$denied_err"
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]
	[ "$(sm_status node2 | jq -e .tunnel.policy_streams_closed)" -eq 1 ]
	rec=$(sm_wait_record node2 '.type == "conn_end" and .drop_reason == "policy_revoked"')
	echo "node2: $rec"
	jq -e --arg c "$SM_CLIENT_ID" '.verdict == "DROPPED" and .traffic_direction == "INGRESS" and
		.tls.peer_spiffe_id == $c and .destination.port == 8080 and
		.policy.revision == 1 and .policy.match == "default-deny"' <<<"$rec"
	grep -q "policy revision 1: 0 established connections and 1 inbound tunnel streams" \
		"$(sb_daemon_log node2)"
	# the allowed stream lives on across the apply and finishes its transfer
	sb_alive "$allowed"
	rc=0
	sb_wait_pid "$allowed" 30 || rc=$?
	cat "$allowed_out"
	[ "$rc" -eq 0 ]
	# a new connection from the client is refused by node2 (403)
	run sm_send node1 client 10.11.0.2:8080 1000 --expect echo
	[ "$status" -ne 0 ]
	sm_wait_record node2 '.type == "denied" and .drop_reason == "policy_default_deny" and
		.policy.revision == 1'
	[ "$(sm_status node2 | jq -e .tunnel.policy_streams_closed)" -eq 1 ]
}
