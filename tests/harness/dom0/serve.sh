#!/bin/bash
# `./run.sh` in dom0: one networked guest whose services the user reaches from the host, and a
# small command loop on the console that drives the toolstack against it.
#
# Started by runner.sh (interactive mode, guest command line without then=poweroff) in its own
# session with the console (/dev/hvc0) as controlling terminal, so Ctrl-C typed on the host
# (QEMU's `-serial mon:stdio` passes it through) arrives here as SIGINT.
#
#   1. eth0 (QEMU user networking, e1000) gets 10.0.2.15/24; QEMU forwards 127.0.0.1:HOSTPORT on
#      the host to 10.0.2.15:PORT (run-suite.sh's hostfwd rules).
#   2. the guest `xenrs` boots with a vif on xenbr0 (169.254.77.10/24), then=block, and (unless
#      XT_SERVE_DISK=0) a scratch file disk xvda of XT_SERVE_DISK MiB, exported over NBD.
#   3. once it printed its services line, one socat per service forwards 10.0.2.15:PORT to the
#      guest's PORT (bound to eth0's address only), and a block with the host commands is printed.
#   4. commands (help, status, save-restore, checkpoint, migrate, shutdown) are read from the
#      console, or taken from XT_DO (comma-separated, `./run.sh --do`), then dom0 powers off.
# Guest console lines are streamed to the console as they come (tail -F of its log).
#
# run.conf: XT_GUEST_MEMORY, XT_GUEST_CMDLINE, XT_SERVE_PORTS ("HOSTPORT:PORT ..."),
# XT_SERVE_DISK (MiB), XT_DO.

# shellcheck source=/dev/null disable=SC2153,SC2034 # XT_* come from run.conf; LINE is for the callers
. /harness/run.conf
# shellcheck source=tests/harness/dom0/lib.sh
. /harness/lib.sh
# shellcheck source=tests/scenarios/lib/net.sh
. /harness/scenarios/lib/net.sh

G=xenrs
IP=169.254.77.10
DOM0_IP=10.0.2.15
PORTS=${XT_SERVE_PORTS:-"7007:7 5201:5201 10809:10809"}
DISK_MIB=${XT_SERVE_DISK:-32}
SAVE=$XT_RUN/$G.save
PIDS=()
STOP=0
FAILED_CMDS=()
NCMDS=0

say() { echo "xt: $*"; }

# since T0: set SINCE to seconds (with hundredths) since the uptime T0 (an XT_UPF).
since() {
	_xt_since "$1"
	SINCE=$_XT_SINCE
}

# guest_line ERE SECS: wait for a console line matching ERE in any of the guest's console logs
# (a migrated guest may log to guest-xenrs--incoming.log); sets LINE.
guest_line() {
	local dl f l
	LINE=""
	xt_up
	dl=$((XT_UP + $2))
	while :; do
		for f in "$XT_CONSOLE_DIR/guest-$G.log" "$XT_CONSOLE_DIR/guest-$G--incoming.log"; do
			[ -r "$f" ] || continue
			while IFS= read -r l || [ -n "$l" ]; do
				l=${l%$'\r'}
				if [[ $l =~ $1 ]]; then
					LINE=$l
					return 0
				fi
			done <"$f"
		done
		xt_up
		[ "$XT_UP" -lt "$dl" ] && [ "$STOP" = 0 ] || return 1
		sleep 0.3
	done
}

# count_lines ERE: how many console lines (all of the guest's logs) match ERE.
count_lines() {
	local n=0 f l
	for f in "$XT_CONSOLE_DIR/guest-$G.log" "$XT_CONSOLE_DIR/guest-$G--incoming.log"; do
		[ -r "$f" ] || continue
		while IFS= read -r l || [ -n "$l" ]; do
			[[ ${l%$'\r'} =~ $1 ]] && n=$((n + 1))
		done <"$f"
	done
	echo "$n"
}

# wait_resumed N MODE SECS: wait for `xenrs resumed n=N mode=MODE`.
wait_resumed() { guest_line "^xenrs resumed n=$1 mode=$2 mono_ns=[0-9]+\$" "$3"; }

# ping_ok: the guest answers 3 pings from dom0.
ping_ok() { net_ping "$IP" 3; }

