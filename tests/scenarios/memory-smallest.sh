# memory-smallest: the least memory= (MiB, tried from 2 up to 8) at which a PVH guest with one vif
# boots, starts every service sized from its heap (`xenrs net: vif/0 buffers ...`, no `xenrs net
# error:`) and answers TCP echo (256 KiB through socat, sha256 equal) and `iperf3 -t 3`. Each
# smaller size is reported with what stopped it (xl create, a crash, services not started, echo or
# iperf3). PASS if a size up to 8 MiB works, with the figure and the per-size reasons in the
# RESULT; the working guest must print no error line (the smaller ones may: too little memory).
# xt-timeout: 1200
# Helpers net_*: tests/scenarios/lib/net.sh.
xt_allow_errors '.'
found=""
notes=""
for m in 2 3 4 5 6 7 8; do
	G=xt-memmin-$m
	IP=169.254.77.$((80 + m))
	if ! xt_create "$G" memory="$m" cmdline="ip=$IP/24" vif=default; then
		notes+="$m: xl create failed ($(tail -n 2 "$XT_RUN/$G.create.log" 2>/dev/null | tr '\n' ' ' | cut -c1-160)); "
		xt_destroy "$G"
		continue
	fi
	if ! xt_wait_console "$G" '^xenrs (net: vif/0 buffers |net error|PANIC|FAULT|FATAL|crashing)' 60; then
		notes+="$m: no buffers line in 60 s (state $(xt_state "$G"); $(xt_errors "$G")); "
		xt_destroy "$G"
		continue
	fi
	if [[ $XT_MATCH != "xenrs net: vif/0 buffers "* ]]; then
		notes+="$m: $(xt_errors "$G" | cut -c1-200); "
		xt_destroy "$G"
		continue
	fi
	buf=${XT_MATCH#xenrs net: vif/0 buffers }
	if ! net_wait_up "$G" "^xenrs net: ip=${IP//./\\.}/24 \\(static\\) gw=none\$"; then
		notes+="$m: $NET_WHY; "
		xt_destroy "$G"
		continue
	fi
	in=$XT_RUN/memmin.in
	out=$XT_RUN/memmin.out
	head -c $((256 << 10)) /dev/urandom >"$in"
	timeout 120 socat -b 65536 -t 30 - "TCP:$IP:7,connect-timeout=20" <"$in" >"$out" 2>/dev/null
	read -r a _ < <(sha256sum "$in")
	read -r b _ < <(sha256sum "$out")
	got=$(stat -c %s "$out" 2>/dev/null)
	rm -f "$in" "$out"
	if [ "$a" != "$b" ]; then
		notes+="$m: TCP echo of 256 KiB came back as ${got:-0} bytes ($(xt_errors "$G")); "
		xt_destroy "$G"
		continue
	fi
	js=$XT_RUN/memmin-iperf3.json
	timeout 90 iperf3 -c "$IP" -t 3 --connect-timeout 20000 --json >"$js" 2>/dev/null
	IFS='|' read -r err sent recv kbps < <(jq -r '[(if has("error") then .error else "-" end),
		(.end.sum_sent.bytes // 0), (.end.sum_received.bytes // 0),
		((.end.sum_received.bits_per_second // 0) / 1000 | floor)] | map(tostring) | join("|")' "$js" 2>&1)
	if [ "$err" != "-" ] || ! [[ $sent =~ ^[0-9]+$ && $recv =~ ^[0-9]+$ ]] || [ "$sent" -eq 0 ] || [ "$recv" -eq 0 ]; then
		notes+="$m: iperf3 error '$err' sent=$sent received=$recv ($(xt_errors "$G")); "
		xt_destroy "$G"
		continue
	fi
	bad=$(xt_errors "$G")
	if [ -n "$bad" ] || [ "$(xt_state "$G")" != running ]; then
		notes+="$m: worked, but the guest printed: $bad (state $(xt_state "$G")); "
		xt_destroy "$G"
		continue
	fi
	xt_wait_console "$G" '^xenrs memory: ram_kib=' 1
	mem=${XT_MATCH#xenrs memory: }
	found=$m
	notes+="$m: works ($mem; buffers $buf; iperf3 $kbps kbit/s)"
	xt_destroy "$G"
	break
done
if [ -n "$found" ]; then
	result PASS "smallest memory=$found MiB (echo + iperf3 work); $notes"
else
	result FAIL "no memory= from 2 to 8 MiB gave a guest with working echo and iperf3: $notes"
fi
