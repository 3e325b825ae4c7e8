#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A throwaway etcd for tests: mutual TLS only, one member, data under DIR.
# Never use it outside tests.
#
#   scripts/test-etcd.sh pki DIR [IP...]
#       A CA (DIR/ca.pem) and, signed by it (ECDSA P-256, valid 1 day):
#       DIR/server.pem + server-key.pem (SANs 127.0.0.1, localhost and each IP;
#       extended key usage serverAuth AND clientAuth: etcd 3.4's JSON gateway
#       dials etcd's own gRPC port with the server certificate, which
#       --client-cert-auth refuses without clientAuth), and
#       DIR/client-NAME.pem + client-NAME-key.pem for operator and node1..node9
#       (subject CN=NAME: etcd maps it to the user NAME on gRPC, e.g. etcdctl), and
#       DIR/client-NAME-nocn.pem + client-NAME-nocn-key.pem, the same without a
#       Common Name (URI SAN spiffe://etcd.test/NAME): with authentication
#       enabled, etcd 3.4 refuses every gateway (/v3/...) request whose client
#       certificate has a CN (HTTP 400), so gateway clients need these then.
#       Kept when already there and still valid for the IPs asked (fast).
#   scripts/test-etcd.sh start DIR ADDR [--client-port N] [--peer-port N] [--netns NS]
#       Start /usr/bin/etcd (https on ADDR:2379 for clients, ADDR:2380 for its
#       peer port, unless other ports are given), inside network namespace NS
#       (/run/netns/NS) if asked; data in DIR/data, log in DIR/etcd.log, pid in
#       DIR/etcd.pid. Waits at most 15 s for `etcdctl endpoint health`. Prints
#       nothing on success, the log's tail on failure (exit 1). Runs pki first.
#   scripts/test-etcd.sh stop DIR
#       TERM the etcd of DIR/etcd.pid, KILL after 5 s. No pid file: nothing to do.
#   scripts/test-etcd.sh ctl DIR ADDR[:PORT] [--netns NS] ARGS...
#       etcdctl (API 3) with the operator's client certificate.
#   scripts/test-etcd.sh env DIR ADDR[:PORT]
#       Print the ETCDCTL_* variables of ctl, one `export NAME=VALUE` a line.
set -euo pipefail

ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
CLIENTS=(operator node1 node2 node3 node4 node5 node6 node7 node8 node9)

usage() {
	sed -n 's/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

die() {
	echo "test-etcd: $*" >&2
	exit 1
}

# ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT) to host:port, the client port by default.
hostport() {
	case "$1" in
	\[*\]:*) echo "$1" ;;
	\[*\]) echo "$1:2379" ;;
	*:*:*) echo "[$1]:2379" ;;
	*:*) echo "$1" ;;
	*) echo "$1:2379" ;;
	esac
}

# Sign a leaf in DIR: file name, subject, extensions file.
sign_leaf() {
	local dir=$1 name=$2 subj=$3 ext=$4
	openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name-key.pem.tmp" 2>/dev/null
	openssl req -new -key "$dir/$name-key.pem.tmp" -subj "$subj" -out "$dir/$name.csr" 2>/dev/null
	openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
		-CAcreateserial -days 1 -sha256 -extfile "$ext" -out "$dir/$name.pem.tmp" 2>/dev/null
	rm -f "$dir/$name.csr"
	mv "$dir/$name-key.pem.tmp" "$dir/$name-key.pem"
	mv "$dir/$name.pem.tmp" "$dir/$name.pem"
}

