# bad-option: an unknown command-line option is reported on exactly one console line,
# `xenrs config error: unknown option 'frobnicate'`, and otherwise ignored: the guest still
# boots and powers off (reason poweroff).
# xt-timeout: 90
G=xt-bad-option
# The config error is what this scenario provokes (lib.sh's common check allows it).
xt_allow_errors "^xenrs config error: unknown option 'frobnicate'$"
xt_create "$G" memory=32 cmdline="then=poweroff frobnicate=1" || xt_fail "xl create failed"
want="^xenrs config error: unknown option 'frobnicate'\$"
xt_wait_console "$G" "$want" 30 || xt_fail "no \"xenrs config error: unknown option 'frobnicate'\" line (domain $(xt_state "$G"))"
xt_expect_end "$G" poweroff 30 || xt_fail "$XT_WHY"
errors=$(xt_console_count "$G" '^xenrs config error:')
if [ "$errors" != 1 ]; then
	result FAIL "$errors 'xenrs config error:' lines, expected exactly one"
elif ! xt_console_has "$G" '^xenrs boot complete$'; then
	result FAIL "the guest did not reach 'xenrs boot complete'"
else
	result PASS "one config error line, then boot complete and poweroff"
fi
