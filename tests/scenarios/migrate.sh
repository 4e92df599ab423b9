# migrate: 3 rounds of live migration to localhost. Transport: `xl migrate -s "" <dom> "xl
# migrate-receive"` (with an empty ssh command xl runs the "host" argument with sh -c, so the
# receiver is a local xl connected by pipes; no ssh). Each round the guest resumes as a NEW
# domain (new domid): `xenrs resumed n=<round> mode=new-domain mono_ns=<n>` (mono_ns strictly
# increasing), data/ready and the echo work. The receiving domain is first called
# <name>--incoming, so its console may go to guest-<name>--incoming.log: every
# guest-<name>*.log and `xl dmesg` (the port 0xE9 mirror) are searched.
# xt-timeout: 600
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
G=xt-migrate
ROUNDS=3
if ! core_start "$G" memory=16; then
	result migrate FAIL "$CORE_WHY"
	exit 0
fi
# mig_find ERE: print the first matching line of any console log of $G or of xl dmesg.
mig_find() {
	local f line
	for f in "$XT_CONSOLE_DIR"/guest-"$G"*.log; do
		[ -r "$f" ] || continue
		while IFS= read -r line || [ -n "$line" ]; do
			line=${line%$'\r'}
			if [[ $line =~ $1 ]]; then
				echo "$line"
				return 0
			fi
		done <"$f"
	done
	while IFS= read -r line; do
		line=${line%$'\r'}
		[[ $line =~ ^\(d[0-9]+\)\ (.*)$ ]] && line=${BASH_REMATCH[1]}
		if [[ $line =~ $1 ]]; then
			echo "$line"
			return 0
		fi
	done < <(xl dmesg 2>/dev/null)
	return 1
}
prev=0
times=""
core_id "$G"
ids=$CORE_ID
for r in $(seq 1 "$ROUNDS"); do
	core_id "$G"
	old=$CORE_ID
	core_up
	t0=$CORE_UP
	if ! timeout 180 xl migrate -s "" "$G" "xl migrate-receive" >"$XT_RUN/$G.migrate.log" 2>&1; then
		result migrate FAIL "round $r: xl migrate failed: $(tail -n 4 "$XT_RUN/$G.migrate.log" | tr '\n' ' ')"
		exit 0
	fi
	core_track "$G"
	new=$CORE_ID
	if [ -z "$new" ] || [ "$new" = "$old" ]; then
		result migrate FAIL "round $r: after xl migrate the domain is '$new' (was $old): $(tail -n 3 "$XT_RUN/$G.migrate.log" | tr '\n' ' ')"
		exit 0
	fi
	ids+=" -> $new"
	line=""
	core_up
	dl=$((CORE_UP + 30))
	while [ "$CORE_UP" -lt "$dl" ]; do
		line=$(mig_find "^xenrs resumed n=$r mode=new-domain mono_ns=[0-9]+\$") && break
		sleep 0.3
		core_up
	done
	if [ -z "$line" ]; then
		result migrate FAIL "round $r: no 'xenrs resumed n=$r mode=new-domain' line from domid $new; $(mig_find '^xenrs [a-z]+ error:')"
		exit 0
	fi
	mono=$(xt_field "$line" mono_ns)
	if [ "$mono" -le "$prev" ]; then
		result migrate FAIL "round $r: mono_ns=$mono is not above $prev"
		exit 0
	fi
	prev=$mono
	if ! core_wait_ready "$G" 20 || ! core_echo "$G" "mig-$r-$RANDOM" 10; then
		result migrate FAIL "round $r: data/ready or echo failed in domid $new; $(mig_find '^xenrs [a-z]+ error:')"
		exit 0
	fi
	core_since "$t0"
	times+="${CORE_SINCE}s "
done
leftover=$(xl list 2>/dev/null | grep -e '--incoming' -e '--migratedaway')
if [ -n "$leftover" ]; then
	result migrate FAIL "a leftover --incoming/--migratedaway domain: $leftover"
else
	result migrate PASS "$ROUNDS live migrations via xl migrate -s \"\" <dom> \"xl migrate-receive\": domid $ids; last mono_ns=$prev; per round: $times"
fi
xt_destroy "$G"
