#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The CLI's cluster commands against a real etcd (scripts/test-etcd.sh: one
# member on 127.0.0.1, mutual TLS, ports of its own) and no daemon: catalog
# apply/get/delete, policy apply/delete/wait --cluster, a conflict between
# two writers, validation that writes nothing, --wait against fake node
# status keys written with etcdctl, and status --cluster. One etcd serves the
# file; each test works under its own key prefix.

load helpers

setup_file() {
	sm_loopback_etcd_start cluster-cli
}

teardown_file() {
	sm_loopback_etcd_stop
}

setup() {
	if [ ! -x "$SOCKMESH" ]; then
		echo "missing $SOCKMESH: build it first (make)" >&2
		return 1
	fi
	export SOCKMESH_ETCD_ENDPOINTS=https://127.0.0.1:$CPORT
	export SOCKMESH_ETCD_CA=$ETCD_DIR/ca.pem
	export SOCKMESH_ETCD_CERT=$ETCD_DIR/client-operator-nocn.pem
	export SOCKMESH_ETCD_KEY=$ETCD_DIR/client-operator-nocn-key.pem
	export SOCKMESH_ETCD_PREFIX=/t$BATS_TEST_NUMBER/
	P=$SOCKMESH_ETCD_PREFIX
	T=$(mktemp -d)
	cat >"$T/catalog.yaml" <<-'EOF'
		nodes:
		  - name: n1
		    addresses: [10.20.0.1]
		  - name: n2
		    addresses: [10.20.0.2, "fc20::2"]
		workloads:
		  - name: w1
		    node: n1
		    cgroup: it/w1
		    spiffe_id: spiffe://it.test/w1
		  - name: w2
		    node: n2
		    cgroup: it/w2
		    spiffe_id: spiffe://it.test/w2
		services:
		  - name: web
		    address: 10.20.0.2
		    port: 8080
		    workload: w2
		  - address: "fc20::2"
		    port: 8443
		    workload: w2
	EOF
	cat >"$T/policies.yaml" <<-'EOF'
		policies:
		  - name: w2-from-w1
		    selector: {spiffe: "spiffe://it.test/w2"}
		    rules: [{action: ALLOW, from: ["spiffe://it.test/w1"]}]
		  - name: audit-all
		    selector: {spiffe: "spiffe://it.test/*"}
		    rules: [{action: AUDIT, from: [any]}]
	EOF
}

teardown() {
	rm -rf "$T"
}

ctl() {
	"$SM_REPO/scripts/test-etcd.sh" ctl "$ETCD_DIR" "127.0.0.1:$CPORT" "$@"
}

# The store's current revision.
etcd_revision() {
	ctl get / --write-out=json | jq -r .header.revision
}

# Keys under the test's prefix, one a line.
keys() {
	ctl get "$P$1" --prefix --keys-only | sed '/^$/d'
}

# A fake node: a registration (ready or not) and an applied state under a lease.
fake_node() {
	local node=$1 ready=$2 rev=$3 refused=${4:-null} lease
	lease=$(ctl lease grant 120 | awk '{print $2}')
	ctl put --lease="$lease" "${P}status/nodes/$node" \
		"{\"node\":\"$node\",\"addresses\":[],\"version\":\"0\",\"ready\":$ready,\"pid\":1,\"started\":\"t\"}" >/dev/null
	fake_applied "$node" "$rev" "$refused" "$lease"
}

fake_applied() {
	local node=$1 rev=$2 refused=${3:-null} lease=${4:-}
	ctl put ${lease:+--lease="$lease"} "${P}status/applied/$node" \
		"{\"node\":\"$node\",\"revision\":$rev,\"catalog_revision\":0,\"policy_revision\":0,\"local_policy_revision\":0,\"connected\":true,\"stale_since\":null,\"refused\":$refused,\"updated\":\"t\"}" >/dev/null
}

