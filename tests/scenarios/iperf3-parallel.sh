# iperf3-parallel: as iperf3, with -P 4 (four streams at once).
# xt-timeout: 300
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-iperf3p
IP=169.254.77.36
net_start "$G" "$IP" || xt_fail "$NET_WHY"
net_iperf "$G" "$IP" -P 4
xt_destroy "$G"
