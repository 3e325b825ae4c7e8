#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The build itself (docs/building.md): user flags add to the ones the build needs,
# a plain `make` installs nothing, an edited header rebuilds only what includes it,
# vmlinux.h has a stated source, the version is spelled once. Each test builds into
# its own temporary OUTPUT; apt-get and dpkg-query are stubs on PATH where a test
# says so. No root needed.

setup() {
	REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	OUT=$BATS_TEST_TMPDIR/out
	# make test runs this file from inside make: its flags and command-line
	# variables (OUTPUT, SANITIZE, TESTS) must not leak into the builds here.
	unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
}

# The commands `make -n V=1 ARGS...` would run, one per line.
dry_run() {
	make -C "$REPO" --no-print-directory -n V=1 OUTPUT="$OUT" "$@"
}

# The compile command of one output file in $output (from dry_run).
command_for() {
	grep -E -- "-o $1( |\$)" <<<"$output"
}

# Fails when $output (from dry_run) compiles or links $1.
not_built() {
	if command_for "$1"; then
		echo "would rebuild $1"
		return 1
	fi
}

# apt-get records its arguments; dpkg-query answers as Debian's does for the
# format the caller gives, reporting the packages in $1 as not installed.
stub_packages() {
	local bin=$BATS_TEST_TMPDIR/bin
	mkdir -p "$bin"
	cat >"$bin/apt-get" <<EOF
#!/bin/sh
echo "apt-get \$*" >>"$BATS_TEST_TMPDIR/apt-get.log"
EOF
	cat >"$bin/dpkg-query" <<EOF
#!/usr/bin/env bash
missing=" $1 "
fmt='\${db:Status-Status}'
while [ \$# -gt 0 ]; do
	case \$1 in
	-W | --show) ;;
	-f) fmt=\$2; shift ;;
	-f* | --showformat=*) fmt=\${1#*=}; fmt=\${fmt#-f} ;;
	*)
		[[ "\$missing" == *" \$1 "* ]] && { echo "dpkg-query: no packages found matching \$1" >&2; rc=1; shift; continue; }
		line=\${fmt//'\${Package}'/\$1}
		printf '%b' "\${line//'\${db:Status-Status}'/installed}"
		;;
	esac
	shift
done
exit \${rc:-0}
EOF
	chmod +x "$bin/apt-get" "$bin/dpkg-query"
	PATH=$bin:$PATH
}

@test "user CFLAGS, CPPFLAGS and LDFLAGS add to the flags the build needs" {
	run dry_run CFLAGS='-O0' CPPFLAGS='-DSM_USER_MARK' "$OUT/lib/util.o"
	[ "$status" -eq 0 ]
	cmd=$(command_for "$OUT/lib/util.o")
	for f in -O0 -DSM_USER_MARK -Werror -Wall -std=gnu11 -D_GNU_SOURCE -Iinclude \
		-Iuserspace/lib -DSOCKMESH_VERSION=; do
		[[ " $cmd " == *" $f"* ]] || { echo "missing $f in: $cmd"; return 1; }
	done
	[[ " $cmd " != *" -O2 "* ]]
	run dry_run SANITIZE=1 LDFLAGS='-Wl,-z,now' "$OUT/sockmesh"
	[ "$status" -eq 0 ]
	cmd=$(command_for "$OUT/sockmesh")
	[[ "$cmd" == *-fsanitize=address* && "$cmd" == *-Wl,-z,now* ]]
}

@test "make CFLAGS=-O0 and CFLAGS='-O2 -g' compile without a warning" {
	# table.c uses vasprintf: without -D_GNU_SOURCE it was an implicit declaration
	run make -C "$REPO" OUTPUT="$OUT/o0" CFLAGS=-O0 "$OUT/o0/lib/table.o" "$OUT/o0/cli/sockmesh.o"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *warning* ]]
	run make -C "$REPO" OUTPUT="$OUT/o2" CFLAGS='-O2 -g' "$OUT/o2/lib/table.o"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *warning* ]]
}

@test "a plain make installs nothing and needs only the build's packages" {
	stub_packages "haproxy iperf3 hyperfine libcmocka-dev bats"
	run make -C "$REPO" OUTPUT="$OUT" CFLAGS=-O0 "$OUT/lib/util.o"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -f "$OUT/lib/util.o" ]
	[ ! -e "$BATS_TEST_TMPDIR/apt-get.log" ] || { cat "$BATS_TEST_TMPDIR/apt-get.log"; return 1; }
}

@test "a plain make with a build package missing stops before compiling and names it and make deps" {
	stub_packages "libssl-dev libcap-dev haproxy"
	run make -C "$REPO" OUTPUT="$OUT" CFLAGS=-O0 "$OUT/lib/util.o"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *libssl-dev* && "$output" == *libcap-dev* && "$output" == *"make deps"* ]]
	[[ "$output" != *haproxy* ]]
	[ ! -e "$OUT/lib/util.o" ]
	[ ! -e "$BATS_TEST_TMPDIR/apt-get.log" ]
}

