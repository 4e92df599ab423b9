# netback-rebind: while ONE TCP echo connection streams verified lines and an iperf3 run goes on,
# dom0 unbinds the guest's vif from /sys/bus/xen-backend/drivers/vif and binds it again, then does
# what the hotplug script does (re-enslaves vif<id>.0 to the bridge, writes hotplug-status), 10
# times. Round 1 keeps the back end away for AWAY seconds (well under the guest iperf3 server's
# 60 s limits for a silent client and a stalled test, TCP back-off included): the guest's CPU time (xl list) stays flat meanwhile.
# Round 2 also reloads the module (rmmod xen-netback; modprobe xen-netback) between unbind and
# bind where that works (the result says if it did not). Linux netback's dynamic unbind/bind
# (allow_rebind) leaves its state node as it was on unbind and re-attaches to the front end's
# rings on bind; the guest keeps its rings (docs/NET.md "Back-end unbind and bind"): its tx
# watchdog waits while the back end's end of the event channel is closed, it never resets the
# connection (one `state=Connected` line), and the echo stream loses, repeats or corrupts
# nothing. The back end's states (dom0's reads, and the guest's `back end A -> B` lines) are in
# the details.
# xt-timeout: 1200
# Helpers net_*: tests/scenarios/lib/net.sh; stream_*, iperf_bg_*, guest_cpu_tenths:
# tests/scenarios/lib/stream.sh.
G=xt-rebind
IP=169.254.77.71
ROUNDS=10
AWAY=8
net_start "$G" "$IP" || xt_fail "$NET_WHY"
xt_id "$G"
id=$XT_ID
dev=vif-$id-0
drv=/sys/bus/xen-backend/drivers/vif
bdir=/local/domain/0/backend/vif/$id/0
CONN_RE='^xenrs net: vif/0 mac=.* state=Connected$'
[ -e "/sys/bus/xen-backend/devices/$dev/driver" ] || xt_fail "$dev is not bound to a driver in /sys/bus/xen-backend"
# bstate: print the back end's state node (or "-").
bstate() { xenstore-read "$bdir/state" 2>/dev/null || echo -; }
stream_start "$IP"
problems=""
states=""
times=""
cpu=""
module=""
stream_wait_progress 0 60 || problems+="the stream did not start: $STREAM_LINE; "
# 10 Mbit/s: steady traffic that leaves the emulated machine room for the rebinds.
iperf_bg_start "$IP" 150 -b 10M
iperf_bg_running 60 || problems+="$IPERF_BG_WHY; "
n=0
for n in $(seq 1 "$ROUNDS"); do
	[ -z "$problems" ] || break
	stream_recv
	before=$STREAM_RECV
	xt_up
	t0=$XT_UP
	s0=$(bstate)
	if ! echo "$dev" >"$drv/unbind" 2>"$XT_RUN/unbind.err"; then
		problems+="round $n: unbind failed: $(cat "$XT_RUN/unbind.err"); "
		break
	fi
	s1=$(bstate)
	hs=$(xenstore-read "$bdir/hotplug-status" 2>/dev/null || echo gone)
	if [ "$n" = 1 ]; then
		# The back end is away: the guest must idle (no busy polling of a dead ring).
		sleep 1
		guest_cpu_tenths "$G"
		c0=$GUEST_CPU
		sleep "$AWAY"
		guest_cpu_tenths "$G"
		c1=$GUEST_CPU
		if [ -z "$c0" ] || [ -z "$c1" ]; then
			problems+="cannot read the guest's CPU time from xl list; "
		else
			d=$((c1 - c0))
			cpu="$((d / 10)).$((d % 10)) s CPU over $AWAY s away"
			[ "$d" -lt 10 ] || problems+="round 1: the guest used $((d / 10)).$((d % 10)) s CPU in $AWAY s while the back end was away; "
		fi
	fi
	if [ "$n" = 2 ]; then
		if rmmod xen-netback 2>"$XT_RUN/rmmod.err"; then
			if modprobe xen-netback 2>"$XT_RUN/modprobe.err"; then
				module="round 2 reloaded xen-netback (rmmod + modprobe)"
			else
				problems+="round 2: modprobe xen-netback failed: $(cat "$XT_RUN/modprobe.err"); "
				break
			fi
		else
			module="round 2 could not reload xen-netback: rmmod said '$(tr '\n' ' ' <"$XT_RUN/rmmod.err")' (built in or busy)"
		fi
	fi
	# A freshly loaded module probes every unbound back end itself.
	if [ ! -e "/sys/bus/xen-backend/devices/$dev/driver" ] &&
		! echo "$dev" >"$drv/bind" 2>"$XT_RUN/bind.err"; then
		problems+="round $n: bind failed: $(cat "$XT_RUN/bind.err"); "
		break
	fi
	s2=$(bstate)
	# What the vif hotplug script does on "online": bridge port up, hotplug-status=connected
	# (netback holds Connected back until then).
	if ! XENBUS_PATH=backend/vif/$id/0 vif=vif$id.0 /etc/xen/scripts/xt-vif online >"$XT_RUN/hotplug.log" 2>&1; then
		problems+="round $n: the hotplug script failed: $(tr '\n' ' ' <"$XT_RUN/hotplug.log"); "
		break
	fi
	xt_up
	dl=$((XT_UP + 30))
	while [ "$(bstate)" != 4 ] && [ "$XT_UP" -lt "$dl" ]; do
		sleep 0.2
		xt_up
	done
	s3=$(bstate)
	states+="r$n: $s0 unbind $s1 (hotplug-status $hs) bind $s2 online $s3; "
	if [ "$s3" != 4 ]; then
		problems+="round $n: the back end is in state $s3 30 s after bind + hotplug, not Connected; "
		net_diag "$G" "$IP"
		break
	fi
	if ! stream_wait_progress "$before" 120; then
		problems+="round $n: the stream made no progress within 120 s after the rebind: $STREAM_LINE; "
		net_diag "$G" "$IP"
		break
	fi
	# iperf3 fills the link meanwhile, so an echo request may queue behind it for over a
	# second (RTTs of ~1 s were seen): the guest must answer, not every request in time.
	if ! net_ping "$IP" 3 && ! [[ $NET_PING =~ \ [1-9][0-9]*\ received ]]; then
		problems+="round $n: no ping reply after the rebind: $NET_PING; "
		break
	fi
	xt_up
	times+="$((XT_UP - t0))s "