net_up() {
	local i
	modprobe e1000 || say "WARNING: modprobe e1000 failed"
	for i in $(seq 1 50); do
		[ -e /sys/class/net/eth0 ] && break
		sleep 0.2
	done
	if ! ip addr add "$DOM0_IP/24" dev eth0 || ! ip link set eth0 up; then
		say "ERROR: no eth0 in dom0 (QEMU user networking): the host's port forwards cannot work"
		ip -br link 2>&1 | sed 's/^/xt| /'
		return 1
	fi
}

start_forwards() {
	local p gp
	for p in $PORTS; do
		gp=${p#*:}
		# -t 30: after one side closed, wait up to 30 s for the other direction to finish (the
		# guest echoes the last bytes, then closes); socat's default 0.5 s cuts that off here.
		setsid socat -t 30 "TCP-LISTEN:$gp,bind=$DOM0_IP,fork,reuseaddr" "TCP:$IP:$gp" \
			</dev/null >>"$XT_RUN/socat.log" 2>&1 &
		PIDS+=($!)
	done
}

stream_console() {
	setsid tail -q -n +1 -F "$XT_CONSOLE_DIR/guest-$G.log" "$XT_CONSOLE_DIR/guest-$G--incoming.log" \
		</dev/null 2>/dev/null &
	PIDS+=($!)
}

# host_port GUESTPORT: the host port that forwards to GUESTPORT ("" if none).
host_port() {
	local p
	for p in $PORTS; do
		[ "${p#*:}" = "$1" ] && echo "${p%%:*}"
	done
	return 0
}

print_block() {
	local e i n
	e=$(host_port 7)
	i=$(host_port 5201)
	n=$(host_port 10809)
	echo
	echo "==== xenrs is up: guest $IP on dom0's bridge xenbr0; from this machine (127.0.0.1 only): ===="
	[ -n "$e" ] && printf '  %-38s # %s\n' "echo hi | nc -N 127.0.0.1 $e" "TCP echo (port 7); or: nc 127.0.0.1 $e, type lines"
	[ -n "$i" ] && printf '  %-38s # %s\n' "iperf3 -c 127.0.0.1 -p $i" "iperf3 (port 5201); -R for the other direction"
	[ -n "$n" ] && [ "$DISK_MIB" != 0 ] &&
		printf '  %-38s # %s\n' "nbdinfo nbd://127.0.0.1:$n/xvda" "NBD (port 10809): the guest's ${DISK_MIB} MiB scratch disk"
	if [ -n "${XT_DO:-}" ]; then
		echo "  running: ${XT_DO//,/, }; then shutting down"
	else
		echo "  type here: save-restore | checkpoint | migrate | status | shutdown | help  (then Enter)"
		echo "  Ctrl-C or 'shutdown' stops everything; Ctrl-a x kills QEMU at once"
	fi
	echo "===="
}

cmd_help() {
	cat <<'EOF'
  save-restore   xl save the guest to a file in dom0, then xl restore it (a new domain, same
                 memory, TCP connections carry on once its vif reconnected)
  checkpoint     xl save -c: a snapshot; the guest keeps running (its suspend is cancelled)
  migrate        xl migrate to localhost (xl migrate -s "" xenrs "xl migrate-receive")
  status         xl list, the guest's address, the forwards and their open connections
  shutdown       xl shutdown the guest, then power everything off (also: quit, exit, Ctrl-C)
  help           this list
EOF
}

cmd_status() {
	local id n
	id=$(xl domid "$G" 2>/dev/null)
	xl list "$G" 2>&1 | sed 's/^/  /'
	n=$(ss -Htn state established "( dst $IP )" 2>/dev/null | wc -l)
	echo "  guest $IP (domid ${id:-none}); forwards 127.0.0.1:HOST -> $IP:PORT: $PORTS; $n open connection(s) to the guest"
}

# after_new_domain WHAT ROUND T0 CONNECTED OLD_DOMID: the checks shared by save-restore and
# migrate (the guest resumes as a new domain): resumed line, the vif reconnected, ping.
after_new_domain() {
	local what=$1 n=$2 t0=$3 conns=$4 old=$5
	xt_track "$G" || {
		say "$what: no domain $G after it"
		return 1
	}
	if ! wait_resumed "$n" new-domain 60; then
		say "$what: no 'xenrs resumed n=$n mode=new-domain' line within 60 s"
		return 1
	fi
	# The vif reconnects after a new-domain resume: one more Connected line than before.
	xt_up
	local dl=$((XT_UP + 60))
	while [ "$(count_lines '^xenrs net: vif/0 mac=.* state=Connected$')" -le "$conns" ]; do
		xt_up
		if [ "$XT_UP" -ge "$dl" ] || [ "$STOP" = 1 ]; then
			say "$what: the guest's vif did not reconnect within 60 s"
			return 1
		fi
		sleep 0.3
	done
	ping_ok || say "$what: WARNING: ping after it: $NET_PING"
	since "$t0"
	say "$what: done in $SINCE s, guest domid $old -> $XT_DOMID (resume n=$n); open TCP connections carry on"
}

ROUND=0
cmd_save_restore() {
	local t0 conns old
	xt_up
	t0=$XT_UPF
	old=$(xl domid "$G" 2>/dev/null)
	conns=$(count_lines '^xenrs net: vif/0 mac=.* state=Connected$')
	say "save-restore: xl save $G $SAVE"
	if ! timeout 180 xl save "$G" "$SAVE" >"$XT_RUN/save.log" 2>&1; then
		say "save-restore: xl save failed:"
		sed 's/^/xt| /' "$XT_RUN/save.log"
		return 1
	fi
	since "$t0"
	say "save-restore: saved ($(du -h "$SAVE" | cut -f1)) in $SINCE s; xl restore $SAVE"
	if ! timeout 180 xl restore "$SAVE" >"$XT_RUN/restore.log" 2>&1; then
		say "save-restore: xl restore failed:"
		sed 's/^/xt| /' "$XT_RUN/restore.log"
		rm -f "$SAVE"
		return 1
	fi
	rm -f "$SAVE"
	ROUND=$((ROUND + 1))
	after_new_domain save-restore "$ROUND" "$t0" "$conns" "$old"
}

cmd_checkpoint() {
	local t0 id
	xt_up
	t0=$XT_UPF
	id=$(xl domid "$G" 2>/dev/null)
	say "checkpoint: xl save -c $G $SAVE"
	if ! timeout 180 xl save -c "$G" "$SAVE" >"$XT_RUN/save.log" 2>&1; then
		say "checkpoint: xl save -c failed:"
		sed 's/^/xt| /' "$XT_RUN/save.log"
		rm -f "$SAVE"
		return 1
	fi
	rm -f "$SAVE"
	ROUND=$((ROUND + 1))
	if ! wait_resumed "$ROUND" cancelled 60; then
		say "checkpoint: no 'xenrs resumed n=$ROUND mode=cancelled' line within 60 s"
		return 1
	fi
	since "$t0"
	say "checkpoint: done in $SINCE s; the guest kept running as domid $id"
}

cmd_migrate() {
	local t0 old conns
	xt_up
	t0=$XT_UPF
	old=$(xl domid "$G" 2>/dev/null)
	conns=$(count_lines '^xenrs net: vif/0 mac=.* state=Connected$')
	say "migrate: xl migrate -s \"\" $G \"xl migrate-receive\" (to localhost)"
	if ! timeout 240 xl migrate -s "" "$G" "xl migrate-receive" >"$XT_RUN/migrate.log" 2>&1; then
		say "migrate: xl migrate failed:"
		tail -n 8 "$XT_RUN/migrate.log" | sed 's/^/xt| /'
		return 1
	fi
	ROUND=$((ROUND + 1))
	after_new_domain migrate "$ROUND" "$t0" "$conns" "$old"
}

cmd_shutdown() {
	STOP=1
	xl domid "$G" >/dev/null 2>&1 || return 0
	say "shutdown: xl shutdown $G"
	timeout 30 xl shutdown "$G" >/dev/null 2>&1
	if xt_wait_gone "$G" 30; then
		say "shutdown: the guest powered off"
	else
		say "shutdown: the guest is still there after 30 s: xl destroy"
		xt_destroy "$G"
		return 1
	fi
}

# run_cmd LINE: one command; counts failures.
run_cmd() {
	local c=${1//[[:space:]]/}
	[ -n "$c" ] || return 0
	NCMDS=$((NCMDS + 1))
	case "$c" in
	help | "?") cmd_help ;;
	status) cmd_status ;;
	save-restore | saverestore | save) cmd_save_restore ;;
	checkpoint) cmd_checkpoint ;;
	migrate) cmd_migrate ;;
	shutdown | quit | exit | poweroff) cmd_shutdown ;;
	*)
		say "unknown command '$c' (type help)"
		false
		;;
	esac || {
		FAILED_CMDS+=("$c")
		say "$c: FAILED"
	}
}

