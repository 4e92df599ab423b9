# nbd-copy: a 64 MiB read-write file disk, written whole from dom0 twice with stock clients:
# 64 MiB of random data with `nbdcopy --flush`, then other random data with `qemu-img convert -n`
# (which flushes when it closes). After each, nbdcopy reads the export back (sha256 equal to what
# was written) and dom0's backing file holds exactly those bytes (sha256 of the file: the data
# reached blkback, it is not only in the guest). No guest error line.
# xt-timeout: 1800
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-copy
IP=169.254.77.44
MIB=64
# Per transfer: 64 MiB at 0.2 MiB/s still fits (TCG; nothing is measured here).
LIMIT=400
xt_disk xvda $MIB || xt_fail "xt_disk xvda failed"
blk_start "$G" "$IP" "disk=$XT_DISK" || xt_fail "$BLK_WHY"
blk_uri "$IP" xvda
U=$BLK_URI
F=${BLK_FILE[xvda]}
problems=""
times=""
for tool in nbdcopy qemu-img; do
	blk_random "$XT_DISKS/src" $MIB || xt_fail "cannot write $XT_DISKS/src"
	want=$BLK_SHA
	if [ "$tool" = nbdcopy ]; then
		blk_nbdcopy $LIMIT --flush "$XT_DISKS/src" "$U" || {
			problems+="write: $BLK_WHY; "
			break
		}
	else
		xt_up
		t0=$XT_UPF
		if ! timeout $LIMIT qemu-img convert -n -f raw -O raw "$XT_DISKS/src" "$U" >"$XT_RUN/qemu-img.out" 2>&1; then
			problems+="qemu-img convert -n $XT_DISKS/src $U failed: $(tr '\n' ' ' <"$XT_RUN/qemu-img.out" | cut -c1-240); "
			break
		fi
		_xt_since "$t0"
		BLK_SECS=$_XT_SINCE
	fi
	times+="$tool write ${BLK_SECS}s, "
	rm -f "$XT_DISKS/src"
	if ! blk_nbd_sha "$U" $LIMIT; then
		problems+="after the $tool write: $BLK_WHY; "
		break
	fi
	times+="read ${BLK_SECS}s; "
	[ "$BLK_SHA" = "$want" ] || problems+="after the $tool write, nbdcopy reads sha256 ${BLK_SHA:0:16}, written ${want:0:16}; "
	blk_sha "$F"
	[ "$BLK_SHA" = "$want" ] || problems+="after the $tool write and its flush, dom0's backing file has sha256 ${BLK_SHA:0:16}, written ${want:0:16}; "
	[ -z "$problems" ] || break
done
blk_verdict "$G" "$problems" "$MIB MiB written with nbdcopy --flush, then with qemu-img convert -n, each read back with nbdcopy and found in dom0's backing file (sha256 equal); $times guest: ${BLK_LINE[xvda]#xenrs }"