done
traffic_stop
problems+=$TRAFFIC_WHY
conns=$(xt_console_count "$G" "$CONN_RE")
[ "$conns" = 1 ] || problems+="the vif connected $conns times (a reset; want 1); "
stalls=$(xt_console_count "$G" 'the back end took no tx request')
[ "$stalls" = 0 ] || problems+="$stalls tx-watchdog reconnects; "
away=$(xt_console_count "$G" '^xenrs net: vif/0: the back end is away')
reattached=$(xt_console_count "$G" '^xenrs net: vif/0 back end re-attached')
seen=$(tr -d '\r' <"$(xt_console "$G")" 2>/dev/null | grep -oE 'net: vif/0 back end [A-Za-z()]+ -> [A-Za-z()]+' |
	sed -E 's/net: vif\/0 back end //; s/Some\(([A-Za-z]+)\)/\1/g' | tr '\n' ',' | sed 's/,/, /g')
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
[ -z "$problems" ] || dmesg 2>/dev/null | grep -iE 'vif|netback|xen-backend' | tail -n 20 | sed 's/^/xt| dmesg: /'
net_verdict "$G" "${problems:+after $n rounds: $problems}" \
	"$ROUNDS unbind/bind rounds of $dev with one TCP echo stream and iperf3: $STREAM_FINAL (bytes sent == received), $IPERF_BG_SUMMARY ($TRAFFIC_DURING); connected once, no reset; ${module:-no module reload}; $cpu; guest: $away away-waits, $reattached re-attaches; back-end state node (dom0): $states guest saw: ${seen:-nothing}; per round: $times"
xt_destroy "$G"
