#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Generate a throwaway SPIFFE PKI for tests and demos with the openssl CLI:
# good X.509-SVIDs for nodes and workloads, a second ("other") root, a root of
# a foreign trust domain, and one credential directory per kind of bad SVID.
# Never use these outside tests.
#
# Usage: scripts/test-pki.sh [-v] DIR [TRUST_DOMAIN [NAME=SPIFFE_ID ...]]
#   TRUST_DOMAIN defaults to sockmesh.test. Each NAME=SPIFFE_ID adds DIR/NAME/,
#   a workload SVID for SPIFFE_ID (any trust domain string; it is not checked).
#   -v prints what is generated; otherwise nothing is printed on success.
#
# Every credential directory has the layout of userspace/lib/tlsctx.h:
#   cert.pem (leaf, then its intermediate), key.pem, bundle.pem (roots).
#
# What DIR holds afterwards:
#   ca/root.pem, ca/int.pem       our root and intermediate CA (ECDSA P-256)
#   ca/other-root.pem             a second, unrelated root ("other")
#   ca/foreign-root.pem           a root of another trust domain: its URI SAN is
#                                 spiffe://wrong.test
#   both-roots.pem                root.pem + other-root.pem (a rotation-overlap bundle)
#   foreign-bundle.pem            root.pem + foreign-root.pem: a bundle for TD that
#                                 also holds wrong.test's root (refused at load)
#   node1/ .. node9/              spiffe://TD/sockmesh/node/nodeN, bundle = our root
#   NAME/                         one per NAME=SPIFFE_ID argument, bundle = our root
#   other/                        spiffe://TD/sockmesh/other issued under the other
#                                 root; bundle = other root (the "new root" of a rotation)
#   foreign/                      spiffe://TD/sockmesh/foreign issued by the foreign
#                                 root; bundle = foreign-bundle.pem
#   eku/server_only/ eku/client_only/ eku/none/
#                                 good SVIDs whose EKU is serverAuth only, clientAuth
#                                 only, or absent (spiffe://TD/sockmesh/eku/KIND)
#   bad/KIND/                     spiffe://TD/sockmesh/bad/KIND, chaining to our root
#                                 and with bundle = our root, except as stated:
#     expired             validity ended yesterday
#     not_yet_valid       validity starts tomorrow
#     unknown_ca          issued under the other root (not in our bundle)
#     wrong_trust_domain  spiffe://wrong.test/..., issued under the other root
#     no_uri_san          only a DNS SAN
#     two_uri_sans        two spiffe:// URI SANs
#     not_spiffe_uri      an https:// URI SAN
#     leaf_is_ca          basicConstraints CA:TRUE
#     key_cert_sign       keyUsage digitalSignature + keyCertSign
#     crl_sign            keyUsage digitalSignature + cRLSign
#     no_key_usage        no keyUsage extension
#     eku_wrong           EKU codeSigning only
#     rsa_key             an RSA 2048 key instead of ECDSA P-256
#     int_expired         the leaf is valid, its intermediate expired yesterday
#     sha1_signed         the leaf is signed with SHA-1 (by our intermediate)
#     int_sha1_signed     a good leaf; its intermediate is signed with SHA-1
#     int_rsa1024         a good leaf; its intermediate has an RSA 1024 key
#
# Every signature is SHA-256 (ECDSA or RSA) except the two SHA-1 kinds.
# Validity: CAs from 2 days ago to 30 days ahead; good leaves from 1 hour ago
# to 1 day ahead. Dates are set with `openssl ca -startdate/-enddate` (the
# openssl 3.0 x509 command has no -not_before), so no faketime is needed.
# Re-running over the same DIR regenerates everything it owns. No network.
set -euo pipefail

usage() {
	echo "usage: $0 [-v] DIR [TRUST_DOMAIN [NAME=SPIFFE_ID ...]]" >&2
	exit 2
}

verbose=0
if [ "${1:-}" = -v ]; then
	verbose=1
	shift
