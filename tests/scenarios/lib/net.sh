# shellcheck shell=bash disable=SC2034 # the NET_* results are for the scenarios
# Shared helpers of the network scenarios (ping, echo-16m, echo-parallel, udp-echo, iperf3,
# iperf3-reverse, iperf3-parallel, dhcp, save-restore-traffic). The runner sources every
# tests/scenarios/lib/*.sh after lib.sh and before each scenario. They rely on the `xenrs net:`
# console lines (docs/NET.md): `vif/<id> mac=<mac> backend=<domid> state=Connected`,
# `ip=<addr>/<n> (static|dhcp) gw=<gw>`, `services tcp-echo:7 udp-echo:7 iperf3:5201` and the
# iperf3 summaries. Forks are slow in this dom0 (0.2-0.5 s each): these use bash builtins where
# they can.
# net_cfg_mac NAME: print the MAC the guest's cfg gives its vif.
net_cfg_mac() {
	local line
	while IFS= read -r line; do
		[[ $line =~ mac=([0-9a-f:]{17}) ]] && echo "${BASH_REMATCH[1]}"
	done <"$XT_RUN/$1.cfg"
}
# net_wait_up NAME ADDR_ERE: wait for `xenrs net: vif/0 mac=<cfg's MAC> backend=0 state=Connected`
# (60 s), then a `xenrs net: ip=` line matching ADDR_ERE and the services line (all services, with
# or without nbd:10809, or NET_SERVICES if set, a regex, e.g. "udp-echo:7"). Sets NET_VIF and
# NET_ADDR (the lines), or NET_WHY.
net_wait_up() {
	local name=$1 mac
	mac=$(net_cfg_mac "$name")
	if ! xt_wait_console "$name" '^xenrs net: vif/0 mac=[0-9a-f:]{17} backend=0 state=Connected$' 60; then
		NET_WHY="no 'xenrs net: vif/0 mac=... backend=0 state=Connected' line within 60 s (state $(xt_state "$name")); $(xt_errors "$name")"
		return 1
	fi
	NET_VIF=$XT_MATCH
	if [ "$(xt_field "$NET_VIF" mac)" != "$mac" ]; then
		NET_WHY="the guest says mac=$(xt_field "$NET_VIF" mac), its cfg gives $mac"
		return 1
	fi
	if ! xt_wait_console "$name" "$2" 60; then
		NET_WHY="no address line matching '$2' within 60 s; $(xt_errors "$name")"
		return 1
	fi
	NET_ADDR=$XT_MATCH
	if ! xt_wait_console "$name" "^xenrs net: services ${NET_SERVICES:-tcp-echo:7 udp-echo:7 iperf3:5201( nbd:10809)?}\$" 10; then
		NET_WHY="no 'xenrs net: services ${NET_SERVICES:-tcp-echo:7 udp-echo:7 iperf3:5201( nbd:10809)?}' line; $(xt_errors "$name")"
		return 1
	fi
}
# net_start NAME IP [key=value]...: xt_create NAME with one vif on xenbr0 (xt_vif_default) and the
# command line "ip=IP/24" (then=block is the default), then net_wait_up. Sets NET_WHY on failure.
net_start() {
	local name=$1 ip=$2
	shift 2
	NET_WHY=""
	if ! xt_create "$name" cmdline="ip=$ip/24" vif=default "$@"; then
		NET_WHY="xl create failed"
		return 1
	fi
	net_wait_up "$name" "^xenrs net: ip=${ip//./\\.}/24 \\(static\\) gw=none\$"
}
# net_ping IP COUNT [ARGS...]: ping COUNT times, 0.2 s apart, waiting up to 2 s per reply (ARGS
# added, e.g. -s 8000). Sets NET_PING (the summary line and the rtt line); true on 0% loss.
net_ping() {
	local out sum rtt
	out=$(ping -n -c "$2" -i 0.2 -W 2 "${@:3}" "$1" 2>&1)
	sum=$(grep -E 'packets transmitted' <<<"$out")
	rtt=$(grep -E '^(rtt|round-trip)' <<<"$out")
	NET_PING="$sum; $rtt"
	[[ $sum =~ \ 0%\ packet\ loss ]]
}
# net_diag NAME IP: debug dump (`xt|` lines) for a guest whose network stalled: is its main loop
# alive (xenstore echo), does it use CPU, its vif's xenstore nodes on both ends, Xen's event-channel
# table for it (`xl debug-keys e`), dom0's view (vif counters, bridge FDB, neighbour entry, netback's
# debugfs ring dump, the vif's IRQ counts), then the guest's own counters and ring indices (printed
# by its suspend hook during an `xl save -c`, which changes nothing in the guest).
net_diag() {
	local name=$1 ip=$2 id c0 c1 got mac n dumps
	id=$(xl domid "$name" 2>/dev/null)
	[ -n "$id" ] || {
		echo "xt| net_diag: $name is gone"
		return 0
	}
	c0=$(xl list -v "$id" 2>/dev/null | awk 'NR == 2 {print $6}')
	# First what needs no word with the guest (anything written to xenstore wakes it):
	# netback's view of the rings (indices, NAPI state, its internal rx queue) and its IRQ,
	# and Xen's event-channel state of both ends.
	mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	cat "/sys/kernel/debug/xen-netback/vif$id.0/io_ring_q0" 2>&1 | head -n 40 | sed 's/^/xt| net_diag: netback /'
	grep -E "vif$id\." /proc/interrupts 2>&1 | tr -s ' ' | sed 's/^/xt| net_diag: irq /'
	xl debug-keys e >/dev/null 2>&1
	sleep 1
	xl dmesg 2>/dev/null | tr -d '\r' | awk -v d="domain $id:" 'index($0, "Event channel information for domain") {on = index($0, d) > 0} on' |
		head -n 30 | sed 's/^/xt| net_diag: /'
	# dom0's ends of the guest's channels (pending/masked there means the back end is not listening).
	xl dmesg 2>/dev/null | tr -d '\r' | awk 'index($0, "Event channel information for domain") {on = index($0, "domain 0:") > 0} on' |
		grep -E " d=$id p=" | sed 's/^/xt| net_diag: dom0 end: /'
	ss -tni dst "$ip" 2>/dev/null | sed 's/^/xt| net_diag: ss /'
	# Xen's view of the guest's vCPU (blocked? upcall pending?) and of the one-shot timers
	# queued on each physical CPU (is its wake-up still there, and when is it due?).
	xl debug-keys q >/dev/null 2>&1
	xl debug-keys a >/dev/null 2>&1
	sleep 1
	# From the last 'q' dump on (Xen's ring is not cleared: the runner reads it for triple faults).
	xl dmesg 2>/dev/null | tr -d '\r' | awk -v d="domain $id" '
		{ line[NR] = $0 } /.q. pressed/ { start = NR }
		END {
			for (i = start; i <= NR; i++) {
				$0 = line[i]
				if (/General information for domain/) on = index($0, d) > 0
				if (/Dumping timer queues/) { on = 0; t = 1 }
				if (on || /NOW=|CPU[0-9]+:[[:space:]]*$/ || (t && /singleshot|poll_timer|periodic/)) print
			}
		}' | head -n 60 | sed 's/^/xt| net_diag: xen /'
	# The guest's status dump (docs/CONSOLE.md), taken as the request wakes it, before its
	# pumps run: its timers, event counters, sockets and services as they stood.
	dumps=$(tr -d '\r' <"$(xt_console "$name")" 2>/dev/null | grep -c '^xenrs dump: end')
	xenstore-write "/local/domain/$id/data/dump" "diag-$RANDOM" 2>/dev/null
	# Up to 30 s: the dump is long and the console ring drains only as fast as xenconsoled reads
	# it (in the 17:38 soak of 2026-12-04 it had not arrived after 10 s, under load).
	got=""
	for n in $(seq 1 60); do
		if [ "$(tr -d '\r' <"$(xt_console "$name")" 2>/dev/null | grep -c '^xenrs dump: end')" -gt "$dumps" ]; then
			got=yes
			break
		fi
		sleep 0.5
	done
	[ -n "$got" ] || echo "xt| net_diag: no complete guest dump within 30 s; what arrived of it:"
	tr -d '\r' <"$(xt_console "$name")" 2>/dev/null |
		awk -v n="$dumps" '/^xenrs dump: end/ { e++; next } e >= n && /^xenrs dump: / { print }' |
		sed 's/^/xt| net_diag: guest /'
	xenstore-write "/local/domain/$id/data/echo-in" "diag-$RANDOM" 2>/dev/null
	sleep 3
	got=$(xenstore-read "/local/domain/$id/data/echo-out" 2>/dev/null)
	c1=$(xl list -v "$id" 2>/dev/null | awk 'NR == 2 {print $6}')
	echo "xt| net_diag: domid $id cpu ${c0}s -> ${c1}s over the diagnosis; xenstore echo-out now '$got' (main loop alive if diag-*)"
	for n in state event-channel tx-ring-ref rx-ring-ref request-rx-copy; do
		echo "xt| net_diag: frontend device/vif/0/$n = $(xenstore-read "/local/domain/$id/device/vif/0/$n" 2>&1)"
	done
	for n in state hotplug-status; do
		echo "xt| net_diag: backend vif/$id/0/$n = $(xenstore-read "/local/domain/0/backend/vif/$id/0/$n" 2>&1)"
	done
	ip -s link show "vif$id.0" 2>&1 | sed 's/^/xt| net_diag: /'
	mac=$(net_cfg_mac "$name")
	bridge fdb show 2>/dev/null | grep -i "$mac" | sed 's/^/xt| net_diag: fdb /'
	ip neigh show "$ip" 2>&1 | sed 's/^/xt| net_diag: neigh /'
	# The guest's counters and ring indices: its suspend hook prints them; a checkpoint
	# (xl save -c) suspends it and resumes it on the same rings (touching nothing).
	timeout 120 xl save -c "$name" "$XT_RUN/diag.save" >/dev/null 2>&1
	rm -f "$XT_RUN/diag.save"
	sleep 1
	tr -d '\r' <"$(xt_console "$name")" 2>/dev/null | grep -E 'net: vif/[0-9]+: rx ' | tail -n 1 | sed 's/^/xt| net_diag: guest /'
}
# net_hang_diag NAME: debug dump (`xt|` lines) for a guest that stopped printing (e.g. stuck in a
# resume): its CPU time over 3 s (spinning or halted), its vCPU registers and stack (xenctx; the
# addresses resolve against the kernel ELF, target/x86_64-xen/release/kernel), and Xen's
# event-channel table for it.
net_hang_diag() {
	local name=$1 id c0 c1
	id=$(xl domid "$name" 2>/dev/null)
	[ -n "$id" ] || {
		echo "xt| net_hang_diag: $name is gone"
		return 0
	}
	c0=$(xl list -v "$id" 2>/dev/null | awk 'NR == 2 {print $6}')
	sleep 3
	c1=$(xl list -v "$id" 2>/dev/null | awk 'NR == 2 {print $6 " " $5}')
	echo "xt| net_hang_diag: domid $id cpu ${c0}s -> ${c1} (time, state) over 3 s"
	/usr/lib/xen-4.17/bin/xenctx -a -S -C "$id" 2>&1 | head -n 40 | sed 's/^/xt| net_hang_diag: /'
	xl debug-keys e >/dev/null 2>&1
	sleep 1
	xl dmesg 2>/dev/null | tr -d '\r' | awk -v d="domain $id:" 'index($0, "Event channel information for domain") {on = index($0, d) > 0} on' |
		head -n 20 | sed 's/^/xt| net_hang_diag: /'
}
# net_guest_ok NAME: true if the guest is running and printed no `xenrs net error:`, PANIC, FAULT or
# FATAL line; else sets NET_WHY. (Every other error line, of any subsystem, fails the scenario's
# PASS through result's common check in lib.sh unless the scenario allowed it: xt_allow_errors.)
net_guest_ok() {
	local bad
	bad=$(tr -d '\r' <"$(xt_console "$1")" 2>/dev/null | grep -E '^xenrs (net error:|PANIC|FAULT|FATAL)' |
		head -n 5 | tr '\n' ' ')
	if [ "$(xt_state "$1")" != running ]; then
		NET_WHY="guest not running any more (state $(xt_state "$1")); $(xt_errors "$1")"
		return 1
	fi
	if [ -n "$bad" ]; then
		NET_WHY="guest printed: $bad"
		return 1
	fi
}
# net_verdict NAME PROBLEMS PASS_DETAILS: the verdict of a network scenario. FAIL with PROBLEMS and
# the guest's error lines if PROBLEMS is not empty, else FAIL if net_guest_ok does not hold, else
# PASS with PASS_DETAILS.
net_verdict() {
	if [ -n "$2" ]; then
		result FAIL "$2 $(xt_errors "$1")"
	elif ! net_guest_ok "$1"; then
		result FAIL "$NET_WHY"
	else
		result PASS "$3"
	fi
}
# net_iperf NAME IP ARGS...: run `iperf3 -c IP -t 10 --json ARGS` against the guest; PASS if the
# JSON has no "error" member and non-zero sent and received byte sums, and the guest printed its
# `xenrs net: iperf3 test finished:` summary. The result and its files are named $XT_SCENARIO.
net_iperf() {
	local name=$1 res=${XT_SCENARIO:-iperf3} ip=$2 js fields err sent recv bps secs
	shift 2
	js=$XT_RUN/$res.json
	xt_up
	secs=$XT_UP
	timeout 180 iperf3 -c "$ip" -t 10 --connect-timeout 20000 --json "$@" >"$js" 2>"$XT_RUN/$res.err"
	xt_up
	secs=$((XT_UP - secs))
	fields=$(jq -r '[(if has("error") then .error else "-" end), (.end.sum_sent.bytes // 0),
		(.end.sum_received.bytes // 0), ((.end.sum_received.bits_per_second // 0) / 1000 | floor),
		(.end.sum_sent.retransmits // 0)] | map(tostring) | join("|")' "$js" 2>&1)
	IFS='|' read -r err sent recv bps retr <<<"$fields"
	if [ "$err" != "-" ]; then
		# What got through before it failed (per-second bytes, the sender's retransmits and cwnd),
		# then the guest's and dom0's view of the vif.
		jq -r '.intervals[]?.streams[]? | "xt| iperf3 interval \(.start|floor)-\(.end|floor)s: \(.bytes) B, retransmits \(.retransmits // "-"), snd_cwnd \(.snd_cwnd // "-"), snd_wnd \(.snd_wnd // "-")"' "$js" 2>/dev/null | head -n 40
		net_diag "$name" "$ip"
		result FAIL "iperf3 $* reported error '$err' (after ${secs}s; stderr: $(tr '\n' ' ' <"$XT_RUN/$res.err" | cut -c1-200)); $(xt_errors "$name")"
		return
	fi
	if ! [[ $sent =~ ^[0-9]+$ && $recv =~ ^[0-9]+$ ]] || [ "$sent" -eq 0 ] || [ "$recv" -eq 0 ]; then
		result FAIL "iperf3 $*: sent=$sent received=$recv bytes (JSON: $(head -c 300 "$js" | tr '\n' ' ')); $(xt_errors "$name")"
		return
	fi
	if ! xt_wait_console "$name" '^xenrs net: iperf3 test finished: ' 15; then
		result FAIL "iperf3 $*: client OK (sent=$sent received=$recv) but no 'xenrs net: iperf3 test finished:' line; $(xt_errors "$name")"
		return
	fi
	if ! net_guest_ok "$name"; then
		result FAIL "$NET_WHY"
		return
	fi
	result PASS "iperf3 -t 10${*:+ $*}: sent=$sent received=$recv bytes, receiver $bps kbit/s, retransmits $retr, ${secs}s wall; guest: ${XT_MATCH#xenrs net: }"
}
