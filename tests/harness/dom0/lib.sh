# shellcheck shell=bash disable=SC2034 # XT_* variables are for the scenarios
# Scenario library of the real-Xen harness, sourced in dom0 before every scenario script.
#
# Guests are addressed by NAME (the xl domain name). xt_create records the domid, so every later
# helper talks about exactly that domain: a restarted guest (new domid) is noticed, not confused
# with the old one. Files per guest, under $XT_RUN: NAME.cfg, NAME.domid, NAME.create.log.
# Console log: /var/log/xen/console/guest-NAME.log (xenconsoled --log=guest).
#
# Helpers (return 0 on success; docs/TESTING-XEN.md has the full API):
#   result [NAME] PASS|FAIL DETAILS...   record one result (printed as `RESULT NAME ...`); NAME
#                                        defaults to $XT_SCENARIO, the running scenario's name
#   xt_fail DETAILS...                   result FAIL under $XT_SCENARIO, then end the scenario (exit 0)
#   xt_errors NAME                       the guest's error/PANIC/FAULT/FATAL console lines, folded
#   xt_allow_errors ERE                  the scenario provokes console lines matching ERE: the
#                                        common check (below) lets them through
#   xt_unexpected_errors                 the error lines of this attempt's guests that no
#                                        xt_allow_errors pattern allows, folded
#   xt_log MSG...                        progress line on the console
#   xt_disk VDEV MIB [ro] [FILE]         create a file disk (<= 128 MiB) under $XT_DISKS; sets
#                                        XT_DISK (an xl disk spec for xt_create disk=) and
#                                        XT_DISK_FILE
#   xt_vbd_id VDEV                       set XT_VBD to the xenbus device id of xvdX (xvda 51712)
#   xt_write_cfg NAME [key=value]...     write NAME.cfg, print its path
#   xt_create NAME [key=value]...        xt_write_cfg + `xl create`; sets XT_DOMID
#   xt_domid NAME                        print the recorded domid
#   xt_id NAME                           set XT_ID to the recorded domid (no fork)
#   xt_track NAME                        re-record NAME's domid after restore/migrate; sets XT_DOMID
#                                        and XT_ID
#   xt_up                                set XT_UP (dom0's uptime, whole seconds) and XT_UPF (hundredths)
#   xt_console NAME                      print the console log path
#   xt_console_has NAME ERE              console already has a matching line; sets XT_MATCH
#   xt_wait_console NAME ERE [SECS]      wait for a console line; sets XT_MATCH
#   xt_state NAME                        print running | shutdown | gone (of the recorded domid)
#   xt_wait_end NAME [SECS]              wait until the domain is shut down or gone
#   xt_wait_gone NAME [SECS]             wait until the domain no longer exists
#   xt_shutdown_reason NAME              print poweroff|reboot|suspend|crash|watchdog|soft_reset|unknown
#   xt_restarted NAME                    true if xl restarted NAME under a new domid
#   xt_triple_faults                     print the number of `Triple fault` lines of this attempt
#   xt_kill_tree PID                     stop, then kill PID and all its descendants
#   xt_expect_end NAME REASON [SECS]     wait + reason + restart + triple fault; sets XT_REASON,
#                                        XT_REASON_SRC, XT_WHY
#   xt_field LINE KEY                    print the value of KEY=value in LINE
#   xt_destroy NAME                      destroy the domain if it exists, wait until gone
#   xt_dump NAME                         print state, console tail and xl log tail (`xt| ` lines)
#
# Every fork+exec costs 0.2-0.5 s in this dom0 (PV page-table updates under TCG), so the helpers
# read files with bash builtins and only run `xl` where Xen must be asked.

XT_RUN=${XT_RUN:-/run/xt}
XT_GUEST_KERNEL=${XT_GUEST_KERNEL:-/harness/guest/kernel}
XT_CONSOLE_DIR=/var/log/xen/console
XT_BRIDGE=xenbr0
XT_BRIDGE_IP=169.254.77.1
XT_RESULTS=${XT_RESULTS:-$XT_RUN/results}
# Disk files and other big scratch files of a scenario (dom0's root is in RAM): the runner removes
# the directory after every scenario attempt.
XT_DISKS=${XT_DISKS:-$XT_RUN/disks}
XT_DISK=""
XT_DISK_FILE=""
XT_VBD=""
XT_MATCH=""
XT_REASON=""
XT_REASON_SRC=""
XT_WHY=""
# Console lines that mean something went wrong in the guest: any subsystem's error line (`xenrs
# <subsystem> error:`, and `xenrs error:` from the kernel's logger), PANIC/FAULT/FATAL, and the tx
# watchdog's stall line (docs/NET.md). Every PASS is checked against them (result, below).
XT_ERROR_RE='^xenrs (([a-z0-9-]+ )?error:|PANIC|FAULT|FATAL|net: vif/[0-9]+: the back end took no (tx|rx))'
# The patterns (EREs, one per line) a scenario allowed with xt_allow_errors.
XT_ALLOWED_ERRORS=""
[ -d "$XT_RUN" ] || mkdir -p "$XT_RUN"

