#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Catalog changes while the daemon runs: SIGHUP applies a new catalog (or keeps
# the old one when the new one is bad), and a workload whose cgroup appears
# after the start is captured at once (tests/integration/enroll.bats has more).

load helpers

setup() {
	sm_standard_sandbox
}

teardown() {
	sm_teardown
}

service_listed() { # NODE PORT
	sb_cli "$1" services -o json | jq -e --argjson p "$2" 'any(.[]; .port == $p)' >/dev/null
}

@test "SIGHUP applies a new catalog: a new service is listed and captured" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8084 echo
	run service_listed node1 8084
	[ "$status" -ne 0 ]

	sb_add_service 10.11.0.2 8084 server added-later
	sb_write_catalog
	# both ends: node2's daemon only accepts CONNECTs to services it knows it hosts
	kill -HUP "$(sb_daemon_pid node1)" "$(sb_daemon_pid node2)"
	sm_wait_until 10 service_listed node1 8084
	sm_wait_until 10 service_listed node2 8084

	before=$(sm_counter node1 connect_captured)
	run sm_send node1 client 10.11.0.2:8084 100000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_counter node1 connect_captured)" -eq $((before + 1)) ]
	grep -q 'SIGHUP: catalog reloaded' "$(sb_daemon_log node1)"
}

@test "SIGHUP with a broken catalog keeps the old one and the daemon keeps working" {
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	services_before=$(sb_cli node1 services -o json)

	echo "services: [ {address: 10.11.0.2, port: 70000" >"$(sb_catalog)"
	kill -HUP "$(sb_daemon_pid node1)"
	sm_wait_until 10 grep -q 'keeping the current catalog' "$(sb_daemon_log node1)"
	grep 'keeping the current catalog' "$(sb_daemon_log node1)"

	sb_alive "$(sb_daemon_pid node1)"
	[ "$(sb_cli node1 services -o json)" = "$services_before" ]
	before=$(sm_counter node1 connect_captured)
	run sm_send node1 client 10.11.0.2:8080 10000 --expect echo
	[ "$status" -eq 0 ]
	[ "$(sm_counter node1 connect_captured)" -eq $((before + 1)) ]
}

@test "a workload whose cgroup appears after the start is captured from its first connect" {
	rmdir "$(sb_cgroup_dir node1 client)"
	sb_start_daemon node1
	sb_start_daemon node2
	sb_serve node2 server 10.11.0.2:8080 echo
	sb_cli node1 workloads -o json | jq -e '.[] | select(.name == "client") |
		.enrolled == true and .cgroup_id == 0'

	# no wait, no signal: enrollment is by the cgroup's path, in the kernel
	mkdir "$(sb_cgroup_dir node1 client)"
	before=$(sm_counter node1 connect_captured)
	run sm_send node1 client 10.11.0.2:8080 10000 --expect echo
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(sm_counter node1 connect_captured)" -eq $((before + 1)) ]
}

# big_catalog N: the sandbox's catalog with N more nodes (10.200.0.0/16 and up).
big_catalog() {
	awk -v n="$1" '{ print } /^nodes:$/ {
		for (i = 0; i < n; i++)
			printf "  - name: extra%d\n    addresses: [10.%d.%d.%d]\n", i, 200 + int(i / 65536),
				int(i / 256) % 256, i % 256
	}' "$(sb_catalog)" >"$SB_DIR/big.yaml"
	mv "$SB_DIR/big.yaml" "$(sb_catalog)"
}

@test "SIGHUP with a 100,000-node catalog: the control socket answers while it is read" {
	sb_start_daemon node1
	big_catalog 100000
	log=$(sb_daemon_log node1)
	kill -HUP "$(sb_daemon_pid node1)"
	answered=0
	deadline=$((SECONDS + 90))
	# the main loop keeps turning: every status answers within a second
	while ! grep -q 'SIGHUP: catalog reloaded\|keeping the current catalog' "$log"; do
		run timeout 1 "$SOCKMESH" -S "$(sb_socket node1)" status -o json
		[ "$status" -eq 0 ] || { echo "status did not answer within 1 s during the reload"; false; }
		answered=$((answered + 1))
		((SECONDS < deadline)) || { echo "the reload did not end in 90 s"; false; }
	done
	grep 'SIGHUP: read' "$log"
	grep -q 'SIGHUP: read .* (100002 nodes' "$log"
	grep -q 'SIGHUP: catalog reloaded' "$log"
	echo "status answered $answered times during the reload"
}
