#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The runner behind `make fuzz` and `make fuzz-coverage` (docs/fuzzing.md).
#
#   tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [-o DIR] BIN...        fuzz each harness
#   tests/fuzz/run.sh --coverage [-o DIR] BIN...                    line coverage of the corpus
#
# Fuzzing: each harness BIN (tests/fuzz/NAME.c built by make) runs for SECONDS
# (default 60), JOBS of them at a time (default 1), from its committed seeds
# tests/fuzz/seeds/SHORT/ (SHORT is NAME without "fuzz_") and the corpus it
# grew before, DIR/corpus/SHORT/, where new inputs go; tests/fuzz/SHORT.dict is
# used as libFuzzer dictionary when it exists. Each harness's output goes to
# DIR/logs/NAME.log, a crashing input to DIR/crashes/SHORT/. One line per
# harness as it ends (executions, exec/s, libFuzzer's cov: and ft:, corpus
# size), the crash report of a failed one, then one summary line
# "fuzz: N harnesses, N passed, N failed (S s each)". Exit status 1 when any
# harness found a crash, a leak, a timeout or did not run, 2 on bad usage.
#
# Coverage: BIN are the harnesses built for coverage (make fuzz-coverage); each
# replays its seeds and corpus once, and llvm-cov reports the line coverage of
# the userspace/lib files it links (DIR/coverage/NAME.txt, HTML next to it).
#
# Environment: FUZZ_ARGS, more libFuzzer flags for every harness (e.g.
# FUZZ_ARGS=-max_len=4096).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 2

usage() {
	sed -n 's/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

time_s=60
jobs=1
out=$REPO/.output/fuzz
mode=fuzz
while [ $# -gt 0 ]; do
	case "$1" in
	-t) time_s=${2:-}; shift 2 ;;
	-j) jobs=${2:-}; shift 2 ;;
	-o) out=${2:-}; shift 2 ;;
	--coverage) mode=coverage; shift ;;
	-h | --help) usage ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
if ! [[ $time_s =~ ^[1-9][0-9]*$ ]] || ! [[ $jobs =~ ^[1-9][0-9]*$ ]] || [ -z "$out" ]; then
	echo "fuzz: -t and -j take a positive number, -o a directory" >&2
	usage
fi
mkdir -p "$out/logs" || exit 2
out=$(cd "$out" && pwd)

# read -a splits FUZZ_ARGS on blanks; libFuzzer flags never hold any.
read -r -a extra <<<"${FUZZ_ARGS:-}"

