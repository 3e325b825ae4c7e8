#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# docs/cluster.md, "Security": etcd's role-based access control as the doc
# tells an operator to set it up, against a real etcd (scripts/test-etcd.sh:
# one member on 127.0.0.1, mutual TLS, ports of its own) with authentication
# on. The users and roles are the doc's table, under the default prefix:
# operator (sockmesh-operator), node1 and node2 (sockmesh-node-node1/-node2),
# observer (sockmesh-observer). The CLI is the client where it can be
# (--etcd-user, --etcd-password-file, certificates without a Common Name);
# etcdctl, with a user's credentials, for what only a node does (status
# writes under a lease). The last test runs one real sockmeshd with a node
# user in a 1-node sandbox: it registers, applies, keeps and revokes its lease.

load helpers

P=/sockmesh/

setup_file() {
	sm_loopback_etcd_start cluster-rbac
	rbac_setup ctl_fixture
}

teardown_file() {
	sm_loopback_etcd_stop
}

ctl_fixture() {
	"$SM_REPO/scripts/test-etcd.sh" ctl "$ETCD_DIR" "127.0.0.1:$CPORT" "$@"
}

# rbac_setup CTL: the users and roles of docs/cluster.md's table, password
# files in $ETCD_DIR/pw-USER, then authentication on. CTL runs etcdctl as the
# operator's certificate (before auth: anyone may).
rbac_setup() {
	local ctl=$1 u n
	for u in root operator node1 node2 observer; do
		(umask 077 && printf '%s' "pw-$u-$RANDOM$RANDOM" >"$ETCD_DIR/pw-$u")
	done
	$ctl user add "root:$(cat "$ETCD_DIR/pw-root")" >/dev/null
	$ctl user grant-role root root >/dev/null
	$ctl role add sockmesh-operator >/dev/null
	$ctl role grant-permission sockmesh-operator readwrite "${P}config/" --prefix=true >/dev/null
	$ctl role grant-permission sockmesh-operator read "${P}status/" --prefix=true >/dev/null
	for n in node1 node2; do
		$ctl role add "sockmesh-node-$n" >/dev/null
		$ctl role grant-permission "sockmesh-node-$n" read "${P}config/" --prefix=true >/dev/null
		$ctl role grant-permission "sockmesh-node-$n" readwrite "${P}status/nodes/$n" >/dev/null
		$ctl role grant-permission "sockmesh-node-$n" readwrite "${P}status/applied/$n" >/dev/null
	done
	$ctl role add sockmesh-observer >/dev/null
	$ctl role grant-permission sockmesh-observer read "$P" --prefix=true >/dev/null
	for u in operator node1 node2 observer; do
		$ctl user add "$u:$(cat "$ETCD_DIR/pw-$u")" >/dev/null
	done
	$ctl user grant-role operator sockmesh-operator >/dev/null
	$ctl user grant-role node1 sockmesh-node-node1 >/dev/null
	$ctl user grant-role node2 sockmesh-node-node2 >/dev/null
	$ctl user grant-role observer sockmesh-observer >/dev/null
	$ctl auth enable >/dev/null
}

setup() {
	if [ ! -x "$SOCKMESH" ]; then
		echo "missing $SOCKMESH: build it first (make)" >&2
		return 1
	fi
	export SOCKMESH_ETCD_ENDPOINTS=https://127.0.0.1:$CPORT
	export SOCKMESH_ETCD_CA=$ETCD_DIR/ca.pem
	T=$(mktemp -d)
	cat >"$T/catalog.yaml" <<-'EOF'
		nodes:
		  - name: node1
		    addresses: [10.20.0.1]
		  - name: node2
		    addresses: [10.20.0.2]
		workloads:
		  - name: w1
		    node: node1
		    cgroup: it/w1
		    spiffe_id: spiffe://it.test/w1
	EOF
	cat >"$T/policies.yaml" <<-'EOF'
		policies:
		  - name: w1-from-any
		    selector: {spiffe: "spiffe://it.test/w1"}
		    rules: [{action: ALLOW, from: [any]}]
	EOF
}

teardown() {
	rm -rf "$T"
	if [ -n "${SB_ID:-}" ]; then
		sm_teardown
	fi
}

# as USER sockmesh ARGS...: the CLI as USER, with a certificate without a CN
# (USER's own; node9's for the observer: the PKI has none of its own, and the
# gateway does not tie certificates to users).
as() {
	local u=$1 c=$1
	shift
	[ "$u" != observer ] || c=node9
	SOCKMESH_ETCD_CERT=$ETCD_DIR/client-$c-nocn.pem SOCKMESH_ETCD_KEY=$ETCD_DIR/client-$c-nocn-key.pem \
		SOCKMESH_ETCD_USER=$u SOCKMESH_ETCD_PASSWORD_FILE=$ETCD_DIR/pw-$u \
		timeout --kill-after=2 30 "$@"
}

