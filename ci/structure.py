#!/usr/bin/env python3
"""Structure limits of issue 21, checked on every CI run.

* no Rust source file over 900 lines, not counting a trailing
  `#[cfg(test)] mod tests { .. }` block;
* no function over 150 lines (tests excluded);
* no import cycle between the top-level modules of vkernel-linux
  (an edge A -> B is a `crate::B` path written in module A);
* no file-level allow of clippy::cast_possible_truncation outside the
  baseline ci/cast-baseline.txt (the files whose casts predate the lint).

An edge is written as `crate::B` or as `super::B` climbing to the crate
root. Items of the crate root itself (lib.rs: `Vproc`) are not a module.

Usage: python3 ci/structure.py [--report]   (exit status 1 on a violation;
--report also prints the module graph; --cycles-warn reports import
cycles without failing, as .ci/run does until issue 21 item 1's layering
is finished)
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["src", "vkernel-core/src", "vkernel-devices/src", "vkernel-guest/src",
          "vkernel-linux/src", "vkernel-oci/src", "examples"]
MAX_FILE = 900
MAX_FN = 150

FN_RE = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?"
                   r"(extern\s+\"C\"\s+)?fn\s+(\w+)")


def rust_files():
    for base in CRATES:
        for dirpath, _, names in os.walk(os.path.join(ROOT, base)):
            for n in sorted(names):
                if n.endswith(".rs"):
                    yield os.path.join(dirpath, n)


def strip_strings(line):
    """Drop string and char literals and // comments so braces count."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    i = line.find("//")
    return line if i < 0 else line[:i]


def code_lines(lines):
    """The lines before a `#[cfg(test)]` that opens a test module."""
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) \
                and re.match(r"\s*(pub\s+)?mod\s+\w+", lines[i + 1]):
            if lines[i + 1].rstrip().endswith("{"):
                return lines[:i]
    return lines


def long_functions(path, lines):
    out = []
    depth = 0
    stack = []  # (name, start line, depth at which the fn body opened)
    pending = None
    for no, raw in enumerate(lines, 1):
        line = strip_strings(raw)
        m = FN_RE.match(line)
        if m:
            pending = (m.group(7), no)
        for ch in line:
            if ch == "{":
                depth += 1
                if pending is not None:
                    stack.append((pending[0], pending[1], depth))
                    pending = None
            elif ch == "}":
                if stack and stack[-1][2] == depth:
                    name, start, _ = stack.pop()
                    length = no - start + 1
                    if length > MAX_FN:
                        out.append((path, name, start, length))
                depth -= 1
        if pending is not None and line.rstrip().endswith(";"):
            pending = None  # a declaration without a body
    return out


def linux_cycles():
    base = os.path.join(ROOT, "vkernel-linux/src")
    tops = set()
    for n in os.listdir(base):
        if n.endswith(".rs") and n != "lib.rs":
            tops.add(n[:-3])
        elif os.path.isdir(os.path.join(base, n)):
            tops.add(n)
    edges = {t: set() for t in tops}
    for dirpath, _, names in os.walk(base):
        for n in names:
            if not n.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, n), base)
            top = rel.split(os.sep)[0]
            top = top[:-3] if top.endswith(".rs") else top
            if top not in tops:
                continue
            text = open(os.path.join(dirpath, n), encoding="utf-8").read()
            text = "\n".join(strip_strings(l) for l in code_text(text).split("\n"))
            path = mod_path(rel)
            for m in re.finditer(r"\b((?:super::)+)(\w+)", text):
                ups = m.group(1).count("super::")
                if len(path) - ups == 0:
                    dst = m.group(2)
                    if dst in tops and dst != top:
                        edges[top].add(dst)
            for m in re.finditer(r"crate::(\w+)", text):
                dst = m.group(1)
                if dst in tops and dst != top:
                    edges[top].add(dst)
            for m in re.finditer(r"use crate::\{([^}]*)\}", text):
                for part in re.split(r"[,\s]+", m.group(1)):
                    dst = part.split("::")[0]
                    if dst in tops and dst != top:
                        edges[top].add(dst)
    # Tarjan's strongly connected components.
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(tops):
        if v not in index:
            visit(v)
    return sccs, edges


def mod_path(rel):
    """The module path of a source file relative to the crate root:
    `kernel/fast/mod.rs` -> ["kernel", "fast"], `exec.rs` -> ["exec"]."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


CAST_ALLOW = "#![allow(clippy::cast_possible_truncation)]"


def read_baseline(path):
    """The files listed in a baseline file (comments and blanks skipped)."""
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        return set()
    return {l.strip() for l in text.split("\n") if l.strip() and not l.startswith("#")}


def allows_casts(text):
    """Does this Rust source allow lossy casts for the whole file?"""
    return any(l.startswith(CAST_ALLOW) for l in text.split("\n"))


def cast_allow_violations(allowing, baseline):
    """Files that allow lossy casts without being in the baseline, and
    crate and directory-module roots (lib.rs, main.rs, mod.rs) that allow
    them at all: there the allow covers every module below."""
    roots = {f for f in allowing if os.path.basename(f) in ("lib.rs", "main.rs", "mod.rs")}
    return sorted((set(allowing) - set(baseline)) | roots)


def code_text(text):
    return "\n".join(code_lines(text.split("\n")))


def main():
    report = "--report" in sys.argv
    cycles_warn = "--cycles-warn" in sys.argv
    bad = []
    for path in rust_files():
        lines = open(path, encoding="utf-8").read().split("\n")
        code = code_lines(lines)
        rel = os.path.relpath(path, ROOT)
        if len(code) > MAX_FILE:
            bad.append(f"{rel}: {len(code)} lines (limit {MAX_FILE}, tests excluded)")
        for _, name, start, length in long_functions(rel, code):
            bad.append(f"{rel}:{start}: fn {name} is {length} lines (limit {MAX_FN})")
    allowing = []
    for dirpath, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d != "target" and not d.startswith(".")]
        for n in sorted(names):
            if n.endswith(".rs"):
                path = os.path.join(dirpath, n)
                if allows_casts(open(path, encoding="utf-8").read()):
                    allowing.append(os.path.relpath(path, ROOT))
    baseline = read_baseline(os.path.join(ROOT, "ci", "cast-baseline.txt"))
    for f in cast_allow_violations(allowing, baseline):
        bad.append(f"{f}: allows lossy casts ({CAST_ALLOW}) but is not in "
                   "ci/cast-baseline.txt: use try_from or say why the value fits")
    sccs, edges = linux_cycles()
    for comp in sccs:
        line = "vkernel-linux import cycle between modules: " + ", ".join(comp)
        if cycles_warn:
            print("STRUCTURE (warning, not yet enforced):", line)
        else:
            bad.append(line)
    if report:
        for top in sorted(edges):
            print(f"  {top} -> {', '.join(sorted(edges[top])) or '-'}")
    for b in bad:
        print("STRUCTURE:", b)
    if bad:
        print(f"ci/structure.py: {len(bad)} violation(s)")
        return 1
    print("ci/structure.py: files <= 900 lines, functions <= 150 lines"
          + ("" if sccs else ", no import cycle in vkernel-linux")
          + f", lossy casts allowed only in the {len(allowing)} baseline files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
