# iperf3-parallel: as iperf3, with -P 4 (four streams at once).
# xt-timeout: 300
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-iperf3p
IP=169.254.77.36
if ! net_start "$G" "$IP"; then
	result iperf3-parallel FAIL "$NET_WHY"
	exit 0
fi
net_iperf "$G" iperf3-parallel "$IP" -P 4
xt_destroy "$G"
