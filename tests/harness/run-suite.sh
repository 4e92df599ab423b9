#!/usr/bin/env bash
# Host side of the real-Xen harness: QEMU (TCG) -> Xen 4.17 -> Debian dom0 -> `xl create`.
#
#   run-suite.sh [--only a,b] [--scenario FILE]... [options]     run the scenarios (one QEMU boot)
#   run-suite.sh --interactive [--memory N] [--cmdline "..."]    boot one guest, console live
#   run-suite.sh --interactive --forward H:P... [--disk MIB] [--do LIST]   ./run.sh's networked guest
#
# Options:
#   --only LIST        comma-separated built-in scenarios (tests/scenarios/NAME.sh) to run;
#                      default: all of them but those marked `# xt-explicit` (bench); "none":
#                      only the --scenario files
#   --scenario FILE    also run this user scenario (repeatable) against a fresh default guest
#   --kernel ELF       guest kernel (default: $CARGO_TARGET_DIR or target/ + x86_64-xen/release/kernel)
#   --memory N         interactive guest's memory in MiB (default 32)
#   --cmdline STR      interactive guest's command line (default "then=poweroff"); without
#                      then=poweroff dom0 runs tests/harness/dom0/serve.sh: the guest gets a vif
#                      (169.254.77.10) and a command loop runs on the console
#   --forward H:P      interactive: forward 127.0.0.1:H on the host to the guest's TCP port P
#                      (QEMU user networking to dom0's eth0, socat in dom0; repeatable)
#   --disk MIB         interactive (serve): the guest's scratch disk xvda (default 32; 0: none)
#   --do LIST          interactive (serve): run these comma-separated commands once the guest is
#                      up, then shut down; the exit status says whether all of them succeeded
#   --timeout SECS     QEMU's wall-clock limit (default: 300 + twice the scenarios' timeouts, at
#                      most 3600; interactive: none)
#   --smp N            emulated CPUs (default 2)
#   --log FILE         serial log (default target/xen-harness/serial-<time>.log)
#   --shell            after the run, a root shell in dom0 on the console (implies a terminal)
#   --env NAME=VALUE   export NAME (XT_[A-Z0-9_]+) to the scenarios in dom0 (repeatable), e.g.
#                      XT_SOAK_ROUNDS for tests/soak/soak.sh
#
# Suite mode exits 0 only if dom0 printed its final summary, no result is FAIL, every scenario
# reported, and QEMU ended by itself before the timeout. The serial log has every line with the
# host's seconds since QEMU started.
set -uo pipefail

# shellcheck source=tests/harness/host-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/host-lib.sh"

MODE=suite
ONLY=""
USER_FILES=()
KERNEL=""
MEMORY=32
CMDLINE="then=poweroff"
TIMEOUT=""
SMP=2
LOG=""
SHELL_AT_END=0
ENVS=()
FORWARDS=()
SERVE_DISK=32
DO=""
while [ $# -gt 0 ]; do
	case "$1" in
	--interactive) MODE=interactive ;;
	--only) ONLY=${2:?--only needs a list}; shift ;;
	--only=*) ONLY=${1#--only=} ;;
	--scenario) USER_FILES+=("${2:?--scenario needs a file}"); shift ;;
	--scenario=*) USER_FILES+=("${1#--scenario=}") ;;
	--kernel) KERNEL=${2:?}; shift ;;
	--memory) MEMORY=${2:?}; shift ;;
	--cmdline) CMDLINE=${2?}; shift ;;
	--timeout) TIMEOUT=${2:?}; shift ;;
	--smp) SMP=${2:?}; shift ;;
	--log) LOG=${2:?}; shift ;;
	--shell) SHELL_AT_END=1 ;;
	--env)
		[[ ${2:-} =~ ^XT_[A-Z0-9_]+=.*$ ]] || xt_die "--env needs XT_NAME=VALUE (got '${2:-}')"
		ENVS+=("$2")
		shift
		;;
	--forward) FORWARDS+=("${2:?--forward needs HOSTPORT:PORT}"); shift ;;
	--disk) SERVE_DISK=${2:?--disk needs MiB}; shift ;;
	--do) DO=${2?--do needs a list}; shift ;;
	-h | --help)
		sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*) xt_die "unknown option '$1' (see --help)" ;;
	esac
	shift
