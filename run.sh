#!/usr/bin/env bash
# Build and run xenrs, or run every test.
#
#   ./run.sh [--memory N] [--cmdline "..."] [--then block|poweroff] [--disk MIB]
#            [--echo-port P] [--iperf3-port P] [--nbd-port P] [--do LIST]
#       Set up (Rust toolchain from rust-toolchain.toml, Debian packages), `cargo kbuild`, then
#       boot the kernel as a PVH guest that serves TCP echo (7), iperf3 (5201) and NBD (10809):
#         - anywhere but a Xen dom0: QEMU (TCG) -> Xen 4.17 -> Debian dom0 -> the guest, with a
#           vif on dom0's xenbr0 and a 32 MiB scratch disk xvda. Its services are forwarded to
#           127.0.0.1 on this machine (only): --echo-port (7007), --iperf3-port (5201) and
#           --nbd-port (10809); 0 leaves one out. Once the guest is up a short block says how to
#           reach it. Then type commands here: save-restore, checkpoint, migrate, status,
#           shutdown, help (they run `xl` in dom0 against the guest). Ctrl-C or `shutdown`
#           stops everything; Ctrl-a x kills QEMU at once.
#         - on a Xen dom0 (`xl` present, /proc/xen/capabilities says control_d): `xl create -c`
#           with a vif on xenbr0 (if it exists) and `dhcp` unless --cmdline sets ip=.
#       --do "save-restore,shutdown" runs those commands once the guest is up, then stops; the
#       exit status is non-zero if one failed (for scripts).
#       --then poweroff (or --cmdline "then=poweroff ..."): the quick boot check, no network:
#       the guest prints its banner and powers off, and so does QEMU.
#       --disk 0: no disk. Defaults: --memory 32, --then block.
#
#   ./run.sh test [--only a,b] [--scenario FILE]... [--timeout S] [--smp N] [--no-xen] [--no-fuzz]
#       Set up, `cargo test` (host unit tests of the default workspace members), a short run of
#       every fuzz target (fuzz/run-targets.sh: 10000 runs or 15 s each, built with libFuzzer's
#       flags, no cargo-fuzz needed; --no-fuzz skips it), `cargo kbuild`, then the real-Xen suite
#       (tests/harness/run-suite.sh): every built-in scenario of tests/scenarios/ (or the --only
#       list; "none" for no built-in one) plus each --scenario file, in one QEMU boot. --no-xen
#       stops after `cargo kbuild`.
#       Then the host-side check tests/host/forward.sh (boots `./run.sh` once more and reaches the
#       guest's services through the 127.0.0.1 forwards; only with --only when the list names
#       host-forward). The last lines are `N passed, N failed` (counting the host check) and
#       `flakes: N`; the exit status is non-zero on any failure. See docs/TESTING-XEN.md.
#
#   ./run.sh bench [--smp N]
#       Set up, `cargo kbuild`, then only the real-Xen `bench` scenario (about half an hour under
#       TCG): iperf3 both ways, NBD, resume, smallest memory and density, for xenrs and for a Linux
#       PVH domU in the same boot. Writes target/xen-harness/bench-latest.{json,md} (and every run
#       in bench-latest-runs.jsonl) and puts the table into BENCHMARKS.md. `./run.sh test` does not
#       run it (`# xt-explicit` in tests/scenarios/bench.sh); `./run.sh test --only bench` does.
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
CMDLINE=""
THEN=""
RUN_ARGS=()
PORT_ECHO=7007
PORT_IPERF3=5201
PORT_NBD=10809
SUITE_ARGS=()
NO_XEN=0
NO_FUZZ=0
SOAK_ROUNDS=100
SOAK_MINUTES=0
while [ $# -gt 0 ]; do
	case "$CMD:$1" in
	run:--memory) MEMORY=${2:?--memory needs MiB}; shift ;;
	run:--cmdline) CMDLINE=${2?--cmdline needs a string}; shift ;;
	run:--then) THEN=${2:?--then needs block or poweroff}; shift ;;
	run:--disk | run:--do) RUN_ARGS+=("$1" "${2?$1 needs a value}"); shift ;;
	run:--echo-port) PORT_ECHO=${2:?--echo-port needs a port}; shift ;;
	run:--iperf3-port) PORT_IPERF3=${2:?--iperf3-port needs a port}; shift ;;
	run:--nbd-port) PORT_NBD=${2:?--nbd-port needs a port}; shift ;;
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
	# The host-side check (tests/host/forward.sh) runs after the whole suite, or with --only when
	# the list names host-forward (taken out of the list the suite sees).
	HOST_CHECK=1
	SUITE=1
	for i in "${!SUITE_ARGS[@]}"; do
		if [ "${SUITE_ARGS[$i]}" = --only ]; then
			l=",${SUITE_ARGS[$((i + 1))]},"
			HOST_CHECK=0
			[[ $l == *,host-forward,* ]] && HOST_CHECK=1
			l=${l//,host-forward,/,}
			l=${l#,}
			l=${l%,}
			SUITE_ARGS[i + 1]=${l:-none}
			[ -n "$l" ] || [[ " ${SUITE_ARGS[*]} " == *" --scenario "* ]] || SUITE=0
		fi
	done
	rc=0
	SUMMARY=$'0 passed, 0 failed\nflakes: 0'
	if [ "$SUITE" = 1 ]; then
		t=$(xt_now_ms)
		tests/harness/run-suite.sh --kernel "$KERNEL" "${SUITE_ARGS[@]}" || rc=$?
		phase_done "real-Xen suite" "$t"
		SUMMARY=$(tail -n 2 "$(xt_target_dir)/xen-harness/summary-latest.txt" 2>/dev/null)
		[ -n "$SUMMARY" ] || SUMMARY=$'0 passed, 1 failed\nflakes: 0'
	fi
	if [ "$HOST_CHECK" = 1 ]; then
		t=$(xt_now_ms)
		xt_log "host-side check: tests/host/forward.sh (./run.sh's 127.0.0.1 forwards, from this machine)"
		hrc=0
		tests/host/forward.sh || hrc=$?
		phase_done "host forwards" "$t"
		p=0
		f=1
		if [[ $SUMMARY =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
			p=${BASH_REMATCH[1]}
			f=${BASH_REMATCH[2]}
		fi
		if [ "$hrc" = 0 ]; then p=$((p + 1)); else f=$((f + 1)) && rc=1; fi
		SUMMARY="$p passed, $f failed"$'\n'"${SUMMARY#*$'\n'}"
	fi
	print_phases
	# Repeat the closing lines (the suite's, counting the host check) so that they stay the last ones.
	echo "$SUMMARY"
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
case "$THEN" in
"") ;;
block | poweroff) CMDLINE="then=$THEN${CMDLINE:+ $CMDLINE}" ;;
*) xt_die "--then: 'block' or 'poweroff', not '$THEN'" ;;
esac
if command -v xl >/dev/null && grep -q control_d /proc/xen/capabilities 2>/dev/null; then
	cfg=$(mktemp /tmp/xenrs-XXXXXX.cfg)
	VIF=""
	case " $CMDLINE " in
	*" then=poweroff "*) ;;
	*)
		if [ -e /sys/class/net/xenbr0 ]; then
			VIF="vif = [ 'bridge=xenbr0' ]"
			case " $CMDLINE " in *" ip="* | *" dhcp "*) ;; *) CMDLINE="dhcp${CMDLINE:+ $CMDLINE}" ;; esac
		fi
		;;
	esac
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
$VIF
EOF
	xt_log "this is a Xen dom0: xl create -c $cfg (the guest prints its address; Ctrl-] detaches)"
	exec xl create -c "$cfg"
fi
case " $CMDLINE " in
*" then=poweroff "*) ;;
*)
	# The host ends of the forwards: free ports on 127.0.0.1 (QEMU would fail on a busy one).
	for f in "echo-port:$PORT_ECHO:7" "iperf3-port:$PORT_IPERF3:5201" "nbd-port:$PORT_NBD:10809"; do
		IFS=: read -r opt hp gp <<<"$f"
		case "$hp" in '' | *[!0-9]*) xt_die "--$opt needs a port number (0: none)" ;; esac
		[ "$hp" = 0 ] && continue
		[ "$hp" -le 65535 ] || xt_die "--$opt $hp: not a port"
		if (exec 3<>"/dev/tcp/127.0.0.1/$hp") 2>/dev/null; then
			xt_die "127.0.0.1:$hp is in use; choose another with --$opt"
		fi
		RUN_ARGS+=(--forward "$hp:$gp")
	done
	;;
esac
exec tests/harness/run-suite.sh --interactive --kernel "$KERNEL" --memory "$MEMORY" --cmdline "$CMDLINE" "${RUN_ARGS[@]}"
