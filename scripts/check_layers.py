#!/usr/bin/env python3
"""Checks the crate's module structure against the layers ARCHITECTURE.md describes.

Reads every non-test `.rs` file under src/ (`#[cfg(test)]` modules, comments and string
literals removed), collects the modules each one names (`crate::a::b`, `super::x`,
`use crate::{a, b}`, `use super::{x, y}`), and fails when:
  * a top-level module imports one in a higher layer (imports only run down),
  * a top-level module is missing from LAYERS (every module has a place in the map),
  * the modules form a cycle, between top-level modules or between the files of one
    folder (a folder's mod.rs may re-export its children; its children must then import
    each other, never the mod.rs above them).
Exit status 0 when the structure holds, 1 with the offending imports listed otherwise.
"""
import os
import re
import sys

# Lower layers first; a module may import its own layer (without a cycle) and any lower one.
LAYERS = {
    "base": 0, "fault": 0,
    "wal": 1, "ltx": 1, "ls03": 1, "lease": 1, "lifecycle": 1, "budget": 1, "seal": 1, "lz4frame": 1,
    "config": 2, "store": 2, "spool": 2, "handoff": 2,
    "error": 3, "database": 3, "snapshot": 3,
    "shim": 4, "capture": 4, "uploader": 5, "restore": 4, "verify": 5, "follow": 5,
    "functions": 6, "status": 6, "metrics": 6,
    "ffi": 7,
}


def strip_source(text, keep_lines=False):
    """`text` without comments, string and char contents and `#[cfg(test)]` modules (with
    `keep_lines`, every removed line break stays, so line numbers still match)."""
    text = strip_literals(text, keep_lines)
    out, i = [], 0
    test_mod = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*(?:;|\{)")
    while True:
        m = test_mod.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:m.start()])
        j = m.end()
        if text[j - 1] == "{":
            depth = 1
            while depth and j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
        if keep_lines:
            out.append("\n" * text.count("\n", m.start(), j))
        i = j


def strip_literals(text, keep_lines):
    out, i, n = [], 0, len(text)

    def skipped(a, b):
        if keep_lines:
            out.append("\n" * text.count("\n", a, b))

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < n:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            skipped(i, j)
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
            skipped(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""')
            skipped(i, j + 1)
            i = j + 1
        elif c == "'":
            m = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^'\\\n])'").match(text, i)
            if m:
                out.append("' '")
                i = m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def test_only_dirs(root):
    """Paths (without `.rs`) of modules declared `#[cfg(test)] mod x;` in their own files:
    they and everything below them are tests."""
    found = []
    decl = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            with open(path) as f:
                text = f.read()
            base = dirpath if name in ("mod.rs", "lib.rs") else path[:-3]
            found += [os.path.join(base, m.group(1)) for m in decl.finditer(text)]
    return found


def source_files(root):
    """Every non-test `.rs` file below `root`."""
    tests = test_only_dirs(root)
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            if name.endswith(".rs") and not any(
                path[:-3] == t or path.startswith(t + os.sep) for t in tests
            ):
                yield path


def module_of(rel):
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts == ["lib"]:
        return ()
    return tuple(parts)


def named_paths(text, here):
    """Module paths (tuples) that `text`, the source of module `here`, refers to."""
    paths = []
    for m in re.finditer(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
        root = () if m.group(1) == "crate" else here[:-1]
        paths.append(root + tuple(m.group(2).split("::")[1:]))
    for m in re.finditer(r"\buse\s+(crate|super)::\{((?:[^{}]|\{[^{}]*\})*)\}", text):
        root = () if m.group(1) == "crate" else here[:-1]
        for item in re.split(r",(?![^{]*\})", m.group(2)):
            first = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", item)
            if first:
                paths.append(root + (first.group(1),))
    # A child used by its parent (a `pub use` re-export is a facade, not a dependency).
    for m in re.finditer(r"(?m)^\s*use\s+(?:self::)?([a-z_][a-z0-9_]*)::", text):
        if m.group(1) not in ("std", "core", "alloc", "crate", "super"):
            paths.append(here + (m.group(1),))
    return paths


def resolve(path, modules):
    """The deepest known module that `path` names (an item's module, or the module)."""
    for n in range(len(path), 0, -1):
        if path[:n] in modules:
            return path[:n]
    return None


def find_cycle(nodes, edges):
    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in color:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(nodes):
        if n not in color:
            c = visit(n)
            if c:
                return c
    return None


def main(root):
    files = {}
    for path in source_files(root):
        files[module_of(os.path.relpath(path, root))] = os.path.relpath(path)
    modules = set(files)
    problems = []
    top_edges, folder_edges = {}, {}
    for here, path in sorted(files.items()):
        if not here:
            continue
        with open(path) as f:
            text = strip_source(f.read())
        for named in named_paths(text, here):
            target = resolve(named, modules)
            if not target or target == here:
                continue
            if target[0] != here[0]:
                top_edges.setdefault(here[0], set()).add(target[0])
                lo, hi = LAYERS.get(here[0]), LAYERS.get(target[0])
                if lo is not None and hi is not None and hi > lo:
                    problems.append(
                        f"{path}: imports {'::'.join(target)} from a higher layer "
                        f"({target[0]} is layer {hi}, {here[0]} is layer {lo})"
                    )
            elif len(here) > 1 or len(target) > 1:
                folder_edges.setdefault(here, set()).add(target)
    for top in sorted({m[0] for m in modules if m}):
        if top not in LAYERS:
            problems.append(f"src/{top}: not in the layer table of {sys.argv[0]}")
    cycle = find_cycle({m[0] for m in modules if m}, top_edges)
    if cycle:
        problems.append("module cycle: " + " -> ".join(cycle))
    cycle = find_cycle(set(folder_edges), folder_edges)
    if cycle:
        problems.append("file cycle: " + " -> ".join("::".join(c) for c in cycle))
    for p in sorted(set(problems)):
        print(p)
    if problems:
        print(f"check_layers: {len(set(problems))} problem(s)")
        return 1
    print(f"check_layers: {len(files)} files, no cycle, imports run down the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")))
