#!/usr/bin/env python3
"""An NBD writer that records which writes the server acknowledged (blkback-detach-writes).

  nbd-ack-writer.py write HOST PORT EXPORT LOG SEED BLOCK COUNT DEPTH RATE STOPFILE
      NBD_OPT_GO to EXPORT, then WRITE blocks 0..COUNT-1 (BLOCK bytes each, at offset i*BLOCK,
      each block once, so no two writes overlap), at most DEPTH in flight and RATE per second.
      Every reply is logged as it arrives: `A <offset> <len>` (acknowledged) or
      `E <offset> <len> <errno>` (an error reply). It stops sending once STOPFILE exists, after 16
      error replies, or when the blocks run out; then it waits (60 s) for the replies still owed.
      Writes that never got a reply (the connection closed, or the wait ran out) are logged
      `N <offset> <len>`. The last line is `S sent=<n> acked=<n> errors=<n> noreply=<n>`.
  nbd-ack-writer.py verify LOG SEED FILE
      Every `A` range of LOG must hold, in FILE (the disk's backing file, read by dom0), the
      bytes the writer sent there. Prints `ok: ...` or `FAIL: ...` lines; exit 1 on a mismatch.
  nbd-ack-writer.py rw HOST PORT EXPORT SEED OFFSET LEN FILE
      After a re-attach: WRITE LEN bytes at OFFSET (fresh pattern), FLUSH, READ them back; both
      must succeed, the read-back must equal what was written, and so must FILE at OFFSET.

The payload of block i is random.Random(SEED * 1000003 + i).randbytes(BLOCK): reproducible by
`verify` without storing it. Simple replies only (no structured replies are negotiated).
Standalone on purpose (lib/nbd-client.py belongs to other scenarios); the protocol is
NetworkBlockDevice/nbd doc/proto.md, fixed newstyle.
"""
import os
import random
import select
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_REPLY = 0x67446698
OPT_GO = 7
REP_ACK, REP_INFO = 1, 3
INFO_EXPORT = 0
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
TIMEOUT = 60
MAX_ERRORS = 16


class Closed(Exception):
    pass


def pattern(seed, i, n):
    return random.Random(seed * 1000003 + i).randbytes(n)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        try:
            got = s.recv(n - len(buf))
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed("connection reset: %s" % e)
        if not got:
            raise Closed("connection closed after %d of %d bytes" % (len(buf), n))
        buf += got
    return buf


def connect(host, port, export):
    """Fixed newstyle handshake and NBD_OPT_GO; returns (socket, export size)."""
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    magic, opt, flags = struct.unpack(">QQH", recv_exact(s, 18))
    if magic != NBDMAGIC or opt != IHAVEOPT or not flags & 1:
        raise Closed("not a fixed newstyle greeting")
    s.sendall(struct.pack(">I", 1 | (flags & 2)))
    name = export.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    size = None
    while True:
        magic, o, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
        if magic != REPLY_MAGIC or length > 1 << 20:
            raise Closed("bad option reply")
        body = recv_exact(s, length)
        if rtype == REP_ACK:
            break
        if rtype & 0x80000000:
            raise Closed("NBD_OPT_GO %r: error reply %#x" % (export, rtype))
        if rtype == REP_INFO and len(body) == 12 and struct.unpack(">H", body[:2])[0] == INFO_EXPORT:
            size = struct.unpack(">Q", body[2:10])[0]
    if size is None:
        raise Closed("no NBD_INFO_EXPORT")
    return s, size


def request(s, cmd, handle, offset, length, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, handle, offset, length) + payload)


def simple_reply(s):
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    if magic != SIMPLE_REPLY:
        raise Closed("reply magic %#x" % magic)
    return err, handle


