#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""smdial: a new connection every --interval ms to an echo server, each one
sends --bytes bytes, half-closes, and must read the same bytes back before
EOF. Runs until the file --stop-file exists or --duration seconds passed.

  smdial.py --connect HOST:PORT [--interval MS] [--bytes N] [--timeout S]
            [--stop-file PATH] [--duration S] [--progress PATH]

--progress PATH: the count of connections done so far, rewritten after each.
Output, one JSON line at the end:
  {"attempts":A,"ok":O,"failed":F,"errors":{"ECONNREFUSED: ...":n,...}}
Exit 0 when every attempt succeeded, 1 otherwise.
"""
import argparse
import json
import os
import socket
import sys
import time


def one(host, port, payload, timeout):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    if got != payload:
        raise ValueError("echo mismatch: sent %d bytes, got %d" % (len(payload), len(got)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--bytes", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=5)
    ap.add_argument("--stop-file")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--progress")
    a = ap.parse_args()
    host, port = a.connect.rsplit(":", 1)
    payload = os.urandom(a.bytes)
    end = time.monotonic() + a.duration
    attempts = ok = 0
    errors = {}
    nxt = time.monotonic()
    while time.monotonic() < end and not (a.stop_file and os.path.exists(a.stop_file)):
        attempts += 1
        try:
            one(host, int(port), payload, a.timeout)
            ok += 1
        except (OSError, ValueError) as e:
            key = "%s: %s" % (type(e).__name__, e)
            errors[key] = errors.get(key, 0) + 1
        if a.progress:
            with open(a.progress + ".tmp", "w") as f:
                f.write("%d %d\n" % (attempts, attempts - ok))
            os.replace(a.progress + ".tmp", a.progress)
        nxt += a.interval / 1000.0
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()
    print(json.dumps({"attempts": attempts, "ok": ok, "failed": attempts - ok,
                      "errors": errors}))
    return 0 if attempts == ok else 1


if __name__ == "__main__":
    sys.exit(main())
