# soak-short: the save/restore soak (tests/scenarios/lib/soak.sh) for 10 rounds: 7 xl save +
# xl restore, one checkpoint (xl save -c, round 5) and one xl migrate to localhost (round 10), with
# a live TCP echo stream and nbdcopy writes verified byte by byte throughout. No reset, no corrupted
# byte, the guest's grant counters and free frames back at their start values, no error line.
# The long run is `./run.sh soak --rounds N` (tests/soak/soak.sh, docs/RELIABILITY.md).
# xt-timeout: 900
# A round in which the emulator's triple fault kills the guest (4 of 124 soak rounds on 2026-12-03)
# is counted (the runner's FLAKE line, the soak's `emulator_triple_faults=`) and run again on a
# new guest, as in the long soak, instead of a retry of the whole scenario.
# xt-triple-faults: counted
# Helpers soak_* and blk_*: tests/scenarios/lib/soak.sh, tests/scenarios/lib/blk.sh.
XT_SOAK_SURVIVE_FLAKES=1 XT_SOAK_MAX_FLAKES=2 soak_run 10
