# xenstore-echo: dom0 writes /local/domain/<id>/data/echo-in and reads the same value back from
# data/echo-out (the guest's watch fired, it read and wrote xenstore); the console shows
# `xenrs echo: '<v>'`. Also checked: the services line (domid = xl's, evtchn=vector:<hex>,
# xenstore=ready, grant_frames=<n>/<max>), the vif enumerated by xenbus
# (`xenrs xenbus: device vif/0 backend=... backend-id=0 state=...`), and an unknown
# control/shutdown request is acknowledged ("") and ignored. With log=debug, the xenbus glue's
# watch on the back end's state node must have delivered an Input (`xenbus vif/0: back end
# Backend(...)`), and the grant-table self-test must have grown the table to a second frame.
# xt-timeout: 120
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
G=xt-echo
if ! core_start "$G" vif=default cmdline="log=debug"; then
	result xenstore-echo FAIL "$CORE_WHY"
	exit 0
fi
core_id "$G"
id=$CORE_ID
problems=""
[ "$(xt_field "$CORE_SERVICES" domid)" = "$id" ] || problems+="services line says domid=$(xt_field "$CORE_SERVICES" domid), xl says $id; "
[ "$(xt_field "$CORE_SERVICES" xenstore)" = ready ] || problems+="xenstore= is not 'ready'; "
[[ $(xt_field "$CORE_SERVICES" evtchn) =~ ^vector:0x[0-9a-f]+$ ]] || problems+="evtchn= is not vector:<hex>; "
[[ $(xt_field "$CORE_SERVICES" grant_frames) =~ ^[1-9][0-9]*/[1-9][0-9]*$ ]] || problems+="grant_frames= is not <n>/<max>; "
n=0
# (No backslash: xenstore-write unescapes \-sequences and xenstore-read escapes them again.)
for v in hello "two words" "v$RANDOM-$RANDOM" "it's \"quoted\""; do
	if core_echo "$G" "$v" 10; then
		n=$((n + 1))
	else
		problems+="echo of '$v' did not come back in data/echo-out within 10 s; "
	fi
done
xt_wait_console "$G" "^xenrs echo: 'hello'\$" 5 || problems+="no console line \"xenrs echo: 'hello'\"; "
xt_wait_console "$G" "^xenrs echo: 'two words'\$" 5 || problems+="no console line \"xenrs echo: 'two words'\"; "
xenstore-write "/local/domain/$id/control/shutdown" bogus
if xt_wait_console "$G" "^xenrs control: ignoring unknown request 'bogus'\$" 10; then
	ack=$(xenstore-read "/local/domain/$id/control/shutdown" 2>/dev/null)
	[ -z "$ack" ] || problems+="control/shutdown still reads '$ack' (not acknowledged); "
else
	problems+="no \"xenrs control: ignoring unknown request 'bogus'\" line; "
fi
[ "$(xt_state "$G")" = running ] || problems+="guest not running after the unknown request; "
vif=""
if xt_wait_console "$G" "^xenrs xenbus: device vif/0 backend=/local/domain/0/backend/vif/$id/0 backend-id=0 state=[A-Za-z]+\$" 5; then
	vif=$XT_MATCH
else
	problems+="no 'xenrs xenbus: device vif/0 backend=/local/domain/0/backend/vif/$id/0 backend-id=0 state=...' line; "
fi
xt_console_has "$G" '^xenrs debug: xenbus vif/0: back end Backend\([A-Za-z]+\)$' ||
	problems+="no debug line 'xenbus vif/0: back end Backend(<state>)' from the back-end state watch; "
if xt_console_has "$G" '^xenrs info: grants: self-test issued ([0-9]+) grants \(table 1 -> 2 frames\), ended ([0-9]+), 0 active$' &&
	[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]; then
	gst=$XT_MATCH
else
	problems+="the grant self-test did not grow the table to 2 frames and end every grant: $XT_MATCH; "
fi
if [ -n "$problems" ]; then
	result xenstore-echo FAIL "${problems}$(core_errors "$G")"
else
	result xenstore-echo PASS "$n/4 values echoed; unknown request ignored and acknowledged; $vif; $CORE_SERVICES; ${gst#xenrs info: }"
fi
xt_destroy "$G"
