#!/usr/bin/env bash
# RUSTC_WRAPPER for fuzz/run-targets.sh: compiles the crates named in XENRS_FUZZ_UNCOVERED
# (space-separated crate names) without libFuzzer's coverage instrumentation, and every other
# crate as given. The driver sessions (netfront_hostile, blkfront_hostile) spend most of their
# time in the simulated xenstore and its client, and most of that in libFuzzer's comparison
# tracing of path strings and map keys; that code has its own target (xenstore_decoder), so
# in the driver sessions it only runs, it does not steer. See docs/RELIABILITY.md.
rustc=$1
shift
name=""
prev=""
for a in "$@"; do
	[ "$prev" = --crate-name ] && name=$a
	prev=$a
done
case " ${XENRS_FUZZ_UNCOVERED:-} " in
*" $name "*)
	args=()
	for a in "$@"; do
		case "$a" in
		-Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
		*) args+=("$a") ;;
		esac
	done
	exec "$rustc" "${args[@]}"
	;;
esac
exec "$rustc" "$@"
