#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Address probes for tests/integration/realaddr.bats.

peeraddr.py serve HOST PORT COUNT: accept COUNT connections one after the
other; for each, print and send back (one line) the peer address the
server's accept() returned, as "ip port", then close.

peeraddr.py connect HOST PORT: connect, read the server's line, and print one
JSON line: local (getsockname), peer (getpeername) and seen (what the server
said it saw), each {"ip": ..., "port": ...}.
"""
import json
import socket
import sys


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(host, port, count):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(16)
    print(json.dumps({"event": "listening"}), flush=True)
    for _ in range(count):
        c, peer = s.accept()
        line = "%s %d\n" % (peer[0], peer[1])
        print(line.strip(), flush=True)
        c.sendall(line.encode())
        c.close()


def endpoint(addr):
    return {"ip": addr[0], "port": addr[1]}


def connect(host, port):
    c = socket.create_connection((host, port), timeout=20)
    local, peer = c.getsockname(), c.getpeername()
    data = b""
    while not data.endswith(b"\n"):
        chunk = c.recv(256)
        if not chunk:
            break
        data += chunk
    c.close()
    ip, _, sport = data.decode().strip().rpartition(" ")
    print(json.dumps({"local": endpoint(local), "peer": endpoint(peer),
                      "seen": {"ip": ip, "port": int(sport or 0)}}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        connect(sys.argv[2], int(sys.argv[3]))
