#!/usr/bin/env python3
"""A raw NBD client for the disk scenarios: it sends what stock clients refuse to send.

nbdcopy, nbdinfo and qemu-img check the server's flags before they act (a write to a read-only
export never leaves them) and never send a malformed request. This client speaks fixed newstyle
(NetworkBlockDevice/nbd doc/proto.md) byte by byte, so a scenario can check the SERVER's answers:

  nbd-client.py HOST PORT CHECK [ARGS]

  garbage                 after the greeting and valid client flags, send bytes that are no
                          option: the server must close the connection
  early-garbage           send an HTTP request before reading the greeting (bad client flags):
                          closed as well
  options EXPORT...       an unknown option (NBD_REP_ERR_UNSUP, the connection goes on), NBD_OPT_LIST
                          (must name every EXPORT), NBD_OPT_INFO of a missing export
                          (an error reply), then NBD_OPT_ABORT
  write-ro EXPORT FILE    NBD_OPT_GO, the export must say read-only; a WRITE gets NBD_EPERM; a READ
                          then still works and returns FILE's first 4 KiB
  range EXPORT SIZE FILE  out-of-range READs (NBD_EINVAL), an out-of-range WRITE with its payload
                          (NBD_EINVAL or NBD_ENOSPC), a misaligned READ (NBD_EINVAL, or served
                          correctly), each followed by a READ that must still work; then a request
                          with a bad magic: the server must close the connection
  oversize EXPORT         a WRITE header announcing 2 GiB - 1 with no payload: an error reply or a
                          closed connection (never a success), within the time limit
  mid-write EXPORT        a 1 MiB WRITE of which only 64 KiB are sent, then the client disconnects
  stall SECS              connect, read the greeting, send nothing, stay connected SECS seconds

Prints one line per step (`ok: ...` / `FAIL: ...`) and exits 0 if every step held, 1 if not,
2 on bad usage. Each socket operation has a 60 s limit (TCG is slow; a server that never answers
is a failure, not a hang).
"""
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_REPLY = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 2, 3, 6, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP = 0x80000001
INFO_EXPORT, INFO_BLOCK_SIZE = 0, 3
CMD_READ, CMD_WRITE, CMD_DISC = 0, 1, 2
TFLAG_READ_ONLY = 2
EPERM, EIO, EINVAL, ENOSPC, EOVERFLOW = 1, 5, 22, 28, 75
ERRNAMES = {0: "ok", 1: "EPERM", 5: "EIO", 12: "ENOMEM", 22: "EINVAL", 28: "ENOSPC", 75: "EOVERFLOW", 108: "ESHUTDOWN"}
TIMEOUT = 60

failed = False


def ok(msg):
    print("ok: " + msg, flush=True)


def fail(msg):
    global failed
    failed = True
    print("FAIL: " + msg, flush=True)


def errname(e):
    return ERRNAMES.get(e, str(e))


class Closed(Exception):
    pass


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=TIMEOUT)
        self.s.settimeout(TIMEOUT)
        self.handle = 0

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            try:
                got = self.s.recv(n - len(buf))
            except ConnectionResetError:
                raise Closed("connection reset after %d of %d bytes" % (len(buf), n))
            if not got:
                raise Closed("connection closed after %d of %d bytes" % (len(buf), n))
            buf += got
        return buf

    def send(self, data):
        self.s.sendall(data)

    def send_quietly(self, data):
        """Sends data to a server that may already have hung up."""
        try:
            self.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def greeting(self):
        magic, opt, flags = struct.unpack(">QQH", self.recv(18))
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise Closed("not a fixed newstyle greeting: %x %x" % (magic, opt))
        if not flags & FLAG_FIXED_NEWSTYLE:
            raise Closed("the server does not offer fixed newstyle (flags %#x)" % flags)
        self.sflags = flags
        return flags

    def handshake(self):
        flags = self.greeting()
        self.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)))

    def option(self, opt, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", self.recv(20))
        if magic != REPLY_MAGIC:
            raise Closed("bad option reply magic %#x" % magic)
        if length > 1 << 20:
            raise Closed("option reply of %d bytes" % length)
        return opt, rtype, self.recv(length)

    def go(self, export, opt=OPT_GO):
        """NBD_OPT_GO (or INFO): returns (size, transmission flags, block sizes or None) or raises."""
        name = export.encode()
        self.option(opt, struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, INFO_BLOCK_SIZE))
        size = tflags = None
        bs = None
        while True:
            o, rtype, data = self.reply()
            if o != opt:
                raise Closed("reply for option %d, asked %d" % (o, opt))
            if rtype == REP_ACK:
                break
            if rtype & 0x80000000:
                raise Closed("option %d for %r: error reply %#x %r" % (opt, export, rtype, data[:80]))
            if rtype == REP_INFO and len(data) >= 2:
                (itype,) = struct.unpack(">H", data[:2])
                if itype == INFO_EXPORT and len(data) == 12:
                    size, tflags = struct.unpack(">QH", data[2:])
                elif itype == INFO_BLOCK_SIZE and len(data) == 14:
                    bs = struct.unpack(">III", data[2:])
        if size is None:
            raise Closed("no NBD_INFO_EXPORT before the ACK")
        return size, tflags, bs

    def request(self, cmd, offset, length, payload=b"", flags=0, magic=REQ_MAGIC):
        self.handle += 1
        self.send(struct.pack(">IHHQQI", magic, flags, cmd, self.handle, offset, length) + payload)
        return self.handle

    def simple_reply(self, handle, datalen=0):
        """Returns (error, data): data only when error is 0."""
        magic, err, h = struct.unpack(">IIQ", self.recv(16))
        if magic != SIMPLE_REPLY:
            raise Closed("reply magic %#x is not the simple reply's" % magic)
        if h != handle:
            raise Closed("reply handle %d, expected %d" % (h, handle))
        data = self.recv(datalen) if err == 0 and datalen else b""
        return err, data

    def read(self, offset, length):
        return self.simple_reply(self.request(CMD_READ, offset, length), length)

    def closed_by_server(self, secs=TIMEOUT):
        """True once the server closed (EOF or reset) within secs; anything it sends is drained."""
        self.s.settimeout(secs)
        end = time.monotonic() + secs
        try:
            while time.monotonic() < end:
                if not self.s.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def file_head(path, n=4096):
    with open(path, "rb") as f:
        return f.read(n)


