#!/bin/bash
# Scenario runner of the real-Xen harness (dom0 side), started by /init once Xen's daemons
# and xenbr0 are up. Configuration: /harness/run.conf (written by tests/harness/run-suite.sh).
#
#   runner.sh suite        run $XT_SCENARIOS (built-in, /harness/scenarios/NAME.sh) and then
#                          $XT_USER_SCENARIOS (/harness/user/NAME.sh), in order
#   runner.sh interactive  `./run.sh`: with then=poweroff in $XT_GUEST_CMDLINE, create one guest
#                          with `xl create -c` (console on this terminal); else serve.sh: a
#                          networked guest reachable from the host, and a command loop
#
# Suite output, all on the console:
#   xt: ...                                progress
#   xt| ...                                debug dumps (guest console tail, xl dmesg tail)
#   RESULT <name> PASS|FAIL <details>      after each scenario attempt
#   RESULT <name> FLAKE <triple fault>     an attempt whose guest triple-faulted (retried once)
#   XT-FINAL-BEGIN ... XT-FINAL-END        all counted results again, then
#                                          "N passed, N failed" and "flakes: N"

# shellcheck source=/dev/null disable=SC2153 # XT_SCENARIOS etc. come from run.conf
. /harness/run.conf
# shellcheck source=tests/harness/dom0/lib.sh
. /harness/lib.sh

MODE=${1:-suite}
DEFAULT_TIMEOUT=${XT_SCENARIO_TIMEOUT:-120}
FINAL="$XT_RUN/final"
PASSED=0
FAILED=0
FLAKES=0
: >"$FINAL"

# scenario_timeout FILE: the "# xt-timeout: SECS" header of a scenario, else the default.
scenario_timeout() {
	local t
	t=$(sed -n -E 's/^#[[:space:]]*xt-timeout:[[:space:]]*([0-9]+).*/\1/p' "$1" | head -n 1)
	echo "${t:-$DEFAULT_TIMEOUT}"
}

# destroy_all_guests: leave no domU behind for the next scenario, and none of its disk and scratch
# files ($XT_DISKS, in RAM): xl destroy has run the disks' hotplug removal (loop devices detached).
destroy_all_guests() {
	local id
	for id in $(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0 {print $2}'); do
		timeout 60 xl destroy "$id" >/dev/null 2>&1 || echo "xt: WARNING: xl destroy $id failed"
	done
	rm -rf "$XT_DISKS"
}

# triple_fault_state: the first `Triple fault` report in Xen's log and the vCPU state Xen dumped
# after it, folded onto one line.
triple_fault_state() {
	xl dmesg 2>/dev/null | tr -d '\r' | grep -A 16 -m 1 'Triple fault' | sed -E 's/^\(XEN\) ?//' |
		tr -s ' \n' ' |' | cut -c1-900
}

# timeout_evidence: after a scenario was killed for its time limit, one line for its RESULT: the
# last progress line it printed and, from each of its running guests, the NBD and disk lines of a
# status dump (xenstore `data/dump`, docs/CONSOLE.md) taken now. The CI log shows only RESULT lines.
timeout_evidence() {
	local g id log n i out=""
	[ -s "$XT_RUN/last-step" ] && out+="last step: $(head -n 1 "$XT_RUN/last-step"); "
	for g in $(sort -u "$XT_RUN/guests" 2>/dev/null); do
		[ "$(xt_state "$g")" = running ] || continue
		id=$(xt_domid "$g")
		log=$(xt_console "$g")
		n=$(tr -d '\r' <"$log" 2>/dev/null | grep -c '^xenrs dump: end')
		xenstore-write "/local/domain/$id/data/dump" "timeout" 2>/dev/null || continue
		for ((i = 0; i < 20; i++)); do
			[ "$(tr -d '\r' <"$log" 2>/dev/null | grep -c '^xenrs dump: end')" -gt "$n" ] && break
			sleep 0.5
		done
		# This dump's lines only (after the n-th end line), each cut to 400 characters.
		out+="$g dump: $(tr -d '\r' <"$log" | awk -v n="$n" '/^xenrs dump: end/ { e++; next } e >= n && /^xenrs dump: (clock|nbd|blk |net timer|vif)/ { print substr($0, 13, 400) }' | head -n 8 | tr '\n' '|' | cut -c1-1600); "
	done
	echo "$out"
}

# dump_attempt: everything needed to debug a failed attempt from the CI log alone.
dump_attempt() {
	local g
	sort -u "$XT_RUN/guests" 2>/dev/null | while read -r g; do
		xt_dump "$g"
	done
	echo "xt| ---- xl dmesg (this attempt, last 60 lines) ----"
	xl dmesg 2>/dev/null | tr -d '\r' | tail -n 60 | sed 's/^/xt|   /'
	echo "xt| ---- dom0 dmesg (last 10 lines) ----"
	dmesg 2>/dev/null | tail -n 10 | sed 's/^/xt|   /'
}

# emit FILE: print and count the RESULT lines of one finished attempt.
emit() {
	local line
	while IFS= read -r line; do
		echo "$line"
		echo "$line" >>"$FINAL"
		case "$line" in
		"RESULT "*" PASS"*) PASSED=$((PASSED + 1)) ;;
		*) FAILED=$((FAILED + 1)) ;;
		esac
	done <"$1"
}

