# bench: figures, not assertions. In this one harness boot, a xenrs guest and a Linux PVH domU
# (Debian's own kernel with an iperf3 server in its initramfs, /opt/xt-linux from build-dom0.sh)
# each get: the time from `xl create` to their iperf3 port (5201) answering a TCP connect from
# dom0, then `iperf3 -c -t 10` both ways, interleaved (xenrs, Linux, xenrs -R, Linux -R) and
# repeated BENCH_REPS times; then the disk through NBD: dom0's `nbdcopy --flush` writes
# BENCH_NBD_MIB MiB of random data to the guest's export xvda, and `nbdcopy` reads them back to
# null:, interleaved the same way. Both guests have 1 vCPU, one vif on xenbr0, tsc_mode=native, and
# one 64 MiB read-write file disk xvda (xt_disk, quick hotplug); xenrs 32 MiB, serving NBD itself;
# Linux 256 MiB, serving the disk with `nbdkit file /dev/xvda` on port 10809. The figures go to
# the console as `xt| BENCH-JSON {...}` (one line) and `xt| BENCH-MD ...` (a Markdown table);
# run-suite.sh saves them in target/xen-harness/bench-latest.{json,md}, and `./run.sh bench`
# copies the table into BENCHMARKS.md. PASS means every network figure was measured; disk
# figures that could not be measured (a guest without the NBD service) are reported as missing,
# with the reason, and do not fail the bench. Nothing is compared against a threshold.
# xt-timeout: 1800
# Helpers net_*: tests/scenarios/lib/net.sh; blk_*: tests/scenarios/lib/blk.sh.
X=xt-bench-xenrs
XIP=169.254.77.39
L=xt-bench-linux
LIP=169.254.77.40
LDIR=/opt/xt-linux
BENCH_REPS=2
PORT=5201
BENCH_NBD_MIB=64
problems=""
xt_disk xvda 64 rw "$XT_DISKS/bench-xenrs-xvda.img" || xt_fail "xt_disk for the xenrs guest failed"
XDISK=$XT_DISK
xt_disk xvda 64 rw "$XT_DISKS/bench-linux-xvda.img" || xt_fail "xt_disk for the Linux domU failed"
LDISK=$XT_DISK

