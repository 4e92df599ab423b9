#!/usr/bin/env bash
# shellcheck disable=SC2016 # the dpkg-query -f formats are literal
# Builds the cached dom0 payload of the real-Xen harness from Debian bookworm:
#
#   $XT_CACHE/dom0/xen.elf              Xen 4.17 hypervisor (multiboot ELF, from xen-hypervisor-4.17-amd64)
#   $XT_CACHE/dom0/vmlinux              Debian's kernel as a plain ELF, booted as the PV dom0
#   $XT_CACHE/dom0/dom0-initrd.cpio     dom0 root filesystem (debootstrap minbase + dom0-packages.list)
#   $XT_CACHE/dom0/versions.txt         exact versions of everything in it
#
# The dom0 root filesystem also carries /opt/xt-linux: a Linux PVH domU for the bench scenario
# (Debian's own bzImage, and an initramfs with busybox, iperf3, nbdkit with its file plugin, their
# libraries, and the xen-netfront and xen-blkfront modules, whose /init brings up eth0, starts
# `iperf3 -s` and, once /dev/xvda shows up, `nbdkit file /dev/xvda` on TCP 10809). nbdkit is
# installed into the rootfs only to be copied from there, then purged: dom0 itself does not need it.
#
# XT_CACHE is $REPO/.cache/xen-harness unless XT_CACHE_DIR is set. The result is keyed by a hash
# of this script and dom0-packages.list: while the key matches, this script does nothing (no
# network). When it changes, dom0 is rebuilt from scratch, reusing the .deb files kept in
# $XT_CACHE/debs, so only new or updated packages are downloaded.
#
# The base initramfs carries no harness code: the per-run overlay (run-suite.sh) brings /init,
# the scenarios and the guest kernel, so changing those never rebuilds this.
#
# Usage: build-dom0.sh [--force]      (--force rebuilds even when the key matches)
# Needs root and a Debian host (debootstrap, chroot, dpkg-deb); installs its host packages.
# Mirrors (only for a build; a cached payload needs none): XT_MIRROR and XT_SECURITY_MIRROR, else
# the first URI ending in /debian and in /debian-security of the host's apt sources
# (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list, deb822 *.sources). No other fallback.
set -euo pipefail

# shellcheck source=tests/harness/host-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/host-lib.sh"

SUITE=bookworm
XENVER=4.17
# Kernel modules dom0 needs; build-dom0.sh keeps only these and their dependencies.
# e1000: QEMU's default NIC, dom0's link to QEMU user networking in `./run.sh` (the host's
# 127.0.0.1 port forwards); the suite runs without a NIC.
DOM0_MODULES="xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback xen-netback bridge loop e1000"
# The bench's Linux domU: its kernel modules, and packages installed into the rootfs only for the
# domU's initramfs to copy (purged from dom0 afterwards; their versions go to versions.txt).
DOMU_MODULES="xen-netfront xen-blkfront"
DOMU_PKGS="nbdkit"
NBDKIT_PLUGIN=/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-file-plugin.so

FORCE=0
[ "${1:-}" = --force ] && FORCE=1

PKGLIST="$XT_HARNESS/dom0-packages.list"
KEY=$(cat "${BASH_SOURCE[0]}" "$PKGLIST" | sha256sum | cut -c1-16)
OUT="$XT_CACHE/dom0"
DEBS="$XT_CACHE/debs"
BUILD="$XT_CACHE/build"
ROOT="$BUILD/rootfs"

is_current() {
	[ -s "$OUT/xen.elf" ] && [ -s "$OUT/vmlinux" ] && [ -s "$OUT/dom0-initrd.cpio" ] &&
		[ "$(cat "$OUT/key" 2>/dev/null)" = "$KEY" ]
}

if [ $FORCE = 0 ] && is_current; then
	xt_log "dom0 payload is cached (key $KEY): $OUT"
	exit 0
fi

[ "$(id -u)" = 0 ] || xt_die "building dom0 needs root (debootstrap, chroot)"
mkdir -p "$XT_CACHE" "$DEBS"
# One build at a time (two runs started together share the cache).
exec 9>"$XT_CACHE/build.lock"
flock 9
if [ $FORCE = 0 ] && is_current; then
	xt_log "dom0 payload was built meanwhile (key $KEY)"
	exit 0