@test "make deps installs what is missing; make demo and make test install before they build" {
	stub_packages "haproxy"
	[ "$(id -u)" -eq 0 ] || skip "apt-get runs as root only"
	run make -C "$REPO" OUTPUT="$OUT" deps
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^apt-get install .*haproxy' "$BATS_TEST_TMPDIR/apt-get.log"
	for goal in demo test; do
		run dry_run "$goal"
		[ "$status" -eq 0 ]
		first=$(grep -n -m1 -e 'scripts/install-deps.sh' -e ' -c ' <<<"$output")
		[[ "$first" == *"scripts/install-deps.sh"* && "$first" != *--check* ]] ||
			{ echo "make $goal: first: $first"; return 1; }
	done
}

@test "an edited library header rebuilds only the objects that include it" {
	local objs=("$OUT/lib/ratelimit.o" "$OUT/lib/sinks.o" "$OUT/lib/util.o" "$OUT/cli/sockmesh.o")
	run make -C "$REPO" OUTPUT="$OUT" CFLAGS=-O0 "${objs[@]}"
	[ "$status" -eq 0 ]
	run dry_run CFLAGS=-O0 -W userspace/lib/ratelimit.h "${objs[@]}"
	[ "$status" -eq 0 ]
	command_for "$OUT/lib/ratelimit.o"
	command_for "$OUT/lib/sinks.o"
	not_built "$OUT/lib/util.o"
	not_built "$OUT/cli/sockmesh.o"
	# and the dependency files name the header, not a guess
	grep -q 'userspace/lib/ratelimit.h' "$OUT/lib/sinks.d"
	# an object without its .d (built before there were any) is rebuilt once
	rm "$OUT/lib/util.d"
	run dry_run CFLAGS=-O0 "${objs[@]}"
	command_for "$OUT/lib/util.o"
	not_built "$OUT/lib/sinks.o"
}

@test "an edited daemon or BPF header rebuilds only its users; the skeleton follows the BPF objects" {
	local objs=("$OUT/daemon/hbone.o" "$OUT/daemon/main.o" "$OUT/daemon/flowacct.o")
	run make -C "$REPO" OUTPUT="$OUT" CFLAGS=-O0 "${objs[@]}"
	echo "$output" | tail -n 20
	[ "$status" -eq 0 ]
	run dry_run CFLAGS=-O0 -W userspace/daemon/hbone_int.h "${objs[@]}"
	[ "$status" -eq 0 ]
	command_for "$OUT/daemon/hbone.o"
	not_built "$OUT/daemon/main.o"
	not_built "$OUT/daemon/flowacct.o"
	# sockpairs.h is included by redirect and flowacct only; flowacct.c includes
	# the skeleton, hbone.c and main.c do not
	run dry_run CFLAGS=-O0 -W bpf/lib/sockpairs.h "${objs[@]}"
	[ "$status" -eq 0 ]
	command_for "$OUT/bpf/redirect.bpf.o"
	command_for "$OUT/bpf/flowacct.bpf.o"
	not_built "$OUT/bpf/intercept.bpf.o"
	grep -q "gen object $OUT/sockmesh.bpf.o" <<<"$output"
	grep -q "gen skeleton $OUT/sockmesh.bpf.o" <<<"$output"
	command_for "$OUT/daemon/flowacct.o"
	not_built "$OUT/daemon/main.o"
	not_built "$OUT/daemon/hbone.o"
}

@test "vmlinux.h: dumped from VMLINUX_BTF, or VMLINUX_H as given, else a clear error" {
	run make -C "$REPO" OUTPUT="$OUT" VMLINUX_BTF=/nonexistent/btf "$OUT/vmlinux.h"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"/nonexistent/btf"* && "$output" == *VMLINUX_H=* && "$output" == *docs/building.md* ]]
	[ ! -e "$OUT/vmlinux.h" ]
	printf '/* a pinned header */\n' >"$BATS_TEST_TMPDIR/vmlinux.h"
	run make -C "$REPO" OUTPUT="$OUT" VMLINUX_BTF=/nonexistent/btf \
		VMLINUX_H="$BATS_TEST_TMPDIR/vmlinux.h" "$OUT/vmlinux.h"
	[ "$status" -eq 0 ]
	cmp "$BATS_TEST_TMPDIR/vmlinux.h" "$OUT/vmlinux.h"
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

@test "every docs page the Makefile and make help name exists" {
	local page n=0
	while read -r page; do
		[ -f "$REPO/$page" ] || { echo "missing $page"; return 1; }
		n=$((n + 1))
	done < <(grep -ohE 'docs/[a-z0-9_-]+\.md' "$REPO/Makefile" "$REPO/README.md" | sort -u)
	[ "$n" -gt 0 ]
}

@test "make help names each target and says which ones install packages" {
	# with the .d files included, MAKEFILE_LIST holds more than the Makefile
	run make -C "$REPO" --no-print-directory help
	[ "$status" -eq 0 ]
	echo "$output"
	for t in all deps test check test-unit test-integration lint demo clean install fuzz; do
		grep -qE "^  $t +[a-z]" <<<"$output" || { echo "no line for $t"; return 1; }
	done
	[[ "$output" != *Makefile* ]]
	grep -E '^  (deps|demo|test|check) ' <<<"$output" | grep -c 'install' | grep -qx 4
}
