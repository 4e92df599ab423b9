# bad-option: an unknown command-line option is reported on exactly one console line,
# `xenrs config error: unknown option 'frobnicate'`, and otherwise ignored: the guest still
# boots and powers off (reason poweroff).
# xt-timeout: 90
G=xt-bad-option
if ! xt_create "$G" memory=32 cmdline="then=poweroff frobnicate=1"; then
	result bad-option FAIL "xl create failed"
	exit 0
fi
want="^xenrs config error: unknown option 'frobnicate'\$"
if ! xt_wait_console "$G" "$want" 30; then
	result bad-option FAIL "no \"xenrs config error: unknown option 'frobnicate'\" line (domain $(xt_state "$G"))"
	exit 0
fi
if ! xt_expect_end "$G" poweroff 30; then
	result bad-option FAIL "$XT_WHY"
	exit 0
fi
errors=$(xt_console_count "$G" '^xenrs config error:')
if [ "$errors" != 1 ]; then
	result bad-option FAIL "$errors 'xenrs config error:' lines, expected exactly one"
elif ! xt_console_has "$G" '^xenrs boot complete$'; then
	result bad-option FAIL "the guest did not reach 'xenrs boot complete'"
else
	result bad-option PASS "one config error line, then boot complete and poweroff"
fi
