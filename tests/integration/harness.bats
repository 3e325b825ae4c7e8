#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The test harness itself: its checks must fail closed. Debian's jq 1.6 exits 0
# when `jq -e` reads no input, so a readiness or record check on an empty answer
# passed; scripts/sandbox.sh wraps jq so that it cannot. No root needed.

load helpers

@test "jq -e fails on empty input, in every spelling of the flag" {
	run jq -e '.ready == true' <<<""
	[ "$status" -eq 4 ]
	run jq -er '.x' </dev/null
	[ "$status" -eq 4 ]
	run jq --exit-status . <<<""
	[ "$status" -eq 4 ]
	run jq -c -e 'select(.a == 1)' <<<'{"a": 2}'
	[ "$status" -eq 4 ]
}

@test "jq -e still passes on a true result and fails on a false one" {
	run jq -e '.ready == true' <<<'{"ready": true}'
	[ "$status" -eq 0 ]
	[ "$output" = true ]
	run jq -er '.name' <<<'{"name": "node1"}'
	[ "$status" -eq 0 ]
	[ "$output" = node1 ]
	run jq -e '.ready == true' <<<'{"ready": false}'
	[ "$status" -eq 1 ]
	# without -e, jq is untouched: empty input is no output and status 0
	run jq '.x' <<<""
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "a daemon whose status answer is empty, or not ready, is not ready" {
	sb_cli() { printf ''; }
	run sb_daemon_ready node1
	[ "$status" -ne 0 ]
	sb_cli() { echo '{"ready": false}'; }
	run sb_daemon_ready node1
	[ "$status" -ne 0 ]
	sb_cli() { return 1; }
	run sb_daemon_ready node1
	[ "$status" -ne 0 ]
	sb_cli() { echo '{"ready": true}'; }
	run sb_daemon_ready node1
	[ "$status" -eq 0 ]
}
