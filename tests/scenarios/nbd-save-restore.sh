# nbd-save-restore: I/O in flight across suspend and resume. nbdcopy --flush writes 96 MiB of
# random data to the guest's read-write xvda (a 96 MiB file in dom0), pass after pass, while dom0
# runs 3 rounds of `xl save` + `xl restore` and one `xl save -c`: each resume prints its
# `xenrs resumed n=<k> mode=new-domain|cancelled` line, after a restore xvda connects again (a new
# `xenrs blk: xvda` line), every nbdcopy pass completes without error, and afterwards nbdcopy's
# read-back and dom0's backing file equal the source (sha256). No guest error line.
# xt-timeout: 2400
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-sr
IP=169.254.77.45
MIB=96
xt_disk xvda $MIB || xt_fail "xt_disk xvda failed"
blk_start "$G" "$IP" "disk=$XT_DISK" || xt_fail "$BLK_WHY"
blk_io_across "$G" "$IP" $MIB "S S S C"
