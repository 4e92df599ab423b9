# iperf3-reverse: as iperf3, with -R (the guest sends).
# xt-timeout: 300
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-iperf3r
IP=169.254.77.35
if ! net_start "$G" "$IP"; then
	result iperf3-reverse FAIL "$NET_WHY"
	exit 0
fi
net_iperf "$G" iperf3-reverse "$IP" -R
xt_destroy "$G"
