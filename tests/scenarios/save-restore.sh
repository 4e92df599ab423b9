# save-restore: 10 rounds of `xl save` + `xl restore` of one guest. After each restore the
# guest (a NEW domain) prints `xenrs resumed n=<round> mode=new-domain mono_ns=<n>`, mono_ns
# strictly increases from round to round, data/ready comes back, and the xenstore echo works.
# xt-timeout: 900
# Helpers core_*: tests/scenarios/lib/core.sh.
G=xt-saverestore
ROUNDS=10
core_start "$G" memory=16 || xt_fail "$CORE_WHY"
f="$XT_RUN/$G.save"
prev=0
first=""
times=""
for r in $(seq 1 "$ROUNDS"); do
	xt_up
	t0=$XT_UP
	timeout 120 xl save "$G" "$f" >"$XT_RUN/$G.save.log" 2>&1 || xt_fail "round $r: xl save failed: $(tail -n 3 "$XT_RUN/$G.save.log" | tr '\n' ' ') $(xt_errors "$G")"
	core_since "$t0"
	ts=$CORE_SINCE
	xt_up
	t1=$XT_UP
	timeout 120 xl restore "$f" >"$XT_RUN/$G.restore.log" 2>&1 || xt_fail "round $r: xl restore failed: $(tail -n 3 "$XT_RUN/$G.restore.log" | tr '\n' ' ')"
	rm -f "$f"
	xt_track "$G"
	xt_wait_console "$G" "^xenrs resumed n=$r mode=new-domain mono_ns=[0-9]+\$" 30 || xt_fail "round $r: no 'xenrs resumed n=$r mode=new-domain mono_ns=<n>' line (domid $XT_ID, state $(xt_state "$G")); $(xt_errors "$G")"
	mono=$(xt_field "$XT_MATCH" mono_ns)
	if [ "$mono" -le "$prev" ]; then
		xt_fail "round $r: mono_ns=$mono is not above the previous round's $prev"
	fi
	prev=$mono
	[ -n "$first" ] || first=$mono
	core_wait_ready "$G" 20 || xt_fail "round $r: data/ready not 1 in the restored domain $XT_ID; $(xt_errors "$G")"
	core_echo "$G" "round-$r-$RANDOM" 10 || xt_fail "round $r: echo did not come back from the restored domain $XT_ID; $(xt_errors "$G")"
	core_since "$t1"
	times+="${ts}+${CORE_SINCE}s "
done
if [ "$(xt_console_count "$G" 'mode=cancelled')" != 0 ]; then
	result FAIL "a resume reported mode=cancelled"
elif [ "$(xt_triple_faults)" != 0 ]; then
	result FAIL "Triple fault in xl dmesg"
else
	result PASS "$ROUNDS rounds, now domid $XT_ID; mono_ns $first -> $prev; save+restore(+echo) per round: $times"
fi
xt_destroy "$G"