@test "a missing etcd setting is a usage error naming the option and the variable" {
	unset SOCKMESH_ETCD_CA
	run "$SOCKMESH" catalog get
	[ "$status" -eq 2 ]
	[[ "$output" == *"set --etcd-ca FILE or the environment variable SOCKMESH_ETCD_CA"* ]]
	unset SOCKMESH_ETCD_ENDPOINTS
	run "$SOCKMESH" status --cluster
	[ "$status" -eq 2 ]
	[[ "$output" == *"--etcd URL"*"SOCKMESH_ETCD_ENDPOINTS"* ]]
	# an option given wins over (and stands in for) the variable
	run "$SOCKMESH" catalog get --etcd "https://127.0.0.1:$CPORT" --etcd-ca "$ETCD_DIR/ca.pem"
	[ "$status" -eq 0 ]
	export SOCKMESH_ETCD_ENDPOINTS=https://127.0.0.1:$CPORT SOCKMESH_ETCD_CA=$ETCD_DIR/ca.pem
	run "$SOCKMESH" catalog get --etcd-prefix nope
	[ "$status" -eq 2 ]
	[[ "$output" == *"must start and end with '/'"* ]]
}

@test "catalog apply, get and delete: a round trip, unchanged objects not rewritten" {
	run "$SOCKMESH" catalog apply "$T/catalog.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"+ ${P}config/catalog/nodes/n1"* ]]
	[[ "$output" == *"+ ${P}config/catalog/services/fc20--2_8443"* ]]
	[[ "$output" == *"catalog apply: 6 added, 0 changed, 0 deleted, 0 unchanged; written at revision"* ]]
	[ "$(keys config/catalog/ | wc -l)" -eq 6 ]
	[ "$(keys config/generation)" = "${P}config/generation" ]
	ctl get "${P}config/generation" --print-value-only | jq -e '.command == "catalog apply" and .added == 6'

	# what get prints is a catalog file that applies as no change
	"$SOCKMESH" catalog get >"$T/got.yaml"
	head -1 "$T/got.yaml" | grep -q "^# the cluster's catalog at etcd revision "
	rev=$(etcd_revision)
	run "$SOCKMESH" catalog apply "$T/got.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"0 added, 0 changed, 0 deleted, 6 unchanged; nothing to write"* ]]
	[ "$(etcd_revision)" -eq "$rev" ]

	# one object, as JSON
	"$SOCKMESH" catalog get nodes n2 -o json 2>"$T/err" >"$T/n2.json"
	jq -e '.nodes | length == 1 and .[0].name == "n2" and .[0].addresses[1] == "fc20::2"' "$T/n2.json"
	jq -e 'has("workloads") | not' "$T/n2.json"
	grep -q "^# etcd revision " "$T/err"
	run "$SOCKMESH" catalog get nodes n9
	[ "$status" -eq 1 ]
	[[ "$output" == *"no nodes 'n9' in the cluster's catalog"* ]]

	# a changed object is one put; -o json lists it
	sed -i 's/cgroup: it\/w1/cgroup: it\/w1b/' "$T/catalog.yaml"
	run "$SOCKMESH" catalog apply "$T/catalog.yaml" -o json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e --arg k "${P}config/catalog/workloads/w1" \
		'.written and .changed == [$k] and .added == [] and .unchanged == 5' <<<"$output"
	ctl get "${P}config/catalog/workloads/w1" --print-value-only | jq -e '.cgroup == "it/w1b"'

	# delete: a node workloads still name is refused with the catalog's error
	rev=$(etcd_revision)
	run "$SOCKMESH" catalog delete nodes n2
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"${P}config/catalog/workloads/w2: workload 'w2': node 'n2' is not in nodes"* ]]
	[[ "$output" == *"nothing was written"* ]]
	[ "$(etcd_revision)" -eq "$rev" ]
	# the workload, its services and then the node, in order
	run "$SOCKMESH" catalog delete services web fc20--2_8443
	[ "$status" -eq 0 ]
	run "$SOCKMESH" catalog delete workloads w2
	[ "$status" -eq 0 ]
	run "$SOCKMESH" catalog delete nodes n2
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"- ${P}config/catalog/nodes/n2"* ]]
	[ "$(keys config/catalog/ | wc -l)" -eq 2 ]
	run "$SOCKMESH" catalog delete nodes n2
	[ "$status" -eq 1 ]
	[[ "$output" == *"no such key in the cluster"* ]]
}