short_name() {
	local name=${1##*/}
	echo "${name#fuzz_}"
}

# The corpus directories of a harness: where new inputs go first (libFuzzer
# writes into the first), then the committed seeds.
corpus_dirs() {
	local short=$1
	mkdir -p "$out/corpus/$short"
	echo "$out/corpus/$short"
	if [ -d "tests/fuzz/seeds/$short" ]; then
		echo "$REPO/tests/fuzz/seeds/$short"
	else
		echo "fuzz: warning: tests/fuzz/seeds/$short/ does not exist; $short starts" \
			"from an empty corpus (commit a few valid inputs there)" >&2
	fi
}

# fuzz_one BIN: run it; its exit status is libFuzzer's (0: nothing found).
fuzz_one() {
	local bin=$1 name=${1##*/} short dict=() dirs
	short=$(short_name "$bin")
	mkdir -p "$out/crashes/$short"
	[ -f "tests/fuzz/$short.dict" ] && dict=(-dict="$REPO/tests/fuzz/$short.dict")
	mapfile -t dirs < <(corpus_dirs "$short")
	# -timeout: one input running 30 s is a hang; -max_len: larger inputs find
	# nothing more in these parsers and slow every mutation down.
	"$bin" -max_total_time="$time_s" -max_len=65536 -timeout=30 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/crashes/$short/" "${dict[@]}" \
		"${extra[@]}" "${dirs[@]}" >"$out/logs/$name.log" 2>&1
}

# Where libFuzzer's or a sanitizer's report of a failure begins in a log.
REPORT_START='==[0-9]+==( |)ERROR|runtime error:|^ALARM|out-of-memory|deadly signal|^INFO: a leak'

# The one-line result of a finished harness, from its log.
result_line() {
	local bin=$1 rc=$2 name=${1##*/} log execs rate cov ft corp artifact
	log=$out/logs/$name.log
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1)
	corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n 1)
	if [ "$rc" -eq 0 ]; then
		printf 'fuzz: %-20s ok      %s execs, %s exec/s, %s, %s, %s\n' "$name" \
			"${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "${ft:-ft: ?}" "${corp:-corp: ?}"
		return
	fi
	artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
	printf 'fuzz: %-20s FAILED  (exit %s) %s execs; input: %s; log: %s\n' "$name" "$rc" \
		"${execs:-?}" "${artifact:-none written}" "$log"
	# the sanitizer's or libFuzzer's report (else the log's end): what CI shows
	if grep -q -E "$REPORT_START" "$log"; then
		# the report up to its SUMMARY line (at most 60 lines), then the input
		awk -v re="$REPORT_START" '
			$0 ~ re { p = 1 }
			p && !done && n++ < 60 { print "  | " $0 }
			/^SUMMARY:/ { done = 1 }
			done && /^MS: |^Base64: |Test unit written/ { print "  | " $0 }' "$log"
	else
		tail -n 20 "$log" | sed 's/^/  | /'
	fi
}

# Harnesses running now: pid -> binary; and the tally of finished ones.
declare -A running=()
npass=0
nfail=0

# Wait for any running harness to end and report it.
reap_one() {
	local pid rc
	wait -n -p pid
	rc=$?
	result_line "${running[$pid]}" "$rc"
	unset "running[$pid]"
	if [ "$rc" -eq 0 ]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
}

run_fuzz() {
	local bin
	for bin in "$@"; do
		if [ ! -x "$bin" ]; then
			echo "fuzz: $bin: not an executable harness (build it with make fuzz)" >&2
			exit 2
		fi
	done
	echo "fuzz: $# harnesses, $time_s s each, $jobs at a time; logs in $out/logs"
	for bin in "$@"; do
		while [ "${#running[@]}" -ge "$jobs" ]; do reap_one; done
		fuzz_one "$bin" &
		running[$!]=$bin
	done
	while [ "${#running[@]}" -gt 0 ]; do reap_one; done
	echo "fuzz: $# harnesses, $npass passed, $nfail failed ($time_s s each)"
	[ "$nfail" -eq 0 ]
}

run_coverage() {
	local bin name short dirs profdata srcs=()
	for f in userspace/lib/*.c userspace/daemon/*.c; do srcs+=("$REPO/$f"); done
	mkdir -p "$out/coverage"
	for bin in "$@"; do
		name=${bin##*/}
		short=$(short_name "$bin")
		mapfile -t dirs < <(corpus_dirs "$short")
		rm -f "$out/coverage/$name".*.profraw
		if ! LLVM_PROFILE_FILE="$out/coverage/$name.%p.profraw" "$bin" -runs=0 \
			"${dirs[@]}" >"$out/logs/$name.coverage.log" 2>&1; then
			echo "fuzz: $name: replaying its corpus failed (see $out/logs/$name.coverage.log)"
			nfail=$((nfail + 1))
			continue
		fi
		profdata=$out/coverage/$name.profdata
		if ! llvm-profdata merge -sparse "$out/coverage/$name".*.profraw -o "$profdata" ||
			! llvm-cov report "$bin" -instr-profile="$profdata" "${srcs[@]}" \
				>"$out/coverage/$name.txt" ||
			! llvm-cov show "$bin" -instr-profile="$profdata" -format=html \
				-output-dir="$out/coverage/$name" "${srcs[@]}"; then
			echo "fuzz: $name: llvm-profdata or llvm-cov failed"
			nfail=$((nfail + 1))
			continue
		fi
		rm -f "$out/coverage/$name".*.profraw
		echo "fuzz: $name: line coverage of the library files it reaches" \
			"(all of them in $out/coverage/$name.txt, HTML in $out/coverage/$name/):"
		# the files with any line run, and the total
		awk 'NR > 2 && $0 !~ /^-/ && $(NF-3) != "0.00%" { print "  " $1, "lines", $(NF-3), "(" $(NF-5) " lines, " $(NF-4) " missed)" }' \
			"$out/coverage/$name.txt" | sed "s#$REPO/##"
	done
	[ "$nfail" -eq 0 ]
}

if [ "$mode" = coverage ]; then
	run_coverage "$@"
else
	run_fuzz "$@"
fi
