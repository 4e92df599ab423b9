# boot: a guest with then=poweroff prints the contract's console lines 1, 3 and 4 in order
# (banner with this Xen's version and mode=pvh), then powers off (reason poweroff, not crash)
# and is destroyed by xl (on_poweroff=destroy).
# xt-timeout: 90
G=xt-boot
xt_create "$G" memory=32 cmdline="then=poweroff" || xt_fail "xl create failed"
xt_wait_console "$G" '^xenrs [0-9][^ ]* booting: ' 30 || xt_fail "no 'xenrs <version> booting:' banner on the console (domain $(xt_state "$G"))"
banner=$XT_MATCH
xt_expect_end "$G" poweroff 30 || xt_fail "$XT_WHY; banner: $banner"
xt_wait_gone "$G" 10 || xt_fail "powered off but still listed 10 s later (on_poweroff=destroy); banner: $banner"
xen=$(xl info | sed -n -E 's/^xen_version[[:space:]]*:[[:space:]]*//p')
log=$(tr -d '\r' <"$(xt_console "$G")")
order=$(printf '%s\n' "$log" | grep -n -E '^xenrs ([0-9][^ ]* booting: |boot complete$|powering off$)' | cut -d: -f1 | tr '\n' ' ')
problems=""
[ "$(xt_field "$banner" xen)" = "$xen" ] || problems+="banner xen= is '$(xt_field "$banner" xen)', xl info says '$xen'; "
[ "$(xt_field "$banner" mode)" = pvh ] || problems+="banner mode= is not pvh; "
want="then=poweroff${XT_CMDLINE_EXTRA:+ $XT_CMDLINE_EXTRA}"
case "$banner" in *"cmdline=\"$want\""*) ;; *) problems+="banner lacks cmdline=\"$want\"; " ;; esac
[ "$(printf '%s\n' "$order" | wc -w)" = 3 ] || problems+="expected banner, 'xenrs boot complete', 'xenrs powering off' once each, in order (found at lines: $order); "
printf '%s\n' "$log" | grep -q -E '^xenrs (PANIC|FAULT)' && problems+="console has a PANIC/FAULT line; "
if [ -n "$problems" ]; then
	result FAIL "${problems}banner: $banner"
else
	result PASS "reason poweroff ($XT_REASON_SRC), domid $(xt_domid "$G") gone; $banner"
fi