fi

T0=$(xt_now_ms)
xt_log "building dom0 payload (key $KEY) in $BUILD"

# --- mirrors: XT_MIRROR / XT_SECURITY_MIRROR, else the host's apt sources (one-line or deb822) --
APT_SOURCES="/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources"
# host_uris: every http(s)/ftp URI of the host's deb (not deb-src) sources, one a line.
host_uris() {
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed -n -E 's/^[[:space:]]*(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)//p' |
		tr -s ' \t' '\n' | grep -E '^(https?|ftp)://' || true
}
URIS=$(host_uris)
MIRROR=${XT_MIRROR:-$(grep -m 1 -E '/debian/?$' <<<"$URIS" || true)}
SECMIRROR=${XT_SECURITY_MIRROR:-$(grep -m 1 -E '/debian-security/?$' <<<"$URIS" || true)}
nomirror=""
[ -n "$MIRROR" ] || nomirror="no Debian mirror (a URI ending in /debian) and XT_MIRROR is not set"
[ -n "$SECMIRROR" ] ||
	nomirror+="${nomirror:+; }no security mirror (a URI ending in /debian-security) and XT_SECURITY_MIRROR is not set"
[ -z "$nomirror" ] || xt_die "cannot build dom0: the host's apt sources ($APT_SOURCES) have $nomirror"
xt_log "mirrors: $MIRROR and $SECMIRROR"
xt_apt_install debootstrap cpio gzip xz-utils zstd debian-archive-keyring

in_root() {
	chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}
# save_debs: keep every .deb the rootfs' apt fetched, for the next rebuild.
save_debs() {
	find "$ROOT/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -t "$DEBS/" {} + 2>/dev/null || true
}
fail_log() {
	tail -n 30 "$1" >&2
	xt_die "$2 (full log: $1)"
}

# --- 1. debootstrap ---------------------------------------------------------------------------
rm -rf "$BUILD"
mkdir -p "$BUILD"
t=$(xt_now_ms)
debootstrap --variant=minbase --cache-dir="$DEBS" "$SUITE" "$ROOT" "$MIRROR" >"$BUILD/debootstrap.log" 2>&1 ||
	fail_log "$BUILD/debootstrap.log" "debootstrap failed"
xt_log "debootstrap done ($(xt_elapsed "$t"))"

# --- 2. packages (bookworm + -updates + -security, so xen-utils matches the hypervisor) -------
t=$(xt_now_ms)
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECMIRROR $SUITE-security main
EOF
echo 'Acquire::Languages "none";' >"$ROOT/etc/apt/apt.conf.d/99xen-harness"
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
# Offer the kept .deb files to apt (it verifies them against the index before use).
find "$DEBS" -maxdepth 1 -name '*.deb' -exec cp -n -t "$ROOT/var/cache/apt/archives/" {} + 2>/dev/null || true
mapfile -t PKGS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PKGLIST" | grep -v '^$')
APTLOG="$BUILD/apt.log"
in_root apt-get update -q >"$APTLOG" 2>&1 || fail_log "$APTLOG" "apt-get update in the rootfs failed"
in_root apt-get -y -q dist-upgrade >>"$APTLOG" 2>&1 || fail_log "$APTLOG" "apt-get dist-upgrade failed"
# xen-utils' postinst prints "Can't find hypervisor information in sysfs!" in a chroot: harmless.
in_root apt-get install -y -q --no-install-recommends "${PKGS[@]}" >>"$APTLOG" 2>&1 ||
	fail_log "$APTLOG" "apt-get install ${PKGS[*]} failed"
