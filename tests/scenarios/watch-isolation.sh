# watch-isolation: one device that waits never delays another. The guest is created paused and
# dom0 adds two more vifs by hand before it runs: vif 5, whose back-end directory dom0 controls
# and keeps in InitWait (netback ignores a back-end directory that is not Initialising when it
# appears; nobody ever maps the rings), and vif 6, whose back-end path does not exist. While dom0
# keeps rewriting vif 5's back-end state (watch events the guest must handle and find nothing to
# do), vif 0 keeps echoing a verified TCP stream, data/echo-in is answered every time, vif 5
# publishes its rings and waits (state Connected, rings granted, no answer), vif 6 waits in
# Initialising, and `xl shutdown` still powers the guest off within 10 s (`xenrs powering off`).
# xt-timeout: 300
# Helpers net_*: tests/scenarios/lib/net.sh; core_*: lib/core.sh; stream_*: lib/stream.sh.
G=xt-watchiso
IP=169.254.77.72
cfgf=$(xt_write_cfg "$G" cmdline="ip=$IP/24" vif=default memory=64) || xt_fail "xt_write_cfg failed"
echo "$G" >>"$XT_RUN/guests"
rm -f "$XT_CONSOLE_DIR/guest-$G.log"
timeout 60 xl create -p "$cfgf" >"$XT_RUN/$G.create.log" 2>&1 || xt_fail "xl create -p failed: $(tail -n 3 "$XT_RUN/$G.create.log" | tr '\n' ' ')"
id=$(xl domid "$G" 2>/dev/null)
[ -n "$id" ] || xt_fail "no domid for $G after xl create -p"
echo "$id" >"$XT_RUN/$G.domid"
home=/local/domain/$id
fd5=$home/device/vif/5
bd5=/local/domain/0/backend/vif/$id/5
fd6=$home/device/vif/6
bd6=/local/domain/0/backend/vif/$id/6
# The back end first, already in InitWait: dom0's xenbus only probes a back-end directory whose
# state is Initialising, so netback leaves this one to us.
xenstore-write "$bd5/state" 2 || xt_fail "cannot write $bd5/state"
xenstore-write "$bd5/frontend" "$fd5" "$bd5/frontend-id" "$id" "$bd5/mac" fe:ff:ff:ff:ff:ff \
	"$bd5/feature-rx-copy" 1 "$bd5/feature-sg" 1 "$bd5/handle" 5 || xt_fail "cannot write $bd5"
xenstore-write "$fd5/backend" "$bd5" "$fd5/backend-id" 0 "$fd5/state" 1 \
	"$fd5/mac" 00:16:3e:77:01:05 "$fd5/handle" 5 || xt_fail "cannot write $fd5"
xenstore-write "$fd6/backend" "$bd6" "$fd6/backend-id" 0 "$fd6/state" 1 \
	"$fd6/mac" 00:16:3e:77:01:06 "$fd6/handle" 6 || xt_fail "cannot write $fd6"
# The guest owns its device directories (dom0 reads them); it reads the back end's.
for p in "$fd5" "$fd6"; do
	for n in "" /backend /backend-id /state /mac /handle; do
		xenstore-chmod "$p$n" "n$id" r0 || xt_fail "xenstore-chmod $p$n failed"
	done
done
for n in "" /state /frontend /frontend-id /mac /feature-rx-copy /feature-sg /handle; do
	xenstore-chmod "$bd5$n" n0 "r$id" || xt_fail "xenstore-chmod $bd5$n failed"
done
xl unpause "$G" || xt_fail "xl unpause failed"
xt_log "created $G domid=$id paused, added vif/5 (back end held in InitWait) and vif/6 (no back end), unpaused"
net_wait_up "$G" "^xenrs net: ip=${IP//./\\.}/24 \\(static\\) gw=none\$" || xt_fail "$NET_WHY"
problems=""
stream_start "$IP"
stream_wait_progress 0 60 || problems+="the stream on vif 0 did not start: $STREAM_LINE; "
# vif 5 sets up against its InitWait back end, publishes its rings and waits (Connected written).
xt_up
dl=$((XT_UP + 30))
while [ "$(xenstore-read "$fd5/state" 2>/dev/null)" != 4 ] && [ "$XT_UP" -lt "$dl" ]; do
	sleep 0.3
	xt_up
