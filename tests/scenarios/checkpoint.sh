# checkpoint: 3 rounds of `xl save -c` (checkpoint: the guest keeps running). The suspend is
# cancelled, so the guest prints `xenrs resumed n=<round> mode=cancelled mono_ns=<n>`, keeps its
# domid, re-initialises nothing, and its event channels and xenstore still work (echo).
# xt-timeout: 400
# Helpers core_*: tests/scenarios/lib/core.sh.
G=xt-checkpoint
ROUNDS=3
core_start "$G" memory=16 || xt_fail "$CORE_WHY"
xt_id "$G"
id=$XT_ID
f="$XT_RUN/$G.chk"
prev=0
times=""
for r in $(seq 1 "$ROUNDS"); do
	xt_up
	t0=$XT_UP
	timeout 120 xl save -c "$G" "$f" >"$XT_RUN/$G.chk.log" 2>&1 || xt_fail "round $r: xl save -c failed: $(tail -n 3 "$XT_RUN/$G.chk.log" | tr '\n' ' ') $(xt_errors "$G")"
	rm -f "$f"
	xt_wait_console "$G" "^xenrs resumed n=$r mode=cancelled mono_ns=[0-9]+\$" 20 || xt_fail "round $r: no 'xenrs resumed n=$r mode=cancelled' line (state $(xt_state "$G")); $(xt_errors "$G")"
	mono=$(xt_field "$XT_MATCH" mono_ns)
	if [ "$mono" -le "$prev" ]; then
		xt_fail "round $r: mono_ns=$mono is not above $prev"
	fi
	prev=$mono
	now=$(xl domid "$G" 2>/dev/null)
	if [ "$now" != "$id" ] || [ "$(xt_state "$G")" != running ]; then
		xt_fail "round $r: the guest should keep running as domid $id (now '$now', $(xt_state "$G"))"
	fi
	core_echo "$G" "chk-$r-$RANDOM" 10 || xt_fail "round $r: echo failed after the cancelled suspend; $(xt_errors "$G")"
	core_since "$t0"
	times+="${CORE_SINCE}s "
done
if [ "$(xt_console_count "$G" 'mode=new-domain')" != 0 ]; then
	result FAIL "a checkpoint resumed as mode=new-domain"
else
	result PASS "$ROUNDS checkpoints, domid $id kept running, mode=cancelled each time, echo after each; per round: $times"
fi
xt_destroy "$G"
