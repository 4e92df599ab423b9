#!/usr/bin/env python3
"""The bench's Linux domU initramfs with a TCP echo service (port 7) added.

Usage: bench-initrd.py ORIG OUT

OUT = ORIG (the initramfs build-dom0.sh made, /opt/xt-linux/initrd.cpio) followed by a second
newc archive with two files: /init.bench-orig (ORIG's /init, unchanged) and a new /init that
starts `busybox nc -ll -p 7 -e /bin/cat` (a persistent echo server, one forked cat per
connection) and then runs the original. Linux unpacks concatenated archives in order, later files
replacing earlier ones. Done at run time in dom0 so that the cached dom0 image (and its cache key)
stays as it is; see BENCHMARKS.md.
"""

import sys

WRAPPER = b"""#!/bin/busybox sh
# bench (tests/scenarios/lib/bench-initrd.py): a TCP echo server on port 7, then the original /init.
/bin/busybox --install -s /bin
# /dev is empty until devtmpfs is mounted (the original /init mounts it again, quietly failing).
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox nc -ll -p 7 -e /bin/cat </dev/null >/dev/null 2>&1 &
echo "linux-domu: tcp echo (busybox nc) on port 7 (pid $!)"
exec /bin/busybox sh /init.bench-orig
"""


def entries(data):
    """Yields (name, mode, content) of each newc entry of the first archive in data."""
    off = 0
    while off + 110 <= len(data):
        hdr = data[off:off + 110]
        if hdr[:6] not in (b"070701", b"070702"):
            raise ValueError(f"no newc header at byte {off}")
        fields = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name_start = off + 110
        name = data[name_start:name_start + namesize - 1].decode()
        data_start = (name_start + namesize + 3) & ~3
        content = data[data_start:data_start + filesize]
        off = (data_start + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return
        yield name, mode, content


def newc(name, mode, content, ino):
    """One newc entry (header, name, data, each padded to 4 bytes)."""
    nb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(content), 0, 0, 0, 0, len(nb), 0]
    out = b"070701" + b"".join(b"%08X" % f for f in fields) + nb
    out += b"\0" * (-len(out) % 4)
    out += content + b"\0" * (-len(content) % 4)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bench-initrd.py ORIG OUT")
    with open(sys.argv[1], "rb") as f:
        orig = f.read()
    init = None
    for name, mode, content in entries(orig):
        if name in ("init", "./init"):
            init = (mode, content)
    if init is None:
        sys.exit(f"{sys.argv[1]} has no /init")
    extra = newc("init.bench-orig", init[0], init[1], 900001)
    extra += newc("init", 0o100755, WRAPPER, 900002)
    extra += newc("TRAILER!!!", 0, b"", 0)
    extra += b"\0" * (-len(extra) % 512)
    with open(sys.argv[2], "wb") as f:
        f.write(orig)
        f.write(b"\0" * (-len(orig) % 4))
        f.write(extra)


if __name__ == "__main__":
    main()
