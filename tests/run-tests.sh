#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The test runner behind `make test`, `make test-unit`, `make test-integration`
# and `make lint`: runs the checks, prints one TAP line per check as it goes
# (numbered across the whole run) and ends with exactly one summary line
# "N passed, N failed" (", N skipped" when some were skipped). Exit status 1
# when any check failed, 2 on bad usage.
#
#   tests/run-tests.sh --unit BIN...          cmocka unit test binaries
#   tests/run-tests.sh --integration [FILE...] bats files (default tests/integration/*.bats)
#   tests/run-tests.sh --lint                 clang-format, cppcheck, clang-tidy, schema examples
#   tests/run-tests.sh --tests BIN...         unit and integration (make test)
#   tests/run-tests.sh --all BIN...           lint, unit and integration (make check)
#
# Environment: SM_OUTPUT (build directory, default .output; make passes its
# OUTPUT), SM_UNIT_TIMEOUT (s per unit binary, 300),
# SM_BATS_TIMEOUT (s per bats file, 900), SM_TEST_JOBS (bats files run at
# once, default twice the CPUs; 1 runs them one by one). Each bats file's
# output is printed whole when it ends; files marked
# "# sockmesh-test: serial" run alone, after the others. tests/README.md
# tells more.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2

NUM=0
NPASS=0
NFAIL=0
NSKIP=0

