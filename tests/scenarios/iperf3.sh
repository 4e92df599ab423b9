# iperf3: `iperf3 -c <guest> -t 10 --json` against the guest's iperf3 server (port 5201): the JSON
# has no "error" member, non-zero sent and received byte sums, and the guest prints its summary.
# xt-timeout: 300
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-iperf3
IP=169.254.77.34
net_start "$G" "$IP" || xt_fail "$NET_WHY"
net_iperf "$G" "$IP"
xt_destroy "$G"
