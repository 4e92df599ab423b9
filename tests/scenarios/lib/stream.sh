# shellcheck shell=bash disable=SC2034 # the STREAM_*/IPERF_BG_* results are for the scenarios
# Long-running verified traffic for the scenarios that disturb a guest while it serves
# (save-restore-traffic, netback-rebind, migrate-traffic): ONE TCP echo connection that streams
# numbered lines and checks every echo, and an iperf3 run in the background. The runner sources
# every tests/scenarios/lib/*.sh after lib.sh and before each scenario.
#
# stream_start IP [WINDOW=8]: start the stream client in the background against IP:7. It keeps
# WINDOW lines in flight, each `seq=<n> <PAD>` (PAD: 64 random hex digits); every echoed line must
# be the next one expected. Its status file ($XT_RUN/stream.status) holds one line:
# `OK sent=<bytes> recv=<bytes> seq=<n>` as it goes (every 16 lines), `DONE ...` after
# stream_stop and everything came back (then it closed), or `ERROR ...` (a failed write, an echo
# missing for 180 s - e.g. a reset connection - or a wrong line). Sets STREAM_PID.
stream_start() {
	STREAM_IP=$1
	STREAM_WINDOW=${2:-8}
	STREAM_STATUS=$XT_RUN/stream.status
	STREAM_STOP=$XT_RUN/stream.stop
	rm -f "$STREAM_STOP"
	: >"$STREAM_STATUS"
	printf -v STREAM_PAD '%04x' $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM \
		$RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM
	_stream_client &
	STREAM_PID=$!
}
_stream_client() {
	local fd seq=0 rseq=0 sent=0 recv=0 line got n=0 st=$STREAM_STATUS
	if ! exec {fd}<>"/dev/tcp/$STREAM_IP/7"; then
		echo "ERROR connect failed" >"$st"
		return 1
	fi
	while :; do
		if [ ! -e "$STREAM_STOP" ]; then
			while [ $((seq - rseq)) -lt "$STREAM_WINDOW" ]; do
				seq=$((seq + 1))
				line="seq=$seq $STREAM_PAD"
				if ! printf '%s\n' "$line" >&"$fd"; then
					echo "ERROR write of seq=$seq failed (sent=$sent recv=$recv)" >"$st"
					return 1
				fi
				sent=$((sent + ${#line} + 1))
			done
		elif [ "$rseq" -eq "$seq" ]; then
			break
		fi
		if ! read -r -t 180 -u "$fd" got; then
			echo "ERROR no echo of seq=$((rseq + 1)) within 180 s or connection closed (sent=$sent recv=$recv)" >"$st"
			return 1
		fi
		rseq=$((rseq + 1))
		if [ "$got" != "seq=$rseq $STREAM_PAD" ]; then
			echo "ERROR expected seq=$rseq, got '${got:0:40}' (sent=$sent recv=$recv)" >"$st"
			return 1
		fi
		recv=$((recv + ${#got} + 1))
		n=$((n + 1))
		if [ $((n % 16)) -eq 0 ]; then
			echo "OK sent=$sent recv=$recv seq=$rseq" >"$st"
		fi
	done
	exec {fd}>&-
	echo "DONE sent=$sent recv=$recv seq=$rseq" >"$st"
}
# stream_recv: set STREAM_RECV to the bytes received so far (-1 if the client reports an error)
# and STREAM_LINE to its status line.
stream_recv() {
	local line=""
	read -r line <"$STREAM_STATUS" 2>/dev/null
	STREAM_RECV=0
	case "$line" in
	ERROR*) STREAM_RECV=-1 ;;
	*recv=*)
		STREAM_RECV=${line#*recv=}
		STREAM_RECV=${STREAM_RECV%% *}
		;;
	esac
	STREAM_LINE=$line
}
# stream_wait_progress BYTES SECS: wait until more than BYTES were received; false on an error
# or after SECS.
stream_wait_progress() {
	local dl
	xt_up
	dl=$((XT_UP + $2))
	while [ "$XT_UP" -lt "$dl" ]; do
		stream_recv
		[ "$STREAM_RECV" -lt 0 ] && return 1
		[ "$STREAM_RECV" -gt "$1" ] && return 0
		sleep 0.5
		xt_up
	done
	return 1
}
# stream_stop: ask the client to drain its window and close (bounded by its own 180 s read
# timeout), wait for it. Sets STREAM_FINAL (its last status line), STREAM_SENT and STREAM_RECV;
# true if it ended with DONE and bytes sent == bytes received, else sets STREAM_WHY.
stream_stop() {
	touch "$STREAM_STOP"
	wait "$STREAM_PID"
	stream_recv
	STREAM_FINAL=$STREAM_LINE
	STREAM_WHY=""
	if [[ $STREAM_FINAL =~ ^DONE\ sent=([0-9]+)\ recv=([0-9]+)\ seq=([0-9]+) ]]; then
		STREAM_SENT=${BASH_REMATCH[1]}
		STREAM_RECV=${BASH_REMATCH[2]}
		[ "$STREAM_SENT" = "$STREAM_RECV" ] && return 0
		STREAM_WHY="bytes sent $STREAM_SENT != bytes received $STREAM_RECV"
	else
		STREAM_WHY="stream client ended with '$STREAM_FINAL'"
	fi
	return 1
}
# iperf_bg_start IP SECS [ARGS...]: `iperf3 -c IP -t SECS --json ARGS` in the background (its
# JSON in $XT_RUN/iperf-bg.json). Sets IPERF_BG_PID.
iperf_bg_start() {
	local ip=$1 secs=$2
	shift 2
	timeout $((secs + 240)) iperf3 -c "$ip" -t "$secs" --connect-timeout 20000 --json "$@" \
		>"$XT_RUN/iperf-bg.json" 2>"$XT_RUN/iperf-bg.err" &
	IPERF_BG_PID=$!
}
# iperf_bg_running SECS: wait until the background iperf3 has its control connection and at
# least one stream established to port 5201 (dom0's `ss`), so that a scenario disturbs a running
# test, not its connect (a connect while the back end is away fails at once with "No route to
# host"); false after SECS or if iperf3 ended. Sets IPERF_BG_WHY.
iperf_bg_running() {
	local dl n
	xt_up
	dl=$((XT_UP + $1))
	while [ "$XT_UP" -lt "$dl" ]; do
		if ! kill -0 "$IPERF_BG_PID" 2>/dev/null; then
			IPERF_BG_WHY="iperf3 ended before its test ran: $(tr '\n' ' ' <"$XT_RUN/iperf-bg.err" | cut -c1-200)$(jq -r '.error // empty' "$XT_RUN/iperf-bg.json" 2>/dev/null)"
			return 1
		fi
		n=$(ss -Htn state established "( dport = :5201 )" 2>/dev/null | wc -l)
		[ "$n" -ge 2 ] && return 0
		sleep 0.5
		xt_up
	done
	IPERF_BG_WHY="iperf3 had no running test after $1 s"
	return 1
}
# iperf_bg_wait: wait for the background iperf3; true if its JSON has no "error" member and
# non-zero sent and received byte sums. Sets IPERF_BG_SUMMARY (bytes, rate, retransmits) or
# IPERF_BG_WHY.
iperf_bg_wait() {
	local js=$XT_RUN/iperf-bg.json fields err sent recv kbps retr rc
	wait "$IPERF_BG_PID"
	rc=$?
	IPERF_BG_WHY=""
	IPERF_BG_SUMMARY=""
	fields=$(jq -r '[(if has("error") then .error else "-" end), (.end.sum_sent.bytes // 0),
		(.end.sum_received.bytes // 0), ((.end.sum_received.bits_per_second // 0) / 1000 | floor),
		(.end.sum_sent.retransmits // 0)] | map(tostring) | join("|")' "$js" 2>&1)
	IFS='|' read -r err sent recv kbps retr <<<"$fields"
	if [ "$err" != "-" ]; then
		IPERF_BG_WHY="iperf3 reported error '$err' (rc $rc; stderr: $(tr '\n' ' ' <"$XT_RUN/iperf-bg.err" | cut -c1-200))"
		return 1
	fi
	if ! [[ $sent =~ ^[0-9]+$ && $recv =~ ^[0-9]+$ ]] || [ "$sent" -eq 0 ] || [ "$recv" -eq 0 ]; then
		IPERF_BG_WHY="iperf3 sent=$sent received=$recv bytes (rc $rc; JSON: $(head -c 200 "$js" | tr '\n' ' '))"
		return 1
	fi
	IPERF_BG_SUMMARY="iperf3 sent=$sent received=$recv bytes, $kbps kbit/s, retransmits $retr"
}
# guest_cpu_tenths NAME: set GUEST_CPU to the guest's CPU time in tenths of a second (the Time(s)
# column of `xl list <domid>`), or "" if it cannot be read.
guest_cpu_tenths() {
	local out t
	GUEST_CPU=""
	xt_id "$1"
	out=$(xl list "$XT_ID" 2>/dev/null) || return 1
	out=${out#*$'\n'}
	read -r _ _ _ _ _ t _ <<<"$out"
	[[ $t =~ ^[0-9]+\.[0-9]$ ]] || return 1
	GUEST_CPU=$((10#${t/./}))
}
# traffic_stop: after a scenario's rounds, end the background iperf3 (iperf_bg_start) and the echo
# stream (stream_start). Sets TRAFFIC_DURING (whether iperf3 lasted through the rounds) and
# TRAFFIC_WHY (what went wrong with either, empty if nothing); the summaries stay in
# IPERF_BG_SUMMARY and STREAM_FINAL.
traffic_stop() {
	TRAFFIC_WHY=""
	if kill -0 "$IPERF_BG_PID" 2>/dev/null; then
		TRAFFIC_DURING="iperf3 ran through all rounds"
	else
		TRAFFIC_DURING="iperf3 had ended before the last round"
	fi
	iperf_bg_wait || TRAFFIC_WHY+="$IPERF_BG_WHY; "
	stream_stop || TRAFFIC_WHY+="$STREAM_WHY; "
}
