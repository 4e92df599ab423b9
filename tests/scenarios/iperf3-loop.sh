# iperf3-loop: single-stream iperf3 into the guest (dom0 sends with TSO, the guest receives GSO
# packets of up to 64 KiB) 8 times on one guest, the even rounds with dom0's CPUs kept busy (two
# spinning shells) as on a loaded CI host, then -R and -P 4 once each. Every round must pass as
# `iperf3` does and the guest must print one more `iperf3 test finished` line each time; at the end
# the guest's counters (printed by a checkpoint) must show GSO packets in and the TSO count.
# xt-explicit
# xt-timeout: 1800
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-iperf3loop
IP=169.254.77.39
net_start "$G" "$IP" || xt_fail "$NET_WHY"
rounds=""
n=0
# XT_IPERF_ROUNDS (--env) replaces the rounds: digits run single-stream (even ones with dom0
# busy), R runs -R, P runs -P 4; e.g. "R R R R R R R R" hunts a stall of the guest sending.
read -r -a ROUNDS <<<"${XT_IPERF_ROUNDS:-1 2 3 4 5 6 7 8 R P}"
k=0
for tok in "${ROUNDS[@]}"; do
	k=$((k + 1))
	i=$tok
	[[ $tok =~ ^[0-9]+$ ]] || i="$tok$k"
	case $tok in
	R) args=(-R) ;;
	P) args=(-P 4) ;;
	*) args=() ;;
	esac
	hogs=()
	if [[ $i =~ ^[0-9]+$ ]] && [ $((i % 2)) -eq 0 ]; then
		for _ in 1 2; do
			timeout 14 sh -c 'while :; do :; done' &
			hogs+=($!)
		done
	fi
	# Each round's verdict goes to a file of its own (not the suite's results).
	: >"$XT_RUN/loop.res"
	XT_RESULTS=$XT_RUN/loop.res XT_SCENARIO=iperf3-loop-$i net_iperf "$G" "$IP" "${args[@]}"
	[ ${#hogs[@]} -eq 0 ] || wait "${hogs[@]}" 2>/dev/null
	out=$(cat "$XT_RUN/loop.res")
	if ! grep -q "^RESULT iperf3-loop-$i PASS" <<<"$out"; then
		result FAIL "round $i${hogs:+ (dom0 busy)}: $(grep '^RESULT' <<<"$out" | head -n 1 | cut -c1-400); passed before: ${rounds:-none}"
		xt_destroy "$G"
		exit 0
	fi
	n=$((n + 1))
	got=$(tr -d '\r' <"$(xt_console "$G")" | grep -c '^xenrs net: iperf3 test finished: ')
	if [ "$got" -ne "$n" ]; then
		result FAIL "round $i: $got 'iperf3 test finished' lines after $n tests; passed before: ${rounds:-none}"
		xt_destroy "$G"
		exit 0
	fi
	rate=$(grep -o 'receiver [0-9]* kbit/s' <<<"$out" | head -n 1)
	rounds="$rounds $i${hogs:+(busy)}:${rate#receiver }"
done
# The guest's counters (its suspend hook prints them; a checkpoint changes nothing): GSO packets
# received must be there, or this did not test GSO; TSO frames sent only when the guest has TSO
# (netfront's Config::tso, on by default; `tso=off` makes the count 0).
timeout 120 xl save -c "$G" "$XT_RUN/loop.save" >/dev/null 2>&1
rm -f "$XT_RUN/loop.save"
sleep 1
c=$(tr -d '\r' <"$(xt_console "$G")" | grep -oE 'rx [0-9]+ pkts [0-9]+ B \([^)]*\), tx [0-9]+ pkts [0-9]+ B \([^)]*\)' | tail -n 1)
gso=$(grep -oE '[0-9]+ gso' <<<"$c" | cut -d' ' -f1)
tso=$(grep -oE '[0-9]+ tso' <<<"$c" | cut -d' ' -f1)
want_gso=0
[[ " ${ROUNDS[*]} " =~ \ [0-9]+\  ]] && want_gso=1
if [ -z "$tso" ] || { [ "$want_gso" = 1 ] && ! [ "${gso:-0}" -gt 0 ]; }; then
	result FAIL "the iperf3 rounds passed ($rounds) but the guest's counters show no GSO packets in (or no tso count): ${c:-no counters line}"
else
	result PASS "$n iperf3 tests on one guest (rounds ${ROUNDS[*]}; digits single-stream, even ones with dom0 busy, R = -R, P = -P 4):$rounds; guest counters: $c"
fi
xt_destroy "$G"
