#!/usr/bin/env bash
# Build and run xenrs, or run every test.
#
#   ./run.sh [--memory N] [--cmdline "..."]
#       Set up (Rust toolchain from rust-toolchain.toml, Debian packages), `cargo kbuild`, then
#       boot the kernel as a PVH guest with its console on this terminal:
#         - on a Xen dom0 (`xl` present, /proc/xen/capabilities says control_d): `xl create -c`;
#         - anywhere else: QEMU (TCG) -> Xen 4.17 -> Debian dom0 -> `xl create -c`, console
#           streamed to this terminal; QEMU powers off when the guest is gone (Ctrl-a x quits).
#       Defaults: --memory 32, --cmdline "then=poweroff".
#
#   ./run.sh test [--only a,b] [--scenario FILE]... [--timeout S] [--smp N] [--no-xen] [--no-fuzz]
#       Set up, `cargo test` (host unit tests of the default workspace members), a short run of
#       every fuzz target (fuzz/run-targets.sh: 10000 runs or 15 s each, built with libFuzzer's
#       flags, no cargo-fuzz needed; --no-fuzz skips it), `cargo kbuild`, then the real-Xen suite
#       (tests/harness/run-suite.sh): every built-in scenario of tests/scenarios/ (or the --only
#       list; "none" for no built-in one) plus each --scenario file, in one QEMU boot. --no-xen
#       stops after `cargo kbuild`.
#       The last lines are `N passed, N failed` and `flakes: N`; the exit status is non-zero on
#       any failure. See docs/TESTING-XEN.md.
#
#   ./run.sh bench [--smp N]
#       Set up, `cargo kbuild`, then only the real-Xen `bench` scenario: iperf3 both ways and the
#       time from `xl create` to a TCP port answering, for xenrs and for a Linux PVH domU in the
#       same boot. Writes target/xen-harness/bench-latest.{json,md} and puts the table into
#       BENCHMARKS.md. (`./run.sh test` runs the bench scenario too, but leaves BENCHMARKS.md alone.)
#
#   ./run.sh soak [--rounds N] [--minutes M] [--smp N]
#       Set up, `cargo kbuild`, then only the save/restore soak (tests/soak/soak.sh, body in
#       tests/scenarios/lib/soak.sh): N rounds (default 100) of xl save + xl restore, every fifth a
#       checkpoint (xl save -c), every tenth an xl migrate to localhost, with a TCP echo stream and
#       nbdcopy writes verified byte by byte; no round starts after M minutes (default: no limit).
#       Progress after every round; the last line is the `SOAK rounds=...` summary (resets,
#       corrupted bytes, grant counters and memory at the start and the end). docs/RELIABILITY.md.
#
# Uses target/ unless CARGO_TARGET_DIR is set. Needs root for apt-get and debootstrap.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=tests/harness/host-lib.sh
. tests/harness/host-lib.sh

CMD=run
if [ $# -gt 0 ] && { [ "$1" = test ] || [ "$1" = bench ] || [ "$1" = soak ]; }; then
	CMD=$1
	shift
fi
MEMORY=32
CMDLINE="then=poweroff"
SUITE_ARGS=()
NO_XEN=0
NO_FUZZ=0
SOAK_ROUNDS=100
SOAK_MINUTES=0
while [ $# -gt 0 ]; do
	case "$CMD:$1" in
	run:--memory) MEMORY=${2:?--memory needs MiB}; shift ;;
	run:--cmdline) CMDLINE=${2?--cmdline needs a string}; shift ;;
	test:--only | test:--scenario | test:--timeout | test:--smp) SUITE_ARGS+=("$1" "${2:?$1 needs a value}"); shift ;;
	test:--no-xen) NO_XEN=1 ;;
	test:--no-fuzz) NO_FUZZ=1 ;;
	bench:--smp | soak:--smp) SUITE_ARGS+=("$1" "${2:?$1 needs a value}"); shift ;;
	soak:--rounds) SOAK_ROUNDS=${2:?--rounds needs a number}; shift ;;
	soak:--minutes) SOAK_MINUTES=${2:?--minutes needs a number}; shift ;;
	*:-h | *:--help | *:help)
		sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*) xt_die "unknown argument '$1' for './run.sh $CMD' (see ./run.sh --help)" ;;
	esac
	shift
