#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The policy table (issue 4): for every case, `sockmesh policy explain` on the
# node that makes the decision agrees with the kernel's map, with the table,
# and with what a real connection experiences there, down to the rule named in
# the flow record.

load helpers

setup() {
	sm_standard_sandbox
	sb_start_daemon node1
	sb_start_daemon node2
	local a
	for a in 10.11.0.2:8080 10.11.0.2:8081 10.11.0.2:8082 10.11.0.2:8083 '[fc42::2]:8080'; do
		sb_serve node2 server "$a" echo
	done
	sb_serve node1 local 10.11.0.1:9090 echo
	POL=$SB_DIR/policy.yaml
}

teardown() {
	sm_teardown
}

# The table, one case a line:
#   doc    the policy document (write_doc) in force; "none": nothing applied
#   node   where the document is applied and the decision made: node1 = the
#          source node (connect() fails with EPERM), node2 = the destination
#          node (the tunnel checks the caller's certificate and answers 403)
#   from   the cgroup on node1 the client runs in; its SPIFFE ID is what
#          explain is asked about. FROM=SOURCE asks explain about SOURCE
#          instead (CIDR sources, which only plaintext callers have, are
#          in policy_cidr.bats: they need a PERMISSIVE destination)
#   to     destination address (a catalog service), port: destination port
#   want   ALLOW or DENY
#   match  what decided: POLICY#RULE (a rule, 0-based index), default-deny, no-policy
#   audit  the AUDIT rule flagged, POLICY#RULE, or - for none
# Every case runs a real connection from node1, so the server workloads
# listen on every address used here (see setup). A case is one line here; a
# new document is a case in write_doc plus a check_doc line in a test below
# (one test per document and node: applying costs time).
TABLE=$(
	cat <<'EOF_TABLE'
# doc       node   from     to          port  want   match               audit
none        node1  client   10.11.0.2   8080  ALLOW  no-policy           -
none        node1  local    fc42::2     8080  ALLOW  no-policy           -
none        node1  client   10.11.0.1   9090  ALLOW  no-policy           -
none        node2  client   10.11.0.2   8080  ALLOW  no-policy           -
none        node2  local    fc42::2     8080  ALLOW  no-policy           -
# exact SPIFFE ID, rule ports narrower than the selector, a port range
exact       node1  client   10.11.0.2   8080  ALLOW  server-exact#0      -
exact       node1  client   10.11.0.2   8082  ALLOW  server-exact#0      -
exact       node1  client   10.11.0.2   8083  ALLOW  server-exact#0      -
exact       node1  client   10.11.0.2   8081  DENY   default-deny        -
exact       node1  local    10.11.0.2   8080  DENY   default-deny        -
exact       node1  client   fc42::2     8080  ALLOW  server-exact#0      -
exact       node1  local    fc42::2     8080  DENY   default-deny        -
exact       node1  client   10.11.0.1   9090  ALLOW  no-policy           -
exact       node2  client   10.11.0.2   8080  ALLOW  server-exact#0      -
exact       node2  client   10.11.0.2   8082  ALLOW  server-exact#0      -
exact       node2  client   10.11.0.2   8083  ALLOW  server-exact#0      -
exact       node2  client   10.11.0.2   8081  DENY   default-deny        -
exact       node2  local    10.11.0.2   8080  DENY   default-deny        -
exact       node2  client   fc42::2     8080  ALLOW  server-exact#0      -
exact       node2  local    fc42::2     8080  DENY   default-deny        -
# a pattern source, DENY beats ALLOW, default-deny outside the selector's ports
pattern     node1  client   10.11.0.2   8080  ALLOW  server-pattern#0    -
pattern     node1  local    10.11.0.2   8080  ALLOW  server-pattern#0    -
pattern     node1  local    10.11.0.2   8081  DENY   server-pattern#1    -
pattern     node1  client   10.11.0.2   8081  ALLOW  server-pattern#0    -
pattern     node1  client   10.11.0.2   8083  DENY   default-deny        -
pattern     node1  local    fc42::2     8080  ALLOW  server-pattern#0    -
pattern     node1  client   10.11.0.1   9090  ALLOW  no-policy           -
pattern     node2  client   10.11.0.2   8080  ALLOW  server-pattern#0    -
pattern     node2  local    10.11.0.2   8080  ALLOW  server-pattern#0    -
pattern     node2  local    10.11.0.2   8081  DENY   server-pattern#1    -
pattern     node2  client   10.11.0.2   8081  ALLOW  server-pattern#0    -
pattern     node2  client   10.11.0.2   8083  DENY   default-deny        -
pattern     node2  local    fc42::2     8080  ALLOW  server-pattern#0    -
# any, DENY on one port of an ALLOW-any, AUDIT
any         node1  client   10.11.0.2   8080  ALLOW  server-any#0        -
any         node1  local    10.11.0.2   8080  ALLOW  server-any#0        -
any         node1  client   10.11.0.2   8082  DENY   server-any#1        -
any         node1  local    10.11.0.2   8082  ALLOW  server-any#0        server-any#2
any         node1  local    10.11.0.2   8083  ALLOW  server-any#0        server-any#2
any         node1  client   fc42::2     8080  ALLOW  server-any#0        -
any         node1  client   10.11.0.1   9090  ALLOW  no-policy           local-audit#0
any         node2  client   10.11.0.2   8080  ALLOW  server-any#0        -
any         node2  local    10.11.0.2   8080  ALLOW  server-any#0        -
any         node2  client   10.11.0.2   8082  DENY   server-any#1        -
any         node2  local    10.11.0.2   8082  ALLOW  server-any#0        server-any#2
any         node2  local    10.11.0.2   8083  ALLOW  server-any#0        server-any#2
any         node2  client   fc42::2     8080  ALLOW  server-any#0        -
# a policy selects only local: the server stays open at both nodes
unselected  node1  client   10.11.0.1   9090  ALLOW  local-from-client#0 -
unselected  node1  local    10.11.0.1   9090  DENY   default-deny        -
unselected  node1  local    10.11.0.2   8080  ALLOW  no-policy           -
unselected  node1  client   fc42::2     8080  ALLOW  no-policy           -
unselected  node2  client   10.11.0.2   8080  ALLOW  no-policy           -
unselected  node2  local    10.11.0.2   8081  ALLOW  no-policy           -
unselected  node2  local    fc42::2     8080  ALLOW  no-policy           -
EOF_TABLE
)