def open_export(host, port, export):
    """Connects and enters transmission on EXPORT: (Conn, (size, transmission flags, block sizes))."""
    c = Conn(host, port)
    c.handshake()
    return c, c.go(export)


def expect_closed(c, what):
    """The server must close the connection after WHAT."""
    if c.closed_by_server():
        ok("%s: the server closed the connection" % what)
    else:
        fail("%s: the connection is still open after %d s" % (what, TIMEOUT))


def expect_error(err, wanted, what):
    """The reply to WHAT must carry one of the errors WANTED."""
    if err in wanted:
        ok("%s: NBD_%s" % (what, errname(err)))
    else:
        want = " or ".join("NBD_" + errname(w) for w in wanted)
        fail("%s: %s (want %s)" % (what, errname(err), want))


def check_garbage(host, port):
    c = Conn(host, port)
    c.handshake()
    c.send_quietly(b"GET / HTTP/1.0\r\nHost: xenrs\r\n\r\n" + bytes(range(256)) * 4)
    expect_closed(c, "garbage instead of an option (after valid client flags)")
    c.close()


def check_early_garbage(host, port):
    c = Conn(host, port)
    c.send_quietly(b"GET / HTTP/1.0\r\n\r\n")
    expect_closed(c, "an HTTP request instead of a handshake")
    c.close()


def check_options(host, port, exports):
    c = Conn(host, port)
    c.handshake()
    c.option(0x4242, b"xenrs-unknown-option")
    o, rtype, data = c.reply()
    if o == 0x4242 and rtype == REP_ERR_UNSUP:
        ok("unknown option 0x4242: NBD_REP_ERR_UNSUP")
    else:
        fail("unknown option 0x4242: reply option %#x type %#x (want NBD_REP_ERR_UNSUP)" % (o, rtype))
    c.option(OPT_LIST)
    names = []
    while True:
        o, rtype, data = c.reply()
        if rtype == REP_ACK:
            break
        if rtype == REP_SERVER and len(data) >= 4:
            (n,) = struct.unpack(">I", data[:4])
            names.append(data[4 : 4 + n].decode(errors="replace"))
        else:
            fail("NBD_OPT_LIST after the unknown option: reply type %#x" % rtype)
            break
    missing = [e for e in exports if e not in names]
    if missing:
        fail("NBD_OPT_LIST after the unknown option names %s, missing %s" % (names, missing))
    else:
        ok("NBD_OPT_LIST after the unknown option: %s" % names)
    try:
        c.go("no-such-export", OPT_INFO)
        fail("NBD_OPT_INFO of 'no-such-export' succeeded")
    except Closed as e:
        if "error reply" in str(e):
            ok("NBD_OPT_INFO of 'no-such-export': %s" % e)
        else:
            raise
    c.option(OPT_ABORT)
    try:
        o, rtype, _ = c.reply()
        ok("NBD_OPT_ABORT: reply type %#x" % rtype)
    except Closed:
        ok("NBD_OPT_ABORT: connection closed")
    c.close()


