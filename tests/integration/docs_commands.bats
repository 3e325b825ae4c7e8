#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# Every command docs/operations.md shows is run by a test, or the checker
# (tests/tools/check-ops-commands.py) says why it cannot run here; and the
# checker fails when a command is added without a test, or when the test
# that ran a command stops running it. No daemon runs, no sandbox.

load helpers

CHECK=tests/tools/check-ops-commands.py

setup() {
	cd "$SM_REPO" || return 1
}

@test "every command of docs/operations.md is run by a test or says why it cannot be" {
	run python3 "$CHECK" docs/operations.md .
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *'kill -USR2 "$(sockmesh status -o json | jq .pid)"  <- tests/integration/upgrade.bats'* ]]
	[[ "$output" == *"dpkg -i .output/deb/sockmesh_*.deb  <- tests/integration/package.bats"* ]]
}

@test "the check fails on a new command without a test, and on a test that stopped running its command" {
	local doc=$BATS_TEST_TMPDIR/operations.md repo=$BATS_TEST_TMPDIR/repo
	cp docs/operations.md "$doc"
	printf '\n```sh\nsockmeshd --frobnicate\n```\n' >>"$doc"
	run python3 "$CHECK" "$doc" .
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *'`sockmeshd --frobnicate` is run by no test'* ]]

	mkdir -p "$repo/tests/integration" "$repo/scripts"
	cp tests/integration/*.bats "$repo/tests/integration/"
	cp scripts/sandbox.sh "$repo/scripts/"
	sed -i '/kill -USR2 "\$(sm_status/d' "$repo/tests/integration/upgrade.bats"
	run python3 "$CHECK" docs/operations.md "$repo"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *'tests/integration/upgrade.bats no longer runs it'* ]]
}
