#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# verify-unit.sh [SOCKMESHD]: `systemd-analyze verify` on
# packaging/sockmeshd.service, without installing it and without systemd as
# PID 1. verify checks that ExecStart's binary exists, so the unit is copied
# to a temporary directory with /usr/sbin/sockmeshd replaced by SOCKMESHD
# (default: .output/sockmeshd of this tree). Exit status: verify's; any
# message it prints about the unit counts as a failure too.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$top/.output/sockmeshd}")
if [ ! -x "$bin" ]; then
	echo "verify-unit.sh: $bin is not an executable (build it: make)" >&2
	exit 1
fi
if ! command -v systemd-analyze >/dev/null; then
	echo "verify-unit.sh: systemd-analyze missing (apt-get install systemd)" >&2
	exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/sbin/sockmeshd|$bin|" "$top/packaging/sockmeshd.service" >"$dir/sockmeshd.service"
out=$(systemd-analyze verify --man=no "$dir/sockmeshd.service" 2>&1) || {
	echo "$out" >&2
	exit 1
}
# verify reports some problems (unknown directives, bad values) without failing
if grep -i "sockmeshd.service" <<<"$out" >&2; then
	exit 1
fi
echo "$dir/sockmeshd.service: systemd-analyze verify passed"
