#!/bin/bash
# /init of the harness dom0 (PID 1, from the per-run overlay): prepares a Xen dom0 without
# udev or systemd, then runs /harness/runner.sh (suite or interactive mode, per
# /harness/run.conf) and powers the emulated machine off.
#
# Everything it prints goes to /dev/console = hvc0 -> Xen -> com1 -> QEMU's stdio.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C LC_ALL=C HOME=/root TERM=dumb

poweroff_now() {
	sync
	# PID 1 must never exit (kernel panic); sysrq 'o' powers off at once, Xen then ends QEMU.
	echo o >/proc/sysrq-trigger
	sleep 60
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# Without udev nothing creates these; Xen's hotplug locking (locking.sh: stat -L /dev/stdin)
# spins until libxl kills the script, so `xl create` with a disk or vif would time out.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /run/lock /run/xt /var/log/xen/console /var/lib/xen /tmp
hostname xen-dom0
# Kernel messages stay in dmesg (dumped on failure) instead of cutting through our lines.
dmesg -n 1

echo "xt: dom0 /init started, kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime) s"

# shellcheck source=/dev/null
. /harness/run.conf

for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback xen-netback bridge loop; do
	modprobe "$m" || echo "xt: WARNING: modprobe $m failed"
done

# Guest consoles are logged to /var/log/xen/console/guest-<name>.log by xenconsoled.
echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >>/etc/default/xen
# dom0 has a fixed dom0_mem: xl must not try to balloon it down.
sed -i -E 's/^#?[[:space:]]*autoballoon=.*/autoballoon="off"/' /etc/xen/xl.conf
grep -q '^autoballoon=' /etc/xen/xl.conf || echo 'autoballoon="off"' >>/etc/xen/xl.conf

if ! timeout 120 /etc/init.d/xen start >/run/xt/xen-start.log 2>&1 || ! timeout 60 xl info >/run/xt/xl-info 2>&1; then
	echo "xt: FATAL: Xen daemons did not start"
	sed 's/^/xt| /' /run/xt/xen-start.log /run/xt/xl-info 2>/dev/null
	xl dmesg 2>&1 | tail -n 40 | sed 's/^/xt| /'
	echo "RESULT dom0 FAIL Xen daemons did not start"
	echo "XT-FINAL-BEGIN"
	echo "RESULT dom0 FAIL Xen daemons did not start"
	echo "0 passed, 1 failed"
	echo "flakes: 0"
	echo "XT-FINAL-END"
	poweroff_now
fi
echo "xt: Xen $(awk -F': *' '$1 ~ /^xen_version/ {print $2}' /run/xt/xl-info)," \
	"daemons: $(ps -o comm= -C oxenstored,xenstored,xenconsoled | tr '\n' ' ')"

# A bridge with a link-local /24; QEMU has no NIC, so nothing leaves the emulated machine.
ip link set lo up
ip link add xenbr0 type bridge && ip addr add 169.254.77.1/24 dev xenbr0 && ip link set xenbr0 up ||
	echo "xt: WARNING: could not create xenbr0"

echo "xt: dom0 ready, uptime $(cut -d' ' -f1 /proc/uptime) s"

/harness/runner.sh "${XT_MODE:-suite}"

if [ "${XT_SHELL:-0}" = 1 ]; then
	echo "xt: XT_SHELL=1: shell on the console; 'exit' powers off"
	setsid -c /bin/bash -i </dev/hvc0 >/dev/hvc0 2>&1
fi
echo "xt: powering off"
poweroff_now