fi
[ $# -ge 1 ] || usage
case "$1" in -*) usage ;; esac
dir=$1
td=${2:-sockmesh.test}
shift $(($# >= 2 ? 2 : 1))

if ! command -v openssl >/dev/null; then
	echo "test-pki: openssl not found (install it: scripts/install-deps.sh)" >&2
	exit 1
fi
if ! [[ $td =~ ^[a-z0-9._-]+$ ]]; then
	echo "test-pki: trust domain '$td' is not valid (use lowercase a-z, 0-9, '.', '-', '_')" >&2
	exit 2
fi
for arg in "$@"; do
	name=${arg%%=*}
	if [[ $arg != *=* ]] || ! [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || [ -z "${arg#*=}" ]; then
		echo "test-pki: '$arg' is not NAME=SPIFFE_ID (NAME of letters, digits, '.', '_', '-')" >&2
		exit 2
	fi
	case $name in
	ca | bad | eku | other | foreign | node[1-9] | both-roots.pem | \
		foreign-bundle.pem | .work)
		echo "test-pki: workload name '$name' is reserved; choose another" >&2
		exit 2
		;;
	esac
done

log() { [ $verbose -eq 0 ] || echo "test-pki: $*"; }
utc() { date -u -d "$1" +%Y%m%d%H%M%SZ; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$dir/.work
rm -rf "$work" "$dir/ca" "$dir/bad" "$dir/eku" "$dir/other" "$dir/foreign" "$dir"/node[1-9] \
	"$dir/both-roots.pem" "$dir/foreign-bundle.pem"
for arg in "$@"; do rm -rf "${dir:?}/${arg%%=*}"; done
mkdir -p "$work" "$dir/ca"
trap 'rm -rf "$work"' EXIT

ca_start=$(utc '-2 days')
ca_end=$(utc '+30 days')
leaf_start=$(utc '-1 hour')
leaf_end=$(utc '+1 day')
past_start=$(utc '-3 days')
past_end=$(utc '-1 day')
future_start=$(utc '+1 day')
future_end=$(utc '+2 days')

# One openssl ca config; the SAN of the certificate being issued comes from $SM_SAN.
cat >"$work/ca.cnf" <<'EOF'
[ca]
default_ca = sm
[sm]
database = $ENV::SM_WORK/index.txt
serial = $ENV::SM_WORK/serial
new_certs_dir = $ENV::SM_WORK
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
organizationName = optional
commonName = optional
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_ext_san]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectAltName = $ENV::SM_SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SM_SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_is_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SM_SAN
[key_cert_sign]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyCertSign
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SM_SAN
[crl_sign]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,cRLSign
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SM_SAN
[no_key_usage]
basicConstraints = critical,CA:FALSE
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SM_SAN
[eku_wrong]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectAltName = $ENV::SM_SAN
[eku_server_only]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SM_SAN
[eku_client_only]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = $ENV::SM_SAN
[eku_none]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectAltName = $ENV::SM_SAN
EOF
: >"$work/index.txt"
echo 01 >"$work/serial"
export SM_WORK=$work SM_SAN=

# newkey KEYFILE CSRFILE CN [rsa|rsa1024]: a fresh key and a CSR for it.
newkey() {
	local alg=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
	case ${4:-} in
	rsa) alg=(-newkey rsa:2048) ;;
	rsa1024) alg=(-newkey rsa:1024) ;;
	esac
	openssl req -new "${alg[@]}" -nodes -keyout "$1" -subj "/O=sockmesh-test/CN=$3" \
		-out "$2" 2>"$work/err" || {
		cat "$work/err" >&2
		exit 1
	}
}

# sign CSR OUT EXT START END ISSUER_PREFIX|self [KEY for self]
# The digest is $SM_MD when set (sha1 for the weak kinds), else SHA-256.
sign() {
	local issuer=(-cert "$6.pem" -keyfile "$6.key")
	[ "$6" = self ] && issuer=(-selfsign -keyfile "$7")
	openssl ca -config "$work/ca.cnf" -batch -notext -preserveDN -rand_serial \
		"${issuer[@]}" -in "$1" -out "$2" -extensions "$3" -startdate "$4" -enddate "$5" \
		-md "${SM_MD:-sha256}" >"$work/err" 2>&1 || {
		cat "$work/err" >&2
		exit 1
	}
}

# ca NAME CN ISSUER|self [START END KEYTYPE EXT]: a CA in $dir/ca/NAME.{pem,key}.
# EXT ca_ext_san adds the URI SAN $SM_SAN.
ca() {
	local out=$dir/ca/$1 ext=${7:-ca_ext}
	newkey "$out.key" "$work/$1.csr" "$2" "${6:-}"
	if [ "$3" = self ]; then
		sign "$work/$1.csr" "$out.pem" "$ext" "${4:-$ca_start}" "${5:-$ca_end}" self "$out.key"
	else
		sign "$work/$1.csr" "$out.pem" "$ext" "${4:-$ca_start}" "${5:-$ca_end}" "$dir/ca/$3"
	fi
	log "CA $1 ($2)"
}