# ctl_as USER ARGS...: etcdctl with USER's name and password (root: everything).
ctl_as() {
	local u=$1
	shift
	ctl_fixture --user "$u:$(cat "$ETCD_DIR/pw-$u")" "$@"
}

revision() {
	ctl_as root get / --write-out=json | jq -r .header.revision
}

@test "with authentication on, a certificate with a Common Name is refused with a message saying to use one without" {
	# the CLI, with a user: the authentication request itself is refused
	run as operator "$SOCKMESH" catalog get \
		--etcd-cert "$ETCD_DIR/client-operator.pem" --etcd-key "$ETCD_DIR/client-operator-key.pem"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"client certificate without a Common Name"* ]]
	[[ "$output" != *"password"* ]]
	# without a user: refused as well, with the same advice
	run env SOCKMESH_ETCD_CERT="$ETCD_DIR/client-operator.pem" \
		SOCKMESH_ETCD_KEY="$ETCD_DIR/client-operator-key.pem" "$SOCKMESH" catalog get
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"client certificate without a Common Name"* ]]
	# no user with a certificate without a CN: etcd wants a user
	run env SOCKMESH_ETCD_CERT="$ETCD_DIR/client-operator-nocn.pem" \
		SOCKMESH_ETCD_KEY="$ETCD_DIR/client-operator-nocn-key.pem" "$SOCKMESH" catalog get
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"etcd wants a user"* ]]
	# a wrong password names the user and the password file
	run as operator "$SOCKMESH" catalog get --etcd-password-file "$ETCD_DIR/pw-node1"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"authentication of user 'operator' failed"*"$ETCD_DIR/pw-node1"* ]]
}

@test "the operator writes the catalog and the policies; a node reads them but cannot write" {
	ctl_as root del "${P}config/" --prefix >/dev/null
	run as operator "$SOCKMESH" catalog apply "$T/catalog.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"catalog apply: 3 added"* ]]
	run as operator "$SOCKMESH" policy apply --cluster -f "$T/policies.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(ctl_as root get "${P}config/" --prefix --keys-only | sed '/^$/d' | wc -l)" -eq 5 ]

	# node1 reads what a node needs: the catalog and the policies
	run as node1 "$SOCKMESH" catalog get
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *'"name":"w1"'* ]]
	ctl_as node1 get "${P}config/policies/w1-from-any" --print-value-only |
		jq -e '.name == "w1-from-any"'
	ctl_as node1 get "${P}config/generation" --print-value-only | jq -e '.command == "policy apply"'


	# ... and writes none of it: a permission error, exit 1, nothing written
	rev=$(revision)
	sed -i 's/10.20.0.2/10.20.0.9/' "$T/catalog.yaml"
	run as node1 "$SOCKMESH" catalog apply "$T/catalog.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"permission denied"* ]]
	[[ "$output" == *"nothing was written"* ]]
	[[ "$output" != *"may or may not"* ]]
	sed -i 's/ALLOW/DENY/' "$T/policies.yaml"
	run as node1 "$SOCKMESH" policy apply --cluster -f "$T/policies.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"permission denied"*"nothing was written"* ]]
	run as node1 "$SOCKMESH" policy delete --cluster --all --yes
	[ "$status" -eq 1 ]
	[[ "$output" == *"permission denied"*"nothing was written"* ]]
	run as node1 "$SOCKMESH" catalog delete workloads w1
	[ "$status" -eq 1 ]
	[ "$(revision)" -eq "$rev" ]
	ctl_as root get "${P}config/catalog/nodes/node2" --print-value-only | grep -q 10.20.0.2

	# the operator's own write of the same file goes through
	run as operator "$SOCKMESH" catalog apply "$T/catalog.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"1 changed"* ]]

	# the observer reads everything and writes nothing
	run as observer "$SOCKMESH" catalog get
	[ "$status" -eq 0 ]
	run as observer "$SOCKMESH" status --cluster
	echo "$output"
	[ "$status" -eq 0 ]
	run as observer "$SOCKMESH" policy delete --cluster w1-from-any
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"permission denied"*"nothing was written"* ]]
	ctl_as root get "${P}config/policies/w1-from-any" --keys-only | grep -q w1-from-any
}

