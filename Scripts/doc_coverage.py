#!/usr/bin/env python3
"""Counts the public declarations of each library target that carry a doc comment.

    python3 Scripts/doc_coverage.py [--min 90] [--list TARGET]

A declaration is public when its line is written with `public` or `open` (types, functions,
initialisers, properties, subscripts, typealiases, enum cases of a public enum declared with
`case` inside it are covered by the enum's own comment and not counted), excluding
`public extension` lines (an extension is not a symbol) and overrides of documented
members (`override`, which DocC shows with the overridden member's documentation). It is
documented when the lines just above it (past attributes such as `@discardableResult`) are a
`///` comment or end a `/** … */` block. Targets whose names start with `C` (C code) and the
executables are not counted. Exits 1 when a target is below `--min` percent.
"""
import argparse
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SKIP = {"gradguard", "gradguard-mlp"}
DECL = re.compile(
    r"^\s*(?:@[\w.]+(?:\([^)]*\))?\s+)*(?:(?:nonisolated(?:\(unsafe\))?|final|static|class|required|convenience|indirect|mutating|nonmutating|override|lazy|weak|unowned)\s+)*"
    r"(public|open)(?:\s*\(set\))?\s+(?:(?:nonisolated(?:\(unsafe\))?|final|static|class|required|convenience|indirect|mutating|nonmutating|lazy|weak|unowned|private\(set\)|internal\(set\)|fileprivate\(set\))\s+)*"
    r"(func|init|var|let|class|struct|enum|protocol|typealias|subscript|actor|case|associatedtype|extension|macro)\b"
)


def declarations(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    for i, line in enumerate(lines):
        m = DECL.match(line)
        if not m or m.group(2) == "extension" or re.search(r"\boverride\b", line.split("func")[0] if "func" in line else line):
            continue
        j = i - 1
        while j >= 0 and re.match(r"^\s*@\w+", lines[j]) and not lines[j].strip().startswith("///"):
            j -= 1  # attributes on their own lines
        documented = j >= 0 and (lines[j].strip().startswith("///") or lines[j].strip().endswith("*/"))
        out.append((i + 1, line.strip(), documented))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min", type=float, default=0)
    ap.add_argument("--list", help="print the undocumented declarations of this target")
    args = ap.parse_args()
    src = os.path.join(ROOT, "Sources")
    failed = []
    total_all = doc_all = 0
    print(f"{'target':<22} {'documented':>10} {'public':>7} {'share':>7}")
    for target in sorted(os.listdir(src)):
        if target.startswith("C") or target in SKIP or not os.path.isdir(os.path.join(src, target)):
            continue
        total = doc = 0
        for dirpath, _, files in os.walk(os.path.join(src, target)):
            for f in sorted(files):
                if not f.endswith(".swift"):
                    continue
                for n, text, d in declarations(os.path.join(dirpath, f)):
                    total += 1
                    doc += d
                    if not d and args.list == target:
                        print(f"  {os.path.relpath(os.path.join(dirpath, f), ROOT)}:{n}: {text}")
        if total == 0:
            continue
        share = 100.0 * doc / total
        total_all += total
        doc_all += doc
        print(f"{target:<22} {doc:>10} {total:>7} {share:>6.1f}%")
        if share < args.min:
            failed.append(target)
    print(f"{'all':<22} {doc_all:>10} {total_all:>7} {100.0 * doc_all / max(total_all, 1):>6.1f}%")
    if failed:
        print(f"below {args.min:g} %: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