@test "policy apply --cluster and delete --cluster; the local commands do not take --cluster" {
	"$SOCKMESH" catalog apply "$T/catalog.yaml" >/dev/null
	run "$SOCKMESH" policy apply --cluster "$T/policies.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"2 added"* ]]
	[ "$(keys config/policies/)" = "${P}config/policies/audit-all
${P}config/policies/w2-from-w1" ]
	# merged by name: a file with one policy replaces it and leaves the other
	cat >"$T/one.yaml" <<-'EOF'
		policies:
		  - name: audit-all
		    selector: {spiffe: "spiffe://it.test/*"}
		    rules: [{action: DENY, from: ["10.0.0.0/8"]}]
	EOF
	run "$SOCKMESH" policy apply --cluster -f "$T/one.yaml" --dry-run
	[ "$status" -eq 0 ]
	[[ "$output" == *"1 changed"*"dry run: nothing written"* ]]
	ctl get "${P}config/policies/audit-all" --print-value-only | jq -e '.rules[0].action == "AUDIT"'
	run "$SOCKMESH" policy apply --cluster "$T/one.yaml"
	[ "$status" -eq 0 ]
	ctl get "${P}config/policies/audit-all" --print-value-only | jq -e '.rules[0].action == "DENY"'
	[ "$(keys config/policies/ | wc -l)" -eq 2 ]

	# --strict: an exact SPIFFE ID that names no workload of the cluster's catalog
	sed 's/it.test\/w1"/it.test\/w9"/' "$T/policies.yaml" >"$T/typo.yaml"
	run "$SOCKMESH" policy apply --cluster "$T/typo.yaml" --strict
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"--strict: policy 'w2-from-w1' rules[0]: source 'spiffe://it.test/w9' names no workload"* ]]
	run "$SOCKMESH" policy apply --cluster "$T/typo.yaml" --dry-run
	[ "$status" -eq 0 ]
	[[ "$output" == *"note: 1 selector(s) or source(s)"* ]]

	run "$SOCKMESH" policy delete --cluster w2-from-w1
	[ "$status" -eq 0 ]
	[ "$(keys config/policies/)" = "${P}config/policies/audit-all" ]
	run "$SOCKMESH" policy delete --cluster --all
	[ "$status" -eq 2 ]
	run "$SOCKMESH" policy delete --cluster --all --yes
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$(keys config/policies/)" ]
	run "$SOCKMESH" policy get --cluster
	[ "$status" -eq 2 ]
	[[ "$output" == *"policy get has no --cluster"* ]]
}

@test "two writers: the one whose read went stale writes nothing and says conflict" {
	"$SOCKMESH" catalog apply "$T/catalog.yaml" >/dev/null
	sed 's/it\/w1/it\/w1-a/' "$T/catalog.yaml" >"$T/a.yaml"
	# writer A reads, then holds until the test lets it go on
	SOCKMESH_TEST_PAUSE_AFTER_READ=$T/pause "$SOCKMESH" catalog apply "$T/a.yaml" \
		>"$T/a.out" 2>&1 &
	apid=$!
	sm_wait_until 20 test -s "$T/pause"
	read_rev=$(cat "$T/pause")
	# writer B changes another key in between (etcdctl: no config/generation)
	ctl put "${P}config/catalog/nodes/n3" '{"name":"n3","addresses":["10.20.0.3"]}' >/dev/null
	rm -f "$T/pause"
	wait "$apid" && astatus=0 || astatus=$?
	cat "$T/a.out"
	[ "$astatus" -eq 1 ]
	grep -qF "conflict: the cluster changed since it was read (revision $read_rev); nothing was written; run the command again" "$T/a.out"
	ctl get "${P}config/catalog/workloads/w1" --print-value-only | jq -e '.cgroup == "it/w1"'

	# two sockmesh writers: the second's compare on config/generation fails
	SOCKMESH_TEST_PAUSE_AFTER_READ=$T/pause "$SOCKMESH" catalog apply "$T/a.yaml" \
		>"$T/a.out" 2>&1 &
	apid=$!
	sm_wait_until 20 test -s "$T/pause"
	sed 's/it\/w2/it\/w2-b/' "$T/catalog.yaml" >"$T/b.yaml"
	run "$SOCKMESH" catalog apply "$T/b.yaml"
	[ "$status" -eq 0 ]
	rm -f "$T/pause"
	wait "$apid" && astatus=0 || astatus=$?
	[ "$astatus" -eq 1 ]
	grep -q "conflict" "$T/a.out"
	ctl get "${P}config/catalog/workloads/w1" --print-value-only | jq -e '.cgroup == "it/w1"'
	ctl get "${P}config/catalog/workloads/w2" --print-value-only | jq -e '.cgroup == "it/w2-b"'
	# run again, it applies
	run "$SOCKMESH" catalog apply "$T/a.yaml"
	[ "$status" -eq 0 ]
	ctl get "${P}config/catalog/workloads/w1" --print-value-only | jq -e '.cgroup == "it/w1-a"'
}

