# shellcheck shell=bash disable=SC2034 # the BLK_* results are for the scenarios
# Shared helpers of the disk scenarios (nbd-info, nbd-copy, nbd-readonly, nbd-save-restore,
# nbd-migrate, nbd-bad-client) and of bench's disk figures. The runner sources every
# tests/scenarios/lib/*.sh after lib.sh and before each scenario. Disks are files in dom0
# (xt_disk, lib.sh), attached by the quick hotplug script xt-block. They rely on the guest's
# console lines (docs/CONSOLE.md, docs/BLK.md):
#   xenrs xenbus: device vbd/<id> backend=... backend-id=<n> state=<s>     (enumeration)
#   xenrs blk: <vdev> vbd/<id> sectors=<n> sector-size=<n> ro=<0|1> backend=<domid> features=<list|none>
#   xenrs net: services tcp-echo:7 udp-echo:7 iperf3:5201 nbd:10809
#   xenrs nbd: export <vdev> size=<bytes> ro=<0|1>
#   xenrs blk error: <vdev>: ...   /   xenrs nbd error: ...
# and on the guest's NBD server (TCP 10809, fixed newstyle, exports named after the disks).
BLK_NBD_PORT=10809
# The raw NBD client (tests/scenarios/lib/nbd-client.py), for what stock clients refuse to send.
BLK_PY=${BLK_PY:-/harness/scenarios/lib/nbd-client.py}
declare -gA BLK_LINE NBD_LINE BLK_FILE BLK_RO
BLK_GUEST=()
BLK_DISKS=""
BLK_WHY=""

# blk_uri IP VDEV: set BLK_URI to the export's NBD URI.
blk_uri() { BLK_URI="nbd://$1:$BLK_NBD_PORT/$2"; }

# _blk_spec_field SPEC KEY: print KEY's value in an xl disk spec (target= is the last key).
_blk_spec_field() {
	local kv
	if [ "$2" = target ]; then
		[[ $1 == *target=* ]] && echo "${1#*target=}"
		return 0
	fi
	IFS=, read -r -a kv <<<"${1%%,target=*}"
	for kv in "${kv[@]}"; do
		[[ $kv == "$2="* ]] && echo "${kv#*=}"
	done
	return 0
}

