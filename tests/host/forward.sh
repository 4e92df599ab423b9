#!/usr/bin/env bash
# Host-side check of `./run.sh`'s forwards (run by `./run.sh test` after the real-Xen suite, or
# alone): boots `./run.sh` (QEMU -> Xen -> dom0 -> the guest) with its terminal replaced by a
# pipe, and from THIS machine, through QEMU's 127.0.0.1 hostfwd and dom0's socat:
#   1. QEMU listens on 127.0.0.1 only (every listening socket of its process);
#   2. TCP echo answers (one connection, kept open), iperf3 -c and -R move data, and nbdinfo
#      (if installed) sees the scratch disk's size;
#   3. `status` typed on the terminal counts the open connection; `save-restore`, `checkpoint` and
#      `migrate` succeed and the SAME echo connection still echoes after each (TCP across xl
#      save/restore, save -c and migrate, end to end);
#   4. Ctrl-C (the byte a terminal sends) shuts the guest down, ./run.sh exits 0 and the ports
#      are closed again.
# Prints `RESULT host-forward PASS|FAIL <details>`; exits non-zero on FAIL.
#
# Usage: tests/host/forward.sh [--boot-timeout SECS] [-- ./run.sh options...]
# Holds no lock itself: run it the way you run ./run.sh (one QEMU at a time).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=tests/harness/host-lib.sh
. tests/harness/host-lib.sh

BOOT_TIMEOUT=900
EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	--boot-timeout) BOOT_TIMEOUT=${2:?}; shift ;;
	--) shift; EXTRA=("$@"); break ;;
	*) xt_die "unknown option '$1'" ;;
	esac
	shift
done

command -v iperf3 >/dev/null || xt_apt_install iperf3
# free_port BASE: print the first port from BASE up that nothing on 127.0.0.1 listens on.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}
PE=$(free_port 27007)
PI=$(free_port 25201)
PN=$(free_port 20809)
DISK=8
T=$(mktemp -d /tmp/xenrs-forward.XXXXXX)
OUT=$T/run.log
mkfifo "$T/in"
PROBLEMS=()
NOTES=()
RUNPID=""
fail() { PROBLEMS+=("$*"); }

