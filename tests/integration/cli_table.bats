#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# The CLI's command table (`sockmesh __commands`) against docs/cli.md and the
# sockmesh(1) man page: every command, subcommand, option and exit code is
# documented, and the docs name none the CLI lacks; sockmeshd(8) names exactly
# the options of `sockmeshd --help`. And the one option parser: the usage
# errors each command gives. No daemon runs, no sandbox.

load helpers

CHECK=tests/tools/check-cli-docs.py

setup() {
	local b
	for b in "$SOCKMESH" "$SOCKMESHD"; do
		if [ ! -x "$b" ]; then
			echo "missing $b: build it first (make)" >&2
			return 1
		fi
	done
	cd "$SM_REPO" || return 1
	DOCS=$(mktemp -d)
}

teardown() {
	rm -rf "$DOCS"
}

@test "docs/cli.md and the man pages document exactly the command table and sockmeshd --help" {
	run python3 "$CHECK" "$SOCKMESH" docs/cli.md docs/man/sockmesh.1 \
		"$SOCKMESHD" docs/man/sockmeshd.8
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "every command's --help comes from the table: usage, its options, exit codes" {
	run "$SOCKMESH" __commands
	[ "$status" -eq 0 ]
	mapfile -t cmds < <(jq -r '.commands[] | select(.command != "") | .command' <<<"$output")
	[ "${#cmds[@]}" -ge 13 ]
	for c in "${cmds[@]}"; do
		# shellcheck disable=SC2086 # the path is words
		run "$SOCKMESH" $c --help
		[ "$status" -eq 0 ]
		[[ "$output" == "Usage: sockmesh $c "* ]]
		[[ "$output" == *"Exit status:"* ]]
		for o in $("$SOCKMESH" __commands |
			jq -r --arg c "$c" '.commands[] | select(.command == $c) | .options[].long'); do
			[[ "$output" == *"--$o"* ]] || { echo "sockmesh $c --help lacks --$o"; false; }
		done
	done
}

@test "the check names a command, an option or an exit code a doc lost, and one it invented" {
	cp docs/cli.md docs/man/sockmesh.1 docs/man/sockmeshd.8 "$DOCS/"
	# an option row of policy wait, the man page's flows subsection, exit 3, a daemon option
	sed -i '/^| `--max-wait S`/d' "$DOCS/cli.md"
	sed -i 's/^\.SS "sockmesh flows/.SS "sockmesh flow/' "$DOCS/sockmesh.1"
	sed -i '/^| 3 |/d' "$DOCS/cli.md"
	sed -i '/^\.BI \\-\\-state\\-dir/d' "$DOCS/sockmeshd.8"
	run python3 "$CHECK" "$SOCKMESH" "$DOCS/cli.md" "$DOCS/sockmesh.1" \
		"$SOCKMESHD" "$DOCS/sockmeshd.8"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"cli.md: 'sockmesh policy wait': option --max-wait missing"* ]]
	[[ "$output" == *"sockmesh.1: commands"*"missing flows"* ]]
	[[ "$output" == *"sockmesh.1: commands"*"flow is not in the command table"* ]]
	[[ "$output" == *"cli.md: exit codes"*"missing exit 3"* ]]
	[[ "$output" == *"sockmeshd.8: .SH OPTIONS: missing --state-dir"* ]]

	cp docs/cli.md "$DOCS/"
	# an option row in the flows section that the CLI does not have
	sed -i 's/^| `--node NAME` |/| `--colour WHEN` | invented |\n&/' "$DOCS/cli.md"
	run python3 "$CHECK" "$SOCKMESH" "$DOCS/cli.md" docs/man/sockmesh.1
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"'sockmesh flows': option --colour is not an option"* ]]

	cp docs/cli.md "$DOCS/"
	sed -i 's/^| 2 | `CLI_EXIT_USAGE` |/| 2 | `CLI_EXIT_BAD_USAGE` |/' "$DOCS/cli.md"
	run python3 "$CHECK" "$SOCKMESH" "$DOCS/cli.md" docs/man/sockmesh.1
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"exit code 2 is named CLI_EXIT_BAD_USAGE, the CLI names it CLI_EXIT_USAGE"* ]]
}

# run_usage MESSAGE ARGS...: sockmesh ARGS exits 2 (usage) and says MESSAGE.
run_usage() {
	local want=$1
	shift
	run "$SOCKMESH" -S "$DOCS/no-such.sock" "$@"
	echo "sockmesh $*: exit $status: $output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"$want"* ]]
}

@test "usage errors: each command's options and -o formats, before and after the command" {
	run_usage "unknown output format 'yaml' (use -o table or -o json)" -o yaml status
	run_usage "unknown output format 'yaml' (use -o table or -o json)" status -o yaml
	run_usage "unknown output format 'vpc' (use -o table or -o json)" -o vpc flows
	run_usage "unknown output format 'yaml' (compact, json or vpc)" flows -o yaml
	run_usage "unknown output format 'vpc' (table, yaml or json)" policy get -o vpc
	run_usage "unknown option '-v' (see 'sockmesh policy get --help')" policy get -v
	run_usage "unknown option '--version' (see 'sockmesh flows --help')" flows --version
	run_usage "option '--last' needs a value (see 'sockmesh flows --help')" flows --last
	run_usage "--timeout '0': expected milliseconds from 1 to 600000" status --timeout 0
	run_usage "--timeout '0': expected milliseconds from 1 to 600000" policy get --timeout 0
	run_usage "--port '0': expected 1..65535" policy explain --from a --to b --port 0
	run_usage "status takes no arguments, got 'x'" status x
	run_usage "policy get: unexpected argument 'b'" policy get a b
	run_usage "unknown policy command 'x' (apply, validate, diff, get, delete, explain, wait" \
		policy x
	run_usage "unknown command 'x' (commands: status, workloads, services, policy, flows, catalog;" x
	for args in "status" "policy get" "flows"; do
		# shellcheck disable=SC2086 # words
		run_usage "--socket needs a path" $args -S ''
	done
	# a usage error is found before the daemon is asked: this socket does not exist
	run "$SOCKMESH" -S "$DOCS/no-such.sock" status
	[ "$status" -eq 1 ]
	[[ "$output" == *"$DOCS/no-such.sock"* ]]
}
