#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Regenerate the fixture of the fuzz_spiffe harness with the openssl CLI, in
# the way scripts/test-pki.sh makes the test PKI:
#   tests/fuzz/spiffe_pki.h     the trust bundles the harness verifies against,
#                               the CA certificates and keys it re-signs with and
#                               the SVID of the TLS server it hands inputs to
#   tests/fuzz/seeds/spiffe/    one DER file per seed: the certificates a peer
#                               sends (leaf first, then intermediates), concatenated
# Both are committed; run this only to change them (they must be made together:
# the seeds are signed by the keys in the header). The keys are throwaway test
# keys, never used outside the harness.
#
# Usage: tests/fuzz/make-spiffe-seeds.sh
#
# Every date is fixed: CAs 2020..2049, good leaves 2025..2035; the harness
# verifies at 2030-01-01T00:00:00Z, its handshakes at the current time (the
# server's SVID must be valid then: regenerate before 2035).
# Trust domains: sockmesh.test (bundle: root), federated.test (bundle:
# fed-root); other-root and its intermediate are in no bundle.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
header=$repo/tests/fuzz/spiffe_pki.h
seeds=$repo/tests/fuzz/seeds/spiffe
work=$(mktemp -d /tmp/sockmesh-spiffe-seeds-XXXXXX)
trap 'rm -rf "$work"' EXIT

ca_start=20200101000000Z
ca_end=20491231235959Z
leaf_start=20250101000000Z
leaf_end=20350101000000Z

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
[ca_pathlen0]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_name_constraint]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
nameConstraints = critical,permitted;URI:federated.test
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
subjectAltName = $ENV::SM_SAN
[no_key_usage]
basicConstraints = critical,CA:FALSE
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SM_SAN
[eku_wrong]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning,anyExtendedKeyUsage
subjectAltName = $ENV::SM_SAN
[eku_server_only]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SM_SAN
[eku_client_only]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = $ENV::SM_SAN
[eku_none]
keyUsage = digitalSignature
subjectAltName = $ENV::SM_SAN
EOF
: >"$work/index.txt"
echo 01 >"$work/serial"
export SM_WORK=$work SM_SAN=

# newkey KEYFILE CSRFILE CN [rsa|p384]: a fresh key and a CSR for it.
newkey() {
	local alg=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
	case "${4:-}" in
	rsa) alg=(-newkey rsa:2048) ;;
	p384) alg=(-newkey ec -pkeyopt ec_paramgen_curve:P-384) ;;
	esac
	openssl req -new "${alg[@]}" -nodes -keyout "$1" -subj "/O=sockmesh-fuzz/CN=$3" \
		-out "$2" 2>"$work/err" || {
		cat "$work/err" >&2
		exit 1
	}
}

# sign CSR OUT EXT START END ISSUER|self [KEY for self]
sign() {
	local issuer=(-cert "$work/$6.pem" -keyfile "$work/$6.key")
	[ "$6" = self ] && issuer=(-selfsign -keyfile "$7")
	openssl ca -config "$work/ca.cnf" -batch -notext -preserveDN -rand_serial \
		"${issuer[@]}" -in "$1" -out "$2" -extensions "$3" -startdate "$4" -enddate "$5" \
		>"$work/err" 2>&1 || {
		cat "$work/err" >&2
		exit 1
	}
}

# ca NAME CN ISSUER|self [EXT [START END]]: $work/NAME.{pem,key}
ca() {
	newkey "$work/$1.key" "$work/$1.csr" "$2"
	if [ "$3" = self ]; then
		sign "$work/$1.csr" "$work/$1.pem" "${4:-ca_ext}" "${5:-$ca_start}" "${6:-$ca_end}" \
			self "$work/$1.key"
	else
		sign "$work/$1.csr" "$work/$1.pem" "${4:-ca_ext}" "${5:-$ca_start}" "${6:-$ca_end}" "$3"
	fi
}

# leaf NAME SAN ISSUER [EXT [KEYTYPE [START END]]]: $work/leaf-NAME.pem
leaf() {
	newkey "$work/leaf-$1.key" "$work/leaf-$1.csr" "$1" "${5:-}"
	SM_SAN=$2 sign "$work/leaf-$1.csr" "$work/leaf-$1.pem" "${4:-leaf}" "${6:-$leaf_start}" \
		"${7:-$leaf_end}" "$3"
}

