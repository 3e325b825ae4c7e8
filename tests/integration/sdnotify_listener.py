#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Stand-in for systemd's notify socket in tests/integration/systemd.bats.

Usage: sdnotify_listener.py SOCKET OUT LIFETIME_S [CMD...]

Binds a datagram socket at the path SOCKET and appends every message it
receives to OUT as one line, its newline-separated assignments joined by '|'.
When a message holds READY=1 and CMD is given, CMD runs at once and its exit
status is added as "cmd=N": that is what the daemon's control socket said at
the moment READY=1 arrived. "pid=N" names the sender (SO_PASSCRED), as
systemd's NotifyAccess=main checks it. Exits after LIFETIME_S or on SIGTERM.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import time


def main():
    path, out, lifetime = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cmd = sys.argv[4:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(path)
    creds = struct.calcsize("3i")
    deadline = time.monotonic() + lifetime
    with open(out, "a", buffering=1) as f:
        f.write("listening\n")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            try:
                data, anc, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(creds))
            except socket.timeout:
                return
            pid = 0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", value[:creds])[0]
            fields = data.decode("utf-8", "replace").split("\n")
            line = "|".join(x for x in fields if x)
            if "READY=1" in fields and cmd:
                rc = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                    timeout=10).returncode
                line += "|cmd=%d" % rc
            f.write("%s|pid=%d|at=%.6f\n" % (line, pid, time.monotonic()))


if __name__ == "__main__":
    try:
        main()
    finally:
        if os.path.exists(sys.argv[1]):
            os.unlink(sys.argv[1])
