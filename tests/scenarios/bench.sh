# bench: figures, not assertions. In this one harness boot, a xenrs guest (32 MiB) and a Linux PVH
# domU (256 MiB; Debian's own kernel with iperf3, nbdkit and a busybox TCP echo server in its
# initramfs, /opt/xt-linux from build-dom0.sh, the echo added at run time by
# lib/bench-initrd.py) each get:
#  1. boot: the time from `xl create` to their iperf3 port (5201) answering a TCP connect from dom0;
#  2. throughput: `iperf3 -c -t BENCH_SECS` both ways, interleaved (xenrs rx, Linux rx, xenrs tx,
#     Linux tx) and repeated BENCH_REPS times (at least 5); around every run dom0 samples each
#     domain's CPU time (`xl list`), dom0's counters of the guest's vif (packets both ways, and the
#     vif's interrupts in dom0: the front end's notifications) and, for xenrs, the guest's own
#     stats line (`data/stats-in`/`data/stats-out`: packets, notifications sent, events taken);
#  3. disk through NBD: `nbdcopy --flush` writes BENCH_NBD_MIB MiB of random data to the guest's
#     export xvda and `nbdcopy` reads them back to null:, interleaved and repeated the same way;
#  4. resume: BENCH_RESUME rounds of `xl save` + `xl restore`; the figure is the time from `xl
#     restore` returning to the first full TCP echo reply (port 7, a fresh connection) from dom0;
#  then both are destroyed, and
#  5. smallest memory: the least of BENCH_XMEMS (xenrs) and BENCH_LMEMS (Linux) MiB at which one
#     guest boots, echoes on port 7 and moves data with `iperf3 -t 2`;
#  6. density: min(BENCH_XMAX, what fits) xenrs guests at that memory, `xl create`d together (in
#     parallel), each with one vif and its own address; the time from the first `xl create` until
#     every one has answered a ping; the same for min(BENCH_LMAX, what fits) Linux domUs. "Fits":
#     Xen's free memory before (`xl info free_memory`) divided by the memory one guest took.
# Every figure of 2-4 is given as min / median / max over its runs. The figures go to the console
# as `xt| BENCH-RUN {...}` (one line per run), `xt| BENCH-JSON {...}` (the summary, one line) and
# `xt| BENCH-MD ...` (Markdown); run-suite.sh saves them in
# target/xen-harness/bench-latest{-runs.jsonl,.json,.md}, and `./run.sh bench` copies the table into
# BENCHMARKS.md. PASS means the xenrs and Linux throughput figures were all measured and xenrs did
# everything it was asked; Linux figures that could not be taken (resume, disk, density) are
# reported as missing, with the reason. Nothing is compared against a threshold. The knobs can be
# set with run-suite.sh --env (XT_BENCH_REPS, XT_BENCH_SECS, XT_BENCH_NBD_MIB, XT_BENCH_RESUME,
# XT_BENCH_XMEMS, XT_BENCH_LMEMS, XT_BENCH_XMAX, XT_BENCH_LMAX). Not part of the default suite
# (`# xt-explicit`): `./run.sh bench` or `--only bench` runs it; about 20-30 minutes under TCG.
# xt-explicit
# xt-timeout: 3000
# A guest that triple-faults (the emulator's flake, likelier with 16 started at once) is left out
# of the density figure and named there; the runner counts the flake without re-running the bench:
# xt-triple-faults: counted
# Helpers net_*: tests/scenarios/lib/net.sh; blk_*: tests/scenarios/lib/blk.sh.
X=xt-bench-xenrs
XIP=169.254.77.39
XMEM=32
L=xt-bench-linux
LIP=169.254.77.40
LMEM=256
LDIR=/opt/xt-linux
PORT=5201
ECHO_PORT=7
BENCH_REPS=${XT_BENCH_REPS:-5}
BENCH_SECS=${XT_BENCH_SECS:-5}
BENCH_NBD_MIB=${XT_BENCH_NBD_MIB:-32}
BENCH_RESUME=${XT_BENCH_RESUME:-5}
BENCH_XMEMS=${XT_BENCH_XMEMS:-8 16 24 32}
BENCH_LMEMS=${XT_BENCH_LMEMS:-64 96 128}
BENCH_XMAX=${XT_BENCH_XMAX:-16}
BENCH_LMAX=${XT_BENCH_LMAX:-4}
LIB=/harness/scenarios/lib
RUNS=$XT_RUN/bench-runs.jsonl
: >"$RUNS"
problems=""
# What xenrs did wrong after the figures started coming in: the bench still reports every
# figure it has, then fails (see the end).
late=""
# missing[key]: why a figure group could not be measured (key: linux-resume, xenrs-nbd, ...).
declare -A missing
xt_disk xvda 64 rw "$XT_DISKS/bench-xenrs-xvda.img" || xt_fail "xt_disk for the xenrs guest failed"
XDISK=$XT_DISK
xt_disk xvda 64 rw "$XT_DISKS/bench-linux-xvda.img" || xt_fail "xt_disk for the Linux domU failed"
LDISK=$XT_DISK
for f in vmlinuz initrd.cpio; do
	[ -s "$LDIR/$f" ] || problems+="$LDIR/$f is missing (build-dom0.sh builds it); "
done
[ -z "$problems" ] || xt_fail "$problems"
LINITRD=$XT_RUN/bench-linux-initrd.cpio
python3 "$LIB/bench-initrd.py" "$LDIR/initrd.cpio" "$LINITRD" 2>"$XT_RUN/bench-initrd.err" ||
	xt_fail "bench-initrd.py (the Linux domU's echo service) failed: $(tr '\n' ' ' <"$XT_RUN/bench-initrd.err")"

