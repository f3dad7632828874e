#!/usr/bin/env python3
"""Layering check: no module imports a module that imports it.

Reads every `src/**/*.rs` file, resolves each `crate::…` and `super::…` path it mentions
to the module that defines it, and records an edge between the two *sibling* modules that
contain the user and the used module (the children of their closest common ancestor):
`crate::job::config::validate` using `crate::job::graph::Graph` is the edge
`job::config -> job::graph`. A parent using its child (re-exports) and a child using its
parent are not edges. Any cycle among siblings is printed as `a -> b -> a` and fails.

Usage: scripts/check-layering.py [SRC_DIR]   (exit 0 clean, 1 cycles found)
"""

import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
src = os.path.normpath(src)


def module_of(path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


files = {}
for root, _dirs, names in os.walk(src):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            files[module_of(p)] = p
# Inline `mod x { … }` blocks (tests) belong to their file's module; only files make modules.
modules = set(files)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def expand(prefix, body):
    """Expands a `use` tree body (`a::b, c::{d, e}`) into full paths under prefix."""
    out, depth, cur = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            item = cur.strip()
            cur = ""
            if not item:
                continue
            m = re.match(r"^((?:" + IDENT + r"::)*)\{(.*)\}$", item, flags=re.S)
            if m:
                out += expand(prefix + [s for s in m.group(1).split("::") if s], m.group(2))
            else:
                name = item.split(" as ")[0].strip()
                out.append(prefix + [s for s in name.split("::") if s and s != "self"])
            continue
        cur += ch
    return out


def paths_in(text, here):
    found = []
    for m in re.finditer(r"\b(crate|super)((?:::(?:" + IDENT + r"|\*))*)::\{", text):
        start = m.end()
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        base = resolve(m.group(1), [s for s in m.group(2).split("::") if s], here)
        if base is not None:
            found += expand(base, text[start : i - 1])
    for m in re.finditer(r"\b(crate|super)((?:::" + IDENT + r")+)", text):
        base = resolve(m.group(1), [s for s in m.group(2).split("::") if s], here)
        if base is not None:
            found.append(base)
    return found


def resolve(head, rest, here):
    if head == "crate":
        return list(rest)
    base = list(here)
    # `super` is the parent of the module the file defines.
    if not base:
        return None
    base = base[:-1]
    while rest and rest[0] == "super":
        if not base:
            return None
        base, rest = base[:-1], rest[1:]
    return base + list(rest)


def owning_module(path):
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return None


edges = {}
for mod, path in files.items():
    with open(path, encoding="utf-8") as f:
        text = strip_comments(f.read())
    for p in paths_in(text, mod):
        target = owning_module(p)
        if target is None or target == mod:
            continue
        k = 0
        while k < min(len(mod), len(target)) and mod[k] == target[k]:
            k += 1
        if k == len(mod) or k == len(target):
            continue  # ancestor / descendant
        a, b = mod[: k + 1], target[: k + 1]
        edges.setdefault(a, set()).add(b)

# Cycle search (Tarjan's strongly connected components), then one cycle per component.
index, low, stack, on, comps = {}, {}, [], set(), []
counter = [0]


def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            strong(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            comps.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(edges):
    if v not in index:
        strong(v)


def cycle_in(comp):
    members = set(comp)
    start = sorted(comp)[0]
    prev, queue, seen = {}, [start], {start}
    while queue:
        v = queue.pop(0)
        for w in sorted(edges.get(v, ())):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in members and w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    return comp


name = lambda m: "::".join(m) or "crate"
if comps:
    for comp in comps:
        print("module cycle: " + " -> ".join(name(m) for m in cycle_in(comp)))
    sys.exit(1)
print(f"layering: {len(files)} modules, {sum(len(v) for v in edges.values())} sibling edges, no cycle")
