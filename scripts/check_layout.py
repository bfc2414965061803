#!/usr/bin/env python3
"""Checks the workspace's shape (the structure issue's rules):

1. no import cycle between the files of any crate: a file that names `crate::a::b`
   (or `super::x`) depends on the file of the longest module path it names; `mod`
   declarations and comments do not count, nor do `#[cfg(test)]` modules;
2. the data path (centralino-core) depends on neither etcd-client, nor the agent-node
   crate, nor rand_distr; the node binaries do not link the tooling crate
   (centralino-sim) nor the test kit.

Exits non-zero with a list of what is wrong.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    # drop #[cfg(test)] modules (to the end of the file: they come last by convention)
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    return text[: m.start()] if m else text


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]) or parts[0] == "bin":
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def crate_cycles(src):
    files = {module_of(src, p): p for p in src.rglob("*.rs") if "bin" not in p.relative_to(src).parts}
    edges = {m: set() for m in files}
    for mod, path in files.items():
        text = strip(path.read_text())
        refs = []
        for m in re.finditer(r"\bcrate((?:::\w+)+)", text):
            refs.append(tuple(m.group(1).strip(":").split("::")))
        for m in re.finditer(r"\bsuper((?:::\w+)+)", text):
            base = mod[:-1]
            refs.append(base + tuple(m.group(1).strip(":").split("::")))
        # `use crate::a::{b, c::d}` groups
        for m in re.finditer(r"\bcrate::((?:\w+::)*)\{([^}]*)\}", text):
            base = tuple(x for x in m.group(1).split("::") if x)
            for item in m.group(2).split(","):
                item = item.strip()
                if item:
                    refs.append(base + tuple(item.split("::")))
        # a parent's own paths into the modules it declares (`pub use child::Item`)
        for child in re.findall(r"\bmod\s+(\w+)\s*;", text):
            body = re.sub(r"\bmod\s+\w+\s*;", "", text)
            for m in re.finditer(r"(?<![:\w])" + child + r"((?:::\w+)+)", body):
                refs.append(mod + (child,) + tuple(m.group(1).strip(":").split("::")))
            for m in re.finditer(r"(?<![:\w])" + child + r"::\{", body):
                refs.append(mod + (child,))
        for ref in refs:
            for n in range(len(ref), 0, -1):
                target = ref[:n]
                if target in files:
                    if target != mod:
                        edges[mod].add(target)
                    break
    # cycles: strongly connected components of size > 1
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
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
                out.append(sorted("::".join(c) for c in comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    problems = []
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    members = [p for p in meta["packages"] if p["id"] in meta["workspace_members"]]
    for pkg in members:
        src = Path(pkg["manifest_path"]).parent / "src"
        for cycle in crate_cycles(src):
            problems.append(f"{pkg['name']}: import cycle between {', '.join(cycle)}")

    def deps_of(name):
        tree = subprocess.run(
            ["cargo", "tree", "-p", name, "-e", "normal", "--prefix", "none", "-f", "{p}"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
        return {line.split()[0] for line in tree.splitlines() if line.strip()}

    core = deps_of("centralino-core")
    for banned in ("etcd-client", "centralino-agent-node", "rand_distr", "centralino-membership"):
        if banned in core:
            problems.append(f"centralino-core depends on {banned}")
    for node in ("centralino-router", "centralino-agent-node"):
        deps = deps_of(node)
        for banned in ("centralino-sim", "centralino-testkit", "rand_distr"):
            if banned in deps:
                problems.append(f"{node} (a node binary) links {banned}")
    agent = deps_of("centralino-agent-node")
    if "centralino-router" in agent or "centralino-core" in agent:
        problems.append("centralino-agent-node depends on a router crate")
    router = deps_of("centralino-core")
    if "centralino-agent-node" in router:
        problems.append("centralino-core depends on the agent-node crate")

    if problems:
        print("check_layout: FAILED")
        for p in problems:
            print("  " + p)
        return 1
    print(f"check_layout: {len(members)} crates, no import cycle, dependency rules hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