done
s5=$(xenstore-read "$fd5/state" 2>/dev/null)
[ "$s5" = 4 ] || problems+="vif/5 wrote state '$s5', not 4 (Connected after setup); "
rr5=$(xenstore-read "$fd5/rx-ring-ref" 2>/dev/null)
[ -n "$rr5" ] || problems+="vif/5 published no rx-ring-ref; "
echoes=0
for r in $(seq 1 10); do
	[ -z "$problems" ] || break
	stream_recv
	before=$STREAM_RECV
	# Watch events for vif 5 with nothing to do, and one that says InitWait again.
	for _ in 1 2 3 4 5; do
		xenstore-write "$bd5/state" 2 || problems+="cannot rewrite $bd5/state; "
	done
	xenstore-write "$bd5/feature-sg" 1
	v="iso-$r-$RANDOM"
	if core_echo "$G" "$v" 10; then
		echoes=$((echoes + 1))
	else
		problems+="round $r: data/echo-in '$v' not answered within 10 s; "
	fi
	stream_wait_progress "$before" 30 || problems+="round $r: the stream on vif 0 made no progress within 30 s: $STREAM_LINE; "
done
net_ping "$IP" 3 || problems+="ping: $NET_PING; "
s6=$(xenstore-read "$fd6/state" 2>/dev/null)
[ "$s6" = 1 ] || problems+="vif/6 (no back end) wrote state '$s6', expected it to wait in Initialising (1); "
s5=$(xenstore-read "$fd5/state" 2>/dev/null)
[ "$s5" = 4 ] || problems+="vif/5 left Connected: '$s5'; "
stream_stop || problems+="$STREAM_WHY; "
bad=$(tr -d '\r' <"$(xt_console "$G")" 2>/dev/null | grep -E '^xenrs (net error:|PANIC|FAULT|FATAL)' | head -n 3 | tr '\n' ' ')
[ -z "$bad" ] || problems+="guest printed: $bad; "
secs=""
if [ -z "$problems" ]; then
	xt_up
	t0=$XT_UP
	if ! timeout 30 xl shutdown "$G" >"$XT_RUN/$G.shutdown.log" 2>&1; then
		problems+="xl shutdown failed: $(tail -n 3 "$XT_RUN/$G.shutdown.log" | tr '\n' ' '); "
	elif ! xt_wait_console "$G" '^xenrs powering off$' 10; then
		problems+="no 'xenrs powering off' line within 10 s of xl shutdown (state $(xt_state "$G")); "
	elif ! {
		# libxl tears vif/5 down too and waits for its back end: answer Closed as netback
		# would (the guest is already off; this is only about dom0's clean-up).
		xenstore-write "$bd5/state" 6 2>/dev/null
		xt_wait_gone "$G" 30
	}; then
		problems+="still listed 30 s after xl shutdown (state $(xt_state "$G")); "
	else
		core_since "$t0"
		secs=$CORE_SINCE
		reason=$(xt_shutdown_reason "$G")
		[ "$reason" = poweroff ] || problems+="ended with reason $reason, expected poweroff; "
	fi
fi
xenstore-rm "$bd5" 2>/dev/null
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
if [ -n "$problems" ]; then
	result FAIL "$problems $(xt_errors "$G")"
else
	result PASS "vif/5 waited with its back end held in InitWait (state 4, rx-ring-ref $rr5, 50 no-op watch events) and vif/6 without a back end (state 1), while vif/0 echoed $STREAM_FINAL (bytes sent == received) and answered ping; $echoes/10 data/echo-in answered; xl shutdown: gone ~${secs} s later, reason poweroff"
fi
xt_destroy "$G"
