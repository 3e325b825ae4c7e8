#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Entering a node's network namespace (docs/operations.md, Troubleshooting):
# `ip netns exec` mounts a fresh /sys, which hides the cgroup v2 mount, and
# the daemon's error names the fix; `nsenter --net=/run/netns/NAME`, as the
# docs say, enters the namespace only and the daemon finds cgroup v2.

load helpers

setup() {
	sm_standard_sandbox
	NS=$(sb_ns node1)
	ARGS=(--check -c "$(sb_config node1)" --node node1 --catalog "$(sb_catalog)"
		--bpffs "$(sb_bpffs_dir node1)" --state-dir "$SB_DIR/node1/state")
}

teardown() {
	sm_teardown
}

@test "under ip netns exec the daemon says no cgroup v2 mount and names nsenter --net; under nsenter --net it starts" {
	run ip netns exec "$NS" "$SOCKMESHD" "${ARGS[@]}"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"no cgroup v2 mount in /proc/self/mountinfo"* ]]
	[[ "$output" == *'`ip netns exec`'* ]]
	[[ "$output" == *"nsenter --net=/run/netns/NAME"* ]]

	# the command docs/operations.md gives, with this sandbox's namespace
	run nsenter --net="/run/netns/$NS" "$SOCKMESHD" "${ARGS[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
	# and it is the node's namespace: its address is there
	nsenter --net="/run/netns/$NS" ip -o addr show | grep -qF "$(sb_node_ip4 node1)/"

	# a running node's admin port, reached the same way (the sandbox starts daemons
	# with nsenter --net too)
	sb_start_daemon node1
	nsenter --net="/run/netns/$NS" curl -s http://127.0.0.1:15020/metrics |
		grep -q '^sockmesh_build_info{'
}
