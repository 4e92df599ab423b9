# echo-parallel: 32 TCP connections to the echo service open at once (bash /dev/tcp), 8 rounds of a
# fresh random line on each, every echo compared; then a new connection still echoes.
# xt-timeout: 300
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-echopar
IP=169.254.77.32
N=32
ROUNDS=8
net_start "$G" "$IP" || xt_fail "$NET_WHY"
# All N connections are opened first (bash /dev/tcp, no forks), so the guest serves N at once;
# then every round writes one ~250-byte line of fresh random text to each and reads each echo
# back, comparing it byte for byte.
fds=()
problems=""
for ((i = 0; i < N; i++)); do
	if ! exec {fd}<>"/dev/tcp/$IP/7"; then
		problems+="connection $i could not be opened; "
		break
	fi
	fds[i]=$fd
done
opened=${#fds[@]}
ok=0
bytes=0
if [ -z "$problems" ]; then
	for ((r = 1; r <= ROUNDS; r++)); do
		declare -A want=()
		for ((i = 0; i < N; i++)); do
			printf -v pad '%04x' $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM \
				$RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM \
				$RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM \
				$RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM \
				$RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM \
				$RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM $RANDOM
			want[$i]="conn=$i round=$r $pad"
			if ! printf '%s\n' "${want[$i]}" >&"${fds[i]}"; then
				problems+="round $r: write to connection $i failed; "
			fi
		done
		for ((i = 0; i < N; i++)); do
			got=""
			if ! read -r -t 60 -u "${fds[i]}" got; then
				problems+="round $r: no echo on connection $i within 60 s; "
			elif [ "$got" != "${want[$i]}" ]; then
				problems+="round $r: connection $i echoed '${got:0:40}...' for '${want[$i]:0:40}...'; "
			else
				ok=$((ok + 1))
				bytes=$((bytes + ${#got} + 1))
			fi
		done
		unset want
		[ -z "$problems" ] || break
	done
fi
for fd in "${fds[@]}"; do
	exec {fd}>&-
done
# The guest must still serve new connections after all N closed.
after=""
if exec {fd}<>"/dev/tcp/$IP/7"; then
	printf 'after-%s\n' "$RANDOM" >&"$fd"
	read -r -t 30 -u "$fd" after
	exec {fd}>&-
fi
[[ $after =~ ^after-[0-9]+$ ]] || problems+="a new connection after the $N closed did not echo ('$after'); "
net_verdict "$G" "${problems:+$opened/$N connections opened, $ok/$((N * ROUNDS)) echoes verified: ${problems:0:600}}" \
	"$N connections open at once, $ROUNDS rounds each, $ok/$((N * ROUNDS)) echoes verified ($bytes bytes); a new connection afterwards echoed too"
xt_destroy "$G"
