#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The build itself: the version is spelled once. No root needed.

setup() {
	REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	OUT=$BATS_TEST_TMPDIR/out
	# make test runs this file from inside make: its flags and command-line
	# variables (OUTPUT, SANITIZE, TESTS) must not leak into the builds here.
	unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
}

@test "the version is spelled once, in VERSION, and the binaries print it" {
	local version bin=${SM_OUTPUT:-$REPO/.output}/sockmesh
	version=$(cat "$REPO/VERSION")
	[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]]
	# nothing that is built or installed spells it again (docs/ transcripts of a
	# command's output are examples, not sources)
	run grep -rnP --exclude-dir=fuzz "(?<![0-9.])\Q$version\E(?![0-9.])" "$REPO/Makefile" \
		"$REPO/userspace" "$REPO/include" "$REPO/bpf" "$REPO/scripts" "$REPO/tests" \
		"$REPO/docs/man"
	echo "$output"
	[ -z "$output" ]
	run grep -rn 'define SOCKMESH_VERSION' "$REPO/userspace" "$REPO/include"
	[ -z "$output" ]
	[ -x "$bin" ] || { echo "missing $bin: build it first (make)"; return 1; }
	run "$bin" --version
	[ "$output" = "sockmesh $version" ]
}
