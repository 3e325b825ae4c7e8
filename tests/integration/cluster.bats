#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Cluster mode (docs/cluster.md): four nodes follow one etcd (Debian's
# etcd-server, mutual TLS with client-cert-auth, in the sandbox's hub
# namespace). A catalog and policies written once through the CLI reach every
# node and are enforced on real connections; --wait waits for every node;
# nodes enforce what they have while etcd is away (also across a restart),
# and catch up after a cut-off even when the history they missed was compacted;
# concurrent writers never merge.
#
# The sandbox: tests/integration/cluster.bash. Failures (a bad key, a dead
# node, a first start without etcd) are in cluster_faults.bats.

load helpers
load cluster

@test "a catalog and policy applied once reach all four nodes and are enforced there; --wait waits for all" {
	# the catalog came from etcd: every node knows every workload, no catalog file read
	for n in 1 2 3 4; do
		sm_status "node$n" | jq -e '.cluster.connected == true and .cluster.catalog_revision > 0'
	done
	allowed node3 other 10.11.0.2:8080 # no policy yet
	write_policy
	run apply_wait
	echo "$output"
	[ "$status" -eq 0 ]
	rev=$(jq -er .revision <<<"$output")
	for n in 1 2 3 4; do
		[ "$(cluster_rev "node$n")" -ge "$rev" ]
		has_policy "node$n" server-from-client
	done
	enforced
	run sb_ccli status --cluster -o json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e --argjson r "$rev" '[.nodes[] | select(.ready and .revision >= $r and .lag == 0)] |
		length == 4' <<<"$output"

	# a node that cannot report holds the wait: it names that node and no other
	kill -STOP "$(sb_daemon_pid node4)"
	write_open_policy
	run sb_ccli policy apply --cluster -f "$POL" --wait --max-wait 3
	kill -CONT "$(sb_daemon_pid node4)"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *node4* ]]
	[[ "$output" != *node1* && "$output" != *node2* && "$output" != *node3* ]]
	rev2=$(sb_ccli status --cluster -o json | jq -er '.latest_config_revision')
	run sb_ccli policy wait --cluster "$rev2" --max-wait 30
	echo "$output"
	[ "$status" -eq 0 ]
	allowed node3 other 10.11.0.2:8080 # the new set is in force
}

@test "etcd away: traffic and enforcement unchanged, writes fail clearly, a restarted node enforces its saved state; etcd back: all converge" {
	write_policy
	run apply_wait
	[ "$status" -eq 0 ]
	sb_etcd_stop
	enforced
	write_open_policy
	run sb_ccli policy apply --cluster -f "$POL"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"10.11.0.254:2379"* ]] # names the endpoint it could not reach
	# a node restarted while etcd is away starts from what it saved, and says it is stale
	sb_stop_daemon node3
	sb_start_daemon node3
	grep -q 'starting from .*cluster.json' "$(sb_daemon_log node3)"
	denied node3 other 10.11.0.2:8080
	sm_wait_until 15 eval '[ "$(sm_status node3 | jq -r .cluster.connected)" = false ]'
	sm_status node1 | jq -e '.cluster.connected == false and .cluster.stale_s >= 0'
	sb_cli node1 status | grep -E '^cluster: +etcd revision [0-9]+ in force, etcd has not answered for'
	nsenter --net="/run/netns/$(sb_ns node1)" curl -sf http://127.0.0.1:15020/readyz |
		grep 'cluster: etcd has not answered for'

	sb_etcd_start
	run apply_wait
	echo "$output"
	[ "$status" -eq 0 ]
	allowed node3 other 10.11.0.2:8080
	for n in 1 2 3 4; do
		sm_status "node$n" | jq -e '.cluster.connected == true and .cluster.stale_s == 0'
	done
}