# blk_start NAME IP [key=value]...: xt_create NAME (32 MiB, one vif on xenbr0, command line
# "ip=IP/24", then=block) with the disk= specs among the keys (xt_disk's XT_DISK), then wait for
#  1. each disk's `xenrs xenbus: device vbd/<id>` line (xl and the hotplug script did their part);
#  2. the services line; it must offer nbd:10809 (NET_SERVICES, a regex, may replace the whole list);
#  3. each disk's `xenrs blk:` line, its size (sectors * sector-size) equal to the file's, ro= as
#     the spec's access, backend=0;
#  4. each disk's `xenrs nbd: export` line, size and ro= as the disk's.
# Sets BLK_LINE[vdev], NBD_LINE[vdev], BLK_FILE[vdev], BLK_RO[vdev] (0|1) and BLK_DISKS (the vdevs),
# or BLK_WHY. A guest without blkfront or NBD fails at step 2 or 3 with a reason, within about
# 60 s, rather than hanging.
blk_start() {
	local name=$1 ip=$2 kv vdev file ro size bsize line want
	shift 2
	BLK_WHY=""
	BLK_DISKS=""
	BLK_LINE=()
	NBD_LINE=()
	BLK_FILE=()
	BLK_RO=()
	BLK_GUEST=("$name" "${ip%%/*}")
	# A retried attempt must not read the previous attempt's migration console logs.
	rm -f "$XT_CONSOLE_DIR/guest-$name--"*.log
	if ! xt_create "$name" cmdline="ip=$ip/24" vif=default "$@"; then
		BLK_WHY="xl create failed: $(tail -n 3 "$XT_RUN/$name.create.log" 2>/dev/null | tr '\n' ' ')"
		return 1
	fi
	for kv in "$@"; do
		[[ $kv == disk=* ]] || continue
		kv=${kv#disk=}
		vdev=$(_blk_spec_field "$kv" vdev)
		file=$(_blk_spec_field "$kv" target)
		ro=0
		[[ $(_blk_spec_field "$kv" access) =~ ^(ro|r)$ ]] && ro=1
		BLK_DISKS+="${BLK_DISKS:+ }$vdev"
		BLK_FILE[$vdev]=$file
		BLK_RO[$vdev]=$ro
	done
	for vdev in $BLK_DISKS; do
		xt_vbd_id "$vdev"
		if ! xt_wait_console "$name" "^xenrs xenbus: device vbd/$XT_VBD backend=" 30; then
			BLK_WHY="no 'xenrs xenbus: device vbd/$XT_VBD' line for $vdev within 30 s (state $(xt_state "$name")); $(xt_errors "$name")"
			return 1
		fi
	done
	want=${NET_SERVICES:-tcp-echo:7 udp-echo:7 iperf3:5201 nbd:$BLK_NBD_PORT}
	if ! xt_wait_console "$name" '^xenrs net: services ' 60; then
		BLK_WHY="no 'xenrs net: services' line within 60 s (state $(xt_state "$name")); $(xt_errors "$name")"
		return 1
	fi
	if ! [[ $XT_MATCH =~ ^xenrs\ net:\ services\ $want$ ]]; then
		BLK_WHY="the guest does not serve NBD: its services line is '$XT_MATCH', expected 'xenrs net: services $want' (a kernel without blkfront and the NBD service?); disks seen: $(tr -d '\r' <"$(xt_console "$name")" 2>/dev/null | grep -E '^xenrs xenbus: device vbd/' | tr '\n' ' ')$(xt_errors "$name")"
		return 1
	fi
	for vdev in $BLK_DISKS; do
		xt_vbd_id "$vdev"
		size=$(stat -c %s "${BLK_FILE[$vdev]}" 2>/dev/null)
		if ! xt_wait_console "$name" "^xenrs blk: $vdev vbd/$XT_VBD sectors=[0-9]+ sector-size=[0-9]+ ro=[01] backend=[0-9]+ features=" 30; then
			BLK_WHY="no 'xenrs blk: $vdev vbd/$XT_VBD sectors=... features=...' line within 30 s (state $(xt_state "$name")); $(xt_errors "$name")"
			return 1
		fi
		line=$XT_MATCH
		BLK_LINE[$vdev]=$line
		bsize=$(($(xt_field "$line" sectors) * $(xt_field "$line" sector-size)))
		[ "$bsize" = "$size" ] || BLK_WHY+="$vdev: sectors * sector-size = $bsize, the file has $size bytes; "
		[ "$(xt_field "$line" ro)" = "${BLK_RO[$vdev]}" ] || BLK_WHY+="$vdev: ro=$(xt_field "$line" ro), the disk spec says ${BLK_RO[$vdev]}; "
		[ "$(xt_field "$line" backend)" = 0 ] || BLK_WHY+="$vdev: backend=$(xt_field "$line" backend), expected 0; "
		if ! xt_wait_console "$name" "^xenrs nbd: export $vdev size=[0-9]+ ro=[01]\$" 30; then
			BLK_WHY+="no 'xenrs nbd: export $vdev size=<bytes> ro=<0|1>' line within 30 s; "
			continue
		fi
		NBD_LINE[$vdev]=$XT_MATCH
		[ "$(xt_field "$XT_MATCH" size)" = "$size" ] || BLK_WHY+="$vdev: the export's size=$(xt_field "$XT_MATCH" size), the file has $size bytes; "
		[ "$(xt_field "$XT_MATCH" ro)" = "${BLK_RO[$vdev]}" ] || BLK_WHY+="$vdev: the export says ro=$(xt_field "$XT_MATCH" ro), the disk spec ${BLK_RO[$vdev]}; "
	done
	[ -z "$BLK_WHY" ] || BLK_WHY+="$(xt_errors "$name")"
	[ -z "$BLK_WHY" ]
}

# blk_features VDEV: print the features= list of VDEV's `xenrs blk:` line ("none" if none).
blk_features() { xt_field "${BLK_LINE[$1]}" features; }

# blk_console_lines NAME ERE: print the console lines of NAME matching ERE, from every console
# log of NAME (a migration's receiving domain logs as NAME--incoming first), without CRs.
blk_console_lines() {
	local f
	for f in "$XT_CONSOLE_DIR/guest-$1.log" "$XT_CONSOLE_DIR/guest-$1--"*.log; do
		[ -r "$f" ] && tr -d '\r' <"$f" | grep -E "$2"
	done
	return 0
}

# blk_errors NAME [ALLOWED_ERE]: the guest's error, PANIC, FAULT and FATAL lines (from every
# console log of NAME) that do not match ALLOWED_ERE, the first 5 folded onto one line.
blk_errors() {
	local bad
	bad=$(blk_console_lines "$1" '^xenrs ([a-z0-9]+ error:|PANIC|FAULT|FATAL)')
	[ -n "${2:-}" ] && bad=$(grep -v -E "$2" <<<"$bad")
	head -n 5 <<<"$bad" | tr '\n' ' '
}

# blk_verdict NAME PROBLEMS PASS_DETAILS [ALLOWED_ERE]: the verdict of a disk scenario. FAIL with
# PROBLEMS if there are any, else FAIL if the guest is not running or printed an error, PANIC,
# FAULT or FATAL line that ALLOWED_ERE does not allow (a scenario expects none unless it provokes
# them), else PASS with PASS_DETAILS.
blk_verdict() {
	local bad
	# The common check of result PASS (lib.sh) must let the allowed lines through too.
	xt_allow_errors "${4:-}"
	bad=$(blk_errors "$1" "${4:-}")
	if [ -n "$2" ]; then
		result FAIL "$2 ${bad:+guest errors: $bad}"
	elif [ "$(xt_state "$1")" != running ]; then
		result FAIL "the guest is not running any more (state $(xt_state "$1")); $bad"
	elif [[ -n ${bad// /} ]]; then
		result FAIL "unexpected guest error lines: $bad"
	else
		result PASS "$3"
	fi
}

# blk_sha FILE: set BLK_SHA to FILE's sha256.
blk_sha() {
	BLK_SHA=$(sha256sum "$1" 2>/dev/null)
	BLK_SHA=${BLK_SHA%% *}
}

# blk_random FILE MIB: write MIB MiB of random bytes to FILE (under $XT_DISKS: removed after the
# attempt) and set BLK_SHA to their sha256.
blk_random() {
	mkdir -p "${1%/*}"
	head -c "$(($2 << 20))" /dev/urandom >"$1" || return 1
	blk_sha "$1"
}

# blk_nbd_sha URI [SECS=600]: read the whole export with nbdcopy; set BLK_SHA to its sha256 and
# BLK_SECS to the seconds it took, or BLK_WHY (false).
blk_nbd_sha() {
	local t0 out rc
	xt_up
	t0=$XT_UPF
	out=$({ timeout "${2:-600}" nbdcopy "$1" - 2>"$XT_RUN/nbdcopy.err"; echo "rc=$?" >"$XT_RUN/nbdcopy.rc"; } | sha256sum)
	_xt_since "$t0"
	BLK_SECS=$_XT_SINCE
	read -r rc <"$XT_RUN/nbdcopy.rc"
	BLK_SHA=${out%% *}
	if [ "$rc" != rc=0 ]; then
		BLK_WHY="nbdcopy $1 - failed ($rc, 124 = timeout, after ${BLK_SECS}s): $(tr '\n' ' ' <"$XT_RUN/nbdcopy.err" | cut -c1-240)"
		[ "$rc" = rc=124 ] && _blk_stalled
		return 1
	fi
}

# blk_nbdcopy SECS ARGS...: `timeout SECS nbdcopy ARGS`; sets BLK_SECS, or BLK_WHY (false).
blk_nbdcopy() {
	local secs=$1 t0 rc
	shift
	xt_up
	t0=$XT_UPF
	timeout "$secs" nbdcopy "$@" >"$XT_RUN/nbdcopy.out" 2>&1
	rc=$?
	_xt_since "$t0"
	BLK_SECS=$_XT_SINCE
	if [ $rc -ne 0 ]; then
		BLK_WHY="nbdcopy $* failed (rc=$rc, 124 = timeout, after ${BLK_SECS}s): $(tr '\n' ' ' <"$XT_RUN/nbdcopy.out" | cut -c1-240)"
		[ $rc -eq 124 ] && _blk_stalled
		return 1
	fi
}

# blk_nbdinfo URI: `nbdinfo --json URI` (60 s limit); sets BLK_INFO to "size ro flush fua trim zero
# multi_conn" (jq's values: a number, then true/false each), or BLK_WHY (false).
blk_nbdinfo() {
	local js
	if ! js=$(timeout 60 nbdinfo --json "$1" 2>"$XT_RUN/nbdinfo.err") || [ -z "$js" ]; then
		BLK_WHY="nbdinfo --json $1 failed: $(tr '\n' ' ' <"$XT_RUN/nbdinfo.err" | cut -c1-240)"
		return 1
	fi
	BLK_INFO=$(jq -r '.exports[0] | [."export-size", .is_read_only, .can_flush, .can_fua, .can_trim, .can_zero, .can_multi_conn] | map(tostring) | join(" ")' <<<"$js" 2>&1)
	if ! [[ $BLK_INFO =~ ^[0-9]+( (true|false)){6}$ ]]; then
		BLK_WHY="nbdinfo --json $1: unexpected JSON ($BLK_INFO): $(head -c 300 <<<"$js" | tr '\n' ' ')"
		return 1
	fi
}

# blk_raw IP CHECK ARGS...: run the raw NBD client (nbd-client.py IP 10809 CHECK ARGS) with a
# 300 s limit; its `ok:`/`FAIL:` lines go to BLK_RAW (folded); false if any step failed.
blk_raw() {
	local ip=$1 rc
	shift
	BLK_RAW=$(timeout 300 python3 "$BLK_PY" "$ip" "$BLK_NBD_PORT" "$@" 2>&1)
	rc=$?
	BLK_RAW=${BLK_RAW//$'\n'/; }
	[ $rc -eq 124 ] && BLK_RAW+=" (timed out after 300 s)"
	return $rc
}

# blk_dump NAME TAG: ask the guest NAME for a status dump (xenstore `data/dump` = TAG, the
# `xenrs dump:` lines of docs/CONSOLE.md) and wait up to 15 s for its `xenrs dump: end` line.
blk_dump() {
	local n
	blk_count "$1" '^xenrs dump: end$'
	n=$BLK_N
	xt_id "$1"
	xenstore-write "/local/domain/$XT_ID/data/dump" "$2" 2>/dev/null
	blk_wait_count "$1" '^xenrs dump: end$' $((n + 1)) 15
}

# blk_stall_evidence NAME IP TAG: the evidence of a stalled transfer to or from guest NAME (at
# IP): two guest dumps 10 s apart (so moving counters show), dom0's view of its TCP connections
# to the guest (`ss -tni`), the vif's counters, all printed as `xt|` lines with the console tail.
# Sets BLK_EVIDENCE to a one-line summary for a RESULT line: the second dump's NBD connection
# lines and dom0's send/receive queues.
blk_stall_evidence() {
	local name=$1 ip=$2 tag=$3 ssout
	blk_dump "$name" "$tag-a"
	ssout=$(ss -tni dst "$ip" 2>/dev/null | tr -s ' ')
	sleep 10
	blk_dump "$name" "$tag-b"
	xt_log "stall ($tag): the guest's dumps (the second 10 s after the first):"
	blk_console_lines "$name" '^xenrs dump: ' | tail -n 80 | sed 's/^/xt|   dump: /'
	xt_log "dom0 ss -tni dst $ip (between the dumps), then now:"
	sed 's/^/xt|   ss: /' <<<"$ssout"
	ss -tni dst "$ip" 2>/dev/null | sed 's/^/xt|   ss: /'
	ip -s link show "vif$(xt_domid "$name").0" 2>/dev/null | sed 's/^/xt|   link: /'
	xt_log "console tail (every log of $name):"
	blk_console_lines "$name" '.' | grep -v '^xenrs dump: ' | tail -n 30 | sed 's/^/xt|   /'
	BLK_EVIDENCE="guest: $(blk_console_lines "$name" '^xenrs dump: (clock|nbd|blk )' | tail -n 6 | tr '\n' ' ' | cut -c1-900) dom0 ss: $(tail -n +2 <<<"$ssout" | tr -s ' \n\t' ' ' | cut -c1-700)"
}

# _blk_stalled: a transfer of blk_nbd_sha or blk_nbdcopy timed out: add the evidence of the guest
# blk_start started (blk_stall_evidence) to BLK_WHY, once per stall.
_blk_stalled() {
	[ ${#BLK_GUEST[@]} -eq 2 ] && [ "$(xt_state "${BLK_GUEST[0]}")" = running ] || return 0
	blk_stall_evidence "${BLK_GUEST[0]}" "${BLK_GUEST[1]}" stall
	BLK_WHY+="; evidence: $BLK_EVIDENCE"
}

# blk_count NAME ERE: set BLK_N to the number of console lines of NAME (every log) matching ERE.
blk_count() {
	BLK_N=$(blk_console_lines "$1" "$2" | wc -l)
}

# blk_wait_count NAME ERE N SECS: wait until at least N console lines of NAME match ERE.
blk_wait_count() {
	local dl
	xt_up
	dl=$((XT_UP + $4))
	while :; do
		blk_count "$1" "$2"
		[ "$BLK_N" -ge "$3" ] && return 0
		xt_up
		[ "$XT_UP" -lt "$dl" ] || return 1
		sleep 0.5
	done
}

# blk_writer_start SRC URI: in the background, write SRC to URI with `nbdcopy --flush`, pass
# after pass, until blk_writer_stop, so I/O is in flight whenever a round starts. Every pass must
# succeed (limit 1200 s each). nbdcopy's progress goes to $XT_RUN/blk-writer.progress.
blk_writer_start() {
	local src=$1 uri=$2 st=$XT_RUN/blk-writer.status
	rm -f "$XT_RUN/blk-writer.stop" "$XT_RUN/blk-writer.progress"
	echo "STARTING" >"$st"
	(
		pass=0
		while :; do
			pass=$((pass + 1))
			echo "RUNNING pass=$pass" >"$st"
			timeout 600 nbdcopy --flush --progress=3 "$src" "$uri" >"$XT_RUN/blk-writer.out" 2>&1 \
				3>>"$XT_RUN/blk-writer.progress"
			rc=$?
			if [ $rc -ne 0 ]; then
				echo "ERROR pass=$pass: nbdcopy --flush failed (rc=$rc, 124 = timeout): $(tr '\n' ' ' <"$XT_RUN/blk-writer.out" | cut -c1-200)" >"$st"
				exit 1
			fi
			[ -e "$XT_RUN/blk-writer.stop" ] && break
		done
		echo "DONE passes=$pass" >"$st"
	) &
	BLK_WRITER=$!
}

# blk_writer_state: set BLK_WSTATE to the writer's status line and BLK_WPROG to its last progress
# figure (e.g. 37/100).
blk_writer_state() {
	local l
	BLK_WSTATE=""
	BLK_WPROG=""
	read -r BLK_WSTATE <"$XT_RUN/blk-writer.status" 2>/dev/null
	while IFS= read -r l; do BLK_WPROG=$l; done <"$XT_RUN/blk-writer.progress" 2>/dev/null
	return 0
}

# blk_writer_wait_progress SECS: wait until the writer's first pass reports progress above 0 (the
# copy is under way), or it ended; false on an error or after SECS.
blk_writer_wait_progress() {
	local dl
	xt_up
	dl=$((XT_UP + $1))
	while :; do
		blk_writer_state
		case "$BLK_WSTATE" in ERROR*) return 1 ;; DONE* | *pass=[2-9]* | *pass=[1-9][0-9]*) return 0 ;; esac
		[[ $BLK_WPROG =~ ^([0-9]+)/ ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] && return 0
		xt_up
		[ "$XT_UP" -lt "$dl" ] || return 1
		sleep 0.5
	done
}

# blk_writer_stop [now]: let the writer finish its current pass and wait for it; with "now" (a
# round failed, the guest may be gone) end it at once instead of waiting up to nbdcopy's timeout.
# Sets BLK_WSTATE.
blk_writer_stop() {
	touch "$XT_RUN/blk-writer.stop"
	if [ "${1:-}" = now ]; then
		xt_kill_tree "$BLK_WRITER"
	fi
	wait "$BLK_WRITER" 2>/dev/null
	blk_writer_state
}

# blk_round NAME KIND N: one round against the running guest: S = `xl save` + `xl restore`,
# L = the same with the domain kept saved for BLK_LONG_SAVE seconds (default 70, longer than the
# guest's 60 s NBD socket timeout) between the two, C = `xl save -c`,
# M = `xl migrate -s "" NAME "xl migrate-receive"` (localhost, over pipes). It
# waits (60 s) for the N-th suspend's `xenrs resumed n=N mode=new-domain|cancelled` line and,
# after S and M, for one more `xenrs blk: xvda` line than before (the disk reconnected to the new
# back end, 120 s). Sets BLK_WHY on failure, BLK_ROUND_SECS on success.
blk_round() {
	local name=$1 kind=$2 n=$3 f=$XT_RUN/$1.save t0 blks mode=new-domain old
	xt_up
	t0=$XT_UP
	blk_count "$name" '^xenrs blk: xvda '
	blks=$BLK_N
	xt_id "$name"
	old=$XT_ID
	case "$kind" in
	S | L)
		if ! timeout 300 xl save "$name" "$f" >"$XT_RUN/$name.save.log" 2>&1; then
			BLK_WHY="round $n: xl save failed: $(tail -n 3 "$XT_RUN/$name.save.log" | tr '\n' ' ')"
			return 1
		fi
		[ "$kind" = L ] && sleep "${BLK_LONG_SAVE:-70}"
		if ! timeout 300 xl restore "$f" >"$XT_RUN/$name.restore.log" 2>&1; then
			BLK_WHY="round $n: xl restore failed: $(tail -n 3 "$XT_RUN/$name.restore.log" | tr '\n' ' ')"
			return 1
		fi
		rm -f "$f"
		xt_track "$name"
		;;
	C)
		mode=cancelled
		if ! timeout 300 xl save -c "$name" "$f" >"$XT_RUN/$name.save.log" 2>&1; then
			BLK_WHY="round $n: xl save -c failed: $(tail -n 3 "$XT_RUN/$name.save.log" | tr '\n' ' ')"
			return 1
		fi
		rm -f "$f"
		;;
	M)
		if ! timeout 300 xl migrate -s "" "$name" "xl migrate-receive" >"$XT_RUN/$name.migrate.log" 2>&1; then
			BLK_WHY="round $n: xl migrate failed: $(tail -n 4 "$XT_RUN/$name.migrate.log" | tr '\n' ' ')"
			return 1
		fi
		xt_track "$name"
		if [ -z "$XT_ID" ] || [ "$XT_ID" = "$old" ]; then
			BLK_WHY="round $n: after xl migrate the domain is '$XT_ID' (was $old)"
			return 1
		fi
		;;
	esac
	if ! blk_wait_count "$name" "^xenrs resumed n=$n mode=$mode mono_ns=[0-9]+\$" 1 60; then
		BLK_WHY="round $n ($kind): no 'xenrs resumed n=$n mode=$mode' line within 60 s"
		return 1
	fi
	if [ "$kind" != C ] && ! blk_wait_count "$name" '^xenrs blk: xvda ' $((blks + 1)) 120; then
		BLK_WHY="round $n ($kind): xvda did not reconnect (no new 'xenrs blk: xvda' line) within 120 s"
		return 1
	fi
	xt_up
	BLK_ROUND_SECS=$((XT_UP - t0))
}

# blk_io_across NAME IP MIB PLAN: the body of nbd-save-restore and nbd-migrate. The guest (already
# started by blk_start with one read-write xvda of MIB MiB) is written with MIB MiB of random data
# by blk_writer (nbdcopy --flush, pass after pass) while dom0 runs the rounds of PLAN (blk_round
# kinds, e.g. "S S S C"). Then the writer finishes its pass; every pass must have succeeded, and
# nbdcopy's read-back and dom0's backing file must equal the source. Ends with blk_verdict.
blk_io_across() {
	local name=$1 ip=$2 mib=$3 plan=$4 want kind n=0 problems="" times="" nd=0 nc=0
	blk_uri "$ip" xvda
	blk_random "$XT_DISKS/src" "$mib" || xt_fail "cannot write $XT_DISKS/src"
	want=$BLK_SHA
	blk_writer_start "$XT_DISKS/src" "$BLK_URI"
	blk_writer_wait_progress 300 || problems+="the writer did not get going within 300 s: $BLK_WSTATE (progress ${BLK_WPROG:-none}); "
	for kind in $plan; do
		[ -z "$problems" ] || break
		n=$((n + 1))
		blk_writer_state
		case "$BLK_WSTATE" in
		ERROR*)
			problems+="before round $n: $BLK_WSTATE; "
			break
			;;
		esac
		times+="$kind(at ${BLK_WSTATE#RUNNING } ${BLK_WPROG:-0/100}) "
		if ! blk_round "$name" "$kind" "$n"; then
			problems+="$BLK_WHY; "
			break
		fi
		times+="${BLK_ROUND_SECS}s, "
		case "$kind" in C) nc=$((nc + 1)) ;; *) nd=$((nd + 1)) ;; esac
	done
	if [ -n "$problems" ] || [ "$(xt_triple_faults)" != 0 ]; then
		blk_writer_stop now
	else
		blk_writer_stop
	fi
	case "$BLK_WSTATE" in
	DONE*) ;;
	*) problems+="the writer ended with '$BLK_WSTATE'; " ;;
	esac
	if [ -z "$problems" ]; then
		if blk_nbd_sha "$BLK_URI" 600; then
			[ "$BLK_SHA" = "$want" ] || problems+="nbdcopy reads back sha256 ${BLK_SHA:0:16}, the source has ${want:0:16}; "
		else
			problems+="read-back: $BLK_WHY; "
		fi
		blk_sha "${BLK_FILE[xvda]}"
		[ "$BLK_SHA" = "$want" ] || problems+="dom0's backing file has sha256 ${BLK_SHA:0:16}, the source ${want:0:16}; "
		blk_count "$name" 'mode=new-domain'
		[ "$BLK_N" = "$nd" ] || problems+="the console shows $BLK_N new-domain resumes, expected $nd; "
		blk_count "$name" 'mode=cancelled'
		[ "$BLK_N" = "$nc" ] || problems+="the console shows $BLK_N cancelled resumes, expected $nc; "
	fi
	[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
	# The guest logs its disk counters at each suspend: how many requests were outstanding then,
	# and how many ring requests it posted again after a restore (evidence of I/O in flight).
	local inflight reposted
	inflight=$(blk_console_lines "$name" '^xenrs info: blk: xvda: .* outstanding$' |
		sed -E 's/.* ([0-9]+) outstanding$/\1/' | tr '\n' ' ')
	reposted=$(blk_console_lines "$name" '^xenrs info: blk: xvda: .* reposted\)' |
		sed -E 's/.* ([0-9]+) reposted\).*/\1/' | tail -n 1)
	times+="requests outstanding at each suspend: ${inflight:-none logged}; ring requests re-posted after restores (as of the last suspend): ${reposted:-0}; "
	if [[ $plan == *M* ]]; then
		kind=$(xl list 2>/dev/null | grep -e '--incoming' -e '--migratedaway')
		[ -z "$kind" ] || problems+="a leftover --incoming/--migratedaway domain: $kind; "
	fi
	blk_verdict "$name" "$problems" "$mib MiB written by nbdcopy --flush ($BLK_WSTATE) through rounds $plan (at writer pass/progress, then round time): $times the read-back and dom0's backing file equal the source (sha256); domid now $(xt_domid "$name")"
}