# write_doc DOC: the table's policy document DOC, to $POL.
write_doc() {
	case "$1" in
	exact)
		cat >"$POL" <<-EOF_DOC
		policies:
		  - name: server-exact
		    selector: {spiffe: "$SM_SERVER_ID"}
		    rules:
		      - action: ALLOW
		        from: ["$SM_CLIENT_ID"]
		        ports: [8080, "8082-8083"]
		EOF_DOC
		;;
	pattern)
		cat >"$POL" <<-EOF_DOC
		policies:
		  - name: server-pattern
		    selector: {spiffe: "$SM_SERVER_ID", ports: ["8080-8082"]}
		    rules:
		      - action: ALLOW
		        from: ["$SM_TD/*"]
		      - action: DENY
		        from: ["$SM_LOCAL_ID"]
		        ports: [8081]
		EOF_DOC
		;;
	any)
		cat >"$POL" <<-EOF_DOC
		policies:
		  - name: server-any
		    selector: {spiffe: "$SM_SERVER_ID"}
		    rules:
		      - action: ALLOW
		        from: [any]
		      - action: DENY
		        from: ["$SM_CLIENT_ID"]
		        ports: [8082]
		      - action: AUDIT
		        from: ["$SM_LOCAL_ID"]
		        ports: ["8082-8083"]
		  - name: local-audit
		    selector: {spiffe: "$SM_LOCAL_ID"}
		    rules:
		      - action: AUDIT
		        from: ["$SM_CLIENT_ID"]
		EOF_DOC
		;;
	unselected)
		cat >"$POL" <<-EOF_DOC
		policies:
		  - name: local-from-client
		    selector: {spiffe: "$SM_LOCAL_ID"}
		    rules:
		      - action: ALLOW
		        from: ["$SM_CLIENT_ID"]
		        ports: [9090]
		EOF_DOC
		;;
	*)
		echo "write_doc: no document '$1' (add it to write_doc)" >&2
		return 1
		;;
	esac
}

# The SPIFFE ID explain is asked about for a client cgroup of the table.
explain_source() {
	case "$1" in
	*=*) echo "${1#*=}" ;;
	client) echo "$SM_CLIENT_ID" ;;
	local) echo "$SM_LOCAL_ID" ;;
	*)
		echo "no explain source for cgroup '$1' (write CGROUP=SOURCE in the table)" >&2
		return 1
		;;
	esac
}

# jq: the rule an explain answer or a record's policy block names, as the table writes it.
JQ_MATCH='if .reason == "rule" then "\(.rule.policy)#\(.rule.rule)" else .reason end'
JQ_AUDIT='if .audit then "\(.audit.policy)#\(.audit.rule)" else "-" end'

