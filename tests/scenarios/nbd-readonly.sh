# nbd-readonly: a read-only disk (xl access=ro: mode r, a read-only loop device) holding 16 MiB of
# random data, next to a read-write xvdb. Its export says read-only (`xenrs blk:` and `xenrs nbd:
# export` ro=1, nbdinfo is_read_only); nbdcopy reads the file's exact bytes; stock clients refuse
# to write (nbdcopy and qemu-img exit with an error); a raw WRITE (nbd-client.py) gets NBD_EPERM
# and the guest logs `xenrs nbd error:` and goes on: reads on the same connection and afterwards
# still return the same bytes, the backing file is unchanged, and a write to xvdb works. The only
# guest error lines allowed are `xenrs nbd error:` (and `xenrs blk error: xvda:`, if the refusal
# is logged by blkfront as well).
# xt-timeout: 600
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-readonly
IP=169.254.77.43
ALLOWED='^xenrs (nbd error:|blk error: xvda: )'
xt_disk xvda 16 ro || xt_fail "xt_disk xvda failed"
da=$XT_DISK
blk_random "$XT_DISK_FILE" 16 || xt_fail "cannot fill $XT_DISK_FILE"
sha0=$BLK_SHA
xt_disk xvdb 8 || xt_fail "xt_disk xvdb failed"
db=$XT_DISK
blk_start "$G" "$IP" "disk=$da" "disk=$db" || xt_fail "$BLK_WHY"
problems=""
blk_uri "$IP" xvda
A=$BLK_URI
blk_uri "$IP" xvdb
B=$BLK_URI
if blk_nbdinfo "$A"; then
	read -r _ ro _ <<<"$BLK_INFO"
	[ "$ro" = true ] || problems+="nbdinfo says is_read_only=$ro for the read-only disk; "
else
	problems+="$BLK_WHY; "
fi
if blk_nbd_sha "$A" 120; then
	[ "$BLK_SHA" = "$sha0" ] || problems+="nbdcopy read of xvda: sha256 ${BLK_SHA:0:16}, the file has ${sha0:0:16}; "
	read1="read 16 MiB in ${BLK_SECS}s"
else
	problems+="$BLK_WHY; "
fi
blk_random "$XT_DISKS/src" 1
if timeout 120 nbdcopy "$XT_DISKS/src" "$A" >"$XT_RUN/ro-nbdcopy.out" 2>&1; then
	problems+="nbdcopy wrote to the read-only export without an error; "
fi
if timeout 120 qemu-img convert -n -f raw -O raw "$XT_DISKS/src" "$A" >"$XT_RUN/ro-qemu.out" 2>&1; then
	problems+="qemu-img convert wrote to the read-only export without an error; "
fi
errs0=$(blk_console_lines "$G" '^xenrs nbd error:' | wc -l)
blk_raw "$IP" write-ro xvda "${BLK_FILE[xvda]}" || problems+="raw client: $BLK_RAW; "
raw=$BLK_RAW
xt_up
dl=$((XT_UP + 15))
while [ "$(blk_console_lines "$G" '^xenrs nbd error:' | wc -l)" -le "$errs0" ] && [ "$XT_UP" -lt "$dl" ]; do
	sleep 0.5
	xt_up
done
errline=$(blk_console_lines "$G" '^xenrs nbd error:' | tail -n 1)
[ "$(blk_console_lines "$G" '^xenrs nbd error:' | wc -l)" -gt "$errs0" ] ||
	problems+="the refused raw WRITE left no 'xenrs nbd error:' line within 15 s; "
if blk_nbd_sha "$A" 120; then
	[ "$BLK_SHA" = "$sha0" ] || problems+="xvda after the refused writes: sha256 ${BLK_SHA:0:16}, expected ${sha0:0:16}; "
else
	problems+="after the refused writes: $BLK_WHY; "
fi
blk_sha "${BLK_FILE[xvda]}"
[ "$BLK_SHA" = "$sha0" ] || problems+="the read-only backing file changed; "
blk_random "$XT_DISKS/src" 8
shab=$BLK_SHA
if blk_nbdcopy 120 --flush "$XT_DISKS/src" "$B"; then
	blk_nbd_sha "$B" 120 || problems+="xvdb: $BLK_WHY; "
	[ "$BLK_SHA" = "$shab" ] || problems+="xvdb read back: sha256 ${BLK_SHA:0:16}, wrote ${shab:0:16}; "
	blk_sha "${BLK_FILE[xvdb]}"
	[ "$BLK_SHA" = "$shab" ] || problems+="xvdb's backing file: sha256 ${BLK_SHA:0:16}, wrote ${shab:0:16}; "
else
	problems+="xvdb write after the refused writes: $BLK_WHY; "
fi
blk_verdict "$G" "$problems" "xvda read-only: $read1, sha256 = file's; nbdcopy and qemu-img refused to write ($(tail -n 1 "$XT_RUN/ro-nbdcopy.out" | cut -c1-100)); raw: $raw; guest: $errline; reads still equal, backing file unchanged; xvdb written and read back" "$ALLOWED"
