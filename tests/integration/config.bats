#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Configuration errors: a bad config, catalog or flag makes sockmeshd exit 2
# with a message naming the file and line and saying how to fix it, and
# nothing is attached or pinned. --check and --help work.

load helpers

setup() {
	sm_sandbox 1
	sb_add_workload node1 client "$SM_CLIENT_ID"
	sb_add_service 10.11.0.1 9090 client
	sb_write_catalog
	CONF=$(sb_config node1)
	printf 'log:\n  level: info\n' >"$CONF"
	# a daemon that wrongly accepts a bad config is stopped after this long
	SB_EXEC_TIMEOUT=20
}

teardown() {
	sm_teardown
}

# run_daemon ARGS...: sockmeshd in node1's netns and daemon cgroup, foreground.
run_daemon() {
	run sb_exec node1 daemon "$SOCKMESHD" --bpffs "$(sb_bpffs_dir node1)" \
		--control-socket "$(sb_socket node1)" --state-dir "$SB_DIR/node1/state" "$@"
	echo "exit status $status, output:"
	echo "$output"
}

# A usage error: status 2, and nothing attached or pinned.
assert_rejected() {
	[ "$status" -eq 2 ]
	sm_dir_empty "$(sb_bpffs_dir node1)"
	sm_cgroup_tree_empty
}

# The message names FILE:LINE and carries a fix hint in parentheses.
assert_names_place() {
	[[ "$output" == *"$1:$2:"* ]] || {
		echo "message does not name $1:$2"
		return 1
	}
	[[ "$output" =~ \(.+\) ]] || {
		echo "message has no (hint)"
		return 1
	}
}

@test "malformed config YAML: exit 2, file:line and a hint, nothing attached" {
	printf 'node: node1\npaths:\n  bpffs: [unclosed\nlog:\n  level: info\n' >"$CONF"
	run_daemon -c "$CONF" --catalog "$(sb_catalog)"
	assert_rejected
	[[ "$output" =~ $CONF:[0-9]+: ]]
	[[ "$output" =~ \(.+\) ]]
}

@test "malformed catalog YAML: exit 2, file:line and a hint, nothing attached" {
	bad=$SB_DIR/bad-catalog.yaml
	printf 'nodes:\n  - name: node1\n    addresses: [10.11.0.1\nworkloads: []\n' >"$bad"
	run_daemon -c "$CONF" --node node1 --catalog "$bad"
	assert_rejected
	[[ "$output" =~ $bad:[0-9]+: ]]
	[[ "$output" =~ \(.+\) ]]
}

@test "unknown config key: exit 2, names file:line, nothing attached" {
	printf 'log:\n  level: info\ndatapath:\n  redirekt: true\n' >"$CONF"
	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)"
	assert_rejected
	assert_names_place "$CONF" 4
	[[ "$output" == *redirekt* ]]
}

@test "unknown catalog key: exit 2, names file:line, nothing attached" {
	bad=$SB_DIR/bad-catalog.yaml
	printf 'nodes:\n  - name: node1\n    addresses: [10.11.0.1]\nworkloads:\n  - name: typo\n    node: node1\n    cgroup: x\n    spife_id: spiffe://a.b/c\n' >"$bad"
	line=$(grep -n 'spife_id' "$bad" | cut -d: -f1)
	run_daemon -c "$CONF" --node node1 --catalog "$bad"
	assert_rejected
	assert_names_place "$bad" "$line"
	[[ "$output" == *spife_id* ]]
}

@test "bad config value: exit 2, names file:line, nothing attached" {
	printf 'node: node1\ndatapath:\n  ringbuf_size: 1000\n' >"$CONF"
	run_daemon -c "$CONF" --catalog "$(sb_catalog)"
	assert_rejected
	assert_names_place "$CONF" 3
	[[ "$output" == *ringbuf_size* ]]
}