@test "a node cut off from etcd while the others get revisions and etcd compacts lists again and converges" {
	write_policy
	run apply_wait
	[ "$status" -eq 0 ]
	sb_etcd_cut node4
	for i in 1 2 3; do
		cat >>"$POL" <<EOF
  - name: extra-$i
    selector: {spiffe: "$SM_SERVER_ID"}
    rules: [{action: AUDIT, from: ["$SM_OTHER_ID"]}]
EOF
		run sb_ccli policy apply --cluster -f "$POL"
		echo "$output"
		[ "$status" -eq 0 ]
	done
	latest=$(sb_ccli status --cluster -o json | jq -er .latest_config_revision)
	run sb_etcdctl compact "$latest"
	echo "$output"
	[ "$status" -eq 0 ]
	! has_policy node4 extra-3
	# node4 notices (its lease keepalive fails), so its next watch starts from
	# a compacted revision
	sm_wait_until 30 eval '[ "$(sm_status node4 | jq -r .cluster.connected)" = false ]'
	sb_etcd_uncut node4
	run sb_ccli policy wait --cluster "$latest" --max-wait 40
	echo "$output"
	[ "$status" -eq 0 ]
	has_policy node4 extra-3
	grep -q 'was compacted' "$(sb_daemon_log node4)"
	enforced
}

@test "two concurrent applies: exactly one is written, the other is told it conflicts" {
	write_policy
	cp "$POL" "$SB_DIR/a.yaml"
	write_open_policy
	cp "$POL" "$SB_DIR/b.yaml"
	# both read the cluster, then both write: the CLI holds between its read and its
	# write while its pause file exists
	SOCKMESH_TEST_PAUSE_AFTER_READ=$SB_DIR/a.pause sb_ccli policy apply --cluster \
		-f "$SB_DIR/a.yaml" >"$SB_DIR/a.out" 2>&1 &
	a=$!
	SOCKMESH_TEST_PAUSE_AFTER_READ=$SB_DIR/b.pause sb_ccli policy apply --cluster \
		-f "$SB_DIR/b.yaml" >"$SB_DIR/b.out" 2>&1 &
	b=$!
	sm_wait_until 20 test -s "$SB_DIR/a.pause"
	sm_wait_until 20 test -s "$SB_DIR/b.pause"
	[ "$(cat "$SB_DIR/a.pause")" = "$(cat "$SB_DIR/b.pause")" ] # the same read revision
	rm -f "$SB_DIR/a.pause" "$SB_DIR/b.pause"
	wait "$a" && ra=0 || ra=$?
	wait "$b" && rb=0 || rb=$?
	cat "$SB_DIR/a.out" "$SB_DIR/b.out"
	[ $((ra + rb)) -eq 1 ]
	[ "$(cat "$SB_DIR/a.out" "$SB_DIR/b.out" | grep -c 'conflict: the cluster changed since it was read')" -eq 1 ]
	# what is stored is one of the two, whole: never a merge
	run sb_etcdctl get --prefix --keys-only /sockmesh/config/policies/
	echo "$output"
	if [ "$ra" -eq 0 ]; then
		[ "$(grep -c . <<<"$output")" -eq 2 ]
		grep -qx /sockmesh/config/policies/server4-from-client <<<"$output"
	else
		grep -qx /sockmesh/config/policies/server-from-client <<<"$output"
		! grep -q server4 <<<"$output"
	fi
}

# reg_version NODE: the etcd version of NODE's registration key (1 = written once).
reg_version() {
	sb_etcdctl get "/sockmesh/status/nodes/$1" -w json | jq -er '.kvs[0].version'
}

@test "a catalog change that does not touch a node's addresses does not rewrite its registration" {
	# every node has registered as ready (the registration is written before the applied state)
	sm_wait_until 15 eval '[ "$(sb_ccli status --cluster -o json | jq "[.nodes[] | select(.ready)] | length")" = 4 ]'
	for n in 1 2 3 4; do v0[n]=$(reg_version "node$n"); done
	cat >"$SB_DIR/svc.yaml" <<EOF
services:
  - {name: extra, address: "10.11.0.2", port: 9090, workload: server}
EOF
	# --wait returns once every node wrote its applied state, which comes after any
	# registration write of the same round
	run sb_ccli catalog apply "$SB_DIR/svc.yaml" --wait --max-wait 30
	echo "$output"
	[ "$status" -eq 0 ]
	for n in 1 2 3 4; do
		echo "node$n: registration version ${v0[n]} -> $(reg_version "node$n")"
		[ "$(reg_version "node$n")" -eq "${v0[n]}" ]
	done
}
