# fault: cmdline test=fault makes the guest touch an unmapped address right after the banner;
# the exception handler prints `xenrs FAULT #PF vector=14 ... cr2=<hex>` and `xenrs crashing`,
# and the domain ends with reason crash.
# xt-timeout: 90
G=xt-fault
# The fault is what this scenario provokes (lib.sh's common check allows it).
xt_allow_errors '^xenrs FAULT #PF '
xt_create "$G" memory=32 cmdline="test=fault" || xt_fail "xl create failed"
xt_wait_console "$G" '^xenrs FAULT ' 30 || xt_fail "no 'xenrs FAULT' line on the console (domain $(xt_state "$G"))"
line=$XT_MATCH
xt_expect_end "$G" crash 30 || xt_fail "$XT_WHY; $line"
problems=""
case "$line" in "xenrs FAULT #PF "*) ;; *) problems+="not a #PF; " ;; esac
[ "$(xt_field "$line" vector)" = 14 ] || problems+="vector is not 14; "
printf '%s\n' "$(xt_field "$line" cr2)" | grep -q -E '^(0x)?[0-9a-fA-F]+$' || problems+="no hex cr2=; "
for k in error rip cs rflags rsp ss; do
	[ -n "$(xt_field "$line" "$k")" ] || problems+="no $k=; "
done
xt_console_has "$G" '^xenrs crashing$' || problems+="no 'xenrs crashing' line; "
if [ -n "$problems" ]; then
	result FAIL "${problems}$line"
else
	result PASS "reason crash, domid $(xt_domid "$G"); $line"
fi
