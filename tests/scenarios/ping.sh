# ping: a guest with one vif on xenbr0 and ip=169.254.77.30/24 answers 20 pings from dom0 with 0%
# loss (smoltcp's ICMP echo reply), then 3 each of `ping -s 4000`, `-s 8000` and `-s 4000` again
# (requests reassembled, replies fragmented; the last after a bigger reply, see docs/NET.md). Also checked: `xenrs net: vif/0 mac=<the cfg's MAC> backend=0
# state=Connected`, `xenrs net: ip=169.254.77.30/24 (static) gw=none`, the services line, and no
# error line on the guest console.
# xt-timeout: 120
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-ping
IP=169.254.77.30
net_start "$G" "$IP" || xt_fail "$NET_WHY"
problems=""
net_ping "$IP" 20 || problems="ping $IP: $NET_PING;"
small=$NET_PING
big=""
for s in 4000 8000 4000; do
	net_ping "$IP" 3 -s "$s" || problems+=" ping -s $s: $NET_PING;"
	big+=" -s $s: ${NET_PING%%;*};"
done
net_verdict "$G" "$problems" "$small;$big $NET_VIF; $NET_ADDR"
xt_destroy "$G"