USER_SEQ=0
# start_user_guest NAME: the fresh default guest of a user scenario; exports the XT_* variables.
start_user_guest() {
	USER_SEQ=$((USER_SEQ + 1))
	XT_DOMAIN="xt-user-$USER_SEQ"
	XT_IP="169.254.77.$((10 + USER_SEQ))"
	XT_CONSOLE_LOG=$(xt_console "$XT_DOMAIN")
	export XT_DOMAIN XT_IP XT_CONSOLE_LOG XT_GUEST_KERNEL
	if ! xt_create "$XT_DOMAIN" memory="${XT_USER_MEMORY:-32}" \
		cmdline="${XT_USER_CMDLINE:-then=block} ip=$XT_IP/24" vif=default; then
		result "$1" FAIL "could not create the default guest $XT_DOMAIN"
		return 1
	fi
	export XT_DOMID
	if ! xt_wait_console "$XT_DOMAIN" '^xenrs boot complete' 30; then
		result "$1" FAIL "default guest $XT_DOMAIN (domid $XT_DOMID) did not print 'xenrs boot complete' within 30 s (state $(xt_state "$XT_DOMAIN"))"
		return 1
	fi
	xt_log "default guest $XT_DOMAIN domid=$XT_DOMID ip=$XT_IP is up"
}

