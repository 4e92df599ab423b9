#!/usr/bin/env bash
# Instructions per packet of the guest's network path, on the host (no Xen, no QEMU).
#
#   tests/host/ipp.sh [BYTES]      (default 2 MiB echoed)
#
# Builds tests/host/ipp (the `net-ipp` binary: netfront over the simulated netback -> smoltcp ->
# the services' TCP echo, see its module docs) in release mode (the kernel's profile: opt-level
# "s") and runs it three times under `valgrind --tool=callgrind`, each time counting only one of
# the guest's steps (--toggle-collect): receive (smoltcp ingress over netfront's rx ring),
# services (the echo's pump) and send (smoltcp egress over netfront's tx ring). Prints the
# instructions (Ir) per frame and per KiB echoed of each step, then one `IPP-JSON {...}` line.
# Time is simulated, so the figures are deterministic for a given toolchain and source: a change
# in them is a change in the code's work, not noise. BENCHMARKS.md keeps them.
# Installs valgrind (Debian's package) if it is missing and we are root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/harness/host-lib.sh
. tests/harness/host-lib.sh

BYTES=${1:-2097152}
case "$BYTES" in '' | *[!0-9]*) xt_die "BYTES must be a number" ;; esac
if ! command -v valgrind >/dev/null; then
	[ "$(id -u)" = 0 ] || xt_die "valgrind is missing (apt-get install valgrind)"
	xt_apt_install valgrind
fi
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
cargo build --release -q -p net-ipp
BIN="$(xt_target_dir)/release/net-ipp"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The plain run: the counts (deterministic, the same under valgrind).
"$BIN" "$BYTES" >"$TMP/counts" || xt_die "net-ipp failed: $(cat "$TMP/counts")"
counts=$(cat "$TMP/counts")
# field NAME: NAME=value from the counts line.
field() {
	local re="(^| )$1=([0-9]+)"
	[[ $counts =~ $re ]] || xt_die "net-ipp printed no $1: $counts"
	echo "${BASH_REMATCH[2]}"
}
declare -A IR
for step in rx services tx; do
	valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$step" --toggle-collect="*ipp_guest_${step}*" \
		"$BIN" "$BYTES" >"$TMP/out.$step" 2>"$TMP/err.$step" || xt_die "valgrind ($step) failed: $(tail -n 5 "$TMP/err.$step")"
	cmp -s "$TMP/out.$step" "$TMP/counts" || xt_die "net-ipp counted differently under valgrind: $(cat "$TMP/out.$step")"
	IR[$step]=$(sed -n -E 's/^==[0-9]+== Collected : ([0-9]+)$/\1/p' "$TMP/err.$step")
	[ -n "${IR[$step]}" ] || xt_die "no 'Collected' line from callgrind ($step)"
done

rx_frames=$(field rx_step_rx_frames)
tx_frames=$(field tx_step_tx_frames)
kib=$((BYTES / 1024))
per() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.0f", a / b; else print "null"}'; }
rustc_v=$(rustc --version 2>/dev/null | cut -d' ' -f2-)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "net-ipp: $counts"
printf '%-44s %12s %14s %12s\n' "step (callgrind Ir, $BYTES bytes echoed)" "Ir" "Ir per frame" "Ir per KiB"
printf '%-44s %12s %14s %12s\n' "receive (ingress, netfront rx; $rx_frames frames)" "${IR[rx]}" "$(per "${IR[rx]}" "$rx_frames")" "$(per "${IR[rx]}" "$kib")"
printf '%-44s %12s %14s %12s\n' "services (the echo's pump)" "${IR[services]}" "" "$(per "${IR[services]}" "$kib")"
printf '%-44s %12s %14s %12s\n' "send (egress, netfront tx; $tx_frames frames)" "${IR[tx]}" "$(per "${IR[tx]}" "$tx_frames")" "$(per "${IR[tx]}" "$kib")"
echo "IPP-JSON {\"commit\":\"$commit\",\"rustc\":\"$rustc_v\",\"valgrind\":\"$(valgrind --version)\",\"bytes\":$BYTES,\"rx_frames\":$rx_frames,\"tx_frames\":$tx_frames,\"ir\":{\"rx\":${IR[rx]},\"services\":${IR[services]},\"tx\":${IR[tx]}},\"ir_per_frame\":{\"rx\":$(per "${IR[rx]}" "$rx_frames"),\"tx\":$(per "${IR[tx]}" "$tx_frames")},\"ir_per_kib\":{\"rx\":$(per "${IR[rx]}" "$kib"),\"services\":$(per "${IR[services]}" "$kib"),\"tx\":$(per "${IR[tx]}" "$kib")}}"
