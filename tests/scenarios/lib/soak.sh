# shellcheck shell=bash disable=SC2034 # the SOAK_* results are for the scenarios
# The save/restore soak (soak_run), shared by the default suite's soak-short (10 rounds) and the
# long run of `./run.sh soak` (tests/soak/soak.sh). The runner sources every tests/scenarios/lib/*.sh
# after lib.sh and before each scenario; this file only defines functions. It uses blk_* (lib/blk.sh)
# for the guest, its disk and the rounds, and the guest's counter lines (docs/CONSOLE.md):
#   xenrs grants: after-resume frames=<n>/<max> active=<n> deferred=<n> free=<n> leaked=<n> regrants=<n>
#   xenrs memory: after-resume free_frames=<n> heap_used=<bytes> heap_free=<bytes>
#
# One guest (32 MiB, a vif, a 16 MiB read-write xvda exported over NBD) goes through ROUNDS rounds:
# round r is an `xl migrate` to localhost if r % 10 == 0, else a checkpoint (`xl save -c`) if
# r % 5 == 0, else `xl save` + `xl restore`. All the while
#  - one TCP connection to the echo port streams numbered lines (8 in flight); every echoed line is
#    compared with what was sent. A reset or a wrong line is counted (resets, corrupted bytes: the
#    byte positions that differ) and the stream reconnects, so the run goes on and reports figures;
#  - nbdcopy --flush writes the disk pass after pass, two random images in turn, and reads each pass
#    back with nbdcopy and compares every byte (cmp); a failed pass is counted as a reset.
# A checkpoint with no traffic before the first round and after the last gives the guest's grant
# counters and memory use at the start and at the end (the same quiet state: rings connected,
# nothing in flight). After the last round the disk is read back once more and dom0's backing file
# is compared with the last image written.
#
# Progress: `xt: <scenario>: soak round r/N <kind> <s>s: stream ... nbd ...` after every round.
# Final line: `xt: <scenario>: SOAK rounds=<n>/<N> saves=<n> checkpoints=<n> migrates=<n> resets=<n>
# nbd_connect_timeouts=<n> (of the resets) corrupted_bytes=<n> stream_bytes=<n> nbd_passes=<n> nbd_bytes_verified=<n> grants start: ... end: ...
# memory start: ... end: ... elapsed=<s>s guest_suspended=<s>s` (guest_suspended: the time the
# guest reported being away, summed over its resumes). PASS needs every round done, no reset, no corrupted byte,
# no leaked grant, the active and deferred grant counts and the free frames back at their start
# values (within SOAK_FRAME_SLACK frames), and lib.sh's common check (no unexpected error line).

SOAK_FRAME_SLACK=${SOAK_FRAME_SLACK:-8}

