# dhcp: busybox udhcpd serves 169.254.77.100-150 (router 169.254.77.1) on xenbr0; a guest with
# `dhcp` on its command line prints `xenrs net: ip=<leased>/24 (dhcp) gw=169.254.77.1` and answers
# pings on that address.
# xt-timeout: 180
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-dhcp
conf=$XT_RUN/udhcpd.conf
leases=$XT_RUN/udhcpd.leases
# busybox udhcpd on xenbr0 (169.254.77.1) hands out 169.254.77.100-150 with a router option.
printf '%s\n' 'start 169.254.77.100' 'end 169.254.77.150' 'interface xenbr0' "lease_file $leases" \
	'option subnet 255.255.255.0' 'option router 169.254.77.1' 'option lease 600' >"$conf"
: >"$leases"
busybox udhcpd -f "$conf" >"$XT_RUN/udhcpd.log" 2>&1 &
dpid=$!
sleep 1
kill -0 "$dpid" 2>/dev/null || xt_fail "busybox udhcpd did not start: $(tr '\n' ' ' <"$XT_RUN/udhcpd.log")"
NET_WHY=""
if ! xt_create "$G" cmdline="dhcp" vif=default; then
	NET_WHY="xl create failed"
elif ! net_wait_up "$G" '^xenrs net: ip=169\.254\.77\.(1[0-4][0-9]|150)/24 \(dhcp\) gw=169\.254\.77\.1$'; then
	:
fi
if [ -n "$NET_WHY" ]; then
	result FAIL "$NET_WHY; udhcpd: $(tail -n 5 "$XT_RUN/udhcpd.log" | tr '\n' ' ')"
else
	ip=$(xt_field "$NET_ADDR" ip)
	ip=${ip%/*}
	problems=""
	net_ping "$ip" 10 || problems="got $ip by DHCP but ping failed: $NET_PING;"
	net_verdict "$G" "$problems" "leased $ip from busybox udhcpd; ping: $NET_PING; $NET_ADDR"
fi
kill "$dpid" 2>/dev/null
wait "$dpid" 2>/dev/null
xt_destroy "$G"
