#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""breakhold: hold the first thread of a running process that calls FUNCTION,
right at its entry, while the process's other threads run on; then let it go.
It drives gdb through its machine interface (gdb/MI) in non-stop mode: attach,
a breakpoint on FUNCTION, every thread resumed. A test uses it to stop a
daemon's worker thread at one chosen point (between two steps that another
thread races against) for as long as the test needs.

  breakhold.py PID FUNCTION --until FILE [--max S]

Prints {"event":"ready"} once every thread runs with the breakpoint in place,
{"event":"held","tid":TID} when a thread stops there, then holds it until FILE
exists or --max seconds passed since it stopped (default 20), removes the
breakpoint, detaches and prints {"event":"released","held_s":T}. Exit status
0, or 1 with a message (gdb missing, attach refused, FUNCTION unknown, or no
thread called it within --max). On SIGTERM or SIGINT it detaches the same
way first. Never kill it (or its gdb) with SIGKILL while it holds a thread:
gdb's breakpoint instruction would stay in the process's code, and the next
call of FUNCTION would kill the process with SIGTRAP.
"""
import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class MI:
    """A gdb --interpreter=mi3 child: commands with tokens, records read line by line."""

    def __init__(self):
        self.p = subprocess.Popen(
            ["gdb", "-nx", "-q", "--interpreter=mi3"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        self.fd = self.p.stdout.fileno()
        self.buf = b""
        self.token = 0
        self.pending = []  # async records read while waiting for a result

    def line(self, deadline):
        """The next line gdb printed, or None at the deadline (read unbuffered, so
        that select() sees every line that is not yet taken)."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise RuntimeError("gdb exited")
                self.buf += chunk
        s, self.buf = self.buf.split(b"\n", 1)
        return s.decode(errors="replace")

    def cmd(self, text, timeout=30):
        """Run one MI command; its ^done/^running line, or raise with gdb's message."""
        self.token += 1
        t = str(self.token)
        self.p.stdin.write(t + text + "\n")
        self.p.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            s = self.line(deadline)
            if s is None:
                raise RuntimeError("gdb did not answer %s" % text)
            if s.startswith(t + "^"):
                if s.startswith(t + "^error"):
                    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', s)
                    raise RuntimeError("%s: %s" % (text, m.group(1) if m else s))
                return s
            if s.startswith("*"):
                self.pending.append(s)

    def async_record(self, deadline):
        if self.pending:
            return self.pending.pop(0)
        while True:
            s = self.line(deadline)
            if s is None or s.startswith("*"):
                return s

    def stopped_threads(self):
        s = self.cmd("-thread-info")
        return len(re.findall(r'state="stopped"', s)), len(re.findall(r'state="', s))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pid", type=int)
    p.add_argument("function")
    p.add_argument("--until", required=True)
    p.add_argument("--max", type=float, default=20.0)
    args = p.parse_args()
    attached = False

    def stop(signum, _frame):
        raise RuntimeError("stopped by signal %d" % signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        mi = MI()
    except OSError as e:
        print("breakhold: cannot run gdb: %s (install gdb)" % e.strerror, file=sys.stderr)
        return 1
    try:
        mi.cmd("-gdb-set mi-async on")
        mi.cmd("-gdb-set non-stop on")
        mi.cmd("-gdb-set pagination off")
        mi.cmd("-target-attach %d" % args.pid, timeout=60)
        attached = True
        # attaching stops every thread, some of them reported later: resume until all run
        deadline = time.monotonic() + 30
        while True:
            stopped, total = mi.stopped_threads()
            if stopped == 0 and total > 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("%d of %d threads stay stopped" % (stopped, total))
            mi.cmd("-exec-continue --all")
            time.sleep(0.05)
        # only now: a thread stopped there earlier would have been resumed above
        mi.pending = []
        bp = re.search(r'number="(\d+)"', mi.cmd("-break-insert %s" % args.function))
        emit({"event": "ready"})
        deadline = time.monotonic() + args.max
        tid = None
        while tid is None:
            r = mi.async_record(deadline)
            if r is None:
                raise RuntimeError("no thread called %s within %g s" % (args.function, args.max))
            if r.startswith("*stopped") and 'reason="breakpoint-hit"' in r:
                m = re.search(r'thread-id="(\d+)"', r)
                tid = m.group(1) if m else "?"
        start = time.monotonic()
        info = mi.cmd("-thread-info %s" % tid)
        m = re.search(r'target-id="(?:Thread 0x[0-9a-f]+ \(LWP |LWP )?(\d+)', info)
        emit({"event": "held", "tid": int(m.group(1)) if m else -1})
        while not os.path.exists(args.until) and time.monotonic() - start < args.max:
            time.sleep(0.02)
        mi.cmd("-break-delete %s" % bp.group(1))
        mi.cmd("-target-detach")
        attached = False
        emit({"event": "released", "held_s": round(time.monotonic() - start, 3)})
        return 0
    except RuntimeError as e:
        print("breakhold: %s" % e, file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if attached:
            try:  # detaching removes the breakpoint from the process and lets it run
                mi.cmd("-target-detach", timeout=10)
            except (RuntimeError, OSError):
                pass
        try:
            mi.p.stdin.close()
        except OSError:
            pass
        try:
            mi.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            mi.p.kill()
            mi.p.wait()


if __name__ == "__main__":
    sys.exit(main())