# run_scenario NAME FILE builtin|user
run_scenario() {
	local name=$1 file=$2 kind=$3 secs attempt rc t0 tf state res
	secs=$(scenario_timeout "$file")
	for attempt in 1 2; do
		res="$XT_RUN/results.$name.$attempt"
		: >"$res"
		: >"$XT_RUN/guests"
		: >"$XT_RUN/last-step"
		xl dmesg -c >/dev/null 2>&1 # Xen's ring now holds only this attempt (the serial log has all)
		echo "xt: ==== scenario $name (attempt $attempt, timeout ${secs} s) ===="
		xt_up
		t0=$XT_UPF
		rc=0
		export XT_SCENARIO=$name XT_RESULTS=$res XT_ATTEMPT=$attempt
		rm -f "$XT_RUN/xt-triple-faults-handled"
		if [ "$kind" = user ] && ! start_user_guest "$name"; then
			rc=0
		else
			# lib.sh, then the shared scenario helpers (tests/scenarios/lib/*.sh), then the scenario.
			# shellcheck disable=SC2016 # $1 expands in the child shell
			timeout -k 5 "$secs" bash -c '. /harness/lib.sh || exit 99
				for l in /harness/scenarios/lib/*.sh; do [ -e "$l" ] && { . "$l" || exit 99; }; done
				. "$1"' "xt-$name" "$file"
			rc=$?
		fi
		tf=$(xt_triple_faults)
		# A counted scenario that writes $XT_RUN/xt-triple-faults-handled (the soak: the rounds it
		# ran again on a new guest) handled that many; any beyond them get the usual retry.
		handled=$tf
		[ -r "$XT_RUN/xt-triple-faults-handled" ] && handled=$(cat "$XT_RUN/xt-triple-faults-handled")
		[[ $handled =~ ^[0-9]+$ ]] || handled=0
		if [ "$tf" -gt 0 ] && [ "$tf" -le "$handled" ] && grep -q '^# xt-triple-faults: counted' "$file"; then
			# The scenario (bench: many guests started at once) leaves a guest that
			# triple-faulted out of its figures and says so; a retry would cost its
			# whole run again. Still loud and counted.
			state=$(triple_fault_state)
			echo "RESULT $name FLAKE $state (counted, not retried: the scenario leaves that guest out)"
			echo "RESULT $name FLAKE $state (counted, not retried: the scenario leaves that guest out)" >>"$FINAL"
			FLAKES=$((FLAKES + 1))
			tf=0
		fi
		if [ "$tf" -gt 0 ] && [ "$attempt" = 1 ]; then
			state=$(triple_fault_state)
			echo "RESULT $name FLAKE $state"
			echo "RESULT $name FLAKE $state" >>"$FINAL"
			FLAKES=$((FLAKES + 1))
			echo "xt: $name: a guest triple-faulted (possibly the emulator's rare SVM flake); its results are dropped, retrying ONCE"
			dump_attempt
			destroy_all_guests
			continue
		fi
		if [ "$tf" -gt 0 ]; then
			echo "RESULT $name FAIL triple fault again on the retry: $(triple_fault_state)" >>"$res"
		fi
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			echo "RESULT $name FAIL timed out after $secs s; $(timeout_evidence)" >>"$res"
		elif ! [ -s "$res" ]; then
			echo "RESULT $name FAIL the scenario reported no result (exit status $rc)" >>"$res"
		elif [ $rc -ne 0 ] && ! grep -q '^RESULT [^ ]* FAIL' "$res"; then
			echo "RESULT $name FAIL the scenario script exited with status $rc" >>"$res"
		fi
		emit "$res"
		_xt_since "$t0"
		echo "xt: scenario $name took $_XT_SINCE s"
		grep -q '^RESULT [^ ]* FAIL' "$res" && dump_attempt
		destroy_all_guests
		break
	done
}

run_suite() {
	local n f
	[ -e "$XT_GUEST_KERNEL" ] || echo "xt: WARNING: no guest kernel at $XT_GUEST_KERNEL"
	for n in $XT_SCENARIOS; do
		f=/harness/scenarios/$n.sh
		if [ -r "$f" ]; then
			run_scenario "$n" "$f" builtin
		else
			echo "RESULT $n FAIL scenario file $f missing in dom0" >>"$FINAL"
			FAILED=$((FAILED + 1))
		fi
	done
	for n in $XT_USER_SCENARIOS; do
		run_scenario "$n" "/harness/user/$n.sh" user
	done
	echo "XT-FINAL-BEGIN"
	cat "$FINAL"
	echo "$PASSED passed, $FAILED failed"
	echo "flakes: $FLAKES"
	echo "XT-FINAL-END"
}

run_interactive() {
	local name=xenrs cfgf
	case " ${XT_GUEST_CMDLINE:-} " in
	*" then=poweroff "*) ;;
	*)
		# serve.sh in its own session with the console as controlling terminal: Ctrl-C typed
		# on the host reaches it as SIGINT.
		setsid -w -c /harness/serve.sh </dev/hvc0 >/dev/hvc0 2>&1
		return
		;;
	esac
	cfgf=$(xt_write_cfg "$name" memory="${XT_GUEST_MEMORY:-32}" cmdline="${XT_GUEST_CMDLINE:-then=poweroff}" \
		on_poweroff=destroy on_crash=destroy on_reboot=destroy) || return 1
	echo "xt: xl create -c $cfgf (memory=${XT_GUEST_MEMORY:-32} cmdline=\"${XT_GUEST_CMDLINE:-then=poweroff}\")"
	echo "xt: guest console follows; it ends when the guest does. Quit QEMU early with Ctrl-a x."
	xl create -c "$cfgf"
	echo "xt: xl create -c returned $?"
	xt_monitor_domid "$name" >"$XT_RUN/$name.domid"
	xt_wait_gone "$name" 30
	_xt_reason "$name"
	echo "xt: guest ended: reason $XT_REASON"
	if [ "$XT_REASON" != poweroff ]; then
		echo "xt| ---- xl dmesg (last 30 lines) ----"
		xl dmesg 2>/dev/null | tr -d '\r' | tail -n 30 | sed 's/^/xt|   /'
	fi
}

case "$MODE" in
suite) run_suite ;;
interactive) run_interactive ;;
*) echo "xt: runner: unknown mode '$MODE'" ;;
esac
