# iperf3-loop: single-stream iperf3 into the guest (dom0 sends with TSO, the guest receives GSO
# packets of up to 64 KiB) 8 times on one guest, the even rounds with dom0's CPUs kept busy (two
# spinning shells) as on a loaded CI host, then -R and -P 4 once each. Every round must pass as
# `iperf3` does and the guest must print one more `iperf3 test finished` line each time.
# xt-explicit
# xt-timeout: 1800
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-iperf3loop
IP=169.254.77.39
net_start "$G" "$IP" || xt_fail "$NET_WHY"
rounds=""
n=0
for i in 1 2 3 4 5 6 7 8 R P; do
	case $i in
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
result PASS "10 iperf3 tests on one guest (8 single-stream, 4 of them with dom0 busy, then -R, -P 4):$rounds"
xt_destroy "$G"
