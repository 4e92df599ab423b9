# nbd-suspend-loop: many short suspend rounds with NBD traffic, to catch the intermittent stall of
# NBD I/O after a suspend (docs/BLK.md, "NBD I/O after a suspend"). A guest with a 32 MiB
# read-write xvda; each round: `nbdcopy --flush` starts writing 32 MiB of fresh random data, one
# suspend of the round's kind runs under it (S = xl save + xl restore, L = the same with the domain
# kept saved for 70 s, longer than the guest's 60 s NBD socket timeout, C = xl save -c,
# M = localhost xl migrate; the kinds cycle through XT_LOOP_KINDS, default "S C M L"), the write
# must finish within 420 s (a long save leaves dom0's TCP in back-off for up to about two minutes),
# then nbdcopy reads the export back within 120 s and it must equal the data written. A write or read that fails or times
# out is a stall: dom0 asks the guest for a status dump (xenstore `data/dump`, the `xenrs dump:`
# lines of docs/CONSOLE.md), twice 10 s apart so moving counters show, prints both with the
# console tail, and the scenario fails naming the round. Rounds: XT_LOOP_ROUNDS (default 4, one of each kind, to keep the default suite short; the 12-round run of 2026-12-03 and longer loops go through --env XT_LOOP_ROUNDS=N).
# No guest error line.
# xt-timeout: 3600
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-loop
IP=169.254.77.48
MIB=32
ROUNDS=${XT_LOOP_ROUNDS:-4}
read -r -a KINDS <<<"${XT_LOOP_KINDS//,/ }"
[ ${#KINDS[@]} -gt 0 ] || KINDS=(S C M L)

# _loop_stall ROUND WHAT: the stall's evidence (blk_stall_evidence, unless the timed-out transfer
# gathered it already), then FAIL.
_loop_stall() {
	local round=$1 what=$2
	if [[ $what != *"evidence: "* ]]; then
		blk_stall_evidence "$G" "$IP" "r$round"
		what+="; evidence: $BLK_EVIDENCE"
	fi
	xl list 2>/dev/null | sed 's/^/xt|   xl list: /'
	xt_fail "stall in round $round of $ROUNDS ($what); rounds done before it: $((round - 1)); times: $times $(blk_errors "$G")"
}

xt_disk xvda $MIB || xt_fail "xt_disk xvda failed"
blk_start "$G" "$IP" "disk=$XT_DISK" || xt_fail "$BLK_WHY"
blk_uri "$IP" xvda
times=""
n=0
for ((r = 1; r <= ROUNDS; r++)); do
	kind=${KINDS[$(((r - 1) % ${#KINDS[@]}))]}
	blk_random "$XT_DISKS/src" $MIB || xt_fail "cannot write $XT_DISKS/src"
	want=$BLK_SHA
	xt_up
	t0=$XT_UPF
	timeout 420 nbdcopy --flush "$XT_DISKS/src" "$BLK_URI" >"$XT_RUN/loop-writer.out" 2>&1 &
	writer=$!
	# Let the copy get under way (I/O in flight at the suspend).
	sleep 1
	n=$((n + 1))
	if ! blk_round "$G" "$kind" "$n"; then
		kill "$writer" 2>/dev/null
		wait "$writer" 2>/dev/null
		_loop_stall "$r" "$BLK_WHY"
	fi
	wait "$writer"
	rc=$?
	_xt_since "$t0"
	if [ $rc -ne 0 ]; then
		_loop_stall "$r" "$kind: nbdcopy write failed (rc=$rc, 124 = timeout, after ${_XT_SINCE}s): $(tr '\n' ' ' <"$XT_RUN/loop-writer.out" | cut -c1-200)"
	fi
	wsecs=$_XT_SINCE
	if ! blk_nbd_sha "$BLK_URI" 120; then
		_loop_stall "$r" "$kind: read-back: $BLK_WHY"
	fi
	[ "$BLK_SHA" = "$want" ] || xt_fail "round $r ($kind): read back sha256 ${BLK_SHA:0:16}, written ${want:0:16}"
	times+="$kind:${BLK_ROUND_SECS}s/w${wsecs%.*}s/r${BLK_SECS%.*}s "
	xt_log "round $r/$ROUNDS $kind done: $times"
done
blk_sha "${BLK_FILE[xvda]}"
problems=""
[ "$BLK_SHA" = "$want" ] || problems+="dom0's backing file has sha256 ${BLK_SHA:0:16}, the last write ${want:0:16}; "
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
blk_verdict "$G" "$problems" "rounds=$ROUNDS stalls=0: each round wrote $MIB MiB with nbdcopy --flush across one suspend and read it back equal (round kind: suspend/write/read seconds): $times"
