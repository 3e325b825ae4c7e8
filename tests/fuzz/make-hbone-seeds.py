#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write the seeds of fuzz_hbone (tests/fuzz/seeds/hbone/): what a peer sends
on an HBONE connection after TLS, as tests/fuzz/fuzz_hbone.c reads it: one
byte of flags (the peer's identity, draining, all at once), then HTTP/2
frames. Headers are HPACK-encoded here (RFC 7541: static-table names,
literals, the dynamic table; no Huffman coding). The services and
identities are the harness's catalog.

    tests/fuzz/make-hbone-seeds.py [DIR]     (default tests/fuzz/seeds/hbone)
"""
import os
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types and flags (RFC 9113 section 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20

# flags byte of the harness
API, BATCH, FOREIGN, NODE = 0, 1, 2, 3
DRAINING, WHOLE = 4, 8

# error codes
NO_ERROR, PROTOCOL_ERROR, CANCEL = 0x0, 0x1, 0x8


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def rst(sid, code):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def goaway(last, code, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def ping(data=b"sockmesh", ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def data(sid, payload, end=False):
    return frame(DATA, END_STREAM if end else 0, sid, payload)


def hpack_int(value, prefix, high):
    """An HPACK integer with an N-bit prefix; high: the bits above it."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes([high | value])
    out = [high | top]
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    return hpack_int(len(s), 7, 0) + s


# static table indices (RFC 7541 appendix A)
STATIC = {":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, "user-agent": 58}


def hpack(headers, index=False, dynamic=None):
    """Encode (name, value) pairs: a static name by its index, else a literal
    name; with index, literals enter the dynamic table. dynamic maps
    (name, value) to a dynamic index to send as one byte (indexed field)."""
    out = b""
    for name, value in headers:
        if isinstance(value, str):
            value = value.encode()
        if dynamic and (name, value) in dynamic:
            out += hpack_int(dynamic[(name, value)], 7, 0x80)
            continue
        idx = STATIC.get(name, 0)
        high, prefix = (0x40, 6) if index else (0x00, 4)
        out += hpack_int(idx, prefix, high)
        if not idx:
            out += hpack_str(name.encode())
        out += hpack_str(value)
    return out


def connect(authority, extra=(), trace=True):
    h = [(":method", "CONNECT"), (":authority", authority)]
    if trace:
        h.append(("traceparent",
                  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
    return h + list(extra)


def headers(sid, block, end_stream=False):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)


def req(sid, authority, **kw):
    return headers(sid, hpack(connect(authority, kw.get("extra", ()))),
                   kw.get("end_stream", False))


# what ztunnel and sockmesh's own client send first
OPENING = PREFACE + settings((0x2, 0), (0x3, 100), (0x4, 1 << 20), (0x5, 65536)) + \
    window_update(0, 8 << 20)
HTTP_GET = b"GET / HTTP/1.1\r\nhost: web\r\n\r\n"


def seeds():
    s = {}
    s["connect-web"] = (API, OPENING + req(1, "10.0.1.1:80") + settings(ack=True) +
                        data(1, HTTP_GET) + window_update(1, 65536) + data(1, b"", True))
    s["connect-web-rst"] = (API, OPENING + req(1, "10.0.1.1:80") + data(1, HTTP_GET) +
                            rst(1, CANCEL))
    s["connect-then-goaway"] = (API, OPENING + req(1, "10.0.1.1:80") + data(1, HTTP_GET) +
                                goaway(0, NO_ERROR))
    s["goaway-error"] = (API, OPENING + goaway(0, PROTOCOL_ERROR, b"bye"))
    s["ping"] = (API, OPENING + ping() + ping(b"12345678", ack=True) + settings(ack=True))
    s["not-hosted"] = (API, OPENING + req(1, "10.0.2.1:80"))
    s["bad-authority"] = (API, OPENING + req(1, "web:80") + req(3, "10.0.1.1") +
                          req(5, "[fd00::1]:99999") + req(7, "10.0.1.1:80:80") +
                          req(9, "[fd00::1]80") + req(11, ""))
    s["bad-method"] = (API, OPENING +
                       headers(1, hpack([(":method", "GET"), (":scheme", "https"),
                                         (":path", "/"), (":authority", "10.0.1.1:80")]),
                               True) +
                       headers(3, hpack([(":method", "CONNECT"), (":authority", "10.0.1.1:80"),
                                         (":path", "/")])) +
                       headers(5, hpack([(":method", "CONNECT")])))
    s["oversized-header"] = (API, OPENING + req(1, "10.0.1.1:80",
                                                extra=[("x-long", "a" * 300)]) +
                             req(3, "10.0.1.1:80", extra=[("x-huge", "b" * 9000)]) +
                             req(5, "10.0.1.1:80" + "0" * 70))
    # 64 bytes whose first 63 name 10.0.1.1:80 (port 80 in octal behind zeros)
    s["authority-too-long"] = (API, OPENING + req(1, "10.0.1.1:" + "0" * 51 + "1209"))
    s["too-many-headers"] = (API, OPENING + req(1, "10.0.1.1:80",
                                                extra=[("x-h%d" % i, "v") for i in range(40)]))
    s["policy-denied-batch"] = (BATCH, OPENING + req(1, "10.0.1.1:84") + data(1, HTTP_GET) +
                                req(3, "10.0.1.1:80") + data(3, HTTP_GET, True) +
                                req(5, "10.0.1.2:5432"))
    s["db-foreign"] = (FOREIGN, OPENING + req(1, "10.0.1.2:5432") + req(3, "10.0.1.1:80"))
    s["db-api"] = (API, OPENING + req(1, "10.0.1.2:5432") + data(1, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"))
    s["node-identity"] = (NODE, OPENING + req(1, "10.0.1.1:80") + req(3, "10.0.1.2:5432"))
    s["upstream-refused"] = (API, OPENING + req(1, "10.0.1.1:81") + data(1, HTTP_GET))
    s["upstream-unreachable"] = (API, OPENING + req(1, "10.0.1.1:82"))
    s["upstream-pending"] = (API, OPENING + req(1, "10.0.1.1:83") + data(1, HTTP_GET) +
                             data(1, b"", True) + rst(1, CANCEL))
    s["upstream-answer-close"] = (API, OPENING + req(1, "10.0.1.1:84") + data(1, HTTP_GET) +
                                  data(1, b"", True))
    s["upstream-reset"] = (API, OPENING + req(1, "10.0.1.3:6379") + data(1, b"PING\r\n") +
                           data(1, b"PING\r\n"))
    s["ipv6-slow-reader"] = (API, OPENING + req(1, "[fd00::1]:80") +
                             b"".join(data(1, bytes([0x41 + i]) * 16000) for i in range(4)) +
                             window_update(1, 1 << 20))
    s["draining"] = (API | DRAINING, OPENING + req(1, "10.0.1.1:80") + data(1, HTTP_GET))
    s["whole-input"] = (API | WHOLE, OPENING + req(1, "10.0.1.1:80") + req(3, "10.0.1.1:84") +
                        data(1, HTTP_GET) + data(3, HTTP_GET, True) + rst(1, CANCEL) +
                        goaway(0, NO_ERROR))
    # several streams; the later ones name fields by the dynamic table
    block = hpack(connect("10.0.1.1:80"), index=True)
    many = OPENING + headers(1, block)
    dyn = {("traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"): 62,
           (":authority", b"10.0.1.1:80"): 63, (":method", b"CONNECT"): 64}
    for sid in range(3, 23, 2):
        many += headers(sid, hpack(connect("10.0.1.1:80"), dynamic=dyn))
        many += data(sid, HTTP_GET)
    s["many-streams"] = (API, many)
    # a header block split over HEADERS and CONTINUATION
    block = hpack(connect("10.0.1.1:80"))
    s["continuation"] = (API, OPENING + frame(HEADERS, 0, 1, block[:5]) +
                         frame(CONTINUATION, END_HEADERS, 1, block[5:]) + data(1, HTTP_GET))
    # padding and priority in HEADERS, a PRIORITY frame, an unknown frame type
    pb = hpack(connect("10.0.1.1:80"))
    s["padded-priority"] = (API, OPENING +
                            frame(HEADERS, END_HEADERS | PADDED | PRIO, 1,
                                  bytes([4]) + struct.pack(">IB", 0, 15) + pb + b"\0" * 4) +
                            frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 200)) +
                            frame(0xFA, 0, 0, b"unknown"))
    # CONNECT with END_STREAM on its HEADERS: a request that ends before it starts
    s["connect-end-stream"] = (API, OPENING + req(1, "10.0.1.1:80", end_stream=True))
    # DATA after the stream was refused, on a closed and an idle stream
    s["data-after-refusal"] = (BATCH, OPENING + req(1, "10.0.1.1:84") + data(1, HTTP_GET) +
                               data(7, HTTP_GET) + window_update(1, 100))
    # windows: a peer that opens a huge one, then one past 2^31-1
    s["window-overflow"] = (API, OPENING + req(1, "10.0.1.1:80") + settings((0x4, 0x7FFFFFFF)) +
                            window_update(1, 0x7FFFFFFF) + window_update(0, 0x7FFFFFFF))
    s["frame-too-large"] = (API, OPENING + req(1, "10.0.1.1:80") + data(1, b"x" * 70000))
    s["no-preface"] = (API, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    s["push-promise"] = (API, OPENING + frame(PUSH_PROMISE, END_HEADERS, 1,
                                              struct.pack(">I", 2) + hpack(connect("x:1"))))
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "seeds", "hbone")
    os.makedirs(out, exist_ok=True)
    for name, (flags, body) in sorted(seeds().items()):
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(bytes([flags]) + body)


if __name__ == "__main__":
    main()