# xt_log MSG...: one progress line (also kept in $XT_RUN/last-step: a scenario that times out
# reports the last one it printed).
xt_log() {
	echo "xt: ${XT_SCENARIO:+$XT_SCENARIO: }$*"
	echo "$*" | cut -c1-300 >"$XT_RUN/last-step" 2>/dev/null
	return 0
}

# xt_allow_errors ERE: this scenario provokes console lines matching ERE (a panic, a refused
# request, a stalled back end): the common check of result PASS does not count them. Repeatable.
xt_allow_errors() {
	[ -n "${1:-}" ] && XT_ALLOWED_ERRORS+="$1"$'\n'
	return 0
}

# xt_unexpected_errors: print the first 5 XT_ERROR_RE console lines (folded onto one line, each
# prefixed with its guest's name) of every guest this attempt created (xt_create; their
# NAME--incoming logs of a migration too) that no xt_allow_errors pattern allows.
xt_unexpected_errors() {
	local g f line re ok out="" n=0
	for g in $(sort -u "$XT_RUN/guests" 2>/dev/null); do
		for f in "$XT_CONSOLE_DIR/guest-$g.log" "$XT_CONSOLE_DIR/guest-$g--"*.log; do
			[ -r "$f" ] || continue
			while IFS= read -r line || [ -n "$line" ]; do
				line=${line%$'\r'}
				[[ $line =~ $XT_ERROR_RE ]] || continue
				ok=0
				while IFS= read -r re; do
					[ -n "$re" ] && [[ $line =~ $re ]] && {
						ok=1
						break
					}
				done <<<"$XT_ALLOWED_ERRORS"
				[ "$ok" = 1 ] && continue
				n=$((n + 1))
				[ "$n" -le 5 ] && out+="[$g] $line | "
			done <"$f"
		done
	done
	[ "$n" -gt 5 ] && out+="($n in all)"
	printf '%s' "$out"
}

