#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Every build and test dependency of sockmesh (Debian 12 packages), listed here
# only, by what needs them.
#
#   scripts/install-deps.sh                 install what is missing (apt-get; root)
#   scripts/install-deps.sh --check GROUP...  only report: exit 1 naming what is missing
#
# Groups: build (make), unit (make test-unit), lint (make lint), integration
# (make test-integration, make demo), fuzz (make fuzz), bench (make bench), deb
# (make deb, tests/integration/package.bats).
# `make deps`, `make demo` and `make test` install; every other target only
# checks its groups (docs/building.md). Idempotent: when everything is present
# it asks dpkg once and returns in well under a second.
set -euo pipefail

declare -A GROUP
GROUP[build]="clang gcc make pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
	libssl-dev libnghttp2-dev libjson-c-dev libyaml-dev uthash-dev libmicrohttpd-dev
	libcap-dev libcurl4-openssl-dev"
# etcd-server, etcd-client and openssl: tests/unit/test_etcd.c runs a real etcd
# (scripts/test-etcd.sh)
GROUP[unit]="libcmocka-dev etcd-server etcd-client openssl"
GROUP[lint]="cppcheck clang-tidy clang-format python3 python3-jsonschema"
# openssl: scripts/test-pki.sh; curl and python3-prometheus-client:
# tests/integration/metrics.bats (a real HTTP client and Prometheus text parser);
# rsyslog: tests/integration/shippers.bats (imfile follows the flow log); prometheus:
# tests/integration/prometheus.bats (scrapes the admin port). Both run as plain
# processes the tests start: nothing uses the services the packages install.
# gdb: tests/tools/breakhold.py holds one thread of a daemon at a chosen function.
GROUP[integration]="bats iproute2 procps psmisc socat iperf3 jq python3 python3-jsonschema
	openssl curl python3-prometheus-client rsyslog prometheus gdb"
# libFuzzer's runtime; llvm-profdata and llvm-cov for make fuzz-coverage
GROUP[fuzz]="libclang-rt-14-dev llvm"
# bench/hbone.sh compares against HAProxy
GROUP[bench]="hyperfine haproxy iperf3"
# make deb: dpkg-buildpackage (dpkg-dev), dh (debhelper), lintian; fakeroot
# for a build as a user; man-db renders the man pages package.bats checks
GROUP[deb]="dpkg-dev debhelper lintian fakeroot man-db"
ALL_GROUPS=(build unit lint integration fuzz bench deb)

# HBONE interop tests drive sockmeshd with Node.js's own http2 module; any
# Node.js already on the machine will do, else Debian's.
command -v node >/dev/null 2>&1 || GROUP[integration]+=" nodejs"

usage() {
	sed -n 's/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

check=0
groups=()
case "${1:-}" in
--check)
	check=1
	shift
	[ $# -gt 0 ] || usage
	groups=("$@")
	;;
"") groups=("${ALL_GROUPS[@]}") ;;
*) usage ;;
esac

want=()
for g in "${groups[@]}"; do
	[ -n "${GROUP[$g]+set}" ] || { echo "install-deps: unknown group '$g' (${ALL_GROUPS[*]})" >&2; exit 2; }
	# shellcheck disable=SC2206 # the lists are words on purpose
	want+=(${GROUP[$g]})
done
mapfile -t want < <(printf '%s\n' "${want[@]}" | awk '!seen[$0]++')

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "install-deps: no dpkg-query (not Debian?): cannot check for ${want[*]};" \
		"install your distribution's equivalents (docs/building.md)" >&2
	# a check cannot tell; the compiler will name what is really missing
	[ "$check" -eq 1 ] && exit 0
	exit 1
fi

# One dpkg query for all: a package that is not known at all prints nothing.
declare -A installed
while read -r name status; do
	[ "$status" = installed ] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${want[@]}" 2>/dev/null || true)
missing=()
for p in "${want[@]}"; do
	[ -n "${installed[$p]+set}" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$check" -eq 1 ]; then
	echo "sockmesh: missing packages (${groups[*]}): ${missing[*]}" >&2
	echo "sockmesh: install them with 'make deps' (as root, apt-get), then run make again" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root (apt-get needs it): make deps" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them once, then install.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
