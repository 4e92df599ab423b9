# idle-cpu: a guest idling in its event loop (sti; hlt, no periodic timer) uses ~0 CPU: the
# CPU time `xl list` reports grows by less than 1 s over 20 s. Afterwards it still answers
# (xenstore echo), so it was blocked, not dead.
# xt-timeout: 120
# Helpers core_*: tests/scenarios/lib/core.sh.
G=xt-idle
core_start "$G" || xt_fail "$CORE_WHY"
# cpu_time: set CPU to the Time(s) column of `xl list <domid>`.
cpu_time() {
	local out
	xt_id "$G"
	out=$(xl list "$XT_ID" 2>/dev/null)
	out=${out#*$'\n'}
	read -r _ _ _ _ _ CPU _ <<<"$out"
}
sleep 2
cpu_time
c0=$CPU
sleep 20
cpu_time
c1=$CPU
[[ $c0 =~ ^[0-9]+\.[0-9]$ && $c1 =~ ^[0-9]+\.[0-9]$ ]] || xt_fail "cannot read the CPU time from xl list ('$c0', '$c1')"
# Tenths of a second, integer arithmetic.
d=$((10#${c1/./} - 10#${c0/./}))
delta="$((d / 10)).$((d % 10))"
if ! core_echo "$G" "idle-$RANDOM" 10; then
	result FAIL "the idle guest did not answer the echo afterwards (cpu $c0 -> $c1 s); $(xt_errors "$G")"
elif [ "$d" -lt 10 ]; then
	result PASS "CPU time $c0 s -> $c1 s over 20 s idle (+$delta s), then echoed"
else
	result FAIL "CPU time grew by $delta s over 20 s idle ($c0 -> $c1)"
fi
xt_destroy "$G"
