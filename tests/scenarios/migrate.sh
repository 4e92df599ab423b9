# migrate: 3 rounds of live migration to localhost. Transport: `xl migrate -s "" <dom> "xl
# migrate-receive"` (with an empty ssh command xl runs the "host" argument with sh -c, so the
# receiver is a local xl connected by pipes; no ssh). Each round the guest resumes as a NEW
# domain (new domid): `xenrs resumed n=<round> mode=new-domain mono_ns=<n>` (mono_ns strictly
# increasing), data/ready and the echo work. The receiving domain is first called
# <name>--incoming, so its console may go to guest-<name>--incoming.log: every
# guest-<name>*.log and `xl dmesg` (the port 0xE9 mirror) are searched.
# xt-timeout: 600
# Helpers core_*: tests/scenarios/lib/core.sh; mig_find: tests/scenarios/lib/migrate.sh.
G=xt-migrate
ROUNDS=3
core_start "$G" memory=16 || xt_fail "$CORE_WHY"
prev=0
times=""
xt_id "$G"
ids=$XT_ID
for r in $(seq 1 "$ROUNDS"); do
	xt_id "$G"
	old=$XT_ID
	xt_up
	t0=$XT_UP
	timeout 180 xl migrate -s "" "$G" "xl migrate-receive" >"$XT_RUN/$G.migrate.log" 2>&1 || xt_fail "round $r: xl migrate failed: $(tail -n 4 "$XT_RUN/$G.migrate.log" | tr '\n' ' ')"
	xt_track "$G"
	new=$XT_ID
	if [ -z "$new" ] || [ "$new" = "$old" ]; then
		xt_fail "round $r: after xl migrate the domain is '$new' (was $old): $(tail -n 3 "$XT_RUN/$G.migrate.log" | tr '\n' ' ')"
	fi
	ids+=" -> $new"
	line=""
	xt_up
	dl=$((XT_UP + 30))
	while [ "$XT_UP" -lt "$dl" ]; do
		line=$(mig_find "^xenrs resumed n=$r mode=new-domain mono_ns=[0-9]+\$") && break
		sleep 0.3
		xt_up
	done
	if [ -z "$line" ]; then
		xt_fail "round $r: no 'xenrs resumed n=$r mode=new-domain' line from domid $new; $(mig_find '^xenrs [a-z]+ error:')"
	fi
	mono=$(xt_field "$line" mono_ns)
	if [ "$mono" -le "$prev" ]; then
		xt_fail "round $r: mono_ns=$mono is not above $prev"
	fi
	prev=$mono
	{ core_wait_ready "$G" 20 && core_echo "$G" "mig-$r-$RANDOM" 10; } || xt_fail "round $r: data/ready or echo failed in domid $new; $(mig_find '^xenrs [a-z]+ error:')"
	core_since "$t0"
	times+="${CORE_SINCE}s "
done
leftover=$(xl list 2>/dev/null | grep -e '--incoming' -e '--migratedaway')
if [ -n "$leftover" ]; then
	result FAIL "a leftover --incoming/--migratedaway domain: $leftover"
else
	result PASS "$ROUNDS live migrations via xl migrate -s \"\" <dom> \"xl migrate-receive\": domid $ids; last mono_ns=$prev; per round: $times"
fi
xt_destroy "$G"
