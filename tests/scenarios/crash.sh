# crash: cmdline test=panic makes the guest panic right after the banner; the console shows
# `xenrs PANIC at <file>:<line>:<col>: <message>` and `xenrs crashing`, and the domain ends
# with reason crash (kept by on_crash=preserve, so Xen's own record of the reason is read too).
# xt-timeout: 90
G=xt-crash
# The panic is what this scenario provokes (lib.sh's common check allows it).
xt_allow_errors '^xenrs PANIC at '
xt_create "$G" memory=32 cmdline="test=panic" || xt_fail "xl create failed"
xt_wait_console "$G" '^xenrs PANIC at [^ ]+:[0-9]+:[0-9]+: ' 30 || xt_fail "no 'xenrs PANIC at <file>:<line>:<col>: ' line on the console (domain $(xt_state "$G"))"
panic=$XT_MATCH
xt_expect_end "$G" crash 30 || xt_fail "$XT_WHY; $panic"
if [ "$(xt_state "$G")" != shutdown ]; then
	xt_fail "the crashed domain was not preserved (on_crash=preserve): $(xt_state "$G")"
fi
xt_console_has "$G" '^xenrs crashing$' || xt_fail "no 'xenrs crashing' line after: $panic"
if [ "$XT_REASON_SRC" != "xen=crash xl=crash" ]; then
	xt_fail "Xen and xl's monitor do not both report crash: $XT_REASON_SRC; $panic"
fi
result PASS "reason crash ($XT_REASON_SRC), domid $(xt_domid "$G"); $panic"