# result [NAME] PASS|FAIL DETAILS...: record a result of the running scenario. The runner prints
# it as `RESULT NAME PASS|FAIL DETAILS` once the attempt is over (a FLAKE attempt's results are
# dropped). Without NAME (the first word is PASS or FAIL) the result is named $XT_SCENARIO, the
# scenario's own name. DETAILS is folded onto one line.
# The common check: a PASS becomes a FAIL if a guest of this attempt printed an error, PANIC,
# FAULT, FATAL or stall line (XT_ERROR_RE) that the scenario did not allow (xt_allow_errors).
result() {
	local name st detail
	case "${1:-}" in
	PASS | FAIL) name=${XT_SCENARIO:-unnamed} ;;
	*)
		name=${1:-unnamed}
		shift $(($# > 0))
		;;
	esac
	st=${1:-}
	shift $(($# > 0))
	detail=$*
	detail=${detail//[$'\r\n\t']/ }
	case "$st" in
	PASS | FAIL) ;;
	*)
		detail="result called with status '$st' (must be PASS or FAIL): $detail"
		st=FAIL
		;;
	esac
	name=${name// /_}
	if [ "$st" = PASS ]; then
		local bad
		bad=$(xt_unexpected_errors)
		if [ -n "$bad" ]; then
			st=FAIL
			detail="unexpected guest console lines: $bad(otherwise: $detail)"
		fi
	fi
	echo "RESULT $name $st $detail" >>"$XT_RESULTS"
	xt_log "check $name: $st $detail"
}
xt_result() { result "$@"; }

# xt_fail DETAILS...: record `RESULT $XT_SCENARIO FAIL DETAILS` and end the scenario (exit 0; the
# runner dumps the guests' state and destroys them). Call it from the scenario's own shell, not
# inside $(...) or a pipeline, where exit would end only that subshell.
xt_fail() {
	result FAIL "$@"
	exit 0
}

# xt_up: set XT_UP to dom0's uptime in whole seconds and XT_UPF to it with hundredths.
xt_up() {
	local _
	read -r XT_UPF _ </proc/uptime
	XT_UP=${XT_UPF%.*}
}
# xt_now: print dom0's uptime in seconds (with hundredths).
xt_now() {
	xt_up
	echo "$XT_UPF"
}
# _xt_since UPF: set _XT_SINCE to "12.34" seconds since the uptime UPF.
_xt_since() {
	local a b
	xt_up
	a=${1/./}
	b=${XT_UPF/./}
	a=$((10#$b - 10#$a))
	printf -v _XT_SINCE '%d.%02d' $((a / 100)) $((a % 100))
}

xt_console() { echo "$XT_CONSOLE_DIR/guest-$1.log"; }
# xt_id NAME: set XT_ID to NAME's recorded domid ("" if none).
xt_id() {
	XT_ID=""
	[ -r "$XT_RUN/$1.domid" ] && read -r XT_ID <"$XT_RUN/$1.domid"
	return 0
}
xt_domid() {
	xt_id "$1"
	echo "$XT_ID"
}

# xt_track NAME: record NAME's current domid, for a domain that legitimately got a new one
# (xl restore, xl migrate, an intended on_reboot="restart"); sets XT_DOMID and XT_ID. False, with
# XT_ID "" and nothing recorded, if NAME does not exist.
xt_track() {
	XT_ID=$(xl domid "$1" 2>/dev/null)
	[ -n "$XT_ID" ] || return 1
	echo "$XT_ID" >"$XT_RUN/$1.domid"
	XT_DOMID=$XT_ID
}

# xt_errors NAME: the guest's XT_ERROR_RE console lines (error, PANIC, FAULT, FATAL, stall; the
# first 5), folded onto one line, for FAIL details.
xt_errors() {
	tr -d '\r' <"$XT_CONSOLE_DIR/guest-$1.log" 2>/dev/null | grep -E "$XT_ERROR_RE" |
		head -n 5 | tr '\n' ' '
}

# xt_vif_default N: a vif spec on xenbr0 with the MAC 00:16:3e:77:00:<N in hex> and the
# harness's quick hotplug script (xt-vif).
xt_vif_default() {
	printf 'bridge=%s,mac=00:16:3e:77:00:%02x,script=/etc/xen/scripts/xt-vif' "$XT_BRIDGE" "$1"
}

# xt_vbd_id VDEV: set XT_VBD to the xenbus device id (device/vbd/<id>) of a Xen virtual disk name
# xvda..xvdz (202 << 8 | 16 * n: xvda 51712, xvdb 51728); false for any other name.
xt_vbd_id() {
	local letters=abcdefghijklmnopqrstuvwxyz l
	XT_VBD=""
	[[ $1 =~ ^xvd([a-z])$ ]] || return 1
	l=${letters%%"${BASH_REMATCH[1]}"*}
	XT_VBD=$(((202 << 8) | (16 * ${#l})))
}

# xt_disk VDEV MIB [ro|rw] [FILE]: create a zero-filled (sparse) file disk of MIB MiB, at most 128
# (dom0's root and /run are in RAM), as FILE (default $XT_DISKS/VDEV.img; an existing FILE is
# kept, only resized). Sets XT_DISK_FILE and XT_DISK, an xl disk spec for `xt_create disk=`:
# raw, VDEV (xvda, xvdb, ...), read-only (access=ro: xl's mode r, a read-only loop device) with
# "ro", else read-write, attached by the harness's quick hotplug script xt-block.
xt_disk() {
	local vdev=$1 mib=$2 access=rw file=${4:-$XT_DISKS/$1.img}
	XT_DISK=""
	XT_DISK_FILE=""
	case "${3:-rw}" in
	ro | r) access=ro ;;
	rw | w) ;;
	*)
		xt_log "xt_disk: third argument '$3' is not ro or rw" >&2
		return 2
		;;
	esac
	if ! xt_vbd_id "$vdev"; then
		xt_log "xt_disk: '$vdev' is not a disk name xvda..xvdz" >&2
		return 2
	fi
	if ! [[ $mib =~ ^[0-9]+$ ]] || [ "$mib" -lt 1 ] || [ "$mib" -gt 128 ]; then
		xt_log "xt_disk: size '$mib' MiB is not 1..128 (dom0's root is in RAM)" >&2
		return 2
	fi
	case "$file" in
	*,* | *=* | *"'"* | *'"'* | *' '*)
		xt_log "xt_disk: the file name '$file' has a character xl's disk spec cannot carry" >&2
		return 2
		;;
	esac
	[ -d "${file%/*}" ] || mkdir -p "${file%/*}" || return 1
	truncate -s "${mib}M" "$file" || return 1
	XT_DISK_FILE=$file
	XT_DISK="format=raw,vdev=$vdev,access=$access,script=/etc/xen/scripts/xt-block,target=$file"
}

# xt_write_cfg NAME [key=value]...: write $XT_RUN/NAME.cfg and print its path. Keys:
#   memory=MiB (32)  cmdline=STRING ("then=poweroff")  kernel=ELF ($XT_GUEST_KERNEL)
#   vcpus=N (1)  type=pvh  on_poweroff=destroy  on_crash=preserve  on_reboot=preserve
#   vif=SPEC (one xl vif spec, or "default": xt_vif_default with N = 16 + guests created so far)
#   disk=SPEC (an xl disk spec, repeatable: one disk each, e.g. xt_disk's XT_DISK; target= last)
#   cfg=LINE (a raw xl.cfg line, repeatable)
#   tsc_mode=MODE (native): QEMU's emulated CPU has no invariant TSC, so with xl's default
#   tsc_mode Xen traps every guest rdtsc; each trap is a VM exit, and under emulated SVM (no NRIP)
#   every exit is a chance of the rare nested triple fault (CI runs caught two right after rdtsc).
#   "native" runs rdtsc directly, as the default mode does on real hardware with an invariant TSC;
#   the guest's pvclock is correct either way. Pass tsc_mode=default to test Xen's emulation.
# (timeout=SECS belongs to xt_create and is ignored here.)
xt_write_cfg() {
	local name=$1
	shift
	local memory=32 cmdline="then=poweroff" kernel=$XT_GUEST_KERNEL vcpus=1 type=pvh
	local on_poweroff=destroy on_crash=preserve on_reboot=preserve vif="" timeout=""
	local tsc_mode=native
	local extra=() disks=() kv k v seq=0
	for kv in "$@"; do
		k=${kv%%=*}
		v=${kv#*=}
		case "$k" in
		memory | cmdline | kernel | vcpus | type | on_poweroff | on_crash | on_reboot | vif | timeout | tsc_mode)
			printf -v "$k" '%s' "$v"
			;;
		cfg) extra+=("$v") ;;
		disk) disks+=("$v") ;;
		*)
			xt_log "xt_write_cfg: unknown key '$k'" >&2
			return 2
			;;
		esac
	done
	# --env XT_CMDLINE_EXTRA="..." (experiments, e.g. tso=on): appended to every guest's command line.
	[ -n "${XT_CMDLINE_EXTRA:-}" ] && cmdline+=" $XT_CMDLINE_EXTRA"
	case "$cmdline$name$kernel$vif${disks[*]}" in
	*'"'* | *"'"* | *$'\n'*)
		xt_log "xt_write_cfg: quotes and newlines are not allowed in name, cmdline, kernel, vif, disk" >&2
		return 2
		;;
	esac
	if ! [ -e "$kernel" ]; then
		xt_log "xt_write_cfg: guest kernel $kernel does not exist" >&2
		return 2
	fi
	[ -r "$XT_RUN/guest-seq" ] && read -r seq <"$XT_RUN/guest-seq"
	echo $((seq + 1)) >"$XT_RUN/guest-seq"
	[ "$vif" = default ] && vif=$(xt_vif_default $((seq + 16)))
	{
		echo "name = \"$name\""
		echo "type = \"$type\""
		echo "kernel = \"$kernel\""
		echo "cmdline = \"$cmdline\""
		echo "memory = $memory"
		echo "vcpus = $vcpus"
		echo "on_poweroff = \"$on_poweroff\""
		echo "on_crash = \"$on_crash\""
		echo "on_reboot = \"$on_reboot\""
		echo "tsc_mode = \"$tsc_mode\""
		[ -n "$vif" ] && echo "vif = [ '$vif' ]"
		if [ ${#disks[@]} -gt 0 ]; then
			v=""
			for kv in "${disks[@]}"; do v+="${v:+, }'$kv'"; done
			echo "disk = [ $v ]"
		fi
		for kv in "${extra[@]}"; do echo "$kv"; done
	} >"$XT_RUN/$name.cfg"
	echo "$XT_RUN/$name.cfg"
}

# xt_monitor_domid NAME: print the domid xl's monitor process last logged for NAME
# ("Waiting for domain NAME (domid N) to die" in /var/log/xen/xl-NAME.log).
xt_monitor_domid() {
	local line id=""
	while IFS= read -r line; do
		[[ $line =~ Waiting\ for\ domain\ $1\ \(domid\ ([0-9]+)\) ]] && id=${BASH_REMATCH[1]}
	done <"/var/log/xen/xl-$1.log" 2>/dev/null
	echo "$id"
}

# xt_create NAME [key=value]...: xt_write_cfg, then `xl create` (timeout=SECS, default 60).
# A leftover domain called NAME is destroyed first. On success sets XT_DOMID and records it
# (xt_domid); on failure prints xl's output and returns non-zero.
xt_create() {
	local name=$1 kv timeout=60 cfgf t0 rc
	for kv in "${@:2}"; do
		case "$kv" in timeout=*) timeout=${kv#timeout=} ;; esac
	done
	cfgf=$(xt_write_cfg "$@") || return 2
	if xl domid "$name" >/dev/null 2>&1; then
		xt_log "destroying leftover domain $name"
		timeout 60 xl destroy "$name" >/dev/null 2>&1
	fi
	rm -f "$XT_CONSOLE_DIR/guest-$name.log" "$XT_CONSOLE_DIR/guest-$name--"*.log "$XT_RUN/$name.domid"
	echo "$name" >>"$XT_RUN/guests"
	xt_up
	t0=$XT_UPF
	timeout "$timeout" xl create "$cfgf" >"$XT_RUN/$name.create.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		xt_log "xl create $name failed (rc=$rc, 124 = timeout ${timeout}s):"
		while IFS= read -r kv; do echo "xt| $kv"; done <"$XT_RUN/$name.create.log"
		return 1
	fi
	XT_DOMID=$(xl domid "$name" 2>/dev/null)
	# The guest may already have ended (on_poweroff=destroy) before we asked.
	[ -n "$XT_DOMID" ] || XT_DOMID=$(xt_monitor_domid "$name")
	echo "$XT_DOMID" >"$XT_RUN/$name.domid"
	_xt_since "$t0"
	xt_log "created $name domid=${XT_DOMID:-?} in $_XT_SINCE s ($cfgf: $*)"
	[ -n "$XT_DOMID" ]
}

# _xt_list NAME: set _XT_STATE (running | shutdown | gone) and _XT_CODE (Xen's shutdown reason
# code, hex, or "") from `xl list -v <recorded domid>`: one xl call, parsed in bash.
# Columns: name id mem vcpus state time uuid reason-code [label]; state letters r b p s c d,
# where the 4th is "s" once the domain shut down and the 6th "d" while it is dying.
_xt_list() {
	local out line st code
	_XT_STATE=gone
	_XT_CODE=""
	xt_id "$1"
	[ -n "$XT_ID" ] || return 0
	out=$(xl list -v "$XT_ID" 2>/dev/null) || return 0
	line=${out#*$'\n'}
	[ "$line" != "$out" ] || return 0
	read -r _ _ _ _ st _ _ code _ <<<"$line"
	if [ "${st:3:1}" = s ]; then
		_XT_STATE=shutdown
		_XT_CODE=$code
	elif [ "${st:5:1}" = d ]; then
		_XT_STATE=shutdown
	else
		_XT_STATE=running
	fi
}
xt_state() {
	_xt_list "$1"
	echo "$_XT_STATE"
}
# xt_xl_list_v NAME: print the `xl list -v` line of NAME's recorded domid (for dumps).
xt_xl_list_v() {
	xt_id "$1"
	[ -n "$XT_ID" ] && xl list -v "$XT_ID" 2>/dev/null | tail -n +2
}

# xt_console_has NAME ERE: true if the console log already has a line matching ERE (bash
# regex = POSIX ERE); the first such line, without CR, goes to XT_MATCH.
xt_console_has() {
	local line
	XT_MATCH=""
	[ -r "$XT_CONSOLE_DIR/guest-$1.log" ] || return 1
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		if [[ $line =~ $2 ]]; then
			XT_MATCH=$line
			return 0
		fi
	done <"$XT_CONSOLE_DIR/guest-$1.log"
	return 1
}

# xt_console_count NAME ERE: print how many console lines match ERE.
xt_console_count() {
	local line n=0
	if [ -r "$XT_CONSOLE_DIR/guest-$1.log" ]; then
		while IFS= read -r line || [ -n "$line" ]; do
			line=${line%$'\r'}
			[[ $line =~ $2 ]] && n=$((n + 1))
		done <"$XT_CONSOLE_DIR/guest-$1.log"
	fi
	echo "$n"
}

# xt_wait_console NAME ERE [SECS=30]: wait until the console log has a line matching ERE.
# Gives up early, after a 2 s grace for xenconsoled, once the domain has ended.
xt_wait_console() {
	local name=$1 re=$2 dl ended=""
	xt_up
	dl=$((XT_UP + ${3:-30}))
	while [ "$XT_UP" -lt "$dl" ]; do
		xt_console_has "$name" "$re" && return 0
		if [ -z "$ended" ]; then
			_xt_list "$name"
			[ "$_XT_STATE" = running ] || ended=$((XT_UP + 2))
		elif [ "$XT_UP" -ge "$ended" ]; then
			break
		fi
		sleep 0.2
		xt_up
	done
	xt_console_has "$name" "$re"
}

# _xt_wait_state NAME SECS STATE_ERE: wait until _xt_list's state of NAME matches STATE_ERE.
_xt_wait_state() {
	local dl
	xt_up
	dl=$((XT_UP + $2))
	while :; do
		_xt_list "$1"
		[[ $_XT_STATE =~ ^($3)$ ]] && return 0
		xt_up
		[ "$XT_UP" -lt "$dl" ] || return 1
		sleep 0.2
	done
}
# xt_wait_end NAME [SECS=30]: wait until the domain is shut down or gone.
xt_wait_end() { _xt_wait_state "$1" "${2:-30}" 'shutdown|gone'; }
# xt_wait_gone NAME [SECS=30]: wait until the domain no longer exists.
xt_wait_gone() { _xt_wait_state "$1" "${2:-30}" gone; }

# xt_reason_name CODE: Xen's SHUTDOWN_* code (xen/include/public/sched.h) as a word.
xt_reason_name() {
	case "$1" in
	0) echo poweroff ;;
	1) echo reboot ;;
	2) echo suspend ;;
	3) echo crash ;;
	4) echo watchdog ;;
	5) echo soft_reset ;;
	*) echo unknown ;;
	esac
}

