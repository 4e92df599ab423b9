# xenstore-echo: dom0 writes /local/domain/<id>/data/echo-in and reads the same value back from
# data/echo-out (the guest's watch fired, it read and wrote xenstore); the console shows
# `xenrs echo: '<v>'`. Also checked: the services line (domid = xl's, evtchn=vector:<hex>,
# xenstore=ready, grant_frames=<n>/<max>), the vif enumerated by xenbus
# (`xenrs xenbus: device vif/0 backend=... backend-id=0 state=...`), and an unknown
# control/shutdown request is acknowledged ("") and ignored. With log=debug, the xenbus glue's
# watch on the back end's state node must have delivered an Input (`xenbus vif/0: back end
# Backend(...)`), and the grant-table self-test must have grown the table to a second frame.
# xt-timeout: 120
# Helpers core_*: tests/scenarios/lib/core.sh.
G=xt-echo
core_start "$G" vif=default cmdline="log=debug" || xt_fail "$CORE_WHY"
xt_id "$G"
id=$XT_ID
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
	result FAIL "${problems}$(xt_errors "$G")"
else
	result PASS "$n/4 values echoed; unknown request ignored and acknowledged; $vif; $CORE_SERVICES; ${gst#xenrs info: }"
fi
xt_destroy "$G"
