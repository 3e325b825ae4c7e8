#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# What `sockmesh policy validate|apply|diff -f FILE` does with files that are
# not what they should be (docs/policy.md, "Errors"): text that is not UTF-8,
# random bytes, UTF-16, a NUL byte, each refused with the file, line, column,
# the problem and the fix, nothing applied; the same NUL from a client other
# than the CLI refused by the daemon; and SPIFFE IDs that name no workload of
# the catalog: a note on stderr naming the policy, rule and line, an error
# with --strict.

load helpers

setup() {
	sm_standard_sandbox
	sb_start_daemon node1
	POL=$SB_DIR/policy.yaml
	OUT=$SB_DIR/cli.out
	ERR=$SB_DIR/cli.err
}

teardown() {
	sm_teardown
}

revision() {
	sm_status node1 | jq -er .policy.revision
}

# cli ARGS...: the CLI against node1; stdout in $OUT, stderr in $ERR, status in $rc (shown).
cli() {
	rc=0
	sb_cli node1 "$@" >"$OUT" 2>"$ERR" || rc=$?
	echo "--- sockmesh $* -> $rc; stdout:"
	cat "$OUT"
	echo "--- stderr:"
	cat "$ERR"
}

# refused PATTERN...: validate, diff and apply of $POL all fail with a message on
# stderr holding every PATTERN; nothing is applied.
refused() {
	local sub p
	for sub in validate diff apply; do
		cli policy "$sub" -f "$POL"
		[ "$rc" -eq 1 ]
		for p in "$@"; do
			grep -qF -- "$p" "$ERR" || { echo "no '$p' in stderr"; return 1; }
		done
		! grep -q "control request\|bad request\|valid:" "$ERR" "$OUT"
	done
	[ "$(revision)" -eq 0 ]
}

# A good document of 12 lines, then line 13 ($1, raw bytes allowed), then the end.
write_with_line13() {
	{
		echo "policies:"
		echo "  - name: server-from-client"
		echo "    selector:"
		echo "      spiffe: $SM_SERVER_ID"
		echo "      ports: [8080]"
		echo "    rules:"
		echo "      - action: ALLOW"
		echo "        from:"
		echo "          - $SM_CLIENT_ID"
		echo "          - $SM_TD/*"
		echo "        ports: [8080]"
		echo "      - action: AUDIT"
		printf '%b\n' "$1"
		echo "        from: [any]"
	} >"$POL"
}

@test "invalid UTF-8 in a value on line 13 is refused at line 13, column 26" {
	write_with_line13 '        description: "caf\xff"'
	refused "$POL:13:26: not valid UTF-8" "byte 0xff" "iconv"
	# and the same file without the bad byte applies
	write_with_line13 '        description: "caf\xc3\xa9"'
	cli policy apply -f "$POL"
	[ "$rc" -eq 0 ]
	[ "$(revision)" -eq 1 ]
}

@test "random bytes are refused as not UTF-8 text, with the file, line and column" {
	head -c 4096 /dev/urandom >"$POL"
	refused "$POL:"
	grep -qE "^sockmesh: $POL:[0-9]+:[0-9]+: (not valid UTF-8|a NUL byte|(control )?character U\+|the file is UTF-)" "$ERR"
}

@test "a UTF-16 file (byte-order mark) is refused with the conversion to make" {
	write_with_line13 '        description: "utf-16"'
	iconv -f UTF-8 -t UTF-16 "$POL" >"$POL.16"
	mv "$POL.16" "$POL"
	refused "$POL:1:1: the file is UTF-16" "convert it to UTF-8: iconv -f UTF-16 -t UTF-8"
	# converted as the message says, it applies
	iconv -f UTF-16 -t UTF-8 "$POL" >"$POL.8"
	cli policy apply -f "$POL.8"
	[ "$rc" -eq 0 ]
}

@test "a NUL byte after line 1 is refused, not read as the end of the file" {
	write_with_line13 '        description: "x"'
	{ printf 'policies:\n\0'; tail -n +2 "$POL"; } >"$POL.nul"
	mv "$POL.nul" "$POL"
	refused "$POL:2:1: a NUL byte" "remove it"
	# from standard input too
	rc=0
	sb_cli node1 policy apply -f - <"$POL" >"$OUT" 2>"$ERR" || rc=$?
	cat "$ERR"
	[ "$rc" -eq 1 ]
	grep -qF "<stdin>:2:1: a NUL byte" "$ERR"
	[ "$(revision)" -eq 0 ]
}

@test "a NUL in a document from another client is refused by the daemon, not truncated" {
	write_with_line13 '        description: "x"'
	# what a client other than the CLI may send: JSON's \u0000 inside the document
	req=$(jq -cn --rawfile doc "$POL" \
		'{cmd: "policy_apply", args: {document: ("policies: []\n\u0000" + $doc), source: "raw.yaml"}}')
	ans=$(python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
print(buf.decode().strip())' "$(sb_socket node1)" "$req")
	echo "$ans"
	jq -e '.ok == false and (.error | test("NUL"))' <<<"$ans"
	[ "$(revision)" -eq 0 ]
}

# A policy whose DENY names the client with a typo, on line 9.
write_typo() {
	cat >"$POL" <<-EOF
	policies:
	  - name: server-guard
	    selector: {spiffe: "$SM_SERVER_ID"}
	    rules:
	      - action: ALLOW
	        from: [any]
	      - action: DENY
	        from:
	          - "${SM_CLIENT_ID}x"
	EOF
}

@test "--strict refuses a SPIFFE ID no workload has; nothing is applied" {
	write_typo
	for sub in validate diff apply; do
		cli policy "$sub" --strict -f "$POL"
		[ "$rc" -eq 1 ]
		grep -qF "$POL:9: policy 'server-guard' rules[1]: source '${SM_CLIENT_ID}x' names no workload of the catalog" "$ERR"
		grep -qF -- "--strict" "$ERR"
	done
	[ "$(revision)" -eq 0 ]
	# a pattern that matches nothing yet is no unknown identity: --strict lets it through
	sed -i "s|\"${SM_CLIENT_ID}x\"|\"spiffe://elsewhere.test/*\"|" "$POL"
	cli policy apply --strict -f "$POL"
	[ "$rc" -eq 0 ]
	grep -qF "$POL:9: note: policy 'server-guard' rules[1]: pattern 'spiffe://elsewhere.test/*' matches no workload" "$ERR"
	[ "$(revision)" -eq 1 ]
}

@test "without --strict a SPIFFE ID no workload has applies, with a note on stderr naming the rule's line" {
	write_typo
	cli policy validate -f "$POL"
	[ "$rc" -eq 0 ]
	grep -q "valid: 1 policies" "$OUT"
	grep -qF "$POL:9: note: policy 'server-guard' rules[1]: source '${SM_CLIENT_ID}x' names no workload of the catalog" "$ERR"
	! grep -q "note" "$OUT"
	cli policy apply -f "$POL"
	[ "$rc" -eq 0 ]
	grep -q "revision 1 applied" "$OUT"
	grep -qF "$POL:9: note: policy 'server-guard' rules[1]: source '${SM_CLIENT_ID}x'" "$ERR"
	! grep -q "note" "$OUT"
	[ "$(revision)" -eq 1 ]
	# -o json carries the same as data
	cli policy validate -f "$POL" -o json
	[ "$rc" -eq 0 ]
	jq -e --arg id "${SM_CLIENT_ID}x" '.unmatched == [{policy: "server-guard", rule: 1,
		line: 9, spiffe: $id, pattern: false}] and .unknown_identities == 1' "$OUT"
}
