# save-restore: 10 rounds of `xl save` + `xl restore` of one guest. After each restore the
# guest (a NEW domain) prints `xenrs resumed n=<round> mode=new-domain mono_ns=<n>`, mono_ns
# strictly increases from round to round, data/ready comes back, and the xenstore echo works.
# xt-timeout: 900
# Helpers core_*: tests/scenarios/lib/core.sh.
G=xt-saverestore
ROUNDS=10
if ! core_start "$G" memory=16; then
	result save-restore FAIL "$CORE_WHY"
	exit 0
fi
f="$XT_RUN/$G.save"
prev=0
first=""
times=""
for r in $(seq 1 "$ROUNDS"); do
	core_up
	t0=$CORE_UP
	if ! timeout 120 xl save "$G" "$f" >"$XT_RUN/$G.save.log" 2>&1; then
		result save-restore FAIL "round $r: xl save failed: $(tail -n 3 "$XT_RUN/$G.save.log" | tr '\n' ' ') $(core_errors "$G")"
		exit 0
	fi
	core_since "$t0"
	ts=$CORE_SINCE
	core_up
	t1=$CORE_UP
	if ! timeout 120 xl restore "$f" >"$XT_RUN/$G.restore.log" 2>&1; then
		result save-restore FAIL "round $r: xl restore failed: $(tail -n 3 "$XT_RUN/$G.restore.log" | tr '\n' ' ')"
		exit 0
	fi
	rm -f "$f"
	core_track "$G"
	if ! xt_wait_console "$G" "^xenrs resumed n=$r mode=new-domain mono_ns=[0-9]+\$" 30; then
		result save-restore FAIL "round $r: no 'xenrs resumed n=$r mode=new-domain mono_ns=<n>' line (domid $CORE_ID, state $(xt_state "$G")); $(core_errors "$G")"
		exit 0
	fi
	mono=$(xt_field "$XT_MATCH" mono_ns)
	if [ "$mono" -le "$prev" ]; then
		result save-restore FAIL "round $r: mono_ns=$mono is not above the previous round's $prev"
		exit 0
	fi
	prev=$mono
	[ -n "$first" ] || first=$mono
	if ! core_wait_ready "$G" 20; then
		result save-restore FAIL "round $r: data/ready not 1 in the restored domain $CORE_ID; $(core_errors "$G")"
		exit 0
	fi
	if ! core_echo "$G" "round-$r-$RANDOM" 10; then
		result save-restore FAIL "round $r: echo did not come back from the restored domain $CORE_ID; $(core_errors "$G")"
		exit 0
	fi
	core_since "$t1"
	times+="${ts}+${CORE_SINCE}s "
done
if [ "$(xt_console_count "$G" 'mode=cancelled')" != 0 ]; then
	result save-restore FAIL "a resume reported mode=cancelled"
elif [ "$(xt_triple_faults)" != 0 ]; then
	result save-restore FAIL "Triple fault in xl dmesg"
else
	result save-restore PASS "$ROUNDS rounds, now domid $CORE_ID; mono_ns $first -> $prev; save+restore(+echo) per round: $times"
fi
xt_destroy "$G"