# guest_alive: true while the guest runs; else says why it ended (crash, poweroff from inside).
guest_alive() {
	# A Ctrl-C's trap may run in the middle of this (bash runs it after the current command):
	# a guest that ended because we shut it down did not end by itself.
	[ "$STOP" = 0 ] || return 0
	[ "$(xt_state "$G")" = running ] && return 0
	[ "$STOP" = 0 ] || return 0
	_xt_reason "$G"
	say "the guest ended by itself: reason $XT_REASON; $(xt_errors "$G")"
	return 1
}

cleanup() {
	local p
	xl domid "$G" >/dev/null 2>&1 && { timeout 30 xl destroy "$G" >/dev/null 2>&1 || true; }
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
}

# Ctrl-C only raises a flag; the loops below act on it. (bash restarts an interrupted `read -t`
# after the trap: a trap that ran the whole shutdown outlived read's timer, and read then waited
# for input forever.) STOP=1 also ends the waits of a running command early.
INTR=0
on_int() {
	INTR=1
	STOP=1
}
trap on_int INT
# after_int: the clean shutdown after a Ctrl-C.
after_int() {
	[ "$INTR" = 1 ] || return 0
	echo
	say "Ctrl-C: shutting down"
	cmd_shutdown
}

# --- boot ---------------------------------------------------------------------------------------
net_up || say "continuing without the host forwards"
disk=()
if [ "$DISK_MIB" != 0 ]; then
	if xt_disk xvda "$DISK_MIB"; then
		disk=("disk=$XT_DISK")
	else
		say "WARNING: no scratch disk"
	fi
