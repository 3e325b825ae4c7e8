#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Cluster mode's failures (docs/cluster.md, "When things fail"): keys another
# client wrote that do not validate are refused by every node, which keeps the
# last good state and names the key; a dead node's registration expires; a
# first start with etcd away and nothing saved exits and says why. The sandbox:
# tests/integration/cluster.bash.

load helpers
load cluster

@test "a policy key written with etcdctl that does not validate is refused on every node, the old set kept and the key reported" {
	write_policy
	run apply_wait
	[ "$status" -eq 0 ]
	sb_etcdctl put /sockmesh/config/policies/broken '{"name": "broken", "selector": {"spiffe": "not-a-spiffe-id"}, "rules": []}'
	for n in 1 2 3 4; do
		sm_wait_until 15 eval "sm_status node$n | jq -e '.cluster.refused.key == \"/sockmesh/config/policies/broken\"' >/dev/null"
		sm_status "node$n" | jq -e '.cluster.refused.reason | length > 0'
		grep -q 'refused.*config/policies/broken' "$(sb_daemon_log "node$n")"
	done
	enforced # the last good set stays
	run sb_cli node2 status
	echo "$output"
	[[ "$output" == *"REFUSED: /sockmesh/config/policies/broken: "* ]]
	run sb_ccli status --cluster
	echo "$output"
	[[ "$output" == *"config/policies/broken"* ]]
	# metrics say so too
	nsenter --net="/run/netns/$(sb_ns node1)" curl -sf http://127.0.0.1:15020/metrics |
		grep -x 'sockmesh_cluster_refusing 1'
	# removing the key lifts the refusal everywhere
	sb_etcdctl del /sockmesh/config/policies/broken
	for n in 1 2 3 4; do
		sm_wait_until 15 eval "sm_status node$n | jq -e '.cluster.refused == null' >/dev/null"
	done
}

@test "a catalog key that is not YAML, a service naming no workload, a set over a node's capacity: refused everywhere, named, old state kept" {
	write_policy
	run apply_wait
	[ "$status" -eq 0 ]
	# not YAML at all
	sb_etcdctl put /sockmesh/config/catalog/services/junk '{"name": "junk", "address": [unclosed'
	refused_everywhere /sockmesh/config/catalog/services/junk
	enforced
	sb_etcdctl del /sockmesh/config/catalog/services/junk
	refused_nowhere
	# a service naming a workload that does not exist
	sb_etcdctl put /sockmesh/config/catalog/services/ghost \
		'{"name": "ghost", "address": "10.11.0.2", "port": 8090, "workload": "nobody"}'
	refused_everywhere /sockmesh/config/catalog/services/ghost
	sm_status node1 | jq -e '.cluster.refused.reason | test("nobody")'
	enforced
	sb_etcdctl del /sockmesh/config/catalog/services/ghost
	refused_nowhere
	# valid for the CLI (its bound is the default 65,536 entries), over the nodes' 16
	{
		echo "policies:"
		echo "  - name: wide"
		echo "    selector: {spiffe: \"$SM_SERVER_ID\"}"
		echo "    rules:"
		for i in $(seq 0 39); do # ports told apart (ALLOW, DENY, ...): over 16 entries
			echo "      - {action: $([ $((i % 2)) = 0 ] && echo ALLOW || echo DENY)," \
				"from: [\"$SM_CLIENT_ID\"], ports: [$((9000 + i))]}"
		done
	} >"$POL"
	run sb_ccli policy apply --cluster -f "$POL" --wait --max-wait 20
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *refused* ]]
	for n in 1 2 3 4; do
		sm_status "node$n" | jq -e '.cluster.refused.reason | test("entries")'
		! has_policy "node$n" wide
	done
	enforced
	nsenter --net="/run/netns/$(sb_ns node3)" curl -sf http://127.0.0.1:15020/metrics |
		grep -E '^sockmesh_cluster_refusals_total [1-9]'
}

@test "a killed node is gone from status --cluster after its lease expires; a stopped one at once" {
	for n in 1 2 3 4; do sb_stop_daemon "node$n"; done
	for n in 1 2 3 4; do
		sed -i 's/lease_ttl: .*/lease_ttl: 3/' "$(sb_config "node$n")"
	done
	start_all
	sm_wait_until 15 eval '[ "$(sb_ccli status --cluster -o json | jq "[.nodes[] | select(.ready)] | length")" = 4 ]'
	kill -KILL "$(sb_daemon_pid node3)"
	unset "SB_DAEMON_PID[node3]"
	sb_ccli status --cluster -o json | jq -e '[.nodes[].node] | index("node3") != null'
	sm_wait_until 15 eval '! sb_ccli status --cluster -o json | jq -e "[.nodes[].node] | index(\"node3\") != null" >/dev/null'
	sb_stop_daemon node2
	sb_ccli status --cluster -o json | jq -e '[.nodes[].node] | sort == ["node1", "node4"]'
}

@test "a first start with etcd away and no saved state exits and says why" {
	sb_stop_daemon node1
	rm -f "$SB_DIR/node1/state/cluster.json"
	sb_etcd_stop
	sed -i 's/start_timeout: .*/start_timeout: 2/' "$(sb_config node1)"
	! sb_start_daemon node1 # (not in `run`: SB_LAST_RC is set in this shell)
	[ "$SB_LAST_RC" -eq 1 ]
	grep -q 'no state saved in .*cluster.json' "$(sb_daemon_log node1)"
}