# The hypervisor and the dom0 kernel are only downloaded (dependencies included), then unpacked
# on the host: they are boot modules for QEMU, not files dom0 needs.
KPKG=$(in_root apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
[ -n "$KPKG" ] || xt_die "cannot resolve linux-image-amd64 to a kernel package"
KVER=${KPKG#linux-image-}
in_root apt-get install -y -q --download-only --no-install-recommends "$KPKG" "xen-hypervisor-$XENVER-amd64" \
	>>"$APTLOG" 2>&1 || fail_log "$APTLOG" "downloading $KPKG and xen-hypervisor-$XENVER-amd64 failed"
save_debs
xt_log "packages installed ($(xt_elapsed "$t")); kernel $KPKG"

# pick_deb PKG: the .deb of PKG's candidate version in the rootfs' apt archive.
pick_deb() {
	local ver f
	ver=$(in_root dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true)
	[ -n "$ver" ] || ver=$(in_root apt-cache policy "$1" | awk '$1 == "Candidate:" {print $2}')
	f="$ROOT/var/cache/apt/archives/${1}_${ver//:/%3a}_amd64.deb"
	[ -e "$f" ] || xt_die "no .deb for $1 $ver in the rootfs' apt archive"
	echo "$f"
}
KDEB=$(pick_deb "$KPKG")
XDEB=$(pick_deb "xen-hypervisor-$XENVER-amd64")
XENVERSION=$(dpkg-deb -f "$XDEB" Version)
UTILSVERSION=$(in_root dpkg-query -W -f='${Version}' "xen-utils-$XENVER")
[ "$XENVERSION" = "$UTILSVERSION" ] ||
	xt_die "xen-hypervisor-$XENVER-amd64 $XENVERSION != xen-utils-$XENVER $UTILSVERSION (the tools must match Xen)"

# --- 3. Xen, kernel and the module closure ----------------------------------------------------
t=$(xt_now_ms)
NEW="$XT_CACHE/dom0.new"
rm -rf "$NEW" "$BUILD/x"
mkdir -p "$NEW" "$BUILD/x/kernel" "$BUILD/x/xen"
dpkg-deb -x "$XDEB" "$BUILD/x/xen"
dpkg-deb -x "$KDEB" "$BUILD/x/kernel"
gzip -dc "$BUILD/x/xen/boot/xen-$XENVER-amd64.gz" >"$NEW/xen.elf"
# Xen would unpack the bzImage's XZ payload itself, which takes ~9 s under TCG; hand it the ELF.
# The payload sits at setup_sects (byte 0x1f1) + payload_offset (0x248), payload_length (0x24c)
# bytes long (Linux's Documentation/arch/x86/boot.rst); XZ is Debian's choice, gzip/zstd also work.
VMLINUZ="$BUILD/x/kernel/boot/vmlinuz-$KVER"
le32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$VMLINUZ" | tr -d ' ')
[ "$setup_sects" = 0 ] && setup_sects=4
start=$(((setup_sects + 1) * 512 + $(le32 "$VMLINUZ" $((0x248)))))
dd if="$VMLINUZ" of="$BUILD/payload" bs=64K iflag=skip_bytes,count_bytes status=none \
	skip="$start" count="$(le32 "$VMLINUZ" $((0x24c)))"
case "$(od -An -tx1 -N4 "$BUILD/payload" | tr -d ' ')" in
fd377a58) xz -dc --single-stream <"$BUILD/payload" >"$NEW/vmlinux" ;;
1f8b*) gzip -dc <"$BUILD/payload" >"$NEW/vmlinux" 2>/dev/null || [ -s "$NEW/vmlinux" ] ;;
28b52ffd) zstd -dc <"$BUILD/payload" >"$NEW/vmlinux" ;;
*) xt_die "unknown compression of the bzImage payload of $VMLINUZ" ;;
esac
[ "$(od -An -c -j1 -N3 "$NEW/vmlinux" | tr -d ' ')" = ELF ] || xt_die "the unpacked kernel of $VMLINUZ is not an ELF"

MODDIR="$ROOT/usr/lib/modules/$KVER"
rm -rf "$MODDIR"
mkdir -p "$ROOT/usr/lib/modules"
mv "$BUILD/x/kernel/lib/modules/$KVER" "$MODDIR"
in_root depmod "$KVER"