# bench_now: set BENCH_NOW to dom0's wall clock in ms (bash 5 EPOCHREALTIME, no fork).
bench_now() {
	local t=${EPOCHREALTIME/./}
	BENCH_NOW=$((t / 1000))
}
# bench_boot NAME IP T0 LIMIT: poll (nc -z, 1 s connect limit) until IP:PORT accepts a TCP
# connection; set BENCH_MS to the ms from T0 to the first success. False after LIMIT seconds.
bench_boot() {
	local dl
	bench_now
	dl=$((BENCH_NOW + $4 * 1000))
	while [ "$BENCH_NOW" -lt "$dl" ]; do
		if nc -z -w 1 "$2" "$PORT" 2>/dev/null; then
			bench_now
			BENCH_MS=$((BENCH_NOW - $3))
			return 0
		fi
		[ "$(xt_state "$1")" = running ] || return 1
		sleep 0.1
		bench_now
	done
	return 1
}
# bench_iperf NAME IP TAG ARGS...: one `iperf3 -c IP -t 10 --json ARGS`; sets BENCH_MBPS (the
# receiver's goodput in Mbit/s, 1 decimal) and BENCH_RETR (the sender's TCP retransmits, or null
# when the sender did not report them: xenrs's server does not, smoltcp keeps no such counter), or
# returns false with BENCH_WHY.
bench_iperf() {
	local name=$1 ip=$2 tag=$3 js fields err bps
	shift 3
	js=$XT_RUN/bench-$tag.json
	timeout 120 iperf3 -c "$ip" -p "$PORT" -t 10 --connect-timeout 20000 --json "$@" >"$js" 2>"$js.err"
	fields=$(jq -r '[(if has("error") then .error else "-" end), (.end.sum_received.bytes // 0),
		(.end.sum_received.bits_per_second // 0), (.end.sum_sent.retransmits // "null")] |
		map(tostring) | join("|")' "$js" 2>&1)
	IFS='|' read -r err bytes bps BENCH_RETR <<<"$fields"
	if [ "$err" != "-" ] || ! [[ $bytes =~ ^[0-9]+$ ]] || [ "$bytes" -eq 0 ]; then
		BENCH_WHY="$name iperf3 $*: error '$err', received '$bytes' bytes ($(tr '\n' ' ' <"$js.err" | cut -c1-160))"
		return 1
	fi
	BENCH_MBPS=$(awk -v b="$bps" 'BEGIN {printf "%.1f", b / 1e6}')
}

# --- boot times ------------------------------------------------------------------------------
bench_now
t0=$BENCH_NOW
xt_create "$X" cmdline="ip=$XIP/24" vif=default "disk=$XDISK" || xt_fail "xl create of the xenrs guest failed"
bench_now
x_create=$((BENCH_NOW - t0))
bench_boot "$X" "$XIP" "$t0" 120 || xt_fail "the xenrs guest's port $PORT did not answer within 120 s (state $(xt_state "$X")); $(xt_errors "$X")"
x_boot=$BENCH_MS
for f in vmlinuz initrd.cpio; do
	[ -s "$LDIR/$f" ] || problems+="$LDIR/$f is missing (build-dom0.sh builds it); "
done
[ -z "$problems" ] || xt_fail "$problems"
bench_now
t0=$BENCH_NOW
xt_create "$L" kernel="$LDIR/vmlinuz" memory=256 cmdline="console=hvc0 loglevel=4 xt.ip=$LIP/24" \
	vif=default "disk=$LDISK" "cfg=ramdisk = \"$LDIR/initrd.cpio\"" timeout=120 || xt_fail "xl create of the Linux domU failed"
bench_now
l_create=$((BENCH_NOW - t0))
bench_boot "$L" "$LIP" "$t0" 300 || xt_fail "the Linux domU's port $PORT did not answer within 300 s (state $(xt_state "$L")); console: $(tr -d '\r' <"$(xt_console "$L")" 2>/dev/null | tail -n 5 | tr '\n' ' ' | cut -c1-400)"
l_boot=$BENCH_MS
echo "xt| bench: xl create -> port $PORT answering: xenrs ${x_boot} ms (xl create ${x_create} ms), Linux ${l_boot} ms (xl create ${l_create} ms)"

# --- throughput --------------------------------------------------------------------------------
# runs: one JSON object per iperf3 run.
runs=""
declare -A sum cnt
for rep in $(seq 1 "$BENCH_REPS"); do
	for dir in rx tx; do
		args=()
		[ "$dir" = tx ] && args=(-R)
		for g in xenrs linux; do
			if [ "$g" = xenrs ]; then name=$X ip=$XIP; else name=$L ip=$LIP; fi
			if ! bench_iperf "$name" "$ip" "$g-$dir-$rep" "${args[@]}"; then
				problems+="$BENCH_WHY; "
				continue
			fi
			echo "xt| bench: run $rep $g guest-$dir: $BENCH_MBPS Mbit/s (retransmits $BENCH_RETR)"
			runs+="{\"guest\":\"$g\",\"dir\":\"$dir\",\"rep\":$rep,\"mbps\":$BENCH_MBPS,\"retransmits\":$BENCH_RETR},"
			sum[$g-$dir]=$(awk -v a="${sum[$g-$dir]:-0}" -v b="$BENCH_MBPS" 'BEGIN {printf "%.3f", a + b}')
			cnt[$g-$dir]=$((${cnt[$g-$dir]:-0} + 1))
		done
	done
done
net_guest_ok "$X" || problems+="xenrs: $NET_WHY; "
for k in xenrs-rx xenrs-tx linux-rx linux-tx; do
	[ "${cnt[$k]:-0}" -gt 0 ] || problems+="no $k figure; "
done
[ -z "$problems" ] || xt_fail "$problems $(xt_errors "$X")"

# --- disk through NBD (figures only; a guest that cannot serve is reported, not failed) --------
# missing[g]: why guest g has no disk figures ("" = measured).
declare -A missing
if ! xt_console_has "$X" "^xenrs net: services .*nbd:$BLK_NBD_PORT"; then
	xt_console_has "$X" '^xenrs net: services '
	missing[xenrs]="the xenrs guest does not serve NBD (its services line: '${XT_MATCH:-none}')"
fi
if ! nc -z -w 5 "$LIP" "$BLK_NBD_PORT" 2>/dev/null; then
	missing[linux]="the Linux domU's nbdkit does not answer on port $BLK_NBD_PORT (console: $(tr -d '\r' <"$(xt_console "$L")" 2>/dev/null | grep -E 'linux-domu: (nbdkit|no /dev)' | tail -n 1))"
fi
blk_random "$XT_DISKS/bench-src" "$BENCH_NBD_MIB" || xt_fail "cannot write $XT_DISKS/bench-src"
for rep in $(seq 1 "$BENCH_REPS"); do
	for dir in write read; do
		for g in xenrs linux; do
			[ -z "${missing[$g]:-}" ] || continue
			if [ "$g" = xenrs ]; then ip=$XIP; else ip=$LIP; fi
			blk_uri "$ip" xvda
			if [ "$dir" = write ]; then
				blk_nbdcopy 900 --flush "$XT_DISKS/bench-src" "$BLK_URI"
			else
				blk_nbdcopy 900 "$BLK_URI" null:
			fi || {
				missing[$g]="run $rep $dir: $BLK_WHY"
				continue
			}
			mibps=$(awk -v m="$BENCH_NBD_MIB" -v s="$BLK_SECS" 'BEGIN {if (s > 0) printf "%.2f", m / s; else print "null"}')
			echo "xt| bench: run $rep $g nbdcopy $dir: $BENCH_NBD_MIB MiB in ${BLK_SECS}s = $mibps MiB/s"
			runs+="{\"guest\":\"$g\",\"dir\":\"nbd-$dir\",\"rep\":$rep,\"mibps\":$mibps,\"seconds\":$BLK_SECS},"
			sum[$g-nbd-$dir]=$(awk -v a="${sum[$g-nbd-$dir]:-0}" -v b="$mibps" 'BEGIN {printf "%.3f", a + b}')
			cnt[$g-nbd-$dir]=$((${cnt[$g-nbd-$dir]:-0} + 1))
		done
	done
done
rm -f "$XT_DISKS/bench-src"

# --- report ------------------------------------------------------------------------------------
mean() { awk -v s="${sum[$1]}" -v n="${cnt[$1]}" 'BEGIN {printf "%.1f", s / n}'; }
# nbd_mean G DIR: the mean MiB/s of guest G's nbdcopy DIR runs, or null if G's disk figures are missing.
nbd_mean() {
	if [ -n "${missing[$1]:-}" ] || [ "${cnt[$1-nbd-$2]:-0}" = 0 ]; then
		echo null
	else
		awk -v s="${sum[$1-nbd-$2]}" -v n="${cnt[$1-nbd-$2]}" 'BEGIN {printf "%.2f", s / n}'
	fi
}
# json_str S: S as a JSON string, or null if empty.
json_str() {
	if [ -z "$1" ]; then echo null; else jq -Rn --arg s "$1" '$s'; fi
}
# md_fig V: a figure for the table ("missing" for null).
md_fig() { if [ "$1" = null ]; then echo missing; else echo "$1"; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "null"}'; }
xrx=$(mean xenrs-rx)
xtx=$(mean xenrs-tx)
lrx=$(mean linux-rx)
ltx=$(mean linux-tx)
rrx=$(ratio "$xrx" "$lrx")
rtx=$(ratio "$xtx" "$ltx")
rboot=$(ratio "$x_boot" "$l_boot")
xnw=$(nbd_mean xenrs write)
xnr=$(nbd_mean xenrs read)
lnw=$(nbd_mean linux write)
lnr=$(nbd_mean linux read)
rnw=null
rnr=null
[ "$xnw" != null ] && [ "$lnw" != null ] && rnw=$(ratio "$xnw" "$lnw")
[ "$xnr" != null ] && [ "$lnr" != null ] && rnr=$(ratio "$xnr" "$lnr")
xmiss=$(json_str "${missing[xenrs]:-}")
lmiss=$(json_str "${missing[linux]:-}")
when=$(date -u +%Y-%m-%dT%H:%M:%SZ)
xenver=$(xl info 2>/dev/null | awk -F': ' '/^xen_version/ {print $2}')
lxver=$(cat "$LDIR/version" 2>/dev/null)
echo "xt| BENCH-JSON {\"date\":\"$when\",\"xen\":\"$xenver\",\"linux_domu_kernel\":\"${lxver:-unknown}\",\"iperf3_seconds\":10,\"reps\":$BENCH_REPS,\"xenrs\":{\"memory_mib\":32,\"create_ms\":$x_create,\"boot_to_port_ms\":$x_boot,\"rx_mbps\":$xrx,\"tx_mbps\":$xtx,\"nbd_write_mibps\":$xnw,\"nbd_read_mibps\":$xnr,\"nbd_missing\":$xmiss},\"linux\":{\"memory_mib\":256,\"create_ms\":$l_create,\"boot_to_port_ms\":$l_boot,\"rx_mbps\":$lrx,\"tx_mbps\":$ltx,\"nbd_write_mibps\":$lnw,\"nbd_read_mibps\":$lnr,\"nbd_missing\":$lmiss},\"ratio_xenrs_over_linux\":{\"rx\":$rrx,\"tx\":$rtx,\"boot_to_port\":$rboot,\"nbd_write\":$rnw,\"nbd_read\":$rnr},\"nbd_mib\":$BENCH_NBD_MIB,\"disk\":\"64 MiB raw file in dom0 via loop, xvda, read-write\",\"runs\":[${runs%,}]}"
{
	echo "Measured $when in one harness boot (Xen $xenver under QEMU TCG; Linux domU kernel ${lxver:-unknown}); iperf3 -t 10, mean of $BENCH_REPS runs each, interleaved. rx = the guest receives (iperf3 -c), tx = the guest sends (-R); Mbit/s at the receiver. Disk: dom0's nbdcopy writes (--flush) and reads $BENCH_NBD_MIB MiB through each guest's NBD export of its 64 MiB file disk xvda (xenrs: its own server; Linux: nbdkit file /dev/xvda), mean of $BENCH_REPS runs, MiB/s."
	echo ""
	echo "| figure | xenrs (32 MiB) | Linux PVH domU (256 MiB) | xenrs / Linux |"
	echo "|---|---|---|---|"
	echo "| iperf3 rx, Mbit/s | $xrx | $lrx | $rrx |"
	echo "| iperf3 tx (-R), Mbit/s | $xtx | $ltx | $rtx |"
	echo "| xl create -> port $PORT answering, ms | $x_boot | $l_boot | $rboot |"
	echo "| of which \`xl create\` (toolstack, vif and disk hotplug), ms | $x_create | $l_create | |"
	echo "| of which the guest's own boot, ms | $((x_boot - x_create)) | $((l_boot - l_create)) | $(ratio $((x_boot - x_create)) $((l_boot - l_create))) |"
	echo "| nbdcopy write (--flush), MiB/s | $(md_fig "$xnw") | $(md_fig "$lnw") | $(md_fig "$rnw") |"
	echo "| nbdcopy read, MiB/s | $(md_fig "$xnr") | $(md_fig "$lnr") | $(md_fig "$rnr") |"
	for g in xenrs linux; do
		[ -z "${missing[$g]:-}" ] || printf '\nDisk figures missing for %s: %s\n' "$g" "${missing[$g]}"
	done
} | sed 's/^/xt| BENCH-MD /'
nbd_note="nbdcopy MiB/s xenrs/Linux: write $xnw/$lnw (ratio $rnw), read $xnr/$lnr (ratio $rnr)"
for g in xenrs linux; do
	[ -z "${missing[$g]:-}" ] || nbd_note+="; $g disk figures missing: ${missing[$g]}"
done
result PASS "iperf3 Mbit/s xenrs/Linux: rx $xrx/$lrx (ratio $rrx), tx $xtx/$ltx (ratio $rtx); xl create -> port $PORT: $x_boot/$l_boot ms (ratio $rboot); $nbd_note"
xt_destroy "$X"
xt_destroy "$L"
