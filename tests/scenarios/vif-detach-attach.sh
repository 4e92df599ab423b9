# vif-detach-attach: vif hotplug while the guest runs, 20 rounds. Each round `xl network-detach`es
# vif 0 (libxl walks the back end through Closing/Closed and removes both xenstore directories;
# the guest must print `xenrs xenbus: device vif/0 removed`, and no stray device/vif/0 node may be
# left behind), then `xl network-attach`es it again with the same MAC (the guest prints
# `xenrs xenbus: device vif/0 added`, connects again and re-applies its ip=), then pings the guest
# and runs a TCP echo through it. At the end the guest's grant counters (data/grants, see
# docs/CONSOLE.md) are back at their baseline, taken after boot: as many grants in use, none
# deferred, none leaked (no grant lost over 20 rounds). No guest error line.
# xt-timeout: 900
# Helpers net_* (tests/scenarios/lib/net.sh), blk_verdict (lib/blk.sh), hp_* (lib/hotplug.sh).
G=xt-vifhp
IP=169.254.77.61
ROUNDS=20
net_start "$G" "$IP" || xt_fail "$NET_WHY"
mac=$(net_cfg_mac "$G")
# xl network-attach takes the vif spec as separate key=value arguments.
spec=(bridge="$XT_BRIDGE" mac="$mac" script=/etc/xen/scripts/xt-vif)
net_ping "$IP" 2 || xt_fail "ping before the first round: $NET_PING"
hp_echo "$IP" "before" || xt_fail "TCP echo before the first round: $HP_WHY"
hp_grants_settled "$G" 30 || xt_fail "the grant counters did not settle after boot: $HP_WHY"
base=$HP_GRANTS
problems=""
times=""
conns=$(xt_console_count "$G" '^xenrs net: vif/0 mac=.* state=Connected$')
for r in $(seq 1 $ROUNDS); do
	xt_up
	t0=$XT_UP
	if ! hp_xl network-detach "$G" 0; then
		problems+="round $r: $HP_WHY; "
		break
	fi
	if ! blk_wait_count "$G" '^xenrs xenbus: device vif/0 removed$' "$r" 60; then
		problems+="round $r: no 'xenrs xenbus: device vif/0 removed' line ($BLK_N of $r) within 60 s of the detach; "
		break
	fi
	if ! hp_no_frontend "$G" vif 0; then
		problems+="round $r: $HP_WHY; "
		break
	fi
	if ! hp_xl network-attach "$G" "${spec[@]}"; then
		problems+="round $r: $HP_WHY; "
		break
	fi
	if ! blk_wait_count "$G" '^xenrs xenbus: device vif/0 added$' "$r" 60; then
		problems+="round $r: no 'xenrs xenbus: device vif/0 added' line ($BLK_N of $r) within 60 s of the attach; "
		break
	fi
	if ! blk_wait_count "$G" "^xenrs net: vif/0 mac=$mac backend=0 state=Connected\$" $((conns + r)) 60; then
		problems+="round $r: vif/0 did not connect again (no new 'xenrs net: vif/0 mac=$mac backend=0 state=Connected' line within 60 s); "
		break
	fi
	if ! blk_wait_count "$G" "^xenrs net: ip=${IP//./\\.}/24 \\(static\\) gw=none\$" $((r + 1)) 10; then
		problems+="round $r: the new interface did not print its address 'ip=$IP/24 (static)' again; "
		break
	fi
	if ! net_ping "$IP" 3; then
		problems+="round $r: ping after the attach: $NET_PING; "
		break
	fi
	if ! hp_echo "$IP" "round-$r"; then
		problems+="round $r: TCP echo after the attach: $HP_WHY; "
		break
	fi
	xt_up
	times+="$((XT_UP - t0))s "
done
if [ -z "$problems" ]; then
	if ! hp_grants_back "$G" "$base" 60; then
		problems+="grant counters not back at their baseline 60 s after round $ROUNDS: baseline '$base', now '$HP_GRANTS'; "
	fi
	hp_stray "$G" vif || problems+="$HP_WHY; "
fi
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
blk_verdict "$G" "$problems" \
	"$ROUNDS rounds of xl network-detach + network-attach (same MAC), each followed by ping and a TCP echo (round times: $times); grants at baseline '$base' after boot and '$HP_GRANTS' at the end; no stray device node"
xt_destroy "$G"