# _xt_reason NAME: why the recorded domid shut down, from two independent sources:
#  - Xen itself while the domain is still listed (preserved): the reason code of `xl list -v`;
#  - xl's monitor process, which logs "Domain N has shut down, reason code R 0x.." to
#    /var/log/xen/xl-NAME.log before it carries out on_poweroff/on_crash/on_reboot.
# Sets XT_REASON (the reason, "inconsistent:xen=A/xl=B" if they disagree, "running" or
# "unknown") and XT_REASON_SRC ("xen=A xl=B", "-" for a source that had no answer).
_xt_reason() {
	local name=$1 xen="" mon="" line dl
	XT_REASON_SRC=""
	_xt_list "$name"
	if [ "$_XT_STATE" = running ]; then
		XT_REASON=running
		return
	fi
	[[ $_XT_CODE =~ ^[0-9a-fA-F]+$ ]] && xen=$(xt_reason_name $((16#$_XT_CODE)))
	# The monitor logs the reason within milliseconds of the shutdown; allow it a few seconds.
	xt_up
	dl=$((XT_UP + 5))
	while [ -n "$XT_ID" ]; do
		while IFS= read -r line; do
			[[ $line =~ Domain\ $XT_ID\ has\ shut\ down,\ reason\ code\ ([0-9]+) ]] &&
				mon=$(xt_reason_name "${BASH_REMATCH[1]}")
		done <"/var/log/xen/xl-$name.log" 2>/dev/null
		[ -n "$mon" ] && break
		xt_up
		[ "$XT_UP" -lt "$dl" ] || break
		sleep 0.2
	done
	XT_REASON_SRC="xen=${xen:--} xl=${mon:--}"
	if [ -n "$xen" ] && [ -n "$mon" ] && [ "$xen" != "$mon" ]; then
		XT_REASON="inconsistent:xen=$xen/xl=$mon"
	else
		XT_REASON=${xen:-${mon:-unknown}}
	fi
}
# xt_shutdown_reason NAME: print the reason _xt_reason finds (see there).
xt_shutdown_reason() {
	_xt_reason "$1"
	echo "$XT_REASON"
}

# xt_restarted NAME: true if NAME now exists under a different domid than xt_create recorded,
# or xl's monitor logged a restart ("Done. Rebooting now").
xt_restarted() {
	local now line
	xt_id "$1"
	now=$(xl domid "$1" 2>/dev/null)
	[ -n "$now" ] && [ "$now" != "$XT_ID" ] && return 0
	while IFS= read -r line; do
		[[ $line == *"Done. Rebooting now"* ]] && return 0
	done <"/var/log/xen/xl-$1.log" 2>/dev/null
	return 1
}

# _xt_tree PID: PID and all its descendants, parents first.
_xt_tree() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1"); do _xt_tree "$c"; done
}

# xt_kill_tree PID: stop PID's whole process tree (so nothing spawns meanwhile), then kill it and
# reap PID. A killed client loop's nbdcopy must not outlive it: it keeps its connection to the
# guest's address, and when a later guest there resets its retransmission, its failure lands in
# the loop's files (the soak once counted such resets as the guest's, docs/RELIABILITY.md).
xt_kill_tree() {
	local p
	for p in $(_xt_tree "$1"); do kill -STOP "$p" 2>/dev/null; done
	for p in $(_xt_tree "$1"); do kill -KILL "$p" 2>/dev/null; done
	wait "$1" 2>/dev/null
}

# xt_triple_faults: number of `Triple fault` lines in Xen's log since this attempt started
# (the runner clears Xen's console ring before every attempt).
xt_triple_faults() {
	local n
	n=$(xl dmesg 2>/dev/null | grep -c 'Triple fault')
	echo "${n:-0}"
}

# xt_expect_end NAME REASON [SECS=30]: wait for the domain to end, then check that it ended with
# REASON, was not restarted and did not triple-fault. Sets XT_REASON (the reason seen),
# XT_REASON_SRC (which source said what, see _xt_reason) and XT_WHY (what was wrong; empty on
# success).
xt_expect_end() {
	local name=$1 want=$2 tf
	XT_REASON=""
	XT_REASON_SRC=""
	XT_WHY=""
	if ! xt_wait_end "$name" "${3:-30}"; then
		XT_REASON=running
		XT_WHY="still running after ${3:-30} s"
		return 1
	fi
	_xt_reason "$name"
	tf=$(xt_triple_faults)
	if [ "$tf" -gt 0 ]; then
		XT_WHY="Triple fault in xl dmesg (reason $XT_REASON)"
	elif xt_restarted "$name"; then
		XT_WHY="restarted under a new domid (was $(xt_domid "$name"), now $(xl domid "$name" 2>/dev/null))"
	elif [ "$XT_REASON" != "$want" ]; then
		XT_WHY="ended with reason $XT_REASON, expected $want"
	fi
	[ -z "$XT_WHY" ]
}

# xt_field LINE KEY: print the value of the first KEY=value token in LINE (values without
# spaces, such as the numbers of `xenrs memory:`).
xt_field() {
	local tok
	for tok in $1; do
		if [[ $tok == "$2="* ]]; then
			tok=${tok#*=}
			tok=${tok#\"}
			echo "${tok%\"}"
			return 0
		fi
	done
	return 1
}

# xt_destroy NAME: destroy the recorded domain if it still exists, wait until it is gone.
xt_destroy() {
	xt_id "$1"
	[ -n "$XT_ID" ] || return 0
	timeout 60 xl destroy "$XT_ID" >/dev/null 2>&1
	xt_wait_gone "$1" 20
}

# xt_dump NAME: the guest's state, console tail and xl's log tail, for the CI log.
xt_dump() {
	local name=$1
	echo "xt| ---- guest $name (domid $(xt_domid "$name")) state=$(xt_state "$name") ----"
	echo "xt| xl list -v: $(xt_xl_list_v "$name")"
	echo "xt| -- console $(xt_console "$name") (last 40 lines):"
	tr -d '\r' <"$(xt_console "$name")" 2>/dev/null | tail -n 40 | sed 's/^/xt|   /'
	echo "xt| -- /var/log/xen/xl-$name.log (last 15 lines):"
	tail -n 15 "/var/log/xen/xl-$name.log" 2>/dev/null | sed 's/^/xt|   /'
}