# --- 3b. the Linux PVH domU of the bench scenario (before dom0's modules are trimmed) --------
t=$(xt_now_ms)
LX="$ROOT/opt/xt-linux"
DU="$BUILD/domu"
rm -rf "$LX" "$DU"
mkdir -p "$LX" "$DU"/{bin,dev,proc,sys,tmp,run,lib/modules}
cp "$VMLINUZ" "$LX/vmlinuz"
echo "$KPKG $(dpkg-deb -f "$KDEB" Version)" >"$LX/version"
# shellcheck disable=SC2086 # DOMU_PKGS is a word list
in_root apt-get install -y -q --no-install-recommends $DOMU_PKGS >>"$APTLOG" 2>&1 ||
	fail_log "$APTLOG" "apt-get install $DOMU_PKGS (for the Linux domU) failed"
save_debs
# shellcheck disable=SC2086
DOMU_PKG_VERSIONS=$(in_root dpkg-query -W -f='${Package}: ${Version}\n' $DOMU_PKGS)
# Modules in load order (modprobe prints dependencies first, each once), uncompressed for busybox insmod.
for m in $DOMU_MODULES; do
	in_root modprobe -S "$KVER" --show-depends "$m" || xt_die "$m not found in $KPKG"
done | awk '$1 == "insmod" && !seen[$2]++ {print $2}' >"$BUILD/domu.modules"
while read -r m; do
	b=$(basename "$m")
	case "$b" in
	*.ko.xz) xz -dc "$ROOT$m" >"$DU/lib/modules/${b%.xz}" && b=${b%.xz} ;;
	*.ko.zst) zstd -qdc "$ROOT$m" >"$DU/lib/modules/${b%.zst}" && b=${b%.zst} ;;
	*) cp "$ROOT$m" "$DU/lib/modules/$b" ;;
	esac
	echo "$b" >>"$DU/lib/modules/order"
