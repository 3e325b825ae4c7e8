#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Idle TCP connections for bench/hbone.sh: a server that holds and echoes, a client that holds.

  idleconns.py serve --listen IP:PORT [--timeout S]
      accept without limit, echo what arrives, keep every connection open; exit
      after S seconds (default 900) whatever happens
  idleconns.py open --connect IP:PORT --count N [--batch B] [--timeout S] [--hold S]
      open N connections, B at a time, each proven end to end by a 1-byte echo;
      then print {"ok":true,"open":N,"seconds":..} and keep them idle for --hold
      seconds (default 300) or until killed. On failure {"ok":false,"error":..}, exit 1.

Both raise their open-file soft limit to the hard limit first. Every wait is bounded.
"""
import argparse
import json
import resource
import selectors
import socket
import sys
import time


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def addr_port(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def say(obj):
    print(json.dumps(obj), flush=True)


def serve(a):
    sel = selectors.DefaultSelector()
    ls = socket.socket(socket.AF_INET6 if ":" in a.listen[0] else socket.AF_INET)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(a.listen)
    ls.listen(4096)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    say({"event": "listening", "local": "%s:%d" % a.listen})
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            if key.fileobj is ls:
                while True:
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ)
                continue
            c = key.fileobj
            try:
                data = c.recv(4096)
                if data:
                    c.send(data)  # a few bytes into an empty send buffer
                    continue
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                pass
            sel.unregister(c)
            c.close()
    return 0


def open_conns(a):
    start = time.monotonic()
    deadline = start + a.timeout
    conns = []
    try:
        while len(conns) < a.count:
            batch = []
            for _ in range(min(a.batch, a.count - len(conns))):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timeout after %d connections" % len(conns))
                s = socket.create_connection(a.connect, timeout=left)
                s.sendall(b"x")
                batch.append(s)
            for s in batch:
                s.settimeout(max(deadline - time.monotonic(), 0.001))
                if s.recv(1) != b"x":
                    raise ConnectionError("connection %d closed before its echo" % len(conns))
                conns.append(s)
    except OSError as e:
        say({"ok": False, "open": len(conns), "error": str(e)})
        return 1
    say({"ok": True, "open": len(conns), "seconds": round(time.monotonic() - start, 3)})
    time.sleep(a.hold)
    for s in conns:
        s.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", type=addr_port, required=True)
    s.add_argument("--timeout", type=float, default=900)
    o = sub.add_parser("open")
    o.add_argument("--connect", type=addr_port, required=True)
    o.add_argument("--count", type=int, required=True)
    o.add_argument("--batch", type=int, default=100)
    o.add_argument("--timeout", type=float, default=60)
    o.add_argument("--hold", type=float, default=300)
    a = p.parse_args()
    raise_nofile()
    return serve(a) if a.cmd == "serve" else open_conns(a)


if __name__ == "__main__":
    sys.exit(main())
