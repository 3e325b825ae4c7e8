#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Install every build and test dependency of sockmesh with apt-get (Debian 12).
# Idempotent: when everything is present it only asks dpkg and returns in well
# under a second. Run as root; the Makefile calls it for the targets that need it.
set -euo pipefail

PKGS=(
	# build
	clang llvm gcc make pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
	libssl-dev libnghttp2-dev libjson-c-dev libyaml-dev uthash-dev openssl
	libmicrohttpd-dev libcap-dev
	# tests and linters
	libcmocka-dev bats iproute2 procps psmisc socat iperf3 jq python3
	python3-jsonschema
	cppcheck clang-tidy clang-format
	# tests/integration/metrics.bats: a real HTTP client and Prometheus text parser
	curl python3-prometheus-client
	# make fuzz (libFuzzer runtime)
	libclang-rt-14-dev
	# bench (bench/hbone.sh compares against HAProxy)
	hyperfine haproxy
)

# HBONE interop tests drive sockmeshd with Node.js's own http2 module; any
# Node.js already on the machine will do, else Debian's.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)

missing=()
for p in "${PKGS[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root (apt-get needs it): scripts/install-deps.sh" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them once, then install.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
