# reboot: with on_reboot="restart", `xl reboot` makes the guest print
# `xenrs control: request 'reboot'` and `xenrs rebooting` and end with reason reboot; xl
# restarts it under a NEW domid, whose console shows the banner and the services line again.
# xt-timeout: 150
# --- core helpers (inlined in each issue-3 scenario: the harness ships only lib.sh to dom0) ---
# Forks are slow in this dom0 (0.2-0.5 s each): these read files with bash builtins and run
# only the xl/xenstore commands that are needed.
# core_up: set CORE_UP to dom0's uptime in whole seconds.
core_up() {
	local f _
	read -r f _ </proc/uptime
	CORE_UP=${f%.*}
}
# core_id NAME: set CORE_ID to NAME's recorded domid (xt_create / core_track).
core_id() {
	CORE_ID=""
	[ -r "$XT_RUN/$1.domid" ] && read -r CORE_ID <"$XT_RUN/$1.domid"
	return 0
}
# core_track NAME: record NAME's current domid (it changes on restore/migrate/reboot), so the
# xt_* helpers follow the domain. Sets CORE_ID.
core_track() {
	CORE_ID=$(xl domid "$1" 2>/dev/null)
	[ -n "$CORE_ID" ] && echo "$CORE_ID" >"$XT_RUN/$1.domid"
}
# core_start NAME [key=value]...: xt_create with an EMPTY command line (then=block is the
# default), then wait for `xenrs services:` and data/ready=1. Sets CORE_SERVICES, or CORE_WHY.
core_start() {
	local name=$1
	shift
	CORE_WHY=""
	if ! xt_create "$name" cmdline="" "$@"; then
		CORE_WHY="xl create failed"
		return 1
	fi
	if ! xt_wait_console "$name" '^xenrs services: ' 30; then
		CORE_WHY="no 'xenrs services:' line (state $(xt_state "$name")); $(core_errors "$name")"
		return 1
	fi
	CORE_SERVICES=$XT_MATCH
	if ! core_wait_ready "$name" 20; then
		CORE_WHY="data/ready never became 1; $(core_errors "$name")"
		return 1
	fi
}
# core_wait_ready NAME [SECS=20]: wait until data/ready of NAME's recorded domid is 1.
core_wait_ready() {
	local dl v
	core_id "$1"
	core_up
	dl=$((CORE_UP + ${2:-20}))
	while [ "$CORE_UP" -lt "$dl" ]; do
		v=$(xenstore-read "/local/domain/$CORE_ID/data/ready" 2>/dev/null)
		[ "$v" = 1 ] && return 0
		sleep 0.2
		core_up
	done
	return 1
}
# core_echo NAME VALUE [SECS=10]: write data/echo-in of NAME's recorded domid, wait until
# data/echo-out reads VALUE.
core_echo() {
	local dl got
	core_id "$1"
	xenstore-write "/local/domain/$CORE_ID/data/echo-in" "$2" || return 1
	core_up
	dl=$((CORE_UP + ${3:-10}))
	while [ "$CORE_UP" -lt "$dl" ]; do
		got=$(xenstore-read "/local/domain/$CORE_ID/data/echo-out" 2>/dev/null)
		[ "$got" = "$2" ] && return 0
		sleep 0.2
		core_up
	done
	return 1
}
# core_errors NAME: the guest's error/PANIC/FAULT lines, folded (for FAIL details).
core_errors() {
	tr -d '\r' <"$(xt_console "$1")" 2>/dev/null | grep -E '^xenrs ([a-z]+ error:|PANIC|FAULT|FATAL)' |
		head -n 5 | tr '\n' ' '
}
# core_since T0: set CORE_SINCE to whole seconds since uptime T0 (from core_up).
core_since() {
	core_up
	CORE_SINCE=$((CORE_UP - $1))
}
# --- end of core helpers ---
G=xt-reboot
if ! core_start "$G" on_reboot=restart; then
	result reboot FAIL "$CORE_WHY"
	exit 0
fi
core_id "$G"
old=$CORE_ID
if ! timeout 30 xl reboot "$G" >"$XT_RUN/$G.reboot.log" 2>&1; then
	result reboot FAIL "xl reboot failed: $(tail -n 3 "$XT_RUN/$G.reboot.log" | tr '\n' ' ')"
	exit 0
fi
if ! xt_wait_console "$G" '^xenrs rebooting$' 15; then
	result reboot FAIL "no 'xenrs rebooting' line; $(core_errors "$G")"
	exit 0
fi
# The old domain's reason (xl's monitor log; the domain itself is gone or going).
reason=$(xt_shutdown_reason "$G")
new=""
core_up
dl=$((CORE_UP + 30))
while [ "$CORE_UP" -lt "$dl" ]; do
	new=$(xl domid "$G" 2>/dev/null)
	[ -n "$new" ] && [ "$new" != "$old" ] && break
	new=""
	sleep 0.3
	core_up
done
if [ -z "$new" ]; then
	result reboot FAIL "no new domain called $G within 30 s of 'xenrs rebooting' (reason $reason)"
	exit 0
fi
core_track "$G"
if ! xt_wait_console "$G" "^xenrs services: domid=$new " 30; then
	result reboot FAIL "restarted as domid $new but no services line with domid=$new; $(core_errors "$G")"
	exit 0
fi
# A banner must follow the last 'xenrs rebooting' line (xenconsoled appends the new domain's
# output to the same log; should it start a fresh log, any banner is the new domain's).
n=0
last_reboot=0
banner_after=""
while IFS= read -r line || [ -n "$line" ]; do
	n=$((n + 1))
	line=${line%$'\r'}
	case "$line" in
	'xenrs rebooting') last_reboot=$n banner_after="" ;;
	'xenrs '[0-9]*' booting: '*) [ -n "$banner_after" ] || banner_after=$line ;;
	esac
done <"$(xt_console "$G")"
problems=""
[ "$reason" = reboot ] || problems+="old domain $old ended with reason $reason, expected reboot; "
[ -n "$banner_after" ] || problems+="no banner after 'xenrs rebooting' (line $last_reboot); "
xt_console_has "$G" "^xenrs control: request 'reboot'\$" || problems+="no \"xenrs control: request 'reboot'\" line; "
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
core_wait_ready "$G" 20 || problems+="the restarted domain never wrote data/ready; "
if [ -n "$problems" ]; then
	result reboot FAIL "${problems}$(core_errors "$G")"
else
	result reboot PASS "domid $old -> $new, reason reboot, banner again: $banner_after"
fi
xt_destroy "$G"
