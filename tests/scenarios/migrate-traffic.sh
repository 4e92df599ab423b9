# migrate-traffic: 3 rounds of live migration to localhost (`xl migrate -s "" <dom> "xl
# migrate-receive"`, as in the migrate scenario) while ONE TCP echo connection streams verified
# lines and an iperf3 run goes on. Each round the guest resumes as a new domain (new domid,
# `xenrs resumed n=<round> mode=new-domain`), its vif reconnects to the new back end, ping works,
# and the stream moves on. At the end the connection was never reset, every echoed line was the
# next one expected, bytes sent == bytes received, and iperf3 completed without an error. The
# receiving domain is first called <name>--incoming, so its console may go to
# guest-<name>--incoming.log: both logs are searched.
# xt-timeout: 1200
# Helpers net_*: tests/scenarios/lib/net.sh; stream_*, iperf_bg_*: lib/stream.sh; mig_find:
# lib/migrate.sh.
G=xt-migtraffic
IP=169.254.77.73
ROUNDS=3
net_start "$G" "$IP" || xt_fail "$NET_WHY"
CONN_RE='^xenrs net: vif/0 mac=.* state=Connected$'
# mt_count ERE: matching console lines of $G in both of its logs.
mt_count() {
	echo $(($(xt_console_count "$G" "$1") + $(xt_console_count "$G--incoming" "$1")))
}
stream_start "$IP"
problems=""
times=""
xt_id "$G"
ids=$XT_ID
stream_wait_progress 0 60 || problems+="the stream did not start: $STREAM_LINE; "
# 10 Mbit/s: steady traffic that leaves the emulated machine room for the migrations.
iperf_bg_start "$IP" 90 -b 10M
iperf_bg_running 60 || problems+="$IPERF_BG_WHY; "
r=0
for r in $(seq 1 "$ROUNDS"); do
	[ -z "$problems" ] || break
	stream_recv
	before=$STREAM_RECV
	xt_id "$G"
	old=$XT_ID
	xt_up
	t0=$XT_UP
	if ! timeout 300 xl migrate -s "" "$G" "xl migrate-receive" >"$XT_RUN/$G.migrate.log" 2>&1; then
		problems+="round $r: xl migrate failed: $(tail -n 4 "$XT_RUN/$G.migrate.log" | tr '\n' ' '); "
		break
	fi
	xt_track "$G"
	new=$XT_ID
	if [ -z "$new" ] || [ "$new" = "$old" ]; then
		problems+="round $r: after xl migrate the domain is '$new' (was $old); "
		break
	fi
	ids+=" -> $new"
	want="^xenrs resumed n=$r mode=new-domain mono_ns=[0-9]+\$"
	xt_up
	dl=$((XT_UP + 60))
	until mig_find "$want" >/dev/null; do
		xt_up
		if [ "$XT_UP" -ge "$dl" ]; then
			problems+="round $r: within 60 s no '$want' line; "
			net_hang_diag "$G"
			break 2
		fi
		sleep 0.5
	done
	if ! net_ping "$IP" 3; then
		problems+="round $r: ping after the migration: $NET_PING; "
		net_diag "$G" "$IP"
		break
	fi
	if ! stream_wait_progress "$before" 240; then
		problems+="round $r: the stream made no progress within 240 s: $STREAM_LINE; "
		net_diag "$G" "$IP"
		break
	fi
	xt_up
	times+="$((XT_UP - t0))s "
done
traffic_stop
problems+=$TRAFFIC_WHY
leftover=$(xl list 2>/dev/null | grep -e '--incoming' -e '--migratedaway')
[ -z "$leftover" ] || problems+="a leftover --incoming/--migratedaway domain: $leftover; "
bad=$(cat "$XT_CONSOLE_DIR/guest-$G.log" "$XT_CONSOLE_DIR/guest-$G--incoming.log" 2>/dev/null | tr -d '\r' |
	grep -E '^xenrs (net error:|xenstore error:|PANIC|FAULT|FATAL)' | head -n 5 | tr '\n' ' ')
[ -z "$bad" ] || problems+="guest printed: $bad; "
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
stalls=$(mt_count 'the back end took no tx request')
conns=$(mt_count "$CONN_RE")
if [ -n "$problems" ]; then
	result FAIL "after $r rounds: $problems $(xt_errors "$G")"
elif [ "$(xt_state "$G")" != running ]; then
	result FAIL "guest not running after the migrations (state $(xt_state "$G")); $(xt_errors "$G")"
else
	# The guest's counters as its suspend hook printed them (checksum offload, GSO).
	counters=$(cat "$(xt_console "$G")" "$(xt_console "$G--incoming")" 2>/dev/null | tr -d '\r' | grep -oE 'rx [0-9]+ pkts [0-9]+ B \([^)]*\), tx [0-9]+ pkts [0-9]+ B \([^)]*\)' | tail -n 1)
	result PASS "$ROUNDS live migrations (domid $ids) with one TCP echo stream and iperf3: $STREAM_FINAL (bytes sent == received, never reset), $IPERF_BG_SUMMARY ($TRAFFIC_DURING); ping after every round; vif Connected lines in the console logs: $conns; tx-stall reconnects: $stalls; per round: $times; guest counters at a suspend: ${counters:-none}"
fi
xt_destroy "$G"
