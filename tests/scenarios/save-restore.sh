# save-restore: 10 rounds of `xl save` + `xl restore` of one guest. After each restore the
# guest (a NEW domain) prints `xenrs resumed n=<round> mode=new-domain mono_ns=<n>`, mono_ns
# strictly increases from round to round, data/ready comes back, and the xenstore echo works.
# xt-timeout: 900
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
G=xt-saverestore
ROUNDS=10
if ! core_start "$G" memory=16; then
	result save-restore FAIL "$CORE_WHY"
	exit 0
fi
f="$XT_RUN/$G.save"
prev=0
first=""
times=""
for r in $(seq 1 "$ROUNDS"); do
	core_up
	t0=$CORE_UP
	if ! timeout 120 xl save "$G" "$f" >"$XT_RUN/$G.save.log" 2>&1; then
		result save-restore FAIL "round $r: xl save failed: $(tail -n 3 "$XT_RUN/$G.save.log" | tr '\n' ' ') $(core_errors "$G")"
		exit 0
	fi
	core_since "$t0"
	ts=$CORE_SINCE
	core_up
	t1=$CORE_UP
	if ! timeout 120 xl restore "$f" >"$XT_RUN/$G.restore.log" 2>&1; then
		result save-restore FAIL "round $r: xl restore failed: $(tail -n 3 "$XT_RUN/$G.restore.log" | tr '\n' ' ')"
		exit 0
	fi
	rm -f "$f"
	core_track "$G"
	if ! xt_wait_console "$G" "^xenrs resumed n=$r mode=new-domain mono_ns=[0-9]+\$" 30; then
		result save-restore FAIL "round $r: no 'xenrs resumed n=$r mode=new-domain mono_ns=<n>' line (domid $CORE_ID, state $(xt_state "$G")); $(core_errors "$G")"
		exit 0
	fi
	mono=$(xt_field "$XT_MATCH" mono_ns)
	if [ "$mono" -le "$prev" ]; then
		result save-restore FAIL "round $r: mono_ns=$mono is not above the previous round's $prev"
		exit 0
	fi
	prev=$mono
	[ -n "$first" ] || first=$mono
	if ! core_wait_ready "$G" 20; then
		result save-restore FAIL "round $r: data/ready not 1 in the restored domain $CORE_ID; $(core_errors "$G")"
		exit 0
	fi
	if ! core_echo "$G" "round-$r-$RANDOM" 10; then
		result save-restore FAIL "round $r: echo did not come back from the restored domain $CORE_ID; $(core_errors "$G")"
		exit 0
	fi
	core_since "$t1"
	times+="${ts}+${CORE_SINCE}s "
done
if [ "$(xt_console_count "$G" 'mode=cancelled')" != 0 ]; then
	result save-restore FAIL "a resume reported mode=cancelled"
elif [ "$(xt_triple_faults)" != 0 ]; then
	result save-restore FAIL "Triple fault in xl dmesg"
else
	result save-restore PASS "$ROUNDS rounds, now domid $CORE_ID; mono_ns $first -> $prev; save+restore(+echo) per round: $times"
fi
xt_destroy "$G"