# seed FILE PEM...: the certificates as the peer sends them, DER, concatenated
seed() {
	local out=$seeds/$1.der pem
	shift
	: >"$out"
	for pem in "$@"; do
		openssl x509 -in "$pem" -outform DER >>"$out"
	done
}

ca root "sockmesh fuzz root" self
ca int "sockmesh fuzz intermediate" root
ca fed-root "sockmesh fuzz federated root" self
ca other-root "sockmesh fuzz other root" self
ca other-int "sockmesh fuzz other intermediate" other-root
ca int-expired "sockmesh fuzz expired intermediate" root ca_ext 20200101000000Z 20210101000000Z
ca int-pathlen0 "sockmesh fuzz pathlen 0 intermediate" root ca_pathlen0
ca int-below-pathlen0 "sockmesh fuzz intermediate below pathlen 0" int-pathlen0
ca int-constrained "sockmesh fuzz name-constrained intermediate" root ca_name_constraint

td=spiffe://sockmesh.test
leaf web "URI:$td/ns/prod/sa/web" int
leaf root-issued "URI:$td/ns/prod/sa/api" root
leaf federated "URI:spiffe://federated.test/ns/prod/sa/db" fed-root
leaf eku-server "URI:$td/ns/prod/sa/server" int eku_server_only
leaf eku-client "URI:$td/ns/prod/sa/client" int eku_client_only
leaf eku-none "URI:$td/ns/prod/sa/none" int eku_none
leaf long-id "URI:$td/$(printf 'a%.0s' $(seq 1 220))" int
leaf generalized-time "URI:$td/ns/prod/sa/late" int leaf "" 20250101000000Z 20550101000000Z
leaf unknown-ca "URI:$td/ns/prod/sa/web" other-int
leaf wrong-td "URI:spiffe://wrong.test/ns/prod/sa/web" other-int
leaf no-uri-san "DNS:web.sockmesh.test" int
leaf two-uri-sans "URI:$td/ns/prod/sa/a,URI:$td/ns/prod/sa/b" int
leaf not-spiffe-uri "URI:https://sockmesh.test/ns/prod/sa/web,DNS:web.sockmesh.test" int
leaf td-only-id "URI:$td" int
leaf bad-id-path "URI:$td/ns//sa/web" int
leaf leaf-is-ca "URI:$td/ns/prod/sa/ca" int leaf_is_ca
leaf key-cert-sign "URI:$td/ns/prod/sa/kcs" int key_cert_sign
leaf crl-sign "URI:$td/ns/prod/sa/crl" int crl_sign
leaf no-key-usage "URI:$td/ns/prod/sa/noku" int no_key_usage
leaf eku-wrong "URI:$td/ns/prod/sa/codesign" int eku_wrong
leaf rsa-key "URI:$td/ns/prod/sa/rsa" int leaf rsa
leaf p384-key "URI:$td/ns/prod/sa/p384" int leaf p384
leaf expired "URI:$td/ns/prod/sa/expired" int leaf "" 20200101000000Z 20210101000000Z
leaf not-yet-valid "URI:$td/ns/prod/sa/future" int leaf "" 20400101000000Z 20410101000000Z
leaf int-expired "URI:$td/ns/prod/sa/web" int-expired
leaf pathlen "URI:$td/ns/prod/sa/deep" int-below-pathlen0
leaf name-constrained "URI:$td/ns/prod/sa/web" int-constrained
leaf fuzz-server "URI:$td/ns/fuzz/sa/server" int
cat "$work/leaf-fuzz-server.pem" "$work/int.pem" >"$work/server-chain.pem"
openssl pkey -in "$work/leaf-fuzz-server.key" -out "$work/server-key.pem"

