# tx-stall: the back end stops taking the guest's tx requests in the middle of a TCP transfer, and
# the guest's tx watchdog recovers without losing the connection. 8 MiB go through the TCP echo
# service; once 1 MiB is back, dom0 takes the guest's vif link down for 8 s (netback then disables
# its interrupt and NAPI: nothing on the tx ring is taken any more, as with the masked event
# channel docs/NET.md describes). The guest must print `xenrs net: vif/0: the back end took no tx
# request for <ms> ms (stall <n>); reconnecting`, reconnect, and, once the link is up again, the
# same connection must finish: what comes back has the size and sha256 of what was sent. Ping
# works afterwards and the guest printed no error.
# xt-timeout: 600
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-txstall
IP=169.254.77.41
SIZE=$((8 * 1024 * 1024))
STALL_RE='^xenrs net: vif/0: the back end took no tx request for [0-9]+ ms \(stall [0-9]+\); reconnecting$'
# The stall is what this scenario provokes (lib.sh's common check allows the watchdog's line).
xt_allow_errors "$STALL_RE"
net_start "$G" "$IP" || xt_fail "$NET_WHY"
vif="vif$XT_DOMID.0"
in=$XT_RUN/txstall.in
out=$XT_RUN/txstall.out
head -c "$SIZE" /dev/urandom >"$in"
: >"$out"
timeout 500 socat -b 65536 -t 300 - "TCP:$IP:7,connect-timeout=20" <"$in" >"$out" 2>"$XT_RUN/txstall.err" &
spid=$!
problems=""
# Wait for 1 MiB to come back, so that the transfer runs in both directions.
xt_up
dl=$((XT_UP + 120))
while [ "$(stat -c %s "$out" 2>/dev/null || echo 0)" -lt $((1024 * 1024)) ]; do
	xt_up
	if [ "$XT_UP" -ge "$dl" ] || ! kill -0 "$spid" 2>/dev/null; then
		problems+="the transfer did not get to 1 MiB within 120 s ($(stat -c %s "$out") bytes back); "
		break
	fi
	sleep 0.2
done
if [ -z "$problems" ]; then
	at=$(stat -c %s "$out")
	ip link set dev "$vif" down
	if ! xt_wait_console "$G" "$STALL_RE" 20; then
		problems+="no tx-stall line within 20 s of taking $vif down ($at bytes back then); "
	fi
	stall_line=$XT_MATCH
	sleep 3
	ip link set dev "$vif" up
fi
wait "$spid"
rc=$?
got=$(stat -c %s "$out" 2>/dev/null)
read -r sum_in _ < <(sha256sum "$in")
read -r sum_out _ < <(sha256sum "$out")
if [ "$rc" -ne 0 ]; then
	problems+="socat exited $rc ($(tr '\n' ' ' <"$XT_RUN/txstall.err")); got ${got:-0} of $SIZE bytes back; "
elif [ "$got" != "$SIZE" ] || [ "$sum_in" != "$sum_out" ]; then
	problems+="echo differs: sent $SIZE bytes sha256 $sum_in, got ${got:-0} bytes sha256 $sum_out; "
fi
net_ping "$IP" 3 || problems+="ping afterwards: $NET_PING; "
stalls=$(xt_console_count "$G" "$STALL_RE")
conns=$(xt_console_count "$G" '^xenrs net: vif/0 mac=.* state=Connected$')
net_verdict "$G" "$problems" \
	"8 MiB echoed intact through a stalled back end (link down at $at bytes back): ${stall_line#xenrs net: }; $stalls stall(s), $conns connections in all; ping works"
rm -f "$in" "$out"
xt_destroy "$G"
