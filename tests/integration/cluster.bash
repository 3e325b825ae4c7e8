# SPDX-License-Identifier: Apache-2.0
#
# What the cluster-mode test files share (cluster.bats, cluster_faults.bats):
# four nodes following one etcd (Debian's etcd-server, mutual TLS with
# client-cert-auth, in the sandbox's hub namespace), the catalog written once
# through the CLI, every daemon started in cluster mode with a policy map of 16
# entries, and echo servers on node2 and node4.
#
# Layout: node1 client (sa/client), node2 server (sa/server, echo on
# 10.11.0.2:8080), node3 other (sa/other), node4 server4 (sa/server4, echo on
# 10.11.0.4:8080).

SM_OTHER_ID=$SM_TD/other
SM_SERVER4_ID=$SM_TD/server4

setup() {
	sm_sandbox 4
	sb_add_workload node1 client "$SM_CLIENT_ID"
	sb_add_workload node2 server "$SM_SERVER_ID"
	sb_add_workload node3 other "$SM_OTHER_ID"
	sb_add_workload node4 server4 "$SM_SERVER4_ID"
	sb_add_service 10.11.0.2 8080 server echo
	sb_add_service 10.11.0.4 8080 server4 echo4
	sb_write_catalog
	sb_etcd_start
	run sb_ccli catalog apply "$(sb_catalog)"
	echo "$output"
	[ "$status" -eq 0 ]
	for n in 1 2 3 4; do
		sb_cluster_config "node$n"
		# a small policy map, so that a set can be over a node's capacity
		printf 'datapath:\n  max_policy_entries: 16\n' >>"$(sb_config "node$n")"
	done
	start_all
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_serve node4 server4 10.11.0.4:8080 echo
	POL=$SB_DIR/policy.yaml
}

teardown() {
	sm_teardown
}

start_all() {
	local n
	for n in 1 2 3 4; do
		sb_start_daemon "node$n" || return 1
	done
}

# write_policy: the server and server4 take connections from the client only.
write_policy() {
	cat >"$POL" <<EOF
policies:
  - name: server-from-client
    selector: {spiffe: "$SM_SERVER_ID"}
    rules: [{action: ALLOW, from: ["$SM_CLIENT_ID"]}]
  - name: server4-from-client
    selector: {spiffe: "$SM_SERVER4_ID"}
    rules: [{action: ALLOW, from: ["$SM_CLIENT_ID"]}]
EOF
}

# write_open_policy: server also takes connections from other.
write_open_policy() {
	cat >"$POL" <<EOF
policies:
  - name: server-from-client
    selector: {spiffe: "$SM_SERVER_ID"}
    rules: [{action: ALLOW, from: ["$SM_CLIENT_ID", "$SM_OTHER_ID"]}]
EOF
}

# apply_wait [MORE FLAGS]: apply $POL to the cluster and wait for every node; prints its JSON.
apply_wait() {
	sb_ccli policy apply --cluster -f "$POL" --wait --max-wait 30 -o json "$@"
}

# allowed NODE CGROUP ADDR / denied NODE CGROUP ADDR: a real connection, echoed or refused.
allowed() {
	run sm_send "$1" "$2" "$3" 1000 --expect echo
	echo "$1/$2 -> $3: $output"
	[ "$status" -eq 0 ]
}
denied() {
	run sm_send "$1" "$2" "$3" 1000 --expect echo
	echo "$1/$2 -> $3: $output"
	[ "$status" -ne 0 ]
}

# enforced: the write_policy set, on real connections from nodes 1 and 3 to nodes 2 and 4.
enforced() {
	allowed node1 client 10.11.0.2:8080
	allowed node1 client 10.11.0.4:8080
	denied node3 other 10.11.0.2:8080
	denied node3 other 10.11.0.4:8080
}

# cluster_rev NODE: the store revision NODE reports in force.
cluster_rev() {
	sm_status "$1" | jq -er .cluster.revision
}

# has_policy NODE NAME: NODE's daemon holds policy NAME.
has_policy() {
	sb_cli "$1" policy get -o json | jq -e --arg n "$2" '[.policies[].name] | index($n) != null' \
		>/dev/null
}


# refused_everywhere KEY: every node reports KEY refused (bounded wait).
refused_everywhere() {
	local n
	for n in 1 2 3 4; do
		sm_wait_until 15 eval "sm_status node$n | jq -e --arg k '$1' '.cluster.refused.key == \$k' >/dev/null" ||
			{ sm_status "node$n" | jq .cluster; return 1; }
	done
}

# refused_nowhere: no node reports a refusal (bounded wait).
refused_nowhere() {
	local n
	for n in 1 2 3 4; do
		sm_wait_until 15 eval "sm_status node$n | jq -e '.cluster.refused == null' >/dev/null" || return 1
	done
}
