# boot: a guest with then=poweroff prints the contract's console lines 1, 3 and 4 in order
# (banner with this Xen's version and mode=pvh), then powers off (reason poweroff, not crash)
# and is destroyed by xl (on_poweroff=destroy).
# xt-timeout: 90
G=xt-boot
if ! xt_create "$G" memory=32 cmdline="then=poweroff"; then
	result boot FAIL "xl create failed"
	exit 0
fi
if ! xt_wait_console "$G" '^xenrs [0-9][^ ]* booting: ' 30; then
	result boot FAIL "no 'xenrs <version> booting:' banner on the console (domain $(xt_state "$G"))"
	exit 0
fi
banner=$XT_MATCH
if ! xt_expect_end "$G" poweroff 30; then
	result boot FAIL "$XT_WHY; banner: $banner"
	exit 0
fi
if ! xt_wait_gone "$G" 10; then
	result boot FAIL "powered off but still listed 10 s later (on_poweroff=destroy); banner: $banner"
	exit 0
fi
xen=$(xl info | sed -n -E 's/^xen_version[[:space:]]*:[[:space:]]*//p')
log=$(tr -d '\r' <"$(xt_console "$G")")
order=$(printf '%s\n' "$log" | grep -n -E '^xenrs ([0-9][^ ]* booting: |boot complete$|powering off$)' | cut -d: -f1 | tr '\n' ' ')
problems=""
[ "$(xt_field "$banner" xen)" = "$xen" ] || problems+="banner xen= is '$(xt_field "$banner" xen)', xl info says '$xen'; "
[ "$(xt_field "$banner" mode)" = pvh ] || problems+="banner mode= is not pvh; "
case "$banner" in *'cmdline="then=poweroff"'*) ;; *) problems+="banner lacks cmdline=\"then=poweroff\"; " ;; esac
[ "$(printf '%s\n' "$order" | wc -w)" = 3 ] || problems+="expected banner, 'xenrs boot complete', 'xenrs powering off' once each, in order (found at lines: $order); "
printf '%s\n' "$log" | grep -q -E '^xenrs (PANIC|FAULT)' && problems+="console has a PANIC/FAULT line; "
if [ -n "$problems" ]; then
	result boot FAIL "${problems}banner: $banner"
else
	result boot PASS "reason poweroff ($XT_REASON_SRC), domid $(xt_domid "$G") gone; $banner"
fi
