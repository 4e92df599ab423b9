# echo-16m: 16 MiB of random data through the guest's TCP echo service (port 7) with socat; what
# comes back must have the same size and sha256. The guest closes after echoing everything that
# came before our FIN.
# xt-timeout: 900
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-echo16m
IP=169.254.77.31
SIZE=$((16 * 1024 * 1024))
net_start "$G" "$IP" || xt_fail "$NET_WHY"
in=$XT_RUN/echo16m.in
out=$XT_RUN/echo16m.out
head -c "$SIZE" /dev/urandom >"$in"
xt_up
t0=$XT_UP
# socat copies both ways at once; after stdin's EOF it half-closes and waits up to 300 s for the
# guest's echo to end (the echo service closes once it has echoed everything after our FIN).
timeout 900 socat -b 65536 -t 300 - "TCP:$IP:7,connect-timeout=20" <"$in" >"$out" 2>"$XT_RUN/echo16m.err"
rc=$?
xt_up
secs=$((XT_UP - t0))
got=$(stat -c %s "$out" 2>/dev/null)
read -r sum_in _ < <(sha256sum "$in")
read -r sum_out _ < <(sha256sum "$out")
rate=$((2 * SIZE / 1024 / (secs > 0 ? secs : 1)))
problems=""
if [ "$rc" -ne 0 ]; then
	problems="socat exited $rc after ${secs}s ($(tr '\n' ' ' <"$XT_RUN/echo16m.err")); got ${got:-0} of $SIZE bytes back;"
elif [ "$got" != "$SIZE" ] || [ "$sum_in" != "$sum_out" ]; then
	problems="echo differs: sent $SIZE bytes sha256 $sum_in, got ${got:-0} bytes sha256 $sum_out;"
fi
net_verdict "$G" "$problems" "16 MiB echoed intact (sha256 ${sum_in:0:16}...) in ${secs}s, ~${rate} KiB/s both ways together"
rm -f "$in" "$out"
xt_destroy "$G"