def cmd_write(host, port, export, log, seed, block, count, depth, rate, stopfile):
    s, size = connect(host, port, export)
    count = min(count, size // block)
    out = open(log, "w", buffering=1)
    owed = {}  # handle -> offset
    sent = acked = errors = 0
    nxt = 0
    start = time.monotonic()
    stopping = False
    closed = None
    try:
        while True:
            if not stopping and (nxt >= count or errors >= MAX_ERRORS or os.path.exists(stopfile)):
                stopping = True
                deadline = time.monotonic() + TIMEOUT
            if stopping and not owed:
                break
            if stopping and time.monotonic() > deadline:
                break
            due = start + nxt / rate
            can_send = not stopping and len(owed) < depth and time.monotonic() >= due
            if can_send:
                off = nxt * block
                handle = nxt + 1
                owed[handle] = off
                request(s, CMD_WRITE, handle, off, block, pattern(seed, nxt, block))
                nxt += 1
                sent += 1
                continue
            wait = 0.5 if stopping or len(owed) >= depth else max(0.0, min(0.5, due - time.monotonic()))
            r, _, _ = select.select([s], [], [], wait)
            if not r:
                continue
            err, handle = simple_reply(s)
            off = owed.pop(handle, None)
            if off is None:
                raise Closed("reply for handle %d, which is not owed" % handle)
            if err == 0:
                acked += 1
                out.write("A %d %d\n" % (off, block))
            else:
                errors += 1
                out.write("E %d %d %d\n" % (off, block, err))
    except (Closed, OSError) as e:
        closed = str(e)
    for handle, off in sorted(owed.items()):
        out.write("N %d %d\n" % (off, block))
    if closed is None:
        try:
            request(s, CMD_DISC, 0, 0, 0)
        except OSError:
            pass
    s.close()
    out.write("S sent=%d acked=%d errors=%d noreply=%d%s\n"
              % (sent, acked, errors, len(owed), " closed=%r" % closed if closed else ""))
    out.close()
    return 0


def cmd_verify(log, seed, path):
    bad = good = 0
    with open(path, "rb") as f:
        for line in open(log):
            p = line.split()
            if not p or p[0] != "A":
                continue
            off, n = int(p[1]), int(p[2])
            f.seek(off)
            if f.read(n) == pattern(seed, off // n, n):
                good += 1
            else:
                bad += 1
                if bad <= 5:
                    print("FAIL: acknowledged write at %d (+%d) is not on the disk" % (off, n))
    if bad:
        print("FAIL: %d of %d acknowledged writes are not on the disk" % (bad, bad + good))
        return 1
    print("ok: all %d acknowledged writes are on the disk" % good)
    return 0


def cmd_rw(host, port, export, seed, offset, length, path):
    data = random.Random(seed).randbytes(length)
    s, size = connect(host, port, export)
    if offset + length > size:
        print("FAIL: %d bytes at %d do not fit the export's %d" % (length, offset, size))
        return 1
    request(s, CMD_WRITE, 1, offset, length, data)
    err, h = simple_reply(s)
    if err or h != 1:
        print("FAIL: WRITE answered error %d (handle %d)" % (err, h))
        return 1
    request(s, CMD_FLUSH, 2, 0, 0)
    err, h = simple_reply(s)
    if err or h != 2:
        print("FAIL: FLUSH answered error %d (handle %d)" % (err, h))
        return 1
    request(s, CMD_READ, 3, offset, length)
    err, h = simple_reply(s)
    got = recv_exact(s, length) if err == 0 else b""
    request(s, CMD_DISC, 0, 0, 0)
    s.close()
    if err or h != 3 or got != data:
        print("FAIL: READ back: error %d, handle %d, %s" % (err, h, "equal" if got == data else "differs"))
        return 1
    with open(path, "rb") as f:
        f.seek(offset)
        if f.read(length) != data:
            print("FAIL: the backing file does not hold the %d bytes written at %d" % (length, offset))
            return 1
    print("ok: %d bytes written at %d, flushed, read back equal, and in the backing file" % (length, offset))
    return 0


def main(argv):
    try:
        if len(argv) == 11 and argv[0] == "write":
            return cmd_write(argv[1], int(argv[2]), argv[3], argv[4], int(argv[5]), int(argv[6]),
                             int(argv[7]), int(argv[8]), float(argv[9]), argv[10])
        if len(argv) == 4 and argv[0] == "verify":
            return cmd_verify(argv[1], int(argv[2]), argv[3])
        if len(argv) == 8 and argv[0] == "rw":
            return cmd_rw(argv[1], int(argv[2]), argv[3], int(argv[4]), int(argv[5]), int(argv[6]), argv[7])
    except (Closed, OSError) as e:
        print("FAIL: %s" % e)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