# _soak_stream IP STATUS STOP: the TCP echo stream (runs in the background). Writes
# `OK sent=<b> recv=<b> lines=<n> resets=<n> corrupt=<b> lost=<b>` to STATUS as it goes, and
# `DONE ...` (same fields) once STOP exists and the window drained.
_soak_stream() {
	local ip=$1 st=$2 stop=$3 fd="" seq=0 rseq=0 sent=0 recv=0 lines=0 resets=0 corrupt=0 lost=0
	local line got want i n tries why=""
	local pad
	printf -v pad '%04x' $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM \
		$RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM
	while :; do
		if [ -z "$fd" ]; then
			tries=0
			while ! exec {fd}<>"/dev/tcp/$ip/7"; do
				fd=""
				tries=$((tries + 1))
				if [ "$tries" -ge 30 ] || [ -e "$stop" ]; then
					echo "ERROR cannot reconnect ($why) sent=$sent recv=$recv lines=$lines resets=$resets corrupt=$corrupt lost=$lost" >"$st"
					return 1
				fi
				sleep 2
			done 2>/dev/null
		fi
		why=""
		if [ ! -e "$stop" ]; then
			while [ $((seq - rseq)) -lt 8 ]; do
				seq=$((seq + 1))
				line="seq=$seq $pad"
				if ! printf '%s\n' "$line" >&"$fd" 2>/dev/null; then
					why="write of seq=$seq failed"
					seq=$((seq - 1))
					break
				fi
				sent=$((sent + ${#line} + 1))
			done
		elif [ "$rseq" -eq "$seq" ]; then
			break
		fi
		if [ -z "$why" ]; then
			if ! read -r -t 90 -u "$fd" got; then
				why="no echo of seq=$((rseq + 1)) within 90 s or connection closed"
			else
				rseq=$((rseq + 1))
				want="seq=$rseq $pad"
				recv=$((recv + ${#got} + 1))
				lines=$((lines + 1))
				if [ "$got" != "$want" ]; then
					n=${#want}
					[ ${#got} -gt "$n" ] && n=${#got}
					for ((i = 0; i < n; i++)); do
						[ "${got:i:1}" = "${want:i:1}" ] || corrupt=$((corrupt + 1))
					done
					why="seq=$rseq came back as '${got:0:24}'"
				fi
			fi
		fi
		if [ -n "$why" ]; then
			# A reset (or a corrupted line: the stream can no longer be trusted). Count what was
			# in flight as lost and start again on a new connection.
			resets=$((resets + 1))
			echo "xt: soak stream: reset $resets: $why (sent=$sent recv=$recv)" >>"$st.log"
			lost=$((sent - recv))
			exec {fd}>&- 2>/dev/null
			fd=""
			rseq=$seq
			continue
		fi
		[ $((lines % 16)) -eq 0 ] && echo "OK sent=$sent recv=$recv lines=$lines resets=$resets corrupt=$corrupt lost=$lost" >"$st"
	done
	exec {fd}>&-
	echo "DONE sent=$sent recv=$recv lines=$lines resets=$resets corrupt=$corrupt lost=$lost" >"$st"
}

# _soak_writer URI IMG_A IMG_B STATUS STOP: nbdcopy --flush pass after pass (A, B, A, ...), each
# read back and compared byte by byte. Writes `RUNNING|DONE passes=<n> verified=<bytes>
# corrupt=<bytes> resets=<n> connect_timeouts=<n> last=<A|B>` to STATUS. A failed pass counts as a
# reset; connect_timeouts counts those among them whose nbdcopy could not even connect: libnbd
# 1.14 says `nbd_connect_uri: recv: Connection timed out` when its SYNs drew no answer for Linux's
# 127 s of SYN retries (docs/RELIABILITY.md).
# _soak_guest_nbd NAME: NAME's last NBD event lines (`xenrs info: nbd: conn ...`, errors too) from
# its console logs, as one line, for a pass that failed: how the guest saw the connection end.
_soak_guest_nbd() {
	local f
	for f in "$XT_CONSOLE_DIR/guest-$1.log" "$XT_CONSOLE_DIR/guest-$1--"*.log; do
		[ -r "$f" ] && tr -d '\r' <"$f" | grep -E '^xenrs (info: nbd: |nbd error: )'
	done | tail -n 6 | tr '\n' '|' | cut -c1-900
}

_soak_writer() {
	local uri=$1 a=$2 b=$3 st=$4 stop=$5 pass=0 verified=0 corrupt=0 resets=0 ct=0 img last=- d size rc
	local syn="nbd_connect_uri: recv: Connection timed out" why
	size=$(stat -c %s "$a")
	while [ ! -e "$stop" ]; do
		pass=$((pass + 1))
		if [ $((pass % 2)) = 1 ]; then img=$a; else img=$b; fi
		echo "RUNNING passes=$((pass - 1)) verified=$verified corrupt=$corrupt resets=$resets connect_timeouts=$ct last=$last" >"$st"
		timeout 600 nbdcopy --flush "$img" "$uri" >"$st.out" 2>&1
		rc=$?
		if [ $rc -ne 0 ]; then
			resets=$((resets + 1))
			why=""
			grep -q "$syn" "$st.out" && ct=$((ct + 1)) && why=" [connect: no answer to its SYNs]"
			echo "xt: soak writer: pass $pass: nbdcopy --flush failed (rc=$rc)$why: $(tr '\n' ' ' <"$st.out" | cut -c1-200); the guest's last NBD lines: $(_soak_guest_nbd "${SOAK_GUEST:-xt-soak}")" >>"$st.log"
			last=?
			sleep 2
			continue
		fi
		last=${img##*/}
		d=$({ timeout 600 nbdcopy "$uri" - 2>>"$st.out" || echo "nbdcopy-read-failed" >>"$st.out"; } | cmp -l "$img" - 2>>"$st.out" | wc -l)
		if grep -q -e nbdcopy-read-failed -e EOF "$st.out"; then
			resets=$((resets + 1))
			why=""
			grep -q "$syn" "$st.out" && ct=$((ct + 1)) && why=" [connect: no answer to its SYNs]"
			echo "xt: soak writer: pass $pass: the read-back failed$why: $(tr '\n' ' ' <"$st.out" | cut -c1-200); the guest's last NBD lines: $(_soak_guest_nbd "${SOAK_GUEST:-xt-soak}")" >>"$st.log"
			continue
		fi
		corrupt=$((corrupt + d))
		verified=$((verified + size))
		[ "$d" -gt 0 ] && echo "xt: soak writer: pass $pass: $d bytes differ from ${img##*/}" >>"$st.log"
	done
	echo "DONE passes=$pass verified=$verified corrupt=$corrupt resets=$resets connect_timeouts=$ct last=$last" >"$st"
}

# _soak_kv FILE KEY: print KEY's value in the one-line status FILE.
_soak_kv() {
	xt_field "$(_soak_line "$1")" "$2" || echo 0
}

# _soak_counters NAME N: set SOAK_GRANTS and SOAK_MEMORY to the fields of the `xenrs grants:
# after-resume` and `xenrs memory: after-resume` lines that follow NAME's `xenrs resumed n=N` line
# (in whichever of NAME's console logs has it: after a migration the guest logs as NAME--incoming).
_soak_counters() {
	local f out=""
	for f in "$XT_CONSOLE_DIR/guest-$1.log" "$XT_CONSOLE_DIR/guest-$1--"*.log; do
		[ -r "$f" ] || continue
		out=$(tr -d '\r' <"$f" | awk -v n="$2" '
			$0 ~ "^xenrs resumed n=" n " " {on = 1; g = ""; m = ""; next}
			on && /^xenrs grants: after-resume / && g == "" {g = $0}
			on && /^xenrs memory: after-resume / && m == "" {m = $0}
			END {if (g != "" || m != "") print g "|" m}')
		[ -n "$out" ] && break
	done
	SOAK_GRANTS=${out%%|*}
	SOAK_GRANTS=${SOAK_GRANTS#xenrs grants: after-resume }
	SOAK_MEMORY=${out#*|}
	SOAK_MEMORY=${SOAK_MEMORY#xenrs memory: after-resume }
}

# _soak_show_matching NAME SEEN RE BEFORE WHAT: print (as `xt|` lines, for the CI log) every
# console line of NAME (its console logs, the migrated ones too) that matches the extended regex
# RE (anchored with ^ or not), after the first SEEN such lines, each with the BEFORE console lines
# before it, under a heading that names WHAT they are; set SOAK_MATCHED to the number of such
# lines now.
_soak_show_matching() {
	local f all re=$3 before=$4
	all=$(for f in "$XT_CONSOLE_DIR/guest-$1.log" "$XT_CONSOLE_DIR/guest-$1--"*.log; do
		[ -r "$f" ] && tr -d '\r' <"$f" | grep -E -B "$before" "$re" | sed "s|^|${f##*/}: |"
	done)
	# The lines now start with their file's name: a leading ^ becomes ": ".
	[ "${re#^}" != "$re" ] && re=": ${re#^}"
	SOAK_MATCHED=$(grep -c -E "$re" <<<"$all")
	[ "$SOAK_MATCHED" -gt "$2" ] || return 0
	echo "xt| soak: $((SOAK_MATCHED - $2)) new $5 line(s) on the guest's console, each with the $before lines before it:"
	awk -v seen="$2" -v re="$re" -v b="$before" '{l[NR] = $0} $0 ~ re {n++; if (n > seen) {for (i = NR - b; i <= NR; i++) if (i > last && i > 0) print "xt|   " l[i]; last = NR}}' <<<"$all"
}

# What _soak_show_matching looks for after each round: error and stall lines (XT_ERROR_RE), and
# the lines that name a TCP reset (`net: vif/N: sent|got TCP RST ...`, `nbd: conn N ...: reset (by
# the client, or timed out)`), so a reset the stream or the writer saw can be told apart (which side
# sent it, and what the guest was doing).
SOAK_RESET_RE='(sent|got) TCP RST |: reset \(by the client'

# _soak_line FILE: the first line of a status file (the stream and the writer rewrite theirs in
# place, so a read may catch it empty: a few tries).
_soak_line() {
	local line="" i
	for i in 1 2 3 4 5; do
		read -r line <"$1" 2>/dev/null
		[ -n "$line" ] && break
		sleep 0.1
	done
	echo "$line"
}

# _soak_after_diag NAME N: net_diag ends with a checkpoint (`xl save -c`), which the guest counts
# as suspend N+1; succeed if its `resumed n=N+1` line came, so that the caller counts it too (the
# next round otherwise waits for a resume number the guest has already passed: round 199 of the
# 2026-12-04 16:28 soak failed so, right after the soak's first net_diag).
_soak_after_diag() {
	blk_wait_count "$1" "^xenrs resumed n=$(($2 + 1)) mode=cancelled " 1 20
}

# _soak_console_mark NAME: remember how many lines each of NAME's console logs has now.
declare -gA SOAK_CONSOLE_MARK=()
_soak_console_mark() {
	local f
	SOAK_CONSOLE_MARK=()
	for f in "$XT_CONSOLE_DIR/guest-$1.log" "$XT_CONSOLE_DIR/guest-$1--"*.log; do
		[ -r "$f" ] && SOAK_CONSOLE_MARK[$f]=$(wc -l <"$f")
	done
}

# _soak_suspended_ms NAME: the milliseconds NAME's guests reported being suspended (`suspend: Xen
# system time moved N ms while suspended`, one line per resume) in its console logs since
# _soak_console_mark: the time the guest was away, for a save, restore, migration or checkpoint.
_soak_suspended_ms() {
	local f
	for f in "$XT_CONSOLE_DIR/guest-$1.log" "$XT_CONSOLE_DIR/guest-$1--"*.log; do
		[ -r "$f" ] || continue
		tail -n +$((${SOAK_CONSOLE_MARK[$f]:-0} + 1)) "$f" | tr -d '\r'
	done | awk '/suspend: Xen system time moved [0-9]+ ms while suspended/ {
		for (i = 1; i <= NF; i++) if ($i == "moved") ms += $(i + 1)
	} END {print ms + 0}'
}

# _soak_triple_fault_dump: Xen's last `Triple fault` line and the vCPU state it dumped, as `xt|`
# lines.
_soak_triple_fault_dump() {
	xl dmesg 2>/dev/null | tr -d '\r' |
		awk '/Triple fault/ {buf = ""; n = 17} n > 0 {buf = buf "xt|   " $0 "\n"; n--} END {printf "%s", buf}'
}

# _soak_start_io IP URI IMG_A IMG_B STATUS WSTATUS STOP: fresh status files, then the stream and
# the writer in the background (their pids in SOAK_SPID and SOAK_WPID), 5 s to get going.
_soak_start_io() {
	rm -f "$7" "$5.log" "$6.log"
	echo "OK sent=0 recv=0 lines=0 resets=0 corrupt=0 lost=0" >"$5"
	echo "RUNNING passes=0" >"$6"
	_soak_stream "$1" "$5" "$7" &
	SOAK_SPID=$!
	_soak_writer "$2" "$3" "$4" "$6" "$7" &
	SOAK_WPID=$!
	sleep 5
}

# _soak_last_triple_fault: Xen's last `Triple fault` line (empty if none).
_soak_last_triple_fault() {
	xl dmesg 2>/dev/null | tr -d '\r' | grep 'Triple fault' | tail -n 1
}

# soak_run ROUNDS [MAX_SECS=0] [STOP_AT=0]: the soak (see the top of this file); ends with
# `result`. With MAX_SECS > 0 no round starts after MAX_SECS seconds, with STOP_AT > 0 (epoch
# seconds, dom0's clock) none after that time once 10 rounds are done; the result then says how
# many ran (a time-limited run counts as complete).
soak_run() {
	local rounds=$1 max=${2:-0} stop_at=${3:-0} G=xt-soak IP=169.254.77.49 MIB=16 limited=""
	SOAK_GUEST=$G
	# Status files per attempt and segment: nothing of an earlier one can write into them.
	local st=$XT_RUN/soak-stream.$XT_ATTEMPT.1.status wst=$XT_RUN/soak-writer.$XT_ATTEMPT.1.status
	local stop=$XT_RUN/soak.stop
	local problems="" r=0 n=0 kind t0 tr saves=0 cps=0 migs=0 spid wpid before g0 m0 g1 m1
	local sresets wresets corrupt v a b seen=0 rst_seen=0 dead="" lf la lb
	# Segments: with XT_SOAK_SURVIVE_FLAKES=1 (the long soak), a round in which the emulator's
	# triple fault killed the guest is run again on a new guest; counters of the finished segments
	# (as of their last completed round) are carried in acc.
	local survive=${XT_SOAK_SURVIVE_FLAKES:-0} segment=1 flakes=0 tf_last snap_s="" snap_w=""
	# A round that triple-faults twice in a row, or more than XT_SOAK_MAX_FLAKES flakes in all, is a
	# failure: the emulator's flake does not come back at once, a bug of ours would.
	local max_flakes=${XT_SOAK_MAX_FLAKES:-1000000} flake_round=0 w_passes=-1 w_still=0
	local -A acc=([recv]=0 [lines]=0 [sresets]=0 [wresets]=0 [ctimeouts]=0 [corrupt]=0 [passes]=0 [verified]=0)
	tf_last=$(_soak_last_triple_fault)
	[ "$survive" = 1 ] && echo 0 >"$XT_RUN/xt-triple-faults-handled"
	local -A logged=()
	xt_disk xvda $MIB || xt_fail "xt_disk xvda failed"
	blk_start "$G" "$IP" "disk=$XT_DISK" || xt_fail "$BLK_WHY"
	blk_uri "$IP" xvda
	a=$XT_DISKS/soak-A
	b=$XT_DISKS/soak-B
	head -c $((MIB << 20)) /dev/urandom >"$a" && head -c $((MIB << 20)) /dev/urandom >"$b" ||
		xt_fail "cannot write the images under $XT_DISKS"
	# dom0's TCP retransmits thin streams (fewer than 4 segments in flight: the echo stream, NBD
	# between requests) at a fixed timeout for its first 6 retries instead of doubling it. Each
	# round leaves the guest away for seconds; with the doubling a peer's next retransmission came
	# up to ~3 s after the guest was back, most of a round's time outside save/restore (the
	# 2026-12-04 17:38 soak: 4.2 s of 10.9). Only dom0's timing changes; the guest's side and what
	# the soak counts do not. Put back at the end.
	local thin_old
	thin_old=$(sysctl -n net.ipv4.tcp_thin_linear_timeouts 2>/dev/null)
	sysctl -qw net.ipv4.tcp_thin_linear_timeouts=1 2>/dev/null ||
		xt_log "soak: cannot set net.ipv4.tcp_thin_linear_timeouts (dom0's back-off stays exponential)"
	xt_up
	t0=$XT_UP
	# Where the guest's console logs stand now (_soak_suspended_ms counts what comes after).
	_soak_console_mark "$G"
	# The start figures: a checkpoint with no traffic (suspend n=1).
	n=1
	blk_round "$G" C "$n" || xt_fail "the first checkpoint (start figures): $BLK_WHY"
	sleep 1
	_soak_counters "$G" "$n"
	g0=$SOAK_GRANTS
	m0=$SOAK_MEMORY
	xt_log "soak: $rounds rounds$([ "$max" -gt 0 ] && echo " (at most ${max}s)"); start: grants $g0; memory $m0"
	_soak_start_io "$IP" "$BLK_URI" "$a" "$b" "$st" "$wst" "$stop"
	spid=$SOAK_SPID
	wpid=$SOAK_WPID
	for ((r = 1; r <= rounds; r++)); do
		xt_up
		if [ "$max" -gt 0 ] && [ $((XT_UP - t0)) -ge "$max" ]; then
			limited="stopped after $((r - 1)) of $rounds rounds: the ${max}s limit; "
			break
		fi
		if [ "$stop_at" -gt 0 ] && [ "$r" -gt 10 ] && [ "$EPOCHSECONDS" -ge "$stop_at" ]; then
			limited="stopped after $((r - 1)) of $rounds rounds: the stop time $(date -u -d "@$stop_at" +%H:%M) UTC; "
			break
		fi
		if [ $((r % 10)) = 0 ]; then
			kind=M
		elif [ $((r % 5)) = 0 ]; then
			kind=C
		else
			kind=S
		fi
		before=$(_soak_kv "$st" lines)
		n=$((n + 1))
		if ! blk_round "$G" "$kind" "$n"; then
			v=$(_soak_last_triple_fault)
			if [ "$survive" = 1 ] && [ -n "$v" ] && [ "$v" != "$tf_last" ] && [ "$flake_round" != "$r" ] &&
				[ "$flakes" -lt "$max_flakes" ]; then
				tf_last=$v
				flake_round=$r
				flakes=$((flakes + 1))
				# The runner retries an attempt only for triple faults beyond these.
				echo "$flakes" >"$XT_RUN/xt-triple-faults-handled"
				_soak_triple_fault_dump
				xt_log "soak round $r/$rounds $kind: the guest triple-faulted (${v#(XEN) }): the emulator's flake, $flakes so far, counted; the round is run again on a new guest (segment $((segment + 1)))"
				_soak_show_matching "$G" "$seen" "$XT_ERROR_RE" 8 error/stall
				[ "$SOAK_MATCHED" -gt 0 ] && problems+="segment $segment: $SOAK_MATCHED guest error/stall line(s) (shown above); "
				_soak_show_matching "$G" "$rst_seen" "$SOAK_RESET_RE" 6 "TCP reset"
				# What the segment did, as of its last completed round (the dead round is the
				# emulator's: its stream and nbdcopy errors are not counted).
				acc[recv]=$((acc[recv] + $(xt_field "$snap_s" recv || echo 0)))
				acc[lines]=$((acc[lines] + $(xt_field "$snap_s" lines || echo 0)))
				acc[sresets]=$((acc[sresets] + $(xt_field "$snap_s" resets || echo 0)))
				acc[wresets]=$((acc[wresets] + $(xt_field "$snap_w" resets || echo 0)))
				acc[ctimeouts]=$((acc[ctimeouts] + $(xt_field "$snap_w" connect_timeouts || echo 0)))
				acc[corrupt]=$((acc[corrupt] + $(xt_field "$snap_s" corrupt || echo 0) + $(xt_field "$snap_w" corrupt || echo 0)))
				acc[passes]=$((acc[passes] + $(xt_field "$snap_w" passes || echo 0)))
				acc[verified]=$((acc[verified] + $(xt_field "$snap_w" verified || echo 0)))
				touch "$stop"
				xt_kill_tree "$wpid"
				xt_kill_tree "$spid"
				for v in $(xl list 2>/dev/null | awk -v g="$G" 'index($1, g) == 1 {print $1}'); do
					xl destroy "$v" 2>/dev/null
				done
				if ! blk_start "$G" "$IP" "disk=$XT_DISK"; then
					problems+="round $r: a new guest after the emulator's triple fault: $BLK_WHY; "
					dead=1
					break
				fi
				blk_uri "$IP" xvda
				segment=$((segment + 1))
				n=0
				seen=0
				rst_seen=0
				snap_s=""
				snap_w=""
				st=$XT_RUN/soak-stream.$XT_ATTEMPT.$segment.status
				wst=$XT_RUN/soak-writer.$XT_ATTEMPT.$segment.status
				_soak_start_io "$IP" "$BLK_URI" "$a" "$b" "$st" "$wst" "$stop"
				spid=$SOAK_SPID
				wpid=$SOAK_WPID
				r=$((r - 1))
				continue
			fi
			problems+="round $r: $BLK_WHY; "
			net_hang_diag "$G"
			dead=1
			break
		fi
		case "$kind" in S) saves=$((saves + 1)) ;; C) cps=$((cps + 1)) ;; M) migs=$((migs + 1)) ;; esac
		# The stream must move on after every round (it reconnects by itself after a reset).
		xt_up
		tr=$((XT_UP + 120))
		while [ "$(_soak_kv "$st" lines)" -le "$before" ]; do
			xt_up
			if [ "$XT_UP" -ge "$tr" ] || ! kill -0 "$spid" 2>/dev/null; then
				problems+="round $r ($kind): the stream made no progress within 120 s ($(head -n 1 "$st")); "
				net_diag "$G" "$IP"
				_soak_after_diag "$G" "$n" && n=$((n + 1))
				break 2
			fi
			sleep 0.2
		done
		_soak_show_matching "$G" "$seen" "$XT_ERROR_RE" 8 error/stall
		seen=$SOAK_MATCHED
		_soak_show_matching "$G" "$rst_seen" "$SOAK_RESET_RE" 6 "TCP reset"
		rst_seen=$SOAK_MATCHED
		# What the stream and the writer logged (resets, failed passes) since the last round.
		for lf in "$st.log" "$wst.log"; do
			[ -s "$lf" ] || continue
			la=$(wc -l <"$lf")
			lb=${logged[$lf]:-0}
			[ "$la" -gt "$lb" ] && tail -n $((la - lb)) "$lf" | sed 's/^xt: /xt| /'
			logged[$lf]=$la
		done
		snap_s=$(_soak_line "$st")
		snap_w=$(_soak_line "$wst")
		# A writer that has not finished a pass for 8 rounds (nbdcopy's connect to the guest
		# has been seen to time out after 127 s: SYNs neither answered nor reset, the echo
		# stream flowing): the guest's state once per such stretch (its NBD slots and sockets).
		v=$(xt_field "$snap_w" passes || echo 0)
		if [ "$v" = "$w_passes" ]; then
			w_still=$((w_still + 1))
			[ "$w_still" = 8 ] && {
				echo "xt| soak: the writer has not finished a pass for 8 rounds ($snap_w); the guest's state:"
				net_diag "$G" "$IP"
				_soak_after_diag "$G" "$n" && n=$((n + 1))
			}
		else
			w_passes=$v
			w_still=0
		fi
		xt_log "soak round $r/$rounds $kind ${BLK_ROUND_SECS}s: stream $snap_s; nbd $snap_w; guest error/stall lines $seen$([ "$segment" -gt 1 ] && echo "; segment $segment")"
	done
	r=$((r - 1))
	touch "$stop"
	if [ -n "$dead" ]; then
		# The guest is gone or stuck: do not sit out the stream's and nbdcopy's timeouts.
		xt_kill_tree "$wpid"
		xt_kill_tree "$spid"
	fi
	wait "$spid"
	wait "$wpid"
	sresets=$((acc[sresets] + $(_soak_kv "$st" resets)))
	wresets=$((acc[wresets] + $(_soak_kv "$wst" resets)))
	corrupt=$((acc[corrupt] + $(_soak_kv "$st" corrupt) + $(_soak_kv "$wst" corrupt)))
	case "$(head -n 1 "$st")" in DONE*) ;; *) problems+="the stream ended with '$(head -n 1 "$st")'; " ;; esac
	[ -s "$st.log" ] && problems+="$(head -n 3 "$st.log" | tr '\n' ' ')"
	[ -s "$wst.log" ] && problems+="$(head -n 3 "$wst.log" | tr '\n' ' ')"
	# The disk once more: nbdcopy's read-back and dom0's backing file against the last image.
	v=$(_soak_kv "$wst" last)
	[ -n "$dead" ] && v=skipped
	case "$v" in
	skipped) ;;
	soak-A | soak-B)
		blk_sha "$XT_DISKS/$v"
		local want=$BLK_SHA
		if blk_nbd_sha "$BLK_URI" 600; then
			[ "$BLK_SHA" = "$want" ] || problems+="the final read-back differs from $v; "
		else
			problems+="the final read-back: $BLK_WHY; "
		fi
		blk_sha "${BLK_FILE[xvda]}"
		[ "$BLK_SHA" = "$want" ] || problems+="dom0's backing file differs from $v (the last image written); "
		;;
	*) problems+="no complete nbd pass to check at the end (last=$v); " ;;
	esac
	# The end figures: a checkpoint with no traffic.
	if [ -z "$dead" ]; then
		n=$((n + 1))
		if blk_round "$G" C "$n"; then
			sleep 1
			_soak_counters "$G" "$n"
			g1=$SOAK_GRANTS
			m1=$SOAK_MEMORY
		else
			problems+="the last checkpoint (end figures): $BLK_WHY; "
		fi
	fi
	# Leaks: the quiet states at the start and the end must agree.
	local k
	for k in active deferred leaked; do
		[ "$(xt_field "$g0" "$k")" = "$(xt_field "$g1" "$k")" ] ||
			problems+="grants $k: $(xt_field "$g0" "$k") at the start, $(xt_field "$g1" "$k") at the end; "
	done
	local f0 f1
	f0=$(xt_field "$m0" free_frames)
	f1=$(xt_field "$m1" free_frames)
	if [[ $f0 =~ ^[0-9]+$ && $f1 =~ ^[0-9]+$ ]]; then
		[ $((f0 - f1)) -le "$SOAK_FRAME_SLACK" ] || problems+="free frames $f0 at the start, $f1 at the end; "
	else
		problems+="no memory figures (start '$m0', end '$m1'); "
	fi
	[ "$sresets" = 0 ] && [ "$wresets" = 0 ] || problems+="resets: stream $sresets, nbd $wresets; "
	[ "$corrupt" = 0 ] || problems+="$corrupt corrupted bytes; "
	# (Xen's log is a ring: after hours of rounds it holds only the last ones.)
	[ "$(xt_triple_faults)" -le "$flakes" ] || problems+="Triple fault in xl dmesg; "
	xt_up
	# How long the guest was away (saved, restored, migrating, checkpointed) in all: a new
	# connection's SYNs that fall into those gaps go unanswered (docs/RELIABILITY.md).
	local away_ms
	away_ms=$(_soak_suspended_ms "$G")
	SOAK_LINE="SOAK rounds=$r/$rounds saves=$saves checkpoints=$cps migrates=$migs resets=$((sresets + wresets)) nbd_connect_timeouts=$((acc[ctimeouts] + $(_soak_kv "$wst" connect_timeouts))) corrupted_bytes=$corrupt stream_bytes=$((acc[recv] + $(_soak_kv "$st" recv))) nbd_passes=$((acc[passes] + $(_soak_kv "$wst" passes))) nbd_bytes_verified=$((acc[verified] + $(_soak_kv "$wst" verified)))$([ "$segment" -gt 1 ] && echo " segments=$segment emulator_triple_faults=$flakes") grants start: $g0 end: ${g1:-?} memory start: $m0 end: ${m1:-?} elapsed=$((XT_UP - t0))s guest_suspended=$((away_ms / 1000))s${limited:+ ($limited)}"
	xt_log "$SOAK_LINE"
	[ -n "$thin_old" ] && sysctl -qw net.ipv4.tcp_thin_linear_timeouts="$thin_old" 2>/dev/null
	blk_verdict "$G" "$problems" "$SOAK_LINE"
	xt_destroy "$G"
}
