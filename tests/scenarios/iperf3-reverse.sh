# iperf3-reverse: as iperf3, with -R (the guest sends).
# xt-timeout: 300
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-iperf3r
IP=169.254.77.35
net_start "$G" "$IP" || xt_fail "$NET_WHY"
net_iperf "$G" "$IP" -R
xt_destroy "$G"
