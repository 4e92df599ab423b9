# reboot: with on_reboot="restart", `xl reboot` makes the guest print
# `xenrs control: request 'reboot'` and `xenrs rebooting` and end with reason reboot; xl
# restarts it under a NEW domid, whose console shows the banner and the services line again.
# xt-timeout: 150
# Helpers core_*: tests/scenarios/lib/core.sh.
G=xt-reboot
core_start "$G" on_reboot=restart || xt_fail "$CORE_WHY"
xt_id "$G"
old=$XT_ID
timeout 30 xl reboot "$G" >"$XT_RUN/$G.reboot.log" 2>&1 || xt_fail "xl reboot failed: $(tail -n 3 "$XT_RUN/$G.reboot.log" | tr '\n' ' ')"
xt_wait_console "$G" '^xenrs rebooting$' 15 || xt_fail "no 'xenrs rebooting' line; $(xt_errors "$G")"
# The old domain's reason (xl's monitor log; the domain itself is gone or going).
reason=$(xt_shutdown_reason "$G")
new=""
xt_up
dl=$((XT_UP + 30))
while [ "$XT_UP" -lt "$dl" ]; do
	new=$(xl domid "$G" 2>/dev/null)
	[ -n "$new" ] && [ "$new" != "$old" ] && break
	new=""
	sleep 0.3
	xt_up
done
if [ -z "$new" ]; then
	xt_fail "no new domain called $G within 30 s of 'xenrs rebooting' (reason $reason)"
fi
xt_track "$G"
xt_wait_console "$G" "^xenrs services: domid=$new " 30 || xt_fail "restarted as domid $new but no services line with domid=$new; $(xt_errors "$G")"
# A banner must follow the last 'xenrs rebooting' line (xenconsoled appends the new domain's
# output to the same log; should it start a fresh log, any banner is the new domain's).
n=0
last_reboot=0
banner_after=""
while IFS= read -r line || [ -n "$line" ]; do
	n=$((n + 1))
	line=${line%$'\r'}
	case "$line" in
	'xenrs rebooting') last_reboot=$n banner_after="" ;;
	'xenrs '[0-9]*' booting: '*) [ -n "$banner_after" ] || banner_after=$line ;;
	esac
done <"$(xt_console "$G")"
problems=""
[ "$reason" = reboot ] || problems+="old domain $old ended with reason $reason, expected reboot; "
[ -n "$banner_after" ] || problems+="no banner after 'xenrs rebooting' (line $last_reboot); "
xt_console_has "$G" "^xenrs control: request 'reboot'\$" || problems+="no \"xenrs control: request 'reboot'\" line; "
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
core_wait_ready "$G" 20 || problems+="the restarted domain never wrote data/ready; "
if [ -n "$problems" ]; then
	result FAIL "${problems}$(xt_errors "$G")"
else
	result PASS "domid $old -> $new, reason reboot, banner again: $banner_after"
fi
xt_destroy "$G"