done
# A user scenario path is relative to where ./run.sh was called from.
for i in "${!SUITE_ARGS[@]}"; do
	if [ "${SUITE_ARGS[$i]}" = --scenario ]; then
		f=${SUITE_ARGS[$((i + 1))]}
		case "$f" in /*) ;; *) SUITE_ARGS[i + 1]="$OLDPWD/$f" ;; esac
	fi
done

T_ALL=$(xt_now_ms)
PHASES=()
phase_done() { PHASES+=("$(printf '%-16s %s' "$1" "$(xt_elapsed "$2")")"); xt_log "phase $1 done in $(xt_elapsed "$2")"; }
print_phases() {
	echo "==== elapsed per phase ===="
	printf '  %s\n' "${PHASES[@]}"
	printf '  %-16s %s\n' total "$(xt_elapsed "$T_ALL")"
}

# --- setup: Debian packages and the pinned Rust toolchain ------------------------------------
t=$(xt_now_ms)
if [ "$(id -u)" = 0 ]; then
	# build-essential: cc/ld for build scripts; the harness installs qemu, debootstrap and cpio itself.
	# iperf3, iproute2, util-linux: net-services' host tests run the real iperf3 client against the
	# guest's iperf3 server code (over loopback, and over a TAP device in an `unshare --net` namespace).
	# libnbd-bin, qemu-utils: the NBD service's host test runs nbdinfo, nbdcopy, qemu-img and qemu-io
	# against it over such a TAP device.
	xt_apt_install ca-certificates build-essential iperf3 iproute2 util-linux libnbd-bin qemu-utils
fi
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
command -v rustup >/dev/null || xt_die "rustup is required (it reads rust-toolchain.toml)"
TOOLCHAIN=$(sed -n -E 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$TOOLCHAIN"; then
	xt_log "installing Rust $TOOLCHAIN (rust-toolchain.toml)"
	rustup toolchain install "$TOOLCHAIN" --profile minimal --component rust-src,rustfmt,clippy
fi
if ! rustup component list --toolchain "$TOOLCHAIN" --installed 2>/dev/null | grep -q '^rust-src'; then
	rustup component add --toolchain "$TOOLCHAIN" rust-src
fi
phase_done setup "$t"

if [ "$CMD" = test ]; then
	t=$(xt_now_ms)
	xt_log "cargo test (host unit tests)"
	cargo test
	phase_done "cargo test" "$t"
	if [ "$NO_FUZZ" = 0 ]; then
		t=$(xt_now_ms)
		xt_log "fuzz targets, a short run each (fuzz/run-targets.sh)"
		fuzz/run-targets.sh --runs 10000 --max-time 15
		phase_done "fuzz (short)" "$t"
	fi
fi

t=$(xt_now_ms)
xt_log "cargo kbuild"
cargo kbuild
KERNEL=$(xt_kernel_elf)
[ -f "$KERNEL" ] || xt_die "cargo kbuild did not produce $KERNEL"
phase_done "cargo kbuild" "$t"

if [ "$CMD" = test ]; then
	if [ "$NO_XEN" = 1 ]; then
		xt_log "--no-xen: skipping the real-Xen suite"
		print_phases
		exit 0
	fi
	t=$(xt_now_ms)
	rc=0
	tests/harness/run-suite.sh --kernel "$KERNEL" "${SUITE_ARGS[@]}" || rc=$?
	phase_done "real-Xen suite" "$t"
	print_phases
	# Repeat the suite's closing lines so that they stay the last ones.
	tail -n 2 "$(xt_target_dir)/xen-harness/summary-latest.txt" 2>/dev/null || echo "0 passed, 1 failed"
	exit "$rc"
fi

if [ "$CMD" = bench ]; then
	t=$(xt_now_ms)
	rc=0
	tests/harness/run-suite.sh --kernel "$KERNEL" --only bench "${SUITE_ARGS[@]}" || rc=$?
	phase_done "bench" "$t"
	print_phases
	MD="$(xt_target_dir)/xen-harness/bench-latest.md"
	if [ "$rc" != 0 ] || ! [ -s "$MD" ]; then
		xt_die "the bench scenario did not produce figures (see the serial log); BENCHMARKS.md unchanged"
	fi
	# Replace the figures between the markers in BENCHMARKS.md with this run's table.
	awk -v md="$MD" '/<!-- bench:begin -->/ {print; while ((getline l < md) > 0) print l; skip = 1; next}
		/<!-- bench:end -->/ {skip = 0} !skip' BENCHMARKS.md >BENCHMARKS.md.new
	mv BENCHMARKS.md.new BENCHMARKS.md
	xt_log "BENCHMARKS.md updated from $MD; raw figures: $(xt_target_dir)/xen-harness/bench-latest.json"
	cat "$MD"
	exit 0
fi

if [ "$CMD" = soak ]; then
	case "$SOAK_ROUNDS$SOAK_MINUTES" in *[!0-9]*) xt_die "--rounds and --minutes take whole numbers" ;; esac
	# QEMU's limit: the minutes asked for (or ~40 s a round), plus dom0's boot and the last checks.
	if [ "$SOAK_MINUTES" -gt 0 ]; then
		limit=$((SOAK_MINUTES * 60 + 900))
	else
		limit=$((SOAK_ROUNDS * 40 + 900))
	fi
	t=$(xt_now_ms)
	rc=0
	tests/harness/run-suite.sh --kernel "$KERNEL" --only none --scenario tests/soak/soak.sh \
		--env "XT_SOAK_ROUNDS=$SOAK_ROUNDS" --env "XT_SOAK_MAX_SECS=$((SOAK_MINUTES * 60))" \
		--timeout "$limit" "${SUITE_ARGS[@]}" || rc=$?
	phase_done "soak" "$t"
	print_phases
	line=$(sed -n -E 's/^\[ *[0-9]+\.[0-9]+\] xt: soak: (SOAK rounds=.*)/\1/p' "$(xt_target_dir)/xen-harness/serial-latest.log" | tail -n 1)
	tail -n 2 "$(xt_target_dir)/xen-harness/summary-latest.txt" 2>/dev/null
	echo "${line:-SOAK: no summary line (see $(xt_target_dir)/xen-harness/serial-latest.log)}"
	exit "$rc"
fi

# --- run ---------------------------------------------------------------------------------------
if command -v xl >/dev/null && grep -q control_d /proc/xen/capabilities 2>/dev/null; then
	cfg=$(mktemp /tmp/xenrs-XXXXXX.cfg)
	cat >"$cfg" <<EOF
name = "xenrs-$$"
type = "pvh"
kernel = "$KERNEL"
cmdline = "$CMDLINE"
memory = $MEMORY
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
EOF
	xt_log "this is a Xen dom0: xl create -c $cfg"
	exec xl create -c "$cfg"
fi
exec tests/harness/run-suite.sh --interactive --kernel "$KERNEL" --memory "$MEMORY" --cmdline "$CMDLINE"
