#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Break a CPU profile of the proxies down by function group.

Reads `perf script -F comm,tid,ip,sym,dso` output of a `perf record -g` (on stdin, or
runs perf script on the perf.data files given) and prints, as JSON, the share of
samples in each group, counted by the function a sample was taken in (self time):

  crypto      libcrypto (AES-GCM, GHASH, the TLS record layer's cipher calls)
  tls         libssl (record framing, the state machine)
  http2       libnghttp2
  copies      memcpy/memmove in user space; copy_{to,from}_user and the iov
              copies of the kernel (socket data in and out of user buffers)
  net         the kernel's TCP/IP, veth, bridge, netfilter and skb handling
  syscall     syscall entry and exit, epoll, file lookups, the socket layer's
              own overhead outside of TCP
  sched       scheduling, wakeups, context switches, idle-time accounting
  memory      heap (malloc/free) and the kernel's page and slab allocators
  bpf         BPF programs and helpers run in this process's context
  flowexport  json-c, the daemon's flow accounting, stream and sinks
  own         the rest of the proxy's own code
  other       everything else

It also attributes each kernel sample to the system call it ran under (the
outermost __x64_sys_* / __do_sys_* frame of its call chain): "send" (sendto,
sendmsg, write, writev), "recv" (recvfrom, recvmsg, read, readv), "epoll",
"other" syscalls, or "none" (interrupts, softirqs run outside of a syscall).

Usage: perf-groups.py [--comm NAME] [perf.data ...]
"""
import argparse
import json
import re
import subprocess
import sys

USER_GROUPS = [
    ("crypto", re.compile(r"libcrypto")),
    ("tls", re.compile(r"libssl")),
    ("http2", re.compile(r"libnghttp2")),
    ("flowexport", re.compile(r"libjson-c|libz\.")),
]
COPY = re.compile(
    r"^(__)?(memcpy|memmove|mempcpy)|_copy_(to|from)_(user|iter)|copy_user|"
    r"rep_movs|copy_page|skb_copy_datagram|csum_partial_copy|__memcpy|memcpy_(to|from)")
NET = re.compile(
    r"^(tcp|__tcp|ip_|__ip|ipv6|ip6|inet|__inet|veth|br_|__br|nf_|__nf|ipt|nft|skb|__skb|"
    r"kfree_skb|consume_skb|__dev|dev_|netif|__netif|napi|__napi|net_rx|process_backlog|"
    r"sk_|__sk_|sock_|__sock|lock_sock|release_sock|dst_|fib|raw_|udp|neigh|eth_|"
    r"validate_xmit|sch_|qdisc|__qdisc|pfifo|loopback|bpf_skops|tcp_bpf|sk_msg|"
    r"__release_sock|security_sock|selinux_sock|apparmor_sock|skb_|ipt_do|"
    r"csum|do_softirq|__do_softirq|handle_softirqs|__local_bh|irq_exit|local_bh)")
SCHED = re.compile(
    r"schedule|switch|wake|enqueue|dequeue|update_(curr|load|cfs|rq|se)|pick_next|"
    r"select_task|ttwu|idle|_raw_spin|native_queued_spin|kvm_vcpu_is_preempted|"
    r"finish_task|set_next|resched|hrtimer|tick_|cpuacct|psi_|cgroup_rstat|"
    r"css_rstat|available_idle|newidle|balance|sched_|mutex_spin|futex")
MEM = re.compile(
    r"^(_int_malloc|_int_free|malloc|free|cfree|calloc|realloc|__libc_malloc|"
    r"__libc_free|__libc_calloc|__libc_realloc|tcache|unlink_chunk|malloc_consolidate|"
    r"kmem_cache|__kmem_cache|kmalloc|__kmalloc|kfree|__kfree|slab|__slab|___slab|"
    r"alloc_pages|__alloc|free_pages|__free|free_unref|get_page_from|rmqueue|"
    r"page_frag|__page_frag|folio|__folio|mod_memcg|__mod_memcg|memcg|__memcg|"
    r"obj_cgroup|refill_obj|drain_obj|mem_cgroup|__mem_cgroup|try_charge|"
    r"kmalloc_reserve|build_skb|__build_skb|napi_alloc|page_pool)")
SYSCALL = re.compile(
    r"^(entry_SYSCALL|do_syscall|syscall_|__x64_sys|__do_sys|__sys_|x64_sys_call|"
    r"ep_|do_epoll|__fdget|fdget|fput|__fput|fget|__fget|security_file|rw_verify|"
    r"__check_object_size|check_heap|__virt_addr_valid|syscall_exit|"
    r"exit_to_user|arch_exit|fpregs|switch_fpu|restore_fpregs|save_fpregs|"
    r"import_iovec|__import_iovec|copy_msghdr|___sys|____sys|"
    r"sockfd_lookup|move_addr|__get_user|__put_user|clear_bhb|"
    r"srso|retbleed|__x86_return|entry_|error_entry|int3|asm_)")
FLOWEXPORT = re.compile(r"^(sm_flow|flow_|flowacct|flowstream|flowjoin|sm_sink|sink_|"
                        r"ring_buffer|ringbuf|sm_json|json_)")
SYSCALL_FRAME = re.compile(r"^(__x64_sys_|__do_sys_|__ia32_sys_)(\w+)")
SEND = {"sendto", "sendmsg", "write", "writev", "sendmmsg", "pwrite64", "splice"}
RECV = {"recvfrom", "recvmsg", "read", "readv", "recvmmsg", "pread64"}
EPOLL = {"epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl"}
GROUPS = ["crypto", "tls", "http2", "copies", "net", "syscall", "sched", "memory", "bpf",
          "flowexport", "own", "other"]


def group(sym, dso, own_dsos):
    kernel = dso.startswith("[kernel") or dso == "[unknown]" and sym.startswith("0xffff")
    if sym.startswith("bpf_prog_") or dso.startswith("[bpf"):
        return "bpf"
    if not kernel:
        for name, rx in USER_GROUPS:
            if rx.search(dso):
                return name
    if COPY.search(sym):
        return "copies"
    if not kernel:
        if MEM.search(sym):
            return "memory"
        if any(o in dso for o in own_dsos):
            return "flowexport" if FLOWEXPORT.search(sym) else "own"
        if "libc" in dso:
            return "syscall" if sym.startswith(("__libc_send", "__libc_recv", "send", "recv",
                                                "epoll", "__GI___", "read", "write",
                                                "__libc_read", "__libc_write")) else "other"
        return "other"
    if sym.startswith("bpf_"):
        return "bpf"
    if MEM.search(sym):
        return "memory"
    if SCHED.search(sym):
        return "sched"
    if NET.search(sym):
        return "net"
    if SYSCALL.search(sym):
        return "syscall"
    return "other"


def syscall_of(frames):
    """The outermost syscall frame of a kernel call chain (frames leaf first)."""
    name = None
    for sym, _ in frames:
        m = SYSCALL_FRAME.match(sym)
        if m:
            name = m.group(2)
    if name is None:
        return "none"
    if name in SEND:
        return "send"
    if name in RECV:
        return "recv"
    if name in EPOLL:
        return "epoll"
    return "other"


def samples(stream):
    """Yield (comm, frames) per sample; frames are (sym, dso), leaf first."""
    comm, frames = None, []
    for line in stream:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
            continue
        if not line[0].isspace():
            if comm is not None:
                yield comm, frames
            comm, frames = line.split()[0], []
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1).strip())
            frames.append((sym, m.group(2)))
    if comm is not None:
        yield comm, frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--own", action="append", default=["sockmeshd"],
                    help="a DSO name that is the proxy's own code (default sockmeshd)")
    ap.add_argument("--top", type=int, default=15, help="how many top functions to list")
    ap.add_argument("data", nargs="*", help="perf.data files (default: perf script on stdin)")
    a = ap.parse_args()
    counts = {g: 0 for g in GROUPS}
    by_sys = {k: 0 for k in ("send", "recv", "epoll", "other", "none")}
    top = {}
    total = kernel = 0

    def feed(stream):
        nonlocal total, kernel
        for _, frames in samples(stream):
            if not frames:
                continue
            sym, dso = frames[0]
            g = group(sym, dso, a.own)
            counts[g] += 1
            total += 1
            key = f"{sym} ({dso.rsplit('/', 1)[-1]})"
            top[key] = top.get(key, 0) + 1
            if dso.startswith("[kernel"):
                kernel += 1
                by_sys[syscall_of(frames)] += 1

    if a.data:
        for f in a.data:
            p = subprocess.run(["perf", "script", "-i", f, "-F", "comm,tid,ip,sym,dso"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               check=True)
            feed(p.stdout.splitlines())
    else:
        feed(sys.stdin)
    if not total:
        sys.exit("perf-groups: no samples")
    pct = lambda n, d: round(100.0 * n / d, 1) if d else 0.0
    out = {
        "samples": total,
        "groups_pct": {g: pct(n, total) for g, n in counts.items()},
        "kernel_pct": pct(kernel, total),
        "kernel_by_syscall_pct": {k: pct(n, total) for k, n in by_sys.items()},
        "top": [{"fn": k, "pct": pct(n, total)}
                for k, n in sorted(top.items(), key=lambda kv: -kv[1])[:a.top]],
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