@test "invalid input writes nothing: the file's line, a bad key already in etcd, capacity, 128 ops" {
	"$SOCKMESH" catalog apply "$T/catalog.yaml" >/dev/null
	rev=$(etcd_revision)
	cat >"$T/bad.yaml" <<-'EOF'
		workloads:
		  - name: w3
		    node: n1
		    cgroup: it/w3
		    spiffe_id: spiffe://it.test/w3
		  - name: w4
		    node: n7
		    cgroup: it/w4
		    spiffe_id: spiffe://it.test/w4
	EOF
	run "$SOCKMESH" catalog apply "$T/bad.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$T/bad.yaml:6: ${P}config/catalog/workloads/w4: workload 'w4': node 'n7' is not in nodes"* ]]
	[ "$(etcd_revision)" -eq "$rev" ]

	# a bad file is refused before anything is read or written
	printf 'nodes:\n  - name: "a b"\n' >"$T/bad2.yaml"
	run "$SOCKMESH" catalog apply "$T/bad2.yaml"
	[ "$status" -eq 1 ]
	[[ "$output" == *"bad2.yaml:2: nodes[0]: name: not a valid name"* ]]

	# policies that do not fit the nodes' maps
	run "$SOCKMESH" policy apply --cluster "$T/policies.yaml" --max-policy-entries 1
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"do not compile against its catalog"*"nothing was written"* ]]
	[ "$(etcd_revision)" -eq "$rev" ]

	# a key someone broke with etcdctl is named, and blocks writes until fixed
	ctl put "${P}config/catalog/nodes/n2" '{"name":"other","addresses":["10.20.0.2"]}' >/dev/null
	rev=$(etcd_revision)
	run "$SOCKMESH" policy apply --cluster "$T/policies.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"${P}config/catalog/nodes/n2: the node is 'other' but its key says 'n2'"*"etcdctl del"* ]]
	[ "$(etcd_revision)" -eq "$rev" ]
	# get still prints the catalog, then says what does not load
	run "$SOCKMESH" catalog get nodes
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *'  - {"name":"other","addresses":["10.20.0.2"]}'* ]]
	[[ "$output" == *"does not load: ${P}config/catalog/nodes/n2: the node is 'other'"* ]]
	ctl put "${P}config/catalog/nodes/n2" '{"name":"n2","addresses":["10.20.0.2"]}' >/dev/null

	# 128 nodes and the generation: 129 operations, refused whole
	{
		echo "nodes:"
		for i in $(seq 1 128); do echo "  - {name: big$i, addresses: [10.30.$((i / 200)).$((i % 200 + 1))]}"; done
	} >"$T/big.yaml"
	rev=$(etcd_revision)
	run "$SOCKMESH" catalog apply "$T/big.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"the change is 128 keys, more than the 128 operations etcd takes in one transaction"*"nothing was written"* ]]
	[ "$(etcd_revision)" -eq "$rev" ]
}

