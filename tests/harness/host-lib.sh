# shellcheck shell=bash disable=SC2034 # variables for the scripts that source this
# Host-side helpers shared by build-dom0.sh, run-suite.sh and ../../run.sh (sourced, not run).
#
# Provides: XT_REPO (repository root), XT_HARNESS (this folder), XT_CACHE (the harness cache,
# default $XT_REPO/.cache/xen-harness, override with XT_CACHE_DIR), xt_log, xt_die,
# xt_apt_install, xt_target_dir, xt_now_ms, xt_elapsed.

XT_HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
XT_REPO=$(cd "$XT_HARNESS/../.." && pwd)
XT_CACHE=${XT_CACHE_DIR:-$XT_REPO/.cache/xen-harness}

# xt_log MSG...: one progress line on stderr, prefixed with the wall-clock time.
xt_log() { printf '[xen-harness %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# xt_die MSG...: print an error and exit 1.
xt_die() {
	printf '[xen-harness] ERROR: %s\n' "$*" >&2
	exit 1
}

# xt_now_ms: milliseconds since the epoch (bash 5 EPOCHREALTIME, no fork).
xt_now_ms() {
	local t=${EPOCHREALTIME/./}
	echo $((t / 1000))
}

# xt_elapsed START_MS: "12.3 s" since START_MS.
xt_elapsed() {
	local d=$(($(xt_now_ms) - $1))
	printf '%d.%d s' $((d / 1000)) $(((d % 1000) / 100))
}

XT_APT_UPDATED=${XT_APT_UPDATED:-0}
# xt_apt_install PKG...: installs the Debian packages among PKG that are not installed yet.
# Runs `apt-get update` at most once per process tree (exports XT_APT_UPDATED=1), and does
# nothing at all when every package is already installed.
xt_apt_install() {
	local missing=() p st
	for p in "$@"; do
		st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$st" = installed ] || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || xt_die "need root to install: ${missing[*]}"
	if [ "$XT_APT_UPDATED" != 1 ]; then
		xt_log "apt-get update"
		apt-get update -q >/dev/null || xt_die "apt-get update failed"
		XT_APT_UPDATED=1
		export XT_APT_UPDATED
	fi
	xt_log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
		xt_die "apt-get install ${missing[*]} failed"
}

# xt_target_dir: cargo's target directory (CARGO_TARGET_DIR if set, relative to the repo, else target/).
xt_target_dir() {
	local t=${CARGO_TARGET_DIR:-target}
	case "$t" in
	/*) echo "$t" ;;
	*) echo "$XT_REPO/$t" ;;
	esac
}

# xt_kernel_elf: path of the release kernel ELF built by `cargo kbuild`.
xt_kernel_elf() { echo "$(xt_target_dir)/x86_64-xen/release/kernel"; }
