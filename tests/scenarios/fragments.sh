# fragments: IPv4 fragments on real Xen against a guest with 32 MiB. (1) Big datagrams both ways:
# `ping -s 8000` then `ping -s 4000` (the smaller reply after a bigger one: smoltcp 0.14 alone sends
# it with a wrong checksum, docs/NET.md) and UDP echo of 8000 and 3000 bytes come back whole.
# (2) A flood: dom0 sends 20000 first fragments (raw socket, distinct ids, more-fragments set)
# that never complete. During it, plain pings are answered (at least 1 of 10); after it, the guest's heap has grown
# by at most 4 x 132 KiB (its reassembly buffers) plus 128 KiB of slack (`xenrs memory:
# after-resume heap_used=` of an `xl save -c` after the flood, against one before it); once the 5 s reassembly
# timeout passed, `ping -s 8000` and an 8000-byte UDP echo work again. No guest error line.
# xt-timeout: 600
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-frag
IP=169.254.77.54
net_start "$G" "$IP" || xt_fail "$NET_WHY"
problems=""
# checkpoint_heap K: `xl save -c` (the K-th); sets USED to heap_used of the K-th `xenrs memory:
# after-resume` line (printed by the guest after each resume) and RX to the packets its vif had
# received (the K-th `xenrs info: net: vif/0: rx <n> pkts` line, printed at each suspend), or adds
# to problems (false).
checkpoint_heap() {
	local line="" i
	USED=""
	RX=""
	if ! timeout 120 xl save -c "$G" "$XT_RUN/frag.chk" >"$XT_RUN/frag.chk.log" 2>&1; then
		problems+="xl save -c $1 failed: $(tail -n 2 "$XT_RUN/frag.chk.log" | tr '\n' ' '); "
		return 1
	fi
	rm -f "$XT_RUN/frag.chk"
	for i in $(seq 1 100); do
		line=$(tr -d '\r' <"$(xt_console "$G")" | grep '^xenrs memory: after-resume ' | sed -n "$1p")
		[ -n "$line" ] && break
		sleep 0.3
	done
	USED=$(xt_field "$line" heap_used)
	line=$(tr -d '\r' <"$(xt_console "$G")" | grep '^xenrs info: net: vif/0: rx [0-9]* pkts' | sed -n "$1p")
	[[ $line =~ rx\ ([0-9]+)\ pkts ]] && RX=${BASH_REMATCH[1]}
	[[ $USED =~ ^[0-9]+$ ]] || {
		problems+="no 'xenrs memory: after-resume' line after xl save -c $1; "
		return 1
	}
}
# udp_echo SIZE: one datagram of SIZE random characters to UDP 7; true if it came back unchanged.
udp_echo() {
	local blob msg got
	printf -v blob '%04x' $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM
	msg=""
	while [ ${#msg} -lt "$1" ]; do msg+="$blob"; done
	msg=${msg:0:$1}
	got=$(printf '%s' "$msg" | timeout 20 socat -b 65536 -t 3 -T 5 - "UDP:$IP:7" 2>/dev/null)
	[ "$got" = "$msg" ]
}
for s in 8000 4000; do
	net_ping "$IP" 3 -s "$s" || problems+="ping -s $s: $NET_PING; "
done
for s in 8000 3000; do
	udp_echo "$s" || problems+="no intact echo of a ${s}-byte UDP datagram; "
done

# The heap before the flood (the big datagrams above already grew the reassembly buffers some).
checkpoint_heap 1
used0=$USED
rx0=$RX

# The flood, in the background; pings meanwhile.
cat >"$XT_RUN/fragflood.py" <<'PY'
import random, socket, struct, sys
dst = sys.argv[1]
n = int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
src = socket.inet_aton(sys.argv[3])
payload = bytes(1000)
sent = 0
for i in range(n):
    ident = random.randrange(1, 65536)
    # First fragment (offset 0, more fragments) of a UDP datagram that never completes;
    # every fourth one far out instead, to grow a reassembly buffer to its largest.
    off = 0 if i % 4 else 8000
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x2000 | off, 64, 17, 0,
                      src, socket.inet_aton(dst))
    try:
        s.sendto(hdr + payload, (dst, 0))
        sent += 1
    except OSError:
        pass
print(sent)
PY
src=$XT_BRIDGE_IP
timeout 300 python3 "$XT_RUN/fragflood.py" "$IP" 20000 "$src" >"$XT_RUN/fragflood.out" 2>&1 &
flood=$!
during=""
# Replies must come back during the flood; some may be lost while the rx ring is full of fragments.
net_ping "$IP" 10
during=$NET_PING
[[ $NET_PING =~ ([0-9]+)\ received ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] || problems+="no ping answered during the flood: $NET_PING; "

wait "$flood"
read -r sent <"$XT_RUN/fragflood.out"
[[ $sent =~ ^[0-9]+$ ]] && [ "$sent" -gt 10000 ] || problems+="the flood sent '${sent}' fragments: $(tr '\n' ' ' <"$XT_RUN/fragflood.out" | cut -c1-200); "
net_ping "$IP" 5 || problems+="ping after the flood: $NET_PING; "

# The heap after the flood, from the memory line of a second checkpoint.
grown="?"
if [ -n "$used0" ] && checkpoint_heap 2; then
	grown=$((USED - used0))
	[ "$grown" -le $(((4 * 132 + 128) * 1024)) ] || problems+="the heap grew by $grown bytes (before the flood $used0, after it $USED); "
	# The flood reached the guest (no reassembly in dom0's bridge on the way).
	if [[ $rx0 =~ ^[0-9]+$ && $RX =~ ^[0-9]+$ ]]; then
		[ $((RX - rx0)) -ge 20000 ] || problems+="the guest received only $((RX - rx0)) packets during the flood; "
	else
		problems+="no 'xenrs info: net: vif/0: rx <n> pkts' lines at the checkpoints ('$rx0', '$RX'); "
	fi
fi
sleep 6
net_ping "$IP" 3 -s 8000 || problems+="ping -s 8000 after the flood expired: $NET_PING; "
udp_echo 8000 || problems+="no intact echo of an 8000-byte UDP datagram after the flood; "
net_verdict "$G" "$problems" "ping -s 8000/4000 and UDP echo 8000/3000 intact; flood of $sent incomplete fragments from $src: ping during it ($during), the guest received $((${RX:-0} - ${rx0:-0})) packets meanwhile, heap grew by $grown bytes (at most $(((4 * 132 + 128) * 1024))), big ping and echo work after the 5 s timeout"
xt_destroy "$G"