# row_filter SOURCE TO PORT [REVISION]: the jq filter for a node's records of
# the case's connection attempt: who called (SPIFFE ID, or address for a
# non-mesh peer), where to, under which policy revision.
row_filter() {
	local f
	if [[ "$1" == spiffe://* ]]; then
		f=".source.spiffe_id == \"$1\""
	else
		f=".source.ip == \"$1\""
	fi
	f+=" and .destination.ip == \"$2\" and .destination.port == $3"
	[ -z "${4:-}" ] || f+=" and .policy.revision == $4"
	echo "$f"
}

# records_more NODE FILTER N: NODE has more than N records matching FILTER.
records_more() {
	[ "$(sm_records "$1" "$2" | wc -l)" -gt "$3" ]
}

# row_fail WHAT [NODE]: the case failed; say which and why (and show NODE's
# policy records, to compare with what the case looked for).
row_fail() {
	echo "FAILED: $ROW: $1" >&2
	if [ -n "${2:-}" ]; then
		echo "$2's denied and AUDIT records:" >&2
		sm_records "$2" '.type == "denied"' >&2
	fi
	return 1
}

# check_row DOC NODE FROM TO PORT WANT MATCH AUDIT: one case of the table.
check_row() {
	local doc=$1 node=$2 from=$3 to=$4 port=$5 want=$6 match=$7 audit=$8
	local src cg ex rc got addr rev filter want_filter ends n0 rec n reason
	ROW="$doc@$node $from -> $to:$port"
	src=$(explain_source "$from") || return 1
	cg=${from%%=*}

	# 1. explain where the decision is made: it agrees with the kernel and the table
	ex=$(sb_cli "$node" policy explain --from "$src" --to "$to" --port "$port" -o json) &&
		rc=0 || rc=$?
	echo "$ROW: explain (exit $rc): $ex"
	jq -e . <<<"$ex" >/dev/null 2>&1 || { row_fail "explain printed no JSON"; return 1; }
	jq -e '.agree == true' <<<"$ex" >/dev/null ||
		{ row_fail "explain and the kernel's map disagree"; return 1; }
	got="$(jq -r .decision <<<"$ex") $(jq -r "$JQ_MATCH" <<<"$ex") $(jq -r "$JQ_AUDIT" <<<"$ex")"
	[ "$got" = "$want $match $audit" ] ||
		{ row_fail "explain says '$got', the table '$want $match $audit'"; return 1; }
	case "$want:$rc" in
	ALLOW:0 | DENY:3) ;;
	*)
		row_fail "explain exit status $rc for $want (want 0 for ALLOW, 3 for DENY)"
		return 1
		;;
	esac
	rev=$(jq -r .revision <<<"$ex")

	# 2. a real connection from node1 does what explain said
	addr=$to:$port
	[[ "$to" != *:* ]] || addr="[$to]:$port"
	filter=$(row_filter "$src" "$to" "$port" "$rev")
	# node1's conn_end records of this source and destination so far (any revision)
	ends=".type == \"conn_end\" and $(row_filter "$src" "$to" "$port")"
	n0=$(sm_records node1 "$ends" | wc -l)
	run sm_send node1 "$cg" "$addr" 1000 --expect echo
	echo "$ROW: connection (exit $status): $output"
	if [ "$want" = ALLOW ]; then
		if ! { [ "$status" -eq 0 ] && [ "$(sm_field "$output" ok)" = true ] &&
			[ "$(sm_field "$output" received)" -eq 1000 ]; }; then
			row_fail "explain says ALLOW, the connection did not echo 1000 bytes"
			return 1
		fi
	else
		[ "$status" -ne 0 ] || { row_fail "explain says DENY, the connection echoed"; return 1; }
		if [ "$node" = node1 ]; then
			[[ "$output" == *"ermitted"* ]] ||
				{ row_fail "denied at the source, but connect() did not fail with EPERM"; return 1; }
		elif [[ "$src" == spiffe://* ]]; then
			# a tunnelled caller: the tunnel answered 403 and node1 reset the
			# caller's connection (at connect() or at the first read, a race),
			# and its record of that socket says why
			[[ "$output" == *"reset by peer"* ]] ||
				{ row_fail "denied at the destination, but the caller saw no reset"; return 1; }
			sm_wait_until 15 records_more node1 "$ends" "$n0" ||
				{ row_fail "node1 wrote no conn_end for it" node1; return 1; }
			rec=$(sm_records node1 "$ends" | tail -n 1)
			echo "$ROW: node1 conn_end: $rec"
			jq -e '.verdict == "DROPPED" and .drop_reason == "policy_denied_remote"' \
				<<<"$rec" >/dev/null ||
				{ row_fail "node1's conn_end does not say policy_denied_remote"; return 1; }
		fi
		# the deciding node's denied record names what explain named
		reason=policy_denied
		[ "$match" != default-deny ] || reason=policy_default_deny
		want_filter=".type == \"denied\" and .verdict == \"DROPPED\" and $filter"
		rec=$(sm_wait_record "$node" "$want_filter") ||
			{ row_fail "$node wrote no denied record matching: $want_filter" "$node"; return 1; }
		echo "$ROW: $node denied record: $rec"
		n=$(sm_records "$node" "$want_filter" | wc -l)
		[ "$n" -eq 1 ] || { row_fail "$n denied records for one connection attempt" "$node"; return 1; }
		jq -e --arg r "$reason" --argjson ex "$ex" '.drop_reason == $r and
			.policy.match == $ex.reason and .policy.name == $ex.rule.policy and
			.policy.rule == $ex.rule.rule' <<<"$rec" >/dev/null ||
			{ row_fail "the record's drop_reason/policy differ from explain ($reason)"; return 1; }
	fi

	# 3. an AUDIT hit: the AUDIT record names the AUDIT rule explain named
	if [ "$audit" != - ]; then
		rec=$(sm_wait_record "$node" ".type == \"denied\" and .verdict == \"AUDIT\" and $filter") ||
			{ row_fail "$node wrote no AUDIT record matching: $filter" "$node"; return 1; }
		echo "$ROW: $node AUDIT record: $rec"
		jq -e --argjson ex "$ex" '.policy.match == $ex.reason and
			.policy.audit.name == $ex.audit.policy and
			.policy.audit.rule == $ex.audit.rule' <<<"$rec" >/dev/null ||
			{ row_fail "the AUDIT record's policy block differs from explain"; return 1; }
	fi
}

# check_quiet DOC NODE FROM TO PORT WANT MATCH AUDIT: once every case of a
# document ran (so late records would have arrived), the records a case must
# not have: a denied record of an allowed connection, an AUDIT record where
# explain flagged none.
check_quiet() {
	local node=$2 want=$6 audit=$8 src filter n
	ROW="$1@$node $3 -> $4:$5"
	src=$(explain_source "$3") || return 1
	filter=$(row_filter "$src" "$4" "$5" "$REV")
	if [ "$want" = ALLOW ]; then
		n=$(sm_records "$node" ".type == \"denied\" and .verdict == \"DROPPED\" and $filter" | wc -l)
		[ "$n" -eq 0 ] || { row_fail "$n denied records for an allowed connection" "$node"; return 1; }
	fi
	if [ "$audit" = - ]; then
		n=$(sm_records "$node" ".type == \"denied\" and .verdict == \"AUDIT\" and $filter" | wc -l)
		[ "$n" -eq 0 ] || { row_fail "$n AUDIT records, explain flagged none" "$node"; return 1; }
	fi
}

# check_doc NODE DOC: apply DOC at NODE (once), then check every case of it.
check_doc() {
	local node=$1 doc=$2 rows=() r f out
	REV=0
	if [ "$doc" != none ]; then
		write_doc "$doc" || return 1
		out=$(sb_cli "$node" policy apply -f "$POL") ||
			{ echo "apply $doc at $node failed: $out" >&2; return 1; }
		REV=$(sm_status "$node" | jq -er .policy.revision) || return 1
	fi
	mapfile -t rows < <(awk -v d="$doc" -v n="$node" '$1 == d && $2 == n' <<<"$TABLE")
	[ ${#rows[@]} -gt 0 ] || { echo "the table has no case for $doc at $node" >&2; return 1; }
	for r in "${rows[@]}"; do
		read -ra f <<<"$r"
		[ ${#f[@]} -eq 8 ] || { echo "bad table line (want 8 columns): $r" >&2; return 1; }
		check_row "${f[@]}" || return 1
	done
	for r in "${rows[@]}"; do
		read -ra f <<<"$r"
		check_quiet "${f[@]}" || return 1
	done
	echo "$doc at $node: ${#rows[@]} cases agree"
}

@test "source node: no policy, then an exact ID with a port range and default-deny" {
	check_doc node1 none
	check_doc node1 exact
}

@test "destination node: no policy, then an exact ID with a port range and default-deny" {
	check_doc node2 none
	check_doc node2 exact
}

@test "source node: a pattern source, DENY beats ALLOW, the selector's ports" {
	check_doc node1 pattern
}

@test "destination node: a pattern source, DENY beats ALLOW, the selector's ports" {
	check_doc node2 pattern
}

@test "source node: ALLOW any, DENY on one of its ports, AUDIT" {
	check_doc node1 any
}

@test "destination node: ALLOW any, DENY on one of its ports, AUDIT" {
	check_doc node2 any
}

@test "source node: a workload no rule selects stays open" {
	check_doc node1 unselected
}

@test "destination node: a workload no rule selects stays open" {
	check_doc node2 unselected
}
