# The long save/restore soak, run by `./run.sh soak [--rounds N] [--minutes M]` as a user scenario
# of tests/harness/run-suite.sh (--scenario tests/soak/soak.sh --env XT_SOAK_ROUNDS=N
# --env XT_SOAK_MAX_SECS=S, and optionally --env XT_SOAK_STOP_AT=<epoch seconds>: no round after
# that time once 10 are done). The body is soak_run (tests/scenarios/lib/soak.sh), the same as the
# default suite's soak-short. The runner starts a default guest for every user scenario; the soak
# has its own (with a disk), so that one is destroyed first.
# xt-timeout: 86400
# Helpers soak_* and blk_*: tests/scenarios/lib/soak.sh, tests/scenarios/lib/blk.sh.
[ -n "${XT_DOMAIN:-}" ] && xt_destroy "$XT_DOMAIN"
soak_run "${XT_SOAK_ROUNDS:-100}" "${XT_SOAK_MAX_SECS:-0}" "${XT_SOAK_STOP_AT:-0}"
