# memory-8: a guest with memory=8, one vif and an 8 MiB disk runs every service, sized from its
# heap (docs/NET.md, "Memory"). Checked: `xenrs memory: ram_kib=... heap_kib=...` (ram within 10%
# of 8 MiB, heap 35%..65% of it); `xenrs net: vif/0 buffers heap_kib=... budget_kib=...
# services_kib=... <sizes>` with services_kib <= budget_kib; then TCP echo (1 MiB of random data
# through socat, sha256 equal), UDP echo (1000 and 3000 bytes: one datagram, and one fragmented
# both ways), `iperf3 -t 5` (non-zero bytes both ways, the guest's summary line), and NBD (nbdinfo
# shows the size; the whole disk, 4 MiB of random data and 4 MiB of zeros, written with
# nbdcopy and read back, sha256 equal). The RESULT carries the
# heap figures (the `services-up` memory line and the budget line). No guest error line.
# xt-timeout: 600
# Helpers net_*/blk_*: tests/scenarios/lib/net.sh, lib/blk.sh.
G=xt-mem-8
IP=169.254.77.52
xt_disk xvda 8 || xt_fail "xt_disk xvda failed"
blk_start "$G" "$IP" "disk=$XT_DISK" memory=8 || xt_fail "$BLK_WHY"
xt_wait_console "$G" '^xenrs memory: ram_kib=' 5 || xt_fail "no 'xenrs memory: ram_kib=' line"
mem=$XT_MATCH
ram=$(xt_field "$mem" ram_kib)
heap=$(xt_field "$mem" heap_kib)
xt_wait_console "$G" '^xenrs net: vif/0 buffers ' 5 || xt_fail "no 'xenrs net: vif/0 buffers' line; $(xt_errors "$G")"
buf=${XT_MATCH#xenrs net: vif/0 buffers }
budget=$(xt_field "$XT_MATCH" budget_kib)
used=$(xt_field "$XT_MATCH" services_kib)
xt_wait_console "$G" '^xenrs memory: services-up ' 5 || xt_fail "no 'xenrs memory: services-up' line"
up=${XT_MATCH#xenrs memory: }
problems=""
case "$ram$heap$budget$used" in '' | *[!0-9]*) xt_fail "cannot parse: $mem / $buf" ;; esac
want=$((8 * 1024))
if [ $((ram * 10)) -lt $((want * 9)) ] || [ $((ram * 10)) -gt $((want * 11)) ]; then
	problems+="ram_kib=$ram is not within 10% of $want KiB; "
fi
if [ $((heap * 100)) -lt $((ram * 35)) ] || [ $((heap * 100)) -gt $((ram * 65)) ]; then
	problems+="heap_kib=$heap is not 35%..65% of ram_kib=$ram; "
fi
[ "$used" -le "$budget" ] || problems+="services_kib=$used is over budget_kib=$budget; "

# TCP echo: 1 MiB through and back.
in=$XT_RUN/mem8.in
out=$XT_RUN/mem8.out
head -c $((1 << 20)) /dev/urandom >"$in"
timeout 300 socat -b 65536 -t 60 - "TCP:$IP:7,connect-timeout=20" <"$in" >"$out" 2>"$XT_RUN/mem8.err"
read -r a _ < <(sha256sum "$in")
read -r b _ < <(sha256sum "$out")
[ "$a" = "$b" ] || problems+="TCP echo of 1 MiB came back as $(stat -c %s "$out") bytes, sha256 differs ($(tr '\n' ' ' <"$XT_RUN/mem8.err")); "
rm -f "$in" "$out"

# UDP echo, one datagram within the MTU and one in three fragments.
for s in 1000 3000; do
	printf -v blob '%04x' $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM
	msg=""
	while [ ${#msg} -lt "$s" ]; do msg+="$blob"; done
	msg=${msg:0:$s}
	got=$(printf '%s' "$msg" | timeout 20 socat -b 9000 -t 3 -T 5 - "UDP:$IP:7" 2>/dev/null)
	[ "$got" = "$msg" ] || problems+="a ${s}-byte UDP datagram came back as ${#got} bytes; "
done

# iperf3, one stream.
js=$XT_RUN/mem8-iperf3.json
timeout 120 iperf3 -c "$IP" -t 5 --connect-timeout 20000 --json >"$js" 2>"$XT_RUN/mem8-iperf3.err"
IFS='|' read -r err sent recv kbps < <(jq -r '[(if has("error") then .error else "-" end),
	(.end.sum_sent.bytes // 0), (.end.sum_received.bytes // 0),
	((.end.sum_received.bits_per_second // 0) / 1000 | floor)] | map(tostring) | join("|")' "$js" 2>&1)
if [ "$err" != "-" ] || ! [[ $sent =~ ^[0-9]+$ && $recv =~ ^[0-9]+$ ]] || [ "$sent" -eq 0 ] || [ "$recv" -eq 0 ]; then
	problems+="iperf3 -t 5: error '$err', sent=$sent received=$recv ($(tr '\n' ' ' <"$XT_RUN/mem8-iperf3.err" | cut -c1-200)); "
elif ! xt_wait_console "$G" '^xenrs net: iperf3 test finished: ' 15; then
	problems+="iperf3 client OK but no 'xenrs net: iperf3 test finished:' line; "
fi

# NBD: nbdinfo, then 4 MiB in and back.
blk_uri "$IP" xvda
if ! blk_nbdinfo "$BLK_URI"; then
	problems+="$BLK_WHY; "
else
	read -r size _ <<<"$BLK_INFO"
	[ "$size" = $((8 << 20)) ] || problems+="nbdinfo export-size $size, expected $((8 << 20)); "
	blk_random "$XT_DISKS/src" 4 || xt_fail "cannot write $XT_DISKS/src"
	head -c $((4 << 20)) /dev/zero >>"$XT_DISKS/src"
	blk_sha "$XT_DISKS/src"
	want=$BLK_SHA
	if ! blk_nbdcopy 300 --flush "$XT_DISKS/src" "$BLK_URI"; then
		problems+="$BLK_WHY; "
	elif ! blk_nbd_sha "$BLK_URI" 300; then
		problems+="read back: $BLK_WHY; "
	elif [ "$BLK_SHA" != "$want" ]; then
		problems+="the export read back differs from what nbdcopy wrote; "
	fi
	rm -f "$XT_DISKS/src"
fi
net_verdict "$G" "$problems" "ram_kib=$ram heap_kib=$heap; $up; buffers $buf; TCP echo 1 MiB, UDP echo 1000+3000 bytes, iperf3 -t 5 ${kbps} kbit/s, NBD 8 MiB written and read back"
xt_destroy "$G"