def check_write_ro(host, port, export, path):
    c, (size, tflags, _) = open_export(host, port, export)
    if tflags & TFLAG_READ_ONLY:
        ok("%s: size %d, flags %#x say read-only" % (export, size, tflags))
    else:
        fail("%s: flags %#x do not say read-only" % (export, tflags))
    err, _ = c.simple_reply(c.request(CMD_WRITE, 0, 4096, b"\xa5" * 4096))
    expect_error(err, (EPERM,), "WRITE of 4 KiB at 0 to read-only %s" % export)
    err, data = c.read(0, 4096)
    if err != 0:
        fail("READ after the refused write: %s" % errname(err))
    elif data != file_head(path):
        fail("READ after the refused write: the first 4 KiB differ from the backing file")
    else:
        ok("READ after the refused write: the first 4 KiB equal the backing file's")
    c.request(CMD_DISC, 0, 0)
    c.close()


def check_range(host, port, export, size, path):
    c, (srv_size, tflags, bs) = open_export(host, port, export)
    if srv_size != size:
        fail("%s: the server says size %d, the disk has %d" % (export, srv_size, size))
    head = file_head(path)

    def still_reads(after):
        err, data = c.read(0, 4096)
        if err != 0 or data != head:
            fail("READ of 4 KiB at 0 after %s: %s%s" % (after, errname(err), "" if err else ", data differ from the backing file"))

    for off, ln, what in ((size, 4096, "at the end"), (size - 512, 4096, "across the end"),
                          (1 << 62, 512, "at 2^62"), ((1 << 64) - 512, 1024, "wrapping past 2^64")):
        err, _ = c.read(off, ln)
        expect_error(err, (EINVAL,), "READ %d bytes %s (offset %d)" % (ln, what, off))
        still_reads("an out-of-range READ")
    err, _ = c.simple_reply(c.request(CMD_WRITE, size, 4096, b"\x5a" * 4096))
    expect_error(err, (EINVAL, ENOSPC), "WRITE of 4 KiB at the end (offset %d)" % size)
    still_reads("an out-of-range WRITE")
    err, data = c.read(1, 512)
    if err == EINVAL:
        ok("misaligned READ (offset 1, 512 bytes; block sizes %s): NBD_EINVAL" % (bs,))
    elif err == 0 and data == file_head(path, 513)[1:]:
        ok("misaligned READ (offset 1, 512 bytes; block sizes %s): served, data right" % (bs,))
    else:
        fail("misaligned READ (offset 1, 512 bytes): %s%s" % (errname(err), "" if err else ", wrong data"))
    still_reads("a misaligned READ")
    c.request(CMD_READ, 0, 512, magic=0x12345678)
    expect_closed(c, "a request with a bad magic")
    c.close()


def check_oversize(host, port, export):
    c, _ = open_export(host, port, export)
    h = c.request(CMD_WRITE, 0, 0x7FFFFFFF)
    try:
        err, _ = c.simple_reply(h)
        if err:
            ok("WRITE header of 2 GiB - 1 without payload: %s" % errname(err))
        else:
            fail("WRITE header of 2 GiB - 1 without payload: success")
    except Closed as e:
        ok("WRITE header of 2 GiB - 1 without payload: %s" % e)
    except socket.timeout:
        # The server may wait for the payload; it must not have answered success. The client
        # hangs up, which the server has to survive as well.
        ok("WRITE header of 2 GiB - 1 without payload: no answer within %d s (waiting for the payload); hanging up" % TIMEOUT)
    c.close()


def check_mid_write(host, port, export):
    c, _ = open_export(host, port, export)
    c.request(CMD_WRITE, 0, 1 << 20, b"\x3c" * (64 << 10))
    time.sleep(1)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    ok("sent 64 KiB of a 1 MiB WRITE, then reset the connection")


def check_stall(host, port, secs):
    c = Conn(host, port)
    c.greeting()
    ok("connected, greeting read; staying silent for %d s" % secs)
    time.sleep(secs)
    c.close()


def main(argv):
    if len(argv) < 4:
        print(__doc__)
        return 2
    host, port, check, args = argv[1], int(argv[2]), argv[3], argv[4:]
    try:
        if check == "garbage":
            check_garbage(host, port)
        elif check == "early-garbage":
            check_early_garbage(host, port)
        elif check == "options":
            check_options(host, port, args)
        elif check == "write-ro" and len(args) == 2:
            check_write_ro(host, port, args[0], args[1])
        elif check == "range" and len(args) == 3:
            check_range(host, port, args[0], int(args[1]), args[2])
        elif check == "oversize" and len(args) == 1:
            check_oversize(host, port, args[0])
        elif check == "mid-write" and len(args) == 1:
            check_mid_write(host, port, args[0])
        elif check == "stall" and len(args) == 1:
            check_stall(host, port, int(args[0]))
        else:
            print("nbd-client.py: bad check or arguments: %s" % " ".join(argv[3:]), file=sys.stderr)
            return 2
    except (Closed, OSError) as e:
        fail("%s: %s: %s" % (check, type(e).__name__, e))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
