# nbd-read-loop: many whole-export reads with nbdcopy, to catch the intermittent stall of the
# guest's NBD replies (an nbdcopy read that makes no progress while the guest is idle: nbd-copy's
# read-back in the 14:23 suite of 2026-12-02, nbd-readonly in CI on 2026-12-03). A guest with a
# 64 MiB read-write xvda and a 16 MiB read-only xvdb, both of random data; XT_READ_ROUNDS rounds
# (default 20) each read both exports whole (60 s limit per read) and compare them with the
# backing files. A read that fails or times out is a stall: blk_stall_evidence prints two guest
# dumps and dom0's TCP view, and the scenario fails with its summary. No guest error line.
# xt-timeout: 3000
# xt-explicit
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-read-loop
IP=169.254.77.49
ROUNDS=${XT_READ_ROUNDS:-20}
xt_disk xvda 64 || xt_fail "xt_disk xvda failed"
blk_random "$XT_DISK_FILE" 64 || xt_fail "cannot fill $XT_DISK_FILE"
sha_a=$BLK_SHA
da=$XT_DISK
xt_disk xvdb 16 ro || xt_fail "xt_disk xvdb failed"
blk_random "$XT_DISK_FILE" 16 || xt_fail "cannot fill $XT_DISK_FILE"
sha_b=$BLK_SHA
blk_start "$G" "$IP" "disk=$da" "disk=$XT_DISK" || xt_fail "$BLK_WHY"
times=""
for ((r = 1; r <= ROUNDS; r++)); do
	for d in xvda xvdb; do
		blk_uri "$IP" $d
		want=$sha_a
		[ $d = xvdb ] && want=$sha_b
		if ! blk_nbd_sha "$BLK_URI" 60; then
			blk_stall_evidence "$G" "$IP" "r$r-$d"
			xt_fail "round $r/$ROUNDS, $d: $BLK_WHY; rounds done before: $((r - 1)) ($times); $BLK_EVIDENCE $(blk_errors "$G")"
		fi
		[ "$BLK_SHA" = "$want" ] || xt_fail "round $r, $d: read sha256 ${BLK_SHA:0:16}, the file has ${want:0:16}"
		times+="${BLK_SECS%.*} "
	done
	xt_log "round $r/$ROUNDS done (seconds per read: $times)"
done
blk_verdict "$G" "" "$ROUNDS rounds, each reading the 64 MiB xvda and the 16 MiB read-only xvdb whole with nbdcopy, equal to the backing files; seconds per read: $times"
