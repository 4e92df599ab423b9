# nbd-bad-client: hostile and broken NBD clients (the raw client tests/scenarios/lib/nbd-client.py)
# against a guest with xvda (16 MiB of random data, read-write) and xvdb (8 MiB), while one more
# client sits connected and silent the whole time (several clients at once). In turn: an HTTP
# request instead of a handshake and garbage instead of an option (the server closes those
# connections); an unknown option (NBD_REP_ERR_UNSUP, then NBD_OPT_LIST still names xvda and xvdb;
# NBD_OPT_INFO of a missing export gets an error); out-of-range READs (NBD_EINVAL) and an
# out-of-range WRITE (NBD_EINVAL or NBD_ENOSPC), a misaligned READ (NBD_EINVAL or correct data),
# each followed by a READ that still works, then a bad request magic (connection closed); a WRITE
# header of 2 GiB - 1 (an error or a closed connection, never success); a client that resets
# mid-write. The guest logs `xenrs nbd error:` lines (the only error lines allowed, at least one)
# and stays up; afterwards a clean nbdinfo shows the right size, nbdcopy reads exactly what dom0's
# backing file holds, and a fresh 16 MiB nbdcopy --flush write reads back equal and lands in the file.
# xt-timeout: 900
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-bad
IP=169.254.77.47
ALLOWED='^xenrs nbd error:'
xt_disk xvda 16 || xt_fail "xt_disk xvda failed"
da=$XT_DISK
blk_random "$XT_DISK_FILE" 16 || xt_fail "cannot fill $XT_DISK_FILE"
xt_disk xvdb 8 || xt_fail "xt_disk xvdb failed"
blk_start "$G" "$IP" "disk=$da" "disk=$XT_DISK" || xt_fail "$BLK_WHY"
F=${BLK_FILE[xvda]}
SIZE=$(stat -c %s "$F")
blk_uri "$IP" xvda
U=$BLK_URI
problems=""
done_steps=""
timeout 700 python3 "$BLK_PY" "$IP" "$BLK_NBD_PORT" stall 600 >"$XT_RUN/stall.out" 2>&1 &
stall=$!
for step in early-garbage garbage "options xvda xvdb" "range xvda $SIZE $F" "oversize xvda" "mid-write xvda"; do
	# shellcheck disable=SC2086 # step is a word list
	blk_raw "$IP" $step || problems+="${step%% *}: $BLK_RAW; "
	done_steps+="${step%% *}: $BLK_RAW | "
	if [ "$(xt_state "$G")" != running ]; then
		problems+="the guest is $(xt_state "$G") after '${step%% *}'; "
		break
	fi
done
if [ -z "$problems" ]; then
	if blk_nbdinfo "$U"; then
		read -r size _ <<<"$BLK_INFO"
		[ "$size" = "$SIZE" ] || problems+="clean nbdinfo: size $size, the disk has $SIZE; "
	else
		problems+="clean client: $BLK_WHY; "
	fi
	# The reset WRITE may or may not have reached the disk: the export and the file must agree.
	if blk_nbd_sha "$U"; then
		got=$BLK_SHA
		blk_sha "$F"
		[ "$got" = "$BLK_SHA" ] || problems+="clean nbdcopy read: sha256 ${got:0:16}, dom0's backing file ${BLK_SHA:0:16}; "
	else
		problems+="clean client: $BLK_WHY; "
	fi
	blk_random "$XT_DISKS/src" 16
	want=$BLK_SHA
	if blk_nbdcopy 400 --flush "$XT_DISKS/src" "$U" && blk_nbd_sha "$U"; then
		[ "$BLK_SHA" = "$want" ] || problems+="clean write: read back sha256 ${BLK_SHA:0:16}, wrote ${want:0:16}; "
		blk_sha "$F"
		[ "$BLK_SHA" = "$want" ] || problems+="clean write: dom0's backing file sha256 ${BLK_SHA:0:16}, wrote ${want:0:16}; "
	else
		problems+="clean write: $BLK_WHY; "
	fi
fi
kill "$stall" 2>/dev/null
wait "$stall" 2>/dev/null
grep -q '^ok: connected' "$XT_RUN/stall.out" || problems+="the silent client did not connect: $(tr '\n' ' ' <"$XT_RUN/stall.out"); "
blk_count "$G" "$ALLOWED"
nerr=$BLK_N
[ "$nerr" -gt 0 ] || problems+="no 'xenrs nbd error:' line for any of the bad clients; "
blk_verdict "$G" "$problems" "$done_steps a silent client stayed connected throughout; $nerr 'xenrs nbd error:' lines (first: $(blk_console_lines "$G" "$ALLOWED" | head -n 1 | cut -c1-120)); afterwards nbdinfo, nbdcopy read (= backing file) and a 16 MiB write (read back and in the file) worked" "$ALLOWED"
