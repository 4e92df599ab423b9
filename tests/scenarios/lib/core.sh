# Shared helpers of the core-services scenarios (shutdown, reboot, xenstore-echo, save-restore,
# checkpoint, migrate, idle-cpu). The runner sources every tests/scenarios/lib/*.sh after lib.sh
# and before each scenario. They rely on the guest contract in docs/CONSOLE.md: the guest prints `xenrs services:` and writes
# data/ready=1 once its core services are up, and echoes data/echo-in into data/echo-out.
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
