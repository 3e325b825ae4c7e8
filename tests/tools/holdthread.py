#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""holdthread: stop one thread of a running process (and only it) for a while,
with ptrace(2): PTRACE_SEIZE and PTRACE_INTERRUPT, then PTRACE_DETACH. The
other threads of the process run on. A test uses it to hold a daemon's main
event loop while its worker threads keep working.

  holdthread.py TID --until FILE [--max S]

Prints {"event":"stopped","tid":TID} once the thread is stopped, holds it
until FILE exists or --max seconds passed (default 20), lets it go and prints
{"event":"released","tid":TID,"held_s":T}. Exit status 0, or 1 with a message
when the thread cannot be stopped. If this process dies, the kernel detaches
it and the thread runs on.
"""
import argparse
import ctypes
import errno
import json
import os
import sys
import time

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000  # __WALL: wait for any kind of child, threads included

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tid", type=int)
    p.add_argument("--until", required=True)
    p.add_argument("--max", type=float, default=20.0)
    args = p.parse_args()

    try:
        ptrace(PTRACE_SEIZE, args.tid)
        ptrace(PTRACE_INTERRUPT, args.tid)
        os.waitpid(args.tid, WALL)
    except OSError as e:
        print("holdthread: cannot stop thread %d: %s (run as root; is it running?)"
              % (args.tid, e.strerror), file=sys.stderr)
        return 1
    start = time.monotonic()
    emit({"event": "stopped", "tid": args.tid})
    while not os.path.exists(args.until) and time.monotonic() - start < args.max:
        time.sleep(0.05)
    try:
        ptrace(PTRACE_DETACH, args.tid)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise
    emit({"event": "released", "tid": args.tid, "held_s": round(time.monotonic() - start, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