done
case "$MEMORY" in '' | *[!0-9]*) xt_die "--memory needs a number of MiB" ;; esac
case "$SERVE_DISK" in '' | *[!0-9]*) xt_die "--disk needs a number of MiB" ;; esac
[ "$SERVE_DISK" -le 128 ] || xt_die "--disk: at most 128 MiB (dom0's root is in RAM)"
SERVE=0
if [ "$MODE" = interactive ]; then
	case " $CMDLINE " in *" then=poweroff "*) ;; *) SERVE=1 ;; esac
fi
HOSTFWD=""
for f in "${FORWARDS[@]}"; do
	if ! [[ $f =~ ^([0-9]+):([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" -lt 1 ] || [ "${BASH_REMATCH[1]}" -gt 65535 ]; then
		xt_die "--forward '$f': expected HOSTPORT:GUESTPORT"
	fi
	# Bound to the host's loopback only; dom0's socat listens on eth0 (10.0.2.15) at the guest's port.
	HOSTFWD+=",hostfwd=tcp:127.0.0.1:${BASH_REMATCH[1]}-:${BASH_REMATCH[2]}"
done

# --- what to run -------------------------------------------------------------------------------
SCEN_DIR="$XT_REPO/tests/scenarios"
mapfile -t ALL < <(find "$SCEN_DIR" -maxdepth 1 -name '*.sh' -printf '%f\n' 2>/dev/null | sed 's/\.sh$//' | LC_ALL=C sort)
SELECTED=()
if [ -z "$ONLY" ]; then
	# A scenario with a `# xt-explicit` line (the long bench) runs only when --only names it.
	for n in "${ALL[@]}"; do
		grep -q -E '^#[[:space:]]*xt-explicit([[:space:]]|$)' "$SCEN_DIR/$n.sh" || SELECTED+=("$n")
	done
elif [ "$ONLY" != none ]; then
	IFS=',' read -r -a want <<<"$ONLY"
	for w in "${want[@]}"; do
		w=${w// /}
		[ -n "$w" ] || continue
		[ -f "$SCEN_DIR/$w.sh" ] || xt_die "--only: no scenario '$w' (have: ${ALL[*]})"
		SELECTED+=("$w")
	done
fi
USER_NAMES=()
for f in "${USER_FILES[@]}"; do
	[ -f "$f" ] || xt_die "--scenario: no such file '$f'"
	n=$(basename "$f" .sh)
	n=${n//[^A-Za-z0-9_.-]/_}
	for u in "${USER_NAMES[@]}" "${SELECTED[@]}"; do
		[ "$u" = "$n" ] && xt_die "--scenario: two scenarios are named '$n'; rename one file"
	done
	USER_NAMES+=("$n")
done
if [ "$MODE" = suite ] && [ $((${#SELECTED[@]} + ${#USER_NAMES[@]})) -eq 0 ]; then
	xt_die "no scenario selected"
fi

[ -n "$KERNEL" ] || KERNEL=$(xt_kernel_elf)
[ -f "$KERNEL" ] || xt_die "no guest kernel at $KERNEL (build it with: cargo kbuild)"

# --- payload -------------------------------------------------------------------------------------
xt_apt_install qemu-system-x86 cpio
case "$(qemu-system-x86_64 --version | head -n 1)" in
*" 7."*) ;;
*) xt_log "WARNING: $(qemu-system-x86_64 --version | head -n 1): the harness was measured on QEMU 7.2 (bookworm); QEMU 10 breaks nested SVM guests" ;;
esac
"$XT_HARNESS/build-dom0.sh" || xt_die "building the dom0 payload failed"
DOM0="$XT_CACHE/dom0"

# Everything of this run lives in its own directory (several runs may share the cache).
mkdir -p "$XT_CACHE"
# Leftovers of runs that were killed (QEMU has read its files within seconds of starting).
find "$XT_CACHE" -maxdepth 1 -name 'run.*' -mmin +120 -exec rm -rf {} + 2>/dev/null
RUN=$(mktemp -d "$XT_CACHE/run.XXXXXX")
trap 'rm -rf "$RUN"' EXIT
# Hard links (or copies): a concurrent dom0 rebuild cannot pull the files from under QEMU.
for f in xen.elf vmlinux; do
	ln "$DOM0/$f" "$RUN/$f" 2>/dev/null || cp "$DOM0/$f" "$RUN/$f"
done
OV="$RUN/overlay"
mkdir -p "$OV/harness/scenarios/lib" "$OV/harness/user" "$OV/harness/guest" "$OV/etc/xen/scripts"
install -m 755 "$XT_HARNESS/dom0/init.sh" "$OV/init"
install -m 755 "$XT_HARNESS/dom0/runner.sh" "$OV/harness/runner.sh"
install -m 755 "$XT_HARNESS/dom0/serve.sh" "$OV/harness/serve.sh"
# The shipped examples (tests/scenarios/libvirt.sh runs examples/xenrs.xml).
mkdir -p "$OV/harness/examples"
install -m 644 "$XT_REPO"/examples/*.xml "$OV/harness/examples/"
install -m 644 "$XT_HARNESS/dom0/lib.sh" "$OV/harness/lib.sh"
install -m 755 "$XT_HARNESS/dom0/xt-vif" "$XT_HARNESS/dom0/xt-block" "$OV/etc/xen/scripts/"
install -m 644 "$KERNEL" "$OV/harness/guest/kernel"
sum_timeouts=0
for n in "${SELECTED[@]}"; do
	install -m 644 "$SCEN_DIR/$n.sh" "$OV/harness/scenarios/$n.sh"
done
# Helpers shared by several scenarios: lib/*.sh are sourced after lib.sh before every scenario;
# other files there (lib/nbd-client.py) are tools the scenarios run from /harness/scenarios/lib/.
for f in "$SCEN_DIR"/lib/*; do
	[ -f "$f" ] && install -m 644 "$f" "$OV/harness/scenarios/lib/"
done
for i in "${!USER_FILES[@]}"; do
	install -m 644 "${USER_FILES[$i]}" "$OV/harness/user/${USER_NAMES[$i]}.sh"
done
for f in "$OV"/harness/scenarios/*.sh "$OV"/harness/user/*.sh; do
	[ -e "$f" ] || continue
	t=$(sed -n -E 's/^#[[:space:]]*xt-timeout:[[:space:]]*([0-9]+).*/\1/p' "$f" | head -n 1)
	sum_timeouts=$((sum_timeouts + ${t:-120}))
done
{
	printf 'XT_MODE=%q\n' "$MODE"
	printf 'XT_SCENARIOS=%q\n' "${SELECTED[*]}"
	printf 'XT_USER_SCENARIOS=%q\n' "${USER_NAMES[*]}"
	printf 'XT_GUEST_MEMORY=%q\n' "$MEMORY"
	printf 'XT_GUEST_CMDLINE=%q\n' "$CMDLINE"
	printf 'XT_SCENARIO_TIMEOUT=%q\n' 120
	printf 'XT_SHELL=%q\n' "$SHELL_AT_END"
	for e in "${ENVS[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
	printf 'XT_SERVE_PORTS=%q\n' "${FORWARDS[*]}"
	printf 'XT_SERVE_DISK=%q\n' "$SERVE_DISK"
	printf 'XT_DO=%q\n' "$DO"
} >"$OV/harness/run.conf"
# The kernel unpacks concatenated (separately compressed) cpio archives in order, later files
# replacing earlier ones: the cached dom0 image first, this run's overlay after it.
# (Both are plain newc cpio: GNU cpio pads each to 512 bytes, so the second starts aligned.)
(cd "$OV" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$RUN/overlay.cpio"
cat "$DOM0/dom0-initrd.cpio" "$RUN/overlay.cpio" >"$RUN/initrd.cpio"

# --- QEMU ------------------------------------------------------------------------------------
LOGDIR="$(xt_target_dir)/xen-harness"
mkdir -p "$LOGDIR"
SUMMARY="$LOGDIR/summary-latest.txt"
# The bench scenario's figures (tests/scenarios/bench.sh) are saved here; a run that includes it
# first removes the previous ones, so they are never mistaken for this run's.
BENCH_JSON="$LOGDIR/bench-latest.json"
BENCH_MD="$LOGDIR/bench-latest.md"
BENCH_RUNS="$LOGDIR/bench-latest-runs.jsonl"
case " ${SELECTED[*]} " in *" bench "*) rm -f "$BENCH_JSON" "$BENCH_MD" "$BENCH_RUNS" ;; esac
# Replaced by the real verdict at the end; says FAIL if this script dies on the way.
printf 'RESULT xen-harness FAIL run-suite.sh did not finish\n0 passed, 1 failed\nflakes: 0\n' >"$SUMMARY"
[ -n "$LOG" ] || LOG="$LOGDIR/serial-$(date +%Y%m%d-%H%M%S)-$$.log"
ln -sfn "$LOG" "$LOGDIR/serial-latest.log" 2>/dev/null || true
if [ -z "$TIMEOUT" ]; then
	# dom0 boot + every scenario twice (a triple-fault retry) + slack, but at most an hour: the
	# per-scenario limits in dom0 are the real bound, this is the backstop (CI has 90 min).
	if [ "$MODE" = suite ]; then
		TIMEOUT=$((300 + 2 * sum_timeouts))
		[ "$TIMEOUT" -le 3600 ] || TIMEOUT=3600
	else
		TIMEOUT=0
	fi
fi

XEN_ARGS="console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all noreboot ${XT_XEN_ARGS:-}"
# rootfstype=ramfs: the initramfs root is otherwise a tmpfs limited to half the RAM the kernel
# counts while it unpacks, which excludes the reserved initrd itself: with dom0_mem=1024M a ~300 MB
# image then fails with "Initramfs unpacking failed: write error". ramfs has no limit (dom0's
# scratch files go to /run, a tmpfs, anyway).
DOM0_ARGS="console=hvc0 earlyprintk=xen rootfstype=ramfs"
# -initrd is QEMU's multiboot module list "FILE ARGS,FILE": a comma inside a part is doubled.
MODULES="${RUN}/vmlinux ${DOM0_ARGS//,/,,},${RUN}/initrd.cpio"
NIC=(-nic none)
if [ "$SERVE" = 1 ] && [ -n "$HOSTFWD" ]; then
	# dom0's eth0 (e1000): QEMU user networking, restrict=on (no way out of the emulated machine
	# but the hostfwd rules, each bound to 127.0.0.1).
	NIC=(-nic "user,model=e1000,restrict=on$HOSTFWD")
fi
if [ "$SERVE" = 1 ]; then
	# The user's terminal: Xen's boot messages at its default levels, a quiet dom0 kernel and
	# no second copy of the guest's console (its port 0xE9 lines at guest_loglvl=all).
	XEN_ARGS=${XEN_ARGS/loglvl=all guest_loglvl=all/}
	DOM0_ARGS+=" quiet"
	MODULES="${RUN}/vmlinux ${DOM0_ARGS//,/,,},${RUN}/initrd.cpio"
fi
# shellcheck disable=SC2054 # the commas belong to -cpu
QEMU=(qemu-system-x86_64 -accel tcg -cpu qemu64,+svm,+npt -m 3072 -smp "$SMP"
	-nographic -no-reboot "${NIC[@]}"
	-kernel "$RUN/xen.elf" -append "$XEN_ARGS" -initrd "$MODULES")

xt_log "guest kernel: $KERNEL ($(stat -c %s "$KERNEL") bytes)"
xt_log "overlay $(stat -c %s "$RUN/overlay.cpio") bytes + dom0 image $(stat -c %s "$DOM0/dom0-initrd.cpio") bytes"
xt_log "serial log: $LOG"
printf '%q ' timeout "$TIMEOUT" "${QEMU[@]}" >"$LOG.cmd"
echo >>"$LOG.cmd"

if [ "$MODE" = interactive ] || [ "$SHELL_AT_END" = 1 ]; then
	xt_log "starting QEMU; the console is yours (Ctrl-a x quits QEMU, Ctrl-a h for help)"
	if [ "$TIMEOUT" = 0 ]; then
		"${QEMU[@]}" -serial mon:stdio | tee "$LOG"
	else
		timeout --foreground "$TIMEOUT" "${QEMU[@]}" -serial mon:stdio | tee "$LOG"
	fi
	QRC=${PIPESTATUS[0]}
	if [ "$SERVE" = 1 ] && [ "$SHELL_AT_END" = 0 ]; then
		# serve.sh's last line: `XT-RUN-END ok|fail ...`.
		END=$(tr -d '\r' <"$LOG" | grep -a '^XT-RUN-END ' | tail -n 1)
		case "$END" in
		"XT-RUN-END ok"*) exit 0 ;;
		"") xt_log "dom0 did not finish (QEMU exit status $QRC): see $LOG"; exit 1 ;;
		*) xt_log "${END#XT-RUN-END }"; exit 1 ;;
		esac
	fi
	exit "$QRC"
fi

T0=${EPOCHREALTIME/./}
# stamp: prefix every serial line with the host's seconds since QEMU started; save them all,
# and show the harness's own lines (progress, dumps, results) live. Xen's own panic ends the
# emulated machine for good (`noreboot`: "Manual reset required"), so QEMU is stopped 10 s later
# (the rest of the panic text still reaches the log) instead of idling until the timeout: on
# 2026-12-04 Xen double-faulted 35 minutes into a long soak (docs/TESTING-XEN.md).
stamp() {
	local line now el ts panicked=0
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line//$'\r'/}
		now=${EPOCHREALTIME/./}
		el=$(((now - T0) / 1000))
		printf -v ts '[%4d.%03d]' $((el / 1000)) $((el % 1000))
		printf '%s %s\n' "$ts" "$line" >>"$LOG"
		case "$line" in
		"xt: "* | "xt| "* | "RESULT "* | *" passed, "*" failed" | "flakes: "*) printf '%s %s\n' "$ts" "$line" ;;
		*"Panic on CPU"* | *"Kernel panic"*) printf '%s %s\n' "$ts" "$line" ;;
		esac
		case "$line" in
		"(XEN) Panic on CPU"* | "(XEN) Manual reset required"*)
			if [ "$panicked" = 0 ]; then
				panicked=1
				printf '%s %s\n' "$ts" "xt: Xen panicked; stopping QEMU in 10 s (see $LOG)"
				(sleep 10 && pkill -f -- "-kernel $RUN/xen.elf") &
			fi
			;;
		esac
	done
}
: >"$LOG"
xt_log "booting Xen + dom0 in QEMU (TCG), timeout ${TIMEOUT} s; scenarios: ${SELECTED[*]} ${USER_NAMES[*]}"
timeout "$TIMEOUT" "${QEMU[@]}" -serial stdio -monitor none </dev/null 2>&1 | stamp
QRC=${PIPESTATUS[0]}
ELAPSED=$(xt_elapsed $((T0 / 1000)))

# --- verdict ---------------------------------------------------------------------------------
first_at() { grep -m1 -E "$1" "$LOG" | sed -E 's/^\[ *([0-9]+\.[0-9]+)\].*/\1 s/'; }
xt_log "QEMU exited with $QRC after $ELAPSED (124 = killed at the ${TIMEOUT} s timeout)"
xt_log "since QEMU start: Xen $(first_at '\(XEN\) Xen version') | dom0 kernel $(first_at 'Linux version') | dom0 ready $(first_at 'xt: dom0 ready') | suite done $(first_at 'XT-FINAL-END')"

FINAL=$(sed -E 's/^\[ *[0-9]+\.[0-9]+\] //' "$LOG" | sed -n '/^XT-FINAL-BEGIN$/,/^XT-FINAL-END$/p')
RESULTS=$(printf '%s\n' "$FINAL" | grep -E '^RESULT [^ ]+ (PASS|FAIL|FLAKE)( |$)' || true)
PASSED=$(printf '%s\n' "$RESULTS" | grep -c -E '^RESULT [^ ]+ PASS' || true)
FAILED=$(printf '%s\n' "$RESULTS" | grep -c -E '^RESULT [^ ]+ FAIL' || true)
FLAKES=$(printf '%s\n' "$RESULTS" | grep -c -E '^RESULT [^ ]+ FLAKE' || true)
DOM0_SUMMARY=$(printf '%s\n' "$FINAL" | grep -E '^[0-9]+ passed, [0-9]+ failed$' || true)
EXPECTED=$((${#SELECTED[@]} + ${#USER_NAMES[@]}))
PROBLEMS=()
[ -n "$FINAL" ] || PROBLEMS+=("no final summary from dom0 (crash, hang or timeout: see $LOG)")
[ -n "$FINAL" ] && [ "$DOM0_SUMMARY" != "$PASSED passed, $FAILED failed" ] &&
	PROBLEMS+=("dom0's summary '$DOM0_SUMMARY' does not match the $PASSED/$FAILED RESULT lines received (garbled serial line?)")
[ $((PASSED + FAILED)) -lt "$EXPECTED" ] && PROBLEMS+=("only $((PASSED + FAILED)) results for $EXPECTED scenarios")
[ "$QRC" = 124 ] && PROBLEMS+=("QEMU was killed at the ${TIMEOUT} s timeout")
# Xen's panic: its reason (the line after "Panic on CPU N:") and the last RIP Xen printed before it.
XEN_PANIC=$(sed -E 's/^\[ *[0-9]+\.[0-9]+\] //' "$LOG" | awk '
	/^\(XEN\) RIP:/ { rip = $0 }
	p == 1 { sub(/^\(XEN\) /, ""); print cpu " " $0 "; last " rip; exit }
	/^\(XEN\) Panic on CPU/ { p = 1; cpu = $0; sub(/^\(XEN\) /, "", cpu); sub(/^\(XEN\) /, "", rip) }')
[ -n "$XEN_PANIC" ] && PROBLEMS+=("Xen itself panicked, the emulated machine stopped there: $XEN_PANIC")

for p in "${PROBLEMS[@]}"; do
	RESULTS+=$'\n'"RESULT xen-harness FAIL $p"
	FAILED=$((FAILED + 1))
done
printf '%s\n%s\n%s\n' "${RESULTS#$'\n'}" "$PASSED passed, $FAILED failed" "flakes: $FLAKES" | sed '/^$/d' >"$SUMMARY"
# Benchmark figures: the last BENCH-JSON line, and the last table (it starts with "Measured").
BJ=$(sed -n -E 's/^\[ *[0-9]+\.[0-9]+\] xt\| BENCH-JSON //p' "$LOG" | tail -n 1)
if [ -n "$BJ" ]; then
	printf '%s\n' "$BJ" >"$BENCH_JSON"
	# Every run of the last bench: the BENCH-RUN lines printed just before its BENCH-JSON line.
	sed -n -E 's/^\[ *[0-9]+\.[0-9]+\] xt\| (BENCH-RUN |BENCH-JSON )/\1/p' "$LOG" |
		awk '/^BENCH-JSON / {m = n; for (i = 0; i < n; i++) f[i] = l[i]; n = 0; next}
			{sub(/^BENCH-RUN /, ""); l[n++] = $0} END {for (i = 0; i < m; i++) print f[i]}' >"$BENCH_RUNS"
	sed -n -E 's/^\[ *[0-9]+\.[0-9]+\] xt\| BENCH-MD ?//p' "$LOG" |
		awk '/^Measured / {n = 0} {l[n++] = $0} END {for (i = 0; i < n; i++) print l[i]}' >"$BENCH_MD"
	xt_log "benchmark figures: $BENCH_JSON, $BENCH_MD and every run in $BENCH_RUNS"
fi
echo "==== real-Xen suite: serial log $LOG ($ELAPSED) ===="
cat "$SUMMARY"
[ "$FAILED" -eq 0 ]
