#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Catalog churn for bench/cluster.sh: service keys rewritten at a fixed rate through etcd's
JSON gateway, on kept-alive mutual-TLS connections (what `etcdctl put` does, without a process per
change).

  etcdchurn.py --url https://ADDR:2379 --ca CA --cert CERT --key KEY --skey KEY_NAME
               --value JSON [--rate R] [--seconds S] [--workers W] [--port-base P]
               [--log FILE]

Every put writes KEY_NAME with JSON whose "port" is P, P+1, ... (wrapping after 10,000),
so every put changes the service. Puts are paced on a schedule of R per second for S
seconds (at most 600), taken in turn by W threads (default 1, at most 32), each with its
own kept-alive connection: one put waits for etcd's WAL fsync, so one connection alone
cannot go faster than the disk. A put that falls behind is sent as soon as a thread is
free, none is skipped. Prints {"puts":N,"errors":0,"workers":W,"seconds":T,"rate":N/T,
"last_revision":REV,"put_p50_ms":..,"put_p99_ms":..} and exits 0, or 1 after the first
error (with "error"). --log FILE gets "REVISION UNIX_TIME" per put (the time its answer came).
"""
import argparse
import base64
import http.client
import json
import math
import ssl
import sys
import threading
import time
import urllib.parse


def b64(s):
    return base64.b64encode(s.encode()).decode()


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[max(0, math.ceil(p / 100.0 * len(v)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--skey", required=True)
    ap.add_argument("--value", required=True)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--port-base", type=int, default=20000)
    ap.add_argument("--log", help="a file: one line per put, its revision and the wall time of its answer")
    a = ap.parse_args()
    seconds = min(a.seconds, 600.0)
    workers = max(1, min(a.workers, 32))
    u = urllib.parse.urlsplit(a.url)
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    base = json.loads(a.value)
    mu = threading.Lock()
    st = {"next": 0, "puts": 0, "last_rev": 0, "error": None, "lat": [], "log": []}
    t0 = time.monotonic()

    def worker():
        conn = http.client.HTTPSConnection(u.hostname, u.port or 2379, context=ctx, timeout=10)
        while True:
            with mu:
                if st["error"]:
                    return
                n = st["next"]
                due = t0 + n / a.rate
                if due - t0 >= seconds:
                    return
                st["next"] = n + 1
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            v = dict(base)
            v["port"] = a.port_base + n % 10000
            body = json.dumps({"key": b64(a.skey),
                               "value": b64(json.dumps(v, separators=(",", ":")))})
            s = time.monotonic()
            try:
                conn.request("POST", "/v3/kv/put", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                if r.status != 200:
                    raise OSError("HTTP %d: %s" % (r.status, data[:200]))
                rev = int(json.loads(data)["header"]["revision"])
            except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
                with mu:
                    st["error"] = str(e)
                return
            with mu:
                st["lat"].append((time.monotonic() - s) * 1000.0)
                st["puts"] += 1
                st["last_rev"] = max(st["last_rev"], rev)
                st["log"].append((rev, time.time()))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    el = time.monotonic() - t0
    if a.log:
        with open(a.log, "w") as f:
            for rev, t in sorted(st["log"]):
                f.write("%d %.6f\n" % (rev, t))
    if st["error"]:
        print(json.dumps({"puts": st["puts"], "error": st["error"]}))
        return 1
    n, lat = st["puts"], st["lat"]
    print(json.dumps({"puts": n, "errors": 0, "workers": workers, "seconds": round(el, 3),
                      "rate": round(n / el, 2), "last_revision": st["last_rev"],
                      "put_p50_ms": round(pct(lat, 50), 2), "put_p99_ms": round(pct(lat, 99), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
