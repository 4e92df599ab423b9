#!/usr/bin/env bash
# Runs the cargo-fuzz targets of this workspace one after the other and prints one summary line
# per target. Used by `./run.sh test` (a short run of each) and for the long runs recorded in
# docs/RELIABILITY.md.
#
#   fuzz/run-targets.sh [--runs N] [--max-time S] [--only a,b] [--report FILE]
#
#   --runs N       libFuzzer -runs=N per target (default 20000)
#   --max-time S   libFuzzer -max_total_time=S per target as well (default: none)
#   --only LIST    comma-separated targets (default: every fuzz_targets/*.rs)
#   --report FILE  also append the summary lines to FILE
#
# Build: what `cargo fuzz build -O -a -s none <target>` (cargo-fuzz 0.13) runs, without needing
# cargo-fuzz (installing it takes about 2 minutes on a fresh 2-core machine): cargo build --release
# with libFuzzer's coverage flags, `--cfg fuzzing`, debug assertions and overflow checks, no
# sanitizer (the fuzzed crates are `#![forbid(unsafe_code)]`; ASan would only slow the runs down).
# The binaries are fuzz/target/x86_64-unknown-linux-gnu/release/<target>, so `cargo fuzz run -O -a
# -s none <target>` reuses them. Each target's corpus is fuzz/corpus/<target> (not in git), seeded
# from fuzz/seeds/<target> (small, in git) when that exists; crashes land in
# fuzz/artifacts/<target>/. Builds and runs are `nice -n 19`, one job at a time (the machine is
# shared).
#
# Summary line: `fuzz <target>: runs=<n> exec/s=<n> corpus=<files> new=<n> time=<s>s crashes=<n>`.
# The exit status is non-zero if any target crashed (or failed to build or run).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

CARGO_FUZZ_VERSION=0.13.2
RUNS=20000
MAX_TIME=""
ONLY=""
REPORT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) RUNS=${2:?--runs needs a number}; shift ;;
	--max-time) MAX_TIME=${2:?--max-time needs seconds}; shift ;;
	--only) ONLY=${2:?--only needs a list}; shift ;;
	--report) REPORT=${2:?--report needs a file}; shift ;;
	-h | --help)
		sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "run-targets.sh: unknown argument '$1' (see --help)" >&2
		exit 2
		;;
	esac
	shift
done
log() { printf '[fuzz %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

export PATH="${HOME:-/root}/.cargo/bin:$PATH"
TRIPLE=x86_64-unknown-linux-gnu
# cargo-fuzz 0.13's flags for `build -O -a -s none`.
FUZZ_RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing
 -Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Cllvm-args=-sanitizer-coverage-stack-depth
 -Cdebug-assertions -Ccodegen-units=1"
if [ -n "$ONLY" ]; then
	IFS=',' read -r -a TARGETS <<<"$ONLY"
else
	# The targets are fuzz_targets/*.rs (`cargo fuzz list` also names the seed-corpus writer).
	mapfile -t TARGETS < <(find fuzz_targets -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | LC_ALL=C sort)
fi
[ ${#TARGETS[@]} -gt 0 ] || {
	echo "run-targets.sh: no fuzz targets" >&2
	exit 1
}

t0=$SECONDS
log "building ${#TARGETS[@]} targets (release, libFuzzer coverage, debug assertions)"
# Only the targets: the workspace's other binary (the seed-corpus writer) has no libFuzzer main,
# and without a sanitizer runtime nothing defines the coverage callbacks it would need.
# The driver sessions build apart (target/sessions/), with the xenstore crate (the simulated
# xenstored and the client the drivers talk through) left uninstrumented by uncovered-rustc.sh:
# libFuzzer's comparison tracing of its path strings and map keys took half of their time, and
# that crate has its own target. Built with the others, xenstore_decoder would lose its coverage.
build() { # DIR UNCOVERED BINS...
	local dir=$1 uncovered=$2
	shift 2
	[ $# -gt 0 ] || return 0
	local envs=(RUSTFLAGS="${FUZZ_RUSTFLAGS//$'\n'/}" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}")
	[ -n "$uncovered" ] && envs+=(RUSTC_WRAPPER="$PWD/uncovered-rustc.sh" XENRS_FUZZ_UNCOVERED="$uncovered")
	env "${envs[@]}" nice -n 19 cargo build --manifest-path Cargo.toml --target "$TRIPLE" --target-dir "$dir" --release \
		--config 'profile.release.debug="line-tables-only"' "$@"
}
bins=()
sbins=()
for t in "${TARGETS[@]}"; do
	case "$t" in
	*_hostile) sbins+=(--bin "$t") ;;
	*) bins+=(--bin "$t") ;;
	esac
done
build target "" "${bins[@]}" || exit 1
build target/sessions xenstore "${sbins[@]}" || exit 1
bin_of() { case "$1" in *_hostile) echo "target/sessions/$TRIPLE/release/$1" ;; *) echo "target/$TRIPLE/release/$1" ;; esac; }
log "built in $((SECONDS - t0)) s"

rc=0
for t in "${TARGETS[@]}"; do
	corpus=corpus/$t
	mkdir -p "$corpus" "artifacts/$t"
	dirs=("$corpus")
	[ -d "seeds/$t" ] && dirs+=("seeds/$t")
	crashes0=$(find "artifacts/$t" -type f -not -name last-run.log | wc -l)
	flags=(-runs="$RUNS" -print_final_stats=1)
	[ -n "$MAX_TIME" ] && flags+=(-max_total_time="$MAX_TIME")
	out="artifacts/$t/last-run.log"
	t1=$SECONDS
	log "$t: ${flags[*]}"
	nice -n 19 "$(bin_of "$t")" -artifact_prefix="artifacts/$t/" "${flags[@]}" "${dirs[@]}" >"$out" 2>&1
	trc=$?
	secs=$((SECONDS - t1))
	stat() { sed -n -E "s/^stat::$1:[[:space:]]*([0-9]+).*/\\1/p" "$out" | tail -n 1; }
	runs=$(stat number_of_executed_units)
	eps=$(stat average_exec_per_sec)
	new=$(stat new_units_added)
	size=$(find "$corpus" -type f | wc -l)
	crashes=$(($(find "artifacts/$t" -type f -not -name last-run.log | wc -l) - crashes0))
	line="fuzz $t: runs=${runs:-?} exec/s=${eps:-?} corpus=$size new=${new:-?} time=${secs}s crashes=$crashes"
	if [ "$trc" != 0 ]; then
		line+=" FAILED (exit $trc; log fuzz/$out)"
		grep -m 3 -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$out" | sed 's/^/    /' >&2
		rc=1
	fi
	echo "$line"
	[ -n "$REPORT" ] && echo "$line" >>"$REPORT"
done
exit "$rc"
