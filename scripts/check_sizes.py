#!/usr/bin/env python3
"""Checks that src/ stays readable: no file above 600 lines of code and no function above
80, counting lines that hold code (no blank lines, comments or `#[cfg(test)]` modules).
A function that must stay longer says why in a comment containing `allow(long-function)`
on one of the three lines above it. Exit status 1 lists what is over.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_layers import source_files, strip_source  # noqa: E402

MAX_FILE = 600
MAX_FN = 80
FN = re.compile(
    r"(?m)^[ \t]*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?"
    r"(?:extern\s+\"C\"\s+|extern\s+\"\"\s+)?fn\s+(\w+)"
)


def code_lines(text):
    return sum(1 for line in text.split("\n") if line.strip())


def functions(text):
    """(name, first line index, code lines) of every function body in stripped `text`."""
    for m in FN.finditer(text):
        i = m.end()
        while i < len(text) and text[i] not in "{;":
            i += 1
        if i >= len(text) or text[i] == ";":
            continue
        depth, j = 1, i + 1
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        yield m.group(1), text.count("\n", 0, m.start()), code_lines(text[m.start():j])


def main(root):
    problems = []
    for path in sorted(source_files(root)):
        path = os.path.relpath(path)
        with open(path) as f:
            raw = f.read()
        text = strip_source(raw, keep_lines=True)
        n = code_lines(text)
        if n > MAX_FILE:
            problems.append(f"{path}: {n} lines of code (at most {MAX_FILE})")
        raw_lines = raw.split("\n")
        for fn, line, length in functions(text):
            above = "\n".join(raw_lines[max(0, line - 3):line])
            if length > MAX_FN and "allow(long-function)" not in above:
                problems.append(f"{path}:{line + 1}: fn {fn} has {length} lines of code (at most {MAX_FN})")
    for p in problems:
        print(p)
    if problems:
        print(f"check_sizes: {len(problems)} problem(s)")
        return 1
    print("check_sizes: every file and function within bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "src"))
