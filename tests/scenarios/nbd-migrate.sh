# nbd-migrate: I/O in flight across a live migration. nbdcopy --flush writes 96 MiB of random
# data to the guest's read-write xvda (a 96 MiB file in dom0), pass after pass, while dom0 runs
# one localhost `xl migrate -s "" <dom> "xl migrate-receive"` (as migrate.sh: no ssh, the
# receiver is a local xl over pipes). The guest resumes as a new domain (`xenrs resumed n=1
# mode=new-domain`, a new domid), xvda connects again to the new back end (on the same file), every
# nbdcopy pass completes without error, and afterwards nbdcopy's read-back and dom0's backing file
# equal the source (sha256). The receiving domain logs as <name>--incoming at first: every console
# log of the guest is searched. No guest error line, no leftover --incoming/--migratedaway domain.
# xt-timeout: 1800
# Helpers blk_*: tests/scenarios/lib/blk.sh.
G=xt-nbd-migrate
IP=169.254.77.46
MIB=96
xt_disk xvda $MIB || xt_fail "xt_disk xvda failed"
blk_start "$G" "$IP" "disk=$XT_DISK" || xt_fail "$BLK_WHY"
blk_io_across "$G" "$IP" $MIB "M"
