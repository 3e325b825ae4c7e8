#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""holdconns: one process that holds many client connections to a server and
does little or nothing with them, to check that the server goes on serving
everyone else (the control socket, the admin port).

  holdconns.py (--unix PATH | --tcp HOST:PORT) [--idle N] [--partial N]
               [--request N] [--slow N] [--partial-data TEXT] [--request-data TEXT]
               [--slow-data TEXT] [--slow-interval MS] [--reconnect]
               [--connect-timeout S] [--duration S]

Kinds of connection:
  --idle N     connect and send nothing
  --partial N  send --partial-data (default: half a request, no newline), then nothing
  --request N  send --request-data (a whole request) and never read the answer
  --slow N     send --slow-data one byte every --slow-interval ms (default 50),
               from its start again when it is all sent (an endless header)

Output, one JSON object a line on stdout:
  {"event":"holding","connected":C,"failed":F,...}  once every connection is up
      (or failed, or --connect-timeout passed: those still connecting then count
      as failed and are dropped)
  {"event":"closed","kind":K,"index":I,"after_s":T,"data":"..."}  the server
      closed a connection, T s after it was made; data: what it sent first (up
      to 4 KiB; never read for --request connections)
  {"event":"done","closed":N,"open":M,"reconnected":R}  at --duration or SIGTERM

--reconnect: a connection the server closes is made again at once, so that the
server always has as many as asked for. Everything is bounded: --duration
(default 60 s) ends the process.
"""
import argparse
import errno
import json
import os
import select
import signal
import socket
import sys
import time

READ_KEEP = 4096


class Conn:
    def __init__(self, kind, index, sock, started):
        self.kind = kind
        self.index = index
        self.sock = sock
        self.started = started
        self.connected = False
        self.data = b""
        self.slow_pos = 0


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def make_socket(args):
    if args.unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = args.unix
    else:
        host, port = args.tcp.rsplit(":", 1)
        host = host.strip("[]")
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        addr = (host, int(port))
    s.setblocking(False)
    try:
        s.connect(addr)
        done = True
    except (BlockingIOError, InterruptedError):
        done = False
    except OSError as e:
        if e.errno == errno.EAGAIN and args.unix:
            done = False  # the listener's backlog is full: counts as still connecting
        else:
            s.close()
            raise
    return s, done


def first_send(args, c):
    """What a connection sends once it is up; False when the server is gone."""
    try:
        if c.kind == "partial":
            c.sock.sendall(args.partial_data.encode())
        elif c.kind == "request":
            c.sock.sendall(args.request_data.encode())
    except OSError:
        return False
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix")
    where.add_argument("--tcp")
    for kind in ("idle", "partial", "request", "slow"):
        p.add_argument("--" + kind, type=int, default=0)
    p.add_argument("--partial-data", default='{"cmd":"sta')
    p.add_argument("--request-data", default='{"cmd":"status"}\n')
    p.add_argument("--slow-data", default="GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a" * 64)
    p.add_argument("--slow-interval", type=int, default=50)
    p.add_argument("--reconnect", action="store_true")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=60.0)
    args = p.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    poller = select.poll()
    conns = {}  # fd -> Conn
    counts = {"closed": 0, "reconnected": 0, "failed": 0}

    def open_conn(kind, index):
        try:
            s, done = make_socket(args)
        except OSError as e:
            counts["failed"] += 1
            emit({"event": "connect_failed", "kind": kind, "index": index, "error": os.strerror(e.errno)})
            return
        c = Conn(kind, index, s, time.monotonic())
        conns[s.fileno()] = c
        if done:
            up(c)
        else:
            poller.register(s, select.POLLOUT)

    def up(c):
        c.connected = True
        if not first_send(args, c):
            gone(c)
            return
        # a --request connection never reads: only the server's close matters
        ev = select.POLLRDHUP if c.kind == "request" else select.POLLIN | select.POLLRDHUP
        try:
            poller.modify(c.sock, ev)
        except FileNotFoundError:
            poller.register(c.sock, ev)

    def gone(c):
        fd = c.sock.fileno()
        try:
            poller.unregister(fd)
        except KeyError:
            pass
        del conns[fd]
        c.sock.close()
        counts["closed"] += 1
        emit({
            "event": "closed", "kind": c.kind, "index": c.index,
            "after_s": round(time.monotonic() - c.started, 3),
            "data": c.data.decode(errors="replace"),
        })
        if args.reconnect and not stop:
            counts["reconnected"] += 1
            open_conn(c.kind, c.index)

    index = 0
    for kind in ("idle", "partial", "request", "slow"):
        for _ in range(getattr(args, kind)):
            open_conn(kind, index)
            index += 1

    start = time.monotonic()
    end = start + args.duration
    held = False
    next_slow = start
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        if not held and (all(c.connected for c in conns.values()) or now - start > args.connect_timeout):
            for c in [c for c in conns.values() if not c.connected]:
                poller.unregister(c.sock)
                del conns[c.sock.fileno()]
                c.sock.close()
                counts["failed"] += 1
            held = True
            emit({
                "event": "holding",
                "connected": len(conns),
                "failed": counts["failed"],
                "kinds": {k: sum(1 for c in conns.values() if c.kind == k)
                          for k in ("idle", "partial", "request", "slow")},
            })
        timeout = max(0.0, min(end, next_slow if args.slow else end) - now)
        try:
            events = poller.poll(min(timeout, 0.2) * 1000)
        except InterruptedError:
            continue
        for fd, ev in events:
            c = conns.get(fd)
            if c is None:
                continue
            if not c.connected:
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    gone(c)
                else:
                    up(c)
                continue
            if c.kind == "request":
                gone(c)  # closed or hung up: it is never read
                continue
            try:
                chunk = c.sock.recv(READ_KEEP)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if chunk:
                c.data = (c.data + chunk)[:READ_KEEP]
            else:
                gone(c)
        if args.slow and time.monotonic() >= next_slow:
            next_slow = time.monotonic() + args.slow_interval / 1000.0
            data = args.slow_data.encode()
            for c in list(conns.values()):
                if c.kind != "slow" or not c.connected:
                    continue
                try:
                    c.sock.send(data[c.slow_pos:c.slow_pos + 1])
                    c.slow_pos += 1
                    if c.slow_pos == len(data):
                        c.slow_pos = data.index(b"X-Slow: ") + 8  # the header goes on
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    gone(c)
    emit({"event": "done", "closed": counts["closed"], "open": len(conns),
          "reconnected": counts["reconnected"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