# svid OUTDIR SAN [EXT START END ISSUER ROOT KEYTYPE]: a credential directory.
svid() {
	local out=$1 ext=${3:-leaf} start=${4:-$leaf_start} end=${5:-$leaf_end}
	local ca_name=${6:-int} root=${7:-root}
	mkdir -p "$out"
	newkey "$out/key.pem" "$work/leaf.csr" "${out##*/}" "${8:-}"
	SM_SAN=$2 sign "$work/leaf.csr" "$work/leaf.pem" "$ext" "$start" "$end" "$dir/ca/$ca_name"
	cat "$work/leaf.pem" "$dir/ca/$ca_name.pem" >"$out/cert.pem"
	cp "$dir/ca/$root.pem" "$out/bundle.pem"
	chmod 600 "$out/key.pem"
	log "SVID ${out#"$dir"/} ($2)"
}

ca root "sockmesh test root" self
ca int "sockmesh test intermediate" root
ca other-root "sockmesh other root" self
ca other-int "sockmesh other intermediate" other-root
ca int-expired "sockmesh expired intermediate" root "$past_start" "$past_end"
SM_MD=sha1 ca int-sha1 "sockmesh SHA-1-signed intermediate" root
ca int-rsa1024 "sockmesh RSA 1024 intermediate" root "" "" rsa1024
SM_SAN=URI:spiffe://wrong.test ca foreign-root "sockmesh wrong.test root" self "" "" "" ca_ext_san
cat "$dir/ca/root.pem" "$dir/ca/other-root.pem" >"$dir/both-roots.pem"
cat "$dir/ca/root.pem" "$dir/ca/foreign-root.pem" >"$dir/foreign-bundle.pem"

id=spiffe://$td/sockmesh
for n in 1 2 3 4 5 6 7 8 9; do # every node a sandbox may have
	svid "$dir/node$n" "URI:$id/node/node$n"
done
for arg in "$@"; do
	svid "$dir/${arg%%=*}" "URI:${arg#*=}"
done
svid "$dir/other" "URI:$id/other" leaf "" "" other-int other-root
svid "$dir/foreign" "URI:$id/foreign" leaf "" "" foreign-root
cp "$dir/foreign-bundle.pem" "$dir/foreign/bundle.pem"

for kind in server_only client_only none; do
	svid "$dir/eku/$kind" "URI:$id/eku/$kind" "eku_$kind"
done

b=$dir/bad
svid "$b/expired" "URI:$id/bad/expired" leaf "$past_start" "$past_end"
svid "$b/not_yet_valid" "URI:$id/bad/not_yet_valid" leaf "$future_start" "$future_end"
svid "$b/unknown_ca" "URI:$id/bad/unknown_ca" leaf "" "" other-int
svid "$b/wrong_trust_domain" "URI:spiffe://wrong.test/sockmesh/bad/wrong_trust_domain" \
	leaf "" "" other-int
svid "$b/no_uri_san" "DNS:no-uri-san.sockmesh.test"
svid "$b/two_uri_sans" "URI:$id/bad/two_uri_sans,URI:$id/bad/two_uri_sans_second"
svid "$b/not_spiffe_uri" "URI:https://$td/sockmesh/bad/not_spiffe_uri"
for kind in leaf_is_ca key_cert_sign crl_sign no_key_usage eku_wrong; do
	svid "$b/$kind" "URI:$id/bad/$kind" "$kind"
done
svid "$b/rsa_key" "URI:$id/bad/rsa_key" leaf "" "" int root rsa
svid "$b/int_expired" "URI:$id/bad/int_expired" leaf "" "" int-expired
SM_MD=sha1 svid "$b/sha1_signed" "URI:$id/bad/sha1_signed"
svid "$b/int_sha1_signed" "URI:$id/bad/int_sha1_signed" leaf "" "" int-sha1
svid "$b/int_rsa1024" "URI:$id/bad/int_rsa1024" leaf "" "" int-rsa1024

rm -f "$dir"/ca/*.key
log "done: $dir"
