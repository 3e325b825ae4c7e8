#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The daemon's module graph, for reviews of its layering (docs/architecture.md).

    scripts/module-graph.py [DIR]     (default userspace/daemon; needs universal-ctags)

Prints which file calls which other file's non-static functions, the call
cycles between files (strongly connected groups) and two-way pairs, the
largest files and functions, and each file's local includes. A name is taken
as a call when it is followed by '(' outside comments: a rough measure, good
enough to see a loop appear."""
import os, re, subprocess, sys, collections
root = sys.argv[1] if len(sys.argv) > 1 else 'userspace/daemon'
files = sorted(f for f in os.listdir(root) if f.endswith('.c'))
defs = {}
statics = collections.defaultdict(set)
funcs = []
for f in files:
    p = os.path.join(root, f)
    src = open(p).read().split('\n')
    tags = subprocess.run(['ctags', '-o', '-', '--c-kinds=f', '--fields=+nKSe', p], capture_output=True, text=True).stdout
    for line in tags.splitlines():
        parts = line.split('\t')
        name = parts[0]
        fields = dict(x.split(':',1) for x in parts[3:] if ':' in x)
        n = int(fields.get('line', 0)); e = int(fields.get('end', n))
        funcs.append((e - n + 1, f, name))
        # static?
        head = ' '.join(src[max(0,n-3):n])
        if 'file' not in fields:
            defs[name] = f
        else:
            statics[f].add(name)
edges = collections.defaultdict(set)
for f in files:
    text = open(os.path.join(root, f)).read()
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    for name, df in defs.items():
        if df != f and name not in statics[f] and re.search(r'\b' + re.escape(name) + r'\s*\(', text):
            edges[f].add(df)
print('call graph (file -> files whose functions it calls):')
for f in files:
    print(f'  {f} -> {", ".join(sorted(edges[f]))}')
# cycles: SCCs
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for f in files:
    if f not in idx: sc(f)
print('cycles (strongly connected groups):')
for s in sccs: print('  ' + ' <-> '.join(s))
mutual = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges[b]})
print('direct two-way pairs:', ', '.join(f'{a}<->{b}' for a, b in mutual))
sizes = sorted(((sum(1 for _ in open(os.path.join(root, f))), f) for f in files), reverse=True)
print('largest files:', ', '.join(f'{f} {n}' for n, f in sizes[:4]))
funcs.sort(reverse=True)
print('largest functions:', ', '.join(f'{n}() {f} {l}' for l, f, n in funcs[:6]))
inc = collections.defaultdict(list)
for f in files + sorted(x for x in os.listdir(root) if x.endswith('.h')):
    for m in re.finditer(r'#include "([^"]+)"', open(os.path.join(root, f)).read()):
        if os.path.exists(os.path.join(root, m.group(1))): inc[f].append(m.group(1))
print('daemon-local includes:')
for f in sorted(inc): print(f'  {f}: {" ".join(inc[f])}')