# --- helpers -----------------------------------------------------------------------------------
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
# bench_linux_create NAME MEM IP [key=value]...: xt_create a Linux PVH domU (the echo initramfs).
bench_linux_create() {
	local name=$1 mem=$2 ip=$3
	shift 3
	xt_create "$name" kernel="$LDIR/vmlinuz" memory="$mem" cmdline="console=hvc0 loglevel=4 xt.ip=$ip/24" \
		"cfg=ramdisk = \"$LINITRD\"" timeout=120 "$@"
}
# bench_linux_tail NAME: the last console lines of a Linux domU, on one line.
bench_linux_tail() {
	tr -d '\r' <"$(xt_console "$1")" 2>/dev/null | tail -n 5 | tr '\n' ' ' | cut -c1-400
}
# bench_iperf NAME IP TAG SECS ARGS...: one `iperf3 -c IP -t SECS --json ARGS`; sets BENCH_MBPS
# (the receiver's goodput in Mbit/s, 1 decimal), BENCH_BYTES (received) and BENCH_RETR (the
# sender's TCP retransmits, or null when the sender did not report them: xenrs's server does not,
# smoltcp keeps no such counter), or returns false with BENCH_WHY.
bench_iperf() {
	local name=$1 ip=$2 tag=$3 secs=$4 js fields err bps
	shift 4
	js=$XT_RUN/bench-$tag.json
	timeout 120 iperf3 -c "$ip" -p "$PORT" -t "$secs" --connect-timeout 20000 --json "$@" >"$js" 2>"$js.err"
	fields=$(jq -r '[(if has("error") then .error else "-" end), (.end.sum_received.bytes // 0),
		(.end.sum_received.bits_per_second // 0), (.end.sum_sent.retransmits // "null")] |
		map(tostring) | join("|")' "$js" 2>&1)
	IFS='|' read -r err BENCH_BYTES bps BENCH_RETR <<<"$fields"
	if [ "$err" != "-" ] || ! [[ $BENCH_BYTES =~ ^[0-9]+$ ]] || [ "$BENCH_BYTES" -eq 0 ]; then
		BENCH_WHY="$name iperf3 $*: error '$err', received '$BENCH_BYTES' bytes ($(tr '\n' ' ' <"$js.err" | cut -c1-160))"
		return 1
	fi
	BENCH_MBPS=$(awk -v b="$bps" 'BEGIN {printf "%.1f", b / 1e6}')
}
# bench_cpu: set BCPU[name] to each domain's CPU seconds (`xl list`'s Time(s), one fork).
declare -A BCPU
bench_cpu() {
	local name _a _b _c _d t
	BCPU=()
	while read -r name _a _b _c _d t; do
		[ "$name" = Name ] && continue
		BCPU[$name]=$t
	done < <(xl list 2>/dev/null)
}
# bench_vif_counters DOMID: set BVIF to "pkts_to_guest pkts_from_guest irqs": dom0's counters of
# the guest's vif (vifDOMID.0: its tx is what the guest received) and the interrupts of its event
# channels in dom0 (the front end's notifications). Bash builtins only.
bench_vif_counters() {
	local d=/sys/class/net/vif$1.0/statistics to=0 from=0 irq=0 line w n
	[ -r "$d/tx_packets" ] && read -r to <"$d/tx_packets"
	[ -r "$d/rx_packets" ] && read -r from <"$d/rx_packets"
	while IFS= read -r line; do
		[[ $line == *" vif$1.0"* ]] || continue
		n=0
		for w in ${line#*:}; do
			[[ $w =~ ^[0-9]+$ ]] || break
			n=$((n + w))
		done
		irq=$((irq + n))
	done </proc/interrupts
	BVIF="$to $from $irq"
}
# bench_guest_stats NAME TAG: ask the xenrs guest for its counters (data/stats-in = TAG, answer in
# data/stats-out, 5 s limit); set BSTAT to "rx_pkts tx_pkts notifies events" or "" (false).
bench_guest_stats() {
	local id dl v
	BSTAT=""
	xt_id "$1"
	xenstore-write "/local/domain/$XT_ID/data/stats-in" "$2" 2>/dev/null || return 1
	bench_now
	dl=$((BENCH_NOW + 5000))
	while [ "$BENCH_NOW" -lt "$dl" ]; do
		v=$(xenstore-read "/local/domain/$XT_ID/data/stats-out" 2>/dev/null)
		if [[ $v == "$2 "* ]]; then
			if [[ $v =~ rx\ ([0-9]+)\ pkts.*\ tx\ ([0-9]+)\ pkts.*\ ([0-9]+)\ notifies.*\ ([0-9]+)\ events ]]; then
				BSTAT="${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]} ${BASH_REMATCH[4]}"
				return 0
			fi
			return 1
		fi
		sleep 0.1
		bench_now
	done
	return 1
}
# bench_sample G TAG: set S_<field> for guest G (xenrs|linux) now: CPU seconds of dom0 and the
# guest, dom0's vif counters, and (xenrs) the guest's own counters.
bench_sample() {
	local g=$1 name id
	if [ "$g" = xenrs ]; then name=$X; else name=$L; fi
	xt_id "$name"
	id=$XT_ID
	bench_cpu
	S_CPU0=${BCPU[Domain-0]:-0}
	S_CPUG=${BCPU[$name]:-0}
	bench_vif_counters "$id"
	read -r S_VTO S_VFROM S_VIRQ <<<"$BVIF"
	S_GRX=null S_GTX=null S_GNOT=null S_GEV=null
	if [ "$g" = xenrs ] && bench_guest_stats "$name" "$2"; then
		read -r S_GRX S_GTX S_GNOT S_GEV <<<"$BSTAT"
	fi
}
# bench_delta A B: B - A, or null when either is null; sub-second values keep one decimal.
# Integers in bash; `xl list`'s seconds (one decimal) as tenths, so no fork either way.
bench_delta() {
	local a=$1 b=$2
	if [ "$a" = null ] || [ "$b" = null ] || [ -z "$a" ] || [ -z "$b" ]; then
		echo null
	elif [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]]; then
		echo $((b - a))
	elif [[ $a =~ ^([0-9]+)\.([0-9])$ && $b =~ ^([0-9]+)\.([0-9])$ ]]; then
		a=${a/./}
		b=${b/./}
		a=$((10#$b - 10#$a))
		if [ "$a" -ge 0 ]; then
			printf '%d.%d\n' $((a / 10)) $((a % 10))
		else
			awk -v d="$a" 'BEGIN {printf "%.1f", d / 10}'
		fi
	else
		awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f", b - a}'
	fi
}
# bench_record G DIR REP FIGURE-JSON: append one run (the figure, and the deltas between the
# samples P_* (before) and S_* (after)) to $RUNS.
bench_record() {
	printf '{"guest":"%s","dir":"%s","rep":%s,%s,"cpu_dom0_s":%s,"cpu_guest_s":%s,"dom0_vif_pkts_to_guest":%s,"dom0_vif_pkts_from_guest":%s,"dom0_vif_irqs":%s,"guest_rx_pkts":%s,"guest_tx_pkts":%s,"guest_notifies":%s,"guest_events":%s}\n' \
		"$1" "$2" "$3" "$4" "$(bench_delta "$P_CPU0" "$S_CPU0")" "$(bench_delta "$P_CPUG" "$S_CPUG")" \
		"$(bench_delta "$P_VTO" "$S_VTO")" "$(bench_delta "$P_VFROM" "$S_VFROM")" "$(bench_delta "$P_VIRQ" "$S_VIRQ")" \
		"$(bench_delta "$P_GRX" "$S_GRX")" "$(bench_delta "$P_GTX" "$S_GTX")" \
		"$(bench_delta "$P_GNOT" "$S_GNOT")" "$(bench_delta "$P_GEV" "$S_GEV")" >>"$RUNS"
}
bench_keep() {
	P_CPU0=$S_CPU0 P_CPUG=$S_CPUG P_VTO=$S_VTO P_VFROM=$S_VFROM P_VIRQ=$S_VIRQ
	P_GRX=$S_GRX P_GTX=$S_GTX P_GNOT=$S_GNOT P_GEV=$S_GEV
}

# --- 1. boot times ---------------------------------------------------------------------------
bench_now
t0=$BENCH_NOW
xt_create "$X" memory=$XMEM cmdline="ip=$XIP/24" vif=default "disk=$XDISK" || xt_fail "xl create of the xenrs guest failed"
bench_now
x_create=$((BENCH_NOW - t0))
bench_boot "$X" "$XIP" "$t0" 120 || xt_fail "the xenrs guest's port $PORT did not answer within 120 s (state $(xt_state "$X")); $(xt_errors "$X")"
x_boot=$BENCH_MS
bench_now
t0=$BENCH_NOW
bench_linux_create "$L" $LMEM "$LIP" vif=default "disk=$LDISK" || xt_fail "xl create of the Linux domU failed"
bench_now
l_create=$((BENCH_NOW - t0))
bench_boot "$L" "$LIP" "$t0" 300 || xt_fail "the Linux domU's port $PORT did not answer within 300 s (state $(xt_state "$L")); console: $(bench_linux_tail "$L")"
l_boot=$BENCH_MS
echo "xt| bench: xl create -> port $PORT answering: xenrs ${x_boot} ms (xl create ${x_create} ms), Linux ${l_boot} ms (xl create ${l_create} ms)"
bench_guest_stats "$X" boot || xt_fail "the xenrs guest did not answer data/stats-in within 5 s (data/stats-out '$(xenstore-read "/local/domain/$(xt_domid "$X")/data/stats-out" 2>&1)'); $(xt_errors "$X")"

# --- 2. throughput -----------------------------------------------------------------------------
for rep in $(seq 1 "$BENCH_REPS"); do
	for dir in rx tx; do
		args=()
		[ "$dir" = tx ] && args=(-R)
		for g in xenrs linux; do
			if [ "$g" = xenrs ]; then name=$X ip=$XIP; else name=$L ip=$LIP; fi
			bench_sample "$g" "$g-$dir-$rep-a"
			bench_keep
			if ! bench_iperf "$name" "$ip" "$g-$dir-$rep" "$BENCH_SECS" "${args[@]}"; then
				problems+="$BENCH_WHY; "
				continue
			fi
			bench_sample "$g" "$g-$dir-$rep-b"
			echo "xt| bench: run $rep $g guest-$dir: $BENCH_MBPS Mbit/s (retransmits $BENCH_RETR; cpu dom0 $(bench_delta "$P_CPU0" "$S_CPU0") s, guest $(bench_delta "$P_CPUG" "$S_CPUG") s)"
			bench_record "$g" "$dir" "$rep" "\"mbps\":$BENCH_MBPS,\"bytes\":$BENCH_BYTES,\"retransmits\":$BENCH_RETR"
		done
	done
done
net_guest_ok "$X" || problems+="xenrs: $NET_WHY; "
[ -z "$problems" ] || xt_fail "$problems $(xt_errors "$X")"

# --- 3. disk through NBD (a guest that cannot serve is reported, not failed) -----------------
if ! xt_console_has "$X" "^xenrs net: services .*nbd:$BLK_NBD_PORT"; then
	xt_console_has "$X" '^xenrs net: services '
	missing[xenrs-nbd]="the xenrs guest does not serve NBD (its services line: '${XT_MATCH:-none}')"
fi
if ! nc -z -w 5 "$LIP" "$BLK_NBD_PORT" 2>/dev/null; then
	missing[linux-nbd]="the Linux domU's nbdkit does not answer on port $BLK_NBD_PORT (console: $(tr -d '\r' <"$(xt_console "$L")" 2>/dev/null | grep -E 'linux-domu: (nbdkit|no /dev)' | tail -n 1))"
fi
blk_random "$XT_DISKS/bench-src" "$BENCH_NBD_MIB" || xt_fail "cannot write $XT_DISKS/bench-src"
for rep in $(seq 1 "$BENCH_REPS"); do
	for dir in write read; do
		for g in xenrs linux; do
			[ -z "${missing[$g-nbd]:-}" ] || continue
			if [ "$g" = xenrs ]; then ip=$XIP; else ip=$LIP; fi
			blk_uri "$ip" xvda
			bench_sample "$g" "$g-nbd-$dir-$rep-a"
			bench_keep
			if [ "$dir" = write ]; then
				blk_nbdcopy 120 --flush "$XT_DISKS/bench-src" "$BLK_URI"
			else
				blk_nbdcopy 120 "$BLK_URI" null:
			fi || {
				missing[$g-nbd]="run $rep $dir: $BLK_WHY"
				continue
			}
			bench_sample "$g" "$g-nbd-$dir-$rep-b"
			mibps=$(awk -v m="$BENCH_NBD_MIB" -v s="$BLK_SECS" 'BEGIN {if (s > 0) printf "%.2f", m / s; else print "null"}')
			echo "xt| bench: run $rep $g nbdcopy $dir: $BENCH_NBD_MIB MiB in ${BLK_SECS}s = $mibps MiB/s"
			bench_record "$g" "nbd-$dir" "$rep" "\"mibps\":$mibps,\"seconds\":$BLK_SECS"
		done
	done
done
rm -f "$XT_DISKS/bench-src"

# --- 4. resume: xl restore returned -> first TCP echo reply -------------------------------------
for rep in $(seq 1 "$BENCH_RESUME"); do
	for g in xenrs linux; do
		[ -z "${missing[$g-resume]:-}" ] || continue
		if [ "$g" = xenrs ]; then name=$X ip=$XIP; else name=$L ip=$LIP; fi
		f=$XT_RUN/bench-$g.save
		go=$XT_RUN/bench-echo-go
		rm -f "$go"
		bench_now
		t0=$BENCH_NOW
		if ! timeout 300 xl save "$name" "$f" >"$XT_RUN/bench-save.log" 2>&1; then
			missing[$g-resume]="round $rep: xl save failed: $(tail -n 3 "$XT_RUN/bench-save.log" | tr '\n' ' ')"
			continue
		fi
		bench_now
		save_ms=$((BENCH_NOW - t0))
		python3 "$LIB/bench-echo-poll.py" "$ip" "$ECHO_PORT" 120 "$go" >"$XT_RUN/bench-poll.out" 2>&1 &
		poller=$!
		sleep 1 # the interpreter's start-up, before the clock matters
		bench_now
		t0=$BENCH_NOW
		: >"$go"
		if ! timeout 300 xl restore "$f" >"$XT_RUN/bench-restore.log" 2>&1; then
			kill "$poller" 2>/dev/null
			missing[$g-resume]="round $rep: xl restore failed: $(tail -n 3 "$XT_RUN/bench-restore.log" | tr '\n' ' ')"
			continue
		fi
		bench_now
		t1=$BENCH_NOW
		rm -f "$f"
		xt_track "$name"
		wait "$poller"
		read -r st at attempts <"$XT_RUN/bench-poll.out"
		if [ "$st" != ok ]; then
			missing[$g-resume]="round $rep: no echo on port $ECHO_PORT within 120 s of xl restore ($(cat "$XT_RUN/bench-poll.out"))"
			continue
		fi
		echo "xt| bench: resume $rep $g: xl save ${save_ms} ms, xl restore $((t1 - t0)) ms, then the first echo after $((at - t1)) ms ($attempts tries)"
		printf '{"guest":"%s","dir":"resume","rep":%s,"save_ms":%s,"restore_ms":%s,"restore_to_echo_ms":%s}\n' \
			"$g" "$rep" "$save_ms" "$((t1 - t0))" "$((at - t1))" >>"$RUNS"
	done
done
[ -z "${missing[xenrs-resume]:-}" ] || late+="xenrs resume: ${missing[xenrs-resume]}; $(xt_errors "$X"); "
resumed=$(xt_console_count "$X" '^xenrs resumed n=[0-9]+ mode=new-domain')
[ -n "${missing[xenrs-resume]:-}" ] || [ "$resumed" = "$BENCH_RESUME" ] ||
	late+="xenrs printed $resumed 'xenrs resumed ... mode=new-domain' lines for $BENCH_RESUME restores; "
xt_destroy "$X"
xt_destroy "$L"

# --- 5. smallest memory ----------------------------------------------------------------------
# bench_probe G MEM: one guest G at MEM MiB: port 5201 within the limit, an echo, iperf3 -t 2.
# Sets BENCH_WHY on failure. A guest found too small is expected to fail (a xenrs guest below
# the services' budget says so on its console, or worse): its console's error lines go into
# BENCH_WHY, reported with the figure, and it is taken off this attempt's guest list, so that
# they do not fail the bench; a guest that passes stays on it, so its error lines still count.
bench_probe() {
	local g=$1 mem=$2 name ip=169.254.77.41 lim=30
	name=xt-bench-min-$g-$mem
	bench_now
	t0=$BENCH_NOW
	if [ "$g" = xenrs ]; then
		xt_create "$name" memory="$mem" cmdline="ip=$ip/24" vif=default
	else
		lim=150
		bench_linux_create "$name" "$mem" "$ip" vif=default
	fi || {
		BENCH_WHY="xl create failed: $(tail -n 3 "$XT_RUN/$name.create.log" 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
		bench_probe_drop "$name"
		return 1
	}
	if ! bench_boot "$name" "$ip" "$t0" "$lim"; then
		BENCH_WHY="port $PORT did not answer within $lim s (state $(xt_state "$name"))"
	elif ! python3 "$LIB/bench-echo-poll.py" "$ip" "$ECHO_PORT" 10 >"$XT_RUN/bench-poll.out" 2>&1; then
		BENCH_WHY="no echo: $(cat "$XT_RUN/bench-poll.out")"
	elif ! bench_iperf "$name" "$ip" "min-$g-$mem" 2; then
		:
	else
		xt_destroy "$name"
		return 0
	fi
	bench_probe_drop "$name"
	return 1
}
# bench_probe_drop NAME: add NAME's error lines (xenrs) or console tail (Linux) to BENCH_WHY,
# destroy it and take it off the attempt's guest list (see bench_probe).
bench_probe_drop() {
	case "$1" in
	xt-bench-min-xenrs-*) BENCH_WHY+="; console errors: $(xt_errors "$1")" ;;
	*) BENCH_WHY+="; console: $(bench_linux_tail "$1")" ;;
	esac
	xt_destroy "$1"
	grep -v -x -F "$1" "$XT_RUN/guests" >"$XT_RUN/guests.new"
	mv "$XT_RUN/guests.new" "$XT_RUN/guests"
}
declare -A minmem
for g in xenrs linux; do
	if [ "$g" = xenrs ]; then mems=$BENCH_XMEMS; else mems=$BENCH_LMEMS; fi
	tried=""
	for m in $mems; do
		if bench_probe "$g" "$m"; then
			minmem[$g]=$m
			echo "xt| bench: smallest memory: $g works at $m MiB (echo, iperf3 $BENCH_MBPS Mbit/s)"
			break
		fi
		echo "xt| bench: smallest memory: $g at $m MiB: $BENCH_WHY"
		tried+="$m MiB: $BENCH_WHY; "
	done
	[ -n "${minmem[$g]:-}" ] || missing[$g-minmem]="none of $mems MiB worked: $tried"
done
# The main xenrs guest runs at $XMEM MiB: if that is among the sizes tried, one must work.
[ -n "${minmem[xenrs]:-}" ] || [[ " $BENCH_XMEMS " != *" $XMEM "* ]] || late+="xenrs smallest memory: ${missing[xenrs-minmem]}; "

# --- 6. density --------------------------------------------------------------------------------
# bench_density G MEM MAX FIRST_OCTET: start min(MAX, fit) guests together, time until every one
# answers a ping. Appends a "density" run to $RUNS; sets BENCH_WHY on failure.
bench_density() {
	local g=$1 mem=$2 max=$3 base=$4 free0 free1 n i name pids=() t0 tc t_all ok left per fit ip asked
	local -a at
	free0=$(xl info free_memory 2>/dev/null)
	[[ $free0 =~ ^[0-9]+$ ]] || {
		BENCH_WHY="xl info free_memory: '$free0'"
		return 1
	}
	# A first estimate of what fits (memory + ~2 MiB of Xen's own per guest); refined below.
	n=$((free0 / (mem + 2)))
	[ "$n" -le "$max" ] || n=$max
	[ "$n" -ge 1 ] || {
		BENCH_WHY="$free0 MiB free: not one guest of $mem MiB fits"
		return 1
	}
	bench_now
	t0=$BENCH_NOW
	for i in $(seq 1 "$n"); do
		name=xt-bench-d-$g-$i
		ip=169.254.77.$((base + i))
		if [ "$g" = xenrs ]; then
			xt_create "$name" memory="$mem" cmdline="ip=$ip/24" vif="$(xt_vif_default $((base + i)))" timeout=300 >"$XT_RUN/bench-d-$g-$i.log" 2>&1 &
		else
			bench_linux_create "$name" "$mem" "$ip" vif="$(xt_vif_default $((base + i)))" timeout=300 >"$XT_RUN/bench-d-$g-$i.log" 2>&1 &
		fi
		pids+=($!)
	done
	# A create that fails (Xen out of memory, a hotplug script timing out among
	# many) ends the count: the density is what was created and answers; the
	# first failure's reason is printed and kept with the figure.
	ok=0
	local -a up
	local why=""
	for i in $(seq 1 "$n"); do
		if wait "${pids[i - 1]}"; then
			up[i]=1
			ok=$((ok + 1))
		else
			up[i]=""
			[ -n "$why" ] || why="xt-bench-d-$g-$i: $(grep -v '^xt: bench: created' "$XT_RUN/bench-d-$g-$i.log" 2>/dev/null | tail -n 4 | tr '\n"' ' \047')"
		fi
	done
	bench_now
	tc=$((BENCH_NOW - t0))
	[ "$ok" -gt 0 ] || {
		BENCH_WHY="none of $n xl create succeeded: $why"
		return 1
	}
	asked=$n
	if [ "$ok" != "$n" ]; then
		echo "xt| bench: density $g: $ok of $n xl create succeeded; the first failure: $why"
	fi
	free1=$(xl info free_memory 2>/dev/null)
	left=$ok
	for i in $(seq 1 "$n"); do if [ -n "${up[i]}" ]; then at[i]=""; else at[i]=-; fi; done
	# A guest that stopped before answering (the emulator's triple fault at a guest's start,
	# docs/TESTING-XEN.md, is likelier with many starting at once) is not waited for: it is
	# counted as stopped and left out of the figure.
	local stopped=0 stopped_names="" round=0
	while [ "$left" -gt 0 ] && [ $((BENCH_NOW - t0)) -lt 600000 ]; do
		round=$((round + 1))
		if [ $((round % 5)) = 0 ]; then
			for i in $(seq 1 "$n"); do
				[ -z "${at[i]}" ] || continue
				case "$(xt_state "xt-bench-d-$g-$i")" in
				running) ;;
				*)
					at[i]=-
					left=$((left - 1))
					stopped=$((stopped + 1))
					stopped_names+="xt-bench-d-$g-$i "
					;;
				esac
			done
		fi
		for i in $(seq 1 "$n"); do
			[ -z "${at[i]}" ] || continue
			ping -n -c 1 -W 1 "169.254.77.$((base + i))" >/dev/null 2>&1 && echo "$i $EPOCHREALTIME" >>"$XT_RUN/bench-density-$g" &
		done
		wait
		while read -r i t; do
			[ -z "${at[i]}" ] || continue
			t=${t/./}
			at[i]=$((t / 1000 - t0))
			left=$((left - 1))
		done <"$XT_RUN/bench-density-$g" 2>/dev/null
		bench_now
	done
	rm -f "$XT_RUN/bench-density-$g"
	for i in $(seq 1 "$n"); do xt_destroy "xt-bench-d-$g-$i" >/dev/null & done
	wait
	[ "$left" = 0 ] || {
		BENCH_WHY="$left of $ok guests did not answer a ping within 600 s"
		return 1
	}
	local created=$ok
	if [ "$stopped" -gt 0 ]; then
		why+="${why:+; }$stopped stopped before answering ($stopped_names; triple faults in xl dmesg: $(xt_triple_faults))"
		echo "xt| bench: density $g: $stopped guests stopped before answering: $stopped_names"
		ok=$((ok - stopped))
		[ "$ok" -gt 0 ] || {
			BENCH_WHY="every guest stopped before answering: $why"
			return 1
		}
	fi
	local -a pinged=()
	t_all=0
	for i in $(seq 1 "$n"); do
		[ "${at[i]}" != - ] || continue
		pinged+=("${at[i]}")
		[ "${at[i]}" -le "$t_all" ] || t_all=${at[i]}
	done
	n=$ok
	per=$(awk -v a="$free0" -v b="$free1" -v n="$created" 'BEGIN {printf "%.1f", (a - b) / n}')
	fit=$(awk -v a="$free0" -v p="$per" 'BEGIN {if (p > 0) printf "%d", a / p; else print "null"}')
	echo "xt| bench: density $g: $n guests of $mem MiB created together ($asked asked) in $tc ms, all answering ping after $t_all ms; $per MiB each, $free0 MiB were free: $fit would fit"
	printf '{"guest":"%s","dir":"density","memory_mib":%s,"guests":%s,"asked":%s,"create_error":"%s","create_all_ms":%s,"all_ping_ms":%s,"first_ping_ms":%s,"free_mib_before":%s,"mib_per_guest":%s,"fit":%s,"ping_ms":[%s]}\n' \
		"$g" "$mem" "$n" "$asked" "${why//\\/\\\\}" "$tc" "$t_all" "$(printf '%s\n' "${pinged[@]}" | sort -n | head -n 1)" "$free0" "$per" "$fit" \
		"$(
			IFS=,
			echo "${pinged[*]}"
		)" >>"$RUNS"
}
if [ -z "${minmem[xenrs]:-}" ]; then
	missing[xenrs-density]="no working memory size for xenrs among $BENCH_XMEMS MiB (see smallest memory)"