rm -rf "$seeds"
mkdir -p "$seeds"
w=$work
seed ok-leaf-int "$w/leaf-web.pem" "$w/int.pem"
seed ok-leaf-int-root "$w/leaf-web.pem" "$w/int.pem" "$w/root.pem"
seed ok-root-issued "$w/leaf-root-issued.pem"
seed ok-federated "$w/leaf-federated.pem"
seed ok-eku-none "$w/leaf-eku-none.pem" "$w/int.pem"
seed ok-long-id "$w/leaf-long-id.pem" "$w/int.pem"
seed ok-generalized-time "$w/leaf-generalized-time.pem" "$w/int.pem"
seed eku-server-only "$w/leaf-eku-server.pem" "$w/int.pem"
seed eku-client-only "$w/leaf-eku-client.pem" "$w/int.pem"
seed unknown-ca-missing-int "$w/leaf-web.pem"
seed bad-san-wrong-order "$w/int.pem" "$w/leaf-web.pem"
seed unknown-ca-other-root "$w/leaf-unknown-ca.pem" "$w/other-int.pem"
seed unknown-ca-pathlen "$w/leaf-pathlen.pem" "$w/int-below-pathlen0.pem" "$w/int-pathlen0.pem"
seed unknown-ca-name-constraints "$w/leaf-name-constrained.pem" "$w/int-constrained.pem"
seed wrong-trust-domain "$w/leaf-wrong-td.pem" "$w/other-int.pem"
seed bad-san-none "$w/leaf-no-uri-san.pem" "$w/int.pem"
seed bad-san-two "$w/leaf-two-uri-sans.pem" "$w/int.pem"
seed bad-san-https "$w/leaf-not-spiffe-uri.pem" "$w/int.pem"
seed bad-san-trust-domain-only "$w/leaf-td-only-id.pem" "$w/int.pem"
seed bad-san-empty-segment "$w/leaf-bad-id-path.pem" "$w/int.pem"
seed bad-san-root-as-leaf "$w/root.pem"
seed leaf-is-ca "$w/leaf-leaf-is-ca.pem" "$w/int.pem"
seed bad-key-usage-key-cert-sign "$w/leaf-key-cert-sign.pem" "$w/int.pem"
seed bad-key-usage-crl-sign "$w/leaf-crl-sign.pem" "$w/int.pem"
seed bad-key-usage-none "$w/leaf-no-key-usage.pem" "$w/int.pem"
seed bad-eku "$w/leaf-eku-wrong.pem" "$w/int.pem"
seed bad-key-rsa "$w/leaf-rsa-key.pem" "$w/int.pem"
seed bad-key-p384 "$w/leaf-p384-key.pem" "$w/int.pem"
seed expired "$w/leaf-expired.pem" "$w/int.pem"
seed not-yet-valid "$w/leaf-not-yet-valid.pem" "$w/int.pem"
seed expired-intermediate "$w/leaf-int-expired.pem" "$w/int-expired.pem"

# c_string NAME FILE: a C string constant holding FILE's text
c_string() {
	echo "static const char $1[] ="
	sed 's/^/\t"/; s/$/\\n"/' "$2"
	printf '\t;\n'
}

{
	cat <<'EOF'
/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Generated by tests/fuzz/make-spiffe-seeds.sh with tests/fuzz/seeds/spiffe/;
 * do not edit. The fuzz_spiffe harness's PKI: the trust bundles it verifies
 * against, and the CA certificates and private keys it re-signs inputs with.
 * Throwaway keys made for this fixture only.
 */
#ifndef SOCKMESH_FUZZ_SPIFFE_PKI_H
#define SOCKMESH_FUZZ_SPIFFE_PKI_H

/* Where the seeds are valid: 2030-01-01T00:00:00Z. */
#define SPIFFE_PKI_NOW 1893456000

/* The bundle of trust domain sockmesh.test. */
EOF
	c_string spiffe_pki_root_pem "$work/root.pem"
	echo
	echo "/* The bundle of trust domain federated.test. */"
	c_string spiffe_pki_fed_root_pem "$work/fed-root.pem"
	echo
	echo "/*"
	echo " * The credentials of the TLS server that takes the inputs as a client's"
	echo " * certificate: its SVID (valid 2025..2035) with the intermediate, and its key."
	echo " */"
	c_string spiffe_pki_server_chain_pem "$work/server-chain.pem"
	c_string spiffe_pki_server_key_pem "$work/server-key.pem"
	echo
	echo "/* Each CA that issued a seed certificate, with its key, for re-signing. */"
	echo "static const struct {"
	echo "	const char *cert_pem, *key_pem;"
	echo "} spiffe_pki_issuers[] = {"
	for c in root int fed-root other-int int-expired int-pathlen0 int-below-pathlen0 \
		int-constrained; do
		echo "	{"
		sed 's/^/\t\t"/; s/$/\\n"/' "$work/$c.pem"
		echo "		,"
		openssl pkey -in "$work/$c.key" | sed 's/^/\t\t"/; s/$/\\n"/'
		echo "	},"
	done
	echo "};"
	echo
	echo "#endif /* SOCKMESH_FUZZ_SPIFFE_PKI_H */"
} >"$header"
# in the repository's format, which make lint checks
clang-format -i "$header"
echo "wrote $header and $(find "$seeds" -name '*.der' | wc -l) seeds in $seeds"
