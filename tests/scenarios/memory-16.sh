# memory-<N> (memory-16, memory-64, ...: one scenario per file name, N MiB from the name):
# a guest with memory=N reports `xenrs memory: ram_kib=... heap_kib=...` where ram_kib is
# within 10% of N MiB and heap_kib is 35%..65% of ram_kib; it then powers off.
# xt-timeout: 90
MIB=${XT_SCENARIO#memory-}
G=xt-mem-$MIB
xt_create "$G" memory="$MIB" cmdline="then=poweroff" || xt_fail "xl create with memory=$MIB failed"
xt_wait_console "$G" '^xenrs memory: ' 30 || xt_fail "no 'xenrs memory:' line (domain $(xt_state "$G"))"
line=$XT_MATCH
ram=$(xt_field "$line" ram_kib)
heap=$(xt_field "$line" heap_kib)
xt_expect_end "$G" poweroff 30 || xt_fail "$XT_WHY; $line"
want=$((MIB * 1024))
case "$ram$heap" in '' | *[!0-9]*) xt_fail "cannot parse ram_kib/heap_kib in: $line" ;; esac
if [ $((ram * 10)) -lt $((want * 9)) ] || [ $((ram * 10)) -gt $((want * 11)) ]; then
	result FAIL "ram_kib=$ram is not within 10% of $want KiB; $line"
elif [ $((heap * 100)) -lt $((ram * 35)) ] || [ $((heap * 100)) -gt $((ram * 65)) ]; then
	result FAIL "heap_kib=$heap is not 35%..65% of ram_kib=$ram; $line"
else
	result PASS "ram_kib=$ram (configured $want), heap $((heap * 100 / ram))% of it; $line"
fi
