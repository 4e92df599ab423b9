# blkback-detach-writes: `xl block-detach` while an NBD client writes. A raw client
# (tests/scenarios/lib/nbd-ack-writer.py) writes distinct 32 KiB blocks to the guest's xvda, 8 in
# flight, and logs every reply: acknowledged or error. Once writes are being acknowledged, dom0
# detaches xvda: the guest prints `xenrs xenbus: device vbd/51712 removed` and stays up; every
# write the client had in flight gets a reply (an acknowledgement or an error, none is left
# hanging), some get errors (the disk went away under them), and every acknowledged write is in
# dom0's backing file afterwards. Then `xl block-attach` brings the disk back: the guest prints
# `xenrs xenbus: device vbd/51712 added` and exports xvda again; nbdinfo sees its size, a 256 KiB
# write + flush + read-back works and lands in the backing file. The guest's grant counters
# (data/grants) are back at their boot baseline once the disk is connected again. No guest error
# line other than the NBD service's reports of the failed writes.
# xt-timeout: 900
# Helpers blk_* (tests/scenarios/lib/blk.sh), hp_* (lib/hotplug.sh).
G=xt-blkhp
IP=169.254.77.62
MIB=64
BLOCK=32768
SEED=$((RANDOM + 1))
xt_disk xvda $MIB || xt_fail "xt_disk xvda failed"
disk=$XT_DISK
blk_start "$G" "$IP" "disk=$disk" || xt_fail "$BLK_WHY"
file=${BLK_FILE[xvda]}
xt_vbd_id xvda
vbd=$XT_VBD
blk_uri "$IP" xvda
hp_grants_settled "$G" 30 || xt_fail "the grant counters did not settle after boot: $HP_WHY"
base=$HP_GRANTS
log=$XT_RUN/ack-writer.log
stop=$XT_RUN/ack-writer.stop
rm -f "$log" "$stop"
# 2048 blocks of 32 KiB (the whole 64 MiB), at most 40 a second: the writer is still busy when the
# detach comes.
timeout 600 python3 "$HP_WRITER" write "$IP" "$BLK_NBD_PORT" xvda "$log" "$SEED" $BLOCK 2048 8 40 "$stop" \
	>"$XT_RUN/ack-writer.out" 2>&1 &
wpid=$!
problems=""
# Wait for 32 acknowledged writes (1 MiB).
xt_up
dl=$((XT_UP + 120))
acks=0
while :; do
	acks=$(grep -c '^A ' "$log" 2>/dev/null)
	[ "${acks:-0}" -ge 32 ] && break
	xt_up
	if [ "$XT_UP" -ge "$dl" ] || ! kill -0 "$wpid" 2>/dev/null; then
		problems+="the writer did not get 32 writes acknowledged within 120 s ($acks; $(tail -n 2 "$log" 2>/dev/null | tr '\n' ' ') $(tr '\n' ' ' <"$XT_RUN/ack-writer.out")); "
		break
	fi
	sleep 0.3
done
at_detach=$acks
if [ -z "$problems" ]; then
	xt_up
	t0=$XT_UP
	hp_xl block-detach "$G" xvda || problems+="$HP_WHY; "
	xt_up
	detach_secs=$((XT_UP - t0))
	blk_wait_count "$G" "^xenrs xenbus: device vbd/$vbd removed" 1 60 ||
		problems+="no 'xenrs xenbus: device vbd/$vbd removed' line within 60 s of the detach; "
	removed_line=$(blk_console_lines "$G" "^xenrs xenbus: device vbd/$vbd removed" | head -n 1)
fi
touch "$stop"
wait "$wpid"
summary=$(tail -n 1 "$log" 2>/dev/null)
if [ -z "$problems" ]; then
	[[ $summary =~ ^S\ sent=([0-9]+)\ acked=([0-9]+)\ errors=([0-9]+)\ noreply=([0-9]+) ]] ||
		problems+="the writer ended without its summary: '$summary' ($(tr '\n' ' ' <"$XT_RUN/ack-writer.out")); "
	sent=${BASH_REMATCH[1]:-0} acked=${BASH_REMATCH[2]:-0} errs=${BASH_REMATCH[3]:-0} noreply=${BASH_REMATCH[4]:-0}
	[ "$noreply" = 0 ] || problems+="$noreply writes got no reply at all ($summary); "
	[ "$errs" -gt 0 ] || problems+="no write got an error although the disk went away under the writer ($summary); "
	if [ "$(xt_state "$G")" != running ]; then
		problems+="the guest is not running after the detach (state $(xt_state "$G")); "
	fi
	# Every acknowledged write must be in the backing file (the loop device is gone: read the file).
	v=$(python3 "$HP_WRITER" verify "$log" "$SEED" "$file" 2>&1) || problems+="$(tr '\n' ' ' <<<"$v"); "
fi
if [ -z "$problems" ]; then
	exports=$(blk_console_lines "$G" '^xenrs nbd: export xvda ' | wc -l)
	hp_xl block-attach "$G" "$disk" || problems+="$HP_WHY; "
	blk_wait_count "$G" "^xenrs xenbus: device vbd/$vbd added\$" 1 60 ||
		problems+="no 'xenrs xenbus: device vbd/$vbd added' line within 60 s of the attach; "
	blk_wait_count "$G" '^xenrs nbd: export xvda size=[0-9]+ ro=0$' $((exports + 1)) 60 ||
		problems+="xvda was not exported again within 60 s of the attach; "
fi
if [ -z "$problems" ]; then
	if blk_nbdinfo "$BLK_URI"; then
		read -r size _ <<<"$BLK_INFO"
		[ "$size" = $((MIB << 20)) ] || problems+="nbdinfo after the attach: size $size, the file has $((MIB << 20)); "
	else
		problems+="after the attach: $BLK_WHY; "
	fi
	rw=$(timeout 300 python3 "$HP_WRITER" rw "$IP" "$BLK_NBD_PORT" xvda $((SEED + 7)) $((8 << 20)) $((256 << 10)) "$file" 2>&1) ||
		problems+="write/read-back after the attach: $(tr '\n' ' ' <<<"$rw"); "
	hp_grants_back "$G" "$base" 60 ||
		problems+="grant counters not back at their baseline 60 s after the attach: baseline '$base', now '$HP_GRANTS'; "
fi
[ "$(xt_triple_faults)" = 0 ] || problems+="Triple fault in xl dmesg; "
# The NBD service reports the writes that failed while the disk went away.
blk_verdict "$G" "$problems" \
	"xl block-detach ${detach_secs:-?}s after $at_detach acknowledged writes: ${removed_line#xenrs xenbus: }; writer: $summary; every acknowledged write is in the backing file; after xl block-attach: nbdinfo size $((MIB << 20)), ${rw#ok: }; grants at baseline '$base' after boot, '$HP_GRANTS' at the end" \
	'^xenrs nbd error: .*(i/o error|detached|EIO)'
xt_destroy "$G"
