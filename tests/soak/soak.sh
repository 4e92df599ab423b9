# The long save/restore soak, run by `./run.sh soak [--rounds N] [--minutes M]` as a user scenario
# of tests/harness/run-suite.sh (--scenario tests/soak/soak.sh --env XT_SOAK_ROUNDS=N
# --env XT_SOAK_MAX_SECS=S, and optionally --env XT_SOAK_STOP_AT=<epoch seconds>: no round after
# that time once 10 are done). The body is soak_run (tests/scenarios/lib/soak.sh), the same as the
# default suite's soak-short. The runner starts a default guest for every user scenario; the soak
# has its own (with a disk), so that one is destroyed first.
# xt-timeout: 86400
# The emulator's triple fault (docs/TESTING-XEN.md) kills a guest now and then; over hundreds of
# restores and migrations it is all but certain. The long soak counts each one, runs that round
# again on a new guest (a new segment: XT_SOAK_SURVIVE_FLAKES=1, tests/scenarios/lib/soak.sh) and
# reports the count, instead of a whole-run retry.
# xt-triple-faults: counted
# Helpers soak_* and blk_*: tests/scenarios/lib/soak.sh, tests/scenarios/lib/blk.sh.
[ -n "${XT_DOMAIN:-}" ] && xt_destroy "$XT_DOMAIN"
XT_SOAK_SURVIVE_FLAKES=${XT_SOAK_SURVIVE_FLAKES:-1} soak_run "${XT_SOAK_ROUNDS:-100}" "${XT_SOAK_MAX_SECS:-0}" "${XT_SOAK_STOP_AT:-0}"