done <"$BUILD/domu.modules"
[ -s "$DU/lib/modules/order" ] || xt_die "no module to load for $DOMU_MODULES (are they built in?)"
# Programs (to /bin), nbdkit's plugin (at its own path: nbdkit looks there) and every shared
# library they load (ldd in the rootfs; copied with their paths).
for b in /usr/bin/busybox /usr/bin/iperf3 /usr/bin/nbdkit "$NBDKIT_PLUGIN"; do
	[ -e "$ROOT$b" ] || b=/bin/${b##*/}
	[ -e "$ROOT$b" ] || xt_die "$b is missing from the rootfs (dom0-packages.list, DOMU_PKGS)"
	if [ "$b" = "$NBDKIT_PLUGIN" ]; then
		mkdir -p "$DU$(dirname "$b")"
		cp -L "$ROOT$b" "$DU$b"
	else
		cp -L "$ROOT$b" "$DU/bin/"
	fi
	in_root ldd "$b" | grep -oE '/[^ ]+' | while read -r lib; do
		mkdir -p "$DU$(dirname "$lib")"
		cp -L "$ROOT$lib" "$DU$lib"
	done
done
cat >"$DU/init" <<'INIT'
#!/bin/busybox sh
# /init of the bench scenario's Linux PVH domU: eth0 at xt.ip= (A.B.C.D/N), then iperf3 -s, then
# (when the domU has a disk) `nbdkit file /dev/xvda` on TCP 10809: any export name, e.g.
# nbd://<ip>:10809/xvda, serves the whole disk.
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m" || echo "linux-domu: insmod $m failed"; done
IP=""
for w in $(cat /proc/cmdline); do
	case "$w" in xt.ip=*) IP=${w#xt.ip=} ;; esac
done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
ip link set lo up
ip link set eth0 up && ip addr add "$IP" dev eth0 && echo "linux-domu: eth0 up ip=$IP"
iperf3 -s >/dev/null 2>&1 &
echo "linux-domu: iperf3 -s started (pid $!)"
n=0
while [ ! -b /dev/xvda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
if [ -b /dev/xvda ]; then
	nbdkit -f -i 0.0.0.0 -p 10809 file /dev/xvda &
	echo "linux-domu: nbdkit file /dev/xvda started on port 10809 (pid $!, $(cat /sys/block/xvda/size) sectors)"
else
	echo "linux-domu: no /dev/xvda after 10 s: no nbdkit"
fi
while :; do sleep 3600; done
INIT
chmod 755 "$DU/init"
(cd "$DU" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$LX/initrd.cpio"
DOMU_MODS=$(tr '\n' ' ' <"$DU/lib/modules/order")
xt_log "Linux domU: vmlinuz $(du -h "$LX/vmlinuz" | cut -f1), initramfs $(du -h "$LX/initrd.cpio" | cut -f1), modules $DOMU_MODS($(xt_elapsed "$t"))"
# shellcheck disable=SC2086
in_root apt-get purge -y -q --autoremove $DOMU_PKGS >>"$APTLOG" 2>&1 || fail_log "$APTLOG" "apt-get purge $DOMU_PKGS failed"
KEEP="$BUILD/modules.keep"
for m in $DOM0_MODULES; do
	# Prints "insmod /path.ko" per module in dependency order, or "builtin NAME".
	in_root modprobe -S "$KVER" --show-depends "$m" || xt_die "module $m not found in $KPKG"
done | awk '$1 == "insmod" {print $2}' | sed 's|^/lib/|/usr/lib/|' | sort -u >"$KEEP"
find "$MODDIR" -name '*.ko*' | while read -r f; do
	grep -qxF "${f#"$ROOT"}" "$KEEP" || rm -f "$f"
done
find "$MODDIR" -type d -empty -delete
in_root depmod "$KVER"
xt_log "xen.elf, vmlinux, $(wc -l <"$KEEP") modules kept ($(xt_elapsed "$t"))"

# --- 4. trim and pack -----------------------------------------------------------------------
t=$(xt_now_ms)
{
	echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) key=$KEY"
	echo "host: $(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "xen-hypervisor-$XENVER-amd64: $XENVERSION"
	echo "$KPKG: $(dpkg-deb -f "$KDEB" Version)"
	echo "modules: $(sed 's|.*/||' "$KEEP" | tr '\n' ' ')"
	echo "linux domU (bench): /opt/xt-linux/vmlinuz from $KPKG, initramfs modules $DOMU_MODS"
	echo "linux domU (bench) packages: ${DOMU_PKG_VERSIONS//$'\n'/, }"
	in_root dpkg-query -W -f='${Package}: ${Version}\n' "${PKGS[@]}" xen-utils-common
} >"$NEW/versions.txt"
# The run overlay provides the real /init; this one only explains a missing overlay.
cat >"$ROOT/init" <<'EOF'
#!/bin/sh
echo "xen-harness: this dom0 initramfs needs the per-run overlay (tests/harness/run-suite.sh appends it)"
echo o > /proc/sysrq-trigger
EOF
chmod 755 "$ROOT/init"
echo xen-dom0 >"$ROOT/etc/hostname"
# libvirtd loads every driver module it finds and gives up if one fails to start: the qemu driver
# (pulled in by libvirt-daemon) wants its libvirt-qemu user, nodedev wants udev, nwfilter firewall
# tools, none of which this dom0 has. Only the libxl driver is kept (a bridge <interface> needs no
# other); libvirtd skips missing modules.
find "$ROOT/usr/lib/x86_64-linux-gnu/libvirt/connection-driver" -name 'libvirt_driver_*.so' \
	! -name libvirt_driver_libxl.so -delete 2>/dev/null || true
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* \
	"$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* \
	"$ROOT"/usr/lib/udev/hwdb.bin "$ROOT"/etc/udev/hwdb.bin "$ROOT"/usr/share/zoneinfo
# Uncompressed: unpacking gzip in dom0 took ~11 s under TCG; a plain cpio takes a fraction of it.
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) >"$NEW/dom0-initrd.cpio"
echo "$KEY" >"$NEW/key"
rm -rf "$OUT"
mv "$NEW" "$OUT"
xt_log "packed $(du -h "$OUT/dom0-initrd.cpio" | cut -f1) initramfs ($(xt_elapsed "$t"))"
xt_log "dom0 payload built in $(xt_elapsed "$T0"): $OUT"
cat "$OUT/versions.txt" >&2