finish() {
	local st=PASS detail
	if [ -n "$RUNPID" ] && kill -0 "$RUNPID" 2>/dev/null; then
		# Ask dom0 to stop; if it does not within 120 s, end ./run.sh (and so QEMU).
		printf 'shutdown\n' >&3 2>/dev/null
		for _ in $(seq 1 120); do kill -0 "$RUNPID" 2>/dev/null || break; sleep 1; done
		# ./run.sh leads its own process group (setsid below): end it and QEMU together.
		kill -0 "$RUNPID" 2>/dev/null && kill -TERM -- "-$RUNPID" 2>/dev/null
	fi
	exec 3>&-
	if [ ${#PROBLEMS[@]} -gt 0 ]; then
		st=FAIL
		detail="${PROBLEMS[*]}"
		echo "---- ./run.sh output (last 40 lines; all of it: $OUT) ----"
		tr -d '\r' <"$OUT" | tail -n 40
	else
		detail="${NOTES[*]}"
		rm -rf "$T"
	fi
	echo "RESULT host-forward $st $detail"
	[ "$st" = PASS ]
}

# wait_out ERE SECS: wait until ./run.sh's output has a line matching ERE (sets LINE); false if
# ./run.sh ended or SECS passed.
wait_out() {
	local i
	for ((i = 0; i < $2 * 2; i++)); do
		LINE=$(tr -d '\r' <"$OUT" | grep -a -E -m 1 "$1")
		[ -n "$LINE" ] && return 0
		kill -0 "$RUNPID" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}
# count_out ERE: how many output lines match.
count_out() { tr -d '\r' <"$OUT" | grep -a -c -E "$1"; }

t0=$(xt_now_ms)
setsid ./run.sh --echo-port "$PE" --iperf3-port "$PI" --nbd-port "$PN" --disk "$DISK" "${EXTRA[@]}" <"$T/in" >"$OUT" 2>&1 &
RUNPID=$!
exec 3>"$T/in"
if ! wait_out '^==== xenrs is up' "$BOOT_TIMEOUT"; then
	fail "no 'xenrs is up' block within $BOOT_TIMEOUT s (or ./run.sh ended)"
	finish
	exit 1
fi
NOTES+=("up after $(xt_elapsed "$t0");")

# 1. QEMU's listening sockets: all on 127.0.0.1.
qpid=$(ss -Hltnp "sport = :$PE" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
if [ -z "$qpid" ]; then
	fail "nothing listens on 127.0.0.1:$PE;"
else
	listens=$(ss -Hltnp 2>/dev/null | grep "pid=$qpid," | awk '{print $4}' | sort | tr '\n' ' ')
	for a in $listens; do
		case "$a" in 127.0.0.1:*) ;; *) fail "QEMU (pid $qpid) listens on $a;" ;; esac
	done
	for p in "$PE" "$PI" "$PN"; do
		[[ " $listens" == *" 127.0.0.1:$p "* ]] || fail "QEMU does not listen on 127.0.0.1:$p (it does on: $listens);"
	done
	NOTES+=("QEMU listens on: $listens;")
fi

# 2. echo (one connection, kept for step 3), iperf3 both ways, NBD.
# echo_line TEXT: send a line on fd 4, expect it back within 60 s.
echo_line() {
	local got
	printf '%s\n' "$1" >&4 || return 1
	read -r -t 60 -u 4 got || return 1
	[ "$got" = "$1" ]
}
if exec 4<>"/dev/tcp/127.0.0.1/$PE"; then
	echo_line "host-before-$RANDOM" || fail "echo through 127.0.0.1:$PE did not come back;"
else
	fail "cannot connect to 127.0.0.1:$PE;"
fi
for dir in "" -R; do
	out=$(timeout 120 iperf3 -c 127.0.0.1 -p "$PI" -t 3 $dir 2>&1)
	recv=$(grep -E ' receiver$' <<<"$out" | tail -n 1 | grep -oE '[0-9.]+ [KMG]?bits/sec')
	if [ -n "$recv" ]; then
		NOTES+=("iperf3 ${dir:-(to the guest)}: $recv;")
	else
		fail "iperf3 -c 127.0.0.1 -p $PI $dir: $(tail -n 2 <<<"$out" | tr '\n' ' ');"
	fi
done
if command -v nbdinfo >/dev/null; then
	size=$(timeout 60 nbdinfo --size "nbd://127.0.0.1:$PN/xvda" 2>&1)
	if [ "$size" = $((DISK * 1048576)) ]; then
		NOTES+=("nbdinfo: xvda $size bytes;")
	else
		fail "nbdinfo --size nbd://127.0.0.1:$PN/xvda: '$size', expected $((DISK * 1048576));"
	fi
else
	NOTES+=("(no nbdinfo on this host: NBD not checked)")
fi

# 3. commands on the terminal; the echo connection across save-restore.
printf 'status\n' >&3
if wait_out '[0-9]+ open connection\(s\) to the guest' 60; then
	n=$(grep -oE '[0-9]+ open connection' <<<"$LINE" | cut -d' ' -f1)
	[ "${n:-0}" -ge 1 ] || fail "status counts $n connections to the guest while the echo one is open;"
else
	fail "no answer to 'status';"
fi
# Each command, then 3 lines on the same echo connection.
for c in save-restore checkpoint migrate; do
	t1=$(xt_now_ms)
	printf '%s\n' "$c" >&3
	if wait_out "^xt: ${c}: (done |FAILED)" 400; then
		case "$LINE" in
		*": done "*) NOTES+=("$c: $(xt_elapsed "$t1");") ;;
		*) fail "$LINE;" ;;
		esac
	else
		fail "$c did not finish within 400 s;"
	fi
	for i in 1 2 3; do
		if ! echo_line "host-after-$c-$i-$RANDOM"; then
			fail "echo line $i on the same connection after $c failed;"
			break 2
		fi
	done
done
exec 4>&-
[ "$(count_out '^xenrs (PANIC|FAULT|FATAL)|^xenrs [a-z0-9]+ error:')" = 0 ] || fail "guest error lines: $(tr -d '\r' <"$OUT" | grep -a -E '^xenrs (PANIC|FAULT|FATAL)|^xenrs [a-z0-9]+ error:' | head -n 3 | tr '\n' ' ');"

# 4. Ctrl-C, the byte a terminal sends (QEMU's mon:stdio passes it on; dom0's tty makes it SIGINT
#    for serve.sh): the guest is shut down, ./run.sh exits 0, the ports close.
printf '\003' >&3
rc=""
for _ in $(seq 1 180); do
	if ! kill -0 "$RUNPID" 2>/dev/null; then
		wait "$RUNPID"
		rc=$?
		break
	fi
	sleep 1
done
if [ -z "$rc" ]; then
	fail "./run.sh still running 180 s after Ctrl-C;"
else
	RUNPID=""
	[ "$rc" = 0 ] || fail "./run.sh exited with $rc after Ctrl-C;"
	[ "$(count_out '^xt: Ctrl-C: shutting down')" = 1 ] || fail "no 'xt: Ctrl-C: shutting down' line;"
	[ "$(count_out '^xt: shutdown: the guest powered off')" = 1 ] || fail "no 'xt: shutdown: the guest powered off' line;"
	for p in "$PE" "$PI" "$PN"; do
		(exec 5<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && fail "127.0.0.1:$p still open after ./run.sh ended;"
	done
	NOTES+=("Ctrl-C: guest powered off, ./run.sh exited 0; whole check $(xt_elapsed "$t0")")
fi
finish
