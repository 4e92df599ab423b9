# shellcheck shell=bash disable=SC2034 # the HP_* results are for the scenarios
# Shared helpers of the hotplug scenarios (vif-detach-attach, blkback-detach-writes). The runner
# sources every tests/scenarios/lib/*.sh after lib.sh and before each scenario. They rely on the
# guest's hotplug contract (docs/CONSOLE.md): `xenrs xenbus: device <class>/<id> added|removed`
# lines, and its grant counters in xenstore, data/grants =
# `active=<n> deferred=<n> leaked=<n> free=<n> frames=<n>`, kept current by the guest.
HP_WHY=""
HP_GRANTS=""
# The writer that records acknowledged writes (tests/scenarios/lib/nbd-ack-writer.py).
HP_WRITER=${HP_WRITER:-/harness/scenarios/lib/nbd-ack-writer.py}

# hp_xl SUBCOMMAND NAME ARGS...: `xl SUBCOMMAND <NAME's domid> ARGS` with a 120 s limit; sets
# HP_WHY (with xl's last lines) on failure.
hp_xl() {
	local sub=$1 name=$2 log
	shift 2
	xt_id "$name"
	log=$XT_RUN/$name.$sub.log
	if ! timeout 120 xl "$sub" "$XT_ID" "$@" >"$log" 2>&1; then
		HP_WHY="xl $sub $XT_ID $* failed: $(tail -n 3 "$log" | tr '\n' ' ')"
		return 1
	fi
}

# hp_grants NAME: set HP_GRANTS to NAME's data/grants ("" if unreadable).
hp_grants() {
	xt_id "$1"
	HP_GRANTS=$(xenstore-read "/local/domain/$XT_ID/data/grants" 2>/dev/null)
}

# hp_grants_settled NAME SECS: wait until data/grants shows no deferred grant and reads the same
# twice, 1 s apart (the guest is idle); HP_GRANTS holds it, else HP_WHY.
hp_grants_settled() {
	local dl prev=""
	xt_up
	dl=$((XT_UP + $2))
	while :; do
		hp_grants "$1"
		if [[ $HP_GRANTS =~ ^active=[0-9]+\ deferred=0\ leaked=[0-9]+\  ]] && [ "$HP_GRANTS" = "$prev" ]; then
			return 0
		fi
		prev=$HP_GRANTS
		xt_up
		if [ "$XT_UP" -ge "$dl" ]; then
			HP_WHY="data/grants is '${HP_GRANTS:-missing}' after ${2} s"
			return 1
		fi
		sleep 1
	done
}

# _hp_counts VALUE: print "active deferred leaked" of a data/grants value.
_hp_counts() {
	local a d l
	a=$(xt_field "$1" active)
	d=$(xt_field "$1" deferred)
	l=$(xt_field "$1" leaked)
	echo "$a $d $l"
}

# hp_grants_back NAME BASE SECS: wait until NAME's grants in use, deferred and leaked equal those
# of BASE (a data/grants value); HP_GRANTS holds the last reading.
hp_grants_back() {
	local dl want
	want=$(_hp_counts "$2")
	xt_up
	dl=$((XT_UP + $3))
	while :; do
		hp_grants "$1"
		[ "$(_hp_counts "$HP_GRANTS")" = "$want" ] && return 0
		xt_up
		[ "$XT_UP" -lt "$dl" ] || return 1
		sleep 1
	done
}

# hp_no_frontend NAME CLASS ID: NAME's device/CLASS/ID must be gone (after a detach); else HP_WHY.
hp_no_frontend() {
	local v
	xt_id "$1"
	if v=$(xenstore-ls "/local/domain/$XT_ID/device/$2/$3" 2>/dev/null) ; then
		HP_WHY="device/$2/$3 is still in xenstore after the detach: $(head -n 3 <<<"$v" | tr '\n' ' ')"
		return 1
	fi
}

# hp_stray NAME CLASS: every entry under NAME's device/CLASS must be a whole device (have a
# backend node): a front end that wrote its state after the toolstack removed its directory
# leaves a stray device/CLASS/<id>/state behind. Else HP_WHY.
hp_stray() {
	local id e bad=""
	xt_id "$1"
	for e in $(xenstore-list "/local/domain/$XT_ID/device/$2" 2>/dev/null); do
		xenstore-read "/local/domain/$XT_ID/device/$2/$e/backend" >/dev/null 2>&1 || bad+="$e "
	done
	if [ -n "$bad" ]; then
		HP_WHY="stray device/$2 entries without a backend node: $bad"
		return 1
	fi
}

# hp_echo IP TAG: one line through the guest's TCP echo service (port 7) must come back as sent;
# else HP_WHY.
hp_echo() {
	local want got
	want="xenrs-hotplug-$2-$RANDOM$RANDOM"
	got=$(printf '%s\n' "$want" | timeout 40 socat -t 10 - "TCP:$1:7,connect-timeout=20" 2>"$XT_RUN/hp-echo.err")
	if [ "$got" != "$want" ]; then
		HP_WHY="sent '$want', got '${got:0:80}' ($(tr '\n' ' ' <"$XT_RUN/hp-echo.err" | cut -c1-120))"
		return 1
	fi
}