elif ! bench_density xenrs "${minmem[xenrs]}" "$BENCH_XMAX" 100; then
	missing[xenrs-density]="at ${minmem[xenrs]} MiB: $BENCH_WHY"
	late+="xenrs density at ${minmem[xenrs]} MiB: $BENCH_WHY; $(xt_unexpected_errors); "
fi
if [ -z "${minmem[linux]:-}" ]; then
	missing[linux-density]="no working memory size for Linux (see smallest memory)"
elif ! bench_density linux "${minmem[linux]}" "$BENCH_LMAX" 200; then
	missing[linux-density]="at ${minmem[linux]} MiB: $BENCH_WHY"
fi

# --- report ------------------------------------------------------------------------------------
when=$(date -u +%Y-%m-%dT%H:%M:%SZ)
xenver=$(xl info 2>/dev/null | awk -F': ' '/^xen_version/ {print $2}')
lxver=$(cat "$LDIR/version" 2>/dev/null)
load=$(cut -d' ' -f1-3 /proc/loadavg)
miss_json=$(for k in "${!missing[@]}"; do jq -cn --arg k "$k" --arg v "${missing[$k]}" '{($k): $v}'; done | jq -cs 'add // {}')
# The summary: min/median/max of every figure, and the medians of the per-run counters.
summary=$(jq -cs --arg date "$when" --arg xen "$xenver" --arg lx "${lxver:-unknown}" --arg load "$load" \
	--argjson secs "$BENCH_SECS" --argjson reps "$BENCH_REPS" --argjson nbd "$BENCH_NBD_MIB" \
	--argjson xmem "$XMEM" --argjson lmem "$LMEM" --argjson missing "$miss_json" \
	--argjson boot "{\"xenrs\":{\"create_ms\":$x_create,\"boot_to_port_ms\":$x_boot},\"linux\":{\"create_ms\":$l_create,\"boot_to_port_ms\":$l_boot}}" \
	--argjson minmem "{\"xenrs\":${minmem[xenrs]:-null},\"linux\":${minmem[linux]:-null}}" '
	def stats: map(select(. != null)) | sort | length as $n |
		if $n == 0 then null else {min: .[0], median: (if $n % 2 == 1 then .[($n - 1) / 2] else (.[$n / 2 - 1] + .[$n / 2]) / 2 end), max: .[$n - 1], n: $n} end;
	def fig($g; $d; $f): [.[] | select(.guest == $g and .dir == $d) | .[$f]] | stats;
	def per_run($g; $d): [.[] | select(.guest == $g and .dir == $d)] as $r |
		if ($r | length) == 0 then null else
		reduce ("cpu_dom0_s", "cpu_guest_s", "dom0_vif_pkts_to_guest", "dom0_vif_pkts_from_guest", "dom0_vif_irqs",
			"guest_rx_pkts", "guest_tx_pkts", "guest_notifies", "guest_events") as $k ({}; .[$k] = ([$r[] | .[$k]] | stats | if . == null then null else .median end)) end;
	. as $runs |
	{date: $date, xen: $xen, linux_domu_kernel: $lx, load: $load, iperf3_seconds: $secs, reps: $reps, nbd_mib: $nbd,
	 memory_mib: {xenrs: $xmem, linux: $lmem}, boot: $boot, smallest_memory_mib: $minmem, missing: $missing,
	 figures: (reduce ("xenrs", "linux") as $g ({}; .[$g] = {
		rx_mbps: ($runs | fig($g; "rx"; "mbps")), tx_mbps: ($runs | fig($g; "tx"; "mbps")),
		nbd_write_mibps: ($runs | fig($g; "nbd-write"; "mibps")), nbd_read_mibps: ($runs | fig($g; "nbd-read"; "mibps")),
		restore_to_echo_ms: ($runs | fig($g; "resume"; "restore_to_echo_ms")), restore_ms: ($runs | fig($g; "resume"; "restore_ms")),
		save_ms: ($runs | fig($g; "resume"; "save_ms")),
		density: ([$runs[] | select(.guest == $g and .dir == "density")] | first),
		per_run_medians: {rx: ($runs | per_run($g; "rx")), tx: ($runs | per_run($g; "tx")),
			nbd_write: ($runs | per_run($g; "nbd-write")), nbd_read: ($runs | per_run($g; "nbd-read"))}})),
	 runs: ($runs | length)}' "$RUNS") || xt_fail "jq could not summarise $RUNS: $(head -c 300 "$RUNS")"
# Every run on a line of its own (run-suite.sh keeps them in bench-latest-runs.jsonl), then the summary.
while IFS= read -r line; do echo "xt| BENCH-RUN $line"; done <"$RUNS"
echo "xt| BENCH-JSON $summary"
# The Markdown tables, from the summary.
jq -r '
	def f: if . == null then "missing" elif (. | type) == "number" then (. * 10 | round / 10 | tostring) else tostring end;
	def mmm: if . == null then "missing" else "\(.min | f) / **\(.median | f)** / \(.max | f)" end;
	def ratio($a; $b): if $a == null or $b == null or $b.median == 0 then "" else (($a.median / $b.median) * 100 | round / 100 | tostring) end;
	def row($name; $k): "| \($name) | \(.figures.xenrs[$k] | mmm) | \(.figures.linux[$k] | mmm) | \(ratio(.figures.xenrs[$k]; .figures.linux[$k])) |";
	def dens($g): .figures[$g].density | if . == null then "missing" else "\(.guests) × \(.memory_mib) MiB\(if (.asked // .guests) > .guests then " (of \(.asked) asked; the others: \(.create_error))" else "" end): all answer ping after \(.all_ping_ms) ms (first \(.first_ping_ms)); `xl create` of all \(.create_all_ms) ms; \(.mib_per_guest) MiB of Xen memory each, so \(.fit) fit in the \(.free_mib_before) MiB free" end;
	def pr($g; $d; $k): .figures[$g].per_run_medians[$d] | if . == null then "missing" else (.[$k] | f) end;
	"Measured \(.date) in one harness boot (Xen \(.xen) under QEMU TCG; Linux domU kernel \(.linux_domu_kernel)); dom0 load average at the end \(.load). Figures are min / **median** / max of \(.reps) runs, interleaved xenrs, Linux, xenrs, Linux. iperf3 -t \(.iperf3_seconds): rx = the guest receives (dom0 runs iperf3 -c), tx = the guest sends (-R); Mbit/s at the receiver. Disk: nbdcopy of \(.nbd_mib) MiB through each guest'"'"'s NBD export of its 64 MiB file disk. Resume: `xl save` + `xl restore`, then a fresh TCP connection to port 7 every 20 ms until one echoes.",
	"",
	"| figure | xenrs (\(.memory_mib.xenrs) MiB) | Linux PVH domU (\(.memory_mib.linux) MiB) | xenrs / Linux (medians) |",
	"|---|---|---|---|",
	row("iperf3 rx, Mbit/s"; "rx_mbps"),
	row("iperf3 tx (-R), Mbit/s"; "tx_mbps"),
	row("nbdcopy write (--flush), MiB/s"; "nbd_write_mibps"),
	row("nbdcopy read, MiB/s"; "nbd_read_mibps"),
	row("resume: `xl restore` returned -> first TCP echo, ms"; "restore_to_echo_ms"),
	row("`xl restore` itself, ms"; "restore_ms"),
	row("`xl save`, ms"; "save_ms"),
	"| xl create -> port 5201 answering, ms (one boot) | \(.boot.xenrs.boot_to_port_ms) (xl create \(.boot.xenrs.create_ms)) | \(.boot.linux.boot_to_port_ms) (xl create \(.boot.linux.create_ms)) | |",
	"| smallest memory that echoes and runs iperf3, MiB (of those tried) | \(.smallest_memory_mib.xenrs | f) | \(.smallest_memory_mib.linux | f) | |",
	"| density: guests started together | \(dens("xenrs")) | \(dens("linux")) | |",
	"",
	"Per run, medians (CPU seconds from `xl list`; packets and interrupts from dom0'"'"'s counters of the guest'"'"'s vif; xenrs'"'"'s own counters from its stats line: notifications it sent to dom0, events it took):",
	"",
	"| per run (median) | xenrs rx | Linux rx | xenrs tx | Linux tx |",
	"|---|---|---|---|---|",
	"| dom0 CPU, s | \(pr("xenrs"; "rx"; "cpu_dom0_s")) | \(pr("linux"; "rx"; "cpu_dom0_s")) | \(pr("xenrs"; "tx"; "cpu_dom0_s")) | \(pr("linux"; "tx"; "cpu_dom0_s")) |",
	"| guest CPU, s | \(pr("xenrs"; "rx"; "cpu_guest_s")) | \(pr("linux"; "rx"; "cpu_guest_s")) | \(pr("xenrs"; "tx"; "cpu_guest_s")) | \(pr("linux"; "tx"; "cpu_guest_s")) |",
	"| packets dom0 -> guest (vif) | \(pr("xenrs"; "rx"; "dom0_vif_pkts_to_guest")) | \(pr("linux"; "rx"; "dom0_vif_pkts_to_guest")) | \(pr("xenrs"; "tx"; "dom0_vif_pkts_to_guest")) | \(pr("linux"; "tx"; "dom0_vif_pkts_to_guest")) |",
	"| packets guest -> dom0 (vif) | \(pr("xenrs"; "rx"; "dom0_vif_pkts_from_guest")) | \(pr("linux"; "rx"; "dom0_vif_pkts_from_guest")) | \(pr("xenrs"; "tx"; "dom0_vif_pkts_from_guest")) | \(pr("linux"; "tx"; "dom0_vif_pkts_from_guest")) |",
	"| vif interrupts in dom0 (front-end notifications) | \(pr("xenrs"; "rx"; "dom0_vif_irqs")) | \(pr("linux"; "rx"; "dom0_vif_irqs")) | \(pr("xenrs"; "tx"; "dom0_vif_irqs")) | \(pr("linux"; "tx"; "dom0_vif_irqs")) |",
	"| guest stats: rx / tx packets | \(pr("xenrs"; "rx"; "guest_rx_pkts")) / \(pr("xenrs"; "rx"; "guest_tx_pkts")) | | \(pr("xenrs"; "tx"; "guest_rx_pkts")) / \(pr("xenrs"; "tx"; "guest_tx_pkts")) | |",
	"| guest stats: notifications sent / events taken | \(pr("xenrs"; "rx"; "guest_notifies")) / \(pr("xenrs"; "rx"; "guest_events")) | | \(pr("xenrs"; "tx"; "guest_notifies")) / \(pr("xenrs"; "tx"; "guest_events")) | |",
	(.missing | to_entries[] | "", "Missing: \(.key): \(.value)")
' <<<"$summary" | sed 's/^/xt| BENCH-MD /'
x=$(jq -r '.figures | "rx \(.xenrs.rx_mbps.median)/\(.linux.rx_mbps.median), tx \(.xenrs.tx_mbps.median)/\(.linux.tx_mbps.median) Mbit/s; resume->echo \(.xenrs.restore_to_echo_ms.median // "missing")/\(.linux.restore_to_echo_ms.median // "missing") ms; density \(.xenrs.density.guests // "-") xenrs in \(.xenrs.density.all_ping_ms // "-") ms, \(.linux.density.guests // "-") Linux in \(.linux.density.all_ping_ms // "-") ms"' <<<"$summary")
if [ -n "$late" ]; then
	result FAIL "$late(figures: $x)"
	exit 0
fi
result PASS "medians xenrs/Linux: $x; smallest memory ${minmem[xenrs]}/${minmem[linux]:-missing} MiB; missing: ${!missing[*]}"