@test "bad flag and bad flag value: exit 2 with a hint, nothing attached" {
	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)" --no-such-flag
	assert_rejected
	[[ "$output" == *no-such-flag* ]]
	[[ "$output" == *--help* ]]

	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)" --flow-update-interval 0
	assert_rejected
	[[ "$output" == *flow_update_interval* || "$output" == *flow-update-interval* ]]

	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)" --set datapath.nope=1
	assert_rejected
	[[ "$output" == *datapath.nope* ]]
}

@test "missing node, or a node the catalog does not have: exit 2, nothing attached" {
	run_daemon -c "$CONF" --catalog "$(sb_catalog)"
	assert_rejected
	[[ "$output" == *node* ]]

	run_daemon -c "$CONF" --node node7 --catalog "$(sb_catalog)"
	assert_rejected
	[[ "$output" == *node7* ]]
	[[ "$output" == *"$(sb_catalog)"* ]]
}

@test "missing catalog or config file: exit 2 naming the file" {
	run_daemon -c "$CONF" --node node1 --catalog "$SB_DIR/nope.yaml"
	assert_rejected
	[[ "$output" == *"$SB_DIR/nope.yaml"* ]]

	run_daemon -c "$SB_DIR/nope-config.yaml" --node node1 --catalog "$(sb_catalog)"
	assert_rejected
	[[ "$output" == *"$SB_DIR/nope-config.yaml"* ]]
}

@test "--check on a good config exits 0 and attaches nothing" {
	printf 'node: node1\ndatapath:\n  redirect: true\n  ringbuf_size: 65536\nlog:\n  level: info\n' \
		>"$CONF"
	run_daemon -c "$CONF" --catalog "$(sb_catalog)" --check
	[ "$status" -eq 0 ]
	sm_dir_empty "$(sb_bpffs_dir node1)"
	sm_cgroup_tree_empty
	[ ! -e "$(sb_socket node1)" ]
}

@test "--help works for sockmeshd and every sockmesh command" {
	run "$SOCKMESHD" --help
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *--config* && "$output" == *--cleanup* && "$output" == *--check* ]]

	run "$SOCKMESH" --help
	echo "$output"
	[ "$status" -eq 0 ]
	for cmd in status workloads services; do
		[[ "$output" == *"$cmd"* ]]
	done
	for cmd in status workloads services; do
		run "$SOCKMESH" "$cmd" --help
		echo "$output"
		[ "$status" -eq 0 ]
		[[ "$output" == *"$cmd"* ]]
		[[ "$output" == *-o* ]]
		run "$SOCKMESH" help "$cmd"
		[ "$status" -eq 0 ]
	done
	run "$SOCKMESH" no-such-command
	[ "$status" -eq 2 ]
}

@test "an enrollment root that holds no workload, or is the cgroup v2 root: exit 2, nothing attached" {
	mkdir -p "$SB_CG/node1/elsewhere"
	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)" \
		--enrollment-root "$SB_CG/node1/elsewhere"
	assert_rejected
	[[ "$output" == *"workload client"*"not below the enrollment root"*"paths.enrollment_root"* ]]

	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)" \
		--enrollment-root "$(sb_cgroup2_root)"
	assert_rejected
	[[ "$output" == *"the cgroup v2 root"*"paths.enrollment_root"* ]]
}

@test "a daemon whose own cgroup is inside a workload's refuses to start: exit 2" {
	mkdir -p "$(sb_cgroup_dir node1 client)/agent"
	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)" \
		--enrollment-root "$SB_CG/node1" --daemon-cgroup "$(sb_cgroup_dir node1 client)/agent"
	assert_rejected
	[[ "$output" == *"inside workload client's cgroup"* ]]
}

@test "a catalog cgroup path the kernel cannot match is refused: exit 2, names the line" {
	sed -i 's|cgroup: \(.*\)/client$|cgroup: \1//client|' "$(sb_catalog)"
	grep -q '//client' "$(sb_catalog)"
	run_daemon -c "$CONF" --node node1 --catalog "$(sb_catalog)"
	assert_rejected
	[[ "$output" == *"empty segment"* ]]
}