cmd_pki() {
	[ $# -ge 1 ] || usage
	local dir=$1
	shift
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local sans="IP:127.0.0.1,DNS:localhost" ip
	for ip in "$@"; do
		sans+=",IP:$ip"
	done
	# fast path: everything there, valid for another hour, same SANs
	if [ -s "$dir/sans" ] && [ "$(cat "$dir/sans")" = "$sans" ] &&
		openssl x509 -checkend 3600 -noout -in "$dir/server.pem" >/dev/null 2>&1 &&
		[ -s "$dir/client-node9-nocn.pem" ]; then
		return 0
	fi
	(
		umask 077
		openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca-key.pem" 2>/dev/null
		openssl req -new -x509 -key "$dir/ca-key.pem" -subj "/CN=sockmesh test etcd CA" \
			-days 2 -sha256 -addext basicConstraints=critical,CA:TRUE \
			-addext keyUsage=critical,keyCertSign,cRLSign -out "$dir/ca.pem" 2>/dev/null
		cat >"$dir/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EXT
		cat >"$dir/client.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
		sign_leaf "$dir" server /CN=etcd "$dir/server.ext"
		local c
		for c in "${CLIENTS[@]}"; do
			sign_leaf "$dir" "client-$c" "/CN=$c" "$dir/client.ext"
			cp "$dir/client.ext" "$dir/client-nocn.ext"
			echo "subjectAltName=URI:spiffe://etcd.test/$c" >>"$dir/client-nocn.ext"
			sign_leaf "$dir" "client-$c-nocn" "/O=sockmesh test" "$dir/client-nocn.ext"
		done
		rm -f "$dir"/*.ext "$dir/ca.srl"
		echo "$sans" >"$dir/sans"
	) || die "pki in $dir failed (is openssl installed?)"
}

netns_prefix=()
set_netns() {
	[ -e "/run/netns/$1" ] || die "no network namespace /run/netns/$1"
	netns_prefix=(nsenter "--net=/run/netns/$1")
}

ctl_env() {
	local dir=$1 hp
	hp=$(hostport "$2")
	echo "export ETCDCTL_API=3"
	echo "export ETCDCTL_ENDPOINTS=https://$hp"
	echo "export ETCDCTL_CACERT=$dir/ca.pem"
	echo "export ETCDCTL_CERT=$dir/client-operator.pem"
	echo "export ETCDCTL_KEY=$dir/client-operator-key.pem"
}

run_ctl() {
	local dir=$1 addr=$2
	shift 2
	(
		eval "$(ctl_env "$dir" "$addr")"
		exec "${netns_prefix[@]}" "$ETCDCTL" --dial-timeout=2s --command-timeout=5s "$@"
	)
}

cmd_start() {
	[ $# -ge 2 ] || usage
	local dir=$1 addr=$2 cport=2379 pport=2380
	shift 2
	while [ $# -gt 0 ]; do
		case "$1" in
		--client-port) cport=$2; shift 2 ;;
		--peer-port) pport=$2; shift 2 ;;
		--netns) set_netns "$2"; shift 2 ;;
		*) usage ;;
		esac
	done
	[ -x "$ETCD" ] || die "$ETCD not found: install etcd-server (scripts/install-deps.sh)"
	[ -x "$ETCDCTL" ] || die "$ETCDCTL not found: install etcd-client (scripts/install-deps.sh)"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ -s "$dir/etcd.pid" ] && kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null; then
		die "an etcd already runs for $dir (pid $(cat "$dir/etcd.pid")): stop it first"
	fi
	case "$addr" in
	127.*|::1) cmd_pki "$dir" ;;
	*) cmd_pki "$dir" "$addr" ;;
	esac
	local host=$addr
	case "$addr" in *:*) host="[$addr]" ;; esac
	local name
	name="test-$(echo "$dir" | md5sum | cut -c1-12)"
	"${netns_prefix[@]}" "$ETCD" --name "$name" --data-dir "$dir/data" \
		--listen-client-urls "https://$host:$cport" --advertise-client-urls "https://$host:$cport" \
		--listen-peer-urls "https://$host:$pport" --initial-advertise-peer-urls "https://$host:$pport" \
		--initial-cluster "$name=https://$host:$pport" --initial-cluster-state new \
		--client-cert-auth --trusted-ca-file "$dir/ca.pem" \
		--cert-file "$dir/server.pem" --key-file "$dir/server-key.pem" \
		--peer-client-cert-auth --peer-trusted-ca-file "$dir/ca.pem" \
		--peer-cert-file "$dir/server.pem" --peer-key-file "$dir/server-key.pem" \
		--auto-compaction-retention 0 --quota-backend-bytes $((256 * 1024 * 1024)) \
		--logger zap --log-outputs stderr \
		</dev/null >"$dir/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"
	local i
	for ((i = 0; i < 60; i++)); do
		if ! kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null; then
			tail -n 30 "$dir/etcd.log" >&2
			rm -f "$dir/etcd.pid"
			die "etcd exited during start (log above: $dir/etcd.log)"
		fi
		if run_ctl "$dir" "$host:$cport" endpoint health >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.25
	done
	tail -n 30 "$dir/etcd.log" >&2
	cmd_stop "$dir"
	die "etcd on https://$host:$cport not healthy after 15 s (log above: $dir/etcd.log)"
}

cmd_stop() {
	[ $# -eq 1 ] || usage
	local pidfile=$1/etcd.pid pid i
	[ -s "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
pki) cmd_pki "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
ctl)
	[ $# -ge 2 ] || usage
	d=$(cd "$1" && pwd)
	a=$2
	shift 2
	if [ "${1:-}" = --netns ]; then
		set_netns "$2"
		shift 2
	fi
	run_ctl "$d" "$a" "$@"
	;;
env)
	[ $# -eq 2 ] || usage
	ctl_env "$(cd "$1" && pwd)" "$2"
	;;
*) usage ;;
esac
