#!/usr/bin/env python3
"""Polls a TCP echo service until it answers: the bench's resume figure.

Usage: bench-echo-poll.py IP PORT LIMIT_SECS [GO_FILE]

Until LIMIT_SECS have passed: a fresh TCP connection (0.3 s connect limit), 16 bytes sent, and
the same 16 bytes read back (1 s limit); on any failure, again after 20 ms. If GO_FILE is given,
polling starts only once that file exists (so the interpreter's start-up, slow in the emulated
dom0, is over before the clock matters). Prints `ok <ms since the epoch of the first full echo>
<attempts>` or `timeout <attempts> <last error>`; exit status 0 only on ok.
"""

import os
import socket
import sys
import time


def main():
    ip, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    go = sys.argv[4] if len(sys.argv) > 4 else None
    while go and not os.path.exists(go):
        time.sleep(0.005)
    end = time.time() + limit
    attempts = 0
    last = "none"
    msg = b"xenrs-bench-echo"
    while time.time() < end:
        attempts += 1
        try:
            with socket.create_connection((ip, port), timeout=0.3) as s:
                s.settimeout(1.0)
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = s.recv(len(msg) - len(got))
                    if not chunk:
                        break
                    got += chunk
                if got == msg:
                    print(f"ok {int(time.time() * 1000)} {attempts}")
                    return 0
                last = f"echoed {got!r}"
        except OSError as e:
            last = type(e).__name__
        time.sleep(0.02)
    print(f"timeout {attempts} {last}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
