# udp-echo: datagrams of 1 to 8000 bytes (random text) to the guest's UDP echo service (port 7)
# come back unchanged; those above 1472 bytes travel as IPv4 fragments both ways.
# xt-timeout: 180
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-udpecho
IP=169.254.77.33
net_start "$G" "$IP" || xt_fail "$NET_WHY"
# One datagram per socat call (its reply must come back within 3 s), sizes from 1 byte to 1472
# bytes (one IP packet each) and 1473 to 8000 (fragments), random text.
ok=0
problems=""
sizes="1 17 64 200 512 1000 1400 1472 1473 3000 8000 3000"
n=0
for s in $sizes; do
	printf -v blob '%04x' $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM
	msg=""
	while [ ${#msg} -lt "$s" ]; do msg+="$blob"; done
	msg=${msg:0:$s}
	n=$((n + 1))
	got=$(printf '%s' "$msg" | timeout 20 socat -b 65536 -t 3 -T 5 - "UDP:$IP:7" 2>/dev/null)
	if [ "$got" = "$msg" ]; then
		ok=$((ok + 1))
	else
		problems+="a ${s}-byte datagram came back as ${#got} bytes ('${got:0:20}'); "
	fi
done
net_verdict "$G" "${problems:+$ok/$n datagrams echoed: $problems}" "$ok/$n datagrams of $sizes bytes echoed intact"
xt_destroy "$G"