@test "a node writes its own status keys under its own lease, not another node's" {
	local lease other
	lease=$(ctl_as node1 lease grant 60 | awk '/granted/ {print $2}')
	[ -n "$lease" ]
	ctl_as node1 put --lease="$lease" "${P}status/nodes/node1" '{"node":"node1"}'
	ctl_as node1 put --lease="$lease" "${P}status/applied/node1" '{"node":"node1"}'
	ctl_as node1 get "${P}status/applied/node1" --print-value-only | grep -q node1
	ctl_as node1 lease keep-alive --once "$lease"

	# not another node's keys, nor config/, nor a key of its own outside the two
	run ctl_as node1 put "${P}status/nodes/node2" x
	[ "$status" -ne 0 ]
	[[ "$output" == *"permission denied"* ]]
	run ctl_as node1 put "${P}status/applied/node2" x
	[[ "$output" == *"permission denied"* ]]
	run ctl_as node1 put "${P}config/generation" x
	[[ "$output" == *"permission denied"* ]]
	run ctl_as node1 put "${P}status/nodes/node1x" x
	[[ "$output" == *"permission denied"* ]]
	# nor read other nodes' status (status --cluster is for the operator and the observer)
	run ctl_as node1 get "${P}status/nodes/node2"
	[[ "$output" == *"permission denied"* ]]
	run as node1 "$SOCKMESH" status --cluster
	[ "$status" -eq 1 ]
	[[ "$output" == *"permission denied"* ]]

	# leases: revoking one needs write access to every key attached to it
	other=$(ctl_as node2 lease grant 60 | awk '/granted/ {print $2}')
	ctl_as node2 put --lease="$other" "${P}status/nodes/node2" '{"node":"node2"}'
	run ctl_as node1 lease revoke "$other"
	[ "$status" -ne 0 ]
	[[ "$output" == *"permission denied"* ]]
	run ctl_as observer lease revoke "$lease"
	[[ "$output" == *"permission denied"* ]]
	# ... but etcd 3.4 lets any user list every lease and keep any one alive:
	# docs/cluster.md says what that allows
	ctl_as node1 lease list | grep -q "$other"
	run ctl_as node1 lease keep-alive --once "$other"
	[ "$status" -eq 0 ]
	[[ "$output" == *"keepalived"* ]]
	ctl_as node2 lease revoke "$other"
	ctl_as node1 lease revoke "$lease"
	[ -z "$(ctl_as root get "${P}status/" --prefix --keys-only | sed '/^$/d')" ]
}

@test "a real sockmeshd with a node's own user registers, applies and reports; with a CN certificate it says what to change" {
	sm_sandbox 1
	sb_add_workload node1 client "$SM_CLIENT_ID"
	sb_write_catalog
	sb_etcd_start
	local dir
	dir=$(sb_etcd_dir)
	ETCD_DIR=$dir rbac_setup sb_etcdctl
	op=(--etcd-cert "$dir/client-operator-nocn.pem" --etcd-key "$dir/client-operator-nocn-key.pem"
		--etcd-user operator --etcd-password-file "$dir/pw-operator")
	run sb_ccli catalog apply "$(sb_catalog)" "${op[@]}"
	echo "$output"
	[ "$status" -eq 0 ]

	# first with the node's certificate that has a CN: it must say what to change
	node_config "$dir/client-node1.pem" "$dir/client-node1-key.pem" 2
	run sb_start_daemon node1
	[ "$status" -ne 0 ]
	grep 'client certificate without a Common Name' "$(sb_daemon_log node1)"

	node_config "$dir/client-node1-nocn.pem" "$dir/client-node1-nocn-key.pem" 30
	sb_start_daemon node1
	cat >"$SB_DIR/policy.yaml" <<EOF
policies:
  - name: client-any
    selector: {spiffe: "$SM_CLIENT_ID"}
    rules: [{action: ALLOW, from: [any]}]
EOF
	run sb_ccli policy apply --cluster -f "$SB_DIR/policy.yaml" --wait --max-wait 30 -o json "${op[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
	rev=$(jq -er .revision <<<"$output")
	run sb_cli node1 policy get client-any
	[ "$status" -eq 0 ]
	# the registration and the applied state are node1's, under a lease that node1 keeps alive
	sb_etcdctl --user "root:$(cat "$dir/pw-root")" get "${P}status/nodes/node1" -w json |
		jq -e '.kvs[0].lease != null and .kvs[0].lease != 0'
	run sb_ccli status --cluster -o json "${op[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e --argjson r "$rev" '[.nodes[] | select(.node == "node1" and .ready and
		.revision >= $r and .lag == 0)] | length == 1' <<<"$output"
	run grep -i 'permission denied\|access denied' "$(sb_daemon_log node1)"
	[ "$status" -eq 1 ]

	# a clean stop revokes the lease (the node's role may: it can write every key
	# on it), so the registration goes at once, not after the 10 s TTL
	sb_stop_daemon node1 TERM 10
	[ -z "$(sb_etcdctl --user "root:$(cat "$dir/pw-root")" get "${P}status/" --prefix --keys-only |
		sed '/^$/d')" ]
}

# node_config CERT KEY START_TIMEOUT: node1's config file in cluster mode as user node1.
node_config() {
	local dir
	dir=$(sb_etcd_dir)
	sed -i '/^cluster:/,$d' "$(sb_config node1)"
	cat >>"$(sb_config node1)" <<EOC
cluster:
  lease_ttl: 10
  start_timeout: $3
  etcd:
    endpoints: [$(sb_etcd_url)]
    ca: $dir/ca.pem
    cert: $1
    key: $2
    username: node1
    password_file: $dir/pw-node1
EOC
}