usage() {
	sed -n 's/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# The build directory: SM_OUTPUT (the Makefile passes its OUTPUT), else .output.
find_output() {
	local out=${SM_OUTPUT:-.output}
	case "$out" in
	/*) echo "$out" ;;
	*) echo "$REPO/$out" ;;
	esac
}
SM_OUTPUT=$(find_output)
export SM_OUTPUT

# A bats file run as a parallel job (TAP_DEFER=1) cannot number its checks:
# they are written as records "<US>KIND<US>DESCRIPTION[<US>REASON]" (US is the
# ASCII unit separator) and numbered by tap_replay when the file's output is
# printed.
TAP_DEFER=0
TAP_US=$'\x1f'

tap_ok() {
	if [ "$TAP_DEFER" = 1 ]; then
		printf '%sok%s%s\n' "$TAP_US" "$TAP_US" "$1"
		return
	fi
	NUM=$((NUM + 1))
	NPASS=$((NPASS + 1))
	echo "ok $NUM - $1"
}

tap_fail() {
	if [ "$TAP_DEFER" = 1 ]; then
		printf '%sfail%s%s\n' "$TAP_US" "$TAP_US" "$1"
		return
	fi
	NUM=$((NUM + 1))
	NFAIL=$((NFAIL + 1))
	echo "not ok $NUM - $1"
}

tap_skip() {
	if [ "$TAP_DEFER" = 1 ]; then
		printf '%sskip%s%s%s%s\n' "$TAP_US" "$TAP_US" "$1" "$TAP_US" "${2:-}"
		return
	fi
	NUM=$((NUM + 1))
	NSKIP=$((NSKIP + 1))
	echo "ok $NUM - $1 # SKIP ${2:-}"
}

# tap_replay FILE: print a job's output, numbering its deferred checks.
tap_replay() {
	local line rest kind
	while IFS= read -r line; do
		if [ "${line:0:1}" != "$TAP_US" ]; then
			printf '%s\n' "$line"
			continue
		fi
		rest=${line:1}
		kind=${rest%%"$TAP_US"*}
		rest=${rest#*"$TAP_US"}
		case "$kind" in
		ok) tap_ok "$rest" ;;
		fail) tap_fail "$rest" ;;
		skip) tap_skip "${rest%%"$TAP_US"*}" "${rest#*"$TAP_US"}" ;;
		esac
	done <"$1"
}

# Indent a command's output as TAP comments.
tap_comment() {
	sed 's/^/# /'
}

# ---- unit ----

# One cmocka binary, CMOCKA_MESSAGE_OUTPUT=TAP: each of its tests becomes a
# check; a crash, a missing result or a non-zero exit is one more failed check.
run_unit_bin() {
	local bin=$1 name line plan=-1 seen=0 failed=0 rc=0 rest
	name=unit/$(basename "$bin")
	if [ ! -x "$bin" ]; then
		tap_fail "$name: not found or not executable (build it: make test-unit)"
		return
	fi
	while IFS= read -r line; do
		case "$line" in
		__RC__\ *)
			rc=${line#__RC__ }
			;;
		1..*)
			plan=${line#1..}
			;;
		"not ok "*"# SKIP"*)
			seen=$((seen + 1))
			rest=${line#*# SKIP}
			tap_skip "$name:${rest}" "skipped by the test"
			;;
		"not ok "*)
			seen=$((seen + 1))
			failed=$((failed + 1))
			rest=${line#not ok }
			rest=${rest#* }
			tap_fail "$name: ${rest#- }"
			;;
		"ok "*)
			seen=$((seen + 1))
			rest=${line#ok }
			rest=${rest#* }
			tap_ok "$name: ${rest#- }"
			;;
		"#"*)
			echo "$line"
			;;
		*)
			echo "# $line"
			;;
		esac
	done < <(CMOCKA_MESSAGE_OUTPUT=TAP timeout --kill-after=5 "${SM_UNIT_TIMEOUT:-300}" "$bin" 2>&1 \
		</dev/null
		echo "__RC__ $?")
	if [ "$rc" -ge 124 ] && [ "$rc" -ne 0 ] && { [ "$plan" -lt 0 ] || [ "$seen" -lt "$plan" ]; }; then
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			tap_fail "$name: timed out after ${SM_UNIT_TIMEOUT:-300}s ($seen of $plan tests reported)"
		else
			tap_fail "$name: crashed (exit status $rc, signal $((rc - 128))) after $seen of $plan tests"
		fi
	elif [ "$plan" -ge 0 ] && [ "$seen" -lt "$plan" ]; then
		tap_fail "$name: only $seen of $plan tests reported (exit status $rc)"
	elif [ "$plan" -lt 0 ]; then
		tap_fail "$name: no TAP plan in its output (exit status $rc; is it a cmocka binary?)"
	elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		# e.g. a sanitizer report at exit after every test passed
		tap_fail "$name: exit status $rc although every test passed (see the output above)"
	fi
}

run_unit() {
	local bin
	if [ $# -eq 0 ]; then
		echo "# no unit test binaries given"
		return
	fi
	for bin in "$@"; do
		run_unit_bin "$bin"
	done
}

# ---- integration ----

# Sandboxes that exist now (ids), to tell what a run left behind.
sandbox_ids() {
	bash "$REPO/scripts/sandbox.sh" list 2>/dev/null
}

run_bats_file() {
	local f=$1 name line plan=-1 seen=0 failed=0 rc=0 rest reason
	name=integration/$(basename "$f" .bats)
	while IFS= read -r line; do
		case "$line" in
		__RC__\ *)
			rc=${line#__RC__ }
			;;
		1..*)
			plan=${line#1..}
			;;
		"ok "*" # skip"*)
			seen=$((seen + 1))
			rest=${line#ok }
			rest=${rest#* }
			reason=${rest#* # skip}
			tap_skip "$name: ${rest%% # skip*}" "${reason# }"
			;;
		"not ok "*)
			seen=$((seen + 1))
			failed=$((failed + 1))
			rest=${line#not ok }
			tap_fail "$name: ${rest#* }"
			;;
		"ok "*)
			seen=$((seen + 1))
			rest=${line#ok }
			tap_ok "$name: ${rest#* }"
			;;
		"#"*)
			echo "$line"
			;;
		*)
			echo "# $line"
			;;
		esac
	done < <(timeout --kill-after=10 "${SM_BATS_TIMEOUT:-900}" bats --tap "$f" 2>&1 </dev/null
		echo "__RC__ $?")
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		tap_fail "$name: timed out after ${SM_BATS_TIMEOUT:-900}s ($seen of $plan tests reported)"
	elif [ "$plan" -ge 0 ] && [ "$seen" -lt "$plan" ]; then
		tap_fail "$name: only $seen of $plan tests reported (bats exit status $rc)"
	elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		tap_fail "$name: bats exited with status $rc (see the output above)"
	fi
}

# A file that must run alone (load, floods, CPU or timing measurements) says so
# in a line of its own: "# sockmesh-test: serial (why)".
bats_is_serial() {
	grep -qE '^# sockmesh-test: serial([^[:alnum:]]|$)' "$1"
}

# How many bats files run at once: SM_TEST_JOBS, else twice the CPUs (most of
# a test is waiting for daemons, timeouts and the network, not computing).
integration_jobs() {
	local j=${SM_TEST_JOBS:-}
	if [ -z "$j" ]; then
		j=$(($(nproc 2>/dev/null || echo 1) * 2))
	fi
	if [[ ! "$j" =~ ^[0-9]+$ ]] || [ "$j" -lt 1 ]; then
		echo "# SM_TEST_JOBS='$j' is not a number of jobs (1 or more): running one file at a time" >&2
		j=1
	fi
	echo "$j"
}

# The files, longest first, so that the last ones to start are short: by the
# time each took in the last run (TIMES, lines "NAME SECONDS"), a file not in
# it at 10 s a test.
order_longest_first() {
	local f name t
	for f in "$@"; do
		name=$(basename "$f" .bats)
		t=$(awk -v n="$name" '$1 == n { t = $2 } END { print t + 0 }' "$TIMES" 2>/dev/null)
		[ "${t:-0}" != 0 ] || t=$(($(grep -c '^@test' "$f") * 10))
		printf '%s\t%s\n' "$t" "$f"
	done | sort -t "$(printf '\t')" -k1,1gr | cut -f2-
}

# Background jobs (bats files; with --all also lint and the unit tests): each
# one's output goes to a file and is printed whole when it ends. pid -> name
# (integration/FILE, lint, unit), output file, start time.
declare -A JOB_NAME=() JOB_OUT=() JOB_T0=()
JOB_SEQ=0
FILE_TIMES=() # "FILE SECONDS" of every bats file run, for the summary and TIMES

# start_job NAME CMD...: run CMD in the background, its checks deferred.
start_job() {
	local name=$1 out
	shift
	JOB_SEQ=$((JOB_SEQ + 1))
	out=$RUN_DIR/job.$JOB_SEQ.out
	(
		TAP_DEFER=1
		"$@"
	) >"$out" 2>&1 </dev/null &
	JOB_NAME[$!]=$name
	JOB_OUT[$!]=$out
	JOB_T0[$!]=$EPOCHREALTIME
}

# job_done NAME T0: say how long it took; a bats file's time is kept.
job_done() {
	local secs
	secs=$(awk -v a="$2" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	echo "# $1: $secs s"
	case "$1" in
	integration/*) FILE_TIMES+=("${1#integration/} $secs") ;;
	esac
}

# reap_job: wait for any job to end, then print its output whole.
reap_job() {
	local pid=""
	wait -n -p pid "${!JOB_NAME[@]}"
	[ -n "$pid" ] || return 0
	tap_replay "${JOB_OUT[$pid]}"
	job_done "${JOB_NAME[$pid]}" "${JOB_T0[$pid]}"
	rm -f "${JOB_OUT[$pid]}"
	unset "JOB_NAME[$pid]" "JOB_OUT[$pid]" "JOB_T0[$pid]"
}

reap_all_jobs() {
	while [ ${#JOB_NAME[@]} -gt 0 ]; do
		reap_job
	done
}

# Each run has a directory (RUN_DIR) that its sandboxes share: the list of
# their ids (SB_REGISTER: the leftover check looks at these only, not at other
# runs' sandboxes on the same machine) and the test PKI, made once per run
# (SB_PKI_CACHE, see scripts/sandbox.sh). Removed when the runner exits.
make_run_dir() {
	[ -z "${RUN_DIR:-}" ] || return 0
	RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sockmesh-run.XXXXXX") || return 1
	trap 'rm -rf "$RUN_DIR"' EXIT
	export SM_TEST_RUN_DIR=$RUN_DIR
	export SB_REGISTER=$RUN_DIR/sandboxes
	export SB_PKI_CACHE=$RUN_DIR/pki
	: >"$SB_REGISTER"
}

run_integration() {
	local files=("$@") f n i left jobs t0 parallel=() serial=() ordered=()
	if [ ${#files[@]} -eq 0 ]; then
		files=("$REPO"/tests/integration/*.bats)
		[ -e "${files[0]}" ] || files=()
	fi
	if [ ${#files[@]} -eq 0 ]; then
		echo "# no integration test files"
		return
	fi
	if ! command -v bats >/dev/null; then
		tap_fail "integration: bats is not installed (run scripts/install-deps.sh)"
		return
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "# integration tests need root (network namespaces, cgroups, BPF):" \
			"run them as root, e.g. sudo make test-integration"
		for f in "${files[@]}"; do
			n=$(bats --count "$f" 2>/dev/null || echo 1)
			for ((i = 1; i <= n; i++)); do
				tap_fail "integration/$(basename "$f" .bats) #$i: not run, needs root"
			done
		done
		return
	fi
	make_run_dir || {
		tap_fail "integration: cannot create a run directory in ${TMPDIR:-/tmp}"
		return
	}
	TIMES=$SM_OUTPUT/integration-times
	for f in "${files[@]}"; do
		case "$f" in
		*/*) ;;
		*) [ -e "$f" ] || f=$REPO/tests/integration/$f ;;
		esac
		if [ ! -r "$f" ]; then
			tap_fail "integration/$(basename "$f" .bats): no such file"
			continue
		fi
		if bats_is_serial "$f"; then
			serial+=("$f")
		else
			parallel+=("$f")
		fi
	done
	jobs=$(integration_jobs)
	echo "# integration: ${#parallel[@]} files, $jobs at a time; then ${#serial[@]} alone"
	if [ ${#parallel[@]} -gt 0 ]; then
		mapfile -t ordered < <(order_longest_first "${parallel[@]}")
	fi
	for f in "${ordered[@]}"; do
		while [ ${#JOB_NAME[@]} -ge "$jobs" ]; do
			reap_job
		done
		start_job "integration/$(basename "$f" .bats)" run_bats_file "$f"
	done
	reap_all_jobs
	# files marked serial run alone: nothing else runs while they do
	for f in "${serial[@]}"; do
		t0=$EPOCHREALTIME
		run_bats_file "$f"
		job_done "integration/$(basename "$f" .bats)" "$t0"
	done
	if [ ${#FILE_TIMES[@]} -gt 0 ]; then
		# this run's times replace the last ones of the same files, the others stay
		{
			printf '%s\n' "${FILE_TIMES[@]}"
			cat "$TIMES" 2>/dev/null || true # none before the first run
		} | awk '!seen[$1]++' >"$TIMES.tmp" 2>/dev/null && mv "$TIMES.tmp" "$TIMES"
		echo "# slowest: $(printf '%s\n' "${FILE_TIMES[@]}" | sort -k2,2gr | head -n 5 |
			awk '{ printf "%s%s %s s", sep, $1, $2; sep = ", " }')"
	fi
	left=$(sort -u "$SB_REGISTER" | comm -12 - <(sandbox_ids | sort -u) | tr '\n' ' ')
	if [ -n "${left// /}" ]; then
		tap_fail "integration: nothing left behind (sandboxes left: $left; remove with scripts/sandbox.sh destroy ID)"
	else
		tap_ok "integration: nothing left behind (netns, cgroups, bpffs, temp dirs)"
	fi
}

# ---- lint ----

c_sources() {
	local d
	for d in bpf include userspace tests/unit tests/tools tests/bpf tests/fuzz; do
		[ -d "$d" ] && find "$d" -name '*.[ch]' -type f
	done | sort
}

# cppcheck does not know libbpf's macros; without these definitions it stops
# at the first SEC() with "unknownMacro" and checks nothing in that file.
write_cppcheck_cfg() {
	cat >"$1" <<'EOF_CFG'
<?xml version="1.0"?>
<def format="2">
  <define name="SEC(name)" value=""/>
  <define name="LIBBPF_OPTS(TYPE, NAME, ...)" value="struct TYPE NAME = {0}"/>
  <define name="__uint(name, val)" value="int (*name)[val]"/>
  <define name="__type(name, val)" value="__typeof__(val) *name"/>
  <define name="__array(name, val)" value="__typeof__(val) *name[]"/>
  <define name="__always_inline" value="inline"/>
  <define name="__weak" value=""/>
</def>
EOF_CFG
}

run_lint() {
	local files out cfg rc
	mapfile -t files < <(c_sources)
	if [ ${#files[@]} -eq 0 ]; then
		echo "# no C sources to lint"
		return
	fi
	if ! command -v clang-format >/dev/null; then
		tap_fail "lint: clang-format (not installed: run scripts/install-deps.sh)"
	elif out=$(clang-format --dry-run -Werror "${files[@]}" 2>&1); then
		tap_ok "lint: clang-format (${#files[@]} files)"
	else
		# one message per problem, not one per file (a bad .clang-format repeats)
		echo "$out" | awk '!seen[$0]++' | head -n 60 | tap_comment
		echo "# (fix: make format)"
		tap_fail "lint: clang-format"
	fi
	if ! command -v cppcheck >/dev/null; then
		tap_fail "lint: cppcheck (not installed: run scripts/install-deps.sh)"
		return
	fi
	cfg=$(mktemp --suffix=.cfg)
	write_cppcheck_cfg "$cfg"
	out=$(cppcheck --library="$cfg" --enable=warning,performance,portability \
		--error-exitcode=1 --inline-suppr --quiet --std=c11 -Iinclude -Iuserspace/lib \
		"${files[@]}" 2>&1)
	rc=$?
	rm -f "$cfg"
	if [ $rc -eq 0 ]; then
		tap_ok "lint: cppcheck (${#files[@]} files)"
	else
		echo "$out" | head -n 60 | tap_comment
		tap_fail "lint: cppcheck"
	fi
	run_clang_tidy
	run_schema_examples
}

# The flow records the documentation shows (every line of docs/*.md that starts
# with {"version") validate against docs/flow-schema.json, with the same
# validator the integration tests run on every flow log.
run_schema_examples() {
	local py out
	py=$(schema_python) || {
		tap_fail "lint: flow-schema examples (python3-jsonschema missing: run scripts/install-deps.sh)"
		return
	}
	if out=$(grep -h '^{"version"' docs/*.md | "$py" tests/tools/validate-flows.py \
		docs/flow-schema.json - 2>&1); then
		tap_ok "lint: flow-schema examples ($(echo "$out" | tail -n 1))"
	else
		echo "$out" | head -n 40 | tap_comment
		tap_fail "lint: flow-schema examples"
	fi
}

# A python3 that has the jsonschema module: Debian's first (python3-jsonschema).
schema_python() {
	local py
	for py in /usr/bin/python3 python3; do
		if "$py" -c 'import jsonschema' 2>/dev/null; then
			echo "$py"
			return 0
		fi
	done
	return 1
}

# clang-tidy with the repo's .clang-tidy on the user-space C files; it needs
# the generated skeleton header, so the build must have run (make test does).
run_clang_tidy() {
	local files flags out rc n i j part pids tmp
	if ! command -v clang-tidy >/dev/null; then
		tap_fail "lint: clang-tidy (not installed: run scripts/install-deps.sh)"
		return
	fi
	if [ ! -f "$SM_OUTPUT/sockmesh.skel.h" ]; then
		tap_fail "lint: clang-tidy ($SM_OUTPUT/sockmesh.skel.h missing: run make first)"
		return
	fi
	mapfile -t files < <(ls userspace/daemon/*.c userspace/lib/*.c userspace/cli/*.c \
		tests/tools/*.c 2>/dev/null)
	# shellcheck disable=SC2207 # pkg-config prints several words on purpose
	flags=(-std=gnu11 -D_GNU_SOURCE -DSOCKMESH_VERSION=\"lint\" -I"$SM_OUTPUT" -Iinclude
		-Iuserspace/lib -Iuserspace/daemon -Iuserspace/cli
		$(pkg-config --cflags json-c yaml-0.1 libbpf))
	# one clang-tidy per CPU, each on every n-th file; their reports are printed one after another
	n=$(nproc 2>/dev/null || echo 1)
	tmp=$(mktemp -d)
	pids=()
	for ((i = 0; i < n; i++)); do
		part=()
		for ((j = i; j < ${#files[@]}; j += n)); do
			part+=("${files[$j]}")
		done
		[ ${#part[@]} -gt 0 ] || continue
		clang-tidy -quiet "${part[@]}" -- "${flags[@]}" >"$tmp/$i" 2>&1 </dev/null &
		pids+=($!)
	done
	rc=0
	for i in "${pids[@]}"; do
		wait "$i" || rc=1
	done
	out=$(cat "$tmp"/*)
	rm -rf "$tmp"
	if [ $rc -eq 0 ]; then
		tap_ok "lint: clang-tidy (${#files[@]} files)"
	else
		echo "$out" | grep -v 'warnings generated' | head -n 60 | tap_comment
		tap_fail "lint: clang-tidy"
	fi
}

# ---- main ----

[ $# -ge 1 ] || usage
mode=$1
shift
case "$mode" in
--unit)
	run_unit "$@"
	;;
--integration)
	run_integration "$@"
	;;
--lint)
	[ $# -eq 0 ] || usage
	run_lint
	;;
--all | --tests)
	# lint (--all only) and the unit tests run as jobs beside the first bats files
	make_run_dir || {
		echo "# cannot create a run directory in ${TMPDIR:-/tmp}" >&2
		exit 2
	}
	[ "$mode" = --tests ] || start_job lint run_lint
	start_job unit run_unit "$@"
	run_integration
	reap_all_jobs
	;;
-h | --help)
	sed -n 's/^#   //p' "${BASH_SOURCE[0]}"
	exit 0
	;;
*)
	usage
	;;
esac

echo "1..$NUM"
summary="$NPASS passed, $NFAIL failed"
[ "$NSKIP" -gt 0 ] && summary+=", $NSKIP skipped"
echo "$summary"
[ "$NFAIL" -eq 0 ]