fi
cmdline="ip=$IP/24${XT_GUEST_CMDLINE:+ $XT_GUEST_CMDLINE}"
say "xl create $G: memory=${XT_GUEST_MEMORY:-32} cmdline=\"$cmdline\" vif on xenbr0${disk:+, xvda ${DISK_MIB} MiB}"
stream_console
if ! xt_create "$G" memory="${XT_GUEST_MEMORY:-32}" cmdline="$cmdline" vif=default \
	"${disk[@]}" on_crash=preserve; then
	cleanup
	echo "XT-RUN-END fail xl create failed"
	exit 1
fi
# Any services line (--cmdline may pick services=...).
NET_SERVICES=".+"
if ! net_wait_up "$G" "^xenrs net: ip=" || ! guest_alive; then
	say "the guest did not come up: ${NET_WHY:-}"
	xt_dump "$G"
	cleanup
	echo "XT-RUN-END fail the guest did not come up"
	exit 1
fi
start_forwards
sleep 1
print_block

# --- commands -----------------------------------------------------------------------------------
if [ -n "${XT_DO:-}" ]; then
	IFS=, read -r -a todo <<<"$XT_DO"
	for c in "${todo[@]}"; do
		[ "$STOP" = 1 ] && break
		guest_alive || {
			FAILED_CMDS+=("(guest ended)")
			break
		}
		echo "xt> $c"
		run_cmd "$c"
	done
	if [ "$INTR" = 1 ]; then
		after_int
	elif [ "$STOP" = 0 ]; then
		cmd_shutdown || FAILED_CMDS+=(shutdown)
	fi
else
	while [ "$STOP" = 0 ]; do
		# `xl list` (in guest_alive) every 5 s at most: each fork costs here.
		if read -r -t 5 line; then
			[ "$STOP" = 1 ] || run_cmd "$line"
		elif [ $? -le 128 ] && ! [ -t 0 ]; then
			# End of input (not a terminal, nothing more to read): stop like `shutdown`.
			say "end of input: shutting down"
			cmd_shutdown
		fi
		[ "$STOP" = 1 ] && break
		guest_alive || {
			FAILED_CMDS+=("(guest ended)")
			break
		}
		[ "$STOP" = 1 ] && break
	done
	after_int
fi
cleanup
if [ ${#FAILED_CMDS[@]} -eq 0 ]; then
	echo "XT-RUN-END ok $NCMDS command(s)"
else
	echo "XT-RUN-END fail failed: ${FAILED_CMDS[*]}"
fi
