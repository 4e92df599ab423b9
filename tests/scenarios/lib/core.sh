# shellcheck shell=bash disable=SC2034 # the CORE_* results are for the scenarios
# Shared helpers of the core-services scenarios (shutdown, reboot, xenstore-echo, save-restore,
# checkpoint, migrate, idle-cpu). The runner sources every tests/scenarios/lib/*.sh after lib.sh
# and before each scenario. They rely on the guest contract in docs/CONSOLE.md: the guest prints `xenrs services:` and writes
# data/ready=1 once its core services are up, and echoes data/echo-in into data/echo-out.
# Forks are slow in this dom0 (0.2-0.5 s each): these read files with bash builtins and run
# only the xl/xenstore commands that are needed. Domids: xt_id and xt_track (lib.sh).
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
		CORE_WHY="no 'xenrs services:' line (state $(xt_state "$name")); $(xt_errors "$name")"
		return 1
	fi
	CORE_SERVICES=$XT_MATCH
	if ! core_wait_ready "$name" 20; then
		CORE_WHY="data/ready never became 1; $(xt_errors "$name")"
		return 1
	fi
}
# core_wait_ready NAME [SECS=20]: wait until data/ready of NAME's recorded domid is 1. Sets XT_ID.
core_wait_ready() {
	local dl v
	xt_id "$1"
	xt_up
	dl=$((XT_UP + ${2:-20}))
	while [ "$XT_UP" -lt "$dl" ]; do
		v=$(xenstore-read "/local/domain/$XT_ID/data/ready" 2>/dev/null)
		[ "$v" = 1 ] && return 0
		sleep 0.2
		xt_up
	done
	return 1
}
# core_echo NAME VALUE [SECS=10]: write data/echo-in of NAME's recorded domid, wait until
# data/echo-out reads VALUE. Sets XT_ID.
core_echo() {
	local dl got
	xt_id "$1"
	xenstore-write "/local/domain/$XT_ID/data/echo-in" "$2" || return 1
	xt_up
	dl=$((XT_UP + ${3:-10}))
	while [ "$XT_UP" -lt "$dl" ]; do
		got=$(xenstore-read "/local/domain/$XT_ID/data/echo-out" 2>/dev/null)
		[ "$got" = "$2" ] && return 0
		sleep 0.2
		xt_up
	done
	return 1
}
# core_since T0: set CORE_SINCE to whole seconds since uptime T0 (an XT_UP from xt_up).
core_since() {
	xt_up
	CORE_SINCE=$((XT_UP - $1))
}