@test "--wait: times out naming the lagging nodes, succeeds once they apply, fails at once on a refusal" {
	"$SOCKMESH" catalog apply "$T/catalog.yaml" >/dev/null
	# n1 ready at revision 1, n2 not ready (not waited for), n3 ready without applied state
	fake_node n1 true 1
	fake_node n2 false 1
	lease=$(ctl lease grant 120 | awk '{print $2}')
	ctl put --lease="$lease" "${P}status/nodes/n3" '{"node":"n3","ready":true}' >/dev/null

	sed -i 's/cgroup: it\/w1/cgroup: it\/w1c/' "$T/catalog.yaml"
	run "$SOCKMESH" catalog apply "$T/catalog.yaml" --wait --max-wait 2
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"timed out after 2 s waiting for revision "*": not applied by n1 (at revision 1), n3 (no applied state)"* ]]
	[[ "$output" != *"n2 ("* ]]

	# a write, then the nodes report it: the wait ends without a timeout
	sed -i 's/cgroup: it\/w1c/cgroup: it\/w1d/' "$T/catalog.yaml"
	"$SOCKMESH" catalog apply "$T/catalog.yaml" --wait --max-wait 60 >"$T/w.out" 2>&1 &
	wpid=$!
	sm_wait_until 20 grep -q "written at revision" "$T/w.out"
	w=$(sed -n 's/.*written at revision \([0-9]*\).*/\1/p' "$T/w.out")
	fake_applied n1 "$w"
	ctl del "${P}status/nodes/n3" >/dev/null # n3 leaves: no longer waited for
	wait "$wpid" && wstatus=0 || wstatus=$?
	cat "$T/w.out"
	[ "$wstatus" -eq 0 ]
	grep -qE "revision $w applied by all 1 ready node\(s\) in [0-9.]+ s" "$T/w.out"

	# policy wait --cluster on its own, then a refusal of that revision ends it at once
	run "$SOCKMESH" policy wait --cluster "$w" --max-wait 5
	[ "$status" -eq 0 ]
	next=$((w + 1000))
	"$SOCKMESH" policy wait --cluster "$next" --max-wait 60 >"$T/r.out" 2>&1 &
	rpid=$!
	start=$SECONDS
	fake_applied n1 "$w" "{\"revision\":$next,\"key\":\"${P}config/policies/p\",\"reason\":\"does not compile\"}"
	wait "$rpid" && rstatus=0 || rstatus=$?
	cat "$T/r.out"
	[ "$rstatus" -eq 1 ]
	grep -qF "node n1 refused revision $next" "$T/r.out"
	grep -qF "${P}config/policies/p: does not compile" "$T/r.out"
	# well before --max-wait (a generous bound)
	[ $((SECONDS - start)) -lt 30 ]
}

@test "status --cluster: every node, its revision, lag, last contact and refusal; gone nodes" {
	"$SOCKMESH" catalog apply "$T/catalog.yaml" >/dev/null
	latest=$(ctl get "${P}config/" --prefix --write-out=json | jq '[.kvs[].mod_revision] | max')
	fake_node n1 true "$latest"
	fake_node n2 true 1 "{\"revision\":$latest,\"key\":\"${P}config/catalog/nodes/n2\",\"reason\":\"bad\"}"
	fake_applied n9 1 # applied state without registration: gone
	run "$SOCKMESH" status --cluster
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "latest config revision $latest "* ]]
	[[ "${lines[1]}" == "NODE"*"READY"*"REVISION"*"LAG"*"LAST CONTACT"*"REFUSED" ]]
	[[ "${lines[2]}" =~ ^n1\ +yes\ +$latest\ +0\ +[0-9]+s\ +-$ ]]
	[[ "${lines[3]}" =~ ^n2\ +yes\ +1\ +$((latest - 1))\ +[0-9]+s\ +${P}config/catalog/nodes/n2:\ bad$ ]]
	[[ "${lines[4]}" =~ ^n9\ +gone\ +1\ +$((latest - 1))\ +-\ +-$ ]]

	run "$SOCKMESH" status --cluster -o json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e --argjson l "$latest" '.latest_config_revision == $l and (.nodes | length) == 3
		and .nodes[0].node == "n1" and .nodes[0].lag == 0 and (.nodes[0].last_contact_s | type) == "number"
		and .nodes[1].applied.refused.reason == "bad"
		and .nodes[2].registered == false and .nodes[2].registration == null' <<<"$output"
}
