# shutdown: a guest booted with an EMPTY command line (then=block is the default) runs its
# event loop until `xl shutdown`: it acknowledges control/shutdown, prints
# `xenrs control: request 'poweroff'` and `xenrs powering off`, and is gone within 10 s with
# reason poweroff (on_poweroff=destroy).
# xt-timeout: 120
# Helpers core_*: tests/scenarios/lib/core.sh.
G=xt-shutdown
core_start "$G" || xt_fail "$CORE_WHY"
xt_up
t0=$XT_UP
timeout 30 xl shutdown "$G" >"$XT_RUN/$G.shutdown.log" 2>&1 || xt_fail "xl shutdown failed: $(tail -n 3 "$XT_RUN/$G.shutdown.log" | tr '\n' ' ')"
xt_wait_gone "$G" 10 || xt_fail "still listed 10 s after xl shutdown (state $(xt_state "$G")); $(xt_errors "$G")"
core_since "$t0"
secs=$CORE_SINCE
reason=$(xt_shutdown_reason "$G")
problems=""
[ "$reason" = poweroff ] || problems+="reason $reason, expected poweroff; "
xt_console_has "$G" "^xenrs control: request 'poweroff'\$" || problems+="no \"xenrs control: request 'poweroff'\" line; "
xt_console_has "$G" '^xenrs powering off$' || problems+="no 'xenrs powering off' line; "
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
if [ -n "$problems" ]; then
	result FAIL "${problems}$(xt_errors "$G")"
else
	result PASS "gone ~${secs} s after xl shutdown returned, reason poweroff; $CORE_SERVICES"
fi
