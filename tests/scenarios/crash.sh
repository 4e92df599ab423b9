# crash: cmdline test=panic makes the guest panic right after the banner; the console shows
# `xenrs PANIC at <file>:<line>:<col>: <message>` and `xenrs crashing`, and the domain ends
# with reason crash (kept by on_crash=preserve, so Xen's own record of the reason is read too).
# xt-timeout: 90
G=xt-crash
if ! xt_create "$G" memory=32 cmdline="test=panic"; then
	result crash FAIL "xl create failed"
	exit 0
fi
if ! xt_wait_console "$G" '^xenrs PANIC at [^ ]+:[0-9]+:[0-9]+: ' 30; then
	result crash FAIL "no 'xenrs PANIC at <file>:<line>:<col>: ' line on the console (domain $(xt_state "$G"))"
	exit 0
fi
panic=$XT_MATCH
if ! xt_expect_end "$G" crash 30; then
	result crash FAIL "$XT_WHY; $panic"
	exit 0
fi
if [ "$(xt_state "$G")" != shutdown ]; then
	result crash FAIL "the crashed domain was not preserved (on_crash=preserve): $(xt_state "$G")"
	exit 0
fi
if ! xt_console_has "$G" '^xenrs crashing$'; then
	result crash FAIL "no 'xenrs crashing' line after: $panic"
	exit 0
fi
if [ "$XT_REASON_SRC" != "xen=crash xl=crash" ]; then
	result crash FAIL "Xen and xl's monitor do not both report crash: $XT_REASON_SRC; $panic"
	exit 0
fi
result crash PASS "reason crash ($XT_REASON_SRC), domid $(xt_domid "$G"); $panic"
