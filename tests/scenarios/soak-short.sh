# soak-short: the save/restore soak (tests/scenarios/lib/soak.sh) for 10 rounds: 7 xl save +
# xl restore, one checkpoint (xl save -c, round 5) and one xl migrate to localhost (round 10), with
# a live TCP echo stream and nbdcopy writes verified byte by byte throughout. No reset, no corrupted
# byte, the guest's grant counters and free frames back at their start values, no error line.
# The long run is `./run.sh soak --rounds N` (tests/soak/soak.sh, docs/RELIABILITY.md).
# xt-timeout: 900
# Helpers soak_* and blk_*: tests/scenarios/lib/soak.sh, tests/scenarios/lib/blk.sh.
soak_run 10
